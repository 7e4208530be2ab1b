//! Identity against the real daemon and CLI: registration, login (JSON, form,
//! OAuth2 token endpoint), JWT validation, refresh rotation and reuse,
//! logout, lockout, scopes and admin routes, CLI user commands, audit rows,
//! and no secrets in logs (catalog groups A, T, Z, S, AU).

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::harness::{query_i64, send, send_body, stderr, stdout, Daemon, Resp, Setup};

pub const SECRET: &str = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz";
const PASSWORD: &str = "SecurePass123!";

/// Cheap argon2 so the suite stays fast (the defaults stay at OWASP strength),
/// a known HS256 secret so tests can forge tokens, and room for many logins.
/// Cheap hashing, a fixed signing secret, and limits roomy enough that
/// tests of other features never meet them (`ratelimit.rs` tests limits).
pub fn auth_config(extra_auth: &str) -> String {
    format!(
        "[auth]\njwt_secret = \"{SECRET}\"\nargon2_memory_kib = 64\nargon2_iterations = 1\n{extra_auth}\n\n[ratelimit]\nanonymous_per_minute = 1000\n\n[tiers.free]\nper_minute = 10000\nper_day = 1000000\n"
    )
}

pub fn register(d: &Daemon, username: &str, password: &str) -> Resp {
    post_json(
        d,
        "/api/v1/auth/register",
        &json!({"username": username, "email": format!("{username}@example.com"), "password": password}),
    )
}

pub fn post_json(d: &Daemon, path: &str, body: &Value) -> Resp {
    send_body(
        d.request("POST", path)
            .set("Content-Type", "application/json"),
        &body.to_string(),
    )
}

pub fn login(d: &Daemon, username: &str, password: &str) -> Resp {
    post_json(
        d,
        "/api/v1/auth/login",
        &json!({"username": username, "password": password}),
    )
}

/// Registers and logs in; returns (access, refresh).
pub fn user_with_tokens(d: &Daemon, username: &str) -> (String, String) {
    assert_eq!(register(d, username, PASSWORD).status, 201);
    let r = login(d, username, PASSWORD);
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    (
        body["access_token"].as_str().unwrap().to_string(),
        body["refresh_token"].as_str().unwrap().to_string(),
    )
}

pub fn get_with(d: &Daemon, path: &str, token: &str) -> Resp {
    send(
        d.request("GET", path)
            .set("Authorization", &format!("Bearer {token}")),
    )
}

fn form(d: &Daemon, path: &str, body: &str) -> Resp {
    send_body(
        d.request("POST", path)
            .set("Content-Type", "application/x-www-form-urlencoded"),
        body,
    )
}

fn assert_invalid_token(r: &Resp, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.body);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="mlapi", error="invalid_token""#),
        "{what}"
    );
    r.problem(401);
}

/// Runs `mlapi <args>` against `setup` with `stdin` piped in.
pub fn cli_with_stdin(setup: &Setup, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = crate::harness::mlapi()
        .arg("--config")
        .arg(setup.config())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn decode_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn sign_hs256(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// Waits until `check` holds, for at most `within`.
pub fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < within,
            "condition not met within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

fn audit_json(setup: &Setup, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--output", "json", "audit"];
    all.extend_from_slice(args);
    let out = setup.cli(&all);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

fn has_event(events: &[Value], action: &str, target: &str) -> bool {
    events
        .iter()
        .any(|e| e["action"] == action && e["target"] == target)
}

#[test]
fn the_seed_quick_start_works_verbatim() {
    let setup = Setup::new(&auth_config(""));
    let d = setup.start();
    let r = post_json(
        &d,
        "/api/v1/auth/register",
        &json!({"username":"testuser","email":"test@example.com","password":"SecurePass123!"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let user = r.json();
    assert_eq!(user["username"], "testuser");
    assert_eq!(user["role"], "user");
    assert_eq!(user["tier"], "free");
    assert!(
        !r.body.contains("argon2") && !r.body.contains("SecurePass"),
        "{}",
        r.body
    );

    let r = login(&d, "testuser", "SecurePass123!");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let tokens = r.json();
    assert_eq!(tokens["token_type"], "bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert!(tokens["refresh_token"].is_string());
    let access = tokens["access_token"].as_str().unwrap();
    let claims = decode_claims(access);
    for claim in [
        "iss", "aud", "sub", "exp", "iat", "nbf", "jti", "scope", "typ",
    ] {
        assert!(!claims[claim].is_null(), "claim {claim} missing: {claims}");
    }
    assert_eq!(claims["typ"], "access");

    let r = form(
        &d,
        "/api/v1/auth/login",
        "username=testuser&password=SecurePass123%21",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["access_token"].is_string());

    let me = get_with(&d, "/api/v1/users/me", access);
    assert_eq!(me.status, 200, "{}", me.body);
    let me = me.json();
    assert_eq!(me["username"], "testuser");
    assert_eq!(me["email"], "test@example.com");
    assert!(me["scopes"]
        .as_array()
        .unwrap()
        .contains(&json!("predict:read")));
}

#[test]
fn registration_validates_and_refuses_duplicates() {
    let setup = Setup::new(&auth_config(""));
    let d = setup.start();
    let body = register(&d, "weak", "short").problem(422);
    assert_eq!(body["errors"][0]["field"], "password");
    let body = register(&d, "commoner", "qwertyuiop").problem(422);
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("common"));
    let body = register(&d, "x", PASSWORD).problem(422);
    assert_eq!(body["errors"][0]["field"], "username");
    let r = post_json(
        &d,
        "/api/v1/auth/register",
        &json!({"username":"bademail","email":"nope","password":PASSWORD}),
    );
    assert_eq!(r.problem(422)["errors"][0]["field"], "email");
    // Structs written as arrays are not objects.
    let r = send_body(
        d.request("POST", "/api/v1/auth/register")
            .set("Content-Type", "application/json"),
        r#"["arr", "arr@example.com", "SecurePass123!"]"#,
    );
    assert_eq!(
        r.problem(422)["errors"][0]["message"],
        "the body must be a JSON object"
    );
    // Mass assignment: a role in the body is refused outright.
    let r = post_json(
        &d,
        "/api/v1/auth/register",
        &json!({"username":"sneaky","email":"s@example.com","password":PASSWORD,"role":"admin"}),
    );
    r.problem(400);
    // A password over the cap is refused before any hashing.
    let started = Instant::now();
    register(&d, "longpw", &"Aa1!".repeat(1024)).problem(422);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        query_i64(&setup.db(), "SELECT count(*) FROM users"),
        0,
        "nothing was created"
    );

    // Long passphrases of any characters are welcome (ASVS 6.2.9).
    let phrase64 = "ünïcödé pässphräsé wïth nö dïgïts ör sÿmbols, just lëngth ånd ëase";
    assert_eq!(register(&d, "poet", phrase64).status, 201);
    assert_eq!(login(&d, "poet", phrase64).status, 200);
    let phrase128: String = "correct horse battery staple "
        .repeat(5)
        .chars()
        .take(128)
        .collect();
    assert_eq!(register(&d, "poet2", &phrase128).status, 201);

    assert_eq!(register(&d, "testuser", PASSWORD).status, 201);
    register(&d, "TestUser", PASSWORD).problem(409);
    register(&d, "ＴｅｓｔＵｓｅｒ", PASSWORD).problem(422);
    let r = post_json(
        &d,
        "/api/v1/auth/register",
        &json!({"username":"other","email":"TESTUSER@example.com","password":PASSWORD}),
    );
    r.problem(409);

    // Hashes: argon2id at the configured cost, salted per user.
    assert_eq!(register(&d, "twin", PASSWORD).status, 201);
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let hashes: Vec<String> = conn
        .prepare("SELECT password_hash FROM users WHERE username IN ('testuser', 'twin')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(hashes.len(), 2);
    assert_ne!(hashes[0], hashes[1]);
    assert!(
        hashes
            .iter()
            .all(|h| h.starts_with("$argon2id$v=19$m=64,t=1,p=1$")),
        "{hashes:?}"
    );
}

#[test]
fn registration_can_be_turned_off() {
    let d = Setup::new(&auth_config("allow_registration = false")).start();
    let body = register(&d, "testuser", PASSWORD).problem(403);
    assert!(body["detail"].as_str().unwrap().contains("disabled"));
}

#[test]
fn forged_and_stale_tokens_are_401_invalid_token() {
    let setup = Setup::new(&auth_config(""));
    let d = setup.start_process();
    let (access, refresh) = user_with_tokens(&d, "testuser");
    let claims = decode_claims(&access);
    let sub = claims["sub"].as_str().unwrap().to_string();
    let sid = claims["sid"].as_str().unwrap().to_string();
    let base = |overrides: Value| {
        let mut c = json!({
            "iss": "mlapi", "aud": "mlapi", "sub": sub, "exp": now() + 600, "iat": now(), "nbf": now(),
            "jti": "forged", "scope": "predict:read admin", "typ": "access", "sid": sid,
        });
        for (k, v) in overrides.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    // A correctly signed token passes, so the refusals below are about what changed.
    let good = sign_hs256(&base(json!({})), SECRET.as_bytes());
    assert_eq!(get_with(&d, "/api/v1/users/me", &good).status, 200);

    let (_, payload, signature) = {
        let mut parts = access.split('.');
        (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        )
    };
    let mut flipped = signature.as_bytes().to_vec();
    flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
    let mut cases: Vec<(&str, String)> = vec![
        (
            "flipped signature byte",
            format!(
                "{}.{}.{}",
                access.split('.').next().unwrap(),
                payload,
                String::from_utf8(flipped).unwrap()
            ),
        ),
        (
            "signed with another key",
            sign_hs256(
                &base(json!({})),
                b"another-secret-0123456789-abcdefghijklmnop",
            ),
        ),
        (
            "expired",
            sign_hs256(
                &base(json!({"exp": now() - 61, "iat": now() - 1000, "nbf": now() - 1000})),
                SECRET.as_bytes(),
            ),
        ),
        (
            "not yet valid",
            sign_hs256(&base(json!({"nbf": now() + 120})), SECRET.as_bytes()),
        ),
        (
            "no exp",
            sign_hs256(&base(json!({"exp": null})), SECRET.as_bytes()),
        ),
        (
            "wrong issuer",
            sign_hs256(&base(json!({"iss": "evil"})), SECRET.as_bytes()),
        ),
        (
            "wrong audience",
            sign_hs256(&base(json!({"aud": "other-api"})), SECRET.as_bytes()),
        ),
        ("refresh token as access token", refresh.clone()),
        (
            "typ refresh forged",
            sign_hs256(&base(json!({"typ": "refresh"})), SECRET.as_bytes()),
        ),
        (
            "unknown subject",
            sign_hs256(
                &base(json!({"sub": "00000000-0000-0000-0000-000000000000"})),
                SECRET.as_bytes(),
            ),
        ),
        (
            "empty signature",
            format!("{}.{}.", access.split('.').next().unwrap(), payload),
        ),
        ("garbage", "not.a.jwt".into()),
    ];
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
        let body = b64(base(json!({})).to_string().as_bytes());
        cases.push(("alg none", format!("{header}.{body}.")));
    }
    // kid injection with an empty HMAC key (jwt_tool's blank-password attack).
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("../../dev/null".into());
    let kid = jsonwebtoken::encode(
        &header,
        &base(json!({})),
        &jsonwebtoken::EncodingKey::from_secret(b""),
    )
    .unwrap();
    cases.push(("kid traversal, blank key", kid));
    // Signed with EdDSA while the server pins HS256.
    let ed = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let der = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&ed).unwrap();
    let eddsa = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &base(json!({})),
        &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
    )
    .unwrap();
    cases.push(("EdDSA against HS256", eddsa));

    for (what, token) in &cases {
        let r = get_with(&d, "/api/v1/users/me", token);
        assert_invalid_token(&r, what);
        assert!(
            !r.body.contains(token.as_str()),
            "{what}: the token is echoed"
        );
    }
    // Query-string tokens are never accepted (and never logged).
    let r = send(d.request("GET", &format!("/api/v1/users/me?access_token={access}")));
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="mlapi""#),
        "no credential, no error code"
    );
    // After all that, the real token still works (jwt_tool's persistence check).
    assert_eq!(get_with(&d, "/api/v1/users/me", &access).status, 200);
    std::thread::sleep(Duration::from_millis(100));
    assert!(!d.logs().contains(&access), "a token reached the log");
}

#[test]
fn eddsa_is_supported_and_pinned() {
    let setup = Setup::new(
        "[auth]\njwt_algorithm = \"EdDSA\"\nargon2_memory_kib = 64\nargon2_iterations = 1\n\n[ratelimit]\nanonymous_per_minute = 1000\n",
    );
    let d = setup.start();
    let (access, _) = user_with_tokens(&d, "edwin");
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(access.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(get_with(&d, "/api/v1/users/me", &access).status, 200);

    // The generated key is private to the service account.
    let key = setup.dir.path().join("jwt-ed25519.pk8");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // HS256 keyed with the server's public key (the key-confusion attack) is refused.
    let der = std::fs::read(&key).unwrap();
    let signing =
        <ed25519_dalek::SigningKey as ed25519_dalek::pkcs8::DecodePrivateKey>::from_pkcs8_der(&der)
            .unwrap();
    let mut claims = decode_claims(&access);
    claims["jti"] = json!("confused");
    let confused = sign_hs256(&claims, signing.verifying_key().as_bytes());
    assert_invalid_token(
        &get_with(&d, "/api/v1/users/me", &confused),
        "HS256 against EdDSA",
    );
}

#[test]
fn refresh_rotates_and_reuse_revokes_the_family() {
    let setup = Setup::new(&auth_config(""));
    let d = setup.start();
    let (access1, rt1) = user_with_tokens(&d, "testuser");

    let r = post_json(&d, "/api/v1/auth/refresh", &json!({"refresh_token": rt1}));
    assert_eq!(r.status, 200, "{}", r.body);
    let rt2 = r.json()["refresh_token"].as_str().unwrap().to_string();
    let access2 = r.json()["access_token"].as_str().unwrap().to_string();
    assert_ne!(rt1, rt2);
    assert_eq!(get_with(&d, "/api/v1/users/me", &access2).status, 200);

    // RT1 again: reuse. It fails, and RT2 and the family's access tokens die with it.
    let r = post_json(&d, "/api/v1/auth/refresh", &json!({"refresh_token": rt1}));
    assert_invalid_token(&r, "reused refresh token");
    post_json(&d, "/api/v1/auth/refresh", &json!({"refresh_token": rt2})).problem(401);
    assert_eq!(get_with(&d, "/api/v1/users/me", &access1).status, 401);
    assert_eq!(get_with(&d, "/api/v1/users/me", &access2).status, 401);
    assert!(has_event(
        &audit_json(&setup, &[]),
        "authn_token_reuse",
        "testuser"
    ));

    // An access token is not a refresh token.
    let (access3, _) = {
        let r = login(&d, "testuser", PASSWORD);
        let b = r.json();
        (b["access_token"].as_str().unwrap().to_string(), ())
    };
    post_json(
        &d,
        "/api/v1/auth/refresh",
        &json!({"refresh_token": access3}),
    )
    .problem(401);
}

#[test]
fn parallel_refreshes_with_one_token_succeed_once() {
    let d = Setup::new(&auth_config("")).start();
    assert_eq!(register(&d, "racer", PASSWORD).status, 201);
    for _ in 0..3 {
        let rt = login(&d, "racer", PASSWORD).json()["refresh_token"]
            .as_str()
            .unwrap()
            .to_string();
        let url = d.url("/api/v1/auth/refresh");
        let handles: Vec<_> = (0..10)
            .map(|_| {
                let (url, rt) = (url.clone(), rt.clone());
                std::thread::spawn(move || {
                    match ureq::post(&url)
                        .set("Content-Type", "application/json")
                        .send_string(&json!({"refresh_token": rt}).to_string())
                    {
                        Ok(r) => r.status(),
                        Err(ureq::Error::Status(s, _)) => s,
                        Err(e) => panic!("{e}"),
                    }
                })
            })
            .collect();
        let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "{statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 401),
            "{statuses:?}"
        );
    }
}

#[test]
fn the_oauth2_token_endpoint_speaks_rfc_6749() {
    let d = Setup::new(&auth_config("")).start();
    assert_eq!(register(&d, "testuser", PASSWORD).status, 201);
    let token = |body: &str| form(&d, "/api/v1/auth/token", body);
    let oauth_error = |r: &Resp, status: u16, error: &str| {
        assert_eq!(r.status, status, "{}", r.body);
        assert_eq!(r.json()["error"], error, "{}", r.body);
        assert!(r.json()["error_description"].is_string());
        assert_eq!(r.header("cache-control"), Some("no-store"));
    };

    let r = token(
        "grant_type=password&username=testuser&password=SecurePass123%21&scope=predict%3Aread",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("pragma"), Some("no-cache"));
    let pair = r.json();
    assert_eq!(
        pair["scope"], "predict:read",
        "the token carries the requested subset"
    );
    let access = pair["access_token"].as_str().unwrap();
    let rt = pair["refresh_token"].as_str().unwrap();

    let r = token(&format!("grant_type=refresh_token&refresh_token={rt}"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["scope"], "predict:read");

    oauth_error(
        &token("grant_type=password&username=testuser&password=wrong"),
        400,
        "invalid_grant",
    );
    oauth_error(
        &token("grant_type=password&username=nobody&password=wrong"),
        400,
        "invalid_grant",
    );
    oauth_error(
        &token(&format!("grant_type=refresh_token&refresh_token={access}")),
        400,
        "invalid_grant",
    );
    oauth_error(&token("grant_type=foo"), 400, "unsupported_grant_type");
    oauth_error(&token("username=testuser"), 400, "invalid_request");
    oauth_error(
        &token("grant_type=password&username=testuser"),
        400,
        "invalid_request",
    );
    oauth_error(
        &token("grant_type=password&username=testuser&password=SecurePass123%21&scope=admin"),
        400,
        "invalid_scope",
    );
    // JSON is not a token request.
    send_body(
        d.request("POST", "/api/v1/auth/token")
            .set("Content-Type", "application/json"),
        "{}",
    )
    .problem(415);

    let d = Setup::new(&auth_config("password_grant = false")).start();
    assert_eq!(register(&d, "testuser", PASSWORD).status, 201);
    let r = form(
        &d,
        "/api/v1/auth/token",
        "grant_type=password&username=testuser&password=SecurePass123%21",
    );
    oauth_error(&r, 400, "unsupported_grant_type");
    assert_eq!(
        login(&d, "testuser", PASSWORD).status,
        200,
        "first-party JSON login stays"
    );
}

#[test]
fn logout_ends_the_access_token_and_its_family_at_once() {
    let setup = Setup::new(&auth_config(""));
    let d = setup.start();
    let (access, refresh) = user_with_tokens(&d, "testuser");
    let (other_access, _) = {
        let b = login(&d, "testuser", PASSWORD).json();
        (b["access_token"].as_str().unwrap().to_string(), ())
    };
    let r = send(
        d.request("POST", "/api/v1/auth/logout")
            .set("Authorization", &format!("Bearer {access}")),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert_invalid_token(&get_with(&d, "/api/v1/users/me", &access), "after logout");
    post_json(
        &d,
        "/api/v1/auth/refresh",
        &json!({"refresh_token": refresh}),
    )
    .problem(401);
    assert_eq!(
        get_with(&d, "/api/v1/users/me", &other_access).status,
        200,
        "other sessions live on"
    );
    assert!(has_event(
        &audit_json(&setup, &["--action", "authn_logout"]),
        "authn_logout",
        "testuser"
    ));

    // Revocations are durable: a restarted daemon still refuses the token.
    drop(d);
    let d = setup.start();
    assert_eq!(get_with(&d, "/api/v1/users/me", &access).status, 401);
}

#[test]
fn lockout_after_five_failures_is_identical_for_unknown_users() {
    let setup = Setup::new(&auth_config("lockout_secs = 3"));
    let d = setup.start();
    assert_eq!(register(&d, "testuser", PASSWORD).status, 201);
    assert_eq!(register(&d, "bystander", PASSWORD).status, 201);

    let strip = |r: &Resp| {
        let mut headers: Vec<String> = ["www-authenticate", "retry-after", "content-type"]
            .iter()
            .map(|h| format!("{h}={:?}", r.header(h)))
            .collect();
        headers.sort();
        (r.status, r.body.clone(), headers)
    };
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    // Case and full-width variants share one counter.
    for name in [
        "testuser",
        "TestUser",
        "ｔｅｓｔｕｓｅｒ",
        "TESTUSER",
        "testuser",
    ] {
        known.push(strip(&login(&d, name, "wrong-password")));
    }
    for _ in 0..5 {
        unknown.push(strip(&login(&d, "nosuchuser", "wrong-password")));
    }
    assert!(known.iter().all(|(s, _, _)| *s == 401), "{known:?}");
    assert_eq!(
        known, unknown,
        "a wrong password and an unknown user look the same"
    );

    let locked = login(&d, "testuser", PASSWORD);
    let body = locked.problem(429);
    assert!(locked
        .header("retry-after")
        .is_some_and(|v| v.parse::<u64>().unwrap() >= 1));
    let unknown_locked = login(&d, "nosuchuser", PASSWORD);
    assert_eq!(strip(&locked).0, strip(&unknown_locked).0);
    // The same words; the seconds left may differ by one, since the two
    // lockouts began one round of failed logins apart.
    let words = |v: &Value| {
        v.as_str()
            .unwrap()
            .replace(|c: char| c.is_ascii_digit(), "#")
    };
    assert_eq!(
        words(&body["detail"]),
        words(&unknown_locked.json()["detail"])
    );
    assert_eq!(
        login(&d, "bystander", PASSWORD).status,
        200,
        "locking one account leaves others alone"
    );

    let events = audit_json(&setup, &["--action", "authn_login_lock"]);
    assert!(
        events.iter().any(|e| e["action"] == "authn_login_lock"),
        "{events:?}"
    );
    assert_eq!(
        audit_json(&setup, &["--action", "authn_login_fail"]).len(),
        10
    );

    // An operator can lift a lock at once (enable or passwd); otherwise it
    // ends by itself.
    let out = setup.cli(&["user", "enable", "testuser"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(login(&d, "testuser", PASSWORD).status, 200);
    eventually(Duration::from_secs(6), || {
        login(&d, "nosuchuser", PASSWORD).status == 401
    });
}

#[test]
fn unknown_users_cost_a_real_hash() {
    // Real cost here (not the suite's cheap one), so a quick exit would show.
    let setup = Setup::new(&format!(
        "[auth]\njwt_secret = \"{SECRET}\"\nargon2_memory_kib = 19456\nargon2_iterations = 2\nlockout_threshold = 1000\n\n[ratelimit]\nanonymous_per_minute = 1000\n"
    ));
    let d = setup.start();
    assert_eq!(register(&d, "testuser", PASSWORD).status, 201);
    // The fastest of nine: other tests running beside this one only ever
    // add time, so the minimum is each path's own cost.
    let fastest = |name: &str| {
        (0..9)
            .map(|_| {
                let started = Instant::now();
                assert_eq!(login(&d, name, "wrong-password").status, 401);
                started.elapsed()
            })
            .min()
            .expect("nine logins")
    };
    let known = fastest("testuser");
    let unknown = fastest("nosuchuser");
    assert!(
        unknown * 2 > known,
        "an unknown user must cost about as much as a wrong password: {unknown:?} vs {known:?}"
    );
}

#[test]
fn hashing_is_bounded_and_overload_is_a_fast_503() {
    let setup = Setup::new(&format!(
        "[auth]\njwt_secret = \"{SECRET}\"\nargon2_memory_kib = 19456\nargon2_iterations = 12\nmax_concurrent_hashes = 1\nlockout_threshold = 1000\n\n[ratelimit]\nanonymous_per_minute = 1000\n"
    ));
    let d = setup.start();
    let url = d.url("/api/v1/auth/login");
    let started = Instant::now();
    let handles: Vec<_> = (0..60)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let body = json!({"username": format!("user{i}"), "password": "wrong-password"})
                    .to_string();
                match ureq::post(&url)
                    .set("Content-Type", "application/json")
                    .send_string(&body)
                {
                    Ok(r) => (r.status(), None),
                    Err(ureq::Error::Status(s, r)) => {
                        (s, r.header("retry-after").map(str::to_string))
                    }
                    Err(e) => panic!("{e}"),
                }
            })
        })
        .collect();
    let results: Vec<(u16, Option<String>)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        results.iter().all(|(s, _)| *s == 401 || *s == 503),
        "{results:?}"
    );
    let overloaded: Vec<_> = results.iter().filter(|(s, _)| *s == 503).collect();
    assert!(
        !overloaded.is_empty(),
        "with one hashing slot, a burst of 60 must overflow: {results:?}"
    );
    assert!(
        overloaded.iter().all(|(_, retry)| retry.is_some()),
        "503s carry Retry-After"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(d.get("/health").status, 200, "the daemon stays responsive");
}

#[test]
fn auth_routes_are_limited_per_client_ip() {
    let setup = Setup::new(&format!(
        "[auth]\njwt_secret = \"{SECRET}\"\nargon2_memory_kib = 64\nargon2_iterations = 1\n\n[ratelimit]\nanonymous_per_minute = 3\n"
    ));
    let d = setup.start();
    for _ in 0..3 {
        assert_eq!(login(&d, "someone", "wrong-password").status, 401);
    }
    let r = login(&d, "someone", "wrong-password");
    r.problem(429);
    assert!(r.header("retry-after").is_some());
    register(&d, "newuser", PASSWORD).problem(429);
}

#[test]
fn scopes_roles_and_admin_routes() {
    let setup = Setup::new(&auth_config(""));
    let d = setup.start();
    let (user_token, _) = user_with_tokens(&d, "plainuser");

    // A plain user is refused admin routes with the scope named, whatever the method.
    let r = get_with(&d, "/api/v1/admin/users", &user_token);
    let body = r.problem(403);
    assert_eq!(body["scope"], "admin");
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="mlapi", error="insufficient_scope", scope="admin""#)
    );
    let patch = send_body(
        d.request("PATCH", "/api/v1/admin/users/plainuser")
            .set("Authorization", &format!("Bearer {user_token}"))
            .set("Content-Type", "application/json"),
        r#"{"role":"admin"}"#,
    );
    patch.problem(403);
    send(d.request("TRACE", "/api/v1/admin/users")).problem(405);
    send(d.request("GET", "/api/v1/admin/users")).problem(401);
    let refusals = audit_json(&setup, &["--action", "authz_fail"]);
    assert!(
        refusals.iter().any(|e| e["actor"] == "plainuser"),
        "{refusals:?}"
    );

    // The first admin comes from the CLI (no default accounts).
    let out = cli_with_stdin(
        &setup,
        &[
            "user",
            "add",
            "boss",
            "--email",
            "boss@example.com",
            "--role",
            "admin",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let boss = login(&d, "boss", PASSWORD).json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let list = get_with(&d, "/api/v1/admin/users?limit=5", &boss);
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.json()["users"].as_array().unwrap().len(), 2);
    assert!(!list.body.contains("argon2"));
    let huge = get_with(&d, "/api/v1/admin/users?limit=1000000000", &boss);
    assert_eq!(huge.json()["limit"], 1000, "page size is capped");

    let patch = |who: &str, body: Value, token: &str| {
        send_body(
            d.request("PATCH", &format!("/api/v1/admin/users/{who}"))
                .set("Authorization", &format!("Bearer {token}"))
                .set("Content-Type", "application/json"),
            &body.to_string(),
        )
    };
    let r = patch("plainuser", json!({"tier": "pro"}), &boss);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["tier"], "pro");
    patch("plainuser", json!({"tier": "platinum"}), &boss).problem(422);
    patch("plainuser", json!({"password": "x"}), &boss).problem(400);
    patch("nobody", json!({"tier": "pro"}), &boss).problem(404);
    patch("boss", json!({"disabled": true}), &boss).problem(409);

    let r = patch("plainuser", json!({"role": "manager"}), &boss);
    assert_eq!(r.json()["role"], "manager");
    let me = get_with(&d, "/api/v1/users/me", &user_token).json();
    assert_eq!(me["role"], "manager");

    // Demoting an admin from the CLI takes admin away from live tokens at once (Z7).
    let out = setup.cli(&["user", "set-role", "boss", "user"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    eventually(Duration::from_secs(1), || {
        get_with(&d, "/api/v1/admin/users", &boss).status == 403
    });

    // Disabling from the CLI: live tokens die within a second (A10); refresh fails.
    let (victim_access, victim_refresh) = user_with_tokens(&d, "victim");
    let out = setup.cli(&["user", "disable", "victim", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let waited = eventually(Duration::from_secs(1), || {
        get_with(&d, "/api/v1/users/me", &victim_access).status == 401
    });
    assert!(waited < Duration::from_secs(1));
    assert_invalid_token(
        &get_with(&d, "/api/v1/users/me", &victim_access),
        "disabled user",
    );
    post_json(
        &d,
        "/api/v1/auth/refresh",
        &json!({"refresh_token": victim_refresh}),
    )
    .problem(401);
    assert_eq!(
        login(&d, "victim", PASSWORD).status,
        401,
        "a disabled user cannot log in"
    );
    let out = setup.cli(&["user", "enable", "victim"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(login(&d, "victim", PASSWORD).status, 200);
    // Re-enabling does not bring the old sessions back.
    assert_eq!(get_with(&d, "/api/v1/users/me", &victim_access).status, 401);
    post_json(
        &d,
        "/api/v1/auth/refresh",
        &json!({"refresh_token": victim_refresh}),
    )
    .problem(401);

    let events = audit_json(&setup, &[]);
    for (action, target) in [
        ("user_create", "boss"),
        ("user_tier_change", "plainuser"),
        ("authz_change", "plainuser"),
        ("authz_change", "boss"),
        ("user_disable", "victim"),
        ("user_enable", "victim"),
    ] {
        assert!(
            has_event(&events, action, target),
            "missing audit {action} {target}"
        );
    }
    let cli_event = events
        .iter()
        .find(|e| e["action"] == "user_disable")
        .unwrap();
    assert!(
        cli_event["actor"].as_str().unwrap().starts_with("cli:"),
        "{cli_event}"
    );
    let api_event = events
        .iter()
        .find(|e| e["action"] == "user_tier_change")
        .unwrap();
    assert_eq!(api_event["actor"], "boss");
    assert_eq!(api_event["client_ip"], "127.0.0.1");
    assert!(api_event["request_id"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
}

#[test]
fn user_cli_commands() {
    let setup = Setup::new(&auth_config(""));
    let add = |name: &str, extra: &[&str], password: &str| {
        let email = format!("{name}@example.com");
        let mut args = vec!["user", "add", name, "--email", &email, "--password-stdin"];
        args.extend_from_slice(extra);
        cli_with_stdin(&setup, &args, password)
    };
    let out = add("alice", &["-q", "--tier", "pro"], &format!("{PASSWORD}\n"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert_eq!(id.len(), 36, "-q prints only the id: {id}");

    let out = add("alice", &[], &format!("{PASSWORD}\n"));
    assert_eq!(out.status.code(), Some(4), "duplicate: {}", stderr(&out));
    let out = add("weakling", &[], "short\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("password"), "{}", stderr(&out));
    let out = add("badtier", &["--tier", "gold"], &format!("{PASSWORD}\n"));
    assert_eq!(out.status.code(), Some(2));
    for tier in ["free", "pro", "enterprise"] {
        assert!(stderr(&out).contains(tier), "{}", stderr(&out));
    }
    let out = setup.cli(&["user", "add", "nopass", "--email", "n@example.com"]);
    assert_eq!(out.status.code(), Some(2), "no prompt without a terminal");
    assert!(
        stderr(&out).contains("--password-stdin"),
        "{}",
        stderr(&out)
    );
    let out = setup.cli(&["user", "set-role", "alice", "emperor"]);
    assert_eq!(out.status.code(), Some(2));

    let out = setup.cli(&["--output", "json", "user", "show", "ALICE"]);
    assert_eq!(out.status.code(), Some(0));
    let user: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(user["id"], id.as_str());
    assert_eq!(user["tier"], "pro");
    assert!(user.get("password_hash").is_none());
    let out = setup.cli(&["user", "show", "nobody"]);
    assert_eq!(out.status.code(), Some(3));
    let out = setup.cli(&["user", "disable", "nobody", "--yes"]);
    assert_eq!(out.status.code(), Some(3));

    let out = setup.cli(&["--output", "json", "user", "list"]);
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), 1);
    let out = setup.cli(&["user", "list"]);
    assert!(stdout(&out).contains("alice") && stdout(&out).contains("USERNAME"));

    // passwd ends every session (A9).
    let d = setup.start();
    let before = login(&d, "alice", PASSWORD).json();
    let out = cli_with_stdin(
        &setup,
        &["user", "passwd", "alice", "--password-stdin"],
        "An0ther-Secure-Pass!\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    post_json(
        &d,
        "/api/v1/auth/refresh",
        &json!({"refresh_token": before["refresh_token"]}),
    )
    .problem(401);
    eventually(Duration::from_secs(1), || {
        get_with(
            &d,
            "/api/v1/users/me",
            before["access_token"].as_str().unwrap(),
        )
        .status
            == 401
    });
    assert_eq!(login(&d, "alice", PASSWORD).status, 401);
    assert_eq!(login(&d, "alice", "An0ther-Secure-Pass!").status, 200);
}

#[test]
fn audit_command_filters_and_validates() {
    let setup = Setup::new(&auth_config(""));
    let d = setup.start();
    assert_eq!(register(&d, "testuser", PASSWORD).status, 201);
    assert_eq!(login(&d, "testuser", "wrong-password").status, 401);
    assert_eq!(login(&d, "testuser", PASSWORD).status, 200);

    let all = audit_json(&setup, &["--since", "1h"]);
    for action in [
        "sys_startup",
        "user_create",
        "authn_login_fail",
        "authn_login_success",
    ] {
        assert!(
            all.iter().any(|e| e["action"] == action),
            "missing {action}"
        );
    }
    let fails = audit_json(
        &setup,
        &["--action", "authn_login_fail", "--user", "testuser"],
    );
    assert_eq!(fails.len(), 1);
    assert_eq!(fails[0]["outcome"], "failure");
    assert_eq!(fails[0]["client_ip"], "127.0.0.1");
    assert!(audit_json(&setup, &["--since", "2999-01-01T00:00:00Z"]).is_empty());
    let out = setup.cli(&["audit", "--action", "made_up"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("authn_login_fail"),
        "lists the actions: {}",
        stderr(&out)
    );
    let out = setup.cli(&["audit", "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    let out = setup.cli(&["audit"]);
    assert!(stdout(&out).contains("authn_login_success"));
}

#[test]
fn secrets_never_reach_logs_or_the_audit_table() {
    let setup = Setup::new(&auth_config(""));
    let d = setup.start_with(|cmd| {
        cmd.env("RUST_LOG", "trace");
    });
    let (access, refresh) = user_with_tokens(&d, "testuser");
    assert_eq!(login(&d, "testuser", "Wrong-Secret-Pass-42").status, 401);
    let r = post_json(
        &d,
        "/api/v1/auth/refresh",
        &json!({"refresh_token": refresh}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(get_with(&d, "/api/v1/users/me", &access).status, 200);
    std::thread::sleep(Duration::from_millis(200));
    let logs = d.logs();
    assert!(logs.contains("/api/v1/auth/login"), "trace logging is on");
    for secret in [
        PASSWORD,
        "Wrong-Secret-Pass-42",
        &access,
        &refresh,
        SECRET,
        "eyJ",
    ] {
        assert!(!logs.contains(secret), "{secret:.12}… reached the log");
    }
    let dump = std::fs::read(setup.db()).unwrap();
    let text = String::from_utf8_lossy(&dump);
    assert!(
        !text.contains(PASSWORD) && !text.contains("Wrong-Secret-Pass-42") && !text.contains("eyJ")
    );
}

#[test]
fn weak_or_exposed_signing_secrets_are_refused() {
    let setup = Setup::new("[auth]\njwt_secret = \"too-short\"\n");
    let out = setup.cli(&["serve", "--bind", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("auth.jwt_secret"), "{}", stderr(&out));

    let setup = Setup::new("");
    let out = setup.cli(&["user", "list"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "reading never creates a database"
    );
    assert!(stderr(&out).contains("no database at"), "{}", stderr(&out));
    assert!(!setup.db().exists());
    let out = cli_with_stdin(
        &setup,
        &[
            "user",
            "add",
            "first",
            "--email",
            "f@example.com",
            "--password-stdin",
        ],
        "SecurePass123!\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let key = setup.dir.path().join("jwt-hs256.key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = setup.cli(&["serve", "--bind", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
}
