//! WebSocket written byte by byte over a bare stream (TCP or TLS): for
//! what tungstenite would refuse to send — invalid opcodes, unmasked or
//! invalid UTF-8 frames — and for clients that dribble their handshake.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Buf, Bytes, BytesMut};
use ferry_protocol::codec::DecodeLimits;
use ferry_protocol::{Frame, Hello};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// WebSocket opcodes (RFC 6455 §5.2).
pub mod opcode {
    /// A text data frame.
    pub const TEXT: u8 = 0x1;
    /// A binary data frame.
    pub const BINARY: u8 = 0x2;
    /// A reserved, undefined data opcode.
    pub const RESERVED: u8 = 0x3;
    /// Close.
    pub const CLOSE: u8 = 0x8;
}

/// The HTTP upgrade request for `path` on `host`, offering `ferry.v1`.
pub fn upgrade_request(host: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: ferry.v1\r\n\r\n"
    )
    .into_bytes()
}

/// A masked client frame with FIN set.
fn frame_bytes(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(opcode, payload, true)
}

/// One client frame: FIN set, masked with a fixed key unless `masked` is
/// false (which a server must refuse).
pub fn frame(opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A binary frame carrying HELLO (version 1, no token, no resume).
pub fn hello_frame() -> Vec<u8> {
    let hello = Frame::Hello(Hello {
        version: 1,
        token: String::new(),
        resume: None,
    });
    frame(opcode::BINARY, &hello.to_bytes(), true)
}

/// What the server sent, frame by frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFrame {
    /// A binary message: a Ferry frame.
    Ferry(Frame),
    /// A Close frame with its status code, if any.
    Close(Option<u16>),
    /// Any other frame, by opcode.
    Other(u8),
}

/// A WebSocket client over a bare stream.
pub struct RawWs<S> {
    stream: S,
    buffer: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawWs<S> {
    /// Wraps a connected stream; nothing is sent yet.
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buffer: BytesMut::new(),
        }
    }

    /// Writes `bytes` at once.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Writes `bytes` one at a time, `pause` apart, until written or the
    /// server closes; returns how many bytes were written.
    pub async fn dribble(&mut self, bytes: &[u8], pause: Duration) -> usize {
        for (i, byte) in bytes.iter().enumerate() {
            if self.write(std::slice::from_ref(byte)).await.is_err() {
                return i;
            }
            tokio::time::sleep(pause).await;
        }
        bytes.len()
    }

    /// Sends the upgrade request and reads the `101` answer.
    pub async fn upgrade(&mut self, host: &str, path: &str) -> anyhow::Result<()> {
        self.write(&upgrade_request(host, path)).await?;
        self.read_upgrade_answer().await
    }

    /// Reads the HTTP answer to an upgrade request; fails unless it is 101.
    pub async fn read_upgrade_answer(&mut self) -> anyhow::Result<()> {
        let end = loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
        self.buffer.advance(end + 4);
        if !head.starts_with("HTTP/1.1 101") {
            bail!("upgrade refused: {head}");
        }
        Ok(())
    }

    /// The next frame from the server; `None` when the stream ended. Waits
    /// at most 10 s.
    pub async fn recv(&mut self) -> anyhow::Result<Option<ServerFrame>> {
        loop {
            if let Some(frame) = self.parse()? {
                return Ok(Some(frame));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Reads frames until an ERROR arrives; returns its code. Fails if the
    /// stream ends first.
    pub async fn expect_error(&mut self) -> anyhow::Result<u16> {
        loop {
            match self.recv().await? {
                Some(ServerFrame::Ferry(Frame::Error { code, .. })) => return Ok(code),
                Some(_) => continue,
                None => bail!("closed without an ERROR frame"),
            }
        }
    }

    /// Waits at most `limit` for the server to send a frame or close:
    /// `Some(Some(frame))`, `Some(None)` at the end of the stream, `None`
    /// if nothing came.
    pub async fn next_within(&mut self, limit: Duration) -> Option<Option<ServerFrame>> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut scratch = [0u8; 4096];
        loop {
            if let Ok(Some(frame)) = self.parse() {
                return Some(Some(frame));
            }
            match tokio::time::timeout_at(deadline, self.stream.read(&mut scratch)).await {
                Err(_) => return None,
                Ok(Ok(0) | Err(_)) => return Some(None),
                Ok(Ok(n)) => self.buffer.extend_from_slice(&scratch[..n]),
            }
        }
    }

    /// Reads until the stream ends (at most `limit`): `true` if it ended.
    /// Answers a Close frame with its echo, as a real client does (the
    /// server waits for it before closing TCP).
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        let mut scratch = [0u8; 4096];
        loop {
            // Frames that do not parse (a partial upgrade answer, say) are
            // skipped: only the end of the stream matters here.
            while let Ok(Some(frame)) = self.parse() {
                if let ServerFrame::Close(code) = frame {
                    let payload = code.map(u16::to_be_bytes).unwrap_or_default();
                    let len = if code.is_some() { 2 } else { 0 };
                    let _ = self
                        .write(&frame_bytes(opcode::CLOSE, &payload[..len]))
                        .await;
                }
            }
            match tokio::time::timeout_at(deadline, self.stream.read(&mut scratch)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(n)) => self.buffer.extend_from_slice(&scratch[..n]),
            }
        }
    }

    /// Reads more bytes; `false` at the end of the stream.
    async fn fill(&mut self) -> anyhow::Result<bool> {
        let mut scratch = [0u8; 16 * 1024];
        let read = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut scratch))
            .await
            .context("nothing from the server within 10 s")?;
        match read {
            Ok(0) | Err(_) => Ok(false),
            Ok(n) => {
                self.buffer.extend_from_slice(&scratch[..n]);
                Ok(true)
            }
        }
    }

    /// One whole server frame from the buffer, if it holds one.
    fn parse(&mut self) -> anyhow::Result<Option<ServerFrame>> {
        let b = &self.buffer;
        if b.len() < 2 {
            return Ok(None);
        }
        let op = b[0] & 0x0f;
        let (len, header) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&b[2..10]);
                (usize::try_from(u64::from_be_bytes(n))?, 10)
            }
            126 | 127 => return Ok(None),
            n => (usize::from(n), 2),
        };
        if b[1] & 0x80 != 0 {
            bail!("the server masked a frame");
        }
        if b.len() < header + len {
            return Ok(None);
        }
        self.buffer.advance(header);
        let payload: Bytes = self.buffer.split_to(len).freeze();
        Ok(Some(match op {
            opcode::BINARY => {
                let limits = DecodeLimits {
                    max_frame_size: 16 << 20,
                    ..DecodeLimits::default()
                };
                ServerFrame::Ferry(ferry_protocol::codec::decode(payload, &limits)?)
            }
            opcode::CLOSE => ServerFrame::Close(
                (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])),
            ),
            other => ServerFrame::Other(other),
        }))
    }
}
