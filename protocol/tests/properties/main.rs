//! Property tests of the codec and the delivery state machines.
//!
//! - every frame survives encode → decode, in both framings;
//! - arbitrary or mangled bytes never panic the decoders and never yield a
//!   frame larger than the limit;
//! - a QUIC stream split at arbitrary points decodes to the same frames;
//! - the replay log keeps its invariants under random operations
//!   ([`replay`]);
//! - the sequence trackers never accept a number twice ([`trackers`]).

use bytes::{Bytes, BytesMut};
use ferry_protocol::codec::{self, DecodeLimits};
use ferry_protocol::{DecodeError, Frame};
use proptest::prelude::*;

mod replay;
mod strategies;
mod trackers;

use strategies::{apply, frame, mangle};

/// 512 cases per property; `PROPTEST_CASES` overrides it for longer runs.
fn config() -> ProptestConfig {
    if std::env::var_os("PROPTEST_CASES").is_some() {
        ProptestConfig::default()
    } else {
        ProptestConfig::with_cases(512)
    }
}

fn limits(max_frame_size: usize) -> DecodeLimits {
    DecodeLimits {
        max_frame_size,
        ..DecodeLimits::default()
    }
}

/// What `decode` may return for input it accepts: a frame no larger than
/// the limit or the input (over-long varints only shrink on re-encoding),
/// whose canonical bytes decode to the same frame.
fn check_accepted(frame: &Frame, input_len: usize, l: &DecodeLimits) -> Result<(), TestCaseError> {
    prop_assert!(frame.encoded_len() <= l.max_frame_size, "{frame:?}");
    prop_assert!(frame.encoded_len() <= input_len, "{frame:?}");
    prop_assert_eq!(codec::decode(frame.to_bytes(), l), Ok(frame.clone()));
    Ok(())
}

/// Drains `buf` with `decode_length_prefixed` until it needs more bytes or
/// fails; checks each accepted frame.
fn drain_stream(buf: &mut BytesMut, l: &DecodeLimits) -> Result<Vec<Frame>, TestCaseError> {
    let mut frames = Vec::new();
    loop {
        let before = buf.clone();
        match codec::decode_length_prefixed(buf, l) {
            Ok(Some(frame)) => {
                prop_assert!(buf.len() < before.len(), "a frame consumed nothing");
                check_accepted(&frame, before.len() - buf.len(), l)?;
                frames.push(frame);
            }
            Ok(None) => {
                prop_assert_eq!(&*buf, &before, "incomplete input was consumed");
                return Ok(frames);
            }
            Err(_) => return Ok(frames),
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn encode_then_decode_is_identity(f in frame()) {
        let bytes = f.to_bytes();
        prop_assert_eq!(bytes.len(), f.encoded_len());
        prop_assert_eq!(codec::decode(bytes.clone(), &DecodeLimits::default()), Ok(f.clone()));

        let mut stream = BytesMut::new();
        f.encode_length_prefixed(&mut stream);
        prop_assert_eq!(stream.len(), codec::varint_len(bytes.len() as u64) + bytes.len());
        prop_assert_eq!(
            codec::decode_length_prefixed(&mut stream, &DecodeLimits::default()),
            Ok(Some(f.clone()))
        );
        prop_assert!(stream.is_empty());
    }

    #[test]
    fn the_size_limit_is_exact(f in frame()) {
        let len = f.encoded_len();
        prop_assert_eq!(codec::decode(f.to_bytes(), &limits(len)), Ok(f.clone()));
        prop_assert_eq!(
            codec::decode(f.to_bytes(), &limits(len - 1)),
            Err(DecodeError::Oversize { len: len as u64, max: len - 1 })
        );
        let mut stream = BytesMut::new();
        f.encode_length_prefixed(&mut stream);
        let whole = stream.clone();
        prop_assert_eq!(
            codec::decode_length_prefixed(&mut stream, &limits(len - 1)),
            Err(DecodeError::Oversize { len: len as u64, max: len - 1 })
        );
        // Rejected from the prefix alone, before the body has arrived.
        let mut prefix_only = BytesMut::from(&whole[..codec::varint_len(len as u64)]);
        prop_assert_eq!(
            codec::decode_length_prefixed(&mut prefix_only, &limits(len - 1)),
            Err(DecodeError::Oversize { len: len as u64, max: len - 1 })
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic_or_exceed_the_limit(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        max in 0..400usize,
    ) {
        let l = limits(max);
        if let Ok(f) = codec::decode(Bytes::from(bytes.clone()), &l) {
            check_accepted(&f, bytes.len(), &l)?;
        }
        let mut buf = BytesMut::from(&bytes[..]);
        drain_stream(&mut buf, &l)?;
    }

    #[test]
    fn mangled_frames_never_panic_or_exceed_the_limit(
        f in frame(),
        damage in proptest::collection::vec(mangle(), 1..4),
        max in prop_oneof![Just(codec::DEFAULT_MAX_FRAME_SIZE), 0..200usize],
    ) {
        let l = limits(max);
        let mut bytes = f.to_bytes().to_vec();
        for m in &damage {
            apply(&mut bytes, m);
        }
        if let Ok(g) = codec::decode(Bytes::from(bytes.clone()), &l) {
            check_accepted(&g, bytes.len(), &l)?;
        }
        // The same damage to a length-prefixed stream of two frames.
        let mut stream = Vec::new();
        let mut prefixed = BytesMut::new();
        f.encode_length_prefixed(&mut prefixed);
        f.encode_length_prefixed(&mut prefixed);
        stream.extend_from_slice(&prefixed);
        for m in &damage {
            apply(&mut stream, m);
        }
        let mut buf = BytesMut::from(&stream[..]);
        drain_stream(&mut buf, &l)?;
    }

    #[test]
    fn a_stream_split_anywhere_yields_the_same_frames(
        frames in proptest::collection::vec(frame(), 0..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut wire = BytesMut::new();
        for f in &frames {
            f.encode_length_prefixed(&mut wire);
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        cuts.push(wire.len());
        cuts.sort_unstable();

        let l = DecodeLimits::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut start = 0;
        for cut in cuts {
            buf.extend_from_slice(&wire[start..cut]);
            start = cut;
            loop {
                match codec::decode_length_prefixed(&mut buf, &l) {
                    Ok(Some(f)) => got.push(f),
                    Ok(None) => break,
                    Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
                }
            }
        }
        prop_assert_eq!(got, frames);
        prop_assert!(buf.is_empty());
    }
}
