//! JSON Web Tokens: the signing keys (HS256 or EdDSA, pinned by config), the
//! claims mlapi issues, and verification per RFC 8725.
//!
//! Verification trusts nothing in the header but `alg`, which must equal the
//! configured algorithm: `kid`, `jku`, `x5u` and `jwk` are never read or fetched.

use std::path::Path;

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
