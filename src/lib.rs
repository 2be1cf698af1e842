//! Mayfly: a thread-per-core disposable-mail appliance.
//!
//! Mail comes in over SMTP on every core, is kept in memory for a TTL in the shard that
//! owns each recipient's inbox, and is read back over a small HTTP JSON API.
//! Modules in suggested reading order (docs/ARCHITECTURE.md has the whole map):
//! - `config`: every limit and timeout, from defaults, a TOML file, the environment and flags.
//! - `address`: which inbox an address names (`InboxKey`), the one rule for every protocol.
//! - `smtp`: the SMTP protocol as a state machine over bytes, with no IO.
//! - `store`: one shard's ring buffer and inbox index, and routing of inboxes to shards.
//! - `mail`: the parsed views of a stored message and their cache; HTML sanitizing.
//! - `auth`: SPF, DKIM, DMARC, ARC, iprev and DNSBL checks on a resolver thread of their own.
//! - `spam`: rspamd's protocol (request, verdict, our X-Spam-* header block), no IO.
//! - `token`: the per-inbox tokens of `--private-inboxes`, derived from a secret, never stored.
//! - `http`: HTTP/1.1 request parsing, routing and JSON rendering, with no IO.
//! - `mailbox`: an inbox as POP3 and IMAP clients see it (UIDs, sizes, seen flags).
//! - `pop3`: the POP3 protocol (RFC 1939, CAPA, STLS, AUTH PLAIN) as a state machine, no IO.
//! - `imap`: the IMAP protocol (one INBOX per address) as a state machine over bytes, with no IO.
//! - `watch`: long polls and WebSocket subscriptions, parked at the owning shard.
//! - `webhook`: the per-shard queue of webhook events, their bodies, signatures and retries, no IO.
//! - `net`: the socket loops, listeners, TLS, per-client limits; the only code with sockets.
//! - `runtime`: executors, the shard mesh, delivery, housekeeping and shutdown.
//! - `metrics`: per-shard counters and their Prometheus rendering.
//! - `alloc`: the global allocator that zeroes freed memory; `clock`: Unix milliseconds.
//! - `partition`: the address partitions of a multi-node setup, and the Postfix and HAProxy
//!   tables generated from a partition map (docs/scale-out.md).
//! - `notify`: systemd readiness (sd_notify) without a dependency.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod address;
pub mod alloc;
pub mod auth;
pub mod clock;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod imap;
pub mod journal;
pub mod mail;
pub mod mailbox;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod partition;
pub mod pop3;
pub mod runtime;
pub mod smtp;
pub mod spam;
pub mod store;
#[cfg(test)]
mod testing;
pub mod token;
pub mod watch;
pub mod webhook;
