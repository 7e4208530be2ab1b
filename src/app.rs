//! `App`: the services one process runs on, assembled once from the config
//! and shared (behind an `Arc`) by the adapters: every HTTP handler, CLI
//! command and daemon task.
//!
//! Owns assembly, readiness checks and live reload; the rules live in the
//! services (`identity`, `serving`), which never see `App`. It holds no HTTP
//! or CLI types, and only the adapters (`http`, `cli`, `daemon`) import it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::OnRedisError;
use crate::config::{self, Config, CorsConfig, Overrides};
use crate::core::traffic::Traffic;
use crate::identity::keys::Pepper;
use crate::identity::tokens::TokenKeys;
use crate::identity::Identity;
use crate::serving::cache::Cache;
use crate::serving::flushes::Flushes;
use crate::serving::jobs::Jobs;
use crate::serving::models::{LoadError, Registry};
use crate::serving::ratelimit::Limiter;
use crate::serving::remote::Remote;
use crate::serving::versions::Versions;
use crate::store::secrets::SecretError;
use crate::store::{self, Store, StoreError};

/// How long a readiness probe waits for a dependency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

pub struct App {
    pub config: Config,
    pub config_file: Option<PathBuf>,
    /// The database's directory: generated secrets and control sockets live here.
    pub state_dir: PathBuf,
    overrides: Overrides,
    /// For what adapters write themselves (startup and shutdown audit rows,
    /// `mlapi audit`); services hold their own handle.
    pub store: Store,
    /// The Redis link, when `redis.url` is set. The daemon keeps it connected.
    pub remote: Option<Arc<Remote>>,
    /// Accounts, sessions, API keys and authentication.
    pub identity: Arc<Identity>,
    /// The models; loaded only by the daemon (`Purpose::Serve`).
    models: Option<Registry>,
    /// API-version deprecations, in memory for the request path.
    pub versions: Arc<Versions>,
    /// Per-user tier limits and per-client-IP limits on anonymous routes.
    pub limiter: Limiter,
    /// Predictions, in process and in Redis when configured.
    pub cache: Cache,
    /// Operator cache flushes, and which of them this process has applied.
    pub flushes: Flushes,
    /// Batch jobs in the store.
    pub jobs: Jobs,
    /// Settings that SIGHUP may change on a running daemon.
    live: RwLock<Arc<CorsConfig>>,
    /// Whether `live` allows any origin: read on every response without
    /// touching the lock (most deployments have no CORS origins at all).
    cors_on: AtomicBool,
    pub started: Instant,
    /// True once the daemon drains: long-lived answers (event streams) end.
    stopping: tokio::sync::watch::Sender<bool>,
    /// The HTTP requests being answered: job workers step aside for them.
    pub traffic: Traffic,
}

/// What a process opens the state for: it decides whether models load and
/// how many SQLite connections the pool keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `mlapi serve`: models loaded, a pool for concurrent requests.
    Serve,
    /// An operator command: no models, a small pool.
    Command,
}

impl Purpose {
    fn max_connections(self) -> u32 {
        match self {
            // Blocking-pool work (logins, audit rows, usage flushes) runs
            // concurrently; more connections than that only wait on the
            // SQLite write lock.
            Purpose::Serve => 16,
            Purpose::Command => 2,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Model(#[from] LoadError),
}

/// One dependency's state in `/ready`.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// Working, but with less than configured (Redis down: per-daemon limits).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub degraded: bool,
    pub detail: String,
}

impl App {
    /// Opens the store (applying migrations), loads or creates the secrets
    /// next to it, and builds each service from the config, handing it only
    /// what it uses. Blocking.
    pub fn open(
        loaded: config::Loaded,
        overrides: Overrides,
        purpose: Purpose,
    ) -> Result<Arc<Self>, OpenError> {
        let config = loaded.config;
        let models = if purpose == Purpose::Serve {
            Some(Registry::load(&config)?)
        } else {
            None
        };
        let busy = Duration::from_millis(config.database.busy_timeout_ms);
        let db_path = config.database_path();
        let store = Store::open(&db_path, busy, purpose.max_connections())?;
        let state_dir = db_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let tiers = config.tier_names().into_iter().map(String::from).collect();
        let identity = Identity::open(
            store.clone(),
            &config.auth,
            tiers,
            TokenKeys::load(&config.auth, state_dir)?,
            Pepper::load(state_dir)?,
        )?;
        let versions = Versions::open(store.clone(), config.api.default_version())?;
        // The URL was validated with the config; opening a client does no I/O.
        let remote = (!config.redis.url.is_empty()).then(|| {
            let client =
                redis::Client::open(config.redis.url.as_str()).expect("validated redis url");
            Arc::new(Remote::new(
                client,
                &config.redis.prefix,
                Duration::from_millis(config.redis.timeout_ms),
            ))
        });
        let limiter = Limiter::new(&config, remote.clone());
        let cache = Cache::new(&config.cache, remote.clone());
        let flushes = Flushes::open(store.clone())?;
        let jobs = Jobs::new(store.clone(), config.jobs.clone());
        Ok(Arc::new(App {
            live: RwLock::new(Arc::new(config.cors.clone())),
            cors_on: AtomicBool::new(!config.cors.allowed_origins.is_empty()),
            config,
            config_file: loaded.file,
            state_dir: state_dir.to_path_buf(),
            overrides,
            store,
            remote,
            identity: Arc::new(identity),
            models,
            versions: Arc::new(versions),
            limiter,
            cache,
            flushes,
            jobs,
            started: Instant::now(),
            stopping: tokio::sync::watch::Sender::new(false),
            traffic: Traffic::default(),
        }))
    }

    /// Turns true when the daemon starts draining.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// The daemon drains from now on (`daemon::run`).
    pub fn begin_stopping(&self) {
        self.stopping.send_replace(true);
    }

    /// The model registry. Only the daemon loads models.
    pub fn models(&self) -> &Registry {
        self.models
            .as_ref()
            .expect("models are loaded by `mlapi serve`")
    }

    /// `Some` when any origin is allowed.
    pub fn cors(&self) -> Option<Arc<CorsConfig>> {
        if !self.cors_on.load(Ordering::Relaxed) {
            return None;
        }
        Some(Arc::clone(&self.live.read().expect("live config lock")))
    }

    /// Checks every dependency, concurrently, each within `PROBE_TIMEOUT`.
    pub async fn readiness(self: &Arc<Self>) -> Vec<Check> {
        let database = async {
            let probe = self.store.run_blocking(|store| store.check());
            let (ok, detail) = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
                Ok(Ok(version)) if version == store::SCHEMA_VERSION => {
                    (true, format!("schema version {version}"))
                }
                Ok(Ok(version)) => (
                    false,
                    format!(
                        "schema version {version}, but this mlapi needs {}",
                        store::SCHEMA_VERSION
                    ),
                ),
                Ok(Err(e)) => {
                    // The full error (it may name files or SQL) goes to the log only.
                    tracing::warn!(error = %e, "readiness: database check failed");
                    let detail = if matches!(e, StoreError::Busy) {
                        "busy"
                    } else {
                        "unavailable"
                    };
                    (false, detail.to_string())
                }
                Err(_) => (
                    false,
                    format!("no answer within {} ms", PROBE_TIMEOUT.as_millis()),
                ),
            };
            Check {
                name: "database",
                ok,
                degraded: false,
                detail,
            }
        };
        let redis = async {
            let remote = self.remote.as_ref()?;
            let ping = remote.ping(PROBE_TIMEOUT).await;
            Some(match ping {
                Ok(_) => Check {
                    name: "redis",
                    ok: true,
                    degraded: false,
                    detail: "PONG".into(),
                },
                // Limits and the cache fall back per daemon: still ready,
                // unless the operator chose to refuse traffic without Redis.
                Err(e) => Check {
                    name: "redis",
                    ok: self.config.ratelimit.on_redis_error != OnRedisError::Deny,
                    degraded: true,
                    detail: format!(
                        "{e}; {}",
                        match self.config.ratelimit.on_redis_error {
                            OnRedisError::Local =>
                                "rate limits and the cache are per daemon until it returns",
                            OnRedisError::Allow =>
                                "rate limits are off and the cache is per daemon until it returns",
                            OnRedisError::Deny =>
                                "limited requests are refused (ratelimit.on_redis_error = \"deny\")",
                        }
                    ),
                },
            })
        };
        let (database, redis) = tokio::join!(database, redis);
        let models = self.models.as_ref().map(|registry| {
            let mut problems = registry.problems();
            // Upstream models: degraded while some endpoints are out; not
            // ready only when the default model has none left.
            let default = registry.default_model().name.clone();
            let mut ok = true;
            for (name, upstream) in registry.upstreams() {
                let (usable, total) = upstream.usable_count();
                if usable == total {
                    continue;
                }
                if usable == 0 && name == default {
                    ok = false;
                }
                // No addresses: /ready needs no credential
                // (`mlapi upstream status` names them).
                problems.push(format!(
                    "{name}: {usable} of {total} upstream endpoints usable (unready or circuit open)"
                ));
            }
            let serving: Vec<String> = registry
                .list()
                .iter()
                .map(|m| format!("{} {}", m.name, m.version))
                .collect();
            Check {
                name: "models",
                // A failed reload keeps the previous version serving: still ready.
                ok,
                degraded: !problems.is_empty(),
                detail: if problems.is_empty() {
                    format!("serving {}", serving.join(", "))
                } else {
                    problems.join("; ")
                },
            }
        });
        std::iter::once(database)
            .chain(redis)
            .chain(models)
            .collect()
    }

    /// Re-reads the config file and environment (SIGHUP). Settings that can
    /// change live are swapped in; the rest are reported as needing a restart.
    /// A bad file keeps the running settings.
    pub fn reload(&self) -> Result<Vec<&'static str>, config::ConfigError> {
        let fresh = config::load(
            self.config_file.as_deref(),
            std::env::vars(),
            &self.overrides,
        )?
        .config;
        let mut restart_needed = Vec::new();
        let old = &self.config;
        let sections: [(&'static str, bool); 12] = [
            ("server", fresh.server != old.server),
            ("database", fresh.database != old.database),
            ("redis", fresh.redis != old.redis),
            ("auth", fresh.auth != old.auth),
            ("ratelimit", fresh.ratelimit != old.ratelimit),
            ("tiers", fresh.tiers != old.tiers),
            ("cache", fresh.cache != old.cache),
            ("api", fresh.api != old.api),
            ("log", fresh.log != old.log),
            ("metrics", fresh.metrics != old.metrics),
            ("jobs", fresh.jobs != old.jobs),
            ("debug", fresh.debug != old.debug),
        ];
        for (name, changed) in sections {
            if changed {
                restart_needed.push(name);
            }
        }
        if let Some(models) = &self.models {
            if fresh.inference != old.inference {
                restart_needed.push("inference");
            }
            for failure in models.reload(&fresh) {
                tracing::error!(error = %failure, "model not reloaded; the previous version keeps serving");
            }
        }
        let mut live = self.live.write().expect("live config lock");
        self.cors_on
            .store(!fresh.cors.allowed_origins.is_empty(), Ordering::Relaxed);
        *live = Arc::new(fresh.cors);
        Ok(restart_needed)
    }
}
