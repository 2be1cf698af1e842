//! The `websocket` target: an upgraded socket as `net::ws_conn` builds it, under hostile
//! frames over an in-memory stream, and the `/ws` handshake's validation by the router.

use std::cell::RefCell;
use std::io::{Cursor, Read, Write};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::tungstenite::{self, Message};
use futures_util::StreamExt;

use crate::address::InboxKey;
use crate::config::DomainPolicy;
use crate::fuzzing::http::{HTTP_LIMITS, check_response, is_base64_16};
use crate::fuzzing::{DOMAINS, Pieces, split_pieces};
use crate::http::api::{self, Route};
use crate::http::request;
use crate::http::response::Response;

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
