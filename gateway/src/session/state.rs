//! One session, as a pure state machine: no socket and no clock (the
//! current time is passed in where it matters).

use std::collections::VecDeque;
use std::task::Waker;
use std::time::Instant;

use bytes::Bytes;
use ferry_protocol::replay_log::{Entry, ReplayLimits, ReplayLog};
use ferry_protocol::seq::InboundPublishes;
use ferry_protocol::{ChannelName, ErrorCode, Frame, ResumeSecret, SessionId};
use subtle::ConstantTimeEq;

/// One channel a session listens to.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The channel.
    pub channel: ChannelName,
    /// The offset of the last message of that channel the session got.
    pub last_offset: u64,
    /// Its slot in the worker's subscriber list of the channel; `None`
    /// while the sequencer has not yet confirmed it.
    pub local_slot: Option<usize>,
}

/// Whether a connection currently carries the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attachment {
    /// Connection `conn` carries it.
    Attached {
        /// The worker-local connection id.
        conn: u64,
    },
    /// No connection since `since`; kept for the resume window.
    Detached {
        /// When the last connection went away.
        since: Instant,
    },
}

/// What happened to a message offered to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Appended to the replay log.
    Queued,
    /// Already had it (catch-up overlapping live traffic): ignored.
    AlreadyHad,
    /// Not subscribed (any more): ignored.
    NotSubscribed,
    /// This message overflowed the log: continuity lost from here on.
    Overflowed,
    /// Dropped: the log had already overflowed.
    Dropped,
    /// Queued, but the unsent backlog passed the bound: cut the connection.
    SlowConsumer,
}

/// Everything that moves when a session changes worker or process.
#[derive(Debug, Clone)]
pub struct SessionSnapshot {
    /// Its id.
    pub id: SessionId,
    /// Its secret.
    pub secret: ResumeSecret,
    /// The authenticated user, if any.
    pub user: Option<String>,
    /// Last seq assigned.
    pub last_seq: u64,
    /// Highest cumulative ack.
    pub acked: u64,
    /// Unacknowledged messages.
    pub entries: Vec<Entry>,
    /// Whether continuity is already lost.
    pub overflowed: bool,
    /// Last PUBLISH client_seq processed.
    pub last_client_seq: u64,
    /// Channels and the last offset received on each.
    pub subscriptions: Vec<(ChannelName, u64)>,
}

/// A session. See the module docs.
#[derive(Debug)]
pub struct Session {
    id: SessionId,
    secret: ResumeSecret,
    user: Option<String>,
    log: ReplayLog,
    inbound: InboundPublishes,
    subscriptions: Vec<Subscription>,
    attachment: Attachment,
    control: VecDeque<Frame>,
    puback_due: bool,
    kill: Option<ErrorCode>,
    reconnect_hint_ms: u64,
    write_blocked: bool,
    /// Dropped instead of kept for a resume if its connection ends while
    /// it is still unused (a session made for a resume that failed).
    disposable: bool,
    /// When the HELLO of the connection that last took the session
    /// arrived: an older HELLO never takes it back.
    hello_at: Option<Instant>,
    waker: Option<Waker>,
}

impl Session {
    /// A new session, attached to connection `conn`.
    pub fn new(
        id: SessionId,
        secret: ResumeSecret,
        user: Option<String>,
        limits: ReplayLimits,
        conn: u64,
    ) -> Self {
        Self {
            id,
            secret,
            user,
            log: ReplayLog::new(limits),
            inbound: InboundPublishes::default(),
            subscriptions: Vec::new(),
            attachment: Attachment::Attached { conn },
            control: VecDeque::new(),
            puback_due: false,
            kill: None,
            reconnect_hint_ms: 0,
            write_blocked: false,
            disposable: false,
            hello_at: None,
            waker: None,
        }
    }

    /// Rebuilds a migrated session, detached; its subscriptions are pending
    /// until the sequencers confirm them.
    pub fn from_snapshot(
        snap: SessionSnapshot,
        limits: ReplayLimits,
        now: Instant,
    ) -> Result<Self, ferry_protocol::replay_log::ReplayError> {
        let log = ReplayLog::from_parts(
            limits,
            snap.last_seq,
            snap.acked,
            snap.entries,
            snap.overflowed,
        )?;
        Ok(Self {
            id: snap.id,
            secret: snap.secret,
            user: snap.user,
            log,
            inbound: InboundPublishes::starting_after(snap.last_client_seq),
            subscriptions: snap
                .subscriptions
                .into_iter()
                .map(|(channel, last_offset)| Subscription {
                    channel,
                    last_offset,
                    local_slot: None,
                })
                .collect(),
            attachment: Attachment::Detached { since: now },
            control: VecDeque::new(),
            puback_due: false,
            kill: None,
            reconnect_hint_ms: 0,
            write_blocked: false,
            disposable: false,
            hello_at: None,
            waker: None,
        })
    }

    /// Everything needed to rebuild the session elsewhere.
    pub fn snapshot(&self) -> SessionSnapshot {
        SessionSnapshot {
            id: self.id,
            secret: self.secret,
            user: self.user.clone(),
            last_seq: self.log.last_seq(),
            acked: self.log.acked(),
            entries: self.log.entries().cloned().collect(),
            overflowed: self.log.is_overflowed(),
            last_client_seq: self.inbound.last(),
            subscriptions: self
                .subscriptions
                .iter()
                .map(|s| (s.channel.clone(), s.last_offset))
                .collect(),
        }
    }

    /// The session id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The secret, for WELCOME.
    pub fn secret(&self) -> ResumeSecret {
        self.secret
    }

    /// The authenticated user, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Whether `candidate` is this session's secret, in constant time.
    pub fn secret_matches(&self, candidate: &ResumeSecret) -> bool {
        self.secret.0.ct_eq(&candidate.0).into()
    }

    /// Current attachment.
    pub fn attachment(&self) -> Attachment {
        self.attachment
    }

    /// Whether connection `conn` carries the session.
    pub fn is_attached_to(&self, conn: u64) -> bool {
        self.attachment == Attachment::Attached { conn }
    }

    /// Hands the session to connection `conn`. Whatever connection had it
    /// is told to close ([`Session::kill_code`]).
    pub fn attach(&mut self, conn: u64) {
        if let Attachment::Attached { conn: old } = self.attachment
            && old != conn
        {
            self.wake();
        }
        self.attachment = Attachment::Attached { conn };
        self.kill = None;
        self.control.clear();
        self.puback_due = false;
    }

    /// The connection went away.
    pub fn detach(&mut self, now: Instant) {
        self.attachment = Attachment::Detached { since: now };
        self.write_blocked = false;
        self.waker = None;
        self.kill = None;
        self.control.clear();
    }

    /// Bytes this session holds: itself, its registry slots, its
    /// subscriptions and its replay log.
    pub fn memory(&self) -> usize {
        /// The slab slot and the id index entry beside the session itself.
        const REGISTRY_OVERHEAD: usize = 64;
        /// A subscription's entry here and its slot in the worker's
        /// subscriber list, beside the name.
        const SUBSCRIPTION_OVERHEAD: usize = 96;
        std::mem::size_of::<Self>()
            + REGISTRY_OVERHEAD
            + self
                .subscriptions
                .iter()
                .map(|s| SUBSCRIPTION_OVERHEAD + s.channel.as_bytes().len())
                .sum::<usize>()
            + self.log.held_bytes()
    }

    /// Records when the HELLO of the connection taking the session arrived.
    pub fn set_hello_at(&mut self, at: Instant) {
        self.hello_at = Some(at);
    }

    /// Whether a HELLO that arrived at `at` is older than the one of the
    /// connection that holds (or last held) the session.
    pub fn is_newer_than(&self, at: Instant) -> bool {
        self.hello_at.is_some_and(|owner| owner > at)
    }

    /// Marks the session as not worth keeping unless it gets used.
    pub fn set_disposable(&mut self) {
        self.disposable = true;
    }

    /// Whether the session may be dropped when its connection ends.
    pub fn is_disposable(&self) -> bool {
        self.disposable && self.is_unused()
    }

    /// Whether nothing happened on the session yet: no subscription, no
    /// message, no publish. Such a session holds nothing a resume could
    /// give back.
    pub fn is_unused(&self) -> bool {
        self.subscriptions.is_empty() && self.log.last_seq() == 0 && self.inbound.last() == 0
    }

    /// Prepares a resume from the client's last received seq.
    pub fn resume_from(
        &mut self,
        last_received: u64,
    ) -> Result<(), ferry_protocol::replay_log::ReplayError> {
        self.log.resume_from(last_received)
    }

    /// The replay log.
    pub fn log(&self) -> &ReplayLog {
        &self.log
    }

    /// Mutable replay log (acks, limits).
    pub fn log_mut(&mut self) -> &mut ReplayLog {
        &mut self.log
    }

    /// The publish dedup state.
    pub fn inbound_mut(&mut self) -> &mut InboundPublishes {
        &mut self.inbound
    }

    /// Last PUBLISH processed.
    pub fn last_client_seq(&self) -> u64 {
        self.inbound.last()
    }

    /// A PUBACK is due (coalesced: one per write batch).
    pub fn puback_due(&mut self) {
        self.puback_due = true;
        self.wake();
    }

    /// The subscriptions.
    pub fn subscriptions(&self) -> &[Subscription] {
        &self.subscriptions
    }

    /// The subscription to `channel`, if any.
    pub fn subscription_mut(&mut self, channel: &ChannelName) -> Option<&mut Subscription> {
        self.subscriptions
            .iter_mut()
            .find(|s| &s.channel == channel)
    }

    /// Adds a pending subscription.
    pub fn add_subscription(&mut self, channel: ChannelName, last_offset: u64) {
        self.subscriptions.push(Subscription {
            channel,
            last_offset,
            local_slot: None,
        });
    }

    /// Removes a subscription; returns it.
    pub fn remove_subscription(&mut self, channel: &ChannelName) -> Option<Subscription> {
        let pos = self
            .subscriptions
            .iter()
            .position(|s| &s.channel == channel)?;
        Some(self.subscriptions.swap_remove(pos))
    }

    /// Offers a channel message; `outbound_bound` is the slow-consumer
    /// limit on unsent bytes.
    pub fn deliver(
        &mut self,
        channel: &ChannelName,
        offset: u64,
        payload: &Bytes,
        outbound_bound: usize,
    ) -> Delivered {
        let Some(sub) = self
            .subscriptions
            .iter_mut()
            .find(|s| &s.channel == channel)
        else {
            return Delivered::NotSubscribed;
        };
        if offset <= sub.last_offset {
            return Delivered::AlreadyHad;
        }
        sub.last_offset = offset;
        if self.log.is_overflowed() {
            return Delivered::Dropped;
        }
        if self
            .log
            .push(channel.clone(), offset, payload.clone())
            .is_err()
        {
            if matches!(self.attachment, Attachment::Attached { .. }) {
                self.kill(ErrorCode::ReplayOverflow);
            }
            return Delivered::Overflowed;
        }
        if matches!(self.attachment, Attachment::Attached { .. }) {
            if self.is_slow(outbound_bound) {
                self.kill(ErrorCode::SlowConsumer);
                return Delivered::SlowConsumer;
            }
            self.wake();
        }
        Delivered::Queued
    }

    /// Whether the client falls so far behind that it must be cut while it
    /// can still resume: its socket does not drain and the unsent backlog
    /// passed `outbound_bound`, or what it has not acknowledged fills three
    /// quarters of the replay log. Kernel buffers absorb a stalled reader's
    /// backlog, so without the second rule the log would overflow first
    /// and the session would be lost (301) instead of cut (300). The last
    /// quarter holds what arrives between the cut and the resume.
    fn is_slow(&self, outbound_bound: usize) -> bool {
        // A backlog that builds up while the connection task simply has
        // not run yet (a burst) is not slowness: it is written out at the
        // task's next turn.
        let stalled = self.write_blocked && self.log.unsent_bytes() > outbound_bound;
        let limits = self.log.limits();
        let high_messages = limits.max_messages - limits.max_messages / 4;
        let high_bytes = limits.max_bytes - limits.max_bytes / 4;
        stalled || self.log.len() > high_messages || self.log.held_bytes() > high_bytes
    }

    /// The session missed messages it cannot get back.
    pub fn lose_continuity(&mut self) {
        self.log.mark_lost();
        if matches!(self.attachment, Attachment::Attached { .. }) {
            self.kill(ErrorCode::ReplayOverflow);
        }
    }

    /// Queues a control frame (SUBSCRIBED, PONG, ERROR, ...).
    pub fn push_control(&mut self, frame: Frame) {
        self.control.push_back(frame);
        self.wake();
    }

    /// Takes the queued control frames, then a coalesced PUBACK: an ERROR
    /// rejecting a publish always precedes the PUBACK that covers it.
    pub fn take_control(&mut self, out: &mut Vec<Frame>) {
        out.extend(self.control.drain(..));
        if std::mem::take(&mut self.puback_due) {
            out.push(Frame::PubAck {
                client_seq: self.inbound.last(),
            });
        }
    }

    /// Asks the connection to close with `code`.
    pub fn kill(&mut self, code: ErrorCode) {
        if self.kill.is_none() {
            self.kill = Some(code);
        }
        self.wake();
    }

    /// Records whether the connection is waiting for the transport to take
    /// a write (the client is not draining its socket).
    pub fn set_write_blocked(&mut self, blocked: bool) {
        self.write_blocked = blocked;
    }

    /// Asks the connection to close with GOAWAY `code`, telling the client
    /// to come back after `reconnect_after_ms` (paced reconnects).
    pub fn go_away(&mut self, code: ErrorCode, reconnect_after_ms: u64) {
        self.reconnect_hint_ms = reconnect_after_ms;
        self.kill(code);
    }

    /// How long a client told to go away should wait before coming back.
    pub fn reconnect_hint_ms(&self) -> u64 {
        self.reconnect_hint_ms
    }

    /// Why the connection must close, if it must.
    pub fn kill_code(&self) -> Option<ErrorCode> {
        self.kill
    }

    /// Whether a PUBACK is all there is to send: worth waiting a turn, so
    /// it can share a write with the messages the publish is about to cause.
    pub fn only_puback_due(&self) -> bool {
        self.puback_due && self.kill.is_none() && self.control.is_empty() && !self.log.has_unsent()
    }

    /// Whether the connection task has something to do.
    pub fn has_work(&self) -> bool {
        self.kill.is_some() || self.puback_due || !self.control.is_empty() || self.log.has_unsent()
    }

    /// Registers the connection task's waker.
    pub fn set_waker(&mut self, waker: &Waker) {
        match &self.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => self.waker = Some(waker.clone()),
        }
    }

    /// Wakes the connection task, if one waits.
    pub fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        let mut s = Session::new(
            SessionId([1; 16]),
            ResumeSecret([2; 32]),
            None,
            ReplayLimits {
                max_messages: 4,
                max_bytes: 1 << 20,
            },
            7,
        );
        s.add_subscription(ChannelName::parse("c").unwrap(), 0);
        s
    }

    fn chan() -> ChannelName {
        ChannelName::parse("c").unwrap()
    }

    #[test]
    fn delivers_in_offset_order_and_ignores_overlap() {
        let mut s = session();
        let p = Bytes::from_static(b"x");
        assert_eq!(s.deliver(&chan(), 1, &p, 1 << 20), Delivered::Queued);
        assert_eq!(s.deliver(&chan(), 2, &p, 1 << 20), Delivered::Queued);
        assert_eq!(s.deliver(&chan(), 2, &p, 1 << 20), Delivered::AlreadyHad);
        assert_eq!(s.log().last_seq(), 2);
        let other = ChannelName::parse("d").unwrap();
        assert_eq!(s.deliver(&other, 1, &p, 1 << 20), Delivered::NotSubscribed);
    }

    #[test]
    fn a_burst_is_not_a_slow_consumer_but_a_blocked_writer_is() {
        let mut s = session();
        let p = Bytes::from(vec![0u8; 100]);
        assert_eq!(s.deliver(&chan(), 1, &p, 120), Delivered::Queued);
        assert_eq!(s.deliver(&chan(), 2, &p, 120), Delivered::Queued);
        assert_eq!(s.kill_code(), None, "the writer has not had its turn yet");
        s.set_write_blocked(true);
        assert_eq!(s.deliver(&chan(), 3, &p, 120), Delivered::SlowConsumer);
        assert_eq!(s.kill_code(), Some(ErrorCode::SlowConsumer));
        assert_eq!(s.log().len(), 3, "the message is kept for a resume");
    }

    #[test]
    fn a_client_that_acknowledges_nothing_is_cut_while_it_can_still_resume() {
        // The log holds 4 messages; a quarter is kept for after the cut.
        let mut s = session();
        let p = Bytes::from_static(b"x");
        for o in 1..=3 {
            assert_eq!(s.deliver(&chan(), o, &p, 1 << 20), Delivered::Queued);
        }
        assert_eq!(s.kill_code(), None);
        assert_eq!(s.deliver(&chan(), 4, &p, 1 << 20), Delivered::SlowConsumer);
        assert_eq!(s.kill_code(), Some(ErrorCode::SlowConsumer));
        assert!(!s.log().is_overflowed());
        s.detach(Instant::now());
        assert!(s.resume_from(0).is_ok(), "the log still covers the client");
        assert_eq!(s.log().unsent().count(), 4);
    }

    #[test]
    fn the_byte_bound_cuts_before_it_overflows_too() {
        let mut s = Session::new(
            SessionId([1; 16]),
            ResumeSecret([2; 32]),
            None,
            ReplayLimits {
                max_messages: 1000,
                max_bytes: 4000,
            },
            7,
        );
        s.add_subscription(chan(), 0);
        let p = Bytes::from(vec![0u8; 900]);
        let mut offset = 0;
        while s.kill_code().is_none() {
            offset += 1;
            assert!(offset < 10, "never cut");
            s.deliver(&chan(), offset, &p, 1 << 20);
        }
        assert_eq!(s.kill_code(), Some(ErrorCode::SlowConsumer));
        assert!(!s.log().is_overflowed());
    }

    #[test]
    fn a_log_too_small_for_headroom_overflows_with_replay_overflow() {
        let mut s = Session::new(
            SessionId([1; 16]),
            ResumeSecret([2; 32]),
            None,
            ReplayLimits {
                max_messages: 1,
                max_bytes: 1 << 20,
            },
            7,
        );
        s.add_subscription(chan(), 0);
        let p = Bytes::from_static(b"x");
        assert_eq!(s.deliver(&chan(), 1, &p, 1 << 20), Delivered::Queued);
        assert_eq!(s.deliver(&chan(), 2, &p, 1 << 20), Delivered::Overflowed);
        assert_eq!(s.kill_code(), Some(ErrorCode::ReplayOverflow));
        assert_eq!(s.deliver(&chan(), 3, &p, 1 << 20), Delivered::Dropped);
    }

    #[test]
    fn a_session_made_for_a_failed_resume_is_disposable_until_used() {
        let mut s = session();
        assert!(!s.is_disposable(), "a session the client asked for is kept");
        s.set_disposable();
        assert!(!s.is_disposable(), "it has a subscription");
        s.remove_subscription(&chan());
        assert!(s.is_disposable());
        s.inbound_mut().check(1).unwrap();
        assert!(!s.is_disposable(), "it published");
    }

    #[test]
    fn detached_session_keeps_collecting_for_resume() {
        let mut s = session();
        let now = Instant::now();
        s.detach(now);
        let p = Bytes::from_static(b"x");
        assert_eq!(s.deliver(&chan(), 1, &p, 0), Delivered::Queued);
        assert_eq!(s.kill_code(), None, "no connection to cut");
        assert!(s.resume_from(0).is_ok());
        assert_eq!(s.log().unsent().count(), 1);
    }

    #[test]
    fn snapshot_round_trips() {
        let mut s = session();
        s.deliver(&chan(), 1, &Bytes::from_static(b"x"), 1 << 20);
        s.inbound_mut().check(1).unwrap();
        let snap = s.snapshot();
        let back = Session::from_snapshot(snap, ReplayLimits::default(), Instant::now()).unwrap();
        assert_eq!(back.id(), s.id());
        assert_eq!(back.last_client_seq(), 1);
        assert_eq!(back.log().last_seq(), 1);
        assert_eq!(back.subscriptions()[0].last_offset, 1);
        assert!(back.secret_matches(&ResumeSecret([2; 32])));
        assert!(!back.secret_matches(&ResumeSecret([3; 32])));
    }

    #[test]
    fn an_error_for_a_publish_comes_before_the_puback_covering_it() {
        let mut s = session();
        s.inbound_mut().check(1).unwrap();
        s.push_control(Frame::error(ErrorCode::RateLimited, 1, "slow down"));
        s.puback_due();
        let mut out = Vec::new();
        s.take_control(&mut out);
        assert!(matches!(out[0], Frame::Error { reference: 1, .. }));
        assert_eq!(out[1], Frame::PubAck { client_seq: 1 });
    }

    #[test]
    fn pubacks_coalesce() {
        let mut s = session();
        s.inbound_mut().check(1).unwrap();
        s.puback_due();
        s.inbound_mut().check(2).unwrap();
        s.puback_due();
        let mut out = Vec::new();
        s.take_control(&mut out);
        assert_eq!(out, vec![Frame::PubAck { client_seq: 2 }]);
    }
}
