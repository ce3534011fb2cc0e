//! Sequence trackers (PROTOCOL.md, rules 1 and 3).
//!
//! - [`InboundPublishes`]: the server's view of a session's PUBLISH stream;
//!   it makes publishes exactly-once by dropping re-sent duplicates.
//! - [`ReceiveTracker`]: the client's view of MESSAGE seqs; it drops
//!   duplicates after a resume and reports a gap as the server's error.
//! - [`PublishOutbox`]: the client's unacknowledged publishes, re-sent after
//!   a resume from the point the server says it reached.

use std::collections::VecDeque;

use bytes::Bytes;
use thiserror::Error;

use crate::channel::ChannelName;

/// What to do with an incoming sequenced item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The next one in order: process it.
    Accept,
    /// Already processed (re-sent after a resume): drop it.
    Duplicate,
}

/// A sequence number skipped ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("sequence gap: expected {expected}, got {got}")]
pub struct SeqGap {
    /// The number that had to come next.
    pub expected: u64,
    /// The number that came.
    pub got: u64,
}

/// Server side: the last PUBLISH client_seq processed in a session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboundPublishes {
    last: u64,
}

impl InboundPublishes {
    /// Resumes tracking at `last` (a migrated session).
    pub fn starting_after(last: u64) -> Self {
        Self { last }
    }

    /// Classifies `client_seq`; an accepted one becomes the new last.
    pub fn check(&mut self, client_seq: u64) -> Result<Disposition, SeqGap> {
        classify(&mut self.last, client_seq)
    }

    /// The last processed client_seq (sent in WELCOME and PUBACK).
    pub fn last(&self) -> u64 {
        self.last
    }
}

/// Client side: the last MESSAGE seq received in a session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveTracker {
    last: u64,
}

impl ReceiveTracker {
    /// Classifies `seq`; an accepted one becomes the new last.
    pub fn check(&mut self, seq: u64) -> Result<Disposition, SeqGap> {
        classify(&mut self.last, seq)
    }

    /// The last seq received (sent in HELLO on resume, and in ACK).
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Starts over for a new session.
    pub fn reset(&mut self) {
        self.last = 0;
    }
}

fn classify(last: &mut u64, got: u64) -> Result<Disposition, SeqGap> {
    let expected = *last + 1;
    if got == expected {
        *last = got;
        Ok(Disposition::Accept)
    } else if got < expected {
        Ok(Disposition::Duplicate)
    } else {
        Err(SeqGap { expected, got })
    }
}

/// A publish not yet acknowledged by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPublish {
    /// Its client_seq.
    pub client_seq: u64,
    /// The channel.
    pub channel: ChannelName,
    /// The payload.
    pub payload: Bytes,
}

/// Client side: numbers publishes and keeps them until PUBACK.
#[derive(Debug, Clone, Default)]
pub struct PublishOutbox {
    pending: VecDeque<PendingPublish>,
    last_assigned: u64,
    pending_bytes: usize,
}

impl PublishOutbox {
    /// Numbers a new publish and keeps it; returns the pending entry to send.
    pub fn push(&mut self, channel: ChannelName, payload: Bytes) -> &PendingPublish {
        self.last_assigned += 1;
        self.pending_bytes += payload.len();
        self.pending.push_back(PendingPublish {
            client_seq: self.last_assigned,
            channel,
            payload,
        });
        // Just pushed, so the deque is not empty.
        &self.pending[self.pending.len() - 1]
    }

    /// Handles a cumulative PUBACK (or WELCOME's last_client_seq): drops
    /// everything up to `client_seq`.
    pub fn acknowledge(&mut self, client_seq: u64) {
        while let Some(front) = self.pending.front() {
            if front.client_seq > client_seq {
                break;
            }
            self.pending_bytes -= front.payload.len();
            self.pending.pop_front();
        }
    }

    /// After WELCOME resumed the session: the publishes to send again, in
    /// order.
    pub fn resend_after(&mut self, last_processed: u64) -> impl Iterator<Item = &PendingPublish> {
        self.acknowledge(last_processed);
        self.pending.iter()
    }

    /// After WELCOME started a new session: the unacknowledged publishes may
    /// or may not have been processed, so they are handed back to the
    /// application instead of being re-sent (re-sending could duplicate).
    pub fn take_uncertain(&mut self) -> Vec<PendingPublish> {
        self.last_assigned = 0;
        self.pending_bytes = 0;
        self.pending.drain(..).collect()
    }

    /// Publishes waiting for PUBACK.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing waits for PUBACK.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Payload bytes waiting for PUBACK.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// The last client_seq assigned.
    pub fn last_assigned(&self) -> u64 {
        self.last_assigned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_accepts_in_order_and_drops_resent() {
        let mut t = InboundPublishes::default();
        assert_eq!(t.check(1), Ok(Disposition::Accept));
        assert_eq!(t.check(2), Ok(Disposition::Accept));
        assert_eq!(t.check(2), Ok(Disposition::Duplicate));
        assert_eq!(t.check(1), Ok(Disposition::Duplicate));
        assert_eq!(
            t.check(4),
            Err(SeqGap {
                expected: 3,
                got: 4
            })
        );
        assert_eq!(t.last(), 2);
    }

    #[test]
    fn receive_tracker_reports_gaps() {
        let mut r = ReceiveTracker::default();
        assert_eq!(r.check(1), Ok(Disposition::Accept));
        assert_eq!(r.check(1), Ok(Disposition::Duplicate));
        assert!(r.check(3).is_err());
        assert_eq!(r.last(), 1);
    }

    #[test]
    fn outbox_resends_only_what_the_server_missed() {
        let c = ChannelName::parse("c").unwrap();
        let mut o = PublishOutbox::default();
        for _ in 0..5 {
            o.push(c.clone(), Bytes::from_static(b"p"));
        }
        o.acknowledge(1);
        let again: Vec<u64> = o.resend_after(3).map(|p| p.client_seq).collect();
        assert_eq!(again, vec![4, 5]);
        assert_eq!(o.pending_bytes(), 2);
        let lost = o.take_uncertain();
        assert_eq!(lost.len(), 2);
        assert_eq!(o.push(c, Bytes::new()).client_seq, 1);
    }
}
