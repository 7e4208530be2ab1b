//! Identity: who a caller is and what they may do. Accounts (`accounts`),
//! password login with lockout and JWT sessions (`sessions`), API keys
//! (`keys`) and their usage counts (`usage`), passwords (`passwords`), token
//! signing (`tokens`), and the in-memory snapshot the request path reads
//! (`directory`).
//!
//! [`Identity`] owns exactly the handles these need, so each operation's
//! signature says what it touches; the CLI and the HTTP handlers call the same
//! methods. It must not know HTTP or CLI types, or read SQLite on the request
//! path (`authenticate` reads only the directory).

pub mod accounts;
pub mod directory;
pub mod keys;
pub mod passwords;
pub mod sessions;
pub mod tickets;
pub mod tokens;
pub mod usage;

use std::sync::Arc;

use rusqlite::{Connection, Transaction};

use crate::config::AuthConfig;
use crate::core::error::{Error, Result};
use crate::core::scopes::{Scope, Scopes};
use crate::core::time;
use crate::store::audit::{self, Action, Actor, Outcome};
use crate::store::{Store, StoreError};
use accounts::User;
use directory::Directory;
use keys::Pepper;
use passwords::Hasher;
use tokens::{TokenKeys, TokenType, Verified};
use usage::Usage;

/// The identity service: accounts, sessions, API keys and authentication.
pub struct Identity {
    store: Store,
    /// argon2id, bounded by its own semaphore.
    hasher: Arc<Hasher>,
    tokens: TokenKeys,
    /// Access tokens already verified, with their claims.
    verified: Verified,
    pepper: Pepper,
    /// API-key usage counted in memory, flushed in batches.
    usage: Usage,
    /// Accounts, revocations and usable keys in memory; see `directory`.
    directory: Directory,
    auth: AuthConfig,
    /// The tiers an account may be on, most restrictive first (`[tiers.*]`).
    tiers: Vec<String>,
    /// The directory's version, sent whenever a refresh changed it: what
    /// long-lived connections re-check their credential on.
    changed: tokio::sync::watch::Sender<i64>,
}

/// An authenticated caller: the account (as of the last directory refresh)
/// and the scopes of the credential it presented.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: Arc<User>,
    pub scopes: Scopes,
    pub credential: Credential,
}

/// What the caller presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A JWT access token: its id, session and expiry, for logout.
    Session {
        token_id: String,
        session_id: String,
        issued_at: i64,
        expires_at: i64,
    },
    ApiKey {
        key_id: Arc<str>,
        /// The key's peppered digest: what finds it in the directory again
        /// (`Identity::recheck`).
        digest: [u8; 32],
    },
}

impl Principal {
    /// 403 naming the scope unless the credential carries it.
    pub fn require(&self, scope: Scope) -> Result<()> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(Error::MissingScope(scope))
        }
    }
}

impl Identity {
    /// Builds the service over `store` and loads the directory. Blocking.
    pub fn open(
        store: Store,
        auth: &AuthConfig,
        tiers: Vec<String>,
        tokens: TokenKeys,
        pepper: Pepper,
    ) -> std::result::Result<Self, StoreError> {
        let identity = Identity {
            hasher: Arc::new(Hasher::new(auth)),
            tokens,
            verified: Verified::default(),
            pepper,
            usage: Usage::default(),
            directory: Directory::default(),
            auth: auth.clone(),
            tiers,
            store,
            changed: tokio::sync::watch::Sender::new(0),
        };
        identity.directory.refresh(&identity.store)?;
        identity.changed.send_replace(identity.directory.version());
        Ok(identity)
    }

    /// Brings the in-memory directory up to date with SQLite. A failure is
    /// logged and retried by the next refresh; the old snapshot stays.
    pub async fn refresh_directory(self: &Arc<Self>) {
        let this = Arc::clone(self);
        let refreshed = self
            .store
            .run_blocking(move |store| this.directory.refresh(store))
            .await;
        if let Err(e) = refreshed {
            tracing::warn!(error = %e, "directory refresh failed; will retry");
        }
        let version = self.directory.version();
        self.changed.send_if_modified(|seen| {
            let moved = *seen != version;
            *seen = version;
            moved
        });
    }

    /// Changes whenever accounts, sessions or keys may have changed (a
    /// refresh loaded something): the cue to [`Identity::recheck`].
    pub fn credential_changes(&self) -> tokio::sync::watch::Receiver<i64> {
        self.changed.subscribe()
    }

    /// Runs `f` on a connection for reading, on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.store.run_blocking(move |store| store.read(f)).await
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the blocking pool;
    /// a refusal from `f` rolls it back.
    async fn write<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        F: FnOnce(&Identity, &Transaction) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let this = Arc::clone(self);
        self.store
            .run_blocking(move |store| store.write(|tx| f(&this, tx)))
            .await
    }

    /// [`Identity::write`], then a directory refresh: this process applies
    /// its own change at once (other processes within a second).
    async fn change<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        F: FnOnce(&Identity, &Transaction) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let value = self.write(f).await?;
        self.refresh_directory().await;
        Ok(value)
    }

    /// Writes the API-key usage counted so far (see `usage::Usage::flush`).
    pub async fn flush_usage(self: &Arc<Self>) -> std::result::Result<usize, StoreError> {
        let this = Arc::clone(self);
        self.store
            .run_blocking(move |store| this.usage.flush(store))
            .await
    }

    /// Turns a presented credential (a JWT or an `sk_live_` key) into a
    /// principal using only memory.
    pub fn authenticate(&self, credential: &str) -> Result<Principal> {
        if credential.starts_with(keys::PREFIX) {
            self.authenticate_key(credential)
        } else {
            self.authenticate_token(credential)
        }
    }

    /// An API key (whatever was sent in `X-API-Key` is judged as one): shape
    /// and checksum first (no lookup for junk), then the peppered digest in the
    /// in-memory index, expiry, and the owner's state. Every refusal is the same
    /// message, so there is no oracle.
    pub fn authenticate_key(&self, presented: &str) -> Result<Principal> {
        let refused = || Error::Unauthenticated {
            presented: true,
            detail: "the API key is invalid, expired or revoked",
        };
        if !keys::well_formed(presented) {
            return Err(refused());
        }
        let digest = self.pepper.digest(presented);
        let (key, user) = self.directory.api_key(&digest).ok_or_else(refused)?;
        if user.disabled || key.expires_at.is_some_and(|e| e <= time::now()) {
            return Err(refused());
        }
        self.usage.record(&key.id);
        Ok(Principal {
            scopes: key.scopes.intersect(user.role.scopes()),
            user,
            credential: Credential::ApiKey {
                key_id: Arc::clone(&key.id),
                digest,
            },
        })
    }

    /// A JWT access token: signature and claims, then the in-memory directory for
    /// revocation, disabled accounts, and the owner's current role.
    fn authenticate_token(&self, token: &str) -> Result<Principal> {
        let invalid = || Error::Unauthenticated {
            presented: true,
            detail: "the access token is invalid, expired or revoked",
        };
        let now = time::now();
        let (claims, remembered) = match self.verified.get(token, now) {
            Some(claims) => (claims, true),
            None => {
                let claims = self
                    .tokens
                    .verify(token, TokenType::Access)
                    .ok_or_else(invalid)?;
                (Arc::new(claims), false)
            }
        };
        let user = self.directory.user(&claims.sub).ok_or_else(invalid)?;
        if user.disabled
            || claims.iat < user.tokens_valid_after
            || self.directory.is_revoked(&claims.jti, &claims.sid)
        {
            return Err(invalid());
        }
        // Only a token that is usable right now is remembered.
        if !remembered {
            self.verified.insert(token, &claims, now);
        }
        // A demoted user's existing tokens lose what the new role lacks at once.
        let scopes = Scopes::parse(&claims.scope)
            .unwrap_or_default()
            .intersect(user.role.scopes());
        Ok(Principal {
            user,
            scopes,
            credential: Credential::Session {
                token_id: claims.jti.clone(),
                session_id: claims.sid.clone(),
                issued_at: claims.iat,
                expires_at: claims.exp,
            },
        })
    }

    /// 403 naming the scope unless `p` carries it; a refusal is audited
    /// (`authz_fail`) before it is returned.
    pub async fn authorize(
        self: &Arc<Self>,
        p: &Principal,
        scope: Scope,
        actor: &Actor,
    ) -> Result<()> {
        if p.require(scope).is_ok() {
            return Ok(());
        }
        let (actor, detail) = (actor.clone(), format!("missing scope {scope}"));
        self.write(move |_, tx| {
            let (action, outcome) = (Action::AuthzFail, Outcome::Failure);
            audit::record(tx, &actor, action, None, outcome, Some(&detail))?;
            Ok(())
        })
        .await?;
        Err(Error::MissingScope(scope))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::accounts::NewUser;
    use super::keys::NewKey;
    use super::*;
    use crate::core::scopes::Role;

    /// The service builds from its own handles, without `App` or a config
    /// file: a store, the auth settings, the tier names, keys and pepper.
    #[test]
    fn identity_stands_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("mlapi.db"), Duration::from_secs(1), 2).unwrap();
        let auth = AuthConfig {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            ..AuthConfig::default()
        };
        let identity = Arc::new(
            Identity::open(
                store,
                &auth,
                vec!["free".into()],
                TokenKeys::load(&auth, dir.path()).unwrap(),
                Pepper::load(dir.path()).unwrap(),
            )
            .unwrap(),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let actor = Actor::system();
        runtime.block_on(async {
            let new = NewUser {
                username: "alice".into(),
                email: "alice@example.com".into(),
                password: "SecurePass123!".into(),
                role: Role::User,
                tier: None,
            };
            let user = identity.create_user(new, &actor).await.unwrap();
            let pair = identity
                .login("Alice", "SecurePass123!".into(), None, &actor)
                .await
                .unwrap();
            let p = identity.authenticate(&pair.access_token).unwrap();
            assert_eq!(p.user.id, user.id);
            let key = NewKey {
                owner: "alice".into(),
                name: "ci".into(),
                scopes: Some(Scopes::parse("predict:read").unwrap()),
                expires_at: None,
            };
            let created = identity.create_key(key, None, &actor).await.unwrap();
            let p = identity.authenticate_key(&created.api_key).unwrap();
            assert!(p.require(Scope::PredictRead).is_ok());
            assert!(matches!(
                identity.authorize(&p, Scope::Admin, &actor).await,
                Err(Error::MissingScope(Scope::Admin))
            ));
            let tier = identity
                .update_user(&user.id, accounts::Change::Tier("gold".into()), &actor)
                .await
                .unwrap_err();
            assert!(matches!(tier, Error::Invalid(_)), "{tier}");
        });
    }
}
