//! API-key routes: create, list, revoke, rotate (the caller's own keys), and
//! an admin's revoke of anyone's. The rules live in `identity::keys`.

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::no_content;
use crate::core::error::FieldError;
use crate::core::scopes::Scopes;
use crate::http::pipeline::Call;
use crate::http::problem::{json_response, ApiError, Response, JSON};
use crate::identity::keys::NewKey;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKeyRequest {
    name: String,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    /// RFC 3339 instant.
    #[serde(default)]
    expires_at: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    #[serde(default, deserialize_with = "whole_seconds")]
    grace_seconds: Option<u64>,
}

/// A whole number of seconds, also when written `60.0`: JSON (and so the
/// OpenAPI document's `integer`) does not tell the two apart.
fn whole_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(n) = n.as_u64() {
        return Ok(Some(n));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f) => Ok(Some(f as u64)),
        _ => Err(serde::de::Error::custom(format!(
            "invalid value: {n}, expected a whole number of seconds, 0 or more"
        ))),
    }
}

pub async fn create(mut call: Call) -> Result<Response, ApiError> {
    let req: NewKeyRequest = call.json().await?;
    let mut errors = Vec::new();
    let scopes = match req.scopes {
        None => None,
        Some(names) => match Scopes::parse(&names.join(" ")) {
            Ok(scopes) => Some(scopes),
            Err(e) => {
                errors.push(FieldError::new("scopes", e));
                None
            }
        },
    };
    let expires_at = match req.expires_at.as_deref() {
        None => None,
        Some(text) => {
            match time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            {
                Ok(t) => Some(t.unix_timestamp()),
                Err(_) => {
                    errors.push(FieldError::new(
                        "expires_at",
                        "must be an RFC 3339 instant, e.g. 2027-01-31T00:00:00Z",
                    ));
                    None
                }
            }
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let p = call.caller();
    // A key never carries more than the session that minted it.
    let new = NewKey {
        owner: p.user.id.clone(),
        name: req.name,
        scopes,
        expires_at,
    };
    let key = call
        .app()
        .identity
        .create_key(new, Some(p.scopes), &call.actor())
        .await?;
    Ok(json_response(StatusCode::CREATED, JSON, &key))
}

pub async fn list(call: Call) -> Result<Response, ApiError> {
    let list = call
        .app()
        .identity
        .list_keys(Some(&call.caller().user.id))
        .await?;
    Ok(json_response(
        StatusCode::OK,
        JSON,
        &json!({ "keys": list }),
    ))
}

pub async fn revoke(call: Call) -> Result<Response, ApiError> {
    let owner = &call.caller().user.id;
    call.app()
        .identity
        .revoke_key(call.param(0), Some(owner), &call.actor())
        .await?;
    Ok(no_content())
}

pub async fn rotate(mut call: Call) -> Result<Response, ApiError> {
    let req: RotateRequest = call.optional_json().await?;
    let p = call.caller();
    let key = call
        .app()
        .identity
        .rotate_key(
            call.param(0),
            Some(&p.user.id),
            Some(p.scopes),
            req.grace_seconds.unwrap_or(0),
            &call.actor(),
        )
        .await?;
    Ok(json_response(StatusCode::CREATED, JSON, &key))
}

pub async fn admin_revoke(call: Call) -> Result<Response, ApiError> {
    call.app()
        .identity
        .revoke_key(call.param(0), None, &call.actor())
        .await?;
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::RotateRequest;
    use crate::http::body::decode;

    #[test]
    fn grace_seconds_are_whole_numbers_however_written() {
        let grace = |text: &str| decode::<RotateRequest>(text.as_bytes()).map(|r| r.grace_seconds);
        assert_eq!(grace(r#"{"grace_seconds": 60}"#).unwrap(), Some(60));
        assert_eq!(grace(r#"{"grace_seconds": 60.0}"#).unwrap(), Some(60));
        assert_eq!(grace(r#"{"grace_seconds": null}"#).unwrap(), None);
        assert_eq!(grace("{}").unwrap(), None);
        for refused in ["60.5", "-1", "1e300", "\"60\""] {
            let body = format!(r#"{{"grace_seconds": {refused}}}"#);
            let status = grace(&body).unwrap_err().status();
            assert_eq!(status, 422, "{refused}");
        }
    }
}
