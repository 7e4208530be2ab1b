//! The WebSocket figures of `scripts/bench-ws`: what open sockets cost the
//! daemon in RSS, and how long a job event takes to reach every subscriber.
//!
//! usage: wsbench ADDR API_KEY DAEMON_PID IDLE SUBSCRIBERS ROUNDS
//!
//! 1. Reads the daemon's VmRSS, opens IDLE sockets that never send, waits
//!    two seconds, reads it again, closes them.
//! 2. Opens SUBSCRIBERS sockets, each read by its own thread. ROUNDS times:
//!    submits a one-instance job, then cancels it; each event's latency is
//!    counted at every subscriber from the moment the request that caused
//!    it was sent (so it includes that request's own handling).
//!
//! Prints one JSON object. The key needs jobs:read and jobs:write; the
//! daemon should run no job workers (`jobs.workers = 0`), so a job stays
//! queued until it is cancelled.

use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the daemon's pid");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn open(addr: &str, key: &str) -> WebSocket<TcpStream> {
    let mut request = format!("ws://{addr}/api/v1/ws")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-api-key", key.parse().unwrap());
    let stream = TcpStream::connect(addr).expect("connect");
    let (socket, _) = tungstenite::client::client(request, stream).expect("upgrade");
    socket
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 7 {
        eprintln!("usage: wsbench ADDR API_KEY DAEMON_PID IDLE SUBSCRIBERS ROUNDS");
        std::process::exit(2);
    }
    let (addr, key, pid) = (&args[1], &args[2], &args[3]);
    let number = |i: usize| -> usize { args[i].parse().expect("a whole number") };
    let (idle, subscribers, rounds) = (number(4), number(5), number(6));

    let before = rss_kib(pid);
    let sockets: Vec<_> = (0..idle).map(|_| open(addr, key)).collect();
    std::thread::sleep(Duration::from_secs(2));
    let with_idle = rss_kib(pid);
    drop(sockets);
    std::thread::sleep(Duration::from_secs(2));

    let (tx, rx) = mpsc::channel::<(String, String, Instant)>();
    for _ in 0..subscribers {
        let mut socket = open(addr, key);
        let tx = tx.clone();
        std::thread::spawn(move || loop {
            match socket.read() {
                Ok(Message::Text(text)) => {
                    let at = Instant::now();
                    let event: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                    let id = event["job"]["id"].as_str().unwrap_or("").to_string();
                    let kind = event["type"].as_str().unwrap_or("").to_string();
                    if tx.send((id, kind, at)).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        });
    }
    drop(tx);
    let agent = ureq::AgentBuilder::new().build();
    let url = |path: &str| format!("http://{addr}{path}");
    let mut latencies = Vec::with_capacity(rounds * subscribers * 2);
    let wait_for = |id: &str, kind: &str, sent: Instant, latencies: &mut Vec<f64>| {
        let mut got = 0;
        while got < subscribers {
            let (eid, ekind, at) = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("every subscriber gets the event");
            if eid == id && ekind == kind {
                latencies.push(at.duration_since(sent).as_secs_f64() * 1000.0);
                got += 1;
            }
        }
    };
    for _ in 0..rounds {
        let sent = Instant::now();
        let job: serde_json::Value = agent
            .post(&url("/api/v1/jobs"))
            .set("X-API-Key", key)
            .send_json(serde_json::json!({"instances": [[10.0, 16.0, 0.12, 0.2, 0.3]]}))
            .expect("submit")
            .into_json()
            .unwrap();
        let id = job["id"].as_str().unwrap().to_string();
        wait_for(&id, "job.queued", sent, &mut latencies);
        let sent = Instant::now();
        agent
            .post(&url(&format!("/api/v1/jobs/{id}/cancel")))
            .set("X-API-Key", key)
            .call()
            .expect("cancel");
        wait_for(&id, "job.cancelled", sent, &mut latencies);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "rss_before_kib": before,
            "rss_with_idle_kib": with_idle,
            "idle_sockets": idle,
            "kib_per_idle_socket": (with_idle.saturating_sub(before)) as f64 / idle.max(1) as f64,
            "subscribers": subscribers,
            "events_received": latencies.len(),
            "latency_ms": {
                "p50": percentile(&latencies, 0.50),
                "p99": percentile(&latencies, 0.99),
                "max": percentile(&latencies, 1.0),
            },
        })
    );
}
