//! The relay's server push: `StreamMessages` sends a queue's waiting messages, then each new
//! one as it is stored (on any node, see [`crate::relay_hub`]).
//!
//! A message sent on a stream is not sent on it again; it stays queued until the receiver
//! acknowledges it, so a receiver that loses its stream gets it on the next stream or fetch.
//! Every look at the queue checks its receive capability, so the stream ends as soon as the
//! mailbox is deleted (a suspension, revocation or retirement deletes it in the same
//! transaction); the caller's token and state are checked again every [`RECHECK`], and the
//! stream ends with the caller's status when they no longer pass.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use enigm_backend_storage::store::MessageWake;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::proto;
use crate::service::Shared;

/// How often a quiet stream checks its caller and queue again.
pub const RECHECK: Duration = Duration::from_secs(5);
/// How soon a stream whose last look was full (more messages may wait beyond it) looks
/// again, so a backlog drains as the receiver acknowledges.
pub const BACKLOG_LOOK: Duration = Duration::from_millis(250);
/// Messages buffered towards a slow receiver.
const BUFFER: usize = 32;

/// The messages of a push stream.
pub type MessageStream = Pin<Box<dyn Stream<Item = Result<proto::RelayedMessage, Status>> + Send>>;

/// Why a stream stopped waiting.
enum Woken {
    /// Look at the queue again.
    Look,
    /// The receiver went away or the server is stopping.
    Stop,
}

/// A push stream's state.
struct Pump {
    shared: Arc<Shared>,
    request: proto::FetchMessagesRequest,
    wakes: broadcast::Receiver<MessageWake>,
    shutdown: watch::Receiver<bool>,
    out: mpsc::Sender<Result<proto::RelayedMessage, Status>>,
    /// The ids sent on this stream and still queued.
    sent: HashSet<String>,
    /// When the caller was last checked.
    checked: Instant,
    /// Whether the last look returned as many messages as one look may.
    backlog: bool,
}

impl Shared {
    /// Opens a push stream of the caller's queue; a bad request is refused before it starts.
    pub async fn stream_messages(
        self: &Arc<Self>,
        request: proto::FetchMessagesRequest,
    ) -> Result<MessageStream, Status> {
        // Subscribed before the first look, so nothing stored in between is missed.
        let wakes = self.relay_hub.subscribe();
        self.relay_caller(&request.caller_handle, &request.caller_token)
            .await?;
        let first = self.read_queue(&request).await?.messages;
        let (out, receiver) = mpsc::channel(BUFFER);
        let pump = Pump {
            shared: Arc::clone(self),
            request,
            wakes,
            shutdown: self.relay_hub.shutdown(),
            out,
            sent: HashSet::new(),
            checked: Instant::now(),
            backlog: false,
        };
        tokio::spawn(pump.run(first));
        Ok(Box::pin(ReceiverStream::new(receiver)))
    }
}

impl Pump {
    async fn run(self, first: Vec<proto::RelayedMessage>) {
        let metrics = std::sync::Arc::clone(&self.shared.metrics);
        metrics.relay_stream_opened();
        self.pump(first).await;
        metrics.relay_stream_closed();
    }

    async fn pump(mut self, first: Vec<proto::RelayedMessage>) {
        let mut batch = first;
        let limit = crate::relay::fetch_limit(self.request.limit) as usize;
        loop {
            self.backlog = batch.len() >= limit;
            if !self.send_new(batch).await {
                return;
            }
            if let Woken::Stop = self.wait().await {
                return;
            }
            batch = match self.look().await {
                Ok(fetched) => fetched,
                Err(status) => {
                    // The caller is no longer trusted, its token expired, or its mailbox is
                    // gone: the stream ends with why.
                    let _ = self.out.send(Err(status)).await;
                    return;
                }
            };
        }
    }

    /// The queue's messages; the caller is checked too when [`RECHECK`] has passed.
    async fn look(&mut self) -> Result<Vec<proto::RelayedMessage>, Status> {
        if self.checked.elapsed() >= RECHECK {
            self.shared
                .relay_caller(&self.request.caller_handle, &self.request.caller_token)
                .await?;
            self.checked = Instant::now();
        }
        Ok(self.shared.read_queue(&self.request).await?.messages)
    }

    /// Sends what this stream has not sent yet; false when the receiver is gone.
    async fn send_new(&mut self, batch: Vec<proto::RelayedMessage>) -> bool {
        // An id sent before but no longer listed was acknowledged (or expired): forget it.
        let listed: HashSet<&str> = batch.iter().map(|m| m.message_id.as_str()).collect();
        self.sent.retain(|id| listed.contains(id.as_str()));
        for message in batch {
            if self.sent.contains(&message.message_id) {
                continue;
            }
            self.sent.insert(message.message_id.clone());
            if self.out.send(Ok(message)).await.is_err() {
                return false;
            }
            self.shared.metrics.relay_delivered(1);
        }
        true
    }

    /// Waits for a message into this queue, a lost notification, the recheck time (sooner
    /// with a backlog), the receiver going away or shutdown.
    async fn wait(&mut self) -> Woken {
        let recheck = tokio::time::sleep(if self.backlog { BACKLOG_LOOK } else { RECHECK });
        tokio::pin!(recheck);
        loop {
            tokio::select! {
                _ = self.out.closed() => return Woken::Stop,
                _ = self.shutdown.changed() => return Woken::Stop,
                _ = &mut recheck => return Woken::Look,
                wake = self.wakes.recv() => match wake {
                    Ok(MessageWake::Queue(queue)) if queue == self.request.queue => {
                        return Woken::Look;
                    }
                    Ok(MessageWake::Queue(_)) => {}
                    Ok(MessageWake::All) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        return Woken::Look;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Woken::Stop,
                },
            }
        }
    }
}
