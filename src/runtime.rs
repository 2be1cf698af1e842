//! The executor pool: listeners, one pinned glommio executor per core, the channel mesh
//! between shards, delivery of messages to the shards that own their inboxes, and shutdown.
//!
//! Each executor owns one `ShardCtx`: its store shard, counters, long-poll waiters and the
//! registry of its open connections. Nothing in a `ShardCtx` is shared with another thread;
//! other shards reach it only through `ShardMsg`s on the mesh, and answers come back on
//! `futures_channel::oneshot` channels (glommio wakes a task from a foreign thread through
//! the executor's notifier, so the reply needs no lock on our side).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use futures_channel::oneshot;
use glommio::channels::channel_mesh::{MeshBuilder, Senders};
use glommio::net::TcpListener;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};

use crate::config::Config;
use crate::http::api::{self, InboxOp, InboxRequest, Outcome};
use crate::http::response::Response;
use crate::metrics::{Counters, Snapshot};
use crate::net::tls::TlsCerts;
use crate::smtp::{Delivery, SessionConfig, Transaction};
use crate::store::{self, Incoming, Shard, ShardConfig, StoreError};

/// Messages in flight from one shard to another before the sender waits (back-pressure).
const MESH_CHANNEL_CAPACITY: usize = 1024;
/// Entries per io_uring. The kernel sizes a ring's poll-cancel hash table from it (cq
/// entries / 32, at most 256 buckets), and glommio cancels a timeout on every reactor loop,
/// which walks one bucket: with glommio's default of 128 (8 buckets), 8 000 idle sockets
/// made every loop walk ~1 000 pending polls (io_poll_find at 14.5% of the server's CPU).
/// 4096 gives the full 256 buckets.
const IO_URING_DEPTH: usize = 4096;
/// Listen backlog per listener; the kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 4096;
/// How often an executor looks at the process-wide shutdown flag and expires messages.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(50);
/// After the grace period, how long interrupted sessions get to write their 421 and close.
const SHUTDOWN_CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How long a shard that is done keeps serving its peers while they finish (a bound, not a sleep).
const SHUTDOWN_PEER_WAIT: Duration = Duration::from_secs(30);

/// Summaries queued for one WebSocket before it counts as too slow and is dropped (it gets
/// close code 1013 and resynchronises with a listing).
pub const WS_QUEUE_FRAMES: usize = 256;
/// How often each executor pings its WebSockets (one sweep per core, no timer per socket)
/// and forgets subscriptions whose sockets have gone.
pub const WS_PING_INTERVAL: Duration = Duration::from_secs(30);

/// Starts shutdown from outside the executors (a signal handler thread, a test).
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    triggered: Arc<AtomicBool>,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Asks the server to stop accepting, finish current transactions, and exit.
    pub fn trigger(&self) {
        self.triggered.store(true, Ordering::Release);
    }

    pub fn is_triggered(&self) -> bool {
        self.triggered.load(Ordering::Acquire)
    }
}

/// Where the listeners ended up (ports resolved when the configuration asked for port 0).
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    pub smtp_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// The implicit-TLS SMTP listener, when `--smtps` is configured.
    pub smtps_addr: Option<SocketAddr>,
    /// The HTTPS listener, when `--https` is configured.
    pub https_addr: Option<SocketAddr>,
}

/// A request from one shard to another.
pub enum ShardMsg {
    /// Store a message for recipients that live in the receiving shard.
    Store {
        job: StoreJob,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Serve an inbox request; the receiving shard owns the inbox.
    Inbox {
        request: InboxRequest,
        reply: oneshot::Sender<Response>,
    },
    /// Report counters and store statistics for `/metrics`.
    Stats { reply: oneshot::Sender<Snapshot> },
    /// Push the summary of every message that arrives in `address` from now on into
    /// `frames`; the receiving shard owns the inbox. `reply` answers once subscribed.
    Subscribe {
        address: String,
        frames: futures_channel::mpsc::Sender<String>,
        reply: oneshot::Sender<()>,
    },
}

/// A WebSocket's subscription, held by the shard that owns its inbox.
struct Subscriber {
    /// Summaries (JSON text) to the socket's task, which may run on another executor.
    frames: futures_channel::mpsc::Sender<String>,
    /// The newest message already pushed (or in the inbox when it subscribed).
    last_id: Option<store::MessageId>,
}

/// A message on its way to another shard. The bytes are shared by every shard it goes to.
pub struct StoreJob {
    pub mail_from: String,
    pub rcpts: Vec<String>,
    /// Our Received header followed by the client's message.
    pub data: Arc<[u8]>,
    pub received_at_ms: u64,
}

/// Everything one executor owns.
pub struct ShardCtx {
    pub shard_idx: usize,
    pub n_shards: usize,
    pub config: Arc<Config>,
    pub session_config: Rc<SessionConfig>,
    /// The TLS certificate for STARTTLS, `--smtps` and `--https`; `None` when TLS is off.
    /// Shared with the signal thread, which swaps in a new one on SIGHUP.
    pub tls: Option<Arc<TlsCerts>>,
    pub store: RefCell<Shard>,
    pub counters: Counters,
    /// Sends to the other shards; `send_to(self.shard_idx)` is an error by design.
    mesh: Senders<ShardMsg>,
    /// Long polls parked until a message arrives in their inbox (key: inbox key).
    waiters: RefCell<HashMap<String, Vec<oneshot::Sender<()>>>>,
    /// WebSocket subscriptions to inboxes this shard owns (key: inbox key).
    subscribers: RefCell<HashMap<String, Vec<Subscriber>>>,
    /// Inboxes with subscribers that got a message, to this shard's push task. Pushing
    /// there, not in `insert`, keeps the summary parse off the SMTP reply path.
    push_queue: futures_channel::mpsc::UnboundedSender<String>,
    /// This executor's open WebSockets: their ping signals, for the per-core sweep.
    pub websockets: crate::net::ws_conn::WsRegistry,
    /// HTTP requests per client address on this core.
    pub http_rate_limiter: crate::net::rate_limit::RateLimiter,
    /// Open connections of this executor, so shutdown can interrupt their reads.
    pub connections: ConnRegistry,
    /// Set once when this executor begins to shut down.
    shutting_down: Cell<bool>,
    /// The process-wide trigger, set before any executor starts shutting down.
    shutdown: Shutdown,
    /// Counter for queue ids (one per SMTP transaction handed to the store).
    queue_seq: Cell<u64>,
    boot_micros: u64,
}

impl ShardCtx {
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.get()
    }

    /// Whether the process is stopping, even if this executor has not noticed yet.
    pub fn shutdown_triggered(&self) -> bool {
        self.shutdown.is_triggered()
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

    /// Stores the finished transaction in every recipient's shard. The caller sends 250
    /// only for `Delivery::Stored`, so a 250 means every copy is in its shard.
    pub async fn deliver<'q>(
        &self,
        transaction: &Transaction<'_>,
        received_header: &[u8],
        queue_id: &'q str,
        received_at: SystemTime,
    ) -> Delivery<'q> {
        let size_bytes = received_header.len() + transaction.body.len();
        let ring_bytes = self.store.borrow().config().ring_bytes;
        if size_bytes > ring_bytes {
            return Delivery::TooLarge;
        }
        let received_at_ms = unix_ms(received_at);
        let mut local_rcpts: Vec<&str> = Vec::new();
        let mut remote_rcpts: Vec<(usize, Vec<String>)> = Vec::new();
        for rcpt in transaction.rcpts() {
            let shard_idx = store::shard_of(rcpt, self.n_shards);
            if shard_idx == self.shard_idx {
                local_rcpts.push(rcpt);
            } else if let Some((_, rcpts)) =
                remote_rcpts.iter_mut().find(|(idx, _)| *idx == shard_idx)
            {
                rcpts.push(rcpt.to_string());
            } else {
                remote_rcpts.push((shard_idx, vec![rcpt.to_string()]));
            }
        }

        // Send to the other shards first so their work overlaps ours.
        let mut replies = Vec::with_capacity(remote_rcpts.len());
        if !remote_rcpts.is_empty() {
            let mut data = Vec::with_capacity(size_bytes);
            data.extend_from_slice(received_header);
            data.extend_from_slice(transaction.body);
            let data: Arc<[u8]> = data.into();
            for (shard_idx, rcpts) in remote_rcpts {
                let (reply, answer) = oneshot::channel();
                let job = StoreJob {
                    mail_from: transaction.mail_from.to_string(),
                    rcpts,
                    data: data.clone(),
                    received_at_ms,
                };
                if self
                    .mesh
                    .send_to(shard_idx, ShardMsg::Store { job, reply })
                    .await
                    .is_err()
                {
                    tracing::error!(shard_idx, "peer shard is gone; message refused with 451");
                    return Delivery::TemporaryFailure;
                }
                replies.push(answer);
            }
        }

        let mut outcome = Ok(());
        if !local_rcpts.is_empty() {
            let parts: [&[u8]; 2] = [received_header, transaction.body];
            let incoming = Incoming {
                mail_from: transaction.mail_from,
                rcpts: &local_rcpts,
                parts: &parts,
                received_at_ms,
            };
            outcome = self.insert(&incoming);
        }
        for answer in replies {
            match answer.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => outcome = Err(error),
                Err(_canceled) => {
                    tracing::error!("peer shard dropped a store request; message refused with 451");
                    return Delivery::TemporaryFailure;
                }
            }
        }
        match outcome {
            Ok(()) => {
                Counters::add(&self.counters.messages_accepted_total, 1);
                Counters::add(
                    &self.counters.message_bytes_accepted_total,
                    transaction.body.len() as u64,
                );
                Delivery::Stored { queue_id }
            }
            Err(StoreError::TooLarge { .. }) => Delivery::TooLarge,
        }
    }

    /// Inserts into this executor's own shard and wakes long polls on the inboxes it touched.
    fn insert(&self, incoming: &Incoming<'_>) -> Result<(), StoreError> {
        // The receive time is "now" closely enough (the store keeps its clock monotonic),
        // and it saves a clock read per message.
        self.store
            .borrow_mut()
            .insert(incoming, incoming.received_at_ms)?;
        // Nothing to look up (no key to build) unless someone is watching some inbox.
        let mut waiters = self.waiters.borrow_mut();
        let subscribers = self.subscribers.borrow();
        if waiters.is_empty() && subscribers.is_empty() {
            return Ok(());
        }
        for rcpt in incoming.rcpts {
            let key = store::inbox_key(rcpt);
            if let Some(parked) = waiters.remove(&key) {
                for waiter in parked {
                    let _ = waiter.send(());
                }
            }
            if subscribers.contains_key(&key) {
                let _ = self.push_queue.unbounded_send(key);
            }
        }
        Ok(())
    }

    /// Subscribes `frames` to the new messages of `address`, on whichever shard owns it.
    /// Returns once subscribed, so that a message that arrives after the WebSocket's 101
    /// is pushed; `false` if the owner is shutting down.
    pub async fn subscribe(
        &self,
        address: String,
        frames: futures_channel::mpsc::Sender<String>,
    ) -> bool {
        let owner_idx = store::shard_of(&address, self.n_shards);
        if owner_idx == self.shard_idx {
            return self.subscribe_local(address, frames);
        }
        let (reply, answer) = oneshot::channel();
        let msg = ShardMsg::Subscribe {
            address,
            frames,
            reply,
        };
        self.mesh.send_to(owner_idx, msg).await.is_ok() && answer.await.is_ok()
    }

    /// Subscribes at this shard, which owns `address`; `false` once it is shutting down.
    fn subscribe_local(
        &self,
        address: String,
        frames: futures_channel::mpsc::Sender<String>,
    ) -> bool {
        if self.is_shutting_down() {
            return false;
        }
        let last_id = self.store.borrow().list(&address, None, 0).newest;
        let mut subscribers = self.subscribers.borrow_mut();
        let subscribed = subscribers.entry(address).or_default();
        subscribed.retain(|subscriber| !subscriber.frames.is_closed());
        subscribed.push(Subscriber { frames, last_id });
        true
    }

    /// Sends the summaries of messages that arrived in `inbox_key` since each subscriber's
    /// last push, oldest first. A subscriber whose queue is full, or that missed more than
    /// a queue's worth, is dropped: its socket closes with 1013 and the client lists.
    fn push_new_messages(&self, inbox_key: &str) {
        let mut subscribers = self.subscribers.borrow_mut();
        let Some(subscribed) = subscribers.get_mut(inbox_key) else {
            return;
        };
        let store = self.store.borrow();
        subscribed.retain_mut(|subscriber| {
            let listing = store.list(inbox_key, subscriber.last_id, WS_QUEUE_FRAMES);
            if listing.messages.len() == WS_QUEUE_FRAMES {
                Counters::add(&self.counters.websockets_dropped_slow_total, 1);
                return false;
            }
            for message in listing.messages.iter().rev() {
                match subscriber.frames.try_send(api::summary_text(message)) {
                    Ok(()) => Counters::add(&self.counters.websocket_frames_total, 1),
                    Err(error) => {
                        if error.is_full() {
                            Counters::add(&self.counters.websockets_dropped_slow_total, 1);
                        }
                        return false;
                    }
                }
            }
            if let Some(newest) = listing.messages.first() {
                subscriber.last_id = Some(newest.id);
            }
            !subscriber.frames.is_closed()
        });
        if subscribed.is_empty() {
            subscribers.remove(inbox_key);
        }
    }

    /// Forgets subscriptions whose sockets have closed, so quiet inboxes do not keep them.
    fn forget_closed_subscribers(&self) {
        self.subscribers.borrow_mut().retain(|_, subscribed| {
            subscribed.retain(|subscriber| !subscriber.frames.is_closed());
            !subscribed.is_empty()
        });
    }

    /// Answers an inbox request, in whichever shard owns the inbox.
    pub async fn serve_inbox(self: &Rc<Self>, request: InboxRequest) -> Response {
        let owner_idx = store::shard_of(&request.address, self.n_shards);
        if owner_idx == self.shard_idx {
            return self.serve_local_inbox(request).await;
        }
        let (reply, answer) = oneshot::channel();
        if self
            .mesh
            .send_to(owner_idx, ShardMsg::Inbox { request, reply })
            .await
            .is_err()
        {
            return Response::error(
                503,
                "unavailable",
                "the shard owning this inbox is shutting down",
            );
        }
        answer.await.unwrap_or_else(|_| {
            Response::error(
                503,
                "unavailable",
                "the shard owning this inbox is shutting down",
            )
        })
    }

    /// Serves a request for an inbox this shard owns; a long poll parks here.
    async fn serve_local_inbox(&self, request: InboxRequest) -> Response {
        let wait = match request.op {
            InboxOp::List { wait_secs, .. } => Duration::from_secs(wait_secs),
            _ => Duration::ZERO,
        };
        let deadline = Instant::now() + wait;
        loop {
            // Past the per-core cap a long poll is answered at once; the client polls again.
            let may_wait = !self.is_shutting_down()
                && Instant::now() < deadline
                && self.counters.http_long_polls_waiting.get()
                    < self.config.long_polls_per_core_max as u64;
            let outcome = {
                let now = now_ms();
                let mut store = self.store.borrow_mut();
                store.expire(now);
                api::execute(&request, &mut store, now, may_wait)
            };
            let Outcome::Ready(response) = outcome else {
                let (waiter, woken) = oneshot::channel();
                self.waiters
                    .borrow_mut()
                    .entry(request.address.clone())
                    .or_default()
                    .push(waiter);
                Counters::add(&self.counters.http_long_polls_waiting, 1);
                let timer =
                    glommio::timer::Timer::new(deadline.saturating_duration_since(Instant::now()));
                futures_lite::future::or(
                    async {
                        let _ = woken.await;
                    },
                    async {
                        timer.await;
                    },
                )
                .await;
                Counters::sub(&self.counters.http_long_polls_waiting, 1);
                self.forget_closed_waiters(&request.address);
                continue;
            };
            return response;
        }
    }

    /// Drops parked waiters whose requests have gone (timed out), so the map stays bounded.
    fn forget_closed_waiters(&self, inbox_key: &str) {
        let mut waiters = self.waiters.borrow_mut();
        if let Some(parked) = waiters.get_mut(inbox_key) {
            parked.retain(|waiter| !waiter.is_canceled());
            if parked.is_empty() {
                waiters.remove(inbox_key);
            }
        }
    }

    /// Collects a snapshot from every shard, index = shard.
    pub async fn gather_metrics(&self) -> Vec<Snapshot> {
        let mut answers = Vec::with_capacity(self.n_shards);
        for shard_idx in 0..self.n_shards {
            if shard_idx == self.shard_idx {
                answers.push(None);
                continue;
            }
            let (reply, answer) = oneshot::channel();
            let sent = self
                .mesh
                .send_to(shard_idx, ShardMsg::Stats { reply })
                .await
                .is_ok();
            answers.push(sent.then_some(answer));
        }
        let mut snapshots = Vec::with_capacity(self.n_shards);
        for answer in answers {
            let snapshot = match answer {
                None => self.snapshot(),
                Some(answer) => answer.await.unwrap_or_default(),
            };
            snapshots.push(snapshot);
        }
        snapshots
    }

    fn snapshot(&self) -> Snapshot {
        let stats = {
            let mut store = self.store.borrow_mut();
            store.expire(now_ms());
            store.stats()
        };
        self.counters.snapshot(stats)
    }

    /// Handles one message from another shard. Never awaits a peer, so two shards that
    /// send to each other at once cannot deadlock.
    fn handle(self: &Rc<Self>, msg: ShardMsg) {
        match msg {
            ShardMsg::Store { job, reply } => {
                let _ = reply.send(self.store_job(&job));
            }
            ShardMsg::Inbox { request, reply } => {
                let ctx = self.clone();
                glommio::spawn_local(async move {
                    let _ = reply.send(ctx.serve_local_inbox(request).await);
                })
                .detach();
            }
            ShardMsg::Stats { reply } => {
                let _ = reply.send(self.snapshot());
            }
            ShardMsg::Subscribe {
                address,
                frames,
                reply,
            } => {
                // Not subscribed: dropping `reply` tells the socket's core so.
                if self.subscribe_local(address, frames) {
                    let _ = reply.send(());
                }
            }
        }
    }

    fn store_job(&self, job: &StoreJob) -> Result<(), StoreError> {
        let rcpts: Vec<&str> = job.rcpts.iter().map(String::as_str).collect();
        let parts: [&[u8]; 1] = [&job.data];
        self.insert(&Incoming {
            mail_from: &job.mail_from,
            rcpts: &rcpts,
            parts: &parts,
            received_at_ms: job.received_at_ms,
        })
    }

    /// Wakes every parked long poll (they answer at once once shutdown has begun).
    fn wake_all_waiters(&self) {
        for (_, parked) in self.waiters.borrow_mut().drain() {
            for waiter in parked {
                let _ = waiter.send(());
            }
        }
    }
}

/// Open connections of one executor, so that shutdown can interrupt their reads.
///
/// Shutdown interrupts a blocked read with `shutdown(fd, SHUT_RD)`: the read completes with
/// 0 bytes, the session sees that the server is stopping, and writes its 421 on the still
/// open write side. This costs nothing per read, unlike racing every read against a signal.
#[derive(Default)]
pub struct ConnRegistry {
    next_key: Cell<u64>,
    /// key -> (fd, idle). Idle means "waiting for a command outside a transaction".
    conns: RefCell<HashMap<u64, (RawFd, bool)>>,
}

/// Removes its connection from the registry when dropped. Drop it before the socket closes
/// (declare it after the stream), so the registry never holds a closed, reusable fd.
pub struct ConnGuard<'r> {
    registry: &'r ConnRegistry,
    key: u64,
}

impl ConnRegistry {
    pub fn register(&self, fd: RawFd) -> ConnGuard<'_> {
        let key = self.next_key.get();
        self.next_key.set(key + 1);
        self.conns.borrow_mut().insert(key, (fd, false));
        ConnGuard {
            registry: self,
            key,
        }
    }

    /// Interrupts the reads of idle connections, or of all of them.
    fn interrupt(&self, idle_only: bool) {
        for &(fd, idle) in self.conns.borrow().values() {
            if idle || !idle_only {
                // SAFETY: `fd` belongs to a connection whose guard is still registered, and
                // guards are dropped before their sockets close, so `fd` is open and ours.
                // shutdown() only changes socket state; it does not close or free the fd.
                unsafe {
                    libc::shutdown(fd, libc::SHUT_RD);
                }
            }
        }
    }
}

impl ConnGuard<'_> {
    pub fn set_idle(&self, idle: bool) {
        if let Some(entry) = self.registry.conns.borrow_mut().get_mut(&self.key) {
            entry.1 = idle;
        }
    }
}

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        self.registry.conns.borrow_mut().remove(&self.key);
    }
}

/// Unix time in milliseconds (vDSO clock read, no syscall).
pub fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The listening sockets of every executor, index = shard; the TLS-only ones are optional.
struct ListenerFds {
    smtp: Vec<RawFd>,
    http: Vec<RawFd>,
    smtps: Option<Vec<RawFd>>,
    https: Option<Vec<RawFd>>,
}

/// Runs the server until `shutdown` is triggered and every shard has finished.
/// `tls` is the certificate for STARTTLS, `--smtps` and `--https` (required when either
/// listener is configured). `on_ready` is called once every executor is serving.
///
/// # Errors
/// Binding a listener or starting an executor failed, or a TLS listener has no certificate.
pub fn run(
    config: Config,
    tls: Option<Arc<TlsCerts>>,
    shutdown: Shutdown,
    on_ready: impl FnOnce(Ready),
) -> anyhow::Result<()> {
    let n_shards = config.cores;
    anyhow::ensure!(
        tls.is_some() || (config.smtps_addr.is_none() && config.https_addr.is_none()),
        "--smtps and --https need a certificate (--tls-cert and --tls-key, or --tls-self-signed)"
    );
    let (smtp_fds, smtp_addr) = bind_listeners(config.smtp_addr, n_shards)
        .with_context(|| format!("cannot listen for SMTP on {}", config.smtp_addr))?;
    let (http_fds, http_addr) = bind_listeners(config.http_addr, n_shards)
        .with_context(|| format!("cannot listen for HTTP on {}", config.http_addr))?;
    let bind_optional = |addr: Option<SocketAddr>, what: &str| {
        addr.map(|addr| {
            bind_listeners(addr, n_shards)
                .with_context(|| format!("cannot listen for {what} on {addr}"))
        })
        .transpose()
    };
    let smtps = bind_optional(config.smtps_addr, "SMTPS")?;
    let https = bind_optional(config.https_addr, "HTTPS")?;
    let smtps_addr = smtps.as_ref().map(|(_, addr)| *addr);
    let https_addr = https.as_ref().map(|(_, addr)| *addr);
    if config.domains.is_catch_all() {
        tracing::warn!(
            "no --domain configured: accepting mail for every domain (development catch-all)"
        );
    }
    let boot_micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let config = Arc::new(config);
    let mesh = MeshBuilder::full(n_shards, MESH_CHANNEL_CAPACITY);
    let shards_producing = Arc::new(AtomicUsize::new(n_shards));
    let (started_tx, started_rx) = mpsc::channel::<usize>();
    let fds = Arc::new(ListenerFds {
        smtp: smtp_fds,
        http: http_fds,
        smtps: smtps.map(|(fds, _)| fds),
        https: https.map(|(fds, _)| fds),
    });

    let handles = LocalExecutorPoolBuilder::new(PoolPlacement::MaxSpread(n_shards, allowed_cpus()))
        .name("mayfly")
        .ring_depth(IO_URING_DEPTH)
        .on_all_shards({
            let config = config.clone();
            let shutdown = shutdown.clone();
            let tls = tls.clone();
            move || async move {
                shard_main(
                    config,
                    tls,
                    mesh,
                    fds,
                    boot_micros,
                    shutdown,
                    shards_producing,
                    started_tx,
                )
                .await
            }
        })
        .map_err(|error| anyhow::anyhow!("cannot start executors: {error}"))?;

    for _ in 0..n_shards {
        if started_rx.recv_timeout(Duration::from_secs(30)).is_err() {
            // An executor died before it was serving; trigger shutdown so the others stop too.
            shutdown.trigger();
            break;
        }
    }
    if !shutdown.is_triggered() {
        tracing::info!(
            %smtp_addr,
            %http_addr,
            smtps_addr = smtps_addr.map(|addr| addr.to_string()),
            https_addr = https_addr.map(|addr| addr.to_string()),
            starttls = tls.is_some(),
            cores = n_shards,
            "serving"
        );
        on_ready(Ready {
            smtp_addr,
            http_addr,
            smtps_addr,
            https_addr,
        });
    }
    let mut failed = false;
    for result in handles.join_all() {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!("executor failed: {error:#}");
                failed = true;
            }
            Err(error) => {
                tracing::error!("executor could not run: {error}");
                failed = true;
            }
        }
    }
    anyhow::ensure!(!failed, "an executor failed");
    Ok(())
}

/// The CPUs this process may run on (taskset, systemd `CPUAffinity=`, cgroup cpusets), so
/// executors are pinned inside that mask; glommio's default would spread over every
/// online CPU and ignore it. `None` (all online CPUs) if the mask cannot be read.
fn allowed_cpus() -> Option<glommio::CpuSet> {
    // SAFETY: `cpu_set_t` is plain old data, valid when zeroed; sched_getaffinity writes at
    // most `size_of::<cpu_set_t>()` bytes into it.
    let mask = unsafe {
        let mut mask: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut mask) != 0 {
            return None;
        }
        mask
    };
    let online = glommio::CpuSet::online().ok()?;
    let allowed = online.filter(|location| {
        // SAFETY: `location.cpu` is checked against CPU_SETSIZE first, so CPU_ISSET reads
        // a bit inside `mask`.
        location.cpu < libc::CPU_SETSIZE as usize && unsafe { libc::CPU_ISSET(location.cpu, &mask) }
    });
    (!allowed.is_empty()).then_some(allowed)
}

/// Binds `n` SO_REUSEPORT listeners on `addr`. Port 0 is resolved by the first bind and reused
/// by the rest, so every core serves the same port.
fn bind_listeners(addr: SocketAddr, n: usize) -> std::io::Result<(Vec<RawFd>, SocketAddr)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut fds = Vec::with_capacity(n);
    let mut bound_addr = addr;
    for _ in 0..n {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&bound_addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        if bound_addr.port() == 0 {
            bound_addr = socket.local_addr()?.as_socket().unwrap_or(addr);
        }
        fds.push(socket.into_raw_fd());
    }
    Ok((fds, bound_addr))
}

#[allow(clippy::too_many_arguments)]
async fn shard_main(
    config: Arc<Config>,
    tls: Option<Arc<TlsCerts>>,
    mesh: MeshBuilder<ShardMsg, glommio::channels::channel_mesh::Full>,
    fds: Arc<ListenerFds>,
    boot_micros: u64,
    shutdown: Shutdown,
    shards_producing: Arc<AtomicUsize>,
    started: mpsc::Sender<usize>,
) -> anyhow::Result<()> {
    let (senders, mut receivers) = mesh
        .join()
        .await
        .map_err(|error| anyhow::anyhow!("cannot join the channel mesh: {error}"))?;
    let shard_idx = senders.peer_id();
    let n_shards = config.cores;
    // SAFETY: each fd was created by `bind_listeners`, is listening, and is handed to exactly
    // one executor (the one whose mesh peer id indexes it), which takes sole ownership here.
    let smtp_listener = unsafe { TcpListener::from_raw_fd(fds.smtp[shard_idx]) };
    // SAFETY: as above, for the HTTP listener.
    let http_listener = unsafe { TcpListener::from_raw_fd(fds.http[shard_idx]) };
    // SAFETY: as above, for the optional SMTPS and HTTPS listeners.
    let smtps_listener = fds
        .smtps
        .as_ref()
        .map(|fds| unsafe { TcpListener::from_raw_fd(fds[shard_idx]) });
    // SAFETY: as above.
    let https_listener = fds
        .https
        .as_ref()
        .map(|fds| unsafe { TcpListener::from_raw_fd(fds[shard_idx]) });

    let ring_bytes = config.memory_bytes_max / n_shards;
    let store = Shard::new(ShardConfig {
        shard_idx: shard_idx as u16,
        boot_micros,
        ring_bytes,
        ttl_ms: config.ttl.as_millis() as u64,
        inbox_messages_max: config.inbox_messages_max,
    });
    let session_config = Rc::new(SessionConfig {
        hostname: config.hostname.clone(),
        message_bytes_max: config.message_bytes_max,
        recipients_max: config.recipients_max,
        domains: config.domains.clone(),
        starttls_available: tls.is_some(),
        tls_required: config.tls_required,
    });
    let (push_queue, mut pushes) = futures_channel::mpsc::unbounded::<String>();
    let ctx = Rc::new(ShardCtx {
        shard_idx,
        n_shards,
        config: config.clone(),
        session_config,
        tls,
        store: RefCell::new(store),
        counters: Counters::default(),
        mesh: senders,
        waiters: RefCell::new(HashMap::new()),
        subscribers: RefCell::new(HashMap::new()),
        push_queue,
        websockets: Default::default(),
        http_rate_limiter: crate::net::rate_limit::RateLimiter::new(
            config.http_requests_per_ip_per_sec_max,
        ),
        connections: ConnRegistry::default(),
        shutting_down: Cell::new(false),
        shutdown: shutdown.clone(),
        queue_seq: Cell::new(0),
        boot_micros,
    });

    let mut peer_tasks = Vec::new();
    for (_peer_idx, receiver) in receivers.streams() {
        let ctx = ctx.clone();
        peer_tasks.push(glommio::spawn_local(async move {
            while let Some(msg) = receiver.recv().await {
                ctx.handle(msg);
            }
        }));
    }
    let push_task = glommio::spawn_local({
        let ctx = ctx.clone();
        async move {
            use futures_util::StreamExt as _;
            let mut inboxes: Vec<String> = Vec::new();
            while let Some(first) = pushes.next().await {
                // Everything queued meanwhile goes in one round, each inbox once.
                inboxes.push(first);
                while let Ok(key) = pushes.try_recv() {
                    if !inboxes.contains(&key) {
                        inboxes.push(key);
                    }
                }
                for key in inboxes.drain(..) {
                    ctx.push_new_messages(&key);
                }
            }
        }
    });
    let smtp_accept = glommio::spawn_local(crate::net::smtp_conn::accept_loop(
        ctx.clone(),
        smtp_listener,
    ));
    let http_accept = glommio::spawn_local(crate::net::http_conn::accept_loop(
        ctx.clone(),
        http_listener,
    ));
    let smtps_accept = smtps_listener.map(|listener| {
        glommio::spawn_local(crate::net::smtp_conn::accept_loop_implicit_tls(
            ctx.clone(),
            listener,
        ))
    });
    let https_accept = https_listener.map(|listener| {
        glommio::spawn_local(crate::net::http_conn::accept_loop_tls(
            ctx.clone(),
            listener,
        ))
    });
    let _ = started.send(shard_idx);
    tracing::debug!(shard_idx, ring_bytes, "shard serving");

    // Housekeeping: expire on time (reads also expire, this keeps memory honest when idle) and
    // notice shutdown.
    let mut next_ping = Instant::now() + WS_PING_INTERVAL;
    while !shutdown.is_triggered() {
        glommio::timer::sleep(HOUSEKEEPING_INTERVAL).await;
        ctx.store.borrow_mut().expire(now_ms());
        if Instant::now() >= next_ping {
            next_ping = Instant::now() + WS_PING_INTERVAL;
            ctx.websockets.ping_all();
            ctx.forget_closed_subscribers();
        }
    }

    // Shutdown, step 1: stop accepting, interrupt idle sessions, answer long polls.
    ctx.shutting_down.set(true);
    smtp_accept.cancel().await;
    http_accept.cancel().await;
    for task in [smtps_accept, https_accept].into_iter().flatten() {
        task.cancel().await;
    }
    ctx.connections.interrupt(true);
    ctx.wake_all_waiters();
    // WebSockets see their summaries end and close with 1001 (going away).
    ctx.subscribers.borrow_mut().clear();
    push_task.cancel().await;
    // Step 2: let sessions in a transaction finish it, up to the grace period.
    let grace_deadline = Instant::now() + config.shutdown_grace;
    while open_connections(&ctx) > 0 && Instant::now() < grace_deadline {
        ctx.connections.interrupt(true);
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    // Step 3: interrupt the rest; they answer 421 and close.
    ctx.connections.interrupt(false);
    let close_deadline = Instant::now() + SHUTDOWN_CLOSE_WAIT;
    while open_connections(&ctx) > 0 && Instant::now() < close_deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    // Step 4: keep serving peers (their last deliveries may land here) until all are done.
    shards_producing.fetch_sub(1, Ordering::AcqRel);
    let peer_deadline = Instant::now() + SHUTDOWN_PEER_WAIT;
    while shards_producing.load(Ordering::Acquire) > 0 && Instant::now() < peer_deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    ctx.mesh.close();
    for task in peer_tasks {
        task.cancel().await;
    }
    let held = ctx.store.borrow().stats().messages_held;
    tracing::info!(shard_idx, messages_dropped_at_exit = held, "shard stopped");
    Ok(())
}

fn open_connections(ctx: &ShardCtx) -> u64 {
    ctx.counters.smtp_sessions_open.get() + ctx.counters.http_connections_open.get()
}
