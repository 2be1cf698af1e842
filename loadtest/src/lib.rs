//! smtp-blaster: a load generator for SMTP servers.
//!
//! Modules in reading order: [`cli`] (options and their checks), [`sizes`] (size
//! distributions), [`message`] (message templates and checksums), [`dkim`] (DKIM-signed
//! templates, signed before the run), [`reply`] (SMTP reply parsing), [`engine`] (the
//! non-blocking connection loop), [`stats`] (histograms and the report), [`tls`] (rustls
//! glue for STARTTLS and implicit TLS), [`verify`] (reading every inbox back over Mayfly's
//! HTTP API).
//! `main.rs` only parses arguments and calls [`run`].

pub mod cli;
pub mod dkim;
pub mod engine;
pub mod message;
pub mod reader;
pub mod reply;
pub mod sizes;
pub mod stats;
pub mod tls;
pub mod verify;

pub use cli::run;
