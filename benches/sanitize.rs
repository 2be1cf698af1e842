//! Criterion benchmarks of `mail::sanitize::sanitize_html_bounded`, in bytes of input per
//! second: the whole path (metered dry-run parse, ammonia's parse and cleaning, our
//! serializer) on inputs from 10 KB to 10 MiB, so that linear growth shows as a flat MB/s.
//!
//! - `sanitize_text/{ampersands,pounds,less_thans}`: text of `&` lines, `£`, `<` (html5ever
//!   0.40's serializer was quadratic on the first two: 8.5 s for 1 MB of `&`).
//! - `sanitize_attributes/quoted`: one attribute value of `&quot;` and `&`.
//! - `sanitize_ordinary`: newsletter-style mail HTML (`samples::ordinary_mail_html`).
//! - `sanitize_refused`: the shapes the dry run refuses, at `HTML_SANITIZE_BYTES_MAX`: what
//!   refusing the worst input of the largest accepted size costs.
//!
//! The 10 MiB inputs are over the production limit; the bench passes a limit of 16 MiB to
//! show the growth. Every benchmark checks its answer (the exact output length, or the
//! refusal), so a broken benchmark fails loudly.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use mayfly::mail::sanitize::samples::{Shape, hostile_html, ordinary_mail_html};
use mayfly::mail::sanitize::{HTML_SANITIZE_BYTES_MAX, NotSanitized, sanitize_html_bounded};

/// The server's allocator (`src/main.rs`), so allocation costs are the ones it pays.
#[global_allocator]
static GLOBAL: mayfly::alloc::WipingMiMalloc = mayfly::alloc::WipingMiMalloc;

/// Input sizes (bytes), each about 10x the one before.
const SIZES: [(&str, usize); 4] = [
    ("10KB", 10_000),
    ("100KB", 100_000),
    ("1MiB", 1 << 20),
    ("10MiB", 10 << 20),
];
/// The limit passed to `sanitize_html_bounded` here: above the largest size.
const BENCH_HTML_BYTES_MAX: usize = 16 << 20;
/// From this size on, a few slow samples are enough (the whole run stays within ~3 min).
const LARGE_INPUT_BYTES: usize = 1 << 20;

/// Sanitizes `html` once, checking that it is accepted and `expected_len` bytes long.
fn sanitized_len(html: &str, expected_len: Option<usize>) -> usize {
    let sanitized = sanitize_html_bounded(black_box(html), HashMap::new(), BENCH_HTML_BYTES_MAX)
        .expect("sanitized");
    if let Some(expected_len) = expected_len {
        assert_eq!(sanitized.len(), expected_len);
    }
    sanitized.len()
}

/// Benchmarks accepted inputs of every size; `expected_len` gives the exact output length
/// of an input, or `None` to take the first run's (ordinary mail).
fn bench_accepted(
    criterion: &mut Criterion,
    group_name: &str,
    make_input: impl Fn(usize) -> String,
    expected_len: impl Fn(&str) -> Option<usize>,
) {
    let mut group = criterion.benchmark_group(group_name);
    for (size_name, target_bytes) in SIZES {
        let html = make_input(target_bytes);
        let expected = expected_len(&html).unwrap_or_else(|| sanitized_len(&html, None));
        if html.len() >= LARGE_INPUT_BYTES {
            // Ten runs, one per sample: a 10 MiB input takes up to ~2.5 s.
            group
                .sampling_mode(SamplingMode::Flat)
                .sample_size(10)
                .warm_up_time(Duration::from_millis(100))
                .measurement_time(Duration::from_secs(1));
        } else {
            group
                .sampling_mode(SamplingMode::Auto)
                .sample_size(20)
                .warm_up_time(Duration::from_millis(300))
                .measurement_time(Duration::from_secs(2));
        }
        group.throughput(Throughput::Bytes(html.len() as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(size_name),
            &html,
            |bench, html| {
                bench.iter(|| sanitized_len(html, Some(expected)));
            },
        );
    }
    group.finish();
}

fn sanitize_text(criterion: &mut Criterion) {
    // CRLF line ends become LF in the DOM; each `&` becomes `&amp;`.
    bench_accepted(
        criterion,
        "sanitize_text/ampersands",
        |bytes| hostile_html(Shape::Ampersands, bytes),
        |html| Some(html.len() / 1000 * (998 * 5 + 1)),
    );
    bench_accepted(
        criterion,
        "sanitize_text/pounds",
        |bytes| hostile_html(Shape::Pounds, bytes),
        |html| Some(html.len()),
    );
    bench_accepted(
        criterion,
        "sanitize_text/less_thans",
        |bytes| hostile_html(Shape::LessThans, bytes),
        |html| Some(html.len() * 4),
    );
}

fn sanitize_attributes(criterion: &mut Criterion) {
    // `&quot;` (6 bytes) stays `&quot;`; `&` becomes `&amp;`.
    bench_accepted(
        criterion,
        "sanitize_attributes/quoted",
        |bytes| hostile_html(Shape::QuotedAttributes, bytes),
        |html| {
            let ampersands = html.matches('&').count() - html.matches("&quot;").count();
            Some(html.len() + 4 * ampersands)
        },
    );
}

fn sanitize_ordinary(criterion: &mut Criterion) {
    bench_accepted(criterion, "sanitize_ordinary", ordinary_mail_html, |_| None);
}

fn sanitize_refused(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("sanitize_refused");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(1));
    let shapes = [
        ("deep_divs", Shape::DeepDivs),
        ("foster_parented", Shape::FosterParented),
        ("merged_html_attributes", Shape::MergedHtmlAttributes),
        ("reconstructed", Shape::Reconstructed),
        ("reconstructed_long_link", Shape::ReconstructedLongLink),
        ("many_attributes", Shape::ManyAttributes),
        ("deep_selectedcontent", Shape::DeepSelectedContent),
    ];
    for (shape_name, shape) in shapes {
        let html = hostile_html(shape, HTML_SANITIZE_BYTES_MAX);
        group.throughput(Throughput::Bytes(html.len() as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(shape_name),
            &html,
            |bench, html| {
                bench.iter(|| {
                    let refused = sanitize_html_bounded(
                        black_box(html),
                        HashMap::new(),
                        HTML_SANITIZE_BYTES_MAX,
                    );
                    assert!(
                        matches!(refused, Err(NotSanitized::TooCostly { .. })),
                        "{shape_name}: {refused:?}"
                    );
                });
            },
        );
    }
    group.finish();
}

criterion_group!(
    benches,
    sanitize_text,
    sanitize_attributes,
    sanitize_ordinary,
    sanitize_refused
);
criterion_main!(benches);
