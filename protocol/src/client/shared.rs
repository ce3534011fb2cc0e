//! What the [`Client`](super::Client) handles and the driver task share:
//! the commands they send it, and the state they read without asking it
//! (session id, counters, the QUIC endpoint for `rebind`, the kill signal).

use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::{Notify, oneshot};

use super::error::ClientError;
use super::event::ClientStats;
use crate::channel::ChannelName;
use crate::frame::SessionId;

/// What the [`Client`](super::Client) handle asks of the driver.
pub(crate) enum Command {
    Subscribe {
        channel: ChannelName,
        reply: oneshot::Sender<Result<u64, ClientError>>,
    },
    Unsubscribe {
        channel: ChannelName,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Publish {
        channel: ChannelName,
        payload: Bytes,
        reply: oneshot::Sender<Result<u64, ClientError>>,
    },
    WaitAcked {
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
    /// Use another endpoint (transport and URL) from the next reconnect on.
    SwitchEndpoint {
        connector: crate::client::transport::Connector,
    },
}

/// State the handle reads without asking the driver.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub session_id: Option<SessionId>,
    pub stats: ClientStats,
}

/// Shared between the handles and the driver.
#[derive(Debug)]
pub(crate) struct Shared {
    snapshot: Mutex<Snapshot>,
    endpoint: Mutex<Option<quinn::Endpoint>>,
    /// Signalled by `kill_transport`.
    pub kill: Notify,
    /// The runtime the driver runs on (`rebind` registers a socket in it).
    pub runtime: tokio::runtime::Handle,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub fn new(runtime: tokio::runtime::Handle) -> Self {
        Self {
            snapshot: Mutex::new(Snapshot::default()),
            endpoint: Mutex::new(None),
            kill: Notify::new(),
            runtime,
        }
    }

    pub fn session_id(&self) -> Option<SessionId> {
        lock(&self.snapshot).session_id
    }

    pub fn stats(&self) -> ClientStats {
        lock(&self.snapshot).stats
    }

    /// The QUIC endpoint of the live connection, if any.
    pub fn endpoint(&self) -> Option<quinn::Endpoint> {
        lock(&self.endpoint).clone()
    }

    pub fn set_session_id(&self, id: SessionId) {
        lock(&self.snapshot).session_id = Some(id);
    }

    pub fn set_stats(&self, stats: ClientStats) {
        lock(&self.snapshot).stats = stats;
    }

    pub fn set_endpoint(&self, endpoint: Option<quinn::Endpoint>) {
        *lock(&self.endpoint) = endpoint;
    }
}
