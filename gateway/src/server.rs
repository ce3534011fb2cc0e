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

/// Where the gateway actually listens (ports resolved).
#[derive(Debug, Clone)]
pub struct BoundAddrs {
    /// WebSocket.
    pub ws: SocketAddr,
    /// Ops HTTP, when enabled.
    pub ops: Option<SocketAddr>,
}

/// Produces fresh settings on SIGHUP; `Err` keeps the old ones.
pub type Reloader = Box<dyn FnMut() -> Result<Settings, String>>;

/// Runs the gateway until SIGTERM or SIGINT, then drains and returns.
/// `_set_log_level` changes the log filter; the reload path will use it
/// once the settings carry a log level.
pub fn run(
    settings: Settings,
    mut reloader: Reloader,
    _set_log_level: crate::logging::LogLevelSetter,
) -> anyhow::Result<()> {
    let workers = settings.workers.max(1);
    let ws = bind_group(settings.ws_listen, workers)
        .with_context(|| format!("cannot listen for WebSocket on {}", settings.ws_listen))?;
    let mut bound = BoundAddrs {
        ws: ws[0].local_addr()?,
        ops: None,
    };
    let (mesh, inboxes) = Mesh::new(workers);
    let (phase_tx, phase_rx) = watch::channel(Phase::Starting);
    let shared = Arc::new(Shared {
        connections: AtomicUsize::new(0),
        phase: phase_rx,
    });
    let settings = Arc::new(settings);
    // Before the workers: their first metrics must reach the recorder.
    let ops = crate::ops::start(&settings, &mesh, &shared.phase)?;
    bound.ops = ops.as_ref().map(|o| o.addr());
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut handles = Vec::with_capacity(workers);
    for ((index, inbox), ws) in inboxes.into_iter().enumerate().zip(ws) {
        let setup = WorkerSetup {
            index,
            core: cores.get(index % cores.len().max(1)).copied(),
            listeners: WorkerListeners { ws: Some(ws) },
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal runtime")?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        // Only once the handlers are in place: a SIGTERM sent as soon as the
        // ready line appears must drain, not kill the process.
        set_phase(&phase_tx, Phase::Running);
        announce(&bound, workers);
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
                        if let Some(ops) = &ops {
                            ops.reload(next.clone());
                        }
                        metrics::counter!("ferry_config_reloads_total", "outcome" => "ok").increment(1);
                        tracing::info!("configuration reloaded");
                    }
                    Err(e) => {
                        metrics::counter!("ferry_config_reloads_total", "outcome" => "error").increment(1);
                        tracing::error!("reload failed, keeping the running configuration: {e}");
                    }
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
    let ops = bound.ops.map(|a| format!(" ops={a}")).unwrap_or_default();
    let _ = writeln!(
        out,
        "ferry gateway ready: ws={}{ops} workers={} pid={}",
        bound.ws,
        workers,
        std::process::id()
    );
    let _ = out.flush();
}
