//! Rules for `[server]`, `[listen]`, `[tls]`, `[websocket]` and `[quic]`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;

use super::{Checker, as_usize, duration_rule, in_range};
use crate::schema::{Field, RawConfig};
use crate::sections::{HttpPath, Limits, Listen, Quic, Server, Tls, WebSocket, Workers};
use crate::units::{ByteSize, format_duration};

/// `sun_path` holds 108 bytes including the final NUL on Linux.
const MAX_SOCKET_PATH: usize = 107;

pub(super) fn server(c: &mut Checker, raw: &RawConfig) -> Server {
    let (r, d) = (&raw.server, Server::default());
    let workers = c
        .count(
            "server.workers",
            &r.workers,
            match d.workers {
                Workers::PerCore => 0,
                Workers::Fixed(n) => n.get() as u64,
            },
            0,
            1024,
        )
        .value;
    Server {
        workers: NonZeroUsize::new(as_usize(workers)).map_or(Workers::PerCore, Workers::Fixed),
        pin_workers: c.plain("server.pin_workers", &r.pin_workers, d.pin_workers),
        data_dir: c.plain("server.data_dir", &r.data_dir, d.data_dir),
        drain_timeout: c
            .duration(
                "server.drain_timeout",
                &r.drain_timeout,
                d.drain_timeout,
                true,
            )
            .value,
    }
}

pub(super) fn listen(c: &mut Checker, raw: &RawConfig, server: &Server) -> Listen {
    let (r, d) = (&raw.listen, Listen::default());
    let ws = c.plain("listen.ws", &r.ws, d.ws);
    let ws_path = c
        .checked("listen.ws_path", &r.ws_path, d.ws_path, |p| {
            HttpPath::new(p)
        })
        .value;
    let wss = c.checked("listen.wss", &r.wss, d.wss, |v| Ok(v.0)).value;
    let quic = c.checked("listen.quic", &r.quic, d.quic, |v| Ok(v.0)).value;
    let ops = c.plain("listen.ops", &r.ops, d.ops);
    let derived = server.data_dir.join("control.sock");
    let given = matches!(r.control_socket, Field::Set { .. });
    let control_socket = c.plain("listen.control_socket", &r.control_socket, derived);
    let len = control_socket.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        let from = if given {
            ""
        } else {
            " (server.data_dir + \"/control.sock\")"
        };
        c.invalid(
            "listen.control_socket",
            format!(
                "{:?}{from} is {len} bytes; a Unix socket path must be at most {MAX_SOCKET_PATH}",
                control_socket.display().to_string()
            ),
        );
    }
    // Two TCP listeners on one address cannot both bind (port 0 excepted:
    // the system picks a free port for each).
    let tcp: [(&str, Option<SocketAddr>); 3] = [
        ("listen.ws", Some(ws)),
        ("listen.wss", wss),
        ("listen.ops", ops.into()),
    ];
    let mut seen: HashMap<SocketAddr, &str> = HashMap::new();
    for (path, addr) in tcp {
        let Some(addr) = addr.filter(|a| a.port() != 0) else {
            continue;
        };
        if let Some(first) = seen.get(&addr) {
            c.invalid(
                path,
                format!("\"{addr}\" is also {first}; each TCP listener needs its own address"),
            );
        } else {
            seen.insert(addr, path);
        }
    }
    Listen {
        ws,
        ws_path,
        wss,
        quic,
        ops,
        control_socket,
    }
}

pub(super) fn tls(c: &mut Checker, raw: &RawConfig) -> Tls {
    let r = &raw.tls;
    let cert = c.checked("tls.cert", &r.cert, None, |p| Ok(Some(p.clone())));
    let key = c.checked("tls.key", &r.key, None, |p| Ok(Some(p.clone())));
    match (cert.value, key.value) {
        (Some(cert), Some(key)) => Tls::Files { cert, key },
        (Some(_), None) if key.ok => {
            c.invalid(
                "tls.key",
                "missing: tls.cert is set, and both or neither must be given",
            );
            Tls::SelfSigned
        }
        (None, Some(_)) if cert.ok => {
            c.invalid(
                "tls.cert",
                "missing: tls.key is set, and both or neither must be given",
            );
            Tls::SelfSigned
        }
        _ => Tls::SelfSigned,
    }
}

pub(super) fn websocket(c: &mut Checker, raw: &RawConfig, limits: &Limits) -> WebSocket {
    let (r, d) = (&raw.websocket, WebSocket::default());
    let read = c.checked(
        "websocket.read_buffer",
        &r.read_buffer,
        d.read_buffer,
        |&n| in_range(n, ByteSize::kib(1), ByteSize::mib(16)),
    );
    let write = c.checked(
        "websocket.write_buffer",
        &r.write_buffer,
        d.write_buffer,
        |&n| in_range(n, ByteSize::b(0), ByteSize::mib(16)),
    );
    let max_write = c.size(
        "websocket.max_write_buffer",
        &r.max_write_buffer,
        d.max_write_buffer,
        ByteSize::b(0),
    );
    let needed = ByteSize::b(write.value.as_u64() + limits.max_frame_size.as_u64());
    if write.ok && max_write.ok && max_write.value <= needed {
        c.invalid(
            "websocket.max_write_buffer",
            format!(
                "{} must be more than websocket.write_buffer + limits.max_frame_size ({needed})",
                max_write.value
            ),
        );
    }
    WebSocket {
        read_buffer: read.value,
        write_buffer: write.value,
        max_write_buffer: max_write.value,
    }
}

pub(super) fn quic(c: &mut Checker, raw: &RawConfig) -> Quic {
    let (r, d) = (&raw.quic, Quic::default());
    let idle = c.duration("quic.idle_timeout", &r.idle_timeout, d.idle_timeout, false);
    let keep_alive = c.checked(
        "quic.keep_alive_interval",
        &r.keep_alive_interval,
        None,
        |v| match v.0 {
            Some(k) => duration_rule(k, false).map(Some),
            None => Ok(None),
        },
    );
    if let (true, true, Some(k)) = (idle.ok, keep_alive.ok, keep_alive.value)
        && k >= idle.value
    {
        c.invalid(
            "quic.keep_alive_interval",
            format!(
                "{} must be less than quic.idle_timeout ({}), or the connection idles out first",
                format_duration(k),
                format_duration(idle.value)
            ),
        );
    }
    let stream = c.size(
        "quic.stream_receive_window",
        &r.stream_receive_window,
        d.stream_receive_window,
        ByteSize::kib(1),
    );
    let conn = c.size(
        "quic.receive_window",
        &r.receive_window,
        d.receive_window,
        ByteSize::kib(1),
    );
    if stream.ok && conn.ok && conn.value < stream.value {
        c.invalid(
            "quic.receive_window",
            format!(
                "{} is below quic.stream_receive_window ({})",
                conn.value, stream.value
            ),
        );
    }
    // Deprecated: a Ferry connection is one bidirectional stream, and the
    // gateway accepts exactly one; more would be streams nobody reads,
    // holding flow-control credit. Still accepted as `1` so that files
    // written from the old example load.
    c.checked(
        "quic.max_concurrent_bidi_streams",
        &r.max_concurrent_bidi_streams,
        (),
        |&n| match n {
            1 => Ok(()),
            _ => Err(
                "is not supported: a Ferry connection uses exactly one bidirectional stream; \
                 remove the key (only 1 is accepted)"
                    .to_owned(),
            ),
        },
    );
    Quic {
        idle_timeout: idle.value,
        keep_alive_interval: keep_alive.value,
        stream_receive_window: stream.value,
        receive_window: conn.value,
        send_window: c
            .size(
                "quic.send_window",
                &r.send_window,
                d.send_window,
                ByteSize::kib(1),
            )
            .value,
    }
}
