//! Models: the registry built from `[[models]]` (or the bundled demo model),
//! loading ONNX files with the pure-Rust `tract`, validating inputs against a
//! model's size and bounds, and running inference — single, batched, and the
//! occlusion explanation — off the async runtime with bounded concurrency and
//! a timeout.
//!
//! Knows nothing of HTTP or users; `http::handlers::models` adapts it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tract_onnx::prelude::*;

use crate::config::{Config, ModelConfig};
use crate::core::error::FieldError;
use crate::core::metrics::{Exposition, Histogram};
use crate::core::time;
use crate::serving::upstream::{self, EndpointStatus, Upstream};

/// The bundled demo model (see models/README.md) and its metadata.
const BUNDLED_ONNX: &[u8] = include_bytes!("../../models/demo.onnx");
const BUNDLED_META: &str = include_str!("../../models/demo.json");

type Plan = Arc<TypedSimplePlan>;

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("model {name:?}: {message}")]
pub struct LoadError {
    pub name: String,
    pub message: String,
}

/// Why a prediction failed after validation.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("the model did not answer within {0} ms")]
    Timeout(u64),
    #[error("inference failed: {0}")]
    Failed(String),
    #[error("the server is busy running other predictions; retry shortly")]
    Busy,
    /// An upstream model server refused the input (it answered 4xx).
    #[error("{0}")]
    Rejected(String),
    /// An upstream model server failed, or answered something unreadable.
    #[error("{0}")]
    BadGateway(String),
    /// No upstream endpoint can take the request now.
    #[error("{detail}")]
    Unavailable {
        detail: String,
        retry_after_secs: u64,
    },
}

/// The name the bundled model serves under when no `[[models]]` is configured.
pub const BUNDLED_NAME: &str = "demo";

/// The names predictions can be cached under: the `[[models]]`, or the
/// bundled model's.
pub fn names(config: &Config) -> Vec<String> {
    if config.models.is_empty() {
        vec![BUNDLED_NAME.to_string()]
    } else {
        config.models.iter().map(|m| m.name.clone()).collect()
    }
}

/// One loaded model, immutable; a reload replaces the whole `Arc`.
pub struct Model {
    pub name: String,
    pub version: String,
    /// `sha256:<hex>` of the ONNX file; for an upstream model, of the
    /// upstream's model name, version, tensor names and datatype.
    pub digest: String,
    pub source: String,
    pub labels: Vec<String>,
    pub input_size: usize,
    pub features: Vec<String>,
    /// Inclusive bounds per feature; `None`: any finite value.
    pub bounds: Option<Vec<(f64, f64)>>,
    /// The occlusion baseline: training means for the bundled model.
    pub baseline: Vec<f32>,
    pub cache_ttl_secs: u64,
    /// Everything an answer depends on besides the input: the file's digest
    /// and the config that shapes responses (version, labels, features,
    /// baseline). Part of every cache key, so changing any of them (and a
    /// SIGHUP) never serves an old answer.
    pub answer_id: String,
    pub loaded_at: i64,
    backend: Backend,
    /// Shared with the versions this one replaces on reload, so counts
    /// survive a SIGHUP.
    stats: Arc<InferenceStats>,
}

/// What runs a model.
enum Backend {
    /// An ONNX file run by tract; `probabilities` is the output holding the
    /// class probabilities.
    Onnx { plan: Plan, probabilities: usize },
    /// Open Inference Protocol v2 servers.
    Upstream(Arc<Upstream>),
}

/// Inference runs by outcome and their durations, for `/metrics`.
#[derive(Debug, Default)]
pub struct InferenceStats {
    ok: AtomicU64,
    failed: AtomicU64,
    timeout: AtomicU64,
    /// Refused before running: every slot was taken for the whole timeout
    /// (or, for an upstream model, no endpoint was usable).
    busy: AtomicU64,
    duration: Histogram,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("digest", &self.digest)
            .finish()
    }
}

/// What `GET /api/v1/models` shows.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    pub digest: String,
    pub backend: &'static str,
    pub status: &'static str,
    pub default: bool,
    pub input_size: usize,
    pub labels: Vec<String>,
    pub features: Vec<String>,
    pub feature_bounds: Option<Vec<(f64, f64)>>,
    pub cache_ttl_secs: u64,
    pub source: String,
    /// The last reload's error, while the previous version keeps serving.
    pub reload_error: Option<String>,
}

/// One prediction for one input row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Prediction {
    pub prediction: String,
    pub confidence: f64,
    pub probabilities: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Explanation>,
}

/// Occlusion attribution: how much the predicted class's probability drops
/// when each feature is replaced by the baseline (training mean).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Explanation {
    pub method: &'static str,
    pub baseline: Vec<f64>,
    pub attributions: Vec<f64>,
}

/// Whether predictions come with an explanation: occlusion runs every row
/// again with each feature set to its baseline, in the same model call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Explain {
    No,
    Occlusion,
}

impl Model {
    fn load(
        config: &ModelConfig,
        client: &upstream::Client,
        previous: Option<&Model>,
    ) -> Result<Model, LoadError> {
        let err = |message: String| LoadError {
            name: config.name.clone(),
            message,
        };
        if let Some(settings) = config.upstream() {
            let previous = previous.and_then(|m| match &m.backend {
                Backend::Upstream(u) => Some(u.as_ref()),
                Backend::Onnx { .. } => None,
            });
            return Model::upstream(config, Upstream::new(settings, client.clone(), previous))
                .map_err(err);
        }
        let bytes = std::fs::read(&config.path)
            .map_err(|e| err(format!("cannot read {}: {e}", config.path)))?;
        let features = config.features.clone().unwrap_or_default();
        let baseline = baseline(config);
        Model::from_bytes(
            &bytes,
            config.name.clone(),
            config.version.clone(),
            config.path.clone(),
            config.labels.clone(),
            config.input_size,
            features,
            config.feature_bounds.clone(),
            baseline,
            config.cache_ttl_secs,
        )
        .map_err(err)
    }

    fn bundled(cache_ttl_secs: u64) -> Result<Model, LoadError> {
        let meta: serde_json::Value =
            serde_json::from_str(BUNDLED_META).expect("bundled metadata is JSON");
        let strings = |key: &str| -> Vec<String> {
            meta[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let bounds = meta["feature_bounds"].as_array().map(|a| {
            a.iter()
                .map(|pair| {
                    (
                        pair[0].as_f64().unwrap_or(f64::MIN),
                        pair[1].as_f64().unwrap_or(f64::MAX),
                    )
                })
                .collect()
        });
        let baseline = meta["training_mean"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_f64().unwrap_or(0.0) as f32).collect())
            .unwrap_or_default();
        Model::from_bytes(
            BUNDLED_ONNX,
            BUNDLED_NAME.into(),
            meta["version"].as_str().map(str::to_string),
            "(bundled)".into(),
            strings("labels"),
            meta["input_size"].as_u64().unwrap_or(5) as usize,
            strings("features"),
            bounds,
            baseline,
            cache_ttl_secs,
        )
        .map_err(|message| LoadError {
            name: BUNDLED_NAME.into(),
            message,
        })
    }

    fn upstream(config: &ModelConfig, upstream: Result<Upstream, String>) -> Result<Model, String> {
        let upstream = upstream?;
        let settings = &upstream.config;
        let digest = {
            let mut h = Sha256::new();
            for part in [
                "oip-v2",
                &settings.model,
                config.version.as_deref().unwrap_or(""),
                &settings.input,
                &settings.output,
                settings.datatype.as_str(),
            ] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part.as_bytes());
            }
            format!("sha256:{:x}", h.finalize())
        };
        let version = config
            .version
            .clone()
            .unwrap_or_else(|| digest[7..19].to_string());
        let baseline = baseline(config);
        let features = config.features.clone().unwrap_or_default();
        let answer_id = answer_id(&digest, &version, &config.labels, &features, &baseline);
        Ok(Model {
            name: config.name.clone(),
            version,
            digest,
            // The endpoints' addresses stay out of what callers see.
            source: format!(
                "upstream model {:?} on {} endpoint(s)",
                settings.model,
                settings.endpoints.len()
            ),
            labels: config.labels.clone(),
            input_size: config.input_size,
            features,
            bounds: config.feature_bounds.clone(),
            baseline,
            cache_ttl_secs: config.cache_ttl_secs,
            answer_id,
            loaded_at: time::now(),
            backend: Backend::Upstream(Arc::new(upstream)),
            stats: Arc::default(),
        })
    }

    /// The upstream servers, for an upstream model.
    pub fn upstream_servers(&self) -> Option<&Arc<Upstream>> {
        match &self.backend {
            Backend::Upstream(u) => Some(u),
            Backend::Onnx { .. } => None,
        }
    }

    /// What runs the model, as `GET /api/v1/models` shows it.
    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Onnx { .. } => "tract-onnx",
            Backend::Upstream(_) => "oip-upstream",
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn from_bytes(
        bytes: &[u8],
        name: String,
        version: Option<String>,
        source: String,
        labels: Vec<String>,
        input_size: usize,
        features: Vec<String>,
        bounds: Option<Vec<(f64, f64)>>,
        baseline: Vec<f32>,
        cache_ttl_secs: u64,
    ) -> Result<Model, String> {
        let digest = format!("sha256:{:x}", Sha256::digest(bytes));
        let plan = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(bytes))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| format!("not a model tract can run: {e}"))?;
        // Without an explicit version the digest names it, so a new file is a new version.
        let version = version.unwrap_or_else(|| digest[7..19].to_string());
        let answer_id = answer_id(&digest, &version, &labels, &features, &baseline);
        let mut model = Model {
            name,
            version,
            digest,
            source,
            labels,
            input_size,
            features,
            bounds,
            baseline,
            cache_ttl_secs,
            answer_id,
            loaded_at: time::now(),
            backend: Backend::Onnx {
                plan,
                probabilities: 0,
            },
            stats: Arc::default(),
        };
        if model.baseline.len() != input_size {
            return Err(format!(
                "baseline has {} values, input_size is {input_size}",
                model.baseline.len()
            ));
        }
        // A probe row proves the model runs and finds the probabilities output.
        let outputs = model.run_raw(&[vec![0.0; input_size]]).map_err(|e| {
            format!("a probe inference failed (is input_size {input_size} right?): {e}")
        })?;
        let found = outputs
            .iter()
            .position(|t| {
                t.datum_type() == f32::datum_type() && t.shape() == [1, model.labels.len()]
            })
            .ok_or_else(|| {
                format!(
                    "no float output of shape [N, {}] (one probability per label) among {:?}",
                    model.labels.len(),
                    outputs
                        .iter()
                        .map(|t| t.shape().to_vec())
                        .collect::<Vec<_>>()
                )
            })?;
        if let Backend::Onnx { probabilities, .. } = &mut model.backend {
            *probabilities = found;
        }
        Ok(model)
    }

    fn run_raw(&self, rows: &[Vec<f32>]) -> TractResult<TVec<TValue>> {
        let Backend::Onnx { plan, .. } = &self.backend else {
            return Err(TractError::msg("not an ONNX model"));
        };
        let data: Vec<f32> = rows.iter().flatten().copied().collect();
        let input = Tensor::from_shape(&[rows.len(), self.input_size], &data)?;
        plan.run(tvec!(input.into()))
    }

    /// Class probabilities for each row of an ONNX model (blocking).
    fn onnx_probabilities(&self, rows: &[Vec<f32>]) -> Result<Vec<Vec<f64>>, InferenceError> {
        let Backend::Onnx { probabilities, .. } = &self.backend else {
            return Err(InferenceError::Failed(
                "an upstream model runs through Registry::predict".into(),
            ));
        };
        let outputs = self
            .run_raw(rows)
            .map_err(|e| InferenceError::Failed(e.to_string()))?;
        let probs = outputs[*probabilities]
            .to_plain_array_view::<f32>()
            .map_err(|e| InferenceError::Failed(e.to_string()))?;
        Ok(probs
            .outer_iter()
            .map(|row| row.iter().map(|p| f64::from(*p)).collect())
            .collect())
    }

    /// Predictions for `rows` from an ONNX model, on the calling thread
    /// (blocking). `Registry::predict` runs every model: ONNX ones on the
    /// blocking pool, upstream ones on the async runtime (network I/O).
    pub fn predict(
        &self,
        rows: &[Vec<f32>],
        explain: Explain,
    ) -> Result<Vec<Prediction>, InferenceError> {
        let batch = self.batch(rows, explain);
        let probs = self.onnx_probabilities(&batch)?;
        Ok(self.assemble(&probs, explain))
    }

    /// Every row, each followed by its occluded variants when explaining:
    /// one model call answers all of them.
    fn batch(&self, rows: &[Vec<f32>], explain: Explain) -> Vec<Vec<f32>> {
        let explain = explain == Explain::Occlusion;
        let d = self.input_size;
        let mut batch: Vec<Vec<f32>> =
            Vec::with_capacity(rows.len() * if explain { d + 1 } else { 1 });
        for row in rows {
            batch.push(row.clone());
            if explain {
                for i in 0..d {
                    let mut occluded = row.clone();
                    occluded[i] = self.baseline[i];
                    batch.push(occluded);
                }
            }
        }
        batch
    }

    /// Predictions from the probabilities of `batch`'s rows.
    fn assemble(&self, probs: &[Vec<f64>], explain: Explain) -> Vec<Prediction> {
        let explain = explain == Explain::Occlusion;
        let stride = if explain { self.input_size + 1 } else { 1 };
        probs
            .chunks(stride)
            .map(|group| {
                let p = &group[0];
                let top = p
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i);
                let explanation = explain.then(|| Explanation {
                    method: "occlusion",
                    baseline: self.baseline.iter().map(|v| f64::from(*v)).collect(),
                    attributions: group[1..].iter().map(|q| p[top] - q[top]).collect(),
                });
                Prediction {
                    prediction: self.labels[top].clone(),
                    confidence: p[top],
                    probabilities: self.labels.iter().cloned().zip(p.iter().copied()).collect(),
                    explanation,
                }
            })
            .collect()
    }

    /// Checks one row against the model; errors name `field[index]`.
    pub fn check_row(
        &self,
        field: &str,
        values: &[f64],
        errors: &mut Vec<FieldError>,
    ) -> Option<Vec<f32>> {
        if values.len() != self.input_size {
            errors.push(FieldError::new(
                field,
                format!(
                    "expected {} values for model {:?}, got {}",
                    self.input_size,
                    self.name,
                    values.len()
                ),
            ));
            return None;
        }
        let before = errors.len();
        for (i, v) in values.iter().enumerate() {
            let (lo, hi) = self.bounds.as_ref().map_or((f64::MIN, f64::MAX), |b| b[i]);
            if !v.is_finite() || (*v as f32).is_infinite() {
                errors.push(FieldError::new(
                    &format!("{field}[{i}]"),
                    "must be a finite number",
                ));
            } else if *v < lo || *v > hi {
                errors.push(FieldError::new(
                    &format!("{field}[{i}]"),
                    format!("{v} is outside the model's bounds [{lo}, {hi}]"),
                ));
            }
        }
        (errors.len() == before).then(|| values.iter().map(|v| *v as f32).collect())
    }

    pub fn info(&self, default: bool, reload_error: Option<String>) -> ModelInfo {
        ModelInfo {
            name: self.name.clone(),
            version: self.version.clone(),
            digest: self.digest.clone(),
            backend: self.backend(),
            status: match self.upstream_servers().map(|u| u.usable_count()) {
                Some((0, _)) => "unavailable",
                Some((usable, total)) if usable < total => "degraded",
                _ => "ready",
            },
            default,
            input_size: self.input_size,
            labels: self.labels.clone(),
            features: self.features.clone(),
            feature_bounds: self.bounds.clone(),
            cache_ttl_secs: self.cache_ttl_secs,
            source: self.source.clone(),
            reload_error,
        }
    }
}

/// What `POST /api/v2/predict` answers (and caches) for one input: the
/// envelope and the prediction's fields. Batch jobs store the same, so a
/// job's rows fill the entries single predictions read.
pub fn v2_single_answer(model: &Model, prediction: &Prediction) -> serde_json::Value {
    let mut body = serde_json::json!({
        "version": "2.0",
        "model": model.name,
        "model_version": model.version,
    });
    if let (serde_json::Value::Object(body), Ok(serde_json::Value::Object(fields))) =
        (&mut body, serde_json::to_value(prediction))
    {
        body.extend(fields);
    }
    body
}

/// What `POST /api/v1/predict` answers (and caches) for one input.
pub fn v1_answer(model: &Model, prediction: &Prediction) -> serde_json::Value {
    serde_json::json!({
        "version": "1.0",
        "model": model.name,
        "model_version": model.version,
        "prediction": prediction.prediction,
    })
}

/// The occlusion baseline: configured, or zeros.
fn baseline(config: &ModelConfig) -> Vec<f32> {
    config.baseline.as_ref().map_or_else(
        || vec![0.0; config.input_size],
        |b| b.iter().map(|v| *v as f32).collect(),
    )
}

/// Everything an answer depends on besides the input: part of every cache key.
fn answer_id(
    digest: &str,
    version: &str,
    labels: &[String],
    features: &[String],
    baseline: &[f32],
) -> String {
    let mut h = Sha256::new();
    for part in [digest, version]
        .into_iter()
        .chain(labels.iter().map(String::as_str))
        .chain(features.iter().map(String::as_str))
    {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    for b in baseline {
        h.update(b.to_bits().to_le_bytes());
    }
    format!("{:x}", h.finalize())
}

/// One reserved slot of the inference pool (`Registry::reserve`).
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    model: Arc<Model>,
    delay: Duration,
    timeout: Duration,
}

impl Slot {
    /// Runs the model on the calling thread, which it blocks: for a thread
    /// of its own (a job's chunk), never the runtime's. The timeout counts
    /// this thread's CPU time (and the test hook's delay), so a thread kept
    /// waiting by live requests is not timed out for it. The slot is free
    /// again when this returns.
    pub fn run_here(
        self,
        rows: &[Vec<f32>],
        explain: Explain,
    ) -> Result<Vec<Prediction>, InferenceError> {
        let started = std::time::Instant::now();
        let cpu = thread_cpu_time();
        let run =
            std::panic::AssertUnwindSafe(|| run_local(&self.model, rows, explain, self.delay));
        let mut result = std::panic::catch_unwind(run)
            .unwrap_or_else(|_| Err(InferenceError::Failed("the inference panicked".into())));
        let spent = thread_cpu_time().saturating_sub(cpu) + self.delay;
        if result.is_ok() && spent > self.timeout {
            result = Err(InferenceError::Timeout(self.timeout.as_millis() as u64));
        }
        record(&self.model.stats, &result, started.elapsed());
        result
    }
}

/// The calling thread's CPU time so far.
fn thread_cpu_time() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec the call writes; no other memory is touched.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// One ONNX inference on the calling thread, after the test hook's delay.
fn run_local(
    model: &Model,
    rows: &[Vec<f32>],
    explain: Explain,
    delay: Duration,
) -> Result<Vec<Prediction>, InferenceError> {
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    model.predict(rows, explain)
}

/// Counts one inference's outcome and duration in the model's stats.
fn record(
    stats: &InferenceStats,
    result: &Result<Vec<Prediction>, InferenceError>,
    took: Duration,
) {
    let outcome = match result {
        Ok(_) => &stats.ok,
        Err(InferenceError::Timeout(_)) => &stats.timeout,
        Err(_) => &stats.failed,
    };
    outcome.fetch_add(1, Ordering::Relaxed);
    stats.duration.observe(took);
}

struct Entry {
    model: Arc<Model>,
    reload_error: Option<String>,
}

/// The models a daemon serves, by name, and how inference is run.
pub struct Registry {
    entries: RwLock<BTreeMap<String, Entry>>,
    /// The default model itself (one of `entries`), so a request without a
    /// model name takes one lock and clones one pointer.
    default: RwLock<Arc<Model>>,
    permits: Arc<Semaphore>,
    timeout: Duration,
    pub max_batch: usize,
    /// Test hook (`debug.inference_delay_ms`): a slow model on demand.
    delay: Duration,
    /// Inference calls made (for tests and, later, metrics).
    pub inferences: AtomicU64,
    /// The HTTP client every upstream model shares.
    client: upstream::Client,
}

impl Registry {
    /// Loads every configured model, or the bundled one when none is. Any
    /// failure here is fatal: a daemon does not start without its models.
    pub fn load(config: &Config) -> Result<Registry, LoadError> {
        let client = upstream::client();
        let (models, default) = load_all(config, &client)?;
        let inference = &config.inference;
        let entries: BTreeMap<String, Entry> = models
            .into_iter()
            .map(|m| {
                (
                    m.name.clone(),
                    Entry {
                        model: Arc::new(m),
                        reload_error: None,
                    },
                )
            })
            .collect();
        let default = Arc::clone(&entries[&default].model);
        Ok(Registry {
            entries: RwLock::new(entries),
            default: RwLock::new(default),
            permits: Arc::new(Semaphore::new(inference.max_concurrent as usize)),
            timeout: Duration::from_millis(inference.timeout_ms),
            max_batch: inference.max_batch as usize,
            delay: Duration::from_millis(config.debug.inference_delay_ms),
            inferences: AtomicU64::new(0),
            client,
        })
    }

    /// SIGHUP: loads each model again. A model that fails keeps its previous
    /// version serving and reports the error; new names are added.
    pub fn reload(&self, config: &Config) -> Vec<LoadError> {
        let mut failures = Vec::new();
        let configs = model_configs(config);
        let mut entries = BTreeMap::new();
        for c in &configs {
            let old = self.get(&c.name);
            let loaded = if c.path.is_empty() && c.upstream.is_empty() {
                Model::bundled(c.cache_ttl_secs)
            } else {
                Model::load(c, &self.client, old.as_deref())
            };
            match loaded {
                Ok(mut model) => {
                    if let Some(old) = &old {
                        model.stats = Arc::clone(&old.stats);
                    }
                    entries.insert(
                        c.name.clone(),
                        Entry {
                            model: Arc::new(model),
                            reload_error: None,
                        },
                    );
                }
                Err(e) => {
                    if let Some(old) = old {
                        entries.insert(
                            c.name.clone(),
                            Entry {
                                model: old,
                                reload_error: Some(e.message.clone()),
                            },
                        );
                    }
                    failures.push(e);
                }
            }
        }
        if !entries.is_empty() {
            // The default must always name a loaded model: the configured one
            // if it loaded, else the previous one if still present, else any.
            let mut default = self.default.read().expect("registry lock").name.clone();
            if let Some(wanted) = default_name(&configs).filter(|n| entries.contains_key(n)) {
                default = wanted;
            } else if !entries.contains_key(&default) {
                default = entries.keys().next().expect("not empty").clone();
            }
            let default = Arc::clone(&entries[&default].model);
            let mut current = self.entries.write().expect("registry lock");
            *current = entries;
            *self.default.write().expect("registry lock") = default;
        }
        failures
    }

    pub fn get(&self, name: &str) -> Option<Arc<Model>> {
        self.entries
            .read()
            .expect("registry lock")
            .get(name)
            .map(|e| Arc::clone(&e.model))
    }

    pub fn default_model(&self) -> Arc<Model> {
        Arc::clone(&self.default.read().expect("registry lock"))
    }

    pub fn list(&self) -> Vec<ModelInfo> {
        let default = self.default.read().expect("registry lock").name.clone();
        self.entries
            .read()
            .expect("registry lock")
            .values()
            .map(|e| {
                e.model
                    .info(e.model.name == default, e.reload_error.clone())
            })
            .collect()
    }

    pub fn info(&self, name: &str) -> Option<ModelInfo> {
        let default = self.default.read().expect("registry lock").name.clone();
        let entries = self.entries.read().expect("registry lock");
        entries
            .get(name)
            .map(|e| e.model.info(name == default, e.reload_error.clone()))
    }

    /// Reload errors, for `/ready`.
    pub fn problems(&self) -> Vec<String> {
        self.entries
            .read()
            .expect("registry lock")
            .values()
            .filter_map(|e| {
                e.reload_error.as_ref().map(|err| {
                    format!(
                        "{}: reload failed ({err}); serving {}",
                        e.model.name, e.model.version
                    )
                })
            })
            .collect()
    }

    /// Runs `model` on `rows` on the blocking pool: at most
    /// `inference.max_concurrent` at once, each bounded by `inference.timeout_ms`.
    pub async fn predict(
        &self,
        model: Arc<Model>,
        rows: Vec<Vec<f32>>,
        explain: Explain,
    ) -> Result<Vec<Prediction>, InferenceError> {
        if let Backend::Upstream(upstream) = &model.backend {
            return Self::predict_upstream(&model, upstream, &rows, explain).await;
        }
        let permit = self.permit(&model).await?;
        let started = std::time::Instant::now();
        let stats = Arc::clone(&model.stats);
        let delay = self.delay;
        // The permit travels with the work: a timed-out inference still
        // holds its slot until it really ends, so overload stays bounded.
        let work = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            run_local(&model, &rows, explain, delay)
        });
        let result = match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(InferenceError::Failed(format!(
                "inference task failed: {e}"
            ))),
            Err(_) => Err(InferenceError::Timeout(self.timeout.as_millis() as u64)),
        };
        record(&stats, &result, started.elapsed());
        result
    }

    /// A slot of the same pool for an ONNX model, to run it later on a
    /// thread of the caller's own (`Slot::run_here`); `None` for an
    /// upstream model, which `predict` runs on the runtime.
    pub async fn reserve(&self, model: &Arc<Model>) -> Option<Result<Slot, InferenceError>> {
        if let Backend::Upstream(_) = model.backend {
            return None;
        }
        Some(self.permit(model).await.map(|permit| Slot {
            _permit: permit,
            model: Arc::clone(model),
            delay: self.delay,
            timeout: self.timeout,
        }))
    }

    /// A slot in the inference pool, waiting at most the timeout for one.
    async fn permit(&self, model: &Model) -> Result<OwnedSemaphorePermit, InferenceError> {
        let permit = tokio::time::timeout(self.timeout, Arc::clone(&self.permits).acquire_owned())
            .await
            .ok()
            .and_then(Result::ok);
        let Some(permit) = permit else {
            model.stats.busy.fetch_add(1, Ordering::Relaxed);
            return Err(InferenceError::Busy);
        };
        self.inferences.fetch_add(1, Ordering::Relaxed);
        Ok(permit)
    }

    /// An upstream model: network I/O only, so no blocking-pool slot; its
    /// own `timeout_ms` bounds it.
    async fn predict_upstream(
        model: &Model,
        upstream: &Upstream,
        rows: &[Vec<f32>],
        explain: Explain,
    ) -> Result<Vec<Prediction>, InferenceError> {
        let started = std::time::Instant::now();
        let batch = model.batch(rows, explain);
        let result = upstream
            .probabilities(&batch, model.labels.len())
            .await
            .map(|probs| model.assemble(&probs, explain));
        let stats = &model.stats;
        let outcome = match &result {
            Ok(_) => &stats.ok,
            Err(InferenceError::Timeout(_)) => &stats.timeout,
            Err(InferenceError::Unavailable { .. }) => &stats.busy,
            Err(_) => &stats.failed,
        };
        outcome.fetch_add(1, Ordering::Relaxed);
        stats.duration.observe(started.elapsed());
        result
    }

    /// The upstream models served now, by name.
    pub fn upstreams(&self) -> Vec<(String, Arc<Upstream>)> {
        self.entries
            .read()
            .expect("registry lock")
            .values()
            .filter_map(|e| {
                e.model
                    .upstream_servers()
                    .map(|u| (e.model.name.clone(), Arc::clone(u)))
            })
            .collect()
    }

    /// The upstream models whose health check is due now (each claimed, so
    /// it is handed out once).
    pub fn due_health_checks(&self) -> Vec<Arc<Upstream>> {
        self.upstreams()
            .into_iter()
            .map(|(_, u)| u)
            .filter(|u| u.claim_health_check())
            .collect()
    }

    /// Every upstream endpoint's state, for `mlapi upstream status`.
    pub fn upstream_status(&self) -> Vec<EndpointStatus> {
        self.upstreams()
            .iter()
            .flat_map(|(name, u)| u.status(name))
            .collect()
    }

    /// `mlapi_inference_total` and `mlapi_inference_duration_seconds` for
    /// the models served now.
    pub fn render_metrics(&self, out: &mut String) {
        let models: Vec<(String, Arc<InferenceStats>)> = self
            .entries
            .read()
            .expect("registry lock")
            .values()
            .map(|e| (e.model.name.clone(), Arc::clone(&e.model.stats)))
            .collect();
        let name = "mlapi_inference_total";
        let mut family = Exposition::family(
            out,
            name,
            "counter",
            "Model runs by outcome (ok, error, timeout; busy: refused, no inference slot free).",
        );
        for (model, s) in &models {
            for (outcome, n) in [
                ("ok", &s.ok),
                ("error", &s.failed),
                ("timeout", &s.timeout),
                ("busy", &s.busy),
            ] {
                family.sample(
                    name,
                    &[("model", model), ("outcome", outcome)],
                    n.load(Ordering::Relaxed),
                );
            }
        }
        let name = "mlapi_inference_duration_seconds";
        let mut family = Exposition::family(
            out,
            name,
            "histogram",
            "Model run time (queueing for the blocking pool included), by model.",
        );
        for (model, s) in &models {
            family.histogram(name, &[("model", model)], &s.duration);
        }
        upstream::render_metrics(out, &self.upstreams());
    }
}

/// The configured models, or the bundled one (an empty path) when none are.
fn model_configs(config: &Config) -> Vec<ModelConfig> {
    if config.models.is_empty() {
        vec![ModelConfig {
            name: "demo".into(),
            default: true,
            ..ModelConfig::default()
        }]
    } else {
        config.models.clone()
    }
}

fn default_name(configs: &[ModelConfig]) -> Option<String> {
    configs
        .iter()
        .find(|c| c.default)
        .or_else(|| configs.first())
        .map(|c| c.name.clone())
}

fn load_all(config: &Config, client: &upstream::Client) -> Result<(Vec<Model>, String), LoadError> {
    let configs = model_configs(config);
    let mut models = Vec::new();
    for c in &configs {
        models.push(if c.path.is_empty() && c.upstream.is_empty() {
            Model::bundled(c.cache_ttl_secs)?
        } else {
            Model::load(c, client, None)?
        });
    }
    Ok((models, default_name(&configs).expect("at least one model")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tract's outputs match scikit-learn's (the training library) to 1e-5.
    #[test]
    fn bundled_model_matches_the_training_library() {
        let model = Model::bundled(300).unwrap();
        assert_eq!(model.labels, ["malignant", "benign"]);
        assert_eq!(model.input_size, 5);
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../../models/demo_fixture.json")).unwrap();
        let rows = fixture["rows"].as_array().unwrap();
        assert!(rows.len() >= 10);
        let inputs: Vec<Vec<f32>> = rows
            .iter()
            .map(|r| {
                r["features"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
                    .collect()
            })
            .collect();
        let probs = model.onnx_probabilities(&inputs).unwrap();
        for (row, p) in rows.iter().zip(&probs) {
            for (j, expected) in row["probabilities"].as_array().unwrap().iter().enumerate() {
                let diff = (p[j] - expected.as_f64().unwrap()).abs();
                assert!(diff < 1e-5, "row {row}: {p:?}");
            }
            let label = row["label"].as_u64().unwrap() as usize;
            let top = if p[1] > p[0] { 1 } else { 0 };
            assert_eq!(top, label);
        }
    }

    #[test]
    fn explanations_and_batches_agree_with_single_calls() {
        let model = Model::bundled(300).unwrap();
        let rows = vec![
            vec![1.0, 2.0, 3.0, 4.0, 5.0],
            vec![14.0, 20.0, 0.12, 0.2, 0.2],
            vec![20.0, 30.0, 0.15, 0.4, 0.5],
        ];
        let batch = model.predict(&rows, Explain::Occlusion).unwrap();
        for (row, together) in rows.iter().zip(&batch) {
            let alone = model
                .predict(std::slice::from_ref(row), Explain::Occlusion)
                .unwrap()
                .remove(0);
            assert_eq!(alone.prediction, together.prediction);
            assert!((alone.confidence - together.confidence).abs() < 1e-6);
            let explanation = together.explanation.as_ref().unwrap();
            assert_eq!(explanation.attributions.len(), 5);
            assert_eq!(explanation.method, "occlusion");
            let total: f64 = together.probabilities.values().sum();
            assert!((total - 1.0).abs() < 1e-6);
        }
    }
}
