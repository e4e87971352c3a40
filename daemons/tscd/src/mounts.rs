//! Mount table and device-mapper lookups: which filesystem holds a path, and whether its block
//! device is dm-verity or dm-crypt.

use enigm_runtime::sysroot::Sysroot;

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the backing device.
    pub device: String,
    /// Where it is mounted.
    pub mount_point: String,
    /// Per-mount options (`rw`, `ro`, …).
    pub options: String,
    /// Filesystem type.
    pub fs_type: String,
    /// Mount source (e.g. `/dev/mapper/root`).
    pub source: String,
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let left: Vec<&str> = left.split(' ').collect();
    let mut right = right.split(' ');
    Some(Mount {
        device: left.get(2)?.to_string(),
        mount_point: unescape(left.get(4)?),
        options: left.get(5)?.to_string(),
        fs_type: right.next()?.to_owned(),
        source: unescape(right.next()?),
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount that holds `path`: the last mounted one with the longest matching mount point.
pub fn mount_for<'a>(mounts: &'a [Mount], path: &str) -> Option<&'a Mount> {
    mounts
        .iter()
        .filter(|mount| is_under(path, &mount.mount_point))
        .fold(None, |best: Option<&Mount>, mount| match best {
            Some(best) if best.mount_point.len() > mount.mount_point.len() => Some(best),
            _ => Some(mount),
        })
}

fn is_under(path: &str, mount_point: &str) -> bool {
    mount_point == "/" || path == mount_point || path.starts_with(&format!("{mount_point}/"))
}

/// Device-mapper target kinds, read from `/sys/dev/block/M:m/dm/uuid` (set by cryptsetup and
/// veritysetup as `CRYPT-VERITY-…`, `CRYPT-LUKS2-…`, `CRYPT-PLAIN-…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmKind {
    /// dm-verity.
    Verity,
    /// dm-crypt (LUKS or plain).
    Crypt,
    /// Another device-mapper target (LVM, …).
    Other,
}

/// The dm kinds of a block device and of every device it is stacked on (`slaves/`).
pub fn dm_stack(sysroot: &Sysroot, device: &str) -> Vec<DmKind> {
    let mut kinds = Vec::new();
    collect_dm(sysroot, &format!("/sys/dev/block/{device}"), &mut kinds, 0);
    kinds
}

fn collect_dm(sysroot: &Sysroot, dir: &str, kinds: &mut Vec<DmKind>, depth: usize) {
    if depth > 8 {
        return;
    }
    if let Ok(Some(uuid)) = sysroot.read_value(format!("{dir}/dm/uuid")) {
        kinds.push(if uuid.starts_with("CRYPT-VERITY-") {
            DmKind::Verity
        } else if uuid.starts_with("CRYPT-") {
            DmKind::Crypt
        } else {
            DmKind::Other
        });
    }
    if let Ok(Some(slaves)) = sysroot.list_dir(format!("{dir}/slaves")) {
        for slave in slaves {
            collect_dm(
                sysroot,
                &format!("/sys/class/block/{slave}"),
                kinds,
                depth + 1,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 253:0 / / ro,relatime shared:1 - erofs /dev/mapper/root ro
23 22 0:5 / /proc rw,nosuid - proc proc rw
24 22 253:1 / /home rw,nosuid shared:2 - ext4 /dev/mapper/home rw
25 24 253:2 / /home/user\\040data rw - ext4 /dev/mapper/x rw
26 22 0:7 / /sys/kernel/debug rw - debugfs debugfs rw
garbage line
";

    #[test]
    fn parses_mountinfo() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 5);
        assert_eq!(mounts[0].device, "253:0");
        assert_eq!(mounts[0].fs_type, "erofs");
        assert_eq!(mounts[3].mount_point, "/home/user data");
    }

    #[test]
    fn finds_the_mount_holding_a_path() {
        let mounts = parse_mountinfo(MOUNTINFO);
        let cases = [
            ("/", "/"),
            ("/etc/passwd", "/"),
            ("/home", "/home"),
            ("/home/alice", "/home"),
            ("/homeless", "/"),
            ("/home/user data/x", "/home/user data"),
        ];
        for (path, expected) in cases {
            assert_eq!(
                mount_for(&mounts, path).unwrap().mount_point,
                expected,
                "{path}"
            );
        }
    }

    #[test]
    fn reads_device_mapper_stacks() {
        let dir = tempfile::tempdir().unwrap();
        let w = |p: &str, v: &str| {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, v).unwrap();
        };
        w("sys/dev/block/253:0/dm/uuid", "CRYPT-VERITY-abc-root\n");
        w("sys/dev/block/253:1/dm/uuid", "LVM-xyz\n");
        std::fs::create_dir_all(dir.path().join("sys/dev/block/253:1/slaves/dm-2")).unwrap();
        w("sys/class/block/dm-2/dm/uuid", "CRYPT-LUKS2-0123-luks\n");
        let root = Sysroot::new(dir.path());
        assert_eq!(dm_stack(&root, "253:0"), vec![DmKind::Verity]);
        assert_eq!(dm_stack(&root, "253:1"), vec![DmKind::Other, DmKind::Crypt]);
        assert_eq!(dm_stack(&root, "8:1"), Vec::<DmKind>::new());
    }
}
