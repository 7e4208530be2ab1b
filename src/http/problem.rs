//! The HTTP error boundary: `ApiError`, and its one mapping to an RFC 9457
//! `application/problem+json` response. Every non-2xx answer the daemon
//! produces goes through `ApiError::into_response`.
//!
//! Messages here are shown to clients: they must never echo a submitted
//! secret, a file path, SQL, or a panic message.

use http::{header, HeaderValue, StatusCode};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::core::error::Error;
use crate::store::StoreError;

/// Every answer the daemon sends: warp's response type (a boxed body, so
/// fixed, streamed and upgraded answers share one type).
pub type Response = warp::reply::Response;

pub const PROBLEM_JSON: &str = "application/problem+json";
pub const JSON: &str = "application/json";
/// Problem type of draft-ietf-httpapi-ratelimit-headers for a refused request.
pub const QUOTA_EXCEEDED: &str = "https://iana.org/assignments/http-problem-types#quota-exceeded";

pub use crate::core::error::FieldError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("no route for this path")]
    NotFound,
    /// A resource that does not exist or is not the caller's to see.
    #[error("{0}")]
    NotFound404(String),
    #[error("this path does not accept the method")]
    MethodNotAllowed,
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("invalid request: {}", crate::core::error::describe(.0))]
    Validation(Vec<FieldError>),
    /// 401. `presented`: a credential was sent but refused (RFC 6750 `invalid_token`).
    #[error("{detail}")]
    Unauthorized { presented: bool, detail: String },
    /// 403; with `scope`, RFC 6750 `insufficient_scope`.
    #[error("{detail}")]
    Forbidden {
        detail: String,
        scope: Option<&'static str>,
    },
    #[error("{0}")]
    Conflict(String),
    /// 429; with `violated`, the ratelimit-headers draft's `quota-exceeded` problem.
    #[error("{detail}")]
    TooManyRequests {
        detail: String,
        retry_after_secs: u64,
        violated: Vec<String>,
    },
    /// The OAuth2 token endpoint's own error format (RFC 6749 §5.2).
    #[error("{description}")]
    OAuth {
        status: u16,
        error: &'static str,
        description: String,
        retry_after_secs: Option<u64>,
    },
    #[error("{detail}")]
    Unavailable {
        detail: String,
        retry_after_secs: u64,
        extra: Map<String, Value>,
    },
    #[error("this API answers only in JSON; accept application/json")]
    NotAcceptable,
    /// An API version past its sunset.
    #[error("{0}")]
    Gone(String),
    /// The model did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
    /// An upstream model server refused, failed or answered nonsense.
    #[error("{0}")]
    BadGateway(String),
    /// 413 for a count past a limit (not the body's bytes).
    #[error("{0}")]
    TooLarge(String),
    /// 426: a plain request, or another protocol version, where a
    /// WebSocket upgrade (version 13) is expected.
    #[error("{0}")]
    UpgradeRequired(String),
    /// The cause is logged by whoever creates this; the client learns nothing.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// A library error in the OAuth2 token endpoint's format (RFC 6749
    /// §5.2): the same refusals as everywhere else, other words.
    pub fn oauth(e: Error) -> ApiError {
        let oauth = |status: u16, error: &'static str, description: String| ApiError::OAuth {
            status,
            error,
            description,
            retry_after_secs: None,
        };
        match e {
            Error::InvalidCredentials | Error::Unauthenticated { .. } => {
                oauth(400, "invalid_grant", e.to_string())
            }
            Error::InvalidScope(_) => oauth(400, "invalid_scope", e.to_string()),
            Error::Invalid(_) => oauth(400, "invalid_request", e.to_string()),
            Error::Locked { retry_after } | Error::RateLimited { retry_after, .. } => {
                ApiError::OAuth {
                    status: 429,
                    error: if matches!(e, Error::Locked { .. }) {
                        "invalid_grant"
                    } else {
                        "invalid_request"
                    },
                    description: e.to_string(),
                    retry_after_secs: Some(retry_after.max(1)),
                }
            }
            Error::Overloaded { retry_after } => ApiError::OAuth {
                status: 503,
                error: "temporarily_unavailable",
                description: e.to_string(),
                retry_after_secs: Some(retry_after.max(1)),
            },
            other => match ApiError::from(other) {
                ApiError::Unavailable {
                    detail,
                    retry_after_secs,
                    ..
                } => ApiError::OAuth {
                    status: 503,
                    error: "temporarily_unavailable",
                    description: detail,
                    retry_after_secs: Some(retry_after_secs),
                },
                _ => oauth(500, "server_error", "internal error".into()),
            },
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(errors) => ApiError::Validation(errors),
            Error::NotFound(m) => ApiError::NotFound404(m),
            Error::Conflict(m) => ApiError::Conflict(m),
            Error::Unauthenticated { presented, detail } => ApiError::Unauthorized {
                presented,
                detail: detail.into(),
            },
            Error::InvalidCredentials => ApiError::Unauthorized {
                presented: false,
                detail: e.to_string(),
            },
            Error::MissingScope(scope) => ApiError::Forbidden {
                detail: e.to_string(),
                scope: Some(scope.as_str()),
            },
            Error::Forbidden(detail) => ApiError::Forbidden {
                detail,
                scope: None,
            },
            Error::InvalidScope(_) => ApiError::BadRequest(e.to_string()),
            Error::Locked { retry_after } => ApiError::TooManyRequests {
                detail: e.to_string(),
                retry_after_secs: retry_after.max(1),
                violated: Vec::new(),
            },
            Error::RateLimited {
                retry_after,
                ref violated,
            } => ApiError::TooManyRequests {
                detail: e.to_string(),
                retry_after_secs: retry_after.max(1),
                violated: violated.clone(),
            },
            Error::Unavailable(detail) => ApiError::Unavailable {
                detail,
                retry_after_secs: 5,
                extra: Map::new(),
            },
            Error::Overloaded { retry_after } => ApiError::Unavailable {
                detail: e.to_string(),
                retry_after_secs: retry_after.max(1),
                extra: Map::new(),
            },
            Error::TooMany {
                ref detail,
                retry_after,
            } => ApiError::TooManyRequests {
                detail: detail.clone(),
                retry_after_secs: retry_after.max(1),
                violated: Vec::new(),
            },
            Error::TooLarge(detail) => ApiError::TooLarge(detail),
            Error::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Busy => ApiError::Unavailable {
                detail: "the database is busy; retry shortly".into(),
                retry_after_secs: 1,
                extra: Map::new(),
            },
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::Internal
            }
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound | ApiError::NotFound404(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::OAuth { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } | ApiError::TooLarge(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            ApiError::UpgradeRequired(_) => StatusCode::UPGRADE_REQUIRED,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn into_response(self) -> Response {
        self.render(None)
    }

    /// The problem with the Open Inference Protocol's `error` member beside
    /// its fields (the same text as `detail`), which KServe and Triton
    /// clients show.
    pub fn into_inference_response(self) -> Response {
        let error = self.to_string();
        self.render(Some(error))
    }

    fn render(self, error_member: Option<String>) -> Response {
        let status = self.status();
        if let ApiError::OAuth {
            error,
            description,
            retry_after_secs,
            ..
        } = self
        {
            let body = json!({"error": error, "error_description": description});
            let mut response = json_response(status, JSON, &body);
            let h = response.headers_mut();
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            if let Some(secs) = retry_after_secs {
                h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            // RFC 6749 §5.2: a refused client is told which scheme it may use.
            if status == StatusCode::UNAUTHORIZED {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Basic realm="mlapi""#),
                );
            }
            return response;
        }
        let mut body = Map::new();
        body.insert("type".into(), json!("about:blank"));
        body.insert(
            "title".into(),
            json!(status.canonical_reason().unwrap_or("Error")),
        );
        body.insert("status".into(), json!(status.as_u16()));
        body.insert("detail".into(), json!(self.to_string()));
        if let Some(error) = error_member {
            body.insert("error".into(), json!(error));
        }
        let mut headers: Vec<(header::HeaderName, HeaderValue)> = Vec::new();
        match self {
            ApiError::Validation(errors) => {
                body.insert("errors".into(), json!(errors));
            }
            ApiError::Unavailable {
                retry_after_secs,
                extra,
                ..
            } => {
                headers.push((header::RETRY_AFTER, HeaderValue::from(retry_after_secs)));
                body.extend(extra);
            }
            ApiError::TooManyRequests {
                retry_after_secs,
                violated,
                ..
            } => {
                headers.push((header::RETRY_AFTER, HeaderValue::from(retry_after_secs)));
                if !violated.is_empty() {
                    body.insert("type".into(), json!(QUOTA_EXCEEDED));
                    body.insert("violated-policies".into(), json!(violated));
                }
            }
            ApiError::Unauthorized { presented, .. } => {
                let value = if presented {
                    r#"Bearer realm="mlapi", error="invalid_token""#
                } else {
                    r#"Bearer realm="mlapi""#
                };
                headers.push((header::WWW_AUTHENTICATE, HeaderValue::from_static(value)));
            }
            ApiError::Forbidden {
                scope: Some(scope), ..
            } => {
                let value =
                    format!(r#"Bearer realm="mlapi", error="insufficient_scope", scope="{scope}""#);
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.push((header::WWW_AUTHENTICATE, v));
                }
                body.insert("scope".into(), json!(scope));
            }
            ApiError::UpgradeRequired(_) => {
                headers.push((header::UPGRADE, HeaderValue::from_static("websocket")));
                headers.push((
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                ));
            }
            _ => {}
        }
        let mut response = json_response(status, PROBLEM_JSON, &Value::Object(body));
        response.headers_mut().extend(headers);
        response
    }
}

/// A JSON response with an explicit charset (ASVS 4.1.1).
pub fn json_response(status: StatusCode, content_type: &str, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).expect("response bodies serialize");
    json_text_response(status, content_type, bytes)
}

/// [`json_response`] for a body that is JSON text already.
pub fn json_text_response(status: StatusCode, content_type: &str, bytes: Vec<u8>) -> Response {
    let mut response = Response::new(bytes.into());
    *response.status_mut() = status;
    let value = if content_type == PROBLEM_JSON {
        HeaderValue::from_static("application/problem+json; charset=utf-8")
    } else {
        debug_assert_eq!(content_type, JSON);
        HeaderValue::from_static("application/json; charset=utf-8")
    };
    let h = response.headers_mut();
    // Room for what the pipeline adds (security, request id, version,
    // rate-limit and cache headers) without growing the map on the way.
    h.reserve(RESPONSE_HEADERS);
    h.insert(header::CONTENT_TYPE, value);
    response
}

/// About how many headers a response ends up with.
const RESPONSE_HEADERS: usize = 24;

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(response: Response) -> Value {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = runtime
            .block_on(http_body_util::BodyExt::collect(response.into_body()))
            .unwrap()
            .to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn busy_store_is_503_with_retry_after() {
        let response = ApiError::from(StoreError::Busy).into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json; charset=utf-8"
        );
        let body = body_json(response);
        assert_eq!(body["status"], 503);
        assert!(body["detail"].as_str().unwrap().contains("busy"));
    }

    #[test]
    fn validation_lists_fields() {
        let response = ApiError::Validation(vec![FieldError {
            field: "features".into(),
            message: "required".into(),
        }])
        .into_response();
        assert_eq!(response.status(), 422);
        let body = body_json(response);
        assert_eq!(body["errors"][0]["field"], "features");
        assert_eq!(body["title"], "Unprocessable Entity");
    }
}
