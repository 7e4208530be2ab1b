//! Micro-benchmarks of one rate-limit decision, as the daemon makes it for a
//! free-tier user (two windows: minute and day): in process, and in a
//! throwaway `redis-server` on a unix socket (one EVALSHA round trip).
//! After the Redis run, redis-server's own command statistics are printed,
//! to show the round trips per decision.
//!
//! Run: `cargo bench --bench ratelimit`. Results go in BENCHMARKS.md.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use mlapi::config::{Config, TierConfig};
use mlapi::ratelimit::{Group, Limiter};
use mlapi::remote::Remote;

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
    let before = redis_calls(&socket);
    let decisions = std::sync::atomic::AtomicU64::new(0);
    c.bench_function("ratelimit/redis", |b| {
        b.iter(|| {
            decisions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let d = runtime.block_on(shared.check("u:bench", &windows)).unwrap();
            assert_eq!(d.source, mlapi::ratelimit::Source::Redis);
        })
    });
    // Less the first INFO, which `after` counts.
    let after = redis_calls(&socket) - 1;
    let decisions = decisions.into_inner();
    println!(
        "redis-server: {} commands for {decisions} decisions ({:.3} round trips per decision)",
        after - before,
        (after - before) as f64 / decisions as f64
    );
    let _ = server.kill();
    let _ = server.wait();
}

/// Total commands redis-server has run so far (INFO's own not included).
fn redis_calls(socket: &std::path::Path) -> u64 {
    let out = Command::new("redis-cli")
        .arg("-s")
        .arg(socket)
        .args(["INFO", "stats"])
        .output()
        .expect("redis-cli");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("total_commands_processed")
}

criterion_group!(benches, bench);
criterion_main!(benches);
