//! Criterion benchmarks of the global allocator (`mayfly::alloc::WipingMiMalloc`): what
//! zeroing every freed block costs, per size, against plain mimalloc.
//!
//! - `alloc_fill_free/{size}`: allocate, write every byte (as a message buffer is
//!   written before it is freed), free. The realistic case: the wipe is a second pass
//!   over memory that is already in the cache.
//! - `alloc_free/{size}`: allocate and free without writing. The worst case for the
//!   wipe's relative cost: it is the only pass over the block.
//! - `vec_growth/{size}`: push bytes into a `Vec` that starts empty until it holds
//!   `size` (the growth of a body buffer), then drop it: every moving realloc zeroes the
//!   block it leaves.
//!
//! Each is measured three ways: `mimalloc` (mimalloc called directly), `wipe_off`
//! (`WipingMiMalloc` with wiping switched off: one relaxed atomic load more per free)
//! and `wipe_on`. Sizes: 64 B, 1 KiB, 16 KiB (an SMTP read buffer), 128 KiB (the largest
//! body read) and 1 MiB. Every iteration checks a byte of its block, so a broken
//! allocator fails loudly.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mayfly::alloc::{WipingMiMalloc, set_wipe_on_free};
use mimalloc::MiMalloc;

/// `Vec` and the harness use the server's allocator, so `vec_growth` measures it.
#[global_allocator]
static GLOBAL: WipingMiMalloc = WipingMiMalloc;

const SIZES: [(&str, usize); 5] = [
    ("64B", 64),
    ("1KiB", 1024),
    ("16KiB", 16 * 1024),
    ("128KiB", 128 * 1024),
    ("1MiB", 1024 * 1024),
];
/// Alignment of the blocks: what a `Vec<u8>` asks for.
const ALIGN: usize = 1;
/// The byte written into blocks.
const FILL_BYTE: u8 = 0x5a;

#[derive(Clone, Copy)]
enum Variant {
    Mimalloc,
    WipeOff,
    WipeOn,
}

impl Variant {
    const ALL: [Variant; 3] = [Variant::Mimalloc, Variant::WipeOff, Variant::WipeOn];

    fn name(self) -> &'static str {
        match self {
            Variant::Mimalloc => "mimalloc",
            Variant::WipeOff => "wipe_off",
            Variant::WipeOn => "wipe_on",
        }
    }

    /// Sets the process-wide flag for this variant (`mimalloc` does not read it).
    fn select(self) {
        set_wipe_on_free(matches!(self, Variant::WipeOn));
    }

    /// Allocates, optionally fills, checks and frees one block of `size` bytes.
    fn round(self, size: usize, fill: bool) {
        let layout = Layout::from_size_align(size, ALIGN).expect("valid layout");
        let allocator: &dyn GlobalAlloc = match self {
            Variant::Mimalloc => &MiMalloc,
            Variant::WipeOff | Variant::WipeOn => &WipingMiMalloc,
        };
        // SAFETY: `size > 0`; the block is written within its size and freed once with
        // the layout it was allocated with.
        unsafe {
            let ptr = allocator.alloc(layout);
            assert!(!ptr.is_null(), "allocation of {size} bytes failed");
            if fill {
                std::ptr::write_bytes(ptr, FILL_BYTE, size);
                assert_eq!(ptr.add(size - 1).read(), FILL_BYTE);
            } else {
                ptr.write(FILL_BYTE);
                assert_eq!(ptr.read(), FILL_BYTE);
            }
            allocator.dealloc(black_box(ptr), layout);
        }
    }
}

fn alloc_free(c: &mut Criterion) {
    for (group_name, fill) in [("alloc_fill_free", true), ("alloc_free", false)] {
        let mut group = c.benchmark_group(group_name);
        for (size_name, size) in SIZES {
            group.throughput(Throughput::Bytes(size as u64));
            for variant in Variant::ALL {
                variant.select();
                group.bench_function(BenchmarkId::new(variant.name(), size_name), |b| {
                    b.iter(|| variant.round(black_box(size), fill));
                });
            }
        }
        group.finish();
    }
    set_wipe_on_free(true);
}

fn vec_growth(c: &mut Criterion) {
    let mut group = c.benchmark_group("vec_growth");
    /// Bytes appended at a time, like a socket read into a growing body.
    const CHUNK_BYTES: usize = 512;
    let chunk = [FILL_BYTE; CHUNK_BYTES];
    for (size_name, size) in SIZES.into_iter().filter(|&(_, size)| size >= CHUNK_BYTES) {
        group.throughput(Throughput::Bytes(size as u64));
        // `mimalloc` and `wipe_off` are the same here: `Vec` goes through the global
        // allocator, which is `WipingMiMalloc`.
        for variant in [Variant::WipeOff, Variant::WipeOn] {
            variant.select();
            group.bench_function(BenchmarkId::new(variant.name(), size_name), |b| {
                b.iter(|| {
                    let mut body: Vec<u8> = Vec::new();
                    while body.len() < size {
                        body.extend_from_slice(&chunk);
                    }
                    assert_eq!(body.len(), size);
                    assert_eq!(body[size - 1], FILL_BYTE);
                    black_box(body)
                });
            });
        }
    }
    group.finish();
    set_wipe_on_free(true);
}

/// What a blocking thread's parse job pays at its end (`mayfly::alloc::wipe_stack`).
fn stack_wipe(c: &mut Criterion) {
    set_wipe_on_free(true);
    let mut group = c.benchmark_group("wipe_stack");
    group.throughput(Throughput::Bytes(mayfly::alloc::STACK_WIPE_BYTES as u64));
    group.bench_function("256KiB", |b| b.iter(mayfly::alloc::wipe_stack));
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = alloc_free, vec_growth, stack_wipe
}
criterion_main!(benches);
