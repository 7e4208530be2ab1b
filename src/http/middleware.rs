//! What happens around every request, whatever the route: request ids, the
//! client address behind trusted proxies, CORS, security headers, the
//! last-resort panic handler and the access log.
//!
//! It must stay cheap (no I/O) and must never log a query string, a header
//! value other than the request id, or a body.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::Either;
use futures_util::FutureExt;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use warp::hyper::service::Service;
use warp::hyper::{Body, Request};

use super::problem::{ApiError, Response};
use crate::app::App;
use crate::config::ServerConfig;
use crate::versioning::{self, Lifecycle, Resolved};

pub const REQUEST_ID: &str = "x-request-id";
const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static(REQUEST_ID);
const API_VERSION: HeaderName = HeaderName::from_static("api-version");
const ACCEPT_VERSION: HeaderName = HeaderName::from_static("accept-version");
const PERMISSIONS_POLICY: HeaderName = HeaderName::from_static("permissions-policy");

/// Per-request facts handlers may read with `warp::ext::get::<RequestContext>()`.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Shared: handlers, logs and the response header all read it.
    pub request_id: Arc<str>,
    pub client_ip: IpAddr,
    /// The rate-limit decision, if the route is limited; rendered as headers
    /// on the response, whatever its status.
    pub limits: super::limits::Slot,
}

const ALLOW_HEADERS: &str = "Authorization, Content-Type, X-API-Key, X-Request-Id, API-Version, Accept-Version, Cache-Control";
const EXPOSE_HEADERS: &str = "X-Request-Id, API-Version, Retry-After, RateLimit, RateLimit-Policy, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Deprecation, Sunset, Link, X-Cache";

/// What every request on one connection shares.
pub struct Connection {
    pub app: Arc<App>,
    /// The warp routes, for everything but the prediction routes.
    pub routes: BoxedFilter<(Response,)>,
    pub peer: SocketAddr,
    /// What the connection's slow-loris guard watches (`http::conn`).
    pub activity: Arc<super::conn::Activity>,
}

/// Serves one request through the warp routes with everything above.
pub async fn handle(conn: Arc<Connection>, mut req: Request<Body>) -> Result<Response, Infallible> {
    let (app, peer) = (&conn.app, conn.peer);
    let _in_flight = conn.activity.begin();
    // Clock reads only when the access log is on (`log.level = "info"`).
    let started =
        tracing::enabled!(target: "mlapi::access", tracing::Level::INFO).then(Instant::now);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let request_id = request_id(req.headers());
    let origin = req.headers().get(header::ORIGIN).cloned();

    let client = client_ip(&app.config.server, peer.ip(), req.headers());
    // The API version: resolved once, here, for every route (see `versioning`).
    let version = resolve_version(app, &path, &req);
    let route_path: &str = match &version {
        Ok(Some(v)) => &v.route_path,
        _ => path.as_str(),
    };
    let lifecycle = match &version {
        Ok(Some(v)) => app.directory.api_version(v.version),
        _ => None,
    };
    let limits = super::limits::Slot::default();
    let response = match (&client, &version) {
        (Err(e), _) => e.clone().into_response(),
        (_, Err(e)) => e.clone().into_response(),
        (Ok(_), Ok(Some(v)))
            if lifecycle
                .as_ref()
                .is_some_and(|l| l.sunset_at <= crate::store::now()) =>
        {
            gone(v, lifecycle.as_ref().expect("checked")).into_response()
        }
        (Ok(client_ip), Ok(_)) => {
            let client_ip = *client_ip;
            if !accepts_json(req.headers()) {
                ApiError::NotAcceptable.into_response()
            } else if path.len() > 1 && path.ends_with('/') {
                // One spelling per resource: `/health/` is not `/health`.
                ApiError::NotFound.into_response()
            } else if method == Method::OPTIONS {
                options(app, route_path, req.headers())
            } else {
                // HEAD is GET without the body (RFC 9110 §9.3.2); hyper drops
                // the body on the wire and keeps Content-Length.
                if method == Method::HEAD {
                    *req.method_mut() = Method::GET;
                }
                if route_path != path {
                    rewrite_path(&mut req, route_path);
                }
                let ctx = RequestContext {
                    request_id: Arc::clone(&request_id),
                    client_ip,
                    limits: Arc::clone(&limits),
                };
                // Boxed: the handlers' futures are large, and an unboxed one
                // is copied whole each time the futures around it move.
                let routed = match super::predict::prediction_route(route_path) {
                    Some(major) => {
                        let ctx = &ctx;
                        Either::Left(Box::pin(async move {
                            Ok(super::predict::serve(app, ctx, req, major).await)
                        }))
                    }
                    None => {
                        req.extensions_mut().insert(ctx.clone());
                        Either::Right(Box::pin(warp::service(conn.routes.clone()).call(req)))
                    }
                };
                match AssertUnwindSafe(routed).catch_unwind().await {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => {
                        // The panic message went to stderr through the panic hook;
                        // the client gets nothing that could leak internals.
                        tracing::error!(request_id = %request_id, %method, path = %path, "handler panicked");
                        ApiError::Internal.into_response()
                    }
                }
            }
        }
    };
    let mut response = response;
    if let Some(decision) = limits.get() {
        super::limits::add_headers(response.headers_mut(), decision);
    }
    finish(app, route_path, &request_id, origin.as_ref(), &mut response);
    let api_version = match &version {
        Ok(Some(v)) => {
            let h = response.headers_mut();
            h.insert(
                API_VERSION,
                HeaderValue::from_static(if v.version == 2 { "2.0" } else { "1.0" }),
            );
            if let Some(l) = lifecycle
                .as_ref()
                .filter(|l| l.sunset_at > crate::store::now())
            {
                for (name, value) in versioning::deprecation_headers(l, v) {
                    if let Ok(value) = HeaderValue::from_str(&value) {
                        h.insert(name, value);
                    }
                }
            }
            v.version
        }
        _ => 0,
    };

    if let Some(started) = started {
        tracing::info!(
            target: "mlapi::access",
            request_id = %request_id,
            client = %client.map_or(peer.ip(), |ip| ip),
            method = %method,
            path = %path,
            api_version,
            status = response.status().as_u16(),
            elapsed_us = started.elapsed().as_micros() as u64,
        );
    }
    Ok(response)
}

/// The version for an API path: the path's, else `API-Version` or
/// `Accept-Version`, else `?version=`, else the configured default.
fn resolve_version<'a>(
    app: &App,
    path: &'a str,
    req: &Request<Body>,
) -> Result<Option<Resolved<'a>>, ApiError> {
    let h = req.headers();
    let header = h
        .get(API_VERSION)
        .or_else(|| h.get(ACCEPT_VERSION))
        .map(|v| v.to_str().unwrap_or("?"));
    let query = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("version=")));
    versioning::resolve(path, header, query, app.config.api.default_version())
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

fn rewrite_path(req: &mut Request<Body>, route_path: &str) {
    let target = match req.uri().query() {
        Some(q) => format!("{route_path}?{q}"),
        None => route_path.to_string(),
    };
    if let Ok(uri) = target.parse() {
        *req.uri_mut() = uri;
    }
}

/// 410 for a version past its sunset, naming the successor.
fn gone(v: &Resolved<'_>, l: &Lifecycle) -> ApiError {
    let date = crate::keys::format_time(l.sunset_at);
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
fn options(app: &App, path: &str, headers: &HeaderMap) -> Response {
    let methods = super::allowed_methods(app, path);
    if methods.is_empty() {
        return ApiError::NotFound.into_response();
    }
    let preflight = headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let origin_allowed = headers
        .get(header::ORIGIN)
        .is_some_and(|o| origin_is_allowed(app, o));
    let mut response = Response::new(Body::empty());
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

fn origin_is_allowed(app: &App, origin: &HeaderValue) -> bool {
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
    path: &str,
    request_id: &str,
    origin: Option<&HeaderValue>,
    response: &mut Response,
) {
    let status = response.status();
    let h = response.headers_mut();
    if status == StatusCode::METHOD_NOT_ALLOWED {
        h.insert(
            header::ALLOW,
            allow_value(&super::allowed_methods(app, path)),
        );
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
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
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
