//! `FERRY_<SECTION>_<FIELD>` overrides.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use ferry_config::{ByteSize, Config, ErrorKind, Workers};

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn file(text: &str) -> tempfile_lite::TempFile {
    tempfile_lite::TempFile::new(text)
}

/// A file in the target's temp dir, removed on drop (no extra dependency).
mod tempfile_lite {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct TempFile(PathBuf);

    impl TempFile {
        pub fn new(text: &str) -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let name = format!(
                "ferry-config-test-{}-{}.toml",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            );
            let path = std::env::temp_dir().join(name);
            let mut f = std::fs::File::create(&path).unwrap();
            super::Write::write_all(&mut f, text.as_bytes()).unwrap();
            Self(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[test]
fn overrides_apply_over_the_file_and_the_defaults() {
    let f = file("[listen]\nws = \"127.0.0.1:7000\"\n[limits]\nmax_connections = 10\n");
    let c = Config::load_with_env(
        Some(f.path()),
        env(&[
            ("FERRY_LISTEN_WS", "127.0.0.1:9000"),
            ("FERRY_LIMITS_MAX_FRAME_SIZE", "32KiB"),
            ("FERRY_SERVER_WORKERS", "2"),
            ("FERRY_SESSION_RESUME_WINDOW", "5min"),
            ("FERRY_LISTEN_QUIC", ""),
            ("FERRY_OPS_API_KEY", "1234567890123456"),
            ("FERRY_CONFIG", "/etc/ferry/gateway.toml"),
            ("HOME", "/root"),
        ]),
    )
    .unwrap();
    assert_eq!(c.listen.ws, "127.0.0.1:9000".parse::<SocketAddr>().unwrap());
    assert_eq!(c.limits.max_frame_size, ByteSize::kib(32));
    assert_eq!(
        c.limits.max_connections, 10,
        "the file's value stands where no variable is set"
    );
    assert_eq!(c.server.workers, Workers::Fixed(2.try_into().unwrap()));
    assert_eq!(c.session.resume_window, Duration::from_secs(300));
    assert_eq!(c.listen.quic, None, "an empty value turns quic off");
    // A numeric-looking value for a string key stays a string.
    assert_eq!(c.ops.api_key.unwrap().expose(), "1234567890123456");
}

#[test]
fn bad_values_and_unknown_variables_are_reported_with_the_variable() {
    let errors = Config::load_with_env(
        None,
        env(&[
            ("FERRY_LIMITS_MAX_FRAME_SIZE", "0"),
            ("FERRY_SERVER_WORKERS", "two"),
            ("FERRY_LISTEN_WS", "localhost"),
            ("FERRY_LIMITS_MAX_FRAMESIZE", "1KiB"),
            ("FERRY_AUTH_KEYS", "[]"),
        ]),
    )
    .unwrap_err();
    let lines: Vec<String> = errors.errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 5, "{errors}");
    // Variables that name no key come first, named by the variable.
    assert_eq!(errors.errors[0].path, "FERRY_AUTH_KEYS");
    assert_eq!(errors.errors[0].kind, ErrorKind::Unknown);
    assert!(lines[0].contains("cannot be set from the environment"));
    assert_eq!(errors.errors[1].path, "FERRY_LIMITS_MAX_FRAMESIZE");
    assert!(
        lines[1].contains("did you mean \"FERRY_LIMITS_MAX_FRAME_SIZE\"?"),
        "{}",
        lines[1]
    );
    // Bad values are reported at their field, naming the variable.
    assert_eq!(
        lines[2],
        "server.workers: \"two\" is not a whole number (set by FERRY_SERVER_WORKERS)"
    );
    assert!(lines[3].starts_with("listen.ws: \"localhost\" is not a socket address"));
    assert!(lines[3].ends_with("(set by FERRY_LISTEN_WS)"));
    assert_eq!(
        lines[4],
        "limits.max_frame_size: \"0\" is below the minimum 1KiB (set by FERRY_LIMITS_MAX_FRAME_SIZE)"
    );
}

#[test]
fn file_and_env_problems_are_reported_together() {
    let f = file("[limits]\nmax_channel_len = 0\nbogus = 1\n");
    let errors =
        Config::load_with_env(Some(f.path()), env(&[("FERRY_QUIC_IDLE_TIMEOUT", "never")]))
            .unwrap_err();
    assert_eq!(
        errors.paths().collect::<Vec<_>>(),
        [
            "limits.bogus",
            "limits.max_channel_len",
            "quic.idle_timeout"
        ],
        "{errors}"
    );
}

#[test]
fn load_reads_the_process_environment() {
    // The test binary's environment has no FERRY_ variables unless a
    // developer set some; either way `load` must agree with `load_with_env`.
    let vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("FERRY_"))
        .collect();
    assert_eq!(Config::load(None), Config::load_with_env(None, vars));
}
