//! QUIC transport (quinn): one bidirectional stream, each frame preceded by
//! its varint length.
//!
//! Owns a client [`quinn::Endpoint`] bound to an ephemeral UDP port of the
//! server's address family, with ALPN `ferry/1`. [`rebind`] moves that
//! endpoint to a new UDP port without reconnecting (a NAT rebinding or a
//! network change, seen from the server as a connection migration).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use quinn::crypto::rustls::{HandshakeData, QuicClientConfig};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tokio::io::AsyncReadExt;

use super::config::Target;
use super::error::ClientError;
use crate::codec::{self, DecodeLimits};
use crate::frame::{Frame, QUIC_ALPN};

/// Read more when less than this much room is left in the read buffer.
const READ_CHUNK: usize = 4 * 1024;

/// The quinn client configuration for a rustls config (ALPN already set).
pub(crate) fn client_config(
    tls: Arc<rustls::ClientConfig>,
) -> Result<quinn::ClientConfig, ClientError> {
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| ClientError::Tls(e.to_string()))?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

/// One QUIC connection with its stream.
pub(crate) struct QuicConn {
    endpoint: Endpoint,
    conn: Connection,
    send: SendStream,
    recv: RecvStream,
    read_buf: BytesMut,
    write_buf: BytesMut,
    limits: DecodeLimits,
}

/// The unspecified address of `addr`'s family, port 0.
fn any_port_like(addr: SocketAddr) -> SocketAddr {
    if addr.is_ipv6() {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    }
}

/// Connects and opens the stream.
pub(crate) async fn connect(
    target: &Target,
    config: quinn::ClientConfig,
    limits: DecodeLimits,
) -> Result<QuicConn, ClientError> {
    let addr = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await?
        .next()
        .ok_or_else(|| {
            ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} resolves to no address", target.host),
            ))
        })?;
    let mut endpoint = Endpoint::client(any_port_like(addr))?;
    endpoint.set_default_client_config(config);
    let conn = endpoint
        .connect(addr, &target.server_name)
        .map_err(|e| ClientError::Handshake(e.to_string()))?
        .await
        .map_err(|e| ClientError::Handshake(format!("QUIC connect: {e}")))?;
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<HandshakeData>().ok())
        .and_then(|d| d.protocol);
    if alpn.as_deref() != Some(QUIC_ALPN) {
        conn.close(0u32.into(), b"wrong ALPN");
        return Err(ClientError::Handshake(format!(
            "the server selected ALPN {alpn:?}, not ferry/1"
        )));
    }
    let (send, recv) = conn
        .open_bi()
        .await
        .map_err(|e| ClientError::Handshake(format!("QUIC stream: {e}")))?;
    Ok(QuicConn {
        endpoint,
        conn,
        send,
        recv,
        read_buf: BytesMut::new(),
        write_buf: BytesMut::new(),
        limits,
    })
}

/// Moves `endpoint` to a fresh UDP socket on a new ephemeral port of the
/// same address family. Must run inside a tokio runtime.
pub(crate) fn rebind(endpoint: &Endpoint) -> Result<(), ClientError> {
    let local = endpoint.local_addr()?;
    let socket = std::net::UdpSocket::bind(any_port_like(local))?;
    socket.set_nonblocking(true)?;
    endpoint.rebind(socket)?;
    Ok(())
}

impl QuicConn {
    /// The endpoint, for [`rebind`].
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The next frame; `None` when the server finished the stream.
    /// Cancel-safe: bytes stay in the read buffer until a whole frame is
    /// there.
    pub async fn recv(&mut self) -> Result<Option<Frame>, ClientError> {
        loop {
            if let Some(frame) = codec::decode_length_prefixed(&mut self.read_buf, &self.limits)
                .map_err(|e| ClientError::Protocol(e.to_string()))?
            {
                return Ok(Some(frame));
            }
            if self.read_buf.capacity() - self.read_buf.len() < READ_CHUNK / 4 {
                self.read_buf.reserve(READ_CHUNK);
            }
            if self.recv.read_buf(&mut self.read_buf).await? == 0 {
                return if self.read_buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ClientError::Protocol(
                        "the stream ended inside a frame".into(),
                    ))
                };
            }
        }
    }

    /// Writes every frame in one stream write.
    pub async fn send(&mut self, frames: &[Frame]) -> Result<(), ClientError> {
        self.write_buf.clear();
        for frame in frames {
            frame.encode_length_prefixed(&mut self.write_buf);
        }
        self.send
            .write_all(&self.write_buf)
            .await
            .map_err(|e| ClientError::Io(e.into()))
    }

    /// Closes the connection and waits briefly for the close to be sent.
    pub async fn close(mut self) {
        let _ = self.send.finish();
        self.conn.close(0u32.into(), b"client closed");
        let _ = tokio::time::timeout(Duration::from_millis(500), self.endpoint.wait_idle()).await;
    }
}
