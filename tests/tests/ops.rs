//! The ops HTTP listener, end to end: probes, /metrics as a scraper sees
//! it, the publish and disconnect API with its refusals, and readiness
//! during a graceful drain.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_protocol::{ChannelName, Frame};
use ferry_tests::gateway_bin;
use ferry_tests::harness::{Gateway, GatewayOptions};
use ferry_tests::http::{self, HttpResponse};
use ferry_tests::raw::RawClient;
use prometheus_parse::{Scrape, Value};

const KEY: &str = "test-ops-key-0123456789";

/// A gateway whose admin API opens with [`KEY`] (given by environment
/// variable, as an operator would).
fn start_with_key() -> Gateway {
    Gateway::start(
        gateway_bin!(),
        GatewayOptions::default().env("FERRY_OPS_API_KEY", KEY),
    )
    .expect("gateway starts")
}

fn ops(gw: &Gateway) -> SocketAddr {
    gw.ops_addr().expect("ops address on the ready line")
}

fn chan(name: &str) -> ChannelName {
    ChannelName::parse(name).expect("valid channel")
}

async fn publish_api(addr: SocketAddr, body: &str) -> HttpResponse {
    http::post_json(addr, "/v1/publish", Some(KEY), body)
        .await
        .expect("publish request")
}

/// A client subscribed to `channel`.
async fn subscriber(gw: &Gateway, channel: &str) -> RawClient {
    let (mut c, _) = RawClient::handshake(&gw.ws_url()).await.expect("handshake");
    c.send(&Frame::Subscribe {
        request_id: 1,
        channel: chan(channel),
    })
    .await
    .expect("subscribe");
    match c.recv().await.expect("recv") {
        Some(Frame::Subscribed { request_id: 1, .. }) => c,
        other => panic!("expected SUBSCRIBED, got {other:?}"),
    }
}

/// The next MESSAGE: (channel, offset, payload).
async fn next_message(c: &mut RawClient) -> (String, u64, Bytes) {
    loop {
        match c.recv().await.expect("recv") {
            Some(Frame::Message {
                channel,
                channel_offset,
                payload,
                ..
            }) => return (channel.as_str().to_owned(), channel_offset, payload),
            Some(Frame::PubAck { .. }) => continue,
            other => panic!("expected MESSAGE, got {other:?}"),
        }
    }
}

/// Publishes from a client and waits for the PUBACK, so that the message
/// is queued at its sequencer before the caller goes on.
async fn client_publish(c: &mut RawClient, client_seq: u64, channel: &str, payload: &[u8]) {
    c.send(&Frame::Publish {
        client_seq,
        channel: chan(channel),
        payload: Bytes::copy_from_slice(payload),
    })
    .await
    .expect("publish");
    loop {
        match c.recv().await.expect("recv") {
            Some(Frame::PubAck { client_seq: acked }) if acked >= client_seq => return,
            Some(Frame::PubAck { .. }) => continue,
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn probes_answer_while_running() {
    let gw = start_with_key();
    let addr = ops(&gw);
    let health = http::get(addr, "/healthz").await.expect("healthz");
    assert_eq!(health.status, 200);
    assert_eq!(health.text().trim(), "ok");
    let ready = http::get(addr, "/readyz").await.expect("readyz");
    assert_eq!(ready.status, 200, "{}", ready.text());
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405_in_json() {
    let gw = start_with_key();
    let addr = ops(&gw);
    let r = http::get(addr, "/nope").await.expect("request");
    assert_eq!(r.status, 404);
    assert!(r.error().expect("JSON error").contains("/nope"));
    let r = http::get(addr, "/v1/publish").await.expect("request");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    r.error().expect("JSON error");
    let r = http::request(addr, "POST", "/metrics", &[], b"")
        .await
        .expect("request");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
}

// ---- /metrics ------------------------------------------------------------

/// Checks the Prometheus text format line by line (the parser crate skips
/// what it does not understand), then parses it.
fn parse_metrics(r: &HttpResponse) -> Scrape {
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            assert!(
                comment.starts_with("HELP ") || comment.starts_with("TYPE "),
                "{line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let name = series.split('{').next().unwrap_or_default();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value in {line:?}"
        );
    }
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses")
}

async fn scrape(addr: SocketAddr) -> Scrape {
    parse_metrics(&http::get(addr, "/metrics").await.expect("metrics"))
}

/// The sum of a counter or gauge over the samples whose labels include
/// `labels` (0 if none).
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn has(scrape: &Scrape, name: &str) -> bool {
    scrape.samples.iter().any(|s| s.metric == name)
}

fn is_histogram(scrape: &Scrape, name: &str) -> bool {
    scrape
        .samples
        .iter()
        .any(|s| s.metric == name && matches!(s.value, Value::Histogram(_)))
}

#[tokio::test]
async fn metrics_parse_and_move_when_clients_act() {
    let gw = start_with_key();
    let addr = ops(&gw);
    let before = scrape(addr).await;
    for name in [
        "ferry_frames_received_total",
        "ferry_received_bytes_total",
        "ferry_messages_sent_total",
        "ferry_sent_bytes_total",
        "ferry_publishes_total",
        "ferry_duplicate_publishes_total",
        "ferry_deliveries_total",
        "ferry_slow_consumer_disconnects_total",
        "ferry_replay_overflows_total",
        "ferry_sessions_expired_total",
        "ferry_config_reloads_total",
    ] {
        assert!(has(&before, name), "{name} missing before any traffic");
    }
    assert_eq!(
        value(
            &before,
            "ferry_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    // Enough publishes for the sampled delivery latency (1 in 16).
    const N: u64 = 20;
    let mut c = subscriber(&gw, "metrics").await;
    for seq in 1..=N {
        c.send(&Frame::Publish {
            client_seq: seq,
            channel: chan("metrics"),
            payload: Bytes::from_static(b"m"),
        })
        .await
        .expect("publish");
    }
    for _ in 0..N {
        next_message(&mut c).await;
    }

    // Worker counters reach the recorder once a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let s = scrape(addr).await;
        if value(&s, "ferry_publishes_total", &[]) >= N as f64
            && value(&s, "ferry_messages_sent_total", &[]) >= N as f64
            || Instant::now() > deadline
        {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let grew = |name: &str, labels: &[(&str, &str)], by: f64| {
        let (b, a) = (value(&before, name, labels), value(&after, name, labels));
        assert!(a >= b + by, "{name}{labels:?}: {b} -> {a}, wanted +{by}");
    };
    grew("ferry_publishes_total", &[], N as f64);
    grew("ferry_deliveries_total", &[], N as f64);
    grew("ferry_messages_sent_total", &[], N as f64);
    // SUBSCRIBE and the publishes (HELLO is the handshake's, not counted).
    grew("ferry_frames_received_total", &[], N as f64 + 1.0);
    grew(
        "ferry_connections_total",
        &[("transport", "ws"), ("event", "opened")],
        1.0,
    );
    grew(
        "ferry_handshakes_total",
        &[("transport", "ws"), ("outcome", "ok")],
        1.0,
    );
    assert_eq!(
        value(&after, "ferry_connections", &[("transport", "ws")]),
        1.0
    );
    assert!(is_histogram(&after, "ferry_handshake_duration_seconds"));
    assert!(is_histogram(&after, "ferry_publish_to_delivery_seconds"));
    assert!(has(&after, "ferry_sessions"));
    assert!(has(&after, "ferry_worker_queue_depth"));
}

#[tokio::test]
async fn failed_reloads_are_counted() {
    let file = std::env::temp_dir().join(format!("ferry-ops-reload-{}.toml", std::process::id()));
    std::fs::write(&file, "[limits]\nmax_subscriptions = 8\n").expect("write config");
    let gw = Gateway::start(
        gateway_bin!(),
        GatewayOptions::default()
            .env("FERRY_OPS_API_KEY", KEY)
            .config(&file),
    )
    .expect("gateway starts");
    let addr = ops(&gw);
    let outcome = |s: &Scrape, o: &str| value(s, "ferry_config_reloads_total", &[("outcome", o)]);
    assert_eq!(outcome(&scrape(addr).await, "error"), 0.0);
    // A broken file: the reload fails, is counted, and the gateway serves on.
    std::fs::write(&file, "[limits]\nmax_subscriptions = 0\n").expect("write config");
    gw.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = scrape(addr).await;
        if outcome(&s, "error") == 1.0 {
            assert_eq!(outcome(&s, "ok"), 0.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the failed reload was not counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        http::get(addr, "/readyz").await.expect("readyz").status,
        200
    );
}

// ---- POST /v1/publish ----------------------------------------------------

#[tokio::test]
async fn api_publishes_interleave_in_order_with_client_publishes() {
    let gw = start_with_key();
    let addr = ops(&gw);
    let mut sub = subscriber(&gw, "chat:1").await;
    let (mut publisher, _) = RawClient::handshake(&gw.ws_url()).await.expect("handshake");

    // One source, strictly one after the other: API, client, API, ...
    let mut sent = Vec::new();
    let mut api_offsets = HashMap::new();
    for i in 0..10u64 {
        let text = format!("api-{i}");
        let body = if i % 3 == 0 {
            use base64::Engine;
            let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
            format!(r#"{{"channel":"chat:1","payload_base64":"{encoded}"}}"#)
        } else {
            format!(r#"{{"channel":"chat:1","payload":"{text}"}}"#)
        };
        let r = publish_api(addr, &body).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let json = r.json().expect("JSON");
        assert_eq!(json["channel"], "chat:1");
        let offset = json["offset"].as_u64().expect("offset");
        api_offsets.insert(text.clone(), offset);
        sent.push(text);

        let text = format!("client-{i}");
        client_publish(&mut publisher, i + 1, "chat:1", text.as_bytes()).await;
        sent.push(text);
    }

    let mut previous = None;
    for want in &sent {
        let (channel, offset, payload) = next_message(&mut sub).await;
        assert_eq!(channel, "chat:1");
        assert_eq!(String::from_utf8_lossy(&payload), *want, "out of order");
        if let Some(p) = previous {
            assert_eq!(offset, p + 1, "offsets must be consecutive");
        }
        previous = Some(offset);
        if let Some(api) = api_offsets.get(want) {
            assert_eq!(*api, offset, "the API answered another offset");
        }
    }
}

#[tokio::test]
async fn api_publish_to_a_user_reaches_the_user_channel() {
    let gw = start_with_key();
    let addr = ops(&gw);
    let mut sub = subscriber(&gw, "user:alice").await;
    let r = publish_api(addr, r#"{"user":"alice","payload":"hello alice"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json().expect("JSON")["channel"], "user:alice");
    let (channel, _, payload) = next_message(&mut sub).await;
    assert_eq!(channel, "user:alice");
    assert_eq!(payload.as_ref(), b"hello alice");
}

#[tokio::test]
async fn admin_api_is_closed_without_a_configured_key() {
    let gw = Gateway::start(gateway_bin!(), GatewayOptions::default()).expect("gateway starts");
    let addr = ops(&gw);
    for path in ["/v1/publish", "/v1/disconnect"] {
        let r = http::post_json(addr, path, Some(KEY), r#"{"channel":"c","payload":"x"}"#)
            .await
            .expect("request");
        assert_eq!(r.status, 401, "{path}");
        assert!(r.error().expect("JSON error").contains("no API key"));
    }
}

#[tokio::test]
async fn admin_api_refuses_missing_or_wrong_keys() {
    let gw = start_with_key();
    let addr = ops(&gw);
    let body = r#"{"channel":"c","payload":"x"}"#;
    for path in ["/v1/publish", "/v1/disconnect"] {
        for bearer in [None, Some("wrong"), Some(""), Some(&KEY[..KEY.len() - 1])] {
            let r = http::post_json(addr, path, bearer, body)
                .await
                .expect("request");
            assert_eq!(r.status, 401, "{path} {bearer:?}");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
            r.error().expect("JSON error");
        }
        let basic = format!("Basic {KEY}");
        let r = http::request(addr, "POST", path, &[("Authorization", &basic)], b"{}")
            .await
            .expect("request");
        assert_eq!(r.status, 401, "{path} with Basic");
    }
}

#[tokio::test]
async fn api_publish_refuses_bad_bodies_with_a_reason() {
    let gw = start_with_key();
    let addr = ops(&gw);
    for body in [
        "",
        "not json",
        "{",
        r#"{"payload":"x"}"#,
        r#"{"channel":"c","user":"u","payload":"x"}"#,
        r#"{"channel":"c"}"#,
        r#"{"channel":"c","payload":"x","payload_base64":"eA=="}"#,
        r#"{"channel":"c","payload_base64":"***"}"#,
        r#"{"channel":"no spaces","payload":"x"}"#,
        r#"{"channel":"","payload":"x"}"#,
        r#"{"user":"","payload":"x"}"#,
        r#"{"channel":"c","payload":"x","unknown":true}"#,
    ] {
        let r = publish_api(addr, body).await;
        assert_eq!(r.status, 400, "{body:?}: {}", r.text());
        let reason = r.error().expect("JSON error");
        assert!(!reason.is_empty(), "{body:?}");
    }
    // Nothing bad reached a channel: the next publish gets offset 1.
    let r = publish_api(addr, r#"{"channel":"c","payload":"x"}"#).await;
    assert_eq!(r.json().expect("JSON")["offset"], 1);
}

#[tokio::test]
async fn api_publish_refuses_bodies_over_the_frame_limit_with_413() {
    let gw = start_with_key();
    let addr = ops(&gw);
    // The default frame limit: 64 KiB.
    let limit = ferry_protocol::codec::DEFAULT_MAX_FRAME_SIZE;
    let auth = format!("Bearer {KEY}");

    // A declared length over the limit is refused before any body byte.
    let head = format!(
        "POST /v1/publish HTTP/1.1\r\nHost: ops\r\nConnection: close\r\n\
         Authorization: {auth}\r\nContent-Length: {}\r\n\r\n",
        limit + 1
    );
    let r = http::send_raw(addr, head.as_bytes())
        .await
        .expect("request");
    assert_eq!(r.status, 413, "{}", r.text());
    r.error().expect("JSON error");

    // A whole oversize JSON body with an honest length.
    let big = format!(
        r#"{{"channel":"c","payload":"{}"}}"#,
        "x".repeat(limit + 10)
    );
    let r = publish_api(addr, &big).await;
    assert_eq!(r.status, 413, "{}", r.text());

    // Chunked: no declared length, so the limit applies while reading.
    let chunk = "y".repeat(limit + 1);
    let raw = format!(
        "POST /v1/publish HTTP/1.1\r\nHost: ops\r\nConnection: close\r\n\
         Authorization: {auth}\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let r = http::send_raw(addr, raw.as_bytes()).await.expect("request");
    assert_eq!(r.status, 413, "{}", r.text());

    // A body just under the limit is read (and judged on its content).
    let r = publish_api(addr, &"z".repeat(limit)).await;
    assert_eq!(r.status, 400, "{}", r.text());
}

// ---- POST /v1/disconnect -------------------------------------------------

#[tokio::test]
async fn api_disconnect_counts_sessions_and_leaves_anonymous_clients_alone() {
    let gw = start_with_key();
    let addr = ops(&gw);
    // With auth mode none no session has a user: nobody matches.
    let mut bystander = subscriber(&gw, "room").await;
    for body in [
        r#"{"user":"alice"}"#,
        r#"{"user":"alice","drop_sessions":false}"#,
        r#"{"user":"alice","drop_sessions":true}"#,
    ] {
        let r = http::post_json(addr, "/v1/disconnect", Some(KEY), body)
            .await
            .expect("request");
        assert_eq!(r.status, 200, "{body}: {}", r.text());
        assert_eq!(r.json().expect("JSON")["sessions"], 0);
    }
    client_publish(&mut bystander, 1, "room", b"still here").await;
    let (_, _, payload) = next_message(&mut bystander).await;
    assert_eq!(payload.as_ref(), b"still here");

    for body in [
        "{}",
        r#"{"user":""}"#,
        r#"{"user":"a","drop_sessions":"yes"}"#,
        "[",
    ] {
        let r = http::post_json(addr, "/v1/disconnect", Some(KEY), body)
            .await
            .expect("request");
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        r.error().expect("JSON error");
    }
}

// ---- readiness during a drain ---------------------------------------------

#[tokio::test]
async fn readyz_turns_503_while_draining_and_the_process_exits_cleanly() {
    let mut gw = Gateway::start(
        gateway_bin!(),
        GatewayOptions {
            args: vec!["--drain-timeout".into(), "3s".into()],
            ..GatewayOptions::default()
        },
    )
    .expect("gateway starts");
    let addr = ops(&gw);
    assert_eq!(
        http::get(addr, "/readyz").await.expect("readyz").status,
        200
    );
    // A client that is connected but has not said HELLO yet: the drain
    // cannot tell it GOAWAY, so it holds the drain until drain_timeout.
    let _silent = RawClient::connect(&gw.ws_url(), Some("ferry.v1"))
        .await
        .expect("connect");
    let _session = subscriber(&gw, "drain").await;

    let signalled = Instant::now();
    gw.signal(libc::SIGTERM);
    let mut saw_503 = false;
    while signalled.elapsed() < Duration::from_secs(2) {
        let r = http::get(addr, "/readyz")
            .await
            .expect("readyz while draining");
        if r.status == 503 {
            assert_eq!(r.text().trim(), "draining");
            saw_503 = true;
            break;
        }
        assert_eq!(r.status, 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saw_503, "readyz never turned 503 after SIGTERM");
    // Still alive, just not ready.
    assert_eq!(
        http::get(addr, "/healthz").await.expect("healthz").status,
        200
    );

    let status = gw.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "exit status {status}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(2),
        "the drain should have waited for the silent client"
    );
}

// ---- logs ------------------------------------------------------------------

#[tokio::test]
async fn json_log_format_writes_one_object_per_line() {
    let gw = Gateway::start(
        gateway_bin!(),
        GatewayOptions::default().env("FERRY_LOG_FORMAT", "json"),
    )
    .expect("gateway starts");
    let log = gw.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log lines");
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        assert!(
            v.get("level").is_some() && v.get("fields").is_some(),
            "{line}"
        );
    }
    assert!(log.contains(r#""phase":"running""#), "{log}");
}

// ---- worker placement -------------------------------------------------------

/// The CPUs each `ferry-worker-*` thread of `pid` may run on.
fn worker_cpus(pid: u32) -> Vec<String> {
    let mut allowed = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return allowed;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("ferry-worker") {
            continue;
        }
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        if let Some(list) = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        {
            allowed.push(list.trim().to_owned());
        }
    }
    allowed
}

#[test]
fn workers_may_move_between_cpus_unless_pinning_is_asked_for() {
    let process = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let ours = process
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|l| l.trim().to_owned())
        .unwrap_or_default();
    let free = Gateway::start(gateway_bin!(), GatewayOptions::default().workers(2)).expect("gw");
    let cpus = worker_cpus(free.pid());
    assert_eq!(cpus.len(), 2, "two worker threads: {cpus:?}");
    assert!(
        cpus.iter().all(|c| *c == ours),
        "unpinned workers may run on every CPU we may ({ours}): {cpus:?}"
    );
    if !ours.contains(['-', ',']) {
        return; // One CPU only: pinning cannot be told apart.
    }
    let pinned = Gateway::start(
        gateway_bin!(),
        GatewayOptions::default()
            .workers(2)
            .env("FERRY_SERVER_PIN_WORKERS", "true"),
    )
    .expect("gw");
    // Each worker pins itself as its thread starts, which may follow the
    // ready line by a moment.
    let pinned_alone =
        |cpus: &[String]| cpus.len() == 2 && cpus.iter().all(|c| !c.contains(['-', ',']));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut cpus = worker_cpus(pinned.pid());
    while !pinned_alone(&cpus) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        cpus = worker_cpus(pinned.pid());
    }
    assert_eq!(cpus.len(), 2);
    assert!(
        cpus.iter().all(|c| !c.contains(['-', ','])) && cpus[0] != cpus[1],
        "each pinned worker on a CPU of its own: {cpus:?}"
    );
}

// ---- /v1/stats and /dashboard ---------------------------------------------

/// `/v1/stats` until `ready` holds, for at most 10 s (gauges move once a
/// second, when the workers flush them).
async fn stats_until(
    addr: SocketAddr,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = http::get(addr, "/v1/stats").await.expect("stats request");
        assert_eq!(r.status, 200, "{}", r.text());
        let stats = r.json().expect("stats JSON");
        if ready(&stats) || Instant::now() >= deadline {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn stats_and_dashboard_are_open_and_count_the_sessions() {
    // No API key at all: the read-only pages still answer.
    let gw = Gateway::start(gateway_bin!(), GatewayOptions::default().workers(2))
        .expect("gateway starts");
    let addr = ops(&gw);
    let page = http::get(addr, "/dashboard").await.expect("dashboard");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.text().contains("v1/stats"));
    assert!(page.header("content-security-policy").is_some());

    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(subscriber(&gw, "stats:1").await);
    }
    let attached = |s: &serde_json::Value| s["sessions"]["attached"].as_f64();
    let stats = stats_until(addr, |s| attached(s) == Some(3.0)).await;
    assert_eq!(attached(&stats), Some(3.0), "{stats}");
    assert_eq!(stats["connections"].as_f64(), Some(3.0));
    assert_eq!(stats["connections_by_transport"]["ws"].as_f64(), Some(3.0));
    let workers = stats["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 2);
    let per_worker: f64 = workers
        .iter()
        .filter_map(|w| w["sessions_attached"].as_f64())
        .sum();
    assert_eq!(per_worker, 3.0);
    assert_eq!(stats["phase"], "running");
    assert!(
        stats["memory"]["process_rss_bytes"]
            .as_u64()
            .is_some_and(|b| b > 0)
    );

    // The same figures as /metrics.
    let metrics = http::get(addr, "/metrics").await.expect("metrics").text();
    let attached_in_metrics: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("ferry_sessions{") && l.contains("state=\"attached\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(attached_in_metrics, 3.0);

    drop(clients);
    let stats = stats_until(addr, |s| s["connections"].as_f64() == Some(0.0)).await;
    assert_eq!(stats["connections"].as_f64(), Some(0.0), "{stats}");
    // Still read-only: no method but GET.
    let r = http::request(addr, "POST", "/v1/stats", &[], b"")
        .await
        .expect("request");
    assert_eq!(r.status, 405);
}
