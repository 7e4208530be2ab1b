//! The benchmark ceiling: a bare warp handler that parses the same JSON body
//! as `POST /api/v1/predict` and answers a fixed prediction. No auth, no
//! limits, no cache, no middleware, no model: what mlapi's request path is
//! compared against (SPEC 7).
//!
//! Run: `cargo run --release --example bare -- 127.0.0.1:9000`

use serde::Deserialize;
use warp::Filter;

#[derive(Deserialize)]
struct Request {
    features: Vec<f64>,
}

#[tokio::main]
async fn main() {
    let addr: std::net::SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".into())
        .parse()
        .expect("usage: bare IP:PORT");
    let predict = warp::path!("api" / "v1" / "predict")
        .and(warp::post())
        .and(warp::body::content_length_limit(1 << 20))
        .and(warp::body::json())
        .map(|r: Request| {
            let label = if r.features.iter().sum::<f64>() > 0.0 {
                "benign"
            } else {
                "malignant"
            };
            warp::reply::json(&serde_json::json!({
                "version": "1.0",
                "model": "demo",
                "model_version": "1.0.0",
                "prediction": label,
                "cached": true,
            }))
        });
    warp::serve(predict).run(addr).await;
}
