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
use mayfly::http::api::{self, InboxRequest, Outcome};
use mayfly::http::response::Response;
use mayfly::mail::search::SearchState;

mod common;

use common::{Inbox, InboxSetup, NOW_MS};

/// The server's allocator (`src/main.rs`), so allocation costs are the ones it pays.
#[global_allocator]
static GLOBAL: mayfly::alloc::WipingMiMalloc = mayfly::alloc::WipingMiMalloc;

/// Messages in the searched inbox.
const INBOX_MESSAGES: usize = 10_000;
const ADDRESS: &str = "bob.inbox@example.test";
const MAIL_FROM: &str = "bounces@shop.example.org";
const SETUP: InboxSetup = InboxSetup {
    address: ADDRESS,
    mail_from: MAIL_FROM,
    ring_bytes: 64 * 1024 * 1024,
    // Room for every summary, so a warm search finds them all parsed.
    view_cache_bytes: 256 * 1024 * 1024,
};

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
    let subject = SETUP.list_request(Some("subject:\"order #10000 \""), 50);
    let from = SETUP.list_request(Some("from:nobody@shop"), 50);
    let text = SETUP.list_request(Some("\"tracking number: 2z\""), 50);
    let locker = SETUP.list_request(Some("\"parcel locker\""), 50);
    let lockers: Vec<usize> = (0..INBOX_MESSAGES)
        .rev()
        .filter(|n| n.is_multiple_of(100))
        .take(50)
        .collect();

    let mut inbox = SETUP.filled_shard(&messages);
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
                || SETUP.filled_shard(&messages),
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
