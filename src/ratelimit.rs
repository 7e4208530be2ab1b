//! Rate limiting with GCRA (the generic cell rate algorithm: a token bucket
//! kept as one "theoretical arrival time" per key), in process.
//!
//! Exact under concurrency: a key's check-and-update happens under its shard's
//! lock. Memory is bounded: idle keys are swept out. This module decides; it
//! knows nothing of HTTP headers or users.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;
/// Per shard; past it, keys whose bucket is full again are dropped.
const SWEEP_AT: usize = 4096;

/// `limit` requests per `period`, with up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub period: Duration,
    pub burst: u32,
}

impl Quota {
    pub fn per_minute(limit: u32) -> Quota {
        Quota {
            limit,
            period: Duration::from_secs(60),
            burst: limit,
        }
    }

    fn interval(&self) -> Duration {
        self.period / self.limit.max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset_after: Duration,
    /// When refused: until one request would be allowed.
    pub retry_after: Duration,
}

pub struct Limiter {
    quota: Quota,
    epoch: Instant,
    /// Key → theoretical arrival time, as nanoseconds since `epoch`.
    shards: Vec<Mutex<HashMap<String, u64>>>,
}

impl Limiter {
    pub fn new(quota: Quota) -> Self {
        Limiter {
            quota,
            epoch: Instant::now(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    pub fn check(&self, key: &str) -> Decision {
        self.check_at(key, Instant::now())
    }

    pub fn check_at(&self, key: &str, now: Instant) -> Decision {
        let now = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        let t = self.quota.interval().as_nanos() as u64;
        let tolerance = t * u64::from(self.quota.burst.max(1));
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let mut shard = self.shards[hasher.finish() as usize % SHARDS]
            .lock()
            .expect("limiter shard");
        let tat = shard.get(key).copied().unwrap_or(now).max(now);
        let new_tat = tat + t;
        let decision = if new_tat - now > tolerance {
            Decision {
                allowed: false,
                limit: self.quota.limit,
                remaining: 0,
                reset_after: Duration::from_nanos(tat - now),
                retry_after: Duration::from_nanos(new_tat - now - tolerance),
            }
        } else {
            shard.insert(key.to_string(), new_tat);
            Decision {
                allowed: true,
                limit: self.quota.limit,
                remaining: ((tolerance - (new_tat - now)) / t) as u32,
                reset_after: Duration::from_nanos(new_tat - now),
                retry_after: Duration::ZERO,
            }
        };
        if shard.len() > SWEEP_AT {
            shard.retain(|_, tat| *tat > now);
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_limit_then_refuses_then_recovers() {
        let limiter = Limiter::new(Quota::per_minute(5));
        let start = Instant::now();
        for i in 0..5 {
            let d = limiter.check_at("ip", start);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 4 - i);
        }
        let refused = limiter.check_at("ip", start);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_secs(12));
        assert!(
            limiter.check_at("other", start).allowed,
            "keys are independent"
        );
        assert!(
            limiter
                .check_at("ip", start + Duration::from_secs(12))
                .allowed
        );
    }

    #[test]
    fn exact_under_concurrency() {
        let limiter = std::sync::Arc::new(Limiter::new(Quota::per_minute(50)));
        let allowed = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..25 {
                        if limiter.check("k").allowed {
                            allowed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(allowed.into_inner(), 50);
    }
}
