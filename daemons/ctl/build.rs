//! Generates the gRPC client of the backend's device API from `backend/proto/device.proto`
//! (the contract, not the server crate, so `enigmctl` does not link the server); the evidence
//! types are reused from `enigm-evidence`.

fn main() -> std::io::Result<()> {
    println!("cargo::rerun-if-changed=../../backend/proto/device.proto");
    println!("cargo::rerun-if-changed=../../attestation/evidence/proto/evidence.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .extern_path(".enigm.attestation.v1", "::enigm_evidence::v1")
        .compile_protos(
            &["../../backend/proto/device.proto"],
            &["../../backend/proto", "../../attestation/evidence/proto"],
        )
}
