//! Frames as JSON, the format of `vectors/frames.json` (PROTOCOL.md,
//! "Test vectors").
//!
//! Integers are decimal strings (64-bit values do not fit a JSON number in
//! every language), byte fields are lowercase hex, text fields are JSON
//! strings. Fields are listed in wire order.

use bytes::Bytes;
use ferry_protocol::frame::FrameType;
use ferry_protocol::{
    ChannelName, Frame, Hello, ResumeRequest, ResumeSecret, SessionId, Welcome, WelcomeOutcome,
};
use serde_json::Value;

use super::{hex_field, str_field};

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
pub fn resume_fields(r: &ResumeRequest) -> Vec<(&'static str, Value)> {
    vec![
        ("session_id", hexv(&r.session_id.0)),
        ("resume_secret", hexv(&r.secret.0)),
        ("last_received_seq", int(r.last_received_seq)),
    ]
}

/// The frame's fields in wire order, `type` first.
pub fn frame_fields(frame: &Frame) -> Vec<(&'static str, Value)> {
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

pub fn frame_to_json(frame: &Frame) -> Value {
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

pub fn frame_from_json(v: &Value) -> Frame {
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
