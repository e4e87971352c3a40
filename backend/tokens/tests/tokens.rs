//! Attestation-result tokens: round trips, tampering, key handling, time, revocation, and
//! garbage input.

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers: a failed setup should stop the test

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use enigm_backend_tokens::keys::SIGNATURE_LEN;
use enigm_backend_tokens::token::DEFAULT_LEEWAY_SECS;
use enigm_backend_tokens::{
    Alg, Claims, KeyError, KeyRing, MAX_TOKEN_LEN, PostureSummary, RevocationCheck, RevocationList,
    SigningKey, Tier, TokenError, VerificationKey, VerifyOptions, sign, verify, verify_with,
};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;

const NOW: u64 = 1_750_000_000;
const TTL: u64 = 5 * 60;
const DEVICE: &str = "h-7Qk2x";

fn ring(alg: Alg) -> KeyRing {
    KeyRing::with_signing_key(SigningKey::generate(alg).unwrap()).unwrap()
}

fn claims(epoch: u64) -> Claims {
    Claims::issue(
        DEVICE,
        Tier::Affirming,
        PostureSummary {
            level: 3,
            runtime_issue: false,
        },
        epoch,
        NOW,
        TTL,
    )
    .unwrap()
}

fn epochs(epoch: u64) -> HashMap<String, u64> {
    HashMap::from([(DEVICE.to_owned(), epoch)])
}

fn parts(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

/// Signs arbitrary header and claims JSON with `key`, as an attacker holding the key (or a
/// buggy issuer) could.
fn forge(key: &SigningKey, header: &str, claims: &str) -> String {
    let signed = format!("{}.{}", B64.encode(header), B64.encode(claims));
    let sig = key.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", B64.encode(sig))
}

fn header_json(alg: &str, kid: &str) -> String {
    format!(r#"{{"alg":"{alg}","kid":"{kid}","typ":"enigm-ar"}}"#)
}

fn claims_json(c: &Claims) -> String {
    serde_json::to_string(c).unwrap()
}

#[test]
fn round_trip_both_algorithms() {
    for alg in [Alg::EdDsa, Alg::Es256] {
        let ring = ring(alg);
        let issued = claims(7);
        let token = sign(&issued, &ring).unwrap();
        let p = parts(&token);
        assert_eq!(p.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(&p[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], alg.as_str());
        assert_eq!(header["kid"], ring.signing_key().unwrap().kid());
        assert_eq!(header["typ"], "enigm-ar");
        assert_eq!(B64.decode(&p[2]).unwrap().len(), SIGNATURE_LEN);
        let claims_value: serde_json::Value =
            serde_json::from_slice(&B64.decode(&p[1]).unwrap()).unwrap();
        assert_eq!(claims_value["tier"], "affirming");
        assert_eq!(claims_value["posture"]["level"], 3);
        assert_eq!(claims_value["exp"], NOW + TTL);

        let verified = verify(&token, &ring, NOW + 10, &epochs(7)).unwrap();
        assert_eq!(verified, issued);
        // a relying party's ring without the signing key verifies too
        let rp = ring.verification_only().unwrap();
        assert!(rp.signing_key().is_none());
        assert_eq!(verify(&token, &rp, NOW, &epochs(7)).unwrap(), issued);
        assert!(matches!(sign(&issued, &rp), Err(TokenError::NoSigningKey)));
    }
}

#[test]
fn signatures_check_out_with_plain_openssl() {
    // Ed25519: the signature is over "header.claims"
    let ring_ed = ring(Alg::EdDsa);
    let token = sign(&claims(0), &ring_ed).unwrap();
    let (signed, sig) = token.rsplit_once('.').unwrap();
    let public =
        PKey::public_key_from_pem(&ring_ed.signing_key().unwrap().public_key_pem().unwrap())
            .unwrap();
    let mut v = openssl::sign::Verifier::new_without_digest(&public).unwrap();
    assert!(
        v.verify_oneshot(&B64.decode(sig).unwrap(), signed.as_bytes())
            .unwrap()
    );

    // ES256: raw r || s converts to the DER ECDSA-with-SHA256 signature OpenSSL verifies
    let ring_ec = ring(Alg::Es256);
    let token = sign(&claims(0), &ring_ec).unwrap();
    let (signed, sig) = token.rsplit_once('.').unwrap();
    let raw = B64.decode(sig).unwrap();
    let der = EcdsaSig::from_private_components(
        openssl::bn::BigNum::from_slice(&raw[..32]).unwrap(),
        openssl::bn::BigNum::from_slice(&raw[32..]).unwrap(),
    )
    .unwrap()
    .to_der()
    .unwrap();
    let public =
        PKey::public_key_from_pem(&ring_ec.signing_key().unwrap().public_key_pem().unwrap())
            .unwrap();
    let mut v = openssl::sign::Verifier::new(MessageDigest::sha256(), &public).unwrap();
    v.update(signed.as_bytes()).unwrap();
    assert!(v.verify(&der).unwrap());
}

#[test]
fn tampering_is_refused() {
    for alg in [Alg::EdDsa, Alg::Es256] {
        let ring = ring(alg);
        let kid = ring.signing_key().unwrap().kid().to_owned();
        let issued = claims(1);
        let token = sign(&issued, &ring).unwrap();
        let p = parts(&token);

        // claims: a better tier, a later expiry, another device, a newer epoch
        let mut better = issued.clone();
        better.tier = Tier::Affirming;
        better.posture.level = 4;
        let mut later = issued.clone();
        later.exp += 3000;
        let mut other = issued.clone();
        other.sub = "h-other".into();
        let mut newer = issued.clone();
        newer.epoch = 9;
        for changed in [better, later, other, newer] {
            let forged = format!("{}.{}.{}", p[0], B64.encode(claims_json(&changed)), p[2]);
            assert!(
                matches!(
                    verify(&forged, &ring, NOW, &epochs(1)),
                    Err(TokenError::BadSignature)
                ),
                "{alg}"
            );
        }
        // header: same meaning, different bytes (key order), still covered by the signature
        let reordered = B64.encode(format!(
            r#"{{"kid":"{kid}","alg":"{alg}","typ":"enigm-ar"}}"#
        ));
        let forged = format!("{reordered}.{}.{}", p[1], p[2]);
        assert!(matches!(
            verify(&forged, &ring, NOW, &epochs(1)),
            Err(TokenError::BadSignature)
        ));
        // header with an extra field
        let extra = B64.encode(format!(
            r#"{{"alg":"{alg}","kid":"{kid}","typ":"enigm-ar","jku":"https://x"}}"#
        ));
        let forged = format!("{extra}.{}.{}", p[1], p[2]);
        assert!(matches!(
            verify(&forged, &ring, NOW, &epochs(1)),
            Err(TokenError::Malformed(_))
        ));
        // signature: every single bit flip
        let sig = B64.decode(&p[2]).unwrap();
        for i in 0..sig.len() * 8 {
            let mut bad = sig.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let forged = format!("{}.{}.{}", p[0], p[1], B64.encode(&bad));
            assert!(
                matches!(
                    verify(&forged, &ring, NOW, &epochs(1)),
                    Err(TokenError::BadSignature)
                ),
                "{alg} bit {i}"
            );
        }
        // signature of the wrong length, and an all-zero one
        for bad in [&sig[..63], &[sig.as_slice(), &[0]].concat(), &[0u8; 64][..]] {
            let forged = format!("{}.{}.{}", p[0], p[1], B64.encode(bad));
            assert!(matches!(
                verify(&forged, &ring, NOW, &epochs(1)),
                Err(TokenError::BadSignature)
            ));
        }
    }
}

#[test]
fn unknown_kid_and_other_keys() {
    let ring_a = ring(Alg::EdDsa);
    let ring_b = ring(Alg::EdDsa);
    let token = sign(&claims(0), &ring_a).unwrap();
    assert!(matches!(
        verify(&token, &ring_b, NOW, &epochs(0)),
        Err(TokenError::UnknownKid)
    ));
    assert!(matches!(
        verify(&token, &KeyRing::new(), NOW, &epochs(0)),
        Err(TokenError::UnknownKid)
    ));
    // a token signed by key B but naming key A's kid
    let kid_a = ring_a.signing_key().unwrap().kid();
    let forged = forge(
        ring_b.signing_key().unwrap(),
        &header_json("EdDSA", kid_a),
        &claims_json(&claims(0)),
    );
    assert!(matches!(
        verify(&forged, &ring_a, NOW, &epochs(0)),
        Err(TokenError::BadSignature)
    ));
}

#[test]
fn algorithm_confusion_is_refused() {
    let ring_ed = ring(Alg::EdDsa);
    let ed = ring_ed.signing_key().unwrap();
    let ring_ec = ring(Alg::Es256);
    let ec = ring_ec.signing_key().unwrap();
    let body = claims_json(&claims(0));

    // ES256 header naming an Ed25519 key (signed with that Ed25519 key)
    let forged = forge(ed, &header_json("ES256", ed.kid()), &body);
    assert!(matches!(
        verify(&forged, &ring_ed, NOW, &epochs(0)),
        Err(TokenError::AlgMismatch {
            header: Alg::Es256,
            key: Alg::EdDsa
        })
    ));
    // and the reverse
    let forged = forge(ec, &header_json("EdDSA", ec.kid()), &body);
    assert!(matches!(
        verify(&forged, &ring_ec, NOW, &epochs(0)),
        Err(TokenError::AlgMismatch {
            header: Alg::EdDsa,
            key: Alg::Es256
        })
    ));
    // algorithms we never accept, whatever the key
    for alg in ["none", "HS256", "RS256", "ES384", "eddsa", "Ed25519", ""] {
        let forged = forge(ed, &header_json(alg, ed.kid()), &body);
        assert!(
            matches!(
                verify(&forged, &ring_ed, NOW, &epochs(0)),
                Err(TokenError::UnsupportedAlg)
            ),
            "{alg}"
        );
    }
    // unsigned token ("none" with an empty signature)
    let unsigned = format!(
        "{}.{}.",
        B64.encode(header_json("none", ed.kid())),
        B64.encode(&body)
    );
    assert!(matches!(
        verify(&unsigned, &ring_ed, NOW, &epochs(0)),
        Err(TokenError::Malformed(_))
    ));
    // another token type signed by the same key is not a result
    let typ = format!(r#"{{"alg":"EdDSA","kid":"{}","typ":"enigm-rl"}}"#, ed.kid());
    let forged = forge(ed, &typ, &body);
    assert!(matches!(
        verify(&forged, &ring_ed, NOW, &epochs(0)),
        Err(TokenError::WrongType)
    ));
}

#[test]
fn signed_claims_must_still_be_well_formed() {
    let ring = ring(Alg::EdDsa);
    let key = ring.signing_key().unwrap();
    let header = header_json("EdDSA", key.kid());
    let good = claims(0);
    let with_extra = claims_json(&good).replacen('{', r#"{"admin":true,"#, 1);
    let mut high = good.clone();
    high.posture.level = 5;
    let mut backwards = good.clone();
    backwards.exp = good.iat;
    let mut empty_sub = good.clone();
    empty_sub.sub.clear();
    let cases = [
        with_extra,
        claims_json(&good).replace("\"affirming\"", "\"superb\""),
        claims_json(&good).replace(r#","jti""#, r#","sub":"h-x","jti""#),
        claims_json(&high),
        claims_json(&backwards),
        claims_json(&empty_sub),
        "[]".to_owned(),
        "null".to_owned(),
    ];
    for body in cases {
        let token = forge(key, &header, &body);
        let result = verify(&token, &ring, NOW, &epochs(0));
        assert!(
            matches!(
                result,
                Err(TokenError::Malformed(_) | TokenError::InvalidClaims(_))
            ),
            "{body}: {result:?}"
        );
    }
    // too long a lifetime, even if properly signed
    let mut long = good.clone();
    long.exp = long.iat + 24 * 3600;
    let token = forge(key, &header, &claims_json(&long));
    assert!(matches!(
        verify(&token, &ring, NOW, &epochs(0)),
        Err(TokenError::LifetimeTooLong { .. })
    ));
    assert!(matches!(
        sign(&long, &ring),
        Err(TokenError::LifetimeTooLong { .. })
    ));
    // and the issuer refuses to sign malformed claims
    assert!(matches!(
        sign(&high, &ring),
        Err(TokenError::InvalidClaims(_))
    ));
}

#[test]
fn expiry_and_not_yet_valid_with_leeway() {
    let ring = ring(Alg::Es256);
    let token = sign(&claims(0), &ring).unwrap();
    let check = |now| verify(&token, &ring, now, &epochs(0));
    let exp = NOW + TTL;
    // inside the window
    assert!(check(NOW).is_ok());
    assert!(check(exp - 1).is_ok());
    // past expiry: accepted within leeway, refused after
    assert!(check(exp + DEFAULT_LEEWAY_SECS - 1).is_ok());
    assert!(matches!(
        check(exp + DEFAULT_LEEWAY_SECS),
        Err(TokenError::Expired { .. })
    ));
    assert!(matches!(
        check(exp + 86_400),
        Err(TokenError::Expired { .. })
    ));
    // issued in the future: within leeway fine, beyond refused
    assert!(check(NOW - DEFAULT_LEEWAY_SECS).is_ok());
    assert!(matches!(
        check(NOW - DEFAULT_LEEWAY_SECS - 1),
        Err(TokenError::NotYetValid { .. })
    ));
    // strict options: no leeway
    let strict = VerifyOptions {
        leeway_secs: 0,
        max_ttl_secs: 600,
    };
    assert!(matches!(
        verify_with(&token, &ring, exp, &epochs(0), &strict),
        Err(TokenError::Expired { .. })
    ));
    assert!(matches!(
        verify_with(&token, &ring, NOW - 1, &epochs(0), &strict),
        Err(TokenError::NotYetValid { .. })
    ));
    let short = VerifyOptions {
        leeway_secs: 0,
        max_ttl_secs: TTL - 1,
    };
    assert!(matches!(
        verify_with(&token, &ring, NOW, &epochs(0), &short),
        Err(TokenError::LifetimeTooLong { .. })
    ));
}

#[test]
fn revoked_after_issue_by_epoch() {
    let ring = ring(Alg::EdDsa);
    let token = sign(&claims(4), &ring).unwrap();
    // same epoch: fine; a stale snapshot (lower epoch): fine
    assert!(verify(&token, &ring, NOW, &epochs(4)).is_ok());
    assert!(verify(&token, &ring, NOW, &epochs(3)).is_ok());
    // the device was suspended or revoked after issue: its epoch moved on
    assert!(matches!(
        verify(&token, &ring, NOW, &epochs(5)),
        Err(TokenError::Revoked {
            token_epoch: 4,
            current_epoch: 5
        })
    ));
    // unknown device
    let empty: HashMap<String, u64> = HashMap::new();
    assert!(matches!(
        verify(&token, &ring, NOW, &empty),
        Err(TokenError::UnknownDevice)
    ));
    // a closure works as a check too
    let lookup = |device: &str| (device == DEVICE).then_some(6);
    assert!(matches!(
        verify(&token, &ring, NOW, &lookup),
        Err(TokenError::Revoked { .. })
    ));
}

#[test]
fn revocation_list_snapshot() {
    let ring = ring(Alg::Es256);
    let mut list = RevocationList::new(12, NOW);
    list.set(DEVICE, 4);
    list.set("h-other", 1);
    assert_eq!(list.current_epoch(DEVICE), Some(4));
    assert_eq!(list.current_epoch("h-nobody"), None);

    // plain JSON for caching
    let json = serde_json::to_string(&list).unwrap();
    assert_eq!(serde_json::from_str::<RevocationList>(&json).unwrap(), list);

    // signed snapshot
    let signed = list.sign(&ring).unwrap();
    let rp = ring.verification_only().unwrap();
    let opened = RevocationList::open(&signed, &rp).unwrap();
    assert_eq!(opened, list);
    let token = sign(&claims(4), &ring).unwrap();
    assert!(verify(&token, &rp, NOW, &opened).is_ok());
    list.set(DEVICE, 5);
    assert!(matches!(
        verify(&token, &rp, NOW, &list),
        Err(TokenError::Revoked { .. })
    ));

    // a result is not a list, and a list is not a result
    assert!(matches!(
        RevocationList::open(&token, &rp),
        Err(TokenError::WrongType)
    ));
    assert!(matches!(
        verify(&signed, &rp, NOW, &opened),
        Err(TokenError::WrongType)
    ));
    // a tampered list
    let p = parts(&signed);
    let mut forged_list = opened.clone();
    forged_list.devices.insert(DEVICE.into(), 0);
    let forged = format!(
        "{}.{}.{}",
        p[0],
        B64.encode(serde_json::to_vec(&forged_list).unwrap()),
        p[2]
    );
    assert!(matches!(
        RevocationList::open(&forged, &rp),
        Err(TokenError::BadSignature)
    ));
}

#[test]
fn keys_from_pem_files_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    for alg in [Alg::EdDsa, Alg::Es256] {
        let generated = SigningKey::generate(alg).unwrap();
        let private = dir.path().join(format!("{alg}.key"));
        let public = dir.path().join(format!("{alg}.pub"));
        std::fs::write(&private, generated.private_key_pem().unwrap()).unwrap();
        std::fs::write(&public, generated.public_key_pem().unwrap()).unwrap();

        let loaded = SigningKey::from_pem_file(&private).unwrap();
        assert_eq!(loaded.alg(), alg);
        assert_eq!(
            loaded.kid(),
            generated.kid(),
            "kid derives from the public key"
        );
        assert_eq!(loaded.kid().len(), 16);
        let signer = KeyRing::with_signing_key(loaded).unwrap();
        let token = sign(&claims(0), &signer).unwrap();

        let mut rp = KeyRing::new();
        rp.add_verification_key(VerificationKey::from_pem_file(&public).unwrap())
            .unwrap();
        assert!(verify(&token, &rp, NOW, &epochs(0)).is_ok());
    }
    assert!(matches!(
        SigningKey::from_pem_file(dir.path().join("missing.key")),
        Err(KeyError::Io { .. })
    ));
    assert!(matches!(
        SigningKey::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
        Err(KeyError::OpenSsl { .. })
    ));
    // keys of other types are refused
    let rsa = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    assert!(matches!(
        SigningKey::from_pem(&rsa.private_key_to_pem_pkcs8().unwrap()),
        Err(KeyError::UnsupportedKeyType)
    ));
    let p384 = openssl::ec::EcKey::generate(
        &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::SECP384R1).unwrap(),
    )
    .unwrap();
    let p384 = PKey::from_ec_key(p384).unwrap();
    assert!(matches!(
        VerificationKey::from_pem(&p384.public_key_to_pem().unwrap()),
        Err(KeyError::UnsupportedKeyType)
    ));

    // rotation: tokens of the old key verify until it is removed
    let mut ring = KeyRing::with_signing_key(
        SigningKey::generate(Alg::EdDsa)
            .unwrap()
            .with_kid("k2025")
            .unwrap(),
    )
    .unwrap();
    let old_token = sign(&claims(0), &ring).unwrap();
    ring.set_signing_key(
        SigningKey::generate(Alg::Es256)
            .unwrap()
            .with_kid("k2026")
            .unwrap(),
    )
    .unwrap();
    let new_token = sign(&claims(0), &ring).unwrap();
    assert_eq!(ring.kids(), ["k2025", "k2026"]);
    assert!(verify(&old_token, &ring, NOW, &epochs(0)).is_ok());
    assert!(verify(&new_token, &ring, NOW, &epochs(0)).is_ok());
    assert!(ring.remove("k2026").is_none(), "the signing key stays");
    assert!(ring.remove("k2025").is_some());
    assert!(matches!(
        verify(&old_token, &ring, NOW, &epochs(0)),
        Err(TokenError::UnknownKid)
    ));
    assert!(verify(&new_token, &ring, NOW, &epochs(0)).is_ok());
    // a different key under an existing id is refused; the same key again is fine
    let clash = SigningKey::generate(Alg::EdDsa)
        .unwrap()
        .with_kid("k2026")
        .unwrap();
    assert!(matches!(
        ring.add_verification_key(clash.verification_key().unwrap()),
        Err(KeyError::DuplicateKid(_))
    ));
    let same = ring.signing_key().unwrap().verification_key().unwrap();
    ring.add_verification_key(same).unwrap();
    // bad key ids
    for kid in ["", "has space", "slash/", &"k".repeat(65)] {
        assert!(matches!(
            SigningKey::generate(Alg::EdDsa).unwrap().with_kid(kid),
            Err(KeyError::InvalidKid)
        ));
    }
}

#[test]
fn garbage_and_oversized_input_are_errors() {
    let ring = ring(Alg::EdDsa);
    let e = epochs(0);
    let huge = "a".repeat(MAX_TOKEN_LEN + 1);
    assert!(matches!(
        verify(&huge, &ring, NOW, &e),
        Err(TokenError::TooLarge { .. })
    ));
    let cases = [
        "",
        ".",
        "..",
        "...",
        "a.b",
        "a.b.c.d",
        "a.b.c",
        "!!!.???.***",
        "eyJ9.eyJ9.AA",
        "e30.e30.AA",      // {} . {}
        "bnVsbA.e30.AAAA", // null header
        "\u{0}\u{1}\u{2}",
        "é.é.é",
    ];
    for token in cases {
        assert!(verify(token, &ring, NOW, &e).is_err(), "{token:?}");
    }
    // padded base64 is not canonical
    let token = sign(&claims(0), &ring).unwrap();
    let p = parts(&token);
    let padded = format!("{}==.{}.{}", p[0], p[1], p[2]);
    assert!(verify(&padded, &ring, NOW, &e).is_err());
    // a header that is deeply nested or huge JSON still fails cleanly
    let nested = B64.encode("[".repeat(2000));
    assert!(verify(&format!("{nested}.e30.AA"), &ring, NOW, &e).is_err());
}

#[test]
fn every_mutation_of_a_valid_token_is_refused() {
    for alg in [Alg::EdDsa, Alg::Es256] {
        let ring = ring(alg);
        let token = sign(&claims(0), &ring).unwrap();
        let e = epochs(0);
        assert!(verify(&token, &ring, NOW, &e).is_ok());
        let bytes = token.as_bytes();
        let replacements = [b'A', b'B', b'_', b'-', b'.', b'=', b'0', b'z', b' '];
        let mut tried = 0;
        for i in 0..bytes.len() {
            for &r in &replacements {
                if bytes[i] == r {
                    continue;
                }
                let mut mutated = bytes.to_vec();
                mutated[i] = r;
                let mutated = String::from_utf8(mutated).unwrap();
                assert!(
                    verify(&mutated, &ring, NOW, &e).is_err(),
                    "{alg}: byte {i} → {:?} verified",
                    r as char
                );
                tried += 1;
            }
            // deleting a byte, and truncating here
            let deleted = format!("{}{}", &token[..i], &token[i + 1..]);
            assert!(verify(&deleted, &ring, NOW, &e).is_err());
            assert!(verify(&token[..i], &ring, NOW, &e).is_err());
        }
        assert!(tried > 1000);
    }
}
