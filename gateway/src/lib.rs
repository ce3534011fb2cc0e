//! The Ferry messaging gateway.
//!
//! CLI → configuration → server. The modules show the architecture:
//!
//! - [`runtime`]: thread-per-core workers and the queues between them;
//! - [`transport`]: WebSocket (and QUIC), where bytes become frames;
//! - [`session`]: the sans-IO session state and its connection driver;
//! - [`fanout`]: channel sequencers and local subscriber lists;
//! - [`server`], [`phase`]: lifecycle and signals.
//!
//! The binary (`main.rs`) only installs the allocator and calls [`main`].

pub mod fanout;
pub mod metrics;
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
}

/// Runs the gateway command line; returns the process exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut settings = settings::Settings::default();
    if let Some(ws) = cli.ws {
        settings.ws_listen = ws;
    }
    if let Some(w) = cli.workers.filter(|w| *w > 0) {
        settings.workers = w;
    }
    match server::run(settings, Box::new(|| Err("no configuration file".into()))) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
