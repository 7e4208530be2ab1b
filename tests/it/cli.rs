//! CLI conventions: config show, output formats, exit codes, completions.

use crate::harness::{mlapi, stderr, stdout, Setup};

#[test]
fn config_show_prints_the_effective_config_with_secrets_redacted() {
    let setup = Setup::new("[redis]\nurl = \"redis://app:hunter2@127.0.0.1:6390/0\"\n");
    let out = mlapi()
        .arg("--config")
        .arg(setup.config())
        .args(["--output", "json", "config", "show"])
        .env("MLAPI_SERVER_DRAIN_SECS", "3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["file"], setup.config().display().to_string());
    assert_eq!(doc["database_file"], setup.db().display().to_string());
    assert_eq!(doc["config"]["server"]["drain_secs"], 3);
    assert_eq!(doc["config"]["server"]["bind"], "127.0.0.1:8000");
    assert_eq!(
        doc["config"]["redis"]["url"],
        "redis://app:***@127.0.0.1:6390/0"
    );
    assert!(!stdout(&out).contains("hunter2"));

    let out = setup.cli(&["config", "show", "--bind", "0.0.0.0:1"]);
    assert_eq!(out.status.code(), Some(2), "--bind belongs to serve only");

    let out = setup.cli(&["config", "show"]);
    assert_eq!(out.status.code(), Some(0));
    let table = stdout(&out);
    assert!(
        table.contains("server.max_body_bytes") && table.contains("1048576"),
        "{table}"
    );
    assert!(!table.contains("hunter2"));
    assert!(!setup.db().exists(), "config show opens no database");
}

#[test]
fn config_show_works_with_no_file_at_all() {
    let home = tempfile::tempdir().unwrap();
    let out = mlapi()
        .args(["--output", "json", "config", "show"])
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("XDG_DATA_HOME", home.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // /etc/mlapi/mlapi.toml would win if this machine had one.
    if !std::path::Path::new("/etc/mlapi/mlapi.toml").exists() {
        assert!(doc["file"].is_null(), "{doc}");
        assert!(doc["database_file"]
            .as_str()
            .unwrap()
            .starts_with(home.path().to_str().unwrap()));
    }
    assert_eq!(doc["config"]["log"]["format"], "text");
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let out = mlapi()
        .args(["--output", "yaml", "config", "show"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = mlapi().args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = mlapi().output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a command is required");
}

#[test]
fn help_and_version() {
    let out = mlapi().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    for word in ["serve", "config", "completions", "--output", "Exit codes"] {
        assert!(help.contains(word), "--help lacks {word}");
    }
    let out = mlapi().arg("--version").output().unwrap();
    assert_eq!(
        stdout(&out).trim(),
        format!("mlapi {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef mlapi"),
        ("fish", "complete -c mlapi"),
    ] {
        let out = mlapi().args(["completions", shell]).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert!(stdout(&out).contains(marker), "{shell}");
    }
    let out = mlapi().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_shipped_example_config_is_valid() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/mlapi.toml");
    let out = mlapi()
        .arg("--config")
        .arg(&example)
        .args(["--output", "json", "config", "show"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["database_file"], "/var/lib/mlapi/mlapi.db");
    assert_eq!(doc["config"]["log"]["format"], "json");
}
