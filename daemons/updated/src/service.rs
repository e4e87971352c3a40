//! `org.enigm.Update1`: `Check`, `Download`, `Apply`, `GetStatus`, and the `StateChanged` and
//! `Progress` signals. Each method authorizes the caller by its bus-verified uid (`Check` and
//! `GetStatus` read class, `Download` and `Apply` change class), runs the engine's step on a
//! blocking thread (one step at a time) and answers with the new state.
//!
//! Errors are `org.enigm.Update1.Error.Failed` (a step failed: the reason says which check),
//! `org.enigm.Update1.Error.OutOfOrder` and `org.enigm.Update1.Error.Busy`; a refused caller gets
//! `org.freedesktop.DBus.Error.AccessDenied`.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use enigm_runtime::authz::{CallerPolicy, MethodClass};
use enigm_update_engine::{Engine, EngineError, State};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, fdo, interface};

/// Well-known bus name.
pub const BUS_NAME: &str = "org.enigm.Update1";
/// Object path.
pub const OBJECT_PATH: &str = "/org/enigm/Update1";

/// The errors of `org.enigm.Update1`.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.enigm.Update1.Error")]
pub enum UpdateError {
    /// A bus error, or a standard one (`AccessDenied`).
    #[zbus(error)]
    ZBus(zbus::Error),
    /// A step failed.
    Failed(String),
    /// A step asked for before the one it needs.
    OutOfOrder(String),
    /// Another step is running.
    Busy(String),
}

impl From<fdo::Error> for UpdateError {
    fn from(err: fdo::Error) -> Self {
        UpdateError::ZBus(zbus::Error::FDO(Box::new(err)))
    }
}

impl From<EngineError> for UpdateError {
    fn from(err: EngineError) -> Self {
        match err {
            EngineError::OutOfOrder { .. } => UpdateError::OutOfOrder(err.to_string()),
            other => UpdateError::Failed(other.to_string()),
        }
    }
}

/// (state, version, detail) of a state: the version of the image concerned, and the slot
/// written or the reason of a failure.
pub fn describe(state: &State) -> (String, String, String) {
    let (version, detail) = match state {
        State::Idle | State::UpToDate => (String::new(), String::new()),
        State::Available(m) | State::Downloaded(m) => (m.version.clone(), String::new()),
        State::Applied { manifest, slot } => (manifest.version.clone(), slot.to_string()),
        State::Failed { step, reason } => (String::new(), format!("{step}: {reason}")),
    };
    (state.name().to_owned(), version, detail)
}

/// The engine, shared with the blocking threads that run its steps.
pub type SharedEngine = Arc<Mutex<Engine<enigm_slots::GptBootControl<std::fs::File>>>>;

/// The served object.
pub struct Update {
    engine: SharedEngine,
    policy: CallerPolicy,
    running: Arc<tokio::sync::Mutex<()>>,
}

impl Update {
    /// Serves `engine` under `policy`.
    pub fn new(engine: SharedEngine, policy: CallerPolicy) -> Self {
        Self {
            engine,
            policy,
            running: Arc::new(tokio::sync::Mutex::new(())),
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Which engine step to run.
#[derive(Debug, Clone, Copy)]
enum Step {
    Check,
    Download,
    Apply,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Check => "check",
            Step::Download => "download",
            Step::Apply => "apply",
        }
    }
}

impl Update {
    /// Runs `step` on a blocking thread, relaying its progress as signals, and announces the
    /// new state.
    async fn run(
        &self,
        step: Step,
        emitter: &SignalEmitter<'_>,
    ) -> Result<(String, String, String), UpdateError> {
        let Ok(_guard) = self.running.try_lock() else {
            return Err(UpdateError::Busy("another update step is running".into()));
        };
        let engine = self.engine.clone();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, u64)>();
        let work = tokio::task::spawn_blocking(move || {
            let mut engine = engine
                .lock()
                .map_err(|_| UpdateError::Failed("engine state poisoned".into()))?;
            let mut last_percent = u64::MAX;
            let mut progress = |done: u64, total: u64| {
                let percent = done.saturating_mul(100) / total.max(1);
                if percent != last_percent {
                    last_percent = percent;
                    let _ = tx.send((done, total));
                }
            };
            let result = match step {
                Step::Check => engine.check(now()).map(|_| ()),
                Step::Download => engine.download(now(), &mut progress).map(|_| ()),
                Step::Apply => engine.apply(&mut progress).map(|_| ()),
            };
            let state = describe(engine.state());
            Ok::<_, UpdateError>((result, state))
        });
        while let Some((done, total)) = rx.recv().await {
            Self::progress(emitter, step.name(), done, total).await?;
        }
        let (result, state) = work
            .await
            .map_err(|e| UpdateError::Failed(format!("{} step stopped: {e}", step.name())))??;
        Self::state_changed(emitter, &state.0, &state.1, &state.2).await?;
        match result {
            Ok(()) => {
                tracing::info!(step = step.name(), state = %state.0, version = %state.1, "update step done");
                Ok(state)
            }
            Err(err) => {
                tracing::warn!(step = step.name(), error = %err, "update step failed");
                Err(err.into())
            }
        }
    }
}

/// Whether a scheduled check may run in `state`: not once an image is downloaded or applied
/// (a check would replace what the owner is about to install or has installed).
pub fn scheduled_check_allowed(state: &State) -> bool {
    !matches!(state, State::Downloaded(_) | State::Applied { .. })
}

impl Update {
    /// A check started by the schedule rather than a caller: the same step and signals;
    /// skipped (`None`) while another step runs or once an image is downloaded or applied.
    pub async fn scheduled_check(
        &self,
        emitter: &SignalEmitter<'_>,
    ) -> Option<Result<(String, String, String), UpdateError>> {
        let allowed = self
            .engine
            .try_lock()
            .is_ok_and(|engine| scheduled_check_allowed(engine.state()));
        if !allowed {
            return None;
        }
        match self.run(Step::Check, emitter).await {
            Err(UpdateError::Busy(_)) => None,
            other => Some(other),
        }
    }
}

#[interface(name = "org.enigm.Update1")]
impl Update {
    /// Refreshes the TUF metadata and opens the offered manifest (read class). Returns
    /// (state, version, detail): `available` with the version, or `up-to-date`.
    async fn check(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(String, String, String), UpdateError> {
        self.policy
            .authorize(connection, &header, MethodClass::Read, "Check")
            .await?;
        self.run(Step::Check, &emitter).await
    }

    /// Downloads the available image's payload (change class), with `Progress` signals.
    async fn download(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(String, String, String), UpdateError> {
        let uid = self
            .policy
            .authorize(connection, &header, MethodClass::Change, "Download")
            .await?;
        tracing::info!(uid, "download requested");
        self.run(Step::Download, &emitter).await
    }

    /// Installs the downloaded image into the inactive slot and makes it boot next (change
    /// class), with `Progress` signals. The detail is the slot written.
    async fn apply(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(String, String, String), UpdateError> {
        let uid = self
            .policy
            .authorize(connection, &header, MethodClass::Change, "Apply")
            .await?;
        tracing::info!(uid, "apply requested");
        self.run(Step::Apply, &emitter).await
    }

    /// The current (state, version, detail) (read class).
    async fn get_status(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(String, String, String), UpdateError> {
        self.policy
            .authorize(connection, &header, MethodClass::Read, "GetStatus")
            .await?;
        // Never wait for a step here (the runtime has one thread): a step holding the engine
        // means busy.
        if self.running.try_lock().is_err() {
            return Ok(("busy".into(), String::new(), String::new()));
        }
        match self.engine.try_lock() {
            Ok(engine) => Ok(describe(engine.state())),
            Err(_) => Ok(("busy".into(), String::new(), String::new())),
        }
    }

    /// The state moved on (after every step).
    #[zbus(signal)]
    async fn state_changed(
        emitter: &SignalEmitter<'_>,
        state: &str,
        version: &str,
        detail: &str,
    ) -> zbus::Result<()>;

    /// Progress of a download or an apply: bytes done of total.
    #[zbus(signal)]
    async fn progress(
        emitter: &SignalEmitter<'_>,
        step: &str,
        done: u64,
        total: u64,
    ) -> zbus::Result<()>;
}

/// The served `org.enigm.PostureSignal1` object (open to every caller: it tells only whether
/// the running slot is confirmed and whether the last update step failed).
pub struct PostureSignal {
    engine: SharedEngine,
}

impl PostureSignal {
    /// Reports on `engine`.
    pub fn new(engine: SharedEngine) -> Self {
        Self { engine }
    }
}

#[interface(name = "org.enigm.PostureSignal1")]
impl PostureSignal {
    /// `(pass|fail|unavailable, observed)` for enigm-tscd's `signal.update` check. A step in
    /// progress holds the engine: then the answer is `unavailable` rather than a wait.
    async fn get_signal(&self) -> (String, String) {
        match self.engine.try_lock() {
            Ok(mut engine) => engine.signal(),
            Err(_) => ("unavailable".into(), "an update step is running".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use enigm_manifest::{Manifest, VerityInfo};
    use enigm_slots::Slot;

    #[test]
    fn scheduled_checks_never_replace_a_download_or_an_install() {
        let manifest = Manifest {
            version: "2".into(),
            rollback_index: 2,
            hardware: "hw".into(),
            root_size: 4096,
            root_sha256: String::new(),
            verity: VerityInfo {
                root_hash: String::new(),
                salt: String::new(),
                uuid: String::new(),
                data_block_size: 4096,
                hash_block_size: 4096,
                hash_size: 4096,
                hash_sha256: String::new(),
            },
        };
        let cases = [
            (State::Idle, true),
            (State::UpToDate, true),
            (State::Available(manifest.clone()), true),
            (
                State::Failed {
                    step: "check",
                    reason: "offline".into(),
                },
                true,
            ),
            (State::Downloaded(manifest.clone()), false),
            (
                State::Applied {
                    manifest,
                    slot: Slot::B,
                },
                false,
            ),
        ];
        for (state, allowed) in cases {
            assert_eq!(scheduled_check_allowed(&state), allowed, "{}", state.name());
        }
    }
}
