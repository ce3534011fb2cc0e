//! The WebSocket handshake: `gateway::fuzzing::handshake` (the HTTP
//! upgrade request through tungstenite and `answer_upgrade`, then HELLO
//! through `parse_hello`).
//!
//! The body lives in the gateway library so that `cargo test` also runs it
//! (as bounded property tests and over `fuzz/seeds/handshake/`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gateway::fuzzing::handshake(data);
});
