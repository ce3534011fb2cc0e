//! Encoding and decoding of frames.
//!
//! A frame is a type byte followed by its fields (PROTOCOL.md, "Frames").
//! On WebSocket one binary message carries exactly one frame
//! ([`decode`]); on a QUIC stream each frame is preceded by its length as a
//! varint ([`decode_length_prefixed`]).
//!
//! Decoding checks the frame's length against the limit before anything is
//! allocated, never panics, and slices payloads out of the input `Bytes`
//! without copying them.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::channel::ChannelName;
use crate::error::DecodeError;
use crate::frame::{
    Frame, FrameType, Hello, ResumeRequest, ResumeSecret, SessionId, Welcome, WelcomeOutcome,
};

/// Default largest frame, in bytes.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 64 * 1024;
/// Longest varint: 10 bytes hold 64 bits.
pub const MAX_VARINT_LEN: usize = 10;

/// Limits applied while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest frame, in bytes (the type byte included, the QUIC length
    /// prefix excluded).
    pub max_frame_size: usize,
    /// Longest channel name, in bytes.
    pub max_channel_len: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_channel_len: crate::channel::DEFAULT_MAX_CHANNEL_LEN,
        }
    }
}

const HELLO_FLAG_RESUME: u8 = 0x01;

/// Decodes one whole frame (a WebSocket binary message).
pub fn decode(frame: Bytes, limits: &DecodeLimits) -> Result<Frame, DecodeError> {
    if frame.len() > limits.max_frame_size {
        return Err(DecodeError::Oversize {
            len: frame.len() as u64,
            max: limits.max_frame_size,
        });
    }
    let mut r = Reader {
        buf: frame,
        limits: *limits,
    };
    let type_byte = r.u8("frame type")?;
    let ty = FrameType::from_u8(type_byte).ok_or(DecodeError::UnknownType(type_byte))?;
    let frame = r.frame_body(ty)?;
    if !r.buf.is_empty() {
        return Err(DecodeError::TrailingBytes(r.buf.len()));
    }
    Ok(frame)
}

/// Decodes the next length-prefixed frame from a stream buffer.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole frame; the bytes
/// stay in `buf`. On success the frame's bytes are removed from `buf`.
pub fn decode_length_prefixed(
    buf: &mut BytesMut,
    limits: &DecodeLimits,
) -> Result<Option<Frame>, DecodeError> {
    match split_length_prefixed(buf, limits.max_frame_size)? {
        Some(body) => decode(body, limits).map(Some),
        None => Ok(None),
    }
}

/// Takes the next whole length-prefixed frame out of a stream buffer,
/// undecoded. The announced length is checked against `max_frame_size`
/// before waiting for the body, so a peer cannot make us buffer more.
pub fn split_length_prefixed(
    buf: &mut BytesMut,
    max_frame_size: usize,
) -> Result<Option<Bytes>, DecodeError> {
    let Some((len, prefix_len)) = peek_varint(buf)? else {
        return Ok(None);
    };
    if len > max_frame_size as u64 {
        return Err(DecodeError::Oversize {
            len,
            max: max_frame_size,
        });
    }
    // Bounded by max_frame_size just above, so it fits in usize.
    let len = len as usize;
    if buf.len() < prefix_len + len {
        return Ok(None);
    }
    buf.advance(prefix_len);
    Ok(Some(buf.split_to(len).freeze()))
}

/// Reads a varint at the start of `buf` without consuming it: `Ok(None)` if
/// it is incomplete, otherwise its value and its length in bytes.
fn peek_varint(buf: &[u8]) -> Result<Option<(u64, usize)>, DecodeError> {
    let mut value: u64 = 0;
    for (i, &byte) in buf.iter().enumerate().take(MAX_VARINT_LEN) {
        let bits = u64::from(byte & 0x7f);
        if i == MAX_VARINT_LEN - 1 && byte > 0x01 {
            return Err(DecodeError::BadVarint {
                field: "length prefix",
            });
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= MAX_VARINT_LEN {
        return Err(DecodeError::BadVarint {
            field: "length prefix",
        });
    }
    Ok(None)
}

struct Reader {
    buf: Bytes,
    limits: DecodeLimits,
}

impl Reader {
    fn frame_body(&mut self, ty: FrameType) -> Result<Frame, DecodeError> {
        Ok(match ty {
            FrameType::Hello => {
                let version = self.varint("version")?;
                let token = self.string("token")?;
                let flags = self.u8("flags")?;
                if flags & !HELLO_FLAG_RESUME != 0 {
                    return Err(DecodeError::BadValue {
                        field: "flags",
                        value: u64::from(flags),
                    });
                }
                let resume = if flags & HELLO_FLAG_RESUME != 0 {
                    Some(ResumeRequest {
                        session_id: SessionId(self.array("session_id")?),
                        secret: ResumeSecret(self.array("resume_secret")?),
                        last_received_seq: self.varint("last_received_seq")?,
                    })
                } else {
                    None
                };
                Frame::Hello(Hello {
                    version,
                    token,
                    resume,
                })
            }
            FrameType::Welcome => {
                let session_id = SessionId(self.array("session_id")?);
                let resume_secret = ResumeSecret(self.array("resume_secret")?);
                let raw = self.u8("outcome")?;
                let outcome = WelcomeOutcome::from_u8(raw).ok_or(DecodeError::BadValue {
                    field: "outcome",
                    value: u64::from(raw),
                })?;
                Frame::Welcome(Welcome {
                    session_id,
                    resume_secret,
                    outcome,
                    heartbeat_interval_ms: self.varint("heartbeat_interval_ms")?,
                    resume_window_ms: self.varint("resume_window_ms")?,
                    max_frame_size: self.varint("max_frame_size")?,
                    max_subscriptions: self.varint("max_subscriptions")?,
                    last_client_seq: self.varint("last_client_seq")?,
                })
            }
            FrameType::Subscribe => Frame::Subscribe {
                request_id: self.varint("request_id")?,
                channel: self.channel()?,
            },
            FrameType::Subscribed => Frame::Subscribed {
                request_id: self.varint("request_id")?,
                channel_offset: self.varint("channel_offset")?,
            },
            FrameType::Unsubscribe => Frame::Unsubscribe {
                request_id: self.varint("request_id")?,
                channel: self.channel()?,
            },
            FrameType::Unsubscribed => Frame::Unsubscribed {
                request_id: self.varint("request_id")?,
            },
            FrameType::Publish => Frame::Publish {
                client_seq: self.varint("client_seq")?,
                channel: self.channel()?,
                payload: self.bytes("payload")?,
            },
            FrameType::PubAck => Frame::PubAck {
                client_seq: self.varint("client_seq")?,
            },
            FrameType::Message => Frame::Message {
                seq: self.varint("seq")?,
                channel: self.channel()?,
                channel_offset: self.varint("channel_offset")?,
                payload: self.bytes("payload")?,
            },
            FrameType::Ack => Frame::Ack {
                seq: self.varint("seq")?,
            },
            FrameType::Ping => Frame::Ping {
                nonce: self.varint("nonce")?,
            },
            FrameType::Pong => Frame::Pong {
                nonce: self.varint("nonce")?,
            },
            FrameType::GoAway => {
                let code = self.code()?;
                Frame::GoAway {
                    code,
                    reconnect_after_ms: self.varint("reconnect_after_ms")?,
                    message: self.string("message")?,
                }
            }
            FrameType::Error => {
                let code = self.code()?;
                Frame::Error {
                    code,
                    reference: self.varint("reference")?,
                    message: self.string("message")?,
                }
            }
            FrameType::RefreshToken => Frame::RefreshToken {
                deadline_ms: self.varint("deadline_ms")?,
            },
            FrameType::Token => Frame::Token {
                token: self.string("token")?,
            },
        })
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        if self.buf.is_empty() {
            return Err(DecodeError::Truncated { field });
        }
        Ok(self.buf.get_u8())
    }

    fn varint(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        match peek_varint(&self.buf) {
            Ok(Some((value, len))) => {
                self.buf.advance(len);
                Ok(value)
            }
            Ok(None) => Err(DecodeError::Truncated { field }),
            Err(_) => Err(DecodeError::BadVarint { field }),
        }
    }

    fn code(&mut self) -> Result<u16, DecodeError> {
        let value = self.varint("code")?;
        u16::try_from(value).map_err(|_| DecodeError::BadValue {
            field: "code",
            value,
        })
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        if self.buf.len() < N {
            return Err(DecodeError::Truncated { field });
        }
        let mut out = [0u8; N];
        self.buf.copy_to_slice(&mut out);
        Ok(out)
    }

    /// A length-prefixed byte string, sliced out of the input without a copy.
    fn bytes(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.varint(field)?;
        if len > self.buf.len() as u64 {
            return Err(DecodeError::Truncated { field });
        }
        // len <= remaining input, so it fits in usize.
        Ok(self.buf.split_to(len as usize))
    }

    fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let raw = self.bytes(field)?;
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::BadUtf8 { field })
    }

    fn channel(&mut self) -> Result<ChannelName, DecodeError> {
        let raw = self.bytes("channel")?;
        Ok(ChannelName::new(raw, self.limits.max_channel_len)?)
    }
}

/// Reads a varint from the front of `buf`, consuming it. For other
/// binary formats built on the same varints (the gateway's upgrade wire).
pub fn get_varint(buf: &mut Bytes, field: &'static str) -> Result<u64, DecodeError> {
    match peek_varint(buf) {
        Ok(Some((value, len))) => {
            buf.advance(len);
            Ok(value)
        }
        Ok(None) => Err(DecodeError::Truncated { field }),
        Err(_) => Err(DecodeError::BadVarint { field }),
    }
}

/// Number of bytes `value` takes as a varint.
pub fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Writes `value` as an unsigned LEB128 varint.
pub fn put_varint(dst: &mut impl BufMut, mut value: u64) {
    while value >= 0x80 {
        dst.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    dst.put_u8(value as u8);
}

fn put_bytes(dst: &mut impl BufMut, bytes: &[u8]) {
    put_varint(dst, bytes.len() as u64);
    dst.put_slice(bytes);
}

fn bytes_len(len: usize) -> usize {
    varint_len(len as u64) + len
}

impl Frame {
    /// The frame's encoded size in bytes (without a QUIC length prefix).
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            Frame::Hello(h) => {
                varint_len(h.version)
                    + bytes_len(h.token.len())
                    + 1
                    + h.resume
                        .as_ref()
                        .map_or(0, |r| 16 + 32 + varint_len(r.last_received_seq))
            }
            Frame::Welcome(w) => {
                16 + 32
                    + 1
                    + varint_len(w.heartbeat_interval_ms)
                    + varint_len(w.resume_window_ms)
                    + varint_len(w.max_frame_size)
                    + varint_len(w.max_subscriptions)
                    + varint_len(w.last_client_seq)
            }
            Frame::Subscribe {
                request_id,
                channel,
            }
            | Frame::Unsubscribe {
                request_id,
                channel,
            } => varint_len(*request_id) + bytes_len(channel.as_bytes().len()),
            Frame::Subscribed {
                request_id,
                channel_offset,
            } => varint_len(*request_id) + varint_len(*channel_offset),
            Frame::Unsubscribed { request_id } => varint_len(*request_id),
            Frame::Publish {
                client_seq,
                channel,
                payload,
            } => {
                varint_len(*client_seq)
                    + bytes_len(channel.as_bytes().len())
                    + bytes_len(payload.len())
            }
            Frame::PubAck { client_seq } => varint_len(*client_seq),
            Frame::Message {
                seq,
                channel,
                channel_offset,
                payload,
            } => message_body_len(*seq, channel, *channel_offset, payload.len()),
            Frame::Ack { seq } => varint_len(*seq),
            Frame::Ping { nonce } | Frame::Pong { nonce } => varint_len(*nonce),
            Frame::GoAway {
                code,
                reconnect_after_ms,
                message,
            } => {
                varint_len(u64::from(*code))
                    + varint_len(*reconnect_after_ms)
                    + bytes_len(message.len())
            }
            Frame::Error {
                code,
                reference,
                message,
            } => varint_len(u64::from(*code)) + varint_len(*reference) + bytes_len(message.len()),
            Frame::RefreshToken { deadline_ms } => varint_len(*deadline_ms),
            Frame::Token { token } => bytes_len(token.len()),
        }
    }

    /// Appends the frame's bytes to `dst`.
    pub fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u8(self.frame_type() as u8);
        match self {
            Frame::Hello(h) => {
                put_varint(dst, h.version);
                put_bytes(dst, h.token.as_bytes());
                match &h.resume {
                    Some(r) => {
                        dst.put_u8(HELLO_FLAG_RESUME);
                        dst.put_slice(&r.session_id.0);
                        dst.put_slice(&r.secret.0);
                        put_varint(dst, r.last_received_seq);
                    }
                    None => dst.put_u8(0),
                }
            }
            Frame::Welcome(w) => {
                dst.put_slice(&w.session_id.0);
                dst.put_slice(&w.resume_secret.0);
                dst.put_u8(w.outcome as u8);
                put_varint(dst, w.heartbeat_interval_ms);
                put_varint(dst, w.resume_window_ms);
                put_varint(dst, w.max_frame_size);
                put_varint(dst, w.max_subscriptions);
                put_varint(dst, w.last_client_seq);
            }
            Frame::Subscribe {
                request_id,
                channel,
            }
            | Frame::Unsubscribe {
                request_id,
                channel,
            } => {
                put_varint(dst, *request_id);
                put_bytes(dst, channel.as_bytes());
            }
            Frame::Subscribed {
                request_id,
                channel_offset,
            } => {
                put_varint(dst, *request_id);
                put_varint(dst, *channel_offset);
            }
            Frame::Unsubscribed { request_id } => put_varint(dst, *request_id),
            Frame::Publish {
                client_seq,
                channel,
                payload,
            } => {
                put_varint(dst, *client_seq);
                put_bytes(dst, channel.as_bytes());
                put_bytes(dst, payload);
            }
            Frame::PubAck { client_seq } => put_varint(dst, *client_seq),
            Frame::Message {
                seq,
                channel,
                channel_offset,
                payload,
            } => put_message_body(dst, *seq, channel, *channel_offset, payload),
            Frame::Ack { seq } => put_varint(dst, *seq),
            Frame::Ping { nonce } | Frame::Pong { nonce } => put_varint(dst, *nonce),
            Frame::GoAway {
                code,
                reconnect_after_ms,
                message,
            } => {
                put_varint(dst, u64::from(*code));
                put_varint(dst, *reconnect_after_ms);
                put_bytes(dst, message.as_bytes());
            }
            Frame::Error {
                code,
                reference,
                message,
            } => {
                put_varint(dst, u64::from(*code));
                put_varint(dst, *reference);
                put_bytes(dst, message.as_bytes());
            }
            Frame::RefreshToken { deadline_ms } => put_varint(dst, *deadline_ms),
            Frame::Token { token } => put_bytes(dst, token.as_bytes()),
        }
    }

    /// The frame's bytes as one buffer (a WebSocket message body).
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf);
        buf.freeze()
    }

    /// Appends the frame preceded by its varint length (QUIC stream form).
    pub fn encode_length_prefixed(&self, dst: &mut impl BufMut) {
        put_varint(dst, self.encoded_len() as u64);
        self.encode(dst);
    }
}

fn message_body_len(seq: u64, channel: &ChannelName, offset: u64, payload_len: usize) -> usize {
    varint_len(seq)
        + bytes_len(channel.as_bytes().len())
        + varint_len(offset)
        + bytes_len(payload_len)
}

fn put_message_body(
    dst: &mut impl BufMut,
    seq: u64,
    channel: &ChannelName,
    offset: u64,
    payload: &[u8],
) {
    put_varint(dst, seq);
    put_bytes(dst, channel.as_bytes());
    put_varint(dst, offset);
    put_bytes(dst, payload);
}

/// Size of a MESSAGE frame, without building a [`Frame`]: the hot path of
/// fan-out encodes straight from the replay log.
pub fn message_len(seq: u64, channel: &ChannelName, offset: u64, payload_len: usize) -> usize {
    1 + message_body_len(seq, channel, offset, payload_len)
}

/// Appends a MESSAGE frame without building a [`Frame`].
pub fn encode_message(
    dst: &mut impl BufMut,
    seq: u64,
    channel: &ChannelName,
    offset: u64,
    payload: &[u8],
) {
    dst.put_u8(FrameType::Message as u8);
    put_message_body(dst, seq, channel, offset, payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> DecodeLimits {
        DecodeLimits::default()
    }

    fn round_trip(frame: Frame) {
        let bytes = frame.to_bytes();
        assert_eq!(bytes.len(), frame.encoded_len(), "{frame:?}");
        assert_eq!(decode(bytes, &limits()), Ok(frame.clone()));
        let mut stream = BytesMut::new();
        frame.encode_length_prefixed(&mut stream);
        assert_eq!(
            decode_length_prefixed(&mut stream, &limits()),
            Ok(Some(frame))
        );
        assert!(stream.is_empty());
    }

    fn chan(name: &str) -> ChannelName {
        ChannelName::parse(name).unwrap()
    }

    #[test]
    fn every_frame_type_round_trips() {
        let frames = vec![
            Frame::Hello(Hello {
                version: 1,
                token: "tok".into(),
                resume: None,
            }),
            Frame::Hello(Hello {
                version: 1,
                token: String::new(),
                resume: Some(ResumeRequest {
                    session_id: SessionId([7; 16]),
                    secret: ResumeSecret([9; 32]),
                    last_received_seq: 300,
                }),
            }),
            Frame::Welcome(Welcome {
                session_id: SessionId([1; 16]),
                resume_secret: ResumeSecret([2; 32]),
                outcome: WelcomeOutcome::NewReplayUnavailable,
                heartbeat_interval_ms: 25_000,
                resume_window_ms: 120_000,
                max_frame_size: 65_536,
                max_subscriptions: 64,
                last_client_seq: 12,
            }),
            Frame::Subscribe {
                request_id: 1,
                channel: chan("chat:1"),
            },
            Frame::Subscribed {
                request_id: 1,
                channel_offset: u64::MAX,
            },
            Frame::Unsubscribe {
                request_id: 2,
                channel: chan("chat:1"),
            },
            Frame::Unsubscribed { request_id: 2 },
            Frame::Publish {
                client_seq: 5,
                channel: chan("user:bob"),
                payload: Bytes::from_static(b"hi"),
            },
            Frame::PubAck { client_seq: 5 },
            Frame::Message {
                seq: 128,
                channel: chan("chat:1"),
                channel_offset: 77,
                payload: Bytes::new(),
            },
            Frame::Ack { seq: 128 },
            Frame::Ping { nonce: 0 },
            Frame::Pong { nonce: 1 << 40 },
            Frame::GoAway {
                code: 502,
                reconnect_after_ms: 250,
                message: "upgrade".into(),
            },
            Frame::Error {
                code: 406,
                reference: 5,
                message: "forbidden".into(),
            },
            Frame::RefreshToken {
                deadline_ms: 30_000,
            },
            Frame::Token {
                token: "new".into(),
            },
        ];
        for f in frames {
            round_trip(f);
        }
    }

    #[test]
    fn varint_lengths_match_encoding() {
        for v in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut b = BytesMut::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
            assert_eq!(peek_varint(&b), Ok(Some((v, b.len()))));
        }
    }

    #[test]
    fn payload_is_a_slice_of_the_input() {
        let frame = Frame::Publish {
            client_seq: 1,
            channel: chan("c"),
            payload: Bytes::from_static(b"payload-bytes"),
        }
        .to_bytes();
        let start = frame.as_ptr() as usize;
        let end = start + frame.len();
        let Ok(Frame::Publish { payload, .. }) = decode(frame.clone(), &limits()) else {
            panic!("not a publish");
        };
        let p = payload.as_ptr() as usize;
        assert!(p >= start && p + payload.len() <= end, "payload was copied");
    }

    #[test]
    fn rejects_bad_input_with_typed_errors() {
        let l = limits();
        assert_eq!(
            decode(Bytes::new(), &l),
            Err(DecodeError::Truncated {
                field: "frame type"
            })
        );
        assert_eq!(
            decode(Bytes::from_static(&[0xee]), &l),
            Err(DecodeError::UnknownType(0xee))
        );
        assert_eq!(
            decode(Bytes::from_static(&[0x0a]), &l),
            Err(DecodeError::Truncated { field: "seq" })
        );
        assert_eq!(
            decode(Bytes::from_static(&[0x0a, 1, 0]), &l),
            Err(DecodeError::TrailingBytes(1))
        );
        assert_eq!(
            decode(
                Bytes::from_static(&[
                    0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f
                ]),
                &l
            ),
            Err(DecodeError::BadVarint { field: "seq" })
        );
        // PUBLISH whose payload announces more bytes than remain.
        assert_eq!(
            decode(Bytes::from_static(&[0x07, 1, 1, b'c', 200]), &l),
            Err(DecodeError::Truncated { field: "payload" })
        );
        assert!(matches!(
            decode(Bytes::from_static(&[0x03, 1, 3, b'a', b' ', b'b']), &l),
            Err(DecodeError::InvalidChannel(_))
        ));
        let small = DecodeLimits {
            max_frame_size: 4,
            ..l
        };
        assert!(matches!(
            decode(Bytes::from_static(&[0x0b, 1, 2, 3, 4]), &small),
            Err(DecodeError::Oversize { len: 5, max: 4 })
        ));
    }

    #[test]
    fn length_prefixed_waits_for_whole_frames_and_checks_size_first() {
        let l = limits();
        let mut buf = BytesMut::new();
        Frame::Ack { seq: 300 }.encode_length_prefixed(&mut buf);
        let full = buf.clone();
        let mut partial = BytesMut::from(&full[..full.len() - 1]);
        assert_eq!(decode_length_prefixed(&mut partial, &l), Ok(None));
        assert_eq!(partial.len(), full.len() - 1, "incomplete input consumed");
        // A prefix announcing a huge frame fails before the body arrives.
        let mut huge = BytesMut::new();
        put_varint(&mut huge, 1 << 40);
        assert!(matches!(
            decode_length_prefixed(&mut huge, &l),
            Err(DecodeError::Oversize { .. })
        ));
    }
}
