//! The Ferry messaging gateway.
//!
//! CLI → configuration → server. The modules show the architecture:
//!
//! - [`runtime`]: thread-per-core workers and the queues between them;
//! - [`transport`]: WebSocket (and QUIC), where bytes become frames;
//! - [`session`]: the sans-IO session state and its connection driver;
//! - [`fanout`]: channel sequencers and local subscriber lists;
//! - [`server`], [`phase`]: lifecycle and signals;
//! - [`ops`]: the ops HTTP listener (probes, metrics, admin API).
//!
//! The binary (`main.rs`) only installs the allocator and calls [`main`].

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

use clap::Parser;

/// Ferry: a real-time messaging gateway.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// WebSocket listen address (overrides the configuration).
    #[arg(long)]
    ws: Option<std::net::SocketAddr>,
    /// Number of workers (0 = one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Ops HTTP listen address: probes, metrics, admin API.
    #[arg(long)]
    ops: Option<std::net::SocketAddr>,
    /// API key of the ops admin API (`/v1/*`); without one that API is closed.
    #[arg(long, env = "FERRY_OPS_API_KEY", hide_env_values = true)]
    ops_api_key: Option<String>,
    /// How long a graceful drain waits for clients to leave, e.g. `3s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    drain_timeout: Option<std::time::Duration>,
    /// Log line format.
    #[arg(long, env = "FERRY_LOG_FORMAT", value_enum, default_value_t = logging::LogFormat::Text)]
    log_format: logging::LogFormat,
}

/// Runs the gateway command line; returns the process exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let set_log_level = logging::init(cli.log_format);
    let mut settings = settings::Settings::default();
    if let Some(ws) = cli.ws {
        settings.ws_listen = ws;
    }
    if let Some(w) = cli.workers.filter(|w| *w > 0) {
        settings.workers = w;
    }
    if let Some(ops) = cli.ops {
        settings.ops_listen = Some(ops);
    }
    if let Some(key) = cli.ops_api_key.and_then(ops::ApiKey::new) {
        settings.ops_api_key = Some(key);
    }
    if let Some(t) = cli.drain_timeout {
        settings.drain_timeout = t;
    }
    let reloader = Box::new(|| Err("no configuration file".into()));
    match server::run(settings, reloader, set_log_level) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
