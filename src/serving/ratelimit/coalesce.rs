//! Coalesces concurrent Redis rate-limit checks into shared script calls.
//!
//! Every request still gets its own exact decision: one atomic call decides
//! up to `MAX_BATCH` checks in order at one server instant, each check
//! reading the buckets the one before it wrote. What the batch saves is
//! redis-server's fixed cost per call (reading the command, finding the
//! script, entering Lua, the reply and its syscalls), which outweighs the
//! bucket arithmetic itself. Redis runs on one thread that every daemon
//! shares, so that cost is the first ceiling of a deployment.
//!
//! One daemon takes one turn at a time. A check that finds no turn taken
//! and nothing queued sends its own call at once, as if there were no
//! batching, so an idle daemon adds nothing to a check's latency. Checks
//! that arrive during a turn queue up for one task, which sends everything
//! queued as its next turn (calls of at most `MAX_BATCH` checks, pipelined
//! on the one connection in queue order; only a script reload, after a
//! Redis restart or `SCRIPT FLUSH`, can make a chunk run after a later one,
//! which changes who of one subject gets the 429, never how many), and
//! keeps the turn while checks keep queuing: a busy daemon batches as much
//! as Redis's round trip lets accumulate. A queued check
//! waits for the turn in progress and then its own, each bounded by
//! `redis.timeout_ms`, and less once the breaker opens.
//!
//! It owns no policy: callers build the keys and arguments, and decide what
//! a failure means.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::future::join_all;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::serving::remote::{Remote, RemoteError};

/// Most checks in one call: bounds how long one script holds redis-server.
const MAX_BATCH: usize = 64;

/// One request's check: its buckets' keys and, per key, the emission
/// interval and tolerance in µs and the shadow flag (0 or 1).
pub(super) struct Check {
    pub keys: Vec<String>,
    pub args: Vec<u64>,
}

/// For one check: the arrival times it read, then the server time.
type Reply = Result<Vec<u64>, RemoteError>;

struct Job {
    check: Check,
    reply: oneshot::Sender<Reply>,
}

struct Shared {
    remote: Arc<Remote>,
    script: redis::Script,
    /// One permit: the turn to call Redis. Fair once the task waits for it.
    turn: Semaphore,
    /// Checks sent to the task and not yet taken into a turn: while any
    /// wait, a new check queues behind them instead of calling first.
    queued: AtomicUsize,
}

/// Where checks go; the queue's task ends when it is dropped.
pub(super) struct Coalescer {
    shared: Arc<Shared>,
    queue: mpsc::UnboundedSender<Job>,
}

impl Coalescer {
    /// Starts the queue's task on the current tokio runtime.
    pub(super) fn start(remote: Arc<Remote>, script: redis::Script) -> Self {
        let shared = Arc::new(Shared {
            remote,
            script,
            turn: Semaphore::new(1),
            queued: AtomicUsize::new(0),
        });
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(send_queued(Arc::clone(&shared), rx));
        Coalescer { shared, queue }
    }

    /// Decides `check` in Redis: in a call of its own if no turn is taken
    /// and nothing is queued, else in the queue's next turn.
    pub(super) async fn run(&self, check: Check) -> Reply {
        if self.shared.queued.load(Ordering::Acquire) == 0 {
            if let Ok(_turn) = self.shared.turn.try_acquire() {
                return call_one(&self.shared, &check).await;
            }
        }
        let (reply, answer) = oneshot::channel();
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        match self.queue.send(Job { check, reply }) {
            // A dropped reply means the task died with its runtime.
            Ok(()) => answer.await.unwrap_or(Err(RemoteError::Down)),
            // The task is gone (its runtime shut down): wait for the turn.
            Err(mpsc::error::SendError(job)) => {
                self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                let _turn = self.shared.turn.acquire().await;
                call_one(&self.shared, &job.check).await
            }
        }
    }
}

async fn call_one(shared: &Shared, check: &Check) -> Reply {
    let mut replies = call(shared, std::iter::once(check)).await?;
    Ok(replies.pop().expect("one reply per check"))
}

/// The queue's task: waits for the turn, then sends everything queued,
/// and keeps the turn while more keeps arriving.
async fn send_queued(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, usize::MAX).await > 0 {
        let Ok(_turn) = shared.turn.acquire().await else {
            return;
        };
        loop {
            // What arrived while waiting for the turn goes too.
            while let Ok(job) = rx.try_recv() {
                batch.push(job);
            }
            shared.queued.fetch_sub(batch.len(), Ordering::AcqRel);
            // Sent in order on one connection, so Redis runs them in order
            // (unless one must reload the script first; see the module doc).
            let calls = batch
                .chunks(MAX_BATCH)
                .map(|chunk| call(&shared, chunk.iter().map(|job| &job.check)));
            let results = join_all(calls).await;
            let mut jobs = batch.drain(..);
            for result in results {
                let chunk = jobs.by_ref().take(MAX_BATCH);
                match result {
                    Ok(replies) => {
                        for (job, reply) in chunk.zip(replies) {
                            let _ = job.reply.send(Ok(reply));
                        }
                    }
                    Err(e) => {
                        for job in chunk {
                            let _ = job.reply.send(Err(e.clone()));
                        }
                    }
                }
            }
            if rx.is_empty() {
                break;
            }
        }
    }
}

/// One script call for the checks: KEYS are every check's keys in order;
/// ARGV is, per check, its key count and then its arguments (three per key).
async fn call<'a>(
    shared: &Shared,
    checks: impl ExactSizeIterator<Item = &'a Check> + Clone,
) -> Result<Vec<Vec<u64>>, RemoteError> {
    let mut invocation = shared.script.prepare_invoke();
    for check in checks.clone() {
        invocation.arg(check.keys.len());
        for key in &check.keys {
            invocation.key(key.as_str());
        }
        for arg in &check.args {
            invocation.arg(*arg);
        }
    }
    let reply: Vec<u64> = shared
        .remote
        .run(|mut conn| async move { invocation.invoke_async(&mut conn).await })
        .await?;
    split(checks.map(|check| check.keys.len()), &reply)
        .ok_or_else(|| RemoteError::Command("unexpected script reply".into()))
}

/// Cuts the flat reply (every check's arrival times, then the server time)
/// into one `[times…, server time]` per check; `None` if the lengths differ.
fn split(
    lens: impl ExactSizeIterator<Item = usize> + Clone,
    reply: &[u64],
) -> Option<Vec<Vec<u64>>> {
    let (now, mut rest) = reply.split_last()?;
    if rest.len() != lens.clone().sum::<usize>() {
        return None;
    }
    let mut out = Vec::with_capacity(lens.len());
    for n in lens {
        let (mine, after) = rest.split_at(n);
        let mut v = Vec::with_capacity(n + 1);
        v.extend_from_slice(mine);
        v.push(*now);
        out.push(v);
        rest = after;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn a_flat_reply_is_cut_per_check_with_the_server_time() {
        let reply = [10, 11, 20, 30, 31, 32, 99];
        let out = split([2, 1, 3].into_iter(), &reply).unwrap();
        assert_eq!(
            out,
            vec![vec![10, 11, 99], vec![20, 99], vec![30, 31, 32, 99]]
        );
    }

    #[test]
    fn a_reply_of_the_wrong_length_is_refused() {
        assert_eq!(split([2, 1].into_iter(), &[10, 11, 99]), None);
        assert_eq!(split([1].into_iter(), &[10, 11, 99]), None);
        assert_eq!(split([1].into_iter(), &[]), None);
    }
}
