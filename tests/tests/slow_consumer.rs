//! A consumer that stops reading is cut off with SLOW_CONSUMER (300) while
//! a fast subscriber of the same channel keeps receiving everything; the
//! cut session stays resumable while its replay log covers it.

use std::time::Duration;

use ferry_protocol::client::Transport;
use ferry_protocol::{ChannelName, ErrorCode, Frame, WelcomeOutcome};
use ferry_tests::gateway_bin;
use ferry_tests::harness::{Gateway, GatewayOptions};
use ferry_tests::raw::RawClient;
use ferry_tests::sdk::{connect, messages, payload, values};

const MESSAGES: u64 = 1000;
const SIZE: usize = 16 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_cut_while_a_fast_one_gets_everything() {
    let file = std::env::temp_dir().join(format!("ferry-slow-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        "[limits]\noutbound_queue = \"128KiB\"\n[session]\nreplay_max_bytes = \"64MiB\"\nreplay_max_messages = 100000\n[channels]\nhistory_messages = 100000\nhistory_bytes = \"64MiB\"\n",
    )
    .expect("config");
    let gw = Gateway::start(gateway_bin!(), GatewayOptions::default().config(&file)).expect("gw");
    let url = gw.ws_url();
    let channel = ChannelName::parse("flood").expect("channel");

    let (mut slow, welcome) = RawClient::handshake(&url).await.expect("slow");
    slow.send(&Frame::Subscribe {
        request_id: 1,
        channel: channel.clone(),
    })
    .await
    .expect("subscribe");
    assert!(matches!(
        slow.recv().await.expect("recv"),
        Some(Frame::Subscribed { .. })
    ));

    let (fast, mut fast_events) = connect(&gw, Transport::Ws).await;
    fast.subscribe("flood").await.expect("subscribe");
    let (publisher, _pe) = connect(&gw, Transport::Ws).await;
    // The slow client reads nothing from here on: the kernel buffers fill,
    // then its unsent backlog passes 128 KiB.
    let publishing = tokio::spawn(async move {
        for i in 0..MESSAGES {
            publisher
                .publish("flood", payload(i, SIZE))
                .await
                .expect("publish");
        }
        publisher.wait_acked().await.expect("acked");
    });
    let (got, _) = messages(&mut fast_events, MESSAGES as usize, Duration::from_secs(30)).await;
    assert_eq!(
        values(&got),
        (0..MESSAGES).collect::<Vec<_>>(),
        "the fast subscriber got everything"
    );
    publishing.await.expect("publisher");

    // The slow one finds what was in its buffers, then the ERROR.
    let mut last_seq = 0;
    let code = loop {
        match slow.recv().await.expect("recv") {
            Some(Frame::Message { seq, .. }) => {
                assert_eq!(seq, last_seq + 1);
                last_seq = seq;
            }
            Some(Frame::Error { code, .. }) => break code,
            Some(_) => continue,
            None => panic!("closed without an ERROR after {last_seq} messages"),
        }
    };
    assert_eq!(code, ErrorCode::SlowConsumer.as_u16());
    assert!(last_seq < MESSAGES, "it was cut before the end");

    // It resumes and gets the rest, in order.
    let (mut again, w) = RawClient::resume(&url, &welcome, last_seq)
        .await
        .expect("resume");
    assert_eq!(w.outcome, WelcomeOutcome::Resumed);
    let mut seq = last_seq;
    while seq < MESSAGES {
        match again.recv().await.expect("recv") {
            Some(Frame::Message {
                seq: s, payload, ..
            }) => {
                assert_eq!(s, seq + 1);
                let value = u64::from_be_bytes(payload.as_ref()[..8].try_into().expect("8 bytes"));
                assert_eq!(value, s - 1, "payload order");
                seq = s;
                if seq % 64 == 0 {
                    again.send(&Frame::Ack { seq }).await.expect("ack");
                }
            }
            Some(_) => continue,
            None => panic!("closed at {seq}"),
        }
    }
    let _ = std::fs::remove_file(file);
}
