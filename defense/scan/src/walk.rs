//! Bounded directory walks: depth-first, links never followed, at most `max_depth` levels and
//! a shared entry budget, through [`ScanFs`] (so the content boundary holds for every
//! directory and every entry).

use std::path::Path;

use crate::fs::{DirEntry, EntryKind, FsError, ScanFs};

/// The remaining number of entries a scan may visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget(pub usize);

/// Walks `root`, calling `visit` for every entry (files, directories, links, others) below
/// it. Unreadable directories go to `on_error`; the walk goes on. Returns false when the
/// budget ran out.
pub fn walk(
    fs: &ScanFs,
    root: &Path,
    max_depth: usize,
    budget: &mut Budget,
    visit: &mut dyn FnMut(&DirEntry),
    on_error: &mut dyn FnMut(&FsError),
) -> bool {
    let mut pending = vec![(root.to_owned(), 0usize)];
    while let Some((dir, depth)) = pending.pop() {
        let entries = match fs.list(&dir) {
            Ok(entries) => entries,
            Err(error) => {
                on_error(&error);
                continue;
            }
        };
        for entry in entries.iter().rev() {
            if budget.0 == 0 {
                return false;
            }
            budget.0 -= 1;
            visit(entry);
            if entry.kind == EntryKind::Dir && depth + 1 < max_depth {
                pending.push((entry.path.clone(), depth + 1));
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::ContentBoundary;
    use enigm_runtime::sysroot::Sysroot;

    #[test]
    fn walks_are_bounded_and_skip_the_boundary_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b/c/d")).unwrap();
        std::fs::create_dir_all(root.join("a/home")).unwrap();
        std::fs::write(root.join("a/b/c/d/deep"), "").unwrap();
        std::fs::write(root.join("a/f"), "").unwrap();
        std::fs::write(root.join("a/home/private"), "").unwrap();
        std::os::unix::fs::symlink(root.join("a"), root.join("a/b/loop")).unwrap();
        let fs = ScanFs::new(Sysroot::new(root), ContentBoundary::new(["/a/home"]));
        let run = |depth: usize, budget: usize| {
            let mut seen = Vec::new();
            let mut budget = Budget(budget);
            let done = walk(
                &fs,
                Path::new("/a"),
                depth,
                &mut budget,
                &mut |e| seen.push(e.path.display().to_string()),
                &mut |e| panic!("{e}"),
            );
            seen.sort();
            (done, seen)
        };
        let (done, seen) = run(10, 100);
        assert!(done);
        assert_eq!(
            seen,
            [
                "/a/b",
                "/a/b/c",
                "/a/b/c/d",
                "/a/b/c/d/deep",
                "/a/b/loop",
                "/a/f"
            ]
        );
        let (_, seen) = run(2, 100);
        assert_eq!(seen, ["/a/b", "/a/b/c", "/a/b/loop", "/a/f"]);
        let (done, seen) = run(10, 3);
        assert!(!done);
        assert_eq!(seen.len(), 3);
    }
}
