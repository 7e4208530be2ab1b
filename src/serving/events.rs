//! Live job events: what WebSockets and event streams are told.
//!
//! Every change to a job reaches [`Events::publish`] twice: at once from the
//! process that made it (its `Jobs` method), and from the change feed, which
//! each daemon reads every 250 ms (`Jobs::read_changes`: the rows whose
//! `rev` moved), so a daemon's sockets see the jobs every other process
//! runs, cancels or submits. `publish` keeps the last state it told per job
//! and drops repeats and stale states, so each event goes out once and in
//! order. Progress is throttled per job to one event per 500 ms: a held
//! back progress goes out when its window ends (`flush_due`), unless a
//! newer state replaces it first. State changes and terminal events are
//! never held back.
//!
//! An event is serialized once and shared by every subscriber through one
//! bounded broadcast ring: a subscriber that falls a ring behind is told
//! (`Lagged`) instead of buffering, so memory never grows with a slow
//! client.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, Notify};

use super::jobs::{Job, Status};
use crate::core::metrics::Exposition;
use crate::FastMap;

/// Progress events at most this often per job.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// Events a subscriber may fall behind before it is told it lagged.
const RING: usize = 1024;
/// How long a finished job's last told state is kept (against repeats
/// from the change feed), and an unfinished one's that stopped changing.
const FORGET_FINISHED: Duration = Duration::from_secs(60);
const FORGET_UNFINISHED: Duration = Duration::from_secs(24 * 3600);

/// One event, serialized once for all its subscribers.
#[derive(Debug)]
pub struct Event {
    /// The job's owner; `None` for an operator's job (no socket sees it).
    pub user_id: Option<String>,
    pub job_id: String,
    /// `{"type": kind, "job": <the job status object>}`.
    pub text: bytes::Bytes,
}

/// The last state told for one job.
struct Told {
    status: Status,
    done: u64,
    progress_at: Option<Instant>,
    at: Instant,
}

#[derive(Default)]
struct State {
    told: FastMap<String, Told>,
    /// Progress held back by the throttle, with when it may go.
    held: FastMap<String, (Job, Instant)>,
}

/// This process's job-event hub (see the module doc).
pub struct Events {
    ring: broadcast::Sender<Arc<Event>>,
    state: Mutex<State>,
    /// Wakes the daemon's event task when progress is held back.
    held_back: Notify,
    sockets: AtomicUsize,
    sockets_dropped: AtomicU64,
    all_closed: Notify,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            ring: broadcast::channel(RING).0,
            state: Mutex::default(),
            held_back: Notify::new(),
            sockets: AtomicUsize::new(0),
            sockets_dropped: AtomicU64::new(0),
            all_closed: Notify::new(),
        }
    }
}

/// Ordering of states: a later state never sorts below an earlier one.
fn rank(status: Status) -> u8 {
    match status {
        Status::Queued => 0,
        Status::Running => 1,
        Status::Succeeded | Status::Failed | Status::Cancelled => 2,
    }
}

/// The event type of a job's state.
pub fn kind(status: Status, was_running: bool) -> &'static str {
    match status {
        Status::Queued => "job.queued",
        Status::Running if !was_running => "job.started",
        Status::Running => "job.progress",
        Status::Succeeded => "job.succeeded",
        Status::Failed => "job.failed",
        Status::Cancelled => "job.cancelled",
    }
}

/// The event text for a job in a state.
pub fn text(kind: &str, job: &Job) -> bytes::Bytes {
    serde_json::to_vec(&serde_json::json!({"type": kind, "job": job}))
        .expect("a job serializes")
        .into()
}

impl Events {
    /// Events from now on. Subscribe before reading a job's current state,
    /// so no change falls between the two.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.ring.subscribe()
    }

    /// Tells subscribers about `job`'s state, unless it was told already or
    /// is older than what was; progress inside its window is held back.
    pub fn publish(&self, job: &Job) {
        let now = Instant::now();
        let mut state = self.state.lock().expect("events lock");
        let was_running = match state.told.get(&job.id) {
            Some(t) if rank(t.status) == 2 => return,
            Some(t) if (rank(job.status), job.done) <= (rank(t.status), t.done) => return,
            Some(t) => t.status == Status::Running,
            None => false,
        };
        if let Some((held, _)) = state.held.get(&job.id) {
            if (rank(job.status), job.done) <= (rank(held.status), held.done) {
                return;
            }
        }
        let kind = kind(job.status, was_running);
        if kind == "job.progress" {
            let progress_at = state.told.get(&job.id).and_then(|t| t.progress_at);
            if let Some(due) = progress_at.map(|t| t + PROGRESS_EVERY).filter(|d| *d > now) {
                let first = state
                    .held
                    .insert(job.id.clone(), (job.clone(), due))
                    .is_none();
                drop(state);
                if first {
                    self.held_back.notify_one();
                }
                return;
            }
        }
        state.held.remove(&job.id);
        self.tell(&mut state, job, kind, now);
    }

    fn tell(&self, state: &mut State, job: &Job, kind: &'static str, now: Instant) {
        let progress_at = match kind {
            "job.progress" => Some(now),
            _ => state.told.get(&job.id).and_then(|t| t.progress_at),
        };
        state.told.insert(
            job.id.clone(),
            Told {
                status: job.status,
                done: job.done,
                progress_at,
                at: now,
            },
        );
        // Sent under the lock, so two publishers cannot reorder a job's events.
        let _no_subscribers = self.ring.send(Arc::new(Event {
            user_id: job.user_id.clone(),
            job_id: job.id.clone(),
            text: text(kind, job),
        }));
    }

    /// Sends the held-back progress whose window ended, forgets jobs that
    /// stopped changing, and says when the next held-back event is due.
    pub fn flush_due(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut state = self.state.lock().expect("events lock");
        let due: Vec<String> = state
            .held
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            if let Some((job, _)) = state.held.remove(&id) {
                self.tell(&mut state, &job, "job.progress", now);
            }
        }
        let State { told, held } = &mut *state;
        told.retain(|id, t| {
            let keep = if rank(t.status) == 2 {
                FORGET_FINISHED
            } else {
                FORGET_UNFINISHED
            };
            held.contains_key(id) || now.duration_since(t.at) < keep
        });
        held.values().map(|(_, at)| *at).min()
    }

    /// Resolves when progress is held back (so the event task wakes for it).
    pub async fn held_back(&self) {
        self.held_back.notified().await;
    }

    /// Counts an open socket until the guard is dropped; `None` when
    /// `max` are open already.
    pub fn socket_opened(self: &Arc<Self>, max: usize) -> Option<SocketGuard> {
        self.sockets
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(SocketGuard(Arc::clone(self)))
    }

    pub fn sockets(&self) -> usize {
        self.sockets.load(Ordering::Relaxed)
    }

    /// A socket closed because its client did not keep up.
    pub fn socket_dropped(&self) {
        self.sockets_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Resolves once no socket is open.
    pub async fn all_closed(&self) {
        loop {
            let notified = self.all_closed.notified();
            if self.sockets() == 0 {
                return;
            }
            notified.await;
        }
    }

    pub fn render_metrics(&self, out: &mut String) {
        let name = "mlapi_websocket_connections";
        Exposition::family(out, name, "gauge", "Open WebSocket connections.").sample(
            name,
            &[],
            self.sockets() as u64,
        );
        let name = "mlapi_websocket_dropped_total";
        Exposition::family(
            out,
            name,
            "counter",
            "WebSockets closed because the client did not read its events.",
        )
        .sample(name, &[], self.sockets_dropped.load(Ordering::Relaxed));
    }
}

/// An open socket, counted in `mlapi_websocket_connections`.
pub struct SocketGuard(Arc<Events>);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if self.0.sockets.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.all_closed.notify_waiters();
        }
    }
}
