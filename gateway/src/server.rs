//! The server: binds the listeners, starts one worker per core, maps
//! signals to phases, and waits for the workers to finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::phase::Phase;
use crate::runtime::mesh::{ControlMsg, Mesh};
use crate::runtime::worker::{self, Shared, WorkerSetup};
use crate::settings::Settings;
use crate::transport::listener::{WorkerListeners, bind_group};
use crate::transport::quic;
use crate::transport::tls::{self, CertPaths, CertStore, ensure_dev_cert, load_certified_key};
use ferry_protocol::frame::QUIC_ALPN;

/// Where the gateway actually listens (ports resolved).
#[derive(Debug, Clone)]
pub struct BoundAddrs {
    /// WebSocket.
    pub ws: SocketAddr,
    /// WebSocket over TLS.
    pub wss: Option<SocketAddr>,
    /// QUIC.
    pub quic: Option<SocketAddr>,
    /// The certificate clients should trust (the development one, or the
    /// configured one).
    pub cert: Option<std::path::PathBuf>,
}

/// The TLS state shared by WSS and QUIC.
struct TlsSetup {
    store: Arc<CertStore>,
    cert_path: std::path::PathBuf,
    wss: tokio_rustls::TlsAcceptor,
    quic: quinn::ServerConfig,
}

fn setup_tls(settings: &Settings) -> anyhow::Result<TlsSetup> {
    let paths = match &settings.tls_cert {
        Some((cert, key)) => CertPaths {
            cert: cert.clone(),
            key: key.clone(),
        },
        None => {
            let paths = ensure_dev_cert(&settings.data_dir)?;
            tracing::warn!(
                cert = %paths.cert.display(),
                "no TLS certificate configured: using a self-signed development certificate (clients: --ca {})",
                paths.cert.display()
            );
            paths
        }
    };
    let key = load_certified_key(&paths)?;
    let store = CertStore::new(key);
    let wss_config = tls::server_config(store.clone(), &[b"http/1.1"], false)?;
    let quic_tls = tls::server_config(store.clone(), &[QUIC_ALPN], true)?;
    let quic = quic::server_config(quic_tls, settings)
        .map_err(|e| anyhow::anyhow!("QUIC configuration rejected: {e}"))?;
    Ok(TlsSetup {
        store,
        cert_path: paths.cert,
        wss: tokio_rustls::TlsAcceptor::from(Arc::new(wss_config)),
        quic,
    })
}

/// Produces fresh settings on SIGHUP; `Err` keeps the old ones.
pub type Reloader = Box<dyn FnMut() -> Result<Settings, String>>;

/// Runs the gateway until SIGTERM or SIGINT, then drains and returns.
pub fn run(settings: Settings, mut reloader: Reloader) -> anyhow::Result<()> {
    let workers = settings.workers.max(1);
    let ws = bind_group(settings.ws_listen, workers)
        .with_context(|| format!("cannot listen for WebSocket on {}", settings.ws_listen))?;
    let tls = if settings.wss_listen.is_some() || settings.quic_listen.is_some() {
        Some(setup_tls(&settings)?)
    } else {
        None
    };
    let mut wss = match (settings.wss_listen, &tls) {
        (Some(addr), Some(_)) => {
            bind_group(addr, workers).with_context(|| format!("cannot listen for WSS on {addr}"))?
        }
        _ => Vec::new(),
    };
    let mut udp = match (settings.quic_listen, &tls) {
        (Some(addr), Some(_)) => quic::bind_udp_group(addr, workers)
            .with_context(|| format!("cannot listen for QUIC on {addr}/udp"))?,
        _ => Vec::new(),
    };
    let bound = BoundAddrs {
        ws: ws[0].local_addr()?,
        wss: wss.first().map(|l| l.local_addr()).transpose()?,
        quic: udp.first().map(|s| s.local_addr()).transpose()?,
        cert: tls.as_ref().map(|t| t.cert_path.clone()),
    };
    let _cert_store = tls.as_ref().map(|t| t.store.clone());
    let (mesh, inboxes) = Mesh::new(workers);
    let (phase_tx, phase_rx) = watch::channel(Phase::Starting);
    let shared = Arc::new(Shared {
        connections: AtomicUsize::new(0),
        phase: phase_rx,
    });
    let settings = Arc::new(settings);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut handles = Vec::with_capacity(workers);
    wss.reverse();
    udp.reverse();
    for ((index, inbox), ws) in inboxes.into_iter().enumerate().zip(ws) {
        let listeners = WorkerListeners {
            ws: Some(ws),
            wss: tls
                .as_ref()
                .and_then(|t| wss.pop().map(|l| (l, t.wss.clone()))),
            // Socket i joined the reuseport group i-th: the steering
            // program's index i must be worker i.
            quic: tls
                .as_ref()
                .and_then(|t| udp.pop().map(|s| (s, t.quic.clone()))),
        };
        let setup = WorkerSetup {
            index,
            core: cores.get(index % cores.len().max(1)).copied(),
            listeners,
            inbox,
            mesh: mesh.clone(),
            shared: shared.clone(),
            settings: settings.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("ferry-worker-{index}"))
            .spawn(move || worker::run(setup))
            .context("cannot start a worker thread")?;
        handles.push(handle);
    }
    // Signal handlers exist before anyone learns that we are ready, so an
    // early SIGTERM drains instead of killing the process.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal runtime")?;
    let (mut term, mut int, mut hup) = runtime.block_on(async {
        anyhow::Ok((
            signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
        ))
    })?;
    set_phase(&phase_tx, Phase::Running);
    announce(&bound, workers);

    runtime.block_on(async {
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => match reloader() {
                    Ok(next) => {
                        let next = Arc::new(next);
                        for links in mesh.all() {
                            let _ = links.control.send(ControlMsg::Reload(next.clone())).await;
                        }
                        tracing::info!("configuration reloaded");
                    }
                    Err(e) => tracing::error!("reload failed, keeping the running configuration: {e}"),
                },
            }
        }
        anyhow::Ok(())
    })?;
    tracing::info!("draining");
    set_phase(&phase_tx, Phase::Draining);
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("worker failed: {e}"),
            Err(_) => tracing::error!("worker panicked"),
        }
    }
    set_phase(&phase_tx, Phase::Stopped);
    tracing::info!("stopped");
    Ok(())
}

fn set_phase(tx: &watch::Sender<Phase>, next: Phase) {
    let current = *tx.borrow();
    if current.can_move_to(next) {
        tx.send_replace(next);
        tracing::info!(phase = next.name(), "phase");
    } else {
        tracing::warn!("ignored phase change {} -> {}", current.name(), next.name());
    }
}

/// One line on stdout that tools and tests read to find the gateway.
fn announce(bound: &BoundAddrs, workers: usize) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let mut line = format!("ferry gateway ready: ws={}", bound.ws);
    if let Some(wss) = bound.wss {
        line.push_str(&format!(" wss={wss}"));
    }
    if let Some(quic) = bound.quic {
        line.push_str(&format!(" quic={quic}"));
    }
    if let Some(cert) = &bound.cert {
        line.push_str(&format!(" cert={}", cert.display()));
    }
    let _ = writeln!(out, "{line} workers={workers} pid={}", std::process::id());
    let _ = out.flush();
}
