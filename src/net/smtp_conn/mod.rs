//! The only SMTP code that touches a socket: accept, read, time out, write, close.
//!
//! The protocol lives in `smtp::Session`, which never sees the socket. This loop feeds it
//! whatever bytes arrived, and writes its replies once per read: with PIPELINING a client's
//! whole batch of commands is answered with one write (RFC 2920), which is where most of the
//! per-message cost goes on loopback.
//!
//! One loop (`Connection::run`) serves plain TCP and TLS alike (it is generic over
//! `net::tls::Conn`). STARTTLS (RFC 3207) ends the plain loop, throws away whatever the
//! client sent after the STARTTLS line (CVE-2011-0411: nothing said in plaintext may count
//! after the upgrade), runs the handshake on the same TCP stream, and runs the loop again
//! over TLS with the same session. The `--smtps` listener (RFC 8314) does the handshake
//! first and greets over TLS.

use std::io::ErrorKind;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use crate::metrics::Counters;
use crate::net::conns::{ConnGuard, Kind};
use crate::net::tls::{self, Conn};
use crate::net::{Durability, NetCtx, NotDurable, Shards};
use crate::smtp::{Delivery, Event, Session, Transaction, reply};

pub mod checks;

/// Read buffer per session. `Session::advance` consumes every body byte and leaves less than
/// one command line (512 octets) unconsumed, so this never needs to grow for what we read
/// into it. It grows only to take what a client sent past the end of a DATA body that was
/// read straight into the body buffer (at most `smtp::session::BODY_READ_BYTES_MAX`), and
/// shrinks back as soon as that is consumed.
const READ_BUFFER_BYTES: usize = 16 * 1024;
/// A session's read buffer starts this small (a command line is under 512 octets) and
/// doubles, up to `READ_BUFFER_BYTES`, each time a read fills it: an idle session, of which
/// a core may hold thousands, costs 1 KiB here, and a busy pipelining sender grows its
/// buffer once.
const READ_BUFFER_BYTES_MIN: usize = 1024;
/// Room reserved for our Received header (it grows if a long HELO name needs more).
const RECEIVED_HEADER_BYTES_EXPECTED: usize = 256;
/// A queue id: 13 + 2 + 8 hex digits (`NetCtx::next_queue_id`), rounded up.
const QUEUE_ID_BYTES: usize = 32;
/// A core is under stress when its SMTP sessions reach this percentage of the cap; its
/// command timeout is then `--stress-command-timeout`.
const STRESS_PERCENT: usize = 80;
/// Reply buffer capacity kept per session (a pipelined batch of replies fits easily).
const WRITE_BUFFER_BYTES: usize = 1024;
/// Accepts SMTP connections on one of this executor's listeners until cancelled: `--smtp`,
/// or `--smtps` with `implicit_tls` (RFC 8314; needs `ctx.tls`).
pub async fn accept_loop<S: Shards>(ctx: Rc<NetCtx<S>>, listener: TcpListener, implicit_tls: bool) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!("smtp accept failed: {error}");
                glommio::timer::sleep(crate::net::ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        Counters::add(&ctx.counters.smtp_connections_total, 1);
        if !ctx.shards.is_ready() {
            glommio::spawn_local(refuse(stream, implicit_tls, reply::RESTORING)).detach();
            continue;
        }
        // At the cap, a new sender still gets in if an idle session that never started a
        // transaction can be cut to make room (it answers 421 4.7.0 and goes).
        if ctx.counters.smtp_sessions_open.get() as usize >= ctx.config.smtp_sessions_per_core_max
            && !ctx.connections.evict_idle_smtp()
        {
            Counters::add(&ctx.counters.smtp_sessions_refused_total, 1);
            glommio::spawn_local(refuse(stream, implicit_tls, reply::TOO_MANY_SESSIONS)).detach();
            continue;
        }
        glommio::spawn_local(serve(ctx.clone(), stream, implicit_tls)).detach();
    }
}

async fn refuse(mut stream: TcpStream, implicit_tls: bool, refusal: &'static [u8]) {
    // A TLS client would read the plaintext 421 as a broken record; it only gets the close
    // (and spending a handshake on a connection we turn away would defeat the cap).
    if !implicit_tls {
        let _ = stream.write_all(refusal).await;
    }
    let _ = stream.close().await;
}

/// How `Connection::run` ended.
enum End {
    /// Close the connection (QUIT, error, timeout, shutdown, client gone).
    Close,
    /// STARTTLS was answered with 220: upgrade, then run again.
    StartTls,
}

/// One SMTP session and its buffers; survives the STARTTLS upgrade.
struct Connection<S> {
    ctx: Rc<NetCtx<S>>,
    session: Session,
    client_ip: Option<IpAddr>,
    /// Commands, and body bytes when the body is small; big bodies are read into the
    /// session's body buffer instead (`Session::body_read_buffer`).
    buf: Vec<u8>,
    /// Unconsumed input is `buf[start..end]`.
    start: usize,
    end: usize,
    out: Vec<u8>,
    received_header: Vec<u8>,
    queue_id: String,
    /// The peer's address, for the per-client limits only (it is never logged or written
    /// anywhere unless `client_ip` is set, which `--log-client-ip` decides).
    peer_ip: Option<IpAddr>,
    /// When the command line being waited for must be complete (RFC 5321's command
    /// timeout as a deadline for the whole line, like Postfix's `smtpd_per_record_deadline`:
    /// a client trickling one byte at a time cannot stretch it).
    command_deadline: Instant,
    /// When the message being received (DATA body, or BDAT chunks up to LAST) must be
    /// complete; `None` outside a transfer.
    transfer_deadline: Option<Instant>,
    /// Replies in `out` that wait for their message to become durable (with a journal),
    /// and where they are in `out`.
    pending: Vec<(std::ops::Range<usize>, Durability)>,
}

impl<S> Drop for Connection<S> {
    fn drop(&mut self) {
        // Message bytes pass through these buffers; they are wiped, not just freed.
        wipe(&mut self.buf);
        wipe(&mut self.out);
        wipe(&mut self.received_header);
    }
}

/// Zeroes a buffer's whole allocation (capacity, not only length), so no message bytes
/// stay behind in freed memory even with `--wipe-freed-memory false`.
fn wipe(buf: &mut Vec<u8>) {
    crate::alloc::wipe_vec(buf);
}

async fn serve<S: Shards>(ctx: Rc<NetCtx<S>>, stream: TcpStream, implicit_tls: bool) {
    let peer_ip = stream.peer_addr().ok().map(|addr| addr.ip());
    let Ok(_client_slot) = ctx.client_limits.admit(peer_ip, Instant::now()) else {
        Counters::add(&ctx.counters.smtp_sessions_refused_per_ip_total, 1);
        refuse(stream, implicit_tls, reply::TOO_MANY_SESSIONS_FROM_CLIENT).await;
        return;
    };
    Counters::add(&ctx.counters.smtp_sessions_open, 1);
    let _ = stream.set_nodelay(true);
    if let (Some(dnsbl), Some(ip)) = (&ctx.checks.dnsbl, peer_ip)
        && !ctx.config.is_client_limit_exempt(ip)
        && let Some(refusal) = dnsbl.refusal(ip, &ctx.counters).await
    {
        Counters::add(&ctx.counters.smtp_sessions_blocklisted_total, 1);
        checks::refuse_listed(stream, implicit_tls, &refusal).await;
        Counters::sub(&ctx.counters.smtp_sessions_open, 1);
        return;
    }
    let client_ip = if ctx.config.log_client_ip {
        peer_ip
    } else {
        None
    };
    let mut conn = Connection {
        session: Session::new(ctx.session_config.clone(), client_ip),
        ctx: ctx.clone(),
        client_ip,
        buf: vec![0u8; READ_BUFFER_BYTES_MIN],
        start: 0,
        end: 0,
        out: Vec::with_capacity(WRITE_BUFFER_BYTES),
        received_header: Vec::with_capacity(RECEIVED_HEADER_BYTES_EXPECTED),
        queue_id: String::with_capacity(QUEUE_ID_BYTES),
        peer_ip,
        command_deadline: Instant::now() + ctx.config.command_timeout,
        transfer_deadline: None,
        pending: Vec::new(),
    };
    conn.refuse_mail_if_over_rate();
    let guard = ctx.connections.register(stream.as_raw_fd(), Kind::Smtp);

    let plain = if implicit_tls {
        Some(stream)
    } else {
        let mut stream = tls::GatherTcp::new(stream);
        conn.session.greeting(&mut conn.out);
        match conn.run(&mut stream, &guard).await {
            End::Close => {
                drop(guard);
                let _ = stream.0.close().await;
                Counters::sub(&ctx.counters.smtp_sessions_open, 1);
                return;
            }
            End::StartTls => {
                // CVE-2011-0411: whatever the client pipelined after STARTTLS was sent in
                // plaintext and must not be executed after the upgrade.
                (conn.start, conn.end) = (0, 0);
                Some(stream.0)
            }
        }
    };
    if let Some(stream) = plain {
        // Boxed: a task is as large as its largest await point, and the TLS state (the
        // handshake, then the rustls connection) would otherwise make every plaintext
        // session's task several KiB larger.
        Box::pin(conn.run_over_tls(stream, guard, implicit_tls)).await;
    }
    Counters::sub(&ctx.counters.smtp_sessions_open, 1);
}

impl<S: Shards> Connection<S> {
    /// Waits until every message whose 250 is in `out` is durable (with a journal); a reply
    /// whose message did not become durable is replaced by the one it gets instead. Every
    /// message of one read of pipelined input is settled here together, so they share the
    /// journal's commits.
    async fn settle(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        // Replies before a replaced one keep their place; later ones move by the difference.
        let mut shift: isize = 0;
        for (range, durability) in pending {
            let Err(why) = durability.await else {
                continue;
            };
            let replacement = match why {
                NotDurable::Temporary => reply::TEMPORARY_FAILURE,
                NotDurable::TooLarge => reply::STORE_TOO_BIG,
                NotDurable::Spam => reply::SPAM_REJECTED,
            };
            let start = range.start.saturating_add_signed(shift);
            let end = range.end.saturating_add_signed(shift);
            self.out.splice(start..end, replacement.iter().copied());
            shift += replacement.len() as isize - range.len() as isize;
            if why != NotDurable::Spam {
                tracing::warn!(
                    "a stored message could not be made durable; it gets {why:?} instead of 250"
                );
            }
        }
    }

    /// The TLS handshake (STARTTLS or `--smtps`), then the session over TLS until it ends.
    async fn run_over_tls(&mut self, stream: TcpStream, guard: ConnGuard<'_>, implicit_tls: bool) {
        let Some((mut tls_stream, negotiated)) = tls::accept(&self.ctx, stream).await else {
            return;
        };
        self.session
            .tls_started(negotiated.version, negotiated.cipher);
        if implicit_tls {
            self.session.greeting(&mut self.out);
        }
        // The session refuses a second STARTTLS, so this run can only end in Close.
        let _ = self.run(&mut tls_stream, &guard).await;
        drop(guard);
        let _ = tls_stream.close().await;
    }

    /// Runs the session over `stream` until it ends or asks for STARTTLS.
    async fn run<C: Conn>(&mut self, stream: &mut C, guard: &ConnGuard<'_>) -> End {
        let ctx = self.ctx.clone();
        loop {
            let (consumed, event) = self
                .session
                .advance(&self.buf[self.start..self.end], &mut self.out);
            debug_assert!(consumed <= self.end - self.start);
            self.start += consumed;
            match event {
                Event::NeedInput => {
                    if !self.out.is_empty() {
                        // A command was answered: the next one gets a whole timeout.
                        self.command_deadline = Instant::now() + self.command_timeout();
                    }
                    self.settle().await;
                    if !flush(&ctx, stream, &mut self.out).await {
                        return End::Close;
                    }
                    if ctx.shards.is_shutting_down() && !self.session.in_transaction() {
                        ctx.counters.count_replies(reply::SHUTTING_DOWN);
                        let _ = write_flushed(stream, reply::SHUTTING_DOWN).await;
                        return End::Close;
                    }
                    // Consumed input (commands, small message bodies) is wiped before the
                    // buffer is reused, so an open session holds only what it has not
                    // processed yet: one memset over what passes through here.
                    if self.start == self.end {
                        crate::alloc::wipe_if_on(&mut self.buf[..self.end]);
                        (self.start, self.end) = (0, 0);
                    } else if self.end == self.buf.len() || self.buf.len() > READ_BUFFER_BYTES {
                        let n_pending = self.end - self.start;
                        self.buf.copy_within(self.start..self.end, 0);
                        crate::alloc::wipe_if_on(&mut self.buf[n_pending..self.end]);
                        (self.start, self.end) = (0, n_pending);
                    }
                    if self.buf.len() > READ_BUFFER_BYTES {
                        // A big rest after a body was consumed: give the memory back.
                        self.buf.truncate(READ_BUFFER_BYTES);
                        self.buf.shrink_to_fit();
                    }
                    // The session guarantees the remainder is under one command line.
                    assert!(
                        self.end < self.buf.len(),
                        "session left {} unconsumed bytes",
                        self.end - self.start
                    );
                    if !self.set_read_timeout(stream.tcp()) {
                        return self.timed_out(stream).await;
                    }
                    let in_transaction = self.session.in_transaction();
                    guard.set_idle(!in_transaction);
                    if in_transaction {
                        guard.set_transacted();
                    }
                    // Inside a big body, read straight into the session's body buffer: the
                    // bytes are then copied once by the kernel and once into the store.
                    let body_buffer = if self.start == self.end {
                        self.session.body_read_buffer()
                    } else {
                        None
                    };
                    let into_body = body_buffer.is_some();
                    let read = match body_buffer {
                        Some(body_buffer) => stream.read(body_buffer).await,
                        None => stream.read(&mut self.buf[self.end..]).await,
                    };
                    match read {
                        Ok(n) if n > 0 && into_body => {
                            // What followed the end of the body goes back to `advance`.
                            let rest = self.session.body_received(n);
                            if rest.len() > self.buf.len() {
                                self.buf.resize(rest.len(), 0);
                            }
                            self.buf[..rest.len()].copy_from_slice(rest);
                            self.end = rest.len();
                        }
                        Ok(n) if n > 0 => {
                            self.end += n;
                            if self.end == self.buf.len() && self.buf.len() < READ_BUFFER_BYTES {
                                // A read filled the buffer: the client sends in bigger batches.
                                let grown = (self.buf.len() * 2).min(READ_BUFFER_BYTES);
                                self.buf.resize(grown, 0);
                            }
                        }
                        // A TLS stream reports a TCP close without close_notify this way.
                        Ok(_) => return self.closed_by_peer(stream, guard).await,
                        Err(error) if error.kind() == ErrorKind::UnexpectedEof => {
                            return self.closed_by_peer(stream, guard).await;
                        }
                        Err(error) if error.kind() == ErrorKind::TimedOut => {
                            return self.timed_out(stream).await;
                        }
                        Err(error) => {
                            tracing::debug!("smtp read failed: {error}");
                            return End::Close;
                        }
                    }
                }
                Event::Deliver => self.deliver().await,
                Event::StartTls => {
                    self.settle().await;
                    return if flush(&ctx, stream, &mut self.out).await {
                        End::StartTls
                    } else {
                        End::Close
                    };
                }
                Event::Quit | Event::Close => {
                    self.settle().await;
                    let _ = flush(&ctx, stream, &mut self.out).await;
                    return End::Close;
                }
            }
        }
    }

    /// The read side ended: the client closed, shutdown interrupted the read, or the
    /// session was cut to make room for another.
    async fn closed_by_peer<C: Conn>(&self, stream: &mut C, guard: &ConnGuard<'_>) -> End {
        let farewell = if self.ctx.shards.is_shutting_down() {
            Some(reply::SHUTTING_DOWN)
        } else if guard.evicted() {
            Counters::add(&self.ctx.counters.smtp_sessions_cut_idle_total, 1);
            Some(reply::IDLE_CUT_UNDER_STRESS)
        } else {
            None
        };
        if let Some(farewell) = farewell {
            self.ctx.counters.count_replies(farewell);
            let _ = write_flushed(stream, farewell).await;
        }
        End::Close
    }

    /// A timeout or deadline passed: 421 4.4.2 and close.
    async fn timed_out<C: Conn>(&self, stream: &mut C) -> End {
        Counters::add(&self.ctx.counters.smtp_timeouts_total, 1);
        self.ctx.counters.count_replies(reply::TIMEOUT);
        let _ = write_flushed(stream, reply::TIMEOUT).await;
        End::Close
    }

    /// The command timeout now: shorter while the core is under stress (its sessions at
    /// `STRESS_PERCENT` of the cap or more), as Postfix does.
    fn command_timeout(&self) -> Duration {
        let config = &self.ctx.config;
        let open = self.ctx.counters.smtp_sessions_open.get() as usize;
        if open * 100 >= config.smtp_sessions_per_core_max * STRESS_PERCENT {
            config.command_timeout.min(config.stress_command_timeout)
        } else {
            config.command_timeout
        }
    }

    /// Sets the next read's timeout: what is left of the command line's deadline, or inside
    /// a message the data timeout (per read, RFC 5321 4.5.3.2.6) within what is left of the
    /// transfer's deadline. False if a deadline has passed already.
    fn set_read_timeout(&mut self, tcp: &TcpStream) -> bool {
        let now = Instant::now();
        if !self.session.in_transaction() {
            self.transfer_deadline = None;
        }
        let timeout = if self.session.expects_data() {
            let deadline = *self
                .transfer_deadline
                .get_or_insert(now + self.ctx.config.data_deadline);
            self.ctx
                .config
                .data_timeout
                .min(deadline.saturating_duration_since(now))
        } else {
            // Between BDAT chunks both deadlines run.
            let deadline = match self.transfer_deadline {
                Some(transfer) => transfer.min(self.command_deadline),
                None => self.command_deadline,
            };
            deadline.saturating_duration_since(now)
        };
        if timeout.is_zero() {
            return false;
        }
        let _ = tcp.set_read_timeout(Some(timeout));
        true
    }

    /// Makes the session refuse MAIL while its client is over its message rate.
    fn refuse_mail_if_over_rate(&mut self) {
        let over = self
            .ctx
            .client_limits
            .over_message_rate(self.peer_ip, Instant::now());
        self.session
            .refuse_mail(over.then_some(reply::TOO_MANY_MESSAGES_FROM_CLIENT));
    }

    /// Stores the finished transaction and writes its reply into `out`.
    async fn deliver(&mut self) {
        if self.ctx.checks.checks_messages() {
            self.deliver_checked();
            return;
        }
        let ctx = &self.ctx;
        ctx.next_queue_id(&mut self.queue_id);
        self.received_header.clear();
        let now = SystemTime::now();
        let started = Instant::now();
        self.session
            .write_received_header(&self.queue_id, now, &mut self.received_header);
        let transaction = self.session.transaction();
        let (delivery, durability) = ctx
            .shards
            .deliver(&transaction, &self.received_header, &self.queue_id, now)
            .await;
        let delivery_latency = started.elapsed();
        ctx.counters.smtp_delivery_latency.record(delivery_latency);
        log_transaction(
            &transaction,
            &self.queue_id,
            &delivery,
            delivery_latency,
            self.client_ip,
            ctx.config.log_envelope,
        );
        if matches!(delivery, Delivery::Stored { .. }) {
            ctx.client_limits
                .count_message(self.peer_ip, Instant::now());
        }
        let reply_start = self.out.len();
        self.session.delivered(delivery, &mut self.out);
        if let Some(durability) = durability {
            // The 250 is written but not sent: `settle` awaits this before `out` goes out.
            self.pending.push((reply_start..self.out.len(), durability));
        }
        // The header names the message's recipient and time: wiped with the message.
        crate::alloc::wipe_if_on(&mut self.received_header);
        self.refuse_mail_if_over_rate();
    }
}

/// Writes the pending replies; false when the client is gone.
async fn flush<S, C: Conn>(ctx: &NetCtx<S>, stream: &mut C, out: &mut Vec<u8>) -> bool {
    if out.is_empty() {
        return true;
    }
    if ctx.counters.count_replies(out) > 0 {
        log_refusals(out);
    }
    let written = write_flushed(stream, out).await.is_ok();
    out.clear();
    written
}

/// Writes `bytes` and flushes: a TLS stream may hold encrypted records until flushed
/// (for plain TCP the flush does nothing).
async fn write_flushed<C: Conn>(stream: &mut C, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// One log line per finished message, Postfix style: queue id, size, outcome, timing.
/// The envelope's addresses appear only with `--log-envelope` (logs outlive the message),
/// the client's address only with `--log-client-ip`.
fn log_transaction(
    transaction: &Transaction<'_>,
    queue_id: &str,
    delivery: &Delivery<'_>,
    delivery_latency: Duration,
    client_ip: Option<IpAddr>,
    log_envelope: bool,
) {
    let outcome = match delivery {
        Delivery::Stored { .. } => "stored",
        Delivery::TemporaryFailure => "deferred",
        Delivery::TooLarge => "refused_too_large",
    };
    let (from, to) = if log_envelope {
        (
            Some(transaction.mail_from),
            Some(transaction.rcpts().next().unwrap_or_default()),
        )
    } else {
        (None, None)
    };
    let delivery_us = u64::try_from(delivery_latency.as_micros()).unwrap_or(u64::MAX);
    // `None` fields are left out of the line.
    tracing::info!(
        target: "mayfly::smtp",
        queue_id,
        from,
        to,
        n_rcpts = transaction.n_rcpts(),
        size_bytes = transaction.body.len(),
        outcome,
        delivery_us,
        client_ip = client_ip.map(tracing::field::display),
        "message"
    );
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
