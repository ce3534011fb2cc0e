//! Old side of an upgrade: serve the control socket, hand the listening
//! sockets and then every session and channel to the new process.

use std::cell::{Cell, RefCell};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ferry_protocol::SessionId;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, watch};

use super::fd_transfer::send_fds;
use super::wire::{ControlFrame, WIRE_VERSION, WireError, read_frame, write_frame};
use crate::phase::Phase;
use crate::runtime::mesh::{ControlMsg, DeliveryMsg, Mesh, SequencerMsg};

/// Sessions per control message.
const SESSIONS_PER_FRAME: usize = 1000;

/// Duplicates of the listening sockets, kept to hand over.
#[derive(Debug, Default)]
pub struct ListenerFds {
    /// WebSocket listeners, one per worker.
    pub ws: Vec<OwnedFd>,
    /// WSS listeners.
    pub wss: Vec<OwnedFd>,
    /// QUIC sockets.
    pub quic: Vec<OwnedFd>,
}

/// What the old process needs to hand over.
#[derive(Debug)]
pub struct Handover<'a> {
    /// Queues to the workers.
    pub mesh: &'a Arc<Mesh>,
    /// The phase, to pause and resume accepting.
    pub phase: &'a watch::Sender<Phase>,
    /// The sockets to pass.
    pub fds: &'a ListenerFds,
    /// Reconnects per second asked of clients.
    pub reconnect_rate: u32,
    /// How long the whole takeover may take.
    pub deadline: Duration,
}

/// How a takeover attempt ended.
#[derive(Debug)]
pub enum Outcome {
    /// The new process has everything; this one should exit.
    Committed {
        /// Sessions handed over.
        sessions: u64,
    },
    /// The takeover failed; this process serves on.
    RolledBack(String),
}

/// Binds the control socket (replacing a stale file).
pub fn bind_control_socket(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    tokio::net::UnixListener::bind(path)
}

/// Runs one takeover on an accepted control connection.
pub async fn serve(stream: UnixStream, ctx: Handover<'_>) -> Outcome {
    let deadline = ctx.deadline;
    match tokio::time::timeout(deadline, run(stream, &ctx)).await {
        Ok(Ok(sessions)) => Outcome::Committed { sessions },
        Ok(Err(reason)) => rollback(&ctx, reason),
        Err(_) => rollback(&ctx, format!("the takeover took longer than {deadline:?}")),
    }
}

fn rollback(ctx: &Handover<'_>, reason: String) -> Outcome {
    if *ctx.phase.borrow() == Phase::HandingOver {
        ctx.phase.send_replace(Phase::Running);
    }
    metrics::counter!("ferry_upgrades_total", "side" => "old", "outcome" => "rolled_back")
        .increment(1);
    Outcome::RolledBack(reason)
}

async fn run(stream: UnixStream, ctx: &Handover<'_>) -> Result<u64, String> {
    let (mut reader, mut writer) = stream.into_split();
    match read_frame(&mut reader).await {
        Ok(ControlFrame::Hello { version }) if version == WIRE_VERSION => {}
        Ok(other) => return Err(format!("expected Hello, got {other:?}")),
        Err(e) => return Err(e.to_string()),
    }
    tracing::info!("upgrade: a new process is taking over");
    ctx.phase.send_replace(Phase::HandingOver);
    metrics::gauge!("ferry_upgrade_in_progress").set(1.0);

    // 1. The sockets. They stay open here too, so nothing is refused.
    let listeners = ControlFrame::Listeners {
        reset_key: [0; 32],
        ws: ctx.fds.ws.len() as u64,
        wss: ctx.fds.wss.len() as u64,
        quic: ctx.fds.quic.len() as u64,
    };
    write_frame(&mut writer, &listeners)
        .await
        .map_err(|e| e.to_string())?;
    let raw: Vec<RawFd> = ctx
        .fds
        .ws
        .iter()
        .chain(&ctx.fds.wss)
        .chain(&ctx.fds.quic)
        .map(|fd| fd.as_raw_fd())
        .collect();
    writer
        .as_ref()
        .writable()
        .await
        .map_err(|e| e.to_string())?;
    send_fds(writer.as_ref(), &raw).map_err(|e| format!("cannot pass the sockets: {e}"))?;

    // Everything else goes through one writer task, so answers to pulls
    // and the bulk transfer keep one order.
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<ControlFrame>();
    let writer_task = tokio::task::spawn_local(async move {
        while let Some(frame) = out_rx.recv().await {
            write_frame(&mut writer, &frame).await?;
        }
        Ok::<_, WireError>(())
    });
    let pulls = Rc::new(PullState::default());
    let (committed_tx, committed_rx) = oneshot::channel();
    let reader_task = tokio::task::spawn_local(answer_new_process(
        reader,
        ctx.mesh.clone(),
        out_tx.clone(),
        pulls.clone(),
        committed_tx,
    ));

    // 2. Clients away, queues flushed, then copies of everything.
    freeze_and_flush(ctx).await?;
    pulls.stage.set(Stage::Exporting);
    let mut channels = Vec::new();
    let mut sessions = Vec::new();
    for links in ctx.mesh.all() {
        let (tx, rx) = oneshot::channel();
        let _ = links.control.send(ControlMsg::Export { reply: tx }).await;
        let export = rx
            .await
            .map_err(|_| "a worker stopped during export".to_owned())?;
        channels.extend(export.channels);
        sessions.extend(export.sessions);
    }
    let total = sessions.len() as u64;
    tracing::info!(
        sessions = total,
        channels = channels.len(),
        "upgrade: sending state"
    );
    let send = |f| {
        out_tx
            .send(f)
            .map_err(|_| "control connection closed".to_owned())
    };
    send(ControlFrame::Channels(channels))?;
    while !sessions.is_empty() {
        let rest = sessions.split_off(sessions.len().min(SESSIONS_PER_FRAME));
        let shipped = sessions.len() as u64;
        send(ControlFrame::Sessions(sessions))?;
        metrics::counter!("ferry_upgrade_sessions_sent_total").increment(shipped);
        sessions = rest;
    }
    send(ControlFrame::Done { sessions: total })?;
    pulls.stage.set(Stage::Sent);
    for id in pulls.deferred.take() {
        send(ControlFrame::Pulled { id, snapshot: None })?;
    }
    drop(out_tx);

    // 3. Wait for the new process to confirm.
    let committed = committed_rx.await.unwrap_or(false);
    reader_task.abort();
    let _ = writer_task.await;
    metrics::gauge!("ferry_upgrade_in_progress").set(0.0);
    if committed {
        metrics::counter!("ferry_upgrades_total", "side" => "old", "outcome" => "committed")
            .increment(1);
        Ok(total)
    } else {
        Err("the new process went away before confirming".into())
    }
}

/// GOAWAY to every client, then barriers through every sequencer and
/// every delivery queue so that each accepted publish is in the replay
/// logs before they are copied.
async fn freeze_and_flush(ctx: &Handover<'_>) -> Result<(), String> {
    let stopped = || "a worker stopped during the upgrade".to_owned();
    let mut waits = Vec::new();
    for links in ctx.mesh.all() {
        let (tx, rx) = oneshot::channel();
        let msg = ControlMsg::Freeze {
            reconnect_rate: ctx.reconnect_rate,
            reply: tx,
        };
        links.control.send(msg).await.map_err(|_| stopped())?;
        waits.push(rx);
    }
    for rx in waits {
        rx.await.map_err(|_| stopped())?;
    }
    for links in ctx.mesh.all() {
        let (tx, rx) = oneshot::channel();
        links
            .sequencer
            .send(SequencerMsg::Barrier(tx))
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?;
    }
    for links in ctx.mesh.all() {
        let (tx, rx) = oneshot::channel();
        links
            .delivery
            .send(DeliveryMsg::Barrier(tx))
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?;
    }
    Ok(())
}

/// How far the bulk transfer is, for answering pulls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Sessions can still be taken one by one.
    Live,
    /// Sessions are being copied and sent: a pull is answered after them.
    Exporting,
    /// Everything is sent: a pull is answered "not here" at once.
    Sent,
}

#[derive(Debug)]
struct PullState {
    stage: Cell<Stage>,
    deferred: RefCell<Vec<SessionId>>,
}

impl Default for PullState {
    fn default() -> Self {
        Self {
            stage: Cell::new(Stage::Live),
            deferred: RefCell::new(Vec::new()),
        }
    }
}

/// Reads what the new process says: pulls (a session taken at once while
/// the transfer has not started; otherwise "not here", sent only after the
/// bulk transfer so the answer never overtakes the session) and the final
/// Committed.
async fn answer_new_process(
    mut reader: tokio::net::unix::OwnedReadHalf,
    mesh: Arc<Mesh>,
    out: mpsc::UnboundedSender<ControlFrame>,
    pulls: Rc<PullState>,
    committed: oneshot::Sender<bool>,
) {
    loop {
        match read_frame(&mut reader).await {
            Ok(ControlFrame::Pull { id, secret }) => {
                match pulls.stage.get() {
                    Stage::Exporting => {
                        pulls.deferred.borrow_mut().push(id);
                        continue;
                    }
                    Stage::Sent => {
                        let _ = out.send(ControlFrame::Pulled { id, snapshot: None });
                        continue;
                    }
                    Stage::Live => {}
                }
                match take_session(&mesh, id, secret, &pulls).await {
                    Taken::Found(snapshot) => {
                        tracing::info!(session = ?id, "upgrade: session pulled early");
                        let _ = out.send(ControlFrame::Pulled {
                            id,
                            snapshot: Some(snapshot),
                        });
                    }
                    Taken::NotHere => {
                        let _ = out.send(ControlFrame::Pulled { id, snapshot: None });
                    }
                    // The transfer started meanwhile: whatever is left goes
                    // with it, and the answer after it.
                    Taken::TooLate => pulls.deferred.borrow_mut().push(id),
                }
            }
            Ok(ControlFrame::Committed) => {
                let _ = committed.send(true);
                return;
            }
            Ok(other) => {
                tracing::warn!("upgrade: unexpected message {other:?}");
                let _ = committed.send(false);
                return;
            }
            Err(e) => {
                tracing::warn!("upgrade: control connection: {e}");
                let _ = committed.send(false);
                return;
            }
        }
    }
}

enum Taken {
    Found(Box<crate::session::state::SessionSnapshot>),
    NotHere,
    TooLate,
}

/// Takes a session out of whichever worker has it. Each request is queued
/// only while the transfer has not started: a worker handles its queue in
/// order, so a session taken here is never also in the export.
async fn take_session(
    mesh: &Mesh,
    id: SessionId,
    secret: ferry_protocol::ResumeSecret,
    pulls: &PullState,
) -> Taken {
    for links in mesh.all() {
        if pulls.stage.get() != Stage::Live {
            return Taken::TooLate;
        }
        let (tx, rx) = oneshot::channel();
        // The pulling process checks the user when the session arrives:
        // the pull carries no user.
        let msg = ControlMsg::TakeSession {
            id,
            secret,
            user: None,
            reply: tx,
        };
        if links.control.send(msg).await.is_ok()
            && let Ok(Ok(snapshot)) = rx.await
        {
            return Taken::Found(snapshot);
        }
    }
    Taken::NotHere
}
