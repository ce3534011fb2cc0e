//! The Ferry wire protocol.
//!
//! This crate owns what both ends of a Ferry connection must agree on, and
//! nothing that touches a socket or a clock:
//!
//! - [`frame`]: the frames as data; [`codec`]: their byte layout;
//! - [`ChannelName`] and the [`ErrorCode`] table;
//! - [`replay_log`] and [`seq`]: the ordering and delivery rules as pure
//!   state machines, fed with events and returning decisions.
//!
//! ```text
//!   socket bytes ──> [ driver (gateway / client SDK) ] ──> codec::decode ──> Frame
//!                                                                     │
//!                          state machines (replay_log, seq) <─────────┘
//! ```
//!
//! I/O stops at the driver: the gateway's connection tasks and, behind the
//! `client` feature, the client SDK in [`client`].

pub mod channel;
pub mod code;
pub mod codec;
pub mod error;
pub mod frame;
pub mod replay_log;
pub mod seq;

#[cfg(feature = "client")]
pub mod client;

pub use channel::ChannelName;
pub use code::ErrorCode;
pub use codec::DecodeLimits;
pub use error::{ChannelError, DecodeError};
pub use frame::{Frame, Hello, ResumeRequest, ResumeSecret, SessionId, Welcome, WelcomeOutcome};
