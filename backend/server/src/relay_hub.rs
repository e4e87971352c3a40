//! Wake-ups for the relay's push streams: which queue just received a message.
//!
//! On SQLite (one node) the node that stored a message wakes its own streams. On PostgreSQL
//! every node, the storing one included, learns of a stored message from the database's
//! notification (sent at commit), so a receiver streaming from one node hears of a message
//! sent through another. A lost listening connection is made again and wakes every stream,
//! since notifications may have been missed in between.

use std::sync::Arc;
use std::time::Duration;

use enigm_backend_storage::Store;
use enigm_backend_storage::store::MessageWake;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// Wake-ups kept for slow streams; one that falls further behind looks again anyway.
const CAPACITY: usize = 1024;
/// The wait before listening again after the listener failed.
const RELISTEN_DELAY: Duration = Duration::from_secs(1);

/// Where push streams wait for messages.
#[derive(Debug)]
pub struct RelayHub {
    wakes: broadcast::Sender<MessageWake>,
    wake_locally: bool,
    shutdown: watch::Receiver<bool>,
}

impl RelayHub {
    /// A hub that wakes its own streams on every store (`wake_locally`, SQLite) or relies on
    /// the database's notifications (PostgreSQL); streams end when `shutdown` turns true.
    pub fn new(wake_locally: bool, shutdown: watch::Receiver<bool>) -> Self {
        let (wakes, _) = broadcast::channel(CAPACITY);
        Self {
            wakes,
            wake_locally,
            shutdown,
        }
    }

    /// Wake-ups from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<MessageWake> {
        self.wakes.subscribe()
    }

    /// The server's shutdown signal.
    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// This node stored a message into `queue`.
    pub fn stored(&self, queue: &str) {
        if self.wake_locally {
            self.wake(MessageWake::Queue(queue.to_owned()));
        }
    }

    fn wake(&self, wake: MessageWake) {
        // No stream waiting is fine.
        let _ = self.wakes.send(wake);
    }
}

/// On PostgreSQL: forwards the database's stored-message notifications to `hub` until
/// shutdown, listening again after a failure. `None` on SQLite.
pub async fn listen(
    store: Store,
    hub: Arc<RelayHub>,
) -> Result<Option<JoinHandle<()>>, enigm_backend_storage::StoreError> {
    let Some(mut listener) = store.listen_for_messages().await? else {
        return Ok(None);
    };
    let mut shutdown = hub.shutdown();
    Ok(Some(tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = shutdown.changed() => return,
                next = listener.next() => next,
            };
            match next {
                Ok(wake) => hub.wake(wake),
                Err(err) => {
                    tracing::warn!(error = %err, "relay notifications lost; listening again");
                    hub.wake(MessageWake::All);
                    tokio::time::sleep(RELISTEN_DELAY).await;
                    match store.listen_for_messages().await {
                        Ok(Some(again)) => listener = again,
                        Ok(None) => return,
                        Err(err) => tracing::warn!(error = %err, "listening again failed"),
                    }
                }
            }
        }
    })))
}
