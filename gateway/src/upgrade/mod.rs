//! Zero-downtime upgrade: a new gateway process takes the listening
//! sockets and every session from the running one.
//!
//! ```text
//!  new process                       old process
//!  ───────────                       ───────────
//!  connect control socket ─ Hello ─> stop accepting (sockets stay open)
//!  receive sockets <── Listeners + SCM_RIGHTS ──┘
//!  start workers, accept (sequencers gated)
//!                                    GOAWAY to every client, paced; wait
//!                                    flush queues (barriers), export
//!  install channels, open gate <──── Channels
//!  install sessions           <──── Sessions ... Done
//!  Committed ───────────────────────> exit 0
//!  (a client that resumes before its session arrived: Pull ──> Pulled)
//! ```
//!
//! If the new process goes away before `Committed`, the old one keeps its
//! sessions (they were copied, not moved) and accepts again: rollback.
//! See `docs/upgrade.md` for the runbook.

pub mod fd_transfer;
pub mod handover;
pub mod migrate;
pub mod takeover;
pub mod wire;

pub use migrate::{WorkerExport, export_worker, freeze_worker, install_sessions};

use ferry_protocol::{ResumeSecret, SessionId};
use tokio::sync::oneshot;

use crate::session::state::SessionSnapshot;

/// A worker of the new process asks the old process for a session.
#[derive(Debug)]
pub struct PullRequest {
    /// The session.
    pub id: SessionId,
    /// The secret the client presented.
    pub secret: ResumeSecret,
    /// The session, if the old process still had it.
    pub reply: oneshot::Sender<Option<Box<SessionSnapshot>>>,
}
