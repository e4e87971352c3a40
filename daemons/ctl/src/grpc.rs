//! The backend's device API client, from `enigm-backend-client`: the types generated from
//! `backend/proto/device.proto`, and a gRPC channel over OpenSSL TLS that trusts exactly one
//! pinned certificate.

pub use enigm_backend_client::{ChannelError, channel, fingerprint, proto};
