//! The verified-update part of `cargo xtask demo`: `enigm-image` builds release 1 onto an A/B
//! disk image and release 2 (a small change), publishes release 2 with a delta from 1 to a
//! TUF repository served over HTTP on loopback; `enigm-updated` (on the private bus, as its
//! system user) checks, downloads the delta and applies it into slot B through `enigmctl
//! update`; the boot simulator reboots into B; the restarted daemon checks B and marks it
//! good. Everything runs on files in a temporary directory.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use enigm_image::build::build;
use enigm_image::release::release;
use enigm_image::{keys, repo};
use enigm_slots::simulator::boot;
use enigm_slots::{BootControl, GptBootControl};

use crate::update::{
    UpdatedSetup, chown_tree, generate_keys, release_options, serve_directory, unix_now,
    updated_command, upgraded_rootfs,
};
use crate::{Daemon, PrivateBus, enigmctl, ensure_system_users};

const SERVICE: &str = "org.enigm.Update1";

fn run_enigmctl(bus: &PrivateBus, args: &[&str]) -> Result<()> {
    let status = enigmctl(bus)?
        .args(args)
        .status()
        .context("running enigmctl")?;
    if !status.success() {
        bail!("enigmctl {} failed: {status}", args.join(" "));
    }
    Ok(())
}

/// Runs the update demo on `bus`, announcing each step with `step`.
pub async fn run(bus: &PrivateBus, step: fn(&str)) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("enigm-demo-update")
        .tempdir()?;
    let d = dir.path();

    step("enigm-image: keys, release 1 on an A/B disk image, release 2 with a small change");
    let key_dir = d.join("keys");
    generate_keys(&key_dir)?;
    let v1_options = release_options(d, &key_dir, "1", 1, true, 2 << 20)?;
    let v1 = build(&v1_options)?;
    let mut v2_options = release_options(d, &key_dir, "2", 2, false, 0)?;
    v2_options.rootfs = d.join("rootfs-2-upgraded");
    upgraded_rootfs(&v1_options.rootfs, &v2_options.rootfs)?;
    let v2 = build(&v2_options)?;
    println!(
        "    release 1: {} bytes, verity root {}…; release 2: {} bytes",
        v1.signed.root_size,
        &v1.signed.verity.root_hash[..16],
        v2.signed.root_size
    );

    step("enigm-image publish: release 2 with a delta from release 1 (TUF, consistent snapshots)");
    let repo_dir = d.join("repo");
    repo::init(
        &repo_dir,
        &key_dir,
        1,
        unix_now(),
        repo::Expiries::default(),
    )?;
    let made = release(&v2_options.out, std::slice::from_ref(&v1_options.out), 19)?;
    repo::publish(
        &repo_dir,
        &key_dir,
        &made.files,
        unix_now(),
        repo::Expiries::default(),
    )?;
    for delta in &made.deltas {
        println!(
            "    delta from {}: {} bytes ({:.3}% of the image)",
            delta.from_version,
            delta.size,
            100.0 * delta.size as f64 / v2.signed.root_size as f64
        );
    }
    let url = serve_directory(repo_dir.clone())?;
    println!("    served at {url}");

    // The device: trusts root v1 and the image key; runs release 1 from slot A.
    let sysroot = d.join("sysroot");
    std::fs::create_dir_all(sysroot.join("etc/enigm"))?;
    std::fs::write(
        sysroot.join("etc/enigm/image-keys.json"),
        serde_json::to_vec(&keys::public_map(&key_dir, keys::IMAGE)?)?,
    )?;
    let state = d.join("state");
    std::fs::create_dir_all(state.join("tuf"))?;
    std::fs::copy(
        repo_dir.join("metadata/1.root.json"),
        state.join("tuf/root.json"),
    )?;
    ensure_system_users()?;
    let user = nix::unistd::User::from_name("enigm-updated")?
        .context("the enigm-updated system user is missing")?;
    chown_tree(&state, &user)?;
    let disk = v1.disk.clone().context("release 1 has no disk image")?;
    let setup = UpdatedSetup {
        sysroot: &sysroot,
        bus: bus.address(),
        url: &url,
        state: &state,
        disk: &disk,
    };
    let daemon_in = |slot: &str| -> Result<Command> {
        let mut command = updated_command(&setup, slot)?;
        command.env("ENIGM_UPDATED__UPDATE__ROLLBACK_STORE", "file");
        Ok(command)
    };

    step("starting enigm-updated in slot A (as user enigm-updated, seccomp on)");
    let daemon = Daemon::spawn(daemon_in("a")?)?;
    bus.wait_for_name(SERVICE, Duration::from_secs(10))
        .await
        .with_context(|| daemon.stderr())?;
    for args in [
        &["update", "check"][..],
        &["update", "download"],
        &["update", "apply"],
    ] {
        step(&format!("enigmctl {}", args.join(" ")));
        run_enigmctl(bus, args)?;
    }
    drop(daemon);

    step("rebooting (boot simulator: highest priority slot with tries left)");
    let mut control = GptBootControl::open(&disk)?;
    let booted = boot(&mut control)?;
    println!("    booted slot {booted}");

    step("enigm-updated in the new slot: dm-verity check against the manifest, then mark good");
    let daemon = Daemon::spawn(daemon_in(booted.suffix())?)?;
    bus.wait_for_name(SERVICE, Duration::from_secs(10))
        .await
        .with_context(|| daemon.stderr())?;
    let mut confirmed = false;
    for _ in 0..40 {
        if control.slots()?.get(booted).successful {
            confirmed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if !confirmed {
        bail!("slot {booted} was not confirmed: {}", daemon.stderr());
    }
    let index = std::fs::read_to_string(state.join("rollback-index")).unwrap_or_default();
    println!(
        "    slot {booted} marked good; rollback index {} (release 1 is now refused)",
        index.trim()
    );
    step("enigmctl update status");
    run_enigmctl(bus, &["update", "status"])?;
    drop(daemon);
    Ok(())
}
