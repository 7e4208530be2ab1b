//! The OpenAPI 3.1 document served at `/openapi.json`, generated from
//! `http::routes::ROUTES`: every row's own statuses plus those its
//! credential, scope, limit and body imply, so the document grows and
//! changes with the table. Schemas for bodies live here; the ones that depend
//! on the running daemon (models, tiers) come from [`Facts`].

use serde_json::{json, Map, Value};

use super::routes::{Body, Credential, Errors, Limit, Route, Surface, ROUTES};
use crate::core::scopes::Scope;
use crate::serving::models::ModelInfo;

const PROBLEM: &str = "Problem";
const OAUTH_ERROR: &str = "OAuthError";
/// `/metrics`: the Prometheus text exposition format, not JSON.
const PROMETHEUS_TEXT: &str = "PrometheusText";
const EVENT_STREAM: &str = "EventStream";
const FORM: &str = "application/x-www-form-urlencoded";
/// Meets the password policy.
const EXAMPLE_PASSWORD: &str = "Analytical-Engine-1843";

/// What the document says that is not in the route table: it describes the
/// daemon it is served by.
pub struct Facts<'a> {
    /// The rows this daemon serves (`Router::routes`): `/metrics` is
    /// public with `metrics.public`.
    pub routes: &'a [&'static Route],
    pub models: &'a [ModelInfo],
    /// `models.max_batch`: most instances in one v2 request.
    pub max_batch: usize,
    pub tiers: &'a [&'a str],
}

pub fn document(facts: &Facts<'_>) -> Value {
    let mut paths = Map::new();
    for route in facts.routes.iter().filter(|r| r.surface == Surface::Api) {
        let item = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        item[route.method.as_str().to_ascii_lowercase()] = operation(route);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "mlapi",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A machine-learning model behind a production HTTP API. Errors are RFC 9457 problem documents (application/problem+json), except the OAuth2 token endpoint's (RFC 6749 §5.2).",
        },
        "paths": paths,
        "components": {
            "schemas": schemas(facts),
            "securitySchemes": {
                "OAuth2PasswordBearer": {
                    "type": "oauth2",
                    "description": "Sign in with a username and password; the access token goes in `Authorization: Bearer`.",
                    "flows": { "password": { "tokenUrl": "/api/v1/auth/token", "refreshUrl": "/api/v1/auth/token", "scopes": scope_descriptions() } }
                },
                "APIKeyHeader": { "type": "apiKey", "in": "header", "name": "X-API-Key", "description": "An API key (`sk_live_…`)." },
                "HTTPBearer": { "type": "http", "scheme": "bearer", "description": "A JWT access token, or (where API keys are accepted) an API key, in `Authorization: Bearer`." }
            }
        },
    })
}

fn operation(route: &Route) -> Value {
    let doc = &route.doc;
    let mut responses = responses(route);
    let links = links(route);
    if !links.is_empty() {
        for (status, response) in responses.iter_mut() {
            if status.starts_with('2') && response.get("content").is_some() {
                response["links"] = Value::Object(links.clone());
            }
        }
    }
    let mut operation = json!({
        "operationId": doc.operation_id,
        "summary": doc.summary,
        "tags": [doc.tag],
        "responses": responses,
    });
    let mut parameters: Vec<Value> = path_parameters(route.path)
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}}))
        .collect();
    parameters.extend(doc.query.iter().map(|(name, schema)| {
        json!({"name": name, "in": "query", "required": false, "schema": schema_ref(schema)})
    }));
    if !parameters.is_empty() {
        operation["parameters"] = json!(parameters);
    }
    if let Some(body) = &doc.body {
        operation["requestBody"] = request_body(body);
    }
    let scopes: Vec<&str> = route.scope.iter().map(|s| s.as_str()).collect();
    match route.credential {
        Credential::None => {}
        Credential::TokenOrKey | Credential::TokenKeyOrTicket => {
            operation["security"] = json!([
                {"OAuth2PasswordBearer": scopes},
                {"APIKeyHeader": []},
                {"HTTPBearer": []}
            ]);
        }
        // API keys are refused here (403), so only the bearer token schemes.
        Credential::Session => {
            operation["security"] = json!([
                {"OAuth2PasswordBearer": scopes},
                {"HTTPBearer": []}
            ]);
        }
    }
    operation
}

/// The row's links: the answer's `id` is each target's path parameter.
fn links(route: &Route) -> Map<String, Value> {
    let mut links = Map::new();
    for target in route.doc.links {
        let Some(to) = ROUTES.iter().find(|r| r.doc.operation_id == *target) else {
            continue;
        };
        let parameters: Map<String, Value> = path_parameters(to.path)
            .map(|name| (name.to_string(), json!("$response.body#/id")))
            .collect();
        links.insert(
            (*target).to_string(),
            json!({ "operationId": target, "parameters": parameters }),
        );
    }
    links
}

fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
}

fn request_body(body: &Body) -> Value {
    let mut content = Map::new();
    if let Some(schema) = body.json {
        content.insert(
            "application/json".into(),
            json!({ "schema": schema_ref(schema) }),
        );
    }
    if let Some(schema) = body.form {
        content.insert(FORM.into(), json!({ "schema": schema_ref(schema) }));
    }
    json!({ "required": body.required, "content": content })
}

/// The row's statuses, then those the shared steps (`http::pipeline`,
/// `http::body`) can answer for a route like it, each with its media type.
fn responses(route: &Route) -> Map<String, Value> {
    let error = match route.errors {
        Errors::Problem | Errors::Inference => PROBLEM,
        Errors::OAuth => OAUTH_ERROR,
    };
    let mut all: Vec<(u16, &str)> = route.doc.responses.to_vec();
    // A malformed X-Forwarded-For from a trusted proxy; 406 and 500 anywhere.
    all.extend([(400, PROBLEM), (406, PROBLEM), (500, PROBLEM)]);
    if route.path.starts_with("/api/") {
        // A version past its sunset (`mlapi version sunset`).
        all.push((410, PROBLEM));
    }
    if route.path.contains('{') {
        all.push((404, PROBLEM));
    }
    if route.credential != Credential::None {
        all.push((401, PROBLEM));
    }
    if route.credential == Credential::Session || route.scope.is_some() {
        all.push((403, PROBLEM));
    }
    if route.limit != Limit::None {
        // Refused by the limit, or the limiter's store is down (or the
        // database is busy).
        all.extend([(429, error), (503, error)]);
    }
    if route.doc.body.is_some() {
        all.extend([(413, PROBLEM), (415, PROBLEM)]);
        if route.errors != Errors::OAuth {
            all.extend([(400, PROBLEM), (422, PROBLEM)]);
        }
    }
    all.sort_by_key(|(status, _)| *status);
    let mut responses = Map::new();
    for (status, schema) in all {
        let response = responses.entry(status.to_string()).or_insert_with(|| {
            let description = http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Response");
            let mut response = json!({ "description": description });
            if let Some(headers) = headers(status) {
                response["headers"] = headers;
            }
            response
        });
        if schema.is_empty() {
            continue;
        }
        let media = match schema {
            PROBLEM => "application/problem+json",
            PROMETHEUS_TEXT => "text/plain; version=0.0.4",
            EVENT_STREAM => "text/event-stream",
            _ => "application/json",
        };
        response["content"][media] = json!({ "schema": schema_ref(schema) });
    }
    responses
}

/// Headers an answer with this status always carries.
fn headers(status: u16) -> Option<Value> {
    let header = |name: &str, description: &str, schema: Value| json!({ name: { "description": description, "required": true, "schema": schema } });
    match status {
        401 => Some(header(
            "WWW-Authenticate",
            "RFC 6750 challenge",
            json!({"type": "string"}),
        )),
        429 | 503 => Some(header(
            "Retry-After",
            "Seconds to wait before retrying",
            json!({"type": "integer", "minimum": 1}),
        )),
        _ => None,
    }
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// The OAuth2 flow's scope list, from the one scope enum.
fn scope_descriptions() -> Value {
    Scope::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), json!(format!("the `{s}` scope"))))
        .collect::<Map<String, Value>>()
        .into()
}

fn scope_names() -> Vec<&'static str> {
    Scope::ALL.iter().map(|s| s.as_str()).collect()
}

/// A string `Scopes::parse` accepts: scope names separated by spaces or
/// commas (empty: the role's scopes).
fn scope_list_pattern() -> String {
    let one = format!("(?:{})", scope_names().join("|"));
    format!("^[ ,]*(?:{one}(?:[ ,]+{one})*[ ,]*)?$")
}

/// One input row for `model`: exactly its input size, each value finite and
/// within the model's bounds (as `Model::check_row` checks).
fn row_schema(model: &ModelInfo) -> Value {
    let items: Vec<Value> = (0..model.input_size)
        .map(|i| {
            let (lo, hi) = model
                .feature_bounds
                .as_ref()
                .and_then(|b| b.get(i).copied())
                // Values are taken as f32.
                .unwrap_or((-f64::from(f32::MAX), f64::from(f32::MAX)));
            let mut item = json!({"type": "number", "minimum": lo, "maximum": hi});
            if let Some(name) = model.features.get(i) {
                item["description"] = json!(name);
            }
            item
        })
        .collect();
    json!({
        "type": "array",
        "prefixItems": items,
        "items": false,
        "minItems": model.input_size,
        "maxItems": model.input_size,
    })
}

/// The properties that carry one shape of input, and which are required.
type Input = (Map<String, Value>, Vec<&'static str>);

/// A prediction request, one branch per model: `model` names it (and may be
/// left out or null for the default model). `inputs`: the properties that
/// carry the input, given the model's row schema.
fn predict_request(
    facts: &Facts<'_>,
    description: &str,
    examples: Value,
    inputs: &dyn Fn(&ModelInfo) -> Vec<Input>,
    extra: &Map<String, Value>,
) -> Value {
    let mut branches = Vec::new();
    for model in facts.models {
        for (mut properties, required) in inputs(model) {
            let mut required: Vec<&str> = required;
            let model_schema = if model.default {
                json!({"enum": [model.name, null]})
            } else {
                required.push("model");
                json!({"const": model.name})
            };
            properties.insert("model".into(), model_schema);
            properties.extend(extra.clone());
            branches.push(json!({
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            }));
        }
    }
    let mut schema = if branches.len() == 1 {
        branches.remove(0)
    } else {
        json!({ "oneOf": branches })
    };
    schema["description"] = json!(description);
    schema["examples"] = examples;
    schema
}

/// An input row the default model takes: each value as near 0 as its
/// bounds allow.
fn example_row(facts: &Facts<'_>) -> Vec<f64> {
    let Some(model) = facts.models.iter().find(|m| m.default) else {
        return Vec::new();
    };
    (0..model.input_size)
        .map(|i| {
            let (lo, hi) = model
                .feature_bounds
                .as_ref()
                .and_then(|b| b.get(i).copied())
                .unwrap_or((0.0, 0.0));
            0f64.clamp(lo, hi)
        })
        .collect()
}

fn schemas(facts: &Facts<'_>) -> Value {
    let nullable = |ty: &str| json!({"type": [ty, "null"]});
    let row = example_row(facts);
    let v1 = predict_request(
        facts,
        "One input row: `features`, as many numbers as the model takes, each within its bounds.",
        json!([{ "features": row }]),
        &|m| {
            let mut p = Map::new();
            p.insert("features".into(), row_schema(m));
            vec![(p, vec!["features"])]
        },
        &Map::new(),
    );
    let max_batch = facts.max_batch;
    let mut v2_extra = Map::new();
    v2_extra.insert(
        "explain".into(),
        json!({"type": ["boolean", "null"], "description": "Add an occlusion explanation (default true)."}),
    );
    let v2 = predict_request(
        facts,
        "One input (`features`) or a batch (`instances`, at most `models.max_batch`), never both.",
        json!([{ "features": row, "explain": true }, { "instances": [row, row], "explain": false }]),
        &|m| {
            let mut single = Map::new();
            single.insert("features".into(), row_schema(m));
            single.insert("instances".into(), json!({"type": "null"}));
            let mut batch = Map::new();
            batch.insert("features".into(), json!({"type": "null"}));
            batch.insert(
                "instances".into(),
                json!({"type": "array", "items": row_schema(m), "minItems": 1, "maxItems": max_batch}),
            );
            vec![(single, vec!["features"]), (batch, vec!["instances"])]
        },
        &v2_extra,
    );
    let mut job_extra = Map::new();
    job_extra.insert(
        "explain".into(),
        json!({"type": ["boolean", "null"], "description": "Add an occlusion explanation to each result (default false)."}),
    );
    let new_job = predict_request(
        facts,
        "A batch job: `instances`, rows each as for `/api/v2/predict`; more than `jobs.max_instances` rows answer 413 (so no `maxItems` here).",
        json!([{ "instances": [row, row], "explain": false }]),
        &|m| {
            let mut batch = Map::new();
            batch.insert(
                "instances".into(),
                json!({"type": "array", "items": row_schema(m), "minItems": 1}),
            );
            vec![(batch, vec!["instances"])]
        },
        &job_extra,
    );
    let timestamp = json!({ "type": "string", "format": "date-time" });
    let timestamp_or_null = json!({ "type": ["string", "null"], "format": "date-time" });
    // Role, tier and disabled may each be null (unchanged), but one must be set.
    let patch_one_of: Vec<Value> = ["role", "tier", "disabled"]
        .iter()
        .map(|name| json!({"required": [name], "properties": { *name: {"not": {"type": "null"}} }}))
        .collect();
    // 1 to 100 printable characters once trimmed.
    let key_name =
        r"^\s*[^\s\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]{0,98}[^\s\x00-\x1f\x7f-\x9f])?\s*$";
    let parts = [
        json!({
        "NewJobRequest": new_job,
        "JobStatus": { "enum": ["queued", "running", "succeeded", "failed", "cancelled"] },
        "Username": { "type": "string", "minLength": 1, "description": "A username or user id." },
        "Job": {
            "type": "object",
            "required": ["id", "status", "model", "model_version", "explain", "total", "done", "created_at", "started_at", "finished_at", "error"],
            "properties": {
                "id": { "type": "string" },
                "status": schema_ref("JobStatus"),
                "model": { "type": "string" },
                "model_version": nullable("string"),
                "explain": { "type": "boolean" },
                "total": { "type": "integer", "minimum": 1 },
                "done": { "type": "integer", "minimum": 0 },
                "created_at": timestamp,
                "started_at": timestamp_or_null,
                "finished_at": timestamp_or_null,
                "error": nullable("string")
            }
        },
        "JobList": {
            "type": "object",
            "required": ["jobs"],
            "properties": { "jobs": { "type": "array", "items": schema_ref("Job") } }
        },
        "JobResults": {
            "type": "object",
            "required": ["id", "status", "results", "next_offset"],
            "properties": {
                "id": { "type": "string" },
                "status": schema_ref("JobStatus"),
                "results": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["index", "prediction", "confidence", "probabilities"],
                        "properties": {
                            "index": { "type": "integer", "minimum": 0 },
                            "prediction": { "type": "string" },
                            "confidence": { "type": "number" },
                            "probabilities": { "type": "object", "additionalProperties": { "type": "number" } },
                            "explanation": { "type": "object" }
                        }
                    }
                },
                "next_offset": nullable("integer")
            }
        },
        "WsTicket": {
            "type": "object",
            "required": ["ticket", "expires_in"],
            "properties": {
                "ticket": { "type": "string" },
                "expires_in": { "type": "integer", "minimum": 1 }
            }
        },
        "WsTicketParam": { "type": "string", "description": "A ticket from POST /api/v1/ws/tickets (single use, 30 s)." }
        }),
        json!({
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": { "type": "string" },
                "title": { "type": "string" },
                "status": { "type": "integer" },
                "detail": { "type": "string" },
                "error": { "type": "string", "description": "The Open Inference Protocol's error text (the `/v2/…` routes), the same as `detail`." },
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["field", "message"],
                        "properties": { "field": { "type": "string" }, "message": { "type": "string" } }
                    }
                }
            }
        },
        "OAuthError": {
            "type": "object",
            "description": "RFC 6749 §5.2 error (token endpoint only).",
            "required": ["error"],
            "properties": { "error": { "type": "string" }, "error_description": { "type": "string" } }
        },
        "RegisterRequest": {
            "examples": [{ "username": "ada_lovelace", "email": "ada@example.com", "password": EXAMPLE_PASSWORD }],
            "type": "object",
            "required": ["username", "email", "password"],
            "additionalProperties": false,
            "properties": {
                "username": { "type": "string", "pattern": "^[A-Za-z0-9_]{3,50}$" },
                "email": { "type": "string", "format": "email", "maxLength": 254 },
                "password": {
                    "type": "string",
                    "minLength": 8,
                    "maxLength": 128,
                    "description": "Not containing the username, not a common password, and 15+ characters or 8+ with an upper-case letter, a lower-case letter, a digit and a symbol."
                }
            }
        },
        "LoginRequest": {
            "examples": [{ "username": "ada_lovelace", "password": EXAMPLE_PASSWORD }],
            "type": "object",
            "description": "As JSON (an OAuth2 form: `LoginForm`).",
            "required": ["username", "password"],
            "properties": {
                "username": { "type": "string" },
                "password": { "type": "string" },
                "scope": { "type": ["string", "null"], "pattern": scope_list_pattern(), "description": "Scopes to narrow the token to, within the account's role." },
                "grant_type": { "enum": ["password", null] },
                "client_id": nullable("string"),
                "client_secret": nullable("string")
            }
        },
        "LoginForm": {
            "examples": [{ "grant_type": "password", "username": "ada_lovelace", "password": EXAMPLE_PASSWORD, "scope": "predict:read models:read" }],
            "type": "object",
            "description": "An OAuth2 password-grant form.",
            "required": ["username", "password"],
            "properties": {
                "username": { "type": "string" },
                "password": { "type": "string" },
                "scope": { "type": "string", "pattern": scope_list_pattern() },
                "grant_type": { "const": "password" },
                "client_id": { "type": "string" },
                "client_secret": { "type": "string" }
            }
        },
        "TokenRequest": {
            "examples": [{ "grant_type": "password", "username": "ada_lovelace", "password": EXAMPLE_PASSWORD }],
            "description": "RFC 6749 §4.3 (password) or §6 (refresh_token).",
            "oneOf": [
                {
                    "type": "object",
                    "required": ["grant_type", "username", "password"],
                    "properties": {
                        "grant_type": { "const": "password" },
                        "username": { "type": "string" },
                        "password": { "type": "string" },
                        "scope": { "type": "string" },
                        "client_id": { "type": "string", "description": "A public client may name itself; a client secret is refused (401 invalid_client)." }
                    }
                },
                {
                    "type": "object",
                    "required": ["grant_type", "refresh_token"],
                    "properties": {
                        "grant_type": { "const": "refresh_token" },
                        "refresh_token": { "type": "string" },
                        "client_id": { "type": "string" }
                    }
                }
            ]
        },
        "RefreshRequest": {
            "examples": [{ "refresh_token": "the refresh_token of a token pair" }],
            "type": "object",
            "required": ["refresh_token"],
            "additionalProperties": false,
            "properties": { "refresh_token": { "type": "string" } }
        },
        "NewKeyRequest": {
            "examples": [{ "name": "batch scorer", "scopes": ["predict:read", "models:read"], "expires_at": "2099-01-01T00:00:00Z" }],
            "type": "object",
            "required": ["name"],
            "additionalProperties": false,
            "properties": {
                "name": { "type": "string", "pattern": key_name, "description": "1 to 100 printable characters (trimmed)." },
                "scopes": {
                    "type": ["array", "null"],
                    "items": { "enum": scope_names() },
                    "minItems": 1,
                    "description": "Within the session's scopes; default: all of them."
                },
                "expires_at": { "type": ["string", "null"], "format": "date-time", "description": "An RFC 3339 instant in the future." }
            }
        },
        "RotateRequest": {
            "examples": [{ "grace_seconds": 3600 }],
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "grace_seconds": { "type": ["integer", "null"], "minimum": 0, "maximum": crate::identity::keys::MAX_GRACE_SECS, "description": "How long the old key keeps working (default 0)." }
            }
        },
        "UserPatch": {
            "examples": [{ "role": "manager", "tier": facts.tiers.last(), "disabled": false }],
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "role": { "enum": ["admin", "manager", "user", null] },
                "tier": { "enum": facts.tiers.iter().map(|t| json!(t)).chain([Value::Null]).collect::<Vec<_>>() },
                "disabled": nullable("boolean")
            },
            "anyOf": patch_one_of
        },
        "PageLimit": { "type": "integer", "minimum": 0, "maximum": u32::MAX, "description": "Page size, taken as 1 to 1000 (default 100)." },
        "PageOffset": { "type": "integer", "minimum": 0, "maximum": u32::MAX, "description": "Items to skip (default 0)." },
        "PredictV1Request": v1,
        "PredictV2Request": v2,
        "OipInferRequest": {
            "description": "Open Inference Protocol v2: one input tensor named `input`, shape [n, the model's input size], FP32 or FP64, `data` row-major (flat or nested), every value finite and within the model's bounds.",
            "examples": [{ "id": "1", "inputs": [{ "name": "input", "shape": [1, row.len()], "datatype": "FP32", "data": row }] }],
            "type": "object",
            "required": ["inputs"],
            "additionalProperties": false,
            "properties": {
                "id": { "type": ["string", "null"] },
                "inputs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "shape", "datatype", "data"],
                        "additionalProperties": false,
                        "properties": {
                            "name": { "const": "input" },
                            "shape": { "type": "array", "items": { "type": "integer", "minimum": 1, "maximum": max_batch }, "minItems": 2, "maxItems": 2 },
                            "datatype": { "enum": ["FP32", "FP64"] },
                            "data": { "type": "array", "items": { "type": "number" }, "minItems": 1 },
                            "parameters": { "type": ["object", "null"] }
                        }
                    }
                },
                "outputs": {
                    "type": ["array", "null"],
                    "description": "The outputs to answer with; none named (or empty): all.",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": false,
                        "properties": { "name": { "enum": ["probabilities", "label"] }, "parameters": { "type": ["object", "null"] } }
                    }
                },
                "parameters": { "type": ["object", "null"] }
            }
        },
        "OipInferResponse": {
            "type": "object",
            "required": ["model_name", "model_version", "outputs"],
            "properties": {
                "model_name": { "type": "string" },
                "model_version": { "type": "string" },
                "id": { "type": "string" },
                "outputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "datatype", "shape", "data"],
                        "properties": {
                            "name": { "enum": ["probabilities", "label"] },
                            "datatype": { "enum": ["FP32", "BYTES"] },
                            "shape": { "type": "array", "items": { "type": "integer", "minimum": 0 } },
                            "data": { "type": "array" }
                        }
                    }
                }
            }
        },
        "OipLive": { "type": "object", "required": ["live"], "properties": { "live": { "const": true } } },
        "OipReady": { "type": "object", "required": ["ready"], "properties": { "ready": { "const": true } } },
        "OipModelReady": {
            "type": "object",
            "required": ["name", "ready"],
            "properties": { "name": { "type": "string" }, "ready": { "const": true } }
        },
        "OipModelMetadata": {
            "type": "object",
            "required": ["name", "versions", "platform", "inputs", "outputs"],
            "properties": {
                "name": { "type": "string" },
                "versions": { "type": "array", "items": { "type": "string" } },
                "platform": { "type": "string" },
                "inputs": { "type": "array", "items": schema_ref("OipTensorMetadata") },
                "outputs": { "type": "array", "items": schema_ref("OipTensorMetadata") }
            }
        },
        "OipTensorMetadata": {
            "type": "object",
            "required": ["name", "datatype", "shape"],
            "properties": {
                "name": { "type": "string" },
                "datatype": { "type": "string" },
                "shape": { "type": "array", "items": { "type": "integer" } }
            }
        }
        }),
        json!({
        "User": {
            "type": "object",
            "required": ["id", "username", "email", "role", "tier", "disabled", "created_at", "updated_at"],
            "properties": {
                "id": { "type": "string", "format": "uuid" },
                "username": { "type": "string" },
                "email": { "type": "string" },
                "role": { "enum": ["admin", "manager", "user"] },
                "tier": { "type": "string" },
                "disabled": { "type": "boolean" },
                "created_at": timestamp,
                "updated_at": timestamp,
                "scopes": { "type": "array", "items": { "enum": scope_names() }, "description": "`/users/me` only: the presented credential's scopes." }
            }
        },
        "UserPage": {
            "type": "object",
            "required": ["users", "limit", "offset"],
            "properties": {
                "users": { "type": "array", "items": schema_ref("User") },
                "limit": { "type": "integer", "minimum": 1, "maximum": 1000 },
                "offset": { "type": "integer", "minimum": 0 }
            }
        },
        "TokenPair": {
            "type": "object",
            "required": ["access_token", "refresh_token", "token_type", "expires_in", "scope"],
            "properties": {
                "access_token": { "type": "string" },
                "refresh_token": { "type": "string" },
                "token_type": { "const": "bearer" },
                "expires_in": { "type": "integer" },
                "scope": { "type": "string" }
            }
        },
        "CreatedKey": {
            "type": "object",
            "description": "A new API key. `api_key` appears in this answer only.",
            "required": ["id", "api_key", "prefix", "name", "scopes", "created_at", "expires_at", "rotated_from"],
            "properties": {
                "id": { "type": "string", "format": "uuid" },
                "api_key": { "type": "string", "pattern": "^sk_live_[0-9A-Za-z]{38}$" },
                "prefix": { "type": "string" },
                "name": { "type": "string" },
                "scopes": { "type": "array", "items": { "enum": scope_names() } },
                "created_at": timestamp,
                "expires_at": timestamp_or_null,
                "rotated_from": { "type": ["string", "null"] }
            }
        },
        "KeyInfo": {
            "type": "object",
            "description": "An API key as listings show it: never the secret.",
            "required": ["id", "user", "name", "prefix", "last4", "scopes", "status", "created_at", "expires_at", "revoked_at", "rotated_from", "last_used_at", "request_count", "requests_by_day"],
            "properties": {
                "id": { "type": "string", "format": "uuid" },
                "user": { "type": "string" },
                "name": { "type": "string" },
                "prefix": { "type": "string" },
                "last4": { "type": "string" },
                "scopes": { "type": "array", "items": { "enum": scope_names() } },
                "status": { "enum": ["active", "expired", "revoked"] },
                "created_at": timestamp,
                "expires_at": timestamp_or_null,
                "revoked_at": timestamp_or_null,
                "rotated_from": { "type": ["string", "null"] },
                "last_used_at": timestamp_or_null,
                "request_count": { "type": "integer", "minimum": 0 },
                "requests_by_day": { "type": "object", "additionalProperties": { "type": "integer" }, "description": "Requests per UTC day (YYYY-MM-DD), most recent 30 days." }
            }
        },
        "KeyList": {
            "type": "object",
            "required": ["keys"],
            "properties": { "keys": { "type": "array", "items": schema_ref("KeyInfo") } }
        }
        }),
        json!({
        "PredictionV1": {
            "type": "object",
            "required": ["version", "model", "model_version", "prediction", "cached"],
            "properties": {
                "version": { "const": "1.0" },
                "model": { "type": "string" },
                "model_version": { "type": "string" },
                "prediction": { "type": "string" },
                "cached": { "type": "boolean" }
            }
        },
        "Prediction": {
            "type": "object",
            "required": ["prediction", "confidence", "probabilities"],
            "properties": {
                "prediction": { "type": "string" },
                "confidence": { "type": "number" },
                "probabilities": { "type": "object", "additionalProperties": { "type": "number" }, "description": "label → probability" },
                "explanation": {
                    "type": "object",
                    "required": ["method", "baseline", "attributions"],
                    "properties": {
                        "method": { "const": "occlusion" },
                        "baseline": { "type": "array", "items": { "type": "number" } },
                        "attributions": { "type": "array", "items": { "type": "number" } }
                    }
                }
            }
        },
        "PredictionV2": {
            "type": "object",
            "description": "One input: the prediction's members beside these. A batch: `predictions`, one per instance.",
            "required": ["version", "model", "model_version", "cached"],
            "properties": {
                "version": { "const": "2.0" },
                "model": { "type": "string" },
                "model_version": { "type": "string" },
                "cached": { "type": "boolean" },
                "predictions": { "type": "array", "items": schema_ref("Prediction") }
            },
            "oneOf": [
                { "required": ["predictions"] },
                { "allOf": [schema_ref("Prediction"), { "not": { "required": ["predictions"] } }] }
            ]
        },
        "Model": {
            "type": "object",
            "required": ["name", "version", "digest", "backend", "status", "default", "input_size", "labels", "features", "feature_bounds", "cache_ttl_secs", "source", "reload_error"],
            "properties": {
                "name": { "type": "string" },
                "version": { "type": "string" },
                "digest": { "type": "string" },
                "backend": { "type": "string" },
                "status": { "type": "string" },
                "default": { "type": "boolean" },
                "input_size": { "type": "integer", "minimum": 1 },
                "labels": { "type": "array", "items": { "type": "string" } },
                "features": { "type": "array", "items": { "type": "string" } },
                "feature_bounds": {
                    "type": ["array", "null"],
                    "items": { "type": "array", "items": { "type": "number" }, "minItems": 2, "maxItems": 2, "description": "[low, high]" }
                },
                "cache_ttl_secs": { "type": "integer", "minimum": 0 },
                "source": { "type": "string" },
                "reload_error": { "type": ["string", "null"] }
            }
        },
        "ModelList": {
            "type": "object",
            "required": ["models"],
            "properties": { "models": { "type": "array", "items": schema_ref("Model") } }
        },
        "Health": {
            "type": "object",
            "required": ["status", "version", "uptime_secs"],
            "properties": {
                "status": { "enum": ["ok", "degraded"] },
                "version": { "type": "string" },
                "uptime_secs": { "type": "integer", "minimum": 0 },
                "redis": { "enum": ["connected", "unreachable"] }
            }
        },
        "Ready": {
            "type": "object",
            "required": ["status", "checks"],
            "properties": {
                "status": { "enum": ["ready", "degraded"] },
                "checks": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["ok", "detail"],
                        "properties": { "ok": { "type": "boolean" }, "detail": { "type": "string" }, "degraded": { "type": "boolean" } }
                    }
                }
            }
        },
        "EventStream": {
            "type": "object",
            "description": "One Server-Sent Event: `event: <type>`, `data: {\"type\": <type>, \"job\": <Job>}` (JSON text).",
            "required": ["event", "data"],
            "properties": {
                "event": { "enum": ["job.queued", "job.started", "job.progress", "job.succeeded", "job.failed", "job.cancelled"] },
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {
                        "type": "object",
                        "required": ["type", "job"],
                        "properties": { "type": { "type": "string" }, "job": schema_ref("Job") }
                    }
                }
            }
        },
        "PrometheusText": {
            "type": "string",
            "description": "Prometheus text exposition format 0.0.4: `# HELP`, `# TYPE` and sample lines."
        },
        "OpenApi": {
            "type": "object",
            "description": "An OpenAPI 3.1 document.",
            "required": ["openapi", "info", "paths"]
        }
        }),
    ];
    // In parts: one json! this large passes the macro recursion limit.
    let mut all = Map::new();
    for part in parts {
        if let Value::Object(map) = part {
            all.extend(map);
        }
    }
    Value::Object(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str, default: bool) -> ModelInfo {
        ModelInfo {
            name: name.into(),
            version: "1".into(),
            digest: "sha256:00".into(),
            backend: "tract-onnx",
            status: "ready",
            default,
            input_size: 2,
            labels: vec!["a".into(), "b".into()],
            features: vec!["x".into(), "y".into()],
            feature_bounds: Some(vec![(0.0, 1.0), (-1.0, 1.0)]),
            cache_ttl_secs: 0,
            source: "test".into(),
            reload_error: None,
        }
    }

    /// Every `$ref` names a schema the document defines.
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn no_dangling_refs_and_every_route_is_documented() {
        let models = [model("demo", true), model("other", false)];
        let routes: Vec<&'static Route> = ROUTES.iter().collect();
        let doc = document(&Facts {
            routes: &routes,
            models: &models,
            max_batch: 4,
            tiers: &["free", "pro"],
        });
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "dangling {r}"
            );
        }
        for route in ROUTES.iter().filter(|r| r.surface == Surface::Api) {
            let op = &doc["paths"][route.path][route.method.as_str().to_ascii_lowercase()];
            assert_eq!(op["operationId"], route.doc.operation_id);
            for status in ["406", "500"] {
                assert!(op["responses"][status].is_object(), "{}", route.path);
            }
            if route.doc.body.is_some_and(|b| b.required) {
                assert_eq!(op["requestBody"]["required"], true, "{}", route.path);
            }
        }
        for route in &ROUTES {
            for target in route.doc.links {
                let to = ROUTES.iter().find(|r| r.doc.operation_id == *target);
                assert!(
                    to.is_some_and(|to| path_parameters(to.path).count() == 1),
                    "{}: link to {target}",
                    route.doc.operation_id
                );
            }
        }
        let v1 = &doc["components"]["schemas"]["PredictV1Request"]["oneOf"];
        assert_eq!(v1.as_array().unwrap().len(), 2, "one branch per model");
    }
}
