//! Connections that have not finished their handshake yet, per worker:
//! one deadline from accept to HELLO, and a bound on how many there are.
//!
//! A connection costs a file descriptor and a task from the moment it is
//! accepted, long before it is a session: a client that opens connections
//! and then dribbles its TLS, HTTP upgrade or HELLO bytes holds them for
//! free. So every connection gets, at accept, one deadline for the whole
//! handshake (`session.handshake_timeout`, not per phase), and each worker
//! keeps at most `limits.max_pending_handshakes` of them.
//!
//! When the bound is reached, a new connection sheds the **oldest**
//! pending one rather than being refused. Refusing new connections would
//! hand the listener to whoever holds the slots: a flood of slow
//! connections refilled as they expire keeps every real client out.
//! Shedding the oldest lets every new connection in, and a real client
//! only has to finish its handshake before `max_pending_handshakes` newer
//! connections arrive: the attack must keep opening connections at that
//! rate for as long as it lasts, instead of merely holding them.
//!
//! A connection leaves the table when its HELLO has arrived; from then on
//! the session's own rules (authentication, limits) apply and it is never
//! shed, since tearing down an attaching session midway could lose it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

use tokio::task::AbortHandle;

/// Most pending handshakes per worker when the configuration leaves it
/// to the gateway (`limits.max_pending_handshakes = 0`).
const AUTO_CEILING: usize = 1024;
/// Fewest pending handshakes per worker chosen automatically.
const AUTO_FLOOR: usize = 16;

/// The per-worker bound for `configured` (`0`: automatic): a quarter of
/// the process's open-files limit shared among `workers`, within
/// 16..=1024, so that slow handshakes can never exhaust the descriptors
/// that sessions, listeners and the ops port need.
pub fn per_worker_bound(configured: usize, workers: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    let open_files = open_files_limit().unwrap_or(1024);
    let share = open_files / 4 / workers.max(1) as u64;
    usize::try_from(share)
        .unwrap_or(AUTO_CEILING)
        .clamp(AUTO_FLOOR, AUTO_CEILING)
}

/// The soft limit on open files of this process.
fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into a struct we own, passed
    // by a valid mutable pointer for the duration of the call.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0).then_some(limit.rlim_cur)
}

/// One worker's pending handshakes, oldest first.
#[derive(Debug, Default)]
pub struct PendingHandshakes {
    table: RefCell<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    /// By id, which is accept order.
    open: BTreeMap<u64, Slot>,
}

#[derive(Debug)]
struct Slot {
    /// For the metric counting sheds.
    transport: &'static str,
    /// The connection's task, aborted to shed it (which drops and so
    /// closes its socket).
    task: Option<AbortHandle>,
}

impl PendingHandshakes {
    /// Counts in a `transport` connection accepted at `accepted` that must
    /// finish its handshake by `deadline`; sheds the oldest pending ones
    /// while `max` (at least 1) are pending. Returns the ticket and how
    /// many were shed.
    pub fn admit(
        self: &Rc<Self>,
        max: usize,
        transport: &'static str,
        accepted: Instant,
        deadline: Instant,
    ) -> (Pending, usize) {
        let mut table = self.table.borrow_mut();
        let mut shed = 0;
        while table.open.len() >= max.max(1) {
            let Some((_, slot)) = table.open.pop_first() else {
                break;
            };
            if let Some(task) = slot.task {
                task.abort();
            }
            crate::metrics::count_handshake(slot.transport, "shed");
            shed += 1;
        }
        table.next_id += 1;
        let id = table.next_id;
        table.open.insert(
            id,
            Slot {
                transport,
                task: None,
            },
        );
        let pending = Pending {
            handshakes: self.clone(),
            id,
            accepted,
            deadline,
        };
        (pending, shed)
    }

    /// Records the task handling pending connection `id`, so that it can
    /// be shed.
    pub fn attach(&self, id: u64, task: AbortHandle) {
        match self.table.borrow_mut().open.get_mut(&id) {
            Some(slot) => slot.task = Some(task),
            // Shed before it ever ran.
            None => task.abort(),
        }
    }

    /// Handshakes pending now.
    pub fn len(&self) -> usize {
        self.table.borrow().open.len()
    }

    /// Whether none is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A connection whose handshake is not finished; leaves the table when
/// dropped.
#[derive(Debug)]
pub struct Pending {
    handshakes: Rc<PendingHandshakes>,
    id: u64,
    accepted: Instant,
    deadline: Instant,
}

impl Pending {
    /// Its id in the table.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// When the connection was accepted.
    pub fn accepted(&self) -> Instant {
        self.accepted
    }

    /// When the whole handshake, up to HELLO, must be done.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.handshakes.table.borrow_mut().open.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_full_table_sheds_the_oldest_and_admits_the_new() {
        let t = Rc::new(PendingHandshakes::default());
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        let (a, shed) = t.admit(2, "ws", now, later);
        assert_eq!(shed, 0);
        let (b, _) = t.admit(2, "ws", now, later);
        let (c, shed) = t.admit(2, "ws", now, later);
        assert_eq!(shed, 1);
        assert_eq!(t.len(), 2);
        // `a` was shed: dropping it later removes nothing else.
        drop(a);
        assert_eq!(t.len(), 2);
        drop(b);
        drop(c);
        assert!(t.is_empty());
    }

    #[test]
    fn a_lowered_bound_sheds_down_to_it() {
        let t = Rc::new(PendingHandshakes::default());
        let now = Instant::now();
        let held: Vec<_> = (0..5).map(|_| t.admit(10, "ws", now, now).0).collect();
        let (_new, shed) = t.admit(2, "ws", now, now);
        assert_eq!(shed, 4);
        assert_eq!(t.len(), 2);
        drop(held);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn the_automatic_bound_stays_within_its_range() {
        assert_eq!(per_worker_bound(7, 4), 7);
        let auto = per_worker_bound(0, 1);
        assert!((AUTO_FLOOR..=AUTO_CEILING).contains(&auto));
        assert_eq!(per_worker_bound(0, 1_000_000), AUTO_FLOOR);
    }
}
