//! Keeps the `enigm-tscd` documentation in step with the code.
//!
//! - `docs/tscd/checks.md`: every check of the catalogue in exactly one table row, under its
//!   category, with its level, its input paths, its sysctl expectation or signal source; the
//!   scoring examples; the fixtures' levels.
//! - `docs/dbus/org.enigm.TrustSecurityCenter1.md`: every method, property and signal of the
//!   served interface (from its introspection data) with its signature and its authorization
//!   class (from `src/service.rs`); the wire types; the error messages; the signal contract.
//! - `docs/tscd/configuration.md`: every configuration key (from the config structs' source)
//!   with its environment variable and its real default; the flags of `enigm-tscd` and
//!   `enigmctl posture`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};

use enigm_runtime::authz::{AuthorizationConfig, CallerPolicy};
use enigm_runtime::config::{env_prefix, load};
use enigm_runtime::sysroot::Sysroot;
use enigm_tscd::checks::{Check, Expect, Rule, SIGNAL_SOURCES, catalogue};
use enigm_tscd::config::{DAEMON, PostureConfig, TscdConfig};
use enigm_tscd::evaluate::Evaluator;
use enigm_tscd::model::{CheckReport, Outcome, Posture};
use enigm_tscd::service::TrustSecurityCenter;
use enigm_tscd::signals::{CALL_TIMEOUT, SIGNAL_INTERFACE, SignalSnapshot};

/// The instant `tests/fixtures.rs` evaluates the fixtures at: 2026-11-22T00:00:00Z.
const FIXTURE_NOW: u64 = 1_795_305_600;

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: impl AsRef<Path>) -> Result<String> {
    let path = manifest().join(path);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

fn checks_md() -> Result<String> {
    read("../../docs/tscd/checks.md")
}

fn dbus_md() -> Result<String> {
    read("../../docs/dbus/org.enigm.TrustSecurityCenter1.md")
}

fn config_md() -> Result<String> {
    read("../../docs/tscd/configuration.md")
}

/// A Markdown table and the `##` section it sits in.
#[derive(Debug)]
struct Table {
    section: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|cell| cell == name)
    }

    /// The cell of `row` under `name`; empty when the column or cell is missing.
    fn cell<'a>(&self, row: &'a [String], name: &str) -> &'a str {
        self.column(name)
            .and_then(|index| row.get(index))
            .map_or("", String::as_str)
    }
}

/// Splits a table line into trimmed cells; `\|` is a literal pipe inside a cell.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                cell.push('|');
            }
            '|' => out.push(std::mem::take(&mut cell)),
            _ => cell.push(c),
        }
    }
    out.push(cell);
    out.iter().map(|cell| cell.trim().to_owned()).collect()
}

fn tables(markdown: &str) -> Vec<Table> {
    let mut tables = Vec::new();
    let mut section = String::new();
    let mut lines = markdown.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(title) = line.strip_prefix("## ") {
            section = title.trim().to_owned();
        }
        let is_table = line.trim_start().starts_with('|')
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("|---"));
        if !is_table {
            continue;
        }
        lines.next();
        let mut table = Table {
            section: section.clone(),
            header: cells(line),
            rows: Vec::new(),
        };
        while let Some(row) = lines.next_if(|l| l.trim_start().starts_with('|')) {
            table.rows.push(cells(row));
        }
        tables.push(table);
    }
    tables
}

/// Tables whose first header cells are `first`.
fn tables_starting<'a>(all: &'a [Table], first: &[&str]) -> Vec<&'a Table> {
    all.iter()
        .filter(|t| t.header.len() >= first.len() && t.header[..first.len()] == *first)
        .collect()
}

/// The content of a cell that is exactly one code span.
fn code(cell: &str) -> Option<&str> {
    let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
    (!inner.contains('`')).then_some(inner)
}

/// The number a cell starts with, e.g. `0 (runtime)` → 0.
fn leading_number(cell: &str) -> Option<u64> {
    let digits: String = cell.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `(field, type)` of `struct name` in Rust source, in declaration order.
fn struct_fields(source: &str, name: &str) -> Result<Vec<(String, String)>> {
    let start = format!("struct {name} {{");
    let Some((_, body)) = source.split_once(&start) else {
        bail!("no `{start}` in the source");
    };
    Ok(body
        .lines()
        .take_while(|line| line.trim() != "}")
        .filter_map(|line| {
            let line = line.trim();
            let (field, ty) = line.strip_prefix("pub ").unwrap_or(line).split_once(':')?;
            let is_ident =
                !field.is_empty() && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            is_ident.then(|| (field.to_owned(), ty.trim().trim_end_matches(',').to_owned()))
        })
        .collect())
}

/// The contents of every string literal in `source` (no escaped quotes expected).
fn string_literals(source: &str) -> impl Iterator<Item = &str> {
    source.split('"').skip(1).step_by(2)
}

/// The string literal that is the first argument after each occurrence of `marker`
/// (`marker` + e.g. `Failed(` or `AccessDenied(format!(` + `"…"`).
fn literals_after(source: &str, marker: &str) -> Vec<String> {
    source
        .match_indices(marker)
        .filter_map(|(at, _)| {
            let rest = &source[at + marker.len()..];
            let open = rest.find('"')?;
            if rest[..open].contains([')', ',', ';']) {
                return None;
            }
            let close = rest[open + 1..].find('"')?;
            Some(rest[open + 1..open + 1 + close].to_owned())
        })
        .collect()
}

/// `{name}` placeholders written the way the docs write them: `<name>`.
fn placeholders_as_docs(message: &str) -> String {
    message.replace('{', "<").replace('}', ">")
}

fn snake_to_camel(name: &str) -> String {
    name.split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// docs/tscd/checks.md

#[test]
fn every_check_is_documented_once_with_its_level_and_inputs() -> Result<()> {
    let catalogue = catalogue();
    let by_id: BTreeMap<&str, &Check> = catalogue.iter().map(|c| (c.id, c)).collect();
    let all = tables(&checks_md()?);
    let check_tables = tables_starting(&all, &["id", "level"]);
    assert!(
        !check_tables.is_empty(),
        "checks.md has no `| id | level |` table"
    );

    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for table in check_tables {
        for row in &table.rows {
            let id = code(&row[0]).unwrap_or_else(|| panic!("row without a `check id`: {row:?}"));
            let check = by_id
                .get(id)
                .unwrap_or_else(|| panic!("checks.md lists `{id}`, which is not in the catalogue"));
            *seen.entry(check.id).or_default() += 1;
            assert!(
                table.section.starts_with(check.category),
                "`{id}` is listed under `## {}`, its category is {}",
                table.section,
                check.category
            );
            assert_eq!(
                leading_number(&row[1]),
                Some(u64::from(check.level)),
                "`{id}`: documented level {:?}, code says {}",
                row[1],
                check.level
            );
            if table.column("reads").is_some() {
                let reads = table.cell(row, "reads");
                for input in check.inputs {
                    assert!(
                        reads.contains(input),
                        "`{id}` watches {input}, but its `reads` cell does not name it: {reads:?}"
                    );
                }
            } else {
                assert!(
                    check.inputs.is_empty(),
                    "`{id}` has inputs {:?} and its table has no `reads` column",
                    check.inputs
                );
            }
            match check.rule {
                Rule::Sysctl(rule) => {
                    assert_eq!(
                        code(table.cell(row, "sysctl")),
                        Some(rule.name),
                        "`{id}`: sysctl name"
                    );
                    let expected = match rule.expect {
                        Expect::Equals(value) => format!("= {value}"),
                        Expect::AtLeast(value) => format!("≥ {value}"),
                    };
                    assert_eq!(table.cell(row, "passes when"), expected, "`{id}`");
                    let absent = if rule.absent_is_compiled_out {
                        "pass"
                    } else {
                        "fail"
                    };
                    assert!(
                        table.cell(row, "if absent").starts_with(absent),
                        "`{id}`: when the sysctl is absent the check reports {absent}"
                    );
                }
                Rule::Signal(signal) => {
                    let source = SIGNAL_SOURCES
                        .iter()
                        .find(|s| s.id == signal)
                        .unwrap_or_else(|| panic!("no signal source {signal}"));
                    assert_eq!(
                        code(table.cell(row, "daemon")),
                        Some(source.daemon),
                        "`{id}`"
                    );
                    assert_eq!(
                        code(table.cell(row, "bus name")),
                        Some(source.bus_name),
                        "`{id}`"
                    );
                    assert_eq!(
                        code(table.cell(row, "object path")),
                        Some(source.path),
                        "`{id}`"
                    );
                }
                Rule::Probe(_) => assert!(
                    table.column("passes when").is_some() && table.column("reads").is_some(),
                    "`{id}` is a probe: its table needs `passes when` and `reads`"
                ),
            }
        }
    }
    for check in &catalogue {
        assert_eq!(
            seen.get(check.id).copied().unwrap_or(0),
            1,
            "`{}` must appear in exactly one table row of docs/tscd/checks.md",
            check.id
        );
    }
    Ok(())
}

#[test]
fn scoring_examples_match_the_scorer() -> Result<()> {
    let all = tables(&checks_md()?);
    let examples = tables_starting(&all, &["checks (level: result)", "level"]);
    assert_eq!(examples.len(), 1, "one scoring example table");
    assert!(!examples[0].rows.is_empty());
    for row in &examples[0].rows {
        let checks: Vec<CheckReport> = row[0]
            .split(',')
            .map(str::trim)
            .filter(|part| *part != "none")
            .enumerate()
            .map(|(n, part)| {
                let (level, result) = part
                    .split_once(':')
                    .unwrap_or_else(|| panic!("`{part}` is not `level: result`"));
                let result = result.trim();
                assert!(
                    Outcome::parse(result).is_some(),
                    "unknown result {result:?}"
                );
                CheckReport {
                    id: format!("example.{n}"),
                    category: "example".into(),
                    title: String::new(),
                    level: level.trim().parse().unwrap(),
                    result: result.to_owned(),
                    observed: String::new(),
                    why: String::new(),
                    fix: String::new(),
                }
            })
            .collect();
        assert_eq!(
            leading_number(&row[1]),
            Some(u64::from(enigm_tscd::score::level(&checks))),
            "scoring example {:?}",
            row[0]
        );
    }
    Ok(())
}

#[test]
fn fixture_levels_match_an_evaluation() -> Result<()> {
    let all = tables(&checks_md()?);
    let fixtures = tables_starting(&all, &["fixture"]);
    assert_eq!(fixtures.len(), 1, "one fixtures table");
    let table = fixtures[0];
    let mut documented = BTreeSet::new();
    for row in &table.rows {
        let name = code(&row[0]).unwrap();
        documented.insert(name.to_owned());
        let posture = Evaluator::new(
            Sysroot::new(manifest().join("fixtures").join(name)),
            PostureConfig::default(),
        )
        .evaluate(&SignalSnapshot::default(), FIXTURE_NOW);
        let failing = posture
            .checks
            .iter()
            .filter(|c| c.outcome() == Outcome::Fail)
            .count();
        assert_eq!(
            leading_number(table.cell(row, "level")),
            Some(u64::from(posture.level)),
            "{name}: level"
        );
        assert_eq!(
            table.cell(row, "runtime issue"),
            if posture.runtime_issue { "yes" } else { "no" },
            "{name}: runtime issue"
        );
        assert_eq!(
            leading_number(table.cell(row, "failing checks")),
            Some(failing as u64),
            "{name}: failing checks"
        );
    }
    let on_disk: BTreeSet<String> = std::fs::read_dir(manifest().join("fixtures"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(documented, on_disk, "every fixture tree is documented");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// docs/dbus/org.enigm.TrustSecurityCenter1.md

/// A member of the interface as its introspection data declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    kind: &'static str,
    input: String,
    output: String,
}

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

/// Methods, properties and signals of the served interface, from its introspection XML.
fn introspected_members() -> Result<BTreeMap<String, Member>> {
    let posture = Posture {
        level: 0,
        runtime_issue: false,
        evaluated_at: 0,
        checks: Vec::new(),
    };
    let policy = CallerPolicy::resolve(&AuthorizationConfig::default(), |_| Some(0))?;
    let (refresh, _engine) = tokio::sync::mpsc::channel(1);
    let service =
        TrustSecurityCenter::new(Arc::new(tokio::sync::RwLock::new(posture)), policy, refresh);
    let mut xml = String::new();
    zbus::object_server::Interface::introspect_to_writer(&service, &mut xml, 0);
    // Drop the doc comments the macro writes as XML comments.
    while let Some(start) = xml.find("<!--") {
        let end = xml[start..]
            .find("-->")
            .map_or(xml.len(), |end| start + end + 3);
        xml.replace_range(start..end, "");
    }

    let mut members = BTreeMap::new();
    let mut open: Option<(String, Member)> = None;
    for line in xml.lines().map(str::trim) {
        let kind = ["method", "signal", "property"]
            .into_iter()
            .find(|kind| line.starts_with(&format!("<{kind} ")));
        if let Some(kind) = kind {
            let name = attr(line, "name")
                .context("a member without a name")?
                .to_owned();
            let member = Member {
                kind,
                input: String::new(),
                output: attr(line, "type").unwrap_or_default().to_owned(),
            };
            if line.ends_with("/>") || kind == "property" {
                members.insert(name, member);
            } else {
                open = Some((name, member));
            }
        } else if line.starts_with("<arg ") {
            let (_, member) = open.as_mut().context("<arg> outside a method or signal")?;
            let ty = attr(line, "type").context("<arg> without a type")?;
            if attr(line, "direction") == Some("in") {
                member.input.push_str(ty);
            } else {
                member.output.push_str(ty);
            }
        } else if line.starts_with("</method") || line.starts_with("</signal") {
            let (name, member) = open
                .take()
                .context("a closing tag without an opening one")?;
            members.insert(name, member);
        }
    }
    ensure!(
        members.len() >= 3,
        "introspection parsed badly:\n{xml}\n{members:?}"
    );
    Ok(members)
}

/// The authorization class each member asks for in `src/service.rs`.
fn classes_in_source() -> Result<BTreeMap<String, &'static str>> {
    let source = read("src/service.rs")?;
    let mut classes = BTreeMap::new();
    for (marker, class) in [
        ("MethodClass::Read, ", "read"),
        ("MethodClass::Change, ", "change"),
        ("authorize_property(connection, header, ", "read"),
    ] {
        for name in literals_after(&source, marker) {
            classes.insert(name, class);
        }
    }
    Ok(classes)
}

#[test]
fn every_interface_member_is_documented_with_signature_and_class() -> Result<()> {
    let members = introspected_members()?;
    let classes = classes_in_source()?;
    let all = tables(&dbus_md()?);
    let documented = tables_starting(&all, &["member", "kind", "in", "out / type", "class"]);
    assert_eq!(documented.len(), 1, "one members table");
    let table = documented[0];

    let signature = |cell: &str| match cell {
        "—" | "" => String::new(),
        other => code(other)
            .unwrap_or_else(|| panic!("signature {other:?} is not a code span"))
            .to_owned(),
    };
    let mut rows = BTreeMap::new();
    for row in &table.rows {
        let name = code(&row[0]).unwrap().to_owned();
        let member = Member {
            kind: ["method", "signal", "property"]
                .into_iter()
                .find(|kind| *kind == table.cell(row, "kind"))
                .unwrap_or("unknown kind"),
            input: signature(table.cell(row, "in")),
            output: signature(table.cell(row, "out / type")),
        };
        let class = table.cell(row, "class");
        let expected = classes.get(&name).copied().unwrap_or("—");
        assert_eq!(class, expected, "`{name}`: authorization class");
        rows.insert(name, member);
    }
    assert_eq!(
        rows, members,
        "the members table must match the interface's introspection data"
    );

    // The source's `async fn` names, converted as zbus converts them, are the same members.
    let source = read("src/service.rs")?;
    let interface_block = source
        .split_once("#[interface(")
        .map(|(_, rest)| rest)
        .unwrap();
    let from_source: BTreeSet<String> = interface_block
        .lines()
        .filter_map(|line| {
            let rest = line.trim().trim_start_matches("pub ");
            let name = rest.strip_prefix("async fn ")?.split('(').next()?;
            Some(snake_to_camel(name))
        })
        .collect();
    let introspected: BTreeSet<String> = members.keys().cloned().collect();
    assert_eq!(from_source, introspected);

    let text = dbus_md()?;
    for name in members.keys() {
        assert!(
            text.contains(&format!("### {name}"))
                || text.contains(&format!("- `{name}` ("))
                || text.contains(&format!("### Signal {name}")),
            "`{name}` has no description in the D-Bus reference"
        );
    }
    Ok(())
}

#[test]
fn wire_types_are_documented_field_by_field() -> Result<()> {
    let model = read("src/model.rs")?;
    let all = tables(&dbus_md()?);
    for (first, rust, signature) in [
        (
            "Posture field",
            "Posture",
            <Posture as zbus::Type>::SIGNATURE.to_string(),
        ),
        (
            "check field",
            "CheckReport",
            <CheckReport as zbus::Type>::SIGNATURE.to_string(),
        ),
    ] {
        let found = tables_starting(&all, &[first, "type"]);
        assert_eq!(found.len(), 1, "one `{first}` table");
        let table = found[0];
        let fields: Vec<String> = struct_fields(&model, rust)?
            .into_iter()
            .map(|(field, _)| field)
            .collect();
        let names: Vec<String> = table
            .rows
            .iter()
            .map(|row| code(&row[0]).unwrap().to_owned())
            .collect();
        assert_eq!(names, fields, "{rust}: fields in wire order");
        let types: String = table
            .rows
            .iter()
            .map(|row| code(table.cell(row, "type")).unwrap())
            .collect();
        assert_eq!(format!("({types})"), signature, "{rust}: signature");
    }
    Ok(())
}

#[test]
fn error_messages_and_signal_contract_are_documented() -> Result<()> {
    let text = dbus_md()?;
    let messages: Vec<String> = [read("src/service.rs")?, read("../runtime/src/authz.rs")?]
        .iter()
        .flat_map(|source| literals_after(source, "fdo::Error::"))
        .map(|message| placeholders_as_docs(&message))
        .collect();
    assert!(messages.len() >= 5, "found {messages:?}");
    for message in messages {
        assert!(
            text.contains(&format!("`{message}`")),
            "error message `{message}` is not in the D-Bus reference"
        );
    }
    for needle in [
        format!("`{SIGNAL_INTERFACE}`"),
        "`GetSignal() → (s result, s observed)`".to_owned(),
        format!("{} s timeout", CALL_TIMEOUT.as_secs()),
        format!("`{}`", enigm_tscd::service::BUS_NAME),
        format!("`{}`", enigm_tscd::service::OBJECT_PATH),
        "daemons/tscd/dist/org.enigm.TrustSecurityCenter1.conf".to_owned(),
    ] {
        assert!(text.contains(&needle), "D-Bus reference lacks {needle:?}");
    }
    for outcome in [
        Outcome::Pass,
        Outcome::Fail,
        Outcome::NotApplicable,
        Outcome::Unavailable,
    ] {
        assert!(text.contains(&format!("`{}`", outcome.as_str())));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// docs/tscd/configuration.md

/// `(section.key, section, key)` of every configuration key, from the config structs' source.
fn config_keys() -> Result<Vec<(String, String, String)>> {
    let sources = [
        read("src/config.rs")?,
        read("../runtime/src/privileges.rs")?,
        read("../runtime/src/authz.rs")?,
    ]
    .join("\n");
    let mut keys = Vec::new();
    for (section, ty) in struct_fields(&sources, "TscdConfig")? {
        for (key, _) in struct_fields(&sources, &ty)? {
            keys.push((format!("{section}.{key}"), section.clone(), key));
        }
    }
    Ok(keys)
}

#[test]
fn every_config_key_is_documented_with_its_variable_and_real_default() -> Result<()> {
    let keys = config_keys()?;
    assert!(keys.len() >= 9, "{keys:?}");
    let all = tables(&config_md()?);
    let found = tables_starting(&all, &["key", "type", "default"]);
    assert_eq!(found.len(), 1, "one configuration key table");
    let table = found[0];
    let rows: BTreeMap<&str, &Vec<String>> = table
        .rows
        .iter()
        .map(|row| (code(&row[0]).unwrap(), row))
        .collect();
    let documented: BTreeSet<&str> = rows.keys().copied().collect();
    let in_source: BTreeSet<&str> = keys.iter().map(|(path, _, _)| path.as_str()).collect();
    assert_eq!(
        documented, in_source,
        "documented keys vs. the config structs"
    );

    let empty = tempfile::tempdir().unwrap();
    let root = Sysroot::new(empty.path());
    let mut by_section: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    for (path, section, key) in &keys {
        let row = rows[path.as_str()];
        let variable = format!(
            "{}{}__{}",
            env_prefix(DAEMON),
            section.to_ascii_uppercase(),
            key.to_ascii_uppercase()
        );
        assert_eq!(
            code(table.cell(row, "environment variable")),
            Some(variable.as_str()),
            "`{path}`"
        );
        let default = code(table.cell(row, "default"))
            .unwrap_or_else(|| panic!("`{path}`: default is not a code span"));
        by_section
            .entry(section)
            .or_default()
            .push((variable, default.to_owned()));
    }
    // Setting every key of a section to its documented default must give the built-in
    // defaults. (Whole sections: a section that is present takes its missing keys from the
    // section type's own defaults, which may differ from the daemon's.)
    for (section, overrides) in by_section {
        let loaded = load::<TscdConfig>(DAEMON, &root, overrides.clone())
            .unwrap_or_else(|err| panic!("[{section}] {overrides:?}: {err}"));
        assert_eq!(
            loaded.config,
            TscdConfig::default(),
            "[{section}]: the documented defaults {overrides:?} are not the built-in ones"
        );
    }

    // The example file must be the defaults too.
    let text = config_md()?;
    let example = text
        .split_once("```toml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(toml, _)| toml)
        .unwrap();
    let etc = empty.path().join("etc/enigm");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join(format!("{DAEMON}.toml")), example).unwrap();
    let loaded = load::<TscdConfig>(DAEMON, &root, Vec::new()).unwrap();
    assert_eq!(loaded.config, TscdConfig::default(), "the example file");
    Ok(())
}

#[test]
fn command_line_flags_and_exit_codes_are_documented() -> Result<()> {
    let text = config_md()?;
    let flag = |field: &str| format!("`--{}", field.replace('_', "-"));
    // The daemon's own flags, and the ones every daemon shares (flattened in as `daemon`).
    let mut tscd_flags = struct_fields(&read("src/main.rs")?, "Args")?;
    tscd_flags.retain(|(field, _)| field != "daemon");
    tscd_flags.extend(struct_fields(
        &read("../runtime/src/args.rs")?,
        "DaemonArgs",
    )?);
    let ctl_flags = struct_fields(&read("../ctl/src/posture.rs")?, "PostureArgs")?;
    assert!(tscd_flags.len() >= 2 && ctl_flags.len() >= 5);
    for (field, _) in tscd_flags.iter().chain(&ctl_flags) {
        assert!(
            text.contains(&flag(field)),
            "flag {} is undocumented",
            flag(field)
        );
    }
    let variables: BTreeSet<String> = [
        read("src/main.rs")?,
        read("../runtime/src/args.rs")?,
        read("../runtime/src/logging.rs")?,
        read("../ctl/src/main.rs")?,
    ]
    .iter()
    .flat_map(|source| {
        string_literals(source)
            .filter(|literal| literal.starts_with("ENIGM_"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    })
    .collect();
    assert!(variables.contains("ENIGM_SYSROOT") && variables.contains("ENIGM_LOG"));
    for variable in variables {
        assert!(
            text.contains(&format!("`{variable}`")),
            "variable {variable}"
        );
    }

    let posture_source = read("../ctl/src/posture.rs")?;
    let below: u64 = posture_source
        .split_once("pub const BELOW_MIN_LEVEL: u8 = ")
        .and_then(|(_, rest)| rest.split(';').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    let all = tables(&text);
    let exits = tables_starting(&all, &["exit status", "meaning"]);
    assert_eq!(exits.len(), 1, "one enigmctl exit status table");
    assert!(
        exits[0]
            .rows
            .iter()
            .any(|row| leading_number(&row[0]) == Some(below) && row[1].contains("--min-level")),
        "exit status {below} is the --min-level gate"
    );
    Ok(())
}
