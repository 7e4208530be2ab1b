//! The operator's window into running daemons: each daemon listens on a unix
//! socket next to its database (`mlapi-<pid>.sock`, mode 0600), and CLI
//! commands that need in-memory state no table holds — a user's in-process
//! rate-limit buckets, cache counters — ask every daemon found there.
//!
//! One JSON request line, one JSON answer line, then the connection closes.
//! Read-only by design: anything that changes state goes through SQLite (or
//! Redis) so it survives restarts and reaches every daemon the same way.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::app::App;
use crate::serving::ratelimit::{Source, WindowState};
use crate::store;

/// Longest a CLI waits for one daemon.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);
/// Requests are tiny; anything longer is not ours.
const MAX_REQUEST: usize = 4096;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// A subject's buckets for the given tier, without counting a request.
    RatelimitShow { subject: String, tier: String },
    /// This daemon's prediction-cache counters.
    CacheStats,
    /// Every upstream endpoint's health, breaker and counters.
    UpstreamStatus,
}

/// One window as `ratelimit show` prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowUsage {
    pub policy: String,
    pub limit: u32,
    pub window_secs: u64,
    pub burst: u32,
    pub used: u32,
    pub remaining: u32,
    pub full_in_secs: u64,
    /// A shadow window: counted, never refusing.
    #[serde(default)]
    pub shadow: bool,
}

impl WindowUsage {
    pub fn from_state(s: &WindowState) -> Self {
        WindowUsage {
            policy: s.window.name.to_string(),
            limit: s.window.limit,
            window_secs: s.window.period.as_secs(),
            burst: s.window.burst,
            used: s.window.burst.saturating_sub(s.remaining),
            remaining: s.remaining,
            full_in_secs: s.reset_after.as_secs_f64().ceil() as u64,
            shadow: s.window.shadow,
        }
    }
}

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(format!("mlapi-{}.sock", std::process::id()))
}

/// Serves the socket until the daemon exits; the caller removes the file.
pub async fn listen(app: Arc<App>, path: PathBuf) -> std::io::Result<()> {
    // A leftover from a crashed daemon with our pid (pids are reused).
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: wait and keep listening.
                tracing::warn!(error = %e, "control socket: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST as u64));
            let answer = match tokio::time::timeout(ASK_TIMEOUT, reader.read_line(&mut line)).await
            {
                Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
                    Ok(request) => answer(&app, request).await,
                    Err(e) => json!({"error": format!("bad request: {e}")}),
                },
                _ => return,
            };
            let mut text = answer.to_string();
            text.push('\n');
            let _ = write.write_all(text.as_bytes()).await;
        });
    }
}

async fn answer(app: &App, request: Request) -> Value {
    match request {
        Request::RatelimitShow { subject, tier } => {
            let windows = app.limiter.policies.all_windows(&tier);
            let (source, states) = app.limiter.peek(&subject, &windows).await;
            json!({
                "source": match source { Source::Redis => "redis", _ => "daemon" },
                "windows": states.iter().map(WindowUsage::from_state).collect::<Vec<_>>(),
            })
        }
        Request::CacheStats => {
            let mut stats = json!(app.cache.stats().await);
            // Model runs since start, to set against hits and misses.
            stats["inferences"] = json!(app
                .models()
                .inferences
                .load(std::sync::atomic::Ordering::Relaxed));
            stats
        }
        Request::UpstreamStatus => json!({"endpoints": app.models().upstream_status()}),
    }
}

/// Asks every daemon with a socket in `state_dir`; daemons that do not
/// answer (stale sockets of crashed daemons) are skipped. The round trips
/// block, so they run on the blocking pool.
pub async fn ask_all(state_dir: PathBuf, request: Request) -> Vec<(u32, Value)> {
    store::blocking(move || ask_all_blocking(&state_dir, &request)).await
}

fn ask_all_blocking(state_dir: &Path, request: &Request) -> Vec<(u32, Value)> {
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return Vec::new();
    };
    let mut answers = Vec::new();
    let line = match serde_json::to_string(request) {
        Ok(line) => line + "\n",
        Err(_) => return answers,
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("mlapi-")
            .and_then(|n| n.strip_suffix(".sock"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(answer) = ask(&entry.path(), &line) {
            answers.push((pid, answer));
        }
    }
    answers.sort_by_key(|(pid, _)| *pid);
    answers
}

fn ask(path: &Path, line: &str) -> Option<Value> {
    let mut stream = std::os::unix::net::UnixStream::connect(path).ok()?;
    stream.set_read_timeout(Some(ASK_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(ASK_TIMEOUT)).ok()?;
    stream.write_all(line.as_bytes()).ok()?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).ok()?;
    serde_json::from_str(&answer).ok()
}
