//! Generates the Binder code for every interface under `interfaces/`.

fn main() {
    println!("cargo:rerun-if-changed=interfaces");
    let boot_control = rsbinder_aidl::Builder::new()
        .source("interfaces/android/hardware/boot/MergeStatus.aidl")
        .source("interfaces/android/hardware/boot/IBootControl.aidl")
        .include_dir("interfaces")
        .output("boot_control.rs")
        .generate();
    let sensor_privacy = rsbinder_aidl::Builder::new()
        .source("interfaces/android/hardware/ISensorPrivacyListener.aidl")
        .source("interfaces/android/hardware/ISensorPrivacyManager.aidl")
        .include_dir("interfaces")
        .output("sensor_privacy.rs")
        .generate();
    for (what, generated) in [
        ("boot control", boot_control),
        ("sensor privacy", sensor_privacy),
    ] {
        if let Err(err) = generated {
            eprintln!("enigm-aidl: generating the {what} Binder code: {err:?}");
            std::process::exit(1);
        }
    }
}
