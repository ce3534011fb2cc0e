//! Every validation rule rejects a bad value, reported at its path.

use ferry_config::{Algorithm, AuthMode, Config, KeyMaterial};

use crate::{config_of, errors_of};

const JWT_OK: &str = r#"
[auth]
mode = "jwt"
[[auth.keys]]
kid = "a"
algorithm = "ES256"
public_key_file = "/k/a.pem"
"#;

/// Each case is a file that breaks exactly one rule: the path it must be
/// reported at, and a fragment of the message.
const CASES: &[(&str, &str, &str)] = &[
    (
        "[server]\nworkers = 1025",
        "server.workers",
        "1025 is above the maximum 1024",
    ),
    (
        "[server]\nworkers = -1",
        "server.workers",
        "-1 is below the minimum 0",
    ),
    (
        "[server]\nworkers = \"two\"",
        "server.workers",
        "\"two\" is not a whole number",
    ),
    (
        "[server]\nworkers = \"2\"",
        "server.workers",
        "write the number without quotes",
    ),
    (
        "[server]\nworkers = 1.5",
        "server.workers",
        "1.5 is a fractional number",
    ),
    (
        "[server]\ndata_dir = \"\"",
        "server.data_dir",
        "is empty, not a path",
    ),
    (
        "[server]\ndata_dir = 5",
        "server.data_dir",
        "5 is a number, not a path",
    ),
    (
        "[server]\ndrain_timeout = \"soon\"",
        "server.drain_timeout",
        "\"soon\" is not a duration",
    ),
    (
        "[server]\ndrain_timeout = 30",
        "server.drain_timeout",
        "30 has no unit",
    ),
    (
        "[server]\ndrain_timeout = \"30\"",
        "server.drain_timeout",
        "\"30\" has no unit",
    ),
    (
        "[server]\ndrain_timeout = \"2days\"",
        "server.drain_timeout",
        "is above the maximum 1day",
    ),
    (
        "[listen]\nws = \"localhost:8080\"",
        "listen.ws",
        "\"localhost:8080\" is not a socket address",
    ),
    (
        "[listen]\nws_path = \"ws\"",
        "listen.ws_path",
        "\"ws\" does not start with '/'",
    ),
    ("[listen]\nws_path = \"/ws?x=1\"", "listen.ws_path", "'?'"),
    (
        "[listen]\nwss = \"nope\"",
        "listen.wss",
        "\"nope\" is not a socket address",
    ),
    (
        "[listen]\nquic = 4433",
        "listen.quic",
        "4433 is a number, not a socket address",
    ),
    (
        "[listen]\nops = \"127.0.0.1:8080\"",
        "listen.ops",
        "is also listen.ws",
    ),
    (
        "[listen]\nwss = \"127.0.0.1:9090\"",
        "listen.ops",
        "is also listen.wss",
    ),
    (
        "[listen]\ncontrol_socket = \"\"",
        "listen.control_socket",
        "is empty",
    ),
    ("[tls]\ncert = \"/c.pem\"", "tls.key", "both or neither"),
    ("[tls]\nkey = \"/k.pem\"", "tls.cert", "both or neither"),
    (
        "[limits]\nmax_frame_size = 0",
        "limits.max_frame_size",
        "0 is below the minimum 1KiB",
    ),
    (
        "[limits]\nmax_frame_size = \"32MiB\"",
        "limits.max_frame_size",
        "\"32MiB\" is above the maximum 16MiB",
    ),
    (
        "[limits]\nmax_frame_size = \"64KB\"",
        "limits.max_frame_size",
        "decimal unit",
    ),
    (
        "[limits]\nmax_frame_size = \"0.3KiB\"",
        "limits.max_frame_size",
        "whole number of bytes",
    ),
    (
        "[limits]\nmax_frame_size = -5",
        "limits.max_frame_size",
        "-5 is negative",
    ),
    (
        "[limits]\nmax_channel_len = 0",
        "limits.max_channel_len",
        "0 is below the minimum 1",
    ),
    (
        "[limits]\nmax_channel_len = 1025",
        "limits.max_channel_len",
        "above the maximum 1024",
    ),
    (
        "[limits]\nmax_subscriptions = 0",
        "limits.max_subscriptions",
        "below the minimum 1",
    ),
    (
        "[limits]\nmax_connections = 0",
        "limits.max_connections",
        "below the minimum 1",
    ),
    (
        "[limits]\noutbound_queue = \"32KiB\"",
        "limits.outbound_queue",
        "32KiB is below limits.max_frame_size (64KiB)",
    ),
    (
        "[limits]\npublish_rate = -1",
        "limits.publish_rate",
        "below the minimum 0",
    ),
    (
        "[limits]\npublish_burst = 0",
        "limits.publish_burst",
        "below the minimum 1",
    ),
    (
        "[session]\nhandshake_timeout = \"0s\"",
        "session.handshake_timeout",
        "\"0s\" must be more than zero",
    ),
    (
        "[session]\nheartbeat_interval = \"0s\"",
        "session.heartbeat_interval",
        "more than zero",
    ),
    (
        "[session]\nheartbeat_timeout = \"20s\"",
        "session.heartbeat_timeout",
        "20s must be more than session.heartbeat_interval (25s)",
    ),
    (
        "[session]\nheartbeat_timeout = \"25s\"",
        "session.heartbeat_timeout",
        "must be more than",
    ),
    (
        "[session]\nresume_window = \"0s\"",
        "session.resume_window",
        "more than zero",
    ),
    (
        "[session]\nreplay_max_messages = 0",
        "session.replay_max_messages",
        "below the minimum 1",
    ),
    (
        "[session]\nreplay_max_bytes = \"32KiB\"",
        "session.replay_max_bytes",
        "below limits.max_frame_size",
    ),
    (
        "[channels]\nhistory_messages = 0",
        "channels.history_messages",
        "below the minimum 1",
    ),
    (
        "[channels]\nhistory_bytes = \"1KiB\"",
        "channels.history_bytes",
        "below limits.max_frame_size",
    ),
    (
        "[websocket]\nread_buffer = \"512B\"",
        "websocket.read_buffer",
        "below the minimum 1KiB",
    ),
    (
        "[websocket]\nwrite_buffer = \"32MiB\"",
        "websocket.write_buffer",
        "above the maximum 16MiB",
    ),
    (
        "[websocket]\nmax_write_buffer = \"64KiB\"",
        "websocket.max_write_buffer",
        "must be more than websocket.write_buffer + limits.max_frame_size (68KiB)",
    ),
    (
        "[websocket]\nmax_write_buffer = \"2GiB\"",
        "websocket.max_write_buffer",
        "above the maximum 1GiB",
    ),
    (
        "[quic]\nidle_timeout = \"0s\"",
        "quic.idle_timeout",
        "more than zero",
    ),
    (
        "[quic]\nkeep_alive_interval = \"60s\"",
        "quic.keep_alive_interval",
        "must be less than quic.idle_timeout",
    ),
    (
        "[quic]\nkeep_alive_interval = \"0s\"",
        "quic.keep_alive_interval",
        "more than zero",
    ),
    (
        "[quic]\nstream_receive_window = \"100B\"",
        "quic.stream_receive_window",
        "below the minimum 1KiB",
    ),
    (
        "[quic]\nreceive_window = \"32KiB\"",
        "quic.receive_window",
        "below quic.stream_receive_window (64KiB)",
    ),
    (
        "[quic]\nsend_window = 1",
        "quic.send_window",
        "below the minimum 1KiB",
    ),
    (
        "[quic]\nmax_concurrent_bidi_streams = 0",
        "quic.max_concurrent_bidi_streams",
        "0 is not supported: a Ferry connection uses exactly one bidirectional stream",
    ),
    // Issue 13, finding 8: validated up to 1024 and then hard-coded to 1.
    (
        "[quic]\nmax_concurrent_bidi_streams = 4",
        "quic.max_concurrent_bidi_streams",
        "4 is not supported: a Ferry connection uses exactly one bidirectional stream",
    ),
    (
        "[auth]\nmode = \"oauth\"",
        "auth.mode",
        "\"oauth\" is not one of \"none\", \"jwt\"",
    ),
    (
        "[auth]\nmode = \"jwt\"",
        "auth.keys",
        "needs at least one [[auth.keys]]",
    ),
    (
        "[auth]\naudience = \"x\"",
        "auth.mode",
        "set mode = \"jwt\"",
    ),
    (
        "[[auth.keys]]\nkid = \"a\"\nalgorithm = \"RS256\"\npublic_key_file = \"/a\"",
        "auth.mode",
        "accepts every client",
    ),
    (
        "[auth]\nrefresh_before = \"0s\"",
        "auth.refresh_before",
        "more than zero",
    ),
    (
        "[auth]\nfailed_attempts_per_minute = 0",
        "auth.failed_attempts_per_minute",
        "below the minimum 1",
    ),
    (
        "[ops]\napi_key = \"short\"",
        "ops.api_key",
        "is 5 characters; the minimum is 16",
    ),
    (
        "[ops]\napi_key = 1234567890123456789",
        "ops.api_key",
        "is a number, not a string",
    ),
    ("[log]\nlevel = \"  \"", "log.level", "is empty"),
    (
        "[log]\nformat = \"xml\"",
        "log.format",
        "\"xml\" is not one of \"text\", \"json\"",
    ),
    (
        "[upgrade]\nreconnect_rate = 0",
        "upgrade.reconnect_rate",
        "below the minimum 1",
    ),
    (
        "[upgrade]\ndrain_deadline = \"0s\"",
        "upgrade.drain_deadline",
        "more than zero",
    ),
];

#[test]
fn every_rule_rejects_a_bad_value_at_its_path() {
    for (text, path, fragment) in CASES {
        let errors = errors_of(text);
        assert_eq!(
            errors.len(),
            1,
            "one error expected for {text:?}, got:\n{errors}"
        );
        let error = &errors.errors[0];
        assert_eq!(error.path, *path, "for {text:?}: {error}");
        assert!(
            error.message.contains(fragment),
            "for {text:?}: {error:?} lacks {fragment:?}"
        );
    }
}

#[test]
fn the_message_reads_path_value_problem() {
    assert_eq!(
        errors_of("[limits]\nmax_frame_size = 0").to_string(),
        "limits.max_frame_size: 0 is below the minimum 1KiB"
    );
}

#[test]
fn a_long_control_socket_path_is_rejected_even_when_derived() {
    let long = "/".to_owned() + &"d".repeat(120);
    let errors = errors_of(&format!("[server]\ndata_dir = \"{long}\""));
    assert_eq!(
        errors.paths().collect::<Vec<_>>(),
        ["listen.control_socket"]
    );
    assert!(
        errors.errors[0]
            .message
            .contains("(server.data_dir + \"/control.sock\")")
    );
    // An explicit short socket path makes the long data_dir fine.
    config_of(&format!(
        "[server]\ndata_dir = \"{long}\"\n[listen]\ncontrol_socket = \"/run/f.sock\""
    ));
}

#[test]
fn port_zero_listeners_may_share_an_address() {
    config_of("[listen]\nws = \"127.0.0.1:0\"\nwss = \"127.0.0.1:0\"\nops = \"127.0.0.1:0\"");
}

#[test]
fn a_jwt_configuration_with_every_algorithm_is_typed() {
    let c = config_of(
        r#"
        [auth]
        mode = "jwt"
        audience = "ferry"
        issuer = "https://auth.example.com"
        refresh_grace = "0s"
        [[auth.keys]]
        kid = "h"
        algorithm = "HS256"
        secret = "0123456789abcdef0123456789abcdef"
        [[auth.keys]]
        kid = "r"
        algorithm = "RS256"
        public_key_file = "/k/r.pem"
        [[auth.keys]]
        kid = "e"
        algorithm = "ES256"
        public_key_file = "/k/e.pem"
        "#,
    );
    assert_eq!(c.auth.mode, AuthMode::Jwt);
    assert_eq!(c.auth.audience.as_deref(), Some("ferry"));
    assert!(c.auth.refresh_grace.is_zero());
    let algs: Vec<Algorithm> = c.auth.keys.iter().map(|k| k.algorithm()).collect();
    assert_eq!(algs, [Algorithm::Hs256, Algorithm::Rs256, Algorithm::Es256]);
    assert!(
        matches!(&c.auth.keys[0].material, KeyMaterial::Hs256 { secret } if secret.expose().len() == 32)
    );
    assert!(
        matches!(&c.auth.keys[2].material, KeyMaterial::Es256 { public_key_file } if public_key_file.ends_with("e.pem"))
    );
}

#[test]
fn every_jwt_key_rule_is_reported_at_its_entry() {
    let errors = errors_of(
        r#"
        [auth]
        mode = "jwt"
        [[auth.keys]]            # 0: fine
        kid = "a"
        algorithm = "ES256"
        public_key_file = "/k/a.pem"
        [[auth.keys]]            # 1: duplicate kid
        kid = "a"
        algorithm = "RS256"
        public_key_file = "/k/b.pem"
        [[auth.keys]]            # 2: no kid, no algorithm
        public_key_file = "/k/c.pem"
        [[auth.keys]]            # 3: unknown algorithm
        kid = "d"
        algorithm = "HS512"
        [[auth.keys]]            # 4: HS256 with a file and no secret
        kid = "e"
        algorithm = "HS256"
        public_key_file = "/k/e.pem"
        [[auth.keys]]            # 5: HS256 secret too short
        kid = "f"
        algorithm = "HS256"
        secret = "tiny-secret"
        [[auth.keys]]            # 6: ES256 with a secret and no file
        kid = "g"
        algorithm = "ES256"
        secret = "0123456789abcdef0123456789abcdef"
        "#,
    );
    let got: Vec<(&str, &str)> = errors
        .errors
        .iter()
        .map(|e| (e.path.as_str(), e.message.as_str()))
        .collect();
    let expected: &[(&str, &str)] = &[
        ("auth.keys[1].kid", "\"a\" is also auth.keys[0].kid"),
        ("auth.keys[2].kid", "missing"),
        ("auth.keys[2].algorithm", "missing"),
        (
            "auth.keys[3].algorithm",
            "\"HS512\" is not one of \"HS256\", \"RS256\", \"ES256\"",
        ),
        ("auth.keys[4].public_key_file", "not used by HS256"),
        (
            "auth.keys[4].secret",
            "missing: HS256 needs a shared secret",
        ),
        (
            "auth.keys[5].secret",
            "is 11 bytes; HS256 needs at least 32",
        ),
        ("auth.keys[6].secret", "not used by ES256"),
        (
            "auth.keys[6].public_key_file",
            "missing: ES256 needs a PEM public key file",
        ),
    ];
    assert_eq!(got.len(), expected.len(), "{errors}");
    for ((path, message), (want_path, fragment)) in got.iter().zip(expected) {
        assert_eq!(path, want_path, "{errors}");
        assert!(
            message.contains(fragment),
            "{path}: {message:?} lacks {fragment:?}"
        );
    }
    // Secrets never appear in messages.
    assert!(!errors.to_string().contains("tiny-secret"));
    assert!(!errors.to_string().contains("0123456789abcdef"));
}

#[test]
fn a_valid_jwt_base_is_accepted() {
    assert_eq!(config_of(JWT_OK).auth.keys.len(), 1);
}

#[test]
fn max_concurrent_bidi_streams_of_1_still_loads() {
    // Deprecated, not removed: files written from the old example load.
    assert_eq!(
        config_of("[quic]\nmax_concurrent_bidi_streams = 1"),
        Config::default()
    );
}
