//! Indicators of compromise: STIX 2.1 bundles loaded into fast matchers.
//!
//! - [`stix`] reads bundles (indicators, `malware` / `report` collections, relationships);
//! - [`pattern`] parses STIX patterns (equality, `AND` / `OR`) into normal form;
//! - [`db`] compiles them into an [`IocDb`] that matches [`Observation`]s with hash lookups
//!   (domains by parent domain, paths by parent directory) and, for free text, an
//!   Aho-Corasick automaton ([`domain_text`]);
//! - [`feed`] signs and verifies the IOC feed devices receive; [`load`] reads files,
//!   directories and feeds.
//!
//! Pure logic: no logging, no I/O outside [`load`].

pub mod attribute;
pub mod db;
pub mod domain_text;
pub mod feed;
pub mod load;
pub mod observation;
pub mod pattern;
pub mod stix;

pub use attribute::Attribute;
pub use db::{Collection, Hit, Indicator, IocDb, IocDbBuilder, LoadStats, Satisfied};
pub use load::{LoadError, load_paths};
pub use observation::Observation;
