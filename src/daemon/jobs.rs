//! The job workers: `jobs.workers` tasks per daemon, each claiming a job
//! (`serving::jobs::Jobs::claim`), running it chunk by chunk on the same
//! bounded inference pool as live predictions (`Registry::predict`), and
//! committing each chunk with the progress. On shutdown a worker stops
//! claiming, finishes the chunk it is computing, and gives its job back.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};

use crate::app::App;
use crate::serving::cache::CacheKey;
use crate::serving::jobs::{Claimed, Progress};
use crate::serving::models::{self, Explain, InferenceError, Model};
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
    let _renewal = Renewal::start(app, &id, &lease);
    let mut chunk = u64::from(app.jobs.config().chunk_size);
    let mut start = job.done;
    let mut backoff = BACKOFF;
    let mut timeouts = 0;
    while start < job.total {
        if *stop.borrow() {
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
            chunk_results(app, &model, &rows[start as usize..end as usize], explain).await
        };
        let results = match computed {
            Ok(answers) => answers
                .into_iter()
                .enumerate()
                .map(|(i, mut value)| {
                    value["index"] = serde_json::json!(start + i as u64);
                    value.to_string()
                })
                .collect::<Vec<String>>(),
            Err(
                e @ (InferenceError::Busy
                | InferenceError::Timeout(_)
                | InferenceError::Unavailable { .. }),
            ) => {
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
                fail(e.to_string(), job.total - start).await;
                return;
            }
        };
        backoff = BACKOFF;
        timeouts = 0;
        let committing = Arc::clone(app);
        let (cid, clease, version) = (id.clone(), lease.clone(), model.version.clone());
        let progress = store::blocking(move || {
            committing
                .jobs
                .commit_chunk(&cid, &clease, start, &version, &results)
        })
        .await;
        match progress {
            Ok(Progress::Continue) => start = end,
            Ok(Progress::Finished) => {
                tracing::info!(job = %id, total = job.total, "job succeeded");
                return;
            }
            Ok(Progress::Cancelled) => {
                tracing::info!(job = %id, done = start, "job cancelled");
                return;
            }
            Ok(Progress::LostLease) => {
                tracing::warn!(job = %id, "job taken over by another worker (its lease lapsed)");
                return;
            }
            Err(e) => {
                // The lease lapses and a worker resumes from the last commit.
                tracing::warn!(job = %id, error = %e, "could not commit a chunk");
                return;
            }
        }
    }
}

/// One chunk's results (prediction, confidence, probabilities, explanation
/// when asked), in order. Rows the prediction cache holds (as single v2
/// predictions of the same rows) come from it; the others are computed in
/// one model call and stored there, so `/api/v2/predict` reads them.
async fn chunk_results(
    app: &Arc<App>,
    model: &Arc<Model>,
    rows: &[Vec<f64>],
    explain: Explain,
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
            .predict(Arc::clone(model), inputs, explain)
            .await?;
        let keys = &keys;
        let stores = missing.iter().zip(&computed).map(|(&i, prediction)| {
            let answer = models::v2_single_answer(model, prediction);
            // Without explanations, v1's entry for the row too (`cache warm`).
            let v1 = (explain == Explain::No).then(|| {
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
