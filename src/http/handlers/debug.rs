//! Test-only routes (`debug.test_routes = true`): a slow answer, a panic,
//! a JSON echo.

use std::time::Duration;

use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::http::pipeline::Call;
use crate::http::problem::{json_response, ApiError, Response, JSON};

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

pub async fn sleep(call: Call) -> Result<Response, ApiError> {
    let q: SleepQuery = call.query()?;
    let ms = q.ms.min(60_000);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(json_response(
        StatusCode::OK,
        JSON,
        &json!({"slept_ms": ms}),
    ))
}

pub async fn panic(_call: Call) -> Result<Response, ApiError> {
    panic!("debug panic route")
}

pub async fn echo(mut call: Call) -> Result<Response, ApiError> {
    let echo: Echo = call.json().await?;
    Ok(json_response(StatusCode::OK, JSON, &echo))
}
