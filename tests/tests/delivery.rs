//! The delivery guarantees end to end through the client SDK, over
//! WebSocket and QUIC: one order per channel, no gap, no duplicate, through
//! abrupt transport loss, address changes and transport switches.

use std::time::Duration;

use ferry_protocol::WelcomeOutcome;
use ferry_protocol::client::{Event, Transport};
use ferry_tests::gateway_bin;
use ferry_tests::harness::{Gateway, GatewayOptions};
use ferry_tests::sdk::{assert_contiguous_seqs, config, connect, messages, payload, values};

const LIMIT: Duration = Duration::from_secs(20);

fn start(workers: usize) -> Gateway {
    Gateway::start(gateway_bin!(), GatewayOptions::default().workers(workers)).expect("gateway")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_publishers_across_workers_one_order_for_every_subscriber() {
    let gw = start(2);
    let mut subscribers = Vec::new();
    for i in 0..6 {
        let transport = if i % 2 == 0 {
            Transport::Ws
        } else {
            Transport::Quic
        };
        let (c, ev) = connect(&gw, transport).await;
        c.subscribe("room").await.expect("subscribe");
        subscribers.push((c, ev));
    }
    let publishers = 4u64;
    let per_publisher = 150u64;
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let transport = if p % 2 == 0 {
            Transport::Ws
        } else {
            Transport::Quic
        };
        let (c, _ev) = connect(&gw, transport).await;
        tasks.push(tokio::spawn(async move {
            for i in 0..per_publisher {
                c.publish("room", payload(p * 1_000_000 + i, 16))
                    .await
                    .expect("publish");
            }
            c.wait_acked().await.expect("acked");
        }));
    }
    for t in tasks {
        t.await.expect("publisher");
    }
    let total = (publishers * per_publisher) as usize;
    let mut orders = Vec::new();
    for (_c, ev) in &mut subscribers {
        let (got, _) = messages(ev, total, LIMIT).await;
        assert_contiguous_seqs(&got, 1);
        let first = got[0].channel_offset;
        for (i, d) in got.iter().enumerate() {
            assert_eq!(d.channel_offset, first + i as u64, "channel offsets +1");
        }
        let vals = values(&got);
        // Each publisher's messages keep its own order.
        for p in 0..publishers {
            let mine: Vec<u64> = vals
                .iter()
                .copied()
                .filter(|v| v / 1_000_000 == p)
                .collect();
            assert_eq!(
                mine,
                (0..per_publisher)
                    .map(|i| p * 1_000_000 + i)
                    .collect::<Vec<_>>()
            );
        }
        orders.push(vals);
    }
    for o in &orders[1..] {
        assert_eq!(o, &orders[0], "every subscriber sees the same order");
    }
}

async fn loss_during_traffic(transport: Transport) {
    let gw = start(2);
    let (sub, mut sub_events) = connect(&gw, transport).await;
    sub.subscribe("lossy").await.expect("subscribe");
    let (publisher, _pe) = connect(&gw, transport).await;
    let total = 400u64;
    let mut received = Vec::new();
    for i in 0..total {
        publisher
            .publish("lossy", payload(i, 32))
            .await
            .expect("publish");
        if i % 50 == 25 {
            sub.kill_transport();
        }
        if i % 130 == 60 {
            publisher.kill_transport();
        }
        if i % 20 == 0 {
            // Let some traffic through between the cuts.
            while let Ok(Some(Event::Message(d))) =
                tokio::time::timeout(Duration::from_millis(5), sub_events.recv()).await
            {
                received.push(d);
            }
        }
    }
    publisher.wait_acked().await.expect("acked");
    let rest = total as usize - received.len();
    let (more, others) = messages(&mut sub_events, rest, LIMIT).await;
    received.extend(more);
    assert_contiguous_seqs(&received, 1);
    assert_eq!(
        values(&received),
        (0..total).collect::<Vec<_>>(),
        "no loss, no duplicate, in order"
    );
    assert!(
        !others
            .iter()
            .any(|e| matches!(e, Event::SessionLost { .. })),
        "sessions must resume, not restart: {others:?}"
    );
    assert!(sub.stats().resumes_ok >= 1, "the subscriber resumed");
    assert!(publisher.stats().resumes_ok >= 1, "the publisher resumed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abrupt_loss_during_traffic_over_websocket_loses_and_doubles_nothing() {
    loss_during_traffic(Transport::Ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abrupt_loss_during_traffic_over_quic_loses_and_doubles_nothing() {
    loss_during_traffic(Transport::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_address_changes_keep_the_connection_on_two_workers() {
    let gw = start(2);
    let (sub, mut events) = connect(&gw, Transport::Quic).await;
    sub.subscribe("moving").await.expect("subscribe");
    let (publisher, _pe) = connect(&gw, Transport::Ws).await;
    let mut received = Vec::new();
    let mut next = 0u64;
    for _ in 0..8 {
        for _ in 0..25 {
            publisher
                .publish("moving", payload(next, 16))
                .await
                .expect("publish");
            next += 1;
        }
        let (got, _) = messages(&mut events, 10, LIMIT).await;
        received.extend(got);
        // A new local port: NAT rebinding, or Wi-Fi to cellular.
        sub.rebind().expect("rebind");
    }
    let (got, _) = messages(&mut events, next as usize - received.len(), LIMIT).await;
    received.extend(got);
    assert_contiguous_seqs(&received, 1);
    assert_eq!(values(&received), (0..next).collect::<Vec<_>>());
    let stats = sub.stats();
    assert_eq!(
        stats.reconnects, 0,
        "the QUIC connection survived every address change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumes_across_transports_both_ways() {
    let gw = start(2);
    let (c, mut events) = connect(&gw, Transport::Quic).await;
    c.subscribe("switch").await.expect("subscribe");
    let session = c.session_id();
    let (publisher, _pe) = connect(&gw, Transport::Ws).await;
    let mut received = Vec::new();
    let mut next = 0u64;
    for (hop, to) in [Transport::Ws, Transport::Quic].into_iter().enumerate() {
        for _ in 0..20 {
            publisher
                .publish("switch", payload(next, 16))
                .await
                .expect("publish");
            next += 1;
        }
        let (got, _) = messages(&mut events, 5, LIMIT).await;
        received.extend(got);
        // UDP gets blocked (or unblocked): continue over the other transport.
        c.switch_endpoint(&config(&gw, to)).await.expect("switch");
        c.kill_transport();
        for _ in 0..20 {
            publisher
                .publish("switch", payload(next, 16))
                .await
                .expect("publish");
            next += 1;
        }
        let mut resumed = false;
        let deadline = tokio::time::Instant::now() + LIMIT;
        while !resumed {
            match tokio::time::timeout_at(deadline, events.recv())
                .await
                .expect("event")
            {
                Some(Event::Message(d)) => received.push(d),
                Some(Event::Connected { outcome, .. }) => {
                    assert_eq!(outcome, WelcomeOutcome::Resumed, "hop {hop}");
                    resumed = true;
                }
                Some(Event::SessionLost { .. }) => panic!("session lost on hop {hop}"),
                Some(_) => {}
                None => panic!("events ended"),
            }
        }
        assert_eq!(c.session_id(), session, "same session after hop {hop}");
    }
    let (got, _) = messages(&mut events, next as usize - received.len(), LIMIT).await;
    received.extend(got);
    assert_contiguous_seqs(&received, 1);
    assert_eq!(values(&received), (0..next).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_end_to_end_with_the_gateway_certificate() {
    let gw = start(1);
    let (c, mut events) = connect(&gw, Transport::Wss).await;
    c.subscribe("secure").await.expect("subscribe");
    for i in 0..10 {
        c.publish("secure", payload(i, 8)).await.expect("publish");
    }
    let (got, _) = messages(&mut events, 10, LIMIT).await;
    assert_eq!(values(&got), (0..10).collect::<Vec<_>>());
}
