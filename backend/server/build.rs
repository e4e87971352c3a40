//! Generates the gRPC device API from `backend/proto/device.proto` (needs `protoc`); the
//! evidence types are reused from `enigm-evidence`.

fn main() -> std::io::Result<()> {
    println!("cargo::rerun-if-changed=../proto/device.proto");
    println!("cargo::rerun-if-changed=../../attestation/evidence/proto/evidence.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::StrictCodec")
        .extern_path(".enigm.attestation.v1", "::enigm_evidence::v1")
        .compile_protos(
            &["../proto/device.proto"],
            &["../proto", "../../attestation/evidence/proto"],
        )
}
