//! The Ferry client SDK, as the scenarios see it.
//!
//! With the cargo feature `sdk` this is the real client,
//! `ferry_protocol::client`. Without it (the default until the SDK is on
//! main) it is `shim`, a stand-in with the same signatures whose
//! `Client::connect` fails: the Ferry scenarios are compiled and linted
//! against the announced API today, and `main` refuses to run them.

#[cfg(feature = "sdk")]
pub use ferry_protocol::client::{
    Client, ClientConfig, Delivery, Event, Events, TlsTrust, Transport,
};

/// Whether the real SDK is built in.
#[cfg(feature = "sdk")]
pub const AVAILABLE: bool = true;

#[cfg(not(feature = "sdk"))]
mod shim;
#[cfg(not(feature = "sdk"))]
pub use shim::{Client, ClientConfig, Delivery, Event, Events, TlsTrust, Transport};

/// Whether the real SDK is built in.
#[cfg(not(feature = "sdk"))]
pub const AVAILABLE: bool = false;
