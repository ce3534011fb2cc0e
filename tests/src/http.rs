//! A minimal HTTP/1.1 client for the ops endpoints.
//!
//! Hand-written rather than a client crate: the tests need to send what a
//! well-behaved client would not (a Content-Length with no body, an
//! oversize chunked body), and one request per connection with
//! `Connection: close` keeps the parsing to a few lines.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest a request may take, connect to last byte.
const TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (chunked encoding removed).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("body is not JSON: {:?}", self.text()))
    }

    /// The `"error"` string of a JSON error body.
    pub fn error(&self) -> anyhow::Result<String> {
        match self.json()?.get("error").and_then(|e| e.as_str()) {
            Some(e) => Ok(e.to_owned()),
            None => bail!("no \"error\" string in {:?}", self.text()),
        }
    }
}

/// `GET path`.
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<HttpResponse> {
    request(addr, "GET", path, &[], b"").await
}

/// `POST path` with a JSON body and, if given, `Authorization: Bearer`.
pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
    body: &str,
) -> anyhow::Result<HttpResponse> {
    let auth = bearer.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth.as_str()));
    }
    request(addr, "POST", path, &headers, body.as_bytes()).await
}

/// A request with a Content-Length body.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<HttpResponse> {
    let mut raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(body);
    send_raw(addr, &bytes).await
}

/// Sends `bytes` as they are (the request must ask for
/// `Connection: close`) and reads the response until the server closes.
pub async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> anyhow::Result<HttpResponse> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.context("connect")?;
        // The server may answer and close before reading everything (a
        // refused body): what counts is its answer, so a failed write is
        // not an error yet.
        let _ = stream.write_all(bytes).await;
        let mut received = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
                // A reset after the answer arrived still leaves the answer.
                Err(_) if !received.is_empty() => break,
                Err(e) => return Err(e).context("read the response"),
            }
        }
        parse(&received)
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .context("no HTTP response in time")?
}

fn parse(received: &[u8]) -> anyhow::Result<HttpResponse> {
    let end = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("incomplete response head")?;
    let head = std::str::from_utf8(&received[..end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().context("no status line")?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &received[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else if let Some((_, len)) = headers.iter().find(|(k, _)| k == "content-length") {
        let len: usize = len.parse().context("content-length")?;
        rest.get(..len)
            .context("body shorter than content-length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("incomplete chunk size")?;
        let size = std::str::from_utf8(&rest[..line_end])?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .context("chunk size")?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(rest.get(..size).context("incomplete chunk")?);
        rest = rest.get(size + 2..).context("incomplete chunk end")?;
    }
}
