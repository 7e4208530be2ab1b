//! The SQLite state shared by the daemon and the CLI: opening the file with the
//! right pragmas and permissions, applying the ordered migrations in
//! `migrations/`, and running reads and `BEGIN IMMEDIATE` writes; beside it,
//! the security event log (`audit`) and the generated secret files next to
//! the database (`secrets`).
//!
//! Every call here blocks. Async code reaches it through `Store::run_blocking`
//! (tokio's blocking pool), never on the runtime. This module knows tables,
//! not HTTP or CLI concerns; it imports only `core` and `config`.

pub mod audit;
pub mod secrets;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, Transaction, TransactionBehavior};

pub use crate::core::error::StoreError;

/// The schema, in order. `PRAGMA user_version` records how many are applied.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init.sql",
        include_str!("../../migrations/0001_init.sql"),
    ),
    (
        "0002_identity.sql",
        include_str!("../../migrations/0002_identity.sql"),
    ),
    (
        "0003_api_keys.sql",
        include_str!("../../migrations/0003_api_keys.sql"),
    ),
    (
        "0004_api_versions.sql",
        include_str!("../../migrations/0004_api_versions.sql"),
    ),
    (
        "0005_cache_flushes.sql",
        include_str!("../../migrations/0005_cache_flushes.sql"),
    ),
    (
        "0006_audit_api_key.sql",
        include_str!("../../migrations/0006_audit_api_key.sql"),
    ),
    (
        "0007_jobs.sql",
        include_str!("../../migrations/0007_jobs.sql"),
    ),
    (
        "0008_job_events.sql",
        include_str!("../../migrations/0008_job_events.sql"),
    ),
    (
        "0009_job_inputs.sql",
        include_str!("../../migrations/0009_job_inputs.sql"),
    ),
];

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// A pool of connections to one SQLite file.
#[derive(Clone)]
pub struct Store {
    pool: Pool<SqliteConnectionManager>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// `f` in a `BEGIN IMMEDIATE` transaction on `conn`, committed only if it succeeds.
fn immediate<T, E: From<StoreError>>(
    conn: &mut Connection,
    f: impl FnOnce(&Transaction) -> Result<T, E>,
) -> Result<T, E> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(StoreError::from)?;
    let value = f(&tx)?;
    tx.commit().map_err(StoreError::from)?;
    Ok(value)
}

/// A pooled connection that `write_recomputable` set to `synchronous =
/// NORMAL`, set back to FULL when dropped.
struct Flushing(r2d2::PooledConnection<SqliteConnectionManager>);

impl Drop for Flushing {
    fn drop(&mut self) {
        if let Err(e) = self.0.execute_batch("PRAGMA synchronous = FULL") {
            // Only a broken connection fails this; say so, it cannot be undone here.
            tracing::error!(error = %e, "could not set a database connection back to synchronous = FULL");
        }
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema
    /// up to date. Refuses a database written by a newer mlapi.
    pub fn open(
        path: &Path,
        busy_timeout: Duration,
        max_connections: u32,
    ) -> Result<Self, StoreError> {
        let open_err = |message: String| StoreError::Open {
            path: path.to_path_buf(),
            message,
        };
        if path.is_dir() {
            return Err(open_err(
                "is a directory; give the path of a database file".into(),
            ));
        }
        create_private_file(path).map_err(|e| open_err(e.to_string()))?;
        // One direct connection first: a file that is not a database fails
        // here at once with SQLite's own reason, not after a pool timeout.
        Connection::open(path)
            .and_then(|c| c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)))
            .map_err(|e| open_err(e.to_string()))?;

        let manager = SqliteConnectionManager::file(path).with_init(move |c| {
            c.busy_timeout(busy_timeout)?;
            c.execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA foreign_keys = ON;",
            )
        });
        let pool = Pool::builder()
            .max_size(max_connections)
            .min_idle(Some(0))
            .connection_timeout(busy_timeout.max(Duration::from_secs(1)))
            .build(manager)
            .map_err(|e| open_err(e.to_string()))?;
        let store = Store {
            pool,
            path: path.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<SqliteConnectionManager>, StoreError> {
        self.pool.get().map_err(|e| {
            // A bare timeout means every connection stayed busy (a long write
            // lock elsewhere, or more waiters than connections): retryable.
            // With a cause attached, the file itself could not be opened.
            let message = e.to_string();
            if message == "timed out waiting for connection" {
                StoreError::Busy
            } else {
                StoreError::Open {
                    path: self.path.clone(),
                    message,
                }
            }
        })
    }

    /// Runs `f` on a connection for reading. WAL readers never wait for writers.
    /// `f` may refuse with any error a `StoreError` converts into (a domain
    /// `Error`, say), so a refusal needs no nesting inside the store's result.
    pub fn read<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        f(&*self.conn()?)
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction: the write lock is taken up
    /// front, so a concurrent writer waits (up to the busy timeout) instead of
    /// failing on a read-to-write upgrade. Commits only if `f` succeeds; an
    /// error of `f` (a store failure or a domain refusal) rolls back.
    pub fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Transaction) -> Result<T, E>,
    ) -> Result<T, E> {
        immediate(&mut *self.conn()?, f)
    }

    /// `write` for work that can be done again: the commit is not flushed
    /// to disk on its own (WAL's `synchronous = NORMAL` for this transaction
    /// only), so it costs no fsync. It survives the process being killed; a
    /// power cut may undo it, and every later one such, never half of one.
    pub fn write_recomputable<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Transaction) -> Result<T, E>,
    ) -> Result<T, E> {
        let conn = self.conn()?;
        conn.execute_batch("PRAGMA synchronous = NORMAL")
            .map_err(StoreError::from)?;
        // Back to FULL on every way out (a panic in `f` too), so no other
        // write on this pooled connection goes unflushed.
        let mut conn = Flushing(conn);
        immediate(&mut conn.0, f)
    }

    /// Runs `f` with this store on tokio's blocking pool, so SQLite never
    /// blocks the async runtime. A panic in `f` resumes in the caller.
    pub async fn run_blocking<T, F>(&self, f: F) -> T
    where
        F: FnOnce(&Store) -> T + Send + 'static,
        T: Send + 'static,
    {
        let store = self.clone();
        blocking(move || f(&store)).await
    }

    /// The readiness probe: a real query, and the schema version found
    /// (which the caller compares with `SCHEMA_VERSION`).
    pub fn check(&self) -> Result<i64, StoreError> {
        self.read(user_version)
    }

    /// Applies pending migrations, each in its own `BEGIN IMMEDIATE`
    /// transaction that re-reads the version, so a daemon and a CLI starting
    /// together never apply one twice.
    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let current = user_version(&conn)?;
        if current > SCHEMA_VERSION {
            return Err(self.too_new(current));
        }
        for (index, (name, sql)) in MIGRATIONS.iter().enumerate() {
            let target = index as i64 + 1;
            if target <= current {
                continue;
            }
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = user_version(&tx)?;
            if now > SCHEMA_VERSION {
                return Err(self.too_new(now));
            }
            if now < target {
                tx.execute_batch(sql)
                    .map_err(|source| StoreError::Migration { name, source })?;
                tx.pragma_update(None, "user_version", target)?;
            }
            tx.commit()?;
        }
        Ok(())
    }

    fn too_new(&self, found: i64) -> StoreError {
        StoreError::TooNew {
            path: self.path.clone(),
            found,
            supported: SCHEMA_VERSION,
        }
    }
}

/// Advances the change counter daemons watch, inside the caller's write
/// transaction, and returns the new value for the changed rows' `rev`.
pub fn bump_version(tx: &Transaction) -> Result<i64, StoreError> {
    Ok(tx.query_row(
        "UPDATE state_version SET version = version + 1 WHERE id = 1 RETURNING version",
        [],
        |r| r.get(0),
    )?)
}

/// The change counter; cheap enough to poll.
pub fn current_version(c: &Connection) -> Result<i64, StoreError> {
    Ok(
        c.query_row("SELECT version FROM state_version WHERE id = 1", [], |r| {
            r.get(0)
        })?,
    )
}

/// Runs blocking work (SQLite, a unix-socket round trip) on tokio's blocking
/// pool. A panic in `f` resumes in the caller, as if it had run inline.
pub async fn blocking<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

fn user_version(c: &Connection) -> Result<i64, StoreError> {
    Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// Creates the parent directory (0700) and an empty database file (0600) if
/// missing, so the file never exists with wider permissions. SQLite gives the
/// `-wal` and `-shm` files the same mode as the database.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
        }
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = fs::metadata(path)?.permissions().mode();
            if mode & 0o007 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "database file is world-accessible; chmod 600 it");
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_list_matches_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            files, listed,
            "every file in migrations/ must be listed in MIGRATIONS, in order"
        );
    }

    #[test]
    fn a_recomputable_write_commits_and_leaves_the_connection_flushing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("mlapi.db"), Duration::from_secs(1), 1).unwrap();
        let synchronous = |store: &Store| {
            store.read(|c| -> Result<i64, StoreError> {
                Ok(c.query_row("PRAGMA synchronous", [], |r| r.get(0))?)
            })
        };
        // FULL is 2, NORMAL 1; one pooled connection, so it is the same one.
        assert_eq!(synchronous(&store).unwrap(), 2);
        let insert =
            "INSERT INTO audit_events (actor, action, outcome) VALUES ('t', 'x', 'success')";
        store
            .write_recomputable(|tx| -> Result<_, StoreError> {
                assert_eq!(
                    tx.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))?,
                    1
                );
                Ok(tx.execute(insert, [])?)
            })
            .unwrap();
        // A refusal rolls back and restores the setting too.
        let refused = store.write_recomputable(|tx| -> Result<(), StoreError> {
            tx.execute(insert, [])?;
            Err(StoreError::Busy)
        });
        assert!(refused.is_err());
        assert_eq!(synchronous(&store).unwrap(), 2);
        // And so does a panic inside the transaction.
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            store.write_recomputable(|_| -> Result<(), StoreError> { panic!("in a transaction") })
        }));
        assert!(panicked.is_err());
        assert_eq!(synchronous(&store).unwrap(), 2);
        let rows = store
            .read(|c| -> Result<i64, StoreError> {
                Ok(c.query_row(
                    "SELECT count(*) FROM audit_events WHERE actor = 't'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert_eq!(rows, 1);
    }

    #[test]
    fn open_creates_private_file_and_applies_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/mlapi.db");
        let store = Store::open(&path, Duration::from_secs(1), 2).unwrap();
        assert_eq!(store.check().unwrap(), SCHEMA_VERSION);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        store
            .write(|tx| -> Result<_, StoreError> {
                tx.execute("INSERT INTO audit_events (actor, action, outcome) VALUES ('t', 'x', 'success')", [])?;
                Ok(())
            })
            .unwrap();
        for side in ["mlapi.db-wal", "mlapi.db-shm"] {
            let mode = fs::metadata(path.with_file_name(side))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{side}");
        }
        let mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
        let journal: String = store
            .read(|c| -> Result<_, StoreError> {
                Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?)
            })
            .unwrap();
        assert_eq!(journal, "wal");
        // Reopening is a no-op, not a second migration.
        drop(store);
        Store::open(&path, Duration::from_secs(1), 2).unwrap();
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mlapi.db");
        Store::open(&path, Duration::from_secs(1), 1).unwrap();
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = Store::open(&path, Duration::from_secs(1), 1).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
        assert!(err
            .to_string()
            .contains("newer than this mlapi understands"));
    }

    #[test]
    fn failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("mlapi.db"), Duration::from_secs(1), 2).unwrap();
        let result: Result<(), StoreError> = store.write(|tx| {
            tx.execute(
                "INSERT INTO audit_events (actor, action, outcome) VALUES ('t', 'x', 'success')",
                [],
            )?;
            Err(StoreError::Busy)
        });
        assert!(result.is_err());
        let n: i64 = store
            .read(|c| -> Result<_, StoreError> {
                Ok(c.query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))?)
            })
            .unwrap();
        assert_eq!(n, 0);
    }
}
