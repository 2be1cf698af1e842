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
//! - `POST /api/v1/addresses {"address": ...}` (an address the client chose) is a 201 with
//!   `"token": null` without `--private-inboxes`, and a 403 with it: a chosen name's token
//!   would let anyone who guesses a name read it, and Mayfly stores no owner to ask. An
//!   operator who lets users pick names derives their tokens in its own backend
//!   (`token` has the formula). Its token is withheld without the switch too, so that
//!   turning the switch on later hands no stranger a valid token.
//! - `q=` (a search, `mail::search`) is parsed here, so a bad query is a 400 before the
//!   request travels to the shard; `+` in its value is a space (as form encoders write it),
//!   and an empty or blank `q` is a plain listing.

mod access;
mod views;

use serde_json::{Value, json};

use crate::address::InboxKey;
use crate::config::DomainPolicy;
use crate::http::page;
use crate::http::request::{Method, Request, WebSocketUpgrade};
use crate::http::response::Response;
use crate::mail::ViewCache;
use crate::mail::search::{ParseBatch, Query, SearchState, Step};
use crate::partition::{Partition, PartitionSet};
use crate::store::{Listing, MessageId, Shard};
use crate::token::InboxTokens;
pub use access::{TOKEN_PARAMETER, authorize, check_partition, misdirected, no_such_inbox};
pub use views::{FILENAME_CHARS_MAX, attachments_path, rfc3339, summary_text};
use views::{IdJson, ListingJson, MessageJson, SummaryJson, attachment_response};

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
/// Longest address a client may choose (RFC 5321 4.5.3.1.3: a path of 256 octets, less
/// its angle brackets), so a chosen address is one SMTP can deliver to.
pub const ADDRESS_BYTES_MAX: usize = 254;
/// Path segments a known route has at most (`/api/v1/inboxes/{a}/messages/{id}/attachments/{n}`).
const PATH_SEGMENTS_MAX: usize = 9;
/// Characters of generated local parts.
const LOCAL_PART_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Every endpoint `route` knows: method and path template. `docs/openapi.json` describes
/// exactly these (a test holds it to that), and `route` answers 405 for other methods on
/// these paths and 404 for any other path.
pub const ENDPOINTS: [(&str, &str); 23] = [
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
    ("PATCH", "/api/v1/inboxes/{address}/messages/{id}"),
    ("GET", "/api/v1/inboxes/{address}/messages/{id}/codes"),
    ("HEAD", "/api/v1/inboxes/{address}/messages/{id}/codes"),
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
    /// `POST /api/v1/addresses`; `domain` is validated, lowercase, and accepted; `address`
    /// is one the client chose (at an accepted domain), never given with `domain`.
    CreateAddress {
        domain: Option<String>,
        address: Option<InboxKey<'static>>,
    },
    /// Anything under `/api/v1/inboxes/{address}`: run `execute` on the inbox's shard.
    Inbox(InboxRequest),
    /// `GET /api/v1/inboxes/{address}/ws` with a valid handshake: answer 101 with
    /// `Sec-WebSocket-Accept: accept`, then push the inbox's new summaries.
    WebSocket {
        key: InboxKey<'static>,
        accept: String,
    },
}

/// An operation on one inbox, ready to send to the shard that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxRequest {
    /// The inbox, whose domain the server accepts.
    pub key: InboxKey<'static>,
    pub op: InboxOp,
}

/// The inbox operations. `id: None` means the text in the path was not an id; executing
/// such an operation answers 404, as for a message that is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboxOp {
    /// `GET /api/v1/inboxes/{address}?after=&limit=&wait=&q=`.
    List {
        after: Option<MessageId>,
        limit: usize,
        wait_secs: u64,
        /// `q=`: list only the messages that match; `None` for all.
        query: Option<Query>,
    },
    /// `GET .../messages/{id}`.
    Message { id: Option<MessageId> },
    /// `GET .../messages/{id}/raw`.
    Raw { id: Option<MessageId> },
    /// `GET .../messages/{id}/codes`.
    Codes { id: Option<MessageId> },
    /// `GET .../messages/{id}/attachments/{index}`; `index: None` when the text is not an
    /// index, which answers 404.
    Attachment {
        id: Option<MessageId>,
        index: Option<usize>,
    },
    /// `DELETE .../messages/{id}`.
    DeleteMessage { id: Option<MessageId> },
    /// `PATCH .../messages/{id}` with `{"seen": bool}`.
    SetSeen { id: Option<MessageId>, seen: bool },
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
    /// The message view of this message is not in the cache: parse it (off the executor:
    /// it may be large and its HTML is sanitized), put it in the cache, and execute again.
    Parse(MessageId),
    /// A search needs these messages' search views: parse them off the executor
    /// (`ParseBatch::job`, `ParseJob::run`), give the result to the request's
    /// `SearchState::absorb`, and execute again.
    ParseBatch(ParseBatch),
    /// A search spent its step's budget of executor time: let other tasks run, then execute
    /// again (its progress is in the request's `SearchState`).
    Yield,
}

/// Methods a route accepts, for matching and for the `Allow` header of a 405.
#[derive(Clone, Copy)]
enum Allowed {
    Get,
    GetHead,
    GetHeadDelete,
    GetHeadDeletePatch,
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
            let (domain, address) = requested_address(&request.body, domains)?;
            Ok(Route::CreateAddress { domain, address })
        }
        ["", "api", "v1", "inboxes", address] => {
            let is_delete = allow(method, Allowed::GetHeadDelete)?;
            let key = inbox_address(address, domains)?;
            let op = if is_delete {
                InboxOp::DeleteInbox
            } else {
                list_op(&request.query)?
            };
            Ok(Route::Inbox(InboxRequest { key, op }))
        }
        ["", "api", "v1", "inboxes", address, "messages", id] => {
            let is_delete = allow(method, Allowed::GetHeadDeletePatch)?;
            let key = inbox_address(address, domains)?;
            let id = message_id(id);
            let op = if is_delete {
                InboxOp::DeleteMessage { id }
            } else if method == Method::Patch {
                InboxOp::SetSeen {
                    id,
                    seen: requested_seen(&request.body)?,
                }
            } else {
                InboxOp::Message { id }
            };
            Ok(Route::Inbox(InboxRequest { key, op }))
        }
        ["", "api", "v1", "inboxes", address, "messages", id, "codes"] => {
            allow(method, Allowed::GetHead)?;
            let key = inbox_address(address, domains)?;
            Ok(Route::Inbox(InboxRequest {
                key,
                op: InboxOp::Codes { id: message_id(id) },
            }))
        }
        ["", "api", "v1", "inboxes", address, "messages", id, "raw"] => {
            allow(method, Allowed::GetHead)?;
            let key = inbox_address(address, domains)?;
            Ok(Route::Inbox(InboxRequest {
                key,
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
            let key = inbox_address(address, domains)?;
            Ok(Route::Inbox(InboxRequest {
                key,
                op: InboxOp::Attachment {
                    id: message_id(id),
                    index: attachment_index(index),
                },
            }))
        }
        ["", "api", "v1", "inboxes", address, "ws"] => {
            allow(method, Allowed::Get)?;
            let key = inbox_address(address, domains)?;
            let accept = websocket_accept(request.websocket.as_ref())?;
            Ok(Route::WebSocket { key, accept })
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

/// Runs an inbox operation on the shard that owns the inbox, against its store and view
/// cache. Expired messages are dropped first, so an answer never shows a message past its
/// `expires_at`. The caller runs `ViewCache::sync` afterwards (what this deleted, and
/// what it cached, is settled there). `search` is the request's own, kept across the
/// calls of one request (a search goes in steps, see `Outcome::ParseBatch`).
pub fn execute(
    request: &InboxRequest,
    store: &mut Shard,
    views: &mut ViewCache,
    now_ms: u64,
    may_wait: bool,
    search: &mut SearchState,
) -> Outcome {
    store.expire(now_ms);
    let key = &request.key;
    let response = match request.op {
        InboxOp::List {
            after,
            limit,
            wait_secs,
            ref query,
        } => {
            let store = &*store;
            let listing = match query {
                None => store.list(key, after, limit),
                Some(query) => match search.step(query, store, views, key, after, limit) {
                    Step::Done(matches) => Listing {
                        messages: matches,
                        ..store.list(key, None, 0)
                    },
                    Step::Parse(batch) => return Outcome::ParseBatch(batch),
                    Step::Yield => return Outcome::Yield,
                },
            };
            if listing.messages.is_empty() && wait_secs > 0 && may_wait {
                // Searched up to here without a match: after a wake, only newer mail is.
                search.set_floor(listing.newest);
                return Outcome::Wait;
            }
            listing_response(key, &listing, after, views)
        }
        InboxOp::Message { id } => match id.and_then(|id| {
            // Opening a message reads it, for mail clients too (IMAP \Seen, `seen` here).
            store.set_seen(key, id, true);
            store.get(key, id)
        }) {
            Some(message) => {
                views.ensure_summary(&message);
                let (Some(summary), Some(parsed)) =
                    (views.summary(message.id), views.view(message.id))
                else {
                    return Outcome::Parse(message.id);
                };
                Response::json_from(200, &MessageJson::of(&message, summary, parsed))
            }
            None => no_such_message(),
        },
        InboxOp::Codes { id } => match id.and_then(|id| store.get(key, id)) {
            // Reading the codes is not opening the message: `seen` stays as it is.
            Some(message) => match views.view(message.id) {
                Some(parsed) => Response::json_from(
                    200,
                    &serde_json::json!({
                        "codes": parsed.extracted().codes,
                        "links": parsed.extracted().links,
                    }),
                ),
                None => return Outcome::Parse(message.id),
            },
            None => no_such_message(),
        },
        InboxOp::Attachment { id, index } => match id.and_then(|id| store.get(key, id)) {
            Some(message) => match views.view(message.id) {
                Some(parsed) => attachment_response(&message, parsed, index),
                None => return Outcome::Parse(message.id),
            },
            None => no_such_message(),
        },
        InboxOp::Raw { id } => match id.and_then(|id| {
            store.set_seen(key, id, true);
            store.get(key, id)
        }) {
            Some(message) => Response::new(200, "message/rfc822", message.raw.to_vec())
                .with_header("Cache-Control", "no-store"),
            None => no_such_message(),
        },
        InboxOp::DeleteMessage { id } => {
            if id.is_some_and(|id| store.delete_message(key, id)) {
                Response::empty(204)
            } else {
                no_such_message()
            }
        }
        InboxOp::DeleteInbox => {
            store.delete_inbox(key);
            Response::empty(204)
        }
        InboxOp::SetSeen { id, seen } => {
            match id
                .filter(|&id| store.set_seen(key, id, seen))
                .and_then(|id| store.get(key, id))
            {
                Some(message) => {
                    views.ensure_summary(&message);
                    match views.summary(message.id) {
                        Some(summary) => {
                            Response::json_from(200, &SummaryJson::of(&message, summary))
                        }
                        None => Response::error(
                            503,
                            "unavailable",
                            "the summary does not fit the server's view cache",
                        ),
                    }
                }
                None => no_such_message(),
            }
        }
    };
    Outcome::Ready(response)
}

/// The answer to a listing, plain or searched, with the summaries of its messages parsed
/// here if the cache lacks them.
fn listing_response(
    key: &InboxKey<'_>,
    listing: &Listing<'_>,
    after: Option<MessageId>,
    views: &mut ViewCache,
) -> Response {
    for message in &listing.messages {
        views.ensure_summary(message);
    }
    let views = &*views;
    let messages = listing
        .messages
        .iter()
        .filter_map(|message| Some(SummaryJson::of(message, views.summary(message.id)?)))
        .collect();
    // The newest id in the inbox, or `after` if that is newer (nothing newer arrived, or
    // the inbox emptied): a client passing it back never goes backwards.
    let next_after = listing.newest.max(after);
    Response::json_from(
        200,
        &ListingJson {
            address: key.as_str(),
            total: listing.total,
            messages,
            next_after: next_after.map(IdJson),
        },
    )
}

/// Answers `POST /api/v1/addresses`: 201 with a fresh random address at `domain` (or the
/// first configured domain) and its token, or with the address the client `chose` (and no
/// token; 403 with `--private-inboxes`, see the module notes). 400 if the domain is not
/// accepted, or if none was asked on a catch-all server; 500 if the system's random
/// generator fails.
pub fn create_address(
    domain: Option<&str>,
    chosen: Option<&InboxKey<'_>>,
    domains: &DomainPolicy,
    tokens: &InboxTokens,
    owned: PartitionSet,
    ttl_secs: u64,
    now_ms: u64,
) -> Response {
    if let Some(chosen) = chosen {
        if !owned.contains(Partition::of(chosen)) {
            return misdirected();
        }
        if tokens.required() {
            return Response::error(
                403,
                "forbidden",
                "this server has private inboxes and chooses their addresses: send no \"address\"",
            );
        }
        let domain = chosen
            .as_str()
            .rsplit_once('@')
            .map_or("", |(_, domain)| domain);
        return Response::json(
            201,
            &json!({
                "address": chosen.as_str(),
                "domain": domain,
                "created_at": rfc3339(now_ms),
                "ttl_seconds": ttl_secs,
                "token": null,
            }),
        );
    }
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
    let first_chars = owned.first_chars();
    if first_chars.is_empty() {
        return Response::error(
            503,
            "unavailable",
            "this node owns no partition of generated addresses (--owned-partitions is only other)",
        );
    }
    let local_part = match random_local_part(&first_chars) {
        Ok(local_part) => local_part,
        Err(error) => {
            return Response::error(
                500,
                "internal_error",
                &format!("random generator failed: {error}"),
            );
        }
    };
    let address = format!("{local_part}@{domain}");
    let token = match InboxKey::new(&address) {
        Ok(key) => tokens.token(&key),
        // Cannot happen: the local part is [a-z0-9] and the domain was checked.
        Err(_) => {
            return Response::error(500, "internal_error", "generated an invalid address");
        }
    };
    Response::json(
        201,
        &json!({
            "address": address,
            "domain": domain,
            "created_at": rfc3339(now_ms),
            "ttl_seconds": ttl_secs,
            "token": token,
        }),
    )
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
        Allowed::GetHeadDeletePatch => (
            matches!(
                method,
                Method::Get | Method::Head | Method::Delete | Method::Patch
            ),
            "GET, HEAD, DELETE, PATCH",
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

/// The inbox of a percent-encoded `{address}` segment, if the server accepts its domain.
/// One rule with SMTP (`InboxKey::new`): an address SMTP would refuse is a 404 here.
fn inbox_address(segment: &str, domains: &DomainPolicy) -> Result<InboxKey<'static>, Response> {
    let decoded = percent_decode(segment).ok_or_else(|| {
        Response::error(400, "bad_request", "bad percent-encoding in the address")
    })?;
    let not_accepted = || {
        Response::error(
            404,
            "not_found",
            "not an address this server accepts mail for",
        )
    };
    // Spaces are legal inside a quoted local part ("john doe"@example.test), so only what
    // `InboxKey::new` refuses (control characters, bad IDNs) rules an address out here.
    let key = InboxKey::new(&decoded)
        .map_err(|_| not_accepted())?
        .into_owned();
    let Some((local_part, domain)) = key.as_str().rsplit_once('@') else {
        return Err(not_accepted());
    };
    if local_part.is_empty() || domain.is_empty() || !domains.accepts(domain) {
        return Err(not_accepted());
    }
    Ok(key)
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
    let (mut after, mut limit, mut wait_secs, mut search) = (None, LIMIT_DEFAULT, 0, None);
    let bad = |message: &str| Response::error(400, "bad_request", message);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        // In `q`, `+` is a space, as HTML forms, `URLSearchParams` and Python's `urlencode`
        // write one (they write a `+` as `%2B`).
        let value = if name == "q" {
            percent_decode(&value.replace('+', " "))
        } else {
            percent_decode(value)
        };
        let value = value.ok_or_else(|| bad("bad percent-encoding in the query"))?;
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
            "q" => {
                let parsed = Query::parse(&value).map_err(|error| bad(&error.to_string()))?;
                search = (!parsed.is_empty()).then_some(parsed);
            }
            _ => {}
        }
    }
    Ok(InboxOp::List {
        after,
        limit,
        wait_secs,
        query: search,
    })
}

/// The `seen` of a `PATCH .../messages/{id}` body: `{"seen": true|false}`, nothing else.
fn requested_seen(body: &[u8]) -> Result<bool, Response> {
    let bad = |message: &str| Response::error(400, "bad_request", message);
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| bad(&format!("the body is not JSON: {error}")))?;
    let Value::Object(object) = value else {
        return Err(bad("the body must be a JSON object"));
    };
    if let Some(other) = object.keys().find(|key| key.as_str() != "seen") {
        return Err(bad(&format!(
            "unknown field {other:?}: only \"seen\" can be changed"
        )));
    }
    match object.get("seen") {
        Some(Value::Bool(seen)) => Ok(*seen),
        Some(_) => Err(bad("seen must be true or false")),
        None => Err(bad("the body must set \"seen\"")),
    }
}

/// The `domain` and `address` of a `POST /api/v1/addresses` body: empty, or a JSON object
/// whose optional `domain` and `address` are strings (or null), not both given.
type AddressRequest = (Option<String>, Option<InboxKey<'static>>);

fn requested_address(body: &[u8], domains: &DomainPolicy) -> Result<AddressRequest, Response> {
    let bad = |message: &str| Response::error(400, "bad_request", message);
    if body.trim_ascii().is_empty() {
        return Ok((None, None));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| bad(&format!("the body is not JSON: {error}")))?;
    let Value::Object(object) = value else {
        return Err(bad("the body must be a JSON object"));
    };
    let domain = match object.get("domain") {
        None | Some(Value::Null) => None,
        Some(Value::String(domain)) => {
            Some(checked_domain(domain, domains).map_err(|message| bad(&message))?)
        }
        Some(_) => return Err(bad("domain must be a string")),
    };
    let address = match object.get("address") {
        None | Some(Value::Null) => None,
        Some(Value::String(address)) => {
            Some(chosen_address(address, domains).map_err(|message| bad(&message))?)
        }
        Some(_) => return Err(bad("address must be a string")),
    };
    if domain.is_some() && address.is_some() {
        return Err(bad("give an address or a domain, not both"));
    }
    Ok((domain, address))
}

/// The inbox of an address a client chose, if SMTP could deliver to it: at most
/// `ADDRESS_BYTES_MAX` bytes, a local part, and a well-formed domain the server accepts.
fn chosen_address(address: &str, domains: &DomainPolicy) -> Result<InboxKey<'static>, String> {
    let address = address.trim();
    let key = InboxKey::new(address)
        .map_err(|error| format!("{address:?} is not an address: {error}"))?
        .into_owned();
    let Some((local_part, domain)) = key.as_str().rsplit_once('@') else {
        return Err(format!("{address:?} is not an address: it has no @"));
    };
    if local_part.is_empty() || key.as_str().len() > ADDRESS_BYTES_MAX {
        return Err(format!(
            "{address:?} is not an address: a local part and at most {ADDRESS_BYTES_MAX} bytes"
        ));
    }
    // The domain as every other path spells it (`example.test.` is `example.test`).
    let domain = checked_domain(domain, domains)?;
    InboxKey::new(&format!("{local_part}@{domain}"))
        .map(InboxKey::into_owned)
        .map_err(|error| format!("{address:?} is not an address: {error}"))
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
///
/// The first character is drawn from `first_chars` (the node's partitions, see
/// `partition`; all 36 when it runs alone), the same way: bytes at or above the largest
/// multiple of its length are skipped.
fn random_local_part(first_chars: &[u8]) -> Result<String, getrandom::Error> {
    let mut local_part = String::with_capacity(LOCAL_PART_CHARS);
    let mut random = [0u8; 2 * LOCAL_PART_CHARS];
    let n_first = first_chars.len().clamp(1, 256);
    let first_limit = 256 - 256 % n_first;
    while local_part.len() < LOCAL_PART_CHARS {
        getrandom::fill(&mut random)?;
        for &byte in &random {
            if local_part.len() == LOCAL_PART_CHARS {
                break;
            }
            if local_part.is_empty() {
                if usize::from(byte) < first_limit {
                    local_part.push(char::from(first_chars[usize::from(byte) % n_first]));
                }
            } else if byte < 252 {
                local_part.push(char::from(LOCAL_PART_ALPHABET[usize::from(byte % 36)]));
            }
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
mod tests;
