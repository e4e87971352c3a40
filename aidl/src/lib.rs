//! AIDL interfaces and their Binder code, generated at build time by rsbinder-aidl from
//! `interfaces/`:
//!
//! - `android.hardware.boot.IBootControl`: the Android boot-control HAL, which
//!   `enigm-android-boot` drives behind `enigm_slots::BootControl` ([`boot`]);
//! - `android.hardware.ISensorPrivacyManager`: the platform's sensor-privacy service, the
//!   Privacy Mode daemon's camera and microphone switch on Android ([`sensor_privacy`]).
//!
//! The generated code is not ours to lint.

#![allow(missing_docs, unsafe_code, clippy::all, clippy::pedantic)]

/// The boot-control HAL.
pub mod boot {
    rsbinder::include_aidl!("boot_control", android::hardware::boot::*);
}

/// The sensor-privacy service.
pub mod sensor_privacy {
    rsbinder::include_aidl!("sensor_privacy", android::hardware::*);
}

pub use boot::*;
