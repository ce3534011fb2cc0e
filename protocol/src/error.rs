//! Typed errors of the protocol crate.
//!
//! Every variant says who is at fault. Decoding errors are always the peer's:
//! the bytes it sent do not form a valid frame.

use thiserror::Error;

/// A frame could not be decoded. The peer sent bytes that are not a valid
/// Ferry frame; the connection should be closed with the matching
/// [`ErrorCode`](crate::ErrorCode) (see [`DecodeError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Peer: the input was empty or ended in the middle of a field.
    #[error("frame truncated: {field} needs more bytes than remain")]
    Truncated {
        /// The field being read when the input ran out.
        field: &'static str,
    },
    /// Peer: the frame type byte is not one this version knows.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    /// Peer: the frame (or a length it announces) is larger than the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    Oversize {
        /// The announced or actual size.
        len: u64,
        /// The limit in force.
        max: usize,
    },
    /// Peer: a varint is longer than 10 bytes or overflows 64 bits.
    #[error("invalid varint in {field}")]
    BadVarint {
        /// The field whose varint was invalid.
        field: &'static str,
    },
    /// Peer: a channel name is empty, too long, or has a forbidden character.
    #[error("invalid channel name: {0}")]
    InvalidChannel(#[from] ChannelError),
    /// Peer: a text field is not valid UTF-8.
    #[error("{field} is not valid UTF-8")]
    BadUtf8 {
        /// The field holding the invalid text.
        field: &'static str,
    },
    /// Peer: an enumerated field holds a value this version does not define.
    #[error("invalid value {value} for {field}")]
    BadValue {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// Peer: bytes remain after the last field of the frame.
    #[error("{0} trailing bytes after the frame")]
    TrailingBytes(usize),
}

impl DecodeError {
    /// The error code a receiver reports for this error before closing.
    pub fn code(&self) -> crate::ErrorCode {
        match self {
            DecodeError::UnknownType(_) => crate::ErrorCode::UnknownFrameType,
            DecodeError::Oversize { .. } => crate::ErrorCode::FrameTooLarge,
            DecodeError::InvalidChannel(_) => crate::ErrorCode::InvalidChannel,
            _ => crate::ErrorCode::MalformedFrame,
        }
    }
}

/// A channel name breaks the naming rules of PROTOCOL.md.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The name has no characters.
    #[error("channel name is empty")]
    Empty,
    /// The name is longer than the limit.
    #[error("channel name of {len} bytes exceeds {max} bytes")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name holds a byte outside `A-Z a-z 0-9 - _ . : @ /`.
    #[error("channel name has forbidden byte 0x{0:02x} (allowed: A-Z a-z 0-9 - _ . : @ /)")]
    ForbiddenByte(u8),
}
