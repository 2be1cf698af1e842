//! Criterion benchmarks of the SMTP core (`smtp::parser`, `smtp::data`, `smtp::Session`),
//! with no sockets: what one core spends on the protocol per command, per transaction and
//! per body byte, so the kernel's share in the load tests can be told apart from ours.
//!
//! - `smtp_parse`: `parse_command` on MAIL FROM with parameters, RCPT TO and short commands,
//!   in commands/s.
//! - `smtp_transaction`: one pipelined transaction (MAIL, RCPT, DATA, a 1.3 KB body, the
//!   final dot) through `Session::advance` after a single EHLO, answered with
//!   `Delivery::Stored` and our Received header written as `net::smtp_conn` does, in
//!   transactions/s.
//! - `smtp_data_scan`: `DataScanner` alone (terminator search and dot-unstuffing) on
//!   bodies of 1 KiB, 100 KiB and 10 MiB, in bytes/s.
//! - `smtp_session_data` and `smtp_session_bdat`: the same bodies as a whole transaction
//!   through `Session::advance`, sent with DATA or with one `BDAT n LAST`, in bytes/s.
//! - `smtp_session_data_into_body` and `smtp_session_bdat_into_body`: the same, read the
//!   way the socket loop reads big bodies: straight into the session's body buffer
//!   (`Session::body_read_buffer`, `Session::body_received`). Each read is a copy from the
//!   input here, standing in for the kernel's copy from the socket, while the groups above
//!   get their reads for free as slices of the input; so these groups do one copy more
//!   than those, and a time equal to theirs means the server saves a whole copy.
//!
//! Input arrives in reads of at most `READ_BUFFER_BYTES` (16 KiB, the socket loop's read
//! buffer), and the unconsumed tail of one read is handed back with the next, as the
//! socket loop does. Every benchmark checks its answer (the parsed command, the number of
//! messages delivered, the body length, the replies), so a broken benchmark fails instead of
//! measuring the wrong thing.

use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mayfly::config::DomainPolicy;
use mayfly::smtp::data::{DataScanner, dot_stuff};
use mayfly::smtp::parser::{BodyType, Command, ForwardPath, parse_command};
use mayfly::smtp::{Delivery, Event, Session, SessionConfig};

/// The server's allocator (`src/main.rs`), so allocation costs are the ones it pays.
#[global_allocator]
static GLOBAL: mayfly::alloc::WipingMiMalloc = mayfly::alloc::WipingMiMalloc;

/// The socket loop's read buffer (`net::smtp_conn::READ_BUFFER_BYTES`).
const READ_BUFFER_BYTES: usize = 16 * 1024;
/// The default `--max-message-size` (10 MiB); the largest body benchmarked fits it.
const MESSAGE_BYTES_MAX: usize = 10 * 1024 * 1024;
/// A typical message, as in the load tests (`TECH-NOTES.md`: 1.26 KB).
const TRANSACTION_BODY_BYTES: usize = 1300;
/// Body sizes of the throughput benchmarks.
const BODY_SIZES: [(&str, usize); 3] = [
    ("1KiB", 1024),
    ("100KiB", 100 * 1024),
    ("10MiB", MESSAGE_BYTES_MAX),
];
/// Queue id reported for every stored message.
const QUEUE_ID: &str = "0123456789ABC0000000001";
const MAIL_LINE: &[u8] = b"MAIL FROM:<alice.sender@example.org> SIZE=1342 BODY=8BITMIME";
const RCPT_LINE: &[u8] = b"RCPT TO:<bob.inbox@example.test>";
const SHORT_LINES: [&[u8]; 4] = [b"DATA", b"RSET", b"NOOP", b"QUIT"];

fn criterion_config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

fn session_config() -> Rc<SessionConfig> {
    Rc::new(SessionConfig {
        hostname: "mx.example.test".to_string(),
        message_bytes_max: MESSAGE_BYTES_MAX,
        recipients_max: 100,
        domains: DomainPolicy::new(&["example.test"]),
        starttls_available: false,
        tls_required: false,
        owned_partitions: mayfly::partition::PartitionSet::ALL,
    })
}

/// A small deterministic generator (xorshift64*), so every run benchmarks the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The vocabulary of body text, split on spaces.
const WORDS: &str = "the message server inbox delivery of and a to disposable mail is kept in \
    memory for one hour then zeroed reply thanks regards please";

/// A message as a client sends it before dot-stuffing: headers, then text lines of 0 to
/// about 76 characters with CRLF ends, about one line in 12 starting with `.` (quoted
/// ellipses, a lone `.`); at most `bytes_max` bytes, and within a few lines of it.
fn message_body(bytes_max: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut body = b"From: Alice Sender <alice.sender@example.org>\r\n\
        To: bob.inbox@example.test\r\n\
        Subject: Your confirmation code\r\n\
        Date: Fri, 27 Nov 2026 22:15:44 +0000\r\n\
        Message-ID: <20261127221544.4242@example.org>\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\r\n"
        .to_vec();
    let mut line = Vec::new();
    loop {
        line.clear();
        let (prefix, with_words): (&[u8], bool) = match rng.below(24) {
            0 => (&b"..."[..], true),   // a quoted ellipsis
            1 => (&b"."[..], false),    // a lone dot: the terminator, were it not stuffed
            2 | 3 => (&b""[..], false), // a paragraph break
            _ => (&b""[..], true),
        };
        line.extend_from_slice(prefix);
        if with_words {
            let line_chars_max = 40 + rng.below(37);
            while line.len() < line_chars_max {
                if !line.is_empty() && line != b"..." {
                    line.push(b' ');
                }
                line.extend_from_slice(words[rng.below(words.len())].as_bytes());
            }
        }
        line.extend_from_slice(b"\r\n");
        if body.len() + line.len() > bytes_max {
            break;
        }
        body.extend_from_slice(&line);
    }
    body
}

/// The DATA form of `body` (`smtp::data::dot_stuff`).
fn dot_stuffed(body: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    dot_stuff(body, &mut wire);
    wire
}

/// Envelope commands as one pipelined group (RFC 2920): MAIL and RCPT, then `last`.
fn envelope(body_bytes: usize, last: &str) -> Vec<u8> {
    format!(
        "MAIL FROM:<alice.sender@example.org> SIZE={body_bytes} BODY=8BITMIME\r\n\
         RCPT TO:<bob.inbox@example.test>\r\n{last}\r\n"
    )
    .into_bytes()
}

/// A whole DATA transaction as the client sends it.
fn data_transaction(body: &[u8]) -> Vec<u8> {
    let mut wire = envelope(body.len(), "DATA");
    wire.extend_from_slice(&dot_stuffed(body));
    wire
}

/// A whole single-chunk BDAT transaction as the client sends it.
fn bdat_transaction(body: &[u8]) -> Vec<u8> {
    let mut wire = envelope(body.len(), &format!("BDAT {} LAST", body.len()));
    wire.extend_from_slice(body);
    wire
}

/// A session that has already said EHLO, and its (cleared) reply buffer.
fn greeted_session() -> (Session, Vec<u8>) {
    let mut session = Session::new(session_config(), None);
    let mut out = Vec::with_capacity(1024);
    let (consumed, event) = session.advance(b"EHLO client.example.org\r\n", &mut out);
    assert_eq!((consumed, event), (25, Event::NeedInput));
    assert!(out.starts_with(b"250-mx.example.test"), "EHLO refused");
    out.clear();
    (session, out)
}

/// What feeding one client write to a session produced.
#[derive(Debug, Default, PartialEq, Eq)]
struct Fed {
    n_delivered: usize,
    body_bytes: usize,
}

/// Feeds `wire` to `session` as the socket loop does: reads of at most `READ_BUFFER_BYTES`,
/// the unconsumed rest kept for the next read. Each delivered message is answered with
/// `Delivery::Stored`; with `received` given, our Received header is written first, as
/// `net::smtp_conn` does. Replies accumulate in `out`.
fn feed(
    session: &mut Session,
    wire: &[u8],
    out: &mut Vec<u8>,
    mut received: Option<&mut Vec<u8>>,
) -> Fed {
    let mut fed = Fed::default();
    let (mut start, mut end) = (0, 0);
    loop {
        let (consumed, event) = session.advance(&wire[start..end], out);
        start += consumed;
        match event {
            Event::NeedInput => {
                if end == wire.len() {
                    assert_eq!(start, end, "input left unconsumed at the end");
                    return fed;
                }
                end = wire.len().min(start + READ_BUFFER_BYTES);
            }
            Event::Deliver => {
                if let Some(header) = received.as_deref_mut() {
                    header.clear();
                    session.write_received_header(QUEUE_ID, SystemTime::now(), header);
                }
                let transaction = session.transaction();
                assert_eq!(transaction.n_rcpts(), 1);
                fed.n_delivered += 1;
                fed.body_bytes += transaction.body.len();
                session.delivered(Delivery::Stored { queue_id: QUEUE_ID }, out);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// As `feed`, but reading as the socket loop does: into a read buffer of
/// `READ_BUFFER_BYTES`, or, when the session offers room inside a big body, straight into
/// its body buffer. Every read copies from `wire`, as the kernel copies from the socket.
fn feed_into_body(
    session: &mut Session,
    wire: &[u8],
    out: &mut Vec<u8>,
    read_buffer: &mut Vec<u8>,
) -> Fed {
    let mut fed = Fed::default();
    read_buffer.resize(READ_BUFFER_BYTES, 0);
    let (mut start, mut end) = (0, 0);
    let mut wire_idx = 0;
    loop {
        let (consumed, event) = session.advance(&read_buffer[start..end], out);
        start += consumed;
        match event {
            Event::NeedInput => {
                if wire_idx == wire.len() {
                    assert_eq!(start, end, "input left unconsumed at the end");
                    return fed;
                }
                read_buffer.copy_within(start..end, 0);
                (start, end) = (0, end - start);
                let unread = &wire[wire_idx..];
                if start == end
                    && let Some(room) = session.body_read_buffer()
                {
                    let n_bytes = room.len().min(unread.len());
                    room[..n_bytes].copy_from_slice(&unread[..n_bytes]);
                    wire_idx += n_bytes;
                    let rest = session.body_received(n_bytes);
                    if rest.len() > read_buffer.len() {
                        read_buffer.resize(rest.len(), 0);
                    }
                    read_buffer[..rest.len()].copy_from_slice(rest);
                    end = rest.len();
                } else {
                    let n_bytes = (read_buffer.len() - end).min(unread.len());
                    read_buffer[end..end + n_bytes].copy_from_slice(&unread[..n_bytes]);
                    wire_idx += n_bytes;
                    end += n_bytes;
                }
            }
            Event::Deliver => {
                let transaction = session.transaction();
                assert_eq!(transaction.n_rcpts(), 1);
                fed.n_delivered += 1;
                fed.body_bytes += transaction.body.len();
                session.delivered(Delivery::Stored { queue_id: QUEUE_ID }, out);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn bench_parse(c: &mut Criterion) {
    // The full answers, checked once; the loops below check the parts that vary.
    assert!(matches!(
        parse_command(MAIL_LINE),
        Ok(Command::Mail {
            reverse_path: "alice.sender@example.org",
            params,
        }) if params.size_bytes == Some(1342)
            && params.body == Some(BodyType::EightBitMime)
            && !params.smtputf8
    ));
    assert_eq!(
        parse_command(RCPT_LINE),
        Ok(Command::Rcpt {
            forward_path: ForwardPath::Mailbox("bob.inbox@example.test")
        })
    );
    let short_commands = [Command::Data, Command::Rset, Command::Noop, Command::Quit];
    for (line, command) in SHORT_LINES.iter().zip(short_commands) {
        assert_eq!(parse_command(line), Ok(command));
    }

    let mut group = c.benchmark_group("smtp_parse");
    group.throughput(Throughput::Elements(1));
    group.bench_function("mail_from_params", |b| {
        b.iter(|| match parse_command(black_box(MAIL_LINE)) {
            Ok(Command::Mail {
                reverse_path,
                params,
            }) => {
                assert_eq!(reverse_path.len(), 24);
                assert_eq!(params.size_bytes, Some(1342));
            }
            other => panic!("{other:?}"),
        })
    });
    group.bench_function("rcpt_to", |b| {
        b.iter(|| match parse_command(black_box(RCPT_LINE)) {
            Ok(Command::Rcpt {
                forward_path: ForwardPath::Mailbox(mailbox),
            }) => assert_eq!(mailbox.len(), 22),
            other => panic!("{other:?}"),
        })
    });
    group.throughput(Throughput::Elements(SHORT_LINES.len() as u64));
    group.bench_function("short_x4", |b| {
        b.iter(|| {
            for (line, command) in black_box(SHORT_LINES).iter().zip(short_commands) {
                assert_eq!(parse_command(line), Ok(command));
            }
        })
    });
    group.finish();
}

fn bench_transaction(c: &mut Criterion) {
    let body = message_body(TRANSACTION_BODY_BYTES, 1);
    let wire = data_transaction(&body);
    let mut expected_out = Vec::new();
    expected_out.extend_from_slice(b"250 2.1.0 Sender ok\r\n");
    expected_out.extend_from_slice(b"250 2.1.5 Recipient ok\r\n");
    expected_out.extend_from_slice(b"354 End data with <CR><LF>.<CR><LF>\r\n");
    expected_out.extend_from_slice(format!("250 2.0.0 Ok: queued as {QUEUE_ID}\r\n").as_bytes());

    let (mut session, mut out) = greeted_session();
    let mut received = Vec::with_capacity(256);
    let mut group = c.benchmark_group("smtp_transaction");
    group.throughput(Throughput::Elements(1));
    group.bench_function("data_1300B_pipelined", |b| {
        b.iter(|| {
            out.clear();
            let fed = feed(
                &mut session,
                black_box(&wire),
                &mut out,
                Some(&mut received),
            );
            assert_eq!(
                fed,
                Fed {
                    n_delivered: 1,
                    body_bytes: body.len()
                }
            );
            assert_eq!(out, expected_out);
            assert!(received.starts_with(b"Received: from client.example.org by"));
        })
    });
    group.finish();
}

fn bench_data_scan(c: &mut Criterion) {
    let mut group = c.benchmark_group("smtp_data_scan");
    group.sample_size(20);
    for (name, bytes_max) in BODY_SIZES {
        let body = message_body(bytes_max, 2);
        let wire = dot_stuffed(&body);
        let mut scanner = DataScanner::new();
        let mut scanned = Vec::with_capacity(body.len());
        // The full answer, once: the scanner undoes exactly the stuffing.
        scan_in_reads(&mut scanner, &wire, &mut scanned);
        assert_eq!(scanned, body);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                scanned.clear();
                scanner.reset();
                scan_in_reads(&mut scanner, black_box(&wire), &mut scanned);
                assert_eq!(scanned.len(), body.len());
            })
        });
    }
    group.finish();
}

/// Scans a stuffed body given in reads of `READ_BUFFER_BYTES`; checks that the terminator
/// is found exactly at the end and nothing is refused.
fn scan_in_reads(scanner: &mut DataScanner, wire: &[u8], body: &mut Vec<u8>) {
    let n_reads = wire.len().div_ceil(READ_BUFFER_BYTES);
    for (read_idx, read) in wire.chunks(READ_BUFFER_BYTES).enumerate() {
        let (consumed, finished) = scanner.scan(read, body, MESSAGE_BYTES_MAX);
        assert_eq!(consumed, read.len());
        assert_eq!(finished, read_idx + 1 == n_reads);
    }
    assert_eq!(scanner.refusal(), None);
}

fn bench_session_bodies(c: &mut Criterion) {
    type Transaction = fn(&[u8]) -> Vec<u8>;
    const DATA_REPLY: &[u8] = b"354 End data with <CR><LF>.<CR><LF>\r\n";
    // (group, transaction, reply to DATA, read into the body buffer)
    let kinds: [(&str, Transaction, &[u8], bool); 4] = [
        ("smtp_session_data", data_transaction, DATA_REPLY, false),
        ("smtp_session_bdat", bdat_transaction, b"", false),
        (
            "smtp_session_data_into_body",
            data_transaction,
            DATA_REPLY,
            true,
        ),
        ("smtp_session_bdat_into_body", bdat_transaction, b"", true),
    ];
    for (group_name, transaction, data_reply, into_body) in kinds {
        let mut group = c.benchmark_group(group_name);
        group.sample_size(20);
        for (name, bytes_max) in BODY_SIZES {
            let body = message_body(bytes_max, 3);
            let wire = transaction(&body);
            let mut expected_out = Vec::new();
            expected_out.extend_from_slice(b"250 2.1.0 Sender ok\r\n");
            expected_out.extend_from_slice(b"250 2.1.5 Recipient ok\r\n");
            expected_out.extend_from_slice(data_reply);
            expected_out
                .extend_from_slice(format!("250 2.0.0 Ok: queued as {QUEUE_ID}\r\n").as_bytes());
            let (mut session, mut out) = greeted_session();
            let mut read_buffer = Vec::new();
            group.throughput(Throughput::Bytes(wire.len() as u64));
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| {
                    out.clear();
                    let fed = if into_body {
                        feed_into_body(&mut session, black_box(&wire), &mut out, &mut read_buffer)
                    } else {
                        feed(&mut session, black_box(&wire), &mut out, None)
                    };
                    assert_eq!(
                        fed,
                        Fed {
                            n_delivered: 1,
                            body_bytes: body.len()
                        }
                    );
                    assert_eq!(out, expected_out);
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = bench_parse, bench_transaction, bench_data_scan, bench_session_bodies
}
criterion_main!(benches);
