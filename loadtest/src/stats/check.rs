//! Delivery checks: what each arriving message says about its stream
//! ([`StreamCheck`]) and about the Ferry session ([`SessionCheck`]). Pure
//! bookkeeping, no clock and no I/O.

use std::collections::HashMap;

use serde::Serialize;

/// What one arriving message says about its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next one.
    InOrder,
    /// Ahead of the next one: `missing` messages were skipped (they may
    /// still arrive late, else they are lost).
    AfterGap {
        /// How many were skipped.
        missing: u64,
    },
    /// One that had been skipped arrived after a later one.
    Late,
    /// Delivered before.
    Duplicate,
}

/// Totals of delivery checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryTotals {
    /// Distinct messages delivered.
    pub delivered: u64,
    /// Sent and never delivered.
    pub lost: u64,
    /// Delivered more than once (extra copies).
    pub duplicated: u64,
    /// Delivered after a later message of the same sender.
    pub reordered: u64,
}

impl DeliveryTotals {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &DeliveryTotals) {
        self.delivered += other.delivered;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
    }
}

/// One sender's payload sequence (1, 2, 3, ...) as seen by one receiver.
#[derive(Debug, Clone, Default)]
pub struct StreamCheck {
    highest: u64,
    /// Skipped ranges (inclusive), ascending; they shrink as late messages
    /// arrive.
    missing: Vec<(u64, u64)>,
    unique: u64,
    duplicated: u64,
    reordered: u64,
}

impl StreamCheck {
    /// A stream that has delivered nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the arrival of `seq` (seqs count from 1).
    pub fn observe(&mut self, seq: u64) -> Arrival {
        if seq > self.highest {
            let missing = seq - self.highest - 1;
            if missing > 0 {
                self.missing.push((self.highest + 1, seq - 1));
            }
            self.highest = seq;
            self.unique += 1;
            return if missing == 0 {
                Arrival::InOrder
            } else {
                Arrival::AfterGap { missing }
            };
        }
        let hole = self
            .missing
            .iter()
            .position(|&(lo, hi)| lo <= seq && seq <= hi);
        let Some(i) = hole else {
            self.duplicated += 1;
            return Arrival::Duplicate;
        };
        let (lo, hi) = self.missing[i];
        match (seq == lo, seq == hi) {
            (true, true) => {
                self.missing.remove(i);
            }
            (true, false) => self.missing[i].0 = seq + 1,
            (false, true) => self.missing[i].1 = seq - 1,
            (false, false) => {
                self.missing[i].1 = seq - 1;
                self.missing.insert(i + 1, (seq + 1, hi));
            }
        }
        self.unique += 1;
        self.reordered += 1;
        Arrival::Late
    }

    /// Distinct messages delivered so far.
    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// The verdict once the sender says it sent `sent` messages.
    pub fn finish(&self, sent: u64) -> DeliveryTotals {
        DeliveryTotals {
            delivered: self.unique,
            lost: sent.saturating_sub(self.unique),
            duplicated: self.duplicated,
            reordered: self.reordered,
        }
    }
}

/// A broken promise of the Ferry protocol, seen by one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anomaly {
    /// MESSAGE seq skipped ahead.
    SeqGap,
    /// MESSAGE seq did not go up.
    SeqRepeat,
    /// A channel offset skipped ahead.
    OffsetGap,
    /// A channel offset did not go up.
    OffsetRepeat,
}

impl Anomaly {
    /// The reason under which it is counted as an error.
    pub fn reason(self) -> &'static str {
        match self {
            Anomaly::SeqGap => "protocol: session seq gap",
            Anomaly::SeqRepeat => "protocol: session seq repeated or went back",
            Anomaly::OffsetGap => "protocol: channel offset gap",
            Anomaly::OffsetRepeat => "protocol: channel offset repeated or went back",
        }
    }
}

/// The session seq and channel offsets of one Ferry session.
#[derive(Debug, Clone, Default)]
pub struct SessionCheck {
    last_seq: u64,
    /// Per channel: the last offset seen (or the SUBSCRIBED offset).
    offsets: HashMap<String, u64>,
}

impl SessionCheck {
    /// A new session: the first MESSAGE has seq 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// The subscription to `channel` started after `offset`: the first
    /// message has offset + 1.
    pub fn subscribed(&mut self, channel: &str, offset: u64) {
        self.offsets.insert(channel.to_owned(), offset);
    }

    /// The session was lost and a new one began: seqs start over and
    /// subscriptions are new.
    pub fn new_session(&mut self) {
        self.last_seq = 0;
        self.offsets.clear();
    }

    /// Checks one MESSAGE; returns what was wrong with it, if anything
    /// (at most one seq and one offset anomaly).
    pub fn observe(&mut self, seq: u64, channel: &str, offset: u64) -> [Option<Anomaly>; 2] {
        let seq_anomaly = if seq == self.last_seq + 1 {
            None
        } else if seq > self.last_seq {
            Some(Anomaly::SeqGap)
        } else {
            Some(Anomaly::SeqRepeat)
        };
        self.last_seq = self.last_seq.max(seq);
        let offset_anomaly = match self.offsets.get_mut(channel) {
            None => {
                // No SUBSCRIBED offset known: the first message sets it.
                self.offsets.insert(channel.to_owned(), offset);
                None
            }
            Some(last) => {
                let a = if offset == *last + 1 {
                    None
                } else if offset > *last {
                    Some(Anomaly::OffsetGap)
                } else {
                    Some(Anomaly::OffsetRepeat)
                };
                *last = (*last).max(offset);
                a
            }
        };
        [seq_anomaly, offset_anomaly]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream_is_clean() {
        let mut s = StreamCheck::new();
        for seq in 1..=100 {
            assert_eq!(s.observe(seq), Arrival::InOrder);
        }
        assert_eq!(
            s.finish(100),
            DeliveryTotals {
                delivered: 100,
                ..Default::default()
            }
        );
    }

    #[test]
    fn detects_gap_loss_duplicate_and_reorder() {
        let mut s = StreamCheck::new();
        assert_eq!(s.observe(1), Arrival::InOrder);
        assert_eq!(s.observe(2), Arrival::InOrder);
        assert_eq!(s.observe(6), Arrival::AfterGap { missing: 3 });
        assert_eq!(s.observe(4), Arrival::Late, "middle of the hole");
        assert_eq!(s.observe(4), Arrival::Duplicate, "late one again");
        assert_eq!(s.observe(2), Arrival::Duplicate);
        assert_eq!(s.observe(3), Arrival::Late, "low edge of the hole");
        assert_eq!(s.observe(7), Arrival::InOrder);
        // 5 never came; 8 was sent and never came either.
        let t = s.finish(8);
        assert_eq!(
            t,
            DeliveryTotals {
                delivered: 6,
                lost: 2,
                duplicated: 2,
                reordered: 2,
            }
        );
    }

    #[test]
    fn late_arrivals_at_the_high_edge_and_whole_holes() {
        let mut s = StreamCheck::new();
        s.observe(3);
        assert_eq!(s.observe(2), Arrival::Late);
        assert_eq!(s.observe(1), Arrival::Late);
        assert_eq!(s.observe(1), Arrival::Duplicate);
        assert_eq!(s.observe(5), Arrival::AfterGap { missing: 1 });
        assert_eq!(s.observe(4), Arrival::Late);
        assert_eq!(s.finish(5).lost, 0);
        assert_eq!(s.finish(5).reordered, 3);
    }

    #[test]
    fn nothing_delivered_is_all_lost() {
        assert_eq!(StreamCheck::new().finish(10).lost, 10);
    }

    #[test]
    fn session_check_flags_seq_and_offset_problems() {
        let mut c = SessionCheck::new();
        c.subscribed("a", 10);
        assert_eq!(c.observe(1, "a", 11), [None, None]);
        assert_eq!(c.observe(2, "b", 500), [None, None], "unknown channel");
        assert_eq!(c.observe(3, "b", 501), [None, None]);
        assert_eq!(
            c.observe(5, "a", 13),
            [Some(Anomaly::SeqGap), Some(Anomaly::OffsetGap)]
        );
        assert_eq!(
            c.observe(5, "a", 13),
            [Some(Anomaly::SeqRepeat), Some(Anomaly::OffsetRepeat)]
        );
        assert_eq!(c.observe(6, "a", 12), [None, Some(Anomaly::OffsetRepeat)]);
        c.new_session();
        assert_eq!(
            c.observe(1, "a", 99),
            [None, None],
            "new session starts over"
        );
    }
}
