//! Raw schema → typed [`Config`], checking every rule and reporting every
//! problem with its field path.
//!
//! Each section is checked on its own, then the rules that tie fields
//! together. A field that is wrong is reported once and its default stands
//! in, so checks that depend on it are skipped rather than reported twice.
//! The resulting `Config` is only handed out as valid when nothing was
//! reported ([`crate::Config::load_lenient`] hands it out with the problems,
//! so that a check can go on to the files it names).

//!
//! The rules live by concern: [`network`] (server, listeners, TLS,
//! transports), [`limits`] (limits, sessions, channels, log, upgrade) and
//! [`auth`] (authentication and the ops API key).

mod auth;
mod limits;
mod network;

use std::fmt::Display;
use std::num::NonZeroU32;
use std::time::Duration;

use crate::error::{ConfigError, ErrorKind};
use crate::schema::{Field, RawConfig};
use crate::sections::Config;
use crate::units::{ByteSize, format_duration};

/// Sizes above this are typos, not configurations.
const SIZE_CEILING: ByteSize = ByteSize::gib(1);
/// Durations above this are typos, and would overflow `Instant` arithmetic.
const DURATION_CEILING: Duration = Duration::from_secs(24 * 60 * 60);
/// Counts above this are typos.
const COUNT_CEILING: u64 = u32::MAX as u64;

/// Builds the typed configuration from `raw` and finds every problem; the
/// default stands in for each field that is wrong, so the configuration is
/// only to be used as is when the list is empty.
pub(crate) fn validate(raw: &RawConfig) -> (Config, Vec<ConfigError>) {
    let mut c = Checker::default();
    let server = network::server(&mut c, raw);
    let listen = network::listen(&mut c, raw, &server);
    let tls = network::tls(&mut c, raw);
    let limits = limits::limits(&mut c, raw);
    let session = limits::session(&mut c, raw, &limits);
    let channels = limits::channels(&mut c, raw, &limits);
    let websocket = network::websocket(&mut c, raw, &limits);
    let quic = network::quic(&mut c, raw);
    let auth = auth::auth(&mut c, raw);
    let ops = auth::ops(&mut c, raw);
    let log = limits::log(&mut c, raw);
    let upgrade = limits::upgrade(&mut c, raw);
    let config = Config {
        server,
        listen,
        tls,
        limits,
        session,
        channels,
        websocket,
        quic,
        auth,
        ops,
        log,
        upgrade,
    };
    (config, c.errors)
}

/// Collects problems; each method reads one field and returns its value,
/// or the default when the field is absent or wrong.
#[derive(Default)]
struct Checker {
    errors: Vec<ConfigError>,
}

/// A field's checked value and whether it may take part in cross-field
/// rules (false when it was wrong and the default stands in).
struct Got<T> {
    value: T,
    ok: bool,
}

impl Checker {
    fn report(&mut self, kind: ErrorKind, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::new(kind, path, message));
    }

    fn invalid(&mut self, path: &str, message: impl Into<String>) {
        self.report(ErrorKind::Invalid, path, message);
    }

    /// The value and how it was written, when given and well formed.
    fn read<'a, T>(&mut self, path: &str, field: &'a Field<T>) -> Option<(&'a T, &'a str)> {
        match field {
            Field::Absent => None,
            Field::Set { value, shown } => Some((value, shown)),
            Field::Invalid { shown, problem } => {
                self.report(ErrorKind::Type, path, format!("{shown} {problem}"));
                None
            }
        }
    }

    /// A field with no rule beyond its form.
    fn plain<T: Clone>(&mut self, path: &str, field: &Field<T>, default: T) -> T {
        self.checked(path, field, default, |v| Ok(v.clone())).value
    }

    /// A field whose value `rule` turns into the typed value, or rejects
    /// with a message completing a sentence that starts with the value.
    fn checked<T, U>(
        &mut self,
        path: &str,
        field: &Field<T>,
        default: U,
        rule: impl FnOnce(&T) -> Result<U, String>,
    ) -> Got<U> {
        match field {
            Field::Absent => Got {
                value: default,
                ok: true,
            },
            _ => match self.read(path, field) {
                None => Got {
                    value: default,
                    ok: false,
                },
                Some((value, shown)) => match rule(value) {
                    Ok(value) => Got { value, ok: true },
                    Err(problem) => {
                        self.invalid(path, format!("{shown} {problem}"));
                        Got {
                            value: default,
                            ok: false,
                        }
                    }
                },
            },
        }
    }

    /// A whole number in `min..=max`.
    fn count(
        &mut self,
        path: &str,
        field: &Field<i64>,
        default: u64,
        min: u64,
        max: u64,
    ) -> Got<u64> {
        self.checked(path, field, default, |&n| {
            let n = u64::try_from(n).map_err(|_| format!("is below the minimum {min}"))?;
            in_range(n, min, max)
        })
    }

    /// A size in `min..=max`.
    fn size(
        &mut self,
        path: &str,
        field: &Field<ByteSize>,
        default: ByteSize,
        min: ByteSize,
    ) -> Got<ByteSize> {
        self.checked(path, field, default, |&n| in_range(n, min, SIZE_CEILING))
    }

    /// A duration above zero (or zero too, with `allow_zero`), at most a day.
    fn duration(
        &mut self,
        path: &str,
        field: &Field<Duration>,
        default: Duration,
        allow_zero: bool,
    ) -> Got<Duration> {
        self.checked(path, field, default, |&d| duration_rule(d, allow_zero))
    }
}

fn in_range<T: PartialOrd + Display>(n: T, min: T, max: T) -> Result<T, String> {
    if n < min {
        Err(format!("is below the minimum {min}"))
    } else if n > max {
        Err(format!("is above the maximum {max}"))
    } else {
        Ok(n)
    }
}

fn duration_rule(d: Duration, allow_zero: bool) -> Result<Duration, String> {
    if d.is_zero() && !allow_zero {
        Err("must be more than zero".into())
    } else if d > DURATION_CEILING {
        Err(format!(
            "is above the maximum {}",
            format_duration(DURATION_CEILING)
        ))
    } else {
        Ok(d)
    }
}

fn as_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn nonzero_u32(n: u64, default: NonZeroU32) -> NonZeroU32 {
    u32::try_from(n)
        .ok()
        .and_then(NonZeroU32::new)
        .unwrap_or(default)
}
