//! The read path: on SQLite a few long-lived connections handed out without ceremony, on
//! PostgreSQL the shared pool.
//!
//! sqlx's pool pings every connection it takes back (a hop to the connection's thread and a
//! spawned task per query); for local SQLite files that buys nothing, so the SQLite readers
//! are plain connections behind async mutexes, taken by whichever is free first.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection};
use tokio::sync::{Mutex, MutexGuard};

use crate::error::{Engine, StoreError};

type Result<T> = std::result::Result<T, StoreError>;

/// How many SQLite reader connections to keep.
const SQLITE_READERS: usize = 3;

/// Where reads go.
#[derive(Debug, Clone)]
pub(super) enum Readers {
    /// SQLite: a few connections, and where the next search for a free one starts.
    Sqlite(Arc<(Vec<Mutex<AnyConnection>>, AtomicUsize)>),
    /// PostgreSQL: the pool.
    Pool(AnyPool),
}

impl Readers {
    /// Opens the SQLite reader connections on `url` (after the writer set WAL mode).
    pub(super) async fn open_sqlite(url: &str) -> Result<Readers> {
        let mut conns = Vec::with_capacity(SQLITE_READERS);
        for _ in 0..SQLITE_READERS {
            let conn = AnyConnection::connect(url)
                .await
                .map_err(|source| StoreError::Connect {
                    engine: Engine::Sqlite,
                    source,
                })?;
            conns.push(Mutex::new(conn));
        }
        Ok(Readers::Sqlite(Arc::new((conns, AtomicUsize::new(0)))))
    }

    /// A connection to read on, exclusively until the guard is dropped.
    pub(super) async fn get(&self) -> Result<ReadConn<'_>> {
        match self {
            Readers::Sqlite(shared) => {
                let (conns, next) = &**shared;
                let start = next.fetch_add(1, Ordering::Relaxed);
                for i in 0..conns.len() {
                    if let Ok(guard) = conns[(start + i) % conns.len()].try_lock() {
                        return Ok(ReadConn::Sqlite(guard));
                    }
                }
                Ok(ReadConn::Sqlite(conns[start % conns.len()].lock().await))
            }
            Readers::Pool(pool) => Ok(ReadConn::Pooled(
                pool.acquire()
                    .await
                    .map_err(StoreError::db("acquiring a connection"))?,
            )),
        }
    }

    /// Closes the SQLite connections when this is their last owner (other clones close
    /// them when dropped); the pool is closed by its owner.
    pub(super) async fn close(self) {
        if let Readers::Sqlite(shared) = self
            && let Ok((conns, _)) = Arc::try_unwrap(shared)
        {
            for conn in conns {
                let _ = conn.into_inner().close().await;
            }
        }
    }
}

/// A read connection, held exclusively.
pub(super) enum ReadConn<'a> {
    /// An SQLite reader, locked.
    Sqlite(MutexGuard<'a, AnyConnection>),
    /// A pooled PostgreSQL connection.
    Pooled(PoolConnection<Any>),
}

impl Deref for ReadConn<'_> {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            ReadConn::Sqlite(guard) => guard,
            ReadConn::Pooled(conn) => conn,
        }
    }
}

impl DerefMut for ReadConn<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            ReadConn::Sqlite(guard) => guard,
            ReadConn::Pooled(conn) => conn,
        }
    }
}
