//! Kernel integrity checks: lockdown, module signatures, SELinux, and taint.

use super::{Check, Context, Rule, Unreadable, exists, value};
use crate::model::{Finding, RUNTIME};

pub(super) const CHECKS: &[Check] = &[
    Check {
        id: "kernel.selinux-enforcing",
        category: "kernel",
        title: "SELinux enforcing",
        level: 1,
        why: "SELinux confines every service; permissive or disabled means nothing is confined",
        fix: "Boot with SELinux enabled and enforcing (enforcing=1, SELINUX=enforcing)",
        inputs: &["/sys/fs/selinux/enforce"],
        rule: Rule::Probe(selinux_enforcing),
    },
    Check {
        id: "kernel.lockdown",
        category: "kernel",
        title: "Kernel lockdown",
        level: 2,
        why: "Lockdown stops root from modifying the running kernel (raw memory, unsigned modules, kexec)",
        fix: "Boot with lockdown=integrity (implied by Secure Boot on most distributions)",
        inputs: &["/sys/kernel/security/lockdown"],
        rule: Rule::Probe(lockdown_integrity),
    },
    Check {
        id: "kernel.module-signatures",
        category: "kernel",
        title: "Kernel module signatures enforced",
        level: 2,
        why: "Unsigned modules run with full kernel privilege; enforcement refuses them",
        fix: "Boot with module.sig_enforce=1 or lockdown=integrity",
        inputs: &[
            "/sys/module/module/parameters/sig_enforce",
            "/proc/sys/kernel/modules_disabled",
        ],
        rule: Rule::Probe(module_signatures),
    },
    Check {
        id: "kernel.lockdown-confidentiality",
        category: "kernel",
        title: "Kernel lockdown (confidentiality)",
        level: 4,
        why: "Confidentiality mode also stops root from reading kernel memory and secrets",
        fix: "Boot with lockdown=confidentiality",
        inputs: &["/sys/kernel/security/lockdown"],
        rule: Rule::Probe(lockdown_confidentiality),
    },
    Check {
        id: "kernel.modules-disabled",
        category: "kernel",
        title: "Module loading disabled",
        level: 4,
        why: "With loading disabled after boot, no module can be added to the running kernel",
        fix: "Set kernel.modules_disabled=1 once boot has loaded the needed modules",
        inputs: &["/proc/sys/kernel/modules_disabled"],
        rule: Rule::Probe(modules_disabled),
    },
    Check {
        id: "kernel.tainted",
        category: "kernel",
        title: "Kernel not tainted",
        level: RUNTIME,
        why: "A tainted kernel has run out-of-tree or unsigned code, or has oopsed",
        fix: "Remove the out-of-tree or unsigned modules and reboot; investigate oopses",
        inputs: &["/proc/sys/kernel/tainted"],
        rule: Rule::Probe(tainted),
    },
];

fn selinux_enforcing(context: &Context<'_>) -> Result<Finding, Unreadable> {
    Ok(
        match value(context, "/sys/fs/selinux/enforce")?.as_deref() {
            Some("1") => Finding::pass("enforcing"),
            Some("0") => Finding::fail("permissive"),
            Some(other) => Finding::fail(format!("unexpected value {other:?}")),
            None => Finding::fail("SELinux is not enabled"),
        },
    )
}

/// The selected mode in `none [integrity] confidentiality`; `None` without lockdown.
fn lockdown_mode(context: &Context<'_>) -> Result<Option<String>, Unreadable> {
    let Some(text) = value(context, "/sys/kernel/security/lockdown")? else {
        return Ok(None);
    };
    let selected = text.split_whitespace().find_map(|word| {
        word.strip_prefix('[')
            .and_then(|word| word.strip_suffix(']'))
    });
    Ok(selected.map(str::to_owned))
}

fn lockdown_integrity(context: &Context<'_>) -> Result<Finding, Unreadable> {
    Ok(match lockdown_mode(context)? {
        Some(mode) => Finding::pass_if(mode == "integrity" || mode == "confidentiality", mode),
        None => Finding::fail("lockdown is not available"),
    })
}

fn lockdown_confidentiality(context: &Context<'_>) -> Result<Finding, Unreadable> {
    Ok(match lockdown_mode(context)? {
        Some(mode) => Finding::pass_if(mode == "confidentiality", mode),
        None => Finding::fail("lockdown is not available"),
    })
}

fn module_signatures(context: &Context<'_>) -> Result<Finding, Unreadable> {
    if !exists(context, "/proc/modules")? {
        return Ok(Finding::pass("module support compiled out"));
    }
    if value(context, "/proc/sys/kernel/modules_disabled")?.as_deref() == Some("1") {
        return Ok(Finding::pass("module loading disabled"));
    }
    if value(context, "/sys/module/module/parameters/sig_enforce")?.as_deref() == Some("Y") {
        return Ok(Finding::pass("sig_enforce=Y"));
    }
    Ok(match lockdown_mode(context)?.as_deref() {
        Some(mode @ ("integrity" | "confidentiality")) => {
            Finding::pass(format!("enforced by lockdown={mode}"))
        }
        _ => Finding::fail("unsigned modules can be loaded"),
    })
}

fn modules_disabled(context: &Context<'_>) -> Result<Finding, Unreadable> {
    if !exists(context, "/proc/modules")? {
        return Ok(Finding::pass("module support compiled out"));
    }
    Ok(match value(context, "/proc/sys/kernel/modules_disabled")? {
        Some(flag) => Finding::pass_if(flag == "1", format!("modules_disabled={flag}")),
        None => Finding::fail("modules_disabled is not available"),
    })
}

/// Taint flag letters, by bit, as the kernel prints them.
const TAINT_LETTERS: &[u8] = b"PFSRMBUDAWCIOELKXTN";

/// The letters for a taint bitmask, e.g. `PO` for proprietary + out-of-tree.
pub fn taint_letters(mask: u64) -> String {
    TAINT_LETTERS
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .map(|(_, letter)| *letter as char)
        .collect()
}

fn tainted(context: &Context<'_>) -> Result<Finding, Unreadable> {
    let Some(text) = value(context, "/proc/sys/kernel/tainted")? else {
        return Ok(Finding::unavailable("kernel.tainted is absent"));
    };
    Ok(match text.parse::<u64>() {
        Ok(0) => Finding::pass("0"),
        Ok(mask) => Finding::fail(format!("{mask} ({})", taint_letters(mask))),
        Err(_) => Finding::unavailable(format!("unexpected value {text:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taint_letters_table() {
        let cases = [
            (0, ""),
            (1, "P"),
            (4096, "O"),
            (4096 | 8192, "OE"),
            (1 << 9, "W"),
            (1 << 18, "N"),
        ];
        for (mask, letters) in cases {
            assert_eq!(taint_letters(mask), letters, "{mask}");
        }
    }
}
