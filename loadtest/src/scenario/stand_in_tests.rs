//! The Ferry scenarios run end to end against the SDK stand-in's
//! in-process broker (`mem://`): the loops stop by themselves, count what
//! they should, and the checks catch loss and duplicates.

use std::sync::Arc;
use std::time::Duration;

use super::{Ctx, Settings, TransportKind, report};
use crate::report::Report;

fn ctx(url: &str, sessions: usize, rate: f64, secs: f64) -> Arc<Ctx> {
    Ctx::new(Settings {
        transport: TransportKind::Ws,
        url: url.into(),
        addr: ([127, 0, 0, 1], 0).into(),
        ca: None,
        insecure_dev: false,
        server_name: None,
        token: None,
        sessions,
        rate,
        duration: Duration::from_secs_f64(secs),
        payload: 32,
        gateway_pid: None,
        connect_rate: 10_000.0,
        connect_timeout: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(1),
        allow_remote: false,
    })
    .unwrap()
}

fn assert_clean(r: &Report) {
    assert_eq!(r.sessions.failed, 0, "{r:?}");
    assert!(r.messages.sent > 0, "{r:?}");
    assert_eq!(
        (r.messages.lost, r.messages.duplicated, r.messages.reordered),
        (0, 0, 0),
        "{r:?}"
    );
    assert!(r.errors.is_empty(), "{r:?}");
    assert!(r.latency_us.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_open_and_closed_loop() {
    let c = ctx("mem://echo-open", 20, 200.0, 0.3);
    let out = super::echo::run(c.clone(), false).await.unwrap();
    let r = report(&c, &out);
    assert_clean(&r);
    // 20 sessions × 200/s × 0.3 s, give or take the edges.
    assert!((1100..=1300).contains(&r.messages.sent), "{r:?}");
    assert_eq!(r.messages.delivered, r.messages.sent);

    let c = ctx("mem://echo-closed", 5, 1.0, 0.2);
    let out = super::echo::run(c.clone(), true).await.unwrap();
    let r = report(&c, &out);
    assert_clean(&r);
    assert_eq!(r.scenario, "echo-closed-loop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_delivers_every_message_to_every_subscriber() {
    let c = ctx("mem://fanout", 10, 100.0, 0.3);
    let out = super::fanout::run(c.clone(), 2).await.unwrap();
    let r = report(&c, &out);
    assert_clean(&r);
    assert_eq!(r.sessions.established, 12);
    assert_eq!(r.messages.delivered, r.messages.sent * 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_survives_cuts() {
    let c = ctx("mem://resume", 10, 100.0, 0.5);
    let out = super::resume::run(c.clone(), Duration::from_millis(50))
        .await
        .unwrap();
    let r = report(&c, &out);
    assert_clean(&r);
    let cuts = out
        .extra
        .iter()
        .find(|(k, _)| k == "connections")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(!cuts.starts_with("0 cuts"), "{cuts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_cycles_and_connect_and_idle() {
    let c = ctx("mem://churn", 4, 1.0, 0.3);
    let out = super::churn::run(c.clone(), None, Duration::from_secs(1))
        .await
        .unwrap();
    let r = report(&c, &out);
    assert_clean(&r);
    assert_eq!(r.messages.delivered, r.messages.sent);
    assert!(r.sessions.established >= 4);

    let c = ctx("mem://connect", 50, 1.0, 0.1);
    let out = super::connect::run(c.clone()).await.unwrap();
    let r = report(&c, &out);
    assert_eq!(r.sessions.established, 50);
    assert!(r.throughput_msgs_per_s > 0.0);

    let c = ctx("mem://idle", 50, 1.0, 0.1);
    let out = super::idle::run(c.clone()).await.unwrap();
    let r = report(&c, &out);
    assert_eq!(r.sessions.established, 50);
    assert!(r.errors.is_empty(), "{r:?}");
    assert!(r.latency_us.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_catch_loss_and_duplicates() {
    let c = ctx("mem://lossy?lossy", 4, 500.0, 0.3);
    let out = super::echo::run(c.clone(), false).await.unwrap();
    let r = report(&c, &out);
    assert!(r.messages.lost > 0, "{r:?}");
    assert!(r.errors.contains_key("protocol: session seq gap"), "{r:?}");
    assert!(!r.failures(0).is_empty());

    let c = ctx("mem://dup?dup", 4, 500.0, 0.3);
    let out = super::echo::run(c.clone(), false).await.unwrap();
    let r = report(&c, &out);
    assert!(r.messages.duplicated > 0, "{r:?}");
    assert_eq!(r.messages.lost, 0, "{r:?}");
    assert!(!r.failures(0).is_empty());
}
