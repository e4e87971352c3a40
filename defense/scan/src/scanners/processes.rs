//! Running processes from `/proc`: each process's name (`comm`), program (`argv[0]`, nothing
//! after it) and executable link are matched against process and file indicators; an
//! executable that was deleted or lives in a memfd, and `LD_PRELOAD` injection (the one
//! variable read from `environ`; everything else in it is discarded unread), are reported as
//! heuristics.

use std::path::{Path, PathBuf};

use enigm_ioc::{Attribute, Observation};

use crate::context::Scan;
use crate::finding::{Category, Evidence, Severity};

/// Most bytes of `cmdline` read (only `argv[0]` is kept).
const CMDLINE_LIMIT: u64 = 4096;
/// Most bytes of `environ` read.
const ENVIRON_LIMIT: u64 = 128 * 1024;

/// What `/proc/<pid>/exe` points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExeLink {
    /// The path, without the kernel's ` (deleted)` suffix.
    pub path: String,
    /// The file was deleted after the process started it.
    pub deleted: bool,
    /// The executable is an anonymous memory file (`memfd_create`).
    pub memfd: bool,
}

/// Parses the target of `/proc/<pid>/exe`.
pub fn parse_exe_link(target: &str) -> ExeLink {
    let (path, deleted) = match target.strip_suffix(" (deleted)") {
        Some(path) => (path, true),
        None => (target, false),
    };
    ExeLink {
        path: path.to_owned(),
        deleted,
        memfd: path.starts_with("/memfd:"),
    }
}

/// `argv[0]` from `/proc/<pid>/cmdline` bytes.
pub fn argv0(cmdline: &[u8]) -> Option<String> {
    let first = cmdline.split(|b| *b == 0).next()?;
    (!first.is_empty()).then(|| String::from_utf8_lossy(first).into_owned())
}

/// The value of `LD_PRELOAD` in `/proc/<pid>/environ` bytes, if set and not empty.
pub fn ld_preload(environ: &[u8]) -> Option<String> {
    environ
        .split(|b| *b == 0)
        .find_map(|entry| entry.strip_prefix(b"LD_PRELOAD="))
        .filter(|value| !value.is_empty())
        .map(|value| String::from_utf8_lossy(value).into_owned())
}

/// The last path component.
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Scans every process.
pub fn scan(scan: &mut Scan<'_>) {
    scan.set_scanner("processes");
    let proc_dir = Path::new("/proc");
    for entry in scan.list(proc_dir) {
        if entry.name.is_empty() || !entry.name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        scan_process(scan, &entry.path, &entry.name);
    }
}

fn scan_process(scan: &mut Scan<'_>, dir: &Path, pid: &str) {
    let fs = scan.fs;
    let file = |name: &str| -> PathBuf { dir.join(name) };
    // A process may exit while it is read: missing pieces are skipped, not errors.
    let comm = fs
        .read_prefix(&file("comm"), 64)
        .ok()
        .map(|b| {
            String::from_utf8_lossy(&b)
                .trim_end_matches('\n')
                .to_owned()
        })
        .filter(|c| !c.is_empty());
    let program = fs
        .read_prefix(&file("cmdline"), CMDLINE_LIMIT)
        .ok()
        .and_then(|b| argv0(&b));
    let exe = fs.read_link(&file("exe")).ok().map(|t| parse_exe_link(&t));
    let Some(name) = comm
        .clone()
        .or_else(|| program.as_deref().map(|p| basename(p).to_owned()))
    else {
        return;
    };

    let mut observation = Observation::new().with(Attribute::ProcessName, &name);
    if let Some(program) = &program {
        let program_name = basename(program);
        if program_name != name {
            observation.push(Attribute::ProcessName, program_name);
        }
    }
    if let Some(exe) = &exe
        && !exe.memfd
    {
        observation.push(Attribute::FilePath, &exe.path);
        let exe_name = basename(&exe.path);
        observation.push(Attribute::FileName, exe_name);
        if exe_name != name {
            observation.push(Attribute::ProcessName, exe_name);
        }
    }
    let subject = exe
        .as_ref()
        .filter(|e| !e.memfd)
        .map_or_else(|| name.clone(), |e| e.path.clone());
    let detail = format!("pid {pid}, name {name}");
    scan.observe(Category::Process, &observation, || {
        Evidence::new("process", subject.clone()).detail(detail.clone())
    });

    if let Some(exe) = &exe {
        if exe.memfd {
            scan.heuristic(
                "memfd-executable",
                Severity::High,
                Category::Process,
                format!("process {name} runs from an anonymous memory file"),
                Evidence::new("process", name.clone())
                    .matched(exe.path.clone())
                    .detail(detail.clone()),
            );
        } else if exe.deleted {
            scan.heuristic(
                "deleted-executable",
                Severity::Medium,
                Category::Process,
                format!("process {name} runs a deleted executable"),
                Evidence::new("process", exe.path.clone()).detail(detail.clone()),
            );
        }
    }

    // Only the LD_PRELOAD entry of the environment is kept; the rest is dropped here.
    let preload = fs
        .read_prefix(&file("environ"), ENVIRON_LIMIT)
        .ok()
        .and_then(|environ| ld_preload(&environ));
    if let Some(preload) = preload {
        for library in preload.split([' ', ':']).filter(|l| !l.is_empty()) {
            let observation = Observation::new()
                .with(Attribute::FilePath, library)
                .with(Attribute::FileName, basename(library));
            scan.observe(Category::Process, &observation, || {
                Evidence::new("preloaded-library", library).detail(detail.clone())
            });
        }
        scan.heuristic(
            "preload-injection",
            Severity::Medium,
            Category::Process,
            format!("process {name} runs with LD_PRELOAD"),
            Evidence::new("process", subject)
                .matched(preload)
                .detail(detail),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exe_links_parse() {
        let cases = [
            ("/usr/bin/bash", "/usr/bin/bash", false, false),
            ("/tmp/x (deleted)", "/tmp/x", true, false),
            ("/memfd:payload (deleted)", "/memfd:payload", true, true),
        ];
        for (target, path, deleted, memfd) in cases {
            assert_eq!(
                parse_exe_link(target),
                ExeLink {
                    path: path.to_owned(),
                    deleted,
                    memfd
                },
                "{target}"
            );
        }
    }

    #[test]
    fn only_argv0_and_ld_preload_are_kept() {
        assert_eq!(
            argv0(b"/usr/bin/x\0--secret\0arg\0").as_deref(),
            Some("/usr/bin/x")
        );
        assert_eq!(argv0(b"\0"), None);
        assert_eq!(
            ld_preload(b"HOME=/home/a\0LD_PRELOAD=/tmp/h.so\0TOKEN=abc\0").as_deref(),
            Some("/tmp/h.so")
        );
        assert_eq!(ld_preload(b"HOME=/home/a\0LD_PRELOAD=\0"), None);
        assert_eq!(ld_preload(b"XLD_PRELOAD=/x\0"), None);
        assert_eq!(basename("/a/b/c"), "c");
        assert_eq!(basename("c"), "c");
    }
}
