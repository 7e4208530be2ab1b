//! The API contract: `/openapi.json` is valid OpenAPI 3.1
//! (openapi-spec-validator), and the daemon keeps to it under schemathesis
//! with every check and every phase, stateful included, as an admin with a
//! token and an API key. Both tools come from the venv `scripts/test` makes
//! at `target/py` (pinned by `tests/contract/requirements.txt`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use mlapi::http::routes::{Credential, ROUTES};

use crate::harness::{stderr, stdout, Setup};
use crate::identity::{auth_config, login};
use crate::keys::add_user;

const VENV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/py");
/// The password `keys::add_user` gives its accounts.
const PASSWORD: &str = "SecurePass123!";

/// A tool from the venv; the test fails (never skips) without it.
pub fn tool(name: &str) -> PathBuf {
    let path = PathBuf::from(VENV).join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test, which creates the venv {VENV} from tests/contract/requirements.txt",
        path.display()
    );
    path
}

/// Limits high enough that schemathesis's requests are answered rather than
/// refused (429 stays documented and possible).
fn config() -> String {
    auth_config("").replace(
        "anonymous_per_minute = 1000\n\n[tiers.free]\nper_minute = 10000\nper_day = 1000000\n",
        "anonymous_per_minute = 1000000\n\n[tiers.free]\nper_minute = 1000000\nper_day = 100000000\n",
    )
}

/// The per-operation settings (rules of the server no JSON Schema states).
const SETTINGS: &str = include_str!("../contract/schemathesis.toml");

/// Test cases per operation and phase: about 30 s for both runs on 2 cores
/// (a run of 400 found nothing more); `CONTRACT_MAX_EXAMPLES` digs deeper.
fn max_examples() -> String {
    std::env::var("CONTRACT_MAX_EXAMPLES").unwrap_or_else(|_| "100".into())
}

/// One schemathesis run over the operations `selector` picks, with `auth`
/// (a schemathesis.toml `[auth…]` section) before `SETTINGS`; panics with
/// its output on failure.
fn schemathesis(setup: &Setup, url: &str, name: &str, auth: &str, selector: &[&str]) {
    let config = setup.dir.path().join(format!("{name}.toml"));
    std::fs::write(&config, format!("{auth}\n{SETTINGS}")).unwrap();
    let started = Instant::now();
    let out = Command::new(tool("schemathesis"))
        .current_dir(setup.dir.path())
        .arg("--config-file")
        .arg(&config)
        .arg("--no-color")
        .args(["run", url])
        .args(selector)
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", &max_examples(), "--workers", "2"])
        .args(["--request-timeout", "30"])
        .stdin(Stdio::null())
        .output()
        .expect("run schemathesis");
    let elapsed = started.elapsed();
    assert!(
        out.status.success(),
        "schemathesis ({name}) found problems in {elapsed:?}:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    // Shown with --nocapture: which phases ran, and the warnings.
    eprintln!(
        "schemathesis ({name}) passed in {elapsed:?}:\n{}",
        stdout(&out)
    );
}

#[test]
fn the_daemon_keeps_its_openapi_document() {
    let setup = Setup::new(&config());
    // Two admins: one signs in (the token), the other holds the API key, so
    // that neither run below can revoke or disable the other's credential.
    add_user(&setup, "contract_admin", "admin");
    add_user(&setup, "contract_keyholder", "admin");
    let out = setup.cli(&[
        "key",
        "create",
        "--user",
        "contract_keyholder",
        "--name",
        "contract",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let key = stdout(&out).trim().to_string();
    let daemon = setup.start();
    let token = login(&daemon, "contract_admin", PASSWORD).json()["access_token"]
        .as_str()
        .expect("access token")
        .to_string();

    let document = daemon.get("/openapi.json");
    assert_eq!(document.status, 200);
    let path = setup.dir.path().join("openapi.json");
    std::fs::write(&path, &document.body).unwrap();
    let out = Command::new(tool("openapi-spec-validator"))
        .arg(&path)
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        out.status.success(),
        "/openapi.json is not valid OpenAPI:\n{}{}",
        stdout(&out),
        stderr(&out)
    );

    // The routes that end or replace credentials (logout, API-key
    // management) with the token, first, so that no run revokes the
    // credential it runs with; then every other route with the key, which
    // may disable the first admin once that run is over.
    let session: Vec<&str> = ROUTES
        .iter()
        .filter(|r| {
            r.credential == Credential::Session
                || r.doc.tag == "api-keys"
                || r.path.starts_with("/api/v1/admin/api-keys")
        })
        .map(|r| r.doc.operation_id)
        .collect();
    let session = format!("^({})$", session.join("|"));
    let url = daemon.url("/openapi.json");
    schemathesis(
        &setup,
        &url,
        "session",
        &format!("[auth.openapi.HTTPBearer]\nbearer = \"{token}\"\n"),
        &["--include-operation-id-regex", &session],
    );
    schemathesis(
        &setup,
        &url,
        "key",
        &format!("[auth.openapi.APIKeyHeader]\napi_key = \"{key}\"\n"),
        &["--exclude-operation-id-regex", &session],
    );
}
