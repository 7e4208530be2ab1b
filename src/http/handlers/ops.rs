//! Operations endpoints: liveness, readiness, metrics, the OpenAPI document.

use std::time::Duration;

use http::{header, HeaderValue, StatusCode};
use serde_json::json;

use crate::core::metrics::Exposition;
use crate::http::openapi;
use crate::http::pipeline::Call;
use crate::http::problem::{json_response, ApiError, Response, JSON};

pub async fn health(call: Call) -> Result<Response, ApiError> {
    let app = call.app();
    let mut body = json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": app.started.elapsed().as_secs(),
    });
    // Liveness never fails on Redis; it only says that it is down.
    if let Some(remote) = &app.remote {
        let up = remote.is_up();
        body["redis"] = json!(if up { "connected" } else { "unreachable" });
        if !up {
            body["status"] = json!("degraded");
        }
    }
    Ok(json_response(StatusCode::OK, JSON, &body))
}

pub async fn ready(call: Call) -> Result<Response, ApiError> {
    let checks = call.app().readiness().await;
    let map: serde_json::Map<String, serde_json::Value> = checks
        .iter()
        .map(|c| {
            let mut check = json!({"ok": c.ok, "detail": c.detail});
            if c.degraded {
                check["degraded"] = json!(true);
            }
            (c.name.to_string(), check)
        })
        .collect();
    if checks.iter().all(|c| c.ok) {
        let status = if checks.iter().any(|c| c.degraded) {
            "degraded"
        } else {
            "ready"
        };
        return Ok(json_response(
            StatusCode::OK,
            JSON,
            &json!({"status": status, "checks": map}),
        ));
    }
    let mut extra = serde_json::Map::new();
    extra.insert("checks".into(), serde_json::Value::Object(map));
    Err(not_ready(&checks, extra))
}

/// The 503 of a readiness check that failed (`/ready`, `/v2/health/ready`),
/// naming each failing check; `extra` goes into the problem.
pub(super) fn not_ready(
    checks: &[crate::app::Check],
    extra: serde_json::Map<String, serde_json::Value>,
) -> ApiError {
    let failing: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    ApiError::Unavailable {
        detail: format!("not ready: {}", failing.join("; ")),
        retry_after_secs: 5,
        extra,
    }
}

/// Prometheus text: each owner writes its own families.
pub async fn metrics(call: Call) -> Result<Response, ApiError> {
    let app = call.app();
    let mut out = String::with_capacity(32 * 1024);
    call.router().traffic.render(&mut out);
    app.limiter.render_metrics(&mut out);
    app.cache.render_metrics(&mut out);
    app.models().render_metrics(&mut out);
    // Job counts come from the store: every daemon's jobs, read off the runtime.
    let jobs_app = std::sync::Arc::clone(app);
    let jobs = crate::store::blocking(move || {
        let mut text = String::new();
        jobs_app.jobs.render_metrics(&mut text).map(|()| text)
    })
    .await;
    match jobs {
        Ok(text) => out.push_str(&text),
        Err(e) => tracing::warn!(error = %e, "metrics: job counts not read"),
    }
    if let Some(remote) = &app.remote {
        // Asked now: with no traffic the link would not notice an outage.
        let up = remote
            .ping(Duration::from_millis(app.config.redis.timeout_ms))
            .await;
        let mut family = Exposition::family(
            &mut out,
            "mlapi_redis_up",
            "gauge",
            "1 when Redis answered a PING during this scrape (only when redis.url is configured).",
        );
        family.sample("mlapi_redis_up", &[], u64::from(up.is_ok()));
    }
    let mut family = Exposition::family(
        &mut out,
        "mlapi_build_info",
        "gauge",
        "The running build; always 1.",
    );
    family.sample(
        "mlapi_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    let mut response = Response::new(out.into());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

pub async fn openapi(call: Call) -> Result<Response, ApiError> {
    // Built per request: the request schemas follow the models a reload
    // changes, and this is not a hot path.
    let app = call.app();
    let models = app.models().list();
    let tiers = app.config.tier_names();
    let routes: Vec<_> = call.router().documented().collect();
    let facts = openapi::Facts {
        routes: &routes,
        models: &models,
        max_batch: app.models().max_batch,
        tiers: &tiers,
    };
    Ok(json_response(
        StatusCode::OK,
        JSON,
        &openapi::document(&facts),
    ))
}
