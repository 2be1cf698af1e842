//! The cross-shard hop: what it costs to hand a message to another core's shard and get
//! its answer back, as `runtime::ShardCtx::deliver` does for a recipient owned elsewhere.
//!
//! A plain `main` (`harness = false`), like glommio's own benchmarks, because it needs
//! running executors. Two glommio executors (`PoolPlacement::MaxSpread(2, None)`, one per
//! core) join a `MeshBuilder::full` channel mesh of the real `runtime::ShardMsg`. Shard 0
//! sends `ShardMsg::Store` with a `StoreJob` (a 1.3 KB `Arc<[u8]>` message, its sender and
//! one recipient) to shard 1, which answers on the job's `futures_channel::oneshot`, either
//! at once (`reply`: the hop alone) or after `Shard::insert` into a full 64 MiB ring
//! (`insert`: what `ShardCtx::handle` does).
//!
//! Measured per configuration: round trips with one message in flight (latency, where the
//! receiving executor has usually gone to sleep and must be woken) and with 64 and 1024 in
//! flight (throughput, where wake-ups are amortised). Printed: messages/s and the round-trip
//! percentiles p50/p99/p99.9/max from `hdrhistogram`. Each configuration runs with glommio's
//! default (park at once when idle, as `runtime` does today) and with `spin_before_park`.
//!
//! Checks: every message gets exactly one `Ok` reply, the receiver handles exactly the
//! messages sent, and in `insert` mode its shard stored every one of them.
//!
//! `cargo bench --bench mesh` runs the full counts; without `--bench` (e.g.
//! `cargo test --benches`) it runs a few hundred messages per case as a smoke test.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_channel::oneshot;
use glommio::channels::channel_mesh::{MeshBuilder, Receivers, Senders};
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
use hdrhistogram::Histogram;
use mayfly::runtime::{ShardMsg, StoreJob};
use mayfly::store::{Incoming, Rcpt, Shard, ShardConfig, StoreError};

/// The server's allocator (`src/main.rs`), so allocation costs are the ones it pays.
#[global_allocator]
static GLOBAL: mayfly::alloc::WipingMiMalloc = mayfly::alloc::WipingMiMalloc;

/// Mesh channel capacity, as `runtime::MESH_CHANNEL_CAPACITY`.
const MESH_CHANNEL_CAPACITY: usize = 1024;
/// Stored message size: the typical message of the load tests (`TECH-NOTES.md`).
const PAYLOAD_BYTES: usize = 1300;
/// Ring of the receiving shard in `insert` mode; it fills after ~48k messages, after which
/// every insert also evicts the oldest, as in a server at steady state.
const RING_BYTES: usize = 64 * 1024 * 1024;
/// How long an idle executor spins before parking, in the `spin` configuration.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(100);
/// Messages in flight in the throughput runs.
const WINDOWS: [usize; 2] = [64, 1024];
/// Round trips per latency run and messages per throughput run, and the smoke-test counts.
const LATENCY_MESSAGES: usize = 20_000;
const THROUGHPUT_MESSAGES: usize = 300_000;
const SMOKE_MESSAGES: usize = 300;
/// Untimed round trips before each run (connects, faults in the ring, warms the caches).
const WARMUP_MESSAGES: usize = 2_000;
const SMOKE_WARMUP_MESSAGES: usize = 50;
/// Histogram range: 1 ns to 60 s, 3 significant digits.
const LATENCY_NS_MAX: u64 = 60_000_000_000;

const MAIL_FROM: &str = "notifications@service.example.org";
const RCPT: &str = "bob.inbox@example.test";

/// What shard 1 does with a `StoreJob` before answering.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Receiver {
    /// Answers `Ok` at once: the hop alone.
    Reply,
    /// Stores the message in its `Shard` first, as `ShardCtx::handle` does.
    Insert,
}

/// One measurement.
#[derive(Clone, Copy)]
struct Case {
    receiver: Receiver,
    spin: bool,
    in_flight: usize,
    n_messages: usize,
    n_warmup: usize,
}

/// What shard 0 measured.
struct Report {
    elapsed: Duration,
    latency_ns: Histogram<u64>,
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let (n_latency, n_throughput, n_warmup) = if full {
        (LATENCY_MESSAGES, THROUGHPUT_MESSAGES, WARMUP_MESSAGES)
    } else {
        (SMOKE_MESSAGES, SMOKE_MESSAGES, SMOKE_WARMUP_MESSAGES)
    };
    let payload = payload();
    println!(
        "mesh round trip: ShardMsg::Store ({} B Arc payload) shard 0 -> shard 1, oneshot reply",
        payload.len()
    );
    println!(
        "{:<6} {:<8} {:>9} {:>9} {:>11} {:>10} {:>10} {:>10} {:>10}",
        "idle",
        "receiver",
        "in_flight",
        "messages",
        "msgs/s",
        "p50_us",
        "p99_us",
        "p99.9_us",
        "max_us"
    );
    for spin in [false, true] {
        for receiver in [Receiver::Reply, Receiver::Insert] {
            for in_flight in std::iter::once(1).chain(WINDOWS) {
                let n_messages = if in_flight == 1 {
                    n_latency
                } else {
                    n_throughput
                };
                let case = Case {
                    receiver,
                    spin,
                    in_flight,
                    n_messages,
                    n_warmup,
                };
                print_row(&case, &run(case, payload.clone()));
            }
        }
    }
}

/// A 1300-byte message as `deliver` ships it: our Received header, then the client's text.
fn payload() -> Arc<[u8]> {
    let mut raw = format!(
        "Received: from mta.example.org by mx.example.test (Mayfly) with ESMTP\r\n\
         \tid 0189ABCDEF01200000042; Fri, 27 Nov 2026 22:15:44 +0000\r\n\
         From: Service <{MAIL_FROM}>\r\nTo: {RCPT}\r\n\
         Subject: Your confirmation code\r\n\
         Date: Fri, 27 Nov 2026 22:15:44 +0000\r\n\r\n"
    )
    .into_bytes();
    let line = b"Your confirmation code is 424242. It expires in ten minutes.\r\n";
    while raw.len() + line.len() <= PAYLOAD_BYTES {
        raw.extend_from_slice(line);
    }
    raw.resize(PAYLOAD_BYTES - 2, b'.');
    raw.extend_from_slice(b"\r\n");
    raw.into()
}

fn print_row(case: &Case, report: &Report) {
    let us = |quantile: f64| report.latency_ns.value_at_quantile(quantile) as f64 / 1000.0;
    println!(
        "{:<6} {:<8} {:>9} {:>9} {:>11.0} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
        if case.spin { "spin" } else { "park" },
        match case.receiver {
            Receiver::Reply => "reply",
            Receiver::Insert => "insert",
        },
        case.in_flight,
        case.n_messages,
        case.n_messages as f64 / report.elapsed.as_secs_f64(),
        us(0.5),
        us(0.99),
        us(0.999),
        report.latency_ns.max() as f64 / 1000.0,
    );
}

/// Starts the two executors, runs `case`, checks the counts, returns shard 0's report.
fn run(case: Case, payload: Arc<[u8]>) -> Report {
    let mesh = MeshBuilder::<ShardMsg, _>::full(2, MESH_CHANNEL_CAPACITY);
    let mut pool = LocalExecutorPoolBuilder::new(PoolPlacement::MaxSpread(2, None)).name("mesh");
    if case.spin {
        pool = pool.spin_before_park(SPIN_BEFORE_PARK);
    }
    let handles = match pool.on_all_shards(move || async move {
        let (senders, receivers) = match mesh.join().await {
            Ok(joined) => joined,
            Err(error) => panic!("cannot join the mesh: {error}"),
        };
        if senders.peer_id() == 0 {
            let report = drive(&senders, case, &payload).await;
            senders.close();
            (Some(report), 0)
        } else {
            let n_handled = serve(receivers, case.receiver).await;
            senders.close();
            (None, n_handled)
        }
    }) {
        Ok(handles) => handles,
        Err(error) => panic!("cannot start executors: {error}"),
    };
    let mut report = None;
    let mut n_handled = 0;
    for result in handles.join_all() {
        match result {
            Ok((Some(driven), _)) => report = Some(driven),
            Ok((None, handled)) => n_handled = handled,
            Err(error) => panic!("executor failed: {error}"),
        }
    }
    assert_eq!(
        n_handled,
        case.n_warmup + case.n_messages,
        "the receiving shard handled another number of messages than were sent"
    );
    match report {
        Some(report) => report,
        None => panic!("shard 0 reported nothing"),
    }
}

fn store_job(payload: &Arc<[u8]>) -> StoreJob {
    StoreJob {
        mail_from: MAIL_FROM.to_string(),
        rcpts: vec![RCPT.to_string()],
        data: payload.clone(),
        // The payload stands for a whole message; no Received header is split off.
        received_bytes: 0,
        received_at_ms: now_ms(),
    }
}

type Reply = oneshot::Receiver<Result<(), StoreError>>;

/// Sends one `Store` to shard 1 and returns the receiver of its answer.
async fn send(senders: &Senders<ShardMsg>, payload: &Arc<[u8]>) -> Reply {
    let (reply, answer) = oneshot::channel();
    let msg = ShardMsg::Store {
        job: store_job(payload),
        reply,
    };
    if senders.send_to(1, msg).await.is_err() {
        panic!("shard 1 is gone");
    }
    answer
}

async fn await_ok(answer: Reply) {
    match answer.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => panic!("store failed: {error}"),
        Err(_) => panic!("shard 1 dropped the reply"),
    }
}

/// Shard 0: warm-up, then `case.n_messages` round trips with `case.in_flight` outstanding.
/// Replies come back in sending order (one FIFO channel, one receiving task), so waiting for
/// the oldest first measures each message's own round trip.
async fn drive(senders: &Senders<ShardMsg>, case: Case, payload: &Arc<[u8]>) -> Report {
    for _ in 0..case.n_warmup {
        await_ok(send(senders, payload).await).await;
    }
    let mut latency_ns = match Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3) {
        Ok(histogram) => histogram,
        Err(error) => panic!("histogram: {error}"),
    };
    let mut in_flight: VecDeque<(Instant, Reply)> = VecDeque::with_capacity(case.in_flight);
    let mut n_replies = 0;
    let start = Instant::now();
    for _ in 0..case.n_messages {
        if in_flight.len() == case.in_flight
            && let Some((sent_at, answer)) = in_flight.pop_front()
        {
            await_ok(answer).await;
            latency_ns.saturating_record(sent_at.elapsed().as_nanos() as u64);
            n_replies += 1;
        }
        let sent_at = Instant::now();
        in_flight.push_back((sent_at, send(senders, payload).await));
    }
    while let Some((sent_at, answer)) = in_flight.pop_front() {
        await_ok(answer).await;
        latency_ns.saturating_record(sent_at.elapsed().as_nanos() as u64);
        n_replies += 1;
    }
    let elapsed = start.elapsed();
    assert_eq!(n_replies, case.n_messages);
    assert_eq!(latency_ns.len(), case.n_messages as u64);
    Report {
        elapsed,
        latency_ns,
    }
}

/// Shard 1: answers every `Store` until shard 0 closes the mesh; returns how many.
async fn serve(mut receivers: Receivers<ShardMsg>, receiver: Receiver) -> usize {
    let mut shard = (receiver == Receiver::Insert).then(|| {
        Shard::new(ShardConfig {
            shard_idx: 1,
            boot_micros: now_ms() * 1000,
            ring_bytes: RING_BYTES,
            ttl_ms: 3_600_000,
            inbox_messages_max: 1000,
        })
    });
    let mut n_handled = 0;
    for (_peer_idx, stream) in receivers.streams() {
        while let Some(msg) = stream.recv().await {
            let ShardMsg::Store { job, reply } = msg else {
                panic!("shard 0 sends only Store");
            };
            let result = match shard.as_mut() {
                None => Ok(()),
                Some(shard) => {
                    let rcpts: Vec<Rcpt<'_>> = job
                        .rcpts
                        .iter()
                        .filter_map(|written| Rcpt::new(written))
                        .collect();
                    let parts: [&[u8]; 1] = [&job.data];
                    let incoming = Incoming {
                        mail_from: &job.mail_from,
                        rcpts: &rcpts,
                        parts: &parts,
                        received_at_ms: job.received_at_ms,
                    };
                    shard.insert(&incoming, now_ms()).map(|_| ())
                }
            };
            n_handled += 1;
            let _ = reply.send(result);
        }
    }
    if let Some(shard) = shard {
        assert_eq!(shard.stats().stored_total, n_handled as u64);
    }
    n_handled
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}
