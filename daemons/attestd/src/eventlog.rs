//! The firmware's TCG event log, attached to every piece of evidence so a verifier can replay
//! it against the quoted PCRs.
//!
//! securityfs makes the log readable by root only, so the daemon reads it once at start-up,
//! before it drops privileges. Under systemd, where the daemon starts as its own user, the unit
//! hands the log over as a credential (`LoadCredential=tpm-event-log:…`), which is read instead
//! when present. Its default when the machine has no log (`SetCredential=tpm-event-log:none`;
//! systemd refuses an empty value) is the word [`NO_LOG`], read as an empty log.

use std::io;
use std::path::Path;

use enigm_runtime::sysroot::Sysroot;

/// The name of the systemd credential that carries the event log.
pub const CREDENTIAL: &str = "tpm-event-log";

/// The credential's value on a machine without an event log.
pub const NO_LOG: &[u8] = b"none";

/// The largest event log accepted (a firmware log is tens of kilobytes).
pub const MAX_LEN: u64 = 4 << 20;

/// Reads the event log: the systemd credential in `credentials_dir` if there is one, else
/// `path` under `sysroot`; empty when neither exists.
pub fn read(sysroot: &Sysroot, path: &str, credentials_dir: Option<&Path>) -> io::Result<Vec<u8>> {
    if let Some(dir) = credentials_dir {
        match read_bounded(&dir.join(CREDENTIAL)) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Ok(bytes) if bytes == NO_LOG => return Ok(Vec::new()),
            other => return other,
        }
    }
    match read_bounded(&sysroot.path(path)) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        other => other,
    }
}

fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    // securityfs reports a size of 0: read to the end, but not without limit.
    std::fs::File::open(path)?
        .take(MAX_LEN + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {MAX_LEN} bytes", path.display()),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_first_then_sysroot_then_empty() {
        let dir = tempfile::tempdir().unwrap();
        let root = Sysroot::new(dir.path().join("root"));
        let log = "/sys/kernel/security/tpm0/binary_bios_measurements";
        assert_eq!(read(&root, log, None).unwrap(), b"");

        std::fs::create_dir_all(root.path("/sys/kernel/security/tpm0")).unwrap();
        std::fs::write(root.path(log), b"sysroot log").unwrap();
        assert_eq!(read(&root, log, None).unwrap(), b"sysroot log");

        let credentials = dir.path().join("credentials");
        std::fs::create_dir_all(&credentials).unwrap();
        assert_eq!(
            read(&root, log, Some(&credentials)).unwrap(),
            b"sysroot log"
        );
        std::fs::write(credentials.join(CREDENTIAL), b"credential log").unwrap();
        assert_eq!(
            read(&root, log, Some(&credentials)).unwrap(),
            b"credential log"
        );
        std::fs::write(credentials.join(CREDENTIAL), NO_LOG).unwrap();
        assert_eq!(read(&root, log, Some(&credentials)).unwrap(), b"");
    }
}
