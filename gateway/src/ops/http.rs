//! The ops HTTP/1.1 server (hyper): accepting, routing, authentication,
//! body limits, and errors as JSON `{"error": "..."}`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use subtle::ConstantTimeEq;
use thiserror::Error;
use tokio::sync::watch;

use super::ApiKey;
use super::connections::{Connections, Ticket};
use crate::phase::Phase;
use crate::runtime::mesh::Mesh;
use crate::settings::Settings;

/// A client must send its whole request body within this.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// What every request handler may use.
#[derive(Debug)]
pub struct OpsContext {
    /// Queues to every worker.
    pub mesh: Arc<Mesh>,
    /// The server phase (readiness).
    pub phase: watch::Receiver<Phase>,
    /// The current settings snapshot (API key, body limit).
    pub settings: watch::Receiver<Arc<Settings>>,
    /// Renders the metrics.
    pub metrics: PrometheusHandle,
    /// Recent counter totals, for the rates of `/v1/stats`.
    pub sampler: Arc<super::stats::Sampler>,
}

impl OpsContext {
    /// The current settings (a cheap `Arc` clone; never held across an
    /// `.await` as a watch borrow).
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.borrow().clone()
    }
}

/// Why a request failed, and so its status. Each variant says who is at
/// fault.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ApiError {
    /// Caller: no API key configured, or a missing or wrong key.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Caller: the body is not a valid request.
    #[error("{0}")]
    BadRequest(String),
    /// Caller: the body is larger than the limit.
    #[error("request body exceeds {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// Caller: the body did not arrive in time.
    #[error("request body not received within {0:?}")]
    Timeout(Duration),
    /// Caller: no endpoint at this path.
    #[error("no endpoint at {0}")]
    NotFound(String),
    /// Caller: the endpoint exists but takes another method.
    #[error("method not allowed here; use {allow}")]
    MethodNotAllowed {
        /// The method the endpoint takes.
        allow: &'static str,
    },
    /// Us: the gateway cannot take the request now (draining, queue full).
    #[error("{0}")]
    Unavailable(&'static str),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The error as a JSON response.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = json(
            self.status(),
            &serde_json::json!({ "error": self.to_string() }),
        );
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::MethodNotAllowed { allow } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            _ => {}
        }
        response
    }
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut body = value.to_string().into_bytes();
    body.push(b'\n');
    response(status, "application/json", Bytes::from(body))
}

/// A response with a body of `content_type`.
pub fn response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Checks `Authorization: Bearer <key>` against the configured key, in
/// constant time (only the key's length can leak).
pub fn authorize(headers: &HeaderMap, key: Option<&ApiKey>) -> Result<(), ApiError> {
    let Some(key) = key else {
        return Err(ApiError::Unauthorized(
            "the admin API is closed: no API key is configured (--ops-api-key or FERRY_OPS_API_KEY)",
        ));
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(
            "missing header Authorization: Bearer <api key>",
        ))?
        .as_bytes();
    // The scheme name is case-insensitive (RFC 9110 §11.1).
    let token = match value.split_at_checked(7) {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case(b"bearer ") => token,
        _ => {
            return Err(ApiError::Unauthorized(
                "the Authorization header must use the Bearer scheme",
            ));
        }
    };
    if bool::from(token.ct_eq(key.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("wrong API key"))
    }
}

/// Reads a whole request body of at most `limit` bytes. A declared
/// Content-Length over the limit is refused before reading anything, and
/// the collecting itself never buffers more than the limit (chunked bodies
/// have no declared length).
pub async fn read_body(request: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    if let Some(declared) = request.headers().get(header::CONTENT_LENGTH) {
        // hyper has already refused a malformed Content-Length.
        let declared = declared
            .to_str()
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| ApiError::BadRequest("invalid Content-Length".into()))?;
        if declared > limit as u64 {
            return Err(ApiError::TooLarge { limit });
        }
    }
    let body = Limited::new(request.into_body(), limit);
    match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
        Err(_) => Err(ApiError::Timeout(BODY_TIMEOUT)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::TooLarge { limit })
        }
        Ok(Err(e)) => Err(ApiError::BadRequest(format!("cannot read the body: {e}"))),
    }
}

/// Parses a JSON body into `T`, with serde's reason on failure.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// Accepts ops connections until the server stops.
pub async fn serve(listener: tokio::net::TcpListener, context: Arc<OpsContext>) {
    let connections = Arc::new(Connections::default());
    let mut phase = context.phase.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Read per connection: both apply live on reload.
                    let settings = context.settings();
                    let Some(ticket) = connections.admit(settings.ops_max_connections, Instant::now()) else {
                        // Dropping the stream closes it; the client retries.
                        tracing::warn!("ops listener: every connection has a request in progress; closing a new one");
                        continue;
                    };
                    let id = ticket.id();
                    let idle_timeout = settings.ops_idle_timeout;
                    let task = tokio::spawn(serve_connection(stream, context.clone(), ticket, idle_timeout));
                    connections.attach(id, task.abort_handle());
                    // Let the new connection read its request before the
                    // next accept: under a flood, a probe whose request is
                    // already in is then marked busy before newer
                    // connections can push it out of the table.
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!("ops accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            // Stopped, or the server is gone: the process is exiting.
            _ = phase.wait_for(|p| *p == Phase::Stopped) => break,
        }
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    context: Arc<OpsContext>,
    ticket: Ticket,
    idle_timeout: Duration,
) {
    let ticket = Arc::new(ticket);
    let service = hyper::service::service_fn(move |request| {
        let context = context.clone();
        // hyper calls the service once the request head is in: from here
        // to the response the connection is not idle, so not evicted.
        let busy = ticket.busy();
        async move {
            let response = route(request, &context).await;
            drop(busy);
            Ok::<_, Infallible>(response)
        }
    });
    // hyper restarts the header timer before every request, so this one
    // timeout bounds a fresh connection, a keep-alive one between requests
    // and a slowloris dribbling its headers.
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(idle_timeout)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = connection.await {
        tracing::debug!("ops connection ended: {e}");
    }
}

/// Sends a request to its endpoint.
async fn route(request: Request<Incoming>, context: &OpsContext) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let result = match (request.method(), path.as_str()) {
        (&Method::GET, "/healthz") => Ok(response(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"ok\n"),
        )),
        (&Method::GET, "/readyz") => Ok(readyz(*context.phase.borrow())),
        (&Method::GET, "/metrics") => Ok(super::metrics_endpoint::render(&context.metrics)),
        // Read-only like /metrics, so open without the API key.
        (&Method::GET, "/v1/stats") => Ok(json(
            StatusCode::OK,
            &serde_json::to_value(super::stats::current(
                &context.metrics,
                &context.sampler,
                *context.phase.borrow(),
            ))
            .unwrap_or_default(),
        )),
        (&Method::GET, "/dashboard") => Ok(dashboard()),
        (&Method::POST, "/v1/publish") => super::publish_api::handle(request, context).await,
        (&Method::POST, "/v1/disconnect") => super::disconnect::handle(request, context).await,
        (_, "/healthz" | "/readyz" | "/metrics" | "/v1/stats" | "/dashboard") => {
            Err(ApiError::MethodNotAllowed { allow: "GET" })
        }
        (_, "/v1/publish" | "/v1/disconnect") => Err(ApiError::MethodNotAllowed { allow: "POST" }),
        _ => Err(ApiError::NotFound(path)),
    };
    result.unwrap_or_else(ApiError::into_response)
}

/// The live dashboard: one page, no external asset (its content security
/// policy allows nothing but itself and /v1/stats).
fn dashboard() -> Response<Full<Bytes>> {
    let mut r = response(
        StatusCode::OK,
        "text/html; charset=utf-8",
        Bytes::from_static(include_bytes!("dashboard.html")),
    );
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; base-uri 'none'; form-action 'none'",
        ),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Ready only while Running: a load balancer must stop sending clients as
/// soon as the drain starts, long before the process exits.
fn readyz(phase: Phase) -> Response<Full<Bytes>> {
    let status = if phase == Phase::Running {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    response(
        status,
        "text/plain; charset=utf-8",
        Bytes::from(format!("{}\n", phase.name())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = authorization {
            h.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(v).expect("header"),
            );
        }
        h
    }

    #[test]
    fn authorization_needs_a_configured_key_and_the_right_bearer() {
        let key = ApiKey::new("k3y").expect("key");
        assert!(authorize(&headers(Some("Bearer k3y")), Some(&key)).is_ok());
        assert!(authorize(&headers(Some("bearer k3y")), Some(&key)).is_ok());
        for bad in [
            None,
            Some("Bearer k3"),
            Some("Bearer k3y "),
            Some("Bearer "),
            Some("Basic k3y"),
            Some("k3y"),
        ] {
            let e = authorize(&headers(bad), Some(&key)).expect_err("refused");
            assert_eq!(e.status(), StatusCode::UNAUTHORIZED, "{bad:?}");
        }
        let e = authorize(&headers(Some("Bearer k3y")), None).expect_err("no key configured");
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn dashboard_is_self_contained() {
        let r = dashboard();
        assert_eq!(r.status(), StatusCode::OK);
        let page = include_str!("dashboard.html");
        assert!(page.contains("fetch(\"v1/stats\""));
        for external in ["<link", "src=\"http", "href=\"http", "@import", "url("] {
            assert!(!page.contains(external), "external asset: {external}");
        }
        let csp = r
            .headers()
            .get(header::CONTENT_SECURITY_POLICY)
            .expect("CSP");
        assert!(
            csp.to_str()
                .expect("ascii")
                .starts_with("default-src 'none'")
        );
    }

    #[test]
    fn ready_only_while_running() {
        assert_eq!(readyz(Phase::Running).status(), StatusCode::OK);
        for p in [Phase::Starting, Phase::Draining, Phase::Stopped] {
            assert_eq!(readyz(p).status(), StatusCode::SERVICE_UNAVAILABLE);
        }
    }

    #[test]
    fn errors_carry_their_status_and_headers() {
        let r = ApiError::MethodNotAllowed { allow: "POST" }.into_response();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            r.headers().get(header::ALLOW).map(|v| v.as_bytes()),
            Some(&b"POST"[..])
        );
        let r = ApiError::Unauthorized("no").into_response();
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(
            ApiError::TooLarge { limit: 1 }.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
