//! What a token allows: channel patterns for subscribing and publishing.
//!
//! A [`Pattern`] is an exact channel name (`chat:lobby`) or a prefix
//! ending in `*` (`news:*`, `chat:room-*`); `*` alone matches every
//! channel. Patterns are validated when the token is parsed, so a
//! [`Grant`] only ever holds valid ones.

use std::fmt;

use ferry_protocol::ChannelName;
use ferry_protocol::channel::DEFAULT_MAX_CHANNEL_LEN;
use serde::{Deserialize, Deserializer};
use thiserror::Error;

/// Most patterns a grant may hold per list (subscribe, publish).
pub const MAX_PATTERNS: usize = 256;

/// Why a pattern is invalid. The token's issuer (or the operator minting a
/// token) is at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The pattern is empty.
    #[error("empty channel pattern")]
    Empty,
    /// The pattern is longer than a channel name may be.
    #[error("channel pattern {pattern:?} is {len} bytes; the limit is {max}")]
    TooLong {
        /// The pattern (cut to the limit).
        pattern: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A byte outside the channel alphabet (`A-Z a-z 0-9 - _ . : @ /`).
    #[error("channel pattern {pattern:?} has a forbidden character {byte:?}")]
    ForbiddenByte {
        /// The pattern.
        pattern: String,
        /// The byte, as a char.
        byte: char,
    },
    /// `*` appears somewhere else than at the end.
    #[error("channel pattern {pattern:?}: `*` is only allowed as the last character")]
    MisplacedStar {
        /// The pattern.
        pattern: String,
    },
}

/// A channel pattern: an exact name, or a prefix when it ends in `*`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    /// The pattern as written (with its trailing `*`, if any).
    text: Box<str>,
    /// Whether `text` ends in `*` and matches by prefix.
    prefix: bool,
}

impl Pattern {
    /// Validates a pattern.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if text.len() > DEFAULT_MAX_CHANNEL_LEN {
            return Err(PatternError::TooLong {
                pattern: text.chars().take(DEFAULT_MAX_CHANNEL_LEN).collect(),
                len: text.len(),
                max: DEFAULT_MAX_CHANNEL_LEN,
            });
        }
        let (body, prefix) = match text.strip_suffix('*') {
            Some(body) => (body, true),
            None => (text, false),
        };
        if let Some(byte) = body.bytes().find(|&b| !is_channel_byte(b)) {
            if byte == b'*' {
                return Err(PatternError::MisplacedStar {
                    pattern: text.to_owned(),
                });
            }
            return Err(PatternError::ForbiddenByte {
                pattern: text.to_owned(),
                byte: char::from(byte),
            });
        }
        Ok(Self {
            text: text.into(),
            prefix,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern is a prefix (ends in `*`).
    pub fn is_prefix(&self) -> bool {
        self.prefix
    }

    /// Whether `channel` matches.
    pub fn matches(&self, channel: &str) -> bool {
        if self.prefix {
            let body = &self.text[..self.text.len() - 1];
            channel.starts_with(body)
        } else {
            channel == &*self.text
        }
    }
}

/// The channel-name alphabet of [`ChannelName`] (kept in step by a test).
fn is_channel_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@' | b'/')
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.text)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = super::jwt::Text::deserialize(deserializer)?;
        Pattern::parse(&text.0).map_err(serde::de::Error::custom)
    }
}

/// The rights a token grants: which channels the user may subscribe to
/// and publish on. The user's own `user:<sub>` channel may always be
/// subscribed to; publishing on any `user:` channel (own included) needs a
/// pattern that allows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    subscribe: Vec<Pattern>,
    publish: Vec<Pattern>,
}

impl Grant {
    /// A grant of these patterns.
    pub fn new(subscribe: Vec<Pattern>, publish: Vec<Pattern>) -> Self {
        Self { subscribe, publish }
    }

    /// Validates pattern strings into a grant.
    pub fn parse<S: AsRef<str>>(subscribe: &[S], publish: &[S]) -> Result<Self, PatternError> {
        let parse_all = |list: &[S]| {
            list.iter()
                .map(|p| Pattern::parse(p.as_ref()))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self::new(parse_all(subscribe)?, parse_all(publish)?))
    }

    /// The subscribe patterns.
    pub fn subscribe_patterns(&self) -> &[Pattern] {
        &self.subscribe
    }

    /// The publish patterns.
    pub fn publish_patterns(&self) -> &[Pattern] {
        &self.publish
    }

    /// Whether `user` may subscribe to `channel`: its own `user:<user>`
    /// channel always, anything else when a pattern matches.
    pub fn may_subscribe(&self, channel: &ChannelName, user: &str) -> bool {
        let own = !user.is_empty() && channel.user_id() == Some(user);
        own || self.subscribe.iter().any(|p| p.matches(channel.as_str()))
    }

    /// Whether `user` may publish on `channel`: only when a pattern
    /// matches, `user:` channels (own included) too.
    pub fn may_publish(&self, channel: &ChannelName, _user: &str) -> bool {
        self.publish.iter().any(|p| p.matches(channel.as_str()))
    }
}

/// The `ferry` claim as it appears in a token.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantClaim {
    #[serde(default)]
    subscribe: Vec<Pattern>,
    #[serde(default)]
    publish: Vec<Pattern>,
}

impl<'de> Deserialize<'de> for Grant {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let claim = GrantClaim::deserialize(deserializer)?;
        for (name, list) in [("subscribe", &claim.subscribe), ("publish", &claim.publish)] {
            if list.len() > MAX_PATTERNS {
                return Err(serde::de::Error::custom(format_args!(
                    "the {name} grant has {} patterns; the limit is {MAX_PATTERNS}",
                    list.len()
                )));
            }
        }
        Ok(Self::new(claim.subscribe, claim.publish))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chan(name: &str) -> ChannelName {
        ChannelName::parse(name).unwrap()
    }

    fn grant(subscribe: &[&str], publish: &[&str]) -> Grant {
        Grant::parse(subscribe, publish).unwrap()
    }

    #[test]
    fn prefix_patterns_match_by_prefix_only() {
        let news = Pattern::parse("news:*").unwrap();
        assert!(news.is_prefix());
        assert!(news.matches("news:sport"));
        assert!(news.matches("news:"));
        assert!(!news.matches("newsroom"));
        assert!(!news.matches("news"));
        let room = Pattern::parse("chat:room-*").unwrap();
        assert!(room.matches("chat:room-1"));
        assert!(!room.matches("chat:lobby"));
        let all = Pattern::parse("*").unwrap();
        assert!(all.matches("anything"));
        assert!(all.matches("user:bob"));
    }

    #[test]
    fn exact_patterns_match_exactly() {
        let p = Pattern::parse("chat:lobby").unwrap();
        assert!(!p.is_prefix());
        assert!(p.matches("chat:lobby"));
        assert!(!p.matches("chat:lobby2"));
        assert!(!p.matches("chat:lobb"));
        assert_eq!(p.to_string(), "chat:lobby");
    }

    #[test]
    fn invalid_patterns_are_refused() {
        assert_eq!(Pattern::parse(""), Err(PatternError::Empty));
        assert!(matches!(
            Pattern::parse("*news"),
            Err(PatternError::MisplacedStar { .. })
        ));
        assert!(matches!(
            Pattern::parse("news:*:x"),
            Err(PatternError::MisplacedStar { .. })
        ));
        assert!(matches!(
            Pattern::parse("**"),
            Err(PatternError::MisplacedStar { .. })
        ));
        assert!(matches!(
            Pattern::parse("a b*"),
            Err(PatternError::ForbiddenByte { byte: ' ', .. })
        ));
        assert!(matches!(
            Pattern::parse("caf\u{e9}"),
            Err(PatternError::ForbiddenByte { .. })
        ));
        let long = "a".repeat(DEFAULT_MAX_CHANNEL_LEN + 1);
        assert!(matches!(
            Pattern::parse(&long),
            Err(PatternError::TooLong { .. })
        ));
        assert!(Pattern::parse(&"a".repeat(DEFAULT_MAX_CHANNEL_LEN)).is_ok());
    }

    #[test]
    fn pattern_alphabet_is_the_channel_alphabet() {
        for b in 0..=255u8 {
            if b == b'*' {
                continue;
            }
            let name = [b'a', b];
            let as_channel = std::str::from_utf8(&name)
                .ok()
                .is_some_and(|s| ChannelName::parse(s).is_ok());
            let as_pattern = std::str::from_utf8(&name)
                .ok()
                .is_some_and(|s| Pattern::parse(s).is_ok());
            assert_eq!(as_channel, as_pattern, "byte {b:#04x}");
        }
    }

    #[test]
    fn own_user_channel_may_be_subscribed_without_a_claim() {
        let g = Grant::default();
        assert!(g.may_subscribe(&chan("user:alice"), "alice"));
        assert!(!g.may_subscribe(&chan("user:bob"), "alice"));
        assert!(!g.may_subscribe(&chan("user:alice2"), "alice"));
        assert!(!g.may_subscribe(&chan("user:"), ""));
        assert!(!g.may_subscribe(&chan("chat:lobby"), "alice"));
    }

    #[test]
    fn publishing_on_user_channels_needs_a_claim() {
        let none = Grant::default();
        assert!(!none.may_publish(&chan("user:alice"), "alice"));
        assert!(!none.may_publish(&chan("user:bob"), "alice"));

        let own = grant(&[], &["user:alice"]);
        assert!(own.may_publish(&chan("user:alice"), "alice"));
        assert!(!own.may_publish(&chan("user:bob"), "alice"));

        let any = grant(&[], &["user:*"]);
        assert!(any.may_publish(&chan("user:bob"), "alice"));
        assert!(any.may_publish(&chan("user:alice"), "alice"));
    }

    #[test]
    fn grant_patterns_decide_subscribe_and_publish_separately() {
        let g = grant(&["news:*", "chat:lobby"], &["chat:*"]);
        assert!(g.may_subscribe(&chan("news:sport"), "alice"));
        assert!(!g.may_subscribe(&chan("newsroom"), "alice"));
        assert!(g.may_subscribe(&chan("chat:lobby"), "alice"));
        assert!(!g.may_subscribe(&chan("chat:other"), "alice"));
        assert!(g.may_publish(&chan("chat:other"), "alice"));
        assert!(!g.may_publish(&chan("news:sport"), "alice"));
        let all = grant(&["*"], &["*"]);
        assert!(all.may_subscribe(&chan("user:bob"), "alice"));
        assert!(all.may_publish(&chan("anything"), "alice"));
    }

    #[test]
    fn grant_claim_parses_and_validates() {
        let g: Grant =
            serde_json::from_str(r#"{"subscribe":["news:*"],"publish":["chat:1"]}"#).unwrap();
        assert_eq!(g, grant(&["news:*"], &["chat:1"]));
        let empty: Grant = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, Grant::default());
        let bad = serde_json::from_str::<Grant>(r#"{"subscribe":["*news"]}"#).unwrap_err();
        assert!(bad.to_string().contains("*news"), "{bad}");
        assert!(serde_json::from_str::<Grant>(r#"{"subscibe":["a"]}"#).is_err());
        assert!(serde_json::from_str::<Grant>(r#"{"subscribe":"a"}"#).is_err());
        let many = format!(
            r#"{{"publish":[{}]}}"#,
            vec!["\"a\""; MAX_PATTERNS + 1].join(",")
        );
        assert!(serde_json::from_str::<Grant>(&many).is_err());
    }
}
