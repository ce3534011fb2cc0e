//! Transports: where bytes become frames. A session sees frames in and
//! frames out through [`FrameIo`], never a socket, so WebSocket and QUIC
//! share one session layer.

pub mod listener;
pub mod pending;
pub mod quic;
pub mod tls;
pub mod ws;

use std::time::Instant;

use bytes::Bytes;
use thiserror::Error;

/// Why a transport stopped.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Peer: a text WebSocket message; Ferry speaks binary only.
    #[error("text message received; Ferry frames are binary")]
    TextMessage,
    /// Peer: a message larger than the frame limit.
    #[error("message larger than the frame limit")]
    TooLarge,
    /// Peer: bytes that break the transport's framing (WebSocket framing
    /// rules, an invalid QUIC length prefix), so no frame can be read.
    #[error("invalid framing: {0}")]
    Malformed(String),
    /// Peer or network: the connection failed.
    #[error("connection failed: {0}")]
    Failed(String),
}

/// A connection that carries whole frames.
#[allow(async_fn_in_trait)]
pub trait FrameIo {
    /// The next frame's bytes; `Ok(None)` when the peer closed.
    /// Cancel-safe: no frame is lost when the future is dropped.
    async fn recv(&mut self) -> Result<Option<Bytes>, TransportError>;

    /// Writes every frame in `frames` (draining it), then flushes once.
    async fn send(&mut self, frames: &mut Vec<Bytes>) -> Result<(), TransportError>;

    /// Sends `last` if given, then closes; best effort and bounded in time.
    async fn close(&mut self, last: Option<Bytes>);

    /// Until HELLO has arrived: when it must have, one deadline counted
    /// from accept over every phase of the handshake. `None` when the
    /// transport did not set one (then the handshake timeout counts from
    /// now).
    fn handshake_deadline(&self) -> Option<Instant> {
        None
    }

    /// HELLO has arrived: the connection stops being a pending handshake,
    /// which may be shed to make room (see [`pending`]).
    fn handshake_done(&mut self) {}
}
