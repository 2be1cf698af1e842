//! Mayfly: a thread-per-core disposable-mail appliance.
//!
//! Mail comes in over SMTP on every core, is kept in memory for a TTL in the shard that
//! owns each recipient's inbox, and is read back over a small HTTP JSON API.
//! Modules in suggested reading order:
//! - `config`: every limit and timeout, from defaults, a TOML file and flags.
//! - `smtp`: the SMTP protocol as a state machine over bytes, with no IO.
//! - `store`: one shard's ring buffer and inbox index, and routing of inboxes to shards.
//! - `mail`: the parsed views of a stored message (summary; headers, text, HTML, attachments).
//! - `http`: HTTP/1.1 request parsing, routing and JSON rendering, with no IO.
//! - `runtime`: executors, listeners, the shard mesh, delivery and shutdown.
//! - `net`: the socket loops for SMTP and HTTP.
//! - `metrics`: per-shard counters and their Prometheus rendering.
//! - `notify`: systemd readiness (sd_notify) without a dependency.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod address;
pub mod clock;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod mail;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod runtime;
pub mod smtp;
pub mod store;
pub mod watch;
