//! `gateway token`: mints a development token with a key of the
//! configuration, through [`crate::auth::mint_token`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use ferry_config::{Config, JwtKey, KeyMaterial};
use thiserror::Error;

use crate::auth::{AuthConfigError, MintClaims, mint_token};
use crate::auth_setup::{AuthProblem, key_spec};

/// The options of `gateway token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user the token names (`sub`).
    #[arg(long, value_name = "USER")]
    sub: String,
    /// A channel pattern the user may subscribe to (`chat:*`, `news:sport`,
    /// `*`); repeat for several.
    #[arg(long = "subscribe", value_name = "PATTERN")]
    subscribe: Vec<String>,
    /// A channel pattern the user may publish on; repeat for several.
    #[arg(long = "publish", value_name = "PATTERN")]
    publish: Vec<String>,
    /// How long the token is valid: `30s`, `15m`, `1h`.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// The key to sign with (its `kid`).
    #[arg(long, value_name = "KID")]
    kid: Option<String>,
    /// The private key (PEM) of an RS256 or ES256 key.
    #[arg(long, value_name = "FILE")]
    private_key: Option<PathBuf>,
}

/// Why no token was minted. The operator's command line or configuration
/// is at fault in every case.
#[derive(Debug, Error)]
#[non_exhaustive]
enum TokenError {
    /// Config: the file does not validate.
    #[error("the configuration{0} is invalid:\n{1}")]
    Config(String, ferry_config::ConfigErrors),
    /// Config: nothing to sign with.
    #[error(
        "the configuration{0} has no [[auth.keys]]; set auth.mode = \"jwt\" and add a key \
         (see docs/auth.md), or pass the gateway's file with --config"
    )]
    NoKeys(String),
    /// Operator: `--kid` names no configured key.
    #[error("no key has kid {kid:?}; the configured kids are: {configured}")]
    UnknownKid {
        /// The kid asked for.
        kid: String,
        /// The kids there are.
        configured: String,
    },
    /// Operator: several keys, none HS256, and no `--kid`.
    #[error("several keys are configured and none is HS256; choose one with --kid ({configured})")]
    NoDefaultKey {
        /// The kids there are.
        configured: String,
    },
    /// Operator: `--private-key` for an HS256 key.
    #[error("key {kid:?} is HS256 and signs with its configured secret; drop --private-key")]
    UnneededPrivateKey {
        /// The key.
        kid: String,
    },
    /// Operator: an RS256/ES256 key without `--private-key`.
    #[error(
        "key {kid:?} is {algorithm}: the gateway holds only its public key; \
         pass the private key with --private-key FILE"
    )]
    NeedsPrivateKey {
        /// The key.
        kid: String,
        /// Its algorithm.
        algorithm: &'static str,
    },
    /// Operator or host: the private key file cannot be read.
    #[error("cannot read the private key {}: {source}", path.display())]
    PrivateKeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Config or host: the configured public key cannot be used.
    #[error("{0}")]
    KeyFile(AuthProblem),
    /// Operator: bad claims or a private key that does not fit.
    #[error("{0}")]
    Mint(AuthConfigError),
}

/// Runs `gateway token`: prints the token, or the problem (exit 2).
pub fn run(config: Option<&Path>, args: &TokenArgs) -> ExitCode {
    match mint(config, args) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gateway token: {e}");
            ExitCode::from(2)
        }
    }
}

fn mint(config_path: Option<&Path>, args: &TokenArgs) -> Result<String, TokenError> {
    let described = super::describe(config_path);
    let config = Config::load(config_path).map_err(|e| TokenError::Config(described.clone(), e))?;
    let keys = &config.auth.keys;
    let (index, key) = pick_key(keys, args.kid.as_deref(), &described)?;
    let spec = key_spec(index, key).map_err(TokenError::KeyFile)?;
    let private_key =
        match (&key.material, &args.private_key) {
            (KeyMaterial::Hs256 { .. }, None) => None,
            (KeyMaterial::Hs256 { .. }, Some(_)) => {
                return Err(TokenError::UnneededPrivateKey {
                    kid: key.kid.clone(),
                });
            }
            (_, None) => {
                return Err(TokenError::NeedsPrivateKey {
                    kid: key.kid.clone(),
                    algorithm: key.algorithm().as_str(),
                });
            }
            (_, Some(path)) => Some(std::fs::read_to_string(path).map_err(|source| {
                TokenError::PrivateKeyFile {
                    path: path.clone(),
                    source,
                }
            })?),
        };
    let claims = MintClaims {
        sub: args.sub.clone(),
        ttl: args.ttl,
        subscribe: args.subscribe.clone(),
        publish: args.publish.clone(),
        audience: config.auth.audience.clone(),
        issuer: config.auth.issuer.clone(),
        // A clock before 1970 mints tokens that are already expired, which
        // the gateway then reports; nothing better to do here.
        now_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    mint_token(&spec, private_key.as_deref(), &claims).map_err(TokenError::Mint)
}

/// The key named by `kid`; without one, the only key, else the first
/// HS256 key (it needs no private key file).
fn pick_key<'a>(
    keys: &'a [JwtKey],
    kid: Option<&str>,
    described: &str,
) -> Result<(usize, &'a JwtKey), TokenError> {
    let configured = || {
        keys.iter()
            .map(|k| format!("{:?} ({})", k.kid, k.algorithm().as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if keys.is_empty() {
        return Err(TokenError::NoKeys(described.to_owned()));
    }
    match kid {
        Some(kid) => keys
            .iter()
            .enumerate()
            .find(|(_, k)| k.kid == kid)
            .ok_or_else(|| TokenError::UnknownKid {
                kid: kid.to_owned(),
                configured: configured(),
            }),
        None if keys.len() == 1 => Ok((0, &keys[0])),
        None => keys
            .iter()
            .enumerate()
            .find(|(_, k)| matches!(k.material, KeyMaterial::Hs256 { .. }))
            .ok_or_else(|| TokenError::NoDefaultKey {
                configured: configured(),
            }),
    }
}
