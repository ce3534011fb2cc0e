//! The typed, validated configuration: what the gateway reads.
//!
//! Every value here has passed validation (`validate.rs`): durations are
//! [`Duration`]s, sizes are [`ByteSize`]s, addresses are [`SocketAddr`]s, and
//! the string-shaped values with rules of their own ([`HttpPath`],
//! [`LogFilter`], [`Secret`]) are newtypes that can only be built valid.
//! The `Default` of each section is the embedded default, the same value an
//! empty file gives (a test holds the two together).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use crate::units::ByteSize;

const fn localhost(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// `n` as a `NonZeroU32`, for the literal defaults below (all above zero).
const fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::MIN.saturating_add(n.saturating_sub(1))
}

/// The gateway's whole configuration. See `config/gateway.toml` for every
/// option with its default and meaning.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// `[server]`: process-wide settings.
    pub server: Server,
    /// `[listen]`: the sockets the gateway binds.
    pub listen: Listen,
    /// `[tls]`: the certificate for `wss` and QUIC.
    pub tls: Tls,
    /// `[limits]`: per-connection and global bounds.
    pub limits: Limits,
    /// `[session]`: handshake, heartbeats and resumption.
    pub session: Session,
    /// `[channels]`: per-channel history.
    pub channels: Channels,
    /// `[websocket]`: WebSocket transport buffers.
    pub websocket: WebSocket,
    /// `[quic]`: QUIC transport parameters.
    pub quic: Quic,
    /// `[auth]`: client authentication.
    pub auth: Auth,
    /// `[ops]`: the operations (metrics, health, publish) API.
    pub ops: Ops,
    /// `[log]`: logging.
    pub log: Log,
    /// `[upgrade]`: graceful binary upgrade.
    pub upgrade: Upgrade,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// How many worker threads (one single-threaded runtime each) to run.
    pub workers: Workers,
    /// Whether each worker may run only on its own CPU. Off, the kernel
    /// may move a worker to an idle CPU when its own is busy.
    pub pin_workers: bool,
    /// Directory for the dev certificate and the control socket.
    pub data_dir: PathBuf,
    /// How long a SIGTERM drain waits for sessions before closing them.
    pub drain_timeout: Duration,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            workers: Workers::PerCore,
            pin_workers: false,
            data_dir: PathBuf::from("ferry-data"),
            drain_timeout: secs(10),
        }
    }
}

/// The number of workers: `workers = 0` is [`Workers::PerCore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// One worker per available core.
    PerCore,
    /// Exactly this many workers (at most 1024).
    Fixed(NonZeroUsize),
}

impl Workers {
    /// The number of workers to start, resolving [`Workers::PerCore`] with
    /// [`std::thread::available_parallelism`] (1 if that is unknown).
    pub fn count(self) -> usize {
        match self {
            Self::PerCore => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            Self::Fixed(n) => n.get(),
        }
    }
}

/// `[listen]`. Changing any of these needs a restart (or an upgrade).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// Plain WebSocket listener (TCP).
    pub ws: SocketAddr,
    /// The HTTP path that upgrades to WebSocket, on `ws` and `wss`.
    pub ws_path: HttpPath,
    /// WebSocket over TLS listener (TCP); `None` is off.
    pub wss: Option<SocketAddr>,
    /// QUIC listener (UDP); `None` is off.
    pub quic: Option<SocketAddr>,
    /// Operations HTTP listener: metrics, health, publish API.
    pub ops: SocketAddr,
    /// The control socket (Unix) used by `gateway ctl` and upgrades;
    /// `<data_dir>/control.sock` unless given.
    pub control_socket: PathBuf,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            ws: localhost(8080),
            ws_path: HttpPath(String::from("/ws")),
            wss: None,
            quic: Some(localhost(4433)),
            ops: localhost(9090),
            control_socket: PathBuf::from("ferry-data").join("control.sock"),
        }
    }
}

/// An HTTP path: starts with `/`, has no whitespace, `?` or `#`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpPath(String);

impl HttpPath {
    /// Checks `path`; the error completes a sentence that starts with it.
    pub fn new(path: &str) -> Result<Self, String> {
        if !path.starts_with('/') {
            return Err("does not start with '/'".into());
        }
        if path
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
        {
            return Err("has whitespace, '?' or '#' (a path only)".into());
        }
        Ok(Self(path.to_owned()))
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HttpPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[tls]`: where the certificate for `wss` and QUIC comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Tls {
    /// Neither `cert` nor `key` given: the gateway makes a self-signed
    /// development certificate in `server.data_dir`.
    #[default]
    SelfSigned,
    /// Both given: PEM files, loaded (and checked) by the gateway.
    Files {
        /// Certificate chain, PEM.
        cert: PathBuf,
        /// Private key, PEM.
        key: PathBuf,
    },
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame accepted or sent (1KiB..=16MiB).
    pub max_frame_size: ByteSize,
    /// Longest channel name in bytes (1..=1024).
    pub max_channel_len: usize,
    /// Channels one session may subscribe to (>= 1).
    pub max_subscriptions: usize,
    /// Concurrent open connections over all workers (>= 1).
    pub max_connections: usize,
    /// Sessions kept, attached and detached, over all workers (>= 1). Each
    /// worker holds at most its share; a new session past it evicts the
    /// oldest detached one.
    pub max_sessions: usize,
    /// Bytes of session, replay-log and channel state one worker keeps
    /// before it sheds detached sessions (oldest first) and idle channels.
    pub memory_budget: ByteSize,
    /// Connections per worker still in their handshake (accepted, no
    /// HELLO yet); when full, a new one sheds the oldest. `0` (default):
    /// a quarter of the open-files limit shared among the workers, within
    /// 16..=1024.
    pub max_pending_handshakes: usize,
    /// Bytes queued to one session before it is a slow consumer and is
    /// disconnected (>= `max_frame_size`).
    pub outbound_queue: ByteSize,
    /// Publishes per second per session; `None` is unlimited (`0`).
    pub publish_rate: Option<NonZeroU32>,
    /// Publishes a session may send at once above `publish_rate`.
    pub publish_burst: NonZeroU32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_size: ByteSize::kib(64),
            max_channel_len: 128,
            max_subscriptions: 64,
            max_connections: 100_000,
            max_sessions: 100_000,
            memory_budget: ByteSize::gib(1),
            max_pending_handshakes: 0,
            outbound_queue: ByteSize::kib(256),
            publish_rate: None,
            publish_burst: nonzero(100),
        }
    }
}

/// `[session]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Time from accept to HELLO: one deadline over every phase (TCP,
    /// TLS, HTTP upgrade or QUIC stream, HELLO).
    pub handshake_timeout: Duration,
    /// How often each side sends a heartbeat when idle.
    pub heartbeat_interval: Duration,
    /// Silence after which a session is dead (> `heartbeat_interval`).
    pub heartbeat_timeout: Duration,
    /// How long a detached session waits to be resumed.
    pub resume_window: Duration,
    /// Messages kept per session for replay on resume (>= 1).
    pub replay_max_messages: usize,
    /// Bytes kept per session for replay on resume (>= `max_frame_size`).
    pub replay_max_bytes: ByteSize,
}

impl Default for Session {
    fn default() -> Self {
        Self {
            handshake_timeout: secs(10),
            heartbeat_interval: secs(25),
            heartbeat_timeout: secs(60),
            resume_window: secs(120),
            replay_max_messages: 1024,
            replay_max_bytes: ByteSize::mib(1),
        }
    }
}

/// `[channels]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels {
    /// Messages of history each channel's sequencer keeps for catch-up
    /// after a session moves (>= 1).
    pub history_messages: usize,
    /// Bytes of that history (>= `max_frame_size`).
    pub history_bytes: ByteSize,
    /// How long a channel nobody listens to is remembered; after that its
    /// state is freed and its offsets start again at 1.
    pub idle_ttl: Duration,
}

impl Default for Channels {
    fn default() -> Self {
        Self {
            history_messages: 1024,
            history_bytes: ByteSize::mib(1),
            idle_ttl: secs(60),
        }
    }
}

/// `[websocket]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocket {
    /// Read buffer per connection.
    pub read_buffer: ByteSize,
    /// Bytes buffered before a write is flushed (0 writes at once).
    pub write_buffer: ByteSize,
    /// Most bytes buffered for writing (> `write_buffer` + one frame).
    pub max_write_buffer: ByteSize,
}

impl Default for WebSocket {
    fn default() -> Self {
        Self {
            read_buffer: ByteSize::kib(1),
            write_buffer: ByteSize::kib(4),
            max_write_buffer: ByteSize::mib(1),
        }
    }
}

/// `[quic]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quic {
    /// Silence after which a QUIC connection is closed.
    pub idle_timeout: Duration,
    /// Keep-alive pings; `None` (default) sends none, to spare mobile
    /// batteries: heartbeats already keep a session alive.
    pub keep_alive_interval: Option<Duration>,
    /// Flow-control window per stream.
    pub stream_receive_window: ByteSize,
    /// Flow-control window per connection (>= `stream_receive_window`).
    pub receive_window: ByteSize,
    /// Bytes in flight per connection.
    pub send_window: ByteSize,
}

impl Default for Quic {
    fn default() -> Self {
        Self {
            idle_timeout: secs(60),
            keep_alive_interval: None,
            stream_receive_window: ByteSize::kib(64),
            receive_window: ByteSize::kib(128),
            send_window: ByteSize::kib(256),
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// How clients authenticate.
    pub mode: AuthMode,
    /// Required `aud` claim, if any (`jwt` mode only).
    pub audience: Option<String>,
    /// Required `iss` claim, if any (`jwt` mode only).
    pub issuer: Option<String>,
    /// How long before a token expires the gateway asks for a new one.
    pub refresh_before: Duration,
    /// How long after expiry a session survives while refreshing.
    pub refresh_grace: Duration,
    /// Failed handshakes per minute per source IP before it is refused.
    pub failed_attempts_per_minute: NonZeroU32,
    /// Verification keys by `kid`; at least one in `jwt` mode, kids unique.
    pub keys: Vec<JwtKey>,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            mode: AuthMode::None,
            audience: None,
            issuer: None,
            refresh_before: secs(60),
            refresh_grace: secs(30),
            failed_attempts_per_minute: nonzero(30),
            keys: Vec::new(),
        }
    }
}

/// `auth.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// `"none"`: every client is accepted (development).
    None,
    /// `"jwt"`: clients present a JWT signed by one of `auth.keys`.
    Jwt,
}

impl AuthMode {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Jwt => "jwt",
        }
    }
}

/// One `[[auth.keys]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtKey {
    /// The key id a token names in its `kid` header.
    pub kid: String,
    /// The algorithm and the key material it needs.
    pub material: KeyMaterial,
}

impl JwtKey {
    /// The signing algorithm of this key.
    pub fn algorithm(&self) -> Algorithm {
        match self.material {
            KeyMaterial::Hs256 { .. } => Algorithm::Hs256,
            KeyMaterial::Rs256 { .. } => Algorithm::Rs256,
            KeyMaterial::Es256 { .. } => Algorithm::Es256,
        }
    }
}

/// A JWT verification key: each algorithm holds only what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// HMAC-SHA256 with a shared secret (at least 32 bytes).
    Hs256 {
        /// The shared secret.
        secret: Secret,
    },
    /// RSA PKCS#1 v1.5 with SHA-256.
    Rs256 {
        /// PEM public key file, loaded by the gateway.
        public_key_file: PathBuf,
    },
    /// ECDSA P-256 with SHA-256.
    Es256 {
        /// PEM public key file, loaded by the gateway.
        public_key_file: PathBuf,
    },
}

/// `auth.keys[].algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `"HS256"`.
    Hs256,
    /// `"RS256"`.
    Rs256,
    /// `"ES256"`.
    Es256,
}

impl Algorithm {
    /// The JOSE name (`"HS256"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }
}

/// A secret string (API key, HMAC secret). `Debug` and errors never show
/// it; `PartialEq` is not constant-time and is for config diffs only.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub(crate) fn new(secret: String) -> Self {
        Self(secret)
    }

    /// The secret itself. Compare it with a constant-time comparison.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `[ops]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ops {
    /// Bearer key of the publish API (>= 16 characters); `None` makes the
    /// publish API answer 401 to everything.
    pub api_key: Option<Secret>,
    /// Ops connections open at once (1..=65536); when full, a new one
    /// closes the connection idle the longest, so a probe always gets in.
    pub max_connections: usize,
    /// Longest a connection may take to send a request's headers, counted
    /// from accept or from the previous response (keep-alive idle).
    pub idle_timeout: Duration,
}

impl Default for Ops {
    fn default() -> Self {
        Self {
            api_key: None,
            max_connections: 256,
            idle_timeout: secs(10),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// A level (`trace`..`error`) or an `EnvFilter` directive string.
    pub level: LogFilter,
    /// Line format.
    pub format: LogFormat,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            level: LogFilter(String::from("info")),
            format: LogFormat::Text,
        }
    }
}

/// A log level or `EnvFilter` directive string: not empty. Its syntax is
/// checked by the gateway, which owns the logging crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter(String);

impl LogFilter {
    /// Checks `filter`; the error completes a sentence that starts with it.
    pub fn new(filter: &str) -> Result<Self, String> {
        let filter = filter.trim();
        if filter.is_empty() {
            return Err("is empty (write a level such as \"info\" or a directive)".into());
        }
        Ok(Self(filter.to_owned()))
    }

    /// The filter string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `"text"`: human-readable lines.
    Text,
    /// `"json"`: one JSON object per line.
    Json,
}

/// `[upgrade]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// Sessions told to reconnect per second during a handover.
    pub reconnect_rate: NonZeroU32,
    /// Time after which the old process closes what is left and exits.
    pub drain_deadline: Duration,
}

impl Default for Upgrade {
    fn default() -> Self {
        Self {
            reconnect_rate: nonzero(2000),
            drain_deadline: secs(60),
        }
    }
}
