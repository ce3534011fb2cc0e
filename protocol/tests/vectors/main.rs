//! The test vectors of PROTOCOL.md ("Test vectors"), checked both ways.
//!
//! - `vectors/frames.json`: decoding each `hex` yields the described frame,
//!   and encoding that frame yields exactly `hex` (also in the QUIC
//!   length-prefixed form).
//! - `vectors/invalid.json`: each `hex` fails with the stated error kind.
//! - `fuzz/seeds/decode/`: the fuzz seed corpus is made of the valid vectors.
//!
//! `frames.json` and the seeds were generated once from [`canonical`] with
//! `cargo test -p ferry-protocol --test vectors -- --ignored regenerate`,
//! then reviewed by hand against PROTOCOL.md. `invalid.json` is written by
//! hand: its expected errors say what the spec requires, not what the codec
//! happens to do.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use ferry_protocol::DecodeError;
use ferry_protocol::codec::{self, DecodeLimits};
use ferry_protocol::error::ChannelError;
use serde_json::Value;

mod canonical;
mod json;

use canonical::{canonical, vector_json};
use json::{frame_from_json, frame_to_json};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn seeds_dir() -> PathBuf {
    crate_dir().join("../fuzz/seeds/decode")
}

fn load(name: &str) -> Vec<Value> {
    let path = crate_dir().join("vectors").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    match serde_json::from_str(&text) {
        Ok(Value::Array(items)) => items,
        other => panic!("{name} is not a JSON array: {other:?}"),
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("missing string {key:?} in {v}"))
}

fn hex_field(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(str_field(v, key)).unwrap_or_else(|e| panic!("bad hex in {key:?} of {v}: {e}"))
}

// ---- valid vectors -------------------------------------------------------

#[test]
fn valid_vectors_decode_to_their_frame() {
    for v in load("frames.json") {
        let name = str_field(&v, "name");
        let want = frame_from_json(&v["frame"]);
        let bytes = Bytes::from(hex_field(&v, "hex"));
        assert_eq!(
            codec::decode(bytes.clone(), &DecodeLimits::default()),
            Ok(want.clone()),
            "{name}"
        );
        // The same frame on a QUIC stream: varint length, then the bytes.
        let mut stream = BytesMut::new();
        codec::put_varint(&mut stream, bytes.len() as u64);
        stream.extend_from_slice(&bytes);
        assert_eq!(
            codec::decode_length_prefixed(&mut stream, &DecodeLimits::default()),
            Ok(Some(want)),
            "{name} (length-prefixed)"
        );
        assert!(stream.is_empty(), "{name}: stream not consumed");
    }
}

#[test]
fn valid_vectors_encode_to_exactly_their_hex() {
    for v in load("frames.json") {
        let name = str_field(&v, "name");
        let frame = frame_from_json(&v["frame"]);
        let want = hex_field(&v, "hex");
        assert_eq!(hex::encode(frame.to_bytes()), hex::encode(&want), "{name}");
        assert_eq!(frame.encoded_len(), want.len(), "{name}: encoded_len");
        let mut prefixed = BytesMut::new();
        frame.encode_length_prefixed(&mut prefixed);
        let mut expected = BytesMut::new();
        codec::put_varint(&mut expected, want.len() as u64);
        expected.extend_from_slice(&want);
        assert_eq!(prefixed, expected, "{name}: length-prefixed");
        // The JSON names every field and nothing else.
        assert_eq!(frame_to_json(&frame), v["frame"], "{name}: JSON fields");
    }
}

#[test]
fn valid_vectors_cover_every_frame_type_with_unique_names() {
    let vectors = load("frames.json");
    let mut names = BTreeSet::new();
    let mut types = BTreeSet::new();
    for v in &vectors {
        let name = str_field(v, "name");
        assert!(names.insert(name.to_owned()), "duplicate name {name}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "name {name:?} is not a usable file name"
        );
        types.insert(hex_field(v, "hex")[0]);
    }
    let all: BTreeSet<u8> = (0x01..=0x10).collect();
    assert_eq!(types, all, "every frame type needs a vector");
    assert!(vectors.len() >= 40, "only {} vectors", vectors.len());
}

#[test]
fn the_worked_example_of_protocol_md_is_in_the_vectors() {
    // PROTOCOL.md prints these bytes; keep them equal to the vectors.
    let spec = std::fs::read_to_string(crate_dir().join("../PROTOCOL.md"))
        .unwrap_or_else(|e| panic!("PROTOCOL.md: {e}"));
    let spec_hex: String = spec.split_whitespace().collect();
    let mut examples = 0;
    for v in load("frames.json") {
        if str_field(&v, "name").starts_with("example_") {
            examples += 1;
            let hex = str_field(&v, "hex");
            assert!(
                spec_hex.contains(hex),
                "{} is not spelt out in PROTOCOL.md",
                str_field(&v, "name")
            );
        }
    }
    assert!(examples >= 8, "only {examples} example vectors");
}

// ---- invalid vectors -----------------------------------------------------

fn error_kind(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::Truncated { .. } => "truncated",
        DecodeError::UnknownType(_) => "unknown_type",
        DecodeError::Oversize { .. } => "oversize",
        DecodeError::BadVarint { .. } => "bad_varint",
        DecodeError::InvalidChannel(_) => "invalid_channel",
        DecodeError::BadUtf8 { .. } => "bad_utf8",
        DecodeError::BadValue { .. } => "bad_value",
        DecodeError::TrailingBytes(_) => "trailing_bytes",
        other => panic!("error kind not in invalid.json's vocabulary: {other:?}"),
    }
}

fn error_field(e: &DecodeError) -> Option<&'static str> {
    match e {
        DecodeError::Truncated { field }
        | DecodeError::BadVarint { field }
        | DecodeError::BadUtf8 { field }
        | DecodeError::BadValue { field, .. } => Some(field),
        DecodeError::InvalidChannel(_) => Some("channel"),
        _ => None,
    }
}

fn channel_reason(e: &DecodeError) -> Option<&'static str> {
    match e {
        DecodeError::InvalidChannel(ChannelError::Empty) => Some("empty"),
        DecodeError::InvalidChannel(ChannelError::TooLong { .. }) => Some("too_long"),
        DecodeError::InvalidChannel(ChannelError::ForbiddenByte(_)) => Some("forbidden_byte"),
        _ => None,
    }
}

fn decode_invalid(v: &Value) -> DecodeError {
    let name = str_field(v, "name");
    let limits = DecodeLimits {
        max_frame_size: v
            .get("max_frame_size")
            .map_or(codec::DEFAULT_MAX_FRAME_SIZE, |m| {
                m.as_u64()
                    .and_then(|m| usize::try_from(m).ok())
                    .unwrap_or_else(|| panic!("{name}: bad max_frame_size"))
            }),
        ..DecodeLimits::default()
    };
    let bytes = hex_field(v, "hex");
    match str_field(v, "mode") {
        "message" => match codec::decode(Bytes::from(bytes), &limits) {
            Err(e) => e,
            Ok(f) => panic!("{name}: decoded to {f:?}"),
        },
        "stream" => {
            let mut buf = BytesMut::from(&bytes[..]);
            match codec::decode_length_prefixed(&mut buf, &limits) {
                Err(e) => e,
                Ok(f) => panic!("{name}: decoded to {f:?}"),
            }
        }
        other => panic!("{name}: unknown mode {other:?}"),
    }
}

#[test]
fn invalid_vectors_fail_with_their_error() {
    for v in load("invalid.json") {
        let name = str_field(&v, "name");
        let err = decode_invalid(&v);
        assert_eq!(error_kind(&err), str_field(&v, "error"), "{name}: {err:?}");
        if let Some(field) = v.get("field") {
            assert_eq!(error_field(&err), field.as_str(), "{name}: {err:?}");
        }
        if let Some(reason) = v.get("reason") {
            assert_eq!(channel_reason(&err), reason.as_str(), "{name}: {err:?}");
        }
    }
}

#[test]
fn invalid_vectors_cover_every_error_kind_and_both_modes() {
    let mut kinds = BTreeSet::new();
    let mut modes = BTreeSet::new();
    let mut names = BTreeSet::new();
    for v in load("invalid.json") {
        assert!(names.insert(str_field(&v, "name").to_owned()), "duplicate");
        kinds.insert(str_field(&v, "error").to_owned());
        modes.insert(str_field(&v, "mode").to_owned());
    }
    let want: BTreeSet<String> = [
        "truncated",
        "unknown_type",
        "oversize",
        "bad_varint",
        "invalid_channel",
        "bad_utf8",
        "bad_value",
        "trailing_bytes",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(kinds, want);
    assert_eq!(modes.len(), 2, "{modes:?}");
}

// ---- fuzz seeds ----------------------------------------------------------

/// The seed that holds every valid vector as one QUIC stream.
const STREAM_SEED: &str = "stream_of_all_vectors";

fn stream_of(vectors: &[Value]) -> Vec<u8> {
    let mut stream = BytesMut::new();
    for v in vectors {
        let bytes = hex_field(v, "hex");
        codec::put_varint(&mut stream, bytes.len() as u64);
        stream.extend_from_slice(&bytes);
    }
    stream.to_vec()
}

fn read_seed(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| {
        panic!("fuzz seed {name}: {e} (regenerate: cargo test -p ferry-protocol --test vectors -- --ignored regenerate)")
    })
}

#[test]
fn fuzz_seeds_are_the_valid_vectors() {
    let vectors = load("frames.json");
    let dir = seeds_dir();
    for v in &vectors {
        let name = str_field(v, "name");
        assert_eq!(read_seed(&dir, name), hex_field(v, "hex"), "seed {name}");
    }
    assert_eq!(read_seed(&dir, STREAM_SEED), stream_of(&vectors));
    let files = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .count();
    assert_eq!(files, vectors.len() + 1, "stray files in {dir:?}");
}

/// Writes `vectors/frames.json` and the fuzz seeds from [`canonical`].
/// Review the diff by hand against PROTOCOL.md before committing.
#[test]
#[ignore = "writes files; run by hand after changing the canonical vectors"]
fn regenerate() {
    let items = canonical();
    let body: Vec<String> = items
        .iter()
        .map(|(name, frame, note)| vector_json(name, frame, note))
        .collect();
    let json = format!("[\n{}\n]\n", body.join(",\n"));
    let path = crate_dir().join("vectors/frames.json");
    std::fs::write(&path, json).unwrap_or_else(|e| panic!("{path:?}: {e}"));

    let dir = seeds_dir();
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}"));
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}"));
    for (name, frame, _) in &items {
        std::fs::write(dir.join(name), frame.to_bytes()).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(dir.join(STREAM_SEED), stream_of(&load("frames.json")))
        .unwrap_or_else(|e| panic!("{e}"));
}
