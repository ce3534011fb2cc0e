//! The async driver of one connection: the only place where a session
//! meets a transport.
//!
//! It reads frames and feeds them to the session, and when the session has
//! something due (control frames, unsent messages, a reason to close) it
//! writes it all in one batch and flushes once. Authentication (grant
//! checks, TOKEN, the refresh timer) is applied by `driver/auth.rs`.

mod auth;

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use ferry_protocol::seq::Disposition;
use ferry_protocol::{ChannelName, DecodeError, ErrorCode, Frame};

use self::auth::ConnAuth;
use super::handshake::{self, Established, Reject};
use super::registry::SessionRef;
use crate::fanout::router::owner_of;
use crate::runtime::mesh::SequencerMsg;
use crate::runtime::worker::Worker;
use crate::transport::FrameIo;

/// Most MESSAGE frames written in one batch before checking for input.
const MAX_BATCH: usize = 256;

/// The error code for a frame that did not decode.
pub fn code_for(e: &DecodeError) -> ErrorCode {
    e.code()
}

/// How a connection ended.
#[derive(Debug)]
enum End {
    /// The client closed.
    PeerClosed,
    /// The transport failed.
    TransportFailed,
    /// Another connection took the session.
    TakenOver,
    /// The gateway cut the connection (slow consumer, drain, ...).
    Killed(ErrorCode),
    /// The gateway sends the client away to come back after the hint.
    GoAway(ErrorCode, u64),
    /// The client broke the protocol.
    Violation(ErrorCode, u64, String),
    /// The client's credentials no longer hold: a bad TOKEN, another
    /// user's, or none in time. The session stays, detached.
    Unauthenticated(ErrorCode, String),
}

/// Counts a connection for its whole life.
struct Admission<'a> {
    worker: &'a Worker,
    transport: &'static str,
}

impl<'a> Admission<'a> {
    fn new(worker: &'a Worker, transport: &'static str) -> (Self, bool) {
        let admitted = worker.admit_connection();
        crate::metrics::count_connection(transport, true);
        (Self { worker, transport }, admitted)
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.worker.release_connection();
        crate::metrics::count_connection(self.transport, false);
    }
}

/// Runs one connection from HELLO to close.
pub async fn run<T: FrameIo>(
    worker: Rc<Worker>,
    mut io: T,
    transport: &'static str,
    started: Instant,
    peer: SocketAddr,
) {
    let (_admission, admitted) = Admission::new(&worker, transport);
    if !admitted {
        let refusal = Reject::Error(
            ErrorCode::TooManyConnections,
            "the gateway is at its connection limit; retry later".into(),
        );
        reject(&mut io, transport, refusal).await;
        return;
    }
    let conn = worker.next_conn_id();
    let hello = match handshake::read_hello(&worker, &mut io).await {
        Ok(hello) => hello,
        Err(Reject::Gone) => {
            crate::metrics::count_handshake(transport, "closed");
            return;
        }
        Err(other) => {
            reject(&mut io, transport, other).await;
            return;
        }
    };
    let Established {
        session: sref,
        welcome,
        credentials,
    } = match handshake::establish(&worker, hello, conn, peer, started).await {
        Ok(ok) => ok,
        Err(Reject::Gone) => return,
        Err(other) => {
            reject(&mut io, transport, other).await;
            return;
        }
    };
    crate::metrics::count_handshake(transport, "ok");
    crate::metrics::record_handshake_latency(transport, started);

    let mut out = vec![Frame::Welcome(welcome).to_bytes()];
    let end = match io.send(&mut out).await {
        Ok(()) => {
            let mut connection = Connection {
                worker: &worker,
                sref,
                conn,
                scratch: BytesMut::new(),
                control: Vec::new(),
                rate: PublishRate::new(worker.settings().publish_burst),
                peer,
                auth: credentials.map(|c| ConnAuth::new(c, &worker.settings())),
            };
            connection.serve(&mut io).await
        }
        Err(_) => End::TransportFailed,
    };
    finish(&worker, sref, conn, &mut io, end).await;
}

async fn reject<T: FrameIo>(io: &mut T, transport: &'static str, reject: Reject) {
    let last = match reject {
        Reject::Error(code, message) => {
            crate::metrics::count_error(code);
            crate::metrics::count_handshake(transport, code.name());
            Frame::error(code, 0, message)
        }
        Reject::GoAway(code, reconnect_after_ms) => {
            crate::metrics::count_handshake(transport, code.name());
            Frame::GoAway {
                code: code.as_u16(),
                reconnect_after_ms,
                message: "reconnect and resume".into(),
            }
        }
        Reject::Gone => return,
    };
    io.close(Some(last.to_bytes())).await;
}

async fn finish<T: FrameIo>(worker: &Worker, sref: SessionRef, conn: u64, io: &mut T, end: End) {
    {
        let mut state = worker.state.borrow_mut();
        match state.sessions.get(sref) {
            Some(s) if s.is_attached_to(conn) && s.is_disposable() => {
                // Nothing to resume: a session made for a failed resume and
                // never used. Keeping it would let every failed resume
                // leave a session behind for the whole resume window.
                state.remove_session(sref);
            }
            Some(s) if s.is_attached_to(conn) => state.sessions.detach(sref, Instant::now()),
            _ => {}
        }
    }
    let last = match end {
        End::PeerClosed => None,
        End::TransportFailed => return,
        End::TakenOver => Some(Frame::error(
            ErrorCode::SessionTakenOver,
            0,
            "another connection resumed this session",
        )),
        End::GoAway(code, reconnect_after_ms) => Some(Frame::GoAway {
            code: code.as_u16(),
            reconnect_after_ms,
            message: "reconnect and resume".into(),
        }),
        End::Killed(code) => Some(Frame::error(code, 0, kill_message(code))),
        End::Violation(code, reference, message) => Some(Frame::error(code, reference, message)),
        End::Unauthenticated(code, message) => Some(Frame::error(code, 0, message)),
    };
    if let Some(Frame::Error { code, .. }) = &last
        && let Some(code) = ErrorCode::from_u16(*code)
    {
        crate::metrics::count_error(code);
    }
    io.close(last.map(|f| f.to_bytes())).await;
}

fn kill_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::SlowConsumer => "outbound queue over its bound: read faster, then resume",
        ErrorCode::ReplayOverflow => "replay log overflowed: acknowledge messages",
        ErrorCode::HeartbeatTimeout => "nothing heard within the heartbeat timeout",
        _ => "closed by the gateway",
    }
}

/// How a connection killed with `code` ends: drain and upgrade send the
/// client away (GOAWAY) instead of reporting an error.
fn ending(code: ErrorCode, reconnect_hint_ms: u64) -> End {
    match code {
        ErrorCode::ShuttingDown | ErrorCode::Upgrading => End::GoAway(code, reconnect_hint_ms),
        other => End::Killed(other),
    }
}

/// What the session wants from its connection.
enum Due {
    Write,
    Close(End),
}

struct Connection<'a> {
    worker: &'a Rc<Worker>,
    sref: SessionRef,
    conn: u64,
    scratch: BytesMut,
    control: Vec<Frame>,
    rate: PublishRate,
    /// The client's address at accept, for the failed-attempt limit.
    peer: SocketAddr,
    /// The verified token; `None` with `auth.mode = "none"`.
    auth: Option<ConnAuth>,
}

/// A token bucket for one connection's publishes.
#[derive(Debug)]
struct PublishRate {
    tokens: f64,
    refilled: Instant,
}

impl PublishRate {
    fn new(burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            refilled: Instant::now(),
        }
    }

    /// Takes a token if one is left at `per_second` with `burst`.
    fn allow(&mut self, per_second: u32, burst: u32, now: Instant) -> bool {
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * f64::from(per_second)).min(f64::from(burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Connection<'_> {
    async fn serve<T: FrameIo>(&mut self, io: &mut T) -> End {
        let timeout = self.worker.settings().heartbeat_timeout;
        let mut last_heard = Instant::now();
        let mut heartbeat = pin!(tokio::time::sleep(timeout));
        let mut out: Vec<Bytes> = Vec::new();
        loop {
            tokio::select! {
                due = self.due() => match due {
                    Due::Close(end) => return end,
                    Due::Write => {
                        if self.only_puback_due() {
                            // Let the sequencer and delivery tasks run first:
                            // an echo then costs one write, not two.
                            tokio::task::yield_now().await;
                        }
                        self.collect(&mut out);
                        // A write that completes at once never lets the
                        // delivery task see the flag; one that waits for the
                        // client to drain does.
                        self.set_write_blocked(true);
                        let send = io.send(&mut out);
                        let killed = self.killed();
                        tokio::pin!(send, killed);
                        // Nothing is read while a write waits, so the
                        // heartbeat deadline is watched here too: a client
                        // that stops reading and then goes silent is dead.
                        loop {
                            tokio::select! {
                                sent = &mut send => {
                                    if sent.is_err() {
                                        return End::TransportFailed;
                                    }
                                    break;
                                }
                                end = &mut killed => return end,
                                () = &mut heartbeat => {
                                    let deadline = last_heard + timeout;
                                    if Instant::now() >= deadline {
                                        return End::Killed(ErrorCode::HeartbeatTimeout);
                                    }
                                    heartbeat.as_mut().reset(deadline.into());
                                }
                            }
                        }
                        self.set_write_blocked(false);
                    }
                },
                incoming = io.recv() => {
                    last_heard = Instant::now();
                    match incoming {
                        Ok(Some(bytes)) => {
                            if let Err(end) = self.on_bytes(bytes).await {
                                return end;
                            }
                        }
                        Ok(None) => return End::PeerClosed,
                        Err(e) => return match handshake::reject_transport(e) {
                            Reject::Error(code, message) => End::Violation(code, 0, message),
                            Reject::GoAway(code, hint) => End::GoAway(code, hint),
                            Reject::Gone => End::TransportFailed,
                        },
                    }
                }
                () = &mut heartbeat => {
                    let deadline = last_heard + timeout;
                    if Instant::now() >= deadline {
                        return End::Killed(ErrorCode::HeartbeatTimeout);
                    }
                    heartbeat.as_mut().reset(deadline.into());
                }
                () = self.auth_timer(), if self.auth.is_some() => {
                    if let Err(end) = self.on_auth_timer() {
                        return end;
                    }
                }
            }
        }
    }

    fn only_puback_due(&self) -> bool {
        let state = self.worker.state.borrow();
        state
            .sessions
            .get(self.sref)
            .is_some_and(|s| s.only_puback_due())
    }

    fn set_write_blocked(&self, blocked: bool) {
        if let Some(session) = self.worker.state.borrow_mut().sessions.get_mut(self.sref) {
            session.set_write_blocked(blocked);
        }
    }

    /// Resolves when the session has output or must close.
    fn due(&self) -> impl std::future::Future<Output = Due> + '_ {
        poll_fn(move |cx| {
            let mut state = self.worker.state.borrow_mut();
            let Some(session) = state.sessions.get_mut(self.sref) else {
                return Poll::Ready(Due::Close(End::TakenOver));
            };
            if !session.is_attached_to(self.conn) {
                return Poll::Ready(Due::Close(End::TakenOver));
            }
            if let Some(code) = session.kill_code() {
                return Poll::Ready(Due::Close(ending(code, session.reconnect_hint_ms())));
            }
            if session.has_work() {
                return Poll::Ready(Due::Write);
            }
            session.set_waker(cx.waker());
            Poll::Pending
        })
    }

    /// Resolves when the session must close (used while a write blocks).
    fn killed(&self) -> impl std::future::Future<Output = End> + '_ {
        poll_fn(move |cx| {
            let mut state = self.worker.state.borrow_mut();
            let Some(session) = state.sessions.get_mut(self.sref) else {
                return Poll::Ready(End::TakenOver);
            };
            if !session.is_attached_to(self.conn) {
                return Poll::Ready(End::TakenOver);
            }
            if let Some(code) = session.kill_code() {
                return Poll::Ready(ending(code, session.reconnect_hint_ms()));
            }
            session.set_waker(cx.waker());
            Poll::Pending
        })
    }

    /// Encodes what is due into `out`: control frames first, then unsent
    /// messages, all in one buffer split per frame.
    fn collect(&mut self, out: &mut Vec<Bytes>) {
        let mut state = self.worker.state.borrow_mut();
        let Some(session) = state.sessions.get_mut(self.sref) else {
            return;
        };
        session.take_control(&mut self.control);
        for frame in self.control.drain(..) {
            self.scratch.reserve(frame.encoded_len());
            frame.encode(&mut self.scratch);
            out.push(self.scratch.split().freeze());
        }
        let mut last = None;
        let mut bytes = 0;
        let mut messages = 0;
        for entry in session.log().unsent().take(MAX_BATCH) {
            let len = ferry_protocol::codec::message_len(
                entry.seq,
                &entry.channel,
                entry.channel_offset,
                entry.payload.len(),
            );
            self.scratch.reserve(len);
            ferry_protocol::codec::encode_message(
                &mut self.scratch,
                entry.seq,
                &entry.channel,
                entry.channel_offset,
                &entry.payload,
            );
            out.push(self.scratch.split().freeze());
            last = Some(entry.seq);
            bytes += len;
            messages += 1;
        }
        if let Some(seq) = last {
            session.log_mut().mark_sent(seq);
        }
        let mut counters = self.worker.counters.borrow_mut();
        counters.messages_out += messages;
        counters.bytes_out += bytes as u64;
    }

    async fn on_bytes(&mut self, bytes: Bytes) -> Result<(), End> {
        {
            let mut counters = self.worker.counters.borrow_mut();
            counters.frames_in += 1;
            counters.bytes_in += bytes.len() as u64;
        }
        let limits = self.worker.settings().decode;
        let frame = ferry_protocol::codec::decode(bytes, &limits)
            .map_err(|e| End::Violation(code_for(&e), 0, e.to_string()))?;
        self.on_frame(frame).await
    }

    async fn on_frame(&mut self, frame: Frame) -> Result<(), End> {
        match frame {
            // What a publish or a subscription keeps is copied out of the
            // read buffer, so that it does not keep that whole buffer alive
            // in replay logs, histories and channel keys.
            Frame::Publish {
                client_seq,
                channel,
                payload,
            } => {
                let payload = Bytes::copy_from_slice(&payload);
                self.on_publish(client_seq, channel.to_compact(), payload)
                    .await
            }
            Frame::Ack { seq } => self.with_session(|s| {
                s.log_mut()
                    .ack(seq)
                    .map_err(|e| End::Violation(ErrorCode::InvalidAck, 0, e.to_string()))
            }),
            Frame::Subscribe {
                request_id,
                channel,
            } => self.on_subscribe(request_id, channel.to_compact()).await,
            Frame::Unsubscribe {
                request_id,
                channel,
            } => self.on_unsubscribe(request_id, channel).await,
            Frame::Ping { nonce } => self.with_session(|s| {
                s.push_control(Frame::Pong { nonce });
                Ok(())
            }),
            Frame::Token { token } => self.on_token(&token),
            Frame::Pong { .. } => Ok(()),
            Frame::Error { code, message, .. } => {
                tracing::debug!(code, message, "client reported an error");
                Ok(())
            }
            other => Err(End::Violation(
                ErrorCode::UnexpectedFrame,
                0,
                format!("{:?} is not allowed here", other.frame_type()),
            )),
        }
    }

    /// Runs `f` on the session; a vanished session ends the connection.
    fn with_session<R>(
        &self,
        f: impl FnOnce(&mut super::state::Session) -> Result<R, End>,
    ) -> Result<R, End> {
        let mut state = self.worker.state.borrow_mut();
        match state.sessions.get_mut(self.sref) {
            Some(session) => f(session),
            None => Err(End::TakenOver),
        }
    }

    async fn on_publish(
        &mut self,
        client_seq: u64,
        channel: ChannelName,
        payload: Bytes,
    ) -> Result<(), End> {
        let disposition = self.with_session(|s| {
            s.inbound_mut()
                .check(client_seq)
                .map_err(|gap| End::Violation(ErrorCode::ClientSeqGap, client_seq, gap.to_string()))
        })?;
        match disposition {
            Disposition::Duplicate => {
                self.worker.counters.borrow_mut().duplicate_publishes += 1;
            }
            Disposition::Accept => {
                if !self.may_publish(&channel) {
                    return self.refuse_publish(client_seq, &channel);
                }
                let settings = self.worker.settings();
                if let Some(per_second) = settings.publish_rate
                    && !self
                        .rate
                        .allow(per_second, settings.publish_burst, Instant::now())
                {
                    // Counted as processed (client_seq consumed), not
                    // published: the ERROR precedes the PUBACK.
                    crate::metrics::count_error(ErrorCode::RateLimited);
                    return self.with_session(|s| {
                        s.push_control(Frame::error(
                            ErrorCode::RateLimited,
                            client_seq,
                            format!("more than {per_second} publishes per second"),
                        ));
                        s.puback_due();
                        Ok(())
                    });
                }
                self.worker.counters.borrow_mut().publishes += 1;
                let owner = owner_of(&channel, self.worker.mesh.len());
                let msg = SequencerMsg::Publish {
                    channel,
                    payload,
                    received_at: Instant::now(),
                    reply: None,
                };
                if self
                    .worker
                    .mesh
                    .worker(owner)
                    .sequencer
                    .send(msg)
                    .await
                    .is_err()
                {
                    return Err(End::Killed(ErrorCode::InternalError));
                }
            }
        }
        self.with_session(|s| {
            s.puback_due();
            Ok(())
        })
    }

    async fn on_subscribe(&mut self, request_id: u64, channel: ChannelName) -> Result<(), End> {
        if !self.may_subscribe(&channel) {
            return self.refuse_subscribe(request_id, &channel);
        }
        let max = self.worker.settings().max_subscriptions;
        let proceed = self.with_session(|s| {
            if let Some(existing) = s.subscription_mut(&channel) {
                let channel_offset = existing.last_offset;
                s.push_control(Frame::Subscribed {
                    request_id,
                    channel_offset,
                });
                return Ok(false);
            }
            if s.subscriptions().len() >= max {
                s.push_control(Frame::error(
                    ErrorCode::TooManySubscriptions,
                    request_id,
                    format!("a session may hold at most {max} subscriptions"),
                ));
                crate::metrics::count_error(ErrorCode::TooManySubscriptions);
                return Ok(false);
            }
            s.add_subscription(channel.clone(), 0);
            Ok(true)
        })?;
        if proceed {
            let owner = owner_of(&channel, self.worker.mesh.len());
            let msg = SequencerMsg::Subscribe {
                channel,
                worker: self.worker.index,
                session: self.sref,
                request_id: Some(request_id),
                from_offset: None,
            };
            if self
                .worker
                .mesh
                .worker(owner)
                .sequencer
                .send(msg)
                .await
                .is_err()
            {
                return Err(End::Killed(ErrorCode::InternalError));
            }
        }
        Ok(())
    }

    async fn on_unsubscribe(&mut self, request_id: u64, channel: ChannelName) -> Result<(), End> {
        let had = self
            .worker
            .state
            .borrow_mut()
            .unsubscribe(self.sref, &channel);
        if had {
            self.worker.unsubscribe_all(vec![channel]).await;
        }
        self.with_session(|s| {
            if had {
                s.push_control(Frame::Unsubscribed { request_id });
            } else {
                crate::metrics::count_error(ErrorCode::NotSubscribed);
                s.push_control(Frame::error(
                    ErrorCode::NotSubscribed,
                    request_id,
                    "not subscribed to that channel",
                ));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rate_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut r = PublishRate::new(3);
        r.refilled = t0;
        assert!((0..3).all(|_| r.allow(10, 3, t0)));
        assert!(!r.allow(10, 3, t0));
        assert!(r.allow(10, 3, t0 + Duration::from_millis(100)));
        assert!(!r.allow(10, 3, t0 + Duration::from_millis(100)));
    }
}
