//! `enigm-backend`, the companion backend: the device API over gRPC (tonic, [`service`]),
//! the relay's mailboxes on the device API ([`relay`]), their push streams
//! ([`relay_stream`], woken through [`relay_hub`]) and key directory ([`directory`]), the Command admin API on the same
//! listener ([`admin`]), abuse limits ([`ratelimit`]),
//! health and metrics over HTTP (axum, [`server::http_router`]), TLS on every listener
//! ([`tls`], OpenSSL, a self-signed certificate on first start), configured from TOML with
//! environment overrides ([`config`]). Storage, lifecycle rules, tokens and appraisal come
//! from `enigm-backend-storage`, `enigm-backend-lifecycle`, `enigm-backend-tokens` and
//! `enigm-verifier`.

pub mod admin;
pub mod client;
pub mod codec;
pub mod config;
pub mod directory;
pub mod files;
pub mod metrics;
pub mod ratelimit;
pub mod relay;
pub mod relay_hub;
pub mod relay_stream;
pub mod server;
pub mod service;
pub mod tls;
pub mod token_cache;

/// Generated gRPC types and service of `backend/proto/device.proto` (package
/// `enigm.backend.v1`); evidence types are `enigm_evidence::v1`'s.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("enigm.backend.v1");
}

pub use config::Config;
pub use server::{Running, StartError, start};
