//! `--verify URL`: read every inbox back over Mayfly's HTTP API and compare with what the
//! server acknowledged.
//!
//! A message counts as *missing* when the server answered its final 250 for a recipient but
//! that recipient's inbox does not list it, *corrupted* when it is listed but its body no
//! longer matches `X-Blaster-Checksum`, and *unexpected* when an inbox holds one of this
//! run's messages that was never acknowledged for it (or holds it twice). Messages from
//! other runs or other senders are counted apart and otherwise ignored.
//!
//! The HTTP client is deliberately tiny (blocking `TcpStream`, HTTP/1.1 keep-alive,
//! Content-Length or chunked bodies): verification runs after the load, so speed matters
//! less than having no dependency and bounded waits.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::message::{MessageSpec, check_message};

/// Page size asked for when listing an inbox (the API's maximum).
pub const PAGE_MESSAGES_MAX: usize = 1000;

/// Most inboxes `--verify` will read (each is at least one HTTP request).
pub const VERIFY_INBOXES_MAX: u64 = 100_000;

/// Most pages read from one inbox, so a server that keeps inventing ids cannot hold us forever.
const PAGES_PER_INBOX_MAX: usize = 10_000;

/// Largest HTTP response head accepted.
const RESPONSE_HEAD_BYTES_MAX: usize = 64 * 1024;

/// Largest HTTP response body accepted (a raw message can be large, but not this large).
const RESPONSE_BODY_BYTES_MAX: usize = 256 << 20;

/// Examples of missing or corrupted messages kept for the report.
const EXAMPLES_MAX: usize = 10;

/// What verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Inboxes listed.
    pub inboxes_checked: u64,
    /// (message, recipient) pairs the server acknowledged.
    pub expected: u64,
    /// Expected pairs found with a good checksum.
    pub found_intact: u64,
    /// Acknowledged for an inbox but not in it.
    pub missing: u64,
    /// In the inbox, but the body does not match its checksum.
    pub corrupted: u64,
    /// This run's messages in an inbox they were not acknowledged for, or there twice.
    pub unexpected: u64,
    /// Messages of other runs or senders (no or another `X-Blaster-Run`).
    pub foreign: u64,
    /// Messages an inbox reported in `total` that paging did not return.
    pub unlisted: u64,
    /// A few "address seq" examples of missing or corrupted messages.
    pub examples: Vec<String>,
}

impl VerifyReport {
    /// True when nothing acknowledged is missing or damaged.
    pub fn passed(&self) -> bool {
        self.missing == 0 && self.corrupted == 0
    }

    /// The human-readable summary.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "verify: {} inboxes, {} expected, {} intact, {} missing, {} corrupted, {} unexpected, {} foreign",
            self.inboxes_checked,
            self.expected,
            self.found_intact,
            self.missing,
            self.corrupted,
            self.unexpected,
            self.foreign
        );
        if self.unlisted > 0 {
            text.push_str(&format!(
                "\nverify: {} messages were counted by inboxes but not returned by paging; keep runs under {PAGE_MESSAGES_MAX} per inbox",
                self.unlisted
            ));
        }
        for example in &self.examples {
            text.push_str(&format!("\n  {example}"));
        }
        text
    }
}

/// Reads every inbox `user0..user<inboxes-1>@domain` from the API at `base_url` and checks
/// it against `accepted` ((seq, accepted-recipient bitmask) pairs).
///
/// # Errors
/// When the API cannot be reached or answers something that is not the documented JSON.
pub fn verify(
    base_url: &str,
    allow_non_loopback: bool,
    spec: &MessageSpec,
    accepted: &[(u64, u64)],
    timeout: Duration,
) -> anyhow::Result<VerifyReport> {
    if spec.inboxes > VERIFY_INBOXES_MAX {
        bail!(
            "--verify reads every inbox; {} inboxes is more than {VERIFY_INBOXES_MAX}",
            spec.inboxes
        );
    }
    let mut client = HttpClient::new(base_url, allow_non_loopback, timeout)?;
    let mut expected: HashMap<u64, HashSet<u64>> = HashMap::new();
    let mut report = VerifyReport::default();
    for &(seq, rcpt_mask) in accepted {
        for rcpt_idx in 0..spec.recipients {
            if rcpt_mask & (1u64 << rcpt_idx) != 0
                && expected
                    .entry(spec.inbox_of(seq, rcpt_idx))
                    .or_default()
                    .insert(seq)
            {
                report.expected += 1;
            }
        }
    }
    for inbox in 0..spec.inboxes {
        let address = spec.address(inbox);
        let mut wanted = expected.remove(&inbox).unwrap_or_default();
        let mut seen_seqs = HashSet::new();
        let ids = list_inbox(&mut client, &address, &mut report)?;
        for id in ids {
            let path = format!(
                "/api/v1/inboxes/{}/messages/{}/raw",
                percent_encode(&address),
                percent_encode(&id)
            );
            let (status, body) = client.get(&path)?;
            if status == 404 {
                // Evicted between listing and reading: it will be reported as missing.
                continue;
            }
            if status != 200 {
                bail!("GET {path}: HTTP {status}");
            }
            let check = check_message(&body);
            let (Some(seq), true) = (check.seq, check.run_id == Some(spec.run_id)) else {
                report.foreign += 1;
                continue;
            };
            if !seen_seqs.insert(seq) || !wanted.remove(&seq) {
                report.unexpected += 1;
                continue;
            }
            if check.checksum_ok {
                report.found_intact += 1;
            } else {
                report.corrupted += 1;
                if report.examples.len() < EXAMPLES_MAX {
                    report
                        .examples
                        .push(format!("corrupted: {address} seq {seq} (id {id})"));
                }
            }
        }
        report.missing += wanted.len() as u64;
        for seq in wanted
            .iter()
            .take(EXAMPLES_MAX.saturating_sub(report.examples.len()))
        {
            report
                .examples
                .push(format!("missing: {address} seq {seq}"));
        }
        report.inboxes_checked += 1;
    }
    Ok(report)
}

#[derive(Deserialize)]
struct InboxPage {
    total: u64,
    messages: Vec<Summary>,
    next_after: Option<String>,
}

#[derive(Deserialize)]
struct Summary {
    id: String,
}

/// Every message id in one inbox, following `next_after` until a page brings nothing new.
fn list_inbox(
    client: &mut HttpClient,
    address: &str,
    report: &mut VerifyReport,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    let mut total = 0;
    for _ in 0..PAGES_PER_INBOX_MAX {
        let mut path = format!(
            "/api/v1/inboxes/{}?limit={PAGE_MESSAGES_MAX}",
            percent_encode(address)
        );
        if let Some(after) = &cursor {
            path.push_str("&after=");
            path.push_str(&percent_encode(after));
        }
        let (status, body) = client.get(&path)?;
        if status != 200 {
            bail!(
                "GET {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            );
        }
        let page: InboxPage = serde_json::from_slice(&body)
            .with_context(|| format!("GET {path}: unexpected JSON"))?;
        if cursor.is_none() {
            total = page.total;
        }
        let mut n_new = 0;
        for summary in page.messages {
            if seen.insert(summary.id.clone()) {
                ids.push(summary.id);
                n_new += 1;
            }
        }
        match page.next_after {
            Some(next) if n_new > 0 && cursor.as_ref() != Some(&next) => cursor = Some(next),
            _ => break,
        }
    }
    report.unlisted += total.saturating_sub(ids.len() as u64);
    Ok(ids)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A blocking HTTP/1.1 client for one server, keeping its connection alive.
pub struct HttpClient {
    addr: SocketAddr,
    host_header: String,
    /// Path prefix from the URL (without a trailing slash), e.g. "" or "/mayfly".
    prefix: String,
    timeout: Duration,
    conn: Option<BufReader<TcpStream>>,
}

impl HttpClient {
    /// A client for `http://host:port[/prefix]`.
    ///
    /// # Errors
    /// On another scheme, an unresolvable host, or a non-loopback host without permission.
    pub fn new(
        base_url: &str,
        allow_non_loopback: bool,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let Some(rest) = base_url.strip_prefix("http://") else {
            bail!("--verify URL {base_url:?} must start with http:// (https is not supported)");
        };
        let (authority, prefix) = match rest.find('/') {
            Some(idx) => (&rest[..idx], rest[idx..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let with_port = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .with_context(|| format!("resolving {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolves to no address"))?;
        if !allow_non_loopback && !addr.ip().is_loopback() {
            bail!(
                "--verify {base_url}: {} is not a loopback address (use --allow-non-loopback)",
                addr.ip()
            );
        }
        Ok(Self {
            addr,
            host_header: authority.to_owned(),
            prefix: prefix.to_owned(),
            timeout,
            conn: None,
        })
    }

    /// GETs `path` (below the URL's prefix) and returns the status and body.
    ///
    /// # Errors
    /// On connection failure (after one retry on a fresh connection) or a malformed response.
    pub fn get(&mut self, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        // A kept-alive connection may have been closed by the server while idle: retry once.
        let reused = self.conn.is_some();
        match self.try_get(path) {
            Err(_) if reused => self.try_get(path),
            other => other,
        }
    }

    fn try_get(&mut self, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        if self.conn.is_none() {
            let stream = TcpStream::connect_timeout(&self.addr, self.timeout)
                .with_context(|| format!("connecting to {}", self.addr))?;
            stream.set_read_timeout(Some(self.timeout))?;
            stream.set_write_timeout(Some(self.timeout))?;
            let _ = stream.set_nodelay(true);
            self.conn = Some(BufReader::new(stream));
        }
        let result = self.exchange(path);
        if !matches!(result, Ok((_, _, true))) {
            self.conn = None;
        }
        result
            .map(|(status, body, _)| (status, body))
            .with_context(|| format!("GET {path}"))
    }

    fn exchange(&mut self, path: &str) -> anyhow::Result<(u16, Vec<u8>, bool)> {
        let conn = self.conn.as_mut().context("no connection")?;
        let request = format!(
            "GET {}{} HTTP/1.1\r\nHost: {}\r\nUser-Agent: smtp-blaster\r\nAccept: */*\r\n\r\n",
            self.prefix, path, self.host_header
        );
        conn.get_mut().write_all(request.as_bytes())?;
        read_response(conn)
    }
}

/// Reads one HTTP/1.1 response: (status, body, whether the connection may be reused).
fn read_response(reader: &mut BufReader<TcpStream>) -> anyhow::Result<(u16, Vec<u8>, bool)> {
    let mut head_bytes = 0;
    let mut line = String::new();
    let mut read_line =
        |reader: &mut BufReader<TcpStream>, line: &mut String| -> anyhow::Result<()> {
            line.clear();
            let n = reader
                .by_ref()
                .take((RESPONSE_HEAD_BYTES_MAX - head_bytes) as u64)
                .read_line(line)?;
            head_bytes += n;
            if n == 0 || !line.ends_with('\n') {
                bail!("HTTP response head ended early or is too long");
            }
            Ok(())
        };
    read_line(reader, &mut line)?;
    let mut parts = line.split_whitespace();
    let version = parts.next().unwrap_or_default().to_owned();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad HTTP status line {line:?}"))?;
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut keep_alive = version == "HTTP/1.1";
    loop {
        read_line(reader, &mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            bail!("bad HTTP header {header:?}")
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                value
                    .parse()
                    .with_context(|| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        }
    }
    let body = if chunked {
        read_chunked(reader)?
    } else if let Some(len) = content_length {
        if len > RESPONSE_BODY_BYTES_MAX {
            bail!("HTTP body of {len} bytes is too large");
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        body
    } else {
        keep_alive = false;
        let mut body = Vec::new();
        reader
            .by_ref()
            .take(RESPONSE_BODY_BYTES_MAX as u64)
            .read_to_end(&mut body)?;
        body
    };
    Ok((status, body, keep_alive))
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.by_ref().take(1024).read_line(&mut line)?;
        let size_text = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {line:?}"))?;
        if body.len() + size > RESPONSE_BODY_BYTES_MAX {
            bail!("chunked HTTP body is too large");
        }
        if size == 0 {
            // Trailers, if any, end with an empty line.
            loop {
                line.clear();
                reader.by_ref().take(1024).read_line(&mut line)?;
                if line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_paths() {
        let cases = [
            ("user1@example.test", "user1%40example.test"),
            ("a b/c", "a%20b%2Fc"),
            ("Az09-._~", "Az09-._~"),
        ];
        for (input, expected) in cases {
            assert_eq!(percent_encode(input), expected);
        }
    }

    #[test]
    fn urls() {
        let timeout = Duration::from_secs(1);
        let client = HttpClient::new("http://127.0.0.1:8025/prefix/", false, timeout).unwrap();
        assert_eq!(
            (client.addr.port(), client.prefix.as_str()),
            (8025, "/prefix")
        );
        assert!(HttpClient::new("https://127.0.0.1:8025", false, timeout).is_err());
        assert!(HttpClient::new("http://192.0.2.1:8025", false, timeout).is_err());
        assert!(HttpClient::new("http://192.0.2.1:8025", true, timeout).is_ok());
        let default_port = HttpClient::new("http://[::1]", false, timeout).unwrap();
        assert_eq!(default_port.addr.port(), 80);
    }
}
