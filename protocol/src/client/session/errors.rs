//! Why a session needs a new transport, and what each ERROR code asks of
//! the client (PROTOCOL.md §5): fatal or not, and whether to stop.

use std::time::Duration;

use thiserror::Error;

use crate::code::ErrorCode;

/// Why the session needs a new transport. The driver drops the current one
/// (then calls [`Session::transport_lost`](super::Session::transport_lost))
/// and reconnects.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Server: it broke the protocol (a seq gap, a frame out of place).
    #[error("protocol violation by the server: {0}")]
    ServerMisbehaved(String),
    /// Server or network: nothing arrived for 2.5 heartbeat intervals.
    #[error("nothing heard from the server for {0:?}")]
    ServerSilent(Duration),
    /// Server or network: no WELCOME in time.
    #[error("no WELCOME within {0:?}")]
    HandshakeTimeout(Duration),
}

pub(super) fn misbehaved(what: impl Into<String>) -> SessionError {
    SessionError::ServerMisbehaved(what.into())
}

/// Whether a fatal ERROR code means reconnecting cannot help, so the SDK
/// stops: protocol violations (1xx: a client bug, except 105 and 107, which
/// are retried), an unsupported version (104), authentication failures
/// 400–408, the session taken over by another connection (303), and an
/// operator disconnect (503). Everything else is resumed with backoff
/// (PROTOCOL.md §5).
pub fn is_terminal(code: u16) -> bool {
    match code {
        105 | 107 => false,
        100..=199 | 303 | 400..=408 | 503 => true,
        _ => false,
    }
}

/// Whether an ERROR code closes the connection. Unknown codes are treated
/// like their hundred's group: only 2xx (request errors) are not fatal.
pub fn is_fatal(code: u16) -> bool {
    ErrorCode::from_u16(code).map_or(code / 100 != 2, ErrorCode::is_fatal)
}
