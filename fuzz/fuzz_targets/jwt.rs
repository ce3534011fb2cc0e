//! The JWT verifier: `gateway::fuzzing::jwt` (tokens, and claims signed
//! with a test key so that the claim checks run; a verified identity goes
//! through the refresh timeline).
//!
//! The body lives in the gateway library so that `cargo test` also runs it
//! (as bounded property tests and over `fuzz/seeds/jwt/`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gateway::fuzzing::jwt(data);
});
