//! The run second by second, for the HTML report's timeline: messages sent
//! and received per second, latency percentiles of what arrived in each
//! second, connection events per second (cuts, disconnects, reconnects,
//! GOAWAY, lost sessions, errors), and named marks (a connect wave, the
//! measured window, an upgrade's start and end read from `--marks`).
//!
//! Nothing here is on the per-message path: sent and received counts are
//! sampled from the live counters once a second ([`Timeline::sample`]),
//! latencies arrive in the batches [`super::LatencyBuf`] already makes, and
//! events are rare. Seconds past [`MAX_SECONDS`] are not kept.

use std::sync::Mutex;
use std::time::SystemTime;

use hdrhistogram::Histogram;

use super::{MAX_LATENCY_US, Percentiles, lock};
use crate::rate::Clock;

/// Longest timeline kept, in seconds (one hour).
pub const MAX_SECONDS: usize = 3600;

/// Distinct marks kept; later ones are dropped.
const MAX_MARKS: usize = 256;

/// A connection event, counted per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The load tester cut a transport on purpose (resume).
    Cut,
    /// A session's transport went away.
    Disconnect,
    /// A session reconnected (and resumed) after a disconnect.
    Reconnect,
    /// The server sent GOAWAY (drain, upgrade).
    GoAway,
    /// A session could not be resumed.
    SessionLost,
    /// Any error counted in the report.
    Error,
}

impl EventKind {
    /// Every kind, in report order.
    pub const ALL: [EventKind; 6] = [
        EventKind::Cut,
        EventKind::Disconnect,
        EventKind::Reconnect,
        EventKind::GoAway,
        EventKind::SessionLost,
        EventKind::Error,
    ];

    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Cut => "cuts",
            EventKind::Disconnect => "disconnects",
            EventKind::Reconnect => "reconnects",
            EventKind::GoAway => "GOAWAY",
            EventKind::SessionLost => "sessions lost",
            EventKind::Error => "errors",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A named moment of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    /// Seconds since the run started (may be negative for a mark read from
    /// a file that predates it).
    pub at_s: f64,
    /// What happened.
    pub label: String,
}

/// One second of the run, as reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecondData {
    /// Second index since the start.
    pub t: u32,
    /// Messages handed to the transport in this second.
    pub sent: u64,
    /// Messages received in this second (duplicates included).
    pub received: u64,
    /// Latency of what arrived in this second.
    pub latency: Option<Percentiles>,
    /// Events, indexed like [`EventKind::ALL`].
    pub events: [u64; EventKind::ALL.len()],
}

/// The whole timeline, as reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimelineData {
    /// Every second from the start to the last one with anything in it.
    pub seconds: Vec<SecondData>,
    /// Marks, in time order.
    pub marks: Vec<Mark>,
}

#[derive(Debug, Default)]
struct Second {
    sent: u64,
    received: u64,
    latency: Option<Histogram<u32>>,
    events: [u64; EventKind::ALL.len()],
}

#[derive(Debug, Default)]
struct Inner {
    seconds: Vec<Second>,
    marks: Vec<Mark>,
    sampled_sent: u64,
    sampled_received: u64,
}

impl Inner {
    fn second(&mut self, t: usize) -> Option<&mut Second> {
        if t >= MAX_SECONDS {
            return None;
        }
        if self.seconds.len() <= t {
            self.seconds.resize_with(t + 1, Second::default);
        }
        self.seconds.get_mut(t)
    }
}

/// Records the run second by second; shared by every task.
#[derive(Debug)]
pub struct Timeline {
    clock: Clock,
    origin_ns: u64,
    origin_unix_s: f64,
    inner: Mutex<Inner>,
}

impl Timeline {
    /// A timeline that starts now.
    pub fn new(clock: Clock) -> Self {
        let origin_unix_s = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Self {
            clock,
            origin_ns: clock.now_ns(),
            origin_unix_s,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn second_of(&self, ns: u64) -> usize {
        usize::try_from(ns.saturating_sub(self.origin_ns) / 1_000_000_000).unwrap_or(usize::MAX)
    }

    fn now_s(&self) -> f64 {
        self.clock.now_ns().saturating_sub(self.origin_ns) as f64 / 1e9
    }

    /// Records latency samples, each `(µs, received at ns)`.
    pub fn latency(&self, samples: &[(u64, u64)]) {
        let mut inner = lock(&self.inner);
        for &(us, received_ns) in samples {
            let t = self.second_of(received_ns);
            let Some(second) = inner.second(t) else {
                continue;
            };
            // 2 significant digits: ~13 KB a second instead of ~180 KB.
            let h = second.latency.get_or_insert_with(|| {
                Histogram::new_with_bounds(1, MAX_LATENCY_US, 2)
                    .or_else(|_| Histogram::new(2))
                    .unwrap_or_else(|_| unreachable!("2 significant digits is valid"))
            });
            h.saturating_record(us.clamp(1, MAX_LATENCY_US));
        }
    }

    /// Counts `n` events of `kind` now.
    pub fn event(&self, kind: EventKind, n: u64) {
        let t = self.second_of(self.clock.now_ns());
        if let Some(second) = lock(&self.inner).second(t) {
            second.events[kind.index()] += n;
        }
    }

    /// Marks now with `label`.
    pub fn mark(&self, label: impl Into<String>) {
        let at_s = self.now_s();
        self.push_mark(at_s, label.into());
    }

    /// Marks the wall-clock time `unix_s` (seconds since the epoch) with
    /// `label`: events the load tester does not see itself (`--marks`).
    pub fn mark_unix(&self, unix_s: f64, label: impl Into<String>) {
        self.push_mark(unix_s - self.origin_unix_s, label.into());
    }

    fn push_mark(&self, at_s: f64, label: String) {
        let mut inner = lock(&self.inner);
        if inner.marks.len() < MAX_MARKS {
            inner.marks.push(Mark { at_s, label });
        }
    }

    /// Takes the live totals `sent` and `received`: what they grew by since
    /// the last call is counted in the current second. Called once a
    /// second, and once at the end.
    pub fn sample(&self, sent: u64, received: u64) {
        self.sample_at(self.clock.now_ns(), sent, received);
    }

    fn sample_at(&self, now_ns: u64, sent: u64, received: u64) {
        // A tick lands a hair after the second it closes: count it there.
        let t = self.second_of(now_ns.saturating_sub(50_000_000));
        let mut inner = lock(&self.inner);
        let (ds, dr) = (
            sent.saturating_sub(inner.sampled_sent),
            received.saturating_sub(inner.sampled_received),
        );
        inner.sampled_sent = inner.sampled_sent.max(sent);
        inner.sampled_received = inner.sampled_received.max(received);
        if let Some(second) = inner.second(t) {
            second.sent += ds;
            second.received += dr;
        }
    }

    /// The instant (on the run's clock) of the start of second `t`.
    pub fn second_start_ns(&self, t: u64) -> u64 {
        self.origin_ns + t * 1_000_000_000
    }

    /// What was recorded, up to the last second with anything in it.
    pub fn data(&self) -> TimelineData {
        let inner = lock(&self.inner);
        let mut seconds: Vec<SecondData> = inner
            .seconds
            .iter()
            .enumerate()
            .map(|(t, s)| SecondData {
                t: u32::try_from(t).unwrap_or(u32::MAX),
                sent: s.sent,
                received: s.received,
                latency: s.latency.as_ref().filter(|h| !h.is_empty()).map(|h| {
                    let q = |q| h.value_at_quantile(q);
                    Percentiles {
                        p50: q(0.50),
                        p90: q(0.90),
                        p99: q(0.99),
                        p999: q(0.999),
                        max: h.max(),
                    }
                }),
                events: s.events,
            })
            .collect();
        while seconds.last().is_some_and(|s| {
            *s == SecondData {
                t: s.t,
                ..Default::default()
            }
        }) {
            seconds.pop();
        }
        let mut marks = inner.marks.clone();
        marks.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        TimelineData { seconds, marks }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_second() {
        let tl = Timeline::new(Clock::global());
        let o = tl.origin_ns;
        tl.sample_at(o + 1_000_000_000, 10, 8);
        tl.sample_at(o + 2_000_000_000, 25, 20);
        tl.sample_at(o + 2_500_000_000, 30, 30);
        tl.latency(&[
            (100, o + 10),
            (200, o + 20),
            (5_000, o + 1_200_000_000),
            (7, o + (MAX_SECONDS as u64 + 5) * 1_000_000_000),
        ]);
        let d = tl.data();
        assert_eq!(d.seconds.len(), 3, "{d:?}");
        assert_eq!((d.seconds[0].sent, d.seconds[0].received), (10, 8));
        assert_eq!((d.seconds[1].sent, d.seconds[1].received), (15, 12));
        assert_eq!((d.seconds[2].sent, d.seconds[2].received), (5, 10));
        let total: u64 = d.seconds.iter().map(|s| s.sent).sum();
        assert_eq!(total, 30, "every message sent is in exactly one second");
        assert_eq!(d.seconds[0].latency.map(|p| p.max), Some(200));
        let p50 = d.seconds[1].latency.map_or(0, |p| p.p50);
        assert!(
            (5_000..=5_050).contains(&p50),
            "2 significant digits: {p50}"
        );
        assert_eq!(d.seconds[2].latency, None);
    }

    #[test]
    fn events_and_marks() {
        let tl = Timeline::new(Clock::global());
        tl.event(EventKind::GoAway, 3);
        tl.event(EventKind::Reconnect, 1);
        tl.mark("b");
        tl.mark_unix(tl.origin_unix_s - 1.5, "a");
        let d = tl.data();
        assert_eq!(d.seconds[0].events[EventKind::GoAway.index()], 3);
        assert_eq!(d.seconds[0].events[EventKind::Reconnect.index()], 1);
        assert_eq!(d.marks.len(), 2);
        assert_eq!(d.marks[0].label, "a", "sorted by time");
        assert!((d.marks[0].at_s + 1.5).abs() < 1e-6);
        assert_eq!(EventKind::ALL[EventKind::Error.index()], EventKind::Error);
    }
}
