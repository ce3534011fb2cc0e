//! Channel names: validated once at the edge, then shared cheaply.

use bytes::Bytes;
use std::fmt;

use crate::error::ChannelError;

/// Default upper bound on a channel name, in bytes.
pub const DEFAULT_MAX_CHANNEL_LEN: usize = 128;

/// The prefix of per-user channels: `user:<id>` carries direct messages.
pub const USER_CHANNEL_PREFIX: &str = "user:";

/// A channel name that obeys the naming rules: 1..=max bytes of
/// `A-Z a-z 0-9 - _ . : @ /`.
///
/// It holds `Bytes`, so cloning it for every subscriber costs a reference
/// count, not a copy.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Bytes);

impl ChannelName {
    /// Validates `raw` as a channel name of at most `max_len` bytes.
    pub fn new(raw: Bytes, max_len: usize) -> Result<Self, ChannelError> {
        if raw.is_empty() {
            return Err(ChannelError::Empty);
        }
        if raw.len() > max_len {
            return Err(ChannelError::TooLong {
                len: raw.len(),
                max: max_len,
            });
        }
        if let Some(&bad) = raw.iter().find(|&&b| !is_allowed_byte(b)) {
            return Err(ChannelError::ForbiddenByte(bad));
        }
        Ok(Self(raw))
    }

    /// Validates a string with the default length limit.
    pub fn parse(name: &str) -> Result<Self, ChannelError> {
        Self::new(
            Bytes::copy_from_slice(name.as_bytes()),
            DEFAULT_MAX_CHANNEL_LEN,
        )
    }

    /// The per-user channel `user:<id>`.
    pub fn for_user(user_id: &str) -> Result<Self, ChannelError> {
        Self::parse(&format!("{USER_CHANNEL_PREFIX}{user_id}"))
    }

    /// The name as text (always ASCII by construction).
    pub fn as_str(&self) -> &str {
        // The constructor only admits ASCII bytes, so this never fails; fall
        // back to an empty string rather than panic if that ever changed.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The same name in an allocation of its own. A decoded name is a slice
    /// of the buffer it was read from; one kept for long (a subscription, a
    /// channel key, a replay entry) would keep that whole buffer alive.
    pub fn to_compact(&self) -> Self {
        Self(Bytes::copy_from_slice(&self.0))
    }

    /// The user id when this is a `user:<id>` channel.
    pub fn user_id(&self) -> Option<&str> {
        self.as_str().strip_prefix(USER_CHANNEL_PREFIX)
    }
}

fn is_allowed_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@' | b'/')
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelName({:?})", self.as_str())
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in ["a", "chat:room-1", "user:42", "news.sport/eu", "x_y@z"] {
            assert!(ChannelName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_empty_long_and_forbidden() {
        assert_eq!(ChannelName::parse(""), Err(ChannelError::Empty));
        assert_eq!(
            ChannelName::parse("a b"),
            Err(ChannelError::ForbiddenByte(b' '))
        );
        assert_eq!(
            ChannelName::parse("news:*"),
            Err(ChannelError::ForbiddenByte(b'*'))
        );
        let long = "a".repeat(DEFAULT_MAX_CHANNEL_LEN + 1);
        assert!(matches!(
            ChannelName::parse(&long),
            Err(ChannelError::TooLong { .. })
        ));
    }

    #[test]
    fn user_channel_round_trip() {
        let c = ChannelName::for_user("alice").unwrap();
        assert_eq!(c.as_str(), "user:alice");
        assert_eq!(c.user_id(), Some("alice"));
        assert_eq!(ChannelName::parse("chat:1").unwrap().user_id(), None);
    }

    #[test]
    fn a_compact_name_does_not_keep_the_buffer_it_was_read_from() {
        let read_buffer = Bytes::from(vec![b'a'; 4096]);
        let name = ChannelName::new(read_buffer.slice(10..20), 128).unwrap();
        let compact = name.to_compact();
        assert_eq!(compact, name);
        let inside = read_buffer.as_ptr_range();
        assert!(
            inside.contains(&name.as_bytes().as_ptr()),
            "a slice shares it"
        );
        assert!(
            !inside.contains(&compact.as_bytes().as_ptr()),
            "the compact copy has its own allocation"
        );
    }
}
