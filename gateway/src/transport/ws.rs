//! WebSocket transport (tokio-tungstenite): the HTTP upgrade with the
//! `ferry.v1` subprotocol, and [`FrameIo`] over binary messages.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_protocol::frame::WS_SUBPROTOCOL;
use ferry_protocol::{ErrorCode, Frame};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::pending::Pending;
use super::{FrameIo, TransportError};
use crate::runtime::worker::Worker;
use crate::session::driver;

/// A WebSocket carrying Ferry frames.
pub struct WsIo<S> {
    ws: WebSocketStream<S>,
    /// The client sent a Close frame: tungstenite has queued the echo, and
    /// nothing else may be sent.
    peer_closed: bool,
    /// Until HELLO: the handshake's place among the worker's pending ones.
    pending: Option<Pending>,
}

/// How long closing may take: the last frame, the Close frame, and the
/// client's answer to it.
const CLOSE_BUDGET: Duration = Duration::from_secs(1);

impl<S> WsIo<S> {
    fn new(ws: WebSocketStream<S>, pending: Pending) -> Self {
        Self {
            ws,
            peer_closed: false,
            pending: Some(pending),
        }
    }
}

/// Maps a tungstenite read error: the client's fault (with the code
/// PROTOCOL.md gives it) or a lost connection.
fn read_error(e: WsError) -> TransportError {
    match e {
        WsError::Capacity(_) => TransportError::TooLarge,
        // A text message whose bytes are not even UTF-8 is still a text
        // message.
        WsError::Utf8(_) => TransportError::TextMessage,
        // The peer dropped the TCP connection: gone, not misbehaving.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            TransportError::Failed(e.to_string())
        }
        WsError::Protocol(p) => TransportError::Malformed(p.to_string()),
        other => TransportError::Failed(other.to_string()),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> FrameIo for WsIo<S> {
    async fn recv(&mut self) -> Result<Option<Bytes>, TransportError> {
        loop {
            return match self.ws.next().await {
                None => Ok(None),
                Some(Ok(Message::Close(_))) => {
                    // Echo the close at once (RFC 6455 §5.5.1): tungstenite
                    // has queued the answer with the client's code, and
                    // only a flush sends it. Without it the client sees
                    // the TCP connection end with no Close (1006).
                    self.peer_closed = true;
                    let _ = tokio::time::timeout(CLOSE_BUDGET, self.ws.flush()).await;
                    Ok(None)
                }
                Some(Ok(Message::Binary(bytes))) => Ok(Some(bytes)),
                Some(Ok(Message::Text(_))) => Err(TransportError::TextMessage),
                // tungstenite answers pings itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Err(e)) => Err(read_error(e)),
            };
        }
    }

    async fn send(&mut self, frames: &mut Vec<Bytes>) -> Result<(), TransportError> {
        for frame in frames.drain(..) {
            self.ws
                .feed(Message::Binary(frame))
                .await
                .map_err(|e| TransportError::Failed(e.to_string()))?;
        }
        self.ws
            .flush()
            .await
            .map_err(|e| TransportError::Failed(e.to_string()))
    }

    async fn close(&mut self, last: Option<Bytes>) {
        let close = async {
            if self.peer_closed {
                // Only the echo is left to send (tungstenite refuses
                // anything else after a Close); SinkExt::close flushes it.
                let _ = SinkExt::close(&mut self.ws).await;
                return;
            }
            if let Some(frame) = last {
                let _ = self.ws.feed(Message::Binary(frame)).await;
            }
            let closed = self
                .ws
                .close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                }))
                .await;
            if closed.is_err() {
                return;
            }
            // Wait for the client's Close before dropping the socket (RFC
            // 6455 §7.1.1). Reading also takes in what the client sent
            // meanwhile: a socket closed with unread bytes sends a reset,
            // which may destroy the ERROR still in flight to the client.
            while let Some(Ok(_)) = self.ws.next().await {}
        };
        let _ = tokio::time::timeout(CLOSE_BUDGET, close).await;
    }

    fn handshake_deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(Pending::deadline)
    }

    fn handshake_done(&mut self) {
        self.pending = None;
    }
}

/// The tungstenite settings for one connection: small buffers while idle,
/// and the frame limit as the message limit.
fn ws_config(worker: &Worker) -> WebSocketConfig {
    let s = worker.settings();
    WebSocketConfig::default()
        .read_buffer_size(s.ws_read_buffer)
        .write_buffer_size(s.ws_write_buffer)
        .max_write_buffer_size(s.ws_max_write_buffer.max(s.ws_write_buffer + 1))
        .max_message_size(Some(s.decode.max_frame_size))
        .max_frame_size(Some(s.decode.max_frame_size))
}

/// Whether the client's `Sec-WebSocket-Protocol` offers `ferry.v1`.
fn offers_ferry(request: &Request) -> bool {
    request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == WS_SUBPROTOCOL)
}

/// Answers an HTTP upgrade request for the endpoint at `path`: 404 for
/// another path, 400 when the client offers only other subprotocols; else
/// the response, and whether it selects `ferry.v1`. Pure, so that it can be
/// fuzzed.
// tungstenite fixes the error type to a full HTTP response.
#[allow(clippy::result_large_err)]
pub fn answer_upgrade(
    request: &Request,
    mut response: Response,
    path: &str,
) -> Result<(Response, bool), ErrorResponse> {
    if request.uri().path() != path {
        let mut not_found =
            ErrorResponse::new(Some(format!("no WebSocket endpoint here; use {path}")));
        *not_found.status_mut() = StatusCode::NOT_FOUND;
        return Err(not_found);
    }
    let ferry = offers_ferry(request);
    if !ferry
        && request
            .headers()
            .contains_key(header::SEC_WEBSOCKET_PROTOCOL)
    {
        // The client offered only other subprotocols: a WebSocket
        // client must fail a handshake that selects none of its offers,
        // so the refusal has to be HTTP. The body carries the code.
        let code = ErrorCode::WrongSubprotocol;
        let mut refused = ErrorResponse::new(Some(format!(
            "{} {}: offer the subprotocol {WS_SUBPROTOCOL}",
            code.as_u16(),
            code.name()
        )));
        *refused.status_mut() = StatusCode::BAD_REQUEST;
        return Err(refused);
    }
    if ferry {
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(WS_SUBPROTOCOL),
        );
    }
    Ok((response, ferry))
}

/// Serves one accepted stream (plain TCP or TLS) until it closes; the
/// handshake, up to HELLO, must be done by `pending`'s deadline.
pub async fn serve<S>(
    worker: Rc<Worker>,
    stream: S,
    transport: &'static str,
    peer: SocketAddr,
    pending: Pending,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let started = pending.accepted();
    let settings = worker.settings();
    let path = settings.ws_path.clone();
    let subprotocol_ok = Rc::new(Cell::new(false));
    let flag = subprotocol_ok.clone();
    // tungstenite fixes the callback's error type to a full HTTP response.
    #[allow(clippy::result_large_err)]
    let callback = move |request: &Request, response: Response| {
        let (response, ferry) = answer_upgrade(request, response, &path)?;
        flag.set(ferry);
        Ok(response)
    };
    let upgrade =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config(&worker)));
    let ws = match tokio::time::timeout_at(pending.deadline().into(), upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!("websocket upgrade failed: {e}");
            if matches!(&e, WsError::Http(r) if r.status() == StatusCode::BAD_REQUEST) {
                crate::metrics::count_error(ErrorCode::WrongSubprotocol);
            }
            crate::metrics::count_handshake(transport, "upgrade_failed");
            return;
        }
        Err(_) => {
            crate::metrics::count_handshake(transport, "upgrade_timeout");
            return;
        }
    };
    let mut io = WsIo::new(ws, pending);
    if !subprotocol_ok.get() {
        let code = ErrorCode::WrongSubprotocol;
        crate::metrics::count_error(code);
        crate::metrics::count_handshake(transport, "wrong_subprotocol");
        let frame = Frame::error(code, 0, format!("request the subprotocol {WS_SUBPROTOCOL}"));
        io.close(Some(frame.to_bytes())).await;
        return;
    }
    driver::run(worker, io, transport, started, peer).await;
}
