//! The baseline a team would write by hand: a tokio multi-thread runtime and
//! tokio-tungstenite, one task per connection, nothing tuned but what the
//! flags say. Ferry is measured against it side by side (bench/compare.sh).
//!
//! - `--mode echo`: every binary message is sent back to its sender.
//! - `--mode broadcast`: every binary message is sent to every connected
//!   client (the sender included), through one `tokio::sync::broadcast`
//!   channel, so the payload `Bytes` is shared, not copied.
//! - `--buffers 4k`: tungstenite's read and write buffers at 4 KiB instead of
//!   the defaults (128 KiB read buffer), the usual fix for idle memory.

use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Backlog of the broadcast channel: a client this far behind loses messages.
const BROADCAST_CAPACITY: usize = 4096;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Baseline WebSocket echo/broadcast server (tokio + tokio-tungstenite)"
)]
struct Args {
    /// Address to listen on (port 0: any free port, printed on stderr).
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// tungstenite buffer sizes.
    #[arg(long, value_enum, default_value_t = Buffers::Default)]
    buffers: Buffers,
    /// What to do with each binary message.
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    mode: Mode,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Buffers {
    /// tungstenite's defaults (128 KiB read buffer, 128 KiB write buffer).
    Default,
    /// 4 KiB read and write buffers.
    #[value(name = "4k")]
    FourK,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    /// Send each binary message back to its sender.
    Echo,
    /// Send each binary message to every connected client.
    Broadcast,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("baseline-ws: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("baseline-ws: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), String> {
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let config = match args.buffers {
        Buffers::Default => WebSocketConfig::default(),
        Buffers::FourK => WebSocketConfig::default()
            .read_buffer_size(4 * 1024)
            .write_buffer_size(4 * 1024),
    };
    let (hub, _) = broadcast::channel::<Bytes>(BROADCAST_CAPACITY);
    // The bound address, so that `--listen 127.0.0.1:0` can be used; one
    // write, so that a script reading the line never sees half of it.
    let bound = listener.local_addr().unwrap_or(args.listen);
    let line = format!(
        "baseline-ws: {:?} mode, {:?} buffers, listening on ws://{bound}/ pid={}\n",
        args.mode,
        args.buffers,
        std::process::id()
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            // Out of file descriptors and the like: keep serving the others.
            Err(e) => {
                eprintln!("baseline-ws: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let hub = hub.clone();
        tokio::spawn(async move {
            let result = match args.mode {
                Mode::Echo => echo(stream, config).await,
                Mode::Broadcast => broadcast(stream, config, hub).await,
            };
            if let Err(e) = result {
                // Resets are what load tests do at the end; they are not news.
                if !is_disconnect(&e) {
                    eprintln!("baseline-ws: {peer}: {e}");
                }
            }
        });
    }
}

type WsResult = Result<(), tokio_tungstenite::tungstenite::Error>;

async fn echo(stream: TcpStream, config: WebSocketConfig) -> WsResult {
    stream.set_nodelay(true)?;
    let mut ws = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await?;
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Binary(payload) => ws.send(Message::Binary(payload)).await?,
            Message::Close(_) => break,
            // Pings are answered by tungstenite itself; text is not ours.
            _ => {}
        }
    }
    Ok(())
}

async fn broadcast(
    stream: TcpStream,
    config: WebSocketConfig,
    hub: broadcast::Sender<Bytes>,
) -> WsResult {
    stream.set_nodelay(true)?;
    let mut ws = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await?;
    let mut inbox = hub.subscribe();
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(payload))) => {
                    // Err only when nobody listens, and we do.
                    let _ = hub.send(payload);
                }
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
            },
            out = inbox.recv() => match out {
                Ok(payload) => ws.send(Message::Binary(payload)).await?,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    eprintln!("baseline-ws: a slow client skipped {n} messages");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    Ok(())
}

fn is_disconnect(e: &tokio_tungstenite::tungstenite::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::ConnectionClosed | Error::AlreadyClosed => true,
        Error::Protocol(p) => matches!(
            p,
            tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake
        ),
        Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
        _ => false,
    }
}
