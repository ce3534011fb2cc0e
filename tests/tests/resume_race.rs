//! A phone that resumes twice in quick succession, on a gateway with two
//! workers: the first attempt is reset, left open, or abandoned before its
//! WELCOME, and the second may land on the other worker while the session
//! is still moving. Every round must end `Resumed` on the newest
//! connection, no live connection may get a final error, and the stream of
//! messages stays exact (no loss, no duplicate, no reordering).

use std::time::Duration;

use bytes::Bytes;
use ferry_protocol::{
    ChannelName, Frame, Hello, ResumeRequest, Welcome, WelcomeOutcome, frame::PROTOCOL_VERSION,
};
use ferry_tests::gateway_bin;
use ferry_tests::harness::{Gateway, GatewayOptions};
use ferry_tests::raw::RawClient;

const CLIENTS: u64 = 10;
const ROUNDS: u64 = 100;

#[derive(Debug, Clone, Copy)]
enum FirstAttempt {
    /// Reset within 0–1 ms of sending its HELLO.
    Reset,
    /// Left open: it completes (or not) while the second one runs.
    LeftOpen,
    /// Left open and never read: its WELCOME, if any, is never seen.
    Abandoned,
}

async fn attempt(url: &str, welcome: &Welcome, last_received_seq: u64) -> RawClient {
    let mut c = RawClient::connect(url, Some("ferry.v1"))
        .await
        .expect("connect");
    c.send(&Frame::Hello(Hello {
        version: PROTOCOL_VERSION,
        token: String::new(),
        resume: Some(ResumeRequest {
            session_id: welcome.session_id,
            secret: welcome.resume_secret,
            last_received_seq,
        }),
    }))
    .await
    .expect("hello");
    c
}

async fn one_client(url: String, client: u64, first: FirstAttempt) {
    let channel = ChannelName::parse(&format!("race:{client}")).expect("channel");
    let (mut c, welcome) = RawClient::handshake(&url).await.expect("hello");
    c.send(&Frame::Subscribe {
        request_id: 1,
        channel: channel.clone(),
    })
    .await
    .expect("subscribe");
    while !matches!(
        c.recv().await.expect("recv"),
        Some(Frame::Subscribed { .. })
    ) {}
    c.kill();
    let (mut publisher, _) = RawClient::handshake(&url).await.expect("publisher");

    let (mut last_seq, mut last_offset) = (0u64, 0u64);
    for round in 1..=ROUNDS {
        publisher
            .send(&Frame::Publish {
                client_seq: round,
                channel: channel.clone(),
                payload: Bytes::from(round.to_be_bytes().to_vec()),
            })
            .await
            .expect("publish");
        let a = attempt(&url, &welcome, last_seq).await;
        let a = match first {
            FirstAttempt::Reset => {
                if rand::random::<bool>() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                a.reset();
                None
            }
            FirstAttempt::LeftOpen | FirstAttempt::Abandoned => Some(a),
        };
        let (mut b, w) = RawClient::resume(&url, &welcome, last_seq)
            .await
            .unwrap_or_else(|e| panic!("client {client} round {round}: {e}"));
        assert_eq!(
            w.outcome,
            WelcomeOutcome::Resumed,
            "client {client} round {round} ({first:?}): the newest connection resumes"
        );
        assert_eq!(w.session_id, welcome.session_id);
        while last_offset < round {
            match b.recv().await.expect("recv") {
                Some(Frame::Message {
                    seq,
                    channel_offset,
                    payload,
                    ..
                }) => {
                    assert_eq!(seq, last_seq + 1, "client {client} round {round}: seq");
                    assert_eq!(
                        channel_offset,
                        last_offset + 1,
                        "client {client} round {round}: offset"
                    );
                    assert_eq!(&payload[..], &channel_offset.to_be_bytes()[..]);
                    (last_seq, last_offset) = (seq, channel_offset);
                    b.send(&Frame::Ack { seq }).await.expect("ack");
                }
                Some(Frame::Error { code, message, .. }) => panic!(
                    "client {client} round {round} ({first:?}): the live connection got ERROR {code}: {message}"
                ),
                Some(_) => {}
                None => {
                    panic!("client {client} round {round} ({first:?}): the live connection closed")
                }
            }
        }
        b.kill();
        if let (FirstAttempt::LeftOpen, Some(mut a)) = (first, a) {
            // It either resumed first and was then taken over, or lost to
            // the newer HELLO; either way it is told, not left hanging.
            let mut told = false;
            for _ in 0..4 {
                match a.recv().await {
                    Ok(Some(Frame::Welcome(_) | Frame::Message { .. })) => continue,
                    Ok(Some(Frame::Error { .. })) | Ok(None) | Err(_) => {
                        told = true;
                        break;
                    }
                    Ok(Some(_)) => continue,
                }
            }
            assert!(
                told,
                "client {client} round {round}: the older connection is closed"
            );
        }
    }
}

async fn race(first: FirstAttempt) {
    let gw = Gateway::start(gateway_bin!(), GatewayOptions::default().workers(2)).expect("gw");
    let url = gw.ws_url();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| tokio::spawn(one_client(url.clone(), i, first)))
        .collect();
    for c in clients {
        c.await.expect("client");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_reset_at_once_then_retried_always_resumes() {
    race(FirstAttempt::Reset).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_left_open_then_retried_always_resumes_on_the_newest() {
    race(FirstAttempt::LeftOpen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_resume_never_takes_the_session_from_the_newest() {
    race(FirstAttempt::Abandoned).await;
}
