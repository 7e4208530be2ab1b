//! The HTTP adapter: warp routes, their handlers, and the table of routes that
//! feeds `/openapi.json` and the `Allow` header.
//!
//! Handlers are thin: they decode the request, call a library service, and
//! encode the answer. Business rules live in the service modules, never here.

pub mod auth;
pub mod body;
pub mod conn;
pub mod limits;
pub mod middleware;
pub mod openapi;
pub mod predict;
pub mod problem;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::Filter;

use crate::app::App;
use problem::{json_response, ApiError, Response, JSON};

/// One documented route. The warp filters below must agree with this table;
/// `tests/` checks every entry answers on the running daemon.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    pub method: &'static str,
    /// `{name}` marks a path parameter.
    pub path: &'static str,
    pub operation_id: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    /// Statuses this route can answer besides the ones every route can.
    pub responses: &'static [(u16, &'static str)],
}

/// The public API. `/openapi.json` is generated from this table.
pub const ROUTES: &[RouteSpec] = &[
    RouteSpec {
        method: "GET",
        path: "/health",
        operation_id: "health",
        summary: "Liveness: the process is up and answering.",
        tag: "operations",
        responses: &[(200, "Health")],
    },
    RouteSpec {
        method: "GET",
        path: "/ready",
        operation_id: "ready",
        summary: "Readiness: the database (and Redis, when configured) answer.",
        tag: "operations",
        responses: &[(200, "Ready"), (503, "Problem")],
    },
    RouteSpec {
        method: "GET",
        path: "/openapi.json",
        operation_id: "openapi",
        summary: "This OpenAPI 3.1 document.",
        tag: "operations",
        responses: &[(200, "")],
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/auth/register",
        operation_id: "register",
        summary: "Create an account (role user, the default tier). JSON {username, email, password}.",
        tag: "auth",
        responses: &[(201, "User"), (403, "Problem"), (409, "Problem"), (413, "Problem"), (415, "Problem"), (422, "Problem"), (429, "Problem")],
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/auth/login",
        operation_id: "login",
        summary: "Password login, JSON or OAuth2 form (username, password, optional scope). Returns a token pair.",
        tag: "auth",
        responses: &[(200, "TokenPair"), (401, "Problem"), (403, "Problem"), (415, "Problem"), (422, "Problem"), (429, "Problem"), (503, "Problem")],
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/auth/token",
        operation_id: "token",
        summary: "OAuth2 token endpoint (form): grant_type=password or refresh_token. Errors per RFC 6749 §5.2.",
        tag: "auth",
        responses: &[(200, "TokenPair"), (400, "OAuthError"), (415, "Problem"), (429, "OAuthError"), (503, "OAuthError")],
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/auth/refresh",
        operation_id: "refresh",
        summary: "Rotate a refresh token (JSON {refresh_token}); reuse revokes the whole session.",
        tag: "auth",
        responses: &[(200, "TokenPair"), (401, "Problem"), (415, "Problem"), (422, "Problem"), (429, "Problem")],
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/auth/logout",
        operation_id: "logout",
        summary: "End the session of the presented access token, on every daemon.",
        tag: "auth",
        responses: &[(204, ""), (401, "Problem")],
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/auth/api-keys",
        operation_id: "createApiKey",
        summary: "Create an API key (signed-in user, scope keys:write). JSON {name, scopes?, expires_at?}. The key is shown once.",
        tag: "api-keys",
        responses: &[(201, "CreatedKey"), (401, "Problem"), (403, "Problem"), (409, "Problem"), (422, "Problem")],
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/auth/api-keys",
        operation_id: "listApiKeys",
        summary: "The caller's API keys with usage; never the secret.",
        tag: "api-keys",
        responses: &[(200, ""), (401, "Problem"), (403, "Problem")],
    },
    RouteSpec {
        method: "DELETE",
        path: "/api/v1/auth/api-keys/{id}",
        operation_id: "revokeApiKey",
        summary: "Revoke one of the caller's keys (id or display prefix); refused everywhere within a second.",
        tag: "api-keys",
        responses: &[(204, ""), (401, "Problem"), (403, "Problem")],
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/auth/api-keys/{id}/rotate",
        operation_id: "rotateApiKey",
        summary: "Replace a key (same name and scopes). JSON {grace_seconds?}: the old key works that long (default 0).",
        tag: "api-keys",
        responses: &[(201, "CreatedKey"), (401, "Problem"), (403, "Problem"), (409, "Problem"), (422, "Problem")],
    },
    RouteSpec {
        method: "DELETE",
        path: "/api/v1/admin/api-keys/{id}",
        operation_id: "adminRevokeApiKey",
        summary: "Revoke any user's key (scope admin).",
        tag: "admin",
        responses: &[(204, ""), (401, "Problem"), (403, "Problem")],
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/predict",
        operation_id: "predictV1",
        summary: "Predict one input (scope predict:read). JSON {features: [number, …], model?}.",
        tag: "predict",
        responses: &[(200, "PredictionV1"), (401, "Problem"), (403, "Problem"), (413, "Problem"), (415, "Problem"), (422, "Problem"), (503, "Problem"), (504, "Problem")],
    },
    RouteSpec {
        method: "POST",
        path: "/api/v2/predict",
        operation_id: "predictV2",
        summary: "Predict one input ({features}) or a batch ({instances}) with confidence, probabilities and an occlusion explanation (explain, default true).",
        tag: "predict",
        responses: &[(200, "PredictionV2"), (401, "Problem"), (403, "Problem"), (413, "Problem"), (415, "Problem"), (422, "Problem"), (503, "Problem"), (504, "Problem")],
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/models",
        operation_id: "listModels",
        summary: "The served models (scope models:read): name, version, digest, input size, labels, backend, status.",
        tag: "models",
        responses: &[(200, ""), (401, "Problem"), (403, "Problem")],
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/models/{name}",
        operation_id: "getModel",
        summary: "One model (scope models:read).",
        tag: "models",
        responses: &[(200, "Model"), (401, "Problem"), (403, "Problem")],
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/users/me",
        operation_id: "me",
        summary: "The caller's account and the scopes of the presented credential.",
        tag: "users",
        responses: &[(200, "User"), (401, "Problem")],
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/admin/users",
        operation_id: "adminListUsers",
        summary: "List accounts (scope admin). Query: limit (1-1000, default 100), offset.",
        tag: "admin",
        responses: &[(200, ""), (401, "Problem"), (403, "Problem")],
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/admin/users/{id}",
        operation_id: "adminGetUser",
        summary: "One account by id or username (scope admin).",
        tag: "admin",
        responses: &[(200, "User"), (401, "Problem"), (403, "Problem")],
    },
    RouteSpec {
        method: "PATCH",
        path: "/api/v1/admin/users/{id}",
        operation_id: "adminUpdateUser",
        summary: "Change an account's role, tier or disabled flag (scope admin). JSON {role?, tier?, disabled?}.",
        tag: "admin",
        responses: &[(200, "User"), (401, "Problem"), (403, "Problem"), (409, "Problem"), (422, "Problem")],
    },
];

/// Test-only routes, mounted when `debug.test_routes = true`. Not documented
/// in `/openapi.json`.
pub const DEBUG_ROUTES: &[RouteSpec] = &[
    RouteSpec {
        method: "GET",
        path: "/debug/sleep",
        operation_id: "debugSleep",
        summary: "Answers after `ms` milliseconds (tests graceful shutdown).",
        tag: "debug",
        responses: &[(200, "")],
    },
    RouteSpec {
        method: "GET",
        path: "/debug/panic",
        operation_id: "debugPanic",
        summary: "Panics inside a handler (tests the last-resort handler).",
        tag: "debug",
        responses: &[(500, "Problem")],
    },
    RouteSpec {
        method: "POST",
        path: "/debug/echo",
        operation_id: "debugEcho",
        summary: "Echoes a small JSON document (tests body handling).",
        tag: "debug",
        responses: &[
            (200, ""),
            (400, "Problem"),
            (413, "Problem"),
            (415, "Problem"),
            (422, "Problem"),
        ],
    },
];

/// The routes this process serves.
pub fn active_routes(app: &App) -> impl Iterator<Item = &'static RouteSpec> {
    let debug: &'static [RouteSpec] = if app.config.debug.test_routes {
        DEBUG_ROUTES
    } else {
        &[]
    };
    ROUTES.iter().chain(debug)
}

/// Methods allowed on `path`, for `Allow` and CORS preflights.
pub fn allowed_methods(app: &App, path: &str) -> Vec<&'static str> {
    active_routes(app)
        .filter(|r| path_matches(r.path, path))
        .map(|r| r.method)
        .collect()
}

fn path_matches(pattern: &str, path: &str) -> bool {
    let mut pattern = pattern.split('/');
    let mut path = path.split('/');
    loop {
        match (pattern.next(), path.next()) {
            (None, None) => return true,
            (Some(p), Some(s)) if p.starts_with('{') && !s.is_empty() => continue,
            (Some(p), Some(s)) if p == s => continue,
            _ => return false,
        }
    }
}

/// Every route, path-first so that a known path with the wrong method is a
/// 405 and an unknown path a 404; all rejections become problem documents.
pub fn routes(app: Arc<App>) -> BoxedFilter<(Response,)> {
    let with_app = {
        let app = Arc::clone(&app);
        warp::any().map(move || Arc::clone(&app))
    };

    let health = warp::path!("health")
        .and(warp::get())
        .and(with_app.clone())
        .map(|app: Arc<App>| {
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
            json_response(StatusCode::OK, JSON, &body)
        });

    let ready = warp::path!("ready")
        .and(warp::get())
        .and(with_app.clone())
        .then(ready);

    let spec = Arc::new(openapi::document());
    let openapi = warp::path!("openapi.json")
        .and(warp::get())
        .map(move || json_response(StatusCode::OK, JSON, spec.as_ref()));

    // The hot path first: warp tries alternatives in order.
    let mut api = predict::routes(&app)
        .or(health)
        .unify()
        .or(ready)
        .unify()
        .or(openapi)
        .unify()
        .or(auth::routes(&app))
        .unify()
        .boxed();
    if app.config.debug.test_routes {
        tracing::warn!(
            "debug.test_routes is on: /debug/* routes are mounted; never do this in production"
        );
        api = api
            .or(debug_routes(app.config.server.max_body_bytes))
            .unify()
            .boxed();
    }
    api.recover(problem::recover).unify().boxed()
}

async fn ready(app: Arc<App>) -> Response {
    let checks = app.readiness().await;
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
    let failing: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    if failing.is_empty() {
        let status = if checks.iter().any(|c| c.degraded) {
            "degraded"
        } else {
            "ready"
        };
        return json_response(
            StatusCode::OK,
            JSON,
            &json!({"status": status, "checks": map}),
        );
    }
    let mut extra = serde_json::Map::new();
    extra.insert("checks".into(), serde_json::Value::Object(map));
    ApiError::Unavailable {
        detail: format!("not ready: {}", failing.join("; ")),
        retry_after_secs: 5,
        extra,
    }
    .into_response()
}

#[derive(Debug, Deserialize)]
struct SleepQuery {
    ms: u64,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Echo {
    message: String,
    #[serde(default)]
    count: u32,
}

fn debug_routes(max_body: u64) -> BoxedFilter<(Response,)> {
    let sleep = warp::path!("debug" / "sleep")
        .and(warp::get())
        .and(warp::query::<SleepQuery>())
        .then(|q: SleepQuery| async move {
            tokio::time::sleep(Duration::from_millis(q.ms.min(60_000))).await;
            json_response(StatusCode::OK, JSON, &json!({"slept_ms": q.ms.min(60_000)}))
        });
    let panic = warp::path!("debug" / "panic")
        .and(warp::get())
        .map(|| -> Response { panic!("debug panic route") });
    let echo = warp::path!("debug" / "echo")
        .and(warp::post())
        .and(body::json::<Echo>(max_body))
        .map(|e: Echo| json_response(StatusCode::OK, JSON, &e));
    sleep.or(panic).unify().or(echo).unify().boxed()
}

#[cfg(test)]
mod tests {
    use super::path_matches;

    #[test]
    fn patterns() {
        assert!(path_matches("/health", "/health"));
        assert!(!path_matches("/health", "/health/"));
        assert!(!path_matches("/health", "/healthz"));
        assert!(path_matches("/api/v1/keys/{id}", "/api/v1/keys/abc"));
        assert!(!path_matches("/api/v1/keys/{id}", "/api/v1/keys/"));
        assert!(!path_matches("/api/v1/keys/{id}", "/api/v1/keys/a/b"));
    }
}
