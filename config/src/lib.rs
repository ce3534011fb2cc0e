//! Ferry gateway configuration: the schema, its embedded defaults, its
//! validation, environment overrides, and reload diffs.
//!
//! This crate owns what an operator can configure and every rule a value
//! must obey. It does no I/O beyond reading the one file it is given and the
//! process environment; certificate, key and socket files are only named
//! here and are opened (and reported on) by the gateway.
//!
//! There is one path from text to values:
//!
//! ```text
//!  gateway.toml ──parse──> toml::Table        a TOML syntax error stops here (line, column)
//!                              │  introspect.rs: prune unknown keys and misplaced values
//!                              │  env.rs: FERRY_<SECTION>_<FIELD> replaces the file's value
//!                              ▼
//!                       schema::RawConfig     serde, deny_unknown_fields; a value of the wrong
//!                              │              form is kept as Field::Invalid, not fatal
//!                              │  validate.rs: every rule, every problem with its path
//!                              ▼
//!   Config (Duration, ByteSize, SocketAddr, enums)  or  ConfigErrors (one problem per line)
//! ```
//!
//! - `schema.rs`: the raw serde structs, the single list of sections and keys;
//!   `introspect.rs` reads their shape to find unknown keys;
//! - [`units`]: human sizes (`"64KiB"`, `"1.5MiB"`, `65536`) and durations
//!   (`"30s"`, `"250ms"`);
//! - `validate.rs`: every rule, reporting every problem with its field path;
//! - [`sections`]: the typed [`Config`] the gateway reads;
//! - [`env`](mod@env): `FERRY_<SECTION>_<FIELD>` overrides;
//! - [`diff`]: which changes a reload applies live and which need a restart.
//!
//! Every key is optional: `Config::default()` is the embedded default and
//! equals what an empty file gives. `config/gateway.toml` lists every key
//! with its default and meaning.
//!
//! ```
//! use ferry_config::Config;
//!
//! let config = Config::from_toml_str("[limits]\nmax_frame_size = \"32KiB\"\n").unwrap();
//! assert_eq!(config.limits.max_frame_size.as_usize(), 32 * 1024);
//!
//! let errors = Config::from_toml_str("[limits]\nmax_frame_size = 0\n").unwrap_err();
//! assert_eq!(errors.to_string(), "limits.max_frame_size: 0 is below the minimum 1KiB");
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod diff;
pub mod env;
pub mod error;
mod introspect;
mod schema;
pub mod sections;
pub mod units;
mod validate;

use std::path::Path;

pub use diff::ConfigDiff;
pub use error::{ConfigError, ConfigErrors, ErrorKind};
pub use sections::{
    Algorithm, Auth, AuthMode, Channels, Config, HttpPath, JwtKey, KeyMaterial, Limits, Listen,
    Log, LogFilter, LogFormat, Ops, Quic, Secret, Server, Session, Tls, Upgrade, WebSocket,
    Workers,
};
pub use units::ByteSize;

impl Config {
    /// Parses and validates a configuration file's text, without
    /// environment overrides.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigErrors> {
        build(Some(text), Vec::new())
    }

    /// Reads the file at `path` if one is given (else starts from the
    /// defaults), then applies the `FERRY_` variables of the process
    /// environment, then validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
        Self::load_with_env(path, env::from_process())
    }

    /// [`Config::load`] with the environment given explicitly (for tests
    /// and for callers that filter it). Variables without the `FERRY_`
    /// prefix are ignored.
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let text = read(path)?;
        build(text.as_deref(), env)
    }

    /// [`Config::load`] that goes on past problems in the values; see
    /// [`Config::load_lenient_with_env`].
    pub fn load_lenient(path: Option<&Path>) -> Result<(Config, Vec<ConfigError>), ConfigErrors> {
        Self::load_lenient_with_env(path, env::from_process())
    }

    /// [`Config::load_with_env`] that goes on past problems in the values:
    /// the configuration with the default standing in for every field that
    /// is wrong, and every such problem (empty when the configuration is
    /// valid). For a check that also opens the files the configuration
    /// names (`gateway check-config`) and reports everything at once. Only
    /// a file that cannot be read or parsed as TOML is an `Err`.
    pub fn load_lenient_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, Vec<ConfigError>), ConfigErrors> {
        let text = read(path)?;
        build_lenient(text.as_deref(), env)
    }

    /// What differs from `self` in `new`, split into what a reload applies
    /// live and what needs a restart.
    pub fn diff(&self, new: &Config) -> ConfigDiff {
        diff::diff(self, new)
    }
}

/// Every key of the schema as a dotted path, in schema order
/// (`server.workers`, ..., `auth.keys[].kid`, ...): for documentation checks
/// and `--help`-style listings.
pub fn key_paths() -> Vec<String> {
    introspect::CONFIG_SHAPE.leaf_paths()
}

/// The file's text, if a file is named.
fn read(path: Option<&Path>) -> Result<Option<String>, ConfigErrors> {
    let Some(path) = path else {
        return Ok(None);
    };
    std::fs::read_to_string(path).map(Some).map_err(|e| {
        ConfigErrors::one(ConfigError::new(
            ErrorKind::Io,
            "",
            format!("cannot read {}: {e}", path.display()),
        ))
    })
}

/// The whole path: parse, prune, override, deserialize, validate.
fn build(
    text: Option<&str>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let (config, errors) = build_lenient(text, env)?;
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors { errors })
    }
}

/// [`build`] that hands out the configuration (defaults standing in for
/// wrong fields) with its problems; `Err` only when there is no
/// configuration at all (syntax).
fn build_lenient(
    text: Option<&str>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(Config, Vec<ConfigError>), ConfigErrors> {
    let mut table = match text {
        Some(text) => parse(text)?,
        None => toml::Table::new(),
    };
    let mut errors = Vec::new();
    let shape = &*introspect::CONFIG_SHAPE;
    shape.prune(&mut table, "", &mut errors);
    let overrides = env::apply(shape, &mut table, env, &mut errors);
    // Cannot fail after pruning: every key is known and every `Field`
    // keeps a bad value instead of failing. Reported if it ever does.
    let raw: schema::RawConfig = match toml::Value::Table(table).try_into() {
        Ok(raw) => raw,
        Err(e) => {
            errors.push(ConfigError::new(
                ErrorKind::Type,
                "",
                e.message().to_owned(),
            ));
            return Err(ConfigErrors { errors });
        }
    };
    let (config, found) = validate::validate(&raw);
    errors.extend(found);
    for error in &mut errors {
        if let Some(o) = overrides.iter().find(|o| o.path == error.path) {
            error.message.push_str(&format!(" (set by {})", o.var));
        }
    }
    Ok((config, errors))
}

/// TOML text to a table; a syntax error stops here, with line and column.
fn parse(text: &str) -> Result<toml::Table, ConfigErrors> {
    text.parse::<toml::Table>().map_err(|e| {
        let at = e
            .span()
            .map(|span| {
                let before = text.get(..span.start).unwrap_or(text);
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!(" at line {line}, column {column}")
            })
            .unwrap_or_default();
        ConfigErrors::one(ConfigError::new(
            ErrorKind::Syntax,
            "",
            format!("TOML syntax error{at}: {}", e.message().trim_end()),
        ))
    })
}
