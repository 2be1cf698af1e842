//! Message bytes: templates built once, rendered per message into a reused buffer.
//!
//! Every message carries `Message-ID`, `X-Blaster-Run`, `X-Blaster-Seq` and
//! `X-Blaster-Checksum` (CRC-32 of the body, i.e. the bytes after the header block, as the
//! server stores them after dot-unstuffing). Bodies are generated (or read from `--corpus`)
//! before the run, with their checksum and their dot-stuffed DATA form, so the send loop only
//! formats a few header lines and copies bytes: no allocation per message once the output
//! buffers have grown to the largest message.
//!
//! [`check_message`] is the other half: given stored bytes (the server may prepend headers
//! such as `Received:`), it finds our headers and recomputes the checksum.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::sizes::{SIZE_BYTES_MAX, SizeClass, SplitMix64};

/// Most corpus files read from `--corpus` (each is held in memory once per thread).
pub const CORPUS_FILES_MAX: usize = 10_000;

/// Length of generated body lines, without CRLF (RFC 5322 recommends at most 78).
const BODY_LINE_BYTES: usize = 74;

/// Header values we generate; a corpus message's own copies of these are dropped.
const GENERATED_HEADERS: &[&str] = &[
    "message-id",
    "x-blaster-run",
    "x-blaster-seq",
    "x-blaster-checksum",
];

/// The header block of `--headers mx`: what a message from a bulk or transactional sender
/// carries when it reaches an MX (two `Received:` hops, a DKIM signature, the receiving
/// side's `Authentication-Results`, list and feedback headers), about 1.3 KB. Fixed text:
/// the server parses and stores it, and no server in the comparison verifies it.
const MX_HEADER_BLOCK: &str = "Received: from mta-out-7.mailer.example.net (mta-out-7.mailer.example.net [198.51.100.27])\r\n\
\tby relay-3.mailer.example.net (Postfix) with ESMTPS id 4QxK9Z1v2Rz8s\r\n\
\tfor <bounce@mailer.example.net>; Sat, 05 Dec 2026 10:00:00 +0000 (UTC)\r\n\
Received: from app-12.internal.example.net (app-12.internal.example.net [10.20.30.40])\r\n\
\tby mta-out-7.mailer.example.net (Postfix) with ESMTP id 9F2C81A0042\r\n\
\tSat, 05 Dec 2026 09:59:59 +0000 (UTC)\r\n\
DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=mailer.example.net;\r\n\
\ts=s2026; t=1796551200; h=from:to:subject:date:message-id:mime-version:\r\n\
\tcontent-type:list-unsubscribe:list-unsubscribe-post:feedback-id;\r\n\
\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n\
\tb=kZ3cQ8mJ0vN2hV5xR7yT1uW4aS6dF9gH2jK5lP8oI3uY6tR1eW4qA7sD0fG3hJ6k\r\n\
\t L9zX2cV5bN8mQ1wE4rT7yU0iO3pA6sD9fG2hJ5kL8zX1cV4bN7mQ0wE3rT6yU9iO\r\n\
\t 2pA5sD8fG1hJ4kL7zX0cV3bN6mQ9wE2rT5yU8iO1pA4sD7fG0hJ3kL6zX9cV2bN5\r\n\
\t mQ8wE1rT4yU7iO0pA3sD6fG9hJ2kL5zX8cV1bN4mQ7wE0rT3yU6iO9pA2sD5fG8h\r\n\
\t J1kL4zX7cV0bN3mQ6wE9rT2yU5iO8pA1sD4fG7hJ0kL3zX6cV9bN2mQ5w==\r\n\
Authentication-Results: mx.example.test; dkim=pass header.d=mailer.example.net;\r\n\
\tspf=pass smtp.mailfrom=bounce@mailer.example.net; dmarc=pass header.from=example.test\r\n\
Reply-To: Support <support@example.test>\r\n\
List-Unsubscribe: <https://mailer.example.net/u/7f3a9c2e1b>, <mailto:unsub-7f3a9c2e1b@mailer.example.net>\r\n\
List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\
Feedback-ID: 7f3a9c2e:transactional:mailer\r\n\
X-Mailer: mailer-platform 4.12.3\r\n\
Content-Transfer-Encoding: 7bit\r\n";

/// Which header block generated messages carry besides the ones every message has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderBlock {
    /// Only From, To, Subject, Date, MIME headers and ours (the default; the smallest).
    #[default]
    Minimal,
    /// A realistic block as an MX receives it: see [`MX_HEADER_BLOCK`].
    Mx,
}

/// What every message of a run shares: who sends it and where it goes.
#[derive(Debug, Clone)]
pub struct MessageSpec {
    /// Random per run, so `--verify` can tell this run's messages from older ones.
    pub run_id: u64,
    /// The domain of the sender and of every recipient.
    pub domain: String,
    /// Recipients per message (RCPT TO commands).
    pub recipients: u64,
    /// Recipients are spread over this many addresses `user<k>@domain`.
    pub inboxes: u64,
    /// RFC 5322 `Date:` value, computed once per run.
    pub date: String,
    /// Addresses `<c>-user<k>@domain`, `c` cycling through `[0-9a-z]`, so inboxes spread over
    /// every partition of a multi-node setup (Mayfly's partition is an address's first
    /// character; docs/scale-out.md).
    pub spread_inboxes: bool,
}

/// One message shape: the headers and body that do not change between messages.
#[derive(Debug, Clone)]
pub struct Template {
    /// Header lines from a corpus file (minus the generated ones), CRLF-ended, dot-stuffed.
    extra_headers: Vec<u8>,
    /// Whether `extra_headers` already has From/To/Subject/Date, so we must not add ours.
    has_from: bool,
    has_to: bool,
    has_subject: bool,
    has_date: bool,
    /// Generated bodies are plain text and need MIME headers; corpus bodies bring their own.
    generated: bool,
    /// The body exactly as the server should store it; ends with CRLF. Shared, because
    /// DKIM-signed variants (`crate::dkim`) differ only in their headers.
    body: Arc<[u8]>,
    /// The body dot-stuffed for DATA (RFC 5321 4.5.2).
    body_stuffed: Arc<[u8]>,
    /// CRC-32 of `body`, as 8 lowercase hex digits.
    checksum_hex: [u8; 8],
}

/// First characters of spread addresses: every partition of `[0-9a-z]`.
const SPREAD_CHARS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

impl MessageSpec {
    /// The inbox number of recipient `recipient_idx` of message `seq`.
    ///
    /// Consecutive messages go to consecutive inboxes, so any run spreads evenly.
    pub fn inbox_of(&self, seq: u64, recipient_idx: u64) -> u64 {
        (seq.wrapping_mul(self.recipients)
            .wrapping_add(recipient_idx))
            % self.inboxes
    }

    /// Writes `user<k>@domain` (or, with `spread_inboxes`, `<c>-user<k>@domain`) for
    /// inbox `k`.
    pub fn write_address(&self, out: &mut Vec<u8>, inbox: u64) {
        if self.spread_inboxes {
            let first = char::from(SPREAD_CHARS[(inbox % 36) as usize]);
            let _ = write!(out, "{first}-user{inbox}@{}", self.domain);
        } else {
            let _ = write!(out, "user{inbox}@{}", self.domain);
        }
    }

    /// The address of inbox `k` as a string (for verification, not the hot path).
    pub fn address(&self, inbox: u64) -> String {
        let mut out = Vec::new();
        self.write_address(&mut out, inbox);
        String::from_utf8(out).expect("ASCII")
    }

    /// Writes the complete header block of message `seq`, ending with the empty line.
    pub fn write_headers(&self, out: &mut Vec<u8>, template: &Template, seq: u64) {
        let run_id = self.run_id;
        let _ = write!(out, "Message-ID: <{seq}.{run_id:016x}@blaster.invalid>\r\n");
        let _ = write!(
            out,
            "X-Blaster-Run: {run_id:016x}\r\nX-Blaster-Seq: {seq}\r\nX-Blaster-Checksum: "
        );
        out.extend_from_slice(&template.checksum_hex);
        out.extend_from_slice(b"\r\n");
        if !template.has_from {
            let _ = write!(out, "From: <blaster@{}>\r\n", self.domain);
        }
        if !template.has_to {
            out.extend_from_slice(b"To: ");
            for recipient_idx in 0..self.recipients {
                if recipient_idx > 0 {
                    // Fold so that many recipients do not make one overlong line.
                    out.extend_from_slice(b",\r\n ");
                }
                out.push(b'<');
                self.write_address(out, self.inbox_of(seq, recipient_idx));
                out.push(b'>');
            }
            out.extend_from_slice(b"\r\n");
        }
        if !template.has_subject {
            let _ = write!(out, "Subject: smtp-blaster message {seq}\r\n");
        }
        if !template.has_date {
            let _ = write!(out, "Date: {}\r\n", self.date);
        }
        if template.generated {
            out.extend_from_slice(
                b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n",
            );
        }
        out.extend_from_slice(&template.extra_headers);
        out.extend_from_slice(b"\r\n");
    }

    /// Appends message `seq` in DATA form: headers, dot-stuffed body and the final `.` line.
    /// Returns the message's stored size (headers and unstuffed body).
    pub fn write_data_message(&self, out: &mut Vec<u8>, template: &Template, seq: u64) -> usize {
        let start_idx = out.len();
        self.write_headers(out, template, seq);
        let header_bytes = out.len() - start_idx;
        out.extend_from_slice(&template.body_stuffed);
        out.extend_from_slice(b".\r\n");
        header_bytes + template.body.len()
    }

    /// Appends `BDAT <n> LAST` and message `seq`; `scratch` is a reused buffer for the headers.
    /// Returns the message's stored size.
    pub fn write_bdat_message(
        &self,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        template: &Template,
        seq: u64,
    ) -> usize {
        scratch.clear();
        self.write_headers(scratch, template, seq);
        let n_bytes = scratch.len() + template.body.len();
        let _ = write!(out, "BDAT {n_bytes} LAST\r\n");
        out.extend_from_slice(scratch);
        out.extend_from_slice(&template.body);
        n_bytes
    }

    /// Size of message `seq` as stored (headers plus body), for MB/s accounting.
    pub fn stored_len(&self, template: &Template, scratch: &mut Vec<u8>, seq: u64) -> usize {
        scratch.clear();
        self.write_headers(scratch, template, seq);
        scratch.len() + template.body.len()
    }
}

impl Template {
    /// A generated plain-text template whose messages are about `size_bytes` long in total.
    pub fn generated(spec: &MessageSpec, size_bytes: usize, seed: u64) -> Self {
        Self::generated_with(spec, size_bytes, seed, HeaderBlock::Minimal)
    }

    /// As [`Template::generated`], with the given extra header block (counted in the size).
    pub fn generated_with(
        spec: &MessageSpec,
        size_bytes: usize,
        seed: u64,
        header_block: HeaderBlock,
    ) -> Self {
        let extra_headers = match header_block {
            HeaderBlock::Minimal => Vec::new(),
            HeaderBlock::Mx => MX_HEADER_BLOCK.as_bytes().to_vec(),
        };
        let template = Self::from_parts(extra_headers.clone(), b"\r\n".to_vec(), true);
        // Size the body so that headers plus body come to about `size_bytes`; the header
        // length varies by a few bytes with the sequence number, which does not matter.
        let mut probe = Vec::new();
        spec.write_headers(&mut probe, &template, 1000);
        let body_bytes = size_bytes.saturating_sub(probe.len()).max(2);
        Self::from_parts(extra_headers, generated_body(body_bytes, seed), true)
    }

    /// A template with the given header lines (CRLF-ended, not yet dot-stuffed; they must
    /// include From, To, Subject and Date, so that the per-message headers are only
    /// Message-ID and the `X-Blaster-*` ones) and this template's body, shared.
    pub fn with_headers(&self, header_lines: &[u8]) -> Self {
        let mut template = Self::from_parts(header_lines.to_vec(), Vec::new(), false);
        template.body = Arc::clone(&self.body);
        template.body_stuffed = Arc::clone(&self.body_stuffed);
        template.checksum_hex = self.checksum_hex;
        template
    }

    /// A template with `body` (CRLF-ended) and the generated headers only.
    pub fn with_body(body: Vec<u8>) -> Self {
        Self::from_parts(Vec::new(), body, true)
    }

    /// A template from one RFC 5322 message (a corpus file): its headers are kept, except
    /// those we generate; its body is sent unchanged apart from line ends normalized to CRLF.
    pub fn from_rfc5322(raw: &[u8]) -> Self {
        let normalized = normalize_crlf(raw);
        let (header_block, body) = match memchr::memmem::find(&normalized, b"\r\n\r\n") {
            Some(idx) => (&normalized[..idx + 2], &normalized[idx + 4..]),
            None => (&normalized[..0], &normalized[..]),
        };
        let mut extra_headers = Vec::with_capacity(header_block.len());
        let mut keep = true;
        for line in header_block.split_inclusive(|&b| b == b'\n') {
            let continuation = matches!(line.first(), Some(b' ' | b'\t'));
            if !continuation {
                let name = line.split(|&b| b == b':').next().unwrap_or(&[]);
                keep = !GENERATED_HEADERS
                    .iter()
                    .any(|generated| name.eq_ignore_ascii_case(generated.as_bytes()));
            }
            if keep {
                extra_headers.extend_from_slice(line);
            }
        }
        let mut body = body.to_vec();
        if !body.ends_with(b"\r\n") {
            body.extend_from_slice(b"\r\n");
        }
        Self::from_parts(extra_headers, body, false)
    }

    /// The body as stored.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    fn from_parts(extra_headers: Vec<u8>, body: Vec<u8>, generated: bool) -> Self {
        let has = |name: &str| {
            extra_headers.split(|&b| b == b'\n').any(|line| {
                line.len() > name.len()
                    && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
                    && line[name.len()] == b':'
            })
        };
        let (has_from, has_to, has_subject, has_date) =
            (has("from"), has("to"), has("subject"), has("date"));
        let extra_headers = dot_stuff(&extra_headers);
        let body_stuffed = dot_stuff(&body).into();
        let checksum_hex = checksum_hex(&body);
        let body = body.into();
        Self {
            extra_headers,
            has_from,
            has_to,
            has_subject,
            has_date,
            generated,
            body,
            body_stuffed,
            checksum_hex,
        }
    }
}

/// `body_bytes` of plain-text letters in CRLF-ended lines of at most `BODY_LINE_BYTES`.
pub fn generated_body(body_bytes: usize, seed: u64) -> Vec<u8> {
    let body_bytes = body_bytes.max(2);
    let mut rng = SplitMix64(seed);
    let mut body = Vec::with_capacity(body_bytes);
    while body.len() < body_bytes {
        let line_bytes = (body_bytes - body.len())
            .saturating_sub(2)
            .min(BODY_LINE_BYTES);
        for _ in 0..line_bytes {
            // Letters only: no line ever starts with '.', so stuffing changes nothing, but
            // the DATA path still goes through the general stuffing code.
            body.push(b'a' + (rng.next_u64() % 26) as u8);
        }
        body.extend_from_slice(b"\r\n");
    }
    body
}

/// Builds one template per size class.
pub fn generated_templates(
    spec: &MessageSpec,
    classes: &[SizeClass],
    header_block: HeaderBlock,
) -> Vec<Template> {
    classes
        .iter()
        .enumerate()
        .map(|(class_idx, class)| {
            Template::generated_with(
                spec,
                class.size_bytes,
                spec.run_id ^ class_idx as u64,
                header_block,
            )
        })
        .collect()
}

/// Reads every regular file in `dir` (sorted by name) as a template.
///
/// # Errors
/// If the directory cannot be read, holds no usable file, or too many or too large files.
pub fn corpus_templates(dir: &Path) -> anyhow::Result<Vec<Template>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir)
        .with_context(|| format!("reading corpus directory {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("reading corpus directory {}", dir.display()))?;
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            paths.push(entry.path());
        }
        if paths.len() > CORPUS_FILES_MAX {
            bail!(
                "corpus {} has more than {CORPUS_FILES_MAX} files",
                dir.display()
            );
        }
    }
    paths.sort();
    let mut templates = Vec::with_capacity(paths.len());
    for path in paths {
        let len = std::fs::metadata(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        if len > SIZE_BYTES_MAX as u64 {
            bail!(
                "corpus file {} is larger than {SIZE_BYTES_MAX} bytes",
                path.display()
            );
        }
        let raw = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        if raw.is_empty() {
            continue;
        }
        templates.push(Template::from_rfc5322(&raw));
    }
    if templates.is_empty() {
        bail!("corpus {} has no non-empty files", dir.display());
    }
    Ok(templates)
}

/// What [`check_message`] found in stored message bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageCheck {
    /// `X-Blaster-Run`, if present and well-formed.
    pub run_id: Option<u64>,
    /// `X-Blaster-Seq`, if present and well-formed.
    pub seq: Option<u64>,
    /// Whether `X-Blaster-Checksum` is present and matches the body.
    pub checksum_ok: bool,
}

/// Finds our headers in `raw` (which may have extra headers before them, such as
/// `Received:`) and recomputes the body checksum.
pub fn check_message(raw: &[u8]) -> MessageCheck {
    let (header_block, body) = split_header_block(raw);
    let mut check = MessageCheck {
        run_id: None,
        seq: None,
        checksum_ok: false,
    };
    let mut checksum_claimed: Option<&[u8]> = None;
    for line in header_block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon_idx) = memchr::memchr(b':', line) else {
            continue;
        };
        let (name, value) = (&line[..colon_idx], line[colon_idx + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"x-blaster-seq") {
            check.seq = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
        } else if name.eq_ignore_ascii_case(b"x-blaster-run") {
            check.run_id = std::str::from_utf8(value)
                .ok()
                .and_then(|v| u64::from_str_radix(v, 16).ok());
        } else if name.eq_ignore_ascii_case(b"x-blaster-checksum") {
            checksum_claimed = Some(value);
        }
    }
    if let Some(claimed) = checksum_claimed {
        check.checksum_ok = claimed.eq_ignore_ascii_case(&checksum_hex(body));
    }
    check
}

/// CRC-32 (IEEE) of `body` as 8 lowercase hex digits.
pub fn checksum_hex(body: &[u8]) -> [u8; 8] {
    let crc = crc32fast::hash(body);
    let mut hex = [0u8; 8];
    for (idx, digit) in hex.iter_mut().enumerate() {
        let nibble = (crc >> (28 - 4 * idx)) & 0xf;
        *digit = b"0123456789abcdef"[nibble as usize];
    }
    hex
}

/// Formats a Unix time (seconds) as an RFC 5322 date in UTC, e.g. `Thu, 01 Jan 1970 00:00:00 +0000`.
pub fn rfc5322_date(unix_secs: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86_400;
    let secs_of_day = unix_secs % 86_400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (non-negative here).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        WEEKDAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    )
}

/// Splits at the first empty line: (header block with its line ends, body).
fn split_header_block(raw: &[u8]) -> (&[u8], &[u8]) {
    let crlf = memchr::memmem::find(raw, b"\r\n\r\n").map(|idx| (idx + 2, idx + 4));
    let lf = memchr::memmem::find(raw, b"\n\n").map(|idx| (idx + 1, idx + 2));
    let split = match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    match split {
        Some((header_end, body_start)) => (&raw[..header_end], &raw[body_start..]),
        None => (raw, &raw[raw.len()..]),
    }
}

/// Every line end becomes CRLF (bare LF and bare CR alike).
fn normalize_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    let mut idx = 0;
    while idx < raw.len() {
        match raw[idx] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if raw.get(idx + 1) == Some(&b'\n') {
                    idx += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            byte => out.push(byte),
        }
        idx += 1;
    }
    out
}

/// Doubles a leading '.' on every line (RFC 5321 4.5.2); input lines end with CRLF.
fn dot_stuff(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 16);
    let mut at_line_start = true;
    for &byte in text {
        if at_line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        at_line_start = byte == b'\n';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(recipients: u64) -> MessageSpec {
        MessageSpec {
            run_id: 0xabcdef,
            domain: "example.test".to_owned(),
            recipients,
            inboxes: 10,
            date: rfc5322_date(0),
            spread_inboxes: false,
        }
    }

    /// Undoes DATA framing the way a server does: strip the final dot line, unstuff.
    fn undata(data: &[u8]) -> Vec<u8> {
        let data = data.strip_suffix(b".\r\n").expect("final dot");
        let mut out = Vec::new();
        for line in data.split_inclusive(|&b| b == b'\n') {
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        out
    }

    #[test]
    fn generated_messages_round_trip() {
        for (recipients, size_bytes) in [(1, 1), (1, 1024), (3, 5000), (2, 100_000)] {
            let spec = spec(recipients);
            let template = Template::generated(&spec, size_bytes, 42);
            for seq in [0, 7, 123_456_789] {
                let mut data = Vec::new();
                spec.write_data_message(&mut data, &template, seq);
                let stored = undata(&data);
                let check = check_message(&stored);
                assert_eq!(
                    check,
                    MessageCheck {
                        run_id: Some(0xabcdef),
                        seq: Some(seq),
                        checksum_ok: true
                    }
                );
                if size_bytes > 1000 {
                    let diff = stored.len().abs_diff(size_bytes);
                    assert!(diff < 32, "size {} for target {size_bytes}", stored.len());
                }
                // BDAT form carries the same bytes with an exact length prefix.
                let (mut bdat, mut scratch) = (Vec::new(), Vec::new());
                spec.write_bdat_message(&mut bdat, &mut scratch, &template, seq);
                let line_end = memchr::memmem::find(&bdat, b"\r\n").unwrap();
                let expected_line = format!("BDAT {} LAST", stored.len());
                assert_eq!(&bdat[..line_end], expected_line.as_bytes());
                assert_eq!(&bdat[line_end + 2..], &stored[..]);
                assert_eq!(spec.stored_len(&template, &mut scratch, seq), stored.len());
            }
        }
    }

    #[test]
    fn mx_header_block_is_well_formed_and_counted_in_the_size() {
        let spec = spec(1);
        for size_bytes in [1024, 4096, 10_240] {
            let template = Template::generated_with(&spec, size_bytes, 7, HeaderBlock::Mx);
            let mut data = Vec::new();
            spec.write_data_message(&mut data, &template, 11);
            let stored = undata(&data);
            assert_eq!(check_message(&stored).seq, Some(11));
            assert!(check_message(&stored).checksum_ok);
            let (header_block, _) = split_header_block(&stored);
            for line in header_block.split(|&b| b == b'\n') {
                assert!(line.len() <= 998, "header line too long");
                assert!(
                    line.is_empty() || line.ends_with(b"\r"),
                    "bare LF in headers"
                );
            }
            let text = String::from_utf8(stored.clone()).unwrap();
            assert_eq!(text.matches("\r\nReceived: ").count(), 2, "{text}");
            assert!(text.starts_with("Message-ID") && text.contains("DKIM-Signature: v=1;"));
            assert_eq!(text.matches("From:").count(), 1, "{text}");
            assert!(stored.len().abs_diff(size_bytes) < 32 || size_bytes < 1500);
        }
    }

    #[test]
    fn received_header_prepended_and_corruption_detected() {
        let spec = spec(1);
        let template = Template::generated(&spec, 2000, 1);
        let mut stored = b"Received: from x by y;\r\n\tThu, 1 Jan 1970 00:00:00 +0000\r\n".to_vec();
        spec.write_headers(&mut stored, &template, 5);
        stored.extend_from_slice(template.body());
        assert!(check_message(&stored).checksum_ok);
        let last = stored.len() - 3;
        stored[last] ^= 1;
        let check = check_message(&stored);
        assert_eq!((check.seq, check.checksum_ok), (Some(5), false));
        assert_eq!(
            check_message(b"Subject: x\r\n\r\nbody\r\n"),
            MessageCheck {
                run_id: None,
                seq: None,
                checksum_ok: false
            }
        );
        assert_eq!(
            check_message(b""),
            MessageCheck {
                run_id: None,
                seq: None,
                checksum_ok: false
            }
        );
    }

    #[test]
    fn corpus_message_keeps_its_headers_and_stuffs_dots() {
        let raw = b"Message-ID: <old@x>\nFrom: a@b\nTo: c@d\nSubject: hi\n  folded\nX-Blaster-Seq: 9\n\n.leading dot\nline\r\nlast";
        let template = Template::from_rfc5322(raw);
        assert_eq!(template.body(), b".leading dot\r\nline\r\nlast\r\n");
        let spec = spec(1);
        let mut data = Vec::new();
        spec.write_data_message(&mut data, &template, 3);
        let text = String::from_utf8(data.clone()).unwrap();
        assert!(text.contains("\r\n..leading dot\r\n"), "{text}");
        assert_eq!(text.matches("Message-ID").count(), 1, "{text}");
        assert_eq!(text.matches("From:").count(), 1, "{text}");
        assert_eq!(text.matches("X-Blaster-Seq").count(), 1, "{text}");
        assert!(text.contains("Subject: hi\r\n  folded\r\n"), "{text}");
        assert!(!text.contains("MIME-Version"), "{text}");
        let check = check_message(&undata(&data));
        assert_eq!((check.seq, check.checksum_ok), (Some(3), true));
    }

    #[test]
    fn recipients_spread_over_inboxes() {
        let spec = spec(3);
        let inboxes: Vec<u64> = (0..4)
            .flat_map(|seq| (0..3).map(move |k| (seq, k)))
            .map(|(s, k)| spec.inbox_of(s, k))
            .collect();
        assert_eq!(inboxes, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
        assert_eq!(spec.address(4), "user4@example.test");
        let spread = MessageSpec {
            spread_inboxes: true,
            ..spec.clone()
        };
        assert_eq!(spread.address(4), "4-user4@example.test");
        assert_eq!(spread.address(46), "a-user46@example.test");
    }

    #[test]
    fn dates_and_checksums() {
        let cases = [
            (0, "Thu, 01 Jan 1970 00:00:00 +0000"),
            (1_700_000_000, "Tue, 14 Nov 2023 22:13:20 +0000"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 +0000"),
        ];
        for (secs, expected) in cases {
            assert_eq!(rfc5322_date(secs), expected);
        }
        assert_eq!(&checksum_hex(b"123456789"), b"cbf43926");
        assert_eq!(normalize_crlf(b"a\nb\rc\r\nd"), b"a\r\nb\r\nc\r\nd");
        assert_eq!(dot_stuff(b".a\r\nb.\r\n..\r\n"), b"..a\r\nb.\r\n...\r\n");
    }
}
