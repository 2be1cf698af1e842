//! Every limit and timeout of the server, with units in the names.
//!
//! A `Config` is built once at start-up from embedded defaults, then an optional TOML
//! file, then command-line flags (each layer overrides the one before), and is read-only
//! afterwards: executors get an `Arc<Config>`.
//!
//! Each setting has one name: the TOML key in snake_case (`max_memory`) and the flag in
//! kebab-case (`--max-memory`); `--domain` / `domains` is the one exception.
//! Every value is first taken as text from whichever layer wins and then parsed by one
//! function, so a bad value gets the same message whether it came from a flag or the
//! file, and the message names where it came from (flag, or key and line).
//! docs/configuration.md is the operator's reference; tests below keep it in step.

use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use serde::Deserialize;
use toml::Spanned;

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the SMTP listener binds; port 0 picks a free port once for every core.
    pub smtp_addr: SocketAddr,
    /// Where the HTTP listener binds; port 0 as for `smtp_addr`.
    pub http_addr: SocketAddr,
    /// Which recipient domains are accepted.
    pub domains: DomainPolicy,
    /// How long a message is kept after it was received.
    pub ttl: Duration,
    /// Message bytes held in all shards together; each shard gets an equal part, allocated up front.
    pub memory_bytes_max: usize,
    /// Largest message (after dot-unstuffing, before our Received header) accepted.
    pub message_bytes_max: usize,
    /// Recipients per transaction; RCPT beyond it gets `452 4.5.3`.
    pub recipients_max: usize,
    /// Messages per inbox; a new one drops the inbox's oldest.
    pub inbox_messages_max: usize,
    /// Executors (one per core, pinned).
    pub cores: usize,
    /// Name in the banner, EHLO reply and Received header.
    pub hostname: String,
    /// Concurrent SMTP sessions per core; beyond it a new connection gets `421 4.7.0`.
    pub smtp_sessions_per_core_max: usize,
    /// Concurrent HTTP connections per core; beyond it a new connection is closed.
    pub http_connections_per_core_max: usize,
    /// Long polls (`?wait=`) parked per core; beyond it a long poll is answered at once.
    pub long_polls_per_core_max: usize,
    /// WebSockets (`/api/v1/inboxes/{address}/ws`) open per core; beyond it the upgrade
    /// is refused with 503.
    pub websockets_per_core_max: usize,
    /// HTTP requests per second allowed to one client IP on one core (twice that as a
    /// burst); 0 turns the limit off. Over it: 429 with Retry-After.
    pub http_requests_per_ip_per_sec_max: usize,
    /// RFC 5321 4.5.3.2: how long to wait for a command line (5 minutes there).
    pub command_timeout: Duration,
    /// RFC 5321 4.5.3.2: how long to wait for each read while receiving DATA or a BDAT chunk (3 minutes there).
    pub data_timeout: Duration,
    /// HTTP: how long to wait for a request's head, and for the next request on a kept-alive connection.
    pub http_idle_timeout: Duration,
    /// On SIGTERM, how long a session in the middle of a transaction may take to finish it.
    pub shutdown_grace: Duration,
    /// Whether the client's IP address may appear in logs and Received headers.
    pub log_client_ip: bool,
    /// Log filter (tracing-subscriber EnvFilter syntax); `RUST_LOG` overrides it.
    pub log_level: String,
    /// Where the implicit-TLS SMTP listener (RFC 8314) binds; `None`: no such listener.
    pub smtps_addr: Option<SocketAddr>,
    /// Where the HTTPS listener for the API binds; `None`: no such listener.
    pub https_addr: Option<SocketAddr>,
    /// PEM certificate chain, leaf first (always given together with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate in `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Generate a self-signed certificate for `hostname` at start-up (instead of files).
    pub tls_self_signed: bool,
    /// Refuse MAIL with `530 5.7.0` on the plain SMTP listener until STARTTLS succeeded.
    pub tls_required: bool,
    /// How long a TLS handshake may take in all before the connection is closed.
    pub tls_handshake_timeout: Duration,
    /// The config file this came from, if any (for the log).
    pub config_file: Option<PathBuf>,
}

/// Which recipient domains the server accepts mail for.
///
/// Invariant: names are stored lowercase, without a trailing dot.
#[derive(Debug, Clone, Default)]
pub struct DomainPolicy {
    /// `example.test`: that domain exactly.
    exact: Vec<String>,
    /// `*.example.test` stored as `example.test`: that domain and every subdomain.
    wildcard: Vec<String>,
    /// The first configured domain, in its configured form (without `*.`), for generated addresses.
    first: Option<String>,
}

/// Why the configuration could not be loaded.
///
/// Every variant displays as one line that names the flag or key and the bad value, except
/// [`Error::Cli`] for `--help` and `--version`, whose display is the text to print.
/// [`Error::exit`] prints the error the right way and ends the process.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line does not parse (unknown flag, missing value), or `--help` or
    /// `--version` was given: clap's error carries the text and the exit code.
    #[error("{}", cli_message(.0))]
    Cli(clap::Error),
    /// A flag's value is not valid (`flag` is written with its dashes, e.g. `--ttl`).
    #[error("invalid value '{}' for {flag}: {reason}", .value.escape_debug())]
    InvalidFlag {
        flag: String,
        /// The text as given.
        value: String,
        /// What is wrong and what is expected, e.g. "must be from 1ms to 30d".
        reason: String,
    },
    /// The `--config` file cannot be read.
    #[error("cannot read config file {}: {reason}", .path.display())]
    ReadFile { path: PathBuf, reason: String },
    /// The `--config` file is not valid TOML, or a value has the wrong TOML type.
    #[error("config file {}: {message}{}", .path.display(), at_line(*.line))]
    FileSyntax {
        path: PathBuf,
        /// 1-based; `None` when the problem has no position (e.g. not UTF-8).
        line: Option<usize>,
        /// The TOML parser's message, on one line.
        message: String,
    },
    /// The `--config` file has a key that is not a setting (often a typo).
    #[error(
        "config file {}: unknown key '{}'{}{}",
        .path.display(),
        .key.escape_debug(),
        at_line(*.line),
        did_you_mean(*.suggestion)
    )]
    UnknownKey {
        path: PathBuf,
        key: String,
        line: Option<usize>,
        /// The known key it is closest to, if any is close.
        suggestion: Option<&'static str>,
    },
    /// A value in the `--config` file is not valid.
    #[error(
        "config file {}: invalid value '{}' for {key} (line {line}): {reason}",
        .path.display(),
        .value.escape_debug()
    )]
    InvalidKey {
        path: PathBuf,
        key: &'static str,
        /// 1-based line of the value.
        line: usize,
        /// The text as written (an integer in TOML shows as its digits).
        value: String,
        /// As for [`Error::InvalidFlag`].
        reason: String,
    },
    /// Settings that are valid one by one but not together (the message names them and
    /// their values).
    #[error("{0}")]
    Inconsistent(String),
}

/// Exit status for a bad configuration: `EX_CONFIG` from sysexits.h, which a systemd unit
/// can list in `RestartPreventExitStatus=` so that a typo does not cause a restart loop.
pub const EXIT_CODE_CONFIG: i32 = 78;

/// Binary units accepted by [`parse_size`], largest first (the order [`format_size`] tries them).
const SIZE_UNITS: [(&str, u64); 4] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
];
/// Units accepted by [`parse_duration`] in milliseconds, largest first: a compound duration
/// must use them in this order, each at most once ("1h30m", not "30m1h").
const DURATION_UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];
const DURATION_EXPECTED: &str = "expected a duration such as 500ms, 30s, 10m, 1h or 1h30m";
const SIZE_EXPECTED: &str = "expected a size such as 512KiB, 10MiB, 1GiB or 1048576 (bytes)";
const MIB: usize = 1 << 20;

// Defaults. They are text because they go through the same parser as the user's values,
// and clap shows them in `--help`.
const SMTP_DEFAULT: &str = "127.0.0.1:2525";
const HTTP_DEFAULT: &str = "127.0.0.1:8025";
const TTL_DEFAULT: &str = "1h";
const MAX_MEMORY_DEFAULT: &str = "256MiB";
const MAX_MESSAGE_SIZE_DEFAULT: &str = "10MiB";
const MAX_RECIPIENTS_DEFAULT: &str = "100";
const MAX_MESSAGES_PER_INBOX_DEFAULT: &str = "1000";
const MAX_SESSIONS_PER_CORE_DEFAULT: &str = "1000";
const MAX_HTTP_CONNECTIONS_PER_CORE_DEFAULT: &str = "10000";
/// A held long poll costs a parked task and a timer, a few hundred bytes.
const MAX_LONG_POLLS_PER_CORE_DEFAULT: &str = "10000";
const MAX_WEBSOCKETS_PER_CORE_DEFAULT: &str = "10000";
/// Off by default: QA suites and the bundled blaster's --verify read thousands of inboxes
/// from one address, and behind a reverse proxy every client shares the proxy's address.
/// Internet-facing deployments set it (docs/deploy.md).
const HTTP_RATE_LIMIT_DEFAULT: &str = "0";
/// RFC 5321 4.5.3.2.7 (server timeout waiting for the next command): 5 minutes.
const COMMAND_TIMEOUT_DEFAULT: &str = "5m";
/// RFC 5321 4.5.3.2.6 (DATA block: the wait for each read of message text): 3 minutes.
const DATA_TIMEOUT_DEFAULT: &str = "3m";
const HTTP_IDLE_TIMEOUT_DEFAULT: &str = "30s";
const SHUTDOWN_GRACE_DEFAULT: &str = "10s";
const LOG_LEVEL_DEFAULT: &str = "info";
const TLS_HANDSHAKE_TIMEOUT_DEFAULT: &str = "10s";
/// Used when the machine's hostname cannot be read or is not a valid domain name.
const HOSTNAME_FALLBACK: &str = "mayfly.localdomain";

// Bounds. Everything has one, so that a typo ("10000h", "1TiB") is an error at start-up
// rather than a surprise in production.
const TTL_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(30 * 86_400);
/// For command, data and HTTP idle timeouts.
const TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(86_400);
/// Zero is allowed: sessions are then cut at once on SIGTERM.
const SHUTDOWN_GRACE_RANGE: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(3_600);
/// RFC 5321 4.5.3.1.7: a server must accept messages of at least 64K octets.
const MESSAGE_BYTES_MIN: usize = 64 << 10;
/// Each core's shard gets `memory_bytes_max / cores`; below this a shard is not useful.
const MEMORY_BYTES_PER_CORE_MIN: usize = MIB;
/// Cores are numbered with a `u8` elsewhere (shard ids).
const CORES_MAX: usize = 255;
/// RFC 5321 4.5.3.1.8 asks for at least 100 (the default); fewer is allowed for testing.
const RECIPIENTS_RANGE: RangeInclusive<usize> = 1..=100_000;
const INBOX_MESSAGES_RANGE: RangeInclusive<usize> = 1..=1_000_000;
const SESSIONS_PER_CORE_RANGE: RangeInclusive<usize> = 1..=1_000_000;
const HTTP_CONNECTIONS_PER_CORE_RANGE: RangeInclusive<usize> = 1..=1_000_000;
const LONG_POLLS_PER_CORE_RANGE: RangeInclusive<usize> = 1..=1_000_000;
const WEBSOCKETS_PER_CORE_RANGE: RangeInclusive<usize> = 1..=1_000_000;
const HTTP_RATE_LIMIT_RANGE: RangeInclusive<usize> = 0..=1_000_000;
/// A config file is a few hundred bytes; refuse to slurp something that clearly is not one.
const CONFIG_FILE_BYTES_MAX: u64 = 1 << 20;
/// RFC 1035 2.3.4 (253 in text form without the trailing dot).
const DOMAIN_BYTES_MAX: usize = 253;
const LABEL_BYTES_MAX: usize = 63;
/// Every key of the TOML file, in the order of docs/configuration.md. A test checks that
/// it matches `FileConfig`; it is used to suggest the closest key for a typo.
const KEYS: [&str; 28] = [
    "smtp",
    "http",
    "domains",
    "ttl",
    "max_memory",
    "max_message_size",
    "max_recipients",
    "max_messages_per_inbox",
    "cores",
    "hostname",
    "max_sessions_per_core",
    "max_http_connections_per_core",
    "max_long_polls_per_core",
    "max_websockets_per_core",
    "http_rate_limit",
    "command_timeout",
    "data_timeout",
    "http_idle_timeout",
    "shutdown_grace",
    "log_client_ip",
    "log_level",
    "smtps",
    "https",
    "tls_cert",
    "tls_key",
    "tls_self_signed",
    "require_tls",
    "tls_handshake_timeout",
];

/// The command line. Fields hold text: values are parsed later, together with the file's,
/// so that both get the same checks and messages. Field names are the TOML keys (clap
/// derives `--max-memory` from `max_memory`), which lets [`Layers`] look both up by one name.
#[derive(Debug, Parser)]
#[command(
    name = "mayfly",
    version,
    about,
    // Lets "--max-recipients -1" reach our parser, whose message says what is wrong.
    allow_negative_numbers = true,
    after_help = "Every flag except --config can also be set in the --config file, under the same \
                  name in snake_case (max_memory = \"256MiB\"); flags override the file. \
                  See docs/configuration.md."
)]
struct Cli {
    /// TOML configuration file; flags given with it override its values.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address the SMTP listener binds (port 0 picks a free port).
    #[arg(long, value_name = "ADDR:PORT", default_value = SMTP_DEFAULT)]
    smtp: String,
    /// Address the HTTP API listener binds (port 0 picks a free port).
    #[arg(long, value_name = "ADDR:PORT", default_value = HTTP_DEFAULT)]
    http: String,
    /// Accept mail for this domain; "*.example.test" accepts example.test and every
    /// subdomain. Repeat for more domains. None given: accept every domain.
    #[arg(long = "domain", value_name = "NAME")]
    domains: Vec<String>,
    /// How long a message is kept after it was received (ms, s, m, h, d).
    #[arg(long, value_name = "DURATION", default_value = TTL_DEFAULT)]
    ttl: String,
    /// Memory for message bytes over all cores, allocated up front (B, KiB, MiB, GiB, TiB).
    #[arg(long, value_name = "SIZE", default_value = MAX_MEMORY_DEFAULT)]
    max_memory: String,
    /// Largest message accepted; must fit in one core's share of --max-memory.
    #[arg(long, value_name = "SIZE", default_value = MAX_MESSAGE_SIZE_DEFAULT)]
    max_message_size: String,
    /// Recipients per message; more get "452 4.5.3".
    #[arg(long, value_name = "N", default_value = MAX_RECIPIENTS_DEFAULT)]
    max_recipients: String,
    /// Messages kept per inbox; a new one drops the inbox's oldest.
    #[arg(long, value_name = "N", default_value = MAX_MESSAGES_PER_INBOX_DEFAULT)]
    max_messages_per_inbox: String,
    /// Executor threads, one per CPU [default: all available CPUs, at most 255, and at
    /// most --max-memory / max(--max-message-size, 1MiB)].
    #[arg(long, value_name = "N")]
    cores: Option<String>,
    /// Name in the SMTP banner, EHLO reply and Received header [default: this machine's
    /// hostname, or mayfly.localdomain].
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// Concurrent SMTP sessions per core; more get "421 4.7.0".
    #[arg(long, value_name = "N", default_value = MAX_SESSIONS_PER_CORE_DEFAULT)]
    max_sessions_per_core: String,
    /// Concurrent HTTP connections per core; more are closed.
    #[arg(long, value_name = "N", default_value = MAX_HTTP_CONNECTIONS_PER_CORE_DEFAULT)]
    max_http_connections_per_core: String,
    /// Long polls (?wait=) held per core; more are answered at once.
    #[arg(long, value_name = "N", default_value = MAX_LONG_POLLS_PER_CORE_DEFAULT)]
    max_long_polls_per_core: String,
    /// WebSockets open per core; more are refused with 503.
    #[arg(long, value_name = "N", default_value = MAX_WEBSOCKETS_PER_CORE_DEFAULT)]
    max_websockets_per_core: String,
    /// HTTP requests per second per client IP per core (burst twice that); 0 = no limit.
    #[arg(long, value_name = "N", default_value = HTTP_RATE_LIMIT_DEFAULT)]
    http_rate_limit: String,
    /// SMTP: how long to wait for a command line (RFC 5321 4.5.3.2).
    #[arg(long, value_name = "DURATION", default_value = COMMAND_TIMEOUT_DEFAULT)]
    command_timeout: String,
    /// SMTP: how long to wait for each read of message data (RFC 5321 4.5.3.2).
    #[arg(long, value_name = "DURATION", default_value = DATA_TIMEOUT_DEFAULT)]
    data_timeout: String,
    /// HTTP: how long to wait for a request head, and for the next request on a kept-alive
    /// connection.
    #[arg(long, value_name = "DURATION", default_value = HTTP_IDLE_TIMEOUT_DEFAULT)]
    http_idle_timeout: String,
    /// On SIGTERM, how long a session in the middle of a transaction may take to finish it.
    #[arg(long, value_name = "DURATION", default_value = SHUTDOWN_GRACE_DEFAULT)]
    shutdown_grace: String,
    /// Allow client IP addresses in logs and Received headers (off: they are left out).
    #[arg(long)]
    log_client_ip: bool,
    /// Log filter in tracing's EnvFilter syntax ("info", "mayfly=debug,warn"); RUST_LOG
    /// overrides it.
    #[arg(long, value_name = "FILTER", default_value = LOG_LEVEL_DEFAULT)]
    log_level: String,
    /// Also serve SMTP with implicit TLS (RFC 8314, port 465 by convention) on this address;
    /// needs a certificate.
    #[arg(long, value_name = "ADDR:PORT")]
    smtps: Option<String>,
    /// Also serve the HTTP API over TLS on this address; needs a certificate.
    #[arg(long, value_name = "ADDR:PORT")]
    https: Option<String>,
    /// PEM certificate chain (leaf first) for STARTTLS, --smtps and --https; reloaded on
    /// SIGHUP. Needs --tls-key.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert; reloaded on SIGHUP.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<String>,
    /// Generate a self-signed certificate for --hostname at start-up (testing only;
    /// instead of --tls-cert and --tls-key).
    #[arg(long)]
    tls_self_signed: bool,
    /// Refuse MAIL with "530 5.7.0" on the --smtp listener until the client did STARTTLS.
    #[arg(long)]
    require_tls: bool,
    /// How long a TLS handshake may take before the connection is closed.
    #[arg(long, value_name = "DURATION", default_value = TLS_HANDSHAKE_TIMEOUT_DEFAULT)]
    tls_handshake_timeout: String,
}

/// The TOML file as written: every key optional, values kept with their position so an
/// error can give the line. Unknown keys are an error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    smtp: Option<Spanned<Scalar>>,
    http: Option<Spanned<Scalar>>,
    domains: Option<Vec<Spanned<String>>>,
    ttl: Option<Spanned<Scalar>>,
    max_memory: Option<Spanned<Scalar>>,
    max_message_size: Option<Spanned<Scalar>>,
    max_recipients: Option<Spanned<Scalar>>,
    max_messages_per_inbox: Option<Spanned<Scalar>>,
    cores: Option<Spanned<Scalar>>,
    hostname: Option<Spanned<Scalar>>,
    max_sessions_per_core: Option<Spanned<Scalar>>,
    max_http_connections_per_core: Option<Spanned<Scalar>>,
    max_long_polls_per_core: Option<Spanned<Scalar>>,
    max_websockets_per_core: Option<Spanned<Scalar>>,
    http_rate_limit: Option<Spanned<Scalar>>,
    command_timeout: Option<Spanned<Scalar>>,
    data_timeout: Option<Spanned<Scalar>>,
    http_idle_timeout: Option<Spanned<Scalar>>,
    shutdown_grace: Option<Spanned<Scalar>>,
    log_client_ip: Option<bool>,
    log_level: Option<Spanned<Scalar>>,
    smtps: Option<Spanned<Scalar>>,
    https: Option<Spanned<Scalar>>,
    tls_cert: Option<Spanned<Scalar>>,
    tls_key: Option<Spanned<Scalar>>,
    tls_self_signed: Option<bool>,
    require_tls: Option<bool>,
    tls_handshake_timeout: Option<Spanned<Scalar>>,
}

/// A TOML string or integer, as text: `max_memory = 1048576` and `max_memory = "1MiB"` both
/// work, and `ttl = 30` reaches [`parse_duration`], which says the unit is missing.
#[derive(Debug)]
struct Scalar(String);

/// A loaded `--config` file.
struct ConfigFile {
    path: PathBuf,
    /// The file's text, to turn byte offsets into line numbers.
    text: String,
    values: FileConfig,
}

/// Where a setting's text came from, so that an error can point there.
#[derive(Debug, Clone, Copy)]
enum Origin {
    /// Given on the command line.
    Flag,
    /// From the config file, at this byte offset.
    File { offset: usize },
    /// The built-in default (which a test proves valid).
    Default,
}

/// One setting's winning text and where it came from.
struct Setting<'a> {
    /// The TOML key; the flag is the same name in kebab-case.
    key: &'static str,
    text: &'a str,
    origin: Origin,
}

/// The command line and the file, before they are merged.
struct Layers {
    cli: Cli,
    matches: ArgMatches,
    file: Option<ConfigFile>,
}

impl Config {
    /// Defaults, then the TOML file given by `--config` (if any), then flags.
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
        let matches = Cli::command()
            .try_get_matches_from(args)
            .map_err(Error::Cli)?;
        let cli = Cli::from_arg_matches(&matches).map_err(Error::Cli)?;
        let file = match &cli.config {
            Some(path) => Some(ConfigFile::read(path)?),
            None => None,
        };
        Layers { cli, matches, file }.resolve()
    }
}

impl Error {
    /// Prints the error and ends the process: help and version go to stdout with status 0,
    /// command-line usage errors to stderr with clap's status 2, and every other error to
    /// stderr as `error: ...` with [`EXIT_CODE_CONFIG`].
    pub fn exit(&self) -> ! {
        match self {
            Error::Cli(err) => err.exit(),
            other => {
                eprintln!("error: {other}");
                std::process::exit(EXIT_CODE_CONFIG)
            }
        }
    }
}

impl ConfigFile {
    fn read(path: &Path) -> Result<ConfigFile, Error> {
        let read_error = |reason: String| Error::ReadFile {
            path: path.to_path_buf(),
            reason,
        };
        let file = std::fs::File::open(path).map_err(|err| read_error(io_reason(&err)))?;
        let mut bytes = Vec::new();
        file.take(CONFIG_FILE_BYTES_MAX + 1)
            .read_to_end(&mut bytes)
            .map_err(|err| read_error(io_reason(&err)))?;
        if bytes.len() as u64 > CONFIG_FILE_BYTES_MAX {
            return Err(read_error(format!(
                "larger than {}, which is not a config file",
                format_size(CONFIG_FILE_BYTES_MAX as usize)
            )));
        }
        let text = String::from_utf8(bytes).map_err(|err| Error::FileSyntax {
            path: path.to_path_buf(),
            line: None,
            message: format!(
                "not UTF-8 (bad byte at offset {})",
                err.utf8_error().valid_up_to()
            ),
        })?;
        let values = toml::from_str::<FileConfig>(&text)
            .map_err(|err| ConfigFile::toml_error(path, &text, &err))?;
        Ok(ConfigFile {
            path: path.to_path_buf(),
            text,
            values,
        })
    }

    /// Turns toml's multi-line error into ours: one line, with a line number, and a
    /// suggestion for an unknown key.
    fn toml_error(path: &Path, text: &str, err: &toml::de::Error) -> Error {
        let line = err.span().map(|span| line_of(text, span.start));
        let message = err.message().trim();
        // serde's wording since 1.0: "unknown field `tll`, expected one of `smtp`, ...".
        if let Some(rest) = message.strip_prefix("unknown field `")
            && let Some((key, _)) = rest.split_once('`')
        {
            return Error::UnknownKey {
                path: path.to_path_buf(),
                key: key.to_string(),
                line,
                suggestion: closest_key(key),
            };
        }
        Error::FileSyntax {
            path: path.to_path_buf(),
            line,
            // toml's messages are one line today; make sure it stays so.
            message: message.replace('\n', " "),
        }
    }
}

impl Layers {
    fn resolve(self) -> Result<Config, Error> {
        let file = self.file.as_ref().map(|file| &file.values);
        let file = file.unwrap_or(&EMPTY_FILE);
        let cli = &self.cli;

        let smtp_addr = self.parse(self.pick("smtp", &cli.smtp, &file.smtp), parse_socket_addr)?;
        let http_addr = self.parse(self.pick("http", &cli.http, &file.http), parse_socket_addr)?;
        let domains = self.domains()?;
        let duration_in = |range: RangeInclusive<Duration>| {
            move |text: &str| parse_duration(text).and_then(|value| check_duration(value, &range))
        };
        let ttl = self.parse(
            self.pick("ttl", &cli.ttl, &file.ttl),
            duration_in(TTL_RANGE),
        )?;
        let physical_memory_bytes = physical_memory_bytes();
        let memory_bytes_max = self.parse(
            self.pick("max_memory", &cli.max_memory, &file.max_memory),
            |text| check_memory(parse_size(text)?, physical_memory_bytes),
        )?;
        let message_bytes_max = self.parse(
            self.pick(
                "max_message_size",
                &cli.max_message_size,
                &file.max_message_size,
            ),
            |text| check_message_size(parse_size(text)?),
        )?;
        let recipients_max = self.parse(
            self.pick("max_recipients", &cli.max_recipients, &file.max_recipients),
            |text| parse_count(text, &RECIPIENTS_RANGE),
        )?;
        let inbox_messages_max = self.parse(
            self.pick(
                "max_messages_per_inbox",
                &cli.max_messages_per_inbox,
                &file.max_messages_per_inbox,
            ),
            |text| parse_count(text, &INBOX_MESSAGES_RANGE),
        )?;
        let cores_available = cores_available();
        let cores = match self.pick_optional("cores", cli.cores.as_deref(), &file.cores) {
            Some(setting) => self.parse(setting, |text| parse_cores(text, cores_available))?,
            None => cores_default(cores_available, memory_bytes_max, message_bytes_max),
        };
        let hostname = match self.pick_optional("hostname", cli.hostname.as_deref(), &file.hostname)
        {
            Some(setting) => self.parse(setting, |text| {
                validate_dns_name(text).map(|()| text.to_string())
            })?,
            None => machine_hostname(),
        };
        let smtp_sessions_per_core_max = self.parse(
            self.pick(
                "max_sessions_per_core",
                &cli.max_sessions_per_core,
                &file.max_sessions_per_core,
            ),
            |text| parse_count(text, &SESSIONS_PER_CORE_RANGE),
        )?;
        let http_connections_per_core_max = self.parse(
            self.pick(
                "max_http_connections_per_core",
                &cli.max_http_connections_per_core,
                &file.max_http_connections_per_core,
            ),
            |text| parse_count(text, &HTTP_CONNECTIONS_PER_CORE_RANGE),
        )?;
        let long_polls_per_core_max = self.parse(
            self.pick(
                "max_long_polls_per_core",
                &cli.max_long_polls_per_core,
                &file.max_long_polls_per_core,
            ),
            |text| parse_count(text, &LONG_POLLS_PER_CORE_RANGE),
        )?;
        let websockets_per_core_max = self.parse(
            self.pick(
                "max_websockets_per_core",
                &cli.max_websockets_per_core,
                &file.max_websockets_per_core,
            ),
            |text| parse_count(text, &WEBSOCKETS_PER_CORE_RANGE),
        )?;
        let http_requests_per_ip_per_sec_max = self.parse(
            self.pick(
                "http_rate_limit",
                &cli.http_rate_limit,
                &file.http_rate_limit,
            ),
            |text| parse_count(text, &HTTP_RATE_LIMIT_RANGE),
        )?;
        let command_timeout = self.parse(
            self.pick(
                "command_timeout",
                &cli.command_timeout,
                &file.command_timeout,
            ),
            duration_in(TIMEOUT_RANGE),
        )?;
        let data_timeout = self.parse(
            self.pick("data_timeout", &cli.data_timeout, &file.data_timeout),
            duration_in(TIMEOUT_RANGE),
        )?;
        let http_idle_timeout = self.parse(
            self.pick(
                "http_idle_timeout",
                &cli.http_idle_timeout,
                &file.http_idle_timeout,
            ),
            duration_in(TIMEOUT_RANGE),
        )?;
        let shutdown_grace = self.parse(
            self.pick("shutdown_grace", &cli.shutdown_grace, &file.shutdown_grace),
            duration_in(SHUTDOWN_GRACE_RANGE),
        )?;
        let log_client_ip = if self.given("log_client_ip") {
            cli.log_client_ip
        } else {
            file.log_client_ip.unwrap_or(false)
        };
        let log_level = self.parse(
            self.pick("log_level", &cli.log_level, &file.log_level),
            |text| validate_log_filter(text).map(|()| text.to_string()),
        )?;
        let optional_addr = |key: &'static str, flag: Option<&str>, file_value| {
            self.pick_optional(key, flag, file_value)
                .map(|setting| self.parse(setting, parse_socket_addr))
                .transpose()
        };
        let smtps_addr = optional_addr("smtps", cli.smtps.as_deref(), &file.smtps)?;
        let https_addr = optional_addr("https", cli.https.as_deref(), &file.https)?;
        let optional_path = |key: &'static str, flag: Option<&str>, file_value| {
            self.pick_optional(key, flag, file_value)
                .map(|setting| self.parse(setting, parse_path))
                .transpose()
        };
        let tls_cert = optional_path("tls_cert", cli.tls_cert.as_deref(), &file.tls_cert)?;
        let tls_key = optional_path("tls_key", cli.tls_key.as_deref(), &file.tls_key)?;
        let flag_or_file = |key: &str, flag: bool, file_value: Option<bool>| {
            if self.given(key) {
                flag
            } else {
                file_value.unwrap_or(false)
            }
        };
        let tls_self_signed =
            flag_or_file("tls_self_signed", cli.tls_self_signed, file.tls_self_signed);
        let tls_required = flag_or_file("require_tls", cli.require_tls, file.require_tls);
        let tls_handshake_timeout = self.parse(
            self.pick(
                "tls_handshake_timeout",
                &cli.tls_handshake_timeout,
                &file.tls_handshake_timeout,
            ),
            duration_in(TIMEOUT_RANGE),
        )?;

        let config = Config {
            smtp_addr,
            http_addr,
            domains,
            ttl,
            memory_bytes_max,
            message_bytes_max,
            recipients_max,
            inbox_messages_max,
            cores,
            hostname,
            smtp_sessions_per_core_max,
            http_connections_per_core_max,
            long_polls_per_core_max,
            websockets_per_core_max,
            http_requests_per_ip_per_sec_max,
            command_timeout,
            data_timeout,
            http_idle_timeout,
            shutdown_grace,
            log_client_ip,
            log_level,
            smtps_addr,
            https_addr,
            tls_cert,
            tls_key,
            tls_self_signed,
            tls_required,
            tls_handshake_timeout,
            config_file: self.file.as_ref().map(|file| file.path.clone()),
        };
        check_consistency(&config)?;
        Ok(config)
    }

    /// Whether the flag for `key` was given on the command line (not just defaulted).
    fn given(&self, key: &str) -> bool {
        self.matches.value_source(key) == Some(ValueSource::CommandLine)
    }

    /// The winning text for a setting that has a built-in default.
    fn pick<'a>(
        &'a self,
        key: &'static str,
        flag_or_default: &'a str,
        file_value: &'a Option<Spanned<Scalar>>,
    ) -> Setting<'a> {
        let setting = self.pick_optional(key, Some(flag_or_default), file_value);
        setting.unwrap_or(Setting {
            key,
            text: flag_or_default,
            origin: Origin::Default,
        })
    }

    /// The winning text for a setting, or `None` when neither layer sets it and it has no
    /// static default.
    fn pick_optional<'a>(
        &'a self,
        key: &'static str,
        flag_value: Option<&'a str>,
        file_value: &'a Option<Spanned<Scalar>>,
    ) -> Option<Setting<'a>> {
        if self.given(key)
            && let Some(text) = flag_value
        {
            return Some(Setting {
                key,
                text,
                origin: Origin::Flag,
            });
        }
        if let Some(value) = file_value {
            return Some(Setting {
                key,
                text: &value.get_ref().0,
                origin: Origin::File {
                    offset: value.span().start,
                },
            });
        }
        flag_value.map(|text| Setting {
            key,
            text,
            origin: Origin::Default,
        })
    }

    /// Parses a setting's text, turning the parser's reason into an error that names the
    /// flag or the file, key and line.
    fn parse<T>(
        &self,
        setting: Setting<'_>,
        parser: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, Error> {
        parser(setting.text).map_err(|reason| self.invalid(&setting, reason))
    }

    fn invalid(&self, setting: &Setting<'_>, reason: String) -> Error {
        match (setting.origin, &self.file) {
            (Origin::File { offset }, Some(file)) => Error::InvalidKey {
                path: file.path.clone(),
                key: setting.key,
                line: line_of(&file.text, offset),
                value: setting.text.to_string(),
                reason,
            },
            // A default that fails (machine-dependent bounds) is reported against its flag:
            // that is where the operator can fix it.
            _ => Error::InvalidFlag {
                flag: flag_name(setting.key),
                value: setting.text.to_string(),
                reason,
            },
        }
    }

    /// `--domain` flags replace the file's `domains` list as a whole.
    fn domains(&self) -> Result<DomainPolicy, Error> {
        let file_domains = self
            .file
            .as_ref()
            .and_then(|file| file.values.domains.as_ref());
        let settings: Vec<Setting<'_>> = if self.given("domains") {
            let names = self.cli.domains.iter();
            names
                .map(|text| Setting {
                    key: "domains",
                    text,
                    origin: Origin::Flag,
                })
                .collect()
        } else {
            let names = file_domains.into_iter().flatten();
            names
                .map(|name| Setting {
                    key: "domains",
                    text: name.get_ref(),
                    origin: Origin::File {
                        offset: name.span().start,
                    },
                })
                .collect()
        };
        for setting in &settings {
            if let Err(reason) = validate_domain(setting.text) {
                let mut err = self.invalid(setting, reason);
                // The flag is `--domain` (one name each), the key `domains` (a list).
                if let Error::InvalidFlag { flag, .. } = &mut err {
                    *flag = "--domain".to_string();
                }
                return Err(err);
            }
        }
        let names: Vec<&str> = settings.iter().map(|setting| setting.text).collect();
        Ok(DomainPolicy::new(&names))
    }
}

/// A file that sets nothing, for when there is no `--config`.
static EMPTY_FILE: FileConfig = FileConfig {
    smtp: None,
    http: None,
    domains: None,
    ttl: None,
    max_memory: None,
    max_message_size: None,
    max_recipients: None,
    max_messages_per_inbox: None,
    cores: None,
    hostname: None,
    max_sessions_per_core: None,
    max_http_connections_per_core: None,
    max_long_polls_per_core: None,
    max_websockets_per_core: None,
    http_rate_limit: None,
    command_timeout: None,
    data_timeout: None,
    http_idle_timeout: None,
    shutdown_grace: None,
    log_client_ip: None,
    log_level: None,
    smtps: None,
    https: None,
    tls_cert: None,
    tls_key: None,
    tls_self_signed: None,
    require_tls: None,
    tls_handshake_timeout: None,
};

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Scalar, D::Error> {
        struct ScalarVisitor;
        impl serde::de::Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a string or an integer")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Scalar, E> {
                Ok(Scalar(value.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Scalar, E> {
                Ok(Scalar(value.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Scalar, E> {
                Ok(Scalar(value.to_string()))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

impl DomainPolicy {
    /// Builds the policy from configured names such as `example.test` and `*.example.test`.
    /// An empty list accepts every domain (development catch-all).
    pub fn new<S: AsRef<str>>(names: &[S]) -> DomainPolicy {
        let mut policy = DomainPolicy::default();
        for name in names {
            let name = name
                .as_ref()
                .trim()
                .trim_end_matches('.')
                .to_ascii_lowercase();
            if let Some(parent) = name.strip_prefix("*.") {
                policy.first.get_or_insert_with(|| parent.to_string());
                policy.wildcard.push(parent.to_string());
            } else {
                policy.first.get_or_insert_with(|| name.clone());
                policy.exact.push(name);
            }
        }
        policy
    }

    /// True when no domain is configured and every domain is accepted.
    pub fn is_catch_all(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }

    /// The first configured domain (for `POST /api/v1/addresses` without a body).
    pub fn first(&self) -> Option<&str> {
        self.first.as_deref()
    }

    /// Whether mail for `domain` (any case, optional trailing dot) is accepted.
    pub fn accepts(&self, domain: &str) -> bool {
        if self.is_catch_all() {
            return true;
        }
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        if self.exact.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
            return true;
        }
        self.wildcard.iter().any(|parent| {
            if domain.eq_ignore_ascii_case(parent) {
                return true;
            }
            let (domain, parent) = (domain.as_bytes(), parent.as_bytes());
            domain.len() > parent.len() + 1
                && domain[domain.len() - parent.len() - 1] == b'.'
                && domain[domain.len() - parent.len()..].eq_ignore_ascii_case(parent)
        })
    }
}

/// Parses a duration: one or more `<whole number><unit>` parts with units `d`, `h`, `m`,
/// `s`, `ms`, largest first and each at most once: "500ms", "30s", "10m", "1h", "2d",
/// "1h30m". No sign, no fraction, no spaces; "0s" is zero (callers check their own range).
///
/// # Errors
///
/// A one-line reason (without the value) for empty text, a missing or unknown unit, a
/// stray character, units out of order, or a total beyond `u64` milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err(format!("empty: {DURATION_EXPECTED}"));
    }
    let mut rest = text;
    let mut total_ms: u64 = 0;
    // Index into DURATION_UNITS of the previous part's unit: the next must come later.
    let mut next_unit_idx = 0;
    while !rest.is_empty() {
        let Some((number, after_number)) = split_number(rest) else {
            return Err(unexpected(text, rest, DURATION_EXPECTED));
        };
        let unit_len = after_number
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        let (unit, after_unit) = after_number.split_at(unit_len);
        if unit.is_empty() {
            return Err(if after_unit.is_empty() {
                format!("missing unit after {number}: {DURATION_EXPECTED}")
            } else {
                unexpected(text, after_unit, DURATION_EXPECTED)
            });
        }
        let Some(unit_idx) = DURATION_UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(format!("unknown unit '{unit}': {DURATION_EXPECTED}"));
        };
        if unit_idx < next_unit_idx {
            return Err(format!(
                "units must go from largest to smallest, each once (d, h, m, s, ms): \
                 {DURATION_EXPECTED}"
            ));
        }
        next_unit_idx = unit_idx + 1;
        let part_ms = number
            .parse::<u64>()
            .ok()
            .and_then(|number| number.checked_mul(DURATION_UNITS[unit_idx].1));
        total_ms = part_ms
            .and_then(|part_ms| total_ms.checked_add(part_ms))
            .ok_or_else(|| "duration too large".to_string())?;
        rest = after_unit;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Parses a size in bytes: a whole number with no unit or `B` (bytes), or one of `KiB`,
/// `MiB`, `GiB`, `TiB` (powers of 1024): "1048576", "512KiB", "10MiB", "1GiB". Units are
/// case-sensitive; decimal units ("MB", "k") are refused as ambiguous rather than guessed.
/// No sign, fraction or spaces. Zero parses; callers reject it where it is meaningless.
///
/// # Errors
///
/// A one-line reason (without the value) for empty or malformed text, an unknown or
/// ambiguous unit, or a size that does not fit in `usize`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    if text.is_empty() {
        return Err(format!("empty: {SIZE_EXPECTED}"));
    }
    let Some((number, unit)) = split_number(text) else {
        return Err(unexpected(text, text, SIZE_EXPECTED));
    };
    let unit_bytes = match unit {
        "" | "B" => 1,
        _ => match SIZE_UNITS.iter().find(|(name, _)| *name == unit) {
            Some((_, unit_bytes)) => *unit_bytes,
            None if is_decimal_size_unit(unit) => {
                return Err(format!(
                    "ambiguous unit '{unit}': use KiB, MiB, GiB or TiB (powers of 1024), or bytes"
                ));
            }
            None if unit.starts_with(|c: char| c.is_ascii_alphabetic()) => {
                return Err(format!("unknown unit '{unit}': {SIZE_EXPECTED}"));
            }
            None => return Err(unexpected(text, unit, SIZE_EXPECTED)),
        },
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(unit_bytes))
        .and_then(|bytes| usize::try_from(bytes).ok())
        .ok_or_else(|| "size too large".to_string())
}

/// Formats a duration the way [`parse_duration`] reads it ("1h30m", "500ms", "0s"), so
/// that `parse_duration(&format_duration(d)) == Ok(d)` for whole milliseconds. A duration
/// with a sub-millisecond part is shown in `Debug` form, which does not parse back.
pub fn format_duration(duration: Duration) -> String {
    if !duration.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{duration:?}");
    }
    let mut rest_ms = duration.as_millis();
    if rest_ms == 0 {
        return "0s".to_string();
    }
    let mut text = String::new();
    for (name, unit_ms) in DURATION_UNITS {
        let unit_ms = u128::from(unit_ms);
        if rest_ms >= unit_ms {
            text.push_str(&format!("{}{name}", rest_ms / unit_ms));
            rest_ms %= unit_ms;
        }
    }
    text
}

/// Formats a byte count the way [`parse_size`] reads it: in the largest binary unit that
/// divides it ("10MiB", "512KiB"), else in bytes ("1000B").
pub fn format_size(bytes: usize) -> String {
    let bytes_u64 = bytes as u64;
    for (name, unit_bytes) in SIZE_UNITS {
        if bytes_u64 != 0 && bytes_u64.is_multiple_of(unit_bytes) {
            return format!("{}{name}", bytes_u64 / unit_bytes);
        }
    }
    format!("{bytes}B")
}

/// Splits leading ASCII digits off `text`; `None` when it does not start with one.
fn split_number(text: &str) -> Option<(&str, &str)> {
    let digits_len = text.bytes().take_while(u8::is_ascii_digit).count();
    (digits_len > 0).then(|| text.split_at(digits_len))
}

/// The reason for `text` having a character where a number or unit should be, at the
/// start of `rest`. Text that is wrong from its first character gets just `expected`.
fn unexpected(text: &str, rest: &str, expected: &str) -> String {
    match rest.chars().next() {
        Some(c) if rest.len() < text.len() => {
            format!("unexpected character '{}': {expected}", c.escape_debug())
        }
        _ => expected.to_string(),
    }
}

fn is_decimal_size_unit(unit: &str) -> bool {
    matches!(
        unit,
        "k" | "K" | "kB" | "KB" | "M" | "MB" | "G" | "GB" | "T" | "TB" | "Ki" | "Mi" | "Gi" | "Ti"
    )
}

/// A whole number (ASCII digits only) within `range`.
fn parse_count(text: &str, range: &RangeInclusive<usize>) -> Result<usize, String> {
    let expected = || {
        format!(
            "expected a whole number from {} to {}",
            range.start(),
            range.end()
        )
    };
    if split_number(text).is_none_or(|(_, rest)| !rest.is_empty()) {
        return Err(expected());
    }
    match text.parse::<usize>() {
        Ok(count) if range.contains(&count) => Ok(count),
        _ => Err(expected()),
    }
}

/// A core count from 1 to what this process may use (and at most [`CORES_MAX`]).
fn parse_cores(text: &str, cores_available: usize) -> Result<usize, String> {
    let cores_max = cores_available.clamp(1, CORES_MAX);
    parse_count(text, &(1..=cores_max)).map_err(|reason| {
        if cores_available > CORES_MAX {
            format!("{reason} (at most {CORES_MAX} executors are supported)")
        } else {
            format!("{reason} (this machine has {cores_available} available cores)")
        }
    })
}

fn check_duration(
    duration: Duration,
    range: &RangeInclusive<Duration>,
) -> Result<Duration, String> {
    if range.contains(&duration) {
        return Ok(duration);
    }
    Err(format!(
        "must be from {} to {}",
        format_duration(*range.start()),
        format_duration(*range.end())
    ))
}

fn check_memory(bytes: usize, physical_memory_bytes: Option<usize>) -> Result<usize, String> {
    if bytes < MEMORY_BYTES_PER_CORE_MIN {
        return Err(format!(
            "must be at least {}",
            format_size(MEMORY_BYTES_PER_CORE_MIN)
        ));
    }
    if let Some(physical_memory_bytes) = physical_memory_bytes
        && bytes > physical_memory_bytes
    {
        // Shards allocate up front; with overcommit this would only fail later, under load.
        return Err(format!(
            "more than this machine's memory ({} MiB)",
            physical_memory_bytes / MIB
        ));
    }
    Ok(bytes)
}

fn check_message_size(bytes: usize) -> Result<usize, String> {
    if bytes < MESSAGE_BYTES_MIN {
        return Err(format!(
            "must be at least {} (RFC 5321 4.5.3.1.7)",
            format_size(MESSAGE_BYTES_MIN)
        ));
    }
    Ok(bytes)
}

/// An IP address and port; names are not resolved, so that start-up does not depend on DNS.
fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>().map_err(|_| {
        let looks_like_name = text
            .rsplit_once(':')
            .is_some_and(|(host, _)| host.starts_with(|c: char| c.is_ascii_alphabetic()));
        if looks_like_name {
            "expected an IP address and port such as 127.0.0.1:2525 or [::1]:2525 \
             (host names are not resolved)"
                .to_string()
        } else {
            "expected ADDR:PORT such as 127.0.0.1:2525, 0.0.0.0:25 or [::1]:2525".to_string()
        }
    })
}

/// A file path; relative paths are taken from the working directory. Whether the file
/// exists and holds what it should is checked when it is read (TLS set-up), not here.
fn parse_path(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("empty: expected a file path".to_string());
    }
    Ok(PathBuf::from(text))
}

/// A configured recipient domain: a DNS name, optionally with a leading `*.` (that domain
/// and every subdomain) and a trailing dot.
fn validate_domain(name: &str) -> Result<(), String> {
    let parent = name.strip_prefix("*.").unwrap_or(name);
    validate_dns_name(parent.strip_suffix('.').unwrap_or(parent))
}

/// A DNS name: dot-separated labels of ASCII letters, digits and inner hyphens (RFC 1123
/// 2.1), 1 to 63 bytes each, at most 253 bytes in all. Also used for `hostname`, which goes
/// into SMTP replies verbatim, so nothing else may get through (no spaces, no CR or LF).
fn validate_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty domain name".to_string());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(match c {
            '@' => {
                "'@' is not allowed: give a domain such as example.test, not an address".to_string()
            }
            '*' => "'*' is only allowed as a leading '*.', as in *.example.test".to_string(),
            c if c.is_whitespace() => "spaces are not allowed".to_string(),
            c if !c.is_ascii() => {
                format!("'{c}' is not ASCII: write the name in its xn-- (punycode) form")
            }
            c => format!(
                "character '{}' is not allowed: use letters, digits, hyphens and dots",
                c.escape_debug()
            ),
        });
    }
    if name.len() > DOMAIN_BYTES_MAX {
        return Err(format!("longer than {DOMAIN_BYTES_MAX} characters"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label (two dots in a row, or a leading dot)".to_string());
        }
        if label.len() > LABEL_BYTES_MAX {
            return Err(format!("label longer than {LABEL_BYTES_MAX} characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label '{label}' starts or ends with a hyphen"));
        }
    }
    Ok(())
}

/// The same check `tracing_subscriber` will do when logging is set up, done here so a bad
/// filter is reported with the other configuration errors.
fn validate_log_filter(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("empty: expected a filter such as info or mayfly=debug,warn".to_string());
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(text)
        .map(|_| ())
        .map_err(|err| format!("{err}: expected a filter such as info or mayfly=debug,warn"))
}

/// Cross-field checks: each value passed its own check already.
fn check_consistency(config: &Config) -> Result<(), Error> {
    let cores = config.cores;
    let memory = config.memory_bytes_max;
    let memory_min = MEMORY_BYTES_PER_CORE_MIN.saturating_mul(cores);
    if memory < memory_min {
        return Err(Error::Inconsistent(format!(
            "--max-memory {} is less than {} per core: {} need at least {}; \
             raise --max-memory or lower --cores",
            format_size(memory),
            format_size(MEMORY_BYTES_PER_CORE_MIN),
            n_cores(cores),
            format_size(memory_min)
        )));
    }
    let share = memory / cores;
    if config.message_bytes_max > share {
        return Err(Error::Inconsistent(format!(
            "--max-message-size {} is more than one core's share of --max-memory \
             ({} / {} = {}), and each core's store must be able to hold the largest \
             message; raise --max-memory, or lower --max-message-size or --cores",
            format_size(config.message_bytes_max),
            format_size(memory),
            n_cores(cores),
            format_size(share)
        )));
    }
    let listeners = [
        ("--smtp", Some(config.smtp_addr)),
        ("--http", Some(config.http_addr)),
        ("--smtps", config.smtps_addr),
        ("--https", config.https_addr),
    ];
    let listeners: Vec<(&str, SocketAddr)> = listeners
        .into_iter()
        .filter_map(|(flag, addr)| addr.map(|addr| (flag, addr)))
        .collect();
    for (idx, (flag_a, a)) in listeners.iter().enumerate() {
        for (flag_b, b) in &listeners[idx + 1..] {
            let ips_overlap =
                a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified();
            if a.port() != 0 && a.port() == b.port() && ips_overlap {
                return Err(Error::Inconsistent(format!(
                    "{flag_a} {a} and {flag_b} {b} would bind the same port; give them different ports"
                )));
            }
        }
    }
    check_tls_consistency(config)
}

/// A certificate is given in exactly one way, and whatever needs TLS has one.
fn check_tls_consistency(config: &Config) -> Result<(), Error> {
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), None) => {
            return Err(Error::Inconsistent(format!(
                "--tls-cert {} is given without --tls-key; give both (the certificate chain \
                 and its private key)",
                cert.display()
            )));
        }
        (None, Some(key)) => {
            return Err(Error::Inconsistent(format!(
                "--tls-key {} is given without --tls-cert; give both (the certificate chain \
                 and its private key)",
                key.display()
            )));
        }
        (Some(_), Some(_)) if config.tls_self_signed => {
            return Err(Error::Inconsistent(
                "--tls-self-signed and --tls-cert/--tls-key are both given; choose one".to_string(),
            ));
        }
        _ => {}
    }
    let has_certificate = config.tls_cert.is_some() || config.tls_self_signed;
    let needs_certificate = [
        config.smtps_addr.map(|addr| format!("--smtps {addr}")),
        config.https_addr.map(|addr| format!("--https {addr}")),
        config.tls_required.then(|| "--require-tls".to_string()),
    ];
    if !has_certificate && let Some(what) = needs_certificate.into_iter().flatten().next() {
        return Err(Error::Inconsistent(format!(
            "{what} needs a certificate: give --tls-cert and --tls-key, or --tls-self-signed"
        )));
    }
    Ok(())
}

/// "1 core", "2 cores".
fn n_cores(cores: usize) -> String {
    if cores == 1 {
        "1 core".to_string()
    } else {
        format!("{cores} cores")
    }
}

/// CPUs this process may run on (affinity and cgroup quota included), at least 1.
fn cores_available() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// All available cores, but no more than [`CORES_MAX`], and no more than the memory
/// allows: each core's share must hold the largest message and [`MEMORY_BYTES_PER_CORE_MIN`].
/// Without this cap the defaults would not load on a machine with more than 25 cores.
fn cores_default(
    cores_available: usize,
    memory_bytes_max: usize,
    message_bytes_max: usize,
) -> usize {
    let share_bytes_min = message_bytes_max.max(MEMORY_BYTES_PER_CORE_MIN);
    cores_available
        .min(CORES_MAX)
        .min(memory_bytes_max / share_bytes_min)
        .max(1)
}

/// The kernel's hostname if it is a valid DNS name, else [`HOSTNAME_FALLBACK`].
fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| validate_dns_name(name).is_ok())
        .unwrap_or_else(|| HOSTNAME_FALLBACK.to_string())
}

/// Total RAM from /proc/meminfo, or `None` where it cannot be read (then it is not checked).
fn physical_memory_bytes() -> Option<usize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib = line
        .trim_start_matches("MemTotal:")
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<usize>()
        .ok()?;
    kib.checked_mul(1024)
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let before = &text.as_bytes()[..offset.min(text.len())];
    before.iter().filter(|byte| **byte == b'\n').count() + 1
}

/// `max_memory` -> `--max-memory`.
fn flag_name(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

/// The known key closest to a mistyped one (edit distance at most 2), for a suggestion.
fn closest_key(key: &str) -> Option<&'static str> {
    let key = key.replace('-', "_").to_ascii_lowercase();
    KEYS.iter()
        .map(|known| (edit_distance(&key, known), *known))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known)
}

/// Levenshtein distance over bytes (keys are ASCII; anything else just scores as far).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (a_idx, a_byte) in a.iter().enumerate() {
        current[0] = a_idx + 1;
        for (b_idx, b_byte) in b.iter().enumerate() {
            let substitution = previous[b_idx] + usize::from(a_byte != b_byte);
            current[b_idx + 1] = substitution
                .min(previous[b_idx + 1] + 1)
                .min(current[b_idx] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// An I/O error's text without std's " (os error N)" suffix.
fn io_reason(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error ") {
        Some(idx) => text[..idx].to_string(),
        None => text,
    }
}

fn at_line(line: Option<usize>) -> String {
    line.map(|line| format!(" (line {line})"))
        .unwrap_or_default()
}

fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion
        .map(|key| format!("; did you mean '{key}'?"))
        .unwrap_or_default()
}

/// clap's own text for `--help` and `--version`; for a usage error, its first line without
/// the "error: " prefix (the rest is a usage summary and a pointer to `--help`).
fn cli_message(err: &clap::Error) -> String {
    use clap::error::ErrorKind;
    let text = err.to_string();
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => text,
        _ => {
            let first_line = text.lines().next().unwrap_or_default();
            first_line
                .strip_prefix("error: ")
                .unwrap_or(first_line)
                .to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use clap::CommandFactory;
    use proptest::prelude::*;

    use super::*;

    const MS: u64 = 1;
    const S: u64 = 1_000;
    const M: u64 = 60_000;
    const H: u64 = 3_600_000;
    const D: u64 = 86_400_000;
    const KIB: usize = 1 << 10;

    /// The example shipped for operators; a test proves it loads.
    const EXAMPLE_TOML: &str = include_str!("../docs/mayfly.example.toml");
    /// The operator's reference; a test proves it mentions every flag and key.
    const CONFIGURATION_MD: &str = include_str!("../docs/configuration.md");

    /// A file under the temp directory, removed on drop.
    struct TempFile {
        path: PathBuf,
    }

    impl TempFile {
        fn new(contents: impl AsRef<[u8]>) -> TempFile {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let name = format!(
                "mayfly-config-test-{}-{}.toml",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let path = std::env::temp_dir().join(name);
            std::fs::write(&path, contents).expect("write temp config file");
            TempFile { path }
        }

        fn path(&self) -> &str {
            self.path.to_str().expect("temp dir path is UTF-8")
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            // Best effort: a leftover file in the temp dir is harmless.
            let _ = std::fs::remove_file(&self.path);
        }
    }

    fn load(args: &[&str]) -> Result<Config, Error> {
        Config::load(std::iter::once("mayfly").chain(args.iter().copied()))
    }

    /// Loads `toml` from a temp file with `args` after `--config FILE`.
    fn load_file(toml: &str, args: &[&str]) -> (TempFile, Result<Config, Error>) {
        let file = TempFile::new(toml);
        let mut all_args = vec!["--config", file.path()];
        all_args.extend_from_slice(args);
        let result = load(&all_args);
        (file, result)
    }

    fn error_text(result: Result<Config, Error>) -> String {
        let err = result.expect_err("configuration should be rejected");
        let text = err.to_string();
        assert!(!text.contains('\n'), "error is not one line: {text:?}");
        text
    }

    #[test]
    fn parse_duration_accepts() {
        let cases: &[(&str, u64)] = &[
            ("500ms", 500 * MS),
            ("30s", 30 * S),
            ("10m", 10 * M),
            ("1h", H),
            ("2d", 2 * D),
            ("1h30m", H + 30 * M),
            ("1m30s", M + 30 * S),
            ("1d2h3m4s5ms", D + 2 * H + 3 * M + 4 * S + 5 * MS),
            ("1s500ms", S + 500 * MS),
            ("0s", 0),
            ("0ms", 0),
            ("007s", 7 * S),
            ("18446744073709551615ms", u64::MAX),
        ];
        for (text, expected_ms) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(*expected_ms)),
                "{text}"
            );
        }
    }

    #[test]
    fn parse_duration_rejects() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("abc", DURATION_EXPECTED),
            ("s", DURATION_EXPECTED),
            ("30", "missing unit after 30"),
            ("-5s", DURATION_EXPECTED),
            ("+5s", DURATION_EXPECTED),
            ("1.5h", "unexpected character '.'"),
            ("5 s", "unexpected character ' '"),
            (" 5s", DURATION_EXPECTED),
            ("5s ", "unexpected character ' '"),
            ("5s5", "missing unit after 5"),
            ("1h-5m", "unexpected character '-'"),
            ("5S", "unknown unit 'S'"),
            ("1y", "unknown unit 'y'"),
            ("1mm", "unknown unit 'mm'"),
            ("1sec", "unknown unit 'sec'"),
            ("30m1h", "units must go from largest to smallest"),
            ("1h1h", "units must go from largest to smallest"),
            ("5ms1s", "units must go from largest to smallest"),
            ("18446744073709551616ms", "too large"),
            ("213503982335d", "too large"),
            ("213503982334d86400000s", "too large"),
            ("99999999999999999999999s", "too large"),
            ("5s\n", "unexpected character '\\n'"),
            ("５s", DURATION_EXPECTED),
            ("1５s", "unexpected character '５'"),
        ];
        for (text, expected) in cases {
            let reason = parse_duration(text).expect_err(text);
            assert!(reason.contains(expected), "{text:?}: {reason}");
            assert!(!reason.contains('\n'), "{text:?}: {reason}");
        }
    }

    #[test]
    fn parse_size_accepts() {
        let cases: &[(&str, usize)] = &[
            ("0", 0),
            ("1", 1),
            ("1048576", 1 << 20),
            ("1B", 1),
            ("512KiB", 512 * KIB),
            ("10MiB", 10 * MIB),
            ("256MiB", 256 * MIB),
            ("1GiB", 1 << 30),
            ("2TiB", 2 << 40),
            ("0010MiB", 10 * MIB),
            ("18446744073709551615", usize::MAX),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_size(text), Ok(*expected), "{text}");
        }
    }

    #[test]
    fn parse_size_rejects() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("abc", SIZE_EXPECTED),
            ("MiB", SIZE_EXPECTED),
            ("-1", SIZE_EXPECTED),
            ("+1", SIZE_EXPECTED),
            ("1.5GiB", "unexpected character '.'"),
            ("10 MiB", "unexpected character ' '"),
            ("10MB", "ambiguous unit 'MB'"),
            ("10k", "ambiguous unit 'k'"),
            ("10Mi", "ambiguous unit 'Mi'"),
            ("10mib", "unknown unit 'mib'"),
            ("10MiBs", "unknown unit 'MiBs'"),
            ("10b", "unknown unit 'b'"),
            ("18446744073709551616", "too large"),
            ("16777216TiB", "too large"),
            ("99999999999999999999999KiB", "too large"),
        ];
        for (text, expected) in cases {
            let reason = parse_size(text).expect_err(text);
            assert!(reason.contains(expected), "{text:?}: {reason}");
        }
    }

    #[test]
    fn format_duration_and_size() {
        let durations: &[(u64, &str)] = &[
            (0, "0s"),
            (500 * MS, "500ms"),
            (30 * S, "30s"),
            (90 * M, "1h30m"),
            (30 * D, "30d"),
            (D + S + MS, "1d1s1ms"),
        ];
        for (ms, expected) in durations {
            assert_eq!(format_duration(Duration::from_millis(*ms)), *expected);
        }
        assert_eq!(format_duration(Duration::from_nanos(1_500)), "1.5µs");
        let sizes: &[(usize, &str)] = &[
            (0, "0B"),
            (1000, "1000B"),
            (512 * KIB, "512KiB"),
            (10 * MIB, "10MiB"),
            (1536 * MIB, "1536MiB"),
            (3 << 40, "3TiB"),
        ];
        for (bytes, expected) in sizes {
            assert_eq!(format_size(*bytes), *expected);
        }
    }

    proptest! {
        #[test]
        fn duration_round_trips(ms in any::<u64>()) {
            let duration = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }

        #[test]
        fn size_round_trips(bytes in any::<usize>()) {
            prop_assert_eq!(parse_size(&format_size(bytes)), Ok(bytes));
        }

        /// A naive model: a single `<number><unit>` part.
        #[test]
        fn duration_single_part_matches_model(number in any::<u32>(), unit_idx in 0..DURATION_UNITS.len()) {
            let (unit, unit_ms) = DURATION_UNITS[unit_idx];
            let expected = Duration::from_millis(u64::from(number) * unit_ms);
            prop_assert_eq!(parse_duration(&format!("{number}{unit}")), Ok(expected));
        }

        #[test]
        fn parsers_never_panic(text in "[0-9a-zA-Z. +\\-]{0,16}|\\PC{0,16}") {
            let _ = parse_duration(&text);
            let _ = parse_size(&text);
            let _ = validate_domain(&text);
        }
    }

    #[test]
    fn defaults() {
        let config = load(&[]).expect("defaults load");
        assert_eq!(config.smtp_addr.to_string(), "127.0.0.1:2525");
        assert_eq!(config.http_addr.to_string(), "127.0.0.1:8025");
        assert!(config.domains.is_catch_all());
        assert_eq!(config.ttl, Duration::from_secs(3_600));
        assert_eq!(config.memory_bytes_max, 256 * MIB);
        assert_eq!(config.message_bytes_max, 10 * MIB);
        assert_eq!(config.recipients_max, 100);
        assert_eq!(config.inbox_messages_max, 1000);
        assert_eq!(
            config.cores,
            cores_default(cores_available(), 256 * MIB, 10 * MIB)
        );
        assert!((1..=cores_available()).contains(&config.cores));
        assert_eq!(validate_dns_name(&config.hostname), Ok(()));
        assert_eq!(config.smtp_sessions_per_core_max, 1000);
        assert_eq!(config.http_connections_per_core_max, 10000);
        assert_eq!(config.command_timeout, Duration::from_secs(300));
        assert_eq!(config.data_timeout, Duration::from_secs(180));
        assert_eq!(config.http_idle_timeout, Duration::from_secs(30));
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));
        assert!(!config.log_client_ip);
        assert_eq!(config.log_level, "info");
        assert_eq!(config.config_file, None);
    }

    #[test]
    fn default_cores_fit_memory() {
        // (available, memory, message) -> cores
        let cases: &[(usize, usize, usize, usize)] = &[
            (2, 256 * MIB, 10 * MIB, 2),
            (64, 256 * MIB, 10 * MIB, 25),
            (300, 1 << 40, 64 * KIB, 255),
            (8, 4 * MIB, 64 * KIB, 4),
            (4, MIB, 10 * MIB, 1),
        ];
        for (available, memory, message, expected) in cases {
            assert_eq!(cores_default(*available, *memory, *message), *expected);
        }
    }

    #[test]
    fn flags() {
        let config = load(&[
            "--smtp",
            "0.0.0.0:25",
            "--http",
            "[::1]:0",
            "--domain",
            "*.example.test",
            "--domain",
            "Other.Test.",
            "--ttl",
            "10m",
            "--max-memory",
            "64MiB",
            "--max-message-size",
            "1MiB",
            "--max-recipients",
            "5",
            "--max-messages-per-inbox",
            "7",
            "--cores",
            "1",
            "--hostname",
            "mx.example.test",
            "--max-sessions-per-core",
            "11",
            "--max-http-connections-per-core",
            "12",
            "--command-timeout",
            "1m",
            "--data-timeout",
            "2m",
            "--http-idle-timeout",
            "5s",
            "--shutdown-grace",
            "0s",
            "--log-client-ip",
            "--log-level",
            "mayfly=debug,warn",
        ])
        .expect("flags load");
        assert_eq!(config.smtp_addr.to_string(), "0.0.0.0:25");
        assert_eq!(config.http_addr.to_string(), "[::1]:0");
        assert!(config.domains.accepts("example.test"));
        assert!(config.domains.accepts("a.b.example.test"));
        assert!(config.domains.accepts("other.test"));
        assert!(!config.domains.accepts("sub.other.test"));
        assert!(!config.domains.accepts("example.org"));
        assert_eq!(config.domains.first(), Some("example.test"));
        assert_eq!(config.ttl, Duration::from_secs(600));
        assert_eq!(config.memory_bytes_max, 64 * MIB);
        assert_eq!(config.message_bytes_max, MIB);
        assert_eq!(config.recipients_max, 5);
        assert_eq!(config.inbox_messages_max, 7);
        assert_eq!(config.cores, 1);
        assert_eq!(config.hostname, "mx.example.test");
        assert_eq!(config.smtp_sessions_per_core_max, 11);
        assert_eq!(config.http_connections_per_core_max, 12);
        assert_eq!(config.command_timeout, Duration::from_secs(60));
        assert_eq!(config.data_timeout, Duration::from_secs(120));
        assert_eq!(config.http_idle_timeout, Duration::from_secs(5));
        assert_eq!(config.shutdown_grace, Duration::ZERO);
        assert!(config.log_client_ip);
        assert_eq!(config.log_level, "mayfly=debug,warn");
    }

    #[test]
    fn file_then_flags() {
        let toml = r#"
smtp = "0.0.0.0:2525"
domains = ["file.test", "*.wild.test"]
ttl = "2h"
max_memory = 67108864
max_message_size = "2MiB"
max_recipients = 50
hostname = "file.example.test"
log_client_ip = true
log_level = "debug"
"#;
        let (file, result) = load_file(toml, &["--ttl", "5m", "--max-recipients", "9"]);
        let config = result.expect("file and flags load");
        assert_eq!(config.config_file.as_deref(), Some(Path::new(file.path())));
        assert_eq!(config.smtp_addr.to_string(), "0.0.0.0:2525");
        assert!(config.domains.accepts("file.test"));
        assert!(config.domains.accepts("x.wild.test"));
        assert!(!config.domains.accepts("other.test"));
        assert_eq!(config.ttl, Duration::from_secs(300), "flag beats file");
        assert_eq!(config.recipients_max, 9, "flag beats file");
        assert_eq!(config.memory_bytes_max, 64 * MIB, "integer bytes in TOML");
        assert_eq!(config.message_bytes_max, 2 * MIB);
        assert_eq!(config.hostname, "file.example.test");
        assert!(config.log_client_ip);
        assert_eq!(config.log_level, "debug");
        assert_eq!(
            config.http_addr.to_string(),
            "127.0.0.1:8025",
            "default kept"
        );

        // `--domain` replaces the file's list rather than adding to it.
        let (_file, result) = load_file(toml, &["--domain", "flag.test"]);
        let config = result.expect("file and flags load");
        assert!(config.domains.accepts("flag.test"));
        assert!(!config.domains.accepts("file.test"));
    }

    #[test]
    fn empty_file_gives_defaults() {
        let (_file, result) = load_file("# nothing set\n", &[]);
        let config = result.expect("empty file loads");
        assert_eq!(config.ttl, Duration::from_secs(3_600));
        assert!(config.config_file.is_some());
    }

    #[test]
    fn unknown_key() {
        let (file, result) = load_file("ttl = \"1h\"\n\ntll = \"2h\"\n", &[]);
        assert_eq!(
            error_text(result),
            format!(
                "config file {}: unknown key 'tll' (line 3); did you mean 'ttl'?",
                file.path()
            )
        );
        let (file, result) = load_file("max-memory = \"1GiB\"\n", &[]);
        assert_eq!(
            error_text(result),
            format!(
                "config file {}: unknown key 'max-memory' (line 1); did you mean 'max_memory'?",
                file.path()
            )
        );
        let (file, result) = load_file("[smtp]\nport = 25\n", &[]);
        assert!(error_text(result).starts_with(&format!("config file {}: ", file.path())));
        let (file, result) = load_file("completely_different = 1\n", &[]);
        assert_eq!(
            error_text(result),
            format!(
                "config file {}: unknown key 'completely_different' (line 1)",
                file.path()
            )
        );
    }

    #[test]
    fn error_can_travel() {
        // main.rs may wrap it in anyhow, which needs these.
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
    }

    #[test]
    fn keys_match_file_config() {
        // serde lists the struct's fields in its unknown-field message.
        let err = toml::from_str::<FileConfig>("bogus = 1").expect_err("unknown key");
        let message = err.message();
        let (_, expected) = message.split_once("expected one of").expect(message);
        let fields: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        assert_eq!(fields, KEYS);
    }

    #[test]
    fn bad_flag_values() {
        let available = cores_available();
        let too_many_cores = (available + 1).to_string();
        let cases: &[(&[&str], &str)] = &[
            (
                &["--ttl", "abc"],
                "invalid value 'abc' for --ttl: expected a duration such as 500ms, 30s, 10m, 1h or 1h30m",
            ),
            (
                &["--ttl", "0s"],
                "invalid value '0s' for --ttl: must be from 1ms to 30d",
            ),
            (
                &["--ttl", "31d"],
                "invalid value '31d' for --ttl: must be from 1ms to 30d",
            ),
            (
                &["--command-timeout", "0s"],
                "invalid value '0s' for --command-timeout: must be from 1ms to 1d",
            ),
            (
                &["--data-timeout", "2d"],
                "invalid value '2d' for --data-timeout: must be",
            ),
            (
                &["--http-idle-timeout", "5"],
                "for --http-idle-timeout: missing unit after 5",
            ),
            (
                &["--shutdown-grace", "2h"],
                "for --shutdown-grace: must be from 0s to 1h",
            ),
            (
                &["--max-memory", "10MB"],
                "invalid value '10MB' for --max-memory: ambiguous unit",
            ),
            (
                &["--max-memory", "512KiB"],
                "for --max-memory: must be at least 1MiB",
            ),
            (
                &["--max-message-size", "1KiB"],
                "for --max-message-size: must be at least 64KiB",
            ),
            (
                &["--max-recipients", "0"],
                "invalid value '0' for --max-recipients: expected a whole number from 1 to 100000",
            ),
            (
                &["--max-recipients", "-1"],
                "invalid value '-1' for --max-recipients: expected",
            ),
            (
                &["--ttl=-1s"],
                "invalid value '-1s' for --ttl: expected a duration",
            ),
            (
                &["--max-messages-per-inbox", "1e3"],
                "for --max-messages-per-inbox: expected",
            ),
            (
                &["--max-sessions-per-core", "0"],
                "for --max-sessions-per-core: expected",
            ),
            (
                &["--max-http-connections-per-core", "9999999"],
                "for --max-http-connections-per-core: expected a whole number from 1 to 1000000",
            ),
            (
                &["--cores", "0"],
                "invalid value '0' for --cores: expected a whole number from 1",
            ),
            (&["--cores", &too_many_cores], "available cores)"),
            (
                &["--smtp", "localhost:25"],
                "for --smtp: expected an IP address and port",
            ),
            (
                &["--http", "127.0.0.1"],
                "invalid value '127.0.0.1' for --http: expected ADDR:PORT",
            ),
            (
                &["--http", "127.0.0.1:65536"],
                "for --http: expected ADDR:PORT",
            ),
            (
                &["--hostname", "mx example"],
                "for --hostname: spaces are not allowed",
            ),
            (
                &["--hostname", "mx\r\n250 x"],
                "invalid value 'mx\\r\\n250 x' for --hostname",
            ),
            (
                &["--hostname", "*.example.test"],
                "for --hostname: '*' is only allowed",
            ),
            (
                &["--log-level", ""],
                "invalid value '' for --log-level: empty",
            ),
            (&["--log-level", "info=bogus"], "for --log-level: "),
            (
                &["--domain", "user@example.test"],
                "invalid value 'user@example.test' for --domain: '@' is not allowed",
            ),
            (
                &["--domain", "ok.test", "--domain", ""],
                "invalid value '' for --domain: empty",
            ),
        ];
        for (args, expected) in cases {
            let text = error_text(load(args));
            assert!(text.contains(expected), "{args:?}: {text}");
        }
        // The cores error names how many there are.
        let text = error_text(load(&["--cores", &too_many_cores]));
        assert!(
            text.contains(&format!("this machine has {available} available cores")),
            "{text}"
        );
    }

    #[test]
    fn memory_beyond_the_machine() {
        let physical = physical_memory_bytes().expect("/proc/meminfo is readable on Linux");
        let too_much = format_size(physical + MIB);
        let text = error_text(load(&["--max-memory", &too_much]));
        assert!(text.contains("more than this machine's memory"), "{text}");
    }

    #[test]
    fn bad_file_values() {
        let cases: &[(&str, &str)] = &[
            (
                "\nttl = \"abc\"\n",
                "invalid value 'abc' for ttl (line 2): expected a duration such as 500ms, 30s",
            ),
            (
                "ttl = 30\n",
                "invalid value '30' for ttl (line 1): missing unit after 30",
            ),
            (
                "max_recipients = -1\n",
                "invalid value '-1' for max_recipients (line 1): expected",
            ),
            (
                "max_memory = \"1 GiB\"\n",
                "for max_memory (line 1): unexpected character ' '",
            ),
            ("cores = 0\n", "invalid value '0' for cores (line 1)"),
            (
                "hostname = \"a@b\"\n",
                "for hostname (line 1): '@' is not allowed",
            ),
            (
                "domains = [\n  \"good.test\",\n  \"bad domain.test\",\n]\n",
                "invalid value 'bad domain.test' for domains (line 3): spaces are not allowed",
            ),
            ("max_recipients = 1.5\n", "(line 1)"),
            ("log_client_ip = \"yes\"\n", "(line 1)"),
            ("domains = \"one.test\"\n", "(line 1)"),
            ("\n\nttl = \n", "(line 3)"),
            ("ttl = \"1h\"\nttl = \"2h\"\n", "(line 2)"),
        ];
        for (toml, expected) in cases {
            let (file, result) = load_file(toml, &[]);
            let text = error_text(result);
            let prefix = format!("config file {}: ", file.path());
            assert!(text.starts_with(&prefix), "{toml:?}: {text}");
            assert!(text.contains(expected), "{toml:?}: {text}");
        }
        // A flag overrides a bad file value before it is parsed.
        let (_file, result) = load_file("ttl = \"abc\"\n", &["--ttl", "1m"]);
        assert_eq!(result.expect("flag wins").ttl, Duration::from_secs(60));
    }

    #[test]
    fn unreadable_files() {
        let missing = std::env::temp_dir().join("mayfly-config-test-does-not-exist.toml");
        let text = error_text(load(&["--config", missing.to_str().expect("UTF-8 path")]));
        assert_eq!(
            text,
            format!(
                "cannot read config file {}: No such file or directory",
                missing.display()
            )
        );
        let huge = TempFile::new(vec![b'#'; CONFIG_FILE_BYTES_MAX as usize + 1]);
        let text = error_text(load(&["--config", huge.path()]));
        assert!(text.contains("larger than 1MiB"), "{text}");
        let latin1 = TempFile::new(b"hostname = \"caf\xe9\"\n");
        let text = error_text(load(&["--config", latin1.path()]));
        assert!(text.contains("not UTF-8"), "{text}");
    }

    #[test]
    fn domain_names() {
        let valid = [
            "example.test",
            "*.example.test",
            "EXAMPLE.Test",
            "example.test.",
            "*.example.test.",
            "localhost",
            "a-b.c-d.test",
            "xn--bcher-kva.example",
            "192.0.2.1",
            &format!("{}.test", "a".repeat(63)),
            &format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(61)),
        ];
        for name in valid {
            assert_eq!(validate_domain(name), Ok(()), "{name}");
        }
        let invalid = [
            ("", "empty"),
            ("*", "'*' is only allowed"),
            ("*.", "empty"),
            ("*.*.example.test", "'*' is only allowed"),
            ("a.*.test", "'*' is only allowed"),
            ("user@example.test", "'@' is not allowed"),
            ("exa mple.test", "spaces"),
            (" example.test", "spaces"),
            ("example.test\n", "not allowed"),
            ("example..test", "empty label"),
            (".example.test", "empty label"),
            ("example.test..", "empty label"),
            ("-a.test", "hyphen"),
            ("a-.test", "hyphen"),
            ("exa_mple.test", "'_' is not allowed"),
            ("bücher.example", "xn--"),
            (&format!("{}.test", "a".repeat(64)), "label longer than 63"),
            (
                &format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(62)),
                "longer than 253",
            ),
        ];
        for (name, expected) in invalid {
            let reason = validate_domain(name).expect_err(name);
            assert!(reason.contains(expected), "{name:?}: {reason}");
        }
    }

    #[test]
    fn cross_field_checks() {
        let text = error_text(load(&[
            "--cores",
            "1",
            "--max-memory",
            "1MiB",
            "--max-message-size",
            "2MiB",
        ]));
        assert_eq!(
            text,
            "--max-message-size 2MiB is more than one core's share of --max-memory \
             (1MiB / 1 core = 1MiB), and each core's store must be able to hold the largest \
             message; raise --max-memory, or lower --max-message-size or --cores"
        );
        if cores_available() >= 2 {
            let text = error_text(load(&["--cores", "2", "--max-memory", "1MiB"]));
            assert!(
                text.starts_with(
                    "--max-memory 1MiB is less than 1MiB per core: 2 cores need at least 2MiB"
                ),
                "{text}"
            );
            let text = error_text(load(&[
                "--cores",
                "2",
                "--max-memory",
                "3MiB",
                "--max-message-size",
                "2MiB",
            ]));
            assert!(text.contains("(3MiB / 2 cores = 1536KiB)"), "{text}");
        } else {
            let text = error_text(load(&["--cores", "2"]));
            assert!(
                text.contains("this machine has 1 available cores"),
                "{text}"
            );
        }
        // Exactly one share is fine.
        let config = load(&[
            "--cores",
            "1",
            "--max-memory",
            "2MiB",
            "--max-message-size",
            "2MiB",
        ]);
        assert_eq!(config.expect("fits").message_bytes_max, 2 * MIB);

        let same_port = [
            ["127.0.0.1:2525", "127.0.0.1:2525"],
            ["0.0.0.0:2525", "127.0.0.1:2525"],
            ["127.0.0.1:8025", "[::]:8025"],
        ];
        for [smtp, http] in same_port {
            let text = error_text(load(&["--smtp", smtp, "--http", http]));
            assert!(
                text.contains("would bind the same port"),
                "{smtp} {http}: {text}"
            );
        }
        let distinct = [
            ["127.0.0.1:0", "127.0.0.1:0"],
            ["127.0.0.1:2525", "127.0.0.2:2525"],
            ["127.0.0.1:25", "127.0.0.1:80"],
        ];
        for [smtp, http] in distinct {
            assert!(
                load(&["--smtp", smtp, "--http", http]).is_ok(),
                "{smtp} {http}"
            );
        }
    }

    #[test]
    fn tls_settings() {
        let config = load(&[]).expect("defaults");
        assert_eq!(config.smtps_addr, None);
        assert_eq!(config.https_addr, None);
        assert_eq!(config.tls_cert, None);
        assert_eq!(config.tls_key, None);
        assert!(!config.tls_self_signed);
        assert!(!config.tls_required);
        assert_eq!(config.tls_handshake_timeout, Duration::from_secs(10));

        let config = load(&[
            "--smtps",
            "127.0.0.1:0",
            "--https",
            "[::1]:8443",
            "--tls-cert",
            "/etc/mayfly/cert.pem",
            "--tls-key",
            "key.pem",
            "--require-tls",
            "--tls-handshake-timeout",
            "2s",
        ])
        .expect("TLS flags load");
        assert_eq!(
            config.smtps_addr.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:0")
        );
        assert_eq!(
            config.https_addr.map(|a| a.to_string()).as_deref(),
            Some("[::1]:8443")
        );
        assert_eq!(
            config.tls_cert.as_deref(),
            Some(Path::new("/etc/mayfly/cert.pem"))
        );
        assert_eq!(config.tls_key.as_deref(), Some(Path::new("key.pem")));
        assert!(config.tls_required);
        assert_eq!(config.tls_handshake_timeout, Duration::from_secs(2));

        let toml = "smtps = \"127.0.0.1:4650\"\ntls_self_signed = true\nrequire_tls = true\n\
                    tls_handshake_timeout = \"500ms\"\n";
        let (_file, result) = load_file(toml, &[]);
        let config = result.expect("TLS keys load");
        assert_eq!(config.smtps_addr.map(|a| a.port()), Some(4650));
        assert!(config.tls_self_signed);
        assert!(config.tls_required);
        assert_eq!(config.tls_handshake_timeout, Duration::from_millis(500));
        // Flags switch the booleans on over a file that has them off.
        let (_file, result) = load_file(
            "tls_self_signed = false\nrequire_tls = false\n",
            &["--tls-self-signed", "--require-tls"],
        );
        let config = result.expect("flags over file");
        assert!(config.tls_self_signed && config.tls_required);
    }

    #[test]
    fn tls_consistency() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--tls-cert", "c.pem"],
                "--tls-cert c.pem is given without --tls-key; give both (the certificate chain and its private key)",
            ),
            (
                &["--tls-key", "k.pem"],
                "--tls-key k.pem is given without --tls-cert; give both (the certificate chain and its private key)",
            ),
            (
                &[
                    "--tls-cert",
                    "c.pem",
                    "--tls-key",
                    "k.pem",
                    "--tls-self-signed",
                ],
                "--tls-self-signed and --tls-cert/--tls-key are both given; choose one",
            ),
            (
                &["--smtps", "127.0.0.1:4650"],
                "--smtps 127.0.0.1:4650 needs a certificate: give --tls-cert and --tls-key, or --tls-self-signed",
            ),
            (
                &["--https", "127.0.0.1:8443"],
                "--https 127.0.0.1:8443 needs a certificate: give --tls-cert and --tls-key, or --tls-self-signed",
            ),
            (
                &["--require-tls"],
                "--require-tls needs a certificate: give --tls-cert and --tls-key, or --tls-self-signed",
            ),
            (
                &["--tls-self-signed", "--smtps", "127.0.0.1:2525"],
                "--smtp 127.0.0.1:2525 and --smtps 127.0.0.1:2525 would bind the same port; give them different ports",
            ),
            (
                &["--tls-self-signed", "--https", "0.0.0.0:8025"],
                "--http 127.0.0.1:8025 and --https 0.0.0.0:8025 would bind the same port; give them different ports",
            ),
            (
                &[
                    "--tls-self-signed",
                    "--smtps",
                    "127.0.0.1:443",
                    "--https",
                    "127.0.0.1:443",
                ],
                "--smtps 127.0.0.1:443 and --https 127.0.0.1:443 would bind the same port; give them different ports",
            ),
            (
                &["--tls-handshake-timeout", "0s"],
                "invalid value '0s' for --tls-handshake-timeout: must be from 1ms to 1d",
            ),
            (
                &["--tls-self-signed", "--smtps", "localhost:465"],
                "invalid value 'localhost:465' for --smtps: expected an IP address and port such as 127.0.0.1:2525 or [::1]:2525 (host names are not resolved)",
            ),
            (
                &["--tls-cert", "", "--tls-key", "k.pem"],
                "invalid value '' for --tls-cert: empty: expected a file path",
            ),
        ];
        for (args, expected) in cases {
            assert_eq!(error_text(load(args)), *expected, "{args:?}");
        }
        let (file, result) = load_file("https = 8443\n", &["--tls-self-signed"]);
        assert_eq!(
            error_text(result),
            format!(
                "config file {}: invalid value '8443' for https (line 1): expected ADDR:PORT such as 127.0.0.1:2525, 0.0.0.0:25 or [::1]:2525",
                file.path()
            )
        );
        let fine: &[&[&str]] = &[
            &["--tls-self-signed"],
            &["--tls-cert", "c.pem", "--tls-key", "k.pem", "--require-tls"],
            &[
                "--tls-self-signed",
                "--smtps",
                "127.0.0.1:0",
                "--https",
                "127.0.0.1:0",
            ],
        ];
        for args in fine {
            assert!(load(args).is_ok(), "{args:?}");
        }
    }

    #[test]
    fn log_client_ip_layers() {
        assert!(!load(&[]).expect("defaults").log_client_ip);
        assert!(load(&["--log-client-ip"]).expect("flag").log_client_ip);
        let (_file, result) = load_file("log_client_ip = true\n", &[]);
        assert!(result.expect("file").log_client_ip);
        let (_file, result) = load_file("log_client_ip = false\n", &["--log-client-ip"]);
        assert!(result.expect("file and flag").log_client_ip);
    }

    #[test]
    fn command_line_errors_help_and_version() {
        let err = load(&["--help"]).expect_err("help is an Err");
        assert!(matches!(&err, Error::Cli(e) if e.kind() == clap::error::ErrorKind::DisplayHelp));
        let help = err.to_string();
        for expected in [
            "--max-memory <SIZE>",
            "[default: 256MiB]",
            "[default: 1h]",
            "--config <FILE>",
        ] {
            assert!(help.contains(expected), "{expected}: {help}");
        }
        let err = load(&["--version"]).expect_err("version is an Err");
        assert!(err.to_string().contains(env!("CARGO_PKG_VERSION")));
        let cases: &[(&[&str], &str)] = &[
            (&["--bogus"], "unexpected argument '--bogus' found"),
            (
                &["--ttl"],
                "a value is required for '--ttl <DURATION>' but none was supplied",
            ),
            (
                &["--ttl", "1h", "--ttl", "2h"],
                "the argument '--ttl <DURATION>' cannot be used multiple times",
            ),
        ];
        for (args, expected) in cases {
            assert_eq!(error_text(load(args)), *expected, "{args:?}");
        }
    }

    #[test]
    fn example_file_loads_and_sets_every_key() {
        let file = TempFile::new(EXAMPLE_TOML);
        let config = load(&["--config", file.path()]).expect("docs/mayfly.example.toml loads");
        assert!(!config.domains.is_catch_all());
        for key in KEYS {
            let present = EXAMPLE_TOML.lines().any(|line| {
                let line = line.strip_prefix("# ").unwrap_or(line);
                line.starts_with(&format!("{key} ="))
            });
            assert!(present, "docs/mayfly.example.toml does not show '{key}'");
        }
    }

    #[test]
    fn documentation_covers_every_flag_and_key() {
        for arg in Cli::command().get_arguments() {
            if let Some(long) = arg.get_long() {
                let flag = format!("`--{long}");
                assert!(
                    CONFIGURATION_MD.contains(&flag),
                    "configuration.md lacks {flag}"
                );
            }
        }
        for key in KEYS {
            let key = format!("`{key}`");
            assert!(
                CONFIGURATION_MD.contains(&key),
                "configuration.md lacks {key}"
            );
        }
        let defaults = [
            SMTP_DEFAULT,
            HTTP_DEFAULT,
            TTL_DEFAULT,
            MAX_MEMORY_DEFAULT,
            MAX_MESSAGE_SIZE_DEFAULT,
            COMMAND_TIMEOUT_DEFAULT,
            DATA_TIMEOUT_DEFAULT,
            HTTP_IDLE_TIMEOUT_DEFAULT,
            SHUTDOWN_GRACE_DEFAULT,
            HOSTNAME_FALLBACK,
            TLS_HANDSHAKE_TIMEOUT_DEFAULT,
        ];
        for default in defaults {
            assert!(
                CONFIGURATION_MD.contains(default),
                "configuration.md lacks {default}"
            );
        }
        assert!(
            CONFIGURATION_MD.contains(&format!("```toml\n{EXAMPLE_TOML}```\n")),
            "configuration.md must embed docs/mayfly.example.toml verbatim"
        );
    }
}
