//! The sequencer of the channels one worker owns (sans-IO).
//!
//! It assigns offsets, keeps a bounded history for catch-up, and counts per
//! worker how many sessions listen, so a message goes once to each worker
//! that needs it, never once per subscriber.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_protocol::ChannelName;

/// How long a channel nobody listens to keeps its history: long enough for
/// a session moving between workers to unsubscribe on one side and
/// subscribe on the other.
pub const IDLE_HISTORY_GRACE: Duration = Duration::from_secs(10);

/// History bounds per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Most messages kept.
    pub messages: usize,
    /// Most payload bytes kept.
    pub bytes: usize,
}

#[derive(Debug)]
struct ChannelState {
    last_offset: u64,
    history: VecDeque<(u64, Bytes)>,
    history_bytes: usize,
    /// Listening sessions per worker.
    interest: Vec<u32>,
    idle_since: Option<Instant>,
}

impl ChannelState {
    fn new(workers: usize) -> Self {
        Self {
            last_offset: 0,
            history: VecDeque::new(),
            history_bytes: 0,
            interest: vec![0; workers],
            idle_since: None,
        }
    }

    fn has_interest(&self) -> bool {
        self.interest.iter().any(|&n| n > 0)
    }
}

/// What the sequencer decided for one publish.
#[derive(Debug, PartialEq, Eq)]
pub struct Sequenced {
    /// The offset the message got.
    pub offset: u64,
    /// Workers with at least one listening session.
    pub targets: Vec<usize>,
}

/// The answer to a subscription.
#[derive(Debug, PartialEq, Eq)]
pub struct Subscription {
    /// Offset of the last message before the subscription took effect.
    pub current_offset: u64,
    /// Messages from the requested offset up to `current_offset`.
    pub catch_up: Vec<(u64, Bytes)>,
    /// The history no longer holds the requested offset.
    pub gap: bool,
    /// Whether this is a catch-up (the session moved) rather than a new
    /// subscription.
    pub catching_up: bool,
}

/// The channels one worker sequences.
#[derive(Debug)]
pub struct Sequencer {
    workers: usize,
    limits: HistoryLimits,
    channels: HashMap<ChannelName, ChannelState>,
}

impl Sequencer {
    /// A sequencer for a gateway of `workers` workers.
    pub fn new(workers: usize, limits: HistoryLimits) -> Self {
        Self {
            workers,
            limits,
            channels: HashMap::new(),
        }
    }

    /// Replaces the history bounds (reload).
    pub fn set_limits(&mut self, limits: HistoryLimits) {
        self.limits = limits;
    }

    /// Gives `payload` the channel's next offset.
    pub fn publish(&mut self, channel: &ChannelName, payload: &Bytes) -> Sequenced {
        let workers = self.workers;
        let state = self
            .channels
            .entry(channel.clone())
            .or_insert_with(|| ChannelState::new(workers));
        state.last_offset += 1;
        let offset = state.last_offset;
        let targets: Vec<usize> = state
            .interest
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(w, _)| w)
            .collect();
        if state.has_interest() || state.idle_since.is_some() {
            state.history.push_back((offset, payload.clone()));
            state.history_bytes += payload.len();
            while state.history.len() > self.limits.messages
                || state.history_bytes > self.limits.bytes
            {
                match state.history.pop_front() {
                    Some((_, p)) => state.history_bytes -= p.len(),
                    None => break,
                }
            }
        }
        Sequenced { offset, targets }
    }

    /// Counts one more listening session on `worker`. With `from_offset`,
    /// returns the messages from that offset on (a session catching up after
    /// moving between workers).
    pub fn subscribe(
        &mut self,
        channel: &ChannelName,
        worker: usize,
        from_offset: Option<u64>,
    ) -> Subscription {
        let workers = self.workers;
        let state = self
            .channels
            .entry(channel.clone())
            .or_insert_with(|| ChannelState::new(workers));
        if let Some(n) = state.interest.get_mut(worker) {
            *n += 1;
        }
        state.idle_since = None;
        let mut catch_up = Vec::new();
        let mut gap = false;
        if let Some(from) = from_offset
            && from <= state.last_offset
        {
            let oldest = state.history.front().map(|(o, _)| *o);
            if oldest.is_none_or(|oldest| oldest > from) {
                gap = true;
            }
            catch_up = state
                .history
                .iter()
                .filter(|(o, _)| *o >= from)
                .cloned()
                .collect();
        }
        Subscription {
            current_offset: state.last_offset,
            catch_up,
            gap,
            catching_up: from_offset.is_some(),
        }
    }

    /// Counts one listening session less on `worker`.
    pub fn unsubscribe(&mut self, channel: &ChannelName, worker: usize, now: Instant) {
        if let Some(state) = self.channels.get_mut(channel) {
            if let Some(n) = state.interest.get_mut(worker) {
                *n = n.saturating_sub(1);
            }
            if !state.has_interest() {
                state.idle_since = Some(now);
            }
        }
    }

    /// Frees the history of channels idle past the grace period. Their
    /// offsets are kept, so a channel never reuses an offset.
    pub fn sweep(&mut self, now: Instant) {
        for state in self.channels.values_mut() {
            if let Some(since) = state.idle_since
                && now.duration_since(since) >= IDLE_HISTORY_GRACE
            {
                state.history = VecDeque::new();
                state.history_bytes = 0;
                state.idle_since = None;
            }
        }
    }

    /// The state of every channel, for a takeover by another process.
    pub fn export(&self) -> Vec<crate::upgrade::wire::ChannelSnapshot> {
        self.channels
            .iter()
            .map(|(channel, state)| crate::upgrade::wire::ChannelSnapshot {
                channel: channel.clone(),
                last_offset: state.last_offset,
                history: state.history.iter().cloned().collect(),
            })
            .collect()
    }

    /// Takes over channels from another process: offsets continue where
    /// they were, and the history allows catch-up. The history is kept for
    /// the grace period even if nobody here listens yet, since the
    /// sessions that listen are arriving.
    pub fn import(&mut self, channels: Vec<crate::upgrade::wire::ChannelSnapshot>, now: Instant) {
        for snapshot in channels {
            let workers = self.workers;
            let state = self
                .channels
                .entry(snapshot.channel)
                .or_insert_with(|| ChannelState::new(workers));
            state.last_offset = state.last_offset.max(snapshot.last_offset);
            state.history_bytes = snapshot.history.iter().map(|(_, p)| p.len()).sum();
            state.history = snapshot.history.into();
            if !state.has_interest() {
                state.idle_since = Some(now);
            }
        }
    }

    /// Channels known to this sequencer.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chan() -> ChannelName {
        ChannelName::parse("c").unwrap()
    }

    fn seq() -> Sequencer {
        Sequencer::new(
            2,
            HistoryLimits {
                messages: 3,
                bytes: 1 << 20,
            },
        )
    }

    #[test]
    fn offsets_increase_by_one_and_target_interested_workers() {
        let mut s = seq();
        let p = Bytes::from_static(b"x");
        assert_eq!(s.publish(&chan(), &p).targets, Vec::<usize>::new());
        s.subscribe(&chan(), 1, None);
        let out = s.publish(&chan(), &p);
        assert_eq!(out.offset, 2);
        assert_eq!(out.targets, vec![1]);
        s.subscribe(&chan(), 0, None);
        s.subscribe(&chan(), 0, None);
        assert_eq!(s.publish(&chan(), &p).targets, vec![0, 1]);
        s.unsubscribe(&chan(), 0, Instant::now());
        assert_eq!(s.publish(&chan(), &p).targets, vec![0, 1]);
        s.unsubscribe(&chan(), 0, Instant::now());
        assert_eq!(s.publish(&chan(), &p).targets, vec![1]);
    }

    #[test]
    fn catch_up_returns_history_or_reports_a_gap() {
        let mut s = seq();
        s.subscribe(&chan(), 0, None);
        for i in 0..5u8 {
            s.publish(&chan(), &Bytes::from(vec![i]));
        }
        // History holds offsets 3..=5.
        let sub = s.subscribe(&chan(), 1, Some(4));
        assert!(!sub.gap);
        assert_eq!(sub.current_offset, 5);
        assert_eq!(
            sub.catch_up.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            vec![4, 5]
        );
        let sub = s.subscribe(&chan(), 1, Some(2));
        assert!(sub.gap, "offset 2 fell out of the history");
        let sub = s.subscribe(&chan(), 1, Some(6));
        assert!(!sub.gap && sub.catch_up.is_empty(), "nothing missed yet");
    }

    #[test]
    fn export_then_import_continues_offsets_and_history() {
        let mut old = seq();
        old.subscribe(&chan(), 0, None);
        for i in 0..4u8 {
            old.publish(&chan(), &Bytes::from(vec![i]));
        }
        let mut new = seq();
        new.import(old.export(), Instant::now());
        assert_eq!(new.publish(&chan(), &Bytes::new()).offset, 5);
        let sub = new.subscribe(&chan(), 1, Some(3));
        assert!(!sub.gap);
        assert_eq!(
            sub.catch_up.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
    }

    #[test]
    fn history_survives_a_short_idle_period_then_is_freed() {
        let mut s = seq();
        let t0 = Instant::now();
        s.subscribe(&chan(), 0, None);
        s.publish(&chan(), &Bytes::from_static(b"a"));
        s.unsubscribe(&chan(), 0, t0);
        s.publish(&chan(), &Bytes::from_static(b"b"));
        // The session reappears on the other worker within the grace period.
        let sub = s.subscribe(&chan(), 1, Some(1));
        assert!(!sub.gap);
        assert_eq!(sub.catch_up.len(), 2);
        s.unsubscribe(&chan(), 1, t0);
        s.sweep(t0 + IDLE_HISTORY_GRACE);
        let sub = s.subscribe(&chan(), 1, Some(1));
        assert!(sub.gap);
        assert_eq!(sub.current_offset, 2, "offsets are never reused");
    }
}
