//! Boot chain checks: Android verified boot and bootloader lock, UEFI Secure Boot, and a
//! dm-verity root filesystem.

use super::{Check, Context, Rule, Unreadable, bytes, exists};
use crate::model::Finding;
use crate::mounts::{DmKind, dm_stack, mount_for};

/// EFI global-variable GUID that `SecureBoot` and `SetupMode` live under.
const EFI_GLOBAL: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";

pub(super) const CHECKS: &[Check] = &[
    Check {
        id: "boot.verified-boot",
        category: "boot",
        title: "Android verified boot state",
        level: 1,
        why: "Only a green verified-boot state proves the OS was signed by the device maker's key",
        fix: "Flash a factory-signed image and relock the bootloader",
        inputs: &[],
        rule: Rule::Probe(verified_boot),
    },
    Check {
        id: "boot.bootloader-locked",
        category: "boot",
        title: "Bootloader locked",
        level: 1,
        why: "An unlocked bootloader lets anyone with the device boot modified software",
        fix: "Relock the bootloader (fastboot flashing lock) after flashing a signed image",
        inputs: &[],
        rule: Rule::Probe(bootloader_locked),
    },
    Check {
        id: "boot.secure-boot",
        category: "boot",
        title: "UEFI Secure Boot",
        level: 1,
        why: "Without Secure Boot the firmware runs any bootloader and kernel, signed or not",
        fix: "Enable Secure Boot in the firmware setup and enroll the OS vendor's keys",
        inputs: &["/sys/firmware/efi/efivars"],
        rule: Rule::Probe(secure_boot),
    },
    Check {
        id: "boot.dm-verity-root",
        category: "boot",
        title: "Root filesystem verified by dm-verity",
        level: 1,
        why: "dm-verity makes every block of the system partition match the signed hash tree",
        fix: "Boot the system image through dm-verity (veritysetup / Android verified boot)",
        inputs: &["/proc/self/mountinfo"],
        rule: Rule::Probe(dm_verity_root),
    },
];

fn verified_boot(context: &Context<'_>) -> Result<Finding, Unreadable> {
    if !context.properties.is_android() {
        return Ok(Finding::not_applicable("not an Android device"));
    }
    Ok(match context.properties.get("ro.boot.verifiedbootstate") {
        Some("green") => Finding::pass("green"),
        Some(state) => Finding::fail(state),
        None => Finding::unavailable("ro.boot.verifiedbootstate is not set"),
    })
}

fn bootloader_locked(context: &Context<'_>) -> Result<Finding, Unreadable> {
    let props = context.properties;
    if !props.is_android() {
        return Ok(Finding::not_applicable("not an Android device"));
    }
    Ok(
        match (
            props.get("ro.boot.flash.locked"),
            props.get("ro.boot.vbmeta.device_state"),
        ) {
            (Some("1"), _) | (None, Some("locked")) => Finding::pass("locked"),
            (Some(flag), _) => Finding::fail(format!("unlocked (ro.boot.flash.locked={flag})")),
            (None, Some(state)) => Finding::fail(format!("{state} (ro.boot.vbmeta.device_state)")),
            (None, None) => Finding::unavailable("no bootloader lock property"),
        },
    )
}

fn secure_boot(context: &Context<'_>) -> Result<Finding, Unreadable> {
    if context.properties.is_android() {
        return Ok(Finding::not_applicable(
            "Android verified boot applies instead",
        ));
    }
    if !exists(context, "/sys/firmware/efi")? {
        return Ok(Finding::fail("not booted through UEFI"));
    }
    // efivarfs files start with 4 bytes of attributes, then the value.
    let var = |name: &str| -> Result<Option<u8>, Unreadable> {
        let path = format!("/sys/firmware/efi/efivars/{name}-{EFI_GLOBAL}");
        Ok(bytes(context, &path)?.and_then(|bytes| bytes.get(4).copied()))
    };
    Ok(match (var("SecureBoot")?, var("SetupMode")?) {
        (_, Some(1)) => Finding::fail("firmware is in setup mode"),
        (Some(1), _) => Finding::pass("enabled"),
        (Some(_), _) => Finding::fail("disabled"),
        (None, _) => Finding::fail("SecureBoot variable is absent"),
    })
}

fn dm_verity_root(context: &Context<'_>) -> Result<Finding, Unreadable> {
    if let Some(mode) = context.properties.get("ro.boot.veritymode") {
        return Ok(Finding::pass_if(
            matches!(mode, "enforcing" | "eio"),
            format!("veritymode {mode}"),
        ));
    }
    let Some(root) = mount_for(context.mounts, "/") else {
        return Ok(Finding::unavailable("no root mount in mountinfo"));
    };
    let observed = format!("{} ({}) on {}", root.source, root.fs_type, root.device);
    Ok(Finding::pass_if(
        dm_stack(context.sysroot, &root.device).contains(&DmKind::Verity),
        observed,
    ))
}
