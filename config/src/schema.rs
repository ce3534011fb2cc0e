//! The raw schema: what a configuration file may contain, as serde structs.
//!
//! Every section and every key is here, once. The structs are
//! `deny_unknown_fields`, and the [shape](crate::introspect::Shape) read from
//! them is what unknown keys and `FERRY_` variables are checked against, so
//! adding a key here is the only step needed to make it parse.
//!
//! Each key is a [`Field`], which never fails to deserialize: a value of the
//! wrong form is kept as [`Field::Invalid`] so that [`validate`](crate::validate)
//! can report it together with every other problem, instead of serde stopping
//! at the first.

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{Deserializer, Visitor};

use crate::sections::{Algorithm, AuthMode, LogFormat};
use crate::units::{self, ByteSize};

/// A value read from TOML into a typed form. The error completes a sentence
/// that starts with the value as written: `"soon" <is not a duration ...>`.
pub(crate) trait FromToml: Sized {
    /// The kind of value, recorded in the schema's shape. `FERRY_` variables
    /// for `"integer"` keys are read as integers, all others as strings.
    const KIND: &'static str;
    /// Whether the value is secret and must never appear in a message.
    const SECRET: bool = false;

    fn from_toml(value: &toml::Value) -> Result<Self, String>;
}

/// A key as read from the input.
#[derive(Debug, Clone, Default)]
pub(crate) enum Field<T> {
    /// Not given: the default applies.
    #[default]
    Absent,
    /// Given and well formed; `shown` is the value as written (TOML
    /// syntax), for messages.
    Set { value: T, shown: String },
    /// Given in the wrong form; `problem` completes a sentence that starts
    /// with `shown`.
    Invalid { shown: String, problem: String },
}

impl<'de, T: FromToml> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The newtype wrapper carries the kind to the shape probe; TOML
        // deserializers pass straight through to the value.
        d.deserialize_newtype_struct(T::KIND, FieldVisitor(PhantomData))
    }
}

struct FieldVisitor<T>(PhantomData<T>);

impl<'de, T: FromToml> Visitor<'de> for FieldVisitor<T> {
    type Value = Field<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Field<T>, D::Error> {
        let value = toml::Value::deserialize(d)?;
        let shown = if T::SECRET {
            String::from("the secret")
        } else {
            value.to_string()
        };
        Ok(match T::from_toml(&value) {
            Ok(value) => Field::Set { value, shown },
            Err(problem) => Field::Invalid { shown, problem },
        })
    }
}

fn kind_of(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "is a string",
        toml::Value::Integer(_) => "is a number",
        toml::Value::Float(_) => "is a fractional number",
        toml::Value::Boolean(_) => "is a boolean",
        toml::Value::Datetime(_) => "is a date",
        toml::Value::Array(_) => "is an array",
        toml::Value::Table(_) => "is a table",
    }
}

fn string(value: &toml::Value, wanted: &str) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        other => Err(format!("{}, not {wanted}", kind_of(other))),
    }
}

impl FromToml for i64 {
    const KIND: &'static str = "integer";

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::Integer(n) => Ok(*n),
            toml::Value::String(s) if s.trim().parse::<i64>().is_ok() => {
                Err("is a string; write the number without quotes".into())
            }
            toml::Value::String(_) => Err("is not a whole number".into()),
            other => Err(format!("{}, not a whole number", kind_of(other))),
        }
    }
}

impl FromToml for bool {
    const KIND: &'static str = "boolean";

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::Boolean(b) => Ok(*b),
            toml::Value::String(s) if matches!(s.trim(), "true" | "false") => {
                Err("is a string; write true or false without quotes".into())
            }
            other => Err(format!("{}, not true or false", kind_of(other))),
        }
    }
}

impl FromToml for String {
    const KIND: &'static str = "string";

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        string(value, "a string (put it in quotes)")
    }
}

/// A secret string: never shown in messages.
#[derive(Clone)]
pub(crate) struct SecretText(pub(crate) String);

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretText(<redacted>)")
    }
}

impl FromToml for SecretText {
    const KIND: &'static str = "string";
    const SECRET: bool = true;

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        string(value, "a string (put it in quotes)").map(SecretText)
    }
}

impl FromToml for PathBuf {
    const KIND: &'static str = "string";

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        let path = string(value, "a path (a string)")?;
        if path.is_empty() {
            return Err("is empty, not a path".into());
        }
        Ok(PathBuf::from(path))
    }
}

impl FromToml for SocketAddr {
    const KIND: &'static str = "string";

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        string(
            value,
            "a socket address (a string such as \"127.0.0.1:8080\")",
        )?
        .parse()
        .map_err(|_| {
            "is not a socket address (write IP:port, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\")"
                .into()
        })
    }
}

impl FromToml for ByteSize {
    const KIND: &'static str = "size";

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::Integer(n) => u64::try_from(*n)
                .map(ByteSize::b)
                .map_err(|_| "is negative, not a size".into()),
            toml::Value::String(s) => s.parse().map_err(|e: units::SizeError| e.to_string()),
            other => Err(format!(
                "{}, not a size (write bytes or e.g. \"64KiB\")",
                kind_of(other)
            )),
        }
    }
}

impl FromToml for Duration {
    const KIND: &'static str = "duration";

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::String(s) => units::parse_duration(s),
            toml::Value::Integer(_) => Err("has no unit (write e.g. \"30s\" in quotes)".into()),
            other => Err(format!(
                "{}, not a duration (write e.g. \"30s\")",
                kind_of(other)
            )),
        }
    }
}

/// A value that the empty string `""` turns off (`wss = ""`), so that an
/// environment variable can turn off what the file or default turns on.
#[derive(Debug, Clone)]
pub(crate) struct OrOff<T>(pub(crate) Option<T>);

impl<T: FromToml> FromToml for OrOff<T> {
    const KIND: &'static str = T::KIND;

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::String(s) if s.is_empty() => Ok(OrOff(None)),
            other => T::from_toml(other).map(|v| OrOff(Some(v))),
        }
    }
}

/// Reads one of a fixed set of names.
fn one_of<T: Copy>(value: &toml::Value, names: &[(&str, T)]) -> Result<T, String> {
    let list = names
        .iter()
        .map(|(n, _)| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let s = string(value, &format!("one of {list}"))?;
    names
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, v)| *v)
        .ok_or_else(|| format!("is not one of {list}"))
}

impl FromToml for AuthMode {
    const KIND: &'static str = "string";

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        one_of(value, &[("none", AuthMode::None), ("jwt", AuthMode::Jwt)])
    }
}

impl FromToml for Algorithm {
    const KIND: &'static str = "string";

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        one_of(
            value,
            &[
                ("HS256", Algorithm::Hs256),
                ("RS256", Algorithm::Rs256),
                ("ES256", Algorithm::Es256),
            ],
        )
    }
}

impl FromToml for LogFormat {
    const KIND: &'static str = "string";

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        one_of(
            value,
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        )
    }
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub server: RawServer,
    pub listen: RawListen,
    pub tls: RawTls,
    pub limits: RawLimits,
    pub session: RawSession,
    pub channels: RawChannels,
    pub websocket: RawWebSocket,
    pub quic: RawQuic,
    pub auth: RawAuth,
    pub ops: RawOps,
    pub log: RawLog,
    pub upgrade: RawUpgrade,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawServer {
    pub workers: Field<i64>,
    pub pin_workers: Field<bool>,
    pub data_dir: Field<PathBuf>,
    pub drain_timeout: Field<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawListen {
    pub ws: Field<SocketAddr>,
    pub ws_path: Field<String>,
    pub wss: Field<OrOff<SocketAddr>>,
    pub quic: Field<OrOff<SocketAddr>>,
    pub ops: Field<SocketAddr>,
    pub control_socket: Field<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawTls {
    pub cert: Field<PathBuf>,
    pub key: Field<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub max_frame_size: Field<ByteSize>,
    pub max_channel_len: Field<i64>,
    pub max_subscriptions: Field<i64>,
    pub max_connections: Field<i64>,
    pub max_sessions: Field<i64>,
    pub memory_budget: Field<ByteSize>,
    pub max_pending_handshakes: Field<i64>,
    pub outbound_queue: Field<ByteSize>,
    pub publish_rate: Field<i64>,
    pub publish_burst: Field<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawSession {
    pub handshake_timeout: Field<Duration>,
    pub heartbeat_interval: Field<Duration>,
    pub heartbeat_timeout: Field<Duration>,
    pub resume_window: Field<Duration>,
    pub replay_max_messages: Field<i64>,
    pub replay_max_bytes: Field<ByteSize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawChannels {
    pub history_messages: Field<i64>,
    pub history_bytes: Field<ByteSize>,
    pub idle_ttl: Field<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawWebSocket {
    pub read_buffer: Field<ByteSize>,
    pub write_buffer: Field<ByteSize>,
    pub max_write_buffer: Field<ByteSize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawQuic {
    pub idle_timeout: Field<Duration>,
    pub keep_alive_interval: Field<OrOff<Duration>>,
    pub stream_receive_window: Field<ByteSize>,
    pub receive_window: Field<ByteSize>,
    pub send_window: Field<ByteSize>,
    pub max_concurrent_bidi_streams: Field<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawAuth {
    pub mode: Field<AuthMode>,
    pub audience: Field<String>,
    pub issuer: Field<String>,
    pub refresh_before: Field<Duration>,
    pub refresh_grace: Field<Duration>,
    pub failed_attempts_per_minute: Field<i64>,
    pub keys: Vec<RawJwtKey>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawJwtKey {
    pub kid: Field<String>,
    pub algorithm: Field<Algorithm>,
    pub secret: Field<SecretText>,
    pub public_key_file: Field<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawOps {
    pub api_key: Field<SecretText>,
    pub max_connections: Field<i64>,
    pub idle_timeout: Field<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawLog {
    pub level: Field<String>,
    pub format: Field<LogFormat>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawUpgrade {
    pub reconnect_rate: Field<i64>,
    pub drain_deadline: Field<Duration>,
}
