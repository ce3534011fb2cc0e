//! The result of a run: a human summary on stdout and, with `--json FILE`,
//! one JSON object whose schema is stable (scripts and CI read it):
//!
//! ```text
//! {"scenario","transport","sessions":{"attempted","established","failed"},
//!  "messages":{"sent","delivered","lost","duplicated","reordered"},
//!  "throughput_msgs_per_s","latency_us":{"p50","p90","p99","p999","max"},
//!  "errors":{reason:count},"gateway_rss_bytes_per_session",
//!  "server_cpu_us_per_msg","loadgen_cpu_percent","duration_s"}
//! ```
//!
//! `latency_us` is null when no latency was measured (idle), and so are
//! `gateway_rss_bytes_per_session` (except for idle runs with
//! `--gateway-pid`) and `server_cpu_us_per_msg` (without `--gateway-pid`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::stats::Percentiles;

/// Session counts.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sessions {
    /// Sessions the run tried to open.
    pub attempted: u64,
    /// Opened.
    pub established: u64,
    /// Failed to open.
    pub failed: u64,
}

/// Message counts.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Messages {
    /// Handed to the transport.
    pub sent: u64,
    /// Distinct messages received (deliveries, for fan-out).
    pub delivered: u64,
    /// Sent and never delivered.
    pub lost: u64,
    /// Extra copies received.
    pub duplicated: u64,
    /// Received after a later message of the same sender.
    pub reordered: u64,
}

/// The stable JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name (`echo`, `raw`, `raw-closed-loop`, `raw-idle`, ...).
    pub scenario: String,
    /// `ws`, `wss` or `quic`.
    pub transport: String,
    /// Session counts.
    pub sessions: Sessions,
    /// Message counts.
    pub messages: Messages,
    /// Delivered messages per second over the measured window.
    pub throughput_msgs_per_s: f64,
    /// Latency percentiles in µs from the intended send time.
    pub latency_us: Option<Percentiles>,
    /// Errors by reason.
    pub errors: BTreeMap<String, u64>,
    /// (gateway VmRSS after − before) / established sessions; idle only.
    pub gateway_rss_bytes_per_session: Option<f64>,
    /// Gateway CPU time over the window / delivered messages.
    pub server_cpu_us_per_msg: Option<f64>,
    /// Load generator CPU over the window, % of one core.
    pub loadgen_cpu_percent: f64,
    /// The measured window, seconds.
    pub duration_s: f64,
}

impl Report {
    /// Whether the run failed: any loss, duplicate or reorder, or more
    /// errors than allowed. Returns the reasons, empty when it passed.
    pub fn failures(&self, max_errors: u64) -> Vec<String> {
        let mut why = Vec::new();
        let m = &self.messages;
        for (n, what) in [
            (m.lost, "lost"),
            (m.duplicated, "duplicated"),
            (m.reordered, "reordered"),
        ] {
            if n > 0 {
                why.push(format!("{n} messages {what}"));
            }
        }
        let errors: u64 = self.errors.values().sum();
        if errors > max_errors {
            why.push(format!("{errors} errors (--max-errors {max_errors})"));
        }
        why
    }

    /// Writes the JSON report to `path`.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(self).context("cannot encode the report")?;
        text.push('\n');
        std::fs::write(path, text)
            .with_context(|| format!("cannot write the JSON report to {}", path.display()))
    }

    /// The human summary, with scenario-specific `extra` lines.
    pub fn print_human(
        &self,
        extra: &[(String, String)],
        out: &mut impl Write,
    ) -> std::io::Result<()> {
        let s = &self.sessions;
        let m = &self.messages;
        let mut rows: Vec<(String, String)> = vec![
            (
                "scenario".into(),
                format!("{} over {}", self.scenario, self.transport),
            ),
            (
                "sessions".into(),
                format!(
                    "{} established / {} attempted, {} failed",
                    s.established, s.attempted, s.failed
                ),
            ),
            ("window".into(), format!("{:.2} s", self.duration_s)),
            (
                "messages".into(),
                format!(
                    "{} sent, {} delivered, {} lost, {} duplicated, {} reordered",
                    m.sent, m.delivered, m.lost, m.duplicated, m.reordered
                ),
            ),
            (
                "throughput".into(),
                format!("{:.0} msgs/s", self.throughput_msgs_per_s),
            ),
        ];
        rows.push((
            "latency (µs)".into(),
            match self.latency_us {
                Some(p) => format!(
                    "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
                    p.p50, p.p90, p.p99, p.p999, p.max
                ),
                None => "-".into(),
            },
        ));
        if let Some(cpu) = self.server_cpu_us_per_msg {
            rows.push(("server CPU".into(), format!("{cpu:.2} µs/msg")));
        }
        if let Some(rss) = self.gateway_rss_bytes_per_session {
            rows.push(("server RSS".into(), format!("{rss:.0} bytes/session")));
        }
        rows.push((
            "loadgen CPU".into(),
            format!("{:.0} % of one core", self.loadgen_cpu_percent),
        ));
        rows.extend(extra.iter().cloned());
        if self.errors.is_empty() {
            rows.push(("errors".into(), "none".into()));
        }
        for (reason, n) in &self.errors {
            rows.push(("error".into(), format!("{n} × {reason}")));
        }
        let width = rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        for (k, v) in rows {
            writeln!(out, "  {k:<width$}  {v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            scenario: "echo".into(),
            transport: "ws".into(),
            sessions: Sessions {
                attempted: 2,
                established: 2,
                failed: 0,
            },
            messages: Messages {
                sent: 10,
                delivered: 10,
                ..Default::default()
            },
            throughput_msgs_per_s: 5.0,
            latency_us: Some(Percentiles {
                p50: 1,
                p90: 2,
                p99: 3,
                p999: 4,
                max: 5,
            }),
            errors: BTreeMap::new(),
            gateway_rss_bytes_per_session: None,
            server_cpu_us_per_msg: None,
            loadgen_cpu_percent: 3.0,
            duration_s: 2.0,
        }
    }

    #[test]
    fn json_schema_is_stable() {
        let v = serde_json::to_value(sample()).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        let mut expected = [
            "scenario",
            "transport",
            "sessions",
            "messages",
            "throughput_msgs_per_s",
            "latency_us",
            "errors",
            "gateway_rss_bytes_per_session",
            "server_cpu_us_per_msg",
            "loadgen_cpu_percent",
            "duration_s",
        ];
        expected.sort();
        assert_eq!(keys, expected);
        let text = serde_json::to_string(&sample()).unwrap();
        assert!(
            text.starts_with(r#"{"scenario":"echo","transport":"ws","sessions":{"attempted":2"#)
        );
        assert_eq!(v["latency_us"]["p999"], 4);
        assert!(v["server_cpu_us_per_msg"].is_null());
        assert_eq!(v["messages"]["reordered"], 0);
    }

    #[test]
    fn failures_list_what_broke() {
        let mut r = sample();
        assert!(r.failures(0).is_empty());
        r.messages.lost = 1;
        r.errors.insert("connect: refused".into(), 2);
        assert_eq!(r.failures(1).len(), 2);
        assert_eq!(r.failures(2).len(), 1);
    }
}
