//! Property tests of the codec and the delivery state machines.
//!
//! - every frame survives encode → decode, in both framings;
//! - arbitrary or mangled bytes never panic the decoders and never yield a
//!   frame larger than the limit;
//! - a QUIC stream split at arbitrary points decodes to the same frames;
//! - the replay log keeps its invariants under random operations;
//! - the sequence trackers never accept a number twice.

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};
use ferry_protocol::codec::{self, DecodeLimits};
use ferry_protocol::replay_log::{Overflow, ReplayError, ReplayLimits, ReplayLog};
use ferry_protocol::seq::{Disposition, InboundPublishes, PublishOutbox, ReceiveTracker, SeqGap};
use ferry_protocol::{
    ChannelName, DecodeError, Frame, Hello, ResumeRequest, ResumeSecret, SessionId, Welcome,
    WelcomeOutcome,
};
use proptest::prelude::*;

/// 512 cases per property; `PROPTEST_CASES` overrides it for longer runs.
fn config() -> ProptestConfig {
    if std::env::var_os("PROPTEST_CASES").is_some() {
        ProptestConfig::default()
    } else {
        ProptestConfig::with_cases(512)
    }
}

// ---- strategies ----------------------------------------------------------

/// Small numbers (one- and two-byte varints, boundaries) as often as any u64.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..300u64,
        Just(127u64),
        Just(128u64),
        Just(u64::MAX),
        any::<u64>(),
    ]
}

fn channel() -> impl Strategy<Value = ChannelName> {
    "[A-Za-z0-9_.:@/-]{1,128}".prop_map(|s| match ChannelName::parse(&s) {
        Ok(c) => c,
        Err(e) => panic!("strategy made an invalid channel {s:?}: {e}"),
    })
}

fn payload() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => proptest::collection::vec(any::<u8>(), 0..2048),
    ]
    .prop_map(Bytes::from)
}

/// Any text, multi-byte characters included.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), ".{0,40}"]
}

fn outcome() -> impl Strategy<Value = WelcomeOutcome> {
    prop_oneof![
        Just(WelcomeOutcome::New),
        Just(WelcomeOutcome::Resumed),
        Just(WelcomeOutcome::NewSessionExpired),
        Just(WelcomeOutcome::NewReplayUnavailable),
    ]
}

fn resume() -> impl Strategy<Value = Option<ResumeRequest>> {
    proptest::option::of((any::<[u8; 16]>(), any::<[u8; 32]>(), number()).prop_map(
        |(id, secret, last)| ResumeRequest {
            session_id: SessionId(id),
            secret: ResumeSecret(secret),
            last_received_seq: last,
        },
    ))
}

/// Every frame type, with every field arbitrary.
fn frame() -> BoxedStrategy<Frame> {
    let hello = (number(), text(), resume())
        .prop_map(|(version, token, resume)| {
            Frame::Hello(Hello {
                version,
                token,
                resume,
            })
        })
        .boxed();
    let welcome = (
        any::<[u8; 16]>(),
        any::<[u8; 32]>(),
        outcome(),
        (number(), number(), number(), number(), number()),
    )
        .prop_map(|(id, secret, outcome, (hb, rw, mfs, ms, lcs))| {
            Frame::Welcome(Welcome {
                session_id: SessionId(id),
                resume_secret: ResumeSecret(secret),
                outcome,
                heartbeat_interval_ms: hb,
                resume_window_ms: rw,
                max_frame_size: mfs,
                max_subscriptions: ms,
                last_client_seq: lcs,
            })
        })
        .boxed();
    prop_oneof![
        hello,
        welcome,
        (number(), channel()).prop_map(|(request_id, channel)| Frame::Subscribe {
            request_id,
            channel
        }),
        (number(), number()).prop_map(|(request_id, channel_offset)| Frame::Subscribed {
            request_id,
            channel_offset
        }),
        (number(), channel()).prop_map(|(request_id, channel)| Frame::Unsubscribe {
            request_id,
            channel
        }),
        number().prop_map(|request_id| Frame::Unsubscribed { request_id }),
        (number(), channel(), payload()).prop_map(|(client_seq, channel, payload)| {
            Frame::Publish {
                client_seq,
                channel,
                payload,
            }
        }),
        number().prop_map(|client_seq| Frame::PubAck { client_seq }),
        (number(), channel(), number(), payload()).prop_map(
            |(seq, channel, channel_offset, payload)| Frame::Message {
                seq,
                channel,
                channel_offset,
                payload,
            }
        ),
        number().prop_map(|seq| Frame::Ack { seq }),
        number().prop_map(|nonce| Frame::Ping { nonce }),
        number().prop_map(|nonce| Frame::Pong { nonce }),
        (any::<u16>(), number(), text()).prop_map(|(code, reconnect_after_ms, message)| {
            Frame::GoAway {
                code,
                reconnect_after_ms,
                message,
            }
        }),
        (any::<u16>(), number(), text()).prop_map(|(code, reference, message)| Frame::Error {
            code,
            reference,
            message,
        }),
        number().prop_map(|deadline_ms| Frame::RefreshToken { deadline_ms }),
        text().prop_map(|token| Frame::Token { token }),
    ]
    .boxed()
}

/// Ways to damage an encoded frame.
#[derive(Debug, Clone)]
enum Mangle {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Append(Vec<u8>),
}

fn mangle() -> impl Strategy<Value = Mangle> {
    prop_oneof![
        any::<usize>().prop_map(Mangle::Truncate),
        (any::<usize>(), 1..=255u8).prop_map(|(i, x)| Mangle::Flip(i, x)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mangle::Insert(i, b)),
        any::<usize>().prop_map(Mangle::Remove),
        proptest::collection::vec(any::<u8>(), 1..12).prop_map(Mangle::Append),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mangle) {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
    match m {
        Mangle::Truncate(i) => bytes.truncate(at(*i, bytes.len())),
        Mangle::Flip(i, x) => {
            if !bytes.is_empty() {
                let i = at(*i, bytes.len());
                bytes[i] ^= x;
            }
        }
        Mangle::Insert(i, b) => bytes.insert(at(*i, bytes.len() + 1), *b),
        Mangle::Remove(i) => {
            if !bytes.is_empty() {
                bytes.remove(at(*i, bytes.len()));
            }
        }
        Mangle::Append(tail) => bytes.extend_from_slice(tail),
    }
}

fn limits(max_frame_size: usize) -> DecodeLimits {
    DecodeLimits {
        max_frame_size,
        ..DecodeLimits::default()
    }
}

/// What `decode` may return for input it accepts: a frame no larger than
/// the limit or the input (over-long varints only shrink on re-encoding),
/// whose canonical bytes decode to the same frame.
fn check_accepted(frame: &Frame, input_len: usize, l: &DecodeLimits) -> Result<(), TestCaseError> {
    prop_assert!(frame.encoded_len() <= l.max_frame_size, "{frame:?}");
    prop_assert!(frame.encoded_len() <= input_len, "{frame:?}");
    prop_assert_eq!(codec::decode(frame.to_bytes(), l), Ok(frame.clone()));
    Ok(())
}

/// Drains `buf` with `decode_length_prefixed` until it needs more bytes or
/// fails; checks each accepted frame.
fn drain_stream(buf: &mut BytesMut, l: &DecodeLimits) -> Result<Vec<Frame>, TestCaseError> {
    let mut frames = Vec::new();
    loop {
        let before = buf.clone();
        match codec::decode_length_prefixed(buf, l) {
            Ok(Some(frame)) => {
                prop_assert!(buf.len() < before.len(), "a frame consumed nothing");
                check_accepted(&frame, before.len() - buf.len(), l)?;
                frames.push(frame);
            }
            Ok(None) => {
                prop_assert_eq!(&*buf, &before, "incomplete input was consumed");
                return Ok(frames);
            }
            Err(_) => return Ok(frames),
        }
    }
}

// ---- codec properties ----------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn encode_then_decode_is_identity(f in frame()) {
        let bytes = f.to_bytes();
        prop_assert_eq!(bytes.len(), f.encoded_len());
        prop_assert_eq!(codec::decode(bytes.clone(), &DecodeLimits::default()), Ok(f.clone()));

        let mut stream = BytesMut::new();
        f.encode_length_prefixed(&mut stream);
        prop_assert_eq!(stream.len(), codec::varint_len(bytes.len() as u64) + bytes.len());
        prop_assert_eq!(
            codec::decode_length_prefixed(&mut stream, &DecodeLimits::default()),
            Ok(Some(f.clone()))
        );
        prop_assert!(stream.is_empty());
    }

    #[test]
    fn the_size_limit_is_exact(f in frame()) {
        let len = f.encoded_len();
        prop_assert_eq!(codec::decode(f.to_bytes(), &limits(len)), Ok(f.clone()));
        prop_assert_eq!(
            codec::decode(f.to_bytes(), &limits(len - 1)),
            Err(DecodeError::Oversize { len: len as u64, max: len - 1 })
        );
        let mut stream = BytesMut::new();
        f.encode_length_prefixed(&mut stream);
        let whole = stream.clone();
        prop_assert_eq!(
            codec::decode_length_prefixed(&mut stream, &limits(len - 1)),
            Err(DecodeError::Oversize { len: len as u64, max: len - 1 })
        );
        // Rejected from the prefix alone, before the body has arrived.
        let mut prefix_only = BytesMut::from(&whole[..codec::varint_len(len as u64)]);
        prop_assert_eq!(
            codec::decode_length_prefixed(&mut prefix_only, &limits(len - 1)),
            Err(DecodeError::Oversize { len: len as u64, max: len - 1 })
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic_or_exceed_the_limit(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        max in 0..400usize,
    ) {
        let l = limits(max);
        if let Ok(f) = codec::decode(Bytes::from(bytes.clone()), &l) {
            check_accepted(&f, bytes.len(), &l)?;
        }
        let mut buf = BytesMut::from(&bytes[..]);
        drain_stream(&mut buf, &l)?;
    }

    #[test]
    fn mangled_frames_never_panic_or_exceed_the_limit(
        f in frame(),
        damage in proptest::collection::vec(mangle(), 1..4),
        max in prop_oneof![Just(codec::DEFAULT_MAX_FRAME_SIZE), 0..200usize],
    ) {
        let l = limits(max);
        let mut bytes = f.to_bytes().to_vec();
        for m in &damage {
            apply(&mut bytes, m);
        }
        if let Ok(g) = codec::decode(Bytes::from(bytes.clone()), &l) {
            check_accepted(&g, bytes.len(), &l)?;
        }
        // The same damage to a length-prefixed stream of two frames.
        let mut stream = Vec::new();
        let mut prefixed = BytesMut::new();
        f.encode_length_prefixed(&mut prefixed);
        f.encode_length_prefixed(&mut prefixed);
        stream.extend_from_slice(&prefixed);
        for m in &damage {
            apply(&mut stream, m);
        }
        let mut buf = BytesMut::from(&stream[..]);
        drain_stream(&mut buf, &l)?;
    }

    #[test]
    fn a_stream_split_anywhere_yields_the_same_frames(
        frames in proptest::collection::vec(frame(), 0..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut wire = BytesMut::new();
        for f in &frames {
            f.encode_length_prefixed(&mut wire);
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        cuts.push(wire.len());
        cuts.sort_unstable();

        let l = DecodeLimits::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut start = 0;
        for cut in cuts {
            buf.extend_from_slice(&wire[start..cut]);
            start = cut;
            loop {
                match codec::decode_length_prefixed(&mut buf, &l) {
                    Ok(Some(f)) => got.push(f),
                    Ok(None) => break,
                    Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
                }
            }
        }
        prop_assert_eq!(got, frames);
        prop_assert!(buf.is_empty());
    }
}

// ---- replay log ----------------------------------------------------------

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

// ---- sequence trackers ---------------------------------------------------

/// Numbers around the tracker's position: behind, next, and ahead.
fn seq_stream() -> impl Strategy<Value = Vec<u64>> {
    proptest::collection::vec(
        prop_oneof![3 => Just(None), 2 => (0..40u64).prop_map(Some)],
        0..120,
    )
    .prop_map(|picks| {
        // None means "the next one", so runs of accepted numbers happen.
        let mut next = 1;
        picks
            .into_iter()
            .map(|p| {
                let n = p.unwrap_or(next);
                if n == next {
                    next += 1;
                }
                n
            })
            .collect()
    })
}

/// Feeds `numbers` to a tracker; checks it accepts exactly 1, 2, 3, ...
/// once each, calls lower numbers duplicates and higher ones gaps.
fn check_tracker(
    numbers: &[u64],
    mut check: impl FnMut(u64) -> Result<Disposition, SeqGap>,
) -> Result<(), TestCaseError> {
    let mut accepted = BTreeSet::new();
    let mut expected_last = 0u64;
    for &n in numbers {
        let got = check(n);
        if n == expected_last + 1 {
            prop_assert_eq!(got, Ok(Disposition::Accept));
            prop_assert!(accepted.insert(n), "{n} accepted twice");
            expected_last = n;
        } else if n <= expected_last {
            prop_assert_eq!(got, Ok(Disposition::Duplicate));
        } else {
            prop_assert_eq!(
                got,
                Err(SeqGap {
                    expected: expected_last + 1,
                    got: n
                })
            );
        }
    }
    prop_assert_eq!(accepted, (1..=expected_last).collect::<BTreeSet<_>>());
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn inbound_publishes_accept_each_client_seq_once(numbers in seq_stream()) {
        let mut t = InboundPublishes::default();
        let mut accepted = 0;
        check_tracker(
            &numbers,
            |n| {
                let d = t.check(n);
                if d == Ok(Disposition::Accept) {
                    accepted += 1;
                }
                d
            },
        )?;
        prop_assert_eq!(t.last(), accepted);
    }

    #[test]
    fn receive_tracker_accepts_each_seq_once(numbers in seq_stream()) {
        let mut r = ReceiveTracker::default();
        let mut accepted = 0;
        check_tracker(
            &numbers,
            |n| {
                let d = r.check(n);
                if d == Ok(Disposition::Accept) {
                    accepted += 1;
                }
                d
            },
        )?;
        prop_assert_eq!(r.last(), accepted);
        r.reset();
        prop_assert_eq!(r.check(1), Ok(Disposition::Accept));
    }

    #[test]
    fn inbound_publishes_started_after_n_accept_only_n_plus_1(
        start in 0..u64::MAX - 1,
        n in any::<u64>(),
    ) {
        let mut t = InboundPublishes::starting_after(start);
        let got = t.check(n);
        if n == start + 1 {
            prop_assert_eq!(got, Ok(Disposition::Accept));
            prop_assert_eq!(t.check(n), Ok(Disposition::Duplicate));
        } else if n <= start {
            prop_assert_eq!(got, Ok(Disposition::Duplicate));
        } else {
            prop_assert!(got.is_err());
        }
    }

    #[test]
    fn outbox_resends_exactly_what_follows_the_servers_last(
        count in 0..30u64,
        acked in 0..40u64,
        last_processed in 0..40u64,
    ) {
        let c = ChannelName::parse("c").map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut o = PublishOutbox::default();
        for i in 1..=count {
            prop_assert_eq!(o.push(c.clone(), payload_for(i, 3)).client_seq, i);
        }
        o.acknowledge(acked);
        let again: Vec<u64> = o.resend_after(last_processed).map(|p| p.client_seq).collect();
        let from = acked.max(last_processed) + 1;
        prop_assert_eq!(&again, &(from..=count).collect::<Vec<_>>());
        prop_assert_eq!(o.pending_bytes(), 3 * again.len());
        // After a failed resume the rest is handed back, and numbering restarts.
        let uncertain: Vec<u64> = o.take_uncertain().into_iter().map(|p| p.client_seq).collect();
        prop_assert_eq!(uncertain, again);
        prop_assert!(o.is_empty());
        prop_assert_eq!(o.push(c, Bytes::new()).client_seq, 1);
    }
}
