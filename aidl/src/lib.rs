//! AIDL interfaces and their Binder code, generated at build time by rsbinder-aidl from
//! `interfaces/`:
//!
//! - `android.hardware.boot.IBootControl`: the Android boot-control HAL, which
//!   `enigm-android-boot` drives behind `enigm_slots::BootControl`.
//!
//! The generated code is not ours to lint.

#![allow(missing_docs, unsafe_code, clippy::all, clippy::pedantic)]

rsbinder::include_aidl!("boot_control", android::hardware::boot::*);
