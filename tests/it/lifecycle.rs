//! The daemon's life: bad config refused before start, graceful shutdown with
//! drain, systemd readiness, SIGHUP reload.

use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{send, stderr, Setup};

const DEBUG: &str = "[debug]\ntest_routes = true\n";

#[test]
fn bad_config_is_refused_before_anything_starts() {
    let setup = Setup::new("[server]\ndrain_secs = \"soon\"\n");
    let out = setup.cli(&["serve", "--bind", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(&setup.config().display().to_string()), "{err}");
    assert!(err.contains("server.drain_secs"), "{err}");
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    assert!(!setup.db().exists(), "nothing may start on a bad config");

    let setup = Setup::new("[server\nbind = 1");
    let out = setup.cli(&["serve"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid TOML: line 4: unclosed table"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));

    let setup = Setup::new("");
    let out = crate::harness::mlapi()
        .arg("--config")
        .arg(setup.config())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("MLAPI_SERVER_MAX_BODY_BYTES", "lots")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("MLAPI_SERVER_MAX_BODY_BYTES"),
        "{}",
        stderr(&out)
    );

    let out = crate::harness::mlapi()
        .args(["--config", "/nonexistent/mlapi.toml", "serve"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/mlapi.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_address_in_use_is_a_clear_failure() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let setup = Setup::new("");
    let out = setup.cli(&["serve", "--bind", &addr]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("cannot listen on {addr}")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sigterm_lets_in_flight_requests_finish_then_exits_zero() {
    let setup = Setup::new(DEBUG);
    let mut daemon = setup.start();
    let url = daemon.url("/debug/sleep?ms=1500");
    let slow = std::thread::spawn(move || send(ureq::get(&url)));
    std::thread::sleep(Duration::from_millis(300));

    daemon.signal("TERM");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        std::net::TcpStream::connect(daemon.addr).is_err(),
        "no new connections after SIGTERM"
    );

    let answer = slow.join().unwrap();
    assert_eq!(answer.status, 200, "the in-flight request completes");
    assert_eq!(answer.json()["slept_ms"], 1500);
    let status = daemon.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", daemon.logs());
    assert_eq!(
        crate::harness::query_i64(
            &setup.db(),
            "SELECT count(*) FROM audit_events WHERE action = 'sys_shutdown'"
        ),
        1
    );
}

#[test]
fn drain_timeout_bounds_shutdown() {
    let setup = Setup::new(&format!("{DEBUG}\n[server]\ndrain_secs = 1\n"));
    let mut daemon = setup.start();
    let url = daemon.url("/debug/sleep?ms=30000");
    let slow = std::thread::spawn(move || ureq::get(&url).call().is_ok());
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    daemon.signal("INT");
    let status = daemon.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(!slow.join().unwrap(), "the over-long request is cut off");
    assert!(daemon.logs().contains("drain timeout"), "{}", daemon.logs());
}

#[test]
fn tells_systemd_when_ready() {
    let setup = Setup::new("");
    let socket_path = setup.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let daemon = setup.start_with(|cmd| {
        cmd.env("NOTIFY_SOCKET", &socket_path);
    });
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("a notification");
    let message = String::from_utf8_lossy(&buf[..n]);
    assert!(message.lines().any(|l| l == "READY=1"), "{message}");

    daemon.signal("TERM");
    let n = socket.recv(&mut buf).expect("a stopping notification");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
}

#[test]
fn sighup_reloads_cors_and_keeps_settings_on_a_bad_file() {
    let setup = Setup::new("[cors]\nallowed_origins = [\"https://one.example\"]\n");
    let daemon = setup.start();
    let allowed = |origin: &str| {
        send(daemon.request("GET", "/health").set("Origin", origin))
            .header("access-control-allow-origin")
            .map(str::to_string)
    };
    assert_eq!(
        allowed("https://one.example").as_deref(),
        Some("https://one.example")
    );
    assert_eq!(allowed("https://two.example"), None);

    setup.write_config("[cors]\nallowed_origins = [\"https://two.example\"]\n");
    daemon.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while allowed("https://two.example").is_none() {
        assert!(
            Instant::now() < deadline,
            "reload did not apply: {}",
            daemon.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(allowed("https://one.example"), None);

    setup.write_config("[cors]\nallowed_origins = [\"*\"]\n");
    daemon.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !daemon.logs().contains("configuration not reloaded") {
        assert!(
            Instant::now() < deadline,
            "bad reload not reported: {}",
            daemon.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        allowed("https://two.example").as_deref(),
        Some("https://two.example")
    );
    assert_eq!(daemon.get("/health").status, 200);
}
