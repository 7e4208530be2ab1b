//! Cache flushes broadcast through SQLite: `mlapi cache flush` records one
//! (with its audit row), and every daemon sharing the database applies the
//! ones it has not seen to its in-process cache within a second
//! (`daemon`'s state watcher). This is how a flush reaches daemons with or
//! without Redis.
//!
//! It does not touch the cache's Redis tier (that is `cache::flush_redis`).

use std::sync::atomic::{AtomicI64, Ordering};

use rusqlite::params;

use super::cache::Cache;
use crate::core::error::Result;
use crate::core::time;
use crate::store::audit::{self, Action, Actor, Outcome};
use crate::store::{Store, StoreError};

/// The flush log and this process's position in it.
#[derive(Debug)]
pub struct Flushes {
    store: Store,
    /// The newest flush this process has applied.
    applied: AtomicI64,
}

impl Flushes {
    /// Starts after the newest flush: a fresh daemon's cache is empty anyway.
    /// Blocking.
    pub fn open(store: Store) -> std::result::Result<Self, StoreError> {
        let last: i64 = store.read(|c| -> std::result::Result<_, StoreError> {
            Ok(
                c.query_row("SELECT COALESCE(MAX(id), 0) FROM cache_flushes", [], |r| {
                    r.get(0)
                })?,
            )
        })?;
        Ok(Flushes {
            store,
            applied: AtomicI64::new(last),
        })
    }

    /// Records a flush of every model (`None`) or one.
    pub async fn record(&self, model: Option<String>, actor: &Actor) -> Result<()> {
        let actor = actor.clone();
        self.store
            .run_blocking(move |store| {
                store.write(|tx| -> Result<_> {
                    tx.execute(
                        "INSERT INTO cache_flushes (model, flushed_at) VALUES (?1, ?2)",
                        params![model, time::now()],
                    )?;
                    let target = model.as_deref().unwrap_or("all models");
                    audit::record(
                        tx,
                        &actor,
                        Action::CacheFlush,
                        Some(target),
                        Outcome::Success,
                        None,
                    )?;
                    Ok(())
                })
            })
            .await
    }

    /// Applies flushes recorded since the last call. Blocking (one indexed read).
    pub fn apply_new(&self, cache: &Cache) -> std::result::Result<(), StoreError> {
        let after = self.applied.load(Ordering::Relaxed);
        let new: Vec<(i64, Option<String>)> =
            self.store.read(|c| -> std::result::Result<_, StoreError> {
                let mut stmt = c.prepare_cached(
                    "SELECT id, model FROM cache_flushes WHERE id > ?1 ORDER BY id",
                )?;
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
            self.applied.store(id, Ordering::Relaxed);
        }
        Ok(())
    }
}
