//! mlapi speaking the Open Inference Protocol v2 (KServe / Triton REST)
//! against the real daemon: health, model metadata and readiness, and
//! `infer` with JSON tensors equal to `/api/v2/predict`; errors carry the
//! protocol's `error` member.

use std::process::Command;

use serde_json::{json, Value};

use crate::contract::tool;
use crate::harness::{send, send_body, stderr, stdout, Daemon, Resp, Setup};
use crate::identity::auth_config;
use crate::keys::add_user;

pub fn key(setup: &Setup, user: &str, scopes: &str) -> String {
    let out = setup.cli(&[
        "key", "create", "--user", user, "--name", scopes, "--scopes", scopes, "-q",
    ]);
    assert_eq!(out.status.code(), Some(0));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn infer(d: &Daemon, key: &str, body: &Value) -> Resp {
    send_body(
        d.request("POST", "/v2/models/demo/infer")
            .set("X-API-Key", key)
            .set("Content-Type", "application/json"),
        &body.to_string(),
    )
}

/// What `/api/v2/predict` answers for `rows()`, without explanations.
fn v2_batch(d: &Daemon, key: &str) -> Value {
    send_body(
        d.request("POST", "/api/v2/predict")
            .set("X-API-Key", key)
            .set("Content-Type", "application/json"),
        &json!({"instances": rows(), "explain": false}).to_string(),
    )
    .json()
}

fn rows() -> Vec<Vec<f64>> {
    vec![
        vec![1.0, 2.0, 3.0, 4.0, 5.0],
        vec![14.0, 20.0, 0.12, 0.2, 0.2],
    ]
}

#[test]
fn the_inference_protocol_answers_as_v2_predict_does() {
    let setup = Setup::new(&auth_config(""));
    add_user(&setup, "ivy", "user");
    let full = key(&setup, "ivy", "predict:read models:read");
    let d = setup.start();

    let live = send(d.request("GET", "/v2/health/live"));
    assert_eq!((live.status, live.json()), (200, json!({"live": true})));
    let ready = send(d.request("GET", "/v2/health/ready"));
    assert_eq!((ready.status, ready.json()), (200, json!({"ready": true})));

    let meta = send(d.request("GET", "/v2/models/demo").set("X-API-Key", &full));
    assert_eq!(meta.status, 200, "{}", meta.body);
    let meta = meta.json();
    assert_eq!(meta["name"], "demo");
    assert_eq!(
        meta["inputs"][0],
        json!({"name": "input", "datatype": "FP32", "shape": [-1, 5]})
    );
    assert_eq!(meta["outputs"][0]["shape"], json!([-1, 2]));
    let r = send(
        d.request("GET", "/v2/models/demo/ready")
            .set("X-API-Key", &full),
    );
    assert_eq!(r.json(), json!({"name": "demo", "ready": true}));

    let flat: Vec<f64> = rows().concat();
    let body = json!({"id": "req-1", "inputs": [{"name": "input", "shape": [2, 5], "datatype": "FP32", "data": flat}]});
    let first = infer(&d, &full, &body);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.header("x-cache"), Some("MISS"));
    let answer = first.json();
    assert_eq!(answer["id"], "req-1");
    assert_eq!(answer["model_name"], "demo");

    let v2 = v2_batch(&d, &full);
    let labels = ["malignant", "benign"];
    let expected: Vec<f64> = v2["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            labels
                .iter()
                .map(move |l| p["probabilities"][l].as_f64().unwrap())
        })
        .collect();
    let probabilities = &answer["outputs"][0];
    assert_eq!(probabilities["name"], "probabilities");
    assert_eq!(probabilities["shape"], json!([2, 2]));
    let got: Vec<f64> = probabilities["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(got, expected);
    let predicted: Vec<&Value> = v2["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["prediction"])
        .collect();
    assert_eq!(answer["outputs"][1]["name"], "label");
    assert_eq!(
        answer["outputs"][1]["data"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        predicted
    );

    // The same tensor nested, asking for the label only: a cache hit.
    let nested = json!({"inputs": [{"name": "input", "shape": [2, 5], "datatype": "FP64", "data": rows()}], "outputs": [{"name": "label"}]});
    let again = infer(&d, &full, &nested);
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.header("x-cache"), Some("HIT"));
    let outputs = again.json()["outputs"].as_array().unwrap().clone();
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0]["name"], "label");
    assert!(again.json().get("id").is_none());
}

#[test]
fn inference_protocol_errors_carry_the_error_member() {
    let setup = Setup::new(&auth_config(""));
    add_user(&setup, "joan", "user");
    let full = key(&setup, "joan", "predict:read models:read");
    let models_only = key(&setup, "joan", "models:read");
    let d = setup.start();
    let tensor = |shape: Value, data: Value| json!({"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": data}]});
    let with_error = |r: &Resp, status: u16| -> Value {
        let body = r.problem(status);
        assert_eq!(body["error"], body["detail"], "{body}");
        body
    };

    let r = send(d.request("GET", "/v2/models/nope").set("X-API-Key", &full));
    assert!(with_error(&r, 404)["error"]
        .as_str()
        .unwrap()
        .contains("demo"));
    let r = send_body(
        d.request("POST", "/v2/models/demo/infer")
            .set("Content-Type", "application/json"),
        &tensor(json!([1, 5]), json!([1, 2, 3, 4, 5])).to_string(),
    );
    with_error(&r, 401);
    let r = infer(
        &d,
        &models_only,
        &tensor(json!([1, 5]), json!([1, 2, 3, 4, 5])),
    );
    assert!(with_error(&r, 403)["error"]
        .as_str()
        .unwrap()
        .contains("predict:read"));

    let fields = |r: &Resp| -> Vec<String> {
        with_error(r, 422)["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        fields(&infer(
            &d,
            &full,
            &tensor(json!([1, 4]), json!([1, 2, 3, 4]))
        )),
        ["inputs[0].shape"]
    );
    assert_eq!(
        fields(&infer(
            &d,
            &full,
            &tensor(json!([2, 5]), json!([1, 2, 3, 4, 5]))
        )),
        ["inputs[0].data"],
        "shape and data must agree"
    );
    assert_eq!(
        fields(&infer(
            &d,
            &full,
            &tensor(json!([1, 5]), json!([1, 2, 3, 4, 1e300]))
        )),
        ["inputs[0].data[0][4]"],
        "each value is checked as /predict checks it"
    );
    let r = infer(
        &d,
        &full,
        &json!({"inputs": [{"name": "x", "shape": [1, 5], "datatype": "INT8", "data": [1, 2, 3, 4, 5]}]}),
    );
    assert_eq!(fields(&r), ["inputs[0].name", "inputs[0].datatype"]);
    let r = infer(
        &d,
        &full,
        &json!({"inputs": [], "outputs": [{"name": "logits"}]}),
    );
    assert_eq!(fields(&r), ["inputs", "outputs[0].name"]);
}

/// The real `tritonclient.http` from PyPI, with an API key header: live,
/// ready, metadata, and infer with binary tensors (its default) and JSON,
/// equal to `/api/v2/predict`.
#[test]
fn tritonclient_talks_to_mlapi() {
    let setup = Setup::new(&auth_config(""));
    add_user(&setup, "tess", "user");
    let full = key(&setup, "tess", "predict:read models:read");
    let d = setup.start();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/oip/tritonclient_check.py"
    );
    let host = d
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let out = Command::new(tool("python"))
        .args([script, &host, &full])
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "tritonclient failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["live"], true);
    assert_eq!(got["ready"], true);
    assert_eq!(got["model_ready"], true);
    assert_eq!(got["metadata"]["inputs"][0]["shape"], json!([-1, 5]));

    let v2 = v2_batch(&d, &full);
    for form in ["binary", "json"] {
        let answer = &got[form];
        assert_eq!(answer["shape"], json!([2, 2]), "{form}");
        assert_eq!(
            answer["binary_response"],
            form == "binary",
            "{form}: {answer}"
        );
        for (i, p) in v2["predictions"].as_array().unwrap().iter().enumerate() {
            assert_eq!(answer["labels"][i], p["prediction"], "{form}");
            for (j, label) in ["malignant", "benign"].iter().enumerate() {
                let want = p["probabilities"][label].as_f64().unwrap();
                let have = answer["probabilities"][i][j].as_f64().unwrap();
                // FP32 on the wire: equal to f32 precision.
                assert!(
                    (want - have).abs() < 1e-6,
                    "{form} [{i}][{j}]: {have} vs {want}"
                );
            }
        }
    }
}
