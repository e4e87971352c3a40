//! A small, strict DER reader: just enough ASN.1 to read the KeyDescription extension and to walk
//! an X.509 certificate to its extensions.
//!
//! Rules (a subset of X.690 DER, matching what Google's reference verifier accepts or stricter):
//! - definite lengths only, in the shortest form (no `0x80` indefinite length, no long form for
//!   lengths below 128, no leading zero length octets, at most 4 length octets);
//! - tag numbers in the shortest form (high-tag-number form only for tags ≥ 31, no leading
//!   `0x80` octets);
//! - INTEGER and ENUMERATED contents non-empty and minimal (no redundant leading `0x00`/`0xFF`);
//! - OCTET STRING, INTEGER, ENUMERATED, BOOLEAN and NULL primitive; SEQUENCE and SET constructed;
//! - BOOLEAN exactly one octet; like the reference verifier, any non-zero octet reads as TRUE
//!   (some devices encode TRUE as `0x01`);
//! - every value must be consumed exactly: no trailing bytes anywhere.
//!
//! Errors carry the byte offset (relative to the start of the outermost input) where they occurred.
//! Nothing here panics on any input: all indexing is checked.

use std::fmt;

/// Why a DER input was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DER error at byte {offset}: {kind}")]
pub struct DerError {
    /// Byte offset from the start of the outermost input.
    pub offset: usize,
    /// What was wrong.
    pub kind: DerErrorKind,
}

/// The kinds of DER violations the reader detects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DerErrorKind {
    /// The input ended inside an element.
    Truncated,
    /// Indefinite-length encoding (BER only).
    IndefiniteLength,
    /// A length encoded in more octets than needed.
    NonMinimalLength,
    /// A length of more than 4 octets.
    LengthTooLong,
    /// A tag number encoded in more octets than needed, or a too large tag number.
    BadTagNumber,
    /// An element with a different tag than expected.
    UnexpectedTag {
        /// What the reader expected, e.g. "INTEGER".
        expected: &'static str,
        /// What it found.
        found: TagDesc,
    },
    /// A primitive type encoded as constructed or vice versa.
    WrongConstruction,
    /// An INTEGER or ENUMERATED that is empty or has redundant leading octets.
    NonMinimalInteger,
    /// An INTEGER that does not fit the 128-bit range this crate uses.
    IntegerTooLarge,
    /// A BOOLEAN whose contents are not exactly one octet.
    BadBoolean,
    /// A NULL with contents.
    BadNull,
    /// Bytes left over after the last expected element.
    TrailingData,
}

impl fmt::Display for DerErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("input truncated"),
            Self::IndefiniteLength => f.write_str("indefinite length is not allowed in DER"),
            Self::NonMinimalLength => f.write_str("length is not minimally encoded"),
            Self::LengthTooLong => f.write_str("length of more than 4 octets"),
            Self::BadTagNumber => f.write_str("tag number is not minimally encoded or too large"),
            Self::UnexpectedTag { expected, found } => {
                write!(f, "expected {expected}, found {found}")
            }
            Self::WrongConstruction => f.write_str("wrong primitive/constructed form"),
            Self::NonMinimalInteger => f.write_str("INTEGER/ENUMERATED is empty or not minimal"),
            Self::IntegerTooLarge => f.write_str("INTEGER does not fit in 128 bits"),
            Self::BadBoolean => f.write_str("BOOLEAN must have exactly one content octet"),
            Self::BadNull => f.write_str("NULL must be empty"),
            Self::TrailingData => f.write_str("trailing data after the last element"),
        }
    }
}

/// ASN.1 tag class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Universal (built-in types).
    Universal,
    /// Application-specific.
    Application,
    /// Context-specific (`[n]`).
    Context,
    /// Private.
    Private,
}

/// A tag as found in the input, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagDesc {
    /// Tag class.
    pub class: Class,
    /// Constructed bit.
    pub constructed: bool,
    /// Tag number.
    pub number: u32,
}

impl fmt::Display for TagDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let form = if self.constructed {
            "constructed"
        } else {
            "primitive"
        };
        match self.class {
            Class::Universal => {
                let name = match self.number {
                    1 => "BOOLEAN",
                    2 => "INTEGER",
                    3 => "BIT STRING",
                    4 => "OCTET STRING",
                    5 => "NULL",
                    6 => "OBJECT IDENTIFIER",
                    10 => "ENUMERATED",
                    12 => "UTF8String",
                    16 => "SEQUENCE",
                    17 => "SET",
                    _ => return write!(f, "universal tag {} ({form})", self.number),
                };
                write!(f, "{name} ({form})")
            }
            Class::Application => write!(f, "[APPLICATION {}] ({form})", self.number),
            Class::Context => write!(f, "[{}] ({form})", self.number),
            Class::Private => write!(f, "[PRIVATE {}] ({form})", self.number),
        }
    }
}

/// Universal tag numbers used by this crate.
pub mod tag {
    /// BOOLEAN.
    pub const BOOLEAN: u32 = 1;
    /// INTEGER.
    pub const INTEGER: u32 = 2;
    /// OCTET STRING.
    pub const OCTET_STRING: u32 = 4;
    /// NULL.
    pub const NULL: u32 = 5;
    /// OBJECT IDENTIFIER.
    pub const OID: u32 = 6;
    /// ENUMERATED.
    pub const ENUMERATED: u32 = 10;
    /// SEQUENCE / SEQUENCE OF.
    pub const SEQUENCE: u32 = 16;
    /// SET / SET OF.
    pub const SET: u32 = 17;
}

/// One element: tag, and the contents octets.
#[derive(Debug, Clone, Copy)]
pub struct Tlv<'a> {
    /// The tag.
    pub tag: TagDesc,
    /// Contents octets (without tag and length).
    pub value: &'a [u8],
    /// The whole element, tag and length included.
    pub raw: &'a [u8],
    /// Offset of the element's first byte in the outermost input.
    pub offset: usize,
    /// Offset of the contents in the outermost input.
    pub value_offset: usize,
}

/// A cursor over a sequence of DER elements.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader over a whole input (offsets start at 0).
    pub fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            base: 0,
        }
    }

    fn at(data: &'a [u8], base: usize) -> Self {
        Self { data, pos: 0, base }
    }

    fn err(&self, kind: DerErrorKind) -> DerError {
        DerError {
            offset: self.base + self.pos,
            kind,
        }
    }

    /// True when every element has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// Fails with [`DerErrorKind::TrailingData`] unless every element has been read.
    pub fn finish(&self) -> Result<(), DerError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.err(DerErrorKind::TrailingData))
        }
    }

    fn byte(&mut self) -> Result<u8, DerError> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or_else(|| self.err(DerErrorKind::Truncated))?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads the next element.
    pub fn read(&mut self) -> Result<Tlv<'a>, DerError> {
        let start = self.pos;
        let first = self.byte()?;
        let class = match first >> 6 {
            0 => Class::Universal,
            1 => Class::Application,
            2 => Class::Context,
            _ => Class::Private,
        };
        let constructed = first & 0x20 != 0;
        let mut number = u32::from(first & 0x1f);
        if number == 0x1f {
            // High-tag-number form: base-128, no leading 0x80, at most 4 octets (28 bits).
            number = 0;
            let mut count = 0;
            loop {
                let b = self.byte()?;
                if count == 0 && b == 0x80 {
                    return Err(self.err(DerErrorKind::BadTagNumber));
                }
                count += 1;
                if count > 4 {
                    return Err(self.err(DerErrorKind::BadTagNumber));
                }
                number = (number << 7) | u32::from(b & 0x7f);
                if b & 0x80 == 0 {
                    break;
                }
            }
            if number < 0x1f {
                return Err(self.err(DerErrorKind::BadTagNumber));
            }
        }
        let len_first = self.byte()?;
        let len = if len_first < 0x80 {
            usize::from(len_first)
        } else if len_first == 0x80 {
            return Err(self.err(DerErrorKind::IndefiniteLength));
        } else {
            let n = usize::from(len_first & 0x7f);
            if n > 4 {
                return Err(self.err(DerErrorKind::LengthTooLong));
            }
            let mut len: usize = 0;
            for i in 0..n {
                let b = self.byte()?;
                if i == 0 && b == 0 {
                    return Err(self.err(DerErrorKind::NonMinimalLength));
                }
                len = (len << 8) | usize::from(b);
            }
            if len < 0x80 {
                return Err(self.err(DerErrorKind::NonMinimalLength));
            }
            len
        };
        let value_start = self.pos;
        let end = value_start
            .checked_add(len)
            .filter(|end| *end <= self.data.len())
            .ok_or_else(|| self.err(DerErrorKind::Truncated))?;
        let value = self
            .data
            .get(value_start..end)
            .ok_or_else(|| self.err(DerErrorKind::Truncated))?;
        let raw = self
            .data
            .get(start..end)
            .ok_or_else(|| self.err(DerErrorKind::Truncated))?;
        self.pos = end;
        Ok(Tlv {
            tag: TagDesc {
                class,
                constructed,
                number,
            },
            value,
            raw,
            offset: self.base + start,
            value_offset: self.base + value_start,
        })
    }

    /// Reads the next element, which must be the universal type `number`.
    pub fn read_universal(&mut self, number: u32, name: &'static str) -> Result<Tlv<'a>, DerError> {
        let tlv = self.read()?;
        tlv.expect_universal(number, name)?;
        Ok(tlv)
    }

    /// Peeks at the next element's tag without consuming it.
    pub fn peek_tag(&self) -> Option<TagDesc> {
        self.clone().read().ok().map(|t| t.tag)
    }

    /// Reads a SEQUENCE and returns a reader over its elements.
    pub fn read_sequence(&mut self) -> Result<Reader<'a>, DerError> {
        self.read_universal(tag::SEQUENCE, "SEQUENCE")?.contents()
    }

    /// Reads a SET and returns a reader over its elements.
    pub fn read_set(&mut self) -> Result<Reader<'a>, DerError> {
        self.read_universal(tag::SET, "SET")?.contents()
    }

    /// Reads an INTEGER that fits in an `i128`.
    pub fn read_integer(&mut self) -> Result<i128, DerError> {
        self.read_universal(tag::INTEGER, "INTEGER")?.integer()
    }

    /// Reads an ENUMERATED that fits in an `i128`.
    pub fn read_enumerated(&mut self) -> Result<i128, DerError> {
        self.read_universal(tag::ENUMERATED, "ENUMERATED")?
            .integer()
    }

    /// Reads an OCTET STRING.
    pub fn read_octet_string(&mut self) -> Result<&'a [u8], DerError> {
        Ok(self
            .read_universal(tag::OCTET_STRING, "OCTET STRING")?
            .value)
    }

    /// Reads a BOOLEAN.
    pub fn read_boolean(&mut self) -> Result<bool, DerError> {
        self.read_universal(tag::BOOLEAN, "BOOLEAN")?.boolean()
    }
}

impl<'a> Tlv<'a> {
    fn err(&self, kind: DerErrorKind) -> DerError {
        DerError {
            offset: self.offset,
            kind,
        }
    }

    /// True when the tag is universal `number` (any form).
    pub fn is_universal(&self, number: u32) -> bool {
        self.tag.class == Class::Universal && self.tag.number == number
    }

    /// Checks the tag is universal `number` in its DER form (SEQUENCE/SET constructed, the rest
    /// primitive).
    pub fn expect_universal(&self, number: u32, name: &'static str) -> Result<(), DerError> {
        if !self.is_universal(number) {
            return Err(self.err(DerErrorKind::UnexpectedTag {
                expected: name,
                found: self.tag,
            }));
        }
        let must_construct = number == tag::SEQUENCE || number == tag::SET;
        if self.tag.constructed != must_construct {
            return Err(self.err(DerErrorKind::WrongConstruction));
        }
        Ok(())
    }

    /// A reader over the contents (for constructed elements).
    pub fn contents(&self) -> Result<Reader<'a>, DerError> {
        if !self.tag.constructed {
            return Err(self.err(DerErrorKind::WrongConstruction));
        }
        Ok(Reader::at(self.value, self.value_offset))
    }

    /// The contents of an INTEGER/ENUMERATED as a minimal two's-complement `i128`.
    pub fn integer(&self) -> Result<i128, DerError> {
        check_minimal_integer(self.value).map_err(|k| self.err(k))?;
        if self.value.len() > 16 {
            return Err(self.err(DerErrorKind::IntegerTooLarge));
        }
        let negative = self.value.first().is_some_and(|b| b & 0x80 != 0);
        let mut acc: i128 = if negative { -1 } else { 0 };
        for b in self.value {
            acc = (acc << 8) | i128::from(*b);
        }
        Ok(acc)
    }

    /// The contents of a BOOLEAN (any non-zero octet is TRUE).
    pub fn boolean(&self) -> Result<bool, DerError> {
        match self.value {
            [b] => Ok(*b != 0),
            _ => Err(self.err(DerErrorKind::BadBoolean)),
        }
    }

    /// Checks this is a DER NULL.
    pub fn null(&self) -> Result<(), DerError> {
        self.expect_universal(tag::NULL, "NULL")?;
        if self.value.is_empty() {
            Ok(())
        } else {
            Err(self.err(DerErrorKind::BadNull))
        }
    }
}

fn check_minimal_integer(v: &[u8]) -> Result<(), DerErrorKind> {
    match v {
        [] => Err(DerErrorKind::NonMinimalInteger),
        [0x00, b, ..] if b & 0x80 == 0 => Err(DerErrorKind::NonMinimalInteger),
        [0xff, b, ..] if b & 0x80 != 0 => Err(DerErrorKind::NonMinimalInteger),
        _ => Ok(()),
    }
}

/// Parses `data` as exactly one element (no trailing bytes).
pub fn parse_single(data: &[u8]) -> Result<Tlv<'_>, DerError> {
    let mut r = Reader::new(data);
    let tlv = r.read()?;
    r.finish()?;
    Ok(tlv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(data: &[u8]) -> DerErrorKind {
        match parse_single(data) {
            Err(e) => e.kind,
            Ok(t) => panic!("accepted {t:?}"),
        }
    }

    #[test]
    fn lengths_must_be_definite_and_minimal() {
        assert_eq!(
            kind(&[0x30, 0x80, 0x00, 0x00]),
            DerErrorKind::IndefiniteLength
        );
        assert_eq!(
            kind(&[0x04, 0x81, 0x01, 0xaa]),
            DerErrorKind::NonMinimalLength
        );
        let mut long = vec![0x04, 0x82, 0x00, 0x80];
        long.extend([0u8; 0x80]);
        assert_eq!(kind(&long), DerErrorKind::NonMinimalLength);
        assert_eq!(
            kind(&[0x04, 0x85, 1, 1, 1, 1, 1]),
            DerErrorKind::LengthTooLong
        );
        assert_eq!(
            kind(&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff]),
            DerErrorKind::Truncated
        );
        assert_eq!(kind(&[0x04, 0x02, 0x01]), DerErrorKind::Truncated);
        assert_eq!(kind(&[0x04, 0x01, 0x01, 0x00]), DerErrorKind::TrailingData);
        let mut ok = vec![0x04, 0x81, 0x80];
        ok.extend([7u8; 0x80]);
        assert_eq!(parse_single(&ok).map(|t| t.value.len()), Ok(0x80));
    }

    #[test]
    fn tag_numbers_must_be_minimal() {
        // [1] in high-tag form.
        assert_eq!(kind(&[0xbf, 0x01, 0x00]), DerErrorKind::BadTagNumber);
        // Leading 0x80 in a high tag number.
        assert_eq!(
            kind(&[0xbf, 0x80, 0x85, 0x3f, 0x00]),
            DerErrorKind::BadTagNumber
        );
        // [709] = 0x05 0x45 in base 128.
        let t = parse_single(&[0xbf, 0x85, 0x45, 0x00]).map(|t| t.tag);
        assert_eq!(
            t,
            Ok(TagDesc {
                class: Class::Context,
                constructed: true,
                number: 709
            })
        );
    }

    #[test]
    fn integers_must_be_minimal() {
        let int = |v: &[u8]| {
            let mut d = vec![0x02, u8::try_from(v.len()).unwrap_or(0)];
            d.extend_from_slice(v);
            parse_single(&d).and_then(|t| t.integer())
        };
        assert_eq!(int(&[0x00]), Ok(0));
        assert_eq!(int(&[0x7f]), Ok(127));
        assert_eq!(int(&[0x00, 0x80]), Ok(128));
        assert_eq!(int(&[0xff]), Ok(-1));
        assert_eq!(int(&[0x80]), Ok(-128));
        assert_eq!(int(&[0x01, 0x00, 0x01]), Ok(65537));
        assert!(int(&[]).is_err());
        assert!(int(&[0x00, 0x7f]).is_err());
        assert!(int(&[0xff, 0x80]).is_err());
        assert!(int(&[0x01; 17]).is_err());
        assert_eq!(int(&[0x7f; 16]).map(|v| v > 0), Ok(true));
    }

    #[test]
    fn booleans_and_nulls() {
        assert_eq!(
            parse_single(&[0x01, 0x01, 0xff]).and_then(|t| t.boolean()),
            Ok(true)
        );
        assert_eq!(
            parse_single(&[0x01, 0x01, 0x01]).and_then(|t| t.boolean()),
            Ok(true)
        );
        assert_eq!(
            parse_single(&[0x01, 0x01, 0x00]).and_then(|t| t.boolean()),
            Ok(false)
        );
        assert!(
            parse_single(&[0x01, 0x02, 0x00, 0x00])
                .and_then(|t| t.boolean())
                .is_err()
        );
        assert!(parse_single(&[0x05, 0x00]).and_then(|t| t.null()).is_ok());
        assert!(
            parse_single(&[0x05, 0x01, 0x00])
                .and_then(|t| t.null())
                .is_err()
        );
    }

    #[test]
    fn construction_is_checked() {
        let mut r = Reader::new(&[0x10, 0x00]);
        assert!(r.read_sequence().is_err());
        let mut r = Reader::new(&[0x24, 0x00]);
        assert!(r.read_octet_string().is_err());
        let mut r = Reader::new(&[0x30, 0x03, 0x02, 0x01, 0x05]);
        let mut seq = r.read_sequence().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(seq.read_integer(), Ok(5));
        assert!(seq.finish().is_ok());
        assert!(r.finish().is_ok());
    }
}
