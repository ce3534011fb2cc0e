//! `raw --fanout`: plain binary WebSocket fan-out against a baseline server
//! that sends every message to every connected client (`baseline-ws --mode
//! broadcast`), the raw counterpart of the Ferry `fanout` scenario.
//!
//! `--sessions` subscribers connect first, then `--publishers` publishers,
//! each sending at `--rate` (open loop, batched like [`super::raw`]). Every
//! subscriber must receive every message of every publisher once and in
//! order; throughput is deliveries (to subscribers) per second, latency is
//! from a message's intended send time to its delivery. A broadcast server
//! sends the publishers their own messages too: they read and drop them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::raw::{Ws, connect, ws_reason};
use super::{
    Ctx, Outcome, Progress, Window, connect_line, join_until, open_sessions, send_lag_line,
};
use crate::payload::Stamp;
use crate::rate::{Pacer, interval_ns};
use crate::stats::{DeliveryTotals, LatencyBuf, Recorder, StreamCheck, latency_us};

/// How long before the first publish the sessions are told to start, plus
/// [`LEAD_PER_SESSION`] for each session (their tasks must be running).
const LEAD: Duration = Duration::from_millis(20);
const LEAD_PER_SESSION: Duration = Duration::from_micros(10);

/// What publishers tell subscribers.
struct Progressed {
    /// Messages sent, per publisher.
    sent: Vec<AtomicU64>,
    /// Publishers that have finished sending.
    done: AtomicUsize,
    /// Subscribers still receiving.
    receiving: AtomicUsize,
}

impl Progressed {
    fn total_if_done(&self) -> Option<u64> {
        (self.done.load(Ordering::Acquire) == self.sent.len())
            .then(|| self.sent.iter().map(|s| s.load(Ordering::Acquire)).sum())
    }

    fn sent_by(&self, publisher: usize) -> u64 {
        self.sent
            .get(publisher)
            .map_or(0, |s| s.load(Ordering::Acquire))
    }
}

/// Runs `raw --fanout`.
pub async fn run(ctx: Arc<Ctx>, publishers: usize) -> anyhow::Result<Outcome> {
    if publishers == 0 {
        anyhow::bail!("--publishers must be at least 1");
    }
    let subscribers = ctx.set.sessions;
    // Subscribers first: a broadcast server only sends to who is connected.
    let connector = ctx.clone();
    let subs = open_sessions(&ctx, 0, subscribers, move |_| {
        let ctx = connector.clone();
        async move { connect(&ctx).await }
    })
    .await?;
    let connector = ctx.clone();
    let pubs = open_sessions(&ctx, subscribers, publishers, move |_| {
        let ctx = connector.clone();
        async move { connect(&ctx).await }
    })
    .await?;
    // Publisher p has source number subscribers + p; only opened ones count.
    let sources: Vec<usize> = pubs.sessions.iter().map(|(i, _)| *i).collect();
    let progressed = Arc::new(Progressed {
        sent: (0..publishers).map(|_| AtomicU64::new(0)).collect(),
        done: AtomicUsize::new(publishers - pubs.sessions.len()),
        receiving: AtomicUsize::new(subs.sessions.len()),
    });

    let lead = LEAD + LEAD_PER_SESSION * (subscribers + publishers) as u32;
    let start_ns = ctx.clock.now_ns() + lead.as_nanos() as u64;
    let end_ns = start_ns + ctx.set.duration.as_nanos() as u64;
    let drain_deadline = ctx.instant(end_ns) + ctx.set.drain_timeout;
    let mut tasks = JoinSet::new();
    for (i, ws) in subs.sessions {
        tasks.spawn(subscriber(
            ctx.clone(),
            progressed.clone(),
            i,
            ws,
            sources.clone(),
            subscribers,
            drain_deadline,
        ));
    }
    let interval = interval_ns(ctx.set.rate)?;
    let n = pubs.sessions.len().max(1) as u64;
    for (k, (i, ws)) in pubs.sessions.into_iter().enumerate() {
        let pacer = Pacer::new(ctx.set.rate, start_ns + interval / n * k as u64, end_ns)?;
        let wake = ctx.ticker.register(pacer.clone());
        tasks.spawn(publisher(
            ctx.clone(),
            progressed.clone(),
            i,
            i - subscribers,
            ws,
            pacer,
            wake,
            drain_deadline,
        ));
    }
    tokio::time::sleep_until(ctx.instant(start_ns)).await;
    let window = Window::open(&ctx)?;
    let progress = Progress::traffic(&ctx, ctx.set.duration);
    join_until(&ctx, &mut tasks, drain_deadline + Duration::from_secs(2)).await;
    progress.finish();
    let measured = window.close(&ctx)?;

    let mut out = Outcome::new("raw-fanout", measured);
    out.extra.extend(connect_line(&subs.connect_latency));
    out.extra.extend(send_lag_line(&ctx));
    out.extra.push((
        "meaning".into(),
        format!("{subscribers} subscribers × {publishers} publishers; throughput = deliveries/s"),
    ));
    Ok(out)
}

/// Receives and checks every publisher's stream.
async fn subscriber(
    ctx: Arc<Ctx>,
    progressed: Arc<Progressed>,
    i: usize,
    mut ws: Ws,
    sources: Vec<usize>,
    first_publisher: usize,
    drain_deadline: Instant,
) {
    let mut streams: Vec<StreamCheck> = vec![StreamCheck::new(); progressed.sent.len()];
    let mut latency = LatencyBuf::new(i);
    let mut unique = 0u64;
    let drain = tokio::time::sleep_until(drain_deadline);
    tokio::pin!(drain);
    // Publishers may finish while nothing is coming: look again now and then.
    let mut recheck = tokio::time::interval(Duration::from_millis(50));
    loop {
        if progressed
            .total_if_done()
            .is_some_and(|total| unique >= total)
        {
            break;
        }
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    let now = ctx.clock.now_ns();
                    Recorder::add(&ctx.rec.received, 1);
                    let stream = Stamp::decode(&b).and_then(|s| {
                        let p = (s.source as usize).checked_sub(first_publisher)?;
                        Some((s, streams.get_mut(p)?))
                    });
                    match stream {
                        Some((s, stream)) => {
                            let before = stream.unique();
                            stream.observe(s.seq);
                            unique += stream.unique() - before;
                            latency.push(&ctx.rec, latency_us(s.intended_ns, now), now);
                        }
                        None => ctx.rec.error("message from no publisher of this run"),
                    }
                }
                Some(Ok(Message::Close(_))) | None => {
                    ctx.rec.error("server closed the connection");
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    ctx.rec.error(format!("receive: {}", ws_reason(&e)));
                    break;
                }
            },
            _ = recheck.tick() => {}
            () = &mut drain => break,
        }
    }
    progressed.receiving.fetch_sub(1, Ordering::AcqRel);
    latency.flush(&ctx.rec);
    let mut totals = DeliveryTotals::default();
    for source in sources {
        let p = source - first_publisher;
        if let Some(stream) = streams.get(p) {
            totals.add(&stream.finish(progressed.sent_by(p)));
        }
    }
    ctx.rec.delivery(&totals);
    let _ = tokio::time::timeout(Duration::from_millis(500), ws.close(None)).await;
}

/// Sends at the paced rate, batching what is due into one flush, and reads
/// (and drops) what the server broadcasts back to it.
#[allow(clippy::too_many_arguments)]
async fn publisher(
    ctx: Arc<Ctx>,
    progressed: Arc<Progressed>,
    i: usize,
    p: usize,
    mut ws: Ws,
    mut pacer: Pacer,
    mut wake: mpsc::Receiver<()>,
    drain_deadline: Instant,
) {
    let source = i as u32;
    let mut sent = 0u64;
    let mut sending = true;
    let drain = tokio::time::sleep_until(drain_deadline);
    tokio::pin!(drain);
    while sending {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    ctx.rec.error(format!("publisher receive: {}", ws_reason(&e)));
                    break;
                }
                None => {
                    ctx.rec.error("server closed the publisher's connection");
                    break;
                }
            },
            woke = wake.recv() => {
                let now = ctx.clock.now_ns();
                let mut batch = 0;
                let mut failed = None;
                while let Some(intended) = pacer.take_due(now) {
                    let payload = Stamp { seq: sent + 1, intended_ns: intended, source }
                        .encode(ctx.set.payload);
                    ctx.rec.send_lag(i, latency_us(intended, now));
                    match tokio::time::timeout_at(drain_deadline, ws.feed(Message::Binary(payload))).await {
                        Ok(Ok(())) => {
                            sent += 1;
                            batch += 1;
                        }
                        Ok(Err(e)) => { failed = Some(format!("send: {}", ws_reason(&e))); break; }
                        Err(_) => { failed = Some("send: blocked until the drain deadline".to_owned()); break; }
                    }
                }
                if failed.is_none() && batch > 0 {
                    match tokio::time::timeout_at(drain_deadline, ws.flush()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => failed = Some(format!("send: {}", ws_reason(&e))),
                        Err(_) => failed = Some("send: blocked until the drain deadline".to_owned()),
                    }
                }
                Recorder::add(&ctx.rec.sent, batch);
                progressed.sent[p].store(sent, Ordering::Release);
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
    progressed.done.fetch_add(1, Ordering::AcqRel);
    // Keep reading what the server broadcasts until the subscribers are
    // done, so that a full socket does not slow the server down.
    let mut recheck = tokio::time::interval(Duration::from_millis(50));
    while progressed.receiving.load(Ordering::Acquire) > 0 {
        tokio::select! {
            msg = ws.next() => if !matches!(msg, Some(Ok(_))) { break },
            _ = recheck.tick() => {}
            () = &mut drain => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_millis(500), ws.close(None)).await;
}
