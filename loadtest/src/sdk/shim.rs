//! A stand-in for `ferry_protocol::client` with the signatures announced
//! for it, used when loadtest is built without the `sdk` feature. Nothing
//! here talks to a server: [`Client::connect`] always fails.
//!
//! Field and variant payloads the announcement does not spell out
//! (`Connected { .. }` and the like) are guesses; the scenarios match them
//! with `..` so that the real ones fit.

#![allow(dead_code)]

use std::path::PathBuf;

use bytes::Bytes;
use protocol::ChannelName;

/// How to reach the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket.
    Ws,
    /// WebSocket over TLS.
    Wss,
    /// QUIC.
    Quic,
}

/// Which server certificates to trust.
#[derive(Debug, Clone)]
pub enum TlsTrust {
    /// Certificates signed by this CA (PEM).
    CaFile(PathBuf),
    /// Any certificate (development only).
    InsecureDev,
}

/// Reconnection policy.
#[derive(Debug, Clone, Default)]
pub struct ReconnectPolicy;

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// TLS trust for wss and quic.
    pub tls: Option<TlsTrust>,
    /// Authentication token.
    pub token: Option<String>,
    /// TLS server name.
    pub server_name: Option<String>,
    /// Reconnection policy.
    pub reconnect: ReconnectPolicy,
    /// Capacity of the event queue.
    pub event_capacity: usize,
    /// Send an ACK after this many messages.
    pub ack_every: u32,
}

impl ClientConfig {
    /// Settings for `url` over `transport`.
    pub fn new(_transport: Transport, _url: impl Into<String>) -> Self {
        Self {
            tls: None,
            token: None,
            server_name: None,
            reconnect: ReconnectPolicy,
            event_capacity: 1024,
            ack_every: 32,
        }
    }
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// This build has no SDK.
    #[error("loadtest was built without the Ferry client SDK (cargo feature `sdk`)")]
    NotBuiltIn,
}

/// A message of a subscribed channel.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Session seq.
    pub seq: u64,
    /// Channel.
    pub channel: ChannelName,
    /// Offset in the channel.
    pub channel_offset: u64,
    /// Payload.
    pub payload: Bytes,
}

/// What the client reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// A message.
    Message(Delivery),
    /// Connected (or reconnected).
    Connected {
        /// Whether the session was resumed.
        resumed: bool,
    },
    /// The transport went away.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// The session could not be resumed.
    SessionLost {
        /// Why.
        reason: String,
    },
    /// An ERROR frame.
    ServerError {
        /// Error code.
        code: u16,
        /// Detail.
        message: String,
    },
    /// A GOAWAY frame.
    GoAway {
        /// Code.
        code: u16,
    },
}

/// The event stream of a client.
#[derive(Debug)]
pub struct Events;

impl Events {
    /// The next event; `None` when the client is gone.
    pub async fn recv(&mut self) -> Option<Event> {
        None
    }
}

/// A Ferry client.
#[derive(Debug)]
pub struct Client;

impl Client {
    /// Connects and waits for WELCOME.
    pub async fn connect(_cfg: ClientConfig) -> Result<(Client, Events), ClientError> {
        Err(ClientError::NotBuiltIn)
    }

    /// Subscribes; returns the channel offset.
    pub async fn subscribe(&self, _channel: &str) -> Result<u64, ClientError> {
        Err(ClientError::NotBuiltIn)
    }

    /// Queues a publish; returns its client_seq.
    pub async fn publish(&self, _channel: &str, _payload: Bytes) -> Result<u64, ClientError> {
        Err(ClientError::NotBuiltIn)
    }

    /// Waits until every publish is acknowledged.
    pub async fn wait_acked(&self) {}

    /// Drops the transport abruptly (the session survives).
    pub fn kill_transport(&self) {}

    /// Closes the session.
    pub async fn close(self) {}
}
