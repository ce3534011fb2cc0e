//! The Ferry client SDK (feature `client`): the reference for client
//! authors, used by the load tester and the end-to-end tests.
//!
//! ```text
//!   application
//!     │  Client (cheap handle, Clone)          ▲ Events (bounded)
//!     ▼  commands over an mpsc                 │
//!   shared.rs ── commands, and the state handles read (stats, session id)
//!   driver.rs ── one tokio task per client: reconnects, heartbeats, batches
//!     │      ▲
//!     ▼      │ frames and time
//!   session.rs ── sans-IO state machine: resume, dedup, outbox, acks
//!     │
//!   transport.rs ── ws.rs (tokio-tungstenite, WSS via tls.rs) | quic.rs (quinn)
//!     │
//!   ═════ I/O stops here: sockets below ═════
//! ```
//!
//! The protocol logic lives in [`session`], with no tokio, no sockets and
//! no clock, unit-tested in memory. Everything else is a thin driver around
//! it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ferry_protocol::client::ClientError> {
//! use ferry_protocol::client::{Client, ClientConfig, Event, Transport};
//! let config = ClientConfig::new(Transport::Ws, "ws://127.0.0.1:8080/ws");
//! let (client, mut events) = Client::connect(config).await?;
//! client.subscribe("chat:1").await?;
//! client.publish("chat:1", "hello".into()).await?;
//! while let Some(event) = events.recv().await {
//!     if let Event::Message(m) = event {
//!         println!("{} #{}: {:?}", m.channel, m.seq, m.payload);
//!     }
//! }
//! # Ok(()) }
//! ```

mod config;
mod driver;
mod error;
mod event;
mod quic;
pub mod session;
mod shared;
mod tls;
mod transport;
mod ws;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

pub use self::config::{ClientConfig, ReconnectPolicy, TlsTrust, TokenProvider, Transport};
pub use self::error::ClientError;
pub use self::event::{ClientStats, Delivery, Event};
pub use crate::seq::PendingPublish;

use self::driver::Driver;
use self::shared::{Command, Shared};
use self::transport::Connector;
use crate::channel::ChannelName;
use crate::frame::SessionId;

/// Commands queued from the handles to the driver.
const COMMAND_CAPACITY: usize = 256;

/// A handle to one client connection; cheap to clone. The connection lives
/// in a background task until [`Client::close`], a terminal error, or the
/// last handle is dropped.
#[derive(Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    transport: Transport,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("transport", &self.transport)
            .field("session_id", &self.session_id())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects and returns once WELCOME has arrived. The first connection
    /// is not retried: its failure is returned. Must run inside a tokio
    /// runtime (the connection task is spawned on it).
    pub async fn connect(config: ClientConfig) -> Result<(Client, Events), ClientError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ClientError::Unsupported("Client::connect outside a tokio runtime"))?;
        let target = config.validate()?;
        let connector = Connector::new(&config, target)?;
        let token = match (&config.token, &config.token_provider) {
            (Some(token), _) => token.clone(),
            (None, Some(provider)) => provider().await.unwrap_or_default(),
            (None, None) => String::new(),
        };
        tls::warn_if_insecure(config.tls.as_ref());
        let conn = tokio::time::timeout(config.connect_timeout, connector.connect())
            .await
            .map_err(|_| ClientError::Timeout("connecting"))??;

        let shared = Arc::new(Shared::new(runtime));
        let (command_tx, command_rx) = mpsc::channel(COMMAND_CAPACITY);
        let (event_tx, event_rx) = mpsc::channel(config.event_capacity);
        let (ready_tx, ready_rx) = oneshot::channel();
        let transport = config.transport;
        let driver = Driver::new(
            config,
            connector,
            token,
            shared.clone(),
            command_rx,
            event_tx,
            ready_tx,
        );
        tokio::spawn(driver.run(conn));
        ready_rx.await.map_err(|_| ClientError::Closed)??;
        Ok((
            Client {
                commands: command_tx,
                shared,
                transport,
            },
            Events { rx: event_rx },
        ))
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, ClientError>>) -> Command,
    ) -> Result<T, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| ClientError::Closed)?;
        answer.await.map_err(|_| ClientError::Closed)?
    }

    /// Subscribes; resolves on SUBSCRIBED with the channel offset, or with
    /// [`ClientError::Rejected`] on ERROR. While disconnected the request
    /// waits for the next connection.
    pub async fn subscribe(&self, channel: &str) -> Result<u64, ClientError> {
        let channel = ChannelName::parse(channel)?;
        self.ask(|reply| Command::Subscribe { channel, reply })
            .await
    }

    /// Unsubscribes; resolves on UNSUBSCRIBED or ERROR.
    pub async fn unsubscribe(&self, channel: &str) -> Result<(), ClientError> {
        let channel = ChannelName::parse(channel)?;
        self.ask(|reply| Command::Unsubscribe { channel, reply })
            .await
    }

    /// Queues a publish and returns its client_seq; does not wait for
    /// PUBACK (see [`Client::wait_acked`]). While disconnected the publish
    /// is held and sent after the next WELCOME.
    pub async fn publish(&self, channel: &str, payload: Bytes) -> Result<u64, ClientError> {
        let channel = ChannelName::parse(channel)?;
        self.ask(|reply| Command::Publish {
            channel,
            payload,
            reply,
        })
        .await
    }

    /// Waits until every publish made so far is acknowledged.
    /// [`ClientError::SessionLost`] if a new session replaced the one they
    /// were made in.
    pub async fn wait_acked(&self) -> Result<(), ClientError> {
        self.ask(|reply| Command::WaitAcked { reply }).await
    }

    /// From the next reconnect on, uses the transport, URL and TLS settings
    /// of `endpoint` (its other fields are ignored): the session resumes
    /// over the new transport. For a mobile app whose network blocks UDP:
    /// switch from QUIC to WebSocket, and back when QUIC works again. The
    /// current connection is kept until it fails or [`Client::kill_transport`].
    pub async fn switch_endpoint(&self, endpoint: &ClientConfig) -> Result<(), ClientError> {
        let target = endpoint.validate()?;
        let connector = Connector::new(endpoint, target)?;
        tls::warn_if_insecure(endpoint.tls.as_ref());
        self.commands
            .send(Command::SwitchEndpoint { connector })
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// The current session id (new after a failed resume).
    pub fn session_id(&self) -> Option<SessionId> {
        self.shared.session_id()
    }

    /// Counters, as of the driver's last step.
    pub fn stats(&self) -> ClientStats {
        self.shared.stats()
    }

    /// Testing and mobile simulation: drops the transport abruptly (no close frame, no GOAWAY), as a dead network would; the SDK then reconnects and resumes by itself.
    ///
    /// The old socket is left open and unread until the new connection is
    /// welcomed, so the server sees no close either.
    pub fn kill_transport(&self) {
        self.shared.kill.notify_one();
    }

    /// QUIC only: moves the client's UDP socket to a new local port (NAT rebinding / network change) without reconnecting (quinn Endpoint::rebind).
    pub fn rebind(&self) -> Result<(), ClientError> {
        if self.transport != Transport::Quic {
            return Err(ClientError::Unsupported("rebind is for QUIC only"));
        }
        let endpoint = self
            .shared
            .endpoint()
            .ok_or(ClientError::Unsupported("rebind while not connected"))?;
        let _runtime = self.shared.runtime.enter();
        quic::rebind(&endpoint)
    }

    /// Graceful close: stops reconnecting and closes the transport. Pending
    /// requests fail with [`ClientError::Closed`]; the events channel ends
    /// after the events already decoded.
    pub async fn close(&self) {
        let (reply, done) = oneshot::channel();
        if self.commands.send(Command::Close { reply }).await.is_ok() {
            let _ = done.await;
        }
    }
}

/// The application's side of the event channel.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the client has stopped and every event
    /// was taken.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is ready.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}
