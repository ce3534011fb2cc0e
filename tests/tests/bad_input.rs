//! Bad input gets its error code from PROTOCOL.md and a close, and leaves
//! every other session working.

use bytes::Bytes;
use ferry_protocol::{ChannelName, ErrorCode, Frame, Hello};
use ferry_tests::gateway_bin;
use ferry_tests::harness::{Gateway, GatewayOptions};
use ferry_tests::raw::{CloseAnswer, RawClient};
use ferry_tests::raw_quic::{RawQuic, overlong_varint};
use ferry_tests::raw_ws::{RawWs, ServerFrame, frame, hello_frame, opcode};

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

/// What a misbehaving WebSocket client sends: binary messages, or one text
/// message.
enum Send {
    Binary(Bytes),
    Text(&'static str),
}

/// Every framing violation of PROTOCOL.md §4.16 (and the WebSocket-level
/// ones of §2.1), before and after HELLO, is answered with its ERROR
/// before the close, never a bare close.
#[tokio::test]
async fn framing_violations_get_their_error_before_the_close() {
    let gw = start();
    let url = gw.ws_url();
    let oversize = |len: usize| Send::Binary(Bytes::from(vec![0x0b; len]));
    let cases: Vec<(&str, bool, Send, ErrorCode)> = vec![
        (
            "oversize first message",
            false,
            oversize(65_537),
            ErrorCode::FrameTooLarge,
        ),
        (
            "huge first message",
            false,
            oversize(4 << 20),
            ErrorCode::FrameTooLarge,
        ),
        (
            "oversize message after HELLO",
            true,
            oversize(65_537),
            ErrorCode::FrameTooLarge,
        ),
        (
            "huge message after HELLO",
            true,
            oversize(4 << 20),
            ErrorCode::FrameTooLarge,
        ),
        (
            "text first",
            false,
            Send::Text("{}"),
            ErrorCode::TextNotSupported,
        ),
        (
            "text after HELLO",
            true,
            Send::Text("{}"),
            ErrorCode::TextNotSupported,
        ),
        (
            "empty first message",
            false,
            Send::Binary(Bytes::new()),
            ErrorCode::MalformedFrame,
        ),
        (
            "empty message after HELLO",
            true,
            Send::Binary(Bytes::new()),
            ErrorCode::MalformedFrame,
        ),
        (
            "unknown type after HELLO",
            true,
            Send::Binary(Bytes::from_static(&[0x00])),
            ErrorCode::UnknownFrameType,
        ),
        (
            "trailing bytes after HELLO",
            true,
            Send::Binary(Bytes::from_static(&[0x0b, 0x01, 0x00])),
            ErrorCode::MalformedFrame,
        ),
        (
            "bad varint after HELLO",
            true,
            Send::Binary(Bytes::from_static(&[
                0x0b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ])),
            ErrorCode::MalformedFrame,
        ),
        (
            "invalid channel name after HELLO",
            true,
            Send::Binary(Bytes::from_static(&[0x03, 0x01, 0x00])),
            ErrorCode::InvalidChannel,
        ),
    ];
    for (name, after_hello, send, want) in cases {
        eprintln!("case: {name}");
        let mut c = if after_hello {
            RawClient::handshake(&url).await.expect("handshake").0
        } else {
            RawClient::connect(&url, Some("ferry.v1"))
                .await
                .expect("connect")
        };
        // The server may stop reading before the whole message is in.
        let _ = match send {
            Send::Binary(bytes) => c.send_bytes(bytes).await,
            Send::Text(text) => c.send_text(text).await,
        };
        let code = c
            .expect_error()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(code, want.as_u16(), "{name}: wanted {want:?}");
        assert!(c.is_closed_by_server().await, "{name}: must be closed");
    }
}

/// A client that closes with a Close frame gets it echoed (RFC 6455
/// §5.5.1), with its own code, on WS and WSS, before and after HELLO.
#[tokio::test]
async fn a_client_close_is_echoed() {
    let gw = start();
    let url = gw.ws_url();

    let (mut c, _) = RawClient::handshake(&url).await.expect("handshake");
    assert_eq!(
        c.close_with(4001).await,
        CloseAnswer::Echoed(4001),
        "ws, session"
    );

    let mut c = RawClient::connect(&url, Some("ferry.v1"))
        .await
        .expect("connect");
    assert_eq!(
        c.close_with(4002).await,
        CloseAnswer::Echoed(4002),
        "ws, before HELLO"
    );

    let mut c = RawClient::connect_wss(&gw.wss_url(), &gw.cert())
        .await
        .expect("wss connect");
    c.send_bytes(hello()).await.expect("hello");
    assert!(matches!(
        c.recv().await.expect("recv"),
        Some(Frame::Welcome(_))
    ));
    assert_eq!(
        c.close_with(4003).await,
        CloseAnswer::Echoed(4003),
        "wss, session"
    );

    let mut c = RawClient::connect_wss(&gw.wss_url(), &gw.cert())
        .await
        .expect("wss connect");
    assert_eq!(
        c.close_with(1000).await,
        CloseAnswer::Echoed(1000),
        "wss, before HELLO"
    );
}

/// A QUIC length prefix over the frame limit gets 102 (§2.2, §4.16), one
/// that is not a valid varint gets 100, before and after HELLO.
#[tokio::test]
async fn quic_bad_length_prefixes_get_their_error() {
    let gw = start();
    let addr = gw.ready_value("quic").expect("quic").parse().expect("addr");
    let mut over = bytes::BytesMut::new();
    ferry_protocol::codec::put_varint(&mut over, 65_537);
    let mut max = bytes::BytesMut::new();
    ferry_protocol::codec::put_varint(&mut max, u64::MAX);
    let cases: Vec<(&str, bool, Bytes, ErrorCode)> = vec![
        (
            "prefix over the limit first",
            false,
            over.clone().freeze(),
            ErrorCode::FrameTooLarge,
        ),
        (
            "prefix over the limit after HELLO",
            true,
            over.freeze(),
            ErrorCode::FrameTooLarge,
        ),
        (
            "prefix of 2^64-1 after HELLO",
            true,
            max.freeze(),
            ErrorCode::FrameTooLarge,
        ),
        (
            "overlong prefix first",
            false,
            overlong_varint(),
            ErrorCode::MalformedFrame,
        ),
        (
            "overlong prefix after HELLO",
            true,
            overlong_varint(),
            ErrorCode::MalformedFrame,
        ),
        (
            "overflowing prefix after HELLO",
            true,
            Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            ErrorCode::MalformedFrame,
        ),
    ];
    for (name, after_hello, prefix, want) in cases {
        eprintln!("case: {name}");
        let mut c = RawQuic::connect(addr, &gw.cert()).await.expect("connect");
        if after_hello {
            c.hello().await.expect("hello");
        }
        c.send_raw(&prefix).await.expect("send");
        let code = c
            .expect_error()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(code, want.as_u16(), "{name}: wanted {want:?}");
        assert!(c.is_closed_by_server().await, "{name}: must be closed");
    }
}

/// ERROR 108 answers an ACK, which has neither a request id nor a
/// client_seq: `ref` is 0 (§4.13) and the seq is in the message.
#[tokio::test]
async fn an_invalid_ack_is_answered_with_ref_0() {
    let gw = start();
    let (mut c, _) = RawClient::handshake(&gw.ws_url()).await.expect("handshake");
    c.send(&Frame::Ack { seq: 77 }).await.expect("ack");
    match c.recv().await.expect("recv") {
        Some(Frame::Error {
            code,
            reference,
            message,
        }) => {
            assert_eq!(code, ErrorCode::InvalidAck.as_u16());
            assert_eq!(reference, 0, "an ACK is no request: ref must be 0");
            assert!(
                message.contains("77"),
                "the message names the seq: {message}"
            );
        }
        other => panic!("expected ERROR 108, got {other:?}"),
    }
    assert!(c.is_closed_by_server().await);
}

/// WebSocket-level violations that tungstenite reports as errors (invalid
/// UTF-8 in a text message, a reserved opcode, an unmasked client frame)
/// still get an ERROR before the close: 110 for text, 100 for the rest.
#[tokio::test]
async fn websocket_framing_violations_get_their_error() {
    let gw = start();
    let cases: Vec<(&str, bool, Vec<u8>, ErrorCode)> = vec![
        (
            "invalid UTF-8 text first",
            false,
            frame(opcode::TEXT, &[0xff, 0xfe], true),
            ErrorCode::TextNotSupported,
        ),
        (
            "invalid UTF-8 text after HELLO",
            true,
            frame(opcode::TEXT, &[0xc3, 0x28], true),
            ErrorCode::TextNotSupported,
        ),
        (
            "reserved opcode first",
            false,
            frame(opcode::RESERVED, b"x", true),
            ErrorCode::MalformedFrame,
        ),
        (
            "reserved opcode after HELLO",
            true,
            frame(opcode::RESERVED, b"x", true),
            ErrorCode::MalformedFrame,
        ),
        (
            "unmasked frame after HELLO",
            true,
            frame(opcode::BINARY, &[0x0b, 0x01], false),
            ErrorCode::MalformedFrame,
        ),
    ];
    for (name, after_hello, bytes, want) in cases {
        eprintln!("case: {name}");
        let tcp = tokio::net::TcpStream::connect(gw.ws)
            .await
            .expect("connect");
        let mut c = RawWs::new(tcp);
        c.upgrade(&gw.ws.to_string(), "/ws").await.expect("upgrade");
        if after_hello {
            c.write(&hello_frame()).await.expect("hello");
            match c.recv().await.expect("recv") {
                Some(ServerFrame::Ferry(Frame::Welcome(_))) => {}
                other => panic!("{name}: expected WELCOME, got {other:?}"),
            }
        }
        let _ = c.write(&bytes).await;
        let code = c
            .expect_error()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(code, want.as_u16(), "{name}: wanted {want:?}");
        assert!(
            c.closed_within(std::time::Duration::from_secs(5)).await,
            "{name}: must be closed"
        );
    }
}
