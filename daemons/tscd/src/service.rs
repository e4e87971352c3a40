//! The D-Bus interface `org.enigm.TrustSecurityCenter1` (thin: authorize, then read or ask the
//! engine). Reference: `docs/dbus/org.enigm.TrustSecurityCenter1.md`.

use std::sync::Arc;

use enigm_runtime::authz::{CallerPolicy, MethodClass};
use tokio::sync::{RwLock, mpsc, oneshot};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, fdo, interface};

use crate::model::{Level, Posture};

/// Well-known bus name.
pub const BUS_NAME: &str = "org.enigm.TrustSecurityCenter1";
/// Object path.
pub const OBJECT_PATH: &str = "/org/enigm/TrustSecurityCenter1";
/// Interface name.
pub const INTERFACE: &str = "org.enigm.TrustSecurityCenter1";

/// A request to re-evaluate now; the engine answers with the new posture.
pub type RefreshRequest = oneshot::Sender<Posture>;

use crate::engine::Trigger;

/// The served object.
pub struct TrustSecurityCenter {
    posture: Arc<RwLock<Posture>>,
    policy: CallerPolicy,
    refresh: mpsc::Sender<Trigger>,
}

impl TrustSecurityCenter {
    /// Serves `posture` (kept current by the engine) under `policy`; `refresh` reaches the engine.
    pub fn new(
        posture: Arc<RwLock<Posture>>,
        policy: CallerPolicy,
        refresh: mpsc::Sender<Trigger>,
    ) -> Self {
        Self {
            posture,
            policy,
            refresh,
        }
    }

    async fn authorize_property(
        &self,
        connection: &Connection,
        header: Option<Header<'_>>,
        name: &str,
    ) -> fdo::Result<()> {
        match header {
            Some(header) => self
                .policy
                .authorize(connection, &header, MethodClass::Read, name)
                .await
                .map(|_| ()),
            None => Ok(()),
        }
    }
}

#[interface(name = "org.enigm.TrustSecurityCenter1")]
impl TrustSecurityCenter {
    /// Every check with its result, observed value, why and fix (read class).
    async fn get_posture(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> fdo::Result<Posture> {
        self.policy
            .authorize(connection, &header, MethodClass::Read, "GetPosture")
            .await?;
        Ok(self.posture.read().await.clone())
    }

    /// Re-evaluates now and returns the new posture (change class).
    async fn refresh(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> fdo::Result<Posture> {
        let uid = self
            .policy
            .authorize(connection, &header, MethodClass::Change, "Refresh")
            .await?;
        tracing::info!(uid, "refresh requested");
        let (reply, answer) = oneshot::channel();
        self.refresh
            .send(Trigger::Refresh(reply))
            .await
            .map_err(|_| fdo::Error::Failed("the evaluation engine has stopped".into()))?;
        answer
            .await
            .map_err(|_| fdo::Error::Failed("the evaluation engine dropped the request".into()))
    }

    /// The HSI-style level, 0–4.
    #[zbus(property)]
    async fn level(
        &self,
        #[zbus(header)] header: Option<Header<'_>>,
        #[zbus(connection)] connection: &Connection,
    ) -> fdo::Result<Level> {
        self.authorize_property(connection, header, "Level").await?;
        Ok(self.posture.read().await.level)
    }

    /// Whether a runtime check failed.
    #[zbus(property)]
    async fn runtime_issue(
        &self,
        #[zbus(header)] header: Option<Header<'_>>,
        #[zbus(connection)] connection: &Connection,
    ) -> fdo::Result<bool> {
        self.authorize_property(connection, header, "RuntimeIssue")
            .await?;
        Ok(self.posture.read().await.runtime_issue)
    }

    /// When the posture was last evaluated, seconds since the Unix epoch.
    #[zbus(property)]
    async fn last_evaluated(
        &self,
        #[zbus(header)] header: Option<Header<'_>>,
        #[zbus(connection)] connection: &Connection,
    ) -> fdo::Result<u64> {
        self.authorize_property(connection, header, "LastEvaluated")
            .await?;
        Ok(self.posture.read().await.evaluated_at)
    }

    /// Emitted when any check's result or observed value changes.
    #[zbus(signal)]
    pub async fn posture_changed(
        emitter: &SignalEmitter<'_>,
        level: Level,
        runtime_issue: bool,
    ) -> zbus::Result<()>;
}
