//! The Android Key Attestation `KeyDescription` extension (OID 1.3.6.1.4.1.11129.2.1.17): typed
//! model, strict parser, and the JSON encoding of Google's reference verifier.
//!
//! Schema: <https://source.android.com/docs/security/features/keystore/attestation#schema>.
//! Every attestation version shares the same outer shape (8 fields); later versions only add
//! authorization tags. The parser knows every tag of the schema up to KeyMint 4 / attestation
//! version 400 and later (module hash, ML-DSA variant, usage count limit); an unknown tag is an
//! error, as in the reference verifier.
//!
//! Strictness (beyond the DER rules in [`crate::der`]):
//! - authorization list entries are `[tag] EXPLICIT` context-specific constructed elements holding
//!   exactly one value, in strictly ascending tag order (no duplicates);
//! - each tag's value must have the schema's type (the reference verifier logs and drops a
//!   mistyped value; this parser rejects the whole description);
//! - flag tags (`noAuthRequired`, …) must hold a DER NULL; strings must be valid UTF-8;
//! - enumerations must hold a known value.
//!
//! One leniency is kept from the reference: a patch level that is not `YYYYMM` or `YYYYMMDD` is
//! kept as [`PatchLevel::Unparsed`] and left out of the JSON, because real devices report such
//! values and the reference verifier accepts them.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value};

use crate::der::{self, DerError, Reader, Tlv, tag};

/// OID of the key attestation extension, dotted form.
pub const KEY_DESCRIPTION_OID: &str = "1.3.6.1.4.1.11129.2.1.17";

/// DER contents octets of [`KEY_DESCRIPTION_OID`].
pub const KEY_DESCRIPTION_OID_DER: &[u8] =
    &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x01, 0x11];

/// Why a KeyDescription could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyDescriptionError {
    /// The DER was malformed or a value had the wrong type.
    #[error("{field}: {source}")]
    Der {
        /// Where in the description, e.g. `hardwareEnforced.rootOfTrust`.
        field: String,
        /// The DER problem.
        #[source]
        source: DerError,
    },
    /// The top-level SEQUENCE does not have exactly 8 fields.
    #[error("KeyDescription must have 8 fields, found {0}")]
    FieldCount(usize),
    /// An authorization list entry is not an `[n] EXPLICIT` context-specific tag.
    #[error(
        "{list}: authorization list entries must be EXPLICIT context-specific tags, found {found}"
    )]
    NotExplicitTag {
        /// `softwareEnforced` or `hardwareEnforced`.
        list: &'static str,
        /// The tag found.
        found: der::TagDesc,
    },
    /// Authorization list tags are not in ascending order.
    #[error(
        "{list}: authorization list tags must be in ascending order (tag {tag} follows tag {previous})"
    )]
    TagsNotAscending {
        /// `softwareEnforced` or `hardwareEnforced`.
        list: &'static str,
        /// The tag before.
        previous: u32,
        /// The out-of-order tag.
        tag: u32,
    },
    /// The same tag appears twice in one authorization list.
    #[error("{list}: duplicate authorization tag {tag}")]
    DuplicateTag {
        /// `softwareEnforced` or `hardwareEnforced`.
        list: &'static str,
        /// The repeated tag.
        tag: u32,
    },
    /// A tag this parser (and the schema) does not know.
    #[error("{list}: unknown authorization tag {tag}")]
    UnknownTag {
        /// `softwareEnforced` or `hardwareEnforced`.
        list: &'static str,
        /// The unknown tag number.
        tag: u32,
    },
    /// An enumeration with a value outside its definition.
    #[error("{field}: unknown value {value}")]
    UnknownValue {
        /// The field.
        field: String,
        /// The value found.
        value: i128,
    },
    /// A string field that is not valid UTF-8.
    #[error("{field}: not valid UTF-8")]
    InvalidUtf8 {
        /// The field.
        field: String,
    },
    /// A structure with the wrong number of elements.
    #[error("{field}: expected {expected} elements, found {found}")]
    ElementCount {
        /// The field.
        field: String,
        /// What the schema allows.
        expected: &'static str,
        /// What was found.
        found: usize,
    },
}

type Result<T> = std::result::Result<T, KeyDescriptionError>;

fn der_err(field: impl Into<String>) -> impl FnOnce(DerError) -> KeyDescriptionError {
    let field = field.into();
    move |source| KeyDescriptionError::Der { field, source }
}

/// Where a key lives: the `SecurityLevel` enumeration. Ordered from weakest to strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecurityLevel {
    /// Android's software keystore.
    Software,
    /// A trusted execution environment (TEE).
    TrustedEnvironment,
    /// A discrete secure element (StrongBox).
    StrongBox,
}

impl SecurityLevel {
    fn from_value(v: i128, field: &str) -> Result<Self> {
        match v {
            0 => Ok(Self::Software),
            1 => Ok(Self::TrustedEnvironment),
            2 => Ok(Self::StrongBox),
            _ => Err(KeyDescriptionError::UnknownValue {
                field: field.into(),
                value: v,
            }),
        }
    }

    /// The reference JSON name, e.g. `TRUSTED_ENVIRONMENT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Software => "SOFTWARE",
            Self::TrustedEnvironment => "TRUSTED_ENVIRONMENT",
            Self::StrongBox => "STRONG_BOX",
        }
    }
}

impl fmt::Display for SecurityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `VerifiedBootState` enumeration of the root of trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VerifiedBootState {
    /// Locked bootloader, OS signed by the OEM key (green).
    Verified,
    /// Locked bootloader, OS signed by a user-set key (yellow).
    SelfSigned,
    /// Unlocked bootloader (orange).
    Unverified,
    /// Verification failed (red).
    Failed,
}

impl VerifiedBootState {
    fn from_value(v: i128, field: &str) -> Result<Self> {
        match v {
            0 => Ok(Self::Verified),
            1 => Ok(Self::SelfSigned),
            2 => Ok(Self::Unverified),
            3 => Ok(Self::Failed),
            _ => Err(KeyDescriptionError::UnknownValue {
                field: field.into(),
                value: v,
            }),
        }
    }

    /// The reference JSON name, e.g. `VERIFIED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "VERIFIED",
            Self::SelfSigned => "SELF_SIGNED",
            Self::Unverified => "UNVERIFIED",
            Self::Failed => "FAILED",
        }
    }
}

/// The `origin` tag (KeyMint `KeyOrigin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Origin {
    /// Generated inside the secure hardware.
    Generated,
    /// Derived inside the secure hardware.
    Derived,
    /// Imported in the clear.
    Imported,
    /// Reserved value 3.
    Reserved,
    /// Imported wrapped (secure import).
    SecurelyImported,
}

impl Origin {
    fn from_value(v: i128, field: &str) -> Result<Self> {
        match v {
            0 => Ok(Self::Generated),
            1 => Ok(Self::Derived),
            2 => Ok(Self::Imported),
            3 => Ok(Self::Reserved),
            4 => Ok(Self::SecurelyImported),
            _ => Err(KeyDescriptionError::UnknownValue {
                field: field.into(),
                value: v,
            }),
        }
    }

    /// The reference JSON name, e.g. `GENERATED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generated => "GENERATED",
            Self::Derived => "DERIVED",
            Self::Imported => "IMPORTED",
            Self::Reserved => "RESERVED",
            Self::SecurelyImported => "SECURELY_IMPORTED",
        }
    }
}

/// `RootOfTrust`: the device's verified-boot state when the key was attested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootOfTrust {
    /// Digest of the key that verified the boot image (all zeros when unlocked on some devices).
    pub verified_boot_key: Vec<u8>,
    /// Whether the bootloader is locked.
    pub device_locked: bool,
    /// Verified boot state.
    pub verified_boot_state: VerifiedBootState,
    /// Digest of the verified boot data (attestation version 3 and later).
    pub verified_boot_hash: Option<Vec<u8>>,
}

/// One package of the `attestationApplicationId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationPackageInfo {
    /// Package name.
    pub name: String,
    /// Version code.
    pub version: i128,
}

/// `AttestationApplicationId`: the app(s) that own the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationApplicationId {
    /// Packages sharing the key's uid (duplicates dropped, first occurrence kept).
    pub packages: Vec<AttestationPackageInfo>,
    /// SHA-256 digests of the signing certificates (duplicates dropped).
    pub signature_digests: Vec<Vec<u8>>,
}

/// An OS, vendor or boot patch level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchLevel {
    /// `YYYYMM` or `YYYYMMDD`.
    Date {
        /// Year (1000–9999).
        year: u16,
        /// Month (1–12).
        month: u8,
        /// Day (or sub-version) when the value has 8 digits.
        day: Option<u8>,
    },
    /// A value that is not a patch date (kept for policy; left out of the reference JSON).
    Unparsed(i128),
}

impl PatchLevel {
    /// Interprets an integer the way the reference verifier does: its decimal form must have 6
    /// (`YYYYMM`) or 8 (`YYYYMMDD`) digits with a month of 01–12.
    pub fn from_value(v: i128) -> Self {
        let s = v.to_string();
        let digits = |r: std::ops::Range<usize>| s.get(r).and_then(|d| d.parse::<u16>().ok());
        if (s.len() == 6 || s.len() == 8)
            && s.bytes().all(|b| b.is_ascii_digit())
            && let (Some(year), Some(month)) = (digits(0..4), digits(4..6))
        {
            let day = if s.len() == 8 { digits(6..8) } else { None };
            if year >= 1 && (1..=12).contains(&month) && (s.len() == 6 || day.is_some()) {
                return Self::Date {
                    year,
                    month: u8::try_from(month).unwrap_or(0),
                    day: day.and_then(|d| u8::try_from(d).ok()),
                };
            }
        }
        Self::Unparsed(v)
    }

    /// `YYYYMM` / `YYYYMMDD`, or `None` when unparsed.
    pub fn to_reference_string(&self) -> Option<String> {
        match self {
            Self::Date {
                year,
                month,
                day: None,
            } => Some(format!("{year:04}{month:02}")),
            Self::Date {
                year,
                month,
                day: Some(d),
            } => Some(format!("{year:04}{month:02}{d:02}")),
            Self::Unparsed(_) => None,
        }
    }
}

/// An `AuthorizationList`: the key's properties, as enforced by one party (software or hardware).
/// Every field is optional; flags are `true` when the tag is present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizationList {
    /// \[1] purposes.
    pub purposes: Option<Vec<i128>>,
    /// \[2] algorithm (JSON `algorithms`, as in the reference).
    pub algorithm: Option<i128>,
    /// \[3] key size in bits.
    pub key_size: Option<i128>,
    /// \[4] block modes.
    pub block_modes: Option<Vec<i128>>,
    /// \[5] digests.
    pub digests: Option<Vec<i128>>,
    /// \[6] paddings.
    pub paddings: Option<Vec<i128>>,
    /// \[10] EC curve.
    pub ec_curve: Option<i128>,
    /// \[11] ML-DSA variant.
    pub ml_dsa_variant: Option<i128>,
    /// \[200] RSA public exponent.
    pub rsa_public_exponent: Option<i128>,
    /// \[203] RSA OAEP MGF digests.
    pub rsa_oaep_mgf_digests: Option<Vec<i128>>,
    /// \[303] rollback resistance (KeyMint).
    pub rollback_resistance: bool,
    /// \[305] early boot only.
    pub early_boot_only: bool,
    /// \[400] active date-time, ms since the epoch.
    pub active_date_time: Option<i128>,
    /// \[401] origination expiry, ms since the epoch.
    pub origination_expire_date_time: Option<i128>,
    /// \[402] usage expiry, ms since the epoch.
    pub usage_expire_date_time: Option<i128>,
    /// \[405] usage count limit.
    pub usage_count_limit: Option<i128>,
    /// \[503] no user authentication required.
    pub no_auth_required: bool,
    /// \[504] user authentication types (bit mask).
    pub user_auth_type: Option<i128>,
    /// \[505] authentication timeout, seconds.
    pub auth_timeout: Option<i128>,
    /// \[506] allow while on body.
    pub allow_while_on_body: bool,
    /// \[507] trusted user presence required.
    pub trusted_user_presence_required: bool,
    /// \[508] trusted confirmation required.
    pub trusted_confirmation_required: bool,
    /// \[509] unlocked device required.
    pub unlocked_device_required: bool,
    /// \[701] creation date-time, ms since the epoch.
    pub creation_date_time: Option<i128>,
    /// \[702] origin.
    pub origin: Option<Origin>,
    /// \[703] rollback resistant (Keymaster).
    pub rollback_resistant: bool,
    /// \[704] root of trust.
    pub root_of_trust: Option<RootOfTrust>,
    /// \[705] OS version, e.g. 140000.
    pub os_version: Option<i128>,
    /// \[706] OS patch level.
    pub os_patch_level: Option<PatchLevel>,
    /// \[709] attestation application id.
    pub attestation_application_id: Option<AttestationApplicationId>,
    /// \[710] brand.
    pub attestation_id_brand: Option<String>,
    /// \[711] device.
    pub attestation_id_device: Option<String>,
    /// \[712] product.
    pub attestation_id_product: Option<String>,
    /// \[713] serial number.
    pub attestation_id_serial: Option<String>,
    /// \[714] IMEI.
    pub attestation_id_imei: Option<String>,
    /// \[715] MEID.
    pub attestation_id_meid: Option<String>,
    /// \[716] manufacturer.
    pub attestation_id_manufacturer: Option<String>,
    /// \[717] model.
    pub attestation_id_model: Option<String>,
    /// \[718] vendor patch level.
    pub vendor_patch_level: Option<PatchLevel>,
    /// \[719] boot patch level.
    pub boot_patch_level: Option<PatchLevel>,
    /// \[720] device-unique attestation.
    pub device_unique_attestation: bool,
    /// \[723] second IMEI.
    pub attestation_id_second_imei: Option<String>,
    /// \[724] APEX module hash.
    pub module_hash: Option<Vec<u8>>,
}

/// The parsed `KeyDescription`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDescription {
    /// Attestation format version (1–4, then 100, 200, 300, 400, …).
    pub attestation_version: i128,
    /// Security level of the attesting party.
    pub attestation_security_level: SecurityLevel,
    /// Keymaster / KeyMint version.
    pub key_mint_version: i128,
    /// Security level of the Keymaster / KeyMint implementation.
    pub key_mint_security_level: SecurityLevel,
    /// The challenge the relying party supplied.
    pub attestation_challenge: Vec<u8>,
    /// Unique id (empty unless requested by a privileged app).
    pub unique_id: Vec<u8>,
    /// Properties enforced by Android (software).
    pub software_enforced: AuthorizationList,
    /// Properties enforced by the secure hardware.
    pub hardware_enforced: AuthorizationList,
}

impl KeyDescription {
    /// Parses the DER `KeyDescription` (the contents of the extension's OCTET STRING).
    pub fn parse(der_bytes: &[u8]) -> Result<Self> {
        let top = der::parse_single(der_bytes).map_err(der_err("KeyDescription"))?;
        top.expect_universal(tag::SEQUENCE, "SEQUENCE")
            .map_err(der_err("KeyDescription"))?;
        let fields = read_all(top, "KeyDescription", 8)?;
        let [
            version,
            sec,
            km_version,
            km_sec,
            challenge,
            unique_id,
            sw,
            hw,
        ] = fields.as_slice()
        else {
            return Err(KeyDescriptionError::FieldCount(fields.len()));
        };
        Ok(Self {
            attestation_version: int(version, "attestationVersion")?,
            attestation_security_level: SecurityLevel::from_value(
                enumerated(sec, "attestationSecurityLevel")?,
                "attestationSecurityLevel",
            )?,
            key_mint_version: int(km_version, "keyMintVersion")?,
            key_mint_security_level: SecurityLevel::from_value(
                enumerated(km_sec, "keyMintSecurityLevel")?,
                "keyMintSecurityLevel",
            )?,
            attestation_challenge: octets(challenge, "attestationChallenge")?.to_vec(),
            unique_id: octets(unique_id, "uniqueId")?.to_vec(),
            software_enforced: AuthorizationList::parse(*sw, "softwareEnforced")?,
            hardware_enforced: AuthorizationList::parse(*hw, "hardwareEnforced")?,
        })
    }

    /// The key's creation time (ms since the epoch), from either list.
    pub fn creation_date_time(&self) -> Option<i128> {
        self.software_enforced
            .creation_date_time
            .or(self.hardware_enforced.creation_date_time)
    }

    /// [`Self::creation_date_time`] as a [`std::time::SystemTime`] (the instant to verify the
    /// chain "as of" when replaying a stored attestation).
    pub fn creation_time(&self) -> Option<std::time::SystemTime> {
        let ms = u64::try_from(self.creation_date_time()?).ok()?;
        std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_millis(ms))
    }

    /// The weaker of the attestation and KeyMint security levels (the reference verifier's
    /// `securityLevel`).
    pub fn security_level(&self) -> SecurityLevel {
        self.attestation_security_level
            .min(self.key_mint_security_level)
    }

    /// The hardware-enforced root of trust, if any.
    pub fn root_of_trust(&self) -> Option<&RootOfTrust> {
        self.hardware_enforced.root_of_trust.as_ref()
    }

    /// The JSON encoding of Google's reference verifier: camelCase field names, integers as
    /// decimal strings, bytes as standard base64, enumerations by name, absent fields left out.
    pub fn to_reference_json(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "attestationVersion".into(),
            int_json(self.attestation_version),
        );
        m.insert(
            "attestationSecurityLevel".into(),
            self.attestation_security_level.as_str().into(),
        );
        m.insert("keyMintVersion".into(), int_json(self.key_mint_version));
        m.insert(
            "keyMintSecurityLevel".into(),
            self.key_mint_security_level.as_str().into(),
        );
        m.insert(
            "attestationChallenge".into(),
            bytes_json(&self.attestation_challenge),
        );
        m.insert("uniqueId".into(), bytes_json(&self.unique_id));
        m.insert(
            "softwareEnforced".into(),
            self.software_enforced.to_reference_json(),
        );
        m.insert(
            "hardwareEnforced".into(),
            self.hardware_enforced.to_reference_json(),
        );
        Value::Object(m)
    }
}

impl serde::Serialize for KeyDescription {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_reference_json().serialize(s)
    }
}

/// Reads every element of a constructed element, stopping after `max + 1` (enough to report a
/// count mismatch without walking a huge input).
fn read_all<'a>(tlv: Tlv<'a>, field: &str, max: usize) -> Result<Vec<Tlv<'a>>> {
    let mut r = tlv.contents().map_err(der_err(field))?;
    let mut out = Vec::new();
    while !r.is_empty() && out.len() <= max {
        out.push(r.read().map_err(der_err(field))?);
    }
    Ok(out)
}

fn int(t: &Tlv<'_>, field: &str) -> Result<i128> {
    t.expect_universal(tag::INTEGER, "INTEGER")
        .and_then(|()| t.integer())
        .map_err(der_err(field))
}

fn enumerated(t: &Tlv<'_>, field: &str) -> Result<i128> {
    t.expect_universal(tag::ENUMERATED, "ENUMERATED")
        .and_then(|()| t.integer())
        .map_err(der_err(field))
}

fn octets<'a>(t: &Tlv<'a>, field: &str) -> Result<&'a [u8]> {
    t.expect_universal(tag::OCTET_STRING, "OCTET STRING")
        .map_err(der_err(field))?;
    Ok(t.value)
}

fn utf8(t: &Tlv<'_>, field: &str) -> Result<String> {
    let b = octets(t, field)?;
    String::from_utf8(b.to_vec()).map_err(|_| KeyDescriptionError::InvalidUtf8 {
        field: field.into(),
    })
}

fn int_set(t: &Tlv<'_>, field: &str) -> Result<Vec<i128>> {
    t.expect_universal(tag::SET, "SET")
        .map_err(der_err(field))?;
    let mut r = t.contents().map_err(der_err(field))?;
    let mut out = Vec::new();
    while !r.is_empty() {
        let v = r.read_integer().map_err(der_err(field))?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

fn null(t: &Tlv<'_>, field: &str) -> Result<bool> {
    t.null().map_err(der_err(field))?;
    Ok(true)
}

fn root_of_trust(t: &Tlv<'_>, field: &str) -> Result<RootOfTrust> {
    t.expect_universal(tag::SEQUENCE, "SEQUENCE")
        .map_err(der_err(field))?;
    let items = read_all(*t, field, 4)?;
    let (key, locked, state, hash) = match items.as_slice() {
        [a, b, c] => (a, b, c, None),
        [a, b, c, d] => (a, b, c, Some(d)),
        _ => {
            return Err(KeyDescriptionError::ElementCount {
                field: field.into(),
                expected: "3 or 4",
                found: items.len(),
            });
        }
    };
    let f = |name: &str| format!("{field}.{name}");
    locked
        .expect_universal(tag::BOOLEAN, "BOOLEAN")
        .map_err(der_err(f("deviceLocked")))?;
    Ok(RootOfTrust {
        verified_boot_key: octets(key, &f("verifiedBootKey"))?.to_vec(),
        device_locked: locked.boolean().map_err(der_err(f("deviceLocked")))?,
        verified_boot_state: VerifiedBootState::from_value(
            enumerated(state, &f("verifiedBootState"))?,
            &f("verifiedBootState"),
        )?,
        verified_boot_hash: match hash {
            Some(h) => Some(octets(h, &f("verifiedBootHash"))?.to_vec()),
            None => None,
        },
    })
}

fn application_id(t: &Tlv<'_>, field: &str) -> Result<AttestationApplicationId> {
    // An OCTET STRING wrapping the DER of the SEQUENCE.
    let inner = der::parse_single(octets(t, field)?).map_err(der_err(field))?;
    inner
        .expect_universal(tag::SEQUENCE, "SEQUENCE")
        .map_err(der_err(field))?;
    let items = read_all(inner, field, 2)?;
    let [packages, signatures] = items.as_slice() else {
        return Err(KeyDescriptionError::ElementCount {
            field: field.into(),
            expected: "2",
            found: items.len(),
        });
    };
    let pf = format!("{field}.packages");
    packages
        .expect_universal(tag::SET, "SET")
        .map_err(der_err(pf.as_str()))?;
    let mut pr = packages.contents().map_err(der_err(pf.as_str()))?;
    let mut out_packages: Vec<AttestationPackageInfo> = Vec::new();
    while !pr.is_empty() {
        let info = pr
            .read_universal(tag::SEQUENCE, "SEQUENCE")
            .map_err(der_err(pf.as_str()))?;
        let fields = read_all(info, &pf, 2)?;
        let [name, version] = fields.as_slice() else {
            return Err(KeyDescriptionError::ElementCount {
                field: pf,
                expected: "2",
                found: fields.len(),
            });
        };
        let package = AttestationPackageInfo {
            name: utf8(name, &format!("{pf}.name"))?,
            version: int(version, &format!("{pf}.version"))?,
        };
        if !out_packages.contains(&package) {
            out_packages.push(package);
        }
    }
    let sf = format!("{field}.signatures");
    signatures
        .expect_universal(tag::SET, "SET")
        .map_err(der_err(sf.as_str()))?;
    let mut sr = signatures.contents().map_err(der_err(sf.as_str()))?;
    let mut digests: Vec<Vec<u8>> = Vec::new();
    while !sr.is_empty() {
        let d = sr.read_octet_string().map_err(der_err(sf.as_str()))?;
        if !digests.iter().any(|x| x == d) {
            digests.push(d.to_vec());
        }
    }
    Ok(AttestationApplicationId {
        packages: out_packages,
        signature_digests: digests,
    })
}

/// JSON name of every tag this parser knows, in tag order.
pub const KNOWN_TAGS: &[(u32, &str)] = &[
    (1, "purposes"),
    (2, "algorithms"),
    (3, "keySize"),
    (4, "blockModes"),
    (5, "digests"),
    (6, "paddings"),
    (10, "ecCurve"),
    (11, "mlDsaVariant"),
    (200, "rsaPublicExponent"),
    (203, "rsaOaepMgfDigests"),
    (303, "rollbackResistance"),
    (305, "earlyBootOnly"),
    (400, "activeDateTime"),
    (401, "originationExpireDateTime"),
    (402, "usageExpireDateTime"),
    (405, "usageCountLimit"),
    (503, "noAuthRequired"),
    (504, "userAuthType"),
    (505, "authTimeout"),
    (506, "allowWhileOnBody"),
    (507, "trustedUserPresenceRequired"),
    (508, "trustedConfirmationRequired"),
    (509, "unlockedDeviceRequired"),
    (701, "creationDateTime"),
    (702, "origin"),
    (703, "rollbackResistant"),
    (704, "rootOfTrust"),
    (705, "osVersion"),
    (706, "osPatchLevel"),
    (709, "attestationApplicationId"),
    (710, "attestationIdBrand"),
    (711, "attestationIdDevice"),
    (712, "attestationIdProduct"),
    (713, "attestationIdSerial"),
    (714, "attestationIdImei"),
    (715, "attestationIdMeid"),
    (716, "attestationIdManufacturer"),
    (717, "attestationIdModel"),
    (718, "vendorPatchLevel"),
    (719, "bootPatchLevel"),
    (720, "deviceUniqueAttestation"),
    (723, "attestationIdSecondImei"),
    (724, "moduleHash"),
];

impl AuthorizationList {
    /// Parses one `AuthorizationList` SEQUENCE; `list` names it in errors.
    pub fn parse(tlv: Tlv<'_>, list: &'static str) -> Result<Self> {
        tlv.expect_universal(tag::SEQUENCE, "SEQUENCE")
            .map_err(der_err(list))?;
        let mut r = tlv.contents().map_err(der_err(list))?;
        let mut out = Self::default();
        let mut previous: Option<u32> = None;
        while !r.is_empty() {
            let entry = r.read().map_err(der_err(list))?;
            if entry.tag.class != der::Class::Context || !entry.tag.constructed {
                return Err(KeyDescriptionError::NotExplicitTag {
                    list,
                    found: entry.tag,
                });
            }
            let number = entry.tag.number;
            if let Some(p) = previous {
                if number == p {
                    return Err(KeyDescriptionError::DuplicateTag { list, tag: number });
                }
                if number < p {
                    return Err(KeyDescriptionError::TagsNotAscending {
                        list,
                        previous: p,
                        tag: number,
                    });
                }
            }
            previous = Some(number);
            let Some((_, name)) = KNOWN_TAGS.iter().find(|(t, _)| *t == number) else {
                return Err(KeyDescriptionError::UnknownTag { list, tag: number });
            };
            let field = format!("{list}.{name}");
            let mut inner_r: Reader<'_> = entry.contents().map_err(der_err(field.as_str()))?;
            let v = inner_r.read().map_err(der_err(field.as_str()))?;
            inner_r.finish().map_err(der_err(field.as_str()))?;
            out.set(number, &v, &field)?;
        }
        Ok(out)
    }

    fn set(&mut self, number: u32, v: &Tlv<'_>, f: &str) -> Result<()> {
        match number {
            1 => self.purposes = Some(int_set(v, f)?),
            2 => self.algorithm = Some(int(v, f)?),
            3 => self.key_size = Some(int(v, f)?),
            4 => self.block_modes = Some(int_set(v, f)?),
            5 => self.digests = Some(int_set(v, f)?),
            6 => self.paddings = Some(int_set(v, f)?),
            10 => self.ec_curve = Some(int(v, f)?),
            11 => self.ml_dsa_variant = Some(int(v, f)?),
            200 => self.rsa_public_exponent = Some(int(v, f)?),
            203 => self.rsa_oaep_mgf_digests = Some(int_set(v, f)?),
            303 => self.rollback_resistance = null(v, f)?,
            305 => self.early_boot_only = null(v, f)?,
            400 => self.active_date_time = Some(int(v, f)?),
            401 => self.origination_expire_date_time = Some(int(v, f)?),
            402 => self.usage_expire_date_time = Some(int(v, f)?),
            405 => self.usage_count_limit = Some(int(v, f)?),
            503 => self.no_auth_required = null(v, f)?,
            504 => self.user_auth_type = Some(int(v, f)?),
            505 => self.auth_timeout = Some(int(v, f)?),
            506 => self.allow_while_on_body = null(v, f)?,
            507 => self.trusted_user_presence_required = null(v, f)?,
            508 => self.trusted_confirmation_required = null(v, f)?,
            509 => self.unlocked_device_required = null(v, f)?,
            701 => self.creation_date_time = Some(int(v, f)?),
            702 => self.origin = Some(Origin::from_value(int(v, f)?, f)?),
            703 => self.rollback_resistant = null(v, f)?,
            704 => self.root_of_trust = Some(root_of_trust(v, f)?),
            705 => self.os_version = Some(int(v, f)?),
            706 => self.os_patch_level = Some(PatchLevel::from_value(int(v, f)?)),
            709 => self.attestation_application_id = Some(application_id(v, f)?),
            710 => self.attestation_id_brand = Some(utf8(v, f)?),
            711 => self.attestation_id_device = Some(utf8(v, f)?),
            712 => self.attestation_id_product = Some(utf8(v, f)?),
            713 => self.attestation_id_serial = Some(utf8(v, f)?),
            714 => self.attestation_id_imei = Some(utf8(v, f)?),
            715 => self.attestation_id_meid = Some(utf8(v, f)?),
            716 => self.attestation_id_manufacturer = Some(utf8(v, f)?),
            717 => self.attestation_id_model = Some(utf8(v, f)?),
            718 => self.vendor_patch_level = Some(PatchLevel::from_value(int(v, f)?)),
            719 => self.boot_patch_level = Some(PatchLevel::from_value(int(v, f)?)),
            720 => self.device_unique_attestation = null(v, f)?,
            723 => self.attestation_id_second_imei = Some(utf8(v, f)?),
            724 => self.module_hash = Some(octets(v, f)?.to_vec()),
            // `parse` only calls `set` for tags in KNOWN_TAGS; keep the match total anyway.
            _ => {
                return Err(KeyDescriptionError::UnknownTag {
                    list: "authorizationList",
                    tag: number,
                });
            }
        }
        Ok(())
    }

    /// The reference verifier's JSON object for this list (see
    /// [`KeyDescription::to_reference_json`]). Tags the reference verifier does not model
    /// (`rollbackResistance`, `earlyBootOnly`, `allowWhileOnBody`, `deviceUniqueAttestation`)
    /// appear under those names when present.
    pub fn to_reference_json(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_owned(), v);
            }
        };
        let flag = |b: bool| b.then_some(Value::Bool(true));
        let i = |v: Option<i128>| v.map(int_json);
        let set = |v: &Option<Vec<i128>>| {
            v.as_ref()
                .map(|s| Value::Array(s.iter().copied().map(int_json).collect()))
        };
        let s = |v: &Option<String>| v.as_ref().map(|x| Value::String(x.clone()));
        let patch = |p: &Option<PatchLevel>| {
            p.as_ref()
                .and_then(PatchLevel::to_reference_string)
                .map(Value::String)
        };
        put("purposes", set(&self.purposes));
        put("algorithms", i(self.algorithm));
        put("keySize", i(self.key_size));
        put("blockModes", set(&self.block_modes));
        put("digests", set(&self.digests));
        put("paddings", set(&self.paddings));
        put("ecCurve", i(self.ec_curve));
        put("mlDsaVariant", i(self.ml_dsa_variant));
        put("rsaPublicExponent", i(self.rsa_public_exponent));
        put("rsaOaepMgfDigests", set(&self.rsa_oaep_mgf_digests));
        put("rollbackResistance", flag(self.rollback_resistance));
        put("earlyBootOnly", flag(self.early_boot_only));
        put("activeDateTime", i(self.active_date_time));
        put(
            "originationExpireDateTime",
            i(self.origination_expire_date_time),
        );
        put("usageExpireDateTime", i(self.usage_expire_date_time));
        put("usageCountLimit", i(self.usage_count_limit));
        put("noAuthRequired", flag(self.no_auth_required));
        put("userAuthType", i(self.user_auth_type));
        put("authTimeout", i(self.auth_timeout));
        put("allowWhileOnBody", flag(self.allow_while_on_body));
        put(
            "trustedUserPresenceRequired",
            flag(self.trusted_user_presence_required),
        );
        put(
            "trustedConfirmationRequired",
            flag(self.trusted_confirmation_required),
        );
        put(
            "unlockedDeviceRequired",
            flag(self.unlocked_device_required),
        );
        put("creationDateTime", i(self.creation_date_time));
        put(
            "origin",
            self.origin.map(|o| Value::String(o.as_str().into())),
        );
        put("rollbackResistant", flag(self.rollback_resistant));
        put(
            "rootOfTrust",
            self.root_of_trust.as_ref().map(root_of_trust_json),
        );
        put("osVersion", i(self.os_version));
        put("osPatchLevel", patch(&self.os_patch_level));
        put(
            "attestationApplicationId",
            self.attestation_application_id.as_ref().map(app_id_json),
        );
        put("attestationIdBrand", s(&self.attestation_id_brand));
        put("attestationIdDevice", s(&self.attestation_id_device));
        put("attestationIdProduct", s(&self.attestation_id_product));
        put("attestationIdSerial", s(&self.attestation_id_serial));
        put("attestationIdImei", s(&self.attestation_id_imei));
        put("attestationIdMeid", s(&self.attestation_id_meid));
        put(
            "attestationIdManufacturer",
            s(&self.attestation_id_manufacturer),
        );
        put("attestationIdModel", s(&self.attestation_id_model));
        put("vendorPatchLevel", patch(&self.vendor_patch_level));
        put("bootPatchLevel", patch(&self.boot_patch_level));
        put(
            "deviceUniqueAttestation",
            flag(self.device_unique_attestation),
        );
        put(
            "attestationIdSecondImei",
            s(&self.attestation_id_second_imei),
        );
        put("moduleHash", self.module_hash.as_deref().map(bytes_json));
        Value::Object(m)
    }
}

fn int_json(v: i128) -> Value {
    Value::String(v.to_string())
}

fn bytes_json(b: &[u8]) -> Value {
    Value::String(B64.encode(b))
}

fn root_of_trust_json(r: &RootOfTrust) -> Value {
    let mut m = Map::new();
    m.insert("verifiedBootKey".into(), bytes_json(&r.verified_boot_key));
    m.insert("deviceLocked".into(), Value::Bool(r.device_locked));
    m.insert(
        "verifiedBootState".into(),
        r.verified_boot_state.as_str().into(),
    );
    if let Some(h) = &r.verified_boot_hash {
        m.insert("verifiedBootHash".into(), bytes_json(h));
    }
    Value::Object(m)
}

fn app_id_json(a: &AttestationApplicationId) -> Value {
    let packages = a
        .packages
        .iter()
        .map(|p| {
            let mut m = Map::new();
            m.insert("name".into(), Value::String(p.name.clone()));
            m.insert("version".into(), int_json(p.version));
            Value::Object(m)
        })
        .collect();
    let signatures = a.signature_digests.iter().map(|d| bytes_json(d)).collect();
    let mut m = Map::new();
    m.insert("packages".into(), Value::Array(packages));
    m.insert("signatures".into(), Value::Array(signatures));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimal DER writer for building test inputs.
    fn tlv(tag_bytes: &[u8], content: &[u8]) -> Vec<u8> {
        let mut out = tag_bytes.to_vec();
        let len = content.len();
        if len < 0x80 {
            out.push(u8::try_from(len).unwrap());
        } else if len < 0x100 {
            out.extend([0x81, u8::try_from(len).unwrap()]);
        } else {
            out.extend([
                0x82,
                u8::try_from(len >> 8).unwrap(),
                u8::try_from(len & 0xff).unwrap(),
            ]);
        }
        out.extend_from_slice(content);
        out
    }

    fn ctx(number: u32, content: &[u8]) -> Vec<u8> {
        let tag: Vec<u8> = if number < 31 {
            vec![0xa0 | u8::try_from(number).unwrap()]
        } else if number < 128 {
            vec![0xbf, u8::try_from(number).unwrap()]
        } else {
            vec![
                0xbf,
                0x80 | u8::try_from(number >> 7).unwrap(),
                u8::try_from(number & 0x7f).unwrap(),
            ]
        };
        tlv(&tag, content)
    }

    fn int_der(v: u32) -> Vec<u8> {
        let bytes = v.to_be_bytes();
        let mut s: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
        if s.first().is_none_or(|b| b & 0x80 != 0) {
            s.insert(0, 0);
        }
        tlv(&[0x02], &s)
    }

    fn description(sw: &[u8], hw: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend(int_der(400));
        body.extend(tlv(&[0x0a], &[1]));
        body.extend(int_der(400));
        body.extend(tlv(&[0x0a], &[1]));
        body.extend(tlv(&[0x04], b"challenge"));
        body.extend(tlv(&[0x04], b""));
        body.extend(tlv(&[0x30], sw));
        body.extend(tlv(&[0x30], hw));
        tlv(&[0x30], &body)
    }

    #[test]
    fn parses_every_known_tag_kind() {
        let mut hw = Vec::new();
        hw.extend(ctx(1, &tlv(&[0x31], &[int_der(2), int_der(3)].concat())));
        hw.extend(ctx(2, &int_der(3)));
        hw.extend(ctx(303, &tlv(&[0x05], &[])));
        hw.extend(ctx(503, &tlv(&[0x05], &[])));
        hw.extend(ctx(702, &int_der(0)));
        let rot = [
            tlv(&[0x04], &[0u8; 32]),
            tlv(&[0x01], &[0xff]),
            tlv(&[0x0a], &[0]),
            tlv(&[0x04], &[1u8; 32]),
        ]
        .concat();
        hw.extend(ctx(704, &tlv(&[0x30], &rot)));
        hw.extend(ctx(706, &int_der(202_401)));
        hw.extend(ctx(710, &tlv(&[0x04], b"google")));
        hw.extend(ctx(718, &int_der(20_240_105)));
        hw.extend(ctx(719, &int_der(0)));
        hw.extend(ctx(720, &tlv(&[0x05], &[])));
        hw.extend(ctx(724, &tlv(&[0x04], b"hash")));
        let pkg = tlv(
            &[0x30],
            &[tlv(&[0x04], b"com.example"), int_der(7)].concat(),
        );
        let app = tlv(
            &[0x30],
            &[tlv(&[0x31], &pkg), tlv(&[0x31], &tlv(&[0x04], &[9u8; 32]))].concat(),
        );
        let sw = [ctx(701, &int_der(1_000_000)), ctx(709, &tlv(&[0x04], &app))].concat();
        let kd = KeyDescription::parse(&description(&sw, &hw)).unwrap();
        assert_eq!(kd.attestation_version, 400);
        assert_eq!(kd.security_level(), SecurityLevel::TrustedEnvironment);
        assert_eq!(kd.hardware_enforced.purposes, Some(vec![2, 3]));
        assert!(kd.hardware_enforced.rollback_resistance);
        assert!(kd.hardware_enforced.device_unique_attestation);
        assert_eq!(
            kd.hardware_enforced.boot_patch_level,
            Some(PatchLevel::Unparsed(0))
        );
        assert_eq!(kd.creation_date_time(), Some(1_000_000));
        let json = kd.to_reference_json();
        assert_eq!(json["hardwareEnforced"]["osPatchLevel"], "202401");
        assert_eq!(json["hardwareEnforced"]["vendorPatchLevel"], "20240105");
        assert!(json["hardwareEnforced"].get("bootPatchLevel").is_none());
        assert_eq!(
            json["hardwareEnforced"]["rootOfTrust"]["verifiedBootState"],
            "VERIFIED"
        );
        assert_eq!(
            json["hardwareEnforced"]["rootOfTrust"]["deviceLocked"],
            true
        );
        assert_eq!(json["hardwareEnforced"]["deviceUniqueAttestation"], true);
        assert_eq!(json["hardwareEnforced"]["moduleHash"], "aGFzaA==");
        assert_eq!(
            json["softwareEnforced"]["attestationApplicationId"]["packages"][0]["name"],
            "com.example"
        );
        assert_eq!(json["attestationChallenge"], "Y2hhbGxlbmdl");
        assert_eq!(json["uniqueId"], "");
    }

    #[test]
    fn rejects_out_of_order_duplicate_and_unknown_tags() {
        let hw = [ctx(3, &int_der(256)), ctx(2, &int_der(3))].concat();
        let err = KeyDescription::parse(&description(&[], &hw)).unwrap_err();
        assert!(matches!(
            err,
            KeyDescriptionError::TagsNotAscending {
                list: "hardwareEnforced",
                previous: 3,
                tag: 2
            }
        ));
        assert!(err.to_string().contains("ascending order"));

        let hw = [ctx(2, &int_der(3)), ctx(2, &int_der(3))].concat();
        let err = KeyDescription::parse(&description(&[], &hw)).unwrap_err();
        assert!(matches!(
            err,
            KeyDescriptionError::DuplicateTag { tag: 2, .. }
        ));

        let sw = ctx(600, &tlv(&[0x05], &[]));
        let err = KeyDescription::parse(&description(&sw, &[])).unwrap_err();
        assert!(matches!(
            err,
            KeyDescriptionError::UnknownTag { tag: 600, .. }
        ));
    }

    #[test]
    fn rejects_wrong_types_and_implicit_tags() {
        // keySize as an OCTET STRING.
        let hw = ctx(3, &tlv(&[0x04], &[1]));
        assert!(matches!(
            KeyDescription::parse(&description(&[], &hw)),
            Err(KeyDescriptionError::Der { .. })
        ));
        // IMPLICIT (primitive) [3].
        let hw = tlv(&[0x83], &[1]);
        assert!(matches!(
            KeyDescription::parse(&description(&[], &hw)),
            Err(KeyDescriptionError::NotExplicitTag { .. })
        ));
        // Two values inside one EXPLICIT tag.
        let hw = ctx(3, &[int_der(1), int_der(2)].concat());
        assert!(KeyDescription::parse(&description(&[], &hw)).is_err());
        // noAuthRequired holding a BOOLEAN instead of NULL.
        let hw = ctx(503, &tlv(&[0x01], &[0xff]));
        assert!(KeyDescription::parse(&description(&[], &hw)).is_err());
        // Unknown origin.
        let hw = ctx(702, &int_der(9));
        assert!(matches!(
            KeyDescription::parse(&description(&[], &hw)),
            Err(KeyDescriptionError::UnknownValue { value: 9, .. })
        ));
        // Invalid UTF-8 brand.
        let hw = ctx(710, &tlv(&[0x04], &[0xff, 0xfe]));
        assert!(matches!(
            KeyDescription::parse(&description(&[], &hw)),
            Err(KeyDescriptionError::InvalidUtf8 { .. })
        ));
    }

    #[test]
    fn rejects_wrong_shapes() {
        let mut d = description(&[], &[]);
        d.push(0);
        assert!(KeyDescription::parse(&d).is_err());
        let seven = tlv(&[0x30], &int_der(1).repeat(7));
        assert!(matches!(
            KeyDescription::parse(&seven),
            Err(KeyDescriptionError::FieldCount(7))
        ));
        assert!(KeyDescription::parse(&[]).is_err());
        assert!(KeyDescription::parse(&[0x30]).is_err());
    }

    #[test]
    fn patch_levels_follow_the_reference_rules() {
        assert_eq!(
            PatchLevel::from_value(202_408),
            PatchLevel::Date {
                year: 2024,
                month: 8,
                day: None
            }
        );
        assert_eq!(
            PatchLevel::from_value(20_240_805)
                .to_reference_string()
                .as_deref(),
            Some("20240805")
        );
        for bad in [202_400, 202_413, 2_000_231, 0, -202_401, 20_241_301] {
            assert_eq!(
                PatchLevel::from_value(bad),
                PatchLevel::Unparsed(bad),
                "{bad}"
            );
        }
    }
}
