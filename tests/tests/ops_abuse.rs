//! The ops probes keep answering while the ops port is flooded with idle
//! or slowloris connections (issue 13, finding 6): a failing liveness probe
//! restarts the gateway and loses every session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use ferry_tests::gateway_bin;
use ferry_tests::harness::{Gateway, GatewayOptions, raise_fd_limit};
use ferry_tests::http;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Connections the attacker keeps open (or reopens) on the ops port.
const FLOOD: usize = 1000;

/// Probes sent during the flood; each must answer 200.
const PROBES: usize = 50;

/// How an attacking connection behaves once connected.
#[derive(Clone, Copy)]
enum Attack {
    /// Sends nothing.
    Idle,
    /// Sends one byte of a header that never ends, every 2 s.
    Slowloris,
}

/// Holds `FLOOD` connections to `addr` until `stop`: each one that the
/// server closes is reopened a second later, as a determined attacker
/// would. Returns once every connection has been opened once.
async fn flood(addr: SocketAddr, attack: Attack, stop: Arc<AtomicBool>) -> JoinSet<()> {
    let opened = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..FLOOD {
        let (stop, opened) = (stop.clone(), opened.clone());
        tasks.spawn(async move {
            let mut first = true;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(stream) = TcpStream::connect(addr).await {
                    if first {
                        opened.fetch_add(1, Ordering::Relaxed);
                        first = false;
                    }
                    hold(stream, attack, &stop).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while opened.load(Ordering::Relaxed) < FLOOD {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {FLOOD} attacking connections opened",
            opened.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tasks
}

/// Keeps one connection open until the server closes it or `stop`.
async fn hold(mut stream: TcpStream, attack: Attack, stop: &AtomicBool) {
    let header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut sent = 0;
    let mut buf = [0u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        if let Attack::Slowloris = attack {
            let byte = header.get(sent).copied().unwrap_or(b'a');
            if stream.write_all(&[byte]).await.is_err() {
                return;
            }
            sent += 1;
        }
        // A read of 0 bytes or an error: the server closed it.
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            return;
        }
    }
}

/// Probes `/healthz` and `/readyz` alternately, `PROBES` times: every one
/// must answer 200 within 3 s.
async fn probe_under_flood(attack: Attack) {
    let limit = raise_fd_limit().expect("raise the open-files limit");
    // Both tests of this file may run at once.
    let needed = 2 * FLOOD as u64 + 200;
    assert!(
        limit >= needed,
        "this test needs {needed} open files; the hard limit is {limit}"
    );
    let gw = Gateway::start(gateway_bin!(), GatewayOptions::default()).expect("gateway starts");
    let addr = gw.ops_addr().expect("ops address");
    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = flood(addr, attack, stop.clone()).await;
    let mut failures = Vec::new();
    for i in 0..PROBES {
        let path = if i % 2 == 0 { "/healthz" } else { "/readyz" };
        match tokio::time::timeout(Duration::from_secs(3), http::get(addr, path)).await {
            Ok(Ok(r)) if r.status == 200 => {}
            Ok(Ok(r)) => failures.push(format!("probe {i} {path}: status {}", r.status)),
            Ok(Err(e)) => failures.push(format!("probe {i} {path}: {e:#}")),
            Err(_) => failures.push(format!("probe {i} {path}: no answer within 3 s")),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    attackers.abort_all();
    while attackers.join_next().await.is_some() {}
    assert!(
        failures.is_empty(),
        "{} of {PROBES} probes failed under the flood:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_while_idle_connections_flood_the_ops_port() {
    probe_under_flood(Attack::Idle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_while_slowloris_connections_flood_the_ops_port() {
    probe_under_flood(Attack::Slowloris).await;
}
