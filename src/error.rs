//! `Error`: what a library service (users, auth, keys, …) can refuse, in
//! terms of the domain. The HTTP adapter maps it to problem+json
//! (`http::problem`), the CLI to exit codes (`cli`); each in one place.

use serde::Serialize;

use crate::auth::scopes::Scope;
use crate::store::StoreError;

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

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Store(e.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
