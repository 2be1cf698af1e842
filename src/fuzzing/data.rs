//! The `data_scanner` target: the DATA scanner's copying and in-place paths against a
//! naive model written from RFC 5321, and the dot-stuffing round trip.

use crate::fuzzing::smtp::{SMTP_MESSAGE_BYTES_LARGE_MAX, SMTP_MESSAGE_BYTES_SMALL_MAX};
use crate::fuzzing::{Pieces, split_pieces};
use crate::smtp::data::{BodyBuffer, DataScanner, Refusal, TEXT_LINE_BYTES_MAX};

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
