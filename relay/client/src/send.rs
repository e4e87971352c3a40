//! Fan-out: a message goes as one sealed envelope to every trusted device the directory lists
//! for the recipient account, and to the sender's own other devices (so they see what it
//! sent). Every copy carries the same message id inside the envelope; the id the server sees
//! differs per queue ([`crate::ids::wire_id`]).

use std::time::Duration;

use enigm_backend_client::proto::SendMessageRequest;
use enigm_envelope::envelope::{self, Message};

use crate::bundle::Listed;
use crate::client::{Recipient, RelayClient};
use crate::error::RelayError;
use crate::ids::{message_id, now_unix, wire_id};

/// What a send did.
#[derive(Debug)]
pub struct SendReport {
    /// The message id (inside the envelopes).
    pub message_id: String,
    /// The recipient account.
    pub account_id: String,
    /// Handles of the recipient's devices that were sent a copy.
    pub recipient_devices: Vec<String>,
    /// Handles of the sender's other devices that were sent a copy.
    pub own_devices: Vec<String>,
    /// Devices whose copy failed, with why.
    pub failed: Vec<(String, RelayError)>,
}

impl RelayClient {
    /// Sends `body` to every trusted device of `to` and to this device's other devices, each
    /// copy allowed to wait `ttl` on the server. Fails when the recipient lists no device;
    /// a copy that fails is reported in [`SendReport::failed`].
    pub async fn send(
        &mut self,
        to: &Recipient,
        body: &[u8],
        ttl: Duration,
    ) -> Result<SendReport, RelayError> {
        let own_account = self.identity()?.keys.id.account.clone();
        let recipients = self.lookup(to).await?;
        if recipients.devices.is_empty() {
            return Err(RelayError::NoDevices(recipients.account_id));
        }
        let own = if recipients.account_id == own_account {
            Vec::new()
        } else {
            self.lookup(&Recipient::AccountId(own_account))
                .await?
                .devices
        };
        let mut report = SendReport {
            message_id: message_id().map_err(enigm_envelope::EnvelopeError::from)?,
            account_id: recipients.account_id.clone(),
            recipient_devices: Vec::new(),
            own_devices: Vec::new(),
            failed: Vec::new(),
        };
        let sent_at = now_unix();
        let is_own = |d: &Listed| recipients.account_id != d.keys.id.account;
        for device in recipients.devices.iter().chain(own.iter()) {
            if device.handle() == self.handle {
                continue;
            }
            let message = Message {
                id: &report.message_id,
                sent_at,
                cover: false,
                body,
            };
            match self.send_copy(device, message, ttl).await {
                Ok(()) if is_own(device) => report.own_devices.push(device.handle().to_owned()),
                Ok(()) => report.recipient_devices.push(device.handle().to_owned()),
                Err(e) => report.failed.push((device.handle().to_owned(), e)),
            }
        }
        tracing::debug!(
            copies = report.recipient_devices.len() + report.own_devices.len(),
            failed = report.failed.len(),
            "message sent"
        );
        Ok(report)
    }

    /// Seals `message` for `device` and sends it into its queue.
    pub(crate) async fn send_copy(
        &mut self,
        device: &Listed,
        message: Message<'_>,
        ttl: Duration,
    ) -> Result<(), RelayError> {
        let keys = std::sync::Arc::clone(&self.identity()?.keys);
        let sealed = envelope::seal(&keys, &device.keys, message)?;
        self.api
            .send_message(SendMessageRequest {
                caller_handle: self.handle.clone(),
                caller_token: self.token(),
                queue: device.queue.clone(),
                send_capability: device.send_capability.clone(),
                message_id: wire_id(message.id, &device.queue),
                envelope: sealed,
                ttl_secs: ttl.as_secs().max(1),
            })
            .await
            .map_err(RelayError::backend("SendMessage"))?;
        Ok(())
    }
}
