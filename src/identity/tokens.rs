//! JSON Web Tokens: the signing keys (HS256 or EdDSA, pinned by config), the
//! claims mlapi issues, and verification per RFC 8725.
//!
//! Verification trusts nothing in the header but `alg`, which must equal the
//! configured algorithm: `kid`, `jku`, `x5u` and `jwk` are never read or fetched.

use std::path::Path;
use std::sync::{Arc, RwLock};

use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{AuthConfig, JwtAlgorithm};
use crate::store::secrets::{self, SecretError};

/// Clock skew tolerated on `exp` and `nbf` (RFC 8725 practice; SPEC: at most 30 s).
pub const LEEWAY_SECS: u64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Access,
    Refresh,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    /// OAuth2 space-separated scopes.
    pub scope: String,
    pub typ: TokenType,
    /// The session (refresh-token family) this token belongs to.
    pub sid: String,
}

pub struct TokenKeys {
    algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenKeys {
    /// The configured secret, or the key generated on first use in `state_dir`.
    pub fn load(config: &AuthConfig, state_dir: &Path) -> Result<Self, SecretError> {
        let (algorithm, encoding, decoding) = match config.jwt_algorithm {
            JwtAlgorithm::HS256 => {
                let secret = if config.jwt_secret.is_empty() {
                    let stored = secrets::load_or_create(&state_dir.join("jwt-hs256.key"), || {
                        base64::engine::general_purpose::STANDARD
                            .encode(secrets::random_bytes(48))
                            .into_bytes()
                    })?;
                    let text = String::from_utf8_lossy(&stored).trim().to_string();
                    if text.len() < 32 {
                        return Err(SecretError::Io {
                            path: state_dir.join("jwt-hs256.key"),
                            message: "shorter than 32 bytes; delete it to generate a new one"
                                .into(),
                        });
                    }
                    text.into_bytes()
                } else {
                    config.jwt_secret.clone().into_bytes()
                };
                (
                    Algorithm::HS256,
                    EncodingKey::from_secret(&secret),
                    DecodingKey::from_secret(&secret),
                )
            }
            JwtAlgorithm::EdDSA => {
                let path = state_dir.join("jwt-ed25519.pk8");
                let der = secrets::load_or_create(&path, || {
                    let seed: [u8; 32] = secrets::random_bytes(32).try_into().expect("32 bytes");
                    ed25519_dalek::SigningKey::from_bytes(&seed)
                        .to_pkcs8_der()
                        .expect("encode a fresh Ed25519 key")
                        .as_bytes()
                        .to_vec()
                })?;
                let signing = ed25519_dalek::SigningKey::from_pkcs8_der(&der).map_err(|e| {
                    SecretError::Io {
                        path: path.clone(),
                        message: format!("not a PKCS#8 Ed25519 key: {e}"),
                    }
                })?;
                (
                    Algorithm::EdDSA,
                    EncodingKey::from_ed_der(&der),
                    DecodingKey::from_ed_der(signing.verifying_key().as_bytes()),
                )
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        Ok(TokenKeys {
            algorithm,
            encoding,
            decoding,
            validation,
        })
    }

    pub fn issue(&self, claims: &Claims) -> String {
        let mut header = Header::new(self.algorithm);
        header.typ = Some(match claims.typ {
            TokenType::Access => "at+jwt".into(),
            TokenType::Refresh => "JWT".into(),
        });
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signing with a loaded key")
    }

    /// Checks signature, algorithm, `iss`, `aud`, `exp`, `nbf` and the token
    /// type. Revocation and the user's state are the caller's to check.
    pub fn verify(&self, token: &str, expected: TokenType) -> Option<Claims> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        (data.claims.typ == expected).then_some(data.claims)
    }
}

/// Shards of [`Verified`]; a power of two.
const VERIFIED_SHARDS: usize = 16;
/// Entries per shard: 16,384 tokens in all (a few MB), enough for the
/// sessions active on one daemon; more are verified in full each time.
const VERIFIED_PER_SHARD: usize = 1024;

/// Access tokens this process has already verified, so a token sent again
/// skips base64, JSON and the signature: its claims are kept until they
/// expire. Only a token that passed [`TokenKeys::verify`] is ever stored,
/// (and only while its account and session are usable), so a caller cannot
/// fill the map with tokens of its choosing. Entries are found by the
/// signature segment (a randomly seeded hash map) and then compared whole
/// in constant time, so a lookup does not tell how much of a guessed token
/// matched. Signing keys are loaded once per process; a future key
/// rotation must empty this. Revocation,
/// a disabled account and the owner's current role are still checked on
/// every request by the caller, from the directory.
pub struct Verified {
    shards: Box<[Shard]>,
}

type Shard = RwLock<crate::FastMap<Box<str>, Arc<Memo>>>;

struct Memo {
    token: Box<str>,
    claims: Arc<Claims>,
}

impl Default for Verified {
    fn default() -> Self {
        Verified {
            shards: (0..VERIFIED_SHARDS).map(|_| Default::default()).collect(),
        }
    }
}

impl Verified {
    fn signature(token: &str) -> Option<&str> {
        token
            .rsplit_once('.')
            .map(|(_, s)| s)
            .filter(|s| !s.is_empty())
    }

    fn shard(&self, signature: &str) -> &Shard {
        // Over every byte: one base64 character alone is not uniform.
        let h = signature
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
        &self.shards[h % VERIFIED_SHARDS]
    }

    /// The claims of `token` if it was verified before and is still within
    /// its `nbf`/`exp` (with the same leeway as [`TokenKeys::verify`]).
    pub fn get(&self, token: &str, now: i64) -> Option<Arc<Claims>> {
        use subtle::ConstantTimeEq;
        let signature = Self::signature(token)?;
        let memo = self
            .shard(signature)
            .read()
            .expect("verified tokens lock")
            .get(signature)
            .cloned()?;
        let same = memo.token.as_bytes().ct_eq(token.as_bytes());
        (bool::from(same) && usable(&memo.claims, now)).then(|| Arc::clone(&memo.claims))
    }

    /// Remembers a token [`TokenKeys::verify`] accepted.
    pub fn insert(&self, token: &str, claims: &Arc<Claims>, now: i64) {
        let Some(signature) = Self::signature(token) else {
            return;
        };
        let mut shard = self.shard(signature).write().expect("verified tokens lock");
        if shard.len() >= VERIFIED_PER_SHARD {
            shard.retain(|_, memo| usable(&memo.claims, now));
            if shard.len() >= VERIFIED_PER_SHARD {
                shard.clear();
            }
        }
        shard.insert(
            signature.into(),
            Arc::new(Memo {
                token: token.into(),
                claims: Arc::clone(claims),
            }),
        );
    }
}

/// `exp` and `nbf` as jsonwebtoken's validation judges them, leeway included.
fn usable(claims: &Claims, now: i64) -> bool {
    let leeway = LEEWAY_SECS as i64;
    claims.exp >= now - leeway && claims.nbf <= now + leeway
}

#[cfg(test)]
mod verified_tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            iss: "mlapi".into(),
            aud: "mlapi".into(),
            sub: "u1".into(),
            exp,
            iat: 0,
            nbf: 0,
            jti: "j1".into(),
            scope: "predict:read".into(),
            typ: TokenType::Access,
            sid: "s1".into(),
        }
    }

    #[test]
    fn only_the_same_unexpired_token_is_remembered() {
        let verified = Verified::default();
        let token = "aaa.bbb.signature";
        assert!(verified.get(token, 100).is_none());
        verified.insert(token, &Arc::new(claims(1_000)), 100);
        assert_eq!(verified.get(token, 100).unwrap().sub, "u1");
        // Another payload under the same signature is not that token.
        assert!(verified.get("aaa.ccc.signature", 100).is_none());
        assert!(verified.get("signature", 100).is_none());
        // Past exp + leeway it is verified again (and refused) by the caller.
        assert!(verified.get(token, 1_000 + LEEWAY_SECS as i64).is_some());
        assert!(verified.get(token, 1_001 + LEEWAY_SECS as i64).is_none());
    }

    #[test]
    fn a_full_shard_makes_room() {
        let verified = Verified::default();
        for i in 0..(VERIFIED_SHARDS * VERIFIED_PER_SHARD * 2) {
            verified.insert(&format!("h.p.s{i}"), &Arc::new(claims(1_000)), 0);
        }
        let total: usize = verified
            .shards
            .iter()
            .map(|s| s.read().unwrap().len())
            .sum();
        assert!(total <= VERIFIED_SHARDS * VERIFIED_PER_SHARD, "{total}");
    }
}
