#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The rollback index in a TPM NV index, on a real software TPM (swtpm): raised, never
//! lowered, kept across a TPM restart, read the same by `tpm2_nvread` (tpm2-tools, code we did
//! not write); a foreign NV space at our index and a TPM that is gone are errors, not 0.

use std::process::Command;

use enigm_e2e::{Swtpm, require_tool};
use enigm_installer::{ROLLBACK_NV_INDEX, RollbackStore, TpmRollbackStore};

fn nvread(tcti: &str, index: u32) -> Vec<u8> {
    let out = Command::new("tpm2_nvread")
        .args(["-T", tcti, "-C", "o", "-s", "8"])
        .arg(format!("{index:#x}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tpm2_nvread: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn raised_never_lowered_persistent_and_read_alike_by_tpm2_tools() {
    require_tool("tpm2_nvread", "tpm2-tools").unwrap();
    let mut tpm = Swtpm::start().unwrap();
    let mut store = TpmRollbackStore::open(&tpm.tcti()).unwrap();
    assert_eq!(store.get().unwrap(), 0, "never written");
    store.raise(3).unwrap();
    assert_eq!(store.get().unwrap(), 3);
    store.raise(2).unwrap();
    assert_eq!(store.get().unwrap(), 3, "never lowered");
    store.raise(7).unwrap();
    assert_eq!(
        nvread(&tpm.tcti(), ROLLBACK_NV_INDEX),
        7u64.to_be_bytes().to_vec()
    );
    drop(store);

    tpm.restart().unwrap();
    let mut store = TpmRollbackStore::open(&tpm.tcti()).unwrap();
    assert_eq!(store.get().unwrap(), 7, "kept across a TPM restart");
    drop(store);

    // The TPM is gone: an error, never "0".
    tpm.stop();
    assert!(
        TpmRollbackStore::open(&tpm.tcti())
            .and_then(|mut s| s.get())
            .is_err()
    );
}

#[test]
fn a_foreign_space_at_the_index_is_refused() {
    require_tool("tpm2_nvdefine", "tpm2-tools").unwrap();
    let tpm = Swtpm::start().unwrap();
    let index = ROLLBACK_NV_INDEX + 1;
    let status = Command::new("tpm2_nvdefine")
        .args([
            "-T",
            &tpm.tcti(),
            "-C",
            "o",
            "-s",
            "4",
            "-a",
            "ownerread|ownerwrite",
        ])
        .arg(format!("{index:#x}"))
        .status()
        .unwrap();
    assert!(status.success());
    let status = Command::new("tpm2_nvwrite")
        .args(["-T", &tpm.tcti(), "-C", "o", "-i", "-"])
        .arg(format!("{index:#x}"))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&[1, 2, 3, 4])?;
            child.wait()
        })
        .unwrap();
    assert!(status.success());
    let mut store = TpmRollbackStore::open_at(&tpm.tcti(), index).unwrap();
    let err = store.get().unwrap_err().to_string();
    assert!(err.contains("not ours"), "{err}");
    assert!(store.raise(9).is_err());
}
