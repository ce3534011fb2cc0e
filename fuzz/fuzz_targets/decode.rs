//! Fuzzes both decoders of `ferry_protocol::codec` with the same input:
//! `decode` (one WebSocket message) and `decode_length_prefixed` (a QUIC
//! stream of length-prefixed frames).
//!
//! Beyond "never panics", every accepted frame must re-encode to at most
//! the limit and the input it came from, and decode back to itself.

#![no_main]

use bytes::{Bytes, BytesMut};
use ferry_protocol::Frame;
use ferry_protocol::codec::{self, DecodeLimits};
use libfuzzer_sys::fuzz_target;

/// A small limit as well as the default, so that oversize paths run.
const SMALL_LIMIT: usize = 32;

fuzz_target!(|data: &[u8]| {
    for max_frame_size in [codec::DEFAULT_MAX_FRAME_SIZE, SMALL_LIMIT] {
        let limits = DecodeLimits {
            max_frame_size,
            ..DecodeLimits::default()
        };
        if let Ok(frame) = codec::decode(Bytes::copy_from_slice(data), &limits) {
            check(&frame, data.len(), &limits);
        }
        let mut stream = BytesMut::from(data);
        loop {
            let before = stream.len();
            match codec::decode_length_prefixed(&mut stream, &limits) {
                Ok(Some(frame)) => check(&frame, before - stream.len(), &limits),
                Ok(None) => {
                    assert_eq!(stream.len(), before, "incomplete input was consumed");
                    break;
                }
                Err(_) => break,
            }
        }
    }
});

fn check(frame: &Frame, consumed: usize, limits: &DecodeLimits) {
    let bytes = frame.to_bytes();
    assert_eq!(bytes.len(), frame.encoded_len(), "{frame:?}");
    assert!(bytes.len() <= limits.max_frame_size, "{frame:?}");
    // Over-long varints may be accepted, so re-encoding can only shrink.
    assert!(bytes.len() <= consumed, "{frame:?}");
    assert_eq!(codec::decode(bytes, limits).as_ref(), Ok(frame));
}
