//! The Open Inference Protocol v2 (KServe and Triton's REST API) for every
//! model: server liveness and readiness, model metadata and readiness, and
//! `infer` with JSON tensors or Triton's binary tensor extension (what
//! tritonclient sends by default). Inference goes through the same validation,
//! cache and bounded pool as `/api/v2/predict`; errors are problem
//! documents with the protocol's `error` member (`Errors::Inference`).

use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::models::{model_named, refuse, run};
use crate::core::error::FieldError;
use crate::http::pipeline::Call;
use crate::http::problem::{json_response, ApiError, Response, JSON};
use crate::serving::cache::CacheKey;
use crate::serving::models::{Explain, Model};

/// The one input tensor a model takes, and the outputs it answers with.
const INPUT: &str = "input";
const PROBABILITIES: &str = "probabilities";
const LABEL: &str = "label";

pub async fn live(_call: Call) -> Result<Response, ApiError> {
    Ok(json_response(StatusCode::OK, JSON, &json!({"live": true})))
}

/// Ready when `/ready` is: the database answers and the models are loaded.
pub async fn ready(call: Call) -> Result<Response, ApiError> {
    let checks = call.app().readiness().await;
    if checks.iter().all(|c| c.ok) {
        return Ok(json_response(StatusCode::OK, JSON, &json!({"ready": true})));
    }
    Err(super::ops::not_ready(&checks, Default::default()))
}

pub async fn metadata(call: Call) -> Result<Response, ApiError> {
    let model = model_named(call.app(), call.param(0))?;
    Ok(json_response(
        StatusCode::OK,
        JSON,
        &json!({
            "name": model.name,
            "versions": [model.version],
            "platform": if model.upstream_servers().is_some() { "oip-upstream" } else { "onnx" },
            "inputs": [{"name": INPUT, "datatype": "FP32", "shape": [-1, model.input_size]}],
            "outputs": [
                {"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, model.labels.len()]},
                {"name": LABEL, "datatype": "BYTES", "shape": [-1]},
            ],
        }),
    ))
}

/// A loaded model is ready (a reload that fails keeps the old one
/// serving), unless it is an upstream model with no usable endpoint: then
/// 503, since clients (tritonclient's `is_model_ready`) read the status.
pub async fn model_ready(call: Call) -> Result<Response, ApiError> {
    let model = model_named(call.app(), call.param(0))?;
    if let Some(upstream) = model.upstream_servers() {
        if upstream.usable_count().0 == 0 {
            return Err(ApiError::Unavailable {
                detail: format!(
                    "model {:?} is not ready: none of its upstream endpoints is usable",
                    model.name
                ),
                retry_after_secs: 5,
                extra: Default::default(),
            });
        }
    }
    Ok(json_response(
        StatusCode::OK,
        JSON,
        &json!({"name": model.name, "ready": true}),
    ))
}

type Parameters = Option<serde_json::Map<String, Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InferRequest {
    id: Option<String>,
    inputs: Vec<InputTensor>,
    outputs: Option<Vec<RequestedOutput>>,
    /// `binary_data_output: true`: every output in binary (tritonclient
    /// asks so when it names no outputs).
    #[serde(default)]
    parameters: Parameters,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    /// Absent when the tensor travels in binary (`binary_data_size`).
    data: Option<Value>,
    #[serde(default)]
    parameters: Parameters,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestedOutput {
    name: String,
    /// `binary_data: true`: this output in binary.
    #[serde(default)]
    parameters: Parameters,
}

fn flag(parameters: &Parameters, name: &str) -> bool {
    parameters
        .as_ref()
        .and_then(|p| p.get(name))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

pub async fn infer(mut call: Call) -> Result<Response, ApiError> {
    let (bytes, header_length) = call.inference_body().await?;
    let (header, binary) = bytes.split_at(header_length);
    let req: InferRequest = crate::http::body::decode(header)?;
    let app = Arc::clone(call.app());
    let model = model_named(&app, call.param(0))?;
    let mut errors = Vec::new();
    let values = rows(&model, &req, binary, app.models().max_batch, &mut errors);
    let wanted = outputs(&req, &mut errors);
    if !errors.is_empty() {
        return Err(refuse(&call.ctx, errors));
    }
    let rows: Vec<Vec<f32>> = values
        .iter()
        .map(|v| v.iter().map(|&x| x as f32).collect())
        .collect();
    let key = CacheKey::new(&model.name, &model.answer_id, 2, "oip", &values);
    let ttl = std::time::Duration::from_secs(model.cache_ttl_secs);
    let read = super::models::read_mode(&call.parts.headers);
    let (answer, outcome) = app
        .cache
        .get_or_compute(&key, ttl, read, || async {
            let predictions = run(&app, Arc::clone(&model), rows, Explain::No).await?;
            let n = predictions.len();
            let probabilities: Vec<f64> = predictions
                .iter()
                .flat_map(|p| model.labels.iter().map(|l| p.probabilities[l]))
                .collect();
            let labels: Vec<&str> = predictions.iter().map(|p| p.prediction.as_str()).collect();
            Ok::<_, ApiError>(json!({
                "model_name": model.name,
                "model_version": model.version,
                "outputs": [
                    {"name": PROBABILITIES, "datatype": "FP32", "shape": [n, model.labels.len()], "data": probabilities},
                    {"name": LABEL, "datatype": "BYTES", "shape": [n], "data": labels},
                ],
            }))
        })
        .await?;
    let mut body = answer.value();
    let mut raw = Vec::new();
    if let Some(outputs) = body["outputs"].as_array_mut() {
        outputs.retain(|o| wanted.iter().any(|(name, _)| o["name"] == *name));
        for output in outputs.iter_mut() {
            let binary = wanted
                .iter()
                .any(|(name, binary)| *binary && output["name"] == *name);
            if binary {
                let start = raw.len();
                encode(&output["datatype"], &output["data"], &mut raw);
                let size = raw.len() - start;
                let object = output.as_object_mut().expect("outputs are objects");
                object.remove("data");
                object.insert("parameters".into(), json!({"binary_data_size": size}));
            }
        }
    }
    if let Some(id) = req.id {
        body["id"] = json!(id);
    }
    let mut response = if raw.is_empty() {
        json_response(StatusCode::OK, JSON, &body)
    } else {
        // Triton's layout: the JSON header, then each binary output in order.
        let mut bytes = serde_json::to_vec(&body).expect("the answer serializes");
        let header_length = bytes.len();
        bytes.extend_from_slice(&raw);
        let mut response = Response::new(bytes.into());
        let h = response.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/octet-stream"),
        );
        h.insert("inference-header-content-length", header_length.into());
        response
    };
    super::models::cache_headers(&mut response, &outcome);
    Ok(response)
}

/// One output's values in Triton's binary form: little-endian FP32, or for
/// BYTES each element as a 4-byte little-endian length and its bytes.
fn encode(datatype: &Value, data: &Value, out: &mut Vec<u8>) {
    let items = data.as_array().map(Vec::as_slice).unwrap_or_default();
    if datatype == "BYTES" {
        for item in items {
            let text = item.as_str().unwrap_or_default().as_bytes();
            out.extend_from_slice(&(text.len() as u32).to_le_bytes());
            out.extend_from_slice(text);
        }
    } else {
        for item in items {
            out.extend_from_slice(&(item.as_f64().unwrap_or(f64::NAN) as f32).to_le_bytes());
        }
    }
}

/// The input tensor as rows of the model's width, each checked as
/// `/predict` checks its features; errors name `inputs[0]…`.
fn rows(
    model: &Model,
    req: &InferRequest,
    binary: &[u8],
    max_batch: usize,
    errors: &mut Vec<FieldError>,
) -> Vec<Vec<f64>> {
    let [input] = req.inputs.as_slice() else {
        errors.push(FieldError::new(
            "inputs",
            format!(
                "model {:?} takes exactly one input tensor, {INPUT:?}; got {}",
                model.name,
                req.inputs.len()
            ),
        ));
        return Vec::new();
    };
    let before = errors.len();
    if input.name != INPUT {
        errors.push(FieldError::new(
            "inputs[0].name",
            format!("the input tensor is named {INPUT:?}"),
        ));
    }
    if !matches!(input.datatype.as_str(), "FP32" | "FP64") {
        errors.push(FieldError::new(
            "inputs[0].datatype",
            format!("FP32 or FP64, got {:?}", input.datatype),
        ));
    }
    let width = model.input_size as i64;
    let n = match input.shape.as_slice() {
        [n, w] if *w == width && *n >= 1 && *n as usize <= max_batch => *n as usize,
        [n, w] if *w == width && *n >= 1 => {
            errors.push(FieldError::new(
                "inputs[0].shape",
                format!("at most {max_batch} rows per request, got {n}"),
            ));
            0
        }
        _ => {
            errors.push(FieldError::new(
                "inputs[0].shape",
                format!("must be [n, {width}] with n ≥ 1, got {:?}", input.shape),
            ));
            0
        }
    };
    if errors.len() > before {
        return Vec::new();
    }
    let mut flat = Vec::with_capacity(n * model.input_size);
    let binary_size = input
        .parameters
        .as_ref()
        .and_then(|p| p.get("binary_data_size"))
        .map(|v| v.as_u64().map(|v| v as usize));
    match (&input.data, binary_size) {
        (Some(data), None) => {
            // Row-major, flat or nested (KServe's JSON allows both).
            if !flatten(data, &mut flat) {
                errors.push(FieldError::new(
                    "inputs[0].data",
                    "must be an array of numbers (flat or nested, row-major)",
                ));
                return Vec::new();
            }
        }
        (None, Some(Some(size))) if size == binary.len() => {
            // Little-endian, as Triton's binary tensor extension sends it.
            if input.datatype == "FP32" && size % 4 == 0 {
                flat.extend(
                    binary
                        .chunks_exact(4)
                        .map(|b| f64::from(f32::from_le_bytes(b.try_into().expect("4 bytes")))),
                );
            } else if input.datatype == "FP64" && size % 8 == 0 {
                flat.extend(
                    binary
                        .chunks_exact(8)
                        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes"))),
                );
            } else {
                errors.push(FieldError::new(
                    "inputs[0].parameters.binary_data_size",
                    format!(
                        "{size} bytes is not a whole number of {} values",
                        input.datatype
                    ),
                ));
                return Vec::new();
            }
        }
        (None, Some(Some(size))) => {
            errors.push(FieldError::new(
                "inputs[0].parameters.binary_data_size",
                format!(
                    "says {size} bytes, but {} follow the JSON header (Inference-Header-Content-Length)",
                    binary.len()
                ),
            ));
            return Vec::new();
        }
        (None, Some(None)) => {
            errors.push(FieldError::new(
                "inputs[0].parameters.binary_data_size",
                "must be a byte count",
            ));
            return Vec::new();
        }
        (Some(_), Some(_)) => {
            errors.push(FieldError::new(
                "inputs[0].data",
                "send data or binary_data_size, not both",
            ));
            return Vec::new();
        }
        (None, None) => {
            errors.push(FieldError::new(
                "inputs[0].data",
                "required (or parameters.binary_data_size with the binary tensor extension)",
            ));
            return Vec::new();
        }
    }
    if flat.len() != n * model.input_size {
        errors.push(FieldError::new(
            "inputs[0].data",
            format!(
                "shape {:?} needs {} values, got {}",
                input.shape,
                n * model.input_size,
                flat.len()
            ),
        ));
        return Vec::new();
    }
    let mut rows = Vec::with_capacity(n);
    for (i, row) in flat.chunks(model.input_size).enumerate() {
        if model
            .check_row(&format!("inputs[0].data[{i}]"), row, errors)
            .is_some()
        {
            rows.push(row.to_vec());
        }
    }
    rows
}

fn flatten(value: &Value, out: &mut Vec<f64>) -> bool {
    match value {
        Value::Number(n) => n.as_f64().map(|v| out.push(v)).is_some(),
        Value::Array(items) => items.iter().all(|item| flatten(item, out)),
        _ => false,
    }
}

/// The outputs asked for (both when none is named, or the list is empty),
/// each with whether it goes in binary.
fn outputs(req: &InferRequest, errors: &mut Vec<FieldError>) -> Vec<(&'static str, bool)> {
    let all_binary = flag(&req.parameters, "binary_data_output");
    let asked = match &req.outputs {
        Some(asked) if !asked.is_empty() => asked,
        _ => return vec![(PROBABILITIES, all_binary), (LABEL, all_binary)],
    };
    let mut wanted = Vec::new();
    for (i, o) in asked.iter().enumerate() {
        match [PROBABILITIES, LABEL].into_iter().find(|n| *n == o.name) {
            Some(name) => wanted.push((name, all_binary || flag(&o.parameters, "binary_data"))),
            None => errors.push(FieldError::new(
                &format!("outputs[{i}].name"),
                format!("outputs are {PROBABILITIES:?} and {LABEL:?}"),
            )),
        }
    }
    wanted
}
