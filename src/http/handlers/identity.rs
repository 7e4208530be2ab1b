//! Identity routes: register, login (JSON and OAuth2 form), the OAuth2
//! token endpoint, refresh, logout, `/users/me`, and the admin user routes.
//!
//! Decoding and encoding only; the rules live in `identity`.

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::no_content;
use crate::core::error::FieldError;
use crate::core::scopes::Role;
use crate::http::body::{self, Payload};
use crate::http::pipeline::Call;
use crate::http::problem::{json_response, ApiError, Response, JSON};
use crate::identity::accounts::{Change, User};
use crate::identity::sessions::TokenPair;
use crate::identity::Principal;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    username: String,
    email: String,
    password: String,
}

#[derive(Deserialize)]
struct LoginRequest {
    username: String,
    password: String,
    #[serde(default)]
    scope: Option<String>,
    /// Sent by OAuth2 clients using the form; must be `password` if present.
    #[serde(default)]
    grant_type: Option<String>,
    /// OAuth2 clients may send these; mlapi has no registered clients.
    #[serde(default)]
    #[allow(dead_code)]
    client_id: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    client_secret: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    username: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPatch {
    role: Option<Role>,
    tier: Option<String>,
    disabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    offset: Option<u32>,
}

fn tokens_response(pair: &TokenPair) -> Response {
    let mut response = json_response(StatusCode::OK, JSON, pair);
    response.headers_mut().insert(
        http::header::PRAGMA,
        http::HeaderValue::from_static("no-cache"),
    );
    response
}

fn me_body(user: &User, p: Option<&Principal>) -> serde_json::Value {
    let mut body = serde_json::to_value(user).expect("users serialize");
    if let Some(p) = p {
        body["scopes"] = json!(p.scopes.names());
    }
    body
}

pub async fn register(mut call: Call) -> Result<Response, ApiError> {
    let req: RegisterRequest = call.json().await?;
    let user = call
        .app()
        .identity
        .register(req.username, req.email, req.password, &call.actor())
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        JSON,
        &me_body(&user, None),
    ))
}

pub async fn login(mut call: Call) -> Result<Response, ApiError> {
    let req: LoginRequest = match call.json_or_form().await? {
        Payload::Json(b) => body::decode(&b)?,
        Payload::Form(b) => body::decode_form(&b)?,
    };
    if req.grant_type.as_deref().is_some_and(|g| g != "password") {
        return Err(ApiError::BadRequest(
            "grant_type must be \"password\" here; use /api/v1/auth/token for other grants".into(),
        ));
    }
    let pair = call
        .app()
        .identity
        .login(
            &req.username,
            req.password,
            req.scope.as_deref(),
            &call.actor(),
        )
        .await?;
    Ok(tokens_response(&pair))
}

/// `POST /api/v1/auth/token` (RFC 6749 §4.3 and §6): every refusal in the
/// OAuth2 error format.
pub async fn token(mut call: Call) -> Result<Response, ApiError> {
    let form = call.form().await?;
    let oauth = |error: &'static str, description: String| ApiError::OAuth {
        status: 400,
        error,
        description,
        retry_after_secs: None,
    };
    let req: TokenRequest =
        serde_urlencoded::from_bytes(&form).map_err(|e| oauth("invalid_request", e.to_string()))?;
    check_client(&call.parts.headers, &req)?;
    let missing = |name: &str| oauth("invalid_request", format!("missing parameter `{name}`"));
    let app = call.app();
    let actor = call.actor();
    let pair = match req.grant_type.as_deref() {
        Some("password") if app.config.auth.password_grant => {
            let username = req.username.ok_or_else(|| missing("username"))?;
            let password = req.password.ok_or_else(|| missing("password"))?;
            app.identity
                .login(&username, password, req.scope.as_deref(), &actor)
                .await
                .map_err(ApiError::oauth)?
        }
        Some("refresh_token") => {
            let token = req.refresh_token.ok_or_else(|| missing("refresh_token"))?;
            app.identity
                .refresh(&token, &actor)
                .await
                .map_err(ApiError::oauth)?
        }
        None => return Err(missing("grant_type")),
        Some(_) => {
            return Err(oauth(
                "unsupported_grant_type",
                "supported grant types: password, refresh_token".into(),
            ))
        }
    };
    Ok(tokens_response(&pair))
}

/// Client authentication at the token endpoint (RFC 6749 §2.3). mlapi
/// registers no OAuth2 clients, so every client is public: it may name
/// itself (`client_id` in the body, or as the user of a Basic header with an
/// empty password, which Swagger UI sends by default) and is not checked
/// further. A client secret cannot be verified, so it is refused rather than
/// silently ignored, and one request uses one method only (§2.3).
fn check_client(headers: &http::HeaderMap, req: &TokenRequest) -> Result<(), ApiError> {
    let invalid_client = |description: &str| ApiError::OAuth {
        status: 401,
        error: "invalid_client",
        description: description.into(),
        retry_after_secs: None,
    };
    let no_secret = "mlapi registers no OAuth2 clients: send no client secret";
    let basic = headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""))
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"));
    if let Some((_, encoded)) = basic {
        use base64::Engine;
        let malformed = || invalid_client("malformed Basic client credentials");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| malformed())?;
        let text = String::from_utf8(decoded).map_err(|_| malformed())?;
        let (_id, secret) = text.split_once(':').ok_or_else(malformed)?;
        if !secret.is_empty() {
            return Err(invalid_client(no_secret));
        }
        if req.client_id.is_some() || req.client_secret.is_some() {
            return Err(ApiError::OAuth {
                status: 400,
                error: "invalid_request",
                description:
                    "send client credentials in the Authorization header or the body, not both"
                        .into(),
                retry_after_secs: None,
            });
        }
    }
    if req.client_secret.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(invalid_client(no_secret));
    }
    Ok(())
}

pub async fn refresh(mut call: Call) -> Result<Response, ApiError> {
    let req: RefreshRequest = call.json().await?;
    let pair = call
        .app()
        .identity
        .refresh(&req.refresh_token, &call.actor())
        .await?;
    Ok(tokens_response(&pair))
}

pub async fn logout(call: Call) -> Result<Response, ApiError> {
    call.app()
        .identity
        .logout(call.caller(), &call.actor())
        .await?;
    Ok(no_content())
}

pub async fn me(call: Call) -> Result<Response, ApiError> {
    let p = call.caller();
    Ok(json_response(
        StatusCode::OK,
        JSON,
        &me_body(&p.user, Some(p)),
    ))
}

pub async fn admin_list(call: Call) -> Result<Response, ApiError> {
    let page: Page = call.query()?;
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let offset = page.offset.unwrap_or(0);
    let list = call.app().identity.list_users(limit, offset).await?;
    Ok(json_response(
        StatusCode::OK,
        JSON,
        &json!({"users": list, "limit": limit, "offset": offset}),
    ))
}

pub async fn admin_get(call: Call) -> Result<Response, ApiError> {
    let user = call.app().identity.show_user(call.param(0)).await?;
    Ok(json_response(StatusCode::OK, JSON, &user))
}

pub async fn admin_patch(mut call: Call) -> Result<Response, ApiError> {
    let patch: UserPatch = call.json().await?;
    let app = call.app();
    let p = call.caller();
    let target = app.identity.show_user(call.param(0)).await?;
    let mut changes = Vec::new();
    if let Some(role) = patch.role {
        changes.push(Change::Role(role));
    }
    if let Some(tier) = patch.tier {
        changes.push(Change::Tier(tier));
    }
    if let Some(disabled) = patch.disabled {
        changes.push(Change::Disabled(disabled));
    }
    if changes.is_empty() {
        return Err(ApiError::Validation(vec![FieldError::new(
            "",
            "send at least one of role, tier, disabled",
        )]));
    }
    // An admin cannot lock themselves out through the API; the CLI can.
    let self_harm = target.id == p.user.id
        && changes.iter().any(|c| {
            matches!(c, Change::Disabled(true)) || matches!(c, Change::Role(r) if *r != Role::Admin)
        });
    if self_harm {
        return Err(ApiError::Conflict(
            "you cannot disable or demote your own account; ask another admin or use the CLI"
                .into(),
        ));
    }
    let actor = call.actor();
    let mut user = target;
    for change in changes {
        user = app.identity.update_user(&user.id, change, &actor).await?;
    }
    Ok(json_response(StatusCode::OK, JSON, &user))
}
