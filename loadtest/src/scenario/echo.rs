//! `echo`: each session subscribes to its own channel `echo:<i>` and
//! publishes to it at `--rate` (or, with `--closed-loop`, the next message
//! when the previous one comes back): the round trip through the gateway,
//! with sequencing and acks. `resume` reuses this loop and cuts transports.

use std::sync::Arc;
use std::time::Duration;

use ferry_protocol::client::Client;
use rand::Rng;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::ferry::{self, Receiver, Reconnects, Subscribed};
use super::{
    Ctx, Outcome, Progress, Window, connect_line, join_until, open_sessions, send_lag_line,
};
use crate::payload::Stamp;
use crate::rate::{Pacer, interval_ns};
use crate::stats::{Recorder, latency_us};

/// How long before the first message the sessions are told to start, plus
/// [`LEAD_PER_SESSION`] for each session (their tasks must be running).
const LEAD: Duration = Duration::from_millis(20);
const LEAD_PER_SESSION: Duration = Duration::from_micros(10);

/// How the echo sessions behave.
#[derive(Debug, Clone, Copy)]
pub struct EchoOptions {
    /// Next message on delivery of the previous one.
    pub closed_loop: bool,
    /// Cut the transport at random, this often on average (resume).
    pub cut_interval: Option<Duration>,
}

/// Runs `echo`.
pub async fn run(ctx: Arc<Ctx>, closed_loop: bool) -> anyhow::Result<Outcome> {
    run_with(
        ctx,
        EchoOptions {
            closed_loop,
            cut_interval: None,
        },
        if closed_loop {
            "echo-closed-loop"
        } else {
            "echo"
        },
    )
    .await
}

/// Runs the echo loop with `opts`, reported as `scenario`.
pub async fn run_with(ctx: Arc<Ctx>, opts: EchoOptions, scenario: &str) -> anyhow::Result<Outcome> {
    let connector = ctx.clone();
    let opened = open_sessions(&ctx, 0, ctx.set.sessions, move |i| {
        let ctx = connector.clone();
        async move { ferry::connect_subscribed(&ctx, &format!("echo:{i}")).await }
    })
    .await?;

    let lead = LEAD + LEAD_PER_SESSION * opened.sessions.len() as u32;
    let start_ns = ctx.clock.now_ns() + lead.as_nanos() as u64;
    let end_ns = start_ns + ctx.set.duration.as_nanos() as u64;
    let drain_deadline = ctx.instant(end_ns) + ctx.set.drain_timeout;
    let interval = interval_ns(ctx.set.rate)?;
    let n = opened.sessions.len().max(1) as u64;
    let counters = Arc::new(Reconnects::default());
    let mut tasks = JoinSet::new();
    for (k, (i, session)) in opened.sessions.into_iter().enumerate() {
        let phase = interval / n * k as u64;
        let pacer = Pacer::new(ctx.set.rate, start_ns + phase, end_ns)?;
        // Registered here, before the start, not by the task.
        let wake = (!opts.closed_loop).then(|| ctx.ticker.register(pacer.clone()));
        tasks.spawn(echo_session(
            ctx.clone(),
            counters.clone(),
            i,
            session,
            Plan {
                opts,
                pacer,
                wake,
                start_ns,
                end_ns,
                drain_deadline,
            },
        ));
    }
    tokio::time::sleep_until(ctx.instant(start_ns)).await;
    let window = Window::open(&ctx)?;
    let progress = Progress::traffic(&ctx, ctx.set.duration);
    join_until(&ctx, &mut tasks, drain_deadline + Duration::from_secs(2)).await;
    progress.finish();
    let measured = window.close(&ctx)?;

    let mut out = Outcome::new(scenario, measured);
    out.extra.extend(connect_line(&opened.connect_latency));
    if !opts.closed_loop {
        out.extra.extend(send_lag_line(&ctx));
    }
    out.extra.push(("connections".into(), counters.summary()));
    Ok(out)
}

struct Plan {
    opts: EchoOptions,
    pacer: Pacer,
    wake: Option<mpsc::Receiver<()>>,
    start_ns: u64,
    end_ns: u64,
    drain_deadline: Instant,
}

/// Time to the next cut: exponential with the given mean, so cuts land at
/// random points of the traffic.
fn next_cut(mean: Duration) -> Duration {
    let u: f64 = rand::rng().random();
    mean.mul_f64(-(1.0 - u).ln())
}

async fn echo_session(
    ctx: Arc<Ctx>,
    counters: Arc<Reconnects>,
    i: usize,
    s: Subscribed,
    mut plan: Plan,
) {
    let Subscribed {
        client,
        mut events,
        channel,
        offset,
    } = s;
    let source = i as u32;
    let mut rx = Receiver::new(i);
    rx.subscribed(&channel, offset);
    let mut sent = 0u64;
    let mut sending = true;
    let mut wake = plan.wake.take();
    let drain = tokio::time::sleep_until(plan.drain_deadline);
    tokio::pin!(drain);
    let far = plan.drain_deadline + Duration::from_secs(3600);
    let first_cut = match plan.opts.cut_interval {
        Some(mean) => ctx.instant(plan.start_ns) + next_cut(mean),
        None => far,
    };
    let cut = tokio::time::sleep_until(first_cut);
    tokio::pin!(cut);

    if plan.opts.closed_loop {
        tokio::time::sleep_until(ctx.instant(plan.start_ns)).await;
        if publish(
            &ctx,
            &client,
            &channel,
            source,
            sent + 1,
            ctx.clock.now_ns(),
        )
        .await
        {
            sent += 1;
        } else {
            sending = false;
        }
    }

    loop {
        if !sending && rx.unique_from(source) >= sent {
            break;
        }
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else {
                    ctx.rec.error("the client's event stream ended");
                    break;
                };
                let fresh = rx.on_event(&ctx, &counters, ev);
                let answered = fresh.is_some_and(|s| s.source == source && s.seq == sent);
                if plan.opts.closed_loop && sending && answered {
                    {
                        let now = ctx.clock.now_ns();
                        if now >= plan.end_ns {
                            sending = false;
                        } else if publish(&ctx, &client, &channel, source, sent + 1, now).await {
                            sent += 1;
                        } else {
                            sending = false;
                        }
                    }
                }
            }
            woke = async { match wake.as_mut() { Some(w) => w.recv().await, None => None } }, if sending && wake.is_some() => {
                let now = ctx.clock.now_ns();
                while let Some(intended) = plan.pacer.take_due(now) {
                    ctx.rec.send_lag(i, latency_us(intended, now));
                    if !publish(&ctx, &client, &channel, source, sent + 1, intended).await {
                        sending = false;
                        break;
                    }
                    sent += 1;
                }
                if woke.is_none() || plan.pacer.next_due().is_none() {
                    sending = false;
                }
            }
            () = &mut cut, if sending => {
                client.kill_transport();
                counters.cuts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                ctx.rec.timeline.event(crate::stats::EventKind::Cut, 1);
                let mean = plan.opts.cut_interval.unwrap_or(Duration::from_secs(3600));
                cut.as_mut().reset(Instant::now() + next_cut(mean));
            }
            () = &mut drain => break,
        }
    }
    rx.finish(&ctx, |_| sent, [source]);
    let _ = tokio::time::timeout(Duration::from_secs(1), client.close()).await;
}

/// Publishes message `seq` of `source`; false (and an error counted) when
/// the client refused.
pub async fn publish(
    ctx: &Ctx,
    client: &Client,
    channel: &str,
    source: u32,
    seq: u64,
    intended_ns: u64,
) -> bool {
    let payload = Stamp {
        seq,
        intended_ns,
        source,
    }
    .encode(ctx.set.payload);
    match client.publish(channel, payload).await {
        Ok(_client_seq) => {
            Recorder::add(&ctx.rec.sent, 1);
            true
        }
        Err(e) => {
            ctx.rec.error(format!("publish: {e}"));
            false
        }
    }
}
