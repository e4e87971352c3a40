//! Applies a daemon's seccomp filter, compiled at build time by `enigm-seccomp-build`.
//!
//! The filter's default action refuses every system call not on the daemon's allow-list
//! (`EPERM`), and it is applied to every thread before the daemon serves a request.

use seccompiler::sock_filter;

/// A compiled filter that cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The embedded program is empty or not a whole number of instructions.
    #[error("seccomp program is malformed ({0} bytes)")]
    Malformed(usize),
    /// The kernel refused the filter.
    #[error("cannot apply seccomp filter: {0}")]
    Apply(#[from] seccompiler::Error),
}

/// Size in bytes of one packed instruction (see `enigm_seccomp_build`).
const INSTRUCTION_BYTES: usize = 8;

/// Decodes the packed program written by `enigm_seccomp_build::compile_policy`.
pub fn decode(bytes: &[u8]) -> Result<Vec<sock_filter>, SeccompError> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(INSTRUCTION_BYTES) {
        return Err(SeccompError::Malformed(bytes.len()));
    }
    Ok(bytes
        .chunks_exact(INSTRUCTION_BYTES)
        .map(|raw| sock_filter {
            code: u16::from_le_bytes([raw[0], raw[1]]),
            jt: raw[2],
            jf: raw[3],
            k: u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]),
        })
        .collect())
}

/// Applies the packed program to every thread of the process (sets `no_new_privs` first).
pub fn apply(bytes: &[u8]) -> Result<usize, SeccompError> {
    let program = decode(bytes)?;
    seccompiler::apply_filter_all_threads(&program)?;
    tracing::info!(instructions = program.len(), "seccomp filter applied");
    Ok(program.len())
}

/// Test hook (a daemon's hidden `--seccomp-probe`): calls `sysinfo(2)`, which no daemon policy
/// allows, and reports on stderr whether the filter refused it.
pub fn probe() {
    match nix::sys::sysinfo::sysinfo() {
        Ok(_) => eprintln!("seccomp-probe: sysinfo was ALLOWED"),
        Err(errno) => eprintln!("seccomp-probe: sysinfo refused: {errno:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_rejects_partial_programs() {
        for len in [0usize, 3, 9, 15] {
            assert!(matches!(decode(&vec![0; len]), Err(SeccompError::Malformed(n)) if n == len));
        }
        let one = decode(&[0x06, 0x00, 1, 2, 0x00, 0x00, 0xff, 0x7f]).unwrap();
        assert_eq!(
            (one[0].code, one[0].jt, one[0].jf, one[0].k),
            (6, 1, 2, 0x7fff_0000)
        );
    }
}
