//! Environment overrides: `FERRY_<SECTION>_<FIELD>=value`.
//!
//! Each variable names one key of the schema in upper case
//! (`FERRY_LISTEN_WS` is `listen.ws`, `FERRY_LIMITS_MAX_FRAME_SIZE` is
//! `limits.max_frame_size`) and replaces that key's value from the file
//! before anything is validated, so an override obeys the same rules and
//! reports the same errors as the file, with the variable named. Integer
//! keys read the value as an integer, boolean keys as `true` or `false`;
//! every other key reads it as the
//! string it would be in the file (`32KiB`, `30s`, `127.0.0.1:9000`); an
//! empty value turns off the keys that `""` turns off in the file (`wss`,
//! `quic`, `keep_alive_interval`).
//!
//! A `FERRY_` variable that names no key is an error, so a typo cannot
//! silently leave a setting at its default. `auth.keys` cannot be set from
//! the environment. [`RESERVED`] names are left alone for the command line.

use crate::error::{ConfigError, ErrorKind};
use crate::introspect::{Shape, join, suggest};

/// The prefix of override variables.
pub const PREFIX: &str = "FERRY_";

/// `FERRY_` variables that are not overrides and are ignored here:
/// `FERRY_CONFIG` is left for the gateway's command line (the file's path).
pub const RESERVED: &[&str] = &["FERRY_CONFIG"];

/// The override variables of the process environment, sorted by name.
/// A name or value that is not UTF-8 is kept lossily, so it is reported
/// as an unknown variable or a bad value rather than ignored.
pub(crate) fn from_process() -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .filter(|(k, _)| k.starts_with(PREFIX))
        .collect();
    vars.sort();
    vars
}

/// An override applied to the input: the key's path and the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Override {
    pub path: String,
    pub var: String,
}

/// Applies every `FERRY_` variable in `env` to `table` (the file, already
/// pruned to `shape`), reporting unknown variables. Returns what was set,
/// so that errors at those paths can name their variable.
pub(crate) fn apply(
    shape: &Shape,
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    errors: &mut Vec<ConfigError>,
) -> Vec<Override> {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(PREFIX) && !RESERVED.contains(&k.as_str()))
        .collect();
    vars.sort();
    let mut applied = Vec::new();
    for (var, text) in vars {
        match resolve(shape, &var) {
            Ok((section, key, kind)) => {
                let value = match kind {
                    "integer" => text
                        .parse::<i64>()
                        .map_or_else(|_| toml::Value::String(text.clone()), toml::Value::Integer),
                    "boolean" => text
                        .parse::<bool>()
                        .map_or_else(|_| toml::Value::String(text.clone()), toml::Value::Boolean),
                    _ => toml::Value::String(text),
                };
                let entry = table
                    .entry(section)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if !entry.is_table() {
                    // The file's value was not a table and has been
                    // reported by `prune`; start the section afresh.
                    *entry = toml::Value::Table(toml::Table::new());
                }
                if let toml::Value::Table(section_table) = entry {
                    section_table.insert(key.to_owned(), value);
                }
                applied.push(Override {
                    path: join(section, key),
                    var,
                });
            }
            Err(message) => errors.push(ConfigError::new(ErrorKind::Unknown, var, message)),
        }
    }
    applied
}

/// The section, key and kind a variable names, or why it names none.
fn resolve<'s>(
    shape: &'s Shape,
    var: &str,
) -> Result<(&'static str, &'static str, &'s str), String> {
    let rest = var.strip_prefix(PREFIX).unwrap_or(var);
    if rest.is_empty()
        || rest
            .chars()
            .any(|c| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
    {
        return Err(format!(
            "unknown variable; overrides are {PREFIX}<SECTION>_<FIELD> in upper case"
        ));
    }
    let lower = rest.to_ascii_lowercase();
    let (section_name, key_name) = lower.split_once('_').unwrap_or((lower.as_str(), ""));
    let sections = shape.keys();
    let Some((section, section_shape)) = sections
        .iter()
        .find(|s| **s == section_name)
        .and_then(|s| shape.get(s).map(|sh| (*s, sh)))
    else {
        return Err(format!(
            "unknown variable: there is no section [{section_name}]{}",
            suggest(section_name, &sections)
        ));
    };
    let keys = section_shape.keys();
    let Some(key) = keys.iter().find(|k| **k == key_name).copied() else {
        let upper: Vec<String> = keys
            .iter()
            .map(|k| {
                format!(
                    "{PREFIX}{}_{}",
                    section.to_ascii_uppercase(),
                    k.to_ascii_uppercase()
                )
            })
            .collect();
        let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
        return Err(format!(
            "unknown variable: [{section}] has no key \"{key_name}\"{}",
            suggest(var, &upper)
        ));
    };
    match section_shape.get(key) {
        Some(Shape::Leaf(kind)) => Ok((section, key, kind)),
        _ => Err(format!(
            "{section}.{key} cannot be set from the environment; use the file"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::introspect::CONFIG_SHAPE;

    fn run(vars: &[(&str, &str)]) -> (toml::Table, Vec<Override>, Vec<ConfigError>) {
        let mut table = toml::Table::new();
        let mut errors = Vec::new();
        let env = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        let applied = apply(&CONFIG_SHAPE, &mut table, env, &mut errors);
        (table, applied, errors)
    }

    #[test]
    fn variables_map_to_keys_with_their_kind() {
        let (table, applied, errors) = run(&[
            ("FERRY_SERVER_WORKERS", "2"),
            ("FERRY_LIMITS_MAX_FRAME_SIZE", "32KiB"),
            ("FERRY_OPS_API_KEY", "12345678901234567890"),
            ("PATH", "/usr/bin"),
            ("FERRY_CONFIG", "/etc/ferry/gateway.toml"),
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(table["server"]["workers"], toml::Value::Integer(2));
        assert_eq!(
            table["limits"]["max_frame_size"],
            toml::Value::String("32KiB".into())
        );
        // A string key stays a string even when it looks like a number.
        assert_eq!(
            table["ops"]["api_key"],
            toml::Value::String("12345678901234567890".into())
        );
        let paths: Vec<&str> = applied.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(
            paths,
            ["limits.max_frame_size", "ops.api_key", "server.workers"]
        );
    }

    #[test]
    fn unknown_variables_are_errors_named_by_variable() {
        let (_, applied, errors) = run(&[
            ("FERRY_LIMITS_MAX_FRAME", "1"),
            ("FERRY_NOPE_X", "1"),
            ("FERRY_listen_ws", "1"),
            ("FERRY_AUTH_KEYS", "x"),
            ("FERRY_", "x"),
        ]);
        assert!(applied.is_empty());
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "FERRY_",
                "FERRY_AUTH_KEYS",
                "FERRY_LIMITS_MAX_FRAME",
                "FERRY_NOPE_X",
                "FERRY_listen_ws"
            ]
        );
        assert!(
            errors[1]
                .message
                .contains("cannot be set from the environment")
        );
        assert!(
            errors[2].message.contains("FERRY_LIMITS_MAX_FRAME_SIZE"),
            "{}",
            errors[2]
        );
        assert!(errors[3].message.contains("no section [nope]"));
        assert!(errors[4].message.contains("upper case"));
    }
}
