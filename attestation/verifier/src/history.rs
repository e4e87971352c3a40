//! Per-device monotonic checks on a quote's TPMS_CLOCK_INFO (Keylime checks these;
//! `tpm2_checkquote` does not).
//!
//! Between two quotes of the same enrollment: the reset counter must not change (a TPM reset
//! — reboot or clear — needs a re-enrollment), the restart counter must not go backwards, and
//! with both unchanged the clock must not go backwards.

use enigm_tpm_evidence::attest::ClockInfo;

/// The outcome of comparing a quote's clock with the device's last accepted one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClockVerdict {
    /// First quote of this enrollment.
    First,
    /// Consistent with the last one.
    Monotonic,
    /// Refuted, with the reason.
    Refuted(String),
}

/// Compares `current` with the last accepted `previous`.
pub fn check_clock(previous: Option<&ClockInfo>, current: &ClockInfo) -> ClockVerdict {
    let Some(previous) = previous else {
        return ClockVerdict::First;
    };
    if current.reset_count != previous.reset_count {
        return ClockVerdict::Refuted(format!(
            "TPM reset counter changed from {} to {} without a re-enrollment",
            previous.reset_count, current.reset_count
        ));
    }
    if current.restart_count < previous.restart_count {
        return ClockVerdict::Refuted(format!(
            "TPM restart counter went backwards from {} to {}",
            previous.restart_count, current.restart_count
        ));
    }
    if current.restart_count == previous.restart_count && current.clock < previous.clock {
        return ClockVerdict::Refuted(format!(
            "TPM clock went backwards from {} to {} ms",
            previous.clock, current.clock
        ));
    }
    ClockVerdict::Monotonic
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(clock: u64, reset_count: u32, restart_count: u32) -> ClockInfo {
        ClockInfo {
            clock,
            reset_count,
            restart_count,
            safe: true,
        }
    }

    #[test]
    fn clock_table() {
        let last = clock(1000, 3, 1);
        let cases = [
            (clock(2000, 3, 1), true),
            (clock(1000, 3, 1), true),
            (clock(500, 3, 2), true),
            (clock(999, 3, 1), false),
            (clock(2000, 4, 0), false),
            (clock(2000, 2, 1), false),
            (clock(2000, 3, 0), false),
        ];
        for (current, ok) in cases {
            let verdict = check_clock(Some(&last), &current);
            assert_eq!(
                verdict == ClockVerdict::Monotonic,
                ok,
                "{current:?}: {verdict:?}"
            );
        }
        assert_eq!(check_clock(None, &last), ClockVerdict::First);
    }
}
