//! Hardening sysctls, with the values kernel-hardening-checker expects.
//!
//! When a sysctl is absent because the feature behind it is compiled out (no BPF syscall, no
//! kexec, no io_uring …), the attack surface is gone and the check passes, as
//! kernel-hardening-checker counts the matching kconfig option.

use enigm_runtime::sysroot::Sysroot;

use super::{Check, Rule};
use crate::model::{Finding, Level};

/// How the value is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Exactly this value.
    Equals(i64),
    /// This value or more.
    AtLeast(i64),
}

/// A sysctl and its expected value.
#[derive(Debug, Clone, Copy)]
pub struct SysctlRule {
    /// Dotted name, e.g. `kernel.kptr_restrict`.
    pub name: &'static str,
    /// Expected value.
    pub expect: Expect,
    /// Whether its absence means the feature is compiled out (pass) rather than missing (fail).
    pub absent_is_compiled_out: bool,
}

impl SysctlRule {
    /// The `/proc/sys` path.
    pub fn path(&self) -> String {
        format!("/proc/sys/{}", self.name.replace('.', "/"))
    }

    /// Compares the live value with the expectation.
    pub fn evaluate(&self, sysroot: &Sysroot) -> Finding {
        let text = match sysroot.read_value(self.path()) {
            Ok(Some(text)) => text,
            Ok(None) if self.absent_is_compiled_out => {
                return Finding::pass("absent: feature compiled out");
            }
            Ok(None) => return Finding::fail("absent: kernel lacks this protection"),
            Err(err) => return Finding::unavailable(format!("unreadable: {}", err.kind())),
        };
        let Ok(number) = text.parse::<i64>() else {
            return Finding::unavailable(format!("unexpected value {text:?}"));
        };
        let ok = match self.expect {
            Expect::Equals(expected) => number == expected,
            Expect::AtLeast(minimum) => number >= minimum,
        };
        Finding::pass_if(ok, text)
    }
}

struct Spec {
    name: &'static str,
    id: &'static str,
    expect: Expect,
    compiled_out_ok: bool,
    level: Level,
    title: &'static str,
    why: &'static str,
}

const SPECS: &[Spec] = &[
    Spec {
        name: "kernel.kptr_restrict",
        id: "kernel.sysctl.kptr_restrict",
        expect: Expect::Equals(2),
        compiled_out_ok: false,
        level: 2,
        title: "Kernel pointers hidden",
        why: "Leaked kernel addresses defeat KASLR for an attacker",
    },
    Spec {
        name: "kernel.dmesg_restrict",
        id: "kernel.sysctl.dmesg_restrict",
        expect: Expect::Equals(1),
        compiled_out_ok: false,
        level: 2,
        title: "Kernel log restricted",
        why: "The kernel log leaks addresses and state useful to exploits",
    },
    Spec {
        name: "kernel.yama.ptrace_scope",
        id: "kernel.sysctl.yama.ptrace_scope",
        expect: Expect::Equals(3),
        compiled_out_ok: false,
        level: 2,
        title: "ptrace disabled",
        why: "ptrace lets one process read and rewrite another's memory",
    },
    Spec {
        name: "kernel.unprivileged_bpf_disabled",
        id: "kernel.sysctl.unprivileged_bpf_disabled",
        expect: Expect::Equals(1),
        compiled_out_ok: true,
        level: 2,
        title: "Unprivileged BPF disabled",
        why: "Unprivileged BPF is a frequent kernel exploitation vector",
    },
    Spec {
        name: "kernel.randomize_va_space",
        id: "kernel.sysctl.randomize_va_space",
        expect: Expect::Equals(2),
        compiled_out_ok: false,
        level: 2,
        title: "Full ASLR",
        why: "Address randomisation makes memory-corruption exploits unreliable",
    },
    Spec {
        name: "fs.protected_symlinks",
        id: "kernel.sysctl.fs.protected_symlinks",
        expect: Expect::Equals(1),
        compiled_out_ok: false,
        level: 2,
        title: "Protected symlinks",
        why: "Stops symlink races in world-writable sticky directories",
    },
    Spec {
        name: "fs.protected_hardlinks",
        id: "kernel.sysctl.fs.protected_hardlinks",
        expect: Expect::Equals(1),
        compiled_out_ok: false,
        level: 2,
        title: "Protected hardlinks",
        why: "Stops hardlinks to files the user cannot write",
    },
    Spec {
        name: "fs.protected_fifos",
        id: "kernel.sysctl.fs.protected_fifos",
        expect: Expect::Equals(2),
        compiled_out_ok: false,
        level: 2,
        title: "Protected FIFOs",
        why: "Stops spoofed FIFOs in world-writable sticky directories",
    },
    Spec {
        name: "fs.protected_regular",
        id: "kernel.sysctl.fs.protected_regular",
        expect: Expect::Equals(2),
        compiled_out_ok: false,
        level: 2,
        title: "Protected regular files",
        why: "Stops spoofed files in world-writable sticky directories",
    },
    Spec {
        name: "fs.suid_dumpable",
        id: "kernel.sysctl.fs.suid_dumpable",
        expect: Expect::Equals(0),
        compiled_out_ok: false,
        level: 2,
        title: "No core dumps of setuid programs",
        why: "Core dumps of privileged programs can leak secrets",
    },
    Spec {
        name: "kernel.perf_event_paranoid",
        id: "kernel.sysctl.perf_event_paranoid",
        expect: Expect::AtLeast(3),
        compiled_out_ok: true,
        level: 3,
        title: "perf events restricted",
        why: "perf events expose kernel side channels and a large attack surface",
    },
    Spec {
        name: "net.core.bpf_jit_harden",
        id: "kernel.sysctl.net.core.bpf_jit_harden",
        expect: Expect::Equals(2),
        compiled_out_ok: true,
        level: 3,
        title: "BPF JIT hardened",
        why: "JIT spraying turns BPF programs into attacker-chosen machine code",
    },
    Spec {
        name: "kernel.kexec_load_disabled",
        id: "kernel.sysctl.kexec_load_disabled",
        expect: Expect::Equals(1),
        compiled_out_ok: true,
        level: 3,
        title: "kexec disabled",
        why: "kexec replaces the running kernel without going through verified boot",
    },
    Spec {
        name: "kernel.io_uring_disabled",
        id: "kernel.sysctl.io_uring_disabled",
        expect: Expect::Equals(2),
        compiled_out_ok: true,
        level: 3,
        title: "io_uring disabled",
        why: "io_uring has been a large source of kernel privilege escalations",
    },
    Spec {
        name: "user.max_user_namespaces",
        id: "kernel.sysctl.user.max_user_namespaces",
        expect: Expect::Equals(0),
        compiled_out_ok: true,
        level: 3,
        title: "User namespaces disabled",
        why: "Unprivileged user namespaces expose kernel code meant for root",
    },
    Spec {
        name: "vm.unprivileged_userfaultfd",
        id: "kernel.sysctl.vm.unprivileged_userfaultfd",
        expect: Expect::Equals(0),
        compiled_out_ok: true,
        level: 3,
        title: "Unprivileged userfaultfd disabled",
        why: "userfaultfd makes kernel race conditions easy to win",
    },
    Spec {
        name: "kernel.sysrq",
        id: "kernel.sysctl.sysrq",
        expect: Expect::Equals(0),
        compiled_out_ok: true,
        level: 3,
        title: "Magic SysRq disabled",
        why: "SysRq keys can kill processes or dump memory from the keyboard",
    },
    Spec {
        name: "dev.tty.ldisc_autoload",
        id: "kernel.sysctl.dev.tty.ldisc_autoload",
        expect: Expect::Equals(0),
        compiled_out_ok: false,
        level: 3,
        title: "No line-discipline autoload",
        why: "Autoloaded line disciplines expose rarely used, bug-prone kernel code",
    },
    Spec {
        name: "dev.tty.legacy_tiocsti",
        id: "kernel.sysctl.dev.tty.legacy_tiocsti",
        expect: Expect::Equals(0),
        compiled_out_ok: false,
        level: 3,
        title: "TIOCSTI disabled",
        why: "TIOCSTI lets a program type commands into another's terminal",
    },
];

/// The sysctl checks.
pub(super) fn checks() -> Vec<Check> {
    SPECS
        .iter()
        .map(|spec| Check {
            id: spec.id,
            category: "kernel",
            title: spec.title,
            level: spec.level,
            why: spec.why,
            fix: fix_text(spec.name),
            inputs: &[],
            rule: Rule::Sysctl(SysctlRule {
                name: spec.name,
                expect: spec.expect,
                absent_is_compiled_out: spec.compiled_out_ok,
            }),
        })
        .collect()
}

/// The fix line for a sysctl: the `sysctl.d` setting to add.
fn fix_text(name: &'static str) -> &'static str {
    match name {
        "kernel.kptr_restrict" => "Set kernel.kptr_restrict=2 in /etc/sysctl.d",
        "kernel.dmesg_restrict" => "Set kernel.dmesg_restrict=1 in /etc/sysctl.d",
        "kernel.yama.ptrace_scope" => "Set kernel.yama.ptrace_scope=3 in /etc/sysctl.d",
        "kernel.unprivileged_bpf_disabled" => {
            "Set kernel.unprivileged_bpf_disabled=1 in /etc/sysctl.d"
        }
        "kernel.randomize_va_space" => "Set kernel.randomize_va_space=2 in /etc/sysctl.d",
        "fs.protected_symlinks" => "Set fs.protected_symlinks=1 in /etc/sysctl.d",
        "fs.protected_hardlinks" => "Set fs.protected_hardlinks=1 in /etc/sysctl.d",
        "fs.protected_fifos" => "Set fs.protected_fifos=2 in /etc/sysctl.d",
        "fs.protected_regular" => "Set fs.protected_regular=2 in /etc/sysctl.d",
        "fs.suid_dumpable" => "Set fs.suid_dumpable=0 in /etc/sysctl.d",
        "kernel.perf_event_paranoid" => "Set kernel.perf_event_paranoid=3 in /etc/sysctl.d",
        "net.core.bpf_jit_harden" => "Set net.core.bpf_jit_harden=2 in /etc/sysctl.d",
        "kernel.kexec_load_disabled" => "Set kernel.kexec_load_disabled=1 in /etc/sysctl.d",
        "kernel.io_uring_disabled" => "Set kernel.io_uring_disabled=2 in /etc/sysctl.d",
        "user.max_user_namespaces" => "Set user.max_user_namespaces=0 in /etc/sysctl.d",
        "vm.unprivileged_userfaultfd" => "Set vm.unprivileged_userfaultfd=0 in /etc/sysctl.d",
        "kernel.sysrq" => "Set kernel.sysrq=0 in /etc/sysctl.d",
        "dev.tty.ldisc_autoload" => "Set dev.tty.ldisc_autoload=0 in /etc/sysctl.d",
        "dev.tty.legacy_tiocsti" => {
            "Set dev.tty.legacy_tiocsti=0 in /etc/sysctl.d (kernel 6.2 or later)"
        }
        _ => "Set the expected value in /etc/sysctl.d",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Outcome;

    #[test]
    fn sysctl_rule_table() {
        let dir = tempfile::tempdir().unwrap();
        let root = Sysroot::new(dir.path());
        let write = |name: &str, value: &str| {
            let path = root.path(format!("/proc/sys/{}", name.replace('.', "/")));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, value).unwrap();
        };
        let rule = |name: &'static str, expect, absent_ok| SysctlRule {
            name,
            expect,
            absent_is_compiled_out: absent_ok,
        };
        write("kernel.kptr_restrict", "2\n");
        write("kernel.dmesg_restrict", "0\n");
        write("kernel.perf_event_paranoid", "4\n");
        write("kernel.yama.ptrace_scope", "garbage\n");
        let cases = [
            (
                rule("kernel.kptr_restrict", Expect::Equals(2), false),
                Outcome::Pass,
                "2",
            ),
            (
                rule("kernel.dmesg_restrict", Expect::Equals(1), false),
                Outcome::Fail,
                "0",
            ),
            (
                rule("kernel.perf_event_paranoid", Expect::AtLeast(3), true),
                Outcome::Pass,
                "4",
            ),
            (
                rule("kernel.yama.ptrace_scope", Expect::Equals(3), false),
                Outcome::Unavailable,
                "unexpected value \"garbage\"",
            ),
            (
                rule("kernel.io_uring_disabled", Expect::Equals(2), true),
                Outcome::Pass,
                "absent: feature compiled out",
            ),
            (
                rule("dev.tty.legacy_tiocsti", Expect::Equals(0), false),
                Outcome::Fail,
                "absent: kernel lacks this protection",
            ),
        ];
        for (rule, outcome, observed) in cases {
            let finding = rule.evaluate(&root);
            assert_eq!(
                (finding.outcome, finding.observed.as_str()),
                (outcome, observed),
                "{}",
                rule.name
            );
        }
    }

    #[test]
    fn every_sysctl_has_its_own_fix() {
        for spec in SPECS {
            assert!(fix_text(spec.name).contains(spec.name), "{}", spec.name);
        }
    }
}
