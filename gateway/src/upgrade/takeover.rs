//! New side of an upgrade: take the sockets from the running process,
//! then receive its channels and sessions while already serving.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use ferry_protocol::SessionId;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

use super::PullRequest;
use super::fd_transfer::recv_fds;
use super::wire::{ControlFrame, MAX_MESSAGE, WIRE_VERSION, read_frame, write_frame};
use crate::fanout::router::owner_of;
use crate::runtime::mesh::{ControlMsg, Mesh};
use crate::session::state::SessionSnapshot;

/// The takeover could not be done.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TakeoverError {
    /// Config or ops: no gateway listens on the control socket.
    #[error(
        "cannot reach the running gateway at {path}: {source} (is it running with the same data directory / control socket?)"
    )]
    Connect {
        /// The control socket.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The running gateway broke off or spoke another version.
    #[error("the running gateway broke off the takeover: {0}")]
    Protocol(String),
}

/// The sockets received from the old process.
#[derive(Debug)]
pub struct Inherited {
    /// WebSocket listeners.
    pub ws: Vec<std::net::TcpListener>,
    /// WSS listeners.
    pub wss: Vec<std::net::TcpListener>,
    /// QUIC sockets.
    pub quic: Vec<std::net::UdpSocket>,
    /// The control connection, to continue with [`receive_state`].
    pub control: UnixStream,
}

/// Connects to the running gateway and receives its sockets (blocking:
/// runs before any runtime starts).
pub fn take_sockets(path: &Path) -> Result<Inherited, TakeoverError> {
    let proto = |e: String| TakeoverError::Protocol(e);
    let mut control = UnixStream::connect(path).map_err(|source| TakeoverError::Connect {
        path: path.display().to_string(),
        source,
    })?;
    control
        .write_all(
            &ControlFrame::Hello {
                version: WIRE_VERSION,
            }
            .encode(),
        )
        .map_err(|e| proto(e.to_string()))?;
    let mut len = [0u8; 4];
    control
        .read_exact(&mut len)
        .map_err(|e| proto(e.to_string()))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(proto(format!("message of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    control
        .read_exact(&mut body)
        .map_err(|e| proto(e.to_string()))?;
    let (ws, wss, quic) = match ControlFrame::decode(Bytes::from(body)) {
        Ok(ControlFrame::Listeners { ws, wss, quic, .. }) => (ws, wss, quic),
        Ok(ControlFrame::Abort { reason }) => return Err(proto(reason)),
        Ok(other) => return Err(proto(format!("expected Listeners, got {other:?}"))),
        Err(e) => return Err(proto(e.to_string())),
    };
    let mut fds = recv_fds(&control)
        .map_err(|e| proto(e.to_string()))?
        .into_iter();
    if fds.len() as u64 != ws + wss + quic {
        return Err(proto(format!(
            "expected {} sockets, received {}",
            ws + wss + quic,
            fds.len()
        )));
    }
    let mut take = |n: u64| -> Vec<OwnedFd> { fds.by_ref().take(n as usize).collect() };
    // tokio needs non-blocking sockets; do not rely on the sender.
    let unusable = |e: std::io::Error| proto(format!("cannot use a received socket: {e}"));
    let tcp = |fds: Vec<OwnedFd>| -> Result<Vec<std::net::TcpListener>, TakeoverError> {
        fds.into_iter()
            .map(|fd| {
                let l = std::net::TcpListener::from(fd);
                l.set_nonblocking(true).map_err(unusable)?;
                Ok(l)
            })
            .collect()
    };
    let ws = tcp(take(ws))?;
    let wss = tcp(take(wss))?;
    let quic = take(quic)
        .into_iter()
        .map(|fd| {
            let s = std::net::UdpSocket::from(fd);
            s.set_nonblocking(true).map_err(unusable)?;
            Ok(s)
        })
        .collect::<Result<Vec<_>, TakeoverError>>()?;
    Ok(Inherited {
        ws,
        wss,
        quic,
        control,
    })
}

/// Receives channels and sessions, installs them on the workers, answers
/// pulls, and confirms. Opens the sequencers once the channels are in
/// (also on failure: serving with fresh offsets beats not serving).
pub async fn receive_state(
    control: UnixStream,
    mesh: Arc<Mesh>,
    mut pulls: mpsc::Receiver<PullRequest>,
    gate: watch::Sender<bool>,
) -> Result<u64, TakeoverError> {
    let result = receive(control, &mesh, &mut pulls, &gate).await;
    gate.send_replace(true);
    result
}

async fn receive(
    control: UnixStream,
    mesh: &Arc<Mesh>,
    pulls: &mut mpsc::Receiver<PullRequest>,
    gate: &watch::Sender<bool>,
) -> Result<u64, TakeoverError> {
    let proto = |e: String| TakeoverError::Protocol(e);
    control
        .set_nonblocking(true)
        .map_err(|e| proto(e.to_string()))?;
    let stream = tokio::net::UnixStream::from_std(control).map_err(|e| proto(e.to_string()))?;
    let (mut reader, mut writer) = stream.into_split();
    // read_frame is not cancel-safe, so frames are read by their own task
    // and handed over a channel.
    let (frames_tx, mut frames) = mpsc::channel(16);
    let read_task = tokio::task::spawn_local(async move {
        loop {
            let frame = read_frame(&mut reader).await;
            let failed = frame.is_err();
            if frames_tx.send(frame).await.is_err() || failed {
                return;
            }
        }
    });
    let mut waiting: HashMap<SessionId, Vec<oneshot::Sender<Option<Box<SessionSnapshot>>>>> =
        HashMap::new();
    let mut installed = 0u64;
    let outcome = loop {
        tokio::select! {
            frame = frames.recv() => {
                let frame = match frame {
                    Some(Ok(frame)) => frame,
                    Some(Err(e)) => break Err(proto(e.to_string())),
                    None => break Err(proto("control connection closed".into())),
                };
                match frame {
                    ControlFrame::Channels(channels) => {
                        install_channels(mesh, channels).await;
                        gate.send_replace(true);
                    }
                    ControlFrame::Sessions(sessions) => {
                        installed += sessions.len() as u64;
                        install_sessions(mesh, sessions).await;
                        metrics::counter!("ferry_upgrade_sessions_received_total")
                            .absolute(installed);
                    }
                    ControlFrame::Pulled { id, snapshot } => {
                        for reply in waiting.remove(&id).unwrap_or_default() {
                            let _ = reply.send(snapshot.clone());
                        }
                    }
                    ControlFrame::Done { sessions } => {
                        if sessions != installed {
                            tracing::warn!(sent = sessions, installed, "upgrade: session count differs");
                        }
                        break Ok(installed);
                    }
                    ControlFrame::Abort { reason } => break Err(proto(reason)),
                    other => break Err(proto(format!("unexpected {other:?}"))),
                }
            }
            Some(pull) = pulls.recv() => {
                let frame = ControlFrame::Pull { id: pull.id, secret: pull.secret };
                waiting.entry(pull.id).or_default().push(pull.reply);
                if let Err(e) = write_frame(&mut writer, &frame).await {
                    break Err(proto(e.to_string()));
                }
            }
        }
    };
    if outcome.is_ok() {
        // Pulls answered after Done arrive before the old process reads
        // Committed; give them a moment, then confirm.
        while let Ok(Some(Ok(ControlFrame::Pulled { id, snapshot }))) =
            tokio::time::timeout(std::time::Duration::from_millis(50), frames.recv()).await
        {
            for reply in waiting.remove(&id).unwrap_or_default() {
                let _ = reply.send(snapshot.clone());
            }
        }
        write_frame(&mut writer, &ControlFrame::Committed)
            .await
            .map_err(|e| proto(e.to_string()))?;
    }
    read_task.abort();
    outcome
}

async fn install_channels(mesh: &Mesh, channels: Vec<super::wire::ChannelSnapshot>) {
    let mut by_owner: HashMap<usize, Vec<_>> = HashMap::new();
    for c in channels {
        by_owner
            .entry(owner_of(&c.channel, mesh.len()))
            .or_default()
            .push(c);
    }
    for (owner, channels) in by_owner {
        let (tx, rx) = oneshot::channel();
        let msg = ControlMsg::InstallChannels {
            channels,
            reply: tx,
        };
        if mesh.worker(owner).control.send(msg).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn install_sessions(mesh: &Mesh, sessions: Vec<SessionSnapshot>) {
    let mut by_worker: HashMap<usize, Vec<_>> = HashMap::new();
    for s in sessions {
        let worker = usize::from(s.id.0[0]) % mesh.len();
        by_worker.entry(worker).or_default().push(s);
    }
    for (worker, sessions) in by_worker {
        let (tx, rx) = oneshot::channel();
        let msg = ControlMsg::InstallSessions {
            sessions,
            reply: tx,
        };
        if mesh.worker(worker).control.send(msg).await.is_ok() {
            let _ = rx.await;
        }
    }
}
