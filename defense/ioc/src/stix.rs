//! Reading one STIX 2.1 bundle: its indicators (with parsed patterns) and the collections
//! (`malware` and `report` objects) they belong to, through `report.object_refs` and
//! `relationship` objects from the indicator, as MVT groups them.
//!
//! A bundle that is not JSON, not a bundle, or holds an object without the fields it needs
//! fails with an error naming the source, the object's index and its id. Indicators whose
//! pattern is valid but not evaluable here (unknown types, unsupported operators, another
//! pattern language) are counted in [`BundleStats`], not silently dropped.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use thiserror::Error;

use crate::pattern::{Pattern, PatternError};

/// Why a bundle cannot be loaded.
#[derive(Debug, Error)]
pub enum StixError {
    /// The bytes are not JSON of the expected shape.
    #[error("{source_name}: not a JSON STIX bundle: {error}")]
    Json {
        /// File or feed entry the bundle came from.
        source_name: String,
        /// The parser's message (line and column).
        #[source]
        error: serde_json::Error,
    },
    /// The top-level object is not `"type": "bundle"`.
    #[error("{source_name}: not a STIX bundle (type {found:?})")]
    NotBundle {
        /// File or feed entry the bundle came from.
        source_name: String,
        /// The type found.
        found: String,
    },
    /// One object of the bundle is malformed.
    #[error("{source_name}: object #{index} ({id}): {problem}")]
    Object {
        /// File or feed entry the bundle came from.
        source_name: String,
        /// Index of the object in `objects`.
        index: usize,
        /// The object's `id`, or `(no id)`.
        id: String,
        /// What is wrong with it.
        #[source]
        problem: ObjectProblem,
    },
}

/// What is wrong with one bundle object.
#[derive(Debug, Error)]
pub enum ObjectProblem {
    /// A field is missing or has the wrong JSON type.
    #[error("bad or missing field: {0}")]
    Field(#[source] serde_json::Error),
    /// A required field is absent.
    #[error("missing {0}")]
    Missing(&'static str),
    /// The pattern is not a STIX pattern.
    #[error("malformed pattern: {0}")]
    Pattern(#[source] PatternError),
}

/// The kind of object a collection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CollectionKind {
    /// A `malware` object.
    Malware,
    /// A `report` object.
    Report,
    /// Indicators of the bundle that no malware or report claims.
    Unattributed,
}

/// A named group of indicators ("Pegasus", "Predator", ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawCollection {
    /// STIX id of the malware or report object (`unattributed` for the default one).
    pub id: String,
    /// Its name.
    pub name: String,
    /// What kind of object it is.
    pub kind: CollectionKind,
}

/// One usable indicator of a bundle.
#[derive(Debug, Clone)]
pub struct RawIndicator {
    /// STIX id.
    pub id: String,
    /// The pattern as written.
    pub pattern_text: String,
    /// The parsed pattern.
    pub pattern: Pattern,
    /// Indices into [`ParsedBundle::collections`].
    pub collections: Vec<usize>,
}

/// Counts of what a bundle held besides usable indicators.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BundleStats {
    /// Indicators loaded.
    pub indicators: usize,
    /// Indicators skipped because they are revoked.
    pub revoked: usize,
    /// Indicators with a pattern language other than STIX.
    pub other_pattern_types: usize,
    /// Indicators naming an object path this engine does not know, by path.
    pub unknown_types: BTreeMap<String, usize>,
    /// Indicators using a construct not evaluated here, by construct.
    pub unsupported: BTreeMap<String, usize>,
}

impl BundleStats {
    /// Adds another bundle's counts.
    pub fn add(&mut self, other: &BundleStats) {
        self.indicators += other.indicators;
        self.revoked += other.revoked;
        self.other_pattern_types += other.other_pattern_types;
        for (key, count) in &other.unknown_types {
            *self.unknown_types.entry(key.clone()).or_default() += count;
        }
        for (key, count) in &other.unsupported {
            *self.unsupported.entry(key.clone()).or_default() += count;
        }
    }
}

/// A bundle's indicators and collections.
#[derive(Debug, Clone, Default)]
pub struct ParsedBundle {
    /// Collections; the unattributed one is present only if some indicator needs it.
    pub collections: Vec<RawCollection>,
    /// Usable indicators.
    pub indicators: Vec<RawIndicator>,
    /// What was skipped and why.
    pub stats: BundleStats,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    objects: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Object {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
    name: Option<String>,
    pattern: Option<String>,
    pattern_type: Option<String>,
    #[serde(default)]
    revoked: bool,
    source_ref: Option<String>,
    target_ref: Option<String>,
    #[serde(default)]
    object_refs: Vec<String>,
}

#[derive(Deserialize)]
struct TypedEnvelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    objects: Vec<Object>,
}

/// Parses a bundle's JSON bytes. `source_name` appears in errors.
///
/// The common case decodes straight into typed objects; only when that fails is the bundle
/// decoded again object by object, to name the one at fault.
pub fn parse_bundle(source_name: &str, bytes: &[u8]) -> Result<ParsedBundle, StixError> {
    if let Ok(typed) = serde_json::from_slice::<TypedEnvelope>(bytes) {
        return parse_objects(
            source_name,
            typed.kind,
            typed.objects.into_iter().map(|object| {
                let id = object.id.clone();
                (Ok(object), id)
            }),
        );
    }
    let envelope: Envelope = serde_json::from_slice(bytes).map_err(|error| StixError::Json {
        source_name: source_name.to_owned(),
        error,
    })?;
    parse_envelope(source_name, envelope)
}

/// Parses a bundle already read as a JSON value (one entry of a signed feed).
pub fn parse_bundle_value(
    source_name: &str,
    value: serde_json::Value,
) -> Result<ParsedBundle, StixError> {
    let envelope = Envelope::deserialize(value).map_err(|error| StixError::Json {
        source_name: source_name.to_owned(),
        error,
    })?;
    parse_envelope(source_name, envelope)
}

fn parse_envelope(source_name: &str, envelope: Envelope) -> Result<ParsedBundle, StixError> {
    parse_objects(
        source_name,
        envelope.kind,
        envelope.objects.into_iter().map(|value| {
            let id = value
                .get("id")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned);
            (Object::deserialize(value), id)
        }),
    )
}

/// Objects as decoded (or the decoding error), each with its id when one could be read.
fn parse_objects(
    source_name: &str,
    kind: String,
    objects: impl Iterator<Item = (Result<Object, serde_json::Error>, Option<String>)>,
) -> Result<ParsedBundle, StixError> {
    if kind != "bundle" {
        return Err(StixError::NotBundle {
            source_name: source_name.to_owned(),
            found: kind,
        });
    }
    let fail = |index: usize, id: Option<&str>, problem: ObjectProblem| StixError::Object {
        source_name: source_name.to_owned(),
        index,
        id: id.unwrap_or("(no id)").to_owned(),
        problem,
    };

    let mut bundle = ParsedBundle::default();
    let mut collection_of: HashMap<String, usize> = HashMap::new();
    let mut report_refs: Vec<(usize, Vec<String>)> = Vec::new();
    let mut relationships: Vec<(String, String)> = Vec::new();
    let mut indicators: Vec<(usize, Object)> = Vec::new();

    for (index, (object, id_hint)) in objects.enumerate() {
        let object =
            object.map_err(|error| fail(index, id_hint.as_deref(), ObjectProblem::Field(error)))?;
        let Some(id) = object.id.clone() else {
            return Err(fail(index, None, ObjectProblem::Missing("id")));
        };
        match object.kind.as_str() {
            "malware" | "report" => {
                let kind = if object.kind == "malware" {
                    CollectionKind::Malware
                } else {
                    CollectionKind::Report
                };
                let name = object.name.clone().unwrap_or_else(|| id.clone());
                collection_of.insert(id.clone(), bundle.collections.len());
                if kind == CollectionKind::Report {
                    report_refs.push((bundle.collections.len(), object.object_refs));
                }
                bundle.collections.push(RawCollection { id, name, kind });
            }
            "relationship" => {
                let (Some(source), Some(target)) = (object.source_ref, object.target_ref) else {
                    return Err(fail(
                        index,
                        Some(&id),
                        ObjectProblem::Missing("source_ref or target_ref"),
                    ));
                };
                relationships.push((source, target));
            }
            "indicator" => {
                if object.pattern.is_none() {
                    return Err(fail(index, Some(&id), ObjectProblem::Missing("pattern")));
                }
                indicators.push((index, object));
            }
            _ => {}
        }
    }

    let mut membership: HashMap<&str, Vec<usize>> = HashMap::new();
    for (collection, refs) in &report_refs {
        for reference in refs {
            membership.entry(reference).or_default().push(*collection);
        }
    }
    for (source, target) in &relationships {
        if let Some(collection) = collection_of.get(target) {
            let entry = membership.entry(source).or_default();
            if !entry.contains(collection) {
                entry.push(*collection);
            }
        }
    }

    let mut unattributed: Option<usize> = None;
    for (index, object) in indicators {
        let id = object.id.unwrap_or_default();
        let pattern_text = object.pattern.unwrap_or_default();
        if object.revoked {
            bundle.stats.revoked += 1;
            continue;
        }
        if object
            .pattern_type
            .as_deref()
            .is_some_and(|kind| kind != "stix")
        {
            bundle.stats.other_pattern_types += 1;
            continue;
        }
        let pattern = match Pattern::parse(&pattern_text) {
            Ok(pattern) => pattern,
            Err(PatternError::UnknownType(path)) => {
                *bundle.stats.unknown_types.entry(path).or_default() += 1;
                continue;
            }
            Err(PatternError::Unsupported(what)) => {
                *bundle.stats.unsupported.entry(what).or_default() += 1;
                continue;
            }
            Err(PatternError::TooComplex) => {
                *bundle
                    .stats
                    .unsupported
                    .entry("too many alternatives".to_owned())
                    .or_default() += 1;
                continue;
            }
            Err(error @ PatternError::Syntax { .. }) => {
                return Err(fail(index, Some(&id), ObjectProblem::Pattern(error)));
            }
        };
        let collections = match membership.get(id.as_str()) {
            Some(collections) if !collections.is_empty() => collections.clone(),
            _ => {
                let default = *unattributed.get_or_insert_with(|| {
                    bundle.collections.push(RawCollection {
                        id: "unattributed".to_owned(),
                        name: format!("Unattributed ({source_name})"),
                        kind: CollectionKind::Unattributed,
                    });
                    bundle.collections.len() - 1
                });
                vec![default]
            }
        };
        bundle.stats.indicators += 1;
        bundle.indicators.push(RawIndicator {
            id,
            pattern_text,
            pattern,
            collections,
        });
    }
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(objects: &str) -> Vec<u8> {
        format!(r#"{{"type":"bundle","id":"bundle--1","objects":[{objects}]}}"#).into_bytes()
    }

    const MALWARE: &str = r#"{"type":"malware","id":"malware--1","name":"Evil"}"#;

    fn indicator(id: &str, pattern: &str) -> String {
        format!(
            r#"{{"type":"indicator","id":"{id}","pattern":{},"pattern_type":"stix"}}"#,
            serde_json::Value::String(pattern.to_owned())
        )
    }

    #[test]
    fn indicators_join_collections_through_relationships_and_reports() {
        let objects = [
            MALWARE.to_owned(),
            r#"{"type":"report","id":"report--1","name":"Campaign X","object_refs":["indicator--2"]}"#.to_owned(),
            indicator("indicator--1", "[domain-name:value='a.com']"),
            indicator("indicator--2", "[process:name='p']"),
            indicator("indicator--3", "[file:name='orphan']"),
            r#"{"type":"relationship","id":"relationship--1","relationship_type":"indicates","source_ref":"indicator--1","target_ref":"malware--1"}"#.to_owned(),
            r#"{"type":"relationship","id":"relationship--2","relationship_type":"indicates","source_ref":"indicator--2","target_ref":"malware--1"}"#.to_owned(),
        ]
        .join(",");
        let parsed = parse_bundle("t.stix2", &bundle(&objects)).unwrap();
        let names = |i: usize| -> Vec<&str> {
            parsed.indicators[i]
                .collections
                .iter()
                .map(|c| parsed.collections[*c].name.as_str())
                .collect()
        };
        assert_eq!(parsed.indicators.len(), 3);
        assert_eq!(names(0), ["Evil"]);
        assert_eq!(names(1), ["Campaign X", "Evil"]);
        assert_eq!(names(2), ["Unattributed (t.stix2)"]);
        assert_eq!(parsed.stats.indicators, 3);
    }

    #[test]
    fn unknown_and_unsupported_indicators_are_counted_not_loaded() {
        let objects = [
            indicator("indicator--1", "[mutex:name='m']"),
            indicator("indicator--2", "[mutex:name='n']"),
            indicator("indicator--3", "[file:name MATCHES '^x']"),
            r#"{"type":"indicator","id":"indicator--4","pattern":"rule x {}","pattern_type":"yara"}"#.to_owned(),
            r#"{"type":"indicator","id":"indicator--5","pattern":"[file:name='x']","revoked":true}"#.to_owned(),
            indicator("indicator--6", "[file:name='ok']"),
        ]
        .join(",");
        let parsed = parse_bundle("t", &bundle(&objects)).unwrap();
        assert_eq!(parsed.indicators.len(), 1);
        assert_eq!(parsed.stats.unknown_types.get("mutex:name"), Some(&2));
        assert_eq!(parsed.stats.unsupported.get("MATCHES"), Some(&1));
        assert_eq!(parsed.stats.other_pattern_types, 1);
        assert_eq!(parsed.stats.revoked, 1);
    }

    #[test]
    fn malformed_bundles_name_the_object() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"{not json".to_vec(), "t: not a JSON STIX bundle"),
            (
                br#"{"type":"indicator"}"#.to_vec(),
                "t: not a STIX bundle (type \"indicator\")",
            ),
            (
                bundle(&format!(
                    "{MALWARE},{}",
                    indicator("indicator--9", "[domain-name:value='a.com'")
                )),
                "t: object #1 (indicator--9): malformed pattern: syntax error at byte 26: expected ']'",
            ),
            (
                bundle(r#"{"type":"indicator","id":"indicator--7"}"#),
                "t: object #0 (indicator--7): missing pattern",
            ),
            (
                bundle(r#"{"type":"indicator","pattern":"[file:name='x']"}"#),
                "t: object #0 ((no id)): missing id",
            ),
            (
                bundle(r#"{"type":"indicator","id":"indicator--8","pattern":5}"#),
                "t: object #0 (indicator--8): bad or missing field",
            ),
            (
                bundle(r#"{"type":"relationship","id":"relationship--3","source_ref":"x"}"#),
                "t: object #0 (relationship--3): missing source_ref or target_ref",
            ),
        ];
        for (bytes, expected) in cases {
            let error = parse_bundle("t", &bytes).unwrap_err().to_string();
            assert!(
                error.starts_with(expected),
                "{error} should start with {expected}"
            );
        }
    }
}
