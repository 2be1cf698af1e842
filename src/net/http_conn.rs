//! The HTTP/1.1 socket loop: read a request, route it, answer it, keep the connection alive.
//!
//! Parsing and the API live in `http::`, with no socket. Inbox requests are answered by the
//! shard that owns the inbox (`ShardCtx::serve_inbox` forwards them over the mesh); this
//! loop only moves bytes and enforces the connection's limits and idle timeout.
//! The same loop serves `--http` and, after the TLS handshake, `--https`.

use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use crate::clock::now_ms;
use crate::http::api::{self, InboxOp, InboxRequest, Route};
use crate::http::page;
use crate::http::request::{self, Limits, Method};
use crate::http::response::Response;
use crate::metrics::{self, Counters};
use crate::net::conns::{ConnGuard, Kind};
use crate::net::tls::{self, Conn};
use crate::net::{NetCtx, Shards, ws_conn};

/// Request-size limits; a request over them is refused, never buffered.
pub const LIMITS: Limits = Limits {
    head_bytes_max: 8 * 1024,
    headers_max: 32,
    body_bytes_max: 64 * 1024,
    target_bytes_max: 2 * 1024,
};
/// Room reserved for a response's status line and header fields (it grows if they need more).
const RESPONSE_HEAD_BYTES_EXPECTED: usize = 256;
/// Bytes read at once while watching a long poll's client for a hang-up.
const HANGUP_PROBE_BYTES: usize = 512;
/// Read buffer: a whole head or body within the limits above fits.
const READ_BUFFER_BYTES: usize = 8 * 1024 + 64 * 1024;
const READ_CHUNK_BYTES: usize = 4096;

/// Accepts HTTP connections on one of this executor's listeners until cancelled: `--http`,
/// or `--https` with `over_tls` (the TLS handshake first, then the same request loop;
/// needs `ctx.tls`).
pub async fn accept_loop<S: Shards>(ctx: Rc<NetCtx<S>>, listener: TcpListener, over_tls: bool) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!("http accept failed: {error}");
                glommio::timer::sleep(crate::net::ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        Counters::add(&ctx.counters.http_connections_total, 1);
        if ctx.counters.http_connections_open.get() as usize
            >= ctx.config.http_connections_per_core_max
        {
            glommio::spawn_local(refuse(stream, over_tls)).detach();
            continue;
        }
        // Two task types, not one with a branch: a task is as large as its largest await
        // point, and a TLS stream holds the rustls connection state inline, which a plain
        // connection's task (an idle keep-alive or long poll, of which there may be
        // thousands) should not carry.
        if over_tls {
            glommio::spawn_local(serve_tls(ctx.clone(), stream)).detach();
        } else {
            glommio::spawn_local(serve_plain(ctx.clone(), stream)).detach();
        }
    }
}

async fn refuse(mut stream: TcpStream, over_tls: bool) {
    // A TLS client could not read a plaintext 503; it only gets the close.
    if !over_tls {
        let mut out = Vec::new();
        let mut response = Response::error(
            503,
            "unavailable",
            "too many connections to this core; retry shortly",
        );
        response.headers.push(("Retry-After", "1".to_string()));
        response.write_to(false, false, &mut out);
        let _ = stream.write_all(&out).await;
    }
    let _ = stream.close().await;
}

fn opened<S>(ctx: &NetCtx<S>, stream: &TcpStream) {
    Counters::add(&ctx.counters.http_connections_open, 1);
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(ctx.config.http_idle_timeout));
}

async fn serve_plain<S: Shards>(ctx: Rc<NetCtx<S>>, stream: TcpStream) {
    opened(&ctx, &stream);
    let guard = ctx.connections.register(stream.as_raw_fd(), Kind::Http);
    // Through `GatherTcp` for its reads (see there): one `recv` when a request is waiting.
    let mut stream = tls::GatherTcp::new(stream);
    serve_requests(&ctx, &mut stream, &guard).await;
    drop(guard);
    let _ = stream.0.close().await;
    Counters::sub(&ctx.counters.http_connections_open, 1);
}

async fn serve_tls<S: Shards>(ctx: Rc<NetCtx<S>>, stream: TcpStream) {
    opened(&ctx, &stream);
    let guard = ctx.connections.register(stream.as_raw_fd(), Kind::Http);
    if let Some((mut tls_stream, _)) = tls::accept(&ctx, stream).await {
        serve_requests(&ctx, &mut tls_stream, &guard).await;
        drop(guard);
        let _ = tls_stream.close().await;
    }
    Counters::sub(&ctx.counters.http_connections_open, 1);
}

/// Reads, answers and keeps alive until the client or a limit ends the connection.
async fn serve_requests<S: Shards, C: Conn>(
    ctx: &Rc<NetCtx<S>>,
    stream: &mut C,
    guard: &ConnGuard<'_>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK_BYTES);
    let client_ip = stream.tcp().peer_addr().ok().map(|addr| addr.ip());
    // When the request being read must be whole: set by its first byte, so a client
    // trickling a header a byte at a time cannot hold the connection (slowloris).
    let mut request_deadline: Option<Instant> = None;

    'connection: loop {
        // Read until a whole request is buffered.
        let (request, consumed) = loop {
            match request::parse(&buf, &LIMITS) {
                Ok(Some(parsed)) => break parsed,
                Ok(None) => {}
                Err(response) => {
                    count_response(ctx, &response);
                    let _ = write_response(stream, &response, false, false).await;
                    break 'connection;
                }
            }
            if ctx.shards.is_shutting_down() && buf.is_empty() {
                break 'connection;
            }
            guard.set_idle(buf.is_empty());
            let filled = buf.len();
            if filled >= READ_BUFFER_BYTES {
                // parse() refuses oversized heads and bodies itself; this is a backstop.
                break 'connection;
            }
            let now = Instant::now();
            let timeout = match request_deadline {
                None => ctx.config.http_idle_timeout,
                Some(deadline) => deadline
                    .saturating_duration_since(now)
                    .min(ctx.config.http_idle_timeout),
            };
            if timeout.is_zero() {
                request_timed_out(ctx, stream).await;
                break 'connection;
            }
            let _ = stream.tcp().set_read_timeout(Some(timeout));
            buf.resize((filled + READ_CHUNK_BYTES).min(READ_BUFFER_BYTES), 0);
            let read = stream.read(&mut buf[filled..]).await;
            match read {
                Ok(n) if n > 0 => {
                    buf.truncate(filled + n);
                    request_deadline.get_or_insert(now + ctx.config.http_request_timeout);
                }
                Ok(_) => break 'connection,
                Err(error)
                    if error.kind() == ErrorKind::TimedOut
                        && request_deadline.is_some_and(|deadline| Instant::now() >= deadline) =>
                {
                    request_timed_out(ctx, stream).await;
                    break 'connection;
                }
                Err(error) => {
                    if !matches!(error.kind(), ErrorKind::TimedOut | ErrorKind::UnexpectedEof) {
                        tracing::debug!("http read failed: {error}");
                    }
                    break 'connection;
                }
            }
        };
        guard.set_idle(false);
        buf.drain(..consumed);
        // A pipelined next request already started: its clock runs from now.
        request_deadline =
            (!buf.is_empty()).then(|| Instant::now() + ctx.config.http_request_timeout);
        Counters::add(&ctx.counters.http_requests_total, 1);

        let head_only = matches!(request.method, Method::Head);
        let keep_alive = request.keep_alive && !ctx.shards.is_shutting_down();
        let started = Instant::now();
        let limited = client_ip.and_then(|ip| ctx.http_rate_limiter.check(ip, started).err());
        let routed = api::route(&request, &ctx.config.domains)
            .and_then(|route| api::check_partition(route, ctx.config.owned_partitions))
            .and_then(|route| api::authorize(route, &request, &ctx.tokens));
        let response = match (limited, routed) {
            (Some(retry_after), _) => rate_limited(retry_after),
            (None, Ok(Route::WebSocket { key, accept })) => {
                // The connection is a WebSocket from here on; the HTTP buffers go first,
                // so an idle socket holds only what ws_conn needs.
                let leftover = std::mem::take(&mut buf);
                Box::pin(ws_conn::serve(ctx, stream, guard, key, &accept, leftover)).await;
                return;
            }
            (None, Ok(route)) => {
                // A held long poll needs no read buffer; an idle connection keeps none.
                if buf.is_empty() {
                    buf = Vec::new();
                }
                let is_long_poll = matches!(
                    &route,
                    Route::Inbox(InboxRequest {
                        op: InboxOp::List { wait_secs, .. },
                        ..
                    }) if *wait_secs > 0
                );
                let answer = Box::pin(respond(ctx, route));
                if is_long_poll {
                    match unless_hung_up(stream, &mut buf, answer).await {
                        Some(response) => response,
                        // Nobody to answer; the dropped request freed its slot.
                        None => break 'connection,
                    }
                } else {
                    answer.await
                }
            }
            (None, Err(response)) => response,
        };
        count_response(ctx, &response);
        let written = write_response(stream, &response, keep_alive, head_only)
            .await
            .is_ok();
        ctx.counters.http_request_latency.record(started.elapsed());
        if !written || !keep_alive {
            break;
        }
    }
}

/// Awaits `answer` (a long poll) while watching the client: if it hangs up first, drops
/// `answer`, which un-parks the poll and frees its slot at once, and returns `None`. What
/// the client sends meanwhile (a pipelined request) is kept in `buf` for the next round;
/// watching stops then, so `buf` grows by at most one probe.
async fn unless_hung_up<C: Conn>(
    stream: &mut C,
    buf: &mut Vec<u8>,
    answer: impl Future<Output = Response>,
) -> Option<Response> {
    enum First {
        Answer(Response),
        Read(std::io::Result<usize>),
    }
    let mut answer = pin!(answer);
    let mut probe = [0u8; HANGUP_PROBE_BYTES];
    loop {
        let first =
            futures_lite::future::or(async { First::Answer(answer.as_mut().await) }, async {
                First::Read(stream.read(&mut probe).await)
            })
            .await;
        match first {
            First::Answer(response) => return Some(response),
            First::Read(Ok(n)) if n > 0 => {
                buf.extend_from_slice(&probe[..n]);
                return Some(answer.await);
            }
            // The idle timeout is shorter than the longest wait; a quiet client is fine.
            First::Read(Err(error)) if error.kind() == ErrorKind::TimedOut => {}
            First::Read(_) => return None,
        }
    }
}

/// Renders and writes `response`, then flushes: a TLS stream may hold encrypted records
/// until flushed. The output buffer is per response, not per connection, so an idle
/// connection holds none.
pub(crate) async fn write_response<C: Conn>(
    stream: &mut C,
    response: &Response,
    keep_alive: bool,
    head_only: bool,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(response.body.len() + RESPONSE_HEAD_BYTES_EXPECTED);
    response.write_to(keep_alive, head_only, &mut out);
    stream.write_all(&out).await?;
    stream.flush().await
}

async fn respond<S: Shards>(ctx: &NetCtx<S>, route: Route) -> Response {
    match route {
        Route::Asset(asset) => page::response(asset),
        Route::Healthz if !ctx.shards.is_ready() => Response {
            status: 503,
            content_type: "text/plain; charset=utf-8",
            headers: vec![("Retry-After", "1".to_string())],
            body: b"restoring\n".to_vec(),
        },
        Route::Inbox(_) if !ctx.shards.is_ready() => Response::error(
            503,
            "unavailable",
            "the server is restoring its mail after a restart; try again shortly",
        )
        .with_header("Retry-After", "1"),
        Route::Healthz => {
            if ctx.shards.is_shutting_down() {
                Response {
                    status: 503,
                    content_type: "text/plain; charset=utf-8",
                    headers: Vec::new(),
                    body: b"shutting down\n".to_vec(),
                }
            } else {
                Response {
                    status: 200,
                    content_type: "text/plain; charset=utf-8",
                    headers: Vec::new(),
                    body: b"ok\n".to_vec(),
                }
            }
        }
        Route::Metrics => {
            let snapshots = ctx.shards.metrics().await;
            let mut body = metrics::render(&snapshots);
            // The resolver thread is one for the process: its counts are not per shard.
            let resolver = ctx.checks.verifier.as_ref().map(|v| v.shared()).or(ctx
                .checks
                .dnsbl
                .as_ref()
                .map(|dnsbl| dnsbl.resolver()));
            if let Some(resolver) = resolver {
                metrics::render_resolver(&resolver.stats(), &mut body);
            }
            Response {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                headers: Vec::new(),
                body: body.into_bytes(),
            }
        }
        Route::CreateAddress { domain, address } => api::create_address(
            domain.as_deref(),
            address.as_ref(),
            &ctx.config.domains,
            &ctx.tokens,
            ctx.config.owned_partitions,
            ctx.config.ttl.as_secs(),
            now_ms(),
        ),
        Route::Inbox(inbox_request) => ctx.shards.serve_inbox(inbox_request).await,
        // serve_requests hands these to ws_conn before responding.
        Route::WebSocket { .. } => Response::error(500, "internal_error", "unexpected upgrade"),
    }
}

/// A request did not arrive whole within `--http-request-timeout`: 408, then close.
async fn request_timed_out<S, C: Conn>(ctx: &NetCtx<S>, stream: &mut C) {
    Counters::add(&ctx.counters.http_request_timeouts_total, 1);
    let response = Response::error(
        408,
        "request_timeout",
        "the request did not arrive whole in time",
    );
    count_response(ctx, &response);
    let _ = write_response(stream, &response, false, false).await;
}

/// 429 with the contract's error body and a whole-second `Retry-After` (at least 1).
fn rate_limited(retry_after: Duration) -> Response {
    let retry_after_secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = Response::error(
        429,
        "rate_limited",
        &format!("too many requests from this address; retry after {retry_after_secs} s"),
    );
    response
        .headers
        .push(("Retry-After", retry_after_secs.to_string()));
    response
}

fn count_response<S>(ctx: &NetCtx<S>, response: &Response) {
    match response.status {
        400..=499 => Counters::add(&ctx.counters.http_responses_4xx_total, 1),
        500..=599 => Counters::add(&ctx.counters.http_responses_5xx_total, 1),
        _ => {}
    }
}
