//! Rate limiting: GCRA token buckets (the generic cell rate algorithm: one
//! "theoretical arrival time" per bucket) per subject — a user, or the client
//! IP of an anonymous request — with every window of the caller's tier checked
//! and updated together: a request passes only if all its windows allow it.
//!
//! Two stores hold the buckets: in process (sharded maps, exact under
//! concurrency because a subject's windows are updated under one lock) and
//! Redis (one atomic Lua script, so it is exact across daemons; concurrent
//! requests share a call, see `coalesce`). Both run the same arithmetic,
//! `decide`. Without Redis, or while it is down and
//! `ratelimit.on_redis_error = "local"`, the in-process store decides.
//!
//! This module decides; it knows nothing of HTTP headers (see
//! `http::limits`) or of how a user got their tier.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::remote::{Remote, RemoteError};
use crate::config::{Config, EndpointLimits, OnRedisError, TierConfig};
use crate::core::groups::Group;
use crate::core::metrics::Exposition;
use crate::FastMap;
use coalesce::{Check, Coalescer};

mod coalesce;

const SHARDS: usize = 16;
/// Per shard: idle buckets are swept out once a shard grows past this.
const SWEEP_AT: usize = 4096;
/// Per shard: beyond it (a flood of distinct subjects) buckets are forgotten
/// early, which lets those subjects start afresh rather than grow memory.
const MAX_PER_SHARD: usize = 16_384;

/// One bucket: `limit` requests per `period`, at most `burst` at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The policy name shown to clients (`free-minute`, `pro-predict-day`).
    pub name: Arc<str>,
    pub limit: u32,
    pub period: Duration,
    pub burst: u32,
    /// Counted and reported, never refusing (`shadow = true`).
    pub shadow: bool,
}

impl Window {
    fn interval_us(&self) -> u64 {
        (self.period.as_micros() as u64 / u64::from(self.limit.max(1))).max(1)
    }

    fn tolerance_us(&self) -> u64 {
        self.interval_us() * u64::from(self.burst.max(1))
    }
}

/// One window after a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowState {
    pub window: Window,
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset_after: Duration,
    /// Set when this window refused the request (or, for a shadow window,
    /// would have): until it would allow one.
    pub retry_after: Option<Duration>,
}

impl WindowState {
    /// A window that refuses (not a shadow one).
    fn refuses(&self) -> bool {
        self.retry_after.is_some() && !self.window.shadow
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Local,
    Redis,
    /// Redis was down and `on_redis_error = "allow"`: nothing was counted.
    Unlimited,
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub allowed: bool,
    pub windows: Vec<WindowState>,
    pub source: Source,
    /// When it was made (since the Unix epoch): resets count from here.
    pub at: Duration,
}

impl Decision {
    /// The window to report: on refusal the one that frees up last, else the
    /// one with the fewest requests left (then the one resetting last; a
    /// shadow window that would refuse reports 0 left).
    pub fn reported(&self) -> Option<&WindowState> {
        if self.allowed {
            self.windows
                .iter()
                .min_by_key(|w| (w.remaining, std::cmp::Reverse(w.reset_after)))
        } else {
            self.windows
                .iter()
                .filter(|w| w.refuses())
                .max_by_key(|w| w.retry_after)
        }
    }

    pub fn retry_after(&self) -> Duration {
        self.windows
            .iter()
            .filter(|w| w.refuses())
            .filter_map(|w| w.retry_after)
            .max()
            .unwrap_or_default()
    }

    pub fn violated(&self) -> Vec<&str> {
        self.windows
            .iter()
            .filter(|w| w.refuses())
            .map(|w| &*w.window.name)
            .collect()
    }

    /// Allowed, but a shadow window would have refused it.
    pub fn shadow_rejected(&self) -> bool {
        self.allowed
            && self
                .windows
                .iter()
                .any(|w| w.window.shadow && w.retry_after.is_some())
    }
}

/// GCRA over several windows at `now` (µs since the Unix epoch), given each
/// bucket's stored arrival time (0 = none). Returns the decision and, when
/// allowed, the arrival times to store. A shadow window that would refuse
/// does not refuse, and keeps its arrival time as a refusal would: it counts
/// what the limit would let through. Redis's Lua script mirrors this.
pub fn decide(windows: &[Window], tats: &[u64], now: u64) -> (bool, Vec<u64>, Vec<WindowState>) {
    let mut allowed = true;
    let mut new_tats = Vec::with_capacity(windows.len());
    let mut states = Vec::with_capacity(windows.len());
    for (w, &stored) in windows.iter().zip(tats) {
        let (t, tolerance) = (w.interval_us(), w.tolerance_us());
        let tat = stored.max(now);
        let new_tat = tat + t;
        if new_tat - now > tolerance {
            if w.shadow {
                new_tats.push(stored);
            } else {
                allowed = false;
                new_tats.push(new_tat);
            }
            states.push(WindowState {
                window: w.clone(),
                remaining: 0,
                reset_after: Duration::from_micros(tat - now),
                retry_after: Some(Duration::from_micros(new_tat - now - tolerance)),
            });
        } else {
            states.push(WindowState {
                window: w.clone(),
                remaining: ((tolerance - (new_tat - now)) / t) as u32,
                reset_after: Duration::from_micros(new_tat - now),
                retry_after: None,
            });
            new_tats.push(new_tat);
        }
    }
    if !allowed {
        // Nothing is consumed; windows that would have allowed report their
        // state as it stays.
        for (state, &tat) in states.iter_mut().zip(tats) {
            if !state.refuses() {
                *state = peek_one(&state.window, tat, now);
            }
        }
    }
    (allowed, new_tats, states)
}

/// A window's state without consuming anything.
pub fn peek_one(w: &Window, tat: u64, now: u64) -> WindowState {
    let (t, tolerance) = (w.interval_us(), w.tolerance_us());
    let ahead = tat.max(now) - now;
    WindowState {
        window: w.clone(),
        remaining: (tolerance.saturating_sub(ahead) / t) as u32,
        reset_after: Duration::from_micros(ahead),
        retry_after: None,
    }
}

/// Every tier's windows per endpoint group, built once from the config.
#[derive(Debug, Clone)]
pub struct Policies {
    by_tier: FastMap<String, BTreeMap<Group, Arc<[Window]>>>,
    strictest: String,
    anonymous: Arc<[Window]>,
}

impl Policies {
    pub fn from_config(config: &Config) -> Self {
        let by_tier = config
            .tiers
            .iter()
            .map(|(name, tier)| {
                let groups = Group::ALL
                    .iter()
                    .map(|&g| (g, tier_windows(name, tier, g).into()))
                    .collect();
                (name.clone(), groups)
            })
            .collect();
        let per_minute = config.ratelimit.anonymous_per_minute;
        Policies {
            by_tier,
            strictest: config.tier_names()[0].to_string(),
            anonymous: vec![Window {
                name: "anonymous-minute".into(),
                limit: per_minute,
                period: Duration::from_secs(60),
                burst: per_minute,
                shadow: false,
            }]
            .into(),
        }
    }

    /// The windows for a tier and group. A tier missing from the config (a
    /// user left on a tier that was since removed) gets the strictest tier's.
    pub fn windows(&self, tier: &str, group: Group) -> Arc<[Window]> {
        let groups = self
            .by_tier
            .get(tier)
            .or_else(|| self.by_tier.get(&self.strictest))
            .expect("the strictest tier exists");
        Arc::clone(&groups[&group])
    }

    pub fn anonymous(&self) -> Arc<[Window]> {
        Arc::clone(&self.anonymous)
    }

    /// All of a tier's windows, each once (for `ratelimit show`).
    pub fn all_windows(&self, tier: &str) -> Vec<Window> {
        let mut all: Vec<Window> = Vec::new();
        for g in Group::ALL {
            for w in self.windows(tier, g).iter() {
                if !all.iter().any(|a| a.name == w.name) {
                    all.push(w.clone());
                }
            }
        }
        all
    }
}

fn tier_windows(tier: &str, t: &TierConfig, group: Group) -> Vec<Window> {
    let mut windows = windows_of(
        tier,
        &EndpointLimits {
            per_minute: t.per_minute,
            per_hour: t.per_hour,
            per_day: t.per_day,
            shadow: t.shadow,
        },
        t.burst,
    );
    if let Some(limits) = t.endpoints.get(group.as_str()) {
        windows.extend(windows_of(
            &format!("{tier}-{}", group.as_str()),
            limits,
            None,
        ));
    }
    windows
}

fn windows_of(prefix: &str, l: &EndpointLimits, burst: Option<u32>) -> Vec<Window> {
    [
        ("minute", l.per_minute, 60),
        ("hour", l.per_hour, 3_600),
        ("day", l.per_day, 86_400),
    ]
    .into_iter()
    .filter_map(|(unit, limit, secs)| {
        let limit = limit?;
        Some(Window {
            name: format!("{prefix}-{unit}").into(),
            limit,
            period: Duration::from_secs(secs),
            burst: if unit == "minute" {
                burst.unwrap_or(limit)
            } else {
                limit
            },
            shadow: l.shadow,
        })
    })
    .collect()
}

/// The in-process store.
struct Local {
    /// Unix time at `started`, so decisions use a monotonic clock but report
    /// wall-clock resets.
    epoch_us: u64,
    started: Instant,
    shards: Vec<Mutex<Shard>>,
}

#[derive(Default)]
struct Shard {
    /// `subject|window` → arrival time (µs since the Unix epoch).
    tats: HashMap<String, u64>,
    sweep_at: usize,
}

impl Local {
    fn new() -> Self {
        Local {
            epoch_us: unix_us(),
            started: Instant::now(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    fn now(&self) -> u64 {
        self.epoch_us + self.started.elapsed().as_micros() as u64
    }

    fn shard(&self, subject: &str) -> std::sync::MutexGuard<'_, Shard> {
        // Choosing a shard needs no flooding resistance (the shard's own map
        // has it), only speed; the seed is fixed so a subject keeps its shard.
        let hash = foldhash::fast::FixedState::default().hash_one(subject);
        self.shards[hash as usize % SHARDS]
            .lock()
            .expect("limiter shard")
    }

    fn check(&self, subject: &str, windows: &[Window]) -> Decision {
        let now = self.now();
        // One key buffer, reused: a known bucket costs no allocation.
        let mut key = String::with_capacity(subject.len() + 40);
        let set_key = |key: &mut String, w: &Window| {
            key.clear();
            key.push_str(subject);
            key.push('|');
            key.push_str(&w.name);
        };
        let mut shard = self.shard(subject);
        let tats: Vec<u64> = windows
            .iter()
            .map(|w| {
                set_key(&mut key, w);
                shard.tats.get(key.as_str()).copied().unwrap_or(0)
            })
            .collect();
        let (allowed, new_tats, states) = decide(windows, &tats, now);
        if allowed {
            for (w, tat) in windows.iter().zip(new_tats) {
                set_key(&mut key, w);
                match shard.tats.get_mut(key.as_str()) {
                    Some(slot) => *slot = tat,
                    None => {
                        shard.tats.insert(key.clone(), tat);
                    }
                }
            }
            shard.sweep(now);
        }
        Decision {
            allowed,
            windows: states,
            source: Source::Local,
            at: Duration::from_micros(now),
        }
    }

    fn peek(&self, subject: &str, windows: &[Window]) -> Vec<WindowState> {
        let now = self.now();
        let shard = self.shard(subject);
        windows
            .iter()
            .map(|w| {
                let tat = shard
                    .tats
                    .get(&format!("{subject}|{}", w.name))
                    .copied()
                    .unwrap_or(0);
                peek_one(w, tat, now)
            })
            .collect()
    }
}

impl Shard {
    /// Drops full buckets (arrival time in the past) once the shard has grown,
    /// amortised: the next sweep waits until the shard doubles.
    fn sweep(&mut self, now: u64) {
        if self.tats.len() <= self.sweep_at.max(SWEEP_AT) {
            return;
        }
        self.tats.retain(|_, tat| *tat > now);
        if self.tats.len() > MAX_PER_SHARD {
            let mut keep = false;
            self.tats.retain(|_, _| {
                keep = !keep;
                keep
            });
        }
        self.sweep_at = self.tats.len() * 2;
    }
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Checks a batch of requests (see `coalesce`) atomically with the server's
/// clock, in order, each against all of its windows. ARGV holds, per
/// request, its window count and then each window's emission interval and
/// tolerance in µs and its shadow flag (1: never refuses, and is left as it
/// is when it would); KEYS, every request's windows in the same order.
/// Returns the arrival times each request read (a later request in the
/// batch reads what an earlier one wrote), then the server time, as
/// integers (exact: µs since 1970 stay below 2^53); Rust's `decide` repeats
/// the arithmetic to build headers. A request's buckets are updated only
/// when all its windows allow; a stored value that is not a number, or not
/// a string at all (never written by mlapi; `pcall`, so one such key cannot
/// fail the batch), counts as an empty bucket, overwritten when the request
/// passes. Written for redis-server's CPU, which the daemons share: no
/// formatting but the one exact integer each `SET` needs, and Lua's own
/// string-to-number coercion.
const GCRA_LUA: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local out = {}
local o = 0
local k = 0
local a = 1
while a <= #ARGV do
  local n = tonumber(ARGV[a])
  local allowed = true
  local over = {}
  for i = 1, n do
    local tat = tonumber(redis.pcall('GET', KEYS[k + i])) or 0
    out[o + i] = tat
    if tat < now then tat = now end
    if tat + ARGV[a + 3 * i - 2] - now > tonumber(ARGV[a + 3 * i - 1]) then
      over[i] = true
      if ARGV[a + 3 * i] == '0' then allowed = false end
    end
  end
  if allowed then
    for i = 1, n do
      if not over[i] then
        local tat = out[o + i]
        if tat < now then tat = now end
        local new_tat = tat + ARGV[a + 3 * i - 2]
        redis.call('SET', KEYS[k + i], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
      end
    end
  end
  o = o + n
  k = k + n
  a = a + 3 * n + 1
end
out[o + 1] = now
return out
"#;

/// Decides rate limits for the daemon; see the module doc.
pub struct Limiter {
    local: Local,
    remote: Option<Arc<Remote>>,
    on_error: OnRedisError,
    /// Started on the first Redis check, on the runtime that makes it.
    coalescer: OnceLock<Coalescer>,
    pub policies: Policies,
    decisions: Decisions,
}

/// The label of anonymous (per client IP) decisions' tier.
pub const ANONYMOUS_TIER: &str = "anonymous";

const RESULTS: [&str; 3] = ["allowed", "rejected", "shadow_rejected"];

/// Decisions by tier, endpoint group and result, for `/metrics`: one atomic
/// per combination, the tiers fixed at start.
struct Decisions {
    /// Config tiers, then `ANONYMOUS_TIER`.
    tiers: Vec<String>,
    slots: FastMap<String, usize>,
    /// Where a tier missing from the config counts: the strictest tier,
    /// whose windows it gets.
    fallback: usize,
    counts: Box<[AtomicU64]>,
}

impl Decisions {
    fn new(config: &Config) -> Self {
        let mut tiers: Vec<String> = config.tiers.keys().cloned().collect();
        tiers.push(ANONYMOUS_TIER.to_string());
        let slots: FastMap<String, usize> = tiers
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i))
            .collect();
        Decisions {
            fallback: slots[config.tier_names()[0]],
            counts: (0..tiers.len() * Group::ALL.len() * RESULTS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            tiers,
            slots,
        }
    }

    fn count(&self, tier: &str, group: Group, decision: &Decision) {
        let tier = self.slots.get(tier).copied().unwrap_or(self.fallback);
        let group = Group::ALL.iter().position(|&g| g == group).unwrap_or(0);
        let result = if !decision.allowed {
            1
        } else if decision.shadow_rejected() {
            2
        } else {
            0
        };
        let i = (tier * Group::ALL.len() + group) * RESULTS.len() + result;
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String) {
        let name = "mlapi_ratelimit_decisions_total";
        let mut family = Exposition::family(
            out,
            name,
            "counter",
            "Rate-limit decisions by tier, endpoint group and result (shadow_rejected: allowed, but a shadow window would have refused).",
        );
        for (i, counter) in self.counts.iter().enumerate() {
            let n = counter.load(Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            let result = RESULTS[i % RESULTS.len()];
            let group = Group::ALL[i / RESULTS.len() % Group::ALL.len()].as_str();
            let tier = &self.tiers[i / RESULTS.len() / Group::ALL.len()];
            family.sample(
                name,
                &[("tier", tier), ("group", group), ("result", result)],
                n,
            );
        }
    }
}

/// Redis is down and `on_redis_error = "deny"`.
#[derive(Debug, thiserror::Error)]
#[error("rate limiting is unavailable (Redis is unreachable)")]
pub struct Unavailable;

impl Limiter {
    pub fn new(config: &Config, remote: Option<Arc<Remote>>) -> Self {
        Limiter {
            local: Local::new(),
            remote,
            on_error: config.ratelimit.on_redis_error,
            coalescer: OnceLock::new(),
            policies: Policies::from_config(config),
            decisions: Decisions::new(config),
        }
    }

    /// Counts a decision for `/metrics`; `tier` is the caller's tier, or
    /// `ANONYMOUS_TIER` for per-IP limits.
    pub fn count(&self, tier: &str, group: Group, decision: &Decision) {
        self.decisions.count(tier, group, decision);
    }

    pub fn render_metrics(&self, out: &mut String) {
        self.decisions.render(out);
    }

    /// Counts one request against every window for `subject`. Anonymous
    /// subjects (`ip:…`, the login limiter) fall back in process whatever
    /// `on_redis_error` says: password guessing is never let through
    /// unlimited, and an outage must not lock everyone out of logging in.
    pub async fn check(&self, subject: &str, windows: &[Window]) -> Result<Decision, Unavailable> {
        let Some(remote) = &self.remote else {
            return Ok(self.local.check(subject, windows));
        };
        // Boxed: the Redis path's future is large, and unboxed it would
        // sit inline in every in-process check's future too.
        match Box::pin(self.check_remote(remote, subject, windows)).await {
            Ok(decision) => Ok(decision),
            Err(_) if subject.starts_with("ip:") => Ok(self.local.check(subject, windows)),
            Err(_) => match self.on_error {
                OnRedisError::Local => Ok(self.local.check(subject, windows)),
                OnRedisError::Allow => Ok(Decision {
                    allowed: true,
                    windows: Vec::new(),
                    source: Source::Unlimited,
                    at: Duration::from_micros(unix_us()),
                }),
                OnRedisError::Deny => Err(Unavailable),
            },
        }
    }

    /// The subject in braces is a Redis Cluster hash tag, kept so a
    /// subject's windows share a slot; a batched call spans subjects, so
    /// Cluster itself is not supported (README). Prefixed here rather than
    /// by `Remote::key`, so the key is formatted once per window.
    fn redis_key(remote: &Remote, subject: &str, w: &Window) -> String {
        format!("{}rl:{{{subject}}}:{}", remote.prefix(), w.name)
    }

    async fn check_remote(
        &self,
        remote: &Arc<Remote>,
        subject: &str,
        windows: &[Window],
    ) -> Result<Decision, RemoteError> {
        let check = Check {
            keys: windows
                .iter()
                .map(|w| Self::redis_key(remote, subject, w))
                .collect(),
            args: windows
                .iter()
                .flat_map(|w| [w.interval_us(), w.tolerance_us(), u64::from(w.shadow)])
                .collect(),
        };
        let reply = self
            .coalescer
            .get_or_init(|| Coalescer::start(Arc::clone(remote), redis::Script::new(GCRA_LUA)))
            .run(check)
            .await?;
        // `coalesce` checked the reply's length: one time per key, then now.
        let (now, tats) = reply.split_last().expect("the server time");
        let (allowed, _, states) = decide(windows, tats, *now);
        Ok(Decision {
            allowed,
            windows: states,
            source: Source::Redis,
            at: Duration::from_micros(*now),
        })
    }

    /// Current state of `subject`'s windows without counting a request:
    /// from Redis when it is configured and answers, else this process.
    pub async fn peek(&self, subject: &str, windows: &[Window]) -> (Source, Vec<WindowState>) {
        if let Some(remote) = &self.remote {
            if let Ok(states) = Self::peek_remote(remote, subject, windows).await {
                return (Source::Redis, states);
            }
        }
        (Source::Local, self.local.peek(subject, windows))
    }

    async fn peek_remote(
        remote: &Remote,
        subject: &str,
        windows: &[Window],
    ) -> Result<Vec<WindowState>, RemoteError> {
        let keys: Vec<String> = windows
            .iter()
            .map(|w| Self::redis_key(remote, subject, w))
            .collect();
        let (time, tats): ((u64, u64), Vec<Option<u64>>) = remote
            .run(|mut conn| async move {
                redis::pipe()
                    .cmd("TIME")
                    .cmd("MGET")
                    .arg(keys)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let now = time.0 * 1_000_000 + time.1;
        Ok(windows
            .iter()
            .zip(tats)
            .map(|(w, tat)| peek_one(w, tat.unwrap_or(0), now))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(limit: u32, secs: u64) -> Window {
        Window {
            name: format!("t-{secs}").into(),
            limit,
            period: Duration::from_secs(secs),
            burst: limit,
            shadow: false,
        }
    }

    #[test]
    fn a_shadow_window_counts_and_reports_but_never_refuses() {
        let shadow = Window {
            shadow: true,
            ..window(2, 60)
        };
        let w = [window(100, 60), shadow];
        let now = 7_000_000_000;
        let mut tats = vec![0, 0];
        for _ in 0..2 {
            let (allowed, new, _) = decide(&w, &tats, now);
            assert!(allowed);
            tats = new;
        }
        let (allowed, new, states) = decide(&w, &tats, now);
        assert!(allowed, "a shadow window never refuses");
        assert_eq!(new[1], tats[1], "its bucket is left as a refusal leaves it");
        assert_eq!(states[0].remaining, 97, "the real window was charged");
        let d = Decision {
            allowed,
            windows: states,
            source: Source::Local,
            at: Duration::ZERO,
        };
        assert!(d.shadow_rejected());
        assert!(d.violated().is_empty());
        assert_eq!(d.retry_after(), Duration::ZERO);
        assert_eq!(d.reported().unwrap().remaining, 0, "headers show it");
    }

    #[test]
    fn allows_the_limit_then_refuses_then_recovers() {
        let w = [window(5, 60)];
        let mut tats = vec![0];
        let now = 1_000_000_000_000;
        for i in 0..5 {
            let (allowed, new, states) = decide(&w, &tats, now);
            assert!(allowed, "request {i}");
            assert_eq!(states[0].remaining, 4 - i);
            tats = new;
        }
        let (allowed, _, states) = decide(&w, &tats, now);
        assert!(!allowed);
        assert_eq!(states[0].retry_after, Some(Duration::from_secs(12)));
        assert_eq!(states[0].reset_after, Duration::from_secs(60));
        assert!(decide(&w, &tats, now + 12_000_000).0);
    }

    #[test]
    fn a_refusing_window_consumes_nothing_in_the_others() {
        let w = [window(100, 60), window(2, 86_400)];
        let now = 5_000_000_000;
        let (_, tats, _) = decide(&w, &[0, 0], now);
        let (_, tats, _) = decide(&w, &tats, now);
        let (allowed, _, states) = decide(&w, &tats, now);
        assert!(!allowed);
        assert_eq!(states[0].remaining, 98, "the minute window was not charged");
        assert!(states[0].retry_after.is_none());
        assert!(states[1].retry_after.is_some());
        let d = Decision {
            allowed,
            windows: states,
            source: Source::Local,
            at: Duration::ZERO,
        };
        assert_eq!(d.violated(), vec!["t-86400"]);
        assert_eq!(&*d.reported().unwrap().window.name, "t-86400");
    }

    #[test]
    fn the_tightest_window_is_reported() {
        let w = [window(10, 60), window(3, 86_400)];
        let (_, _, states) = decide(&w, &[0, 0], 1_000_000);
        let d = Decision {
            allowed: true,
            windows: states,
            source: Source::Local,
            at: Duration::ZERO,
        };
        let reported = d.reported().unwrap();
        assert_eq!(reported.window.limit, 3);
        assert_eq!(reported.remaining, 2);
    }

    #[test]
    fn tiers_get_their_windows_and_endpoint_limits() {
        let mut config = Config::default();
        config.tiers.get_mut("free").unwrap().endpoints.insert(
            "predict".into(),
            EndpointLimits {
                per_minute: Some(5),
                ..EndpointLimits::default()
            },
        );
        let p = Policies::from_config(&config);
        let names = |ws: Arc<[Window]>| ws.iter().map(|w| w.name.to_string()).collect::<Vec<_>>();
        assert_eq!(
            names(p.windows("free", Group::Predict)),
            ["free-minute", "free-day", "free-predict-minute"]
        );
        assert_eq!(
            names(p.windows("free", Group::Models)),
            ["free-minute", "free-day"]
        );
        assert_eq!(
            names(p.windows("pro", Group::Predict)),
            ["pro-minute", "pro-day"]
        );
        assert_eq!(
            names(p.windows("retired-tier", Group::Models)),
            ["free-minute", "free-day"],
            "an unknown tier gets the strictest"
        );
        assert_eq!(p.all_windows("free").len(), 3);
    }

    #[test]
    fn local_store_is_exact_under_concurrency() {
        let local = Local::new();
        let w = [window(50, 3_600)];
        let allowed = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..25 {
                        if local.check("u:1", &w).allowed {
                            allowed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(allowed.into_inner(), 50);
        assert_eq!(local.peek("u:1", &w)[0].remaining, 0);
        assert_eq!(local.peek("u:2", &w)[0].remaining, 50);
    }

    #[test]
    fn sweeping_keeps_memory_bounded() {
        let local = Local::new();
        let w = [window(10, 86_400)];
        for i in 0..(SHARDS * MAX_PER_SHARD * 2) {
            local.check(&format!("ip:{i}"), &w);
        }
        let total: usize = local
            .shards
            .iter()
            .map(|s| s.lock().unwrap().tats.len())
            .sum();
        assert!(total <= SHARDS * MAX_PER_SHARD * 2, "{total} buckets kept");
    }
}
