//! What the load test learns from each message, and the checks that make
//! a run fail.
//!
//! - Latency goes into HdrHistograms in µs, measured from the message's
//!   *intended* send time ([`latency_us`]), which is what makes open-loop
//!   pacing free of coordinated omission (see [`crate::rate`]).
//! - [`StreamCheck`] follows the payload sequence numbers of one sender as
//!   seen by one receiver: gaps, duplicates, late (reordered) arrivals, and
//!   at the end, sent but never delivered = lost.
//! - [`SessionCheck`] follows what the Ferry protocol promises on top: the
//!   session's MESSAGE seq is 1, 2, 3, ... and each channel's offsets only
//!   go up by one.
//! - [`Recorder`] collects all of it from many tasks at once.
//! - [`Timeline`] keeps the run second by second for the HTML report.
//!
//! Everything here is pure bookkeeping: no clock, no I/O.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use serde::Serialize;

mod check;
pub mod timeline;

pub use check::{Anomaly, DeliveryTotals, SessionCheck, StreamCheck};
pub use timeline::{EventKind, Timeline};

/// Largest latency the histograms hold, in µs (one hour); larger values
/// are recorded as this.
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Histogram shards: tasks record into `index % SHARDS` to spread locking.
const SHARDS: usize = 16;
/// Distinct error reasons kept; further ones are counted under "other".
const MAX_ERROR_REASONS: usize = 64;

/// Latency of a message received at `received_ns` that was due to be sent
/// at `intended_ns`, in µs (at least 1).
pub fn latency_us(intended_ns: u64, received_ns: u64) -> u64 {
    (received_ns.saturating_sub(intended_ns) / 1_000).max(1)
}

/// A latency histogram in µs, 3 significant digits.
#[derive(Debug, Clone)]
pub struct LatencyHist(Histogram<u64>);

impl Default for LatencyHist {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHist {
    /// An empty histogram.
    pub fn new() -> Self {
        // The bounds are constants that HdrHistogram accepts; should that
        // ever change, fall back to its auto-resizing form.
        let h = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
            .or_else(|_| Histogram::new(3))
            .unwrap_or_else(|_| unreachable!("3 significant digits is valid"));
        Self(h)
    }

    /// Records one latency.
    pub fn record(&mut self, us: u64) {
        self.0.saturating_record(us.clamp(1, MAX_LATENCY_US));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &LatencyHist) {
        // Same bounds on both sides, so this cannot fail; if it did, the
        // samples would be missing from the report, not wrong.
        let _ = self.0.add(&other.0);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The latency at each quantile step, for a percentile plot:
    /// `(quantile, µs)` pairs with quantiles rising towards 1, ending at
    /// the largest sample. Empty without samples.
    pub fn quantile_curve(&self) -> Vec<(f64, u64)> {
        if self.0.is_empty() {
            return Vec::new();
        }
        let mut curve: Vec<(f64, u64)> = self
            .0
            .iter_quantiles(4)
            .map(|v| (v.quantile_iterated_to(), v.value_iterated_to()))
            .collect();
        curve.push((1.0, self.0.max()));
        curve
    }

    /// The percentiles, or `None` without samples.
    pub fn percentiles(&self) -> Option<Percentiles> {
        if self.0.is_empty() {
            return None;
        }
        let q = |q| self.0.value_at_quantile(q);
        Some(Percentiles {
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            p999: q(0.999),
            max: self.0.max(),
        })
    }
}

/// Latency percentiles in µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
}

/// A session's latency samples on their way to the shared histograms.
///
/// A histogram per session would cost ~180 KB each (and zeroing it, ~90 µs
/// at session start): 1.8 GB for 10,000 sessions. Samples are batched here
/// and recorded under one lock instead.
#[derive(Debug)]
pub struct LatencyBuf {
    shard: usize,
    /// `(µs, received at ns)`.
    samples: Vec<(u64, u64)>,
}

impl LatencyBuf {
    const BATCH: usize = 128;

    /// A buffer for task `shard`.
    pub fn new(shard: usize) -> Self {
        Self {
            shard,
            samples: Vec::new(),
        }
    }

    /// Adds a sample of a message received at `received_ns` (the run's
    /// clock); records the batch into `rec` when full.
    pub fn push(&mut self, rec: &Recorder, us: u64, received_ns: u64) {
        self.samples.push((us, received_ns));
        if self.samples.len() >= Self::BATCH {
            self.flush(rec);
        }
    }

    /// Records what is buffered.
    pub fn flush(&mut self, rec: &Recorder) {
        rec.latency_samples(self.shard, &self.samples);
        self.samples.clear();
    }
}

/// Counters and histograms shared by every task of a run.
#[derive(Debug)]
pub struct Recorder {
    /// Sessions the run tried to open.
    pub attempted: AtomicU64,
    /// Sessions that were established.
    pub established: AtomicU64,
    /// Sessions that failed to open.
    pub failed: AtomicU64,
    /// Messages handed to the transport (live, for progress).
    pub sent: AtomicU64,
    /// Messages received (live, for progress; duplicates included).
    pub received: AtomicU64,
    latency: Vec<Mutex<LatencyHist>>,
    send_lag: Vec<Mutex<LatencyHist>>,
    totals: Mutex<DeliveryTotals>,
    errors: Mutex<BTreeMap<String, u64>>,
    /// The run second by second.
    pub timeline: Timeline,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Recorder {
    /// Empty counters.
    pub fn new() -> Self {
        let shards = || {
            (0..SHARDS)
                .map(|_| Mutex::new(LatencyHist::new()))
                .collect()
        };
        Self {
            attempted: AtomicU64::new(0),
            established: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            latency: shards(),
            send_lag: shards(),
            totals: Mutex::new(DeliveryTotals::default()),
            errors: Mutex::new(BTreeMap::new()),
            timeline: Timeline::new(crate::rate::Clock::global()),
        }
    }

    /// Records latency samples `(µs, received at ns)` from task `shard`.
    pub fn latency_samples(&self, shard: usize, samples: &[(u64, u64)]) {
        {
            let mut h = lock(&self.latency[shard % SHARDS]);
            for &(us, _) in samples {
                h.record(us);
            }
        }
        self.timeline.latency(samples);
    }

    /// Records how late (µs) a message was handed to the transport after
    /// its intended time: the generator's own delay.
    pub fn send_lag(&self, shard: usize, us: u64) {
        lock(&self.send_lag[shard % SHARDS]).record(us);
    }

    /// Adds one stream's verdict.
    pub fn delivery(&self, totals: &DeliveryTotals) {
        lock(&self.totals).add(totals);
    }

    /// Counts one error under `reason` (a short, stable phrase).
    pub fn error(&self, reason: impl Into<String>) {
        self.errors_n(reason, 1);
    }

    /// Counts `n` errors under `reason`.
    pub fn errors_n(&self, reason: impl Into<String>, n: u64) {
        if n == 0 {
            return;
        }
        self.timeline.event(EventKind::Error, n);
        let mut reason: String = reason.into();
        let mut errors = lock(&self.errors);
        if !errors.contains_key(&reason) && errors.len() >= MAX_ERROR_REASONS {
            reason = "other".into();
        }
        *errors.entry(reason).or_insert(0) += n;
    }

    /// Counts a protocol anomaly.
    pub fn anomaly(&self, a: Anomaly) {
        self.error(a.reason());
    }

    /// All latencies merged.
    pub fn latency_hist(&self) -> LatencyHist {
        merged(&self.latency)
    }

    /// All send lags merged.
    pub fn send_lag_hist(&self) -> LatencyHist {
        merged(&self.send_lag)
    }

    /// Delivery totals so far.
    pub fn totals(&self) -> DeliveryTotals {
        *lock(&self.totals)
    }

    /// Errors so far, by reason.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        lock(&self.errors).clone()
    }

    /// Total error count.
    pub fn error_count(&self) -> u64 {
        lock(&self.errors).values().sum()
    }

    /// Reads a live counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Adds to a live counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

fn merged(shards: &[Mutex<LatencyHist>]) -> LatencyHist {
    let mut all = LatencyHist::new();
    for s in shards {
        all.merge(&lock(s));
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate::Pacer;

    #[test]
    fn histogram_percentiles() {
        let mut h = LatencyHist::new();
        assert_eq!(h.percentiles(), None);
        for us in 1..=1000 {
            h.record(us);
        }
        let p = h.percentiles().unwrap();
        assert_eq!(p.p50, 500);
        assert_eq!(p.p90, 900);
        assert_eq!(p.p99, 990);
        assert_eq!(p.p999, 999);
        assert_eq!(p.max, 1000);
        h.record(0);
        h.record(u64::MAX);
        assert_eq!(
            h.count(),
            1002,
            "out-of-range samples are clamped, not dropped"
        );
        let mut other = LatencyHist::new();
        other.record(7);
        other.merge(&h);
        assert_eq!(other.count(), 1003);
    }

    /// A server that stalls for 100 ms while a client sends every 1 ms.
    /// Measured from the intended send time (open loop), the stall shows in
    /// the ~100 messages it delayed; measured from when a closed-loop
    /// client managed to send, it is one slow sample among fast ones.
    #[test]
    fn latency_from_intended_time_corrects_coordinated_omission() {
        const MS: u64 = 1_000_000;
        let service = |sent_at: u64| {
            if (100 * MS..200 * MS).contains(&sent_at) {
                200 * MS + 50_000 // answered when the stall ends
            } else {
                sent_at + 50_000 // 50 µs otherwise
            }
        };

        // Open loop: 1000 messages over 1 s, latency from intended time.
        let mut open = LatencyHist::new();
        let mut pacer = Pacer::new(1000.0, 0, 1000 * MS).unwrap();
        while let Some(intended) = pacer.take_due(u64::MAX) {
            open.record(latency_us(intended, service(intended)));
        }

        // Closed loop: one request at a time, latency from actual send.
        let mut closed = LatencyHist::new();
        let mut now = 0;
        while now < 1000 * MS {
            let reply = service(now);
            closed.record(latency_us(now, reply));
            now = reply.max(now + MS);
        }

        let (o, c) = (open.percentiles().unwrap(), closed.percentiles().unwrap());
        assert_eq!(o.max, c.max, "both see the worst case");
        assert!(o.p99 >= 50_000, "open loop sees the stall at p99: {o:?}");
        assert!(c.p99 <= 100, "closed loop hides it below p99: {c:?}");
    }

    #[test]
    fn recorder_merges_shards_and_caps_reasons() {
        let r = Recorder::new();
        for i in 0..100 {
            let mut buf = LatencyBuf::new(i);
            for us in 0..(LatencyBuf::BATCH as u64 + 1) {
                buf.push(&r, 10 + us, 0);
            }
            assert_eq!(
                r.latency_hist().count(),
                (i as u64 + 1) * 128 + i as u64,
                "flushed when full"
            );
            buf.flush(&r);
        }
        assert_eq!(r.latency_hist().count(), 100 * 129);
        for i in 0..(MAX_ERROR_REASONS + 5) {
            r.error(format!("reason {i}"));
        }
        r.errors_n("reason 0", 2);
        let e = r.errors();
        assert_eq!(e.len(), MAX_ERROR_REASONS + 1);
        assert_eq!(e.get("other"), Some(&5));
        assert_eq!(e.get("reason 0"), Some(&3));
        assert_eq!(r.error_count(), (MAX_ERROR_REASONS + 5 + 2) as u64);
        r.delivery(&DeliveryTotals {
            delivered: 3,
            lost: 1,
            duplicated: 0,
            reordered: 0,
        });
        assert_eq!(r.totals().lost, 1);
    }
}
