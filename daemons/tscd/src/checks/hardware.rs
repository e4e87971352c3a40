//! Hardware protections: TPM 2.0, IOMMU, swap, and encryption of user data.

use super::{Check, Context, Rule, value};
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

fn tpm(context: &Context<'_>) -> Finding {
    if context.properties.is_android() {
        return Finding::not_applicable("Android devices attest through Keystore");
    }
    match value(context, "/sys/class/tpm/tpm0/tpm_version_major").as_deref() {
        Some("2") => return Finding::pass("TPM 2.0"),
        Some(major) => return Finding::fail(format!("TPM {major}.x")),
        None => {}
    }
    // Kernels before 5.6 lack tpm_version_major; only TPM 2.0 gets a resource manager.
    if context.sysroot.exists("/sys/class/tpmrm/tpmrm0") {
        return Finding::pass("TPM 2.0 (tpmrm0)");
    }
    if context.sysroot.exists("/sys/class/tpm/tpm0") {
        return Finding::fail("TPM 1.2");
    }
    Finding::fail("no TPM")
}

fn iommu(context: &Context<'_>) -> Finding {
    if context.properties.is_android() {
        return Finding::not_applicable("SoC SMMUs are not exposed through sysfs");
    }
    match context.sysroot.list_dir("/sys/class/iommu") {
        Ok(Some(units)) if !units.is_empty() => Finding::pass(units.join(", ")),
        _ => Finding::fail("no IOMMU active"),
    }
}

fn swap(context: &Context<'_>) -> Finding {
    let Some(text) = context.sysroot.read_value("/proc/swaps").ok().flatten() else {
        return Finding::pass("no swap support");
    };
    let devices: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    if devices.is_empty() {
        return Finding::pass("no swap");
    }
    let unprotected: Vec<&str> = devices
        .iter()
        .copied()
        .filter(|device| !swap_is_protected(context, device))
        .collect();
    if unprotected.is_empty() {
        Finding::pass(format!("encrypted or in RAM: {}", devices.join(", ")))
    } else {
        Finding::fail(format!("unencrypted: {}", unprotected.join(", ")))
    }
}

fn swap_is_protected(context: &Context<'_>, device: &str) -> bool {
    if device
        .rsplit('/')
        .next()
        .is_some_and(|name| name.starts_with("zram"))
    {
        return true;
    }
    if let Some(name) = device.strip_prefix("/dev/") {
        let block = match name.strip_prefix("mapper/") {
            Some(mapped) => dm_block_by_name(context, mapped),
            None => Some(name.to_owned()),
        };
        return block.is_some_and(|block| {
            value(context, &format!("/sys/class/block/{block}/dev"))
                .is_some_and(|dev| dm_stack(context.sysroot, &dev).contains(&DmKind::Crypt))
        });
    }
    // A swap file: protected when the filesystem holding it is.
    mount_for(context.mounts, device)
        .is_some_and(|mount| dm_stack(context.sysroot, &mount.device).contains(&DmKind::Crypt))
}

fn dm_block_by_name(context: &Context<'_>, name: &str) -> Option<String> {
    let blocks = context
        .sysroot
        .list_dir("/sys/class/block")
        .ok()
        .flatten()?;
    blocks.into_iter().find(|block| {
        value(context, &format!("/sys/class/block/{block}/dm/name")).as_deref() == Some(name)
    })
}

fn data_encryption(context: &Context<'_>) -> Finding {
    let props = context.properties;
    if props.is_android() {
        let state = props.get("ro.crypto.state").unwrap_or("unknown");
        let kind = props.get("ro.crypto.type").unwrap_or("unknown");
        return Finding::pass_if(state == "encrypted", format!("{state} ({kind}-based)"));
    }
    let path = context.config.data_path.as_str();
    let Some(mount) = mount_for(context.mounts, path) else {
        return Finding::unavailable(format!("no mount holds {path}"));
    };
    let observed = format!("{path} on {} ({})", mount.source, mount.fs_type);
    Finding::pass_if(
        dm_stack(context.sysroot, &mount.device).contains(&DmKind::Crypt),
        observed,
    )
}
