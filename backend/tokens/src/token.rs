//! Signing results, and verifying them strictly and offline.
//!
//! Verification order, each step refusing with its own [`TokenError`]:
//! size limit → exactly three non-empty parts → header (canonical base64url, strict JSON, known
//! `typ` and `alg`) → `kid` in the ring → header `alg` equals the key's algorithm (no alg
//! confusion) → signature → claims (strict JSON, bounded fields) → lifetime (`iat`, `exp`, with
//! leeway; lifetime at most [`VerifyOptions::max_ttl_secs`]) → revocation epoch.
//! Claims are parsed only after the signature verifies.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::claims::{Claims, PostureSummary, Tier};
use crate::keys::{Alg, KeyError, KeyRing};
use crate::revocation::RevocationCheck;

/// Largest accepted token, in bytes.
pub const MAX_TOKEN_LEN: usize = 4096;
/// The `typ` of an attestation result.
pub const RESULT_TYP: &str = "enigm-ar";
/// Default clock leeway, seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 60;
/// Default longest lifetime (`exp - iat`), seconds.
pub const DEFAULT_MAX_TTL_SECS: u64 = 60 * 60;

/// Why a token could not be made or was refused.
#[derive(Debug, Error)]
pub enum TokenError {
    /// Longer than the limit.
    #[error("token of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not three non-empty base64url parts of valid JSON.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header's `typ` is not the expected one.
    #[error("wrong token type")]
    WrongType,
    /// The header names an algorithm we do not accept (`none`, `HS256`, …).
    #[error("unsupported algorithm")]
    UnsupportedAlg,
    /// No verification key has the header's `kid`.
    #[error("unknown key id")]
    UnknownKid,
    /// The header's algorithm is not the key's.
    #[error("header algorithm {header} does not match the {key} key")]
    AlgMismatch {
        /// What the header says.
        header: Alg,
        /// What the key is.
        key: Alg,
    },
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// Claims that violate the format's bounds.
    #[error("invalid claims: {0}")]
    InvalidClaims(&'static str),
    /// Issued in the future (beyond leeway).
    #[error("token not yet valid (iat {iat}, now {now})")]
    NotYetValid {
        /// Its `iat`.
        iat: u64,
        /// The verifier's time.
        now: u64,
    },
    /// Past its expiry (beyond leeway).
    #[error("token expired (exp {exp}, now {now})")]
    Expired {
        /// Its `exp`.
        exp: u64,
        /// The verifier's time.
        now: u64,
    },
    /// `exp - iat` is longer than accepted.
    #[error("token lifetime of {ttl} s exceeds {max} s")]
    LifetimeTooLong {
        /// Its lifetime.
        ttl: u64,
        /// The limit.
        max: u64,
    },
    /// The device's epoch moved past the token's: suspended or revoked after issue.
    #[error("token revoked (epoch {token_epoch} < current {current_epoch})")]
    Revoked {
        /// The epoch in the token.
        token_epoch: u64,
        /// The device's current epoch.
        current_epoch: u64,
    },
    /// The revocation check does not know the device.
    #[error("device unknown to the revocation check")]
    UnknownDevice,
    /// The ring has no signing key.
    #[error("the key ring has no signing key")]
    NoSigningKey,
    /// Random bytes for the token id could not be drawn.
    #[error("random token id: {0}")]
    Random(String),
    /// Encoding claims failed.
    #[error("encoding: {0}")]
    Encode(String),
    /// A key operation failed.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Verification settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Clock leeway applied to `iat` and `exp`, seconds.
    pub leeway_secs: u64,
    /// Longest accepted `exp - iat`, seconds.
    pub max_ttl_secs: u64,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            leeway_secs: DEFAULT_LEEWAY_SECS,
            max_ttl_secs: DEFAULT_MAX_TTL_SECS,
        }
    }
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    alg: &'a str,
    kid: &'a str,
    typ: &'a str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderIn {
    alg: String,
    kid: String,
    typ: String,
}

/// Signs `payload` (JSON bytes) into the compact form with the ring's signing key.
pub(crate) fn sign_compact(
    typ: &str,
    payload: &[u8],
    keyring: &KeyRing,
) -> Result<String, TokenError> {
    let key = keyring.signing_key().ok_or(TokenError::NoSigningKey)?;
    let header = serde_json::to_vec(&HeaderOut {
        alg: key.alg().as_str(),
        kid: key.kid(),
        typ,
    })
    .map_err(|e| TokenError::Encode(e.to_string()))?;
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(token)
}

/// Checks structure, header, key and signature; returns the signed payload bytes.
pub(crate) fn open_compact(
    token: &str,
    typ: &str,
    keyring: &KeyRing,
    max_len: usize,
) -> Result<Vec<u8>, TokenError> {
    if token.len() > max_len {
        return Err(TokenError::TooLarge {
            len: token.len(),
            max: max_len,
        });
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("need exactly three parts"));
    };
    if header_b64.is_empty() || payload_b64.is_empty() || sig_b64.is_empty() {
        return Err(TokenError::Malformed("empty part"));
    }
    let header_json = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| TokenError::Malformed("header is not base64url"))?;
    let header: HeaderIn = serde_json::from_slice(&header_json)
        .map_err(|_| TokenError::Malformed("header is not the expected JSON"))?;
    if header.typ != typ {
        return Err(TokenError::WrongType);
    }
    let alg = Alg::from_name(&header.alg).ok_or(TokenError::UnsupportedAlg)?;
    let key = keyring.get(&header.kid).ok_or(TokenError::UnknownKid)?;
    if key.alg() != alg {
        return Err(TokenError::AlgMismatch {
            header: alg,
            key: key.alg(),
        });
    }
    let signature = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
    let signed_len = header_b64.len() + 1 + payload_b64.len();
    let signed = token
        .as_bytes()
        .get(..signed_len)
        .ok_or(TokenError::Malformed("truncated"))?;
    if !key.verify(signed, &signature) {
        return Err(TokenError::BadSignature);
    }
    URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| TokenError::Malformed("payload is not base64url"))
}

fn random_jti() -> Result<String, TokenError> {
    let mut bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn check_claims(claims: &Claims) -> Result<(), TokenError> {
    if claims.sub.is_empty() || claims.sub.len() > Claims::MAX_SUB_LEN {
        return Err(TokenError::InvalidClaims("sub"));
    }
    if claims.jti.is_empty() || claims.jti.len() > Claims::MAX_JTI_LEN {
        return Err(TokenError::InvalidClaims("jti"));
    }
    if claims.posture.level > PostureSummary::MAX_LEVEL {
        return Err(TokenError::InvalidClaims("posture level"));
    }
    if claims.exp <= claims.iat {
        return Err(TokenError::InvalidClaims("exp not after iat"));
    }
    Ok(())
}

impl Claims {
    /// Claims for a result issued `now` (Unix seconds) for `ttl_secs`, with a fresh `jti`.
    pub fn issue(
        sub: impl Into<String>,
        tier: Tier,
        posture: PostureSummary,
        epoch: u64,
        now: u64,
        ttl_secs: u64,
    ) -> Result<Self, TokenError> {
        let claims = Claims {
            sub: sub.into(),
            tier,
            posture,
            iat: now,
            exp: now.saturating_add(ttl_secs),
            epoch,
            jti: random_jti()?,
        };
        check_claims(&claims)?;
        Ok(claims)
    }
}

/// Signs `claims` with the ring's signing key into a compact token.
///
/// Refuses claims a verifier would refuse for their shape (empty `sub`, level above 4,
/// `exp` not after `iat`, lifetime above [`DEFAULT_MAX_TTL_SECS`]).
pub fn sign(claims: &Claims, keyring: &KeyRing) -> Result<String, TokenError> {
    check_claims(claims)?;
    let ttl = claims.exp - claims.iat;
    if ttl > DEFAULT_MAX_TTL_SECS {
        return Err(TokenError::LifetimeTooLong {
            ttl,
            max: DEFAULT_MAX_TTL_SECS,
        });
    }
    let payload = serde_json::to_vec(claims).map_err(|e| TokenError::Encode(e.to_string()))?;
    let token = sign_compact(RESULT_TYP, &payload, keyring)?;
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLarge {
            len: token.len(),
            max: MAX_TOKEN_LEN,
        });
    }
    Ok(token)
}

/// Verifies a result offline with default options: `now` is the relying party's time in Unix
/// seconds; `revocation` supplies each device's current epoch.
pub fn verify(
    token: &str,
    keyring: &KeyRing,
    now: u64,
    revocation: &dyn RevocationCheck,
) -> Result<Claims, TokenError> {
    verify_with(token, keyring, now, revocation, &VerifyOptions::default())
}

/// [`verify`] with explicit options.
pub fn verify_with(
    token: &str,
    keyring: &KeyRing,
    now: u64,
    revocation: &dyn RevocationCheck,
    options: &VerifyOptions,
) -> Result<Claims, TokenError> {
    let payload = open_compact(token, RESULT_TYP, keyring, MAX_TOKEN_LEN)?;
    let claims: Claims = serde_json::from_slice(&payload)
        .map_err(|_| TokenError::Malformed("claims are not the expected JSON"))?;
    check_claims(&claims)?;
    let ttl = claims.exp - claims.iat;
    if ttl > options.max_ttl_secs {
        return Err(TokenError::LifetimeTooLong {
            ttl,
            max: options.max_ttl_secs,
        });
    }
    if claims.iat > now.saturating_add(options.leeway_secs) {
        return Err(TokenError::NotYetValid {
            iat: claims.iat,
            now,
        });
    }
    if now >= claims.exp.saturating_add(options.leeway_secs) {
        return Err(TokenError::Expired {
            exp: claims.exp,
            now,
        });
    }
    let current_epoch = revocation
        .current_epoch(&claims.sub)
        .ok_or(TokenError::UnknownDevice)?;
    if claims.epoch < current_epoch {
        return Err(TokenError::Revoked {
            token_epoch: claims.epoch,
            current_epoch,
        });
    }
    Ok(claims)
}
