//! The relay's key directory: each trusted device's message keys and mailbox address, bound
//! to its TPM's attestation key.
//!
//! A device publishes a serialized `KeyBundle` with a TPM quote by the AK it enrolled with,
//! whose qualifying data commits to the bundle (see `device.proto`). The server checks the
//! bundle's fields, that it names the caller, its account and one of its own mailboxes, and
//! the quote's signature and qualifying data; then it keeps the bundle and the quote as
//! published, so a reader can check the quote too. Lookups list only trusted devices.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use enigm_backend_storage as storage;
use enigm_backend_storage::model::AccountId;
use enigm_backend_storage::store::{DirectoryEntry, DirectoryRefusal};
use enigm_evidence::v1::evidence;
use prost::Message;
use tonic::Status;

use crate::proto;
use crate::relay::field_len;
use crate::service::{Shared, store_status};

/// The largest serialized bundle.
pub const MAX_BUNDLE: usize = 4096;
/// How far in the future a bundle's issue time may be (clock skew).
pub const MAX_SKEW: Duration = Duration::from_secs(600);
/// Domain separation of the bundle digest.
const BUNDLE_DOMAIN: &[u8] = b"enigm-keydir-v1";
/// Domain of the quote's qualifying data (as for attestation evidence).
const QUALIFYING_DOMAIN: &[u8] = b"enigm-attest-v1";

/// The quote's qualifying data for `bundle`:
/// `SHA-256("enigm-attest-v1" || SHA-256("enigm-keydir-v1" || bundle) || 32 zero bytes)`.
pub fn binding_qualifying_data(bundle: &[u8]) -> [u8; 32] {
    let mut nonce = openssl::sha::Sha256::new();
    nonce.update(BUNDLE_DOMAIN);
    nonce.update(bundle);
    let mut hasher = openssl::sha::Sha256::new();
    hasher.update(QUALIFYING_DOMAIN);
    hasher.update(&nonce.finish());
    hasher.update(&[0u8; 32]);
    hasher.finish()
}

/// Checks a bundle's own fields; `Ok` with the decoded bundle.
pub fn check_bundle(bytes: &[u8], now: SystemTime) -> Result<proto::KeyBundle, Status> {
    if bytes.is_empty() || bytes.len() > MAX_BUNDLE {
        return Err(Status::invalid_argument(format!(
            "bundle: missing or over {MAX_BUNDLE} bytes"
        )));
    }
    let bundle = proto::KeyBundle::decode(bytes)
        .map_err(|e| Status::invalid_argument(format!("bundle: not a KeyBundle: {e}")))?;
    for (field, key) in [
        ("hpke_public", &bundle.hpke_public),
        ("signing_public", &bundle.signing_public),
    ] {
        if key.len() != 32 {
            return Err(Status::invalid_argument(format!(
                "bundle.{field}: {} bytes, not 32",
                key.len()
            )));
        }
    }
    field_len("bundle.queue", &bundle.queue, 64)?;
    field_len("bundle.send_capability", &bundle.send_capability, 128)?;
    let issued = UNIX_EPOCH + Duration::from_secs(bundle.issued_at_unix);
    if bundle.issued_at_unix == 0 || issued > now + MAX_SKEW {
        return Err(Status::invalid_argument(
            "bundle.issued_at_unix: missing or in the future",
        ));
    }
    Ok(bundle)
}

/// Checks the binding quote of `bundle` against the device's enrolled AK.
fn check_binding(
    device: &storage::Device,
    bundle: &[u8],
    binding: Option<&enigm_evidence::v1::Evidence>,
) -> Result<(Vec<u8>, Vec<u8>), Status> {
    let Some(evidence::Kind::Tpm(tpm)) = binding.and_then(|b| b.kind.as_ref()) else {
        return Err(Status::invalid_argument("binding: a TPM quote is required"));
    };
    let ak = enigm_tpm_evidence::public::load_public_key(&device.verifier.ak_public)
        .map_err(|e| Status::internal(format!("the enrolled AK does not load: {e}")))?;
    let expected = binding_qualifying_data(bundle);
    enigm_tpm_evidence::quote::verify_quote(
        &ak,
        &tpm.attest,
        &tpm.signature,
        Some(&expected),
        None,
    )
    .map_err(|e| {
        Status::permission_denied(format!(
            "binding: not a quote of this bundle by the device's attestation key: {e}"
        ))
    })?;
    Ok((tpm.attest.clone(), tpm.signature.clone()))
}

impl Shared {
    /// Publishes the caller's bundle after checking it and its binding.
    pub async fn publish_keys(
        &self,
        req: proto::PublishKeysRequest,
    ) -> Result<proto::PublishKeysResponse, Status> {
        let device = self
            .relay_caller(&req.caller_handle, &req.caller_token)
            .await?;
        let now = SystemTime::now();
        let bundle = check_bundle(&req.bundle, now)?;
        if bundle.handle != device.handle.as_str() || bundle.account_id != device.account.0 {
            return Err(Status::invalid_argument(
                "bundle: handle and account_id must be the caller's",
            ));
        }
        if !self
            .store
            .owns_mailbox(&device.handle, &bundle.queue)
            .await
            .map_err(store_status)?
        {
            return Err(Status::invalid_argument(
                "bundle.queue: not one of the caller's mailboxes",
            ));
        }
        let (quote_attest, quote_signature) =
            check_binding(&device, &req.bundle, req.binding.as_ref())?;
        let entry = DirectoryEntry {
            handle: bundle.handle,
            account: bundle.account_id,
            issued_at: UNIX_EPOCH + Duration::from_secs(bundle.issued_at_unix),
            bundle: req.bundle,
            quote_attest,
            quote_signature,
        };
        match self
            .store
            .publish_keys(&entry)
            .await
            .map_err(store_status)?
        {
            Ok(()) => Ok(proto::PublishKeysResponse {}),
            Err(refusal @ DirectoryRefusal::Stale) => {
                Err(Status::failed_precondition(refusal.to_string()))
            }
            Err(refusal @ DirectoryRefusal::NotTrusted) => {
                Err(Status::permission_denied(refusal.to_string()))
            }
        }
    }

    /// The published bundles of an account's trusted devices.
    pub async fn lookup_keys(
        &self,
        req: proto::LookupKeysRequest,
    ) -> Result<proto::LookupKeysResponse, Status> {
        self.relay_caller(&req.caller_handle, &req.caller_token)
            .await?;
        let account = match req.account {
            Some(proto::lookup_keys_request::Account::AccountId(id)) => {
                field_len("account_id", &id, 128)?;
                AccountId(id)
            }
            Some(proto::lookup_keys_request::Account::Username(name)) => {
                field_len("username", &name, crate::service::MAX_USERNAME_BYTES)?;
                self.store
                    .find_account_by_username(&name)
                    .await
                    .map_err(store_status)?
                    .ok_or_else(|| Status::not_found("no such account"))?
                    .id
            }
            None => {
                return Err(Status::invalid_argument(
                    "account: an account_id or a username is required",
                ));
            }
        };
        let entries = self
            .store
            .lookup_keys(&account)
            .await
            .map_err(store_status)?;
        Ok(proto::LookupKeysResponse {
            account_id: account.0,
            devices: entries
                .into_iter()
                .map(|e| proto::PublishedKeys {
                    bundle: e.bundle,
                    quote_attest: e.quote_attest,
                    quote_signature: e.quote_signature,
                })
                .collect(),
        })
    }
}
