//! Upstream model servers: a model whose `[[models]]` entry lists `upstream`
//! URLs runs on Open Inference Protocol v2 REST servers (KServe, Triton,
//! MLServer, another mlapi). This module is the client side of that: one
//! pooled HTTP/1.1 client, endpoint choice (`Balance`), active health checks,
//! a circuit breaker per endpoint, one retry on another endpoint inside the
//! model's `timeout_ms`, and the per-endpoint counters that `/metrics`,
//! `/ready` and `mlapi upstream status` show.
//!
//! Endpoint state lives in `Endpoint`s shared by `Arc`: a SIGHUP reload keeps
//! the endpoints whose URL stays (with their breaker and counters) and drops
//! the others once the requests using them end.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::config::{Balance, Datatype, UpstreamConfig};
use crate::core::metrics::{Exposition, Histogram};
use crate::serving::models::InferenceError;

/// The one HTTP client every upstream model shares (connections are pooled
/// per endpoint).
pub type Client = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

/// Largest upstream answer read; a bigger one is an invalid response.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;
/// Longest upstream error text passed on to a client.
const MAX_ERROR_TEXT: usize = 200;

pub fn client() -> Client {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(true);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .timer(TokioTimer::new())
        .build(connector)
}

/// Milliseconds on a monotonic clock shared by every breaker.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// How one request to an endpoint ended, as `mlapi_upstream_requests_total`
/// labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// A 4xx: the endpoint works and refused this input.
    ClientError,
    ServerError,
    ConnectError,
    Timeout,
    /// The connection broke mid-answer, or the answer is not what was asked.
    InvalidResponse,
}

impl Outcome {
    const ALL: [Outcome; 6] = [
        Outcome::Ok,
        Outcome::ClientError,
        Outcome::ServerError,
        Outcome::ConnectError,
        Outcome::Timeout,
        Outcome::InvalidResponse,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ClientError => "client_error",
            Outcome::ServerError => "server_error",
            Outcome::ConnectError => "connect_error",
            Outcome::Timeout => "timeout",
            Outcome::InvalidResponse => "invalid_response",
        }
    }

    /// What the breaker counts against an endpoint.
    fn is_failure(self) -> bool {
        !matches!(self, Outcome::Ok | Outcome::ClientError)
    }
}

/// A breaker's state, as `mlapi_upstream_breaker_state` numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl BreakerState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
}

/// Whether a request passes a breaker as ordinary traffic or as the one
/// half-open probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Normal,
    Probe,
}

/// Closed → (`failures` consecutive failures) → open → (`open_for`) → one
/// probe (half-open) → closed on success, open again on failure. Atomics
/// only: the request path takes no lock.
#[derive(Debug, Default)]
struct Breaker {
    state: AtomicU8,
    failures: AtomicU32,
    opened_at_ms: AtomicU64,
    /// Times it opened, and probes let through, since the daemon started.
    opened: AtomicU64,
    probes: AtomicU64,
}

impl Breaker {
    fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Whether a request could pass now (without claiming the probe).
    fn could_pass(&self, now: u64, open_for: u64) -> bool {
        match self.state() {
            BreakerState::Closed => true,
            BreakerState::Open => now >= self.opened_at_ms.load(Ordering::Acquire) + open_for,
            BreakerState::HalfOpen => false,
        }
    }

    fn admit(&self, now: u64, open_for: u64) -> Option<Pass> {
        match self.state() {
            BreakerState::Closed => Some(Pass::Normal),
            BreakerState::Open if self.could_pass(now, open_for) => self
                .state
                .compare_exchange(
                    BreakerState::Open as u8,
                    BreakerState::HalfOpen as u8,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .ok()
                .map(|_| {
                    self.probes.fetch_add(1, Ordering::Relaxed);
                    Pass::Probe
                }),
            _ => None,
        }
    }

    fn transition(&self, from: BreakerState, to: BreakerState) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Only the probe closes an open breaker: a slow request admitted
    /// before it opened proves nothing about the endpoint now.
    fn succeeded(&self, pass: Pass) {
        match pass {
            Pass::Probe => {
                self.failures.store(0, Ordering::Release);
                self.transition(BreakerState::HalfOpen, BreakerState::Closed);
            }
            Pass::Normal if self.state() == BreakerState::Closed => {
                self.failures.store(0, Ordering::Release);
            }
            Pass::Normal => {}
        }
    }

    fn failed(&self, pass: Pass, threshold: u32) {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        let (from, open) = match pass {
            Pass::Probe => (BreakerState::HalfOpen, true),
            Pass::Normal => (BreakerState::Closed, failures >= threshold),
        };
        // The time first, so no reader pairs Open with an older time.
        if open && self.state() == from {
            self.opened_at_ms.store(now_ms(), Ordering::Release);
            if self.transition(from, BreakerState::Open) {
                self.opened.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A probe claimed but never sent (no time left, the caller went
    /// away): open again as it was, so the next request may probe.
    fn return_probe(&self) {
        self.probes.fetch_sub(1, Ordering::Relaxed);
        self.transition(BreakerState::HalfOpen, BreakerState::Open);
    }

    /// Milliseconds until it lets a probe through (0 when it would now).
    fn wait_ms(&self, now: u64, open_for: u64) -> u64 {
        match self.state() {
            BreakerState::Open => {
                (self.opened_at_ms.load(Ordering::Acquire) + open_for).saturating_sub(now)
            }
            _ => 0,
        }
    }
}

/// One upstream server of one model.
#[derive(Debug)]
pub struct Endpoint {
    /// As configured, without a trailing `/`; the label in metrics and status.
    pub url: String,
    infer: Uri,
    ready: Uri,
    /// The last health check's verdict; new endpoints start healthy so a
    /// daemon serves before its first check ends.
    healthy: AtomicBool,
    /// Why the last health check failed.
    health_error: Mutex<Option<String>>,
    breaker: Breaker,
    in_flight: AtomicU32,
    outcomes: [AtomicU64; Outcome::ALL.len()],
    latency: Histogram,
}

impl Endpoint {
    fn new(url: &str, model: &str) -> Result<Endpoint, String> {
        let parse = |path: String| {
            path.parse::<Uri>()
                .map_err(|e| format!("upstream {url:?}: {e}"))
        };
        Ok(Endpoint {
            url: url.to_string(),
            infer: parse(format!("{url}/v2/models/{model}/infer"))?,
            ready: parse(format!("{url}/v2/health/ready"))?,
            healthy: AtomicBool::new(true),
            health_error: Mutex::new(None),
            breaker: Breaker::default(),
            in_flight: AtomicU32::new(0),
            outcomes: Default::default(),
            latency: Histogram::default(),
        })
    }

    fn count(&self, outcome: Outcome) -> &AtomicU64 {
        &self.outcomes[Outcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .expect("every outcome has a slot")]
    }
}

/// An endpoint chosen for one attempt, holding its place in the breaker
/// and its in-flight count. Dropped before the attempt settled (no time
/// left, the caller went away), a probe goes back unused, so half-open
/// never sticks.
struct Admission {
    endpoint: Arc<Endpoint>,
    pass: Pass,
    /// Endpoints usable when it was chosen, this one included.
    usable: usize,
    settled: bool,
}

impl Admission {
    fn new(endpoint: Arc<Endpoint>, pass: Pass, usable: usize) -> Admission {
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        Admission {
            endpoint,
            pass,
            usable,
            settled: false,
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
        if !self.settled && self.pass == Pass::Probe {
            self.endpoint.breaker.return_probe();
        }
    }
}

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// 4xx: not the endpoint's fault, and not retried.
    #[error("refused the request ({0}): {1}")]
    Rejected(u16, String),
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("no answer in time")]
    Timeout,
    #[error("failed ({0}): {1}")]
    Server(u16, String),
    #[error("{0}")]
    Invalid(String),
}

impl Failure {
    fn outcome(&self) -> Outcome {
        match self {
            Failure::Rejected(..) => Outcome::ClientError,
            Failure::Connect(_) => Outcome::ConnectError,
            Failure::Timeout => Outcome::Timeout,
            Failure::Server(..) => Outcome::ServerError,
            Failure::Invalid(_) => Outcome::InvalidResponse,
        }
    }
}

/// A model's upstream servers and how requests reach them.
pub struct Upstream {
    pub config: UpstreamConfig,
    headers: HeaderMap,
    endpoints: Vec<Arc<Endpoint>>,
    next: AtomicUsize,
    client: Client,
    /// When the next health check is due (ms on the breakers' clock).
    next_check_ms: AtomicU64,
}

impl std::fmt::Debug for Upstream {
    // Never the headers: they carry credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("model", &self.config.model)
            .field(
                "endpoints",
                &self.endpoints.iter().map(|e| &e.url).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// One endpoint's state, for `mlapi upstream status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointStatus {
    pub model: String,
    pub endpoint: String,
    pub healthy: bool,
    pub health_error: Option<String>,
    pub breaker: BreakerState,
    pub in_flight: u32,
    pub requests: u64,
    pub failures: u64,
    /// Times the breaker opened, and half-open probes let through.
    pub opened: u64,
    pub probes: u64,
    /// Upper bounds of the latency buckets holding the median and the 99th
    /// percentile, in ms; `None` before the first request.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Upstream {
    /// Builds the upstream of one model; `previous` is the upstream it
    /// replaces on reload, whose endpoints with the same URL carry over.
    pub fn new(
        config: UpstreamConfig,
        client: Client,
        previous: Option<&Upstream>,
    ) -> Result<Upstream, String> {
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("upstream_headers: {name:?} is not a header name"))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| format!("upstream_headers: the value of {name:?} is not valid"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let mut endpoints = Vec::with_capacity(config.endpoints.len());
        for url in &config.endpoints {
            let kept = previous
                .filter(|p| p.config.model == config.model)
                .and_then(|p| p.endpoints.iter().find(|e| e.url == *url));
            endpoints.push(match kept {
                Some(e) => Arc::clone(e),
                None => Arc::new(Endpoint::new(url, &config.model)?),
            });
        }
        Ok(Upstream {
            config,
            headers,
            endpoints,
            next: AtomicUsize::new(0),
            client,
            next_check_ms: AtomicU64::new(0),
        })
    }

    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    fn open_for_ms(&self) -> u64 {
        self.config.breaker_open_secs * 1000
    }

    fn usable(&self, e: &Endpoint, now: u64) -> bool {
        e.healthy.load(Ordering::Acquire) && e.breaker.could_pass(now, self.open_for_ms())
    }

    /// Endpoints that could take a request now, and the total.
    pub fn usable_count(&self) -> (usize, usize) {
        let now = now_ms();
        let usable = self
            .endpoints
            .iter()
            .filter(|e| self.usable(e, now))
            .count();
        (usable, self.endpoints.len())
    }

    /// Picks an endpoint other than `exclude` and passes its breaker.
    fn pick(&self, exclude: Option<&Arc<Endpoint>>) -> Option<Admission> {
        let now = now_ms();
        let open_for = self.open_for_ms();
        let candidates: Vec<&Arc<Endpoint>> = self
            .endpoints
            .iter()
            .filter(|e| exclude.is_none_or(|x| !Arc::ptr_eq(x, e)) && self.usable(e, now))
            .collect();
        let n = candidates.len();
        if n == 0 {
            return None;
        }
        let start = match self.config.balance {
            Balance::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % n,
            Balance::Random => rand::thread_rng().gen_range(0..n),
            Balance::LeastConnections => {
                // Ties go round-robin, so equal endpoints share the load.
                let offset = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|i| (i + offset) % n)
                    .min_by_key(|&i| candidates[i].in_flight.load(Ordering::Relaxed))
                    .expect("not empty")
            }
        };
        // Another request may have taken the probe since: try the next one.
        (0..n).map(|i| candidates[(start + i) % n]).find_map(|e| {
            e.breaker
                .admit(now, open_for)
                .map(|pass| Admission::new(Arc::clone(e), pass, n))
        })
    }

    /// Seconds a client should wait before the next endpoint could be usable.
    fn retry_after_secs(&self) -> u64 {
        let now = now_ms();
        let open_for = self.open_for_ms();
        let soonest = self
            .endpoints
            .iter()
            .map(|e| {
                if e.healthy.load(Ordering::Acquire) {
                    e.breaker.wait_ms(now, open_for)
                } else {
                    self.config.health_interval_secs * 1000
                }
            })
            .min()
            .unwrap_or(1000);
        soonest.div_ceil(1000).max(1)
    }

    /// Class probabilities for each row, from the upstream: one attempt,
    /// and one retry on another endpoint within `timeout_ms`.
    pub async fn probabilities(
        &self,
        rows: &[Vec<f32>],
        labels: usize,
    ) -> Result<Vec<Vec<f64>>, InferenceError> {
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let deadline = Instant::now() + timeout;
        let body = self.request_body(rows);
        let mut tried: Option<Arc<Endpoint>> = None;
        let mut failures: Vec<Failure> = Vec::new();
        for attempt in 0..2 {
            let remaining = deadline.saturating_duration_since(Instant::now());
            // Too little time left to be worth a request (or a probe).
            if remaining < Duration::from_millis(1) {
                break;
            }
            let Some(admission) = self.pick(tried.as_ref()) else {
                break;
            };
            // The first try leaves half the time for a retry elsewhere: a
            // hung server costs half the timeout, not an error.
            let budget = if attempt == 0 && admission.usable > 1 {
                remaining / 2
            } else {
                remaining
            };
            let endpoint = Arc::clone(&admission.endpoint);
            match self
                .attempt(admission, body.clone(), budget, rows.len(), labels)
                .await
            {
                Ok(probs) => return Ok(probs),
                Err(Failure::Rejected(status, message)) => {
                    return Err(InferenceError::Rejected(format!(
                        "the model server refused the request ({status}): {message}"
                    )))
                }
                Err(failure) => {
                    tracing::warn!(
                        model = %self.config.model,
                        endpoint = %endpoint.url,
                        failure = %failure,
                        "upstream attempt failed"
                    );
                    failures.push(failure);
                    tried = Some(endpoint);
                }
            }
        }
        Err(self.give_up(&failures, Instant::now() >= deadline))
    }

    /// The answer once no attempt succeeded: a server that failed → 502;
    /// out of time → 504; otherwise (none usable, none accepting a
    /// connection) → 503 with when to retry.
    fn give_up(&self, failures: &[Failure], out_of_time: bool) -> InferenceError {
        let served = failures
            .iter()
            .rev()
            .find(|f| matches!(f, Failure::Server(..) | Failure::Invalid(_)));
        match served {
            Some(Failure::Server(status, message)) => {
                InferenceError::BadGateway(format!("the model server failed ({status}): {message}"))
            }
            Some(other) => InferenceError::BadGateway(format!(
                "the model server's answer is unusable: {other}"
            )),
            None if out_of_time => InferenceError::Timeout(self.config.timeout_ms),
            None => InferenceError::Unavailable {
                detail: if failures.is_empty() {
                    format!(
                        "no model server for {:?} is usable now (unready or circuit open)",
                        self.config.model
                    )
                } else {
                    format!(
                        "no model server for {:?} answered (connection refused or no answer in time)",
                        self.config.model
                    )
                },
                retry_after_secs: self.retry_after_secs(),
            },
        }
    }

    async fn attempt(
        &self,
        mut admission: Admission,
        body: Bytes,
        budget: Duration,
        rows: usize,
        labels: usize,
    ) -> Result<Vec<Vec<f64>>, Failure> {
        let (endpoint, pass) = (Arc::clone(&admission.endpoint), admission.pass);
        let started = Instant::now();
        let result = match tokio::time::timeout(budget, self.exchange(&endpoint.infer, body)).await
        {
            Ok(Ok((status, bytes))) => self.read_answer(status, &bytes, rows, labels),
            Ok(Err(failure)) => Err(failure),
            Err(_) => Err(Failure::Timeout),
        };
        endpoint.latency.observe(started.elapsed());
        let outcome = result
            .as_ref()
            .map_or_else(Failure::outcome, |_| Outcome::Ok);
        endpoint.count(outcome).fetch_add(1, Ordering::Relaxed);
        if outcome.is_failure() {
            endpoint.breaker.failed(pass, self.config.breaker_failures);
        } else {
            endpoint.breaker.succeeded(pass);
        }
        admission.settled = true;
        result
    }

    /// One request and its whole answer.
    async fn exchange(&self, uri: &Uri, body: Bytes) -> Result<(u16, Bytes), Failure> {
        let mut request = Request::post(uri.clone())
            .body(Full::new(body))
            .map_err(|e| Failure::Invalid(e.to_string()))?;
        *request.headers_mut() = self.headers.clone();
        let response = self.client.request(request).await.map_err(|e| {
            if e.is_connect() {
                Failure::Connect(e.to_string())
            } else {
                Failure::Invalid(format!("connection failed: {e}"))
            }
        })?;
        let status = response.status().as_u16();
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| Failure::Invalid(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok((status, bytes))
    }

    fn read_answer(
        &self,
        status: u16,
        bytes: &[u8],
        rows: usize,
        labels: usize,
    ) -> Result<Vec<Vec<f64>>, Failure> {
        if !(200..300).contains(&status) {
            let message = error_text(bytes);
            return Err(if (400..500).contains(&status) {
                Failure::Rejected(status, message)
            } else {
                Failure::Server(status, message)
            });
        }
        let answer: InferAnswer = serde_json::from_slice(bytes)
            .map_err(|e| Failure::Invalid(format!("not an inference response: {e}")))?;
        let output = answer
            .outputs
            .into_iter()
            .find(|o| o.name == self.config.output)
            .ok_or_else(|| Failure::Invalid(format!("no output named {:?}", self.config.output)))?;
        let narrow = match output.datatype.as_str() {
            // FP32 values widened as f32, so they equal a local model's.
            "FP32" => true,
            "FP64" => false,
            other => {
                return Err(Failure::Invalid(format!(
                    "output {:?} is {other}, not FP32 or FP64",
                    self.config.output
                )))
            }
        };
        if !output.shape.is_empty() && output.shape != [rows as u64, labels as u64] {
            return Err(Failure::Invalid(format!(
                "output shape {:?}, expected [{rows}, {labels}]",
                output.shape
            )));
        }
        let mut flat = Vec::with_capacity(rows * labels);
        flatten(&output.data, &mut flat)
            .map_err(|_| Failure::Invalid("output data holds a non-number".into()))?;
        if flat.len() != rows * labels {
            return Err(Failure::Invalid(format!(
                "{} output values, expected {}",
                flat.len(),
                rows * labels
            )));
        }
        Ok(flat
            .chunks(labels)
            .map(|row| {
                row.iter()
                    .map(|&v| if narrow { f64::from(v as f32) } else { v })
                    .collect()
            })
            .collect())
    }

    fn request_body(&self, rows: &[Vec<f32>]) -> Bytes {
        let width = rows.first().map_or(0, Vec::len);
        let data: Vec<f32> = rows.iter().flatten().copied().collect();
        let tensor = serde_json::json!({
            "name": self.config.input,
            "shape": [rows.len(), width],
            "datatype": self.config.datatype.as_str(),
            "data": match self.config.datatype {
                Datatype::FP32 => serde_json::json!(data),
                Datatype::FP64 => serde_json::json!(data.iter().map(|v| f64::from(*v)).collect::<Vec<_>>()),
            },
        });
        let body = serde_json::json!({
            "inputs": [tensor],
            "outputs": [{"name": self.config.output}],
        });
        Bytes::from(serde_json::to_vec(&body).expect("JSON serializes"))
    }

    /// Whether a health check is due now; claims it (the next one is
    /// `health_interval_secs` away, however long this one takes).
    pub fn claim_health_check(&self) -> bool {
        let now = now_ms();
        let due = self.next_check_ms.load(Ordering::Acquire);
        now >= due
            && self
                .next_check_ms
                .compare_exchange(
                    due,
                    now + self.config.health_interval_secs * 1000,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    /// Asks every endpoint's `/v2/health/ready`, all at once.
    pub async fn check_health(&self) {
        let checks = self.endpoints.iter().map(|e| self.check(e));
        futures_util::future::join_all(checks).await;
    }

    async fn check(&self, endpoint: &Endpoint) {
        let timeout = Duration::from_millis(
            self.config
                .timeout_ms
                .min(self.config.health_interval_secs * 1000),
        );
        let mut request = Request::get(endpoint.ready.clone())
            .body(Full::new(Bytes::new()))
            .expect("a GET with a parsed URI");
        *request.headers_mut() = self.headers.clone();
        request.headers_mut().remove(header::CONTENT_TYPE);
        let ask = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            // Read to the end, so the connection goes back to the pool.
            let _ = Limited::new(response.into_body(), 64 * 1024)
                .collect()
                .await;
            Ok::<_, hyper_util::client::legacy::Error>(status)
        };
        let verdict = match tokio::time::timeout(timeout, ask).await {
            Ok(Ok(status)) if status.is_success() => Ok(()),
            Ok(Ok(status)) => Err(format!("answered {}", status.as_u16())),
            Ok(Err(e)) if e.is_connect() => Err("connection refused or unreachable".into()),
            Ok(Err(e)) => Err(format!("request failed: {e}")),
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        };
        let was = endpoint.healthy.swap(verdict.is_ok(), Ordering::AcqRel);
        match (&verdict, was) {
            (Err(why), true) => tracing::warn!(
                model = %self.config.model, endpoint = %endpoint.url, reason = %why,
                "upstream endpoint unready; it gets no traffic until a health check passes"
            ),
            (Ok(()), false) => tracing::info!(
                model = %self.config.model, endpoint = %endpoint.url,
                "upstream endpoint ready again"
            ),
            _ => {}
        }
        *endpoint.health_error.lock().expect("health lock") = verdict.err();
    }

    pub fn status(&self, model: &str) -> Vec<EndpointStatus> {
        self.endpoints
            .iter()
            .map(|e| {
                let count = |o: Outcome| e.count(o).load(Ordering::Relaxed);
                let requests: u64 = Outcome::ALL.iter().map(|o| count(*o)).sum();
                let failures: u64 = Outcome::ALL
                    .iter()
                    .filter(|o| o.is_failure())
                    .map(|o| count(*o))
                    .sum();
                let ms = |q: f64| e.latency.quantile(q).map(|d| d.as_secs_f64() * 1000.0);
                EndpointStatus {
                    model: model.to_string(),
                    endpoint: e.url.clone(),
                    healthy: e.healthy.load(Ordering::Acquire),
                    health_error: e.health_error.lock().expect("health lock").clone(),
                    breaker: e.breaker.state(),
                    in_flight: e.in_flight.load(Ordering::Relaxed),
                    requests,
                    failures,
                    opened: e.breaker.opened.load(Ordering::Relaxed),
                    probes: e.breaker.probes.load(Ordering::Relaxed),
                    p50_ms: ms(0.5),
                    p99_ms: ms(0.99),
                }
            })
            .collect()
    }
}

/// The upstream families of `/metrics`, for every upstream model.
pub fn render_metrics(out: &mut String, upstreams: &[(String, Arc<Upstream>)]) {
    let each = |f: &mut dyn FnMut(&str, &Endpoint)| {
        for (model, upstream) in upstreams {
            for e in &upstream.endpoints {
                f(model, e);
            }
        }
    };
    let name = "mlapi_upstream_requests_total";
    let mut family = Exposition::family(
        out,
        name,
        "counter",
        "Requests to upstream model servers by outcome (health checks not counted).",
    );
    each(&mut |model, e| {
        for outcome in Outcome::ALL {
            family.sample(
                name,
                &[
                    ("model", model),
                    ("endpoint", &e.url),
                    ("outcome", outcome.label()),
                ],
                e.count(outcome).load(Ordering::Relaxed),
            );
        }
    });
    let name = "mlapi_upstream_breaker_state";
    let mut family = Exposition::family(
        out,
        name,
        "gauge",
        "Circuit breaker per upstream endpoint: 0 closed, 1 open, 2 half-open.",
    );
    each(&mut |model, e| {
        family.sample(
            name,
            &[("model", model), ("endpoint", &e.url)],
            e.breaker.state() as u64,
        );
    });
    let name = "mlapi_upstream_healthy";
    let mut family = Exposition::family(
        out,
        name,
        "gauge",
        "1 when the endpoint's last /v2/health/ready check passed.",
    );
    each(&mut |model, e| {
        family.sample(
            name,
            &[("model", model), ("endpoint", &e.url)],
            u64::from(e.healthy.load(Ordering::Acquire)),
        );
    });
    let name = "mlapi_upstream_request_duration_seconds";
    let mut family = Exposition::family(
        out,
        name,
        "histogram",
        "Time of each request to an upstream endpoint, by model and endpoint.",
    );
    each(&mut |model, e| {
        family.histogram(name, &[("model", model), ("endpoint", &e.url)], &e.latency);
    });
}

#[derive(Deserialize)]
struct InferAnswer {
    outputs: Vec<OutputTensor>,
}

#[derive(Deserialize)]
struct OutputTensor {
    name: String,
    #[serde(default)]
    shape: Vec<u64>,
    datatype: String,
    data: serde_json::Value,
}

/// Row-major numbers of a flat or nested `data` array.
fn flatten(value: &serde_json::Value, out: &mut Vec<f64>) -> Result<(), ()> {
    match value {
        serde_json::Value::Number(n) => {
            out.push(n.as_f64().ok_or(())?);
            Ok(())
        }
        serde_json::Value::Array(items) => items.iter().try_for_each(|v| flatten(v, out)),
        _ => Err(()),
    }
}

/// The upstream's own error text (`{"error": "…"}` in the protocol), cut
/// short and without control characters, to pass on to the client.
fn error_text(bytes: &[u8]) -> String {
    let text = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| {
            v.get("error")
                .or_else(|| v.get("detail"))
                .and_then(|e| e.as_str().map(str::to_string))
        })
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned());
    let clean: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_TEXT)
        .collect();
    if clean.is_empty() {
        "no error message".to_string()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_probes_once_and_closes() {
        let b = Breaker::default();
        let now = now_ms();
        for _ in 0..2 {
            assert_eq!(b.admit(now, 1000), Some(Pass::Normal));
            b.failed(Pass::Normal, 3);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.failed(Pass::Normal, 3);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.admit(now_ms(), 1000), None);
        // Past the open time exactly one probe passes.
        let later = now_ms() + 1000;
        assert_eq!(b.admit(later, 1000), Some(Pass::Probe));
        assert_eq!(b.admit(later, 1000), None);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.failed(Pass::Probe, 3);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.opened.load(Ordering::Relaxed), 2);
        let later = now_ms() + 1000;
        // A slow request admitted before it opened does not close it.
        b.succeeded(Pass::Normal);
        assert_eq!(b.state(), BreakerState::Open);
        // A probe claimed but never sent goes back: the next request probes.
        assert_eq!(b.admit(later, 1000), Some(Pass::Probe));
        b.return_probe();
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.admit(later, 1000), Some(Pass::Probe));
        b.succeeded(Pass::Probe);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.probes.load(Ordering::Relaxed), 2);
        assert_eq!(b.admit(later, 1000), Some(Pass::Normal));
        // A success resets the count: failures must be consecutive.
        b.failed(Pass::Normal, 2);
        b.succeeded(Pass::Normal);
        b.failed(Pass::Normal, 2);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn upstream_error_text_is_short_and_clean() {
        assert_eq!(error_text(br#"{"error":"bad\nshape"}"#), "badshape");
        assert_eq!(error_text(b"plain"), "plain");
        assert_eq!(error_text(b""), "no error message");
        assert_eq!(error_text(&[b'x'; 500]).len(), MAX_ERROR_TEXT);
    }

    #[test]
    fn nested_and_flat_data_flatten_alike() {
        let mut a = Vec::new();
        flatten(&serde_json::json!([[0.25, 0.75], [1, 0]]), &mut a).unwrap();
        assert_eq!(a, [0.25, 0.75, 1.0, 0.0]);
        assert!(flatten(&serde_json::json!(["x"]), &mut Vec::new()).is_err());
    }
}
