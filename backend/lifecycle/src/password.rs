//! Account secrets at rest: argon2id password hashing to PHC strings.
//!
//! Why the `argon2` crate (RustCrypto, pure Rust): the design's dependency list has no password
//! KDF, and OpenSSL 3.0 (what Debian ships) has no Argon2 (it arrived in OpenSSL 3.2). PBKDF2
//! from OpenSSL would work but is far weaker against GPU guessing than a memory-hard function,
//! so the one new dependency is `argon2`; salts still come from OpenSSL's CSPRNG.
//!
//! Parameters are explicit, per the OWASP password storage cheat sheet: argon2id, m = 19 MiB
//! (19,456 KiB), t = 2, p = 1, a 16-byte salt and a 32-byte output. The PHC string carries them
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), so a later change of parameters still
//! verifies old hashes, and [`Verified::needs_rehash`] tells the caller to store a new one.
//!
//! Verification recomputes with the stored parameters and compares in constant time (argon2's
//! `verify_password`). Stored strings are checked before use: only argon2id version 19 with
//! bounded costs is accepted, so a tampered row cannot downgrade the algorithm or make one
//! login burn gigabytes of memory.
//!
//! The same hasher stores recovery phrases ([`crate::recovery`]).

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use thiserror::Error;

/// Minimum password length, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Maximum password length, in bytes (bounds the work one request can cause).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Salt length in bytes.
pub const SALT_LEN: usize = 16;
/// Output (hash) length in bytes.
pub const OUTPUT_LEN: usize = 32;

/// Upper bounds accepted in a stored PHC string.
const MAX_M_KIB: u32 = 256 * 1024;
const MAX_T: u32 = 16;
const MAX_P: u32 = 8;

/// Why hashing or verifying failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PasswordError {
    /// The password (or phrase) does not match the stored hash.
    #[error("the password does not match")]
    Mismatch,
    /// A new password is shorter than the policy allows.
    #[error("a password needs at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    /// A password is longer than the policy allows.
    #[error("a password may have at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    /// The stored hash is not a PHC string we accept.
    #[error("stored password hash is not acceptable: {0}")]
    BadStoredHash(&'static str),
    /// Parameters out of argon2's range.
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    /// The random salt could not be drawn.
    #[error("random salt: {0}")]
    Random(String),
    /// Argon2 itself failed (memory, internal error).
    #[error("argon2: {0}")]
    Argon2(String),
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Argon2Params {
    /// OWASP's recommendation for argon2id: 19 MiB, 2 iterations, 1 lane.
    pub const OWASP: Argon2Params = Argon2Params {
        m_kib: 19 * 1024,
        t: 2,
        p: 1,
    };
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self::OWASP
    }
}

/// The result of a successful verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The stored hash used other parameters than the hasher's: store a fresh hash.
    pub needs_rehash: bool,
}

/// Hashes and verifies secrets with argon2id.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    params: Argon2Params,
    argon2: Argon2<'static>,
}

impl PasswordHasher {
    /// A hasher with the given costs.
    pub fn new(params: Argon2Params) -> Result<Self, PasswordError> {
        if params.m_kib > MAX_M_KIB || params.t > MAX_T || params.p > MAX_P {
            return Err(PasswordError::Params(format!(
                "costs above the accepted maximum: {params:?}"
            )));
        }
        let argon_params = Params::new(params.m_kib, params.t, params.p, Some(OUTPUT_LEN))
            .map_err(|e| PasswordError::Params(e.to_string()))?;
        Ok(Self {
            params,
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params),
        })
    }

    /// A hasher with [`Argon2Params::OWASP`].
    pub fn owasp() -> Self {
        Self {
            params: Argon2Params::OWASP,
            argon2: Argon2::new(
                Algorithm::Argon2id,
                Version::V0x13,
                Params::DEFAULT, // 19456 KiB, t=2, p=1: pinned equal to OWASP by a test
            ),
        }
    }

    /// The costs new hashes are made with.
    pub fn params(&self) -> Argon2Params {
        self.params
    }

    /// Hashes a new account password, enforcing the length policy.
    pub fn hash_password(&self, password: &str) -> Result<String, PasswordError> {
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(PasswordError::TooShort);
        }
        self.hash_secret(password.as_bytes())
    }

    /// Verifies a password against a stored PHC string, in constant time.
    pub fn verify_password(&self, password: &str, stored: &str) -> Result<Verified, PasswordError> {
        self.verify_secret(password.as_bytes(), stored)
    }

    /// Hashes any secret (no length minimum) with a fresh random salt.
    pub(crate) fn hash_secret(&self, secret: &[u8]) -> Result<String, PasswordError> {
        if secret.len() > MAX_PASSWORD_BYTES {
            return Err(PasswordError::TooLong);
        }
        let mut salt = [0u8; SALT_LEN];
        openssl::rand::rand_bytes(&mut salt).map_err(|e| PasswordError::Random(e.to_string()))?;
        let hash = self
            .argon2
            .hash_password_with_salt(secret, &salt)
            .map_err(|e| PasswordError::Argon2(e.to_string()))?;
        Ok(hash.to_string())
    }

    /// Verifies any secret against a stored PHC string, in constant time.
    pub(crate) fn verify_secret(
        &self,
        secret: &[u8],
        stored: &str,
    ) -> Result<Verified, PasswordError> {
        if secret.len() > MAX_PASSWORD_BYTES {
            return Err(PasswordError::TooLong);
        }
        let parsed = PasswordHash::new(stored)
            .map_err(|_| PasswordError::BadStoredHash("not a PHC string"))?;
        if parsed.algorithm.as_str() != "argon2id" {
            return Err(PasswordError::BadStoredHash("not argon2id"));
        }
        if parsed.version != Some(0x13) {
            return Err(PasswordError::BadStoredHash("not argon2 version 19"));
        }
        let stored_params = Params::try_from(&parsed)
            .map_err(|_| PasswordError::BadStoredHash("bad parameters"))?;
        if stored_params.m_cost() > MAX_M_KIB
            || stored_params.t_cost() > MAX_T
            || stored_params.p_cost() > MAX_P
        {
            return Err(PasswordError::BadStoredHash(
                "costs above the accepted maximum",
            ));
        }
        if parsed.salt.is_none() || parsed.hash.is_none() {
            return Err(PasswordError::BadStoredHash("no salt or hash"));
        }
        match self.argon2.verify_password(secret, &parsed) {
            Ok(()) => Ok(Verified {
                needs_rehash: stored_params.m_cost() != self.params.m_kib
                    || stored_params.t_cost() != self.params.t
                    || stored_params.p_cost() != self.params.p
                    || parsed.hash.map(|h| h.len()) != Some(OUTPUT_LEN),
            }),
            Err(argon2::password_hash::Error::PasswordInvalid) => Err(PasswordError::Mismatch),
            Err(e) => Err(PasswordError::Argon2(e.to_string())),
        }
    }
}

impl Default for PasswordHasher {
    fn default() -> Self {
        Self::owasp()
    }
}
