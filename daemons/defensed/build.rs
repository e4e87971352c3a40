//! Compiles `seccomp.json` (the daemon's system-call allow-list) into BPF at build time.

fn main() {
    enigm_seccomp_build::build_script();
}
