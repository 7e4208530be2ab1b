//! The order of the shared request steps (`http::pipeline`), the same on
//! every route of the table: 405, then 401, then 403, then 429, then the
//! body's 415, 413, 400 and 422. Each request below is wrong in every way
//! the steps after the expected one would refuse, so only the order can
//! make the expected status come first.

use serde_json::json;

use crate::harness::{query_i64, send, send_body, stderr, stdout, Daemon, Resp, Setup};
use crate::identity::{login, SECRET};
use crate::keys::add_user;

const PASSWORD: &str = "SecurePass123!";
/// Requests per minute of every user's tier.
const BUDGET: usize = 4;

fn setup() -> Setup {
    Setup::new(&format!(
        "[server]\nmax_body_bytes = 1024\n\n[auth]\njwt_secret = \"{SECRET}\"\nargon2_memory_kib = 64\nargon2_iterations = 1\n\n[ratelimit]\nanonymous_per_minute = 1000\n\n[tiers.free]\nper_minute = {BUDGET}\nper_day = 1000\n"
    ))
}

fn key(setup: &Setup, user: &str, scopes: &str) -> String {
    let out = setup.cli(&[
        "key", "create", "--user", user, "--name", "pipeline", "--scopes", scopes, "-q",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

fn token(d: &Daemon, user: &str) -> String {
    let r = login(d, user, PASSWORD);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["access_token"].as_str().unwrap().to_string()
}

/// A request with an optional credential, content type and body.
fn call(
    d: &Daemon,
    method: &str,
    path: &str,
    credential: Option<(&str, &str)>,
    content_type: &str,
    body: &str,
) -> Resp {
    let mut request = d.request(method, path).set("Content-Type", content_type);
    if let Some((name, value)) = credential {
        request = request.set(name, value);
    }
    send_body(request, body)
}

fn bearer(token: &str) -> Option<(&'static str, String)> {
    Some(("Authorization", format!("Bearer {token}")))
}

fn as_ref<'a>(c: &'a Option<(&'static str, String)>) -> Option<(&'a str, &'a str)> {
    c.as_ref().map(|(n, v)| (*n, v.as_str()))
}

fn authz_fails(setup: &Setup) -> i64 {
    query_i64(
        &setup.db(),
        "SELECT count(*) FROM audit_events WHERE action = 'authz_fail'",
    )
}

/// Wrong in every way the body steps check: type, size, syntax.
fn junk() -> String {
    format!("{{not json {}", "x".repeat(2000))
}

#[test]
fn steps_run_in_order_on_a_prediction_route() {
    let setup = setup();
    add_user(&setup, "alice", "user");
    add_user(&setup, "bob", "user");
    // Keys made before the daemon starts are in its first snapshot.
    let full = key(&setup, "alice", "predict:read,models:read");
    let unscoped = key(&setup, "alice", "models:read");
    let fresh = key(&setup, "bob", "predict:read");
    let d = setup.start();
    let (full, unscoped, fresh) = (
        Some(("X-API-Key", full)),
        Some(("X-API-Key", unscoped)),
        Some(("X-API-Key", fresh)),
    );
    let path = "/api/v1/predict";

    // 405 before the credential is even looked at.
    let r = call(&d, "PUT", path, None, "text/plain", &junk());
    r.problem(405);
    assert_eq!(r.header("allow"), Some("POST, OPTIONS"));
    // 401 before the scope, the limit and the body.
    call(&d, "POST", path, None, "text/plain", &junk()).problem(401);
    let forged = Some(("X-API-Key", "sk_live_not-a-real-key".to_string()));
    call(&d, "POST", path, as_ref(&forged), "text/plain", &junk()).problem(401);
    // 403 before the limit and the body. A refused scope is counted (so
    // its audit rows stay bounded by the caller's limit).
    let body = call(&d, "POST", path, as_ref(&unscoped), "text/plain", &junk()).problem(403);
    assert!(
        body["detail"].as_str().unwrap().contains("predict:read"),
        "{body}"
    );
    assert_eq!(authz_fails(&setup), 1);

    // Spend the rest of alice's budget with good requests.
    let good = r#"{"features": [1.0, 2.0, 3.0, 4.0, 5.0]}"#;
    for _ in 1..BUDGET {
        let r = call(&d, "POST", path, as_ref(&full), "application/json", good);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // 429 before the body.
    let r = call(&d, "POST", path, as_ref(&full), "text/plain", &junk());
    r.problem(429);
    assert!(r.header("retry-after").is_some());
    // Still 403 (not 429) for her key without the scope; over her limit,
    // the refusal writes no more audit rows.
    for _ in 0..5 {
        call(&d, "POST", path, as_ref(&unscoped), "text/plain", &junk()).problem(403);
    }
    assert_eq!(authz_fails(&setup), 1);

    // The body's own order, on bob's fresh budget: 415, 413, 400, 422.
    call(&d, "POST", path, as_ref(&fresh), "text/plain", &junk()).problem(415);
    call(
        &d,
        "POST",
        path,
        as_ref(&fresh),
        "application/json",
        &junk(),
    )
    .problem(413);
    call(
        &d,
        "POST",
        path,
        as_ref(&fresh),
        "application/json",
        "{not json",
    )
    .problem(400);
    let body = call(
        &d,
        "POST",
        path,
        as_ref(&fresh),
        "application/json",
        r#"{"features": "five numbers"}"#,
    )
    .problem(422);
    assert_eq!(body["errors"][0]["field"], "features", "{body}");
    // Those four counted: bob is out of budget now.
    call(&d, "POST", path, as_ref(&fresh), "application/json", good).problem(429);
}

#[test]
fn steps_run_in_order_on_a_protected_route() {
    let setup = setup();
    add_user(&setup, "root", "admin");
    add_user(&setup, "boss", "admin");
    add_user(&setup, "pat", "user");
    // One of root's keys without the admin scope.
    let root_unscoped = Some(("X-API-Key", key(&setup, "root", "models:read")));
    let d = setup.start();
    let root = bearer(&token(&d, "root"));
    let boss = bearer(&token(&d, "boss"));
    let pat = bearer(&token(&d, "pat"));
    let path = "/api/v1/admin/users/pat";

    let r = call(&d, "PUT", path, None, "text/plain", &junk());
    r.problem(405);
    assert_eq!(r.header("allow"), Some("GET, PATCH, HEAD, OPTIONS"));
    call(&d, "PATCH", path, None, "text/plain", &junk()).problem(401);
    let body = call(&d, "PATCH", path, as_ref(&pat), "text/plain", &junk()).problem(403);
    assert!(body["detail"].as_str().unwrap().contains("admin"), "{body}");

    // Spend root's admin budget.
    for _ in 0..BUDGET {
        let (name, value) = as_ref(&root).unwrap();
        let r = send(d.request("GET", path).set(name, value));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    call(&d, "PATCH", path, as_ref(&root), "text/plain", &junk()).problem(429);
    call(
        &d,
        "PATCH",
        path,
        as_ref(&root_unscoped),
        "text/plain",
        &junk(),
    )
    .problem(403);

    call(&d, "PATCH", path, as_ref(&boss), "text/plain", &junk()).problem(415);
    call(
        &d,
        "PATCH",
        path,
        as_ref(&boss),
        "application/json",
        &junk(),
    )
    .problem(413);
    call(
        &d,
        "PATCH",
        path,
        as_ref(&boss),
        "application/json",
        "{not json",
    )
    .problem(400);
    let body = call(
        &d,
        "PATCH",
        path,
        as_ref(&boss),
        "application/json",
        &json!({"disabled": "yes"}).to_string(),
    )
    .problem(422);
    assert_eq!(body["errors"][0]["field"], "disabled", "{body}");
}
