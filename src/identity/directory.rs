//! What a running daemon knows about accounts, revocations and API keys, in
//! memory, so authenticating a request never reads SQLite.
//!
//! Kept fresh by `refresh`, which reads only rows changed since the last look
//! (their `rev` is above the last seen state version). The daemon calls it
//! after its own writes and every 250 ms for writes by other processes (the
//! CLI, other daemons on the same file).

use std::sync::{Arc, Mutex, RwLock};

use rusqlite::params;

use super::accounts::{self, User};
use super::keys::KeyEntry;
use crate::core::scopes::Scopes;
use crate::core::time;
use crate::store::{self, Store, StoreError};
use crate::FastMap;

#[derive(Default)]
struct Snapshot {
    version: i64,
    users: FastMap<String, Arc<User>>,
    /// Revoked access-token ids → their expiry (dropped once expired).
    revoked_jtis: FastMap<String, i64>,
    /// Revoked sessions (refresh families) → their expiry.
    revoked_sessions: FastMap<String, i64>,
    /// Usable API keys by their digest. Revoked and expired keys are absent.
    keys: FastMap<[u8; 32], Arc<KeyEntry>>,
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

    /// A usable API key and its owner, in one look at the snapshot.
    pub fn api_key(&self, digest: &[u8; 32]) -> Option<(Arc<KeyEntry>, Arc<User>)> {
        let s = self.snapshot.read().expect("directory lock");
        let key = s.keys.get(digest)?;
        let user = s.users.get(&key.user_id)?;
        Some((Arc::clone(key), Arc::clone(user)))
    }

    pub fn version(&self) -> i64 {
        self.snapshot.read().expect("directory lock").version
    }

    /// Loads what changed since the last refresh. Blocking (SQLite).
    pub fn refresh(&self, store: &Store) -> Result<(), StoreError> {
        let _one_at_a_time = self.refreshing.lock().expect("refresh lock");
        let since = self.version();
        let changes = store.read(|c| -> Result<_, StoreError> {
            let version = store::current_version(c)?;
            if version == since {
                return Ok(None);
            }
            // One read transaction: a consistent view across the four tables.
            let tx = c.unchecked_transaction()?;
            let users = {
                let mut stmt = tx.prepare(
                    "SELECT id, username, email, role, tier, disabled, tokens_valid_after, created_at, updated_at
                     FROM users WHERE rev > ?1",
                )?;
                let rows = stmt.query_map([since], accounts::from_row)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            let now = time::now();
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
            let keys = {
                let mut stmt = tx.prepare(
                    "SELECT id, user_id, digest, scopes, expires_at, revoked_at FROM api_keys WHERE rev > ?1",
                )?;
                let rows = stmt.query_map([since], |r| {
                    let digest: Vec<u8> = r.get(2)?;
                    let scopes: String = r.get(3)?;
                    let revoked: Option<i64> = r.get(5)?;
                    let entry = KeyEntry {
                        id: r.get::<_, String>(0)?.into(),
                        user_id: r.get(1)?,
                        scopes: Scopes::parse(&scopes).unwrap_or_default(),
                        expires_at: r.get(4)?,
                    };
                    Ok((digest, entry, revoked.is_some()))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            tx.finish()?;
            Ok(Some((version, users, jtis, sessions, keys)))
        })?;
        let Some((version, users, jtis, sessions, keys)) = changes else {
            return Ok(());
        };
        let now = time::now();
        let mut s = self.snapshot.write().expect("directory lock");
        for user in users {
            s.users.insert(user.id.clone(), Arc::new(user));
        }
        for (digest, entry, revoked) in keys {
            let Ok(digest) = <[u8; 32]>::try_from(digest.as_slice()) else {
                continue;
            };
            if revoked {
                s.keys.remove(&digest);
            } else {
                s.keys.insert(digest, Arc::new(entry));
            }
        }
        s.keys.retain(|_, k| k.expires_at.is_none_or(|e| e > now));
        s.revoked_jtis.extend(jtis);
        s.revoked_sessions.extend(sessions);
        s.revoked_jtis.retain(|_, exp| *exp > now);
        s.revoked_sessions.retain(|_, exp| *exp > now);
        s.version = version;
        Ok(())
    }
}
