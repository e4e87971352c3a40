//! The backend's device API client: the types generated from `backend/proto/device.proto`, and
//! (from `enigm-backend-client`) a gRPC channel over OpenSSL TLS that trusts exactly one
//! pinned certificate.

/// Generated client and messages of `enigm.backend.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("enigm.backend.v1");
}

pub use enigm_backend_client::{ChannelError, channel, fingerprint};
