//! CPU time and resident memory of a process, read from /proc.
//!
//! Used for the gateway (`--gateway-pid`: server CPU per message, memory
//! per idle session) and for the load generator itself, to show it was not
//! the bottleneck.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

/// Clock ticks per second of utime/stime in /proc/PID/stat. Linux exports
/// USER_HZ = 100 to user space on every architecture we run on.
const USER_HZ: u64 = 100;

/// Which process to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid {
    /// The load generator itself.
    SelfProcess,
    /// Another process.
    Id(u32),
}

impl Pid {
    fn dir(self) -> PathBuf {
        match self {
            Pid::SelfProcess => PathBuf::from("/proc/self"),
            Pid::Id(id) => PathBuf::from(format!("/proc/{id}")),
        }
    }
}

/// /proc could not be read or understood.
#[derive(Debug, Error)]
pub enum ProcError {
    /// The file is missing or unreadable: usually the process has exited,
    /// or the PID is wrong (user error on `--gateway-pid`).
    #[error("cannot read {path}: {source} (is the process still running?)")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file did not have the expected layout (a kernel we do not know).
    #[error("cannot understand {path}: {what} not found")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The field.
        what: &'static str,
    },
}

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSample {
    /// User + system CPU time so far.
    pub cpu: Duration,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
}

/// Reads CPU time and RSS of `pid`.
pub fn sample(pid: Pid) -> Result<ProcSample, ProcError> {
    let dir = pid.dir();
    let stat_path = dir.join("stat");
    let stat = read(&stat_path)?;
    let ticks = parse_stat_ticks(&stat).ok_or(ProcError::Parse {
        path: stat_path,
        what: "utime and stime",
    })?;
    let status_path = dir.join("status");
    let status = read(&status_path)?;
    let rss_bytes = parse_status_rss(&status).ok_or(ProcError::Parse {
        path: status_path,
        what: "VmRSS",
    })?;
    Ok(ProcSample {
        cpu: Duration::from_millis(ticks * 1000 / USER_HZ),
        rss_bytes,
    })
}

/// The soft limit on open files of this process, if /proc tells.
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files_limit(&text)
}

fn read(path: &std::path::Path) -> Result<String, ProcError> {
    std::fs::read_to_string(path).map_err(|source| ProcError::Read {
        path: path.to_owned(),
        source,
    })
}

/// utime + stime in clock ticks. The command name (field 2) is in
/// parentheses and may hold spaces, so fields are counted after the last ')'.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // After ')': state is field 3, so utime (14) and stime (15) are the
    // 12th and 13th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value * 1024),
        Some(_) => None,
    }
}

fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_nasty_command_name() {
        let stat = "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 75 0 0 20 0 3 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
        assert_eq!(parse_stat_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn parses_rss_and_limits() {
        let status = "Name:\tgateway\nVmPeak:\t  9000 kB\nVmRSS:\t    1536 kB\nThreads:\t3\n";
        assert_eq!(parse_status_rss(status), Some(1536 * 1024));
        assert_eq!(parse_status_rss("Name: x\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            20000                20000                files     \n";
        assert_eq!(parse_open_files_limit(limits), Some(20000));
    }

    #[test]
    fn samples_itself() {
        let s = sample(Pid::SelfProcess).unwrap();
        assert!(s.rss_bytes > 0);
        assert!(matches!(
            sample(Pid::Id(u32::MAX)),
            Err(ProcError::Read { .. })
        ));
    }
}
