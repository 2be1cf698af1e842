//! The JSON API (`docs/api.md`, version 1): which endpoint a request is for, and what an
//! inbox operation answers.
//!
//! `route` needs no shard: it validates the request (method, address, query, body) so the
//! caller can forward a ready `InboxRequest` to the shard that owns the inbox. `execute`
//! runs there, against that shard's `Shard`. Neither does IO; long polls are the caller's:
//! `execute` says `Outcome::Wait` and the caller parks the request until a message arrives
//! or the wait is over, then calls `execute` again.
//!
//! Choices the contract leaves open:
//! - `after=` with an empty value or `null` means "no after" (a client may pass a
//!   `next_after` of `null` through as text); any other text that is not an id is a 400.
//! - Repeated query parameters: the last one wins. Unknown parameters are ignored.
//! - An id in a path that is not an id this server could issue is a 404, like an expired
//!   one: ids are opaque to clients.
//! - `POST /api/v1/addresses` on a catch-all server (no domain configured) without a
//!   `domain` in the body is a 400 asking for one, rather than inventing a domain that the
//!   server's MX records may not cover.
//! - The message view parses the message once and caches the result in the store
//!   (`MessageRef::parsed`); `text` is the first text body, or mail-parser's plain-text
//!   rendering of the HTML body when there is no text/plain part; `html` is the first
//!   text/html body after `mail::sanitize` (never raw HTML), or `null`.
//! - Attachments are the top-level parts mail-parser lists as attachments, numbered from 0
//!   in message order; a message/rfc822 part is one attachment (its own attachments are not
//!   listed). `filename` is `null` when the part names no file; a download of such a part is
//!   named `attachment-{index}` (`.eml` for a message). A download is the part's body with
//!   only its transfer encoding undone, so a text file keeps its charset, which its
//!   Content-Type names.
//! - An attachment index that is not a plain decimal number is a 404, like one out of range.
//! - `GET .../ws` without a WebSocket handshake is a 426; with one it routes to
//!   `Route::WebSocket` and the connection loop takes the socket over.

use std::borrow::Cow;

use serde_json::{Value, json};

use crate::config::DomainPolicy;
use crate::http::page;
use crate::http::request::{Method, Request, WebSocketUpgrade};
use crate::http::response::Response;
use crate::store::index::inbox_key;
use crate::store::{MessageId, MessageRef, Shard};

/// Messages per listing when `limit` is not given.
pub const LIMIT_DEFAULT: usize = 50;
/// Largest `limit`.
pub const LIMIT_MAX: usize = 1000;
/// Longest long poll, in seconds.
pub const WAIT_SECS_MAX: u64 = 60;
/// Length of a generated local part: 20 characters of 36 give 103 bits, over the 64 the
/// contract asks for.
pub const LOCAL_PART_CHARS: usize = 20;
/// Longest domain name (RFC 1035: 253 characters in text form).
pub const DOMAIN_BYTES_MAX: usize = 253;
/// Longest label of a domain name (RFC 1035).
pub const DOMAIN_LABEL_BYTES_MAX: usize = 63;
/// Path segments a known route has at most (`/api/v1/inboxes/{a}/messages/{id}/attachments/{n}`).
const PATH_SEGMENTS_MAX: usize = 9;
/// Longest file name offered in a Content-Disposition, in characters (longer names are cut).
pub const FILENAME_CHARS_MAX: usize = 200;
/// Security policy of attachment downloads: an HTML or SVG attachment opened in the browser
/// anyway runs nothing and loads nothing on this origin.
const ATTACHMENT_CSP: &str = "sandbox; default-src 'none'";
/// Characters of generated local parts.
const LOCAL_PART_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Every endpoint `route` knows: method and path template. `docs/openapi.json` describes
/// exactly these (a test holds it to that), and `route` answers 405 for other methods on
/// these paths and 404 for any other path.
pub const ENDPOINTS: [(&str, &str); 20] = [
    ("GET", "/"),
    ("HEAD", "/"),
    ("GET", "/static/{name}"),
    ("HEAD", "/static/{name}"),
    ("GET", "/healthz"),
    ("HEAD", "/healthz"),
    ("GET", "/metrics"),
    ("HEAD", "/metrics"),
    ("POST", "/api/v1/addresses"),
    ("GET", "/api/v1/inboxes/{address}"),
    ("HEAD", "/api/v1/inboxes/{address}"),
    ("DELETE", "/api/v1/inboxes/{address}"),
    ("GET", "/api/v1/inboxes/{address}/messages/{id}"),
    ("HEAD", "/api/v1/inboxes/{address}/messages/{id}"),
    ("DELETE", "/api/v1/inboxes/{address}/messages/{id}"),
    ("GET", "/api/v1/inboxes/{address}/messages/{id}/raw"),
    ("HEAD", "/api/v1/inboxes/{address}/messages/{id}/raw"),
    (
        "GET",
        "/api/v1/inboxes/{address}/messages/{id}/attachments/{index}",
    ),
    (
        "HEAD",
        "/api/v1/inboxes/{address}/messages/{id}/attachments/{index}",
    ),
    ("GET", "/api/v1/inboxes/{address}/ws"),
];

/// What a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /` and `GET /static/{name}`: the web page and its files.
    Asset(&'static page::Asset),
    /// `GET /healthz`.
    Healthz,
    /// `GET /metrics`.
    Metrics,
    /// `POST /api/v1/addresses`; `domain` is validated, lowercase, and accepted.
    CreateAddress { domain: Option<String> },
    /// Anything under `/api/v1/inboxes/{address}`: run `execute` on the inbox's shard.
    Inbox(InboxRequest),
    /// `GET /api/v1/inboxes/{address}/ws` with a valid handshake: answer 101 with
    /// `Sec-WebSocket-Accept: accept`, then push the inbox's new summaries.
    WebSocket { address: String, accept: String },
}

/// An operation on one inbox, ready to send to the shard that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxRequest {
    /// The inbox key: the lowercase address, whose domain the server accepts.
    pub address: String,
    pub op: InboxOp,
}

/// The inbox operations. `id: None` means the text in the path was not an id; executing
/// such an operation answers 404, as for a message that is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboxOp {
    /// `GET /api/v1/inboxes/{address}?after=&limit=&wait=`.
    List {
        after: Option<MessageId>,
        limit: usize,
        wait_secs: u64,
    },
    /// `GET .../messages/{id}`.
    Message { id: Option<MessageId> },
    /// `GET .../messages/{id}/raw`.
    Raw { id: Option<MessageId> },
    /// `GET .../messages/{id}/attachments/{index}`; `index: None` when the text is not an
    /// index, which answers 404.
    Attachment {
        id: Option<MessageId>,
        index: Option<usize>,
    },
    /// `DELETE .../messages/{id}`.
    DeleteMessage { id: Option<MessageId> },
    /// `DELETE /api/v1/inboxes/{address}`.
    DeleteInbox,
}

/// What `execute` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Send this.
    Ready(Response),
    /// A long poll found nothing yet: park the request and execute it again when a message
    /// arrives in the inbox (with `may_wait: true`) or when the wait is over (with `false`).
    Wait,
}

/// Methods a route accepts, for matching and for the `Allow` header of a 405.
#[derive(Clone, Copy)]
enum Allowed {
    Get,
    GetHead,
    GetHeadDelete,
    Post,
}

/// Finds the route of a request and validates everything that needs no shard.
///
/// # Errors
/// The response to send: 404 for an unknown path or an address the server does not accept
/// mail for, 405 (with `Allow`) for a known path with another method, 400 for bad query
/// values or a bad `POST /api/v1/addresses` body.
pub fn route(request: &Request, domains: &DomainPolicy) -> Result<Route, Response> {
    let mut segments = [""; PATH_SEGMENTS_MAX];
    let mut n_segments = 0;
    for segment in request.path.split('/') {
        if n_segments == PATH_SEGMENTS_MAX {
            return Err(not_found_path());
        }
        segments[n_segments] = segment;
        n_segments += 1;
    }
    let method = request.method;
    match &segments[..n_segments] {
        ["", ""] => allow(method, Allowed::GetHead).map(|_| Route::Asset(page::index())),
        ["", "static", name] => {
            allow(method, Allowed::GetHead)?;
            page::find(name)
                .map(Route::Asset)
                .ok_or_else(not_found_path)
        }
        ["", "healthz"] => allow(method, Allowed::GetHead).map(|_| Route::Healthz),
        ["", "metrics"] => allow(method, Allowed::GetHead).map(|_| Route::Metrics),
        ["", "api", "v1", "addresses"] => {
            allow(method, Allowed::Post)?;
            let domain = requested_domain(&request.body, domains)?;
            Ok(Route::CreateAddress { domain })
        }
        ["", "api", "v1", "inboxes", address] => {
            let is_delete = allow(method, Allowed::GetHeadDelete)?;
            let address = inbox_address(address, domains)?;
            let op = if is_delete {
                InboxOp::DeleteInbox
            } else {
                list_op(&request.query)?
            };
            Ok(Route::Inbox(InboxRequest { address, op }))
        }
        ["", "api", "v1", "inboxes", address, "messages", id] => {
            let is_delete = allow(method, Allowed::GetHeadDelete)?;
            let address = inbox_address(address, domains)?;
            let id = message_id(id);
            let op = if is_delete {
                InboxOp::DeleteMessage { id }
            } else {
                InboxOp::Message { id }
            };
            Ok(Route::Inbox(InboxRequest { address, op }))
        }
        ["", "api", "v1", "inboxes", address, "messages", id, "raw"] => {
            allow(method, Allowed::GetHead)?;
            let address = inbox_address(address, domains)?;
            Ok(Route::Inbox(InboxRequest {
                address,
                op: InboxOp::Raw { id: message_id(id) },
            }))
        }
        [
            "",
            "api",
            "v1",
            "inboxes",
            address,
            "messages",
            id,
            "attachments",
            index,
        ] => {
            allow(method, Allowed::GetHead)?;
            let address = inbox_address(address, domains)?;
            Ok(Route::Inbox(InboxRequest {
                address,
                op: InboxOp::Attachment {
                    id: message_id(id),
                    index: attachment_index(index),
                },
            }))
        }
        ["", "api", "v1", "inboxes", address, "ws"] => {
            allow(method, Allowed::Get)?;
            let address = inbox_address(address, domains)?;
            let accept = websocket_accept(request.websocket.as_ref())?;
            Ok(Route::WebSocket { address, accept })
        }
        _ => Err(not_found_path()),
    }
}

/// Checks a WebSocket opening handshake (RFC 6455 section 4.2.1) and derives the
/// `Sec-WebSocket-Accept` value.
///
/// # Errors
/// 426 (with `Upgrade` and `Sec-WebSocket-Version`) for a plain GET or another protocol
/// version, 400 for a key that is not 16 bytes in base64.
fn websocket_accept(upgrade: Option<&WebSocketUpgrade>) -> Result<String, Response> {
    let upgrade_required = |message: &str| {
        Response::error(426, "upgrade_required", message)
            .with_header("Upgrade", "websocket")
            .with_header("Sec-WebSocket-Version", "13")
    };
    let Some(upgrade) = upgrade else {
        return Err(upgrade_required(
            "this endpoint is a WebSocket: send Upgrade: websocket and Connection: Upgrade",
        ));
    };
    if upgrade.version != "13" {
        return Err(upgrade_required("only WebSocket version 13 is supported"));
    }
    if !is_websocket_key(&upgrade.key) {
        return Err(Response::error(
            400,
            "bad_request",
            "Sec-WebSocket-Key must be 16 bytes in base64",
        ));
    }
    Ok(async_tungstenite::tungstenite::handshake::derive_accept_key(upgrade.key.as_bytes()))
}

/// 16 bytes in base64 are 22 alphabet characters and `==`.
fn is_websocket_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    bytes.len() == 24
        && bytes.ends_with(b"==")
        && bytes[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Runs an inbox operation on the shard that owns the inbox. Expired messages are dropped
/// first, so an answer never shows a message past its `expires_at`.
pub fn execute(request: &InboxRequest, shard: &mut Shard, now_ms: u64, may_wait: bool) -> Outcome {
    shard.expire(now_ms);
    let address = request.address.as_str();
    let response = match request.op {
        InboxOp::List {
            after,
            limit,
            wait_secs,
        } => {
            let listing = shard.list(address, after, limit);
            if listing.messages.is_empty() && wait_secs > 0 && may_wait {
                return Outcome::Wait;
            }
            // The newest id in the inbox, or `after` if that is newer (nothing newer arrived,
            // or the inbox emptied): a client passing it back never goes backwards.
            let next_after = listing.newest.max(after);
            Response::json_from(
                200,
                &ListingJson {
                    address,
                    total: listing.total,
                    messages: listing.messages.iter().map(SummaryJson::of).collect(),
                    next_after: next_after.map(IdJson),
                },
            )
        }
        InboxOp::Message { id } => match id.and_then(|id| shard.get(address, id)) {
            Some(message) => Response::json_from(200, &MessageJson::of(&message)),
            None => no_such_message(),
        },
        InboxOp::Attachment { id, index } => match id.and_then(|id| shard.get(address, id)) {
            Some(message) => attachment_response(&message, index),
            None => no_such_message(),
        },
        InboxOp::Raw { id } => match id.and_then(|id| shard.get(address, id)) {
            Some(message) => Response::new(200, "message/rfc822", message.raw.to_vec())
                .with_header("Cache-Control", "no-store"),
            None => no_such_message(),
        },
        InboxOp::DeleteMessage { id } => {
            if id.is_some_and(|id| shard.delete_message(address, id)) {
                Response::empty(204)
            } else {
                no_such_message()
            }
        }
        InboxOp::DeleteInbox => {
            shard.delete_inbox(address);
            Response::empty(204)
        }
    };
    Outcome::Ready(response)
}

/// Answers `POST /api/v1/addresses`: 201 with a fresh random address at `domain` (or the
/// first configured domain). 400 if the domain is not accepted, or if none was asked on a
/// catch-all server; 500 if the system's random generator fails.
pub fn create_address(
    domain: Option<&str>,
    domains: &DomainPolicy,
    ttl_secs: u64,
    now_ms: u64,
) -> Response {
    let domain = match domain {
        Some(domain) => match checked_domain(domain, domains) {
            Ok(domain) => domain,
            Err(message) => return Response::error(400, "bad_request", &message),
        },
        None => match domains.first() {
            Some(first) => first.to_string(),
            None => {
                return Response::error(
                    400,
                    "bad_request",
                    "this server accepts mail for any domain: choose one with {\"domain\": \"...\"}",
                );
            }
        },
    };
    let local_part = match random_local_part() {
        Ok(local_part) => local_part,
        Err(error) => {
            return Response::error(
                500,
                "internal_error",
                &format!("random generator failed: {error}"),
            );
        }
    };
    Response::json(
        201,
        &json!({
            "address": format!("{local_part}@{domain}"),
            "domain": domain,
            "created_at": rfc3339(now_ms),
            "ttl_seconds": ttl_secs,
        }),
    )
}

/// A message `<summary>` as JSON text, as in a listing: one WebSocket frame.
pub fn summary_text(message: &MessageRef<'_>) -> String {
    serde_json::to_string(&SummaryJson::of(message)).unwrap_or_else(|_| "null".to_string())
}

/// The body of an inbox listing, serialized straight from the shard's memory.
#[derive(serde::Serialize)]
struct ListingJson<'a> {
    address: &'a str,
    total: usize,
    messages: Vec<SummaryJson<'a>>,
    next_after: Option<IdJson>,
}

/// A `<summary>`, borrowing everything from the store and its cached `Summary`.
#[derive(serde::Serialize)]
struct SummaryJson<'a> {
    id: IdJson,
    from: &'a str,
    to: RcptsJson<'a>,
    subject: &'a str,
    date: Option<Rfc3339>,
    received_at: Rfc3339,
    expires_at: Rfc3339,
    size: usize,
    preview: &'a str,
}

impl<'a> SummaryJson<'a> {
    fn of(message: &MessageRef<'a>) -> SummaryJson<'a> {
        let summary = message.summary();
        SummaryJson {
            id: IdJson(message.id),
            from: message.mail_from,
            to: RcptsJson(*message),
            subject: &summary.subject,
            date: summary.date_unix_secs.and_then(Rfc3339::of_secs),
            received_at: Rfc3339::of_ms(message.received_at_ms),
            expires_at: Rfc3339::of_ms(message.expires_at_ms),
            size: message.raw.len(),
            preview: &summary.preview,
        }
    }
}

/// A message id as its text form, written without an intermediate `String`.
struct IdJson(MessageId);

impl serde::Serialize for IdJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// The envelope recipients of the message's inbox, as a JSON array.
struct RcptsJson<'a>(MessageRef<'a>);

impl serde::Serialize for RcptsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.rcpts())
    }
}

/// An RFC 3339 UTC timestamp with seconds precision ("2026-11-27T22:15:44Z"), built on
/// the stack: listing 1000 messages formats 2000-3000 of these.
#[derive(Clone, Copy)]
struct Rfc3339([u8; 20]);

impl Rfc3339 {
    /// Years outside 0000-9999 (which RFC 3339 cannot express) give `None`.
    fn of_secs(unix_secs: i64) -> Option<Rfc3339> {
        // Days to civil date: Howard Hinnant's algorithm (proleptic Gregorian, UTC).
        let days = unix_secs.div_euclid(86_400);
        let second_of_day = unix_secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z.rem_euclid(146_097);
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_index = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * month_index + 2) / 5 + 1;
        let month = if month_index < 10 {
            month_index + 3
        } else {
            month_index - 9
        };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        if !(0..=9999).contains(&year) {
            return None;
        }
        let mut text = *b"0000-00-00T00:00:00Z";
        let mut put = |at: usize, value: i64, n_digits: usize| {
            let mut value = value;
            for digit_idx in (0..n_digits).rev() {
                text[at + digit_idx] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, year, 4);
        put(5, month, 2);
        put(8, day, 2);
        put(11, second_of_day / 3600, 2);
        put(14, second_of_day / 60 % 60, 2);
        put(17, second_of_day % 60, 2);
        Some(Rfc3339(text))
    }

    fn of_ms(unix_ms: u64) -> Rfc3339 {
        i64::try_from(unix_ms / 1000)
            .ok()
            .and_then(Rfc3339::of_secs)
            .unwrap_or(Rfc3339(*b"9999-12-31T23:59:59Z"))
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.0).unwrap_or("9999-12-31T23:59:59Z")
    }
}

impl serde::Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The URL path of the attachments of `message` as seen from its inbox, up to and
/// including the last `/` (the index follows). The address is percent-encoded except for
/// unreserved characters and `@`, so the path can go into an HTML attribute as it is.
pub fn attachments_path(message: &MessageRef<'_>) -> String {
    let mut path = String::from("/api/v1/inboxes/");
    for byte in message.inbox_key().bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~@".contains(&byte) {
            path.push(char::from(byte));
        } else {
            path.push_str(&format!("%{byte:02X}"));
        }
    }
    path.push_str(&format!("/messages/{}/attachments/", message.id));
    path
}

/// The message view, borrowing from the store and its cached parse.
#[derive(serde::Serialize)]
struct MessageJson<'a> {
    #[serde(flatten)]
    summary: SummaryJson<'a>,
    headers: Vec<(Cow<'a, str>, String)>,
    text: Option<Cow<'a, str>>,
    html: Option<String>,
    attachments: Vec<AttachmentJson<'a>>,
}

impl<'a> MessageJson<'a> {
    fn of(message: &MessageRef<'a>) -> MessageJson<'a> {
        let parsed = message.parsed();
        MessageJson {
            summary: SummaryJson::of(message),
            headers: parsed.headers(message.raw).collect(),
            text: parsed.text(message.raw),
            html: parsed.html(&attachments_path(message)),
            attachments: parsed
                .attachments()
                .iter()
                .enumerate()
                .map(|(index, attachment)| AttachmentJson {
                    index,
                    filename: attachment.filename.as_deref(),
                    content_type: &attachment.content_type,
                    size: attachment.size_bytes,
                })
                .collect(),
        }
    }
}

/// One entry of a message view's `attachments`.
#[derive(serde::Serialize)]
struct AttachmentJson<'a> {
    index: usize,
    filename: Option<&'a str>,
    content_type: &'a str,
    size: usize,
}

/// The download of attachment `index` of `message`, or a 404.
fn attachment_response(message: &MessageRef<'_>, index: Option<usize>) -> Response {
    let parsed = message.parsed();
    let found = index.and_then(|index| {
        let attachment = parsed.attachments().get(index)?;
        Some((
            index,
            attachment,
            parsed.attachment_bytes(message.raw, index)?,
        ))
    });
    let Some((index, attachment, bytes)) = found else {
        return Response::error(404, "not_found", "no such attachment in this message");
    };
    let filename = match attachment.filename.as_deref() {
        Some(filename) => filename.to_string(),
        None if attachment.content_type.starts_with("message/rfc822") => {
            format!("attachment-{index}.eml")
        }
        None => format!("attachment-{index}"),
    };
    // The content type is dynamic, so it goes in as a header field (an empty
    // `content_type` writes none of its own).
    Response::new(200, "", bytes.into_owned())
        .with_header("Content-Type", attachment.content_type.to_string())
        .with_header("Content-Disposition", content_disposition(&filename))
        .with_header("Content-Security-Policy", ATTACHMENT_CSP)
        .with_header("Cache-Control", "no-store")
}

/// `attachment; filename="..."` with an ASCII fallback in which quotes, backslashes, path
/// separators, controls and non-ASCII characters are `_`, plus RFC 6266 / RFC 8187
/// `filename*=UTF-8''...` when the fallback differs from the name.
fn content_disposition(filename: &str) -> String {
    let name: String = filename
        .chars()
        .filter(|ch| !ch.is_control())
        .map(|ch| if matches!(ch, '/' | '\\') { '_' } else { ch })
        .take(FILENAME_CHARS_MAX)
        .collect();
    let fallback: String = name
        .chars()
        .map(|ch| {
            if ch.is_ascii() && ch != '"' && ch != '%' {
                ch
            } else {
                '_'
            }
        })
        .collect();
    let mut header = format!("attachment; filename=\"{fallback}\"");
    if fallback != name {
        header.push_str("; filename*=UTF-8''");
        for byte in name.bytes() {
            // RFC 8187 attr-char.
            if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
                header.push(char::from(byte));
            } else {
                header.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    header
}

/// RFC 3339 UTC with seconds precision, e.g. `2026-11-27T22:15:44Z`. Times past year 9999
/// are shown as its last second.
pub fn rfc3339(unix_ms: u64) -> String {
    Rfc3339::of_ms(unix_ms).as_str().to_string()
}

/// Checks that `method` is allowed; returns whether it is DELETE.
fn allow(method: Method, allowed: Allowed) -> Result<bool, Response> {
    let (ok, allow_header) = match allowed {
        Allowed::Get => (method == Method::Get, "GET"),
        Allowed::GetHead => (matches!(method, Method::Get | Method::Head), "GET, HEAD"),
        Allowed::GetHeadDelete => (
            matches!(method, Method::Get | Method::Head | Method::Delete),
            "GET, HEAD, DELETE",
        ),
        Allowed::Post => (method == Method::Post, "POST"),
    };
    if !ok {
        return Err(Response::error(
            405,
            "method_not_allowed",
            &format!("this path allows {allow_header}"),
        )
        .with_header("Allow", allow_header));
    }
    Ok(method == Method::Delete)
}

fn not_found_path() -> Response {
    Response::error(404, "not_found", "no such endpoint")
}

fn no_such_message() -> Response {
    Response::error(404, "not_found", "no such message in this inbox")
}

/// The inbox key of a percent-encoded `{address}` segment, if the server accepts its domain.
fn inbox_address(segment: &str, domains: &DomainPolicy) -> Result<String, Response> {
    let decoded = percent_decode(segment).ok_or_else(|| {
        Response::error(400, "bad_request", "bad percent-encoding in the address")
    })?;
    let address = inbox_key(&decoded).into_owned();
    let not_accepted = || {
        Response::error(
            404,
            "not_found",
            "not an address this server accepts mail for",
        )
    };
    let Some((local_part, domain)) = address.rsplit_once('@') else {
        return Err(not_accepted());
    };
    if local_part.is_empty()
        || domain.is_empty()
        // Spaces are legal inside a quoted local part ("john doe"@example.test), so only
        // control characters rule an address out here.
        || address.chars().any(char::is_control)
        || !domains.accepts(domain)
    {
        return Err(not_accepted());
    }
    Ok(address)
}

fn message_id(segment: &str) -> Option<MessageId> {
    segment.parse().ok()
}

/// A plain decimal attachment index (`usize::from_str` would also take `+1`).
fn attachment_index(segment: &str) -> Option<usize> {
    if segment.is_empty() || !segment.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    segment.parse().ok()
}

/// The `List` operation of a query string.
fn list_op(query: &str) -> Result<InboxOp, Response> {
    let (mut after, mut limit, mut wait_secs) = (None, LIMIT_DEFAULT, 0);
    let bad = |message: &str| Response::error(400, "bad_request", message);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value =
            percent_decode(value).ok_or_else(|| bad("bad percent-encoding in the query"))?;
        match name {
            "after" => {
                after = match value.as_str() {
                    "" | "null" => None,
                    text => Some(text.parse().map_err(|_| bad("after is not a message id"))?),
                };
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|limit| (1..=LIMIT_MAX).contains(limit))
                    .ok_or_else(|| {
                        bad(&format!("limit must be an integer from 1 to {LIMIT_MAX}"))
                    })?;
            }
            "wait" => {
                wait_secs = value
                    .parse()
                    .ok()
                    .filter(|wait_secs| *wait_secs <= WAIT_SECS_MAX)
                    .ok_or_else(|| {
                        bad(&format!(
                            "wait must be an integer from 0 to {WAIT_SECS_MAX}"
                        ))
                    })?;
            }
            _ => {}
        }
    }
    Ok(InboxOp::List {
        after,
        limit,
        wait_secs,
    })
}

/// The `domain` of a `POST /api/v1/addresses` body: empty, or a JSON object whose optional
/// `domain` is a string (or null).
fn requested_domain(body: &[u8], domains: &DomainPolicy) -> Result<Option<String>, Response> {
    let bad = |message: &str| Response::error(400, "bad_request", message);
    if body.trim_ascii().is_empty() {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| bad(&format!("the body is not JSON: {error}")))?;
    let Value::Object(object) = value else {
        return Err(bad("the body must be a JSON object"));
    };
    match object.get("domain") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(domain)) => checked_domain(domain, domains)
            .map(Some)
            .map_err(|message| bad(&message)),
        Some(_) => Err(bad("domain must be a string")),
    }
}

/// A domain name in lowercase without a trailing dot, if it is well-formed (ASCII letters,
/// digits and hyphens; IDNs in their punycode form) and the server accepts mail for it.
fn checked_domain(domain: &str, domains: &DomainPolicy) -> Result<String, String> {
    let domain = domain
        .trim()
        .strip_suffix('.')
        .unwrap_or(domain.trim())
        .to_ascii_lowercase();
    let well_formed = !domain.is_empty()
        && domain.len() <= DOMAIN_BYTES_MAX
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= DOMAIN_LABEL_BYTES_MAX
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if !well_formed {
        return Err(format!(
            "{domain:?} is not a domain name (use letters, digits and hyphens; IDNs in punycode)"
        ));
    }
    if !domains.accepts(&domain) {
        return Err(format!("this server does not accept mail for {domain}"));
    }
    Ok(domain)
}

/// `LOCAL_PART_CHARS` characters of `[a-z0-9]` from the operating system's secure random
/// generator, without modulo bias (bytes of 252 and above are skipped: 252 = 7 * 36).
fn random_local_part() -> Result<String, getrandom::Error> {
    let mut local_part = String::with_capacity(LOCAL_PART_CHARS);
    let mut random = [0u8; 2 * LOCAL_PART_CHARS];
    while local_part.len() < LOCAL_PART_CHARS {
        getrandom::fill(&mut random)?;
        for &byte in random.iter().filter(|&&byte| byte < 252) {
            if local_part.len() == LOCAL_PART_CHARS {
                break;
            }
            local_part.push(char::from(LOCAL_PART_ALPHABET[usize::from(byte % 36)]));
        }
    }
    Ok(local_part)
}

/// Decodes `%XX` escapes; None for a bad escape or bytes that are not UTF-8. `+` stays `+`
/// (it is a legal address character, and we never read form-encoded data).
fn percent_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_string());
    }
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut byte_idx = 0;
    while byte_idx < bytes.len() {
        if bytes[byte_idx] == b'%' {
            let hex = bytes.get(byte_idx + 1..byte_idx + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            byte_idx += 3;
        } else {
            decoded.push(bytes[byte_idx]);
            byte_idx += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    /// The hand-written RFC 3339 formatter against the `time` crate, over 0000..=9999.
    #[test]
    fn rfc3339_matches_the_time_crate() {
        use time::OffsetDateTime;
        use time::macros::format_description;
        let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
        let first = OffsetDateTime::from_unix_timestamp(-62_167_219_200).expect("year 0");
        let last = OffsetDateTime::from_unix_timestamp(253_402_300_799).expect("year 9999");
        let mut unix_secs = first.unix_timestamp();
        // A stride that is not a multiple of a day or a year visits every field value.
        while unix_secs <= last.unix_timestamp() {
            let expected = OffsetDateTime::from_unix_timestamp(unix_secs)
                .expect("in range")
                .format(format)
                .expect("formattable");
            let ours = Rfc3339::of_secs(unix_secs).expect("in range");
            assert_eq!(ours.as_str(), expected, "{unix_secs}");
            unix_secs += 2_592_001 * 7 + 3_607;
        }
        assert!(Rfc3339::of_secs(first.unix_timestamp() - 1).is_none());
        assert!(Rfc3339::of_secs(last.unix_timestamp() + 1).is_none());
        assert_eq!(rfc3339(1_795_817_744_999), "2026-11-27T22:15:44Z");
    }

    use super::*;
    use crate::store::{Incoming, ShardConfig};

    const BOOT_MICROS: u64 = 1_764_000_000_000_000;
    const NOW_MS: u64 = 1_795_817_744_000; // 2026-11-27T22:15:44Z
    const RECEIVED: &str = "Received: from client by mayfly; Fri, 27 Nov 2026 22:15:44 +0000\r\n";

    fn domains() -> DomainPolicy {
        DomainPolicy::new(&["example.test", "*.wild.test"])
    }

    fn get(method: Method, target: &str, body: &str) -> Request {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Request {
            method,
            path: path.to_string(),
            query: query.to_string(),
            keep_alive: true,
            body: body.into(),
            websocket: None,
        }
    }

    fn upgrade(target: &str, key: &str, version: &str) -> Request {
        Request {
            websocket: Some(WebSocketUpgrade {
                key: key.to_string(),
                version: version.to_string(),
            }),
            ..get(Method::Get, target, "")
        }
    }

    /// RFC 6455 section 1.3's sample handshake, and each way to get it wrong.
    #[test]
    fn routes_websocket_handshakes() {
        let path = "/api/v1/inboxes/a@example.test/ws";
        let sample_key = "dGhlIHNhbXBsZSBub25jZQ==";
        assert_eq!(
            route(&upgrade(path, sample_key, "13"), &domains()),
            Ok(Route::WebSocket {
                address: "a@example.test".into(),
                accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into(),
            })
        );
        let status = |request: &Request| route(request, &domains()).err().map(|r| r.status);
        let cases = [
            (get(Method::Get, path, ""), Some(426)),
            (upgrade(path, sample_key, "8"), Some(426)),
            (upgrade(path, sample_key, ""), Some(426)),
            (upgrade(path, "", "13"), Some(400)),
            (upgrade(path, "dGhlIHNhbXBsZSBub25jZQ", "13"), Some(400)),
            (upgrade(path, "dGhlIHNhbXBsZSBub25jZ!==", "13"), Some(400)),
            (
                upgrade("/api/v1/inboxes/a@other.test/ws", sample_key, "13"),
                Some(404),
            ),
            (
                Request {
                    method: Method::Head,
                    ..upgrade(path, sample_key, "13")
                },
                Some(405),
            ),
        ];
        for (request, expected) in cases {
            assert_eq!(status(&request), expected, "{request:?}");
        }
        let plain = route(&get(Method::Get, path, ""), &domains()).expect_err("426");
        assert!(
            plain
                .headers
                .contains(&("Upgrade", "websocket".to_string()))
        );
        assert!(
            plain
                .headers
                .contains(&("Sec-WebSocket-Version", "13".to_string()))
        );
    }

    fn inbox(address: &str, op: InboxOp) -> Result<Route, u16> {
        Ok(Route::Inbox(InboxRequest {
            address: address.to_string(),
            op,
        }))
    }

    fn list(after: Option<MessageId>, limit: usize, wait_secs: u64) -> InboxOp {
        InboxOp::List {
            after,
            limit,
            wait_secs,
        }
    }

    #[test]
    fn routes_every_endpoint() {
        use Method::*;
        let id = MessageId {
            boot_micros: BOOT_MICROS,
            shard_idx: 1,
            seq: 7,
        };
        let id_text = id.to_string();
        let a = "a@example.test";
        let cases: Vec<(Method, String, &str, Result<Route, u16>)> = vec![
            (Get, "/".into(), "", Ok(Route::Asset(page::index()))),
            (Head, "/".into(), "", Ok(Route::Asset(page::index()))),
            (Post, "/".into(), "", Err(405)),
            (Get, "/healthz".into(), "", Ok(Route::Healthz)),
            (Get, "/metrics".into(), "", Ok(Route::Metrics)),
            (Delete, "/metrics".into(), "", Err(405)),
            (Get, "/nope".into(), "", Err(404)),
            (Get, "/healthz/".into(), "", Err(404)),
            (Get, "/api/v1/inboxes".into(), "", Err(404)),
            (Get, "/api/v1/inboxes/".into(), "", Err(404)),
            (Get, "/api/v1/inboxes/a@example.test/".into(), "", Err(404)),
            (Get, "/api/v2/inboxes/a@example.test".into(), "", Err(404)),
            (Get, "/a/b/c/d/e/f/g/h/i/j/k".into(), "", Err(404)),
            // Addresses and queries.
            (
                Get,
                "/api/v1/inboxes/a@example.test".into(),
                "",
                inbox(a, list(None, 50, 0)),
            ),
            (
                Head,
                "/api/v1/inboxes/a%40example.test".into(),
                "",
                inbox(a, list(None, 50, 0)),
            ),
            (
                Get,
                "/api/v1/inboxes/A%40Example.TEST".into(),
                "",
                inbox(a, list(None, 50, 0)),
            ),
            (
                Get,
                "/api/v1/inboxes/%C3%84@x.wild.test".into(),
                "",
                inbox("ä@x.wild.test", list(None, 50, 0)),
            ),
            (
                Get,
                "/api/v1/inboxes/a@example.test.".into(),
                "",
                inbox("a@example.test.", list(None, 50, 0)),
            ),
            (Get, "/api/v1/inboxes/a@other.test".into(), "", Err(404)),
            (Get, "/api/v1/inboxes/a".into(), "", Err(404)),
            (Get, "/api/v1/inboxes/@example.test".into(), "", Err(404)),
            // A quoted local part may hold spaces; control characters never.
            (
                Get,
                "/api/v1/inboxes/%22a%20B%22@example.test".into(),
                "",
                inbox("\"a b\"@example.test", list(None, 50, 0)),
            ),
            (
                Get,
                "/api/v1/inboxes/a%0Db@example.test".into(),
                "",
                Err(404),
            ),
            (Get, "/api/v1/inboxes/a%4@example.test".into(), "", Err(400)),
            (
                Get,
                "/api/v1/inboxes/a%ff@example.test".into(),
                "",
                Err(400),
            ),
            (
                Get,
                format!("/api/v1/inboxes/{a}?limit=1&wait=60&after={id_text}"),
                "",
                inbox(a, list(Some(id), 1, 60)),
            ),
            (
                Get,
                format!("/api/v1/inboxes/{a}?limit=1000&limit=2&x=y&&after="),
                "",
                inbox(a, list(None, 2, 0)),
            ),
            (
                Get,
                format!("/api/v1/inboxes/{a}?after=null&wait=0"),
                "",
                inbox(a, list(None, 50, 0)),
            ),
            (Get, format!("/api/v1/inboxes/{a}?limit=0"), "", Err(400)),
            (Get, format!("/api/v1/inboxes/{a}?limit=1001"), "", Err(400)),
            (Get, format!("/api/v1/inboxes/{a}?limit=-1"), "", Err(400)),
            (Get, format!("/api/v1/inboxes/{a}?wait=61"), "", Err(400)),
            (Get, format!("/api/v1/inboxes/{a}?wait=1.5"), "", Err(400)),
            (Get, format!("/api/v1/inboxes/{a}?after=xyz"), "", Err(400)),
            (Get, format!("/api/v1/inboxes/{a}?after=%zz"), "", Err(400)),
            (
                Delete,
                format!("/api/v1/inboxes/{a}?limit=0"),
                "",
                inbox(a, InboxOp::DeleteInbox),
            ),
            (Post, format!("/api/v1/inboxes/{a}"), "", Err(405)),
            (Other, format!("/api/v1/inboxes/{a}"), "", Err(405)),
            // Messages.
            (
                Get,
                format!("/api/v1/inboxes/{a}/messages/{id_text}"),
                "",
                inbox(a, InboxOp::Message { id: Some(id) }),
            ),
            (
                Get,
                format!("/api/v1/inboxes/{a}/messages/nope"),
                "",
                inbox(a, InboxOp::Message { id: None }),
            ),
            (
                Delete,
                format!("/api/v1/inboxes/{a}/messages/{id_text}"),
                "",
                inbox(a, InboxOp::DeleteMessage { id: Some(id) }),
            ),
            (
                Head,
                format!("/api/v1/inboxes/{a}/messages/{id_text}/raw"),
                "",
                inbox(a, InboxOp::Raw { id: Some(id) }),
            ),
            (
                Delete,
                format!("/api/v1/inboxes/{a}/messages/{id_text}/raw"),
                "",
                Err(405),
            ),
            (
                Get,
                format!("/api/v1/inboxes/a@other.test/messages/{id_text}"),
                "",
                Err(404),
            ),
            (
                Get,
                format!("/api/v1/inboxes/{a}/messages/{id_text}/attachments/0"),
                "",
                inbox(
                    a,
                    InboxOp::Attachment {
                        id: Some(id),
                        index: Some(0),
                    },
                ),
            ),
            (
                Head,
                format!("/api/v1/inboxes/{a}/messages/x/attachments/+1"),
                "",
                inbox(
                    a,
                    InboxOp::Attachment {
                        id: None,
                        index: None,
                    },
                ),
            ),
            (
                Get,
                format!(
                    "/api/v1/inboxes/{a}/messages/{id_text}/attachments/99999999999999999999999"
                ),
                "",
                inbox(
                    a,
                    InboxOp::Attachment {
                        id: Some(id),
                        index: None,
                    },
                ),
            ),
            (
                Get,
                format!("/api/v1/inboxes/a@other.test/messages/{id_text}/attachments/0"),
                "",
                Err(404),
            ),
            (
                Post,
                format!("/api/v1/inboxes/{a}/messages/{id_text}/attachments/0"),
                "",
                Err(405),
            ),
            (Get, format!("/api/v1/inboxes/{a}/ws"), "", Err(426)),
            (Get, "/api/v1/inboxes/a@other.test/ws".into(), "", Err(404)),
            // Creating addresses.
            (
                Post,
                "/api/v1/addresses".into(),
                "",
                Ok(Route::CreateAddress { domain: None }),
            ),
            (
                Post,
                "/api/v1/addresses".into(),
                " {} ",
                Ok(Route::CreateAddress { domain: None }),
            ),
            (
                Post,
                "/api/v1/addresses".into(),
                r#"{"domain": null}"#,
                Ok(Route::CreateAddress { domain: None }),
            ),
            (
                Post,
                "/api/v1/addresses".into(),
                r#"{"domain": "X.Wild.Test.", "other": 1}"#,
                Ok(Route::CreateAddress {
                    domain: Some("x.wild.test".into()),
                }),
            ),
            (
                Post,
                "/api/v1/addresses".into(),
                r#"{"domain": "other.test"}"#,
                Err(400),
            ),
            (
                Post,
                "/api/v1/addresses".into(),
                r#"{"domain": "bad_name.example.test"}"#,
                Err(400),
            ),
            (
                Post,
                "/api/v1/addresses".into(),
                r#"{"domain": 5}"#,
                Err(400),
            ),
            (
                Post,
                "/api/v1/addresses".into(),
                r#"["example.test"]"#,
                Err(400),
            ),
            (Post, "/api/v1/addresses".into(), "{", Err(400)),
            (Get, "/api/v1/addresses".into(), "", Err(405)),
        ];
        for (method, target, body, expected) in cases {
            let got =
                route(&get(method, &target, body), &domains()).map_err(|response| response.status);
            assert_eq!(got, expected, "{method:?} {target} {body}");
        }
    }

    #[test]
    fn errors_follow_the_contract() {
        let cases = [
            (
                Method::Post,
                "/healthz",
                405,
                "method_not_allowed",
                Some("GET, HEAD"),
            ),
            (
                Method::Get,
                "/api/v1/addresses",
                405,
                "method_not_allowed",
                Some("POST"),
            ),
            (
                Method::Post,
                "/api/v1/inboxes/a@example.test/messages/x",
                405,
                "method_not_allowed",
                Some("GET, HEAD, DELETE"),
            ),
            (Method::Get, "/nope", 404, "not_found", None),
            (
                Method::Get,
                "/api/v1/inboxes/a@example.test?limit=x",
                400,
                "bad_request",
                None,
            ),
        ];
        for (method, target, status, code, allow_header) in cases {
            let response = route(&get(method, target, ""), &domains()).expect_err("an error");
            let body: Value = serde_json::from_slice(&response.body).expect("JSON");
            assert_eq!(
                (response.status, body["error"]["code"].as_str()),
                (status, Some(code)),
                "{target}"
            );
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|message| !message.is_empty())
            );
            let got_allow = response
                .headers
                .iter()
                .find(|(name, _)| *name == "Allow")
                .map(|(_, value)| value.as_str());
            assert_eq!(got_allow, allow_header, "{target}");
        }
    }

    fn shard() -> Shard {
        Shard::new(ShardConfig {
            shard_idx: 1,
            boot_micros: BOOT_MICROS,
            ring_bytes: 64 * 1024,
            ttl_ms: 3_600_000,
            inbox_messages_max: 100,
        })
    }

    fn deliver(shard: &mut Shard, rcpts: &[&str], message: &str, now_ms: u64) -> MessageId {
        let parts: [&[u8]; 2] = [RECEIVED.as_bytes(), message.as_bytes()];
        let incoming = Incoming {
            mail_from: "bob@sender.test",
            rcpts,
            parts: &parts,
            received_at_ms: now_ms,
        };
        shard.insert(&incoming, now_ms).expect("fits")
    }

    fn run(shard: &mut Shard, address: &str, op: InboxOp, may_wait: bool) -> Outcome {
        execute(
            &InboxRequest {
                address: address.to_string(),
                op,
            },
            shard,
            NOW_MS,
            may_wait,
        )
    }

    fn ready_json(outcome: Outcome, status: u16) -> Value {
        let Outcome::Ready(response) = outcome else {
            panic!("expected a response, got {outcome:?}");
        };
        assert_eq!(response.status, status);
        assert_eq!(response.content_type, "application/json");
        serde_json::from_slice(&response.body).expect("JSON")
    }

    #[test]
    fn lists_summaries_newest_first() {
        let mut shard = shard();
        let a = "a@example.test";
        let first_message = "Subject: =?utf-8?q?Hej_d=C3=A5?=\r\n\
            Date: Fri, 27 Nov 2026 22:15:44 +0000\r\n\r\nHello\r\n  world\r\n";
        let first = deliver(
            &mut shard,
            &["A@example.test", "a@example.test", "b@example.test"],
            first_message,
            NOW_MS,
        );
        let second = deliver(
            &mut shard,
            &[a],
            "Subject: second\r\nDate: nonsense\r\n\r\n",
            NOW_MS + 1000,
        );
        let body = ready_json(run(&mut shard, a, list(None, 50, 0), true), 200);
        assert_eq!(body["address"], a);
        assert_eq!(body["total"], 2);
        assert_eq!(body["next_after"], second.to_string());
        let messages = body["messages"].as_array().expect("array");
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0]["id"], second.to_string());
        assert_eq!(messages[0]["date"], Value::Null);
        let summary = &messages[1];
        assert_eq!(
            *summary,
            json!({
                "id": first.to_string(),
                "from": "bob@sender.test",
                "to": ["A@example.test", "a@example.test"],
                "subject": "Hej då",
                "date": "2026-11-27T22:15:44Z",
                "received_at": "2026-11-27T22:15:44Z",
                "expires_at": "2026-11-27T23:15:44Z",
                "size": RECEIVED.len() + first_message.len(),
                "preview": "Hello world",
            })
        );

        // `after` and `limit`.
        let cases = [
            (Some(first), 50, vec![second], Some(second)),
            (Some(second), 50, vec![], Some(second)),
            (None, 1, vec![second], Some(second)),
            (
                Some(MessageId { seq: 99, ..second }),
                50,
                vec![],
                Some(MessageId { seq: 99, ..second }),
            ),
        ];
        for (after, limit, expected_ids, expected_next) in cases {
            let body = ready_json(run(&mut shard, a, list(after, limit, 0), true), 200);
            let ids: Vec<String> = expected_ids.iter().map(MessageId::to_string).collect();
            let got: Vec<&str> = body["messages"]
                .as_array()
                .expect("array")
                .iter()
                .filter_map(|m| m["id"].as_str())
                .collect();
            assert_eq!(got, ids, "after {after:?}");
            assert_eq!(
                body["next_after"],
                json!(expected_next.map(|id| id.to_string())),
                "after {after:?}"
            );
            assert_eq!(body["total"], 2);
        }
        let body = ready_json(
            run(&mut shard, "nobody@example.test", list(None, 50, 0), true),
            200,
        );
        assert_eq!(
            body,
            json!({"address": "nobody@example.test", "total": 0, "messages": [], "next_after": null})
        );
    }

    #[test]
    fn long_polls_wait_only_when_nothing_matches() {
        let mut shard = shard();
        let a = "a@example.test";
        assert_eq!(run(&mut shard, a, list(None, 50, 5), true), Outcome::Wait);
        let body = ready_json(run(&mut shard, a, list(None, 50, 5), false), 200);
        assert_eq!(body["messages"], json!([]));
        let id = deliver(&mut shard, &[a], "\r\nhi", NOW_MS);
        assert!(matches!(
            run(&mut shard, a, list(None, 50, 5), true),
            Outcome::Ready(_)
        ));
        assert_eq!(
            run(&mut shard, a, list(Some(id), 50, 5), true),
            Outcome::Wait
        );
        assert!(matches!(
            run(&mut shard, a, list(Some(id), 50, 0), true),
            Outcome::Ready(_)
        ));
    }

    #[test]
    fn reads_a_message_and_its_raw_bytes() {
        let mut shard = shard();
        let a = "a@example.test";
        let message = "From: =?utf-8?q?J=C3=B6rg?= <j@sender.test>\r\nSubject: Hi\r\n  there\r\n\
            Content-Type: text/html\r\n\r\n<p>Hi <script>alert(1)</script><b>you</b></p>\r\n";
        let id = deliver(&mut shard, &[a], message, NOW_MS);
        let body = ready_json(
            run(&mut shard, a, InboxOp::Message { id: Some(id) }, true),
            200,
        );
        assert_eq!(
            body["headers"],
            json!([
                [
                    "Received",
                    "from client by mayfly; Fri, 27 Nov 2026 22:15:44 +0000"
                ],
                ["From", "Jörg <j@sender.test>"],
                ["Subject", "Hi there"],
                ["Content-Type", "text/html"],
            ])
        );
        assert_eq!(body["subject"], "Hi there");
        assert_eq!(body["html"], "<p>Hi <b>you</b></p>\n");
        assert_eq!(body["attachments"], json!([]));
        let text = body["text"].as_str().expect("text");
        assert!(
            text.contains("Hi") && text.contains("you") && !text.contains('<'),
            "{text:?}"
        );

        let Outcome::Ready(raw) = run(&mut shard, a, InboxOp::Raw { id: Some(id) }, true) else {
            panic!("not ready")
        };
        assert_eq!((raw.status, raw.content_type), (200, "message/rfc822"));
        assert!(
            raw.body.starts_with(b"Received: from client")
                && raw.body.ends_with(message.as_bytes())
        );

        for op in [
            InboxOp::Message { id: None },
            InboxOp::Raw { id: None },
            InboxOp::Raw {
                id: Some(MessageId { seq: 2, ..id }),
            },
            InboxOp::DeleteMessage { id: None },
        ] {
            let body = ready_json(run(&mut shard, a, op.clone(), true), 404);
            assert_eq!(body["error"]["code"], "not_found", "{op:?}");
        }
        let body = ready_json(
            run(
                &mut shard,
                "b@example.test",
                InboxOp::Message { id: Some(id) },
                true,
            ),
            404,
        );
        assert_eq!(body["error"]["code"], "not_found");
    }

    #[test]
    fn serves_attachments_and_rewrites_inline_images() {
        let mut shard = shard();
        let a = "a+b@example.test";
        let message = "Subject: files\r\n\
            Content-Type: multipart/mixed; boundary=XX\r\n\r\n\
            --XX\r\n\
            Content-Type: text/html\r\n\r\n\
            <img src=\"cid:pic\"><a href=\"https://ok.test\">ok</a>\r\n\
            --XX\r\n\
            Content-Type: image/gif; name=\"\\\"x\\\"/..\\\\evil.gif\"\r\n\
            Content-ID: <pic>\r\n\
            Content-Transfer-Encoding: base64\r\n\r\n\
            R0lGODlh\r\n\
            --XX\r\n\
            Content-Type: application/octet-stream\r\n\
            Content-Disposition: attachment\r\n\r\n\
            raw bytes\r\n\
            --XX--\r\n";
        let id = deliver(&mut shard, &[a], message, NOW_MS);
        let body = ready_json(
            run(&mut shard, a, InboxOp::Message { id: Some(id) }, true),
            200,
        );
        let prefix = format!("/api/v1/inboxes/a%2Bb@example.test/messages/{id}/attachments/");
        assert_eq!(
            body["html"],
            format!(
                "<img src=\"{prefix}0\"><a href=\"https://ok.test\" target=\"_blank\" \
                 rel=\"noopener noreferrer\">ok</a>"
            )
        );
        assert_eq!(
            body["attachments"],
            json!([
                {"index": 0, "filename": "\"x\"/..\\evil.gif", "content_type": "image/gif", "size": 6},
                {"index": 1, "filename": null, "content_type": "application/octet-stream", "size": 9},
            ])
        );
        /// Content-Type, Content-Disposition and body of a download.
        type Download<'t> = (&'t str, &'t str, &'t [u8]);
        let cases: [(Option<usize>, Option<Download<'_>>); 4] = [
            (
                Some(0),
                Some((
                    "image/gif",
                    "attachment; filename=\"_x__.._evil.gif\"; filename*=UTF-8''%22x%22_.._evil.gif",
                    b"GIF89a",
                )),
            ),
            (
                Some(1),
                Some((
                    "application/octet-stream",
                    "attachment; filename=\"attachment-1\"",
                    b"raw bytes",
                )),
            ),
            (Some(2), None),
            (None, None),
        ];
        for (index, expected) in cases {
            let outcome = run(
                &mut shard,
                a,
                InboxOp::Attachment {
                    id: Some(id),
                    index,
                },
                true,
            );
            match expected {
                Some((content_type, disposition, bytes)) => {
                    let Outcome::Ready(response) = outcome else {
                        panic!("not ready");
                    };
                    assert_eq!(response.status, 200);
                    let header = |name: &str| {
                        response
                            .headers
                            .iter()
                            .find(|(key, _)| *key == name)
                            .map(|(_, value)| value.as_str())
                    };
                    assert_eq!(header("Content-Type"), Some(content_type));
                    assert_eq!(header("Content-Disposition"), Some(disposition));
                    assert_eq!(header("Content-Security-Policy"), Some(ATTACHMENT_CSP));
                    assert_eq!(response.body, bytes);
                }
                None => {
                    let body = ready_json(outcome, 404);
                    assert_eq!(body["error"]["code"], "not_found");
                }
            }
        }
        let gone = InboxOp::Attachment {
            id: Some(MessageId { seq: 9, ..id }),
            index: Some(0),
        };
        ready_json(run(&mut shard, a, gone, true), 404);
    }

    /// `ENDPOINTS` is the routing table: each listed method routes (the WebSocket path
    /// answers 426 without a handshake), every other method on it is a 405.
    #[test]
    fn endpoints_list_what_route_serves() {
        use Method::*;
        let concrete = |template: &str| {
            template
                .replace("{address}", "a%40example.test")
                .replace("{id}", "nope")
                .replace("{index}", "0")
                .replace("{name}", "index.html")
        };
        for (_, template) in ENDPOINTS {
            for method in [Get, Head, Post, Delete, Other] {
                let name = match method {
                    Get => "GET",
                    Head => "HEAD",
                    Post => "POST",
                    Delete => "DELETE",
                    Other => "OTHER",
                };
                let listed = ENDPOINTS.contains(&(name, template));
                let path = concrete(template);
                let status = match route(&get(method, &path, ""), &domains()) {
                    Ok(_) => 200,
                    Err(response) => response.status,
                };
                let expected = match (listed, template.ends_with("/ws")) {
                    (true, true) => 426,
                    (true, false) => 200,
                    (false, _) => 405,
                };
                assert_eq!(status, expected, "{name} {path}");
            }
        }
    }

    #[test]
    fn content_dispositions_are_safe() {
        let long = "a".repeat(FILENAME_CHARS_MAX + 10);
        let long_expected = format!(
            "attachment; filename=\"{}\"",
            "a".repeat(FILENAME_CHARS_MAX)
        );
        let cases = [
            ("report.pdf", "attachment; filename=\"report.pdf\""),
            (
                "résumé.pdf",
                "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf",
            ),
            (
                "a\"b\r\nX-Evil: 1.txt",
                "attachment; filename=\"a_bX-Evil: 1.txt\"; filename*=UTF-8''a%22bX-Evil%3A%201.txt",
            ),
            (
                "../../etc/passwd",
                "attachment; filename=\".._.._etc_passwd\"",
            ),
            (
                "100%.txt",
                "attachment; filename=\"100_.txt\"; filename*=UTF-8''100%25.txt",
            ),
            (long.as_str(), long_expected.as_str()),
        ];
        for (filename, expected) in cases {
            assert_eq!(content_disposition(filename), expected, "{filename:?}");
        }
    }

    #[test]
    fn deletes_and_expires() {
        let mut shard = shard();
        let a = "a@example.test";
        let id = deliver(&mut shard, &[a], "\r\n1", NOW_MS);
        deliver(&mut shard, &[a], "\r\n2", NOW_MS);
        let deleted = run(&mut shard, a, InboxOp::DeleteMessage { id: Some(id) }, true);
        assert_eq!(deleted, Outcome::Ready(Response::empty(204)));
        ready_json(
            run(&mut shard, a, InboxOp::DeleteMessage { id: Some(id) }, true),
            404,
        );
        assert_eq!(
            ready_json(run(&mut shard, a, list(None, 50, 0), true), 200)["total"],
            1
        );
        assert_eq!(
            run(&mut shard, a, InboxOp::DeleteInbox, true),
            Outcome::Ready(Response::empty(204))
        );
        assert_eq!(
            run(&mut shard, a, InboxOp::DeleteInbox, true),
            Outcome::Ready(Response::empty(204))
        );
        assert_eq!(
            ready_json(run(&mut shard, a, list(None, 50, 0), true), 200)["total"],
            0
        );
        // Expired messages are never shown, even if no timer ran `expire` yet.
        let id = deliver(&mut shard, &[a], "\r\n3", NOW_MS);
        let later = execute(
            &InboxRequest {
                address: a.into(),
                op: InboxOp::Message { id: Some(id) },
            },
            &mut shard,
            NOW_MS + 3_600_000,
            true,
        );
        ready_json(later, 404);
        assert_eq!(shard.stats().evicted_ttl, 1);
    }

    #[test]
    fn creates_random_addresses() {
        let configured = domains();
        let catch_all = DomainPolicy::new::<&str>(&[]);
        let cases: [(Option<&str>, &DomainPolicy, Result<&str, u16>); 6] = [
            (None, &configured, Ok("example.test")),
            (Some("Sub.Wild.Test"), &configured, Ok("sub.wild.test")),
            (Some("other.test"), &configured, Err(400)),
            (None, &catch_all, Err(400)),
            (Some("anything.test"), &catch_all, Ok("anything.test")),
            (Some("-bad.test"), &catch_all, Err(400)),
        ];
        for (domain, policy, expected) in cases {
            let response = create_address(domain, policy, 3600, NOW_MS);
            let body: Value = serde_json::from_slice(&response.body).expect("JSON");
            match expected {
                Ok(expected_domain) => {
                    assert_eq!(response.status, 201);
                    assert_eq!(body["domain"], expected_domain);
                    assert_eq!(body["created_at"], "2026-11-27T22:15:44Z");
                    assert_eq!(body["ttl_seconds"], 3600);
                    let address = body["address"].as_str().expect("address");
                    let (local_part, domain) = address.split_once('@').expect("@");
                    assert_eq!(domain, expected_domain);
                    assert_eq!(local_part.len(), LOCAL_PART_CHARS);
                    assert!(
                        local_part
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                    );
                }
                Err(status) => {
                    assert_eq!(response.status, status, "{domain:?}");
                    assert_eq!(body["error"]["code"], "bad_request");
                }
            }
        }
        let local_parts: std::collections::HashSet<String> = (0..1000)
            .map(|_| random_local_part().expect("random"))
            .collect();
        assert_eq!(local_parts.len(), 1000);
        // Every character of the alphabet shows up: no stuck or biased generator.
        let seen: std::collections::HashSet<char> =
            local_parts.iter().flat_map(|part| part.chars()).collect();
        assert_eq!(seen.len(), 36);
    }

    #[test]
    fn formats_rfc3339() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (NOW_MS + 999, "2026-11-27T22:15:44Z"),
            (u64::MAX, "9999-12-31T23:59:59Z"),
        ];
        for (unix_ms, expected) in cases {
            assert_eq!(rfc3339(unix_ms), expected);
        }
        assert_eq!(
            Rfc3339::of_secs(-1).map(|t| t.as_str().to_string()),
            Some("1969-12-31T23:59:59Z".to_string())
        );
        assert!(Rfc3339::of_secs(-62_200_000_000).is_none());
        assert!(Rfc3339::of_secs(i64::MAX).is_none());
    }

    #[test]
    fn percent_decodes() {
        let cases = [
            ("a%40b", Some("a@b")),
            ("%C3%A4", Some("ä")),
            ("a+b", Some("a+b")),
            ("%", None),
            ("%4", None),
            ("%g0", None),
            ("%+1", None),
            ("%ff", None),
            ("%é", None),
            ("plain", Some("plain")),
        ];
        for (text, expected) in cases {
            assert_eq!(percent_decode(text).as_deref(), expected, "{text}");
        }
    }

    proptest! {
        #[test]
        fn route_never_panics(
            method in prop_oneof![Just(Method::Get), Just(Method::Head), Just(Method::Post), Just(Method::Delete), Just(Method::Other)],
            path in "(/api/v1/(inboxes|addresses)(/[^/]{0,12}){0,6})|(/[ -~]{0,40})|(\\PC{0,40})",
            query in "[ -~]{0,40}",
            body in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let request = Request { method, path, query, keep_alive: true, body, websocket: None };
            let _ = route(&request, &domains());
            let _ = route(&request, &DomainPolicy::new::<&str>(&[]));
        }

        #[test]
        fn executes_any_routed_request_without_panicking(
            path in "/api/v1/inboxes/(a|A|%41|b)(@|%40)example\\.test(/messages/[0-9a-f]{0,27}(/raw|/attachments/[0-9+]{0,3})?)?",
            query in "((after|limit|wait)=[0-9a-f]{0,27}&?){0,3}",
            method in prop_oneof![Just(Method::Get), Just(Method::Delete)],
        ) {
            let mut shard = shard();
            deliver(&mut shard, &["a@example.test"], "Subject: x\r\n\r\nbody", NOW_MS);
            let request = Request { method, path, query, keep_alive: true, body: Vec::new(), websocket: None };
            if let Ok(Route::Inbox(inbox_request)) = route(&request, &domains()) {
                let _ = execute(&inbox_request, &mut shard, NOW_MS, false);
            }
        }
    }
}
