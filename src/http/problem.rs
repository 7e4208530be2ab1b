//! The HTTP error boundary: `ApiError`, and its one mapping to an RFC 9457
//! `application/problem+json` response. Every non-2xx answer the daemon
//! produces goes through `ApiError::into_response`.
//!
//! Messages here are shown to clients: they must never echo a submitted
//! secret, a file path, SQL, or a panic message.

use serde::Serialize;
use serde_json::{json, Map, Value};
use warp::http::{header, HeaderValue, StatusCode};
use warp::hyper::Body;

use crate::store::StoreError;

pub type Response = warp::http::Response<Body>;

pub const PROBLEM_JSON: &str = "application/problem+json";
pub const JSON: &str = "application/json";

/// One invalid field in a 422 answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("no route for this path")]
    NotFound,
    #[error("this path does not accept the method")]
    MethodNotAllowed,
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("request failed validation")]
    Validation(Vec<FieldError>),
    #[error("{detail}")]
    Unavailable {
        detail: String,
        retry_after_secs: u64,
        extra: Map<String, Value>,
    },
    /// The cause is logged by whoever creates this; the client learns nothing.
    #[error("internal error")]
    Internal,
}

impl warp::reject::Reject for ApiError {}

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
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn into_response(self) -> Response {
        let status = self.status();
        let mut body = Map::new();
        body.insert("type".into(), json!("about:blank"));
        body.insert(
            "title".into(),
            json!(status.canonical_reason().unwrap_or("Error")),
        );
        body.insert("status".into(), json!(status.as_u16()));
        body.insert("detail".into(), json!(self.to_string()));
        let mut retry_after = None;
        match self {
            ApiError::Validation(errors) => {
                body.insert("errors".into(), json!(errors));
            }
            ApiError::Unavailable {
                retry_after_secs,
                extra,
                ..
            } => {
                retry_after = Some(retry_after_secs);
                body.extend(extra);
            }
            _ => {}
        }
        let mut response = json_response(status, PROBLEM_JSON, &Value::Object(body));
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A JSON response with an explicit charset (ASVS 4.1.1).
pub fn json_response(status: StatusCode, content_type: &str, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).expect("response bodies serialize");
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    let value = HeaderValue::from_str(&format!("{content_type}; charset=utf-8"))
        .expect("static content type");
    response.headers_mut().insert(header::CONTENT_TYPE, value);
    response
}

/// Turns warp's own rejections (routing) and ours (body extraction) into problems.
pub async fn recover(rejection: warp::Rejection) -> Result<Response, std::convert::Infallible> {
    let error = if let Some(e) = rejection.find::<ApiError>() {
        e.clone()
    } else if rejection.is_not_found() {
        ApiError::NotFound
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::MethodNotAllowed
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        ApiError::BadRequest(format!("invalid query string: {e}"))
    } else if rejection.find::<warp::reject::InvalidHeader>().is_some()
        || rejection.find::<warp::reject::MissingHeader>().is_some()
    {
        ApiError::BadRequest("a required header is missing or malformed".into())
    } else {
        tracing::error!(?rejection, "unhandled rejection");
        ApiError::Internal
    };
    Ok(error.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(response: Response) -> Value {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = runtime
            .block_on(warp::hyper::body::to_bytes(response.into_body()))
            .unwrap();
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
