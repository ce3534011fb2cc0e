//! TLS for WSS and QUIC: configured certificates, rotation by reload with
//! existing connections kept, and clean refusals of TLS garbage and of a
//! wrong QUIC ALPN.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_protocol::client::{Client, TlsTrust, Transport};
use ferry_tests::gateway_bin;
use ferry_tests::harness::{Gateway, GatewayOptions};
use ferry_tests::sdk::{config, connect, messages, payload, values};

/// Writes a self-signed certificate for localhost; returns (cert, key).
fn make_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, generated.cert.pem()).expect("write cert");
    std::fs::write(&key, generated.signing_key.serialize_pem()).expect("write key");
    (cert, key)
}

fn tls_config(cert: &Path, key: &Path) -> String {
    format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

fn trusting(gw: &Gateway, transport: Transport, ca: &Path) -> ferry_protocol::client::ClientConfig {
    let mut c = config(gw, transport);
    c.tls = Some(TlsTrust::CaFile(ca.to_path_buf()));
    c.reconnect.max_attempts = Some(0);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_serves_new_handshakes_and_keeps_existing_connections() {
    let dir = std::env::temp_dir().join(format!("ferry-tls-rotate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert_a, key_a) = make_cert(&dir, "a");
    let (cert_b, key_b) = make_cert(&dir, "b");
    let file = dir.join("gateway.toml");
    std::fs::write(&file, tls_config(&cert_a, &key_a)).expect("config");
    let gw = Gateway::start(gateway_bin!(), GatewayOptions::default().config(&file)).expect("gw");

    let mut existing = Vec::new();
    for transport in [Transport::Wss, Transport::Quic] {
        let (c, ev) = Client::connect(trusting(&gw, transport, &cert_a))
            .await
            .unwrap_or_else(|e| panic!("{transport:?} with certificate A: {e}"));
        c.subscribe("tls").await.expect("subscribe");
        existing.push((c, ev));
    }

    std::fs::write(&file, tls_config(&cert_b, &key_b)).expect("config");
    gw.signal(libc::SIGHUP);
    gw.wait_for_log("configuration reloaded", 1)
        .expect("reload");

    for transport in [Transport::Wss, Transport::Quic] {
        let old_trust = Client::connect(trusting(&gw, transport, &cert_a)).await;
        assert!(
            old_trust.is_err(),
            "{transport:?}: new handshakes must see certificate B"
        );
        Client::connect(trusting(&gw, transport, &cert_b))
            .await
            .unwrap_or_else(|e| panic!("{transport:?} with certificate B: {e}"));
    }
    // The connections made before the rotation still work.
    let (publisher, _pe) = connect(&gw, Transport::Ws).await;
    for i in 0..5 {
        publisher
            .publish("tls", payload(i, 8))
            .await
            .expect("publish");
    }
    for (c, ev) in &mut existing {
        let (got, _) = messages(ev, 5, Duration::from_secs(10)).await;
        assert_eq!(values(&got), (0..5).collect::<Vec<_>>());
        assert_eq!(c.stats().reconnects, 0, "kept the connection");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_missing_key_file_is_a_clear_start_error() {
    let file = std::env::temp_dir().join(format!("ferry-tls-missing-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        tls_config(
            Path::new("/nonexistent/cert.pem"),
            Path::new("/nonexistent/key.pem"),
        ),
    )
    .expect("config");
    let out = std::process::Command::new(gateway_bin!())
        .args(["--config"])
        .arg(&file)
        .args([
            "--ws",
            "127.0.0.1:0",
            "--quic",
            "127.0.0.1:0",
            "--ops",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/cert.pem"), "{stderr}");
    let _ = std::fs::remove_file(file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_garbage_and_a_wrong_alpn_are_refused_and_nothing_else_is_touched() {
    let gw = Gateway::start(gateway_bin!(), GatewayOptions::default()).expect("gw");
    let (c, mut ev) = connect(&gw, Transport::Wss).await;
    c.subscribe("steady").await.expect("subscribe");

    // Not TLS at all on the WSS port.
    let wss: std::net::SocketAddr = gw.ready_value("wss").expect("wss").parse().expect("addr");
    let mut raw = std::net::TcpStream::connect(wss).expect("connect");
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n garbage garbage")
        .expect("write");
    raw.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 256];
    let n = std::io::Read::read(&mut raw, &mut buf).unwrap_or(0);
    assert!(
        n == 0 || buf[0] == 0x15,
        "expected a close or a TLS alert, got {:?}",
        &buf[..n]
    );

    // QUIC with another application protocol.
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(gw.cert()).expect("cert");
    for cert in rustls_pemfile_certs(&pem) {
        roots.add(cert).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let quic_tls = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls");
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic_tls)));
    let quic: std::net::SocketAddr = gw.ready_value("quic").expect("quic").parse().expect("addr");
    let attempt = endpoint.connect(quic, "localhost").expect("connect");
    let result = tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .expect("answered");
    assert!(result.is_err(), "a wrong ALPN must be refused");

    // The existing session never noticed.
    let (publisher, _pe) = connect(&gw, Transport::Quic).await;
    publisher
        .publish("steady", payload(1, 8))
        .await
        .expect("publish");
    let (got, _) = messages(&mut ev, 1, Duration::from_secs(10)).await;
    assert_eq!(values(&got), vec![1]);
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certificates")
}

/// The value of the Prometheus sample that starts with `series`, 0 when
/// absent.
async fn metric(gw: &Gateway, series: &str) -> f64 {
    let ops = gw.ops_addr().expect("ops");
    let text = ferry_tests::http::get(ops, "/metrics")
        .await
        .expect("metrics")
        .text();
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Waits (at most 10 s) until `series` reaches `want`.
async fn wait_for_metric(gw: &Gateway, series: &str, want: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = metric(gw, series).await;
        if got >= want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} is {got}, not {want}, after 10 s; log:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const RELOAD_OK: &str = "ferry_config_reloads_total{outcome=\"ok\"}";
const RELOAD_ERROR: &str = "ferry_config_reloads_total{outcome=\"error\"}";

/// Issue 13, finding 8: a certificate that cannot be used made a reload
/// count as a success, with the other fields applied and the old
/// certificate kept. It must fail the reload as a whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_certificate_on_reload_fails_the_whole_reload() {
    let dir = std::env::temp_dir().join(format!("ferry-tls-bad-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert_a, key_a) = make_cert(&dir, "a");
    let (_, key_b) = make_cert(&dir, "b");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").expect("write");
    let file = dir.join("gateway.toml");
    let limit = "[limits]\nmax_subscriptions = 64\n";
    std::fs::write(&file, format!("{}{limit}", tls_config(&cert_a, &key_a))).expect("config");
    let gw = Gateway::start(gateway_bin!(), GatewayOptions::default().config(&file)).expect("gw");

    // Each bad certificate comes with a lower subscription limit, which
    // must not apply either.
    let strict = "[limits]\nmax_subscriptions = 1\n";
    for (round, (cert, key)) in [(&garbage, &key_a), (&cert_a, &key_b)]
        .into_iter()
        .enumerate()
    {
        std::fs::write(&file, format!("{}{strict}", tls_config(cert, key))).expect("config");
        gw.signal(libc::SIGHUP);
        wait_for_metric(&gw, RELOAD_ERROR, (round + 1) as f64).await;
        assert_eq!(metric(&gw, RELOAD_OK).await, 0.0, "round {round}");
    }
    let log = gw.log();
    assert!(log.contains("tls.cert"), "{log}");
    assert!(log.contains("tls.key"), "{log}");
    // Nothing applied: certificate A still serves, and two subscriptions
    // are still allowed.
    for transport in [Transport::Wss, Transport::Quic] {
        let (c, _ev) = Client::connect(trusting(&gw, transport, &cert_a))
            .await
            .unwrap_or_else(|e| panic!("{transport:?} with certificate A: {e}"));
        c.subscribe("one").await.expect("first subscription");
        c.subscribe("two").await.expect("second subscription");
        c.close().await;
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn check_config(file: &Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(gateway_bin!())
        .arg("check-config")
        .arg(file)
        .env_remove("FERRY_CONFIG")
        .output()
        .expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue 13, finding 8: `check-config` printed ok for certificate files
/// that the gateway then could not load, and reported key-file problems
/// only once every schema problem was fixed.
#[test]
fn check_config_reads_the_tls_files_and_reports_everything_at_once() {
    let dir = std::env::temp_dir().join(format!("ferry-tls-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert_a, key_a) = make_cert(&dir, "a");
    let (_, key_b) = make_cert(&dir, "b");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").expect("write");
    let file = dir.join("gateway.toml");

    // Good files: ok.
    std::fs::write(&file, tls_config(&cert_a, &key_a)).expect("config");
    let (code, stderr) = check_config(&file);
    assert_eq!(code, Some(0), "{stderr}");

    // A certificate that is not one, a key of another pair, a missing key.
    let missing = dir.join("missing.key");
    for (cert, key, field) in [
        (&garbage, &key_a, "tls.cert"),
        (&cert_a, &key_b, "tls.key"),
        (&cert_a, &missing, "tls.key"),
    ] {
        std::fs::write(&file, tls_config(cert, key)).expect("config");
        let (code, stderr) = check_config(&file);
        assert_eq!(code, Some(2), "{field}: {stderr}");
        assert!(stderr.contains(&format!("{field}: ")), "{field}: {stderr}");
    }

    // Schema problems, an unreadable auth key file and a bad certificate:
    // all in one report, each line starting with its field path.
    let missing_pem = dir.join("missing.pub.pem");
    std::fs::write(
        &file,
        format!(
            "{}[limits]\nmax_frame_size = 0\n[log]\nformat = \"xml\"\n\
             [auth]\nmode = \"jwt\"\n[[auth.keys]]\nkid = \"gone\"\nalgorithm = \"ES256\"\npublic_key_file = {:?}\n",
            tls_config(&garbage, &key_a),
            missing_pem.display().to_string()
        ),
    )
    .expect("config");
    let (code, stderr) = check_config(&file);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("4 problems"), "{stderr}");
    for field in [
        "limits.max_frame_size: ",
        "log.format: ",
        "auth.keys[0].public_key_file ",
        "tls.cert: ",
    ] {
        assert!(
            stderr.lines().any(|l| l.starts_with(field)),
            "no line starts with {field}:\n{stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
