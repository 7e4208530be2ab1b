//! Micro-benchmarks of the request path's authentication: one API-key
//! verification and one JWT verification through `Identity::authenticate`, as a
//! daemon runs them (in-memory directory, usage counting included).
//!
//! Run: `cargo bench --bench auth`. Results go in BENCHMARKS.md.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use mlapi::app::{App, Purpose};
use mlapi::config::{self, Overrides};
use mlapi::core::scopes::Role;
use mlapi::identity::accounts::NewUser;
use mlapi::identity::keys::NewKey;
use mlapi::store::audit::Actor;

fn app(dir: &std::path::Path) -> Arc<App> {
    let env = vec![
        (
            "MLAPI_DATABASE_PATH".to_string(),
            dir.join("bench.db").display().to_string(),
        ),
        ("MLAPI_AUTH_ARGON2_MEMORY_KIB".to_string(), "64".to_string()),
        ("MLAPI_AUTH_ARGON2_ITERATIONS".to_string(), "1".to_string()),
        (
            "MLAPI_AUTH_MAX_KEYS_PER_USER".to_string(),
            "1000".to_string(),
        ),
    ];
    let loaded = config::load(None, env, &Overrides::default()).expect("bench config");
    App::open(loaded, Overrides::default(), Purpose::Command).expect("open app")
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let actor = Actor::system();
    let (key, token) = runtime.block_on(async {
        let new = NewUser {
            username: "bench".into(),
            email: "bench@example.com".into(),
            password: "SecurePass123!".into(),
            role: Role::User,
            tier: None,
        };
        let identity = &app.identity;
        let user = identity.create_user(new, &actor).await.unwrap();
        // A realistic index: many keys, of which we verify one.
        let mut last = None;
        for i in 0..500 {
            let new = NewKey {
                owner: user.id.clone(),
                name: format!("k{i}"),
                scopes: None,
                expires_at: None,
            };
            last = Some(identity.create_key(new, None, &actor).await.unwrap());
        }
        let pair = identity
            .login("bench", "SecurePass123!".into(), None, &actor)
            .await
            .unwrap();
        (last.unwrap().api_key, pair.access_token)
    });

    let mut group = c.benchmark_group("authenticate");
    group.bench_function("api_key", |b| {
        b.iter(|| {
            app.identity
                .authenticate(std::hint::black_box(&key))
                .unwrap()
        })
    });
    group.bench_function("jwt_hs256", |b| {
        b.iter(|| {
            app.identity
                .authenticate(std::hint::black_box(&token))
                .unwrap()
        })
    });
    let junk = format!("{}x", &key[..key.len() - 1]);
    group.bench_function("api_key_bad_checksum", |b| {
        b.iter(|| {
            app.identity
                .authenticate(std::hint::black_box(&junk))
                .unwrap_err()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
