//! The shared steps every request takes, in one place and one order:
//!
//! 1. request id, client address (behind trusted proxies), API version
//!    (400 unknown, 410 past its sunset), 406, trailing-slash 404, OPTIONS;
//! 2. the route table (`http::routes`): 404, or 405 with `Allow`;
//! 3. the row's credential (401; 403 for an API key on a session route);
//! 4. the row's scope (403, audited as `authz_fail` while the caller is
//!    within its limit: a refused scope is counted, so its audit rows are
//!    bounded by the caller's tier);
//! 5. the row's rate limit (429), before the body is read;
//! 6. the handler, which reads the body (415, 413, 400, 422) and answers;
//! 7. headers: rate limits, API version and deprecation, security, request
//!    id, CORS, `Cache-Control`; then one access-log line.
//!
//! It must stay cheap (no I/O but the audit row of a refused scope) and must
//! never log a query string, a header value other than the request id, or a
//! body.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use http::request::Parts;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use super::body::{self, Payload};
use super::limits;
use super::problem::{ApiError, Response};
use super::routes::{Credential, Errors, Limit, Match, Route, Router};
use crate::app::App;
use crate::config::ServerConfig;
use crate::core::error::Error;
use crate::core::groups::Group;
use crate::core::scopes::Scope;
use crate::core::time;
use crate::core::versions::{self, Lifecycle, Resolved};
use crate::identity::{self, Principal};
use crate::serving::ratelimit::Decision;
use crate::store::audit::Actor;

pub const REQUEST_ID: &str = "x-request-id";
const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static(REQUEST_ID);
const API_VERSION: HeaderName = HeaderName::from_static("api-version");
const ACCEPT_VERSION: HeaderName = HeaderName::from_static("accept-version");
const PERMISSIONS_POLICY: HeaderName = HeaderName::from_static("permissions-policy");
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

const ALLOW_HEADERS: &str = "Authorization, Content-Type, X-API-Key, X-Request-Id, API-Version, Accept-Version, Cache-Control";
const EXPOSE_HEADERS: &str = "X-Request-Id, API-Version, Retry-After, RateLimit, RateLimit-Policy, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Deprecation, Sunset, Link, X-Cache";

/// What every request on one connection shares. One per connection, so a
/// request clones a pointer only its own connection touches.
pub struct Conn {
    pub app: Arc<App>,
    pub router: Arc<Router>,
    pub peer: SocketAddr,
    /// What the connection's slow-loris guard watches (`http::conn`).
    pub activity: Arc<super::conn::Activity>,
}

/// Per-request facts handlers and audit rows read.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: Arc<str>,
    pub client_ip: IpAddr,
}

/// What a handler gets: the request, once its route's credential, scope
/// and limit have passed.
pub struct Call {
    conn: Arc<Conn>,
    pub ctx: RequestContext,
    principal: Option<Principal>,
    params: Vec<String>,
    pub parts: Parts,
    body: Option<Incoming>,
}

impl Call {
    pub fn app(&self) -> &Arc<App> {
        &self.conn.app
    }

    /// The route table this daemon serves, with its traffic counters.
    pub fn router(&self) -> &Router {
        &self.conn.router
    }

    /// The authenticated caller. Only routes that take a credential call it.
    pub fn caller(&self) -> &Principal {
        self.principal
            .as_ref()
            .expect("the route table gives this route a credential")
    }

    /// The `i`-th `{param}` of the route's path, percent-decoded.
    pub fn param(&self, i: usize) -> &str {
        &self.params[i]
    }

    /// Who to name in audit rows: the caller, or `anonymous`.
    pub fn actor(&self) -> Actor {
        match &self.principal {
            Some(p) => actor(p, &self.ctx),
            None => Actor {
                name: "anonymous".into(),
                client_ip: Some(self.ctx.client_ip.to_string()),
                request_id: Some(self.ctx.request_id.to_string()),
                api_key_id: None,
            },
        }
    }

    /// Takes the connection over for a protocol upgrade (the 101 this
    /// handler answers): `None` when the client cannot upgrade.
    pub fn upgrade(&mut self) -> Option<hyper::upgrade::OnUpgrade> {
        let on_upgrade = self
            .parts
            .extensions
            .remove::<hyper::upgrade::OnUpgrade>()?;
        self.conn.activity.upgrade();
        Some(on_upgrade)
    }

    fn take_body(&mut self) -> Incoming {
        self.body.take().expect("the body is read once")
    }

    fn limit(&self) -> u64 {
        self.conn.app.config.server.max_body_bytes
    }

    /// The JSON body (415, 413, 400, 422; see `http::body`).
    pub async fn json<T: DeserializeOwned>(&mut self) -> Result<T, ApiError> {
        let body = self.take_body();
        body::json(&self.parts.headers, body, self.limit()).await
    }

    /// The JSON body, or `T::default()` when there is none.
    pub async fn optional_json<T: DeserializeOwned + Default>(&mut self) -> Result<T, ApiError> {
        let body = self.take_body();
        body::optional_json(&self.parts.headers, body, self.limit()).await
    }

    pub async fn json_or_form(&mut self) -> Result<Payload, ApiError> {
        let body = self.take_body();
        body::json_or_form(&self.parts.headers, body, self.limit()).await
    }

    /// An Open Inference Protocol body and its JSON header's length.
    pub async fn inference_body(&mut self) -> Result<(bytes::Bytes, usize), ApiError> {
        let body = self.take_body();
        body::inference(&self.parts.headers, body, self.limit()).await
    }

    pub async fn form(&mut self) -> Result<bytes::Bytes, ApiError> {
        let body = self.take_body();
        body::form(&self.parts.headers, body, self.limit()).await
    }

    /// The query string decoded into `T`; 400 naming what is wrong.
    pub fn query<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_urlencoded::from_str(self.parts.uri.query().unwrap_or(""))
            .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))
    }
}

/// Serves one request: the steps in the module doc, in that order.
pub async fn handle(conn: Arc<Conn>, req: Request<Incoming>) -> Result<Response, Infallible> {
    let _in_flight = conn.activity.begin();
    let started = Instant::now();
    let app = &conn.app;
    let _foreground = app.traffic.begin();
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let request_id = request_id(&parts.headers);
    let origin = parts.headers.get(header::ORIGIN).cloned();
    let client = client_ip(&app.config.server, conn.peer.ip(), &parts.headers);
    let version = resolve_version(app, &path, &parts);
    let route_path: &str = match &version {
        Ok(Some(v)) => &v.route_path,
        _ => path.as_str(),
    };
    let lifecycle = match &version {
        Ok(Some(v)) => app.versions.lifecycle(v.version),
        _ => None,
    };
    let mut decision = None;
    let mut matched = None;
    let response = match (&client, &version) {
        (Err(e), _) | (_, Err(e)) => e.clone().into_response(),
        (Ok(_), Ok(Some(v)))
            if lifecycle
                .as_ref()
                .is_some_and(|l| l.sunset_at <= time::now()) =>
        {
            gone(v, lifecycle.as_ref().expect("checked")).into_response()
        }
        // Pages (HTML, CSS, images) and /metrics (text) do not answer JSON.
        (Ok(_), Ok(_))
            if !accepts_json(&parts.headers)
                && !conn.router.answers_other_than_json(&method, route_path) =>
        {
            ApiError::NotAcceptable.into_response()
        }
        // One spelling per resource: `/health/` is not `/health`.
        (Ok(_), Ok(_)) if path.len() > 1 && path.ends_with('/') => {
            ApiError::NotFound.into_response()
        }
        (Ok(_), Ok(_)) if method == Method::OPTIONS => {
            options(app, &conn.router, route_path, &parts.headers)
        }
        (Ok(client_ip), Ok(_)) => match conn.router.find(&method, route_path) {
            Match::NotFound => ApiError::NotFound.into_response(),
            Match::WrongMethod => ApiError::MethodNotAllowed.into_response(),
            Match::Found(route, index, params) => {
                matched = Some((index, route.path));
                let ctx = RequestContext {
                    request_id: Arc::clone(&request_id),
                    client_ip: *client_ip,
                };
                // Boxed: the handlers' futures are large, and an unboxed
                // one would be copied whole each time the futures around it
                // move. HEAD is answered as GET; hyper drops the body on the
                // wire and keeps Content-Length.
                let steps = Box::pin(run_route(
                    &conn,
                    route,
                    ctx,
                    params,
                    parts,
                    body,
                    &mut decision,
                ));
                match AssertUnwindSafe(steps).catch_unwind().await {
                    Ok(response) => response,
                    Err(_) => {
                        // The panic message went to stderr through the panic
                        // hook; the client gets nothing that could leak internals.
                        tracing::error!(request_id = %request_id, %method, path = %path, "handler panicked");
                        ApiError::Internal.into_response()
                    }
                }
            }
        },
    };
    let mut response = response;
    if let Some(decision) = &decision {
        limits::add_headers(response.headers_mut(), decision);
    }
    finish(
        app,
        &conn.router,
        route_path,
        &request_id,
        origin.as_ref(),
        &mut response,
    );
    let api_version = match &version {
        Ok(Some(v)) => {
            let h = response.headers_mut();
            h.insert(
                API_VERSION,
                HeaderValue::from_static(if v.version == 2 { "2.0" } else { "1.0" }),
            );
            if let Some(l) = lifecycle.as_ref().filter(|l| l.sunset_at > time::now()) {
                for (name, value) in versions::deprecation_headers(l, v) {
                    if let Ok(value) = HeaderValue::from_str(&value) {
                        h.insert(name, value);
                    }
                }
            }
            v.version
        }
        _ => 0,
    };
    let elapsed = started.elapsed();
    conn.router.traffic.record(
        matched.map(|(index, _)| index),
        &method,
        response.status(),
        api_version,
        elapsed,
    );
    if tracing::enabled!(target: "mlapi::access", tracing::Level::INFO) {
        tracing::info!(
            target: "mlapi::access",
            request_id = %request_id,
            client = %client.map_or(conn.peer.ip(), |ip| ip),
            method = %method,
            path = %path,
            route = matched.map_or("", |(_, template)| template),
            api_version,
            status = response.status().as_u16(),
            elapsed_us = elapsed.as_micros() as u64,
        );
    }
    Ok(response)
}

/// Steps 3–6 for a matched route.
async fn run_route(
    conn: &Arc<Conn>,
    route: &'static Route,
    ctx: RequestContext,
    params: Vec<String>,
    parts: Parts,
    body: Incoming,
    decision: &mut Option<Decision>,
) -> Response {
    let errors = route.errors;
    let result = async {
        let app = &conn.app;
        let principal = match route.credential {
            Credential::None => None,
            Credential::TokenOrKey => Some(authenticate(app, &parts.headers)?),
            Credential::Session => {
                let p = authenticate(app, &parts.headers)?;
                require_session(&p)?;
                Some(p)
            }
            Credential::TokenKeyOrTicket => Some(authenticate_or_redeem(app, &parts).await?),
        };
        let missing_scope = match (route.scope, &principal) {
            (Some(scope), Some(p)) if p.require(scope).is_err() => Some(scope),
            _ => None,
        };
        let made = match route.limit {
            Limit::None => None,
            Limit::ClientIp => Some(limits::anonymous(app, ctx.client_ip).await),
            Limit::User(group) => {
                let p = principal.as_ref().expect("rows_are_consistent");
                Some(limits::user(app, p, group).await)
            }
        };
        if let (Some(scope), Some(p)) = (missing_scope, &principal) {
            // 403 comes before 429, but the refused request is still counted:
            // its audit row is written only while the caller is within its
            // limit, so refusals cannot flood the store with writes. On an
            // unlimited route (`/metrics`) it counts against the caller's
            // auth budget.
            let made = match made {
                Some(made) => Some(made),
                None => Some(limits::user(app, p, Group::Auth).await),
            };
            let within = match made {
                Some(Ok(made)) => {
                    let within = made.allowed;
                    *decision = Some(made);
                    within
                }
                Some(Err(_)) | None => true,
            };
            if within {
                authorize(app, p, scope, &ctx).await?;
            }
            return Err(Error::MissingScope(scope).into());
        }
        if let Some(made) = made {
            let made = made.map_err(|e| errors_for(errors, e))?;
            let refusal = limits::refusal(&made);
            *decision = Some(made);
            if let Some(e) = refusal {
                return Err(errors_for(errors, e));
            }
        }
        let call = Call {
            conn: Arc::clone(conn),
            ctx,
            principal,
            params,
            parts,
            body: Some(body),
        };
        (route.handler)(call).await
    }
    .await;
    result.unwrap_or_else(|e| match errors {
        Errors::Inference => e.into_inference_response(),
        Errors::Problem | Errors::OAuth => e.into_response(),
    })
}

fn errors_for(errors: Errors, e: Error) -> ApiError {
    match errors {
        Errors::Problem | Errors::Inference => e.into(),
        Errors::OAuth => ApiError::oauth(e),
    }
}

/// The caller, from `X-API-Key: sk_live_…` or `Authorization: Bearer <JWT
/// or sk_live_ key>`; 401 otherwise. Credentials in the query string are
/// never accepted (RFC 6750 §2.3). An `X-API-Key` header that is empty or not
/// visible ASCII is refused, never skipped for the bearer token.
pub fn authenticate(app: &App, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let unreadable = |name: &str| ApiError::Unauthorized {
        presented: true,
        detail: format!("the {name} header is not visible ASCII"),
    };
    let key = match headers.get(X_API_KEY).map(HeaderValue::to_str) {
        Some(Err(_)) => return Err(unreadable("X-API-Key")),
        // Present is presented, even empty: never skipped for the bearer.
        Some(Ok(key)) => Some(key.trim()),
        None => None,
    };
    let authorization = match headers.get(header::AUTHORIZATION).map(HeaderValue::to_str) {
        Some(Err(_)) if key.is_none() => return Err(unreadable("Authorization")),
        Some(Ok(h)) => Some(h),
        _ => None,
    };
    let bearer = authorization
        .and_then(|h| h.split_once(' '))
        .and_then(|(scheme, token)| {
            (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
                .then(|| token.trim())
        });
    let principal = match (key, bearer) {
        // `X-API-Key` carries keys only, so its refusal speaks of a key.
        (Some(key), _) => app.identity.authenticate_key(key),
        (_, Some(token)) => app.identity.authenticate(token),
        _ => {
            return Err(ApiError::Unauthorized {
                presented: false,
                detail: "authentication required: send Authorization: Bearer <access token> or X-API-Key: <key>"
                    .into(),
            })
        }
    };
    principal.map_err(ApiError::from)
}

/// The header credential when one was sent, else the `?ticket=` (used up
/// by this request; see `identity::tickets`).
async fn authenticate_or_redeem(app: &Arc<App>, parts: &Parts) -> Result<Principal, ApiError> {
    let has_header =
        parts.headers.contains_key(X_API_KEY) || parts.headers.contains_key(header::AUTHORIZATION);
    let ticket =
        serde_urlencoded::from_str::<Vec<(String, String)>>(parts.uri.query().unwrap_or(""))
            .unwrap_or_default()
            .into_iter()
            .find_map(|(k, v)| (k == "ticket").then_some(v));
    match ticket {
        Some(ticket) if !has_header => {
            let app = Arc::clone(app);
            let standing =
                crate::store::blocking(move || app.identity.redeem_ticket(&ticket)).await?;
            Ok(standing.principal)
        }
        _ => authenticate(app, &parts.headers),
    }
}

/// Account routes (logout) need a user session: an API key is not an
/// account's password (catalog K8).
fn require_session(p: &Principal) -> Result<(), ApiError> {
    match p.credential {
        identity::Credential::Session { .. } => Ok(()),
        identity::Credential::ApiKey { .. } => Err(ApiError::Forbidden {
            detail: "this route needs a signed-in user (a bearer access token), not an API key"
                .into(),
            scope: None,
        }),
    }
}

/// Audits a refused scope (`authz_fail`) and returns the 403.
async fn authorize(
    app: &Arc<App>,
    p: &Principal,
    scope: Scope,
    ctx: &RequestContext,
) -> Result<(), ApiError> {
    Ok(app.identity.authorize(p, scope, &actor(p, ctx)).await?)
}

/// An authenticated caller as audit rows name it: the user, and the API key
/// when one was presented.
fn actor(p: &Principal, ctx: &RequestContext) -> Actor {
    Actor {
        name: p.user.username.clone(),
        client_ip: Some(ctx.client_ip.to_string()),
        request_id: Some(ctx.request_id.to_string()),
        api_key_id: match &p.credential {
            identity::Credential::ApiKey { key_id, .. } => Some(key_id.to_string()),
            identity::Credential::Session { .. } => None,
        },
    }
}

/// The version for an API path: the path's, else `API-Version` or
/// `Accept-Version`, else `?version=`, else the configured default.
fn resolve_version<'a>(
    app: &App,
    path: &'a str,
    parts: &Parts,
) -> Result<Option<Resolved<'a>>, ApiError> {
    let h = &parts.headers;
    let header = h
        .get(API_VERSION)
        .or_else(|| h.get(ACCEPT_VERSION))
        .map(|v| v.to_str().unwrap_or("?"));
    let query = parts
        .uri
        .query()
        .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("version=")));
    versions::resolve(path, header, query, app.config.api.default_version())
        .map_err(ApiError::BadRequest)
}

/// Every answer is JSON; a client that accepts none of it gets 406.
fn accepts_json(headers: &HeaderMap) -> bool {
    let mut ranges = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|r| r.split(';').next().unwrap_or("").trim())
        .filter(|r| !r.is_empty())
        .peekable();
    if ranges.peek().is_none() {
        return true;
    }
    ranges.any(|r| {
        [
            "*/*",
            "application/*",
            "application/json",
            "application/problem+json",
        ]
        .iter()
        .any(|ok| r.eq_ignore_ascii_case(ok))
            || r.len() >= 5 && r.as_bytes()[r.len() - 5..].eq_ignore_ascii_case(b"+json")
    })
}

/// 410 for a version past its sunset, naming the successor.
fn gone(v: &Resolved<'_>, l: &Lifecycle) -> ApiError {
    let date = time::rfc3339(l.sunset_at);
    let instead = match l.successor {
        Some(s) => format!("; use version {s}: /api/v{s}/{}", v.rest),
        None => String::new(),
    };
    ApiError::Gone(format!(
        "API version {} was retired on {date}{instead}",
        v.version
    ))
}

/// Echoes a client's request id when it is short and plain; otherwise mints one.
fn request_id(headers: &HeaderMap) -> Arc<str> {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(Arc::from)
        .unwrap_or_else(|| {
            let mut buf = uuid::Uuid::encode_buffer();
            Arc::from(&*uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf))
        })
}

/// The client address: the peer, unless the peer is a trusted proxy, in which
/// case the right-most `X-Forwarded-For` entry that is not itself a trusted
/// proxy. A malformed header from a trusted proxy is a 400 (it cannot be
/// believed, and ignoring it would attribute the traffic to the proxy).
pub fn client_ip(
    server: &ServerConfig,
    peer: IpAddr,
    headers: &HeaderMap,
) -> Result<IpAddr, ApiError> {
    if !server.is_trusted_proxy(peer) {
        return Ok(peer);
    }
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let value = value
            .to_str()
            .map_err(|_| ApiError::BadRequest("malformed X-Forwarded-For header".into()))?;
        for hop in value.split(',') {
            let ip = hop
                .trim()
                .parse::<IpAddr>()
                .map_err(|_| ApiError::BadRequest("malformed X-Forwarded-For header".into()))?;
            hops.push(ip);
        }
    }
    Ok(hops
        .iter()
        .rev()
        .find(|ip| !server.is_trusted_proxy(**ip))
        .or(hops.first())
        .copied()
        .unwrap_or(peer))
}

/// `OPTIONS`: a CORS preflight when the browser sends one, else the `Allow` list.
fn options(app: &App, router: &Router, path: &str, headers: &HeaderMap) -> Response {
    let methods = router.allowed(path);
    if methods.is_empty() {
        return ApiError::NotFound.into_response();
    }
    let preflight = headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let origin_allowed = headers
        .get(header::ORIGIN)
        .is_some_and(|o| origin_is_allowed(app, o));
    let mut response = Response::new(bytes::Bytes::new().into());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let h = response.headers_mut();
    let allow = allow_value(&methods);
    if preflight && origin_allowed {
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, allow.clone());
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    h.insert(header::ALLOW, allow);
    response
}

fn allow_value(methods: &[&str]) -> HeaderValue {
    let mut list: Vec<&str> = methods.to_vec();
    if list.contains(&"GET") {
        list.push("HEAD");
    }
    list.push("OPTIONS");
    HeaderValue::from_str(&list.join(", ")).expect("method names are valid header text")
}

pub fn origin_is_allowed(app: &App, origin: &HeaderValue) -> bool {
    let Some(cors) = app.cors() else {
        return false;
    };
    origin
        .to_str()
        .is_ok_and(|o| cors.allowed_origins.iter().any(|allowed| allowed == o))
}

/// Headers every response carries.
fn finish(
    app: &App,
    router: &Router,
    path: &str,
    request_id: &str,
    origin: Option<&HeaderValue>,
    response: &mut Response,
) {
    let status = response.status();
    let h = response.headers_mut();
    if status == StatusCode::METHOD_NOT_ALLOWED {
        h.insert(header::ALLOW, allow_value(&router.allowed(path)));
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(REQUEST_ID_HEADER, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // An API answer loads nothing; a page that does (`/docs`) sets its own.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    h.insert(
        PERMISSIONS_POLICY,
        HeaderValue::from_static(
            "accelerometer=(), camera=(), geolocation=(), microphone=(), payment=(), usb=()",
        ),
    );
    // API answers are per-caller; a handler that wants caching says so.
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if app.cors().is_some() {
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        if let Some(origin) = origin.filter(|o| origin_is_allowed(app, o)) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSE_HEADERS),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(proxies: &[&str]) -> ServerConfig {
        ServerConfig {
            trusted_proxies: proxies.iter().map(|p| p.parse().unwrap()).collect(),
            ..ServerConfig::default()
        }
    }

    fn xff(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", value.parse().unwrap());
        h
    }

    #[test]
    fn untrusted_peer_cannot_spoof() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let ip = client_ip(&server(&["10.0.0.0/8"]), peer, &xff("1.2.3.4")).unwrap();
        assert_eq!(ip, peer);
    }

    #[test]
    fn trusted_proxy_chain_is_walked_from_the_right() {
        let s = server(&["10.0.0.0/8"]);
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        // The left-most entry is whatever the client claimed; the proxy appended the real one.
        let ip = client_ip(&s, peer, &xff("6.6.6.6, 198.51.100.7, 10.0.0.2")).unwrap();
        assert_eq!(ip, "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(&s, peer, &HeaderMap::new()).unwrap(), peer);
        assert!(client_ip(&s, peer, &xff("not-an-ip")).is_err());
    }

    #[test]
    fn accept_ranges() {
        let accept = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, v.parse().unwrap());
            accepts_json(&h)
        };
        assert!(accepts_json(&HeaderMap::new()));
        for ok in [
            "*/*",
            "Application/JSON",
            "text/html, application/json;q=0.9",
            "application/vnd.x+JSON",
            "APPLICATION/*",
        ] {
            assert!(accept(ok), "{ok}");
        }
        for no in ["text/html", "application/xml", "json", "text/*"] {
            assert!(!accept(no), "{no}");
        }
    }

    #[test]
    fn request_ids() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, "abc-123".parse().unwrap());
        assert_eq!(&*request_id(&h), "abc-123");
        h.insert(REQUEST_ID, "bad id with spaces".parse().unwrap());
        assert_ne!(&*request_id(&h), "bad id with spaces");
        assert_eq!(request_id(&HeaderMap::new()).len(), 36);
    }
}
