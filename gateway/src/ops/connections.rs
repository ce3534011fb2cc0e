//! The ops listener's open connections, bounded so that the probes keep
//! answering under a connection flood.
//!
//! A failing liveness probe restarts the gateway, and a restart loses every
//! session, so the bound must never turn a probe away because idle or slow
//! connections hold every slot. When the table is full, a new connection
//! closes the one that has been idle the longest instead: idle means no
//! request in progress (just accepted, between keep-alive requests, or
//! still dribbling its headers). A flood then costs the attacker a
//! connection per connection it displaces, and a probe, being the newest,
//! is the last to go. A connection with a request in progress is never
//! evicted; only when every slot has one is the new connection refused.
//!
//! The table is shared by the accept loop and the connection tasks (the
//! ops runtime needs `Send` tasks, hence the mutex; it is never held
//! across an `.await`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::task::AbortHandle;

/// The open ops connections.
#[derive(Debug, Default)]
pub struct Connections {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Slot>,
}

#[derive(Debug)]
struct Slot {
    /// `None` while a request is in progress.
    idle_since: Option<Instant>,
    /// The connection's task, aborted to evict it (which drops and so
    /// closes its socket).
    task: Option<AbortHandle>,
}

impl Connections {
    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic elsewhere while holding the lock leaves the table
        // consistent (every change is one map operation).
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new connection, evicting the longest-idle one when `max`
    /// are open; `None` when all `max` have a request in progress.
    pub fn admit(self: &Arc<Self>, max: usize, now: Instant) -> Option<Ticket> {
        let mut table = self.table();
        // A reload may have lowered `max`: evict down to it.
        while table.open.len() >= max.max(1) {
            let oldest = table
                .open
                .iter()
                .filter_map(|(id, slot)| slot.idle_since.map(|since| (since, *id)))
                .min();
            let (_, id) = oldest?;
            if let Some(task) = table.open.remove(&id).and_then(|slot| slot.task) {
                task.abort();
            }
            tracing::debug!("ops listener full: closed the connection idle the longest");
        }
        table.next_id += 1;
        let id = table.next_id;
        table.open.insert(
            id,
            Slot {
                idle_since: Some(now),
                task: None,
            },
        );
        Some(Ticket {
            connections: self.clone(),
            id,
        })
    }

    /// Records the task serving connection `id`, so that it can be evicted.
    pub fn attach(&self, id: u64, task: AbortHandle) {
        match self.table().open.get_mut(&id) {
            Some(slot) => slot.task = Some(task),
            // Evicted before it ever ran.
            None => task.abort(),
        }
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.table().open.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn set_idle(&self, id: u64, idle_since: Option<Instant>) {
        if let Some(slot) = self.table().open.get_mut(&id) {
            slot.idle_since = idle_since;
        }
    }
}

/// One admitted connection; leaves the table when dropped.
#[derive(Debug)]
pub struct Ticket {
    connections: Arc<Connections>,
    id: u64,
}

impl Ticket {
    /// This connection's id in the table.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Marks a request in progress until the returned guard drops; the
    /// connection cannot be evicted meanwhile.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.connections.set_idle(self.id, None);
        Busy {
            ticket: self.clone(),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.connections.table().open.remove(&self.id);
    }
}

/// A request in progress on a connection.
#[derive(Debug)]
pub struct Busy {
    ticket: Arc<Ticket>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.ticket
            .connections
            .set_idle(self.ticket.id, Some(Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_full_table_evicts_the_connection_idle_the_longest() {
        let c = Arc::new(Connections::default());
        let t0 = Instant::now();
        let a = c.admit(2, t0).expect("a");
        let b = c.admit(2, t0 + Duration::from_secs(1)).expect("b");
        let _new = c.admit(2, t0 + Duration::from_secs(2)).expect("admitted");
        assert_eq!(c.len(), 2);
        // `a` was idle the longest: it left the table, `b` stayed.
        drop(b);
        assert_eq!(c.len(), 1);
        drop(a);
        assert_eq!(c.len(), 1, "a's slot was already gone");
    }

    #[test]
    fn a_request_in_progress_is_never_evicted() {
        let c = Arc::new(Connections::default());
        let t0 = Instant::now();
        let a = Arc::new(c.admit(2, t0).expect("a"));
        let busy = a.busy();
        let b = Arc::new(c.admit(2, t0 + Duration::from_secs(1)).expect("b"));
        let _new = c.admit(2, t0 + Duration::from_secs(2)).expect("evicts b");
        let _b_busy = b.busy(); // b is gone: marking it changes nothing
        assert_eq!(c.len(), 2);
        let _c_busy = Arc::new(c.admit(2, t0).expect("evicts _new")).busy();
        // Both slots now have a request in progress: refused.
        assert!(c.admit(2, t0 + Duration::from_secs(3)).is_none());
        drop(busy);
        assert!(c.admit(2, t0 + Duration::from_secs(4)).is_some());
    }
}
