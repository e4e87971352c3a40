//! What the daemon reports about its TPM: `GetStatus()` (an `a{sv}` dictionary) and the
//! posture signal `enigm-tscd` reads (`org.enigm.PostureSignal1.GetSignal`).

use zbus::{DeserializeDict, SerializeDict, Type};

/// The status dictionary of `org.enigm.Attestation1.GetStatus` (keys in PascalCase).
#[derive(Debug, Clone, Default, PartialEq, Eq, SerializeDict, DeserializeDict, Type)]
#[zbus(signature = "a{sv}", rename_all = "PascalCase")]
pub struct Status {
    /// Whether the TPM answered the last time it was asked.
    pub tpm_reachable: bool,
    /// Whether the attestation key exists and loads.
    pub ak_loaded: bool,
    /// The endorsement key's algorithm (`ecc` or `rsa`).
    pub ek_algorithm: String,
    /// The attestation key's TPM name, hex (`000b…`); empty until known.
    pub ak_name: String,
    /// When the last quote was handed out, seconds since the Unix epoch; 0 for never.
    pub last_quote_time: u64,
    /// The last TPM error, empty after a success.
    pub last_error: String,
}

impl Status {
    /// The status before the TPM was asked anything.
    pub fn new(ek_algorithm: &str) -> Self {
        Self {
            ek_algorithm: ek_algorithm.to_owned(),
            ..Self::default()
        }
    }

    /// The posture signal: `pass` when the TPM is reachable and the AK loaded, else
    /// `unavailable` with the reason (the last error, which names the TPM as unreachable).
    pub fn signal(&self) -> (String, String) {
        if self.tpm_reachable && self.ak_loaded {
            ("pass".into(), "TPM reachable, AK loaded".into())
        } else if self.tpm_reachable {
            (
                "unavailable".into(),
                format!("TPM reachable, no attestation key: {}", self.last_error),
            )
        } else if self.last_error.is_empty() {
            ("unavailable".into(), "TPM not contacted yet".into())
        } else {
            ("unavailable".into(), self.last_error.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_passes_only_with_a_loaded_ak() {
        let mut status = Status::new("ecc");
        assert_eq!(status.signal().0, "unavailable");
        status.tpm_reachable = true;
        status.last_error = "Create (AK) failed".into();
        assert_eq!(
            status.signal(),
            (
                "unavailable".into(),
                "TPM reachable, no attestation key: Create (AK) failed".into()
            )
        );
        status.ak_loaded = true;
        assert_eq!(
            status.signal(),
            ("pass".into(), "TPM reachable, AK loaded".into())
        );
        status.tpm_reachable = false;
        status.ak_loaded = false;
        status.last_error = "TPM unreachable: x".into();
        assert!(status.signal().1.starts_with("TPM unreachable"));
    }
}
