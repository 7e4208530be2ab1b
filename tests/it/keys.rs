//! API keys against the real daemon and CLI: shown once, only digests stored,
//! both headers, no oracle, rotation with grace, revocation within a second,
//! limits and ownership, usage counts surviving a restart (catalog K).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{send, send_body, stderr, stdout, Daemon, Resp, Setup};
use crate::identity::{auth_config, cli_with_stdin, eventually, login, register};

const PASSWORD: &str = "SecurePass123!";

fn session(d: &Daemon, name: &str) -> String {
    if register(d, name, PASSWORD).status != 201 {
        panic!("register {name}");
    }
    login(d, name, PASSWORD).json()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

fn create_key(d: &Daemon, token: &str, body: Value) -> Resp {
    send_body(
        d.request("POST", "/api/v1/auth/api-keys")
            .set("Authorization", &format!("Bearer {token}"))
            .set("Content-Type", "application/json"),
        &body.to_string(),
    )
}

fn with_key(d: &Daemon, path: &str, key: &str) -> Resp {
    send(d.request("GET", path).set("X-API-Key", key))
}

fn me_status(d: &Daemon, key: &str) -> u16 {
    with_key(d, "/api/v1/users/me", key).status
}

fn cli_json(setup: &Setup, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let out = setup.cli(&all);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn add_user(setup: &Setup, name: &str, role: &str) {
    let email = format!("{name}@example.com");
    let out = cli_with_stdin(
        setup,
        &[
            "user",
            "add",
            name,
            "--email",
            &email,
            "--role",
            role,
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

fn cli_key(setup: &Setup, user: &str, extra: &[&str]) -> String {
    let mut args = vec!["key", "create", "--user", user, "--name", "cli key", "-q"];
    args.extend_from_slice(extra);
    let out = setup.cli(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let key = stdout(&out).trim().to_string();
    assert!(key.starts_with("sk_live_"), "{key}");
    key
}

#[test]
fn a_key_is_shown_once_and_only_its_digest_is_stored() {
    let setup = Setup::new(&auth_config(""));
    let d = setup.start();
    let token = session(&d, "testuser");

    // The seed's example request.
    let r = create_key(
        &d,
        &token,
        json!({"name": "my-app", "scopes": ["predict:read"]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let created = r.json();
    let api_key = created["api_key"].as_str().unwrap().to_string();
    assert!(
        api_key.starts_with("sk_live_") && api_key.len() == 46,
        "{api_key}"
    );
    assert!(api_key[8..].bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(created["scopes"], json!(["predict:read"]));
    assert_eq!(created["prefix"], api_key[..16]);
    assert_eq!(created["name"], "my-app");

    let cli_created = cli_json(
        &setup,
        &["key", "create", "--user", "testuser", "--name", "from-cli"],
    );
    let cli_key = cli_created["api_key"].as_str().unwrap().to_string();
    assert!(cli_key.starts_with("sk_live_"));
    assert_eq!(
        cli_created["scopes"].as_array().unwrap().len(),
        5,
        "default: the role's scopes"
    );

    let list = send(
        d.request("GET", "/api/v1/auth/api-keys")
            .set("Authorization", &format!("Bearer {token}")),
    );
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.json()["keys"].as_array().unwrap().len(), 2);
    let table = setup.cli(&["key", "list"]);
    let json_list = setup.cli(&["--output", "json", "key", "list"]);
    for key in [&api_key, &cli_key] {
        assert!(
            !list.body.contains(key.as_str()),
            "the API listing shows a key"
        );
        assert!(
            !stdout(&table).contains(key.as_str()) && !stdout(&json_list).contains(key.as_str())
        );
        assert!(list.body.contains(&key[..16]), "the prefix identifies it");
    }
    assert!(stdout(&table).contains(&format!(
        "{}…{}",
        &api_key[..16],
        &api_key[api_key.len() - 4..]
    )));

    drop(d);
    let mut bytes = std::fs::read(setup.db()).unwrap();
    if let Ok(wal) = std::fs::read(setup.dir.path().join("mlapi.db-wal")) {
        bytes.extend(wal);
    }
    for key in [&api_key, &cli_key] {
        let found = bytes.windows(key.len()).any(|w| w == key.as_bytes());
        assert!(!found, "the database file holds a plain key");
        let random_part = &key.as_bytes()[8..40];
        assert!(!bytes.windows(random_part.len()).any(|w| w == random_part));
    }
    let pepper = setup.dir.path().join("api-key-pepper.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(pepper).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn keys_authenticate_by_either_header_and_refusals_are_indistinguishable() {
    let setup = Setup::new(&auth_config(""));
    add_user(&setup, "boss", "admin");
    let d = setup.start();
    let token = session(&d, "testuser");
    let key = create_key(&d, &token, json!({"name": "k", "scopes": ["predict:read"]})).json()
        ["api_key"]
        .as_str()
        .unwrap()
        .to_string();

    let by_header = with_key(&d, "/api/v1/users/me", &key);
    assert_eq!(by_header.status, 200, "{}", by_header.body);
    assert_eq!(by_header.json()["scopes"], json!(["predict:read"]));
    let by_bearer = send(
        d.request("GET", "/api/v1/users/me")
            .set("Authorization", &format!("Bearer {key}")),
    );
    assert_eq!(by_bearer.status, 200);

    // Scope: an admin's key limited to predict:read cannot use admin routes.
    let boss_key = cli_key(&setup, "boss", &["--scopes", "predict:read"]);
    eventually(Duration::from_secs(1), || me_status(&d, &boss_key) == 200);
    let r = with_key(&d, "/api/v1/admin/users", &boss_key);
    assert_eq!(r.problem(403)["scope"], "admin");
    let full = cli_key(&setup, "boss", &[]);
    eventually(Duration::from_secs(1), || {
        with_key(&d, "/api/v1/admin/users", &full).status == 200
    });

    // Malformed, one character off, unknown, expired, revoked: one answer.
    let mut off_by_one = key.clone().into_bytes();
    off_by_one[20] = if off_by_one[20] == b'x' { b'y' } else { b'x' };
    let unknown = mlapi::identity::keys::generate();
    let expiring = cli_key(&setup, "testuser", &["--expires", "1s"]);
    let revoked = cli_key(&setup, "testuser", &[]);
    let out = setup.cli(&["key", "revoke", &revoked[..16], "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::thread::sleep(Duration::from_millis(1300));
    let refusals: Vec<(String, Resp)> = [
        "sk_live_short".to_string(),
        String::from_utf8(off_by_one).unwrap(),
        unknown,
        expiring,
        revoked,
        format!("{key}x"),
        // No key shape at all: still judged as an API key, not as a token.
        "not-a-key".to_string(),
    ]
    .into_iter()
    .map(|k| {
        let r = with_key(&d, "/api/v1/users/me", &k);
        (k, r)
    })
    .collect();
    let first = &refusals[0].1;
    assert_eq!(
        first.json()["detail"],
        "the API key is invalid, expired or revoked"
    );
    for (k, r) in &refusals {
        assert_eq!(r.status, 401, "{k}: {}", r.body);
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Bearer realm="mlapi", error="invalid_token""#)
        );
        assert_eq!(r.json()["detail"], first.json()["detail"], "{k}: no oracle");
        assert!(!r.body.contains(k.as_str()), "the key is echoed");
    }
    assert_eq!(me_status(&d, &key), 200, "the good key still works");
}

#[test]
fn rotation_honours_the_grace_period() {
    let setup = Setup::new(&auth_config(""));
    let d = setup.start();
    let token = session(&d, "testuser");
    let bearer = format!("Bearer {token}");
    let old = create_key(&d, &token, json!({"name": "svc"})).json();
    let old_key = old["api_key"].as_str().unwrap().to_string();
    let rotate = |id: &str, body: Option<Value>| {
        let req = d
            .request("POST", &format!("/api/v1/auth/api-keys/{id}/rotate"))
            .set("Authorization", &bearer);
        match body {
            Some(b) => send_body(req.set("Content-Type", "application/json"), &b.to_string()),
            None => send(req),
        }
    };

    let r = rotate(
        old["id"].as_str().unwrap(),
        Some(json!({"grace_seconds": 2})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let new = r.json();
    let new_key = new["api_key"].as_str().unwrap().to_string();
    assert_eq!(new["name"], "svc");
    assert_eq!(new["rotated_from"], old["id"]);
    let rotated_at = Instant::now();
    assert_eq!(
        me_status(&d, &old_key),
        200,
        "the old key works during the grace period"
    );
    assert_eq!(me_status(&d, &new_key), 200);
    let waited = eventually(Duration::from_secs(5), || me_status(&d, &old_key) == 401);
    assert!(
        rotated_at.elapsed() >= Duration::from_millis(1000),
        "refused too early: {waited:?}"
    );
    assert_eq!(me_status(&d, &new_key), 200);
    rotate(old["id"].as_str().unwrap(), None).problem(409);

    // Without grace the old key stops at once.
    let r = rotate(new["id"].as_str().unwrap(), None);
    assert_eq!(r.status, 201, "{}", r.body);
    let newest = r.json()["api_key"].as_str().unwrap().to_string();
    assert_eq!(me_status(&d, &new_key), 401);
    assert_eq!(me_status(&d, &newest), 200);

    // One grace period per chain: the replacement of a key still in grace
    // cannot itself be rotated until that ends.
    let a = create_key(&d, &token, json!({"name": "chain"})).json();
    let b = rotate(
        a["id"].as_str().unwrap(),
        Some(json!({"grace_seconds": 3600})),
    )
    .json();
    rotate(
        b["id"].as_str().unwrap(),
        Some(json!({"grace_seconds": 3600})),
    )
    .problem(409);

    // A session narrower than the key cannot rotate it into a fresh copy.
    let wide = create_key(
        &d,
        &token,
        json!({"name": "wide", "scopes": ["predict:read", "models:read"]}),
    )
    .json();
    let narrow = send_body(
        d.request("POST", "/api/v1/auth/login")
            .set("Content-Type", "application/x-www-form-urlencoded"),
        "username=testuser&password=SecurePass123%21&scope=keys%3Awrite",
    )
    .json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = send(
        d.request(
            "POST",
            &format!(
                "/api/v1/auth/api-keys/{}/rotate",
                wide["id"].as_str().unwrap()
            ),
        )
        .set("Authorization", &format!("Bearer {narrow}")),
    );
    r.problem(403);
    assert_eq!(
        me_status(&d, wide["api_key"].as_str().unwrap()),
        200,
        "a refused rotation changes nothing"
    );

    let r = rotate(
        new["id"].as_str().unwrap(),
        Some(json!({"grace_seconds": 99999999})),
    );
    assert_eq!(r.problem(422)["errors"][0]["field"], "grace_seconds");
    let events = cli_json(&setup, &["audit", "--action", "apikey_rotate"]);
    assert_eq!(events.as_array().unwrap().len(), 3);
}

#[test]
fn cli_revoke_reaches_a_running_daemon_within_a_second() {
    let setup = Setup::new(&auth_config(""));
    add_user(&setup, "ops", "user");
    let d = setup.start();
    let key = cli_key(&setup, "ops", &[]);
    eventually(Duration::from_secs(1), || me_status(&d, &key) == 200);
    let started = Instant::now();
    let out = setup.cli(&["key", "revoke", &key[..16], "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("revoked"));
    eventually(Duration::from_secs(1), || me_status(&d, &key) == 401);
    assert!(
        started.elapsed() < Duration::from_secs(1) + Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    let events = cli_json(&setup, &["audit", "--action", "apikey_revoke"]);
    assert!(events[0]["actor"].as_str().unwrap().starts_with("cli:"));
    assert_eq!(events[0]["target"], "ops");
}

#[test]
fn limits_and_ownership() {
    let setup = Setup::new(&auth_config(""));
    let d = setup.start();
    let alice = session(&d, "alice");
    let bob = session(&d, "bob");
    let mut alice_keys = Vec::new();
    for i in 0..5 {
        let r = create_key(&d, &alice, json!({"name": format!("k{i}")}));
        assert_eq!(r.status, 201, "{}", r.body);
        alice_keys.push(r.json());
    }
    let r = create_key(&d, &alice, json!({"name": "sixth"}));
    assert!(r.problem(409)["detail"]
        .as_str()
        .unwrap()
        .contains("limit is 5"));
    let out = setup.cli(&["key", "create", "--user", "alice", "--name", "sixth"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));

    // Bob cannot see, rotate or revoke Alice's keys: they do not exist for him.
    let alice_key = alice_keys[0]["api_key"].as_str().unwrap();
    let id = alice_keys[0]["id"].as_str().unwrap();
    let as_bob = |method: &str, path: &str| {
        send(
            d.request(method, path)
                .set("Authorization", &format!("Bearer {bob}")),
        )
    };
    let list = as_bob("GET", "/api/v1/auth/api-keys");
    assert_eq!(list.json()["keys"].as_array().unwrap().len(), 0);
    let list = as_bob(
        "GET",
        &format!(
            "/api/v1/auth/api-keys?user_id={}",
            alice_keys[0]["id"].as_str().unwrap()
        ),
    );
    assert_eq!(
        list.json()["keys"].as_array().unwrap().len(),
        0,
        "query parameters cannot widen the listing"
    );
    as_bob("DELETE", &format!("/api/v1/auth/api-keys/{id}")).problem(404);
    as_bob("POST", &format!("/api/v1/auth/api-keys/{id}/rotate")).problem(404);
    as_bob(
        "DELETE",
        "/api/v1/auth/api-keys/00000000-0000-0000-0000-000000000000",
    )
    .problem(404);
    assert_eq!(me_status(&d, alice_key), 200, "Alice's key still works");

    // Revoking frees a slot; scopes beyond the role are refused.
    let r = send(
        d.request("DELETE", &format!("/api/v1/auth/api-keys/{id}"))
            .set("Authorization", &format!("Bearer {alice}")),
    );
    assert_eq!(r.status, 204);
    assert_eq!(me_status(&d, alice_key), 401);
    let r = create_key(&d, &alice, json!({"name": "admin?", "scopes": ["admin"]}));
    assert_eq!(r.problem(422)["errors"][0]["field"], "scopes");
    create_key(
        &d,
        &alice,
        json!({"name": "typo", "scopes": ["predict:write"]}),
    )
    .problem(422);
    create_key(
        &d,
        &alice,
        json!({"name": "past", "expires_at": "2001-01-01T00:00:00Z"}),
    )
    .problem(422);
    create_key(
        &d,
        &alice,
        json!({"name": "bad date", "expires_at": "tomorrow"}),
    )
    .problem(422);
    create_key(&d, &alice, json!({"name": ""})).problem(422);
    create_key(&d, &alice, json!({"name": "x", "owner": "bob"})).problem(400);
    assert_eq!(
        create_key(&d, &alice, json!({"name": "replacement"})).status,
        201
    );

    // A key without keys:write cannot manage keys; no key logs out or acts
    // as a password.
    let narrow = create_key(
        &d,
        &bob,
        json!({"name": "narrow", "scopes": ["predict:read"]}),
    )
    .json();
    let narrow_key = narrow["api_key"].as_str().unwrap();
    let r = send_body(
        d.request("POST", "/api/v1/auth/api-keys")
            .set("X-API-Key", narrow_key)
            .set("Content-Type", "application/json"),
        r#"{"name":"escalate","scopes":["keys:write"]}"#,
    );
    assert!(r.problem(403)["detail"]
        .as_str()
        .unwrap()
        .contains("keys:write"));
    send(
        d.request("POST", "/api/v1/auth/logout")
            .set("X-API-Key", narrow_key),
    )
    .problem(403);
    let r = send_body(
        d.request("POST", "/api/v1/auth/token")
            .set("Content-Type", "application/x-www-form-urlencoded"),
        &format!("grant_type=password&username=bob&password={narrow_key}"),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_grant");

    // A disabled owner's keys stop working.
    let out = setup.cli(&["user", "disable", "bob", "--yes"]);
    assert_eq!(out.status.code(), Some(0));
    eventually(Duration::from_secs(1), || me_status(&d, narrow_key) == 401);
}

#[test]
fn usage_is_counted_and_survives_a_graceful_restart() {
    let setup = Setup::new(&auth_config("key_usage_flush_secs = 3600"));
    add_user(&setup, "counter", "user");
    let key = cli_key(&setup, "counter", &[]);
    let mut d = setup.start_process();
    for _ in 0..7 {
        assert_eq!(me_status(&d, &key), 200);
    }
    // Refused requests never count against a key.
    let last = if key.ends_with('x') { "y" } else { "x" };
    assert_eq!(
        me_status(&d, &format!("{}{last}", &key[..key.len() - 1])),
        401
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(10)).code(), Some(0));
    let listed = cli_json(&setup, &["key", "list", "--user", "counter"]);
    assert_eq!(listed[0]["request_count"], 7, "{listed}");
    assert!(listed[0]["last_used_at"].is_string());
    let by_day: i64 = listed[0]["requests_by_day"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(by_day, 7);

    let mut d = setup.start_process();
    for _ in 0..5 {
        assert_eq!(me_status(&d, &key), 200);
    }
    // The API listing includes what the daemon has not written yet.
    let token = login(&d, "counter", PASSWORD).json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let api = send(
        d.request("GET", "/api/v1/auth/api-keys")
            .set("Authorization", &format!("Bearer {token}")),
    );
    assert_eq!(api.json()["keys"][0]["request_count"], 12);
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(10)).code(), Some(0));
    let listed = cli_json(&setup, &["key", "list"]);
    assert_eq!(listed[0]["request_count"], 12);
}

#[test]
fn key_cli_errors() {
    let setup = Setup::new(&auth_config(""));
    add_user(&setup, "owner", "user");
    let code = |args: &[&str]| setup.cli(args).status.code();
    assert_eq!(
        code(&["key", "create", "--user", "ghost", "--name", "x"]),
        Some(3)
    );
    assert_eq!(
        code(&["key", "create", "--user", "owner", "--name", "x", "--scopes", "nope"]),
        Some(2)
    );
    assert_eq!(
        code(&["key", "create", "--user", "owner", "--name", "x", "--scopes", "admin"]),
        Some(2)
    );
    assert_eq!(
        code(&[
            "key",
            "create",
            "--user",
            "owner",
            "--name",
            "x",
            "--expires",
            "soon"
        ]),
        Some(2)
    );
    assert_eq!(code(&["key", "list", "--user", "ghost"]), Some(3));
    assert_eq!(
        code(&["key", "revoke", "sk_live_nothere", "--yes"]),
        Some(3)
    );
    assert_eq!(code(&["key", "rotate", "sk_live_nothere"]), Some(3));
    let key = cli_key(&setup, "owner", &[]);
    assert_eq!(
        code(&["key", "rotate", &key[..16], "--grace", "forever"]),
        Some(2)
    );
    assert_eq!(code(&["key", "revoke", &key[..16], "--yes"]), Some(0));
    assert_eq!(
        code(&["key", "rotate", &key[..16]]),
        Some(4),
        "a revoked key does not rotate"
    );
    let out = setup.cli(&["key", "create", "--user", "owner", "--name", "shown"]);
    assert!(stdout(&out).contains("not shown again"), "{}", stdout(&out));
}

/// A provisioning script's key with `keys:write` manages its owner's keys,
/// never granting more than it has; audit rows name the key that acted.
#[test]
fn a_key_with_keys_write_manages_its_owners_keys() {
    let setup = Setup::new(&auth_config(""));
    let d = setup.start();
    let carol = session(&d, "carol");
    let r = create_key(
        &d,
        &carol,
        json!({"name": "provisioner", "scopes": ["keys:write", "predict:read"]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let provisioner = r.json();
    let key = provisioner["api_key"].as_str().unwrap().to_string();
    let by_key = |method: &str, path: &str| {
        d.request(method, path)
            .set("X-API-Key", &key)
            .set("Content-Type", "application/json")
    };

    // Beyond its own scopes: 403 naming the scope, nothing created.
    let r = send_body(
        by_key("POST", "/api/v1/auth/api-keys"),
        r#"{"name":"wider","scopes":["predict:read","models:read"]}"#,
    );
    let problem = r.problem(403);
    assert!(
        problem["detail"].as_str().unwrap().contains("models:read"),
        "{problem}"
    );
    // With no scopes asked for, the new key gets the creator's, not the role's.
    let r = send_body(
        by_key("POST", "/api/v1/auth/api-keys"),
        r#"{"name":"default"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let default = r.json();
    assert_eq!(default["scopes"], json!(["predict:read", "keys:write"]));
    let r = send_body(
        by_key("POST", "/api/v1/auth/api-keys"),
        r#"{"name":"worker","scopes":["predict:read"]}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let worker = r.json();
    let worker_key = worker["api_key"].as_str().unwrap();
    assert_eq!(me_status(&d, worker_key), 200);

    let list = send(by_key("GET", "/api/v1/auth/api-keys")).json();
    let names: Vec<&str> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for name in ["provisioner", "default", "worker"] {
        assert!(names.contains(&name), "{names:?}");
    }
    for secret in [&key, default["api_key"].as_str().unwrap(), worker_key] {
        assert!(
            !list.to_string().contains(secret),
            "a listing never shows a secret"
        );
    }

    let worker_id = worker["id"].as_str().unwrap();
    let r = send_body(
        by_key("POST", &format!("/api/v1/auth/api-keys/{worker_id}/rotate")),
        "{}",
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let rotated = r.json();
    let rotated_key = rotated["api_key"].as_str().unwrap();
    assert_eq!(me_status(&d, rotated_key), 200);
    eventually(Duration::from_secs(1), || me_status(&d, worker_key) == 401);
    let rotated_id = rotated["id"].as_str().unwrap();
    let r = send(by_key(
        "DELETE",
        &format!("/api/v1/auth/api-keys/{rotated_id}"),
    ));
    assert_eq!(r.status, 204, "{}", r.body);
    eventually(Duration::from_secs(1), || me_status(&d, rotated_key) == 401);

    // A key that carries a scope the acting key lacks cannot be rotated by it.
    let wide = create_key(
        &d,
        &carol,
        json!({"name": "wide", "scopes": ["models:read"]}),
    )
    .json();
    let r = send_body(
        by_key(
            "POST",
            &format!(
                "/api/v1/auth/api-keys/{}/rotate",
                wide["id"].as_str().unwrap()
            ),
        ),
        "{}",
    );
    assert!(r.problem(403)["detail"]
        .as_str()
        .unwrap()
        .contains("models:read"));

    // Logout stays a session's business.
    send(by_key("POST", "/api/v1/auth/logout")).problem(403);

    // A key that expires hands out no more time than it has.
    let r = create_key(
        &d,
        &carol,
        json!({"name": "short", "scopes": ["keys:write"], "expires_at": "2030-01-01T00:00:00Z"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let short = r.json()["api_key"].as_str().unwrap().to_string();
    let by_short = |body: &str| {
        send_body(
            d.request("POST", "/api/v1/auth/api-keys")
                .set("X-API-Key", &short)
                .set("Content-Type", "application/json"),
            body,
        )
    };
    let r = by_short(r#"{"name":"longer","expires_at":"2031-01-01T00:00:00Z"}"#);
    assert!(r.problem(403)["detail"]
        .as_str()
        .unwrap()
        .contains("outlives"));
    let r = by_short(r#"{"name":"unbounded"}"#);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.json()["expires_at"],
        "2030-01-01T00:00:00Z",
        "it expires with its creator"
    );

    // The audit names the acting key on every row it caused.
    let out = setup.cli(&["--output", "json", "audit", "--user", "carol"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let events: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let provisioner_id = provisioner["id"].as_str().unwrap();
    let by_provisioner: Vec<&str> = events
        .iter()
        .filter(|e| e["api_key_id"] == provisioner_id)
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in ["apikey_create", "apikey_rotate", "apikey_revoke"] {
        assert!(
            by_provisioner.contains(&action),
            "no {action} row naming the key: {events:#?}"
        );
    }
    let first = events
        .iter()
        .find(|e| e["action"] == "apikey_create" && e["api_key_id"].is_null())
        .expect("the session's own apikey_create");
    assert_eq!(first["actor"], "carol");
}

/// An API-key header the daemon cannot use (unreadable, empty) is refused,
/// never skipped for the bearer token (schemathesis's ignored_auth found it).
#[test]
fn an_unreadable_credential_header_is_refused_not_skipped() {
    let d = Setup::new(&auth_config("")).start();
    let token = session(&d, "bytes");
    let me = |extra: &str| {
        d.raw(
            format!(
                "GET /api/v1/users/me HTTP/1.1\r\nHost: test\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n{extra}\r\n"
            )
            .as_bytes(),
        )
    };
    assert!(me("").starts_with("HTTP/1.1 200"), "{}", me(""));
    // `ÿ` is two bytes past ASCII: the value is not a string a key can be.
    let refused = me("X-API-Key: sk_live_\u{ff}\r\n");
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(refused.contains("invalid_token"), "{refused}");
    let empty = me("X-API-Key: \r\n");
    assert!(empty.starts_with("HTTP/1.1 401"), "{empty}");
}
