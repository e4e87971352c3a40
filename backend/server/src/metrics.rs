//! Counters exported at `/metrics` in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use tonic::Code;

/// Every gRPC code, in numeric order, with the label it is exported under.
const CODES: [(Code, &str); 17] = [
    (Code::Ok, "ok"),
    (Code::Cancelled, "cancelled"),
    (Code::Unknown, "unknown"),
    (Code::InvalidArgument, "invalid_argument"),
    (Code::DeadlineExceeded, "deadline_exceeded"),
    (Code::NotFound, "not_found"),
    (Code::AlreadyExists, "already_exists"),
    (Code::PermissionDenied, "permission_denied"),
    (Code::ResourceExhausted, "resource_exhausted"),
    (Code::FailedPrecondition, "failed_precondition"),
    (Code::Aborted, "aborted"),
    (Code::OutOfRange, "out_of_range"),
    (Code::Unimplemented, "unimplemented"),
    (Code::Internal, "internal"),
    (Code::Unavailable, "unavailable"),
    (Code::DataLoss, "data_loss"),
    (Code::Unauthenticated, "unauthenticated"),
];

/// The tiers appraisals are counted by.
const TIERS: [&str; 3] = ["affirming", "warning", "contraindicated"];

/// The backend's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    challenges_issued: AtomicU64,
    tokens_issued: AtomicU64,
    appraisals: [AtomicU64; 3],
    errors: [AtomicU64; 17],
    purge_runs: AtomicU64,
    purge_failures: AtomicU64,
    purged: [AtomicU64; 4],
    relay_stored: AtomicU64,
    relay_delivered: AtomicU64,
    relay_acknowledged: AtomicU64,
    relay_expired: AtomicU64,
    relay_streams: AtomicU64,
}

/// The record classes purges are counted by.
const PURGE_CLASSES: [&str; 4] = [
    "challenges",
    "appraisals",
    "transitions",
    "connection_records",
];

impl Metrics {
    /// One challenge issued.
    pub fn challenge_issued(&self) {
        self.challenges_issued.fetch_add(1, Ordering::Relaxed);
    }

    /// One token issued.
    pub fn token_issued(&self) {
        self.tokens_issued.fetch_add(1, Ordering::Relaxed);
    }

    /// One appraisal with `tier` (`affirming`, `warning` or `contraindicated`).
    pub fn appraisal(&self, tier: &str) {
        if let Some(i) = TIERS.iter().position(|t| *t == tier)
            && let Some(counter) = self.appraisals.get(i)
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One purge ran and deleted `counts`.
    pub fn purged(&self, counts: &enigm_backend_storage::PurgeCounts) {
        self.purge_runs.fetch_add(1, Ordering::Relaxed);
        let [c, a, t, r] = &self.purged;
        c.fetch_add(counts.challenges, Ordering::Relaxed);
        a.fetch_add(counts.appraisals, Ordering::Relaxed);
        t.fetch_add(counts.transitions, Ordering::Relaxed);
        r.fetch_add(counts.connection_records, Ordering::Relaxed);
    }

    /// One relay message stored.
    pub fn relay_stored(&self) {
        self.relay_stored.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` relay messages handed to a receiver (fetched or pushed).
    pub fn relay_delivered(&self, n: usize) {
        self.relay_delivered
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// One relay message acknowledged (deleted).
    pub fn relay_acknowledged(&self) {
        self.relay_acknowledged.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` expired relay messages purged.
    pub fn relay_expired(&self, n: u64) {
        self.relay_expired.fetch_add(n, Ordering::Relaxed);
    }

    /// A push stream opened.
    pub fn relay_stream_opened(&self) {
        self.relay_streams.fetch_add(1, Ordering::Relaxed);
    }

    /// A push stream closed.
    pub fn relay_stream_closed(&self) {
        self.relay_streams.fetch_sub(1, Ordering::Relaxed);
    }

    /// One purge failed.
    pub fn purge_failed(&self) {
        self.purge_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// One gRPC call ended with the status code numbered `code` (non-zero).
    pub fn error(&self, code: i32) {
        if code == 0 {
            return;
        }
        let index = usize::try_from(code).unwrap_or(2).min(16);
        if let Some(counter) = self.errors.get(index) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP enigm_backend_challenges_issued_total Attestation challenges issued.\n\
             # TYPE enigm_backend_challenges_issued_total counter\n\
             enigm_backend_challenges_issued_total {}",
            get(&self.challenges_issued)
        );
        let _ = writeln!(
            out,
            "# HELP enigm_backend_appraisals_total Appraisals, by resulting tier.\n\
             # TYPE enigm_backend_appraisals_total counter"
        );
        for (tier, counter) in TIERS.iter().zip(&self.appraisals) {
            let _ = writeln!(
                out,
                "enigm_backend_appraisals_total{{tier=\"{tier}\"}} {}",
                get(counter)
            );
        }
        let _ = writeln!(
            out,
            "# HELP enigm_backend_tokens_issued_total Attestation results signed.\n\
             # TYPE enigm_backend_tokens_issued_total counter\n\
             enigm_backend_tokens_issued_total {}",
            get(&self.tokens_issued)
        );
        let _ = writeln!(
            out,
            "# HELP enigm_backend_grpc_errors_total gRPC calls that failed, by status code.\n\
             # TYPE enigm_backend_grpc_errors_total counter"
        );
        for ((_, label), counter) in CODES.iter().zip(&self.errors).skip(1) {
            let _ = writeln!(
                out,
                "enigm_backend_grpc_errors_total{{code=\"{label}\"}} {}",
                get(counter)
            );
        }
        let _ = writeln!(
            out,
            "# HELP enigm_backend_purge_runs_total Retention purges run.\n\
             # TYPE enigm_backend_purge_runs_total counter\n\
             enigm_backend_purge_runs_total {}\n\
             # HELP enigm_backend_purge_failures_total Retention purges that failed.\n\
             # TYPE enigm_backend_purge_failures_total counter\n\
             enigm_backend_purge_failures_total {}\n\
             # HELP enigm_backend_purged_records_total Records deleted past retention, by class.\n\
             # TYPE enigm_backend_purged_records_total counter",
            get(&self.purge_runs),
            get(&self.purge_failures)
        );
        for (class, counter) in PURGE_CLASSES.iter().zip(&self.purged) {
            let _ = writeln!(
                out,
                "enigm_backend_purged_records_total{{class=\"{class}\"}} {}",
                get(counter)
            );
        }
        let _ = writeln!(
            out,
            "# HELP enigm_backend_relay_messages_total Relay messages, by event.\n\
             # TYPE enigm_backend_relay_messages_total counter\n\
             enigm_backend_relay_messages_total{{event=\"stored\"}} {}\n\
             enigm_backend_relay_messages_total{{event=\"delivered\"}} {}\n\
             enigm_backend_relay_messages_total{{event=\"acknowledged\"}} {}\n\
             enigm_backend_relay_messages_total{{event=\"expired\"}} {}\n\
             # HELP enigm_backend_relay_streams Push streams open now.\n\
             # TYPE enigm_backend_relay_streams gauge\n\
             enigm_backend_relay_streams {}",
            get(&self.relay_stored),
            get(&self.relay_delivered),
            get(&self.relay_acknowledged),
            get(&self.relay_expired),
            get(&self.relay_streams)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_render_in_prometheus_text() {
        let m = Metrics::default();
        m.challenge_issued();
        m.appraisal("warning");
        m.appraisal("warning");
        m.error(Code::InvalidArgument as i32);
        m.error(0);
        let text = m.render();
        assert!(text.contains("enigm_backend_challenges_issued_total 1\n"));
        assert!(text.contains("enigm_backend_appraisals_total{tier=\"warning\"} 2\n"));
        assert!(text.contains("enigm_backend_grpc_errors_total{code=\"invalid_argument\"} 1\n"));
        assert!(!text.contains("code=\"ok\""));
        m.relay_stored();
        m.relay_delivered(3);
        m.relay_stream_opened();
        let text = m.render();
        assert!(text.contains("enigm_backend_relay_messages_total{event=\"stored\"} 1\n"));
        assert!(text.contains("enigm_backend_relay_messages_total{event=\"delivered\"} 3\n"));
        assert!(text.contains("enigm_backend_relay_streams 1\n"));
    }
}
