//! What a running daemon knows about accounts and revocations, in memory, so
//! authenticating a request never reads SQLite.
//!
//! Kept fresh by `refresh`, which reads only rows changed since the last look
//! (their `rev` is above the last seen state version). The daemon calls it
//! after its own writes and every 250 ms for writes by other processes (the
//! CLI, other daemons on the same file).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::params;

use crate::store::{self, Store, StoreError};
use crate::users::{self, User};

#[derive(Default)]
struct Snapshot {
    version: i64,
    users: HashMap<String, Arc<User>>,
    /// Revoked access-token ids → their expiry (dropped once expired).
    revoked_jtis: HashMap<String, i64>,
    /// Revoked sessions (refresh families) → their expiry.
    revoked_sessions: HashMap<String, i64>,
}

#[derive(Default)]
pub struct Directory {
    snapshot: RwLock<Snapshot>,
    refreshing: Mutex<()>,
}

impl Directory {
    pub fn user(&self, id: &str) -> Option<Arc<User>> {
        self.snapshot
            .read()
            .expect("directory lock")
            .users
            .get(id)
            .cloned()
    }

    pub fn is_revoked(&self, jti: &str, session: &str) -> bool {
        let s = self.snapshot.read().expect("directory lock");
        s.revoked_jtis.contains_key(jti) || s.revoked_sessions.contains_key(session)
    }

    pub fn version(&self) -> i64 {
        self.snapshot.read().expect("directory lock").version
    }

    /// Loads what changed since the last refresh. Blocking (SQLite).
    pub fn refresh(&self, store: &Store) -> Result<(), StoreError> {
        let _one_at_a_time = self.refreshing.lock().expect("refresh lock");
        let since = self.version();
        let changes = store.read(|c| {
            let version = store::current_version(c)?;
            if version == since {
                return Ok(None);
            }
            // One read transaction: a consistent view across the three tables.
            let tx = c.unchecked_transaction()?;
            let users = {
                let mut stmt = tx.prepare(
                    "SELECT id, username, email, role, tier, disabled, tokens_valid_after, created_at, updated_at
                     FROM users WHERE rev > ?1",
                )?;
                let rows = stmt.query_map([since], users::from_row)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            let now = store::now();
            let jtis = {
                let mut stmt = tx.prepare("SELECT jti, expires_at FROM revoked_tokens WHERE rev > ?1 AND expires_at > ?2")?;
                let rows = stmt.query_map(params![since, now], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<rusqlite::Result<Vec<(String, i64)>>>()?
            };
            let sessions = {
                let mut stmt = tx.prepare(
                    "SELECT id, expires_at FROM sessions
                     WHERE rev > ?1 AND revoked_at IS NOT NULL AND expires_at > ?2",
                )?;
                let rows = stmt.query_map(params![since, now], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<rusqlite::Result<Vec<(String, i64)>>>()?
            };
            tx.finish()?;
            Ok(Some((version, users, jtis, sessions)))
        })?;
        let Some((version, users, jtis, sessions)) = changes else {
            return Ok(());
        };
        let now = store::now();
        let mut s = self.snapshot.write().expect("directory lock");
        for user in users {
            s.users.insert(user.id.clone(), Arc::new(user));
        }
        s.revoked_jtis.extend(jtis);
        s.revoked_sessions.extend(sessions);
        s.revoked_jtis.retain(|_, exp| *exp > now);
        s.revoked_sessions.retain(|_, exp| *exp > now);
        s.version = version;
        Ok(())
    }
}
