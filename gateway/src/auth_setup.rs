//! From the `[auth]` section to a ready [`Authenticator`]: reads the public
//! key files (the I/O the sans-IO [`crate::auth`] core leaves to its
//! caller) and reports every problem at once, each with the configuration
//! field and the file it concerns, so an operator can fix them in one go.
//!
//! Used at start, on every reload (keys rotate by reload), by
//! `check-config` and by `gateway token`.

use std::fmt;
use std::path::PathBuf;

use ferry_config::{Auth, AuthMode, JwtKey, KeyMaterial};
use thiserror::Error;

use crate::auth::{
    Algorithm, AuthConfigError, AuthSettings, Authenticator, DEFAULT_LEEWAY, KeySpec,
};

/// One reason the `[auth]` section cannot be put to use. The configuration,
/// or a key file it names, is at fault.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AuthProblem {
    /// Config or host: a `public_key_file` cannot be read (missing,
    /// unreadable by the gateway's user, not UTF-8).
    #[error(
        "auth.keys[{index}].public_key_file (kid {kid:?}): cannot read {}: {source}; \
         check the path and that the gateway's user may read the file",
        path.display()
    )]
    Unreadable {
        /// The key's position in `[[auth.keys]]`.
        index: usize,
        /// The key id.
        kid: String,
        /// The file.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// Config: the key does not fit its algorithm (not a public key of
    /// that algorithm, too weak, ...). `file` names the PEM file when the
    /// key came from one.
    #[error("{problem}{}", file.as_ref().map(|p| format!(" (public_key_file {})", p.display())).unwrap_or_default())]
    Key {
        /// What is wrong.
        problem: AuthConfigError,
        /// The key's PEM file, if it has one.
        file: Option<PathBuf>,
    },
}

/// Every reason the `[auth]` section cannot be put to use.
#[derive(Debug, Error)]
pub struct AuthSetupError {
    /// One entry per problem, in configuration order.
    pub problems: Vec<AuthProblem>,
}

impl fmt::Display for AuthSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "  {problem}")?;
        }
        Ok(())
    }
}

/// The authenticator `[auth]` describes: `None` with `mode = "none"`.
pub fn authenticator(auth: &Auth) -> Result<Option<Authenticator>, AuthSetupError> {
    if auth.mode == AuthMode::None {
        return Ok(None);
    }
    let mut problems = Vec::new();
    let mut keys = Vec::with_capacity(auth.keys.len());
    for (index, key) in auth.keys.iter().enumerate() {
        match key_spec(index, key) {
            Ok(spec) => keys.push(spec),
            Err(p) => problems.push(p),
        }
    }
    let settings = auth_settings(auth, keys);
    // Every key problem, not only the first: `check` reports them all.
    // "No key" is not news when the only keys could not be read.
    let unreadable = !problems.is_empty();
    problems.extend(
        Authenticator::check(&settings)
            .into_iter()
            .filter(|p| !(unreadable && *p == AuthConfigError::NoKeys))
            .map(|problem| AuthProblem::Key {
                file: key_file(auth, &problem),
                problem,
            }),
    );
    if !problems.is_empty() {
        return Err(AuthSetupError { problems });
    }
    Authenticator::new(&settings)
        .map(Some)
        .map_err(|problem| AuthSetupError {
            problems: vec![AuthProblem::Key {
                file: key_file(auth, &problem),
                problem,
            }],
        })
}

/// What the authenticator checks besides the keys, with `keys`.
pub fn auth_settings(auth: &Auth, keys: Vec<KeySpec>) -> AuthSettings {
    AuthSettings {
        keys,
        audience: auth.audience.clone(),
        issuer: auth.issuer.clone(),
        leeway: DEFAULT_LEEWAY,
    }
}

/// `problem` as one line that starts with its field path
/// (`auth.keys[1].public_key_file ...`, `auth.keys[0]: ...`), for a report
/// that lists configuration problems by field (`check-config`).
pub fn with_field_path(auth: &Auth, problem: &AuthProblem) -> String {
    let AuthProblem::Key { problem: inner, .. } = problem else {
        // Unreadable files already start with their field.
        return problem.to_string();
    };
    let index = match inner {
        AuthConfigError::EmptyKid { index } => Some(*index),
        AuthConfigError::DuplicateKid { kid } => auth.keys.iter().rposition(|k| &k.kid == kid),
        AuthConfigError::MissingSecret { kid }
        | AuthConfigError::MissingPublicKey { kid, .. }
        | AuthConfigError::UnexpectedKeyMaterial { kid, .. }
        | AuthConfigError::InvalidPublicKey { kid, .. }
        | AuthConfigError::WeakKey { kid, .. } => auth.keys.iter().position(|k| &k.kid == kid),
        _ => None,
    };
    match index {
        Some(i) => format!("auth.keys[{i}]: {problem}"),
        None => format!("auth.keys: {problem}"),
    }
}

/// The `index`-th configured key with its material: the secret, or the
/// public key PEM read from its file.
pub fn key_spec(index: usize, key: &JwtKey) -> Result<KeySpec, AuthProblem> {
    let (algorithm, secret, public_key_pem) = match &key.material {
        KeyMaterial::Hs256 { secret } => (Algorithm::Hs256, Some(secret.expose().to_owned()), None),
        KeyMaterial::Rs256 { public_key_file } => (
            Algorithm::Rs256,
            None,
            Some(read_pem(index, key, public_key_file)?),
        ),
        KeyMaterial::Es256 { public_key_file } => (
            Algorithm::Es256,
            None,
            Some(read_pem(index, key, public_key_file)?),
        ),
    };
    Ok(KeySpec {
        kid: key.kid.clone(),
        algorithm,
        secret,
        public_key_pem,
    })
}

fn read_pem(index: usize, key: &JwtKey, path: &std::path::Path) -> Result<String, AuthProblem> {
    std::fs::read_to_string(path).map_err(|source| AuthProblem::Unreadable {
        index,
        kid: key.kid.clone(),
        path: path.to_path_buf(),
        source,
    })
}

/// The PEM file of the key a problem names, to point the operator at it.
fn key_file(auth: &Auth, problem: &AuthConfigError) -> Option<PathBuf> {
    let kid = match problem {
        AuthConfigError::InvalidPublicKey { kid, .. }
        | AuthConfigError::WeakKey { kid, .. }
        | AuthConfigError::MissingPublicKey { kid, .. } => kid,
        _ => return None,
    };
    auth.keys
        .iter()
        .find(|k| &k.kid == kid)
        .and_then(|k| match &k.material {
            KeyMaterial::Rs256 { public_key_file } | KeyMaterial::Es256 { public_key_file } => {
                Some(public_key_file.clone())
            }
            KeyMaterial::Hs256 { .. } => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt_config(text: &str) -> Auth {
        let path = std::env::temp_dir().join(format!(
            "ferry-auth-setup-{}-{}.toml",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::write(&path, text).unwrap();
        let config = ferry_config::Config::load(Some(&path)).unwrap();
        let _ = std::fs::remove_file(&path);
        config.auth
    }

    #[test]
    fn mode_none_has_no_authenticator() {
        let auth = ferry_config::Config::default().auth;
        assert!(authenticator(&auth).unwrap().is_none());
    }

    #[test]
    fn a_missing_key_file_names_the_field_the_kid_and_the_path() {
        let auth = jwt_config(
            "[auth]\nmode = \"jwt\"\n\
             [[auth.keys]]\nkid = \"hs\"\nalgorithm = \"HS256\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n\
             [[auth.keys]]\nkid = \"gone\"\nalgorithm = \"ES256\"\npublic_key_file = \"/nonexistent/ferry/es.pem\"\n",
        );
        let err = authenticator(&auth).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 1, "{text}");
        for needle in [
            "auth.keys[1].public_key_file",
            "\"gone\"",
            "/nonexistent/ferry/es.pem",
            "may read",
        ] {
            assert!(text.contains(needle), "{needle} missing in {text}");
        }
    }

    #[test]
    fn a_file_that_is_not_a_public_key_is_reported_with_its_path() {
        let path = std::env::temp_dir().join(format!(
            "ferry-auth-setup-garbage-{}.pem",
            std::process::id()
        ));
        std::fs::write(&path, "not a key").unwrap();
        let auth = jwt_config(&format!(
            "[auth]\nmode = \"jwt\"\n[[auth.keys]]\nkid = \"es\"\nalgorithm = \"ES256\"\npublic_key_file = {:?}\n",
            path.display().to_string()
        ));
        let text = authenticator(&auth).unwrap_err().to_string();
        let _ = std::fs::remove_file(&path);
        assert!(text.contains("\"es\""), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
    }

    #[test]
    fn good_keys_build_an_authenticator_with_every_kid() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let path =
            std::env::temp_dir().join(format!("ferry-auth-setup-es-{}.pem", std::process::id()));
        std::fs::write(&path, pair.public_key_pem()).unwrap();
        let auth = jwt_config(&format!(
            "[auth]\nmode = \"jwt\"\naudience = \"ferry\"\n\
             [[auth.keys]]\nkid = \"hs\"\nalgorithm = \"HS256\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n\
             [[auth.keys]]\nkid = \"es\"\nalgorithm = \"ES256\"\npublic_key_file = {:?}\n",
            path.display().to_string()
        ));
        let built = authenticator(&auth).unwrap().unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(built.kids().collect::<Vec<_>>(), ["hs", "es"]);
    }
}
