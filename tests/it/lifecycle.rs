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
    let mut daemon = setup.start_process();
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
    let mut daemon = setup.start_process();
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
    let daemon = setup.start_process();
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

/// Reads one HTTP/1.1 response off a kept-alive connection; its status line.
fn read_response(stream: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("a response head");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    head.lines().next().unwrap().to_string()
}

/// Waits for the server to close the connection; how long that took.
fn closed_after(stream: &mut std::net::TcpStream, started: Instant) -> Duration {
    use std::io::Read;
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return started.elapsed(),
            // A partial head may get an error answer before the close.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return started.elapsed(),
            Err(e) => panic!(
                "the connection is still open after {:?}: {e}",
                started.elapsed()
            ),
        }
    }
}

#[test]
fn connections_that_complete_no_request_head_are_closed() {
    use std::io::Write;
    use std::net::TcpStream;
    let setup = Setup::new(&format!("{DEBUG}\n[server]\nhead_timeout_secs = 1\n"));
    let daemon = setup.start();
    let connect = || {
        let s = TcpStream::connect(daemon.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
        s
    };

    // Slow loris: a head trickled in, a byte every 100 ms, never finished.
    let started = Instant::now();
    let mut trickled = connect();
    let mut writer = trickled.try_clone().unwrap();
    let trickler = std::thread::spawn(move || {
        let head = b"GET /health HTTP/1.1\r\nHost: mlapi\r\nX-Padding: ";
        for b in head.iter().chain(std::iter::repeat(&b'a')).take(60) {
            if writer.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut silent = connect();
    let trickled_for = closed_after(&mut trickled, started);
    let silent_for = closed_after(&mut silent, started);
    for took in [trickled_for, silent_for] {
        // One period at least, two at most (plus scheduling slack).
        assert!(
            took >= Duration::from_millis(900),
            "closed too early: {took:?}"
        );
        assert!(
            took < Duration::from_millis(3500),
            "closed too late: {took:?}"
        );
    }
    trickler.join().unwrap();

    // Complete requests keep a connection open across many periods.
    let mut busy = connect();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(3000) {
        busy.write_all(b"GET /health HTTP/1.1\r\nHost: mlapi\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut busy), "HTTP/1.1 200 OK");
        std::thread::sleep(Duration::from_millis(300));
    }

    // A request in flight for longer than two periods is not cut off, and
    // the connection serves the next one.
    let mut waiting = connect();
    waiting
        .write_all(b"GET /debug/sleep?ms=2500 HTTP/1.1\r\nHost: mlapi\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut waiting), "HTTP/1.1 200 OK");
    waiting
        .write_all(b"GET /health HTTP/1.1\r\nHost: mlapi\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut waiting), "HTTP/1.1 200 OK");
}
