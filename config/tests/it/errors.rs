//! A broken file reports every problem at once, each with its path.

use std::path::Path;

use ferry_config::{Config, ErrorKind};

use crate::errors_of;

#[test]
fn a_broken_file_reports_every_problem_at_once() {
    let errors = errors_of(
        r#"
        colour = "blue"                 # unknown section (top-level key)

        [server]
        workers = "many"                # wrong type
        drain_timeout = "10"            # no unit

        [listen]
        ws_path = "ws"                  # no leading '/'
        wss = "nope"                    # not an address

        [limits]
        max_frame_size = 0              # below the minimum
        max_frame_sise = "1KiB"         # typo: unknown key
        outbound_queue = "1KiB"         # not compared: max_frame_size is wrong

        [session]
        heartbeat_timeout = "5s"        # not above heartbeat_interval

        [auth]
        mode = "jwt"                    # no keys

        [log]
        format = "xml"

        [metrics]                       # unknown section
        "#,
    );
    let paths: Vec<&str> = errors.paths().collect();
    assert_eq!(
        paths,
        [
            // Structure first, in key order within each table.
            "colour",
            "limits.max_frame_sise",
            "metrics",
            // Then every field rule, in schema order.
            "server.workers",
            "server.drain_timeout",
            "listen.ws_path",
            "listen.wss",
            "limits.max_frame_size",
            "session.heartbeat_timeout",
            "auth.keys",
            "log.format",
        ],
        "{errors}"
    );
    assert_eq!(errors.len(), 11);
    // Display prints one problem per line, each starting with its path.
    let text = errors.to_string();
    assert_eq!(text.lines().count(), 11);
    for (line, path) in text.lines().zip(&paths) {
        assert!(line.starts_with(&format!("{path}: ")), "{line}");
    }
    assert!(text.contains("limits.max_frame_sise: unknown key; did you mean \"max_frame_size\"?"));
    assert!(text.contains("limits.max_frame_size: 0 is below the minimum 1KiB"));
    assert_eq!(errors.at("server.workers").unwrap().kind, ErrorKind::Type);
    assert_eq!(errors.at("colour").unwrap().kind, ErrorKind::Unknown);
    assert_eq!(errors.at("auth.keys").unwrap().kind, ErrorKind::Invalid);
}

#[test]
fn unknown_keys_are_rejected_with_their_path() {
    let errors = errors_of("[listen]\nwebsocket = \"127.0.0.1:1\"\n");
    assert_eq!(errors.paths().collect::<Vec<_>>(), ["listen.websocket"]);
    assert!(
        errors.errors[0].message.starts_with("unknown key"),
        "{errors}"
    );

    let errors = errors_of("[lmits]\nmax_frame_size = 1\n");
    assert_eq!(
        errors.to_string(),
        "lmits: unknown section; did you mean \"limits\"?"
    );

    let errors = errors_of(
        "[[auth.keys]]\nkid = \"a\"\nalgorithm = \"ES256\"\npublic_key_file = \"/a\"\npem = \"x\"\n[auth]\nmode = \"jwt\"\n",
    );
    assert_eq!(errors.paths().collect::<Vec<_>>(), ["auth.keys[0].pem"]);

    // Unknown keys inside an inline table are found too.
    let errors = errors_of("session = { resume_window = \"1s\", resume = \"x\" }\n");
    assert_eq!(errors.paths().collect::<Vec<_>>(), ["session.resume"]);
}

#[test]
fn misplaced_values_are_reported_not_fatal() {
    let errors = errors_of("limits = 5\n[server]\nworkers = 2000\n[auth]\nkeys = 3\n");
    assert_eq!(
        errors.paths().collect::<Vec<_>>(),
        ["auth.keys", "limits", "server.workers"],
        "{errors}"
    );
    assert!(
        errors
            .at("limits")
            .unwrap()
            .message
            .contains("5 is not a table")
    );

    let errors = errors_of("[auth]\nmode = \"jwt\"\nkeys = [1]\n");
    assert!(
        errors
            .at("auth.keys[0]")
            .unwrap()
            .message
            .contains("1 is not a table")
    );
}

#[test]
fn toml_syntax_errors_have_line_and_column() {
    let errors = errors_of("[server]\nworkers = 2\ndrain_timeout = \"10s\n");
    assert_eq!(errors.len(), 1);
    let error = &errors.errors[0];
    assert_eq!(error.kind, ErrorKind::Syntax);
    assert!(error.path.is_empty());
    assert!(
        error
            .message
            .starts_with("TOML syntax error at line 3, column 21:"),
        "{error}"
    );

    let errors = errors_of("[server]\nworkers = 1\nworkers = 2\n");
    assert!(errors.errors[0].message.contains("at line 3"), "{errors}");
}

#[test]
fn an_unreadable_file_is_an_io_error_naming_it() {
    let errors =
        Config::load_with_env(Some(Path::new("/nonexistent/ferry.toml")), Vec::new()).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors.errors[0].kind, ErrorKind::Io);
    assert!(
        errors
            .to_string()
            .starts_with("cannot read /nonexistent/ferry.toml:"),
        "{errors}"
    );
}

/// Issue 13, finding 8: `check-config` must go on to the key and
/// certificate files when the values have problems, so that everything is
/// reported at once. The lenient load hands out what the file names.
#[test]
fn a_lenient_load_hands_out_the_files_with_every_problem() {
    let dir = std::env::temp_dir().join(format!("ferry-config-lenient-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.toml");
    std::fs::write(
        &file,
        r#"
        [limits]
        max_frame_size = 0
        [tls]
        cert = "/etc/ferry/cert.pem"
        key = "/etc/ferry/key.pem"
        [auth]
        mode = "jwt"
        [[auth.keys]]
        kid = "a"
        algorithm = "ES256"
        public_key_file = "/etc/ferry/a.pem"
        [log]
        format = "xml"
        "#,
    )
    .unwrap();
    let (config, errors) = Config::load_lenient_with_env(Some(&file), Vec::new()).unwrap();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["limits.max_frame_size", "log.format"]);
    assert_eq!(
        config.tls,
        ferry_config::Tls::Files {
            cert: "/etc/ferry/cert.pem".into(),
            key: "/etc/ferry/key.pem".into()
        }
    );
    assert_eq!(config.auth.keys.len(), 1);
    // The default stands in for a wrong value.
    assert_eq!(config.limits, Config::default().limits);
    // A valid file: no problems, the same configuration as `load`.
    std::fs::write(&file, "[limits]\nmax_frame_size = \"32KiB\"\n").unwrap();
    let (config, errors) = Config::load_lenient_with_env(Some(&file), Vec::new()).unwrap();
    assert!(errors.is_empty());
    assert_eq!(
        config,
        Config::load_with_env(Some(&file), Vec::new()).unwrap()
    );
    // No file, no configuration.
    assert!(Config::load_lenient_with_env(Some(&dir.join("missing.toml")), Vec::new()).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
