//! Batch jobs against the real daemon and a real SQLite file: results equal
//! to `/api/v2/predict`, every refusal with nothing created, and durability —
//! a daemon SIGKILLed mid-job leaves the job to the next daemon on the same
//! database, which finishes it with each instance's result exactly once.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{query_i64, send, send_body, stderr, stdout, Daemon, Resp, Setup};
use crate::identity::{auth_config, eventually};
use crate::keys::add_user;
use crate::oip::key;

use crate::harness::post_with_key as post;

fn get(d: &Daemon, key: &str, path: &str) -> Resp {
    send(d.request("GET", path).set("X-API-Key", key))
}

fn rows(n: usize) -> Vec<Vec<f64>> {
    (0..n)
        .map(|i| {
            vec![
                8.0 + (i % 300) as f64 * 0.07,
                15.0 + (i % 7) as f64,
                0.12,
                0.2,
                0.05 + (i % 11) as f64 * 0.05,
            ]
        })
        .collect()
}

fn wait_finished(d: &Daemon, key: &str, id: &str, within: Duration) -> Value {
    let mut job = Value::Null;
    eventually(within, || {
        job = get(d, key, &format!("/api/v1/jobs/{id}")).json();
        ["succeeded", "failed", "cancelled"].contains(&job["status"].as_str().unwrap_or(""))
    });
    job
}

/// Every result, page by page.
fn all_results(d: &Daemon, key: &str, id: &str) -> Vec<Value> {
    let mut results = Vec::new();
    let mut offset = 0;
    loop {
        let page = get(
            d,
            key,
            &format!("/api/v1/jobs/{id}/results?offset={offset}&limit=37"),
        );
        assert_eq!(page.status, 200, "{}", page.body);
        let page = page.json();
        results.extend(page["results"].as_array().unwrap().iter().cloned());
        match page["next_offset"].as_u64() {
            Some(next) => offset = next,
            None => return results,
        }
    }
}

fn jobs_config(jobs: &str, extra: &str) -> String {
    format!("{}\n[jobs]\n{jobs}\n{extra}", auth_config(""))
}

#[test]
fn a_job_answers_as_v2_predict_does_in_input_order() {
    let setup = Setup::new(&jobs_config("chunk_size = 7", ""));
    add_user(&setup, "ada", "user");
    let api_key = key(&setup, "ada", "predict:read jobs:read jobs:write");
    let d = setup.start();
    let instances = rows(60);
    let r = post(
        &d,
        &api_key,
        "/api/v1/jobs",
        &json!({"instances": instances}),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let job = r.json();
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.header("location"),
        Some(format!("/api/v1/jobs/{id}").as_str())
    );
    assert_eq!(
        (
            job["status"].clone(),
            job["total"].clone(),
            job["model"].clone()
        ),
        (json!("queued"), json!(60), json!("demo"))
    );

    let done = wait_finished(&d, &api_key, &id, Duration::from_secs(20));
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["done"], 60);
    assert!(done["finished_at"].is_string() && done["started_at"].is_string());
    assert!(done["model_version"].is_string());

    let results = all_results(&d, &api_key, &id);
    let expected = post(
        &d,
        &api_key,
        "/api/v2/predict",
        &json!({"instances": instances, "explain": false}),
    )
    .json();
    let expected = expected["predictions"].as_array().unwrap();
    assert_eq!(results.len(), 60);
    for (i, (got, want)) in results.iter().zip(expected).enumerate() {
        assert_eq!(got["index"], i);
        assert_eq!(got["prediction"], want["prediction"]);
        assert_eq!(got["probabilities"], want["probabilities"]);
        assert!(got.get("explanation").is_none());
    }
    let list = get(&d, &api_key, "/api/v1/jobs?status=succeeded").json();
    assert_eq!(list["jobs"][0]["id"], id.as_str());
    assert_eq!(
        get(&d, &api_key, "/api/v1/jobs?status=queued").json()["jobs"],
        json!([])
    );

    // With explanations, against the same rows explained by v2.
    let r = post(
        &d,
        &api_key,
        "/api/v1/jobs",
        &json!({"instances": &instances[..3], "explain": true}),
    );
    let id = r.json()["id"].as_str().unwrap().to_string();
    wait_finished(&d, &api_key, &id, Duration::from_secs(20));
    let explained = all_results(&d, &api_key, &id);
    let want = post(
        &d,
        &api_key,
        "/api/v2/predict",
        &json!({"instances": &instances[..3], "explain": true}),
    )
    .json();
    assert_eq!(
        explained[2]["explanation"],
        want["predictions"][2]["explanation"]
    );

    // Cancelling a finished job is a conflict.
    let r = post(
        &d,
        &api_key,
        &format!("/api/v1/jobs/{id}/cancel"),
        &json!({}),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    let listed = setup.cli(&["--output", "json", "job", "list", "--user", "ada"]);
    assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
    assert_eq!(
        serde_json::from_slice::<Value>(&listed.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    add_user(&setup, "root", "admin");
    let metrics_key = key(&setup, "root", "metrics:read");
    let mut text = String::new();
    eventually(Duration::from_secs(5), || {
        let r = get(&d, &metrics_key, "/metrics");
        text = r.body;
        r.status == 200
    });
    assert!(
        text.contains("mlapi_jobs{status=\"succeeded\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("mlapi_job_instances_total{outcome=\"ok\"} 63\n"),
        "{text}"
    );

    // Jobs fill the prediction cache that single v2 predictions read...
    let single = post(
        &d,
        &api_key,
        "/api/v2/predict",
        &json!({"features": instances[7], "explain": false}),
    );
    assert_eq!(single.header("x-cache"), Some("HIT"), "{}", single.body);
    assert_eq!(single.json()["probabilities"], results[7]["probabilities"]);
    // ...and read it: the same rows again run no model at all.
    let inferences = |text: &str| -> String {
        text.lines()
            .find(|l| l.starts_with("mlapi_inference_total{model=\"demo\",outcome=\"ok\"}"))
            .unwrap()
            .to_string()
    };
    let before = inferences(&text);
    let r = post(
        &d,
        &api_key,
        "/api/v1/jobs",
        &json!({"instances": instances}),
    );
    let again = r.json()["id"].as_str().unwrap().to_string();
    wait_finished(&d, &api_key, &again, Duration::from_secs(20));
    let after = get(&d, &metrics_key, "/metrics").body;
    assert_eq!(inferences(&after), before);
    assert_eq!(all_results(&d, &api_key, &again), results);
    // A user's job fills only v2's entries (`cache warm` fills v1's too).
    let v1 = post(
        &d,
        &api_key,
        "/api/v1/predict",
        &json!({"features": instances[8]}),
    );
    assert_eq!(v1.header("x-cache"), Some("MISS"), "{}", v1.body);
}

#[test]
fn job_refusals_answer_their_status_and_create_nothing() {
    // No workers: jobs stay queued, so the active count is exact.
    let setup = Setup::new(&jobs_config(
        "workers = 0\nmax_instances = 10\nmax_active_per_user = 2",
        "",
    ));
    add_user(&setup, "bob", "user");
    add_user(&setup, "cyd", "user");
    let key = key(&setup, "bob", "predict:read jobs:read jobs:write");
    let read_only = crate::oip::key(&setup, "bob", "jobs:read");
    let other = crate::oip::key(&setup, "cyd", "jobs:read jobs:write");
    let d = setup.start();
    let count = || query_i64(&setup.db(), "SELECT count(*) FROM jobs");

    let body = json!({"instances": rows(5)})
        .to_string()
        .replacen("15.0", "\"x\"", 1);
    let r = send_body(
        d.request("POST", "/api/v1/jobs")
            .set("X-API-Key", &key)
            .set("Content-Type", "application/json"),
        &body,
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("instances[0][1]"), "{}", r.body);
    let r = post(
        &d,
        &key,
        "/api/v1/jobs",
        &json!({"instances": [[1.0, 2.0, 3.0]]}),
    );
    assert_eq!(r.status, 422);
    assert!(r.body.contains("instances[0]"), "{}", r.body);
    assert_eq!(
        post(&d, &key, "/api/v1/jobs", &json!({"instances": []})).status,
        422
    );
    let r = post(&d, &key, "/api/v1/jobs", &json!({"instances": rows(11)}));
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("jobs.max_instances"), "{}", r.body);
    let r = post(
        &d,
        &key,
        "/api/v1/jobs",
        &json!({"instances": rows(1), "model": "nope"}),
    );
    assert_eq!(r.status, 404);
    assert_eq!(
        post(
            &d,
            &read_only,
            "/api/v1/jobs",
            &json!({"instances": rows(1)})
        )
        .status,
        403
    );
    assert_eq!(count(), 0);

    // Idempotency: the same key and body is the same job; another body is refused.
    let with_key = |k: &str, body: &Value| {
        send_body(
            d.request("POST", "/api/v1/jobs")
                .set("X-API-Key", &key)
                .set("Idempotency-Key", k)
                .set("Content-Type", "application/json"),
            &body.to_string(),
        )
    };
    let first = with_key("order-1", &json!({"instances": rows(2)}));
    assert_eq!(first.status, 202, "{}", first.body);
    let again = with_key("order-1", &json!({"instances": rows(2)}));
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["id"], first.json()["id"]);
    let other_body = with_key("order-1", &json!({"instances": rows(3)}));
    assert_eq!(other_body.status, 422, "{}", other_body.body);
    assert!(other_body.body.contains("Idempotency-Key"));
    assert_eq!(count(), 1);

    // Two active jobs per user: the third waits.
    assert_eq!(
        post(&d, &key, "/api/v1/jobs", &json!({"instances": rows(1)})).status,
        202
    );
    let r = post(&d, &key, "/api/v1/jobs", &json!({"instances": rows(1)}));
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    assert_eq!(count(), 2);

    // Another user's job does not exist for them.
    let id = first.json()["id"].as_str().unwrap().to_string();
    for path in [
        format!("/api/v1/jobs/{id}"),
        format!("/api/v1/jobs/{id}/results"),
    ] {
        assert_eq!(get(&d, &other, &path).status, 404, "{path}");
    }
    assert_eq!(
        post(&d, &other, &format!("/api/v1/jobs/{id}/cancel"), &json!({})).status,
        404
    );
    assert_eq!(get(&d, &other, "/api/v1/jobs").json()["jobs"], json!([]));
    assert_eq!(get(&d, &key, "/api/v1/jobs?status=bogus").status, 400);
    assert_eq!(get(&d, &key, "/api/v1/jobs?user=cyd").status, 403);

    // Cancel: queued → cancelled, then a conflict; a slot is free again.
    let r = post(&d, &key, &format!("/api/v1/jobs/{id}/cancel"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "cancelled");
    assert_eq!(
        post(&d, &key, &format!("/api/v1/jobs/{id}/cancel"), &json!({})).status,
        409
    );
    assert_eq!(
        post(&d, &key, "/api/v1/jobs", &json!({"instances": rows(1)})).status,
        202
    );
    let results = get(&d, &key, &format!("/api/v1/jobs/{id}/results")).json();
    assert_eq!(
        (results["status"].clone(), results["results"].clone()),
        (json!("cancelled"), json!([]))
    );
}

/// A job slow enough to be killed in the middle: `chunks` chunks of 20
/// rows, each taking 40 ms more.
fn slow_setup(chunks: usize) -> (Setup, String, usize) {
    let setup = Setup::new(&jobs_config(
        "chunk_size = 20\nlease_secs = 1",
        "[debug]\ninference_delay_ms = 40\n",
    ));
    add_user(&setup, "dia", "user");
    let key = key(&setup, "dia", "predict:read jobs:read jobs:write");
    (setup, key, chunks * 20)
}

/// The pid of the daemon holding the job's lease (`pid-<pid>-…`), 0 for none.
fn lease_holder_sql(id: &str) -> String {
    format!("SELECT coalesce(CAST(substr(lease_owner, 5, instr(substr(lease_owner, 5), '-') - 1) AS INTEGER), 0) FROM jobs WHERE id = '{id}'")
}

/// The job's results in the database: each index exactly once, 0..total.
fn assert_exactly_once(setup: &Setup, id: &str, total: usize) {
    let q = |sql: &str| query_i64(&setup.db(), &sql.replace("ID", id));
    assert_eq!(
        q("SELECT count(*) FROM job_results WHERE job_id = 'ID'"),
        total as i64
    );
    assert_eq!(
        q("SELECT count(DISTINCT idx) FROM job_results WHERE job_id = 'ID'"),
        total as i64
    );
    assert_eq!(q("SELECT min(idx) FROM job_results WHERE job_id = 'ID'"), 0);
    assert_eq!(
        q("SELECT max(idx) FROM job_results WHERE job_id = 'ID'"),
        total as i64 - 1
    );
    assert_eq!(q("SELECT done FROM jobs WHERE id = 'ID'"), total as i64);
}

#[test]
fn a_job_survives_a_sigkilled_daemon() {
    let (setup, key, total) = slow_setup(60);
    let mut first = setup.start_process();
    let r = post(
        &first,
        &key,
        "/api/v1/jobs",
        &json!({"instances": rows(total)}),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    eventually(Duration::from_secs(20), || {
        get(&first, &key, &format!("/api/v1/jobs/{id}")).json()["done"]
            .as_u64()
            .unwrap()
            >= 200
    });
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5));
    let done_at_kill = query_i64(
        &setup.db(),
        &format!("SELECT done FROM jobs WHERE id = '{id}'"),
    );
    assert!(
        done_at_kill < total as i64,
        "the job must still be running when killed"
    );

    add_user(&setup, "root", "admin");
    let metrics_key = crate::oip::key(&setup, "root", "metrics:read");
    let second = setup.start_process();
    let job = wait_finished(&second, &key, &id, Duration::from_secs(30));
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_exactly_once(&setup, &id, total);
    // Resumed, not redone: the second daemon computed only what was left.
    let computed = format!(
        "mlapi_job_instances_total{{outcome=\"ok\"}} {}\n",
        total as i64 - done_at_kill
    );
    let text = get(&second, &metrics_key, "/metrics").body;
    assert!(text.contains(&computed), "{computed} not in {text}");
    let results = all_results(&second, &key, &id);
    let want = post(
        &second,
        &key,
        "/api/v2/predict",
        &json!({"instances": &rows(total)[total - 3..], "explain": false}),
    )
    .json();
    for k in 0..3 {
        assert_eq!(
            results[total - 3 + k]["probabilities"],
            want["predictions"][k]["probabilities"]
        );
    }
}

#[test]
fn with_two_daemons_on_one_database_the_survivor_finishes_the_job() {
    let (setup, key, total) = slow_setup(60);
    let mut daemons = vec![setup.start_process(), setup.start_process()];
    let r = post(
        &daemons[0],
        &key,
        "/api/v1/jobs",
        &json!({"instances": rows(total)}),
    );
    let id = r.json()["id"].as_str().unwrap().to_string();
    let owner_sql = lease_holder_sql(&id);
    eventually(Duration::from_secs(20), || {
        query_i64(&setup.db(), &owner_sql) != 0
    });
    let running_on = query_i64(&setup.db(), &owner_sql) as u32;
    let index = daemons
        .iter()
        .position(|d| d.pid() == running_on)
        .expect("one of ours runs it");
    let mut victim = daemons.remove(index);
    eventually(Duration::from_secs(20), || {
        query_i64(
            &setup.db(),
            &format!("SELECT done FROM jobs WHERE id = '{id}'"),
        ) >= 100
    });
    victim.signal("KILL");
    victim.wait_exit(Duration::from_secs(5));
    let survivor = &daemons[0];
    let job = wait_finished(survivor, &key, &id, Duration::from_secs(30));
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_exactly_once(&setup, &id, total);
    assert_eq!(
        query_i64(&setup.db(), &owner_sql),
        0,
        "no lease left on a finished job"
    );
}

#[test]
fn sigterm_gives_a_running_job_back_and_the_cli_manages_jobs() {
    let (setup, key, total) = slow_setup(60);
    let mut first = setup.start_process();
    let id = post(
        &first,
        &key,
        "/api/v1/jobs",
        &json!({"instances": rows(total)}),
    )
    .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    eventually(Duration::from_secs(20), || {
        get(&first, &key, &format!("/api/v1/jobs/{id}")).json()["done"]
            .as_u64()
            .unwrap()
            >= 100
    });
    let started = Instant::now();
    first.signal("TERM");
    assert!(first.wait_exit(Duration::from_secs(10)).success());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Released, not abandoned: the next daemon need not wait for the lease.
    assert_eq!(
        query_i64(
            &setup.db(),
            &format!("SELECT lease_until_ms FROM jobs WHERE id = '{id}'")
        ),
        0
    );

    let out = setup.cli(&["--output", "json", "job", "show", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["status"], "running");
    let out = setup.cli(&["job", "list", "--status", "running"]);
    assert!(stdout(&out).contains(&id), "{}", stdout(&out));
    assert_eq!(
        setup
            .cli(&["job", "list", "--status", "bogus"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        setup.cli(&["job", "show", "no-such-job"]).status.code(),
        Some(3)
    );
    let out = setup.cli(&["job", "cancel", &id, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        setup.cli(&["job", "cancel", &id, "--yes"]).status.code(),
        Some(4)
    );

    // A new daemon does not run a cancelled job; purge deletes it with its results.
    let second = setup.start_process();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        get(&second, &key, &format!("/api/v1/jobs/{id}")).json()["status"],
        "cancelled"
    );
    std::thread::sleep(Duration::from_millis(1100));
    let out = setup.cli(&[
        "--output",
        "json",
        "job",
        "purge",
        "--older-than",
        "1s",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["deleted"],
        1
    );
    assert_eq!(
        query_i64(&setup.db(), "SELECT count(*) FROM job_results"),
        0
    );
    assert_eq!(
        get(&second, &key, &format!("/api/v1/jobs/{id}")).status,
        404
    );
}

#[test]
fn server_sent_events_follow_a_job_to_its_end() {
    let (setup, key, total) = slow_setup(40);
    let d = setup.start();
    let id = post(&d, &key, "/api/v1/jobs", &json!({"instances": rows(total)})).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let started = Instant::now();
    let r = send(
        d.request("GET", &format!("/api/v1/jobs/{id}/events"))
            .set("X-API-Key", &key)
            .set("Accept", "text/event-stream"),
    );
    // The body was read to its end: the stream closed after the last event.
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let events: Vec<(String, Value)> = r
        .body
        .split("\n\n")
        .filter(|block| block.contains("data:"))
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or_default()
                    .to_string()
            };
            (
                field("event:"),
                serde_json::from_str(&field("data:")).unwrap(),
            )
        })
        .collect();
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        ["job.queued", "job.started"].contains(&kinds[0]),
        "{kinds:?}"
    );
    assert_eq!(*kinds.last().unwrap(), "job.succeeded", "{kinds:?}");
    assert!(kinds.contains(&"job.progress"), "{kinds:?}");
    for (kind, data) in &events {
        assert_eq!(data["type"], kind.as_str());
        assert_eq!(data["job"]["id"], id.as_str());
    }
    let done: Vec<u64> = events
        .iter()
        .map(|(_, d)| d["job"]["done"].as_u64().unwrap())
        .collect();
    assert!(done.windows(2).all(|w| w[0] <= w[1]), "{done:?}");
    assert_eq!(*done.last().unwrap(), total as u64);
    // Throttled: at most one progress event per 500 ms.
    let progress = kinds.iter().filter(|k| **k == "job.progress").count();
    let allowed = started.elapsed().as_millis() as usize / 500 + 1;
    assert!(
        progress <= allowed,
        "{progress} progress events in {:?}",
        started.elapsed()
    );

    // A job that does not exist: 404 before any stream.
    assert_eq!(get(&d, &key, "/api/v1/jobs/nope/events").status, 404);
}

#[test]
fn cache_warm_fills_the_entries_predictions_read() {
    let setup = Setup::new(&jobs_config("chunk_size = 2", ""));
    add_user(&setup, "eve", "user");
    let key = key(&setup, "eve", "predict:read");
    let d = setup.start_process();
    let warm_rows = rows(5);
    let lines: String = warm_rows
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect();
    let file = setup.dir.path().join("rows.jsonl");
    std::fs::write(&file, lines).unwrap();
    let out = setup.cli(&["cache", "warm", file.to_str().unwrap(), "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Warmed 5 rows for model demo"),
        "{}",
        stdout(&out)
    );
    let v1 = post(
        &d,
        &key,
        "/api/v1/predict",
        &json!({"features": warm_rows[3]}),
    );
    assert_eq!(v1.header("x-cache"), Some("HIT"), "{}", v1.body);
    let v2 = post(
        &d,
        &key,
        "/api/v2/predict",
        &json!({"features": warm_rows[4], "explain": false}),
    );
    assert_eq!(v2.header("x-cache"), Some("HIT"), "{}", v2.body);
    // An operator's job is no user's.
    assert_eq!(
        query_i64(
            &setup.db(),
            "SELECT count(*) FROM jobs WHERE user_id IS NULL"
        ),
        1
    );

    // A JSON array works too; bad input is refused before anything is queued.
    let array = setup.dir.path().join("rows.json");
    std::fs::write(&array, serde_json::to_string(&rows(2)).unwrap()).unwrap();
    let out = setup.cli(&["--output", "json", "cache", "warm", array.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let queued: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(queued["total"], 2);
    std::fs::write(&array, "[[1, 2, 3], [1, 2, 3, 4, 5]]").unwrap();
    let path = array.to_str().unwrap();
    let out = setup.cli(&["cache", "warm", path]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("row 1"), "{}", stderr(&out));
    assert_eq!(
        setup
            .cli(&["cache", "warm", path, "--model", "nope"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        setup.cli(&["cache", "warm", "/no/such/file"]).status.code(),
        Some(2)
    );
    std::fs::write(&array, "[1, 2").unwrap();
    assert_eq!(setup.cli(&["cache", "warm", path]).status.code(), Some(2));
    assert_eq!(query_i64(&setup.db(), "SELECT count(*) FROM jobs"), 2);
}

#[test]
fn a_stalled_worker_loses_its_lease_and_writes_nothing() {
    let (setup, key, total) = slow_setup(60);
    let daemons = [setup.start_process(), setup.start_process()];
    let id = post(
        &daemons[0],
        &key,
        "/api/v1/jobs",
        &json!({"instances": rows(total)}),
    )
    .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let owner_sql = lease_holder_sql(&id);
    let done_sql = format!("SELECT done FROM jobs WHERE id = '{id}'");
    eventually(Duration::from_secs(20), || {
        query_i64(&setup.db(), &done_sql) >= 100
    });
    let running_on = query_i64(&setup.db(), &owner_sql) as u32;
    let stalled = daemons
        .iter()
        .find(|d| d.pid() == running_on)
        .expect("one of ours runs it");
    let other = daemons.iter().find(|d| d.pid() != running_on).unwrap();
    // Stopped past its lease (1 s): the other daemon takes the job over.
    stalled.signal("STOP");
    eventually(Duration::from_secs(20), || {
        query_i64(&setup.db(), &owner_sql) == i64::from(other.pid())
    });
    std::thread::sleep(Duration::from_millis(300));
    stalled.signal("CONT");
    let job = wait_finished(other, &key, &id, Duration::from_secs(30));
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_exactly_once(&setup, &id, total);
    // Its chunk in hand was refused at commit, not written.
    eventually(Duration::from_secs(10), || {
        stalled.logs().contains("taken over by another worker")
    });
}

#[test]
fn a_draining_daemon_ends_its_event_streams() {
    // No workers: the job stays queued, so only shutdown can end its stream.
    let setup = Setup::new(&jobs_config("workers = 0", "[server]\ndrain_secs = 20\n"));
    add_user(&setup, "fay", "user");
    let key = key(&setup, "fay", "jobs:read jobs:write");
    let mut d = setup.start_process();
    let id = post(&d, &key, "/api/v1/jobs", &json!({"instances": rows(1)})).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let stream = {
        let (url, key) = (d.url(&format!("/api/v1/jobs/{id}/events")), key.clone());
        std::thread::spawn(move || send(ureq::get(&url).set("X-API-Key", &key)))
    };
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    d.signal("TERM");
    let r = stream.join().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.contains("event:job.queued"), "{}", r.body);
    assert!(d.wait_exit(Duration::from_secs(10)).success());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drained in {:?}, not at drain_secs",
        started.elapsed()
    );
}

/// The name and scheduling policy (0 normal, 5 SCHED_IDLE) of each of the
/// daemon's threads.
fn threads(pid: u32) -> Vec<(String, u32)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| {
            let path = task.ok()?.path();
            let name = std::fs::read_to_string(path.join("comm")).ok()?;
            let stat = std::fs::read_to_string(path.join("stat")).ok()?;
            // After "(comm)" comes field 3 (state); the policy is field 41.
            let policy = stat.rsplit_once(')')?.1.split_whitespace().nth(38)?;
            Some((name.trim().to_string(), policy.parse().ok()?))
        })
        .collect()
}

#[test]
fn chunks_compute_and_commit_on_an_idle_priority_thread_and_overruns_fail_the_job() {
    let setup = Setup::new(&jobs_config(
        "chunk_size = 1",
        "[inference]\ntimeout_ms = 1000\n[debug]\ninference_delay_ms = 300\n",
    ));
    add_user(&setup, "uma", "user");
    let uma = key(&setup, "uma", "predict:read jobs:read jobs:write");
    let d = setup.start_process();
    let r = post(&d, &uma, "/api/v1/jobs", &json!({"instances": rows(6)}));
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let mut seen = Vec::new();
    eventually(Duration::from_secs(10), || {
        seen = threads(d.pid());
        seen.iter().any(|(name, _)| name == "mlapi-job")
    });
    for (name, policy) in &seen {
        let expected = if name == "mlapi-job" { 5 } else { 0 };
        assert_eq!(*policy, expected, "thread {name}: {seen:?}");
    }
    let job = wait_finished(&d, &uma, &id, Duration::from_secs(20));
    assert_eq!(job["status"], "succeeded", "{job}");
    drop(d);

    // The same chunk over the timeout: three tries, then the job fails.
    let setup = Setup::new(&jobs_config(
        "chunk_size = 1",
        "[inference]\ntimeout_ms = 100\n[debug]\ninference_delay_ms = 150\n",
    ));
    add_user(&setup, "uma", "user");
    let uma = key(&setup, "uma", "predict:read jobs:read jobs:write");
    let d = setup.start_process();
    let r = post(&d, &uma, "/api/v1/jobs", &json!({"instances": rows(2)}));
    let id = r.json()["id"].as_str().unwrap().to_string();
    let job = wait_finished(&d, &uma, &id, Duration::from_secs(20));
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("does not finish within the inference timeout"),
        "{job}"
    );
    assert_eq!(job["done"], 0, "{job}");
}

#[test]
fn a_job_steps_aside_for_a_request_in_flight_yet_finishes() {
    let setup = Setup::new(&jobs_config("chunk_size = 10", ""));
    add_user(&setup, "ada", "user");
    let api_key = key(&setup, "ada", "predict:read jobs:read jobs:write");
    let d = setup.start();
    // A caller's request stays in flight as long as its body is not complete.
    let mut held = std::net::TcpStream::connect(d.addr).unwrap();
    std::io::Write::write_all(
        &mut held,
        format!(
            "POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nX-API-Key: {api_key}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let started = Instant::now();
    let r = post(
        &d,
        &api_key,
        "/api/v1/jobs",
        &json!({"instances": rows(50)}),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let done = wait_finished(&d, &api_key, &id, Duration::from_secs(30));
    let took = started.elapsed();
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(all_results(&d, &api_key, &id).len(), 50);
    // Five chunks, each waiting up to 20 ms before its lookups, its stores
    // and its commit while the request is in flight: never faster than that.
    assert!(
        took >= Duration::from_millis(5 * 3 * 20),
        "the job did not step aside: {took:?}"
    );
    drop(held);
}
