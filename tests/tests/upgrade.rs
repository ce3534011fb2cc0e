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
