//! Request bodies: the content-type check, the size limit (with or without
//! `Content-Length`), and JSON decoding into typed requests with errors a
//! client can act on.
//!
//! Nothing here allocates more than the configured limit for a body.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use super::problem::{ApiError, FieldError};

/// A JSON body of type `T`: 415 unless `Content-Type` is JSON, 413 past
/// `limit` bytes, 400 for malformed JSON or unknown/duplicate fields, 422
/// naming the field for wrong types or missing fields.
pub async fn json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Incoming,
    limit: u64,
) -> Result<T, ApiError> {
    check_json_content_type(headers)?;
    let bytes = read_limited(headers, body, limit).await?;
    decode::<T>(&bytes)
}

/// [`json`] for a body that may be absent (no body, or `Content-Length: 0`):
/// then `T::default()`.
pub async fn optional_json<T: DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: Incoming,
    limit: u64,
) -> Result<T, ApiError> {
    let chunked = headers.contains_key(http::header::TRANSFER_ENCODING);
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if !chunked && declared == 0 {
        return Ok(T::default());
    }
    json(headers, body, limit).await
}

/// A body that may be JSON or an HTML form (the OAuth2 password flow).
#[derive(Debug, Clone)]
pub enum Payload {
    Json(Bytes),
    Form(Bytes),
}

/// A JSON or `application/x-www-form-urlencoded` body, within `limit`.
pub async fn json_or_form(
    headers: &HeaderMap,
    body: Incoming,
    limit: u64,
) -> Result<Payload, ApiError> {
    let form = is_form(headers);
    if !form {
        check_json_content_type(headers).map_err(|_| {
            ApiError::UnsupportedMediaType(
                "send JSON (Content-Type: application/json) or a form (application/x-www-form-urlencoded)"
                    .into(),
            )
        })?;
    }
    let bytes = read_limited(headers, body, limit).await?;
    Ok(if form {
        Payload::Form(bytes)
    } else {
        Payload::Json(bytes)
    })
}

/// A form body only (RFC 6749 token requests).
pub async fn form(headers: &HeaderMap, body: Incoming, limit: u64) -> Result<Bytes, ApiError> {
    if !is_form(headers) {
        return Err(ApiError::UnsupportedMediaType(
            "send the request as Content-Type: application/x-www-form-urlencoded".into(),
        ));
    }
    read_limited(headers, body, limit).await
}

/// An Open Inference Protocol body: JSON, or (Triton's binary tensor
/// extension) a JSON header of `Inference-Header-Content-Length` bytes
/// followed by raw tensor data. Returns the bytes and the header's length.
/// tritonclient sends no `Content-Type`, so none is accepted too.
pub async fn inference(
    headers: &HeaderMap,
    body: Incoming,
    limit: u64,
) -> Result<(Bytes, usize), ApiError> {
    let essence = headers.get(http::header::CONTENT_TYPE).map(|v| {
        v.to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    if let Some(essence) = &essence {
        if essence != "application/json" && essence != "application/octet-stream" {
            return Err(ApiError::UnsupportedMediaType(
                "send JSON (Content-Type: application/json), or the binary tensor extension (application/octet-stream with Inference-Header-Content-Length)".into(),
            ));
        }
    }
    let header_length = match headers.get("inference-header-content-length") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "Inference-Header-Content-Length must be a byte count".into(),
                    )
                })?,
        ),
    };
    let bytes = read_limited(headers, body, limit).await?;
    let header_length = header_length.unwrap_or(bytes.len());
    if header_length > bytes.len() {
        return Err(ApiError::BadRequest(format!(
            "Inference-Header-Content-Length is {header_length}, but the body has {} bytes",
            bytes.len()
        )));
    }
    Ok((bytes, header_length))
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Decodes a form; a missing or mistyped field is a 422 naming it.
pub fn decode_form<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_urlencoded::from_bytes(bytes).map_err(|e| {
        let message = e.to_string();
        let field = missing_field(&message).unwrap_or_default();
        ApiError::Validation(vec![FieldError { field, message }])
    })
}

fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let wrong = || {
        ApiError::UnsupportedMediaType(
            "send the body as JSON with Content-Type: application/json".into(),
        )
    };
    let value = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(wrong)?;
    let mut parts = value.split(';').map(str::trim);
    let essence = parts.next().unwrap_or("").as_bytes();
    let has = |at: usize, text: &str| {
        essence
            .get(at..at + text.len())
            .is_some_and(|part| part.eq_ignore_ascii_case(text.as_bytes()))
    };
    let structured = essence.len() >= "application/+json".len()
        && has(0, "application/")
        && has(essence.len() - "+json".len(), "+json");
    if !(essence.eq_ignore_ascii_case(b"application/json") || structured) {
        return Err(wrong());
    }
    for param in parts {
        if let Some((name, value)) = param.split_once('=') {
            if name.trim().eq_ignore_ascii_case("charset")
                && !value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            {
                return Err(ApiError::UnsupportedMediaType(
                    "JSON bodies must be UTF-8".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Reads the body, refusing early when `Content-Length` is over the limit and
/// stopping as soon as a chunked body passes it.
async fn read_limited(headers: &HeaderMap, body: Incoming, limit: u64) -> Result<Bytes, ApiError> {
    let too_large = ApiError::PayloadTooLarge { limit };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large);
    }
    let mut collected = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|_| ApiError::BadRequest("the request body could not be read".into()))?;
        // Trailers carry no body bytes.
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        if collected.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large);
        }
        collected.extend_from_slice(&chunk);
    }
    Ok(collected.freeze())
}

/// Decodes JSON, separating malformed documents (400) from well-formed ones
/// with the wrong shape (422, naming the field).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // The common case in one pass; only a refused body pays for the
    // diagnosis below (which gives the same answer for it either way).
    let object = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    if object {
        if let Ok(value) = serde_json::from_slice::<T>(bytes) {
            return Ok(value);
        }
    }
    // Every mlapi request body is an object; serde would otherwise also
    // accept a struct written as an array.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        let well_formed = serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
        return Err(if well_formed {
            ApiError::Validation(vec![FieldError {
                field: String::new(),
                message: "the body must be a JSON object".into(),
            }])
        } else {
            ApiError::BadRequest("malformed JSON".into())
        });
    }
    // Well-formedness first (cheap: nothing is allocated), so a broken
    // document is always a 400 whatever shape the endpoint expects.
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        let reason = if e.is_eof() {
            "the body ended early".to_string()
        } else {
            strip_position(&e.to_string())
        };
        return Err(ApiError::BadRequest(format!("malformed JSON: {reason}")));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = strip_position(&inner.to_string());
        use serde_json::error::Category;
        match inner.classify() {
            Category::Data if !is_structure_error(&message) => {
                ApiError::Validation(vec![FieldError {
                    field: match (path.as_str(), missing_field(&message)) {
                        (".", Some(name)) => name,
                        (".", None) => String::new(),
                        (_, Some(name)) => format!("{path}.{name}"),
                        _ => path,
                    },
                    message,
                }])
            }
            Category::Data => ApiError::BadRequest(format!("{message} (at `{path}`)")),
            Category::Eof => ApiError::BadRequest("malformed JSON: the body ended early".into()),
            // The document is well-formed (checked above): serde_json reports
            // some wrong shapes (a number where an enum's name belongs) as
            // syntax, and those are a field to correct.
            Category::Syntax if message == "expected value" => {
                ApiError::Validation(vec![FieldError {
                    field: path.trim_start_matches('.').to_string(),
                    message: "invalid type or value".into(),
                }])
            }
            Category::Syntax | Category::Io => {
                ApiError::BadRequest(format!("malformed JSON: {message}"))
            }
        }
    })?;
    de.end().map_err(|_| {
        ApiError::BadRequest("malformed JSON: trailing characters after the document".into())
    })?;
    Ok(value)
}

/// serde names a missing field only in its message: "missing field `x`".
fn missing_field(message: &str) -> Option<String> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
        .map(str::to_string)
}

/// Unknown or repeated fields are a malformed request (400), not a value a
/// client can correct field by field; serde_json reports them only by message.
fn is_structure_error(message: &str) -> bool {
    message.starts_with("unknown field") || message.starts_with("duplicate field")
}

/// serde_json appends " at line L column C"; the client needs only the reason.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Req {
        name: String,
        count: Option<u32>,
    }

    #[test]
    fn decode_classifies_errors() {
        assert!(decode::<Req>(br#"{"name":"a"}"#).is_ok());
        let status = |b: &[u8]| decode::<Req>(b).unwrap_err().status().as_u16();
        assert_eq!(status(b"{"), 400);
        assert_eq!(status(b"{\"name\": NaN}"), 400);
        assert_eq!(status(br#"{"name":"a"} x"#), 400);
        assert_eq!(status(br#"{"name":"a","extra":1}"#), 400);
        assert_eq!(status(br#"{"name":"a","name":"b"}"#), 400);
        // serde_json's recursion limit turns deep nesting into a fast 400.
        assert_eq!(status(&[b'['; 10_000]), 400);
        // Well-formed but deep: the wrong shape for a struct (422, found at
        // depth one), past the recursion limit for a free-form value (400).
        let mut closed = vec![b'['; 5_000];
        closed.extend(vec![b']'; 5_000]);
        assert_eq!(status(&closed), 422);
        let mut wrapped = b"{\"a\":".to_vec();
        wrapped.extend(&closed);
        wrapped.push(b'}');
        assert_eq!(
            decode::<serde_json::Value>(&wrapped).unwrap_err().status(),
            400
        );
        match decode::<Req>(br#"{"name":"a","count":-1}"#).unwrap_err() {
            ApiError::Validation(errors) => assert_eq!(errors[0].field, "count"),
            other => panic!("expected 422, got {other:?}"),
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        enum Kind {
            A,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct WithKind {
            kind: Kind,
        }
        match decode::<WithKind>(br#"{"kind": 5}"#).unwrap_err() {
            ApiError::Validation(errors) => assert_eq!(errors[0].field, "kind"),
            other => panic!("expected 422, got {other:?}"),
        }
        match decode::<Req>(br#"{}"#).unwrap_err() {
            ApiError::Validation(errors) => {
                assert!(errors[0].message.contains("missing field `name`"));
                assert_eq!(errors[0].field, "name");
            }
            other => panic!("expected 422, got {other:?}"),
        }
    }

    #[test]
    fn content_types() {
        let check = |ct: Option<&str>| {
            let mut h = HeaderMap::new();
            if let Some(ct) = ct {
                h.insert("content-type", ct.parse().unwrap());
            }
            check_json_content_type(&h).is_ok()
        };
        assert!(check(Some("application/json")));
        assert!(check(Some("Application/JSON; charset=UTF-8")));
        assert!(check(Some("application/merge-patch+json")));
        assert!(check(Some("APPLICATION/VND.API+JSON")));
        assert!(!check(None));
        assert!(!check(Some("text/x+json")));
        assert!(!check(Some("application/jsonx")));
        assert!(!check(Some("text/plain")));
        assert!(!check(Some("application/x-www-form-urlencoded")));
        assert!(!check(Some("application/json; charset=latin1")));
    }
}
