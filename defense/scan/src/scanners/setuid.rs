//! Setuid and setgid binaries that no installed package owns: a walk of the binary
//! directories finds files with either bit set, and each must appear in dpkg's file lists
//! (`/var/lib/dpkg/info/*.list`, merged-`/usr` aware). On Android, where the image ships no
//! setuid binary and no lists exist, every one is reported.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::context::Scan;
use crate::finding::{Category, Evidence, Severity};
use crate::fs::EntryKind;
use crate::walk::{Budget, walk};

/// The forms a path may be listed under on a merged-`/usr` system (`/bin/su` and
/// `/usr/bin/su` are the same file).
pub fn path_forms(path: &str) -> [String; 2] {
    match path.strip_prefix("/usr") {
        Some(rest)
            if ["/bin/", "/sbin/", "/lib/"]
                .iter()
                .any(|p| rest.starts_with(p)) =>
        {
            [path.to_owned(), rest.to_owned()]
        }
        _ if ["/bin/", "/sbin/", "/lib/"]
            .iter()
            .any(|p| path.starts_with(p)) =>
        {
            [path.to_owned(), format!("/usr{path}")]
        }
        _ => [path.to_owned(), path.to_owned()],
    }
}

fn owned_paths(scan: &mut Scan<'_>) -> HashSet<String> {
    let mut owned = HashSet::new();
    let info = Path::new("/var/lib/dpkg/info");
    let entries = match scan.fs.list_opt(info) {
        Ok(Some(entries)) => entries,
        Ok(None) => return owned,
        Err(error) => {
            scan.issue(&error);
            return owned;
        }
    };
    for entry in entries {
        if entry.kind != EntryKind::File || !entry.name.ends_with(".list") {
            continue;
        }
        if let Some(text) = scan.read_text(&entry.path) {
            owned.extend(text.lines().map(str::to_owned));
        }
    }
    owned
}

/// Scans for unowned setuid / setgid binaries.
pub fn scan(scan: &mut Scan<'_>) {
    scan.set_scanner("setuid");
    let mut candidates = Vec::new();
    let mut budget = Budget(scan.config.max_entries);
    for root in scan.config.setuid_roots.clone() {
        match scan.fs.symlink_metadata(&root) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => continue,
            Err(error) => {
                scan.issue(&error);
                continue;
            }
        }
        let mut files = Vec::new();
        let mut errors = Vec::new();
        let finished = walk(
            scan.fs,
            &root,
            scan.config.max_depth.min(4),
            &mut budget,
            &mut |entry| {
                if entry.kind == EntryKind::File {
                    files.push(entry.path.clone());
                }
            },
            &mut |error| {
                if !error.is_expected() {
                    errors.push(error.to_string());
                }
            },
        );
        for problem in errors {
            scan.note(problem);
        }
        if !finished {
            scan.note(format!(
                "{}: entry budget exhausted; walk incomplete",
                root.display()
            ));
        }
        for file in files {
            scan.count();
            if let Ok(metadata) = scan.fs.symlink_metadata(&file)
                && metadata.mode() & 0o6000 != 0
            {
                candidates.push((file, metadata.mode()));
            }
        }
    }
    if candidates.is_empty() {
        return;
    }
    let owned = owned_paths(scan);
    for (file, mode) in candidates {
        let text = file.display().to_string();
        if path_forms(&text).iter().any(|form| owned.contains(form)) {
            continue;
        }
        let bits = match (mode & 0o4000 != 0, mode & 0o2000 != 0) {
            (true, true) => "setuid and setgid",
            (true, false) => "setuid",
            _ => "setgid",
        };
        scan.heuristic(
            "unowned-setuid",
            Severity::Medium,
            Category::Setuid,
            format!("{text} is {bits} and no installed package owns it"),
            Evidence::new("file", text.clone()).detail(format!("mode {:o}", mode & 0o7777)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_usr_forms() {
        assert_eq!(path_forms("/usr/bin/su"), ["/usr/bin/su", "/bin/su"]);
        assert_eq!(path_forms("/bin/su"), ["/bin/su", "/usr/bin/su"]);
        assert_eq!(path_forms("/opt/x"), ["/opt/x", "/opt/x"]);
    }
}
