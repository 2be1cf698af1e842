//! The only SMTP code that touches a socket: accept, read, time out, write, close.
//!
//! The protocol lives in `smtp::Session`, which never sees the socket. This loop feeds it
//! whatever bytes arrived, and writes its replies once per read: with PIPELINING a client's
//! whole batch of commands is answered with one write (RFC 2920), which is where most of the
//! per-message cost goes on loopback.

use std::io::ErrorKind;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use crate::metrics::Counters;
use crate::runtime::ShardCtx;
use crate::smtp::{Delivery, Event, Session, Transaction, reply};

/// Read buffer per session. `Session::advance` consumes every body byte and leaves less than
/// one command line (512 octets) unconsumed, so this never needs to grow.
const READ_BUFFER_BYTES: usize = 16 * 1024;
/// Reply buffer capacity kept per session (a pipelined batch of replies fits easily).
const WRITE_BUFFER_BYTES: usize = 1024;
/// A DATA/BDAT body buffer bigger than this is given back after each message, so an idle
/// session does not keep a 10 MiB allocation alive.
const BODY_BUFFER_KEEP_BYTES: usize = 256 * 1024;

/// Accepts SMTP connections on this executor's listener until cancelled.
pub async fn accept_loop(ctx: Rc<ShardCtx>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!("smtp accept failed: {error}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        Counters::add(&ctx.counters.smtp_connections_total, 1);
        if ctx.counters.smtp_sessions_open.get() as usize >= ctx.config.smtp_sessions_per_core_max {
            Counters::add(&ctx.counters.smtp_sessions_refused_total, 1);
            glommio::spawn_local(refuse(stream)).detach();
            continue;
        }
        glommio::spawn_local(serve(ctx.clone(), stream)).detach();
    }
}

async fn refuse(mut stream: TcpStream) {
    let _ = stream.write_all(reply::TOO_MANY_SESSIONS).await;
    let _ = stream.close().await;
}

/// Which timeout the stream currently has, so it is only changed when the state changes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReadTimeout {
    Command,
    Data,
}

async fn serve(ctx: Rc<ShardCtx>, mut stream: TcpStream) {
    Counters::add(&ctx.counters.smtp_sessions_open, 1);
    let _ = stream.set_nodelay(true);
    let client_ip = if ctx.config.log_client_ip {
        stream.peer_addr().ok().map(|addr| addr.ip())
    } else {
        None
    };
    let mut session = Session::new(ctx.session_config.clone(), client_ip);
    let guard = ctx.connections.register(stream.as_raw_fd());

    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    let (mut start, mut end) = (0usize, 0usize);
    let mut out = Vec::with_capacity(WRITE_BUFFER_BYTES);
    let mut received_header = Vec::with_capacity(256);
    let mut queue_id = String::with_capacity(32);
    let mut timeout = ReadTimeout::Command;
    let _ = stream.set_read_timeout(Some(ctx.config.command_timeout));
    session.greeting(&mut out);

    loop {
        let (consumed, event) = session.advance(&buf[start..end], &mut out);
        debug_assert!(consumed <= end - start);
        start += consumed;
        match event {
            Event::NeedInput => {
                if !flush(&ctx, &mut stream, &mut out).await {
                    break;
                }
                if ctx.is_shutting_down() && !session.in_transaction() {
                    ctx.counters.count_replies(reply::SHUTTING_DOWN);
                    let _ = stream.write_all(reply::SHUTTING_DOWN).await;
                    break;
                }
                if start == end {
                    (start, end) = (0, 0);
                } else if end == buf.len() {
                    buf.copy_within(start..end, 0);
                    (start, end) = (0, end - start);
                }
                // The session guarantees the remainder is under one command line.
                assert!(
                    end < buf.len(),
                    "session left {} unconsumed bytes",
                    end - start
                );
                let wanted = if session.expects_data() {
                    ReadTimeout::Data
                } else {
                    ReadTimeout::Command
                };
                if wanted != timeout {
                    timeout = wanted;
                    let duration = match wanted {
                        ReadTimeout::Command => ctx.config.command_timeout,
                        ReadTimeout::Data => ctx.config.data_timeout,
                    };
                    let _ = stream.set_read_timeout(Some(duration));
                }
                guard.set_idle(!session.in_transaction());
                match stream.read(&mut buf[end..]).await {
                    Ok(0) => {
                        // Either the client closed, or shutdown interrupted the read.
                        if ctx.is_shutting_down() {
                            ctx.counters.count_replies(reply::SHUTTING_DOWN);
                            let _ = stream.write_all(reply::SHUTTING_DOWN).await;
                        }
                        break;
                    }
                    Ok(n) => end += n,
                    Err(error) if error.kind() == ErrorKind::TimedOut => {
                        Counters::add(&ctx.counters.smtp_timeouts_total, 1);
                        ctx.counters.count_replies(reply::TIMEOUT);
                        let _ = stream.write_all(reply::TIMEOUT).await;
                        break;
                    }
                    Err(error) => {
                        tracing::debug!("smtp read failed: {error}");
                        break;
                    }
                }
            }
            Event::Deliver => {
                ctx.next_queue_id(&mut queue_id);
                received_header.clear();
                let now = SystemTime::now();
                let started = Instant::now();
                session.write_received_header(&queue_id, now, &mut received_header);
                let transaction = session.transaction();
                let delivery = ctx
                    .deliver(&transaction, &received_header, &queue_id, now)
                    .await;
                let delivery_latency = started.elapsed();
                ctx.counters.smtp_delivery_latency.record(delivery_latency);
                log_transaction(
                    &transaction,
                    &queue_id,
                    &delivery,
                    delivery_latency,
                    client_ip,
                );
                session.delivered(delivery, &mut out);
                session.shrink_body_buffer(BODY_BUFFER_KEEP_BYTES);
            }
            Event::Quit | Event::Close | Event::StartTls => {
                // STARTTLS is never advertised yet (starttls_available is false), so the
                // session cannot ask for it; closing is the safe answer if it ever did.
                let _ = flush(&ctx, &mut stream, &mut out).await;
                break;
            }
        }
    }
    drop(guard);
    let _ = stream.close().await;
    Counters::sub(&ctx.counters.smtp_sessions_open, 1);
}

/// Writes the pending replies; false when the client is gone.
async fn flush(ctx: &ShardCtx, stream: &mut TcpStream, out: &mut Vec<u8>) -> bool {
    if out.is_empty() {
        return true;
    }
    if ctx.counters.count_replies(out) > 0 {
        log_refusals(out);
    }
    let written = stream.write_all(out).await.is_ok();
    out.clear();
    written
}

/// One log line per finished message, Postfix style: queue id, envelope, size, outcome.
/// The client's address appears only when the operator allowed it (`--log-client-ip`).
fn log_transaction(
    transaction: &Transaction<'_>,
    queue_id: &str,
    delivery: &Delivery<'_>,
    delivery_latency: Duration,
    client_ip: Option<IpAddr>,
) {
    let outcome = match delivery {
        Delivery::Stored { .. } => "stored",
        Delivery::TemporaryFailure => "deferred",
        Delivery::TooLarge => "refused_too_large",
    };
    let first_rcpt = transaction.rcpts().next().unwrap_or_default();
    let delivery_us = u64::try_from(delivery_latency.as_micros()).unwrap_or(u64::MAX);
    match client_ip {
        Some(client_ip) => tracing::info!(
            target: "mayfly::smtp",
            queue_id,
            from = transaction.mail_from,
            to = first_rcpt,
            n_rcpts = transaction.n_rcpts(),
            size_bytes = transaction.body.len(),
            outcome,
            delivery_us,
            %client_ip,
            "message"
        ),
        None => tracing::info!(
            target: "mayfly::smtp",
            queue_id,
            from = transaction.mail_from,
            to = first_rcpt,
            n_rcpts = transaction.n_rcpts(),
            size_bytes = transaction.body.len(),
            outcome,
            delivery_us,
            "message"
        ),
    }
}

/// Logs each 4xx/5xx reply about to be sent (relay refusals, syntax errors, limits).
fn log_refusals(replies: &[u8]) {
    for line in replies.split(|&b| b == b'\n') {
        if line.get(3) == Some(&b' ') && matches!(line.first(), Some(b'4' | b'5')) {
            let reply = String::from_utf8_lossy(line.trim_ascii_end());
            tracing::info!(target: "mayfly::smtp", %reply, "refused");
        }
    }
}
