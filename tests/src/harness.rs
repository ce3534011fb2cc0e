//! Starting and stopping gateway processes.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

static NEXT_LOG: AtomicUsize = AtomicUsize::new(0);

/// Raises this process's soft limit on open files to its hard limit and
/// returns the limit now in force. Tests that hold many sockets call it
/// first: the default soft limit of a fresh machine is often 1,024. The
/// gateways a test starts afterwards inherit the raised limit.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into a struct we own and pass
    // by a valid mutable pointer.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one `rlimit` from a struct we own.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

/// How to start a gateway.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Worker threads.
    pub workers: usize,
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Use this data directory (shared with another gateway for an
    /// upgrade) instead of a fresh one.
    pub data_dir: Option<PathBuf>,
    /// The gateway's limit on open files, when the test needs a small one.
    pub open_files: Option<u64>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            workers: 2,
            args: Vec::new(),
            env: Vec::new(),
            data_dir: None,
            open_files: None,
        }
    }
}

impl GatewayOptions {
    /// Sets an environment variable for the gateway.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Starts with a configuration file.
    pub fn config(mut self, path: &std::path::Path) -> Self {
        self.args.push("--config".to_owned());
        self.args.push(path.display().to_string());
        self
    }

    /// Takes over from the gateway that uses `data_dir`.
    pub fn takeover_from(mut self, data_dir: &std::path::Path) -> Self {
        self.data_dir = Some(data_dir.to_path_buf());
        self.args.push("--takeover".to_owned());
        self
    }

    /// Runs the gateway with at most `n` open files (soft and hard).
    pub fn open_files(mut self, n: u64) -> Self {
        self.open_files = Some(n);
        self
    }

    /// Sets the worker count.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }
}

/// A running gateway process; killed when dropped.
#[derive(Debug)]
pub struct Gateway {
    child: Child,
    /// The WebSocket address it listens on.
    pub ws: SocketAddr,
    /// Every `key=value` of its ready line.
    pub ready: Vec<(String, String)>,
    log: PathBuf,
    data_dir: PathBuf,
}

impl Gateway {
    /// Starts a gateway with `options`, every listener on 127.0.0.1 port 0,
    /// and waits (at most 20 s) for its ready line.
    pub fn start(bin: &str, options: GatewayOptions) -> anyhow::Result<Gateway> {
        let log = std::env::temp_dir().join(format!(
            "ferry-test-{}-{}.log",
            std::process::id(),
            NEXT_LOG.fetch_add(1, Ordering::Relaxed)
        ));
        let stderr = std::fs::File::create(&log).context("create gateway log")?;
        let data_dir = options.data_dir.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!(
                "ferry-test-data-{}-{}",
                std::process::id(),
                NEXT_LOG.fetch_add(1, Ordering::Relaxed)
            ))
        });
        let mut cmd = match options.open_files {
            None => Command::new(bin),
            Some(n) => {
                // The shell sets the limit, then becomes the gateway (same
                // pid), which needs no unsafe pre_exec hook here.
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg("ulimit -n \"$0\" && exec \"$@\"")
                    .arg(n.to_string())
                    .arg(bin);
                sh
            }
        };
        cmd.arg("--ws")
            .arg("127.0.0.1:0")
            .arg("--ops")
            .arg("127.0.0.1:0")
            .arg("--quic")
            .arg("127.0.0.1:0")
            .arg("--wss")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--workers")
            .arg(options.workers.to_string())
            .args(&options.args)
            .env("RUST_LOG", "info")
            // The developer's own settings must not leak into a test.
            .env_remove("FERRY_OPS_API_KEY")
            .env_remove("FERRY_LOG_FORMAT")
            .env_remove("FERRY_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().with_context(|| format!("spawn {bin}"))?;
        let stdout = child.stdout.take().context("gateway stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("ferry gateway ready: ") {
                    let _ = tx.send(rest.to_owned());
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let log_text = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("gateway did not become ready; its log:\n{log_text}");
            }
        };
        let ready: Vec<(String, String)> = line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let ws = ready
            .iter()
            .find(|(k, _)| k == "ws")
            .context("ready line has no ws address")?
            .1
            .parse()
            .context("ws address")?;
        Ok(Gateway {
            child,
            ws,
            ready,
            log,
            data_dir,
        })
    }

    /// The QUIC URL of the gateway.
    pub fn quic_url(&self) -> String {
        format!(
            "quic://{}",
            self.ready_value("quic").unwrap_or("127.0.0.1:0")
        )
    }

    /// The WSS URL of the gateway.
    pub fn wss_url(&self) -> String {
        let addr = self.ready_value("wss").unwrap_or("127.0.0.1:0");
        let port = addr.rsplit(':').next().unwrap_or("0");
        format!("wss://localhost:{port}/ws")
    }

    /// The certificate to trust for WSS and QUIC.
    pub fn cert(&self) -> PathBuf {
        PathBuf::from(self.ready_value("cert").unwrap_or_default())
    }

    /// The data directory of this gateway.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// The WebSocket URL of the gateway.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.ws)
    }

    /// A value of the ready line.
    pub fn ready_value(&self, key: &str) -> Option<&str> {
        self.ready
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The ops HTTP address (the ready line's `ops=`).
    pub fn ops_addr(&self) -> anyhow::Result<SocketAddr> {
        self.ready_value("ops")
            .context("ready line has no ops address")?
            .parse()
            .context("ops address")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (e.g. `libc::SIGTERM`).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet
        // reaped) and a valid signal number has no memory-safety effects.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("gateway still running after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (at most 10 s) until the log contains `needle` `count` times.
    pub fn wait_for_log(&self, needle: &str, count: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.log().matches(needle).count() < count {
            if Instant::now() >= deadline {
                bail!("log never showed {needle:?} {count} times:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The gateway's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- gateway log ({}) ---\n{}",
                self.log.display(),
                self.log()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
