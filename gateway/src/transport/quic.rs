//! QUIC transport (quinn): one endpoint per worker on a shared UDP port.
//!
//! Every worker binds the same port with SO_REUSEPORT. A QUIC connection
//! must stay with the worker that owns it even when the client's address
//! changes (NAT rebinding, Wi-Fi to cellular), but the kernel spreads
//! datagrams by their 4-tuple, which changes with the address. So each
//! worker issues connection IDs whose first byte is its index
//! ([`WorkerCids`]), and a classic BPF program on the reuseport group
//! ([`steer_group`]) picks the socket from that byte of the
//! destination connection ID. Packets follow the connection, not the
//! address, at no cost in user space.
//!
//! Frames travel on one bidirectional stream opened by the client, each
//! preceded by its length as a varint.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ferry_protocol::codec::split_length_prefixed;
use quinn::crypto::rustls::QuicServerConfig;
use quinn::{ConnectionIdGenerator, EndpointConfig, IdleTimeout, VarInt};
use socket2::{Domain, Protocol, Socket, Type};

use super::pending::{Pending, PendingHandshakes};
use super::{FrameIo, TransportError};
use crate::runtime::worker::Worker;
use crate::session::driver;
use crate::settings::Settings;

/// Length of the connection IDs the gateway issues.
const CID_LEN: usize = 8;

/// Largest chunk read from a stream at once.
const READ_CHUNK: usize = 64 * 1024;

/// Issues connection IDs whose first byte names the owning worker; the
/// other bytes are random, so IDs stay unlinkable for observers.
#[derive(Debug)]
pub struct WorkerCids {
    worker: u8,
}

impl ConnectionIdGenerator for WorkerCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        let mut bytes: [u8; CID_LEN] = rand::random();
        bytes[0] = self.worker;
        quinn::ConnectionId::new(&bytes)
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// Binds `count` UDP sockets on `addr` in one reuseport group (the first
/// picks the port when it is 0) and steers datagrams by connection ID.
pub fn bind_udp_group(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::UdpSocket>> {
    let addr = crate::transport::listener::resolve_port_zero(addr, Type::DGRAM)?;
    let all = (0..count)
        .map(|_| bind_udp_reuseport(addr))
        .collect::<std::io::Result<Vec<_>>>()?;
    if count > 1 {
        steer_group(&all[0], count);
    }
    Ok(all)
}

/// Attaches (or replaces) the steering program of a reuseport group for
/// `workers` workers; a failure is logged, since QUIC still works without
/// it for clients that keep their address.
pub fn steer_group(socket: &std::net::UdpSocket, workers: usize) {
    if let Err(e) = attach_cid_steering(socket, workers) {
        tracing::warn!(
            "QUIC connection-ID steering unavailable ({e}); clients that change address may have to reconnect"
        );
    }
}

/// Binds one UDP socket that joins the reuseport group on `addr`.
pub fn bind_udp_reuseport(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    // Room for bursts of small datagrams from many clients.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Builds the classic BPF program that returns, for a QUIC datagram, the
/// index of the worker named by the first byte of its destination
/// connection ID: offset 1 for short headers, offset 6 for long headers
/// (after flags, version and the DCID length).
fn cid_steering_program(workers: u32) -> [libc::sock_filter; 7] {
    const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
    const JA: u16 = 0x05; // BPF_JMP | BPF_JA
    const MOD_K: u16 = 0x94; // BPF_ALU | BPF_MOD | BPF_K
    const RET_A: u16 = 0x16; // BPF_RET | BPF_A
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    [
        op(LD_B_ABS, 0, 0, 0),    // 0: A = first byte
        op(JSET_K, 2, 0, 0x80),   // 1: long header? -> 4
        op(LD_B_ABS, 0, 0, 1),    // 2: short: A = DCID[0]
        op(JA, 0, 0, 1),          // 3: -> 5
        op(LD_B_ABS, 0, 0, 6),    // 4: long: A = DCID[0]
        op(MOD_K, 0, 0, workers), // 5: A %= workers
        op(RET_A, 0, 0, 0),       // 6: socket index A
    ]
}

/// Attaches the steering program to the reuseport group of `socket`.
fn attach_cid_steering(socket: &std::net::UdpSocket, workers: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let workers = u32::try_from(workers.min(256)).unwrap_or(256);
    let mut program = cid_steering_program(workers);
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: setsockopt reads `size_of::<sock_fprog>()` bytes from a valid
    // `sock_fprog` that lives on this stack frame for the whole call; its
    // `filter` points to `program`, an array of `len` initialized
    // `sock_filter`s that also outlives the call (the kernel copies it).
    // The fd is owned by `socket`, which is borrowed for the call.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The quinn server configuration: ALPN `ferry/1`, one bidirectional
/// stream per connection, windows sized for many small sessions, and no
/// keep-alive unless configured (mobile battery: the Ferry heartbeat
/// already keeps the path alive at the interval the client chose).
pub fn server_config(
    tls: rustls::ServerConfig,
    settings: &Settings,
) -> Result<quinn::ServerConfig, String> {
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| e.to_string())?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(1))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(varint(settings.quic_stream_receive_window))
        .receive_window(varint(settings.quic_receive_window))
        .send_window(settings.quic_send_window as u64)
        .datagram_receive_buffer_size(None)
        .keep_alive_interval(settings.quic_keep_alive);
    let idle = IdleTimeout::try_from(settings.quic_idle_timeout).map_err(|e| e.to_string())?;
    transport.max_idle_timeout(Some(idle));
    config.transport_config(Arc::new(transport));
    config.migration(true);
    Ok(config)
}

fn varint(n: usize) -> VarInt {
    VarInt::from_u64(n as u64).unwrap_or(VarInt::MAX)
}

/// Creates worker `index`'s endpoint on its socket; must run inside the
/// worker's runtime.
pub fn endpoint(
    index: usize,
    socket: std::net::UdpSocket,
    config: quinn::ServerConfig,
    reset_key: &[u8; 32],
) -> std::io::Result<quinn::Endpoint> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, reset_key);
    let mut endpoint_config = EndpointConfig::new(Arc::new(key));
    let worker = u8::try_from(index % 256).unwrap_or(0);
    endpoint_config.cid_generator(move || Box::new(WorkerCids { worker }));
    quinn::Endpoint::new(
        endpoint_config,
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// Accepts QUIC connections until the gateway stops accepting. While
/// paused (upgrade) the endpoint refuses new connections but keeps
/// serving the ones it has.
pub async fn accept_loop(
    worker: Rc<Worker>,
    endpoint: quinn::Endpoint,
    config: quinn::ServerConfig,
    pending: Rc<PendingHandshakes>,
) {
    let mut phase = worker.shared.phase.clone();
    while crate::transport::listener::accepting(&mut phase).await {
        endpoint.set_server_config(Some(config.clone()));
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => {
                    let task_worker = worker.clone();
                    crate::transport::listener::spawn_pending(&worker, &pending, "quic", move |ticket| {
                        serve(task_worker, incoming, ticket)
                    });
                }
                None => break,
            },
            _ = phase.wait_for(|p| !p.is_accepting()) => endpoint.set_server_config(None),
        }
    }
    endpoint.set_server_config(None);
    // Keep the endpoint (and so the connections) alive until they close.
    endpoint.wait_idle().await;
}

async fn serve(worker: Rc<Worker>, incoming: quinn::Incoming, pending: Pending) {
    let started = pending.accepted();
    // One deadline for the QUIC handshake, the stream and HELLO together.
    let deadline = tokio::time::Instant::from(pending.deadline());
    let connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        Err(e) => {
            tracing::debug!("QUIC connection refused: {e}");
            crate::metrics::count_handshake("quic", "refused");
            return;
        }
    };
    let connection = match tokio::time::timeout_at(deadline, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!("QUIC handshake failed: {e}");
            crate::metrics::count_handshake("quic", "tls_failed");
            return;
        }
        Err(_) => {
            crate::metrics::count_handshake("quic", "tls_timeout");
            return;
        }
    };
    let (send, recv) = match tokio::time::timeout_at(deadline, connection.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        _ => {
            crate::metrics::count_handshake("quic", "no_stream");
            connection.close(VarInt::from_u32(0), b"open one bidirectional stream");
            return;
        }
    };
    // The address at the handshake: a client that migrates later keeps
    // being counted where it authenticated.
    let peer = connection.remote_address();
    let io = QuicIo {
        connection,
        send,
        recv,
        buffer: BytesMut::new(),
        out: BytesMut::new(),
        max_frame_size: worker.settings().decode.max_frame_size,
        pending: Some(pending),
    };
    driver::run(worker, io, "quic", started, peer).await;
}

/// A QUIC stream carrying length-prefixed Ferry frames.
pub struct QuicIo {
    connection: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    buffer: BytesMut,
    out: BytesMut,
    max_frame_size: usize,
    /// Until HELLO: the handshake's place among the worker's pending ones.
    pending: Option<Pending>,
}

impl FrameIo for QuicIo {
    async fn recv(&mut self) -> Result<Option<Bytes>, TransportError> {
        loop {
            match split_length_prefixed(&mut self.buffer, self.max_frame_size) {
                Ok(Some(frame)) => {
                    if self.buffer.is_empty() {
                        // Give the read buffer back while idle.
                        self.buffer = BytesMut::new();
                    }
                    return Ok(Some(frame));
                }
                Ok(None) => {}
                Err(ferry_protocol::DecodeError::Oversize { .. }) => {
                    return Err(TransportError::TooLarge);
                }
                // An invalid varint prefix: the peer's fault, and a reason
                // it must hear (100) rather than a bare close.
                Err(e) => return Err(TransportError::Malformed(e.to_string())),
            }
            // read_chunk is cancel-safe: data leaves the stream only when
            // the call completes.
            match self.recv.read_chunk(READ_CHUNK, true).await {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk.bytes),
                Ok(None) => return Ok(None),
                Err(e) => return Err(TransportError::Failed(e.to_string())),
            }
        }
    }

    async fn send(&mut self, frames: &mut Vec<Bytes>) -> Result<(), TransportError> {
        for frame in frames.drain(..) {
            ferry_protocol::codec::put_varint(&mut self.out, frame.len() as u64);
            self.out.extend_from_slice(&frame);
        }
        let batch = self.out.split().freeze();
        self.send
            .write_chunk(batch)
            .await
            .map_err(|e| TransportError::Failed(e.to_string()))
    }

    async fn close(&mut self, last: Option<Bytes>) {
        let close = async {
            if let Some(frame) = last {
                let mut frames = vec![frame];
                let _ = FrameIo::send(self, &mut frames).await;
            }
            let _ = self.send.finish();
            let _ = self.send.stopped().await;
        };
        // Short: during an upgrade the old process must stop reading the
        // shared UDP sockets soon, and the client resumes anyway.
        let _ = tokio::time::timeout(Duration::from_millis(200), close).await;
        self.connection.close(VarInt::from_u32(0), b"closed");
    }

    fn handshake_deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(Pending::deadline)
    }

    fn handshake_done(&mut self) {
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the classic BPF program the way the kernel would on a datagram.
    fn run(program: &[libc::sock_filter], packet: &[u8]) -> u32 {
        let mut a: u32 = 0;
        let mut pc = 0;
        loop {
            let ins = &program[pc];
            pc += 1;
            match ins.code {
                0x30 => match packet.get(ins.k as usize) {
                    Some(b) => a = u32::from(*b),
                    None => return 0,
                },
                0x45 => pc += if a & ins.k != 0 { ins.jt } else { ins.jf } as usize,
                0x05 => pc += ins.k as usize,
                0x94 => a %= ins.k,
                0x16 => return a,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn steering_follows_the_connection_id_not_the_address() {
        let program = cid_steering_program(2);
        let mut cids = WorkerCids { worker: 1 };
        let cid = cids.generate_cid();
        assert_eq!(cid.len(), CID_LEN);
        // Short header: flags then DCID.
        let mut short = vec![0x40];
        short.extend_from_slice(&cid);
        short.extend_from_slice(&[0; 20]);
        assert_eq!(run(&program, &short), 1);
        // Long header (Handshake): flags, version, DCID length, DCID.
        let mut long = vec![0xe0, 0, 0, 0, 1, CID_LEN as u8];
        long.extend_from_slice(&cid);
        assert_eq!(run(&program, &long), 1);
        let mut cids0 = WorkerCids { worker: 0 };
        let mut short0 = vec![0x40];
        short0.extend_from_slice(&cids0.generate_cid());
        assert_eq!(run(&program, &short0), 0);
    }
}
