//! API versions against the real daemon and CLI: resolution by path, header,
//! query and default; unknown versions; deprecation headers parsed by their
//! RFCs; 410 after the sunset; `mlapi version list` (catalog H5).

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{send, send_body, stderr, Daemon, Resp, Setup};
use crate::identity::{auth_config, eventually, login, register};

fn token(d: &Daemon) -> String {
    assert_eq!(register(d, "versioned", "SecurePass123!").status, 201);
    login(d, "versioned", "SecurePass123!").json()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

fn call(d: &Daemon, token: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = d
        .request("POST", path)
        .set("Authorization", &format!("Bearer {token}"))
        .set("Content-Type", "application/json");
    for (k, v) in headers {
        req = req.set(k, v);
    }
    send_body(req, r#"{"features": [14.0, 20.0, 0.12, 0.2, 0.2]}"#)
}

/// A path, request headers, and the version the body must carry.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

fn body_version(r: &Resp) -> String {
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["version"].as_str().unwrap().to_string()
}

#[test]
fn path_header_query_and_default_resolve_as_specified() {
    let d = Setup::new(&auth_config("")).start();
    let t = token(&d);
    let cases: &[Case] = &[
        ("/api/v1/predict", &[], "1.0"),
        ("/api/v2/predict", &[], "2.0"),
        ("/api/v1/predict", &[("API-Version", "2")], "1.0"),
        ("/api/v2/predict", &[("Accept-Version", "v1")], "2.0"),
        ("/api/predict", &[("API-Version", "2")], "2.0"),
        ("/api/predict", &[("Accept-Version", "2.0")], "2.0"),
        ("/predict", &[("Accept-Version", "2.0")], "2.0"),
        ("/api/predict?version=2", &[], "2.0"),
        ("/api/predict?version=v2", &[("API-Version", "1.0")], "1.0"),
        ("/api/predict", &[], "1.0"),
        ("/predict", &[], "1.0"),
    ];
    for (path, headers, expected) in cases {
        let r = call(&d, &t, path, headers);
        assert_eq!(body_version(&r), *expected, "{path} {headers:?}");
        assert_eq!(
            r.header("api-version"),
            Some(*expected),
            "{path}: API-Version states it"
        );
    }
    // Every route has an unversioned alias; v1's routes are also v2's.
    let me = send(
        d.request("GET", "/api/users/me")
            .set("Authorization", &format!("Bearer {t}")),
    );
    assert_eq!(me.status, 200);
    assert_eq!(me.header("api-version"), Some("1.0"));
    let me = send(
        d.request("GET", "/api/v2/users/me")
            .set("Authorization", &format!("Bearer {t}")),
    );
    assert_eq!(me.status, 200);
    assert_eq!(me.header("api-version"), Some("2.0"));
    assert_eq!(
        d.get("/health").header("api-version"),
        None,
        "operations endpoints are unversioned"
    );

    // The default can be configured.
    let d2 = Setup::new(&format!(
        "{}\n[api]\ndefault_version = \"v2\"\n",
        auth_config("")
    ))
    .start();
    let t2 = token(&d2);
    assert_eq!(body_version(&call(&d2, &t2, "/api/predict", &[])), "2.0");
}

#[test]
fn unknown_versions_are_a_400_listing_the_supported_ones() {
    let d = Setup::new(&auth_config("")).start();
    let t = token(&d);
    for (path, headers) in [
        ("/api/predict", vec![("API-Version", "3")]),
        ("/api/predict", vec![("Accept-Version", "latest")]),
        ("/api/predict?version=9", vec![]),
        ("/api/v3/predict", vec![]),
    ] {
        let r = call(&d, &t, path, &headers);
        let body = r.problem(400);
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains("1, 2"), "{path}: {detail}");
    }
    let out = Setup::new("[api]\ndefault_version = \"3\"\n").cli(&["config", "show"]);
    assert_eq!(out.status.code(), Some(2));
}

fn version_list(setup: &Setup) -> Value {
    let out = setup.cli(&["--output", "json", "version", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn deprecation_headers_then_sunset_then_undeprecate() {
    let setup = Setup::new(&auth_config(""));
    let d = setup.start();
    let t = token(&d);
    assert_eq!(version_list(&setup)[0]["status"], "current");

    let out = setup.cli(&[
        "version",
        "deprecate",
        "1",
        "--sunset",
        "2099-01-01",
        "--successor",
        "2",
        "--link",
        "https://example.com/v1-retirement",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("default"),
        "deprecating the default version warns: {}",
        stderr(&out)
    );
    let waited = eventually(Duration::from_secs(1), || {
        call(&d, &t, "/api/v1/predict", &[])
            .header("deprecation")
            .is_some()
    });
    assert!(waited < Duration::from_secs(1));

    let r = call(&d, &t, "/api/v1/predict", &[]);
    assert_eq!(r.status, 200);
    // RFC 9745: Deprecation is an sf-date, "@" and unix seconds, not after the sunset.
    let deprecation = r.header("deprecation").unwrap();
    let deprecated_at: i64 = deprecation
        .strip_prefix('@')
        .expect("@<seconds>")
        .parse()
        .expect("an integer");
    // RFC 8594: Sunset is an IMF-fixdate.
    let sunset = httpdate::parse_http_date(r.header("sunset").unwrap()).expect("IMF-fixdate");
    let sunset_secs = sunset
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(sunset_secs, 4_070_908_800, "2099-01-01T00:00:00Z");
    assert!(deprecated_at <= sunset_secs);
    assert!(r.header("sunset").unwrap().ends_with(" GMT"));
    let link = r.header("link").unwrap();
    assert!(
        link.contains(r#"</api/v2/predict>; rel="successor-version""#),
        "{link}"
    );
    assert!(
        link.contains(r#"<https://example.com/v1-retirement>; rel="deprecation""#),
        "{link}"
    );
    assert_eq!(r.header("x-api-deprecation"), Some("true"));
    assert_eq!(r.header("x-api-sunset"), r.header("sunset"));
    assert_eq!(r.header("x-api-replacement"), Some("/api/v2/predict"));
    // Unversioned requests resolving to v1 are deprecated too; v2 is not.
    assert!(call(&d, &t, "/api/predict", &[])
        .header("deprecation")
        .is_some());
    let v2 = call(&d, &t, "/api/v2/predict", &[]);
    for h in [
        "deprecation",
        "sunset",
        "link",
        "x-api-deprecation",
        "x-api-sunset",
        "x-api-replacement",
    ] {
        assert!(v2.header(h).is_none(), "v2 carries {h}");
    }
    // Moving the sunset later does not move the deprecation date.
    std::thread::sleep(Duration::from_millis(1100));
    let out = setup.cli(&[
        "version",
        "deprecate",
        "1",
        "--sunset",
        "2099-06-01",
        "--successor",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(0));
    eventually(Duration::from_secs(1), || {
        call(&d, &t, "/api/v1/predict", &[])
            .header("sunset")
            .is_some_and(|s| s.contains("Jun 2099"))
    });
    assert_eq!(
        call(&d, &t, "/api/v1/predict", &[]).header("deprecation"),
        Some(deprecation)
    );
    let listed = version_list(&setup);
    assert_eq!(listed[0]["status"], "deprecated");
    assert_eq!(listed[0]["successor"], 2);
    assert_eq!(listed[0]["sunset"], "2099-06-01T00:00:00Z");
    assert_eq!(listed[1]["status"], "current");

    // A sunset in the past retires the version: 410 naming the successor.
    let out = setup.cli(&[
        "version",
        "deprecate",
        "v1",
        "--sunset",
        "2020-01-01T00:00:00Z",
        "--successor",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    eventually(Duration::from_secs(1), || {
        call(&d, &t, "/api/v1/predict", &[]).status == 410
    });
    let gone = call(&d, &t, "/api/v1/predict", &[]);
    let body = gone.problem(410);
    assert!(
        body["detail"].as_str().unwrap().contains("/api/v2/predict"),
        "{body}"
    );
    assert_eq!(call(&d, &t, "/api/v2/predict", &[]).status, 200);
    assert_eq!(version_list(&setup)[0]["status"], "sunset");

    let out = setup.cli(&["version", "undeprecate", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    eventually(Duration::from_secs(1), || {
        call(&d, &t, "/api/v1/predict", &[]).status == 200
    });
    assert!(call(&d, &t, "/api/v1/predict", &[])
        .header("deprecation")
        .is_none());
    let listed = version_list(&setup);
    assert_eq!(listed[0]["status"], "current");
    assert!(listed[0]["sunset"].is_null());
    let events: Vec<Value> = {
        let out = setup.cli(&["--output", "json", "audit", "--action", "version_deprecate"]);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(events.len(), 3);
    // The state survives a restart (it lives in the database).
    setup.cli(&[
        "version",
        "deprecate",
        "1",
        "--sunset",
        "2099-01-01",
        "--successor",
        "2",
    ]);
    drop(d);
    let d = setup.start();
    assert!(call(&d, &t, "/api/v1/predict", &[])
        .header("deprecation")
        .is_some());
}

#[test]
fn version_cli_errors() {
    let setup = Setup::new("");
    let code = |args: &[&str]| setup.cli(args).status.code();
    assert_eq!(
        code(&["version", "list"]),
        Some(1),
        "no database yet: nothing to list"
    );
    assert_eq!(
        code(&["version", "deprecate", "3", "--sunset", "2099-01-01"]),
        Some(2)
    );
    assert_eq!(
        code(&["version", "deprecate", "1", "--sunset", "soon"]),
        Some(2)
    );
    assert_eq!(
        code(&[
            "version",
            "deprecate",
            "1",
            "--sunset",
            "2099-01-01",
            "--successor",
            "1"
        ]),
        Some(2)
    );
    assert_eq!(
        code(&[
            "version",
            "deprecate",
            "1",
            "--sunset",
            "2099-01-01",
            "--link",
            "ftp://x"
        ]),
        Some(2)
    );
    let out = setup.cli(&["version", "deprecate", "2", "--sunset", "2099-01-01"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("no --successor"), "{}", stderr(&out));
    assert_eq!(code(&["version", "undeprecate", "2"]), Some(0));
    assert_eq!(
        code(&["version", "undeprecate", "2"]),
        Some(0),
        "idempotent"
    );
    let list = version_list(&setup);
    assert_eq!(
        list,
        json!([
            {"version": 1, "status": "current", "default": true, "deprecated_at": null, "sunset": null, "successor": null, "link": null},
            {"version": 2, "status": "current", "default": false, "deprecated_at": null, "sunset": null, "successor": null, "link": null},
        ])
    );
}
