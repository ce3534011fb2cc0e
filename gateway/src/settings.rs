//! The gateway's runtime settings: one validated snapshot, shared by every
//! worker as an `Arc` and swapped whole on reload.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_protocol::DecodeLimits;
use ferry_protocol::replay_log::ReplayLimits;

use crate::auth::Authenticator;
use crate::auth_setup::AuthSetupError;

/// Everything a worker needs to know, in the units it uses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Worker threads (one per core).
    pub workers: usize,
    /// Whether each worker is pinned to one CPU.
    pub pin_workers: bool,
    /// Plain WebSocket listener.
    pub ws_listen: SocketAddr,
    /// HTTP path of the WebSocket endpoint.
    pub ws_path: String,
    /// WebSocket over TLS listener, when enabled.
    pub wss_listen: Option<SocketAddr>,
    /// QUIC listener, when enabled.
    pub quic_listen: Option<SocketAddr>,
    /// Ops HTTP listener, when enabled.
    pub ops_listen: Option<SocketAddr>,
    /// Key for the ops admin API (`/v1/*`); `None` keeps that API closed.
    pub ops_api_key: Option<crate::ops::ApiKey>,
    /// Ops connections open at once; a new one evicts the longest idle.
    pub ops_max_connections: usize,
    /// Time an ops connection has to send request headers (also the
    /// keep-alive idle timeout).
    pub ops_idle_timeout: Duration,
    /// Where the dev certificate and the control socket live.
    pub data_dir: PathBuf,
    /// How long a graceful drain waits for clients to leave.
    pub drain_timeout: Duration,
    /// Frame and channel-name limits.
    pub decode: DecodeLimits,
    /// Most subscriptions per session.
    pub max_subscriptions: usize,
    /// Most concurrent connections for the whole gateway.
    pub max_connections: usize,
    /// Most sessions (attached and detached) for the whole gateway.
    pub max_sessions: usize,
    /// Bytes of session and channel state one worker keeps before shedding.
    pub memory_budget: usize,
    /// Most connections per worker still in their handshake (resolved:
    /// never 0).
    pub max_pending_handshakes: usize,
    /// Unsent bytes after which a session is a slow consumer.
    pub outbound_queue_bytes: usize,
    /// HELLO must arrive within this of accept, all phases together.
    pub handshake_timeout: Duration,
    /// The client must send something at least this often.
    pub heartbeat_interval: Duration,
    /// Silence after which the connection is closed.
    pub heartbeat_timeout: Duration,
    /// How long a detached session is kept.
    pub resume_window: Duration,
    /// Per-session replay log bounds.
    pub replay: ReplayLimits,
    /// Messages each channel keeps for catch-up.
    pub history_messages: usize,
    /// Bytes each channel keeps for catch-up.
    pub history_bytes: usize,
    /// How long a channel nobody listens to is remembered.
    pub channel_idle_ttl: Duration,
    /// PEM certificate and key; `None` → a development certificate in
    /// `data_dir`.
    pub tls_cert: Option<(PathBuf, PathBuf)>,
    /// QUIC idle timeout.
    pub quic_idle_timeout: Duration,
    /// QUIC keep-alive; `None` saves mobile batteries.
    pub quic_keep_alive: Option<Duration>,
    /// QUIC per-stream receive window.
    pub quic_stream_receive_window: usize,
    /// QUIC per-connection receive window.
    pub quic_receive_window: usize,
    /// QUIC per-connection send window.
    pub quic_send_window: usize,
    /// Unix socket a new process connects to for an upgrade.
    pub control_socket: PathBuf,
    /// Reconnects per second asked of clients during an upgrade.
    pub upgrade_reconnect_rate: u32,
    /// How long an upgrade may take before it is rolled back.
    pub upgrade_deadline: Duration,
    /// tungstenite read buffer per connection.
    pub ws_read_buffer: usize,
    /// tungstenite write buffer target per connection.
    pub ws_write_buffer: usize,
    /// Hard cap of the tungstenite write buffer.
    pub ws_max_write_buffer: usize,
    /// Publishes per second per session (`None`: unlimited).
    pub publish_rate: Option<u32>,
    /// Publishes a session may send in a burst above the rate.
    pub publish_burst: u32,
    /// Log filter (EnvFilter syntax).
    pub log_level: String,
    /// Verifies client tokens; `None` with `auth.mode = "none"` (every
    /// client anonymous). Built once per snapshot, so keys rotate by reload.
    pub auth: Option<Arc<Authenticator>>,
    /// How long before a token expires the gateway sends REFRESH_TOKEN.
    pub refresh_before: Duration,
    /// How long after expiry a connection may still answer with TOKEN.
    pub refresh_grace: Duration,
    /// Failed authentications per minute per source before it gets 408.
    pub failed_attempts_per_minute: u32,
}

impl Default for Settings {
    fn default() -> Self {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            workers,
            pin_workers: false,
            ws_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            ws_path: "/ws".to_owned(),
            wss_listen: None,
            quic_listen: Some(SocketAddr::from(([127, 0, 0, 1], 4433))),
            ops_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9090))),
            ops_api_key: None,
            ops_max_connections: 256,
            ops_idle_timeout: Duration::from_secs(10),
            data_dir: PathBuf::from("ferry-data"),
            drain_timeout: Duration::from_secs(10),
            decode: DecodeLimits::default(),
            max_subscriptions: 64,
            max_connections: 100_000,
            max_sessions: 100_000,
            memory_budget: 1 << 30,
            max_pending_handshakes: crate::transport::pending::per_worker_bound(0, workers),
            outbound_queue_bytes: 256 * 1024,
            handshake_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(25),
            heartbeat_timeout: Duration::from_secs(60),
            resume_window: Duration::from_secs(120),
            replay: ReplayLimits::default(),
            history_messages: 1024,
            history_bytes: 1024 * 1024,
            channel_idle_ttl: Duration::from_secs(60),
            tls_cert: None,
            quic_idle_timeout: Duration::from_secs(60),
            quic_keep_alive: None,
            quic_stream_receive_window: 64 * 1024,
            quic_receive_window: 128 * 1024,
            quic_send_window: 256 * 1024,
            control_socket: PathBuf::from("ferry-data/control.sock"),
            upgrade_reconnect_rate: 5000,
            upgrade_deadline: Duration::from_secs(60),
            ws_read_buffer: 1024,
            ws_write_buffer: 4 * 1024,
            ws_max_write_buffer: 1024 * 1024,
            publish_rate: None,
            publish_burst: 100,
            log_level: "info".to_owned(),
            auth: None,
            refresh_before: Duration::from_secs(60),
            refresh_grace: Duration::from_secs(30),
            failed_attempts_per_minute: 30,
        }
    }
}

impl Settings {
    /// The settings a validated configuration describes. Reads the auth
    /// public key files, so it fails when one cannot be read or holds no
    /// usable key.
    pub fn from_config(c: &ferry_config::Config) -> Result<Self, AuthSetupError> {
        let auth = crate::auth_setup::authenticator(&c.auth)?.map(Arc::new);
        Ok(Self {
            workers: c.server.workers.count(),
            pin_workers: c.server.pin_workers,
            ws_listen: c.listen.ws,
            ws_path: c.listen.ws_path.as_str().to_owned(),
            wss_listen: c.listen.wss,
            quic_listen: c.listen.quic,
            ops_listen: Some(c.listen.ops),
            ops_api_key: c
                .ops
                .api_key
                .as_ref()
                .and_then(|k| crate::ops::ApiKey::new(k.expose())),
            ops_max_connections: c.ops.max_connections,
            ops_idle_timeout: c.ops.idle_timeout,
            data_dir: c.server.data_dir.clone(),
            drain_timeout: c.server.drain_timeout,
            decode: DecodeLimits {
                max_frame_size: c.limits.max_frame_size.as_usize(),
                max_channel_len: c.limits.max_channel_len,
            },
            max_subscriptions: c.limits.max_subscriptions,
            max_connections: c.limits.max_connections,
            max_sessions: c.limits.max_sessions,
            memory_budget: c.limits.memory_budget.as_usize(),
            max_pending_handshakes: crate::transport::pending::per_worker_bound(
                c.limits.max_pending_handshakes,
                c.server.workers.count(),
            ),
            outbound_queue_bytes: c.limits.outbound_queue.as_usize(),
            handshake_timeout: c.session.handshake_timeout,
            heartbeat_interval: c.session.heartbeat_interval,
            heartbeat_timeout: c.session.heartbeat_timeout,
            resume_window: c.session.resume_window,
            replay: ReplayLimits {
                max_messages: c.session.replay_max_messages,
                max_bytes: c.session.replay_max_bytes.as_usize(),
            },
            history_messages: c.channels.history_messages,
            history_bytes: c.channels.history_bytes.as_usize(),
            channel_idle_ttl: c.channels.idle_ttl,
            tls_cert: match &c.tls {
                ferry_config::Tls::SelfSigned => None,
                ferry_config::Tls::Files { cert, key } => Some((cert.clone(), key.clone())),
            },
            quic_idle_timeout: c.quic.idle_timeout,
            quic_keep_alive: c.quic.keep_alive_interval,
            quic_stream_receive_window: c.quic.stream_receive_window.as_usize(),
            quic_receive_window: c.quic.receive_window.as_usize(),
            quic_send_window: c.quic.send_window.as_usize(),
            control_socket: c.listen.control_socket.clone(),
            upgrade_reconnect_rate: c.upgrade.reconnect_rate.get(),
            upgrade_deadline: c.upgrade.drain_deadline,
            ws_read_buffer: c.websocket.read_buffer.as_usize(),
            ws_write_buffer: c.websocket.write_buffer.as_usize(),
            ws_max_write_buffer: c.websocket.max_write_buffer.as_usize(),
            publish_rate: c.limits.publish_rate.map(|r| r.get()),
            publish_burst: c.limits.publish_burst.get(),
            log_level: c.log.level.as_str().to_owned(),
            auth,
            refresh_before: c.auth.refresh_before,
            refresh_grace: c.auth.refresh_grace,
            failed_attempts_per_minute: c.auth.failed_attempts_per_minute.get(),
        })
    }

    /// These settings with the fields that cannot change in a running
    /// process (listeners, workers, data directory) taken from `running`.
    pub fn keeping_fixed_fields_of(mut self, running: &Settings) -> Self {
        self.workers = running.workers;
        self.pin_workers = running.pin_workers;
        self.ws_listen = running.ws_listen;
        self.ws_path = running.ws_path.clone();
        self.wss_listen = running.wss_listen;
        self.quic_listen = running.quic_listen;
        self.ops_listen = running.ops_listen;
        self.data_dir = running.data_dir.clone();
        self.control_socket = running.control_socket.clone();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_config_defaults_match_the_settings_defaults_where_they_overlap() {
        let from_config = Settings::from_config(&ferry_config::Config::default()).unwrap();
        let d = Settings::default();
        assert_eq!(from_config.ws_listen, d.ws_listen);
        assert_eq!(from_config.quic_listen, d.quic_listen);
        assert_eq!(from_config.decode, d.decode);
        assert_eq!(from_config.replay, d.replay);
        assert_eq!(from_config.resume_window, d.resume_window);
        assert_eq!(from_config.outbound_queue_bytes, d.outbound_queue_bytes);
        assert_eq!(from_config.ops_max_connections, d.ops_max_connections);
        assert_eq!(from_config.max_pending_handshakes, d.max_pending_handshakes);
        assert_eq!(from_config.ops_idle_timeout, d.ops_idle_timeout);
        assert!(from_config.auth.is_none() && d.auth.is_none());
        assert_eq!(from_config.refresh_before, d.refresh_before);
        assert_eq!(from_config.refresh_grace, d.refresh_grace);
        assert_eq!(
            from_config.failed_attempts_per_minute,
            d.failed_attempts_per_minute
        );
    }

    #[test]
    fn fixed_fields_survive_a_reload() {
        let running = Settings::default();
        let next = Settings {
            ws_listen: "127.0.0.1:1".parse().unwrap(),
            max_subscriptions: 3,
            ..Settings::default()
        };
        let applied = next.keeping_fixed_fields_of(&running);
        assert_eq!(applied.ws_listen, running.ws_listen);
        assert_eq!(applied.max_subscriptions, 3);
    }
}
