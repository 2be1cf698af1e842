//! mail-reader: a read-side load generator for POP3 and IMAP servers.
//!
//! C clients each log in to their own inbox and read every message in it, again and again
//! (never deleting, so the reads are repeatable), for a duration or a message count.
//! The report has messages and bytes per second, a per-message latency histogram, every
//! error by kind, and with `--verify` the messages whose size differs from the size the
//! server announced (POP3 `LIST`, IMAP `RFC822.SIZE`); `--verify-checksums` also checks
//! the checksum smtp-blaster writes into every message.
//!
//! Modules in reading order: [`pop3`] and [`imap`] (the client sessions: bytes in,
//! commands and finished reads out, no IO), [`engine`] (one thread, many non-blocking
//! connections, as in smtp-blaster's engine), [`report`] (counters, histogram, text and
//! JSON), [`cli`] (options, their checks, the run).
//! `src/bin/mail-reader.rs` only parses arguments and calls [`run`].
//!
//! # The session contract
//!
//! Both protocols are driven the same way: the engine reads into a buffer and calls
//! `advance(input, now, out, reads)`; the session consumes whole responses only (a
//! POP3 status line or multi-line response, an IMAP response with its literals), appends
//! the commands it wants sent to `out`, pushes one [`MessageRead`] per message whose last
//! byte arrived, and returns how many bytes it consumed. `now` is the time the engine read
//! the bytes; commands written during the call are stamped with it, so a message's latency
//! runs from the write of the command that asked for it to the arrival of its last byte.

pub mod cli;
pub mod engine;
pub mod imap;
pub mod pop3;
pub mod report;

use std::time::Instant;

pub use cli::run;

/// Longest response line (without literals) a session accepts before it gives up on
/// the server; real status lines and FETCH heads are under 1 KiB.
pub const LINE_BYTES_MAX: usize = 64 * 1024;

/// Largest single response (one message with its framing) a connection will buffer.
/// Mayfly's default --max-message-size is 10 MiB; this leaves room for bigger servers.
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Which protocol the clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Pop3,
    Imap,
}

/// How an IMAP client asks for the messages of one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImapFetch {
    /// `UID FETCH <uid> (BODY.PEEK[])`, one command per message (pipelined by `--pipeline`).
    One,
    /// `UID FETCH 1:* (BODY.PEEK[])`, one command per pass over the whole mailbox.
    All,
}

/// What every session of a run is told (one copy per connection, with its own user).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Login name: the inbox address.
    pub user: String,
    pub password: String,
    /// Requests written together before waiting for all their answers (POP3 `RETR`, IMAP
    /// `UID FETCH <uid>`); 1 = one request at a time.
    pub pipeline: usize,
    /// Log out and reconnect once this many messages were read on the session, at the
    /// next batch boundary; 0 = never.
    pub reconnect_every_msgs: u64,
    /// Keep each message's bytes to check the smtp-blaster checksum (`--verify-checksums`).
    pub check_checksums: bool,
    pub imap_fetch: ImapFetch,
    /// IMAP: `EXAMINE` (read-only) instead of `SELECT`.
    pub imap_examine: bool,
}

/// One message whose last byte arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRead {
    /// Message bytes as the server sent them, framing removed (POP3: dot-unstuffed; IMAP:
    /// the literal's length).
    pub bytes: u64,
    /// The size the server announced for it before (POP3 `LIST`, IMAP `RFC822.SIZE`);
    /// `None` when it announced none (an IMAP message that arrived after the listing).
    pub announced_bytes: Option<u64>,
    /// When the command that asked for it was written.
    pub sent_at: Instant,
    /// With `SessionConfig::check_checksums`: whether the smtp-blaster checksum matched, or
    /// `None` when the message carries no `X-Blaster-Checksum` (or checking is off).
    pub checksum_ok: Option<bool>,
}

/// What a session needs after consuming what it could.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Flush `out` and read more.
    NeedInput,
    /// The session logged out (QUIT/LOGOUT answered): close and reconnect.
    LoggedOut,
}

/// Why a session cannot go on. The engine counts it by [`SessionError::kind`] and closes
/// the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// The inbox holds no message: nothing to read, so the client stops for the run.
    EmptyMailbox,
    /// The server refused a command (`-ERR`, `NO`, `BAD`, `* BYE`).
    Refused {
        /// The command, e.g. "PASS" or "UID FETCH".
        command: &'static str,
        /// The server's line, cut to [`REPLY_TEXT_MAX`] bytes.
        reply: String,
    },
    /// The server sent something that does not parse, or breaks the protocol.
    Protocol(&'static str),
}

/// How much of a refusal's text is kept.
pub const REPLY_TEXT_MAX: usize = 200;

impl SessionError {
    /// The key the report counts this error under.
    pub fn kind(&self) -> String {
        match self {
            SessionError::EmptyMailbox => "empty mailbox".to_owned(),
            SessionError::Refused { command, .. } => format!("{command} refused"),
            SessionError::Protocol(what) => format!("protocol: {what}"),
        }
    }

    fn refused(command: &'static str, line: &[u8]) -> Self {
        let line = &line[..line.len().min(REPLY_TEXT_MAX)];
        SessionError::Refused {
            command,
            reply: String::from_utf8_lossy(line.trim_ascii_end()).into_owned(),
        }
    }
}

/// A client session of either protocol.
#[derive(Debug)]
pub enum Session {
    Pop3(pop3::Session),
    Imap(imap::Session),
}

impl Session {
    /// A session that waits for the server's greeting.
    pub fn new(protocol: Protocol, config: SessionConfig) -> Self {
        match protocol {
            Protocol::Pop3 => Session::Pop3(pop3::Session::new(config)),
            Protocol::Imap => Session::Imap(imap::Session::new(config)),
        }
    }

    /// See the module docs: consumes whole responses of `input`, appends commands to `out`
    /// and finished messages to `reads`.
    ///
    /// # Errors
    /// When the server refused something, broke the protocol, or the inbox is empty.
    pub fn advance(
        &mut self,
        input: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
        reads: &mut Vec<MessageRead>,
    ) -> Result<(usize, Progress), SessionError> {
        match self {
            Session::Pop3(session) => session.advance(input, now, out, reads),
            Session::Imap(session) => session.advance(input, now, out, reads),
        }
    }
}

/// Whether the smtp-blaster checksum of `raw` matches; `None` when it carries none.
fn checksum_of(raw: &[u8]) -> Option<bool> {
    let check = crate::message::check_message(raw);
    check.seq.map(|_| check.checksum_ok)
}
