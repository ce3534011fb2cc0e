//! `config/gateway.toml`: valid, at the defaults, and documenting every key.

use ferry_config::{AuthMode, Config, key_paths};

const EXAMPLE: &str = include_str!("../../gateway.toml");

#[test]
fn the_example_file_is_valid_and_equals_the_defaults() {
    // The example sets every key to its default. The keys that are off by
    // default (listen.wss, tls.*, quic.keep_alive_interval, auth.audience,
    // auth.issuer, auth.keys, ops.api_key) are shown commented out, since
    // TOML cannot write "unset"; listen.control_socket is written out as
    // the path it defaults to. So there is no deliberate difference.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml");
    let config = Config::load_with_env(Some(&path), Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config, Config::default());
}

#[test]
fn the_example_documents_every_key() {
    for path in key_paths() {
        let key = path.rsplit(['.', ']']).next().unwrap();
        let written = EXAMPLE
            .lines()
            .map(|l| l.trim_start_matches('#').trim_start())
            .any(|l| l.starts_with(&format!("{key} =")));
        assert!(written, "gateway.toml does not show {path}");
    }
}

#[test]
fn the_commented_jwt_example_is_valid_when_uncommented() {
    // Uncomment every commented `key = value` line and [[auth.keys]] table
    // from the [auth] section on, and drop the `mode = "none"` it replaces.
    let start = EXAMPLE.find("[auth]").unwrap();
    let end = EXAMPLE.find("[ops]").unwrap();
    let auth: String = EXAMPLE[start..end]
        .lines()
        .filter(|l| !l.starts_with("mode = \"none\""))
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.contains(" = ") || rest.starts_with("[[") => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let config = Config::from_toml_str(&auth).unwrap_or_else(|e| panic!("{e}\n{auth}"));
    assert_eq!(config.auth.mode, AuthMode::Jwt);
    assert_eq!(config.auth.keys.len(), 2);
    assert_eq!(config.auth.audience.as_deref(), Some("ferry"));
}
