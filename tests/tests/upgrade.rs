//! Zero-downtime upgrade: a second gateway takes over the sockets and the
//! sessions of the first while clients keep going.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferry_protocol::{ChannelName, ErrorCode, Frame, WelcomeOutcome};
use ferry_tests::gateway_bin;
use ferry_tests::harness::{Gateway, GatewayOptions};
use ferry_tests::raw::RawClient;

fn chan() -> ChannelName {
    ChannelName::parse("upgrade").expect("channel")
}

async fn publish(c: &mut RawClient, client_seq: u64) {
    c.send(&Frame::Publish {
        client_seq,
        channel: chan(),
        payload: Bytes::from(client_seq.to_be_bytes().to_vec()),
    })
    .await
    .expect("publish");
}

/// Reads until a MESSAGE; skips acks and control.
async fn next_message(c: &mut RawClient) -> Option<(u64, u64)> {
    loop {
        match c.recv().await.expect("recv")? {
            Frame::Message { seq, payload, .. } => {
                let v = u64::from_be_bytes(payload.as_ref().try_into().expect("8 bytes"));
                return Some((seq, v));
            }
            Frame::GoAway { code, .. } => {
                assert_eq!(code, ErrorCode::Upgrading.as_u16());
                return None;
            }
            _ => continue,
        }
    }
}

/// Connects to `port` in a loop until stopped; counts refusals.
fn refusal_counter(port: u16, stop: Arc<AtomicBool>, refused: Arc<AtomicU64>, ok: Arc<AtomicU64>) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                Err(_) => refused.fetch_add(1, Ordering::Relaxed),
            };
            std::thread::sleep(Duration::from_millis(2));
        }
    });
}

#[tokio::test]
async fn sessions_move_to_the_new_process_without_loss_or_refusal() {
    let mut old = Gateway::start(gateway_bin!(), GatewayOptions::default()).expect("old");
    let url = old.ws_url();
    let (mut sub, sub_welcome) = RawClient::handshake(&url).await.expect("sub");
    sub.send(&Frame::Subscribe {
        request_id: 1,
        channel: chan(),
    })
    .await
    .expect("subscribe");
    assert!(matches!(
        sub.recv().await.expect("recv"),
        Some(Frame::Subscribed { .. })
    ));
    let (mut publisher, pub_welcome) = RawClient::handshake(&url).await.expect("pub");
    for i in 1..=10 {
        publish(&mut publisher, i).await;
    }
    let mut received = Vec::new();
    for _ in 0..6 {
        received.push(next_message(&mut sub).await.expect("message"));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicU64::new(0));
    refusal_counter(
        old.ws.port(),
        stop.clone(),
        refused.clone(),
        connected.clone(),
    );

    let new = Gateway::start(
        gateway_bin!(),
        GatewayOptions::default().takeover_from(old.data_dir()),
    )
    .expect("new");
    assert_eq!(new.ws, old.ws, "the new process serves the same address");

    // The old process sends everyone away and exits cleanly.
    while let Some(m) = next_message(&mut sub).await {
        received.push(m);
    }
    let status = old.wait_exit(Duration::from_secs(20)).expect("old exits");
    assert!(status.success(), "old process exit: {status:?}");

    // Clients come back and resume on the new process.
    let last = received.last().map_or(0, |(seq, _)| *seq);
    let (mut sub, again) = RawClient::resume(&url, &sub_welcome, last)
        .await
        .expect("resume");
    assert_eq!(again.outcome, WelcomeOutcome::Resumed);
    let (mut publisher, p_again) = RawClient::resume(&url, &pub_welcome, 0)
        .await
        .expect("resume");
    assert_eq!(p_again.outcome, WelcomeOutcome::Resumed);
    assert_eq!(p_again.last_client_seq, 10, "publishes are remembered");
    for i in 11..=20 {
        publish(&mut publisher, i).await;
    }
    while received.len() < 20 {
        received.push(
            next_message(&mut sub)
                .await
                .expect("message on the new process"),
        );
    }
    stop.store(true, Ordering::Relaxed);
    assert_eq!(
        received,
        (1..=20).map(|i| (i, i)).collect::<Vec<_>>(),
        "every message once, in order, seq continuous"
    );
    assert_eq!(
        refused.load(Ordering::Relaxed),
        0,
        "a connection attempt was refused"
    );
    assert!(connected.load(Ordering::Relaxed) > 0);
    new.wait_for_log("took over from the previous process", 1)
        .expect("new process reports the takeover");
}

#[tokio::test]
async fn a_takeover_that_dies_rolls_back() {
    let old = Gateway::start(gateway_bin!(), GatewayOptions::default()).expect("old");
    let (mut c, welcome) = RawClient::handshake(&old.ws_url()).await.expect("hs");
    // A fake new process: says Hello on the control socket, then vanishes.
    let control = old.data_dir().join("control.sock");
    {
        use std::io::Write;
        let mut s = std::os::unix::net::UnixStream::connect(&control).expect("control");
        let hello = [0u8, 0, 0, 2, 1, 1];
        s.write_all(&hello).expect("hello");
        std::thread::sleep(Duration::from_millis(300));
    }
    old.wait_for_log("upgrade failed, serving on", 1)
        .expect("rollback logged");
    // The client was sent away; its session is still here.
    assert!(c.is_closed_by_server().await, "clients were sent away");
    let (mut c, again) = RawClient::resume(&old.ws_url(), &welcome, 0)
        .await
        .expect("resume");
    assert_eq!(again.outcome, WelcomeOutcome::Resumed);
    c.send(&Frame::Ping { nonce: 1 }).await.expect("ping");
    assert_eq!(
        c.recv().await.expect("recv"),
        Some(Frame::Pong { nonce: 1 })
    );
}

/// Plays the old process on the control socket, to hold the takeover at
/// the point where a client has already reconnected to the new process
/// but its session has not been shipped. (Multi-thread runtime: the fake
/// old process runs while the test blocks starting the new one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reconnects_before_its_session_moved_gets_it_pulled() {
    use ferry_protocol::replay_log::Entry;
    use ferry_protocol::{ResumeSecret, SessionId};
    use gateway::session::state::SessionSnapshot;
    use gateway::upgrade::fd_transfer::send_fds;
    use gateway::upgrade::wire::{ChannelSnapshot, ControlFrame, read_frame, write_frame};
    use std::os::fd::AsRawFd;

    let data_dir = std::env::temp_dir().join(format!("ferry-fake-old-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir).expect("dir");
    let control_path = data_dir.join("control.sock");
    let _ = std::fs::remove_file(&control_path);
    let control = tokio::net::UnixListener::bind(&control_path).expect("bind control");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();

    let fake_old = tokio::spawn(async move {
        let (stream, _) = control.accept().await.expect("accept");
        let (mut r, mut w) = stream.into_split();
        assert!(matches!(
            read_frame(&mut r).await.expect("hello"),
            ControlFrame::Hello { .. }
        ));
        let listeners = ControlFrame::Listeners {
            reset_key: [0; 32],
            ws: 1,
            wss: 0,
            quic: 0,
        };
        write_frame(&mut w, &listeners).await.expect("listeners");
        w.as_ref().writable().await.expect("writable");
        send_fds(w.as_ref(), &[listener.as_raw_fd()]).expect("fds");
        // Wait for the pull of the session the client resumes.
        let ControlFrame::Pull { id, secret } = read_frame(&mut r).await.expect("pull") else {
            panic!("expected a pull");
        };
        let channel = ChannelName::parse("upgrade").expect("channel");
        let entry = |seq, offset| Entry {
            seq,
            channel: channel.clone(),
            channel_offset: offset,
            payload: Bytes::from(vec![seq as u8]),
        };
        let snapshot = SessionSnapshot {
            id,
            secret,
            user: None,
            last_seq: 3,
            acked: 1,
            entries: vec![entry(2, 5), entry(3, 6)],
            overflowed: false,
            last_client_seq: 7,
            subscriptions: vec![(channel.clone(), 6)],
        };
        write_frame(
            &mut w,
            &ControlFrame::Pulled {
                id,
                snapshot: Some(Box::new(snapshot)),
            },
        )
        .await
        .expect("pulled");
        let channels = vec![ChannelSnapshot {
            channel,
            last_offset: 6,
            history: vec![(5, Bytes::from_static(b"e")), (6, Bytes::from_static(b"f"))],
        }];
        write_frame(&mut w, &ControlFrame::Channels(channels))
            .await
            .expect("channels");
        write_frame(&mut w, &ControlFrame::Done { sessions: 0 })
            .await
            .expect("done");
        assert!(matches!(
            read_frame(&mut r).await.expect("commit"),
            ControlFrame::Committed
        ));
        drop(listener);
    });

    let new = Gateway::start(
        gateway_bin!(),
        GatewayOptions::default().takeover_from(&data_dir),
    )
    .expect("new");
    assert_eq!(new.ws.port(), port, "serves the inherited socket");
    let welcome = ferry_protocol::Welcome {
        session_id: SessionId([42; 16]),
        resume_secret: ResumeSecret([43; 32]),
        outcome: WelcomeOutcome::New,
        heartbeat_interval_ms: 0,
        resume_window_ms: 0,
        max_frame_size: 0,
        max_subscriptions: 0,
        last_client_seq: 0,
    };
    let (mut c, again) = RawClient::resume(&new.ws_url(), &welcome, 1)
        .await
        .expect("resume");
    assert_eq!(again.outcome, WelcomeOutcome::Resumed);
    assert_eq!(again.last_client_seq, 7);
    for want in [2u64, 3] {
        match c.recv().await.expect("recv") {
            Some(Frame::Message {
                seq,
                channel_offset,
                ..
            }) => assert_eq!((seq, channel_offset), (want, want + 3)),
            other => panic!("expected a replayed MESSAGE, got {other:?}"),
        }
    }
    fake_old.await.expect("fake old process");
    // The channel continues at the old offsets on the new process.
    c.send(&Frame::Publish {
        client_seq: 8,
        channel: chan(),
        payload: Bytes::from_static(b"g"),
    })
    .await
    .expect("publish");
    loop {
        match c.recv().await.expect("recv") {
            Some(Frame::Message {
                seq,
                channel_offset,
                ..
            }) => {
                assert_eq!((seq, channel_offset), (4, 7));
                break;
            }
            Some(Frame::PubAck { .. }) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(data_dir);
}

/// Clients publishing continuously through an upgrade (the SDK follows the
/// GOAWAY and resumes): every message exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_sdk_traffic_through_an_upgrade_is_exactly_once() {
    use ferry_protocol::client::Transport;
    use ferry_tests::sdk::{connect, messages, values};

    let old = Gateway::start(gateway_bin!(), GatewayOptions::default()).expect("old");
    let mut clients = Vec::new();
    for transport in [Transport::Ws, Transport::Quic] {
        let (c, ev) = connect(&old, transport).await;
        c.subscribe("echo:sdk").await.expect("subscribe");
        clients.push((c, ev));
    }
    let (publisher, _pe) = connect(&old, Transport::Ws).await;
    let total = 120u64;
    let data_dir = old.data_dir().to_path_buf();
    let publishing = tokio::spawn(async move {
        for i in 0..total {
            publisher
                .publish("echo:sdk", ferry_tests::sdk::payload(i, 16))
                .await
                .expect("publish");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        publisher.wait_acked().await.expect("acked");
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let new = tokio::task::spawn_blocking(move || {
        Gateway::start(
            gateway_bin!(),
            GatewayOptions::default().takeover_from(&data_dir),
        )
        .expect("new")
    })
    .await
    .expect("start new");
    publishing.await.expect("publisher");
    for (c, ev) in &mut clients {
        let (got, _) = messages(ev, total as usize, Duration::from_secs(20)).await;
        ferry_tests::sdk::assert_contiguous_seqs(&got, 1);
        assert_eq!(values(&got), (0..total).collect::<Vec<_>>());
        // Nothing more than the total arrives.
        let extra = tokio::time::timeout(Duration::from_millis(300), async {
            loop {
                if let Some(ferry_protocol::client::Event::Message(d)) = ev.recv().await {
                    return d;
                }
            }
        })
        .await;
        assert!(extra.is_err(), "an extra message arrived: {extra:?}");
        assert!(c.stats().resumes_ok >= 1);
    }
    drop(new);
}

/// Like the load tester's echo: each client publishes to its own channel
/// and receives its own messages, through an upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_clients_through_an_upgrade_get_each_message_once() {
    use ferry_protocol::client::Transport;
    use ferry_tests::sdk::{connect, messages, values};

    let old = Gateway::start(gateway_bin!(), GatewayOptions::default()).expect("old");
    let total = 100u64;
    let mut tasks = Vec::new();
    for (i, transport) in [Transport::Ws, Transport::Quic].into_iter().enumerate() {
        let (c, mut ev) = connect(&old, transport).await;
        let channel = format!("echo:{i}");
        c.subscribe(&channel).await.expect("subscribe");
        tasks.push(tokio::spawn(async move {
            for n in 0..total {
                c.publish(&channel, ferry_tests::sdk::payload(n, 16))
                    .await
                    .expect("publish");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let (got, _) = messages(&mut ev, total as usize, Duration::from_secs(20)).await;
            ferry_tests::sdk::assert_contiguous_seqs(&got, 1);
            assert_eq!(
                values(&got),
                (0..total).collect::<Vec<_>>(),
                "{transport:?}"
            );
            let extra = tokio::time::timeout(Duration::from_millis(300), async {
                loop {
                    if let Some(ferry_protocol::client::Event::Message(d)) = ev.recv().await {
                        return d;
                    }
                }
            })
            .await;
            assert!(
                extra.is_err(),
                "{transport:?}: an extra message arrived: {extra:?}"
            );
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let data_dir = old.data_dir().to_path_buf();
    let new = tokio::task::spawn_blocking(move || {
        Gateway::start(
            gateway_bin!(),
            GatewayOptions::default().takeover_from(&data_dir),
        )
        .expect("new")
    })
    .await
    .expect("start new");
    for t in tasks {
        t.await.expect("client");
    }
    drop(new);
}

/// A client whose connection reached the old process before a takeover and
/// whose HELLO arrives after it began used to get a session from the old
/// process that was never shipped: its acknowledged publishes were lost.
/// Now that HELLO is sent on to the new process (issue 14, finding 1).
#[tokio::test]
async fn a_hello_reaching_the_old_process_during_a_takeover_is_sent_to_the_new_one() {
    let mut old = Gateway::start(gateway_bin!(), GatewayOptions::default()).expect("old");
    let url = old.ws_url();
    // Upgraded to WebSocket on the old process, HELLO not sent yet.
    let mut late = RawClient::connect(&url, Some("ferry.v1"))
        .await
        .expect("connect");
    let data_dir = old.data_dir().to_path_buf();
    let new = std::thread::spawn(move || {
        Gateway::start(
            gateway_bin!(),
            GatewayOptions::default().takeover_from(&data_dir),
        )
    });
    old.wait_for_log("a new process is taking over", 1)
        .expect("the takeover begins");
    late.send(&Frame::Hello(ferry_protocol::Hello {
        version: ferry_protocol::frame::PROTOCOL_VERSION,
        token: String::new(),
        resume: None,
    }))
    .await
    .expect("hello");
    match late.recv().await.expect("answer") {
        Some(Frame::GoAway {
            code,
            reconnect_after_ms,
            ..
        }) => {
            assert_eq!(code, ErrorCode::Upgrading.as_u16());
            assert!(reconnect_after_ms < 1000, "{reconnect_after_ms} ms");
        }
        other => panic!("expected GOAWAY from the old process, got {other:?}"),
    }
    let _new = new.join().expect("thread").expect("new process");
    let status = old.wait_exit(Duration::from_secs(20)).expect("old exits");
    assert!(status.success(), "old process exit: {status:?}");
    // The client comes back and gets its session from the new process.
    let (mut client, welcome) = RawClient::handshake(&url).await.expect("hello");
    assert_eq!(welcome.outcome, WelcomeOutcome::New);
    publish(&mut client, 1).await;
    loop {
        match client.recv().await.expect("recv") {
            Some(Frame::PubAck { client_seq: 1 }) => break,
            Some(Frame::Error { code, message, .. }) => panic!("ERROR {code}: {message}"),
            Some(_) => continue,
            None => panic!("closed"),
        }
    }
}
