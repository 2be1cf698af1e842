//! What the POP3 and IMAP socket loops share: accepting within the caps, reading with an
//! idle timeout and a whole-command deadline, and checking a login.
//!
//! The protocols live in `pop3::Session` and `imap::Session`, which never see a socket;
//! `pop3_conn` and `imap_conn` drive them the way `smtp_conn` drives SMTP.

use std::io::ErrorKind;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use crate::address::InboxKey;
use crate::metrics::Counters;
use crate::net::tls::Conn;
use crate::net::{NetCtx, Shards};

/// Which mail-client protocol a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Pop3,
    Imap,
}

impl Protocol {
    /// What a connection turned away gets before the close (nothing over implicit TLS:
    /// the client would read plaintext as a broken record).
    fn refusal(self, why: &str) -> Vec<u8> {
        match self {
            Protocol::Pop3 => format!("-ERR [SYS/TEMP] {why}, try again later\r\n"),
            Protocol::Imap => format!("* BYE [UNAVAILABLE] {why}, try again later\r\n"),
        }
        .into_bytes()
    }

    fn sessions_open(self, counters: &Counters) -> u64 {
        counters.pop3_sessions_open.get() + counters.imap_sessions_open.get()
    }
}

/// Accepts connections of `protocol` on one of this executor's listeners until cancelled;
/// `implicit_tls` for `--pop3s` and `--imaps` (needs `ctx.tls`).
pub async fn accept_loop<S: Shards>(
    ctx: Rc<NetCtx<S>>,
    listener: TcpListener,
    implicit_tls: bool,
    protocol: Protocol,
) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!("{protocol:?} accept failed: {error}");
                glommio::timer::sleep(crate::net::ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        Counters::add(
            match protocol {
                Protocol::Pop3 => &ctx.counters.pop3_connections_total,
                Protocol::Imap => &ctx.counters.imap_connections_total,
            },
            1,
        );
        let refusal = if !ctx.shards.is_ready() {
            Some("the server is restoring its mail")
        } else if protocol.sessions_open(&ctx.counters) as usize
            >= ctx.config.mailbox_sessions_per_core_max
        {
            Some("too many sessions")
        } else {
            None
        };
        if let Some(why) = refusal {
            Counters::add(&ctx.counters.mailbox_sessions_refused_total, 1);
            glommio::spawn_local(refuse(stream, implicit_tls, protocol.refusal(why))).detach();
            continue;
        }
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            let peer_ip = stream.peer_addr().ok().map(|addr| addr.ip());
            let Ok(_client_slot) = ctx.mail_client_limits.admit(peer_ip, Instant::now()) else {
                Counters::add(&ctx.counters.mailbox_sessions_refused_total, 1);
                let why = "too many sessions from your address";
                refuse(stream, implicit_tls, protocol.refusal(why)).await;
                return;
            };
            let _ = stream.set_nodelay(true);
            match protocol {
                Protocol::Pop3 => {
                    Box::pin(crate::net::pop3_conn::serve(
                        ctx.clone(),
                        stream,
                        implicit_tls,
                        peer_ip,
                    ))
                    .await;
                }
                Protocol::Imap => {
                    Box::pin(crate::net::imap_conn::serve(
                        ctx.clone(),
                        stream,
                        implicit_tls,
                        peer_ip,
                    ))
                    .await;
                }
            }
        })
        .detach();
    }
}

async fn refuse(mut stream: TcpStream, implicit_tls: bool, refusal: Vec<u8>) {
    if !implicit_tls {
        let _ = stream.write_all(&refusal).await;
    }
    let _ = stream.close().await;
}

/// Why a login was turned down (the protocols word it each their own way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginCheck {
    Invalid,
    TryLater,
}

/// Checks a login: the user name must be an address this server accepts mail for, and
/// the client must be under `--max-logins-per-ip-per-minute`. Counts the attempt. The
/// password is the inbox's token with `--private-inboxes` (a wrong one is refused like an
/// unknown user); without it the password is not checked: the address is the secret, as
/// on the web page.
pub fn check_login<S>(
    ctx: &NetCtx<S>,
    user: &str,
    password: &str,
    peer_ip: Option<IpAddr>,
) -> Result<InboxKey<'static>, LoginCheck> {
    let now = Instant::now();
    if ctx.mail_client_limits.over_message_rate(peer_ip, now) {
        return Err(LoginCheck::TryLater);
    }
    ctx.mail_client_limits.count_message(peer_ip, now);
    let key = InboxKey::new(user)
        .map_err(|_| LoginCheck::Invalid)?
        .into_owned();
    match key.as_str().rsplit_once('@') {
        Some((local_part, domain))
            if !local_part.is_empty()
                && !domain.is_empty()
                && ctx.config.domains.accepts(domain)
                && ctx
                    .config
                    .owned_partitions
                    .contains(crate::partition::Partition::of(&key))
                && ctx.tokens.admits(&key, Some(password)) =>
        {
            Ok(key)
        }
        _ => Err(LoginCheck::Invalid),
    }
}

/// A session's input: unconsumed bytes are `buf[start..end]`.
pub struct Input {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The buffer never grows past this (the protocol's longest command plus a read).
    bytes_max: usize,
}

/// How a read ended.
pub enum Read {
    /// More bytes are in.
    Data,
    /// The client closed (or shutdown interrupted the read).
    Closed,
    /// The timeout passed.
    TimedOut,
    /// Any other error.
    Failed,
}

impl Input {
    /// An empty input of `initial_bytes`, growing up to `bytes_max`.
    pub fn new(initial_bytes: usize, bytes_max: usize) -> Input {
        Input {
            buf: vec![0u8; initial_bytes],
            start: 0,
            end: 0,
            bytes_max,
        }
    }

    /// The bytes not consumed yet.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Drops the first `n` pending bytes.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.end - self.start);
        self.start += n;
    }

    /// Whether nothing is pending (the client is between commands).
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Forgets every pending byte (after STARTTLS: nothing sent in plaintext may count).
    pub fn discard(&mut self) {
        crate::alloc::wipe(&mut self.buf[..self.end]);
        (self.start, self.end) = (0, 0);
    }

    /// Reads more, with `timeout` for this read. Pending bytes move to the front first;
    /// consumed ones are wiped (they may be message text a client searched for).
    pub async fn read<C: Conn>(&mut self, stream: &mut C, timeout: Duration) -> Read {
        if self.start > 0 {
            let n_pending = self.end - self.start;
            self.buf.copy_within(self.start..self.end, 0);
            crate::alloc::wipe_if_on(&mut self.buf[n_pending..self.end]);
            (self.start, self.end) = (0, n_pending);
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= self.bytes_max {
                // The session leaves less than its longest command unconsumed, and that is
                // under `bytes_max`: cannot happen with a correct session.
                return Read::Failed;
            }
            let grown = (self.buf.len() * 2).min(self.bytes_max);
            self.buf.resize(grown, 0);
        }
        if timeout.is_zero() {
            return Read::TimedOut;
        }
        let _ = stream.tcp().set_read_timeout(Some(timeout));
        match stream.read(&mut self.buf[self.end..]).await {
            Ok(0) => Read::Closed,
            Ok(n) => {
                self.end += n;
                Read::Data
            }
            Err(error) if error.kind() == ErrorKind::UnexpectedEof => Read::Closed,
            Err(error) if error.kind() == ErrorKind::TimedOut => Read::TimedOut,
            Err(error) => {
                tracing::debug!("mail client read failed: {error}");
                Read::Failed
            }
        }
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        crate::alloc::wipe_vec(&mut self.buf);
    }
}

/// The deadline discipline of a mail-client session: between commands it may idle for
/// `--mailbox-idle-timeout`; once a command's first byte is in, the whole command must
/// arrive within `--mailbox-command-timeout`, however slowly it trickles.
pub struct Deadlines {
    idle: Duration,
    command: Duration,
    command_deadline: Option<Instant>,
}

impl Deadlines {
    pub fn new<S>(ctx: &NetCtx<S>) -> Deadlines {
        Deadlines {
            idle: ctx.config.mailbox_idle_timeout,
            command: ctx.config.mailbox_command_timeout,
            command_deadline: None,
        }
    }

    /// The timeout for the next read: the idle timeout between commands, or what is left
    /// of the command's deadline once it has begun (`mid_command`).
    pub fn next_read(&mut self, mid_command: bool) -> Duration {
        if !mid_command {
            self.command_deadline = None;
            return self.idle;
        }
        let deadline = *self
            .command_deadline
            .get_or_insert_with(|| Instant::now() + self.command);
        deadline.saturating_duration_since(Instant::now())
    }

    /// A command was completed: the next one gets its own deadline.
    pub fn command_done(&mut self) {
        self.command_deadline = None;
    }
}

/// Writes `bytes` and flushes (a TLS stream may hold records until flushed).
pub async fn write_flushed<C: Conn>(stream: &mut C, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}
