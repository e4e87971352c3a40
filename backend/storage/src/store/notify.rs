//! Wake-ups for relay receivers on every node sharing a PostgreSQL database.
//!
//! Storing a message notifies channel [`CHANNEL`] with its queue id inside the storing
//! transaction, so the notification goes out only when the message is committed.
//! [`Store::listen_for_messages`] gives a node those notifications. On SQLite there is one
//! node, so there is nothing to listen to: the server wakes its own receivers.

use sqlx::postgres::PgListener;

use super::*;

/// The PostgreSQL notification channel of stored messages.
pub const CHANNEL: &str = "enigm_relay";

/// What a listener learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageWake {
    /// A message was committed into this queue.
    Queue(String),
    /// The listening connection was lost and made again: notifications may have been
    /// missed, so every receiver should look again.
    All,
}

/// This node's subscription to stored-message notifications.
pub struct MessageListener {
    listener: PgListener,
}

impl std::fmt::Debug for MessageListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageListener").finish_non_exhaustive()
    }
}

impl MessageListener {
    /// The next wake-up. Reconnects by itself when the connection drops.
    pub async fn next(&mut self) -> Result<MessageWake> {
        match self
            .listener
            .try_recv()
            .await
            .map_err(StoreError::db("listening for messages"))?
        {
            Some(notification) => Ok(MessageWake::Queue(notification.payload().to_owned())),
            None => Ok(MessageWake::All),
        }
    }
}

impl Store {
    /// A listener for messages stored by any node, on PostgreSQL; `None` on SQLite.
    pub async fn listen_for_messages(&self) -> Result<Option<MessageListener>> {
        let Some(url) = &self.listen_url else {
            return Ok(None);
        };
        let mut listener =
            PgListener::connect(url)
                .await
                .map_err(|source| StoreError::Connect {
                    engine: Engine::Postgres,
                    source,
                })?;
        listener
            .listen(CHANNEL)
            .await
            .map_err(StoreError::db("listening for messages"))?;
        Ok(Some(MessageListener { listener }))
    }
}

/// Inside a storing transaction on PostgreSQL: notifies [`CHANNEL`] of `queue` (sent at
/// commit).
pub(super) async fn notify_in(tx: &mut AnyConnection, engine: Engine, queue: &str) -> Result<()> {
    if engine == Engine::Postgres {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(queue)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("notifying receivers"))?;
    }
    Ok(())
}
