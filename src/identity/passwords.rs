//! Passwords: the policy a new password must meet, and argon2id hashing and
//! verification with bounded concurrency, off the async runtime.
//!
//! Never logs or returns a password. Verification of an unknown user runs
//! against a dummy hash so it costs the same as a known one.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::SaltString;
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use tokio::sync::Semaphore;

use crate::config::AuthConfig;
use crate::core::error::{Error, FieldError, Result};

/// Longest accepted password, in characters (long-password DoS guard).
pub const MAX_LEN: usize = 128;
/// How long a request waits for a hashing slot before getting a 503.
const QUEUE_WAIT: Duration = Duration::from_secs(3);

static COMMON: OnceLock<HashSet<&'static str>> = OnceLock::new();

fn is_common(password: &str) -> bool {
    let list = COMMON.get_or_init(|| {
        include_str!("common-passwords.txt")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect()
    });
    list.contains(password.to_lowercase().as_str())
}

/// SPEC 5: at most 128 characters, not containing the username, not a common
/// password, and either 8+ characters with upper, lower, digit and symbol, or
/// 15+ characters of any kind (NIST SP 800-63B).
pub fn check_policy(password: &str, username: &str) -> std::result::Result<(), FieldError> {
    let bad = |m: &str| Err(FieldError::new("password", m));
    let len = password.chars().count();
    if len > MAX_LEN {
        return bad("must be at most 128 characters");
    }
    if len < 8 {
        return bad("must be at least 8 characters");
    }
    if !username.is_empty() && password.to_lowercase().contains(&username.to_lowercase()) {
        return bad("must not contain the username");
    }
    if is_common(password) {
        return bad("is one of the most commonly used passwords; choose another");
    }
    let classes = [
        password.chars().any(char::is_uppercase),
        password.chars().any(char::is_lowercase),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ];
    if len < 15 && !classes.iter().all(|&c| c) {
        return bad("needs 15 or more characters, or 8 or more with an upper-case letter, a lower-case letter, a digit and a symbol");
    }
    Ok(())
}

pub struct Hasher {
    argon: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// Verified against when the user does not exist, to equalise timing.
    dummy: String,
}

impl Hasher {
    pub fn new(config: &AuthConfig) -> Self {
        let params = Params::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
            None,
        )
        .expect("argon2 parameters validated with the config");
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::generate(&mut OsRng);
        let dummy = argon
            .hash_password(b"dummy password for unknown users", &salt)
            .expect("argon2 hashing")
            .to_string();
        Hasher {
            argon,
            permits: Arc::new(Semaphore::new(config.max_concurrent_hashes as usize)),
            dummy,
        }
    }

    /// Hashes on the current thread (CLI, or inside `spawn_blocking`).
    pub fn hash_blocking(&self, password: &str) -> String {
        let salt = SaltString::generate(&mut OsRng);
        self.argon
            .hash_password(password.as_bytes(), &salt)
            .expect("argon2 hashing with validated parameters")
            .to_string()
    }

    /// Verifies on the current thread. `None` (no such user) verifies against
    /// the dummy hash and returns false.
    pub fn verify_blocking(&self, hash: Option<&str>, password: &str) -> bool {
        let (hash, real) = match hash {
            Some(h) => (h, true),
            None => (self.dummy.as_str(), false),
        };
        let Ok(parsed) = PasswordHash::new(hash) else {
            tracing::error!("a stored password hash is malformed");
            return false;
        };
        // The hash carries its own parameters, so raising the cost in the
        // config never locks out existing users.
        let ok = self
            .argon
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && real
    }

    async fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        match tokio::time::timeout(QUEUE_WAIT, Arc::clone(&self.permits).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Error::Overloaded { retry_after: 1 }),
        }
    }

    /// Hashes off the runtime, at most `max_concurrent_hashes` at a time.
    pub async fn hash(self: &Arc<Self>, password: String) -> Result<String> {
        let permit = self.slot().await?;
        let this = Arc::clone(self);
        let hash = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            this.hash_blocking(&password)
        })
        .await
        .map_err(|_| Error::Overloaded { retry_after: 1 })?;
        Ok(hash)
    }

    pub async fn verify(self: &Arc<Self>, hash: Option<String>, password: String) -> Result<bool> {
        let permit = self.slot().await?;
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            this.verify_blocking(hash.as_deref(), &password)
        })
        .await
        .map_err(|_| Error::Overloaded { retry_after: 1 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert!(check_policy("SecurePass123!", "testuser").is_ok());
        assert!(check_policy("correct horse battery staple", "testuser").is_ok());
        assert!(check_policy("ünïcödé pässphräsé wïth nö dïgïts", "bob").is_ok());
        assert!(check_policy(&"a".repeat(64).replace('a', "ab"), "bob").is_ok());
        for (password, why) in [
            ("Sh0rt!", "at least 8"),
            ("alllowercase1!", "15 or more"),
            ("NoDigitsHere!", "15 or more"),
            ("testuser-Secure1!", "username"),
            ("MailCreated5240", "commonly used"),
            ("qwertyuiop", "commonly used"),
        ] {
            let err = check_policy(password, "testuser").unwrap_err();
            assert!(err.message.contains(why), "{password}: {}", err.message);
        }
        assert!(check_policy(&"Aa1!".repeat(33), "x")
            .unwrap_err()
            .message
            .contains("128"));
    }

    #[test]
    fn hashes_are_salted_argon2id_and_verify() {
        let config = AuthConfig {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            ..AuthConfig::default()
        };
        let hasher = Hasher::new(&config);
        let a = hasher.hash_blocking("SecurePass123!");
        let b = hasher.hash_blocking("SecurePass123!");
        assert_ne!(a, b, "a fresh salt per hash");
        assert!(a.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{a}");
        assert!(hasher.verify_blocking(Some(&a), "SecurePass123!"));
        assert!(!hasher.verify_blocking(Some(&a), "SecurePass123?"));
        assert!(!hasher.verify_blocking(None, "dummy password for unknown users"));
    }

    #[test]
    fn defaults_are_owasp_strength() {
        let c = AuthConfig::default();
        assert!(
            c.argon2_memory_kib >= 19_456 && c.argon2_iterations >= 2 && c.argon2_parallelism >= 1
        );
    }
}
