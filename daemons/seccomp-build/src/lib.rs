//! Build-time compiler of a daemon's seccomp policy.
//!
//! A daemon's `build.rs` calls [`compile_policy`] on its `seccomp.json` (seccompiler's JSON
//! format, one filter named `main`). The BPF program is written to `OUT_DIR` as packed
//! instructions that `enigm_runtime::seccomp` loads and applies at start: the policy is data,
//! reviewed as a file, and compiled before the daemon ever runs.

use std::fmt;
use std::path::Path;

/// Size in bytes of one packed BPF instruction: code (u16), jt (u8), jf (u8), k (u32), LE.
pub const INSTRUCTION_BYTES: usize = 8;

/// A policy that could not be compiled.
#[derive(Debug)]
pub enum BuildError {
    /// The policy or output file could not be read or written.
    Io(std::io::Error),
    /// seccompiler rejected the policy.
    Compile(seccompiler::Error),
    /// The policy has no filter named `main`.
    NoMainFilter,
    /// The target architecture is not one seccompiler supports.
    Arch(String),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Io(err) => write!(f, "seccomp policy I/O: {err}"),
            BuildError::Compile(err) => write!(f, "seccomp policy does not compile: {err}"),
            BuildError::NoMainFilter => write!(f, "seccomp policy has no filter named \"main\""),
            BuildError::Arch(arch) => write!(f, "seccomp: unsupported target architecture {arch}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// What a daemon's `build.rs` runs: compiles `seccomp.json` in the crate directory into
/// `$OUT_DIR/seccomp.bpf` for the target architecture, failing the build on any error.
pub fn build_script() {
    println!("cargo::rerun-if-changed=seccomp.json");
    let out =
        std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("seccomp.bpf");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if let Err(err) = compile_policy(Path::new("seccomp.json"), &arch, &out) {
        println!("cargo::error={err}");
    }
}

/// Compiles the JSON policy at `policy` for `target_arch` (e.g. `x86_64`) and writes the packed
/// program to `out`.
pub fn compile_policy(policy: &Path, target_arch: &str, out: &Path) -> Result<(), BuildError> {
    let json = std::fs::read(policy).map_err(BuildError::Io)?;
    let arch = seccompiler::TargetArch::try_from(target_arch)
        .map_err(|_| BuildError::Arch(target_arch.to_owned()))?;
    let mut filters =
        seccompiler::compile_from_json(json.as_slice(), arch).map_err(BuildError::Compile)?;
    let program = filters.remove("main").ok_or(BuildError::NoMainFilter)?;
    let mut bytes = Vec::with_capacity(program.len() * INSTRUCTION_BYTES);
    for instruction in &program {
        bytes.extend_from_slice(&instruction.code.to_le_bytes());
        bytes.push(instruction.jt);
        bytes.push(instruction.jf);
        bytes.extend_from_slice(&instruction.k.to_le_bytes());
    }
    std::fs::write(out, bytes).map_err(BuildError::Io)
}
