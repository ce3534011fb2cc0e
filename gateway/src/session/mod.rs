//! Sessions: the per-client state that outlives a connection.
//!
//! [`state`] is the sans-IO session (replay log, publish dedup,
//! subscriptions, what is due on the wire); [`registry`] holds a worker's
//! sessions in a slab; [`driver`] is the async task that runs one
//! connection and moves frames between the transport and the session;
//! [`credentials`] is a connection's verified token and its refresh
//! timeline (sans-IO).

pub mod credentials;
pub mod driver;
pub mod handshake;
pub mod registry;
pub mod state;
