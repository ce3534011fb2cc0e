//! A connection's credentials: who the token says the client is, what it
//! may do, and when the token must be replaced (PROTOCOL.md §12).
//!
//! Sans-IO like the session state: the driver passes the current time in
//! and arms one timer at [`Credentials::next_timeout`].
//!
//! ```text
//!   verified ──(exp − refresh_before)──► REFRESH_TOKEN{deadline} sent
//!      ▲                                    │
//!      └──────── TOKEN, same user ──────────┤
//!                                           └─(exp + refresh_grace)──► 409, close
//! ```
//!
//! The token's `exp` is wall-clock (Unix seconds); it is turned into a
//! monotonic [`Instant`] once, when the token is verified, so that the
//! timeline does not move if the wall clock is stepped later. An `exp` that
//! far out (up to `u64::MAX` seconds, which a validly signed token may
//! carry) is clamped to [`MAX_TOKEN_LIFETIME`] from now: [`Instant`]
//! arithmetic panics on overflow, and a panic here would kill the
//! connection task and leave its session attached to nothing.

use std::time::{Duration, Instant};

use ferry_protocol::ChannelName;

use crate::auth::Identity;

/// The longest a token is taken to live, counted from when it is
/// verified: a later `exp` is treated as this far in the future (about a
/// century; every refresh timer lies past any real process lifetime).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// When to ask for a fresh token and how long to wait for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// REFRESH_TOKEN goes out this long before `exp`.
    pub before: Duration,
    /// TOKEN is still accepted this long after `exp`.
    pub grace: Duration,
}

/// What a timeout asks of the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthDue {
    /// Send REFRESH_TOKEN with this much time left to answer.
    Refresh {
        /// Until the connection is closed with 409.
        deadline: Duration,
    },
    /// No fresh token in time: close with 409 (the session stays).
    RefreshTimedOut,
}

/// A fresh token names another user than the connection's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherUser {
    /// The user of the fresh token.
    pub presented: String,
}

/// The verified identity of one connection and its refresh timeline.
#[derive(Debug)]
pub struct Credentials {
    identity: Identity,
    /// `exp` of the current token, on the monotonic clock.
    expires: Instant,
    /// Whether REFRESH_TOKEN went out for the current token (at most once).
    requested: bool,
}

impl Credentials {
    /// The credentials of a token verified at `now` (Unix time
    /// `now_unix`).
    pub fn new(identity: Identity, now_unix: Duration, now: Instant) -> Self {
        Self {
            expires: monotonic_expiry(&identity, now_unix, now),
            identity,
            requested: false,
        }
    }

    /// The user (`sub`).
    pub fn user(&self) -> &str {
        &self.identity.user
    }

    /// The current identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Whether the grant allows subscribing to `channel`.
    pub fn may_subscribe(&self, channel: &ChannelName) -> bool {
        self.identity
            .grant
            .may_subscribe(channel, &self.identity.user)
    }

    /// Whether the grant allows publishing on `channel`.
    pub fn may_publish(&self, channel: &ChannelName) -> bool {
        self.identity
            .grant
            .may_publish(channel, &self.identity.user)
    }

    /// When [`Self::handle_timeout`] has something to do.
    pub fn next_timeout(&self, policy: RefreshPolicy) -> Instant {
        if self.requested {
            self.deadline(policy)
        } else {
            // Near the monotonic clock's origin the subtraction may not
            // exist; `expires` is then late but still inside the grace.
            self.expires
                .checked_sub(policy.before)
                .unwrap_or(self.expires)
        }
    }

    /// The timer fired (or is checked) at `now`. `None`: nothing due yet,
    /// re-arm at [`Self::next_timeout`].
    pub fn handle_timeout(&mut self, now: Instant, policy: RefreshPolicy) -> Option<AuthDue> {
        let deadline = self.deadline(policy);
        if !self.requested {
            // `now + before` may not exist (a huge `before`): then the
            // refresh is due.
            if now
                .checked_add(policy.before)
                .is_some_and(|ask_after| ask_after < self.expires)
            {
                return None;
            }
            self.requested = true;
            return Some(AuthDue::Refresh {
                deadline: deadline.saturating_duration_since(now),
            });
        }
        (now >= deadline).then_some(AuthDue::RefreshTimedOut)
    }

    /// `exp + grace`; the latest representable instant when that does not
    /// exist (then the grace is as good as infinite anyway).
    fn deadline(&self, policy: RefreshPolicy) -> Instant {
        self.expires
            .checked_add(policy.grace)
            .unwrap_or(self.expires)
    }

    /// A fresh token, verified at `now`: the same user gets the new grant
    /// and expiry (and a new refresh timeline); another user is refused
    /// and nothing changes.
    pub fn replace(
        &mut self,
        identity: Identity,
        now_unix: Duration,
        now: Instant,
    ) -> Result<(), OtherUser> {
        if identity.user != self.identity.user {
            return Err(OtherUser {
                presented: identity.user,
            });
        }
        *self = Self::new(identity, now_unix, now);
        Ok(())
    }
}

/// `exp` as an instant: `now` plus the time left until `exp`, at most
/// [`MAX_TOKEN_LIFETIME`].
fn monotonic_expiry(identity: &Identity, now_unix: Duration, now: Instant) -> Instant {
    let left = Duration::from_secs(identity.expires_at)
        .saturating_sub(now_unix)
        .min(MAX_TOKEN_LIFETIME);
    // A century ahead exists on every platform we run on; should it not,
    // `now` (refresh at once) is the safe side.
    now.checked_add(left).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Grant;

    const NOW_UNIX: u64 = 1_700_000_000;
    const POLICY: RefreshPolicy = RefreshPolicy {
        before: Duration::from_secs(60),
        grace: Duration::from_secs(30),
    };

    fn identity(user: &str, ttl: u64, subscribe: &[&str], publish: &[&str]) -> Identity {
        Identity {
            user: user.into(),
            expires_at: NOW_UNIX + ttl,
            grant: Grant::parse(subscribe, publish).unwrap(),
        }
    }

    fn unix(t: u64) -> Duration {
        Duration::from_secs(t)
    }

    fn chan(name: &str) -> ChannelName {
        ChannelName::parse(name).unwrap()
    }

    #[test]
    fn refresh_is_asked_once_before_expiry_then_times_out_after_the_grace() {
        let t0 = Instant::now();
        let mut c = Credentials::new(identity("alice", 600, &[], &[]), unix(NOW_UNIX), t0);
        let ask_at = t0 + Duration::from_secs(540);
        assert_eq!(c.next_timeout(POLICY), ask_at);
        assert_eq!(
            c.handle_timeout(ask_at - Duration::from_millis(1), POLICY),
            None
        );
        assert_eq!(
            c.handle_timeout(ask_at, POLICY),
            Some(AuthDue::Refresh {
                deadline: Duration::from_secs(90)
            })
        );
        let deadline = t0 + Duration::from_secs(630);
        assert_eq!(c.next_timeout(POLICY), deadline);
        // Asked once: a timer firing early asks nothing more.
        assert_eq!(
            c.handle_timeout(ask_at + Duration::from_secs(1), POLICY),
            None
        );
        assert_eq!(
            c.handle_timeout(deadline, POLICY),
            Some(AuthDue::RefreshTimedOut)
        );
    }

    #[test]
    fn a_token_shorter_than_the_refresh_window_is_refreshed_at_once() {
        let t0 = Instant::now();
        let mut c = Credentials::new(identity("alice", 10, &[], &[]), unix(NOW_UNIX), t0);
        assert!(c.next_timeout(POLICY) <= t0);
        assert_eq!(
            c.handle_timeout(t0, POLICY),
            Some(AuthDue::Refresh {
                deadline: Duration::from_secs(40)
            })
        );
    }

    #[test]
    fn the_wall_clock_fraction_counts() {
        let t0 = Instant::now();
        let now_unix = unix(NOW_UNIX) + Duration::from_millis(400);
        let c = Credentials::new(identity("alice", 100, &[], &[]), now_unix, t0);
        let policy = RefreshPolicy {
            before: Duration::ZERO,
            grace: Duration::ZERO,
        };
        assert_eq!(c.next_timeout(policy), t0 + Duration::from_millis(99_600));
    }

    #[test]
    fn a_fresh_token_of_the_same_user_restarts_the_timeline_and_the_grant() {
        let t0 = Instant::now();
        let mut c = Credentials::new(identity("alice", 100, &["chat:*"], &[]), unix(NOW_UNIX), t0);
        assert!(matches!(
            c.handle_timeout(t0 + Duration::from_secs(50), POLICY),
            Some(AuthDue::Refresh { .. })
        ));
        let later = t0 + Duration::from_secs(60);
        c.replace(
            identity("alice", 3600, &["news:*"], &["news:*"]),
            unix(NOW_UNIX + 60),
            later,
        )
        .unwrap();
        assert_eq!(c.next_timeout(POLICY), t0 + Duration::from_secs(3540));
        assert!(!c.may_subscribe(&chan("chat:1")));
        assert!(c.may_subscribe(&chan("news:1")) && c.may_publish(&chan("news:1")));
        assert_eq!(c.handle_timeout(later, POLICY), None);
    }

    #[test]
    fn a_fresh_token_of_another_user_changes_nothing() {
        let t0 = Instant::now();
        let mut c = Credentials::new(identity("alice", 100, &[], &[]), unix(NOW_UNIX), t0);
        let before = c.next_timeout(POLICY);
        let err = c
            .replace(
                identity("mallory", 3600, &["*"], &["*"]),
                unix(NOW_UNIX),
                t0,
            )
            .unwrap_err();
        assert_eq!(err.presented, "mallory");
        assert_eq!(c.user(), "alice");
        assert_eq!(c.next_timeout(POLICY), before);
        assert!(!c.may_publish(&chan("chat:1")));
    }

    #[test]
    fn a_far_future_exp_is_clamped_instead_of_overflowing() {
        let t0 = Instant::now();
        for exp in [1 << 63, u64::MAX, NOW_UNIX + 200 * 365 * 24 * 3600] {
            let far = Identity {
                expires_at: exp,
                ..identity("alice", 0, &[], &[])
            };
            let mut c = Credentials::new(far.clone(), unix(NOW_UNIX), t0);
            let ask_at = t0 + MAX_TOKEN_LIFETIME - POLICY.before;
            assert_eq!(c.next_timeout(POLICY), ask_at, "exp {exp}");
            assert_eq!(c.handle_timeout(t0, POLICY), None);
            assert_eq!(
                c.handle_timeout(ask_at, POLICY),
                Some(AuthDue::Refresh {
                    deadline: POLICY.before + POLICY.grace
                })
            );
            // A huge policy does not overflow either.
            let huge = RefreshPolicy {
                before: Duration::MAX,
                grace: Duration::MAX,
            };
            let _ = c.next_timeout(huge);
            let _ = c.handle_timeout(t0, huge);
            // Nor does a mid-session replacement.
            c.replace(far, unix(NOW_UNIX), t0).unwrap();
            assert_eq!(c.next_timeout(POLICY), ask_at);
        }
    }

    #[test]
    fn the_grant_is_the_tokens() {
        let c = Credentials::new(
            identity("alice", 100, &["chat:*"], &["chat:lobby"]),
            unix(NOW_UNIX),
            Instant::now(),
        );
        assert!(c.may_subscribe(&chan("chat:x")));
        assert!(c.may_subscribe(&chan("user:alice")));
        assert!(!c.may_subscribe(&chan("user:bob")));
        assert!(c.may_publish(&chan("chat:lobby")));
        assert!(!c.may_publish(&chan("chat:x")));
        assert!(!c.may_publish(&chan("user:alice")));
    }
}
