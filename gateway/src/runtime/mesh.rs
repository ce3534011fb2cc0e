//! The bounded queues between workers.
//!
//! Each worker has three inboxes, each drained by its own task:
//!
//! - `sequencer`: publishes and (un)subscriptions for the channels it owns;
//! - `delivery`: sequenced messages for its local subscribers;
//! - `control`: session takeover, drain and reload.
//!
//! The delivery task never waits on another queue, so the only waits are
//! connection → sequencer → delivery: no cycle, no deadlock, and a full
//! queue pushes back on the publishing connection.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ferry_protocol::{ChannelName, ResumeSecret, SessionId};
use tokio::sync::{mpsc, oneshot};

use crate::fanout::sequencer::Subscription;
use crate::session::registry::SessionRef;
use crate::session::state::SessionSnapshot;
use crate::settings::Settings;

/// Capacity of each inbox, in messages.
pub const INBOX_CAPACITY: usize = 8192;

/// To a channel's sequencer.
#[derive(Debug)]
pub enum SequencerMsg {
    /// Sequence and fan out a message.
    Publish {
        /// The channel.
        channel: ChannelName,
        /// The payload, shared by every subscriber.
        payload: Bytes,
        /// When the gateway received it (publish-to-delivery latency).
        received_at: Instant,
        /// Answer with the offset assigned (the ops publish API).
        reply: Option<oneshot::Sender<u64>>,
    },
    /// A session on `worker` starts listening.
    Subscribe {
        /// The channel.
        channel: ChannelName,
        /// The session's worker.
        worker: usize,
        /// The session.
        session: SessionRef,
        /// The client's request, answered once the subscription holds.
        request_id: Option<u64>,
        /// Catch up from this offset (a session that moved).
        from_offset: Option<u64>,
    },
    /// A session on `worker` stops listening.
    Unsubscribe {
        /// The channel.
        channel: ChannelName,
        /// The session's worker.
        worker: usize,
    },
    /// Answered once everything queued before it has been sequenced and
    /// handed to the delivery queues.
    Barrier(oneshot::Sender<()>),
}

/// To a worker with subscribers.
#[derive(Debug)]
pub enum DeliveryMsg {
    /// A sequenced message.
    Deliver {
        /// The channel.
        channel: ChannelName,
        /// Its offset.
        offset: u64,
        /// The payload.
        payload: Bytes,
        /// When the gateway received it.
        received_at: Instant,
    },
    /// A subscription now holds: from here on the queue carries every
    /// message after `sub.current_offset`.
    Subscribed {
        /// The channel.
        channel: ChannelName,
        /// The session.
        session: SessionRef,
        /// The client's request, if any.
        request_id: Option<u64>,
        /// Offset and catch-up.
        sub: Subscription,
    },
    /// Answered once everything queued before it has been delivered.
    Barrier(oneshot::Sender<()>),
}

/// Why a worker did not hand a session over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeRefused {
    /// Not on this worker, or the secret does not match (the two look
    /// alike to the client).
    NotHere,
    /// The secret matches, but the session belongs to another user than
    /// the one resuming it: it stays where it is, its connection untouched.
    OtherUser,
    /// The session left this worker for worker `0` a moment ago: ask there.
    MovedTo(usize),
    /// This worker is receiving the session right now: ask again shortly.
    InFlight,
    /// A connection whose HELLO came later owns the session: the older
    /// HELLO loses, whichever handshake finishes first.
    Superseded,
}

/// To a worker, from the server or another worker.
#[derive(Debug)]
pub enum ControlMsg {
    /// Hand over session `id` if it is here, `secret` matches and, when
    /// `user` is set, the session is that user's.
    TakeSession {
        /// The session.
        id: SessionId,
        /// The secret the client presented.
        secret: ResumeSecret,
        /// The authenticated user resuming it; `None` checks no user
        /// (anonymous clients, or a pull whose user is checked on arrival).
        user: Option<String>,
        /// When the resuming HELLO arrived; `None` (a pull by the next
        /// process) takes the session whoever holds it.
        hello_at: Option<Instant>,
        /// The worker asking; `None` when the session leaves the process.
        requester: Option<usize>,
        /// The snapshot, or why not.
        reply: oneshot::Sender<Result<Box<SessionSnapshot>, TakeRefused>>,
    },
    /// New settings for every worker.
    Reload(Arc<Settings>),
    /// Close the sessions of `user` (the ops API); answer how many.
    DisconnectUser {
        /// The authenticated user.
        user: String,
        /// Also forget the sessions, so they cannot be resumed.
        drop_sessions: bool,
        /// The number of sessions closed or dropped on this worker.
        reply: oneshot::Sender<usize>,
    },
    /// Upgrade, old side: tell every client to reconnect (GOAWAY, paced
    /// at `reconnect_rate` per second over all workers) and wait, bounded,
    /// for the connections to close. Sessions stay, detached.
    Freeze {
        /// Sessions per second told to come back, gateway-wide.
        reconnect_rate: u32,
        /// Done.
        reply: oneshot::Sender<()>,
    },
    /// Upgrade, old side: copies of every session and channel.
    Export {
        /// The copies.
        reply: oneshot::Sender<crate::upgrade::WorkerExport>,
    },
    /// Upgrade, new side: channels whose sequencer is now this worker.
    InstallChannels {
        /// Their states.
        channels: Vec<crate::upgrade::wire::ChannelSnapshot>,
        /// Done.
        reply: oneshot::Sender<()>,
    },
    /// Upgrade, new side: sessions from the old process, detached until
    /// their clients come back.
    InstallSessions {
        /// The sessions.
        sessions: Vec<SessionSnapshot>,
        /// Done.
        reply: oneshot::Sender<()>,
    },
}

/// The senders of one worker's inboxes.
#[derive(Debug, Clone)]
pub struct WorkerLinks {
    /// Sequencer inbox.
    pub sequencer: mpsc::Sender<SequencerMsg>,
    /// Delivery inbox.
    pub delivery: mpsc::Sender<DeliveryMsg>,
    /// Control inbox.
    pub control: mpsc::Sender<ControlMsg>,
}

/// The receivers of one worker's inboxes.
#[derive(Debug)]
pub struct WorkerInbox {
    /// Sequencer inbox.
    pub sequencer: mpsc::Receiver<SequencerMsg>,
    /// Delivery inbox.
    pub delivery: mpsc::Receiver<DeliveryMsg>,
    /// Control inbox.
    pub control: mpsc::Receiver<ControlMsg>,
}

/// Every worker's links.
#[derive(Debug)]
pub struct Mesh {
    workers: Vec<WorkerLinks>,
}

impl Mesh {
    /// Queues for `n` workers.
    pub fn new(n: usize) -> (Arc<Mesh>, Vec<WorkerInbox>) {
        let mut workers = Vec::with_capacity(n);
        let mut inboxes = Vec::with_capacity(n);
        for _ in 0..n {
            let (seq_tx, seq_rx) = mpsc::channel(INBOX_CAPACITY);
            let (del_tx, del_rx) = mpsc::channel(INBOX_CAPACITY);
            let (ctl_tx, ctl_rx) = mpsc::channel(INBOX_CAPACITY);
            workers.push(WorkerLinks {
                sequencer: seq_tx,
                delivery: del_tx,
                control: ctl_tx,
            });
            inboxes.push(WorkerInbox {
                sequencer: seq_rx,
                delivery: del_rx,
                control: ctl_rx,
            });
        }
        (Arc::new(Mesh { workers }), inboxes)
    }

    /// Links of worker `i`.
    pub fn worker(&self, i: usize) -> &WorkerLinks {
        &self.workers[i % self.workers.len()]
    }

    /// Number of workers.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Whether there are no workers.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// All workers' links.
    pub fn all(&self) -> &[WorkerLinks] {
        &self.workers
    }
}
