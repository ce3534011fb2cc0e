//! End-to-end test support: start real gateway processes on port 0 and talk
//! to them over real sockets.
//!
//! Tests get the gateway binary with [`gateway_bin!`] (cargo builds the
//! `ferry-gateway` binary of this package before the tests run).

pub mod harness;
pub mod http;
pub mod raw;
pub mod raw_quic;
pub mod raw_ws;
pub mod sdk;

/// The path of the gateway binary built for these tests.
#[macro_export]
macro_rules! gateway_bin {
    () => {
        env!("CARGO_BIN_EXE_ferry-gateway")
    };
}
