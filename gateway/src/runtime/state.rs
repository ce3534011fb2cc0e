//! The state one worker owns, and the operations that touch several parts
//! of it at once (sessions, local subscriber lists, the sequencer).
//!
//! Plain data, no I/O: the async tasks in [`super::worker`] borrow it for
//! the length of one operation and never across an `.await`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use std::collections::HashMap;

use ferry_protocol::{ChannelName, Frame, SessionId};

use crate::fanout::local::LocalChannels;
use crate::fanout::sequencer::{HistoryLimits, Sequencer, Subscription};
use crate::session::registry::{SessionRef, SessionRegistry};
use crate::session::state::{Delivered, Session};

/// Counts from one delivery, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryCounts {
    /// Messages appended to replay logs.
    pub queued: u64,
    /// Sessions cut as slow consumers.
    pub slow_consumers: u64,
    /// Replay logs that overflowed (once per log, not per message lost).
    pub overflows: u64,
}

/// What [`WorkerState::shed`] freed.
#[derive(Debug, Default)]
pub struct Shed {
    /// Idle channels forgotten.
    pub channels_forgotten: usize,
    /// Detached sessions evicted.
    pub sessions_evicted: usize,
    /// Channels the evicted sessions listened to.
    pub unsubscribe: Vec<ChannelName>,
}

/// How long a worker remembers where a session it gave away went.
pub const MOVE_MEMORY: Duration = Duration::from_secs(10);

/// One worker's sessions, subscribers and sequencer.
#[derive(Debug)]
pub struct WorkerState {
    /// Sessions on this worker.
    pub sessions: SessionRegistry,
    /// Sessions this worker gave to another worker (`None`: to another
    /// process) and when: a resume asking here is sent on there, not told
    /// the session expired.
    pub moved_out: HashMap<SessionId, (Option<usize>, Instant)>,
    /// Sessions handshakes of this worker are fetching right now, and how
    /// many handshakes fetch each.
    pub fetching: HashMap<SessionId, u32>,
    /// Local subscribers per channel.
    pub channels: LocalChannels,
    /// The channels this worker sequences.
    pub sequencer: Sequencer,
}

impl WorkerState {
    /// Empty state for a gateway of `workers` workers.
    pub fn new(workers: usize, history: HistoryLimits, channel_idle_ttl: Duration) -> Self {
        Self {
            sessions: SessionRegistry::default(),
            moved_out: HashMap::new(),
            fetching: HashMap::new(),
            channels: LocalChannels::default(),
            sequencer: Sequencer::new(workers, history, channel_idle_ttl),
        }
    }

    /// Appends a sequenced message to every local subscriber of `channel`.
    pub fn deliver(
        &mut self,
        channel: &ChannelName,
        offset: u64,
        payload: &Bytes,
        outbound_bound: usize,
    ) -> DeliveryCounts {
        let mut counts = DeliveryCounts::default();
        let Some(subs) = self.channels.subscribers(channel) else {
            return counts;
        };
        for (_, &sref) in subs.iter() {
            let Some(session) = self.sessions.get_mut(sref) else {
                continue;
            };
            match session.deliver(channel, offset, payload, outbound_bound) {
                Delivered::Queued => counts.queued += 1,
                Delivered::SlowConsumer => {
                    counts.queued += 1;
                    counts.slow_consumers += 1;
                }
                Delivered::Overflowed => counts.overflows += 1,
                Delivered::Dropped | Delivered::AlreadyHad | Delivered::NotSubscribed => {}
            }
        }
        counts
    }

    /// A sequencer confirmed a subscription: attach the session to the
    /// channel, catch it up, and answer its request.
    pub fn subscribed(
        &mut self,
        channel: &ChannelName,
        sref: SessionRef,
        request_id: Option<u64>,
        sub: Subscription,
        outbound_bound: usize,
    ) {
        let Some(session) = self.sessions.get_mut(sref) else {
            // The session left; its removal already sent the matching
            // unsubscribe, so the sequencer's count stays balanced.
            return;
        };
        let Some(subscription) = session.subscription_mut(channel) else {
            return;
        };
        if subscription.local_slot.is_none() {
            if !sub.catching_up {
                subscription.last_offset = sub.current_offset;
            }
            let slot = self.channels.attach(channel, sref);
            subscription.local_slot = Some(slot);
            if sub.gap {
                session.lose_continuity();
            }
            for (offset, payload) in &sub.catch_up {
                session.deliver(channel, *offset, payload, outbound_bound);
            }
        }
        if let Some(request_id) = request_id {
            session.push_control(Frame::Subscribed {
                request_id,
                channel_offset: sub.current_offset,
            });
        }
    }

    /// Removes a session from the worker; returns it and the channels whose
    /// sequencers must be told it left.
    pub fn remove_session(&mut self, sref: SessionRef) -> Option<(Session, Vec<ChannelName>)> {
        let mut session = self.sessions.remove(sref)?;
        session.wake();
        let channels = session
            .subscriptions()
            .iter()
            .map(|s| {
                if let Some(slot) = s.local_slot {
                    self.channels.detach(&s.channel, slot);
                }
                s.channel.clone()
            })
            .collect();
        Some((session, channels))
    }

    /// Removes a session's subscription to `channel`; returns whether it
    /// had one.
    pub fn unsubscribe(&mut self, sref: SessionRef, channel: &ChannelName) -> bool {
        let Some(session) = self.sessions.get_mut(sref) else {
            return false;
        };
        let Some(sub) = session.remove_subscription(channel) else {
            return false;
        };
        if let Some(slot) = sub.local_slot {
            self.channels.detach(channel, slot);
        }
        true
    }

    /// Notes that a handshake of this worker starts fetching session `id`.
    pub fn begin_fetch(&mut self, id: SessionId) {
        *self.fetching.entry(id).or_insert(0) += 1;
    }

    /// Notes that a fetch of session `id` ended (with the session inserted
    /// by then, if it came).
    pub fn end_fetch(&mut self, id: SessionId) {
        if let Some(n) = self.fetching.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                self.fetching.remove(&id);
            }
        }
    }

    /// Forgets where sessions given away long ago went.
    pub fn forget_old_moves(&mut self, now: Instant) {
        self.moved_out
            .retain(|_, (_, since)| now.saturating_duration_since(*since) < MOVE_MEMORY);
    }

    /// Bytes of session, replay-log and channel state this worker holds,
    /// as charged against `limits.memory_budget`. A payload shared by
    /// several sessions is charged to each: an upper bound.
    pub fn memory(&self) -> usize {
        self.sequencer.memory() + self.sessions.iter().map(|(_, s)| s.memory()).sum::<usize>()
    }

    /// Removes the session detached longest ago, to make room; returns the
    /// channels to unsubscribe at their sequencers, or `None` when every
    /// session here is attached.
    pub fn evict_oldest_detached(&mut self) -> Option<Vec<ChannelName>> {
        let (sref, _) = self.sessions.oldest_detached()?;
        self.remove_session(sref).map(|(_, channels)| channels)
    }

    /// Brings the worker back within `budget` bytes: first forgets idle
    /// channels (past the history grace), then evicts detached sessions,
    /// oldest first. Attached sessions are never evicted here: theirs is
    /// bounded by the slow-consumer rules.
    pub fn shed(&mut self, now: Instant, budget: usize) -> Shed {
        let mut shed = Shed::default();
        let mut used = self.memory();
        if used <= budget {
            return shed;
        }
        shed.channels_forgotten = self.sequencer.forget_idle(now, Duration::ZERO);
        used = self.memory();
        while used > budget {
            let Some((sref, _)) = self.sessions.oldest_detached() else {
                break;
            };
            let freed = self.sessions.get(sref).map_or(0, Session::memory);
            let Some((_, mut channels)) = self.remove_session(sref) else {
                break;
            };
            shed.sessions_evicted += 1;
            shed.unsubscribe.append(&mut channels);
            used = used.saturating_sub(freed);
        }
        shed
    }

    /// Removes detached sessions older than `window`; returns the channels
    /// to unsubscribe at their sequencers.
    pub fn expire(&mut self, now: Instant, window: Duration) -> (usize, Vec<ChannelName>) {
        let expired = self.sessions.expired(now, window);
        let mut channels = Vec::new();
        for sref in &expired {
            if let Some((_, mut left)) = self.remove_session(*sref) {
                channels.append(&mut left);
            }
        }
        (expired.len(), channels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_protocol::replay_log::ReplayLimits;
    use ferry_protocol::{ResumeSecret, SessionId};

    fn state() -> WorkerState {
        WorkerState::new(
            1,
            HistoryLimits {
                messages: 16,
                bytes: 1 << 20,
            },
            Duration::from_secs(60),
        )
    }

    fn add_session(st: &mut WorkerState, n: u8) -> SessionRef {
        st.sessions.insert(Session::new(
            SessionId([n; 16]),
            ResumeSecret([n; 32]),
            None,
            ReplayLimits::default(),
            u64::from(n),
        ))
    }

    fn sub_now(st: &mut WorkerState, sref: SessionRef, channel: &ChannelName) {
        st.sessions
            .get_mut(sref)
            .unwrap()
            .add_subscription(channel.clone(), 0);
        let sub = st.sequencer.subscribe(channel, 0, None, Instant::now());
        st.subscribed(channel, sref, Some(1), sub, 1 << 20);
    }

    #[test]
    fn every_subscriber_gets_the_same_offsets_in_order() {
        let mut st = state();
        let c = ChannelName::parse("room").unwrap();
        let a = add_session(&mut st, 1);
        let b = add_session(&mut st, 2);
        sub_now(&mut st, a, &c);
        sub_now(&mut st, b, &c);
        for i in 0..5u8 {
            let p = Bytes::from(vec![i]);
            let s = st.sequencer.publish(&c, &p, Instant::now());
            let counts = st.deliver(&c, s.offset, &p, 1 << 20);
            assert_eq!(counts.queued, 2);
        }
        for r in [a, b] {
            let offsets: Vec<u64> = st
                .sessions
                .get(r)
                .unwrap()
                .log()
                .unsent()
                .map(|e| e.channel_offset)
                .collect();
            assert_eq!(offsets, vec![1, 2, 3, 4, 5]);
        }
    }

    #[test]
    fn removed_session_stops_receiving_and_reports_its_channels() {
        let mut st = state();
        let c = ChannelName::parse("room").unwrap();
        let a = add_session(&mut st, 1);
        sub_now(&mut st, a, &c);
        let (_, channels) = st.remove_session(a).unwrap();
        assert_eq!(channels, vec![c.clone()]);
        assert_eq!(st.deliver(&c, 1, &Bytes::new(), 1 << 20).queued, 0);
        assert!(st.channels.is_empty());
    }

    #[test]
    fn moved_session_catches_up_without_duplicates() {
        let mut st = state();
        let c = ChannelName::parse("room").unwrap();
        let a = add_session(&mut st, 1);
        // The session saw offsets up to 2 elsewhere.
        st.sessions
            .get_mut(a)
            .unwrap()
            .add_subscription(c.clone(), 2);
        let sub = Subscription {
            current_offset: 4,
            catch_up: vec![(2, Bytes::new()), (3, Bytes::new()), (4, Bytes::new())],
            gap: false,
            catching_up: true,
        };
        st.subscribed(&c, a, None, sub, 1 << 20);
        let offsets: Vec<u64> = st
            .sessions
            .get(a)
            .unwrap()
            .log()
            .unsent()
            .map(|e| e.channel_offset)
            .collect();
        assert_eq!(offsets, vec![3, 4]);
    }

    #[test]
    fn expiry_removes_only_old_detached_sessions() {
        let mut st = state();
        let a = add_session(&mut st, 1);
        let b = add_session(&mut st, 2);
        let t0 = Instant::now();
        st.sessions.detach(a, t0);
        let (n, _) = st.expire(t0 + Duration::from_secs(5), Duration::from_secs(5));
        assert_eq!(n, 1);
        assert!(st.sessions.get(a).is_none());
        assert!(st.sessions.get(b).is_some());
    }

    #[test]
    fn eviction_takes_the_session_detached_longest_ago() {
        let mut st = state();
        let (a, b, c) = (
            add_session(&mut st, 1),
            add_session(&mut st, 2),
            add_session(&mut st, 3),
        );
        let t0 = Instant::now();
        st.sessions.detach(b, t0);
        st.sessions.detach(a, t0 + Duration::from_secs(1));
        // b comes back: a is now the one detached longest ago.
        st.sessions.get_mut(b).unwrap().attach(99);
        assert!(st.evict_oldest_detached().is_some());
        assert!(st.sessions.get(a).is_none());
        assert!(st.sessions.get(b).is_some() && st.sessions.get(c).is_some());
        assert!(
            st.evict_oldest_detached().is_none(),
            "attached sessions are never evicted"
        );
    }

    #[test]
    fn expiry_follows_detach_order_and_skips_resumed_sessions() {
        let mut st = state();
        let refs: Vec<SessionRef> = (1..=4).map(|n| add_session(&mut st, n)).collect();
        let t0 = Instant::now();
        for (i, r) in refs.iter().enumerate() {
            st.sessions.detach(*r, t0 + Duration::from_secs(i as u64));
        }
        st.sessions.get_mut(refs[0]).unwrap().attach(50);
        let (n, _) = st.expire(t0 + Duration::from_secs(12), Duration::from_secs(10));
        assert_eq!(n, 2, "detached at 1 s and 2 s; the first resumed");
        assert!(st.sessions.get(refs[0]).is_some());
        assert!(st.sessions.get(refs[1]).is_none() && st.sessions.get(refs[2]).is_none());
        assert!(st.sessions.get(refs[3]).is_some());
    }

    #[test]
    fn shedding_frees_idle_channels_then_the_oldest_detached_sessions() {
        let mut st = state();
        let c = ChannelName::parse("room").unwrap();
        let refs: Vec<SessionRef> = (1..=3).map(|n| add_session(&mut st, n)).collect();
        for r in &refs {
            sub_now(&mut st, *r, &c);
        }
        let t0 = Instant::now();
        let payload = Bytes::from(vec![0u8; 1000]);
        for _ in 0..10 {
            let s = st.sequencer.publish(&c, &payload, t0);
            st.deliver(&c, s.offset, &payload, 1 << 20);
        }
        st.sessions.detach(refs[1], t0);
        st.sessions.detach(refs[0], t0 + Duration::from_secs(1));
        let one_session = st.sessions.get(refs[2]).unwrap().memory();
        assert!(one_session > 10_000, "{one_session}");
        let budget = st.memory() - one_session / 2;
        let shed = st.shed(t0, budget);
        assert_eq!(shed.sessions_evicted, 1);
        assert!(
            st.sessions.get(refs[1]).is_none(),
            "detached first, evicted first"
        );
        assert!(st.memory() <= budget);
        assert_eq!(st.shed(t0, 0).sessions_evicted, 1, "only detached ones go");
        assert!(st.sessions.get(refs[2]).is_some());
    }
}
