//! Persistence points: the programs systemd units and crontabs start (matched as file paths,
//! file names and process names; a program in a temporary directory is a heuristic finding),
//! `MAILTO` addresses in crontabs and forwarding addresses in `/etc/aliases` (matched against
//! email indicators), and `/etc/ld.so.preload`, which injects a library into every program.

use std::path::Path;

use enigm_ioc::{Attribute, Observation};

use crate::context::Scan;
use crate::finding::{Category, Evidence, Severity};
use crate::fs::EntryKind;
use crate::scanners::processes::basename;

/// Directories no service or scheduled program should start from.
const TEMPORARY: [&str; 5] = [
    "/tmp/",
    "/var/tmp/",
    "/dev/shm/",
    "/data/local/tmp/",
    "/run/user/",
];

/// Programs a unit file starts (`Exec*=` lines, without systemd's `@-:+!` prefixes).
pub fn unit_programs(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.trim().split_once('=')?;
            if !key.trim().starts_with("Exec") {
                return None;
            }
            let command = value.trim().trim_start_matches(['@', '-', ':', '+', '!']);
            command.split_whitespace().next()
        })
        .filter(|program| program.starts_with('/'))
        .collect()
}

/// What a crontab names: the absolute paths in its commands, and its `MAILTO` addresses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Crontab<'a> {
    /// Absolute paths in command fields.
    pub programs: Vec<&'a str>,
    /// `MAILTO` recipients.
    pub mail_to: Vec<&'a str>,
}

/// Parses a crontab (system or user format).
pub fn parse_crontab(text: &str) -> Crontab<'_> {
    let mut out = Crontab::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((name, value)) = line.split_once('=')
            && !name.contains(char::is_whitespace)
        {
            if name.trim() == "MAILTO" {
                out.mail_to.extend(
                    value
                        .trim_matches(|c: char| c == '"' || c.is_whitespace())
                        .split(',')
                        .map(str::trim)
                        .filter(|v| v.contains('@')),
                );
            }
            continue;
        }
        out.programs.extend(
            line.split_whitespace()
                .map(|token| token.trim_matches(|c| c == '"' || c == '\'' || c == ';'))
                .filter(|token| token.starts_with('/')),
        );
    }
    out
}

/// Forwarding addresses of an aliases file (`name: a, b@x`).
pub fn alias_addresses(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once(':').map(|(_, targets)| targets))
        .flat_map(|targets| targets.split(','))
        .map(str::trim)
        .filter(|target| target.contains('@') && !target.starts_with('|'))
        .collect()
}

/// Libraries listed in `/etc/ld.so.preload`.
pub fn preload_libraries(text: &str) -> Vec<&str> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .flat_map(|line| line.split([' ', ':']))
        .filter(|library| !library.is_empty())
        .collect()
}

fn observe_program(scan: &mut Scan<'_>, kind: &'static str, source: &str, program: &str) {
    let name = basename(program);
    let observation = Observation::new()
        .with(Attribute::FilePath, program)
        .with(Attribute::FileName, name)
        .with(Attribute::ProcessName, name);
    scan.observe(Category::Persistence, &observation, || {
        Evidence::new(kind, source).matched(program)
    });
    if TEMPORARY.iter().any(|dir| program.starts_with(dir)) {
        scan.heuristic(
            "persistence-from-temporary-directory",
            Severity::Medium,
            Category::Persistence,
            format!("{kind} {source} starts a program from a temporary directory"),
            Evidence::new(kind, source).matched(program),
        );
    }
}

fn scan_units(scan: &mut Scan<'_>) {
    for dir in scan.config.unit_dirs.clone() {
        match scan.fs.symlink_metadata(&dir) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => continue,
            Err(error) => {
                scan.issue(&error);
                continue;
            }
        }
        for entry in scan.list(&dir) {
            if entry.kind != EntryKind::File || !entry.name.ends_with(".service") {
                continue;
            }
            let Some(text) = scan.read_text(&entry.path) else {
                continue;
            };
            let source = entry.path.display().to_string();
            for program in unit_programs(&text) {
                observe_program(scan, "systemd-unit", &source, program);
            }
        }
    }
}

fn scan_cron(scan: &mut Scan<'_>) {
    let mut files = Vec::new();
    for path in scan.config.cron_paths.clone() {
        match scan.fs.symlink_metadata(&path) {
            Ok(metadata) if metadata.is_dir() => files.extend(
                scan.list(&path)
                    .into_iter()
                    .filter(|e| e.kind == EntryKind::File)
                    .map(|e| e.path),
            ),
            Ok(metadata) if metadata.is_file() => files.push(path),
            Ok(_) => {}
            Err(error) => scan.issue(&error),
        }
    }
    for file in files {
        let Some(text) = scan.read_text(&file) else {
            continue;
        };
        let source = file.display().to_string();
        let crontab = parse_crontab(&text);
        for program in crontab.programs {
            observe_program(scan, "crontab", &source, program);
        }
        for address in crontab.mail_to {
            scan.observe_value(Category::Persistence, Attribute::EmailAddr, address, || {
                Evidence::new("crontab-mailto", source.clone())
            });
        }
    }
}

/// Scans the persistence points.
pub fn scan(scan: &mut Scan<'_>) {
    scan.set_scanner("persistence");
    scan_units(scan);
    scan_cron(scan);
    if let Some(text) = scan.read_text(Path::new("/etc/aliases")) {
        for address in alias_addresses(&text) {
            scan.observe_value(Category::Persistence, Attribute::EmailAddr, address, || {
                Evidence::new("mail-alias", "/etc/aliases")
            });
        }
    }
    if let Some(text) = scan.read_text(Path::new("/etc/ld.so.preload")) {
        for library in preload_libraries(&text) {
            observe_program(scan, "ld.so.preload", "/etc/ld.so.preload", library);
            scan.heuristic(
                "ld-so-preload",
                Severity::High,
                Category::Persistence,
                format!("/etc/ld.so.preload injects {library} into every program"),
                Evidence::new("ld.so.preload", library),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_programs_strip_prefixes() {
        let text = "[Service]\nExecStartPre=-/usr/bin/true\nExecStart=@/tmp/x x --y\nExecStop=kill\nUser=root\n";
        assert_eq!(unit_programs(text), ["/usr/bin/true", "/tmp/x"]);
    }

    #[test]
    fn crontabs_give_programs_and_mail_recipients() {
        let text = "# m h\nSHELL=/bin/sh\nMAILTO=\"a@b.com, root\"\n*/5 * * * * root /opt/x/run.sh --q >/dev/null\n@reboot /tmp/y\n";
        assert_eq!(
            parse_crontab(text),
            Crontab {
                programs: vec!["/opt/x/run.sh", "/tmp/y"],
                mail_to: vec!["a@b.com"],
            }
        );
    }

    #[test]
    fn aliases_and_preload() {
        assert_eq!(
            alias_addresses("# x\npostmaster: root\nroot: evil@x.com, |/bin/cmd\n"),
            ["evil@x.com"]
        );
        assert_eq!(
            preload_libraries("# c\n/lib/a.so /lib/b.so\n\n/lib/c.so # t\n"),
            ["/lib/a.so", "/lib/b.so", "/lib/c.so"]
        );
    }
}
