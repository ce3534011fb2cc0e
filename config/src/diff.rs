//! What changed between two configurations, for a live reload (SIGHUP).
//!
//! The gateway swaps in a whole validated snapshot; this tells it which of
//! the changes take effect live and which only after a restart (or a
//! graceful upgrade): the listeners (`listen.*`), the worker count, the
//! data directory and the QUIC transport (`quic.*`, built into each
//! worker's endpoint when it starts) are fixed for the life of a process.

use crate::sections::*;

/// The field paths that differ between two configurations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigDiff {
    /// Changed, and applied live by swapping in the new snapshot.
    pub changed: Vec<String>,
    /// Changed, but kept at the old value until the process restarts (or
    /// is upgraded): `listen.*`, `quic.*`, `server.workers`,
    /// `server.pin_workers`, `server.data_dir`.
    pub needs_restart: Vec<String>,
}

impl ConfigDiff {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.needs_restart.is_empty()
    }
}

/// Whether a change at `path` needs a restart (or an upgrade) to take
/// effect.
pub fn needs_restart(path: &str) -> bool {
    path.starts_with("listen.")
        || path.starts_with("quic.")
        || matches!(
            path,
            "server.workers" | "server.pin_workers" | "server.data_dir"
        )
}

/// Compares the listed fields of one section. The `let` destructures the
/// old section without `..`, so adding a field to a section fails to
/// compile until it is listed here too.
macro_rules! compare {
    ($out:ident, $section:literal, $ty:ident, $old:expr, $new:expr, [$($field:ident),* $(,)?]) => {{
        let $ty { $($field),* } = $old;
        let new = $new;
        $(
            if *$field != new.$field {
                $out.push(concat!($section, ".", stringify!($field)));
            }
        )*
    }};
}

pub(crate) fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let mut paths: Vec<&'static str> = Vec::new();
    let Config {
        server,
        listen,
        tls,
        limits,
        session,
        channels,
        websocket,
        quic,
        auth,
        ops,
        log,
        upgrade,
    } = old;
    compare!(
        paths,
        "server",
        Server,
        server,
        &new.server,
        [workers, pin_workers, data_dir, drain_timeout]
    );
    compare!(
        paths,
        "listen",
        Listen,
        listen,
        &new.listen,
        [ws, ws_path, wss, quic, ops, control_socket]
    );
    let (old_cert, old_key) = tls_files(tls);
    let (new_cert, new_key) = tls_files(&new.tls);
    if old_cert != new_cert {
        paths.push("tls.cert");
    }
    if old_key != new_key {
        paths.push("tls.key");
    }
    compare!(
        paths,
        "limits",
        Limits,
        limits,
        &new.limits,
        [
            max_frame_size,
            max_channel_len,
            max_subscriptions,
            max_connections,
            max_sessions,
            memory_budget,
            max_pending_handshakes,
            outbound_queue,
            publish_rate,
            publish_burst
        ]
    );
    compare!(
        paths,
        "session",
        Session,
        session,
        &new.session,
        [
            handshake_timeout,
            heartbeat_interval,
            heartbeat_timeout,
            resume_window,
            replay_max_messages,
            replay_max_bytes
        ]
    );
    compare!(
        paths,
        "channels",
        Channels,
        channels,
        &new.channels,
        [history_messages, history_bytes, idle_ttl]
    );
    compare!(
        paths,
        "websocket",
        WebSocket,
        websocket,
        &new.websocket,
        [read_buffer, write_buffer, max_write_buffer]
    );
    compare!(
        paths,
        "quic",
        Quic,
        quic,
        &new.quic,
        [
            idle_timeout,
            keep_alive_interval,
            stream_receive_window,
            receive_window,
            send_window
        ]
    );
    compare!(
        paths,
        "auth",
        Auth,
        auth,
        &new.auth,
        [
            mode,
            audience,
            issuer,
            refresh_before,
            refresh_grace,
            failed_attempts_per_minute,
            keys
        ]
    );
    compare!(
        paths,
        "ops",
        Ops,
        ops,
        &new.ops,
        [api_key, max_connections, idle_timeout]
    );
    compare!(paths, "log", Log, log, &new.log, [level, format]);
    compare!(
        paths,
        "upgrade",
        Upgrade,
        upgrade,
        &new.upgrade,
        [reconnect_rate, drain_deadline]
    );

    let (restart, live): (Vec<_>, Vec<_>) = paths.into_iter().partition(|p| needs_restart(p));
    ConfigDiff {
        changed: live.into_iter().map(String::from).collect(),
        needs_restart: restart.into_iter().map(String::from).collect(),
    }
}

fn tls_files(tls: &Tls) -> (Option<&std::path::Path>, Option<&std::path::Path>) {
    match tls {
        Tls::SelfSigned => (None, None),
        Tls::Files { cert, key } => (Some(cert), Some(key)),
    }
}
