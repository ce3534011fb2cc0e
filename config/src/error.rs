//! Configuration errors.
//!
//! Every error here is the operator's: the file, an environment variable or
//! the file's path is wrong. Loading never stops at the first problem; it
//! gathers them all into [`ConfigErrors`], whose `Display` prints one per
//! line as `<field.path>: <value> <what is wrong>`.

use std::fmt;

use thiserror::Error;

/// What kind of problem a [`ConfigError`] is. All are the operator's to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Config: the file could not be read (missing, unreadable, not UTF-8).
    Io,
    /// Config: the file is not valid TOML; the message has line and column.
    Syntax,
    /// Config: a key, section or `FERRY_` variable the schema does not have.
    Unknown,
    /// Config: a value of the wrong type or form (`workers = "two"`,
    /// `drain_timeout = "soon"`).
    Type,
    /// Config: a well-formed value that breaks a rule (out of range, or
    /// inconsistent with another field).
    Invalid,
}

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub struct ConfigError {
    /// Where: a dotted field path (`limits.max_frame_size`,
    /// `auth.keys[1].kid`), a `FERRY_` variable name for an unknown
    /// variable, or empty for problems with the whole file.
    pub path: String,
    /// What is wrong, starting with the offending value when there is one
    /// (`0 is below the minimum 1KiB`). Secrets are never echoed.
    pub message: String,
    /// The kind of problem.
    pub kind: ErrorKind,
}

impl ConfigError {
    pub(crate) fn new(
        kind: ErrorKind,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            kind,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found while loading a configuration; never empty.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct ConfigErrors {
    /// The problems, in the order they were found: file structure and
    /// unknown keys, then environment variables, then field rules in schema
    /// order.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    pub(crate) fn one(error: ConfigError) -> Self {
        Self {
            errors: vec![error],
        }
    }

    /// The number of problems.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always false: a `ConfigErrors` holds at least one problem.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The field paths of the problems, in order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.errors.iter().map(|e| e.path.as_str())
    }

    /// The problem at `path`, if there is one.
    pub fn at(&self, path: &str) -> Option<&ConfigError> {
        self.errors.iter().find(|e| e.path == path)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}
