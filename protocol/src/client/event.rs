//! What the SDK tells the application: events and counters. Plain data.

use bytes::Bytes;

use crate::channel::ChannelName;
use crate::frame::{SessionId, WelcomeOutcome};
use crate::seq::PendingPublish;

/// A message of a subscribed channel, delivered exactly once and in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The session's sequence number.
    pub seq: u64,
    /// The channel.
    pub channel: ChannelName,
    /// The message's position in its channel.
    pub channel_offset: u64,
    /// Opaque bytes.
    pub payload: Bytes,
}

/// Something the application should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message.
    Message(Delivery),
    /// WELCOME arrived: after every (re)connect, the first included.
    Connected {
        /// New or resumed.
        outcome: WelcomeOutcome,
        /// The session now in use.
        session_id: SessionId,
    },
    /// An established connection was lost; the SDK reconnects by itself
    /// unless it was closed.
    Disconnected {
        /// Why, for logs.
        reason: String,
    },
    /// The resume failed and the server started a new session: messages
    /// may have been missed, and these publishes may or may not have been
    /// processed (the SDK does not re-send them). It follows the
    /// `Connected` event of the new session, whose outcome says why
    /// (`NewReplayUnavailable`: messages were lost, re-sync from your own
    /// source of truth). The SDK re-subscribes its channels by itself.
    SessionLost {
        /// Publishes that were not acknowledged, in order.
        uncertain_publishes: Vec<PendingPublish>,
    },
    /// An ERROR frame from the server: non-fatal ones answer one request
    /// (e.g. a forbidden publish), fatal ones precede the close.
    ServerError {
        /// The error code (see [`ErrorCode`](crate::ErrorCode)).
        code: u16,
        /// The request_id or client_seq it answers, 0 for none.
        reference: u64,
        /// The server's detail.
        message: String,
    },
    /// The server asked the client to reconnect (shutdown, upgrade). The SDK
    /// keeps reading until the server closes the connection (at most 5 s),
    /// then waits `reconnect_after_ms` plus up to 50 % jitter and resumes.
    GoAway {
        /// Why (a code of the error table).
        code: u16,
        /// The server's suggested delay.
        reconnect_after_ms: u64,
    },
}

/// Counters of one client, since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Successful reconnects (WELCOME after the first).
    pub reconnects: u64,
    /// Reconnects that resumed the session.
    pub resumes_ok: u64,
    /// Reconnects that got a new session instead.
    pub resumes_failed: u64,
    /// Messages delivered (duplicates excluded).
    pub messages_received: u64,
    /// Re-sent messages dropped after a resume.
    pub duplicates_dropped: u64,
    /// Publishes acknowledged by PUBACK (or WELCOME.last_client_seq).
    pub publishes_acked: u64,
    /// The session's last received seq.
    pub last_received_seq: u64,
}
