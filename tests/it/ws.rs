//! WebSockets against the real daemon, over loopback, with a real client
//! library (tungstenite): events in order to the terminal one, tickets,
//! refusals before the upgrade, 1008 on a revoked key, 1001 on SIGTERM, a
//! client that does not read dropped, and events of jobs another daemon
//! on the same database runs.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

use crate::harness::post_with_key as post;
use crate::harness::{send, Daemon, Setup};
use crate::identity::{auth_config, eventually};
use crate::keys::add_user;
use crate::oip::key;

type Socket = WebSocket<TcpStream>;

fn config(extra: &str) -> String {
    format!(
        "{}\n[jobs]\nchunk_size = 7\nmax_active_per_user = 50\n[websocket]\nping_secs = 1\n[cors]\nallowed_origins = [\"https://app.example\"]\n{extra}",
        auth_config("")
    )
}

/// Opens `path` with these headers; `Err(status)` when refused before the
/// upgrade.
fn connect_on(
    stream: TcpStream,
    d: &Daemon,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Socket, u16> {
    let mut request = format!("ws://{}{path}", d.addr)
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    match tungstenite::client::client(request, stream) {
        Ok((socket, response)) => {
            assert_eq!(response.status(), 101);
            Ok(socket)
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("handshake: {e}"),
    }
}

fn connect(d: &Daemon, path: &str, headers: &[(&str, &str)]) -> Result<Socket, u16> {
    connect_on(TcpStream::connect(d.addr).unwrap(), d, path, headers)
}

/// The next text message as JSON, skipping pings.
fn next_event(socket: &mut Socket) -> Value {
    loop {
        match socket.read().expect("a message") {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

/// Reads until the server's close frame; its code.
fn close_code(socket: &mut Socket) -> CloseCode {
    loop {
        match socket.read() {
            Ok(Message::Close(Some(frame))) => return frame.code,
            Ok(Message::Close(None)) => panic!("a close without a code"),
            Ok(Message::Text(text)) => panic!("no frames expected before the close, got {text}"),
            Ok(_) => continue,
            Err(e) => panic!("expected a close frame: {e}"),
        }
    }
}

fn submit(d: &Daemon, key: &str, n: usize) -> String {
    let rows: Vec<Vec<f64>> = (0..n)
        .map(|i| vec![9.0 + i as f64 * 0.01, 16.0, 0.12, 0.2, 0.3])
        .collect();
    let r = post(d, key, "/api/v1/jobs", &json!({"instances": rows}));
    assert_eq!(r.status, 202, "{}", r.body);
    r.json()["id"].as_str().unwrap().to_string()
}

/// Reads events of `id` until its terminal one; their types.
fn events_until_done(socket: &mut Socket, id: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let event = next_event(socket);
        if event["job"]["id"] != id {
            continue;
        }
        let kind = event["type"].as_str().unwrap().to_string();
        seen.push(event);
        if ["job.succeeded", "job.failed", "job.cancelled"].contains(&kind.as_str()) {
            return seen;
        }
    }
}

#[test]
fn events_arrive_in_order_and_end_with_the_terminal_one() {
    let setup = Setup::new(&config("[debug]\ninference_delay_ms = 30\n"));
    add_user(&setup, "ada", "user");
    add_user(&setup, "bob", "user");
    let ada = key(&setup, "ada", "predict:read jobs:read jobs:write");
    let bob = key(&setup, "bob", "predict:read jobs:read jobs:write");
    let ops = metrics_key(&setup);
    let d = setup.start();

    let mut socket = connect(&d, "/api/v1/ws", &[("X-API-Key", &ada)]).unwrap();
    let mut bobs = connect(
        &d,
        "/api/v1/ws",
        &[("Authorization", &format!("Bearer {bob}"))],
    )
    .unwrap();
    let id = submit(&d, &ada, 60);
    let events = events_until_done(&mut socket, &id);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds[0], "job.queued", "{kinds:?}");
    assert_eq!(kinds[1], "job.started", "{kinds:?}");
    assert_eq!(*kinds.last().unwrap(), "job.succeeded", "{kinds:?}");
    assert!(
        kinds[2..kinds.len() - 1]
            .iter()
            .all(|k| *k == "job.progress"),
        "{kinds:?}"
    );
    let done: Vec<u64> = events
        .iter()
        .map(|e| e["job"]["done"].as_u64().unwrap())
        .collect();
    assert!(
        done.windows(2).all(|w| w[0] < w[1] || w[1] == 0),
        "{done:?}"
    );
    assert_eq!(*done.last().unwrap(), 60);
    // The status object is the one GET /api/v1/jobs/{id} shows.
    let shown = send(
        d.request("GET", &format!("/api/v1/jobs/{id}"))
            .set("X-API-Key", &ada),
    )
    .json();
    assert_eq!(events.last().unwrap()["job"], shown);

    // Bob saw nothing of Ada's job; subscribing to it closes his socket (1008).
    bobs.send(Message::text(
        json!({"type": "subscribe", "jobs": [id]}).to_string(),
    ))
    .unwrap();
    assert_eq!(close_code(&mut bobs), CloseCode::Policy);
    drop(bobs);

    // Narrowed to one job: another job's events are not sent; the answer
    // carries the job's current state.
    let other = submit(&d, &ada, 3);
    socket
        .send(Message::text(
            json!({"type": "subscribe", "jobs": [id]}).to_string(),
        ))
        .unwrap();
    loop {
        let event = next_event(&mut socket);
        if event["type"] == "subscribed" {
            assert_eq!(event["jobs"][0]["status"], "succeeded");
            break;
        }
    }
    let r = post(
        &d,
        &ada,
        &format!("/api/v1/jobs/{other}/cancel"),
        &json!({}),
    );
    assert!(r.status == 200 || r.status == 409, "{}", r.body);
    let third = submit(&d, &ada, 3);
    let finished = || {
        let job = send(
            d.request("GET", &format!("/api/v1/jobs/{third}"))
                .set("X-API-Key", &ada),
        )
        .json();
        job["status"] == "succeeded"
    };
    eventually(Duration::from_secs(10), finished);
    // A bad message is answered, the socket stays.
    socket.send(Message::text("{\"type\":\"dance\"}")).unwrap();
    let answer = next_event(&mut socket);
    assert_eq!(answer["type"], "error", "{answer}");
    assert!(
        answer["detail"].as_str().unwrap().contains("subscribe"),
        "{answer}"
    );
    // The server pings (websocket.ping_secs = 1); until then no frame came
    // about the other jobs, which have all finished.
    let started = Instant::now();
    loop {
        match socket.read().unwrap() {
            Message::Ping(_) => break,
            Message::Text(text) => {
                panic!("no events of other jobs after subscribe ({third}): {text}")
            }
            _ => {}
        }
        assert!(started.elapsed() < Duration::from_secs(5), "no ping");
    }
    eventually(Duration::from_secs(5), || {
        send(d.request("GET", "/metrics").set("X-API-Key", &ops))
            .body
            .contains("mlapi_websocket_connections 1\n")
    });
}

fn metrics_key(setup: &Setup) -> String {
    add_user(setup, "ops", "admin");
    key(setup, "ops", "metrics:read")
}

#[test]
fn refusals_come_before_the_upgrade_and_a_ticket_works_once() {
    let setup = Setup::new(&config(""));
    add_user(&setup, "ada", "user");
    let ada = key(&setup, "ada", "jobs:read");
    let predict_only = key(&setup, "ada", "predict:read");
    let jobs_key = key(&setup, "ada", "predict:read jobs:read jobs:write");
    let d = setup.start();

    assert_eq!(connect(&d, "/api/v1/ws", &[]).err(), Some(401));
    assert_eq!(
        connect(&d, "/api/v1/ws", &[("X-API-Key", "sk_live_nope")]).err(),
        Some(401)
    );
    assert_eq!(
        connect(&d, "/api/v1/ws", &[("X-API-Key", &predict_only)]).err(),
        Some(403)
    );
    assert_eq!(
        connect(
            &d,
            "/api/v1/ws",
            &[("X-API-Key", &ada), ("Origin", "https://evil.example")]
        )
        .err(),
        Some(403)
    );
    // A token in the query string is no credential.
    assert_eq!(
        connect(&d, &format!("/api/v1/ws?api_key={ada}"), &[]).err(),
        Some(401)
    );
    assert_eq!(
        connect(&d, "/api/v1/ws?ticket=wst_forged", &[]).err(),
        Some(401)
    );
    // A plain GET is told to upgrade.
    let plain = send(d.request("GET", "/api/v1/ws").set("X-API-Key", &ada));
    assert_eq!(plain.status, 426, "{}", plain.body);
    assert_eq!(plain.header("upgrade"), Some("websocket"));

    let r = post(&d, &ada, "/api/v1/ws/tickets", &json!({}));
    assert_eq!(r.status, 201, "{}", r.body);
    let ticket = r.json();
    assert_eq!(ticket["expires_in"], 30);
    let ticket = ticket["ticket"].as_str().unwrap().to_string();
    let path = format!("/api/v1/ws?ticket={ticket}");
    let mut socket = connect(&d, &path, &[("Origin", "https://app.example")]).unwrap();
    assert_eq!(
        connect(&d, &path, &[]).err(),
        Some(401),
        "a ticket works once"
    );
    // The ticket's socket is Ada's: it sees her jobs.
    let id = submit(&d, &jobs_key, 2);
    let events = events_until_done(&mut socket, &id);
    assert_eq!(events.last().unwrap()["type"], "job.succeeded");
}

#[test]
fn a_revoked_key_closes_its_socket_with_1008_within_a_second() {
    let setup = Setup::new(&config(""));
    add_user(&setup, "ada", "user");
    let ada = key(&setup, "ada", "jobs:read");
    let d = setup.start();
    let mut socket = connect(&d, "/api/v1/ws", &[("X-API-Key", &ada)]).unwrap();
    // And one opened with a ticket of that key: the ticket stands for the key.
    let ticket = post(&d, &ada, "/api/v1/ws/tickets", &json!({})).json()["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let mut by_ticket = connect(&d, &format!("/api/v1/ws?ticket={ticket}"), &[]).unwrap();
    // Counted from before the revoking command starts.
    let revoked = Instant::now();
    let out = setup.cli(&["key", "revoke", &ada[..16], "--yes"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(close_code(&mut socket), CloseCode::Policy);
    assert!(
        revoked.elapsed() < Duration::from_secs(1),
        "{:?}",
        revoked.elapsed()
    );
    assert_eq!(close_code(&mut by_ticket), CloseCode::Policy);
    assert!(
        revoked.elapsed() < Duration::from_secs(1),
        "{:?}",
        revoked.elapsed()
    );
}

#[test]
fn sigterm_closes_sockets_with_1001() {
    let setup = Setup::new(&config(""));
    add_user(&setup, "ada", "user");
    let ada = key(&setup, "ada", "jobs:read");
    let mut d = setup.start_process();
    let mut socket = connect(&d, "/api/v1/ws", &[("X-API-Key", &ada)]).unwrap();
    d.signal("TERM");
    assert_eq!(close_code(&mut socket), CloseCode::Away);
    assert!(d.wait_exit(Duration::from_secs(10)).success());
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_client_that_does_not_read_is_dropped_and_memory_stays_bounded() {
    let setup = Setup::new(&config(""));
    add_user(&setup, "ada", "user");
    let ada = key(&setup, "ada", "jobs:read jobs:write");
    let ops = metrics_key(&setup);
    let d = setup.start_process();
    let id = submit(&d, &ada, 2);
    let before = rss_kib(d.pid());
    // A small receive window, and never a read: every answer the server
    // queues stays queued.
    let socket = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.set_recv_buffer_size(4096).unwrap();
            s.connect(d.addr).await.unwrap().into_std().unwrap()
        });
    socket.set_nonblocking(false).unwrap();
    socket
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut socket = connect_on(socket, &d, "/api/v1/ws", &[("X-API-Key", &ada)]).unwrap();
    let subscribe = Message::text(json!({"type": "subscribe", "jobs": [id]}).to_string());
    let metrics = || send(d.request("GET", "/metrics").set("X-API-Key", &ops)).body;
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !metrics().contains("mlapi_websocket_dropped_total 1") {
        assert!(
            Instant::now() < deadline,
            "not dropped after {sent} unread answers"
        );
        for _ in 0..200 {
            if socket.send(subscribe.clone()).is_err() {
                break;
            }
            sent += 1;
        }
        assert!(
            sent < 200_000,
            "the server kept answering a client that never reads"
        );
    }
    eventually(Duration::from_secs(5), || {
        metrics().contains("mlapi_websocket_connections 0")
    });
    let after = rss_kib(d.pid());
    assert!(
        after < before + 20 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

#[test]
fn sockets_see_the_jobs_another_daemon_runs() {
    // Slow enough for the feed (read every 250 ms) to see it running.
    let setup = Setup::new(&config("[debug]\ninference_delay_ms = 50\n"));
    add_user(&setup, "ada", "user");
    let ada = key(&setup, "ada", "predict:read jobs:read jobs:write");
    // This daemon takes the job and the socket; only the other one runs jobs.
    let front = setup.start_with(|cmd| {
        cmd.env("MLAPI_JOBS_WORKERS", "0");
    });
    let mut socket = connect(&front, "/api/v1/ws", &[("X-API-Key", &ada)]).unwrap();
    let id = submit(&front, &ada, 60);
    let _runner = setup.start_process();
    let events = events_until_done(&mut socket, &id);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"job.queued"), "{kinds:?}");
    assert!(kinds.contains(&"job.started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"job.succeeded"), "{kinds:?}");
    assert_eq!(events.last().unwrap()["job"]["done"], 60);
}
