//! Configuration files, `check-config`, and live reload on SIGHUP.

use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use ferry_protocol::{ChannelName, ErrorCode, Frame};
use ferry_tests::gateway_bin;
use ferry_tests::harness::{Gateway, GatewayOptions};
use ferry_tests::raw::RawClient;

fn example_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/gateway.toml")
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("ferry-{}-{name}", std::process::id()));
    std::fs::write(&path, text).expect("write config");
    path
}

fn publish(client_seq: u64, size: usize) -> Frame {
    Frame::Publish {
        client_seq,
        channel: ChannelName::parse("big").expect("channel"),
        payload: Bytes::from(vec![7u8; size]),
    }
}

#[test]
fn check_config_accepts_the_example_and_lists_every_problem_of_a_broken_file() {
    let ok = Command::new(gateway_bin!())
        .arg("check-config")
        .arg(example_config())
        .output()
        .expect("run");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let broken = temp_file(
        "broken.toml",
        "[limits]\nmax_frame_size = 0\nmax_subscriptions = 0\n[session]\nheartbeat_interval = \"90s\"\nheartbeat_timeout = \"60s\"\n[nonsense]\nx = 1\n",
    );
    let out = Command::new(gateway_bin!())
        .arg("check-config")
        .arg(&broken)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for path in [
        "limits.max_frame_size",
        "limits.max_subscriptions",
        "session.heartbeat_timeout",
        "nonsense",
    ] {
        assert!(stderr.contains(path), "missing {path} in:\n{stderr}");
    }
    let _ = std::fs::remove_file(broken);
}

#[test]
fn the_gateway_refuses_to_start_on_an_invalid_file() {
    let broken = temp_file("refuse.toml", "[limits]\nmax_frame_size = \"1B\"\n");
    let out = Command::new(gateway_bin!())
        .arg("--config")
        .arg(&broken)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("limits.max_frame_size"));
    let _ = std::fs::remove_file(broken);
}

#[tokio::test]
async fn a_reloaded_limit_applies_to_existing_connections_and_a_bad_file_changes_nothing() {
    let file = temp_file("live.toml", "[limits]\nmax_frame_size = \"64KiB\"\n");
    let gw =
        Gateway::start(gateway_bin!(), GatewayOptions::default().config(&file)).expect("start");
    let (mut big, _) = RawClient::handshake(&gw.ws_url()).await.expect("hs");
    let (mut bystander, _) = RawClient::handshake(&gw.ws_url()).await.expect("hs");
    big.send(&publish(1, 40 * 1024)).await.expect("send");
    assert_eq!(
        big.recv().await.expect("recv"),
        Some(Frame::PubAck { client_seq: 1 })
    );

    // A broken file: refused, counted, nothing changes.
    std::fs::write(&file, "[limits]\nmax_frame_size = 0\n").expect("write");
    gw.signal(libc::SIGHUP);
    gw.wait_for_log("reload failed", 1).expect("failure logged");
    big.send(&publish(2, 40 * 1024)).await.expect("send");
    assert_eq!(
        big.recv().await.expect("recv"),
        Some(Frame::PubAck { client_seq: 2 })
    );

    // A valid lower limit: the same connection's next big frame is refused.
    std::fs::write(
        &file,
        "[limits]\nmax_frame_size = \"16KiB\"\noutbound_queue = \"256KiB\"\n",
    )
    .expect("write");
    gw.signal(libc::SIGHUP);
    gw.wait_for_log("configuration reloaded", 1)
        .expect("reload logged");
    big.send(&publish(3, 40 * 1024)).await.expect("send");
    assert_eq!(
        big.expect_error().await.expect("error"),
        ErrorCode::FrameTooLarge.as_u16()
    );
    // Nobody else was disconnected by the reload.
    bystander
        .send(&Frame::Ping { nonce: 9 })
        .await
        .expect("ping");
    assert_eq!(
        bystander.recv().await.expect("recv"),
        Some(Frame::Pong { nonce: 9 })
    );
    let _ = std::fs::remove_file(file);
}

#[test]
fn the_service_manager_hears_ready_reloading_and_stopping() {
    let dir = std::env::temp_dir().join(format!("ferry-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let socket_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&socket_path);
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("notify socket");
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let file = temp_file("notify.toml", "[limits]\nmax_subscriptions = 10\n");
    let mut gw = Gateway::start(
        gateway_bin!(),
        GatewayOptions::default()
            .config(&file)
            .env("NOTIFY_SOCKET", &socket_path.display().to_string()),
    )
    .expect("start");
    let next = || {
        let mut buf = [0u8; 256];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert!(next().contains("READY=1"));
    gw.signal(libc::SIGHUP);
    assert!(next().contains("RELOADING=1"));
    assert!(next().contains("READY=1"));
    gw.signal(libc::SIGTERM);
    assert!(next().contains("STOPPING=1"));
    assert!(
        gw.wait_exit(std::time::Duration::from_secs(15))
            .expect("exit")
            .success()
    );
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(file);
}

/// The value of the Prometheus sample of `name` with all of `labels`
/// (`key="value"`, in any order), 0 when absent.
async fn metric(gw: &Gateway, name: &str, labels: &[&str]) -> f64 {
    let ops = gw.ops_addr().expect("ops");
    let text = ferry_tests::http::get(ops, "/metrics")
        .await
        .expect("metrics")
        .text();
    text.lines()
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && labels.iter().all(|label| l.contains(label))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Waits at most `within` until the sample reaches `want`; false if it
/// does not.
async fn metric_reaches(
    gw: &Gateway,
    name: &str,
    labels: &[&str],
    want: f64,
    within: std::time::Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if metric(gw, name, labels).await >= want {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// Issue 13, finding 8: `upgrade.*` was documented as live but the running
/// process kept the values it started with. A reloaded
/// `upgrade.drain_deadline` must bound the next takeover attempt.
#[tokio::test]
async fn a_reloaded_upgrade_deadline_bounds_the_next_takeover() {
    use std::time::Duration;

    let file = temp_file("upgrade-live.toml", "[upgrade]\ndrain_deadline = \"60s\"\n");
    let gw =
        Gateway::start(gateway_bin!(), GatewayOptions::default().config(&file)).expect("start");
    std::fs::write(&file, "[upgrade]\ndrain_deadline = \"1s\"\n").expect("write");
    gw.signal(libc::SIGHUP);
    assert!(
        metric_reaches(
            &gw,
            "ferry_config_reloads_total",
            &["outcome=\"ok\""],
            1.0,
            Duration::from_secs(10)
        )
        .await,
        "no reload; log:\n{}",
        gw.log()
    );

    // A "new process" that connects to the control socket and says
    // nothing: the takeover must be rolled back after the reloaded 1 s,
    // not the 60 s the gateway started with.
    let control = gw.data_dir().join("control.sock");
    let _silent = tokio::net::UnixStream::connect(&control)
        .await
        .expect("control socket");
    assert!(
        metric_reaches(
            &gw,
            "ferry_upgrades_total",
            &["side=\"old\"", "outcome=\"rolled_back\""],
            1.0,
            Duration::from_secs(8)
        )
        .await,
        "the takeover was not rolled back after the reloaded deadline; log:\n{}",
        gw.log()
    );
    // And the gateway serves on.
    let (mut c, _) = RawClient::handshake(&gw.ws_url()).await.expect("hs");
    c.send(&Frame::Ping { nonce: 1 }).await.expect("ping");
    assert_eq!(
        c.recv().await.expect("recv"),
        Some(Frame::Pong { nonce: 1 })
    );
    let _ = std::fs::remove_file(file);
}
