//! A stand-in for `ferry_protocol::client` with the signatures announced
//! for it, used when loadtest is built without the `sdk` feature.
//!
//! It reaches no server. A `mem://NAME` URL connects to an in-process
//! broker NAME that behaves like a perfect gateway (every message once, in
//! order, per-session seq and per-channel offsets, transport cuts resumed
//! without loss), so that the Ferry scenarios and their checks can be run
//! before the real SDK lands; `mem://NAME?lossy` drops every 100th
//! delivery and `mem://NAME?dup` delivers every 100th twice, to show that
//! the checks catch it. Any other URL fails with
//! [`ClientError::NotBuiltIn`].
//!
//! Field and variant payloads the announcement does not spell out
//! (`Connected { .. }` and the like) are guesses; the scenarios match them
//! with `..` so that the real ones fit.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use ferry_protocol::ChannelName;
use tokio::sync::mpsc;

/// How to reach the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket.
    Ws,
    /// WebSocket over TLS.
    Wss,
    /// QUIC.
    Quic,
}

/// Which server certificates to trust.
#[derive(Debug, Clone)]
pub enum TlsTrust {
    /// Certificates signed by this CA (PEM).
    CaFile(PathBuf),
    /// Any certificate (development only).
    InsecureDev,
}

/// Reconnection policy.
#[derive(Debug, Clone, Default)]
pub struct ReconnectPolicy;

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// TLS trust for wss and quic.
    pub tls: Option<TlsTrust>,
    /// Authentication token.
    pub token: Option<String>,
    /// TLS server name.
    pub server_name: Option<String>,
    /// Reconnection policy.
    pub reconnect: ReconnectPolicy,
    /// Capacity of the event queue.
    pub event_capacity: usize,
    /// Send an ACK after this many messages.
    pub ack_every: u32,
    url: String,
}

impl ClientConfig {
    /// Settings for `url` over `transport`.
    pub fn new(_transport: Transport, url: impl Into<String>) -> Self {
        Self {
            tls: None,
            token: None,
            server_name: None,
            reconnect: ReconnectPolicy,
            event_capacity: 1024,
            ack_every: 32,
            url: url.into(),
        }
    }
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// This build has no SDK and the URL is not `mem://` (user error: build
    /// with `--features sdk`).
    #[error("loadtest was built without the Ferry client SDK (cargo feature `sdk`)")]
    NotBuiltIn,
    /// The channel name is invalid (caller's error).
    #[error("invalid channel name {0:?}")]
    InvalidChannel(String),
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
}

/// A message of a subscribed channel.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Session seq.
    pub seq: u64,
    /// Channel.
    pub channel: ChannelName,
    /// Offset in the channel.
    pub channel_offset: u64,
    /// Payload.
    pub payload: Bytes,
}

/// What the client reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// A message.
    Message(Delivery),
    /// Connected (or reconnected).
    Connected {
        /// Whether the session was resumed.
        resumed: bool,
    },
    /// The transport went away.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// The session could not be resumed.
    SessionLost {
        /// Why.
        reason: String,
    },
    /// An ERROR frame.
    ServerError {
        /// Error code.
        code: u16,
        /// Detail.
        message: String,
    },
    /// A GOAWAY frame.
    GoAway {
        /// Code.
        code: u16,
    },
}

/// The event stream of a client.
#[derive(Debug)]
pub struct Events(mpsc::UnboundedReceiver<Event>);

impl Events {
    /// The next event; `None` when the client is gone.
    pub async fn recv(&mut self) -> Option<Event> {
        self.0.recv().await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Lossy,
    Dup,
}

#[derive(Debug)]
struct Session {
    fault: Fault,
    state: Mutex<SessionState>,
}

#[derive(Debug)]
struct SessionState {
    seq: u64,
    tx: Option<mpsc::UnboundedSender<Event>>,
}

impl Session {
    fn send(&self, ev: Event) {
        if let Some(tx) = &lock(&self.state).tx {
            let _ = tx.send(ev);
        }
    }

    fn deliver(&self, channel: &ChannelName, offset: u64, payload: &Bytes) {
        let mut st = lock(&self.state);
        st.seq += 1;
        let Some(tx) = &st.tx else { return };
        let d = Delivery {
            seq: st.seq,
            channel: channel.clone(),
            channel_offset: offset,
            payload: payload.clone(),
        };
        let nth = st.seq.is_multiple_of(100);
        match self.fault {
            Fault::Lossy if nth => {}
            Fault::Dup if nth => {
                let _ = tx.send(Event::Message(d.clone()));
                let _ = tx.send(Event::Message(d));
            }
            _ => {
                let _ = tx.send(Event::Message(d));
            }
        }
    }
}

/// A channel: its last offset and its subscribers.
type Channel = (u64, Vec<Arc<Session>>);

#[derive(Debug, Default)]
struct Broker {
    channels: Mutex<HashMap<String, Channel>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn broker(name: &str) -> Arc<Broker> {
    static BROKERS: OnceLock<Mutex<HashMap<String, Arc<Broker>>>> = OnceLock::new();
    let brokers = BROKERS.get_or_init(Default::default);
    lock(brokers).entry(name.to_owned()).or_default().clone()
}

/// A Ferry client (in-process stand-in).
#[derive(Debug)]
pub struct Client {
    broker: Arc<Broker>,
    session: Arc<Session>,
    client_seq: AtomicU64,
    subscribed: Mutex<Vec<String>>,
}

impl Client {
    /// Connects and waits for WELCOME.
    pub async fn connect(cfg: ClientConfig) -> Result<(Client, Events), ClientError> {
        let Some(rest) = cfg.url.strip_prefix("mem://") else {
            return Err(ClientError::NotBuiltIn);
        };
        let (name, fault) = match rest.split_once('?') {
            Some((n, "lossy")) => (n, Fault::Lossy),
            Some((n, "dup")) => (n, Fault::Dup),
            Some((n, _)) => (n, Fault::None),
            None => (rest, Fault::None),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(Event::Connected { resumed: false });
        let client = Client {
            broker: broker(name),
            session: Arc::new(Session {
                fault,
                state: Mutex::new(SessionState {
                    seq: 0,
                    tx: Some(tx),
                }),
            }),
            client_seq: AtomicU64::new(0),
            subscribed: Mutex::new(Vec::new()),
        };
        Ok((client, Events(rx)))
    }

    /// Subscribes; returns the channel offset.
    pub async fn subscribe(&self, channel: &str) -> Result<u64, ClientError> {
        ChannelName::parse(channel).map_err(|_| ClientError::InvalidChannel(channel.into()))?;
        let mut channels = lock(&self.broker.channels);
        let (offset, subs) = channels.entry(channel.to_owned()).or_default();
        subs.push(self.session.clone());
        lock(&self.subscribed).push(channel.to_owned());
        Ok(*offset)
    }

    /// Queues a publish; returns its client_seq.
    pub async fn publish(&self, channel: &str, payload: Bytes) -> Result<u64, ClientError> {
        let name =
            ChannelName::parse(channel).map_err(|_| ClientError::InvalidChannel(channel.into()))?;
        if lock(&self.session.state).tx.is_none() {
            return Err(ClientError::Closed);
        }
        let mut channels = lock(&self.broker.channels);
        let (offset, subs) = channels.entry(channel.to_owned()).or_default();
        *offset += 1;
        for s in subs.iter() {
            s.deliver(&name, *offset, &payload);
        }
        Ok(self.client_seq.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Waits until every publish is acknowledged.
    pub async fn wait_acked(&self) {}

    /// Drops the transport abruptly; the session resumes without loss.
    pub fn kill_transport(&self) {
        self.session.send(Event::Disconnected {
            reason: "transport killed".into(),
        });
        self.session.send(Event::Connected { resumed: true });
    }

    /// Closes the session.
    pub async fn close(self) {
        let mut channels = lock(&self.broker.channels);
        for ch in lock(&self.subscribed).iter() {
            if let Some((_, subs)) = channels.get_mut(ch) {
                subs.retain(|s| !Arc::ptr_eq(s, &self.session));
            }
        }
        lock(&self.session.state).tx = None;
    }
}
