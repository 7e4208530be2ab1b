//! Predictions against the real daemon and the real bundled ONNX model:
//! the seed's flow, v1 and v2 (single, batch, explanations), validation
//! (catalog I), model listing, SIGHUP reload, timeouts and isolation.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{send, send_body, Daemon, Resp, Setup};
use crate::identity::{auth_config, eventually, login, post_json, register};

const PASSWORD: &str = "SecurePass123!";

fn token(d: &Daemon, name: &str) -> String {
    assert_eq!(register(d, name, PASSWORD).status, 201);
    login(d, name, PASSWORD).json()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

fn predict(d: &Daemon, version: u8, token: &str, body: &Value) -> Resp {
    predict_raw(d, version, token, &body.to_string())
}

fn predict_raw(d: &Daemon, version: u8, token: &str, body: &str) -> Resp {
    send_body(
        d.request("POST", &format!("/api/v{version}/predict"))
            .set("Authorization", &format!("Bearer {token}"))
            .set("Content-Type", "application/json"),
        body,
    )
}

#[test]
fn the_seed_flow_works_verbatim() {
    let d = Setup::new(&auth_config("")).start();
    let r = post_json(
        &d,
        "/api/v1/auth/register",
        &json!({"username":"testuser","email":"test@example.com","password":"SecurePass123!"}),
    );
    assert_eq!(r.status, 201);
    let access = login(&d, "testuser", "SecurePass123!").json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = predict(
        &d,
        1,
        &access,
        &json!({"features": [1.0, 2.0, 3.0, 4.0, 5.0]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["version"], "1.0");
    assert_eq!(body["model"], "demo");
    assert_eq!(body["model_version"], "1.0.0");
    assert!(
        ["malignant", "benign"].contains(&body["prediction"].as_str().unwrap()),
        "{body}"
    );
    assert_eq!(body["cached"], false);

    let r = post_json(
        &d,
        "/api/v1/predict",
        &json!({"features": [1.0, 2.0, 3.0, 4.0, 5.0]}),
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="mlapi""#)
    );
    let narrow = send_body(
        d.request("POST", "/api/v1/auth/login")
            .set("Content-Type", "application/x-www-form-urlencoded"),
        "username=testuser&password=SecurePass123%21&scope=models%3Aread",
    )
    .json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = predict(
        &d,
        1,
        &narrow,
        &json!({"features": [1.0, 2.0, 3.0, 4.0, 5.0]}),
    );
    assert_eq!(r.problem(403)["scope"], "predict:read");

    // An API key works the same way.
    let key = send_body(
        d.request("POST", "/api/v1/auth/api-keys")
            .set("Authorization", &format!("Bearer {access}"))
            .set("Content-Type", "application/json"),
        r#"{"name":"script","scopes":["predict:read"]}"#,
    )
    .json()["api_key"]
        .as_str()
        .unwrap()
        .to_string();
    let r = send_body(
        d.request("POST", "/api/v1/predict")
            .set("X-API-Key", &key)
            .set("Content-Type", "application/json"),
        r#"{"features": [1.0, 2.0, 3.0, 4.0, 5.0]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn v2_gives_confidence_probabilities_explanations_and_batches() {
    let d = Setup::new(&auth_config("")).start();
    let t = token(&d, "analyst");
    let rows = [
        [1.0, 2.0, 3.0, 4.0, 5.0],
        [12.0, 18.0, 0.11, 0.15, 0.1],
        [25.0, 32.0, 0.16, 0.5, 0.6],
    ];
    let mut singles = Vec::new();
    for row in &rows {
        let r = predict(&d, 2, &t, &json!({"features": row}));
        assert_eq!(r.status, 200, "{}", r.body);
        let b = r.json();
        assert_eq!(b["version"], "2.0");
        let probs = b["probabilities"].as_object().unwrap();
        assert_eq!(probs.len(), 2);
        let total: f64 = probs.values().map(|v| v.as_f64().unwrap()).sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        let top = probs
            .values()
            .map(|v| v.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        assert_eq!(b["confidence"].as_f64().unwrap(), top);
        assert_eq!(
            probs[b["prediction"].as_str().unwrap()].as_f64().unwrap(),
            top
        );
        let e = &b["explanation"];
        assert_eq!(e["method"], "occlusion");
        assert_eq!(e["attributions"].as_array().unwrap().len(), 5);
        assert_eq!(e["baseline"].as_array().unwrap().len(), 5);
        assert!(e["attributions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_f64().unwrap() != 0.0));
        singles.push(b);
    }
    assert_ne!(
        singles[1]["prediction"], singles[2]["prediction"],
        "the model separates real cases"
    );

    let r = predict(&d, 2, &t, &json!({"instances": rows}));
    assert_eq!(r.status, 200, "{}", r.body);
    let batch = r.json();
    let predictions = batch["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 3);
    for (single, p) in singles.iter().zip(predictions) {
        for field in ["prediction", "confidence", "probabilities", "explanation"] {
            assert_eq!(single[field], p[field], "{field}");
        }
    }
    let r = predict(&d, 2, &t, &json!({"features": rows[1], "explain": false}));
    assert!(r.json().get("explanation").is_none());
}

#[test]
fn bad_inputs_are_refused_with_the_field_named() {
    let setup = Setup::new(&format!(
        "{}\n[inference]\nmax_batch = 3\n",
        auth_config("")
    ));
    let d = setup.start_process();
    let t = token(&d, "fuzzer");
    let cases: Vec<(u8, String, u16, &str)> = vec![
        (1, json!({}).to_string(), 422, "features"),
        (1, json!({"features": []}).to_string(), 422, "features"),
        (
            1,
            json!({"features": [1, 2, 3]}).to_string(),
            422,
            "features",
        ),
        (
            1,
            json!({"features": [1, 2, 3, 4, 5, 6]}).to_string(),
            422,
            "features",
        ),
        (
            1,
            json!({"features": [1, "NaN", 3, 4, 5]}).to_string(),
            422,
            "features[1]",
        ),
        (
            1,
            json!({"features": [1, 2, "abc", 4, 5]}).to_string(),
            422,
            "features[2]",
        ),
        (
            1,
            json!({"features": [1, 2, 3, null, 5]}).to_string(),
            422,
            "features[3]",
        ),
        (
            1,
            json!({"features": "1,2,3,4,5"}).to_string(),
            422,
            "features",
        ),
        (
            1,
            r#"{"features": [1e400, 2, 3, 4, 5]}"#.to_string(),
            422,
            "features[0]",
        ),
        (
            1,
            json!({"features": [-1, 2, 3, 4, 5]}).to_string(),
            422,
            "features[0]",
        ),
        (
            1,
            json!({"features": [1, 2, 3, 4, 1e9]}).to_string(),
            422,
            "features[4]",
        ),
        (
            1,
            json!({"features": [1, 2, 3, 4, 5], "model": "nope"}).to_string(),
            404,
            "",
        ),
        (
            1,
            json!({"features": [1, 2, 3, 4, 5], "extra": 1}).to_string(),
            400,
            "",
        ),
        (1, r#"{"features": [NaN, 2, 3, 4, 5]}"#.to_string(), 400, ""),
        (
            1,
            r#"{"features": [Infinity, 2, 3, 4, 5]}"#.to_string(),
            400,
            "",
        ),
        (
            1,
            format!("{{\"features\": {}}}", "[".repeat(10_000)),
            400,
            "",
        ),
        (
            2,
            json!({"instances": vec![[1, 2, 3, 4, 5]; 4]}).to_string(),
            422,
            "instances",
        ),
        (2, json!({"instances": []}).to_string(), 422, "instances"),
        (
            2,
            json!({"instances": [[1, 2, 3, 4, 5], [1, 2]]}).to_string(),
            422,
            "instances[1]",
        ),
        (
            2,
            json!({"features": [1, 2, 3, 4, 5], "instances": [[1, 2, 3, 4, 5]]}).to_string(),
            422,
            "instances",
        ),
        (
            2,
            json!({"features": [1, 2, 3, 4, 5], "explain": "yes"}).to_string(),
            422,
            "explain",
        ),
        (2, json!({}).to_string(), 422, "features"),
    ];
    for (version, body, status, field) in &cases {
        let r = predict_raw(&d, *version, &t, body);
        let problem = r.problem(*status);
        if *status == 422 {
            let fields: Vec<&str> = problem["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["field"].as_str().unwrap())
                .collect();
            assert!(
                fields.contains(field),
                "{body:.80}: expected {field} in {fields:?}"
            );
            assert!(
                problem["detail"].as_str().unwrap().contains(field),
                "{}",
                problem["detail"]
            );
        }
    }
    // Wrong content type and oversized bodies (10^6 elements) never reach the model.
    let r = send_body(
        d.request("POST", "/api/v1/predict")
            .set("Authorization", &format!("Bearer {t}"))
            .set("Content-Type", "text/plain"),
        "1,2,3,4,5",
    );
    r.problem(415);
    let huge = format!("{{\"features\": [{}1]}}", "1,".repeat(1_000_000));
    let head = format!(
        "POST /api/v1/predict HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {t}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        huge.len()
    );
    let answer = d.raw(format!("{head}{huge}").as_bytes());
    assert!(answer.starts_with("HTTP/1.1 413"), "{:.200}", answer);
    // A long array of junk gets one bounded answer, not an error per element.
    let junk = format!("{{\"features\": [{}null]}}", "null,".repeat(100_000));
    let r = predict_raw(&d, 1, &t, &junk);
    r.problem(422);
    assert!(r.body.len() < 2_000, "the error is {} bytes", r.body.len());
    let many_bad: Vec<Value> = (0..50).map(|_| json!([1, 2, 3, 4, -5])).collect();
    let r = send_body(
        d.request("POST", "/api/v2/predict")
            .set("Authorization", &format!("Bearer {t}"))
            .set("Content-Type", "application/json"),
        &json!({"instances": many_bad}).to_string(),
    );
    assert!(
        r.problem(422)["errors"].as_array().unwrap().len() <= 21,
        "errors are capped"
    );
    // Validation failures are logged as such, without the values.
    std::thread::sleep(Duration::from_millis(100));
    assert!(d.logs().contains("input_validation_fail"));
    assert_eq!(
        predict(&d, 1, &t, &json!({"features": [1, 2, 3, 4, 5]})).status,
        200
    );
}

#[test]
fn models_are_listed_for_models_read() {
    let d = Setup::new(&auth_config("")).start();
    let t = token(&d, "viewer");
    let r = send(
        d.request("GET", "/api/v1/models")
            .set("Authorization", &format!("Bearer {t}")),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let models = r.json()["models"].as_array().unwrap().clone();
    assert_eq!(models.len(), 1);
    let m = &models[0];
    assert_eq!(m["name"], "demo");
    assert_eq!(m["input_size"], 5);
    assert_eq!(m["labels"], json!(["malignant", "benign"]));
    assert_eq!(m["backend"], "tract-onnx");
    assert_eq!(m["status"], "ready");
    assert_eq!(m["default"], true);
    assert!(m["digest"].as_str().unwrap().starts_with("sha256:"));
    let one = send(
        d.request("GET", "/api/v1/models/demo")
            .set("Authorization", &format!("Bearer {t}")),
    );
    assert_eq!(one.json()["digest"], m["digest"]);
    send(
        d.request("GET", "/api/v1/models/nope")
            .set("Authorization", &format!("Bearer {t}")),
    )
    .problem(404);
    let narrow = send_body(
        d.request("POST", "/api/v1/auth/login")
            .set("Content-Type", "application/x-www-form-urlencoded"),
        "username=viewer&password=SecurePass123%21&scope=predict%3Aread",
    )
    .json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = send(
        d.request("GET", "/api/v1/models")
            .set("Authorization", &format!("Bearer {narrow}")),
    );
    assert_eq!(r.problem(403)["scope"], "models:read");
}

/// The bundled ONNX file with one unknown protobuf field appended: the same
/// model, different bytes, so a different digest.
fn variant_of_demo() -> Vec<u8> {
    let mut bytes =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/models/demo.onnx")).unwrap();
    bytes.extend([0x98, 0x06, 0x01]); // field 99, varint 1: ignored by readers
    bytes
}

#[test]
fn sighup_reloads_models_and_a_broken_file_keeps_the_old_one() {
    let setup = Setup::new("");
    let model_path = setup.dir.path().join("risk.onnx");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/models/demo.onnx"),
        &model_path,
    )
    .unwrap();
    setup.write_config(&format!(
        "{}\n[[models]]\nname = \"risk\"\npath = \"risk.onnx\"\nlabels = [\"malignant\", \"benign\"]\ninput_size = 5\ndefault = true\n",
        auth_config("")
    ));
    let d = setup.start_process();
    let t = token(&d, "operator");
    let first = predict(&d, 1, &t, &json!({"features": [1, 2, 3, 4, 5]})).json();
    assert_eq!(first["model"], "risk");
    let info = |d: &Daemon| {
        send(
            d.request("GET", "/api/v1/models/risk")
                .set("Authorization", &format!("Bearer {t}")),
        )
        .json()
    };
    let before = info(&d);
    assert_eq!(before["version"], first["model_version"]);
    assert_eq!(
        before["digest"].as_str().unwrap()[7..19],
        *before["version"].as_str().unwrap()
    );

    std::fs::write(&model_path, variant_of_demo()).unwrap();
    d.signal("HUP");
    eventually(Duration::from_secs(5), || {
        info(&d)["digest"] != before["digest"]
    });
    let second = predict(&d, 1, &t, &json!({"features": [1, 2, 3, 4, 5]})).json();
    assert_ne!(second["model_version"], first["model_version"]);
    assert_eq!(second["prediction"], first["prediction"]);

    std::fs::write(&model_path, b"this is not an onnx file").unwrap();
    d.signal("HUP");
    eventually(Duration::from_secs(5), || {
        !info(&d)["reload_error"].is_null()
    });
    let third = predict(&d, 1, &t, &json!({"features": [1, 2, 3, 4, 5]}));
    assert_eq!(third.status, 200, "the previous version keeps serving");
    assert_eq!(third.json()["model_version"], second["model_version"]);
    let ready = d.get("/ready");
    assert_eq!(ready.status, 200);
    assert!(
        ready.json()["checks"]["models"]["detail"]
            .as_str()
            .unwrap()
            .contains("reload failed"),
        "{}",
        ready.body
    );
    assert!(d.logs().contains("model not reloaded"));

    // A model that cannot load at start is a clear startup error.
    let broken = Setup::new(
        "[[models]]\nname = \"x\"\npath = \"missing.onnx\"\nlabels = [\"a\", \"b\"]\ninput_size = 5\n",
    );
    let out = broken.cli(&["serve", "--bind", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        crate::harness::stderr(&out).contains("missing.onnx"),
        "{}",
        crate::harness::stderr(&out)
    );
}

#[test]
fn slow_inference_times_out_without_stalling_other_routes() {
    let setup = Setup::new(&format!(
        "{}\n[inference]\ntimeout_ms = 300\nmax_concurrent = 1\n\n[debug]\ninference_delay_ms = 800\n",
        auth_config("")
    ));
    let d = setup.start();
    let t = token(&d, "patient");
    let url = d.url("/api/v1/predict");
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (url, t) = (url.clone(), t.clone());
            std::thread::spawn(move || {
                match ureq::post(&url)
                    .set("Authorization", &format!("Bearer {t}"))
                    .set("Content-Type", "application/json")
                    .send_string(r#"{"features": [1, 2, 3, 4, 5]}"#)
                {
                    Ok(r) => r.status(),
                    Err(ureq::Error::Status(s, _)) => s,
                    Err(e) => panic!("{e}"),
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    assert_eq!(d.get("/health").status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "/health waited for inference: {:?}",
        started.elapsed()
    );
    let statuses: Vec<u16> = load.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|s| *s == 504 || *s == 503),
        "{statuses:?}"
    );
    assert!(statuses.contains(&504), "{statuses:?}");
    let r = predict(&d, 1, &t, &json!({"features": [1, 2, 3, 4, 5]}));
    assert!(r.status == 504 || r.status == 503);
    assert!(r.json()["detail"].as_str().unwrap().contains("ms") || r.status == 503);
}
