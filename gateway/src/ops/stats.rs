//! `GET /v1/stats`: the figures of the live dashboard as one JSON object.
//!
//! Everything comes from what `/metrics` already shows: the handler
//! renders the Prometheus recorder and reads its own text back, so the
//! dashboard and a scraper always agree and the workers do no extra work
//! (their counters and gauges are flushed once a second as before). Rates
//! come from a sampler on the ops thread that keeps the counter totals of
//! the last few seconds. Memory is the process's (VmRSS from /proc): the
//! workers share one allocator, so memory per worker is not measurable.
//!
//! Readable without the API key, like `/metrics`; it changes nothing.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

use crate::phase::Phase;

/// Samples kept for rates: the rate is over the oldest to the newest, about
/// this many seconds (workers flush once a second, so one second alone
/// would read 0 or twice the rate).
const RATE_SAMPLES: usize = 6;

/// How often the sampler reads the counters.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// One line of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (with `_bucket`/`_sum`/`_count` for histograms).
    pub name: String,
    /// Labels in the order written.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the Prometheus text format (comments and malformed lines are
/// skipped; a trailing timestamp is ignored).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            rest = rest.trim_start_matches([',', ' ']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = rest.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.push((key.trim().to_owned(), value));
            rest = &after[end + 1..];
        }
    }
    let value = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Counter totals that rates are computed from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Frames received from clients (`ferry_frames_received_total`).
    pub frames_received: f64,
    /// Publishes accepted (`ferry_publishes_total`): messages in.
    pub publishes: f64,
    /// MESSAGE frames written (`ferry_messages_sent_total`): messages out.
    pub messages_sent: f64,
    /// Messages queued to sessions (`ferry_deliveries_total`).
    pub deliveries: f64,
    /// Bytes received (`ferry_received_bytes_total`).
    pub received_bytes: f64,
    /// Bytes written (`ferry_sent_bytes_total`).
    pub sent_bytes: f64,
    /// Slow consumers cut (`ferry_slow_consumer_disconnects_total`).
    pub slow_consumer_disconnects: f64,
    /// Replay logs that overflowed (`ferry_replay_overflows_total`).
    pub replay_overflows: f64,
    /// Detached sessions expired (`ferry_sessions_expired_total`).
    pub sessions_expired: f64,
    /// Duplicate publishes dropped (`ferry_duplicate_publishes_total`).
    pub duplicate_publishes: f64,
}

impl Totals {
    fn from_samples(samples: &[Sample]) -> Self {
        let sum = |name: &str| -> f64 {
            samples
                .iter()
                .filter(|s| s.name == name)
                .map(|s| s.value)
                .sum()
        };
        Self {
            frames_received: sum("ferry_frames_received_total"),
            publishes: sum("ferry_publishes_total"),
            messages_sent: sum("ferry_messages_sent_total"),
            deliveries: sum("ferry_deliveries_total"),
            received_bytes: sum("ferry_received_bytes_total"),
            sent_bytes: sum("ferry_sent_bytes_total"),
            slow_consumer_disconnects: sum("ferry_slow_consumer_disconnects_total"),
            replay_overflows: sum("ferry_replay_overflows_total"),
            sessions_expired: sum("ferry_sessions_expired_total"),
            duplicate_publishes: sum("ferry_duplicate_publishes_total"),
        }
    }
}

/// Per-second rates over the sampler's window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rates {
    /// The window the rates are over, seconds (0 until two samples).
    pub window_s: f64,
    /// Publishes accepted per second: messages in.
    pub messages_in_per_s: f64,
    /// MESSAGE frames written per second: messages out.
    pub messages_out_per_s: f64,
    /// Frames received per second.
    pub frames_in_per_s: f64,
    /// Deliveries queued per second.
    pub deliveries_per_s: f64,
    /// Bytes received per second.
    pub bytes_in_per_s: f64,
    /// Bytes written per second.
    pub bytes_out_per_s: f64,
}

/// Keeps the counter totals of the last seconds, for rates.
#[derive(Debug, Default)]
pub struct Sampler {
    samples: Mutex<VecDeque<(Instant, Totals)>>,
}

impl Sampler {
    /// Records the totals read at `at`.
    pub fn record(&self, at: Instant, totals: Totals) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() == RATE_SAMPLES {
            samples.pop_front();
        }
        samples.push_back((at, totals));
    }

    /// Rates from the oldest to the newest sample.
    pub fn rates(&self) -> Rates {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let (Some((t0, a)), Some((t1, b))) = (samples.front(), samples.back()) else {
            return Rates::default();
        };
        let dt = t1.saturating_duration_since(*t0).as_secs_f64();
        if dt <= 0.0 {
            return Rates::default();
        }
        let per_s = |x: f64, y: f64| ((y - x).max(0.0)) / dt;
        Rates {
            window_s: dt,
            messages_in_per_s: per_s(a.publishes, b.publishes),
            messages_out_per_s: per_s(a.messages_sent, b.messages_sent),
            frames_in_per_s: per_s(a.frames_received, b.frames_received),
            deliveries_per_s: per_s(a.deliveries, b.deliveries),
            bytes_in_per_s: per_s(a.received_bytes, b.received_bytes),
            bytes_out_per_s: per_s(a.sent_bytes, b.sent_bytes),
        }
    }
}

/// Reads the counters once a second into `sampler`, forever (a task of
/// the ops runtime).
pub async fn run_sampler(handle: PrometheusHandle, sampler: std::sync::Arc<Sampler>) {
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let totals = Totals::from_samples(&parse(&handle.render()));
        sampler.record(Instant::now(), totals);
    }
}

/// One worker's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WorkerStats {
    /// Worker index.
    pub worker: String,
    /// Sessions with a live connection.
    pub sessions_attached: f64,
    /// Sessions waiting for a resume.
    pub sessions_detached: f64,
    /// Open connections.
    pub connections: f64,
    /// Channels this worker sequences.
    pub channels: f64,
    /// Messages waiting in each inbox queue.
    pub queue_depth: BTreeMap<String, f64>,
}

/// Upgrade progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UpgradeStats {
    /// A handover to a new process is under way (this is the old one).
    pub in_progress: bool,
    /// Sessions shipped to the new process (old side).
    pub sessions_sent: f64,
    /// Sessions received from the old process (new side).
    pub sessions_received: f64,
    /// Upgrades by `side/outcome` (`old/committed`, `new/committed`,
    /// `old/rolled_back`).
    pub upgrades: BTreeMap<String, f64>,
}

/// Memory of the process.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MemoryStats {
    /// Resident set size now (VmRSS), bytes.
    pub process_rss_bytes: Option<u64>,
    /// Peak resident set size (VmHWM), bytes.
    pub process_peak_rss_bytes: Option<u64>,
    /// Why there is no per-worker figure.
    pub per_worker: &'static str,
}

/// The whole `/v1/stats` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// When it was read, ms since the Unix epoch.
    pub at_unix_ms: u64,
    /// Server phase (`running`, `draining`, `handing_over`, ...).
    pub phase: &'static str,
    /// Gateway version.
    pub version: &'static str,
    /// Process id.
    pub pid: u32,
    /// Attached and detached sessions over all workers.
    pub sessions: BTreeMap<String, f64>,
    /// Open connections over all workers.
    pub connections: f64,
    /// Open connections by transport.
    pub connections_by_transport: BTreeMap<String, f64>,
    /// Per worker, by index.
    pub workers: Vec<WorkerStats>,
    /// Counter totals since the start.
    pub totals: Totals,
    /// Per-second rates.
    pub rates: Rates,
    /// Resume attempts by outcome.
    pub resumes: BTreeMap<String, f64>,
    /// Handshakes by `transport/outcome`.
    pub handshakes: BTreeMap<String, f64>,
    /// Errors sent to clients, by code.
    pub errors: BTreeMap<String, f64>,
    /// Configuration reloads by outcome.
    pub reloads: BTreeMap<String, f64>,
    /// Upgrade progress.
    pub upgrade: UpgradeStats,
    /// Memory.
    pub memory: MemoryStats,
}

/// Builds the stats from a parsed `/metrics` page.
pub fn build(samples: &[Sample], rates: Rates, phase: Phase, memory: MemoryStats) -> Stats {
    let mut stats = Stats {
        at_unix_ms: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        phase: phase.name(),
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        totals: Totals::from_samples(samples),
        rates,
        memory,
        ..Stats::default()
    };
    for state in ["attached", "detached"] {
        stats.sessions.insert(state.to_owned(), 0.0);
    }
    let mut workers: BTreeMap<u64, WorkerStats> = BTreeMap::new();
    fn worker<'w>(
        workers: &'w mut BTreeMap<u64, WorkerStats>,
        s: &Sample,
    ) -> Option<&'w mut WorkerStats> {
        let label = s.label("worker")?;
        let index = label.parse::<u64>().ok()?;
        Some(workers.entry(index).or_insert_with(|| WorkerStats {
            worker: label.to_owned(),
            ..WorkerStats::default()
        }))
    }
    let label = |s: &Sample, key: &str| s.label(key).unwrap_or("").to_owned();
    for s in samples {
        match s.name.as_str() {
            "ferry_sessions" => {
                let state = label(s, "state");
                *stats.sessions.entry(state.clone()).or_insert(0.0) += s.value;
                if let Some(w) = worker(&mut workers, s) {
                    match state.as_str() {
                        "attached" => w.sessions_attached += s.value,
                        "detached" => w.sessions_detached += s.value,
                        _ => {}
                    }
                }
            }
            "ferry_worker_connections" => {
                stats.connections += s.value;
                if let Some(w) = worker(&mut workers, s) {
                    w.connections += s.value;
                }
            }
            "ferry_channels" => {
                if let Some(w) = worker(&mut workers, s) {
                    w.channels += s.value;
                }
            }
            "ferry_worker_queue_depth" => {
                let queue = label(s, "queue");
                if let Some(w) = worker(&mut workers, s) {
                    *w.queue_depth.entry(queue).or_insert(0.0) += s.value;
                }
            }
            "ferry_connections" => {
                *stats
                    .connections_by_transport
                    .entry(label(s, "transport"))
                    .or_insert(0.0) += s.value;
            }
            "ferry_resumes_total" => {
                *stats.resumes.entry(label(s, "outcome")).or_insert(0.0) += s.value;
            }
            "ferry_handshakes_total" => {
                let key = format!("{}/{}", label(s, "transport"), label(s, "outcome"));
                *stats.handshakes.entry(key).or_insert(0.0) += s.value;
            }
            "ferry_errors_total" => {
                *stats.errors.entry(label(s, "code")).or_insert(0.0) += s.value;
            }
            "ferry_config_reloads_total" => {
                *stats.reloads.entry(label(s, "outcome")).or_insert(0.0) += s.value;
            }
            "ferry_upgrade_in_progress" => stats.upgrade.in_progress = s.value > 0.0,
            "ferry_upgrade_sessions_sent_total" => stats.upgrade.sessions_sent += s.value,
            "ferry_upgrade_sessions_received_total" => {
                stats.upgrade.sessions_received += s.value;
            }
            "ferry_upgrades_total" => {
                let key = format!("{}/{}", label(s, "side"), label(s, "outcome"));
                *stats.upgrade.upgrades.entry(key).or_insert(0.0) += s.value;
            }
            _ => {}
        }
    }
    stats.workers = workers.into_values().collect();
    stats
}

/// The process's memory from `/proc/self/status`.
pub fn memory() -> MemoryStats {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    MemoryStats {
        process_rss_bytes: kb("VmRSS:"),
        process_peak_rss_bytes: kb("VmHWM:"),
        per_worker: "not measurable: the workers share one allocator; the figures are the whole process",
    }
}

/// The current stats.
pub fn current(handle: &PrometheusHandle, sampler: &Sampler, phase: Phase) -> Stats {
    build(&parse(&handle.render()), sampler.rates(), phase, memory())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# HELP ferry_sessions Sessions per worker, attached or detached.\n\
        # TYPE ferry_sessions gauge\n\
        ferry_sessions{state=\"attached\",worker=\"0\"} 3\n\
        ferry_sessions{state=\"detached\",worker=\"0\"} 1\n\
        ferry_sessions{state=\"attached\",worker=\"1\"} 4 1700000000\n\
        ferry_worker_connections{worker=\"0\"} 3\n\
        ferry_worker_connections{worker=\"1\"} 4\n\
        ferry_worker_queue_depth{worker=\"1\",queue=\"delivery\"} 9\n\
        ferry_channels{worker=\"1\"} 2\n\
        ferry_connections{transport=\"ws\"} 5\n\
        ferry_connections{transport=\"quic\"} 2\n\
        ferry_publishes_total 100\n\
        ferry_messages_sent_total 250\n\
        ferry_slow_consumer_disconnects_total 2\n\
        ferry_resumes_total{outcome=\"resumed\"} 6\n\
        ferry_config_reloads_total{outcome=\"ok\"} 1\n\
        ferry_config_reloads_total{outcome=\"error\"} 0\n\
        ferry_upgrade_in_progress 1\n\
        ferry_upgrade_sessions_sent_total 512\n\
        ferry_upgrades_total{side=\"old\",outcome=\"rolled_back\"} 1\n\
        ferry_handshakes_total{transport=\"ws\",outcome=\"ok\"} 7\n\
        ferry_errors_total{code=\"SLOW_CONSUMER\"} 2\n\
        ferry_publish_to_delivery_seconds_bucket{le=\"+Inf\"} 12\n\
        ferry_odd{a=\"x\\\"y\",b=\"z\"} 1\n\
        garbage line\n";

    #[test]
    fn parses_the_text_format() {
        let samples = parse(PAGE);
        let odd = samples.iter().find(|s| s.name == "ferry_odd").expect("odd");
        assert_eq!(odd.label("a"), Some("x\"y"));
        assert_eq!(odd.label("b"), Some("z"));
        let inf = samples
            .iter()
            .find(|s| s.name.ends_with("_bucket"))
            .expect("bucket");
        assert_eq!(inf.label("le"), Some("+Inf"));
        assert_eq!(inf.value, 12.0);
        assert!(!samples.iter().any(|s| s.name == "garbage"));
    }

    #[test]
    fn stats_sum_what_metrics_show() {
        let s = build(
            &parse(PAGE),
            Rates::default(),
            Phase::Running,
            MemoryStats::default(),
        );
        assert_eq!(s.sessions["attached"], 7.0);
        assert_eq!(s.sessions["detached"], 1.0);
        assert_eq!(s.connections, 7.0);
        assert_eq!(s.connections_by_transport["quic"], 2.0);
        assert_eq!(s.workers.len(), 2);
        assert_eq!(s.workers[0].sessions_attached, 3.0);
        assert_eq!(s.workers[0].sessions_detached, 1.0);
        assert_eq!(s.workers[1].queue_depth["delivery"], 9.0);
        assert_eq!(s.workers[1].channels, 2.0);
        assert_eq!(s.totals.publishes, 100.0);
        assert_eq!(s.totals.slow_consumer_disconnects, 2.0);
        assert_eq!(s.resumes["resumed"], 6.0);
        assert_eq!(s.reloads["ok"], 1.0);
        assert!(s.upgrade.in_progress);
        assert_eq!(s.upgrade.sessions_sent, 512.0);
        assert_eq!(s.upgrade.upgrades["old/rolled_back"], 1.0);
        assert_eq!(s.handshakes["ws/ok"], 7.0);
        assert_eq!(s.errors["SLOW_CONSUMER"], 2.0);
        assert_eq!(s.phase, "running");
    }

    #[test]
    fn rates_over_the_window() {
        let sampler = Sampler::default();
        assert_eq!(sampler.rates(), Rates::default());
        let t0 = Instant::now();
        for i in 0..10u32 {
            sampler.record(
                t0 + Duration::from_secs(u64::from(i)),
                Totals {
                    publishes: f64::from(i * 100),
                    messages_sent: f64::from(i * 300),
                    ..Totals::default()
                },
            );
        }
        let r = sampler.rates();
        assert_eq!(r.window_s, (RATE_SAMPLES - 1) as f64);
        assert_eq!(r.messages_in_per_s, 100.0);
        assert_eq!(r.messages_out_per_s, 300.0);
    }

    #[test]
    fn memory_of_this_process() {
        let m = memory();
        assert!(m.process_rss_bytes.is_some_and(|b| b > 0));
        assert!(m.process_peak_rss_bytes >= m.process_rss_bytes);
    }
}
