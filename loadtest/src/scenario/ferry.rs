//! What the Ferry scenarios share: building the client configuration, and
//! the receiving side of a session, which checks every delivery.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Ctx, Settings, TransportKind};
use crate::payload::Stamp;
use crate::stats::{
    DeliveryTotals, EventKind, LatencyBuf, Recorder, SessionCheck, StreamCheck, latency_us,
};
use ferry_protocol::client::{Client, ClientConfig, Delivery, Event, Events, TlsTrust, Transport};

/// The client configuration for the run's settings.
pub fn config(set: &Settings) -> ClientConfig {
    let transport = match set.transport {
        TransportKind::Ws => Transport::Ws,
        TransportKind::Wss => Transport::Wss,
        TransportKind::Quic => Transport::Quic,
    };
    let mut cfg = ClientConfig::new(transport, set.url.as_str());
    cfg.tls = match (&set.ca, set.insecure_dev) {
        (Some(ca), _) => Some(TlsTrust::CaFile(ca.clone())),
        (None, true) => Some(TlsTrust::InsecureDev),
        (None, false) => None,
    };
    cfg.token = set.token.clone();
    cfg.server_name = set.server_name.clone();
    cfg
}

/// Opens one session; the error is a short reason for the report.
pub async fn connect(ctx: &Ctx) -> Result<(Client, Events), String> {
    Client::connect(config(&ctx.set))
        .await
        .map_err(|e| format!("connect: {e}"))
}

/// Opens one session and subscribes it to `channel`.
pub async fn connect_subscribed(ctx: &Ctx, channel: &str) -> Result<Subscribed, String> {
    let (client, events) = connect(ctx).await?;
    match client.subscribe(channel).await {
        Ok(offset) => Ok(Subscribed {
            client,
            events,
            channel: channel.to_owned(),
            offset,
        }),
        Err(e) => {
            let _ = tokio::time::timeout(Duration::from_secs(2), client.close()).await;
            Err(format!("subscribe: {e}"))
        }
    }
}

/// A session subscribed to one channel.
pub struct Subscribed {
    /// The client.
    pub client: Client,
    /// Its events.
    pub events: Events,
    /// The channel.
    pub channel: String,
    /// The channel offset at subscription.
    pub offset: u64,
}

/// Counters of connection events, shared by all sessions of a run.
#[derive(Debug, Default)]
pub struct Reconnects {
    /// Transport cuts asked for (resume).
    pub cuts: AtomicU64,
    /// `Disconnected` events.
    pub disconnected: AtomicU64,
    /// `Connected` events after the first.
    pub reconnected: AtomicU64,
    /// `GoAway` events.
    pub go_away: AtomicU64,
}

impl Reconnects {
    /// A line for the summary.
    pub fn summary(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "{} cuts, {} disconnects, {} reconnects, {} GOAWAY",
            g(&self.cuts),
            g(&self.disconnected),
            g(&self.reconnected),
            g(&self.go_away)
        )
    }
}

/// The receiving side of one session: checks every delivery against the
/// protocol's promises and against what each sender sent.
pub struct Receiver {
    session: SessionCheck,
    /// Per sending session (payload `source`).
    streams: HashMap<u32, StreamCheck>,
    latency: LatencyBuf,
    disconnects: u64,
}

impl Receiver {
    /// A receiver for session `shard` (used to spread histogram locks).
    pub fn new(shard: usize) -> Self {
        Self {
            session: SessionCheck::new(),
            streams: HashMap::new(),
            latency: LatencyBuf::new(shard),
            disconnects: 0,
        }
    }

    /// The session subscribed to `channel` after `offset`.
    pub fn subscribed(&mut self, channel: &str, offset: u64) {
        self.session.subscribed(channel, offset);
    }

    /// Distinct messages received from `source`.
    pub fn unique_from(&self, source: u32) -> u64 {
        self.streams.get(&source).map_or(0, StreamCheck::unique)
    }

    /// Distinct messages received from everyone.
    pub fn unique_total(&self) -> u64 {
        self.streams.values().map(StreamCheck::unique).sum()
    }

    /// Handles one event; returns the stamp of a message delivered for the
    /// first time.
    pub fn on_event(&mut self, ctx: &Ctx, counters: &Reconnects, event: Event) -> Option<Stamp> {
        match event {
            Event::Message(d) => self.on_delivery(ctx, d),
            Event::Connected { .. } => {
                // Connected after a Disconnected is a reconnection.
                if self.disconnects > 0 {
                    counters.reconnected.fetch_add(1, Ordering::Relaxed);
                    ctx.rec.timeline.event(EventKind::Reconnect, 1);
                }
                None
            }
            Event::Disconnected { .. } => {
                self.disconnects += 1;
                counters.disconnected.fetch_add(1, Ordering::Relaxed);
                ctx.rec.timeline.event(EventKind::Disconnect, 1);
                None
            }
            Event::SessionLost { .. } => {
                ctx.rec.timeline.event(EventKind::SessionLost, 1);
                ctx.rec
                    .error("session lost (could not resume; messages may be lost)");
                self.session.new_session();
                None
            }
            Event::ServerError { code, .. } => {
                ctx.rec.error(format!("server error {code:?}"));
                None
            }
            Event::GoAway { .. } => {
                counters.go_away.fetch_add(1, Ordering::Relaxed);
                ctx.rec.timeline.event(EventKind::GoAway, 1);
                None
            }
        }
    }

    fn on_delivery(&mut self, ctx: &Ctx, d: Delivery) -> Option<Stamp> {
        let now = ctx.clock.now_ns();
        Recorder::add(&ctx.rec.received, 1);
        for anomaly in self
            .session
            .observe(d.seq, d.channel.as_str(), d.channel_offset)
            .into_iter()
            .flatten()
        {
            ctx.rec.anomaly(anomaly);
        }
        let Some(stamp) = Stamp::decode(&d.payload) else {
            ctx.rec
                .error("delivery without a load-test stamp (another client on the channel?)");
            return None;
        };
        let before = self.unique_from(stamp.source);
        self.streams
            .entry(stamp.source)
            .or_default()
            .observe(stamp.seq);
        self.latency
            .push(&ctx.rec, latency_us(stamp.intended_ns, now), now);
        (self.unique_from(stamp.source) > before).then_some(stamp)
    }

    /// Records the verdict, given how many messages each source sent.
    pub fn finish(
        mut self,
        ctx: &Ctx,
        sent_by: impl Fn(u32) -> u64,
        sources: impl IntoIterator<Item = u32>,
    ) {
        self.latency.flush(&ctx.rec);
        let mut totals = DeliveryTotals::default();
        let mut streams = self.streams;
        for source in sources {
            let stream = streams.remove(&source).unwrap_or_default();
            totals.add(&stream.finish(sent_by(source)));
        }
        if !streams.is_empty() {
            ctx.rec.errors_n(
                "delivery from a sender this session did not expect",
                streams.len() as u64,
            );
        }
        ctx.rec.delivery(&totals);
    }
}
