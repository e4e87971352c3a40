//! Recovery phrases: the account's root secret, shown to the owner once at account creation.
//!
//! A phrase is [`PHRASE_WORDS`] (12) words drawn uniformly from the project's own 2048-word list
//! ([`crate::wordlist`]), 11 bits each: 132 bits of entropy, from OpenSSL's CSPRNG. The server
//! stores only its argon2id hash (see [`crate::password`]), made over the normalized phrase (the
//! words in lowercase, joined by single spaces), so case and spacing do not matter when typed.
//!
//! A phrase **restores the account**: it sets a new password ([`recover_account`]), and an
//! enrollment that comes with it may be trusted when no trusted device remains
//! ([`crate::state::enrollment_state`]). It gives **no access to past messages**: message keys
//! never reach the server (it holds ciphertext only), so nothing the server keeps, and nothing
//! a phrase unlocks on it, can decrypt what was sent before. A used phrase is replaced by a new
//! one, since it has just been typed on a device that may not be trusted yet.

use std::fmt;

use thiserror::Error;

use crate::password::{PasswordError, PasswordHasher};
use crate::wordlist::WORDS;

/// Words in a phrase.
pub const PHRASE_WORDS: usize = 12;
/// Bits of entropy per word (the list has 2^11 words).
pub const BITS_PER_WORD: u32 = 11;

/// Why a recovery phrase was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecoveryError {
    /// The phrase has the wrong number of words.
    #[error("a recovery phrase has {PHRASE_WORDS} words, this one has {0}")]
    WrongLength(usize),
    /// A word is not in the list (1-based position, so the owner can find the typo).
    #[error("word {position} is not a recovery-phrase word")]
    UnknownWord {
        /// 1-based position of the word.
        position: usize,
    },
    /// The phrase does not match the stored hash.
    #[error("the recovery phrase does not match")]
    Mismatch,
    /// The random words could not be drawn.
    #[error("random phrase: {0}")]
    Random(String),
    /// Hashing, verifying, or the new password's policy failed.
    #[error(transparent)]
    Password(PasswordError),
}

impl From<PasswordError> for RecoveryError {
    fn from(e: PasswordError) -> Self {
        match e {
            PasswordError::Mismatch => RecoveryError::Mismatch,
            other => RecoveryError::Password(other),
        }
    }
}

/// A recovery phrase. Its `Debug` output is redacted; [`RecoveryPhrase::reveal`] is the only way
/// to the words, for showing them to the owner once.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryPhrase {
    indices: [u16; PHRASE_WORDS],
}

impl fmt::Debug for RecoveryPhrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryPhrase(<redacted>)")
    }
}

impl RecoveryPhrase {
    /// Draws a new phrase from OpenSSL's CSPRNG (two random bytes per word, masked to 11 bits:
    /// 2048 divides 65536, so every word is equally likely).
    pub fn generate() -> Result<Self, RecoveryError> {
        let mut bytes = [0u8; PHRASE_WORDS * 2];
        openssl::rand::rand_bytes(&mut bytes).map_err(|e| RecoveryError::Random(e.to_string()))?;
        let mut indices = [0u16; PHRASE_WORDS];
        for (index, pair) in indices.iter_mut().zip(bytes.chunks_exact(2)) {
            *index = u16::from_le_bytes([pair[0], pair[1]]) & 0x07ff;
        }
        Ok(Self { indices })
    }

    /// Parses a typed phrase: whitespace-separated, case-insensitive.
    pub fn parse(typed: &str) -> Result<Self, RecoveryError> {
        let words: Vec<&str> = typed.split_whitespace().collect();
        if words.len() != PHRASE_WORDS {
            return Err(RecoveryError::WrongLength(words.len()));
        }
        let mut indices = [0u16; PHRASE_WORDS];
        for (position, (slot, word)) in indices.iter_mut().zip(&words).enumerate() {
            let lower = word.to_lowercase();
            let found =
                WORDS
                    .binary_search(&lower.as_str())
                    .map_err(|_| RecoveryError::UnknownWord {
                        position: position + 1,
                    })?;
            *slot = u16::try_from(found).map_err(|_| RecoveryError::UnknownWord {
                position: position + 1,
            })?;
        }
        Ok(Self { indices })
    }

    /// The words, in order.
    pub fn words(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.indices.iter().map(|&i| WORDS[usize::from(i) & 0x07ff])
    }

    /// The normalized phrase (lowercase words joined by single spaces), to show the owner once.
    pub fn reveal(&self) -> String {
        self.words().collect::<Vec<_>>().join(" ")
    }

    /// Its argon2id PHC string, for storage.
    pub fn hash(&self, hasher: &PasswordHasher) -> Result<String, RecoveryError> {
        Ok(hasher.hash_secret(self.reveal().as_bytes())?)
    }

    /// Checks a typed phrase against the stored hash (constant-time compare).
    pub fn verify(typed: &str, stored: &str, hasher: &PasswordHasher) -> Result<(), RecoveryError> {
        let phrase = Self::parse(typed)?;
        hasher.verify_secret(phrase.reveal().as_bytes(), stored)?;
        Ok(())
    }
}

/// What an account restore produces, for the caller to store in one transaction.
#[derive(Debug)]
pub struct Recovered {
    /// The new password's PHC string.
    pub password_hash: String,
    /// The replacement phrase, to show the owner once.
    pub new_phrase: RecoveryPhrase,
    /// The replacement phrase's PHC string.
    pub new_phrase_hash: String,
}

/// Restores an account with its recovery phrase: verifies `typed` against the stored phrase
/// hash, hashes `new_password` (length policy applies), and draws a replacement phrase.
///
/// Restoring gives no access to past messages: their keys were never on the server.
pub fn recover_account(
    hasher: &PasswordHasher,
    stored_phrase_hash: &str,
    typed: &str,
    new_password: &str,
) -> Result<Recovered, RecoveryError> {
    RecoveryPhrase::verify(typed, stored_phrase_hash, hasher)?;
    let password_hash = hasher.hash_password(new_password)?;
    let new_phrase = RecoveryPhrase::generate()?;
    let new_phrase_hash = new_phrase.hash(hasher)?;
    Ok(Recovered {
        password_hash,
        new_phrase,
        new_phrase_hash,
    })
}
