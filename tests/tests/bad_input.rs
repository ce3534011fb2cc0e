//! Bad input gets its error code from PROTOCOL.md and a close, and leaves
//! every other session working.

use bytes::Bytes;
use ferry_protocol::{ChannelName, ErrorCode, Frame, Hello};
use ferry_tests::gateway_bin;
use ferry_tests::harness::{Gateway, GatewayOptions};
use ferry_tests::raw::RawClient;

fn start() -> Gateway {
    Gateway::start(gateway_bin!(), GatewayOptions::default()).expect("gateway starts")
}

fn chan(name: &str) -> ChannelName {
    ChannelName::parse(name).expect("valid channel")
}

/// A healthy session that must keep working while others misbehave.
struct Bystander {
    client: RawClient,
    next_seq: u64,
}

impl Bystander {
    async fn new(url: &str) -> Self {
        let (mut client, _) = RawClient::handshake(url).await.expect("handshake");
        client
            .send(&Frame::Subscribe {
                request_id: 1,
                channel: chan("bystander"),
            })
            .await
            .expect("subscribe");
        assert!(matches!(
            client.recv().await.expect("recv"),
            Some(Frame::Subscribed { request_id: 1, .. })
        ));
        Self {
            client,
            next_seq: 1,
        }
    }

    /// Publishes to its own channel and checks the message comes back.
    async fn still_works(&mut self) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.client
            .send(&Frame::Publish {
                client_seq: seq,
                channel: chan("bystander"),
                payload: Bytes::from(seq.to_be_bytes().to_vec()),
            })
            .await
            .expect("publish");
        loop {
            match self.client.recv().await.expect("recv") {
                Some(Frame::Message { payload, .. }) => {
                    assert_eq!(payload.as_ref(), seq.to_be_bytes());
                    return;
                }
                Some(Frame::PubAck { .. }) => continue,
                other => panic!("bystander got {other:?}"),
            }
        }
    }
}

async fn assert_rejected(url: &str, subprotocol: Option<&str>, send: Vec<Bytes>, want: ErrorCode) {
    let mut c = RawClient::connect(url, subprotocol).await.expect("connect");
    for bytes in send {
        // The server may already have closed; the ERROR is what counts.
        let _ = c.send_bytes(bytes).await;
    }
    let code = c.expect_error().await.expect("an ERROR frame");
    assert_eq!(code, want.as_u16(), "wanted {want:?}");
    assert!(c.is_closed_by_server().await, "connection must be closed");
}

fn hello() -> Bytes {
    Frame::Hello(Hello {
        version: 1,
        token: String::new(),
        resume: None,
    })
    .to_bytes()
}

#[tokio::test]
async fn each_bad_input_gets_its_code_and_others_keep_working() {
    let gw = start();
    let url = gw.ws_url();
    let mut bystander = Bystander::new(&url).await;
    bystander.still_works().await;

    let cases: Vec<(&str, Option<&str>, Vec<Bytes>, ErrorCode)> = vec![
        (
            "no subprotocol",
            None,
            vec![hello()],
            ErrorCode::WrongSubprotocol,
        ),
        (
            "frame before HELLO",
            Some("ferry.v1"),
            vec![Frame::Ping { nonce: 1 }.to_bytes()],
            ErrorCode::UnexpectedFrame,
        ),
        (
            "unknown frame type",
            Some("ferry.v1"),
            vec![Bytes::from_static(&[0xee, 1, 2, 3])],
            ErrorCode::UnknownFrameType,
        ),
        (
            "truncated HELLO",
            Some("ferry.v1"),
            vec![Bytes::from_static(&[0x01, 0x01])],
            ErrorCode::MalformedFrame,
        ),
        (
            "unsupported version",
            Some("ferry.v1"),
            vec![
                Frame::Hello(Hello {
                    version: 99,
                    token: String::new(),
                    resume: None,
                })
                .to_bytes(),
            ],
            ErrorCode::UnsupportedVersion,
        ),
        (
            "oversize message",
            Some("ferry.v1"),
            vec![hello(), Bytes::from(vec![0x0b; 200 * 1024])],
            ErrorCode::FrameTooLarge,
        ),
        (
            "garbage after HELLO",
            Some("ferry.v1"),
            vec![hello(), Bytes::from_static(&[0x07, 0xff])],
            ErrorCode::MalformedFrame,
        ),
        (
            "publish skipping a client_seq",
            Some("ferry.v1"),
            vec![
                hello(),
                Frame::Publish {
                    client_seq: 5,
                    channel: chan("x"),
                    payload: Bytes::new(),
                }
                .to_bytes(),
            ],
            ErrorCode::ClientSeqGap,
        ),
        (
            "ack of a seq never sent",
            Some("ferry.v1"),
            vec![hello(), Frame::Ack { seq: 10 }.to_bytes()],
            ErrorCode::InvalidAck,
        ),
        (
            "second HELLO",
            Some("ferry.v1"),
            vec![hello(), hello()],
            ErrorCode::UnexpectedFrame,
        ),
        (
            "server-only frame from a client",
            Some("ferry.v1"),
            vec![hello(), Frame::PubAck { client_seq: 1 }.to_bytes()],
            ErrorCode::UnexpectedFrame,
        ),
    ];
    for (name, subprotocol, send, want) in cases {
        eprintln!("case: {name}");
        assert_rejected(&url, subprotocol, send, want).await;
        bystander.still_works().await;
    }
}

#[tokio::test]
async fn an_offer_without_ferry_is_refused_with_code_106() {
    let gw = start();
    let (status, body) = RawClient::refused_upgrade(&gw.ws_url(), "chat.v9")
        .await
        .expect("refusal");
    assert_eq!(status, 400);
    assert!(body.starts_with("106 "), "body: {body}");
    // The gateway still serves.
    RawClient::handshake(&gw.ws_url()).await.expect("handshake");
}

#[tokio::test]
async fn text_messages_are_refused() {
    let gw = start();
    let url = gw.ws_url();
    let mut c = RawClient::connect(&url, Some("ferry.v1"))
        .await
        .expect("connect");
    c.send_bytes(hello()).await.expect("hello");
    assert!(matches!(
        c.recv().await.expect("recv"),
        Some(Frame::Welcome(_))
    ));
    c.send_text("{\"hello\":1}").await.expect("send text");
    assert_eq!(
        c.expect_error().await.expect("error"),
        ErrorCode::TextNotSupported.as_u16()
    );
}

#[tokio::test]
async fn subscribe_limits_and_unknown_unsubscribe_answer_without_closing() {
    let gw = start();
    let (mut c, welcome) = RawClient::handshake(&gw.ws_url()).await.expect("handshake");
    let max = welcome.max_subscriptions;
    for i in 0..max {
        c.send(&Frame::Subscribe {
            request_id: i + 1,
            channel: chan(&format!("room:{i}")),
        })
        .await
        .expect("subscribe");
        assert!(matches!(
            c.recv().await.expect("recv"),
            Some(Frame::Subscribed { .. })
        ));
    }
    c.send(&Frame::Subscribe {
        request_id: 999,
        channel: chan("one-too-many"),
    })
    .await
    .expect("subscribe");
    match c.recv().await.expect("recv") {
        Some(Frame::Error {
            code, reference, ..
        }) => {
            assert_eq!(code, ErrorCode::TooManySubscriptions.as_u16());
            assert_eq!(reference, 999);
        }
        other => panic!("expected ERROR 201, got {other:?}"),
    }
    c.send(&Frame::Unsubscribe {
        request_id: 1000,
        channel: chan("never-subscribed"),
    })
    .await
    .expect("unsubscribe");
    match c.recv().await.expect("recv") {
        Some(Frame::Error {
            code, reference, ..
        }) => {
            assert_eq!(code, ErrorCode::NotSubscribed.as_u16());
            assert_eq!(reference, 1000);
        }
        other => panic!("expected ERROR 202, got {other:?}"),
    }
    // Still usable.
    c.send(&Frame::Ping { nonce: 7 }).await.expect("ping");
    assert_eq!(
        c.recv().await.expect("recv"),
        Some(Frame::Pong { nonce: 7 })
    );
}
