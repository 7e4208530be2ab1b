//! API-key usage: counted in memory on the request path (no I/O, sharded by
//! thread) and written to SQLite in batches and at shutdown, so a busy key
//! costs no write per request. Nothing counted is lost on a failed write.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::params;

use super::keys::KeyInfo;
use crate::core::time;
use crate::store::{Store, StoreError};
use crate::FastMap;

/// Requests and the last use (unix seconds).
type UsageCount = (i64, i64);
/// Per key id: counts by UTC day number (almost always just today).
type Counts = FastMap<Arc<str>, Vec<(i64, UsageCount)>>;
/// Enough that each worker thread usually has a lock of its own.
const USAGE_SHARDS: usize = 8;

/// Usage counted in memory on the request path and written in batches.
/// Sharded by thread: workers counting requests on the same key do not
/// contend for one lock.
pub struct Usage {
    shards: Box<[Mutex<Counts>]>,
}

impl Default for Usage {
    fn default() -> Self {
        Usage {
            shards: (0..USAGE_SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl Usage {
    /// One request by `key_id`: a short, usually uncontended lock, no I/O.
    pub fn record(&self, key_id: &Arc<str>) {
        let now = time::now();
        let mut counts = self.shard().lock().expect("usage lock");
        // Looked up by `&str` first: a known key clones no shared pointer.
        if !counts.contains_key(&**key_id) {
            counts.insert(Arc::clone(key_id), Vec::new());
        }
        let days = counts.get_mut(&**key_id).expect("inserted above");
        add(days, now.div_euclid(86_400), (1, now));
    }

    fn shard(&self) -> &Mutex<Counts> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % USAGE_SHARDS;
        }
        &self.shards[SHARD.with(|s| *s)]
    }

    pub(super) fn add_pending(&self, key: &mut KeyInfo) {
        for shard in self.shards.iter() {
            let counts = shard.lock().expect("usage lock");
            for (day, (count, last)) in counts.get(&*key.id).into_iter().flatten() {
                key.request_count += count;
                key.last_used_at = Some(key.last_used_at.map_or(*last, |l| l.max(*last)));
                *key.requests_by_day.entry(time::utc_date(*day)).or_default() += count;
            }
        }
    }

    /// Everything counted so far, merged across shards, and the shards emptied.
    fn take(&self) -> Counts {
        let mut all = Counts::default();
        for shard in self.shards.iter() {
            let counts = std::mem::take(&mut *shard.lock().expect("usage lock"));
            merge(&mut all, counts);
        }
        all
    }

    /// Writes everything counted so far in one transaction. On failure the
    /// counts go back into memory for the next attempt: nothing is lost.
    pub fn flush(&self, store: &Store) -> Result<usize, StoreError> {
        let batch = self.take();
        if batch.is_empty() {
            return Ok(0);
        }
        let written = store.write(|tx| -> Result<_, StoreError> {
            let mut totals = tx.prepare_cached(
                "UPDATE api_keys SET request_count = request_count + ?2,
                        last_used_at = max(coalesce(last_used_at, 0), ?3) WHERE id = ?1",
            )?;
            let mut days = tx.prepare_cached(
                "INSERT INTO api_key_usage (key_id, day, requests) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key_id, day) DO UPDATE SET requests = requests + excluded.requests",
            )?;
            let mut rows = 0;
            for (id, by_day) in &batch {
                for (day, (count, last)) in by_day {
                    if totals.execute(params![id, count, last])? == 1 {
                        days.execute(params![id, time::utc_date(*day), count])?;
                    }
                    rows += 1;
                }
            }
            Ok(rows)
        });
        if written.is_err() {
            merge(&mut self.shards[0].lock().expect("usage lock"), batch);
        }
        written
    }
}

/// Adds one day's count to a key's days.
fn add(days: &mut Vec<(i64, UsageCount)>, day: i64, (count, last): UsageCount) {
    match days.iter_mut().find(|(d, _)| *d == day) {
        Some((_, c)) => {
            c.0 += count;
            c.1 = c.1.max(last);
        }
        None => days.push((day, (count, last))),
    }
}

fn merge(into: &mut Counts, from: Counts) {
    for (id, by_day) in from {
        let days = into.entry(id).or_default();
        for (day, count) in by_day {
            add(days, day, count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counted_on_many_threads_adds_up() {
        let usage = Usage::default();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("key-a"), Arc::from("key-b"));
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        usage.record(&a);
                    }
                    usage.record(&b);
                });
            }
        });
        let counts = usage.take();
        let total = |id: &str| -> i64 { counts[id].iter().map(|(_, (n, _))| n).sum() };
        assert_eq!(total("key-a"), 4000);
        assert_eq!(total("key-b"), 4);
        assert!(usage.take().is_empty(), "taking empties every shard");

        // Put back after a failed write: merged per key and day.
        let mut into = Counts::default();
        into.insert(Arc::clone(&a), vec![(10, (2, 100))]);
        let mut from = Counts::default();
        from.insert(Arc::clone(&a), vec![(10, (3, 90)), (11, (1, 200))]);
        merge(&mut into, from);
        assert_eq!(into[&*a], vec![(10, (5, 100)), (11, (1, 200))]);
    }
}
