//! Reload diffs: live changes versus changes that need a restart.

use ferry_config::Config;

use crate::config_of;

#[test]
fn identical_configs_have_no_diff() {
    let d = Config::default().diff(&Config::default());
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn changes_are_split_into_live_and_restart() {
    let old = Config::default();
    let new = config_of(
        r#"
        [server]
        workers = 3
        data_dir = "/var/lib/ferry"     # also moves the derived control socket
        drain_timeout = "20s"
        [listen]
        ws = "0.0.0.0:8080"
        [tls]
        cert = "/c.pem"
        key = "/k.pem"
        [limits]
        max_connections = 5000
        [auth]
        mode = "jwt"
        [[auth.keys]]
        kid = "a"
        algorithm = "ES256"
        public_key_file = "/a.pem"
        [log]
        level = "debug"
        "#,
    );
    let d = old.diff(&new);
    assert_eq!(
        d.changed,
        [
            "server.drain_timeout",
            "tls.cert",
            "tls.key",
            "limits.max_connections",
            "auth.mode",
            "auth.keys",
            "log.level"
        ]
    );
    assert_eq!(
        d.needs_restart,
        [
            "server.workers",
            "server.data_dir",
            "listen.ws",
            "listen.control_socket"
        ]
    );
    // And back again: the same paths.
    let back = new.diff(&old);
    assert_eq!(back.changed, d.changed);
    assert_eq!(back.needs_restart, d.needs_restart);
}

#[test]
fn every_listen_field_needs_a_restart() {
    let new = config_of(
        "[listen]\nws_path = \"/x\"\nwss = \"127.0.0.1:8443\"\nquic = \"\"\nops = \"127.0.0.1:1\"\ncontrol_socket = \"/run/f.sock\"",
    );
    let d = Config::default().diff(&new);
    assert!(d.changed.is_empty(), "{d:?}");
    assert_eq!(
        d.needs_restart,
        [
            "listen.ws_path",
            "listen.wss",
            "listen.quic",
            "listen.ops",
            "listen.control_socket"
        ]
    );
}

#[test]
fn a_changed_secret_is_a_change_without_showing_it() {
    let a = config_of("[ops]\napi_key = \"aaaaaaaaaaaaaaaa\"");
    let b = config_of("[ops]\napi_key = \"bbbbbbbbbbbbbbbb\"");
    let d = a.diff(&b);
    assert_eq!(d.changed, ["ops.api_key"]);
    assert!(!format!("{d:?}").contains("bbbb"));
}

/// Issue 13, finding 8: `quic.*` is built into the endpoints at start and
/// never applied by a reload, so the diff must say it waits for a restart;
/// `upgrade.*` is read when an upgrade starts, so it applies live.
#[test]
fn quic_changes_need_a_restart_and_upgrade_changes_apply_live() {
    let new = config_of(
        r#"
        [quic]
        idle_timeout = "30s"
        keep_alive_interval = "10s"
        stream_receive_window = "32KiB"
        receive_window = "64KiB"
        send_window = "128KiB"
        [upgrade]
        reconnect_rate = 10
        drain_deadline = "5s"
        "#,
    );
    let d = Config::default().diff(&new);
    assert_eq!(
        d.needs_restart,
        [
            "quic.idle_timeout",
            "quic.keep_alive_interval",
            "quic.stream_receive_window",
            "quic.receive_window",
            "quic.send_window"
        ]
    );
    assert_eq!(
        d.changed,
        ["upgrade.reconnect_rate", "upgrade.drain_deadline"]
    );
}
