//! Channels and fan-out.
//!
//! Every channel has exactly one sequencer: the worker its name hashes to
//! ([`router::owner_of`]). The sequencer gives each message the channel's next
//! offset and sends it, over FIFO queues, to every worker that has
//! subscribers; the worker then appends it to each local subscriber's replay
//! log ([`local::LocalChannels`]). One sequencer and FIFO queues give every
//! subscriber the same order, whatever worker it lives on.

pub mod local;
pub mod router;
pub mod sequencer;
