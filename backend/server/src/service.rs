//! The gRPC device API: accounts, enrollment with credential activation, challenges,
//! appraisal of evidence into signed attestation results, and approval of pending devices.
//!
//! Every handler validates its input before touching storage, so malformed or unknown input
//! gets `InvalidArgument` and changes nothing.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use enigm_backend_lifecycle as lifecycle;
use enigm_backend_lifecycle::{
    AttestationAccess, DeviceRef, EnrollmentContext, LifecycleError, PasswordError, PasswordHasher,
    RecoveryPhrase, Request as LcRequest,
};
use enigm_backend_storage as storage;
use enigm_backend_storage::{
    Actor, AttestationRecord, ChallengeIssue, ChallengeOutcome, ChallengePeek, ClockInfo,
    DeviceHandle, NewAccount, NewDevice, Recorded, Store, StoreError, VerifierData,
};
use enigm_backend_tokens::{Claims, KeyRing, PostureSummary, Tier as TokenTier};
use enigm_evidence::v1::{CredentialChallenge, Evidence, HashAlgorithm, TpmEvidence, evidence};
use enigm_tpm_evidence::public::PublicArea;
use enigm_verifier::appraisal::Tier as VerifierTier;
use enigm_verifier::credential::make_credential;
use enigm_verifier::policy::Policy;
use enigm_verifier::tpm::{DeviceRecord, appraise_tpm};
use tonic::{Request, Response, Status};

use crate::metrics::Metrics;
use crate::proto;
use crate::proto::device_api_server::DeviceApi;
use crate::ratelimit::RateLimiter;
use crate::tls::TlsConnectInfo;

/// Length of a challenge nonce, bytes.
pub const NONCE_LEN: usize = 32;
/// Longest accepted username, bytes.
pub const MAX_USERNAME_BYTES: usize = 128;
/// Longest accepted TPM public area, bytes.
pub const MAX_PUBLIC_AREA_BYTES: usize = 2048;
/// Domain separation of the credential secret derivation.
const CREDENTIAL_LABEL: &[u8] = b"enigm-credential-v1\0";

/// What the handlers share.
pub struct Shared {
    /// The storage.
    pub store: Store,
    /// The token signing key (and verification keys).
    pub keyring: KeyRing,
    /// The appraisal policy.
    pub policy: Policy,
    /// Argon2id hasher for passwords and recovery phrases.
    pub hasher: PasswordHasher,
    /// Challenge time to live.
    pub challenge_ttl: Duration,
    /// Token lifetime, seconds.
    pub token_ttl_secs: u64,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// A hash checked against when the username is unknown, so both refusals take as long.
    pub dummy_hash: String,
    /// Rate limits per source address and per device handle.
    pub limiter: RateLimiter,
    /// Rate limits on sends per relay queue.
    pub queue_limiter: RateLimiter,
    /// Wake-ups of the relay's push streams.
    pub relay_hub: Arc<crate::relay_hub::RelayHub>,
    /// Results already verified, for callers that repeat their token.
    pub token_cache: crate::token_cache::TokenCache,
}

/// The device API service.
#[derive(Clone)]
pub struct DeviceService {
    shared: Arc<Shared>,
}

impl DeviceService {
    /// A service over `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn internal(what: &str, err: impl std::fmt::Display) -> Status {
    tracing::error!(error = %err, "{what}");
    Status::internal(format!("{what} failed"))
}

/// The gRPC status of a storage error.
pub fn store_status(err: StoreError) -> Status {
    match err {
        StoreError::AccountExists => Status::already_exists("account already exists"),
        StoreError::DeviceExists { .. } => Status::already_exists("device already enrolled"),
        StoreError::NotFound { what, .. } => Status::not_found(format!("{what} not found")),
        StoreError::StateConflict {
            expected, actual, ..
        } => Status::failed_precondition(format!(
            "device state changed concurrently: expected {expected}, found {actual}"
        )),
        StoreError::ReplaceRefused { reason, .. } => {
            Status::failed_precondition(format!("replace refused: {reason}"))
        }
        other => internal("storage", other),
    }
}

/// The source IP address of a request, when the connection knows it.
pub fn source_ip<T>(request: &Request<T>) -> Option<IpAddr> {
    request
        .extensions()
        .get::<TlsConnectInfo>()
        .and_then(|info| info.remote_addr)
        .map(|addr| addr.ip())
}

/// `ResourceExhausted` with the wait as a hint: in the message and in the `retry-after`
/// (whole seconds, rounded up) and `retry-after-ms` metadata.
/// The status for evidence answering a challenge that is not pending.
fn challenge_refused(outcome: ChallengeOutcome) -> Status {
    Status::failed_precondition(match outcome {
        ChallengeOutcome::AlreadyUsed => "nonce: challenge already used",
        ChallengeOutcome::Expired => "nonce: challenge expired",
        ChallengeOutcome::Unknown | ChallengeOutcome::Consumed(_) => "nonce: unknown challenge",
    })
}

pub(crate) fn rate_limited(what: &str, wait: Duration) -> Status {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut status = Status::resource_exhausted(format!(
        "rate limit exceeded for this {what}; retry in {secs} s"
    ));
    let metadata = status.metadata_mut();
    if let Ok(value) = tonic::metadata::MetadataValue::try_from(secs.to_string()) {
        metadata.insert("retry-after", value);
    }
    if let Ok(value) = tonic::metadata::MetadataValue::try_from(wait.as_millis().to_string()) {
        metadata.insert("retry-after-ms", value);
    }
    status
}

/// The gRPC status of a lifecycle refusal.
pub fn lifecycle_status(err: LifecycleError) -> Status {
    match err {
        LifecycleError::InvalidTransition { .. }
        | LifecycleError::ReplacementNotEligible { .. }
        | LifecycleError::ReplacedNotEligible { .. } => {
            Status::failed_precondition(err.to_string())
        }
        LifecycleError::UnknownState(_) => internal("lifecycle", err),
        _ => Status::permission_denied(err.to_string()),
    }
}

/// Parses a device handle field (`InvalidArgument` when it is not one).
pub fn parse_handle(field: &str, text: &str) -> Result<DeviceHandle, Status> {
    DeviceHandle::parse(text)
        .map_err(|_| Status::invalid_argument(format!("{field}: not a device handle")))
}

/// The wire form of a device state.
pub fn wire_state(state: storage::DeviceState) -> proto::DeviceState {
    match state {
        storage::DeviceState::Pending => proto::DeviceState::Pending,
        storage::DeviceState::Trusted => proto::DeviceState::Trusted,
        storage::DeviceState::Suspended => proto::DeviceState::Suspended,
        storage::DeviceState::Revoked => proto::DeviceState::Revoked,
        storage::DeviceState::Retired => proto::DeviceState::Retired,
    }
}

fn wire_tier(tier: VerifierTier) -> proto::Tier {
    match tier {
        VerifierTier::Affirming => proto::Tier::Affirming,
        VerifierTier::Warning => proto::Tier::Warning,
        VerifierTier::Contraindicated => proto::Tier::Contraindicated,
    }
}

fn token_tier(tier: VerifierTier) -> TokenTier {
    match tier {
        VerifierTier::Affirming => TokenTier::Affirming,
        VerifierTier::Warning => TokenTier::Warning,
        VerifierTier::Contraindicated => TokenTier::Contraindicated,
    }
}

fn device_ref(device: &storage::Device) -> DeviceRef {
    DeviceRef::new(
        device.handle.as_str(),
        device.account.0.as_str(),
        device.state,
    )
}

/// Checks a username's shape (the store keeps only its keyed hash and a sealed copy).
fn check_username(username: &str) -> Result<(), Status> {
    if username.is_empty()
        || username.len() > MAX_USERNAME_BYTES
        || username.chars().any(char::is_control)
    {
        return Err(Status::invalid_argument(format!(
            "username: 1 to {MAX_USERNAME_BYTES} bytes, no control characters"
        )));
    }
    Ok(())
}

/// The TPM part of `evidence`, after checking every enum value and size in it.
pub fn tpm_evidence(evidence: Option<&Evidence>) -> Result<&TpmEvidence, Status> {
    let evidence = evidence.ok_or_else(|| Status::invalid_argument("evidence: missing"))?;
    let tpm = match &evidence.kind {
        Some(evidence::Kind::Tpm(tpm)) => tpm,
        Some(evidence::Kind::Android(_)) => {
            return Err(Status::invalid_argument(
                "evidence: Android evidence is not accepted by this endpoint",
            ));
        }
        None => return Err(Status::invalid_argument("evidence.kind: missing")),
    };
    for (i, bank) in tpm.pcrs.iter().enumerate() {
        match HashAlgorithm::try_from(bank.algorithm) {
            Ok(HashAlgorithm::Unspecified) => {
                return Err(Status::invalid_argument(format!(
                    "evidence.tpm.pcrs[{i}].algorithm: unspecified"
                )));
            }
            Ok(_) => {}
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "evidence.tpm.pcrs[{i}].algorithm: unknown enum value {}",
                    bank.algorithm
                )));
            }
        }
    }
    for (field, bytes) in [("ak_public", &tpm.ak_public), ("ek_public", &tpm.ek_public)] {
        if bytes.is_empty() || bytes.len() > MAX_PUBLIC_AREA_BYTES {
            return Err(Status::invalid_argument(format!(
                "evidence.tpm.{field}: 1 to {MAX_PUBLIC_AREA_BYTES} bytes"
            )));
        }
    }
    Ok(tpm)
}

impl Shared {
    /// The secret a device's ActivateCredential must recover: a keyed hash of its AK and EK
    /// public areas under the server's lookup secret, so nothing needs storing between
    /// enrollment and activation and a restart in between changes nothing.
    fn credential_secret(&self, ak_public: &[u8], ek_public: &[u8]) -> Result<Vec<u8>, Status> {
        let mut input = CREDENTIAL_LABEL.to_vec();
        input.extend((ak_public.len() as u32).to_be_bytes());
        input.extend(ak_public);
        input.extend(ek_public);
        let derived = storage::handle(self.store.lookup_secret(), &input)
            .map_err(|e| internal("deriving the credential secret", e))?;
        hex::decode(derived.as_str()).map_err(|e| internal("decoding the credential secret", e))
    }

    async fn hash(self: &Arc<Self>, secret: String) -> Result<String, Status> {
        let shared = Arc::clone(self);
        tokio::task::spawn_blocking(move || shared.hasher.hash_password(&secret))
            .await
            .map_err(|e| internal("hashing", e))?
            .map_err(|e| match e {
                PasswordError::TooShort | PasswordError::TooLong => {
                    Status::invalid_argument(format!("password: {e}"))
                }
                other => internal("hashing", other),
            })
    }

    async fn verify_password(self: &Arc<Self>, password: String, stored: String) -> bool {
        let shared = Arc::clone(self);
        matches!(
            tokio::task::spawn_blocking(move || shared.hasher.verify_password(&password, &stored))
                .await,
            Ok(Ok(_))
        )
    }

    /// Takes one token from the source address's bucket and, if given, the handle's.
    pub fn rate_limit(
        &self,
        ip: Option<IpAddr>,
        handle: Option<&DeviceHandle>,
    ) -> Result<(), Status> {
        let now = Instant::now();
        if let Some(ip) = ip {
            self.limiter
                .check(&format!("ip:{ip}"), now)
                .map_err(|wait| rate_limited("source address", wait))?;
        }
        if let Some(handle) = handle {
            self.limiter
                .check(&format!("device:{handle}"), now)
                .map_err(|wait| rate_limited("device", wait))?;
        }
        Ok(())
    }

    /// Applies `request` to the device `handle` as `actor` (recorded as `recorded`, with
    /// `reason`), following the lifecycle rules, as a compare-and-set on its current state.
    /// Storage bumps the device's revocation epoch in the same transaction, so results it
    /// already holds stop verifying.
    pub async fn change_state(
        &self,
        handle: &DeviceHandle,
        request: LcRequest,
        actor: &lifecycle::Actor,
        recorded: &Actor,
        reason: &str,
    ) -> Result<storage::DeviceState, Status> {
        let subject = self.device(handle).await?;
        let target = lifecycle::transition(&device_ref(&subject), request, actor)
            .map_err(lifecycle_status)?;
        self.store
            .transition(
                handle,
                subject.state,
                target,
                recorded,
                reason,
                SystemTime::now(),
            )
            .await
            .map_err(store_status)?;
        tracing::info!(device = %handle, from = %subject.state, to = %target, "device state changed");
        Ok(target)
    }

    /// Replaces `old` by `new` (same account) as `actor`: in one storage transaction `old` is
    /// revoked and `new` trusted, both transitions recorded with `reason` and both epochs
    /// bumped (results `new` got while pending stop verifying too).
    pub async fn replace_device(
        &self,
        old: &DeviceHandle,
        new: &DeviceHandle,
        actor: &lifecycle::Actor,
        recorded: &Actor,
        reason: &str,
    ) -> Result<(storage::DeviceState, storage::DeviceState), Status> {
        let old_device = self.device(old).await?;
        let new_device = self.device(new).await?;
        let decided = lifecycle::replace(&device_ref(&old_device), &device_ref(&new_device), actor)
            .map_err(lifecycle_status)?;
        self.store
            .replace(old, new, recorded, reason, SystemTime::now())
            .await
            .map_err(store_status)?;
        tracing::info!(old = %old, new = %new, "device replaced");
        Ok((decided.old, decided.new))
    }

    /// Checks that `token` is a valid, current, not contraindicated result of `handle`
    /// (whose device is returned).
    pub(crate) async fn device_with_token(
        &self,
        handle: &DeviceHandle,
        field: &str,
        token: &str,
    ) -> Result<storage::Device, Status> {
        if token.is_empty() || token.len() > enigm_backend_tokens::MAX_TOKEN_LEN {
            return Err(Status::invalid_argument(format!(
                "{field}: missing or too long"
            )));
        }
        // The token is checked before the device is looked up, so a caller without a valid
        // result for `handle` learns nothing about whether it is enrolled.
        let epoch = self
            .store
            .revocation_epoch(handle)
            .await
            .map_err(store_status)?;
        let epoch = u64::try_from(epoch).unwrap_or(u64::MAX);
        let now = unix_secs(SystemTime::now());
        let claims = match self.token_cache.get(token, handle.as_str(), epoch, now) {
            Some(claims) => claims,
            None => {
                let expected_sub = handle.as_str().to_owned();
                let check = move |d: &str| (d == expected_sub).then_some(epoch);
                let claims = enigm_backend_tokens::verify(token, &self.keyring, now, &check)
                    .map_err(|e| Status::unauthenticated(format!("{field}: {e}")))?;
                self.token_cache.insert(token, &claims);
                claims
            }
        };
        if claims.tier == TokenTier::Contraindicated {
            return Err(Status::permission_denied(format!(
                "{field}: the attestation result is contraindicated"
            )));
        }
        self.device(handle).await
    }

    /// The signed revocation list: every enrolled device with its current epoch. Its version
    /// is the global epoch plus the number of devices, so it grows with every bump and every
    /// enrollment.
    pub async fn revocations(&self) -> Result<(u64, enigm_backend_tokens::RevocationList), Status> {
        let global = self
            .store
            .global_revocation_epoch()
            .await
            .map_err(store_status)?;
        let epochs = self.store.device_epochs().await.map_err(store_status)?;
        let version = u64::try_from(global).unwrap_or(0) + epochs.len() as u64;
        let mut list =
            enigm_backend_tokens::RevocationList::new(version, unix_secs(SystemTime::now()));
        for (handle, epoch) in epochs {
            list.set(handle.as_str(), u64::try_from(epoch).unwrap_or(0));
        }
        Ok((version, list))
    }

    /// The signed revocation list for a caller that holds version `since_version`: empty
    /// and unchanged when that is still the current one.
    pub async fn revocations_response(
        &self,
        since_version: u64,
    ) -> Result<proto::GetRevocationsResponse, Status> {
        let (version, list) = self.revocations().await?;
        if since_version == version {
            return Ok(proto::GetRevocationsResponse {
                signed_list: String::new(),
                version,
                changed: false,
            });
        }
        let signed_list = list
            .sign(&self.keyring)
            .map_err(|e| internal("signing the revocation list", e))?;
        Ok(proto::GetRevocationsResponse {
            signed_list,
            version,
            changed: true,
        })
    }

    /// The device with this handle, or `NotFound`.
    pub async fn device(&self, handle: &DeviceHandle) -> Result<storage::Device, Status> {
        self.store
            .get_device(handle)
            .await
            .map_err(store_status)?
            .ok_or_else(|| Status::not_found("device not enrolled"))
    }
}

#[tonic::async_trait]
impl DeviceApi for DeviceService {
    async fn create_account(
        &self,
        request: Request<proto::CreateAccountRequest>,
    ) -> Result<Response<proto::CreateAccountResponse>, Status> {
        let s = &self.shared;
        s.rate_limit(source_ip(&request), None)?;
        let req = request.into_inner();
        check_username(&req.username)?;
        let password_hash = s.hash(req.password).await?;
        let phrase = RecoveryPhrase::generate().map_err(|e| internal("recovery phrase", e))?;
        let recovery_hash = s.hash(phrase.reveal()).await?;
        let id = s
            .store
            .create_account(&NewAccount {
                username: &req.username,
                password_hash: &password_hash,
                recovery_hash: &recovery_hash,
                metadata: serde_json::json!({}),
                at: SystemTime::now(),
            })
            .await
            .map_err(store_status)?;
        tracing::info!(account = %id, "account created");
        Ok(Response::new(proto::CreateAccountResponse {
            account_id: id.0,
            recovery_phrase: phrase.reveal(),
        }))
    }

    async fn enroll_device(
        &self,
        request: Request<proto::EnrollDeviceRequest>,
    ) -> Result<Response<proto::EnrollDeviceResponse>, Status> {
        let s = &self.shared;
        let ip = source_ip(&request);
        s.rate_limit(ip, None)?;
        let req = request.into_inner();
        check_username(&req.username)?;
        let tpm = tpm_evidence(req.evidence.as_ref())?;
        let ak = PublicArea::parse_tpm2b(&tpm.ak_public)
            .map_err(|e| Status::invalid_argument(format!("evidence.tpm.ak_public: {e}")))?;
        if !ak.is_attestation_key() {
            return Err(Status::invalid_argument(
                "evidence.tpm.ak_public: not a restricted, TPM-fixed signing key",
            ));
        }
        let ek = PublicArea::parse_tpm2b(&tpm.ek_public)
            .map_err(|e| Status::invalid_argument(format!("evidence.tpm.ek_public: {e}")))?;
        let handle = storage::handle(s.store.lookup_secret(), &tpm.ak_public)
            .map_err(|e| internal("device handle", e))?;
        s.rate_limit(None, Some(&handle))?;
        let account = s
            .store
            .find_account_by_username(&req.username)
            .await
            .map_err(store_status)?;
        // Same answer for an unknown user and a wrong password.
        let denied = || Status::unauthenticated("wrong username or password");
        let Some(account) = account else {
            s.verify_password(req.password, s.dummy_hash.clone()).await;
            return Err(denied());
        };
        if !s
            .verify_password(req.password, account.password_hash.clone())
            .await
        {
            return Err(denied());
        }
        let secret = s.credential_secret(&tpm.ak_public, &tpm.ek_public)?;
        let ak_name = ak.name().map_err(|e| internal("AK name", e))?;
        let credential = make_credential(&ek, &ak_name, &secret).map_err(|e| {
            Status::invalid_argument(format!(
                "evidence.tpm.ek_public: cannot make a credential: {e}"
            ))
        })?;
        let devices = s
            .store
            .list_devices(&account.id)
            .await
            .map_err(store_status)?;
        let state = lifecycle::enrollment_state(EnrollmentContext {
            devices_ever_enrolled: devices.len() as u64,
            trusted_devices: devices
                .iter()
                .filter(|d| d.state == storage::DeviceState::Trusted)
                .count() as u64,
            recovered_with_phrase: false,
        });
        let verifier = VerifierData {
            ak_public: tpm.ak_public.clone(),
            ek_public: tpm.ek_public.clone(),
            ek_certificate: (!tpm.ek_certificate.is_empty()).then(|| tpm.ek_certificate.clone()),
            activated: false,
            last_clock: None,
        };
        let reason = if state == storage::DeviceState::Trusted {
            "first device of the account"
        } else {
            "further device: pending approval by a trusted device"
        };
        s.store
            .enroll_device(&NewDevice {
                handle: &handle,
                account: &account.id,
                state,
                verifier: &verifier,
                actor: &Actor::System,
                reason,
                at: SystemTime::now(),
            })
            .await
            .map_err(store_status)?;
        tracing::info!(device = %handle, %state, "device enrolled");
        Ok(Response::new(proto::EnrollDeviceResponse {
            handle: handle.as_str().to_owned(),
            credential: Some(CredentialChallenge {
                credential_blob: credential.credential_blob,
                encrypted_secret: credential.encrypted_secret,
            }),
            state: wire_state(state) as i32,
        }))
    }

    async fn activate_credential(
        &self,
        request: Request<proto::ActivateCredentialRequest>,
    ) -> Result<Response<proto::ActivateCredentialResponse>, Status> {
        let s = &self.shared;
        let req = request.into_inner();
        {
            let handle = parse_handle("handle", &req.handle)?;
            if req.secret.is_empty() || req.secret.len() > 64 {
                return Err(Status::invalid_argument("secret: 1 to 64 bytes"));
            }
            let mut device = s.device(&handle).await?;
            let expected =
                s.credential_secret(&device.verifier.ak_public, &device.verifier.ek_public)?;
            if expected.len() != req.secret.len() || !openssl::memcmp::eq(&expected, &req.secret) {
                return Err(Status::permission_denied(
                    "credential activation failed: wrong secret",
                ));
            }
            if !device.verifier.activated {
                device.verifier.activated = true;
                s.store
                    .update_verifier_data(&handle, &device.verifier)
                    .await
                    .map_err(store_status)?;
                tracing::info!(device = %handle, "credential activated");
            }
            Ok(Response::new(proto::ActivateCredentialResponse {}))
        }
    }

    async fn get_challenge(
        &self,
        request: Request<proto::GetChallengeRequest>,
    ) -> Result<Response<proto::GetChallengeResponse>, Status> {
        let s = &self.shared;
        let ip = source_ip(&request);
        let req = request.into_inner();
        let handle = parse_handle("handle", &req.handle)?;
        s.rate_limit(ip, Some(&handle))?;
        let mut nonce = vec![0u8; NONCE_LEN];
        openssl::rand::rand_bytes(&mut nonce).map_err(|e| internal("random nonce", e))?;
        let now = SystemTime::now();
        match s
            .store
            .issue_challenge(&handle, &nonce, now, s.challenge_ttl)
            .await
            .map_err(store_status)?
        {
            ChallengeIssue::Issued => {}
            ChallengeIssue::NotEnrolled => return Err(Status::not_found("device not enrolled")),
            ChallengeIssue::Refused(state) => {
                return Err(Status::permission_denied(format!(
                    "a {state} device gets no attestation results"
                )));
            }
        }
        s.metrics.challenge_issued();
        Ok(Response::new(proto::GetChallengeResponse {
            nonce,
            expires_at_unix: unix_secs(now + s.challenge_ttl),
        }))
    }

    async fn submit_evidence(
        &self,
        request: Request<proto::SubmitEvidenceRequest>,
    ) -> Result<Response<proto::SubmitEvidenceResponse>, Status> {
        let s = &self.shared;
        let req = request.into_inner();
        let handle = parse_handle("handle", &req.handle)?;
        if req.nonce.len() != NONCE_LEN {
            return Err(Status::invalid_argument(format!(
                "nonce: must be {NONCE_LEN} bytes"
            )));
        }
        let tpm = tpm_evidence(req.evidence.as_ref())?;
        let posture_digest = req
            .evidence
            .as_ref()
            .map(|e| e.posture_digest.clone())
            .unwrap_or_default();
        if posture_digest.len() != 32 {
            return Err(Status::invalid_argument(
                "evidence.posture_digest: must be a SHA-256 digest",
            ));
        }
        let level = u8::try_from(req.posture_level)
            .ok()
            .filter(|l| *l <= PostureSummary::MAX_LEVEL)
            .ok_or_else(|| Status::invalid_argument("posture_level: 0 to 4"))?;
        let now = SystemTime::now();
        // Read the challenge and its device in one query, appraise, then consume the
        // challenge and record the appraisal in one write transaction.
        let (mut device, epoch) = match s
            .store
            .peek_challenge(&req.nonce, now)
            .await
            .map_err(store_status)?
        {
            ChallengePeek::Pending { device, epoch } if device.handle == handle => (device, epoch),
            ChallengePeek::Pending { .. } => {
                return Err(Status::permission_denied("nonce: issued to another device"));
            }
            ChallengePeek::Unknown => return Err(challenge_refused(ChallengeOutcome::Unknown)),
            ChallengePeek::AlreadyUsed => {
                return Err(challenge_refused(ChallengeOutcome::AlreadyUsed));
            }
            ChallengePeek::Expired => return Err(challenge_refused(ChallengeOutcome::Expired)),
        };
        let access = device.state.attestation_access();
        if access == AttestationAccess::Denied {
            return Err(Status::permission_denied(format!(
                "a {} device gets no attestation results",
                device.state
            )));
        }
        let ak_name = PublicArea::parse_tpm2b(&device.verifier.ak_public)
            .map_err(|e| internal("stored AK", e))?
            .name()
            .map_err(|e| internal("stored AK name", e))?;
        let record = DeviceRecord {
            ak_name,
            pending_secret: None,
            ak_activated: device.verifier.activated,
            last_clock: device
                .verifier
                .last_clock
                .map(|c| enigm_tpm_evidence::attest::ClockInfo {
                    clock: c.clock,
                    reset_count: c.reset_count,
                    restart_count: c.restart_count,
                    safe: c.safe,
                }),
        };
        let (mut appraisal, clock) =
            appraise_tpm(tpm, &posture_digest, &req.nonce, &record, &s.policy);
        if access == AttestationAccess::Limited {
            appraisal.push(
                "lifecycle",
                VerifierTier::Warning,
                "device pending approval: result capped at warning",
            );
        }
        let tier = appraisal.tier();
        let clock_changed = clock.map(|c| ClockInfo {
            clock: c.clock,
            reset_count: c.reset_count,
            restart_count: c.restart_count,
            safe: c.safe,
        });
        if clock_changed.is_some() {
            device.verifier.last_clock = clock_changed;
        }
        let claims_json =
            serde_json::to_value(&appraisal).map_err(|e| internal("encoding claims", e))?;
        let tier_name = token_tier(tier).as_str();
        let recorded = s
            .store
            .record_attestation(&AttestationRecord {
                nonce: &req.nonce,
                device: &handle,
                at: now,
                verifier: clock_changed.map(|_| &device.verifier),
                tier: tier_name,
                claims: &claims_json,
            })
            .await
            .map_err(store_status)?;
        if let Recorded::ChallengeRefused(outcome) = recorded {
            return Err(challenge_refused(outcome));
        }
        s.metrics.appraisal(tier_name);
        // The epoch read with the challenge: a state change committed since then bumped it,
        // so a token carrying this one is already stale to relying parties — never too new.
        let claims = Claims::issue(
            handle.as_str(),
            token_tier(tier),
            PostureSummary {
                level,
                runtime_issue: req.runtime_issue,
            },
            u64::try_from(epoch).unwrap_or(0),
            unix_secs(now),
            s.token_ttl_secs,
        )
        .map_err(|e| internal("token claims", e))?;
        let token =
            enigm_backend_tokens::sign(&claims, &s.keyring).map_err(|e| internal("signing", e))?;
        s.metrics.token_issued();
        tracing::info!(device = %handle, tier = tier_name, "attestation result issued");
        Ok(Response::new(proto::SubmitEvidenceResponse {
            token,
            tier: wire_tier(tier) as i32,
            claims: appraisal
                .claims
                .iter()
                .map(|c| proto::Claim {
                    name: c.name.to_owned(),
                    tier: wire_tier(c.tier) as i32,
                    reason: c.reason.clone(),
                })
                .collect(),
            state: wire_state(device.state) as i32,
        }))
    }

    async fn approve(
        &self,
        request: Request<proto::ApproveRequest>,
    ) -> Result<Response<proto::ApproveResponse>, Status> {
        let s = &self.shared;
        let req = request.into_inner();
        let approver_handle = parse_handle("approver_handle", &req.approver_handle)?;
        let pending_handle = parse_handle("pending_handle", &req.pending_handle)?;
        let approver = s
            .device_with_token(&approver_handle, "approver_token", &req.approver_token)
            .await?;
        let target = s
            .change_state(
                &pending_handle,
                LcRequest::Approve,
                &lifecycle::Actor::Device(device_ref(&approver)),
                &Actor::Device(approver_handle.clone()),
                "approved by a trusted device of the account",
            )
            .await?;
        Ok(Response::new(proto::ApproveResponse {
            state: wire_state(target) as i32,
        }))
    }

    async fn replace(
        &self,
        request: Request<proto::DeviceReplaceRequest>,
    ) -> Result<Response<proto::ReplaceResponse>, Status> {
        let s = &self.shared;
        let req = request.into_inner();
        let old_handle = parse_handle("old_handle", &req.old_handle)?;
        let new_handle = parse_handle("new_handle", &req.new_handle)?;
        let old = s
            .device_with_token(&old_handle, "old_token", &req.old_token)
            .await?;
        let (old_state, new_state) = s
            .replace_device(
                &old_handle,
                &new_handle,
                &lifecycle::Actor::Device(device_ref(&old)),
                &Actor::Device(old_handle.clone()),
                "replaced by the old device itself",
            )
            .await?;
        Ok(Response::new(proto::ReplaceResponse {
            old_state: wire_state(old_state) as i32,
            new_state: wire_state(new_state) as i32,
        }))
    }

    async fn get_revocations(
        &self,
        request: Request<proto::GetRevocationsRequest>,
    ) -> Result<Response<proto::GetRevocationsResponse>, Status> {
        let s = &self.shared;
        let req = request.into_inner();
        // A missing or malformed credential is "not authenticated" too.
        let as_unauthenticated = |e: Status| match e.code() {
            tonic::Code::InvalidArgument => Status::unauthenticated(e.message().to_owned()),
            _ => e,
        };
        let caller =
            parse_handle("caller_handle", &req.caller_handle).map_err(as_unauthenticated)?;
        s.device_with_token(&caller, "caller_token", &req.caller_token)
            .await
            .map_err(as_unauthenticated)?;
        s.revocations_response(req.since_version)
            .await
            .map(Response::new)
    }

    async fn create_mailbox(
        &self,
        request: Request<proto::CreateMailboxRequest>,
    ) -> Result<Response<proto::CreateMailboxResponse>, Status> {
        self.shared
            .create_mailbox(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn send_message(
        &self,
        request: Request<proto::SendMessageRequest>,
    ) -> Result<Response<proto::SendMessageResponse>, Status> {
        self.shared
            .send_message(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn fetch_messages(
        &self,
        request: Request<proto::FetchMessagesRequest>,
    ) -> Result<Response<proto::FetchMessagesResponse>, Status> {
        self.shared
            .fetch_messages(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn ack_message(
        &self,
        request: Request<proto::AckMessageRequest>,
    ) -> Result<Response<proto::AckMessageResponse>, Status> {
        self.shared
            .ack_message(request.into_inner())
            .await
            .map(Response::new)
    }

    type StreamMessagesStream = crate::relay_stream::MessageStream;

    async fn stream_messages(
        &self,
        request: Request<proto::FetchMessagesRequest>,
    ) -> Result<Response<Self::StreamMessagesStream>, Status> {
        self.shared
            .stream_messages(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn publish_keys(
        &self,
        request: Request<proto::PublishKeysRequest>,
    ) -> Result<Response<proto::PublishKeysResponse>, Status> {
        self.shared
            .publish_keys(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn lookup_keys(
        &self,
        request: Request<proto::LookupKeysRequest>,
    ) -> Result<Response<proto::LookupKeysResponse>, Status> {
        self.shared
            .lookup_keys(request.into_inner())
            .await
            .map(Response::new)
    }
}
