//! Batch jobs: many instances accepted at once, committed to the store
//! before the caller hears "accepted", and run in chunks by whichever daemon
//! holds the job's lease. Each chunk's results and the job's progress are
//! committed in one transaction that also checks the lease, so a daemon
//! killed mid-job leaves nothing half-written: after the lease lapses any
//! daemon on the same store resumes from the last committed chunk, every
//! instance's result exists exactly once, and the job finishes once.
//!
//! The rows and rules live here; running a chunk (`Registry::predict`) is
//! the caller's (`daemon::tasks`), so this module never touches a model.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::events::Events;
use crate::config::JobsConfig;
use crate::core::error::{Error, FieldError, Result};
use crate::core::metrics::Exposition;
use crate::core::time::{self, serde::rfc3339, serde::rfc3339_opt};
use crate::store::{Store, StoreError};

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Queued,
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Cancelled)
    }
}

/// A job as `GET /api/v1/jobs/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: String,
    /// `None`: an operator's job (`mlapi cache warm`).
    #[serde(skip)]
    pub user_id: Option<String>,
    pub status: Status,
    pub model: String,
    pub model_version: Option<String>,
    pub explain: bool,
    pub total: u64,
    pub done: u64,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: i64,
    #[serde(serialize_with = "rfc3339_opt")]
    pub started_at: Option<i64>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub finished_at: Option<i64>,
    pub error: Option<String>,
}

const COLUMNS: &str = "id, user_id, status, model, model_version, explain, total, done, \
                       created_at, started_at, finished_at, error";

fn job_from_row(row: &rusqlite::Row) -> rusqlite::Result<Job> {
    let status: String = row.get(2)?;
    Ok(Job {
        id: row.get(0)?,
        user_id: row.get(1)?,
        status: Status::parse(&status).unwrap_or(Status::Failed),
        model: row.get(3)?,
        model_version: row.get(4)?,
        explain: row.get(5)?,
        total: row.get::<_, i64>(6)? as u64,
        done: row.get::<_, i64>(7)? as u64,
        created_at: row.get(8)?,
        started_at: row.get(9)?,
        finished_at: row.get(10)?,
        error: row.get(11)?,
    })
}

/// One job by id, of `owner` when given; 404 otherwise.
fn find(c: &rusqlite::Connection, owner: Option<&str>, id: &str) -> Result<Job> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2)"
    ))
    .map_err(StoreError::from)?
    .query_row(params![id, owner], job_from_row)
    .optional()
    .map_err(StoreError::from)?
    .ok_or_else(|| Error::NotFound(format!("no job {id:?}")))
}

/// A job to create: validated rows, for a model that exists.
pub struct NewJob {
    /// `None`: an operator's job, outside every user's cap and listing.
    pub user_id: Option<String>,
    pub model: String,
    pub rows: Vec<Vec<f64>>,
    pub explain: bool,
    pub idempotency_key: Option<String>,
    /// The request body as sent, to tell a retry from a different request.
    pub body: Vec<u8>,
}

/// What `submit` did.
pub enum Submitted {
    Created(Job),
    /// The same `Idempotency-Key` and body as an earlier request: that job.
    Existing(Job),
}

/// A claimed job, for a worker to run from `done` on.
#[derive(Debug)]
pub struct Claimed {
    pub job: Job,
    /// The rows as sent (the cache keys them by these values); `total` of them.
    pub rows: Vec<Vec<f64>>,
    /// This claim's name in `lease_owner`: the process and a token of its
    /// own, so a worker whose lease lapsed cannot act for the one that
    /// claimed the job after it, even in the same process.
    pub lease: String,
}

/// What committing a chunk found.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// More chunks to run.
    Continue,
    Finished,
    /// Cancelled meanwhile; the worker stops.
    Cancelled,
    /// Another daemon holds the job now (this one was too slow): nothing
    /// was written.
    LostLease,
}

/// One page of results.
#[derive(Debug, Serialize)]
pub struct Page {
    pub id: String,
    pub status: Status,
    pub results: Vec<Box<serde_json::value::RawValue>>,
    pub next_offset: Option<u64>,
}

/// The jobs service.
pub struct Jobs {
    store: Store,
    config: JobsConfig,
    /// This process, as `lease_owner` records it.
    owner: String,
    /// Instances computed by this process, by outcome (for `/metrics`).
    instances_ok: AtomicU64,
    instances_failed: AtomicU64,
    /// Wakes this process's idle workers when it accepts a job (other
    /// daemons' workers find it at their next poll).
    submitted: tokio::sync::Notify,
    /// Live events for this process's sockets and streams.
    events: Arc<Events>,
    /// The change feed's position: the highest `rev` read (`None`: not yet).
    feed: std::sync::Mutex<Option<i64>>,
}

/// A job write's new `rev`: above every other job's (writes are serialized).
const NEXT_REV: &str =
    "(SELECT MAX(COALESCE(MAX(rev), 0), (SELECT n FROM job_rev_floor)) + 1 FROM jobs)";

/// How long an `Idempotency-Key` names its job.
const IDEMPOTENCY_SECS: i64 = 24 * 3600;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Jobs {
    pub fn new(store: Store, config: JobsConfig) -> Jobs {
        Jobs {
            store,
            config,
            owner: format!(
                "pid-{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            instances_ok: AtomicU64::new(0),
            instances_failed: AtomicU64::new(0),
            submitted: tokio::sync::Notify::new(),
            events: Arc::default(),
            feed: std::sync::Mutex::new(None),
        }
    }

    /// The live-event hub of this process.
    pub fn events(&self) -> &Arc<Events> {
        &self.events
    }

    /// Reads the jobs any process changed since the last call and publishes
    /// them (blocking). The first call only finds the feed's end.
    pub fn read_changes(&self) -> Result<()> {
        let mut feed = self.feed.lock().expect("feed lock");
        let Some(since) = *feed else {
            let end: i64 = self.store.read(|c| {
                c.query_row("SELECT COALESCE(MAX(rev), 0) FROM jobs", [], |r| r.get(0))
                    .map_err(StoreError::from)
            })?;
            *feed = Some(end);
            return Ok(());
        };
        let changed: Vec<(Job, i64)> = self.store.read(|c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS}, rev FROM jobs WHERE rev > ?1 ORDER BY rev LIMIT 1000"
                ))
                .map_err(StoreError::from)?;
            let rows = stmt
                .query_map([since], |row| Ok((job_from_row(row)?, row.get(12)?)))
                .map_err(StoreError::from)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(StoreError::from)
        })?;
        for (job, rev) in changed {
            self.events.publish(&job);
            *feed = Some(rev);
        }
        Ok(())
    }

    pub fn config(&self) -> &JobsConfig {
        &self.config
    }

    /// This process's lease name (`pid-<pid>-<random>`).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Resolves when this process accepts a job.
    pub async fn submitted(&self) {
        self.submitted.notified().await;
    }

    /// Creates the job (blocking): the rows are committed when this returns.
    pub fn submit(&self, new: NewJob) -> Result<Submitted> {
        let submitted = self.insert(new)?;
        if let Submitted::Created(job) = &submitted {
            // Told before a worker can start it: queued comes first.
            self.events.publish(job);
            self.submitted.notify_waiters();
        }
        Ok(submitted)
    }

    fn insert(&self, new: NewJob) -> Result<Submitted> {
        let digest = format!("{:x}", Sha256::digest(&new.body));
        let instances = serde_json::to_string(&new.rows).expect("numbers serialize");
        let now = time::now();
        let max_active = self.config.max_active_per_user;
        self.store.write(|tx| {
            if let Some(key) = &new.idempotency_key {
                let earlier: Option<(Job, String)> = tx
                    .query_row(
                        &format!(
                            "SELECT {COLUMNS}, body_digest FROM jobs \
                             WHERE user_id = ?1 AND idempotency_key = ?2 AND created_at > ?3"
                        ),
                        params![new.user_id, key, now - IDEMPOTENCY_SECS],
                        |row| Ok((job_from_row(row)?, row.get(12)?)),
                    )
                    .optional()
                    .map_err(StoreError::from)?;
                if let Some((job, body)) = earlier {
                    if body != digest {
                        return Err(Error::Invalid(vec![FieldError::new(
                            "Idempotency-Key",
                            "was used for a different request; use a new key for a new job",
                        )]));
                    }
                    return Ok(Submitted::Existing(job));
                }
                // An expired key may name a new job.
                tx.execute(
                    "UPDATE jobs SET idempotency_key = NULL WHERE user_id = ?1 AND idempotency_key = ?2",
                    params![new.user_id, key],
                )
                .map_err(StoreError::from)?;
            }
            let active: u32 = tx
                .query_row(
                    "SELECT count(*) FROM jobs WHERE user_id = ?1 AND status IN ('queued', 'running')",
                    params![new.user_id],
                    |row| row.get(0),
                )
                .map_err(StoreError::from)?;
            if new.user_id.is_some() && active >= max_active {
                return Err(Error::TooMany {
                    detail: format!(
                        "you have {active} queued or running jobs, the most allowed \
                         (jobs.max_active_per_user); submit more when one finishes"
                    ),
                    retry_after: 5,
                });
            }
            let id = uuid::Uuid::new_v4().to_string();
            tx.execute(
                &format!(
                    "INSERT INTO jobs (id, user_id, model, explain, status, total, \
                     idempotency_key, body_digest, created_at, rev) \
                     VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?7, ?8, {NEXT_REV})"
                ),
                params![
                    id,
                    new.user_id,
                    new.model,
                    new.explain,
                    new.rows.len() as i64,
                    new.idempotency_key,
                    digest,
                    now
                ],
            )
            .map_err(StoreError::from)?;
            tx.execute(
                "INSERT INTO job_inputs (job_id, instances) VALUES (?1, ?2)",
                params![id, instances],
            )
            .map_err(StoreError::from)?;
            Ok(Submitted::Created(Job {
                id,
                user_id: new.user_id.clone(),
                status: Status::Queued,
                model: new.model.clone(),
                model_version: None,
                explain: new.explain,
                total: new.rows.len() as u64,
                done: 0,
                created_at: now,
                started_at: None,
                finished_at: None,
                error: None,
            }))
        })
    }

    /// One job; `owner` (a user id) limits it to that user's (another
    /// user's job is not found, not forbidden).
    pub fn get(&self, owner: Option<&str>, id: &str) -> Result<Job> {
        self.store.read(|c| find(c, owner, id))
    }

    /// Jobs newest first; `owner` limits them to one user's.
    pub fn list(
        &self,
        owner: Option<&str>,
        status: Option<Status>,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<Job>> {
        self.store.read(|c| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM jobs WHERE (?1 IS NULL OR user_id = ?1) \
                     AND (?2 IS NULL OR status = ?2) \
                     ORDER BY created_at DESC, rowid DESC LIMIT ?3 OFFSET ?4"
                ))
                .map_err(StoreError::from)?;
            let rows = stmt
                .query_map(
                    params![owner, status.map(Status::as_str), limit, offset as i64],
                    job_from_row,
                )
                .map_err(StoreError::from)?;
            Ok(rows
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(StoreError::from)?)
        })
    }

    /// Results in input order from `offset`, as far as chunks have finished.
    pub fn results(&self, owner: Option<&str>, id: &str, offset: u64, limit: u32) -> Result<Page> {
        let job = self.get(owner, id)?;
        self.store.read(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT result FROM job_results WHERE job_id = ?1 AND idx >= ?2 \
                     ORDER BY idx LIMIT ?3",
                )
                .map_err(StoreError::from)?;
            let texts = stmt
                .query_map(params![id, offset as i64, limit], |row| {
                    row.get::<_, String>(0)
                })
                .map_err(StoreError::from)?
                .collect::<rusqlite::Result<Vec<String>>>()
                .map_err(StoreError::from)?;
            let results: Vec<Box<serde_json::value::RawValue>> = texts
                .into_iter()
                .filter_map(|text| serde_json::value::RawValue::from_string(text).ok())
                .collect();
            let next = offset + results.len() as u64;
            // More may come while the job runs; a finished job has what it has.
            let more = next < job.total && !(job.status.is_finished() && next >= job.done);
            Ok(Page {
                id: job.id.clone(),
                status: job.status,
                next_offset: more.then_some(next),
                results,
            })
        })
    }

    /// Cancels a queued or running job (a running one stops at its next
    /// chunk); a finished one is a conflict.
    pub fn cancel(&self, owner: Option<&str>, id: &str) -> Result<Job> {
        let now = time::now();
        let job = self.store.write(|tx| {
            let job = find(tx, owner, id)?;
            if job.status.is_finished() {
                return Err(Error::Conflict(format!(
                    "job {id} already {}",
                    job.status.as_str()
                )));
            }
            tx.execute(
                &format!(
                    "UPDATE jobs SET status = 'cancelled', finished_at = ?2, lease_owner = NULL, \
                     lease_until_ms = NULL, rev = {NEXT_REV} WHERE id = ?1"
                ),
                params![id, now],
            )
            .map_err(StoreError::from)?;
            Ok(Job {
                status: Status::Cancelled,
                finished_at: Some(now),
                ..job
            })
        })?;
        self.events.publish(&job);
        Ok(job)
    }

    /// Deletes finished jobs (and their results) that finished at or
    /// before `before`; returns how many.
    pub fn purge(&self, before: i64) -> Result<usize> {
        self.store.write(|tx| {
            Ok(tx
                .execute(
                    "DELETE FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled') \
                     AND finished_at <= ?1",
                    params![before],
                )
                .map_err(StoreError::from)?)
        })
    }

    /// Finished jobs past `jobs.retention_secs`, deleted.
    pub fn expire(&self) -> Result<usize> {
        self.purge(time::now() - self.config.retention_secs as i64)
    }

    /// Takes the oldest queued job, or a running one whose lease lapsed
    /// (its daemon died or stalled), with a lease of `lease_secs`.
    pub fn claim(&self) -> Result<Option<Claimed>> {
        let now = now_ms();
        // A read first: idle workers do not take the write lock.
        let candidate: Option<String> = self.store.read(|c| {
            Ok::<_, Error>(
                c.query_row(
                    "SELECT id FROM jobs WHERE status = 'queued' \
                     OR (status = 'running' AND lease_until_ms < ?1) \
                     ORDER BY created_at, rowid LIMIT 1",
                    params![now],
                    |row| row.get(0),
                )
                .optional()
                .map_err(StoreError::from)?,
            )
        })?;
        let Some(id) = candidate else {
            return Ok(None);
        };
        let lease = format!(
            "{}-{}",
            self.owner,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let until = now + (self.config.lease_secs * 1000) as i64;
        let claimed = self.store.write(|tx| -> Result<Option<(Job, String)>> {
            // Still claimable: another worker may have taken it meanwhile.
            let found: Option<(Job, String)> = tx
                .query_row(
                    &format!(
                        "SELECT {COLUMNS}, job_inputs.instances FROM jobs \
                         JOIN job_inputs ON job_inputs.job_id = jobs.id \
                         WHERE jobs.id = ?1 AND (status = 'queued' \
                         OR (status = 'running' AND lease_until_ms < ?2))"
                    ),
                    params![id, now],
                    |row| Ok((job_from_row(row)?, row.get(12)?)),
                )
                .optional()
                .map_err(StoreError::from)?;
            let Some((job, instances)) = found else {
                return Ok(None);
            };
            let started = job.started_at.unwrap_or_else(time::now);
            tx.execute(
                &format!(
                    "UPDATE jobs SET status = 'running', lease_owner = ?2, lease_until_ms = ?3, \
                     started_at = ?4, rev = {NEXT_REV} WHERE id = ?1"
                ),
                params![job.id, lease, until, started],
            )
            .map_err(StoreError::from)?;
            Ok(Some((
                Job {
                    status: Status::Running,
                    started_at: Some(started),
                    ..job
                },
                instances,
            )))
        })?;
        let Some((job, instances)) = claimed else {
            return Ok(None);
        };
        self.events.publish(&job);
        // Parsed outside the write lock. Rows that do not match the job
        // (they always should) end it rather than any worker that takes it.
        let rows: Vec<Vec<f64>> = serde_json::from_str(&instances).unwrap_or_default();
        if rows.len() as u64 != job.total || job.done > job.total {
            self.fail(
                &job.id,
                &lease,
                "the job's stored rows are unreadable",
                job.total - job.done.min(job.total),
            )?;
            return Ok(None);
        }
        Ok(Some(Claimed { job, rows, lease }))
    }

    /// Extends a claim's lease while a chunk is computed; `false` when the
    /// claim is no longer this one's (taken over, cancelled, finished).
    pub fn renew(&self, id: &str, lease: &str) -> Result<bool> {
        let until = now_ms() + (self.config.lease_secs * 1000) as i64;
        self.store.write(|tx| -> Result<bool> {
            Ok(tx
                .execute(
                    "UPDATE jobs SET lease_until_ms = ?3 WHERE id = ?1 AND lease_owner = ?2 \
                     AND status = 'running'",
                    params![id, lease, until],
                )
                .map_err(StoreError::from)?
                == 1)
        })
    }

    /// Whether the job was cancelled (or deleted) meanwhile.
    pub fn cancelled(&self, id: &str) -> Result<bool> {
        self.store.read(|c| {
            let status: Option<String> = c
                .query_row(
                    "SELECT status FROM jobs WHERE id = ?1",
                    params![id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(StoreError::from)?;
            Ok(status.is_none_or(|s| s == "cancelled"))
        })
    }

    /// Commits the results of instances `start..start + results.len()` with
    /// the progress, if this process still holds the lease and the job is
    /// where it left it; renews the lease. A chunk before the last of the
    /// job's `total` is committed without its own fsync: a power cut can
    /// only take the job back to an earlier chunk, results and progress
    /// together, and a worker computes them again. The last one, which
    /// finishes the job, is flushed.
    pub fn commit_chunk(
        &self,
        id: &str,
        lease: &str,
        (start, total): (u64, u64),
        model_version: &str,
        results: &[String],
    ) -> Result<Progress> {
        let now = now_ms();
        let until = now + (self.config.lease_secs * 1000) as i64;
        let mut changed = None;
        let commit = |tx: &rusqlite::Transaction| -> Result<Progress> {
            // Cached statements: a job commits a chunk many times a second.
            let (status, owner, done, total): (String, Option<String>, i64, i64) = tx
                .prepare_cached("SELECT status, lease_owner, done, total FROM jobs WHERE id = ?1")
                .map_err(StoreError::from)?
                .query_row(params![id], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })
                .optional()
                .map_err(StoreError::from)?
                // Purged meanwhile: as good as cancelled.
                .unwrap_or(("cancelled".into(), None, 0, 0));
            if status == "cancelled" {
                return Ok(Progress::Cancelled);
            }
            let (done, total) = (done as u64, total as u64);
            if status != "running" || owner.as_deref() != Some(lease) || done != start {
                return Ok(Progress::LostLease);
            }
            let mut insert = tx
                .prepare_cached("INSERT INTO job_results (job_id, idx, result) VALUES (?1, ?2, ?3)")
                .map_err(StoreError::from)?;
            for (i, result) in results.iter().enumerate() {
                insert
                    .execute(params![id, (start + i as u64) as i64, result])
                    .map_err(StoreError::from)?;
            }
            let done = start + results.len() as u64;
            let finished = done >= total;
            tx.prepare_cached(&format!(
                "UPDATE jobs SET done = ?2, model_version = ?3, lease_until_ms = ?4, \
                 status = CASE WHEN ?5 THEN 'succeeded' ELSE status END, \
                 finished_at = CASE WHEN ?5 THEN ?6 ELSE finished_at END, \
                 lease_owner = CASE WHEN ?5 THEN NULL ELSE lease_owner END, \
                 rev = {NEXT_REV} WHERE id = ?1"
            ))
            .map_err(StoreError::from)?
            .execute(params![
                id,
                done as i64,
                model_version,
                until,
                finished,
                time::now()
            ])
            .map_err(StoreError::from)?;
            changed = Some(find(tx, None, id)?);
            Ok(if finished {
                Progress::Finished
            } else {
                Progress::Continue
            })
        };
        let progress = if start + results.len() as u64 >= total {
            self.store.write(commit)?
        } else {
            self.store.write_recomputable(commit)?
        };
        if matches!(progress, Progress::Continue | Progress::Finished) {
            self.instances_ok
                .fetch_add(results.len() as u64, Ordering::Relaxed);
        }
        if let Some(job) = changed {
            self.events.publish(&job);
        }
        Ok(progress)
    }

    /// Ends a job this process holds as failed (its model is gone, say).
    pub fn fail(&self, id: &str, lease: &str, error: &str, lost_instances: u64) -> Result<()> {
        self.instances_failed
            .fetch_add(lost_instances, Ordering::Relaxed);
        let failed = self.store.write(|tx| -> Result<Option<Job>> {
            let changed = tx
                .execute(
                    &format!(
                        "UPDATE jobs SET status = 'failed', error = ?3, finished_at = ?4, \
                         lease_owner = NULL, lease_until_ms = NULL, rev = {NEXT_REV} \
                         WHERE id = ?1 AND status = 'running' AND lease_owner = ?2"
                    ),
                    params![id, lease, error, time::now()],
                )
                .map_err(StoreError::from)?;
            Ok(if changed == 1 {
                Some(find(tx, None, id)?)
            } else {
                None
            })
        })?;
        if let Some(job) = failed {
            self.events.publish(&job);
        }
        Ok(())
    }

    /// Gives a job back (graceful shutdown): any daemon may claim it at once.
    pub fn release(&self, id: &str, lease: &str) -> Result<()> {
        self.store.write(|tx| -> Result<()> {
            tx.execute(
                "UPDATE jobs SET lease_until_ms = 0 WHERE id = ?1 AND status = 'running' \
                 AND lease_owner = ?2",
                params![id, lease],
            )
            .map_err(StoreError::from)?;
            Ok(())
        })
    }

    /// `mlapi_jobs{status}` (from the store: every daemon's jobs) and
    /// `mlapi_job_instances_total{outcome}` (this daemon's). Blocking.
    pub fn render_metrics(&self, out: &mut String) -> Result<()> {
        let counts: Vec<(String, u64)> = self.store.read(|c| {
            let mut stmt = c
                .prepare("SELECT status, count(*) FROM jobs GROUP BY status")
                .map_err(StoreError::from)?;
            let rows = stmt
                .query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64)))
                .map_err(StoreError::from)?;
            Ok::<_, Error>(
                rows.collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(StoreError::from)?,
            )
        })?;
        let name = "mlapi_jobs";
        let mut family = Exposition::family(out, name, "gauge", "Jobs in the store, by status.");
        for status in Status::ALL {
            let n = counts
                .iter()
                .find(|(s, _)| s == status.as_str())
                .map_or(0, |(_, n)| *n);
            family.sample(name, &[("status", status.as_str())], n);
        }
        let name = "mlapi_job_instances_total";
        let mut family = Exposition::family(
            out,
            name,
            "counter",
            "Job instances this daemon computed and committed (ok) or could not (failed).",
        );
        family.sample(
            name,
            &[("outcome", "ok")],
            self.instances_ok.load(Ordering::Relaxed),
        );
        family.sample(
            name,
            &[("outcome", "failed")],
            self.instances_failed.load(Ordering::Relaxed),
        );
        self.events.render_metrics(out);
        Ok(())
    }
}
