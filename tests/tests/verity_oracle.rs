//! Our dm-verity trees against cryptsetup's `veritysetup` (installed if missing): it accepts
//! our hash area and root hash; for the same salt, UUID and block sizes `veritysetup format`
//! writes the same bytes and prints the same root hash; a flipped data byte fails both
//! verifiers, ours naming the block.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use enigm_e2e::require_tool;
use enigm_verity::{VerityError, VerityParams, build, verify};

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    openssl::rand::rand_bytes(&mut v).unwrap();
    v
}

fn uuid_text(u: &[u8; 16]) -> String {
    let h = hex::encode(u);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn veritysetup(args: &[&str]) -> std::process::Output {
    Command::new("veritysetup").args(args).output().unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `veritysetup format`'s root hash, from its report.
fn formatted_root(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "veritysetup format: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .map(|h| h.trim().to_owned())
        .expect("a root hash line")
}

#[test]
fn veritysetup_agrees_with_our_trees() {
    require_tool("veritysetup", "cryptsetup-bin").unwrap();
    let dir = tempfile::tempdir().unwrap();
    // One block (no levels), one level, two levels, three levels.
    for blocks in [1usize, 2, 129, 16_385] {
        let data = random(blocks * 4096);
        let data_path = dir.path().join(format!("data-{blocks}"));
        std::fs::write(&data_path, &data).unwrap();
        let salt = random(32);
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&random(16));
        uuid[6] = (uuid[6] & 0x0f) | 0x40; // a version-4 UUID, as veritysetup expects
        uuid[8] = (uuid[8] & 0x3f) | 0x80;
        let params = VerityParams::new(salt.clone(), uuid);
        let tree = build(&params, &data[..]).unwrap();
        let ours = dir.path().join(format!("ours-{blocks}"));
        std::fs::write(&ours, &tree.hash_area).unwrap();
        let root = hex::encode(&tree.root_hash);

        // veritysetup verifies our hash area (reading our superblock) against our root.
        let verified = veritysetup(&["verify", path(&data_path), path(&ours), &root]);
        assert!(
            verified.status.success(),
            "{blocks} blocks: veritysetup verify refused ours: {}",
            String::from_utf8_lossy(&verified.stderr)
        );

        // veritysetup format with the same salt and UUID: same root, same bytes.
        let theirs = dir.path().join(format!("theirs-{blocks}"));
        let formatted = veritysetup(&[
            "format",
            &format!("--salt={}", hex::encode(&salt)),
            &format!("--uuid={}", uuid_text(&uuid)),
            path(&data_path),
            path(&theirs),
        ]);
        assert_eq!(
            formatted_root(&formatted),
            root,
            "{blocks} blocks: root hash"
        );
        let theirs_bytes = std::fs::read(&theirs).unwrap();
        assert_eq!(
            theirs_bytes.len(),
            tree.hash_area.len(),
            "{blocks} blocks: hash area size"
        );
        assert!(
            theirs_bytes == tree.hash_area,
            "{blocks} blocks: hash area bytes"
        );

        // Without a superblock too.
        let bare = VerityParams {
            superblock: false,
            ..params.clone()
        };
        let bare_tree = build(&bare, &data[..]).unwrap();
        let theirs_bare = dir.path().join(format!("theirs-bare-{blocks}"));
        let formatted = veritysetup(&[
            "format",
            "--no-superblock",
            &format!("--salt={}", hex::encode(&salt)),
            path(&data_path),
            path(&theirs_bare),
        ]);
        assert_eq!(
            formatted_root(&formatted),
            hex::encode(&bare_tree.root_hash)
        );
        assert!(std::fs::read(&theirs_bare).unwrap() == bare_tree.hash_area);

        // A flipped byte: both refuse, ours names the block.
        let mut bad = data.clone();
        let victim = blocks / 2;
        bad[victim * 4096 + 123] ^= 0x40;
        let bad_path = dir.path().join(format!("bad-{blocks}"));
        std::fs::write(&bad_path, &bad).unwrap();
        let refused = veritysetup(&["verify", path(&bad_path), path(&ours), &root]);
        assert!(
            !refused.status.success(),
            "{blocks} blocks: flipped byte accepted"
        );
        match verify(&params, &tree.root_hash, &tree.hash_area, &bad[..]) {
            Err(VerityError::DataMismatch { block }) => assert_eq!(block, victim as u64),
            // A single block has no stored digest: only the root can catch it.
            Err(VerityError::RootMismatch { .. }) if blocks == 1 => {}
            other => panic!("{blocks} blocks: {other:?}"),
        }
    }
}
