//! The HTTP frame: operations endpoints, problem+json for every rejection,
//! security headers, request ids, CORS, body limits (SPEC 5; catalog H, I).

use crate::harness::{query_i64, send, send_body, Redis, Setup};
use mlapi::http::routes::Surface;

const DEBUG: &str = "[debug]\ntest_routes = true\n";

fn assert_security_headers(r: &crate::harness::Resp) {
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(
        r.header("content-security-policy"),
        Some("default-src 'none'; frame-ancestors 'none'")
    );
    assert!(r.header("permissions-policy").is_some());
    assert!(r.header("x-request-id").is_some_and(|v| !v.is_empty()));
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

#[test]
fn defaults_serve_health_and_ready_with_migrated_database() {
    let setup = Setup::new("");
    let daemon = setup.start();

    let health = daemon.get("/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(
        health.header("content-type"),
        Some("application/json; charset=utf-8")
    );

    let ready = daemon.get("/ready");
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["checks"]["database"]["ok"], true);

    assert_eq!(
        query_i64(&setup.db(), "PRAGMA user_version"),
        mlapi::store::SCHEMA_VERSION
    );
    assert_eq!(
        query_i64(
            &setup.db(),
            "SELECT count(*) FROM audit_events WHERE action = 'sys_startup'"
        ),
        1
    );
}

#[test]
fn rejections_are_problems_with_security_headers() {
    let daemon = Setup::new(DEBUG).start();

    let r = daemon.get("/no/such/route");
    r.problem(404);
    assert_security_headers(&r);

    let r = send(daemon.request("POST", "/health"));
    r.problem(405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    assert_security_headers(&r);

    let r = send(daemon.request("TRACE", "/ready"));
    r.problem(405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));

    let r = send(daemon.request("DELETE", "/no/such/route"));
    r.problem(404);

    for path in ["/health", "/ready", "/openapi.json"] {
        let r = daemon.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_security_headers(&r);
    }
}

#[test]
fn request_ids_are_echoed_when_sane() {
    let daemon = Setup::new("").start_process();
    let r = send(
        daemon
            .request("GET", "/health")
            .set("X-Request-Id", "client-abc.123"),
    );
    assert_eq!(r.header("x-request-id"), Some("client-abc.123"));

    let r = send(
        daemon
            .request("GET", "/health")
            .set("X-Request-Id", "has spaces<script>"),
    );
    let id = r.header("x-request-id").unwrap();
    assert_ne!(id, "has spaces<script>");
    assert_eq!(id.len(), 36, "a fresh UUID replaces an unusable id: {id}");
    // The access log carries the id but never the query string.
    let r = send(
        daemon
            .request("GET", "/health?access_token=secret-value")
            .set("X-Request-Id", "find-me-1"),
    );
    assert_eq!(r.status, 200);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let logs = daemon.logs();
    assert!(logs.contains("find-me-1"), "{logs}");
    assert!(
        !logs.contains("secret-value"),
        "query string leaked into logs"
    );
}

#[test]
fn json_bodies_are_checked() {
    let setup = Setup::new(&format!("{DEBUG}\n[server]\nmax_body_bytes = 16384\n"));
    let daemon = setup.start();
    let post = || daemon.request("POST", "/debug/echo");

    let ok = send_body(
        post().set("Content-Type", "application/json"),
        r#"{"message":"hi","count":2}"#,
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["message"], "hi");

    // 415: wrong or missing content type.
    send_body(
        post().set("Content-Type", "text/plain"),
        r#"{"message":"hi"}"#,
    )
    .problem(415);
    send_body(post(), r#"{"message":"hi"}"#).problem(415);
    send_body(
        post().set("Content-Type", "application/x-www-form-urlencoded"),
        "message=hi",
    )
    .problem(415);

    // 400: malformed JSON, NaN literals, unknown fields, deep nesting.
    let json = || post().set("Content-Type", "application/json");
    send_body(json(), r#"{"message": "#).problem(400);
    send_body(json(), r#"{"message": NaN}"#).problem(400);
    send_body(json(), r#"{"message":"hi","admin":true}"#).problem(400);
    let started = std::time::Instant::now();
    let nested = "[".repeat(10_000);
    send_body(json(), &nested).problem(400);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));

    // 422: well-formed, wrong shape, with the field named.
    let body = send_body(json(), r#"{"message":"hi","count":"two"}"#).problem(422);
    assert_eq!(body["errors"][0]["field"], "count");
    let body = send_body(json(), r#"{}"#).problem(422);
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("message"));

    // 413: declared too large, and chunked past the limit.
    // (Raw sockets: the server answers before reading the body and closes,
    // which an HTTP client library reports as a broken pipe.)
    let big = format!(r#"{{"message":"{}"}}"#, "x".repeat(20_000));
    let head = |extra: &str| {
        format!(
            "POST /debug/echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
            big.len()
        )
    };
    let answer = daemon.raw(format!("{}{big}", head("")).as_bytes());
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let answer = daemon.raw(head("Expect: 100-continue\r\n").as_bytes());
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "no 100 Continue for a body that is refused: {answer}"
    );
    assert!(answer.contains("\"status\":413"), "{answer}");
    let chunk = "x".repeat(9_000);
    let raw = format!(
        "POST /debug/echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len(),
        chunk.len()
    );
    let answer = daemon.raw(raw.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");

    // Nothing above broke the server.
    assert_eq!(daemon.get("/health").status, 200);
}

#[test]
fn oversized_and_conflicting_heads_are_refused() {
    let daemon = Setup::new("").start();
    let huge = format!(
        "GET /health HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let answer = daemon.raw(huge.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.200}");

    let smuggle = "POST /health HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n";
    let answer = daemon.raw(smuggle.as_bytes());
    assert!(
        answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.1 405"),
        "CL+TE must not be served as two requests: {answer}"
    );
    assert_eq!(answer.matches("HTTP/1.1").count(), 1, "{answer}");
    assert_eq!(daemon.get("/health").status, 200);
}

#[test]
fn a_panicking_handler_gets_a_generic_500_and_the_server_lives() {
    let daemon = Setup::new(DEBUG).start();
    let r = daemon.get("/debug/panic");
    let body = r.problem(500);
    assert!(
        !r.body.contains("debug panic route"),
        "panic message leaked: {}",
        r.body
    );
    assert!(!r.body.contains(".rs"), "source path leaked: {}", r.body);
    assert_eq!(body["detail"], "internal error");
    assert!(r.header("x-request-id").is_some());
    assert_eq!(daemon.get("/health").status, 200);
}

#[test]
fn cors_allows_only_configured_origins() {
    let daemon = Setup::new("[cors]\nallowed_origins = [\"https://app.example\"]\n").start();

    let preflight = |origin: &str| {
        send(
            daemon
                .request("OPTIONS", "/ready")
                .set("Origin", origin)
                .set("Access-Control-Request-Method", "GET")
                .set("Access-Control-Request-Headers", "authorization"),
        )
    };
    let ok = preflight("https://app.example");
    assert_eq!(ok.status, 204);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        ok.header("access-control-allow-methods"),
        Some("GET, HEAD, OPTIONS")
    );
    assert!(ok
        .header("access-control-allow-headers")
        .unwrap()
        .contains("Authorization"));
    assert!(ok.header_all("vary").contains(&"Origin"));
    assert!(ok.header("access-control-allow-credentials").is_none());

    let evil = preflight("https://evil.example");
    assert!(evil.header("access-control-allow-origin").is_none());
    assert!(evil.header("access-control-allow-methods").is_none());

    let simple = send(
        daemon
            .request("GET", "/health")
            .set("Origin", "https://app.example"),
    );
    assert_eq!(
        simple.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(simple
        .header("access-control-expose-headers")
        .unwrap()
        .contains("X-Request-Id"));
    let simple = send(
        daemon
            .request("GET", "/health")
            .set("Origin", "https://evil.example"),
    );
    assert!(simple.header("access-control-allow-origin").is_none());
    assert!(simple.header_all("vary").contains(&"Origin"));

    // A preflight for an unknown path is a 404, not a blanket allow.
    send(
        daemon
            .request("OPTIONS", "/nope")
            .set("Origin", "https://app.example")
            .set("Access-Control-Request-Method", "GET"),
    )
    .problem(404);
}

#[test]
fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let daemon = Setup::new("[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n").start_process();
    let r = send(
        daemon
            .request("GET", "/health")
            .set("X-Forwarded-For", "198.51.100.7")
            .set("X-Request-Id", "xff-ok"),
    );
    assert_eq!(r.status, 200);
    let r = send(
        daemon
            .request("GET", "/health")
            .set("X-Forwarded-For", "not an ip"),
    );
    let body = r.problem(400);
    assert!(body["detail"].as_str().unwrap().contains("X-Forwarded-For"));
    std::thread::sleep(std::time::Duration::from_millis(100));
    let line = daemon
        .logs()
        .lines()
        .find(|l| l.contains("xff-ok"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(line.contains("client=198.51.100.7"), "{line}");

    // From an untrusted peer the header is ignored, malformed or not.
    let daemon = Setup::new("").start_process();
    assert_eq!(
        send(
            daemon
                .request("GET", "/health")
                .set("X-Forwarded-For", "garbage")
        )
        .status,
        200
    );
}

#[test]
fn openapi_documents_every_route_and_every_route_answers() {
    let daemon = Setup::new("").start();
    let doc = daemon.get("/openapi.json").json();
    assert_eq!(doc["openapi"], "3.1.0");
    for route in &mlapi::http::routes::ROUTES {
        if route.surface == Surface::Page {
            assert!(
                doc["paths"][route.path].is_null(),
                "{} is not API",
                route.path
            );
            continue;
        }
        let method = route.method.as_str();
        let op = &doc["paths"][route.path][method.to_ascii_lowercase()];
        assert_eq!(
            op["operationId"], route.doc.operation_id,
            "{} {}",
            route.method, route.path
        );
        let r = send(daemon.request(method, route.path));
        assert!(
            r.status != 404 && r.status != 405,
            "{} {} answered {}",
            route.method,
            route.path,
            r.status
        );
    }
    assert!(
        doc["paths"]["/debug/echo"].is_null(),
        "debug routes stay out of the document"
    );
    // Debug routes are not mounted unless asked for.
    daemon.get("/debug/panic").problem(404);
}

#[test]
fn ready_reports_a_database_it_cannot_use() {
    let setup = Setup::new("");
    let daemon = setup.start();
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    let r = daemon.get("/ready");
    let body = r.problem(503);
    assert!(r.header("retry-after").is_some());
    assert_eq!(body["checks"]["database"]["ok"], false);
    assert!(
        body["detail"].as_str().unwrap().contains("database"),
        "{body}"
    );
    assert_eq!(
        daemon.get("/health").status,
        200,
        "liveness does not depend on the database"
    );
}

#[test]
fn ready_checks_redis_when_configured() {
    let mut redis = Redis::start();
    let setup = Setup::new(&format!("[redis]\nurl = \"{}\"\n", redis.url()));
    let daemon = setup.start();
    let ready = daemon.get("/ready");
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["checks"]["redis"]["ok"], true);

    assert_eq!(daemon.get("/health").json()["redis"], "connected");

    // Limits and the cache fall back per daemon (the default
    // on_redis_error = "local"), so the daemon stays ready, flagged degraded.
    redis.stop();
    let r = daemon.get("/ready");
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["redis"]["degraded"], true);
    assert_eq!(body["checks"]["database"]["ok"], true);
    assert!(
        !r.body.contains("redis.sock"),
        "the Redis address stays private: {}",
        r.body
    );
    let health = daemon.get("/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "degraded");
    assert_eq!(health.json()["redis"], "unreachable");
}

#[test]
fn without_redis_a_deny_policy_makes_the_daemon_unready() {
    let mut redis = Redis::start();
    let setup = Setup::new(&format!(
        "[redis]\nurl = \"{}\"\n\n[ratelimit]\non_redis_error = \"deny\"\n",
        redis.url()
    ));
    let daemon = setup.start();
    assert_eq!(daemon.get("/ready").status, 200);
    redis.stop();
    let body = daemon.get("/ready").problem(503);
    assert_eq!(body["checks"]["redis"]["ok"], false);
    assert!(body["detail"].as_str().unwrap().contains("deny"), "{body}");
}

#[test]
fn clients_that_refuse_json_get_406() {
    let daemon = Setup::new("").start();
    send(
        daemon
            .request("GET", "/health")
            .set("Accept", "application/xml"),
    )
    .problem(406);
    for accept in [
        "application/json",
        "*/*",
        "text/html, application/*;q=0.5",
        "application/problem+json",
    ] {
        assert_eq!(
            send(daemon.request("GET", "/health").set("Accept", accept)).status,
            200,
            "{accept}"
        );
    }
}

#[test]
fn head_works_where_get_does_and_trailing_slashes_are_not_aliases() {
    let daemon = Setup::new("").start();
    let r = send(daemon.request("HEAD", "/health"));
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert!(
        r.header("content-length").is_some_and(|l| l != "0"),
        "HEAD keeps the length"
    );
    assert_security_headers(&r);
    let r = send(daemon.request("POST", "/ready"));
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    daemon.get("/health/").problem(404);
    send(daemon.request("POST", "/health/")).problem(404);
}

#[test]
fn no_config_file_uses_the_user_data_dir_or_state_directory() {
    let home = tempfile::tempdir().unwrap();
    let start = |extra: &[(&str, std::path::PathBuf)]| {
        let mut cmd = crate::harness::mlapi();
        cmd.args(["serve", "--bind", "127.0.0.1:0"])
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("XDG_DATA_HOME", home.path().join("data"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("listening on") {
            line.clear();
            assert!(
                std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0,
                "daemon exited"
            );
        }
        let _ = child.kill();
        let _ = child.wait();
        line
    };
    if std::path::Path::new("/etc/mlapi/mlapi.toml").exists() {
        panic!("this machine has /etc/mlapi/mlapi.toml, which would shadow the built-in defaults under test");
    }
    let line = start(&[]);
    let db = home.path().join("data/mlapi/mlapi.db");
    assert!(line.contains(&db.display().to_string()), "{line}");
    assert!(db.exists());
    assert_eq!(
        query_i64(&db, "PRAGMA user_version"),
        mlapi::store::SCHEMA_VERSION
    );

    let state = home.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let line = start(&[("STATE_DIRECTORY", state.clone())]);
    assert!(
        line.contains(&state.join("mlapi.db").display().to_string()),
        "{line}"
    );
    assert!(
        state.join("jwt-hs256.key").exists(),
        "generated secrets live beside the database"
    );
}
