//! A bare WebSocket peer that speaks frames by hand: for the tests of bad
//! input, where the client SDK would refuse to misbehave.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use ferry_protocol::{DecodeLimits, Frame, Hello};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A raw WebSocket connection to the gateway, over plain TCP unless `S`
/// says otherwise (see [`RawClient::connect_wss`]).
pub struct RawClient<S = MaybeTlsStream<TcpStream>> {
    ws: WebSocketStream<S>,
}

/// How the server answered a client's Close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseAnswer {
    /// The server echoed a Close frame with this code (RFC 6455 §5.5.1).
    Echoed(u16),
    /// The server echoed a Close frame without a status code.
    EchoedEmpty,
    /// The connection ended without a Close frame: what a browser reports
    /// as 1006 (abnormal closure).
    Abnormal(String),
}

impl RawClient<tokio_rustls::client::TlsStream<TcpStream>> {
    /// Connects over TLS to `url` (`wss://localhost:PORT/ws`), trusting
    /// the certificate in `ca`, offering `ferry.v1`.
    pub async fn connect_wss(url: &str, ca: &std::path::Path) -> anyhow::Result<Self> {
        let request = url.into_client_request()?;
        let port = request.uri().port_u16().context("the URL has no port")?;
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .context("tcp connect")?;
        let tls = crate::raw_quic::tls_connector(ca, b"http/1.1")?
            .connect(rustls::pki_types::ServerName::try_from("localhost")?, tcp)
            .await
            .context("TLS handshake")?;
        let mut request = request;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("ferry.v1"),
        );
        let (ws, _) = tokio_tungstenite::client_async(request, tls)
            .await
            .context("websocket upgrade")?;
        Ok(Self { ws })
    }
}

impl RawClient {
    /// Resets the connection (TCP RST), like a phone whose network changed
    /// under it.
    pub fn reset(self) {
        if let MaybeTlsStream::Plain(tcp) = self.ws.get_ref() {
            // Zero linger: close sends RST at once and never blocks.
            let _ = tcp.set_zero_linger();
        }
        drop(self);
    }

    /// Connects, offering `subprotocol` (none if `None`).
    pub async fn connect(url: &str, subprotocol: Option<&str>) -> anyhow::Result<Self> {
        let mut request = url.into_client_request()?;
        if let Some(p) = subprotocol {
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p)?);
        }
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .context("websocket connect")?;
        Ok(Self { ws })
    }

    /// Attempts a WebSocket upgrade that the gateway must refuse at the HTTP
    /// level; returns the status code and the body.
    pub async fn refused_upgrade(url: &str, subprotocol: &str) -> anyhow::Result<(u16, String)> {
        let mut request = url.into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(subprotocol)?,
        );
        match tokio_tungstenite::connect_async(request).await {
            Ok(_) => bail!("the upgrade was accepted"),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Ok((response.status().as_u16(), body))
            }
            Err(e) => bail!("unexpected failure: {e}"),
        }
    }

    /// Connects with `ferry.v1` and completes HELLO/WELCOME.
    pub async fn handshake(url: &str) -> anyhow::Result<(Self, ferry_protocol::Welcome)> {
        let mut c = Self::connect(url, Some("ferry.v1")).await?;
        c.send(&Frame::Hello(Hello {
            version: 1,
            token: String::new(),
            resume: None,
        }))
        .await?;
        match c.recv().await? {
            Some(Frame::Welcome(w)) => Ok((c, w)),
            other => bail!("expected WELCOME, got {other:?}"),
        }
    }

    /// Connects with `ferry.v1` and resumes a session.
    pub async fn resume(
        url: &str,
        welcome: &ferry_protocol::Welcome,
        last_received_seq: u64,
    ) -> anyhow::Result<(Self, ferry_protocol::Welcome)> {
        let mut c = Self::connect(url, Some("ferry.v1")).await?;
        c.send(&Frame::Hello(Hello {
            version: 1,
            token: String::new(),
            resume: Some(ferry_protocol::ResumeRequest {
                session_id: welcome.session_id,
                secret: welcome.resume_secret,
                last_received_seq,
            }),
        }))
        .await?;
        match c.recv().await? {
            Some(Frame::Welcome(w)) => Ok((c, w)),
            other => bail!("expected WELCOME, got {other:?}"),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawClient<S> {
    /// Drops the connection without a close frame, like a dead network.
    pub fn kill(self) {
        drop(self);
    }

    /// Sends a frame.
    pub async fn send(&mut self, frame: &Frame) -> anyhow::Result<()> {
        self.send_bytes(frame.to_bytes()).await
    }

    /// Sends raw bytes as one binary message.
    pub async fn send_bytes(&mut self, bytes: Bytes) -> anyhow::Result<()> {
        self.ws.send(Message::Binary(bytes)).await?;
        Ok(())
    }

    /// Sends a text message (not allowed by the protocol).
    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.ws.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// The next frame; `None` when the connection closed. Waits at most
    /// 10 s.
    pub async fn recv(&mut self) -> anyhow::Result<Option<Frame>> {
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .context("no frame within 10 s")?;
            return match next {
                None | Some(Ok(Message::Close(_))) | Some(Err(_)) => Ok(None),
                Some(Ok(Message::Binary(b))) => {
                    let limits = DecodeLimits {
                        max_frame_size: 16 << 20,
                        ..DecodeLimits::default()
                    };
                    Ok(Some(ferry_protocol::codec::decode(b, &limits)?))
                }
                Some(Ok(_)) => continue,
            };
        }
    }

    /// Reads frames until an ERROR arrives; returns its code. Fails if the
    /// connection closes first.
    pub async fn expect_error(&mut self) -> anyhow::Result<u16> {
        loop {
            match self.recv().await? {
                Some(Frame::Error { code, .. }) => return Ok(code),
                Some(_) => continue,
                None => bail!("connection closed without an ERROR frame"),
            }
        }
    }

    /// Whether the server closes the connection within 5 s.
    pub async fn is_closed_by_server(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Starts the WebSocket close handshake with `code`, then reads (at
    /// most 5 s) until the server answers it.
    pub async fn close_with(&mut self, code: u16) -> CloseAnswer {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: "client leaves".into(),
        };
        if let Err(e) = self.ws.close(Some(frame)).await {
            return CloseAnswer::Abnormal(format!("sending the close failed: {e}"));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return CloseAnswer::Abnormal("no answer within 5 s".into()),
                Ok(Some(Ok(Message::Close(Some(frame))))) => {
                    return CloseAnswer::Echoed(u16::from(frame.code));
                }
                Ok(Some(Ok(Message::Close(None)))) => return CloseAnswer::EchoedEmpty,
                // Frames the server sent before it saw the close.
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => return CloseAnswer::Abnormal(e.to_string()),
                Ok(None) => return CloseAnswer::Abnormal("closed without a Close frame".into()),
            }
        }
    }
}
