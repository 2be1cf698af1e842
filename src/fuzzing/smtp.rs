//! The `smtp_session` target: `smtp::Session` fed as `net::smtp_conn` feeds it, with the
//! replies, the delivered transactions and the independence from the reads' sizes checked.

use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use crate::config::DomainPolicy;
use crate::fuzzing::{DOMAINS, Pieces, split_pieces, tail};
use crate::smtp::data::TEXT_LINE_BYTES_MAX;
use crate::smtp::parser::COMMAND_LINE_BYTES_MAX;
use crate::smtp::session::{
    BODY_CAPACITY_KEPT_BYTES, RECEIVED_LINE_BYTES_MAX, UNCONSUMED_BYTES_MAX,
};
use crate::smtp::{Delivery, Event, Session, SessionConfig, reply};

/// The hostname the SMTP harness's sessions use.
const SMTP_HOSTNAME: &str = "mx.example.test";
/// Recipients per transaction in the SMTP harness: small, so the limit is reached.
const SMTP_RECIPIENTS_MAX: usize = 3;
/// Small message limit: bodies over it are within reach of short fuzz inputs.
pub(super) const SMTP_MESSAGE_BYTES_SMALL_MAX: usize = 2_000;
/// Large message limit: bodies this big take the socket loop's read-into-body path.
pub(super) const SMTP_MESSAGE_BYTES_LARGE_MAX: usize = 160 * 1024;
/// The socket loop's read buffer (`net::smtp_conn::READ_BUFFER_BYTES`): reads that do not
/// go into the body are at most this big.
const SMTP_SOCKET_READ_BYTES: usize = 16 * 1024;
/// RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its CRLF.
const SMTP_REPLY_LINE_BYTES_MAX: usize = 512;
/// The clock the Received header is written with (2026-11-27 22:15:44 UTC).
const SMTP_NOW_UNIX_SECS: u64 = 1_795_817_744;
/// Queue ids the harness stores messages under: ordinary, long (truncated in the reply
/// and header) and multi-byte at the truncation point.
const SMTP_QUEUE_IDS: [&str; 3] = [
    "0123456789abcdef",
    "q-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
    "ééééééééééééééééééééééééééééééééééééééééé",
];
/// Tokens of the SMTP alphabet: byte `i < SMTP_TOKENS.len()` of an alphabet-mode input
/// stands for `SMTP_TOKENS[i]`, so the fuzzer reaches MAIL, RCPT, DATA and BDAT states
/// without first having to guess the command words (smtp-proto's fuzz target does the same
/// with its `into_alphabet`). Other bytes stand for themselves, except the expansions below.
const SMTP_TOKENS: [&[u8]; 32] = [
    b"\r\n",
    b"EHLO ",
    b"HELO ",
    b"MAIL FROM:<",
    b"RCPT TO:<",
    b"DATA",
    b"BDAT ",
    b" LAST",
    b"RSET",
    b"NOOP",
    b"QUIT",
    b"VRFY ",
    b"HELP",
    b"STARTTLS",
    b">",
    b"@",
    b"a@example.test",
    b"B@x.Sub.Example.Test",
    b"c@elsewhere.test",
    b"<postmaster>",
    b"client.example",
    b" SIZE=",
    b" BODY=8BITMIME",
    b" SMTPUTF8",
    b"\r\n.\r\n",
    b"\r\n..",
    b"\n",
    b"\r",
    b" ",
    b"100",
    b"20000",
    "ü@example.test".as_bytes(),
];
/// Alphabet byte for a text line of 998 octets plus CRLF: the longest a DATA line may be.
const SMTP_TOKEN_LONGEST_LINE: u8 = 0xF8;
/// Alphabet byte for a line one octet too long.
const SMTP_TOKEN_TOO_LONG_LINE: u8 = 0xF9;
/// Alphabet byte for a 4 KiB block of short lines, to reach big bodies.
const SMTP_TOKEN_BLOCK: u8 = 0xFA;
/// Bytes of `SMTP_TOKEN_BLOCK`.
const SMTP_BLOCK_BYTES: usize = 4096;

/// The SMTP session, fed as `net::smtp_conn` feeds it.
///
/// Layout: `data[0]` selects the options (bit 0: map the stream onto the SMTP alphabet;
/// bit 1: read body bytes straight into the session's body buffer when it offers room;
/// bit 2: STARTTLS offered; bit 3: TLS required; bit 4: the large message limit; bit 5: a
/// client IP in the Received header; bits 6-7: the first delivery outcome), then a chunking
/// prefix, then the client's bytes.
///
/// Checks the `advance` contract (consumed within the input, the remainder a partial line
/// under 512 bytes, body bytes never left over), the replies (CRLF lines with a 3-digit
/// code, at most 512 octets, multi-line replies consistent), every delivered transaction
/// (recipients within the limit and unique, body within the limit, a DATA body made only
/// of CRLF lines of at most 1000 octets, the Received header's lines within 998 octets),
/// and that the reads' sizes change nothing: the replies and messages equal those of one
/// run that gets the whole stream in one read (up to the first STARTTLS, after which a
/// client's next bytes depend on which read they were in).
pub fn smtp_session(data: &[u8]) {
    let Some((&options, rest)) = data.split_first() else {
        return;
    };
    let (cuts, stream) = split_pieces(rest);
    let stream = if options & 1 != 0 {
        smtp_alphabet(stream)
    } else {
        stream.to_vec()
    };
    let config = Rc::new(SessionConfig {
        hostname: SMTP_HOSTNAME.to_string(),
        message_bytes_max: if options & 0x10 != 0 {
            SMTP_MESSAGE_BYTES_LARGE_MAX
        } else {
            SMTP_MESSAGE_BYTES_SMALL_MAX
        },
        recipients_max: SMTP_RECIPIENTS_MAX,
        domains: DomainPolicy::new(&DOMAINS),
        starttls_available: options & 0x04 != 0,
        tls_required: options & 0x08 != 0,
        owned_partitions: crate::partition::PartitionSet::ALL,
    });
    let client_ip = (options & 0x20 != 0).then_some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let delivery_seed = usize::from(options >> 6);

    let mut split = SmtpDriver::new(config.clone(), client_ip, delivery_seed);
    split.read_into_body = options & 0x02 != 0;
    for piece in Pieces::new(&stream, cuts) {
        split.feed(piece);
    }
    split.check_replies();

    let mut whole = SmtpDriver::new(config, client_ip, delivery_seed);
    whole.feed(&stream);
    whole.check_replies();

    let (split_out, split_stored) = split.before_first_starttls();
    let (whole_out, whole_stored) = whole.before_first_starttls();
    assert_eq!(
        String::from_utf8_lossy(split_out),
        String::from_utf8_lossy(whole_out),
        "the reads' sizes changed the replies"
    );
    assert_eq!(
        split_stored, whole_stored,
        "the reads' sizes changed the stored messages"
    );
    if split.starttls_at.is_none() {
        assert_eq!(split.ended, whole.ended, "the reads' sizes changed the end");
    }
}

/// Maps fuzz bytes onto the SMTP alphabet (`SMTP_TOKENS` and the expansions).
fn smtp_alphabet(stream: &[u8]) -> Vec<u8> {
    let mut mapped = Vec::with_capacity(stream.len() * 4);
    for &byte in stream {
        match byte {
            SMTP_TOKEN_LONGEST_LINE => {
                mapped.resize(mapped.len() + TEXT_LINE_BYTES_MAX - 2, b'l');
                mapped.extend_from_slice(b"\r\n");
            }
            SMTP_TOKEN_TOO_LONG_LINE => {
                mapped.resize(mapped.len() + TEXT_LINE_BYTES_MAX - 1, b'L');
                mapped.extend_from_slice(b"\r\n");
            }
            SMTP_TOKEN_BLOCK => {
                // Lines of 63 octets and CRLF; one in eight starts with a dot (stuffed).
                for line_idx in 0..SMTP_BLOCK_BYTES / 64 {
                    mapped.push(if line_idx % 8 == 0 { b'.' } else { b'b' });
                    mapped.resize(mapped.len() + 61, b'b');
                    mapped.extend_from_slice(b"\r\n");
                }
            }
            byte => match SMTP_TOKENS.get(usize::from(byte)) {
                Some(token) => mapped.extend_from_slice(token),
                None => mapped.push(byte),
            },
        }
    }
    mapped
}

/// A message as the SMTP harness stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StoredMessage {
    mail_from: String,
    rcpts: Vec<String>,
    body: Vec<u8>,
    received: Vec<u8>,
}

/// Plays `net::smtp_conn`'s part for one session: buffers what `advance` leaves, stores
/// delivered messages, optionally reads bodies straight into the session, and records all
/// replies.
struct SmtpDriver {
    session: Session,
    config: Rc<SessionConfig>,
    /// Bytes read but not yet consumed (`buf[start..end]` in the socket loop).
    pending: Vec<u8>,
    out: Vec<u8>,
    stored: Vec<StoredMessage>,
    /// `Quit` or `Close` once the session ended the connection.
    ended: Option<Event>,
    read_into_body: bool,
    /// Picks the first delivery outcome; later ones rotate from it.
    delivery_seed: usize,
    n_deliveries: usize,
    /// Reply bytes and messages stored when the first STARTTLS was answered.
    starttls_at: Option<(usize, usize)>,
}

impl SmtpDriver {
    fn new(config: Rc<SessionConfig>, client_ip: Option<IpAddr>, delivery_seed: usize) -> Self {
        let session = Session::new(config.clone(), client_ip);
        let mut out = Vec::new();
        session.greeting(&mut out);
        SmtpDriver {
            session,
            config,
            pending: Vec::new(),
            out,
            stored: Vec::new(),
            ended: None,
            read_into_body: false,
            delivery_seed,
            n_deliveries: 0,
            starttls_at: None,
        }
    }

    /// One read's worth of bytes from the client, taken the way the socket loop takes them.
    fn feed(&mut self, piece: &[u8]) {
        // Bytes of this read still "in the socket".
        let mut unread = piece;
        while self.ended.is_none() {
            let (consumed, event) = self.session.advance(&self.pending, &mut self.out);
            assert!(
                consumed <= self.pending.len(),
                "consumed {consumed} of {}",
                self.pending.len()
            );
            self.pending.drain(..consumed);
            match event {
                Event::NeedInput => {
                    assert!(
                        self.pending.len() <= UNCONSUMED_BYTES_MAX,
                        "{} bytes left unconsumed",
                        self.pending.len()
                    );
                    assert!(self.pending.len() < COMMAND_LINE_BYTES_MAX);
                    if self.session.expects_data() {
                        assert!(self.pending.is_empty(), "body bytes left unconsumed");
                    }
                    if unread.is_empty() {
                        return;
                    }
                    unread = self.read(unread);
                }
                Event::Deliver => self.deliver(),
                Event::StartTls => {
                    assert!(self.config.starttls_available, "STARTTLS was not offered");
                    assert!(self.out.ends_with(reply::STARTTLS_READY));
                    self.starttls_at
                        .get_or_insert((self.out.len(), self.stored.len()));
                    // CVE-2011-0411: what came with the STARTTLS line is dropped; the
                    // client's next reads are its first inside TLS.
                    self.pending.clear();
                    unread = &[];
                    self.session
                        .tls_started("TLSv1.3", "TLS_AES_128_GCM_SHA256");
                    assert!(self.session.tls_active());
                }
                Event::Quit | Event::Close => self.ended = Some(event),
            }
        }
    }

    /// Reads from `unread` into the session's body buffer when it offers room and nothing
    /// is pending, else into `pending`; returns what is left unread.
    fn read<'a>(&mut self, unread: &'a [u8]) -> &'a [u8] {
        let body_buffer = if self.read_into_body && self.pending.is_empty() {
            self.session.body_read_buffer()
        } else {
            None
        };
        match body_buffer {
            Some(body_buffer) => {
                assert!(!body_buffer.is_empty(), "an empty body buffer was offered");
                let n_bytes = body_buffer.len().min(unread.len());
                body_buffer[..n_bytes].copy_from_slice(&unread[..n_bytes]);
                let rest = self.session.body_received(n_bytes);
                assert!(rest.len() <= n_bytes, "more came back than was read");
                self.pending.extend_from_slice(rest);
                &unread[n_bytes..]
            }
            None => {
                let n_bytes = if self.read_into_body {
                    unread.len().min(SMTP_SOCKET_READ_BYTES)
                } else {
                    unread.len()
                };
                self.pending.extend_from_slice(&unread[..n_bytes]);
                &unread[n_bytes..]
            }
        }
    }

    /// Stores the finished transaction after checking it, and answers it with the next
    /// delivery outcome (or, one time in five, does not answer: `advance` must then answer
    /// a temporary failure itself).
    fn deliver(&mut self) {
        let via_data = self.out.ends_with(reply::DATA_START);
        let transaction = self.session.transaction();
        let rcpts: Vec<String> = transaction.rcpts().map(str::to_string).collect();
        assert_eq!(rcpts.len(), transaction.n_rcpts());
        assert!(
            (1..=self.config.recipients_max).contains(&rcpts.len()),
            "{} recipients",
            rcpts.len()
        );
        for (rcpt_idx, rcpt) in rcpts.iter().enumerate() {
            assert!(!rcpt.is_empty() && !rcpt.contains(['\r', '\n']), "{rcpt:?}");
            assert!(
                !rcpts[..rcpt_idx]
                    .iter()
                    .any(|earlier| earlier.eq_ignore_ascii_case(rcpt)),
                "duplicate recipient {rcpt:?}"
            );
        }
        assert!(!transaction.mail_from.contains(['\r', '\n']));
        let body = transaction.body;
        assert!(
            body.len() <= self.config.message_bytes_max,
            "body over the limit"
        );
        if via_data {
            check_data_body(body);
        }
        let mut received = Vec::new();
        let queue_id = SMTP_QUEUE_IDS[self.n_deliveries % SMTP_QUEUE_IDS.len()];
        self.session.write_received_header(
            queue_id,
            UNIX_EPOCH + Duration::from_secs(SMTP_NOW_UNIX_SECS),
            &mut received,
        );
        check_received_header(&received);
        self.stored.push(StoredMessage {
            mail_from: transaction.mail_from.to_string(),
            rcpts,
            body: body.to_vec(),
            received,
        });
        let delivery = match (self.delivery_seed + self.n_deliveries) % 5 {
            0 | 1 => Some(Delivery::Stored { queue_id }),
            2 => Some(Delivery::TemporaryFailure),
            3 => Some(Delivery::TooLarge),
            _ => None,
        };
        self.n_deliveries += 1;
        if let Some(delivery) = delivery {
            self.session.delivered(delivery, &mut self.out);
            assert!(!self.session.in_transaction());
            self.session.shrink_body_buffer(BODY_CAPACITY_KEPT_BYTES);
        }
    }

    /// Replies and stored messages up to the first STARTTLS (all of them without one).
    fn before_first_starttls(&self) -> (&[u8], &[StoredMessage]) {
        match self.starttls_at {
            Some((n_out, n_stored)) => (&self.out[..n_out], &self.stored[..n_stored]),
            None => (&self.out, &self.stored),
        }
    }

    /// Every reply is a line of printable ASCII ending in CRLF, at most 512 octets, with a
    /// 3-digit code from 2xx to 5xx; a `-` continuation has the same code as what follows.
    fn check_replies(&self) {
        let Some(text) = self.out.strip_suffix(b"\r\n") else {
            panic!("replies do not end with CRLF: {:?}", tail(&self.out));
        };
        let mut continued_code: Option<&[u8]> = None;
        for line in text.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or_else(|| {
                // The last line's CRLF was stripped above.
                assert!(std::ptr::eq(
                    line.as_ptr_range().end,
                    text.as_ptr_range().end
                ));
                line
            });
            assert!(
                line.len() + 2 <= SMTP_REPLY_LINE_BYTES_MAX,
                "reply line of {} octets",
                line.len() + 2
            );
            assert!(
                line.iter().all(|&b| b == b' ' || b.is_ascii_graphic()),
                "reply line {:?}",
                String::from_utf8_lossy(line)
            );
            let (code, separator) = match line {
                [a, b, c, rest @ ..]
                    if (b'2'..=b'5').contains(a) && b.is_ascii_digit() && c.is_ascii_digit() =>
                {
                    (&line[..3], rest.first().copied())
                }
                _ => panic!("reply line {:?}", String::from_utf8_lossy(line)),
            };
            if let Some(previous) = continued_code {
                assert_eq!(previous, code, "multi-line reply changes its code");
            }
            continued_code = match separator {
                Some(b'-') => Some(code),
                Some(b' ') | None => None,
                Some(other) => panic!("reply separator {other:?}"),
            };
        }
        assert!(continued_code.is_none(), "multi-line reply never ended");
    }
}

/// A body that came through DATA: empty or CRLF lines (no bare CR or LF), each at most
/// `TEXT_LINE_BYTES_MAX` octets, and no line that is a lone dot's unstuffed twin is lost.
fn check_data_body(body: &[u8]) {
    if body.is_empty() {
        return;
    }
    assert!(body.ends_with(b"\r\n"), "DATA body ends mid-line");
    let mut line_start_idx = 0;
    for (idx, &byte) in body.iter().enumerate() {
        match byte {
            b'\r' => assert_eq!(body.get(idx + 1), Some(&b'\n'), "bare CR at {idx}"),
            b'\n' => {
                assert!(idx > 0 && body[idx - 1] == b'\r', "bare LF at {idx}");
                assert!(
                    idx + 1 - line_start_idx <= TEXT_LINE_BYTES_MAX,
                    "line of {} octets",
                    idx + 1 - line_start_idx
                );
                line_start_idx = idx + 1;
            }
            _ => {}
        }
    }
}

/// Our Received header: two CRLF lines, the second folded with a tab, each within
/// `RECEIVED_LINE_BYTES_MAX` octets, no control bytes besides.
fn check_received_header(header: &[u8]) {
    let text = header
        .strip_suffix(b"\r\n")
        .expect("Received header ends with CRLF");
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    assert_eq!(lines.len(), 2, "Received header of {} lines", lines.len());
    assert!(lines[0].starts_with(b"Received: from "));
    assert!(lines[1].starts_with(b"\tid "));
    for (line_idx, line) in lines.iter().enumerate() {
        let line = if line_idx == 0 {
            line.strip_suffix(b"\r").expect("CRLF between the lines")
        } else {
            line
        };
        assert!(
            line.len() <= RECEIVED_LINE_BYTES_MAX,
            "Received line too long"
        );
        assert!(
            line.iter()
                .enumerate()
                .all(|(idx, &b)| !b.is_ascii_control() || (b == b'\t' && idx == 0)),
            "control byte in the Received header: {:?}",
            String::from_utf8_lossy(line)
        );
    }
}
