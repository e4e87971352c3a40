//! The evaluation engine: one task that re-evaluates on file changes, on a timer and on
//! `Refresh()`, stores the posture and signals changes.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{RwLock, mpsc};
use zbus::Connection;
use zbus::object_server::InterfaceRef;

use crate::evaluate::Evaluator;
use crate::model::Posture;
use crate::service::{OBJECT_PATH, RefreshRequest, TrustSecurityCenter};
use crate::signals;

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Why the engine re-evaluates.
#[derive(Debug)]
pub enum Trigger {
    /// A watched file changed.
    FileChanged,
    /// The periodic timer fired.
    Timer,
    /// A caller asked for a refresh and waits for the result.
    Refresh(RefreshRequest),
}

/// Evaluates once, gathering signals from `connection` when there is one.
pub async fn evaluate_now(evaluator: &Evaluator, connection: Option<&Connection>) -> Posture {
    let snapshot = match connection {
        Some(connection) => signals::gather(connection).await,
        None => signals::SignalSnapshot::default(),
    };
    evaluator.evaluate(&snapshot, now_unix())
}

/// Runs until every trigger sender is gone.
pub async fn run(
    evaluator: Evaluator,
    connection: Connection,
    posture: Arc<RwLock<Posture>>,
    mut triggers: mpsc::Receiver<Trigger>,
    interval: Duration,
    debounce: Duration,
) -> zbus::Result<()> {
    let iface: InterfaceRef<TrustSecurityCenter> =
        connection.object_server().interface(OBJECT_PATH).await?;
    let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        let trigger = tokio::select! {
            trigger = triggers.recv() => match trigger {
                Some(trigger) => trigger,
                None => return Ok(()),
            },
            _ = timer.tick() => Trigger::Timer,
        };
        let mut waiting = Vec::new();
        if matches!(trigger, Trigger::FileChanged) {
            waiting = crate::watch::settle(&mut triggers, debounce).await;
        }
        let fresh = evaluate_now(&evaluator, Some(&connection)).await;
        let changed = {
            let mut current = posture.write().await;
            let changed = fresh.differs_from(&current);
            *current = fresh.clone();
            changed
        };
        tracing::debug!(?trigger, level = fresh.level, changed, "posture evaluated");
        if changed {
            tracing::info!(
                level = fresh.level,
                runtime_issue = fresh.runtime_issue,
                "posture changed"
            );
            let emitter = iface.signal_emitter();
            TrustSecurityCenter::posture_changed(emitter, fresh.level, fresh.runtime_issue).await?;
            let object = iface.get().await;
            object.level_changed(emitter).await?;
            object.runtime_issue_changed(emitter).await?;
        }
        iface
            .get()
            .await
            .last_evaluated_changed(iface.signal_emitter())
            .await?;
        for trigger in std::iter::once(trigger).chain(waiting) {
            if let Trigger::Refresh(reply) = trigger {
                let _ = reply.send(fresh.clone());
            }
        }
    }
}
