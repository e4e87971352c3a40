//! Cover traffic: dummy envelopes sent to the device's own queue at random times, so that
//! when, and how much, a device sends says less about when it really talks.
//!
//! A cover envelope is made exactly as a real one (sealed with HPKE to the device's own keys,
//! signed, padded to one of the four wire sizes chosen at random, a random message id and the
//! per-queue wire id) and sent with the same RPC; only the flag inside the ciphertext says it
//! is cover, and the receiving side drops it after acknowledging it. The gaps between sends are
//! exponentially distributed (a Poisson process) with a chosen mean.
//!
//! What it does not hide: the server knows which device calls and which device owns each
//! queue, so it can see that a device writes into its own queue, which real messages never do
//! (copies to a sender's other devices go to their queues, not its own); what the server
//! cannot tell is the envelope's content or that it carries no message. So cover traffic
//! hides timing and volume from observers of the network (all calls are inside TLS to the
//! backend) and from a server that does not join callers to queue owners, not from one that
//! does. A real message rate above the cover rate still shows, and the ttl is visible (use
//! the same as for real messages).

use std::sync::Arc;
use std::time::Duration;

use enigm_backend_client::proto::SendMessageRequest;
use enigm_backend_client::proto::device_api_client::DeviceApiClient;
use enigm_envelope::envelope::{self, MAX_BODY, Message};
use enigm_envelope::keys::DeviceKeys;
use enigm_envelope::pad::BUCKETS;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::client::RelayClient;
use crate::error::RelayError;
use crate::ids::{message_id, now_unix, unit_random, wire_id};
use crate::keyfile::Mailbox;

/// Room left in a bucket for the signed header around the body (ids, signature, JSON).
const HEADER_ROOM: usize = 1000;

/// How cover traffic is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoverConfig {
    /// The mean gap between cover envelopes.
    pub mean_interval: Duration,
    /// How long each may wait on the server (the same as real messages, so it does not stand
    /// out).
    pub ttl: Duration,
}

/// A cover-traffic sender for one device; run it as a task next to the receiver.
pub struct CoverTraffic {
    api: DeviceApiClient<Channel>,
    handle: String,
    token: watch::Receiver<String>,
    keys: Arc<DeviceKeys>,
    mailbox: Mailbox,
    config: CoverConfig,
}

impl std::fmt::Debug for CoverTraffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoverTraffic")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RelayClient {
    /// A cover-traffic sender using this session's channel and (current) token.
    pub fn cover(&self, config: CoverConfig) -> Result<CoverTraffic, RelayError> {
        let identity = self.identity()?;
        Ok(CoverTraffic {
            api: self.api.clone(),
            handle: self.handle.clone(),
            token: self.token.subscribe(),
            keys: Arc::clone(&identity.keys),
            mailbox: identity.mailbox.clone(),
            config,
        })
    }
}

/// A body length whose envelope fills bucket `bucket` (an index into [`BUCKETS`]).
pub fn body_len_for(bucket: usize) -> Result<usize, RelayError> {
    let pick = |low: usize, high: usize| -> Result<usize, RelayError> {
        let r = unit_random().map_err(enigm_envelope::EnvelopeError::from)?;
        Ok(low + ((high - low) as f64 * r) as usize)
    };
    // The body travels base64-encoded (4 characters per 3 bytes) inside the padded plaintext.
    let max_for = |size: usize| (size.saturating_sub(HEADER_ROOM)) / 4 * 3;
    match bucket {
        0 => pick(0, max_for(BUCKETS[0])),
        b if b < BUCKETS.len() => {
            let low = BUCKETS[b - 1] / 4 * 3 + 3;
            pick(low, max_for(BUCKETS[b]).min(MAX_BODY))
        }
        _ => Err(enigm_envelope::EnvelopeError::Format("no such bucket".into()).into()),
    }
}

/// A cover envelope from `keys` to themselves, of bucket `bucket`.
pub fn cover_envelope(keys: &DeviceKeys, bucket: usize) -> Result<Vec<u8>, RelayError> {
    let mut body = vec![0u8; body_len_for(bucket)?];
    openssl::rand::rand_bytes(&mut body).map_err(enigm_envelope::EnvelopeError::from)?;
    let id = message_id().map_err(enigm_envelope::EnvelopeError::from)?;
    Ok(envelope::seal(
        keys,
        &keys.public()?,
        Message {
            id: &id,
            sent_at: now_unix(),
            cover: true,
            body: &body,
        },
    )?)
}

/// An exponentially distributed gap with mean `mean` (capped at ten means).
pub fn next_gap(mean: Duration) -> Result<Duration, RelayError> {
    let u = unit_random().map_err(enigm_envelope::EnvelopeError::from)?;
    Ok(mean.mul_f64((-u.ln()).min(10.0)))
}

impl CoverTraffic {
    /// Sends one cover envelope of a random size to the device's own queue; returns its size.
    pub async fn send_one(&mut self) -> Result<usize, RelayError> {
        let r = unit_random().map_err(enigm_envelope::EnvelopeError::from)?;
        let bucket = ((r * BUCKETS.len() as f64) as usize).min(BUCKETS.len() - 1);
        let sealed = cover_envelope(&self.keys, bucket)?;
        let size = sealed.len();
        let id = message_id().map_err(enigm_envelope::EnvelopeError::from)?;
        let token = self.token.borrow().clone();
        self.api
            .send_message(SendMessageRequest {
                caller_handle: self.handle.clone(),
                caller_token: token,
                queue: self.mailbox.queue.clone(),
                send_capability: self.mailbox.send_capability.clone(),
                message_id: wire_id(&id, &self.mailbox.queue),
                envelope: sealed,
                ttl_secs: self.config.ttl.as_secs().max(1),
            })
            .await
            .map_err(RelayError::backend("SendMessage"))?;
        Ok(size)
    }

    /// Sends cover envelopes at random gaps until the task is dropped or aborted; a failed
    /// send (an expired token, the backend away) is logged and the next one tried.
    pub async fn run(mut self) {
        loop {
            let gap = next_gap(self.config.mean_interval).unwrap_or(self.config.mean_interval);
            tokio::time::sleep(gap).await;
            if let Err(e) = self.send_one().await {
                tracing::info!(error = %e, "a cover envelope was not sent");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use enigm_envelope::keys::DeviceId;
    use enigm_envelope::pad::WIRE_SIZES;

    #[test]
    fn cover_envelopes_fill_each_bucket_and_open_as_cover() {
        let keys = DeviceKeys::generate(DeviceId {
            account: "a".repeat(36),
            device: "h".repeat(64),
        })
        .unwrap();
        for (bucket, wire_size) in WIRE_SIZES.iter().enumerate() {
            for _ in 0..20 {
                let sealed = cover_envelope(&keys, bucket).unwrap();
                assert_eq!(sealed.len(), *wire_size, "bucket {bucket}");
                let public = keys.public().unwrap();
                let opened = envelope::open(&keys, &sealed, |_| Some(public.clone())).unwrap();
                assert!(opened.cover);
            }
        }
        assert!(cover_envelope(&keys, BUCKETS.len()).is_err());
    }

    #[test]
    fn gaps_average_near_the_mean() {
        let mean = Duration::from_millis(100);
        let n = 4000;
        let total: Duration = (0..n).map(|_| next_gap(mean).unwrap()).sum();
        let average = total / n;
        assert!(
            average > Duration::from_millis(85) && average < Duration::from_millis(115),
            "{average:?}"
        );
    }
}
