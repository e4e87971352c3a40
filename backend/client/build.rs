//! Generates the gRPC client (no server) of the backend's device and admin APIs from
//! `backend/proto/device.proto` (the contract, not the server crate, so devices and tools do
//! not link the server); the evidence types are reused from `enigm-evidence`.

fn main() -> std::io::Result<()> {
    println!("cargo::rerun-if-changed=../proto/device.proto");
    println!("cargo::rerun-if-changed=../../attestation/evidence/proto/evidence.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .extern_path(".enigm.attestation.v1", "::enigm_evidence::v1")
        .compile_protos(
            &["../proto/device.proto"],
            &["../proto", "../../attestation/evidence/proto"],
        )
}
