//! WebSockets: `GET /api/v1/inboxes/{address}/ws` once `http_conn` has checked the handshake.
//!
//! The socket lives on the executor that accepted it; the inbox may be owned by another.
//! The socket subscribes at the owner (`ShardCtx::subscribe`) with the sending half of a
//! bounded channel, and the owner's push task sends a summary into it for each new message.
//! So an idle WebSocket is a parked task, a subscription entry and a 512-byte read buffer:
//! nothing polls it and it has no timer of its own. Keep-alive pings come from one sweep
//! per executor (`WsRegistry::ping_all`, every `WS_PING_INTERVAL`); a peer that stops
//! answering them runs into the socket's read timeout and is closed.
//!
//! Close codes the server sends: 1001 when shutting down, 1013 when the socket fell more
//! than `WS_QUEUE_FRAMES` summaries behind (the client lists the inbox with `?after=` and
//! reconnects). What the client sends is ignored, except control frames; a data frame
//! over `CLIENT_MESSAGE_BYTES_MAX` ends the connection.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use futures_channel::mpsc;
use futures_lite::AsyncWriteExt;
use futures_util::{StreamExt, stream};

use crate::address::InboxKey;
use crate::http::response::Response;
use crate::metrics::Counters;
use crate::net::conns::ConnGuard;
use crate::net::tls::Conn;
use crate::net::{NetCtx, Shards, http_conn};
use crate::watch::WS_QUEUE_FRAMES;

/// How often each executor pings its WebSockets (one sweep per core, no timer per socket)
/// and forgets subscriptions whose sockets have gone.
pub const WS_PING_INTERVAL: Duration = Duration::from_secs(30);

/// Largest message a client may send. Clients have nothing to say but control frames;
/// the cap keeps a misbehaving one from making us buffer.
pub const CLIENT_MESSAGE_BYTES_MAX: usize = 4096;
/// Read buffer per socket. Clients send only control frames (at most 131 bytes); a bigger
/// frame grows the buffer while it lasts. tungstenite's default, 128 KiB, would make 10 000
/// idle sockets cost 1.3 GB.
pub const READ_BUFFER_BYTES: usize = 512;
/// Pings missed before a silent peer is dropped: the read timeout is this many intervals.
const PINGS_MISSED_MAX: u32 = 2;

/// This executor's open WebSockets, so one sweep can ping them all.
#[derive(Default)]
pub struct WsRegistry {
    next_key: Cell<u64>,
    /// key -> the socket's ping signal (capacity one: a ping not yet sent is not doubled).
    pings: RefCell<HashMap<u64, mpsc::Sender<()>>>,
}

/// Removes its socket from the registry when dropped.
struct WsGuard<'r> {
    registry: &'r WsRegistry,
    key: u64,
}

impl WsRegistry {
    fn register(&self) -> (WsGuard<'_>, mpsc::Receiver<()>) {
        let key = self.next_key.get();
        self.next_key.set(key + 1);
        let (sender, receiver) = mpsc::channel(0);
        self.pings.borrow_mut().insert(key, sender);
        (
            WsGuard {
                registry: self,
                key,
            },
            receiver,
        )
    }

    /// Asks every open WebSocket of this executor to send a ping.
    pub fn ping_all(&self) {
        for ping in self.pings.borrow_mut().values_mut() {
            // Full means the last ping is still queued; one is enough.
            let _ = ping.try_send(());
        }
    }
}

impl Drop for WsGuard<'_> {
    fn drop(&mut self) {
        self.registry.pings.borrow_mut().remove(&self.key);
    }
}

/// What the writing half of a socket does next.
enum Event {
    Summary(String),
    Ping,
    /// The owner dropped the subscription: shutdown or a socket too slow to keep up.
    Unsubscribed,
}

/// Completes the handshake (`accept` is the `Sec-WebSocket-Accept` value) and pushes the
/// summaries of `address`'s new messages until either side closes. `leftover` is what the
/// client sent after its request (frames, already).
pub async fn serve<S: Shards, C: Conn>(
    ctx: &Rc<NetCtx<S>>,
    stream: &mut C,
    guard: &ConnGuard<'_>,
    key: InboxKey<'static>,
    accept: &str,
    leftover: Vec<u8>,
) {
    if !ctx.shards.is_ready() {
        let response = Response::error(
            503,
            "unavailable",
            "the server is restoring its mail after a restart; try again shortly",
        )
        .with_header("Retry-After", "1");
        let _ = http_conn::write_response(stream, &response, false, false).await;
        return;
    }
    if ctx.counters.websockets_open.get() as usize >= ctx.config.websockets_per_core_max {
        let response = Response::error(
            503,
            "unavailable",
            "too many WebSockets on this core; retry shortly or long-poll the inbox",
        )
        .with_header("Retry-After", "1");
        let _ = http_conn::write_response(stream, &response, false, false).await;
        return;
    }
    // The slot is taken before the first await, so handshakes racing each other on this
    // core cannot all pass the check above: the cap is exact.
    let _slot = OpenSlot::take(&ctx.counters.websockets_open);
    // Subscribe before the 101, so that every message that arrives once the client sees
    // the socket open is pushed.
    let (frames, summaries) = mpsc::channel::<String>(WS_QUEUE_FRAMES);
    if !ctx.shards.subscribe(key, frames).await {
        let response = Response::error(503, "unavailable", "the server is shutting down");
        let _ = http_conn::write_response(stream, &response, false, false).await;
        return;
    }
    let switching = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if stream.write_all(switching.as_bytes()).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    Counters::add(&ctx.counters.websockets_total, 1);
    // Not marked idle: shutdown must not cut the read side (tungstenite would then refuse
    // to send anything); it drops the subscription instead, and the writer closes with 1001.
    let _ = guard;
    let _ = stream
        .tcp()
        .set_read_timeout(Some(WS_PING_INTERVAL * PINGS_MISSED_MAX));

    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(CLIENT_MESSAGE_BYTES_MAX))
        .max_frame_size(Some(CLIENT_MESSAGE_BYTES_MAX));
    let socket =
        WebSocketStream::from_partially_read(stream, leftover, Role::Server, Some(config)).await;
    let (mut sink, mut source) = socket.split();
    let (_registered, pings) = ctx.websockets.register();
    let mut events = stream::select(
        summaries
            .map(Event::Summary)
            .chain(stream::iter([Event::Unsubscribed])),
        pings.map(|()| Event::Ping),
    );

    let writer = async {
        while let Some(event) = events.next().await {
            let message = match event {
                Event::Summary(text) => Message::text(text),
                Event::Ping => Message::Ping(Default::default()),
                Event::Unsubscribed => {
                    let (code, reason) = if ctx.shards.shutdown_triggered() {
                        (CloseCode::Away, "server shutting down")
                    } else {
                        (
                            CloseCode::Again,
                            "too far behind: list the inbox with ?after= and reconnect",
                        )
                    };
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code,
                            reason: reason.into(),
                        })))
                        .await;
                    return;
                }
            };
            if sink.send(message).await.is_err() {
                return;
            }
        }
    };
    let reader = async {
        // tungstenite answers pings and close frames itself while reading; after a close
        // frame the next read flushes our answer and ends the stream.
        while let Some(message) = source.next().await {
            if message.is_err() {
                return;
            }
        }
    };
    futures_lite::future::or(writer, reader).await;
}

/// Counts one open WebSocket for as long as it lives, however its task ends.
struct OpenSlot<'c> {
    open: &'c std::cell::Cell<u64>,
}

impl<'c> OpenSlot<'c> {
    fn take(open: &'c std::cell::Cell<u64>) -> OpenSlot<'c> {
        Counters::add(open, 1);
        OpenSlot { open }
    }
}

impl Drop for OpenSlot<'_> {
    fn drop(&mut self) {
        Counters::sub(self.open, 1);
    }
}
