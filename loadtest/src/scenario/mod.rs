//! The scenarios, and what they share: settings, the target address, the
//! pacing of connections, the measured window and the progress bar.
//!
//! Every scenario runs in three bounded phases:
//!
//! 1. open `--sessions` sessions at `--connect-rate`, each within
//!    `--connect-timeout`;
//! 2. traffic for `--duration`, paced open loop by [`crate::rate`];
//! 3. drain: wait up to `--drain-timeout` for what is still in flight.
//!
//! so a run always stops by itself. Ferry scenarios (connect, idle, echo,
//! fanout, churn, resume) go through the client SDK
//! (`ferry_protocol::client`); `raw` speaks plain WebSocket to a baseline
//! server (echo, or broadcast with `--fanout`).

pub mod churn;
pub mod connect;
pub mod echo;
pub mod fanout;
pub mod ferry;
pub mod idle;
pub mod raw;
pub mod raw_fanout;
pub mod resume;
mod target;

pub use target::{io_reason, resolve, split_url};

use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinSet;

use crate::proc::{self, Pid, ProcSample};
use crate::rate::{Clock, SlotPacer, Ticker};
use crate::report::{Messages, Report, Sessions};
use crate::stats::{LatencyHist, Recorder};

/// Which transport the Ferry client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportKind {
    /// WebSocket over TCP.
    Ws,
    /// WebSocket over TLS.
    Wss,
    /// QUIC.
    Quic,
}

impl TransportKind {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Ws => "ws",
            TransportKind::Wss => "wss",
            TransportKind::Quic => "quic",
        }
    }

    /// The gateway's default URL for this transport.
    pub fn default_url(self) -> &'static str {
        match self {
            TransportKind::Ws => "ws://127.0.0.1:8080/ws",
            TransportKind::Wss => "wss://127.0.0.1:8443/ws",
            TransportKind::Quic => "quic://127.0.0.1:4433",
        }
    }
}

/// The common settings of a run, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Transport of Ferry scenarios.
    pub transport: TransportKind,
    /// Where to connect.
    pub url: String,
    /// The resolved address of `url`.
    pub addr: SocketAddr,
    /// CA file for wss/quic.
    pub ca: Option<PathBuf>,
    /// Accept any server certificate (development only).
    pub insecure_dev: bool,
    /// TLS server name, when it differs from the URL's host.
    pub server_name: Option<String>,
    /// Authentication token.
    pub token: Option<String>,
    /// Sessions to open.
    pub sessions: usize,
    /// Messages per second per sending session.
    pub rate: f64,
    /// Length of the traffic phase.
    pub duration: Duration,
    /// Payload size in bytes.
    pub payload: usize,
    /// The gateway (server) process to watch.
    pub gateway_pid: Option<u32>,
    /// Sessions opened per second.
    pub connect_rate: f64,
    /// Longest wait for one session to open.
    pub connect_timeout: Duration,
    /// Longest wait for in-flight messages after the traffic phase.
    pub drain_timeout: Duration,
    /// Targets other than loopback are allowed.
    pub allow_remote: bool,
}

/// What every task of a run shares.
pub struct Ctx {
    /// The settings.
    pub set: Settings,
    /// Counters and histograms.
    pub rec: Recorder,
    /// The time base.
    pub clock: Clock,
    /// Wakes open-loop senders.
    pub ticker: Ticker,
}

impl Ctx {
    /// Starts the shared parts of a run.
    pub fn new(set: Settings) -> anyhow::Result<Arc<Self>> {
        let clock = Clock::global();
        let ticker = Ticker::start(clock).context("cannot start the pacing thread")?;
        Ok(Arc::new(Self {
            set,
            rec: Recorder::new(),
            clock,
            ticker,
        }))
    }

    /// The instant `ns` on the run's clock.
    pub fn instant(&self, ns: u64) -> tokio::time::Instant {
        self.clock.instant(ns).into()
    }
}

/// What a scenario hands back to be reported.
#[derive(Debug)]
pub struct Outcome {
    /// Scenario name in the report.
    pub scenario: String,
    /// The measured window.
    pub window: Measured,
    /// Latencies; `None` to use the recorder's.
    pub latency: Option<LatencyHist>,
    /// What throughput and server CPU are counted per; `None` for
    /// delivered messages.
    pub units: Option<u64>,
    /// Idle only: gateway bytes per session.
    pub rss_per_session: Option<f64>,
    /// Scenario-specific lines for the human summary.
    pub extra: Vec<(String, String)>,
}

impl Outcome {
    /// An outcome counted in delivered messages.
    pub fn new(scenario: impl Into<String>, window: Measured) -> Self {
        Self {
            scenario: scenario.into(),
            window,
            latency: None,
            units: None,
            rss_per_session: None,
            extra: Vec::new(),
        }
    }
}

/// Builds the report of a finished run.
pub fn report(ctx: &Ctx, out: &Outcome) -> Report {
    let rec = &ctx.rec;
    let totals = rec.totals();
    let wall = out.window.wall.as_secs_f64();
    let units = out.units.unwrap_or(totals.delivered);
    let latency = out
        .latency
        .clone()
        .unwrap_or_else(|| rec.latency_hist())
        .percentiles();
    let server_cpu_us_per_msg = out
        .window
        .gateway_cpu
        .filter(|_| units > 0)
        .map(|cpu| cpu.as_secs_f64() * 1e6 / units as f64);
    Report {
        scenario: out.scenario.clone(),
        transport: if out.scenario.starts_with("raw") {
            "ws".into()
        } else {
            ctx.set.transport.name().into()
        },
        sessions: Sessions {
            attempted: Recorder::get(&rec.attempted),
            established: Recorder::get(&rec.established),
            failed: Recorder::get(&rec.failed),
        },
        messages: Messages {
            sent: Recorder::get(&rec.sent),
            delivered: totals.delivered,
            lost: totals.lost,
            duplicated: totals.duplicated,
            reordered: totals.reordered,
        },
        throughput_msgs_per_s: if wall > 0.0 { units as f64 / wall } else { 0.0 },
        latency_us: latency,
        errors: rec.errors(),
        gateway_rss_bytes_per_session: out.rss_per_session,
        server_cpu_us_per_msg,
        loadgen_cpu_percent: if wall > 0.0 {
            out.window.loadgen_cpu.as_secs_f64() * 100.0 / wall
        } else {
            0.0
        },
        duration_s: wall,
    }
}

/// The start of a measured window: CPU and memory of both processes.
#[derive(Debug)]
pub struct Window {
    start: Instant,
    gateway: Option<ProcSample>,
    me: Option<ProcSample>,
}

/// A measured window.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Wall-clock length.
    pub wall: Duration,
    /// Gateway CPU time used, with `--gateway-pid`.
    pub gateway_cpu: Option<Duration>,
    /// Gateway RSS at the start and end, with `--gateway-pid`.
    pub gateway_rss: Option<(u64, u64)>,
    /// Load generator CPU time used.
    pub loadgen_cpu: Duration,
}

impl Window {
    /// Opens a window now.
    pub fn open(ctx: &Ctx) -> anyhow::Result<Self> {
        ctx.rec.timeline.mark("measured window opens");
        Ok(Self {
            start: Instant::now(),
            gateway: gateway_sample(ctx)?,
            me: proc::sample(Pid::SelfProcess).ok(),
        })
    }

    /// Closes it now.
    pub fn close(self, ctx: &Ctx) -> anyhow::Result<Measured> {
        let wall = self.start.elapsed();
        ctx.rec.timeline.mark("measured window closes");
        let gw_end = gateway_sample(ctx)?;
        let me_end = proc::sample(Pid::SelfProcess).ok();
        let (gateway_cpu, gateway_rss) = match (self.gateway, gw_end) {
            (Some(a), Some(b)) => (
                Some(b.cpu.saturating_sub(a.cpu)),
                Some((a.rss_bytes, b.rss_bytes)),
            ),
            _ => (None, None),
        };
        let loadgen_cpu = match (self.me, me_end) {
            (Some(a), Some(b)) => b.cpu.saturating_sub(a.cpu),
            _ => Duration::ZERO,
        };
        Ok(Measured {
            wall,
            gateway_cpu,
            gateway_rss,
            loadgen_cpu,
        })
    }
}

fn gateway_sample(ctx: &Ctx) -> anyhow::Result<Option<ProcSample>> {
    match ctx.set.gateway_pid {
        None => Ok(None),
        Some(pid) => proc::sample(Pid::Id(pid))
            .map(Some)
            .with_context(|| format!("cannot measure the server (--gateway-pid {pid})")),
    }
}

/// Sessions opened by [`open_sessions`].
pub struct Opened<T> {
    /// The sessions that opened, with their index.
    pub sessions: Vec<(usize, T)>,
    /// Time from each session's slot to it being open.
    pub connect_latency: LatencyHist,
    /// How long opening all took.
    pub elapsed: Duration,
}

/// Opens `n` sessions at `--connect-rate`, each within
/// `--connect-timeout`. Failures are counted as errors under the reason
/// the connect function returns.
pub async fn open_sessions<T, F, Fut>(
    ctx: &Arc<Ctx>,
    first: usize,
    n: usize,
    connect: F,
) -> anyhow::Result<Opened<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
{
    let started = Instant::now();
    let slots = Arc::new(
        SlotPacer::new(ctx.set.connect_rate, ctx.clock.now_ns()).context("--connect-rate")?,
    );
    let progress = Progress::new("connect", n as u64);
    ctx.rec.timeline.mark(format!("connect wave: {n} sessions"));
    let mut tasks = JoinSet::new();
    for i in first..first + n {
        let ctx = ctx.clone();
        let slots = slots.clone();
        let connect = connect.clone();
        tasks.spawn(async move {
            let slot = slots.next_slot();
            tokio::time::sleep_until(ctx.instant(slot)).await;
            Recorder::add(&ctx.rec.attempted, 1);
            let result = tokio::time::timeout(ctx.set.connect_timeout, connect(i)).await;
            let took = crate::stats::latency_us(slot, ctx.clock.now_ns());
            match result {
                Ok(Ok(conn)) => {
                    Recorder::add(&ctx.rec.established, 1);
                    Some((i, conn, took))
                }
                Ok(Err(reason)) => {
                    Recorder::add(&ctx.rec.failed, 1);
                    ctx.rec.error(reason);
                    None
                }
                Err(_) => {
                    Recorder::add(&ctx.rec.failed, 1);
                    ctx.rec.error("connect: timed out (--connect-timeout)");
                    None
                }
            }
        });
    }
    let mut opened = Opened {
        sessions: Vec::with_capacity(n),
        connect_latency: LatencyHist::new(),
        elapsed: Duration::ZERO,
    };
    while let Some(joined) = tasks.join_next().await {
        progress.inc();
        match joined {
            Ok(Some((i, conn, took))) => {
                opened.connect_latency.record(took);
                opened.sessions.push((i, conn));
            }
            Ok(None) => {}
            Err(e) => ctx
                .rec
                .error(format!("loadtest bug: a connect task failed: {e}")),
        }
    }
    progress.finish();
    ctx.rec.timeline.mark(format!(
        "connect wave done: {} of {n} open",
        opened.sessions.len()
    ));
    opened.sessions.sort_by_key(|(i, _)| *i);
    opened.elapsed = started.elapsed();
    Ok(opened)
}

/// Waits for the traffic tasks, at most until `deadline`; those still
/// running then are stopped and counted as errors.
pub async fn join_until(ctx: &Ctx, tasks: &mut JoinSet<()>, deadline: tokio::time::Instant) {
    loop {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(None) => return,
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => ctx
                .rec
                .error(format!("loadtest bug: a session task failed: {e}")),
            Err(_) => {
                let left = tasks.len() as u64;
                tasks.abort_all();
                ctx.rec
                    .errors_n("session did not finish by the hard deadline", left);
                while tasks.join_next().await.is_some() {}
                return;
            }
        }
    }
}

/// The summary line about the generator's own send delay.
pub fn send_lag_line(ctx: &Ctx) -> Option<(String, String)> {
    let p = ctx.rec.send_lag_hist().percentiles()?;
    Some((
        "send lag (µs)".into(),
        format!(
            "p50 {}  p99 {}  max {}  (the generator's own delay, included in latency)",
            p.p50, p.p99, p.max
        ),
    ))
}

/// The summary line about connection set-up times.
pub fn connect_line(h: &LatencyHist) -> Option<(String, String)> {
    let p = h.percentiles()?;
    Some((
        "connect (µs)".into(),
        format!("p50 {}  p99 {}  max {}", p.p50, p.p99, p.max),
    ))
}

/// A progress bar on stderr, only when stderr is a terminal.
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// A bar of `len` steps.
    pub fn new(what: &str, len: u64) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = ProgressBar::new(len);
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix:>8} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(what.to_owned());
        Self(Some(bar))
    }

    /// A bar that follows the traffic phase second by second and shows the
    /// live counters; it stops by itself after `len` (+ drain).
    pub fn traffic(ctx: &Arc<Ctx>, len: Duration) -> Self {
        let p = Self::new("traffic", len.as_secs().max(1));
        if let Some(bar) = &p.0 {
            let bar = bar.clone();
            let ctx = ctx.clone();
            let limit = len + ctx.set.drain_timeout;
            tokio::spawn(async move {
                let start = Instant::now();
                while !bar.is_finished() && start.elapsed() <= limit {
                    bar.set_position(start.elapsed().as_secs().min(bar.length().unwrap_or(0)));
                    bar.set_message(format!(
                        "sent {}  received {}  errors {}",
                        Recorder::get(&ctx.rec.sent),
                        Recorder::get(&ctx.rec.received),
                        ctx.rec.error_count()
                    ));
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            });
        }
        p
    }

    /// One step done.
    pub fn inc(&self) {
        if let Some(b) = &self.0 {
            b.inc(1);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
