//! The job workers: `jobs.workers` tasks per daemon, each claiming a job
//! (`serving::jobs::Jobs::claim`), running it chunk by chunk on the same
//! bounded inference pool as live predictions (`Registry::predict`), and
//! committing each chunk with the progress. On shutdown a worker stops
//! claiming, finishes the chunk it is computing, and gives its job back.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch, Semaphore};

use crate::app::App;
use crate::core::error;
use crate::core::traffic::Traffic;
use crate::serving::cache::{Answer, CacheKey};
use crate::serving::jobs::{Claimed, Progress};
use crate::serving::models::{self, Explain, InferenceError, Model, Prediction, Slot};
use crate::store;

/// How often an idle worker looks for a queued job.
const POLL: Duration = Duration::from_millis(200);
/// How long a worker waits after a transient refusal (busy pool, timeout).
const BACKOFF: Duration = Duration::from_millis(200);
/// How often finished jobs past `jobs.retention_secs` are deleted.
const EXPIRE_EVERY: Duration = Duration::from_secs(60);
/// The longest one step of a chunk waits for the callers' requests in
/// flight to end: under unbroken traffic a job still moves.
const MAX_YIELD: Duration = Duration::from_millis(20);

/// Waits, at most `MAX_YIELD`, while a caller's request is in flight: the
/// idle class alone still shares caches, memory and SQLite with it. Never
/// while the chunk holds an inference slot, which a request may wait for.
fn step_aside(traffic: &Traffic) {
    let started = std::time::Instant::now();
    while traffic.busy() && started.elapsed() < MAX_YIELD {
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// One worker, until `stop`.
pub(super) async fn work(app: Arc<App>, slots: Arc<Semaphore>, mut stop: watch::Receiver<bool>) {
    let mut thread = None;
    loop {
        if *stop.borrow() {
            return;
        }
        if thread.is_none() {
            thread = JobThread::start()
                .inspect_err(|e| {
                    tracing::warn!(error = %e, "could not start a job worker's thread; will retry")
                })
                .ok();
        }
        if let Some(thread) = &thread {
            let claiming = Arc::clone(&app);
            match store::blocking(move || claiming.jobs.claim()).await {
                // The next queued job, at once.
                Ok(Some(claimed)) => {
                    run(&app, claimed, &slots, &stop, thread).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not claim a job; will retry"),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = app.jobs.submitted() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Deletes expired jobs every minute, until `stop`.
pub(super) async fn expire(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(EXPIRE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let expiring = Arc::clone(&app);
        match store::blocking(move || expiring.jobs.expire()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "expired finished jobs deleted"),
            Err(e) => tracing::warn!(error = %e, "could not delete expired jobs; will retry"),
        }
    }
}

/// Keeps a claim's lease alive while its chunks are computed, until dropped.
struct Renewal(tokio::task::JoinHandle<()>);

impl Renewal {
    fn start(app: &Arc<App>, id: &str, lease: &str) -> Renewal {
        let (app, id, lease) = (Arc::clone(app), id.to_string(), lease.to_string());
        let every = Duration::from_millis(app.jobs.config().lease_secs * 1000 / 3);
        Renewal(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let (renewing, id, lease) = (Arc::clone(&app), id.clone(), lease.clone());
                match store::blocking(move || renewing.jobs.renew(&id, &lease)).await {
                    Ok(true) => {}
                    // Taken over, cancelled or finished: the next commit tells the worker.
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not renew a job's lease; will retry")
                    }
                }
            }
        }))
    }
}

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Consecutive timeouts of a one-row chunk after which a job fails.
const MAX_TIMEOUTS: u32 = 3;
/// The longest a worker waits between tries while the pool or upstream is busy.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Which prediction-cache entries a job's computed rows fill.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// A user's job: the v2 entries its own rows are looked up by.
    V2,
    /// An operator's `cache warm`: v1's entries too, so either version hits.
    V1AndV2,
}

/// A chunk's commit in flight, queued on the worker's thread: the runtime
/// goes on to the next chunk, whose steps queue behind it.
struct Commit {
    start: u64,
    result: oneshot::Receiver<error::Result<Progress>>,
}

async fn run(
    app: &Arc<App>,
    claimed: Claimed,
    slots: &Semaphore,
    stop: &watch::Receiver<bool>,
    thread: &JobThread,
) {
    let Claimed { job, rows, lease } = claimed;
    let id = job.id.clone();
    tracing::info!(job = %id, model = %job.model, total = job.total, done = job.done, "job claimed");
    let fail = |message: String, lost: u64| {
        let (failing, id, lease) = (Arc::clone(app), id.clone(), lease.clone());
        async move {
            tracing::warn!(job = %id, error = %message, "job failed");
            let _ = store::blocking(move || failing.jobs.fail(&id, &lease, &message, lost)).await;
        }
    };
    let Some(model) = app.models().get(&job.model) else {
        fail(
            format!("model {:?} is no longer served", job.model),
            job.total - job.done,
        )
        .await;
        return;
    };
    let explain = if job.explain {
        Explain::Occlusion
    } else {
        Explain::No
    };
    let fill = match job.user_id {
        Some(_) => Fill::V2,
        None => Fill::V1AndV2,
    };
    let rows = Arc::new(rows);
    let _renewal = Renewal::start(app, &id, &lease);
    let mut chunk = u64::from(app.jobs.config().chunk_size);
    let mut start = job.done;
    let mut backoff = BACKOFF;
    let mut timeouts = 0;
    let mut pending: Option<Commit> = None;
    while start < job.total {
        if *stop.borrow() {
            if settle(&id, pending.take()).await.is_break() {
                return;
            }
            let (releasing, id, lease) = (Arc::clone(app), id.clone(), lease.clone());
            let _ = store::blocking(move || releasing.jobs.release(&id, &lease)).await;
            tracing::info!(job = %job.id, done = start, "job given back at shutdown");
            return;
        }
        let end = (start + chunk).min(job.total);
        let computed = {
            // Jobs never hold every inference slot: live requests keep one.
            let Ok(_slot) = slots.acquire().await else {
                let _ = settle(&id, pending.take()).await;
                return;
            };
            let chunk = Chunk {
                app: Arc::clone(app),
                model: Arc::clone(&model),
                rows: Arc::clone(&rows),
                start,
                end,
                explain,
                fill,
            };
            chunk.compute(thread).await
        };
        let results = match computed {
            Ok(results) => results,
            Err(
                e @ (InferenceError::Busy
                | InferenceError::Timeout(_)
                | InferenceError::Unavailable { .. }),
            ) => {
                if settle(&id, pending.take()).await.is_break() {
                    return;
                }
                if matches!(e, InferenceError::Timeout(_)) {
                    // Too heavy for the timeout: smaller chunks, then give up.
                    if chunk == 1 {
                        timeouts += 1;
                        if timeouts >= MAX_TIMEOUTS {
                            fail(format!("one instance does not finish within the inference timeout: {e}"), job.total - start).await;
                            return;
                        }
                    }
                    chunk = (chunk / 2).max(1);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                let checking = Arc::clone(app);
                let cid = id.clone();
                if store::blocking(move || checking.jobs.cancelled(&cid))
                    .await
                    .unwrap_or(false)
                {
                    tracing::info!(job = %id, done = start, "job cancelled");
                    return;
                }
                continue;
            }
            Err(e) => {
                if settle(&id, pending.take()).await.is_break() {
                    return;
                }
                fail(e.to_string(), job.total - start).await;
                return;
            }
        };
        backoff = BACKOFF;
        timeouts = 0;
        // Chunks commit in order: the previous one has landed before this one starts.
        if settle(&id, pending.take()).await.is_break() {
            return;
        }
        let committing = Arc::clone(app);
        let (cid, clease, version) = (id.clone(), lease.clone(), model.version.clone());
        let total = job.total;
        // Queued behind this chunk's work and before the next one's: one
        // thread per worker, so a worker's job work never takes two CPUs.
        let sent = thread.send(move || {
            step_aside(&committing.traffic);
            committing
                .jobs
                .commit_chunk(&cid, &clease, (start, total), &version, &results)
        });
        let Ok(result) = sent else {
            // The lease lapses and a worker resumes from the last commit.
            tracing::warn!(job = %id, "a job worker's thread has ended");
            return;
        };
        pending = Some(Commit { start, result });
        start = end;
    }
    let _ = settle(&id, pending.take()).await;
}

/// Waits for a chunk's commit: `Break` when the job is over for this worker
/// (finished, cancelled, taken over, or the commit failed).
async fn settle(id: &str, commit: Option<Commit>) -> ControlFlow<()> {
    let Some(Commit { start, result }) = commit else {
        return ControlFlow::Continue(());
    };
    match result.await {
        Ok(Ok(Progress::Continue)) => return ControlFlow::Continue(()),
        Ok(Ok(Progress::Finished)) => tracing::info!(job = %id, "job succeeded"),
        Ok(Ok(Progress::Cancelled)) => tracing::info!(job = %id, done = start, "job cancelled"),
        Ok(Ok(Progress::LostLease)) => {
            tracing::warn!(job = %id, "job taken over by another worker (its lease lapsed)")
        }
        // The lease lapses and a worker resumes from the last commit.
        Ok(Err(e)) => tracing::warn!(job = %id, error = %e, "could not commit a chunk"),
        Err(_) => tracing::warn!(job = %id, "a chunk's commit did not finish (it panicked)"),
    }
    ControlFlow::Break(())
}

/// One chunk of a job: rows `start..end` of `rows`.
struct Chunk {
    app: Arc<App>,
    model: Arc<Model>,
    rows: Arc<Vec<Vec<f64>>>,
    start: u64,
    end: u64,
    explain: Explain,
    fill: Fill,
}

/// How a chunk's missing rows get their predictions.
enum Inference {
    /// Nothing to compute: the cache held every row.
    None,
    /// An ONNX model, run on the worker's own thread in this pool slot.
    Here(Slot),
    /// An upstream model's answer, already fetched on the runtime.
    Fetched(Vec<Prediction>),
}

impl Chunk {
    /// The chunk's results, in order, as the JSON text the store keeps.
    /// Rows the prediction cache holds (as single v2 predictions of the same
    /// rows) come from it; the others are computed in one model call and
    /// stored there (`fill`), so `/api/v2/predict` reads them. All the CPU
    /// work (the keys, the memory tier's lookups and stores, the model, the
    /// answers, the JSON) runs on the worker's `thread` at idle priority,
    /// so a job never queues a live request behind it on the runtime's
    /// threads; the runtime only waits, and talks to Redis when configured.
    async fn compute(self, thread: &JobThread) -> Result<Vec<String>, InferenceError> {
        let Chunk {
            app,
            model,
            rows,
            start,
            end,
            explain,
            fill,
        } = self;
        let variant = match explain {
            Explain::No => "v2",
            Explain::Occlusion => "v2-explain",
        };
        let ttl = Duration::from_secs(model.cache_ttl_secs);
        let range = start as usize..end as usize;
        let (keys, mut found) = {
            let (app, model, rows, range) = (
                Arc::clone(&app),
                Arc::clone(&model),
                Arc::clone(&rows),
                range.clone(),
            );
            thread
                .run(move || {
                    step_aside(&app.traffic);
                    let keys: Vec<CacheKey> = rows[range]
                        .iter()
                        .map(|row| cache_key(&model, 2, variant, row))
                        .collect();
                    let found = block_on(app.cache.lookup_local(&keys, ttl));
                    (keys, found)
                })
                .await?
        };
        app.cache.lookup_remote(&keys, &mut found, ttl).await;
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| found[i].is_none()).collect();
        let registry = app.models();
        let inference = if missing.is_empty() {
            Inference::None
        } else {
            match registry.reserve(&model).await {
                Some(slot) => Inference::Here(slot?),
                None => {
                    let inputs = missing
                        .iter()
                        .map(|&i| to_input(&rows[range.start + i]))
                        .collect();
                    Inference::Fetched(
                        registry
                            .predict(Arc::clone(&model), inputs, explain)
                            .await?,
                    )
                }
            }
        };
        let cache_app = Arc::clone(&app);
        let (results, stored) = thread
            .run(move || {
                let app = cache_app;
                let rows = &rows[range];
                let computed = match inference {
                    Inference::None => Vec::new(),
                    // The slot is free again when this arm ends.
                    Inference::Here(slot) => {
                        let inputs: Vec<Vec<f32>> =
                            missing.iter().map(|&i| to_input(&rows[i])).collect();
                        slot.run_here(&inputs, explain)?
                    }
                    Inference::Fetched(predictions) => predictions,
                };
                if computed.len() != missing.len() {
                    return Err(InferenceError::Failed(format!(
                        "{} predictions for {} rows",
                        computed.len(),
                        missing.len()
                    )));
                }
                // The v2 entries the computed rows fill, and v1's for `cache warm`.
                let v1_too = fill == Fill::V1AndV2 && explain == Explain::No;
                let mut stored = Vec::with_capacity(missing.len() * if v1_too { 2 } else { 1 });
                for (&i, prediction) in missing.iter().zip(&computed) {
                    let answer = models::v2_single_answer(&model, prediction);
                    stored.push((keys[i].clone(), Answer::encode(&answer)));
                    if v1_too {
                        let answer = models::v1_answer(&model, prediction);
                        stored.push((
                            cache_key(&model, 1, "v1", &rows[i]),
                            Answer::encode(&answer),
                        ));
                    }
                }
                let mut computed = computed.into_iter();
                let results = found
                    .into_iter()
                    .enumerate()
                    .map(|(i, hit)| {
                        // A stored answer is used only if it is an object with a prediction.
                        let mut value = hit.and_then(from_cache).unwrap_or_else(|| {
                            let prediction = computed
                                .next()
                                .unwrap_or_else(|| unreachable!("counted above"));
                            serde_json::to_value(prediction).unwrap_or_default()
                        });
                        value["index"] = serde_json::json!(start + i as u64);
                        value.to_string()
                    })
                    .collect::<Vec<String>>();
                step_aside(&app.traffic);
                block_on(app.cache.store_local(&stored, ttl));
                Ok((results, stored))
            })
            .await??;
        app.cache.store_remote(&stored, ttl).await;
        Ok(results)
    }
}

/// The prediction-cache key of one row's single answer.
fn cache_key(model: &Model, version: u8, variant: &str, row: &Vec<f64>) -> CacheKey {
    CacheKey::new(
        &model.name,
        &model.answer_id,
        version,
        variant,
        std::slice::from_ref(row),
    )
}

fn to_input(row: &[f64]) -> Vec<f32> {
    row.iter().map(|v| *v as f32).collect()
}

/// A cached single v2 answer as a job result: its prediction without the
/// envelope; `None` when it is not such an answer (then it is computed).
fn from_cache(answer: Answer) -> Option<serde_json::Value> {
    let mut value = answer.value();
    let fields = value.as_object_mut()?;
    fields.get("prediction")?;
    for envelope in ["version", "model", "model_version", "cached"] {
        fields.remove(envelope);
    }
    Some(value)
}

/// Runs a future on the calling thread, parking it while the future waits:
/// for the prediction cache's memory tier (which needs no runtime) on a
/// job's own thread.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

type Work = Box<dyn FnOnce() + Send>;

/// A worker's own thread, in the idle scheduling class, for all of its
/// chunks' CPU work and commits, in order; one, so a worker never takes a
/// second CPU from the requests (with every CPU running idle-class work, a
/// waking request waits far longer). It lives as long as the worker (a
/// thread per chunk costs the allocator a heap each time) and makes no
/// runtime calls, so it may outlive a runtime that shuts down under it.
///
/// While it is starved (every CPU saturated), what it holds waits with it:
/// SQLite's write lock during a commit (other writers wait, up to
/// `database.busy_timeout_ms`) and, when it runs the in-process cache's
/// maintenance, that cache's inserts once their queue is full.
struct JobThread(std::sync::mpsc::Sender<Work>);

impl JobThread {
    fn start() -> std::io::Result<JobThread> {
        let (tx, rx) = std::sync::mpsc::channel::<Work>();
        std::thread::Builder::new()
            .name("mlapi-job".into())
            .spawn(move || {
                lower_priority();
                for work in rx {
                    // A panic drops its result's sender, which the waiter
                    // reports; the thread goes on with the next work.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
                }
            })?;
        Ok(JobThread(tx))
    }

    /// Queues `work` on the thread; its result arrives on the receiver.
    fn send<T, F>(&self, work: F) -> Result<oneshot::Receiver<T>, InferenceError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(Box::new(move || {
                let _ = tx.send(work());
            }))
            .map_err(|_| InferenceError::Failed("a job worker's thread has ended".into()))?;
        Ok(rx)
    }

    /// Runs `work` on the thread and waits for it without blocking the runtime.
    async fn run<T, F>(&self, work: F) -> Result<T, InferenceError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.send(work)?
            .await
            .map_err(|_| InferenceError::Failed("a job's chunk failed on its thread".into()))
    }
}

/// Puts the calling thread in Linux's SCHED_IDLE class: it runs on a CPU
/// no other thread wants, and a waking request thread takes the CPU from it
/// at once (a nice value only weights the share, and a low-weight thread
/// may finish its slice first). An unprivileged thread cannot leave the
/// class again, so it is only for a thread that does job work only.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: 0 names the calling thread; `param` is a valid sched_param.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
            tracing::debug!("could not lower a job thread's priority");
        }
    }
}
