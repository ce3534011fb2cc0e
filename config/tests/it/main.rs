//! Tests of the public API: loading, every rule, env overrides, the example
//! file, and reload diffs. One binary, one module per concern.

#![allow(clippy::unwrap_used)]

mod defaults;
mod diff;
mod env;
mod errors;
mod example;
mod rules;

use ferry_config::{Config, ConfigErrors};

/// Parses `text`, expecting it to fail.
pub fn errors_of(text: &str) -> ConfigErrors {
    match Config::from_toml_str(text) {
        Ok(config) => panic!("expected errors for:\n{text}\ngot {config:#?}"),
        Err(errors) => errors,
    }
}

/// Parses `text`, expecting it to be valid.
pub fn config_of(text: &str) -> Config {
    Config::from_toml_str(text).unwrap_or_else(|e| panic!("unexpected errors for:\n{text}\n{e}"))
}
