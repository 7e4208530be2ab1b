//! `Error`: what a library service (identity, serving) can refuse, in
//! terms of the domain, and `StoreError`, what the SQLite store can fail
//! with. The HTTP adapter maps them to problem+json (`http::problem`), the
//! CLI to exit codes (`cli`); each in one place.
//!
//! `StoreError` lives here rather than in `store` so that `Error` can carry
//! it without this leaf importing the store (`store` re-exports it).

use std::path::PathBuf;

use rusqlite::ErrorCode;
use serde::Serialize;

use super::scopes::Scope;

/// One invalid field in a 422 answer (or a CLI usage error).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", describe(.0))]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// No usable credential. `presented`: a token or key was sent but refused.
    #[error("{detail}")]
    Unauthenticated {
        presented: bool,
        detail: &'static str,
    },
    /// Wrong username or password; deliberately says nothing more.
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("this credential lacks the `{0}` scope")]
    MissingScope(Scope),
    #[error("{0}")]
    Forbidden(String),
    #[error("requested scope exceeds what this account may have: {0}")]
    InvalidScope(String),
    #[error("too many failed logins for this account; retry in {retry_after} seconds")]
    Locked { retry_after: u64 },
    #[error("rate limit exceeded ({}); retry in {retry_after} seconds", .violated.join(", "))]
    RateLimited {
        retry_after: u64,
        /// The policies (windows) that refused, e.g. `free-minute`.
        violated: Vec<String>,
    },
    /// A dependency the operator made mandatory is down.
    #[error("{0}")]
    Unavailable(String),
    #[error("the server is busy; retry in {retry_after} seconds")]
    Overloaded { retry_after: u64 },
    /// Over a count the operator set (active jobs per user, say): 429.
    #[error("{detail}")]
    TooMany { detail: String, retry_after: u64 },
    /// Over a size the operator set (instances in one job, say): 413.
    #[error("{0}")]
    TooLarge(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `field: message; field: message`, for one-line error details.
pub fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| {
            if e.field.is_empty() {
                e.message.clone()
            } else {
                format!("{}: {}", e.field, e.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database is busy: another process held the write lock for longer than the busy timeout; retry shortly")]
    Busy,
    #[error("database {path} has schema version {found}, newer than this mlapi understands ({supported}); upgrade mlapi or use another database")]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("cannot open database {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("migration {name} failed: {source}")]
    Migration {
        name: &'static str,
        source: rusqlite::Error,
    },
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy,
            _ => StoreError::Sqlite(e),
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Store(e.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
