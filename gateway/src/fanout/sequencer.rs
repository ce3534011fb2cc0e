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
    /// Since when nobody listens; `None` while someone does.
    idle_since: Option<Instant>,
}

impl ChannelState {
    fn new(workers: usize, now: Instant) -> Self {
        Self {
            last_offset: 0,
            history: VecDeque::new(),
            history_bytes: 0,
            interest: vec![0; workers],
            idle_since: Some(now),
        }
    }

    fn has_interest(&self) -> bool {
        self.interest.iter().any(|&n| n > 0)
    }

    /// Whether the history is still worth keeping: someone listens, or the
    /// last listener left recently (it may be moving between workers).
    fn keeps_history(&self, now: Instant) -> bool {
        self.idle_since
            .is_none_or(|since| now.saturating_duration_since(since) < IDLE_HISTORY_GRACE)
    }
}

/// Bytes one channel entry costs beyond its name and history payloads:
/// the map slot, the state, the per-worker interest counts and the
/// allocation headers, per map slot: 1M channels measured ~470 B resident
/// each over ~1.8M slots (BENCHMARKS.md §5).
const CHANNEL_OVERHEAD: usize = 256;
/// Bytes one history entry costs beyond its payload.
const HISTORY_ENTRY_OVERHEAD: usize = 48;

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
///
/// A channel nobody listens to is remembered for `idle_ttl`, then
/// forgotten: its offsets restart at 1 (PROTOCOL.md §17). Without that,
/// every distinct name ever published would stay in memory.
#[derive(Debug)]
pub struct Sequencer {
    workers: usize,
    limits: HistoryLimits,
    idle_ttl: Duration,
    channels: HashMap<ChannelName, ChannelState>,
    /// Bytes of channel names held as keys.
    name_bytes: usize,
    /// History entries and payload bytes over every channel.
    history_entries: usize,
    history_bytes: usize,
}

impl Sequencer {
    /// A sequencer for a gateway of `workers` workers.
    pub fn new(workers: usize, limits: HistoryLimits, idle_ttl: Duration) -> Self {
        Self {
            workers,
            limits,
            idle_ttl,
            channels: HashMap::new(),
            name_bytes: 0,
            history_entries: 0,
            history_bytes: 0,
        }
    }

    /// Replaces the history bounds and the idle TTL (reload).
    pub fn set_limits(&mut self, limits: HistoryLimits, idle_ttl: Duration) {
        self.limits = limits;
        self.idle_ttl = idle_ttl;
    }

    fn entry(&mut self, channel: &ChannelName, now: Instant) -> &mut ChannelState {
        if !self.channels.contains_key(channel) {
            // The key is copied so that it does not pin the read buffer the
            // name was decoded from.
            self.name_bytes += channel.as_bytes().len();
            self.channels
                .insert(channel.to_compact(), ChannelState::new(self.workers, now));
        }
        self.channels
            .get_mut(channel)
            .expect("inserted just above if it was missing")
    }

    /// Gives `payload` the channel's next offset.
    pub fn publish(&mut self, channel: &ChannelName, payload: &Bytes, now: Instant) -> Sequenced {
        let limits = self.limits;
        let state = self.entry(channel, now);
        state.last_offset += 1;
        let offset = state.last_offset;
        let targets: Vec<usize> = state
            .interest
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(w, _)| w)
            .collect();
        let (mut added, mut removed) = ((0usize, 0usize), (0usize, 0usize));
        if state.keeps_history(now) {
            state.history.push_back((offset, payload.clone()));
            state.history_bytes += payload.len();
            added = (1, payload.len());
            while state.history.len() > limits.messages || state.history_bytes > limits.bytes {
                match state.history.pop_front() {
                    Some((_, p)) => {
                        state.history_bytes -= p.len();
                        removed.0 += 1;
                        removed.1 += p.len();
                    }
                    None => break,
                }
            }
        }
        self.history_entries = self.history_entries + added.0 - removed.0;
        self.history_bytes = self.history_bytes + added.1 - removed.1;
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
        now: Instant,
    ) -> Subscription {
        let state = self.entry(channel, now);
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

    /// Frees the history of channels idle past the grace period, and
    /// forgets channels idle past the TTL; returns how many it forgot.
    pub fn sweep(&mut self, now: Instant) -> usize {
        self.forget_idle(now, self.idle_ttl)
    }

    /// Forgets every channel nobody has listened to for `min_idle` (at
    /// least the history grace, so that a session moving between workers
    /// still finds its catch-up) and frees the history of channels idle
    /// past the grace. Returns how many channels were forgotten.
    pub fn forget_idle(&mut self, now: Instant, min_idle: Duration) -> usize {
        let min_idle = min_idle.max(IDLE_HISTORY_GRACE);
        let before = self.channels.len();
        let (mut entries, mut bytes, mut names) = (0, 0, 0);
        self.channels.retain(|name, state| {
            let Some(since) = state.idle_since else {
                return true;
            };
            let idle = now.saturating_duration_since(since);
            if idle >= min_idle {
                entries += state.history.len();
                bytes += state.history_bytes;
                names += name.as_bytes().len();
                return false;
            }
            if idle >= IDLE_HISTORY_GRACE && !state.history.is_empty() {
                entries += state.history.len();
                bytes += state.history_bytes;
                state.history = VecDeque::new();
                state.history_bytes = 0;
            }
            true
        });
        self.history_entries -= entries;
        self.history_bytes -= bytes;
        self.name_bytes -= names;
        // A map that once held a million names keeps their slots unless
        // asked to give them back.
        if self.channels.capacity() > 4 * self.channels.len() + 64 {
            self.channels.shrink_to_fit();
        }
        before - self.channels.len()
    }

    /// Bytes this sequencer holds: channel entries, names and histories.
    pub fn memory(&self) -> usize {
        self.channels.capacity() * CHANNEL_OVERHEAD
            + self.name_bytes
            + self.history_entries * HISTORY_ENTRY_OVERHEAD
            + self.history_bytes
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
            let state = self.entry(&snapshot.channel, now);
            let (old_entries, old_bytes) = (state.history.len(), state.history_bytes);
            state.last_offset = state.last_offset.max(snapshot.last_offset);
            state.history_bytes = snapshot.history.iter().map(|(_, p)| p.len()).sum();
            state.history = snapshot.history.into();
            if !state.has_interest() {
                state.idle_since = Some(now);
            }
            let (entries, bytes) = (state.history.len(), state.history_bytes);
            self.history_entries = self.history_entries + entries - old_entries;
            self.history_bytes = self.history_bytes + bytes - old_bytes;
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
            Duration::from_secs(60),
        )
    }

    #[test]
    fn offsets_increase_by_one_and_target_interested_workers() {
        let mut s = seq();
        let p = Bytes::from_static(b"x");
        assert_eq!(
            s.publish(&chan(), &p, Instant::now()).targets,
            Vec::<usize>::new()
        );
        s.subscribe(&chan(), 1, None, Instant::now());
        let out = s.publish(&chan(), &p, Instant::now());
        assert_eq!(out.offset, 2);
        assert_eq!(out.targets, vec![1]);
        s.subscribe(&chan(), 0, None, Instant::now());
        s.subscribe(&chan(), 0, None, Instant::now());
        assert_eq!(s.publish(&chan(), &p, Instant::now()).targets, vec![0, 1]);
        s.unsubscribe(&chan(), 0, Instant::now());
        assert_eq!(s.publish(&chan(), &p, Instant::now()).targets, vec![0, 1]);
        s.unsubscribe(&chan(), 0, Instant::now());
        assert_eq!(s.publish(&chan(), &p, Instant::now()).targets, vec![1]);
    }

    #[test]
    fn catch_up_returns_history_or_reports_a_gap() {
        let mut s = seq();
        s.subscribe(&chan(), 0, None, Instant::now());
        for i in 0..5u8 {
            s.publish(&chan(), &Bytes::from(vec![i]), Instant::now());
        }
        // History holds offsets 3..=5.
        let sub = s.subscribe(&chan(), 1, Some(4), Instant::now());
        assert!(!sub.gap);
        assert_eq!(sub.current_offset, 5);
        assert_eq!(
            sub.catch_up.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            vec![4, 5]
        );
        let sub = s.subscribe(&chan(), 1, Some(2), Instant::now());
        assert!(sub.gap, "offset 2 fell out of the history");
        let sub = s.subscribe(&chan(), 1, Some(6), Instant::now());
        assert!(!sub.gap && sub.catch_up.is_empty(), "nothing missed yet");
    }

    #[test]
    fn export_then_import_continues_offsets_and_history() {
        let mut old = seq();
        old.subscribe(&chan(), 0, None, Instant::now());
        for i in 0..4u8 {
            old.publish(&chan(), &Bytes::from(vec![i]), Instant::now());
        }
        let mut new = seq();
        new.import(old.export(), Instant::now());
        assert_eq!(
            new.publish(&chan(), &Bytes::new(), Instant::now()).offset,
            5
        );
        let sub = new.subscribe(&chan(), 1, Some(3), Instant::now());
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
        s.subscribe(&chan(), 0, None, t0);
        s.publish(&chan(), &Bytes::from_static(b"a"), t0);
        s.unsubscribe(&chan(), 0, t0);
        s.publish(&chan(), &Bytes::from_static(b"b"), t0);
        // The session reappears on the other worker within the grace period.
        let sub = s.subscribe(&chan(), 1, Some(1), t0);
        assert!(!sub.gap);
        assert_eq!(sub.catch_up.len(), 2);
        s.unsubscribe(&chan(), 1, t0);
        s.sweep(t0 + IDLE_HISTORY_GRACE);
        let sub = s.subscribe(&chan(), 1, Some(1), t0 + IDLE_HISTORY_GRACE);
        assert!(sub.gap);
        assert_eq!(sub.current_offset, 2, "offsets are kept within the TTL");
    }

    #[test]
    fn publishes_to_a_channel_nobody_listens_to_keep_no_history() {
        let mut s = seq();
        let t0 = Instant::now();
        s.publish(&chan(), &Bytes::from_static(b"a"), t0);
        let later = t0 + IDLE_HISTORY_GRACE;
        s.publish(&chan(), &Bytes::from_static(b"b"), later);
        let sub = s.subscribe(&chan(), 0, Some(1), later);
        assert_eq!(sub.catch_up.len(), 1, "only the publish within the grace");
    }

    #[test]
    fn idle_channels_are_forgotten_after_the_ttl_and_memory_returns() {
        let ttl = Duration::from_secs(60);
        let mut s = Sequencer::new(
            2,
            HistoryLimits {
                messages: 16,
                bytes: 1 << 20,
            },
            ttl,
        );
        let empty = s.memory();
        let t0 = Instant::now();
        let listened = ChannelName::parse("kept").unwrap();
        s.subscribe(&listened, 1, None, t0);
        for i in 0..10_000 {
            let c = ChannelName::parse(&format!("name:{i}")).unwrap();
            s.publish(&c, &Bytes::from_static(b"0123456789"), t0);
        }
        s.publish(&listened, &Bytes::from_static(b"x"), t0);
        assert_eq!(s.channel_count(), 10_001);
        let full = s.memory();
        assert!(full > empty + 10_000 * 100, "{full} bytes for 10k channels");

        s.sweep(t0 + ttl - Duration::from_secs(1));
        assert_eq!(s.channel_count(), 10_001, "still within the TTL");
        s.sweep(t0 + ttl);
        assert_eq!(s.channel_count(), 1, "only the channel someone listens to");
        assert!(s.memory() < empty + 1024, "{} bytes left", s.memory());
        // The one kept still counts on: its offsets never restart while
        // someone listens.
        assert_eq!(s.publish(&listened, &Bytes::new(), t0 + ttl).offset, 2);
        // A forgotten channel starts again at 1.
        let c = ChannelName::parse("name:7").unwrap();
        assert_eq!(s.publish(&c, &Bytes::new(), t0 + ttl).offset, 1);
    }

    #[test]
    fn forgetting_under_pressure_spares_channels_within_the_grace() {
        let mut s = seq();
        let t0 = Instant::now();
        s.publish(&chan(), &Bytes::from_static(b"a"), t0);
        assert_eq!(
            s.forget_idle(t0 + Duration::from_secs(1), Duration::ZERO),
            0
        );
        assert_eq!(s.forget_idle(t0 + IDLE_HISTORY_GRACE, Duration::ZERO), 1);
    }
}
