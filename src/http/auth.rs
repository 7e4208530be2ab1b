//! HTTP adapters for identity: register, login (JSON and OAuth2 form), the
//! OAuth2 token endpoint, refresh, logout, `/users/me`, and the admin user
//! routes. Also the `principal` filter every protected route uses.
//!
//! Decoding and encoding only; the rules live in `auth` and `users`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use warp::Filter;

use super::body::{self, Payload};
use super::limits::{limit_anonymous, limit_user};
use super::middleware::RequestContext;
use super::problem::{json_response, ApiError, Response, JSON};
use crate::app::App;
use crate::audit::{self, Action, Actor};
use crate::auth::scopes::{Role, Scope};
use crate::auth::{self, Credential, Principal, TokenPair};
use crate::error::Error;
use crate::keys;
use crate::ratelimit::Group;
use crate::users::{self, Change, User};

pub(super) fn with_app(
    app: &Arc<App>,
) -> impl Filter<Extract = (Arc<App>,), Error = std::convert::Infallible> + Clone {
    let app = Arc::clone(app);
    warp::any().map(move || Arc::clone(&app))
}

/// The request's id and client address, as set by the middleware.
pub(super) fn context(
) -> impl Filter<Extract = (RequestContext,), Error = std::convert::Infallible> + Clone {
    warp::ext::optional::<RequestContext>().map(|ctx: Option<RequestContext>| {
        ctx.unwrap_or_else(|| RequestContext {
            request_id: "".into(),
            client_ip: std::net::IpAddr::from([0, 0, 0, 0]),
            limits: Default::default(),
        })
    })
}

fn actor(name: &str, ctx: &RequestContext) -> Actor {
    Actor {
        name: name.to_string(),
        client_ip: Some(ctx.client_ip.to_string()),
        request_id: Some(ctx.request_id.to_string()),
    }
}

/// The authenticated caller, from `X-API-Key: sk_live_…` or
/// `Authorization: Bearer <JWT or sk_live_ key>`; 401 otherwise. Credentials
/// in the query string are never accepted (RFC 6750 §2.3).
pub fn principal(
    app: &Arc<App>,
) -> impl Filter<Extract = (Principal,), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(warp::header::optional::<String>("x-api-key"))
        .and(with_app(app))
        .and_then(
            |header: Option<String>, api_key: Option<String>, app: Arc<App>| async move {
                authenticate(&app, header.as_deref(), api_key.as_deref())
                    .map_err(warp::reject::custom)
            },
        )
}

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// [`principal`] over a request's headers, for routes served outside warp.
/// A header that is not visible ASCII counts as absent.
pub(super) fn principal_from(app: &App, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    authenticate(app, text(header::AUTHORIZATION), text(X_API_KEY))
}

fn authenticate(
    app: &App,
    authorization: Option<&str>,
    api_key: Option<&str>,
) -> Result<Principal, ApiError> {
    let bearer = authorization
        .and_then(|h| h.split_once(' '))
        .and_then(|(scheme, token)| {
            (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
                .then(|| token.trim())
        });
    let principal = match (api_key.map(str::trim), bearer) {
        // `X-API-Key` carries keys only, so its refusal speaks of a key.
        (Some(key), _) if !key.is_empty() => auth::authenticate_key(app, key),
        (_, Some(token)) => auth::authenticate(app, token),
        _ => {
            return Err(ApiError::Unauthorized {
                presented: false,
                detail: "authentication required: send Authorization: Bearer <access token> or X-API-Key: <key>"
                    .into(),
            })
        }
    };
    principal.map_err(ApiError::from)
}

/// What every protected handler starts from: the app, the request's
/// context and the authenticated caller, once the caller's rate limits for
/// `group` allowed the request (401s never count against a quota).
pub(super) fn authed(
    app: &Arc<App>,
    group: Group,
) -> impl Filter<Extract = (Arc<App>, RequestContext, Principal), Error = warp::Rejection> + Clone {
    with_app(app)
        .and(context())
        .and(principal(app))
        .and_then(
            move |app: Arc<App>, ctx: RequestContext, p: Principal| async move {
                match limit_user(&app, &ctx, &p, group).await {
                    Ok(()) => Ok((app, ctx, p)),
                    Err(e) => Err(warp::reject::custom(ApiError::from(e))),
                }
            },
        )
        .untuple_one()
}

/// Account routes (key management, logout) need a user session: an API key
/// cannot mint, rotate or revoke keys (catalog K7, K8).
fn require_session(p: &Principal) -> Result<(), ApiError> {
    match p.credential {
        Credential::Session { .. } => Ok(()),
        Credential::ApiKey { .. } => Err(ApiError::Forbidden {
            detail: "this route needs a signed-in user (a bearer access token), not an API key"
                .into(),
            scope: None,
        }),
    }
}

/// Checks a scope, auditing a refusal (`authz_fail`).
pub(super) async fn authorize(
    app: &Arc<App>,
    p: &Principal,
    scope: Scope,
    ctx: &RequestContext,
) -> Result<(), ApiError> {
    if p.require(scope).is_ok() {
        return Ok(());
    }
    let actor = actor(&p.user.username, ctx);
    let detail = format!("missing scope {scope}");
    let recorded = app
        .blocking(move |app| {
            app.store.write(|tx| {
                audit::record(tx, &actor, Action::AuthzFail, None, false, Some(&detail))
            })
        })
        .await;
    if let Err(e) = recorded {
        return Err(e.into());
    }
    Err(Error::MissingScope(scope).into())
}

pub(super) fn reply(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(ApiError::into_response)
}

fn tokens_response(pair: &TokenPair) -> Response {
    let mut response = json_response(StatusCode::OK, JSON, pair);
    response.headers_mut().insert(
        warp::http::header::PRAGMA,
        warp::http::HeaderValue::from_static("no-cache"),
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
    #[serde(default)]
    grace_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    offset: Option<u32>,
}

pub fn routes(app: &Arc<App>) -> BoxedFilter<(Response,)> {
    let max = app.config.server.max_body_bytes;

    let register = warp::path!("api" / "v1" / "auth" / "register")
        .and(warp::post())
        .and(with_app(app))
        .and(context())
        .and(body::json::<RegisterRequest>(max))
        .then(
            |app: Arc<App>, ctx: RequestContext, req: RegisterRequest| async move {
                reply(
                    async {
                        limit_anonymous(&app, &ctx).await?;
                        let actor = actor("anonymous", &ctx);
                        let user =
                            auth::register(&app, req.username, req.email, req.password, &actor)
                                .await?;
                        Ok(json_response(
                            StatusCode::CREATED,
                            JSON,
                            &me_body(&user, None),
                        ))
                    }
                    .await,
                )
            },
        );

    let login = warp::path!("api" / "v1" / "auth" / "login")
        .and(warp::post())
        .and(with_app(app))
        .and(context())
        .and(body::json_or_form(max))
        .then(|app: Arc<App>, ctx: RequestContext, payload: Payload| async move {
            reply(async {
                limit_anonymous(&app, &ctx).await?;
                let req: LoginRequest = match payload {
                    Payload::Json(b) => body::decode(&b)?,
                    Payload::Form(b) => body::decode_form(&b)?,
                };
                if req.grant_type.as_deref().is_some_and(|g| g != "password") {
                    return Err(ApiError::BadRequest(
                        "grant_type must be \"password\" here; use /api/v1/auth/token for other grants".into(),
                    ));
                }
                let actor = actor("anonymous", &ctx);
                let pair = auth::login(&app, &req.username, req.password, req.scope.as_deref(), &actor).await?;
                Ok(tokens_response(&pair))
            }
            .await)
        });

    let token = warp::path!("api" / "v1" / "auth" / "token")
        .and(warp::post())
        .and(with_app(app))
        .and(context())
        .and(body::form(max))
        .then(
            |app: Arc<App>, ctx: RequestContext, form: bytes::Bytes| async move {
                reply(
                    token_grant(&app, &ctx, &form)
                        .await
                        .map(|p| tokens_response(&p)),
                )
            },
        );

    let refresh = warp::path!("api" / "v1" / "auth" / "refresh")
        .and(warp::post())
        .and(with_app(app))
        .and(context())
        .and(body::json::<RefreshRequest>(max))
        .then(
            |app: Arc<App>, ctx: RequestContext, req: RefreshRequest| async move {
                reply(
                    async {
                        limit_anonymous(&app, &ctx).await?;
                        let pair =
                            auth::refresh(&app, &req.refresh_token, &actor("anonymous", &ctx))
                                .await?;
                        Ok(tokens_response(&pair))
                    }
                    .await,
                )
            },
        );

    let logout = warp::path!("api" / "v1" / "auth" / "logout")
        .and(warp::post())
        .and(authed(app, Group::Auth))
        .then(
            |app: Arc<App>, ctx: RequestContext, p: Principal| async move {
                reply(
                    async {
                        auth::logout(&app, &p, &actor(&p.user.username, &ctx)).await?;
                        Ok(no_content())
                    }
                    .await,
                )
            },
        );

    let me = warp::path!("api" / "v1" / "users" / "me")
        .and(warp::get())
        .and(authed(app, Group::Auth))
        .map(|_app: Arc<App>, _ctx: RequestContext, p: Principal| {
            json_response(StatusCode::OK, JSON, &me_body(&p.user, Some(&p)))
        });

    let admin_list = warp::path!("api" / "v1" / "admin" / "users")
        .and(warp::get())
        .and(authed(app, Group::Admin))
        .and(warp::query::<Page>())
        .then(
            |app: Arc<App>, ctx: RequestContext, p: Principal, page: Page| async move {
                reply(
                    async {
                        authorize(&app, &p, Scope::Admin, &ctx).await?;
                        let limit = page.limit.unwrap_or(100).clamp(1, 1000);
                        let offset = page.offset.unwrap_or(0);
                        let list = users::list(&app, limit, offset).await?;
                        Ok(json_response(
                            StatusCode::OK,
                            JSON,
                            &json!({"users": list, "limit": limit, "offset": offset}),
                        ))
                    }
                    .await,
                )
            },
        );

    let admin_get = warp::path!("api" / "v1" / "admin" / "users" / String)
        .and(warp::get())
        .and(authed(app, Group::Admin))
        .then(
            |id: String, app: Arc<App>, ctx: RequestContext, p: Principal| async move {
                reply(
                    async {
                        authorize(&app, &p, Scope::Admin, &ctx).await?;
                        let user = users::show(&app, &id).await?;
                        Ok(json_response(StatusCode::OK, JSON, &user))
                    }
                    .await,
                )
            },
        );

    let admin_patch = warp::path!("api" / "v1" / "admin" / "users" / String)
        .and(warp::patch())
        .and(authed(app, Group::Admin))
        .and(body::json::<UserPatch>(max))
        .then(
            |id: String, app: Arc<App>, ctx: RequestContext, p: Principal, patch: UserPatch| async move {
                reply(admin_patch(&app, &ctx, &p, &id, patch).await)
            },
        );

    let key_routes = key_routes(app);

    register
        .or(key_routes)
        .unify()
        .or(login)
        .unify()
        .or(token)
        .unify()
        .or(refresh)
        .unify()
        .or(logout)
        .unify()
        .or(me)
        .unify()
        .or(admin_list)
        .unify()
        .or(admin_get)
        .unify()
        .or(admin_patch)
        .unify()
        .boxed()
}

fn key_routes(app: &Arc<App>) -> BoxedFilter<(Response,)> {
    let max = app.config.server.max_body_bytes;
    let create = warp::path!("api" / "v1" / "auth" / "api-keys")
        .and(warp::post())
        .and(authed(app, Group::Auth))
        .and(body::json::<NewKeyRequest>(max))
        .then(
            |app: Arc<App>, ctx: RequestContext, p: Principal, req: NewKeyRequest| async move {
                reply(create_key(&app, &ctx, &p, req).await)
            },
        );

    let list = warp::path!("api" / "v1" / "auth" / "api-keys")
        .and(warp::get())
        .and(authed(app, Group::Auth))
        .then(
            |app: Arc<App>, ctx: RequestContext, p: Principal| async move {
                reply(
                    async {
                        require_session(&p)?;
                        authorize(&app, &p, Scope::KeysWrite, &ctx).await?;
                        let list = keys::list(&app, Some(&p.user.id)).await?;
                        Ok(json_response(
                            StatusCode::OK,
                            JSON,
                            &json!({ "keys": list }),
                        ))
                    }
                    .await,
                )
            },
        );

    let revoke = warp::path!("api" / "v1" / "auth" / "api-keys" / String)
        .and(warp::delete())
        .and(authed(app, Group::Auth))
        .then(
            |id: String, app: Arc<App>, ctx: RequestContext, p: Principal| async move {
                reply(
                    async {
                        require_session(&p)?;
                        authorize(&app, &p, Scope::KeysWrite, &ctx).await?;
                        keys::revoke(&app, &id, Some(&p.user.id), &actor(&p.user.username, &ctx))
                            .await?;
                        Ok(no_content())
                    }
                    .await,
                )
            },
        );

    let rotate =
        warp::path!("api" / "v1" / "auth" / "api-keys" / String / "rotate")
            .and(warp::post())
            .and(authed(app, Group::Auth))
            .and(optional_json::<RotateRequest>(max))
            .then(
                |id: String,
                 app: Arc<App>,
                 ctx: RequestContext,
                 p: Principal,
                 req: RotateRequest| async move {
                    reply(
                        async {
                            require_session(&p)?;
                            authorize(&app, &p, Scope::KeysWrite, &ctx).await?;
                            let grace = req.grace_seconds.unwrap_or(0);
                            let key = keys::rotate(
                                &app,
                                &id,
                                Some(&p.user.id),
                                Some(p.scopes),
                                grace,
                                &actor(&p.user.username, &ctx),
                            )
                            .await?;
                            Ok(json_response(StatusCode::CREATED, JSON, &key))
                        }
                        .await,
                    )
                },
            );

    let admin_revoke = warp::path!("api" / "v1" / "admin" / "api-keys" / String)
        .and(warp::delete())
        .and(authed(app, Group::Admin))
        .then(
            |id: String, app: Arc<App>, ctx: RequestContext, p: Principal| async move {
                reply(
                    async {
                        require_session(&p)?;
                        authorize(&app, &p, Scope::Admin, &ctx).await?;
                        keys::revoke(&app, &id, None, &actor(&p.user.username, &ctx)).await?;
                        Ok(no_content())
                    }
                    .await,
                )
            },
        );

    create
        .or(list)
        .unify()
        .or(revoke)
        .unify()
        .or(rotate)
        .unify()
        .or(admin_revoke)
        .unify()
        .boxed()
}

fn no_content() -> Response {
    let mut response = Response::new(warp::hyper::Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// A JSON body that may be absent (no body, or `Content-Length: 0`).
fn optional_json<T>(max: u64) -> impl Filter<Extract = (T,), Error = warp::Rejection> + Clone
where
    T: serde::de::DeserializeOwned + Default + Send,
{
    let empty = warp::header::optional::<u64>("content-length")
        .and(warp::header::optional::<String>("transfer-encoding"))
        .and_then(|len: Option<u64>, te: Option<String>| async move {
            if te.is_none() && len.unwrap_or(0) == 0 {
                Ok(T::default())
            } else {
                Err(warp::reject::not_found())
            }
        });
    empty.or(body::json::<T>(max)).unify()
}

async fn create_key(
    app: &Arc<App>,
    ctx: &RequestContext,
    p: &Principal,
    req: NewKeyRequest,
) -> Result<Response, ApiError> {
    require_session(p)?;
    authorize(app, p, Scope::KeysWrite, ctx).await?;
    let mut errors = Vec::new();
    let scopes = match req.scopes {
        None => None,
        Some(names) => match auth::scopes::Scopes::parse(&names.join(" ")) {
            Ok(scopes) => Some(scopes),
            Err(e) => {
                errors.push(crate::error::FieldError::new("scopes", e));
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
                    errors.push(crate::error::FieldError::new(
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
    let actor = actor(&p.user.username, ctx);
    // A key never carries more than the session that minted it.
    let key = keys::create(
        app,
        &p.user.id,
        &req.name,
        scopes,
        expires_at,
        Some(p.scopes),
        &actor,
    )
    .await?;
    Ok(json_response(StatusCode::CREATED, JSON, &key))
}

async fn admin_patch(
    app: &Arc<App>,
    ctx: &RequestContext,
    p: &Principal,
    id: &str,
    patch: UserPatch,
) -> Result<Response, ApiError> {
    authorize(app, p, Scope::Admin, ctx).await?;
    let target = users::show(app, id).await?;
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
        return Err(ApiError::Validation(vec![crate::error::FieldError::new(
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
    let actor = actor(&p.user.username, ctx);
    let mut user = target;
    for change in changes {
        user = users::update(app, &user.id, change, &actor).await?;
    }
    Ok(json_response(StatusCode::OK, JSON, &user))
}

/// `POST /api/v1/auth/token` (RFC 6749 §4.3 and §6): every refusal in the
/// OAuth2 error format.
async fn token_grant(
    app: &Arc<App>,
    ctx: &RequestContext,
    form: &[u8],
) -> Result<TokenPair, ApiError> {
    let oauth = |status: u16, error: &'static str, description: String| ApiError::OAuth {
        status,
        error,
        description,
        retry_after_secs: None,
    };
    let map = |e: Error| match e {
        Error::InvalidCredentials | Error::Unauthenticated { .. } => {
            oauth(400, "invalid_grant", e.to_string())
        }
        Error::InvalidScope(_) => oauth(400, "invalid_scope", e.to_string()),
        Error::Invalid(_) => oauth(400, "invalid_request", e.to_string()),
        Error::Locked { retry_after } | Error::RateLimited { retry_after, .. } => ApiError::OAuth {
            status: 429,
            error: if matches!(e, Error::Locked { .. }) {
                "invalid_grant"
            } else {
                "invalid_request"
            },
            description: e.to_string(),
            retry_after_secs: Some(retry_after.max(1)),
        },
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
    };
    limit_anonymous(app, ctx).await.map_err(map)?;
    let req: TokenRequest = serde_urlencoded::from_bytes(form)
        .map_err(|e| oauth(400, "invalid_request", e.to_string()))?;
    let actor = actor("anonymous", ctx);
    let missing = |name: &str| {
        oauth(
            400,
            "invalid_request",
            format!("missing parameter `{name}`"),
        )
    };
    match req.grant_type.as_deref() {
        Some("password") if app.config.auth.password_grant => {
            let username = req.username.ok_or_else(|| missing("username"))?;
            let password = req.password.ok_or_else(|| missing("password"))?;
            auth::login(app, &username, password, req.scope.as_deref(), &actor)
                .await
                .map_err(map)
        }
        Some("refresh_token") => {
            let token = req.refresh_token.ok_or_else(|| missing("refresh_token"))?;
            auth::refresh(app, &token, &actor).await.map_err(map)
        }
        None => Err(missing("grant_type")),
        Some(_) => Err(oauth(
            400,
            "unsupported_grant_type",
            "supported grant types: password, refresh_token".into(),
        )),
    }
}
