//! Fixture trees for three kinds of device, each with its expected level and failing checks.

use std::collections::BTreeSet;
use std::path::PathBuf;

use enigm_runtime::sysroot::Sysroot;
use enigm_tscd::config::PostureConfig;
use enigm_tscd::evaluate::Evaluator;
use enigm_tscd::model::{Outcome, Posture};
use enigm_tscd::signals::SignalSnapshot;

/// 2026-11-22T00:00:00Z.
const NOW: u64 = 1_795_305_600;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn evaluate(name: &str) -> Posture {
    Evaluator::new(Sysroot::new(fixture(name)), PostureConfig::default())
        .evaluate(&SignalSnapshot::default(), NOW)
}

fn ids_with(posture: &Posture, outcome: Outcome) -> BTreeSet<&str> {
    posture
        .checks
        .iter()
        .filter(|c| c.outcome() == outcome)
        .map(|c| c.id.as_str())
        .collect()
}

#[test]
fn fixture_table() {
    let cases: &[(&str, u8, bool, &[&str])] = &[
        ("hardened", 4, false, &[]),
        (
            "debian-default",
            0,
            false,
            &[
                "boot.secure-boot",
                "boot.dm-verity-root",
                "kernel.selinux-enforcing",
                "kernel.lockdown",
                "kernel.module-signatures",
                "kernel.lockdown-confidentiality",
                "kernel.modules-disabled",
                "kernel.sysctl.kptr_restrict",
                "kernel.sysctl.yama.ptrace_scope",
                "kernel.sysctl.unprivileged_bpf_disabled",
                "kernel.sysctl.fs.protected_fifos",
                "kernel.sysctl.net.core.bpf_jit_harden",
                "kernel.sysctl.kexec_load_disabled",
                "kernel.sysctl.user.max_user_namespaces",
                "kernel.sysctl.sysrq",
                "kernel.sysctl.dev.tty.ldisc_autoload",
                "kernel.sysctl.dev.tty.legacy_tiocsti",
                "hardware.data-encryption",
                "hardware.iommu",
                "hardware.swap",
                "debug.debugfs",
                "debug.core-dumps",
            ],
        ),
        (
            "android-unlocked",
            0,
            false,
            &[
                "boot.verified-boot",
                "boot.bootloader-locked",
                "debug.usb-debugging",
                "kernel.lockdown",
                "kernel.lockdown-confidentiality",
                "kernel.modules-disabled",
                "kernel.sysctl.yama.ptrace_scope",
                "kernel.sysctl.unprivileged_bpf_disabled",
                "debug.core-dumps",
            ],
        ),
    ];
    for (name, level, runtime_issue, failing) in cases {
        let posture = evaluate(name);
        let expected: BTreeSet<&str> = failing.iter().copied().collect();
        assert_eq!(
            ids_with(&posture, Outcome::Fail),
            expected,
            "{name}: failing checks"
        );
        assert_eq!(posture.level, *level, "{name}: level");
        assert_eq!(
            posture.runtime_issue, *runtime_issue,
            "{name}: runtime issue"
        );
        assert_eq!(posture.evaluated_at, NOW);
    }
}

#[test]
fn observed_values_explain_the_result() {
    let debian = evaluate("debian-default");
    let observed = |id: &str| {
        debian
            .checks
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.observed.clone())
            .unwrap()
    };
    assert_eq!(observed("boot.secure-boot"), "disabled");
    assert_eq!(observed("kernel.lockdown"), "none");
    assert_eq!(observed("hardware.swap"), "unencrypted: /dev/sda3");
    assert_eq!(observed("debug.debugfs"), "mounted at /sys/kernel/debug");
    assert_eq!(
        observed("patch.security-patch-age"),
        "no security patch level recorded"
    );
    assert_eq!(observed("kernel.sysctl.kptr_restrict"), "0");

    let android = evaluate("android-unlocked");
    let observed = |id: &str| {
        android
            .checks
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.observed.clone())
            .unwrap()
    };
    assert_eq!(observed("boot.verified-boot"), "orange");
    assert_eq!(
        observed("boot.bootloader-locked"),
        "unlocked (ro.boot.flash.locked=0)"
    );
    assert_eq!(
        observed("debug.usb-debugging"),
        "usb config \"mtp,adb\", adbd running"
    );
    assert_eq!(
        observed("patch.security-patch-age"),
        "2026-10-05, 48 days old (max 90)"
    );
    assert_eq!(
        observed("hardware.data-encryption"),
        "encrypted (file-based)"
    );

    let hardened = evaluate("hardened");
    let observed = |id: &str| {
        hardened
            .checks
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.observed.clone())
            .unwrap()
    };
    assert_eq!(
        observed("boot.dm-verity-root"),
        "/dev/mapper/root (erofs) on 253:0"
    );
    assert_eq!(observed("hardware.swap"), "encrypted or in RAM: /dev/zram0");
}

#[test]
fn signals_are_runtime_checks_and_never_guessed() {
    let evaluator = Evaluator::new(Sysroot::new(fixture("hardened")), PostureConfig::default());
    let quiet = evaluator.evaluate(&SignalSnapshot::default(), NOW);
    for check in quiet.checks.iter().filter(|c| c.category == "signal") {
        assert_eq!(check.outcome(), Outcome::Unavailable, "{}", check.id);
    }
    let mut snapshot = SignalSnapshot::default();
    snapshot.insert(
        "signal.active-defense",
        enigm_tscd::model::Finding::fail("2 findings: Pegasus"),
    );
    let alarmed = evaluator.evaluate(&snapshot, NOW);
    assert!(alarmed.runtime_issue);
    assert_eq!(
        alarmed.level, 4,
        "a runtime issue does not change the level"
    );
}

#[test]
fn patch_age_follows_the_clock_and_the_limit() {
    let day = 86_400;
    let cases = [
        (NOW, 90, Outcome::Pass),
        (NOW + 200 * day, 90, Outcome::Fail),
        (NOW + 200 * day, 365, Outcome::Pass),
        (NOW - 400 * day, 90, Outcome::Fail),
    ];
    for (now, max, expected) in cases {
        let config = PostureConfig {
            max_patch_age_days: max,
            ..PostureConfig::default()
        };
        let posture = Evaluator::new(Sysroot::new(fixture("hardened")), config)
            .evaluate(&SignalSnapshot::default(), now);
        let check = posture
            .checks
            .iter()
            .find(|c| c.id == "patch.security-patch-age")
            .unwrap();
        assert_eq!(
            check.outcome(),
            expected,
            "now {now} max {max}: {}",
            check.observed
        );
    }
}

#[test]
fn missing_or_malformed_inputs_never_pass() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for (path, content) in [
        ("proc/sys/kernel/kptr_restrict", "two"),
        ("proc/sys/kernel/tainted", "lots"),
        ("sys/fs/selinux/enforce", "maybe"),
        ("proc/self/mountinfo", "garbage\n\n"),
        ("etc/os-release", "ENIGM_SECURITY_PATCH=someday"),
    ] {
        std::fs::create_dir_all(root.join(path).parent().unwrap()).unwrap();
        std::fs::write(root.join(path), content).unwrap();
    }
    let posture = Evaluator::new(Sysroot::new(root), PostureConfig::default())
        .evaluate(&SignalSnapshot::default(), NOW);
    assert_eq!(posture.level, 0);
    let outcome = |id: &str| {
        posture
            .checks
            .iter()
            .find(|c| c.id == id)
            .unwrap()
            .outcome()
    };
    assert_eq!(outcome("kernel.sysctl.kptr_restrict"), Outcome::Unavailable);
    assert_eq!(outcome("kernel.tainted"), Outcome::Unavailable);
    assert_eq!(outcome("kernel.selinux-enforcing"), Outcome::Fail);
    assert_eq!(outcome("boot.dm-verity-root"), Outcome::Unavailable);
    assert_eq!(outcome("patch.security-patch-age"), Outcome::Unavailable);
}

#[test]
fn unreadable_inputs_are_undetermined_not_passed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for (path, content) in [
        ("proc/sys/kernel/core_pattern", "|/bin/false"),
        (
            "run/enigm/system-properties",
            "[ro.boot.verifiedbootstate]: [green]",
        ),
    ] {
        std::fs::create_dir_all(root.join(path).parent().unwrap()).unwrap();
        std::fs::write(root.join(path), content).unwrap();
    }
    std::fs::create_dir_all(root.join("sys/class/iommu/dmar0")).unwrap();
    // A directory where a file is expected cannot be read as one, even by root.
    std::fs::create_dir_all(root.join("proc/sys/kernel/core_pattern_dir")).unwrap();
    std::fs::remove_file(root.join("proc/sys/kernel/core_pattern")).unwrap();
    std::fs::rename(
        root.join("proc/sys/kernel/core_pattern_dir"),
        root.join("proc/sys/kernel/core_pattern"),
    )
    .unwrap();
    std::fs::remove_file(root.join("run/enigm/system-properties")).unwrap();
    std::fs::create_dir(root.join("run/enigm/system-properties")).unwrap();
    std::fs::set_permissions(
        root.join("sys/class/iommu"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();

    let posture = Evaluator::new(Sysroot::new(root), PostureConfig::default())
        .evaluate(&SignalSnapshot::default(), NOW);
    let check = |id: &str| posture.checks.iter().find(|c| c.id == id).unwrap().clone();
    let core = check("debug.core-dumps");
    assert_eq!(core.outcome(), Outcome::Unavailable, "{}", core.observed);
    assert!(
        core.observed.contains("core_pattern is unreadable"),
        "{}",
        core.observed
    );
    // An unreadable property source makes the Android checks undetermined, not "not applicable".
    assert_eq!(check("boot.verified-boot").outcome(), Outcome::Unavailable);
    assert_eq!(
        check("debug.usb-debugging").outcome(),
        Outcome::Pass,
        "no adb property known"
    );
    assert_eq!(
        check("boot.bootloader-locked").outcome(),
        Outcome::Unavailable
    );
}
