//! proptest strategies for frames, and ways to damage their bytes.

use bytes::Bytes;
use ferry_protocol::{
    ChannelName, Frame, Hello, ResumeRequest, ResumeSecret, SessionId, Welcome, WelcomeOutcome,
};
use proptest::prelude::*;

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
pub fn frame() -> BoxedStrategy<Frame> {
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
pub enum Mangle {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Append(Vec<u8>),
}

pub fn mangle() -> impl Strategy<Value = Mangle> {
    prop_oneof![
        any::<usize>().prop_map(Mangle::Truncate),
        (any::<usize>(), 1..=255u8).prop_map(|(i, x)| Mangle::Flip(i, x)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mangle::Insert(i, b)),
        any::<usize>().prop_map(Mangle::Remove),
        proptest::collection::vec(any::<u8>(), 1..12).prop_map(Mangle::Append),
    ]
}

pub fn apply(bytes: &mut Vec<u8>, m: &Mangle) {
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
