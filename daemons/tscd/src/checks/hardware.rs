//! Hardware protections: TPM 2.0, IOMMU, swap, and encryption of user data.

use super::{Check, Context, Rule, Unreadable, entries, exists, value};
use crate::model::Finding;
use crate::mounts::{DmKind, dm_stack, mount_for};

pub(super) const CHECKS: &[Check] = &[
    Check {
        id: "hardware.tpm",
        category: "hardware",
        title: "TPM 2.0 present",
        level: 1,
        why: "The TPM measures boot and holds the attestation key that proves this device's state",
        fix: "Enable the TPM (fTPM/PTT) in the firmware setup",
        inputs: &["/sys/class/tpm", "/sys/class/tpmrm"],
        rule: Rule::Probe(tpm),
    },
    Check {
        id: "hardware.data-encryption",
        category: "hardware",
        title: "User data encrypted",
        level: 1,
        why: "Unencrypted user data can be read by anyone who holds the device or its storage",
        fix: "Put user data on an encrypted volume (LUKS, or Android file-based encryption)",
        inputs: &["/proc/self/mountinfo"],
        rule: Rule::Probe(data_encryption),
    },
    Check {
        id: "hardware.iommu",
        category: "hardware",
        title: "IOMMU enabled",
        level: 2,
        why: "Without an IOMMU, any DMA-capable device or port can read and write all memory",
        fix: "Enable VT-d/AMD-Vi in the firmware and boot with intel_iommu=on / amd_iommu=on",
        inputs: &["/sys/class/iommu"],
        rule: Rule::Probe(iommu),
    },
    Check {
        id: "hardware.swap",
        category: "hardware",
        title: "Swap absent or encrypted",
        level: 2,
        why: "Memory paged to an unencrypted disk keeps secrets there after power-off",
        fix: "Disable swap, use zram, or put swap on dm-crypt",
        inputs: &["/proc/swaps"],
        rule: Rule::Probe(swap),
    },
];

fn tpm(context: &Context<'_>) -> Result<Finding, Unreadable> {
    if context.properties.is_android() {
        return Ok(Finding::not_applicable(
            "Android devices attest through Keystore",
        ));
    }
    match value(context, "/sys/class/tpm/tpm0/tpm_version_major")?.as_deref() {
        Some("2") => return Ok(Finding::pass("TPM 2.0")),
        Some(major) => return Ok(Finding::fail(format!("TPM {major}.x"))),
        None => {}
    }
    // Kernels before 5.6 lack tpm_version_major; only TPM 2.0 gets a resource manager.
    Ok(if exists(context, "/sys/class/tpmrm/tpmrm0")? {
        Finding::pass("TPM 2.0 (tpmrm0)")
    } else if exists(context, "/sys/class/tpm/tpm0")? {
        Finding::fail("TPM 1.2")
    } else {
        Finding::fail("no TPM")
    })
}

fn iommu(context: &Context<'_>) -> Result<Finding, Unreadable> {
    if context.properties.is_android() {
        return Ok(Finding::not_applicable(
            "SoC SMMUs are not exposed through sysfs",
        ));
    }
    Ok(match entries(context, "/sys/class/iommu")? {
        Some(units) if !units.is_empty() => Finding::pass(units.join(", ")),
        _ => Finding::fail("no IOMMU active"),
    })
}

fn swap(context: &Context<'_>) -> Result<Finding, Unreadable> {
    let Some(text) = value(context, "/proc/swaps")? else {
        return Ok(Finding::pass("no swap support"));
    };
    let devices: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    if devices.is_empty() {
        return Ok(Finding::pass("no swap"));
    }
    let mut unprotected = Vec::new();
    for device in &devices {
        if !swap_is_protected(context, device)? {
            unprotected.push(*device);
        }
    }
    Ok(if unprotected.is_empty() {
        Finding::pass(format!("encrypted or in RAM: {}", devices.join(", ")))
    } else {
        Finding::fail(format!("unencrypted: {}", unprotected.join(", ")))
    })
}

fn swap_is_protected(context: &Context<'_>, device: &str) -> Result<bool, Unreadable> {
    if device
        .rsplit('/')
        .next()
        .is_some_and(|name| name.starts_with("zram"))
    {
        return Ok(true);
    }
    let encrypted = |dev: &str| dm_stack(context.sysroot, dev).contains(&DmKind::Crypt);
    let Some(name) = device.strip_prefix("/dev/") else {
        // A swap file: protected when the filesystem holding it is.
        return Ok(mount_for(context.mounts, device).is_some_and(|mount| encrypted(&mount.device)));
    };
    let block = match name.strip_prefix("mapper/") {
        Some(mapped) => dm_block_by_name(context, mapped)?,
        None => Some(name.to_owned()),
    };
    let Some(block) = block else { return Ok(false) };
    Ok(
        value(context, &format!("/sys/class/block/{block}/dev"))?
            .is_some_and(|dev| encrypted(&dev)),
    )
}

fn dm_block_by_name(context: &Context<'_>, name: &str) -> Result<Option<String>, Unreadable> {
    for block in entries(context, "/sys/class/block")?.unwrap_or_default() {
        if value(context, &format!("/sys/class/block/{block}/dm/name"))?.as_deref() == Some(name) {
            return Ok(Some(block));
        }
    }
    Ok(None)
}

fn data_encryption(context: &Context<'_>) -> Result<Finding, Unreadable> {
    let props = context.properties;
    if props.is_android() {
        let state = props.get("ro.crypto.state").unwrap_or("unknown");
        let kind = props.get("ro.crypto.type").unwrap_or("unknown");
        return Ok(Finding::pass_if(
            state == "encrypted",
            format!("{state} ({kind}-based)"),
        ));
    }
    let path = context.config.data_path.as_str();
    let Some(mount) = mount_for(context.mounts, path) else {
        return Ok(Finding::unavailable(format!("no mount holds {path}")));
    };
    let observed = format!("{path} on {} ({})", mount.source, mount.fs_type);
    Ok(Finding::pass_if(
        dm_stack(context.sysroot, &mount.device).contains(&DmKind::Crypt),
        observed,
    ))
}
