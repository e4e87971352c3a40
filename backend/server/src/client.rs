//! The device side's pinned-certificate gRPC channel, re-exported from
//! `enigm-backend-client` for the server's tests, benchmarks and tools.

pub use enigm_backend_client::{
    ALPN_H2, ALPN_HTTP1, ChannelError, channel, connect_tls, fingerprint, pinned_connector,
};
