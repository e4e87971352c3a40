//! Relay mailboxes: store-and-forward queues of opaque envelopes.
//!
//! A mailbox is a random queue id with two capabilities, one to send into it and one to
//! receive from it; the database keeps only their SHA-256 digests, compared in constant time,
//! and a wrong capability and a missing queue get the same answer. A message is committed
//! with `synchronous = FULL` before [`Store::enqueue`] returns, so an acknowledged send
//! survives a crash; sends that arrive together share one flush (group commit); it stays until the receiver acknowledges it or it expires. A device
//! suspended, revoked or retired loses its queues and what they hold in the same
//! transaction as the change (also [`Store::delete_mailboxes_of`]).

use base64::Engine as _;
use openssl::memcmp;
use tokio::sync::oneshot;

use super::*;

/// A new mailbox: its id and the two capabilities (returned once, never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMailbox {
    /// The queue id.
    pub queue: String,
    /// The capability to send into it (given to correspondents).
    pub send: String,
    /// The capability to receive from it (kept by the owner).
    pub receive: String,
}

/// What a queue accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxLimits {
    /// The largest envelope.
    pub max_envelope: usize,
    /// The most messages a queue holds.
    pub max_queued: i64,
    /// The longest time a message may wait.
    pub max_ttl: Duration,
}

/// A message to store: into which queue, with which send capability.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The queue id.
    pub queue: &'a str,
    /// The send capability.
    pub send: &'a str,
    /// The sender's message id.
    pub message_id: &'a str,
    /// The envelope.
    pub envelope: &'a [u8],
    /// When it expires.
    pub expires_at: SystemTime,
}

/// A message waiting in a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// The sender's message id.
    pub message_id: String,
    /// The envelope, as sent.
    pub envelope: Vec<u8>,
}

/// Why a mailbox operation was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailboxRefusal {
    /// No such queue, or the wrong capability for it (the same answer for both).
    #[error("no such queue, or the capability does not open it")]
    Capability,
    /// The envelope is larger than allowed.
    #[error("envelope of {size} bytes is over the {max}-byte limit")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The queue is full.
    #[error("the queue holds its limit of {0} messages")]
    QueueFull(i64),
    /// The expiry is in the past or beyond the longest allowed wait.
    #[error("expiry must be in the next {0} seconds")]
    Expiry(u64),
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

fn random_token(bytes: usize) -> Result<String> {
    let mut b = vec![0u8; bytes];
    openssl::rand::rand_bytes(&mut b).map_err(|e| StoreError::Writer(e.to_string()))?;
    Ok(b64().encode(b))
}

fn digest(capability: &str) -> String {
    hex::encode(openssl::sha::sha256(capability.as_bytes()))
}

/// Whether `capability` matches the stored `digest` (constant time).
fn opens(capability: &str, stored: &str) -> bool {
    let presented = digest(capability);
    presented.len() == stored.len() && memcmp::eq(presented.as_bytes(), stored.as_bytes())
}

impl Store {
    /// A new mailbox owned by device `owner`.
    pub async fn create_mailbox(&self, owner: &DeviceHandle, at: SystemTime) -> Result<NewMailbox> {
        let mailbox = NewMailbox {
            queue: random_token(16)?,
            send: random_token(32)?,
            receive: random_token(32)?,
        };
        let (owner, created) = (owner.clone(), ms(at)?);
        let row = mailbox.clone();
        self.write(Durability::Synced, move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO mailboxes (queue_id, owner, send_digest, receive_digest, \
                     created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(row.queue)
                .bind(owner.as_str().to_owned())
                .bind(digest(&row.send))
                .bind(digest(&row.receive))
                .bind(created)
                .execute(&mut *conn)
                .await
                .map_err(|e| {
                    if is_fk_violation(&e) {
                        not_found_device(&owner)
                    } else {
                        StoreError::db("creating a mailbox")(e)
                    }
                })?;
                Ok(())
            })
        })
        .await?;
        Ok(mailbox)
    }

    /// Stores the delivery's envelope as its message id in its queue, if its send capability
    /// opens it, until its expiry; committed durably before it returns. Sending the same
    /// message id again is accepted and changes nothing (a retried send).
    ///
    /// On SQLite, sends that arrive while a commit is under way wait and are stored together
    /// in the next transaction (group commit: one disk flush for all of them); each is checked
    /// on its own, so one refusal does not affect the others, and none returns before the
    /// commit. On PostgreSQL each send is its own transaction on the pool, and the server
    /// flushes concurrent commits together.
    pub async fn enqueue(
        &self,
        delivery: Delivery<'_>,
        now: SystemTime,
        limits: MailboxLimits,
    ) -> Result<std::result::Result<(), MailboxRefusal>> {
        let Delivery {
            queue,
            send,
            message_id,
            envelope,
            expires_at,
        } = delivery;
        if envelope.len() > limits.max_envelope {
            return Ok(Err(MailboxRefusal::TooLarge {
                size: envelope.len(),
                max: limits.max_envelope,
            }));
        }
        if expires_at <= now || expires_at > now + limits.max_ttl {
            return Ok(Err(MailboxRefusal::Expiry(limits.max_ttl.as_secs())));
        }
        let row = SendRow {
            queue: queue.to_owned(),
            send: send.to_owned(),
            message_id: message_id.to_owned(),
            envelope: envelope.to_vec(),
            stored: ms(now)?,
            expires: ms(expires_at)?,
            max_queued: limits.max_queued,
        };
        if self.engine == Engine::Postgres {
            // PostgreSQL commits concurrent transactions on the pool's connections together
            // by itself; a send is its own transaction.
            let engine = self.engine;
            let answers = self
                .write(Durability::Synced, move |conn| {
                    Box::pin(store_batch(conn, engine, vec![row]))
                })
                .await?;
            return answers
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::Writer("a send had no answer".into()));
        }
        let (reply, answer) = oneshot::channel();
        let pending = PendingSend { row, reply };
        let start_draining = {
            let mut sends = self
                .sends
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            sends.pending.push(pending);
            !std::mem::replace(&mut sends.draining, true)
        };
        if start_draining {
            // A task of its own, so a caller that gives up waiting cannot strand the others.
            tokio::spawn(self.clone().drain_sends());
        }
        answer
            .await
            .map_err(|_| StoreError::Writer("a message batch was dropped".into()))?
    }

    /// Commits the waiting sends, batch after batch, until none is left.
    async fn drain_sends(self) {
        loop {
            let batch = {
                let mut sends = self
                    .sends
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if sends.pending.is_empty() {
                    sends.draining = false;
                    return;
                }
                let take = sends.pending.len().min(MAX_BATCH);
                sends.pending.drain(..take).collect::<Vec<_>>()
            };
            let (requests, replies): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|p| (p.row, p.reply)).unzip();
            let engine = self.engine;
            let outcome = self
                .write(Durability::Synced, move |conn| {
                    Box::pin(store_batch(conn, engine, requests))
                })
                .await;
            match outcome {
                Ok(answers) => {
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(Ok(answer));
                    }
                }
                Err(err) => {
                    let detail = err.to_string();
                    for reply in replies {
                        let _ = reply.send(Err(StoreError::Writer(format!(
                            "storing a message batch: {detail}"
                        ))));
                    }
                }
            }
        }
    }

    /// Up to `limit` unexpired messages of `queue`, oldest first, if `receive` opens it.
    pub async fn fetch_messages(
        &self,
        queue: &str,
        receive: &str,
        now: SystemTime,
        limit: i64,
    ) -> Result<std::result::Result<Vec<Queued>, MailboxRefusal>> {
        if !self.receive_opens(queue, receive).await? {
            return Ok(Err(MailboxRefusal::Capability));
        }
        let rows = sqlx::query(
            "SELECT message_id, envelope FROM mailbox_messages \
             WHERE queue_id = $1 AND expires_at > $2 ORDER BY stored_at, message_id LIMIT $3",
        )
        .bind(queue)
        .bind(ms(now)?)
        .bind(limit)
        .fetch_all(&mut *self.reader().await?)
        .await
        .map_err(StoreError::db("reading a queue"))?;
        let messages = rows
            .iter()
            .map(|r| {
                Ok(Queued {
                    message_id: col(r, "message_id")?,
                    envelope: col(r, "envelope")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Ok(messages))
    }

    /// Deletes message `message_id` from `queue` (the receiver's acknowledgement), if
    /// `receive` opens it. Returns whether it was there.
    pub async fn acknowledge(
        &self,
        queue: &str,
        receive: &str,
        message_id: &str,
    ) -> Result<std::result::Result<bool, MailboxRefusal>> {
        if !self.receive_opens(queue, receive).await? {
            return Ok(Err(MailboxRefusal::Capability));
        }
        // Relaxed: a power loss may undo the last few acknowledgements, which only delivers
        // those messages again; the client drops them as duplicates by message id.
        let done = self
            .execute_write(
                Durability::Relaxed,
                sqlx::query("DELETE FROM mailbox_messages WHERE queue_id = $1 AND message_id = $2")
                    .bind(queue.to_owned())
                    .bind(message_id.to_owned()),
                StoreError::db("acknowledging a message"),
            )
            .await?;
        Ok(Ok(done.rows_affected() > 0))
    }

    /// Whether `queue` is one of `owner`'s mailboxes.
    pub async fn owns_mailbox(&self, owner: &DeviceHandle, queue: &str) -> Result<bool> {
        let row = sqlx::query("SELECT owner FROM mailboxes WHERE queue_id = $1 AND owner = $2")
            .bind(queue)
            .bind(owner.as_str())
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(StoreError::db("finding a mailbox"))?;
        Ok(row.is_some())
    }

    async fn receive_opens(&self, queue: &str, receive: &str) -> Result<bool> {
        let row = sqlx::query("SELECT receive_digest FROM mailboxes WHERE queue_id = $1")
            .bind(queue)
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(StoreError::db("finding a mailbox"))?;
        match row {
            Some(row) => Ok(opens(receive, &col::<String>(&row, "receive_digest")?)),
            None => Ok(false),
        }
    }

    /// Deletes every message that expired by `now`. Returns how many.
    pub async fn purge_expired_messages(&self, now: SystemTime) -> Result<u64> {
        let done = self
            .execute_write(
                Durability::Synced,
                sqlx::query("DELETE FROM mailbox_messages WHERE expires_at <= $1").bind(ms(now)?),
                StoreError::db("purging expired messages"),
            )
            .await?;
        Ok(done.rows_affected())
    }

    /// Deletes device `owner`'s mailboxes and everything queued in them (a device suspended,
    /// revoked or retired). Returns how many mailboxes.
    pub async fn delete_mailboxes_of(&self, owner: &DeviceHandle) -> Result<u64> {
        let engine = self.engine;
        let owner = owner.as_str().to_owned();
        self.write(Durability::Synced, move |conn| {
            Box::pin(async move {
                let mut tx = begin(conn, engine, "deleting mailboxes").await?;
                let deleted = delete_mailboxes_in(&mut tx, &owner).await?;
                tx.commit()
                    .await
                    .map_err(StoreError::db("committing deleted mailboxes"))?;
                Ok(deleted)
            })
        })
        .await
    }
}

/// The most sends committed in one transaction.
const MAX_BATCH: usize = 256;

/// Sends waiting for the next commit.
#[derive(Default)]
pub(super) struct SendQueue {
    pending: Vec<PendingSend>,
    /// Whether a task is committing them.
    draining: bool,
}

impl std::fmt::Debug for SendQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendQueue")
            .field("pending", &self.pending.len())
            .field("draining", &self.draining)
            .finish()
    }
}

/// A send waiting for the next commit, and where its answer goes.
struct PendingSend {
    row: SendRow,
    reply: oneshot::Sender<Result<std::result::Result<(), MailboxRefusal>>>,
}

/// One send of a batch, as the write job stores it.
struct SendRow {
    queue: String,
    send: String,
    message_id: String,
    envelope: Vec<u8>,
    stored: i64,
    expires: i64,
    max_queued: i64,
}

/// Stores a batch of sends in one transaction, each checked on its own; the answers in
/// order. Nothing is stored when the transaction fails.
async fn store_batch(
    conn: &mut AnyConnection,
    engine: Engine,
    rows: Vec<SendRow>,
) -> Result<Vec<std::result::Result<(), MailboxRefusal>>> {
    let mut tx = begin(conn, engine, "storing messages").await?;
    let mut answers = Vec::with_capacity(rows.len());
    for row in rows {
        answers.push(store_one(&mut tx, engine, row).await?);
    }
    tx.commit()
        .await
        .map_err(StoreError::db("committing messages"))?;
    Ok(answers)
}

/// Stores one send inside the batch's transaction, if its capability opens the queue and
/// the queue has room.
async fn store_one(
    tx: &mut AnyConnection,
    engine: Engine,
    row: SendRow,
) -> Result<std::result::Result<(), MailboxRefusal>> {
    // On PostgreSQL concurrent sends run in concurrent transactions: the mailbox row is
    // locked so the quota count and the insert of one queue's sends take turns. (SQLite's
    // transactions are serial already and have no FOR UPDATE.)
    let find = match engine {
        Engine::Postgres => "SELECT send_digest FROM mailboxes WHERE queue_id = $1 FOR UPDATE",
        Engine::Sqlite => "SELECT send_digest FROM mailboxes WHERE queue_id = $1",
    };
    let found = sqlx::query(find)
        .bind(row.queue.clone())
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db("finding a mailbox"))?;
    let Some(found) = found else {
        return Ok(Err(MailboxRefusal::Capability));
    };
    if !opens(&row.send, &col::<String>(&found, "send_digest")?) {
        return Ok(Err(MailboxRefusal::Capability));
    }
    let counted = sqlx::query(
        "SELECT COUNT(*) AS queued FROM mailbox_messages \
         WHERE queue_id = $1 AND expires_at > $2",
    )
    .bind(row.queue.clone())
    .bind(row.stored)
    .fetch_one(&mut *tx)
    .await
    .map_err(StoreError::db("counting a queue"))?;
    let queued: i64 = col(&counted, "queued")?;
    if queued >= row.max_queued {
        return Ok(Err(MailboxRefusal::QueueFull(row.max_queued)));
    }
    sqlx::query(
        "INSERT INTO mailbox_messages (queue_id, message_id, envelope, stored_at, \
         expires_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (queue_id, message_id) DO NOTHING",
    )
    .bind(row.queue.clone())
    .bind(row.message_id)
    .bind(row.envelope)
    .bind(row.stored)
    .bind(row.expires)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::db("storing a message"))?;
    super::notify::notify_in(tx, engine, &row.queue).await?;
    Ok(Ok(()))
}

/// Deletes `owner`'s mailboxes and their messages inside the caller's transaction. Returns
/// how many mailboxes.
pub(super) async fn delete_mailboxes_in(tx: &mut AnyConnection, owner: &str) -> Result<u64> {
    sqlx::query(
        "DELETE FROM mailbox_messages WHERE queue_id IN \
         (SELECT queue_id FROM mailboxes WHERE owner = $1)",
    )
    .bind(owner)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::db("deleting queued messages"))?;
    let done = sqlx::query("DELETE FROM mailboxes WHERE owner = $1")
        .bind(owner)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("deleting mailboxes"))?;
    Ok(done.rows_affected())
}
