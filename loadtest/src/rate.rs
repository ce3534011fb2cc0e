//! Open-loop pacing: when each message is due is decided by the clock alone.
//!
//! - [`Pacer`] is one sender's schedule, a pure function of time: message k
//!   is due at `first + k * interval`, whether or not earlier ones were
//!   answered. Latency is measured from that *intended* time, so a server
//!   stall shows up in every message it delayed instead of as a single slow
//!   sample (coordinated omission). A sender that fell behind sends all the
//!   due messages at once and their latency carries the delay.
//! - [`SlotPacer`] hands out evenly spaced start times to many tasks (the
//!   connection rate).
//! - [`Ticker`] is the only part that sleeps: one OS thread with a fine timer
//!   that wakes each sender when its next message is due. tokio's timer
//!   works in whole milliseconds (measured on our 2-core VM: `sleep_until`
//!   fires about 1 ms late at the median, 2 ms at p99), which would swamp
//!   the sub-millisecond latencies we measure; a thread waiting on a futex
//!   with a 1 ns timer slack wakes within a few tens of µs. The wake-up
//!   delay that remains is reported as the generator's send lag.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::mpsc;

/// Nanoseconds since the load generator started: the time base of
/// schedules and of the timestamps in payloads.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    /// The process-wide clock, started on first use.
    pub fn global() -> Clock {
        static START: OnceLock<Instant> = OnceLock::new();
        Clock {
            start: *START.get_or_init(Instant::now),
        }
    }

    /// Now, in ns since start.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant `ns` after start.
    pub fn instant(&self, ns: u64) -> Instant {
        self.start + Duration::from_nanos(ns)
    }
}

/// A rate that cannot be paced.
#[derive(Debug, Clone, Copy, PartialEq, Error)]
pub enum RateError {
    /// Zero, negative, NaN or infinite (a user error on `--rate` or
    /// `--connect-rate`).
    #[error("a rate must be a positive number of messages per second, not {0}")]
    NotPositive(f64),
    /// Faster than one message per nanosecond.
    #[error("{0} per second is faster than one per nanosecond")]
    TooFast(f64),
}

/// The interval between two messages at `rate_per_s`, in ns.
pub fn interval_ns(rate_per_s: f64) -> Result<u64, RateError> {
    if !rate_per_s.is_finite() || rate_per_s <= 0.0 {
        return Err(RateError::NotPositive(rate_per_s));
    }
    let ns = 1e9 / rate_per_s;
    if ns < 1.0 {
        return Err(RateError::TooFast(rate_per_s));
    }
    // Rounded to whole ns; slower than one per 584 years saturates.
    Ok(ns.round().min(u64::MAX as f64) as u64)
}

/// One sender's open-loop schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pacer {
    first_ns: u64,
    interval_ns: u64,
    end_ns: u64,
    next: u64,
}

impl Pacer {
    /// Messages due at `first_ns`, then every `1/rate` s, strictly before
    /// `end_ns`.
    pub fn new(rate_per_s: f64, first_ns: u64, end_ns: u64) -> Result<Self, RateError> {
        Ok(Self {
            first_ns,
            interval_ns: interval_ns(rate_per_s)?,
            end_ns,
            next: 0,
        })
    }

    /// When the next message is due; `None` once the schedule is over.
    pub fn next_due(&self) -> Option<u64> {
        let t = self
            .next
            .checked_mul(self.interval_ns)
            .and_then(|d| d.checked_add(self.first_ns))?;
        (t < self.end_ns).then_some(t)
    }

    /// Takes the next message if it is due at `now_ns`, returning its
    /// intended send time. Call until `None` to catch up after a delay.
    pub fn take_due(&mut self, now_ns: u64) -> Option<u64> {
        let t = self.next_due()?;
        if t <= now_ns {
            self.next += 1;
            Some(t)
        } else {
            None
        }
    }
}

/// Evenly spaced start times shared by many tasks: the k-th caller gets
/// `first + k * interval`.
#[derive(Debug)]
pub struct SlotPacer {
    first_ns: u64,
    interval_ns: u64,
    taken: AtomicU64,
}

impl SlotPacer {
    /// Slots at `rate_per_s` from `first_ns` on.
    pub fn new(rate_per_s: f64, first_ns: u64) -> Result<Self, RateError> {
        Ok(Self {
            first_ns,
            interval_ns: interval_ns(rate_per_s)?,
            taken: AtomicU64::new(0),
        })
    }

    /// The next free slot's time.
    pub fn next_slot(&self) -> u64 {
        let k = self.taken.fetch_add(1, Ordering::Relaxed);
        self.first_ns
            .saturating_add(k.saturating_mul(self.interval_ns))
    }
}

/// Below this, the ticker spins instead of sleeping: a sleep that short
/// would overshoot anyway.
const SPIN_BELOW_NS: u64 = 15_000;

struct TickerState {
    /// (due, sender index), earliest first.
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    senders: Vec<(Pacer, mpsc::Sender<()>)>,
    stop: bool,
}

struct TickerShared {
    state: Mutex<TickerState>,
    wake: Condvar,
}

/// A thread that wakes each registered sender when its next message is due.
pub struct Ticker {
    shared: Arc<TickerShared>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Starts the ticker thread.
    pub fn start(clock: Clock) -> std::io::Result<Self> {
        let shared = Arc::new(TickerShared {
            state: Mutex::new(TickerState {
                heap: BinaryHeap::new(),
                senders: Vec::new(),
                stop: false,
            }),
            wake: Condvar::new(),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("loadtest-ticker".into())
            .spawn(move || run_ticker(&thread_shared, clock))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Follows `pacer`'s schedule: the receiver gets a wake-up (coalesced)
    /// whenever a message of the schedule is due. The caller keeps its own
    /// copy of the pacer to take the due messages.
    pub fn register(&self, pacer: Pacer) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel(1);
        let mut st = lock(&self.shared.state);
        if let Some(due) = pacer.next_due() {
            // Wake the thread only when it sleeps past this one: waking it
            // for every registration costs a context switch each, which
            // made registering 1,000 senders take 100 ms.
            let earlier = st.heap.peek().is_none_or(|Reverse((top, _))| due < *top);
            let idx = st.senders.len();
            st.senders.push((pacer, tx));
            st.heap.push(Reverse((due, idx)));
            if earlier {
                self.shared.wake.notify_one();
            }
        }
        rx
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Asks the kernel for a 1 ns timer slack on the calling thread (the
/// default 50 µs would add to every wake-up). Best effort: without it the
/// ticker is only less precise.
fn tighten_timer_slack() {
    let Ok(link) = std::fs::read_link("/proc/thread-self") else {
        return;
    };
    let Some(tid) = link.file_name() else { return };
    let path = std::path::Path::new("/proc")
        .join(tid)
        .join("timerslack_ns");
    let _ = std::fs::write(path, "1");
}

fn run_ticker(shared: &TickerShared, clock: Clock) {
    tighten_timer_slack();
    let mut st = lock(&shared.state);
    loop {
        if st.stop {
            return;
        }
        let now = clock.now_ns();
        let Some(&Reverse((due, idx))) = st.heap.peek() else {
            st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
            continue;
        };
        if due > now {
            let wait = due - now;
            if wait < SPIN_BELOW_NS {
                drop(st);
                std::hint::spin_loop();
                st = lock(&shared.state);
            } else {
                st = shared
                    .wake
                    .wait_timeout(st, Duration::from_nanos(wait))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            continue;
        }
        st.heap.pop();
        let (pacer, tx) = &mut st.senders[idx];
        while pacer.take_due(now).is_some() {}
        let alive = match tx.try_send(()) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(())) => true,
            Err(mpsc::error::TrySendError::Closed(())) => false,
        };
        if let Some(next) = pacer.next_due().filter(|_| alive) {
            st.heap.push(Reverse((next, idx)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_follow_the_schedule_not_the_sends() {
        // 1000 msg/s from t=5ms to t=10ms: due at 5,6,7,8,9 ms.
        let mut p = Pacer::new(1000.0, 5_000_000, 10_000_000).unwrap();
        assert_eq!(p.take_due(4_999_999), None, "not due yet");
        assert_eq!(p.take_due(5_000_000), Some(5_000_000));
        // The sender was stalled until 8.5 ms: everything due is handed out
        // at once, each with its own intended time.
        let caught_up: Vec<_> = std::iter::from_fn(|| p.take_due(8_500_000)).collect();
        assert_eq!(caught_up, vec![6_000_000, 7_000_000, 8_000_000]);
        assert_eq!(p.next_due(), Some(9_000_000));
        assert_eq!(p.take_due(20_000_000), Some(9_000_000));
        assert_eq!(p.next_due(), None, "the end is exclusive");
        assert_eq!(p.take_due(u64::MAX), None);
    }

    #[test]
    fn fractional_rates_and_bad_rates() {
        assert_eq!(interval_ns(3.0), Ok(333_333_333));
        assert_eq!(interval_ns(0.5), Ok(2_000_000_000));
        assert!(matches!(interval_ns(0.0), Err(RateError::NotPositive(_))));
        assert!(matches!(interval_ns(-1.0), Err(RateError::NotPositive(_))));
        assert!(matches!(
            interval_ns(f64::NAN),
            Err(RateError::NotPositive(_))
        ));
        assert!(matches!(interval_ns(2e9), Err(RateError::TooFast(_))));
        let mut p = Pacer::new(10.0, 0, 1_000_000_000).unwrap();
        assert_eq!(std::iter::from_fn(|| p.take_due(u64::MAX)).count(), 10);
        let empty = Pacer::new(10.0, 5, 5).unwrap();
        assert_eq!(empty.next_due(), None);
    }

    #[test]
    fn slots_are_evenly_spaced_across_callers() {
        let s = SlotPacer::new(4.0, 100).unwrap();
        let slots: Vec<_> = (0..3).map(|_| s.next_slot()).collect();
        assert_eq!(slots, vec![100, 250_000_100, 500_000_100]);
    }

    #[test]
    fn ticker_wakes_a_sender_for_each_due_message() {
        let clock = Clock::global();
        let ticker = Ticker::start(clock).unwrap();
        let start = clock.now_ns() + 2_000_000;
        let mut pacer = Pacer::new(500.0, start, start + 20_000_000).unwrap();
        let mut wake = ticker.register(pacer.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let taken = rt.block_on(async {
            let mut n = 0;
            while wake.recv().await.is_some() {
                while let Some(intended) = pacer.take_due(clock.now_ns()) {
                    assert!(clock.now_ns() >= intended);
                    n += 1;
                }
                if pacer.next_due().is_none() {
                    break;
                }
            }
            n
        });
        assert_eq!(taken, 10);
    }
}
