//! `raw`: plain binary WebSocket against a baseline echo server (no Ferry
//! protocol), so that servers can be compared on equal terms.
//!
//! - default: open loop, each session sends `--rate` messages per second
//!   whatever the replies do; latency from the intended send time.
//! - `--closed-loop`: each session sends the next message when the reply
//!   to the previous one arrives (throughput and server CPU per message).
//! - `--idle`: holds `--sessions` connections for `--duration` and, with
//!   `--gateway-pid`, reports the server's resident bytes per connection.
//!
//! Payloads carry a [`Stamp`]: the echo tells which message came back and
//! how late.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use super::{
    Ctx, Outcome, Progress, TransportKind, Window, connect_line, io_reason, join_until,
    open_sessions, send_lag_line,
};
use crate::payload::Stamp;
use crate::rate::{Pacer, interval_ns};
use crate::stats::{LatencyBuf, LatencyHist, Recorder, StreamCheck, latency_us};

/// The generator's own read buffer per connection. tungstenite's default
/// (128 KiB, zero-filled) would cost 1.3 GB for 10,000 idle connections.
const CLIENT_READ_BUFFER: usize = 4 * 1024;
/// How long before the first message the sessions are told to start, plus
/// [`LEAD_PER_SESSION`] for each session (their tasks must be running).
const LEAD: Duration = Duration::from_millis(20);
const LEAD_PER_SESSION: Duration = Duration::from_micros(10);

/// A client WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

/// Which kind of raw run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawMode {
    /// Fixed rate per session.
    OpenLoop,
    /// Next message on reply.
    ClosedLoop,
    /// Connections held idle.
    Idle,
}

/// Runs the raw scenario.
pub async fn run(ctx: Arc<Ctx>, mode: RawMode) -> anyhow::Result<Outcome> {
    if ctx.set.transport != TransportKind::Ws {
        bail!("raw speaks plain WebSocket (ws://) only; drop --transport or use a Ferry scenario");
    }
    if mode == RawMode::Idle {
        return idle(ctx).await;
    }
    let connector = ctx.clone();
    let opened = open_sessions(&ctx, 0, ctx.set.sessions, move |_| {
        let ctx = connector.clone();
        async move { connect(&ctx).await }
    })
    .await?;

    let lead = LEAD + LEAD_PER_SESSION * opened.sessions.len() as u32;
    let start_ns = ctx.clock.now_ns() + lead.as_nanos() as u64;
    let end_ns = start_ns + ctx.set.duration.as_nanos() as u64;
    let drain_deadline = ctx.instant(end_ns) + ctx.set.drain_timeout;
    let interval = interval_ns(ctx.set.rate)?;
    let n = opened.sessions.len().max(1) as u64;
    let mut tasks = JoinSet::new();
    for (k, (i, ws)) in opened.sessions.into_iter().enumerate() {
        let ctx = ctx.clone();
        match mode {
            RawMode::ClosedLoop => {
                tasks.spawn(closed_loop(ctx, i, ws, start_ns, end_ns, drain_deadline));
            }
            _ => {
                // Sessions spread evenly over one interval: no bursts.
                let phase = interval / n * k as u64;
                let pacer = Pacer::new(ctx.set.rate, start_ns + phase, end_ns)?;
                // Registered here, before the start, not by the task.
                let wake = ctx.ticker.register(pacer.clone());
                tasks.spawn(open_loop(ctx, i, ws, pacer, wake, drain_deadline));
            }
        }
    }
    tokio::time::sleep_until(ctx.instant(start_ns)).await;
    let window = Window::open(&ctx)?;
    let progress = Progress::traffic(&ctx, ctx.set.duration);
    join_until(&ctx, &mut tasks, drain_deadline + Duration::from_secs(1)).await;
    progress.finish();
    let measured = window.close(&ctx)?;

    let scenario = match mode {
        RawMode::ClosedLoop => "raw-closed-loop",
        _ => "raw",
    };
    let mut out = Outcome::new(scenario, measured);
    out.extra.extend(connect_line(&opened.connect_latency));
    if mode == RawMode::OpenLoop {
        out.extra.extend(send_lag_line(&ctx));
    }
    Ok(out)
}

/// Opens one WebSocket to `--url`.
pub async fn connect(ctx: &Ctx) -> Result<Ws, String> {
    let tcp = TcpStream::connect(ctx.set.addr)
        .await
        .map_err(|e| format!("connect: {}", io_reason(&e)))?;
    // What any latency-minded client does; the baselines do it too.
    let _ = tcp.set_nodelay(true);
    let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(ctx.set.url.as_str(), tcp, Some(config))
            .await
            .map_err(|e| format!("handshake: {}", ws_reason(&e)))?;
    Ok(ws)
}

/// A short, stable reason for a WebSocket error.
pub fn ws_reason(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Io(io) => io_reason(io),
        tungstenite::Error::Http(resp) => format!("server answered HTTP {}", resp.status()),
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            "connection closed".into()
        }
        other => other.to_string(),
    }
}

/// What one session learned, merged into the recorder at its end.
struct Tally {
    source: u32,
    check: StreamCheck,
    latency: LatencyBuf,
    sent: u64,
}

impl Tally {
    fn new(i: usize) -> Self {
        Self {
            source: i as u32,
            check: StreamCheck::new(),
            latency: LatencyBuf::new(i),
            sent: 0,
        }
    }

    /// An echo came back at `now_ns`.
    fn on_reply(&mut self, ctx: &Ctx, payload: &[u8], now_ns: u64) {
        Recorder::add(&ctx.rec.received, 1);
        match Stamp::decode(payload) {
            Some(s) if s.source == self.source && s.seq >= 1 && s.seq <= self.sent => {
                self.check.observe(s.seq);
                self.latency
                    .push(&ctx.rec, latency_us(s.intended_ns, now_ns), now_ns);
            }
            _ => ctx.rec.error("reply that this session never sent"),
        }
    }

    fn finish(mut self, ctx: &Ctx) {
        self.latency.flush(&ctx.rec);
        ctx.rec.delivery(&self.check.finish(self.sent));
    }
}

enum Step {
    Go,
    Stop,
}

fn on_message(
    ctx: &Ctx,
    tally: &mut Tally,
    msg: Option<Result<Message, tungstenite::Error>>,
) -> Step {
    match msg {
        Some(Ok(Message::Binary(b))) => {
            tally.on_reply(ctx, &b, ctx.clock.now_ns());
            Step::Go
        }
        Some(Ok(Message::Close(_))) | None => {
            ctx.rec.error("server closed the connection");
            Step::Stop
        }
        Some(Ok(_)) => Step::Go,
        Some(Err(e)) => {
            ctx.rec.error(format!("receive: {}", ws_reason(&e)));
            Step::Stop
        }
    }
}

async fn open_loop(
    ctx: Arc<Ctx>,
    i: usize,
    mut ws: Ws,
    mut pacer: Pacer,
    mut wake: mpsc::Receiver<()>,
    drain_deadline: Instant,
) {
    let mut tally = Tally::new(i);
    let mut sending = true;
    let drain = tokio::time::sleep_until(drain_deadline);
    tokio::pin!(drain);
    loop {
        if !sending && tally.check.unique() >= tally.sent {
            break;
        }
        tokio::select! {
            msg = ws.next() => {
                if let Step::Stop = on_message(&ctx, &mut tally, msg) {
                    break;
                }
            }
            woke = wake.recv(), if sending => {
                let now = ctx.clock.now_ns();
                let mut batch = 0;
                let mut failed = None;
                while let Some(intended) = pacer.take_due(now) {
                    let seq = tally.sent + 1;
                    let payload = Stamp { seq, intended_ns: intended, source: tally.source }
                        .encode(ctx.set.payload);
                    ctx.rec.send_lag(i, latency_us(intended, now));
                    // feed only queues (or writes when tungstenite's buffer
                    // is full); one flush below sends the whole batch.
                    match tokio::time::timeout_at(drain_deadline, ws.feed(Message::Binary(payload))).await {
                        Ok(Ok(())) => {
                            tally.sent = seq;
                            batch += 1;
                        }
                        Ok(Err(e)) => { failed = Some(format!("send: {}", ws_reason(&e))); break; }
                        Err(_) => { failed = Some("send: blocked until the drain deadline".into()); break; }
                    }
                }
                if failed.is_none() && batch > 0 {
                    match tokio::time::timeout_at(drain_deadline, ws.flush()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => failed = Some(format!("send: {}", ws_reason(&e))),
                        Err(_) => failed = Some("send: blocked until the drain deadline".into()),
                    }
                }
                Recorder::add(&ctx.rec.sent, batch);
                if let Some(reason) = failed {
                    ctx.rec.error(reason);
                    break;
                }
                if woke.is_none() || pacer.next_due().is_none() {
                    sending = false;
                }
            }
            () = &mut drain => break,
        }
    }
    tally.finish(&ctx);
    let _ = tokio::time::timeout(Duration::from_millis(500), ws.close(None)).await;
}

async fn closed_loop(
    ctx: Arc<Ctx>,
    i: usize,
    mut ws: Ws,
    start_ns: u64,
    end_ns: u64,
    drain_deadline: Instant,
) {
    tokio::time::sleep_until(ctx.instant(start_ns)).await;
    let mut tally = Tally::new(i);
    let drain = tokio::time::sleep_until(drain_deadline);
    tokio::pin!(drain);
    let mut send_next = true;
    loop {
        if send_next {
            let now = ctx.clock.now_ns();
            if now >= end_ns {
                break;
            }
            let seq = tally.sent + 1;
            // In a closed loop the intended time is the send time.
            let payload = Stamp {
                seq,
                intended_ns: now,
                source: tally.source,
            }
            .encode(ctx.set.payload);
            match tokio::time::timeout_at(drain_deadline, ws.send(Message::Binary(payload))).await {
                Ok(Ok(())) => {
                    tally.sent = seq;
                    Recorder::add(&ctx.rec.sent, 1);
                }
                Ok(Err(e)) => {
                    ctx.rec.error(format!("send: {}", ws_reason(&e)));
                    break;
                }
                Err(_) => {
                    ctx.rec.error("send: blocked until the drain deadline");
                    break;
                }
            }
        }
        tokio::select! {
            msg = ws.next() => {
                let before = tally.check.unique();
                if let Step::Stop = on_message(&ctx, &mut tally, msg) {
                    break;
                }
                send_next = tally.check.unique() > before;
            }
            () = &mut drain => break,
        }
    }
    tally.finish(&ctx);
    let _ = tokio::time::timeout(Duration::from_millis(500), ws.close(None)).await;
}

/// Holds connections idle and measures the server's memory per connection.
async fn idle(ctx: Arc<Ctx>) -> anyhow::Result<Outcome> {
    let window = Window::open(&ctx)?;
    let connector = ctx.clone();
    let opened = open_sessions(&ctx, 0, ctx.set.sessions, move |_| {
        let ctx = connector.clone();
        async move { connect(&ctx).await }
    })
    .await?;
    let established = opened.sessions.len();
    // Each connection is watched while it is held, so that one the server
    // drops is an error and not silently missing from the measurement.
    let hold_end = Instant::now() + ctx.set.duration;
    let progress = Progress::traffic(&ctx, ctx.set.duration);
    let mut holders = JoinSet::new();
    for (_, mut ws) in opened.sessions {
        let ctx = ctx.clone();
        holders.spawn(async move {
            loop {
                match tokio::time::timeout_at(hold_end, ws.next()).await {
                    Err(_) => return Some(ws),
                    Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                    Ok(Some(Ok(_))) => ctx.rec.error("idle connection received data"),
                    Ok(Some(Err(_)) | None) => {
                        ctx.rec.error("server closed an idle connection");
                        return None;
                    }
                }
            }
        });
    }
    let mut held = Vec::with_capacity(established);
    while let Some(h) = holders.join_next().await {
        if let Ok(Some(ws)) = h {
            held.push(ws);
        }
    }
    progress.finish();
    let measured = window.close(&ctx)?;
    let still_open = held.len();
    drop(held);

    let mut out = Outcome::new("raw-idle", measured);
    out.units = Some(0);
    out.latency = Some(LatencyHist::new());
    out.rss_per_session = measured
        .gateway_rss
        .filter(|_| still_open > 0)
        .map(|(before, after)| (after as f64 - before as f64) / still_open as f64);
    if let Some((before, after)) = measured.gateway_rss {
        out.extra.push((
            "server VmRSS".into(),
            format!("{before} bytes before, {after} bytes with {still_open} idle connections"),
        ));
    }
    if let Some(p) = opened.connect_latency.percentiles() {
        out.extra.push((
            "connect (µs)".into(),
            format!(
                "p50 {}  p99 {}  max {}  ({established} in {:.2} s)",
                p.p50,
                p.p99,
                p.max,
                opened.elapsed.as_secs_f64()
            ),
        ));
    }
    Ok(out)
}
