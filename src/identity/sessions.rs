//! Sessions: registration, password login with lockout, JWT sessions with
//! rotating single-use refresh tokens, and logout.
//!
//! Every refusal a caller can see is generic (no user enumeration by message
//! or timing). Security events are audited in the transaction that records
//! them. Never logs a password or a token.

use std::sync::Arc;

use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;

use super::accounts::{self, NewUser, User};
use super::tokens::{Claims, TokenType};
use super::{passwords, Credential, Identity, Principal};
use crate::config::AuthConfig;
use crate::core::error::{Error, Result};
use crate::core::scopes::{Role, Scope, Scopes};
use crate::core::time;
use crate::store::audit::{self, Action, Actor, Outcome};
use crate::store::{self, StoreError};

/// What a successful login or refresh returns (OAuth2 token response shape).
#[derive(Debug, Clone, Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
}

/// Why a refresh was refused (all look the same to the client).
enum RefreshOutcome {
    Issued(TokenPair),
    Refused,
    /// A used token came back: the whole family is now revoked.
    Reused,
}

impl Identity {
    /// Registration through the public API: always role `user`, default tier.
    pub async fn register(
        self: &Arc<Self>,
        username: String,
        email: String,
        password: String,
        actor: &Actor,
    ) -> Result<User> {
        if !self.auth.allow_registration {
            return Err(Error::Forbidden(
                "registration is disabled on this server; ask an operator for an account".into(),
            ));
        }
        let new = NewUser {
            username,
            email,
            password,
            role: Role::User,
            tier: None,
        };
        self.create_user(new, actor).await
    }

    /// Verifies a password login and opens a session. Locked usernames get
    /// `Locked` before any hashing; unknown usernames cost one dummy hash and
    /// count towards a lockout exactly like known ones.
    pub async fn login(
        self: &Arc<Self>,
        username: &str,
        password: String,
        requested: Option<&str>,
        actor: &Actor,
    ) -> Result<TokenPair> {
        let key = accounts::username_key(username);
        let lockout = Lockout::from_config(&self.auth);
        let key_for_lookup = key.clone();
        let (locked, found) = self
            .read(move |c| {
                let now = time::now();
                Ok((
                    lockout.locked_for(c, &key_for_lookup, now)?,
                    accounts::find_for_login(c, &key_for_lookup)?,
                ))
            })
            .await?;
        if let Some(retry_after) = locked {
            return Err(Error::Locked { retry_after });
        }
        let too_long = password.chars().count() > passwords::MAX_LEN;
        let (user, hash) = match found {
            Some((user, hash)) => (Some(user), Some(hash)),
            None => (None, None),
        };
        let verified = if too_long {
            false
        } else {
            self.hasher.verify(hash, password).await?
        };
        let user = match user {
            Some(user) if verified && !user.disabled => user,
            _ => return Err(self.record_failure(key, username, actor).await),
        };

        let allowed = user.role.scopes();
        let scopes = match requested.map(str::trim).filter(|s| !s.is_empty()) {
            None => allowed,
            Some(text) => {
                let asked = Scopes::parse(text).map_err(Error::InvalidScope)?;
                if !asked.is_subset_of(allowed) {
                    let extra: Vec<_> = asked
                        .iter()
                        .filter(|s| !allowed.contains(*s))
                        .map(Scope::as_str)
                        .collect();
                    return Err(Error::InvalidScope(extra.join(" ")));
                }
                asked
            }
        };
        // A user the CLI created or changed a moment ago may not have reached
        // this daemon's directory yet; the token must work on its first use.
        let current = self.directory.user(&user.id).map(|u| u.updated_at) == Some(user.updated_at);
        let actor = actor.clone();
        let pair = self
            .write(move |this, tx| {
                tx.execute("DELETE FROM login_failures WHERE username_key = ?1", [&key])?;
                let pair = this.open_session(tx, &user, scopes)?;
                audit::record(
                    tx,
                    &actor,
                    Action::AuthnLoginSuccess,
                    Some(&user.username),
                    Outcome::Success,
                    None,
                )?;
                Ok(pair)
            })
            .await?;
        if !current {
            self.refresh_directory().await;
        }
        Ok(pair)
    }

    /// Records a failed login (and the lock, when this failure starts one).
    async fn record_failure(self: &Arc<Self>, key: String, username: &str, actor: &Actor) -> Error {
        let lockout = Lockout::from_config(&self.auth);
        let actor = actor.clone();
        // Audit what was typed, bounded; control characters are escaped by the
        // log formatters and stored verbatim as data.
        let target: String = username.chars().take(64).collect();
        let result = self
            .write(move |_, tx| {
                let now = time::now();
                tx.execute(
                    "INSERT INTO login_failures (username_key, at) VALUES (?1, ?2)",
                    params![key, now],
                )?;
                // Failures older than any window still matter are dropped here.
                tx.execute(
                    "DELETE FROM login_failures WHERE at < ?1",
                    [now - (lockout.window + lockout.duration) as i64],
                )?;
                audit::record(
                    tx,
                    &actor,
                    Action::AuthnLoginFail,
                    Some(&target),
                    Outcome::Failure,
                    None,
                )?;
                if lockout.locked_for(tx, &key, now)?.is_some() {
                    let detail = format!("locked for {} s", lockout.duration);
                    audit::record(
                        tx,
                        &actor,
                        Action::AuthnLoginLock,
                        Some(&target),
                        Outcome::Failure,
                        Some(&detail),
                    )?;
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => Error::InvalidCredentials,
            Err(e) => e,
        }
    }

    /// Creates a session (refresh family) and its first token pair.
    fn open_session(
        &self,
        tx: &Transaction,
        user: &User,
        scopes: Scopes,
    ) -> std::result::Result<TokenPair, StoreError> {
        let now = time::now();
        let session = uuid::Uuid::new_v4().to_string();
        let rev = store::bump_version(tx)?;
        tx.execute(
            "INSERT INTO sessions (id, user_id, created_at, expires_at, rev) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![session, user.id, now, now + self.auth.refresh_ttl_secs as i64, rev],
        )?;
        self.issue_pair(tx, user, scopes, &session, now)
    }

    /// Signs an access token and a refresh token (recorded as unused) for `session`.
    fn issue_pair(
        &self,
        tx: &Transaction,
        user: &User,
        scopes: Scopes,
        session: &str,
        now: i64,
    ) -> std::result::Result<TokenPair, StoreError> {
        let a = &self.auth;
        let session_end: i64 = tx.query_row(
            "SELECT expires_at FROM sessions WHERE id = ?1",
            [session],
            |r| r.get(0),
        )?;
        let claims = |typ, ttl: i64| Claims {
            iss: a.issuer.clone(),
            aud: a.audience.clone(),
            sub: user.id.clone(),
            exp: (now + ttl).min(session_end),
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            scope: scopes.to_oauth(),
            typ,
            sid: session.to_string(),
        };
        let access = claims(TokenType::Access, a.access_ttl_secs as i64);
        let refresh = claims(TokenType::Refresh, a.refresh_ttl_secs as i64);
        tx.execute(
            "INSERT INTO refresh_tokens (jti, session_id, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![refresh.jti, session, now, refresh.exp],
        )?;
        Ok(TokenPair {
            access_token: self.tokens.issue(&access),
            refresh_token: self.tokens.issue(&refresh),
            token_type: "bearer",
            expires_in: (access.exp - now).max(0) as u64,
            scope: access.scope.clone(),
        })
    }

    /// Rotates a refresh token: single use; a second use revokes the session
    /// (reuse detection, RFC 9700 §4.14) and fails. The session's absolute
    /// lifetime is never extended.
    pub async fn refresh(self: &Arc<Self>, token: &str, actor: &Actor) -> Result<TokenPair> {
        let Some(claims) = self.tokens.verify(token, TokenType::Refresh) else {
            return Err(Error::Unauthenticated {
                presented: true,
                detail: "the refresh token is invalid or expired",
            });
        };
        let actor = actor.clone();
        let outcome = self
            .write(move |this, tx| {
                let now = time::now();
                let row: Option<(Option<i64>, Option<i64>, i64)> = tx
                    .query_row(
                        "SELECT t.used_at, s.revoked_at, s.expires_at
                             FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
                             WHERE t.jti = ?1 AND s.id = ?2 AND s.user_id = ?3",
                        params![claims.jti, claims.sid, claims.sub],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()?;
                let Some((used_at, revoked_at, session_end)) = row else {
                    return Ok(RefreshOutcome::Refused);
                };
                if revoked_at.is_some() || session_end <= now {
                    return Ok(RefreshOutcome::Refused);
                }
                let user = accounts::get(tx, &claims.sub)?;
                if used_at.is_some() {
                    revoke_session(tx, &claims.sid, "reuse", now)?;
                    let target = user.as_ref().map(|u| u.username.as_str());
                    audit::record(
                        tx,
                        &actor,
                        Action::AuthnTokenReuse,
                        target,
                        Outcome::Failure,
                        Some("session revoked"),
                    )?;
                    return Ok(RefreshOutcome::Reused);
                }
                let Some(user) = user.filter(|u| !u.disabled && claims.iat >= u.tokens_valid_after)
                else {
                    return Ok(RefreshOutcome::Refused);
                };
                tx.execute(
                    "UPDATE refresh_tokens SET used_at = ?2 WHERE jti = ?1",
                    params![claims.jti, now],
                )?;
                // Scopes never outgrow the owner's current role.
                let scopes = Scopes::parse(&claims.scope)
                    .unwrap_or_default()
                    .intersect(user.role.scopes());
                let pair = this.issue_pair(tx, &user, scopes, &claims.sid, now)?;
                Ok(RefreshOutcome::Issued(pair))
            })
            .await?;
        match outcome {
            RefreshOutcome::Issued(pair) => Ok(pair),
            RefreshOutcome::Reused => {
                self.refresh_directory().await;
                Err(Error::Unauthenticated {
                    presented: true,
                    detail: "the refresh token was already used; the session has been revoked",
                })
            }
            RefreshOutcome::Refused => Err(Error::Unauthenticated {
                presented: true,
                detail: "the refresh token is invalid or expired",
            }),
        }
    }

    /// Ends the caller's session: its access token (by `jti`) and its refresh
    /// family stop working at once.
    pub async fn logout(self: &Arc<Self>, principal: &Principal, actor: &Actor) -> Result<()> {
        let Credential::Session {
            token_id,
            session_id,
            expires_at,
            ..
        } = principal.credential.clone()
        else {
            return Err(Error::Forbidden(
                "an API key has no session to end; revoke the key instead".into(),
            ));
        };
        let username = principal.user.username.clone();
        let actor = actor.clone();
        self.change(move |_, tx| {
            let now = time::now();
            revoke_session(tx, &session_id, "logout", now)?;
            let rev = store::bump_version(tx)?;
            tx.execute(
                "INSERT OR IGNORE INTO revoked_tokens (jti, expires_at, rev) VALUES (?1, ?2, ?3)",
                params![token_id, expires_at, rev],
            )?;
            audit::record(
                tx,
                &actor,
                Action::AuthnLogout,
                Some(&username),
                Outcome::Success,
                None,
            )?;
            Ok(())
        })
        .await?;
        Ok(())
    }
}

/// Failed-login accounting per username key, kept in SQLite so a restart
/// cannot reset a lock.
#[derive(Debug, Clone, Copy)]
struct Lockout {
    threshold: u32,
    window: u64,
    duration: u64,
}

impl Lockout {
    fn from_config(a: &AuthConfig) -> Self {
        Lockout {
            threshold: a.lockout_threshold,
            window: a.lockout_window_secs,
            duration: a.lockout_secs,
        }
    }

    /// Seconds left on a lock: `threshold` failures within `window` seconds
    /// of the latest one lock the name until `duration` after it.
    fn locked_for(
        &self,
        c: &rusqlite::Connection,
        key: &str,
        now: i64,
    ) -> std::result::Result<Option<u64>, StoreError> {
        let latest: Option<i64> = c.query_row(
            "SELECT max(at) FROM login_failures WHERE username_key = ?1",
            [key],
            |r| r.get(0),
        )?;
        let Some(latest) = latest else {
            return Ok(None);
        };
        let until = latest + self.duration as i64;
        if until <= now {
            return Ok(None);
        }
        let recent: i64 = c.query_row(
            "SELECT count(*) FROM login_failures WHERE username_key = ?1 AND at > ?2",
            params![key, latest - self.window as i64],
            |r| r.get(0),
        )?;
        Ok((recent >= i64::from(self.threshold)).then(|| (until - now) as u64))
    }
}

fn revoke_session(
    tx: &Transaction,
    session: &str,
    reason: &str,
    now: i64,
) -> std::result::Result<(), StoreError> {
    let rev = store::bump_version(tx)?;
    tx.execute(
        "UPDATE sessions SET revoked_at = ?2, revoked_reason = ?3, rev = ?4 WHERE id = ?1 AND revoked_at IS NULL",
        params![session, now, reason, rev],
    )?;
    Ok(())
}
