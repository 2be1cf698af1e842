//! Sockets: the only code that reads or writes a connection.
//!
//! One loop per protocol (`smtp_conn`, `http_conn`, and `ws_conn` for an HTTP connection
//! that upgraded), each driving a protocol that does no IO (`smtp::Session`, `http::`),
//! all generic over `tls::Conn` so plain TCP and TLS share them. `listen` binds the
//! listening sockets, `conns` registers open connections for shutdown, `tls` holds the
//! certificate and the handshake, `rate_limit` the per-client-IP HTTP limit; `http_client`
//! and `webhook` are the outgoing side (rspamd, webhooks).
//!
//! The loops run on the executor that accepted the connection and reach the shards
//! through [`Shards`], which the runtime implements: so `net` never imports `runtime`,
//! and the dependency runs one way (runtime -> net -> protocols, store, mail).

pub mod client_limits;
pub mod conns;
pub mod http_client;
pub mod http_conn;
pub mod imap_conn;
pub mod listen;
pub mod mail_client;
pub mod pop3_conn;
pub mod rate_limit;
pub mod smtp_conn;
pub mod tls;
pub mod webhook;
pub mod ws_conn;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

use glommio::Task;

use crate::address::InboxKey;
use crate::config::Config;
use crate::http::{InboxRequest, Response};
use crate::mailbox::Mailbox;
use crate::metrics::{Counters, Snapshot};
use crate::smtp::{Delivery, SessionConfig, Transaction};
use crate::store::MessageId;
use client_limits::ClientLimits;
use conns::ConnRegistry;
use listen::ShardListeners;
use mail_client::Protocol;
use rate_limit::RateLimiter;
use tls::TlsCerts;
use ws_conn::WsRegistry;

/// After a failed accept (EMFILE and friends), how long a listener waits before the next,
/// instead of spinning on the error.
pub const ACCEPT_ERROR_BACKOFF: std::time::Duration = std::time::Duration::from_millis(10);

/// What the socket loops need from the shards: storing mail, answering inbox requests and
/// subscriptions where the inbox lives, and the metrics of every shard. The runtime
/// implements it over its channel mesh.
// Thread-per-core: these futures never leave their executor, so they need not be `Send`,
// which is what the lint warns about.
#[allow(async_fn_in_trait)]
pub trait Shards: 'static {
    /// The shards are serving: false while they restore from the data directory (SMTP is
    /// then refused with 421, the API answers 503, `/healthz` says "restoring").
    fn is_ready(&self) -> bool;

    /// This executor has begun to shut down: stop taking new work.
    fn is_shutting_down(&self) -> bool;

    /// The process is stopping, even if this executor has not noticed yet.
    fn shutdown_triggered(&self) -> bool;

    /// Stores a finished transaction in every recipient's shard. `Delivery::Stored` means
    /// every copy is stored; with a journal, the copies must also become durable before the
    /// 250 is sent: the returned `Durability` settles that (or says why not), and the
    /// caller awaits it before it writes the reply, so the copies of every message of one
    /// read of pipelined input share their journal commits.
    async fn deliver<'q>(
        &self,
        transaction: &Transaction<'_>,
        received_header: &[u8],
        queue_id: &'q str,
        received_at: SystemTime,
    ) -> (Delivery<'q>, Option<Durability>);

    /// Answers an inbox request in the shard that owns the inbox (parking a long poll there).
    async fn serve_inbox(&self, request: InboxRequest) -> Response;

    /// Subscribes `frames` to the summaries of new messages of `key`, at the shard that owns
    /// it. Returns once subscribed; false if that shard is shutting down.
    async fn subscribe(
        &self,
        key: InboxKey<'static>,
        frames: futures_channel::mpsc::Sender<String>,
    ) -> bool;

    /// A snapshot of every shard's counters, index = shard.
    async fn metrics(&self) -> Vec<Snapshot>;

    /// Does what a mail client's session (POP3, IMAP) asks of inbox `key`, at the shard
    /// that owns it. None if that shard is shutting down.
    async fn mailbox(&self, key: InboxKey<'static>, op: MailboxOp) -> Option<MailboxAnswer>;

    /// Signals `signal` whenever inbox `key` changes (a message stored or deleted), at the
    /// shard that owns it, until `signal`'s receiver is dropped. False if that shard is
    /// shutting down.
    async fn watch_changes(
        &self,
        key: InboxKey<'static>,
        signal: futures_channel::mpsc::Sender<()>,
    ) -> bool;
}

/// What a mail client's session asks of an inbox.
#[derive(Debug)]
pub enum MailboxOp {
    /// The inbox now, numbered for mail clients.
    Open,
    /// Copies of these messages' bytes (None for one the inbox no longer holds).
    Fetch(Vec<MessageId>),
    /// Set (true) or clear the seen flag of these messages.
    SetSeen(Vec<(MessageId, bool)>),
    /// Delete these messages from the inbox (durably, with a journal, before the answer).
    Delete(Vec<MessageId>),
}

/// The answer to a `MailboxOp`, variant for variant.
#[derive(Debug)]
pub enum MailboxAnswer {
    Opened(Mailbox),
    Fetched(Vec<(MessageId, Option<Vec<u8>>)>),
    SeenSet,
    /// The ones deleted now or already gone; `Err` if the journal could not record the
    /// deletion (then nothing is reported deleted, though it is gone from memory).
    Deleted(Result<Vec<MessageId>, NotDurable>),
}

/// Settles when every copy of a stored message is durable (`Ok`), or says which reply the
/// message gets instead.
pub type Durability = futures_util::future::LocalBoxFuture<'static, Result<(), NotDurable>>;

/// Why a message stored in memory is not acknowledged after all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotDurable {
    /// A journal could not write it, or a shard went away: `451 4.3.0`.
    Temporary,
    /// A shard's store cannot hold it: `552 5.3.4`.
    TooLarge,
    /// Not stored at all: rspamd's score reached `--spam-reject-score`, `550 5.7.1`.
    Spam,
}

/// What one executor's socket loops share.
pub struct NetCtx<S> {
    /// The shards, as the runtime offers them.
    pub shards: Rc<S>,
    pub shard_idx: usize,
    pub config: Arc<Config>,
    pub session_config: Rc<SessionConfig>,
    /// The certificate for STARTTLS, `--smtps` and `--https`; `None` when TLS is off.
    /// Shared with the signal thread, which swaps in a new one on SIGHUP.
    pub tls: Option<Arc<TlsCerts>>,
    /// This executor's counters, shared with its shard.
    pub counters: Rc<Counters>,
    /// Open connections, so shutdown can interrupt their reads.
    pub connections: ConnRegistry,
    /// Open WebSockets, for the per-core ping sweep.
    pub websockets: WsRegistry,
    /// HTTP requests per client address on this core.
    pub http_rate_limiter: RateLimiter,
    /// SMTP sessions and messages per client address on this core.
    pub client_limits: ClientLimits,
    /// POP3 and IMAP sessions and logins per client address on this core.
    pub mail_client_limits: ClientLimits,
    /// What every POP3 session of this core shares.
    pub pop3_config: Rc<crate::pop3::SessionConfig>,
    /// What every IMAP session of this core shares (`Arc`: a session moves to the blocking
    /// pool to render big FETCH rounds).
    pub imap_config: Arc<crate::imap::SessionConfig>,

    /// Counter for queue ids (one per SMTP transaction handed to the store).
    queue_seq: Cell<u64>,
    /// Process start, part of every queue id.
    boot_micros: u64,
    /// Sender checks, blocklists and the spam filter, as configured.
    pub checks: smtp_conn::checks::Checks,
    /// Our authserv-id (`--hostname`), shared by every check's request.
    pub authserv_id: Arc<str>,
    /// Inbox tokens: issued by `POST /api/v1/addresses`, required with `--private-inboxes`
    /// by every inbox request, WebSocket and mail-client login. One secret for every core.
    pub tokens: Arc<crate::token::InboxTokens>,
}

/// The accept loops of one executor; `stop` ends them.
pub struct Accepting {
    tasks: Vec<Task<()>>,
}

impl<S: Shards> NetCtx<S> {
    /// The socket context of executor `shard_idx`.
    #[expect(
        clippy::too_many_arguments,
        reason = "one argument per thing the runtime shares with every executor's loops; a \
                  struct for them would be built only to be taken apart here"
    )]
    pub fn new(
        shards: Rc<S>,
        shard_idx: usize,
        config: Arc<Config>,
        tls: Option<Arc<TlsCerts>>,
        counters: Rc<Counters>,
        boot_micros: u64,
        resolver: Option<crate::auth::Verifier>,
        tokens: Arc<crate::token::InboxTokens>,
    ) -> NetCtx<S> {
        let starttls = tls.is_some();
        let session_config = Rc::new(SessionConfig {
            hostname: config.hostname.clone(),
            message_bytes_max: message_bytes_max_stored(&config),
            recipients_max: config.recipients_max,
            domains: config.domains.clone(),
            starttls_available: tls.is_some(),
            tls_required: config.tls_required,
            owned_partitions: config.owned_partitions,
        });
        NetCtx {
            shards,
            shard_idx,
            session_config,
            tls,
            counters,
            connections: ConnRegistry::default(),
            websockets: WsRegistry::default(),
            http_rate_limiter: RateLimiter::new(config.http_requests_per_ip_per_sec_max),
            client_limits: ClientLimits::new(
                config.smtp_sessions_per_ip_max,
                config.smtp_messages_per_ip_per_minute_max,
                config.client_limit_exempt.clone(),
            ),
            mail_client_limits: ClientLimits::new(
                config.mailbox_sessions_per_ip_max,
                config.mailbox_logins_per_ip_per_minute_max,
                config.client_limit_exempt.clone(),
            ),
            pop3_config: Rc::new(crate::pop3::SessionConfig {
                hostname: config.hostname.clone(),
                starttls_available: starttls,
                tls_required: config.tls_required,
            }),
            imap_config: Arc::new(crate::imap::SessionConfig {
                hostname: config.hostname.clone(),
                starttls_available: starttls,
                tls_required: config.tls_required,
            }),
            authserv_id: Arc::from(config.hostname.as_str()),
            checks: smtp_conn::checks::Checks::new(&config, resolver),
            config,
            queue_seq: Cell::new(0),
            boot_micros,
            tokens,
        }
    }

    /// Writes a fresh queue id into `out` (cleared first). Unique per process run and shard.
    pub fn next_queue_id(&self, out: &mut String) {
        use std::fmt::Write as _;
        let seq = self.queue_seq.get() + 1;
        self.queue_seq.set(seq);
        out.clear();
        let _ = write!(
            out,
            "{:013X}{:02X}{:08X}",
            self.boot_micros, self.shard_idx, seq
        );
    }

    /// SMTP sessions, HTTP connections and mail-client sessions open on this executor.
    pub fn open_connections(&self) -> u64 {
        self.counters.smtp_sessions_open.get()
            + self.counters.http_connections_open.get()
            + self.counters.pop3_sessions_open.get()
            + self.counters.imap_sessions_open.get()
    }
}

/// The largest message SIZE advertises and the session accepts: `--max-message-size`, or
/// less when a shard's ring could not also hold our Received header and the largest
/// envelope beside it (so a message of exactly the advertised size is always stored,
/// never refused with "too big for the store").
pub fn message_bytes_max_stored(config: &Config) -> usize {
    let ring_bytes = config.memory_bytes_max / config.cores.max(1);
    let spellings_max = config.recipients_max * crate::smtp::session::SPELLINGS_PER_INBOX_MAX;
    let overhead_bytes = crate::smtp::session::RECEIVED_HEADER_BYTES_MAX
        + crate::store::envelope_bytes_max(spellings_max, crate::smtp::parser::PATH_BYTES_MAX);
    config
        .message_bytes_max
        .min(ring_bytes.saturating_sub(overhead_bytes))
}

/// Starts the accept loops of one executor on its listeners.
pub fn start<S: Shards>(ctx: &Rc<NetCtx<S>>, listeners: ShardListeners) -> Accepting {
    let mut tasks = vec![
        glommio::spawn_local(smtp_conn::accept_loop(ctx.clone(), listeners.smtp, false)),
        glommio::spawn_local(http_conn::accept_loop(ctx.clone(), listeners.http, false)),
    ];
    if let Some(listener) = listeners.smtps {
        tasks.push(glommio::spawn_local(smtp_conn::accept_loop(
            ctx.clone(),
            listener,
            true,
        )));
    }
    if let Some(listener) = listeners.https {
        tasks.push(glommio::spawn_local(http_conn::accept_loop(
            ctx.clone(),
            listener,
            true,
        )));
    }
    let mail_clients = [
        (listeners.pop3, false, Protocol::Pop3),
        (listeners.pop3s, true, Protocol::Pop3),
        (listeners.imap, false, Protocol::Imap),
        (listeners.imaps, true, Protocol::Imap),
    ];
    for (listener, implicit_tls, protocol) in mail_clients {
        if let Some(listener) = listener {
            tasks.push(glommio::spawn_local(mail_client::accept_loop(
                ctx.clone(),
                listener,
                implicit_tls,
                protocol,
            )));
        }
    }
    Accepting { tasks }
}

impl Accepting {
    /// Stops accepting; connections already accepted go on.
    pub async fn stop(self) {
        for task in self.tasks {
            task.cancel().await;
        }
    }
}
