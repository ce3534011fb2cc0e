//! Token verification: the key set, the signature, then the claims.
//!
//! The token is taken apart here (a JWS compact parser of a few lines), so
//! that the time is passed in (sans-IO) and the work stays small: the
//! header is decoded into a stack buffer and read without copying, the
//! signature is checked before the payload is parsed, and the payload is
//! read with borrowed strings. The signatures are `ring`'s, the crypto
//! stack rustls and quinn already use (`auth/keys.rs`).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::grant::Grant;
use super::keys::{KeyProblem, VerifyKey};
use super::{Algorithm, AuthConfigError, AuthError, AuthSettings, Identity, KeySpec};

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Longest decoded header accepted, in bytes (it is decoded on the stack).
const MAX_HEADER_LEN: usize = 1024;
/// Longest `kid` accepted, in bytes.
pub const MAX_KID_LEN: usize = 128;
/// Longest `sub` accepted, in bytes.
pub const MAX_SUBJECT_LEN: usize = 256;
/// Shortest HS256 secret accepted (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_LEN: usize = 32;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Verifies tokens against a set of keys. Built once per configuration
/// snapshot; it is immutable, `Send + Sync` and cheap to share in an `Arc`.
pub struct Authenticator {
    keys: Vec<VerifyingKey>,
    audience: Option<Box<str>>,
    issuer: Option<Box<str>>,
    leeway_secs: u64,
}

struct VerifyingKey {
    kid: Box<str>,
    algorithm: Algorithm,
    key: VerifyKey,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field(
                "keys",
                &self
                    .keys
                    .iter()
                    .map(|k| (&*k.kid, k.algorithm))
                    .collect::<Vec<_>>(),
            )
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("leeway_secs", &self.leeway_secs)
            .finish()
    }
}

impl Authenticator {
    /// Loads and checks every key. Fails with the first problem; see
    /// [`Authenticator::check`] to get them all.
    pub fn new(settings: &AuthSettings) -> Result<Self, AuthConfigError> {
        let (auth, problems) = Self::build(settings);
        match problems.into_iter().next() {
            None => Ok(auth),
            Some(first) => Err(first),
        }
    }

    /// Every problem of these settings, for a configuration check that
    /// reports them all at once. Empty when [`Authenticator::new`] succeeds.
    pub fn check(settings: &AuthSettings) -> Vec<AuthConfigError> {
        Self::build(settings).1
    }

    fn build(settings: &AuthSettings) -> (Self, Vec<AuthConfigError>) {
        let mut problems = Vec::new();
        if settings.keys.is_empty() {
            problems.push(AuthConfigError::NoKeys);
        }
        let mut keys: Vec<VerifyingKey> = Vec::with_capacity(settings.keys.len());
        for (index, spec) in settings.keys.iter().enumerate() {
            if spec.kid.is_empty() {
                problems.push(AuthConfigError::EmptyKid { index });
                continue;
            }
            if settings.keys[..index].iter().any(|k| k.kid == spec.kid) {
                problems.push(AuthConfigError::DuplicateKid {
                    kid: spec.kid.clone(),
                });
                continue;
            }
            match load_key(spec) {
                Ok(key) => keys.push(VerifyingKey {
                    kid: spec.kid.as_str().into(),
                    algorithm: spec.algorithm,
                    key,
                }),
                Err(e) => problems.push(e),
            }
        }
        let auth = Self {
            keys,
            audience: settings.audience.as_deref().map(Into::into),
            issuer: settings.issuer.as_deref().map(Into::into),
            leeway_secs: settings.leeway.as_secs(),
        };
        (auth, problems)
    }

    /// The configured key ids, in configuration order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| &*k.kid)
    }

    /// Verifies `token` at Unix time `now_unix`: the key it names, its
    /// algorithm, its signature, then its claims.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(malformed(format_args!(
                "the token is {} bytes; the limit is {MAX_TOKEN_LEN}",
                token.len()
            )));
        }
        let parts = Parts::split(token)?;

        let mut buf = [0u8; MAX_HEADER_LEN];
        let header = decode_header(parts.header, &mut buf)?;
        let key = self.select_key(header.kid.as_ref().map(|k| &*k.0))?;
        // Only the key's own algorithm: no `none`, no HS256 made with an
        // RSA public key as the secret.
        if header.alg != key.algorithm.as_str() {
            return Err(AuthError::BadSignature);
        }
        check_signature(key, &parts)?;

        let payload = URL_SAFE_NO_PAD
            .decode(parts.payload)
            .map_err(|_| malformed("the payload is not base64url"))?;
        let claims: Claims<'_> =
            serde_json::from_slice(&payload).map_err(|e| malformed(format_args!("claims: {e}")))?;
        self.check_claims(claims, now_unix)
    }

    fn select_key(&self, kid: Option<&str>) -> Result<&VerifyingKey, AuthError> {
        match kid {
            Some(kid) => {
                if kid.len() > MAX_KID_LEN {
                    return Err(malformed(format_args!(
                        "the kid is {} bytes; the limit is {MAX_KID_LEN}",
                        kid.len()
                    )));
                }
                self.keys
                    .iter()
                    .find(|k| &*k.kid == kid)
                    .ok_or_else(|| AuthError::UnknownKey(kid.to_owned()))
            }
            None => match self.keys.as_slice() {
                [only] => Ok(only),
                _ => Err(AuthError::UnknownKey(String::new())),
            },
        }
    }

    fn check_claims(&self, claims: Claims<'_>, now: u64) -> Result<Identity, AuthError> {
        let sub = claims
            .sub
            .ok_or_else(|| malformed("the sub claim is missing"))?;
        if sub.0.is_empty() {
            return Err(malformed("the sub claim is empty"));
        }
        if sub.0.len() > MAX_SUBJECT_LEN {
            return Err(malformed(format_args!(
                "the sub claim is {} bytes; the limit is {MAX_SUBJECT_LEN}",
                sub.0.len()
            )));
        }
        let exp = claims
            .exp
            .ok_or_else(|| malformed("the exp claim is missing"))?
            .0;
        if now >= exp.saturating_add(self.leeway_secs) {
            return Err(AuthError::Expired);
        }
        if let Some(NumericDate(nbf)) = claims.nbf
            && nbf > now.saturating_add(self.leeway_secs)
        {
            return Err(AuthError::NotYetValid);
        }
        if let Some(want) = self.issuer.as_deref()
            && claims.iss.as_ref().is_none_or(|iss| iss.0 != want)
        {
            return Err(AuthError::WrongIssuer);
        }
        match (self.audience.as_deref(), &claims.aud) {
            (Some(want), Some(aud)) if aud.contains(want) => {}
            (None, None) => {}
            (None, Some(aud)) if aud.is_empty() => {}
            _ => return Err(AuthError::WrongAudience),
        }
        Ok(Identity {
            user: sub.0.into_owned(),
            expires_at: exp,
            grant: claims.ferry.unwrap_or_default(),
        })
    }
}

fn malformed(why: impl fmt::Display) -> AuthError {
    AuthError::Malformed(why.to_string())
}

/// Checks a key's material and turns it into a verifying key.
fn load_key(spec: &KeySpec) -> Result<VerifyKey, AuthConfigError> {
    let kid = || spec.kid.clone();
    let unexpected = |what| AuthConfigError::UnexpectedKeyMaterial {
        kid: kid(),
        algorithm: spec.algorithm,
        what,
    };
    match spec.algorithm {
        Algorithm::Hs256 => {
            if spec.public_key_pem.is_some() {
                return Err(unexpected("a public key"));
            }
            Ok(VerifyKey::hmac(hs256_secret(spec)?))
        }
        Algorithm::Rs256 | Algorithm::Es256 => {
            if spec.secret.is_some() {
                return Err(unexpected("a secret"));
            }
            let pem = spec.public_key_pem.as_deref().ok_or_else(|| {
                AuthConfigError::MissingPublicKey {
                    kid: kid(),
                    algorithm: spec.algorithm,
                }
            })?;
            if pem.contains("PRIVATE KEY-----") {
                return Err(AuthConfigError::InvalidPublicKey {
                    kid: kid(),
                    reason: "this is a private key; the gateway needs only the public key".into(),
                });
            }
            let key = if spec.algorithm == Algorithm::Rs256 {
                VerifyKey::rsa_from_pem(pem, MIN_RSA_BITS)
            } else {
                VerifyKey::p256_from_pem(pem)
            };
            key.map_err(|problem| match problem {
                KeyProblem::Invalid(reason) => {
                    AuthConfigError::InvalidPublicKey { kid: kid(), reason }
                }
                KeyProblem::WeakRsa(bits) => AuthConfigError::WeakKey {
                    kid: kid(),
                    reason: format!(
                        "the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
                    ),
                },
            })
        }
    }
}

/// The HS256 secret of a key, checked for presence and length.
pub(crate) fn hs256_secret(spec: &KeySpec) -> Result<&[u8], AuthConfigError> {
    let secret = spec
        .secret
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AuthConfigError::MissingSecret {
            kid: spec.kid.clone(),
        })?;
    if secret.len() < MIN_SECRET_LEN {
        return Err(AuthConfigError::WeakKey {
            kid: spec.kid.clone(),
            reason: format!(
                "the HS256 secret is {} bytes; at least {MIN_SECRET_LEN} are required",
                secret.len()
            ),
        });
    }
    Ok(secret.as_bytes())
}

/// The three base64url parts of a compact JWS.
struct Parts<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    /// `header.payload`, the bytes the signature covers.
    signed: &'a str,
}

impl<'a> Parts<'a> {
    fn split(token: &'a str) -> Result<Self, AuthError> {
        let shape = || malformed("a JWT has three dot-separated parts");
        let (signed, signature) = token.rsplit_once('.').ok_or_else(shape)?;
        let (header, payload) = signed.split_once('.').ok_or_else(shape)?;
        if header.is_empty() || payload.is_empty() || payload.contains('.') {
            return Err(shape());
        }
        Ok(Self {
            header,
            payload,
            signature,
            signed,
        })
    }
}

/// The header fields we read; others (`typ`, `cty`, ...) are ignored.
#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(default, borrow)]
    kid: Option<Text<'a>>,
    /// Extensions the verifier must understand: we understand none.
    #[serde(default)]
    crit: Option<de::IgnoredAny>,
}

fn decode_header<'b>(
    encoded: &str,
    buf: &'b mut [u8; MAX_HEADER_LEN],
) -> Result<Header<'b>, AuthError> {
    if encoded.len() > MAX_HEADER_LEN / 3 * 4 {
        return Err(malformed("the header is too long"));
    }
    let len = URL_SAFE_NO_PAD
        .decode_slice(encoded, buf)
        .map_err(|_| malformed("the header is not base64url"))?;
    let header: Header<'b> =
        serde_json::from_slice(&buf[..len]).map_err(|e| malformed(format_args!("header: {e}")))?;
    if header.crit.is_some() {
        return Err(malformed("the header has critical extensions (crit)"));
    }
    Ok(header)
}

fn check_signature(key: &VerifyingKey, parts: &Parts<'_>) -> Result<(), AuthError> {
    let signature = URL_SAFE_NO_PAD
        .decode(parts.signature)
        .map_err(|_| malformed("the signature is not base64url"))?;
    if key.key.verify(parts.signed.as_bytes(), &signature) {
        Ok(())
    } else {
        Err(AuthError::BadSignature)
    }
}

/// The claims we read; others (`jti`, `scope`, ...) are ignored. A claim
/// that appears twice is refused.
#[derive(Deserialize)]
struct Claims<'a> {
    #[serde(default, borrow)]
    sub: Option<Text<'a>>,
    #[serde(default)]
    exp: Option<NumericDate>,
    #[serde(default)]
    nbf: Option<NumericDate>,
    /// Read for its shape only.
    #[serde(default)]
    #[allow(dead_code)]
    iat: Option<NumericDate>,
    #[serde(default, borrow)]
    iss: Option<Text<'a>>,
    #[serde(default, borrow)]
    aud: Option<Audience<'a>>,
    #[serde(default)]
    ferry: Option<Grant>,
}

/// A JSON string, borrowed from the input when it has no escapes.
#[derive(Deserialize)]
pub(crate) struct Text<'a>(#[serde(borrow)] pub(crate) Cow<'a, str>);

/// Seconds since the Unix epoch; RFC 7519 allows a fraction, which is
/// dropped.
struct NumericDate(u64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumericDate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative number of seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumericDate, E> {
                Ok(NumericDate(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumericDate, E> {
                u64::try_from(v)
                    .map(NumericDate)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumericDate, E> {
                if v.is_finite() && v >= 0.0 && v < u64::MAX as f64 {
                    Ok(NumericDate(v as u64))
                } else {
                    Err(E::invalid_value(de::Unexpected::Float(v), &self))
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// `aud`: one string or an array of strings.
enum Audience<'a> {
    One(Cow<'a, str>),
    Many(Vec<Text<'a>>),
}

impl Audience<'_> {
    fn contains(&self, want: &str) -> bool {
        match self {
            Self::One(aud) => aud == want,
            Self::Many(auds) => auds.iter().any(|aud| aud.0 == want),
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Self::Many(auds) if auds.is_empty())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Audience<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<Audience<'a>>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Audience<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Audience<'a>, E> {
                Ok(Audience::One(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Audience<'a>, E> {
                Ok(Audience::One(Cow::Owned(v.to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Audience<'a>, A::Error> {
                let mut all = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
                while let Some(aud) = seq.next_element::<Text<'a>>()? {
                    all.push(aud);
                }
                Ok(Audience::Many(all))
            }
        }
        deserializer.deserialize_any(V(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::keys::SigningKey;
    use super::super::testkeys::{self, NOW};
    use super::*;
    use crate::auth::{MintClaims, mint_token};

    fn settings(keys: Vec<KeySpec>) -> AuthSettings {
        AuthSettings {
            keys,
            ..AuthSettings::default()
        }
    }

    fn claims(sub: &str) -> MintClaims {
        MintClaims {
            sub: sub.into(),
            ttl: Duration::from_secs(3600),
            subscribe: vec!["chat:*".into()],
            publish: vec!["chat:lobby".into()],
            audience: None,
            issuer: None,
            now_unix: NOW,
        }
    }

    /// An HS256 token with these header and claims, signed with `key`.
    fn hs_token(key: &KeySpec, header: &str, claims: &str) -> String {
        let secret = key.secret.as_deref().unwrap().as_bytes();
        testkeys::sign_raw(header, claims, &SigningKey::hmac(secret))
    }

    fn hs_claims_token(key: &KeySpec, claims: &str) -> String {
        hs_token(
            key,
            &format!(r#"{{"alg":"HS256","kid":"{}"}}"#, key.kid),
            claims,
        )
    }

    fn verify_one(key: &KeySpec, token: &str) -> Result<Identity, AuthError> {
        Authenticator::new(&settings(vec![key.clone()]))
            .unwrap()
            .verify(token, NOW)
    }

    #[test]
    fn authenticator_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Authenticator>();
    }

    #[test]
    fn hs256_round_trip() {
        let key = testkeys::hs("main");
        let token = mint_token(&key, None, &claims("alice")).unwrap();
        let id = verify_one(&key, &token).unwrap();
        assert_eq!(id.user, "alice");
        assert_eq!(id.expires_at, NOW + 3600);
        assert_eq!(
            id.grant,
            Grant::parse(&["chat:*"], &["chat:lobby"]).unwrap()
        );
    }

    #[test]
    fn rs256_round_trip() {
        let (key, private) = testkeys::rsa("rsa-1");
        let token = mint_token(&key, Some(private), &claims("bob")).unwrap();
        let id = verify_one(&key, &token).unwrap();
        assert_eq!(id.user, "bob");
        assert_eq!(id.expires_at, NOW + 3600);
    }

    #[test]
    fn es256_round_trip() {
        let (key, private) = testkeys::ec("ec-1");
        let token = mint_token(&key, Some(&private), &claims("carol")).unwrap();
        let id = verify_one(&key, &token).unwrap();
        assert_eq!(id.user, "carol");
        assert!(id.grant.subscribe_patterns()[0].is_prefix());
    }

    #[test]
    fn missing_token() {
        let key = testkeys::hs("k");
        let err = verify_one(&key, "").unwrap_err();
        assert_eq!(err, AuthError::Missing);
        assert_eq!(err.code(), ferry_protocol::ErrorCode::TokenMissing);
    }

    #[test]
    fn malformed_tokens() {
        let key = testkeys::hs("k");
        let exp = NOW + 60;
        let signed = |claims: &str| hs_claims_token(&key, claims);
        let cases = [
            "not-a-jwt".to_owned(),
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            "a.b.c.d.e".to_owned(),
            ".payload.sig".to_owned(),
            "!!!.e30.sig".to_owned(),
            format!("{}.e30.", URL_SAFE_NO_PAD.encode("not json")),
            format!("{}.e30.", URL_SAFE_NO_PAD.encode(r#"{"kid":"k"}"#)),
            "x".repeat(MAX_TOKEN_LEN + 1),
            hs_token(
                &key,
                r#"{"alg":"HS256","kid":"k","crit":["exp"]}"#,
                &format!(r#"{{"sub":"a","exp":{exp}}}"#),
            ),
            signed("not json"),
            format!(
                "{}.!!!",
                signed(&format!(r#"{{"sub":"a","exp":{exp}}}"#))
                    .rsplit_once('.')
                    .unwrap()
                    .0
            ),
            signed(&format!(r#"{{"exp":{exp}}}"#)),
            signed(&format!(r#"{{"sub":"","exp":{exp}}}"#)),
            signed(&format!(r#"{{"sub":7,"exp":{exp}}}"#)),
            signed(r#"{"sub":"a"}"#),
            signed(r#"{"sub":"a","exp":"tomorrow"}"#),
            signed(r#"{"sub":"a","exp":-5}"#),
            signed(&format!(r#"{{"sub":"a","exp":{exp},"exp":{exp}}}"#)),
            signed(&format!(
                r#"{{"sub":"a","exp":{exp},"ferry":{{"subscribe":["*news"]}}}}"#
            )),
            signed(&format!(
                r#"{{"sub":"a","exp":{exp},"ferry":{{"publish":["a b"]}}}}"#
            )),
            signed(&format!(
                r#"{{"sub":"a","exp":{exp},"ferry":{{"admin":true}}}}"#
            )),
            signed(&format!(r#"{{"sub":"a","exp":{exp},"aud":7}}"#)),
            signed(&format!(
                r#"{{"sub":"{}","exp":{exp}}}"#,
                "u".repeat(MAX_SUBJECT_LEN + 1)
            )),
        ];
        for token in cases {
            let err = verify_one(&key, &token).unwrap_err();
            assert!(
                matches!(err, AuthError::Malformed(_)),
                "{token:.80}: {err:?}"
            );
            assert_eq!(err.code(), ferry_protocol::ErrorCode::TokenMalformed);
        }
    }

    #[test]
    fn fractional_dates_and_unknown_claims_are_accepted() {
        let key = testkeys::hs("k");
        let token = hs_claims_token(
            &key,
            &format!(
                r#"{{"sub":"a","exp":{}.5,"iat":{NOW}.25,"jti":"x","scope":"y"}}"#,
                NOW + 10
            ),
        );
        assert_eq!(verify_one(&key, &token).unwrap().expires_at, NOW + 10);
    }

    #[test]
    fn expiry_honours_the_leeway() {
        let key = testkeys::hs("k");
        let token = |exp: u64| hs_claims_token(&key, &format!(r#"{{"sub":"a","exp":{exp}}}"#));
        // Default leeway: 5 s.
        let err = verify_one(&key, &token(NOW - 5)).unwrap_err();
        assert_eq!(err, AuthError::Expired);
        assert_eq!(err.code(), ferry_protocol::ErrorCode::TokenExpired);
        assert!(verify_one(&key, &token(NOW - 4)).is_ok());
        assert!(verify_one(&key, &token(NOW + 1)).is_ok());

        let strict = Authenticator::new(&AuthSettings {
            leeway: Duration::ZERO,
            ..settings(vec![key.clone()])
        })
        .unwrap();
        assert_eq!(strict.verify(&token(NOW), NOW), Err(AuthError::Expired));
        assert!(strict.verify(&token(NOW + 1), NOW).is_ok());
    }

    #[test]
    fn not_before_in_the_future() {
        let key = testkeys::hs("k");
        let token = |nbf: u64| {
            hs_claims_token(
                &key,
                &format!(r#"{{"sub":"a","exp":{},"nbf":{nbf}}}"#, NOW + 600),
            )
        };
        let err = verify_one(&key, &token(NOW + 60)).unwrap_err();
        assert_eq!(err, AuthError::NotYetValid);
        assert_eq!(err.code(), ferry_protocol::ErrorCode::TokenExpired);
        assert!(verify_one(&key, &token(NOW + 5)).is_ok());
        assert!(verify_one(&key, &token(NOW - 60)).is_ok());
    }

    #[test]
    fn wrong_signature() {
        let key = testkeys::hs("k");
        let mut other = testkeys::hs("k");
        other.secret = Some("another-secret-of-at-least-32-bytes!".into());
        let forged = mint_token(&other, None, &claims("alice")).unwrap();
        let err = verify_one(&key, &forged).unwrap_err();
        assert_eq!(err, AuthError::BadSignature);
        assert_eq!(err.code(), ferry_protocol::ErrorCode::TokenBadSignature);

        // A payload swapped under a valid signature.
        let good = mint_token(&key, None, &claims("alice")).unwrap();
        let evil = mint_token(&key, None, &claims("mallory")).unwrap();
        let good: Vec<&str> = good.split('.').collect();
        let evil: Vec<&str> = evil.split('.').collect();
        let spliced = format!("{}.{}.{}", good[0], evil[1], good[2]);
        assert_eq!(verify_one(&key, &spliced), Err(AuthError::BadSignature));

        // An ES256 signature with one bit flipped, or cut short.
        let (ec, private) = testkeys::ec("ec");
        let token = mint_token(&ec, Some(&private), &claims("a")).unwrap();
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let mut signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        signature[10] ^= 1;
        let flipped = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&signature));
        assert_eq!(verify_one(&ec, &flipped), Err(AuthError::BadSignature));
        let short = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&signature[..60]));
        assert_eq!(verify_one(&ec, &short), Err(AuthError::BadSignature));
    }

    #[test]
    fn unknown_kid() {
        let key = testkeys::hs("current");
        let stranger = testkeys::hs("stranger");
        let token = mint_token(&stranger, None, &claims("a")).unwrap();
        let err = verify_one(&key, &token).unwrap_err();
        assert_eq!(err, AuthError::UnknownKey("stranger".into()));
        assert_eq!(err.code(), ferry_protocol::ErrorCode::TokenBadSignature);
    }

    #[test]
    fn a_token_without_kid_uses_the_only_key() {
        let key = testkeys::hs("only");
        let body = format!(r#"{{"sub":"a","exp":{}}}"#, NOW + 60);
        let token = hs_token(&key, r#"{"alg":"HS256","typ":"JWT"}"#, &body);
        assert!(verify_one(&key, &token).is_ok());

        let two = Authenticator::new(&settings(vec![key, testkeys::hs("second")])).unwrap();
        assert_eq!(
            two.verify(&token, NOW),
            Err(AuthError::UnknownKey(String::new()))
        );
    }

    #[test]
    fn audience_rules() {
        let key = testkeys::hs("k");
        let with_aud = Authenticator::new(&AuthSettings {
            audience: Some("ferry".into()),
            ..settings(vec![key.clone()])
        })
        .unwrap();
        let without_aud = Authenticator::new(&settings(vec![key.clone()])).unwrap();
        let token = |aud: &str| {
            let aud = if aud.is_empty() {
                String::new()
            } else {
                format!(r#","aud":{aud}"#)
            };
            hs_claims_token(&key, &format!(r#"{{"sub":"a","exp":{}{aud}}}"#, NOW + 60))
        };

        assert!(with_aud.verify(&token(r#""ferry""#), NOW).is_ok());
        assert!(with_aud.verify(&token(r#"["web","ferry"]"#), NOW).is_ok());
        for bad in [r#""web""#, r#"["web"]"#, "[]", ""] {
            let err = with_aud.verify(&token(bad), NOW).unwrap_err();
            assert_eq!(err, AuthError::WrongAudience, "aud {bad}");
            assert_eq!(err.code(), ferry_protocol::ErrorCode::TokenWrongAudience);
        }
        assert!(without_aud.verify(&token(""), NOW).is_ok());
        assert!(without_aud.verify(&token("[]"), NOW).is_ok());
        assert_eq!(
            without_aud.verify(&token(r#""web""#), NOW),
            Err(AuthError::WrongAudience)
        );
    }

    #[test]
    fn issuer_rules() {
        let key = testkeys::hs("k");
        let auth = Authenticator::new(&AuthSettings {
            issuer: Some("https://id.example".into()),
            ..settings(vec![key.clone()])
        })
        .unwrap();
        let token =
            |iss: &str| hs_claims_token(&key, &format!(r#"{{"sub":"a","exp":{}{iss}}}"#, NOW + 60));
        assert!(
            auth.verify(&token(r#","iss":"https:\/\/id.example""#), NOW)
                .is_ok()
        );
        for bad in [r#","iss":"https://evil.example""#, ""] {
            let err = auth.verify(&token(bad), NOW).unwrap_err();
            assert_eq!(err, AuthError::WrongIssuer);
            assert_eq!(err.code(), ferry_protocol::ErrorCode::TokenWrongAudience);
        }
        // Without a configured issuer, any (or none) is accepted.
        assert!(verify_one(&key, &token(r#","iss":"whoever""#)).is_ok());
    }

    #[test]
    fn algorithm_confusion_is_refused() {
        let (rsa, rsa_private) = testkeys::rsa("rsa");
        let body = format!(r#"{{"sub":"a","exp":{}}}"#, NOW + 60);
        let public_pem = rsa.public_key_pem.clone().unwrap();

        // HS256 "signed" with the RSA public key as the secret.
        let confused = testkeys::sign_raw(
            r#"{"alg":"HS256","kid":"rsa"}"#,
            &body,
            &SigningKey::hmac(public_pem.as_bytes()),
        );
        // No signature at all.
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"rsa"}"#),
            URL_SAFE_NO_PAD.encode(&body)
        );
        // A genuine RS256 signature relabelled as another RSA algorithm.
        let real = mint_token(&rsa, Some(rsa_private), &claims("a")).unwrap();
        let payload = real.split('.').nth(1).unwrap().to_owned();
        let relabelled = format!(
            "{}.{payload}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS512","kid":"rsa"}"#),
            real.rsplit('.').next().unwrap()
        );
        // An ES256 token naming the RSA key.
        let (_, ec_private) = testkeys::ec("ec");
        let es = testkeys::sign_raw(
            r#"{"alg":"ES256","kid":"rsa"}"#,
            &body,
            &SigningKey::p256_from_pem(&ec_private).unwrap(),
        );

        let auth = Authenticator::new(&settings(vec![rsa])).unwrap();
        for token in [confused, unsigned, relabelled, es] {
            let err = auth.verify(&token, NOW).unwrap_err();
            assert_eq!(err, AuthError::BadSignature, "{token}");
            assert_eq!(err.code(), ferry_protocol::ErrorCode::TokenBadSignature);
        }
        assert!(auth.verify(&real, NOW).is_ok());
    }

    #[test]
    fn key_rotation() {
        let old = testkeys::hs("2024");
        let (new, new_private) = testkeys::ec("2025");
        let old_token = mint_token(&old, None, &claims("alice")).unwrap();
        let new_token = mint_token(&new, Some(&new_private), &claims("alice")).unwrap();

        let both = Authenticator::new(&settings(vec![old.clone(), new.clone()])).unwrap();
        assert_eq!(both.kids().collect::<Vec<_>>(), ["2024", "2025"]);
        assert!(both.verify(&old_token, NOW).is_ok());
        assert!(both.verify(&new_token, NOW).is_ok());

        let rotated = Authenticator::new(&settings(vec![new])).unwrap();
        assert!(rotated.verify(&new_token, NOW).is_ok());
        let err = rotated.verify(&old_token, NOW).unwrap_err();
        assert_eq!(err, AuthError::UnknownKey("2024".into()));
        assert_eq!(err.code(), ferry_protocol::ErrorCode::TokenBadSignature);
    }

    #[test]
    fn config_errors_name_the_key() {
        let (rsa, rsa_private) = testkeys::rsa("rsa");
        let (ec, _) = testkeys::ec("ec");
        let check = |key: KeySpec| Authenticator::new(&settings(vec![key])).unwrap_err();

        let mut k = testkeys::hs("h");
        k.secret = None;
        assert_eq!(check(k), AuthConfigError::MissingSecret { kid: "h".into() });
        let mut k = testkeys::hs("h");
        k.secret = Some("short".into());
        assert!(matches!(check(k), AuthConfigError::WeakKey { kid, .. } if kid == "h"));
        let mut k = testkeys::hs("h");
        k.public_key_pem = rsa.public_key_pem.clone();
        assert!(matches!(
            check(k),
            AuthConfigError::UnexpectedKeyMaterial { .. }
        ));

        let mut k = rsa.clone();
        k.public_key_pem = None;
        assert_eq!(
            check(k),
            AuthConfigError::MissingPublicKey {
                kid: "rsa".into(),
                algorithm: Algorithm::Rs256
            }
        );
        let mut k = rsa.clone();
        k.public_key_pem =
            Some("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n".into());
        let err = check(k);
        assert!(matches!(&err, AuthConfigError::InvalidPublicKey { kid, .. } if kid == "rsa"));
        assert!(err.to_string().contains("\"rsa\""), "{err}");
        let mut k = rsa.clone();
        k.public_key_pem = Some(rsa_private.into());
        assert!(check(k).to_string().contains("private key"));
        let mut k = rsa.clone();
        k.public_key_pem = ec.public_key_pem.clone();
        assert!(matches!(check(k), AuthConfigError::InvalidPublicKey { .. }));
        let mut k = ec.clone();
        k.public_key_pem = rsa.public_key_pem.clone();
        assert!(matches!(check(k), AuthConfigError::InvalidPublicKey { kid, .. } if kid == "ec"));
        let mut k = rsa.clone();
        k.public_key_pem = Some(testkeys::RSA_1024_PUBLIC.into());
        assert!(matches!(check(k), AuthConfigError::WeakKey { kid, .. } if kid == "rsa"));

        let err = Authenticator::new(&settings(vec![testkeys::hs("same"), ec.clone(), {
            let mut k = testkeys::hs("same");
            k.secret = Some("x".repeat(40));
            k
        }]))
        .unwrap_err();
        assert_eq!(err, AuthConfigError::DuplicateKid { kid: "same".into() });
        assert_eq!(
            Authenticator::new(&settings(vec![])).unwrap_err(),
            AuthConfigError::NoKeys
        );
    }

    #[test]
    fn check_reports_every_problem() {
        let mut no_secret = testkeys::hs("a");
        no_secret.secret = None;
        let mut no_kid = testkeys::hs("");
        no_kid.kid.clear();
        let problems = Authenticator::check(&settings(vec![
            no_secret,
            testkeys::hs("ok"),
            no_kid,
            testkeys::hs("ok"),
        ]));
        assert_eq!(
            problems,
            [
                AuthConfigError::MissingSecret { kid: "a".into() },
                AuthConfigError::EmptyKid { index: 2 },
                AuthConfigError::DuplicateKid { kid: "ok".into() },
            ]
        );
        assert!(Authenticator::check(&settings(vec![testkeys::hs("ok")])).is_empty());
    }
}
