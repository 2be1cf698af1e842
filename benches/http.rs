//! Criterion benchmarks of the HTTP side with no sockets: request parsing and routing of a
//! typical GET, and rendering an inbox listing as JSON on the shard that owns the inbox.
//!
//! - `http_list`: `api::execute` of `List` on an inbox of 1000 messages, limit 1000 and the
//!   default 50, with summaries already cached (`cached`: every poll after the first) and
//!   not yet parsed (`uncached_1000`: the first read of new mail, one `mail-parser` pass
//!   per message; each iteration gets a freshly filled shard, filled outside the timing).
//!   Also `Response::write_to` of the 1000-message answer (status line, headers, body).
//! - `http_request`: `request::parse` of a browser-like GET of an inbox, alone and followed
//!   by `api::route`.
//!
//! Every benchmark checks its answer (status, JSON length, `total` and message count, the
//! parsed path and the route), so a broken benchmark fails instead of measuring an error page.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mayfly::config::DomainPolicy;
use mayfly::http::api::{self, InboxRequest, Outcome, Route};
use mayfly::http::request::{self, Limits, Method};
use mayfly::http::response::Response;
use mayfly::mail::search::SearchState;

mod common;

use common::{Inbox, InboxSetup, NOW_MS};

/// The server's allocator (`src/main.rs`), so allocation costs are the ones it pays.
#[global_allocator]
static GLOBAL: mayfly::alloc::WipingMiMalloc = mayfly::alloc::WipingMiMalloc;

/// Messages in the listed inbox: the largest `limit` the API allows.
const INBOX_MESSAGES: usize = 1000;
const ADDRESS: &str = "bob.inbox@example.test";
const MAIL_FROM: &str = "notifications@service.example.org";
const SETUP: InboxSetup = InboxSetup {
    address: ADDRESS,
    mail_from: MAIL_FROM,
    // Room for the inbox many times over.
    ring_bytes: 16 * 1024 * 1024,
    // Room for every summary, so "cached" stays cached.
    view_cache_bytes: 64 * 1024 * 1024,
};
/// A browser's GET of an inbox, as `net::http_conn` would read it.
const GET_REQUEST: &[u8] = b"GET /api/v1/inboxes/bob.inbox%40example.test?limit=50 HTTP/1.1\r\n\
    Host: mail.example.test\r\n\
    User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0\r\n\
    Accept: application/json\r\n\
    Accept-Language: en-US,en;q=0.5\r\n\
    Accept-Encoding: gzip, deflate, br, zstd\r\n\
    Referer: http://mail.example.test/\r\n\
    Connection: keep-alive\r\n\
    Sec-Fetch-Dest: empty\r\n\
    Sec-Fetch-Mode: cors\r\n\
    Sec-Fetch-Site: same-origin\r\n\r\n";

fn criterion_config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

/// Message `n`: a Received header and a ~1.2 KB multi-line text notification, with an
/// encoded-word subject on every fourth, as real sign-up mail has.
fn message(n: usize) -> Vec<u8> {
    let subject = if n.is_multiple_of(4) {
        format!("=?utf-8?q?Best=C3=A4tigung_Ihrer_Anmeldung_{n}?=")
    } else {
        format!("Your confirmation code {n}")
    };
    let mut raw = format!(
        "Received: from mta.example.org by mx.example.test (Mayfly) with ESMTP\r\n\
         \tid 0189ABCDEF012{n:08X}; Fri, 27 Nov 2026 22:15:44 +0000\r\n\
         From: Service <{MAIL_FROM}>\r\n\
         To: {ADDRESS}\r\n\
         Subject: {subject}\r\n\
         Date: Fri, 27 Nov 2026 22:{:02}:{:02} +0000\r\n\
         Message-ID: <{n}.424242@service.example.org>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n\
         Hello,\r\n\r\nyour confirmation code is {n:06}. It expires in ten minutes.\r\n\r\n",
        n / 60 % 60,
        n % 60
    );
    while raw.len() < 1200 {
        raw.push_str(
            "If you did not ask for this code, you can ignore this message; nothing will\r\n\
             change on your account. Please do not reply to this address.\r\n",
        );
    }
    raw.push_str("-- \r\nThe Example Service team\r\n");
    raw.into_bytes()
}

/// Runs `request` and returns the 200 response, or panics.
fn execute_list(request: &InboxRequest, (shard, views): &mut Inbox) -> Response {
    let outcome = api::execute(
        request,
        shard,
        views,
        NOW_MS,
        false,
        &mut SearchState::default(),
    );
    views.sync(shard);
    match outcome {
        Outcome::Ready(response) if response.status == 200 => response,
        Outcome::Ready(response) => panic!(
            "status {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        ),
        Outcome::Wait => panic!("a listing with messages waited"),
        Outcome::Parse(id) => panic!("a listing asked to parse {id}"),
        Outcome::ParseBatch(_) | Outcome::Yield => panic!("a plain listing searched"),
    }
}

/// Checks a listing's JSON in full: total, count, and the newest message first.
fn check_listing(body: &[u8], limit: usize) {
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(error) => panic!("listing is not JSON: {error}"),
    };
    assert_eq!(value["address"], ADDRESS);
    assert_eq!(value["total"], INBOX_MESSAGES);
    let messages = value["messages"].as_array().map_or(0, Vec::len);
    assert_eq!(messages, limit);
    let newest = INBOX_MESSAGES - 1;
    assert_eq!(
        value["messages"][0]["subject"],
        format!("Your confirmation code {newest}")
    );
    assert_eq!(
        value["messages"][0]["preview"]
            .as_str()
            .map(|preview| preview.starts_with("Hello, your confirmation code is 000999.")),
        Some(true)
    );
}

fn bench_list(c: &mut Criterion) {
    let messages: Vec<Vec<u8>> = (0..INBOX_MESSAGES).map(message).collect();
    let mut shard = SETUP.filled_shard(&messages);
    let list_all = SETUP.list_request(None, INBOX_MESSAGES);
    let list_default = SETUP.list_request(None, api::LIMIT_DEFAULT);
    let all_json = execute_list(&list_all, &mut shard).body;
    check_listing(&all_json, INBOX_MESSAGES);
    let default_json = execute_list(&list_default, &mut shard).body;
    check_listing(&default_json, api::LIMIT_DEFAULT);

    let mut group = c.benchmark_group("http_list");
    group.throughput(Throughput::Elements(1));
    group.bench_function("cached_1000", |b| {
        b.iter(|| {
            let response = execute_list(black_box(&list_all), &mut shard);
            assert_eq!(response.body.len(), all_json.len());
            response
        })
    });
    group.bench_function("cached_50", |b| {
        b.iter(|| {
            let response = execute_list(black_box(&list_default), &mut shard);
            assert_eq!(response.body.len(), default_json.len());
            response
        })
    });
    let response = execute_list(&list_all, &mut shard);
    let mut wire = Vec::with_capacity(all_json.len() + 512);
    group.bench_function("write_response_1000", |b| {
        b.iter(|| {
            wire.clear();
            black_box(&response).write_to(true, false, &mut wire);
            assert!(wire.starts_with(b"HTTP/1.1 200 OK\r\n"));
            assert!(wire.ends_with(&all_json));
        })
    });
    drop(shard);

    group.sample_size(20);
    group.bench_function("uncached_1000", |b| {
        b.iter_batched(
            || SETUP.filled_shard(&messages),
            |mut shard| {
                let response = execute_list(&list_all, &mut shard);
                assert_eq!(response.body, all_json);
                // Returned, so the shard is dropped outside the timing.
                (shard, response)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn bench_request(c: &mut Criterion) {
    let limits = Limits::default();
    let domains = DomainPolicy::new(&["example.test"]);
    let expected_route = Route::Inbox(SETUP.list_request(None, api::LIMIT_DEFAULT));

    let mut group = c.benchmark_group("http_request");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_get", |b| {
        b.iter(|| match request::parse(black_box(GET_REQUEST), &limits) {
            Ok(Some((request, consumed))) => {
                assert_eq!(consumed, GET_REQUEST.len());
                assert_eq!(request.method, Method::Get);
                assert_eq!(request.path, "/api/v1/inboxes/bob.inbox%40example.test");
                assert!(request.keep_alive);
                request
            }
            other => panic!("{other:?}"),
        })
    });
    group.bench_function("parse_and_route_get", |b| {
        b.iter(|| match request::parse(black_box(GET_REQUEST), &limits) {
            Ok(Some((request, _))) => match api::route(&request, &domains) {
                Ok(route) => assert_eq!(route, expected_route),
                Err(response) => panic!("status {}", response.status),
            },
            other => panic!("{other:?}"),
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = bench_list, bench_request
}
criterion_main!(benches);
