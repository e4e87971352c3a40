//! Signed attestation results: the short-lived token the attestation service issues to a device
//! and that relying parties (the relay, Enigm Command) verify offline.
//!
//! # Format
//!
//! A JWS-like compact form, but our own minimal profile (no JOSE library, no options):
//!
//! ```text
//! base64url(header JSON) "." base64url(claims JSON) "." base64url(signature)
//! ```
//!
//! - base64url without padding, canonical (no padding, no stray trailing bits);
//! - header `{"alg":"EdDSA"|"ES256","kid":"…","typ":"enigm-ar"}`, nothing else;
//! - claims `{"sub","tier","posture":{"level","runtime_issue"},"iat","exp","epoch","jti"}`, nothing
//!   else (see [`Claims`]); times in seconds since the Unix epoch;
//! - the signature covers the ASCII text `header "." claims`, as in JWS: Ed25519 (64 bytes), or
//!   ECDSA P-256 over SHA-256 as raw `r || s` (2 × 32 bytes, as in JWS ES256);
//! - at most [`MAX_TOKEN_LEN`] bytes.
//!
//! # Modules
//!
//! - [`claims`]: what a result says.
//! - [`keys`]: signing and verification keys, PEM loading and generation, the key ring (several
//!   verification keys by `kid` for rotation, one signing key).
//! - [`token`]: signing and strict offline verification.
//! - [`revocation`]: the epoch check a relying party consults, and a cacheable, signable
//!   snapshot of it.

pub mod claims;
pub mod keys;
pub mod revocation;
pub mod token;

pub use claims::{Claims, PostureSummary, Tier};
pub use keys::{Alg, KeyError, KeyRing, SigningKey, VerificationKey};
pub use revocation::{RevocationCheck, RevocationList};
pub use token::{MAX_TOKEN_LEN, TokenError, VerifyOptions, sign, verify, verify_with};
