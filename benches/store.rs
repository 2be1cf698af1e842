//! Criterion benchmarks of one shard's store (`store::Shard`), in operations/s: what storing,
//! expiring and reading a message costs on the shard's own core, and how lookups scale with
//! the number of messages held.
//!
//! - `store_insert/empty_ring`: insert into a ring with room (its pages already touched by an
//!   earlier fill, as in a running server), nothing evicted.
//! - `store_insert/full_ring`: insert into a full ring, so every insert evicts the oldest.
//! - `store_expire`: `expire` dropping every held message; per message expired.
//! - `store_lookup`: `get` by id (random ids across the store) and `list` of one inbox of
//!   1000 messages (limit 50 and 1000), in stores holding 1k, 100k and 1M messages. Each
//!   store is built once for its three benchmarks (the 1M store is a ~370 MB ring).
//!
//! Messages are ~330 bytes (a Received header and a short notification), one recipient
//! each, spread over many inboxes. Every benchmark checks its answer (ids returned, message
//! sizes, counts held and evicted, listing totals), so a broken benchmark fails loudly.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mayfly::address::InboxKey;
use mayfly::store::{Incoming, MessageId, Rcpt, Shard, ShardConfig};

/// The server's allocator (`src/main.rs`), so allocation costs are the ones it pays.
#[global_allocator]
static GLOBAL: mayfly::alloc::WipingMiMalloc = mayfly::alloc::WipingMiMalloc;

/// Any fixed process start; ids carry it.
const BOOT_MICROS: u64 = 1_764_000_000_000_000;
/// The store clock of every insert (Unix ms).
const NOW_MS: u64 = 1_795_817_744_000;
/// The default TTL (1 h); nothing expires before `expire` is asked to.
const TTL_MS: u64 = 3_600_000;
/// The default `--max-messages-per-inbox`.
const INBOX_MESSAGES_MAX: usize = 1000;
/// Messages in the listed inbox (the largest listing the API allows).
const LISTED_INBOX_MESSAGES: usize = 1000;
/// Held messages per ordinary inbox in the lookup stores.
const MESSAGES_PER_INBOX: usize = 10;
/// Messages per untimed refill in the insert and expire benchmarks, so a shard never needs
/// more than `BATCH_MESSAGES` slots however many iterations criterion asks for.
const BATCH_MESSAGES: usize = 100_000;
/// Messages a full ring holds in `store_insert/full_ring`.
const FULL_RING_MESSAGES: usize = 100_000;
/// Inboxes the insert benchmarks cycle through.
const INSERT_INBOXES: usize = 1000;
/// Ids sampled for `get`, a power of two; enough to defeat the caches in the large stores.
const GET_SAMPLES: usize = 1 << 16;
/// Sizes of the lookup stores.
const STORE_SIZES: [(&str, usize); 3] = [("1k", 1_000), ("100k", 100_000), ("1M", 1_000_000)];

const MAIL_FROM: &str = "notifications@service.example.org";
const RECEIVED: &[u8] =
    b"Received: from mta.example.org by mx.example.test (Mayfly) with ESMTP\r\n\
    \tid 0189ABCDEF01200000042; Fri, 27 Nov 2026 22:15:44 +0000\r\n";
const BODY: &[u8] = b"From: Service <notifications@service.example.org>\r\n\
    Subject: Your code is 424242\r\n\
    Date: Fri, 27 Nov 2026 22:15:44 +0000\r\n\r\n\
    Your confirmation code is 424242. It expires in ten minutes.\r\n";
/// Bytes of every stored message.
const RAW_BYTES: usize = RECEIVED.len() + BODY.len();

fn criterion_config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

/// Inbox `n`'s address. Every address has the same length, so every slot has the same size.
fn address(n: usize) -> String {
    format!("user{n:07}@example.test")
}

/// Ring bytes one message takes: the envelope (4-byte length + MAIL FROM, then per
/// recipient 4 + key and 4 + the address as written, empty when it is the lowercase key;
/// see `store::shard`'s layout notes) plus the raw bytes. Checked against the shard's own
/// accounting in `full_shard`.
fn slot_bytes() -> usize {
    4 + MAIL_FROM.len() + 4 + address(0).len() + 4 + RAW_BYTES
}

fn new_shard(ring_bytes: usize) -> Shard {
    Shard::new(ShardConfig {
        shard_idx: 0,
        boot_micros: BOOT_MICROS,
        ring_bytes,
        ttl_ms: TTL_MS,
        inbox_messages_max: INBOX_MESSAGES_MAX,
    })
}

/// The inbox key of a bench address (HTTP routing makes it once per request).
fn key(address: &str) -> InboxKey<'static> {
    InboxKey::new(address)
        .expect("a valid address")
        .into_owned()
}

fn insert(shard: &mut Shard, rcpt: &str) -> MessageId {
    let rcpts = [Rcpt::new(rcpt).expect("a valid address")];
    let parts = [RECEIVED, BODY];
    let incoming = Incoming {
        mail_from: MAIL_FROM,
        rcpts: &rcpts,
        parts: &parts,
        received_at_ms: NOW_MS,
    };
    match shard.insert(&incoming, NOW_MS) {
        Ok(id) => id,
        Err(error) => panic!("insert failed: {error}"),
    }
}

/// Inserts `n_messages` cycling over `inboxes`; checks nothing was evicted.
fn fill(shard: &mut Shard, inboxes: &[String], n_messages: usize) {
    let held_before = shard.stats().messages_held;
    for idx in 0..n_messages {
        insert(shard, &inboxes[idx % inboxes.len()]);
    }
    let stats = shard.stats();
    assert_eq!(stats.messages_held, held_before + n_messages as u64);
    assert_eq!(stats.evicted_capacity + stats.evicted_inbox_full, 0);
}

/// A shard whose ring holds exactly `n_messages` and is full.
fn full_shard(inboxes: &[String], n_messages: usize) -> Shard {
    let mut shard = new_shard(n_messages * slot_bytes());
    fill(&mut shard, inboxes, n_messages);
    let stats = shard.stats();
    assert_eq!(
        stats.ring_bytes_used, stats.ring_bytes,
        "slot size miscomputed"
    );
    shard
}

fn bench_insert(c: &mut Criterion) {
    let inboxes: Vec<String> = (0..INSERT_INBOXES).map(address).collect();
    let mut group = c.benchmark_group("store_insert");
    group.throughput(Throughput::Elements(1));

    // Filled once and expired, so the ring's pages are touched; each batch starts empty.
    let mut shard = new_shard(BATCH_MESSAGES * slot_bytes());
    fill(&mut shard, &inboxes, BATCH_MESSAGES);
    assert_eq!(shard.expire(u64::MAX), BATCH_MESSAGES);
    group.bench_function("empty_ring", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let batch = left.min(BATCH_MESSAGES);
                let stored_before = shard.stats().stored_total;
                let start = Instant::now();
                for idx in 0..batch {
                    black_box(insert(&mut shard, &inboxes[idx % INSERT_INBOXES]));
                }
                elapsed += start.elapsed();
                let stats = shard.stats();
                assert_eq!(stats.messages_held, batch as u64);
                assert_eq!(stats.stored_total, stored_before + batch as u64);
                assert_eq!(stats.evicted_capacity, 0);
                assert_eq!(shard.expire(u64::MAX), batch);
                left -= batch;
            }
            elapsed
        })
    });
    drop(shard);

    let mut shard = full_shard(&inboxes, FULL_RING_MESSAGES);
    let mut next_inbox = 0;
    group.bench_function("full_ring", |b| {
        b.iter_custom(|iters| {
            let evicted_before = shard.stats().evicted_capacity;
            let start = Instant::now();
            for _ in 0..iters {
                black_box(insert(&mut shard, &inboxes[next_inbox]));
                next_inbox = (next_inbox + 1) % INSERT_INBOXES;
            }
            let elapsed = start.elapsed();
            let stats = shard.stats();
            assert_eq!(stats.messages_held, FULL_RING_MESSAGES as u64);
            assert_eq!(stats.evicted_capacity, evicted_before + iters);
            elapsed
        })
    });
    group.finish();
}

fn bench_expire(c: &mut Criterion) {
    let inboxes: Vec<String> = (0..INSERT_INBOXES).map(address).collect();
    let mut shard = new_shard(BATCH_MESSAGES * slot_bytes());
    let mut group = c.benchmark_group("store_expire");
    group.throughput(Throughput::Elements(1));
    group.bench_function("all_held", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let batch = left.min(BATCH_MESSAGES);
                fill(&mut shard, &inboxes, batch);
                let start = Instant::now();
                let n_expired = shard.expire(black_box(NOW_MS + TTL_MS));
                elapsed += start.elapsed();
                assert_eq!(n_expired, batch);
                assert_eq!(shard.stats().messages_held, 0);
                left -= batch;
            }
            elapsed
        })
    });
    group.finish();
}

/// A store of `n_held` messages: `LISTED_INBOX_MESSAGES` of them (spread evenly in time)
/// for inbox 0, the rest `MESSAGES_PER_INBOX` to an inbox. Returns the shard and every
/// message's (inbox number, id), in arrival order.
fn lookup_store(n_held: usize) -> (Shard, Vec<(u32, MessageId)>) {
    let listed_stride = n_held / LISTED_INBOX_MESSAGES;
    let n_other_inboxes = ((n_held - LISTED_INBOX_MESSAGES) / MESSAGES_PER_INBOX).max(1);
    let inboxes: Vec<String> = (0..=n_other_inboxes).map(address).collect();
    // Room for every message, and a metadata budget (half the ring) well above their needs.
    let mut shard = new_shard(n_held * slot_bytes());
    let mut ids = Vec::with_capacity(n_held);
    for idx in 0..n_held {
        let inbox = if idx.is_multiple_of(listed_stride) {
            0
        } else {
            1 + idx % n_other_inboxes
        };
        ids.push((inbox as u32, insert(&mut shard, &inboxes[inbox])));
    }
    let stats = shard.stats();
    assert_eq!(stats.messages_held, n_held as u64, "the store evicted");
    assert_eq!(
        shard.list(&key(&inboxes[0]), None, 1).total,
        LISTED_INBOX_MESSAGES
    );
    (shard, ids)
}

fn bench_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_lookup");
    group.throughput(Throughput::Elements(1));
    let listed = key(&address(0));
    for (label, n_held) in STORE_SIZES {
        let (shard, ids) = lookup_store(n_held);

        // Random messages across the whole store, so large stores miss the caches as a
        // server's would.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let samples: Vec<(InboxKey<'static>, MessageId)> = (0..GET_SAMPLES)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let (inbox, id) = ids[(state >> 33) as usize % ids.len()];
                (key(&address(inbox as usize)), id)
            })
            .collect();
        let mut sample_idx = 0;
        group.bench_function(BenchmarkId::new("get", label), |b| {
            b.iter(|| {
                let (inbox, id) = &samples[sample_idx % GET_SAMPLES];
                sample_idx += 1;
                match shard.get(black_box(inbox), *id) {
                    Some(message) => {
                        assert_eq!(message.id, *id);
                        assert_eq!(message.raw.len(), RAW_BYTES);
                    }
                    None => panic!("message {id} not found in {inbox}"),
                }
            })
        });

        let newest = ids
            .iter()
            .rev()
            .find(|(inbox, _)| *inbox == 0)
            .map(|&(_, id)| id);
        for limit in [50, 1000] {
            group.bench_function(BenchmarkId::new(format!("list_{limit}"), label), |b| {
                b.iter(|| {
                    let listing = shard.list(black_box(&listed), None, limit);
                    assert_eq!(listing.total, LISTED_INBOX_MESSAGES);
                    assert_eq!(listing.messages.len(), limit);
                    assert_eq!(listing.newest, newest);
                    assert_eq!(listing.messages.first().map(|m| m.id), newest);
                    listing.messages.len()
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = bench_insert, bench_expire, bench_lookup
}
criterion_main!(benches);
