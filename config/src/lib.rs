//! Ferry gateway configuration: the schema, its embedded defaults, its
//! validation, environment overrides, and reload diffs.
//!
//! - [`units`]: human sizes (`"64KiB"`, `"1.5MiB"`, `65536`) and durations
//!   (`"30s"`, `"250ms"`).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod units;

pub use units::ByteSize;
