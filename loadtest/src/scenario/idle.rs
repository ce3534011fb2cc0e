//! `idle`: holds `--sessions` Ferry sessions for `--duration`; with
//! `--gateway-pid`, reports the gateway's resident memory per session:
//! (VmRSS after − VmRSS before) / sessions still open.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::ferry::{self, Receiver, Reconnects};
use super::{Ctx, Outcome, Progress, Window, open_sessions};
use crate::stats::LatencyHist;
use ferry_protocol::client::Event;

/// Runs `idle`.
pub async fn run(ctx: Arc<Ctx>) -> anyhow::Result<Outcome> {
    let window = Window::open(&ctx)?;
    let connector = ctx.clone();
    let opened = open_sessions(&ctx, 0, ctx.set.sessions, move |_| {
        let ctx = connector.clone();
        async move { ferry::connect(&ctx).await }
    })
    .await?;
    let established = opened.sessions.len();
    let hold_end = Instant::now() + ctx.set.duration;
    let progress = Progress::traffic(&ctx, ctx.set.duration);
    let counters = Arc::new(Reconnects::default());
    let mut holders = JoinSet::new();
    for (i, (client, mut events)) in opened.sessions {
        let ctx = ctx.clone();
        let counters = counters.clone();
        holders.spawn(async move {
            // The SDK keeps the session alive (heartbeats); here we only
            // watch for it going away.
            let mut rx = Receiver::new(i);
            loop {
                match tokio::time::timeout_at(hold_end, events.recv()).await {
                    // Events stay with the client: dropping them could
                    // look like an abandoned client to the SDK.
                    Err(_) => return Some((client, events)),
                    Ok(None) => {
                        ctx.rec.error("idle session ended");
                        return None;
                    }
                    Ok(Some(ev @ Event::Disconnected { .. })) => {
                        ctx.rec.error("idle session disconnected");
                        rx.on_event(&ctx, &counters, ev);
                    }
                    Ok(Some(ev)) => {
                        rx.on_event(&ctx, &counters, ev);
                    }
                }
            }
        });
    }
    let mut held = Vec::new();
    while let Some(h) = holders.join_next().await {
        if let Ok(Some(client)) = h {
            held.push(client);
        }
    }
    progress.finish();
    let measured = window.close(&ctx)?;
    let still_open = held.len();
    let mut closing = JoinSet::new();
    for (client, events) in held {
        closing.spawn(async move {
            // The events live until the client is closed.
            let _events = events;
            let _ = tokio::time::timeout(Duration::from_secs(2), client.close()).await;
        });
    }
    while closing.join_next().await.is_some() {}

    let mut out = Outcome::new("idle", measured);
    out.units = Some(0);
    out.latency = Some(LatencyHist::new());
    out.rss_per_session = measured
        .gateway_rss
        .filter(|_| still_open > 0)
        .map(|(before, after)| (after as f64 - before as f64) / still_open as f64);
    if let Some((before, after)) = measured.gateway_rss {
        out.extra.push((
            "server VmRSS".into(),
            format!("{before} bytes before, {after} bytes with {still_open} idle sessions"),
        ));
    }
    if let Some(p) = opened.connect_latency.percentiles() {
        out.extra.push((
            "connect (µs)".into(),
            format!(
                "p50 {}  p99 {}  max {}  ({} in {:.2} s)",
                p.p50,
                p.p99,
                p.max,
                established,
                opened.elapsed.as_secs_f64()
            ),
        ));
    }
    out.extra.push(("connections".into(), counters.summary()));
    Ok(out)
}
