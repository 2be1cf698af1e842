//! Every limit and timeout of the server, with units in the names, each declared once.
//!
//! A `Config` is built once at start-up and is read-only afterwards: executors get an
//! `Arc<Config>`. Each setting comes from the first of these layers that sets it:
//! a command-line flag, an environment variable, the TOML file named by `--config` (or
//! `MAYFLY_CONFIG`), the built-in default.
//!
//! # One table
//!
//! The `settings!` invocation below is the only list of settings. Each entry declares the
//! `Config` field with its type and doc, the TOML key, the flag's value name, the default,
//! the bounds, the parser if the bounds do not imply one, and the `--help` line. The
//! macro (`table.rs`) derives everything else from it: the flag (`--max-memory`, the key
//! in kebab-case), the environment variable (`MAYFLY_MAX_MEMORY`), the clap argument, the
//! file's accepted keys and TOML types, the resolution code, and the Summary table of
//! docs/configuration.md (`docs.rs`, which a test keeps in step with the file).
//!
//! Why a `macro_rules!` table rather than clap's derive plus a serde struct: those are
//! two declarations of the same list that have to agree, plus the environment, plus the
//! docs; and serde would parse values with its own messages, while we want one parser per
//! setting, run on text from whichever layer wins, so a bad value gets the same reason
//! everywhere and the error names where it came from (flag, variable, or key and line).
//!
//! To add a setting, add one entry to the table (the grammar is on `settings!` in
//! `table.rs`) and use the field. Then a test renders the docs table and tells you to run
//! `MAYFLY_WRITE_DOCS=1 cargo test --lib config`, and others ask for the setting's section
//! in docs/configuration.md and its key in docs/mayfly.example.toml.
//!
//! # Files
//!
//! `table.rs` the macro and `Setting`; `layers.rs` which layer wins, and error origins;
//! `file.rs` reading and type-checking the TOML file; `values.rs` the value parsers
//! (durations, sizes, counts, booleans, addresses); `domains.rs` `DomainPolicy`;
//! `ip_range.rs` `IpRange`; `webhook.rs` a `--webhook` and its URL; `machine.rs` cores,
//! memory and hostname of this machine; `checks.rs` rules across settings; `error.rs`
//! `Error`; `docs.rs` the docs table (tests only); `tests.rs` loading end to end.

mod checks;
mod dnsbl;
#[cfg(test)]
mod docs;
mod domains;
mod error;
mod file;
mod ip_range;
mod layers;
mod machine;
mod modes;
mod table;
#[cfg(test)]
mod tests;
mod values;
mod webhook;

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

pub use dnsbl::DnsblSite;
pub use domains::DomainPolicy;
pub use error::{EXIT_CODE_CONFIG, Error};
pub use ip_range::IpRange;
pub use modes::{Durability, VerifySenders};
pub use values::{format_duration, format_size, parse_duration, parse_size};
pub use webhook::{Webhook, WebhookSecret, WebhookUrl};

use domains::{validate_dns_name, validate_domain};
use file::ConfigFile;
use layers::{Env, Layers};
use machine::{
    cores_available, cores_default, machine_hostname, parse_cores, physical_memory_bytes,
    smtp_sessions_default,
};
use table::settings;
use values::{
    check_memory, check_message_size, parse_bool, parse_path, parse_score, parse_socket_addr,
    validate_log_filter,
};

/// For command, data, HTTP and TLS timeouts: long enough for any real client, short
/// enough that a typo ("10000h") is an error at start-up rather than a surprise later.
const TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(86_400);

settings! {
    /// Where the SMTP listener binds; port 0 picks a free port once for every core.
    smtp_addr: SocketAddr = smtp {
        shape: Text,
        value: "ADDR:PORT",
        default: "127.0.0.1:2525",
        bounds: Other("IP address and port"),
        parse: parse_socket_addr,
        help: "Address the SMTP listener binds (port 0 picks a free port)",
    },
    /// Where the HTTP listener binds; port 0 as for `smtp_addr`.
    http_addr: SocketAddr = http {
        shape: Text,
        value: "ADDR:PORT",
        default: "127.0.0.1:8025",
        bounds: Other("IP address and port"),
        parse: parse_socket_addr,
        help: "Address the HTTP API listener binds (port 0 picks a free port)",
    },
    /// Which recipient domains are accepted.
    domains: DomainPolicy = domains as "domain" {
        shape: List,
        value: "NAME",
        default: (empty "empty: accept every domain", |names: Vec<String>| DomainPolicy::new(&names)),
        bounds: Other("domain names"),
        parse: |text: &str| validate_domain(text).map(|()| text.to_string()),
        help: "Accept mail for this domain; \"*.example.test\" accepts example.test and every \
               subdomain. Repeat for more domains. None given: accept every domain",
    },
    /// How long a message is kept after it was received.
    ttl: Duration = ttl {
        shape: Text,
        value: "DURATION",
        default: "1h",
        bounds: Duration(Duration::from_millis(1)..=Duration::from_secs(30 * 86_400)),
        help: "How long a message is kept after it was received (ms, s, m, h, d)",
    },
    /// Message bytes held in all shards together; each shard gets an equal part, allocated up front.
    memory_bytes_max: usize = max_memory {
        shape: Text,
        value: "SIZE",
        default: "256MiB",
        bounds: Other("size, at least 1MiB per core"),
        parse: |text: &str| check_memory(parse_size(text)?, physical_memory_bytes()),
        help: "Memory for message bytes over all cores, allocated up front (B, KiB, MiB, GiB, TiB)",
    },
    /// Largest message (after dot-unstuffing, before our Received header) accepted.
    message_bytes_max: usize = max_message_size {
        shape: Text,
        value: "SIZE",
        default: "10MiB",
        bounds: Other("size, 64KiB to `max_memory` / `cores`"),
        parse: |text: &str| check_message_size(parse_size(text)?),
        help: "Largest message accepted; must fit in one core's share of --max-memory",
    },
    /// Recipients per transaction; RCPT beyond it gets `452 4.5.3`.
    /// RFC 5321 4.5.3.1.8 asks for at least 100 (the default); fewer is allowed for testing.
    /// At most 1000 (Postfix's default `smtpd_recipient_limit`): the session and the store
    /// compare each recipient with the ones before it, which must stay cheap for one core.
    recipients_max: usize = max_recipients {
        shape: Text,
        value: "N",
        default: "100",
        bounds: Count(1..=1000),
        help: "Recipients per message; more get \"452 4.5.3\"",
    },
    /// Messages per inbox; a new one drops the inbox's oldest.
    inbox_messages_max: usize = max_messages_per_inbox {
        shape: Text,
        value: "N",
        default: "1000",
        bounds: Count(1..=1_000_000),
        help: "Messages kept per inbox; a new one drops the inbox's oldest",
    },
    /// Executors (one per core, pinned).
    cores: usize = cores {
        shape: Text,
        value: "N",
        default: (computed "every available CPU (see below)",
            cores_default(cores_available(), memory_bytes_max, message_bytes_max)),
        bounds: Other("1 to the available CPUs, at most 255"),
        parse: |text: &str| parse_cores(text, cores_available()),
        help: "Executor threads, one per CPU [default: all available CPUs, at most 255, and at \
               most --max-memory / max(--max-message-size, 1MiB)]",
    },
    /// Whether each listener asks the kernel for the connections whose packets its
    /// executor's CPU received (`SO_INCOMING_CPU` on the reuseport group).
    steer_connections: bool = steer_connections {
        shape: Switch,
        value: "",
        default: "false",
        bounds: Other("on-only flag; true or false in TOML and environment"),
        parse: parse_bool,
        help: "Serve each connection on the executor of the CPU that received its packets \
               (SO_INCOMING_CPU; for NICs with one receive queue per executor CPU)",
    },
    /// Name in the banner, EHLO reply and Received header.
    hostname: String = hostname {
        shape: Text,
        value: "NAME",
        default: (computed "the machine's hostname, else mayfly.localdomain", machine_hostname()),
        bounds: Other("domain name"),
        parse: |text: &str| validate_dns_name(text).map(|()| text.to_string()),
        help: "Name in the SMTP banner, EHLO reply and Received header [default: this machine's \
               hostname, or mayfly.localdomain]",
    },
    /// Concurrent SMTP sessions per core; beyond it an idle session that never started a
    /// transaction is cut to make room, and without one a new connection gets `421 4.7.0`.
    /// The default lets idle sessions take a quarter of a core's share of `--max-memory`
    /// (see `machine::SMTP_SESSION_IDLE_BYTES`, measured).
    smtp_sessions_per_core_max: usize = max_sessions_per_core {
        shape: Text,
        value: "N",
        default: (computed "a quarter of a core's share of --max-memory at 6 KiB per idle session, \
                  1000 to 50000 (5461 with the default memory and 2 cores)",
            smtp_sessions_default(memory_bytes_max, cores)),
        bounds: Count(1..=1_000_000),
        help: "Concurrent SMTP sessions per core; at the cap an idle non-sender is cut for a new \
               one, else it gets \"421 4.7.0\" [default: a quarter of a core's share of \
               --max-memory at 6 KiB each, 1000 to 50000]",
    },
    /// Concurrent SMTP sessions from one client IP on one core (Postfix's
    /// `smtpd_client_connection_count_limit`); beyond it a new connection gets `421 4.7.0`.
    /// 0 turns the limit off. The kernel spreads one client's connections over the cores,
    /// so a client gets about this times `cores` in all.
    smtp_sessions_per_ip_max: usize = max_sessions_per_ip {
        shape: Text,
        value: "N",
        default: "50",
        bounds: Count(0..=1_000_000),
        help: "Concurrent SMTP sessions from one client IP on one core (about this times --cores \
               in all); more get \"421 4.7.0\"; 0 = no limit",
    },
    /// Messages accepted from one client IP per minute on one core (Postfix's
    /// `smtpd_client_message_rate_limit`); beyond it MAIL gets `421 4.7.0`. 0 turns the
    /// limit off.
    smtp_messages_per_ip_per_minute_max: usize = max_messages_per_ip_per_minute {
        shape: Text,
        value: "N",
        default: "0",
        bounds: Count(0..=100_000_000),
        help: "Messages accepted from one client IP per minute on one core; more get \
               \"421 4.7.0\" at MAIL; 0 = no limit",
    },
    /// Client addresses the per-IP session and message limits do not apply to (a relay in
    /// front of Mayfly, a load generator); see [`Config::is_client_limit_exempt`].
    client_limit_exempt: Vec<IpRange> = client_limit_exempt {
        shape: List,
        value: "CIDR",
        default: (empty "empty: no client is exempt", std::convert::identity),
        bounds: Other("IP addresses or CIDR ranges"),
        parse: |text: &str| text.parse::<IpRange>(),
        help: "Client address or CIDR range (192.0.2.7, 10.0.0.0/8, 2001:db8::/32) exempt from \
               the per-IP session and message limits. Repeat for more",
    },
    /// Concurrent HTTP connections per core; beyond it a new connection is closed.
    http_connections_per_core_max: usize = max_http_connections_per_core {
        shape: Text,
        value: "N",
        default: "10000",
        bounds: Count(1..=1_000_000),
        help: "Concurrent HTTP connections per core; more are closed",
    },
    /// Long polls (`?wait=`) parked per core; beyond it a long poll is answered at once.
    /// A held long poll costs a parked task and a timer, a few hundred bytes.
    long_polls_per_core_max: usize = max_long_polls_per_core {
        shape: Text,
        value: "N",
        default: "10000",
        bounds: Count(1..=1_000_000),
        help: "Long polls (?wait=) held per core; more are answered at once",
    },
    /// WebSockets (`/api/v1/inboxes/{address}/ws`) open per core; beyond it the upgrade
    /// is refused with 503.
    websockets_per_core_max: usize = max_websockets_per_core {
        shape: Text,
        value: "N",
        default: "10000",
        bounds: Count(1..=1_000_000),
        help: "WebSockets open per core; more are refused with 503",
    },
    /// HTTP requests per second allowed to one client IP on one core (twice that as a
    /// burst); 0 turns the limit off. Over it: 429 with Retry-After.
    /// Off by default: QA suites and the bundled blaster's --verify read thousands of inboxes
    /// from one address, and behind a reverse proxy every client shares the proxy's address.
    http_requests_per_ip_per_sec_max: usize = http_rate_limit {
        shape: Text,
        value: "N",
        default: "0",
        bounds: Count(0..=1_000_000),
        help: "HTTP requests per second per client IP per core (burst twice that); 0 = no limit",
    },
    /// Whether reading an inbox (HTTP, WebSocket, POP3, IMAP) needs its token
    /// (`token::InboxTokens`); off, the address alone opens it.
    private_inboxes: bool = private_inboxes {
        shape: Switch,
        value: "",
        default: "false",
        bounds: Other("on-only flag; true or false in TOML and environment"),
        parse: parse_bool,
        help: "Reading an inbox needs its token (POST /api/v1/addresses hands it out; Bearer \
               over HTTP, the password over POP3 and IMAP); others get 404",
    },
    /// The secret inbox tokens are derived from; `None`: `DATA_DIR/token-secret` (written
    /// on the first start), or random per process without `data_dir`.
    token_secret_file: Option<PathBuf> = token_secret_file {
        shape: Text,
        value: "FILE",
        default: (none "DATA_DIR/token-secret (made on first start), else random per process"),
        bounds: Other("path to a file of at least 32 random bytes"),
        parse: parse_path,
        help: "Secret for inbox tokens, at least 32 random bytes [default: DATA_DIR/token-secret, \
               written on first start; without --data-dir, random per process]",
    },
    /// How long a whole SMTP command line may take to arrive: a deadline for the line, not
    /// per read. RFC 5321 4.5.3.2.7 recommends 5 minutes (the default).
    command_timeout: Duration = command_timeout {
        shape: Text,
        value: "DURATION",
        default: "5m",
        bounds: Duration(TIMEOUT_RANGE),
        help: "SMTP: how long a whole command line may take to arrive (a deadline for the line, \
               not per read; RFC 5321 4.5.3.2)",
    },
    /// The command timeout while a core is under stress (its SMTP sessions at 80% or more
    /// of `smtp_sessions_per_core_max`), as Postfix does; when it is longer than
    /// `command_timeout`, the shorter applies (see [`Config::command_timeout_under_stress`]).
    stress_command_timeout: Duration = stress_command_timeout {
        shape: Text,
        value: "DURATION",
        default: "10s",
        bounds: Duration(TIMEOUT_RANGE),
        help: "SMTP: the command timeout while a core is under stress (its sessions at 80% of \
               --max-sessions-per-core or more); the shorter of this and --command-timeout applies",
    },
    /// How long to wait for each read while receiving DATA or a BDAT chunk. RFC 5321
    /// 4.5.3.2.6 recommends 3 minutes (the default).
    data_timeout: Duration = data_timeout {
        shape: Text,
        value: "DURATION",
        default: "3m",
        bounds: Duration(TIMEOUT_RANGE),
        help: "SMTP: how long to wait for each read of message data (RFC 5321 4.5.3.2)",
    },
    /// How long receiving one message's whole DATA body or BDAT chunk sequence may take;
    /// past it: `421 4.4.2`. `data_timeout` still bounds each read.
    data_deadline: Duration = data_deadline {
        shape: Text,
        value: "DURATION",
        default: "10m",
        bounds: Duration(TIMEOUT_RANGE),
        help: "SMTP: how long receiving one message's whole DATA body or BDAT chunks may take; \
               past it \"421 4.4.2\"",
    },
    /// HTTP: how long to wait for a request's head, and for the next request on a kept-alive connection.
    http_idle_timeout: Duration = http_idle_timeout {
        shape: Text,
        value: "DURATION",
        default: "30s",
        bounds: Duration(TIMEOUT_RANGE),
        help: "HTTP: how long to wait for a request head, and for the next request on a \
               kept-alive connection",
    },
    /// HTTP: how long one request's head and body may take once its first byte arrived
    /// (against slowloris); past it the connection is closed (408).
    http_request_timeout: Duration = http_request_timeout {
        shape: Text,
        value: "DURATION",
        default: "10s",
        bounds: Duration(TIMEOUT_RANGE),
        help: "HTTP: how long one request's head and body may take once its first byte \
               arrived; past it the connection is closed (408)",
    },
    /// On SIGTERM, how long a session in the middle of a transaction may take to finish it.
    /// Zero is allowed: sessions are then cut at once.
    shutdown_grace: Duration = shutdown_grace {
        shape: Text,
        value: "DURATION",
        default: "10s",
        bounds: Duration(Duration::ZERO..=Duration::from_secs(3_600)),
        help: "On SIGTERM, how long a session in the middle of a transaction may take to finish it",
    },
    /// Zero every heap block when it is freed, and a session's buffers after each message,
    /// so message bytes do not linger in memory after they are used.
    wipe_freed_memory: bool = wipe_freed_memory {
        shape: Bool,
        value: "BOOL",
        default: "true",
        bounds: Other("true or false"),
        parse: parse_bool,
        help: "Zero every heap block when it is freed, and each session's buffers after each \
               message, so message bytes do not linger in memory (true or false)",
    },
    /// Whether `alice+tag@d` is delivered to (and read as) the inbox `alice@d`, with the
    /// tag kept per message (`address::plus_tag`).
    plus_addressing: bool = plus_addressing {
        shape: Switch,
        value: "",
        default: "false",
        bounds: Other("on-only flag; true or false in TOML and environment"),
        parse: parse_bool,
        help: "Deliver alice+tag@domain to the inbox alice@domain, keeping the tag per message \
               (the message summary's tag, and the search key tag:)",
    },
    /// The address partitions this node serves when several run behind Postfix and
    /// HAProxy (docs/scale-out.md); every partition when it runs alone.
    owned_partitions: crate::partition::PartitionSet = owned_partitions {
        shape: Text,
        value: "LIST",
        default: "all",
        bounds: Other("partitions: 0-9, a-z and other, as single characters, ranges (a-h) or all"),
        parse: crate::partition::PartitionSet::parse,
        help: "Serve only inboxes whose address starts with these characters (0-9,a-h,other), \
               as the partition map gives this node; others get 450 over SMTP and 421 over HTTP",
    },
    /// Whether the client's IP address may appear in logs and Received headers.
    log_client_ip: bool = log_client_ip {
        shape: Switch,
        value: "",
        default: "false",
        bounds: Other("on-only flag; true or false in TOML and environment"),
        parse: parse_bool,
        help: "Allow client IP addresses in logs and Received headers (off: they are left out)",
    },
    /// Whether the per-message log line names the envelope (sender and first recipient).
    /// Off, a stored message leaves no address in logs (which outlive the message), nor in
    /// the logging thread's last formatted line.
    log_envelope: bool = log_envelope {
        shape: Switch,
        value: "",
        default: "false",
        bounds: Other("on-only flag; true or false in TOML and environment"),
        parse: parse_bool,
        help: "Name the envelope sender and first recipient in the per-message log line (off: \
               queue id, sizes, outcome and timing only)",
    },
    /// Log filter (tracing-subscriber EnvFilter syntax); `RUST_LOG` overrides it.
    log_level: String = log_level {
        shape: Text,
        value: "FILTER",
        default: "info",
        bounds: Other("tracing EnvFilter directives"),
        parse: |text: &str| validate_log_filter(text).map(|()| text.to_string()),
        help: "Log filter in tracing's EnvFilter syntax (\"info\", \"mayfly=debug,warn\"); \
               RUST_LOG overrides it",
    },
    /// Where the implicit-TLS SMTP listener (RFC 8314) binds; `None`: no such listener.
    smtps_addr: Option<SocketAddr> = smtps {
        shape: Text,
        value: "ADDR:PORT",
        default: (none "no SMTPS listener"),
        bounds: Other("IP address and port"),
        parse: parse_socket_addr,
        help: "Also serve SMTP with implicit TLS (RFC 8314, port 465 by convention) on this \
               address; needs a certificate",
    },
    /// Where the HTTPS listener for the API binds; `None`: no such listener.
    https_addr: Option<SocketAddr> = https {
        shape: Text,
        value: "ADDR:PORT",
        default: (none "no HTTPS listener"),
        bounds: Other("IP address and port"),
        parse: parse_socket_addr,
        help: "Also serve the HTTP API over TLS on this address; needs a certificate",
    },
    /// PEM certificate chain, leaf first (always given together with `tls_key`).
    tls_cert: Option<PathBuf> = tls_cert {
        shape: Text,
        value: "FILE",
        default: (none "no certificate: no TLS"),
        bounds: Other("path to a PEM certificate chain"),
        parse: parse_path,
        help: "PEM certificate chain (leaf first) for STARTTLS, --smtps and --https; reloaded on \
               SIGHUP. Needs --tls-key",
    },
    /// PEM private key of the certificate in `tls_cert`.
    tls_key: Option<PathBuf> = tls_key {
        shape: Text,
        value: "FILE",
        default: (none "no key"),
        bounds: Other("path to a PEM private key"),
        parse: parse_path,
        help: "PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert; reloaded on SIGHUP",
    },
    /// Generate a self-signed certificate for `hostname` at start-up (instead of files).
    tls_self_signed: bool = tls_self_signed {
        shape: Switch,
        value: "",
        default: "false",
        bounds: Other("on-only flag; true or false in TOML and environment"),
        parse: parse_bool,
        help: "Generate a self-signed certificate for --hostname at start-up (testing only; \
               instead of --tls-cert and --tls-key)",
    },
    /// Refuse MAIL with `530 5.7.0` on the plain SMTP listener until STARTTLS succeeded,
    /// and plaintext POP3 and IMAP logins until STLS or STARTTLS.
    tls_required: bool = require_tls {
        shape: Switch,
        value: "",
        default: "false",
        bounds: Other("on-only flag; true or false in TOML and environment"),
        parse: parse_bool,
        help: "Refuse MAIL with \"530 5.7.0\" on the --smtp listener until the client did \
               STARTTLS, and plaintext logins on --pop3 and --imap until STLS/STARTTLS",
    },
    /// How long a TLS handshake may take in all before the connection is closed.
    tls_handshake_timeout: Duration = tls_handshake_timeout {
        shape: Text,
        value: "DURATION",
        default: "10s",
        bounds: Duration(TIMEOUT_RANGE),
        help: "How long a TLS handshake may take before the connection is closed",
    },
    /// Where the shards keep their journal or snapshots (`journal::Layout`); `None`: memory
    /// only, a restart loses everything.
    data_dir: Option<PathBuf> = data_dir {
        shape: Text,
        value: "DIR",
        default: (none "no data directory: mail lives in memory only"),
        bounds: Other("path to a directory, created if missing"),
        parse: parse_path,
        help: "Directory for the journal or snapshots, one subdirectory per shard; without it \
               mail lives in memory only",
    },
    /// What survives a restart or a crash: nothing, the last snapshot, or every
    /// acknowledged message.
    durability: Durability = durability {
        shape: Text,
        value: "MODE",
        default: (computed "journal with --data-dir, else none",
            if data_dir.is_some() { Durability::Journal } else { Durability::None }),
        bounds: Other("none, snapshot or journal"),
        parse: Durability::parse,
        help: "none (memory only), snapshot (every --snapshot-interval and on SIGTERM) or journal \
               (every message before its 250) [default: journal with --data-dir, else none]",
    },
    /// With `durability = snapshot`: how often each shard writes what it holds.
    snapshot_interval: Duration = snapshot_interval {
        shape: Text,
        value: "DURATION",
        default: "5m",
        bounds: Duration(SNAPSHOT_INTERVAL_RANGE),
        help: "With --durability snapshot: how often each shard writes what it holds (a crash \
               loses at most this much)",
    },
    /// Keys to seal the journal and snapshots with (AES-256-GCM), one per line, the first
    /// current; `None`: written in the clear.
    encryption_key_file: Option<PathBuf> = encryption_key_file {
        shape: Text,
        value: "FILE",
        default: (none "no key: the data directory is written in the clear"),
        bounds: Other("path to a key file (`mayfly keygen FILE` writes one)"),
        parse: parse_path,
        help: "Seal the journal and snapshots with AES-256-GCM; one key per line (64 hex \
               digits), the first for new data; `mayfly keygen FILE` writes one",
    },
    /// A journal file is closed and a new one started past this size.
    journal_file_bytes_max: usize = journal_file_size {
        shape: Text,
        value: "SIZE",
        default: "64MiB",
        bounds: Other("1MiB to 4GiB"),
        parse: |text: &str| check_journal_file_size(parse_size(text)?),
        help: "A journal file is closed and the next one started past this size",
    },
    /// Whether each message's sender is checked (SPF, DKIM, DMARC, ARC, iprev) and the
    /// results prepended as an `Authentication-Results:` header (RFC 8601). Off by default,
    /// so a machine without DNS works as it always did.
    verify_senders: VerifySenders = verify_senders {
        shape: Text,
        value: "MODE",
        default: "off",
        bounds: Other("off or annotate"),
        parse: VerifySenders::parse,
        help: "off, or annotate: check SPF, DKIM, DMARC, ARC and iprev for each message and \
               prepend an Authentication-Results header (mail is accepted either way)",
    },
    /// The DNS server sender checks ask; `None`: the system's (`/etc/resolv.conf`).
    dns_resolver: Option<SocketAddr> = dns_resolver {
        shape: Text,
        value: "ADDR:PORT",
        default: (none "the system's, from /etc/resolv.conf"),
        bounds: Other("IP address and port"),
        parse: parse_socket_addr,
        help: "DNS server for sender checks (a local caching resolver is best) [default: the \
               system's, from /etc/resolv.conf]",
    },
    /// How long a message's sender checks may take before its reply; what has not
    /// finished is `temperror` and the message is accepted anyway.
    auth_timeout: Duration = auth_timeout {
        shape: Text,
        value: "DURATION",
        default: "2s",
        bounds: Duration(TIMEOUT_RANGE),
        help: "How long a message's sender checks may take before its reply; unfinished checks \
               are temperror and the message is accepted anyway",
    },
    /// DNS blocklists asked about every connecting client (RFC 5782), each with its
    /// weight; a client whose listings weigh `dnsbl_threshold` or more gets `554 5.7.1`
    /// instead of the greeting (Postfix postscreen's `zone*weight` and threshold).
    dnsbl: Vec<DnsblSite> = dnsbl {
        shape: List,
        value: "ZONE[*WEIGHT]",
        default: (empty "empty: no blocklist is asked", std::convert::identity),
        bounds: Other("DNS zones, each with an optional weight from -100 to 100 (default 1), at most 16"),
        parse: DnsblSite::parse,
        help: "DNS blocklist zone asked about every connecting client before the greeting, \
               with an optional weight (zen.example*2; a negative weight marks an allowlist). \
               Repeat for more zones",
    },
    /// The summed weight of a client's listings at which it is refused.
    dnsbl_threshold: usize = dnsbl_threshold {
        shape: Text,
        value: "N",
        default: "1",
        bounds: Count(1..=1_000),
        help: "A client whose --dnsbl listings weigh this much or more gets \"554 5.7.1\" \
               instead of the greeting",
    },
    /// The rspamd a spam verdict is asked of for every message; `None`: no spam filter.
    rspamd: Option<crate::spam::Endpoint> = rspamd {
        shape: Text,
        value: "URL",
        default: (none "no spam filter"),
        bounds: Other("http://HOST[:PORT][/PATH], port 11333 when none is given"),
        parse: crate::spam::Endpoint::parse,
        help: "Ask this rspamd (its normal worker, e.g. http://127.0.0.1:11333) for a spam \
               verdict on every message, written as X-Spam-* headers and in the message JSON",
    },
    /// How long rspamd may take with one message; past it the message is stored without
    /// a verdict.
    rspamd_timeout: Duration = rspamd_timeout {
        shape: Text,
        value: "DURATION",
        default: "2s",
        bounds: Duration(TIMEOUT_RANGE),
        help: "How long rspamd may take with one message before its reply; past it the message \
               is accepted without a verdict",
    },
    /// The rspamd score at which the end of DATA answers `550 5.7.1` and nothing is
    /// stored; `None`: every verdict is only recorded.
    spam_reject_score: Option<f64> = spam_reject_score {
        shape: Text,
        value: "SCORE",
        default: (none "never reject: verdicts are only recorded"),
        bounds: Other("a number from -1000 to 1000"),
        parse: parse_score,
        help: "Refuse mail whose rspamd score is this or more with \"550 5.7.1\" at the end of \
               DATA (needs --rspamd)",
    },
    /// Where the POP3 listener (RFC 1939, STLS when a certificate is given) binds; `None`:
    /// no POP3.
    pop3_addr: Option<SocketAddr> = pop3 {
        shape: Text,
        value: "ADDR:PORT",
        default: (none "no POP3 listener"),
        bounds: Other("IP address and port"),
        parse: parse_socket_addr,
        help: "Serve POP3 (RFC 1939; STLS when a certificate is given) on this address \
               (port 110 by convention)",
    },
    /// Where the implicit-TLS POP3 listener binds; `None`: none.
    pop3s_addr: Option<SocketAddr> = pop3s {
        shape: Text,
        value: "ADDR:PORT",
        default: (none "no POP3S listener"),
        bounds: Other("IP address and port"),
        parse: parse_socket_addr,
        help: "Serve POP3 with implicit TLS on this address (port 995 by convention); needs a \
               certificate",
    },
    /// Where the IMAP listener (RFC 3501, STARTTLS when a certificate is given) binds;
    /// `None`: no IMAP.
    imap_addr: Option<SocketAddr> = imap {
        shape: Text,
        value: "ADDR:PORT",
        default: (none "no IMAP listener"),
        bounds: Other("IP address and port"),
        parse: parse_socket_addr,
        help: "Serve IMAP (RFC 3501; STARTTLS when a certificate is given) on this address \
               (port 143 by convention)",
    },
    /// Where the implicit-TLS IMAP listener binds; `None`: none.
    imaps_addr: Option<SocketAddr> = imaps {
        shape: Text,
        value: "ADDR:PORT",
        default: (none "no IMAPS listener"),
        bounds: Other("IP address and port"),
        parse: parse_socket_addr,
        help: "Serve IMAP with implicit TLS on this address (port 993 by convention); needs a \
               certificate",
    },
    /// Concurrent POP3 and IMAP sessions per core (both counted together); beyond it a new
    /// connection gets the protocol's "try later" answer and is closed.
    mailbox_sessions_per_core_max: usize = max_mailbox_sessions_per_core {
        shape: Text,
        value: "N",
        default: "1000",
        bounds: Count(1..=1_000_000),
        help: "Concurrent POP3 and IMAP sessions per core; more are refused",
    },
    /// Concurrent POP3 and IMAP sessions from one client IP on one core; 0 turns the limit
    /// off (`--client-limit-exempt` applies).
    mailbox_sessions_per_ip_max: usize = max_mailbox_sessions_per_ip {
        shape: Text,
        value: "N",
        default: "50",
        bounds: Count(0..=1_000_000),
        help: "Concurrent POP3 and IMAP sessions from one client IP on one core; more are \
               refused; 0 = no limit",
    },
    /// POP3 and IMAP login attempts per minute from one client IP on one core; over it a
    /// login is answered "try later" without being checked. 0 turns the limit off (the
    /// default: without private inboxes any password is accepted, and a QA suite logs in
    /// from one address again and again).
    mailbox_logins_per_ip_per_minute_max: usize = max_logins_per_ip_per_minute {
        shape: Text,
        value: "N",
        default: "0",
        bounds: Count(0..=100_000_000),
        help: "POP3 and IMAP logins per minute from one client IP on one core; more are \
               answered \"try later\"; 0 = no limit",
    },
    /// How long a POP3 or IMAP session may wait for its next command (RFC 1939 asks for at
    /// least 10 minutes, RFC 3501 for at least 30; IMAP clients in IDLE re-issue it every
    /// 29 minutes, which this must exceed).
    mailbox_idle_timeout: Duration = mailbox_idle_timeout {
        shape: Text,
        value: "DURATION",
        default: "30m",
        bounds: Duration(TIMEOUT_RANGE),
        help: "POP3 and IMAP: how long a session may wait for its next command, or stay in \
               IDLE (RFC 3501 asks for at least 30m)",
    },
    /// How long a whole POP3 or IMAP command (line and literals) may take once its first
    /// byte arrived: a deadline for the command, not per read.
    mailbox_command_timeout: Duration = mailbox_command_timeout {
        shape: Text,
        value: "DURATION",
        default: "1m",
        bounds: Duration(TIMEOUT_RANGE),
        help: "POP3 and IMAP: how long a whole command (its line and literals) may take once \
               its first byte arrived",
    },
    /// Where every stored message is announced with a signed `POST` of its summary
    /// (`webhook/`, `net/webhook.rs`), each URL with an optional recipient-domain filter.
    webhooks: Vec<Webhook> = webhook {
        shape: List,
        value: "[DOMAIN=]URL",
        default: (empty "empty: no webhooks", std::convert::identity),
        bounds: Other("http:// or https:// URLs, each optionally after DOMAIN= (*.example.test \
                       style), at most 16"),
        parse: Webhook::parse,
        help: "POST a JSON summary of every stored message to this URL; with DOMAIN= only mail \
               for that recipient domain (*.example.test: and its subdomains). Repeat for more",
    },
    /// The HMAC-SHA256 key every webhook body is signed with; `None`: unsigned.
    webhook_secret: Option<WebhookSecret> = webhook_secret_file {
        shape: Text,
        value: "FILE",
        default: (none "no key: webhook requests are not signed"),
        bounds: Other("path to a file holding the key, 16 to 1024 bytes"),
        parse: WebhookSecret::read,
        help: "Sign every webhook body with HMAC-SHA256 under the key in this file (its bytes \
               without a final newline), sent as X-Mayfly-Signature-256: sha256=HEX",
    },
    /// How long one webhook request may take, connection and reply included; past it the
    /// request counts as failed and is retried.
    webhook_timeout: Duration = webhook_timeout {
        shape: Text,
        value: "DURATION",
        default: "10s",
        bounds: Duration(TIMEOUT_RANGE),
        help: "How long one webhook request may take (connect, send, reply) before it is \
               retried",
    },
}

/// How often snapshots may be written, at most and at least.
const SNAPSHOT_INTERVAL_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(86_400);
/// Smallest and largest journal file.
const JOURNAL_FILE_BYTES_RANGE: RangeInclusive<usize> = (1 << 20)..=(4 << 30);

fn check_journal_file_size(bytes: usize) -> Result<usize, String> {
    if JOURNAL_FILE_BYTES_RANGE.contains(&bytes) {
        Ok(bytes)
    } else {
        Err("expected a size from 1MiB to 4GiB".to_string())
    }
}

impl Config {
    /// Defaults, then the TOML file given by `--config` or `MAYFLY_CONFIG` (if any), then
    /// `MAYFLY_*` environment variables, then flags.
    ///
    /// `args` starts with the program name, as `std::env::args_os()` does. Typical use in
    /// `main`: `Config::load(std::env::args_os()).unwrap_or_else(|err| err.exit())`.
    ///
    /// # Errors
    ///
    /// [`Error::Cli`] for a command line clap rejects and for `--help` / `--version`;
    /// otherwise the first bad value, unreadable or invalid file, or inconsistency found.
    pub fn load<I, T>(args: I) -> Result<Config, Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Config::load_from(args, std::env::vars_os())
    }

    /// [`Config::load`] with the environment given rather than read from the process, so
    /// tests need not change the process's environment (which other threads read).
    pub(crate) fn load_from<I, T>(
        args: I,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Config, Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = table::command()
            .try_get_matches_from(args)
            .map_err(Error::Cli)?;
        let env = Env::collect(env);
        let file = match Layers::config_path(&matches, &env) {
            Some(path) => Some(ConfigFile::read(&path)?),
            None => None,
        };
        let config = resolve(&Layers::new(matches, env, file))?;
        checks::check_consistency(&config)?;
        Ok(config)
    }

    /// The command timeout that applies while a core is under stress: the shorter of
    /// `stress_command_timeout` and `command_timeout`.
    pub fn command_timeout_under_stress(&self) -> Duration {
        self.stress_command_timeout.min(self.command_timeout)
    }

    /// Whether a client at `ip` is exempt from the per-IP session and message limits
    /// (`client_limit_exempt`). The list is short (a relay or two), so a scan is enough.
    pub fn is_client_limit_exempt(&self, ip: IpAddr) -> bool {
        self.client_limit_exempt
            .iter()
            .any(|range| range.contains(ip))
    }
}
