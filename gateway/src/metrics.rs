//! Metrics. Names follow Prometheus conventions (`ferry_` prefix, units in
//! names, `_total` counters); labels have low cardinality (never a session
//! or a channel).
//!
//! The per-message path only bumps plain integers in the worker's own
//! [`WorkerCounters`]; once a second the sweeper flushes their deltas to the
//! `metrics` recorder, so no shared atomic is touched per message.

use std::time::Instant;

use ferry_protocol::ErrorCode;

use crate::runtime::mesh::INBOX_CAPACITY;
use crate::runtime::state::DeliveryCounts;
use crate::runtime::worker::Worker;
use crate::session::state::Attachment;

/// Record one latency sample in this many deliveries.
const LATENCY_SAMPLE_EVERY: u64 = 16;

/// Counts an error sent to a client, by code (not per message: errors end
/// or answer one request).
pub fn count_error(code: ErrorCode) {
    metrics::counter!("ferry_errors_total", "code" => code.name()).increment(1);
}

/// Counts a handshake by outcome.
pub fn count_handshake(transport: &'static str, outcome: &'static str) {
    metrics::counter!("ferry_handshakes_total", "transport" => transport, "outcome" => outcome)
        .increment(1);
}

/// Counts a resume attempt by outcome.
pub fn count_resume(outcome: &'static str) {
    metrics::counter!("ferry_resumes_total", "outcome" => outcome).increment(1);
}

/// Counts a handshake sent away because the process is handing over.
pub fn count_handshake_refused_for_upgrade() {
    metrics::counter!("ferry_upgrade_handshakes_sent_away_total").increment(1);
}

/// Records how long a handshake took.
pub fn record_handshake_latency(transport: &'static str, started: Instant) {
    metrics::histogram!("ferry_handshake_duration_seconds", "transport" => transport)
        .record(started.elapsed().as_secs_f64());
}

/// Counts a connection opened or closed.
pub fn count_connection(transport: &'static str, opened: bool) {
    let event = if opened { "opened" } else { "closed" };
    metrics::counter!("ferry_connections_total", "transport" => transport, "event" => event)
        .increment(1);
    let gauge = metrics::gauge!("ferry_connections", "transport" => transport);
    if opened {
        gauge.increment(1.0);
    } else {
        gauge.decrement(1.0);
    }
}

/// A worker's own counters: plain integers, flushed as deltas.
#[derive(Debug, Default)]
pub struct WorkerCounters {
    worker_label: String,
    /// Frames received from clients.
    pub frames_in: u64,
    /// Bytes received from clients.
    pub bytes_in: u64,
    /// MESSAGE frames written to clients.
    pub messages_out: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Publishes accepted from clients.
    pub publishes: u64,
    /// Re-sent publishes dropped as duplicates.
    pub duplicate_publishes: u64,
    /// Messages appended to replay logs.
    pub deliveries: u64,
    /// Sessions cut as slow consumers.
    pub slow_consumers: u64,
    /// Replay logs that overflowed.
    pub replay_overflows: u64,
    /// Detached sessions expired.
    pub sessions_expired: u64,
    /// Detached sessions evicted before their resume window ended, to stay
    /// within `limits.max_sessions` or `limits.memory_budget`.
    pub sessions_evicted: u64,
    /// Idle channels forgotten (TTL or memory budget).
    pub channels_forgotten: u64,
    delivery_samples: u64,
    flushed: [u64; 12],
}

impl WorkerCounters {
    /// Counters for worker `index`.
    pub fn new(index: usize) -> Self {
        Self {
            worker_label: index.to_string(),
            ..Self::default()
        }
    }

    /// Records a fan-out step.
    pub fn record_delivery(&mut self, counts: DeliveryCounts, received_at: Instant) {
        self.deliveries += counts.queued;
        self.slow_consumers += counts.slow_consumers;
        self.replay_overflows += counts.overflows;
        self.delivery_samples += 1;
        if self.delivery_samples.is_multiple_of(LATENCY_SAMPLE_EVERY) {
            metrics::histogram!("ferry_publish_to_delivery_seconds")
                .record(received_at.elapsed().as_secs_f64());
        }
    }

    /// Sends the deltas since the last flush, and the gauges.
    pub fn flush(&mut self, worker: &Worker) {
        let now = [
            self.frames_in,
            self.bytes_in,
            self.messages_out,
            self.bytes_out,
            self.publishes,
            self.duplicate_publishes,
            self.deliveries,
            self.slow_consumers,
            self.replay_overflows,
            self.sessions_expired,
            self.sessions_evicted,
            self.channels_forgotten,
        ];
        let names = [
            "ferry_frames_received_total",
            "ferry_received_bytes_total",
            "ferry_messages_sent_total",
            "ferry_sent_bytes_total",
            "ferry_publishes_total",
            "ferry_duplicate_publishes_total",
            "ferry_deliveries_total",
            "ferry_slow_consumer_disconnects_total",
            "ferry_replay_overflows_total",
            "ferry_sessions_expired_total",
            "ferry_sessions_evicted_total",
            "ferry_channels_forgotten_total",
        ];
        for ((name, value), flushed) in names.iter().zip(now).zip(self.flushed.iter_mut()) {
            let delta = value - *flushed;
            if delta > 0 {
                metrics::counter!(*name).increment(delta);
            }
            *flushed = value;
        }
        let label = self.worker_label.clone();
        let state = worker.state.borrow();
        let attached = state
            .sessions
            .iter()
            .filter(|(_, s)| matches!(s.attachment(), Attachment::Attached { .. }))
            .count();
        let detached = state.sessions.len() - attached;
        metrics::gauge!("ferry_sessions", "state" => "attached", "worker" => label.clone())
            .set(attached as f64);
        metrics::gauge!("ferry_sessions", "state" => "detached", "worker" => label.clone())
            .set(detached as f64);
        metrics::gauge!("ferry_worker_connections", "worker" => label.clone())
            .set(worker.live_connections() as f64);
        metrics::gauge!("ferry_channels", "worker" => label.clone())
            .set(state.sequencer.channel_count() as f64);
        metrics::gauge!("ferry_worker_state_bytes", "worker" => label.clone())
            .set(state.memory() as f64);
        let links = worker.mesh.worker(worker.index);
        for (queue, free) in [
            ("sequencer", links.sequencer.capacity()),
            ("delivery", links.delivery.capacity()),
            ("control", links.control.capacity()),
        ] {
            metrics::gauge!("ferry_worker_queue_depth", "worker" => label.clone(), "queue" => queue)
                .set((INBOX_CAPACITY - free) as f64);
        }
    }
}
