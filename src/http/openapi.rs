//! The OpenAPI 3.1 document served at `/openapi.json`, generated from
//! `http::routes::ROUTES` so it grows with every route. Schemas for bodies live here.

use serde_json::{json, Map, Value};

use super::routes::{Credential, Limit, Surface, ROUTES};
use crate::core::scopes::Scope;

/// Responses any route can produce, whatever it declares: problems (the
/// second member is a schema name, as in `Doc::responses`).
const COMMON: &[(u16, &str)] = &[
    (400, "Problem"),
    (404, "Problem"),
    (405, "Problem"),
    (500, "Problem"),
];

pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES.iter().filter(|r| r.surface == Surface::Api) {
        let doc = &route.doc;
        let mut responses = Map::new();
        // A limited route can refuse (429) or lose its limiter (503).
        let limited: &[(u16, &str)] = if route.limit != Limit::None {
            &[(429, "Problem"), (503, "Problem")]
        } else {
            &[]
        };
        for (status, schema) in doc.responses.iter().chain(COMMON).chain(limited) {
            let key = status.to_string();
            if responses.contains_key(&key) {
                continue;
            }
            let description = http::StatusCode::from_u16(*status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Response");
            let mut response = json!({ "description": description });
            let schema = if *status >= 400 && schema.is_empty() {
                "Problem"
            } else {
                schema
            };
            if !schema.is_empty() {
                let media = if schema == "Problem" {
                    "application/problem+json"
                } else {
                    "application/json"
                };
                response["content"] = json!({ media: { "schema": { "$ref": format!("#/components/schemas/{schema}") } } });
            }
            responses.insert(key, response);
        }
        let mut operation = json!({
            "operationId": doc.operation_id,
            "summary": doc.summary,
            "tags": [doc.tag],
            "responses": responses,
        });
        let parameters: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !parameters.is_empty() {
            operation["parameters"] = json!(parameters);
        }
        if route.credential != Credential::None {
            operation["security"] = json!([
                {"OAuth2PasswordBearer": []},
                {"APIKeyHeader": []},
                {"HTTPBearer": []}
            ]);
        }
        let item = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        item[route.method.as_str().to_ascii_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "mlapi",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A machine-learning model behind a production HTTP API. Errors are RFC 9457 problem documents.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "OAuth2PasswordBearer": {
                    "type": "oauth2",
                    "description": "Sign in with a username and password; the access token goes in `Authorization: Bearer`.",
                    "flows": { "password": { "tokenUrl": "/api/v1/auth/token", "refreshUrl": "/api/v1/auth/token", "scopes": scope_descriptions() } }
                },
                "APIKeyHeader": { "type": "apiKey", "in": "header", "name": "X-API-Key", "description": "An API key (`sk_live_…`)." },
                "HTTPBearer": { "type": "http", "scheme": "bearer", "description": "A JWT access token or an API key in `Authorization: Bearer`." }
            }
        },
    })
}

/// The OAuth2 flow's scope list, from the one scope enum.
fn scope_descriptions() -> Value {
    Scope::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), json!(format!("the `{s}` scope"))))
        .collect::<Map<String, Value>>()
        .into()
}

fn schemas() -> Value {
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
                "created_at": { "type": "string", "format": "date-time" },
                "updated_at": { "type": "string", "format": "date-time" },
                "scopes": { "type": "array", "items": { "type": "string" } }
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
            "required": ["id", "api_key", "prefix", "name", "scopes", "created_at"],
            "properties": {
                "id": { "type": "string", "format": "uuid" },
                "api_key": { "type": "string", "pattern": "^sk_live_[0-9A-Za-z]{38}$" },
                "prefix": { "type": "string" },
                "name": { "type": "string" },
                "scopes": { "type": "array", "items": { "type": "string" } },
                "created_at": { "type": "string", "format": "date-time" },
                "expires_at": { "type": ["string", "null"], "format": "date-time" },
                "rotated_from": { "type": ["string", "null"] }
            }
        },
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
        "PredictionV2": {
            "type": "object",
            "description": "One input: prediction, confidence, probabilities (label → p), explanation {method, baseline, attributions}. A batch: predictions, an array of those.",
            "required": ["version", "model", "model_version", "cached"],
            "properties": {
                "version": { "const": "2.0" },
                "model": { "type": "string" },
                "model_version": { "type": "string" },
                "prediction": { "type": "string" },
                "confidence": { "type": "number" },
                "probabilities": { "type": "object", "additionalProperties": { "type": "number" } },
                "explanation": {
                    "type": "object",
                    "properties": {
                        "method": { "const": "occlusion" },
                        "baseline": { "type": "array", "items": { "type": "number" } },
                        "attributions": { "type": "array", "items": { "type": "number" } }
                    }
                },
                "predictions": { "type": "array", "items": { "type": "object" } },
                "cached": { "type": "boolean" }
            }
        },
        "Model": {
            "type": "object",
            "required": ["name", "version", "digest", "input_size", "labels", "backend", "status"],
            "properties": {
                "name": { "type": "string" },
                "version": { "type": "string" },
                "digest": { "type": "string" },
                "backend": { "type": "string" },
                "status": { "type": "string" },
                "default": { "type": "boolean" },
                "input_size": { "type": "integer" },
                "labels": { "type": "array", "items": { "type": "string" } }
            }
        },
        "OAuthError": {
            "type": "object",
            "description": "RFC 6749 §5.2 error (token endpoint only).",
            "required": ["error"],
            "properties": { "error": { "type": "string" }, "error_description": { "type": "string" } }
        },
        "Health": {
            "type": "object",
            "required": ["status", "version", "uptime_secs"],
            "properties": {
                "status": { "const": "ok" },
                "version": { "type": "string" },
                "uptime_secs": { "type": "integer", "minimum": 0 }
            }
        },
        "Ready": {
            "type": "object",
            "required": ["status", "checks"],
            "properties": {
                "status": { "const": "ready" },
                "checks": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "properties": { "ok": { "type": "boolean" }, "detail": { "type": "string" } }
                    }
                }
            }
        }
    })
}
