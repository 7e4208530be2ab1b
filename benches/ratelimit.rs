//! Micro-benchmarks of one rate-limit decision, as the daemon makes it for a
//! free-tier user (two windows: minute and day): in process, and in a
//! throwaway `redis-server` on a unix socket (one EVALSHA round trip).
//! After the Redis run, 1,000 more decisions run under `redis-cli MONITOR`,
//! which prints every command a client sends (script internals marked
//! `lua`), to count the round trips per decision.
//!
//! Run: `cargo bench --bench ratelimit`. Results go in BENCHMARKS.md.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use mlapi::config::{Config, TierConfig};
use mlapi::core::groups::Group;
use mlapi::serving::ratelimit::{Limiter, Source};
use mlapi::serving::remote::Remote;

/// A tier that never refuses during the run, so every decision is a full one.
fn config() -> Config {
    let mut config = Config::default();
    config.tiers.insert(
        "bench".into(),
        TierConfig {
            per_minute: Some(u32::MAX / 2),
            per_day: Some(u32::MAX / 2),
            ..TierConfig::default()
        },
    );
    config
}

fn bench(c: &mut Criterion) {
    let config = config();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let local = Limiter::new(&config, None);
    let windows = local.policies.windows("bench", Group::Predict);
    c.bench_function("ratelimit/in_process", |b| {
        b.iter(|| runtime.block_on(local.check("u:bench", &windows)).unwrap())
    });

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("redis.sock");
    let mut server = Command::new("redis-server")
        .args(["--port", "0", "--save", "", "--appendonly", "no"])
        .arg("--unixsocket")
        .arg(&socket)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (scripts/test installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let client = redis::Client::open(format!("unix://{}", socket.display())).unwrap();
    let remote = Arc::new(Remote::new(client, "bench:", Duration::from_millis(50)));
    runtime.block_on(remote.connect_now()).unwrap();
    let shared = Limiter::new(&config, Some(remote));
    c.bench_function("ratelimit/redis", |b| {
        b.iter(|| {
            let d = runtime.block_on(shared.check("u:bench", &windows)).unwrap();
            assert_eq!(d.source, Source::Redis);
        })
    });

    let log = dir.path().join("monitor.log");
    let mut monitor = Command::new("redis-cli")
        .arg("-s")
        .arg(&socket)
        .arg("MONITOR")
        .stdout(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("redis-cli");
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..1_000 {
        runtime.block_on(shared.check("u:bench", &windows)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = monitor.kill();
    let _ = monitor.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let sent = text
        .lines()
        .filter(|l| l.contains('"') && !l.contains(" lua]"))
        .count();
    let inside = text.lines().filter(|l| l.contains(" lua]")).count();
    println!(
        "redis MONITOR: {sent} commands sent for 1000 decisions ({:.2} round trips each; {inside} more ran inside the script)",
        sent as f64 / 1000.0
    );
    let _ = server.kill();
    let _ = server.wait();
}

criterion_group!(benches, bench);
criterion_main!(benches);
