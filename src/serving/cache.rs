//! The prediction cache: answers already computed for the same model file,
//! API major version, response shape and input, kept in two tiers.
//!
//! It owns the cache key (`CacheKey`: a SHA-256 over a canonical encoding, so
//! a changed model file or another API version never shares an entry), the
//! in-process tier (moka, bounded by `cache.max_entries`, each entry living
//! for its model's `cache_ttl_secs`), the optional Redis tier shared by every
//! daemon, single-flight (concurrent misses for one key compute once), the
//! flush of either tier, and the counters behind `cache stats` and metrics.
//!
//! It must not: speak HTTP (the handlers decide what is cached, turn `Outcome`
//! into `X-Cache`, and keep per-request fields such as request ids out of the
//! cached value), touch SQLite (the CLI and the invalidation broadcast call
//! `invalidate_*` and `flush_redis`), or cache an error. Above all it must
//! never fail a prediction because of Redis: every Redis failure is counted
//! and the request goes on as if only the in-process tier existed, since
//! losing the cache may only cost latency, never correctness.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::future::Cache as Moka;
use moka::Expiry;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::remote::{Remote, RemoteError};
use crate::config::CacheConfig;
use crate::core::metrics::Exposition;

/// Keys per SCAN page and per UNLINK when flushing or counting Redis.
const SCAN_BATCH: usize = 500;
/// Deadline for one SCAN or UNLINK batch: the request deadline (~50 ms) is
/// tuned for predictions, not for walking a large keyspace.
const MAINTENANCE_TIMEOUT: Duration = Duration::from_secs(1);
/// Starts every hashed key, so a future change of the encoding can bump it
/// rather than risk colliding with entries written by an older daemon.
const KEY_DOMAIN: &[u8] = b"mlapi-cache-key-v1\0";

/// Identifies one cacheable answer. Two requests share a key exactly when
/// they name the same model (name and file digest), the same API major
/// version and response variant, and the same numbers in the same rows.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Kept readable (and out of the hash's opacity) so one model's entries
    /// can be dropped: by predicate in process, by `SCAN MATCH` in Redis.
    model: Arc<str>,
    hash: [u8; 32],
}

impl CacheKey {
    /// `variant` separates differently shaped responses for the same input
    /// (`"v1"`, `"v2-explain"`, `"v2-batch"` …); the caller picks it.
    ///
    /// The input is encoded by value, not by its JSON text: `1`, `1.0` and
    /// `1.00` are one number and share an entry, while `0.1` and
    /// `0.10000000000000002` are different numbers and do not. `-0.0` counts
    /// as `0.0` (the two compare equal, and clients rarely mean a difference).
    /// Every row's length is part of the encoding, so `[[1,2],[3]]` and
    /// `[[1],[2,3]]` differ; every string is length-prefixed, so no two
    /// (model, digest, variant) triples can run into each other.
    pub fn new(
        model: &str,
        model_digest: &str,
        api_major: u8,
        variant: &str,
        rows: &[Vec<f64>],
    ) -> Self {
        // Encoded into one buffer and hashed in one call: feeding SHA-256
        // a dozen 8-byte pieces cost more than the hashing itself.
        let values: usize = rows.iter().map(Vec::len).sum();
        let mut buf = Vec::with_capacity(
            KEY_DOMAIN.len()
                + model.len()
                + model_digest.len()
                + variant.len()
                + 41
                + 8 * (rows.len() + values),
        );
        buf.extend_from_slice(KEY_DOMAIN);
        length_prefixed(&mut buf, model.as_bytes());
        length_prefixed(&mut buf, model_digest.as_bytes());
        buf.push(api_major);
        length_prefixed(&mut buf, variant.as_bytes());
        buf.extend_from_slice(&(rows.len() as u64).to_le_bytes());
        for row in rows {
            buf.extend_from_slice(&(row.len() as u64).to_le_bytes());
            for &v in row {
                buf.extend_from_slice(&canonical(v).to_bits().to_le_bytes());
            }
        }
        CacheKey {
            model: model.into(),
            hash: Sha256::digest(&buf).into(),
        }
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// The SHA-256 in lower-case hex.
    pub fn hex(&self) -> String {
        hex(&self.hash)
    }

    /// `<prefix>cache:<model>:<hex>`.
    pub fn redis_key(&self, remote: &Remote) -> String {
        remote.key(&format!(
            "cache:{}:{}",
            key_segment(&self.model),
            self.hex()
        ))
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({}:{})", self.model, self.hex())
    }
}

fn length_prefixed(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    buf.extend_from_slice(bytes);
}

/// One bit pattern per value the model could tell apart. NaN never gets
/// past validation; it is folded anyway so the key is a function of the
/// value alone.
fn canonical(v: f64) -> f64 {
    if v == 0.0 {
        0.0
    } else if v.is_nan() {
        f64::NAN
    } else {
        v
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A model name as it appears inside a Redis key. Config validation already
/// limits names to `[A-Za-z0-9._-]`, which pass unchanged; anything else is
/// percent-encoded, so a name can never carry a glob metacharacter into a
/// `SCAN MATCH` pattern nor a `:` that would make `cache:a:*` match model
/// `a:b`. The encoding is injective, so names cannot collide either.
fn key_segment(model: &str) -> String {
    let mut out = String::with_capacity(model.len());
    for b in model.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Escapes Redis glob metacharacters, for the configured key prefix, which
/// config does not restrict.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Where a hit was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Local,
    Redis,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Local => "local",
            Tier::Redis => "redis",
        }
    }
}

/// How a value was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit(Tier),
    /// This call ran `compute`.
    Miss,
    /// The client asked for a fresh answer; this call ran `compute`.
    Bypass,
}

impl Outcome {
    /// The `X-Cache` header value.
    pub fn header_value(self) -> &'static str {
        match self {
            Outcome::Hit(_) => "HIT",
            Outcome::Miss => "MISS",
            Outcome::Bypass => "BYPASS",
        }
    }
}

/// The counters, for `cache stats` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheStats {
    /// In-process entries (this daemon only).
    pub entries: u64,
    /// `hits_local + hits_redis`.
    pub hits: u64,
    pub hits_local: u64,
    pub hits_redis: u64,
    /// Lookups that ran `compute`, failed computations included.
    pub misses: u64,
    pub bypasses: u64,
    /// Redis reads or writes that failed, timed out, found the breaker open
    /// or returned an unreadable value.
    pub redis_errors: u64,
    /// `hits / (hits + misses)`; 0 before any lookup.
    pub hit_rate: f64,
}

/// A cached answer: the JSON document as computed, serialized once. A hit
/// hands out these bytes (a reference count, no copy, no re-encoding); Redis
/// holds the same bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer(Bytes);

impl Answer {
    pub fn encode(value: &Value) -> Self {
        Answer(
            serde_json::to_vec(value)
                .expect("JSON values serialize")
                .into(),
        )
    }

    /// The document's JSON text.
    pub fn json(&self) -> &[u8] {
        &self.0
    }

    /// The document, parsed.
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.0).expect("answers are JSON")
    }
}

/// What the in-process tier holds: the answer, and how long it may live
/// (the model's TTL, or what Redis had left of it).
#[derive(Clone)]
struct Stored {
    answer: Answer,
    ttl: Duration,
}

impl Stored {
    /// What an entry costs in memory: its JSON text plus the key, the
    /// `Bytes` header and moka's bookkeeping.
    fn weight(&self) -> u32 {
        (self.answer.0.len() + 256).min(u32::MAX as usize) as u32
    }
}

/// Per-entry expiry: models have different TTLs, and a refreshed entry
/// (a bypass overwriting it) starts its TTL afresh.
struct PerEntryTtl;

impl Expiry<CacheKey, Stored> for PerEntryTtl {
    fn expire_after_create(&self, _: &CacheKey, stored: &Stored, _: Instant) -> Option<Duration> {
        Some(stored.ttl)
    }

    fn expire_after_update(
        &self,
        _: &CacheKey,
        stored: &Stored,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(stored.ttl)
    }
}

/// Where the value of a lookup came from, as seen by the one call whose
/// initialiser ran (coalesced callers never see it set).
#[derive(Debug, Clone, Copy)]
enum Origin {
    Redis,
    Computed,
}

/// Whether a lookup may answer from the cache (`Cache-Control: no-cache`
/// on the request asks for a fresh answer, which is then stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    Cached,
    Bypass,
}

/// The two-tier prediction cache; see the module doc.
pub struct Cache {
    /// foldhash, not SipHash: keys are SHA-256 digests, which no client
    /// can steer into one bucket.
    local: Moka<CacheKey, Stored, foldhash::fast::RandomState>,
    remote: Option<Arc<Remote>>,
    hits_local: AtomicU64,
    hits_redis: AtomicU64,
    misses: AtomicU64,
    bypasses: AtomicU64,
    redis_errors: AtomicU64,
}

impl Cache {
    /// `remote`: the shared Redis link when `redis.url` is configured.
    pub fn new(config: &CacheConfig, remote: Option<Arc<Remote>>) -> Self {
        // Two bounds in one weigher: total estimated bytes within
        // `max_bytes`, and each entry weighing at least max_bytes/max_entries
        // so there are never more than `max_entries`.
        let floor =
            (config.max_bytes / config.max_entries.max(1)).clamp(1, u64::from(u32::MAX)) as u32;
        let local = Moka::builder()
            .max_capacity(config.max_bytes)
            .weigher(move |_: &CacheKey, stored: &Stored| stored.weight().max(floor))
            .expire_after(PerEntryTtl)
            .support_invalidation_closures()
            .build_with_hasher(foldhash::fast::RandomState::default());
        Cache {
            local,
            remote,
            hits_local: AtomicU64::new(0),
            hits_redis: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bypasses: AtomicU64::new(0),
            redis_errors: AtomicU64::new(0),
        }
    }

    /// The cached answer for `key`, or `compute`'s, which is then stored in
    /// both tiers for `ttl` (the model's `cache_ttl_secs`; zero turns caching
    /// off: `compute` runs every time and nothing is stored).
    ///
    /// - In process first; then Redis (within its deadline), whose hit is
    ///   kept in process too for what it had left of its TTL; then `compute`.
    /// - Single-flight: concurrent lookups of one missing key run one
    ///   initialisation (Redis lookup and `compute`). The caller that ran it
    ///   gets `Miss` (or `Hit(Redis)`); the callers that waited for it get
    ///   `Hit(Local)`, since from their side the answer came from this
    ///   process without computing. If that caller is cancelled, a waiting
    ///   one takes over with its own `compute`. Coalescing is per key and
    ///   error type `E`, so use one `E` per call site.
    /// - An `Err` from `compute` is stored nowhere; every coalesced caller
    ///   gets a clone of it and the next lookup computes again.
    /// - `Read::Bypass` (`Cache-Control: no-cache`): neither tier is read and
    ///   nothing is coalesced (the client wants its own fresh answer); the
    ///   fresh value replaces what both tiers held, so the next ordinary
    ///   lookup hits it. Returns `Bypass`.
    /// - A Redis failure is counted and otherwise ignored.
    pub async fn get_or_compute<F, Fut, E>(
        &self,
        key: &CacheKey,
        ttl: Duration,
        read: Read,
        compute: F,
    ) -> Result<(Answer, Outcome), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Value, E>>,
        E: Clone + Send + Sync + 'static,
    {
        if !ttl.is_zero() && read == Read::Cached {
            if let Some(stored) = self.local.get(key).await {
                self.hits_local.fetch_add(1, Ordering::Relaxed);
                return Ok((stored.answer, Outcome::Hit(Tier::Local)));
            }
        }
        // Boxed: the Redis, single-flight and `compute` futures are large,
        // and unboxed they would sit inline in every future above this one,
        // copied whole each time one moves, though a hit never runs them.
        Box::pin(self.look_further(key, ttl, read, compute)).await
    }

    /// [`Cache::get_or_compute`] past a miss in process, or for a bypass or
    /// a TTL of zero, which never read it.
    async fn look_further<F, Fut, E>(
        &self,
        key: &CacheKey,
        ttl: Duration,
        read: Read,
        compute: F,
    ) -> Result<(Answer, Outcome), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Value, E>>,
        E: Clone + Send + Sync + 'static,
    {
        if ttl.is_zero() {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return Ok((Answer::encode(&compute().await?), Outcome::Miss));
        }
        if read == Read::Bypass {
            let answer = Answer::encode(&compute().await?);
            self.bypasses.fetch_add(1, Ordering::Relaxed);
            let stored = Stored {
                answer: answer.clone(),
                ttl,
            };
            self.local.insert(key.clone(), stored).await;
            self.redis_set(key, &answer, ttl).await;
            return Ok((answer, Outcome::Bypass));
        }

        // Set only by the initialiser, which moka runs in at most one of the
        // coalesced calls: it tells that call apart from those that waited.
        let origin = OnceLock::new();
        let init = async {
            if let Some((answer, left)) = self.redis_get(key).await {
                let _ = origin.set(Origin::Redis);
                return Ok(Stored {
                    answer,
                    ttl: left.min(ttl),
                });
            }
            let _ = origin.set(Origin::Computed);
            self.misses.fetch_add(1, Ordering::Relaxed);
            let answer = Answer::encode(&compute().await?);
            self.redis_set(key, &answer, ttl).await;
            Ok(Stored { answer, ttl })
        };
        match self.local.try_get_with(key.clone(), init).await {
            Ok(stored) => {
                let outcome = match origin.get() {
                    None => {
                        self.hits_local.fetch_add(1, Ordering::Relaxed);
                        Outcome::Hit(Tier::Local)
                    }
                    Some(Origin::Redis) => {
                        self.hits_redis.fetch_add(1, Ordering::Relaxed);
                        Outcome::Hit(Tier::Redis)
                    }
                    Some(Origin::Computed) => Outcome::Miss,
                };
                Ok((stored.answer, outcome))
            }
            // The caller that computed usually holds the only reference.
            Err(shared) => Err(Arc::try_unwrap(shared).unwrap_or_else(|e: Arc<E>| (*e).clone())),
        }
    }

    /// The value and its remaining TTL, or `None` on a miss or any failure.
    async fn redis_get(&self, key: &CacheKey) -> Option<(Answer, Duration)> {
        let remote = self.remote.as_ref()?;
        let redis_key = key.redis_key(remote);
        // MULTI so the TTL read belongs to the value read.
        let reply: Result<(Option<Vec<u8>>, i64), RemoteError> = remote
            .run(|mut conn| async move {
                redis::pipe()
                    .atomic()
                    .cmd("GET")
                    .arg(&redis_key)
                    .cmd("PTTL")
                    .arg(&redis_key)
                    .query_async(&mut conn)
                    .await
            })
            .await;
        let (bytes, pttl) = match reply {
            Ok((Some(bytes), pttl)) => (bytes, pttl),
            Ok((None, _)) => return None,
            Err(_) => {
                // `Remote` logs the outage; a per-request log would flood.
                self.redis_errors.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        // Only a JSON object is an answer we could have written.
        let object = bytes.first() == Some(&b'{');
        match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
            // No expiry (-1) cannot come from us; the caller caps it at the TTL.
            Ok(_) if object => Some((
                Answer(bytes.into()),
                u64::try_from(pttl)
                    .ok()
                    .filter(|&ms| ms > 0)
                    .map_or(Duration::MAX, Duration::from_millis),
            )),
            result => {
                // Recomputing overwrites it, so this logs about once per key.
                self.redis_errors.fetch_add(1, Ordering::Relaxed);
                let error = result
                    .err()
                    .map_or("not a JSON object".into(), |e| e.to_string());
                tracing::warn!(key = %key.hex(), %error, "unreadable value in the redis cache; recomputing");
                None
            }
        }
    }

    async fn redis_set(&self, key: &CacheKey, answer: &Answer, ttl: Duration) {
        let Some(remote) = &self.remote else {
            return;
        };
        let bytes = answer.0.clone();
        let redis_key = key.redis_key(remote);
        // Whole seconds, rounded up so an entry never expires early in Redis
        // while still alive in process.
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let written = remote
            .run(|mut conn| async move {
                redis::cmd("SET")
                    .arg(&redis_key)
                    .arg(&bytes[..])
                    .arg("EX")
                    .arg(secs.max(1))
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await;
        if written.is_err() {
            self.redis_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Batch lookups without computing, for work that computes its misses
    /// together, in two halves so the first can run off the runtime: the
    /// answers this daemon's memory holds for `keys`, in order. Counts the
    /// hits; `lookup_remote` goes on with the rest and counts the misses.
    /// Key by key, with nothing allocated per key.
    pub async fn lookup_local(&self, keys: &[CacheKey], ttl: Duration) -> Vec<Option<Answer>> {
        if ttl.is_zero() {
            return vec![None; keys.len()];
        }
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            found.push(self.local.get(key).await.map(|stored| stored.answer));
        }
        let hits = found.iter().filter(|hit| hit.is_some()).count();
        self.hits_local.fetch_add(hits as u64, Ordering::Relaxed);
        found
    }

    /// The second half of a batch lookup: the keys memory lacked, from
    /// Redis when configured (then kept in memory too), concurrently.
    pub async fn lookup_remote(
        &self,
        keys: &[CacheKey],
        found: &mut [Option<Answer>],
        ttl: Duration,
    ) {
        if ttl.is_zero() {
            return;
        }
        if self.remote.is_some() {
            let missing: Vec<usize> = (0..keys.len()).filter(|&i| found[i].is_none()).collect();
            let fetched =
                futures_util::future::join_all(missing.iter().map(|&i| self.redis_get(&keys[i])))
                    .await;
            for (i, hit) in missing.into_iter().zip(fetched) {
                let Some((answer, left)) = hit else { continue };
                self.hits_redis.fetch_add(1, Ordering::Relaxed);
                let stored = Stored {
                    answer: answer.clone(),
                    ttl: left.min(ttl),
                };
                self.local.insert(keys[i].clone(), stored).await;
                found[i] = Some(answer);
            }
        }
        let misses = found.iter().filter(|hit| hit.is_none()).count();
        self.misses.fetch_add(misses as u64, Ordering::Relaxed);
    }

    /// Stores answers computed outside `get_or_compute` in this daemon's
    /// memory, entry by entry; `store_remote` writes them to Redis.
    pub async fn store_local(&self, entries: &[(CacheKey, Answer)], ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        for (key, answer) in entries {
            let stored = Stored {
                answer: answer.clone(),
                ttl,
            };
            self.local.insert(key.clone(), stored).await;
        }
    }

    /// Writes answers to Redis, when configured, concurrently.
    pub async fn store_remote(&self, entries: &[(CacheKey, Answer)], ttl: Duration) {
        if ttl.is_zero() || self.remote.is_none() {
            return;
        }
        futures_util::future::join_all(
            entries
                .iter()
                .map(|(key, answer)| self.redis_set(key, answer, ttl)),
        )
        .await;
    }

    /// Drops every in-process entry (Redis: `flush_redis`).
    pub fn invalidate_all(&self) {
        self.local.invalidate_all();
    }

    /// Drops one model's in-process entries. Lookups stop returning them at
    /// once; the memory is reclaimed by moka's housekeeping. A value being
    /// computed at that moment may still be stored afterwards: it was
    /// computed by the model now loaded, and a changed file has a new digest
    /// and so new keys anyway.
    pub fn invalidate_model(&self, model: &str) {
        let model: Arc<str> = model.into();
        if let Err(e) = self
            .local
            .invalidate_entries_if(move |key, _| key.model == model)
        {
            // Only possible if the builder lost `support_invalidation_closures`;
            // dropping everything is the safe over-approximation.
            tracing::warn!(error = %e, "cannot invalidate one model; dropping the whole cache");
            self.local.invalidate_all();
        }
    }

    /// `mlapi_cache_requests_total{tier,result}`: hits by the tier that
    /// answered (`local`, `redis`); misses and bypasses with `tier="none"`.
    pub fn render_metrics(&self, out: &mut String) {
        let name = "mlapi_cache_requests_total";
        let mut family = Exposition::family(
            out,
            name,
            "counter",
            "Prediction cache lookups by the tier that answered and result.",
        );
        for (tier, result, n) in [
            ("local", "hit", &self.hits_local),
            ("redis", "hit", &self.hits_redis),
            ("none", "miss", &self.misses),
            ("none", "bypass", &self.bypasses),
        ] {
            family.sample(
                name,
                &[("tier", tier), ("result", result)],
                n.load(Ordering::Relaxed),
            );
        }
    }

    /// The counters. Async because the entry count is only exact after
    /// moka's pending maintenance (evictions, invalidations) has run.
    pub async fn stats(&self) -> CacheStats {
        self.local.run_pending_tasks().await;
        let hits_local = self.hits_local.load(Ordering::Relaxed);
        let hits_redis = self.hits_redis.load(Ordering::Relaxed);
        let misses = self.misses.load(Ordering::Relaxed);
        let hits = hits_local + hits_redis;
        CacheStats {
            entries: self.local.entry_count(),
            hits,
            hits_local,
            hits_redis,
            misses,
            bypasses: self.bypasses.load(Ordering::Relaxed),
            redis_errors: self.redis_errors.load(Ordering::Relaxed),
            hit_rate: if hits + misses == 0 {
                0.0
            } else {
                hits as f64 / (hits + misses) as f64
            },
        }
    }
}

/// The `SCAN MATCH` pattern for all cache keys, or one model's.
fn scan_pattern(remote: &Remote, model: Option<&str>) -> String {
    let prefix = glob_escape(remote.prefix());
    match model {
        Some(model) => format!("{prefix}cache:{}:*", key_segment(model)),
        None => format!("{prefix}cache:*"),
    }
}

/// One SCAN page: the next cursor (0 when done) and the keys it found.
async fn scan_page(
    remote: &Remote,
    pattern: &str,
    cursor: u64,
) -> Result<(u64, Vec<Vec<u8>>), RemoteError> {
    let pattern = pattern.to_string();
    remote
        .run_with_timeout(MAINTENANCE_TIMEOUT, |mut conn| async move {
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_BATCH)
                .query_async(&mut conn)
                .await
        })
        .await
}

/// Removes the cached predictions from Redis: all of them, or one model's.
/// Walks the keyspace with SCAN and removes each page with UNLINK (freed off
/// Redis's main thread), so Redis is never blocked the way KEYS or FLUSHDB
/// would block it, and nothing outside `<prefix>cache:` is touched. Returns
/// how many keys were removed. Keys written while it runs may survive.
pub async fn flush_redis(remote: &Remote, model: Option<&str>) -> Result<u64, RemoteError> {
    let pattern = scan_pattern(remote, model);
    let mut removed = 0;
    let mut cursor = 0;
    loop {
        let (next, keys) = scan_page(remote, &pattern, cursor).await?;
        if !keys.is_empty() {
            let mut unlink = redis::cmd("UNLINK");
            for key in &keys {
                unlink.arg(key.as_slice());
            }
            let n: u64 = remote
                .run_with_timeout(MAINTENANCE_TIMEOUT, |mut conn| async move {
                    unlink.query_async(&mut conn).await
                })
                .await?;
            removed += n;
        }
        if next == 0 {
            return Ok(removed);
        }
        cursor = next;
    }
}

/// How many cached predictions Redis holds (all daemons, all models).
/// Approximate while keys come and go: SCAN may report a key twice then.
pub async fn count_redis(remote: &Remote) -> Result<u64, RemoteError> {
    let pattern = scan_pattern(remote, None);
    let mut count = 0;
    let mut cursor = 0;
    loop {
        let (next, keys) = scan_page(remote, &pattern, cursor).await?;
        count += keys.len() as u64;
        if next == 0 {
            return Ok(count);
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::AtomicUsize;

    const TTL: Duration = Duration::from_secs(60);

    fn rows(json: &str) -> Vec<Vec<f64>> {
        serde_json::from_str(json).unwrap()
    }

    fn key(model: &str, json: &str) -> CacheKey {
        CacheKey::new(model, "sha256:aa", 1, "v1", &rows(json))
    }

    #[tokio::test]
    async fn memory_is_bounded_by_bytes_and_by_entries() {
        let cache = Cache::new(
            &CacheConfig {
                max_entries: 100,
                max_bytes: 64 * 1024,
            },
            None,
        );
        // Small answers: the entry count binds (each weighs at least 64 KiB / 100).
        for i in 0..300 {
            let k = key("m", &format!("[[{i}]]"));
            let _: Result<_, ()> = cache
                .get_or_compute(&k, TTL, Read::Cached, || async {
                    Ok(serde_json::json!({"p": "x"}))
                })
                .await;
        }
        cache.local.run_pending_tasks().await;
        assert!(
            cache.local.entry_count() <= 100,
            "{}",
            cache.local.entry_count()
        );
        // Big answers (~30 KB of JSON each): the byte bound binds, so at
        // most two fit in 64 KiB whatever moka's admission policy admits.
        cache.invalidate_all();
        let big = serde_json::json!({"p": "x".repeat(30_000)});
        for i in 0..50 {
            let k = key("m", &format!("[[{i}]]"));
            let v = big.clone();
            let _: Result<_, ()> = cache
                .get_or_compute(&k, TTL, Read::Cached, || async { Ok(v) })
                .await;
        }
        cache.local.run_pending_tasks().await;
        assert!(
            cache.local.weighted_size() <= 64 * 1024,
            "{}",
            cache.local.weighted_size()
        );
        assert!(
            cache.local.entry_count() <= 2,
            "{}",
            cache.local.entry_count()
        );
    }

    fn cache() -> Cache {
        Cache::new(
            &CacheConfig {
                max_entries: 1_000,
                max_bytes: 1 << 20,
            },
            None,
        )
    }

    /// An answer document (answers are JSON objects).
    fn doc(v: impl Into<Value>) -> Value {
        serde_json::json!({ "v": v.into() })
    }

    /// A compute that counts its runs and answers `answer`.
    async fn counted(runs: &AtomicUsize, answer: Value) -> Result<Value, String> {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok(answer)
    }

    #[test]
    fn key_encoding_is_stable() {
        // Daemons of different versions share Redis: the encoding may only
        // change together with KEY_DOMAIN. Expected value from Python's
        // hashlib over the documented encoding.
        let key = CacheKey::new("demo", "sha256:aa", 1, "v1", &[vec![1.0, 2.5, -3.0]]);
        assert_eq!(
            key.hex(),
            "434d1bed9089f69af697739d8199de3c59583b18e7737ca64ff1de88761e9451"
        );
    }

    #[test]
    fn keys_compare_numbers_not_their_spelling() {
        let a: Vec<f64> = serde_json::from_str("[1, 2.0]").unwrap();
        let b: Vec<f64> = serde_json::from_str("[1.0, 2]").unwrap();
        let c: Vec<f64> = serde_json::from_str("[1.00, 2.000]").unwrap();
        let k = |r: Vec<f64>| CacheKey::new("m", "sha256:aa", 1, "v1", &[r]);
        assert_eq!(k(a.clone()), k(b));
        assert_eq!(k(a), k(c));
        assert_eq!(key("m", "[[0.0]]"), key("m", "[[-0.0]]"));
        assert_ne!(
            key("m", "[[0.1]]"),
            key("m", "[[0.10000000000000002]]"),
            "distinct f64 values are distinct inputs"
        );
        assert_ne!(key("m", "[[1, 2]]"), key("m", "[[2, 1]]"), "order matters");
    }

    #[test]
    fn keys_separate_models_versions_variants_and_rows() {
        let r = rows("[[1, 2, 3]]");
        let base = CacheKey::new("m", "sha256:aa", 1, "v1", &r);
        assert_ne!(base, CacheKey::new("m", "sha256:bb", 1, "v1", &r));
        assert_ne!(base, CacheKey::new("m", "sha256:aa", 2, "v1", &r));
        assert_ne!(base, CacheKey::new("m", "sha256:aa", 1, "v2-explain", &r));
        assert_ne!(base, CacheKey::new("n", "sha256:aa", 1, "v1", &r));
        assert_eq!(base, CacheKey::new("m", "sha256:aa", 1, "v1", &r));
        assert_ne!(key("m", "[[1, 2], [3]]"), key("m", "[[1], [2, 3]]"));
        assert_ne!(key("m", "[[1, 2]]"), key("m", "[[1, 2], []]"));
        // Length prefixes: shifting a byte between fields changes the key.
        assert_ne!(
            CacheKey::new("ab", "c", 1, "v1", &r),
            CacheKey::new("a", "bc", 1, "v1", &r)
        );
        assert_eq!(base.hex().len(), 64);
        assert_eq!(base.model(), "m");
    }

    #[test]
    fn redis_keys_stay_glob_safe() {
        assert_eq!(key_segment("iris-v2.1_b"), "iris-v2.1_b");
        assert_eq!(key_segment("a*b:c"), "a%2Ab%3Ac");
        assert_eq!(key_segment("%"), "%25");
        assert_eq!(glob_escape(r"p*[x]?\:"), r"p\*\[x\]\?\\:");
    }

    #[tokio::test]
    async fn a_computed_value_is_hit_next_time() {
        let cache = cache();
        let runs = AtomicUsize::new(0);
        let k = key("m", "[[1, 2]]");
        let (v, o) = cache
            .get_or_compute(&k, TTL, Read::Cached, || counted(&runs, doc("a")))
            .await
            .unwrap();
        assert_eq!((v.value() == doc("a"), o), (true, Outcome::Miss));
        let (v, o) = cache
            .get_or_compute(&k, TTL, Read::Cached, || counted(&runs, doc("b")))
            .await
            .unwrap();
        assert_eq!(
            (v.value() == doc("a"), o),
            (true, Outcome::Hit(Tier::Local))
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let s = cache.stats().await;
        assert_eq!((s.entries, s.hits, s.misses), (1, 1, 1));
        assert!((s.hit_rate - 0.5).abs() < 1e-9);
    }

    #[tokio::test]
    async fn errors_are_not_cached() {
        let cache = cache();
        let k = key("m", "[[1]]");
        let failed = cache
            .get_or_compute(&k, TTL, Read::Cached, || async {
                Err::<Value, _>("model exploded".to_string())
            })
            .await;
        assert_eq!(failed.unwrap_err(), "model exploded");
        let runs = AtomicUsize::new(0);
        let (v, o) = cache
            .get_or_compute(&k, TTL, Read::Cached, || counted(&runs, doc(7)))
            .await
            .unwrap();
        assert_eq!((v.value() == doc(7), o), (true, Outcome::Miss));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_compute_once() {
        let cache = Arc::new(cache());
        let runs = Arc::new(AtomicUsize::new(0));
        let k = key("m", "[[4, 2]]");
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (cache, runs, k) = (Arc::clone(&cache), Arc::clone(&runs), k.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_compute(&k, TTL, Read::Cached, || async move {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            runs.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, String>(doc(42))
                        })
                        .await
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            let (v, o) = task.await.unwrap().unwrap();
            assert_eq!(v.value(), doc(42));
            outcomes.push(o);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let misses = outcomes.iter().filter(|o| **o == Outcome::Miss).count();
        assert_eq!(misses, 1, "{outcomes:?}");
        assert!(outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Miss | Outcome::Hit(Tier::Local))));
    }

    #[tokio::test]
    async fn bypass_computes_and_refreshes() {
        let cache = cache();
        let runs = AtomicUsize::new(0);
        let k = key("m", "[[1]]");
        cache
            .get_or_compute(&k, TTL, Read::Cached, || counted(&runs, doc("old")))
            .await
            .unwrap();
        let (v, o) = cache
            .get_or_compute(&k, TTL, Read::Bypass, || counted(&runs, doc("new")))
            .await
            .unwrap();
        assert_eq!((v.value() == doc("new"), o), (true, Outcome::Bypass));
        let (v, o) = cache
            .get_or_compute(&k, TTL, Read::Cached, || counted(&runs, doc("newer")))
            .await
            .unwrap();
        assert_eq!(
            (v.value() == doc("new"), o),
            (true, Outcome::Hit(Tier::Local))
        );
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(cache.stats().await.bypasses, 1);
    }

    #[tokio::test]
    async fn invalidation_by_model_and_all() {
        let cache = cache();
        let runs = AtomicUsize::new(0);
        let (a, b) = (key("a", "[[1]]"), key("b", "[[1]]"));
        for k in [&a, &b] {
            cache
                .get_or_compute(k, TTL, Read::Cached, || counted(&runs, doc(1)))
                .await
                .unwrap();
        }
        cache.invalidate_model("a");
        let outcome = |k: CacheKey| {
            let (cache, runs) = (&cache, &runs);
            async move {
                cache
                    .get_or_compute(&k, TTL, Read::Cached, || counted(runs, doc(1)))
                    .await
                    .unwrap()
                    .1
            }
        };
        assert_eq!(outcome(a.clone()).await, Outcome::Miss);
        assert_eq!(outcome(b.clone()).await, Outcome::Hit(Tier::Local));
        cache.invalidate_all();
        assert_eq!(outcome(a).await, Outcome::Miss);
        assert_eq!(outcome(b).await, Outcome::Miss);
    }

    #[tokio::test]
    async fn entries_expire_after_their_ttl() {
        let cache = cache();
        let runs = AtomicUsize::new(0);
        let k = key("m", "[[1]]");
        let short = Duration::from_secs(1);
        for _ in 0..2 {
            cache
                .get_or_compute(&k, short, Read::Cached, || counted(&runs, doc(1)))
                .await
                .unwrap();
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let (_, o) = cache
            .get_or_compute(&k, short, Read::Cached, || counted(&runs, doc(1)))
            .await
            .unwrap();
        assert_eq!(o, Outcome::Miss);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_zero_ttl_stores_nothing() {
        let cache = cache();
        let runs = AtomicUsize::new(0);
        let k = key("m", "[[1]]");
        for _ in 0..2 {
            let (_, o) = cache
                .get_or_compute(&k, Duration::ZERO, Read::Cached, || counted(&runs, doc(1)))
                .await
                .unwrap();
            assert_eq!(o, Outcome::Miss);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(cache.stats().await.entries, 0);
    }

    /// A throwaway `redis-server` on a unix socket in its own temp dir, with
    /// no persistence; killed on drop, so a failing test leaves none behind.
    struct RedisServer {
        child: Child,
        socket: PathBuf,
        _dir: tempfile::TempDir,
    }

    impl RedisServer {
        fn start() -> RedisServer {
            let dir = tempfile::tempdir().unwrap();
            let socket = dir.path().join("r.sock");
            let child = Command::new("redis-server")
                .args(["--port", "0", "--save", "", "--appendonly", "no"])
                .arg("--unixsocket")
                .arg(&socket)
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server (apt-get install redis-server)");
            let server = RedisServer {
                child,
                socket,
                _dir: dir,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::os::unix::net::UnixStream::connect(&server.socket).is_err() {
                assert!(Instant::now() < deadline, "redis-server did not start");
                std::thread::sleep(Duration::from_millis(10));
            }
            server
        }

        async fn remote(&self) -> Arc<Remote> {
            let url = format!("unix://{}", self.socket.display());
            let remote = Remote::new(
                redis::Client::open(url).unwrap(),
                "test:",
                Duration::from_millis(200),
            );
            remote.connect_now().await.unwrap();
            Arc::new(remote)
        }

        fn stop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            self.stop();
        }
    }

    fn cache_with(remote: &Arc<Remote>) -> Cache {
        Cache::new(
            &CacheConfig {
                max_entries: 1_000,
                max_bytes: 1 << 20,
            },
            Some(Arc::clone(remote)),
        )
    }

    #[tokio::test]
    async fn foreign_values_in_redis_are_recomputed_not_served() {
        let server = RedisServer::start();
        let remote = server.remote().await;
        let cache = cache_with(&remote);
        let runs = AtomicUsize::new(0);
        for (i, junk) in ["not json", "\"a string\"", "[1, 2]", "{\"cut"]
            .iter()
            .enumerate()
        {
            let k = key("m", &format!("[[{i}]]"));
            let redis_key = k.redis_key(&remote);
            remote
                .run(|mut conn| async move {
                    redis::cmd("SET")
                        .arg(redis_key)
                        .arg(*junk)
                        .query_async::<()>(&mut conn)
                        .await
                })
                .await
                .unwrap();
            let (v, o) = cache
                .get_or_compute(&k, TTL, Read::Cached, || counted(&runs, doc(i)))
                .await
                .unwrap();
            assert_eq!((v.value(), o), (doc(i), Outcome::Miss), "{junk}");
        }
        assert_eq!(cache.stats().await.redis_errors, 4);
    }

    #[tokio::test]
    async fn daemons_share_answers_through_redis() {
        let server = RedisServer::start();
        let remote = server.remote().await;
        let (a, b) = (cache_with(&remote), cache_with(&remote));
        let runs = AtomicUsize::new(0);
        let k = key("m1", "[[1.5, 2]]");
        let answer = serde_json::json!({"prediction": "setosa", "p": [0.1, 0.9]});
        let (_, o) = a
            .get_or_compute(&k, TTL, Read::Cached, || counted(&runs, answer.clone()))
            .await
            .unwrap();
        assert_eq!(o, Outcome::Miss);
        let (v, o) = b
            .get_or_compute(&k, TTL, Read::Cached, || counted(&runs, doc("wrong")))
            .await
            .unwrap();
        assert_eq!((v.value(), o), (answer.clone(), Outcome::Hit(Tier::Redis)));
        let (_, o) = b
            .get_or_compute(&k, TTL, Read::Cached, || counted(&runs, doc("wrong")))
            .await
            .unwrap();
        assert_eq!(o, Outcome::Hit(Tier::Local), "the redis hit was kept");
        assert_eq!(runs.load(Ordering::SeqCst), 1);

        // A bypass through B refreshes Redis too, for every other daemon.
        b.get_or_compute(&k, TTL, Read::Bypass, || counted(&runs, doc("fresh")))
            .await
            .unwrap();
        let c = cache_with(&remote);
        let (v, o) = c
            .get_or_compute(&k, TTL, Read::Cached, || counted(&runs, doc("wrong")))
            .await
            .unwrap();
        assert_eq!(
            (v.value() == doc("fresh"), o),
            (true, Outcome::Hit(Tier::Redis))
        );

        // Errors reach neither tier.
        let k2 = key("m1", "[[9]]");
        let _ = a
            .get_or_compute(&k2, TTL, Read::Cached, || async { Err::<Value, _>(()) })
            .await;
        assert_eq!(count_redis(&remote).await.unwrap(), 1);

        let ttl: i64 = remote
            .run(|mut conn| {
                let key = k.redis_key(&remote);
                async move { redis::cmd("TTL").arg(key).query_async(&mut conn).await }
            })
            .await
            .unwrap();
        assert!((55..=60).contains(&ttl), "redis ttl {ttl}");
        assert_eq!(a.stats().await.redis_errors, 0);
    }

    #[tokio::test]
    async fn flush_removes_only_cache_keys() {
        let server = RedisServer::start();
        let remote = server.remote().await;
        let cache = cache_with(&remote);
        let runs = AtomicUsize::new(0);
        for (model, n) in [("m1", 3), ("m10", 2), ("m2", 2)] {
            for i in 0..n {
                let k = key(model, &format!("[[{i}]]"));
                cache
                    .get_or_compute(&k, TTL, Read::Cached, || counted(&runs, doc(i)))
                    .await
                    .unwrap();
            }
        }
        for other in ["other:keep", "test:keep", "test:rl:u1:free-minute"] {
            remote
                .run(|mut conn| async move {
                    redis::cmd("SET")
                        .arg(other)
                        .arg("1")
                        .query_async::<()>(&mut conn)
                        .await
                })
                .await
                .unwrap();
        }
        assert_eq!(count_redis(&remote).await.unwrap(), 7);
        assert_eq!(flush_redis(&remote, Some("m1")).await.unwrap(), 3);
        assert_eq!(count_redis(&remote).await.unwrap(), 4, "m10 is not m1");
        assert_eq!(flush_redis(&remote, Some("nope")).await.unwrap(), 0);
        assert_eq!(flush_redis(&remote, None).await.unwrap(), 4);
        assert_eq!(count_redis(&remote).await.unwrap(), 0);
        let kept: u64 = remote
            .run(|mut conn| async move {
                redis::cmd("EXISTS")
                    .arg("other:keep")
                    .arg("test:keep")
                    .arg("test:rl:u1:free-minute")
                    .query_async(&mut conn)
                    .await
            })
            .await
            .unwrap();
        assert_eq!(kept, 3);
    }

    #[tokio::test]
    async fn flush_walks_more_than_one_page() {
        let server = RedisServer::start();
        let remote = server.remote().await;
        let keys: Vec<String> = (0..1_234)
            .map(|i| key("big", &format!("[[{i}]]")).redis_key(&remote))
            .collect();
        remote
            .run_with_timeout(Duration::from_secs(1), |mut conn| async move {
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.cmd("SET").arg(k).arg("1").ignore();
                }
                pipe.query_async::<()>(&mut conn).await
            })
            .await
            .unwrap();
        assert_eq!(count_redis(&remote).await.unwrap(), 1_234);
        assert_eq!(flush_redis(&remote, Some("big")).await.unwrap(), 1_234);
    }

    #[tokio::test]
    async fn a_dead_redis_costs_nothing_but_the_shared_tier() {
        let mut server = RedisServer::start();
        let remote = server.remote().await;
        let cache = cache_with(&remote);
        server.stop();
        let started = Instant::now();
        let runs = AtomicUsize::new(0);
        let k = key("m", "[[1]]");
        let (v, o) = cache
            .get_or_compute(&k, TTL, Read::Cached, || counted(&runs, doc(5)))
            .await
            .unwrap();
        assert_eq!((v.value() == doc(5), o), (true, Outcome::Miss));
        let (v, o) = cache
            .get_or_compute(&k, TTL, Read::Cached, || counted(&runs, doc(6)))
            .await
            .unwrap();
        assert_eq!((v.value() == doc(5), o), (true, Outcome::Hit(Tier::Local)));
        // A bypass still answers, and the flush reports the outage.
        let (_, o) = cache
            .get_or_compute(&k, TTL, Read::Bypass, || counted(&runs, doc(7)))
            .await
            .unwrap();
        assert_eq!(o, Outcome::Bypass);
        assert!(flush_redis(&remote, None).await.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert!(!remote.is_up());
        assert!(cache.stats().await.redis_errors >= 2);
    }
}
