//! `fanout`: `--publishers` sessions publish at `--rate` each into channel
//! `fanout:0`, which `--sessions` other sessions subscribe to. Every
//! subscriber must receive every message once, in order per publisher.
//! Throughput is deliveries per second; latency is from a message's
//! intended publish time to its delivery.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::echo::publish;
use super::ferry::{self, Receiver, Reconnects, Subscribed};
use super::{
    Ctx, Outcome, Progress, Window, connect_line, join_until, open_sessions, send_lag_line,
};
use crate::rate::{Pacer, interval_ns};
use crate::stats::latency_us;
use ferry_protocol::client::{Client, Event, Events};

const CHANNEL: &str = "fanout:0";
/// How long before the first publish the sessions are told to start, plus
/// [`LEAD_PER_SESSION`] for each session (their tasks must be running).
const LEAD: Duration = Duration::from_millis(20);
const LEAD_PER_SESSION: Duration = Duration::from_micros(10);

/// What publishers tell subscribers.
struct Progressed {
    /// Messages sent, per publisher (indexed by publisher number).
    sent: Vec<AtomicU64>,
    /// Publishers that have finished sending.
    done: AtomicUsize,
}

impl Progressed {
    fn total_if_done(&self) -> Option<u64> {
        (self.done.load(Ordering::Acquire) == self.sent.len())
            .then(|| self.sent.iter().map(|s| s.load(Ordering::Acquire)).sum())
    }
}

/// Runs `fanout`.
pub async fn run(ctx: Arc<Ctx>, publishers: usize) -> anyhow::Result<Outcome> {
    if publishers == 0 {
        anyhow::bail!("--publishers must be at least 1");
    }
    let subscribers = ctx.set.sessions;
    // Subscribers first: every one must be subscribed before the first
    // publish, or it would rightly miss messages.
    let connector = ctx.clone();
    let subs = open_sessions(&ctx, 0, subscribers, move |_| {
        let ctx = connector.clone();
        async move { ferry::connect_subscribed(&ctx, CHANNEL).await }
    })
    .await?;
    let connector = ctx.clone();
    let pubs = open_sessions(&ctx, subscribers, publishers, move |_| {
        let ctx = connector.clone();
        async move { ferry::connect(&ctx).await }
    })
    .await?;
    // Sources are numbered by session index: publishers are
    // subscribers..subscribers+publishers; only opened ones count.
    let sources: Vec<u32> = pubs.sessions.iter().map(|(i, _)| *i as u32).collect();
    let progressed = Arc::new(Progressed {
        sent: (0..publishers).map(|_| AtomicU64::new(0)).collect(),
        done: AtomicUsize::new(publishers - pubs.sessions.len()),
    });

    let lead = LEAD + LEAD_PER_SESSION * (subscribers + publishers) as u32;
    let start_ns = ctx.clock.now_ns() + lead.as_nanos() as u64;
    let end_ns = start_ns + ctx.set.duration.as_nanos() as u64;
    let drain_deadline = ctx.instant(end_ns) + ctx.set.drain_timeout;
    let counters = Arc::new(Reconnects::default());
    let mut tasks = JoinSet::new();
    for (i, s) in subs.sessions {
        tasks.spawn(subscriber(
            ctx.clone(),
            counters.clone(),
            progressed.clone(),
            i,
            s,
            sources.clone(),
            subscribers,
            drain_deadline,
        ));
    }
    let interval = interval_ns(ctx.set.rate)?;
    let n = pubs.sessions.len().max(1) as u64;
    for (k, (i, (client, events))) in pubs.sessions.into_iter().enumerate() {
        let pacer = Pacer::new(ctx.set.rate, start_ns + interval / n * k as u64, end_ns)?;
        let wake = ctx.ticker.register(pacer.clone());
        tasks.spawn(publisher(
            ctx.clone(),
            progressed.clone(),
            i,
            i - subscribers,
            client,
            events,
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

    let mut out = Outcome::new("fanout", measured);
    out.extra.extend(connect_line(&subs.connect_latency));
    out.extra.extend(send_lag_line(&ctx));
    out.extra.push((
        "meaning".into(),
        format!("{subscribers} subscribers × {publishers} publishers; throughput = deliveries/s"),
    ));
    out.extra.push(("connections".into(), counters.summary()));
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn subscriber(
    ctx: Arc<Ctx>,
    counters: Arc<Reconnects>,
    progressed: Arc<Progressed>,
    i: usize,
    s: Subscribed,
    sources: Vec<u32>,
    first_publisher: usize,
    drain_deadline: Instant,
) {
    let Subscribed {
        client,
        mut events,
        channel,
        offset,
    } = s;
    let mut rx = Receiver::new(i);
    rx.subscribed(&channel, offset);
    let drain = tokio::time::sleep_until(drain_deadline);
    tokio::pin!(drain);
    // Publishers may finish while no delivery is coming: look again now
    // and then.
    let mut recheck = tokio::time::interval(Duration::from_millis(50));
    loop {
        if progressed
            .total_if_done()
            .is_some_and(|total| rx.unique_total() >= total)
        {
            break;
        }
        tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => { rx.on_event(&ctx, &counters, ev); }
                None => {
                    ctx.rec.error("the client's event stream ended");
                    break;
                }
            },
            _ = recheck.tick() => {}
            () = &mut drain => break,
        }
    }
    let sent_by = |source: u32| {
        let p = (source as usize).saturating_sub(first_publisher);
        progressed
            .sent
            .get(p)
            .map_or(0, |s| s.load(Ordering::Acquire))
    };
    rx.finish(&ctx, sent_by, sources);
    let _ = tokio::time::timeout(Duration::from_secs(1), client.close()).await;
}

#[allow(clippy::too_many_arguments)]
async fn publisher(
    ctx: Arc<Ctx>,
    progressed: Arc<Progressed>,
    i: usize,
    p: usize,
    client: Client,
    mut events: Events,
    mut pacer: Pacer,
    mut wake: mpsc::Receiver<()>,
    drain_deadline: Instant,
) {
    let source = i as u32;
    let mut sent = 0u64;
    'sending: while let Some(()) = tokio::select! {
        w = wake.recv() => w,
        ev = events.recv() => match ev {
            // A publisher subscribes to nothing; errors are what may come.
            Some(Event::ServerError { code, .. }) => {
                ctx.rec.error(format!("server error {code:?}"));
                Some(())
            }
            Some(_) => Some(()),
            None => {
                ctx.rec.error("the publisher's event stream ended");
                None
            }
        },
    } {
        let now = ctx.clock.now_ns();
        while let Some(intended) = pacer.take_due(now) {
            ctx.rec.send_lag(i, latency_us(intended, now));
            if !publish(&ctx, &client, CHANNEL, source, sent + 1, intended).await {
                break 'sending;
            }
            sent += 1;
            progressed.sent[p].store(sent, Ordering::Release);
        }
        if pacer.next_due().is_none() {
            break;
        }
    }
    // Publishes are queued by the SDK: wait until the gateway has them all.
    let _ = tokio::time::timeout_at(drain_deadline, client.wait_acked()).await;
    progressed.done.fetch_add(1, Ordering::AcqRel);
    let _ = tokio::time::timeout(Duration::from_secs(1), client.close()).await;
}
