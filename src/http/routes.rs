//! The one route table. Every request the daemon answers goes through a row
//! of it: the row says which credential the route takes, which scope it
//! needs, which rate-limit group it counts against, how its errors are
//! written, and which handler answers. `http::pipeline` runs the shared
//! steps from the row; 404/405 with `Allow`, CORS preflights and
//! `/openapi.json` are derived from the same rows, so they cannot drift.
//!
//! To add a route: write the handler in `http::handlers`, add one row here.

use std::future::Future;
use std::pin::Pin;

use http::Method;

use super::handlers::{debug, docs, identity, jobs, keys, models, oip, ops, ws};
use super::metrics::HttpMetrics;
use super::pipeline::Call;
use super::problem::{ApiError, Response};
use crate::core::groups::Group;
use crate::core::scopes::Scope;
use crate::FastMap;

/// What a handler returns; boxed so that rows of one table can hold them.
pub type Reply = Pin<Box<dyn Future<Output = Result<Response, ApiError>> + Send>>;
pub type Handler = fn(Call) -> Reply;

/// What a caller must present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// Nothing: public or anonymous routes.
    None,
    /// A JWT access token or an API key (`Authorization: Bearer` or `X-API-Key`).
    TokenOrKey,
    /// A JWT access token only: an API key gets 403 (account routes such
    /// as logout are never a key's business: catalog K8).
    Session,
    /// As `TokenOrKey`, or else a single-use `?ticket=` (WebSocket upgrades
    /// from browsers, which cannot set headers).
    TokenKeyOrTicket,
}

/// Which budget a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Not limited (operations endpoints, debug routes).
    None,
    /// Per client IP (`X-Forwarded-For` only from trusted proxies):
    /// anonymous routes.
    ClientIp,
    /// Per user, by tier, for this endpoint group: all of a user's keys and
    /// tokens share one budget.
    User(Group),
}

/// How the route writes its refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errors {
    /// RFC 9457 problem documents (every route but one).
    Problem,
    /// RFC 6749 §5.2 (the OAuth2 token endpoint).
    OAuth,
    /// Problem documents with the Open Inference Protocol's `error` member
    /// (the `/v2/…` routes).
    Inference,
}

/// What `/openapi.json` says of a route. The statuses the shared steps add
/// (401, 403, 404, 406, 413, 415, 422, 429, …) are derived from the row in
/// `http::openapi`; `responses` lists what only the handler knows.
#[derive(Debug, Clone, Copy)]
pub struct Doc {
    pub operation_id: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    /// The request body the handler reads, if any.
    pub body: Option<Body>,
    /// Query parameters the handler reads: name and schema (in `http::openapi`).
    pub query: &'static [(&'static str, &'static str)],
    /// Operations whose one path parameter this route's success answer
    /// names (its `id`): OpenAPI links, which stateful clients follow.
    pub links: &'static [&'static str],
    /// Statuses the handler answers and the schema of each (empty: no body).
    /// A status may appear twice with two schemas (two media types).
    pub responses: &'static [(u16, &'static str)],
}

/// What a route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// The JSON API, described in `/openapi.json`.
    Api,
    /// A browser page or its assets (`/docs`): not API, so not in
    /// `/openapi.json`, and served whatever the browser accepts.
    Page,
}

/// A request body: its schema per media type (names in `http::openapi`),
/// and whether a request without one is refused.
#[derive(Debug, Clone, Copy)]
pub struct Body {
    /// As `application/json`.
    pub json: Option<&'static str>,
    /// As `application/x-www-form-urlencoded` (the OAuth2 password flow).
    pub form: Option<&'static str>,
    pub required: bool,
}

impl Body {
    /// A body the handler reads through `Call::optional_json`.
    const fn optional(self) -> Body {
        Body {
            required: false,
            ..self
        }
    }
}

const fn json(schema: &'static str) -> Body {
    Body {
        json: Some(schema),
        form: None,
        required: true,
    }
}

const fn form(schema: &'static str) -> Body {
    Body {
        json: None,
        form: Some(schema),
        required: true,
    }
}

/// Either; a form carries only strings, hence its own schema.
const fn json_or_form(json: &'static str, form: &'static str) -> Body {
    Body {
        json: Some(json),
        form: Some(form),
        required: true,
    }
}

impl Route {
    /// JSON API rows answer JSON; pages, `/metrics` (Prometheus text) and
    /// event streams do not.
    pub fn answers_json(&self) -> bool {
        self.surface == Surface::Api
            && !self.doc.responses.iter().any(|&(status, schema)| {
                status == 200 && ["PrometheusText", "EventStream"].contains(&schema)
            })
    }
}

pub struct Route {
    pub method: Method,
    /// `{name}` marks a path parameter; handlers read them in order.
    pub path: &'static str,
    pub credential: Credential,
    pub scope: Option<Scope>,
    pub limit: Limit,
    pub errors: Errors,
    pub handler: Handler,
    pub doc: Doc,
    pub surface: Surface,
}

/// A handler as a table entry.
macro_rules! handler {
    ($f:path) => {
        |call| Box::pin($f(call))
    };
}

/// A protected route: token or key, a scope (or none), the user's limit.
const fn caller(scope: Option<Scope>, group: Group) -> (Credential, Option<Scope>, Limit) {
    (Credential::TokenOrKey, scope, Limit::User(group))
}

macro_rules! route {
    (@body) => { None };
    (@body $body:expr) => { Some($body) };
    ($method:ident $path:literal, $access:expr, $errors:ident, $handler:path,
     $op:literal, $tag:literal, $summary:literal,
     $(body: $body:expr,)?
     $(query: [$($param:literal => $param_schema:literal),* $(,)?],)?
     $(links: [$($link:literal),* $(,)?],)?
     [$($status:literal => $schema:literal),* $(,)?]) => {{
        let (credential, scope, limit) = $access;
        Route {
            method: Method::$method,
            path: $path,
            credential,
            scope,
            limit,
            errors: Errors::$errors,
            handler: handler!($handler),
            doc: Doc {
                operation_id: $op,
                summary: $summary,
                tag: $tag,
                body: route!(@body $($body)?),
                query: &[$($(($param, $param_schema)),*)?],
                links: &[$($($link),*)?],
                responses: &[$(($status, $schema)),*],
            },
            surface: Surface::Api,
        }
    }};
}

/// A public browser page row (`Surface::Page`).
macro_rules! page {
    ($method:ident $path:literal, $handler:path, $op:literal, $summary:literal) => {
        Route {
            surface: Surface::Page,
            ..route!($method $path, PUBLIC, Problem, $handler, $op, "docs", $summary, [200 => ""])
        }
    };
}

const PUBLIC: (Credential, Option<Scope>, Limit) = (Credential::None, None, Limit::None);
const ANONYMOUS: (Credential, Option<Scope>, Limit) = (Credential::None, None, Limit::ClientIp);
const fn session(scope: Option<Scope>, group: Group) -> (Credential, Option<Scope>, Limit) {
    (Credential::Session, scope, Limit::User(group))
}

/// The public API, in the order `/openapi.json` lists it, and the `/docs`
/// page (`Surface::Page`, not listed).
pub static ROUTES: [Route; 37] = [
    route!(GET "/health", PUBLIC, Problem, ops::health,
        "health", "operations", "Liveness: the process is up and answering.",
        [200 => "Health"]),
    route!(GET "/ready", PUBLIC, Problem, ops::ready,
        "ready", "operations", "Readiness: the database (and Redis, when configured) answer.",
        [200 => "Ready", 503 => "Problem"]),
    route!(GET "/openapi.json", PUBLIC, Problem, ops::openapi,
        "openapi", "operations", "This OpenAPI 3.1 document.",
        [200 => "OpenApi"]),
    route!(GET "/metrics", (Credential::TokenOrKey, Some(Scope::MetricsRead), Limit::None), Problem, ops::metrics,
        "metrics", "operations", "Prometheus metrics (text exposition 0.0.4); scope metrics:read unless metrics.public = true.",
        [200 => "PrometheusText"]),
    page!(GET "/docs", docs::page,
        "docs", "The interactive API reference (Swagger UI), rendered from /openapi.json."),
    page!(GET "/docs/assets/{digest}/{name}", docs::asset,
        "docsAsset", "The reference page's embedded assets, by content digest."),
    route!(POST "/api/v1/auth/register", ANONYMOUS, Problem, identity::register,
        "register", "auth", "Create an account (role user, the default tier).",
        body: json("RegisterRequest"),
        links: ["adminGetUser", "adminUpdateUser"],
        [201 => "User", 403 => "Problem", 409 => "Problem"]),
    route!(POST "/api/v1/auth/login", ANONYMOUS, Problem, identity::login,
        "login", "auth", "Password login, JSON or OAuth2 form (username, password, optional scope). Returns a token pair.",
        body: json_or_form("LoginRequest", "LoginForm"),
        [200 => "TokenPair", 401 => "Problem"]),
    route!(POST "/api/v1/auth/token", ANONYMOUS, OAuth, identity::token,
        "token", "auth", "OAuth2 token endpoint (form): grant_type=password or refresh_token. Errors per RFC 6749 §5.2.",
        body: form("TokenRequest"),
        [200 => "TokenPair", 400 => "OAuthError", 401 => "OAuthError", 500 => "OAuthError"]),
    route!(POST "/api/v1/auth/refresh", ANONYMOUS, Problem, identity::refresh,
        "refresh", "auth", "Rotate a refresh token; reuse revokes the whole session.",
        body: json("RefreshRequest"),
        [200 => "TokenPair", 401 => "Problem"]),
    route!(POST "/api/v1/auth/logout", session(None, Group::Auth), Problem, identity::logout,
        "logout", "auth", "End the session of the presented access token, on every daemon (an API key gets 403).",
        [204 => ""]),
    route!(POST "/api/v1/auth/api-keys", caller(Some(Scope::KeysWrite), Group::Auth), Problem, keys::create,
        "createApiKey", "api-keys", "Create an API key (scope keys:write; never with a scope the presenting credential lacks). The key is shown once.",
        body: json("NewKeyRequest"),
        links: ["revokeApiKey", "rotateApiKey", "adminRevokeApiKey"],
        [201 => "CreatedKey", 409 => "Problem"]),
    route!(GET "/api/v1/auth/api-keys", caller(Some(Scope::KeysWrite), Group::Auth), Problem, keys::list,
        "listApiKeys", "api-keys", "The caller's API keys with usage; never the secret.",
        [200 => "KeyList"]),
    route!(DELETE "/api/v1/auth/api-keys/{id}", caller(Some(Scope::KeysWrite), Group::Auth), Problem, keys::revoke,
        "revokeApiKey", "api-keys", "Revoke one of the caller's keys (id or display prefix); refused everywhere within a second.",
        [204 => ""]),
    route!(POST "/api/v1/auth/api-keys/{id}/rotate", caller(Some(Scope::KeysWrite), Group::Auth), Problem, keys::rotate,
        "rotateApiKey", "api-keys", "Replace a key (same name and scopes); the old key works for grace_seconds (default 0).",
        body: json("RotateRequest").optional(),
        links: ["revokeApiKey", "rotateApiKey", "adminRevokeApiKey"],
        [201 => "CreatedKey", 409 => "Problem"]),
    route!(DELETE "/api/v1/admin/api-keys/{id}", caller(Some(Scope::Admin), Group::Admin), Problem, keys::admin_revoke,
        "adminRevokeApiKey", "admin", "Revoke any user's key (scope admin).",
        [204 => ""]),
    route!(POST "/api/v1/predict", caller(Some(Scope::PredictRead), Group::Predict), Problem, models::predict_v1,
        "predictV1", "predict", "Predict one input (scope predict:read).",
        body: json("PredictV1Request"),
        [200 => "PredictionV1", 404 => "Problem", 502 => "Problem", 503 => "Problem", 504 => "Problem"]),
    route!(POST "/api/v2/predict", caller(Some(Scope::PredictRead), Group::Predict), Problem, models::predict_v2,
        "predictV2", "predict", "Predict one input ({features}) or a batch ({instances}) with confidence, probabilities and an occlusion explanation (explain, default true).",
        body: json("PredictV2Request"),
        [200 => "PredictionV2", 404 => "Problem", 502 => "Problem", 503 => "Problem", 504 => "Problem"]),
    route!(POST "/api/v1/jobs", caller(Some(Scope::JobsWrite), Group::Jobs), Problem, jobs::submit,
        "submitJob", "jobs", "Submit a batch job (scope jobs:write): every instance validated as for /api/v2/predict, committed before the 202. Idempotency-Key: the same key and body within 24 h answer the same job (200).",
        body: json("NewJobRequest"),
        links: ["getJob", "getJobResults", "cancelJob"],
        [202 => "Job", 200 => "Job", 404 => "Problem", 413 => "Problem"]),
    route!(GET "/api/v1/jobs", caller(Some(Scope::JobsRead), Group::Jobs), Problem, jobs::list,
        "listJobs", "jobs", "The caller's jobs, newest first (scope jobs:read; ?user= needs scope admin).",
        query: ["status" => "JobStatus", "user" => "Username", "limit" => "PageLimit", "offset" => "PageOffset"],
        [200 => "JobList", 400 => "Problem", 404 => "Problem"]),
    route!(GET "/api/v1/jobs/{id}", caller(Some(Scope::JobsRead), Group::Jobs), Problem, jobs::show,
        "getJob", "jobs", "A job's status and progress (scope jobs:read); another user's job is 404.",
        [200 => "Job", 404 => "Problem"]),
    route!(GET "/api/v1/jobs/{id}/results", caller(Some(Scope::JobsRead), Group::Jobs), Problem, jobs::results,
        "getJobResults", "jobs", "A page of a job's results in input order, as far as its chunks have finished (scope jobs:read).",
        query: ["offset" => "PageOffset", "limit" => "PageLimit"],
        [200 => "JobResults", 404 => "Problem"]),
    route!(GET "/api/v1/jobs/{id}/events", caller(Some(Scope::JobsRead), Group::Jobs), Problem, jobs::events,
        "jobEvents", "jobs", "Server-Sent Events of one job (scope jobs:read): `event: job.queued|job.started|job.progress|job.succeeded|job.failed|job.cancelled`, `data: {type, job}`; progress at most every 500 ms; the stream ends after the terminal event.",
        [200 => "EventStream", 404 => "Problem"]),
    route!(POST "/api/v1/jobs/{id}/cancel", caller(Some(Scope::JobsWrite), Group::Jobs), Problem, jobs::cancel,
        "cancelJob", "jobs", "Cancel a queued or running job (scope jobs:write); a running one stops at its next chunk. A finished job is 409.",
        [200 => "Job", 404 => "Problem", 409 => "Problem"]),
    route!(POST "/api/v1/ws/tickets", caller(Some(Scope::JobsRead), Group::Jobs), Problem, ws::ticket,
        "createWsTicket", "jobs", "A single-use ticket that opens GET /api/v1/ws within 30 s as the caller (scope jobs:read), for browsers, which cannot send a credential header on a WebSocket upgrade.",
        [201 => "WsTicket"]),
    route!(GET "/api/v1/ws", (Credential::TokenKeyOrTicket, Some(Scope::JobsRead), Limit::User(Group::Jobs)), Problem, ws::socket,
        "jobSocket", "jobs", "WebSocket of the caller's job events (scope jobs:read; credential header or ?ticket=): `{type: job.queued|job.started|job.progress|job.succeeded|job.failed|job.cancelled, job}`, progress at most every 500 ms per job. Send `{\"type\":\"subscribe\",\"jobs\":[ids]}` to narrow them (answered `{type: subscribed, jobs}`; another user's job closes with 1008). Pings every websocket.ping_secs; closes with 1008 when the credential stops working, 1001 on shutdown. A browser Origin must be in cors.allowed_origins.",
        query: ["ticket" => "WsTicketParam"],
        [101 => "", 400 => "Problem", 426 => "Problem"]),
    route!(GET "/api/v1/models", caller(Some(Scope::ModelsRead), Group::Models), Problem, models::list,
        "listModels", "models", "The served models (scope models:read): name, version, digest, input size, labels, backend, status.",
        [200 => "ModelList"]),
    route!(GET "/api/v1/models/{name}", caller(Some(Scope::ModelsRead), Group::Models), Problem, models::show,
        "getModel", "models", "One model (scope models:read).",
        [200 => "Model"]),
    route!(GET "/v2/health/live", PUBLIC, Inference, oip::live,
        "oipLive", "inference-protocol", "Open Inference Protocol v2: the server is live.",
        [200 => "OipLive"]),
    route!(GET "/v2/health/ready", PUBLIC, Inference, oip::ready,
        "oipReady", "inference-protocol", "Open Inference Protocol v2: the server is ready (as /ready).",
        [200 => "OipReady", 503 => "Problem"]),
    route!(GET "/v2/models/{name}", caller(Some(Scope::ModelsRead), Group::Models), Inference, oip::metadata,
        "oipModelMetadata", "inference-protocol", "Open Inference Protocol v2: a model's metadata (scope models:read).",
        [200 => "OipModelMetadata"]),
    route!(GET "/v2/models/{name}/ready", caller(Some(Scope::ModelsRead), Group::Models), Inference, oip::model_ready,
        "oipModelReady", "inference-protocol", "Open Inference Protocol v2: whether a model is ready (scope models:read).",
        [200 => "OipModelReady", 503 => "Problem"]),
    route!(POST "/v2/models/{name}/infer", caller(Some(Scope::PredictRead), Group::Predict), Inference, oip::infer,
        "oipInfer", "inference-protocol", "Open Inference Protocol v2 inference (scope predict:read): JSON tensors, or Triton's binary tensor extension (a JSON header of Inference-Header-Content-Length bytes, then raw little-endian data; tritonclient's default). Outputs probabilities [n, labels] FP32 and label [n] BYTES; cached as /api/v2/predict is.",
        body: json("OipInferRequest"),
        [200 => "OipInferResponse", 502 => "Problem", 503 => "Problem", 504 => "Problem"]),
    route!(GET "/api/v1/users/me", caller(None, Group::Auth), Problem, identity::me,
        "me", "users", "The caller's account and the scopes of the presented credential.",
        [200 => "User"]),
    route!(GET "/api/v1/admin/users", caller(Some(Scope::Admin), Group::Admin), Problem, identity::admin_list,
        "adminListUsers", "admin", "List accounts (scope admin), oldest first.",
        query: ["limit" => "PageLimit", "offset" => "PageOffset"],
        [200 => "UserPage"]),
    route!(GET "/api/v1/admin/users/{id}", caller(Some(Scope::Admin), Group::Admin), Problem, identity::admin_get,
        "adminGetUser", "admin", "One account by id or username (scope admin).",
        [200 => "User"]),
    route!(PATCH "/api/v1/admin/users/{id}", caller(Some(Scope::Admin), Group::Admin), Problem, identity::admin_patch,
        "adminUpdateUser", "admin", "Change an account's role, tier or disabled flag (scope admin); not your own role or disabled flag.",
        body: json("UserPatch"),
        [200 => "User", 409 => "Problem"]),
];

/// Test-only routes, mounted when `debug.test_routes = true`; not in
/// `/openapi.json`.
pub static DEBUG_ROUTES: [Route; 3] = [
    route!(GET "/debug/sleep", PUBLIC, Problem, debug::sleep,
        "debugSleep", "debug", "Answers after `ms` milliseconds (tests graceful shutdown).",
        [200 => ""]),
    route!(GET "/debug/panic", PUBLIC, Problem, debug::panic,
        "debugPanic", "debug", "Panics inside a handler (tests the last-resort handler).",
        [500 => "Problem"]),
    route!(POST "/debug/echo", PUBLIC, Problem, debug::echo,
        "debugEcho", "debug", "Echoes a small JSON document (tests body handling).",
        body: json("Echo"),
        [200 => ""]),
];

/// Whether the test-only routes (`DEBUG_ROUTES`) are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebugRoutes {
    Absent,
    /// `debug.test_routes = true`; never in production.
    Mounted,
}

/// What a path and method select.
pub enum Match<'r> {
    /// The route, its index in `Router::routes` (its metrics slot), and the
    /// path's parameters.
    Found(&'r Route, usize, Vec<String>),
    /// The path exists, not with this method: 405 with `Allow`.
    WrongMethod,
    NotFound,
}

/// Who may read `/metrics` (`metrics.public`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsAccess {
    /// A credential with `metrics:read` (the table's row).
    Protected,
    /// Anyone: `PUBLIC_METRICS` replaces the row.
    Public,
}

/// `/metrics` when `metrics.public = true`: no credential.
pub static PUBLIC_METRICS: Route = route!(GET "/metrics", PUBLIC, Problem, ops::metrics,
    "metrics", "operations", "Prometheus metrics (text exposition 0.0.4).",
    [200 => ""]);

/// The table as this process serves it, indexed for dispatch: exact paths
/// by hash, templated paths by segment; and its traffic counters.
pub struct Router {
    routes: Vec<&'static Route>,
    exact: FastMap<&'static str, Vec<usize>>,
    templated: Vec<(usize, Vec<&'static str>)>,
    /// Requests by route, in `routes`' order (`Match::Found`'s index).
    pub traffic: HttpMetrics,
}

impl Router {
    pub fn new(debug_routes: DebugRoutes, metrics: MetricsAccess) -> Self {
        let debug: &'static [Route] = match debug_routes {
            DebugRoutes::Mounted => &DEBUG_ROUTES,
            DebugRoutes::Absent => &[],
        };
        let routes: Vec<&'static Route> = ROUTES
            .iter()
            .map(|route| match metrics {
                MetricsAccess::Public
                    if route.path == PUBLIC_METRICS.path
                        && route.method == PUBLIC_METRICS.method =>
                {
                    &PUBLIC_METRICS
                }
                _ => route,
            })
            .chain(debug)
            .collect();
        let mut exact: FastMap<&'static str, Vec<usize>> = FastMap::default();
        let mut templated = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            if route.path.contains('{') {
                templated.push((i, route.path.split('/').collect()));
            } else {
                exact.entry(route.path).or_default().push(i);
            }
        }
        Router {
            traffic: HttpMetrics::new(routes.iter().map(|r| r.path).collect()),
            routes,
            exact,
            templated,
        }
    }

    pub fn routes(&self) -> impl Iterator<Item = &'static Route> + '_ {
        self.routes.iter().copied()
    }

    /// The rows `/openapi.json` describes: all but the test-only
    /// `DEBUG_ROUTES`, as this process serves them.
    pub fn documented(&self) -> impl Iterator<Item = &'static Route> + '_ {
        self.routes()
            .filter(|r| !DEBUG_ROUTES.iter().any(|d| std::ptr::eq(d, *r)))
    }

    /// Whether `method` on `path` answers something other than JSON (a
    /// browser page, Prometheus text): then an `Accept` without JSON is no
    /// reason for 406.
    pub fn answers_other_than_json(&self, method: &Method, path: &str) -> bool {
        matches!(self.find(method, path), Match::Found(r, ..) if !r.answers_json())
    }

    /// Every templated route matching `path` (its index), with its parameters.
    fn templated_matches<'a>(
        &'a self,
        path: &'a str,
    ) -> impl Iterator<Item = (usize, Vec<String>)> + 'a {
        self.templated.iter().filter_map(move |(i, pattern)| {
            match_template(pattern, path).map(|params| (*i, params))
        })
    }

    /// The route for `method` on `path`; HEAD is served by the GET route.
    /// Allocates nothing for an exact path (the prediction routes).
    pub fn find(&self, method: &Method, path: &str) -> Match<'static> {
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        if let Some(found) = self.exact.get(path) {
            return found
                .iter()
                .find(|&&i| self.routes[i].method == method)
                .map_or(Match::WrongMethod, |&i| {
                    Match::Found(self.routes[i], i, Vec::new())
                });
        }
        let mut any = false;
        for (i, params) in self.templated_matches(path) {
            if self.routes[i].method == method {
                return Match::Found(self.routes[i], i, params);
            }
            any = true;
        }
        if any {
            Match::WrongMethod
        } else {
            Match::NotFound
        }
    }

    /// Methods allowed on `path`, for `Allow` and CORS preflights.
    pub fn allowed(&self, path: &str) -> Vec<&'static str> {
        let routes: Vec<&'static Route> = match self.exact.get(path) {
            Some(found) => found.iter().map(|&i| self.routes[i]).collect(),
            None => self
                .templated_matches(path)
                .map(|(i, _)| self.routes[i])
                .collect(),
        };
        routes.into_iter().map(|r| r.method.as_str()).collect()
    }
}

fn match_template(pattern: &[&str], path: &str) -> Option<Vec<String>> {
    let mut params = Vec::new();
    let mut segments = path.split('/');
    for expected in pattern {
        let segment = segments.next()?;
        if expected.starts_with('{') {
            if segment.is_empty() {
                return None;
            }
            params.push(percent_decode(segment)?);
        } else if *expected != segment {
            return None;
        }
    }
    segments.next().is_none().then_some(params)
}

/// A path segment's `%XX` escapes decoded; `None` when they are malformed
/// or not UTF-8 (the route then does not match: 404).
fn percent_decode(segment: &str) -> Option<String> {
    if !segment.contains('%') {
        return Some(segment.to_string());
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let pattern: Vec<&str> = "/api/v1/keys/{id}".split('/').collect();
        assert_eq!(
            match_template(&pattern, "/api/v1/keys/abc"),
            Some(vec!["abc".to_string()])
        );
        assert_eq!(
            match_template(&pattern, "/api/v1/keys/a%20b"),
            Some(vec!["a b".to_string()])
        );
        assert_eq!(match_template(&pattern, "/api/v1/keys/"), None);
        assert_eq!(match_template(&pattern, "/api/v1/keys/a/b"), None);
        assert_eq!(match_template(&pattern, "/api/v1/keys/%zz"), None);
        let router = Router::new(DebugRoutes::Absent, MetricsAccess::Protected);
        assert!(matches!(
            router.find(&Method::GET, "/health"),
            Match::Found(..)
        ));
        assert!(matches!(
            router.find(&Method::HEAD, "/health"),
            Match::Found(..)
        ));
        assert!(matches!(
            router.find(&Method::POST, "/health"),
            Match::WrongMethod
        ));
        assert!(matches!(
            router.find(&Method::GET, "/healthz"),
            Match::NotFound
        ));
        assert_eq!(router.allowed("/api/v1/admin/users/x"), ["GET", "PATCH"]);
    }

    /// The rows agree with themselves: one row per method and path, a
    /// credential wherever a user is limited or a scope is needed.
    #[test]
    fn rows_are_consistent() {
        let mut seen = std::collections::HashSet::new();
        for route in ROUTES.iter().chain(&DEBUG_ROUTES) {
            assert!(
                seen.insert((route.method.as_str(), route.path)),
                "two rows for {} {}",
                route.method,
                route.path
            );
            let protected = route.credential != Credential::None;
            // Operations routes (a scraper's `/metrics`) are never limited:
            // a scrape every 15 s would outrun a small tier's daily budget.
            assert_eq!(
                protected && route.doc.tag != "operations",
                matches!(route.limit, Limit::User(_)),
                "{}: users are limited exactly where a credential is taken, but on operations routes",
                route.path
            );
            assert!(
                protected || route.scope.is_none(),
                "{}: a scope needs a credential",
                route.path
            );
            // A browser's navigation and asset loads carry no credential.
            assert!(
                route.surface == Surface::Api || !protected,
                "{}: a page is public",
                route.path
            );
        }
    }
}
