//! Replay-log invariants under random push / mark_sent / ack / resume_from,
//! checked against an independent model.

use bytes::Bytes;
use ferry_protocol::ChannelName;
use ferry_protocol::replay_log::{Overflow, ReplayError, ReplayLimits, ReplayLog};
use proptest::prelude::*;

use super::config;

#[derive(Debug, Clone)]
enum LogOp {
    Push(usize),
    MarkSent(u16),
    Ack(u16),
    ResumeFrom(u16),
}

fn log_op() -> impl Strategy<Value = LogOp> {
    prop_oneof![
        4 => (0..120usize).prop_map(LogOp::Push),
        2 => any::<u16>().prop_map(LogOp::MarkSent),
        2 => any::<u16>().prop_map(LogOp::Ack),
        1 => any::<u16>().prop_map(LogOp::ResumeFrom),
    ]
}

/// A seq near the log's range: 0..=last_seq + 2, so acks and resumes hit
/// below, inside and beyond what was assigned and sent.
fn near(x: u16, last_seq: u64) -> u64 {
    u64::from(x) % (last_seq + 3)
}

/// The per-entry bookkeeping the log charges on top of payload and channel,
/// measured rather than copied from the source.
fn entry_overhead(chan: &ChannelName) -> usize {
    let mut log = ReplayLog::new(ReplayLimits::default());
    match log.push(chan.clone(), 0, Bytes::new()) {
        Ok(_) => log.held_bytes() - chan.as_bytes().len(),
        Err(e) => panic!("{e}"),
    }
}

/// Payload bytes that name their seq, to catch entries out of place.
fn payload_for(seq: u64, len: usize) -> Bytes {
    (0..len).map(|i| (seq as usize + i) as u8).collect()
}

/// What the log must look like, kept independently.
#[derive(Debug, Default)]
struct Model {
    last_seq: u64,
    acked: u64,
    sent: u64,
    overflowed: bool,
    /// Cost of each held entry, by seq - acked - 1.
    costs: std::collections::VecDeque<usize>,
}

impl Model {
    fn release_through(&mut self, seq: u64) {
        while self.acked < seq {
            self.costs.pop_front();
            self.acked += 1;
        }
    }
}

fn check_log(log: &ReplayLog, m: &Model, l: &ReplayLimits) -> Result<(), TestCaseError> {
    prop_assert_eq!(log.last_seq(), m.last_seq);
    prop_assert_eq!(log.acked(), m.acked);
    prop_assert_eq!(log.sent(), m.sent);
    prop_assert_eq!(log.is_overflowed(), m.overflowed);
    prop_assert!(m.acked <= m.sent && m.sent <= m.last_seq);
    prop_assert!(log.held_bytes() <= l.max_bytes);
    prop_assert!(log.len() <= l.max_messages);
    prop_assert!(log.unsent_bytes() <= log.held_bytes());
    let held: Vec<u64> = log.entries().map(|e| e.seq).collect();
    let unsent: Vec<u64> = log.unsent().map(|e| e.seq).collect();
    if m.overflowed {
        // Memory is freed, nothing is offered, a resume fails explicitly.
        prop_assert!(held.is_empty());
        prop_assert_eq!(log.held_bytes(), 0);
        prop_assert!(unsent.is_empty());
        prop_assert!(!log.has_unsent());
        prop_assert_eq!(log.unsent_bytes(), 0);
    } else {
        // Contiguous from acked + 1 to last_seq: no gap, no duplicate.
        prop_assert_eq!(held, (m.acked + 1..=m.last_seq).collect::<Vec<_>>());
        prop_assert_eq!(&unsent, &(m.sent + 1..=m.last_seq).collect::<Vec<_>>());
        prop_assert_eq!(log.has_unsent(), !unsent.is_empty());
        prop_assert_eq!(log.held_bytes(), m.costs.iter().sum::<usize>());
        let unsent_cost: usize = m.costs.iter().skip((m.sent - m.acked) as usize).sum();
        prop_assert_eq!(log.unsent_bytes(), unsent_cost);
        for e in log.entries() {
            prop_assert_eq!(e.channel_offset, e.seq * 10);
            prop_assert_eq!(&e.payload, &payload_for(e.seq, e.payload.len()));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn replay_log_invariants_hold_under_random_operations(
        max_messages in 1..24usize,
        max_bytes in 40..1500usize,
        ops in proptest::collection::vec(log_op(), 0..80),
    ) {
        let chan = ChannelName::parse("room:1").map_err(|e| TestCaseError::fail(e.to_string()))?;
        let overhead = entry_overhead(&chan);
        let l = ReplayLimits { max_messages, max_bytes };
        let mut log = ReplayLog::new(l);
        let mut m = Model::default();
        for op in ops {
            match op {
                LogOp::Push(len) => {
                    let seq = m.last_seq + 1;
                    let cost = len + chan.as_bytes().len() + overhead;
                    let fits = !m.overflowed
                        && m.costs.len() < max_messages
                        && m.costs.iter().sum::<usize>() + cost <= max_bytes;
                    let got = log.push(chan.clone(), seq * 10, payload_for(seq, len));
                    if fits {
                        prop_assert_eq!(got, Ok(seq));
                        m.last_seq = seq;
                        m.costs.push_back(cost);
                    } else {
                        prop_assert_eq!(got, Err(Overflow { seq }));
                        m.overflowed = true;
                        m.costs.clear();
                    }
                }
                LogOp::MarkSent(x) => {
                    let seq = near(x, m.last_seq);
                    log.mark_sent(seq);
                    m.sent = m.sent.max(seq.min(m.last_seq));
                }
                LogOp::Ack(x) => {
                    let seq = near(x, m.last_seq);
                    let got = log.ack(seq);
                    if seq > m.sent {
                        prop_assert_eq!(
                            got,
                            Err(ReplayError::AckBeyondSent { acked: seq, last_sent: m.sent })
                        );
                    } else {
                        prop_assert_eq!(got, Ok(()));
                        if !m.overflowed {
                            m.release_through(seq);
                        }
                        m.acked = m.acked.max(seq);
                    }
                }
                LogOp::ResumeFrom(x) => {
                    let last_received = near(x, m.last_seq);
                    let got = log.resume_from(last_received);
                    if m.overflowed || last_received > m.last_seq || last_received < m.acked {
                        prop_assert_eq!(
                            got,
                            Err(ReplayError::Unavailable { from: last_received + 1 })
                        );
                    } else {
                        prop_assert_eq!(got, Ok(()));
                        m.release_through(last_received);
                        m.sent = last_received;
                    }
                }
            }
            check_log(&log, &m, &l)?;
        }
    }

    #[test]
    fn a_resume_after_overflow_always_fails(
        extra in 1..5usize,
        last_received in 0..40u64,
    ) {
        let chan = ChannelName::parse("c").map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut log = ReplayLog::new(ReplayLimits { max_messages: 4, max_bytes: 1 << 20 });
        for i in 0..(4 + extra) as u64 {
            let _ = log.push(chan.clone(), i, Bytes::new());
        }
        prop_assert!(log.is_overflowed());
        prop_assert_eq!(log.held_bytes(), 0);
        prop_assert_eq!(
            log.resume_from(last_received),
            Err(ReplayError::Unavailable { from: last_received + 1 })
        );
        // Nothing more is accepted: continuity cannot be proven again.
        prop_assert_eq!(log.push(chan, 0, Bytes::new()), Err(Overflow { seq: 5 }));
    }
}
