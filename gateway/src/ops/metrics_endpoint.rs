//! The Prometheus recorder and `GET /metrics`.
//!
//! The recorder is process-wide and installed once. Every metric of
//! [`crate::metrics`] is described here and the unlabelled counters are
//! registered at zero, so that a scrape shows the whole set from the start
//! (a counter that never moved is still information).

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use metrics::Unit;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// The Prometheus text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Buckets of `ferry_publish_to_delivery_seconds`: from 100 µs (same-core
/// fan-out) to 1 s (overload).
const DELIVERY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Buckets of `ferry_handshake_duration_seconds`: up to the default
/// handshake timeout (10 s).
const HANDSHAKE_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram samples are folded into their buckets when nobody
/// scrapes (otherwise they pile up in memory).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The worker counters (flushed as deltas by the sweeper), with their help.
const WORKER_COUNTERS: &[(&str, Unit, &str)] = &[
    (
        "ferry_frames_received_total",
        Unit::Count,
        "Frames received from clients.",
    ),
    (
        "ferry_received_bytes_total",
        Unit::Bytes,
        "Bytes received from clients.",
    ),
    (
        "ferry_messages_sent_total",
        Unit::Count,
        "MESSAGE frames written to clients.",
    ),
    (
        "ferry_sent_bytes_total",
        Unit::Bytes,
        "Bytes written to clients.",
    ),
    (
        "ferry_publishes_total",
        Unit::Count,
        "Publishes accepted from clients.",
    ),
    (
        "ferry_duplicate_publishes_total",
        Unit::Count,
        "Re-sent publishes dropped as duplicates.",
    ),
    (
        "ferry_deliveries_total",
        Unit::Count,
        "Messages appended to session replay logs.",
    ),
    (
        "ferry_slow_consumer_disconnects_total",
        Unit::Count,
        "Sessions cut as slow consumers.",
    ),
    (
        "ferry_replay_overflows_total",
        Unit::Count,
        "Replay logs that overflowed.",
    ),
    (
        "ferry_sessions_expired_total",
        Unit::Count,
        "Detached sessions expired.",
    ),
    (
        "ferry_ops_publishes_total",
        Unit::Count,
        "Messages published through the ops API.",
    ),
];

static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Installs the Prometheus recorder (once per process) and returns its
/// handle.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    // A poisoned lock only means another thread panicked mid-install; the
    // Option is still either set or not.
    let mut handle = HANDLE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(handle) = handle.as_ref() {
        return Ok(handle.clone());
    }
    let installed = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("ferry_publish_to_delivery_seconds".into()),
            DELIVERY_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("ferry_handshake_duration_seconds".into()),
            HANDSHAKE_BUCKETS,
        )?
        .install_recorder()?;
    describe();
    *handle = Some(installed.clone());
    Ok(installed)
}

/// Describes every metric and registers the ones without labels at zero.
fn describe() {
    for &(name, unit, help) in WORKER_COUNTERS {
        metrics::describe_counter!(name, unit, help);
        metrics::counter!(name).absolute(0);
    }
    metrics::describe_gauge!(
        "ferry_info",
        "Always 1; the labels describe the running gateway."
    );
    metrics::gauge!("ferry_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics::describe_counter!(
        "ferry_config_reloads_total",
        Unit::Count,
        "Configuration reloads (SIGHUP), by outcome."
    );
    for outcome in ["ok", "error"] {
        metrics::counter!("ferry_config_reloads_total", "outcome" => outcome).absolute(0);
    }
    metrics::describe_counter!(
        "ferry_errors_total",
        Unit::Count,
        "Errors sent to clients, by code."
    );
    metrics::describe_counter!(
        "ferry_handshakes_total",
        Unit::Count,
        "Handshakes, by transport and outcome."
    );
    metrics::describe_counter!(
        "ferry_resumes_total",
        Unit::Count,
        "Resume attempts, by outcome."
    );
    metrics::describe_counter!(
        "ferry_connections_total",
        Unit::Count,
        "Connections opened and closed, by transport."
    );
    metrics::describe_gauge!(
        "ferry_connections",
        Unit::Count,
        "Open connections, by transport."
    );
    metrics::describe_gauge!(
        "ferry_sessions",
        Unit::Count,
        "Sessions per worker, attached or detached."
    );
    metrics::describe_gauge!(
        "ferry_worker_connections",
        Unit::Count,
        "Open connections per worker."
    );
    metrics::describe_gauge!(
        "ferry_channels",
        Unit::Count,
        "Channels sequenced per worker."
    );
    metrics::describe_gauge!(
        "ferry_worker_queue_depth",
        Unit::Count,
        "Messages waiting in a worker's inbox."
    );
    metrics::describe_histogram!(
        "ferry_publish_to_delivery_seconds",
        Unit::Seconds,
        "From receiving a publish to queueing it for a subscriber (sampled)."
    );
    metrics::describe_histogram!(
        "ferry_handshake_duration_seconds",
        Unit::Seconds,
        "From accepting a connection to sending WELCOME."
    );
}

/// `GET /metrics`.
pub fn render(handle: &PrometheusHandle) -> Response<Full<Bytes>> {
    super::http::response(StatusCode::OK, CONTENT_TYPE, Bytes::from(handle.render()))
}

/// Runs the recorder's upkeep forever (the ops runtime's background task).
pub async fn run_upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}
