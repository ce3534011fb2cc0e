//! The client's protocol logic as a sans-IO state machine: no sockets, no
//! tokio, no clock (the current time is passed in).
//!
//! ```text
//!   driver ──handle_frame / handle_timeout / transport_lost──> Session
//!   driver ──subscribe / publish / read_idle / ...──────────> Session
//!   driver <──poll_transmit (frames) / poll_output / poll_timeout── Session
//! ```
//!
//! After every input or command the driver drains [`Session::poll_transmit`]
//! (frames to write, in order), [`Session::poll_output`] (events for the
//! application and actions for the driver), then asks
//! [`Session::poll_timeout`] when to call [`Session::handle_timeout`].
//!
//! The session survives transports: it owns the resume credentials, the
//! [`ReceiveTracker`] (duplicates after a resume are dropped, a gap is the
//! server's error), the [`PublishOutbox`] (re-sent after
//! WELCOME.last_client_seq on a resume, handed back as uncertain on a new
//! session), the confirmed subscriptions (re-subscribed on a new session)
//! and the pending SUBSCRIBE/UNSUBSCRIBE requests (re-sent after every
//! WELCOME). Commands given while detached are held and sent after WELCOME.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::error::ClientError;
use super::event::{ClientStats, Delivery, Event};
use crate::channel::ChannelName;
use crate::code::ErrorCode;
use crate::codec::{DEFAULT_MAX_FRAME_SIZE, varint_len};
use crate::frame::{
    Frame, Hello, PROTOCOL_VERSION, ResumeRequest, ResumeSecret, SessionId, Welcome,
};
use crate::seq::{Disposition, PublishOutbox, ReceiveTracker};

mod errors;
mod liveness;
mod requests;
#[cfg(test)]
mod tests;

use errors::misbehaved;
pub use errors::{SessionError, is_fatal, is_terminal};
use liveness::{Check, Liveness};
use requests::{Request, RequestKind};

/// How long a client waits, once nothing more is readable, before it
/// acknowledges what arrived (PROTOCOL.md: ACK within 250 ms).
pub const ACK_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

/// Tuning of a [`Session`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Send ACK after this many accepted messages (at least 1).
    pub ack_every: u32,
    /// Heartbeat interval; by default WELCOME's (0 there disables it).
    pub heartbeat_override: Option<Duration>,
    /// How long to wait for WELCOME after HELLO.
    pub handshake_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            ack_every: 32,
            heartbeat_override: None,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// The server refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The error code.
    pub code: u16,
    /// The server's detail.
    pub message: String,
}

/// What the session asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Hand this to the application.
    Event(Event),
    /// A SUBSCRIBE (Ok: channel_offset) or UNSUBSCRIBE (Ok: 0) completed.
    /// Requests the SDK made by itself (re-subscriptions) complete too;
    /// their ids are simply unknown to the driver.
    RequestDone {
        /// The id returned by [`Session::subscribe`] / [`Session::unsubscribe`].
        request_id: u64,
        /// The outcome.
        result: Result<u64, Rejection>,
    },
    /// The server sent GOAWAY: drop the transport, wait about this long,
    /// reconnect and resume.
    GoAway {
        /// The server's suggested delay (before jitter).
        reconnect_after: Duration,
    },
    /// A fatal ERROR: the server closes the connection. When `terminal`,
    /// reconnecting cannot help (version, authentication, session taken
    /// over): the session is now closed. Otherwise reconnect and resume.
    Fatal {
        /// The error code.
        code: u16,
        /// The server's detail.
        message: String,
        /// Whether to stop reconnecting.
        terminal: bool,
    },
    /// REFRESH_TOKEN: call [`Session::send_token`] with a fresh token
    /// before `deadline`.
    TokenRequested {
        /// Time left.
        deadline: Duration,
    },
}

/// The connection phases.
#[derive(Debug)]
enum Phase {
    /// No transport; commands are held.
    Detached,
    /// HELLO sent, waiting for WELCOME.
    Handshaking { resuming: bool, deadline: Instant },
    /// WELCOME received.
    Active(Liveness),
    /// Closed by the application or a terminal error; nothing more happens.
    Closed,
}

#[derive(Debug, Clone, Copy)]
struct Credentials {
    id: SessionId,
    secret: ResumeSecret,
}

/// The client side of one Ferry session, across transports.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    phase: Phase,
    credentials: Option<Credentials>,
    /// +1 for each new session; publishes of an older epoch are lost.
    epoch: u64,
    welcomed_before: bool,
    received: ReceiveTracker,
    /// The seq of the last ACK sent.
    acked_seq: u64,
    /// Messages accepted since the last ACK.
    unacked: u32,
    /// When a delayed ACK is due (see [`Session::read_idle_delayed`]).
    ack_due: Option<Instant>,
    outbox: PublishOutbox,
    /// The highest client_seq acknowledged in this session.
    publish_acked: u64,
    /// The server's largest frame (WELCOME.max_frame_size).
    max_frame_size: usize,
    /// Confirmed in the current session.
    subscriptions: BTreeSet<ChannelName>,
    requests: BTreeMap<u64, Request>,
    last_request_id: u64,
    next_nonce: u64,
    /// False while the driver does not read (backpressure): silence is then
    /// ours, not the server's.
    reading: bool,
    transmit: VecDeque<Frame>,
    outputs: VecDeque<Output>,
    stats: ClientStats,
}

impl Session {
    /// A session that has not connected yet.
    pub fn new(config: SessionConfig) -> Self {
        Self {
            config: SessionConfig {
                ack_every: config.ack_every.max(1),
                ..config
            },
            phase: Phase::Detached,
            credentials: None,
            epoch: 0,
            welcomed_before: false,
            received: ReceiveTracker::default(),
            acked_seq: 0,
            unacked: 0,
            ack_due: None,
            outbox: PublishOutbox::default(),
            publish_acked: 0,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            subscriptions: BTreeSet::new(),
            requests: BTreeMap::new(),
            last_request_id: 0,
            next_nonce: 1,
            reading: true,
            transmit: VecDeque::new(),
            outputs: VecDeque::new(),
            stats: ClientStats::default(),
        }
    }

    // ----- inputs -----

    /// A new transport is up: queue HELLO (with a resume request when a
    /// session exists). Ignored once closed.
    pub fn start_handshake(&mut self, token: String, now: Instant) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        self.transmit.clear();
        let resume = self.credentials.map(|c| ResumeRequest {
            session_id: c.id,
            secret: c.secret,
            last_received_seq: self.received.last(),
        });
        self.phase = Phase::Handshaking {
            resuming: resume.is_some(),
            deadline: now + self.config.handshake_timeout,
        };
        self.transmit.push_back(Frame::Hello(Hello {
            version: PROTOCOL_VERSION,
            token,
            resume,
        }));
    }

    /// A frame from the server.
    pub fn handle_frame(&mut self, frame: Frame, now: Instant) -> Result<(), SessionError> {
        match &mut self.phase {
            Phase::Active(live) => live.received(now),
            Phase::Handshaking { .. } => {
                if !matches!(
                    frame,
                    Frame::Welcome(_) | Frame::Error { .. } | Frame::GoAway { .. }
                ) {
                    return Err(misbehaved(format!(
                        "{:?} before WELCOME",
                        frame.frame_type()
                    )));
                }
            }
            // A stale frame of a transport already given up.
            Phase::Detached | Phase::Closed => return Ok(()),
        }
        match frame {
            Frame::Welcome(w) => self.on_welcome(w, now),
            Frame::Message {
                seq,
                channel,
                channel_offset,
                payload,
            } => self.on_message(seq, channel, channel_offset, payload),
            Frame::Subscribed {
                request_id,
                channel_offset,
            } => self.on_request_done(request_id, RequestKind::Subscribe, channel_offset),
            Frame::Unsubscribed { request_id } => {
                self.on_request_done(request_id, RequestKind::Unsubscribe, 0)
            }
            Frame::PubAck { client_seq } => self.acknowledge_publishes(client_seq),
            Frame::Ping { nonce } => {
                self.transmit.push_back(Frame::Pong { nonce });
                Ok(())
            }
            Frame::Pong { .. } => Ok(()),
            Frame::GoAway {
                code,
                reconnect_after_ms,
                ..
            } => {
                self.outputs.push_back(Output::Event(Event::GoAway {
                    code,
                    reconnect_after_ms,
                }));
                self.outputs.push_back(Output::GoAway {
                    reconnect_after: Duration::from_millis(reconnect_after_ms),
                });
                Ok(())
            }
            Frame::Error {
                code,
                reference,
                message,
            } => {
                self.on_error(code, reference, message);
                Ok(())
            }
            Frame::RefreshToken { deadline_ms } => {
                self.outputs.push_back(Output::TokenRequested {
                    deadline: Duration::from_millis(deadline_ms),
                });
                Ok(())
            }
            other @ (Frame::Hello(_)
            | Frame::Subscribe { .. }
            | Frame::Unsubscribe { .. }
            | Frame::Publish { .. }
            | Frame::Ack { .. }
            | Frame::Token { .. }) => Err(misbehaved(format!(
                "the server sent a client frame {:?}",
                other.frame_type()
            ))),
        }
    }

    /// The time given by [`Self::poll_timeout`] has come: send PING when
    /// idle, or report a silent server or a late WELCOME.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        if self.ack_due.is_some_and(|due| now >= due) {
            self.ack_due = None;
            self.read_idle();
        }
        match &mut self.phase {
            Phase::Handshaking { deadline, .. } if now >= *deadline => Err(
                SessionError::HandshakeTimeout(self.config.handshake_timeout),
            ),
            Phase::Active(live) => match live.check(now, self.reading) {
                Check::Fine => Ok(()),
                Check::Ping => {
                    let nonce = self.next_nonce;
                    self.next_nonce += 1;
                    self.transmit.push_back(Frame::Ping { nonce });
                    Ok(())
                }
                Check::Silent(silent_for) => Err(SessionError::ServerSilent(silent_for)),
            },
            _ => Ok(()),
        }
    }

    /// The transport is gone (error, EOF, killed, GOAWAY, heartbeat).
    /// Unsent frames are dropped; their state stays and is re-sent after the
    /// next WELCOME.
    pub fn transport_lost(&mut self, reason: impl Into<String>) {
        let was_active = match self.phase {
            Phase::Closed => return,
            Phase::Active(_) => true,
            Phase::Detached | Phase::Handshaking { .. } => false,
        };
        self.phase = Phase::Detached;
        self.transmit.clear();
        if was_active {
            self.outputs.push_back(Output::Event(Event::Disconnected {
                reason: reason.into(),
            }));
        }
    }

    /// Whether the driver reads the transport. While it does not (the
    /// application is behind), server silence is not held against it.
    pub fn set_reading(&mut self, reading: bool, now: Instant) {
        if self.reading == reading {
            return;
        }
        self.reading = reading;
        if let (true, Phase::Active(live)) = (reading, &mut self.phase) {
            live.restart_silence(now);
        }
    }

    /// Nothing more is readable right now: acknowledge what arrived, but
    /// only after [`ACK_DELAY`], so that a steady trickle of messages costs
    /// one ACK per delay (or per `ack_every` messages) instead of one per
    /// message. The driver calls [`Session::handle_timeout`] at
    /// [`Session::poll_timeout`], which sends it.
    pub fn read_idle_delayed(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Active(_))
            && self.received.last() > self.acked_seq
            && self.ack_due.is_none()
        {
            self.ack_due = Some(now + ACK_DELAY);
        }
    }

    /// Nothing more is readable right now: acknowledge what arrived, at once.
    pub fn read_idle(&mut self) {
        if matches!(self.phase, Phase::Active(_)) && self.received.last() > self.acked_seq {
            self.send_ack();
        }
    }

    // ----- commands -----

    /// Asks to subscribe; returns the request id that the matching
    /// [`Output::RequestDone`] carries.
    pub fn subscribe(&mut self, channel: ChannelName) -> Result<u64, ClientError> {
        self.request(RequestKind::Subscribe, channel)
    }

    /// Asks to unsubscribe; returns the request id.
    pub fn unsubscribe(&mut self, channel: ChannelName) -> Result<u64, ClientError> {
        self.request(RequestKind::Unsubscribe, channel)
    }

    /// Numbers a publish and queues it (or holds it while detached);
    /// returns its client_seq.
    pub fn publish(&mut self, channel: ChannelName, payload: Bytes) -> Result<u64, ClientError> {
        if matches!(self.phase, Phase::Closed) {
            return Err(ClientError::Closed);
        }
        let seq = self.outbox.last_assigned() + 1;
        let name_len = channel.as_bytes().len();
        let len = 1
            + varint_len(seq)
            + varint_len(name_len as u64)
            + name_len
            + varint_len(payload.len() as u64)
            + payload.len();
        if len > self.max_frame_size {
            return Err(ClientError::PayloadTooLarge {
                len,
                max: self.max_frame_size,
            });
        }
        let p = self.outbox.push(channel, payload);
        let (client_seq, channel, payload) = (p.client_seq, p.channel.clone(), p.payload.clone());
        if matches!(self.phase, Phase::Active(_)) {
            self.transmit.push_back(Frame::Publish {
                client_seq,
                channel,
                payload,
            });
        }
        Ok(client_seq)
    }

    /// Sends a fresh token (answer to [`Output::TokenRequested`]).
    pub fn send_token(&mut self, token: String) {
        if matches!(self.phase, Phase::Active(_)) {
            self.transmit.push_back(Frame::Token { token });
        }
    }

    /// Closes the session for good.
    pub fn close(&mut self) {
        self.phase = Phase::Closed;
        self.transmit.clear();
    }

    // ----- outputs -----

    /// The next frame to write; `now` is when it is written.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Frame> {
        let frame = self.transmit.pop_front()?;
        if let Phase::Active(live) = &mut self.phase {
            live.sent(now);
        }
        Some(frame)
    }

    /// The next event or action.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to call [`Self::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let phase = match &self.phase {
            Phase::Handshaking { deadline, .. } => Some(*deadline),
            Phase::Active(live) => live.deadline(self.reading),
            Phase::Detached | Phase::Closed => None,
        };
        match (phase, self.ack_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----- state -----

    /// The current session id, once WELCOME arrived.
    pub fn session_id(&self) -> Option<SessionId> {
        self.credentials.map(|c| c.id)
    }

    /// Counters.
    pub fn stats(&self) -> ClientStats {
        ClientStats {
            last_received_seq: self.received.last(),
            ..self.stats
        }
    }

    /// Whether WELCOME arrived on the current transport.
    pub fn is_active(&self) -> bool {
        matches!(self.phase, Phase::Active(_))
    }

    /// Whether the session is closed for good.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// +1 for each new session (the first WELCOME makes it 1).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The highest client_seq acknowledged in the current session.
    pub fn publish_acked(&self) -> u64 {
        self.publish_acked
    }

    /// The last client_seq assigned in the current session.
    pub fn last_published(&self) -> u64 {
        self.outbox.last_assigned()
    }

    /// The channels confirmed in the current session.
    pub fn subscriptions(&self) -> impl Iterator<Item = &ChannelName> {
        self.subscriptions.iter()
    }

    // ----- internals -----

    fn request(&mut self, kind: RequestKind, channel: ChannelName) -> Result<u64, ClientError> {
        if matches!(self.phase, Phase::Closed) {
            return Err(ClientError::Closed);
        }
        self.last_request_id += 1;
        let id = self.last_request_id;
        let req = Request { kind, channel };
        if matches!(self.phase, Phase::Active(_)) {
            self.transmit.push_back(req.frame(id));
        }
        self.requests.insert(id, req);
        Ok(id)
    }

    fn send_ack(&mut self) {
        self.ack_due = None;
        let seq = self.received.last();
        self.transmit.push_back(Frame::Ack { seq });
        self.acked_seq = seq;
        self.unacked = 0;
    }

    fn on_welcome(&mut self, w: Welcome, now: Instant) -> Result<(), SessionError> {
        let Phase::Handshaking { resuming, .. } = self.phase else {
            return Err(misbehaved("a second WELCOME"));
        };
        let resumed = w.outcome.is_resumed();
        if resumed {
            let asked = self.credentials.map(|c| c.id);
            if asked != Some(w.session_id) {
                return Err(misbehaved(format!(
                    "WELCOME resumed session {:?}, the client asked for {asked:?}",
                    w.session_id
                )));
            }
        }
        if w.max_frame_size > 0 {
            self.max_frame_size = usize::try_from(w.max_frame_size).unwrap_or(usize::MAX);
        }
        let interval = self
            .config
            .heartbeat_override
            .or(Some(Duration::from_millis(w.heartbeat_interval_ms)).filter(|d| !d.is_zero()));
        self.phase = Phase::Active(Liveness::new(interval, now));
        self.credentials = Some(Credentials {
            id: w.session_id,
            secret: w.resume_secret,
        });
        if self.welcomed_before {
            self.stats.reconnects += 1;
        }
        self.welcomed_before = true;
        self.outputs.push_back(Output::Event(Event::Connected {
            outcome: w.outcome,
            session_id: w.session_id,
        }));
        if resumed {
            self.stats.resumes_ok += 1;
            self.acknowledge_publishes(w.last_client_seq)?;
            for p in self.outbox.resend_after(w.last_client_seq) {
                self.transmit.push_back(Frame::Publish {
                    client_seq: p.client_seq,
                    channel: p.channel.clone(),
                    payload: p.payload.clone(),
                });
            }
            for (&id, req) in &self.requests {
                self.transmit.push_back(req.frame(id));
            }
        } else {
            self.start_new_session(resuming);
        }
        Ok(())
    }

    /// The server holds nothing of ours: hand back the uncertain publishes,
    /// complete pending UNSUBSCRIBEs, and subscribe again to every channel.
    fn start_new_session(&mut self, after_failed_resume: bool) {
        self.epoch += 1;
        self.received.reset();
        self.acked_seq = 0;
        self.unacked = 0;
        self.publish_acked = 0;
        let uncertain = self.outbox.take_uncertain();
        if after_failed_resume {
            self.stats.resumes_failed += 1;
            self.outputs.push_back(Output::Event(Event::SessionLost {
                uncertain_publishes: uncertain,
            }));
        }
        let mut wanted = std::mem::take(&mut self.subscriptions);
        let requests = std::mem::take(&mut self.requests);
        for (id, req) in requests {
            match req.kind {
                RequestKind::Unsubscribe => {
                    wanted.remove(&req.channel);
                    self.outputs.push_back(Output::RequestDone {
                        request_id: id,
                        result: Ok(0),
                    });
                }
                RequestKind::Subscribe => {
                    wanted.remove(&req.channel);
                    self.requests.insert(id, req);
                }
            }
        }
        for channel in wanted {
            self.last_request_id += 1;
            let req = Request {
                kind: RequestKind::Subscribe,
                channel,
            };
            self.requests.insert(self.last_request_id, req);
        }
        for (&id, req) in &self.requests {
            self.transmit.push_back(req.frame(id));
        }
    }

    fn on_message(
        &mut self,
        seq: u64,
        channel: ChannelName,
        channel_offset: u64,
        payload: Bytes,
    ) -> Result<(), SessionError> {
        match self.received.check(seq) {
            Ok(Disposition::Accept) => {
                self.stats.messages_received += 1;
                self.outputs
                    .push_back(Output::Event(Event::Message(Delivery {
                        seq,
                        channel,
                        channel_offset,
                        payload,
                    })));
                self.unacked += 1;
                if self.unacked >= self.config.ack_every {
                    self.send_ack();
                }
                Ok(())
            }
            Ok(Disposition::Duplicate) => {
                self.stats.duplicates_dropped += 1;
                Ok(())
            }
            Err(gap) => Err(misbehaved(format!("MESSAGE {gap}"))),
        }
    }

    fn on_request_done(
        &mut self,
        request_id: u64,
        kind: RequestKind,
        value: u64,
    ) -> Result<(), SessionError> {
        // An answer to a request we no longer track (not ours) is ignored.
        let Some(req) = self.requests.remove(&request_id) else {
            return Ok(());
        };
        if req.kind != kind {
            return Err(misbehaved(format!(
                "{kind:?} answer to {:?} request {request_id}",
                req.kind
            )));
        }
        match kind {
            RequestKind::Subscribe => self.subscriptions.insert(req.channel),
            RequestKind::Unsubscribe => self.subscriptions.remove(&req.channel),
        };
        self.outputs.push_back(Output::RequestDone {
            request_id,
            result: Ok(value),
        });
        Ok(())
    }

    fn acknowledge_publishes(&mut self, client_seq: u64) -> Result<(), SessionError> {
        if client_seq > self.outbox.last_assigned() {
            return Err(misbehaved(format!(
                "acknowledged client_seq {client_seq}, the last published is {}",
                self.outbox.last_assigned()
            )));
        }
        let before = self.outbox.len();
        self.outbox.acknowledge(client_seq);
        self.stats.publishes_acked += (before - self.outbox.len()) as u64;
        self.publish_acked = self.publish_acked.max(client_seq);
        Ok(())
    }

    /// A non-fatal ERROR answers one SUBSCRIBE / UNSUBSCRIBE (`reference` =
    /// request_id) or one PUBLISH (`reference` = client_seq). 406 names a
    /// publish; 201, 202 and 405 a request; others (203, unknown 2xx) a
    /// pending request if one has that id, else a publish (PROTOCOL.md §17).
    fn on_request_error(&mut self, code: u16, reference: u64, message: String) {
        let names_publish = match ErrorCode::from_u16(code) {
            Some(ErrorCode::ForbiddenPublish) => true,
            Some(
                ErrorCode::TooManySubscriptions
                | ErrorCode::NotSubscribed
                | ErrorCode::ForbiddenSubscribe,
            ) => false,
            _ => !self.requests.contains_key(&reference),
        };
        if names_publish {
            // A rejected publish counts as processed, and publishes are
            // processed in order: everything up to it is settled.
            if (1..=self.outbox.last_assigned()).contains(&reference) {
                let _ = self.acknowledge_publishes(reference);
            }
            return;
        }
        let Some(req) = self.requests.remove(&reference) else {
            return;
        };
        let result =
            if req.kind == RequestKind::Unsubscribe && code == ErrorCode::NotSubscribed.as_u16() {
                // Not subscribed: the unsubscribe is done (it may have been
                // processed before the transport died).
                self.subscriptions.remove(&req.channel);
                Ok(0)
            } else {
                Err(Rejection { code, message })
            };
        self.outputs.push_back(Output::RequestDone {
            request_id: reference,
            result,
        });
    }

    fn on_error(&mut self, code: u16, reference: u64, message: String) {
        self.outputs.push_back(Output::Event(Event::ServerError {
            code,
            reference,
            message: message.clone(),
        }));
        if !is_fatal(code) {
            self.on_request_error(code, reference, message);
            return;
        }
        let terminal = is_terminal(code);
        if terminal {
            self.close();
        }
        self.outputs.push_back(Output::Fatal {
            code,
            message,
            terminal,
        });
    }
}
