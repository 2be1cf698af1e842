//! Spam verdicts from rspamd over its HTTP protocol (`POST /checkv2`): the request with
//! the envelope as headers, the reply's parse, the `X-Spam-*` block we prepend to the
//! stored message, and reading that block back for the message JSON. No IO here:
//! `net::smtp_checks` posts the request with `net::http_client` from the session's
//! executor, so a slow rspamd parks a task, never a thread.
//!
//! What comes back from rspamd is bounded and cleaned before it is kept: at most
//! `SYMBOLS_MAX` symbols, names and the action cut and limited to the characters rspamd
//! uses, scores rounded to hundredths (so the JSON read back from the header equals the
//! verdict that wrote it) and non-finite ones refused.
//!
//! Privacy: the client's address goes to rspamd in the request (its IP checks need it)
//! and is dropped with it; the header block never names it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use serde::{Deserialize, Serialize};

/// Symbols kept from one reply, the heaviest (by absolute score) first; rspamd reports
/// 10 to 40 for ordinary mail.
pub const SYMBOLS_MAX: usize = 64;
/// Longest symbol name kept (rspamd's own are under 40 bytes).
pub const SYMBOL_NAME_BYTES_MAX: usize = 64;
/// Longest action name kept ("rewrite subject" is the longest built-in one).
pub const ACTION_BYTES_MAX: usize = 32;
/// Largest reply body read from rspamd; its reply with every description is a few KiB.
pub const REPLY_BYTES_MAX: usize = 256 * 1024;
/// rspamd's normal worker port, when `--rspamd` names none.
pub const DEFAULT_PORT: u16 = 11333;

/// The header fields of our block, as written; with `--rspamd` these (and `X-Spam` and
/// `X-Spam-Flag`, `X-Spam-Level`, which other filters write) are removed from incoming
/// mail, so a reader never mistakes a sender's claim for our verdict.
const STATUS_FIELD: &str = "X-Spam-Status";
const ACTION_FIELD: &str = "X-Spam-Action";
const SYMBOLS_FIELD: &str = "X-Spam-Symbols";
const FOREIGN_FIELDS: [&str; 4] = ["X-Spam-Score", "X-Spam-Flag", "X-Spam-Level", "X-Spam"];
/// Folded header lines are kept under this many bytes, RFC 5322's recommended 78.
const LINE_BYTES_MAX: usize = 78;
/// rspamd's actions that mean "this is spam" (its lower ones, `no action` and
/// `greylist`, do not).
const SPAM_ACTIONS: [&str; 4] = ["add header", "rewrite subject", "soft reject", "reject"];

/// Where rspamd listens (`--rspamd http://HOST[:PORT][/PREFIX]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Resolved once, at start-up.
    pub addr: SocketAddr,
    /// The `Host` header: the URL's host and port as written.
    pub host: String,
    /// The request path: the URL's path prefix and `/checkv2`.
    pub path: String,
}

impl Endpoint {
    /// Parses and resolves a `--rspamd` URL. Plain HTTP only: rspamd runs beside the
    /// MTA (loopback or a private network), and its own protocol has no TLS either.
    ///
    /// # Errors
    /// Not an `http://` URL, a bad port, or a host that does not resolve.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: expected http://HOST[:PORT][/PATH]"))?;
        let (authority, prefix) = match rest.find('/') {
            Some(idx) => (&rest[..idx], rest[idx..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty()
            || prefix
                .bytes()
                .any(|b| !b.is_ascii_graphic() || matches!(b, b'?' | b'#'))
        {
            return Err(format!("{url:?}: expected http://HOST[:PORT][/PATH]"));
        }
        let has_port = match authority.rfind(':') {
            // An IPv6 literal's colons are inside brackets.
            Some(idx) => !authority[idx..].contains(']'),
            None => false,
        };
        let target = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:{DEFAULT_PORT}")
        };
        let addr = target
            .to_socket_addrs()
            .map_err(|error| format!("{url:?}: {error}"))?
            .next()
            .ok_or_else(|| format!("{url:?}: the host has no address"))?;
        Ok(Endpoint {
            addr,
            host: authority.to_string(),
            path: format!("{prefix}/checkv2"),
        })
    }
}

/// What rspamd is told about one message besides its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// MAIL FROM without brackets, empty for `<>`.
    pub mail_from: &'a str,
    /// RCPT TO addresses, one per line (as `Transaction::rcpts_text` keeps them).
    pub rcpts_text: &'a str,
    pub helo: &'a str,
    pub client_ip: Option<IpAddr>,
    pub queue_id: &'a str,
    /// Our hostname (rspamd's `MTA-Name`).
    pub mta_name: &'a str,
}

/// The HTTP request head for `POST /checkv2` with a body of `body_bytes` bytes: rspamd's
/// protocol carries the envelope as request headers (`From`, one `Rcpt` per recipient,
/// `IP`, `Helo`, `Queue-Id`). `Connection: close`: one request per connection, so no
/// connection state outlives a check.
pub fn request_head(endpoint: &Endpoint, envelope: &Envelope<'_>, body_bytes: usize) -> Vec<u8> {
    let mut head = String::with_capacity(256 + envelope.rcpts_text.len());
    let _ = write!(
        head,
        "POST {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: mayfly\r\n\
         Content-Length: {body_bytes}\r\n",
        endpoint.path, endpoint.host
    );
    push_field(&mut head, "From", envelope.mail_from);
    for rcpt in envelope.rcpts_text.lines() {
        push_field(&mut head, "Rcpt", rcpt);
    }
    if let Some(ip) = envelope.client_ip {
        let _ = write!(head, "IP: {}\r\n", ip.to_canonical());
    }
    push_field(&mut head, "Helo", envelope.helo);
    push_field(&mut head, "Queue-Id", envelope.queue_id);
    push_field(&mut head, "MTA-Name", envelope.mta_name);
    head.push_str("\r\n");
    head.into_bytes()
}

/// Appends `name: value` unless the value is empty; anything but printable ASCII (a
/// UTF-8 address is sent as is) becomes `?`, so no value can end the line.
fn push_field(head: &mut String, name: &str, value: &str) {
    if value.is_empty() {
        return;
    }
    head.push_str(name);
    head.push_str(": ");
    head.extend(value.chars().map(|ch| {
        if ch.is_control() || ch == '\u{7f}' {
            '?'
        } else {
            ch
        }
    }));
    head.push_str("\r\n");
}

/// One rspamd symbol that matched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Symbol {
    pub name: String,
    pub score: f64,
}

/// rspamd's verdict on one message, as the message JSON shows it (`spam`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub score: f64,
    /// rspamd's score for its `reject` action.
    pub required_score: f64,
    /// rspamd's action: `no action`, `greylist`, `add header`, `rewrite subject`,
    /// `soft reject` or `reject` (or one the operator defined).
    pub action: String,
    /// Whether the action is one of rspamd's spam actions (`add header` and up).
    pub is_spam: bool,
    /// Heaviest first.
    pub symbols: Vec<Symbol>,
}

impl Verdict {
    /// Whether `--spam-reject-score` turns this message away.
    pub fn rejected_at(&self, reject_score: Option<f64>) -> bool {
        reject_score.is_some_and(|threshold| self.score >= threshold)
    }
}

/// Why a reply was not a verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("rspamd answered HTTP {0}")]
    Status(u16),
    #[error("rspamd's reply is not a verdict: {0}")]
    Malformed(String),
}

/// The parts of rspamd's `/checkv2` JSON reply we keep; the rest is ignored.
#[derive(Deserialize)]
struct Reply {
    score: f64,
    required_score: f64,
    action: String,
    #[serde(default)]
    symbols: BTreeMap<String, ReplySymbol>,
}

#[derive(Deserialize)]
struct ReplySymbol {
    #[serde(default)]
    score: f64,
}

/// Reads rspamd's reply (its HTTP status and body) into a bounded, cleaned verdict.
///
/// # Errors
/// A status other than 200, a body that is not rspamd's JSON, or a score that is not a
/// finite number.
pub fn parse_reply(status: u16, body: &[u8]) -> Result<Verdict, ReplyError> {
    if status != 200 {
        return Err(ReplyError::Status(status));
    }
    let reply: Reply =
        serde_json::from_slice(body).map_err(|error| ReplyError::Malformed(error.to_string()))?;
    let finite = |score: f64| {
        score
            .is_finite()
            .then(|| round(score))
            .ok_or_else(|| ReplyError::Malformed("a score is not a finite number".into()))
    };
    let mut symbols = Vec::with_capacity(reply.symbols.len().min(SYMBOLS_MAX));
    for (name, symbol) in reply.symbols {
        let name = clean(&name, SYMBOL_NAME_BYTES_MAX, |b| {
            b.is_ascii_alphanumeric() || b == b'_'
        });
        if !name.is_empty() {
            symbols.push(Symbol {
                name,
                score: finite(symbol.score)?,
            });
        }
    }
    sort_and_cut(&mut symbols);
    let action = clean(&reply.action, ACTION_BYTES_MAX, |b| {
        b.is_ascii_lowercase() || b == b' ' || b == b'_' || b == b'-'
    })
    .trim()
    .to_string();
    Ok(Verdict {
        score: finite(reply.score)?,
        required_score: finite(reply.required_score)?,
        is_spam: SPAM_ACTIONS.contains(&action.as_str()),
        action,
        symbols,
    })
}

/// Heaviest first (ties by name, so the order is stable), at most `SYMBOLS_MAX`.
fn sort_and_cut(symbols: &mut Vec<Symbol>) {
    symbols.sort_by(|a, b| {
        b.score
            .abs()
            .total_cmp(&a.score.abs())
            .then_with(|| a.name.cmp(&b.name))
    });
    symbols.truncate(SYMBOLS_MAX);
}

/// `text` with every byte `keep` refuses dropped, cut to `bytes_max`.
fn clean(text: &str, bytes_max: usize, keep: impl Fn(u8) -> bool) -> String {
    text.bytes()
        .filter(|&b| keep(b))
        .take(bytes_max)
        .map(char::from)
        .collect()
}

/// Hundredths, as the header writes them.
fn round(score: f64) -> f64 {
    (score * 100.0).round() / 100.0
}

/// Writes our header block, each field ending in CRLF, e.g.
///
/// ```text
/// X-Spam-Status: No, score=3.40 required=15.00
/// X-Spam-Action: no action
/// X-Spam-Symbols: MISSING_MID(2.50), MISSING_DATE(1.00), MIME_GOOD(-0.10),
/// <TAB>ARC_NA(0.00)
/// ```
pub fn header_block(verdict: &Verdict) -> String {
    let mut out = String::with_capacity(128 + verdict.symbols.len() * 24);
    let _ = write!(
        out,
        "{STATUS_FIELD}: {}, score={:.2} required={:.2}\r\n{ACTION_FIELD}: {}\r\n",
        if verdict.is_spam { "Yes" } else { "No" },
        verdict.score,
        verdict.required_score,
        if verdict.action.is_empty() {
            "unknown"
        } else {
            &verdict.action
        },
    );
    out.push_str(SYMBOLS_FIELD);
    out.push(':');
    let mut line_bytes = SYMBOLS_FIELD.len() + 1;
    for (idx, symbol) in verdict.symbols.iter().enumerate() {
        let item = format!(
            "{}({:.2}){}",
            symbol.name,
            symbol.score,
            if idx + 1 < verdict.symbols.len() {
                ","
            } else {
                ""
            }
        );
        if line_bytes + 1 + item.len() > LINE_BYTES_MAX && idx > 0 {
            out.push_str("\r\n\t");
            line_bytes = 1;
        } else {
            out.push(' ');
            line_bytes += 1;
        }
        out.push_str(&item);
        line_bytes += item.len();
    }
    out.push_str("\r\n");
    out
}

/// Whether `field` (a whole header field, as `auth::header::header_fields` yields it) is
/// one of the spam fields removed from incoming mail when rspamd is on.
pub fn is_spam_field(field: &[u8]) -> bool {
    let Some(colon_idx) = memchr::memchr(b':', field) else {
        return false;
    };
    let name = field[..colon_idx].trim_ascii_end();
    [STATUS_FIELD, ACTION_FIELD, SYMBOLS_FIELD]
        .into_iter()
        .chain(FOREIGN_FIELDS)
        .any(|ours| name.eq_ignore_ascii_case(ours.as_bytes()))
}

/// `raw` without its incoming spam fields, or `None` when it has none.
pub fn strip_incoming(raw: &[u8]) -> Option<Vec<u8>> {
    crate::auth::header::strip_fields(raw, is_spam_field)
}

/// Reads back the block `header_block` wrote, from the fields we prepended (those above
/// our own `Received:` field: a sender's come below it). `None` when there is no such
/// block (rspamd off, or no verdict in time) or it is not ours.
pub fn parse_ours<'a>(prepended: impl Iterator<Item = (&'a str, &'a str)>) -> Option<Verdict> {
    let (mut status, mut action, mut symbols) = (None, None, None);
    for (name, value) in prepended {
        if name.eq_ignore_ascii_case(STATUS_FIELD) {
            status = Some(value);
        } else if name.eq_ignore_ascii_case(ACTION_FIELD) {
            action = Some(value.trim());
        } else if name.eq_ignore_ascii_case(SYMBOLS_FIELD) {
            symbols = Some(value);
        }
    }
    let (flag, scores) = status?.trim().split_once(", ")?;
    let is_spam = match flag {
        "Yes" => true,
        "No" => false,
        _ => return None,
    };
    let mut words = scores.split_whitespace();
    let score = words.next()?.strip_prefix("score=")?.parse().ok()?;
    let required_score = words.next()?.strip_prefix("required=")?.parse().ok()?;
    let mut parsed = Vec::new();
    for item in symbols.unwrap_or_default().split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (name, score) = item.strip_suffix(')')?.split_once('(')?;
        parsed.push(Symbol {
            name: name.to_string(),
            score: score.parse().ok()?,
        });
    }
    Some(Verdict {
        score,
        required_score,
        action: action
            .filter(|a| *a != "unknown")
            .unwrap_or_default()
            .to_string(),
        is_spam,
        symbols: parsed,
    })
}

#[cfg(test)]
mod tests;
