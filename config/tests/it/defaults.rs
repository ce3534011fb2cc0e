//! The embedded defaults: valid, equal to an empty file, as documented.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_config::{AuthMode, ByteSize, Config, LogFormat, Tls, Workers};

use crate::config_of;

#[test]
fn an_empty_file_is_the_defaults() {
    assert_eq!(config_of(""), Config::default());
    assert_eq!(config_of("# only a comment\n"), Config::default());
    // Empty sections are the defaults too.
    assert_eq!(config_of("[server]\n[limits]\n[auth]\n"), Config::default());
}

#[test]
fn no_file_and_no_env_is_the_defaults() {
    assert_eq!(
        Config::load_with_env(None, Vec::new()).unwrap(),
        Config::default()
    );
}

#[test]
fn the_defaults_are_the_documented_values() {
    let c = Config::default();
    assert_eq!(c.server.workers, Workers::PerCore);
    assert!(c.server.workers.count() >= 1);
    assert_eq!(c.server.data_dir, PathBuf::from("ferry-data"));
    assert_eq!(c.server.drain_timeout, Duration::from_secs(10));
    assert!(!c.server.pin_workers, "hard pinning can starve a worker");
    assert!(
        config_of("[server]\npin_workers = true\n")
            .server
            .pin_workers
    );
    assert_eq!(c.limits.max_sessions, 100_000);
    assert_eq!(c.limits.memory_budget, ByteSize::gib(1));
    assert_eq!(c.channels.idle_ttl, Duration::from_secs(60));
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert_eq!(c.listen.ws, addr("127.0.0.1:8080"));
    assert_eq!(c.listen.ws_path.as_str(), "/ws");
    assert_eq!(c.listen.wss, None);
    assert_eq!(c.listen.quic, Some(addr("127.0.0.1:4433")));
    assert_eq!(c.listen.ops, addr("127.0.0.1:9090"));
    assert_eq!(
        c.listen.control_socket,
        Path::new("ferry-data").join("control.sock")
    );
    assert_eq!(c.tls, Tls::SelfSigned);
    assert_eq!(c.limits.max_frame_size, ByteSize::kib(64));
    assert_eq!(c.limits.max_frame_size.as_usize(), 65_536);
    assert_eq!(c.limits.max_channel_len, 128);
    assert_eq!(c.limits.max_subscriptions, 64);
    assert_eq!(c.limits.max_connections, 100_000);
    assert_eq!(c.limits.outbound_queue, ByteSize::kib(256));
    assert_eq!(c.limits.publish_rate, None);
    assert_eq!(c.limits.publish_burst.get(), 100);
    assert_eq!(c.session.handshake_timeout, Duration::from_secs(10));
    assert_eq!(c.session.heartbeat_interval, Duration::from_secs(25));
    assert_eq!(c.session.heartbeat_timeout, Duration::from_secs(60));
    assert_eq!(c.session.resume_window, Duration::from_secs(120));
    assert_eq!(c.session.replay_max_messages, 1024);
    assert_eq!(c.session.replay_max_bytes, ByteSize::mib(1));
    assert_eq!(c.channels.history_messages, 1024);
    assert_eq!(c.channels.history_bytes, ByteSize::mib(1));
    assert_eq!(c.websocket.read_buffer, ByteSize::kib(1));
    assert_eq!(c.websocket.write_buffer, ByteSize::kib(4));
    assert_eq!(c.websocket.max_write_buffer, ByteSize::mib(1));
    assert_eq!(c.quic.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.quic.keep_alive_interval, None);
    assert_eq!(c.quic.stream_receive_window, ByteSize::kib(64));
    assert_eq!(c.quic.receive_window, ByteSize::kib(128));
    assert_eq!(c.quic.send_window, ByteSize::kib(256));
    assert_eq!(c.auth.mode, AuthMode::None);
    assert_eq!(c.auth.audience, None);
    assert_eq!(c.auth.issuer, None);
    assert_eq!(c.auth.refresh_before, Duration::from_secs(60));
    assert_eq!(c.auth.refresh_grace, Duration::from_secs(30));
    assert_eq!(c.auth.failed_attempts_per_minute.get(), 30);
    assert!(c.auth.keys.is_empty());
    assert!(c.ops.api_key.is_none());
    assert_eq!(c.log.level.as_str(), "info");
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.upgrade.reconnect_rate.get(), 2000);
    assert_eq!(c.upgrade.drain_deadline, Duration::from_secs(60));
}

#[test]
fn human_units_parse_in_every_form() {
    let c = config_of(
        r#"
        [limits]
        max_frame_size = 32768          # bare integer: bytes
        outbound_queue = "1.5MiB"       # fraction of a whole number of bytes
        [session]
        replay_max_bytes = "2 MiB"
        heartbeat_interval = "250ms"
        heartbeat_timeout = "1m 30s"
        [websocket]
        max_write_buffer = "1048576"    # digits in a string: bytes
        "#,
    );
    assert_eq!(c.limits.max_frame_size, ByteSize::kib(32));
    assert_eq!(c.limits.outbound_queue.as_u64(), 1_572_864);
    assert_eq!(c.session.replay_max_bytes, ByteSize::mib(2));
    assert_eq!(c.session.heartbeat_interval, Duration::from_millis(250));
    assert_eq!(c.session.heartbeat_timeout, Duration::from_secs(90));
    assert_eq!(c.websocket.max_write_buffer, ByteSize::mib(1));
}

#[test]
fn the_control_socket_follows_data_dir_unless_given() {
    let c = config_of("[server]\ndata_dir = \"/var/lib/ferry\"\n");
    assert_eq!(
        c.listen.control_socket,
        Path::new("/var/lib/ferry/control.sock")
    );
    let c = config_of(
        "[server]\ndata_dir = \"/var/lib/ferry\"\n[listen]\ncontrol_socket = \"/run/ferry.sock\"\n",
    );
    assert_eq!(c.listen.control_socket, Path::new("/run/ferry.sock"));
}

#[test]
fn optional_listeners_and_tls_files_turn_on_and_off() {
    let c = config_of(
        r#"
        [listen]
        wss = "0.0.0.0:8443"
        quic = ""
        [tls]
        cert = "/etc/ferry/cert.pem"
        key = "/etc/ferry/key.pem"
        [quic]
        keep_alive_interval = "15s"
        "#,
    );
    assert_eq!(c.listen.wss, Some("0.0.0.0:8443".parse().unwrap()));
    assert_eq!(c.listen.quic, None);
    assert_eq!(
        c.tls,
        Tls::Files {
            cert: "/etc/ferry/cert.pem".into(),
            key: "/etc/ferry/key.pem".into()
        }
    );
    assert_eq!(c.quic.keep_alive_interval, Some(Duration::from_secs(15)));
    assert_eq!(
        config_of("[server]\nworkers = 4\n").server.workers.count(),
        4
    );
    assert_eq!(
        config_of("[limits]\npublish_rate = 50\n")
            .limits
            .publish_rate
            .map(|r| r.get()),
        Some(50)
    );
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let c = config_of("[ops]\napi_key = \"0123456789abcdef-very-secret\"\n");
    assert_eq!(
        c.ops.api_key.as_ref().unwrap().expose(),
        "0123456789abcdef-very-secret"
    );
    assert!(!format!("{c:?}").contains("very-secret"));
}
