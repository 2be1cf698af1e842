//! Criterion benchmarks of `mail::extract::extract`, in bytes of input per second: what
//! finding the codes and links adds to parsing a message, and that the cost stays linear
//! on hostile input.
//!
//! - `extract_typical/html_10KiB`: a sign-up mail's HTML as the server passes it (sanitized
//!   by `mail::sanitize` first, outside the timing), ~10 KiB: a code in a styled block,
//!   buttons, tracked links, a newsletter-style body, a footer with an address.
//! - `extract_typical/text_10KiB`: the same mail's ~10 KiB text alternative.
//! - `extract_hostile/<shape>/{100KiB,1MiB}`: digits with and without spaces, "code"
//!   repeated, `<a>` repeated, distinct links, URLs in text, CJK keywords, entities, nested
//!   bold; a flat MB/s from 100 KiB to 1 MiB shows linear time.
//!
//! Every benchmark checks its answer (the code and the verify link of the typical mails,
//! the limits and counts of the hostile ones), so a broken benchmark fails loudly.

use std::collections::HashMap;
use std::fmt::Write;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mayfly::mail::extract::{CODES_MAX, Extracted, LINKS_MAX, extract};
use mayfly::mail::sanitize::{HTML_SANITIZE_BYTES_MAX, sanitize_html_bounded};

/// The server's allocator (`src/main.rs`), so allocation costs are the ones it pays.
#[global_allocator]
static GLOBAL: mayfly::alloc::WipingMiMalloc = mayfly::alloc::WipingMiMalloc;

/// Size of the typical mails.
const TYPICAL_BYTES: usize = 10 << 10;
/// Sizes of the hostile inputs.
const HOSTILE_SIZES: [(&str, usize); 2] = [("100KiB", 100 << 10), ("1MiB", 1 << 20)];
const CODE: &str = "482913";
const VERIFY_URL: &str = "https://click.acme.test/ls/click?upn=Xk9fPq2Lm7Vn3Rt8Ws1Yz4Ab6Cd0Ef";

const SUBJECT: &str = "Verify your Acme account";

/// Newsletter-style paragraphs that pad the typical mails to size: words, some numbers,
/// a date, a price, links.
const FILLER_PARAGRAPHS: [&str; 4] = [
    "Acme helps teams ship faster. Over 12,000 companies use our platform every day to plan \
     releases, track incidents and share dashboards with their customers.",
    "New this month: scheduled reports, a faster search and dark mode on mobile. Read the \
     release notes from 14 April 2026 to learn more about what changed and why.",
    "Plans start at $29 per seat and month. Teams of 5 or more get 20% off in their first \
     year; education and non-profit discounts are available on request.",
    "Join our webinar on Thursday at 17:00 CET, or browse the 250+ guides in our help \
     center, written by the people who build the product.",
];

fn typical_html(target_bytes: usize) -> String {
    let mut html = String::with_capacity(target_bytes + 1024);
    html.push_str(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Verify</title>\
         <style>.btn{background:#2e7de1;color:#fff}</style></head><body>\
         <table width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" bgcolor=\"#f4f4f4\"><tr><td>\
         <table width=\"600\" align=\"center\"><tr><td style=\"padding:24px\">\
         <img src=\"cid:logo@acme\" alt=\"Acme\" width=\"120\">\
         <h1 style=\"font-size:26px;color:#222222\">Confirm your email address</h1>\
         <p style=\"font-size:16px;line-height:24px\">Hi Dana, thanks for signing up! Enter \
         this verification code in the window where you started:</p>",
    );
    let _ = write!(
        html,
        "<div style=\"font-size:32px;letter-spacing:8px;font-weight:bold;text-align:center\">{CODE}</div>\
         <p>Or confirm with one click:</p>\
         <p><a href=\"{VERIFY_URL}\" style=\"background-color:#2e7de1;color:#ffffff;padding:12px 24px;font-weight:bold\">Verify email</a></p>\
         <p style=\"color:#666666\">The code expires in 10 minutes. If you didn't sign up, ignore this email.</p>"
    );
    let footer = "<p style=\"font-size:12px;color:#999999\">\
        <a href=\"https://acme.test/help\">Help</a> | <a href=\"https://acme.test/privacy\">Privacy</a> | \
        <a href=\"https://click.acme.test/ls/click?upn=Unsub9Zx8Cv7Bn6Mq5Wr4\">Unsubscribe</a><br>\
        Acme Inc., 1600 Market Street, Suite 1200, Philadelphia, PA 19103<br>© 2026 Acme Inc.</p>\
        </td></tr></table></td></tr></table></body></html>";
    let mut paragraph_idx = 0;
    while html.len() + footer.len() < target_bytes {
        let paragraph = FILLER_PARAGRAPHS[paragraph_idx % FILLER_PARAGRAPHS.len()];
        let _ = write!(
            html,
            "<p style=\"font-size:14px;color:#444444\">{paragraph} \
             <a href=\"https://click.acme.test/ls/click?upn=Post{paragraph_idx}Qw8Er7Ty6Ui5\">Read more</a></p>"
        );
        paragraph_idx += 1;
    }
    html.push_str(footer);
    html
}

fn typical_text(target_bytes: usize) -> String {
    let mut text = format!(
        "Hi Dana,\n\nThanks for signing up! Enter this verification code in the window where \
         you started:\n\n    {CODE}\n\nOr confirm your email address with one click:\n\
         {VERIFY_URL}\n\nThe code expires in 10 minutes. If you didn't sign up, ignore this \
         email.\n\n"
    );
    let footer = "Help: https://acme.test/help\nPrivacy: https://acme.test/privacy\n\
        Unsubscribe: https://click.acme.test/ls/click?upn=Unsub9Zx8Cv7Bn6Mq5Wr4\n\n\
        Acme Inc., 1600 Market Street, Suite 1200, Philadelphia, PA 19103\n(c) 2026 Acme Inc.\n";
    let mut paragraph_idx = 0;
    while text.len() + footer.len() < target_bytes {
        let paragraph = FILLER_PARAGRAPHS[paragraph_idx % FILLER_PARAGRAPHS.len()];
        let _ = write!(
            text,
            "{paragraph}\nRead more: https://click.acme.test/ls/click?upn=Post{paragraph_idx}Qw8Er7Ty6Ui5\n\n"
        );
        paragraph_idx += 1;
    }
    text.push_str(footer);
    text
}

/// Checks the typical mails' answer: the code first, the button's link as the verify link.
fn check_typical(extracted: &Extracted) {
    assert_eq!(
        extracted.codes.first().map(|code| code.value.as_str()),
        Some(CODE)
    );
    assert_eq!(
        extracted.verify_link().map(|link| link.url.as_str()),
        Some(VERIFY_URL)
    );
}

fn extract_typical(criterion: &mut Criterion) {
    let raw_html = typical_html(TYPICAL_BYTES);
    let html = sanitize_html_bounded(&raw_html, HashMap::new(), HTML_SANITIZE_BYTES_MAX)
        .expect("sanitized");
    let text = typical_text(TYPICAL_BYTES);
    let mut group = criterion.benchmark_group("extract_typical");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Bytes(html.len() as u64));
    group.bench_function(BenchmarkId::from_parameter("html_10KiB"), |bench| {
        bench.iter(|| {
            let extracted = extract(SUBJECT, None, Some(black_box(&html)), None);
            check_typical(&extracted);
            extracted
        });
    });
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function(BenchmarkId::from_parameter("text_10KiB"), |bench| {
        bench.iter(|| {
            let extracted = extract(SUBJECT, Some(black_box(&text)), None, None);
            check_typical(&extracted);
            extracted
        });
    });
    group.finish();
}

/// A hostile shape: `piece(idx)` repeated to the size; whether it goes in the text or the
/// HTML body; the exact number of links it must give (codes are only checked against
/// `CODES_MAX`).
struct Hostile {
    name: &'static str,
    piece: fn(usize) -> String,
    as_html: bool,
    n_links: fn(usize) -> usize,
}

const HOSTILE: [Hostile; 10] = [
    Hostile {
        name: "digits",
        piece: |_| "1234567890".into(),
        as_html: false,
        n_links: |_| 0,
    },
    Hostile {
        name: "digit_groups",
        piece: |_| "1234 ".into(),
        as_html: false,
        n_links: |_| 0,
    },
    Hostile {
        name: "digit_lines",
        piece: |idx| format!("code {}\n", 100_000 + idx % 900_000),
        as_html: false,
        n_links: |_| 0,
    },
    Hostile {
        name: "code_words",
        piece: |_| "code ".into(),
        as_html: false,
        n_links: |_| 0,
    },
    Hostile {
        name: "cjk_keywords",
        piece: |_| "验证码".into(),
        as_html: false,
        n_links: |_| 0,
    },
    Hostile {
        name: "text_urls",
        piece: |idx| format!("https://x.test/{idx}?a=1. "),
        as_html: false,
        n_links: |n| n.min(LINKS_MAX),
    },
    Hostile {
        name: "bare_anchors",
        piece: |_| "<a>".into(),
        as_html: true,
        n_links: |_| 0,
    },
    Hostile {
        name: "distinct_links",
        piece: |idx| format!("<a href=\"https://x.test/{idx}\">verify {idx}</a>"),
        as_html: true,
        n_links: |n| n.min(LINKS_MAX),
    },
    Hostile {
        name: "entities",
        piece: |_| "&amp;&#52;&nbsp;".into(),
        as_html: true,
        n_links: |_| 0,
    },
    Hostile {
        name: "nested_bold",
        piece: |_| "<b style=\"font-size:40px\">".into(),
        as_html: true,
        n_links: |_| 0,
    },
];

fn extract_hostile(criterion: &mut Criterion) {
    for shape in &HOSTILE {
        let mut group = criterion.benchmark_group(format!("extract_hostile/{}", shape.name));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_secs(1));
        for (size_name, target_bytes) in HOSTILE_SIZES {
            let mut input = String::with_capacity(target_bytes + 64);
            let mut n_pieces = 0;
            loop {
                let piece = (shape.piece)(n_pieces);
                if input.len() + piece.len() > target_bytes {
                    break;
                }
                input.push_str(&piece);
                n_pieces += 1;
            }
            let n_links = (shape.n_links)(n_pieces);
            group.throughput(Throughput::Bytes(input.len() as u64));
            group.bench_function(BenchmarkId::from_parameter(size_name), |bench| {
                bench.iter(|| {
                    let input = black_box(input.as_str());
                    let extracted = if shape.as_html {
                        extract("code", None, Some(input), None)
                    } else {
                        extract("code", Some(input), None, None)
                    };
                    assert!(extracted.codes.len() <= CODES_MAX);
                    assert_eq!(extracted.links.len(), n_links, "{}", shape.name);
                    extracted
                });
            });
        }
        group.finish();
    }
}

criterion_group!(benches, extract_typical, extract_hostile);
criterion_main!(benches);
