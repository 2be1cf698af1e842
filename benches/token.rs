//! Criterion benchmarks of inbox tokens (`--private-inboxes`): what a request pays for the
//! check, since no token is stored and each one is computed again.
//!
//! - `token/issue`: `InboxTokens::token`, the HMAC and its base64url, as
//!   `POST /api/v1/addresses` pays once per address.
//! - `token/verify_right` and `token/verify_wrong`: `InboxTokens::verify` of the inbox's
//!   token and of one differing in a single character, as every inbox request, WebSocket
//!   and mail-client login pays with the switch on. The two should cost the same: the tags
//!   are compared by `ring::hmac::verify`.
//!
//! Every benchmark checks its answer, so a broken one fails instead of measuring an error.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mayfly::address::InboxKey;
use mayfly::token::{InboxTokens, SecretSource};

/// The server's allocator (`src/main.rs`), so allocation costs are the ones it pays.
#[global_allocator]
static GLOBAL: mayfly::alloc::WipingMiMalloc = mayfly::alloc::WipingMiMalloc;

/// A generated address: 20 characters of `[a-z0-9]` at a typical domain.
const ADDRESS: &str = "k3v9q0x2m5b8n1c4z7wa@mail.example.test";
/// A secret as the data directory's: 64 hex digits and a newline.
const SECRET: &[u8] = b"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n";

fn criterion_config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

fn token(c: &mut Criterion) {
    let tokens = InboxTokens::new(SECRET, true, SecretSource::Process);
    let key = InboxKey::new(ADDRESS).expect("an address");
    let right = tokens.token(&key);
    let mut wrong = right.clone().into_bytes();
    wrong[10] = if wrong[10] == b'A' { b'B' } else { b'A' };
    let wrong = String::from_utf8(wrong).expect("ASCII");
    assert!(tokens.verify(&key, &right) && !tokens.verify(&key, &wrong));

    let mut group = c.benchmark_group("token");
    group.bench_function("issue", |b| {
        b.iter(|| {
            let token = tokens.token(black_box(&key));
            assert_eq!(token.len(), mayfly::token::TOKEN_CHARS);
            token
        })
    });
    group.bench_function("verify_right", |b| {
        b.iter(|| assert!(tokens.verify(black_box(&key), black_box(&right))))
    });
    group.bench_function("verify_wrong", |b| {
        b.iter(|| assert!(!tokens.verify(black_box(&key), black_box(&wrong))))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = token
}
criterion_main!(benches);
