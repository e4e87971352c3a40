//! The store over SQLite or PostgreSQL (sqlx's `Any` driver), and the repository methods.
//! Where reads and writes run is in [`readers`] and [`writer`].
//!
//! Every query is written once, in SQL both engines accept (`$n` parameters, `RETURNING`,
//! `ON CONFLICT`), and the schema comes from one set of migrations (`migrations/`), run at
//! open. Multi-row changes that must be atomic (enrollment and its transition, a transition
//! and its record, a replacement) run in one transaction, and every state change is a
//! compare-and-set (`UPDATE ... WHERE state = expected`), so concurrent nodes sharing a
//! PostgreSQL database cannot both win.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyArguments, AnyPoolOptions, AnyQueryResult, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Any, AnyConnection, Row, SqlSafeStr};

use crate::error::{Engine, StoreError};
use crate::lookup::{DeviceHandle, ServerSecret, nonce_hash, username_hash};
use crate::model::{
    Account, AccountId, Actor, Appraisal, AttestationRecord, ChallengeIssue, ChallengeOutcome,
    ChallengePeek, ConnectionRecord, Device, DeviceState, Epochs, NewAccount, NewDevice,
    PurgeCounts, Recorded, ResealCounts, Retention, Transition, VerifierData,
};
use crate::seal::{Aad, Sealer, ServerKeys};

/// The migrations, embedded: (version, description, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/0001_initial.sql"),
    ),
    (
        2,
        "mailboxes",
        include_str!("../../migrations/0002_mailboxes.sql"),
    ),
    (
        3,
        "key directory",
        include_str!("../../migrations/0003_key_directory.sql"),
    ),
];

type Result<T> = std::result::Result<T, StoreError>;

/// A statement that owns its SQL and arguments, so it can run on the writer thread.
type WriteQuery = sqlx::query::Query<'static, Any, AnyArguments>;

/// The backend's storage: accounts, devices, transitions, challenges, appraisals, connection
/// records and revocation epochs, with metadata sealed at rest.
#[derive(Debug, Clone)]
pub struct Store {
    /// Reads: on SQLite a few plain connections, on PostgreSQL the pool.
    reads: Readers,
    /// Writes: on SQLite one connection, on PostgreSQL the same pool as `pool`.
    writes: Writer,
    engine: Engine,
    keys: Arc<ServerKeys>,
    /// On PostgreSQL, where a listener for stored messages connects.
    listen_url: Option<Arc<str>>,
    /// Relay sends waiting for the next group commit.
    sends: Arc<std::sync::Mutex<mailboxes::SendQueue>>,
}

mod accounts;
mod attestation;
mod devices;
mod directory;
mod epochs;
mod mailboxes;
mod notify;
mod readers;
mod retention;
mod writer;

pub use directory::{DirectoryEntry, DirectoryRefusal};
pub use mailboxes::{Delivery, MailboxLimits, MailboxRefusal, NewMailbox, Queued};
pub use notify::{CHANNEL as MESSAGE_CHANNEL, MessageListener, MessageWake};
use readers::{ReadConn, Readers};
use writer::{Durability, JobFuture, Writer, begin};

fn engine_of(url: &str) -> Result<Engine> {
    let scheme = url.split(':').next().unwrap_or_default();
    match scheme {
        "sqlite" => Ok(Engine::Sqlite),
        "postgres" | "postgresql" => Ok(Engine::Postgres),
        other => Err(StoreError::UnsupportedUrl {
            scheme: other.to_owned(),
        }),
    }
}

fn ms(t: SystemTime) -> Result<i64> {
    let d = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| StoreError::TimeOutOfRange)?;
    i64::try_from(d.as_millis()).map_err(|_| StoreError::TimeOutOfRange)
}

fn dur_ms(d: Duration) -> Result<i64> {
    i64::try_from(d.as_millis()).map_err(|_| StoreError::TimeOutOfRange)
}

fn time(v: i64) -> SystemTime {
    match u64::try_from(v) {
        Ok(v) => UNIX_EPOCH + Duration::from_millis(v),
        Err(_) => UNIX_EPOCH,
    }
}

fn random_id() -> Result<String> {
    let mut b = [0u8; 16];
    openssl::rand::rand_bytes(&mut b).map_err(|source| StoreError::Corrupt {
        what: "random id",
        detail: source.to_string(),
    })?;
    Ok(hex::encode(b))
}

fn col<T>(row: &AnyRow, name: &'static str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(name).map_err(StoreError::db(name))
}

fn state(text: &str) -> Result<DeviceState> {
    text.parse().map_err(
        |e: enigm_backend_lifecycle::LifecycleError| StoreError::Corrupt {
            what: "device state",
            detail: e.to_string(),
        },
    )
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

fn is_fk_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_foreign_key_violation())
}

fn not_found_device(handle: &DeviceHandle) -> StoreError {
    StoreError::NotFound {
        what: "device",
        key: handle.to_string(),
    }
}

impl Store {
    /// Open the database at `url` (`sqlite://PATH?mode=rwc` or `postgres://...`), switch an
    /// SQLite file to WAL mode, and run the migrations.
    ///
    /// On SQLite every write runs on one connection owned by a writer thread (SQLite has
    /// one write lock per file, so more writers only queue in its busy handler) and reads
    /// use a few connections of their own. On PostgreSQL one pool serves both.
    pub async fn open(url: &str, keys: ServerKeys) -> Result<Store> {
        let engine = engine_of(url)?;
        sqlx::any::install_default_drivers();
        // No liveness ping before handing out a pooled connection: a round trip (or, on
        // SQLite, a hop to the connection's thread) per query for nothing, since a broken
        // connection fails its query with a clear error anyway and is then dropped.
        let connect = |max: u32| async move {
            AnyPoolOptions::new()
                .max_connections(max)
                .test_before_acquire(false)
                .connect(url)
                .await
                .map_err(|source| StoreError::Connect { engine, source })
        };
        let migrations = MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        let migrator = Migrator::with_migrations(migrations);
        let migrate_err = |source| StoreError::Migrate { engine, source };
        let (reads, writes) = match engine {
            Engine::Sqlite => {
                // The writer first: it switches the file to WAL mode before readers open it.
                let writes = Writer::start_sqlite(url).await?;
                let reads = Readers::open_sqlite(url).await?;
                // Migrations run before anything else writes, so a reader connection can
                // run them (SQLite connections may all write; sqlx's default
                // `synchronous = FULL` applies).
                migrator
                    .run(&mut *reads.get().await?)
                    .await
                    .map_err(migrate_err)?;
                (reads, writes)
            }
            Engine::Postgres => {
                let pool = connect(10).await?;
                migrator.run(&pool).await.map_err(migrate_err)?;
                (Readers::Pool(pool.clone()), Writer::Pool(pool))
            }
        };
        tracing::info!(%engine, "storage opened and migrated");
        Ok(Store {
            reads,
            writes,
            engine,
            keys: Arc::new(keys),
            listen_url: (engine == Engine::Postgres).then(|| Arc::from(url)),
            sends: Arc::default(),
        })
    }

    /// Which engine this store runs on.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The lookup secret (for computing handles with [`crate::handle`]).
    pub fn lookup_secret(&self) -> &ServerSecret {
        &self.keys.lookup
    }

    /// Close every connection, for every clone of this store: later calls on a clone fail
    /// with a clear error. (SQLite checkpoints its WAL into the file when its last connection
    /// closes; dropping every clone closes them too.)
    pub async fn close(self) {
        if let Readers::Pool(pool) = &self.reads {
            pool.close().await;
        }
        self.writes.close().await;
        self.reads.close().await;
    }

    /// A connection to read on.
    async fn reader(&self) -> Result<ReadConn<'_>> {
        self.reads.get().await
    }

    /// Run `job` on the write connection with `durability` (see [`Writer::run`]).
    async fn write<T, F>(&self, durability: Durability, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> JobFuture<'c, T> + Send + 'static,
    {
        self.writes.run(durability, job).await
    }

    /// Run one statement (its SQL and arguments owned) on the write connection with
    /// `durability`; a database error goes through `on_error`.
    async fn execute_write<M>(
        &self,
        durability: Durability,
        query: WriteQuery,
        on_error: M,
    ) -> Result<AnyQueryResult>
    where
        M: FnOnce(sqlx::Error) -> StoreError + Send + 'static,
    {
        self.write(durability, move |conn| {
            Box::pin(async move { query.execute(conn).await.map_err(on_error) })
        })
        .await
    }

    fn sealer(&self) -> &Sealer {
        &self.keys.sealer
    }

    fn seal_json<T: serde::Serialize>(&self, aad: Aad<'_>, value: &T) -> Result<Vec<u8>> {
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
            what: "value to seal",
            detail: e.to_string(),
        })?;
        Ok(self.sealer().seal(aad, &bytes)?)
    }

    fn open_json<T: serde::de::DeserializeOwned>(
        &self,
        aad: Aad<'_>,
        blob: &[u8],
        what: &'static str,
    ) -> Result<T> {
        let bytes = self.sealer().open(aad, blob)?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            what,
            detail: e.to_string(),
        })
    }

    fn open_text(&self, aad: Aad<'_>, blob: &[u8], what: &'static str) -> Result<String> {
        let bytes = self.sealer().open(aad, blob)?;
        String::from_utf8(bytes).map_err(|e| StoreError::Corrupt {
            what,
            detail: e.to_string(),
        })
    }
}
