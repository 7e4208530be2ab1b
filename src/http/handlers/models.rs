//! Model routes: `POST /api/v1/predict`, `POST /api/v2/predict` (single or
//! batch, with explanations) and the model listing. Input parsing and
//! validation produce 422s naming each bad field; inference itself is
//! `models::Registry::predict`.

use std::sync::Arc;

use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::app::App;
use crate::core::error::FieldError;
use crate::http::pipeline::{Call, RequestContext};
use crate::http::problem::{json_response, json_text_response, ApiError, Response, JSON};
use crate::serving::cache::{CacheKey, Outcome, Read};
use crate::serving::models::{self, Explain, InferenceError, Model, Prediction};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct V1Request {
    features: Option<Box<RawValue>>,
    model: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct V2Request {
    features: Option<Box<RawValue>>,
    instances: Option<Box<RawValue>>,
    model: Option<String>,
    explain: Option<bool>,
}

pub async fn predict_v1(mut call: Call) -> Result<Response, ApiError> {
    let req: V1Request = call.json().await?;
    let read = read_mode(&call.parts.headers);
    v1(call.app(), &call.ctx, read, req).await
}

pub async fn predict_v2(mut call: Call) -> Result<Response, ApiError> {
    let req: V2Request = call.json().await?;
    let read = read_mode(&call.parts.headers);
    v2(call.app(), &call.ctx, read, req).await
}

pub async fn list(call: Call) -> Result<Response, ApiError> {
    Ok(json_response(
        StatusCode::OK,
        JSON,
        &json!({ "models": call.app().models().list() }),
    ))
}

pub async fn show(call: Call) -> Result<Response, ApiError> {
    let app = call.app();
    let name = call.param(0);
    let info = app
        .models()
        .info(name)
        .ok_or_else(|| unknown_model(app, name))?;
    Ok(json_response(StatusCode::OK, JSON, &info))
}

/// `Cache-Control: no-cache` on the request: answer from the model, not the
/// cache. An unreadable header is no directive.
pub(super) fn read_mode(headers: &HeaderMap) -> Read {
    let no_cache = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-cache"));
    if no_cache {
        Read::Bypass
    } else {
        Read::Cached
    }
}

/// Runs the model through the cache: the same model file, API version,
/// response shape and numbers give the stored answer. Only successful
/// answers are stored. Returns the body (with `cached`) and `X-Cache`.
async fn cached<F, Fut>(
    app: &Arc<App>,
    model: &Model,
    key: CacheKey,
    read: Read,
    compute: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Value, ApiError>>,
{
    let ttl = std::time::Duration::from_secs(model.cache_ttl_secs);
    let (answer, outcome) = app.cache.get_or_compute(&key, ttl, read, compute).await?;
    let body = with_cached(answer.json(), &outcome);
    let mut response = json_text_response(StatusCode::OK, JSON, body);
    cache_headers(&mut response, &outcome);
    Ok(response)
}

/// `X-Cache` (and `X-Cache-Tier` on a hit).
pub(super) fn cache_headers(response: &mut Response, outcome: &Outcome) {
    let h = response.headers_mut();
    const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
    const X_CACHE_TIER: HeaderName = HeaderName::from_static("x-cache-tier");
    h.insert(X_CACHE, HeaderValue::from_static(outcome.header_value()));
    if let Outcome::Hit(tier) = outcome {
        h.insert(X_CACHE_TIER, HeaderValue::from_static(tier.as_str()));
    }
}

/// The stored answer with `"cached"` as its first member, spliced into the
/// JSON text: no parsing or re-encoding on a hit. Answers are JSON objects
/// (the cache refuses anything else from Redis) without a `cached` member.
fn with_cached(answer: &[u8], outcome: &Outcome) -> Vec<u8> {
    let member: &[u8] = if matches!(outcome, Outcome::Hit(_)) {
        br#"{"cached":true"#
    } else {
        br#"{"cached":false"#
    };
    let rest = &answer[1..];
    let mut body = Vec::with_capacity(member.len() + 1 + rest.len());
    body.extend_from_slice(member);
    if rest.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'}') {
        body.push(b',');
    }
    body.extend_from_slice(rest);
    body
}

fn unknown_model(app: &App, name: &str) -> ApiError {
    let names: Vec<String> = app.models().list().into_iter().map(|m| m.name).collect();
    ApiError::NotFound404(format!(
        "no model named {name:?}; models: {}",
        names.join(", ")
    ))
}

pub(super) fn model(app: &App, name: Option<&str>) -> Result<Arc<Model>, ApiError> {
    match name {
        None => Ok(app.models().default_model()),
        Some(name) => model_named(app, name),
    }
}

/// The model by name; 404 listing the served ones.
pub(super) fn model_named(app: &App, name: &str) -> Result<Arc<Model>, ApiError> {
    app.models()
        .get(name)
        .ok_or_else(|| unknown_model(app, name))
}

/// Parses one input row from raw JSON, recording each bad element by index.
/// Numbers are parsed from their text, so `1e400` becomes infinity (and is
/// refused as not finite) instead of failing the whole document.
pub(super) fn parse_row(
    field: &str,
    raw: &RawValue,
    expected: usize,
    errors: &mut Vec<FieldError>,
) -> Option<Vec<f64>> {
    // The usual case in one pass: exactly `expected` numbers. serde_json's
    // `float_roundtrip` feature makes it round each number exactly as
    // `str::parse` does below, so both paths give the same values (and the
    // same cache keys). Anything else takes the careful path for its errors.
    if let Ok(values) = serde_json::from_str::<Vec<f64>>(raw.get()) {
        if values.len() == expected && expected > 0 {
            return Some(values);
        }
    }
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
        errors.push(FieldError::new(field, "must be an array of numbers"));
        return None;
    };
    if items.is_empty() {
        errors.push(FieldError::new(field, "must not be empty"));
        return None;
    }
    // The length first: a long array of junk gets one error, not one per element.
    if items.len() != expected {
        errors.push(FieldError::new(
            field,
            format!("expected {expected} values, got {}", items.len()),
        ));
        return None;
    }
    let before = errors.len();
    let values: Vec<f64> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let text = item.get().trim();
            let is_number = text.starts_with(|c: char| c == '-' || c.is_ascii_digit());
            match text.parse::<f64>() {
                Ok(v) if is_number => v,
                _ => {
                    let kind = match text.chars().next() {
                        Some('"') => "a string",
                        Some('n') => "null",
                        Some('t' | 'f') => "a boolean",
                        Some('[') => "an array",
                        Some('{') => "an object",
                        _ => "not a number",
                    };
                    errors.push(FieldError::new(
                        &format!("{field}[{i}]"),
                        format!("must be a number, got {kind}"),
                    ));
                    f64::NAN
                }
            }
        })
        .collect();
    (errors.len() == before).then_some(values)
}

/// Most field errors reported for one request.
const MAX_ERRORS: usize = 20;

/// Logs a refused input (OWASP vocabulary) without its values.
pub(super) fn refuse(ctx: &RequestContext, mut errors: Vec<FieldError>) -> ApiError {
    if errors.len() > MAX_ERRORS {
        let more = errors.len() - MAX_ERRORS;
        errors.truncate(MAX_ERRORS);
        errors.push(FieldError::new("", format!("… and {more} more")));
    }
    tracing::info!(
        target: "mlapi::security",
        event = "input_validation_fail",
        request_id = %ctx.request_id,
        fields = %errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>().join(","),
    );
    ApiError::Validation(errors)
}

pub(super) async fn run(
    app: &Arc<App>,
    model: Arc<Model>,
    rows: Vec<Vec<f32>>,
    explain: Explain,
) -> Result<Vec<Prediction>, ApiError> {
    app.models()
        .predict(model, rows, explain)
        .await
        .map_err(|e| match e {
            InferenceError::Timeout(_) => ApiError::GatewayTimeout(e.to_string()),
            InferenceError::Busy => ApiError::Unavailable {
                detail: e.to_string(),
                retry_after_secs: 1,
                extra: Default::default(),
            },
            InferenceError::Rejected(detail) | InferenceError::BadGateway(detail) => {
                ApiError::BadGateway(detail)
            }
            InferenceError::Unavailable {
                detail,
                retry_after_secs,
            } => ApiError::Unavailable {
                detail,
                retry_after_secs,
                extra: Default::default(),
            },
            InferenceError::Failed(message) => {
                tracing::error!(error = %message, "inference failed");
                ApiError::Internal
            }
        })
}

async fn v1(
    app: &Arc<App>,
    ctx: &RequestContext,
    read: Read,
    req: V1Request,
) -> Result<Response, ApiError> {
    let model = model(app, req.model.as_deref())?;
    let mut errors = Vec::new();
    let values = match &req.features {
        None => {
            errors.push(FieldError::new("features", "required"));
            None
        }
        Some(raw) => parse_row("features", raw, model.input_size, &mut errors),
    };
    let row = values
        .as_ref()
        .and_then(|v| model.check_row("features", v, &mut errors));
    let (Some(values), Some(row)) = (values, row.filter(|_| errors.is_empty())) else {
        return Err(refuse(ctx, errors));
    };
    let key = CacheKey::new(&model.name, &model.answer_id, 1, "v1", &[values]);
    cached(app, &model, key, read, || async {
        let prediction = run(app, Arc::clone(&model), vec![row], Explain::No)
            .await?
            .remove(0);
        Ok(models::v1_answer(&model, &prediction))
    })
    .await
}

async fn v2(
    app: &Arc<App>,
    ctx: &RequestContext,
    read: Read,
    req: V2Request,
) -> Result<Response, ApiError> {
    let model = model(app, req.model.as_deref())?;
    let explain = req.explain.unwrap_or(true);
    let mut errors = Vec::new();
    // The numbers as sent (the cache key) and as the model takes them.
    let mut values: Vec<Vec<f64>> = Vec::new();
    let (rows, batch) = match (&req.features, &req.instances) {
        (Some(raw), None) => {
            let row = parse_row("features", raw, model.input_size, &mut errors).and_then(|v| {
                let row = model.check_row("features", &v, &mut errors);
                values.push(v);
                row
            });
            (row.into_iter().collect::<Vec<_>>(), false)
        }
        (None, Some(raw)) => {
            let max = app.models().max_batch;
            let mut rows = Vec::new();
            match serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
                Err(_) => errors.push(FieldError::new(
                    "instances",
                    "must be an array of arrays of numbers",
                )),
                Ok(items) if items.is_empty() => {
                    errors.push(FieldError::new("instances", "must not be empty"))
                }
                Ok(items) if items.len() > max => errors.push(FieldError::new(
                    "instances",
                    format!("at most {max} instances per request, got {}", items.len()),
                )),
                Ok(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let field = format!("instances[{i}]");
                        if let Some(row) = parse_row(&field, item, model.input_size, &mut errors)
                            .and_then(|v| {
                                let row = model.check_row(&field, &v, &mut errors);
                                values.push(v);
                                row
                            })
                        {
                            rows.push(row);
                        }
                    }
                }
            }
            (rows, true)
        }
        (Some(_), Some(_)) => {
            errors.push(FieldError::new(
                "instances",
                "send either features or instances, not both",
            ));
            (Vec::new(), false)
        }
        (None, None) => {
            errors.push(FieldError::new(
                "features",
                "required (or instances for a batch)",
            ));
            (Vec::new(), false)
        }
    };
    if !errors.is_empty() {
        return Err(refuse(ctx, errors));
    }
    let variant = match (batch, explain) {
        (false, false) => "v2",
        (false, true) => "v2-explain",
        (true, false) => "v2-batch",
        (true, true) => "v2-batch-explain",
    };
    let key = CacheKey::new(&model.name, &model.answer_id, 2, variant, &values);
    cached(app, &model, key, read, || async {
        let explain = if explain {
            Explain::Occlusion
        } else {
            Explain::No
        };
        let predictions = run(app, Arc::clone(&model), rows, explain).await?;
        if !batch {
            return Ok(models::v2_single_answer(&model, &predictions[0]));
        }
        Ok(json!({
            "version": "2.0",
            "model": model.name,
            "model_version": model.version,
            "predictions": predictions,
        }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::{parse_row, with_cached};
    use crate::serving::cache::{Outcome, Tier};
    use serde_json::value::RawValue;
    use serde_json::{json, Value};

    #[test]
    fn rows_parse_exactly_like_str_parse() {
        // Hard cases for float parsing: halfway points, subnormals, the
        // largest finite value, more digits than an f64 holds.
        let texts = [
            "0.1",
            "0.10000000000000002",
            "1.00",
            "-0.0",
            "9007199254740993",
            "2.2250738585072011e-308",
            "4.9406564584124654e-324",
            "1.7976931348623157e308",
            "123456789012345678901234567890e-10",
            "0.30000000000000004441",
        ];
        let raw = format!("[{}]", texts.join(","));
        let raw = RawValue::from_string(raw).unwrap();
        let mut errors = Vec::new();
        let values = parse_row("features", &raw, texts.len(), &mut errors).unwrap();
        assert!(errors.is_empty());
        for (text, v) in texts.iter().zip(&values) {
            assert_eq!(
                v.to_bits(),
                text.parse::<f64>().unwrap().to_bits(),
                "{text}"
            );
        }
        // Out of range: infinity (refused later as not finite), not a parse error.
        let raw = RawValue::from_string("[1e400, 1]".into()).unwrap();
        let values = parse_row("features", &raw, 2, &mut errors).unwrap();
        assert!(values[0].is_infinite() && errors.is_empty());
        // The wrong count is one error, whichever path sees it.
        assert!(parse_row("features", &raw, 3, &mut errors).is_none());
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn cached_is_spliced_in_front_of_the_stored_answer() {
        let parsed = |answer: &str, cached| -> Value {
            let outcome = if cached {
                Outcome::Hit(Tier::Local)
            } else {
                Outcome::Miss
            };
            serde_json::from_slice(&with_cached(answer.as_bytes(), &outcome)).unwrap()
        };
        assert_eq!(
            parsed(r#"{"model":"demo","prediction":"benign"}"#, true),
            json!({"cached": true, "model": "demo", "prediction": "benign"})
        );
        assert_eq!(parsed("{}", false), json!({"cached": false}));
        assert_eq!(parsed("{ }", true), json!({"cached": true}));
        assert_eq!(
            with_cached(br#"{"a":1}"#, &Outcome::Miss),
            br#"{"cached":false,"a":1}"#
        );
    }
}
