//! The health check of a newly booted slot, and its confirmation.
//!
//! A slot is healthy when, besides its dm-verity tree matching the manifest (the engine checks
//! that), the system's own services came up: every configured D-Bus name is owned on the
//! system bus within the time limit. Until then the slot stays unconfirmed; a slot that never
//! becomes healthy uses up its tries and the bootloader goes back to the other one.

use std::time::Duration;

use tokio::time::Instant;

use crate::service::SharedEngine;

/// How often the bus is asked again while names are missing.
const POLL: Duration = Duration::from_millis(250);

/// Waits until every name in `names` has an owner on `connection`'s bus, for at most
/// `timeout`. The error names what is still missing.
pub async fn services_up(
    connection: &zbus::Connection,
    names: &[String],
    timeout: Duration,
) -> Result<(), String> {
    if names.is_empty() {
        return Ok(());
    }
    let bus = zbus::fdo::DBusProxy::new(connection)
        .await
        .map_err(|e| format!("asking the bus: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        let mut missing = Vec::new();
        for name in names {
            let owned = match zbus::names::BusName::try_from(name.as_str()) {
                Ok(bus_name) => bus.name_has_owner(bus_name).await.unwrap_or(false),
                Err(_) => false,
            };
            if !owned {
                missing.push(name.as_str());
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "not on the bus after {} s: {}",
                timeout.as_secs(),
                missing.join(", ")
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// After start-up: when the running slot awaits its health check, runs it (`names` on the
/// bus within `timeout`) and lets the engine confirm the slot or record why not; otherwise
/// lets the engine notice an update that fell back.
pub async fn confirm_after_boot(
    engine: SharedEngine,
    connection: zbus::Connection,
    names: Vec<String>,
    timeout: Duration,
) {
    let probe = engine.clone();
    let awaiting = tokio::task::spawn_blocking(move || {
        probe
            .lock()
            .map(|mut e| e.awaiting_health_check())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false);
    let health = if awaiting {
        services_up(&connection, &names, timeout).await
    } else {
        Ok(())
    };
    let confirmed = tokio::task::spawn_blocking(move || {
        engine
            .lock()
            .map_err(|_| "engine state poisoned".to_owned())
            .and_then(|mut e| e.confirm_boot(health).map_err(|err| err.to_string()))
    })
    .await;
    match confirmed {
        Ok(Ok(true)) => tracing::info!("the updated slot passed its health check: marked good"),
        Ok(Ok(false)) => {}
        Ok(Err(reason)) => tracing::warn!(%reason, "the pending update was not confirmed"),
        Err(err) => tracing::warn!(error = %err, "the confirmation task stopped"),
    }
}
