//! WebSocket transport (tokio-tungstenite): one binary message per frame.
//!
//! Owns the TCP (and, for WSS, TLS) stream. Asks for the `ferry.v1`
//! subprotocol and fails if the server does not select it. Reads go
//! through a small buffer; writes are fed in a batch and flushed once.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::config::Target;
use super::error::ClientError;
use crate::codec::{self, DecodeLimits};
use crate::frame::{Frame, WS_SUBPROTOCOL};

/// Read buffer of the WebSocket: small, since a client holds one
/// connection and frames are small.
const READ_BUFFER: usize = 4 * 1024;
/// Fed frames are written out once this much is buffered, or on flush.
const WRITE_BUFFER: usize = 16 * 1024;

/// One WebSocket connection speaking the Ferry protocol.
pub(crate) struct WsConn<S> {
    ws: WebSocketStream<S>,
    limits: DecodeLimits,
}

/// Connects over plain TCP.
pub(crate) async fn connect(
    target: &Target,
    limits: DecodeLimits,
) -> Result<WsConn<TcpStream>, ClientError> {
    let tcp = tcp_connect(target).await?;
    upgrade(tcp, target, limits).await
}

/// Connects over TLS with `tls` (roots from [`super::tls`]).
pub(crate) async fn connect_tls(
    target: &Target,
    tls: Arc<rustls::ClientConfig>,
    limits: DecodeLimits,
) -> Result<WsConn<TlsStream<TcpStream>>, ClientError> {
    let name = ServerName::try_from(target.server_name.clone())
        .map_err(|e| ClientError::Tls(format!("server name {:?}: {e}", target.server_name)))?;
    let tcp = tcp_connect(target).await?;
    let stream = TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    upgrade(stream, target, limits).await
}

/// Tries each resolved address in turn.
async fn tcp_connect(target: &Target) -> Result<TcpStream, ClientError> {
    let mut last = None;
    for addr in tokio::net::lookup_host((target.host.as_str(), target.port)).await? {
        match TcpStream::connect(addr).await {
            Ok(tcp) => {
                tcp.set_nodelay(true)?;
                return Ok(tcp);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(ClientError::Io(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} resolves to no address", target.host),
        )
    })))
}

async fn upgrade<S>(
    stream: S,
    target: &Target,
    limits: DecodeLimits,
) -> Result<WsConn<S>, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = target
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| ClientError::InvalidUrl(e.to_string()))?;
    request.headers_mut().insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(WS_SUBPROTOCOL),
    );
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(limits.max_frame_size))
        .max_frame_size(Some(limits.max_frame_size));
    let (ws, response) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .map_err(handshake_error)?;
    let selected = response
        .headers()
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok());
    if selected != Some(WS_SUBPROTOCOL) {
        return Err(ClientError::Handshake(format!(
            "the server selected subprotocol {selected:?}, not {WS_SUBPROTOCOL:?}"
        )));
    }
    Ok(WsConn { ws, limits })
}

fn handshake_error(e: WsError) -> ClientError {
    match e {
        WsError::Io(e) => ClientError::Io(e),
        WsError::Http(response) => {
            ClientError::Handshake(format!("HTTP upgrade refused: {}", response.status()))
        }
        other => ClientError::Handshake(other.to_string()),
    }
}

fn stream_error(e: WsError) -> ClientError {
    match e {
        WsError::Io(e) => ClientError::Io(e),
        WsError::ConnectionClosed | WsError::AlreadyClosed => ClientError::Closed,
        other => ClientError::Protocol(other.to_string()),
    }
}

impl<S> WsConn<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// The next frame; `None` when the server closed the connection.
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<Frame>, ClientError> {
        loop {
            match self.ws.next().await {
                None | Some(Err(WsError::ConnectionClosed)) => return Ok(None),
                Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Binary(bytes))) => {
                    return codec::decode(bytes, &self.limits)
                        .map(Some)
                        .map_err(|e| ClientError::Protocol(e.to_string()));
                }
                Some(Ok(Message::Text(_))) => {
                    return Err(ClientError::Protocol("text WebSocket message".into()));
                }
                // Control frames are answered by tungstenite.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(e)) => return Err(stream_error(e)),
            }
        }
    }

    /// Feeds every frame, then flushes once.
    pub async fn send(&mut self, frames: &[Frame]) -> Result<(), ClientError> {
        for frame in frames {
            self.ws
                .feed(Message::Binary(frame.to_bytes()))
                .await
                .map_err(stream_error)?;
        }
        self.ws.flush().await.map_err(stream_error)
    }

    /// Sends a close frame (best effort).
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
