//! TPM 2.0 evidence, parsed and checked without a TPM.
//!
//! Strict parsers for the structures a quote is made of — [`attest::Attest`] (TPMS_ATTEST),
//! [`signature::Signature`] (TPMT_SIGNATURE), [`public::PublicArea`] (TPMT_PUBLIC) — the PCR
//! selection and digest ([`pcr`]), the TCG crypto-agile event log and its replay
//! ([`eventlog`]), and [`quote::verify_quote`], which checks a quote's signature, qualifying
//! data and PCR digest the way `tpm2_checkquote` does. Every parser returns an error on
//! malformed input and never panics; they are fuzzed (`fuzz/`).

pub mod attest;
pub mod eventlog;
pub mod hash;
pub mod pcr;
pub mod public;
pub mod quote;
pub mod signature;
pub mod soft;
pub mod wire;

pub use quote::{QuoteError, VerifiedQuote, verify_quote};
pub use wire::WireError;
