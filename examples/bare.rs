//! The benchmark ceiling: a bare warp handler that parses the same JSON body
//! as `POST /api/v1/predict` and answers a fixed prediction. No auth, no
//! limits, no cache, no middleware, no model: what mlapi's request path is
//! compared against (SPEC 7).
//!
//! With `--spec-headers` it also sends the response headers SPEC makes every
//! mlapi prediction carry (security headers, request id, API version,
//! rate-limit and cache headers), as fixed strings: the ceiling for a server
//! that must put those bytes on the wire, whatever it does to compute them.
//!
//! Run: `cargo run --release --example bare -- 127.0.0.1:9000 [--spec-headers]`

use serde::Deserialize;
use warp::http::{HeaderName, HeaderValue};
use warp::Filter;

// The same allocator as the daemon, so the comparison is of request paths.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Deserialize)]
struct Request {
    features: Vec<f64>,
}

/// What `mlapi` adds to a cache hit, byte for byte the same length.
const SPEC_HEADERS: &[(&str, &str)] = &[
    ("x-cache", "HIT"),
    ("x-cache-tier", "local"),
    ("x-ratelimit-limit", "1000000000"),
    ("x-ratelimit-remaining", "999999999"),
    ("x-ratelimit-reset", "1795356102"),
    ("ratelimit-policy", "\"bench-minute\";q=1000000000;w=60"),
    ("ratelimit", "\"bench-minute\";r=999999999;t=1"),
    ("x-request-id", "deae515a-c2e4-4046-a679-2d94c84b37bd"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    (
        "permissions-policy",
        "accelerometer=(), camera=(), geolocation=(), microphone=(), payment=(), usb=()",
    ),
    ("cache-control", "no-store"),
    ("api-version", "1.0"),
];

fn main() {
    // The daemon's allocator setting too (`src/bin/mlapi.rs`): purge freed
    // pages at once (option 15, `mi_option_purge_delay`).
    // SAFETY: a plain integer option, set before any other thread exists.
    unsafe { libmimalloc_sys::mi_option_set(15, 0) };
    tokio::runtime::Runtime::new()
        .expect("tokio runtime")
        .block_on(serve());
}

async fn serve() {
    let mut args = std::env::args().skip(1);
    let addr: std::net::SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:9000".into())
        .parse()
        .expect("usage: bare IP:PORT [--spec-headers]");
    let spec_headers = args.next().as_deref() == Some("--spec-headers");
    let predict = warp::path!("api" / "v1" / "predict")
        .and(warp::post())
        .and(warp::body::content_length_limit(1 << 20))
        .and(warp::body::json())
        .map(move |r: Request| {
            let label = if r.features.iter().sum::<f64>() > 0.0 {
                "benign"
            } else {
                "malignant"
            };
            let reply = warp::reply::json(&serde_json::json!({
                "version": "1.0",
                "model": "demo",
                "model_version": "1.0.0",
                "prediction": label,
                "cached": true,
            }));
            let mut response = warp::Reply::into_response(reply);
            if spec_headers {
                let h = response.headers_mut();
                for (name, value) in SPEC_HEADERS {
                    h.insert(
                        HeaderName::from_static(name),
                        HeaderValue::from_static(value),
                    );
                }
            }
            response
        });
    warp::serve(predict).run(addr).await;
}
