//! Thread-per-core runtime: one pinned thread per worker, each with its own
//! current-thread tokio runtime, listeners and slabs; workers talk only
//! through the bounded queues of [`mesh`].

pub mod mesh;
pub mod state;
pub mod worker;
