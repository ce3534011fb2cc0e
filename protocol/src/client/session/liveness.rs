//! Heartbeats (PROTOCOL.md §10), with the time passed in: the client sends
//! a frame at least every interval (PING when it has nothing else), probes
//! with PING when it has heard nothing for an interval, and declares the
//! server silent after 2.5 intervals without a frame.

use std::time::{Duration, Instant};

/// Liveness of one active connection.
#[derive(Debug)]
pub(super) struct Liveness {
    /// `None`: heartbeats are disabled.
    interval: Option<Duration>,
    last_sent: Instant,
    last_received: Instant,
    /// A PING went out since the last frame was received.
    probe_sent: bool,
}

/// What [`Liveness::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// Nothing to do.
    Fine,
    /// Send a PING now.
    Ping,
    /// Nothing arrived for this long: the transport is dead.
    Silent(Duration),
}

fn silence_limit(interval: Duration) -> Duration {
    interval * 5 / 2
}

impl Liveness {
    /// A connection welcomed at `now`.
    pub fn new(interval: Option<Duration>, now: Instant) -> Self {
        Self {
            interval,
            last_sent: now,
            last_received: now,
            probe_sent: false,
        }
    }

    /// A frame arrived.
    pub fn received(&mut self, now: Instant) {
        self.last_received = now;
        self.probe_sent = false;
    }

    /// A frame was written.
    pub fn sent(&mut self, now: Instant) {
        self.last_sent = now;
    }

    /// Reading resumes after a pause: silence is counted from now.
    pub fn restart_silence(&mut self, now: Instant) {
        self.last_received = now;
    }

    /// When [`Self::check`] has something to do; `reading` false leaves
    /// silence out (the silence is ours).
    pub fn deadline(&self, reading: bool) -> Option<Instant> {
        let interval = self.interval?;
        let mut at = self.last_sent + interval;
        if !self.probe_sent {
            at = at.min(self.last_received + interval);
        }
        if reading {
            at = at.min(self.last_received + silence_limit(interval));
        }
        Some(at)
    }

    /// What is due at `now`. A [`Check::Ping`] counts as the probe.
    pub fn check(&mut self, now: Instant, reading: bool) -> Check {
        let Some(interval) = self.interval else {
            return Check::Fine;
        };
        let silent_for = now.saturating_duration_since(self.last_received);
        if reading && silent_for >= silence_limit(interval) {
            return Check::Silent(silent_for);
        }
        let send_idle = now.saturating_duration_since(self.last_sent) >= interval;
        if send_idle || (!self.probe_sent && silent_for >= interval) {
            self.probe_sent = true;
            return Check::Ping;
        }
        Check::Fine
    }
}
