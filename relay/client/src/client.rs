//! [`RelayClient`]: one device's session with the relay, over the device API's gRPC client,
//! with the device's handle and its current attestation result token.
//!
//! Setup creates (or keeps) the device's mailbox, generates (or keeps) its message keys and
//! publishes them in the key directory bound to its TPM's attestation key; the result is the
//! [`KeyFile`] the caller keeps. Sending and receiving need that key file.

use std::sync::Arc;

use enigm_backend_client::proto::device_api_client::DeviceApiClient;
use enigm_backend_client::proto::lookup_keys_request::Account;
use enigm_backend_client::proto::{
    CreateMailboxRequest, FetchMessagesRequest, LookupKeysRequest, PublishKeysRequest,
};
use enigm_envelope::dedup::Seen;
use enigm_envelope::keys::{DeviceId, DeviceKeys};
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::bundle::{self, KeyBinder, Lookup};
use crate::directory::Directory;
use crate::error::RelayError;
use crate::ids::now_unix;
use crate::keyfile::{KeyFile, Mailbox};
use crate::seenlog::SeenLog;

/// How many message ids the duplicate filter remembers.
const SEEN_CAPACITY: usize = 10_000;

/// Whose devices: an account id or a username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// An account id.
    AccountId(String),
    /// A username.
    Username(String),
}

/// The keys and mailbox of a set-up device.
pub(crate) struct Identity {
    pub(crate) keys: Arc<DeviceKeys>,
    pub(crate) mailbox: Mailbox,
}

/// One device's relay session.
pub struct RelayClient {
    pub(crate) api: DeviceApiClient<Channel>,
    pub(crate) handle: String,
    pub(crate) token: watch::Sender<String>,
    pub(crate) identity: Option<Identity>,
    pub(crate) directory: Directory,
    pub(crate) seen: Seen,
    pub(crate) seen_log: Option<SeenLog>,
}

impl std::fmt::Debug for RelayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayClient")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl RelayClient {
    /// A session of device `handle` holding result token `token`, not set up yet.
    pub fn new(api: DeviceApiClient<Channel>, handle: &str, token: &str) -> Self {
        Self {
            api,
            handle: handle.to_owned(),
            token: watch::Sender::new(token.to_owned()),
            identity: None,
            directory: Directory::new(),
            seen: Seen::new(SEEN_CAPACITY),
            seen_log: None,
        }
    }

    /// A session with the keys and mailbox of `file`, which must be this device's.
    pub fn with_key_file(
        api: DeviceApiClient<Channel>,
        handle: &str,
        token: &str,
        file: &KeyFile,
    ) -> Result<Self, RelayError> {
        if file.keys.id.device != handle {
            return Err(RelayError::OtherDevice {
                file_device: file.keys.id.device.clone(),
                file_account: file.keys.id.account.clone(),
            });
        }
        let mut client = Self::new(api, handle, token);
        client.identity = Some(Identity {
            keys: Arc::new(file.device_keys()?),
            mailbox: file.mailbox.clone(),
        });
        Ok(client)
    }

    /// Replaces the result token (after a fresh attestation); a running cover-traffic task
    /// uses the new one too.
    pub fn set_token(&self, token: &str) {
        self.token.send_replace(token.to_owned());
    }

    /// Keeps the duplicate filter in the log at `path` (loaded now, appended to as messages
    /// are handled), so duplicates are recognized across runs.
    pub fn keep_seen_in(&mut self, path: &std::path::Path) -> Result<(), RelayError> {
        let (log, seen) = SeenLog::open(path, SEEN_CAPACITY)?;
        self.seen = seen;
        self.seen_log = Some(log);
        Ok(())
    }

    /// The device's handle.
    pub fn handle(&self) -> &str {
        &self.handle
    }

    /// This device in the directory ({account id, handle}), once set up.
    pub fn device_id(&self) -> Option<&DeviceId> {
        self.identity.as_ref().map(|i| &i.keys.id)
    }

    pub(crate) fn token(&self) -> String {
        self.token.borrow().clone()
    }

    pub(crate) fn identity(&self) -> Result<&Identity, RelayError> {
        self.identity.as_ref().ok_or(RelayError::NotSetUp)
    }

    pub(crate) fn fetch_request(&self, mailbox: &Mailbox, limit: u32) -> FetchMessagesRequest {
        FetchMessagesRequest {
            caller_handle: self.handle.clone(),
            caller_token: self.token(),
            queue: mailbox.queue.clone(),
            receive_capability: mailbox.receive_capability.clone(),
            limit,
        }
    }

    /// The trusted devices of `who` with published keys, checked; the sender cache is
    /// refreshed with them.
    pub async fn lookup(&mut self, who: &Recipient) -> Result<Lookup, RelayError> {
        let (account, expected) = match who {
            Recipient::AccountId(id) => (Account::AccountId(id.clone()), Some(id.as_str())),
            Recipient::Username(name) => (Account::Username(name.clone()), None),
        };
        let answer = self
            .api
            .lookup_keys(LookupKeysRequest {
                caller_handle: self.handle.clone(),
                caller_token: self.token(),
                account: Some(account),
            })
            .await
            .map_err(RelayError::backend("LookupKeys"))?
            .into_inner();
        let lookup = bundle::parse_lookup(expected, &answer)?;
        for refused in &lookup.refused {
            tracing::warn!(error = %refused, "directory entry refused");
        }
        self.directory.store(&lookup);
        Ok(lookup)
    }

    /// The account id of `username` (from the directory).
    pub async fn account_id(&mut self, username: &str) -> Result<String, RelayError> {
        Ok(self
            .lookup(&Recipient::Username(username.to_owned()))
            .await?
            .account_id)
    }

    /// A new mailbox owned by this device.
    pub async fn create_mailbox(&mut self) -> Result<Mailbox, RelayError> {
        let created = self
            .api
            .create_mailbox(CreateMailboxRequest {
                caller_handle: self.handle.clone(),
                caller_token: self.token(),
            })
            .await
            .map_err(RelayError::backend("CreateMailbox"))?
            .into_inner();
        Ok(Mailbox {
            queue: created.queue,
            send_capability: created.send_capability,
            receive_capability: created.receive_capability,
        })
    }

    /// Publishes `keys` (whose id must be {account id, this handle}) and `mailbox`'s send
    /// address, issued at `issued_at_unix`, bound by `binder`.
    pub async fn publish(
        &mut self,
        keys: &DeviceKeys,
        mailbox: &Mailbox,
        issued_at_unix: u64,
        binder: &mut impl KeyBinder,
    ) -> Result<(), RelayError> {
        let bundle = bundle::build(keys, mailbox, issued_at_unix)?;
        let binding = binder
            .bind(bundle::binding_nonce(&bundle))
            .await
            .map_err(RelayError::Bind)?;
        self.api
            .publish_keys(PublishKeysRequest {
                caller_handle: self.handle.clone(),
                caller_token: self.token(),
                bundle,
                binding: Some(binding),
            })
            .await
            .map_err(RelayError::backend("PublishKeys"))?;
        Ok(())
    }

    /// Whether `mailbox` still opens (it is deleted when the device's state changes).
    async fn mailbox_alive(&mut self, mailbox: &Mailbox) -> Result<bool, RelayError> {
        let request = self.fetch_request(mailbox, 1);
        match self.api.fetch_messages(request).await {
            Ok(_) => Ok(true),
            Err(status) if status.code() == tonic::Code::PermissionDenied => Ok(false),
            Err(status) => Err(RelayError::backend("FetchMessages")(status)),
        }
    }

    /// Sets the device up in account `account_id`: keeps the keys of `previous` when they are
    /// this device's (new ones otherwise), keeps its mailbox while it still opens (a new one
    /// otherwise), and publishes a bundle newer than the last one. Returns the key file to
    /// keep; the session uses it from now on.
    pub async fn setup(
        &mut self,
        account_id: &str,
        previous: Option<&KeyFile>,
        binder: &mut impl KeyBinder,
    ) -> Result<KeyFile, RelayError> {
        let id = DeviceId {
            account: account_id.to_owned(),
            device: self.handle.clone(),
        };
        let previous = previous.filter(|p| p.keys.id == id);
        let keys = match previous {
            Some(previous) => previous.device_keys()?,
            None => DeviceKeys::generate(id)?,
        };
        let mailbox = match previous {
            Some(previous) if self.mailbox_alive(&previous.mailbox).await? => {
                previous.mailbox.clone()
            }
            _ => self.create_mailbox().await?,
        };
        let issued_at = previous
            .map(|p| p.published_at_unix.saturating_add(1))
            .unwrap_or(0)
            .max(now_unix());
        self.publish(&keys, &mailbox, issued_at, binder).await?;
        let file = KeyFile {
            keys: keys.to_secret()?,
            mailbox: mailbox.clone(),
            published_at_unix: issued_at,
        };
        self.identity = Some(Identity {
            keys: Arc::new(keys),
            mailbox,
        });
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::bundle::BindError;
    use crate::receive::Flow;
    use enigm_evidence::v1::Evidence;

    struct NoBinder;

    impl KeyBinder for NoBinder {
        async fn bind(&mut self, _nonce: [u8; 32]) -> Result<Evidence, BindError> {
            Err("no attester".into())
        }
    }

    fn is_send<T: Send>(_: &T) {}

    /// The session's futures can run on any tokio worker (checked when compiling).
    #[allow(dead_code)]
    async fn futures_are_send(client: &mut RelayClient) {
        let who = Recipient::Username("u".into());
        is_send(&client.setup("a", None, &mut NoBinder));
        is_send(&client.lookup(&who));
        is_send(&client.send(&who, b"", std::time::Duration::from_secs(1)));
        is_send(&client.receive_pending(|_| Flow::Continue));
        is_send(&client.receive_follow(std::time::Duration::from_secs(1), |_| Flow::Stop));
        if let Ok(cover) = client.cover(crate::cover::CoverConfig {
            mean_interval: std::time::Duration::from_secs(1),
            ttl: std::time::Duration::from_secs(1),
        }) {
            is_send(&cover.run());
        }
    }

    #[tokio::test]
    async fn debug_output_shows_no_secrets() {
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
        let client = RelayClient::new(DeviceApiClient::new(channel), "handle-1", "secret-token");
        let shown = format!("{client:?}");
        assert!(shown.contains("handle-1") && !shown.contains("secret-token"));
    }
}
