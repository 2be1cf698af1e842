//! Tests of the API with no socket: `route` (routing.rs) and `execute` with the JSON views
//! (execute.rs), driven the way the runtime drives them.

mod execute;
mod routing;

use super::*;

pub(super) const BOOT_MICROS: u64 = 1_764_000_000_000_000;
pub(super) const NOW_MS: u64 = 1_795_817_744_000; // 2026-11-27T22:15:44Z
pub(super) const RECEIVED: &str =
    "Received: from client by mayfly; Fri, 27 Nov 2026 22:15:44 +0000\r\n";

pub(super) fn domains() -> DomainPolicy {
    DomainPolicy::new(&["example.test", "*.wild.test"])
}

pub(super) fn get(method: Method, target: &str, body: &str) -> Request {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
        keep_alive: true,
        body: body.into(),
        websocket: None,
        bearer_token: None,
    }
}

pub(super) fn upgrade(target: &str, key: &str, version: &str) -> Request {
    Request {
        websocket: Some(WebSocketUpgrade {
            key: key.to_string(),
            version: version.to_string(),
        }),
        ..get(Method::Get, target, "")
    }
}

/// The inbox key of a test address.
pub(super) fn key(address: &str) -> InboxKey<'static> {
    InboxKey::new(address)
        .expect("a valid test address")
        .into_owned()
}

pub(super) fn list(after: Option<MessageId>, limit: usize, wait_secs: u64) -> InboxOp {
    InboxOp::List {
        after,
        limit,
        wait_secs,
        query: None,
    }
}

/// Inbox tokens under a fixed secret; `required`: `--private-inboxes`.
pub(super) fn tokens(required: bool) -> InboxTokens {
    InboxTokens::new(&[42u8; 32], required, crate::token::SecretSource::Process)
}
