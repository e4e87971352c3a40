//! The store's error type.

use crate::lookup::{DeviceHandle, LookupError};
use crate::model::DeviceState;
use crate::seal::SealError;

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// An SQLite file (the embedded default).
    Sqlite,
    /// A PostgreSQL server (several backend nodes share one database).
    Postgres,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Sqlite => "SQLite",
            Engine::Postgres => "PostgreSQL",
        })
    }
}

/// Errors of the store. Messages name tables, handles and account ids (opaque), never
/// secrets, usernames or raw device identifiers.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is neither `sqlite:` nor `postgres:`/`postgresql:`.
    #[error(
        "unsupported database URL scheme {scheme:?}: use sqlite://PATH?mode=rwc or postgres://..."
    )]
    UnsupportedUrl {
        /// The scheme found.
        scheme: String,
    },
    /// Connecting failed.
    #[error("cannot connect to the {engine} database: {source}")]
    Connect {
        /// The engine.
        engine: Engine,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The SQLite writer thread could not start, or is gone (the store was closed).
    #[error("SQLite writer: {0}")]
    Writer(String),
    /// SQLite refused to switch to WAL mode.
    #[error("SQLite database is in journal mode {mode:?}, WAL could not be enabled")]
    NotWal {
        /// The mode it reported.
        mode: String,
    },
    /// Running the migrations failed.
    #[error("cannot migrate the {engine} database: {source}")]
    Migrate {
        /// The engine.
        engine: Engine,
        /// The migrator's error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A query failed.
    #[error("database error while {op}: {source}")]
    Db {
        /// What the store was doing.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A sealed value could not be sealed or opened.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// A keyed hash could not be computed, or a stored handle is malformed.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// A stored value opened but is not what it should be.
    #[error("corrupt {what} in the database: {detail}")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// A time outside the range the store keeps (milliseconds since 1970 in an i64).
    #[error("time out of range for storage")]
    TimeOutOfRange,
    /// The username is taken.
    #[error("an account with this username already exists")]
    AccountExists,
    /// The handle is already enrolled.
    #[error("device {handle} is already enrolled")]
    DeviceExists {
        /// The handle.
        handle: DeviceHandle,
    },
    /// A record the operation needs does not exist.
    #[error("{what} {key} not found")]
    NotFound {
        /// Kind of record.
        what: &'static str,
        /// Its key (account id or handle).
        key: String,
    },
    /// Compare-and-set on a device state failed: it is not in the expected state.
    #[error("device {handle} is {actual}, not {expected}: transition refused")]
    StateConflict {
        /// The device.
        handle: DeviceHandle,
        /// The state the caller expected.
        expected: DeviceState,
        /// The state it is in.
        actual: DeviceState,
    },
    /// A replacement was refused; nothing changed.
    #[error("replacing {old} by {new} refused: {reason}")]
    ReplaceRefused {
        /// The device to be replaced.
        old: DeviceHandle,
        /// The replacement.
        new: DeviceHandle,
        /// Why.
        reason: String,
    },
}

impl StoreError {
    pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Db { op, source }
    }
}
