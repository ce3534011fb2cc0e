//! The background task that owns the connection: it feeds the sans-IO
//! [`Session`] with frames, commands and time, writes what the session
//! asks, hands events to the application, and reconnects.
//!
//! ```text
//!   Client ──commands (mpsc)──> Driver ──frames──> Conn (ws / quic)
//!   Events <──events (bounded mpsc)── Driver <──frames── Conn
//! ```
//!
//! Backpressure: while the application has not taken the events already
//! decoded, the driver does not read the transport (commands, writes and
//! heartbeats go on), so the server's slow-consumer rule applies.
//! Writes are batched: everything the session has queued is fed, then
//! flushed once.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

use super::config::ClientConfig;
use super::error::ClientError;
use super::event::Event;
use super::session::{Output, Rejection, Session, SessionConfig, SessionError};
use super::shared::{Command, Shared};
use super::tls;
use super::transport::{Conn, Connector};
use crate::frame::{Frame, SessionId};

/// Frames read (and commands taken) in one go before writing.
const BURST: usize = 64;
/// Bound on a graceful close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// After GOAWAY the connection is read until the server closes it, at most
/// this long.
const GOAWAY_DRAIN: Duration = Duration::from_secs(5);

type TokenFuture = Pin<Box<dyn Future<Output = Option<String>> + Send>>;

enum Waiter {
    Subscribe(oneshot::Sender<Result<u64, ClientError>>),
    Unsubscribe(oneshot::Sender<Result<(), ClientError>>),
}

struct AckWaiter {
    epoch: u64,
    target: u64,
    reply: oneshot::Sender<Result<(), ClientError>>,
}

/// Why a connection ended.
enum End {
    /// Lost (error, EOF, silence, protocol violation): reconnect with backoff.
    Lost(ClientError),
    /// `kill_transport`: abandon the transport without closing it.
    Killed,
    /// GOAWAY, then the server closed: reconnect after the server's delay.
    GoAway(Duration),
    /// Closed by the application, all handles dropped, or a terminal error.
    Stop(Option<ClientError>),
}

/// The connection task.
pub(crate) struct Driver {
    config: ClientConfig,
    connector: Connector,
    session: Session,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    /// Events decoded but not yet taken by the application.
    backlog: VecDeque<Event>,
    waiters: HashMap<u64, Waiter>,
    ack_waiters: Vec<AckWaiter>,
    token: String,
    token_refresh: Option<TokenFuture>,
    /// Resolved at the first WELCOME (or failure): `Client::connect` waits.
    ready: Option<oneshot::Sender<Result<(), ClientError>>>,
    close_reply: Option<oneshot::Sender<()>>,
    /// A killed transport, kept open but unread (as a dead network leaves
    /// it) until the next WELCOME.
    zombie: Option<Conn>,
    /// Consecutive connection attempts without WELCOME.
    attempt: u32,
    /// GOAWAY received: the server's delay, and until when to keep reading.
    goaway: Option<(Duration, Instant)>,
    /// last_received_seq when the server last broke the protocol: the same
    /// failure at the same point after a resume stops the client.
    protocol_failure_at: Option<u64>,
    out: Vec<Frame>,
}

impl Driver {
    pub fn new(
        config: ClientConfig,
        connector: Connector,
        token: String,
        shared: Arc<Shared>,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
        ready: oneshot::Sender<Result<(), ClientError>>,
    ) -> Self {
        let session = Session::new(SessionConfig {
            ack_every: config.ack_every,
            heartbeat_override: config.heartbeat_override,
            handshake_timeout: config.connect_timeout,
        });
        Self {
            config,
            connector,
            session,
            shared,
            commands,
            events,
            backlog: VecDeque::new(),
            waiters: HashMap::new(),
            ack_waiters: Vec::new(),
            token,
            token_refresh: None,
            ready: Some(ready),
            close_reply: None,
            zombie: None,
            attempt: 0,
            goaway: None,
            protocol_failure_at: None,
            out: Vec::new(),
        }
    }

    /// Runs until closed: drive the connection, then reconnect.
    pub async fn run(mut self, first: Conn) {
        let mut conn = first;
        loop {
            self.session
                .start_handshake(self.token.clone(), Instant::now());
            self.shared.set_endpoint(conn.quic_endpoint().cloned());
            let end = self.drive(&mut conn).await;
            self.shared.set_endpoint(None);
            let end = match (end, self.goaway.take()) {
                // The close that GOAWAY announced.
                (End::Lost(_), Some((after, _))) => End::GoAway(after),
                (end, _) => end,
            };
            let delay = match end {
                End::Stop(error) => {
                    self.finish(Some(conn), error).await;
                    return;
                }
                End::Lost(error) if self.session.is_closed() => {
                    // A terminal error already closed the session.
                    self.finish(Some(conn), Some(error)).await;
                    return;
                }
                End::Lost(error) => {
                    tracing::debug!(%error, "connection lost");
                    self.session.transport_lost(error.to_string());
                    if let Some(ready) = self.ready.take() {
                        let _ = ready.send(Err(error));
                        self.finish(Some(conn), None).await;
                        return;
                    }
                    if self.is_repeated_violation(&error) {
                        tracing::warn!(%error, "the server repeats a protocol violation; stopping");
                        self.finish(Some(conn), None).await;
                        return;
                    }
                    self.backoff()
                }
                End::Killed => {
                    self.session.transport_lost("transport killed");
                    self.zombie = Some(conn);
                    self.backoff()
                }
                End::GoAway(after) => {
                    self.session.transport_lost("GOAWAY");
                    drop(conn);
                    let jitter_ms = rand::random_range(0..=after.as_millis() as u64 / 2);
                    after + Duration::from_millis(jitter_ms)
                }
            };
            match self.reconnect(delay).await {
                Some(next) => conn = next,
                None => {
                    self.finish(None, None).await;
                    return;
                }
            }
        }
    }

    /// A frame the server sends that breaks the protocol is replayed by a
    /// resume: after one retry at the same point, stop (PROTOCOL.md §4.16).
    fn is_repeated_violation(&mut self, error: &ClientError) -> bool {
        if !matches!(error, ClientError::Protocol(_)) {
            return false;
        }
        let at = self.session.stats().last_received_seq;
        self.protocol_failure_at.replace(at) == Some(at)
    }

    /// Full-jitter backoff before the next attempt.
    fn backoff(&self) -> Duration {
        self.config
            .reconnect
            .delay(self.attempt, rand::random::<f64>())
    }

    /// Serves one connection until it ends.
    async fn drive(&mut self, conn: &mut Conn) -> End {
        loop {
            if let Some(end) = self.process_outputs() {
                return end;
            }
            if let Err(error) = self.flush(conn).await {
                return End::Lost(error);
            }
            let reading = self.backlog.is_empty();
            self.session.set_reading(reading, Instant::now());
            let drain_until = self.goaway.map(|(_, until)| until);
            let deadline = match (self.session.poll_timeout(), drain_until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = tokio::time::sleep_until(
                deadline
                    .map(tokio::time::Instant::from_std)
                    .unwrap_or_else(far_future),
            );
            tokio::select! {
                biased;
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => {
                        if let Some(end) = self.command_burst(cmd) {
                            return end;
                        }
                    }
                    None => return End::Stop(None),
                },
                () = self.shared.kill.notified() => return End::Killed,
                () = deliver_next(&self.events, &mut self.backlog), if !self.backlog.is_empty() => {
                    self.push_events();
                }
                received = conn.recv(), if reading => match received {
                    Ok(Some(frame)) => {
                        if let Err(end) = self.read_burst(conn, frame) {
                            return self.ended(end);
                        }
                    }
                    Ok(None) => return self.ended(End::Lost(eof())),
                    Err(error) => return self.ended(End::Lost(error)),
                },
                token = poll_token(&mut self.token_refresh) => {
                    self.token_refresh = None;
                    if let Some(token) = token {
                        self.session.send_token(token.clone());
                        self.token = token;
                    }
                }
                () = sleep, if deadline.is_some() => {
                    let now = Instant::now();
                    if drain_until.is_some_and(|until| now >= until) {
                        return End::Lost(ClientError::Timeout("the close after GOAWAY"));
                    }
                    if let Err(error) = self.session.handle_timeout(now) {
                        return End::Lost(session_error(error));
                    }
                }
            }
        }
    }

    /// The transport ended: what the last frames said (a fatal ERROR, a
    /// GOAWAY) explains the close better than the close itself.
    fn ended(&mut self, end: End) -> End {
        match (self.process_outputs(), end) {
            (Some(reason), End::Lost(_)) => reason,
            (_, end) => end,
        }
    }

    /// Handles `first` and whatever else is readable right now, then lets
    /// the session acknowledge.
    fn read_burst(&mut self, conn: &mut Conn, first: Frame) -> Result<(), End> {
        let now = Instant::now();
        self.session
            .handle_frame(first, now)
            .map_err(|e| End::Lost(session_error(e)))?;
        for _ in 1..BURST {
            match conn.recv().now_or_never() {
                None => break,
                Some(Ok(Some(frame))) => self
                    .session
                    .handle_frame(frame, now)
                    .map_err(|e| End::Lost(session_error(e)))?,
                Some(Ok(None)) => return Err(End::Lost(eof())),
                Some(Err(error)) => return Err(End::Lost(error)),
            }
        }
        self.session.read_idle_delayed(now);
        Ok(())
    }

    /// Writes everything the session queued, in one batch.
    async fn flush(&mut self, conn: &mut Conn) -> Result<(), ClientError> {
        let now = Instant::now();
        self.out.clear();
        while let Some(frame) = self.session.poll_transmit(now) {
            self.out.push(frame);
        }
        if self.out.is_empty() {
            return Ok(());
        }
        // A peer that stops reading must not stall the driver forever.
        let limit = self.config.connect_timeout;
        match tokio::time::timeout(limit, conn.send(&self.out)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout("writing to the server")),
        }
    }

    /// Takes `first` and the commands already queued behind it.
    fn command_burst(&mut self, first: Command) -> Option<End> {
        if let Some(end) = self.command(first) {
            return Some(end);
        }
        for _ in 1..BURST {
            match self.commands.try_recv() {
                Ok(cmd) => {
                    if let Some(end) = self.command(cmd) {
                        return Some(end);
                    }
                }
                Err(_) => break,
            }
        }
        None
    }

    fn command(&mut self, cmd: Command) -> Option<End> {
        match cmd {
            Command::Subscribe { channel, reply } => match self.session.subscribe(channel) {
                Ok(id) => {
                    self.waiters.insert(id, Waiter::Subscribe(reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Unsubscribe { channel, reply } => match self.session.unsubscribe(channel) {
                Ok(id) => {
                    self.waiters.insert(id, Waiter::Unsubscribe(reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Publish {
                channel,
                payload,
                reply,
            } => {
                let _ = reply.send(self.session.publish(channel, payload));
            }
            Command::WaitAcked { reply } => {
                self.ack_waiters.push(AckWaiter {
                    epoch: self.session.epoch(),
                    target: self.session.last_published(),
                    reply,
                });
                self.settle_ack_waiters();
            }
            Command::Close { reply } => {
                self.close_reply = Some(reply);
                return Some(End::Stop(None));
            }
            Command::SwitchEndpoint { connector } => {
                self.connector = connector;
            }
        }
        None
    }

    /// Routes the session's outputs; returns how the connection must end,
    /// if it must.
    fn process_outputs(&mut self) -> Option<End> {
        let mut end = None;
        while let Some(output) = self.session.poll_output() {
            match output {
                Output::Event(event) => {
                    if let Event::Connected { session_id, .. } = &event {
                        self.on_connected(*session_id);
                    }
                    self.backlog.push_back(event);
                }
                Output::RequestDone { request_id, result } => {
                    self.complete(request_id, result);
                }
                Output::GoAway { reconnect_after } => {
                    // Keep reading: frames before the close are valid.
                    self.goaway = Some((reconnect_after, Instant::now() + GOAWAY_DRAIN));
                }
                Output::Fatal {
                    code,
                    message,
                    terminal,
                } => {
                    let error = ClientError::Rejected { code, message };
                    end = Some(if terminal {
                        End::Stop(Some(error))
                    } else {
                        End::Lost(error)
                    });
                }
                Output::TokenRequested { deadline } => {
                    tracing::debug!(?deadline, "token refresh requested");
                    if let Some(provider) = &self.config.token_provider {
                        self.token_refresh = Some(provider());
                    }
                }
            }
        }
        // Counters first: whoever is woken below sees them up to date.
        self.publish_snapshot();
        self.settle_ack_waiters();
        self.push_events();
        end
    }

    fn on_connected(&mut self, session_id: SessionId) {
        self.attempt = 0;
        self.zombie = None;
        self.shared.set_session_id(session_id);
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Ok(()));
        }
    }

    fn complete(&mut self, request_id: u64, result: Result<u64, Rejection>) {
        let result = result.map_err(|r| ClientError::Rejected {
            code: r.code,
            message: r.message,
        });
        match self.waiters.remove(&request_id) {
            Some(Waiter::Subscribe(reply)) => {
                let _ = reply.send(result);
            }
            Some(Waiter::Unsubscribe(reply)) => {
                let _ = reply.send(result.map(|_| ()));
            }
            // A re-subscription the SDK made by itself.
            None => {}
        }
    }

    fn settle_ack_waiters(&mut self) {
        if self.ack_waiters.is_empty() {
            return;
        }
        let epoch = self.session.epoch();
        let acked = self.session.publish_acked();
        let waiting = std::mem::take(&mut self.ack_waiters);
        for w in waiting {
            if w.epoch != epoch {
                let _ = w.reply.send(Err(ClientError::SessionLost));
            } else if acked >= w.target {
                let _ = w.reply.send(Ok(()));
            } else {
                self.ack_waiters.push(w);
            }
        }
    }

    /// Moves events to the application's channel while it has room.
    fn push_events(&mut self) {
        while let Some(event) = self.backlog.pop_front() {
            match self.events.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    self.backlog.push_front(event);
                    break;
                }
                // Nobody listens any more.
                Err(mpsc::error::TrySendError::Closed(_)) => self.backlog.clear(),
            }
        }
    }

    fn publish_snapshot(&self) {
        self.shared.set_stats(self.session.stats());
    }

    /// Waits `delay`, then tries to connect until it works, serving
    /// commands meanwhile. `None` when closed or out of attempts.
    async fn reconnect(&mut self, mut delay: Duration) -> Option<Conn> {
        loop {
            self.idle_until(tokio::time::sleep(delay)).await?;
            let attempt = self.attempt;
            if self
                .config
                .reconnect
                .max_attempts
                .is_some_and(|max| attempt >= max)
            {
                tracing::warn!(attempts = attempt, "giving up reconnecting");
                return None;
            }
            self.attempt += 1;
            tls::warn_if_insecure(self.config.tls.as_ref());
            let attempt = connect_attempt(
                self.connector.clone(),
                self.config.token_provider.clone(),
                self.config.connect_timeout,
            );
            match self.idle_until(attempt).await? {
                Ok((token, conn)) => {
                    if let Some(token) = token {
                        self.token = token;
                    }
                    return Some(conn);
                }
                Err(error) => {
                    tracing::debug!(%error, attempt = self.attempt, "reconnect failed");
                    delay = self.backoff();
                }
            }
        }
    }

    /// Runs `fut` to completion while serving commands and delivering
    /// events; `None` if the client was closed meanwhile.
    async fn idle_until<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        tokio::pin!(fut);
        loop {
            // Nothing can end a connection while there is none.
            let _ = self.process_outputs();
            tokio::select! {
                biased;
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => {
                        if self.command_burst(cmd).is_some() {
                            return None;
                        }
                    }
                    None => return None,
                },
                () = deliver_next(&self.events, &mut self.backlog), if !self.backlog.is_empty() => {
                    self.push_events();
                }
                // Nothing to kill.
                () = self.shared.kill.notified() => {}
                out = &mut fut => return Some(out),
            }
        }
    }

    /// Stops for good: closes the transport, answers every waiter, and
    /// hands the last events over.
    async fn finish(mut self, conn: Option<Conn>, error: Option<ClientError>) {
        self.session.close();
        let _ = self.process_outputs();
        self.shared.set_endpoint(None);
        if let Some(conn) = conn {
            let _ = tokio::time::timeout(CLOSE_GRACE, conn.close()).await;
        }
        if let Some(zombie) = self.zombie.take() {
            drop(zombie);
        }
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Err(error.unwrap_or(ClientError::Closed)));
        }
        // Pending requests and waiters see `Closed` when their senders drop.
        self.waiters.clear();
        self.ack_waiters.clear();
        let backlog = std::mem::take(&mut self.backlog);
        if !backlog.is_empty() {
            let events = self.events.clone();
            tokio::spawn(async move {
                for event in backlog {
                    if events.send(event).await.is_err() {
                        break;
                    }
                }
            });
        }
        if let Some(reply) = self.close_reply.take() {
            let _ = reply.send(());
        }
    }
}

/// One connection attempt: a fresh token, then the transport.
async fn connect_attempt(
    connector: Connector,
    provider: Option<super::config::TokenProvider>,
    limit: Duration,
) -> Result<(Option<String>, Conn), ClientError> {
    let token = match provider {
        Some(provider) => provider().await,
        None => None,
    };
    let conn = tokio::time::timeout(limit, connector.connect())
        .await
        .map_err(|_| ClientError::Timeout("connecting"))??;
    Ok((token, conn))
}

/// Waits for room in the application's channel and hands the oldest event
/// over; a closed channel (nobody listens) discards the backlog.
/// Cancel-safe: the event leaves the backlog only once a slot is reserved.
async fn deliver_next(events: &mpsc::Sender<Event>, backlog: &mut VecDeque<Event>) {
    match events.reserve().await {
        Ok(permit) => {
            if let Some(event) = backlog.pop_front() {
                permit.send(event);
            }
        }
        Err(_) => backlog.clear(),
    }
}

async fn poll_token(fut: &mut Option<TokenFuture>) -> Option<String> {
    match fut {
        Some(fut) => fut.await,
        None => std::future::pending().await,
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

fn eof() -> ClientError {
    ClientError::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "connection closed by the server",
    ))
}

fn session_error(e: SessionError) -> ClientError {
    match e {
        SessionError::HandshakeTimeout(_) => ClientError::Timeout("waiting for WELCOME"),
        SessionError::ServerSilent(_) => ClientError::Timeout("server silent past the heartbeat"),
        other => ClientError::Protocol(other.to_string()),
    }
}
