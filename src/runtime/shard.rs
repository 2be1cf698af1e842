//! One executor's shard and its place in the mesh: storing mail where each inbox lives,
//! answering inbox requests and subscriptions there, and gathering metrics.
//!
//! Each executor owns one `ShardCtx`: its store shard, its view cache and its watchers.
//! Nothing in a `ShardCtx` is shared with another thread; other shards reach it only with
//! a `ShardMsg` over the mesh, and answers come back on `futures_channel::oneshot`
//! channels (glommio wakes a task from a foreign thread through the executor's notifier,
//! so the reply needs no lock on our side). `ShardCtx` implements `net::Shards`, which is
//! all the socket loops know of it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_channel::{mpsc, oneshot};
use glommio::channels::channel_mesh::Senders;
use glommio::sync::Semaphore;

use crate::address::InboxKey;
use crate::clock::{now_ms, unix_ms};
use crate::config::Config;
use crate::http::api::{self, InboxOp, InboxRequest, Outcome};
use crate::http::response::Response;
use crate::journal::record::{IdRecord, RcptRecord, Record};
use crate::journal::{Journal, NotDurable};
use crate::mail::search::SearchState;
use crate::mail::{ParsedMessage, ViewCache};
use crate::metrics::{Counters, Snapshot};
use crate::net::{Durability, MailboxAnswer, MailboxOp, NotDurable as NotAcknowledged, Shards};
use crate::runtime::Shutdown;
use crate::smtp::{Delivery, Transaction};
use crate::store::{self, Incoming, MessageId, Rcpt, Shard, StoreError};
use crate::watch::Watchers;
use crate::webhook;

/// Message views parsed at once per shard (each holds a copy of its message while it is
/// parsed off the executor, so this bounds that memory to this many messages).
const PARSES_IN_FLIGHT_MAX: u64 = 2;

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
    /// Push the summary of every message that arrives in `key` from now on into `frames`;
    /// the receiving shard owns the inbox. `reply` answers once subscribed.
    Subscribe {
        key: InboxKey<'static>,
        frames: mpsc::Sender<String>,
        reply: oneshot::Sender<()>,
    },
    /// A mail client's request for inbox `key`, which the receiving shard owns.
    Mailbox {
        key: InboxKey<'static>,
        op: MailboxOp,
        reply: oneshot::Sender<MailboxAnswer>,
    },
    /// Signal `signal` on every change to inbox `key`; `reply` answers once watching.
    WatchChanges {
        key: InboxKey<'static>,
        signal: mpsc::Sender<()>,
        reply: oneshot::Sender<()>,
    },
}

/// A message on its way to another shard. The bytes are shared by every shard it goes to.
pub struct StoreJob {
    pub mail_from: String,
    /// The recipients in the receiving shard, as written (their keys are made again there).
    pub rcpts: Vec<String>,
    /// Our Received header followed by the client's message.
    pub data: Arc<[u8]>,
    /// How many bytes of `data` are our Received header.
    pub received_bytes: usize,
    pub received_at_ms: u64,
}

/// Everything one executor owns of the store side.
pub struct ShardCtx {
    pub(crate) shard_idx: usize,
    n_shards: usize,
    config: Arc<Config>,
    pub(crate) store: RefCell<Shard>,
    /// What readers parsed; beside the store, under its own budget.
    pub(crate) views: RefCell<ViewCache>,
    /// Long polls and WebSocket subscriptions parked at this shard.
    pub(crate) watchers: RefCell<Watchers>,
    /// Shared with this executor's socket loops.
    pub(crate) counters: Rc<Counters>,
    /// Sends to the other shards; `send_to(self.shard_idx)` is an error by design.
    mesh: Senders<ShardMsg>,
    /// Set once when this executor begins to shut down.
    pub(crate) shutting_down: Cell<bool>,
    /// The process-wide trigger, set before any executor starts shutting down.
    shutdown: Shutdown,
    /// Bounds the message views being parsed off the executor.
    parses: Semaphore,
    /// Requests waiting for a parse already in flight, by message.
    parsing: RefCell<HashMap<MessageId, Vec<oneshot::Sender<()>>>>,
    /// With `--durability journal`: every stored message and delete is written here and
    /// made durable before it is acknowledged.
    pub(crate) journal: Option<Rc<Journal>>,
    /// False while restoring: SMTP is refused with 421, the API answers 503.
    pub(crate) ready: Cell<bool>,
    /// With `--webhook`: the events of stored messages, for this executor's sender.
    pub(crate) webhooks: Option<RefCell<webhook::Queue>>,
}

/// Completes when a journal record is durable (or failed).
type JournalReceiver = futures_channel::oneshot::Receiver<Result<(), NotDurable>>;

/// Counts one parked long poll for as long as it lives, however it ends (answered, timed
/// out, or dropped because its client hung up), so the per-core cap frees at once.
struct LongPollSlot<'c> {
    counters: &'c Counters,
}

impl<'c> LongPollSlot<'c> {
    fn take(counters: &'c Counters) -> LongPollSlot<'c> {
        Counters::add(&counters.http_long_polls_waiting, 1);
        LongPollSlot { counters }
    }
}

impl Drop for LongPollSlot<'_> {
    fn drop(&mut self) {
        Counters::sub(&self.counters.http_long_polls_waiting, 1);
    }
}

impl ShardCtx {
    pub(crate) fn new(
        shard_idx: usize,
        config: Arc<Config>,
        store: Shard,
        mesh: Senders<ShardMsg>,
        shutdown: Shutdown,
        push_signal: mpsc::Sender<()>,
        journal: Option<Rc<Journal>>,
    ) -> ShardCtx {
        let views = ViewCache::new(ViewCache::bytes_max_for_ring(store.config().ring_bytes));
        ShardCtx {
            shard_idx,
            n_shards: config.cores,
            config,
            store: RefCell::new(store),
            views: RefCell::new(views),
            watchers: RefCell::new(Watchers::new(push_signal)),
            counters: Rc::new(Counters::default()),
            mesh,
            shutting_down: Cell::new(false),
            shutdown,
            parses: Semaphore::new(PARSES_IN_FLIGHT_MAX),
            parsing: RefCell::new(HashMap::new()),
            journal,
            ready: Cell::new(false),
            webhooks: None,
        }
    }

    /// With `--webhook`: the queue every stored message's events go into.
    pub(crate) fn with_webhooks(mut self, queue: Option<webhook::Queue>) -> ShardCtx {
        self.webhooks = queue.map(RefCell::new);
        self
    }

    /// Drops expired messages (and wipes what was cached of them).
    pub(crate) fn expire(&self, now_ms: u64) {
        let mut store = self.store.borrow_mut();
        if store.expire(now_ms) > 0 {
            self.views.borrow_mut().sync(&mut store);
        }
    }

    /// Sends the summaries of new messages to the subscribers of every inbox queued since
    /// the last round. The push task calls it each time the watchers signal.
    pub(crate) fn push_pending(&self) {
        let pending = self.watchers.borrow_mut().take_pending();
        if pending.is_empty() {
            return;
        }
        let mut store = self.store.borrow_mut();
        let mut views = self.views.borrow_mut();
        let mut watchers = self.watchers.borrow_mut();
        for key in &pending {
            watchers.push(key, &store, &mut views, &self.counters);
        }
        views.sync(&mut store);
    }

    /// Closes the mesh: peers' sends fail from now on.
    pub(crate) fn close_mesh(&self) {
        self.mesh.close();
    }

    /// Inserts into this executor's own shard, journals it (with a journal: the receiver
    /// completes when it is durable), and tells the watchers of the inboxes it touched.
    fn insert(&self, incoming: &Incoming<'_>) -> Result<Option<JournalReceiver>, StoreError> {
        let mut store = self.store.borrow_mut();
        // The receive time is "now" closely enough (the store keeps its clock monotonic),
        // and it saves a clock read per message.
        let id = store.insert(incoming, incoming.received_at_ms)?;
        // Only non-empty when the insert evicted a message someone had read.
        self.views.borrow_mut().sync(&mut store);
        drop(store);
        let durable = self.journal.as_ref().map(|journal| {
            let rcpts: Vec<RcptRecord<'_>> = incoming
                .rcpts
                .iter()
                .map(|rcpt| RcptRecord {
                    key: rcpt.key.as_str(),
                    written: rcpt.written,
                })
                .collect();
            let (received, body) = match incoming.parts {
                [received, body] => (*received, *body),
                parts => (&[][..], parts.first().copied().unwrap_or_default()),
            };
            journal.append(
                &Record::Stored {
                    id: IdRecord {
                        boot_micros: id.boot_micros,
                        shard_idx: id.shard_idx,
                        seq: id.seq,
                    },
                    received_at_ms: incoming.received_at_ms,
                    expires_at_ms: incoming.received_at_ms.saturating_add(
                        u64::try_from(self.config.ttl.as_millis()).unwrap_or(u64::MAX),
                    ),
                    mail_from: incoming.mail_from,
                    rcpts: &rcpts,
                    received,
                    body,
                },
                Some(id.seq),
            )
        });
        self.watchers
            .borrow_mut()
            .stored(incoming.rcpts.iter().map(|rcpt| &rcpt.key));
        self.webhooks_stored(incoming, id);
        Ok(durable)
    }

    fn store_job(&self, job: &StoreJob) -> Result<Option<JournalReceiver>, StoreError> {
        let rcpts: Vec<Rcpt<'_>> = job
            .rcpts
            .iter()
            .filter_map(|written| Rcpt::new(written))
            .collect();
        let parts: [&[u8]; 2] = [
            &job.data[..job.received_bytes],
            &job.data[job.received_bytes..],
        ];
        self.insert(&Incoming {
            mail_from: &job.mail_from,
            rcpts: &rcpts,
            parts: &parts,
            received_at_ms: job.received_at_ms,
        })
    }

    /// Subscribes at this shard, which owns `key`; `false` once it is shutting down.
    fn subscribe_local(&self, key: InboxKey<'static>, frames: mpsc::Sender<String>) -> bool {
        if self.shutting_down.get() {
            return false;
        }
        let newest = self.store.borrow().list(&key, None, 0).newest;
        self.watchers.borrow_mut().subscribe(key, frames, newest);
        true
    }

    /// Serves a request for an inbox this shard owns: parks a long poll here, and parses a
    /// message view off the executor when the cache has none.
    async fn serve_local_inbox(&self, request: InboxRequest) -> Response {
        let wait = match request.op {
            InboxOp::List { wait_secs, .. } => Duration::from_secs(wait_secs),
            _ => Duration::ZERO,
        };
        let deadline = Instant::now() + wait;
        let mut parsed_once = false;
        let mut search = SearchState::default();
        loop {
            // Past the per-core cap a long poll is answered at once; the client polls again.
            let may_wait = !self.shutting_down.get()
                && Instant::now() < deadline
                && self.counters.http_long_polls_waiting.get()
                    < self.config.long_polls_per_core_max as u64;
            let outcome = {
                let now = now_ms();
                let mut store = self.store.borrow_mut();
                let mut views = self.views.borrow_mut();
                let outcome =
                    api::execute(&request, &mut store, &mut views, now, may_wait, &mut search);
                views.sync(&mut store);
                outcome
            };
            match outcome {
                Outcome::Ready(response) => {
                    let changed = match request.op {
                        InboxOp::DeleteMessage { .. } | InboxOp::DeleteInbox => {
                            response.status == 204
                        }
                        // Opening a message marks it seen.
                        InboxOp::SetSeen { .. } | InboxOp::Message { .. } | InboxOp::Raw { .. } => {
                            response.status == 200
                        }
                        _ => false,
                    };
                    if changed {
                        // Mail clients idling on the inbox see the delete or the flag.
                        self.watchers.borrow_mut().changed(&request.key);
                    }
                    return self.journal_delete(&request, response).await;
                }
                Outcome::Wait => {
                    let _slot = LongPollSlot::take(&self.counters);
                    let woken = self.watchers.borrow_mut().park(request.key.clone());
                    let timer = glommio::timer::Timer::new(
                        deadline.saturating_duration_since(Instant::now()),
                    );
                    futures_lite::future::or(
                        async {
                            let _ = woken.await;
                        },
                        async {
                            timer.await;
                        },
                    )
                    .await;
                    self.watchers
                        .borrow_mut()
                        .forget_closed_waiters(&request.key);
                }
                Outcome::Parse(id) => {
                    if parsed_once {
                        // The view was parsed but evicted again before this request could
                        // use it (a cache smaller than one view): say so rather than loop.
                        return Response::error(
                            503,
                            "unavailable",
                            "the message view does not fit the server's view cache",
                        );
                    }
                    parsed_once = true;
                    self.parse_view(&request.key, id).await;
                }
                Outcome::ParseBatch(batch) => {
                    // The same bound as message views: at most PARSES_IN_FLIGHT_MAX jobs,
                    // each holding copies of at most `search::BATCH_BYTES_MAX` of mail.
                    let _permit = self.parses.acquire_permit(1).await;
                    let job = batch.job(&self.store.borrow(), &request.key);
                    let parsed = glommio::executor()
                        .spawn_blocking(move || {
                            let parsed = job.run();
                            crate::alloc::wipe_stack();
                            parsed
                        })
                        .await;
                    search.absorb(parsed);
                }
                Outcome::Yield => futures_lite::future::yield_now().await,
            }
        }
    }

    /// With a journal, a delete is written and made durable before its 204: a deleted
    /// message never comes back after a restart.
    async fn journal_delete(&self, request: &InboxRequest, response: Response) -> Response {
        let Some(journal) = &self.journal else {
            return response;
        };
        if response.status != 204 {
            return response;
        }
        let key = request.key.as_str();
        let record = match request.op {
            InboxOp::DeleteMessage { id: Some(id) } => Record::Deleted {
                id: IdRecord {
                    boot_micros: id.boot_micros,
                    shard_idx: id.shard_idx,
                    seq: id.seq,
                },
                key,
            },
            InboxOp::DeleteInbox => Record::InboxDeleted { key },
            _ => return response,
        };
        match journal.write(&record, None).await {
            Ok(()) => response,
            Err(NotDurable) => Response::error(
                503,
                "unavailable",
                "deleted, but the journal could not record it; delete again",
            ),
        }
    }

    /// Parses the message view of `id` off the executor (glommio's blocking pool) from a
    /// copy of its bytes, and caches it. Concurrent requests for the same message share
    /// one parse; at most `PARSES_IN_FLIGHT_MAX` messages are parsed at once.
    async fn parse_view(&self, key: &InboxKey<'static>, id: MessageId) {
        let in_flight = {
            let mut parsing = self.parsing.borrow_mut();
            match parsing.get_mut(&id) {
                Some(waiting) => {
                    let (done, wait) = oneshot::channel();
                    waiting.push(done);
                    Some(wait)
                }
                None => {
                    parsing.insert(id, Vec::new());
                    None
                }
            }
        };
        if let Some(wait) = in_flight {
            let _ = wait.await;
            return;
        }
        let _permit = self.parses.acquire_permit(1).await;
        let raw: Option<Vec<u8>> = self
            .store
            .borrow()
            .get(key, id)
            .map(|message| message.raw.to_vec());
        if let Some(raw) = raw {
            let view = glommio::executor()
                .spawn_blocking(move || {
                    let (summary, view) = ParsedMessage::parse(&raw);
                    summary.wipe();
                    wipe(raw);
                    crate::alloc::wipe_stack();
                    view
                })
                .await;
            let store = self.store.borrow();
            match store.get(key, id) {
                // Still held: its bytes are the ones parsed (ids are never reused).
                Some(message) => self.views.borrow_mut().insert_view(&message, view),
                None => view.wipe(),
            }
        }
        for done in self.parsing.borrow_mut().remove(&id).unwrap_or_default() {
            let _ = done.send(());
        }
    }

    fn snapshot(&self) -> Snapshot {
        self.expire(now_ms());
        let stats = self.store.borrow().stats();
        if let Some(journal) = &self.journal {
            // The journal keeps its own counters (it is below the metrics); copied here.
            let (stats, counters) = (&journal.stats, &self.counters);
            counters.journal_bytes_total.set(stats.bytes_total.get());
            counters
                .journal_records_total
                .set(stats.records_total.get());
            counters.journal_fsyncs_total.set(stats.commits_total.get());
            counters
                .journal_fsync_failures_total
                .set(stats.commit_failures_total.get());
            counters
                .journal_files_deleted_total
                .set(stats.files_deleted_total.get());
            counters
                .journal_key_advance_failures_total
                .set(stats.key_advance_failures_total.get());
            counters
                .journal_commit_latency
                .set(stats.commit_latency.snapshot());
        }
        self.copy_webhook_stats();
        self.counters.snapshot(stats)
    }

    /// Handles one message from another shard. Never awaits a peer, so two shards that
    /// send to each other at once cannot deadlock.
    pub(crate) fn handle(self: &Rc<Self>, msg: ShardMsg) {
        match msg {
            ShardMsg::Store { job, reply } => match self.store_job(&job) {
                // The reply waits for the journal; the handler does not (it never awaits).
                Ok(Some(durable)) => {
                    glommio::spawn_local(async move {
                        let outcome = match durable.await {
                            Ok(Ok(())) => Ok(()),
                            _ => Err(StoreError::NotDurable),
                        };
                        let _ = reply.send(outcome);
                    })
                    .detach();
                }
                Ok(None) => {
                    let _ = reply.send(Ok(()));
                }
                Err(error) => {
                    let _ = reply.send(Err(error));
                }
            },
            ShardMsg::Inbox { request, mut reply } => {
                let ctx = self.clone();
                glommio::spawn_local(async move {
                    // A requester that went away (its client hung up) cancels the reply:
                    // stop waiting for it then, so a long poll's slot frees at once.
                    let response = futures_lite::future::or(
                        async { Some(ctx.serve_local_inbox(request).await) },
                        async {
                            reply.cancellation().await;
                            None
                        },
                    )
                    .await;
                    if let Some(response) = response {
                        let _ = reply.send(response);
                    }
                })
                .detach();
            }
            ShardMsg::Stats { reply } => {
                let _ = reply.send(self.snapshot());
            }
            ShardMsg::Subscribe { key, frames, reply } => {
                // Not subscribed: dropping `reply` tells the socket's core so.
                if self.subscribe_local(key, frames) {
                    let _ = reply.send(());
                }
            }
            ShardMsg::Mailbox { key, op, reply } => {
                let ctx = self.clone();
                // A deletion waits for the journal; the handler does not.
                glommio::spawn_local(async move {
                    let _ = reply.send(ctx.mailbox_local(&key, op).await);
                })
                .detach();
            }
            ShardMsg::WatchChanges { key, signal, reply } => {
                if self.watch_changes_local(key, signal) {
                    let _ = reply.send(());
                }
            }
        }
    }
}

impl Shards for ShardCtx {
    fn is_ready(&self) -> bool {
        self.ready.get()
    }

    fn is_shutting_down(&self) -> bool {
        self.shutting_down.get()
    }

    fn shutdown_triggered(&self) -> bool {
        self.shutdown.is_triggered()
    }

    async fn deliver<'q>(
        &self,
        transaction: &Transaction<'_>,
        received_header: &[u8],
        queue_id: &'q str,
        received_at: SystemTime,
    ) -> (Delivery<'q>, Option<Durability>) {
        let size_bytes = received_header.len() + transaction.body.len();
        let ring_bytes = self.store.borrow().config().ring_bytes;
        if size_bytes > ring_bytes {
            return (Delivery::TooLarge, None);
        }
        let received_at_ms = unix_ms(received_at);
        let mut local_rcpts: Vec<Rcpt<'_>> = Vec::new();
        let mut remote_rcpts: Vec<(usize, Vec<String>)> = Vec::new();
        for written in transaction.rcpts() {
            // The session accepted only recipients that name an inbox.
            let Some(rcpt) = Rcpt::new(written) else {
                debug_assert!(false, "the session accepted {written:?}");
                continue;
            };
            let shard_idx = store::shard_of(&rcpt.key, self.n_shards);
            if shard_idx == self.shard_idx {
                local_rcpts.push(rcpt);
            } else if let Some((_, rcpts)) =
                remote_rcpts.iter_mut().find(|(idx, _)| *idx == shard_idx)
            {
                rcpts.push(written.to_string());
            } else {
                remote_rcpts.push((shard_idx, vec![written.to_string()]));
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
                    received_bytes: received_header.len(),
                    received_at_ms,
                };
                if self
                    .mesh
                    .send_to(shard_idx, ShardMsg::Store { job, reply })
                    .await
                    .is_err()
                {
                    tracing::error!(shard_idx, "peer shard is gone; message refused with 451");
                    return (Delivery::TemporaryFailure, None);
                }
                replies.push(answer);
            }
        }

        let mut outcome = Ok(());
        let mut local_durable = None;
        if !local_rcpts.is_empty() {
            let parts: [&[u8]; 2] = [received_header, transaction.body];
            let incoming = Incoming {
                mail_from: transaction.mail_from,
                rcpts: &local_rcpts,
                parts: &parts,
                received_at_ms,
            };
            match self.insert(&incoming) {
                Ok(durable) => local_durable = durable,
                Err(error) => outcome = Err(error),
            }
        }
        let body_bytes = transaction.body.len() as u64;
        if self.journal.is_some() {
            // Stored in memory here and being stored elsewhere; the reply waits for every
            // copy's journal commit, which the caller awaits once per read of input.
            if let Err(error) = outcome {
                return (delivery_of(&error, queue_id), None);
            }
            let counters = self.counters.clone();
            let durability = async move {
                let mut settled = Ok(());
                for answer in replies {
                    settled = settled.and(match answer.await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(StoreError::TooLarge { .. })) => Err(NotAcknowledged::TooLarge),
                        Ok(Err(StoreError::NotDurable)) | Err(_) => Err(NotAcknowledged::Temporary),
                    });
                }
                if let Some(local) = local_durable
                    && !matches!(local.await, Ok(Ok(())))
                {
                    settled = settled.and(Err(NotAcknowledged::Temporary));
                }
                if settled.is_ok() {
                    Counters::add(&counters.messages_accepted_total, 1);
                    Counters::add(&counters.message_bytes_accepted_total, body_bytes);
                }
                settled
            };
            return (Delivery::Stored { queue_id }, Some(Box::pin(durability)));
        }
        for answer in replies {
            match answer.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => outcome = Err(error),
                Err(_canceled) => {
                    tracing::error!("peer shard dropped a store request; message refused with 451");
                    return (Delivery::TemporaryFailure, None);
                }
            }
        }
        match outcome {
            Ok(()) => {
                Counters::add(&self.counters.messages_accepted_total, 1);
                Counters::add(&self.counters.message_bytes_accepted_total, body_bytes);
                (Delivery::Stored { queue_id }, None)
            }
            Err(error) => (delivery_of(&error, queue_id), None),
        }
    }

    async fn serve_inbox(&self, request: InboxRequest) -> Response {
        let owner_idx = store::shard_of(&request.key, self.n_shards);
        if owner_idx == self.shard_idx {
            return self.serve_local_inbox(request).await;
        }
        let unavailable = || {
            Response::error(
                503,
                "unavailable",
                "the shard owning this inbox is shutting down",
            )
        };
        let (reply, answer) = oneshot::channel();
        if self
            .mesh
            .send_to(owner_idx, ShardMsg::Inbox { request, reply })
            .await
            .is_err()
        {
            return unavailable();
        }
        answer.await.unwrap_or_else(|_| unavailable())
    }

    async fn subscribe(&self, key: InboxKey<'static>, frames: mpsc::Sender<String>) -> bool {
        let owner_idx = store::shard_of(&key, self.n_shards);
        if owner_idx == self.shard_idx {
            return self.subscribe_local(key, frames);
        }
        let (reply, answer) = oneshot::channel();
        let msg = ShardMsg::Subscribe { key, frames, reply };
        self.mesh.send_to(owner_idx, msg).await.is_ok() && answer.await.is_ok()
    }

    async fn mailbox(&self, key: InboxKey<'static>, op: MailboxOp) -> Option<MailboxAnswer> {
        let owner_idx = store::shard_of(&key, self.n_shards);
        if owner_idx == self.shard_idx {
            if self.shutting_down.get() {
                return None;
            }
            return Some(self.mailbox_local(&key, op).await);
        }
        let (reply, answer) = oneshot::channel();
        let msg = ShardMsg::Mailbox { key, op, reply };
        self.mesh.send_to(owner_idx, msg).await.ok()?;
        answer.await.ok()
    }

    async fn watch_changes(&self, key: InboxKey<'static>, signal: mpsc::Sender<()>) -> bool {
        let owner_idx = store::shard_of(&key, self.n_shards);
        if owner_idx == self.shard_idx {
            return self.watch_changes_local(key, signal);
        }
        let (reply, answer) = oneshot::channel();
        let msg = ShardMsg::WatchChanges { key, signal, reply };
        self.mesh.send_to(owner_idx, msg).await.is_ok() && answer.await.is_ok()
    }

    async fn metrics(&self) -> Vec<Snapshot> {
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
}

/// The reply a message gets when one of its copies was not stored.
fn delivery_of<'q>(error: &StoreError, queue_id: &'q str) -> Delivery<'q> {
    let _ = queue_id;
    match error {
        StoreError::TooLarge { .. } => Delivery::TooLarge,
        StoreError::NotDurable => Delivery::TemporaryFailure,
    }
}

/// Zeroes a copy of message bytes before freeing it, whatever the allocator does.
fn wipe(mut bytes: Vec<u8>) {
    bytes.fill(0);
    // Keep the zeroing from being optimised away as a dead store before the free.
    std::hint::black_box(&bytes);
}
