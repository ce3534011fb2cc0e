//! `--report FILE.html`: the run as one self-contained page (no script, no
//! external asset): the summary, the delivery checks, the latency
//! percentile plot, and the timeline with its marks and events.
//!
//! The page is a `maud` template; the charts are SVG drawn by
//! [`charts`] and inlined. Every figure that the JSON report also has is in
//! an element with `data-key` (the JSON path, e.g. `messages.sent`) and
//! `data-value` (the JSON number), so that tools and tests can read the
//! page like the JSON.

pub mod charts;

use std::path::Path;

use anyhow::Context;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::report::Report;
use crate::stats::LatencyHist;
use crate::stats::timeline::{EventKind, TimelineData};

/// Everything the page shows.
#[derive(Debug)]
pub struct Page<'a> {
    /// The JSON report.
    pub report: &'a Report,
    /// The scenario's extra summary lines.
    pub extra: &'a [(String, String)],
    /// Why the run failed; empty when it passed.
    pub failures: &'a [String],
    /// The latency histogram behind `report.latency_us`.
    pub latency: &'a LatencyHist,
    /// The run second by second.
    pub timeline: &'a TimelineData,
    /// The command line that ran.
    pub command: &'a str,
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; }
td, th { border: 1px solid #ddd; padding: 4px 10px; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { display: inline-block; padding: 3px 12px; border-radius: 4px; color: #fff; font-weight: bold; }
.pass { background: #2c7a2c; } .fail { background: #b22222; }
td.ok { color: #2c7a2c; } td.bad { color: #b22222; font-weight: bold; }
code { background: #f4f4f4; padding: 1px 4px; }
figure { margin: 8px 0; } figcaption { color: #555; font-size: 0.9em; }
";

/// Writes the page to `path`.
pub fn write(page: &Page<'_>, path: &Path) -> anyhow::Result<()> {
    let html = render(page)?;
    std::fs::write(path, html.into_string())
        .with_context(|| format!("cannot write the HTML report to {}", path.display()))
}

/// A JSON number as the JSON report writes it (the `data-value`).
fn json_number(v: impl serde::Serialize) -> String {
    serde_json::to_string(&v).unwrap_or_default()
}

fn num_cell(key: &str, shown: String, value: String) -> Markup {
    html! { td.num data-key=(key) data-value=(value) { (shown) } }
}

fn count(key: &str, v: u64) -> Markup {
    num_cell(key, v.to_string(), json_number(v))
}

fn float(key: &str, v: f64, decimals: usize) -> Markup {
    num_cell(key, format!("{v:.decimals$}"), json_number(v))
}

fn optional(key: &str, v: Option<f64>, decimals: usize) -> Markup {
    match v {
        Some(v) => float(key, v, decimals),
        None => html! { td.num data-key=(key) data-value="null" { "-" } },
    }
}

/// Renders the page.
pub fn render(page: &Page<'_>) -> anyhow::Result<Markup> {
    let r = page.report;
    let tl = page.timeline;
    let percentile_svg =
        charts::percentile_plot(&page.latency.quantile_curve(), page.latency.count())?;
    let throughput_svg = charts::throughput_chart(tl)?;
    let latency_svg = charts::latency_chart(tl)?;
    let events_svg = charts::events_chart(tl)?;
    let passed = page.failures.is_empty();
    let m = &r.messages;
    let title = format!("Ferry load test: {} over {}", r.scenario, r.transport);
    Ok(html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { (title) }
                p {
                    @if passed {
                        span.verdict.pass #verdict data-passed="true" { "PASSED" }
                    } @else {
                        span.verdict.fail #verdict data-passed="false" { "FAILED" }
                        " " (page.failures.join("; "))
                    }
                }
                p { code #command { (page.command) } }

                h2 { "Summary" }
                table #summary {
                    tr { th { "scenario" } td data-key="scenario" { (r.scenario) } }
                    tr { th { "transport" } td data-key="transport" { (r.transport) } }
                    tr { th { "sessions attempted" } (count("sessions.attempted", r.sessions.attempted)) }
                    tr { th { "sessions established" } (count("sessions.established", r.sessions.established)) }
                    tr { th { "sessions failed" } (count("sessions.failed", r.sessions.failed)) }
                    tr { th { "measured window (s)" } (float("duration_s", r.duration_s, 2)) }
                    tr { th { "messages sent" } (count("messages.sent", m.sent)) }
                    tr { th { "messages delivered" } (count("messages.delivered", m.delivered)) }
                    tr { th { "throughput (msgs/s)" } (float("throughput_msgs_per_s", r.throughput_msgs_per_s, 1)) }
                    @if let Some(p) = r.latency_us {
                        tr { th { "latency p50 (µs)" } (count("latency_us.p50", p.p50)) }
                        tr { th { "latency p90 (µs)" } (count("latency_us.p90", p.p90)) }
                        tr { th { "latency p99 (µs)" } (count("latency_us.p99", p.p99)) }
                        tr { th { "latency p99.9 (µs)" } (count("latency_us.p999", p.p999)) }
                        tr { th { "latency max (µs)" } (count("latency_us.max", p.max)) }
                    } @else {
                        tr { th { "latency" } td data-key="latency_us" data-value="null" { "not measured" } }
                    }
                    tr { th { "server CPU (µs/msg)" } (optional("server_cpu_us_per_msg", r.server_cpu_us_per_msg, 2)) }
                    tr { th { "server RSS (bytes/session)" } (optional("gateway_rss_bytes_per_session", r.gateway_rss_bytes_per_session, 0)) }
                    tr { th { "load generator CPU (% of one core)" } (float("loadgen_cpu_percent", r.loadgen_cpu_percent, 1)) }
                    @for (k, v) in page.extra {
                        tr { th { (k) } td { (v) } }
                    }
                }

                h2 { "Delivery checks" }
                table #checks {
                    tr { th { "check" } th.num { "messages" } th { "verdict" } }
                    @for (name, key, n) in [("lost", "messages.lost", m.lost), ("duplicated", "messages.duplicated", m.duplicated), ("reordered", "messages.reordered", m.reordered)] {
                        tr {
                            th { (name) }
                            (count(key, n))
                            @if n == 0 { td.ok { "ok" } } @else { td.bad { "FAILED" } }
                        }
                    }
                }
                h3 { "Errors" }
                @if r.errors.is_empty() {
                    p #errors data-value="0" { "none" }
                } @else {
                    table #errors {
                        tr { th { "reason" } th.num { "count" } }
                        @for (reason, n) in &r.errors {
                            tr { td { (reason) } td.num data-error=(reason) data-value=(n) { (n) } }
                        }
                    }
                }

                h2 { "Latency distribution" }
                figure #latency-percentiles {
                    (PreEscaped(percentile_svg))
                    figcaption {
                        "Latency from the intended send time at each percentile (HdrHistogram, "
                        (page.latency.count()) " samples); both axes logarithmic."
                    }
                }

                h2 { "Timeline" }
                figure #timeline-throughput {
                    (PreEscaped(throughput_svg))
                    figcaption { "Messages sent and received in each second (received counts duplicates too)." }
                }
                figure #timeline-latency {
                    (PreEscaped(latency_svg))
                    figcaption { "Latency percentiles of the messages that arrived in each second." }
                }
                figure #timeline-events {
                    (PreEscaped(events_svg))
                    figcaption { "Connection events in each second: transport cuts, disconnects, reconnects, GOAWAY, sessions lost, errors." }
                }
                h3 { "Marks" }
                @if tl.marks.is_empty() {
                    p { "none" }
                } @else {
                    table #marks {
                        tr { th.num { "#" } th.num { "at (s)" } th { "what" } }
                        @for (n, mark) in tl.marks.iter().enumerate() {
                            tr data-mark=(mark.label) {
                                td.num { (n + 1) }
                                td.num data-value=(json_number(mark.at_s)) { (format!("{:.2}", mark.at_s)) }
                                td { (mark.label) }
                            }
                        }
                    }
                }
                details {
                    summary { "Every second" }
                    table #seconds {
                        tr {
                            th.num { "second" } th.num { "sent" } th.num { "received" }
                            th.num { "p50 µs" } th.num { "p99 µs" } th.num { "max µs" }
                            @for kind in EventKind::ALL { th.num { (kind.name()) } }
                        }
                        @for s in &tl.seconds {
                            tr {
                                td.num { (s.t) }
                                td.num data-col="sent" { (s.sent) }
                                td.num data-col="received" { (s.received) }
                                @match s.latency {
                                    Some(p) => { td.num { (p.p50) } td.num { (p.p99) } td.num { (p.max) } }
                                    None => { td.num { "-" } td.num { "-" } td.num { "-" } }
                                }
                                @for n in s.events { td.num { (n) } }
                            }
                        }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Messages, Sessions};
    use crate::stats::Percentiles;
    use crate::stats::timeline::{Mark, SecondData};
    use std::collections::BTreeMap;

    fn report() -> Report {
        Report {
            scenario: "echo".into(),
            transport: "ws".into(),
            sessions: Sessions {
                attempted: 12,
                established: 11,
                failed: 1,
            },
            messages: Messages {
                sent: 4321,
                delivered: 4320,
                lost: 1,
                duplicated: 0,
                reordered: 0,
            },
            throughput_msgs_per_s: 432.5,
            latency_us: Some(Percentiles {
                p50: 151,
                p90: 252,
                p99: 353,
                p999: 454,
                max: 9555,
            }),
            errors: BTreeMap::from([("connect: <refused>".to_owned(), 1)]),
            gateway_rss_bytes_per_session: None,
            server_cpu_us_per_msg: Some(3.25),
            loadgen_cpu_percent: 12.0,
            duration_s: 10.0,
        }
    }

    #[test]
    fn the_page_holds_the_reports_numbers_and_is_self_contained() {
        let r = report();
        let mut hist = LatencyHist::new();
        for us in [151, 252, 353, 9555] {
            hist.record(us);
        }
        let timeline = TimelineData {
            seconds: vec![SecondData {
                t: 0,
                sent: 4321,
                received: 4320,
                ..Default::default()
            }],
            marks: vec![Mark {
                at_s: 0.5,
                label: "upgrade starts".into(),
            }],
        };
        let failures = r.failures(0);
        let page = Page {
            report: &r,
            extra: &[("connections".into(), "3 cuts".into())],
            failures: &failures,
            latency: &hist,
            timeline: &timeline,
            command: "loadtest echo --report r.html",
        };
        let html = render(&page).unwrap().into_string();
        for needle in [
            r#"data-key="messages.sent" data-value="4321">4321<"#,
            r#"data-key="messages.lost" data-value="1">1<"#,
            r#"data-key="latency_us.p99" data-value="353">353<"#,
            r#"data-key="latency_us.max" data-value="9555">9555<"#,
            r#"data-key="throughput_msgs_per_s" data-value="432.5">432.5<"#,
            r#"data-key="server_cpu_us_per_msg" data-value="3.25">3.25<"#,
            r#"data-key="gateway_rss_bytes_per_session" data-value="null">-<"#,
            r#"data-passed="false""#,
            "1 messages lost",
            "connect: &lt;refused&gt;",
            r#"data-mark="upgrade starts""#,
            "<svg",
        ] {
            assert!(html.contains(needle), "missing {needle}");
        }
        assert_eq!(html.matches("<svg").count(), 4, "four charts");
        assert_eq!(
            html.matches("http").count(),
            html.matches("http://www.w3.org/2000/svg").count(),
            "only the SVG namespace names a URL: nothing is fetched"
        );
        assert!(!html.contains("<script"), "no script");
        assert!(!html.contains("<link"), "no external stylesheet");
    }
}
