//! Logging setup: text or JSON lines on stderr, filtered by `RUST_LOG`
//! (default `info`), with a filter that can be swapped at run time.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, fmt, reload};

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Replaces the log filter with an `EnvFilter` directive such as
/// `info,gateway=debug`; `Err` explains a bad directive and keeps the old
/// filter. The configuration reload uses it to change the level live.
pub type LogLevelSetter = Box<dyn Fn(&str) -> Result<(), String>>;

/// Installs the global subscriber, filtered by `RUST_LOG` or else by
/// `default_filter`; returns the way to change its filter.
pub fn init(format: LogFormat, default_filter: &str) -> LogLevelSetter {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default_filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    // Colour codes only for a person at a terminal, not in
                    // log files.
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .init(),
    }
    Box::new(move |directive: &str| {
        let next = EnvFilter::try_new(directive).map_err(|e| e.to_string())?;
        handle.reload(next).map_err(|e| e.to_string())
    })
}
