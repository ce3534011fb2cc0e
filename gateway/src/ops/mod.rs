//! The ops HTTP listener: liveness and readiness probes, Prometheus
//! metrics, and the admin API (publish, disconnect).
//!
//! It runs on its own thread with its own current-thread tokio runtime, not
//! on a worker: a slow scrape or a burst of admin calls never takes time
//! from client traffic, and it keeps answering (`/readyz` = 503) while the
//! workers drain and stop.
//!
//! It reaches the workers only through the [`Mesh`] queues, like any other
//! producer: an API publish goes through the channel's sequencer, so it
//! gets the same ordering as a client's publish.
//!
//! - [`http`]: the hyper server, routing, authentication, body limits and
//!   JSON errors;
//! - [`connections`]: the bounded connection table (a new connection evicts
//!   the longest-idle one, so probes answer under a flood);
//! - [`publish_api`]: `POST /v1/publish`;
//! - [`disconnect`]: `POST /v1/disconnect` and its worker side;
//! - [`metrics_endpoint`]: the Prometheus recorder and `GET /metrics`;
//! - [`stats`]: `GET /v1/stats`, the figures of the live dashboard
//!   (`GET /dashboard`, `dashboard.html`), read from the same recorder.

pub mod connections;
pub mod disconnect;
pub mod http;
pub mod metrics_endpoint;
pub mod publish_api;
pub mod stats;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use crate::phase::Phase;
use crate::runtime::mesh::Mesh;
use crate::settings::Settings;

/// The key that opens the admin API. Never empty, and never printed: its
/// `Debug` is redacted so that logging the settings cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// A key from configuration; `None` for an empty string, which would
    /// otherwise match an empty bearer token.
    pub fn new(key: impl Into<String>) -> Option<Self> {
        let key = key.into();
        (!key.is_empty()).then_some(Self(key))
    }

    /// The key's bytes, for the constant-time comparison.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The running ops listener.
#[derive(Debug)]
pub struct OpsServer {
    addr: SocketAddr,
    settings: watch::Sender<Arc<Settings>>,
}

impl OpsServer {
    /// Where it listens (port resolved).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Hands a reloaded settings snapshot to the ops thread (API key, body
    /// limit). The listen address itself is not rebound.
    pub fn reload(&self, settings: Arc<Settings>) {
        self.settings.send_replace(settings);
    }
}

/// Installs the metrics recorder, binds `settings.ops_listen` and starts
/// the ops thread; `None` when the ops listener is disabled.
///
/// Call it before the workers start, so that their first metrics reach the
/// recorder.
pub fn start(
    settings: &Arc<Settings>,
    mesh: &Arc<Mesh>,
    phase: &watch::Receiver<Phase>,
) -> anyhow::Result<Option<OpsServer>> {
    let Some(listen) = settings.ops_listen else {
        // Without /metrics nobody would drain the histograms, so the
        // recorder stays uninstalled and metric calls cost nothing.
        return Ok(None);
    };
    let metrics = metrics_endpoint::install().context("cannot install the metrics recorder")?;
    // SO_REUSEPORT: during an upgrade the new process binds the same ops
    // port while the old one still serves it (and answers 503 on /readyz).
    let listener = crate::transport::listener::resolve_port_zero(listen, socket2::Type::STREAM)
        .and_then(crate::transport::listener::bind_tcp_reuseport)
        .with_context(|| format!("cannot listen for ops HTTP on {listen}"))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the ops runtime")?;
    let (settings_tx, settings_rx) = watch::channel(settings.clone());
    let context = Arc::new(http::OpsContext {
        mesh: mesh.clone(),
        phase: phase.clone(),
        settings: settings_rx,
        metrics,
        sampler: Arc::new(stats::Sampler::default()),
    });
    std::thread::Builder::new()
        .name("ferry-ops".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(e) => {
                        tracing::error!("cannot use the ops listener: {e}");
                        return;
                    }
                };
                tokio::spawn(metrics_endpoint::run_upkeep(context.metrics.clone()));
                tokio::spawn(stats::run_sampler(
                    context.metrics.clone(),
                    context.sampler.clone(),
                ));
                http::serve(listener, context).await;
            });
        })
        .context("cannot start the ops thread")?;
    Ok(Some(OpsServer {
        addr,
        settings: settings_tx,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_is_never_empty_nor_printed() {
        assert!(ApiKey::new("").is_none());
        let key = ApiKey::new("s3cret").expect("non-empty");
        assert_eq!(key.as_bytes(), b"s3cret");
        assert!(!format!("{key:?}").contains("s3cret"));
    }
}
