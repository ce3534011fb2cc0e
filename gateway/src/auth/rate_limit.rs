//! Failed authentication attempts per source address, in a sliding window.
//!
//! An address is blocked while it has `max_per_minute` failures within the
//! last minute, and unblocked as soon as the oldest of them is a minute old.
//! IPv6 sources are counted per /64 network (one subscriber's allocation),
//! and IPv4-mapped IPv6 addresses as the IPv4 address, so that rotating
//! through the addresses of one network does not reset the count.
//!
//! Memory is bounded: an entry holds at most `max_per_minute` instants,
//! [`FailedAttempts::sweep`] drops idle entries, and the table never holds
//! more than `max_entries` sources. When it is full, idle entries are
//! dropped, then those not blocked; if every tracked source is blocked, a
//! new source is not tracked until room frees up (counted by
//! [`FailedAttempts::untracked`]). The table is owned by one worker and
//! fed the current time, like the rest of the sans-IO core.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// The length of the sliding window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The default bound on the number of tracked sources.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// How often a full table may be scanned to make room.
const MIN_SCAN_INTERVAL: Duration = Duration::from_secs(1);

/// Recent failed authentication attempts, per source.
#[derive(Debug)]
pub struct FailedAttempts {
    max_failures: usize,
    window: Duration,
    max_entries: usize,
    /// Per source, the instants of its most recent failures (oldest first,
    /// at most `max_failures`).
    table: HashMap<IpAddr, VecDeque<Instant>>,
    last_scan: Option<Instant>,
    untracked: u64,
}

impl FailedAttempts {
    /// Blocks a source after `max_per_minute` failures within a minute;
    /// 0 disables blocking. Tracks at most [`DEFAULT_MAX_ENTRIES`] sources.
    pub fn new(max_per_minute: u32) -> Self {
        Self::with_limits(max_per_minute, WINDOW, DEFAULT_MAX_ENTRIES)
    }

    /// Like [`FailedAttempts::new`] with another window and table bound.
    pub fn with_limits(max_failures: u32, window: Duration, max_entries: usize) -> Self {
        Self {
            max_failures: usize::try_from(max_failures).unwrap_or(usize::MAX),
            window,
            max_entries: max_entries.max(1),
            table: HashMap::new(),
            last_scan: None,
            untracked: 0,
        }
    }

    /// Whether `ip` has too many recent failures to try again now.
    pub fn is_blocked(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.max_failures == 0 {
            return false;
        }
        let key = source_key(ip);
        let Some(failures) = self.table.get_mut(&key) else {
            return false;
        };
        forget_old(failures, now, self.window);
        if failures.is_empty() {
            self.table.remove(&key);
            return false;
        }
        failures.len() >= self.max_failures
    }

    /// Counts a failed attempt from `ip`.
    pub fn record_failure(&mut self, ip: IpAddr, now: Instant) {
        if self.max_failures == 0 {
            return;
        }
        let key = source_key(ip);
        if let Some(failures) = self.table.get_mut(&key) {
            forget_old(failures, now, self.window);
            if failures.len() >= self.max_failures {
                failures.pop_front();
            }
            failures.push_back(now);
            return;
        }
        if self.table.len() >= self.max_entries {
            self.make_room(now);
            if self.table.len() >= self.max_entries {
                self.untracked += 1;
                return;
            }
        }
        let mut failures = VecDeque::with_capacity(self.max_failures.min(4));
        failures.push_back(now);
        self.table.insert(key, failures);
    }

    /// Drops the sources whose failures are all older than the window, and
    /// gives back memory after a burst. Call it periodically.
    pub fn sweep(&mut self, now: Instant) {
        let window = self.window;
        self.table.retain(|_, failures| {
            forget_old(failures, now, window);
            !failures.is_empty()
        });
        if self.table.capacity() > 4 * self.table.len().max(64) {
            self.table.shrink_to_fit();
        }
    }

    /// The number of sources tracked.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Failures that were not counted because the table was full of
    /// blocked sources.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    /// The table is full: drop idle sources, then sources that are not
    /// blocked. At most once per [`MIN_SCAN_INTERVAL`], so that a flood of
    /// new addresses cannot make every failure scan the whole table.
    fn make_room(&mut self, now: Instant) {
        if self
            .last_scan
            .is_some_and(|last| now.saturating_duration_since(last) < MIN_SCAN_INTERVAL)
        {
            return;
        }
        self.last_scan = Some(now);
        self.sweep(now);
        if self.table.len() >= self.max_entries {
            let max = self.max_failures;
            self.table.retain(|_, failures| failures.len() >= max);
        }
    }
}

/// Drops the failures that are a window old or older.
fn forget_old(failures: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while failures
        .front()
        .is_some_and(|&at| now.saturating_duration_since(at) >= window)
    {
        failures.pop_front();
    }
}

/// The address itself for IPv4 (IPv4-mapped IPv6 included), the /64
/// network for IPv6.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(network))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn blocks_after_n_failures_within_a_minute() {
        let t0 = Instant::now();
        let mut fa = FailedAttempts::new(3);
        let ip = v4(1);
        assert!(!fa.is_blocked(ip, t0));
        fa.record_failure(ip, t0);
        fa.record_failure(ip, t0 + secs(10));
        assert!(!fa.is_blocked(ip, t0 + secs(10)));
        fa.record_failure(ip, t0 + secs(20));
        assert!(fa.is_blocked(ip, t0 + secs(20)));
        assert!(fa.is_blocked(ip, t0 + secs(59)));
        assert!(
            !fa.is_blocked(v4(2), t0 + secs(20)),
            "other sources are not affected"
        );
    }

    #[test]
    fn unblocks_when_the_oldest_failure_leaves_the_window() {
        let t0 = Instant::now();
        let mut fa = FailedAttempts::new(3);
        let ip = v4(1);
        for s in [0, 10, 20] {
            fa.record_failure(ip, t0 + secs(s));
        }
        assert!(fa.is_blocked(ip, t0 + Duration::from_millis(59_999)));
        assert!(
            !fa.is_blocked(ip, t0 + secs(60)),
            "the failure at 0 s slid out"
        );
        fa.record_failure(ip, t0 + secs(61));
        assert!(
            fa.is_blocked(ip, t0 + secs(61)),
            "10 s, 20 s, 61 s are within a minute"
        );
        assert!(!fa.is_blocked(ip, t0 + secs(70)));
        assert!(!fa.is_blocked(ip, t0 + secs(200)));
        assert!(fa.is_empty(), "an idle source is forgotten when looked at");
    }

    #[test]
    fn failures_spread_over_more_than_a_minute_do_not_block() {
        let t0 = Instant::now();
        let mut fa = FailedAttempts::new(3);
        let ip = v4(1);
        for i in 0..20 {
            let now = t0 + secs(31 * i);
            assert!(!fa.is_blocked(ip, now), "at attempt {i}");
            fa.record_failure(ip, now);
        }
        assert!(fa.table[&ip].len() <= 3);
    }

    #[test]
    fn ipv6_counts_per_64_network_and_mapped_v4_as_v4() {
        let t0 = Instant::now();
        let mut fa = FailedAttempts::new(2);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        fa.record_failure(a, t0);
        fa.record_failure(b, t0);
        assert!(fa.is_blocked(a, t0));
        assert!(fa.is_blocked("2001:db8:1:2::42".parse().unwrap(), t0));
        assert!(!fa.is_blocked(other, t0));

        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        fa.record_failure(mapped, t0);
        fa.record_failure(v4(7), t0);
        assert!(fa.is_blocked(v4(7), t0));
        assert!(fa.is_blocked(mapped, t0));
        assert!(!fa.is_blocked(v4(8), t0));
    }

    #[test]
    fn zero_disables_blocking() {
        let t0 = Instant::now();
        let mut fa = FailedAttempts::new(0);
        for _ in 0..100 {
            fa.record_failure(v4(1), t0);
        }
        assert!(!fa.is_blocked(v4(1), t0));
        assert!(fa.is_empty());
    }

    #[test]
    fn sweep_drops_idle_sources() {
        let t0 = Instant::now();
        let mut fa = FailedAttempts::new(5);
        for i in 0..50 {
            fa.record_failure(v4(i), t0);
        }
        fa.record_failure(v4(200), t0 + secs(50));
        assert_eq!(fa.len(), 51);
        fa.sweep(t0 + secs(59));
        assert_eq!(fa.len(), 51);
        fa.sweep(t0 + secs(60));
        assert_eq!(fa.len(), 1);
        fa.sweep(t0 + secs(110));
        assert!(fa.is_empty());
    }

    #[test]
    fn the_table_is_bounded_and_keeps_blocked_sources() {
        let t0 = Instant::now();
        let max_entries = 100;
        let mut fa = FailedAttempts::with_limits(3, WINDOW, max_entries);
        let attacker = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
        for _ in 0..3 {
            fa.record_failure(attacker, t0);
        }
        // A spray of single failures from many addresses.
        for i in 0..10_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            fa.record_failure(ip, t0 + Duration::from_millis(u64::from(i)));
            assert!(fa.len() <= max_entries);
        }
        assert!(
            fa.is_blocked(attacker, t0 + secs(10)),
            "the blocked source survived"
        );

        // A table full of blocked sources tracks no newcomer, and stays bounded.
        let mut full = FailedAttempts::with_limits(1, WINDOW, 10);
        for i in 0..10 {
            full.record_failure(v4(i), t0);
        }
        full.record_failure(v4(50), t0 + secs(1));
        full.record_failure(v4(51), t0 + secs(1));
        assert_eq!(full.len(), 10);
        assert_eq!(full.untracked(), 2);
        assert!(!full.is_blocked(v4(50), t0 + secs(1)));
        // Once they are idle, there is room again.
        full.record_failure(v4(52), t0 + secs(61));
        assert!(full.is_blocked(v4(52), t0 + secs(61)));
        assert_eq!(full.len(), 1);
    }
}
