//! The job workers: `jobs.workers` tasks per daemon, each claiming a job
//! (`serving::jobs::Jobs::claim`), running it chunk by chunk on the same
//! bounded inference pool as live predictions (`Registry::predict`), and
//! committing each chunk with the progress. On shutdown a worker stops
//! claiming, finishes the chunk it is computing, and gives its job back.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::app::App;
use crate::core::error;
use crate::serving::cache::CacheKey;
use crate::serving::jobs::{Claimed, Progress};
use crate::serving::models::{self, Explain, InferenceError, Model, RunOn};
use crate::store;

/// How often an idle worker looks for a queued job.
const POLL: Duration = Duration::from_millis(200);
/// How long a worker waits after a transient refusal (busy pool, timeout).
const BACKOFF: Duration = Duration::from_millis(200);
/// How often finished jobs past `jobs.retention_secs` are deleted.
const EXPIRE_EVERY: Duration = Duration::from_secs(60);

/// One worker, until `stop`.
pub(super) async fn work(app: Arc<App>, slots: Arc<Semaphore>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let claiming = Arc::clone(&app);
        match store::blocking(move || claiming.jobs.claim()).await {
            // The next queued job, at once.
            Ok(Some(claimed)) => {
                run(&app, claimed, &slots, &stop).await;
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not claim a job; will retry"),
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
/// The nice value of a thread computing a job's chunk: live requests, on
/// the runtime's threads, take the CPU from it whenever they need it.
const CHUNK_NICE: i32 = 10;

/// Which prediction-cache entries a job's computed rows fill.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// A user's job: the v2 entries its own rows are looked up by.
    V2,
    /// An operator's `cache warm`: v1's entries too, so either version hits.
    V1AndV2,
}

/// A chunk's commit in flight: the next chunk computes while it runs.
struct Commit {
    start: u64,
    handle: JoinHandle<error::Result<Progress>>,
}

async fn run(app: &Arc<App>, claimed: Claimed, slots: &Semaphore, stop: &watch::Receiver<bool>) {
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
            chunk.compute().await
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
        pending = Some(Commit {
            start,
            handle: tokio::task::spawn_blocking(move || {
                committing
                    .jobs
                    .commit_chunk(&cid, &clease, start, &version, &results)
            }),
        });
        start = end;
    }
    let _ = settle(&id, pending.take()).await;
}

/// Waits for a chunk's commit: `Break` when the job is over for this worker
/// (finished, cancelled, taken over, or the commit failed).
async fn settle(id: &str, commit: Option<Commit>) -> ControlFlow<()> {
    let Some(Commit { start, handle }) = commit else {
        return ControlFlow::Continue(());
    };
    match handle.await {
        Ok(Ok(Progress::Continue)) => return ControlFlow::Continue(()),
        Ok(Ok(Progress::Finished)) => tracing::info!(job = %id, "job succeeded"),
        Ok(Ok(Progress::Cancelled)) => tracing::info!(job = %id, done = start, "job cancelled"),
        Ok(Ok(Progress::LostLease)) => {
            tracing::warn!(job = %id, "job taken over by another worker (its lease lapsed)")
        }
        // The lease lapses and a worker resumes from the last commit.
        Ok(Err(e)) => tracing::warn!(job = %id, error = %e, "could not commit a chunk"),
        Err(e) => tracing::warn!(job = %id, error = %e, "a chunk's commit did not finish"),
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

impl Chunk {
    /// The chunk's results as the JSON text the store keeps, computed on a
    /// thread of its own at a lower priority: the model, the cache and the
    /// JSON work of a job never queue a live request behind them on the
    /// runtime's threads.
    async fn compute(self) -> Result<Vec<String>, InferenceError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let handle = tokio::runtime::Handle::current();
        let spawned = std::thread::Builder::new()
            .name("mlapi-job".into())
            .spawn(move || {
                lower_priority();
                let _ = tx.send(handle.block_on(self.results()));
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start a thread for a job's chunk; will retry");
            return Err(InferenceError::Busy);
        }
        rx.await.unwrap_or_else(|_| {
            Err(InferenceError::Failed(
                "a job's chunk thread ended without a result".into(),
            ))
        })
    }

    async fn results(self) -> Result<Vec<String>, InferenceError> {
        let rows = &self.rows[self.start as usize..self.end as usize];
        let answers = chunk_results(&self.app, &self.model, rows, self.explain, self.fill).await?;
        Ok(answers
            .into_iter()
            .enumerate()
            .map(|(i, mut value)| {
                value["index"] = serde_json::json!(self.start + i as u64);
                value.to_string()
            })
            .collect())
    }
}

/// Lowers the calling thread's CPU priority (Linux: nice is per thread).
/// Raising it back would need CAP_SYS_NICE, so it is only for a thread that
/// ends with its chunk.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread; no memory is shared.
    unsafe {
        let tid = libc::gettid();
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, CHUNK_NICE) != 0 {
            tracing::debug!("could not lower a job thread's priority");
        }
    }
}

/// One chunk's results (prediction, confidence, probabilities, explanation
/// when asked), in order. Rows the prediction cache holds (as single v2
/// predictions of the same rows) come from it; the others are computed in
/// one model call, on this thread, and stored there (`fill`), so
/// `/api/v2/predict` reads them.
async fn chunk_results(
    app: &Arc<App>,
    model: &Arc<Model>,
    rows: &[Vec<f64>],
    explain: Explain,
    fill: Fill,
) -> Result<Vec<serde_json::Value>, InferenceError> {
    let variant = match explain {
        Explain::No => "v2",
        Explain::Occlusion => "v2-explain",
    };
    let ttl = Duration::from_secs(model.cache_ttl_secs);
    let keys: Vec<CacheKey> = rows
        .iter()
        .map(|row| {
            CacheKey::new(
                &model.name,
                &model.answer_id,
                2,
                variant,
                std::slice::from_ref(row),
            )
        })
        .collect();
    // A stored answer is used only if it is an object with a prediction.
    let found: Vec<Option<serde_json::Value>> =
        futures_util::future::join_all(keys.iter().map(|key| app.cache.lookup(key, ttl)))
            .await
            .into_iter()
            .map(|hit| {
                let mut value = hit?.value();
                let fields = value.as_object_mut()?;
                fields.get("prediction")?;
                for envelope in ["version", "model", "model_version", "cached"] {
                    fields.remove(envelope);
                }
                Some(value)
            })
            .collect();
    let missing: Vec<usize> = (0..rows.len()).filter(|&i| found[i].is_none()).collect();
    let mut computed = Vec::new();
    if !missing.is_empty() {
        let inputs: Vec<Vec<f32>> = missing
            .iter()
            .map(|&i| rows[i].iter().map(|v| *v as f32).collect())
            .collect();
        computed = app
            .models()
            .predict(Arc::clone(model), inputs, explain, RunOn::ThisThread)
            .await?;
        let keys = &keys;
        let stores = missing.iter().zip(&computed).map(|(&i, prediction)| {
            let answer = models::v2_single_answer(model, prediction);
            // `cache warm` without explanations: v1's entry for the row too.
            let v1 = (fill == Fill::V1AndV2 && explain == Explain::No).then(|| {
                (
                    CacheKey::new(
                        &model.name,
                        &model.answer_id,
                        1,
                        "v1",
                        std::slice::from_ref(&rows[i]),
                    ),
                    models::v1_answer(model, prediction),
                )
            });
            async move {
                app.cache.store(&keys[i], ttl, &answer).await;
                if let Some((key, answer)) = v1 {
                    app.cache.store(&key, ttl, &answer).await;
                }
            }
        });
        futures_util::future::join_all(stores).await;
    }
    if computed.len() != missing.len() {
        return Err(InferenceError::Failed(format!(
            "{} predictions for {} rows",
            computed.len(),
            missing.len()
        )));
    }
    let mut computed = computed.into_iter();
    Ok(found
        .into_iter()
        .map(|hit| {
            hit.unwrap_or_else(|| {
                let prediction = computed
                    .next()
                    .unwrap_or_else(|| unreachable!("counted above"));
                serde_json::to_value(prediction).unwrap_or_default()
            })
        })
        .collect())
}
