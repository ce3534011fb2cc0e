//! Hostile clients, each in a small form: what one client can make the
//! gateway keep is bounded, and the other sessions keep working.
//!
//! Each test reads the gateway's own gauges and counters from `/metrics`
//! (flushed once a second), polling with a deadline.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use ferry_protocol::{
    ChannelName, ErrorCode, Frame, Hello, ResumeRequest, ResumeSecret, SessionId,
};
use ferry_protocol::{WelcomeOutcome, frame::PROTOCOL_VERSION};
use ferry_tests::gateway_bin;
use ferry_tests::harness::{Gateway, GatewayOptions};
use ferry_tests::raw::RawClient;

fn start(name: &str, toml: &str, workers: usize) -> Gateway {
    let file = std::env::temp_dir().join(format!("ferry-abuse-{name}-{}.toml", std::process::id()));
    std::fs::write(&file, toml).expect("write config");
    Gateway::start(
        gateway_bin!(),
        GatewayOptions::default().config(&file).workers(workers),
    )
    .expect("start gateway")
}

/// The sum of every sample of `name` whose labels contain `labels`.
async fn metric(ops: SocketAddr, name: &str, labels: &str) -> f64 {
    let text = ferry_tests::http::get(ops, "/metrics")
        .await
        .expect("scrape")
        .text();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((m, rest)) => (m, rest),
                None => (series, ""),
            };
            (metric == name && rest.contains(labels)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Polls `name` until `ok` holds; returns the last value read.
async fn wait_metric(
    ops: SocketAddr,
    name: &str,
    labels: &str,
    within: Duration,
    ok: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let value = metric(ops, name, labels).await;
        if ok(value) || tokio::time::Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn channel(name: &str) -> ChannelName {
    ChannelName::parse(name).expect("channel name")
}

async fn subscribe(client: &mut RawClient, name: &str) {
    client
        .send(&Frame::Subscribe {
            request_id: 1,
            channel: channel(name),
        })
        .await
        .expect("subscribe");
    loop {
        match client.recv().await.expect("recv") {
            Some(Frame::Subscribed { .. }) => return,
            Some(_) => continue,
            None => panic!("closed while subscribing to {name}"),
        }
    }
}

/// Publishes `count` messages to the channels `name(i)` and waits for the
/// PUBACK covering them all.
async fn publish_many(
    client: &mut RawClient,
    count: u64,
    payload: &Bytes,
    name: impl Fn(u64) -> String,
) {
    for i in 1..=count {
        client
            .send(&Frame::Publish {
                client_seq: i,
                channel: channel(&name(i)),
                payload: payload.clone(),
            })
            .await
            .expect("publish");
    }
    loop {
        match client.recv().await.expect("recv") {
            Some(Frame::PubAck { client_seq }) if client_seq == count => return,
            Some(Frame::Error { code, message, .. }) => panic!("ERROR {code}: {message}"),
            Some(_) => continue,
            None => panic!("closed while publishing"),
        }
    }
}

fn random_resume() -> ResumeRequest {
    ResumeRequest {
        session_id: SessionId(rand::random()),
        secret: ResumeSecret(rand::random()),
        last_received_seq: 0,
    }
}

async fn hello(url: &str, resume: Option<ResumeRequest>) -> anyhow::Result<(RawClient, Frame)> {
    let mut c = RawClient::connect(url, Some("ferry.v1")).await?;
    c.send(&Frame::Hello(Hello {
        version: PROTOCOL_VERSION,
        token: String::new(),
        resume,
    }))
    .await?;
    let answer = c
        .recv()
        .await?
        .ok_or_else(|| anyhow::anyhow!("closed before answering HELLO"))?;
    Ok((c, answer))
}

/// Finding 1: every channel name published used to stay in memory for
/// good. One client cycling through names leaves nothing behind once the
/// names are idle past the TTL (at least the 10 s history grace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_names_cycled_through_are_forgotten() {
    let gw = start("channels", "[channels]\nidle_ttl = \"1s\"\n", 2);
    let ops = gw.ops_addr().expect("ops");
    let baseline = wait_metric(
        ops,
        "ferry_worker_state_bytes",
        "",
        Duration::from_secs(3),
        |v| v > 0.0,
    )
    .await;
    let (mut client, _) = RawClient::handshake(&gw.ws_url()).await.expect("hello");
    const NAMES: u64 = 20_000;
    publish_many(&mut client, NAMES, &Bytes::from_static(b"x"), |i| {
        format!("cycle:{i}")
    })
    .await;
    let held = wait_metric(ops, "ferry_channels", "", Duration::from_secs(5), |v| {
        v >= NAMES as f64
    })
    .await;
    assert_eq!(held, NAMES as f64, "every name is a channel while fresh");
    let left = wait_metric(ops, "ferry_channels", "", Duration::from_secs(25), |v| {
        v == 0.0
    })
    .await;
    assert_eq!(left, 0.0, "idle channels are forgotten after the TTL");
    let bytes = metric(ops, "ferry_worker_state_bytes", "").await;
    assert!(
        bytes < baseline + 64.0 * 1024.0,
        "state back near its baseline: {bytes} bytes against {baseline}"
    );
    let forgotten = metric(ops, "ferry_channels_forgotten_total", "").await;
    assert!(
        forgotten >= NAMES as f64,
        "{forgotten} channels counted as forgotten"
    );
}

/// Finding 2: sessions, attached and detached, are bounded by
/// `limits.max_sessions`; the oldest detached goes first, attached ones
/// never, and a gateway full of attached sessions refuses with 302.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_bounded_and_the_oldest_detached_is_evicted() {
    let gw = start("sessions", "[limits]\nmax_sessions = 20\n", 1);
    let ops = gw.ops_addr().expect("ops");
    let url = gw.ws_url();
    let (mut live, _) = RawClient::handshake(&url).await.expect("live");
    subscribe(&mut live, "live").await;

    for i in 0..100 {
        let (mut c, _) = RawClient::handshake(&url).await.expect("hello");
        // Used (subscribed), so it is kept for a resume when it drops.
        subscribe(&mut c, &format!("left:{i}")).await;
        c.kill();
    }
    let sessions = wait_metric(
        ops,
        "ferry_sessions_evicted_total",
        "",
        Duration::from_secs(5),
        |v| v >= 80.0,
    )
    .await;
    assert!(sessions >= 80.0, "{sessions} evicted");
    let held = metric(ops, "ferry_sessions", "").await;
    assert!(held <= 20.0, "{held} sessions held with max_sessions = 20");

    // The live session was never evicted: it still gets its messages.
    let (mut publisher, _) = RawClient::handshake(&url).await.expect("publisher");
    publish_many(
        &mut publisher,
        1,
        &Bytes::from_static(b"still here"),
        |_| "live".into(),
    )
    .await;
    loop {
        match live.recv().await.expect("recv") {
            Some(Frame::Message { payload, .. }) => {
                assert_eq!(&payload[..], b"still here");
                break;
            }
            Some(_) => continue,
            None => panic!("the live session was cut"),
        }
    }

    // Fill the gateway with attached sessions: the next one is refused.
    let mut held_open = vec![live, publisher];
    while held_open.len() < 20 {
        let (c, _) = RawClient::handshake(&url).await.expect("hello");
        held_open.push(c);
    }
    let (_, answer) = hello(&url, None).await.expect("hello when full");
    assert!(
        matches!(answer, Frame::Error { code, .. } if code == ErrorCode::TooManyConnections.as_u16()),
        "a gateway full of attached sessions refuses: {answer:?}"
    );
}

/// Finding 2: a failed resume used to leave a new session behind for the
/// whole resume window, whatever the client did with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_resumes_leave_no_session_behind() {
    let gw = start("resumes", "", 2);
    let ops = gw.ops_addr().expect("ops");
    let url = gw.ws_url();
    for _ in 0..200 {
        let (c, answer) = hello(&url, Some(random_resume())).await.expect("hello");
        match answer {
            Frame::Welcome(w) => assert_eq!(w.outcome, WelcomeOutcome::NewSessionExpired),
            other => panic!("expected WELCOME, got {other:?}"),
        }
        c.kill();
    }
    // One that is used is kept: the client may resume it.
    let (mut used, answer) = hello(&url, Some(random_resume())).await.expect("hello");
    let Frame::Welcome(welcome) = answer else {
        panic!("expected WELCOME, got {answer:?}");
    };
    subscribe(&mut used, "kept").await;
    used.kill();

    let detached = wait_metric(
        ops,
        "ferry_sessions",
        "state=\"detached\"",
        Duration::from_secs(5),
        |v| v == 1.0,
    )
    .await;
    assert_eq!(detached, 1.0, "only the used session waits for a resume");
    let (_, again) = RawClient::resume(&url, &welcome, 0).await.expect("resume");
    assert_eq!(again.outcome, WelcomeOutcome::Resumed);
}

/// The memory budget: detached sessions holding replay logs are evicted,
/// oldest first, until the worker is back within `limits.memory_budget`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_replay_logs_are_shed_to_stay_within_the_memory_budget() {
    let gw = start(
        "budget",
        "[limits]\nmemory_budget = \"2MiB\"\n[channels]\nhistory_messages = 16\n",
        1,
    );
    let ops = gw.ops_addr().expect("ops");
    let url = gw.ws_url();
    for _ in 0..10 {
        let (mut c, _) = RawClient::handshake(&url).await.expect("hello");
        subscribe(&mut c, "big").await;
        c.kill();
    }
    let (mut publisher, _) = RawClient::handshake(&url).await.expect("publisher");
    // 10 detached logs × 200 × 4 KiB ≈ 8 MiB charged without the budget.
    let payload = Bytes::from(vec![7u8; 4096]);
    publish_many(&mut publisher, 200, &payload, |_| "big".into()).await;
    let evicted = wait_metric(
        ops,
        "ferry_sessions_evicted_total",
        "",
        Duration::from_secs(5),
        |v| v >= 6.0,
    )
    .await;
    assert!(evicted >= 6.0, "{evicted} sessions evicted");
    let bytes = wait_metric(
        ops,
        "ferry_worker_state_bytes",
        "",
        Duration::from_secs(5),
        |v| v <= 2.0 * 1024.0 * 1024.0,
    )
    .await;
    assert!(bytes <= 2.0 * 1024.0 * 1024.0, "{bytes} bytes held");
}

/// Finding 4: a client that stops reading (so the gateway's write blocks)
/// and then goes silent is cut at the heartbeat timeout. The slow-consumer
/// bounds are set out of reach so that only the heartbeat can cut it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_behind_a_blocked_write_is_cut_at_the_heartbeat_timeout() {
    let gw = start(
        "heartbeat",
        "[limits]\noutbound_queue = \"64MiB\"\n[session]\nheartbeat_interval = \"1s\"\nheartbeat_timeout = \"3s\"\nreplay_max_messages = 100000\nreplay_max_bytes = \"64MiB\"\n",
        1,
    );
    let ops = gw.ops_addr().expect("ops");
    let url = gw.ws_url();
    let (mut stalled, _) = RawClient::handshake(&url).await.expect("stalled");
    subscribe(&mut stalled, "flood").await;
    let (mut publisher, _) = RawClient::handshake(&url).await.expect("publisher");
    let payload = Bytes::from(vec![1u8; 16 * 1024]);
    // ~31 MiB: far more than the socket buffers and tungstenite's take.
    publish_many(&mut publisher, 2000, &payload, |_| "flood".into()).await;
    let cut = wait_metric(
        ops,
        "ferry_errors_total",
        "heartbeat_timeout",
        Duration::from_secs(15),
        |v| v >= 1.0,
    )
    .await;
    assert_eq!(cut, 1.0, "the stalled, silent client is cut");
    // The publisher kept talking; it is still served.
    publish_many(&mut publisher, 2001, &payload, |_| "flood".into()).await;
    drop(stalled);
}

/// Finding 9: at the default bounds a subscriber that stops reading used
/// to overflow its replay log (301, session lost) before the slow-consumer
/// bound fired. It is now cut as a slow consumer while the log still covers
/// it, and its resume gets every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_is_cut_resumably_at_the_default_bounds() {
    let gw = start("stalled", "", 2);
    let ops = gw.ops_addr().expect("ops");
    let url = gw.ws_url();
    let (mut stalled, welcome) = RawClient::handshake(&url).await.expect("stalled");
    subscribe(&mut stalled, "feed").await;
    let (mut publisher, _) = RawClient::handshake(&url).await.expect("publisher");
    const COUNT: u64 = 900;
    let payload = Bytes::from(vec![3u8; 1024]);
    publish_many(&mut publisher, COUNT, &payload, |_| "feed".into()).await;
    let cut = wait_metric(
        ops,
        "ferry_slow_consumer_disconnects_total",
        "",
        Duration::from_secs(5),
        |v| v >= 1.0,
    )
    .await;
    assert_eq!(cut, 1.0, "cut as a slow consumer");
    assert_eq!(
        metric(ops, "ferry_replay_overflows_total", "").await,
        0.0,
        "not by a replay overflow"
    );
    drop(stalled);

    let (mut again, w) = RawClient::resume(&url, &welcome, 0).await.expect("resume");
    assert_eq!(w.outcome, WelcomeOutcome::Resumed);
    let mut next = 1;
    while next <= COUNT {
        match again.recv().await.expect("recv") {
            Some(Frame::Message { seq, .. }) => {
                assert_eq!(seq, next, "in order, none missing");
                next += 1;
            }
            Some(_) => continue,
            None => panic!("closed after {} messages", next - 1),
        }
    }
}

/// Finding 11: the counters count what they name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_count_what_they_name() {
    let gw = start("counters", "[session]\nreplay_max_messages = 2\n", 1);
    let ops = gw.ops_addr().expect("ops");
    let url = gw.ws_url();
    let (mut publisher, _) = RawClient::handshake(&url).await.expect("publisher");
    // Publishes nobody receives: PUBACKs go out, no MESSAGE does.
    publish_many(&mut publisher, 10, &Bytes::from_static(b"x"), |_| {
        "nobody".into()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(metric(ops, "ferry_messages_sent_total", "").await, 0.0);

    // A subscriber that acknowledges nothing overflows its 2-message log
    // once, however many messages it misses after that.
    let (mut subscriber, _) = RawClient::handshake(&url).await.expect("subscriber");
    subscribe(&mut subscriber, "small").await;
    let mut again = publisher;
    for i in 11..=60u64 {
        again
            .send(&Frame::Publish {
                client_seq: i,
                channel: channel("small"),
                payload: Bytes::from_static(b"y"),
            })
            .await
            .expect("publish");
    }
    let overflows = wait_metric(
        ops,
        "ferry_replay_overflows_total",
        "",
        Duration::from_secs(5),
        |v| v >= 1.0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(overflows, 1.0);
    assert_eq!(metric(ops, "ferry_replay_overflows_total", "").await, 1.0);
    let sent = metric(ops, "ferry_messages_sent_total", "").await;
    assert!(sent <= 2.0, "{sent} MESSAGE frames for a log of 2");
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The figures in BENCHMARKS.md ("Memory under abuse"), at the default
/// configuration: one client cycling through 1M channel names, then (on a
/// fresh gateway) 5,000 sessions left detached; resident memory before, at
/// the peak and after the TTL or resume window. A benchmark, not a check:
/// `cargo test --release -p ferry-tests --test abuse -- --ignored --nocapture`
/// (about four minutes: the defaults wait 60 s and 120 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: about four minutes"]
async fn memory_under_abuse_benchmark() {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let settle = Duration::from_secs(3);

    let gw = start("memory-channels", "", 2);
    let ops = gw.ops_addr().expect("ops");
    tokio::time::sleep(settle).await;
    let baseline = rss_bytes(gw.pid());
    let (mut client, _) = RawClient::handshake(&gw.ws_url()).await.expect("hello");
    const NAMES: u64 = 1_000_000;
    let started = std::time::Instant::now();
    publish_many(&mut client, NAMES, &Bytes::from_static(b"x"), |i| {
        format!("cycle:{i}")
    })
    .await;
    let took = started.elapsed();
    drop(client);
    let channels = wait_metric(ops, "ferry_channels", "", settle, |v| v >= NAMES as f64).await;
    let peak = rss_bytes(gw.pid());
    let state = metric(ops, "ferry_worker_state_bytes", "").await;
    let left = wait_metric(ops, "ferry_channels", "", Duration::from_secs(120), |v| {
        v == 0.0
    })
    .await;
    tokio::time::sleep(settle).await;
    let after = rss_bytes(gw.pid());
    println!(
        "1M channel names in {took:.1?}: baseline {:.1} MiB; peak {channels} channels, \
         RSS {:.1} MiB (+{:.0} B/channel), accounted {:.1} MiB; after the TTL {left} \
         channels, RSS {:.1} MiB",
        mib(baseline),
        mib(peak),
        (peak.saturating_sub(baseline)) as f64 / channels.max(1.0),
        state / (1024.0 * 1024.0),
        mib(after)
    );
    drop(gw);

    let gw = start("memory-sessions", "", 2);
    let ops = gw.ops_addr().expect("ops");
    let url = gw.ws_url();
    tokio::time::sleep(settle).await;
    let baseline = rss_bytes(gw.pid());
    const SESSIONS: usize = 5000;
    for i in 0..SESSIONS {
        let (mut c, _) = RawClient::handshake(&url).await.expect("hello");
        subscribe(&mut c, &format!("s:{i}")).await;
        c.kill();
    }
    let detached = wait_metric(ops, "ferry_sessions", "state=\"detached\"", settle, |v| {
        v >= SESSIONS as f64
    })
    .await;
    let peak = rss_bytes(gw.pid());
    let state = metric(ops, "ferry_worker_state_bytes", "").await;
    let left = wait_metric(ops, "ferry_sessions", "", Duration::from_secs(200), |v| {
        v == 0.0
    })
    .await;
    wait_metric(ops, "ferry_channels", "", Duration::from_secs(120), |v| {
        v == 0.0
    })
    .await;
    tokio::time::sleep(settle).await;
    let after = rss_bytes(gw.pid());
    println!(
        "5,000 sessions left detached: baseline {:.1} MiB; peak {detached} detached, RSS {:.1} MiB \
         (+{:.0} B/session), accounted {:.1} MiB; after the resume window {left} sessions, \
         RSS {:.1} MiB",
        mib(baseline),
        mib(peak),
        (peak.saturating_sub(baseline)) as f64 / SESSIONS as f64,
        state / (1024.0 * 1024.0),
        mib(after)
    );
}
