//! The worker side of an upgrade: freezing and exporting (old process),
//! installing (new process).

use std::rc::Rc;
use std::time::{Duration, Instant};

use ferry_protocol::ErrorCode;

use super::wire::ChannelSnapshot;
use crate::runtime::worker::Worker;
use crate::session::handshake::resubscribe_moved;
use crate::session::state::{Attachment, Session, SessionSnapshot};

/// How long a freeze waits for connections to close.
const FREEZE_WAIT: Duration = Duration::from_secs(3);

/// Copies of one worker's sessions and channels.
#[derive(Debug, Default)]
pub struct WorkerExport {
    /// Every session.
    pub sessions: Vec<SessionSnapshot>,
    /// Every channel this worker sequences.
    pub channels: Vec<ChannelSnapshot>,
}

/// Sends every client of this worker away (GOAWAY "upgrading", with
/// reconnect hints spread so that the whole gateway sees at most
/// `reconnect_rate` reconnects per second), then waits for the
/// connections to close. Sessions stay, detached.
pub async fn freeze_worker(worker: &Rc<Worker>, reconnect_rate: u32) {
    let workers = worker.mesh.len() as u64;
    let rate = u64::from(reconnect_rate.max(1));
    {
        let mut state = worker.state.borrow_mut();
        let mut i: u64 = 0;
        for (_, session) in state.sessions.iter_mut() {
            if matches!(session.attachment(), Attachment::Attached { .. }) {
                // Interleave the workers' slots: worker w takes w, w+n, ...
                let slot = i * workers + worker.index as u64;
                session.go_away(ErrorCode::Upgrading, slot * 1000 / rate);
                i += 1;
            }
        }
    }
    let deadline = Instant::now() + FREEZE_WAIT;
    while worker.live_connections() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Copies every session and channel of this worker.
pub fn export_worker(worker: &Worker) -> WorkerExport {
    let state = worker.state.borrow();
    WorkerExport {
        sessions: state.sessions.iter().map(|(_, s)| s.snapshot()).collect(),
        channels: state.sequencer.export(),
    }
}

/// Installs sessions from the old process, detached, and subscribes them
/// again, catching up from the offset after the last one each received.
pub async fn install_sessions(worker: &Rc<Worker>, sessions: Vec<SessionSnapshot>) {
    let replay = worker.settings().replay;
    let now = Instant::now();
    let mut installed = Vec::new();
    {
        let mut state = worker.state.borrow_mut();
        for snapshot in sessions {
            if state.sessions.find(&snapshot.id).is_some() {
                continue;
            }
            let id = snapshot.id;
            match Session::from_snapshot(snapshot, replay, now) {
                Ok(session) => installed.push(state.sessions.insert(session)),
                Err(e) => tracing::warn!(session = ?id, "migrated session refused: {e}"),
            }
        }
    }
    for sref in installed {
        resubscribe_moved(worker, sref).await;
    }
}
