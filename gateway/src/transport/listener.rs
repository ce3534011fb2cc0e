//! Listening sockets: one per worker on the same address (SO_REUSEPORT),
//! so the kernel spreads connections over the workers and a connection
//! stays on the worker that accepted it.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::pending::{Pending, PendingHandshakes};
use crate::runtime::worker::Worker;

/// Binds a TCP listener with SO_REUSEPORT.
pub fn bind_tcp_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Binds `count` listeners on `addr` in one reuseport group.
pub fn bind_group(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let addr = resolve_port_zero(addr, Type::STREAM)?;
    (0..count).map(|_| bind_tcp_reuseport(addr)).collect()
}

/// Turns port 0 into a free port. A reuseport socket bound to port 0 may
/// be given a port that another process's reuseport group already holds,
/// and would then share its traffic; a plain socket is never given a port
/// in use, so a plain socket picks the port and the group binds it.
pub fn resolve_port_zero(addr: SocketAddr, kind: Type) -> std::io::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let probe = Socket::new(Domain::for_address(addr), kind, None)?;
    probe.bind(&addr.into())?;
    probe
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("probe socket has no IP address"))
}

/// The listeners one worker owns.
#[derive(Default)]
pub struct WorkerListeners {
    /// Plain WebSocket.
    pub ws: Vec<std::net::TcpListener>,
    /// WebSocket over TLS, with the acceptor shared by all workers.
    pub wss: Vec<(std::net::TcpListener, tokio_rustls::TlsAcceptor)>,
    /// QUIC, with the server configuration shared by all workers.
    pub quic: Vec<(std::net::UdpSocket, quinn::ServerConfig)>,
    /// The stateless-reset key every QUIC endpoint shares (also with the
    /// next process after an upgrade).
    pub quic_reset_key: [u8; 32],
}

impl std::fmt::Debug for WorkerListeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerListeners")
            .field("ws", &self.ws)
            .field("wss", &self.wss.len())
            .field("quic", &self.quic.len())
            .finish()
    }
}

impl WorkerListeners {
    /// Starts an accept task per listener on the current worker.
    pub fn spawn_accept_loops(self, worker: &Rc<Worker>) {
        // One bound for the worker, whichever transport a connection uses.
        let pending = Rc::new(PendingHandshakes::default());
        for ws in self.ws {
            match tokio::net::TcpListener::from_std(ws) {
                Ok(listener) => {
                    tokio::task::spawn_local(accept_ws(worker.clone(), listener, pending.clone()));
                }
                Err(e) => tracing::error!(worker = worker.index, "cannot use ws listener: {e}"),
            }
        }
        for (wss, acceptor) in self.wss {
            match tokio::net::TcpListener::from_std(wss) {
                Ok(listener) => {
                    tokio::task::spawn_local(accept_wss(
                        worker.clone(),
                        listener,
                        acceptor,
                        pending.clone(),
                    ));
                }
                Err(e) => tracing::error!(worker = worker.index, "cannot use wss listener: {e}"),
            }
        }
        for (socket, config) in self.quic {
            match crate::transport::quic::endpoint(
                worker.index,
                socket,
                config.clone(),
                &self.quic_reset_key,
            ) {
                Ok(endpoint) => {
                    tokio::task::spawn_local(crate::transport::quic::accept_loop(
                        worker.clone(),
                        endpoint,
                        config,
                        pending.clone(),
                    ));
                }
                Err(e) => tracing::error!(worker = worker.index, "cannot start QUIC endpoint: {e}"),
            }
        }
    }
}

/// Counts a connection accepted now into the worker's pending handshakes
/// (shedding the oldest if full) and starts `task` for it.
pub fn spawn_pending<F>(
    worker: &Worker,
    pending: &Rc<PendingHandshakes>,
    transport: &'static str,
    task: impl FnOnce(Pending) -> F,
) where
    F: std::future::Future<Output = ()> + 'static,
{
    let settings = worker.settings();
    let accepted = Instant::now();
    let (ticket, shed) = pending.admit(
        settings.max_pending_handshakes,
        transport,
        accepted,
        accepted + settings.handshake_timeout,
    );
    if shed > 0 {
        tracing::debug!(
            worker = worker.index,
            shed,
            "pending handshakes at their bound: shed the oldest"
        );
    }
    let id = ticket.id();
    let handle = tokio::task::spawn_local(task(ticket));
    pending.attach(id, handle.abort_handle());
}

async fn accept_wss(
    worker: Rc<Worker>,
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    pending: Rc<PendingHandshakes>,
) {
    let mut phase = worker.shared.phase.clone();
    while accepting(&mut phase).await {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let task_worker = worker.clone();
                    spawn_pending(&worker, &pending, "wss", move |ticket| async move {
                        let deadline = ticket.deadline().into();
                        match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => {
                                crate::transport::ws::serve(task_worker, tls, "wss", peer, ticket).await;
                            }
                            Ok(Err(e)) => {
                                tracing::debug!("TLS handshake failed: {e}");
                                crate::metrics::count_handshake("wss", "tls_failed");
                            }
                            Err(_) => crate::metrics::count_handshake("wss", "tls_timeout"),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(worker = worker.index, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            _ = phase.wait_for(|p| !p.is_accepting()) => {}
        }
    }
}

/// Waits until the phase allows accepting; `false` when the listener must
/// close for good.
pub async fn accepting(phase: &mut tokio::sync::watch::Receiver<crate::phase::Phase>) -> bool {
    match phase
        .wait_for(|p| p.is_accepting() || p.stops_accepting())
        .await
    {
        Ok(p) => p.is_accepting(),
        Err(_) => false,
    }
}

async fn accept_ws(
    worker: Rc<Worker>,
    listener: tokio::net::TcpListener,
    pending: Rc<PendingHandshakes>,
) {
    let mut phase = worker.shared.phase.clone();
    while accepting(&mut phase).await {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tracing::trace!(worker = worker.index, %peer, "accepted");
                    let _ = stream.set_nodelay(true);
                    let task_worker = worker.clone();
                    spawn_pending(&worker, &pending, "ws", move |ticket| {
                        crate::transport::ws::serve(task_worker, stream, "ws", peer, ticket)
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(worker = worker.index, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            _ = phase.wait_for(|p| !p.is_accepting()) => {}
        }
    }
}
