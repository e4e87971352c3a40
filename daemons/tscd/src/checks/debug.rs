//! Debugging interfaces that must be closed on a production device: USB debugging, debuggable
//! builds, debugfs, and core dumps.

use super::{Check, Context, Rule, Unreadable, entries, value};
use crate::model::Finding;

pub(super) const CHECKS: &[Check] = &[
    Check {
        id: "debug.usb-debugging",
        category: "debug",
        title: "USB debugging off",
        level: 1,
        why: "adb gives a shell, app installs and data access to whoever plugs in a cable",
        fix: "Turn off USB debugging in Developer options",
        inputs: &[],
        rule: Rule::Probe(usb_debugging),
    },
    Check {
        id: "debug.debuggable-build",
        category: "debug",
        title: "Production (non-debuggable) build",
        level: 1,
        why: "Debuggable builds let adb run as root and debug every app",
        fix: "Install a user build (ro.debuggable=0)",
        inputs: &[],
        rule: Rule::Probe(debuggable_build),
    },
    Check {
        id: "debug.debugfs",
        category: "debug",
        title: "debugfs not mounted",
        level: 2,
        why: "debugfs exposes raw kernel internals that were never meant as an interface",
        fix: "Unmount debugfs and boot with debugfs=off",
        inputs: &["/proc/self/mountinfo"],
        rule: Rule::Probe(debugfs),
    },
    Check {
        id: "debug.core-dumps",
        category: "debug",
        title: "Core dumps not stored",
        level: 2,
        why: "A crashed program's memory, written to disk, can hold keys and messages",
        fix: "Set kernel.core_pattern=|/bin/false or Storage=none in systemd's coredump.conf",
        inputs: &[
            "/proc/sys/kernel/core_pattern",
            "/etc/systemd/coredump.conf",
            "/etc/systemd/coredump.conf.d",
        ],
        rule: Rule::Probe(core_dumps),
    },
];

fn usb_debugging(context: &Context<'_>) -> Result<Finding, Unreadable> {
    let props = context.properties;
    if !props.is_android() {
        return Ok(Finding::not_applicable("not an Android device"));
    }
    let usb_config = props
        .get("sys.usb.config")
        .or_else(|| props.get("persist.sys.usb.config"))
        .unwrap_or("");
    let adbd = props.get("init.svc.adbd").unwrap_or("stopped");
    let on = usb_config.split(',').any(|function| function == "adb") || adbd == "running";
    Ok(Finding::pass_if(
        !on,
        format!("usb config {usb_config:?}, adbd {adbd}"),
    ))
}

fn debuggable_build(context: &Context<'_>) -> Result<Finding, Unreadable> {
    let props = context.properties;
    if !props.is_android() {
        return Ok(Finding::not_applicable("not an Android device"));
    }
    Ok(match props.get("ro.debuggable") {
        Some(flag) => Finding::pass_if(flag == "0", format!("ro.debuggable={flag}")),
        None => Finding::pass("ro.debuggable unset"),
    })
}

fn debugfs(context: &Context<'_>) -> Result<Finding, Unreadable> {
    if context.mounts.is_empty() {
        return Ok(Finding::unavailable("mount table unreadable or empty"));
    }
    let mounted: Vec<&str> = context
        .mounts
        .iter()
        .filter(|mount| mount.fs_type == "debugfs")
        .map(|mount| mount.mount_point.as_str())
        .collect();
    Ok(if mounted.is_empty() {
        Finding::pass("not mounted")
    } else {
        Finding::fail(format!("mounted at {}", mounted.join(", ")))
    })
}

fn core_dumps(context: &Context<'_>) -> Result<Finding, Unreadable> {
    let Some(pattern) = value(context, "/proc/sys/kernel/core_pattern")? else {
        return Ok(Finding::pass("core dump support compiled out"));
    };
    let handler = pattern
        .strip_prefix('|')
        .map(|command| command.split_whitespace().next().unwrap_or(""));
    Ok(match handler {
        Some("/bin/false" | "/usr/bin/false" | "/bin/true" | "/usr/bin/true") => {
            Finding::pass(pattern)
        }
        Some(handler) if handler.ends_with("systemd-coredump") => {
            let storage = coredump_storage(context)?;
            Finding::pass_if(
                storage == "none",
                format!("systemd-coredump, Storage={storage}"),
            )
        }
        Some(_) => Finding::fail(format!("piped to {pattern}")),
        None => Finding::fail(format!("written to files: {pattern}")),
    })
}

/// systemd-coredump's `Storage=`, with drop-ins applied in order; default `external`.
fn coredump_storage(context: &Context<'_>) -> Result<String, Unreadable> {
    const DROPINS: &str = "/etc/systemd/coredump.conf.d";
    let mut files = vec!["/etc/systemd/coredump.conf".to_owned()];
    for name in entries(context, DROPINS)?.unwrap_or_default() {
        if name.ends_with(".conf") {
            files.push(format!("{DROPINS}/{name}"));
        }
    }
    let mut storage = "external".to_owned();
    for file in files {
        let text = value(context, &file)?.unwrap_or_default();
        for line in text.lines() {
            if let Some(value) = line.trim().strip_prefix("Storage=") {
                storage = value.trim().to_owned();
            }
        }
    }
    Ok(storage)
}
