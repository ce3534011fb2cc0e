//! `connect`: opens `--sessions` sessions at `--connect-rate` and closes
//! them. Throughput is handshakes per second (sessions that reached
//! WELCOME), latency the time from a session's slot to WELCOME, and server
//! CPU is per handshake.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::{Ctx, Outcome, Window, ferry, open_sessions};

/// Runs `connect`.
pub async fn run(ctx: Arc<Ctx>) -> anyhow::Result<Outcome> {
    let window = Window::open(&ctx)?;
    let connector = ctx.clone();
    let opened = open_sessions(&ctx, 0, ctx.set.sessions, move |_| {
        let ctx = connector.clone();
        async move { ferry::connect(&ctx).await }
    })
    .await?;
    let measured = window.close(&ctx)?;
    let established = opened.sessions.len() as u64;

    let mut closing = JoinSet::new();
    for (_, (client, events)) in opened.sessions {
        closing.spawn(async move {
            // The events live until the client is closed.
            let _events = events;
            let _ = tokio::time::timeout(Duration::from_secs(2), client.close()).await;
        });
    }
    while closing.join_next().await.is_some() {}

    let mut out = Outcome::new("connect", measured);
    out.units = Some(established);
    out.latency = Some(opened.connect_latency);
    out.extra.push((
        "meaning".into(),
        "throughput = handshakes/s, latency = time to WELCOME, server CPU per handshake".into(),
    ));
    Ok(out)
}
