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
    // Nothing else touches this file; the generous timeout only keeps a
    // loaded CI machine from turning a slow first write into `Busy` (seen
    // once with 1 s, 2026-11-23).
    let store = Store::open(&path, Duration::from_secs(10), 1).unwrap();
    insert(&store, "someone").unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    assert!(conn
        .execute("UPDATE audit_events SET actor = 'x'", [])
        .is_err());
    assert!(conn.execute("DELETE FROM audit_events", []).is_err());
    assert_eq!(query_i64(&path, "SELECT count(*) FROM audit_events"), 1);
}

/// Another process (Python's sqlite3) holds the write lock while the daemon
/// serves a write: a short lock is waited out; a long one is a 503 with
/// Retry-After and leaves no partial rows; reads keep working.
#[test]
fn a_write_lock_held_by_another_process() {
    let setup = Setup::new(&format!(
        "{}\n[database]\nbusy_timeout_ms = 1000\n",
        crate::identity::auth_config("")
    ));
    let daemon = setup.start();
    let hold = |secs: f64| {
        let script = format!(
            "import sqlite3, sys, time\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\nc.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\ntime.sleep({secs})\nc.execute('COMMIT')\n"
        );
        let mut child = std::process::Command::new("python3")
            .args(["-c", &script])
            .arg(setup.db())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 (scripts/test installs it)");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "locked");
        child
    };

    let mut short = hold(0.4);
    let r = crate::identity::register(&daemon, "patient", "SecurePass123!");
    assert_eq!(r.status, 201, "a short lock is waited out: {}", r.body);
    short.wait().unwrap();

    let mut long = hold(4.0);
    let r = crate::identity::register(&daemon, "impatient", "SecurePass123!");
    let body = r.problem(503);
    assert!(r.header("retry-after").is_some());
    assert!(body["detail"].as_str().unwrap().contains("busy"));
    assert_eq!(daemon.get("/ready").status, 200, "reads still work (WAL)");
    long.wait().unwrap();
    assert_eq!(
        query_i64(
            &setup.db(),
            "SELECT count(*) FROM users WHERE username = 'impatient'"
        ),
        0
    );
    assert_eq!(
        query_i64(
            &setup.db(),
            "SELECT count(*) FROM users WHERE username = 'patient'"
        ),
        1
    );
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}
