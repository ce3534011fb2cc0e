//! Authentication end to end: real gateway processes with `[auth] mode =
//! "jwt"` (an HS256 key and an ES256 key made at test time), clients of the
//! SDK over WebSocket and QUIC.
//!
//! Each rule of docs/auth.md is exercised once: every refusal code of a bad
//! token, the grant on SUBSCRIBE/PUBLISH, the resume owner check, failed
//! attempts per source, key rotation by reload, token refresh with no loss,
//! and a refresh that never came (409, then a resume with a fresh token).
//! Every test is bounded by [`TEST`].

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ferry_protocol::client::{
    Client, ClientConfig, ClientError, Event, Events, TlsTrust, TokenProvider, Transport,
};
use ferry_protocol::{ErrorCode, Frame, Hello, ResumeRequest, WelcomeOutcome};
use ferry_tests::gateway_bin;
use ferry_tests::harness::{Gateway, GatewayOptions};
use ferry_tests::raw::RawClient;
use gateway::auth::{Algorithm, KeySpec, MintClaims, mint_token};

/// Bound on a whole test.
const TEST: Duration = Duration::from_secs(10);
/// Bound on waiting for one event.
const STEP: Duration = Duration::from_secs(5);
const AUDIENCE: &str = "ferry-tests";
const HOUR: Duration = Duration::from_secs(3600);
const BOTH: [Transport; 2] = [Transport::Ws, Transport::Quic];
/// For the tests that fail on purpose many times from 127.0.0.1.
const MANY_FAILURES: &str = "failed_attempts_per_minute = 1000";

async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(TEST, test)
        .await
        .expect("test took longer than 10 s")
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---- keys, configuration and tokens ---------------------------------------

/// The keys of one test: HS256 secrets derived from their kid, and one
/// ES256 pair generated now (its public key in a file, as configured).
struct Keys {
    dir: PathBuf,
    es_public: PathBuf,
    es_private_pem: String,
}

impl Keys {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ferry-auth-{name}-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let es_public = dir.join("es-1.pub.pem");
        std::fs::write(&es_public, pair.public_key_pem()).unwrap();
        Self {
            dir,
            es_public,
            es_private_pem: pair.serialize_pem(),
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn secret(kid: &str) -> String {
        format!("ferry-tests-hs256-secret-of-{kid}-0123456789")
    }

    fn hs(kid: &str) -> KeySpec {
        KeySpec {
            kid: kid.into(),
            algorithm: Algorithm::Hs256,
            secret: Some(Self::secret(kid)),
            public_key_pem: None,
        }
    }

    fn es(&self) -> KeySpec {
        KeySpec {
            kid: "es-1".into(),
            algorithm: Algorithm::Es256,
            secret: None,
            public_key_pem: Some(std::fs::read_to_string(&self.es_public).unwrap()),
        }
    }

    /// A configuration with these HS256 kids and the ES256 key, and
    /// `auth_extra` lines in `[auth]`.
    fn config(&self, hs_kids: &[&str], auth_extra: &str) -> String {
        let mut text = format!(
            "[auth]\nmode = \"jwt\"\naudience = \"{AUDIENCE}\"\n\
             refresh_before = \"2s\"\nrefresh_grace = \"1s\"\n{auth_extra}\n"
        );
        for kid in hs_kids {
            text.push_str(&format!(
                "[[auth.keys]]\nkid = \"{kid}\"\nalgorithm = \"HS256\"\nsecret = \"{}\"\n",
                Self::secret(kid)
            ));
        }
        text.push_str(&format!(
            "[[auth.keys]]\nkid = \"es-1\"\nalgorithm = \"ES256\"\npublic_key_file = {:?}\n",
            self.es_public.display().to_string()
        ));
        text
    }

    /// Writes the configuration file and returns its path.
    fn write_config(&self, hs_kids: &[&str], auth_extra: &str) -> PathBuf {
        let path = self.file("gateway.toml");
        std::fs::write(&path, self.config(hs_kids, auth_extra)).unwrap();
        path
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> u64 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) as u64
}

/// Claims for `sub`, valid for `ttl` from now, for this gateway's audience.
fn claims(sub: &str, ttl: Duration, subscribe: &[&str], publish: &[&str]) -> MintClaims {
    MintClaims {
        sub: sub.into(),
        ttl,
        subscribe: subscribe.iter().map(|s| (*s).to_owned()).collect(),
        publish: publish.iter().map(|s| (*s).to_owned()).collect(),
        audience: Some(AUDIENCE.into()),
        issuer: None,
        now_unix: now_unix(),
    }
}

/// An HS256 token of key `kid`.
fn hs_token(kid: &str, claims: &MintClaims) -> String {
    mint_token(&Keys::hs(kid), None, claims).unwrap()
}

/// A token for `sub` on every `chat:` channel, for an hour.
fn chat_token(sub: &str) -> String {
    hs_token("hs-1", &claims(sub, HOUR, &["chat:*"], &["chat:*"]))
}

fn start(config: &Path, workers: usize) -> Gateway {
    Gateway::start(
        gateway_bin!(),
        GatewayOptions::default().config(config).workers(workers),
    )
    .expect("gateway starts")
}

// ---- clients --------------------------------------------------------------

fn client_config(gw: &Gateway, transport: Transport, token: Option<String>) -> ClientConfig {
    let mut config = match transport {
        Transport::Quic => {
            let mut c = ClientConfig::new(Transport::Quic, gw.quic_url());
            c.tls = Some(TlsTrust::CaFile(gw.cert()));
            c.server_name = Some("localhost".into());
            c
        }
        _ => ClientConfig::new(Transport::Ws, gw.ws_url()),
    };
    config.token = token;
    config.reconnect.initial_backoff = Duration::from_millis(20);
    config.reconnect.max_backoff = Duration::from_millis(200);
    config.connect_timeout = Duration::from_secs(3);
    config
}

async fn connect(gw: &Gateway, transport: Transport, token: String) -> (Client, Events) {
    Client::connect(client_config(gw, transport, Some(token)))
        .await
        .unwrap_or_else(|e| panic!("{transport:?}: connect failed: {e}"))
}

/// The code a refused connection attempt reports.
async fn refused_code(gw: &Gateway, transport: Transport, token: Option<String>) -> u16 {
    match Client::connect(client_config(gw, transport, token)).await {
        Err(ClientError::Rejected { code, .. }) => code,
        Err(other) => panic!("{transport:?}: expected an ERROR, got {other}"),
        Ok(_) => panic!("{transport:?}: the token was accepted"),
    }
}

/// A provider that mints a fresh token on every call, counting the calls.
fn provider(mint: impl Fn(usize) -> Option<String> + Send + Sync + 'static) -> TokenProvider {
    let calls = AtomicUsize::new(0);
    Arc::new(move || {
        let token = mint(calls.fetch_add(1, Ordering::SeqCst));
        Box::pin(async move { token })
    })
}

/// Waits for the first event that `pred` accepts, skipping the others.
async fn wait_for(events: &mut Events, what: &str, mut pred: impl FnMut(&Event) -> bool) -> Event {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) if pred(&event) => return event,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("events ended while waiting for {what}"),
            Err(_) => panic!("no {what} within {STEP:?}"),
        }
    }
}

fn is_error(event: &Event, want: ErrorCode) -> bool {
    matches!(event, Event::ServerError { code, .. } if *code == want.as_u16())
}

async fn expect_message(events: &mut Events, channel: &str, payload: &str) {
    let event = wait_for(events, "a message", |e| matches!(e, Event::Message(_))).await;
    let Event::Message(m) = event else {
        unreachable!()
    };
    assert_eq!(
        (m.channel.as_str(), m.payload.as_ref()),
        (channel, payload.as_bytes())
    );
}

/// HELLO over a raw WebSocket; returns the connection and the answer.
async fn raw_hello(
    gw: &Gateway,
    token: &str,
    resume: Option<ResumeRequest>,
) -> (RawClient, Option<Frame>) {
    let mut c = RawClient::connect(&gw.ws_url(), Some("ferry.v1"))
        .await
        .unwrap();
    c.send(&Frame::Hello(Hello {
        version: 1,
        token: token.into(),
        resume,
    }))
    .await
    .unwrap();
    let first = c.recv().await.unwrap();
    (c, first)
}

// ---- the tests ------------------------------------------------------------

#[tokio::test]
async fn every_bad_token_is_refused_with_its_code_and_good_ones_connect() {
    bounded(async {
        let keys = Keys::new("codes");
        let gw = start(&keys.write_config(&["hs-1"], MANY_FAILURES), 2);
        let good = claims("alice", HOUR, &["chat:*"], &[]);
        let expired = MintClaims {
            now_unix: now_unix() - 2 * 3600,
            ..claims("alice", HOUR, &[], &[])
        };
        let other_audience = MintClaims {
            audience: Some("another-service".into()),
            ..good.clone()
        };
        let forged = mint_token(
            &KeySpec {
                secret: Some("not-the-configured-secret-0123456789abcdef".into()),
                ..Keys::hs("hs-1")
            },
            None,
            &good,
        )
        .unwrap();
        let other_es = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let forged_es = mint_token(
            &KeySpec {
                public_key_pem: None,
                ..keys.es()
            },
            Some(&other_es.serialize_pem()),
            &good,
        )
        .unwrap();
        let cases: [(Option<String>, ErrorCode); 7] = [
            (None, ErrorCode::TokenMissing),
            (Some("not-a-jwt".into()), ErrorCode::TokenMalformed),
            (Some(hs_token("hs-1", &expired)), ErrorCode::TokenExpired),
            (Some(forged), ErrorCode::TokenBadSignature),
            (Some(forged_es), ErrorCode::TokenBadSignature),
            (Some(hs_token("hs-9", &good)), ErrorCode::TokenBadSignature),
            (
                Some(hs_token("hs-1", &other_audience)),
                ErrorCode::TokenWrongAudience,
            ),
        ];
        for transport in BOTH {
            for (token, code) in &cases {
                assert_eq!(
                    refused_code(&gw, transport, token.clone()).await,
                    code.as_u16(),
                    "{transport:?}: {code:?}"
                );
            }
            // Both key types verify.
            let es = mint_token(&keys.es(), Some(&keys.es_private_pem), &good).unwrap();
            for token in [hs_token("hs-1", &good), es] {
                let (client, mut events) = connect(&gw, transport, token).await;
                wait_for(&mut events, "WELCOME", |e| {
                    matches!(
                        e,
                        Event::Connected {
                            outcome: WelcomeOutcome::New,
                            ..
                        }
                    )
                })
                .await;
                client.subscribe("chat:1").await.unwrap();
                client.close().await;
            }
        }
        // Refusals are counted by code.
        let ops = gw.ops_addr().unwrap();
        let metrics = ferry_tests::http::get(ops, "/metrics")
            .await
            .unwrap()
            .text();
        for name in ["token_missing", "token_expired", "token_bad_signature"] {
            assert!(
                metrics.contains(&format!("ferry_errors_total{{code=\"{name}\"}}")),
                "{name} not counted:\n{metrics}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn the_grant_limits_subscribe_and_publish_and_the_session_keeps_working() {
    bounded(async {
        let keys = Keys::new("grant");
        let gw = start(&keys.write_config(&["hs-1"], ""), 2);
        let backend = hs_token("hs-1", &claims("backend", HOUR, &[], &["user:*"]));
        let (backend, _backend_events) = connect(&gw, Transport::Ws, backend).await;
        for transport in BOTH {
            let user = format!("alice-{transport:?}");
            let (client, mut events) = connect(&gw, transport, chat_token(&user)).await;
            client.subscribe("chat:1").await.unwrap();

            let refused = client.subscribe("news:1").await;
            assert!(
                matches!(refused, Err(ClientError::Rejected { code: 405, .. })),
                "{refused:?}"
            );
            wait_for(&mut events, "405", |e| {
                is_error(e, ErrorCode::ForbiddenSubscribe)
            })
            .await;
            // Another user's channel is not in the grant; one's own is.
            let other = client.subscribe("user:bob").await;
            assert!(matches!(
                other,
                Err(ClientError::Rejected { code: 405, .. })
            ));
            let own = format!("user:{user}");
            client.subscribe(&own).await.unwrap();

            // A forbidden publish is answered 406 and counts as processed.
            for channel in ["news:1", own.as_str()] {
                let seq = client
                    .publish(channel, Bytes::from_static(b"no"))
                    .await
                    .unwrap();
                let event = wait_for(&mut events, "406", |e| {
                    is_error(e, ErrorCode::ForbiddenPublish)
                })
                .await;
                assert!(
                    matches!(event, Event::ServerError { reference, .. } if reference == seq),
                    "{event:?}"
                );
            }
            tokio::time::timeout(STEP, client.wait_acked())
                .await
                .unwrap()
                .unwrap();

            // The session carries on: publishes in the grant go through, and
            // the backend reaches the user's own channel.
            client
                .publish("chat:1", Bytes::from_static(b"hello"))
                .await
                .unwrap();
            expect_message(&mut events, "chat:1", "hello").await;
            backend
                .publish(&own, Bytes::from_static(b"direct"))
                .await
                .unwrap();
            expect_message(&mut events, &own, "direct").await;
            assert_eq!(client.stats().reconnects, 0);
            client.close().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_resume_with_another_users_token_is_refused_and_disturbs_nothing() {
    bounded(async {
        let keys = Keys::new("owner");
        let gw = start(&keys.write_config(&["hs-1"], ""), 2);
        let bob = chat_token("bob");

        // The SDK resumes after a dead transport with the provider's token:
        // bob's, for alice's session.
        for transport in BOTH {
            let mut config = client_config(&gw, transport, Some(chat_token("alice")));
            let bob = bob.clone();
            config.token_provider = Some(provider(move |_| Some(bob.clone())));
            let (client, mut events) = Client::connect(config).await.unwrap();
            client.subscribe("chat:owner").await.unwrap();
            client.kill_transport();
            wait_for(&mut events, "407", |e| {
                is_error(e, ErrorCode::IdentityMismatch)
            })
            .await;
        }

        // Raw, to watch alice's connection: bob's resumes (landing on either
        // worker) are refused while it stays attached and served.
        let alice = chat_token("alice");
        let (mut conn, first) = raw_hello(&gw, &alice, None).await;
        let Some(Frame::Welcome(welcome)) = first else {
            panic!("expected WELCOME, got {first:?}");
        };
        let resume = ResumeRequest {
            session_id: welcome.session_id,
            secret: welcome.resume_secret,
            last_received_seq: 0,
        };
        for nonce in 1..=4 {
            let (mut intruder, answer) = raw_hello(&gw, &bob, Some(resume.clone())).await;
            assert!(
                matches!(answer, Some(Frame::Error { code: 407, .. })),
                "{answer:?}"
            );
            assert!(intruder.is_closed_by_server().await);
            conn.send(&Frame::Ping { nonce }).await.unwrap();
            assert_eq!(conn.recv().await.unwrap(), Some(Frame::Pong { nonce }));
        }
        // Alice herself resumes it with her token.
        conn.kill();
        let (_conn, answer) = raw_hello(&gw, &alice, Some(resume)).await;
        assert!(
            matches!(&answer, Some(Frame::Welcome(w)) if w.outcome == WelcomeOutcome::Resumed),
            "{answer:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn repeated_failures_from_one_address_get_408_even_with_a_good_token() {
    bounded(async {
        let keys = Keys::new("attempts");
        // One worker: the table is per worker.
        let gw = start(
            &keys.write_config(&["hs-1"], "failed_attempts_per_minute = 3"),
            1,
        );
        for _ in 0..3 {
            assert_eq!(
                refused_code(&gw, Transport::Ws, Some("garbage".into())).await,
                ErrorCode::TokenMalformed.as_u16()
            );
        }
        for transport in BOTH {
            assert_eq!(
                refused_code(&gw, transport, Some(chat_token("alice"))).await,
                ErrorCode::AuthRateLimited.as_u16(),
                "{transport:?}"
            );
        }
    })
    .await;
}

/// Sends SIGHUP and waits until the reload is logged (`needle`) once more.
fn reload(gw: &Gateway, needle: &str) {
    let before = gw.log().matches(needle).count();
    gw.signal(libc::SIGHUP);
    gw.wait_for_log(needle, before + 1).unwrap();
}

/// Tries to connect until the outcome is `want` (Ok: 0, else the code):
/// the workers apply a reload just after it is logged.
async fn eventually_connect(gw: &Gateway, transport: Transport, token: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let got = match Client::connect(client_config(gw, transport, Some(token.into()))).await {
            Ok((client, _)) => {
                client.close().await;
                0
            }
            Err(ClientError::Rejected { code, .. }) => code,
            Err(e) => panic!("{transport:?}: {e}"),
        };
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{transport:?}: still {got}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn keys_rotate_on_reload_and_a_bad_key_file_keeps_the_running_keys() {
    bounded(async {
        let keys = Keys::new("rotate");
        let config = keys.write_config(&["hs-1"], MANY_FAILURES);
        let gw = start(&config, 2);
        let old = chat_token("alice");
        let new = hs_token("hs-2", &claims("alice", HOUR, &["chat:*"], &[]));
        assert_eq!(
            refused_code(&gw, Transport::Ws, Some(new.clone())).await,
            403
        );

        // Add hs-2: its tokens connect, hs-1's still do.
        std::fs::write(&config, keys.config(&["hs-1", "hs-2"], MANY_FAILURES)).unwrap();
        reload(&gw, "configuration reloaded");
        for transport in BOTH {
            eventually_connect(&gw, transport, &new, 0).await;
            eventually_connect(&gw, transport, &old, 0).await;
        }

        // Remove hs-1: its tokens are refused from now on.
        std::fs::write(&config, keys.config(&["hs-2"], MANY_FAILURES)).unwrap();
        reload(&gw, "configuration reloaded");
        for transport in BOTH {
            eventually_connect(&gw, transport, &old, 403).await;
            eventually_connect(&gw, transport, &new, 0).await;
        }

        // A key file that cannot be read fails the reload, naming the file;
        // the running keys stay.
        let missing = keys.file("missing.pem");
        let broken = keys.config(&["hs-1"], MANY_FAILURES).replace(
            &format!("{:?}", keys.es_public.display().to_string()),
            &format!("{:?}", missing.display().to_string()),
        );
        std::fs::write(&config, broken).unwrap();
        reload(&gw, "reload failed");
        assert!(gw.log().contains(&missing.display().to_string()));
        eventually_connect(&gw, Transport::Ws, &new, 0).await;
        eventually_connect(&gw, Transport::Ws, &old, 403).await;
    })
    .await;
}

/// Runs the gateway binary with `args` to its end (at most 5 s).
fn run_gateway(args: &[&str]) -> std::process::Output {
    let mut child = Command::new(gateway_bin!())
        .args(args)
        .env_remove("FERRY_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gateway {args:?} still running after 5 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_key_file_that_cannot_be_read_stops_the_start_with_exit_2() {
    let keys = Keys::new("start");
    let missing = keys.file("nowhere.pem");
    let text = keys.config(&["hs-1"], "").replace(
        &format!("{:?}", keys.es_public.display().to_string()),
        &format!("{:?}", missing.display().to_string()),
    );
    let config = keys.file("broken.toml");
    std::fs::write(&config, text).unwrap();
    let config = config.display().to_string();
    let data_dir = keys.file("data").display().to_string();

    let started = run_gateway(&[
        "--config",
        &config,
        "--ws",
        "127.0.0.1:0",
        "--quic",
        "127.0.0.1:0",
        "--ops",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir,
    ]);
    let checked = run_gateway(&["check-config", &config]);
    for out in [started, checked] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        for needle in [
            "auth.keys[1].public_key_file",
            "\"es-1\"",
            missing.display().to_string().as_str(),
        ] {
            assert!(stderr.contains(needle), "{needle} missing in:\n{stderr}");
        }
    }
}

#[tokio::test]
async fn the_token_subcommand_mints_tokens_the_gateway_accepts() {
    bounded(async {
        let keys = Keys::new("subcommand");
        let config = keys.write_config(&["hs-1"], "");
        let private = keys.file("es-1.key.pem");
        std::fs::write(&private, &keys.es_private_pem).unwrap();
        let (config, private) = (config.display().to_string(), private.display().to_string());
        let gw = start(Path::new(&config), 2);

        let base = [
            "token", "--config", &config, "--sub", "carol", "--ttl", "10m",
        ];
        let hs =
            run_gateway(&[&base[..], &["--subscribe", "chat:*", "--publish", "chat:*"]].concat());
        let es = run_gateway(&[&base[..], &["--kid", "es-1", "--private-key", &private]].concat());
        for (out, transport) in [(hs, Transport::Ws), (es, Transport::Quic)] {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
            let (client, _events) = connect(&gw, transport, token).await;
            // The grant is what the command line said.
            let news = client.subscribe("news:1").await;
            assert!(matches!(news, Err(ClientError::Rejected { code: 405, .. })));
            client.close().await;
        }

        // Mistakes are explained.
        for (args, needle) in [
            (vec!["--kid", "es-1"], "--private-key"),
            (vec!["--kid", "nope"], "no key has kid \"nope\""),
            (vec!["--subscribe", "bad pattern"], "token claims"),
        ] {
            let out = run_gateway(&[&base[..], &args[..]].concat());
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{stderr}");
            assert!(stderr.contains(needle), "{needle} missing in:\n{stderr}");
        }
    })
    .await;
}

/// Publishes `count` numbered messages on `channel` while tokens expire
/// and are refreshed, and checks each arrives once, in order, on the same
/// connection.
async fn publish_through_refreshes(gw: &Gateway, transport: Transport, count: usize) {
    let user = format!("refresher-{transport:?}");
    let channel = format!("chat:refresh-{transport:?}");
    let short = |user: &str| {
        hs_token(
            "hs-1",
            &claims(user, Duration::from_secs(3), &["chat:*"], &["chat:*"]),
        )
    };
    let refreshes = Arc::new(AtomicUsize::new(0));
    let mut config = client_config(gw, transport, Some(short(&user)));
    let (who, counted) = (user.clone(), refreshes.clone());
    config.token_provider = Some(provider(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        Some(short(&who))
    }));
    let (client, mut events) = Client::connect(config).await.unwrap();
    let session = client.session_id();
    client.subscribe(&channel).await.unwrap();

    let mut received = Vec::with_capacity(count);
    let mut next_publish = tokio::time::interval(Duration::from_millis(40));
    let mut published = 0;
    while received.len() < count {
        tokio::select! {
            _ = next_publish.tick(), if published < count => {
                client.publish(&channel, Bytes::from(published.to_string())).await.unwrap();
                published += 1;
            }
            event = tokio::time::timeout(STEP, events.recv()) => match event.unwrap().unwrap() {
                Event::Message(m) => received.push(String::from_utf8(m.payload.to_vec()).unwrap()),
                Event::Connected { .. } => {}
                other => panic!("{transport:?}: unexpected {other:?}"),
            },
        }
    }
    let want: Vec<String> = (0..count).map(|i| i.to_string()).collect();
    assert_eq!(received, want, "{transport:?}");
    assert!(
        refreshes.load(Ordering::SeqCst) >= 2,
        "{transport:?}: only {} refreshes",
        refreshes.load(Ordering::SeqCst)
    );
    assert_eq!(client.session_id(), session);
    assert_eq!(client.stats().reconnects, 0, "{transport:?}");
    client.close().await;
}

#[tokio::test]
async fn refresh_before_expiry_keeps_the_session_with_no_loss() {
    bounded(async {
        let keys = Keys::new("refresh");
        // refresh_before = 2s, refresh_grace = 1s; tokens live 3 s, so one
        // is asked for about every second, and the run outlives several.
        let gw = start(&keys.write_config(&["hs-1"], ""), 2);
        tokio::join!(
            publish_through_refreshes(&gw, Transport::Ws, 125),
            publish_through_refreshes(&gw, Transport::Quic, 125),
        );
    })
    .await;
}

/// A 1 s token is asked to be refreshed at once; the provider declines, so
/// 409 closes the connection. The provider's next token (for the
/// reconnect) resumes the session, which missed nothing meanwhile.
async fn expire_then_resume(gw: &Gateway, transport: Transport) {
    let user = format!("sleeper-{transport:?}");
    let channel = format!("chat:expiry-{transport:?}");
    let short = hs_token(
        "hs-1",
        &claims(&user, Duration::from_secs(1), &["chat:*"], &[]),
    );
    let mut config = client_config(gw, transport, Some(short));
    let fresh = chat_token(&user);
    config.token_provider = Some(provider(move |call| (call > 0).then(|| fresh.clone())));
    let (client, mut events) = Client::connect(config).await.unwrap();
    let session = client.session_id();
    client.subscribe(&channel).await.unwrap();

    wait_for(&mut events, "409", |e| {
        is_error(e, ErrorCode::TokenRefreshTimeout)
    })
    .await;
    let (publisher, _) = connect(gw, Transport::Ws, chat_token("publisher")).await;
    publisher
        .publish(&channel, Bytes::from_static(b"while away"))
        .await
        .unwrap();
    tokio::time::timeout(STEP, publisher.wait_acked())
        .await
        .unwrap()
        .unwrap();
    wait_for(&mut events, "the resume", |e| {
        matches!(
            e,
            Event::Connected {
                outcome: WelcomeOutcome::Resumed,
                ..
            }
        )
    })
    .await;
    assert_eq!(client.session_id(), session);
    expect_message(&mut events, &channel, "while away").await;
    publisher.close().await;
    client.close().await;
}

#[tokio::test]
async fn expiry_without_refresh_closes_with_409_and_a_fresh_token_resumes() {
    bounded(async {
        let keys = Keys::new("expiry");
        let gw = start(&keys.write_config(&["hs-1"], ""), 2);
        tokio::join!(
            expire_then_resume(&gw, Transport::Ws),
            expire_then_resume(&gw, Transport::Quic),
        );
    })
    .await;
}

/// A token whose `exp` is at least 2^63 seconds away: validly signed, and
/// beyond what the gateway's monotonic clock can add.
fn far_future_token(sub: &str) -> String {
    hs_token(
        "hs-1",
        &claims(sub, Duration::from_secs(1 << 63), &["chat:*"], &["chat:*"]),
    )
}

/// Finding 5 of issue 13: an `exp` ≥ 2^63 overflowed an `Instant` and
/// panicked the connection task, at HELLO and on a mid-session TOKEN (which
/// left the session attached to a dead connection).
#[tokio::test]
async fn a_far_future_exp_is_accepted_at_hello_and_mid_session() {
    bounded(async {
        let keys = Keys::new("far-exp");
        let gw = start(&keys.write_config(&["hs-1"], ""), 2);
        let channel = "chat:far";
        let (listener, mut heard) = connect(&gw, Transport::Ws, chat_token("listener")).await;
        listener.subscribe(channel).await.unwrap();

        // HELLO with such a token: the connection works.
        for transport in BOTH {
            let (client, _events) = connect(&gw, transport, far_future_token("far")).await;
            let payload = format!("hello over {transport:?}");
            client
                .publish(channel, Bytes::from(payload.clone()))
                .await
                .unwrap();
            tokio::time::timeout(STEP, client.wait_acked())
                .await
                .unwrap()
                .unwrap();
            expect_message(&mut heard, channel, &payload).await;
            client.close().await;
        }

        // TOKEN mid-session, raw: the connection answers afterwards.
        let (mut raw, welcome) = raw_hello(&gw, &chat_token("mid"), None).await;
        assert!(matches!(welcome, Some(Frame::Welcome(_))), "{welcome:?}");
        raw.send(&Frame::Token {
            token: far_future_token("mid"),
        })
        .await
        .unwrap();
        raw.send(&Frame::Ping { nonce: 7 }).await.unwrap();
        let pong = tokio::time::timeout(STEP, async {
            loop {
                match raw.recv().await.unwrap() {
                    Some(Frame::Pong { nonce }) => return Some(nonce),
                    Some(_) => continue,
                    None => return None,
                }
            }
        })
        .await
        .expect("no PONG after the TOKEN");
        assert_eq!(pong, Some(7), "the connection died after the TOKEN");

        // TOKEN mid-session through the SDK's refresh, on both transports.
        tokio::join!(
            refresh_to_a_far_future_token(&gw, Transport::Ws),
            refresh_to_a_far_future_token(&gw, Transport::Quic),
        );
        // The other session was never disturbed.
        listener
            .publish(channel, Bytes::from_static(b"still here"))
            .await
            .unwrap();
        expect_message(&mut heard, channel, "still here").await;
        listener.close().await;
    })
    .await;
}

/// A 1 s token is refreshed at once with a far-future one; past the old
/// token's grace the session goes on, on the same connection.
async fn refresh_to_a_far_future_token(gw: &Gateway, transport: Transport) {
    let user = format!("refreshed-{transport:?}");
    let channel = format!("chat:far-{transport:?}");
    let short = hs_token(
        "hs-1",
        &claims(&user, Duration::from_secs(1), &["chat:*"], &["chat:*"]),
    );
    let mut config = client_config(gw, transport, Some(short));
    let far = far_future_token(&user);
    let asked = Arc::new(AtomicUsize::new(0));
    let counted = asked.clone();
    config.token_provider = Some(provider(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        Some(far.clone())
    }));
    let (client, mut events) = Client::connect(config).await.unwrap();
    let session = client.session_id();
    client.subscribe(&channel).await.unwrap();
    let deadline = Instant::now() + STEP;
    while asked.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "{transport:?}: no REFRESH_TOKEN");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Past the 1 s token's expiry and its grace (refresh_grace = 1s).
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let payload = format!("after the refresh over {transport:?}");
    client
        .publish(&channel, Bytes::from(payload.clone()))
        .await
        .unwrap();
    expect_message(&mut events, &channel, &payload).await;
    assert_eq!(client.session_id(), session, "{transport:?}");
    assert_eq!(client.stats().reconnects, 0, "{transport:?}");
    client.close().await;
}
