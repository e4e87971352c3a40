//! The Command admin API (`enigm.backend.v1.AdminApi`): suspend, reinstate, revoke, retire,
//! approve and replace devices, and list an account's devices (handles and states only; never
//! keys, verifier data or content).
//!
//! Every call must carry `authorization: Bearer <key>`, the key in the configured
//! `admin_key_file` (generated on first start, 0600), compared in constant time. Every change
//! follows the lifecycle rules with `Actor::Admin(admin_name)`, is recorded with the required
//! reason, and bumps the device's revocation epoch.

use std::path::Path;
use std::sync::Arc;

use enigm_backend_lifecycle as lifecycle;
use enigm_backend_lifecycle::Request as LcRequest;
use enigm_backend_storage::{AccountId, Actor};
use tonic::{Request, Response, Status};

use crate::proto;
use crate::proto::admin_api_server::AdminApi;
use crate::service::{Shared, parse_handle, store_status, wire_state};

/// Length of a generated admin key, bytes (hex-encoded in the file).
pub const ADMIN_KEY_BYTES: usize = 32;
/// Longest accepted reason, bytes.
pub const MAX_REASON_BYTES: usize = 512;
/// Longest accepted account id, bytes.
const MAX_ACCOUNT_ID_BYTES: usize = 128;

/// Why the admin key could not be loaded or generated.
#[derive(Debug, thiserror::Error)]
pub enum AdminKeyError {
    /// Reading or writing the file.
    #[error("admin key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Random bytes.
    #[error("generating the admin key: {0}")]
    Random(#[from] openssl::error::ErrorStack),
    /// The file holds no usable key.
    #[error("admin key file {0}: expected at least 32 hex characters on one line")]
    Malformed(String),
}

/// The admin bearer key: loaded from `path`, or generated there (0600) on first start.
pub fn admin_key(path: &Path) -> Result<Vec<u8>, AdminKeyError> {
    let io = |source| AdminKeyError::Io {
        path: path.display().to_string(),
        source,
    };
    if !path.exists() {
        let mut raw = [0u8; ADMIN_KEY_BYTES];
        openssl::rand::rand_bytes(&mut raw)?;
        let text = format!("{}\n", hex::encode(raw));
        crate::files::write_private(path, text.as_bytes()).map_err(io)?;
        tracing::info!(path = %path.display(), "generated the admin API key");
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let key = text.trim();
    if key.len() < 32 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AdminKeyError::Malformed(path.display().to_string()));
    }
    Ok(key.as_bytes().to_vec())
}

/// The admin API service.
#[derive(Clone)]
pub struct AdminService {
    shared: Arc<Shared>,
    key: Arc<Vec<u8>>,
    name: String,
}

impl AdminService {
    /// A service over `shared`, accepting `key`, recording actions as the admin `name`.
    pub fn new(shared: Arc<Shared>, key: Vec<u8>, name: String) -> Self {
        Self {
            shared,
            key: Arc::new(key),
            name,
        }
    }

    /// Checks the bearer key (length first, then a constant-time comparison).
    fn authenticate<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| Status::unauthenticated("admin key required (authorization: Bearer)"))?;
        let presented = presented.as_bytes();
        if presented.len() != self.key.len() || !openssl::memcmp::eq(presented, &self.key) {
            tracing::warn!("admin API call with a wrong key");
            return Err(Status::unauthenticated("wrong admin key"));
        }
        Ok(())
    }

    fn actors(&self) -> (lifecycle::Actor, Actor) {
        (
            lifecycle::Actor::Admin(self.name.clone()),
            Actor::Admin(self.name.clone()),
        )
    }

    async fn apply(
        &self,
        request: Request<proto::AdminTransitionRequest>,
        change: LcRequest,
    ) -> Result<Response<proto::AdminTransitionResponse>, Status> {
        self.authenticate(&request)?;
        let req = request.into_inner();
        let handle = parse_handle("handle", &req.handle)?;
        check_reason(&req.reason)?;
        let (actor, recorded) = self.actors();
        let state = self
            .shared
            .change_state(&handle, change, &actor, &recorded, &req.reason)
            .await?;
        Ok(Response::new(proto::AdminTransitionResponse {
            state: wire_state(state) as i32,
        }))
    }
}

/// A reason is required: 1 to 512 bytes, no control characters other than newline.
fn check_reason(reason: &str) -> Result<(), Status> {
    if reason.trim().is_empty()
        || reason.len() > MAX_REASON_BYTES
        || reason.chars().any(|c| c.is_control() && c != '\n')
    {
        return Err(Status::invalid_argument(format!(
            "reason: required, 1 to {MAX_REASON_BYTES} bytes, no control characters"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl AdminApi for AdminService {
    async fn suspend(
        &self,
        request: Request<proto::AdminTransitionRequest>,
    ) -> Result<Response<proto::AdminTransitionResponse>, Status> {
        self.apply(request, LcRequest::Suspend).await
    }

    async fn reinstate(
        &self,
        request: Request<proto::AdminTransitionRequest>,
    ) -> Result<Response<proto::AdminTransitionResponse>, Status> {
        self.apply(request, LcRequest::Reinstate).await
    }

    async fn revoke(
        &self,
        request: Request<proto::AdminTransitionRequest>,
    ) -> Result<Response<proto::AdminTransitionResponse>, Status> {
        self.apply(request, LcRequest::Revoke).await
    }

    async fn retire(
        &self,
        request: Request<proto::AdminTransitionRequest>,
    ) -> Result<Response<proto::AdminTransitionResponse>, Status> {
        self.apply(request, LcRequest::Retire).await
    }

    async fn approve(
        &self,
        request: Request<proto::AdminTransitionRequest>,
    ) -> Result<Response<proto::AdminTransitionResponse>, Status> {
        self.apply(request, LcRequest::Approve).await
    }

    async fn replace(
        &self,
        request: Request<proto::AdminReplaceRequest>,
    ) -> Result<Response<proto::ReplaceResponse>, Status> {
        self.authenticate(&request)?;
        let req = request.into_inner();
        let old = parse_handle("old_handle", &req.old_handle)?;
        let new = parse_handle("new_handle", &req.new_handle)?;
        check_reason(&req.reason)?;
        let (actor, recorded) = self.actors();
        let (old_state, new_state) = self
            .shared
            .replace_device(&old, &new, &actor, &recorded, &req.reason)
            .await?;
        Ok(Response::new(proto::ReplaceResponse {
            old_state: wire_state(old_state) as i32,
            new_state: wire_state(new_state) as i32,
        }))
    }

    async fn list_devices(
        &self,
        request: Request<proto::ListDevicesRequest>,
    ) -> Result<Response<proto::ListDevicesResponse>, Status> {
        self.authenticate(&request)?;
        let req = request.into_inner();
        if req.account_id.is_empty()
            || req.account_id.len() > MAX_ACCOUNT_ID_BYTES
            || req.account_id.chars().any(char::is_control)
        {
            return Err(Status::invalid_argument("account_id: missing or malformed"));
        }
        let account = AccountId(req.account_id);
        if self
            .shared
            .store
            .get_account(&account)
            .await
            .map_err(store_status)?
            .is_none()
        {
            return Err(Status::not_found("account not found"));
        }
        let devices = self
            .shared
            .store
            .list_devices(&account)
            .await
            .map_err(store_status)?;
        Ok(Response::new(proto::ListDevicesResponse {
            devices: devices
                .iter()
                .map(|d| proto::DeviceSummary {
                    handle: d.handle.as_str().to_owned(),
                    state: wire_state(d.state) as i32,
                })
                .collect(),
        }))
    }

    async fn get_revocations(
        &self,
        request: Request<proto::GetRevocationsRequest>,
    ) -> Result<Response<proto::GetRevocationsResponse>, Status> {
        self.authenticate(&request)?;
        let since = request.into_inner().since_version;
        self.shared
            .revocations_response(since)
            .await
            .map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn key_generated_private_then_reloaded_and_malformed_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.key");
        let key = admin_key(&path).unwrap();
        assert_eq!(key.len(), 2 * ADMIN_KEY_BYTES);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(admin_key(&path).unwrap(), key);
        let bad = dir.path().join("bad.key");
        std::fs::write(&bad, "not hex at all, not hex at all, not hex\n").unwrap();
        assert!(matches!(admin_key(&bad), Err(AdminKeyError::Malformed(_))));
        std::fs::write(&bad, "abcd\n").unwrap();
        assert!(matches!(admin_key(&bad), Err(AdminKeyError::Malformed(_))));
    }

    #[test]
    fn reasons_are_required_and_bounded() {
        assert!(check_reason("lost phone").is_ok());
        assert!(check_reason("line one\nline two").is_ok());
        for bad in ["", "  ", "bell\u{7}", &"x".repeat(MAX_REASON_BYTES + 1)] {
            assert_eq!(
                check_reason(bad).unwrap_err().code(),
                tonic::Code::InvalidArgument
            );
        }
    }
}
