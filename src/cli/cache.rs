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
use crate::serving::{cache, models};
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
}

pub async fn run(app: &Arc<App>, command: CacheCommand, out: &Output) -> Result<(), CliError> {
    match command {
        CacheCommand::Flush { model, yes } => flush(app, model, yes, out).await,
        CacheCommand::Stats => stats(app, out).await,
    }
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
