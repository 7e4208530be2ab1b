//! Single-use WebSocket tickets, and re-checking a credential that a
//! long-lived connection holds.
//!
//! A browser cannot put a credential header on a WebSocket upgrade, and a
//! token in a URL ends up in logs and history. So a caller with a
//! credential asks for a ticket (`POST /api/v1/ws/tickets`) and opens the
//! socket with `?ticket=`: the ticket works once, within 30 s, on any
//! daemon sharing the store. Only its SHA-256 digest is stored, with what
//! the socket needs to re-check the credential behind it later.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use super::{Credential, Identity, Principal};
use crate::core::error::{Error, Result};
use crate::core::scopes::Scopes;
use crate::core::time;
use crate::store::StoreError;

/// How long a ticket may wait to be used.
pub const TICKET_SECS: i64 = 30;
const PREFIX: &str = "wst_";

/// A credential as it stands now (see [`Identity::recheck`]).
#[derive(Debug, Clone)]
pub struct Standing {
    /// The caller, with the scopes its credential still has.
    pub principal: Principal,
    /// When the credential stops working by itself (unix seconds).
    pub expires_at: Option<i64>,
}

fn digest(ticket: &str) -> Vec<u8> {
    Sha256::digest(ticket.as_bytes()).to_vec()
}

fn refused() -> Error {
    Error::Unauthenticated {
        presented: true,
        detail: "the ticket is invalid, used or expired; ask POST /api/v1/ws/tickets for a new one",
    }
}

impl Identity {
    /// A new ticket standing for `p` (blocking). Expired tickets are swept
    /// in the same transaction.
    pub fn issue_ticket(&self, p: &Principal) -> Result<String> {
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let ticket = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
        let now = time::now();
        let (key_id, key_digest, token_id, session_id, issued_at, token_expires_at) =
            match &p.credential {
                Credential::ApiKey { key_id, digest } => (
                    Some(key_id.to_string()),
                    Some(digest.to_vec()),
                    None,
                    None,
                    None,
                    None,
                ),
                Credential::Session {
                    token_id,
                    session_id,
                    issued_at,
                    expires_at,
                } => (
                    None,
                    None,
                    Some(token_id.clone()),
                    Some(session_id.clone()),
                    Some(*issued_at),
                    Some(*expires_at),
                ),
            };
        self.store.write(|tx| -> Result<()> {
            tx.execute("DELETE FROM ws_tickets WHERE expires_at <= ?1", [now])
                .map_err(StoreError::from)?;
            tx.execute(
                "INSERT INTO ws_tickets (digest, user_id, scopes, key_id, key_digest, token_id, \
                 session_id, token_issued_at, token_expires_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    digest(&ticket),
                    p.user.id,
                    p.scopes.to_oauth(),
                    key_id,
                    key_digest,
                    token_id,
                    session_id,
                    issued_at,
                    token_expires_at,
                    now + TICKET_SECS
                ],
            )
            .map_err(StoreError::from)?;
            Ok(())
        })?;
        Ok(ticket)
    }

    /// Uses up a ticket (blocking) and returns its credential as it stands
    /// now; a used, expired or unknown ticket is refused alike.
    pub fn redeem_ticket(&self, ticket: &str) -> Result<Standing> {
        if !ticket.starts_with(PREFIX) || ticket.len() > 64 {
            return Err(refused());
        }
        let now = time::now();
        type Row = (
            String,
            String,
            Option<String>,
            Option<Vec<u8>>,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<i64>,
            i64,
        );
        let row: Option<Row> = self.store.write(|tx| {
            tx.query_row(
                "DELETE FROM ws_tickets WHERE digest = ?1 RETURNING user_id, scopes, key_id, \
                 key_digest, token_id, session_id, token_issued_at, token_expires_at, expires_at",
                [digest(ticket)],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                    ))
                },
            )
            .optional()
            .map_err(StoreError::from)
        })?;
        let Some((user_id, scopes, key_id, key_digest, token_id, session_id, iat, exp, expires)) =
            row
        else {
            return Err(refused());
        };
        if expires <= now {
            return Err(refused());
        }
        let credential = match (key_id, key_digest, token_id, session_id, iat, exp) {
            (Some(key_id), Some(d), ..) => Credential::ApiKey {
                key_id: key_id.into(),
                digest: <[u8; 32]>::try_from(d.as_slice()).map_err(|_| refused())?,
            },
            (_, _, Some(token_id), Some(session_id), Some(issued_at), Some(expires_at)) => {
                Credential::Session {
                    token_id,
                    session_id,
                    issued_at,
                    expires_at,
                }
            }
            _ => return Err(refused()),
        };
        let user = self.directory.user(&user_id).ok_or_else(refused)?;
        let principal = Principal {
            user,
            scopes: Scopes::parse(&scopes).unwrap_or_default(),
            credential,
        };
        self.recheck(&principal).map_err(|_| refused())
    }

    /// `p`'s credential as the directory sees it now: refused once it was
    /// revoked, its account disabled or its tokens invalidated, or it
    /// expired; otherwise the scopes it still has (a demoted account loses
    /// what its new role lacks). Reads memory only.
    pub fn recheck(&self, p: &Principal) -> Result<Standing> {
        let now = time::now();
        let (user, scopes, expires_at) = match &p.credential {
            Credential::ApiKey { digest, .. } => {
                let (key, user) = self
                    .directory
                    .api_key(digest)
                    .ok_or(Error::Unauthenticated {
                        presented: true,
                        detail: "the API key was revoked",
                    })?;
                if key.expires_at.is_some_and(|e| e <= now) {
                    return Err(Error::Unauthenticated {
                        presented: true,
                        detail: "the API key expired",
                    });
                }
                let scopes = key.scopes.intersect(p.scopes);
                (user, scopes, key.expires_at)
            }
            Credential::Session {
                token_id,
                session_id,
                issued_at,
                expires_at,
            } => {
                let user = self
                    .directory
                    .user(&p.user.id)
                    .ok_or(Error::Unauthenticated {
                        presented: true,
                        detail: "the account is gone",
                    })?;
                if *expires_at <= now {
                    return Err(Error::Unauthenticated {
                        presented: true,
                        detail: "the access token expired",
                    });
                }
                if *issued_at < user.tokens_valid_after
                    || self.directory.is_revoked(token_id, session_id)
                {
                    return Err(Error::Unauthenticated {
                        presented: true,
                        detail: "the session was ended",
                    });
                }
                (user, p.scopes, Some(*expires_at))
            }
        };
        if user.disabled {
            return Err(Error::Unauthenticated {
                presented: true,
                detail: "the account is disabled",
            });
        }
        Ok(Standing {
            principal: Principal {
                scopes: scopes.intersect(user.role.scopes()),
                user,
                credential: p.credential.clone(),
            },
            expires_at,
        })
    }
}
