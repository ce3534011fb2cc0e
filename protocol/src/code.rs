//! The error code table of PROTOCOL.md, shared by ERROR and GOAWAY frames.

/// A numeric error or close reason. Codes are grouped by hundreds:
/// 1xx protocol violations, 2xx request errors, 3xx session and flow
/// control, 4xx authentication, 5xx server state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The bytes did not form a valid frame.
    MalformedFrame = 100,
    /// The frame type is unknown.
    UnknownFrameType = 101,
    /// The frame exceeds the negotiated maximum size.
    FrameTooLarge = 102,
    /// A valid frame arrived where it is not allowed (before HELLO, a second
    /// HELLO, a server-only frame from a client).
    UnexpectedFrame = 103,
    /// The protocol version in HELLO is not supported.
    UnsupportedVersion = 104,
    /// HELLO did not arrive within the handshake timeout.
    HandshakeTimeout = 105,
    /// The WebSocket subprotocol or QUIC ALPN is not `ferry.v1` / `ferry/1`.
    WrongSubprotocol = 106,
    /// Nothing was heard from the client within the heartbeat timeout.
    HeartbeatTimeout = 107,
    /// An ACK acknowledged a seq the server never sent.
    InvalidAck = 108,
    /// A PUBLISH skipped a client_seq (it must be the last one + 1).
    ClientSeqGap = 109,
    /// A text (non-binary) WebSocket message arrived.
    TextNotSupported = 110,
    /// The channel name is invalid.
    InvalidChannel = 200,
    /// The session already holds the maximum number of subscriptions.
    TooManySubscriptions = 201,
    /// UNSUBSCRIBE named a channel the session is not subscribed to.
    NotSubscribed = 202,
    /// The client sends faster than its rate limit.
    RateLimited = 203,
    /// The client did not read fast enough; its outbound queue passed the
    /// bound. The session stays resumable while the replay log covers it.
    SlowConsumer = 300,
    /// The client did not acknowledge and the replay log overflowed.
    ReplayOverflow = 301,
    /// The gateway has reached its connection limit.
    TooManyConnections = 302,
    /// Another connection resumed this session.
    SessionTakenOver = 303,
    /// Authentication is required and no token was given.
    TokenMissing = 400,
    /// The token is not a well-formed JWT.
    TokenMalformed = 401,
    /// The token has expired (or is not yet valid).
    TokenExpired = 402,
    /// The token signature does not verify, or its key id is unknown.
    TokenBadSignature = 403,
    /// The token's audience or issuer is not accepted.
    TokenWrongAudience = 404,
    /// The grant does not allow subscribing to that channel.
    ForbiddenSubscribe = 405,
    /// The grant does not allow publishing to that channel.
    ForbiddenPublish = 406,
    /// A resume presented a token for another user than the session's.
    IdentityMismatch = 407,
    /// Too many failed authentication attempts from this address.
    AuthRateLimited = 408,
    /// The token expired and no refreshed token arrived in time.
    TokenRefreshTimeout = 409,
    /// An internal error; the session is resumable.
    InternalError = 500,
    /// The gateway is shutting down.
    ShuttingDown = 501,
    /// The gateway is being upgraded; reconnect and resume.
    Upgrading = 502,
    /// The server closed the session by operator request.
    Disconnected = 503,
}

impl ErrorCode {
    /// Every defined code, in table order.
    pub const ALL: &'static [ErrorCode] = &[
        Self::MalformedFrame,
        Self::UnknownFrameType,
        Self::FrameTooLarge,
        Self::UnexpectedFrame,
        Self::UnsupportedVersion,
        Self::HandshakeTimeout,
        Self::WrongSubprotocol,
        Self::HeartbeatTimeout,
        Self::InvalidAck,
        Self::ClientSeqGap,
        Self::TextNotSupported,
        Self::InvalidChannel,
        Self::TooManySubscriptions,
        Self::NotSubscribed,
        Self::RateLimited,
        Self::SlowConsumer,
        Self::ReplayOverflow,
        Self::TooManyConnections,
        Self::SessionTakenOver,
        Self::TokenMissing,
        Self::TokenMalformed,
        Self::TokenExpired,
        Self::TokenBadSignature,
        Self::TokenWrongAudience,
        Self::ForbiddenSubscribe,
        Self::ForbiddenPublish,
        Self::IdentityMismatch,
        Self::AuthRateLimited,
        Self::TokenRefreshTimeout,
        Self::InternalError,
        Self::ShuttingDown,
        Self::Upgrading,
        Self::Disconnected,
    ];

    /// The numeric value on the wire.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The code for a wire value, if defined. Unknown codes must be treated
    /// by clients like their hundred's group (see PROTOCOL.md).
    pub fn from_u16(value: u16) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_u16() == value)
    }

    /// Whether the connection is closed after an ERROR with this code.
    /// Non-fatal codes answer one request (named by the ERROR's `ref`).
    pub fn is_fatal(self) -> bool {
        !matches!(
            self,
            Self::InvalidChannel
                | Self::TooManySubscriptions
                | Self::NotSubscribed
                | Self::RateLimited
                | Self::ForbiddenSubscribe
                | Self::ForbiddenPublish
        )
    }

    /// A short stable name, used as a metrics label.
    pub fn name(self) -> &'static str {
        match self {
            Self::MalformedFrame => "malformed_frame",
            Self::UnknownFrameType => "unknown_frame_type",
            Self::FrameTooLarge => "frame_too_large",
            Self::UnexpectedFrame => "unexpected_frame",
            Self::UnsupportedVersion => "unsupported_version",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::WrongSubprotocol => "wrong_subprotocol",
            Self::HeartbeatTimeout => "heartbeat_timeout",
            Self::InvalidAck => "invalid_ack",
            Self::ClientSeqGap => "client_seq_gap",
            Self::TextNotSupported => "text_not_supported",
            Self::InvalidChannel => "invalid_channel",
            Self::TooManySubscriptions => "too_many_subscriptions",
            Self::NotSubscribed => "not_subscribed",
            Self::RateLimited => "rate_limited",
            Self::SlowConsumer => "slow_consumer",
            Self::ReplayOverflow => "replay_overflow",
            Self::TooManyConnections => "too_many_connections",
            Self::SessionTakenOver => "session_taken_over",
            Self::TokenMissing => "token_missing",
            Self::TokenMalformed => "token_malformed",
            Self::TokenExpired => "token_expired",
            Self::TokenBadSignature => "token_bad_signature",
            Self::TokenWrongAudience => "token_wrong_audience",
            Self::ForbiddenSubscribe => "forbidden_subscribe",
            Self::ForbiddenPublish => "forbidden_publish",
            Self::IdentityMismatch => "identity_mismatch",
            Self::AuthRateLimited => "auth_rate_limited",
            Self::TokenRefreshTimeout => "token_refresh_timeout",
            Self::InternalError => "internal_error",
            Self::ShuttingDown => "shutting_down",
            Self::Upgrading => "upgrading",
            Self::Disconnected => "disconnected",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &code in ErrorCode::ALL {
            assert!(seen.insert(code.as_u16()), "duplicate {code:?}");
            assert_eq!(ErrorCode::from_u16(code.as_u16()), Some(code));
        }
        assert_eq!(ErrorCode::from_u16(999), None);
    }

    #[test]
    fn request_errors_are_not_fatal_but_violations_are() {
        assert!(!ErrorCode::ForbiddenPublish.is_fatal());
        assert!(!ErrorCode::InvalidChannel.is_fatal());
        assert!(ErrorCode::MalformedFrame.is_fatal());
        assert!(ErrorCode::SlowConsumer.is_fatal());
    }
}
