//! A bare QUIC peer that writes stream bytes by hand (length prefixes
//! included), for the tests of bad input; and the TLS client settings the
//! raw WSS and QUIC peers share.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use ferry_protocol::codec::{DecodeLimits, split_length_prefixed};
use ferry_protocol::frame::QUIC_ALPN;
use ferry_protocol::{Frame, Hello};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A rustls client configuration trusting the certificates of the PEM
/// file `ca`, offering `alpn`.
pub fn tls_config(ca: &Path, alpn: &[u8]) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).context("read the CA file")? {
        roots.add(cert.context("a PEM certificate")?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// A TLS connector (for WSS) trusting `ca`.
pub fn tls_connector(ca: &Path, alpn: &[u8]) -> anyhow::Result<tokio_rustls::TlsConnector> {
    Ok(tokio_rustls::TlsConnector::from(Arc::new(tls_config(
        ca, alpn,
    )?)))
}

/// One QUIC connection to the gateway with its one bidirectional stream.
pub struct RawQuic {
    // Kept: dropping the endpoint would end the connection.
    _endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    buffer: BytesMut,
}

impl RawQuic {
    /// Connects to `addr` trusting `ca` and opens the stream (which the
    /// server sees once the first bytes are written).
    pub async fn connect(addr: SocketAddr, ca: &Path) -> anyhow::Result<Self> {
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls_config(ca, QUIC_ALPN)?)?;
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let connection = tokio::time::timeout(
            Duration::from_secs(10),
            endpoint.connect(addr, "localhost")?,
        )
        .await
        .context("QUIC handshake within 10 s")??;
        let (send, recv) = connection.open_bi().await?;
        Ok(Self {
            _endpoint: endpoint,
            connection,
            send,
            recv,
            buffer: BytesMut::new(),
        })
    }

    /// Writes `bytes` on the stream as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.send.write_all(bytes).await?;
        Ok(())
    }

    /// Writes one frame with its length prefix.
    pub async fn send(&mut self, frame: &Frame) -> anyhow::Result<()> {
        let bytes = frame.to_bytes();
        let mut out = BytesMut::new();
        ferry_protocol::codec::put_varint(&mut out, bytes.len() as u64);
        out.extend_from_slice(&bytes);
        self.send_raw(&out).await
    }

    /// Sends HELLO and waits for WELCOME.
    pub async fn hello(&mut self) -> anyhow::Result<()> {
        self.send(&Frame::Hello(Hello {
            version: 1,
            token: String::new(),
            resume: None,
        }))
        .await?;
        match self.recv().await? {
            Some(Frame::Welcome(_)) => Ok(()),
            other => bail!("expected WELCOME, got {other:?}"),
        }
    }

    /// The next frame; `None` when the stream or connection ended. Waits
    /// at most 10 s.
    pub async fn recv(&mut self) -> anyhow::Result<Option<Frame>> {
        let limits = DecodeLimits {
            max_frame_size: 16 << 20,
            ..DecodeLimits::default()
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(bytes) = split_length_prefixed(&mut self.buffer, limits.max_frame_size)? {
                return Ok(Some(ferry_protocol::codec::decode(bytes, &limits)?));
            }
            let chunk = tokio::time::timeout_at(deadline, self.recv.read_chunk(64 * 1024, true))
                .await
                .context("no frame within 10 s")?;
            match chunk {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk.bytes),
                Ok(None) | Err(_) => return Ok(None),
            }
        }
    }

    /// Reads frames until an ERROR arrives; returns its code. Fails if the
    /// stream ends first.
    pub async fn expect_error(&mut self) -> anyhow::Result<u16> {
        loop {
            match self.recv().await? {
                Some(Frame::Error { code, .. }) => return Ok(code),
                Some(_) => continue,
                None => bail!("stream ended without an ERROR frame"),
            }
        }
    }

    /// Whether the server closes the connection within 5 s.
    pub async fn is_closed_by_server(&self) -> bool {
        self.closed_within(Duration::from_secs(5)).await
    }

    /// Whether the connection ends within `limit`.
    pub async fn closed_within(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.connection.closed())
            .await
            .is_ok()
    }
}

/// Bytes of a varint that is never valid: ten continuation bytes.
pub fn overlong_varint() -> Bytes {
    Bytes::from_static(&[0x80; 11])
}
