//! The Ferry messaging gateway.
//!
//! CLI → configuration → server. The modules show the architecture:
//!
//! - [`runtime`]: thread-per-core workers and the queues between them;
//! - [`transport`]: WebSocket (and QUIC), where bytes become frames;
//! - [`session`]: the sans-IO session state and its connection driver;
//! - [`auth`]: token verification and grants (sans-IO); [`auth_setup`]
//!   builds it from the configuration, reading the key files;
//! - [`fanout`]: channel sequencers and local subscriber lists;
//! - [`server`], [`phase`]: lifecycle and signals;
//! - [`ops`]: the ops HTTP listener (probes, metrics, admin API);
//! - [`upgrade`]: zero-downtime handover to a new process.
//!
//! The binary (`main.rs`) only installs the allocator and calls [`main`].

pub mod auth;
pub mod auth_setup;
pub mod fanout;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod phase;
pub mod runtime;
pub mod server;
pub mod session;
pub mod settings;
pub mod transport;
pub mod upgrade;

pub mod cli;

/// The bodies of the fuzz targets (`fuzz/`), also run as property tests.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;

/// Runs the gateway command line; returns the process exit code.
pub fn main() -> std::process::ExitCode {
    cli::main()
}
