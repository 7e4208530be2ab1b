//! The job workers: `jobs.workers` tasks per daemon, each claiming a job
//! (`serving::jobs::Jobs::claim`), running it chunk by chunk on the same
//! bounded inference pool as live predictions (`Registry::predict`), and
//! committing each chunk with the progress. On shutdown a worker stops
//! claiming, finishes the chunk it is computing, and gives its job back.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

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
pub(super) async fn work(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let claiming = Arc::clone(&app);
        match store::blocking(move || claiming.jobs.claim()).await {
            Ok(Some(claimed)) => run(&app, claimed, &stop).await,
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not claim a job; will retry"),
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
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

async fn run(app: &Arc<App>, claimed: Claimed, stop: &watch::Receiver<bool>) {
    let job = claimed.job;
    let id = job.id.clone();
    tracing::info!(job = %id, model = %job.model, total = job.total, done = job.done, "job claimed");
    let Some(model) = app.models().get(&job.model) else {
        let failing = Arc::clone(app);
        let message = format!("model {:?} is no longer served", job.model);
        let lost = job.total - job.done;
        let _ = store::blocking(move || failing.jobs.fail(&id, &message, lost)).await;
        return;
    };
    let explain = if job.explain {
        Explain::Occlusion
    } else {
        Explain::No
    };
    let chunk = app.jobs.config().chunk_size as u64;
    let mut start = job.done;
    while start < job.total {
        if *stop.borrow() {
            let releasing = Arc::clone(app);
            let id = id.clone();
            let _ = store::blocking(move || releasing.jobs.release(&id)).await;
            tracing::info!(job = %job.id, done = start, "job given back at shutdown");
            return;
        }
        let end = (start + chunk).min(job.total);
        let rows = &claimed.rows[start as usize..end as usize];
        let results = match chunk_results(app, &model, rows, explain).await {
            Ok(answers) => answers
                .into_iter()
                .enumerate()
                .map(|(i, mut value)| {
                    value["index"] = serde_json::json!(start + i as u64);
                    value.to_string()
                })
                .collect::<Vec<String>>(),
            Err(
                InferenceError::Busy
                | InferenceError::Timeout(_)
                | InferenceError::Unavailable { .. },
            ) => {
                // Live traffic has the pool, or the upstream is out: later.
                tokio::time::sleep(BACKOFF).await;
                continue;
            }
            Err(e) => {
                let failing = Arc::clone(app);
                let (id, message, lost) = (id.clone(), e.to_string(), job.total - start);
                let _ = store::blocking(move || failing.jobs.fail(&id, &message, lost)).await;
                return;
            }
        };
        let committing = Arc::clone(app);
        let (cid, version) = (id.clone(), model.version.clone());
        let progress = store::blocking(move || {
            committing
                .jobs
                .commit_chunk(&cid, start, &version, &results)
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
                tracing::warn!(job = %id, "job taken over by another daemon (lease lapsed)");
                return;
            }
            Err(e) => {
                // The lease lapses and a daemon resumes from the last commit.
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
    let found =
        futures_util::future::join_all(keys.iter().map(|key| app.cache.lookup(key, ttl))).await;
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
    let mut computed = computed.into_iter();
    Ok(found
        .into_iter()
        .map(|hit| match hit {
            Some(answer) => {
                // The stored single answer, less its envelope.
                let mut value = answer.value();
                if let serde_json::Value::Object(fields) = &mut value {
                    for envelope in ["version", "model", "model_version"] {
                        fields.remove(envelope);
                    }
                }
                value
            }
            None => serde_json::to_value(computed.next().expect("one per miss"))
                .expect("predictions serialize"),
        })
        .collect())
}
