//! One worker: a pinned OS thread running a current-thread tokio runtime.
//!
//! The worker owns its listeners, its sessions and the channels it
//! sequences. Its tasks: one per connection, plus the sequencer, delivery
//! and control inbox tasks and a periodic sweeper.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ferry_protocol::{ChannelName, ErrorCode};
use tokio::sync::watch;
use tokio::task::LocalSet;

use super::mesh::{ControlMsg, DeliveryMsg, Mesh, SequencerMsg, WorkerInbox};
use super::state::WorkerState;
use crate::auth::FailedAttempts;
use crate::fanout::router::owner_of;
use crate::fanout::sequencer::HistoryLimits;
use crate::metrics::WorkerCounters;
use crate::phase::Phase;
use crate::settings::Settings;
use crate::transport::listener::WorkerListeners;

/// State shared by every worker (touched on connect and disconnect only,
/// never per message).
#[derive(Debug)]
pub struct Shared {
    /// Open connections, all workers together (for `max_connections`).
    pub connections: AtomicUsize,
    /// The server phase.
    pub phase: watch::Receiver<Phase>,
    /// Whether sequencers may run (false while taking over channels).
    pub sequencers_open: watch::Receiver<bool>,
    /// While taking over from an old process: asks it for a session a
    /// client resumed before the session arrived.
    pub pull: Option<tokio::sync::mpsc::Sender<crate::upgrade::PullRequest>>,
}

/// A worker's handle to itself, shared by its tasks (`Rc`: never leaves
/// the thread).
#[derive(Debug)]
pub struct Worker {
    /// Index of this worker, 0-based.
    pub index: usize,
    /// Queues to every worker.
    pub mesh: Arc<Mesh>,
    /// Cross-worker shared state.
    pub shared: Arc<Shared>,
    settings: RefCell<Arc<Settings>>,
    /// Sessions, subscribers, sequencer.
    pub state: RefCell<WorkerState>,
    /// Local counters, flushed to `metrics` periodically.
    pub counters: RefCell<WorkerCounters>,
    /// Failed authentications per source address. Per worker: a source
    /// spread over several workers by the kernel gets up to `workers`
    /// times the limit, which keeps the check free of cross-core traffic.
    pub failed_auth: RefCell<FailedAttempts>,
    next_conn: Cell<u64>,
    live_connections: Cell<usize>,
}

impl Worker {
    /// The current settings snapshot.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.borrow().clone()
    }

    /// A new worker-local connection id.
    pub fn next_conn_id(&self) -> u64 {
        let id = self.next_conn.get() + 1;
        self.next_conn.set(id);
        id
    }

    /// Counts a connection in; `false` when the gateway is full.
    pub fn admit_connection(&self) -> bool {
        let max = self.settings.borrow().max_connections;
        let before = self.shared.connections.fetch_add(1, Ordering::Relaxed);
        self.live_connections.set(self.live_connections.get() + 1);
        before < max
    }

    /// Counts a connection out.
    pub fn release_connection(&self) {
        self.shared.connections.fetch_sub(1, Ordering::Relaxed);
        self.live_connections
            .set(self.live_connections.get().saturating_sub(1));
    }

    /// Connections open on this worker.
    pub fn live_connections(&self) -> usize {
        self.live_connections.get()
    }

    /// Tells the sequencers that a session left `channels`.
    pub async fn unsubscribe_all(&self, channels: Vec<ChannelName>) {
        let workers = self.mesh.len();
        for channel in channels {
            let owner = owner_of(&channel, workers);
            let msg = SequencerMsg::Unsubscribe {
                channel,
                worker: self.index,
            };
            // A closed inbox means the worker is gone and so is the count.
            let _ = self.mesh.worker(owner).sequencer.send(msg).await;
        }
    }
}

/// What a worker thread needs to start.
#[derive(Debug)]
pub struct WorkerSetup {
    /// Index of the worker.
    pub index: usize,
    /// Core to pin to, if pinning is possible.
    pub core: Option<core_affinity::CoreId>,
    /// Its listening sockets.
    pub listeners: WorkerListeners,
    /// Its inboxes.
    pub inbox: WorkerInbox,
    /// All workers' queues.
    pub mesh: Arc<Mesh>,
    /// Shared state.
    pub shared: Arc<Shared>,
    /// Initial settings.
    pub settings: Arc<Settings>,
}

/// Runs a worker on the current thread until the server stops.
pub fn run(setup: WorkerSetup) -> std::io::Result<()> {
    if let Some(core) = setup.core
        && !core_affinity::set_for_current(core)
    {
        tracing::warn!(worker = setup.index, "could not pin worker to its core");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = LocalSet::new();
    local.block_on(&runtime, worker_main(setup));
    Ok(())
}

async fn worker_main(setup: WorkerSetup) {
    let settings = setup.settings;
    let history = HistoryLimits {
        messages: settings.history_messages,
        bytes: settings.history_bytes,
    };
    let failed_auth = FailedAttempts::new(settings.failed_attempts_per_minute);
    let worker = Rc::new(Worker {
        index: setup.index,
        state: RefCell::new(WorkerState::new(
            setup.mesh.len(),
            history,
            settings.channel_idle_ttl,
        )),
        mesh: setup.mesh,
        shared: setup.shared,
        settings: RefCell::new(settings),
        counters: RefCell::new(WorkerCounters::new(setup.index)),
        failed_auth: RefCell::new(failed_auth),
        next_conn: Cell::new(0),
        live_connections: Cell::new(0),
    });
    let WorkerInbox {
        sequencer,
        delivery,
        control,
    } = setup.inbox;
    tokio::task::spawn_local(run_sequencer(worker.clone(), sequencer));
    tokio::task::spawn_local(run_delivery(worker.clone(), delivery));
    tokio::task::spawn_local(run_control(worker.clone(), control));
    tokio::task::spawn_local(run_sweeper(worker.clone()));
    setup.listeners.spawn_accept_loops(&worker);

    let mut phase = worker.shared.phase.clone();
    let _ = phase
        .wait_for(|p| *p == Phase::Draining || *p == Phase::Stopped)
        .await;
    drain(&worker).await;
    worker.counters.borrow_mut().flush(&worker);
}

/// Tells every client of this worker to go, then waits (bounded) for the
/// connections to close.
async fn drain(worker: &Rc<Worker>) {
    let settings = worker.settings();
    {
        let mut state = worker.state.borrow_mut();
        for (_, session) in state.sessions.iter_mut() {
            if matches!(
                session.attachment(),
                crate::session::state::Attachment::Attached { .. }
            ) {
                session.go_away(ErrorCode::ShuttingDown, 1000);
            }
        }
    }
    let deadline = Instant::now() + settings.drain_timeout;
    while worker.live_connections() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run_sequencer(worker: Rc<Worker>, mut rx: tokio::sync::mpsc::Receiver<SequencerMsg>) {
    // A process taking over from another must not give out offsets before
    // it has the old process's channel states.
    let mut gate = worker.shared.sequencers_open.clone();
    let _ = gate.wait_for(|open| *open).await;
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        let now = Instant::now();
        for msg in batch.drain(..) {
            handle_sequencer_msg(&worker, msg, now).await;
        }
    }
}

async fn handle_sequencer_msg(worker: &Rc<Worker>, msg: SequencerMsg, now: Instant) {
    match msg {
        SequencerMsg::Publish {
            channel,
            payload,
            received_at,
            reply,
        } => {
            let sequenced = worker
                .state
                .borrow_mut()
                .sequencer
                .publish(&channel, &payload, now);
            if let Some(reply) = reply {
                let _ = reply.send(sequenced.offset);
            }
            for target in sequenced.targets {
                let msg = DeliveryMsg::Deliver {
                    channel: channel.clone(),
                    offset: sequenced.offset,
                    payload: payload.clone(),
                    received_at,
                };
                let _ = worker.mesh.worker(target).delivery.send(msg).await;
            }
        }
        SequencerMsg::Subscribe {
            channel,
            worker: target,
            session,
            request_id,
            from_offset,
        } => {
            let sub =
                worker
                    .state
                    .borrow_mut()
                    .sequencer
                    .subscribe(&channel, target, from_offset, now);
            let msg = DeliveryMsg::Subscribed {
                channel,
                session,
                request_id,
                sub,
            };
            let _ = worker.mesh.worker(target).delivery.send(msg).await;
        }
        SequencerMsg::Unsubscribe {
            channel,
            worker: target,
        } => {
            worker
                .state
                .borrow_mut()
                .sequencer
                .unsubscribe(&channel, target, now);
        }
        SequencerMsg::Barrier(reply) => {
            let _ = reply.send(());
        }
    }
}

async fn run_delivery(worker: Rc<Worker>, mut rx: tokio::sync::mpsc::Receiver<DeliveryMsg>) {
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        let bound = worker.settings.borrow().outbound_queue_bytes;
        let mut state = worker.state.borrow_mut();
        let mut counters = worker.counters.borrow_mut();
        for msg in batch.drain(..) {
            match msg {
                DeliveryMsg::Deliver {
                    channel,
                    offset,
                    payload,
                    received_at,
                } => {
                    let counts = state.deliver(&channel, offset, &payload, bound);
                    counters.record_delivery(counts, received_at);
                }
                DeliveryMsg::Subscribed {
                    channel,
                    session,
                    request_id,
                    sub,
                } => state.subscribed(&channel, session, request_id, sub, bound),
                DeliveryMsg::Barrier(reply) => {
                    let _ = reply.send(());
                }
            }
        }
    }
}

async fn run_control(worker: Rc<Worker>, mut rx: tokio::sync::mpsc::Receiver<ControlMsg>) {
    while let Some(msg) = rx.recv().await {
        match msg {
            ControlMsg::TakeSession {
                id,
                secret,
                user,
                hello_at,
                requester,
                reply,
            } => {
                let taken = crate::session::handshake::give_away(
                    &worker,
                    crate::session::handshake::TakeRequest {
                        id,
                        secret: &secret,
                        user: user.as_deref(),
                        hello_at,
                        requester,
                    },
                );
                let snapshot = match taken {
                    Ok((snapshot, channels)) => {
                        worker.unsubscribe_all(channels).await;
                        Ok(Box::new(snapshot))
                    }
                    Err(refused) => Err(refused),
                };
                let _ = reply.send(snapshot);
            }
            ControlMsg::Reload(settings) => apply_settings(&worker, settings),
            ControlMsg::DisconnectUser {
                user,
                drop_sessions,
                reply,
            } => crate::ops::disconnect::disconnect_user(&worker, &user, drop_sessions, reply),
            ControlMsg::Freeze {
                reconnect_rate,
                reply,
            } => {
                crate::upgrade::freeze_worker(&worker, reconnect_rate).await;
                let _ = reply.send(());
            }
            ControlMsg::Export { reply } => {
                let _ = reply.send(crate::upgrade::export_worker(&worker));
            }
            ControlMsg::InstallChannels { channels, reply } => {
                worker
                    .state
                    .borrow_mut()
                    .sequencer
                    .import(channels, Instant::now());
                let _ = reply.send(());
            }
            ControlMsg::InstallSessions { sessions, reply } => {
                crate::upgrade::install_sessions(&worker, sessions).await;
                let _ = reply.send(());
            }
        }
    }
}

fn apply_settings(worker: &Worker, settings: Arc<Settings>) {
    let mut state = worker.state.borrow_mut();
    state.sequencer.set_limits(
        HistoryLimits {
            messages: settings.history_messages,
            bytes: settings.history_bytes,
        },
        settings.channel_idle_ttl,
    );
    for (_, session) in state.sessions.iter_mut() {
        session.log_mut().set_limits(settings.replay);
    }
    drop(state);
    if settings.failed_attempts_per_minute != worker.settings.borrow().failed_attempts_per_minute {
        // A new limit starts a fresh table: the counts so far were made
        // against the old one.
        *worker.failed_auth.borrow_mut() = FailedAttempts::new(settings.failed_attempts_per_minute);
    }
    *worker.settings.borrow_mut() = settings;
}

/// Sweeps of the failed-authentication table happen every this many
/// ticks: it may hold many sources, and an idle one costs only memory.
const FAILED_AUTH_SWEEP_TICKS: u32 = 15;

async fn run_sweeper(worker: Rc<Worker>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u32;
    loop {
        tick.tick().await;
        let now = Instant::now();
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(FAILED_AUTH_SWEEP_TICKS) {
            worker.failed_auth.borrow_mut().sweep(now);
        }
        let (window, budget) = {
            let settings = worker.settings.borrow();
            (settings.resume_window, settings.memory_budget)
        };
        let (expired, forgotten, shed, mut channels) = {
            let mut state = worker.state.borrow_mut();
            let forgotten = state.sequencer.sweep(now);
            state.forget_old_moves(now);
            let (expired, channels) = state.expire(now, window);
            let shed = state.shed(now, budget);
            (expired, forgotten, shed, channels)
        };
        if expired > 0 {
            tracing::debug!(worker = worker.index, expired, "detached sessions expired");
        }
        if shed.sessions_evicted > 0 {
            tracing::warn!(
                worker = worker.index,
                evicted = shed.sessions_evicted,
                budget,
                "over limits.memory_budget: evicted detached sessions, oldest first"
            );
        }
        {
            let mut counters = worker.counters.borrow_mut();
            counters.sessions_expired += expired as u64;
            counters.sessions_evicted += shed.sessions_evicted as u64;
            counters.channels_forgotten += (forgotten + shed.channels_forgotten) as u64;
        }
        channels.extend(shed.unsubscribe);
        worker.unsubscribe_all(channels).await;
        worker.counters.borrow_mut().flush(&worker);
    }
}
