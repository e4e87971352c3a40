//! `org.enigm.PrivacyMode1`: `Enable(s profile)`, `Disable()`, `Status()` and the
//! `StateChanged` signal; and `org.enigm.PostureSignal1` for `enigm-tscd`.
//!
//! `Enable` and `Disable` are change class (the device owner and the admin), `Status` read
//! class; the caller is the bus-verified uid. Every answer is read back from the kernel.
//! Errors: `org.enigm.PrivacyMode1.Error.UnknownProfile`, `...Error.Failed` (the mode may
//! then be degraded, never silently off); a refused caller gets
//! `org.freedesktop.DBus.Error.AccessDenied`.

use std::sync::{Arc, Mutex};

use enigm_runtime::authz::{CallerPolicy, MethodClass};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, fdo, interface};

use crate::mode::{ModeError, PrivacyMode};
use crate::profile::ProfileError;
use crate::status::Status;

/// Well-known bus name.
pub const BUS_NAME: &str = "org.enigm.PrivacyMode1";
/// Object path.
pub const OBJECT_PATH: &str = "/org/enigm/PrivacyMode1";

/// The errors of `org.enigm.PrivacyMode1`.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.enigm.PrivacyMode1.Error")]
pub enum PrivacyError {
    /// A bus error, or a standard one (`AccessDenied`).
    #[zbus(error)]
    ZBus(zbus::Error),
    /// No profile of that name.
    UnknownProfile(String),
    /// A switch failed; what was switched stays in force.
    Failed(String),
}

impl From<fdo::Error> for PrivacyError {
    fn from(err: fdo::Error) -> Self {
        PrivacyError::ZBus(zbus::Error::FDO(Box::new(err)))
    }
}

impl From<ModeError> for PrivacyError {
    fn from(err: ModeError) -> Self {
        match err {
            ModeError::Profile(ProfileError::Unknown(name)) => {
                PrivacyError::UnknownProfile(format!("no privacy profile named `{name}`"))
            }
            other => PrivacyError::Failed(other.to_string()),
        }
    }
}

/// Privacy Mode, shared with the blocking threads that switch it.
pub type SharedMode = Arc<Mutex<PrivacyMode>>;

/// (name, wanted, observed, ok) per component, as sent on the bus.
pub type Components = Vec<(String, String, String, bool)>;

fn components(status: &Status) -> Components {
    status
        .components
        .iter()
        .map(|c| (c.name.clone(), c.wanted.clone(), c.observed.clone(), c.ok))
        .collect()
}

async fn run<T: Send + 'static>(
    mode: &SharedMode,
    work: impl FnOnce(&mut PrivacyMode) -> Result<T, ModeError> + Send + 'static,
) -> Result<T, PrivacyError> {
    let mode = mode.clone();
    tokio::task::spawn_blocking(move || {
        let mut mode = mode
            .lock()
            .map_err(|_| PrivacyError::Failed("privacy state poisoned".into()))?;
        work(&mut mode).map_err(PrivacyError::from)
    })
    .await
    .map_err(|e| PrivacyError::Failed(format!("the switch stopped: {e}")))?
}

/// The served object.
pub struct PrivacyModeService {
    mode: SharedMode,
    policy: CallerPolicy,
    default_profile: String,
}

impl PrivacyModeService {
    /// Serves `mode` under `policy`; `Enable("")` turns on `default_profile`.
    pub fn new(mode: SharedMode, policy: CallerPolicy, default_profile: String) -> Self {
        Self {
            mode,
            policy,
            default_profile,
        }
    }
}

#[interface(name = "org.enigm.PrivacyMode1")]
impl PrivacyModeService {
    /// Turns profile `profile` on (the default profile when empty); change class. Returns
    /// (state, profile) read back from the kernel: `on`, or `degraded`.
    async fn enable(
        &self,
        profile: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(String, String), PrivacyError> {
        let uid = self
            .policy
            .authorize(connection, &header, MethodClass::Change, "Enable")
            .await?;
        let name = if profile.is_empty() {
            self.default_profile.clone()
        } else {
            profile
        };
        tracing::info!(uid, profile = %name, "Privacy Mode on requested");
        let result = run(&self.mode, move |mode| mode.enable(&name)).await;
        self.announce(&emitter).await;
        let status = result?;
        Ok((status.state.name().to_owned(), status.profile))
    }

    /// Turns Privacy Mode off (change class). Returns (state, profile).
    async fn disable(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(String, String), PrivacyError> {
        let uid = self
            .policy
            .authorize(connection, &header, MethodClass::Change, "Disable")
            .await?;
        tracing::info!(uid, "Privacy Mode off requested");
        let result = run(&self.mode, |mode| mode.disable()).await;
        self.announce(&emitter).await;
        let status = result?;
        Ok((status.state.name().to_owned(), status.profile))
    }

    /// (state, profile, components) read from the kernel now (read class): `off`, `on` or
    /// `degraded`; each component is (name, wanted, observed, ok).
    async fn status(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(String, String, Components), PrivacyError> {
        self.policy
            .authorize(connection, &header, MethodClass::Read, "Status")
            .await?;
        let status = run(&self.mode, |mode| mode.status()).await?;
        Ok((
            status.state.name().to_owned(),
            status.profile.clone(),
            components(&status),
        ))
    }

    /// The mode changed (after every Enable and Disable, also failed ones).
    #[zbus(signal)]
    async fn state_changed(
        emitter: &SignalEmitter<'_>,
        state: &str,
        profile: &str,
    ) -> zbus::Result<()>;
}

impl PrivacyModeService {
    async fn announce(&self, emitter: &SignalEmitter<'_>) {
        if let Ok(status) = run(&self.mode, |mode| mode.status()).await {
            let _ = Self::state_changed(emitter, status.state.name(), &status.profile).await;
        }
    }
}

/// Sends `StateChanged` for `status` from the object on `connection` (for changes the daemon
/// makes on its own, such as enforcement).
pub async fn announce(connection: &Connection, status: &Status) -> zbus::Result<()> {
    let emitter = SignalEmitter::new(connection, OBJECT_PATH)?;
    PrivacyModeService::state_changed(&emitter, status.state.name(), &status.profile).await
}

/// The served `org.enigm.PostureSignal1` object (open to every caller: it tells only whether
/// the kernel matches the owner's choice).
pub struct PostureSignal {
    mode: SharedMode,
}

impl PostureSignal {
    /// Reports on `mode`.
    pub fn new(mode: SharedMode) -> Self {
        Self { mode }
    }
}

#[interface(name = "org.enigm.PostureSignal1")]
impl PostureSignal {
    /// `(pass|fail|unavailable, observed)` for enigm-tscd's `signal.privacy-mode` check:
    /// pass when the kernel matches the owner's choice (on or off), fail when degraded.
    async fn get_signal(&self) -> (String, String) {
        match run(&self.mode, |mode| mode.status()).await {
            Ok(status) => status.signal(),
            Err(err) => ("unavailable".into(), format!("{err:?}")),
        }
    }
}
