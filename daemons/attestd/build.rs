//! Compiles `seccomp.json` (the daemon's system-call allow-list) into BPF at build time.

use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-changed=seccomp.json");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("seccomp.bpf");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if let Err(err) =
        enigm_seccomp_build::compile_policy(PathBuf::from("seccomp.json").as_path(), &arch, &out)
    {
        println!("cargo::error={err}");
    }
}
