//! The compiled indicator database: every bracket clause of every indicator indexed by one of
//! its comparisons, so matching an observation is a few hash lookups — domains through their
//! parent domains (one lookup per label), paths through their parent directories, truncated
//! process names through a prefix table — followed by a check of the clause's other
//! comparisons. Free text (DNS logs) goes through an Aho-Corasick automaton of every domain
//! indicator first ([`crate::domain_text`]).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::attribute::Attribute;
use crate::domain_text::DomainText;
use crate::observation::Observation;
use crate::pattern::{Comparison, is_truncated_process_name, parse_cidr};
use crate::stix::{BundleStats, CollectionKind, ParsedBundle};

/// A named group of indicators, e.g. "Pegasus".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Collection {
    /// STIX id of its malware or report object.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Malware, report, or the unattributed rest of a bundle.
    pub kind: CollectionKind,
    /// The bundle it came from.
    pub source: String,
}

/// One indicator as loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indicator {
    /// STIX id.
    pub id: String,
    /// The pattern as written.
    pub pattern: String,
    /// Indices into [`IocDb::collections`].
    pub collections: Vec<u32>,
    /// The attributes its pattern compares.
    pub attributes: Vec<Attribute>,
    /// Number of brackets of each alternative.
    alternative_brackets: Vec<u16>,
}

/// One bracket clause of one indicator matched one observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hit {
    /// Index into [`IocDb::indicators`].
    pub indicator: u32,
    /// Which alternative of the pattern.
    pub alternative: u16,
    /// Which bracket of that alternative.
    pub bracket: u16,
}

/// An indicator whose pattern is satisfied by a set of hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Satisfied {
    /// Index into [`IocDb::indicators`].
    pub indicator: u32,
    /// Positions, in the slice given to [`IocDb::resolve`], of the hits that satisfy it.
    pub hits: Vec<usize>,
}

/// What was loaded, for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LoadStats {
    /// Bundles read.
    pub bundles: usize,
    /// Collections.
    pub collections: usize,
    /// Comparisons loaded, by attribute.
    pub by_type: BTreeMap<Attribute, usize>,
    /// Indicators loaded and what was skipped.
    #[serde(flatten)]
    pub skipped: BundleStats,
}

#[derive(Debug, Clone)]
struct Clause {
    hit: Hit,
    comparisons: Box<[Comparison]>,
}

/// The compiled indicators.
#[derive(Debug, Default)]
pub struct IocDb {
    collections: Vec<Collection>,
    indicators: Vec<Indicator>,
    clauses: Vec<Clause>,
    /// Per attribute: key comparison value → clauses.
    index: Vec<HashMap<Box<str>, Vec<u32>>>,
    /// Process names longer than a truncated `comm`: their 15- and 16-byte prefixes → clauses.
    truncated_processes: HashMap<Box<str>, Vec<u32>>,
    /// IPv4 CIDR blocks → clause.
    cidrs: Vec<(u32, u8, u32)>,
    domain_text: DomainText,
    stats: LoadStats,
}

/// Builds an [`IocDb`] from parsed bundles.
#[derive(Debug, Default)]
pub struct IocDbBuilder {
    db: IocDb,
}

impl IocDbBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self {
            db: IocDb {
                index: vec![HashMap::new(); Attribute::ALL.len()],
                ..IocDb::default()
            },
        }
    }

    /// Adds one bundle's indicators; `source` names it in collections.
    pub fn add_bundle(&mut self, source: &str, bundle: ParsedBundle) -> &mut Self {
        let db = &mut self.db;
        db.stats.bundles += 1;
        db.stats.skipped.add(&bundle.stats);
        let base = db.collections.len();
        for collection in bundle.collections {
            db.collections.push(Collection {
                id: collection.id,
                name: collection.name,
                kind: collection.kind,
                source: source.to_owned(),
            });
        }
        for raw in bundle.indicators {
            let indicator_index = db.indicators.len() as u32;
            let mut alternative_brackets = Vec::new();
            for (alternative, brackets) in raw.pattern.alternatives.iter().enumerate() {
                alternative_brackets.push(brackets.len() as u16);
                for (bracket, clauses) in brackets.iter().enumerate() {
                    for clause in &clauses.clauses {
                        for comparison in clause {
                            *db.stats.by_type.entry(comparison.attribute).or_default() += 1;
                        }
                        db.add_clause(
                            Hit {
                                indicator: indicator_index,
                                alternative: alternative as u16,
                                bracket: bracket as u16,
                            },
                            clause,
                        );
                    }
                }
            }
            let mut attributes: Vec<Attribute> =
                raw.pattern.comparisons().map(|c| c.attribute).collect();
            attributes.sort();
            attributes.dedup();
            db.indicators.push(Indicator {
                attributes,
                id: raw.id,
                pattern: raw.pattern_text,
                collections: raw.collections.iter().map(|c| (base + c) as u32).collect(),
                alternative_brackets,
            });
        }
        self
    }

    /// The finished database.
    pub fn build(mut self) -> IocDb {
        let domains = self.db.index[Attribute::DomainName.index()]
            .keys()
            .map(|key| key.to_string())
            .collect::<Vec<_>>();
        self.db.domain_text = DomainText::new(&domains);
        self.db.stats.collections = self.db.collections.len();
        self.db
    }
}

impl IocDb {
    fn add_clause(&mut self, hit: Hit, clause: &[Comparison]) {
        let Some(key) = pick_key(clause) else {
            return;
        };
        let id = self.clauses.len() as u32;
        let value = key.value.clone();
        match key.attribute {
            Attribute::Ipv4Addr if value.contains('/') => {
                if let Some((network, bits)) = parse_cidr(&value) {
                    self.cidrs.push((network, bits, id));
                }
            }
            Attribute::ProcessName => {
                for len in [15, 16] {
                    if value.len() > len && value.is_char_boundary(len) {
                        self.truncated_processes
                            .entry(value[..len].into())
                            .or_default()
                            .push(id);
                    }
                }
                self.index[key.attribute.index()]
                    .entry(value)
                    .or_default()
                    .push(id);
            }
            _ => self.index[key.attribute.index()]
                .entry(value)
                .or_default()
                .push(id),
        }
        self.clauses.push(Clause {
            hit,
            comparisons: clause.into(),
        });
    }

    /// Collections, indexed by [`Indicator::collections`].
    pub fn collections(&self) -> &[Collection] {
        &self.collections
    }

    /// Indicators, indexed by [`Hit::indicator`].
    pub fn indicators(&self) -> &[Indicator] {
        &self.indicators
    }

    /// What was loaded and skipped.
    pub fn stats(&self) -> &LoadStats {
        &self.stats
    }

    /// Whether any indicator compares this attribute (scanners skip work nobody asks for,
    /// e.g. hashing files when no hash indicator is loaded).
    pub fn wants(&self, attribute: Attribute) -> bool {
        self.stats.by_type.contains_key(&attribute)
    }

    /// The key values indexed for an attribute (e.g. every `file:path` an indicator names,
    /// for scanners that check them directly).
    pub fn values_of(&self, attribute: Attribute) -> impl Iterator<Item = &str> {
        self.index
            .get(attribute.index())
            .into_iter()
            .flat_map(|index| index.keys().map(|key| &**key))
    }

    /// Whether a hit alone satisfies its indicator (its alternative has one bracket).
    pub fn is_complete(&self, hit: Hit) -> bool {
        self.indicators
            .get(hit.indicator as usize)
            .and_then(|indicator| indicator.alternative_brackets.get(hit.alternative as usize))
            == Some(&1)
    }

    /// Adds to `hits` every bracket clause that `observation` satisfies (each once).
    pub fn match_observation(&self, observation: &Observation<'_>, hits: &mut Vec<Hit>) {
        let start = hits.len();
        for (attribute, value) in observation.values() {
            self.candidates(*attribute, value, |clause| {
                if clause
                    .comparisons
                    .iter()
                    .all(|c| observation.values_of(c.attribute).any(|v| c.matches(v)))
                    && !hits[start..].contains(&clause.hit)
                {
                    hits.push(clause.hit);
                }
            });
        }
    }

    /// Matches a single value (an observation with one attribute): the fast path for domains,
    /// process names and addresses.
    pub fn match_value(&self, attribute: Attribute, value: &str, hits: &mut Vec<Hit>) {
        let normalized = attribute.normalize(value);
        let start = hits.len();
        self.candidates(attribute, &normalized, |clause| {
            if clause.comparisons.len() == 1 && !hits[start..].contains(&clause.hit) {
                hits.push(clause.hit);
            }
        });
        if attribute == Attribute::Url {
            let observation = Observation::single(attribute, value);
            for (host_attribute, host) in observation.values() {
                if *host_attribute != Attribute::Url {
                    self.match_value(*host_attribute, host, hits);
                }
            }
        }
    }

    /// Hostnames in free text (a DNS log line) that some domain indicator matches.
    pub fn domains_in_text<'t>(&self, text: &'t str) -> Vec<&'t str> {
        self.domain_text.candidates(text)
    }

    /// Clauses whose key comparison `value` (normalized) satisfies.
    fn candidates(&self, attribute: Attribute, value: &str, mut visit: impl FnMut(&Clause)) {
        let index = &self.index[attribute.index()];
        let mut visit_ids = |ids: Option<&[u32]>| {
            for id in ids.into_iter().flatten() {
                if let Some(clause) = self.clauses.get(*id as usize) {
                    visit(clause);
                }
            }
        };
        match attribute {
            Attribute::DomainName => {
                visit_ids(index.get(value).map(Vec::as_slice));
                for (at, byte) in value.bytes().enumerate() {
                    if byte == b'.' && at + 1 < value.len() {
                        visit_ids(index.get(&value[at + 1..]).map(Vec::as_slice));
                    }
                }
            }
            Attribute::FilePath => {
                visit_ids(index.get(value).map(Vec::as_slice));
                if value.starts_with('/') && value.len() > 1 {
                    visit_ids(index.get("/").map(Vec::as_slice));
                }
                for (at, byte) in value.bytes().enumerate() {
                    if byte == b'/' && at > 0 && at + 1 < value.len() {
                        visit_ids(index.get(&value[..at]).map(Vec::as_slice));
                    }
                }
            }
            Attribute::ProcessName => {
                visit_ids(index.get(value).map(Vec::as_slice));
                if is_truncated_process_name(value) {
                    visit_ids(self.truncated_processes.get(value).map(Vec::as_slice));
                }
            }
            Attribute::Ipv4Addr => {
                visit_ids(index.get(value).map(Vec::as_slice));
                if !self.cidrs.is_empty()
                    && let Ok(address) = value.parse::<std::net::Ipv4Addr>()
                {
                    let address = u32::from(address);
                    for (network, bits, id) in &self.cidrs {
                        if crate::pattern::in_network(address, *network, *bits) {
                            visit_ids(Some(std::slice::from_ref(id)));
                        }
                    }
                }
            }
            _ => visit_ids(index.get(value).map(Vec::as_slice)),
        }
    }

    /// The indicators that a set of hits satisfies: an alternative is satisfied when each of
    /// its brackets has a hit (for one-bracket patterns, any hit).
    pub fn resolve(&self, hits: &[Hit]) -> Vec<Satisfied> {
        let mut by_alternative: BTreeMap<(u32, u16), Vec<usize>> = BTreeMap::new();
        for (position, hit) in hits.iter().enumerate() {
            by_alternative
                .entry((hit.indicator, hit.alternative))
                .or_default()
                .push(position);
        }
        let mut satisfied: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for ((indicator, alternative), positions) in by_alternative {
            let Some(needed) = self
                .indicators
                .get(indicator as usize)
                .and_then(|i| i.alternative_brackets.get(alternative as usize))
            else {
                continue;
            };
            let mut seen = vec![false; usize::from(*needed)];
            for position in &positions {
                if let Some(slot) = seen.get_mut(usize::from(hits[*position].bracket)) {
                    *slot = true;
                }
            }
            if seen.iter().all(|s| *s) {
                satisfied.entry(indicator).or_default().extend(positions);
            }
        }
        satisfied
            .into_iter()
            .map(|(indicator, hits)| Satisfied { indicator, hits })
            .collect()
    }

    /// Names of an indicator's collections, for reports.
    pub fn collection_names(&self, indicator: u32) -> Vec<&str> {
        self.indicators
            .get(indicator as usize)
            .map(|i| {
                i.collections
                    .iter()
                    .filter_map(|c| self.collections.get(*c as usize))
                    .map(|c| c.name.as_str())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The comparison a clause is indexed by: an exact-lookup attribute when there is one, since
/// domains, paths and addresses are found through walks that any of them supports equally.
fn pick_key(clause: &[Comparison]) -> Option<&Comparison> {
    clause.first()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stix::parse_bundle;

    fn db(patterns: &[(&str, &str)]) -> IocDb {
        let mut objects = vec![
            r#"{"type":"malware","id":"malware--a","name":"Alpha"}"#.to_owned(),
            r#"{"type":"malware","id":"malware--b","name":"Beta"}"#.to_owned(),
        ];
        for (n, (collection, pattern)) in patterns.iter().enumerate() {
            objects.push(format!(
                r#"{{"type":"indicator","id":"indicator--{n}","pattern":{}}}"#,
                serde_json::Value::String((*pattern).to_owned())
            ));
            objects.push(format!(
                r#"{{"type":"relationship","id":"relationship--{n}","source_ref":"indicator--{n}","target_ref":"malware--{collection}"}}"#
            ));
        }
        let json = format!(r#"{{"type":"bundle","objects":[{}]}}"#, objects.join(","));
        let mut builder = IocDbBuilder::new();
        builder.add_bundle("test", parse_bundle("test", json.as_bytes()).unwrap());
        builder.build()
    }

    /// Indicator ids (`indicator--N`) that the observation completes.
    fn matched(db: &IocDb, observation: &Observation<'_>) -> Vec<String> {
        let mut hits = Vec::new();
        db.match_observation(observation, &mut hits);
        db.resolve(&hits)
            .into_iter()
            .map(|s| db.indicators()[s.indicator as usize].id.clone())
            .collect()
    }

    #[test]
    fn single_values_match_per_attribute() {
        use Attribute::*;
        let db = db(&[
            ("a", "[domain-name:value='weather4free.com']"),
            ("a", "[ipv4-addr:value='121.201.109.98']"),
            ("a", "[ipv4-addr:value='10.9.0.0/16']"),
            ("b", "[url:value='https://x.org/payload']"),
            ("b", "[email-addr:value='Bad@Mail.com']"),
            ("b", "[process:name='fservernetd']"),
            ("b", "[process:name='com.apple.WebKit.Networking']"),
            ("a", "[file:name='roleaccountd.plist']"),
            ("a", "[file:path='/data/local/tmp/wd/']"),
            ("a", "[file:hashes.sha256='E38D7BA2']"),
            ("a", "[file:hashes.'SHA-1'='aa11']"),
            ("b", "[app:id='com.vodaservices']"),
            ("b", "[app:cert.sha256='cc']"),
            ("b", "[android-property:name='persist.evil']"),
            (
                "b",
                "[configuration-profile:id='76DAB334-7E17-475D-A5D6-0794EB5818A5']",
            ),
        ]);
        let cases: Vec<(Attribute, &str, Vec<&str>)> = vec![
            (DomainName, "weather4free.com", vec!["indicator--0"]),
            (DomainName, "cdn.WEATHER4FREE.com.", vec!["indicator--0"]),
            (DomainName, "myweather4free.com", vec![]),
            (DomainName, "weather4free.com.evil.net", vec![]),
            (Ipv4Addr, "121.201.109.98", vec!["indicator--1"]),
            (Ipv4Addr, "10.9.3.4", vec!["indicator--2"]),
            (Ipv4Addr, "10.10.3.4", vec![]),
            (Url, "https://x.org/payload", vec!["indicator--3"]),
            (Url, "https://x.org/other", vec![]),
            (Url, "https://a.weather4free.com/x", vec!["indicator--0"]),
            (Url, "http://121.201.109.98:8080/", vec!["indicator--1"]),
            (EmailAddr, "bad@MAIL.com", vec!["indicator--4"]),
            (ProcessName, "fservernetd", vec!["indicator--5"]),
            (ProcessName, "fservernet", vec![]),
            (ProcessName, "com.apple.WebKi", vec!["indicator--6"]),
            (ProcessName, "com.apple.WebKit", vec!["indicator--6"]),
            (ProcessName, "com.apple.WebK", vec![]),
            (FileName, "roleaccountd.plist", vec!["indicator--7"]),
            (FilePath, "/data/local/tmp/wd", vec!["indicator--8"]),
            (FilePath, "/data/local/tmp/wd/fs.db", vec!["indicator--8"]),
            (FilePath, "/data/local/tmp/wdx", vec![]),
            (FileSha256, "e38d7ba2", vec!["indicator--9"]),
            (FileSha1, "AA11", vec!["indicator--10"]),
            (AppId, "com.VodaServices", vec!["indicator--11"]),
            (AppCertSha256, "CC", vec!["indicator--12"]),
            (AndroidPropertyName, "persist.EVIL", vec!["indicator--13"]),
            (
                ConfigurationProfileId,
                "76dab334-7e17-475d-a5d6-0794eb5818a5",
                vec!["indicator--14"],
            ),
            (FileName, "weather4free.com", vec![]),
        ];
        for (attribute, value, expected) in cases {
            assert_eq!(
                matched(&db, &Observation::single(attribute, value)),
                expected,
                "{attribute} {value}"
            );
            let mut hits = Vec::new();
            db.match_value(attribute, value, &mut hits);
            let fast: Vec<String> = db
                .resolve(&hits)
                .into_iter()
                .map(|s| db.indicators()[s.indicator as usize].id.clone())
                .collect();
            assert_eq!(fast, expected, "match_value {attribute} {value}");
        }
    }

    #[test]
    fn and_or_evaluate_on_one_object_and_across_observations() {
        use Attribute::*;
        let db = db(&[
            ("a", "[file:name='x.so' AND file:hashes.sha256='ab']"),
            ("a", "[file:name='y' OR file:name='z']"),
            ("b", "[process:name='p'] AND [domain-name:value='c2.net']"),
            ("b", "[process:name='q'] OR [domain-name:value='other.net']"),
        ]);
        let file = |name, hash| {
            Observation::new()
                .with(FileName, name)
                .with(FileSha256, hash)
        };
        assert_eq!(matched(&db, &file("x.so", "AB")), ["indicator--0"]);
        assert!(matched(&db, &file("x.so", "cd")).is_empty());
        assert!(matched(&db, &Observation::single(FileName, "x.so")).is_empty());
        assert_eq!(
            matched(&db, &Observation::single(FileName, "z")),
            ["indicator--1"]
        );
        assert_eq!(
            matched(&db, &Observation::single(ProcessName, "q")),
            ["indicator--3"]
        );
        assert_eq!(
            matched(&db, &Observation::single(DomainName, "x.other.net")),
            ["indicator--3"]
        );

        // Across observations: both brackets must be seen.
        let mut hits = Vec::new();
        db.match_observation(&Observation::single(ProcessName, "p"), &mut hits);
        assert!(db.resolve(&hits).is_empty());
        assert!(!db.is_complete(hits[0]));
        db.match_observation(&Observation::single(DomainName, "a.c2.net"), &mut hits);
        let satisfied = db.resolve(&hits);
        assert_eq!(satisfied.len(), 1);
        assert_eq!(
            db.indicators()[satisfied[0].indicator as usize].id,
            "indicator--2"
        );
        assert_eq!(satisfied[0].hits, [0, 1]);
    }

    #[test]
    fn hits_carry_their_collection() {
        let db = db(&[
            ("a", "[domain-name:value='a.com']"),
            ("b", "[domain-name:value='a.com']"),
        ]);
        let mut hits = Vec::new();
        db.match_value(Attribute::DomainName, "www.a.com", &mut hits);
        let mut names: Vec<&str> = hits
            .iter()
            .flat_map(|h| db.collection_names(h.indicator))
            .collect();
        names.sort();
        assert_eq!(names, ["Alpha", "Beta"]);
        assert!(db.wants(Attribute::DomainName));
        assert!(!db.wants(Attribute::FileSha256));
    }
}
