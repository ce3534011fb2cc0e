//! Client SDK helpers for the end-to-end tests.

use std::time::Duration;

use ferry_protocol::client::{Client, ClientConfig, Delivery, Event, Events, TlsTrust, Transport};

use crate::harness::Gateway;

/// A client configuration for `gw` over `transport`, trusting its
/// development certificate, reconnecting quickly.
pub fn config(gw: &Gateway, transport: Transport) -> ClientConfig {
    let url = match transport {
        Transport::Ws => gw.ws_url(),
        Transport::Wss => gw.wss_url(),
        Transport::Quic => gw.quic_url(),
    };
    let mut c = ClientConfig::new(transport, url);
    if transport.uses_tls() {
        c.tls = Some(TlsTrust::CaFile(gw.cert()));
        c.server_name = Some("localhost".into());
    }
    c.reconnect.initial_backoff = Duration::from_millis(20);
    c.reconnect.max_backoff = Duration::from_millis(200);
    c
}

/// Connects to `gw` over `transport`.
pub async fn connect(gw: &Gateway, transport: Transport) -> (Client, Events) {
    Client::connect(config(gw, transport))
        .await
        .unwrap_or_else(|e| panic!("connect over {transport:?}: {e}"))
}

/// Reads events until `n` messages arrived (other events are returned in
/// the second list); fails after `limit`.
pub async fn messages(
    events: &mut Events,
    n: usize,
    limit: Duration,
) -> (Vec<Delivery>, Vec<Event>) {
    let mut got = Vec::with_capacity(n);
    let mut others = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::Message(d))) => got.push(d),
            Ok(Some(other)) => others.push(other),
            Ok(None) => panic!("event stream ended after {} of {n} messages", got.len()),
            Err(_) => panic!(
                "only {} of {n} messages within {limit:?}; other events: {others:?}",
                got.len()
            ),
        }
    }
    (got, others)
}

/// Asserts the session seqs are 1.. without gap or duplicate from `first`.
pub fn assert_contiguous_seqs(deliveries: &[Delivery], first: u64) {
    for (i, d) in deliveries.iter().enumerate() {
        assert_eq!(d.seq, first + i as u64, "seq gap or duplicate at index {i}");
    }
}

/// The payloads as u64 (tests publish 8-byte big-endian counters).
pub fn values(deliveries: &[Delivery]) -> Vec<u64> {
    deliveries
        .iter()
        .map(|d| u64::from_be_bytes(d.payload.as_ref()[..8].try_into().expect("8-byte payload")))
        .collect()
}

/// An 8-byte big-endian counter payload, padded to `size`.
pub fn payload(value: u64, size: usize) -> bytes::Bytes {
    let mut v = value.to_be_bytes().to_vec();
    v.resize(size.max(8), 0);
    bytes::Bytes::from(v)
}
