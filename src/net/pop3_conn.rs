//! The only POP3 code that touches a socket: read, time out, fetch from the shards, write.
//!
//! The protocol lives in `pop3::Session`; this loop feeds it the bytes that arrived, does
//! what its events ask (check a login, open the maildrop, copy a message out of the
//! owning shard, delete the marked ones at QUIT) and writes its replies once per read, so
//! a pipelined batch (RFC 2449 PIPELINING) gets one write. STLS (RFC 2595) works as
//! STARTTLS does for SMTP: whatever the client sent after it in plaintext is dropped.

use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;

use crate::address::InboxKey;
use crate::mailbox::Mailbox;
use crate::metrics::Counters;
use crate::net::conns::{ConnGuard, Kind};
use crate::net::mail_client::{self, Deadlines, Input, LoginCheck, Read};
use crate::net::tls::{self, Conn};
use crate::net::{MailboxAnswer, MailboxOp, NetCtx, Shards};
use crate::pop3::{self, Event, LoginRefused, Session};

/// First size of a session's input buffer; it grows up to `INPUT_BYTES_MAX`.
const INPUT_BYTES_INITIAL: usize = 512;
/// The longest command line the session accepts, plus room for one more read.
const INPUT_BYTES_MAX: usize = 2 * pop3::COMMAND_LINE_BYTES_MAX;

/// How `Connection::run` ended.
enum End {
    Close,
    StartTls,
}

struct Connection<S> {
    ctx: Rc<NetCtx<S>>,
    session: Session,
    input: Input,
    out: Vec<u8>,
    deadlines: Deadlines,
    peer_ip: Option<IpAddr>,
    /// The inbox, once logged in.
    key: Option<InboxKey<'static>>,
}

impl<S> Drop for Connection<S> {
    fn drop(&mut self) {
        // Retrieved messages pass through here: wiped, not just freed.
        crate::alloc::wipe_vec(&mut self.out);
    }
}

/// Serves one POP3 connection to its end; `implicit_tls` for `--pop3s`.
pub async fn serve<S: Shards>(
    ctx: Rc<NetCtx<S>>,
    stream: TcpStream,
    implicit_tls: bool,
    peer_ip: Option<IpAddr>,
) {
    Counters::add(&ctx.counters.pop3_sessions_open, 1);
    let mut conn = Connection {
        session: Session::new(ctx.pop3_config.clone(), implicit_tls),
        input: Input::new(INPUT_BYTES_INITIAL, INPUT_BYTES_MAX),
        out: Vec::new(),
        deadlines: Deadlines::new(&ctx),
        peer_ip,
        key: None,
        ctx: ctx.clone(),
    };
    let guard = ctx
        .connections
        .register(stream.as_raw_fd(), Kind::MailClient);
    if implicit_tls {
        Box::pin(conn.run_over_tls(stream, guard, true)).await;
    } else {
        let mut stream = tls::GatherTcp::new(stream);
        conn.session.greeting(&mut conn.out);
        match conn.run(&mut stream, &guard).await {
            End::Close => {
                drop(guard);
                let _ = stream.0.close().await;
            }
            End::StartTls => {
                // Nothing the client pipelined in plaintext after STLS may count.
                conn.input.discard();
                Box::pin(conn.run_over_tls(stream.0, guard, false)).await;
            }
        }
    }
    Counters::sub(&ctx.counters.pop3_sessions_open, 1);
}

impl<S: Shards> Connection<S> {
    async fn run_over_tls(&mut self, stream: TcpStream, guard: ConnGuard<'_>, implicit: bool) {
        let Some((mut tls_stream, _negotiated)) = tls::accept(&self.ctx, stream).await else {
            return;
        };
        if implicit {
            self.session.greeting(&mut self.out);
        } else {
            self.session.tls_started();
        }
        // The session refuses a second STLS, so this run can only end in Close.
        let _ = self.run(&mut tls_stream, &guard).await;
        drop(guard);
        let _ = tls_stream.close().await;
    }

    async fn run<C: Conn>(&mut self, stream: &mut C, guard: &ConnGuard<'_>) -> End {
        loop {
            let out_before = self.out.len();
            let (consumed, event) = self.session.advance(self.input.pending(), &mut self.out);
            self.input.consume(consumed);
            if self.out.len() > out_before {
                self.deadlines.command_done();
            }
            match event {
                Event::NeedInput => {
                    if !self.flush(stream).await {
                        return End::Close;
                    }
                    if self.ctx.shards.is_shutting_down() {
                        let _ = mail_client::write_flushed(
                            stream,
                            b"-ERR [SYS/TEMP] server shutting down\r\n",
                        )
                        .await;
                        return End::Close;
                    }
                    guard.set_idle(self.input.is_empty());
                    let timeout = self.deadlines.next_read(!self.input.is_empty());
                    match self.input.read(stream, timeout).await {
                        Read::Data => {}
                        Read::TimedOut => {
                            Counters::add(&self.ctx.counters.mailbox_timeouts_total, 1);
                            let _ = mail_client::write_flushed(
                                stream,
                                b"-ERR [SYS/TEMP] timed out\r\n",
                            )
                            .await;
                            return End::Close;
                        }
                        Read::Closed | Read::Failed => return End::Close,
                    }
                }
                Event::Login { user, mut password } => {
                    let result = self.login(&user, &password).await;
                    crate::alloc::wipe_str(&mut password);
                    self.session.logged_in(result, &mut self.out);
                }
                Event::Retrieve {
                    id,
                    top_lines: _,
                    mark_seen,
                } => {
                    let raw = self.fetch(id).await;
                    if raw.is_some() {
                        Counters::add(&self.ctx.counters.pop3_messages_retrieved_total, 1);
                        if mark_seen && let Some(key) = &self.key {
                            let op = MailboxOp::SetSeen(vec![(id, true)]);
                            let _ = self.ctx.shards.mailbox(key.clone(), op).await;
                        }
                    }
                    self.session.retrieved(raw.as_deref(), &mut self.out);
                    if let Some(mut raw) = raw {
                        crate::alloc::wipe_vec(&mut raw);
                    }
                }
                Event::Update { delete } => {
                    let result = match &self.key {
                        Some(key) => match self
                            .ctx
                            .shards
                            .mailbox(key.clone(), MailboxOp::Delete(delete))
                            .await
                        {
                            Some(MailboxAnswer::Deleted(Ok(deleted))) => Ok(deleted.len()),
                            _ => Err(()),
                        },
                        None => Err(()),
                    };
                    self.session.updated(result, &mut self.out);
                }
                Event::StartTls => {
                    return if self.flush(stream).await {
                        End::StartTls
                    } else {
                        End::Close
                    };
                }
                Event::Quit | Event::Close => {
                    let _ = self.flush(stream).await;
                    return End::Close;
                }
            }
        }
    }

    /// Checks a login and opens the maildrop (the snapshot RFC 1939 numbers messages in).
    async fn login(&mut self, user: &str, password: &str) -> Result<Mailbox, LoginRefused> {
        let checked = mail_client::check_login(&self.ctx, user, password, self.peer_ip);
        let key = match checked {
            Ok(key) => key,
            Err(why) => {
                Counters::add(&self.ctx.counters.pop3_login_failures_total, 1);
                return Err(match why {
                    LoginCheck::Invalid => LoginRefused::Invalid,
                    LoginCheck::TryLater => LoginRefused::TryLater,
                });
            }
        };
        match self.ctx.shards.mailbox(key.clone(), MailboxOp::Open).await {
            Some(MailboxAnswer::Opened(mailbox)) => {
                Counters::add(&self.ctx.counters.pop3_logins_total, 1);
                self.key = Some(key);
                Ok(mailbox)
            }
            _ => Err(LoginRefused::TryLater),
        }
    }

    /// A copy of one message of the inbox; None if it is gone.
    async fn fetch(&self, id: crate::store::MessageId) -> Option<Vec<u8>> {
        let key = self.key.clone()?;
        match self
            .ctx
            .shards
            .mailbox(key, MailboxOp::Fetch(vec![id]))
            .await
        {
            Some(MailboxAnswer::Fetched(mut messages)) => messages.pop().and_then(|(_, raw)| raw),
            _ => None,
        }
    }

    /// Writes the replies; false when the client is gone.
    async fn flush<C: Conn>(&mut self, stream: &mut C) -> bool {
        if self.out.is_empty() {
            return true;
        }
        Counters::add(
            &self.ctx.counters.pop3_bytes_sent_total,
            self.out.len() as u64,
        );
        let n_replies = count_pop3_replies(&self.out);
        Counters::add(&self.ctx.counters.pop3_commands_total, n_replies);
        let written = mail_client::write_flushed(stream, &self.out).await.is_ok();
        crate::alloc::wipe_if_on(&mut self.out);
        self.out.clear();
        if self.out.capacity() > OUT_CAPACITY_KEPT_BYTES {
            crate::alloc::wipe_vec(&mut self.out);
            self.out.shrink_to(OUT_CAPACITY_KEPT_BYTES);
        }
        written
    }
}

/// After a big message the reply buffer shrinks back to this.
const OUT_CAPACITY_KEPT_BYTES: usize = 16 * 1024;

/// Status lines (`+OK`, `-ERR`) at line starts: one per answered command (a retrieved
/// message's lines count too when they start so; good enough for a counter).
fn count_pop3_replies(out: &[u8]) -> u64 {
    let is_status = |line: &[u8]| line.starts_with(b"+OK") || line.starts_with(b"-ERR");
    let mut n = u64::from(is_status(out));
    for newline in memchr::memchr_iter(b'\n', out) {
        n += u64::from(is_status(&out[newline + 1..]));
    }
    n
}
