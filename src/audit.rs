//! The security event log: one append-only row per security-relevant event,
//! written in the same transaction as the change it records.
//!
//! Owns the event vocabulary (OWASP logging vocabulary names) and the row
//! format. It must never record a secret: callers pass names and ids only.

use rusqlite::{params, Connection};

use crate::store::StoreError;

/// Event names from the OWASP Logging Vocabulary cheat sheet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    SysStartup,
    SysShutdown,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::SysStartup => "sys_startup",
            Action::SysShutdown => "sys_shutdown",
        }
    }
}

/// One audit row. `actor` is a username, `system`, or `cli:<os user>`.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub actor: &'a str,
    pub action: Action,
    pub target: Option<&'a str>,
    pub success: bool,
    pub request_id: Option<&'a str>,
    pub detail: Option<&'a str>,
}

impl<'a> Event<'a> {
    pub fn system(action: Action, detail: Option<&'a str>) -> Self {
        Event {
            actor: "system",
            action,
            target: None,
            success: true,
            request_id: None,
            detail,
        }
    }
}

/// Appends `event` using `conn`, which should be the transaction making the
/// change so both land or neither does.
pub fn record(conn: &Connection, event: &Event<'_>) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO audit_events (actor, action, target, outcome, request_id, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            event.actor,
            event.action.as_str(),
            event.target,
            if event.success { "success" } else { "failure" },
            event.request_id,
            event.detail,
        ],
    )?;
    Ok(())
}
