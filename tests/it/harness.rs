//! The test harness every integration test uses: a daemon on a free
//! loopback port with its own temp database and config — in-process through
//! `mlapi::daemon::run` ([`Setup::start`]), or the real `mlapi serve` binary
//! for signals, logs and lifecycle ([`Setup::start_process`]) —, the real
//! CLI against the same files, and a throwaway `redis-server` on a unix
//! socket. Nothing here touches a shared Redis or a fixed port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mlapi::app::{App, Purpose};
use mlapi::config::{self, Config, Overrides};

pub const BIN: &str = env!("CARGO_BIN_EXE_mlapi");

/// A command for the real binary with no `MLAPI_*` leaking in from the
/// environment the tests run in.
pub fn mlapi() -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("MLAPI_")
            || ["NOTIFY_SOCKET", "RUST_LOG", "STATE_DIRECTORY"].contains(&key.as_str())
        {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A temp directory with `mlapi.toml` pointing at `mlapi.db` inside it.
pub struct Setup {
    pub dir: tempfile::TempDir,
    /// In-process daemons running on this setup: they share the test
    /// process's pid, and so the control socket's name in the state dir.
    in_process: Arc<Mutex<u32>>,
}

impl Setup {
    /// `extra` is appended to a config that binds an ephemeral port and
    /// enables the debug routes; it may add keys to those sections' tables
    /// only by redefining whole sections, so pass full sections.
    pub fn new(extra: &str) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let setup = Setup {
            dir,
            in_process: Arc::default(),
        };
        setup.write_config(extra);
        setup
    }

    /// Writes the config: `extra`, with `database.path` pointing into the
    /// temp dir (added to `extra`'s own `[database]` section if it has one).
    pub fn write_config(&self, extra: &str) {
        let path_line = format!("path = \"{}\"\n", self.db().display());
        let text = if extra.contains("[database]\n") {
            extra.replacen("[database]\n", &format!("[database]\n{path_line}"), 1)
        } else {
            format!("[database]\n{path_line}\n{extra}\n")
        };
        std::fs::write(self.config(), text).expect("write config");
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("mlapi.toml")
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("mlapi.db")
    }

    /// Runs the CLI against this setup's config and waits for it.
    pub fn cli(&self, args: &[&str]) -> Output {
        mlapi()
            .arg("--config")
            .arg(self.config())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run mlapi")
    }

    /// The config the daemon runs on, typed: loaded from this setup's file
    /// (the one the CLI reads) with no `MLAPI_*` variables, bound to an
    /// ephemeral port.
    pub fn typed_config(&self) -> Config {
        let overrides = Overrides {
            bind: Some("127.0.0.1:0".into()),
            ..Overrides::default()
        };
        config::load(Some(&self.config()), std::iter::empty(), &overrides)
            .unwrap_or_else(|e| panic!("test config refused: {e}"))
            .config
    }

    /// Starts a daemon in this process, through `mlapi::daemon::run` on its
    /// own runtime, and waits until `/ready` is 200.
    pub fn start(&self) -> Daemon {
        self.start_configured(|_| {})
    }

    /// [`Setup::start`] with changes to the typed config first.
    pub fn start_configured(&self, change: impl FnOnce(&mut Config)) -> Daemon {
        let already = {
            let mut running = self.in_process.lock().unwrap();
            *running += 1;
            *running - 1
        };
        if already > 0 {
            *self.in_process.lock().unwrap() -= 1;
            panic!("a second in-process daemon on one setup would share its control socket; use start_process()");
        }
        let mut config = self.typed_config();
        change(&mut config);
        let loaded = config::Loaded {
            config,
            file: Some(self.config()),
        };
        let app = App::open(loaded, Overrides::default(), Purpose::Serve)
            .unwrap_or_else(|e| panic!("cannot open the app: {e}"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let shutdown = async {
                    let _ = stopped.await;
                };
                mlapi::daemon::run(app, listener, shutdown)
                    .await
                    .expect("daemon::run");
            });
        });
        let daemon = Daemon {
            addr,
            kind: Kind::InProcess {
                stop: Some(stop),
                thread: Some(thread),
                running: Arc::clone(&self.in_process),
            },
        };
        daemon.wait_ready();
        daemon
    }

    /// Starts the real `mlapi serve` binary (for signals, logs, lifecycle).
    pub fn start_process(&self) -> Daemon {
        self.start_with(|_| {})
    }

    /// Starts `mlapi serve` on 127.0.0.1:0 and waits until `/ready` is 200.
    pub fn start_with(&self, customize: impl FnOnce(&mut Command)) -> Daemon {
        let mut cmd = mlapi();
        cmd.arg("--config")
            .arg(self.config())
            .args(["serve", "--bind", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        customize(&mut cmd);
        let mut child = cmd.spawn().expect("spawn mlapi serve");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&log);
        // Drain stderr for the daemon's whole life so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Works for text and JSON log lines alike.
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_hexdigit() || ".:[]".contains(*c))
                        .collect();
                    let _ = tx.send(addr);
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr.parse().expect("listening address"),
            Err(_) => {
                let _ = child.kill();
                panic!("daemon did not start; log:\n{}", log.lock().unwrap());
            }
        };
        let daemon = Daemon {
            addr,
            kind: Kind::Process { child, log },
        };
        daemon.wait_ready();
        daemon
    }
}

pub struct Daemon {
    pub addr: SocketAddr,
    kind: Kind,
}

enum Kind {
    InProcess {
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<JoinHandle<()>>,
        running: Arc<Mutex<u32>>,
    },
    Process {
        child: Child,
        log: Arc<Mutex<String>>,
    },
}

impl Daemon {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.get("/ready").status == 200 {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("daemon never became ready; log:\n{}", self.logs());
    }

    pub fn get(&self, path: &str) -> Resp {
        send(self.request("GET", path))
    }

    pub fn request(&self, method: &str, path: &str) -> ureq::Request {
        agent().request(method, &self.url(path))
    }

    /// The spawned daemon's process.
    pub fn child(&mut self) -> &mut Child {
        match &mut self.kind {
            Kind::Process { child, .. } => child,
            Kind::InProcess { .. } => {
                panic!("an in-process daemon has no child; use start_process()")
            }
        }
    }

    /// The pid the daemon's control socket is named after.
    pub fn pid(&self) -> u32 {
        match &self.kind {
            Kind::Process { child, .. } => child.id(),
            Kind::InProcess { .. } => std::process::id(),
        }
    }

    /// What a spawned daemon wrote to stderr so far.
    pub fn logs(&self) -> String {
        match &self.kind {
            Kind::Process { log, .. } => log.lock().unwrap().clone(),
            Kind::InProcess { .. } => {
                panic!("an in-process daemon's log is not captured; use start_process()")
            }
        }
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid_of_child().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name} failed");
    }

    /// Waits for the process to exit; panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child().try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "daemon did not exit within {timeout:?}; log:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends raw bytes on a fresh connection and returns everything read back.
    pub fn raw(&self, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // The server may answer and close before reading everything we send.
        let _ = stream.write_all(request);
        let mut buf = Vec::new();
        let _ = stream.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Daemon {
    fn pid_of_child(&self) -> u32 {
        match &self.kind {
            Kind::Process { child, .. } => child.id(),
            Kind::InProcess { .. } => {
                panic!("signals are for spawned daemons; use start_process()")
            }
        }
    }

    /// Stops an in-process daemon as SIGTERM would, and waits for `run` to
    /// return (drain, background tasks joined, usage flushed).
    pub fn stop(&mut self) {
        if let Kind::InProcess {
            stop,
            thread,
            running,
        } = &mut self.kind
        {
            if let Some(stop) = stop.take() {
                let _ = stop.send(());
            }
            if let Some(thread) = thread.take() {
                let finished = thread.join();
                *running.lock().unwrap() -= 1;
                if let Err(panic) = finished {
                    if !std::thread::panicking() {
                        std::panic::resume_unwind(panic);
                    }
                }
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        match &mut self.kind {
            Kind::Process { child, .. } => {
                if let Ok(None) = child.try_wait() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            Kind::InProcess { .. } => self.stop(),
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .redirects(0)
        .build()
}

/// A response of any status, with its body read.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// Asserts an RFC 9457 problem with `status`, and returns its body.
    pub fn problem(&self, status: u16) -> serde_json::Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json; charset=utf-8")
        );
        let body = self.json();
        assert_eq!(body["status"], status);
        for member in ["type", "title", "detail"] {
            assert!(body[member].is_string(), "problem lacks {member}: {body}");
        }
        body
    }
}

fn from_ureq(response: ureq::Response) -> Resp {
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .flat_map(|name| {
            response
                .all(&name)
                .into_iter()
                .map(|v| (name.clone(), v.to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    let body = response.into_string().unwrap_or_default();
    Resp {
        status,
        headers,
        body,
    }
}

/// Sends a request built from `agent()`; 4xx/5xx are answers, not errors.
pub fn send(request: ureq::Request) -> Resp {
    match request.call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => from_ureq(r),
        Err(e) => panic!("request failed: {e}"),
    }
}

/// `POST` of a JSON body with an API key.
pub fn post_with_key(d: &Daemon, key: &str, path: &str, body: &serde_json::Value) -> Resp {
    send_body(
        d.request("POST", path)
            .set("X-API-Key", key)
            .set("Content-Type", "application/json"),
        &body.to_string(),
    )
}

pub fn send_body(request: ureq::Request, body: &str) -> Resp {
    match request.send_string(body) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => from_ureq(r),
        Err(e) => panic!("request failed: {e}"),
    }
}

/// A throwaway `redis-server` on a unix socket in its own temp dir, with no
/// persistence. Killed on drop.
pub struct Redis {
    child: Child,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("redis.sock");
        Redis {
            child: Redis::spawn(dir.path(), &socket),
            socket,
            dir,
        }
    }

    fn spawn(dir: &Path, socket: &Path) -> Child {
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(socket)
            .args(["--unixsocketperm", "700"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}); the test command (scripts/test) installs it"
                )
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not create its socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A fresh, empty server on the same socket (as after a Redis restart).
    pub fn restart(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.socket);
        self.child = Redis::spawn(self.dir.path(), &self.socket);
    }

    /// Sends a signal (`STOP` stalls it with connections open, `CONT` resumes).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Runs one command with `redis-cli` and returns its raw output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("redis-cli (installed with redis-server)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads one integer from the database file with a fresh connection.
pub fn query_i64(db: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("open db");
    conn.query_row(sql, [], |r| r.get(0)).expect("query")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}
