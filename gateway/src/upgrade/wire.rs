//! The messages between an old and a new gateway process during an
//! upgrade, and their byte format: a u32 big-endian length, a type byte,
//! then fields (varints, and varint-length-prefixed bytes, as in the
//! client protocol).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ferry_protocol::codec::{get_varint, put_varint};
use ferry_protocol::replay_log::Entry;
use ferry_protocol::{ChannelName, DecodeError, ResumeSecret, SessionId};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::session::state::SessionSnapshot;

/// Largest control message.
pub const MAX_MESSAGE: usize = 256 << 20;
/// Version of this wire format.
pub const WIRE_VERSION: u64 = 1;

/// A channel's sequencer state, moving with its ownership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSnapshot {
    /// The channel.
    pub channel: ChannelName,
    /// Its last assigned offset.
    pub last_offset: u64,
    /// Recent messages, for catch-up.
    pub history: Vec<(u64, Bytes)>,
}

/// One control message.
#[derive(Debug, Clone)]
pub enum ControlFrame {
    /// New → old: asks for the takeover.
    Hello {
        /// [`WIRE_VERSION`].
        version: u64,
    },
    /// Old → new: the listening sockets follow in one SCM_RIGHTS message,
    /// in this order and these counts.
    Listeners {
        /// Shared QUIC stateless-reset key, so either process can end the
        /// other's stray QUIC connections quickly.
        reset_key: [u8; 32],
        /// WebSocket listeners.
        ws: u64,
        /// WSS listeners.
        wss: u64,
        /// QUIC sockets.
        quic: u64,
    },
    /// New → old: a client resumed a session that has not arrived yet.
    Pull {
        /// The session.
        id: SessionId,
        /// Its secret as the client gave it.
        secret: ResumeSecret,
    },
    /// Old → new: the answer to a pull.
    Pulled {
        /// The session asked for.
        id: SessionId,
        /// It, if the old process had it and the secret matched.
        snapshot: Option<Box<SessionSnapshot>>,
    },
    /// Old → new: channel sequencer states.
    Channels(Vec<ChannelSnapshot>),
    /// Old → new: sessions.
    Sessions(Vec<SessionSnapshot>),
    /// Old → new: everything has been sent.
    Done {
        /// Sessions sent in all.
        sessions: u64,
    },
    /// New → old: everything is installed; the old process may exit.
    Committed,
    /// Either way: the takeover is off.
    Abort {
        /// Why.
        reason: String,
    },
}

/// A control message could not be read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WireError {
    /// The other process closed the connection or the socket failed.
    #[error("control connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The other process sent bytes that are not a control message (a
    /// different version, or a bug).
    #[error("invalid control message: {0}")]
    Invalid(String),
}

impl From<DecodeError> for WireError {
    fn from(e: DecodeError) -> Self {
        WireError::Invalid(e.to_string())
    }
}

fn put_bytes(dst: &mut BytesMut, b: &[u8]) {
    put_varint(dst, b.len() as u64);
    dst.put_slice(b);
}

fn get_bytes(src: &mut Bytes, field: &'static str) -> Result<Bytes, WireError> {
    let len = get_varint(src, field)?;
    if len > src.len() as u64 {
        return Err(WireError::Invalid(format!("{field} truncated")));
    }
    Ok(src.split_to(len as usize))
}

fn get_array<const N: usize>(src: &mut Bytes, field: &str) -> Result<[u8; N], WireError> {
    if src.len() < N {
        return Err(WireError::Invalid(format!("{field} truncated")));
    }
    let mut out = [0u8; N];
    src.copy_to_slice(&mut out);
    Ok(out)
}

fn get_channel(src: &mut Bytes) -> Result<ChannelName, WireError> {
    let raw = get_bytes(src, "channel")?;
    ChannelName::new(raw, usize::MAX).map_err(|e| WireError::Invalid(e.to_string()))
}

fn get_u8(src: &mut Bytes, field: &str) -> Result<u8, WireError> {
    if src.is_empty() {
        return Err(WireError::Invalid(format!("{field} truncated")));
    }
    Ok(src.get_u8())
}

fn put_session(dst: &mut BytesMut, s: &SessionSnapshot) {
    dst.put_slice(&s.id.0);
    dst.put_slice(&s.secret.0);
    match &s.user {
        Some(u) => {
            dst.put_u8(1);
            put_bytes(dst, u.as_bytes());
        }
        None => dst.put_u8(0),
    }
    put_varint(dst, s.last_seq);
    put_varint(dst, s.acked);
    dst.put_u8(u8::from(s.overflowed));
    put_varint(dst, s.last_client_seq);
    put_varint(dst, s.entries.len() as u64);
    for e in &s.entries {
        put_varint(dst, e.seq);
        put_bytes(dst, e.channel.as_bytes());
        put_varint(dst, e.channel_offset);
        put_bytes(dst, &e.payload);
    }
    put_varint(dst, s.subscriptions.len() as u64);
    for (channel, offset) in &s.subscriptions {
        put_bytes(dst, channel.as_bytes());
        put_varint(dst, *offset);
    }
}

fn get_session(src: &mut Bytes) -> Result<SessionSnapshot, WireError> {
    let id = SessionId(get_array(src, "session id")?);
    let secret = ResumeSecret(get_array(src, "secret")?);
    let user = match get_u8(src, "user flag")? {
        0 => None,
        _ => Some(
            String::from_utf8(get_bytes(src, "user")?.to_vec())
                .map_err(|_| WireError::Invalid("user is not UTF-8".into()))?,
        ),
    };
    let last_seq = get_varint(src, "last_seq")?;
    let acked = get_varint(src, "acked")?;
    let overflowed = get_u8(src, "overflowed")? != 0;
    let last_client_seq = get_varint(src, "last_client_seq")?;
    let n = get_varint(src, "entries")?;
    let mut entries = Vec::with_capacity(n.min(4096) as usize);
    for _ in 0..n {
        entries.push(Entry {
            seq: get_varint(src, "seq")?,
            channel: get_channel(src)?,
            channel_offset: get_varint(src, "offset")?,
            payload: get_bytes(src, "payload")?,
        });
    }
    let n = get_varint(src, "subscriptions")?;
    let mut subscriptions = Vec::with_capacity(n.min(1024) as usize);
    for _ in 0..n {
        let channel = get_channel(src)?;
        subscriptions.push((channel, get_varint(src, "offset")?));
    }
    Ok(SessionSnapshot {
        id,
        secret,
        user,
        last_seq,
        acked,
        entries,
        overflowed,
        last_client_seq,
        subscriptions,
    })
}

impl ControlFrame {
    /// The message's bytes, length prefix included.
    pub fn encode(&self) -> Bytes {
        let mut body = BytesMut::new();
        match self {
            ControlFrame::Hello { version } => {
                body.put_u8(1);
                put_varint(&mut body, *version);
            }
            ControlFrame::Listeners {
                reset_key,
                ws,
                wss,
                quic,
            } => {
                body.put_u8(2);
                body.put_slice(reset_key);
                put_varint(&mut body, *ws);
                put_varint(&mut body, *wss);
                put_varint(&mut body, *quic);
            }
            ControlFrame::Pull { id, secret } => {
                body.put_u8(3);
                body.put_slice(&id.0);
                body.put_slice(&secret.0);
            }
            ControlFrame::Pulled { id, snapshot } => {
                body.put_u8(4);
                body.put_slice(&id.0);
                match snapshot {
                    Some(s) => {
                        body.put_u8(1);
                        put_session(&mut body, s);
                    }
                    None => body.put_u8(0),
                }
            }
            ControlFrame::Channels(channels) => {
                body.put_u8(5);
                put_varint(&mut body, channels.len() as u64);
                for c in channels {
                    put_bytes(&mut body, c.channel.as_bytes());
                    put_varint(&mut body, c.last_offset);
                    put_varint(&mut body, c.history.len() as u64);
                    for (offset, payload) in &c.history {
                        put_varint(&mut body, *offset);
                        put_bytes(&mut body, payload);
                    }
                }
            }
            ControlFrame::Sessions(sessions) => {
                body.put_u8(6);
                put_varint(&mut body, sessions.len() as u64);
                for s in sessions {
                    put_session(&mut body, s);
                }
            }
            ControlFrame::Done { sessions } => {
                body.put_u8(7);
                put_varint(&mut body, *sessions);
            }
            ControlFrame::Committed => body.put_u8(8),
            ControlFrame::Abort { reason } => {
                body.put_u8(9);
                put_bytes(&mut body, reason.as_bytes());
            }
        }
        let mut out = BytesMut::with_capacity(4 + body.len());
        out.put_u32(body.len() as u32);
        out.put_slice(&body);
        out.freeze()
    }

    /// Parses one message body (without its length prefix).
    pub fn decode(mut src: Bytes) -> Result<Self, WireError> {
        let frame = match get_u8(&mut src, "type")? {
            1 => ControlFrame::Hello {
                version: get_varint(&mut src, "version")?,
            },
            2 => ControlFrame::Listeners {
                reset_key: get_array(&mut src, "reset key")?,
                ws: get_varint(&mut src, "ws")?,
                wss: get_varint(&mut src, "wss")?,
                quic: get_varint(&mut src, "quic")?,
            },
            3 => ControlFrame::Pull {
                id: SessionId(get_array(&mut src, "session id")?),
                secret: ResumeSecret(get_array(&mut src, "secret")?),
            },
            4 => {
                let id = SessionId(get_array(&mut src, "session id")?);
                let snapshot = match get_u8(&mut src, "present")? {
                    0 => None,
                    _ => Some(Box::new(get_session(&mut src)?)),
                };
                ControlFrame::Pulled { id, snapshot }
            }
            5 => {
                let n = get_varint(&mut src, "channels")?;
                let mut channels = Vec::with_capacity(n.min(65_536) as usize);
                for _ in 0..n {
                    let channel = get_channel(&mut src)?;
                    let last_offset = get_varint(&mut src, "last_offset")?;
                    let h = get_varint(&mut src, "history")?;
                    let mut history = Vec::with_capacity(h.min(4096) as usize);
                    for _ in 0..h {
                        let offset = get_varint(&mut src, "offset")?;
                        history.push((offset, get_bytes(&mut src, "payload")?));
                    }
                    channels.push(ChannelSnapshot {
                        channel,
                        last_offset,
                        history,
                    });
                }
                ControlFrame::Channels(channels)
            }
            6 => {
                let n = get_varint(&mut src, "sessions")?;
                let mut sessions = Vec::with_capacity(n.min(65_536) as usize);
                for _ in 0..n {
                    sessions.push(get_session(&mut src)?);
                }
                ControlFrame::Sessions(sessions)
            }
            7 => ControlFrame::Done {
                sessions: get_varint(&mut src, "sessions")?,
            },
            8 => ControlFrame::Committed,
            9 => ControlFrame::Abort {
                reason: String::from_utf8_lossy(&get_bytes(&mut src, "reason")?).into_owned(),
            },
            other => return Err(WireError::Invalid(format!("unknown message type {other}"))),
        };
        if !src.is_empty() {
            return Err(WireError::Invalid(format!("{} trailing bytes", src.len())));
        }
        Ok(frame)
    }
}

/// Writes one message.
pub async fn write_frame<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    frame: &ControlFrame,
) -> Result<(), WireError> {
    w.write_all(&frame.encode()).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one message.
pub async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
) -> Result<ControlFrame, WireError> {
    let len = r.read_u32().await? as usize;
    if len > MAX_MESSAGE {
        return Err(WireError::Invalid(format!(
            "message of {len} bytes is too large"
        )));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    ControlFrame::decode(Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> SessionSnapshot {
        let c = ChannelName::parse("chat:1").unwrap();
        SessionSnapshot {
            id: SessionId([1; 16]),
            secret: ResumeSecret([2; 32]),
            user: Some("alice".into()),
            last_seq: 9,
            acked: 7,
            entries: vec![
                Entry {
                    seq: 8,
                    channel: c.clone(),
                    channel_offset: 40,
                    payload: Bytes::from_static(b"a"),
                },
                Entry {
                    seq: 9,
                    channel: c.clone(),
                    channel_offset: 41,
                    payload: Bytes::from_static(b"bb"),
                },
            ],
            overflowed: false,
            last_client_seq: 3,
            subscriptions: vec![(c, 41)],
        }
    }

    fn round_trip(frame: ControlFrame) -> ControlFrame {
        let mut bytes = frame.encode();
        let len = bytes.get_u32() as usize;
        assert_eq!(len, bytes.len());
        ControlFrame::decode(bytes).unwrap()
    }

    #[test]
    fn sessions_and_channels_survive_the_wire() {
        let ControlFrame::Sessions(s) = round_trip(ControlFrame::Sessions(vec![snapshot()])) else {
            panic!("wrong type");
        };
        let back = &s[0];
        let orig = snapshot();
        assert_eq!(back.id, orig.id);
        assert_eq!(back.user, orig.user);
        assert_eq!(back.entries, orig.entries);
        assert_eq!(back.subscriptions, orig.subscriptions);
        assert_eq!((back.last_seq, back.acked, back.last_client_seq), (9, 7, 3));
        let ch = ChannelSnapshot {
            channel: ChannelName::parse("x").unwrap(),
            last_offset: 5,
            history: vec![(5, Bytes::from_static(b"z"))],
        };
        let ControlFrame::Channels(c) = round_trip(ControlFrame::Channels(vec![ch.clone()])) else {
            panic!("wrong type");
        };
        assert_eq!(c, vec![ch]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [&[][..], &[99], &[6, 5], &[4, 1, 2]] {
            assert!(ControlFrame::decode(Bytes::copy_from_slice(bad)).is_err());
        }
    }
}
