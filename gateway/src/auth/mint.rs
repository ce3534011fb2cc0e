//! Development tokens, for `gateway token`: the same format the
//! [`Authenticator`] verifies, signed with a configured key.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use super::grant::{MAX_PATTERNS, Pattern};
use super::jwt::{MAX_SUBJECT_LEN, hs256_secret};
use super::keys::SigningKey;
use super::{Algorithm, AuthConfigError, AuthError, AuthSettings, Authenticator, KeySpec};

/// What a minted token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintClaims {
    /// The user (`sub`); not empty.
    pub sub: String,
    /// How long the token is valid (at least a second); `exp` is
    /// `now_unix + ttl`.
    pub ttl: Duration,
    /// Channel patterns the user may subscribe to.
    pub subscribe: Vec<String>,
    /// Channel patterns the user may publish on.
    pub publish: Vec<String>,
    /// The `aud` claim, if any.
    pub audience: Option<String>,
    /// The `iss` claim, if any.
    pub issuer: Option<String>,
    /// The current Unix time (`iat`).
    pub now_unix: u64,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    ferry: GrantClaim<'a>,
}

#[derive(Serialize)]
struct GrantClaim<'a> {
    subscribe: &'a [String],
    publish: &'a [String],
}

/// Signs a token for `claims` with `key`: HS256 with the key's secret,
/// RS256/ES256 with `private_key_pem` (PKCS#8 or, for RSA, PKCS#1 PEM).
///
/// When the key has its public key (or secret), the new token is verified
/// with it before it is returned, so a private key that does not match the
/// configuration is reported here rather than by the gateway.
pub fn mint_token(
    key: &KeySpec,
    private_key_pem: Option<&str>,
    claims: &MintClaims,
) -> Result<String, AuthConfigError> {
    check_claims(claims)?;
    let kid = || key.kid.clone();
    let signing_key = match (key.algorithm, private_key_pem) {
        (Algorithm::Hs256, None) => SigningKey::hmac(hs256_secret(key)?),
        (Algorithm::Hs256, Some(_)) => {
            return Err(AuthConfigError::UnexpectedKeyMaterial {
                kid: kid(),
                algorithm: key.algorithm,
                what: "a private key",
            });
        }
        (algorithm, None) => {
            return Err(AuthConfigError::MissingPrivateKey {
                kid: kid(),
                algorithm,
            });
        }
        (Algorithm::Rs256, Some(pem)) => {
            SigningKey::rsa_from_pem(pem).map_err(|e| invalid_private(key, e))?
        }
        (Algorithm::Es256, Some(pem)) => {
            SigningKey::p256_from_pem(pem).map_err(|e| invalid_private(key, e))?
        }
    };

    let header = Header {
        alg: key.algorithm.as_str(),
        typ: "JWT",
        kid: &key.kid,
    };
    let body = Claims {
        sub: &claims.sub,
        iat: claims.now_unix,
        exp: claims.now_unix.saturating_add(claims.ttl.as_secs()),
        aud: claims.audience.as_deref(),
        iss: claims.issuer.as_deref(),
        ferry: GrantClaim {
            subscribe: &claims.subscribe,
            publish: &claims.publish,
        },
    };
    let mut token = String::new();
    append_json(&mut token, &header)?;
    token.push('.');
    append_json(&mut token, &body)?;

    let signature = signing_key
        .sign(token.as_bytes())
        .map_err(|e| invalid_private(key, e))?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);

    self_check(key, claims, &token)?;
    Ok(token)
}

fn invalid_private(key: &KeySpec, reason: String) -> AuthConfigError {
    AuthConfigError::InvalidPrivateKey {
        kid: key.kid.clone(),
        reason,
    }
}

fn check_claims(claims: &MintClaims) -> Result<(), AuthConfigError> {
    let invalid = |why: String| Err(AuthConfigError::InvalidClaims(why));
    if claims.sub.is_empty() {
        return invalid("the subject (sub) is empty".into());
    }
    if claims.sub.len() > MAX_SUBJECT_LEN {
        return invalid(format!(
            "the subject is {} bytes; the limit is {MAX_SUBJECT_LEN}",
            claims.sub.len()
        ));
    }
    if claims.ttl.as_secs() == 0 {
        return invalid("the TTL must be at least one second".into());
    }
    for (name, list) in [
        ("subscribe", &claims.subscribe),
        ("publish", &claims.publish),
    ] {
        if list.len() > MAX_PATTERNS {
            return invalid(format!(
                "{} {name} patterns; the limit is {MAX_PATTERNS}",
                list.len()
            ));
        }
        for pattern in list {
            if let Err(e) = Pattern::parse(pattern) {
                return invalid(e.to_string());
            }
        }
    }
    Ok(())
}

fn append_json<T: Serialize>(out: &mut String, value: &T) -> Result<(), AuthConfigError> {
    let json =
        serde_json::to_vec(value).map_err(|e| AuthConfigError::InvalidClaims(e.to_string()))?;
    URL_SAFE_NO_PAD.encode_string(json, out);
    Ok(())
}

/// Verifies the new token with the configured key, when we have it.
fn self_check(key: &KeySpec, claims: &MintClaims, token: &str) -> Result<(), AuthConfigError> {
    if key.algorithm != Algorithm::Hs256 && key.public_key_pem.is_none() {
        return Ok(());
    }
    let settings = AuthSettings {
        keys: vec![key.clone()],
        audience: claims.audience.clone(),
        issuer: claims.issuer.clone(),
        leeway: Duration::ZERO,
    };
    match Authenticator::new(&settings)?.verify(token, claims.now_unix) {
        Ok(_) => Ok(()),
        Err(AuthError::BadSignature) => Err(AuthConfigError::KeyMismatch {
            kid: key.kid.clone(),
        }),
        Err(e) => Err(AuthConfigError::InvalidClaims(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkeys::{self, NOW};
    use super::*;

    fn claims() -> MintClaims {
        MintClaims {
            sub: "alice".into(),
            ttl: Duration::from_secs(3600),
            subscribe: vec!["chat:*".into()],
            publish: vec!["chat:*".into()],
            audience: Some("ferry".into()),
            issuer: Some("dev".into()),
            now_unix: NOW,
        }
    }

    fn payload(token: &str) -> serde_json::Value {
        let part = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn minted_claims_have_the_documented_shape() {
        let key = testkeys::hs("dev");
        let token = mint_token(&key, None, &claims()).unwrap();
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            header,
            serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": "dev"})
        );
        assert_eq!(
            payload(&token),
            serde_json::json!({
                "sub": "alice",
                "iat": NOW,
                "exp": NOW + 3600,
                "aud": "ferry",
                "iss": "dev",
                "ferry": {"subscribe": ["chat:*"], "publish": ["chat:*"]},
            })
        );
        let mut bare = claims();
        bare.audience = None;
        bare.issuer = None;
        let token = mint_token(&key, None, &bare).unwrap();
        assert!(payload(&token).get("aud").is_none());
    }

    #[test]
    fn invalid_claims_are_refused() {
        let key = testkeys::hs("dev");
        let cases: [fn(&mut MintClaims); 4] = [
            |c| c.sub.clear(),
            |c| c.ttl = Duration::from_millis(500),
            |c| c.subscribe = vec!["*chat".into()],
            |c| c.publish = vec!["a b".into()],
        ];
        for change in cases {
            let mut c = claims();
            change(&mut c);
            assert!(matches!(
                mint_token(&key, None, &c),
                Err(AuthConfigError::InvalidClaims(_))
            ));
        }
    }

    #[test]
    fn key_material_must_fit_the_algorithm() {
        let hs = testkeys::hs("dev");
        let (rsa, rsa_private) = testkeys::rsa("rsa");
        let (ec, ec_private) = testkeys::ec("ec");
        assert!(matches!(
            mint_token(&hs, Some(rsa_private), &claims()),
            Err(AuthConfigError::UnexpectedKeyMaterial { .. })
        ));
        assert_eq!(
            mint_token(&rsa, None, &claims()),
            Err(AuthConfigError::MissingPrivateKey {
                kid: "rsa".into(),
                algorithm: Algorithm::Rs256
            })
        );
        assert!(matches!(
            mint_token(&rsa, Some(&ec_private), &claims()),
            Err(AuthConfigError::InvalidPrivateKey { kid, .. }) if kid == "rsa"
        ));
        assert!(matches!(
            mint_token(&ec, Some(rsa_private), &claims()),
            Err(AuthConfigError::InvalidPrivateKey { kid, .. }) if kid == "ec"
        ));
        assert!(matches!(
            mint_token(&ec, Some(ec.public_key_pem.as_deref().unwrap()), &claims()),
            Err(AuthConfigError::InvalidPrivateKey { .. })
        ));
    }

    #[test]
    fn a_private_key_of_another_pair_is_reported() {
        let (ec, _) = testkeys::ec("ec");
        let (_, other_private) = testkeys::ec("other");
        assert_eq!(
            mint_token(&ec, Some(&other_private), &claims()),
            Err(AuthConfigError::KeyMismatch { kid: "ec".into() })
        );
        // Without the public key there is nothing to check against.
        let mut unknown = ec.clone();
        unknown.public_key_pem = None;
        assert!(mint_token(&unknown, Some(&other_private), &claims()).is_ok());
    }
}
