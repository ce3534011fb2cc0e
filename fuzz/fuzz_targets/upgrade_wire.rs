//! The upgrade control-message decoder: `gateway::fuzzing::upgrade_wire`
//! (`ControlFrame::decode`, and an accepted message must survive
//! encode/decode unchanged).
//!
//! The body lives in the gateway library so that `cargo test` also runs it
//! (as bounded property tests and over `fuzz/seeds/upgrade_wire/`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gateway::fuzzing::upgrade_wire(data);
});
