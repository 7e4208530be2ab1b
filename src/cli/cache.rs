//! `mlapi cache …`: flush (Redis by SCAN + UNLINK under the prefix, and every
//! running daemon's in-process entries through SQLite) and stats (from each
//! running daemon's control socket, plus the Redis key count).

use std::sync::Arc;

use clap::Subcommand;
use serde_json::{json, Value};

use super::output::{self, Output};
use super::{confirm, CliError};
use crate::app::App;
use crate::daemon::control;
use crate::serving::{cache, jobs, models};
use crate::store;
use crate::store::audit::Actor;

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Drop cached predictions: in Redis (keys under the prefix only) and in
    /// every running daemon, within a second.
    Flush {
        /// Only this model's predictions.
        #[arg(long, value_name = "NAME")]
        model: Option<String>,
        /// Do not ask for confirmation on a terminal.
        #[arg(long)]
        yes: bool,
    },
    /// Entries, hits, misses and hit rate, per running daemon and in Redis.
    Stats,
    /// Fill the cache for feature rows ahead of traffic: the rows run as a
    /// batch job, whose results become the entries `/api/v1/predict` and
    /// `/api/v2/predict` (without explanation) read for those rows.
    Warm {
        /// A JSON array of feature rows, or JSON lines (one row per line).
        file: std::path::PathBuf,
        /// The model (default: the default model).
        #[arg(long, value_name = "NAME")]
        model: Option<String>,
        /// Wait until a running daemon has finished the job.
        #[arg(long)]
        wait: bool,
    },
}

pub async fn run(app: &Arc<App>, command: CacheCommand, out: &Output) -> Result<(), CliError> {
    match command {
        CacheCommand::Flush { model, yes } => flush(app, model, yes, out).await,
        CacheCommand::Stats => stats(app, out).await,
        CacheCommand::Warm { file, model, wait } => warm(app, &file, model, wait, out).await,
    }
}

/// Feature rows from a JSON array of arrays, or from JSON lines.
fn read_rows(file: &std::path::Path) -> Result<Vec<Vec<f64>>, CliError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
    // A whole JSON array (pretty-printed or not), else JSON lines.
    if let Ok(rows) = serde_json::from_str::<Vec<Vec<f64>>>(&text) {
        return Ok(rows);
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str::<Vec<f64>>(line).map_err(|e| {
                CliError::Usage(format!(
                    "{} line {}: not an array of numbers: {e}",
                    file.display(),
                    i + 1
                ))
            })
        })
        .collect()
}

async fn warm(
    app: &Arc<App>,
    file: &std::path::Path,
    model: Option<String>,
    wait: bool,
    out: &Output,
) -> Result<(), CliError> {
    let rows = read_rows(file)?;
    if rows.is_empty() {
        return Err(CliError::Usage(format!("{}: no rows", file.display())));
    }
    let max = app.config.jobs.max_instances as usize;
    if rows.len() > max {
        return Err(CliError::Usage(format!(
            "{} rows, more than jobs.max_instances ({max}); split the file",
            rows.len()
        )));
    }
    // The models as the daemon loads them, so rows are checked as the API checks them.
    let config = app.config.clone();
    let registry = store::blocking(move || models::Registry::load(&config))
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let model = match model {
        Some(name) => registry.get(&name).ok_or_else(|| {
            CliError::Usage(format!(
                "no model named {name:?}; models: {}",
                models::names(&app.config).join(", ")
            ))
        })?,
        None => registry.default_model(),
    };
    let mut errors = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        model.check_row(&format!("row {}", i + 1), row, &mut errors);
    }
    if !errors.is_empty() {
        let more = errors.len().saturating_sub(20);
        let mut listed: Vec<String> = errors
            .iter()
            .take(20)
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        if more > 0 {
            listed.push(format!("… and {more} more"));
        }
        return Err(CliError::Usage(format!(
            "nothing queued; fix these rows: {}",
            listed.join("; ")
        )));
    }
    let body = serde_json::to_vec(&rows).expect("numbers serialize");
    let new = jobs::NewJob {
        user_id: None,
        model: model.name.clone(),
        rows,
        explain: false,
        idempotency_key: None,
        body,
    };
    let submitting = Arc::clone(app);
    let job = match store::blocking(move || submitting.jobs.submit(new)).await? {
        jobs::Submitted::Created(job) | jobs::Submitted::Existing(job) => job,
    };
    if !wait {
        if out.quiet && out.format == output::Format::Table {
            output::print_line(&job.id);
            return Ok(());
        }
        return out.emit(
            || {
                format!(
                    "Queued job {} ({} rows for model {}); a running daemon fills the cache from it. `mlapi job show {}` follows it.",
                    job.id, job.total, job.model, job.id
                )
            },
            || &job,
        );
    }
    let started = std::time::Instant::now();
    let job = loop {
        let (reading, id) = (Arc::clone(app), job.id.clone());
        let now = store::blocking(move || reading.jobs.get(None, &id)).await?;
        if now.status.is_finished() {
            break now;
        }
        if now.status == jobs::Status::Queued
            && started.elapsed() > std::time::Duration::from_secs(5)
        {
            let why = if app.config.jobs.workers == 0 {
                Some("this configuration runs no job workers (jobs.workers = 0)")
            } else if control::ask_all(app.state_dir.clone(), control::Request::CacheStats)
                .await
                .is_empty()
            {
                Some("no daemon runs on this machine")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(CliError::Failed(format!(
                    "job {} is queued, but {why}; it runs when a daemon with workers takes it",
                    now.id
                )));
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    if job.status != jobs::Status::Succeeded {
        return Err(CliError::Failed(format!(
            "job {} {}: {}",
            job.id,
            job.status.as_str(),
            job.error.clone().unwrap_or_default()
        )));
    }
    out.emit(
        || {
            format!(
                "Warmed {} rows for model {} (job {}).",
                job.total, job.model, job.id
            )
        },
        || &job,
    )
}

async fn flush(
    app: &Arc<App>,
    model: Option<String>,
    yes: bool,
    out: &Output,
) -> Result<(), CliError> {
    let names = models::names(&app.config);
    if let Some(name) = &model {
        if !names.iter().any(|n| n == name) {
            return Err(CliError::Usage(format!(
                "no model named {name:?}; models: {}",
                names.join(", ")
            )));
        }
    }
    let what = model
        .as_deref()
        .map_or("all cached predictions".to_string(), |m| {
            format!("the cached predictions of model {m}")
        });
    if !yes && !confirm(&format!("Drop {what}?"))? {
        return Err(CliError::Failed("not confirmed; nothing flushed".into()));
    }
    // Redis first: a daemon that drops its entries must not refill them from
    // stale Redis values.
    let redis = match &app.remote {
        None => None,
        Some(remote) => Some(match remote.connect_now().await {
            Ok(()) => cache::flush_redis(remote, model.as_deref())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }),
    };
    app.flushes.record(model.clone(), &Actor::cli()).await?;
    let removed = match redis {
        Some(Err(e)) => {
            return Err(CliError::Failed(format!(
                "running daemons drop their in-process entries within a second, but Redis was not flushed: {e}"
            )))
        }
        Some(Ok(n)) => Some(n),
        None => None,
    };
    out.emit(
        || {
            let redis = removed.map_or("no Redis configured".to_string(), |n| {
                format!("{n} Redis keys removed")
            });
            format!("Flushed {what}: {redis}; running daemons drop their in-process entries within a second.")
        },
        || json!({"model": model, "redis_keys_removed": removed}),
    )
}

async fn stats(app: &Arc<App>, out: &Output) -> Result<(), CliError> {
    let daemons = control::ask_all(app.state_dir.clone(), control::Request::CacheStats).await;
    let redis_entries = match &app.remote {
        None => None,
        Some(remote) => match remote.connect_now().await {
            Ok(()) => cache::count_redis(remote).await.ok(),
            Err(e) => {
                eprintln!("mlapi: warning: {e}; Redis entries not counted");
                None
            }
        },
    };
    let rows: Vec<Value> = daemons
        .iter()
        .map(|(pid, stats)| {
            let mut row = stats.clone();
            row["pid"] = json!(pid);
            row
        })
        .collect();
    let (hits, misses) = rows.iter().fold((0, 0), |(h, m), r| {
        (
            h + r["hits"].as_u64().unwrap_or(0),
            m + r["misses"].as_u64().unwrap_or(0),
        )
    });
    let total = json!({
        "entries": rows.iter().map(|r| r["entries"].as_u64().unwrap_or(0)).sum::<u64>(),
        "hits": hits,
        "misses": misses,
        "hit_rate": if hits + misses == 0 { 0.0 } else { hits as f64 / (hits + misses) as f64 },
    });
    out.emit(
        || {
            if rows.is_empty() && redis_entries.is_none() {
                return "no running daemon found on this machine and no Redis configured: nothing is cached".into();
            }
            let line = |source: String, v: &Value| {
                vec![
                    source,
                    v["entries"].to_string(),
                    v["hits"].to_string(),
                    v["misses"].to_string(),
                    format!("{:.1} %", 100.0 * v["hit_rate"].as_f64().unwrap_or(0.0)),
                ]
            };
            let mut table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| line(format!("daemon {}", r["pid"]), r))
                .collect();
            if rows.len() > 1 {
                table.push(line("all daemons".into(), &total));
            }
            if let Some(n) = redis_entries {
                table.push(vec![
                    "redis".into(),
                    n.to_string(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ]);
            }
            output::table(&["SOURCE", "ENTRIES", "HITS", "MISSES", "HIT RATE"], table)
        },
        || json!({"daemons": rows, "total": total, "redis_entries": redis_entries}),
    )
}
