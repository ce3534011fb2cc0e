//! Listening sockets: one per worker on the same address (SO_REUSEPORT),
//! so the kernel spreads connections over the workers and a connection
//! stays on the worker that accepted it.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::phase::Phase;
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

/// Binds `count` listeners on `addr`. With port 0 the first one picks the
/// port and the others join it.
pub fn bind_group(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let first = bind_tcp_reuseport(addr)?;
    let actual = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..count {
        all.push(bind_tcp_reuseport(actual)?);
    }
    Ok(all)
}

/// The listeners one worker owns.
#[derive(Debug, Default)]
pub struct WorkerListeners {
    /// Plain WebSocket.
    pub ws: Option<std::net::TcpListener>,
}

impl WorkerListeners {
    /// Starts an accept task per listener on the current worker.
    pub fn spawn_accept_loops(self, worker: &Rc<Worker>) {
        if let Some(ws) = self.ws {
            match tokio::net::TcpListener::from_std(ws) {
                Ok(listener) => {
                    tokio::task::spawn_local(accept_ws(worker.clone(), listener));
                }
                Err(e) => tracing::error!(worker = worker.index, "cannot use ws listener: {e}"),
            }
        }
    }
}

async fn accept_ws(worker: Rc<Worker>, listener: tokio::net::TcpListener) {
    let mut phase = worker.shared.phase.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::task::spawn_local(crate::transport::ws::serve(worker.clone(), stream, "ws"));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(worker = worker.index, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            // Not `!is_accepting()`: workers start while the phase is still
            // Starting, and that check would drop the listener at once.
            _ = phase.wait_for(|p| matches!(p, Phase::Draining | Phase::Stopped)) => break,
        }
    }
}
