//! Receiving: the device's queue by server push (`StreamMessages`), with `FetchMessages` as
//! the fallback when a stream cannot be had.
//!
//! Each envelope is opened with the device's keys; its sender's keys come from the directory
//! (looked up by the account id sealed inside, cached). Cover envelopes and duplicates (a
//! message id already handled from that sender) are acknowledged and dropped without reaching
//! the application; envelopes that do not open or verify (tampered, from a device no longer
//! trusted) are acknowledged and dropped with a warning that says why, never what. Every other
//! message goes to the application's handler and is acknowledged once the handler has taken it.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use enigm_backend_client::proto::{AckMessageRequest, RelayedMessage};
use enigm_envelope::EnvelopeError;
use enigm_envelope::envelope::{self, Opened};
use enigm_envelope::keys::DeviceId;

use crate::client::{Recipient, RelayClient};
use crate::error::RelayError;

/// The most messages one fetch asks for.
const FETCH_LIMIT: u32 = 100;

/// A message for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The sending device ({account id, handle}), verified with its directory keys.
    pub from: DeviceId,
    /// The message id (the same on every device it was sent to).
    pub message_id: String,
    /// When it was sent (Unix seconds, the sender's clock).
    pub sent_at: u64,
    /// The body.
    pub body: Vec<u8>,
}

/// What the application's handler did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Handled; acknowledge it and go on.
    Continue,
    /// Handled; acknowledge it and stop receiving.
    Stop,
    /// Not handled; leave it queued (it comes again) and stop receiving.
    Unprocessed,
}

/// What a receive did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveStats {
    /// Messages given to the application.
    pub delivered: usize,
    /// Duplicates dropped.
    pub duplicates: usize,
    /// Cover envelopes dropped.
    pub cover: usize,
    /// Envelopes that did not open or verify, dropped.
    pub refused: usize,
}

/// What became of one envelope.
enum Outcome {
    Handled(Flow),
    Dropped,
}

impl RelayClient {
    /// Opens `envelope`, looking the sender's account up when its keys are not cached.
    async fn open(&mut self, envelope_bytes: &[u8]) -> Result<Opened, RelayError> {
        let keys = Arc::clone(&self.identity()?.keys);
        let asked: RefCell<Option<DeviceId>> = RefCell::new(None);
        let first = envelope::open(&keys, envelope_bytes, |id| {
            *asked.borrow_mut() = Some(id.clone());
            self.directory.get(id)
        });
        let sender = match (first, asked.into_inner()) {
            (Err(EnvelopeError::UnknownSender), Some(sender)) => sender,
            (result, _) => return Ok(result?),
        };
        match self
            .lookup(&Recipient::AccountId(sender.account.clone()))
            .await
        {
            Ok(_) => {}
            // The claimed account is malformed or unknown: nobody to verify it with.
            Err(e)
                if matches!(
                    e.code(),
                    Some(tonic::Code::InvalidArgument | tonic::Code::NotFound)
                ) =>
            {
                return Err(EnvelopeError::UnknownSender.into());
            }
            // A lookup answering for another account than asked.
            Err(RelayError::Bundle(_)) => return Err(EnvelopeError::UnknownSender.into()),
            Err(e) => return Err(e),
        }
        Ok(envelope::open(&keys, envelope_bytes, |id| {
            self.directory.get(id)
        })?)
    }

    async fn ack(&mut self, message_id: &str) -> Result<(), RelayError> {
        let mailbox = self.identity()?.mailbox.clone();
        self.api
            .ack_message(AckMessageRequest {
                caller_handle: self.handle.clone(),
                caller_token: self.token(),
                queue: mailbox.queue,
                receive_capability: mailbox.receive_capability,
                message_id: message_id.to_owned(),
            })
            .await
            .map_err(RelayError::backend("AckMessage"))?;
        Ok(())
    }

    /// Opens, filters, hands over and acknowledges one relayed message.
    async fn process(
        &mut self,
        relayed: RelayedMessage,
        stats: &mut ReceiveStats,
        handler: &mut impl FnMut(Received) -> Flow,
    ) -> Result<Outcome, RelayError> {
        let opened = match self.open(&relayed.envelope).await {
            Ok(opened) => opened,
            // The backend or the directory could not be asked: leave it queued.
            Err(e @ RelayError::Backend { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!(
                    reason = refusal_reason(&e),
                    "an envelope was refused and dropped"
                );
                stats.refused += 1;
                self.ack(&relayed.message_id).await?;
                return Ok(Outcome::Dropped);
            }
        };
        let sender = format!("{}/{}", opened.from.account, opened.from.device);
        if opened.cover {
            stats.cover += 1;
        } else if self.seen.contains(&sender, &opened.id) {
            stats.duplicates += 1;
        } else {
            let flow = handler(Received {
                from: opened.from,
                message_id: opened.id.clone(),
                sent_at: opened.sent_at,
                body: opened.body,
            });
            if flow == Flow::Unprocessed {
                return Ok(Outcome::Handled(flow));
            }
            self.seen.first_time(&sender, &opened.id);
            if let Some(log) = &mut self.seen_log
                && let Err(e) = log.record(&sender, &opened.id)
            {
                tracing::warn!(error = %e, "the duplicate log was not written");
            }
            stats.delivered += 1;
            self.ack(&relayed.message_id).await?;
            return Ok(Outcome::Handled(flow));
        }
        self.ack(&relayed.message_id).await?;
        Ok(Outcome::Dropped)
    }

    /// Fetches and handles what is queued now, until the queue is empty or the handler stops.
    pub async fn receive_pending(
        &mut self,
        mut handler: impl FnMut(Received) -> Flow,
    ) -> Result<ReceiveStats, RelayError> {
        let mut stats = ReceiveStats::default();
        self.drain(&mut stats, &mut handler).await?;
        Ok(stats)
    }

    /// Handles fetched batches; true when the handler stopped.
    async fn drain(
        &mut self,
        stats: &mut ReceiveStats,
        handler: &mut impl FnMut(Received) -> Flow,
    ) -> Result<bool, RelayError> {
        loop {
            let mailbox = self.identity()?.mailbox.clone();
            let request = self.fetch_request(&mailbox, FETCH_LIMIT);
            let batch = self
                .api
                .fetch_messages(request)
                .await
                .map_err(RelayError::backend("FetchMessages"))?
                .into_inner()
                .messages;
            if batch.is_empty() {
                return Ok(false);
            }
            for relayed in batch {
                if let Outcome::Handled(Flow::Stop | Flow::Unprocessed) =
                    self.process(relayed, stats, handler).await?
                {
                    return Ok(true);
                }
            }
        }
    }

    /// Receives until the handler stops: by server push, each message as it arrives; when a
    /// stream cannot be opened or breaks (not a refusal), by fetching every `poll` until a
    /// stream can be had again. Returns the backend's refusal when it refuses the caller (an
    /// expired token: attest again, [`RelayClient::set_token`], and call this again).
    pub async fn receive_follow(
        &mut self,
        poll: Duration,
        mut handler: impl FnMut(Received) -> Flow,
    ) -> Result<ReceiveStats, RelayError> {
        let mut stats = ReceiveStats::default();
        loop {
            let mailbox = self.identity()?.mailbox.clone();
            let request = self.fetch_request(&mailbox, 0);
            match self.api.stream_messages(request).await {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    loop {
                        match stream.message().await {
                            Ok(Some(relayed)) => {
                                if let Outcome::Handled(Flow::Stop | Flow::Unprocessed) =
                                    self.process(relayed, &mut stats, &mut handler).await?
                                {
                                    return Ok(stats);
                                }
                            }
                            // Ended by the server (shutting down): open another.
                            Ok(None) => break,
                            Err(status) if is_refusal(&status) => {
                                return Err(RelayError::backend("StreamMessages")(status));
                            }
                            Err(status) => {
                                tracing::info!(code = ?status.code(), "push stream broke; fetching");
                                break;
                            }
                        }
                    }
                }
                Err(status) if is_refusal(&status) => {
                    return Err(RelayError::backend("StreamMessages")(status));
                }
                Err(status) => {
                    tracing::info!(code = ?status.code(), "no push stream; fetching");
                }
            }
            // Fallback: fetch what is there, wait, try a stream again.
            match self.drain(&mut stats, &mut handler).await {
                Ok(true) => return Ok(stats),
                Ok(false) => {}
                Err(e) if e.code().is_some_and(|c| !is_refusal_code(c)) => {
                    tracing::info!(error = %e, "fetch failed; retrying");
                }
                Err(e) => return Err(e),
            }
            tokio::time::sleep(poll).await;
        }
    }
}

/// Why an envelope was refused, in words that cannot quote its contents (a parse error of
/// decrypted contents could).
fn refusal_reason(e: &RelayError) -> &'static str {
    match e {
        RelayError::Envelope(EnvelopeError::Hpke(_)) => "does not open with this device's key",
        RelayError::Envelope(EnvelopeError::Format(_)) => "malformed",
        RelayError::Envelope(EnvelopeError::TooLarge { .. }) => "too large",
        RelayError::Envelope(EnvelopeError::BadSignature) => {
            "the sender's signature does not verify"
        }
        RelayError::Envelope(EnvelopeError::UnknownSender) => "unknown sender device",
        RelayError::Envelope(EnvelopeError::WrongRecipient) => "sealed for another device",
        _ => "not usable",
    }
}

fn is_refusal_code(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Unauthenticated
            | Code::PermissionDenied
            | Code::InvalidArgument
            | Code::NotFound
            | Code::FailedPrecondition
    )
}

/// Whether `status` refuses the caller (rather than a stream or transport problem).
fn is_refusal(status: &tonic::Status) -> bool {
    is_refusal_code(status.code())
}
