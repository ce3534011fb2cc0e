//! The client SDK against tiny scripted servers in this file: a WebSocket
//! one (tokio-tungstenite, `ferry.v1`) and a QUIC one (quinn, self-signed
//! certificate). Each step is bounded; each test takes well under 5 s.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferry_protocol::client::{
    Client, ClientConfig, ClientError, Event, Events, TlsTrust, Transport,
};
use ferry_protocol::codec;
use ferry_protocol::frame::{
    Frame, Hello, QUIC_ALPN, ResumeSecret, SessionId, WS_SUBPROTOCOL, Welcome, WelcomeOutcome,
};
use ferry_protocol::{ChannelName, DecodeLimits, ErrorCode};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// Bound on one step of a test.
const STEP: Duration = Duration::from_secs(2);
/// Bound on a whole test.
const TEST: Duration = Duration::from_secs(5);

async fn bounded<F: Future>(test: F) -> F::Output {
    timeout(TEST, test)
        .await
        .expect("test took longer than 5 s")
}

fn chan(name: &str) -> ChannelName {
    ChannelName::parse(name).unwrap()
}

fn welcome(outcome: WelcomeOutcome, id: u8, last_client_seq: u64) -> Frame {
    Frame::Welcome(Welcome {
        session_id: SessionId([id; 16]),
        resume_secret: ResumeSecret([id; 32]),
        outcome,
        heartbeat_interval_ms: 30_000,
        resume_window_ms: 60_000,
        max_frame_size: 65_536,
        max_subscriptions: 16,
        last_client_seq,
    })
}

fn message(seq: u64) -> Frame {
    Frame::Message {
        seq,
        channel: chan("chat:1"),
        channel_offset: 100 + seq,
        payload: Bytes::from(format!("m{seq}")),
    }
}

async fn next_event(events: &mut Events) -> Event {
    timeout(STEP, events.recv())
        .await
        .expect("no event in time")
        .expect("events ended")
}

async fn expect_message(events: &mut Events, seq: u64) {
    match next_event(events).await {
        Event::Message(d) => {
            assert_eq!(d.seq, seq);
            assert_eq!(d.channel_offset, 100 + seq);
            assert_eq!(d.payload, Bytes::from(format!("m{seq}")));
        }
        other => panic!("expected message {seq}, got {other:?}"),
    }
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let started = tokio::time::Instant::now();
    while !cond() {
        assert!(started.elapsed() < STEP, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The server's side of one WebSocket connection.
struct Peer<S> {
    ws: WebSocketStream<S>,
}

impl Peer<tokio::net::TcpStream> {
    async fn accept(listener: &TcpListener) -> Self {
        let (tcp, _) = timeout(STEP, listener.accept())
            .await
            .expect("no connection in time")
            .unwrap();
        Self::upgrade(tcp, true).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Peer<S> {
    /// Accepts the upgrade; selects `ferry.v1` when `select` (after checking
    /// the client offered it).
    #[allow(clippy::result_large_err)] // tungstenite's callback signature
    async fn upgrade(stream: S, select: bool) -> Self {
        let callback = move |req: &Request, mut resp: Response| {
            let offered = req
                .headers()
                .get("Sec-WebSocket-Protocol")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            assert!(
                offered.split(',').any(|p| p.trim() == WS_SUBPROTOCOL),
                "client offered {offered:?}"
            );
            if select {
                resp.headers_mut().insert(
                    "Sec-WebSocket-Protocol",
                    HeaderValue::from_static(WS_SUBPROTOCOL),
                );
            }
            Ok(resp)
        };
        let ws = tokio_tungstenite::accept_hdr_async(stream, callback)
            .await
            .unwrap();
        Self { ws }
    }

    async fn send(&mut self, frame: Frame) {
        self.ws
            .send(Message::Binary(frame.to_bytes()))
            .await
            .unwrap();
    }

    /// The next frame, or `None` if the client closed.
    async fn try_recv(&mut self) -> Option<Frame> {
        loop {
            match timeout(STEP, self.ws.next()).await.expect("client silent") {
                Some(Ok(Message::Binary(b))) => {
                    return Some(codec::decode(b, &DecodeLimits::default()).unwrap());
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    async fn recv(&mut self) -> Frame {
        self.try_recv().await.expect("client closed")
    }

    /// The next frame that is not an ACK.
    async fn recv_skipping_acks(&mut self) -> Frame {
        loop {
            match self.recv().await {
                Frame::Ack { .. } => {}
                other => return other,
            }
        }
    }

    /// Reads ACKs until one acknowledges `seq`; they must never go back.
    async fn expect_ack(&mut self, seq: u64) {
        let mut last = 0;
        loop {
            match self.recv().await {
                Frame::Ack { seq: got } => {
                    assert!(got >= last && got <= seq, "ACK {got} after {last}");
                    if got == seq {
                        return;
                    }
                    last = got;
                }
                other => panic!("expected ACK {seq}, got {other:?}"),
            }
        }
    }

    async fn hello(&mut self) -> Hello {
        match self.recv().await {
            Frame::Hello(h) => h,
            other => panic!("expected HELLO, got {other:?}"),
        }
    }

    /// Answers the next SUBSCRIBE for `channel` with `offset`.
    async fn answer_subscribe(&mut self, channel: &str, offset: u64) {
        match self.recv_skipping_acks().await {
            Frame::Subscribe {
                request_id,
                channel: c,
            } => {
                assert_eq!(c.as_str(), channel);
                self.send(Frame::Subscribed {
                    request_id,
                    channel_offset: offset,
                })
                .await;
            }
            other => panic!("expected SUBSCRIBE, got {other:?}"),
        }
    }

    async fn expect_publish(&mut self, client_seq: u64, payload: &str) {
        match self.recv_skipping_acks().await {
            Frame::Publish {
                client_seq: s,
                channel,
                payload: p,
            } => {
                assert_eq!((s, channel.as_str()), (client_seq, "chat:1"));
                assert_eq!(p, Bytes::copy_from_slice(payload.as_bytes()));
            }
            other => panic!("expected PUBLISH {client_seq}, got {other:?}"),
        }
    }
}

async fn ws_listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    (listener, url)
}

/// Connects a client to a fresh session (id 1) on `listener`.
async fn connect_ws(
    listener: &TcpListener,
    config: ClientConfig,
) -> (Client, Events, Peer<tokio::net::TcpStream>) {
    let server = async {
        let mut peer = Peer::accept(listener).await;
        let hello = peer.hello().await;
        assert_eq!(hello.version, 1);
        assert!(hello.resume.is_none());
        peer.send(welcome(WelcomeOutcome::New, 1, 0)).await;
        peer
    };
    let (connected, peer) = tokio::join!(Client::connect(config), server);
    let (client, mut events) = connected.unwrap();
    assert_eq!(
        next_event(&mut events).await,
        Event::Connected {
            outcome: WelcomeOutcome::New,
            session_id: SessionId([1; 16])
        }
    );
    (client, events, peer)
}

#[tokio::test]
async fn ws_session_survives_a_killed_transport_and_resumes_exactly_once() {
    bounded(async {
        let (listener, url) = ws_listener().await;
        let mut config = ClientConfig::new(Transport::Ws, url);
        config.token = Some("tok".into());
        config.ack_every = 2;
        let (client, mut events, mut peer) = connect_ws(&listener, config).await;
        assert_eq!(client.session_id(), Some(SessionId([1; 16])));

        // Subscribe.
        let (offset, ()) = tokio::join!(
            client.subscribe("chat:1"),
            peer.answer_subscribe("chat:1", 7)
        );
        assert_eq!(offset.unwrap(), 7);

        // Publish → PUBACK.
        assert_eq!(client.publish("chat:1", "p1".into()).await.unwrap(), 1);
        peer.expect_publish(1, "p1").await;
        peer.send(Frame::PubAck { client_seq: 1 }).await;
        client.wait_acked().await.unwrap();
        assert_eq!(client.stats().publishes_acked, 1);

        // Delivery and ACK.
        for seq in 1..=3 {
            peer.send(message(seq)).await;
        }
        for seq in 1..=3 {
            expect_message(&mut events, seq).await;
        }
        peer.expect_ack(3).await;

        // Three more publishes; the server processes all, acknowledges 2.
        for (seq, p) in [(2, "p2"), (3, "p3"), (4, "p4")] {
            assert_eq!(client.publish("chat:1", p.into()).await.unwrap(), seq);
        }
        for (seq, p) in [(2, "p2"), (3, "p3"), (4, "p4")] {
            peer.expect_publish(seq, p).await;
        }
        peer.send(Frame::PubAck { client_seq: 2 }).await;
        eventually("PUBACK 2", || client.stats().publishes_acked == 2).await;

        // The network dies; the SDK reconnects and asks to resume.
        client.kill_transport();
        let mut peer2 = Peer::accept(&listener).await;
        let hello = peer2.hello().await;
        assert_eq!(hello.token, "tok");
        let resume = hello.resume.expect("a resume request");
        assert_eq!(resume.session_id, SessionId([1; 16]));
        assert_eq!(resume.secret, ResumeSecret([1; 32]));
        assert_eq!(resume.last_received_seq, 3);

        // The server had processed up to 3: only 4 is sent again, and
        // nothing else (no re-subscription on a resumed session).
        peer2.send(welcome(WelcomeOutcome::Resumed, 1, 3)).await;
        peer2.expect_publish(4, "p4").await;
        peer2.send(Frame::Ping { nonce: 9 }).await;
        assert_eq!(peer2.recv_skipping_acks().await, Frame::Pong { nonce: 9 });

        // Replay from 2 (an overlap): 2 and 3 are dropped, 4 is new.
        for seq in 2..=4 {
            peer2.send(message(seq)).await;
        }
        assert!(matches!(
            next_event(&mut events).await,
            Event::Disconnected { .. }
        ));
        assert_eq!(
            next_event(&mut events).await,
            Event::Connected {
                outcome: WelcomeOutcome::Resumed,
                session_id: SessionId([1; 16])
            }
        );
        expect_message(&mut events, 4).await;
        peer2.expect_ack(4).await;
        peer2.send(Frame::PubAck { client_seq: 4 }).await;
        client.wait_acked().await.unwrap();

        let stats = client.stats();
        assert_eq!(stats.reconnects, 1);
        assert_eq!(stats.resumes_ok, 1);
        assert_eq!(stats.resumes_failed, 0);
        assert_eq!(stats.messages_received, 4);
        assert_eq!(stats.duplicates_dropped, 2);
        assert_eq!(stats.publishes_acked, 4);
        assert_eq!(stats.last_received_seq, 4);

        // Graceful close: a close frame, then the events end.
        client.close().await;
        assert_eq!(peer2.try_recv().await, None);
        assert_eq!(timeout(STEP, events.recv()).await.unwrap(), None);
        assert!(matches!(
            client.publish("chat:1", "late".into()).await,
            Err(ClientError::Closed)
        ));
        drop(peer);
    })
    .await;
}

#[tokio::test]
async fn ws_new_session_hands_back_publishes_and_resubscribes() {
    bounded(async {
        let (listener, url) = ws_listener().await;
        let (client, mut events, mut peer) =
            connect_ws(&listener, ClientConfig::new(Transport::Ws, url)).await;
        let (offset, ()) = tokio::join!(
            client.subscribe("chat:1"),
            peer.answer_subscribe("chat:1", 0)
        );
        offset.unwrap();
        client.publish("chat:1", "x".into()).await.unwrap();
        peer.expect_publish(1, "x").await;
        let waiter = tokio::spawn({
            let client = client.clone();
            async move { client.wait_acked().await }
        });
        peer.send(message(1)).await;
        expect_message(&mut events, 1).await;

        client.kill_transport();
        let mut peer2 = Peer::accept(&listener).await;
        let hello = peer2.hello().await;
        assert_eq!(hello.resume.map(|r| r.last_received_seq), Some(1));
        peer2
            .send(welcome(WelcomeOutcome::NewSessionExpired, 2, 0))
            .await;
        // No publish is re-sent; the channel is subscribed again.
        peer2.answer_subscribe("chat:1", 5).await;

        assert!(matches!(
            next_event(&mut events).await,
            Event::Disconnected { .. }
        ));
        assert_eq!(
            next_event(&mut events).await,
            Event::Connected {
                outcome: WelcomeOutcome::NewSessionExpired,
                session_id: SessionId([2; 16])
            }
        );
        match next_event(&mut events).await {
            Event::SessionLost {
                uncertain_publishes,
            } => {
                assert_eq!(uncertain_publishes.len(), 1);
                assert_eq!(uncertain_publishes[0].client_seq, 1);
                assert_eq!(uncertain_publishes[0].payload, Bytes::from_static(b"x"));
            }
            other => panic!("expected SessionLost, got {other:?}"),
        }
        assert!(matches!(
            waiter.await.unwrap(),
            Err(ClientError::SessionLost)
        ));
        // The new session numbers from 1 again, both ways.
        assert_eq!(client.session_id(), Some(SessionId([2; 16])));
        assert_eq!(client.publish("chat:1", "y".into()).await.unwrap(), 1);
        peer2.expect_publish(1, "y").await;
        peer2.send(message(1)).await;
        expect_message(&mut events, 1).await;
        let stats = client.stats();
        assert_eq!((stats.reconnects, stats.resumes_failed), (1, 1));
        client.close().await;
    })
    .await;
}

#[tokio::test]
async fn ws_requires_the_ferry_subprotocol() {
    bounded(async {
        let (listener, url) = ws_listener().await;
        let server = async {
            let (tcp, _) = listener.accept().await.unwrap();
            // Upgrades without selecting ferry.v1.
            Peer::upgrade(tcp, false).await
        };
        let (result, _peer) = tokio::join!(
            Client::connect(ClientConfig::new(Transport::Ws, url)),
            server
        );
        assert!(
            matches!(result, Err(ClientError::Handshake(_))),
            "{result:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn ws_errors_are_typed() {
    bounded(async {
        // A refused token at the handshake is terminal.
        let (listener, url) = ws_listener().await;
        let server = async {
            let mut peer = Peer::accept(&listener).await;
            peer.hello().await;
            peer.send(Frame::error(ErrorCode::TokenExpired, 0, "expired"))
                .await;
            peer
        };
        let (result, _peer) = tokio::join!(
            Client::connect(ClientConfig::new(Transport::Ws, &url)),
            server
        );
        match result {
            Err(ClientError::Rejected { code, message }) => {
                assert_eq!((code, message.as_str()), (402, "expired"));
            }
            other => panic!("{other:?}"),
        }

        // A refused subscription answers the request and is reported.
        let (client, mut events, mut peer) =
            connect_ws(&listener, ClientConfig::new(Transport::Ws, url)).await;
        let refuse = async {
            let Frame::Subscribe { request_id, .. } = peer.recv().await else {
                panic!("expected SUBSCRIBE");
            };
            peer.send(Frame::error(
                ErrorCode::ForbiddenSubscribe,
                request_id,
                "no",
            ))
            .await;
        };
        let (result, ()) = tokio::join!(client.subscribe("secret"), refuse);
        assert!(matches!(
            result,
            Err(ClientError::Rejected { code: 405, .. })
        ));
        assert!(matches!(
            next_event(&mut events).await,
            Event::ServerError { code: 405, .. }
        ));
        assert!(matches!(
            client.subscribe("bad channel").await,
            Err(ClientError::InvalidChannel(_))
        ));
        assert!(matches!(client.rebind(), Err(ClientError::Unsupported(_))));

        // A fatal ERROR that needs a fresh token, then the close: the SDK
        // reports it and stops, without reconnecting.
        peer.send(Frame::error(ErrorCode::TokenExpired, 0, "expired"))
            .await;
        peer.ws.close(None).await.unwrap();
        assert!(matches!(
            next_event(&mut events).await,
            Event::ServerError { code: 402, .. }
        ));
        assert_eq!(timeout(STEP, events.recv()).await.unwrap(), None);
        assert!(
            timeout(Duration::from_millis(300), listener.accept())
                .await
                .is_err(),
            "reconnected after a terminal error"
        );
        assert!(matches!(
            client.subscribe("chat:1").await,
            Err(ClientError::Closed)
        ));
    })
    .await;
}

#[tokio::test]
async fn ws_goaway_then_close_and_heartbeat_silence_both_lead_to_a_resume() {
    bounded(async {
        let (listener, url) = ws_listener().await;
        let (client, mut events, mut peer) =
            connect_ws(&listener, ClientConfig::new(Transport::Ws, url)).await;
        // GOAWAY, one more message (still valid), then the close.
        peer.send(Frame::GoAway {
            code: 502,
            reconnect_after_ms: 50,
            message: "upgrade".into(),
        })
        .await;
        peer.send(message(1)).await;
        peer.ws.close(None).await.unwrap();
        let mut peer2 = Peer::accept(&listener).await;
        let resume = peer2.hello().await.resume.expect("a resume request");
        assert_eq!(resume.last_received_seq, 1);
        // This WELCOME asks for a heartbeat every 100 ms.
        let Frame::Welcome(mut w) = welcome(WelcomeOutcome::Resumed, 1, 0) else {
            unreachable!()
        };
        w.heartbeat_interval_ms = 100;
        peer2.send(Frame::Welcome(w)).await;
        assert_eq!(
            next_event(&mut events).await,
            Event::GoAway {
                code: 502,
                reconnect_after_ms: 50
            }
        );
        expect_message(&mut events, 1).await;
        assert_eq!(
            next_event(&mut events).await,
            Event::Disconnected {
                reason: "GOAWAY".into()
            }
        );
        assert!(matches!(
            next_event(&mut events).await,
            Event::Connected {
                outcome: WelcomeOutcome::Resumed,
                ..
            }
        ));
        // The client PINGs when idle; the server answers none: after 2.5
        // intervals of silence the client reconnects and resumes.
        assert!(matches!(
            peer2.recv_skipping_acks().await,
            Frame::Ping { .. }
        ));
        let mut peer3 = Peer::accept(&listener).await;
        assert!(peer3.hello().await.resume.is_some());
        assert_eq!(client.stats().reconnects, 1, "not welcomed yet");
        client.close().await;
    })
    .await;
}

#[tokio::test]
async fn ws_a_slow_application_stops_the_reads() {
    bounded(async {
        let (listener, url) = ws_listener().await;
        let mut config = ClientConfig::new(Transport::Ws, url);
        config.event_capacity = 4;
        let (client, mut events, mut peer) = connect_ws(&listener, config).await;
        const N: u64 = 300;
        for seq in 1..=N {
            peer.send(message(seq)).await;
        }
        // The application reads nothing: acknowledgements stall well short.
        let mut acked = 0;
        while let Ok(frame) = timeout(Duration::from_millis(300), peer.recv()).await {
            if let Frame::Ack { seq } = frame {
                acked = seq;
            }
        }
        assert!(acked < N, "the client read everything: ACK {acked}");
        // Once it reads, everything arrives, in order, and is acknowledged.
        for seq in 1..=N {
            expect_message(&mut events, seq).await;
        }
        peer.expect_ack(N).await;
        client.close().await;
    })
    .await;
}

fn self_signed() -> (rcgen::CertifiedKey<rcgen::KeyPair>, std::path::PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "ferry-client-ca-{}-{}.pem",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::write(&path, cert.cert.pem()).unwrap();
    (cert, path)
}

fn server_tls(cert: &rcgen::CertifiedKey<rcgen::KeyPair>, alpn: &[u8]) -> rustls::ServerConfig {
    let key = rustls_pki_types::PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key.into())
    .unwrap();
    config.alpn_protocols = vec![alpn.to_vec()];
    config
}

#[tokio::test]
async fn wss_with_insecure_dev_trust() {
    bounded(async {
        let (cert, ca) = self_signed();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_tls(&cert, b"http/1.1")));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();

        // An unknown CA is refused.
        let mut config = ClientConfig::new(Transport::Wss, format!("wss://{addr}/ws"));
        let other_ca = self_signed().1;
        config.tls = Some(TlsTrust::CaFile(other_ca));
        let refuse = async {
            let (tcp, _) = listener.accept().await.unwrap();
            assert!(acceptor.accept(tcp).await.is_err());
        };
        let (result, ()) = tokio::join!(Client::connect(config.clone()), refuse);
        assert!(matches!(result, Err(ClientError::Tls(_))), "{result:?}");

        // The right CA, then the development verifier, are accepted.
        for trust in [TlsTrust::CaFile(ca), TlsTrust::InsecureDev] {
            config.tls = Some(trust);
            let server = async {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut peer = Peer::upgrade(acceptor.accept(tcp).await.unwrap(), true).await;
                peer.hello().await;
                peer.send(welcome(WelcomeOutcome::New, 1, 0)).await;
                peer.send(message(1)).await;
                peer
            };
            let (connected, _peer) = tokio::join!(Client::connect(config.clone()), server);
            let (client, mut events) = connected.unwrap();
            assert!(matches!(
                next_event(&mut events).await,
                Event::Connected { .. }
            ));
            expect_message(&mut events, 1).await;
            client.close().await;
        }
    })
    .await;
}

/// The server's side of one QUIC connection.
struct QuicPeer {
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    buf: BytesMut,
}

impl QuicPeer {
    async fn accept(endpoint: &quinn::Endpoint) -> Self {
        let incoming = timeout(STEP, endpoint.accept()).await.unwrap().unwrap();
        let conn = incoming.await.unwrap();
        let (send, recv) = timeout(STEP, conn.accept_bi()).await.unwrap().unwrap();
        Self {
            conn,
            send,
            recv,
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        frame.encode_length_prefixed(&mut out);
        self.send.write_all(&out).await.unwrap();
    }

    async fn recv(&mut self) -> Frame {
        loop {
            if let Some(f) =
                codec::decode_length_prefixed(&mut self.buf, &DecodeLimits::default()).unwrap()
            {
                return f;
            }
            let mut chunk = [0u8; 4096];
            let n = timeout(STEP, self.recv.read(&mut chunk))
                .await
                .expect("client silent")
                .unwrap()
                .expect("stream finished");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn recv_skipping_acks(&mut self) -> Frame {
        loop {
            match self.recv().await {
                Frame::Ack { .. } => {}
                other => return other,
            }
        }
    }
}

#[tokio::test]
async fn quic_handshake_message_and_rebind_without_reconnecting() {
    bounded(async {
        let (cert, ca) = self_signed();
        let crypto =
            quinn::crypto::rustls::QuicServerConfig::try_from(server_tls(&cert, QUIC_ALPN))
                .unwrap();
        let server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let endpoint =
            quinn::Endpoint::server(server_config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let port = endpoint.local_addr().unwrap().port();

        let mut config = ClientConfig::new(Transport::Quic, format!("quic://127.0.0.1:{port}"));
        config.tls = Some(TlsTrust::CaFile(ca));
        config.token = Some("q".into());
        let server = async {
            let mut peer = QuicPeer::accept(&endpoint).await;
            let Frame::Hello(hello) = peer.recv().await else {
                panic!("expected HELLO");
            };
            assert_eq!(hello.token, "q");
            peer.send(welcome(WelcomeOutcome::New, 1, 0)).await;
            peer
        };
        let (connected, mut peer) = tokio::join!(Client::connect(config), server);
        let (client, mut events) = connected.unwrap();
        assert!(matches!(
            next_event(&mut events).await,
            Event::Connected { .. }
        ));
        peer.send(message(1)).await;
        expect_message(&mut events, 1).await;

        // Move to a new UDP port: the same connection carries on.
        let before = peer.conn.remote_address();
        client.rebind().unwrap();
        assert_eq!(client.publish("chat:1", "moved".into()).await.unwrap(), 1);
        match peer.recv_skipping_acks().await {
            Frame::Publish { client_seq: 1, .. } => {}
            other => panic!("expected PUBLISH 1, got {other:?}"),
        }
        eventually("the server to see the new address", || {
            peer.conn.remote_address() != before
        })
        .await;
        peer.send(message(2)).await;
        expect_message(&mut events, 2).await;

        // No new connection, no new HELLO, no disconnection.
        assert!(
            timeout(Duration::from_millis(200), endpoint.accept())
                .await
                .is_err()
        );
        assert!(events.try_recv().is_none());
        assert_eq!(client.stats().reconnects, 0);
        client.close().await;
    })
    .await;
}
