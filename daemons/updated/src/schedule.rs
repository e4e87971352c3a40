//! Scheduled checks: the daemon checks the repository on its own every `check_interval_secs`
//! (the first time after at most ten minutes), with the same step and signals as a caller's
//! `Check`. Downloading and applying stay the owner's decision.

use std::time::Duration;

use crate::service::{OBJECT_PATH, Update};

/// The longest wait before the first scheduled check.
const FIRST_CHECK_AT_MOST: Duration = Duration::from_secs(600);

/// When the first check runs for a check every `every`.
pub fn first_check_after(every: Duration) -> Duration {
    every.min(FIRST_CHECK_AT_MOST)
}

/// Checks every `every` through the `Update` object served on `connection`, for as long as
/// the daemon runs.
pub async fn check_on_schedule(connection: zbus::Connection, every: Duration) {
    tokio::time::sleep(first_check_after(every)).await;
    loop {
        match connection
            .object_server()
            .interface::<_, Update>(OBJECT_PATH)
            .await
        {
            Ok(iface) => {
                let emitter = iface.signal_emitter().clone();
                match iface.get().await.scheduled_check(&emitter).await {
                    Some(Ok((state, version, _))) => {
                        tracing::info!(%state, %version, "scheduled check done")
                    }
                    Some(Err(err)) => tracing::warn!(error = %err, "scheduled check failed"),
                    None => tracing::debug!("scheduled check skipped"),
                }
            }
            Err(err) => tracing::warn!(error = %err, "scheduled check: the Update object is gone"),
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_check_comes_soon_after_start() {
        for (every, first) in [(1, 1), (600, 600), (86_400, 600)] {
            assert_eq!(
                first_check_after(Duration::from_secs(every)),
                Duration::from_secs(first)
            );
        }
    }
}
