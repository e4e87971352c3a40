//! `org.enigm.ActiveDefense1`: `Scan`, `Findings`, `GetStatus` and the `FindingsChanged`
//! signal, plus `org.enigm.PostureSignal1` for `enigm-tscd`. Each method authorizes the caller
//! by its bus-verified uid (`Findings` and `GetStatus` read class, `Scan` change class); a scan
//! runs on a blocking thread, one at a time.
//!
//! Errors are `org.enigm.ActiveDefense1.Error.Failed` and `...Busy`; a refused caller gets
//! `org.freedesktop.DBus.Error.AccessDenied`.

use std::sync::{Arc, Mutex};

use enigm_runtime::authz::{CallerPolicy, MethodClass};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, fdo, interface};

use crate::engine::Engine;

/// Well-known bus name.
pub const BUS_NAME: &str = "org.enigm.ActiveDefense1";
/// Object path.
pub const OBJECT_PATH: &str = "/org/enigm/ActiveDefense1";

/// The errors of `org.enigm.ActiveDefense1`.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.enigm.ActiveDefense1.Error")]
pub enum DefenseError {
    /// A bus error, or a standard one (`AccessDenied`).
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The scan failed (its findings could not be persisted).
    Failed(String),
    /// A scan is already running.
    Busy(String),
}

impl From<fdo::Error> for DefenseError {
    fn from(err: fdo::Error) -> Self {
        DefenseError::ZBus(zbus::Error::FDO(Box::new(err)))
    }
}

/// The engine, shared with the blocking scan thread.
pub type SharedEngine = Arc<Mutex<Engine>>;

/// The served object.
#[derive(Clone)]
pub struct ActiveDefense {
    engine: SharedEngine,
    policy: CallerPolicy,
    running: Arc<tokio::sync::Mutex<()>>,
}

/// (findings, highest severity, complete) after a scan.
pub type ScanSummary = (u32, String, bool);

impl ActiveDefense {
    /// Serves `engine` under `policy`.
    pub fn new(engine: SharedEngine, policy: CallerPolicy) -> Self {
        Self {
            engine,
            policy,
            running: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Runs one scan (the scheduled ones too) and signals a change of findings.
    pub async fn run_scan(&self, emitter: &SignalEmitter<'_>) -> Result<ScanSummary, DefenseError> {
        let Ok(_guard) = self.running.try_lock() else {
            return Err(DefenseError::Busy("a scan is already running".into()));
        };
        let engine = self.engine.clone();
        let (changed, summary) = tokio::task::spawn_blocking(move || {
            let mut engine = engine
                .lock()
                .map_err(|_| DefenseError::Failed("engine state poisoned".into()))?;
            let changed = engine
                .scan()
                .map_err(|e| DefenseError::Failed(e.to_string()))?;
            Ok::<_, DefenseError>((changed, summary(&engine)))
        })
        .await
        .map_err(|e| DefenseError::Failed(format!("scan stopped: {e}")))??;
        if changed {
            Self::findings_changed(emitter, summary.0, &summary.1).await?;
        }
        Ok(summary)
    }
}

fn summary(engine: &Engine) -> ScanSummary {
    match engine.last() {
        Some(record) => (
            u32::try_from(record.findings.len()).unwrap_or(u32::MAX),
            record.highest(),
            record.complete,
        ),
        None => (0, "none".into(), false),
    }
}

#[interface(name = "org.enigm.ActiveDefense1")]
impl ActiveDefense {
    /// Runs a full scan now (change class). Returns (findings, highest severity, complete).
    async fn scan(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<ScanSummary, DefenseError> {
        let uid = self
            .policy
            .authorize(connection, &header, MethodClass::Change, "Scan")
            .await?;
        tracing::info!(uid, "scan requested");
        self.run_scan(&emitter).await
    }

    /// The last scan's findings as a JSON array (read class); `[]` before the first scan.
    async fn findings(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<String, DefenseError> {
        self.policy
            .authorize(connection, &header, MethodClass::Read, "Findings")
            .await?;
        let engine = self
            .engine
            .try_lock()
            .map_err(|_| DefenseError::Busy("a scan is running".into()))?;
        let findings = engine.last().map(|r| r.findings.as_slice()).unwrap_or(&[]);
        serde_json::to_string(findings).map_err(|e| DefenseError::Failed(e.to_string()))
    }

    /// (findings, highest severity, complete, seconds since the epoch of the last scan; 0
    /// before the first) (read class).
    async fn get_status(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(u32, String, bool, u64), DefenseError> {
        self.policy
            .authorize(connection, &header, MethodClass::Read, "GetStatus")
            .await?;
        let engine = self
            .engine
            .try_lock()
            .map_err(|_| DefenseError::Busy("a scan is running".into()))?;
        let (count, highest, complete) = summary(&engine);
        let at = engine.last().map_or(0, |r| r.scanned_at);
        Ok((count, highest, complete, at))
    }

    /// The set of findings changed (after a scan): how many now, and the highest severity.
    #[zbus(signal)]
    async fn findings_changed(
        emitter: &SignalEmitter<'_>,
        count: u32,
        highest: &str,
    ) -> zbus::Result<()>;
}

/// The served `org.enigm.PostureSignal1` object (open to every caller: it tells only whether
/// the last scan found a high or critical finding).
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
    /// `(pass|fail|unavailable, observed)` for enigm-tscd's `signal.defense` check; a running
    /// scan holds the engine, and then the answer is `unavailable` rather than a wait.
    async fn get_signal(&self) -> (String, String) {
        match self.engine.try_lock() {
            Ok(engine) => engine.signal(),
            Err(_) => ("unavailable".into(), "a scan is running".into()),
        }
    }
}
