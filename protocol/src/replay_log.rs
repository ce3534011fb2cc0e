//! The server's per-session replay log (PROTOCOL.md, rules 1 and 2).
//!
//! Every MESSAGE a session is due gets the next `seq` here and stays until
//! the client acknowledges it. A cursor marks what the current transport has
//! been given, so the same log is the outbound queue (unsent part) and the
//! replay buffer (sent, unacknowledged part).
//!
//! ```text
//!   acked ──────── sent ──────────── last_seq
//!     │  in flight  │     unsent       │
//! ```
//!
//! The log is bounded by count and by bytes. When a message does not fit
//! the log *overflows*: from then on it can no longer prove continuity, so a
//! resume fails explicitly ([`ReplayError::Unavailable`]) instead of leaving
//! a silent gap.

use std::collections::VecDeque;

use bytes::Bytes;
use thiserror::Error;

use crate::channel::ChannelName;

/// Fixed bookkeeping charged per entry on top of its payload and channel,
/// so that many tiny messages are bounded too.
const ENTRY_OVERHEAD: usize = 48;

/// Bounds of one session's replay log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayLimits {
    /// Most unacknowledged messages held.
    pub max_messages: usize,
    /// Most bytes held (payload + channel + per-entry overhead).
    pub max_bytes: usize,
}

impl Default for ReplayLimits {
    fn default() -> Self {
        Self {
            max_messages: 1024,
            max_bytes: 1024 * 1024,
        }
    }
}

/// One message held for a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The session seq.
    pub seq: u64,
    /// The channel it was published to.
    pub channel: ChannelName,
    /// Its offset in that channel.
    pub channel_offset: u64,
    /// The payload, shared with every other subscriber.
    pub payload: Bytes,
}

impl Entry {
    fn cost(&self) -> usize {
        self.payload.len() + self.channel.as_bytes().len() + ENTRY_OVERHEAD
    }
}

/// Why the log refused something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// Peer: the client acknowledged a seq that was never sent.
    #[error("ack of seq {acked} but only {last_sent} were sent")]
    AckBeyondSent {
        /// The acknowledged seq.
        acked: u64,
        /// The highest seq the client could have received.
        last_sent: u64,
    },
    /// The log cannot provide every message after the client's last one:
    /// it overflowed, or the client claims a seq never assigned.
    #[error("replay log cannot continue from seq {from}")]
    Unavailable {
        /// The first seq the client needs.
        from: u64,
    },
}

/// A message did not fit: the session has lost continuity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("replay log overflowed at seq {seq}")]
pub struct Overflow {
    /// The seq the message would have had.
    pub seq: u64,
}

/// The replay log of one session. See the module docs.
#[derive(Debug, Clone)]
pub struct ReplayLog {
    entries: VecDeque<Entry>,
    limits: ReplayLimits,
    last_seq: u64,
    acked: u64,
    sent: u64,
    held_bytes: usize,
    sent_bytes: usize,
    overflowed: bool,
}

impl ReplayLog {
    /// An empty log; the first message gets seq 1.
    pub fn new(limits: ReplayLimits) -> Self {
        Self {
            entries: VecDeque::new(),
            limits,
            last_seq: 0,
            acked: 0,
            sent: 0,
            held_bytes: 0,
            sent_bytes: 0,
            overflowed: false,
        }
    }

    /// Rebuilds a log from migrated parts (a session moving to another
    /// worker or process). Entries must be consecutive and end at
    /// `last_seq`; anything else is refused as [`ReplayError::Unavailable`].
    pub fn from_parts(
        limits: ReplayLimits,
        last_seq: u64,
        acked: u64,
        entries: Vec<Entry>,
        overflowed: bool,
    ) -> Result<Self, ReplayError> {
        let mut log = Self::new(limits);
        log.last_seq = last_seq;
        log.acked = acked;
        log.sent = acked;
        log.overflowed = overflowed;
        let mut expected = acked + 1;
        for e in entries {
            if e.seq != expected {
                return Err(ReplayError::Unavailable { from: expected });
            }
            expected += 1;
            log.held_bytes += e.cost();
            log.entries.push_back(e);
        }
        if !overflowed && expected != last_seq + 1 {
            return Err(ReplayError::Unavailable { from: expected });
        }
        Ok(log)
    }

    /// Assigns the next seq to a message and holds it until acknowledged.
    ///
    /// Once the log has overflowed it accepts nothing more: the session must
    /// be ended (attached) or fail its resume (detached).
    pub fn push(
        &mut self,
        channel: ChannelName,
        channel_offset: u64,
        payload: Bytes,
    ) -> Result<u64, Overflow> {
        let seq = self.last_seq + 1;
        let entry = Entry {
            seq,
            channel,
            channel_offset,
            payload,
        };
        if self.overflowed
            || self.entries.len() >= self.limits.max_messages
            || self.held_bytes + entry.cost() > self.limits.max_bytes
        {
            self.overflow();
            return Err(Overflow { seq });
        }
        self.held_bytes += entry.cost();
        self.last_seq = seq;
        self.entries.push_back(entry);
        Ok(seq)
    }

    /// Records that the session missed messages it can never get back (for
    /// example its channel's history no longer covers a catch-up): from now
    /// on a resume fails explicitly, exactly as after an overflow.
    pub fn mark_lost(&mut self) {
        self.overflow();
    }

    fn overflow(&mut self) {
        self.overflowed = true;
        self.entries = VecDeque::new();
        self.held_bytes = 0;
        self.sent_bytes = 0;
    }

    /// Handles a cumulative ACK. A stale ack (at or below an earlier one) is
    /// ignored; an ack beyond what was sent is the client's error.
    pub fn ack(&mut self, seq: u64) -> Result<(), ReplayError> {
        if seq > self.sent {
            return Err(ReplayError::AckBeyondSent {
                acked: seq,
                last_sent: self.sent,
            });
        }
        self.release_through(seq);
        Ok(())
    }

    fn release_through(&mut self, seq: u64) {
        while let Some(front) = self.entries.front() {
            if front.seq > seq {
                break;
            }
            let cost = front.cost();
            self.held_bytes -= cost;
            if front.seq <= self.sent {
                self.sent_bytes -= cost;
            }
            self.entries.pop_front();
        }
        self.acked = self.acked.max(seq);
    }

    /// Prepares the log for a new transport after a resume: everything up
    /// to `last_received` is acknowledged and the rest becomes unsent, so it
    /// is replayed in order. Fails when the log cannot give
    /// `last_received + 1` onwards.
    pub fn resume_from(&mut self, last_received: u64) -> Result<(), ReplayError> {
        let from = last_received + 1;
        if self.overflowed || last_received > self.last_seq || last_received < self.acked {
            return Err(ReplayError::Unavailable { from });
        }
        // Nothing is in flight on the new transport: the client's
        // last_received acknowledges what it got, the rest is unsent.
        self.sent = self.acked;
        self.sent_bytes = 0;
        self.release_through(last_received);
        self.sent = last_received;
        Ok(())
    }

    /// Messages not yet given to the current transport, in seq order.
    pub fn unsent(&self) -> impl Iterator<Item = &Entry> {
        let skip = (self.sent - self.acked) as usize;
        self.entries.iter().skip(skip)
    }

    /// Records that the transport took every message up to `seq`.
    pub fn mark_sent(&mut self, seq: u64) {
        let seq = seq.min(self.last_seq);
        if seq <= self.sent {
            return;
        }
        let newly: usize = self
            .entries
            .iter()
            .skip((self.sent - self.acked) as usize)
            .take((seq - self.sent) as usize)
            .map(Entry::cost)
            .sum();
        self.sent_bytes += newly;
        self.sent = seq;
    }

    /// Bytes waiting for the transport: the slow-consumer measure.
    pub fn unsent_bytes(&self) -> usize {
        self.held_bytes - self.sent_bytes
    }

    /// Whether anything waits for the transport.
    pub fn has_unsent(&self) -> bool {
        self.sent < self.last_seq && !self.overflowed
    }

    /// The last seq assigned.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The highest cumulative ack.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The highest seq given to the transport.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no message is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held, as charged against the limit.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Whether the log has lost continuity.
    pub fn is_overflowed(&self) -> bool {
        self.overflowed
    }

    /// The bounds in force.
    pub fn limits(&self) -> ReplayLimits {
        self.limits
    }

    /// Replaces the limits (config reload). A log already above the new
    /// limits keeps its messages; the next push is checked.
    pub fn set_limits(&mut self, limits: ReplayLimits) {
        self.limits = limits;
    }

    /// The held entries, oldest first (for migration).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chan() -> ChannelName {
        ChannelName::parse("c").unwrap()
    }

    fn log(max_messages: usize) -> ReplayLog {
        ReplayLog::new(ReplayLimits {
            max_messages,
            max_bytes: 1 << 20,
        })
    }

    fn push_n(log: &mut ReplayLog, n: u64) {
        for i in 0..n {
            log.push(chan(), i, Bytes::from_static(b"x")).unwrap();
        }
    }

    #[test]
    fn seqs_start_at_one_and_have_no_gaps() {
        let mut l = log(10);
        for want in 1..=5 {
            assert_eq!(l.push(chan(), 0, Bytes::new()), Ok(want));
        }
        let seqs: Vec<u64> = l.unsent().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn ack_releases_and_rejects_unsent() {
        let mut l = log(10);
        push_n(&mut l, 5);
        assert_eq!(
            l.ack(1),
            Err(ReplayError::AckBeyondSent {
                acked: 1,
                last_sent: 0
            })
        );
        l.mark_sent(5);
        assert_eq!(l.unsent_bytes(), 0);
        l.ack(3).unwrap();
        assert_eq!(l.len(), 2);
        l.ack(2).unwrap(); // stale: ignored
        assert_eq!(l.acked(), 3);
    }

    #[test]
    fn resume_replays_from_last_received_in_order() {
        let mut l = log(10);
        push_n(&mut l, 6);
        l.mark_sent(6);
        l.ack(2).unwrap();
        // The client got up to 4 before the transport died.
        l.resume_from(4).unwrap();
        let seqs: Vec<u64> = l.unsent().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![5, 6]);
        assert!(l.unsent_bytes() > 0);
    }

    #[test]
    fn overflow_makes_resume_fail_explicitly() {
        let mut l = log(3);
        push_n(&mut l, 3);
        assert_eq!(l.push(chan(), 9, Bytes::new()), Err(Overflow { seq: 4 }));
        assert!(l.is_overflowed());
        assert_eq!(l.held_bytes(), 0, "overflow must free the memory");
        assert_eq!(l.resume_from(0), Err(ReplayError::Unavailable { from: 1 }));
    }

    #[test]
    fn byte_bound_counts_payloads() {
        let mut l = ReplayLog::new(ReplayLimits {
            max_messages: 1000,
            max_bytes: 200,
        });
        let big = Bytes::from(vec![0u8; 100]);
        assert!(l.push(chan(), 1, big.clone()).is_ok());
        assert!(l.push(chan(), 2, big).is_err());
    }

    #[test]
    fn resume_beyond_what_was_marked_sent_keeps_byte_counts_right() {
        let mut l = log(10);
        push_n(&mut l, 6);
        l.mark_sent(3);
        // The client got 5 although only 3 were marked sent when the
        // transport died (a write raced the failure).
        l.resume_from(5).unwrap();
        assert_eq!(l.unsent().map(|e| e.seq).collect::<Vec<_>>(), vec![6]);
        assert_eq!(l.unsent_bytes(), l.held_bytes());
        l.mark_sent(6);
        l.ack(6).unwrap();
        assert_eq!(l.held_bytes(), 0);
        assert_eq!(l.unsent_bytes(), 0);
    }

    #[test]
    fn resume_with_seq_never_assigned_is_unavailable() {
        let mut l = log(10);
        push_n(&mut l, 2);
        assert!(l.resume_from(3).is_err());
    }

    #[test]
    fn resume_after_from_parts_beyond_acked() {
        // A migrated log restarts `sent` at `acked`, but the client may
        // already hold later messages.
        let e = |seq| Entry {
            seq,
            channel: chan(),
            channel_offset: seq,
            payload: Bytes::from_static(b"x"),
        };
        let mut l =
            ReplayLog::from_parts(ReplayLimits::default(), 5, 2, vec![e(3), e(4), e(5)], false)
                .unwrap();
        l.resume_from(4).unwrap();
        assert_eq!(l.unsent().map(|e| e.seq).collect::<Vec<_>>(), vec![5]);
        assert_eq!(l.unsent_bytes(), l.held_bytes());
        l.mark_sent(5);
        assert_eq!(l.unsent_bytes(), 0);
    }

    #[test]
    fn from_parts_checks_continuity() {
        let e = |seq| Entry {
            seq,
            channel: chan(),
            channel_offset: seq,
            payload: Bytes::new(),
        };
        let l =
            ReplayLog::from_parts(ReplayLimits::default(), 5, 3, vec![e(4), e(5)], false).unwrap();
        assert_eq!(l.unsent().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
        assert!(ReplayLog::from_parts(ReplayLimits::default(), 5, 3, vec![e(5)], false).is_err());
    }
}
