//! Generates the Binder code for every interface under `interfaces/`.

fn main() {
    println!("cargo:rerun-if-changed=interfaces");
    let generated = rsbinder_aidl::Builder::new()
        .source("interfaces/android/hardware/boot/MergeStatus.aidl")
        .source("interfaces/android/hardware/boot/IBootControl.aidl")
        .include_dir("interfaces")
        .output("boot_control.rs")
        .generate();
    if let Err(err) = generated {
        eprintln!("enigm-aidl: generating Binder code: {err:?}");
        std::process::exit(1);
    }
}
