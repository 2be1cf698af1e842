//! The executor pool: one pinned glommio executor per core, the channel mesh between
//! shards, housekeeping, and shutdown. Nothing protocol-specific: each executor builds
//! its shard (`shard::ShardCtx`) and its socket context (`net::NetCtx`), starts the
//! accept loops (`net::start`) and then only keeps time and waits for shutdown.

mod shard;

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};

use crate::clock::{now_ms, unix_micros};
use crate::config::Config;
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
/// How long the starting thread waits for every executor to be serving.
const STARTUP_WAIT: Duration = Duration::from_secs(30);
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
    let listeners = Arc::new(Listeners::bind(&config, n_shards)?);
    let addrs = listeners.addrs();
    if config.domains.is_catch_all() {
        tracing::warn!(
            "no --domain configured: accepting mail for every domain (development catch-all)"
        );
    }
    let (started_tx, started_rx) = mpsc::channel::<usize>();
    let start = Arc::new(Start {
        config: Arc::new(config),
        tls: tls.clone(),
        listeners,
        boot_micros: unix_micros(SystemTime::now()),
        shutdown: shutdown.clone(),
        shards_producing: Arc::new(AtomicUsize::new(n_shards)),
        started: started_tx,
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

    for _ in 0..n_shards {
        if started_rx.recv_timeout(STARTUP_WAIT).is_err() {
            // An executor died before it was serving; trigger shutdown so the others stop too.
            shutdown.trigger();
            break;
        }
    }
    if !shutdown.is_triggered() {
        tracing::info!(
            smtp_addr = %addrs.smtp,
            http_addr = %addrs.http,
            smtps_addr = addrs.smtps.map(|addr| addr.to_string()),
            https_addr = addrs.https.map(|addr| addr.to_string()),
            starttls = tls.is_some(),
            cores = n_shards,
            "serving"
        );
        on_ready(addrs);
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
    let shard = Rc::new(ShardCtx::new(
        shard_idx,
        config.clone(),
        store,
        senders,
        start.shutdown.clone(),
        push_signal,
    ));
    let net = Rc::new(NetCtx::new(
        shard.clone(),
        shard_idx,
        config.clone(),
        start.tls.clone(),
        shard.counters.clone(),
        start.boot_micros,
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
    let accepting = net::start(&net, listeners);
    let _ = start.started.send(shard_idx);
    tracing::debug!(shard_idx, ring_bytes, "shard serving");

    // Housekeeping: expire on time (reads also expire; this keeps memory honest when idle),
    // ping WebSockets, and notice shutdown.
    let mut next_ping = Instant::now() + WS_PING_INTERVAL;
    while !start.shutdown.is_triggered() {
        glommio::timer::sleep(HOUSEKEEPING_INTERVAL).await;
        shard.expire(now_ms());
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
    shard.close_mesh();
    for task in peer_tasks {
        task.cancel().await;
    }
    let held = shard.store.borrow().stats().messages_held;
    tracing::info!(shard_idx, messages_dropped_at_exit = held, "shard stopped");
    Ok(())
}
