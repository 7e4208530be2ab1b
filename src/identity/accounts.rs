//! User accounts: the `users` table, validation of names and emails, and the
//! account operations shared by the CLI (`mlapi user …`) and the admin API
//! (create, list, show, set role, set tier, disable, enable, change password).
//!
//! Every change bumps the state version (so running daemons reload within a
//! second) and writes its audit row in the same transaction. Password hashes
//! never leave this module except to the verifier in `sessions`.

use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;
use unicode_normalization::UnicodeNormalization;

use super::{passwords, Identity};
use crate::core::error::{Error, FieldError, Result};
use crate::core::scopes::Role;
use crate::core::time;
use crate::store::audit::{self, Action, Actor, Outcome};
use crate::store::{self, StoreError};

/// An account, as everything outside this module sees it (no hash).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct User {
    pub id: String,
    pub username: String,
    pub email: String,
    pub role: Role,
    pub tier: String,
    pub disabled: bool,
    /// Unix seconds, shown as RFC 3339.
    #[serde(serialize_with = "time::serde::rfc3339")]
    pub created_at: i64,
    #[serde(serialize_with = "time::serde::rfc3339")]
    pub updated_at: i64,
    /// Tokens issued before this instant (unix seconds) are dead.
    #[serde(skip)]
    pub tokens_valid_after: i64,
}

const COLUMNS: &str =
    "id, username, email, role, tier, disabled, tokens_valid_after, created_at, updated_at";

pub(crate) fn from_row(r: &Row) -> rusqlite::Result<User> {
    let role: String = r.get(3)?;
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        email: r.get(2)?,
        role: role.parse().unwrap_or(Role::User),
        tier: r.get(4)?,
        disabled: r.get(5)?,
        tokens_valid_after: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

/// The form a username is compared in: NFKC, then lowercase, so `Bob`,
/// `bob` and full-width `ｂｏｂ` are one account and share one lockout counter.
pub fn username_key(name: &str) -> String {
    name.nfkc().collect::<String>().to_lowercase()
}

pub fn check_username(name: &str) -> std::result::Result<(), FieldError> {
    let ok = (3..=50).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "username",
            "must be 3 to 50 characters of A-Z, a-z, 0-9 and _",
        ))
    }
}

/// Returns the normalised (lowercase) address.
pub fn check_email(email: &str) -> std::result::Result<String, FieldError> {
    let bad = || FieldError::new("email", "must be a valid email address");
    let email = email.trim();
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = email.rsplit_once('@').ok_or_else(bad)?;
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
    if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
        return Err(bad());
    }
    Ok(email.to_lowercase())
}

/// Tiers are the config's (`[tiers.*]`), given most restrictive first.
pub fn check_tier(tiers: &[String], tier: &str) -> std::result::Result<(), FieldError> {
    if tiers.iter().any(|t| t == tier) {
        Ok(())
    } else {
        Err(FieldError::new(
            "tier",
            format!("unknown tier {tier:?}; tiers are {}", tiers.join(", ")),
        ))
    }
}

/// What a new account needs. The password is checked against the policy
/// before any hashing happens.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub password: String,
    pub role: Role,
    pub tier: Option<String>,
}

/// One change to an account.
#[derive(Debug, Clone)]
pub enum Change {
    Role(Role),
    Tier(String),
    Disabled(bool),
    /// A new argon2 hash; also ends every session the user has.
    PasswordHash(String),
}

impl Identity {
    /// Validates, hashes (bounded, off the runtime) and inserts a user, with its
    /// audit row. 422 on bad fields, 409 when the username or email is taken.
    pub async fn create_user(self: &Arc<Self>, new: NewUser, actor: &Actor) -> Result<User> {
        let mut errors = Vec::new();
        if let Err(e) = check_username(&new.username) {
            errors.push(e);
        }
        let email = check_email(&new.email).map_err(|e| errors.push(e)).ok();
        if let Err(e) = passwords::check_policy(&new.password, &new.username) {
            errors.push(e);
        }
        let tier = new
            .tier
            .clone()
            .unwrap_or_else(|| self.auth.default_tier.clone());
        if let Err(e) = check_tier(&self.tiers, &tier) {
            errors.push(e);
        }
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        let email = email.expect("validated");
        // Refuse a taken name before spending a hash on it; the UNIQUE
        // constraints still decide races.
        let key = username_key(&new.username);
        let (taken_key, taken_email) = (key.clone(), email.clone());
        if self
            .read(move |c| Ok(taken(c, &taken_key, &taken_email)?))
            .await?
        {
            return Err(conflict());
        }
        let hash = self.hasher.hash(new.password).await?;
        let actor = actor.clone();
        let user = self
            .change(move |_, tx| {
                    let now = time::now();
                    let rev = store::bump_version(tx)?;
                    let id = uuid::Uuid::new_v4().to_string();
                    let inserted = tx.execute(
                        "INSERT INTO users (id, username, username_key, email, password_hash, role, tier,
                                            disabled, tokens_valid_after, created_at, updated_at, rev)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 0, ?8, ?8, ?9)",
                        params![id, new.username, key, email, hash, new.role.as_str(), tier, now, rev],
                    );
                    match inserted {
                        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
                            return Err(conflict())
                        }
                        other => other?,
                    };
                    let detail = format!("role={} tier={tier}", new.role);
                    audit::record(tx, &actor, Action::UserCreate, Some(&new.username), Outcome::Success, Some(&detail))?;
                    Ok(get(tx, &id)?.expect("just inserted"))
            })
            .await?;
        Ok(user)
    }

    /// A user by id or by username (any case); 404 when there is none.
    pub async fn show_user(&self, who: &str) -> Result<User> {
        let who_owned = who.to_string();
        self.read(move |c| Ok(find(c, &who_owned)?))
            .await?
            .ok_or_else(|| not_found(who))
    }

    pub async fn list_users(&self, limit: u32, offset: u32) -> Result<Vec<User>> {
        self.read(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM users ORDER BY created_at, username LIMIT ?1 OFFSET ?2"
            ))?;
            let users = stmt
                .query_map(params![limit, offset], from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(users)
        })
        .await
    }

    /// Applies `change` to the user `who` (id or username), with its audit row,
    /// and makes running daemons see it within a second.
    pub async fn update_user(
        self: &Arc<Self>,
        who: &str,
        change: Change,
        actor: &Actor,
    ) -> Result<User> {
        if let Change::Tier(tier) = &change {
            check_tier(&self.tiers, tier).map_err(|e| Error::Invalid(vec![e]))?;
        }
        let who_owned = who.to_string();
        let actor = actor.clone();
        let user = self
            .change(move |_, tx| {
                    let Some(user) = find(tx, &who_owned)? else {
                        return Err(not_found(&who_owned));
                    };
                    let now = time::now();
                    let rev = store::bump_version(tx)?;
                    let set = |assignments: &str, value: &dyn rusqlite::ToSql| {
                        tx.execute(
                            &format!("UPDATE users SET {assignments}, updated_at = ?3, rev = ?4 WHERE id = ?1"),
                            params![user.id, value, now, rev],
                        )
                    };
                    let (action, detail) = match &change {
                        Change::Role(role) => {
                            set("role = ?2", &role.as_str())?;
                            (Action::AuthzChange, format!("role {} -> {role}", user.role))
                        }
                        Change::Tier(tier) => {
                            set("tier = ?2", tier)?;
                            (Action::UserTierChange, format!("tier {} -> {tier}", user.tier))
                        }
                        Change::Disabled(true) => {
                            // Disabling ends every session for good: re-enabling
                            // must not bring a thief's tokens back.
                            set("disabled = ?2, tokens_valid_after = ?3", &true)?;
                            end_sessions(tx, &user.id, "disabled", now, rev)?;
                            (Action::UserDisable, "all sessions ended".to_string())
                        }
                        Change::Disabled(false) => {
                            set("disabled = ?2", &false)?;
                            clear_lockout(tx, &user.username)?;
                            (Action::UserEnable, String::new())
                        }
                        Change::PasswordHash(hash) => {
                            set("password_hash = ?2, tokens_valid_after = ?3", hash)?;
                            end_sessions(tx, &user.id, "password_change", now, rev)?;
                            clear_lockout(tx, &user.username)?;
                            (Action::AuthnPasswordChange, "all sessions ended".to_string())
                        }
                    };
                    let detail = (!detail.is_empty()).then_some(detail.as_str());
                    audit::record(tx, &actor, action, Some(&user.username), Outcome::Success, detail)?;
                    get(tx, &user.id)?.ok_or_else(|| not_found(&who_owned))
            })
            .await?;
        Ok(user)
    }

    /// Checks a new password against the policy, hashes it and stores it.
    pub async fn set_password(
        self: &Arc<Self>,
        who: &str,
        password: String,
        actor: &Actor,
    ) -> Result<User> {
        let user = self.show_user(who).await?;
        passwords::check_policy(&password, &user.username).map_err(|e| Error::Invalid(vec![e]))?;
        let hash = self.hasher.hash(password).await?;
        self.update_user(&user.id, Change::PasswordHash(hash), actor)
            .await
    }
}

fn conflict() -> Error {
    Error::Conflict("that username or email is already registered".into())
}

fn not_found(who: &str) -> Error {
    Error::NotFound(format!("no user {who:?}"))
}

fn taken(c: &Connection, key: &str, email: &str) -> std::result::Result<bool, StoreError> {
    Ok(c.query_row(
        "SELECT EXISTS (SELECT 1 FROM users WHERE username_key = ?1 OR email = ?2)",
        params![key, email],
        |r| r.get(0),
    )?)
}

pub(crate) fn get(c: &Connection, id: &str) -> std::result::Result<Option<User>, StoreError> {
    Ok(c.query_row(
        &format!("SELECT {COLUMNS} FROM users WHERE id = ?1"),
        [id],
        from_row,
    )
    .optional()?)
}

/// A user by id or by username (any case).
pub fn find(c: &Connection, who: &str) -> std::result::Result<Option<User>, StoreError> {
    if let Some(user) = get(c, who)? {
        return Ok(Some(user));
    }
    Ok(c.query_row(
        &format!("SELECT {COLUMNS} FROM users WHERE username_key = ?1"),
        [username_key(who)],
        from_row,
    )
    .optional()?)
}

/// The user and password hash for a login; `None` when no such user.
pub(crate) fn find_for_login(
    c: &Connection,
    key: &str,
) -> std::result::Result<Option<(User, String)>, StoreError> {
    Ok(c.query_row(
        &format!("SELECT {COLUMNS}, password_hash FROM users WHERE username_key = ?1"),
        [key],
        |r| Ok((from_row(r)?, r.get::<_, String>(9)?)),
    )
    .optional()?)
}

fn end_sessions(
    tx: &Connection,
    user_id: &str,
    reason: &str,
    now: i64,
    rev: i64,
) -> std::result::Result<(), StoreError> {
    tx.execute(
        "UPDATE sessions SET revoked_at = ?2, revoked_reason = ?3, rev = ?4 WHERE user_id = ?1 AND revoked_at IS NULL",
        params![user_id, now, reason, rev],
    )?;
    Ok(())
}

/// An operator's enable or password reset also lifts a login lockout.
fn clear_lockout(tx: &Connection, username: &str) -> std::result::Result<(), StoreError> {
    tx.execute(
        "DELETE FROM login_failures WHERE username_key = ?1",
        [username_key(username)],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(check_username("testuser").is_ok());
        assert!(check_username("A_b9").is_ok());
        for bad in [
            "ab",
            "has space",
            "ünï",
            "nul\0x",
            "bob\u{200d}",
            &"a".repeat(51),
        ] {
            assert!(check_username(bad).is_err(), "{bad:?}");
        }
        assert_eq!(username_key("ＴｅｓｔＵｓｅｒ"), "testuser");
        assert_eq!(username_key("TestUser"), "testuser");
    }

    #[test]
    fn emails() {
        assert_eq!(check_email("Test@Example.com").unwrap(), "test@example.com");
        for bad in [
            "",
            "no-at",
            "@example.com",
            "a@b",
            "a@.com",
            "a b@c.com",
            "a@b..com",
        ] {
            assert!(check_email(bad).is_err(), "{bad:?}");
        }
    }
}
