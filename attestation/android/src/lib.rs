//! Android Keystore key attestation: parse the KeyDescription extension, verify the certificate
//! chain to Google's pinned roots, and decide whether the attested key is hardware-backed.
//!
//! Anchored on Google's reference verifier (android/keyattestation): the same parsing rules
//! (stricter where the reference is lenient, see [`key_description`]), the same chain rules (see
//! [`chain`]), and the same JSON encoding of the parsed record
//! ([`KeyDescription::to_reference_json`]), which the tests compare field by field with the
//! reference's expected JSON for every captured chain.
//!
//! ```no_run
//! use enigm_android_attestation::{
//!     parse_pem_chain, verify_chain, RevocationList, TrustedRoots, VerificationCache,
//!     VerifyOptions,
//! };
//! # fn main() -> Result<(), enigm_android_attestation::AndroidError> {
//! let roots = TrustedRoots::from_roots_json(&std::fs::read_to_string("roots.json").unwrap_or_default())?;
//! let revocations = RevocationList::from_file("status.json".as_ref())?;
//! let cache = VerificationCache::default();
//! let chain = parse_pem_chain(&std::fs::read_to_string("chain.pem").unwrap_or_default())?;
//! let options = VerifyOptions::new(&roots, std::time::SystemTime::now())
//!     .with_revocations(&revocations)
//!     .with_cache(&cache);
//! let verified = verify_chain(&chain, &options)?;
//! println!("{} {:?}", verified.hardware_backed, verified.verdict);
//! println!("{}", verified.key_description.to_reference_json());
//! # Ok(()) }
//! ```

mod cache;
pub mod chain;
pub mod der;
mod error;
pub mod key_description;
mod leaf;
pub mod pem;
pub mod x509;

pub use chain::{
    Provisioning, RevocationEntry, RevocationList, RevocationStatus, RootKind, TrustedRoots,
    Verdict, VerificationCache, VerifiedAttestation, VerifyOptions, verify_chain,
};
pub use error::AndroidError;
pub use key_description::{
    AttestationApplicationId, AttestationPackageInfo, AuthorizationList, KEY_DESCRIPTION_OID,
    KeyDescription, KeyDescriptionError, Origin, PatchLevel, RootOfTrust, SecurityLevel,
    VerifiedBootState,
};
pub use pem::parse_pem_chain;
pub use x509::{ExtensionError, key_description_from_certificate};
