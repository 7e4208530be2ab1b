//! The open-loop load generator behind `scripts/bench`'s p99 line: a fixed
//! request rate over keep-alive HTTP/1.1 connections, each request's latency
//! counted from the moment it was due (wrk2's model), so a server that falls
//! behind cannot hide its queue by slowing the generator down.
//!
//! Why not oha alone (BENCHMARKS.md has the numbers): oha releases requests
//! on tokio's 1 ms timer ticks, so they arrive in bursts of ~30 at 30k req/s;
//! it counts latency from the tick, not from the due time; and it keeps every
//! result in one growing `Vec`, whose doubling stalls its own threads (at
//! 2^16 results, 2.15 s into a run at 30.5k req/s, against the ceiling and
//! the daemon alike). Here each of the C connections has its own thread and
//! its own evenly spaced schedule (connection c sends its k-th request at
//! start + (k·C + c) / rate), sleeps until each due time, sends, and reads
//! the answer; latencies go into vectors sized for the whole run up front.
//! A request sent late because the previous answer was late still counts
//! from its due time, and so does the sleep's own lateness (tens of µs).
//!
//! usage: openloop ADDR RATE SECS WARMUP_SECS CONNECTIONS REQUEST_FILE
//!
//! REQUEST_FILE holds one complete HTTP/1.1 request, sent as is on every
//! call. Prints one JSON object: the percentiles (ms) of the requests due
//! after the warm-up, the warm-up's own p99, the answers' status counts, how
//! long the schedule took (longer than WARMUP_SECS + SECS: the answers fell
//! behind it) and the generator's own worst lateness waking for a due time.
//! Answers must carry `Content-Length` (no chunked bodies). Exits 1 with a
//! message on any connection error.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

struct Args {
    addr: SocketAddr,
    rate: f64,
    secs: f64,
    warmup: f64,
    connections: usize,
    request: Vec<u8>,
}

/// What one connection measured: latencies in ns, split at the warm-up.
#[derive(Default)]
struct Measured {
    warmup: Vec<u64>,
    steady: Vec<u64>,
    ok: u64,
    other: u64,
    /// The latest the generator woke for a due time (its own lateness).
    oversleep: Duration,
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("openloop: {e}");
        eprintln!("usage: openloop ADDR RATE SECS WARMUP_SECS CONNECTIONS REQUEST_FILE");
        std::process::exit(2);
    });
    if let Err(e) = run(&args).and_then(|(all, elapsed)| report(&args, &all, elapsed)) {
        eprintln!("openloop: {e}");
        std::process::exit(1);
    }
}

fn parse_args() -> Result<Args, String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [addr, rate, secs, warmup, connections, file] = a.as_slice() else {
        return Err(format!("expected 6 arguments, got {}", a.len()));
    };
    let number = |name: &str, s: &str| -> Result<f64, String> {
        match s.parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
            _ => Err(format!("{name} must be a non-negative number, not {s:?}")),
        }
    };
    let args = Args {
        addr: addr
            .parse()
            .map_err(|_| format!("ADDR must be IP:PORT, not {addr:?}"))?,
        rate: number("RATE", rate)?,
        secs: number("SECS", secs)?,
        warmup: number("WARMUP_SECS", warmup)?,
        connections: connections.parse().ok().filter(|&c| c > 0).ok_or_else(|| {
            format!("CONNECTIONS must be a positive integer, not {connections:?}")
        })?,
        request: std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}"))?,
    };
    if args.rate < 1.0 || args.secs <= 0.0 {
        return Err("RATE must be at least 1 and SECS above 0".into());
    }
    if !args.request.windows(4).any(|w| w == b"\r\n\r\n") {
        return Err(format!("{file} holds no complete HTTP request head"));
    }
    Ok(args)
}

/// Every connection's measurements, and the time from the schedule's start
/// to the last answer.
fn run(args: &Args) -> Result<(Vec<Measured>, Duration), String> {
    // Connect everything first; the schedule starts once all are open.
    let streams = (0..args.connections)
        .map(|_| {
            let s =
                TcpStream::connect(args.addr).map_err(|e| format!("connect {}: {e}", args.addr))?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            Ok(s)
        })
        .collect::<Result<Vec<_>, String>>()?;
    let schedule = Schedule {
        start: Instant::now() + Duration::from_millis(50),
        connections: args.connections,
        rate: args.rate,
        warmup: args.warmup,
        per_connection: ((args.warmup + args.secs) * args.rate / args.connections as f64) as u64,
    };
    let threads: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(c, stream)| {
            let request = args.request.clone();
            std::thread::spawn(move || connection(stream, &request, schedule, c))
        })
        .collect();
    let all = threads
        .into_iter()
        .map(|t| {
            t.join()
                .map_err(|_| "a connection thread panicked".to_string())?
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((all, schedule.start.elapsed()))
}

/// Every connection's timetable: the same start, evenly interleaved.
#[derive(Clone, Copy)]
struct Schedule {
    start: Instant,
    connections: usize,
    rate: f64,
    warmup: f64,
    per_connection: u64,
}

impl Schedule {
    /// When connection `c` sends its `k`-th request, in seconds from the start.
    fn due_secs(&self, c: usize, k: u64) -> f64 {
        (k as f64 * self.connections as f64 + c as f64) / self.rate
    }
}

fn connection(
    mut stream: TcpStream,
    request: &[u8],
    schedule: Schedule,
    c: usize,
) -> Result<Measured, String> {
    let warmup_count = (schedule.warmup * schedule.rate / schedule.connections as f64) as usize + 1;
    let mut m = Measured {
        warmup: Vec::with_capacity(warmup_count),
        steady: Vec::with_capacity(schedule.per_connection as usize),
        ..Measured::default()
    };
    let mut buf = vec![0u8; 64 * 1024];
    for k in 0..schedule.per_connection {
        let due_secs = schedule.due_secs(c, k);
        let due = schedule.start + Duration::from_secs_f64(due_secs);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
            // How late the generator itself woke: its own share of every
            // latency, reported so it can be told from the server's.
            m.oversleep = m.oversleep.max(due.elapsed());
        }
        let status = stream
            .write_all(request)
            .map_err(|e| format!("write: {e}"))
            .and_then(|()| read_response(&mut stream, &mut buf))
            .map_err(|e| format!("connection {c}, request {k}: {e}"))?;
        let latency = due.elapsed().as_nanos() as u64;
        if (200..300).contains(&status) {
            m.ok += 1;
        } else {
            m.other += 1;
        }
        if due_secs < schedule.warmup {
            m.warmup.push(latency);
        } else {
            m.steady.push(latency);
        }
    }
    Ok(m)
}

fn read_error(e: std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            "no answer within 10 s".into()
        }
        _ => format!("read: {e}"),
    }
}

/// Reads one whole answer; returns its status code.
fn read_response(stream: &mut TcpStream, buf: &mut [u8]) -> Result<u16, String> {
    let mut filled = 0;
    let head_end = loop {
        if filled == buf.len() {
            return Err("response head larger than 64 KiB".into());
        }
        let got = stream.read(&mut buf[filled..]).map_err(read_error)?;
        if got == 0 {
            return Err("the server closed the connection".into());
        }
        // Only the new bytes (and the 3 before them) can complete the head.
        let from = filled.saturating_sub(3);
        filled += got;
        if let Some(i) = buf[from..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break from + i + 4;
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "response head is not UTF-8")?;
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line: {status_line:?}"))?;
    let mut lengths = head.lines().filter_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim())
    });
    let length = match (lengths.next(), lengths.next()) {
        (Some(v), None) => v
            .parse::<usize>()
            .map_err(|_| format!("bad Content-Length: {v:?}"))?,
        (None, _) => return Err("response without Content-Length".into()),
        (Some(_), Some(_)) => return Err("more than one Content-Length".into()),
    };
    let end = head_end
        .checked_add(length)
        .ok_or("Content-Length out of range")?;
    if filled > end {
        return Err("more bytes than one response (the server pipelined?)".into());
    }
    let mut remaining = end - filled;
    while remaining > 0 {
        let want = remaining.min(buf.len());
        let got = stream.read(&mut buf[..want]).map_err(read_error)?;
        if got == 0 {
            return Err("the server closed the connection mid-body".into());
        }
        remaining -= got;
    }
    Ok(status)
}

fn report(args: &Args, all: &[Measured], elapsed: Duration) -> Result<(), String> {
    let mut steady: Vec<u64> = all.iter().flat_map(|m| m.steady.iter().copied()).collect();
    let mut warmup: Vec<u64> = all.iter().flat_map(|m| m.warmup.iter().copied()).collect();
    if steady.is_empty() || (args.warmup > 0.0 && warmup.is_empty()) {
        return Err(format!(
            "too few requests for percentiles: {} in the warm-up, {} after it (raise RATE or SECS)",
            warmup.len(),
            steady.len()
        ));
    }
    steady.sort_unstable();
    warmup.sort_unstable();
    // Nearest rank: the smallest latency at or above the fraction q.
    let pct = |xs: &[u64], q: f64| -> f64 {
        if xs.is_empty() {
            return 0.0;
        }
        let rank = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
        xs[rank - 1] as f64 / 1e6
    };
    let out = serde_json::json!({
        "rate": args.rate,
        "connections": args.connections,
        "warmup_secs": args.warmup,
        // Longer than warm-up + SECS: the answers fell behind the schedule.
        "elapsed_secs": elapsed.as_secs_f64(),
        "requests": steady.len() + warmup.len(),
        "steady_requests": steady.len(),
        "p50_ms": pct(&steady, 0.50),
        "p99_ms": pct(&steady, 0.99),
        "p999_ms": pct(&steady, 0.999),
        "max_ms": pct(&steady, 1.0),
        "warmup_p99_ms": pct(&warmup, 0.99),
        "max_oversleep_ms": all.iter().map(|m| m.oversleep).max().unwrap_or_default().as_secs_f64() * 1e3,
        "ok": all.iter().map(|m| m.ok).sum::<u64>(),
        "other_status": all.iter().map(|m| m.other).sum::<u64>(),
    });
    println!("{out}");
    Ok(())
}
