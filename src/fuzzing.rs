//! Fuzz harnesses: one function per fuzz target, each taking the fuzzer's bytes.
//!
//! They live in the library (not in `tests/fuzz/`) so that the same code runs under the
//! fuzzer (`tests/fuzz/fuzz_targets/*.rs`, libFuzzer through cargo-fuzz) and under plain
//! `cargo test` (`tests/fuzz_corpus.rs` replays the committed corpus), with no fuzzer
//! installed. Each harness drives the real code the way the socket loops in `net` drive it
//! and checks the contracts those loops rely on with assertions; "does not panic" is only
//! the least of them. An assertion that fails is a finding: `docs/fuzzing.md` says how to
//! keep its input as a regression.
//!
//! Input layout: most harnesses read a *chunking prefix* first (`split_pieces`): one byte
//! says how many cut bytes follow, and each cut byte is the length of one read. The rest is
//! the byte stream a client sends, cut into reads of those lengths in turn. So the fuzzer
//! controls both what is sent and how it is split, and every harness compares the split
//! run against a run that gets the whole stream at once (or against a naive model).
//!
//! Not part of the API: hidden from the docs, and its asserts are meant to fire.

use std::cell::RefCell;
use std::io::{Cursor, Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, UNIX_EPOCH};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::tungstenite::{self, Message};
use futures_util::StreamExt;

use crate::address::InboxKey;
use crate::config::DomainPolicy;
use crate::http::api::{self, Route};
use crate::http::request::{self, Limits, Request};
use crate::http::response::Response;
use crate::smtp::data::{BodyBuffer, DataScanner, Refusal, TEXT_LINE_BYTES_MAX};
use crate::smtp::parser::COMMAND_LINE_BYTES_MAX;
use crate::smtp::session::{
    BODY_CAPACITY_KEPT_BYTES, RECEIVED_LINE_BYTES_MAX, UNCONSUMED_BYTES_MAX,
};
use crate::smtp::{Delivery, Event, Session, SessionConfig, reply};

/// Most cut bytes a chunking prefix may hold; the pieces cycle through them.
const CUTS_MAX: usize = 16;
/// A cut byte at or above this is a long read: `(cut - CUT_LONG_FROM + 1) * CUT_LONG_UNIT_BYTES`.
const CUT_LONG_FROM: u8 = 0xF0;
/// Unit of a long read, so a short fuzz input can still cut big bodies into big reads.
const CUT_LONG_UNIT_BYTES: usize = 4096;

/// The hostname the SMTP harness's sessions use.
const SMTP_HOSTNAME: &str = "mx.example.test";
/// Domains the harnesses accept mail for (a wildcard too, so both kinds of rule are hit).
const DOMAINS: [&str; 2] = ["example.test", "*.sub.example.test"];
/// Recipients per transaction in the SMTP harness: small, so the limit is reached.
const SMTP_RECIPIENTS_MAX: usize = 3;
/// Small message limit: bodies over it are within reach of short fuzz inputs.
const SMTP_MESSAGE_BYTES_SMALL_MAX: usize = 2_000;
/// Large message limit: bodies this big take the socket loop's read-into-body path.
const SMTP_MESSAGE_BYTES_LARGE_MAX: usize = 160 * 1024;
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

/// The HTTP server's request limits.
pub const HTTP_LIMITS: Limits = crate::net::http_conn::LIMITS;
/// Inputs up to this long are parsed at every split; longer ones at a sample of splits
/// (every split of a 4 KiB input would make the fuzzer 40 times slower).
const HTTP_EVERY_SPLIT_BYTES_MAX: usize = 512;
/// Splits tried on longer inputs, spread evenly, besides those around the request's end.
const HTTP_SAMPLED_SPLITS: usize = 48;

/// The WebSocket read buffer.
const WS_READ_BUFFER_BYTES: usize = crate::net::ws_conn::READ_BUFFER_BYTES;
/// The largest message or frame a client may send.
const WS_CLIENT_MESSAGE_BYTES_MAX: usize = crate::net::ws_conn::CLIENT_MESSAGE_BYTES_MAX;
/// A summary the harness pushes through the socket, as the writer half of `ws_conn` does.
const WS_SUMMARY: &str = r#"{"id":"0000000000000001","from":"a@example.test","subject":"hi"}"#;
/// Longest frame header the server writes for a summary (2 bytes up to 125 bytes of
/// payload, 4 up to 64 KiB).
const WS_SERVER_HEADER_BYTES_MAX: usize = 4;
/// Longest close frame: 2 header bytes and at most 125 bytes of payload. The server may
/// answer a client's close with a longer one (a bad close code becomes 1002 "Protocol
/// violation"), once.
const WS_CLOSE_FRAME_BYTES_MAX: usize = 127;
/// Summaries pushed at most per run.
const WS_SUMMARIES_MAX: usize = 8;
/// Polls of one future before the harness calls it stalled. The in-memory stream is never
/// pending, so a future that is pending at all is stuck; a few polls allow for yields.
const WS_POLLS_MAX: usize = 64;
/// Longest payload of a frame the frame builder makes (0xF0.. lengths reach past the cap).
const WS_BUILT_PAYLOAD_UNIT_BYTES: usize = 1024;
/// Inboxes the handshake check tries, by index byte.
const WS_ADDRESSES: [&str; 5] = [
    "a@example.test",
    "B@X.sub.example.test",
    "c@elsewhere.test",
    "%C3%BC@example.test",
    "d%40e@example.test",
];

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

/// The DATA scanner, on any bytes and any chunking, against a naive model; and the
/// dot-stuffing round trip.
///
/// Layout: `data[0]` selects the options (bit 0: the large body limit; bit 1: let the body
/// buffer grow for in-place reads), then a chunking prefix, then the raw body stream.
///
/// Checks: the copying path (`DataScanner::scan`) and the in-place path (`BodyBuffer` +
/// `scan_read`, falling back to copying when it offers no room, as the session does) each
/// agree with `scan_model` on where the data ends, whether the message is refused and why,
/// and the unstuffed body. Then it derives a valid body from the same bytes (CRLF lines of
/// legal length), dot-stuffs it, appends the terminator and some trailing bytes, and checks
/// that both paths give the body back exactly and stop right after the terminator.
pub fn data_scanner(data: &[u8]) {
    let Some((&options, rest)) = data.split_first() else {
        return;
    };
    let (cuts, raw) = split_pieces(rest);
    let body_bytes_max = if options & 1 != 0 {
        SMTP_MESSAGE_BYTES_LARGE_MAX
    } else {
        SMTP_MESSAGE_BYTES_SMALL_MAX
    };
    let grow = options & 2 != 0;

    let expected = scan_model(raw, body_bytes_max);
    assert_eq!(
        scan_copying(raw, cuts, body_bytes_max),
        expected,
        "copying scan differs from the model"
    );
    assert_eq!(
        scan_in_place(raw, cuts, body_bytes_max, grow),
        expected,
        "in-place scan differs from the model"
    );

    let body = valid_body(raw);
    let mut stuffed = Vec::with_capacity(body.len() + 16);
    dot_stuff(&body, &mut stuffed);
    let n_stuffed = stuffed.len();
    stuffed.extend_from_slice(b".\r\n");
    // What follows the terminator (pipelined commands) must be left alone.
    stuffed.extend_from_slice(b"QUIT\r\n");
    let outcome = if body.len() > body_bytes_max {
        Err(Refusal::TooBig)
    } else {
        Ok(body)
    };
    let expected = ScanOutcome {
        n_consumed: n_stuffed + 3,
        finished: Some(outcome),
    };
    assert_eq!(
        scan_copying(&stuffed, cuts, body_bytes_max),
        expected,
        "stuffed body did not come back (copying)"
    );
    assert_eq!(
        scan_in_place(&stuffed, cuts, body_bytes_max, grow),
        expected,
        "stuffed body did not come back (in place)"
    );
}

/// The HTTP request parser and the router, as `net::http_conn` uses them.
///
/// The input is the client's byte stream (no options). Checks: no split of the stream
/// changes the outcome (a prefix of a complete request needs more bytes; a prefix of a
/// refused stream needs more bytes or is refused with the same status), the consumed count
/// is within the input and re-parsing exactly the consumed bytes gives the same request,
/// pipelined requests are taken one after another; then every request is routed under a
/// configured domain list and a catch-all policy, and every response (routing errors and
/// parse errors) serialises into a head that parses back with the same status and a
/// `Content-Length` that matches the body. Routed inboxes are accepted domains in
/// canonical form, and a WebSocket route's accept value is the one RFC 6455 derives.
pub fn http_request(data: &[u8]) {
    let policies = [DomainPolicy::new(&DOMAINS), DomainPolicy::new::<&str>(&[])];
    let mut buf = data;
    // Each round consumes at least one byte (a request is never empty), so this ends.
    loop {
        let whole = request::parse(buf, &HTTP_LIMITS);
        check_http_splits(buf, &whole);
        match whole {
            Ok(Some((request, consumed))) => {
                assert!(consumed > 0 && consumed <= buf.len(), "consumed {consumed}");
                let again = request::parse(&buf[..consumed], &HTTP_LIMITS);
                assert_eq!(
                    again,
                    Ok(Some((request.clone(), consumed))),
                    "the consumed bytes alone parse differently"
                );
                for policy in &policies {
                    check_route(&request, policy);
                }
                buf = &buf[consumed..];
            }
            Ok(None) => {
                assert!(
                    buf.len() <= HTTP_LIMITS.head_bytes_max + HTTP_LIMITS.body_bytes_max,
                    "{} bytes buffered without a verdict",
                    buf.len()
                );
                return;
            }
            Err(response) => {
                assert!(
                    matches!(response.status, 400 | 413 | 414 | 431 | 501 | 505),
                    "parse answered {}",
                    response.status
                );
                check_response(&response);
                return;
            }
        }
    }
}

/// What a hostile client can do to an upgraded WebSocket: frames through the server's
/// tungstenite configuration, and the handshake's validation by `http::api::route`.
///
/// Layout: `data[0]` selects the options (bit 0: build well-formed masked frames from the
/// stream instead of sending it raw; bits 1-3: after how many received messages the
/// harness pushes a summary, 0 for never), `data[1]` the first read's size (the bytes that
/// came with the HTTP request, handed over as `leftover`), `data[2..6]` drive the handshake
/// check (`websocket_handshake`), then a chunking prefix and the stream.
///
/// Checks: the socket ends once the stream does (no stall, no endless loop), no message
/// over the cap is ever delivered, the server writes no more than the client sent plus
/// what the harness pushed (pongs echo pings, never amplify them), and everything it wrote
/// reads back as valid unmasked server frames: pongs that echo pings, the pushed summaries
/// in order, and at most one close frame, last.
pub fn websocket(data: &[u8]) {
    let [options, first_read, h0, h1, h2, h3, rest @ ..] = data else {
        return;
    };
    websocket_handshake([*h0, *h1, *h2, *h3], rest);
    let (cuts, stream) = split_pieces(rest);
    let stream = if options & 1 != 0 {
        ws_frames(stream)
    } else {
        stream.to_vec()
    };
    let push_every = usize::from((options >> 1) & 0x07);
    let leftover_bytes = usize::from(*first_read).min(stream.len());
    let (leftover, after) = stream.split_at(leftover_bytes);
    let written = Rc::new(RefCell::new(Vec::new()));
    let duplex = Duplex {
        pieces: Pieces::new(after, cuts).map(<[u8]>::to_vec).collect(),
        piece_idx: 0,
        piece_offset: 0,
        written: written.clone(),
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .max_message_size(Some(WS_CLIENT_MESSAGE_BYTES_MAX))
        .max_frame_size(Some(WS_CLIENT_MESSAGE_BYTES_MAX));
    let socket = poll_to_end(WebSocketStream::from_partially_read(
        duplex,
        leftover.to_vec(),
        Role::Server,
        Some(config),
    ));
    // Split as `ws_conn` does; here one task uses both halves in turn.
    let (mut sink, mut source) = socket.split();
    let mut pings: Vec<Vec<u8>> = Vec::new();
    let mut n_messages = 0usize;
    let mut n_pushed = 0usize;
    // Every message takes at least two bytes of the stream, so this ends; the bound makes
    // a regression an assertion rather than a hang.
    let n_messages_max = stream.len() / 2 + 1;
    while let Some(message) = poll_to_end(source.next()) {
        let Ok(message) = message else {
            break;
        };
        n_messages += 1;
        assert!(n_messages <= n_messages_max, "messages out of nothing");
        match &message {
            Message::Text(text) => assert!(text.len() <= WS_CLIENT_MESSAGE_BYTES_MAX),
            Message::Binary(bytes) => assert!(bytes.len() <= WS_CLIENT_MESSAGE_BYTES_MAX),
            Message::Ping(payload) => pings.push(payload.to_vec()),
            Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {}
        }
        if push_every != 0 && n_messages.is_multiple_of(push_every) && n_pushed < WS_SUMMARIES_MAX {
            if poll_to_end(sink.send(Message::text(WS_SUMMARY))).is_err() {
                break;
            }
            n_pushed += 1;
        }
    }
    drop((sink, source));
    let written = written.borrow();
    assert!(
        written.len()
            <= stream.len()
                + WS_CLOSE_FRAME_BYTES_MAX
                + n_pushed * (WS_SUMMARY.len() + WS_SERVER_HEADER_BYTES_MAX),
        "the server wrote {} bytes for {} received",
        written.len(),
        stream.len()
    );
    check_server_frames(&written, &pings, n_pushed);
}

/// Checks the WebSocket handshake's validation for `GET /api/v1/inboxes/{address}/ws`.
///
/// `picks`: the inbox (`picks[0]`), how many bytes of `text` make the key (`picks[1]`) and
/// the version (`picks[2]`), and which header fields to leave out (`picks[3]`). The request
/// is built as a client would send it and goes through `request::parse` and `api::route`.
/// Checks: the route is a WebSocket exactly when the method, upgrade fields, version `13`,
/// a 16-byte base64 key and an accepted inbox are all there; its accept value is RFC 6455's
/// derivation of the key; refusals are 426 (no upgrade, or another version, with the
/// headers that say which), 400 (bad key) or 404 (inbox not served).
fn websocket_handshake(picks: [u8; 4], text: &[u8]) {
    let address = WS_ADDRESSES[usize::from(picks[0]) % WS_ADDRESSES.len()];
    let key_bytes = usize::from(picks[1] % 32).min(text.len());
    let (key, text) = text.split_at(key_bytes);
    let version_bytes = usize::from(picks[2] % 4).min(text.len());
    let version = if picks[2] & 0x80 != 0 {
        b"13".as_slice()
    } else {
        &text[..version_bytes]
    };
    let key = if picks[1] & 0x80 != 0 {
        b"dGhlIHNhbXBsZSBub25jZQ==".as_slice()
    } else {
        key
    };
    // A CR or LF would end the field and smuggle in others: a different request than the
    // one the checks below model (the HTTP harness covers such heads).
    let key: Vec<u8> = key
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    let version: Vec<u8> = version
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    let (key, version) = (key.as_slice(), version.as_slice());
    let omit = picks[3];
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(if omit & 0x10 != 0 { b"POST" } else { b"GET" });
    head.extend_from_slice(b" /api/v1/inboxes/");
    head.extend_from_slice(address.as_bytes());
    head.extend_from_slice(b"/ws HTTP/1.1\r\nHost: mail.example.test\r\n");
    if omit & 0x01 == 0 {
        head.extend_from_slice(b"Upgrade: websocket\r\n");
    }
    if omit & 0x02 == 0 {
        head.extend_from_slice(b"Connection: keep-alive, Upgrade\r\n");
    }
    if omit & 0x04 == 0 {
        head.extend_from_slice(b"Sec-WebSocket-Key: ");
        head.extend_from_slice(key);
        head.extend_from_slice(b"\r\n");
    }
    if omit & 0x08 == 0 {
        head.extend_from_slice(b"Sec-WebSocket-Version: ");
        head.extend_from_slice(version);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");

    let request = match request::parse(&head, &HTTP_LIMITS) {
        Ok(Some((request, consumed))) => {
            assert_eq!(consumed, head.len(), "the handshake was not taken whole");
            request
        }
        // Control bytes in the key or version make the head malformed; nothing to route.
        Err(response) => {
            assert_eq!(response.status, 400, "handshake head refused");
            return;
        }
        Ok(None) => panic!("a complete handshake head needs more bytes"),
    };
    let policy = DomainPolicy::new(&DOMAINS);
    let routed = api::route(&request, &policy);
    let is_get = omit & 0x10 == 0;
    let is_upgrade = omit & 0x03 == 0;
    let sent_version: &[u8] = if omit & 0x08 == 0 { version } else { b"" };
    let sent_key: &[u8] = if omit & 0x04 == 0 { key } else { b"" };
    let served = InboxKey::new(&percent_decoded(address))
        .ok()
        .is_some_and(|inbox| inbox.domain().is_some_and(|domain| policy.accepts(domain)));
    match routed {
        Ok(Route::WebSocket { key: inbox, accept }) => {
            assert!(is_get && is_upgrade && served, "routed {request:?}");
            assert_eq!(sent_version.trim_ascii(), b"13");
            let sent_key = sent_key.trim_ascii();
            assert!(is_base64_16(sent_key), "accepted key {sent_key:?}");
            assert_eq!(accept, derive_accept_key(sent_key));
            assert_eq!(inbox.as_str(), percent_decoded(address).to_lowercase());
        }
        Ok(other) => panic!("the ws path routed to {other:?}"),
        Err(response) => {
            check_response(&response);
            let expected = if !is_get {
                405
            } else if !served {
                404
            } else if !is_upgrade || sent_version.trim_ascii() != b"13" {
                426
            } else {
                assert!(!is_base64_16(sent_key.trim_ascii()), "refused a good key");
                400
            };
            assert_eq!(response.status, expected, "for {request:?}");
            if expected == 426 {
                assert!(has_header(&response, "Upgrade", "websocket"));
                assert!(has_header(&response, "Sec-WebSocket-Version", "13"));
            }
        }
    }
}

/// A Sec-WebSocket-Key: 16 bytes in base64 (22 characters of the alphabet and `==`).
fn is_base64_16(key: &[u8]) -> bool {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    key.len() == 24 && key.ends_with(b"==") && key[..22].iter().all(|b| ALPHABET.contains(b))
}

/// `%XX` escapes of an address path segment decoded (the addresses in `WS_ADDRESSES` are
/// valid UTF-8 when decoded).
fn percent_decoded(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut idx = 0;
    while idx < bytes.len() {
        let hex = bytes
            .get(idx + 1..idx + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[idx], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                idx += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                idx += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn has_header(response: &Response, name: &str, value: &str) -> bool {
    response
        .headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case(name) && v == value)
}

/// Splits a chunking prefix off `data`: its first byte says how many cut bytes follow
/// (modulo `CUTS_MAX + 1`). Returns the cuts and the stream.
fn split_pieces(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((&n_cuts, rest)) = data.split_first() else {
        return (&[], &[]);
    };
    let n_cuts = (usize::from(n_cuts) % (CUTS_MAX + 1)).min(rest.len());
    rest.split_at(n_cuts)
}

/// The length of the read a cut byte stands for.
fn piece_bytes(cut: u8) -> usize {
    if cut < CUT_LONG_FROM {
        usize::from(cut) + 1
    } else {
        usize::from(cut - CUT_LONG_FROM + 1) * CUT_LONG_UNIT_BYTES
    }
}

/// The stream cut into reads whose lengths cycle through the cuts; no cuts, one read.
struct Pieces<'a> {
    rest: &'a [u8],
    cuts: &'a [u8],
    cut_idx: usize,
}

impl<'a> Pieces<'a> {
    fn new(stream: &'a [u8], cuts: &'a [u8]) -> Pieces<'a> {
        Pieces {
            rest: stream,
            cuts,
            cut_idx: 0,
        }
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let piece_len = match self.cuts {
            [] => self.rest.len(),
            cuts => piece_bytes(cuts[self.cut_idx % cuts.len()]).min(self.rest.len()),
        };
        self.cut_idx += 1;
        let (piece, rest) = self.rest.split_at(piece_len);
        self.rest = rest;
        Some(piece)
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

/// At most the last 80 bytes, for a panic message.
fn tail(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(80)..]).into_owned()
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

/// What scanning a raw DATA stream gave: the bytes consumed, and for a stream with its
/// terminator the body or why it is refused (`None` without the terminator).
#[derive(Debug, PartialEq, Eq)]
struct ScanOutcome {
    n_consumed: usize,
    finished: Option<Result<Vec<u8>, Refusal>>,
}

/// The naive model of the DATA scanner, written from RFC 5321 and `smtp::data`'s module
/// documentation rather than from its code: lines end only at CRLF; the data ends at the
/// first line that is exactly `.`; a leading dot is removed from any other line; a CR or LF
/// that is not part of a CRLF refuses the message, then a line over 1000 octets (as sent,
/// CRLF included), then a body over the limit.
fn scan_model(raw: &[u8], body_bytes_max: usize) -> ScanOutcome {
    let mut body_bytes = 0usize;
    let mut body = Vec::new();
    let (mut bare_newline, mut line_too_long) = (false, false);
    let mut line_start_idx = 0;
    loop {
        let line = &raw[line_start_idx..];
        let Some(text_len) = line.windows(2).position(|pair| pair == b"\r\n") else {
            return ScanOutcome {
                n_consumed: raw.len(),
                finished: None,
            };
        };
        let text = &line[..text_len];
        if text == b"." {
            let outcome = if bare_newline {
                Err(Refusal::BareNewline)
            } else if line_too_long {
                Err(Refusal::LineTooLong)
            } else if body_bytes > body_bytes_max {
                Err(Refusal::TooBig)
            } else {
                Ok(body)
            };
            return ScanOutcome {
                n_consumed: line_start_idx + 3,
                finished: Some(outcome),
            };
        }
        bare_newline |= text.contains(&b'\r') || text.contains(&b'\n');
        line_too_long |= text_len + 2 > TEXT_LINE_BYTES_MAX;
        let kept = text.strip_prefix(b".").unwrap_or(text);
        body_bytes += kept.len() + 2;
        body.extend_from_slice(kept);
        body.extend_from_slice(b"\r\n");
        line_start_idx += text_len + 2;
    }
}

/// Scans `raw` read by read with `DataScanner::scan` into a `Vec`.
fn scan_copying(raw: &[u8], cuts: &[u8], body_bytes_max: usize) -> ScanOutcome {
    let mut scanner = DataScanner::new();
    let mut body: Vec<u8> = Vec::new();
    let mut n_consumed = 0;
    for piece in Pieces::new(raw, cuts) {
        let (n_bytes, finished) = scanner.scan(piece, &mut body, body_bytes_max);
        assert!(n_bytes <= piece.len());
        assert!(body.len() <= body_bytes_max, "body grew past the limit");
        assert!(
            body.capacity() <= body_bytes_max.max(body.len()),
            "reserved past the limit"
        );
        n_consumed += n_bytes;
        if finished {
            return finished_scan(&scanner, n_consumed, body);
        }
        assert_eq!(n_bytes, piece.len(), "stopped short without the terminator");
    }
    ScanOutcome {
        n_consumed,
        finished: None,
    }
}

/// Scans `raw` read by read the way the session does for big bodies: into the room
/// `BodyBuffer::spare_mut` offers, unstuffed in place by `scan_read`, and through the
/// copying path when it offers none.
fn scan_in_place(raw: &[u8], cuts: &[u8], body_bytes_max: usize, grow: bool) -> ScanOutcome {
    let mut scanner = DataScanner::new();
    let mut body = BodyBuffer::new();
    let mut n_consumed = 0;
    for piece in Pieces::new(raw, cuts) {
        let mut unread = piece;
        while !unread.is_empty() {
            let (n_read, n_rest, finished) =
                match body.spare_mut(1, unread.len(), body_bytes_max, grow) {
                    Some(room) => {
                        let n_read = room.len().min(unread.len());
                        room[..n_read].copy_from_slice(&unread[..n_read]);
                        let (finished, rest) = body.scan_read(&mut scanner, n_read, body_bytes_max);
                        (n_read, rest.len(), finished)
                    }
                    None => {
                        let (n_bytes, finished) = scanner.scan(unread, &mut body, body_bytes_max);
                        (unread.len(), unread.len() - n_bytes, finished)
                    }
                };
            assert!(n_rest <= n_read);
            assert!(body.len() <= body_bytes_max, "body grew past the limit");
            assert!(
                body.capacity_bytes() <= body_bytes_max,
                "buffer grew past the limit"
            );
            n_consumed += n_read - n_rest;
            if finished {
                return finished_scan(&scanner, n_consumed, body.as_slice().to_vec());
            }
            assert_eq!(n_rest, 0, "bytes left over without the terminator");
            unread = &unread[n_read..];
        }
    }
    ScanOutcome {
        n_consumed,
        finished: None,
    }
}

fn finished_scan(scanner: &DataScanner, n_consumed: usize, body: Vec<u8>) -> ScanOutcome {
    ScanOutcome {
        n_consumed,
        finished: Some(match scanner.refusal() {
            Some(refusal) => Err(refusal),
            None => Ok(body),
        }),
    }
}

/// A body any client could send from `raw`: its LF-separated lines without CRs, each cut
/// so that it stays within the line limit once stuffed, joined and ended by CRLF.
fn valid_body(raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(raw.len() + raw.len() / 8);
    if raw.is_empty() {
        return body;
    }
    for line in raw.split(|&b| b == b'\n') {
        let start_len = body.len();
        body.extend(line.iter().copied().filter(|&b| b != b'\r'));
        // Room for a stuffing dot and the CRLF.
        body.truncate(start_len + (body.len() - start_len).min(TEXT_LINE_BYTES_MAX - 3));
        body.extend_from_slice(b"\r\n");
    }
    body
}

/// Dot-stuffing (RFC 5321 4.5.2) as a client does it: a dot starting a line is doubled.
/// `body` is empty or CRLF lines.
fn dot_stuff(body: &[u8], out: &mut Vec<u8>) {
    let mut line_start = true;
    for &byte in body {
        if line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        line_start = byte == b'\n';
    }
}

/// Every split of `buf` parses to "need more", or to the whole's verdict; see `http_request`.
fn check_http_splits(buf: &[u8], whole: &Result<Option<(Request, usize)>, Response>) {
    let check = |split_len: usize| {
        let prefix = &buf[..split_len];
        match (request::parse(prefix, &HTTP_LIMITS), whole) {
            (Ok(None), _) => {}
            (Ok(Some(early)), Ok(Some(late))) => {
                assert_eq!(&early, late, "a prefix of {split_len} parsed differently")
            }
            (Err(early), Err(late)) => assert_eq!(
                early.status, late.status,
                "a prefix of {split_len} was refused differently"
            ),
            (early, late) => panic!("a prefix of {split_len} gave {early:?}, the whole {late:?}"),
        }
    };
    if buf.len() <= HTTP_EVERY_SPLIT_BYTES_MAX {
        (0..buf.len()).for_each(check);
        return;
    }
    let step = buf.len() / HTTP_SAMPLED_SPLITS;
    (0..buf.len()).step_by(step.max(1)).for_each(check);
    // Around the end of the head and of the request, where the verdicts change.
    let head_end = buf
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map_or(buf.len(), |idx| idx + 4);
    let request_end = match whole {
        Ok(Some((_, consumed))) => *consumed,
        _ => buf.len(),
    };
    for end in [head_end, request_end, HTTP_LIMITS.head_bytes_max] {
        (end.saturating_sub(2)..(end + 2).min(buf.len())).for_each(check);
    }
}

/// Routes `request` under `policy` and checks the route or the refusal.
fn check_route(request: &Request, policy: &DomainPolicy) {
    let routed = api::route(request, policy);
    let route = match routed {
        Ok(route) => route,
        Err(response) => {
            assert!(
                matches!(response.status, 400 | 404 | 405 | 426),
                "routing answered {}",
                response.status
            );
            if response.status == 405 {
                assert!(response.headers.iter().any(|(name, _)| *name == "Allow"));
            }
            check_response(&response);
            return;
        }
    };
    let check_key = |key: &InboxKey<'_>| {
        let again = InboxKey::new(key.as_str()).expect("a routed inbox is a valid key");
        assert_eq!(
            again.as_str(),
            key.as_str(),
            "a routed inbox is not canonical"
        );
        let (local_part, domain) = key
            .as_str()
            .rsplit_once('@')
            .expect("a routed inbox has a domain");
        assert!(!local_part.is_empty(), "routed an empty local part");
        assert!(policy.accepts(domain), "routed to unserved {domain:?}");
    };
    match route {
        Route::Inbox(inbox) => check_key(&inbox.key),
        Route::WebSocket { key, accept } => {
            check_key(&key);
            let upgrade = request.websocket.as_ref().expect("a WebSocket route");
            assert_eq!(upgrade.version, "13");
            assert!(
                is_base64_16(upgrade.key.as_bytes()),
                "accepted {:?}",
                upgrade.key
            );
            assert_eq!(accept, derive_accept_key(upgrade.key.as_bytes()));
        }
        Route::CreateAddress { domain } => {
            if let Some(domain) = domain {
                assert_eq!(domain, domain.to_lowercase());
                assert!(policy.accepts(&domain), "address at unserved {domain:?}");
            }
        }
        Route::Asset(_) | Route::Healthz | Route::Metrics => {}
    }
}

/// A response serialises into a head that parses back: same status, one `Content-Length`
/// matching the body, no control bytes in any header value.
fn check_response(response: &Response) {
    for head_only in [false, true] {
        let mut out = Vec::new();
        response.write_to(true, head_only, &mut out);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Response::new(&mut headers);
        let head_bytes = match parsed.parse(&out) {
            Ok(httparse::Status::Complete(head_bytes)) => head_bytes,
            other => panic!("response head does not parse: {other:?}"),
        };
        assert_eq!(parsed.code, Some(response.status));
        let lengths: Vec<&[u8]> = parsed
            .headers
            .iter()
            .filter(|header| header.name.eq_ignore_ascii_case("content-length"))
            .map(|header| header.value)
            .collect();
        assert_eq!(lengths, [response.body.len().to_string().as_bytes()]);
        for header in parsed.headers.iter() {
            assert!(
                !header.value.iter().any(u8::is_ascii_control),
                "control byte in {}",
                header.name
            );
        }
        let expected_body: &[u8] = if head_only { &[] } else { &response.body };
        assert_eq!(&out[head_bytes..], expected_body);
    }
}

/// Builds client frames from fuzz bytes, so the fuzzer spends its time past the framing:
/// each frame takes a spec byte (bit 7 FIN, bits 4-6 RSV when bit 3 is set, low 3 bits an
/// opcode from a table that includes reserved ones), a length byte (0..0xF0 is that many
/// bytes, above it whole units of `WS_BUILT_PAYLOAD_UNIT_BYTES`, past the cap), four mask
/// bytes, then the payload from the stream (zeros when it runs out). Frames are masked
/// except when spec bit 3 and the length byte's low bit are both set.
fn ws_frames(stream: &[u8]) -> Vec<u8> {
    const OPCODES: [u8; 8] = [0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3, 0xB];
    let mut frames = Vec::with_capacity(stream.len() * 2);
    let mut rest = stream;
    while let [spec, length, ..] = *rest {
        rest = &rest[2..];
        let payload_bytes = if length < 0xF0 {
            usize::from(length)
        } else {
            usize::from(length - 0xEF) * WS_BUILT_PAYLOAD_UNIT_BYTES
        };
        let odd = spec & 0x08 != 0;
        let masked = !(odd && length & 1 != 0);
        let mut first = (spec & 0x80) | OPCODES[usize::from(spec & 0x07)];
        if odd {
            first |= spec & 0x70;
        }
        frames.push(first);
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload_bytes {
            0..=125 => frames.push(mask_bit | payload_bytes as u8),
            126..=0xFFFF => {
                frames.push(mask_bit | 126);
                frames.extend_from_slice(&(payload_bytes as u16).to_be_bytes());
            }
            _ => {
                frames.push(mask_bit | 127);
                frames.extend_from_slice(&(payload_bytes as u64).to_be_bytes());
            }
        }
        let mut mask_key = [0u8; 4];
        let n_mask = rest.len().min(4);
        mask_key[..n_mask].copy_from_slice(&rest[..n_mask]);
        rest = &rest[n_mask..];
        if masked {
            frames.extend_from_slice(&mask_key);
        }
        let n_payload = rest.len().min(payload_bytes);
        let payload_start = frames.len();
        frames.extend_from_slice(&rest[..n_payload]);
        frames.resize(payload_start + payload_bytes, 0);
        rest = &rest[n_payload..];
        if masked {
            for (idx, byte) in frames[payload_start..].iter_mut().enumerate() {
                *byte ^= mask_key[idx % 4];
            }
        }
    }
    frames
}

/// The client's side of an upgraded socket in memory: reads hand out the pieces one by
/// one (a read never spans two pieces, as a socket read would not), then end of stream;
/// writes are kept for checking.
struct Duplex {
    pieces: Vec<Vec<u8>>,
    piece_idx: usize,
    piece_offset: usize,
    written: Rc<RefCell<Vec<u8>>>,
}

impl futures_lite::AsyncRead for Duplex {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let Some(piece) = this.pieces.get(this.piece_idx) else {
            return Poll::Ready(Ok(0));
        };
        let rest = &piece[this.piece_offset..];
        let n_bytes = rest.len().min(buf.len());
        buf[..n_bytes].copy_from_slice(&rest[..n_bytes]);
        this.piece_offset += n_bytes;
        if this.piece_offset == piece.len() {
            this.piece_idx += 1;
            this.piece_offset = 0;
        }
        Poll::Ready(Ok(n_bytes))
    }
}

impl futures_lite::AsyncWrite for Duplex {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.written.borrow_mut().extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Polls `future` until it is ready. Nothing here ever waits (the stream is in memory), so
/// a future still pending after `WS_POLLS_MAX` polls is stuck: that is a finding.
fn poll_to_end<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..WS_POLLS_MAX {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
    panic!("a WebSocket future stalled on an in-memory stream");
}

/// Reads what the server wrote as a client would, and checks it: valid unmasked frames,
/// pongs that echo the pings in order, the pushed summaries, at most one close, last.
fn check_server_frames(written: &[u8], pings: &[Vec<u8>], n_pushed: usize) {
    let stream = ReadOnly(Cursor::new(written));
    let mut client = tungstenite::WebSocket::from_raw_socket(stream, Role::Client, None);
    let mut n_pongs_matched = 0usize;
    let mut n_texts = 0usize;
    let mut closed = false;
    loop {
        let message = match client.read() {
            Ok(message) => message,
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => break,
            Err(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            )) => break,
            Err(error) => panic!("the server wrote a bad frame: {error}"),
        };
        assert!(!closed, "the server wrote after its close frame");
        match message {
            Message::Pong(payload) => {
                // tungstenite answers only the latest of several pings read at once.
                let Some(offset) = pings[n_pongs_matched..]
                    .iter()
                    .position(|ping| *ping == payload[..])
                else {
                    panic!("a pong that echoes no ping: {payload:?}");
                };
                n_pongs_matched += offset + 1;
            }
            Message::Text(text) => {
                assert_eq!(text.as_str(), WS_SUMMARY);
                n_texts += 1;
            }
            Message::Close(_) => closed = true,
            other => panic!("the server wrote {other:?}"),
        }
    }
    assert_eq!(n_texts, n_pushed, "pushed summaries went missing");
}

/// A stream that reads from a buffer and discards writes (the checking client's replies).
struct ReadOnly<'a>(Cursor<&'a [u8]>);

impl Read for ReadOnly<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for ReadOnly<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
