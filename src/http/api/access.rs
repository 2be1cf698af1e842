//! Who may read an inbox. With `--private-inboxes`, a routed inbox request or WebSocket goes
//! on only with that inbox's token (`token::InboxTokens`); without it, every request does,
//! whatever token it carries.
//!
//! The token comes from `Authorization: Bearer <token>`, or when that field is absent from
//! the query's `token=` (a browser cannot set headers on a WebSocket, a link or an image).
//! A request without the right token gets exactly the answer of an inbox that does not
//! exist, `no_such_inbox`, the same for every address and route: a 403 would tell a
//! stranger which addresses hold mail. The check needs no shard, so it runs before the
//! request is forwarded: nothing about the inbox is looked at for a refused request.

use std::borrow::Cow;

use crate::http::api::{Route, percent_decode};
use crate::http::request::Request;
use crate::http::response::Response;
use crate::partition::{Partition, PartitionSet};
use crate::token::InboxTokens;

/// The query parameter that carries a token where no header can.
pub const TOKEN_PARAMETER: &str = "token";

/// `route` unchanged if the request may read the inbox it names (or names none), else the
/// response to send instead (`no_such_inbox`).
///
/// # Errors
/// `no_such_inbox()` for an inbox request or WebSocket without the inbox's token, with
/// `--private-inboxes`.
pub fn authorize(route: Route, request: &Request, tokens: &InboxTokens) -> Result<Route, Response> {
    let Some(key) = inbox_of(&route).filter(|_| tokens.required()) else {
        return Ok(route);
    };
    if tokens.admits(key, presented_token(request).as_deref()) {
        Ok(route)
    } else {
        Err(no_such_inbox())
    }
}

/// The inbox a route reads, if it reads one (an inbox request or its WebSocket); the
/// page, health, metrics and address creation name none.
fn inbox_of(route: &Route) -> Option<&crate::address::InboxKey<'static>> {
    match route {
        Route::Inbox(inbox_request) => Some(&inbox_request.key),
        Route::WebSocket { key, .. } => Some(key),
        Route::Asset(_) | Route::Healthz | Route::Metrics | Route::CreateAddress { .. } => None,
    }
}

/// With `--owned-partitions`, a request for an inbox this node does not serve is a 421
/// Misdirected Request (RFC 9110 15.5.20): HTTPS's routing (HAProxy, docs/scale-out.md)
/// sent it to the wrong node, which says so instead of answering for an empty inbox.
pub fn check_partition(route: Route, owned: PartitionSet) -> Result<Route, Response> {
    let Some(key) = inbox_of(&route).filter(|_| !owned.is_all()) else {
        return Ok(route);
    };
    if owned.contains(Partition::of(key)) {
        Ok(route)
    } else {
        Err(misdirected())
    }
}

/// The answer for an inbox in a partition this node does not own.
pub fn misdirected() -> Response {
    Response::error(
        421,
        "misdirected",
        "this node does not serve this address's partition; ask the node the partition map names",
    )
}

/// What a request for a private inbox without its token gets, for every address and route.
pub fn no_such_inbox() -> Response {
    Response::error(404, "not_found", "no such inbox, or not with this token")
}

/// The token a request presents: the Bearer token, else the last `token=` of the query.
fn presented_token(request: &Request) -> Option<Cow<'_, str>> {
    if let Some(token) = &request.bearer_token {
        return Some(Cow::Borrowed(token));
    }
    let value = request
        .query
        .rsplit('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == TOKEN_PARAMETER)
        .map(|(_, value)| value)?;
    // A bad escape presents no token, which is refused like a wrong one.
    percent_decode(value).map(Cow::Owned)
}
