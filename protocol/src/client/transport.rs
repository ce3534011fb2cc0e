//! One connection of any transport, behind one small interface: connect,
//! receive a frame, send a batch of frames, close. The driver sees only
//! this; [`super::ws`] and [`super::quic`] hold the I/O.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::config::{ClientConfig, Target, Transport};
use super::error::ClientError;
use super::quic::{self, QuicConn};
use super::tls;
use super::ws::{self, WsConn};
use crate::codec::DecodeLimits;
use crate::frame::{Frame, QUIC_ALPN};

/// Opens connections to one target; built once per client (the CA file
/// is read here).
#[derive(Clone)]
pub(crate) struct Connector {
    target: Target,
    limits: DecodeLimits,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Ws,
    Wss(Arc<rustls::ClientConfig>),
    Quic(quinn::ClientConfig),
}

impl Connector {
    /// Builds the TLS configuration the transport needs.
    pub fn new(config: &ClientConfig, target: Target) -> Result<Self, ClientError> {
        let trust = || {
            config.tls.as_ref().ok_or_else(|| {
                ClientError::Config(format!("tls: required for {:?}", config.transport))
            })
        };
        let kind = match config.transport {
            Transport::Ws => Kind::Ws,
            Transport::Wss => Kind::Wss(tls::client_config(trust()?, &[b"http/1.1"])?),
            Transport::Quic => Kind::Quic(quic::client_config(tls::client_config(
                trust()?,
                &[QUIC_ALPN],
            )?)?),
        };
        Ok(Self {
            target,
            limits: DecodeLimits {
                max_frame_size: config.max_frame_size,
                ..DecodeLimits::default()
            },
            kind,
        })
    }

    /// Sets up the transport (TCP/TLS/WebSocket upgrade, or QUIC).
    pub async fn connect(&self) -> Result<Conn, ClientError> {
        Ok(match &self.kind {
            Kind::Ws => Conn::Ws(ws::connect(&self.target, self.limits).await?),
            Kind::Wss(tls) => Conn::Wss(Box::new(
                ws::connect_tls(&self.target, tls.clone(), self.limits).await?,
            )),
            Kind::Quic(config) => {
                Conn::Quic(quic::connect(&self.target, config.clone(), self.limits).await?)
            }
        })
    }
}

/// An established transport.
pub(crate) enum Conn {
    Ws(WsConn<TcpStream>),
    /// Boxed: the TLS state is large.
    Wss(Box<WsConn<TlsStream<TcpStream>>>),
    Quic(QuicConn),
}

impl Conn {
    /// The next frame; `None` when the server closed. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<Frame>, ClientError> {
        match self {
            Conn::Ws(c) => c.recv().await,
            Conn::Wss(c) => c.recv().await,
            Conn::Quic(c) => c.recv().await,
        }
    }

    /// Writes a batch of frames and flushes once.
    pub async fn send(&mut self, frames: &[Frame]) -> Result<(), ClientError> {
        match self {
            Conn::Ws(c) => c.send(frames).await,
            Conn::Wss(c) => c.send(frames).await,
            Conn::Quic(c) => c.send(frames).await,
        }
    }

    /// Closes gracefully (best effort).
    pub async fn close(self) {
        match self {
            Conn::Ws(c) => c.close().await,
            Conn::Wss(c) => (*c).close().await,
            Conn::Quic(c) => c.close().await,
        }
    }

    /// The QUIC endpoint, for rebinding.
    pub fn quic_endpoint(&self) -> Option<&quinn::Endpoint> {
        match self {
            Conn::Quic(c) => Some(c.endpoint()),
            Conn::Ws(_) | Conn::Wss(_) => None,
        }
    }
}
