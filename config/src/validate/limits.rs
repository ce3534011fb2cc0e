//! Rules for `[limits]`, `[session]`, `[channels]`, `[log]` and `[upgrade]`.

use std::num::NonZeroU32;

use super::{COUNT_CEILING, Checker, Got, as_usize, in_range, nonzero_u32};
use crate::schema::RawConfig;
use crate::sections::{Channels, Limits, Log, LogFilter, Session, Upgrade};
use crate::units::{ByteSize, format_duration};

pub(super) fn limits(c: &mut Checker, raw: &RawConfig) -> Limits {
    let (r, d) = (&raw.limits, Limits::default());
    let max_frame_size = c.checked(
        "limits.max_frame_size",
        &r.max_frame_size,
        d.max_frame_size,
        |&n| in_range(n, ByteSize::kib(1), ByteSize::mib(16)),
    );
    let outbound_queue = c.size(
        "limits.outbound_queue",
        &r.outbound_queue,
        d.outbound_queue,
        ByteSize::kib(1),
    );
    if max_frame_size.ok && outbound_queue.ok && outbound_queue.value < max_frame_size.value {
        c.invalid(
            "limits.outbound_queue",
            format!(
                "{} is below limits.max_frame_size ({}); the queue must hold one whole frame",
                outbound_queue.value, max_frame_size.value
            ),
        );
    }
    let rate = c
        .count(
            "limits.publish_rate",
            &r.publish_rate,
            d.publish_rate.map_or(0, |n| u64::from(n.get())),
            0,
            COUNT_CEILING,
        )
        .value;
    let burst = c
        .count(
            "limits.publish_burst",
            &r.publish_burst,
            u64::from(d.publish_burst.get()),
            1,
            COUNT_CEILING,
        )
        .value;
    Limits {
        max_frame_size: max_frame_size.value,
        max_channel_len: as_usize(
            c.count(
                "limits.max_channel_len",
                &r.max_channel_len,
                d.max_channel_len as u64,
                1,
                1024,
            )
            .value,
        ),
        max_subscriptions: as_usize(
            c.count(
                "limits.max_subscriptions",
                &r.max_subscriptions,
                d.max_subscriptions as u64,
                1,
                COUNT_CEILING,
            )
            .value,
        ),
        max_connections: as_usize(
            c.count(
                "limits.max_connections",
                &r.max_connections,
                d.max_connections as u64,
                1,
                COUNT_CEILING,
            )
            .value,
        ),
        max_sessions: as_usize(
            c.count(
                "limits.max_sessions",
                &r.max_sessions,
                d.max_sessions as u64,
                1,
                COUNT_CEILING,
            )
            .value,
        ),
        memory_budget: c
            .size(
                "limits.memory_budget",
                &r.memory_budget,
                d.memory_budget,
                ByteSize::mib(1),
            )
            .value,
        max_pending_handshakes: as_usize(
            c.count(
                "limits.max_pending_handshakes",
                &r.max_pending_handshakes,
                d.max_pending_handshakes as u64,
                0,
                1_000_000,
            )
            .value,
        ),
        outbound_queue: outbound_queue.value,
        publish_rate: u32::try_from(rate).ok().and_then(NonZeroU32::new),
        publish_burst: nonzero_u32(burst, d.publish_burst),
    }
}

/// `path` must hold at least one frame of `limits.max_frame_size`.
fn holds_a_frame(c: &mut Checker, path: &str, got: &Got<ByteSize>, limits: &Limits) {
    if got.ok && got.value < limits.max_frame_size {
        c.invalid(
            path,
            format!(
                "{} is below limits.max_frame_size ({}); it must hold one whole frame",
                got.value, limits.max_frame_size
            ),
        );
    }
}

pub(super) fn session(c: &mut Checker, raw: &RawConfig, limits: &Limits) -> Session {
    let (r, d) = (&raw.session, Session::default());
    let interval = c.duration(
        "session.heartbeat_interval",
        &r.heartbeat_interval,
        d.heartbeat_interval,
        false,
    );
    let timeout = c.duration(
        "session.heartbeat_timeout",
        &r.heartbeat_timeout,
        d.heartbeat_timeout,
        false,
    );
    if interval.ok && timeout.ok && timeout.value <= interval.value {
        c.invalid(
            "session.heartbeat_timeout",
            format!(
                "{} must be more than session.heartbeat_interval ({})",
                format_duration(timeout.value),
                format_duration(interval.value)
            ),
        );
    }
    let replay_bytes = c.size(
        "session.replay_max_bytes",
        &r.replay_max_bytes,
        d.replay_max_bytes,
        ByteSize::b(0),
    );
    holds_a_frame(c, "session.replay_max_bytes", &replay_bytes, limits);
    Session {
        handshake_timeout: c
            .duration(
                "session.handshake_timeout",
                &r.handshake_timeout,
                d.handshake_timeout,
                false,
            )
            .value,
        heartbeat_interval: interval.value,
        heartbeat_timeout: timeout.value,
        resume_window: c
            .duration(
                "session.resume_window",
                &r.resume_window,
                d.resume_window,
                false,
            )
            .value,
        replay_max_messages: as_usize(
            c.count(
                "session.replay_max_messages",
                &r.replay_max_messages,
                d.replay_max_messages as u64,
                1,
                COUNT_CEILING,
            )
            .value,
        ),
        replay_max_bytes: replay_bytes.value,
    }
}

pub(super) fn channels(c: &mut Checker, raw: &RawConfig, limits: &Limits) -> Channels {
    let (r, d) = (&raw.channels, Channels::default());
    let bytes = c.size(
        "channels.history_bytes",
        &r.history_bytes,
        d.history_bytes,
        ByteSize::b(0),
    );
    holds_a_frame(c, "channels.history_bytes", &bytes, limits);
    Channels {
        history_messages: as_usize(
            c.count(
                "channels.history_messages",
                &r.history_messages,
                d.history_messages as u64,
                1,
                COUNT_CEILING,
            )
            .value,
        ),
        history_bytes: bytes.value,
        idle_ttl: c
            .duration("channels.idle_ttl", &r.idle_ttl, d.idle_ttl, false)
            .value,
    }
}

pub(super) fn log(c: &mut Checker, raw: &RawConfig) -> Log {
    let (r, d) = (&raw.log, Log::default());
    Log {
        level: c
            .checked("log.level", &r.level, d.level, |l| LogFilter::new(l))
            .value,
        format: c.plain("log.format", &r.format, d.format),
    }
}

pub(super) fn upgrade(c: &mut Checker, raw: &RawConfig) -> Upgrade {
    let (r, d) = (&raw.upgrade, Upgrade::default());
    let rate = c
        .count(
            "upgrade.reconnect_rate",
            &r.reconnect_rate,
            u64::from(d.reconnect_rate.get()),
            1,
            COUNT_CEILING,
        )
        .value;
    Upgrade {
        reconnect_rate: nonzero_u32(rate, d.reconnect_rate),
        drain_deadline: c
            .duration(
                "upgrade.drain_deadline",
                &r.drain_deadline,
                d.drain_deadline,
                false,
            )
            .value,
    }
}
