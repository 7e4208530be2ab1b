//! `/metrics` against the real daemon: scraped after known traffic, parsed
//! with a Prometheus text parser, every count exact; who may read it; Redis
//! up and down; shadow limits that count without refusing.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value as Metric};
use serde_json::{json, Value};

use crate::contract::tool;
use crate::harness::{query_i64, send, send_body, stderr, Daemon, Redis, Resp, Setup};
use crate::identity::{auth_config, eventually, login, user_with_tokens};
use crate::keys::add_user;

const PASSWORD: &str = "SecurePass123!";
const FEATURES: &str = r#"{"features": [1.0, 2.0, 3.0, 4.0, 5.0]}"#;

fn scrape(d: &Daemon, token: &str) -> Scrape {
    let r = send(
        d.request("GET", "/metrics")
            .set("Authorization", &format!("Bearer {token}")),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse(&r.body)
}

fn parse(text: &str) -> Scrape {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    Scrape::parse(lines).unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{text}"))
}

/// The text through the Prometheus project's own Python parser
/// (`prometheus_client`, strict about the format): family name → type.
fn official_families(text: &str) -> Value {
    let mut child = Command::new(tool("python"))
        .args([
            "-c",
            "import json, sys\n\
             from prometheus_client.parser import text_string_to_metric_families as parse\n\
             print(json.dumps({f.name: f.type for f in parse(sys.stdin.read())}))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the venv's python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the scrape: {}\n{text}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The sample of `name` whose labels include all of `labels`; exactly one.
fn sample<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> &'a Sample {
    let found: Vec<&Sample> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{name}{labels:?}: {} samples among {:#?}",
        found.len(),
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .collect::<Vec<_>>()
    );
    found[0]
}

fn count(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match &sample(scrape, name, labels).value {
        Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => *v,
        other => panic!("{name}: not a number: {other:?}"),
    }
}

/// A histogram's count, and its buckets as (upper bound, cumulative count).
fn histogram(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> (u64, Vec<(f64, f64)>) {
    match &sample(scrape, name, labels).value {
        Metric::Histogram(buckets) => {
            let buckets: Vec<(f64, f64)> = buckets.iter().map(|b| (b.less_than, b.count)).collect();
            let total = buckets.last().expect("an +Inf bucket").1 as u64;
            (total, buckets)
        }
        other => panic!("{name}: not a histogram: {other:?}"),
    }
}

fn predict(d: &Daemon, token: &str) -> Resp {
    send_body(
        d.request("POST", "/api/v1/predict")
            .set("Authorization", &format!("Bearer {token}"))
            .set("Content-Type", "application/json"),
        FEATURES,
    )
}

fn admin_token(setup: &Setup, d: &Daemon) -> String {
    add_user(setup, "ops", "admin");
    let r = login(d, "ops", PASSWORD);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["access_token"].as_str().unwrap().to_string()
}

#[test]
fn metrics_count_known_traffic_exactly() {
    // Users land on a tier of 3 requests a minute, shared by every group.
    let setup = Setup::new(&format!(
        "{}\n[tiers.metered]\nper_minute = 3\n",
        auth_config("default_tier = \"metered\"")
    ));
    let d = setup.start();
    // Anonymous decisions: a register and a login here, a login in admin_token.
    let (user, _) = user_with_tokens(&d, "dana");
    let admin = admin_token(&setup, &d);

    send(d.request("GET", "/metrics")).problem(401);
    // A refused scope on this unlimited route is counted against the
    // caller's budget (group auth) and audited only while within it.
    let as_user = || {
        send(
            d.request("GET", "/metrics")
                .set("Authorization", &format!("Bearer {user}")),
        )
    };
    assert!(as_user().problem(403)["detail"]
        .as_str()
        .unwrap()
        .contains("metrics:read"));
    let statuses: Vec<u16> = (0..5).map(|_| predict(&d, &user).status).collect();
    assert_eq!(statuses, [200, 200, 429, 429, 429]);
    as_user().problem(403);
    let authz_fail = "SELECT COUNT(*) FROM audit_events WHERE action = 'authz_fail'";
    assert_eq!(
        query_i64(&setup.db(), authz_fail),
        1,
        "the second refusal, over the limit, wrote nothing"
    );
    assert_eq!(send(d.request("GET", "/no/such/path")).status, 404);
    assert_eq!(
        send(d.request("GET", "/api/v1/users/12345/nope")).status,
        404
    );

    let m = scrape(&d, &admin);
    let http = "mlapi_http_requests_total";
    let predict_route = [
        ("route", "/api/v1/predict"),
        ("method", "POST"),
        ("version", "1"),
    ];
    let with_status = |status: &'static str| {
        let mut labels = predict_route.to_vec();
        labels.push(("status", status));
        labels
    };
    assert_eq!(count(&m, http, &with_status("200")), 2.0);
    assert_eq!(count(&m, http, &with_status("429")), 3.0);
    let unmatched = |version| {
        count(
            &m,
            http,
            &[
                ("route", "unmatched"),
                ("method", "GET"),
                ("status", "404"),
                ("version", version),
            ],
        )
    };
    assert_eq!(unmatched(""), 1.0, "unmatched paths share one series");
    assert_eq!(unmatched("1"), 1.0, "per API version");
    assert!(
        !m.samples
            .iter()
            .any(|s| s.labels.values().any(|v| v.contains("no/such"))),
        "a raw path never becomes a label"
    );
    assert_eq!(
        count(
            &m,
            http,
            &[("route", "/metrics"), ("status", "401"), ("version", "")]
        ),
        1.0
    );
    assert_eq!(
        count(&m, http, &[("route", "/metrics"), ("status", "403")]),
        2.0
    );
    assert_eq!(
        count(
            &m,
            http,
            &[("route", "/api/v1/auth/login"), ("status", "200")]
        ),
        2.0
    );
    let (n, buckets) = histogram(
        &m,
        "mlapi_http_request_duration_seconds",
        &[("route", "/api/v1/predict")],
    );
    assert_eq!(n, 5);
    assert_eq!(buckets.len(), 18, "17 bounds and +Inf");
    assert_eq!(buckets[0].0, 0.00005, "buckets start at 50 µs");
    assert_eq!(buckets[buckets.len() - 2].0, 10.0, "and end at 10 s");

    let decisions = "mlapi_ratelimit_decisions_total";
    let decision = |tier, group, result| {
        count(
            &m,
            decisions,
            &[("tier", tier), ("group", group), ("result", result)],
        )
    };
    assert_eq!(decision("metered", "predict", "allowed"), 2.0);
    assert_eq!(decision("metered", "predict", "rejected"), 3.0);
    assert_eq!(decision("metered", "auth", "allowed"), 1.0);
    assert_eq!(decision("metered", "auth", "rejected"), 1.0);
    assert_eq!(decision("anonymous", "auth", "allowed"), 3.0);

    let cache = "mlapi_cache_requests_total";
    assert_eq!(
        count(&m, cache, &[("tier", "none"), ("result", "miss")]),
        1.0
    );
    assert_eq!(
        count(&m, cache, &[("tier", "local"), ("result", "hit")]),
        1.0
    );
    assert_eq!(
        count(&m, cache, &[("tier", "redis"), ("result", "hit")]),
        0.0
    );
    assert_eq!(
        count(
            &m,
            "mlapi_inference_total",
            &[("model", "demo"), ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(
        histogram(&m, "mlapi_inference_duration_seconds", &[("model", "demo")]).0,
        1
    );
    assert_eq!(
        count(
            &m,
            "mlapi_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(
        !m.samples.iter().any(|s| s.metric == "mlapi_redis_up"),
        "no Redis configured, no Redis gauge"
    );

    // The same text as Prometheus's own client library reads it (it names
    // counters without their `_total`).
    let r = send(
        d.request("GET", "/metrics")
            .set("Authorization", &format!("Bearer {admin}")),
    );
    let families = official_families(&r.body);
    for (name, kind) in [
        ("mlapi_http_requests", "counter"),
        ("mlapi_http_request_duration_seconds", "histogram"),
        ("mlapi_ratelimit_decisions", "counter"),
        ("mlapi_cache_requests", "counter"),
        ("mlapi_inference", "counter"),
        ("mlapi_inference_duration_seconds", "histogram"),
        ("mlapi_build_info", "gauge"),
    ] {
        assert_eq!(families[name], kind, "{name} in {families}");
    }

    // Asking for the format itself is no reason for 406.
    let r = send(
        d.request("GET", "/metrics")
            .set("Authorization", &format!("Bearer {admin}"))
            .set("Accept", "text/plain;version=0.0.4"),
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // A scrape counts once it has been answered: the three above.
    let m = scrape(&d, &admin);
    assert_eq!(
        count(&m, http, &[("route", "/metrics"), ("status", "200")]),
        3.0
    );
}

#[test]
fn metrics_can_be_public_and_report_redis() {
    let mut redis = Redis::start();
    let setup = Setup::new(&format!(
        "{}\n[metrics]\npublic = true\n\n[redis]\nurl = \"{}\"\n",
        auth_config(""),
        redis.url()
    ));
    let d = setup.start();
    let public = || {
        let r = send(d.request("GET", "/metrics"));
        assert_eq!(r.status, 200, "{}", r.body);
        parse(&r.body)
    };
    assert_eq!(count(&public(), "mlapi_redis_up", &[]), 1.0);
    let document = d.get("/openapi.json").json();
    let operation = &document["paths"]["/metrics"]["get"];
    assert_eq!(operation["operationId"], "metrics");
    assert!(
        operation.get("security").is_none() && operation["responses"].get("401").is_none(),
        "the document says /metrics is public: {operation}"
    );
    redis.stop();
    eventually(Duration::from_secs(10), || {
        count(&public(), "mlapi_redis_up", &[]) == 0.0
    });
}

/// Per tier and per endpoint group, in process and in Redis (the Lua
/// script mirrors the Rust arithmetic): shadow windows count, report and
/// never refuse; a real window beside them still does.
#[test]
fn shadow_limits_count_and_report_but_never_refuse() {
    let mut redis = Redis::start();
    for store in ["local", "redis"] {
        let redis_section = if store == "redis" {
            format!("[redis]\nurl = \"{}\"\nprefix = \"shadow:\"\n", redis.url())
        } else {
            String::new()
        };
        let setup = Setup::new(&format!(
            "{}\n[tiers.trial]\nper_minute = 2\nshadow = true\n\n\
             [tiers.mixed]\nper_minute = 4\n\n[tiers.mixed.endpoints.predict]\nper_minute = 1\nshadow = true\n\n{redis_section}",
            auth_config("default_tier = \"trial\"")
        ));
        let d = setup.start();
        let (token, _) = user_with_tokens(&d, "erin");
        let remaining: Vec<(u16, String)> = (0..4)
            .map(|_| {
                let r = predict(&d, &token);
                (
                    r.status,
                    r.header("x-ratelimit-remaining").unwrap_or("").to_string(),
                )
            })
            .collect();
        assert_eq!(
            remaining,
            [
                (200, "1".to_string()),
                (200, "0".to_string()),
                (200, "0".to_string()),
                (200, "0".to_string())
            ],
            "{store}: a shadow tier never refuses, and its headers tell the truth"
        );
        let out = setup.cli(&["ratelimit", "show", "erin"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("shadow (would refuse)"), "{store}: {text}");
        let out = setup.cli(&["--output", "json", "ratelimit", "show", "erin"]);
        let usage: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            usage["usage"][0]["windows"][0]["shadow"],
            json!(true),
            "{usage}"
        );

        // A real tier with a shadow endpoint limit: the shadow window is
        // over after one request, the real one still refuses the fifth.
        let (mixer, _) = user_with_tokens(&d, "finn");
        let out = setup.cli(&["ratelimit", "set-tier", "finn", "mixed"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        eventually(Duration::from_secs(2), || {
            send(
                d.request("GET", "/api/v1/users/me")
                    .set("Authorization", &format!("Bearer {mixer}")),
            )
            .json()["tier"]
                == "mixed"
        });
        // `users/me` spent one of finn's four (group auth); three remain.
        let statuses: Vec<u16> = (0..4).map(|_| predict(&d, &mixer).status).collect();
        assert_eq!(statuses, [200, 200, 200, 429], "{store}");

        add_user(&setup, "ops", "admin");
        let admin = login(&d, "ops", PASSWORD).json()["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        let m = scrape(&d, &admin);
        let decisions = "mlapi_ratelimit_decisions_total";
        let decision = |tier, result| {
            count(
                &m,
                decisions,
                &[("tier", tier), ("group", "predict"), ("result", result)],
            )
        };
        assert_eq!(decision("trial", "allowed"), 2.0, "{store}");
        assert_eq!(decision("trial", "shadow_rejected"), 2.0, "{store}");
        assert_eq!(decision("mixed", "allowed"), 1.0, "{store}");
        assert_eq!(decision("mixed", "shadow_rejected"), 2.0, "{store}");
        assert_eq!(decision("mixed", "rejected"), 1.0, "{store}");
    }
    redis.stop();
}
