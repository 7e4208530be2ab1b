//! Cache flushes broadcast through SQLite: `mlapi cache flush` records one
//! (with its audit row), and every daemon sharing the database applies the
//! ones it has not seen to its in-process cache within a second
//! (`server::watch_state`). This is how a flush reaches daemons with or
//! without Redis.
//!
//! It does not touch the cache's Redis tier (that is `cache::flush_redis`).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use rusqlite::params;

use crate::app::App;
use crate::audit::{self, Action, Actor};
use crate::cache::Cache;
use crate::error::Result;
use crate::store::{Store, StoreError};

/// Records a flush of every model (`None`) or one.
pub async fn record(app: &Arc<App>, model: Option<String>, actor: &Actor) -> Result<()> {
    let actor = actor.clone();
    app.blocking(move |app| {
        app.store.write(|tx| {
            tx.execute(
                "INSERT INTO cache_flushes (model, flushed_at) VALUES (?1, ?2)",
                params![model, crate::store::now()],
            )?;
            let target = model.as_deref().unwrap_or("all models");
            audit::record(tx, &actor, Action::CacheFlush, Some(target), true, None)
        })
    })
    .await?;
    Ok(())
}

/// A daemon's position in the flush log.
#[derive(Debug, Default)]
pub struct Applied(AtomicI64);

impl Applied {
    /// Starts after the newest flush: a fresh daemon's cache is empty anyway.
    pub fn start(store: &Store) -> std::result::Result<Self, StoreError> {
        let last: i64 = store.read(|c| {
            Ok(
                c.query_row("SELECT COALESCE(MAX(id), 0) FROM cache_flushes", [], |r| {
                    r.get(0)
                })?,
            )
        })?;
        Ok(Applied(AtomicI64::new(last)))
    }

    /// Applies flushes recorded since the last call. Blocking (one indexed read).
    pub fn apply_new(&self, store: &Store, cache: &Cache) -> std::result::Result<(), StoreError> {
        let after = self.0.load(Ordering::Relaxed);
        let new: Vec<(i64, Option<String>)> = store.read(|c| {
            let mut stmt =
                c.prepare_cached("SELECT id, model FROM cache_flushes WHERE id > ?1 ORDER BY id")?;
            let rows = stmt.query_map([after], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        for (id, model) in new {
            match &model {
                None => cache.invalidate_all(),
                Some(name) => cache.invalidate_model(name),
            }
            tracing::info!(
                model = model.as_deref().unwrap_or("*"),
                "cache flushed by an operator"
            );
            self.0.store(id, Ordering::Relaxed);
        }
        Ok(())
    }
}
