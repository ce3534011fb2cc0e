//! The command line: `gateway [--config FILE]`, `gateway check-config
//! FILE`, `gateway token --sub USER ...`. Errors are reported in words an
//! operator can act on.

mod token;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferry_config::Config;

use crate::logging;
use crate::server;
use crate::settings::Settings;

/// Ferry: a real-time messaging gateway.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). Without one the embedded defaults apply;
    /// `FERRY_<SECTION>_<FIELD>` variables override single fields.
    #[arg(long, env = "FERRY_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// WebSocket listen address (overrides the configuration).
    #[arg(long)]
    ws: Option<std::net::SocketAddr>,
    /// QUIC listen address (overrides the configuration).
    #[arg(long)]
    quic: Option<std::net::SocketAddr>,
    /// WSS listen address (overrides the configuration).
    #[arg(long)]
    wss: Option<std::net::SocketAddr>,
    /// Number of workers (overrides the configuration).
    #[arg(long)]
    workers: Option<usize>,
    /// Data directory (development certificate, control socket).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Take over the listening sockets and sessions of the gateway that
    /// runs on the control socket (zero-downtime upgrade).
    #[arg(long)]
    takeover: bool,
    /// Ops HTTP listen address: probes, metrics, admin API.
    #[arg(long)]
    ops: Option<std::net::SocketAddr>,
    /// API key of the ops admin API (`/v1/*`); without one that API is closed.
    #[arg(long, hide_env_values = true)]
    ops_api_key: Option<String>,
    /// How long a graceful drain waits for clients to leave, e.g. `3s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    drain_timeout: Option<std::time::Duration>,
    /// Log line format (overrides `log.format`).
    #[arg(long, env = "FERRY_LOG_FORMAT", value_enum)]
    log_format: Option<logging::LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a configuration file: exit 0, or print every problem.
    CheckConfig {
        /// The file.
        file: PathBuf,
    },
    /// Mint a development token with a key of the configuration and print
    /// it.
    ///
    /// The key is the one named by --kid; without --kid, the only
    /// configured key, else the first HS256 key. HS256 keys sign with their
    /// configured secret; RS256 and ES256 keys need their private key
    /// (--private-key), and the token is checked against the configured
    /// public key. The token carries the configured audience and issuer.
    Token(token::TokenArgs),
}

impl Cli {
    /// Command-line overrides win over the file, also after a reload.
    fn apply_overrides(&self, settings: &mut Settings) {
        if let Some(ws) = self.ws {
            settings.ws_listen = ws;
        }
        if let Some(quic) = self.quic {
            settings.quic_listen = Some(quic);
        }
        if let Some(wss) = self.wss {
            settings.wss_listen = Some(wss);
        }
        if let Some(w) = self.workers.filter(|w| *w > 0) {
            settings.workers = w;
        }
        if let Some(dir) = &self.data_dir {
            settings.control_socket = dir.join("control.sock");
            settings.data_dir = dir.clone();
        }
        if let Some(ops) = self.ops {
            settings.ops_listen = Some(ops);
        }
        if let Some(key) = self
            .ops_api_key
            .as_deref()
            .and_then(crate::ops::ApiKey::new)
        {
            settings.ops_api_key = Some(key);
        }
        if let Some(t) = self.drain_timeout {
            settings.drain_timeout = t;
        }
    }
}

/// Runs the command line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::CheckConfig { file }) => return check_config(file),
        Some(Command::Token(args)) => return token::run(cli.config.as_deref(), args),
        None => {}
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!(
                "gateway: the configuration{} is invalid:\n{errors}",
                describe(cli.config.as_deref())
            );
            return ExitCode::from(2);
        }
    };
    let format = cli.log_format.unwrap_or(match config.log.format {
        ferry_config::LogFormat::Json => logging::LogFormat::Json,
        _ => logging::LogFormat::Text,
    });
    let set_log_level = logging::init(format, config.log.level.as_str());
    if config.auth.mode == ferry_config::AuthMode::None {
        tracing::warn!(
            "auth.mode = \"none\": any client may subscribe and publish to any channel; use auth.mode = \"jwt\" in production"
        );
    }
    let mut settings = match Settings::from_config(&config) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!(
                "gateway: the [auth] keys{} cannot be used:\n{e}",
                describe(cli.config.as_deref())
            );
            return ExitCode::from(2);
        }
    };
    cli.apply_overrides(&mut settings);
    if let Some(auth) = &settings.auth {
        let kids: Vec<&str> = auth.kids().collect();
        tracing::info!(
            ?kids,
            "auth.mode = \"jwt\": clients need a token signed by one of these keys"
        );
    }
    let mode = server::StartMode {
        takeover: cli.takeover,
    };
    let reloader = reloader(cli, config, settings.clone(), set_log_level);
    match server::run(settings, reloader, mode) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn describe(path: Option<&Path>) -> String {
    path.map(|p| format!(" in {}", p.display()))
        .unwrap_or_default()
}

/// `check-config`: every problem of the file's values, of the key files
/// it names and of the TLS certificate and key, all at once, each with its
/// field path. Exit 0 only when the gateway would start with this file.
fn check_config(file: &Path) -> ExitCode {
    let (config, errors) = match Config::load_lenient(Some(file)) {
        Ok(loaded) => loaded,
        Err(errors) => {
            report_problems(file, &errors.to_string(), errors.len());
            return ExitCode::from(2);
        }
    };
    let mut problems: Vec<String> = errors.iter().map(ToString::to_string).collect();
    problems.extend(file_problems(&config));
    if problems.is_empty() {
        println!("{}: ok", file.display());
        return ExitCode::SUCCESS;
    }
    report_problems(file, &problems.join("\n"), problems.len());
    ExitCode::from(2)
}

fn report_problems(file: &Path, lines: &str, n: usize) {
    eprintln!(
        "{}: {n} problem{}:\n{lines}",
        file.display(),
        if n == 1 { "" } else { "s" }
    );
}

/// The problems of the files a configuration names (auth public keys, the
/// TLS certificate and key), each starting with its field path. The
/// gateway reads the same files at start and on reload.
fn file_problems(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = crate::auth_setup::authenticator(&config.auth) {
        problems.extend(
            e.problems
                .iter()
                .map(|p| crate::auth_setup::with_field_path(&config.auth, p)),
        );
    }
    if let Err(e) = tls_files(config) {
        problems.push(format!("{}: {e}", e.field()));
    }
    problems
}

/// Whether the gateway will serve TLS (WSS or QUIC) with this
/// configuration.
fn uses_tls(wss: Option<std::net::SocketAddr>, quic: Option<std::net::SocketAddr>) -> bool {
    wss.is_some() || quic.is_some()
}

/// Reads the configured certificate and key, when the gateway would.
fn tls_files(config: &Config) -> Result<(), crate::transport::tls::TlsError> {
    match &config.tls {
        ferry_config::Tls::Files { cert, key }
            if uses_tls(config.listen.wss, config.listen.quic) =>
        {
            crate::transport::tls::load_certified_key(&crate::transport::tls::CertPaths {
                cert: cert.clone(),
                key: key.clone(),
            })
            .map(drop)
        }
        _ => Ok(()),
    }
}

/// Builds the SIGHUP handler: re-read and validate the file; on success
/// return the new settings (fields that need a restart keep their running
/// values and are reported); on failure keep everything and say why.
fn reloader(
    cli: Cli,
    mut running_config: Config,
    mut running: Settings,
    set_log_level: logging::LogLevelSetter,
) -> server::Reloader {
    Box::new(move || {
        let next_config = match Config::load(cli.config.as_deref()) {
            Ok(c) => c,
            Err(errors) => {
                metrics::counter!("ferry_config_reloads_total", "outcome" => "error").increment(1);
                return Err(format!(
                    "the configuration{} is invalid:\n{errors}",
                    describe(cli.config.as_deref())
                ));
            }
        };
        // A key file that cannot be read fails the whole reload: the
        // running keys stay, rather than running with some keys missing.
        // Key files are read again even when the file names did not change,
        // so replacing a PEM in place and reloading rotates it.
        let mut next = match Settings::from_config(&next_config) {
            Ok(next) => next,
            Err(e) => {
                metrics::counter!("ferry_config_reloads_total", "outcome" => "error").increment(1);
                return Err(format!(
                    "the [auth] keys{} cannot be used:\n{e}",
                    describe(cli.config.as_deref())
                ));
            }
        };
        cli.apply_overrides(&mut next);
        let next = next.keeping_fixed_fields_of(&running);
        // A certificate that cannot be used fails the whole reload too:
        // nothing applies, rather than new settings with the old
        // certificate. It is read once, here, and handed over as read.
        let certificate = match &next.tls_cert {
            Some((cert, key)) if uses_tls(next.wss_listen, next.quic_listen) => {
                let paths = crate::transport::tls::CertPaths {
                    cert: cert.clone(),
                    key: key.clone(),
                };
                match crate::transport::tls::load_certified_key(&paths) {
                    Ok(certificate) => Some(certificate),
                    Err(e) => {
                        metrics::counter!("ferry_config_reloads_total", "outcome" => "error")
                            .increment(1);
                        return Err(format!(
                            "the TLS certificate{} cannot be used:\n  {}: {e}",
                            describe(cli.config.as_deref()),
                            e.field()
                        ));
                    }
                }
            }
            _ => None,
        };
        let diff = running_config.diff(&next_config);
        if !diff.needs_restart.is_empty() {
            tracing::warn!(
                fields = ?diff.needs_restart,
                "these settings cannot change in a running gateway; they apply after an upgrade (gateway --takeover)"
            );
        }
        if next.log_level != running.log_level
            && let Err(e) = set_log_level(&next.log_level)
        {
            tracing::error!("log level not changed: {e}");
        }
        tracing::info!(changed = ?diff.changed, "configuration reloaded");
        metrics::counter!("ferry_config_reloads_total", "outcome" => "ok").increment(1);
        running_config = next_config;
        running = next.clone();
        Ok(server::Reloaded {
            settings: next,
            certificate,
        })
    })
}
