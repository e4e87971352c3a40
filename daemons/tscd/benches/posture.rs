//! Criterion benchmark: one full posture evaluation of the hardened fixture (goal ≤ 2 ms).
//! `cargo xtask bench` also prints the figure next to its goal (`enigm-bench`).

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use enigm_runtime::sysroot::Sysroot;
use enigm_tscd::config::PostureConfig;
use enigm_tscd::evaluate::Evaluator;
use enigm_tscd::signals::SignalSnapshot;

fn posture(c: &mut Criterion) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/hardened");
    let evaluator = Evaluator::new(Sysroot::new(root), PostureConfig::default());
    let signals = SignalSnapshot::default();
    c.bench_function("posture evaluation (hardened fixture)", |b| {
        b.iter(|| evaluator.evaluate(std::hint::black_box(&signals), 1_795_305_600))
    });
}

criterion_group!(benches, posture);
criterion_main!(benches);
