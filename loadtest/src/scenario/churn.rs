//! `churn`: `--sessions` loops, each connecting, subscribing to
//! `churn:<i>`, publishing one message, waiting for it and closing, over
//! and over for `--duration` (new sessions are paced by `--connect-rate`).
//! Throughput is cycles (handshakes) per second.
//!
//! Leak check, with `--metrics-url`: the gateway's gauges `ferry_sessions`
//! (labels `state`, `worker`) and `ferry_worker_connections` (label
//! `worker`), each summed over its labels, are scraped before the run and
//! must return to those values within `--leak-timeout` after it. The
//! gateway refreshes them about once a second.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::echo::publish;
use super::ferry::{self, Receiver, Reconnects};
use super::{Ctx, Outcome, Progress, Window, join_until, resolve, split_url};
use crate::rate::SlotPacer;
use crate::stats::Recorder;

/// The gauges that must come back to their baseline.
const GAUGES: [&str; 2] = ["ferry_sessions", "ferry_worker_connections"];
/// The detached part of `ferry_sessions`, as [`parse_gauges`] keys it.
const DETACHED: &str = "ferry_sessions{state=\"detached\"}";
/// Largest metrics page we read.
const MAX_METRICS_BYTES: usize = 8 << 20;

/// Runs `churn`.
pub async fn run(
    ctx: Arc<Ctx>,
    metrics_url: Option<String>,
    leak_timeout: Duration,
) -> anyhow::Result<Outcome> {
    let baseline = match &metrics_url {
        Some(url) => Some(
            scrape(url, ctx.set.allow_remote)
                .await
                .context("cannot read the gateway's metrics before the run (--metrics-url)")?,
        ),
        None => None,
    };

    let end = tokio::time::Instant::now() + ctx.set.duration;
    let slots = Arc::new(SlotPacer::new(ctx.set.connect_rate, ctx.clock.now_ns())?);
    let cycles = Arc::new(AtomicU64::new(0));
    let counters = Arc::new(Reconnects::default());
    let window = Window::open(&ctx)?;
    let progress = Progress::traffic(&ctx, ctx.set.duration);
    let mut tasks = JoinSet::new();
    for i in 0..ctx.set.sessions {
        tasks.spawn(churn_loop(
            ctx.clone(),
            counters.clone(),
            slots.clone(),
            cycles.clone(),
            i,
            end,
        ));
    }
    // A cycle in flight at the end may take a connect timeout and a drain.
    let deadline = end + ctx.set.connect_timeout * 2 + ctx.set.drain_timeout;
    join_until(&ctx, &mut tasks, deadline).await;
    progress.finish();
    let measured = window.close(&ctx)?;
    let cycles = cycles.load(Ordering::Relaxed);

    let mut out = Outcome::new("churn", measured);
    out.units = Some(cycles);
    out.extra.push((
        "meaning".into(),
        "throughput = connect/subscribe/publish/receive/close cycles per second".into(),
    ));
    out.extra.push(("connections".into(), counters.summary()));
    if let (Some(url), Some(before)) = (&metrics_url, baseline) {
        let line = leak_check(&ctx, url, &before, leak_timeout).await;
        out.extra.push(("leak check".into(), line));
    }
    Ok(out)
}

async fn churn_loop(
    ctx: Arc<Ctx>,
    counters: Arc<Reconnects>,
    slots: Arc<SlotPacer>,
    cycles: Arc<AtomicU64>,
    i: usize,
    end: tokio::time::Instant,
) {
    let channel = format!("churn:{i}");
    let source = i as u32;
    let mut seq = 0u64;
    // Closes run beside the loop: a QUIC close waits for the connection to
    // drain (about three PTOs, ~80 ms on loopback), which is the client's
    // time, not a handshake's.
    let mut closing = JoinSet::new();
    loop {
        while closing.try_join_next().is_some() {}
        let slot = slots.next_slot();
        // Slots are handed out at --connect-rate; loops slower than that
        // stop at the end of the duration, not when the slots run out.
        if ctx.instant(slot) >= end || tokio::time::Instant::now() >= end {
            break;
        }
        tokio::time::sleep_until(ctx.instant(slot)).await;
        Recorder::add(&ctx.rec.attempted, 1);
        let opened = tokio::time::timeout(
            ctx.set.connect_timeout,
            ferry::connect_subscribed(&ctx, &channel),
        )
        .await;
        let s = match opened {
            Ok(Ok(s)) => {
                Recorder::add(&ctx.rec.established, 1);
                s
            }
            Ok(Err(reason)) => {
                Recorder::add(&ctx.rec.failed, 1);
                ctx.rec.error(reason);
                continue;
            }
            Err(_) => {
                Recorder::add(&ctx.rec.failed, 1);
                ctx.rec.error("connect: timed out (--connect-timeout)");
                continue;
            }
        };
        // One message per cycle: each cycle is its own little stream.
        let mut rx = Receiver::new(i);
        rx.subscribed(&s.channel, s.offset);
        let mut events = s.events;
        seq += 1;
        let sent = publish(&ctx, &s.client, &channel, source, seq, ctx.clock.now_ns()).await;
        if sent {
            let wait = tokio::time::timeout(ctx.set.drain_timeout, async {
                while let Some(ev) = events.recv().await {
                    if rx.on_event(&ctx, &counters, ev).is_some() {
                        return true;
                    }
                }
                false
            })
            .await;
            if !matches!(wait, Ok(true)) {
                ctx.rec
                    .error("churn: own message not delivered before the drain timeout");
            }
        }
        // The stream of this cycle holds exactly message `seq`.
        rx.finish(&ctx, |_| u64::from(sent), [source]);
        let client = s.client;
        closing.spawn(async move {
            // The events live until the client is closed.
            let _events = events;
            let _ = tokio::time::timeout(Duration::from_secs(2), client.close()).await;
        });
        cycles.fetch_add(1, Ordering::Relaxed);
    }
    while closing.join_next().await.is_some() {}
}

/// Polls the gauges until they are back at `before`; returns the summary
/// line, counting an error when they are not.
async fn leak_check(
    ctx: &Ctx,
    url: &str,
    before: &BTreeMap<String, f64>,
    timeout: Duration,
) -> String {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now = match scrape(url, ctx.set.allow_remote).await {
            Ok(now) => now,
            Err(e) => {
                ctx.rec
                    .error("leak check: metrics unreadable after the run");
                return format!("metrics unreadable after the run: {e:#}");
            }
        };
        let leaked: Vec<String> = GAUGES
            .iter()
            .filter_map(|g| {
                let (b, a) = (
                    before.get(*g).copied().unwrap_or(0.0),
                    now.get(*g).copied().unwrap_or(0.0),
                );
                (a > b).then(|| format!("{g} {a} (was {b})"))
            })
            .collect();
        if leaked.is_empty() {
            return format!("gauges back to baseline: {}", describe(&now));
        }
        if tokio::time::Instant::now() >= deadline {
            ctx.rec
                .error("leak: gauges did not return to their baseline");
            let (b, a) = (
                before.get(DETACHED).copied().unwrap_or(0.0),
                now.get(DETACHED).copied().unwrap_or(0.0),
            );
            let hint = if a > b {
                format!(
                    "; {} of the sessions are detached: a closed client's session is kept for \
                     the resume window (session.resume_window, 120 s by default), so run the \
                     gateway with a short one (FERRY_SESSION_RESUME_WINDOW=2s) or raise \
                     --leak-timeout past it",
                    a - b
                )
            } else {
                String::new()
            };
            return format!(
                "LEAK after {:.0} s: {}{hint}",
                timeout.as_secs_f64(),
                leaked.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn describe(gauges: &BTreeMap<String, f64>) -> String {
    GAUGES
        .iter()
        .map(|g| format!("{g} {}", gauges.get(*g).copied().unwrap_or(0.0)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads `url` (plain HTTP) and returns the gauges of [`GAUGES`] (summed
/// over their labels). HTTP/1.0, so the body is never chunked.
pub async fn scrape(url: &str, allow_remote: bool) -> anyhow::Result<BTreeMap<String, f64>> {
    let parts = split_url(url)?;
    if parts.scheme != "http" {
        bail!("{url:?}: the metrics URL must be http://");
    }
    let addr = resolve(url, allow_remote).await?;
    let body = tokio::time::timeout(Duration::from_secs(5), async {
        let mut tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        let request = format!(
            "GET {} HTTP/1.0\r\nHost: {}\r\nAccept: text/plain\r\n\r\n",
            parts.path, parts.host
        );
        tcp.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        (&mut tcp)
            .take(MAX_METRICS_BYTES as u64)
            .read_to_end(&mut raw)
            .await?;
        anyhow::Ok(raw)
    })
    .await
    .with_context(|| format!("{url} did not answer within 5 s"))??;
    let text = String::from_utf8_lossy(&body);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("{url} did not answer with HTTP");
    };
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("{url} answered {status:?}");
    }
    let gauges = parse_gauges(body, &GAUGES);
    for g in GAUGES {
        if !gauges.contains_key(g) {
            bail!("{url} has no {g} metric: is this the Ferry gateway's metrics endpoint?");
        }
    }
    Ok(gauges)
}

/// Sums each of `names` over its label sets in a Prometheus text page;
/// a metric with a `state` label is also summed per state, under
/// `name{state="value"}`.
pub fn parse_gauges(text: &str, names: &[&str]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        if !names.contains(&name) {
            continue;
        }
        let rest = &line[name_end..];
        let (labels, after_labels) = match rest.strip_prefix('{') {
            Some(r) => r.rsplit_once('}').unwrap_or(("", "")),
            None => ("", rest),
        };
        if let Some(v) = after_labels
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *out.entry(name.to_owned()).or_insert(0.0) += v;
            // Label values of ours hold no commas or quotes.
            if let Some(state) = labels
                .split(',')
                .find_map(|l| l.trim().strip_prefix("state="))
            {
                *out.entry(format!("{name}{{state={state}}}")).or_insert(0.0) += v;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_gauges() {
        // As the gateway renders them (metrics-exporter-prometheus).
        let page = "# HELP ferry_sessions Sessions per worker, attached or detached.\n\
                    # TYPE ferry_sessions gauge\n\
                    ferry_sessions{state=\"attached\",worker=\"0\"} 3\n\
                    ferry_sessions{state=\"detached\",worker=\"0\"} 1\n\
                    ferry_sessions{state=\"attached\",worker=\"1\"} 4 1700000000\n\
                    ferry_sessions_expired_total 99\n\
                    ferry_worker_connections{worker=\"0\"} 2\n\
                    ferry_worker_connections{worker=\"1\"} 5\n\
                    ferry_connections{transport=\"ws\"} 40\n";
        let g = parse_gauges(page, &GAUGES);
        assert_eq!(g.get("ferry_sessions"), Some(&8.0));
        assert_eq!(g.get("ferry_worker_connections"), Some(&7.0));
        assert_eq!(g.get(DETACHED), Some(&1.0));
        assert_eq!(g.get("ferry_sessions{state=\"attached\"}"), Some(&7.0));
        assert_eq!(g.len(), 4, "other metrics are not summed in");
    }

    async fn serve_once(answer: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/metrics", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            s.write_all(answer.as_bytes()).await.unwrap();
        });
        url
    }

    #[tokio::test]
    async fn scrapes_over_http_and_explains_failures() {
        let url = serve_once(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nferry_sessions 5\nferry_worker_connections 6\n",
        )
        .await;
        let g = scrape(&url, false).await.unwrap();
        assert_eq!(g.get("ferry_sessions"), Some(&5.0));

        let url = serve_once("HTTP/1.0 404 Not Found\r\n\r\n").await;
        let e = scrape(&url, false).await.unwrap_err().to_string();
        assert!(e.contains("404"), "{e}");

        let url = serve_once("HTTP/1.0 200 OK\r\n\r\nsomething_else 1\n").await;
        let e = scrape(&url, false).await.unwrap_err().to_string();
        assert!(e.contains("no ferry_sessions metric"), "{e}");

        assert!(scrape("https://127.0.0.1:1/metrics", false).await.is_err());
    }
}
