//! Client configuration: what to connect to, how to trust it, how to
//! reconnect. Plain data and pure helpers (URL parsing, backoff); no I/O.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::error::ClientError;

/// Which transport carries the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket over plain TCP (`ws://`).
    Ws,
    /// WebSocket over TLS (`wss://`).
    Wss,
    /// One bidirectional QUIC stream (`quic://`).
    Quic,
}

impl Transport {
    fn scheme(self) -> &'static str {
        match self {
            Self::Ws => "ws",
            Self::Wss => "wss",
            Self::Quic => "quic",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Self::Ws => 80,
            Self::Wss | Self::Quic => 443,
        }
    }

    /// Whether this transport needs [`ClientConfig::tls`].
    pub fn uses_tls(self) -> bool {
        !matches!(self, Self::Ws)
    }
}

/// Which server certificates the client trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsTrust {
    /// Certificates that chain to the CA certificates in this PEM file.
    CaFile(PathBuf),
    /// accepts any certificate; logs a loud warning each connect
    InsecureDev,
}

/// Asked for a fresh token on REFRESH_TOKEN and before each reconnect;
/// `None` keeps the current token.
pub type TokenProvider =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Option<String>> + Send>> + Send + Sync>;

/// When and how often to reconnect: exponential backoff with full jitter
/// (each delay is uniform in `0..=min(max_backoff, initial_backoff * 2^n)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// The ceiling of the first delay.
    pub initial_backoff: Duration,
    /// The largest ceiling.
    pub max_backoff: Duration,
    /// Consecutive failed attempts before giving up; `None` retries forever.
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_attempts: None,
        }
    }
}

impl ReconnectPolicy {
    /// The jitter ceiling before attempt `attempt` (0 for the first).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// The delay before attempt `attempt`, given a uniform random `unit` in
    /// `[0, 1]` (full jitter).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        self.ceiling(attempt).mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// Everything [`Client::connect`](super::Client::connect) needs.
#[derive(Clone)]
pub struct ClientConfig {
    /// The transport.
    pub transport: Transport,
    /// `ws://127.0.0.1:8080/ws`, `wss://localhost:8443/ws`,
    /// `quic://127.0.0.1:4433`. The TLS server name is the host part; for an
    /// IP address it is `localhost` unless [`Self::server_name`] is set.
    pub url: String,
    /// Overrides the TLS server name.
    pub server_name: Option<String>,
    /// Required for [`Transport::Wss`] and [`Transport::Quic`].
    pub tls: Option<TlsTrust>,
    /// Sent in HELLO.
    pub token: Option<String>,
    /// Reconnect backoff.
    pub reconnect: ReconnectPolicy,
    /// Capacity of the event channel. While it is full the SDK stops
    /// reading the transport, so the server's slow-consumer rule applies.
    pub event_capacity: usize,
    /// Send ACK after this many messages, and whenever reading goes idle.
    pub ack_every: u32,
    /// Heartbeat interval; by default WELCOME's.
    pub heartbeat_override: Option<Duration>,
    /// Asked on REFRESH_TOKEN and before reconnecting (and before the
    /// first connect when `token` is `None`).
    pub token_provider: Option<TokenProvider>,
    /// Bound on one connection attempt: transport setup plus HELLO →
    /// WELCOME (default 10 s).
    pub connect_timeout: Duration,
    /// Largest frame accepted from the server, in bytes (default 1 MiB).
    pub max_frame_size: usize,
}

impl ClientConfig {
    /// A configuration with the defaults.
    pub fn new(transport: Transport, url: impl Into<String>) -> Self {
        Self {
            transport,
            url: url.into(),
            server_name: None,
            tls: None,
            token: None,
            reconnect: ReconnectPolicy::default(),
            event_capacity: 1024,
            ack_every: 32,
            heartbeat_override: None,
            token_provider: None,
            connect_timeout: Duration::from_secs(10),
            max_frame_size: 1024 * 1024,
        }
    }

    /// Checks every field and reports all problems at once.
    pub(crate) fn validate(&self) -> Result<Target, ClientError> {
        let mut problems = Vec::new();
        let target = match Target::parse(self.transport, &self.url, self.server_name.as_deref()) {
            Ok(t) => Some(t),
            Err(e) => {
                problems.push(format!("url: {e}"));
                None
            }
        };
        if self.transport.uses_tls() && self.tls.is_none() {
            problems.push(format!("tls: required for {:?}", self.transport));
        }
        if self.event_capacity == 0 {
            problems.push("event_capacity: must be at least 1".into());
        }
        if self.ack_every == 0 {
            problems.push("ack_every: must be at least 1".into());
        }
        if self.reconnect.initial_backoff > self.reconnect.max_backoff {
            problems.push("reconnect.initial_backoff: larger than max_backoff".into());
        }
        if self.connect_timeout.is_zero() {
            problems.push("connect_timeout: must be positive".into());
        }
        if self.max_frame_size < 64 {
            problems.push("max_frame_size: must be at least 64 bytes".into());
        }
        match target {
            Some(t) if problems.is_empty() => Ok(t),
            _ => Err(ClientError::Config(problems.join("; "))),
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("transport", &self.transport)
            .field("url", &self.url)
            .field("server_name", &self.server_name)
            .field("tls", &self.tls)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("reconnect", &self.reconnect)
            .field("event_capacity", &self.event_capacity)
            .field("ack_every", &self.ack_every)
            .field("heartbeat_override", &self.heartbeat_override)
            .field(
                "token_provider",
                &self.token_provider.as_ref().map(|_| ".."),
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("max_frame_size", &self.max_frame_size)
            .finish()
    }
}

/// A parsed URL: where to connect and which name to present to TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Host name or IP address (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// The URL as given (used as the WebSocket request URI).
    pub url: String,
    /// The TLS server name.
    pub server_name: String,
}

impl Target {
    /// Parses `scheme://host[:port][/path]`; the scheme must match
    /// `transport`.
    pub fn parse(
        transport: Transport,
        url: &str,
        server_name: Option<&str>,
    ) -> Result<Self, ClientError> {
        let bad = |why: &str| ClientError::InvalidUrl(format!("{url:?}: {why}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        if !scheme.eq_ignore_ascii_case(transport.scheme()) {
            return Err(bad(&format!(
                "scheme must be {}:// for {transport:?}",
                transport.scheme()
            )));
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            return Err(bad("user info is not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| bad("invalid port"))?,
            None => transport.default_port(),
        };
        let server_name = match server_name {
            Some(name) => name.to_owned(),
            None if host.parse::<IpAddr>().is_ok() => "localhost".to_owned(),
            None => host.to_owned(),
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            url: url.to_owned(),
            server_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_urls() {
        let t = Target::parse(Transport::Ws, "ws://127.0.0.1:8080/ws", None).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 8080));
        assert_eq!(t.server_name, "localhost");
        let t = Target::parse(Transport::Wss, "wss://example.org/ws", None).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("example.org", 443));
        assert_eq!(t.server_name, "example.org");
        let t = Target::parse(Transport::Quic, "quic://[::1]:4433", Some("gw")).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 4433));
        assert_eq!(t.server_name, "gw");
    }

    #[test]
    fn rejects_bad_urls() {
        for (tr, url) in [
            (Transport::Ws, "127.0.0.1:80"),
            (Transport::Ws, "wss://h/ws"),
            (Transport::Quic, "quic://:4433"),
            (Transport::Quic, "quic://h:99999"),
            (Transport::Quic, "quic://[::1:4433"),
        ] {
            assert!(
                matches!(
                    Target::parse(tr, url, None),
                    Err(ClientError::InvalidUrl(_))
                ),
                "{url}"
            );
        }
    }

    #[test]
    fn validation_reports_every_problem() {
        let mut c = ClientConfig::new(Transport::Quic, "ws://h");
        c.ack_every = 0;
        let Err(ClientError::Config(msg)) = c.validate() else {
            panic!("accepted");
        };
        assert!(msg.contains("url:") && msg.contains("tls:") && msg.contains("ack_every"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = ReconnectPolicy::default();
        assert_eq!(p.ceiling(0), Duration::from_millis(100));
        assert_eq!(p.ceiling(3), Duration::from_millis(800));
        assert_eq!(p.ceiling(40), Duration::from_secs(5));
        assert_eq!(p.delay(1, 0.5), Duration::from_millis(100));
        assert_eq!(p.delay(1, 7.0), Duration::from_millis(200));
    }
}
