//! Minimal HTTP/1.1 and the JSON API of `docs/api.md`, without sockets.
//!
//! `request` turns bytes into a `Request` (any chunking, never panics), `api` turns a
//! `Request` into a `Route` and runs inbox operations against the owning `store::Shard`,
//! and `response` turns a `Response` into bytes. The socket loop, long-poll parking and
//! cross-shard forwarding live in `net::http_conn`, so everything here is testable with
//! plain byte slices and a `Shard`.

pub mod api;
pub mod page;
pub mod request;
pub mod response;

pub use api::{InboxOp, InboxRequest, Outcome, Route};
pub use request::{Limits, Method, Request};
pub use response::Response;
