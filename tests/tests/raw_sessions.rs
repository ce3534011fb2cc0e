//! Session rules checked frame by frame with a hand-driven client: resume
//! after an abrupt loss (here and on another worker), exactly-once publish,
//! graceful drain, many connections.

use std::time::Duration;

use bytes::Bytes;
use ferry_protocol::{ChannelName, ErrorCode, Frame, WelcomeOutcome};
use ferry_tests::gateway_bin;
use ferry_tests::harness::{Gateway, GatewayOptions};
use ferry_tests::raw::RawClient;

fn chan(name: &str) -> ChannelName {
    ChannelName::parse(name).expect("valid channel")
}

async fn subscribe(c: &mut RawClient, channel: &str) {
    c.send(&Frame::Subscribe {
        request_id: 1,
        channel: chan(channel),
    })
    .await
    .expect("subscribe");
    loop {
        match c.recv().await.expect("recv") {
            Some(Frame::Subscribed { request_id: 1, .. }) => return,
            Some(Frame::PubAck { .. }) => continue,
            other => panic!("expected SUBSCRIBED, got {other:?}"),
        }
    }
}

async fn publish_n(c: &mut RawClient, channel: &str, from_seq: u64, n: u64) {
    for client_seq in from_seq..from_seq + n {
        c.send(&Frame::Publish {
            client_seq,
            channel: chan(channel),
            payload: Bytes::from(client_seq.to_be_bytes().to_vec()),
        })
        .await
        .expect("publish");
    }
    // Wait until every one is acknowledged.
    let last = from_seq + n - 1;
    loop {
        match c.recv().await.expect("recv") {
            Some(Frame::PubAck { client_seq }) if client_seq >= last => return,
            Some(Frame::PubAck { .. }) => continue,
            other => panic!("publisher got {other:?}"),
        }
    }
}

/// Reads `n` MESSAGE frames; returns (seq, payload as u64).
async fn read_messages(c: &mut RawClient, n: usize) -> Vec<(u64, u64)> {
    let mut got = Vec::new();
    while got.len() < n {
        match c.recv().await.expect("recv") {
            Some(Frame::Message { seq, payload, .. }) => {
                let value = u64::from_be_bytes(payload.as_ref().try_into().expect("8 bytes"));
                got.push((seq, value));
            }
            Some(Frame::Subscribed { .. } | Frame::PubAck { .. }) => continue,
            other => panic!("expected MESSAGE, got {other:?}"),
        }
    }
    got
}

#[tokio::test]
async fn resume_after_abrupt_loss_replays_without_gap_or_duplicate() {
    let gw = Gateway::start(gateway_bin!(), GatewayOptions::default()).expect("start");
    let url = gw.ws_url();
    let (mut sub, welcome) = RawClient::handshake(&url).await.expect("sub");
    subscribe(&mut sub, "room").await;
    let (mut publisher, _) = RawClient::handshake(&url).await.expect("pub");
    publish_n(&mut publisher, "room", 1, 10).await;
    let first = read_messages(&mut sub, 10).await;
    assert_eq!(
        first,
        (1..=10).map(|i| (i, i)).collect::<Vec<_>>(),
        "seq and order"
    );
    sub.send(&Frame::Ack { seq: 5 }).await.expect("ack");
    sub.kill();
    publish_n(&mut publisher, "room", 11, 10).await;
    // The client only processed up to 7 before the network died.
    let (mut sub, again) = RawClient::resume(&url, &welcome, 7).await.expect("resume");
    assert_eq!(again.outcome, WelcomeOutcome::Resumed);
    assert_eq!(again.session_id, welcome.session_id);
    let rest = read_messages(&mut sub, 13).await;
    assert_eq!(rest, (8..=20).map(|i| (i, i)).collect::<Vec<_>>());
}

#[tokio::test]
async fn republished_frames_after_resume_are_processed_once() {
    let gw = Gateway::start(gateway_bin!(), GatewayOptions::default()).expect("start");
    let url = gw.ws_url();
    let (mut sub, _) = RawClient::handshake(&url).await.expect("sub");
    subscribe(&mut sub, "once").await;
    let (mut publisher, welcome) = RawClient::handshake(&url).await.expect("pub");
    publish_n(&mut publisher, "once", 1, 3).await;
    publisher.kill();
    let (mut publisher, again) = RawClient::resume(&url, &welcome, 0).await.expect("resume");
    assert_eq!(again.outcome, WelcomeOutcome::Resumed);
    assert_eq!(again.last_client_seq, 3, "server says what it processed");
    // A client that ignores that and re-sends 2 and 3, then sends 4.
    for client_seq in 2..=4u64 {
        publisher
            .send(&Frame::Publish {
                client_seq,
                channel: chan("once"),
                payload: Bytes::from(client_seq.to_be_bytes().to_vec()),
            })
            .await
            .expect("publish");
    }
    let got = read_messages(&mut sub, 4).await;
    assert_eq!(got, vec![(1, 1), (2, 2), (3, 3), (4, 4)]);
    // And nothing more arrives.
    publish_n(&mut publisher, "once", 5, 1).await;
    assert_eq!(read_messages(&mut sub, 1).await, vec![(5, 5)]);
}

#[tokio::test]
async fn resume_lands_on_another_worker_and_keeps_order() {
    let gw = Gateway::start(gateway_bin!(), GatewayOptions::default().workers(2)).expect("start");
    let url = gw.ws_url();
    let (mut publisher, _) = RawClient::handshake(&url).await.expect("pub");
    let (mut sub, welcome) = RawClient::handshake(&url).await.expect("sub");
    subscribe(&mut sub, "moving").await;
    let mut next = 1u64;
    let mut received = 0u64;
    // The kernel spreads connections over the workers by address; resume
    // until one resume has moved the session (or give up after 30).
    for _ in 0..30 {
        publish_n(&mut publisher, "moving", next, 5).await;
        next += 5;
        let got = read_messages(&mut sub, 2).await;
        for (seq, value) in &got {
            received += 1;
            assert_eq!((*seq, *value), (received, received));
        }
        sub.kill();
        publish_n(&mut publisher, "moving", next, 5).await;
        next += 5;
        let (s, again) = RawClient::resume(&url, &welcome, received)
            .await
            .expect("resume");
        assert_eq!(again.outcome, WelcomeOutcome::Resumed);
        sub = s;
        let pending = next - 1 - received;
        for (seq, value) in read_messages(&mut sub, pending as usize).await {
            received += 1;
            assert_eq!((seq, value), (received, received));
        }
        let metrics = ferry_tests::http::get(gw.ops_addr().expect("ops"), "/metrics")
            .await
            .expect("scrape")
            .text();
        if metrics.contains("ferry_resumes_total{outcome=\"moved_worker\"}") {
            return;
        }
    }
    panic!("no resume ever landed on the other worker");
}

#[tokio::test]
async fn resume_of_an_unknown_session_says_so() {
    let gw = Gateway::start(gateway_bin!(), GatewayOptions::default()).expect("start");
    let url = gw.ws_url();
    let (_c, mut welcome) = RawClient::handshake(&url).await.expect("hs");
    welcome.resume_secret.0[0] ^= 1;
    let (_c2, again) = RawClient::resume(&url, &welcome, 0).await.expect("resume");
    assert_eq!(again.outcome, WelcomeOutcome::NewSessionExpired);
    assert_ne!(again.session_id, welcome.session_id);
}

#[tokio::test]
async fn sigterm_sends_goaway_and_exits_zero() {
    let mut gw = Gateway::start(gateway_bin!(), GatewayOptions::default()).expect("start");
    let (mut c, _) = RawClient::handshake(&gw.ws_url()).await.expect("hs");
    gw.signal(libc::SIGTERM);
    match c.recv().await.expect("recv") {
        Some(Frame::GoAway { code, .. }) => assert_eq!(code, ErrorCode::ShuttingDown.as_u16()),
        other => panic!("expected GOAWAY, got {other:?}"),
    }
    assert!(c.is_closed_by_server().await);
    let status = gw.wait_exit(Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn a_thousand_concurrent_connections() {
    let gw = Gateway::start(gateway_bin!(), GatewayOptions::default()).expect("start");
    let url = gw.ws_url();
    let mut clients = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let (mut c, _) = RawClient::handshake(&url).await.expect("hs");
        subscribe(&mut c, "everyone").await;
        clients.push(c);
    }
    let (mut publisher, _) = RawClient::handshake(&url).await.expect("pub");
    publish_n(&mut publisher, "everyone", 1, 3).await;
    for c in &mut clients {
        assert_eq!(read_messages(c, 3).await, vec![(1, 1), (2, 2), (3, 3)]);
    }
}
