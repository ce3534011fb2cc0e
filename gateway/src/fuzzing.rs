//! The bodies of the fuzz targets in `fuzz/` (cargo-fuzz), here so that the
//! normal test suite runs them too, as bounded property tests and over the
//! committed seed corpora: CI has no nightly toolchain for libFuzzer.
//!
//! | target | input | entry points |
//! | --- | --- | --- |
//! | [`jwt`] | a token, or header and claims JSON signed with a test key | [`Authenticator::verify`], then [`Credentials`] with the identity |
//! | [`upgrade_wire`] | one control message body | [`ControlFrame::decode`], and back through `encode` |
//! | [`handshake`] | the bytes a client sends on a fresh TCP connection | tungstenite's HTTP upgrade with [`answer_upgrade`], then [`parse_hello`] on the first message |
//!
//! Each returns normally for any input; a panic (or a failed assertion of
//! an invariant) is a finding. Only built for tests and with the `fuzzing`
//! feature, so the test keys never reach a release binary.

use std::io::{Cursor, Read, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::{Buf, Bytes};
use ferry_protocol::DecodeLimits;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::auth::jwt::MAX_SUBJECT_LEN;
use crate::auth::keys::SigningKey;
use crate::auth::{Algorithm, AuthSettings, Authenticator, KeySpec};
use crate::session::credentials::{Credentials, RefreshPolicy};
use crate::session::handshake::parse_hello;
use crate::transport::ws::answer_upgrade;
use crate::upgrade::wire::ControlFrame;

/// The fuzzers' "now" (2023-11-14), in Unix seconds.
pub const NOW: u64 = 1_700_000_000;
/// The HS256 key the JWT target signs with (kid `hs`).
const SECRET: &str = "fuzzing-secret-of-at-least-32-bytes!!";
/// TEST-ONLY RSA public key, so that RS256 key selection is exercised.
const RSA_PUBLIC: &str = include_str!("auth/testdata/TEST-ONLY-rsa2048-public.pem");

fn authenticator() -> &'static Authenticator {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    AUTH.get_or_init(|| {
        let keys = vec![
            KeySpec {
                kid: "hs".into(),
                algorithm: Algorithm::Hs256,
                secret: Some(SECRET.into()),
                public_key_pem: None,
            },
            KeySpec {
                kid: "rs".into(),
                algorithm: Algorithm::Rs256,
                secret: None,
                public_key_pem: Some(RSA_PUBLIC.into()),
            },
        ];
        match Authenticator::new(&AuthSettings {
            keys,
            audience: Some("ferry".into()),
            ..AuthSettings::default()
        }) {
            Ok(auth) => auth,
            Err(e) => panic!("the fuzzing keys are valid: {e}"),
        }
    })
}

/// `header.claims.signature`, signed with the fuzzing HS256 key.
pub fn signed_token(header: &[u8], claims: &[u8]) -> String {
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(claims, &mut token);
    let signature = SigningKey::hmac(SECRET.as_bytes())
        .sign(token.as_bytes())
        .unwrap_or_default();
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    token
}

/// The JWT verifier. The first byte picks what the rest is:
/// - `0`: a whole token, as text;
/// - `1`: claims JSON under a valid header, signed with the fuzzing key,
///   so that the claim checks run;
/// - else: header JSON and claims JSON split at the first `0xff`, signed.
///
/// A verified identity then starts a refresh timeline and replaces it, as a
/// HELLO and a mid-session TOKEN do (issue 13, finding 5).
pub fn jwt(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = match mode {
        0 => String::from_utf8_lossy(rest).into_owned(),
        1 => signed_token(br#"{"alg":"HS256","kid":"hs"}"#, rest),
        _ => match rest.iter().position(|&b| b == 0xff) {
            Some(at) => signed_token(&rest[..at], &rest[at + 1..]),
            None => signed_token(rest, b"{}"),
        },
    };
    let auth = authenticator();
    let first = auth.verify(&token, NOW);
    assert_eq!(first, auth.verify(&token, NOW), "verify is deterministic");
    let identity = match first {
        Ok(identity) => identity,
        Err(e) => {
            // Every refusal maps to a code of the 40x group.
            assert_eq!(e.code().as_u16() / 100, 4, "{e:?}");
            return;
        }
    };
    assert!(!identity.user.is_empty() && identity.user.len() <= MAX_SUBJECT_LEN);
    let now = Instant::now();
    let now_unix = Duration::from_secs(NOW);
    let policy = RefreshPolicy {
        before: Duration::from_secs(60),
        grace: Duration::from_secs(30),
    };
    let mut credentials = Credentials::new(identity.clone(), now_unix, now);
    let _ = credentials.next_timeout(policy);
    let _ = credentials.handle_timeout(now, policy);
    assert!(credentials.replace(identity, now_unix, now).is_ok());
    let _ = credentials.next_timeout(policy);
}

/// The upgrade control-message decoder. An accepted message re-encodes to
/// a body that decodes, and encodes again to the same bytes.
pub fn upgrade_wire(data: &[u8]) {
    let Ok(frame) = ControlFrame::decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    let mut once = frame.encode();
    let len = once.get_u32() as usize;
    assert_eq!(len, once.len(), "length prefix");
    let again = match ControlFrame::decode(once.clone()) {
        Ok(again) => again,
        Err(e) => panic!("a re-encoded {frame:?} does not decode: {e}"),
    };
    let mut twice = again.encode();
    twice.advance(4);
    assert_eq!(once, twice, "encode∘decode is stable");
}

/// A socket that reads the fuzz input and swallows what is written. Like a
/// client, it sends the HTTP request (up to the first blank line) and
/// the rest only once the server has answered.
struct Scripted {
    input: Cursor<Vec<u8>>,
    /// Where the request ends: nothing past it is read before an answer.
    request_end: usize,
    written: usize,
}

impl Read for Scripted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let at = usize::try_from(self.input.position()).unwrap_or(usize::MAX);
        let limit = if self.written == 0 {
            self.request_end.saturating_sub(at).min(buf.len())
        } else {
            buf.len()
        };
        self.input.read(&mut buf[..limit])
    }
}

impl Write for Scripted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.written = self.written.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The frame limit of the handshake target (small, so oversize paths run).
const HANDSHAKE_LIMIT: usize = 4096;
/// Messages read after the upgrade at most (the first binary one is HELLO).
const MAX_MESSAGES: usize = 4;

/// The WebSocket handshake as a client drives it: the HTTP upgrade request
/// (tungstenite's parser, our [`answer_upgrade`] for path and subprotocol),
/// then the first binary message through [`parse_hello`]. Returns whether a
/// HELLO was accepted.
pub fn handshake(data: &[u8]) -> bool {
    let request_end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(data.len(), |at| at + 4);
    let stream = Scripted {
        input: Cursor::new(data.to_vec()),
        request_end,
        written: 0,
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(HANDSHAKE_LIMIT))
        .max_frame_size(Some(HANDSHAKE_LIMIT));
    let mut ferry = false;
    // tungstenite fixes the callback's error type to a full HTTP response.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| {
        let (response, offered) = answer_upgrade(request, response, "/ws")?;
        ferry = offered;
        Ok(response)
    };
    let Ok(mut ws) = tungstenite::accept_hdr_with_config(stream, callback, Some(config)) else {
        return false;
    };
    if !ferry {
        return false;
    }
    let limits = DecodeLimits {
        max_frame_size: HANDSHAKE_LIMIT,
        ..DecodeLimits::default()
    };
    for _ in 0..MAX_MESSAGES {
        match ws.read() {
            Ok(Message::Binary(first)) => {
                return match parse_hello(first, &limits) {
                    Ok(hello) => {
                        assert_eq!(hello.version, ferry_protocol::frame::PROTOCOL_VERSION);
                        true
                    }
                    Err(_) => false,
                };
            }
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
            Ok(Message::Text(_) | Message::Close(_)) | Err(_) => return false,
        }
    }
    false
}

/// Test inputs shared by the seed corpora and the unit tests.
pub mod seeds {
    use ferry_protocol::{Frame, Hello};

    /// An HTTP upgrade request for `/ws` offering `ferry.v1`.
    pub fn upgrade_request() -> Vec<u8> {
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Protocol: ferry.v1\r\n\r\n"
            .to_vec()
    }

    /// One masked binary WebSocket frame carrying `payload`, as a client
    /// sends it.
    pub fn masked_binary(payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = vec![0x82];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// The upgrade request followed by a HELLO with `token`.
    pub fn upgrade_and_hello(token: &str) -> Vec<u8> {
        let hello = Frame::Hello(Hello {
            version: 1,
            token: token.into(),
            resume: None,
        });
        let mut out = upgrade_request();
        out.extend(masked_binary(&hello.to_bytes()));
        out
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Cases per property: bounded, so the suite stays fast.
    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// Every committed seed of `fuzz/seeds/<target>/`.
    fn seeds(target: &str) -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/seeds")
            .join(target);
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            out.push(std::fs::read(entry.unwrap().path()).unwrap());
        }
        assert!(!out.is_empty(), "no seeds in {}", dir.display());
        out
    }

    #[test]
    fn the_jwt_seeds_run() {
        for seed in seeds("jwt") {
            jwt(&seed);
        }
    }

    #[test]
    fn the_upgrade_wire_seeds_run_and_most_decode() {
        let seeds = seeds("upgrade_wire");
        let decoded = seeds
            .iter()
            .filter(|s| ControlFrame::decode(Bytes::copy_from_slice(s)).is_ok())
            .count();
        assert!(decoded * 2 > seeds.len(), "{decoded} of {}", seeds.len());
        for seed in seeds {
            upgrade_wire(&seed);
        }
    }

    #[test]
    fn the_handshake_seeds_run_and_the_good_one_is_accepted() {
        assert!(handshake(&seeds::upgrade_and_hello("")));
        for seed in seeds("handshake") {
            handshake(&seed);
        }
    }

    #[test]
    fn a_far_future_exp_goes_through_the_jwt_target() {
        // Finding 5 of issue 13 is what this target finds on the old code.
        let mut input = vec![1];
        input.extend_from_slice(br#"{"sub":"a","aud":"ferry","exp":18446744073709551615}"#);
        jwt(&input);
    }

    /// Writes the seed corpora of `fuzz/seeds/{jwt,upgrade_wire,handshake}`:
    /// `cargo test -p gateway --lib fuzzing -- --ignored regenerate_seeds`.
    #[test]
    #[ignore = "writes fuzz/seeds; run by hand after a format change"]
    fn regenerate_seeds() {
        use ferry_protocol::replay_log::Entry;
        use ferry_protocol::{ChannelName, ResumeSecret, SessionId};

        use crate::session::state::SessionSnapshot;
        use crate::upgrade::wire::{ChannelSnapshot, WIRE_VERSION};

        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
        let write = |target: &str, name: &str, bytes: &[u8]| {
            let dir = root.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), bytes).unwrap();
        };

        let exp = NOW + 3600;
        let claims = format!(
            r#"{{"sub":"alice","aud":"ferry","exp":{exp},"iat":{NOW},"ferry":{{"subscribe":["chat:*"],"publish":["chat:lobby"]}}}}"#
        );
        let header = br#"{"alg":"HS256","typ":"JWT","kid":"hs"}"#;
        let valid = signed_token(header, claims.as_bytes());
        let with_mode = |mode: u8, rest: &[u8]| [&[mode][..], rest].concat();
        write("jwt", "token_valid", &with_mode(0, valid.as_bytes()));
        write("jwt", "token_not_a_jwt", &with_mode(0, b"not-a-jwt"));
        write(
            "jwt",
            "token_alg_none",
            &with_mode(
                0,
                format!(
                    "{}.{}.",
                    URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"hs"}"#),
                    URL_SAFE_NO_PAD.encode(&claims)
                )
                .as_bytes(),
            ),
        );
        write(
            "jwt",
            "token_rs256_kid",
            &with_mode(
                0,
                signed_token(br#"{"alg":"RS256","kid":"rs"}"#, claims.as_bytes()).as_bytes(),
            ),
        );
        write("jwt", "claims_valid", &with_mode(1, claims.as_bytes()));
        write(
            "jwt",
            "claims_far_future_exp",
            &with_mode(1, br#"{"sub":"a","aud":"ferry","exp":9223372036854775808}"#),
        );
        write(
            "jwt",
            "claims_fractional_dates",
            &with_mode(
                1,
                format!(r#"{{"sub":"a","aud":["x","ferry"],"exp":{exp}.5,"nbf":{NOW}.25}}"#)
                    .as_bytes(),
            ),
        );
        write(
            "jwt",
            "claims_bad_grant",
            &with_mode(
                1,
                format!(
                    r#"{{"sub":"a","aud":"ferry","exp":{exp},"ferry":{{"subscribe":["*x"]}}}}"#
                )
                .as_bytes(),
            ),
        );
        write(
            "jwt",
            "header_and_claims",
            &[&[2][..], &header[..], &[0xff], claims.as_bytes()].concat(),
        );
        write(
            "jwt",
            "header_crit",
            &[
                &[2][..],
                br#"{"alg":"HS256","kid":"hs","crit":["x"]}"#,
                &[0xff],
                claims.as_bytes(),
            ]
            .concat(),
        );

        let channel = ChannelName::parse("chat:1").unwrap();
        let snapshot = SessionSnapshot {
            id: SessionId([1; 16]),
            secret: ResumeSecret([2; 32]),
            user: Some("alice".into()),
            last_seq: 9,
            acked: 7,
            entries: vec![Entry {
                seq: 8,
                channel: channel.clone(),
                channel_offset: 40,
                payload: Bytes::from_static(b"hello"),
            }],
            overflowed: false,
            last_client_seq: 3,
            subscriptions: vec![(channel.clone(), 41)],
        };
        let frames = [
            (
                "hello",
                ControlFrame::Hello {
                    version: WIRE_VERSION,
                },
            ),
            (
                "listeners",
                ControlFrame::Listeners {
                    reset_key: [7; 32],
                    ws: 2,
                    wss: 1,
                    quic: 2,
                },
            ),
            (
                "pull",
                ControlFrame::Pull {
                    id: SessionId([3; 16]),
                    secret: ResumeSecret([4; 32]),
                },
            ),
            (
                "pulled_none",
                ControlFrame::Pulled {
                    id: SessionId([3; 16]),
                    snapshot: None,
                },
            ),
            (
                "pulled_some",
                ControlFrame::Pulled {
                    id: SessionId([1; 16]),
                    snapshot: Some(Box::new(snapshot.clone())),
                },
            ),
            (
                "channels",
                ControlFrame::Channels(vec![ChannelSnapshot {
                    channel: channel.clone(),
                    last_offset: 41,
                    history: vec![
                        (40, Bytes::from_static(b"a")),
                        (41, Bytes::from_static(b"bb")),
                    ],
                }]),
            ),
            (
                "sessions",
                ControlFrame::Sessions(vec![
                    snapshot.clone(),
                    SessionSnapshot {
                        user: None,
                        overflowed: true,
                        ..snapshot
                    },
                ]),
            ),
            ("done", ControlFrame::Done { sessions: 2 }),
            ("committed", ControlFrame::Committed),
            (
                "abort",
                ControlFrame::Abort {
                    reason: "deadline".into(),
                },
            ),
        ];
        for (name, frame) in frames {
            let mut bytes = frame.encode();
            bytes.advance(4);
            write("upgrade_wire", name, &bytes);
        }
        write("upgrade_wire", "unknown_type", &[99]);

        write(
            "handshake",
            "upgrade_and_hello",
            &seeds::upgrade_and_hello(""),
        );
        write(
            "handshake",
            "upgrade_and_hello_with_token",
            &seeds::upgrade_and_hello(&valid),
        );
        let mut resume = seeds::upgrade_request();
        resume.extend(seeds::masked_binary(
            &ferry_protocol::Frame::Hello(ferry_protocol::Hello {
                version: 1,
                token: String::new(),
                resume: Some(ferry_protocol::ResumeRequest {
                    session_id: SessionId([1; 16]),
                    secret: ResumeSecret([2; 32]),
                    last_received_seq: 7,
                }),
            })
            .to_bytes(),
        ));
        write("handshake", "upgrade_and_resume", &resume);
        let mut wrong_version = seeds::upgrade_request();
        wrong_version.extend(seeds::masked_binary(
            &ferry_protocol::Frame::Hello(ferry_protocol::Hello {
                version: 9,
                token: String::new(),
                resume: None,
            })
            .to_bytes(),
        ));
        write("handshake", "hello_of_another_version", &wrong_version);
        let mut ping_first = seeds::upgrade_request();
        ping_first.extend(seeds::masked_binary(
            &ferry_protocol::Frame::Ping { nonce: 1 }.to_bytes(),
        ));
        write("handshake", "ping_instead_of_hello", &ping_first);
        write(
            "handshake",
            "wrong_path",
            &String::from_utf8_lossy(&seeds::upgrade_and_hello(""))
                .replacen("/ws", "/other", 1)
                .into_bytes(),
        );
        write(
            "handshake",
            "other_subprotocol",
            &String::from_utf8_lossy(&seeds::upgrade_request())
                .replace("ferry.v1", "chat")
                .into_bytes(),
        );
        write(
            "handshake",
            "plain_http",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        );
    }

    fn mutate(seed: &[u8], edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
        let mut out = seed.to_vec();
        for &(at, byte) in edits {
            if !out.is_empty() {
                let i = at % out.len();
                out[i] = byte;
            }
        }
        out.truncate(out.len().saturating_sub(cut % 8));
        out
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn jwt_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            jwt(&data);
        }

        #[test]
        fn jwt_claims_never_panic(
            sub in "[a-z]{0,4}",
            exp in any::<u64>(),
            nbf in proptest::option::of(any::<i64>()),
            extra in "[ -~]{0,40}",
        ) {
            let nbf = nbf.map(|n| format!(r#","nbf":{n}"#)).unwrap_or_default();
            let claims = format!(r#"{{"sub":"{sub}","aud":"ferry","exp":{exp}{nbf}{extra}}}"#);
            let mut input = vec![1];
            input.extend_from_slice(claims.as_bytes());
            jwt(&input);
        }

        #[test]
        fn upgrade_wire_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            upgrade_wire(&data);
        }

        #[test]
        fn upgrade_wire_mutated_seeds_never_panic(
            which in any::<usize>(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
            cut in any::<usize>(),
        ) {
            let seeds = seeds("upgrade_wire");
            upgrade_wire(&mutate(&seeds[which % seeds.len()], &edits, cut));
        }

        #[test]
        fn handshake_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            handshake(&data);
        }

        #[test]
        fn handshake_mutated_seeds_never_panic(
            which in any::<usize>(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
            cut in any::<usize>(),
        ) {
            let seeds = seeds("handshake");
            handshake(&mutate(&seeds[which % seeds.len()], &edits, cut));
        }
    }
}
