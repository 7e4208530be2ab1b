//! Micro-benchmarks of the prediction cache: computing a key (SHA-256 over
//! the model, its answer id, the API version, the response shape and the
//! input's f64 bits) and a whole in-process hit through `get_or_compute`.
//!
//! Run: `cargo bench --bench cache`. Results go in BENCHMARKS.md.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use mlapi::config::CacheConfig;
use mlapi::serving::cache::{Cache, CacheKey, Read};

fn bench(c: &mut Criterion) {
    let one = vec![vec![14.0, 20.0, 0.12, 0.2, 0.2]];
    let batch: Vec<Vec<f64>> = (0..32)
        .map(|i| vec![10.0 + f64::from(i) * 0.5, 20.0, 0.12, 0.2, 0.2])
        .collect();
    let answer_id = "sha256:5f1c0a7e9b3d2c4f6a8e0b1d3c5e7f9a1b3d5c7e9f0a2b4c6d8e0f1a3b5c7d9e|1.0.0";

    let mut group = c.benchmark_group("cache");
    group.bench_function("key_v1", |b| {
        b.iter(|| CacheKey::new("demo", answer_id, 1, "v1", std::hint::black_box(&one)))
    });
    group.bench_function("key_batch_32", |b| {
        b.iter(|| {
            CacheKey::new(
                "demo",
                answer_id,
                2,
                "v2-batch",
                std::hint::black_box(&batch),
            )
        })
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cache = Cache::new(&CacheConfig::default(), None);
    let key = CacheKey::new("demo", answer_id, 1, "v1", &one);
    let ttl = Duration::from_secs(300);
    let answer =
        || async { Ok::<_, ()>(serde_json::json!({"model": "demo", "prediction": "benign"})) };
    runtime
        .block_on(cache.get_or_compute(&key, ttl, Read::Cached, answer))
        .unwrap();
    group.bench_function("hit_in_process", |b| {
        b.iter(|| {
            runtime
                .block_on(cache.get_or_compute(&key, ttl, Read::Cached, answer))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
