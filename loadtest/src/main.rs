//! `loadtest`: drives a Ferry gateway, or a baseline WebSocket server, with
//! many sessions at a fixed rate, and checks every message.
//!
//! It measures latency from each message's intended send time (open-loop
//! pacing, free of coordinated omission), checks delivery (gaps,
//! duplicates, reordering, loss), reads the server's CPU and memory from
//! /proc with `--gateway-pid`, and its own CPU so that a saturated generator
//! is visible. It exits non-zero when any message was lost, duplicated or
//! reordered, or when errors exceed `--max-errors`.
//!
//! Module map: [`rate`] pacing, [`stats`] histograms and delivery checks,
//! [`payload`] what each message carries, [`report`] summary and JSON,
//! [`html`] the HTML report (`--report`), [`proc`] /proc readings,
//! [`scenario`] the scenarios. The Ferry scenarios
//! use the real client SDK, `ferry_protocol::client`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod html;
mod payload;
mod proc;
mod rate;
mod report;
mod scenario;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::scenario::raw::RawMode;
use crate::scenario::{Ctx, Settings, TransportKind};
use crate::stats::Recorder;

/// Exit code when the run found lost/duplicated/reordered messages or too
/// many errors.
const EXIT_CHECK_FAILED: u8 = 1;
/// Exit code when the run could not be carried out (bad flags, server
/// unreachable: not one session opened, bug).
const EXIT_USAGE: u8 = 2;
/// Exit code when the run did not stop by itself in time (a bug).
const EXIT_HUNG: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "loadtest",
    version,
    about = "Load generator and delivery checker for the Ferry gateway and baseline WebSocket servers",
    after_help = "Exit status: 0 passed, 1 messages lost/duplicated/reordered or too many errors, \
                  2 could not run (bad flags, no session could be opened), 3 did not stop in time.\n\
                  Only loopback targets are accepted unless --allow-remote is given."
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Args, Debug)]
struct Common {
    /// Transport of Ferry scenarios.
    #[arg(long, global = true, value_enum, default_value_t = TransportKind::Ws)]
    transport: TransportKind,
    /// Server URL [default: ws://127.0.0.1:8080/ws, wss://127.0.0.1:8443/ws,
    /// quic://127.0.0.1:4433 by transport; ws://127.0.0.1:9001/ for raw].
    #[arg(long, global = true)]
    url: Option<String>,
    /// CA certificate (PEM) that signs the server's certificate (wss, quic).
    #[arg(long, global = true, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Accept any server certificate (development servers only).
    #[arg(long, global = true, conflicts_with = "ca")]
    insecure_dev: bool,
    /// TLS server name, when it differs from the URL's host.
    #[arg(long, global = true)]
    server_name: Option<String>,
    /// Authentication token sent in HELLO.
    #[arg(long, global = true, env = "FERRY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Sessions (connections) to open.
    #[arg(long, global = true, default_value_t = 100)]
    sessions: usize,
    /// Messages per second per sending session (open loop).
    #[arg(long, global = true, default_value_t = 10.0)]
    rate: f64,
    /// Length of the traffic (or holding) phase, seconds.
    #[arg(long, global = true, default_value_t = 10.0)]
    duration: f64,
    /// Payload size in bytes (at least 20: the stamp each message carries).
    #[arg(long, global = true, default_value_t = 32)]
    payload: usize,
    /// Write the report as JSON to this file.
    #[arg(long, global = true, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the report as one self-contained HTML page to this file:
    /// summary, delivery checks, latency percentile plot, per-second
    /// timeline with its events and marks.
    #[arg(long, global = true, value_name = "FILE.html")]
    report: Option<PathBuf>,
    /// Marks for the report's timeline from a file the load tester does
    /// not write itself, read at the end of the run: one per line,
    /// `<unix time in seconds> <label>` (e.g. `date +%s.%N` and "upgrade
    /// starts"). Lines that do not parse are skipped.
    #[arg(long, global = true, value_name = "FILE", requires = "report")]
    marks: Option<PathBuf>,
    /// Errors tolerated before the run fails.
    #[arg(long, global = true, default_value_t = 0)]
    max_errors: u64,
    /// The server's PID: report its CPU per message and its memory.
    #[arg(long, global = true, value_name = "PID")]
    gateway_pid: Option<u32>,
    /// Worker threads of the load generator [default: half the cores, at least 1].
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// New sessions per second.
    #[arg(long, global = true, default_value_t = 2000.0)]
    connect_rate: f64,
    /// Longest wait for one session to open, seconds.
    #[arg(long, global = true, default_value_t = 10.0)]
    connect_timeout: f64,
    /// Longest wait for in-flight messages after the traffic phase, seconds.
    #[arg(long, global = true, default_value_t = 5.0)]
    drain_timeout: f64,
    /// Allow a target that is not a loopback address.
    #[arg(long, global = true)]
    allow_remote: bool,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Open sessions at --connect-rate, then close them: handshakes/s and
    /// connect latency.
    Connect,
    /// Hold --sessions idle sessions for --duration; with --gateway-pid,
    /// resident bytes per session.
    Idle,
    /// Each session subscribes to `echo:<i>` and publishes to it at --rate:
    /// round-trip latency.
    Echo {
        /// Publish the next message when the previous one is delivered.
        #[arg(long)]
        closed_loop: bool,
    },
    /// --publishers sessions publish at --rate into `fanout:0`; --sessions
    /// subscribers receive every message: deliveries/s, publish-to-delivery
    /// latency.
    Fanout {
        /// Publishing sessions (not subscribed).
        #[arg(long, default_value_t = 1)]
        publishers: usize,
    },
    /// --sessions loops of connect, subscribe, publish, receive, close for
    /// --duration; then checks the gateway's gauges return to where they
    /// were (leak check).
    Churn {
        /// The gateway's Prometheus endpoint, for the leak check.
        #[arg(long, value_name = "URL")]
        metrics_url: Option<String>,
        /// How long the gauges may take to return to their baseline, seconds.
        #[arg(long, default_value_t = 10.0)]
        leak_timeout: f64,
    },
    /// Echo traffic while transports are cut at random (kill_transport);
    /// every message must still arrive exactly once, in order.
    Resume {
        /// Mean time between two cuts of one session, seconds.
        #[arg(long, default_value_t = 2.0)]
        cut_interval: f64,
    },
    /// Plain binary WebSocket echo (or, with --fanout, broadcast) against a
    /// baseline server (no Ferry protocol).
    Raw {
        /// Send the next message when the echo of the previous one arrives.
        #[arg(long)]
        closed_loop: bool,
        /// Hold the connections idle (server memory per connection).
        #[arg(long, conflicts_with = "closed_loop")]
        idle: bool,
        /// Fan-out against a broadcast server (`baseline-ws --mode
        /// broadcast`): --publishers connections send at --rate, --sessions
        /// connections receive everything; throughput = deliveries/s.
        #[arg(long, conflicts_with_all = ["closed_loop", "idle"])]
        fanout: bool,
        /// Publishing connections, with --fanout.
        #[arg(long, default_value_t = 1)]
        publishers: usize,
    },
}

impl Scenario {
    /// File descriptors the run needs besides the sessions.
    fn extra_sessions(&self) -> usize {
        match self {
            Scenario::Fanout { publishers } => *publishers,
            Scenario::Raw {
                fanout: true,
                publishers,
                ..
            } => *publishers,
            _ => 0,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = cli.common.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("loadtest-worker")
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadtest: cannot start the tokio runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match runtime.block_on(run(cli, threads.max(1))) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn seconds(flag: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{flag} must be a positive number of seconds, not {v}"))
}

fn settings(
    c: &Common,
    scenario: &Scenario,
    addr: std::net::SocketAddr,
    url: String,
) -> anyhow::Result<Settings> {
    let mut problems = Vec::new();
    let raw = matches!(scenario, Scenario::Raw { .. });
    let want = if raw { "ws" } else { c.transport.name() };
    if let Ok(parts) = scenario::split_url(&url)
        && parts.scheme != want
    {
        problems.push(if raw {
            format!("--url {url:?}: raw speaks plain WebSocket, ws://")
        } else {
            format!("--url {url:?}: --transport {want} needs a {want}:// URL")
        });
    }
    if !raw && c.transport != TransportKind::Ws {
        match &c.ca {
            None if !c.insecure_dev => problems.push(format!(
                "--transport {want} needs --ca FILE, the certificate the gateway serves \
                 (its ready line names it: cert=...; a development gateway makes \
                 <data_dir>/dev-cert.pem), or --insecure-dev"
            )),
            Some(ca) if std::fs::metadata(ca).is_err() => {
                problems.push(format!("--ca {}: no such readable file", ca.display()));
            }
            _ => {}
        }
    }
    if c.sessions == 0 {
        problems.push("--sessions must be at least 1".to_owned());
    }
    if let Err(e) = rate::interval_ns(c.rate) {
        problems.push(format!("--rate: {e}"));
    }
    if let Err(e) = rate::interval_ns(c.connect_rate) {
        problems.push(format!("--connect-rate: {e}"));
    }
    if c.payload < payload::STAMP_LEN {
        problems.push(format!(
            "--payload must be at least {} bytes: every message carries a sequence number, a timestamp and its sender",
            payload::STAMP_LEN
        ));
    }
    let durations = [
        ("--duration", c.duration),
        ("--connect-timeout", c.connect_timeout),
        ("--drain-timeout", c.drain_timeout),
    ]
    .map(|(flag, v)| seconds(flag, v));
    for d in &durations {
        if let Err(e) = d {
            problems.push(e.to_string());
        }
    }
    if let Some(limit) = proc::open_files_limit() {
        let needed = (c.sessions + scenario.extra_sessions()) as u64 + 64;
        if limit < needed {
            problems.push(format!(
                "{} sessions need about {needed} file descriptors but `ulimit -n` is {limit}: \
                 raise it (ulimit -n {}) and run again",
                c.sessions,
                needed.next_power_of_two()
            ));
        }
    }
    if !problems.is_empty() {
        bail!("cannot run:\n  {}", problems.join("\n  "));
    }
    let [duration, connect_timeout, drain_timeout] = durations.map(|d| d.unwrap_or_default());
    Ok(Settings {
        transport: c.transport,
        url,
        addr,
        ca: c.ca.clone(),
        insecure_dev: c.insecure_dev,
        server_name: c.server_name.clone(),
        token: c.token.clone(),
        sessions: c.sessions,
        rate: c.rate,
        duration,
        payload: c.payload,
        gateway_pid: c.gateway_pid,
        connect_rate: c.connect_rate,
        connect_timeout,
        drain_timeout,
        allow_remote: c.allow_remote,
    })
}

async fn run(cli: Cli, threads: usize) -> anyhow::Result<ExitCode> {
    let c = &cli.common;
    let url = match (&c.url, &cli.scenario) {
        (Some(u), _) => u.clone(),
        (None, Scenario::Raw { .. }) => "ws://127.0.0.1:9001/".into(),
        (None, _) => c.transport.default_url().into(),
    };
    let addr = scenario::resolve(&url, c.allow_remote).await?;
    let set = settings(c, &cli.scenario, addr, url)?;
    // The hard deadline: every phase is bounded, this only catches a bug.
    let hard_limit = Duration::from_secs_f64(set.sessions as f64 / set.connect_rate)
        + set.connect_timeout * 2
        + set.duration
        + set.drain_timeout * 2
        + match &cli.scenario {
            Scenario::Churn { leak_timeout, .. } => Duration::from_secs_f64(leak_timeout.max(0.0)),
            _ => Duration::ZERO,
        }
        + Duration::from_secs(30);
    let ctx = Ctx::new(set)?;
    let sampler = tokio::spawn(sample_timeline(ctx.clone()));
    let outcome = tokio::time::timeout(hard_limit, dispatch(ctx.clone(), &cli.scenario)).await;
    sampler.abort();
    ctx.rec.timeline.sample(
        Recorder::get(&ctx.rec.sent),
        Recorder::get(&ctx.rec.received),
    );
    let outcome = match outcome {
        Ok(outcome) => outcome?,
        Err(_) => {
            eprintln!(
                "loadtest: the run did not stop by itself within {:.0} s; this is a loadtest bug",
                hard_limit.as_secs_f64()
            );
            return Ok(ExitCode::from(EXIT_HUNG));
        }
    };
    let report = scenario::report(&ctx, &outcome);
    let mut extra = outcome.extra.clone();
    if let (Some((before, after)), None) = (
        outcome.window.gateway_rss,
        report.gateway_rss_bytes_per_session,
    ) {
        extra.push((
            "server VmRSS".into(),
            format!("{before} bytes at the start of the window, {after} at its end"),
        ));
    }
    // Above ~80 % of its threads the generator itself may be what limits
    // throughput and adds latency.
    if report.loadgen_cpu_percent > 80.0 * threads as f64 {
        extra.push((
            "WARNING".into(),
            format!(
                "the load generator used {:.0} % CPU with {threads} thread(s): it may be the bottleneck (try --threads)",
                report.loadgen_cpu_percent
            ),
        ));
    }
    let mut stdout = std::io::stdout().lock();
    report
        .print_human(&extra, &mut stdout)
        .context("cannot write the summary")?;
    if let Some(path) = &c.json {
        report.write_json(path)?;
    }
    let failures = report.failures(c.max_errors);
    if let Some(path) = &c.report {
        if let Some(marks) = &c.marks {
            read_marks(&ctx, marks)?;
        }
        let latency = outcome
            .latency
            .clone()
            .unwrap_or_else(|| ctx.rec.latency_hist());
        let command = redacted_command(std::env::args()).join(" ");
        html::write(
            &html::Page {
                report: &report,
                extra: &extra,
                failures: &failures,
                latency: &latency,
                timeline: &ctx.rec.timeline.data(),
                command: &command,
            },
            path,
        )?;
    }
    if report.sessions.attempted > 0 && report.sessions.established == 0 {
        // Not a verdict on the server's delivery: the run never started.
        eprintln!(
            "loadtest: could not run: no session could be opened ({})",
            report
                .errors
                .keys()
                .next()
                .map_or("no reason recorded", String::as_str)
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("loadtest: FAILED: {}", failures.join("; "));
        Ok(ExitCode::from(EXIT_CHECK_FAILED))
    }
}

/// Counts sent and received messages into the timeline once a second,
/// on the second boundaries of the run's clock.
async fn sample_timeline(ctx: Arc<Ctx>) {
    let timeline = &ctx.rec.timeline;
    let first = ctx.instant(timeline.second_start_ns(1));
    let mut tick = tokio::time::interval_at(first, Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Bounded by the timeline's length; the run aborts it sooner.
    for _ in 0..stats::timeline::MAX_SECONDS {
        tick.tick().await;
        timeline.sample(
            Recorder::get(&ctx.rec.sent),
            Recorder::get(&ctx.rec.received),
        );
    }
}

/// The command line for the report, with the `--token` value hidden (the
/// page may be shared).
fn redacted_command(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut hide_next = false;
    for arg in args {
        if std::mem::take(&mut hide_next) {
            out.push("<redacted>".to_owned());
        } else if arg == "--token" {
            hide_next = true;
            out.push(arg);
        } else if arg.starts_with("--token=") {
            out.push("--token=<redacted>".to_owned());
        } else {
            out.push(arg);
        }
    }
    out
}

/// Adds the marks of `--marks FILE` to the timeline.
fn read_marks(ctx: &Ctx, path: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --marks {}", path.display()))?;
    for (unix_s, label) in parse_marks(&text) {
        ctx.rec.timeline.mark_unix(unix_s, label);
    }
    Ok(())
}

/// `<unix seconds> <label>` lines; others are skipped.
fn parse_marks(text: &str) -> Vec<(f64, String)> {
    text.lines()
        .filter_map(|line| {
            let (time, label) = line.trim().split_once(char::is_whitespace)?;
            let t = time.parse::<f64>().ok().filter(|t| t.is_finite())?;
            Some((t, label.trim().to_owned()))
        })
        .collect()
}

async fn dispatch(ctx: Arc<Ctx>, scenario: &Scenario) -> anyhow::Result<scenario::Outcome> {
    use scenario::*;
    match scenario {
        Scenario::Raw {
            fanout: true,
            publishers,
            ..
        } => raw_fanout::run(ctx, *publishers).await,
        Scenario::Raw {
            closed_loop, idle, ..
        } => {
            let mode = match (closed_loop, idle) {
                (_, true) => RawMode::Idle,
                (true, _) => RawMode::ClosedLoop,
                _ => RawMode::OpenLoop,
            };
            raw::run(ctx, mode).await
        }
        Scenario::Connect => connect::run(ctx).await,
        Scenario::Idle => idle::run(ctx).await,
        Scenario::Echo { closed_loop } => echo::run(ctx, *closed_loop).await,
        Scenario::Fanout { publishers } => fanout::run(ctx, *publishers).await,
        Scenario::Churn {
            metrics_url,
            leak_timeout,
        } => {
            let leak_timeout = seconds("--leak-timeout", *leak_timeout)?;
            churn::run(ctx, metrics_url.clone(), leak_timeout).await
        }
        Scenario::Resume { cut_interval } => {
            let cut_interval = seconds("--cut-interval", *cut_interval)?;
            resume::run(ctx, cut_interval).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_stays_out_of_the_report() {
        let args = [
            "loadtest",
            "echo",
            "--token",
            "s3cret",
            "--token=s3cret",
            "--sessions",
            "2",
        ]
        .map(String::from);
        let shown = redacted_command(args).join(" ");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(
            shown,
            "loadtest echo --token <redacted> --token=<redacted> --sessions 2"
        );
    }

    #[test]
    fn marks_file_lines() {
        let marks = parse_marks(
            "1764800000.25 upgrade starts\n\nnot-a-time x\n1764800003 upgrade ends  \nlonely\n",
        );
        assert_eq!(
            marks,
            vec![
                (1764800000.25, "upgrade starts".to_owned()),
                (1764800003.0, "upgrade ends".to_owned())
            ]
        );
    }
}
