//! The client SDK's error type. Each variant says who is at fault.

use thiserror::Error;

use crate::error::ChannelError;

/// An operation of the client SDK failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Network: a socket operation failed (connect refused, reset, ...).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// Config or peer: TLS could not be set up (bad CA file) or the TLS
    /// handshake failed (untrusted certificate, wrong name).
    #[error("tls: {0}")]
    Tls(String),
    /// Peer: the transport handshake failed (HTTP upgrade refused, the
    /// server did not select `ferry.v1` / `ferry/1`, QUIC connect failed).
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// Server: it answered with an ERROR frame (a refused subscription, a
    /// refused token, an unsupported version).
    #[error("rejected by the server with code {code}: {message}")]
    Rejected {
        /// The error code (see [`ErrorCode`](crate::ErrorCode)).
        code: u16,
        /// The server's detail.
        message: String,
    },
    /// Us: the client was closed, gave up reconnecting, or stopped after a
    /// fatal error.
    #[error("the client is closed")]
    Closed,
    /// Caller: the channel name breaks the naming rules.
    #[error("invalid channel: {0}")]
    InvalidChannel(#[from] ChannelError),
    /// Config: the URL cannot be parsed or does not match the transport.
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    /// Config: one or more fields are invalid (all are listed).
    #[error("invalid client config: {0}")]
    Config(String),
    /// Server: it broke the protocol (undecodable frame, sequence gap,
    /// unexpected frame).
    #[error("protocol violation by the server: {0}")]
    Protocol(String),
    /// Network or server: the connection attempt did not complete in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// Caller: the payload does not fit in the server's largest frame.
    #[error("publish of {len} bytes exceeds the server's frame limit of {max} bytes")]
    PayloadTooLarge {
        /// The encoded PUBLISH frame size.
        len: usize,
        /// The server's limit (WELCOME.max_frame_size).
        max: usize,
    },
    /// Server: the session was replaced by a new one before the awaited
    /// publishes were acknowledged; see [`Event::SessionLost`](super::Event).
    #[error("the session was lost; unacknowledged publishes are uncertain")]
    SessionLost,
    /// Caller: the operation does not apply in the current state or
    /// transport (e.g. `rebind` on WebSocket, or while disconnected).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}
