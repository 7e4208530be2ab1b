//! SQLite under concurrent writers (catalog F2, F3): a writer waits for
//! another process's lock within the busy timeout, gives up cleanly (503 at
//! the HTTP boundary) after it, and concurrent writers never lose a row.

use std::time::{Duration, Instant};

use mlapi::store::{Store, StoreError};
use rusqlite::TransactionBehavior;

use crate::harness::{query_i64, Setup};

fn insert(store: &Store, actor: &str) -> Result<(), StoreError> {
    store.write(|tx| {
        tx.execute(
            "INSERT INTO audit_events (actor, action, outcome) VALUES (?1, 'test_write', 'success')",
            [actor],
        )?;
        Ok(())
    })
}

/// Holds `BEGIN IMMEDIATE` on its own connection (as another process would) for `hold`.
fn hold_write_lock(path: std::path::PathBuf, hold: Duration) -> std::thread::JoinHandle<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let mut conn = rusqlite::Connection::open(path).unwrap();
        let txn = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        tx.send(()).unwrap();
        std::thread::sleep(hold);
        txn.commit().unwrap();
    });
    rx.recv().unwrap();
    handle
}

#[test]
fn a_writer_waits_for_a_short_lock_and_gives_up_on_a_long_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mlapi.db");
    let patient = Store::open(&path, Duration::from_secs(5), 2).unwrap();

    let holder = hold_write_lock(path.clone(), Duration::from_secs(2));
    let started = Instant::now();
    insert(&patient, "patient").expect("waits and succeeds");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "it did wait"
    );
    holder.join().unwrap();

    let impatient = Store::open(&path, Duration::from_millis(300), 2).unwrap();
    let holder = hold_write_lock(path.clone(), Duration::from_secs(2));
    let err = insert(&impatient, "impatient").unwrap_err();
    assert!(matches!(err, StoreError::Busy), "{err}");
    // Readers are not blocked by the writer (WAL).
    let started = Instant::now();
    assert_eq!(impatient.check().unwrap(), mlapi::store::SCHEMA_VERSION);
    assert!(started.elapsed() < Duration::from_millis(200));
    holder.join().unwrap();
    assert_eq!(
        query_i64(
            &path,
            "SELECT count(*) FROM audit_events WHERE actor = 'impatient'"
        ),
        0
    );
}

#[test]
fn concurrent_writers_from_separate_connections_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mlapi.db");
    let writers: Vec<_> = (0..4)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                // Each writer has its own pool, like a separate process.
                let store = Store::open(&path, Duration::from_secs(5), 1).unwrap();
                for _ in 0..150 {
                    insert(&store, &format!("writer{i}")).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(
        query_i64(
            &path,
            "SELECT count(*) FROM audit_events WHERE action = 'test_write'"
        ),
        600
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}

#[test]
fn the_daemon_stays_ready_while_another_process_holds_the_write_lock() {
    let setup = Setup::new("");
    let daemon = setup.start();
    let holder = hold_write_lock(setup.db(), Duration::from_secs(2));
    let started = Instant::now();
    assert_eq!(daemon.get("/ready").status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "readiness did not wait for the writer"
    );
    holder.join().unwrap();
}

#[test]
fn audit_rows_are_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mlapi.db");
    let store = Store::open(&path, Duration::from_secs(1), 1).unwrap();
    insert(&store, "someone").unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    assert!(conn
        .execute("UPDATE audit_events SET actor = 'x'", [])
        .is_err());
    assert!(conn.execute("DELETE FROM audit_events", []).is_err());
    assert_eq!(query_i64(&path, "SELECT count(*) FROM audit_events"), 1);
}
