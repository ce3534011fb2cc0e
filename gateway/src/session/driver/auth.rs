//! The driver's side of authentication: the grant checks on SUBSCRIBE and
//! PUBLISH, TOKEN frames, and the refresh timer. The rules themselves live
//! in [`Credentials`] (sans-IO); this file only applies them to the
//! connection.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;
use std::time::Instant;

use ferry_protocol::{ChannelName, ErrorCode, Frame};
use tokio::time::Sleep;

use super::{Connection, End};
use crate::session::credentials::{AuthDue, Credentials, RefreshPolicy};
use crate::session::handshake;
use crate::settings::Settings;

/// A connection's credentials and the one timer of its refresh timeline.
pub(super) struct ConnAuth {
    credentials: Credentials,
    /// Armed at [`Credentials::next_timeout`]. In a `RefCell` so that the
    /// select loop polls it through `&self` while the TOKEN handler, which
    /// has `&mut self`, can move it earlier.
    timer: RefCell<Pin<Box<Sleep>>>,
}

impl ConnAuth {
    pub(super) fn new(credentials: Credentials, settings: &Settings) -> Self {
        let at = credentials.next_timeout(policy(settings));
        Self {
            credentials,
            timer: RefCell::new(Box::pin(tokio::time::sleep_until(at.into()))),
        }
    }

    fn rearm(&mut self, settings: &Settings) {
        let at = self.credentials.next_timeout(policy(settings));
        self.timer.get_mut().as_mut().reset(at.into());
    }
}

fn policy(settings: &Settings) -> RefreshPolicy {
    RefreshPolicy {
        before: settings.refresh_before,
        grace: settings.refresh_grace,
    }
}

impl Connection<'_> {
    /// Resolves when the refresh timer fires; never without credentials
    /// (the select branch is disabled then anyway).
    pub(super) fn auth_timer(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(move |cx| match &self.auth {
            Some(auth) => auth.timer.borrow_mut().as_mut().poll(cx),
            None => Poll::Pending,
        })
    }

    /// The refresh timer fired: ask for a fresh token once, or give up on
    /// it after the grace. The settings are read now, so a reloaded
    /// `refresh_before`/`refresh_grace` applies to open connections.
    pub(super) fn on_auth_timer(&mut self) -> Result<(), End> {
        let settings = self.worker.settings();
        let Some(auth) = &mut self.auth else {
            return Ok(());
        };
        match auth
            .credentials
            .handle_timeout(Instant::now(), policy(&settings))
        {
            Some(AuthDue::RefreshTimedOut) => {
                return Err(End::Unauthenticated(
                    ErrorCode::TokenRefreshTimeout,
                    "no fresh TOKEN in time; get a fresh token and resume".into(),
                ));
            }
            Some(AuthDue::Refresh { deadline }) => {
                let deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
                self.with_session(|s| {
                    s.push_control(Frame::RefreshToken { deadline_ms });
                    Ok(())
                })?;
            }
            None => {}
        }
        if let Some(auth) = &mut self.auth {
            auth.rearm(&settings);
        }
        Ok(())
    }

    /// TOKEN: a fresh token of the same user replaces the grant and the
    /// expiry; anything else ends the connection (the session stays).
    /// Without credentials (auth off) the frame is ignored.
    pub(super) fn on_token(&mut self, token: &str) -> Result<(), End> {
        if self.auth.is_none() {
            return Ok(());
        }
        let now = Instant::now();
        let now_unix = handshake::unix_now();
        let Some(verified) = handshake::verify_fresh_token(self.worker, token, self.peer, now_unix)
        else {
            // Authentication was turned off by a reload: keep what the
            // connection was granted.
            return Ok(());
        };
        let identity = verified.map_err(|e| End::Unauthenticated(e.code(), e.to_string()))?;
        let settings = self.worker.settings();
        let Some(auth) = &mut self.auth else {
            return Ok(());
        };
        if let Err(other) = auth.credentials.replace(identity, now_unix, now) {
            return Err(End::Unauthenticated(
                ErrorCode::IdentityMismatch,
                format!(
                    "the fresh token is for {:?}, this connection for {:?}",
                    other.presented,
                    auth.credentials.user()
                ),
            ));
        }
        // The new timeline may start earlier than the armed timer.
        auth.rearm(&settings);
        Ok(())
    }

    /// Whether the grant allows subscribing (always without auth).
    pub(super) fn may_subscribe(&self, channel: &ChannelName) -> bool {
        self.auth
            .as_ref()
            .is_none_or(|a| a.credentials.may_subscribe(channel))
    }

    /// Whether the grant allows publishing (always without auth).
    pub(super) fn may_publish(&self, channel: &ChannelName) -> bool {
        self.auth
            .as_ref()
            .is_none_or(|a| a.credentials.may_publish(channel))
    }

    /// Answers a SUBSCRIBE outside the grant: ERROR 405, nothing else.
    pub(super) fn refuse_subscribe(
        &self,
        request_id: u64,
        channel: &ChannelName,
    ) -> Result<(), End> {
        crate::metrics::count_error(ErrorCode::ForbiddenSubscribe);
        self.with_session(|s| {
            s.push_control(Frame::error(
                ErrorCode::ForbiddenSubscribe,
                request_id,
                format!("the token does not allow subscribing to {channel}"),
            ));
            Ok(())
        })
    }

    /// Answers a PUBLISH outside the grant: ERROR 406, and the publish
    /// counts as processed (client_seq consumed): the ERROR is queued
    /// before the PUBACK that covers it.
    pub(super) fn refuse_publish(&self, client_seq: u64, channel: &ChannelName) -> Result<(), End> {
        crate::metrics::count_error(ErrorCode::ForbiddenPublish);
        self.with_session(|s| {
            s.push_control(Frame::error(
                ErrorCode::ForbiddenPublish,
                client_seq,
                format!("the token does not allow publishing on {channel}"),
            ));
            s.puback_due();
            Ok(())
        })
    }
}
