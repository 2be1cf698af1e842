//! Criterion benchmarks of search (`GET /api/v1/inboxes/{address}?q=...`) on the shard that
//! owns the inbox, with no sockets: `api::execute` of a `List` with a query, driven to its
//! answer as the runtime drives it (a `ParseBatch` job runs inline here; the runtime runs it
//! on the blocking thread), over one inbox of 10,000 messages of about 1.5 KB.
//!
//! - `search_10k/subject_warm`, `from_warm`: a `subject:` and a `from:` query that match
//!   no message, so the whole inbox is searched, with every summary cached (every search
//!   after the first read of the inbox).
//! - `text_warm`: free text over subject and text body that matches no message, with the
//!   bodies cached as search views by an earlier search.
//! - `subject_cold`, `text_cold`: the same on a freshly filled shard (filled outside the
//!   timing): every summary parsed, and for text every body parsed once, in the request.
//! - `text_warm_match`: free text that matches every 100th message, `limit=50`: the
//!   search stops at the 50th match, about halfway.
//!
//! Every benchmark checks its answer (status, `total`, the matched subjects).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mayfly::address::InboxKey;
use mayfly::http::api::{self, InboxOp, InboxRequest, Outcome};
use mayfly::http::response::Response;
use mayfly::mail::ViewCache;
use mayfly::mail::search::{Query, SearchState};
use mayfly::store::{Incoming, Rcpt, Shard, ShardConfig};

/// The server's allocator (`src/main.rs`), so allocation costs are the ones it pays.
#[global_allocator]
static GLOBAL: mayfly::alloc::WipingMiMalloc = mayfly::alloc::WipingMiMalloc;

const BOOT_MICROS: u64 = 1_764_000_000_000_000;
const NOW_MS: u64 = 1_795_817_744_000;
const TTL_MS: u64 = 3_600_000;
/// Messages in the searched inbox.
const INBOX_MESSAGES: usize = 10_000;
/// Room for the inbox (about 16 MB) with its metadata budget.
const RING_BYTES: usize = 64 * 1024 * 1024;
/// Room for every summary and search view, so "warm" stays warm.
const VIEW_CACHE_BYTES: usize = 256 * 1024 * 1024;
const ADDRESS: &str = "bob.inbox@example.test";
const MAIL_FROM: &str = "bounces@shop.example.org";

fn criterion_config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

/// Message `n`: a shipping notification of about 1.5 KB with a text body; every 100th
/// mentions a parcel locker, which `text_warm_match` looks for.
fn message(n: usize) -> Vec<u8> {
    let shop = n % 7;
    let mut raw = format!(
        "Received: from mta.example.org by mx.example.test (Mayfly) with ESMTP\r\n\
         \tid 0189ABCDEF012{n:08X}; Fri, 27 Nov 2026 22:15:44 +0000\r\n\
         From: \"Shop {shop}\" <orders@shop{shop}.example.org>\r\n\
         To: Bob <{ADDRESS}>\r\n\
         Subject: Your order #{n} has shipped\r\n\
         Date: Fri, 27 Nov 2026 22:{:02}:{:02} +0000\r\n\
         Message-ID: <{n}.424242@shop.example.org>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n\
         Hello Bob,\r\n\r\nyour order #{n} left our warehouse today. Tracking number:\r\n\
         1Z{n:010}. It should reach you within three working days.\r\n\r\n",
        n / 60 % 60,
        n % 60
    );
    if n.is_multiple_of(100) {
        raw.push_str("It will wait for you in the parcel locker at the station.\r\n\r\n");
    }
    while raw.len() < 1400 {
        raw.push_str(
            "You can follow the parcel on our website. If anything is wrong with your\r\n\
             order, answer this message and our team will help. Thank you for shopping.\r\n",
        );
    }
    raw.push_str("-- \r\nShop team\r\n");
    raw.into_bytes()
}

type Inbox = (Shard, ViewCache);

/// A shard holding `INBOX_MESSAGES` messages for `ADDRESS`, nothing parsed yet.
fn filled_shard(messages: &[Vec<u8>]) -> Inbox {
    let mut shard = Shard::new(ShardConfig {
        shard_idx: 0,
        boot_micros: BOOT_MICROS,
        ring_bytes: RING_BYTES,
        ttl_ms: TTL_MS,
        inbox_messages_max: INBOX_MESSAGES,
    });
    let rcpts = [Rcpt::new(ADDRESS).expect("a valid address")];
    for raw in messages {
        let incoming = Incoming {
            mail_from: MAIL_FROM,
            rcpts: &rcpts,
            parts: &[raw.as_slice()],
            received_at_ms: NOW_MS,
        };
        if let Err(error) = shard.insert(&incoming, NOW_MS) {
            panic!("insert failed: {error}");
        }
    }
    assert_eq!(shard.stats().messages_held, INBOX_MESSAGES as u64);
    (shard, ViewCache::new(VIEW_CACHE_BYTES))
}

fn search_request(q: &str, limit: usize) -> InboxRequest {
    InboxRequest {
        key: InboxKey::new(ADDRESS)
            .expect("a valid address")
            .into_owned(),
        op: InboxOp::List {
            after: None,
            limit,
            wait_secs: 0,
            query: Some(Query::parse(q).expect("a valid query")),
        },
    }
}

/// Runs `request` to its answer as the runtime does; returns the 200 response and the
/// number of steps it took.
fn execute_search(request: &InboxRequest, (shard, views): &mut Inbox) -> (Response, usize) {
    let mut search = SearchState::default();
    let mut n_steps = 0;
    loop {
        n_steps += 1;
        let outcome = api::execute(request, shard, views, NOW_MS, false, &mut search);
        views.sync(shard);
        match outcome {
            Outcome::Ready(response) if response.status == 200 => return (response, n_steps),
            Outcome::Ready(response) => panic!(
                "status {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            ),
            Outcome::ParseBatch(batch) => search.absorb(batch.job(shard, &request.key).run()),
            Outcome::Yield => {}
            Outcome::Wait | Outcome::Parse(_) => panic!("a search without wait: {outcome:?}"),
        }
    }
}

/// Checks an answer: the inbox's total and the subjects of the expected messages.
fn check(response: &Response, expected_ns: &[usize]) {
    let value: serde_json::Value = match serde_json::from_slice(&response.body) {
        Ok(value) => value,
        Err(error) => panic!("answer is not JSON: {error}"),
    };
    assert_eq!(value["total"], INBOX_MESSAGES);
    let subjects: Vec<&str> = value["messages"]
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .filter_map(|m| m["subject"].as_str())
                .collect()
        })
        .unwrap_or_default();
    let expected: Vec<String> = expected_ns
        .iter()
        .map(|n| format!("Your order #{n} has shipped"))
        .collect();
    assert_eq!(subjects, expected);
}

fn bench_search(c: &mut Criterion) {
    let messages: Vec<Vec<u8>> = (0..INBOX_MESSAGES).map(message).collect();
    let subject = search_request("subject:\"order #10000 \"", 50);
    let from = search_request("from:nobody@shop", 50);
    let text = search_request("\"tracking number: 2z\"", 50);
    let locker = search_request("\"parcel locker\"", 50);
    let lockers: Vec<usize> = (0..INBOX_MESSAGES)
        .rev()
        .filter(|n| n.is_multiple_of(100))
        .take(50)
        .collect();

    let mut inbox = filled_shard(&messages);
    // The first search of the inbox parses every summary and body; after it, all is warm.
    let (response, _) = execute_search(&text, &mut inbox);
    check(&response, &[]);

    let mut group = c.benchmark_group("search_10k");
    group.throughput(Throughput::Elements(1));
    for (name, request, expected) in [
        ("subject_warm", &subject, &[][..]),
        ("from_warm", &from, &[][..]),
        ("text_warm", &text, &[][..]),
        ("text_warm_match", &locker, &lockers[..]),
    ] {
        let (response, n_steps) = execute_search(request, &mut inbox);
        check(&response, expected);
        eprintln!("{name}: {n_steps} step(s)");
        group.bench_function(name, |b| {
            b.iter(|| execute_search(black_box(request), &mut inbox))
        });
    }
    drop(inbox);

    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (name, request) in [("subject_cold", &subject), ("text_cold", &text)] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || filled_shard(&messages),
                |mut inbox| {
                    let (response, _) = execute_search(request, &mut inbox);
                    check(&response, &[]);
                    // Returned, so the shard is dropped outside the timing.
                    (inbox, response)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = bench_search
}
criterion_main!(benches);
