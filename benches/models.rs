//! Micro-benchmarks of the bundled model through `serving::models::Model::predict`
//! (tract, on the calling thread): one input, one input with its occlusion
//! explanation (6 rows in one call), and a batch of 32.
//!
//! Run: `cargo bench --bench models`. Results go in BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, Criterion};
use mlapi::config::Config;
use mlapi::serving::models::{Explain, Registry};

fn bench(c: &mut Criterion) {
    let registry = Registry::load(&Config::default()).expect("bundled model");
    let model = registry.default_model();
    let one = vec![vec![14.0f32, 20.0, 0.12, 0.2, 0.2]];
    let batch: Vec<Vec<f32>> = (0..32)
        .map(|i| vec![10.0 + i as f32 * 0.5, 20.0, 0.12, 0.2, 0.2])
        .collect();

    let mut group = c.benchmark_group("inference");
    group.bench_function("single", |b| {
        b.iter(|| {
            model
                .predict(std::hint::black_box(&one), Explain::No)
                .unwrap()
        })
    });
    group.bench_function("single_explained", |b| {
        b.iter(|| {
            model
                .predict(std::hint::black_box(&one), Explain::Occlusion)
                .unwrap()
        })
    });
    group.bench_function("batch_32", |b| {
        b.iter(|| {
            model
                .predict(std::hint::black_box(&batch), Explain::No)
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
