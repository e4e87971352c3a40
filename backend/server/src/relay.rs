//! The relay over the device API: mailboxes of opaque envelopes between trusted devices.
//!
//! Every call needs the caller's handle and a current result token, and the caller must be
//! trusted: a suspended, revoked or retired device is refused at once (its token's epoch is
//! stale, and its state is checked), and the store deleted its mailboxes with the state
//! change. Envelopes must have one of the fixed sizes of `enigm-envelope`, so what the server
//! holds says nothing about message lengths; it never sees anything but ciphertext. Nothing
//! here logs a queue, a capability or an envelope.

use std::time::{Duration, Instant, SystemTime};

use enigm_backend_storage as storage;
use enigm_backend_storage::DeviceState;
use enigm_backend_storage::store::{Delivery, MailboxLimits, MailboxRefusal};
use tonic::Status;

use crate::proto;
use crate::service::{Shared, parse_handle, rate_limited, store_status};

/// The longest a message may wait.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 86_400);
/// The most messages one queue holds.
pub const MAX_QUEUED: i64 = 1000;
/// The longest message id.
pub const MAX_MESSAGE_ID: usize = 64;
/// The most messages one fetch returns.
pub const MAX_FETCH: u32 = 100;

fn limits() -> MailboxLimits {
    MailboxLimits {
        max_envelope: enigm_envelope::pad::WIRE_SIZES[3],
        max_queued: MAX_QUEUED,
        max_ttl: MAX_TTL,
    }
}

fn refusal(r: MailboxRefusal) -> Status {
    match r {
        MailboxRefusal::Capability => Status::permission_denied(r.to_string()),
        MailboxRefusal::QueueFull(_) => Status::resource_exhausted(r.to_string()),
        MailboxRefusal::TooLarge { .. } | MailboxRefusal::Expiry(_) => {
            Status::invalid_argument(r.to_string())
        }
    }
}

/// The messages one fetch returns for a requested `limit` (0: the most).
pub fn fetch_limit(limit: u32) -> u32 {
    match limit {
        0 => MAX_FETCH,
        n => n.min(MAX_FETCH),
    }
}

pub(crate) fn field_len(field: &str, value: &str, max: usize) -> Result<(), Status> {
    if value.is_empty() || value.len() > max {
        return Err(Status::invalid_argument(format!(
            "{field}: missing or longer than {max} characters"
        )));
    }
    Ok(())
}

impl Shared {
    /// The caller's device, when its token is current and it is trusted.
    pub(crate) async fn relay_caller(
        &self,
        handle: &str,
        token: &str,
    ) -> Result<storage::Device, Status> {
        let unauthenticated = |e: Status| match e.code() {
            tonic::Code::InvalidArgument => Status::unauthenticated(e.message().to_owned()),
            _ => e,
        };
        let caller = parse_handle("caller_handle", handle).map_err(unauthenticated)?;
        let device = self
            .device_with_token(&caller, "caller_token", token)
            .await
            .map_err(unauthenticated)?;
        if device.state != DeviceState::Trusted {
            return Err(Status::permission_denied(format!(
                "the device is {}: only trusted devices use the relay",
                device.state
            )));
        }
        Ok(device)
    }

    /// A new mailbox owned by the caller.
    pub async fn create_mailbox(
        &self,
        req: proto::CreateMailboxRequest,
    ) -> Result<proto::CreateMailboxResponse, Status> {
        let caller = self
            .relay_caller(&req.caller_handle, &req.caller_token)
            .await?;
        let mailbox = self
            .store
            .create_mailbox(&caller.handle, SystemTime::now())
            .await
            .map_err(store_status)?;
        Ok(proto::CreateMailboxResponse {
            queue: mailbox.queue,
            send_capability: mailbox.send,
            receive_capability: mailbox.receive,
        })
    }

    /// Stores an envelope durably, then answers.
    pub async fn send_message(
        &self,
        req: proto::SendMessageRequest,
    ) -> Result<proto::SendMessageResponse, Status> {
        self.relay_caller(&req.caller_handle, &req.caller_token)
            .await?;
        field_len("message_id", &req.message_id, MAX_MESSAGE_ID)?;
        field_len("queue", &req.queue, 64)?;
        field_len("send_capability", &req.send_capability, 128)?;
        if !enigm_envelope::pad::WIRE_SIZES.contains(&req.envelope.len()) {
            return Err(Status::invalid_argument(format!(
                "envelope: {} bytes is not one of the envelope sizes {:?}",
                req.envelope.len(),
                enigm_envelope::pad::WIRE_SIZES
            )));
        }
        self.queue_limiter
            .check(&req.queue, Instant::now())
            .map_err(|wait| rate_limited("queue", wait))?;
        if req.ttl_secs == 0 || req.ttl_secs > MAX_TTL.as_secs() {
            return Err(Status::invalid_argument(format!(
                "ttl_secs: 1 to {}",
                MAX_TTL.as_secs()
            )));
        }
        let now = SystemTime::now();
        self.store
            .enqueue(
                Delivery {
                    queue: &req.queue,
                    send: &req.send_capability,
                    message_id: &req.message_id,
                    envelope: &req.envelope,
                    expires_at: now + Duration::from_secs(req.ttl_secs),
                },
                now,
                limits(),
            )
            .await
            .map_err(store_status)?
            .map_err(refusal)?;
        self.metrics.relay_stored();
        self.relay_hub.stored(&req.queue);
        Ok(proto::SendMessageResponse {})
    }

    /// Unexpired messages of the caller's queue, oldest first.
    pub async fn fetch_messages(
        &self,
        req: proto::FetchMessagesRequest,
    ) -> Result<proto::FetchMessagesResponse, Status> {
        self.relay_caller(&req.caller_handle, &req.caller_token)
            .await?;
        let fetched = self.read_queue(&req).await?;
        self.metrics.relay_delivered(fetched.messages.len());
        Ok(fetched)
    }

    /// The messages of the request's queue, without checking the caller (a push stream
    /// checks it on its own schedule).
    pub(crate) async fn read_queue(
        &self,
        req: &proto::FetchMessagesRequest,
    ) -> Result<proto::FetchMessagesResponse, Status> {
        field_len("queue", &req.queue, 64)?;
        field_len("receive_capability", &req.receive_capability, 128)?;
        let limit = fetch_limit(req.limit);
        let messages = self
            .store
            .fetch_messages(
                &req.queue,
                &req.receive_capability,
                SystemTime::now(),
                i64::from(limit),
            )
            .await
            .map_err(store_status)?
            .map_err(refusal)?;
        Ok(proto::FetchMessagesResponse {
            messages: messages
                .into_iter()
                .map(|m| proto::RelayedMessage {
                    message_id: m.message_id,
                    envelope: m.envelope,
                })
                .collect(),
        })
    }

    /// Deletes an acknowledged message.
    pub async fn ack_message(
        &self,
        req: proto::AckMessageRequest,
    ) -> Result<proto::AckMessageResponse, Status> {
        self.relay_caller(&req.caller_handle, &req.caller_token)
            .await?;
        field_len("queue", &req.queue, 64)?;
        field_len("receive_capability", &req.receive_capability, 128)?;
        field_len("message_id", &req.message_id, MAX_MESSAGE_ID)?;
        let deleted = self
            .store
            .acknowledge(&req.queue, &req.receive_capability, &req.message_id)
            .await
            .map_err(store_status)?
            .map_err(refusal)?;
        if deleted {
            self.metrics.relay_acknowledged();
        }
        Ok(proto::AckMessageResponse { deleted })
    }
}
