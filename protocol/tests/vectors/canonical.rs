//! The valid vectors as Rust values, from which `vectors/frames.json` and
//! the fuzz seeds are generated (see `regenerate` in `main.rs`).

use bytes::Bytes;
use ferry_protocol::frame::PROTOCOL_VERSION;
use ferry_protocol::{
    ChannelName, Frame, Hello, ResumeRequest, ResumeSecret, SessionId, Welcome, WelcomeOutcome,
};
use serde_json::Value;

use super::json::{frame_fields, resume_fields};

fn chan(name: &str) -> ChannelName {
    ChannelName::parse(name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn seq_bytes<const N: usize>(start: u8) -> [u8; N] {
    std::array::from_fn(|i| start.wrapping_add(i as u8))
}

/// The valid vectors: (name, frame, note).
pub fn canonical() -> Vec<(&'static str, Frame, &'static str)> {
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

pub fn vector_json(name: &str, frame: &Frame, note: &str) -> String {
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
