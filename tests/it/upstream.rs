//! The gateway: a model served by upstream Open Inference Protocol v2
//! servers. The upstreams are real `mlapi serve` processes (each one a real
//! OIP server); faults are made by stopping (SIGSTOP) and killing (SIGKILL)
//! them. The gateway is a real `mlapi serve` too, so SIGHUP and the control
//! socket are the real ones.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{send, send_body, stderr, Daemon, Setup};
use crate::identity::{auth_config, eventually};
use crate::keys::add_user;
use crate::oip::key;

/// Real upstream daemons on one database, so one API key works on all of
/// them; `/metrics` is public so a test can count what each one served.
struct Upstreams {
    key: String,
    daemons: Vec<Daemon>,
    _setup: Setup,
}

fn upstreams(n: usize, extra: &str) -> Upstreams {
    let setup = Setup::new(&format!(
        "{}\n[metrics]\npublic = true\n{extra}",
        auth_config("")
    ));
    add_user(&setup, "gateway", "user");
    let key = key(&setup, "gateway", "predict:read models:read");
    let daemons = (0..n).map(|_| setup.start_process()).collect();
    Upstreams {
        key,
        daemons,
        _setup: setup,
    }
}

impl Upstreams {
    fn urls(&self) -> Vec<String> {
        self.daemons.iter().map(|d| d.url("")).collect()
    }
}

/// A `[[models]]` entry named `remote` serving the upstreams' `demo`.
fn remote_model(urls: &[String], key: &str, extra: &str) -> String {
    format!(
        "[[models]]\nname = \"remote\"\nupstream = {urls:?}\nupstream_model = \"demo\"\n\
         upstream_headers = {{ \"X-API-Key\" = \"{key}\" }}\nlabels = [\"malignant\", \"benign\"]\n\
         input_size = 5\ndefault = true\nhealth_interval_secs = 1\n{extra}\n"
    )
}

struct Gateway {
    setup: Setup,
    key: String,
    daemon: Daemon,
}

fn gateway(models: &str) -> Gateway {
    let setup = Setup::new(&format!("{}\n{models}", auth_config("")));
    add_user(&setup, "ivy", "user");
    let key = key(&setup, "ivy", "predict:read models:read");
    let daemon = setup.start_process();
    Gateway { setup, key, daemon }
}

use crate::harness::post_with_key as post;

/// A row no earlier request sent, so neither cache holds it.
fn row(i: usize) -> Vec<f64> {
    vec![10.0 + i as f64 * 0.01, 20.0, 0.12, 0.2, 0.2]
}

/// OIP infer requests this upstream answered (from its own `/metrics`).
fn served(d: &Daemon) -> u64 {
    let text = send(d.request("GET", "/metrics")).body;
    text.lines()
        .filter(|l| {
            l.starts_with("mlapi_http_requests_total{")
                && l.contains("route=\"/v2/models/{name}/infer\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

fn status(g: &Gateway) -> Vec<Value> {
    let out = g.setup.cli(&["--output", "json", "upstream", "status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let daemons = doc["daemons"].as_array().unwrap();
    assert_eq!(daemons.len(), 1, "{doc}");
    assert_eq!(daemons[0]["pid"], g.daemon.pid());
    daemons[0]["endpoints"].as_array().unwrap().clone()
}

fn endpoint<'a>(endpoints: &'a [Value], url: &str) -> &'a Value {
    endpoints
        .iter()
        .find(|e| e["endpoint"] == url)
        .unwrap_or_else(|| panic!("{url} not in {endpoints:?}"))
}

#[test]
fn a_gateway_answers_as_its_upstreams_do_and_balances_round_robin() {
    let up = upstreams(2, "");
    // The bundled model explains against its training means; so does the gateway.
    let meta: Value = serde_json::from_str(include_str!("../../models/demo.json")).unwrap();
    let baseline = format!("baseline = {}", meta["training_mean"]);
    let g = gateway(&remote_model(&up.urls(), &up.key, &baseline));
    let metrics_key = admin_key(&g);
    let d = &g.daemon;
    let direct = &up.daemons[0];

    // v2 with explanations: one upstream call carries the occluded rows.
    let rows = vec![row(0), row(1), vec![1.0, 2.0, 3.0, 4.0, 5.0]];
    let body = json!({"instances": rows, "explain": true});
    let own = post(direct, &up.key, "/api/v2/predict", &body);
    let through = post(d, &g.key, "/api/v2/predict", &body);
    assert_eq!(through.status, 200, "{}", through.body);
    assert_eq!(through.header("x-cache"), Some("MISS"));
    let (own, through) = (own.json(), through.json());
    assert_eq!(through["model"], "remote");
    assert_eq!(through["predictions"], own["predictions"]);
    assert!(through["predictions"][0]["explanation"]["attributions"]
        .as_array()
        .is_some_and(|a| a.len() == 5));
    // The same again is the gateway's own cache hit: no upstream call.
    let before: u64 = up.daemons.iter().map(served).sum();
    let again = post(d, &g.key, "/api/v2/predict", &body);
    assert_eq!(again.header("x-cache"), Some("HIT"));
    assert_eq!(up.daemons.iter().map(served).sum::<u64>(), before);

    // v1 and the inference protocol, equal to the upstream's answers.
    let v1 = json!({"features": row(2)});
    let own = post(direct, &up.key, "/api/v1/predict", &v1).json();
    let through = post(d, &g.key, "/api/v1/predict", &v1);
    assert_eq!(through.status, 200, "{}", through.body);
    assert_eq!(through.json()["prediction"], own["prediction"]);
    let tensor =
        json!({"inputs": [{"name": "input", "shape": [1, 5], "datatype": "FP32", "data": row(3)}]});
    let own = post(direct, &up.key, "/v2/models/demo/infer", &tensor).json();
    let through = post(d, &g.key, "/v2/models/remote/infer", &tensor);
    assert_eq!(through.status, 200, "{}", through.body);
    assert_eq!(through.json()["outputs"], own["outputs"]);
    let meta = send(
        d.request("GET", "/v2/models/remote")
            .set("X-API-Key", &g.key),
    )
    .json();
    assert_eq!(meta["platform"], "oip-upstream");

    // Round robin: 20 uncached requests split evenly.
    let before: Vec<u64> = up.daemons.iter().map(served).collect();
    for i in 100..120 {
        let r = post(d, &g.key, "/api/v1/predict", &json!({"features": row(i)}));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let split: Vec<u64> = up
        .daemons
        .iter()
        .zip(&before)
        .map(|(u, b)| served(u) - b)
        .collect();
    assert_eq!(split.iter().sum::<u64>(), 20, "{split:?}");
    assert!(split.iter().all(|n| (8..=12).contains(n)), "{split:?}");

    // What the operator sees: the CLI through the control socket, and /metrics.
    let endpoints = status(&g);
    assert_eq!(endpoints.len(), 2);
    for (url, n) in up.urls().iter().zip(&split) {
        let e = endpoint(&endpoints, url);
        assert_eq!(e["model"], "remote");
        assert_eq!(e["healthy"], true);
        assert_eq!(e["breaker"], "closed");
        assert_eq!(e["failures"], 0);
        assert!(e["requests"].as_u64().unwrap() >= *n, "{e}");
        assert!(e["p50_ms"].as_f64().is_some(), "{e}");
    }
    let table = g.setup.cli(&["upstream", "status"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("closed") && text.contains(&up.urls()[1]),
        "{text}"
    );
    // A key made by the CLI reaches the daemon at its next state poll.
    let scrape = || send(d.request("GET", "/metrics").set("X-API-Key", &metrics_key));
    eventually(Duration::from_secs(5), || scrape().status == 200);
    let metrics = scrape().body;
    let ok = format!(
        "mlapi_upstream_requests_total{{model=\"remote\",endpoint=\"{}\",outcome=\"ok\"}} ",
        up.urls()[0]
    );
    assert!(metrics.contains(&ok), "{metrics}");
    assert!(metrics.contains(&format!(
        "mlapi_upstream_breaker_state{{model=\"remote\",endpoint=\"{}\"}} 0",
        up.urls()[1]
    )));
    let ready = send(d.request("GET", "/ready")).json();
    assert_eq!(ready["status"], "ready", "{ready}");

    // Health checks (every second here) are not requests: no count moves.
    let counted = |endpoints: Vec<Value>| -> Vec<Value> {
        endpoints
            .into_iter()
            .map(|e| e["requests"].clone())
            .collect()
    };
    let (requests, own) = (
        counted(status(&g)),
        up.daemons.iter().map(served).collect::<Vec<_>>(),
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(counted(status(&g)), requests);
    assert_eq!(up.daemons.iter().map(served).collect::<Vec<_>>(), own);
    // The upstream key never reaches the log.
    assert!(!d.logs().contains(&up.key));
}

fn admin_key(g: &Gateway) -> String {
    add_user(&g.setup, "root", "admin");
    key(&g.setup, "root", "metrics:read")
}

#[test]
fn a_stopped_upstream_opens_its_breaker_and_one_probe_closes_it() {
    let up = upstreams(2, "");
    let g = gateway(&remote_model(
        &up.urls(),
        &up.key,
        "cache_ttl_secs = 0\ntimeout_ms = 1000\nbreaker_failures = 3\nbreaker_open_secs = 2",
    ));
    let stopped = &up.daemons[1];
    let url = up.urls()[1].clone();

    // Steady traffic from another thread for the whole test.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (done, addr, key) = (done.clone(), g.daemon.addr, g.key.clone());
        std::thread::spawn(move || {
            let mut statuses = Vec::new();
            let mut i = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let r = send_body(
                    ureq::post(&format!("http://{addr}/api/v1/predict"))
                        .timeout(Duration::from_secs(10))
                        .set("X-API-Key", &key)
                        .set("Content-Type", "application/json"),
                    &json!({"features": row(i)}).to_string(),
                );
                statuses.push((r.status, r.body));
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            statuses
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    stopped.signal("STOP");
    eventually(Duration::from_secs(20), || {
        let e = status(&g);
        let e = endpoint(&e, &url);
        e["breaker"] == "open" && e["healthy"] == false
    });
    let e = status(&g);
    let e = endpoint(&e, &url).clone();
    assert!(e["failures"].as_u64().unwrap() >= 3, "{e}");
    assert!(e["opened"].as_u64().unwrap() >= 1, "{e}");
    let readiness = send(g.daemon.request("GET", "/ready"));
    assert_eq!(
        readiness.status, 200,
        "one endpoint left: degraded, still ready"
    );
    assert_eq!(readiness.json()["status"], "degraded");

    stopped.signal("CONT");
    let probes = e["probes"].as_u64().unwrap();
    eventually(Duration::from_secs(20), || {
        endpoint(&status(&g), &url)["breaker"] == "closed"
    });
    let e = status(&g);
    let e = endpoint(&e, &url).clone();
    assert_eq!(
        e["probes"].as_u64().unwrap(),
        probes + 1,
        "one probe closed it: {e}"
    );
    assert_eq!(e["healthy"], true);
    // Traffic reaches it again.
    let before = served(stopped);
    eventually(Duration::from_secs(10), || served(stopped) > before);

    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses = traffic.join().unwrap();
    assert!(statuses.len() > 20, "{}", statuses.len());
    let failed: Vec<_> = statuses.iter().filter(|(s, _)| *s != 200).collect();
    assert!(failed.is_empty(), "client requests failed: {failed:?}");
    // Failed attempts were logged, without the upstream key.
    let logs = g.daemon.logs();
    assert!(logs.contains("upstream attempt failed"), "{logs}");
    assert!(!logs.contains(&up.key));
}

#[test]
fn with_no_usable_upstream_the_gateway_answers_503_at_once() {
    let mut up = upstreams(2, "");
    let g = gateway(&remote_model(
        &up.urls(),
        &up.key,
        "cache_ttl_secs = 0\ntimeout_ms = 400\nbreaker_failures = 2\nbreaker_open_secs = 30",
    ));
    let d = &g.daemon;
    let predict = |i: usize| post(d, &g.key, "/api/v1/predict", &json!({"features": row(i)}));
    assert_eq!(predict(0).status, 200);
    // Stopped, not killed: a connection is accepted and never answered, so
    // only the breakers and health checks can make an answer quick.
    for u in &up.daemons {
        u.signal("STOP");
    }
    let mut i = 1;
    eventually(Duration::from_secs(20), || {
        i += 1;
        let r = predict(i);
        assert!([503, 504].contains(&r.status), "{}", r.body);
        r.status == 503
    });
    for i in 100..110 {
        let started = Instant::now();
        let r = predict(i);
        let took = started.elapsed();
        assert_eq!(r.status, 503, "{}", r.body);
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=30).contains(&retry), "{retry}");
        assert!(
            took < Duration::from_millis(100),
            "request {i} took {took:?}"
        );
    }
    let oip = post(
        d,
        &g.key,
        "/v2/models/remote/infer",
        &json!({"inputs": [{"name": "input", "shape": [1, 5], "datatype": "FP32", "data": row(50)}]}),
    );
    assert_eq!(oip.status, 503);
    let problem = oip.json();
    assert_eq!(problem["error"], problem["detail"], "{problem}");
    // The default model has no endpoint left: not ready, and no address shown.
    let ready = send(d.request("GET", "/ready"));
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(
        ready.body.contains("0 of 2 upstream endpoints usable"),
        "{}",
        ready.body
    );
    assert!(!ready.body.contains("127.0.0.1"), "{}", ready.body);
    assert_eq!(send(d.request("GET", "/v2/health/ready")).status, 503);
    let r = send(
        d.request("GET", "/v2/models/remote/ready")
            .set("X-API-Key", &g.key),
    );
    assert_eq!(r.status, 503, "{}", r.body);
    let endpoints = status(&g);
    assert!(
        endpoints.iter().all(|e| e["breaker"] == "open"),
        "{endpoints:?}"
    );

    // Killed outright: still 503 at once, never a hang.
    for u in &mut up.daemons {
        u.signal("KILL");
        u.wait_exit(Duration::from_secs(5));
    }
    let started = Instant::now();
    assert_eq!(predict(200).status, 503);
    assert!(started.elapsed() < Duration::from_millis(100));
}

#[test]
fn upstream_refusals_are_502_and_slow_upstreams_504() {
    let up = upstreams(1, "");
    let slow = upstreams(1, "[debug]\ninference_delay_ms = 600\n");
    let urls = up.urls();
    // Declared with 4 inputs where the upstream's model takes 5: every
    // request is the upstream's 422; the endpoint still works.
    let wrong = remote_model(&urls, &up.key, "breaker_failures = 2")
        .replace("name = \"remote\"", "name = \"wrong\"")
        .replace("input_size = 5", "input_size = 4")
        .replace("default = true\n", "");
    let unauthorized = remote_model(&urls, "sk_live_not_a_key", "")
        .replace("name = \"remote\"", "name = \"nokey\"")
        .replace("default = true\n", "");
    let timing_out = remote_model(
        &slow.urls(),
        &slow.key,
        "timeout_ms = 200\ncache_ttl_secs = 0",
    )
    .replace("name = \"remote\"", "name = \"slow\"")
    .replace("default = true\n", "");
    let g = gateway(&format!(
        "{}\n{wrong}\n{unauthorized}\n{timing_out}",
        remote_model(&urls, &up.key, "")
    ));
    let d = &g.daemon;
    for i in 0..4 {
        let r = post(
            d,
            &g.key,
            "/api/v1/predict",
            &json!({"model": "wrong", "features": [1.0, 2.0, 3.0, 4.0 + i as f64]}),
        );
        assert_eq!(r.status, 502, "{}", r.body);
        let detail = r.problem(502)["detail"].as_str().unwrap().to_string();
        assert!(detail.contains("refused the request (422)"), "{detail}");
        assert!(detail.contains("must be [n, 5]"), "{detail}");
    }
    let e = status(&g);
    let wrong_endpoint = e.iter().find(|e| e["model"] == "wrong").unwrap();
    assert_eq!(
        wrong_endpoint["breaker"], "closed",
        "a 4xx is not a failure"
    );
    assert_eq!(wrong_endpoint["failures"], 0);

    let r = post(
        d,
        &g.key,
        "/api/v1/predict",
        &json!({"model": "nokey", "features": row(0)}),
    );
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(r.body.contains("(401)"), "{}", r.body);

    let started = Instant::now();
    let r = post(
        d,
        &g.key,
        "/api/v1/predict",
        &json!({"model": "slow", "features": row(0)}),
    );
    assert_eq!(r.status, 504, "{}", r.body);
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn sighup_adds_and_removes_endpoints_without_dropping_requests() {
    let fast = upstreams(2, "");
    let slow = upstreams(1, "[debug]\ninference_delay_ms = 700\n");
    let model =
        |urls: &[String]| remote_model(urls, &fast.key, "cache_ttl_secs = 0\ntimeout_ms = 5000");
    // The slow upstream's database is its own: give the gateway its key too.
    let slow_model = remote_model(
        &slow.urls(),
        &slow.key,
        "cache_ttl_secs = 0\ntimeout_ms = 5000",
    );
    let g = gateway(&slow_model);
    let d = &g.daemon;

    // A request in flight on the slow endpoint while a reload removes it.
    let in_flight = {
        let (addr, key) = (d.addr, g.key.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            let r = send_body(
                ureq::post(&format!("http://{addr}/api/v1/predict"))
                    .set("X-API-Key", &key)
                    .set("Content-Type", "application/json"),
                &json!({"features": row(0)}).to_string(),
            );
            (r, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let urls = fast.urls();
    g.setup
        .write_config(&format!("{}\n{}", auth_config(""), model(&urls[..1])));
    d.signal("HUP");
    eventually(Duration::from_secs(10), || {
        status(&g)
            .iter()
            .map(|e| e["endpoint"].clone())
            .collect::<Vec<_>>()
            == [json!(urls[0])]
    });
    let (r, took) = in_flight.join().unwrap();
    assert_eq!(r.status, 200, "the request in flight finished: {}", r.body);
    assert!(took >= Duration::from_millis(700), "{took:?}");
    assert_eq!(
        served(&slow.daemons[0]),
        1,
        "it was answered by the removed endpoint"
    );

    let before: Vec<u64> = fast.daemons.iter().map(served).collect();
    for i in 10..14 {
        assert_eq!(
            post(d, &g.key, "/api/v1/predict", &json!({"features": row(i)})).status,
            200
        );
    }
    assert_eq!(served(&fast.daemons[0]) - before[0], 4);
    assert_eq!(served(&fast.daemons[1]) - before[1], 0);

    // Add the second endpoint: the first keeps its counters.
    let kept = endpoint(&status(&g), &urls[0])["requests"]
        .as_u64()
        .unwrap();
    g.setup
        .write_config(&format!("{}\n{}", auth_config(""), model(&urls)));
    d.signal("HUP");
    eventually(Duration::from_secs(10), || status(&g).len() == 2);
    assert!(
        endpoint(&status(&g), &urls[0])["requests"]
            .as_u64()
            .unwrap()
            >= kept
    );
    let before: Vec<u64> = fast.daemons.iter().map(served).collect();
    for i in 20..24 {
        assert_eq!(
            post(d, &g.key, "/api/v1/predict", &json!({"features": row(i)})).status,
            200
        );
    }
    assert_eq!(served(&fast.daemons[0]) - before[0], 2);
    assert_eq!(served(&fast.daemons[1]) - before[1], 2);
}

#[test]
fn upstream_settings_are_checked_before_the_daemon_starts() {
    let cases = [
        (
            "upstream = [\"https://10.0.0.5:8080\"]",
            "https upstreams are not supported",
        ),
        ("upstream = [\"ftp://x\"]", "must start with http://"),
        (
            "upstream = [\"http://a:1\", \"http://a:1/\"]",
            "listed twice",
        ),
        (
            "upstream = [\"http://a:1\"]\npath = \"m.onnx\"",
            "set path or upstream, not both",
        ),
        (
            "path = \"m.onnx\"\nbreaker_failures = 3",
            "breaker_failures applies only to a model with upstream servers",
        ),
        (
            "upstream = [\"http://a:1\"]\nbalance = \"fastest\"",
            "unknown variant",
        ),
        (
            "upstream = [\"http://a:1\"]\nupstream_datatype = \"INT8\"",
            "unknown variant",
        ),
        (
            "upstream = [\"http://a:1\"]\ntimeout_ms = 0",
            "timeout_ms must be between",
        ),
        (
            "upstream = [\"http://a:1\"]\nupstream_headers = { \"bad header\" = \"x\" }",
            "not a header name",
        ),
    ];
    for (entry, expected) in cases {
        let setup = Setup::new(&format!(
            "[[models]]\nname = \"m\"\nlabels = [\"a\", \"b\"]\ninput_size = 2\n{entry}\n"
        ));
        let out = setup.cli(&["config", "show"]);
        assert_eq!(out.status.code(), Some(2), "{entry}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{entry}: {}", stderr(&out));
    }
    // Header values are secrets: `config show` never prints them.
    let setup = Setup::new(
        "[[models]]\nname = \"m\"\nlabels = [\"a\", \"b\"]\ninput_size = 2\nupstream = [\"http://a:1\"]\nupstream_headers = { \"X-API-Key\" = \"sk_live_secret\" }\n",
    );
    let out = setup.cli(&["config", "show"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("sk_live_secret") && text.contains("redacted"),
        "{text}"
    );
}
