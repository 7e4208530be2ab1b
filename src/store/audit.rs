//! The security event log: one append-only row per security-relevant event,
//! written in the same transaction as the change it records.
//!
//! Owns the event vocabulary (OWASP Logging Vocabulary names), who the actor
//! is, and queries for `mlapi audit`. It must never record a secret: callers
//! pass names and ids only.

use rusqlite::{params, Connection};
use serde::Serialize;

use super::StoreError;

/// Event names, from the OWASP Logging Vocabulary cheat sheet where one fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    SysStartup,
    SysShutdown,
    UserCreate,
    AuthnLoginSuccess,
    AuthnLoginFail,
    AuthnLoginLock,
    AuthnTokenReuse,
    AuthnLogout,
    AuthnPasswordChange,
    AuthzChange,
    AuthzFail,
    UserTierChange,
    UserDisable,
    UserEnable,
    KeyCreate,
    KeyRotate,
    KeyRevoke,
    VersionDeprecate,
    VersionUndeprecate,
    CacheFlush,
}

impl Action {
    pub const ALL: [Action; 20] = [
        Action::SysStartup,
        Action::SysShutdown,
        Action::UserCreate,
        Action::AuthnLoginSuccess,
        Action::AuthnLoginFail,
        Action::AuthnLoginLock,
        Action::AuthnTokenReuse,
        Action::AuthnLogout,
        Action::AuthnPasswordChange,
        Action::AuthzChange,
        Action::AuthzFail,
        Action::UserTierChange,
        Action::UserDisable,
        Action::UserEnable,
        Action::KeyCreate,
        Action::KeyRotate,
        Action::KeyRevoke,
        Action::VersionDeprecate,
        Action::VersionUndeprecate,
        Action::CacheFlush,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::SysStartup => "sys_startup",
            Action::SysShutdown => "sys_shutdown",
            Action::UserCreate => "user_create",
            Action::AuthnLoginSuccess => "authn_login_success",
            Action::AuthnLoginFail => "authn_login_fail",
            Action::AuthnLoginLock => "authn_login_lock",
            Action::AuthnTokenReuse => "authn_token_reuse",
            Action::AuthnLogout => "authn_logout",
            Action::AuthnPasswordChange => "authn_password_change",
            Action::AuthzChange => "authz_change",
            Action::AuthzFail => "authz_fail",
            Action::UserTierChange => "user_tier_change",
            Action::UserDisable => "user_disable",
            Action::UserEnable => "user_enable",
            Action::KeyCreate => "apikey_create",
            Action::KeyRotate => "apikey_rotate",
            Action::KeyRevoke => "apikey_revoke",
            Action::VersionDeprecate => "version_deprecate",
            Action::VersionUndeprecate => "version_undeprecate",
            Action::CacheFlush => "cache_flush",
        }
    }
}

/// Who did it, and from where.
#[derive(Debug, Clone)]
pub struct Actor {
    /// A username, `anonymous`, `system`, or `cli:<os user>`.
    pub name: String,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
    /// The API key the request was authenticated with, if any.
    pub api_key_id: Option<String>,
}

impl Actor {
    pub fn system() -> Actor {
        Actor {
            name: "system".into(),
            client_ip: None,
            request_id: None,
            api_key_id: None,
        }
    }

    /// The operator running the CLI: the user behind `sudo` when there is one.
    pub fn cli() -> Actor {
        let user = ["SUDO_USER", "USER", "LOGNAME"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| {
                // No login name in the environment (cron, containers): the uid.
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata("/proc/self")
                    .map_or_else(|_| "unknown".into(), |m| format!("uid {}", m.uid()))
            });
        Actor {
            name: format!("cli:{user}"),
            client_ip: None,
            request_id: None,
            api_key_id: None,
        }
    }
}

/// Whether the recorded attempt succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// Appends one row using `conn`, which should be the transaction making the
/// change so both land or neither does.
pub fn record(
    conn: &Connection,
    actor: &Actor,
    action: Action,
    target: Option<&str>,
    outcome: Outcome,
    detail: Option<&str>,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO audit_events (actor, action, target, outcome, request_id, client_ip, detail, api_key_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            actor.name,
            action.as_str(),
            target,
            outcome.as_str(),
            actor.request_id,
            actor.client_ip,
            detail,
            actor.api_key_id,
        ],
    )?;
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
    pub detail: Option<String>,
    /// The API key that acted, when one did.
    pub api_key_id: Option<String>,
}

/// Filters for `mlapi audit`.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Only events at or after this RFC 3339 UTC instant.
    pub since: Option<String>,
    /// Events where this name is the actor or the target.
    pub user: Option<String>,
    pub action: Option<String>,
    pub limit: u32,
}

pub fn query(conn: &Connection, q: &Query) -> Result<Vec<AuditRow>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, at, actor, action, target, outcome, client_ip, request_id, detail, api_key_id
         FROM audit_events
         WHERE (?1 IS NULL OR at >= ?1)
           AND (?2 IS NULL OR actor = ?2 OR target = ?2)
           AND (?3 IS NULL OR action = ?3)
         ORDER BY id DESC LIMIT ?4",
    )?;
    let rows = stmt
        .query_map(params![q.since, q.user, q.action, q.limit], |r| {
            Ok(AuditRow {
                id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                target: r.get(4)?,
                outcome: r.get(5)?,
                client_ip: r.get(6)?,
                request_id: r.get(7)?,
                detail: r.get(8)?,
                api_key_id: r.get(9)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
