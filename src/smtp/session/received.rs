//! Our Received header (RFC 5321 4.4), written once per delivered message.
//!
//! Three things in it come from the client, and each is written only in a form that cannot
//! change what the header says:
//! - the HELO name: printable ASCII already (the parser sees to that); characters that
//!   cannot be part of a domain or an address literal, such as `(` or `;`, become `_`;
//! - an address literal as the HELO name (`EHLO [192.0.2.7]`): it is the client's IP as
//!   surely as the socket's peer address is, so it is withheld unless the operator allows
//!   client IPs (`--log-client-ip`, which is what gives the session a `client_ip`);
//! - the recipient of the `for` clause: left out unless every character is one that cannot
//!   end the clause, open a comment, or fold the line, so a quoted local part cannot
//!   forge a second date or clause.

use std::io::Write;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::smtp::parser;
use crate::smtp::session::{Greeting, Session};

/// RFC 5322 2.1.1: a header line has at most 998 octets before its CRLF.
pub const RECEIVED_LINE_BYTES_MAX: usize = 998;
/// Longest TLS version or cipher name written into the Received header.
pub(super) const TLS_TEXT_BYTES_MAX: usize = 64;
/// Longest queue id written into a reply or the Received header.
pub(super) const QUEUE_ID_BYTES_MAX: usize = 64;
/// Longest hostname written into the Received header (a domain is at most 255 octets).
const HOSTNAME_BYTES_MAX: usize = 255;
/// The `from` name when we cannot or may not write the client's: a syntactically valid
/// RFC 5321 `Domain`, so the header still parses.
const UNKNOWN_CLIENT: &[u8] = b"unknown";
/// Follows `from unknown` when the client named itself with an address literal that we
/// withhold. It is a comment in the CFWS that RFC 5321 4.4 allows before `by`, so the
/// stamp keeps its grammar, and a reader sees the name was hidden on purpose.
const LITERAL_WITHHELD_COMMENT: &[u8] = b" (address literal withheld)";
/// The date written when the clock is outside years 1900..=9999, which RFC 5322 cannot
/// express.
const EPOCH_DATE: &[u8] = b"Thu, 01 Jan 1970 00:00:00 +0000";

impl Session {
    /// Writes our Received header (RFC 5321 4.4) for the current transaction, e.g.
    ///
    /// ```text
    /// Received: from client.example ([192.0.2.1]) by mx.example.test (Mayfly) with ESMTP
    /// <TAB>id 0123 for <u@example.test>; Fri, 27 Nov 2026 22:15:44 +0000
    /// ```
    ///
    /// The IP part appears only when the session got a `client_ip`; without one, a HELO
    /// name that is an address literal is written as `unknown (address literal
    /// withheld)`. A `(version=... cipher=...)` comment appears only under TLS, and
    /// `for <rcpt>` only with exactly one recipient whose address is safe there
    /// (`fits_for_clause`; the clause is optional). The second line starts with a tab
    /// (folding). Every line stays within `RECEIVED_LINE_BYTES_MAX` octets.
    pub fn write_received_header(&self, queue_id: &str, now: SystemTime, out: &mut Vec<u8>) {
        // Line 1 is at most about 800 octets: helo <= 255 (parser), ip <= 60,
        // hostname <= 255, tls comment <= 2 * 64 + 24, fixed words.
        out.extend_from_slice(b"Received: from ");
        if self.helo.is_empty() {
            out.extend_from_slice(UNKNOWN_CLIENT);
        } else if self.client_ip.is_none() && is_address_literal(&self.helo) {
            out.extend_from_slice(UNKNOWN_CLIENT);
            out.extend_from_slice(LITERAL_WITHHELD_COMMENT);
        } else {
            push_name_safe(out, &self.helo, parser::HELO_BYTES_MAX);
        }
        if let Some(ip) = self.client_ip {
            let _ = match ip.to_canonical() {
                IpAddr::V4(ipv4) => write!(out, " ([{ipv4}])"),
                IpAddr::V6(ipv6) => write!(out, " ([IPv6:{ipv6}])"),
            };
        }
        out.extend_from_slice(b" by ");
        push_name_safe(out, &self.config.hostname, HOSTNAME_BYTES_MAX);
        out.extend_from_slice(b" (Mayfly) with ");
        out.extend_from_slice(self.protocol().as_bytes());
        if self.tls_active {
            out.extend_from_slice(b" (version=");
            out.extend_from_slice(self.tls_version.as_bytes());
            out.extend_from_slice(b" cipher=");
            out.extend_from_slice(self.tls_cipher.as_bytes());
            out.push(b')');
        }
        // Line 2 is at most about 400 octets: id <= 64, one rcpt <= 256 (the parser's
        // path limit) or postmaster@ and a domain <= 255, the date 31.
        out.extend_from_slice(b"\r\n\tid ");
        push_name_safe(out, queue_id, QUEUE_ID_BYTES_MAX);
        let rcpt = self.recipients.spellings_text().trim_end_matches('\n');
        if self.recipients.n_spellings() == 1 && fits_for_clause(rcpt) {
            out.extend_from_slice(b" for <");
            out.extend_from_slice(rcpt.as_bytes());
            out.push(b'>');
        }
        out.extend_from_slice(b"; ");
        write_date(now, out);
        out.extend_from_slice(b"\r\n");
    }

    /// The `with` protocol name (RFC 3848, RFC 6531 3.7.3).
    fn protocol(&self) -> &'static str {
        match (self.smtputf8, self.tls_active, self.greeting) {
            (true, true, _) => "UTF8SMTPS",
            (true, false, _) => "UTF8SMTP",
            (false, true, _) => "ESMTPS",
            (false, false, Greeting::Ehlo) => "ESMTP",
            (false, false, _) => "SMTP",
        }
    }
}

/// The longest prefix of `text` of at most `bytes_max` octets that ends on a char boundary.
pub(super) fn truncate_str(text: &str, bytes_max: usize) -> &str {
    if text.len() <= bytes_max {
        return text;
    }
    let mut end_idx = bytes_max;
    while !text.is_char_boundary(end_idx) {
        end_idx -= 1;
    }
    &text[..end_idx]
}

/// Stores a TLS version or cipher name as a short token safe inside a comment.
pub(super) fn push_token(buffer: &mut String, text: &str) {
    for ch in truncate_str(text, TLS_TEXT_BYTES_MAX).chars() {
        let safe = ch.is_ascii_graphic() && !matches!(ch, '(' | ')' | '\\');
        buffer.push(if safe { ch } else { '_' });
    }
}

/// Whether a HELO name is an address literal (`[192.0.2.7]`, `[IPv6:2001:db8::1]`) or a
/// bare IP address, which some clients send instead: either way it names the client's IP.
fn is_address_literal(helo: &str) -> bool {
    // Only hex digits, dots and colons can make an IP address; checking that first spares
    // ordinary names the parse.
    helo.starts_with('[')
        || (helo
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':')
            && helo.parse::<IpAddr>().is_ok())
}

/// Whether `address` can go between `for <` and `>` as it is: nothing that could close
/// the brackets (`>`), end the clause and start the date (`;`), open or close a comment
/// (`(`, `)`), quote or escape (`"`, `\`), or fold or break the line (whitespace and
/// control characters). A quoted local part with any of these is left out rather than
/// rewritten, since a rewritten address would name another mailbox.
fn fits_for_clause(address: &str) -> bool {
    const UNFIT: &[u8] = b";()<>\"\\";
    // Nearly every address is ASCII: judged byte by byte (graphic excludes controls and
    // space), without decoding.
    if address.is_ascii() {
        return address
            .bytes()
            .all(|b| b.is_ascii_graphic() && !UNFIT.contains(&b));
    }
    address.chars().all(|ch| {
        let unfit_ascii = u8::try_from(ch).is_ok_and(|b| UNFIT.contains(&b));
        !ch.is_control() && !ch.is_whitespace() && !unfit_ascii
    })
}

/// Appends `text` (truncated) where the stamp wants a name: every byte that cannot be part
/// of a domain, an address literal or a queue id becomes `_`. So a HELO name, which the
/// parser only requires to be printable ASCII, cannot open a comment (`(`), end the
/// tokens and start the date (`;`), or quote (`"`).
fn push_name_safe(out: &mut Vec<u8>, text: &str, bytes_max: usize) {
    for &b in truncate_str(text, bytes_max).as_bytes() {
        let safe =
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':' | b'[' | b']');
        out.push(if safe { b } else { b'_' });
    }
}

/// Writes `now` as an RFC 5322 date in UTC, e.g. `Fri, 27 Nov 2026 22:15:44 +0000`.
pub(super) fn write_date(now: SystemTime, out: &mut Vec<u8>) {
    let unix_secs = match now.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |secs| -secs),
    };
    // Formatting a date costs more than the rest of the header; every message of the same
    // second on this thread (executor) shares one rendering.
    thread_local! {
        static LAST_DATE: std::cell::RefCell<(i64, Vec<u8>)> =
            const { std::cell::RefCell::new((i64::MIN, Vec::new())) };
    }
    LAST_DATE.with_borrow_mut(|(cached_secs, cached_text)| {
        if *cached_secs != unix_secs || cached_text.is_empty() {
            cached_text.clear();
            let written = OffsetDateTime::from_unix_timestamp(unix_secs)
                .ok()
                .and_then(|date| date.format_into(cached_text, &Rfc2822).ok());
            if written.is_none() {
                cached_text.clear();
                cached_text.extend_from_slice(EPOCH_DATE);
            }
            *cached_secs = unix_secs;
        }
        out.extend_from_slice(cached_text);
    });
}
