//! The only IMAP code that touches a socket: read, time out, reach the shards, write.
//!
//! The protocol lives in `imap::Session`; this loop feeds it what arrived and does what
//! its events ask: check a login, get the inbox numbered (SELECT, STATUS, NOOP), copy
//! messages out of the owning shard for FETCH and SEARCH (rendering big ones on glommio's
//! blocking pool, so a BODYSTRUCTURE of a 10 MiB message never stalls the core), tell the
//! shard about `\Seen`, delete on EXPUNGE. STARTTLS drops whatever the client pipelined
//! after it, as for SMTP.
//!
//! Once a mailbox is selected the session watches its inbox (`Shards::watch_changes`): a
//! change signal, or the next expiry among its messages coming due, makes the loop fetch
//! the inbox again and hand it to `Session::sync`, which reports EXISTS and EXPUNGE at
//! the next point the protocol allows, or at once in IDLE. In IDLE the loop waits for
//! whichever comes first: input (DONE), a change, an expiry, or the idle timeout.

use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use futures_channel::mpsc;
use futures_lite::{AsyncWriteExt, StreamExt};
use glommio::net::TcpStream;

use crate::address::InboxKey;
use crate::clock::now_ms;
use crate::imap::{Event, LoginRefused, Session};
use crate::metrics::Counters;
use crate::net::conns::{ConnGuard, Kind};
use crate::net::mail_client::{self, Deadlines, Input, LoginCheck, Read};
use crate::net::tls::{self, Conn};
use crate::net::{MailboxAnswer, MailboxOp, NetCtx, Shards};
use crate::store::MessageId;

/// First size of the input buffer (small, as an idle session's should be); it doubles up
/// to `INPUT_BYTES_MAX` when reads fill it. The session takes everything it is given, so
/// the buffer only ever holds one read.
const INPUT_BYTES_INITIAL: usize = 1024;
/// The largest read the loop makes.
const INPUT_BYTES_MAX: usize = 64 * 1024;
/// Fetched bytes above which a round of FETCH or SEARCH is rendered off the executor.
const RENDER_ON_EXECUTOR_BYTES_MAX: usize = 64 * 1024;
/// A mailbox in IDLE is read again at least this often, to see messages evicted for
/// capacity (which send no change signal; stores, deletes and expiry do).
const IDLE_RESYNC: Duration = Duration::from_secs(30);
/// After the reply buffer held a large FETCH it shrinks back to this.
const OUT_CAPACITY_KEPT_BYTES: usize = 64 * 1024;

enum End {
    Close,
    StartTls,
}

struct Connection<S> {
    ctx: Rc<NetCtx<S>>,
    /// Taken while a round is rendered on the blocking pool.
    session: Option<Session>,
    input: Input,
    out: Vec<u8>,
    deadlines: Deadlines,
    peer_ip: Option<IpAddr>,
    key: Option<InboxKey<'static>>,
    /// Signals from the owning shard on every change to the inbox, once selected.
    changes: Option<mpsc::Receiver<()>>,
    /// Commands already added to `imap_commands_total`.
    n_commands_counted: u64,
}

impl<S> Drop for Connection<S> {
    fn drop(&mut self) {
        crate::alloc::wipe_vec(&mut self.out);
    }
}

/// Serves one IMAP connection to its end; `implicit_tls` for `--imaps`.
pub async fn serve<S: Shards>(
    ctx: Rc<NetCtx<S>>,
    stream: TcpStream,
    implicit_tls: bool,
    peer_ip: Option<IpAddr>,
) {
    Counters::add(&ctx.counters.imap_sessions_open, 1);
    let mut conn = Connection {
        session: Some(Session::new(ctx.imap_config.clone(), implicit_tls)),
        input: Input::new(INPUT_BYTES_INITIAL, INPUT_BYTES_MAX),
        out: Vec::new(),
        deadlines: Deadlines::new(&ctx),
        peer_ip,
        key: None,
        changes: None,
        n_commands_counted: 0,
        ctx: ctx.clone(),
    };
    let guard = ctx
        .connections
        .register(stream.as_raw_fd(), Kind::MailClient);
    if implicit_tls {
        Box::pin(conn.run_over_tls(stream, guard, true)).await;
    } else {
        let mut stream = tls::GatherTcp::new(stream);
        if let Some(session) = &conn.session {
            session.greeting(&mut conn.out);
        }
        match conn.run(&mut stream, &guard).await {
            End::Close => {
                drop(guard);
                let _ = stream.0.close().await;
            }
            End::StartTls => {
                conn.input.discard();
                Box::pin(conn.run_over_tls(stream.0, guard, false)).await;
            }
        }
    }
    Counters::sub(&ctx.counters.imap_sessions_open, 1);
}

/// What ended a wait in IDLE.
enum Wake {
    Input(Read),
    Changed,
    ChangesEnded,
}

impl<S: Shards> Connection<S> {
    fn session(&mut self) -> &mut Session {
        self.session
            .as_mut()
            .expect("the session is back after every render")
    }

    async fn run_over_tls(&mut self, stream: TcpStream, guard: ConnGuard<'_>, implicit: bool) {
        let Some((mut tls_stream, _negotiated)) = tls::accept(&self.ctx, stream).await else {
            return;
        };
        if implicit {
            let mut out = std::mem::take(&mut self.out);
            self.session().greeting(&mut out);
            self.out = out;
        } else {
            self.session().tls_started();
        }
        let _ = self.run(&mut tls_stream, &guard).await;
        drop(guard);
        let _ = tls_stream.close().await;
    }

    async fn run<C: Conn>(&mut self, stream: &mut C, guard: &ConnGuard<'_>) -> End {
        loop {
            let (consumed, event) = {
                let session = self.session.as_mut().expect("session");
                session.advance(self.input.pending(), &mut self.out)
            };
            self.input.consume(consumed);
            match event {
                Event::NeedInput => {
                    self.sync_if_changed().await;
                    if !self.flush(stream).await {
                        return End::Close;
                    }
                    if self.ctx.shards.is_shutting_down() {
                        let _ = mail_client::write_flushed(
                            stream,
                            b"* BYE [UNAVAILABLE] server shutting down\r\n",
                        )
                        .await;
                        return End::Close;
                    }
                    let read = if self.session().is_idle() {
                        self.wait_in_idle(stream).await
                    } else {
                        let mid_command = self.session().is_mid_command();
                        guard.set_idle(!mid_command);
                        let timeout = self.deadlines.next_read(mid_command);
                        self.input.read(stream, timeout).await
                    };
                    match read {
                        Read::Data => {}
                        Read::TimedOut => {
                            Counters::add(&self.ctx.counters.mailbox_timeouts_total, 1);
                            let _ = mail_client::write_flushed(
                                stream,
                                b"* BYE Autologout; idle for too long\r\n",
                            )
                            .await;
                            return End::Close;
                        }
                        Read::Closed | Read::Failed => return End::Close,
                    }
                }
                Event::Login { user, mut password } => {
                    let result = self.login(&user, &password);
                    crate::alloc::wipe_str(&mut password);
                    let mut out = std::mem::take(&mut self.out);
                    self.session().logged_in(result, &mut out);
                    self.out = out;
                }
                Event::NeedMailbox => {
                    let mailbox = self.open().await;
                    let mut out = std::mem::take(&mut self.out);
                    match mailbox {
                        Some(mailbox) => self.session().mailbox(mailbox, &mut out),
                        None => {
                            out.extend_from_slice(b"* BYE [UNAVAILABLE] server shutting down\r\n");
                            self.out = out;
                            let _ = self.flush(stream).await;
                            return End::Close;
                        }
                    }
                    self.out = out;
                    self.watch_if_selected().await;
                }
                Event::NeedMessages { ids } => {
                    let messages = self.fetch(ids).await;
                    self.render(messages).await;
                }
                Event::SetFlags { changes } => {
                    if let Some(key) = self.key.clone() {
                        let _ = self
                            .ctx
                            .shards
                            .mailbox(key, MailboxOp::SetSeen(changes))
                            .await;
                    }
                }
                Event::Expunge { ids } => {
                    let deleted = self.delete(ids).await;
                    let mut out = std::mem::take(&mut self.out);
                    self.session().expunged(deleted, &mut out);
                    self.out = out;
                }
                Event::Idle => {
                    Counters::add(&self.ctx.counters.imap_idling, 1);
                    self.watch_if_selected().await;
                    // The inbox may have changed since SELECT or the last NOOP.
                    if let Some(mailbox) = self.open().await {
                        let mut out = std::mem::take(&mut self.out);
                        self.session().sync(mailbox, &mut out);
                        self.out = out;
                    }
                }
                Event::IdleDone => {
                    Counters::sub(&self.ctx.counters.imap_idling, 1);
                }
                Event::StartTls => {
                    return if self.flush(stream).await {
                        End::StartTls
                    } else {
                        End::Close
                    };
                }
                Event::Logout | Event::Close => {
                    if self.session().is_idle() {
                        Counters::sub(&self.ctx.counters.imap_idling, 1);
                    }
                    let _ = self.flush(stream).await;
                    return End::Close;
                }
            }
        }
    }

    /// Waits in IDLE for input (DONE), a change to the inbox, the next expiry, a periodic
    /// re-read, or the idle timeout, and reports changes to the client at once.
    async fn wait_in_idle<C: Conn>(&mut self, stream: &mut C) -> Read {
        let idle_deadline = std::time::Instant::now() + self.ctx.config.mailbox_idle_timeout;
        loop {
            let now_ms_value = now_ms();
            let until_expiry = self
                .session()
                .next_expiry_ms()
                .map(|expiry| Duration::from_millis(expiry.saturating_sub(now_ms_value) + 1))
                .unwrap_or(IDLE_RESYNC)
                .min(IDLE_RESYNC);
            let until_deadline = idle_deadline.saturating_duration_since(std::time::Instant::now());
            let wake = {
                let input = &mut self.input;
                let changes = &mut self.changes;
                let read = async { Wake::Input(input.read(stream, until_deadline).await) };
                let changed = async {
                    match changes.as_mut() {
                        Some(changes) => match changes.next().await {
                            Some(()) => Wake::Changed,
                            None => Wake::ChangesEnded,
                        },
                        None => std::future::pending().await,
                    }
                };
                let timer = async {
                    glommio::timer::sleep(until_expiry).await;
                    Wake::Changed
                };
                futures_lite::future::or(read, futures_lite::future::or(changed, timer)).await
            };
            match wake {
                Wake::Input(read) => return read,
                Wake::Changed => {
                    if let Some(mailbox) = self.open().await {
                        let mut out = std::mem::take(&mut self.out);
                        self.session().sync(mailbox, &mut out);
                        self.out = out;
                    }
                    if !self.flush(stream).await {
                        return Read::Closed;
                    }
                }
                // The shard dropped the watch: shutting down.
                Wake::ChangesEnded => return Read::Closed,
            }
        }
    }

    /// Outside IDLE: if the inbox changed (or a message came due to expire) since the
    /// session last saw it, give the session the inbox now; it reports the changes when
    /// the protocol allows.
    async fn sync_if_changed(&mut self) {
        if !self.session().selected() {
            return;
        }
        let signalled = match self.changes.as_mut() {
            Some(changes) => changes.try_recv().is_ok(),
            None => false,
        };
        let expired = self
            .session()
            .next_expiry_ms()
            .is_some_and(|expiry| expiry <= now_ms());
        if (signalled || expired)
            && let Some(mailbox) = self.open().await
        {
            let mut out = std::mem::take(&mut self.out);
            self.session().sync(mailbox, &mut out);
            self.out = out;
        }
    }

    /// Registers for the inbox's change signals once a mailbox is selected.
    async fn watch_if_selected(&mut self) {
        if self.changes.is_some() || !self.session().selected() {
            return;
        }
        let Some(key) = self.key.clone() else {
            return;
        };
        // Capacity one per sender: a change not yet seen is not queued twice.
        let (signal, changes) = mpsc::channel(0);
        if self.ctx.shards.watch_changes(key, signal).await {
            self.changes = Some(changes);
        }
    }

    fn login(&mut self, user: &str, password: &str) -> Result<(), LoginRefused> {
        match mail_client::check_login(&self.ctx, user, password, self.peer_ip) {
            Ok(key) => {
                Counters::add(&self.ctx.counters.imap_logins_total, 1);
                self.key = Some(key);
                Ok(())
            }
            Err(why) => {
                Counters::add(&self.ctx.counters.imap_login_failures_total, 1);
                Err(match why {
                    LoginCheck::Invalid => LoginRefused::Invalid,
                    LoginCheck::TryLater => LoginRefused::TryLater,
                })
            }
        }
    }

    async fn open(&self) -> Option<crate::mailbox::Mailbox> {
        let key = self.key.clone()?;
        match self.ctx.shards.mailbox(key, MailboxOp::Open).await {
            Some(MailboxAnswer::Opened(mailbox)) => Some(mailbox),
            _ => None,
        }
    }

    async fn fetch(&self, ids: Vec<MessageId>) -> Vec<(MessageId, Option<Vec<u8>>)> {
        let Some(key) = self.key.clone() else {
            return ids.into_iter().map(|id| (id, None)).collect();
        };
        let n_ids = ids.len();
        match self.ctx.shards.mailbox(key, MailboxOp::Fetch(ids)).await {
            Some(MailboxAnswer::Fetched(messages)) => {
                let n_found = messages.iter().filter(|(_, raw)| raw.is_some()).count();
                Counters::add(
                    &self.ctx.counters.imap_messages_fetched_total,
                    n_found as u64,
                );
                messages
            }
            _ => Vec::with_capacity(n_ids),
        }
    }

    async fn delete(&self, ids: Vec<MessageId>) -> Vec<MessageId> {
        let Some(key) = self.key.clone() else {
            return Vec::new();
        };
        match self.ctx.shards.mailbox(key, MailboxOp::Delete(ids)).await {
            Some(MailboxAnswer::Deleted(Ok(deleted))) => deleted,
            // Not durable or shutting down: report nothing; what is gone shows as EXPUNGE
            // at the next sync.
            _ => Vec::new(),
        }
    }

    /// Hands fetched messages to the session, which renders FETCH or evaluates SEARCH on
    /// them: on the blocking pool when they are big (parsing MIME is linear, but 10 MiB of
    /// it is milliseconds a core would not serve anyone else).
    async fn render(&mut self, messages: Vec<(MessageId, Option<Vec<u8>>)>) {
        let total_bytes: usize = messages
            .iter()
            .map(|(_, raw)| raw.as_ref().map_or(0, Vec::len))
            .sum();
        if total_bytes <= RENDER_ON_EXECUTOR_BYTES_MAX {
            let mut out = std::mem::take(&mut self.out);
            self.session().messages(messages, &mut out);
            self.out = out;
            return;
        }
        let mut session = self.session.take().expect("session");
        let mut out = std::mem::take(&mut self.out);
        let (session, out) = glommio::executor()
            .spawn_blocking(move || {
                session.messages(messages, &mut out);
                crate::alloc::wipe_stack();
                (session, out)
            })
            .await;
        self.session = Some(session);
        self.out = out;
    }

    /// Writes the responses; false when the client is gone.
    async fn flush<C: Conn>(&mut self, stream: &mut C) -> bool {
        if self.out.is_empty() {
            return true;
        }
        Counters::add(
            &self.ctx.counters.imap_bytes_sent_total,
            self.out.len() as u64,
        );
        if let Some(session) = &self.session {
            let n_commands = session.n_commands();
            Counters::add(
                &self.ctx.counters.imap_commands_total,
                n_commands - self.n_commands_counted,
            );
            self.n_commands_counted = n_commands;
        }
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
