//! Mounted file systems (`/proc/mounts`): a system partition (the verified root, `/usr`,
//! Android's `/system`, `/vendor`, ...) mounted read-write is a heuristic finding, since the
//! image is verified read-only and a writable one is how persistent implants get in.

use std::path::{Path, PathBuf};

use crate::context::Scan;
use crate::finding::{Category, Evidence, Severity};

/// One mount: its point (octal escapes decoded), type and whether it is read-write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Mount point.
    pub point: PathBuf,
    /// File system type.
    pub fs_type: String,
    /// Mounted `rw`.
    pub writable: bool,
}

/// Decodes `\040`-style escapes of `/proc/mounts`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(value) = u8::from_str_radix(&field[i + 1..i + 4], 8)
        {
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/mounts`.
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_source, point, fs_type, options) = (
                fields.next()?,
                fields.next()?,
                fields.next()?,
                fields.next()?,
            );
            Some(Mount {
                point: PathBuf::from(unescape(point)),
                fs_type: fs_type.to_owned(),
                writable: options.split(',').any(|o| o == "rw"),
            })
        })
        .collect()
}

/// Scans the mount table.
pub fn scan(scan: &mut Scan<'_>) {
    scan.set_scanner("mounts");
    let Some(text) = scan.read_text(Path::new("/proc/mounts")) else {
        return;
    };
    for mount in parse_mounts(&text) {
        scan.count();
        if mount.writable && scan.config.system_mounts.contains(&mount.point) {
            let point = mount.point.display().to_string();
            scan.heuristic(
                "writable-system-partition",
                Severity::Medium,
                Category::Mount,
                format!("system partition {point} is mounted read-write"),
                Evidence::new("mount", point).detail(format!("type {}", mount.fs_type)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_parse() {
        let text =
            "/dev/dm-0 / erofs ro,relatime 0 0\n/dev/sda2 /my\\040disk ext4 rw,noatime 0 0\nbad\n";
        assert_eq!(
            parse_mounts(text),
            [
                Mount {
                    point: "/".into(),
                    fs_type: "erofs".into(),
                    writable: false
                },
                Mount {
                    point: "/my disk".into(),
                    fs_type: "ext4".into(),
                    writable: true
                },
            ]
        );
    }
}
