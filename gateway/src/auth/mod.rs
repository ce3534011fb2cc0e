//! Authentication: JWT verification, grants, failed-attempt limiting and
//! development tokens.
//!
//! Everything here is sans-IO: no file, no clock, no socket. The caller
//! reads the key files and passes PEM text, passes the current Unix time to
//! [`Authenticator::verify`] and the current [`Instant`](std::time::Instant)
//! to [`FailedAttempts`]. That keeps every rule unit-testable with
//! simulated time.
//!
//! ```text
//!  config snapshot ──► Authenticator::new(&AuthSettings)      (once per reload, shared in an Arc)
//!
//!  HELLO / TOKEN ─────► FailedAttempts::is_blocked(ip, now) ── yes ─► ERROR 408
//!                         │ no
//!                         ▼
//!                       Authenticator::verify(token, now_unix)
//!                         ├─ Err(AuthError) ─► ERROR AuthError::code() (400–404)
//!                         │                    + FailedAttempts::record_failure(ip, now)
//!                         └─ Ok(Identity { user, expires_at, grant })
//!
//!  SUBSCRIBE ─────────► Grant::may_subscribe(channel, user) ── no ─► ERROR 405
//!  PUBLISH ───────────► Grant::may_publish(channel, user)   ── no ─► ERROR 406
//!
//!  `gateway token` ───► mint_token(&KeySpec, private_key_pem, &MintClaims)
//! ```
//!
//! - [`jwt`]: the [`Authenticator`] (key set, signature and claim checks);
//! - [`grant`]: channel [`Pattern`]s and the [`Grant`] rules;
//! - [`rate_limit`]: [`FailedAttempts`], a bounded per-address sliding window;
//! - [`mint`]: [`mint_token`] for development tokens.
//!
//! The token format is described for operators in `docs/auth.md`.

pub mod grant;
pub mod jwt;
pub(crate) mod keys;
pub mod mint;
pub mod rate_limit;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use ferry_protocol::ErrorCode;
use thiserror::Error;

pub use grant::{Grant, Pattern, PatternError};
pub use jwt::Authenticator;
pub use mint::{MintClaims, mint_token};
pub use rate_limit::FailedAttempts;

/// A signature algorithm a key may be configured with. A token is accepted
/// only when its header `alg` is exactly the algorithm of the key it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Algorithm {
    /// HMAC with SHA-256 and a shared secret.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RSA public key, 2048 bits or more).
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
}

impl Algorithm {
    /// The JOSE name (`HS256`, `RS256`, `ES256`), as in a token header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Config: an algorithm name that is not `HS256`, `RS256` or `ES256`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unsupported algorithm {0:?}; expected HS256, RS256 or ES256")]
pub struct UnsupportedAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnsupportedAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "HS256" => Ok(Self::Hs256),
            "RS256" => Ok(Self::Rs256),
            "ES256" => Ok(Self::Es256),
            other => Err(UnsupportedAlgorithm(other.to_owned())),
        }
    }
}

/// One verification key, named by the `kid` that tokens carry in their
/// header.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// The key id; unique among the configured keys.
    pub kid: String,
    /// The only algorithm accepted for this key.
    pub algorithm: Algorithm,
    /// The shared secret (HS256 only; at least 32 bytes).
    pub secret: Option<String>,
    /// The public key as PEM text (RS256, ES256 only). The caller reads the
    /// file.
    pub public_key_pem: Option<String>,
}

impl fmt::Debug for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySpec")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("public_key_pem", &self.public_key_pem.is_some())
            .finish()
    }
}

/// What the [`Authenticator`] checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// The accepted keys; several may be valid side by side (rotation).
    pub keys: Vec<KeySpec>,
    /// When set, tokens must carry this audience (`aud`). When unset,
    /// tokens that carry an audience are refused (RFC 7519 §4.1.3).
    pub audience: Option<String>,
    /// When set, tokens must carry this issuer (`iss`).
    pub issuer: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

/// The default clock-skew allowance on `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(5);

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            audience: None,
            issuer: None,
            leeway: DEFAULT_LEEWAY,
        }
    }
}

/// Who a verified token says the client is, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The `sub` claim (never empty).
    pub user: String,
    /// The `exp` claim, in Unix seconds (leeway not included).
    pub expires_at: u64,
    /// The `ferry` claim.
    pub grant: Grant,
}

/// Why a token was refused. The client (or whoever issued its token) is at
/// fault in every case; [`AuthError::code`] is the code to send.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Client: authentication is required and no token was given.
    #[error("a token is required")]
    Missing,
    /// Client or issuer: not a well-formed JWT, or a required claim is
    /// missing or of the wrong shape (`sub`, `exp`, the `ferry` grant).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// Client: the token's `exp` has passed (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// Client or issuer: the token's `nbf` is still in the future (beyond
    /// the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// Client or issuer: the signature does not verify with the key the
    /// token names, or the token's `alg` is not that key's algorithm.
    #[error("the token signature does not verify")]
    BadSignature,
    /// Client or issuer: the header `kid` names no configured key (empty
    /// when the token names none and several keys are configured).
    #[error("{}", unknown_key_message(.0))]
    UnknownKey(String),
    /// Client or issuer: the token is for another audience.
    #[error("the token's audience is not accepted here")]
    WrongAudience,
    /// Client or issuer: the token comes from another issuer.
    #[error("the token's issuer is not accepted here")]
    WrongIssuer,
}

fn unknown_key_message(kid: &str) -> String {
    if kid.is_empty() {
        "the token names no key (kid) and several keys are configured".to_owned()
    } else {
        format!("the token names an unknown key {kid:?}")
    }
}

impl AuthError {
    /// The protocol error code that reports this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Missing => ErrorCode::TokenMissing,
            Self::Malformed(_) => ErrorCode::TokenMalformed,
            Self::Expired | Self::NotYetValid => ErrorCode::TokenExpired,
            Self::BadSignature | Self::UnknownKey(_) => ErrorCode::TokenBadSignature,
            Self::WrongAudience | Self::WrongIssuer => ErrorCode::TokenWrongAudience,
        }
    }
}

/// A key or minting input that cannot be used. The configuration (or, for
/// minting, the operator's command line) is at fault; each variant names
/// the key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AuthConfigError {
    /// Config: authentication is enabled but no key is configured.
    #[error("auth: no key is configured")]
    NoKeys,
    /// Config: a key has an empty `kid`.
    #[error("auth key #{index}: the kid is empty")]
    EmptyKid {
        /// The key's position in the list (0-based).
        index: usize,
    },
    /// Config: two keys share a `kid`.
    #[error("auth key {kid:?}: the kid is used by more than one key")]
    DuplicateKid {
        /// The key id.
        kid: String,
    },
    /// Config: an HS256 key has no (or an empty) secret.
    #[error("auth key {kid:?}: HS256 needs a secret")]
    MissingSecret {
        /// The key id.
        kid: String,
    },
    /// Config: an RS256 or ES256 key has no public key.
    #[error("auth key {kid:?}: {algorithm} needs a public key (PEM)")]
    MissingPublicKey {
        /// The key id.
        kid: String,
        /// The key's algorithm.
        algorithm: Algorithm,
    },
    /// Config: key material that the algorithm does not use (a secret for
    /// RS256, a PEM for HS256), most likely a mistake.
    #[error("auth key {kid:?}: {algorithm} does not take {what}")]
    UnexpectedKeyMaterial {
        /// The key id.
        kid: String,
        /// The key's algorithm.
        algorithm: Algorithm,
        /// What was given.
        what: &'static str,
    },
    /// Config: the public key PEM does not hold a public key of the
    /// configured algorithm.
    #[error("auth key {kid:?}: invalid public key: {reason}")]
    InvalidPublicKey {
        /// The key id.
        kid: String,
        /// Why.
        reason: String,
    },
    /// Config: the key is too weak (HS256 secret under 32 bytes, RSA
    /// modulus under 2048 bits).
    #[error("auth key {kid:?}: too weak: {reason}")]
    WeakKey {
        /// The key id.
        kid: String,
        /// Why.
        reason: String,
    },
    /// Operator: minting with RS256/ES256 needs the private key.
    #[error("auth key {kid:?}: {algorithm} needs the private key (PEM) to sign")]
    MissingPrivateKey {
        /// The key id.
        kid: String,
        /// The key's algorithm.
        algorithm: Algorithm,
    },
    /// Operator: the private key PEM cannot sign with the key's algorithm.
    #[error("auth key {kid:?}: invalid private key: {reason}")]
    InvalidPrivateKey {
        /// The key id.
        kid: String,
        /// Why.
        reason: String,
    },
    /// Operator: the private key does not belong to the configured public
    /// key, so the gateway would refuse the token.
    #[error("auth key {kid:?}: the private key does not match the configured public key")]
    KeyMismatch {
        /// The key id.
        kid: String,
    },
    /// Operator: the claims to mint are invalid (empty subject, zero TTL,
    /// bad pattern).
    #[error("token claims: {0}")]
    InvalidClaims(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_follow_the_table() {
        let cases = [
            (AuthError::Missing, ErrorCode::TokenMissing),
            (AuthError::Malformed("x".into()), ErrorCode::TokenMalformed),
            (AuthError::Expired, ErrorCode::TokenExpired),
            (AuthError::NotYetValid, ErrorCode::TokenExpired),
            (AuthError::BadSignature, ErrorCode::TokenBadSignature),
            (
                AuthError::UnknownKey("k".into()),
                ErrorCode::TokenBadSignature,
            ),
            (AuthError::WrongAudience, ErrorCode::TokenWrongAudience),
            (AuthError::WrongIssuer, ErrorCode::TokenWrongAudience),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code, "{err:?}");
            assert_eq!(err.code().as_u16() / 100, 4);
        }
    }

    #[test]
    fn algorithm_names_round_trip() {
        for alg in [Algorithm::Hs256, Algorithm::Rs256, Algorithm::Es256] {
            assert_eq!(alg.as_str().parse::<Algorithm>(), Ok(alg));
            let json = serde_json::to_string(&alg).unwrap();
            assert_eq!(json, format!("\"{alg}\""));
            assert_eq!(serde_json::from_str::<Algorithm>(&json).unwrap(), alg);
        }
        assert!("none".parse::<Algorithm>().is_err());
        assert!("hs256".parse::<Algorithm>().is_err());
    }

    #[test]
    fn key_debug_hides_the_secret() {
        let key = KeySpec {
            kid: "k".into(),
            algorithm: Algorithm::Hs256,
            secret: Some("super-secret-value".into()),
            public_key_pem: None,
        };
        let shown = format!("{key:?}");
        assert!(!shown.contains("super-secret-value"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn unknown_key_message_says_what_is_wrong() {
        assert!(
            AuthError::UnknownKey("old".into())
                .to_string()
                .contains("\"old\"")
        );
        assert!(
            AuthError::UnknownKey(String::new())
                .to_string()
                .contains("no key")
        );
    }
}

/// Keys for the unit tests of this module.
#[cfg(test)]
pub(crate) mod testkeys {
    use super::keys::SigningKey;
    use super::{Algorithm, KeySpec};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    /// The simulated "now" of the tests (2023-11-14).
    pub const NOW: u64 = 1_700_000_000;

    /// TEST-ONLY RSA key pair, committed under `testdata/`; never use it
    /// anywhere else.
    const RSA_PRIVATE: &str = include_str!("testdata/TEST-ONLY-rsa2048-private.pem");
    const RSA_PUBLIC: &str = include_str!("testdata/TEST-ONLY-rsa2048-public.pem");
    /// TEST-ONLY 1024-bit RSA public key, to check that weak keys are refused.
    pub const RSA_1024_PUBLIC: &str = include_str!("testdata/TEST-ONLY-rsa1024-public.pem");

    /// An HS256 key with a secret derived from its kid.
    pub fn hs(kid: &str) -> KeySpec {
        KeySpec {
            kid: kid.into(),
            algorithm: Algorithm::Hs256,
            secret: Some(format!("test-secret-of-kid-{kid}-padded-to-32-bytes")),
            public_key_pem: None,
        }
    }

    /// The RS256 test key and its private key PEM.
    pub fn rsa(kid: &str) -> (KeySpec, &'static str) {
        let key = KeySpec {
            kid: kid.into(),
            algorithm: Algorithm::Rs256,
            secret: None,
            public_key_pem: Some(RSA_PUBLIC.into()),
        };
        (key, RSA_PRIVATE)
    }

    /// A fresh ES256 (P-256) key and its private key PEM (PKCS#8).
    pub fn ec(kid: &str) -> (KeySpec, String) {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let key = KeySpec {
            kid: kid.into(),
            algorithm: Algorithm::Es256,
            secret: None,
            public_key_pem: Some(pair.public_key_pem()),
        };
        (key, pair.serialize_pem())
    }

    /// A compact JWS of exactly these header and claims JSON texts.
    pub fn sign_raw(header: &str, claims: &str, key: &SigningKey) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = key.sign(signed.as_bytes()).unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}
