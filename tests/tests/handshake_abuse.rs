//! Slow handshakes (issue 13, finding 7): `session.handshake_timeout` is
//! one deadline from accept to HELLO over every phase (TLS, the HTTP
//! upgrade or the QUIC stream, HELLO), and each worker bounds the
//! connections still in their handshake, shedding the oldest, so that a
//! real client gets in while slow connections flood the gateway.

use std::time::{Duration, Instant};

use ferry_protocol::frame::PROTOCOL_VERSION;
use ferry_protocol::{ErrorCode, Frame, Hello};
use ferry_tests::gateway_bin;
use ferry_tests::harness::{Gateway, GatewayOptions, raise_fd_limit};
use ferry_tests::raw::RawClient;
use ferry_tests::raw_quic::{RawQuic, tls_connector};
use ferry_tests::raw_ws::{RawWs, ServerFrame, hello_frame, upgrade_request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// The handshake timeout of these tests.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How late past the deadline a close may come and still count.
const MARGIN: Duration = Duration::from_secs(1);
/// The pause between two dribbled bytes.
const PAUSE: Duration = Duration::from_millis(400);

fn start_with_short_timeout() -> Gateway {
    Gateway::start(
        gateway_bin!(),
        GatewayOptions::default().env("FERRY_SESSION_HANDSHAKE_TIMEOUT", "2s"),
    )
    .expect("gateway starts")
}

/// Dribbles a HELLO message one byte per [`PAUSE`] until the server
/// gives up, and checks that it did so at the deadline counted from
/// `connected`: ERROR 105 (or a bare close) by then, and the connection
/// closed soon after (the server waits briefly for the client's Close).
async fn dribble_hello<S: AsyncRead + AsyncWrite + Unpin>(c: &mut RawWs<S>, connected: Instant) {
    let mut heard = None;
    for byte in hello_frame() {
        // The server may have closed already: its answer is what counts.
        let _ = c.write(&[byte]).await;
        if let Some(frame) = c.next_within(PAUSE).await {
            heard = Some((frame, connected.elapsed()));
            break;
        }
    }
    if heard.is_none() {
        heard = c
            .next_within(Duration::from_secs(5))
            .await
            .map(|frame| (frame, connected.elapsed()));
    }
    let (frame, at) = heard.expect("the server gives up on a connection with no HELLO");
    assert!(
        at < TIMEOUT + MARGIN,
        "the server gave up {at:?} after connect ({frame:?}); handshake_timeout is {TIMEOUT:?}"
    );
    if let Some(frame) = frame {
        assert_eq!(
            frame,
            ServerFrame::Ferry(Frame::Error {
                code: ErrorCode::HandshakeTimeout.as_u16(),
                reference: 0,
                message: format!("no HELLO within {TIMEOUT:?} of connecting"),
            })
        );
    }
    assert!(
        c.closed_within(Duration::from_secs(3)).await,
        "the connection must close after ERROR 105"
    );
}

/// Each phase finishes just inside the timeout, the next one starts late:
/// a per-phase timeout would let the handshake run for a multiple of it.
#[tokio::test]
async fn a_dribbling_ws_client_is_closed_at_the_handshake_deadline() {
    let gw = start_with_short_timeout();
    let request = upgrade_request(&gw.ws.to_string(), "/ws");
    let connected = Instant::now();
    let mut c = RawWs::new(TcpStream::connect(gw.ws).await.expect("connect"));
    // 1.6 s of the upgrade, one byte at a time, then the rest at once.
    c.dribble(&request[..4], PAUSE).await;
    c.write(&request[4..]).await.expect("rest of the upgrade");
    c.read_upgrade_answer()
        .await
        .expect("upgraded before the deadline");
    dribble_hello(&mut c, connected).await;
}

#[tokio::test]
async fn a_dribbling_wss_client_is_closed_at_the_handshake_deadline() {
    let gw = start_with_short_timeout();
    let addr: std::net::SocketAddr = gw
        .ready_value("wss")
        .expect("wss address")
        .parse()
        .expect("address");
    let request = upgrade_request("localhost", "/ws");
    let connected = Instant::now();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    // TLS starts late, the upgrade is dribbled, HELLO too.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let tls = tls_connector(&gw.cert(), b"http/1.1")
        .expect("TLS settings")
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
        .expect("TLS handshake");
    let mut c = RawWs::new(tls);
    c.dribble(&request[..2], PAUSE).await;
    c.write(&request[2..]).await.expect("rest of the upgrade");
    c.read_upgrade_answer()
        .await
        .expect("upgraded before the deadline");
    dribble_hello(&mut c, connected).await;
}

#[tokio::test]
async fn a_dribbling_quic_client_is_closed_at_the_handshake_deadline() {
    let gw = start_with_short_timeout();
    let addr = gw
        .ready_value("quic")
        .expect("quic address")
        .parse()
        .expect("address");
    let connected = Instant::now();
    // The QUIC handshake now; the stream, which the server sees only at
    // its first byte, late.
    let mut c = RawQuic::connect(addr, &gw.cert())
        .await
        .expect("QUIC handshake");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let hello = Frame::Hello(Hello {
        version: PROTOCOL_VERSION,
        token: String::new(),
        resume: None,
    })
    .to_bytes();
    let mut bytes = bytes::BytesMut::new();
    ferry_protocol::codec::put_varint(&mut bytes, hello.len() as u64);
    bytes.extend_from_slice(&hello);
    let mut closed = None;
    for byte in bytes.iter() {
        let _ = c.send_raw(&[*byte]).await;
        if c.closed_within(PAUSE).await {
            closed = Some(connected.elapsed());
            break;
        }
    }
    if closed.is_none() && c.closed_within(Duration::from_secs(5)).await {
        closed = Some(connected.elapsed());
    }
    let closed = closed.expect("the server closes a connection with no HELLO");
    assert!(
        closed < TIMEOUT + MARGIN,
        "closed {closed:?} after connecting; handshake_timeout is {TIMEOUT:?}"
    );
}

/// Slow connections that never send a byte, more than the gateway has
/// file descriptors for: the worker keeps only its bound of them (the
/// oldest are shed at once, long before the handshake timeout), and a
/// real client connects and gets WELCOME promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_client_gets_in_while_slow_handshakes_flood_the_worker() {
    const SLOW: usize = 300;
    const OPEN_FILES: u64 = 256;
    // The automatic bound: a quarter of the open files, for one worker.
    const BOUND: usize = (OPEN_FILES / 4) as usize;
    raise_fd_limit().expect("raise the open-files limit");
    let gw = Gateway::start(
        gateway_bin!(),
        GatewayOptions::default().workers(1).open_files(OPEN_FILES),
    )
    .expect("gateway starts");
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        slow.push(TcpStream::connect(gw.ws).await.expect("connect"));
    }

    let started = Instant::now();
    let real =
        tokio::time::timeout(Duration::from_secs(3), RawClient::handshake(&gw.ws_url())).await;
    assert!(
        matches!(real, Ok(Ok(_))),
        "a real client must get WELCOME within 3 s while {SLOW} slow connections wait; got {:?} after {:?}",
        real.map(|r| r.map(|_| ())),
        started.elapsed()
    );

    // The shed ones were closed by the server, well before the default
    // 10 s handshake timeout.
    let mut checks = JoinSet::new();
    for mut stream in slow {
        checks.spawn(async move {
            let mut buf = [0u8; 64];
            let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
            matches!(read, Ok(Ok(0) | Err(_)))
        });
    }
    let mut closed = 0;
    while let Some(result) = checks.join_next().await {
        closed += usize::from(result.unwrap_or(false));
    }
    assert!(
        closed >= SLOW - BOUND,
        "only {closed} of {SLOW} slow connections were shed; at most {BOUND} may wait"
    );
}
