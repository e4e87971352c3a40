//! Generates the prost types from `proto/evidence.proto` (needs `protoc`).

fn main() -> std::io::Result<()> {
    println!("cargo::rerun-if-changed=proto/evidence.proto");
    prost_build::compile_protos(&["proto/evidence.proto"], &["proto"])
}
