//! The write path: on SQLite one connection owned by a dedicated writer thread, on
//! PostgreSQL the shared pool.
//!
//! SQLite has one write lock per file, so several writer connections only queue in its
//! busy handler (which sleeps in steps of milliseconds). Every statement is a hop to the
//! connection's own thread and back; on the server's runtime each hop back also waits in
//! line behind every other ready task (TLS, HTTP/2, signatures), while the write lock is
//! held. So the writes run as jobs on a thread of their own with its own small runtime:
//! the lock is held only for the statements themselves. A job runs to the end even when
//! its caller gives up waiting, so a write is never cut off half-way.
//!
//! The commit durability ([`Durability`]) is a per-connection pragma on SQLite, changed
//! only when a job asks for another one than the last.

use std::future::Future;
use std::pin::Pin;

use sqlx::{Any, AnyConnection, AnyPool, Connection, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Engine, StoreError};

type Result<T> = std::result::Result<T, StoreError>;

/// The future a write job returns, borrowing the connection it runs on.
pub(super) type JobFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'c>>;

/// How durable a write must be before its commit returns (SQLite in WAL mode; on
/// PostgreSQL the server's `synchronous_commit` setting decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    /// Trust changes (accounts, enrollment, state changes, revocation epochs, resealing,
    /// purges, migrations): the WAL reaches the disk at every commit (`synchronous =
    /// FULL`), so a power loss right after cannot undo them.
    Synced,
    /// The attestation hot path (challenges, appraisal records, the verifier's last clock,
    /// connection records): survives a crash of the process and stays consistent after a
    /// power loss, which may lose the last few of them (`synchronous = NORMAL`). A lost
    /// challenge is retried by the device; a lost record is history, not trust.
    Relaxed,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Durability::Synced => "PRAGMA synchronous = FULL",
            Durability::Relaxed => "PRAGMA synchronous = NORMAL",
        }
    }
}

/// A job for the SQLite writer thread, its result type erased (it sends the result itself).
type ErasedJob = Box<
    dyn for<'c> FnOnce(&'c mut AnyConnection) -> Pin<Box<dyn Future<Output = ()> + Send + 'c>>
        + Send,
>;

pub(super) enum Message {
    Job(Durability, ErasedJob),
    Close(oneshot::Sender<()>),
}

/// Where writes go.
#[derive(Debug, Clone)]
pub(super) enum Writer {
    /// SQLite: the writer thread's queue.
    Sqlite(mpsc::UnboundedSender<Message>),
    /// PostgreSQL: the pool.
    Pool(AnyPool),
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Message::Job(..) => "Job",
            Message::Close(_) => "Close",
        })
    }
}

impl Writer {
    /// Start the SQLite writer thread on the database at `url`: it opens the connection,
    /// switches the file to WAL mode (persistent in the file, and needed before the
    /// readers open it) and then runs jobs in the order they arrive.
    pub(super) async fn start_sqlite(url: &str) -> Result<Writer> {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Message>();
        let (ready_tx, ready) = oneshot::channel::<Result<()>>();
        let url = url.to_owned();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = ready_tx.send(Err(StoreError::Writer(err.to_string())));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let mut conn = match open_sqlite(&url).await {
                        Ok(conn) => conn,
                        Err(err) => {
                            let _ = ready_tx.send(Err(err));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let mut current = None;
                    let mut closed_by = None;
                    while let Some(message) = queue.recv().await {
                        match message {
                            Message::Job(durability, job) => {
                                if current != Some(durability) {
                                    // Forget the setting first: if the pragma fails, the
                                    // next job sets it again.
                                    current = None;
                                    if sqlx::query(durability.pragma())
                                        .execute(&mut conn)
                                        .await
                                        .is_err()
                                    {
                                        // The job's own statements report the error.
                                    } else {
                                        current = Some(durability);
                                    }
                                }
                                job(&mut conn).await;
                            }
                            Message::Close(done) => {
                                closed_by = Some(done);
                                break;
                            }
                        }
                    }
                    // Closing the last connection checkpoints the WAL into the file.
                    let _ = conn.close().await;
                    if let Some(done) = closed_by {
                        let _ = done.send(());
                    }
                });
            })
            .map_err(|err| StoreError::Writer(err.to_string()))?;
        drop(thread);
        ready
            .await
            .map_err(|_| StoreError::Writer("the writer thread stopped while opening".into()))??;
        Ok(Writer::Sqlite(jobs))
    }

    /// Run `job` on a write connection with `durability` and return its result.
    pub(super) async fn run<T, F>(&self, durability: Durability, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> JobFuture<'c, T> + Send + 'static,
    {
        match self {
            Writer::Sqlite(jobs) => {
                let (result_tx, result) = oneshot::channel();
                let erased: ErasedJob = Box::new(move |conn| {
                    Box::pin(async move {
                        let _ = result_tx.send(job(conn).await);
                    })
                });
                jobs.send(Message::Job(durability, erased))
                    .map_err(|_| StoreError::Writer("the store is closed".into()))?;
                result
                    .await
                    .map_err(|_| StoreError::Writer("the writer thread stopped".into()))?
            }
            Writer::Pool(pool) => {
                let mut conn = pool
                    .acquire()
                    .await
                    .map_err(StoreError::db("acquiring a connection"))?;
                job(&mut conn).await
            }
        }
    }

    /// Stop the SQLite writer thread after the jobs already queued, closing its
    /// connection; the pool is closed by its owner.
    pub(super) async fn close(&self) {
        if let Writer::Sqlite(jobs) = self {
            let (done_tx, done) = oneshot::channel();
            if jobs.send(Message::Close(done_tx)).is_ok() {
                let _ = done.await;
            }
        }
    }
}

/// Open the SQLite writer connection, switch the file to WAL mode and turn on secure delete.
async fn open_sqlite(url: &str) -> Result<AnyConnection> {
    let mut conn = AnyConnection::connect(url)
        .await
        .map_err(|source| StoreError::Connect {
            engine: Engine::Sqlite,
            source,
        })?;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode = WAL")
        .fetch_one(&mut conn)
        .await
        .map_err(StoreError::db("enabling WAL mode"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::NotWal { mode });
    }
    // Deleted content is overwritten with zeros, not left in free space: an acknowledged or
    // expired relay envelope leaves no bytes in the file.
    sqlx::query("PRAGMA secure_delete = ON")
        .execute(&mut conn)
        .await
        .map_err(StoreError::db("enabling secure delete"))?;
    Ok(conn)
}

/// Begin a write transaction on `conn`. On SQLite it takes the write lock at once (`BEGIN
/// IMMEDIATE`), so a transaction that reads before it writes cannot fail half-way on a
/// stale snapshot; PostgreSQL's row locks do the same for the compare-and-set updates.
pub(super) async fn begin<'c>(
    conn: &'c mut AnyConnection,
    engine: Engine,
    op: &'static str,
) -> Result<Transaction<'c, Any>> {
    match engine {
        Engine::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await,
        Engine::Postgres => conn.begin().await,
    }
    .map_err(StoreError::db(op))
}
