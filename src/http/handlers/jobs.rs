//! Batch-job routes: submit (validated like `/api/v2/predict`, committed
//! before the 202), status, results, list, cancel. The rules live in
//! `serving::jobs`; the workers that run jobs in `daemon::jobs`.

use http::{header, HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::models::{model, parse_row, refuse};
use crate::core::error::{Error, FieldError};
use crate::core::scopes::Scope;
use crate::http::pipeline::Call;
use crate::http::problem::{json_response, ApiError, Response, JSON};
use crate::serving::jobs::{NewJob, Status, Submitted};
use crate::store;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewJobRequest {
    instances: Box<RawValue>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    explain: Option<bool>,
}

/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;

pub async fn submit(mut call: Call) -> Result<Response, ApiError> {
    let req: NewJobRequest = call.json().await?;
    let idempotency_key = match call.parts.headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY => Some(k.to_string()),
            _ => {
                return Err(ApiError::Validation(vec![FieldError::new(
                    "Idempotency-Key",
                    format!("must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
                )]))
            }
        },
    };
    let app = call.app();
    let model = model(app, req.model.as_deref())?;
    let max = app.jobs.config().max_instances as usize;
    let items = serde_json::from_str::<Vec<&RawValue>>(req.instances.get()).map_err(|_| {
        ApiError::Validation(vec![FieldError::new(
            "instances",
            "must be an array of arrays of numbers",
        )])
    })?;
    if items.len() > max {
        return Err(Error::TooLarge(format!(
            "a job holds at most {max} instances (jobs.max_instances), got {}",
            items.len()
        ))
        .into());
    }
    let mut errors = Vec::new();
    if items.is_empty() {
        errors.push(FieldError::new("instances", "must not be empty"));
    }
    let mut rows = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = format!("instances[{i}]");
        if let Some(values) = parse_row(&field, item, model.input_size, &mut errors) {
            if model.check_row(&field, &values, &mut errors).is_some() {
                rows.push(values);
            }
        }
    }
    if !errors.is_empty() {
        return Err(refuse(&call.ctx, errors));
    }
    let explain = req.explain.unwrap_or(false);
    // What tells a retry from another request with the same key.
    let body = format!("{}\n{explain}\n{}", model.name, req.instances.get()).into_bytes();
    let new = NewJob {
        user_id: Some(call.caller().user.id.clone()),
        model: model.name.clone(),
        rows,
        explain,
        idempotency_key,
        body,
    };
    let submitting = std::sync::Arc::clone(app);
    let submitted = store::blocking(move || submitting.jobs.submit(new)).await?;
    let (status, job) = match submitted {
        Submitted::Created(job) => (StatusCode::ACCEPTED, job),
        Submitted::Existing(job) => (StatusCode::OK, job),
    };
    let mut response = json_response(status, JSON, &job);
    let location = format!("/api/v1/jobs/{}", job.id);
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&location).expect("a uuid is a header value"),
    );
    Ok(response)
}

/// What a `/api/v1/jobs/{id}…` route works on, owned for the blocking pool:
/// the app, the caller's user id (a job is only its owner's) and the id.
fn target(call: &Call) -> (std::sync::Arc<crate::app::App>, String, String) {
    (
        std::sync::Arc::clone(call.app()),
        call.caller().user.id.clone(),
        call.param(0).to_string(),
    )
}

pub async fn show(call: Call) -> Result<Response, ApiError> {
    let (app, owner, id) = target(&call);
    let job = store::blocking(move || app.jobs.get(Some(&owner), &id)).await?;
    Ok(json_response(StatusCode::OK, JSON, &job))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    #[serde(default)]
    offset: Option<u32>,
    #[serde(default)]
    limit: Option<u32>,
}

/// Most results or jobs one page holds.
const MAX_PAGE: u32 = 1000;

pub async fn results(call: Call) -> Result<Response, ApiError> {
    let q: PageQuery = call.query()?;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let (app, owner, id) = target(&call);
    let page = store::blocking(move || {
        app.jobs
            .results(Some(&owner), &id, u64::from(q.offset.unwrap_or(0)), limit)
    })
    .await?;
    Ok(json_response(StatusCode::OK, JSON, &page))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    offset: Option<u32>,
    #[serde(default)]
    limit: Option<u32>,
}

pub async fn list(call: Call) -> Result<Response, ApiError> {
    let q: ListQuery = call.query()?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "status must be one of queued, running, succeeded, failed, cancelled; got {s:?}"
            ))
        })?),
    };
    let caller = call.caller();
    let owner = match q.user {
        None => caller.user.id.clone(),
        Some(user) if caller.scopes.contains(Scope::Admin) => {
            let app = std::sync::Arc::clone(call.app());
            app.identity.show_user(&user).await?.id
        }
        Some(_) => return Err(Error::MissingScope(Scope::Admin).into()),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let app = std::sync::Arc::clone(call.app());
    let jobs = store::blocking(move || {
        app.jobs.list(
            Some(&owner),
            status,
            limit,
            u64::from(q.offset.unwrap_or(0)),
        )
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        JSON,
        &json!({ "jobs": jobs }),
    ))
}

pub async fn cancel(call: Call) -> Result<Response, ApiError> {
    let (app, owner, id) = target(&call);
    let job = store::blocking(move || app.jobs.cancel(Some(&owner), &id)).await?;
    Ok(json_response(StatusCode::OK, JSON, &job))
}

/// How often an event stream looks at its job: the store is the change
/// feed, so every daemon's streams see every daemon's progress.
const EVENT_POLL: std::time::Duration = std::time::Duration::from_millis(250);
/// Progress events at most this often per job; state changes always.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// The event a job's state is, when it differs from the last one sent.
fn event_type(
    job: &crate::serving::jobs::Job,
    last: Option<(Status, u64)>,
) -> Option<&'static str> {
    let kind = match job.status {
        Status::Queued => "job.queued",
        Status::Running if last.is_none_or(|(s, _)| s != Status::Running) => "job.started",
        Status::Running => "job.progress",
        Status::Succeeded => "job.succeeded",
        Status::Failed => "job.failed",
        Status::Cancelled => "job.cancelled",
    };
    (last != Some((job.status, job.done))).then_some(kind)
}

/// `text/event-stream` of one job's events, ending after its terminal one.
pub async fn events(call: Call) -> Result<Response, ApiError> {
    let (app, owner, id) = target(&call);
    // 404 before the stream starts.
    let first = {
        let (app, owner, id) = (std::sync::Arc::clone(&app), owner.clone(), id.clone());
        store::blocking(move || app.jobs.get(Some(&owner), &id)).await?
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<warp::sse::Event>(16);
    let mut stopping = app.stopping();
    tokio::spawn(async move {
        let mut job = first;
        let mut last: Option<(Status, u64)> = None;
        let mut progress_at: Option<std::time::Instant> = None;
        loop {
            if let Some(kind) = event_type(&job, last) {
                let throttled = kind == "job.progress"
                    && progress_at.is_some_and(|t| t.elapsed() < PROGRESS_EVERY);
                if !throttled {
                    let data = json!({"type": kind, "job": job}).to_string();
                    let event = warp::sse::Event::default().event(kind).data(data);
                    if tx.send(event).await.is_err() {
                        return; // the client went away
                    }
                    last = Some((job.status, job.done));
                    if kind == "job.progress" {
                        progress_at = Some(std::time::Instant::now());
                    }
                }
            }
            if job.status.is_finished() {
                return;
            }
            // A draining daemon ends its streams (clients reconnect elsewhere).
            tokio::select! {
                () = tokio::time::sleep(EVENT_POLL) => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
            if tx.is_closed() {
                return;
            }
            let (app, owner, id) = (std::sync::Arc::clone(&app), owner.clone(), id.clone());
            match store::blocking(move || app.jobs.get(Some(&owner), &id)).await {
                Ok(next) => job = next,
                // Purged meanwhile, or the store is unavailable: end the stream.
                Err(_) => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|event| (Ok::<_, std::convert::Infallible>(event), rx))
    });
    let mut response =
        warp::reply::Reply::into_response(warp::sse::reply(warp::sse::keep_alive().stream(stream)));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
