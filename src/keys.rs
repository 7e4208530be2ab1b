//! API keys: the `sk_live_…` format with its checksum, the peppered digest
//! that is all the database keeps, and the key operations shared by the CLI
//! (`mlapi key …`) and the API (create, list, revoke, rotate with grace), plus
//! usage counting in memory with batched writes.
//!
//! A plain key exists only in the answer to its creation; it is never stored,
//! logged or shown again. Verification on the request path lives in `auth`
//! and reads only memory (`auth::directory`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;
use sha2::Sha256;

use crate::app::App;
use crate::audit::{self, Action, Actor};
use crate::auth::scopes::Scopes;
use crate::error::{Error, FieldError, Result};
use crate::secrets::{self, SecretError};
use crate::store::{self, StoreError};
use crate::users;
use crate::FastMap;

pub const PREFIX: &str = "sk_live_";
/// 32 base62 characters: about 190 bits from the OS CSPRNG.
const RANDOM_LEN: usize = 32;
/// Base62 CRC32 of the random part, so scanners (and we) can reject a
/// mistyped or made-up key without a lookup.
const CHECK_LEN: usize = 6;
pub const KEY_LEN: usize = PREFIX.len() + RANDOM_LEN + CHECK_LEN;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// The longest rotation grace period.
pub const MAX_GRACE_SECS: u64 = 30 * 86_400;

/// A new random key.
pub fn generate() -> String {
    let mut random = String::with_capacity(RANDOM_LEN);
    while random.len() < RANDOM_LEN {
        for b in secrets::random_bytes(RANDOM_LEN) {
            // Rejection sampling keeps every character equally likely.
            if b < 248 && random.len() < RANDOM_LEN {
                random.push(BASE62[(b % 62) as usize] as char);
            }
        }
    }
    let check = checksum(&random);
    format!(
        "{PREFIX}{random}{}",
        std::str::from_utf8(&check).expect("base62 is ASCII")
    )
}

fn checksum(random: &str) -> [u8; CHECK_LEN] {
    let mut n = crc32fast::hash(random.as_bytes()) as u64;
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// True when `presented` has the shape and checksum of an mlapi key.
pub fn well_formed(presented: &str) -> bool {
    let Some(rest) = presented.strip_prefix(PREFIX) else {
        return false;
    };
    if rest.len() != RANDOM_LEN + CHECK_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (random, check) = rest.split_at(RANDOM_LEN);
    checksum(random) == check.as_bytes()
}

/// The server-side secret mixed into every key digest, so a copy of the
/// database alone cannot be used to test guesses. Kept as an HMAC state with
/// the key already absorbed: each digest clones it instead of hashing the
/// pepper again (two of the four SHA-256 blocks per request).
#[derive(Clone)]
pub struct Pepper(Hmac<Sha256>);

impl Pepper {
    /// Generated on first use next to the database (0600), like the JWT key.
    pub fn load(state_dir: &std::path::Path) -> std::result::Result<Self, SecretError> {
        let bytes = secrets::load_or_create(&state_dir.join("api-key-pepper.key"), || {
            secrets::random_bytes(32)
        })?;
        Ok(Pepper::new(&bytes))
    }

    fn new(secret: &[u8]) -> Self {
        Pepper(<Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length"))
    }

    pub fn digest(&self, key: &str) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(key.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// What the daemon keeps in memory per active key.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// Shared, so counting a use clones a pointer instead of a string.
    pub id: Arc<str>,
    pub user_id: String,
    pub scopes: Scopes,
    pub expires_at: Option<i64>,
}

/// A key as listings show it: never the secret.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub user: String,
    pub name: String,
    pub prefix: String,
    pub last4: String,
    pub scopes: Vec<&'static str>,
    pub status: &'static str,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: i64,
    #[serde(serialize_with = "rfc3339_opt")]
    pub expires_at: Option<i64>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub revoked_at: Option<i64>,
    pub rotated_from: Option<String>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub last_used_at: Option<i64>,
    pub request_count: i64,
    /// Requests per UTC day (`YYYY-MM-DD`), most recent 30 days.
    pub requests_by_day: std::collections::BTreeMap<String, i64>,
    #[serde(skip)]
    user_id: String,
}

/// The answer to a creation or rotation: the only time `api_key` is shown.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedKey {
    pub id: String,
    pub api_key: String,
    pub prefix: String,
    pub name: String,
    pub scopes: Vec<&'static str>,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: i64,
    #[serde(serialize_with = "rfc3339_opt")]
    pub expires_at: Option<i64>,
    pub rotated_from: Option<String>,
}

/// Unix seconds as an RFC 3339 UTC instant, for people and JSON alike.
pub fn format_time(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn rfc3339<S: serde::Serializer>(secs: &i64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(*secs))
}

fn rfc3339_opt<S: serde::Serializer>(
    secs: &Option<i64>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match secs {
        Some(secs) => s.serialize_str(&format_time(*secs)),
        None => s.serialize_none(),
    }
}

const INFO_COLUMNS: &str =
    "k.id, u.username, k.name, k.prefix, k.last4, k.scopes, k.created_at, k.expires_at,
     k.revoked_at, k.rotated_from, k.last_used_at, k.request_count, k.user_id";

fn info_from_row(r: &Row, now: i64) -> rusqlite::Result<KeyInfo> {
    let scopes: String = r.get(5)?;
    let expires_at: Option<i64> = r.get(7)?;
    let revoked_at: Option<i64> = r.get(8)?;
    let status = if revoked_at.is_some() {
        "revoked"
    } else if expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    };
    Ok(KeyInfo {
        id: r.get(0)?,
        user: r.get(1)?,
        name: r.get(2)?,
        prefix: r.get(3)?,
        last4: r.get(4)?,
        scopes: Scopes::parse(&scopes).unwrap_or_default().names(),
        status,
        created_at: r.get(6)?,
        expires_at,
        revoked_at,
        rotated_from: r.get(9)?,
        last_used_at: r.get(10)?,
        request_count: r.get(11)?,
        requests_by_day: Default::default(),
        user_id: r.get(12)?,
    })
}

fn load_usage(c: &Connection, info: &mut KeyInfo) -> std::result::Result<(), StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT day, requests FROM api_key_usage WHERE key_id = ?1 ORDER BY day DESC LIMIT 30",
    )?;
    info.requests_by_day = stmt
        .query_map([&info.id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(())
}

/// Keys of one user (or all keys), newest first, with usage counted so far
/// (including what this process has not written yet).
pub async fn list(app: &Arc<App>, owner: Option<&str>) -> Result<Vec<KeyInfo>> {
    let owner = owner.map(str::to_string);
    let mut keys = app
        .blocking(move |app| {
            app.store.read(|c| {
                let user_id = match &owner {
                    Some(who) => match users::find(c, who)? {
                        Some(user) => Some(user.id),
                        None => return Ok(Err(Error::NotFound(format!("no user {who:?}")))),
                    },
                    None => None,
                };
                let now = store::now();
                let mut stmt = c.prepare(&format!(
                    "SELECT {INFO_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id
                     WHERE (?1 IS NULL OR k.user_id = ?1) ORDER BY k.created_at DESC, k.id"
                ))?;
                let mut keys = stmt
                    .query_map([user_id], |r| info_from_row(r, now))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                for key in &mut keys {
                    load_usage(c, key)?;
                }
                Ok(Ok(keys))
            })
        })
        .await??;
    for key in &mut keys {
        app.usage.add_pending(key);
    }
    Ok(keys)
}

/// Finds a key by id or display prefix (`sk_live_XXXXXXXX` or its 8
/// characters). With `owner`, another user's key is "not found".
fn resolve(
    c: &Connection,
    id_or_prefix: &str,
    owner: Option<&str>,
) -> std::result::Result<Option<KeyInfo>, StoreError> {
    let now = store::now();
    let by_id = c
        .query_row(
            &format!("SELECT {INFO_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = ?1"),
            [id_or_prefix],
            |r| info_from_row(r, now),
        )
        .optional()?;
    let found = match by_id {
        Some(key) => Some(key),
        None => {
            let prefix = if id_or_prefix.starts_with(PREFIX) {
                id_or_prefix.to_string()
            } else {
                format!("{PREFIX}{id_or_prefix}")
            };
            let mut stmt = c.prepare(&format!(
                "SELECT {INFO_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.prefix = ?1 LIMIT 2"
            ))?;
            let mut matches = stmt
                .query_map([prefix], |r| info_from_row(r, now))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if matches.len() == 1 {
                matches.pop()
            } else {
                None
            }
        }
    };
    Ok(found.filter(|k| owner.is_none_or(|o| o == k.user_id)))
}

fn key_not_found(id: &str) -> Error {
    Error::NotFound(format!("no API key {id:?}"))
}

/// Creates a key for `owner` (id or username). `allowed` bounds the scopes:
/// the owner's role scopes, further cut to the caller's when a user mints
/// their own key. 409 past `auth.max_keys_per_user` active keys.
pub async fn create(
    app: &Arc<App>,
    owner: &str,
    name: &str,
    scopes: Option<Scopes>,
    expires_at: Option<i64>,
    allowed: Option<Scopes>,
    actor: &Actor,
) -> Result<CreatedKey> {
    let name = name.trim().to_string();
    let mut errors = Vec::new();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        errors.push(FieldError::new(
            "name",
            "must be 1 to 100 printable characters",
        ));
    }
    if expires_at.is_some_and(|e| e <= store::now()) {
        errors.push(FieldError::new("expires_at", "must be in the future"));
    }
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    let owner = owner.to_string();
    let actor = actor.clone();
    let created = app
        .blocking(move |app| {
            app.store.write(|tx| {
                let Some(user) = users::find(tx, &owner)? else {
                    return Ok(Err(Error::NotFound(format!("no user {owner:?}"))));
                };
                let mut limit = user.role.scopes();
                if let Some(caller) = allowed {
                    limit = limit.intersect(caller);
                }
                let scopes = scopes.unwrap_or(limit);
                if !scopes.is_subset_of(limit) {
                    let extra: Vec<_> = scopes.iter().filter(|s| !limit.contains(*s)).map(|s| s.as_str()).collect();
                    return Ok(Err(Error::Invalid(vec![FieldError::new(
                        "scopes",
                        format!("not allowed for this account or credential: {}", extra.join(", ")),
                    )])));
                }
                if scopes.is_empty() {
                    return Ok(Err(Error::Invalid(vec![FieldError::new("scopes", "must not be empty")])));
                }
                let active = count_active(tx, &user.id)?;
                let max = app.config.auth.max_keys_per_user;
                if active >= i64::from(max) {
                    return Ok(Err(Error::Conflict(format!(
                        "{} already has {active} active API keys (the limit is {max}); revoke one first",
                        user.username
                    ))));
                }
                let key = insert(app, tx, &user.id, &name, scopes, expires_at, None)?;
                let detail = format!("api key {} ({})", key.prefix, key.name);
                audit::record(tx, &actor, Action::KeyCreate, Some(&user.username), true, Some(&detail))?;
                Ok(Ok(key))
            })
        })
        .await??;
    app.refresh_directory().await;
    Ok(created)
}

/// Active keys that count towards the limit: not revoked, not expired, and
/// not already replaced by a rotation (a key in its grace period does not count).
fn count_active(c: &Connection, user_id: &str) -> std::result::Result<i64, StoreError> {
    Ok(c.query_row(
        "SELECT count(*) FROM api_keys k
         WHERE k.user_id = ?1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > ?2)
           AND NOT EXISTS (SELECT 1 FROM api_keys n WHERE n.rotated_from = k.id)",
        params![user_id, store::now()],
        |r| r.get(0),
    )?)
}

fn insert(
    app: &App,
    tx: &rusqlite::Transaction,
    user_id: &str,
    name: &str,
    scopes: Scopes,
    expires_at: Option<i64>,
    rotated_from: Option<&str>,
) -> std::result::Result<CreatedKey, StoreError> {
    let key = generate();
    let id = uuid::Uuid::new_v4().to_string();
    let prefix = key[..PREFIX.len() + 8].to_string();
    let last4 = key[key.len() - 4..].to_string();
    let now = store::now();
    let rev = store::bump_version(tx)?;
    tx.execute(
        "INSERT INTO api_keys (id, user_id, name, prefix, last4, digest, scopes, created_at, expires_at, rotated_from, rev)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            id,
            user_id,
            name,
            prefix,
            last4,
            app.pepper.digest(&key).to_vec(),
            scopes.to_oauth(),
            now,
            expires_at,
            rotated_from,
            rev
        ],
    )?;
    Ok(CreatedKey {
        id,
        api_key: key,
        prefix,
        name: name.to_string(),
        scopes: scopes.names(),
        created_at: now,
        expires_at,
        rotated_from: rotated_from.map(str::to_string),
    })
}

/// Revokes a key at once, everywhere. Revoking twice is a no-op that still
/// answers with the key. With `owner`, only that user's keys are visible.
pub async fn revoke(
    app: &Arc<App>,
    id_or_prefix: &str,
    owner: Option<&str>,
    actor: &Actor,
) -> Result<KeyInfo> {
    let (id, owner_owned, actor) = (
        id_or_prefix.to_string(),
        owner.map(str::to_string),
        actor.clone(),
    );
    let info = app
        .blocking(move |app| {
            app.store.write(|tx| {
                let Some(key) = resolve(tx, &id, owner_owned.as_deref())? else {
                    return Ok(None);
                };
                if key.revoked_at.is_none() {
                    let now = store::now();
                    let rev = store::bump_version(tx)?;
                    tx.execute(
                        "UPDATE api_keys SET revoked_at = ?2, rev = ?3 WHERE id = ?1",
                        params![key.id, now, rev],
                    )?;
                    let detail = format!("api key {} ({})", key.prefix, key.name);
                    audit::record(
                        tx,
                        &actor,
                        Action::KeyRevoke,
                        Some(&key.user),
                        true,
                        Some(&detail),
                    )?;
                }
                resolve(tx, &key.id, None)
            })
        })
        .await?
        .ok_or_else(|| key_not_found(id_or_prefix))?;
    app.refresh_directory().await;
    Ok(info)
}

/// Replaces a key with a new one (same owner, name, scopes and expiry). The
/// old key keeps working for `grace_secs` (0: stops at once).
/// With `allowed` (a user rotating their own key), the key's scopes must be
/// within the caller's: rotation never hands out more than creation would.
pub async fn rotate(
    app: &Arc<App>,
    id_or_prefix: &str,
    owner: Option<&str>,
    allowed: Option<Scopes>,
    grace_secs: u64,
    actor: &Actor,
) -> Result<CreatedKey> {
    if grace_secs > MAX_GRACE_SECS {
        return Err(Error::Invalid(vec![FieldError::new(
            "grace_seconds",
            format!("must be at most {MAX_GRACE_SECS} (30 days)"),
        )]));
    }
    let (id, owner_owned, actor) = (
        id_or_prefix.to_string(),
        owner.map(str::to_string),
        actor.clone(),
    );
    let created = app
        .blocking(move |app| {
            app.store.write(|tx| {
                let Some(old) = resolve(tx, &id, owner_owned.as_deref())? else {
                    return Ok(Err(key_not_found(&id)));
                };
                if old.status != "active" {
                    return Ok(Err(Error::Conflict(format!("API key {} is {}; only active keys rotate", old.prefix, old.status))));
                }
                let scopes = Scopes::parse(&old.scopes.join(" ")).unwrap_or_default();
                if allowed.is_some_and(|a| !scopes.is_subset_of(a)) {
                    return Ok(Err(Error::Forbidden(format!(
                        "API key {} carries scopes this session lacks; sign in with them to rotate it",
                        old.prefix
                    ))));
                }
                // One grace period per chain: otherwise repeated rotations
                // would keep any number of keys alive past the limit.
                if let Some(previous) = &old.rotated_from {
                    if resolve(tx, previous, None)?.is_some_and(|p| p.status == "active") {
                        return Ok(Err(Error::Conflict(format!(
                            "API key {} replaced a key that is still in its grace period; wait for it to end or revoke it",
                            old.prefix
                        ))));
                    }
                }
                let replaced: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM api_keys WHERE rotated_from = ?1)",
                    [&old.id],
                    |r| r.get(0),
                )?;
                if replaced {
                    return Ok(Err(Error::Conflict(format!(
                        "API key {} was already rotated; rotate its replacement instead",
                        old.prefix
                    ))));
                }
                let now = store::now();
                let new = insert(app, tx, &old.user_id, &old.name, scopes, old.expires_at, Some(&old.id))?;
                let rev = store::bump_version(tx)?;
                if grace_secs == 0 {
                    tx.execute(
                        "UPDATE api_keys SET revoked_at = ?2, rev = ?3 WHERE id = ?1",
                        params![old.id, now, rev],
                    )?;
                } else {
                    let until = now + grace_secs as i64;
                    tx.execute(
                        "UPDATE api_keys SET expires_at = min(coalesce(expires_at, ?2), ?2), rev = ?3 WHERE id = ?1",
                        params![old.id, until, rev],
                    )?;
                }
                let detail = format!("api key {} -> {}, grace {grace_secs} s", old.prefix, new.prefix);
                audit::record(tx, &actor, Action::KeyRotate, Some(&old.user), true, Some(&detail))?;
                Ok(Ok(new))
            })
        })
        .await??;
    app.refresh_directory().await;
    Ok(created)
}

/// Requests and the last use (unix seconds).
type UsageCount = (i64, i64);
/// Per key id: counts by UTC day number (almost always just today).
type Counts = FastMap<Arc<str>, Vec<(i64, UsageCount)>>;
/// Enough that each worker thread usually has a lock of its own.
const USAGE_SHARDS: usize = 8;

/// Usage counted in memory on the request path and written in batches.
/// Sharded by thread: workers counting requests on the same key do not
/// contend for one lock (BENCHMARKS.md).
pub struct Usage {
    shards: Box<[Mutex<Counts>]>,
}

impl Default for Usage {
    fn default() -> Self {
        Usage {
            shards: (0..USAGE_SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl Usage {
    /// One request by `key_id`: a short, usually uncontended lock, no I/O.
    pub fn record(&self, key_id: &Arc<str>) {
        let now = store::now();
        let mut counts = self.shard().lock().expect("usage lock");
        // Looked up by `&str` first: a known key clones no shared pointer.
        if !counts.contains_key(&**key_id) {
            counts.insert(Arc::clone(key_id), Vec::new());
        }
        let days = counts.get_mut(&**key_id).expect("inserted above");
        add(days, now.div_euclid(86_400), (1, now));
    }

    fn shard(&self) -> &Mutex<Counts> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % USAGE_SHARDS;
        }
        &self.shards[SHARD.with(|s| *s)]
    }

    fn add_pending(&self, key: &mut KeyInfo) {
        for shard in self.shards.iter() {
            let counts = shard.lock().expect("usage lock");
            for (day, (count, last)) in counts.get(&*key.id).into_iter().flatten() {
                key.request_count += count;
                key.last_used_at = Some(key.last_used_at.map_or(*last, |l| l.max(*last)));
                *key.requests_by_day.entry(day_string(*day)).or_default() += count;
            }
        }
    }

    /// Everything counted so far, merged across shards, and the shards emptied.
    fn take(&self) -> Counts {
        let mut all = Counts::default();
        for shard in self.shards.iter() {
            let counts = std::mem::take(&mut *shard.lock().expect("usage lock"));
            merge(&mut all, counts);
        }
        all
    }

    /// Writes everything counted so far in one transaction. On failure the
    /// counts go back into memory for the next attempt: nothing is lost.
    pub fn flush(&self, store: &store::Store) -> std::result::Result<usize, StoreError> {
        let batch = self.take();
        if batch.is_empty() {
            return Ok(0);
        }
        let written = store.write(|tx| {
            let mut totals = tx.prepare_cached(
                "UPDATE api_keys SET request_count = request_count + ?2,
                        last_used_at = max(coalesce(last_used_at, 0), ?3) WHERE id = ?1",
            )?;
            let mut days = tx.prepare_cached(
                "INSERT INTO api_key_usage (key_id, day, requests) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key_id, day) DO UPDATE SET requests = requests + excluded.requests",
            )?;
            let mut rows = 0;
            for (id, by_day) in &batch {
                for (day, (count, last)) in by_day {
                    if totals.execute(params![id, count, last])? == 1 {
                        days.execute(params![id, day_string(*day), count])?;
                    }
                    rows += 1;
                }
            }
            Ok(rows)
        });
        if written.is_err() {
            merge(&mut self.shards[0].lock().expect("usage lock"), batch);
        }
        written
    }
}

/// Adds one day's count to a key's days.
fn add(days: &mut Vec<(i64, UsageCount)>, day: i64, (count, last): UsageCount) {
    match days.iter_mut().find(|(d, _)| *d == day) {
        Some((_, c)) => {
            c.0 += count;
            c.1 = c.1.max(last);
        }
        None => days.push((day, (count, last))),
    }
}

fn merge(into: &mut Counts, from: Counts) {
    for (id, by_day) in from {
        let days = into.entry(id).or_default();
        for (day, count) in by_day {
            add(days, day, count);
        }
    }
}

fn day_string(day: i64) -> String {
    let date = time::OffsetDateTime::from_unix_timestamp(day * 86_400)
        .map(|t| t.date())
        .unwrap_or(time::Date::MIN);
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), KEY_LEN);
        assert!(a.starts_with("sk_live_"));
        assert!(well_formed(&a));
        // One changed character breaks the checksum.
        let mut changed = a.clone().into_bytes();
        let i = PREFIX.len() + 3;
        changed[i] = if changed[i] == b'a' { b'b' } else { b'a' };
        assert!(!well_formed(&String::from_utf8(changed).unwrap()));
        assert!(!well_formed(&a.replace("sk_live_", "sk_test_")));
        assert!(!well_formed(&a[..a.len() - 1]));
        assert!(!well_formed("sk_live_"));
    }

    #[test]
    fn digests_depend_on_the_pepper() {
        let a = Pepper::new(&[1; 32]);
        let b = Pepper::new(&[2; 32]);
        let key = generate();
        assert_eq!(a.digest(&key), a.digest(&key));
        assert_ne!(a.digest(&key), b.digest(&key));
        // Plain HMAC-SHA256 of the key under the pepper: digests stored by
        // earlier versions still match.
        let mut plain = <Hmac<Sha256> as Mac>::new_from_slice(&[1; 32]).unwrap();
        plain.update(key.as_bytes());
        assert_eq!(
            a.digest(&key),
            <[u8; 32]>::from(plain.finalize().into_bytes())
        );
    }

    #[test]
    fn days() {
        assert_eq!(day_string(0), "1970-01-01");
        assert_eq!(day_string(20_414), "2025-11-22");
    }

    #[test]
    fn usage_counted_on_many_threads_adds_up() {
        let usage = Usage::default();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("key-a"), Arc::from("key-b"));
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        usage.record(&a);
                    }
                    usage.record(&b);
                });
            }
        });
        let counts = usage.take();
        let total = |id: &str| -> i64 { counts[id].iter().map(|(_, (n, _))| n).sum() };
        assert_eq!(total("key-a"), 4000);
        assert_eq!(total("key-b"), 4);
        assert!(usage.take().is_empty(), "taking empties every shard");

        // Put back after a failed write: merged per key and day.
        let mut into = Counts::default();
        into.insert(Arc::clone(&a), vec![(10, (2, 100))]);
        let mut from = Counts::default();
        from.insert(Arc::clone(&a), vec![(10, (3, 90)), (11, (1, 200))]);
        merge(&mut into, from);
        assert_eq!(into[&*a], vec![(10, (5, 100)), (11, (1, 200))]);
    }
}
