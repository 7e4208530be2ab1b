//! Configuration: where the file is found, how environment variables and
//! command-line flags override it, and validation of every value.
//!
//! Owns the `Config` tree and its loading. It must not open databases, sockets
//! or files other than the config file itself: loading is pure, so a bad value
//! is refused before anything starts. A leaf beside `core`: it imports only
//! `core`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::core::groups::Group;

/// Environment variable naming the config file (SPEC 3).
pub const CONFIG_ENV: &str = "MLAPI_CONFIG";
/// System-wide config file, used when it exists and nothing else is named.
pub const SYSTEM_CONFIG: &str = "/etc/mlapi/mlapi.toml";
const ENV_PREFIX: &str = "MLAPI_";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub auth: AuthConfig,
    pub ratelimit: RateLimitConfig,
    /// Rate-limit tiers by name. The built-in `free`, `pro` and `enterprise`
    /// always exist; a file may change their values or add tiers.
    pub tiers: BTreeMap<String, TierConfig>,
    pub cache: CacheConfig,
    pub cors: CorsConfig,
    pub api: ApiConfig,
    pub inference: InferenceConfig,
    /// With none, the bundled demo model serves as `demo`.
    pub jobs: JobsConfig,
    pub websocket: WebSocketConfig,
    pub models: Vec<ModelConfig>,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    pub debug: DebugConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            redis: RedisConfig::default(),
            auth: AuthConfig::default(),
            ratelimit: RateLimitConfig::default(),
            tiers: default_tiers(),
            cache: CacheConfig::default(),
            cors: CorsConfig::default(),
            api: ApiConfig::default(),
            inference: InferenceConfig::default(),
            jobs: JobsConfig::default(),
            websocket: WebSocketConfig::default(),
            models: Vec::new(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
            debug: DebugConfig::default(),
        }
    }
}

/// A list of CIDR blocks where a bare address stands for itself (`/32`,
/// `/128`): `["127.0.0.1", "::1", "10.0.0.0/8"]`.
fn addresses_or_blocks<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| {
            let trimmed = text.trim();
            trimmed
                .parse::<IpNet>()
                .or_else(|_| trimmed.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "{text:?} is neither an IP address nor a CIDR block (e.g. \"10.0.0.1\" or \"10.0.0.0/8\")"
                    ))
                })
        })
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    pub max_body_bytes: u64,
    pub drain_secs: u64,
    /// Slow-loris guard: a connection that makes no progress for a whole
    /// period of this length (no request head completed, none in flight, no
    /// response bytes taken) is closed; see `http::conn`.
    pub head_timeout_secs: u64,
    /// Peers whose `X-Forwarded-For` is believed (addresses or CIDR blocks).
    #[serde(deserialize_with = "addresses_or_blocks")]
    pub trusted_proxies: Vec<IpNet>,
    pub tls_cert: String,
    pub tls_key: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            max_body_bytes: 1024 * 1024,
            drain_secs: 10,
            head_timeout_secs: 10,
            trusted_proxies: Vec::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
        }
    }
}

impl ServerConfig {
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Empty: `$STATE_DIRECTORY/mlapi.db` under systemd, else the user data dir.
    pub path: String,
    /// How long a writer waits for another process's write lock.
    pub busy_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            path: String::new(),
            busy_timeout_ms: 5000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Empty: no Redis; everything stays in-process.
    pub url: String,
    pub prefix: String,
    /// Longest wait for one Redis command on the request path; past it the
    /// request falls back (see `ratelimit.on_redis_error`).
    pub timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            prefix: "mlapi:".into(),
            timeout_ms: 50,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// The version for unversioned paths (`/api/predict`, `/predict`) when the
    /// request names none: `1` or `2` (`v1`, `2.0`, … accepted).
    pub default_version: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            default_version: "1".into(),
        }
    }
}

impl ApiConfig {
    pub fn default_version(&self) -> u8 {
        crate::core::versions::parse(&self.default_version).unwrap_or(1)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct InferenceConfig {
    /// Most `instances` in one v2 request.
    pub max_batch: u32,
    /// Longer inferences answer 504.
    pub timeout_ms: u64,
    /// Inferences running at once (each on a blocking thread).
    pub max_concurrent: u32,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            max_batch: 100,
            timeout_ms: 2000,
            max_concurrent: std::thread::available_parallelism().map_or(2, |n| n.get() as u32),
        }
    }
}

/// `[jobs]`: batch jobs and the workers that run them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Job workers in this daemon; 0: it runs none (it still accepts jobs).
    pub workers: u32,
    /// Instances in one job; more → 413.
    pub max_instances: u32,
    /// Queued + running jobs per user; more → 429.
    pub max_active_per_user: u32,
    /// Instances computed and committed together.
    pub chunk_size: u32,
    /// A claimed job whose daemon stops committing is taken over after this.
    pub lease_secs: u64,
    /// Finished jobs and their results are deleted after this.
    pub retention_secs: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            max_instances: 10_000,
            max_active_per_user: 5,
            chunk_size: 100,
            lease_secs: 30,
            retention_secs: 7 * 86_400,
        }
    }
}

/// `[websocket]`: live job events over `GET /api/v1/ws`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    /// Open sockets per daemon; an upgrade past it → 503.
    pub max_connections: u32,
    /// The server pings this often; a client silent for two periods is closed.
    pub ping_secs: u64,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            ping_secs: 30,
        }
    }
}

/// One `[[models]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    /// The ONNX file; relative paths are taken from the config file's directory.
    pub path: String,
    /// Class names, in the order of the model's probability output.
    pub labels: Vec<String>,
    pub input_size: usize,
    pub default: bool,
    pub cache_ttl_secs: u64,
    /// Shown as `model_version`; without it, the first 12 hex digits of the file's SHA-256.
    pub version: Option<String>,
    pub features: Option<Vec<String>>,
    /// `[min, max]` per feature; values outside are refused with 422.
    pub feature_bounds: Option<Vec<(f64, f64)>>,
    /// The occlusion baseline per feature (default: zeros).
    pub baseline: Option<Vec<f64>>,
    /// Open Inference Protocol v2 servers (`http://host:port`) that run this
    /// model, instead of a `path`. The `upstream_*` settings and those below
    /// apply only to such a model.
    pub upstream: Vec<String>,
    /// The model's name on the upstream (default: `name`).
    pub upstream_model: Option<String>,
    /// The input tensor's name (default: `input`).
    pub upstream_input: Option<String>,
    /// The output tensor holding `[n, labels]` probabilities (default: `probabilities`).
    pub upstream_output: Option<String>,
    pub upstream_datatype: Option<Datatype>,
    /// Sent with every upstream request, health checks included; never logged.
    pub upstream_headers: BTreeMap<String, String>,
    pub balance: Option<Balance>,
    /// One inference, retries included.
    pub timeout_ms: Option<u64>,
    pub health_interval_secs: Option<u64>,
    pub breaker_failures: Option<u32>,
    pub breaker_open_secs: Option<u64>,
}

/// The tensor type mlapi sends to an upstream.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum Datatype {
    #[default]
    FP32,
    FP64,
}

impl Datatype {
    pub fn as_str(self) -> &'static str {
        match self {
            Datatype::FP32 => "FP32",
            Datatype::FP64 => "FP64",
        }
    }
}

/// How an upstream model's requests are spread over its endpoints.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    Random,
    /// The endpoint with the fewest requests in flight.
    LeastConnections,
}

/// An upstream model's settings with the defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub endpoints: Vec<String>,
    pub model: String,
    pub input: String,
    pub output: String,
    pub datatype: Datatype,
    pub headers: BTreeMap<String, String>,
    pub balance: Balance,
    pub timeout_ms: u64,
    pub health_interval_secs: u64,
    pub breaker_failures: u32,
    pub breaker_open_secs: u64,
}

impl ModelConfig {
    /// The upstream settings, for a model served by `upstream` servers.
    pub fn upstream(&self) -> Option<UpstreamConfig> {
        if self.upstream.is_empty() {
            return None;
        }
        Some(UpstreamConfig {
            endpoints: self
                .upstream
                .iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            model: self
                .upstream_model
                .clone()
                .unwrap_or_else(|| self.name.clone()),
            input: self
                .upstream_input
                .clone()
                .unwrap_or_else(|| "input".into()),
            output: self
                .upstream_output
                .clone()
                .unwrap_or_else(|| "probabilities".into()),
            datatype: self.upstream_datatype.unwrap_or_default(),
            headers: self.upstream_headers.clone(),
            balance: self.balance.unwrap_or_default(),
            timeout_ms: self.timeout_ms.unwrap_or(2000),
            health_interval_secs: self.health_interval_secs.unwrap_or(5),
            breaker_failures: self.breaker_failures.unwrap_or(5),
            breaker_open_secs: self.breaker_open_secs.unwrap_or(30),
        })
    }

    /// The upstream-only settings this entry sets, by name.
    fn upstream_settings_set(&self) -> Vec<&'static str> {
        [
            ("upstream_model", self.upstream_model.is_some()),
            ("upstream_input", self.upstream_input.is_some()),
            ("upstream_output", self.upstream_output.is_some()),
            ("upstream_datatype", self.upstream_datatype.is_some()),
            ("upstream_headers", !self.upstream_headers.is_empty()),
            ("balance", self.balance.is_some()),
            ("timeout_ms", self.timeout_ms.is_some()),
            ("health_interval_secs", self.health_interval_secs.is_some()),
            ("breaker_failures", self.breaker_failures.is_some()),
            ("breaker_open_secs", self.breaker_open_secs.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            path: String::new(),
            labels: Vec::new(),
            input_size: 0,
            default: false,
            cache_ttl_secs: 300,
            version: None,
            features: None,
            feature_bounds: None,
            baseline: None,
            upstream: Vec::new(),
            upstream_model: None,
            upstream_input: None,
            upstream_output: None,
            upstream_datatype: None,
            upstream_headers: BTreeMap::new(),
            balance: None,
            timeout_ms: None,
            health_interval_secs: None,
            breaker_failures: None,
            breaker_open_secs: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum JwtAlgorithm {
    #[default]
    HS256,
    EdDSA,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 signing secret, at least 32 bytes. Empty: generated on first
    /// use and stored 0600 next to the database.
    pub jwt_secret: String,
    pub jwt_algorithm: JwtAlgorithm,
    pub issuer: String,
    pub audience: String,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    pub default_tier: String,
    pub allow_registration: bool,
    /// The OAuth2 password grant at /api/v1/auth/token (deprecated by RFC 9700).
    pub password_grant: bool,
    /// Argon2id cost. The defaults are OWASP's minimum; lower values are for tests.
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// Password hashes computed at once (each holds argon2_memory_kib).
    pub max_concurrent_hashes: u32,
    /// Active API keys one user may hold.
    pub max_keys_per_user: u32,
    /// How often API-key usage counts are written to the database.
    pub key_usage_flush_secs: u64,
    /// Failed logins for one username within the window that lock it.
    pub lockout_threshold: u32,
    pub lockout_window_secs: u64,
    pub lockout_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: String::new(),
            jwt_algorithm: JwtAlgorithm::HS256,
            issuer: "mlapi".into(),
            audience: "mlapi".into(),
            access_ttl_secs: 900,
            refresh_ttl_secs: 604_800,
            default_tier: "free".into(),
            allow_registration: true,
            password_grant: true,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            max_concurrent_hashes: 4,
            max_keys_per_user: 5,
            key_usage_flush_secs: 5,
            lockout_threshold: 5,
            lockout_window_secs: 900,
            lockout_secs: 900,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per minute per client IP on unauthenticated routes (login,
    /// register, token, refresh).
    pub anonymous_per_minute: u32,
    /// What limited requests do while Redis is unreachable.
    pub on_redis_error: OnRedisError,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            anonymous_per_minute: 20,
            on_redis_error: OnRedisError::Local,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnRedisError {
    /// Keep limiting, per daemon, in process.
    Local,
    /// Let requests through unlimited.
    Allow,
    /// Refuse limited requests with 503.
    Deny,
}

/// Limits of one tier: token buckets per user, refilled at each rate.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TierConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_hour: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_day: Option<u32>,
    /// Requests allowed at once (the per-minute bucket's size); default `per_minute`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Extra limits for one endpoint group (`predict`, `models`, `auth`, `admin`).
    pub endpoints: BTreeMap<String, EndpointLimits>,
    /// Count and report this tier's own windows, never refuse on them (to
    /// try a limit on live traffic first).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_hour: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_day: Option<u32>,
    /// Count and report these windows, never refuse on them.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

impl TierConfig {
    /// The most requests a day this tier's tightest window lets through
    /// (unbounded for a shadow tier, which refuses nothing).
    pub fn daily_capacity(&self) -> u64 {
        if self.shadow {
            return u64::MAX;
        }
        [
            self.per_minute.map(|n| u64::from(n) * 1_440),
            self.per_hour.map(|n| u64::from(n) * 24),
            self.per_day.map(u64::from),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(u64::MAX)
    }
}

/// The seed's tiers (SPEC 5).
pub fn default_tiers() -> BTreeMap<String, TierConfig> {
    let tier = |minute, day| TierConfig {
        per_minute: Some(minute),
        per_day: Some(day),
        ..TierConfig::default()
    };
    BTreeMap::from([
        ("free".to_string(), tier(10, 1_000)),
        ("pro".to_string(), tier(100, 50_000)),
        ("enterprise".to_string(), tier(1_000, 1_000_000)),
    ])
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Most predictions kept in process (per daemon).
    pub max_entries: u64,
    /// Most memory (estimated) those entries may take, per daemon.
    pub max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_bytes: 128 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins (`scheme://host[:port]`) allowed to call the API from a browser.
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `mlapi=debug,warn`; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// `GET /metrics`. Read at start (a change needs a restart).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// No credential needed: bind the daemon to a private address then.
    pub public: bool,
}

/// Switches that exist for the test suite. Never enable them in production.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DebugConfig {
    /// Mounts `/debug/sleep`, `/debug/panic` and `/debug/echo`.
    pub test_routes: bool,
    /// Adds this delay to every inference (to test timeouts and isolation).
    pub inference_delay_ms: u64,
}

/// Where a value came from, so an error can point at the right place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Env(String),
    Flag(&'static str),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Env(name) => write!(f, "environment variable {name}"),
            Origin::Flag(flag) => write!(f, "command-line flag {flag}"),
            Origin::Default => f.write_str("built-in defaults"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{origin}: cannot read config file: {message}")]
    Read { origin: Origin, message: String },
    #[error("{origin}: invalid TOML: {message}")]
    Syntax { origin: Origin, message: String },
    #[error("{origin}: key `{key}`: {message}")]
    Value {
        origin: Origin,
        key: String,
        message: String,
    },
}

/// Overrides given on the command line (`--db`, `--redis`, `--bind`).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub db: Option<String>,
    pub redis: Option<String>,
    pub bind: Option<String>,
}

/// The effective configuration and the file it came from, if any.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub file: Option<PathBuf>,
}

/// Finds the config file per SPEC 3: `--config`, `$MLAPI_CONFIG`, the system
/// file, then the user config dir. A named file must exist; the others are optional.
pub fn locate(flag: Option<&Path>) -> Result<Option<PathBuf>, ConfigError> {
    if let Some(path) = flag {
        return must_exist(path, Origin::Flag("--config"));
    }
    if let Some(path) = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()) {
        return must_exist(Path::new(&path), Origin::Env(CONFIG_ENV.into()));
    }
    let system = Path::new(SYSTEM_CONFIG);
    if system.is_file() {
        return Ok(Some(system.to_path_buf()));
    }
    Ok(user_config_file().filter(|p| p.is_file()))
}

fn must_exist(path: &Path, origin: Origin) -> Result<Option<PathBuf>, ConfigError> {
    if path.is_file() {
        Ok(Some(path.to_path_buf()))
    } else {
        Err(ConfigError::Read {
            origin,
            message: format!("{} does not exist or is not a file", path.display()),
        })
    }
}

pub fn user_config_file() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "mlapi").map(|d| d.config_dir().join("mlapi.toml"))
}

/// Loads the file (if any), applies `MLAPI_<SECTION>_<KEY>` variables from
/// `env`, then the command-line overrides, and validates the result.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> Result<Loaded, ConfigError> {
    let mut table = match file {
        Some(path) => {
            let origin = Origin::File(path.to_path_buf());
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                origin: origin.clone(),
                message: e.to_string(),
            })?;
            text.parse::<toml::Table>()
                .map_err(|e| ConfigError::Syntax {
                    origin,
                    message: one_line_toml_error(&text, &e),
                })?
        }
        None => toml::Table::new(),
    };
    let file_origin = file.map_or(Origin::Default, |p| Origin::File(p.to_path_buf()));

    // Remember which keys were overridden so errors name the variable or
    // flag, not the file.
    let mut origins: BTreeMap<String, Origin> = BTreeMap::new();
    let template = toml::Table::try_from(Config::default()).expect("defaults serialize");
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k != CONFIG_ENV)
        .collect();
    env.sort();
    for (name, value) in env {
        let Some((section, key)) = split_env_name(&name, &template) else {
            return Err(ConfigError::Value {
                origin: Origin::Env(name.clone()),
                key: name[ENV_PREFIX.len()..].to_ascii_lowercase(),
                message: format!(
                    "no such setting; variables are MLAPI_<SECTION>_<KEY>, e.g. MLAPI_SERVER_BIND (sections: {})",
                    template.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            });
        };
        let origin = Origin::Env(name);
        set_typed(&mut table, &template, &section, &key, &value, &origin)?;
        origins.insert(format!("{section}.{key}"), origin);
    }
    let flags = [
        ("database", "path", "--db", &overrides.db),
        ("redis", "url", "--redis", &overrides.redis),
        ("server", "bind", "--bind", &overrides.bind),
    ];
    for (section, key, flag, value) in flags {
        if let Some(value) = value {
            let origin = Origin::Flag(flag);
            set_typed(&mut table, &template, section, key, value, &origin)?;
            origins.insert(format!("{section}.{key}"), origin);
        }
    }

    merge_builtin_tiers(&mut table, &template);

    let origin_of = |key: &str| {
        origins
            .iter()
            .find(|(k, _)| key == k.as_str() || key.starts_with(&format!("{k}[")))
            .map_or_else(|| file_origin.clone(), |(_, o)| o.clone())
    };
    let config: Config = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(
        |e: serde_path_to_error::Error<toml::de::Error>| {
            let key = e.path().to_string();
            let mut message = e.into_inner().message().to_string();
            if key == "server.bind" {
                message.push_str(" (expected IP:port, e.g. 127.0.0.1:8000 or [::1]:8000; host names are not resolved)");
            }
            ConfigError::Value {
                origin: origin_of(&key),
                message,
                key,
            }
        },
    )?;
    validate(&config).map_err(|(key, message)| ConfigError::Value {
        origin: origin_of(key),
        key: key.to_string(),
        message,
    })?;
    let mut config = config;
    if let Some(dir) = file.and_then(Path::parent) {
        for model in &mut config.models {
            if !model.path.is_empty() && Path::new(&model.path).is_relative() {
                model.path = dir.join(&model.path).display().to_string();
            }
        }
    }
    Ok(Loaded {
        config,
        file: file.map(Path::to_path_buf),
    })
}

/// A file that sets `[tiers.free] per_minute = 20` changes that one value:
/// the built-in tiers and their other values stay.
fn merge_builtin_tiers(table: &mut toml::Table, template: &toml::Table) {
    let Some(toml::Value::Table(builtin)) = template.get("tiers") else {
        return;
    };
    let toml::Value::Table(tiers) = table
        .entry("tiers")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
    else {
        // Not a table: deserializing reports it with the key.
        return;
    };
    for (name, defaults) in builtin {
        let entry = tiers
            .entry(name.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let (toml::Value::Table(tier), toml::Value::Table(defaults)) = (entry, defaults) {
            for (key, value) in defaults {
                tier.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
    }
}

/// toml's message draws the offending line over several lines; keep it to
/// one: the reason and the line number.
fn one_line_toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {}", e.message().trim())
        }
        None => e.message().trim().to_string(),
    }
}

/// `MLAPI_SERVER_MAX_BODY_BYTES` → (`server`, `max_body_bytes`), only for real settings.
fn split_env_name(name: &str, template: &toml::Table) -> Option<(String, String)> {
    let rest = name.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
    let (section, key) = rest.split_once('_')?;
    let fields = template.get(section)?.as_table()?;
    fields
        .contains_key(key)
        .then(|| (section.to_string(), key.to_string()))
}

/// Converts a string override to the type the default has, so
/// `MLAPI_SERVER_DRAIN_SECS=5` is a number and `MLAPI_REDIS_URL=1` a string.
fn set_typed(
    table: &mut toml::Table,
    template: &toml::Table,
    section: &str,
    key: &str,
    raw: &str,
    origin: &Origin,
) -> Result<(), ConfigError> {
    let bad = |message: String| ConfigError::Value {
        origin: origin.clone(),
        key: format!("{section}.{key}"),
        message,
    };
    let like = &template[section][key];
    let value = match like {
        toml::Value::Integer(_) => raw
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| bad(format!("expected a whole number, got {raw:?}")))?,
        toml::Value::Boolean(_) => match raw.trim() {
            "true" | "1" | "yes" => toml::Value::Boolean(true),
            "false" | "0" | "no" => toml::Value::Boolean(false),
            _ => return Err(bad(format!("expected true or false, got {raw:?}"))),
        },
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
        _ => toml::Value::String(raw.to_string()),
    };
    let entry = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    match entry {
        toml::Value::Table(t) => {
            t.insert(key.to_string(), value);
            Ok(())
        }
        _ => Err(bad(format!(
            "`{section}` in the config file is not a table"
        ))),
    }
}

/// Checks that serde cannot express. Returns the offending key and why.
fn validate(c: &Config) -> Result<(), (&'static str, String)> {
    const MAX_BODY_CAP: u64 = 64 * 1024 * 1024;
    if c.server.max_body_bytes == 0 || c.server.max_body_bytes > MAX_BODY_CAP {
        return Err((
            "server.max_body_bytes",
            format!("must be between 1 and {MAX_BODY_CAP}"),
        ));
    }
    if c.server.drain_secs > 3600 {
        return Err(("server.drain_secs", "must be at most 3600".into()));
    }
    if !(1..=3600).contains(&c.server.head_timeout_secs) {
        return Err((
            "server.head_timeout_secs",
            "must be between 1 and 3600".into(),
        ));
    }
    if !c.server.tls_cert.is_empty() || !c.server.tls_key.is_empty() {
        let key = if c.server.tls_cert.is_empty() {
            "server.tls_key"
        } else {
            "server.tls_cert"
        };
        return Err((
            key,
            "TLS termination is not supported by this version; leave tls_cert and tls_key empty and terminate TLS at a reverse proxy".into(),
        ));
    }
    if c.database.busy_timeout_ms > 600_000 {
        return Err((
            "database.busy_timeout_ms",
            "must be at most 600000 (10 minutes)".into(),
        ));
    }
    if !c.redis.url.is_empty() {
        let scheme_ok = ["redis://", "rediss://", "redis+unix://", "unix://"]
            .iter()
            .any(|s| c.redis.url.starts_with(s));
        if !scheme_ok || redis::Client::open(c.redis.url.as_str()).is_err() {
            return Err((
                "redis.url",
                "expected redis://host:port[/db], rediss://… or unix:///path/to/redis.sock".into(),
            ));
        }
    }
    if c.redis.prefix.is_empty() || c.redis.prefix.contains(['*', '?', '[', ']', ' ']) {
        return Err((
            "redis.prefix",
            "must be non-empty and free of spaces and glob characters (* ? [ ])".into(),
        ));
    }
    for origin in &c.cors.allowed_origins {
        if let Err(why) = check_origin(origin) {
            return Err(("cors.allowed_origins", format!("{origin:?}: {why}")));
        }
    }
    let a = &c.auth;
    if !a.jwt_secret.is_empty() && a.jwt_secret.len() < 32 {
        return Err((
            "auth.jwt_secret",
            "must be at least 32 bytes of random text (or empty to generate one)".into(),
        ));
    }
    if !a.jwt_secret.is_empty() && a.jwt_algorithm != JwtAlgorithm::HS256 {
        return Err((
            "auth.jwt_secret",
            "only used with jwt_algorithm = \"HS256\"; EdDSA keys are generated and stored next to the database".into(),
        ));
    }
    if a.issuer.is_empty() || a.audience.is_empty() {
        return Err((
            "auth.issuer",
            "issuer and audience must not be empty".into(),
        ));
    }
    if !(60..=86_400).contains(&a.access_ttl_secs) {
        return Err((
            "auth.access_ttl_secs",
            "must be between 60 and 86400".into(),
        ));
    }
    if a.refresh_ttl_secs < a.access_ttl_secs || a.refresh_ttl_secs > 90 * 86_400 {
        return Err((
            "auth.refresh_ttl_secs",
            "must be at least access_ttl_secs and at most 90 days".into(),
        ));
    }
    if !c.tiers.contains_key(&a.default_tier) {
        return Err((
            "auth.default_tier",
            format!("unknown tier; tiers: {}", c.tier_names().join(", ")),
        ));
    }
    for (name, tier) in &c.tiers {
        check_tier(name, tier).map_err(|m| ("tiers", format!("tiers.{name}: {m}")))?;
    }
    if !(1..=10_000).contains(&c.redis.timeout_ms) {
        return Err(("redis.timeout_ms", "must be between 1 and 10000".into()));
    }
    if c.cache.max_entries > 100_000_000 {
        return Err(("cache.max_entries", "must be at most 100000000".into()));
    }
    if c.cache.max_bytes > 64 * 1024 * 1024 * 1024 {
        return Err(("cache.max_bytes", "must be at most 64 GiB".into()));
    }
    if a.argon2_memory_kib < 8 || a.argon2_iterations == 0 || a.argon2_parallelism == 0 {
        return Err((
            "auth.argon2_memory_kib",
            "argon2 parameters are out of range".into(),
        ));
    }
    if a.max_concurrent_hashes == 0 || a.max_concurrent_hashes > 256 {
        return Err((
            "auth.max_concurrent_hashes",
            "must be between 1 and 256".into(),
        ));
    }
    if a.max_keys_per_user == 0 || a.max_keys_per_user > 1000 {
        return Err((
            "auth.max_keys_per_user",
            "must be between 1 and 1000".into(),
        ));
    }
    if !(1..=3600).contains(&a.key_usage_flush_secs) {
        return Err((
            "auth.key_usage_flush_secs",
            "must be between 1 and 3600".into(),
        ));
    }
    if a.lockout_threshold == 0 {
        return Err(("auth.lockout_threshold", "must be at least 1".into()));
    }
    if c.ratelimit.anonymous_per_minute == 0 {
        return Err((
            "ratelimit.anonymous_per_minute",
            "must be at least 1".into(),
        ));
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&c.log.level) {
        return Err(("log.level", format!("not a valid log filter: {e}")));
    }
    if crate::core::versions::parse(&c.api.default_version).is_none() {
        return Err((
            "api.default_version",
            format!(
                "supported versions: {}",
                crate::core::versions::supported_list()
            ),
        ));
    }
    let inf = &c.inference;
    if inf.max_batch == 0 || inf.max_batch > 10_000 {
        return Err(("inference.max_batch", "must be between 1 and 10000".into()));
    }
    if !(10..=600_000).contains(&inf.timeout_ms) {
        return Err((
            "inference.timeout_ms",
            "must be between 10 and 600000".into(),
        ));
    }
    if inf.max_concurrent == 0 || inf.max_concurrent > 256 {
        return Err((
            "inference.max_concurrent",
            "must be between 1 and 256".into(),
        ));
    }
    let jobs = &c.jobs;
    let ranges: [(&'static str, u64, u64, u64); 8] = [
        ("jobs.workers", u64::from(jobs.workers), 0, 64),
        (
            "jobs.max_instances",
            u64::from(jobs.max_instances),
            1,
            1_000_000,
        ),
        (
            "jobs.max_active_per_user",
            u64::from(jobs.max_active_per_user),
            1,
            10_000,
        ),
        ("jobs.chunk_size", u64::from(jobs.chunk_size), 1, 10_000),
        ("jobs.lease_secs", jobs.lease_secs, 1, 3600),
        (
            "jobs.retention_secs",
            jobs.retention_secs,
            60,
            10 * 365 * 86_400,
        ),
        (
            "websocket.max_connections",
            u64::from(c.websocket.max_connections),
            1,
            1_000_000,
        ),
        ("websocket.ping_secs", c.websocket.ping_secs, 1, 3600),
    ];
    for (key, value, lo, hi) in ranges {
        if !(lo..=hi).contains(&value) {
            return Err((key, format!("must be between {lo} and {hi}")));
        }
    }
    if let Err(message) = check_models(&c.models) {
        return Err(("models", message));
    }
    // EnvFilter reads a bare word as a target name, so `loud` would silence
    // everything; bare words must be levels.
    for directive in c
        .log
        .level
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        let known = ["trace", "debug", "info", "warn", "error", "off"];
        if !known.contains(&level.to_ascii_lowercase().as_str()) {
            return Err((
                "log.level",
                format!("{directive:?}: use a level (trace, debug, info, warn, error, off), optionally per target (mlapi=debug)"),
            ));
        }
    }
    Ok(())
}

fn check_tier(name: &str, tier: &TierConfig) -> Result<(), String> {
    // No `-`: policy names join tier, group and window with it.
    let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    if name.is_empty() || name.len() > 32 || !name.chars().all(plain) {
        return Err("tier names are 1-32 characters of a-z, 0-9 and _".into());
    }
    if name == "anonymous" {
        return Err("`anonymous` is reserved: it labels the per-IP limits in /metrics".into());
    }
    let windows = [tier.per_minute, tier.per_hour, tier.per_day];
    if windows.iter().all(Option::is_none) {
        return Err("set at least one of per_minute, per_hour, per_day".into());
    }
    if windows.contains(&Some(0)) {
        return Err("limits must be at least 1".into());
    }
    match (tier.burst, tier.per_minute) {
        (Some(_), None) => return Err("burst needs per_minute".into()),
        (Some(b), Some(m)) if b == 0 || b > m => {
            return Err(format!("burst must be between 1 and per_minute ({m})"))
        }
        _ => {}
    }
    for (group, limits) in &tier.endpoints {
        if Group::parse(group).is_none() {
            let groups: Vec<&str> = Group::ALL.iter().map(|g| g.as_str()).collect();
            return Err(format!(
                "unknown endpoint group {group:?}; groups: {}",
                groups.join(", ")
            ));
        }
        let windows = [limits.per_minute, limits.per_hour, limits.per_day];
        if windows.iter().all(Option::is_none) {
            return Err(format!(
                "endpoints.{group}: set at least one of per_minute, per_hour, per_day"
            ));
        }
        if windows.contains(&Some(0)) {
            return Err(format!("endpoints.{group}: limits must be at least 1"));
        }
    }
    Ok(())
}

fn check_models(models: &[ModelConfig]) -> Result<(), String> {
    let mut names = std::collections::HashSet::new();
    for (i, m) in models.iter().enumerate() {
        let at = |what: &str| format!("[{i}] ({:?}): {what}", m.name);
        let name_ok = !m.name.is_empty()
            && m.name.len() <= 64
            && m.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if !name_ok {
            return Err(at(
                "name must be 1 to 64 characters of A-Z, a-z, 0-9, _, - and .",
            ));
        }
        if !names.insert(m.name.as_str()) {
            return Err(at("another model has this name"));
        }
        match (m.path.is_empty(), m.upstream.is_empty()) {
            (true, true) => {
                return Err(at(
                    "path (an ONNX file) or upstream (model server URLs) is required",
                ))
            }
            (false, false) => return Err(at("set path or upstream, not both")),
            (false, true) => {
                if let Some(name) = m.upstream_settings_set().first() {
                    return Err(at(&format!(
                        "{name} applies only to a model with upstream servers"
                    )));
                }
            }
            (true, false) => check_upstream(m).map_err(|e| at(&e))?,
        }
        if m.labels.len() < 2 {
            return Err(at("labels needs at least two class names"));
        }
        if m.input_size == 0 || m.input_size > 100_000 {
            return Err(at("input_size must be between 1 and 100000"));
        }
        let n = m.input_size;
        if m.features.as_ref().is_some_and(|f| f.len() != n) {
            return Err(at("features must have input_size names"));
        }
        if let Some(bounds) = &m.feature_bounds {
            if bounds.len() != n
                || bounds
                    .iter()
                    .any(|(lo, hi)| !(lo.is_finite() && hi.is_finite() && lo <= hi))
            {
                return Err(at(
                    "feature_bounds must have input_size finite [min, max] pairs with min <= max",
                ));
            }
        }
        if m.baseline
            .as_ref()
            .is_some_and(|b| b.len() != n || b.iter().any(|v| !v.is_finite()))
        {
            return Err(at("baseline must have input_size finite values"));
        }
    }
    if models.iter().filter(|m| m.default).count() > 1 {
        return Err("only one model may be the default".into());
    }
    Ok(())
}

fn check_upstream(m: &ModelConfig) -> Result<(), String> {
    if m.upstream.len() > 64 {
        return Err("upstream lists at most 64 endpoints".into());
    }
    let mut seen = std::collections::HashSet::new();
    for url in &m.upstream {
        check_endpoint(url).map_err(|e| format!("upstream {url:?}: {e}"))?;
        if !seen.insert(url.trim_end_matches('/')) {
            return Err(format!("upstream {url:?} is listed twice"));
        }
    }
    let names = [
        ("upstream_model", &m.upstream_model),
        ("upstream_input", &m.upstream_input),
        ("upstream_output", &m.upstream_output),
    ];
    for (key, value) in names {
        if value
            .as_deref()
            .is_some_and(|v| v.is_empty() || v.len() > 256 || v.contains(['/', '?', '#']))
        {
            return Err(format!(
                "{key} must be 1 to 256 characters without /, ? or #"
            ));
        }
    }
    for (name, value) in &m.upstream_headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!("upstream_headers: {name:?} is not a header name"));
        }
        if http::HeaderValue::from_str(value).is_err() {
            return Err(format!(
                "upstream_headers: the value of {name:?} is not a valid header value"
            ));
        }
    }
    if m.timeout_ms.is_some_and(|t| !(10..=600_000).contains(&t)) {
        return Err("timeout_ms must be between 10 and 600000".into());
    }
    if m.health_interval_secs
        .is_some_and(|t| !(1..=3600).contains(&t))
    {
        return Err("health_interval_secs must be between 1 and 3600".into());
    }
    if m.breaker_failures.is_some_and(|n| !(1..=1000).contains(&n)) {
        return Err("breaker_failures must be between 1 and 1000".into());
    }
    if m.breaker_open_secs
        .is_some_and(|t| !(1..=3600).contains(&t))
    {
        return Err("breaker_open_secs must be between 1 and 3600".into());
    }
    Ok(())
}

/// `http://host:port[/prefix]`: plain HTTP (TLS to upstreams is not built).
fn check_endpoint(url: &str) -> Result<(), &'static str> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| "not a URL (e.g. \"http://10.0.0.5:8080\")")?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err("https upstreams are not supported; use http on a private network")
        }
        _ => return Err("must start with http://"),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("has no host");
    }
    if uri.query().is_some() || url.contains('#') || url.contains('@') {
        return Err("must be http://host[:port][/path] with no query, fragment or user");
    }
    Ok(())
}

fn check_origin(origin: &str) -> Result<(), &'static str> {
    if origin == "*" {
        return Err("wildcards are not allowed; list each origin");
    }
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or("must start with https:// or http://")?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '*', ' ']) {
        return Err("must be scheme://host[:port] with no path");
    }
    Ok(())
}

impl Config {
    /// Tier names from the most to the least restrictive (by requests a day).
    pub fn tier_names(&self) -> Vec<&str> {
        let mut tiers: Vec<(&String, &TierConfig)> = self.tiers.iter().collect();
        tiers.sort_by_key(|(name, t)| (t.daily_capacity(), name.as_str()));
        tiers.into_iter().map(|(name, _)| name.as_str()).collect()
    }

    /// The database file: the configured path, else `$STATE_DIRECTORY/mlapi.db`
    /// (systemd), else `mlapi.db` in the user data dir.
    pub fn database_path(&self) -> PathBuf {
        if !self.database.path.is_empty() {
            return PathBuf::from(&self.database.path);
        }
        if let Some(dirs) = std::env::var_os("STATE_DIRECTORY").filter(|v| !v.is_empty()) {
            // systemd passes a colon-separated list when several are configured.
            let first = dirs
                .to_string_lossy()
                .split(':')
                .next()
                .unwrap_or("")
                .to_string();
            if !first.is_empty() {
                return Path::new(&first).join("mlapi.db");
            }
        }
        directories::ProjectDirs::from("", "", "mlapi")
            .map(|d| d.data_dir().join("mlapi.db"))
            .unwrap_or_else(|| PathBuf::from("mlapi.db"))
    }

    /// The effective settings as `section.key = value` rows, secrets redacted.
    pub fn redacted(&self) -> toml::Table {
        let mut table = toml::Table::try_from(self).expect("config serializes");
        if let Some(toml::Value::Table(auth)) = table.get_mut("auth") {
            if let Some(toml::Value::String(secret)) = auth.get_mut("jwt_secret") {
                if !secret.is_empty() {
                    *secret = "(set, redacted)".into();
                }
            }
        }
        if let Some(toml::Value::Table(redis)) = table.get_mut("redis") {
            if let Some(toml::Value::String(url)) = redis.get_mut("url") {
                *url = redact_url_password(url);
            }
        }
        // Upstream headers carry credentials (another mlapi's key, a token).
        if let Some(toml::Value::Array(models)) = table.get_mut("models") {
            for model in models {
                if let Some(toml::Value::Table(headers)) = model.get_mut("upstream_headers") {
                    for (_, value) in headers.iter_mut() {
                        *value = "(set, redacted)".into();
                    }
                }
            }
        }
        table
    }
}

/// `redis://user:secret@host` → `redis://user:***@host`; a `password=` or
/// `pass=` query parameter is masked too.
fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("", |(u, _)| u);
            format!("{user}:***@{host}")
        }
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let masked: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _))
                        if k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("pass") =>
                    {
                        format!("{k}=***")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", masked.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_take_addresses_and_blocks() {
        let config = load_str(
            "[server]\ntrusted_proxies = [\"127.0.0.1\", \"::1\", \"10.0.0.0/8\"]\n",
            &[],
        )
        .unwrap();
        let server = &config.server;
        for trusted in ["127.0.0.1", "::1", "10.1.2.3"] {
            assert!(
                server.is_trusted_proxy(trusted.parse().unwrap()),
                "{trusted}"
            );
        }
        for other in ["127.0.0.2", "::2", "11.0.0.1"] {
            assert!(!server.is_trusted_proxy(other.parse().unwrap()), "{other}");
        }
        let err = load_str("[server]\ntrusted_proxies = [\"localhost\"]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("server.trusted_proxies") && err.contains("neither an IP address"),
            "{err}"
        );
    }

    #[test]
    fn shadow_tiers_are_never_the_strictest_and_anonymous_is_reserved() {
        let config = load_str("[tiers.trial]\nper_minute = 1\nshadow = true\n", &[]).unwrap();
        assert_eq!(config.tier_names()[0], "free", "{:?}", config.tier_names());
        assert_eq!(*config.tier_names().last().unwrap(), "trial");
        let err = load_str("[tiers.anonymous]\nper_minute = 5\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`anonymous` is reserved"), "{err}");
    }

    fn load_str(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mlapi.toml");
        std::fs::write(&path, text).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        load(Some(&path), env, &Overrides::default()).map(|l| l.config)
    }

    #[test]
    fn no_file_gives_defaults() {
        let loaded = load(None, Vec::new(), &Overrides::default()).unwrap();
        assert_eq!(loaded.config, Config::default());
        assert_eq!(loaded.config.server.bind.to_string(), "127.0.0.1:8000");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = load_str("[server]\nbind = 5\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("mlapi.toml: key `server.bind`"), "{err}");
        assert!(err.contains("invalid type"), "{err}");
    }

    #[test]
    fn unknown_key_is_refused() {
        let err = load_str("[server]\nbnid = \"x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `bnid`"), "{err}");
    }

    #[test]
    fn env_overrides_file_and_errors_name_the_variable() {
        let c = load_str(
            "[server]\ndrain_secs = 3\n",
            &[
                ("MLAPI_SERVER_DRAIN_SECS", "7"),
                ("MLAPI_REDIS_PREFIX", "app:"),
            ],
        )
        .unwrap();
        assert_eq!(c.server.drain_secs, 7);
        assert_eq!(c.redis.prefix, "app:");

        let err = load_str("", &[("MLAPI_SERVER_BIND", "nope")])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("environment variable MLAPI_SERVER_BIND: key `server.bind`"),
            "{err}"
        );
        let err = load_str("", &[("MLAPI_SERVER_BNID", "x")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("MLAPI_SERVER_BNID"), "{err}");
    }

    #[test]
    fn env_lists_become_arrays() {
        let c = load_str(
            "",
            &[(
                "MLAPI_CORS_ALLOWED_ORIGINS",
                "https://a.example, https://b.example",
            )],
        )
        .unwrap();
        assert_eq!(
            c.cors.allowed_origins,
            ["https://a.example", "https://b.example"]
        );
    }

    #[test]
    fn semantic_checks() {
        for (text, key) in [
            ("[server]\nmax_body_bytes = 0\n", "server.max_body_bytes"),
            ("[server]\ntls_cert = \"/x.pem\"\n", "server.tls_cert"),
            (
                "[cors]\nallowed_origins = [\"*\"]\n",
                "cors.allowed_origins",
            ),
            (
                "[cors]\nallowed_origins = [\"https://a.example/path\"]\n",
                "cors.allowed_origins",
            ),
            ("[redis]\nurl = \"http://localhost\"\n", "redis.url"),
            ("[redis]\nprefix = \"\"\n", "redis.prefix"),
            ("[log]\nformat = \"xml\"\n", "log.format"),
            ("[log]\nlevel = \"loud\"\n", "log.level"),
            (
                "[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
                "server.trusted_proxies",
            ),
        ] {
            let err = load_str(text, &[]).unwrap_err().to_string();
            assert!(err.contains(&format!("key `{key}")), "{text}: {err}");
        }
    }

    #[test]
    fn flags_win_over_env() {
        let overrides = Overrides {
            bind: Some("127.0.0.1:9999".into()),
            ..Default::default()
        };
        let env = vec![(
            "MLAPI_SERVER_BIND".to_string(),
            "127.0.0.1:1111".to_string(),
        )];
        let c = load(None, env, &overrides).unwrap().config;
        assert_eq!(c.server.bind.port(), 9999);
    }

    #[test]
    fn redis_password_is_redacted() {
        assert_eq!(
            redact_url_password("redis://user:hunter2@h:6379/0"),
            "redis://user:***@h:6379/0"
        );
        assert_eq!(redact_url_password("redis://h:6379"), "redis://h:6379");
        assert_eq!(
            redact_url_password("redis+unix:///run/r.sock?db=1&pass=hunter2"),
            "redis+unix:///run/r.sock?db=1&pass=***"
        );
    }
}
