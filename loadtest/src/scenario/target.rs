//! Where the load goes: URLs, the loopback-only guard, and short reasons
//! for network errors.

use std::net::SocketAddr;

use anyhow::{Context, bail};

/// A URL split into what we need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts {
    /// `ws`, `wss`, `quic`, `http`.
    pub scheme: String,
    /// Host name or IP (IPv6 without brackets).
    pub host: String,
    /// Port (the scheme's default when absent).
    pub port: u16,
    /// Path and query, `/` when absent.
    pub path: String,
}

/// Splits `scheme://host[:port][/path]`.
pub fn split_url(url: &str) -> anyhow::Result<UrlParts> {
    let Some((scheme, rest)) = url.split_once("://") else {
        bail!("{url:?} is not a URL: expected scheme://host:port/path");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let default_port = match scheme {
        "ws" | "http" => Some(80),
        "wss" | "https" => Some(443),
        _ => None,
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            bail!("{url:?}: unclosed [ in the host");
        };
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        bail!("{url:?} has no host");
    }
    let port = match (port, default_port) {
        (Some(p), _) => p
            .parse()
            .with_context(|| format!("{url:?}: {p:?} is not a port number"))?,
        (None, Some(p)) => p,
        (None, None) => bail!("{url:?} needs a port"),
    };
    Ok(UrlParts {
        scheme: scheme.to_owned(),
        host: host.to_owned(),
        port,
        path: path.to_owned(),
    })
}

/// Resolves `url` to one address, refusing anything but loopback unless
/// `allow_remote`: a load test must not be pointed at someone else's
/// machine by a typo.
pub async fn resolve(url: &str, allow_remote: bool) -> anyhow::Result<SocketAddr> {
    let parts = split_url(url)?;
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((parts.host.as_str(), parts.port))
        .await
        .with_context(|| format!("cannot resolve {}", parts.host))?
        .collect();
    let Some(first) = addrs.first().copied() else {
        bail!("{} resolves to no address", parts.host);
    };
    if !allow_remote && addrs.iter().any(|a| !a.ip().is_loopback()) {
        bail!(
            "{} resolves to {first}, which is not a loopback address; \
             pass --allow-remote if you really mean to load another machine",
            parts.host
        );
    }
    Ok(first)
}

/// A short, stable reason for an I/O error.
pub fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused (is the server running?)".into(),
        K::ConnectionReset => "connection reset by the server".into(),
        K::BrokenPipe => "broken pipe".into(),
        K::TimedOut => "timed out".into(),
        K::AddrNotAvailable => "no free local port (too many connections?)".into(),
        K::UnexpectedEof => "server closed the connection".into(),
        _ if e.raw_os_error() == Some(24) => "too many open files (raise ulimit -n)".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        let u = split_url("ws://127.0.0.1:8080/ws").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/ws")
        );
        let u = split_url("quic://[::1]:4433").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 4433, "/")
        );
        assert_eq!(split_url("ws://localhost").unwrap().port, 80);
        assert!(
            split_url("quic://localhost").is_err(),
            "quic has no default port"
        );
        assert!(split_url("127.0.0.1:80").is_err());
        assert!(split_url("ws://:80/").is_err());
        assert!(split_url("ws://h:99999/").is_err());
    }

    #[tokio::test]
    async fn refuses_non_loopback_targets() {
        assert!(resolve("ws://127.0.0.1:9/", false).await.is_ok());
        assert!(resolve("ws://[::1]:9/", false).await.is_ok());
        let err = resolve("ws://192.0.2.1:9/", false).await.unwrap_err();
        assert!(err.to_string().contains("--allow-remote"));
    }
}
