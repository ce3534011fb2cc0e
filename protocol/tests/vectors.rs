//! The test vectors of PROTOCOL.md ("Test vectors"), checked both ways.
//!
//! - `vectors/frames.json`: decoding each `hex` yields the described frame,
//!   and encoding that frame yields exactly `hex` (also in the QUIC
//!   length-prefixed form).
//! - `vectors/invalid.json`: each `hex` fails with the stated error kind.
//! - `fuzz/seeds/decode/`: the fuzz seed corpus is made of the valid vectors.
//!
//! `frames.json` and the seeds were generated once from [`canonical`] with
//! `cargo test -p ferry-protocol --test vectors -- --ignored regenerate`,
//! then reviewed by hand against PROTOCOL.md. `invalid.json` is written by
//! hand: its expected errors say what the spec requires, not what the codec
//! happens to do.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use ferry_protocol::codec::{self, DecodeLimits};
use ferry_protocol::error::ChannelError;
use ferry_protocol::frame::{FrameType, PROTOCOL_VERSION};
use ferry_protocol::{
    ChannelName, DecodeError, Frame, Hello, ResumeRequest, ResumeSecret, SessionId, Welcome,
    WelcomeOutcome,
};
use serde_json::Value;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn seeds_dir() -> PathBuf {
    crate_dir().join("../fuzz/seeds/decode")
}

fn load(name: &str) -> Vec<Value> {
    let path = crate_dir().join("vectors").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    match serde_json::from_str(&text) {
        Ok(Value::Array(items)) => items,
        other => panic!("{name} is not a JSON array: {other:?}"),
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("missing string {key:?} in {v}"))
}

fn hex_field(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(str_field(v, key)).unwrap_or_else(|e| panic!("bad hex in {key:?} of {v}: {e}"))
}

// ---- frame <-> JSON ------------------------------------------------------
//
// Integers are decimal strings (64-bit values do not fit a JSON number in
// every language), byte fields are lowercase hex, text fields are JSON
// strings. Fields are listed in wire order.

fn type_name(ty: FrameType) -> &'static str {
    match ty {
        FrameType::Hello => "HELLO",
        FrameType::Welcome => "WELCOME",
        FrameType::Subscribe => "SUBSCRIBE",
        FrameType::Subscribed => "SUBSCRIBED",
        FrameType::Unsubscribe => "UNSUBSCRIBE",
        FrameType::Unsubscribed => "UNSUBSCRIBED",
        FrameType::Publish => "PUBLISH",
        FrameType::PubAck => "PUBACK",
        FrameType::Message => "MESSAGE",
        FrameType::Ack => "ACK",
        FrameType::Ping => "PING",
        FrameType::Pong => "PONG",
        FrameType::GoAway => "GOAWAY",
        FrameType::Error => "ERROR",
        FrameType::RefreshToken => "REFRESH_TOKEN",
        FrameType::Token => "TOKEN",
    }
}

fn outcome_name(o: WelcomeOutcome) -> &'static str {
    match o {
        WelcomeOutcome::New => "new",
        WelcomeOutcome::Resumed => "resumed",
        WelcomeOutcome::NewSessionExpired => "new_session_expired",
        WelcomeOutcome::NewReplayUnavailable => "new_replay_unavailable",
    }
}

fn int(v: u64) -> Value {
    Value::String(v.to_string())
}

fn text(s: &str) -> Value {
    Value::String(s.to_owned())
}

fn hexv(b: &[u8]) -> Value {
    Value::String(hex::encode(b))
}

/// HELLO's resume request in wire order.
fn resume_fields(r: &ResumeRequest) -> Vec<(&'static str, Value)> {
    vec![
        ("session_id", hexv(&r.session_id.0)),
        ("resume_secret", hexv(&r.secret.0)),
        ("last_received_seq", int(r.last_received_seq)),
    ]
}

/// The frame's fields in wire order, `type` first.
fn frame_fields(frame: &Frame) -> Vec<(&'static str, Value)> {
    let mut f = vec![("type", text(type_name(frame.frame_type())))];
    match frame {
        Frame::Hello(h) => {
            f.push(("version", int(h.version)));
            f.push(("token", text(&h.token)));
            let resume = h.resume.as_ref().map_or(Value::Null, |r| {
                Value::Object(
                    resume_fields(r)
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                )
            });
            f.push(("resume", resume));
        }
        Frame::Welcome(w) => {
            f.push(("session_id", hexv(&w.session_id.0)));
            f.push(("resume_secret", hexv(&w.resume_secret.0)));
            f.push(("outcome", text(outcome_name(w.outcome))));
            f.push(("heartbeat_interval_ms", int(w.heartbeat_interval_ms)));
            f.push(("resume_window_ms", int(w.resume_window_ms)));
            f.push(("max_frame_size", int(w.max_frame_size)));
            f.push(("max_subscriptions", int(w.max_subscriptions)));
            f.push(("last_client_seq", int(w.last_client_seq)));
        }
        Frame::Subscribe {
            request_id,
            channel,
        }
        | Frame::Unsubscribe {
            request_id,
            channel,
        } => {
            f.push(("request_id", int(*request_id)));
            f.push(("channel", text(channel.as_str())));
        }
        Frame::Subscribed {
            request_id,
            channel_offset,
        } => {
            f.push(("request_id", int(*request_id)));
            f.push(("channel_offset", int(*channel_offset)));
        }
        Frame::Unsubscribed { request_id } => f.push(("request_id", int(*request_id))),
        Frame::Publish {
            client_seq,
            channel,
            payload,
        } => {
            f.push(("client_seq", int(*client_seq)));
            f.push(("channel", text(channel.as_str())));
            f.push(("payload", hexv(payload)));
        }
        Frame::PubAck { client_seq } => f.push(("client_seq", int(*client_seq))),
        Frame::Message {
            seq,
            channel,
            channel_offset,
            payload,
        } => {
            f.push(("seq", int(*seq)));
            f.push(("channel", text(channel.as_str())));
            f.push(("channel_offset", int(*channel_offset)));
            f.push(("payload", hexv(payload)));
        }
        Frame::Ack { seq } => f.push(("seq", int(*seq))),
        Frame::Ping { nonce } | Frame::Pong { nonce } => f.push(("nonce", int(*nonce))),
        Frame::GoAway {
            code,
            reconnect_after_ms,
            message,
        } => {
            f.push(("code", int(u64::from(*code))));
            f.push(("reconnect_after_ms", int(*reconnect_after_ms)));
            f.push(("message", text(message)));
        }
        Frame::Error {
            code,
            reference,
            message,
        } => {
            f.push(("code", int(u64::from(*code))));
            f.push(("ref", int(*reference)));
            f.push(("message", text(message)));
        }
        Frame::RefreshToken { deadline_ms } => f.push(("deadline_ms", int(*deadline_ms))),
        Frame::Token { token } => f.push(("token", text(token))),
    }
    f
}

fn frame_to_json(frame: &Frame) -> Value {
    Value::Object(
        frame_fields(frame)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

fn u64_field(v: &Value, key: &str) -> u64 {
    str_field(v, key)
        .parse()
        .unwrap_or_else(|e| panic!("{key:?} of {v} is not a decimal u64: {e}"))
}

fn array_field<const N: usize>(v: &Value, key: &str) -> [u8; N] {
    hex_field(v, key)
        .try_into()
        .unwrap_or_else(|b: Vec<u8>| panic!("{key:?} of {v} has {} bytes, not {N}", b.len()))
}

fn channel_field(v: &Value) -> ChannelName {
    let name = str_field(v, "channel");
    ChannelName::parse(name).unwrap_or_else(|e| panic!("channel {name:?}: {e}"))
}

fn payload_field(v: &Value) -> Bytes {
    Bytes::from(hex_field(v, "payload"))
}

fn code_field(v: &Value) -> u16 {
    u16::try_from(u64_field(v, "code")).unwrap_or_else(|e| panic!("code of {v}: {e}"))
}

fn frame_from_json(v: &Value) -> Frame {
    match str_field(v, "type") {
        "HELLO" => {
            let resume = match v.get("resume") {
                Some(Value::Null) => None,
                Some(r) => Some(ResumeRequest {
                    session_id: SessionId(array_field(r, "session_id")),
                    secret: ResumeSecret(array_field(r, "resume_secret")),
                    last_received_seq: u64_field(r, "last_received_seq"),
                }),
                None => panic!("HELLO without \"resume\": {v}"),
            };
            Frame::Hello(Hello {
                version: u64_field(v, "version"),
                token: str_field(v, "token").to_owned(),
                resume,
            })
        }
        "WELCOME" => Frame::Welcome(Welcome {
            session_id: SessionId(array_field(v, "session_id")),
            resume_secret: ResumeSecret(array_field(v, "resume_secret")),
            outcome: match str_field(v, "outcome") {
                "new" => WelcomeOutcome::New,
                "resumed" => WelcomeOutcome::Resumed,
                "new_session_expired" => WelcomeOutcome::NewSessionExpired,
                "new_replay_unavailable" => WelcomeOutcome::NewReplayUnavailable,
                other => panic!("unknown outcome {other:?}"),
            },
            heartbeat_interval_ms: u64_field(v, "heartbeat_interval_ms"),
            resume_window_ms: u64_field(v, "resume_window_ms"),
            max_frame_size: u64_field(v, "max_frame_size"),
            max_subscriptions: u64_field(v, "max_subscriptions"),
            last_client_seq: u64_field(v, "last_client_seq"),
        }),
        "SUBSCRIBE" => Frame::Subscribe {
            request_id: u64_field(v, "request_id"),
            channel: channel_field(v),
        },
        "SUBSCRIBED" => Frame::Subscribed {
            request_id: u64_field(v, "request_id"),
            channel_offset: u64_field(v, "channel_offset"),
        },
        "UNSUBSCRIBE" => Frame::Unsubscribe {
            request_id: u64_field(v, "request_id"),
            channel: channel_field(v),
        },
        "UNSUBSCRIBED" => Frame::Unsubscribed {
            request_id: u64_field(v, "request_id"),
        },
        "PUBLISH" => Frame::Publish {
            client_seq: u64_field(v, "client_seq"),
            channel: channel_field(v),
            payload: payload_field(v),
        },
        "PUBACK" => Frame::PubAck {
            client_seq: u64_field(v, "client_seq"),
        },
        "MESSAGE" => Frame::Message {
            seq: u64_field(v, "seq"),
            channel: channel_field(v),
            channel_offset: u64_field(v, "channel_offset"),
            payload: payload_field(v),
        },
        "ACK" => Frame::Ack {
            seq: u64_field(v, "seq"),
        },
        "PING" => Frame::Ping {
            nonce: u64_field(v, "nonce"),
        },
        "PONG" => Frame::Pong {
            nonce: u64_field(v, "nonce"),
        },
        "GOAWAY" => Frame::GoAway {
            code: code_field(v),
            reconnect_after_ms: u64_field(v, "reconnect_after_ms"),
            message: str_field(v, "message").to_owned(),
        },
        "ERROR" => Frame::Error {
            code: code_field(v),
            reference: u64_field(v, "ref"),
            message: str_field(v, "message").to_owned(),
        },
        "REFRESH_TOKEN" => Frame::RefreshToken {
            deadline_ms: u64_field(v, "deadline_ms"),
        },
        "TOKEN" => Frame::Token {
            token: str_field(v, "token").to_owned(),
        },
        other => panic!("unknown frame type {other:?}"),
    }
}

// ---- valid vectors -------------------------------------------------------

#[test]
fn valid_vectors_decode_to_their_frame() {
    for v in load("frames.json") {
        let name = str_field(&v, "name");
        let want = frame_from_json(&v["frame"]);
        let bytes = Bytes::from(hex_field(&v, "hex"));
        assert_eq!(
            codec::decode(bytes.clone(), &DecodeLimits::default()),
            Ok(want.clone()),
            "{name}"
        );
        // The same frame on a QUIC stream: varint length, then the bytes.
        let mut stream = BytesMut::new();
        codec::put_varint(&mut stream, bytes.len() as u64);
        stream.extend_from_slice(&bytes);
        assert_eq!(
            codec::decode_length_prefixed(&mut stream, &DecodeLimits::default()),
            Ok(Some(want)),
            "{name} (length-prefixed)"
        );
        assert!(stream.is_empty(), "{name}: stream not consumed");
    }
}

#[test]
fn valid_vectors_encode_to_exactly_their_hex() {
    for v in load("frames.json") {
        let name = str_field(&v, "name");
        let frame = frame_from_json(&v["frame"]);
        let want = hex_field(&v, "hex");
        assert_eq!(hex::encode(frame.to_bytes()), hex::encode(&want), "{name}");
        assert_eq!(frame.encoded_len(), want.len(), "{name}: encoded_len");
        let mut prefixed = BytesMut::new();
        frame.encode_length_prefixed(&mut prefixed);
        let mut expected = BytesMut::new();
        codec::put_varint(&mut expected, want.len() as u64);
        expected.extend_from_slice(&want);
        assert_eq!(prefixed, expected, "{name}: length-prefixed");
        // The JSON names every field and nothing else.
        assert_eq!(frame_to_json(&frame), v["frame"], "{name}: JSON fields");
    }
}

#[test]
fn valid_vectors_cover_every_frame_type_with_unique_names() {
    let vectors = load("frames.json");
    let mut names = BTreeSet::new();
    let mut types = BTreeSet::new();
    for v in &vectors {
        let name = str_field(v, "name");
        assert!(names.insert(name.to_owned()), "duplicate name {name}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "name {name:?} is not a usable file name"
        );
        types.insert(hex_field(v, "hex")[0]);
    }
    let all: BTreeSet<u8> = (0x01..=0x10).collect();
    assert_eq!(types, all, "every frame type needs a vector");
    assert!(vectors.len() >= 40, "only {} vectors", vectors.len());
}

#[test]
fn the_worked_example_of_protocol_md_is_in_the_vectors() {
    // PROTOCOL.md prints these bytes; keep them equal to the vectors.
    let spec = std::fs::read_to_string(crate_dir().join("../PROTOCOL.md"))
        .unwrap_or_else(|e| panic!("PROTOCOL.md: {e}"));
    let spec_hex: String = spec.split_whitespace().collect();
    let mut examples = 0;
    for v in load("frames.json") {
        if str_field(&v, "name").starts_with("example_") {
            examples += 1;
            let hex = str_field(&v, "hex");
            assert!(
                spec_hex.contains(hex),
                "{} is not spelt out in PROTOCOL.md",
                str_field(&v, "name")
            );
        }
    }
    assert!(examples >= 8, "only {examples} example vectors");
}

// ---- invalid vectors -----------------------------------------------------

fn error_kind(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::Truncated { .. } => "truncated",
        DecodeError::UnknownType(_) => "unknown_type",
        DecodeError::Oversize { .. } => "oversize",
        DecodeError::BadVarint { .. } => "bad_varint",
        DecodeError::InvalidChannel(_) => "invalid_channel",
        DecodeError::BadUtf8 { .. } => "bad_utf8",
        DecodeError::BadValue { .. } => "bad_value",
        DecodeError::TrailingBytes(_) => "trailing_bytes",
        other => panic!("error kind not in invalid.json's vocabulary: {other:?}"),
    }
}

fn error_field(e: &DecodeError) -> Option<&'static str> {
    match e {
        DecodeError::Truncated { field }
        | DecodeError::BadVarint { field }
        | DecodeError::BadUtf8 { field }
        | DecodeError::BadValue { field, .. } => Some(field),
        DecodeError::InvalidChannel(_) => Some("channel"),
        _ => None,
    }
}

fn channel_reason(e: &DecodeError) -> Option<&'static str> {
    match e {
        DecodeError::InvalidChannel(ChannelError::Empty) => Some("empty"),
        DecodeError::InvalidChannel(ChannelError::TooLong { .. }) => Some("too_long"),
        DecodeError::InvalidChannel(ChannelError::ForbiddenByte(_)) => Some("forbidden_byte"),
        _ => None,
    }
}

fn decode_invalid(v: &Value) -> DecodeError {
    let name = str_field(v, "name");
    let limits = DecodeLimits {
        max_frame_size: v
            .get("max_frame_size")
            .map_or(codec::DEFAULT_MAX_FRAME_SIZE, |m| {
                m.as_u64()
                    .and_then(|m| usize::try_from(m).ok())
                    .unwrap_or_else(|| panic!("{name}: bad max_frame_size"))
            }),
        ..DecodeLimits::default()
    };
    let bytes = hex_field(v, "hex");
    match str_field(v, "mode") {
        "message" => match codec::decode(Bytes::from(bytes), &limits) {
            Err(e) => e,
            Ok(f) => panic!("{name}: decoded to {f:?}"),
        },
        "stream" => {
            let mut buf = BytesMut::from(&bytes[..]);
            match codec::decode_length_prefixed(&mut buf, &limits) {
                Err(e) => e,
                Ok(f) => panic!("{name}: decoded to {f:?}"),
            }
        }
        other => panic!("{name}: unknown mode {other:?}"),
    }
}

#[test]
fn invalid_vectors_fail_with_their_error() {
    for v in load("invalid.json") {
        let name = str_field(&v, "name");
        let err = decode_invalid(&v);
        assert_eq!(error_kind(&err), str_field(&v, "error"), "{name}: {err:?}");
        if let Some(field) = v.get("field") {
            assert_eq!(error_field(&err), field.as_str(), "{name}: {err:?}");
        }
        if let Some(reason) = v.get("reason") {
            assert_eq!(channel_reason(&err), reason.as_str(), "{name}: {err:?}");
        }
    }
}

#[test]
fn invalid_vectors_cover_every_error_kind_and_both_modes() {
    let mut kinds = BTreeSet::new();
    let mut modes = BTreeSet::new();
    let mut names = BTreeSet::new();
    for v in load("invalid.json") {
        assert!(names.insert(str_field(&v, "name").to_owned()), "duplicate");
        kinds.insert(str_field(&v, "error").to_owned());
        modes.insert(str_field(&v, "mode").to_owned());
    }
    let want: BTreeSet<String> = [
        "truncated",
        "unknown_type",
        "oversize",
        "bad_varint",
        "invalid_channel",
        "bad_utf8",
        "bad_value",
        "trailing_bytes",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(kinds, want);
    assert_eq!(modes.len(), 2, "{modes:?}");
}

// ---- fuzz seeds ----------------------------------------------------------

/// The seed that holds every valid vector as one QUIC stream.
const STREAM_SEED: &str = "stream_of_all_vectors";

fn stream_of(vectors: &[Value]) -> Vec<u8> {
    let mut stream = BytesMut::new();
    for v in vectors {
        let bytes = hex_field(v, "hex");
        codec::put_varint(&mut stream, bytes.len() as u64);
        stream.extend_from_slice(&bytes);
    }
    stream.to_vec()
}

fn read_seed(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| {
        panic!("fuzz seed {name}: {e} (regenerate: cargo test -p ferry-protocol --test vectors -- --ignored regenerate)")
    })
}

#[test]
fn fuzz_seeds_are_the_valid_vectors() {
    let vectors = load("frames.json");
    let dir = seeds_dir();
    for v in &vectors {
        let name = str_field(v, "name");
        assert_eq!(read_seed(&dir, name), hex_field(v, "hex"), "seed {name}");
    }
    assert_eq!(read_seed(&dir, STREAM_SEED), stream_of(&vectors));
    let files = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .count();
    assert_eq!(files, vectors.len() + 1, "stray files in {dir:?}");
}

// ---- generation ----------------------------------------------------------

fn chan(name: &str) -> ChannelName {
    ChannelName::parse(name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn seq_bytes<const N: usize>(start: u8) -> [u8; N] {
    std::array::from_fn(|i| start.wrapping_add(i as u8))
}

/// The valid vectors: (name, frame, note).
fn canonical() -> Vec<(&'static str, Frame, &'static str)> {
    let sid = SessionId(seq_bytes(0x00));
    let secret = ResumeSecret(seq_bytes(0xa0));
    let welcome = |outcome, last_client_seq| {
        Frame::Welcome(Welcome {
            session_id: sid,
            resume_secret: secret,
            outcome,
            heartbeat_interval_ms: 25_000,
            resume_window_ms: 120_000,
            max_frame_size: 65_536,
            max_subscriptions: 64,
            last_client_seq,
        })
    };
    let lobby = chan("chat:lobby");
    vec![
        // The worked example of PROTOCOL.md.
        (
            "example_hello",
            Frame::Hello(Hello {
                version: PROTOCOL_VERSION,
                token: "t0k".into(),
                resume: None,
            }),
            "worked example 1: client opens a new session",
        ),
        (
            "example_welcome",
            welcome(WelcomeOutcome::New, 0),
            "worked example 2: server defaults",
        ),
        (
            "example_subscribe",
            Frame::Subscribe {
                request_id: 1,
                channel: lobby.clone(),
            },
            "worked example 3",
        ),
        (
            "example_subscribed",
            Frame::Subscribed {
                request_id: 1,
                channel_offset: 41,
            },
            "worked example 4: 41 messages were published before",
        ),
        (
            "example_publish",
            Frame::Publish {
                client_seq: 1,
                channel: lobby.clone(),
                payload: Bytes::from_static(b"hi"),
            },
            "worked example 5",
        ),
        (
            "example_puback",
            Frame::PubAck { client_seq: 1 },
            "worked example 6",
        ),
        (
            "example_message",
            Frame::Message {
                seq: 1,
                channel: lobby.clone(),
                channel_offset: 42,
                payload: Bytes::from_static(b"hi"),
            },
            "worked example 7: the client's own publish comes back",
        ),
        ("example_ack", Frame::Ack { seq: 1 }, "worked example 8"),
        (
            "example_resume_hello",
            Frame::Hello(Hello {
                version: PROTOCOL_VERSION,
                token: "t0k".into(),
                resume: Some(ResumeRequest {
                    session_id: sid,
                    secret,
                    last_received_seq: 1,
                }),
            }),
            "worked example 9: reconnect and resume",
        ),
        (
            "example_resume_welcome",
            welcome(WelcomeOutcome::Resumed, 1),
            "worked example 10",
        ),
        // HELLO
        (
            "hello_empty_token",
            Frame::Hello(Hello {
                version: 1,
                token: String::new(),
                resume: None,
            }),
            "empty string: length 0",
        ),
        (
            "hello_resume_multibyte_seq",
            Frame::Hello(Hello {
                version: 1,
                token: String::new(),
                resume: Some(ResumeRequest {
                    session_id: SessionId([0xff; 16]),
                    secret: ResumeSecret([0x5a; 32]),
                    last_received_seq: 300,
                }),
            }),
            "flags 01; 300 = ac 02",
        ),
        (
            "hello_resume_from_zero",
            Frame::Hello(Hello {
                version: 1,
                token: "t".into(),
                resume: Some(ResumeRequest {
                    session_id: sid,
                    secret,
                    last_received_seq: 0,
                }),
            }),
            "resume before any MESSAGE was received",
        ),
        (
            "hello_future_version",
            Frame::Hello(Hello {
                version: 200,
                token: "t".into(),
                resume: None,
            }),
            "decodes; the server answers ERROR 104",
        ),
        // WELCOME
        (
            "welcome_new_session_expired",
            welcome(WelcomeOutcome::NewSessionExpired, 0),
            "outcome 2",
        ),
        (
            "welcome_new_replay_unavailable",
            welcome(WelcomeOutcome::NewReplayUnavailable, 0),
            "outcome 3",
        ),
        (
            "welcome_small_values",
            Frame::Welcome(Welcome {
                session_id: SessionId([0; 16]),
                resume_secret: ResumeSecret([0; 32]),
                outcome: WelcomeOutcome::Resumed,
                heartbeat_interval_ms: 1,
                resume_window_ms: 0,
                max_frame_size: 127,
                max_subscriptions: 0,
                last_client_seq: u64::MAX,
            }),
            "one-byte varints, and the 10-byte u64::MAX",
        ),
        // SUBSCRIBE / SUBSCRIBED / UNSUBSCRIBE / UNSUBSCRIBED
        (
            "subscribe_user_channel",
            Frame::Subscribe {
                request_id: 127,
                channel: chan("user:alice"),
            },
            "largest one-byte varint",
        ),
        (
            "subscribe_every_allowed_punctuation",
            Frame::Subscribe {
                request_id: 128,
                channel: chan("a-b_c.d:e@f/G9"),
            },
            "128 = 80 01",
        ),
        (
            "subscribe_longest_channel",
            Frame::Subscribe {
                request_id: 2,
                channel: chan(&"x".repeat(128)),
            },
            "128-byte name: length 80 01",
        ),
        (
            "subscribed_empty_channel",
            Frame::Subscribed {
                request_id: 2,
                channel_offset: 0,
            },
            "no message was ever published in the channel",
        ),
        (
            "subscribed_max_offset",
            Frame::Subscribed {
                request_id: 16_384,
                channel_offset: u64::MAX,
            },
            "16384 = 80 80 01",
        ),
        (
            "unsubscribe",
            Frame::Unsubscribe {
                request_id: 3,
                channel: lobby.clone(),
            },
            "",
        ),
        ("unsubscribed", Frame::Unsubscribed { request_id: 3 }, ""),
        // PUBLISH / PUBACK
        (
            "publish_empty_payload",
            Frame::Publish {
                client_seq: 2,
                channel: chan("c"),
                payload: Bytes::new(),
            },
            "payload length 0",
        ),
        (
            "publish_binary_payload_200_bytes",
            Frame::Publish {
                client_seq: 3,
                channel: chan("c"),
                payload: (0..200u8).collect(),
            },
            "payload length 200 = c8 01; payload is any bytes",
        ),
        (
            "puback_multibyte",
            Frame::PubAck { client_seq: 300 },
            "cumulative: every publish up to 300",
        ),
        // MESSAGE / ACK
        (
            "message_empty_payload",
            Frame::Message {
                seq: 2,
                channel: chan("user:alice"),
                channel_offset: 1,
                payload: Bytes::new(),
            },
            "first message of a channel has offset 1",
        ),
        (
            "message_large_numbers",
            Frame::Message {
                seq: 1 << 63,
                channel: chan("c"),
                channel_offset: u64::from(u32::MAX),
                payload: Bytes::from_static(&[0x00, 0xff]),
            },
            "2^63 = 80 80 80 80 80 80 80 80 80 01",
        ),
        ("ack_zero", Frame::Ack { seq: 0 }, "nothing received yet"),
        (
            "ack_two_bytes_max",
            Frame::Ack { seq: 16_383 },
            "16383 = ff 7f",
        ),
        (
            "ack_max",
            Frame::Ack { seq: u64::MAX },
            "u64::MAX = ff ff ff ff ff ff ff ff ff 01",
        ),
        // PING / PONG
        ("ping_zero", Frame::Ping { nonce: 0 }, ""),
        (
            "ping_u32_max",
            Frame::Ping {
                nonce: u64::from(u32::MAX),
            },
            "4294967295 = ff ff ff ff 0f",
        ),
        (
            "pong_2_pow_40",
            Frame::Pong { nonce: 1 << 40 },
            "2^40 = 80 80 80 80 80 20",
        ),
        // GOAWAY
        (
            "goaway_upgrading",
            Frame::GoAway {
                code: 502,
                reconnect_after_ms: 250,
                message: "upgrade".into(),
            },
            "502 = f6 03; 250 = fa 01",
        ),
        (
            "goaway_shutting_down_no_message",
            Frame::GoAway {
                code: 501,
                reconnect_after_ms: 0,
                message: String::new(),
            },
            "",
        ),
        // ERROR
        (
            "error_forbidden_publish",
            Frame::Error {
                code: 406,
                reference: 5,
                message: "forbidden".into(),
            },
            "non-fatal; ref = the PUBLISH client_seq",
        ),
        (
            "error_text_not_supported",
            Frame::Error {
                code: 110,
                reference: 0,
                message: String::new(),
            },
            "fatal; ref 0 = no request",
        ),
        (
            "error_utf8_message",
            Frame::Error {
                code: 200,
                reference: 7,
                message: "caf\u{e9} \u{1f6a2}".into(),
            },
            "lengths count UTF-8 bytes, not characters: 6 characters, 10 bytes (0a)",
        ),
        (
            "error_max_code",
            Frame::Error {
                code: u16::MAX,
                reference: 1,
                message: "x".into(),
            },
            "codes are varints up to 65535 = ff ff 03",
        ),
        // REFRESH_TOKEN / TOKEN
        (
            "refresh_token",
            Frame::RefreshToken {
                deadline_ms: 30_000,
            },
            "30000 = b0 ea 01",
        ),
        (
            "token",
            Frame::Token {
                token: "eyJhbGciOiJIUzI1NiJ9.e30.sig".into(),
            },
            "",
        ),
        (
            "token_empty",
            Frame::Token {
                token: String::new(),
            },
            "",
        ),
    ]
}

fn vector_json(name: &str, frame: &Frame, note: &str) -> String {
    let q = |s: &str| Value::String(s.to_owned()).to_string();
    let object = |fields: Vec<(&str, Value)>| {
        let inner: Vec<String> = fields
            .into_iter()
            .map(|(k, v)| format!("{}: {v}", q(k)))
            .collect();
        inner.join(", ")
    };
    let fields: Vec<String> = frame_fields(frame)
        .into_iter()
        .map(|(k, v)| {
            let rendered = match (frame, k) {
                // Keep the nested object in wire order too.
                (
                    Frame::Hello(Hello {
                        resume: Some(r), ..
                    }),
                    "resume",
                ) => format!("{{{}}}", object(resume_fields(r))),
                _ => v.to_string(),
            };
            format!("{}: {rendered}", q(k))
        })
        .collect();
    let mut out = format!(
        "  {{\n    \"name\": {},\n    \"hex\": {},\n    \"frame\": {{{}}}",
        q(name),
        q(&hex::encode(frame.to_bytes())),
        fields.join(", ")
    );
    if !note.is_empty() {
        out.push_str(&format!(",\n    \"note\": {}", q(note)));
    }
    out.push_str("\n  }");
    out
}

/// Writes `vectors/frames.json` and the fuzz seeds from [`canonical`].
/// Review the diff by hand against PROTOCOL.md before committing.
#[test]
#[ignore = "writes files; run by hand after changing the canonical vectors"]
fn regenerate() {
    let items = canonical();
    let body: Vec<String> = items
        .iter()
        .map(|(name, frame, note)| vector_json(name, frame, note))
        .collect();
    let json = format!("[\n{}\n]\n", body.join(",\n"));
    let path = crate_dir().join("vectors/frames.json");
    std::fs::write(&path, json).unwrap_or_else(|e| panic!("{path:?}: {e}"));

    let dir = seeds_dir();
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}"));
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}"));
    for (name, frame, _) in &items {
        std::fs::write(dir.join(name), frame.to_bytes()).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(dir.join(STREAM_SEED), stream_of(&load("frames.json")))
        .unwrap_or_else(|e| panic!("{e}"));
}
