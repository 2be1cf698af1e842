//! The executor pool: one pinned glommio executor per core, the channel mesh between
//! shards, housekeeping, and shutdown. Nothing protocol-specific: each executor builds
//! its shard (`shard::ShardCtx`) and its socket context (`net::NetCtx`), starts the
//! accept loops (`net::start`) and then only keeps time and waits for shutdown.

mod durable;
mod mailbox;
mod shard;
mod webhooks;

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};

use crate::clock::{now_ms, unix_micros};
use crate::config::{Config, Durability};
use crate::journal::{self, FlusherConfig, Journal, restore};
pub use crate::net::listen::ListenAddrs as Ready;
use crate::net::listen::Listeners;
use crate::net::tls::TlsCerts;
use crate::net::ws_conn::WS_PING_INTERVAL;
use crate::net::{self, NetCtx};
use crate::store::{Shard, ShardConfig};
pub use shard::{ShardCtx, ShardMsg, StoreJob};

/// Messages in flight from one shard to another before the sender waits (back-pressure).
const MESH_CHANNEL_CAPACITY: usize = 1024;
/// Entries per io_uring. The kernel sizes a ring's poll-cancel hash table from it (cq
/// entries / 32, at most 256 buckets), and glommio cancels a timeout on every reactor loop,
/// which walks one bucket: with glommio's default of 128 (8 buckets), 8 000 idle sockets
/// made every loop walk ~1 000 pending polls (io_poll_find at 14.5% of the server's CPU).
/// 4096 gives the full 256 buckets.
const IO_URING_DEPTH: usize = 4096;
/// How often an executor looks at the process-wide shutdown flag and expires messages.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(50);
/// How often a stopping executor checks whether its connections are gone.
const SHUTDOWN_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How often a stopped executor checks whether its peers are done.
const PEER_POLL_INTERVAL: Duration = Duration::from_millis(5);
/// After the grace period, how long interrupted sessions get to write their 421 and close.
const SHUTDOWN_CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How long a shard that is done keeps serving its peers while they finish (a bound, not a sleep).
const SHUTDOWN_PEER_WAIT: Duration = Duration::from_secs(30);
/// How long the starting thread waits for every executor to be serving (with durability,
/// a restore of a large store comes first: `STARTUP_WAIT_RESTORING`).
const STARTUP_WAIT: Duration = Duration::from_secs(30);
const STARTUP_WAIT_RESTORING: Duration = Duration::from_secs(3_600);
/// How often the starting thread looks whether an executor failed while it waits.
const STARTUP_POLL: Duration = Duration::from_millis(100);
/// How long a stopping shard waits for the other shards to finish the final snapshot.
const FINAL_SNAPSHOT_WAIT: Duration = Duration::from_secs(600);
/// Blocking threads per executor (glommio's `spawn_blocking` pool), unpinned so the
/// kernel can run a long parse on whichever CPU is free instead of the executor's own.
const BLOCKING_THREADS_PER_EXECUTOR: usize = 1;

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

/// What every executor starts from.
struct Start {
    config: Arc<Config>,
    tls: Option<Arc<TlsCerts>>,
    listeners: Arc<Listeners>,
    boot_micros: u64,
    shutdown: Shutdown,
    /// Executors still delivering to their peers; each waits for zero before exiting.
    shards_producing: Arc<AtomicUsize>,
    /// Each executor sends its index once it serves.
    started: mpsc::Sender<usize>,
    /// With `--durability snapshot` or `journal`.
    durable: Option<Arc<durable::Durable>>,
    /// With `--verify-senders annotate`: the one resolver thread every executor hands
    /// its sender checks to.
    verifier: Option<crate::auth::Verifier>,
    /// Inbox tokens, from the one secret every executor uses.
    tokens: Arc<crate::token::InboxTokens>,
    /// With `--webhook`: the webhooks and their TLS client, for every executor's sender.
    webhooks: Option<Arc<net::webhook::Client>>,
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
    // Before anything folds an address (the restore included): a key must not change
    // while the process runs.
    crate::address::set_plus_addressing(config.plus_addressing);
    anyhow::ensure!(
        tls.is_some()
            || [
                config.smtps_addr,
                config.https_addr,
                config.pop3s_addr,
                config.imaps_addr
            ]
            .iter()
            .all(Option::is_none),
        "--smtps, --https, --pop3s and --imaps need a certificate (--tls-cert and --tls-key, or \
         --tls-self-signed)"
    );
    // Before any socket is bound: a secret that cannot be had stops the start.
    let tokens = Arc::new(crate::token::InboxTokens::load(&config)?);
    if tokens.required() {
        tracing::info!("private inboxes: token secret {}", tokens.source());
    }
    let listeners = Arc::new(Listeners::bind(&config, n_shards)?);
    let addrs = listeners.addrs();
    if config.domains.is_catch_all() {
        tracing::warn!(
            "no --domain configured: accepting mail for every domain (development catch-all)"
        );
    }
    let (started_tx, started_rx) = mpsc::channel::<usize>();
    let now_micros = unix_micros(SystemTime::now());
    let durable = durable::Durable::prepare(&config, now_micros)?;
    let startup_wait = if durable.is_some() {
        STARTUP_WAIT_RESTORING
    } else {
        STARTUP_WAIT
    };
    // One resolver thread serves both the sender checks and the blocklists.
    let needs_resolver =
        config.verify_senders == crate::config::VerifySenders::Annotate || !config.dnsbl.is_empty();
    let verifier = if needs_resolver {
        Some(
            crate::auth::Verifier::start(crate::auth::VerifierConfig {
                resolver: match config.dns_resolver {
                    Some(addr) => crate::auth::DnsResolver::At(addr),
                    None => crate::auth::DnsResolver::System,
                },
                deadline: config.auth_timeout,
            })
            .map_err(|error| anyhow::anyhow!("--verify-senders annotate or --dnsbl: {error}"))?,
        )
    } else {
        None
    };
    let webhooks = net::webhook::Client::new(&config)?;
    let start = Arc::new(Start {
        config: Arc::new(config),
        tls: tls.clone(),
        listeners,
        boot_micros: durable
            .as_ref()
            .map_or(now_micros, |durable| durable.boot_micros),
        shutdown: shutdown.clone(),
        shards_producing: Arc::new(AtomicUsize::new(n_shards)),
        started: started_tx,
        durable,
        verifier,
        tokens,
        webhooks,
    });
    let mesh = MeshBuilder::full(n_shards, MESH_CHANNEL_CAPACITY);

    let handles = LocalExecutorPoolBuilder::new(PoolPlacement::MaxSpread(n_shards, allowed_cpus()))
        .name("mayfly")
        .ring_depth(IO_URING_DEPTH)
        .blocking_thread_pool_placement(PoolPlacement::Unbound(BLOCKING_THREADS_PER_EXECUTOR))
        .on_all_shards(move || {
            let start = start.clone();
            async move { shard_main(start, mesh).await }
        })
        .map_err(|error| anyhow::anyhow!("cannot start executors: {error}"))?;

    let waiting_since = std::time::Instant::now();
    let mut n_started = 0;
    while n_started < n_shards {
        match started_rx.recv_timeout(STARTUP_POLL) {
            Ok(_) => n_started += 1,
            Err(mpsc::RecvTimeoutError::Timeout)
                if !shutdown.is_triggered() && waiting_since.elapsed() < startup_wait => {}
            Err(_) => {
                // An executor died (or failed to restore) before it was serving; trigger
                // shutdown so the others stop too.
                shutdown.trigger();
                break;
            }
        }
    }
    if !shutdown.is_triggered() {
        tracing::info!(
            smtp_addr = %addrs.smtp,
            http_addr = %addrs.http,
            smtps_addr = addrs.smtps.map(|addr| addr.to_string()),
            https_addr = addrs.https.map(|addr| addr.to_string()),
            pop3_addr = addrs.pop3.map(|addr| addr.to_string()),
            pop3s_addr = addrs.pop3s.map(|addr| addr.to_string()),
            imap_addr = addrs.imap.map(|addr| addr.to_string()),
            imaps_addr = addrs.imaps.map(|addr| addr.to_string()),
            starttls = tls.is_some(),
            cores = n_shards,
            "serving"
        );
        on_ready(addrs);
    }
    let mut first_error = None;
    for result in handles.join_all() {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!("executor failed: {error:#}");
                first_error.get_or_insert(error);
            }
            Err(error) => {
                tracing::error!("executor could not run: {error}");
                first_error.get_or_insert(anyhow::anyhow!("an executor could not run: {error}"));
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(()),
    }
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

/// A journal writing into `generation`'s directory of this shard, and its flusher task.
fn start_journal(
    durable: &durable::Durable,
    shard_idx: usize,
    config: &Config,
    generation: u64,
) -> (Rc<Journal>, glommio::Task<()>) {
    let (signal, signals) = futures_channel::mpsc::channel::<()>(0);
    let journal = Rc::new(Journal::new(durable.keys.is_some(), signal));
    let dir = durable.layout.shard_dir(generation, shard_idx);
    let flusher_config = FlusherConfig {
        first_file_number: restore::next_file_number(&dir),
        dir,
        shard_idx: u32::try_from(shard_idx).unwrap_or(u32::MAX),
        keys: durable.keys.clone(),
        file_bytes_max: config.journal_file_bytes_max as u64,
    };
    let flusher = glommio::spawn_local(journal::run_flusher(
        journal.clone(),
        signals,
        flusher_config,
        now_ms,
    ));
    (journal, flusher)
}

/// Restores this shard from the generation `CURRENT` named at start into the new one,
/// then waits until every shard has and `CURRENT` names the new generation.
///
/// # Errors
/// A file could not be read or its key is missing, the journal could not write, or
/// another shard failed.
async fn restore_into(
    start: &Start,
    durable: &durable::Durable,
    shard: &ShardCtx,
    journal: &Journal,
    shard_idx: usize,
) -> anyhow::Result<()> {
    let generation = durable.round();
    let started = Instant::now();
    if let Some(old) = &durable.restore_from {
        let stats = restore::restore_shard(
            &durable.layout,
            old,
            shard_idx,
            start.config.cores,
            durable.keys.as_ref(),
            &shard.store,
            journal,
            u64::try_from(start.config.ttl.as_millis()).unwrap_or(u64::MAX),
            now_ms(),
        )
        .await?;
        let elapsed = started.elapsed();
        tracing::info!(
            shard_idx,
            restored = stats.messages_restored,
            expired = stats.messages_expired,
            deleted_or_elsewhere = stats.messages_not_ours_or_deleted,
            corrupt_frames = stats.frames_corrupt,
            invalid_records = stats.archives_invalid,
            torn_tails = stats.torn_tails,
            shredded_files = stats.files_shredded,
            refused = stats.messages_refused,
            files = stats.files_read,
            bytes = stats.bytes_read,
            elapsed_ms = elapsed.as_millis() as u64,
            "restored"
        );
        shard.counters.note_restore(
            stats.messages_restored,
            stats.frames_corrupt + stats.archives_invalid,
            elapsed,
        );
    }
    journal
        .barrier()
        .await
        .map_err(|_| anyhow::anyhow!("the journal could not write the restored mail"))?;
    durable
        .finish_part(generation)
        .map_err(|error| anyhow::anyhow!("cannot switch the data directory's CURRENT: {error}"))?;
    if !durable
        .switched(generation, || start.shutdown.is_triggered())
        .await
    {
        anyhow::bail!("stopped before every shard restored");
    }
    Ok(())
}

/// Writes this shard's part of snapshot round `generation` and finishes it.
async fn snapshot_part(
    durable: &durable::Durable,
    shard: &ShardCtx,
    config: &Config,
    shard_idx: usize,
    generation: u64,
) {
    let started = Instant::now();
    let (journal, flusher) = start_journal(durable, shard_idx, config, generation);
    let n_written = restore::write_snapshot(&shard.store, &journal).await;
    let outcome = journal.barrier().await;
    journal.close();
    let _ = flusher.await;
    shard.counters.note_snapshot(started.elapsed());
    match outcome {
        Ok(()) => {
            if let Err(error) = durable.finish_part(generation) {
                tracing::error!("cannot finish the snapshot: {error}");
            }
            tracing::debug!(shard_idx, n_written, generation, "snapshot part written");
        }
        Err(_) => tracing::error!(
            shard_idx,
            "snapshot not written: the journal could not write"
        ),
    }
}

/// The snapshot on the way out (`--durability snapshot`): once nothing is stored any
/// more, every shard writes its part of a new round and waits until it is current. A
/// periodic round in progress is finished first (this shard writes its part of it if it
/// has not), since it does not hold the last messages.
async fn final_snapshot(
    durable: &durable::Durable,
    shard: &ShardCtx,
    config: &Config,
    shard_idx: usize,
    mut snapshot_written: u64,
) {
    let deadline = Instant::now() + FINAL_SNAPSHOT_WAIT;
    let generation = loop {
        match durable.start_final_round() {
            Ok(generation) => break generation,
            Err(Ok(periodic)) => {
                if snapshot_written < periodic {
                    snapshot_written = periodic;
                    snapshot_part(durable, shard, config, shard_idx, periodic).await;
                }
                if Instant::now() >= deadline {
                    tracing::error!(shard_idx, "the final snapshot did not start in time");
                    return;
                }
                glommio::timer::sleep(PEER_POLL_INTERVAL).await;
            }
            Err(Err(error)) => {
                tracing::error!("cannot write the final snapshot: {error}");
                return;
            }
        }
    };
    snapshot_part(durable, shard, config, shard_idx, generation).await;
    if !durable
        .switched(generation, || Instant::now() >= deadline)
        .await
    {
        tracing::error!(shard_idx, "the final snapshot did not complete in time");
    }
}

/// One executor's life: join the mesh, build the shard and the socket context, serve,
/// then shut down in order.
async fn shard_main(start: Arc<Start>, mesh: MeshBuilder<ShardMsg, Full>) -> anyhow::Result<()> {
    let (senders, mut receivers) = mesh
        .join()
        .await
        .map_err(|error| anyhow::anyhow!("cannot join the channel mesh: {error}"))?;
    let shard_idx = senders.peer_id();
    let config = start.config.clone();
    let listeners = start.listeners.take(shard_idx);

    let ring_bytes = config.memory_bytes_max / config.cores;
    let store = Shard::new(ShardConfig {
        shard_idx: u16::try_from(shard_idx).expect("config caps cores at 255"),
        boot_micros: start.boot_micros,
        ring_bytes,
        ttl_ms: u64::try_from(config.ttl.as_millis()).unwrap_or(u64::MAX),
        inbox_messages_max: config.inbox_messages_max,
    });
    let (push_signal, mut push_signals) = futures_channel::mpsc::channel::<()>(0);
    // The journal the restore writes into: every message with `journal`, the restored
    // ones only with `snapshot` (then the shard journals nothing until the next snapshot).
    let restore_journal = start
        .durable
        .as_ref()
        .map(|durable| start_journal(durable, shard_idx, &config, durable.round()));
    let journal = restore_journal
        .as_ref()
        .filter(|_| config.durability == Durability::Journal)
        .map(|(journal, _)| journal.clone());
    let (webhook_wake, webhook_woken) = futures_channel::mpsc::channel::<()>(0);
    let webhook_queue = start.webhooks.as_ref().map(|client| {
        let seed = getrandom::u64().unwrap_or(start.boot_micros) ^ shard_idx as u64;
        crate::webhook::Queue::new(
            client.webhooks(),
            config.webhook_secret.as_ref().map(|secret| secret.bytes()),
            format!(
                "{:013x}{:02x}",
                start.boot_micros & 0xf_ffff_ffff_ffff,
                shard_idx
            ),
            seed,
            webhook_wake,
        )
    });
    let shard = Rc::new(
        ShardCtx::new(
            shard_idx,
            config.clone(),
            store,
            senders,
            start.shutdown.clone(),
            push_signal,
            journal,
        )
        .with_webhooks(webhook_queue),
    );
    let net = Rc::new(NetCtx::new(
        shard.clone(),
        shard_idx,
        config.clone(),
        start.tls.clone(),
        shard.counters.clone(),
        start.boot_micros,
        start.verifier.clone(),
        start.tokens.clone(),
    ));

    let mut peer_tasks = Vec::new();
    for (_peer_idx, receiver) in receivers.streams() {
        let shard = shard.clone();
        peer_tasks.push(glommio::spawn_local(async move {
            while let Some(msg) = receiver.recv().await {
                shard.handle(msg);
            }
        }));
    }
    let push_task = glommio::spawn_local({
        let shard = shard.clone();
        async move {
            use futures_util::StreamExt as _;
            while push_signals.next().await.is_some() {
                shard.push_pending();
            }
        }
    });
    let webhook_task = start.webhooks.clone().map(|client| {
        glommio::spawn_local(net::webhook::run(
            shard.clone(),
            client,
            config.webhook_timeout,
            webhook_woken,
        ))
    });
    let accepting = net::start(&net, listeners);
    // Without durability the shard is ready at once; with it, after the restore, when
    // `CURRENT` names the generation every shard restored into.
    let mut restore_flusher = None;
    if let (Some(durable), Some((restore_journal, flusher))) = (&start.durable, restore_journal) {
        match restore_into(&start, durable, &shard, &restore_journal, shard_idx).await {
            Ok(()) => {}
            Err(error) => {
                durable.failed.store(true, Ordering::Release);
                start.shutdown.trigger();
                return Err(error);
            }
        }
        if config.durability == Durability::Snapshot {
            // Snapshot mode journals nothing between snapshots.
            restore_journal.close();
            let _ = flusher.await;
        } else {
            restore_flusher = Some(flusher);
        }
    }
    shard.ready.set(true);
    let _ = start.started.send(shard_idx);
    tracing::debug!(shard_idx, ring_bytes, "shard serving");

    // Housekeeping: expire on time (reads also expire; this keeps memory honest when idle),
    // ping WebSockets, and notice shutdown.
    let mut next_ping = Instant::now() + WS_PING_INTERVAL;
    let mut next_snapshot = Instant::now() + config.snapshot_interval;
    let mut snapshot_written = start
        .durable
        .as_ref()
        .map_or(0, |durable| durable.current());
    while !start.shutdown.is_triggered() {
        glommio::timer::sleep(HOUSEKEEPING_INTERVAL).await;
        shard.expire(now_ms());
        if let (Some(durable), Some(journal)) = (&start.durable, &shard.journal) {
            let retired = journal.retire(shard.store.borrow().oldest_seq());
            let dir = durable.layout.shard_dir(durable.current(), shard_idx);
            journal::delete_files(journal, &dir, retired).await;
        }
        if let Some(durable) = &start.durable
            && config.durability == Durability::Snapshot
        {
            // Shard 0 starts a round every interval; every shard writes its part of a
            // round it has not written yet.
            if shard_idx == 0 && Instant::now() >= next_snapshot {
                next_snapshot = Instant::now() + config.snapshot_interval;
                if let Err(error) = durable.start_round() {
                    tracing::error!("cannot start a snapshot: {error}");
                }
            }
            let round = durable.round();
            if round != 0 && round > snapshot_written {
                snapshot_written = round;
                snapshot_part(durable, &shard, &config, shard_idx, round).await;
            }
        }
        if Instant::now() >= next_ping {
            next_ping = Instant::now() + WS_PING_INTERVAL;
            net.websockets.ping_all();
            shard.watchers.borrow_mut().forget_closed();
        }
    }

    // Shutdown, step 1: stop accepting, interrupt idle sessions, answer long polls.
    shard.shutting_down.set(true);
    accepting.stop().await;
    net.connections.interrupt(true);
    shard.watchers.borrow_mut().wake_all();
    // WebSockets see their summaries end and close with 1001 (going away).
    shard.watchers.borrow_mut().drop_subscribers();
    push_task.cancel().await;
    // Step 2: let sessions in a transaction finish it, up to the grace period.
    let grace_deadline = Instant::now() + config.shutdown_grace;
    while net.open_connections() > 0 && Instant::now() < grace_deadline {
        net.connections.interrupt(true);
        glommio::timer::sleep(SHUTDOWN_POLL_INTERVAL).await;
    }
    // Step 3: interrupt the rest; they answer 421 and close.
    net.connections.interrupt(false);
    let close_deadline = Instant::now() + SHUTDOWN_CLOSE_WAIT;
    while net.open_connections() > 0 && Instant::now() < close_deadline {
        glommio::timer::sleep(SHUTDOWN_POLL_INTERVAL).await;
    }
    // Step 4: keep serving peers (their last deliveries may land here) until all are done.
    start.shards_producing.fetch_sub(1, Ordering::AcqRel);
    let peer_deadline = Instant::now() + SHUTDOWN_PEER_WAIT;
    while start.shards_producing.load(Ordering::Acquire) > 0 && Instant::now() < peer_deadline {
        glommio::timer::sleep(PEER_POLL_INTERVAL).await;
    }
    // Step 5: nothing is stored any more anywhere: make it all durable.
    if let Some(journal) = &shard.journal {
        journal.close();
        if let Some(flusher) = restore_flusher {
            let _ = flusher.await;
        }
    }
    if let Some(durable) = &start.durable
        && config.durability == Durability::Snapshot
    {
        final_snapshot(durable, &shard, &config, shard_idx, snapshot_written).await;
    }
    // Webhook events still queued are lost with the memory they describe.
    if let Some(webhooks) = &shard.webhooks {
        webhooks.borrow_mut().close();
    }
    if let Some(task) = webhook_task {
        task.cancel().await;
    }
    shard.close_mesh();
    for task in peer_tasks {
        task.cancel().await;
    }
    let held = shard.store.borrow().stats().messages_held;
    if start.durable.is_some() {
        tracing::info!(shard_idx, messages_held = held, "shard stopped");
    } else {
        tracing::info!(shard_idx, messages_dropped_at_exit = held, "shard stopped");
    }
    Ok(())
}
