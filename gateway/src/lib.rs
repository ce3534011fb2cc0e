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

pub mod auth;
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
    /// QUIC listen address (overrides the configuration).
    #[arg(long)]
    quic: Option<std::net::SocketAddr>,
    /// WSS listen address (overrides the configuration).
    #[arg(long)]
    wss: Option<std::net::SocketAddr>,
    /// Data directory (development certificate, control socket).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
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
    if let Some(quic) = cli.quic {
        settings.quic_listen = Some(quic);
    }
    if let Some(wss) = cli.wss {
        settings.wss_listen = Some(wss);
    }
    if let Some(dir) = cli.data_dir {
        settings.data_dir = dir;
    }
    match server::run(settings, Box::new(|| Err("no configuration file".into()))) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
