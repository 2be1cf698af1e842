//! Session tests with no socket: `TestSession` plays the socket loop (mail-server's
//! `TestSession` idea), feeding bytes in any chunking, storing what is delivered, and
//! recording every reply. The tests proper are grouped by topic in the submodules.

mod body;
mod commands;
mod props;
mod received;
mod recipients;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;

use super::*;
use crate::smtp::data::dot_stuff;

const HOSTNAME: &str = "mx.example.test";
const MESSAGE_BYTES_MAX: usize = 2_000;
const RECIPIENTS_MAX: usize = 3;
/// 2026-11-27 22:15:44 UTC.
const NOW_UNIX_SECS: u64 = 1_795_817_744;

fn config() -> SessionConfig {
    SessionConfig {
        hostname: HOSTNAME.to_string(),
        message_bytes_max: MESSAGE_BYTES_MAX,
        recipients_max: RECIPIENTS_MAX,
        domains: DomainPolicy::new(&["example.test", "*.sub.example.test"]),
        starttls_available: false,
        tls_required: false,
        owned_partitions: crate::partition::PartitionSet::ALL,
    }
}

/// The socket loop's read buffer (`net::smtp_conn::READ_BUFFER_BYTES`).
const SOCKET_READ_BYTES: usize = 16 * 1024;

/// A message as the fake caller stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    mail_from: String,
    rcpts: Vec<String>,
    body: Vec<u8>,
    received: String,
}

/// Plays the socket loop's part: buffers unconsumed input, stores delivered messages,
/// and records everything the session writes (mail-server's `TestSession` idea).
struct TestSession {
    session: Session,
    pending: Vec<u8>,
    out: Vec<u8>,
    stored: Vec<Stored>,
    /// `Quit` or `Close` once the session ended the connection.
    ended: Option<Event>,
    n_starttls: usize,
    /// How the next delivery goes.
    next_delivery: Delivery<'static>,
    /// Read body bytes straight into the session when it offers room, as the socket
    /// loop does, instead of always going through `pending`.
    read_into_body: bool,
    /// Reads that went straight into the body.
    n_body_reads: usize,
}

impl TestSession {
    fn new() -> TestSession {
        TestSession::with_config(config(), None)
    }

    fn with_config(config: SessionConfig, client_ip: Option<IpAddr>) -> TestSession {
        let session = Session::new(Rc::new(config), client_ip);
        let mut out = Vec::new();
        session.greeting(&mut out);
        TestSession {
            session,
            pending: Vec::new(),
            out,
            stored: Vec::new(),
            ended: None,
            n_starttls: 0,
            next_delivery: Delivery::Stored { queue_id: "q1" },
            read_into_body: false,
            n_body_reads: 0,
        }
    }

    /// A session fed the way the socket loop feeds it: big bodies go straight into the
    /// session's body buffer.
    fn reading_into_body(config: SessionConfig) -> TestSession {
        let mut test = TestSession::with_config(config, None);
        test.read_into_body = true;
        test
    }

    /// Feeds bytes as they arrive from the client. Without `read_into_body` they are
    /// one read; with it, they are read in as many pieces as the session's body buffer
    /// takes, like the socket loop does.
    fn feed(&mut self, chunk: &[u8]) -> &mut TestSession {
        // Bytes still "in the socket".
        let mut unread = chunk;
        while self.ended.is_none() {
            let (n_consumed, event) = self.session.advance(&self.pending, &mut self.out);
            assert!(n_consumed <= self.pending.len());
            self.pending.drain(..n_consumed);
            match event {
                Event::NeedInput => {
                    assert!(
                        self.pending.len() <= UNCONSUMED_BYTES_MAX,
                        "{} bytes left",
                        self.pending.len()
                    );
                    if self.session.expects_data() {
                        assert!(self.pending.is_empty(), "body bytes left unconsumed");
                    }
                    if unread.is_empty() {
                        break;
                    }
                    let body_buffer = if self.read_into_body && self.pending.is_empty() {
                        self.session.body_read_buffer()
                    } else {
                        None
                    };
                    match body_buffer {
                        Some(body_buffer) => {
                            let n_bytes = body_buffer.len().min(unread.len());
                            body_buffer[..n_bytes].copy_from_slice(&unread[..n_bytes]);
                            unread = &unread[n_bytes..];
                            let rest = self.session.body_received(n_bytes);
                            self.pending.extend_from_slice(rest);
                            self.n_body_reads += 1;
                        }
                        None => {
                            // Reading into the body only pays for big bodies, so here
                            // reads are as big as the socket loop's.
                            let n_bytes = if self.read_into_body {
                                unread.len().min(SOCKET_READ_BYTES)
                            } else {
                                unread.len()
                            };
                            self.pending.extend_from_slice(&unread[..n_bytes]);
                            unread = &unread[n_bytes..];
                        }
                    }
                }
                Event::Deliver => {
                    let transaction = self.session.transaction();
                    assert_eq!(transaction.rcpts().count(), transaction.n_rcpts());
                    let mut received = Vec::new();
                    self.session.write_received_header(
                        "q1",
                        UNIX_EPOCH + Duration::from_secs(NOW_UNIX_SECS),
                        &mut received,
                    );
                    self.stored.push(Stored {
                        mail_from: transaction.mail_from.to_string(),
                        rcpts: transaction.rcpts().map(str::to_string).collect(),
                        body: transaction.body.to_vec(),
                        received: String::from_utf8(received).expect("header is UTF-8"),
                    });
                    self.session.delivered(self.next_delivery, &mut self.out);
                }
                Event::StartTls => {
                    // CVE-2011-0411: nothing sent before the handshake counts.
                    self.pending.clear();
                    unread = &[];
                    self.n_starttls += 1;
                    self.session
                        .tls_started("TLSv1.3", "TLS_AES_128_GCM_SHA256");
                }
                Event::Quit | Event::Close => {
                    self.ended = Some(event);
                }
            }
        }
        self
    }

    /// The reply codes written so far, one per reply (multi-line replies count once),
    /// without the greeting.
    fn codes(&self) -> Vec<u16> {
        reply_codes(&self.out).into_iter().skip(1).collect()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }

    #[track_caller]
    fn assert_codes(&self, expected: &[u16]) {
        assert_eq!(self.codes(), expected, "replies:\n{}", self.text());
    }
}

/// Reply codes in `out`, counting a multi-line reply once (at its last line).
fn reply_codes(out: &[u8]) -> Vec<u16> {
    out.split(|&b| b == b'\n')
        .filter(|line| line.len() >= 4 && line[3] != b'-')
        .map(reply::code_of)
        .collect()
}

/// Runs `script` fed in the given pieces; returns the output, the stored messages and
/// how it ended.
fn run_in_pieces(script: &[u8], cuts: &[usize]) -> (Vec<u8>, Vec<Stored>, Option<Event>) {
    let mut test = TestSession::new();
    let mut start_idx = 0;
    for &cut in cuts.iter().chain(std::iter::once(&script.len())) {
        let cut = cut.clamp(start_idx, script.len());
        test.feed(&script[start_idx..cut]);
        start_idx = cut;
    }
    (test.out, test.stored, test.ended)
}

fn run(script: &[u8]) -> TestSession {
    let mut test = TestSession::new();
    test.feed(script);
    test
}

/// The same replies and stored messages whether `script` comes in one read, split at
/// any one byte, or one byte at a time.
#[track_caller]
fn assert_chunking_invariant(script: &[u8]) {
    let whole = run_in_pieces(script, &[]);
    for cut in 1..script.len() {
        assert_eq!(
            run_in_pieces(script, &[cut]),
            whole,
            "split at {cut} of {:?}",
            String::from_utf8_lossy(script)
        );
    }
    let every_byte: Vec<usize> = (1..script.len()).collect();
    assert_eq!(run_in_pieces(script, &every_byte), whole, "byte by byte");
}

const EHLO_MAIL_RCPT: &[u8] =
    b"EHLO client.example\r\nMAIL FROM:<a@client.example>\r\nRCPT TO:<u@example.test>\r\n";

fn script(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Table of (input after the greeting, expected reply codes).
fn check_codes(table: &[(&[u8], &[u16])]) {
    for (input, expected) in table {
        let test = run(input);
        assert_eq!(
            test.codes(),
            *expected,
            "input {:?}\nreplies:\n{}",
            String::from_utf8_lossy(input),
            test.text()
        );
    }
}

/// Limit for the tests of reads straight into the body, which need bodies above
/// `BODY_READ_BYTES_MIN`.
const BIG_MESSAGE_BYTES_MAX: usize = 64 * 1024;

fn big_config() -> SessionConfig {
    SessionConfig {
        message_bytes_max: BIG_MESSAGE_BYTES_MAX,
        ..config()
    }
}

/// `n_lines` lines of 98 octets plus CRLF, the first starting with a dot when
/// `dotted` (then one octet more on the wire).
fn filler(n_lines: usize, dotted: bool) -> (Vec<u8>, Vec<u8>) {
    let lines: Vec<Vec<u8>> = (0..n_lines)
        .map(|line_idx| {
            let mut line = vec![b'a' + (line_idx % 26) as u8; 98];
            if dotted && line_idx == 0 {
                line[0] = b'.';
            }
            line
        })
        .collect();
    stuffed(&lines)
}

/// Feeds `input` both ways, asserts they agree, and returns the run that read into the
/// body.
#[track_caller]
fn run_both_ways(config: SessionConfig, input: &[u8], cuts: &[usize]) -> TestSession {
    let message_bytes_max = config.message_bytes_max;
    let mut copying = TestSession::with_config(config.clone(), None);
    let mut direct = TestSession::reading_into_body(config);
    let mut start_idx = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let cut = cut.clamp(start_idx, input.len());
        copying.feed(&input[start_idx..cut]);
        direct.feed(&input[start_idx..cut]);
        start_idx = cut;
    }
    assert_eq!(direct.text(), copying.text());
    assert_eq!(direct.stored, copying.stored);
    assert_eq!(direct.ended, copying.ended);
    assert!(direct.session.body.capacity_bytes() <= message_bytes_max);
    direct
}

/// A body of `body_lines`, each ended with CRLF, and its DATA form (`data::dot_stuff`).
fn stuffed(body_lines: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>) {
    let mut original = Vec::new();
    for line in body_lines {
        original.extend_from_slice(line);
        original.extend_from_slice(b"\r\n");
    }
    let mut wire = Vec::new();
    dot_stuff(&original, &mut wire);
    (original, wire)
}

fn body_lines() -> impl Strategy<Value = Vec<Vec<u8>>> {
    proptest::collection::vec(
        proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'x'), any::<u8>()], 0..30)
            .prop_map(|line| {
                line.into_iter()
                    .filter(|&b| b != b'\r' && b != b'\n')
                    .collect()
            }),
        0..40,
    )
}

/// Pieces of SMTP streams, so random streams get past the command words.
const STREAM_PIECES: &[&[u8]] = &[
    b"EHLO c\r\n",
    b"MAIL FROM:<a@c.example>\r\n",
    b"RCPT TO:<u@example.test>\r\n",
    b"DATA\r\n",
    b"BDAT 3\r\n",
    b"BDAT 2 LAST\r\n",
    b".",
    b"\r\n",
    b"\r",
    b"\n",
    b"x",
    b"RSET\r\n",
    b"STARTTLS\r\n",
];

/// `--owned-partitions`: RCPT for an inbox of another node's partition is a temporary
/// `450 4.1.1` (a relay with an outdated map retries), and the transaction goes on with
/// the recipients this node serves.
#[test]
fn recipients_outside_the_owned_partitions_get_450() {
    let owned = crate::partition::PartitionSet::parse("a-h,other").unwrap();
    let mut test = TestSession::with_config(
        SessionConfig {
            owned_partitions: owned,
            ..config()
        },
        None,
    );
    test.feed(
        b"EHLO client.example\r\nMAIL FROM:<a@client.example>\r\nRCPT TO:<zed@example.test>\r\n\
          RCPT TO:<Bob@example.test>\r\nRCPT TO:<_x@example.test>\r\nDATA\r\nhi\r\n.\r\n",
    );
    assert_eq!(
        test.codes(),
        [250, 250, 450, 250, 250, 354, 250],
        "{}",
        test.text()
    );
    assert!(test.text().contains("450 4.1.1 "), "{}", test.text());
    assert_eq!(test.stored.len(), 1);
}
