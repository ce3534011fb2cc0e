//! The server: binds (or inherits) the listeners, starts one worker per
//! core, maps signals and upgrades to phases, and waits for the workers.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use anyhow::Context;
use ferry_protocol::frame::QUIC_ALPN;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

use crate::phase::Phase;
use crate::runtime::mesh::{ControlMsg, Mesh};
use crate::runtime::worker::{self, Shared, WorkerSetup};
use crate::settings::Settings;
use crate::transport::listener::{WorkerListeners, bind_group};
use crate::transport::quic;
use crate::transport::tls::{self, CertPaths, CertStore, ensure_dev_cert, load_certified_key};
use crate::upgrade::handover::{self, ListenerFds, Outcome};
use crate::upgrade::takeover;

/// Where the gateway actually listens (ports resolved).
#[derive(Debug, Clone)]
pub struct BoundAddrs {
    /// WebSocket.
    pub ws: SocketAddr,
    /// WebSocket over TLS.
    pub wss: Option<SocketAddr>,
    /// QUIC.
    pub quic: Option<SocketAddr>,
    /// The certificate clients should trust.
    pub cert: Option<std::path::PathBuf>,
    /// Ops HTTP, when enabled.
    pub ops: Option<SocketAddr>,
}

/// Produces fresh settings on SIGHUP; `Err` keeps the old ones, all of
/// them.
pub type Reloader = Box<dyn FnMut() -> Result<Reloaded, String>>;

/// What a successful reload applies.
#[derive(Debug)]
pub struct Reloaded {
    /// The new snapshot.
    pub settings: Settings,
    /// The configured certificate, read and checked, when the gateway
    /// serves TLS with configured files.
    pub certificate: Option<rustls::sign::CertifiedKey>,
}

/// How to start.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartMode {
    /// Take the sockets and sessions of the gateway running on the
    /// control socket instead of binding.
    pub takeover: bool,
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

/// The listening sockets, bound here or inherited.
struct Sockets {
    ws: Vec<std::net::TcpListener>,
    wss: Vec<std::net::TcpListener>,
    quic: Vec<std::net::UdpSocket>,
}

impl Sockets {
    fn bind(settings: &Settings, workers: usize, tls: bool) -> anyhow::Result<Self> {
        let ws = bind_group(settings.ws_listen, workers)
            .with_context(|| format!("cannot listen for WebSocket on {}", settings.ws_listen))?;
        let wss = match (settings.wss_listen, tls) {
            (Some(addr), true) => bind_group(addr, workers)
                .with_context(|| format!("cannot listen for WSS on {addr}"))?,
            _ => Vec::new(),
        };
        let quic = match (settings.quic_listen, tls) {
            (Some(addr), true) => quic::bind_udp_group(addr, workers)
                .with_context(|| format!("cannot listen for QUIC on {addr}/udp"))?,
            _ => Vec::new(),
        };
        Ok(Self { ws, wss, quic })
    }

    /// Duplicates of every socket, kept to hand over in an upgrade.
    fn duplicate(&self) -> std::io::Result<ListenerFds> {
        let tcp = |l: &std::net::TcpListener| l.try_clone().map(OwnedFd::from);
        Ok(ListenerFds {
            ws: self.ws.iter().map(tcp).collect::<Result<_, _>>()?,
            wss: self.wss.iter().map(tcp).collect::<Result<_, _>>()?,
            quic: self
                .quic
                .iter()
                .map(|s| s.try_clone().map(OwnedFd::from))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Deals the sockets to `workers` workers: socket i to worker
    /// i % workers. For QUIC this keeps socket i (the i-th of the
    /// reuseport group, where the steering program sends connection IDs
    /// starting with i) on worker i.
    fn deal(
        self,
        workers: usize,
        tls: Option<&TlsSetup>,
        reset_key: [u8; 32],
    ) -> Vec<WorkerListeners> {
        let mut out: Vec<WorkerListeners> = (0..workers)
            .map(|_| WorkerListeners {
                quic_reset_key: reset_key,
                ..WorkerListeners::default()
            })
            .collect();
        for (i, l) in self.ws.into_iter().enumerate() {
            out[i % workers].ws.push(l);
        }
        if let Some(tls) = tls {
            for (i, l) in self.wss.into_iter().enumerate() {
                out[i % workers].wss.push((l, tls.wss.clone()));
            }
            for (i, s) in self.quic.into_iter().enumerate() {
                out[i % workers].quic.push((s, tls.quic.clone()));
            }
        }
        out
    }
}

/// Runs the gateway until SIGTERM or SIGINT (or until a new process has
/// taken over), then drains and returns.
pub fn run(settings: Settings, mut reloader: Reloader, mode: StartMode) -> anyhow::Result<()> {
    let workers = settings.workers.max(1);
    let wants_tls = settings.wss_listen.is_some() || settings.quic_listen.is_some();
    let tls = if wants_tls {
        Some(setup_tls(&settings)?)
    } else {
        None
    };
    let (sockets, control) = if mode.takeover {
        let inherited = takeover::take_sockets(&settings.control_socket)?;
        tracing::info!(
            ws = inherited.ws.len(),
            wss = inherited.wss.len(),
            quic = inherited.quic.len(),
            "upgrade: received the listening sockets"
        );
        let mut quic = inherited.quic;
        if let Some(first) = quic.first() {
            let addr = first.local_addr()?;
            while quic.len() < workers {
                quic.push(quic::bind_udp_reuseport(addr)?);
            }
            quic::steer_group(&quic[0], workers.max(quic.len()));
        }
        let sockets = Sockets {
            ws: inherited.ws,
            wss: inherited.wss,
            quic,
        };
        (sockets, Some(inherited.control))
    } else {
        (Sockets::bind(&settings, workers, tls.is_some())?, None)
    };
    let ws_addr = sockets
        .ws
        .first()
        .context("no WebSocket listener")?
        .local_addr()?;
    let mut bound = BoundAddrs {
        ops: None,
        ws: ws_addr,
        wss: sockets.wss.first().map(|l| l.local_addr()).transpose()?,
        quic: sockets.quic.first().map(|s| s.local_addr()).transpose()?,
        cert: tls.as_ref().map(|t| t.cert_path.clone()),
    };
    let handover_fds = sockets
        .duplicate()
        .context("cannot duplicate the listening sockets")?;
    let cert_store = tls.as_ref().map(|t| t.store.clone());
    let listeners = sockets.deal(workers, tls.as_ref(), rand::random());

    let (mesh, inboxes) = Mesh::new(workers);
    let (phase_tx, phase_rx) = watch::channel(Phase::Starting);
    let (gate_tx, gate_rx) = watch::channel(control.is_none());
    let (pull_tx, pull_rx) = mpsc::channel(1024);
    let shared = Arc::new(Shared {
        connections: AtomicUsize::new(0),
        phase: phase_rx,
        sequencers_open: gate_rx,
        pull: control.as_ref().map(|_| pull_tx),
    });
    let settings = Arc::new(settings);
    // Before the workers: their first metrics must reach the recorder.
    let ops = crate::ops::start(&settings, &mesh, &shared.phase)?;
    bound.ops = ops.as_ref().map(|o| o.addr());
    // Without pinning the kernel may run a worker on any CPU: a connection
    // still never leaves its worker, but a worker whose CPU is taken is not
    // left waiting while another CPU idles (issue 15).
    let cores = if settings.pin_workers {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut handles = Vec::with_capacity(workers);
    for ((index, inbox), listeners) in inboxes.into_iter().enumerate().zip(listeners) {
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
        .context("cannot start the control runtime")?;
    let local = tokio::task::LocalSet::new();
    let (mut term, mut int, mut hup) = runtime.block_on(async {
        anyhow::Ok((
            signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
        ))
    })?;
    let control_path = settings.control_socket.clone();
    let mut control_listener = match &control {
        // The old process still owns the path until it has handed over.
        Some(_) => None,
        None => Some(
            runtime
                .block_on(async { handover::bind_control_socket(&control_path) })
                .with_context(|| {
                    format!("cannot bind the control socket {}", control_path.display())
                })?,
        ),
    };
    // The latest snapshot, for what the control loop reads itself.
    let mut current = settings.clone();
    set_phase(&phase_tx, Phase::Running);
    announce(&bound, workers);
    notify_service_manager(&[sd_notify::NotifyState::Ready]);

    local.block_on(&runtime, async {
        let (taken_tx, mut taken_rx) = mpsc::channel::<Result<u64, String>>(1);
        if let Some(control) = control {
            let mesh = mesh.clone();
            tokio::task::spawn_local(async move {
                let result = takeover::receive_state(control, mesh, pull_rx, gate_tx)
                    .await
                    .map_err(|e| e.to_string());
                let _ = taken_tx.send(result).await;
            });
        }
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    notify_service_manager(&[sd_notify::NotifyState::Reloading]);
                    let next = reloader();
                    notify_service_manager(&[sd_notify::NotifyState::Ready]);
                    match next {
                        Ok(Reloaded { settings: next, certificate }) => {
                            if let (Some(store), Some(certificate)) = (&cert_store, certificate) {
                                store.replace(certificate);
                            }
                            let next = Arc::new(next);
                            // Read when an upgrade starts: upgrade.* applies live.
                            current = next.clone();
                            for links in mesh.all() {
                                let _ = links.control.send(ControlMsg::Reload(next.clone())).await;
                            }
                            if let Some(ops) = &ops {
                                ops.reload(next.clone());
                            }
                            tracing::info!("configuration reloaded");
                        }
                        Err(e) => tracing::error!("reload failed, keeping the running configuration: {e}"),
                    }
                }
                Some(result) = taken_rx.recv() => {
                    match result {
                        Ok(sessions) => {
                            tracing::info!(sessions, "upgrade: took over from the previous process");
                            metrics::counter!("ferry_upgrades_total", "side" => "new", "outcome" => "committed").increment(1);
                        }
                        Err(e) => tracing::error!("upgrade: the previous process broke off ({e}); serving with what arrived"),
                    }
                    // Ready for the next upgrade.
                    match handover::bind_control_socket(&control_path) {
                        Ok(listener) => control_listener = Some(listener),
                        Err(e) => tracing::error!("cannot bind the control socket {}: {e}", control_path.display()),
                    }
                }
                Ok((stream, _)) = accept_control(&control_listener) => {
                    let ctx = handover::Handover {
                        mesh: &mesh,
                        phase: &phase_tx,
                        fds: &handover_fds,
                        reconnect_rate: current.upgrade_reconnect_rate,
                        deadline: current.upgrade_deadline,
                    };
                    match handover::serve(stream, ctx).await {
                        Outcome::Committed { sessions } => {
                            tracing::info!(sessions, "upgrade: handed over; exiting");
                            break;
                        }
                        Outcome::RolledBack(reason) => {
                            tracing::error!("upgrade failed, serving on: {reason}");
                        }
                    }
                }
            }
        }
        anyhow::Ok(())
    })?;
    tracing::info!("draining");
    notify_service_manager(&[sd_notify::NotifyState::Stopping]);
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

async fn accept_control(
    listener: &Option<tokio::net::UnixListener>,
) -> std::io::Result<(tokio::net::UnixStream, tokio::net::unix::SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Tells systemd (`Type=notify`) where we are; a no-op without
/// `NOTIFY_SOCKET`.
fn notify_service_manager(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("cannot notify the service manager: {e}");
    }
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
    if let Some(ops) = bound.ops {
        line.push_str(&format!(" ops={ops}"));
    }
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
