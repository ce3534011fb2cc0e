//! A codec micro-benchmark made for `valgrind --tool=callgrind`, which
//! counts instructions instead of timing them, so that the figures do not
//! depend on what else runs on the machine.
//!
//! ```text
//! codec-micro encode-message N   # N MESSAGE frames, as fan-out writes them
//! codec-micro decode-publish N   # N PUBLISH frames, as the gateway reads them
//! ```
//!
//! Both use a 32-byte payload on channel `fanout:0`. `encode-message`
//! appends each frame to a write buffer with [`codec::encode_message`] (the
//! fan-out hot path: no `Frame` is built) and clears the buffer every 64
//! frames, as a flush would. `decode-publish` decodes a WebSocket message
//! (one whole frame, `Bytes`) with [`codec::decode`]; the payload is a
//! slice of it. Instructions per frame = (Ir of a run with N − Ir of a run
//! with 0) / N: `bench/callgrind.sh` does that subtraction.

use std::hint::black_box;
use std::process::ExitCode;

use bytes::{Bytes, BytesMut};
use ferry_protocol::codec::{self, DecodeLimits};
use ferry_protocol::{ChannelName, Frame};

const PAYLOAD: [u8; 32] = [7; 32];
/// Frames per simulated flush.
const BATCH: u64 = 64;

fn channel() -> Result<ChannelName, String> {
    ChannelName::parse("fanout:0").map_err(|e| format!("channel: {e}"))
}

fn encode_message(n: u64) -> Result<u64, String> {
    let channel = channel()?;
    let frame_len = codec::message_len(1 << 20, &channel, 1 << 20, PAYLOAD.len());
    let mut out = BytesMut::with_capacity(frame_len * BATCH as usize);
    let mut written = 0u64;
    for seq in 1..=n {
        codec::encode_message(
            &mut out,
            black_box(seq + (1 << 20)),
            black_box(&channel),
            black_box(seq + (1 << 20)),
            black_box(&PAYLOAD),
        );
        if seq % BATCH == 0 {
            written += black_box(&out).len() as u64;
            out.clear();
        }
    }
    Ok(written + out.len() as u64)
}

fn decode_publish(n: u64) -> Result<u64, String> {
    let wire: Bytes = Frame::Publish {
        client_seq: 1 << 20,
        channel: channel()?,
        payload: Bytes::from_static(&PAYLOAD),
    }
    .to_bytes();
    let limits = DecodeLimits::default();
    let mut payload_bytes = 0u64;
    for _ in 0..n {
        match codec::decode(black_box(wire.clone()), &limits) {
            Ok(Frame::Publish { payload, .. }) => payload_bytes += black_box(payload).len() as u64,
            Ok(other) => return Err(format!("decoded {other:?}, not PUBLISH")),
            Err(e) => return Err(format!("decode: {e}")),
        }
    }
    Ok(payload_bytes)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (what, n) = match args.as_slice() {
        [what, n] => match n.parse::<u64>() {
            Ok(n) => (what.as_str(), n),
            Err(_) => return usage(),
        },
        _ => return usage(),
    };
    let result = match what {
        "encode-message" => encode_message(n),
        "decode-publish" => decode_publish(n),
        _ => return usage(),
    };
    match result {
        Ok(bytes) => {
            println!("{what} {n}: {bytes} bytes");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("codec-micro: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: codec-micro encode-message|decode-publish N");
    ExitCode::from(2)
}
