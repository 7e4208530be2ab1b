//! The prediction cache against the real daemon: hits and misses by value,
//! single-flight, nothing cached from failures, model changes, operator
//! flushes with and without Redis, sharing between daemons, and Redis going
//! away. Catalog group C.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{send_body, stderr, stdout, Daemon, Redis, Resp, Setup};
use crate::identity::{auth_config, eventually, user_with_tokens};

fn token(d: &Daemon, name: &str) -> String {
    user_with_tokens(d, name).0
}

fn predict_with(
    d: &Daemon,
    version: u8,
    token: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Resp {
    let mut request = d
        .request("POST", &format!("/api/v{version}/predict"))
        .set("Authorization", &format!("Bearer {token}"))
        .set("Content-Type", "application/json");
    for (name, value) in headers {
        request = request.set(name, value);
    }
    send_body(request, body)
}

fn predict(d: &Daemon, token: &str, body: &str) -> Resp {
    predict_with(d, 1, token, body, &[])
}

fn x_cache(r: &Resp) -> &str {
    assert_eq!(r.status, 200, "{}", r.body);
    r.header("x-cache").expect("X-Cache on every prediction")
}

/// This daemon's counters, through `mlapi cache stats` (the control socket).
fn stats(setup: &Setup, pid: u32) -> Value {
    let out = setup.cli(&["--output", "json", "cache", "stats"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let all: Value = serde_json::from_str(&stdout(&out)).unwrap();
    all["daemons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["pid"] == pid)
        .unwrap_or_else(|| panic!("daemon {pid} not in {all}"))
        .clone()
}

#[test]
fn identical_inputs_hit_by_value_and_versions_never_share() {
    let setup = Setup::new(&auth_config(""));
    let d = setup.start();
    let t = token(&d, "alice");
    let first = predict(&d, &t, r#"{"features": [14, 20, 0.12, 0.2, 0.2]}"#);
    assert_eq!(x_cache(&first), "MISS");
    assert_eq!(first.json()["cached"], false);
    let second = predict(&d, &t, r#"{"features": [14, 20, 0.12, 0.2, 0.2]}"#);
    assert_eq!(x_cache(&second), "HIT");
    assert_eq!(second.header("x-cache-tier"), Some("local"));
    assert_eq!(second.json()["cached"], true);
    assert_eq!(second.json()["prediction"], first.json()["prediction"]);
    let mut a = first.json();
    let mut b = second.json();
    a.as_object_mut().unwrap().remove("cached");
    b.as_object_mut().unwrap().remove("cached");
    assert_eq!(a, b, "the same answer, field for field");

    let spelled = predict(&d, &t, r#"{"features": [14.0, 20.00, 0.120, 0.2, 2e-1]}"#);
    assert_eq!(x_cache(&spelled), "HIT", "1 and 1.0 are one number");
    // Catalog C5: 0.2 and 0.20000000000000004 are different numbers.
    let nearby = predict(
        &d,
        &t,
        r#"{"features": [14, 20, 0.12, 0.2, 0.20000000000000004]}"#,
    );
    assert_eq!(x_cache(&nearby), "MISS");
    let other = predict(&d, &t, r#"{"features": [15, 20, 0.12, 0.2, 0.2]}"#);
    assert_eq!(x_cache(&other), "MISS");

    // Catalog C6: v1 and v2 answers differ in shape and never share entries.
    let v2 = predict_with(&d, 2, &t, r#"{"features": [14, 20, 0.12, 0.2, 0.2]}"#, &[]);
    assert_eq!(x_cache(&v2), "MISS");
    assert!(v2.json()["probabilities"].is_object(), "{}", v2.body);
    let v2_again = predict_with(&d, 2, &t, r#"{"features": [14, 20, 0.12, 0.2, 0.2]}"#, &[]);
    assert_eq!(x_cache(&v2_again), "HIT");
    let unexplained = predict_with(
        &d,
        2,
        &t,
        r#"{"features": [14, 20, 0.12, 0.2, 0.2], "explain": false}"#,
        &[],
    );
    assert_eq!(x_cache(&unexplained), "MISS", "another response shape");

    // Cache-Control: no-cache skips the read, and refreshes the entry.
    let fresh = predict_with(
        &d,
        1,
        &t,
        r#"{"features": [14, 20, 0.12, 0.2, 0.2]}"#,
        &[("Cache-Control", "no-cache")],
    );
    assert_eq!(x_cache(&fresh), "BYPASS");
    assert_eq!(fresh.json()["cached"], false);
    assert_eq!(
        x_cache(&predict(
            &d,
            &t,
            r#"{"features": [14, 20, 0.12, 0.2, 0.2]}"#
        )),
        "HIT"
    );

    // Catalog C2: another user asking the same gets their own request id and
    // their own quota; the answer holds nothing of alice's.
    let bob = token(&d, "bob");
    let theirs = predict(&d, &bob, r#"{"features": [14, 20, 0.12, 0.2, 0.2]}"#);
    assert_eq!(x_cache(&theirs), "HIT");
    assert_ne!(theirs.header("x-request-id"), second.header("x-request-id"));
    assert_eq!(
        theirs
            .header("x-ratelimit-remaining")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            + 1,
        theirs
            .header("x-ratelimit-limit")
            .unwrap()
            .parse::<u64>()
            .unwrap(),
        "bob's first request on his own budget"
    );

    let s = stats(&setup, d.pid());
    assert_eq!(s["entries"], 5, "{s}");
    assert_eq!(s["misses"], 5);
    assert_eq!(s["hits"], 5);
    assert_eq!(s["bypasses"], 1);
    assert_eq!(s["inferences"], 6, "misses and the bypass ran the model");
}

#[test]
fn concurrent_identical_misses_run_the_model_once() {
    let setup = Setup::new(&format!(
        "{}\n[debug]\ninference_delay_ms = 200\n",
        auth_config("")
    ));
    let d = setup.start();
    let t = token(&d, "carol");
    let before = stats(&setup, d.pid())["inferences"].as_u64().unwrap();
    let outcomes = std::sync::Mutex::new(Vec::new());
    let barrier = std::sync::Barrier::new(50);
    std::thread::scope(|s| {
        for _ in 0..50 {
            s.spawn(|| {
                barrier.wait();
                let r = predict(&d, &t, r#"{"features": [11, 12, 0.1, 0.1, 0.1]}"#);
                outcomes.lock().unwrap().push(x_cache(&r).to_string());
            });
        }
    });
    let outcomes = outcomes.into_inner().unwrap();
    let after = stats(&setup, d.pid())["inferences"].as_u64().unwrap();
    assert_eq!(after - before, 1, "one model run for 50 requests");
    assert_eq!(
        outcomes.iter().filter(|o| *o == "MISS").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(outcomes.iter().filter(|o| *o == "HIT").count(), 49);
}

#[test]
fn failures_leave_nothing_in_the_cache() {
    let setup = Setup::new(&format!(
        "{}\n[inference]\ntimeout_ms = 100\n\n[debug]\ninference_delay_ms = 300\n",
        auth_config("")
    ));
    let d = setup.start();
    let t = token(&d, "dave");
    let refused = predict(&d, &t, r#"{"features": [1, 2, 3, "four", 5]}"#);
    assert_eq!(refused.status, 422);
    assert!(refused.header("x-cache").is_none());
    let timed_out = predict(&d, &t, r#"{"features": [1, 2, 3, 4, 5]}"#);
    assert_eq!(timed_out.status, 504);
    assert!(timed_out.header("x-cache").is_none());
    let again = predict(&d, &t, r#"{"features": [1, 2, 3, 4, 5]}"#);
    assert_eq!(
        again.status, 504,
        "the timeout was not cached: the model ran again"
    );
    let s = stats(&setup, d.pid());
    assert_eq!(s["entries"], 0, "{s}");
    assert_eq!(s["hits"], 0);
}

/// The bundled ONNX file with one unknown protobuf field appended: the same
/// model, other bytes, so another digest.
fn variant_of_demo() -> Vec<u8> {
    let mut bytes =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/models/demo.onnx")).unwrap();
    bytes.extend([0x98, 0x06, 0x01]);
    bytes
}

fn two_models(setup: &Setup, extra: &str) {
    for name in ["risk", "triage"] {
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/models/demo.onnx"),
            setup.dir.path().join(format!("{name}.onnx")),
        )
        .unwrap();
    }
    setup.write_config(&format!(
        "{}\n{extra}\n[[models]]\nname = \"risk\"\npath = \"risk.onnx\"\nlabels = [\"malignant\", \"benign\"]\ninput_size = 5\ndefault = true\n\n[[models]]\nname = \"triage\"\npath = \"triage.onnx\"\nlabels = [\"malignant\", \"benign\"]\ninput_size = 5\n",
        auth_config("")
    ));
}

#[test]
fn a_new_model_file_never_serves_old_answers() {
    let setup = Setup::new("");
    two_models(&setup, "");
    let d = setup.start_process();
    let t = token(&d, "erin");
    let body = r#"{"features": [1, 2, 3, 4, 5]}"#;
    assert_eq!(x_cache(&predict(&d, &t, body)), "MISS");
    let cached = predict(&d, &t, body);
    assert_eq!(x_cache(&cached), "HIT");

    std::fs::write(setup.dir.path().join("risk.onnx"), variant_of_demo()).unwrap();
    d.signal("HUP");
    eventually(Duration::from_secs(5), || {
        predict(&d, &t, r#"{"features": [9, 9, 9, 9, 9]}"#).json()["model_version"]
            != cached.json()["model_version"]
    });
    let after = predict(&d, &t, body);
    assert_eq!(x_cache(&after), "MISS", "the new digest is a new key");
    assert_ne!(
        after.json()["model_version"],
        cached.json()["model_version"]
    );
}

fn flush_reaches_running_daemons(redis: Option<&Redis>) {
    let setup = Setup::new("");
    let redis_section = redis.map_or(String::new(), |r| {
        format!("[redis]\nurl = \"{}\"\n", r.url())
    });
    two_models(&setup, &redis_section);
    let d = setup.start_process();
    let t = token(&d, "frank");
    let risk = r#"{"features": [1, 2, 3, 4, 5]}"#;
    let triage = r#"{"features": [1, 2, 3, 4, 5], "model": "triage"}"#;
    for body in [risk, triage] {
        assert_eq!(x_cache(&predict(&d, &t, body)), "MISS");
        assert_eq!(x_cache(&predict(&d, &t, body)), "HIT");
    }
    if let Some(redis) = redis {
        assert_eq!(redis.cli(&["SET", "other:keep", "1"]).trim(), "OK");
        assert_eq!(redis.cli(&["SET", "mlapi:unrelated", "1"]).trim(), "OK");
    }

    let out = setup.cli(&["cache", "flush", "--model", "nope"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "unknown model: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("risk, triage"), "{}", stderr(&out));

    let out = setup.cli(&["--output", "json", "cache", "flush", "--model", "triage"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let flushed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    if redis.is_some() {
        assert_eq!(flushed["redis_keys_removed"], 1);
    } else {
        assert!(flushed["redis_keys_removed"].is_null());
    }
    eventually(Duration::from_secs(1), || {
        predict(&d, &t, triage).header("x-cache") == Some("MISS")
    });
    assert_eq!(x_cache(&predict(&d, &t, risk)), "HIT", "other models stay");

    let out = setup.cli(&["cache", "flush", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    eventually(Duration::from_secs(1), || {
        predict(&d, &t, risk).header("x-cache") == Some("MISS")
    });
    if let Some(redis) = redis {
        assert_eq!(
            redis.cli(&["GET", "other:keep"]).trim(),
            "1",
            "another prefix survives"
        );
        assert_eq!(
            redis.cli(&["GET", "mlapi:unrelated"]).trim(),
            "1",
            "only cache keys go"
        );
    }
    let out = setup.cli(&["--output", "json", "audit", "--action", "cache_flush"]);
    let events: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(events.as_array().unwrap().len(), 2, "{events}");
}

#[test]
fn flush_reaches_a_running_daemon_without_redis() {
    flush_reaches_running_daemons(None);
}

#[test]
fn flush_reaches_a_running_daemon_and_redis() {
    let redis = Redis::start();
    flush_reaches_running_daemons(Some(&redis));
}

#[test]
fn daemons_share_answers_through_redis_and_survive_its_loss() {
    let mut redis = Redis::start();
    let setup = Setup::new(&format!(
        "{}\n[redis]\nurl = \"{}\"\n",
        auth_config(""),
        redis.url()
    ));
    let one = setup.start();
    let two = setup.start_process();
    let t = token(&one, "gina");
    std::thread::sleep(Duration::from_secs(1)); // both daemons know gina
    let body = r#"{"features": [13, 21, 0.1, 0.15, 0.25]}"#;
    assert_eq!(x_cache(&predict(&one, &t, body)), "MISS");
    let shared = predict(&two, &t, body);
    assert_eq!(
        x_cache(&shared),
        "HIT",
        "computed on one, served by the other"
    );
    assert_eq!(shared.header("x-cache-tier"), Some("redis"));
    let keys = redis.cli(&["--scan", "--pattern", "mlapi:cache:*"]);
    assert_eq!(keys.lines().count(), 1, "{keys}");
    let ttl: i64 = redis.cli(&["TTL", keys.trim()]).trim().parse().unwrap();
    assert!(
        (1..=300).contains(&ttl),
        "the model's cache_ttl_secs: {ttl}"
    );

    // Catalog C7: Redis gone, predictions go on from the in-process tier.
    redis.stop();
    let local = predict(&two, &t, body);
    assert_eq!(x_cache(&local), "HIT");
    assert_eq!(local.header("x-cache-tier"), Some("local"));
    let new_input = r#"{"features": [13, 21, 0.1, 0.15, 0.3]}"#;
    assert_eq!(x_cache(&predict(&two, &t, new_input)), "MISS");
    let again = predict(&two, &t, new_input);
    assert_eq!(x_cache(&again), "HIT");
    assert_eq!(again.header("x-cache-tier"), Some("local"));
    let out = setup.cli(&["--output", "json", "cache", "stats"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let all: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(all["daemons"].as_array().unwrap().len(), 2, "{all}");
    assert!(all["redis_entries"].is_null(), "Redis is down: not counted");
}
