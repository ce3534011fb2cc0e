//! The bytes every load-test message carries, so that the receiver alone can
//! tell which message it is and how late it is.
//!
//! ```text
//!   0        8               16        20          len
//!   | seq LE | intended ns LE | source  | zero padding |
//! ```
//!
//! `seq` counts from 1 per source; `intended ns` is the time the message
//! was due to be sent, in nanoseconds since the load generator started
//! ([`crate::rate::Clock`]); `source` is the index of the sending session.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes taken by the stamp; a payload is at least this long.
pub const STAMP_LEN: usize = 20;

/// What a message says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// 1, 2, 3, ... per source.
    pub seq: u64,
    /// When it was due to be sent (ns since the generator started).
    pub intended_ns: u64,
    /// The sending session.
    pub source: u32,
}

impl Stamp {
    /// The payload: the stamp, then zeros up to `len` bytes (at least
    /// [`STAMP_LEN`]).
    pub fn encode(&self, len: usize) -> Bytes {
        let len = len.max(STAMP_LEN);
        let mut buf = BytesMut::with_capacity(len);
        buf.put_u64_le(self.seq);
        buf.put_u64_le(self.intended_ns);
        buf.put_u32_le(self.source);
        buf.resize(len, 0);
        buf.freeze()
    }

    /// Reads the stamp at the start of a payload; `None` when it is shorter
    /// than a stamp (not one of ours).
    pub fn decode(mut payload: &[u8]) -> Option<Self> {
        if payload.len() < STAMP_LEN {
            return None;
        }
        Some(Self {
            seq: payload.get_u64_le(),
            intended_ns: payload.get_u64_le(),
            source: payload.get_u32_le(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_pads() {
        let s = Stamp {
            seq: 7,
            intended_ns: 123_456_789,
            source: 42,
        };
        let p = s.encode(64);
        assert_eq!(p.len(), 64);
        assert_eq!(Stamp::decode(&p), Some(s));
        assert_eq!(s.encode(1).len(), STAMP_LEN, "never shorter than a stamp");
        assert_eq!(Stamp::decode(&p[..STAMP_LEN - 1]), None);
    }
}
