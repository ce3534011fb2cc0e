//! The frames of the Ferry protocol, as plain data.
//!
//! Byte layouts are in PROTOCOL.md and implemented in [`crate::codec`].

use bytes::Bytes;

use crate::channel::ChannelName;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u64 = 1;
/// The WebSocket subprotocol that selects this protocol.
pub const WS_SUBPROTOCOL: &str = "ferry.v1";
/// The QUIC ALPN that selects this protocol.
pub const QUIC_ALPN: &[u8] = b"ferry/1";

/// A session id: 128 random bits chosen by the server.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub [u8; 16]);

/// The secret that proves a client owns a session: 256 random bits.
/// Compare it only in constant time.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ResumeSecret(pub [u8; 32]);

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for ResumeSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResumeSecret(..)")
    }
}

/// What a client asks to resume in HELLO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeRequest {
    /// The session to resume.
    pub session_id: SessionId,
    /// Its secret, from WELCOME.
    pub secret: ResumeSecret,
    /// The highest MESSAGE seq the client has received (0 for none).
    pub last_received_seq: u64,
}

/// HELLO: the client's first frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version, [`PROTOCOL_VERSION`].
    pub version: u64,
    /// Authentication token; empty when none.
    pub token: String,
    /// Present when the client resumes a session.
    pub resume: Option<ResumeRequest>,
}

/// How the server answered HELLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum WelcomeOutcome {
    /// A new session; the client asked for none.
    New = 0,
    /// The session was resumed; the server replays from last_received_seq + 1.
    Resumed = 1,
    /// Resume asked for a session that does not exist (expired, unknown or
    /// wrong secret): this is a new session.
    NewSessionExpired = 2,
    /// The session existed but its replay log no longer holds
    /// last_received_seq + 1: messages were lost, this is a new session.
    NewReplayUnavailable = 3,
}

impl WelcomeOutcome {
    /// Decodes the wire value.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::New,
            1 => Self::Resumed,
            2 => Self::NewSessionExpired,
            3 => Self::NewReplayUnavailable,
            _ => return None,
        })
    }

    /// Whether this outcome continues the session the client asked for.
    pub fn is_resumed(self) -> bool {
        self == Self::Resumed
    }
}

/// WELCOME: the server accepts the client and names its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The session id (new or resumed).
    pub session_id: SessionId,
    /// The secret to present on resume.
    pub resume_secret: ResumeSecret,
    /// New or resumed, and why a resume failed.
    pub outcome: WelcomeOutcome,
    /// The client must send a frame (PING if idle) at least this often.
    pub heartbeat_interval_ms: u64,
    /// How long the server keeps a detached session.
    pub resume_window_ms: u64,
    /// The largest frame the server accepts, in bytes.
    pub max_frame_size: u64,
    /// The most channels one session may subscribe to.
    pub max_subscriptions: u64,
    /// The last PUBLISH client_seq the server processed in this session
    /// (0 for a new session): the client re-sends only what follows.
    pub last_client_seq: u64,
}

/// One frame of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Client → server: open or resume a session.
    Hello(Hello),
    /// Server → client: the session is established.
    Welcome(Welcome),
    /// Client → server: subscribe to a channel.
    Subscribe {
        /// Echoed in SUBSCRIBED or ERROR.
        request_id: u64,
        /// The channel.
        channel: ChannelName,
    },
    /// Server → client: the subscription is active.
    Subscribed {
        /// From SUBSCRIBE.
        request_id: u64,
        /// The channel offset of the last message before the subscription;
        /// the first message delivered has a larger offset.
        channel_offset: u64,
    },
    /// Client → server: leave a channel.
    Unsubscribe {
        /// Echoed in UNSUBSCRIBED or ERROR.
        request_id: u64,
        /// The channel.
        channel: ChannelName,
    },
    /// Server → client: the subscription has ended.
    Unsubscribed {
        /// From UNSUBSCRIBE.
        request_id: u64,
    },
    /// Client → server: publish a payload to a channel.
    Publish {
        /// 1 for the session's first publish, +1 for each next one.
        client_seq: u64,
        /// The channel.
        channel: ChannelName,
        /// Opaque bytes.
        payload: Bytes,
    },
    /// Server → client: every publish up to `client_seq` is processed.
    PubAck {
        /// Cumulative.
        client_seq: u64,
    },
    /// Server → client: a message of a subscribed channel.
    Message {
        /// The session's sequence number: 1, 2, 3, ... without gaps.
        seq: u64,
        /// The channel.
        channel: ChannelName,
        /// The message's position in its channel: +1 per message.
        channel_offset: u64,
        /// Opaque bytes.
        payload: Bytes,
    },
    /// Client → server: every MESSAGE up to `seq` is received.
    Ack {
        /// Cumulative.
        seq: u64,
    },
    /// Either way: liveness probe.
    Ping {
        /// Echoed in PONG.
        nonce: u64,
    },
    /// Either way: answer to PING.
    Pong {
        /// From PING.
        nonce: u64,
    },
    /// Server → client: the connection will close; reconnect and resume.
    GoAway {
        /// Why (a code of the error table).
        code: u16,
        /// Wait about this long before reconnecting.
        reconnect_after_ms: u64,
        /// Human-readable detail.
        message: String,
    },
    /// Either way: an error, fatal or answering one request.
    Error {
        /// A code of the error table.
        code: u16,
        /// The request_id or client_seq this answers, 0 for none.
        reference: u64,
        /// Human-readable detail.
        message: String,
    },
    /// Server → client: the token expires soon; send TOKEN within
    /// `deadline_ms`.
    RefreshToken {
        /// Time left before the session is closed.
        deadline_ms: u64,
    },
    /// Client → server: a fresh token for the same user.
    Token {
        /// The token.
        token: String,
    },
}

/// The type byte of each frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum FrameType {
    Hello = 0x01,
    Welcome = 0x02,
    Subscribe = 0x03,
    Subscribed = 0x04,
    Unsubscribe = 0x05,
    Unsubscribed = 0x06,
    Publish = 0x07,
    PubAck = 0x08,
    Message = 0x09,
    Ack = 0x0a,
    Ping = 0x0b,
    Pong = 0x0c,
    GoAway = 0x0d,
    Error = 0x0e,
    RefreshToken = 0x0f,
    Token = 0x10,
}

impl FrameType {
    /// Decodes a type byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x01 => Self::Hello,
            0x02 => Self::Welcome,
            0x03 => Self::Subscribe,
            0x04 => Self::Subscribed,
            0x05 => Self::Unsubscribe,
            0x06 => Self::Unsubscribed,
            0x07 => Self::Publish,
            0x08 => Self::PubAck,
            0x09 => Self::Message,
            0x0a => Self::Ack,
            0x0b => Self::Ping,
            0x0c => Self::Pong,
            0x0d => Self::GoAway,
            0x0e => Self::Error,
            0x0f => Self::RefreshToken,
            0x10 => Self::Token,
            _ => return None,
        })
    }

    /// Whether a client may send this frame type.
    pub fn is_client_frame(self) -> bool {
        matches!(
            self,
            Self::Hello
                | Self::Subscribe
                | Self::Unsubscribe
                | Self::Publish
                | Self::Ack
                | Self::Ping
                | Self::Pong
                | Self::Error
                | Self::Token
        )
    }
}

impl Frame {
    /// The frame's type byte.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Hello(_) => FrameType::Hello,
            Frame::Welcome(_) => FrameType::Welcome,
            Frame::Subscribe { .. } => FrameType::Subscribe,
            Frame::Subscribed { .. } => FrameType::Subscribed,
            Frame::Unsubscribe { .. } => FrameType::Unsubscribe,
            Frame::Unsubscribed { .. } => FrameType::Unsubscribed,
            Frame::Publish { .. } => FrameType::Publish,
            Frame::PubAck { .. } => FrameType::PubAck,
            Frame::Message { .. } => FrameType::Message,
            Frame::Ack { .. } => FrameType::Ack,
            Frame::Ping { .. } => FrameType::Ping,
            Frame::Pong { .. } => FrameType::Pong,
            Frame::GoAway { .. } => FrameType::GoAway,
            Frame::Error { .. } => FrameType::Error,
            Frame::RefreshToken { .. } => FrameType::RefreshToken,
            Frame::Token { .. } => FrameType::Token,
        }
    }

    /// An ERROR frame for `code`.
    pub fn error(code: crate::ErrorCode, reference: u64, message: impl Into<String>) -> Self {
        Frame::Error {
            code: code.as_u16(),
            reference,
            message: message.into(),
        }
    }
}
