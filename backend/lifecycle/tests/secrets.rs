//! Password and recovery-phrase round trips, wrong inputs, stored-hash hygiene and entropy.

#![allow(clippy::unwrap_used)] // test helpers: a failed setup should stop the test

use std::collections::HashSet;

use enigm_backend_lifecycle::password::{MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS};
use enigm_backend_lifecycle::recovery::{BITS_PER_WORD, PHRASE_WORDS};
use enigm_backend_lifecycle::wordlist::WORDS;
use enigm_backend_lifecycle::{
    Argon2Params, PasswordError, PasswordHasher, RecoveryError, RecoveryPhrase, recover_account,
};

const GOOD: &str = "correct-horse-battery";

/// Small costs for the tests that are about logic, not cost (debug builds run argon2 slowly).
fn cheap() -> PasswordHasher {
    PasswordHasher::new(Argon2Params {
        m_kib: 64,
        t: 1,
        p: 1,
    })
    .unwrap()
}

#[test]
fn owasp_parameters_are_the_ones_stored() {
    let hasher = PasswordHasher::owasp();
    assert_eq!(
        hasher.params(),
        Argon2Params {
            m_kib: 19456,
            t: 2,
            p: 1
        }
    );
    let phc = hasher.hash_password(GOOD).unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    // salt (16 bytes → 22 chars) and hash (32 bytes → 43 chars), unpadded base64
    let parts: Vec<&str> = phc.split('$').collect();
    assert_eq!(parts.len(), 6);
    assert_eq!(parts[4].len(), 22);
    assert_eq!(parts[5].len(), 43);
    let verified = hasher.verify_password(GOOD, &phc).unwrap();
    assert!(!verified.needs_rehash);
    assert_eq!(
        hasher.verify_password("correct-horse-batterY", &phc),
        Err(PasswordError::Mismatch)
    );
    // equal to what `new` builds from the same costs
    let explicit = PasswordHasher::new(Argon2Params::OWASP).unwrap();
    assert!(explicit.verify_password(GOOD, &phc).is_ok());
}

#[test]
fn password_round_trip_and_wrong_inputs() {
    let hasher = cheap();
    let phc = hasher.hash_password(GOOD).unwrap();
    assert!(hasher.verify_password(GOOD, &phc).is_ok());
    // fresh salt each time
    let again = hasher.hash_password(GOOD).unwrap();
    assert_ne!(phc, again);
    assert!(hasher.verify_password(GOOD, &again).is_ok());

    for wrong in [
        "",
        "correct-horse-batter",
        "Correct-horse-battery",
        "correct-horse-battery ",
    ] {
        assert_eq!(
            hasher.verify_password(wrong, &phc),
            Err(PasswordError::Mismatch),
            "{wrong:?}"
        );
    }
    // policy on new passwords
    let short: String = "x".repeat(MIN_PASSWORD_CHARS - 1);
    assert_eq!(hasher.hash_password(&short), Err(PasswordError::TooShort));
    assert!(
        hasher
            .hash_password(&"é".repeat(MIN_PASSWORD_CHARS))
            .is_ok()
    );
    let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
    assert_eq!(hasher.hash_password(&long), Err(PasswordError::TooLong));
    assert_eq!(
        hasher.verify_password(&long, &phc),
        Err(PasswordError::TooLong)
    );
}

#[test]
fn changed_costs_still_verify_and_ask_for_rehash() {
    let old = cheap().hash_password(GOOD).unwrap();
    let newer = PasswordHasher::new(Argon2Params {
        m_kib: 128,
        t: 1,
        p: 1,
    })
    .unwrap();
    let verified = newer.verify_password(GOOD, &old).unwrap();
    assert!(verified.needs_rehash);
}

#[test]
fn stored_hashes_that_are_refused() {
    let hasher = cheap();
    let good = hasher.hash_password(GOOD).unwrap();
    let with = |from: &str, to: &str| good.replacen(from, to, 1);
    let cases = [
        String::new(),
        "plaintext".to_owned(),
        with("$argon2id$", "$argon2i$"),
        with("$argon2id$", "$argon2d$"),
        with("$v=19$", "$v=16$"),
        with("m=64,", "m=4194304,"),
        with("t=1,", "t=1000,"),
        "$argon2id$v=19$m=64,t=1,p=1".to_owned(),
    ];
    for stored in cases {
        assert!(
            matches!(
                hasher.verify_password(GOOD, &stored),
                Err(PasswordError::BadStoredHash(_))
            ),
            "{stored:?}: {:?}",
            hasher.verify_password(GOOD, &stored)
        );
    }
    assert!(
        PasswordHasher::new(Argon2Params {
            m_kib: 1,
            t: 1,
            p: 1
        })
        .is_err()
    );
    assert!(
        PasswordHasher::new(Argon2Params {
            m_kib: 1 << 30,
            t: 1,
            p: 1
        })
        .is_err()
    );
}

#[test]
fn wordlist_is_fixed() {
    assert_eq!(WORDS.len(), 1 << BITS_PER_WORD);
    assert!(WORDS.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
    assert!(
        WORDS
            .iter()
            .all(|w| (3..=8).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_lowercase()))
    );
    // pinned content: changing the list would invalidate every phrase ever issued
    let mut joined = String::new();
    for word in WORDS {
        joined.push_str(word);
        joined.push('\n');
    }
    assert_eq!(
        hex(&openssl::sha::sha256(joined.as_bytes())),
        "94adc1cc0adea3078b829e889f7f799ae99e31b7512aeb23bd08b0e5603e49f6"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn phrase_length_entropy_and_uniformity() {
    assert!(PHRASE_WORDS as u32 * BITS_PER_WORD >= 128);
    let mut phrases = HashSet::new();
    let mut counts = vec![0u32; WORDS.len()];
    const N: usize = 2000;
    for _ in 0..N {
        let phrase = RecoveryPhrase::generate().unwrap();
        let words: Vec<&str> = phrase.words().collect();
        assert_eq!(words.len(), PHRASE_WORDS);
        for word in &words {
            counts[WORDS.binary_search(word).unwrap()] += 1;
        }
        assert_eq!(RecoveryPhrase::parse(&phrase.reveal()).unwrap(), phrase);
        phrases.insert(phrase.reveal());
    }
    assert_eq!(phrases.len(), N, "no repeats among {N} phrases");
    // 24,000 draws over 2048 words: expected ~11.7 per word. Every word drawn at least once is
    // near-certain for a uniform source and fails for one that only reaches part of the list.
    let unseen = counts.iter().filter(|&&c| c == 0).count();
    assert!(unseen < 5, "{unseen} words never drawn");
    let max = counts.iter().max().copied().unwrap_or(0);
    assert!(max < 40, "a word was drawn {max} times");
    // the halves of the list (top index bit) are about equally used
    let low: u32 = counts[..1024].iter().sum();
    let high: u32 = counts[1024..].iter().sum();
    assert!(low.abs_diff(high) < 1200, "{low} vs {high}");
}

#[test]
fn phrase_parsing() {
    let phrase = RecoveryPhrase::generate().unwrap();
    let text = phrase.reveal();
    // case and spacing do not matter
    let messy = format!("  {}\t\n", text.to_uppercase().replace(' ', "   "));
    assert_eq!(RecoveryPhrase::parse(&messy).unwrap(), phrase);
    // wrong length
    let eleven: Vec<&str> = text.split(' ').take(11).collect();
    assert_eq!(
        RecoveryPhrase::parse(&eleven.join(" ")),
        Err(RecoveryError::WrongLength(11))
    );
    assert_eq!(
        RecoveryPhrase::parse(&format!("{text} {}", WORDS[0])),
        Err(RecoveryError::WrongLength(13))
    );
    assert_eq!(
        RecoveryPhrase::parse(""),
        Err(RecoveryError::WrongLength(0))
    );
    // unknown word, reported by position
    let mut words: Vec<&str> = text.split(' ').collect();
    words[4] = "qqqq";
    assert_eq!(
        RecoveryPhrase::parse(&words.join(" ")),
        Err(RecoveryError::UnknownWord { position: 5 })
    );
    // Debug never shows the words
    let debug = format!("{phrase:?}");
    assert!(phrase.words().all(|w| !debug.contains(&format!("\"{w}\""))));
    assert_eq!(debug, "RecoveryPhrase(<redacted>)");
}

#[test]
fn phrase_round_trip_and_account_restore() {
    let hasher = cheap();
    let phrase = RecoveryPhrase::generate().unwrap();
    let stored = phrase.hash(&hasher).unwrap();
    assert!(stored.starts_with("$argon2id$"));
    assert!(!stored.contains(&phrase.reveal()));
    RecoveryPhrase::verify(&phrase.reveal().to_uppercase(), &stored, &hasher).unwrap();

    // another valid phrase does not match
    let other = loop {
        let p = RecoveryPhrase::generate().unwrap();
        if p != phrase {
            break p;
        }
    };
    assert_eq!(
        RecoveryPhrase::verify(&other.reveal(), &stored, &hasher),
        Err(RecoveryError::Mismatch)
    );

    // restore: new password works, phrase is replaced
    let recovered =
        recover_account(&hasher, &stored, &phrase.reveal(), "a brand new password").unwrap();
    assert!(
        hasher
            .verify_password("a brand new password", &recovered.password_hash)
            .is_ok()
    );
    assert_ne!(recovered.new_phrase, phrase);
    RecoveryPhrase::verify(
        &recovered.new_phrase.reveal(),
        &recovered.new_phrase_hash,
        &hasher,
    )
    .unwrap();
    assert_eq!(
        RecoveryPhrase::verify(&phrase.reveal(), &recovered.new_phrase_hash, &hasher),
        Err(RecoveryError::Mismatch)
    );

    // restore refused: wrong phrase, or a new password the policy refuses
    assert!(matches!(
        recover_account(&hasher, &stored, &other.reveal(), "a brand new password"),
        Err(RecoveryError::Mismatch)
    ));
    assert!(matches!(
        recover_account(&hasher, &stored, &phrase.reveal(), "short"),
        Err(RecoveryError::Password(PasswordError::TooShort))
    ));
    assert!(matches!(
        recover_account(&hasher, "garbage", &phrase.reveal(), "a brand new password"),
        Err(RecoveryError::Password(PasswordError::BadStoredHash(_)))
    ));
}
