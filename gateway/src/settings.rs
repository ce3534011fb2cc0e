//! The gateway's runtime settings: one validated snapshot, shared by every
//! worker as an `Arc` and swapped whole on reload.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ferry_protocol::DecodeLimits;
use ferry_protocol::replay_log::ReplayLimits;

/// Everything a worker needs to know, in the units it uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Worker threads (one per core).
    pub workers: usize,
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
    /// Unsent bytes after which a session is a slow consumer.
    pub outbound_queue_bytes: usize,
    /// HELLO must arrive within this.
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
    /// tungstenite read buffer per connection.
    pub ws_read_buffer: usize,
    /// tungstenite write buffer target per connection.
    pub ws_write_buffer: usize,
    /// Hard cap of the tungstenite write buffer.
    pub ws_max_write_buffer: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ws_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            ws_path: "/ws".to_owned(),
            wss_listen: None,
            quic_listen: Some(SocketAddr::from(([127, 0, 0, 1], 4433))),
            ops_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9090))),
            ops_api_key: None,
            data_dir: PathBuf::from("ferry-data"),
            drain_timeout: Duration::from_secs(10),
            decode: DecodeLimits::default(),
            max_subscriptions: 64,
            max_connections: 100_000,
            outbound_queue_bytes: 256 * 1024,
            handshake_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(25),
            heartbeat_timeout: Duration::from_secs(60),
            resume_window: Duration::from_secs(120),
            replay: ReplayLimits::default(),
            history_messages: 1024,
            history_bytes: 1024 * 1024,
            ws_read_buffer: 4 * 1024,
            ws_write_buffer: 4 * 1024,
            ws_max_write_buffer: 1024 * 1024,
        }
    }
}
