//! The SMTP session state machine: (state, input bytes) -> replies and finished messages.
//!
//! No IO, no executor, never panics on input. The socket loop (`net::smtp_conn`) reads
//! into a buffer, calls `Session::advance`, writes what the session appended to `out`, and
//! acts on the returned `Event`.
//!
//! # The `advance` contract
//!
//! `advance(input, out)` returns `(consumed, event)`; the caller drops the first `consumed`
//! bytes of `input` and keeps the rest for the next call (with more bytes appended).
//!
//! - Command lines are executed one by one, in order, as long as complete lines remain
//!   (that is what makes PIPELINING work). A *partial* command line at the end of `input`
//!   (no LF yet) is left unconsumed, and it is always shorter than
//!   `COMMAND_LINE_BYTES_MAX` (512): once 512 bytes without an LF are in hand the line is
//!   over-long, `advance` consumes and discards them (and everything up to the line's LF
//!   in later calls) and answers `500 5.5.2` when the LF comes. So the unconsumed
//!   remainder after *any* call is at most `UNCONSUMED_BYTES_MAX` (511) bytes, and a
//!   caller buffer of 511 bytes + one read is enough for commands.
//! - DATA bodies and BDAT chunks are always consumed in full, whatever the chunking: the
//!   partial-terminator state (`\r\n.\r` split across reads) lives in the session, so
//!   the caller never holds body bytes.
//! - `Event::NeedInput`: everything usable was consumed; flush `out`, read more. Inside a
//!   big body the caller may read straight into the body instead (`body_read_buffer`,
//!   then `body_received`, which hands back whatever followed the end of the message;
//!   the caller passes that to `advance` as its next input).
//!   `Event::Deliver`: `input` was consumed up to the end of the message (the final dot's
//!   LF or the BDAT LAST chunk's last byte); read `transaction()`, call `delivered`, then
//!   call `advance` again on the rest. `Event::Quit` / `Event::Close`: flush and close.
//!   `Event::StartTls`: flush, drop the unconsumed rest (CVE-2011-0411), handshake, then
//!   `tls_started`.
//!
//! Per-command work allocates nothing in steady state: the reverse path, recipients,
//! HELO name and body live in buffers owned by the session that are cleared, not freed,
//! between transactions.

use std::io::Write;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use memchr::memchr;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::config::DomainPolicy;
use crate::smtp::data::{BodyBuffer, BodyOut, DataScanner, Refusal};
use crate::smtp::parser::{self, COMMAND_LINE_BYTES_MAX, Command, Error, ForwardPath, MailParams};
use crate::smtp::reply;

/// Errors a client may make before it is disconnected (Postfix's `smtpd_hard_error_limit`).
/// A stored message resets the count.
pub const ERRORS_MAX: usize = 20;
/// The most bytes `advance` ever leaves unconsumed (a partial command line).
pub const UNCONSUMED_BYTES_MAX: usize = COMMAND_LINE_BYTES_MAX - 1;
/// After a larger message the body buffer is shrunk back to this, so an idle session does
/// not keep `message_bytes_max` of memory.
pub const BODY_CAPACITY_KEPT_BYTES: usize = 256 * 1024;
/// Most bytes `body_read_buffer` offers for one read. Big reads matter for big messages:
/// each read is a syscall, and 16 KiB reads (the socket loop's read buffer) made a 100 KiB
/// message cost seven.
pub const BODY_READ_BYTES_MAX: usize = 128 * 1024;
/// Least room worth reading a body into directly; with less, the caller reads into its own
/// buffer and `advance` copies. Small messages take that path, so a session that only ever
/// sees small messages keeps a small body buffer.
pub const BODY_READ_BYTES_MIN: usize = 16 * 1024;
/// RFC 5322 2.1.1: a header line has at most 998 octets before its CRLF.
pub const RECEIVED_LINE_BYTES_MAX: usize = 998;
/// Longest TLS version or cipher name written into the Received header.
const TLS_TEXT_BYTES_MAX: usize = 64;
/// Longest queue id written into a reply or the Received header.
const QUEUE_ID_BYTES_MAX: usize = 64;
/// Longest hostname written into the Received header (a domain is at most 255 octets).
const HOSTNAME_BYTES_MAX: usize = 255;

/// What a session needs to know about the server; shared by all sessions of a core.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our name in the banner, the EHLO reply and the Received header.
    pub hostname: String,
    /// Largest body accepted (after dot-unstuffing); advertised as `SIZE`.
    /// Larger bodies get `552 5.3.4`.
    pub message_bytes_max: usize,
    /// Recipients per transaction; more RCPTs get `452 4.5.3`.
    pub recipients_max: usize,
    /// Recipient domains we accept mail for; others get `550 5.7.1` (we never relay).
    pub domains: DomainPolicy,
    /// Whether STARTTLS is offered: EHLO advertises it and STARTTLS returns `Event::StartTls`.
    pub starttls_available: bool,
    /// Whether MAIL is refused with `530 5.7.0` until TLS is active (RFC 3207 4).
    pub tls_required: bool,
}

/// What the caller must do after `Session::advance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// All complete commands and all body bytes were consumed; flush `out` and read more.
    NeedInput,
    /// A message is complete: store `transaction()`, call `delivered`, then `advance` on
    /// the rest of the input.
    Deliver,
    /// QUIT was answered with 221; flush and close.
    Quit,
    /// STARTTLS was answered with 220; flush, discard unconsumed input, upgrade, then
    /// call `tls_started`.
    StartTls,
    /// The session gave up on the client (421 already written); flush and close.
    Close,
}

/// The finished message, as the caller stores it. Valid right after `Event::Deliver`.
#[derive(Debug, Clone, Copy)]
pub struct Transaction<'a> {
    /// The reverse path without brackets; `""` for the null path `<>`.
    pub mail_from: &'a str,
    /// The body as received, after dot-unstuffing, without our Received header.
    pub body: &'a [u8],
    /// The accepted recipients, each followed by `\n` (addresses never contain LF).
    rcpts: &'a str,
    n_rcpts: usize,
}

impl<'a> Transaction<'a> {
    /// The accepted recipients in RCPT order, duplicates removed; `<postmaster>` appears
    /// as `postmaster@<hostname>`.
    pub fn rcpts(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        let rcpts: &'a str = self.rcpts;
        rcpts.split_terminator('\n')
    }

    /// How many recipients `rcpts()` yields.
    pub fn n_rcpts(&self) -> usize {
        self.n_rcpts
    }
}

/// How storing a delivered message went; decides the final reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery<'a> {
    /// Stored: `250 2.0.0 Ok: queued as <queue_id>`.
    Stored { queue_id: &'a str },
    /// The store or shard cannot take it now: `451 4.3.0`.
    TemporaryFailure,
    /// The store cannot hold a message this large: `552 5.3.4`.
    TooLarge,
}

/// One SMTP session's protocol state. Create one per connection.
#[derive(Debug)]
pub struct Session {
    config: Rc<SessionConfig>,
    /// Only `Some` when the operator allows client IPs in headers (`--log-client-ip`).
    client_ip: Option<IpAddr>,
    greeting: Greeting,
    /// The HELO/EHLO argument, for the Received header; empty before the greeting.
    helo: String,
    /// Whether TLS is active, and its version and cipher for the Received header.
    tls_active: bool,
    tls_version: String,
    tls_cipher: String,
    mode: Mode,
    /// Inside a command line that is already known to be over-long: bytes up to its LF
    /// are discarded.
    discarding_line: bool,
    /// While discarding: whether the last byte discarded was a CR, so a CRLF split across
    /// two reads still ends the line.
    discarded_cr_last: bool,
    /// Errors so far; at `ERRORS_MAX` the session closes.
    n_errors: usize,
    /// `Event::Deliver` was returned and `delivered` not yet called.
    awaiting_delivery: bool,
    /// The transaction: MAIL was accepted and the message not yet finished or reset.
    in_mail: bool,
    /// MAIL had SMTPUTF8: non-ASCII addresses are allowed.
    smtputf8: bool,
    /// A BDAT chunk was accepted in this transaction, so DATA is not allowed (RFC 3030).
    used_bdat: bool,
    mail_from: String,
    /// Accepted recipients, each followed by `\n`. Invariant: `n_rcpts` entries.
    rcpts: String,
    n_rcpts: usize,
    /// The message body, and room to read more of it into. Invariant: `body.len() <=
    /// message_bytes_max`, and its capacity too.
    body: BodyBuffer,
    data_scanner: DataScanner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Greeting {
    None,
    Helo,
    Ehlo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Reading command lines.
    Command,
    /// Inside a DATA body.
    Data,
    /// `body_received` found the end of a DATA body; the next `advance` finishes the
    /// message (delivers it or writes its refusal) before it reads any input.
    DataEnded,
    /// Inside a BDAT chunk.
    Bdat {
        chunk_bytes: u64,
        chunk_bytes_left: u64,
        last: bool,
        /// Why the chunk is read and thrown away, if it is; answered after its last byte.
        refusal: Option<BdatRefusal>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BdatRefusal {
    /// A bad-sequence error (no HELO, MAIL or RCPT).
    Sequence(&'static [u8]),
    /// The chunk would take the body past the limit: `552` and the transaction is reset.
    TooBig,
}

impl Session {
    /// A new session, before the greeting. `client_ip` is `Some` only when the operator
    /// allows it in the Received header.
    pub fn new(config: Rc<SessionConfig>, client_ip: Option<IpAddr>) -> Session {
        Session {
            config,
            client_ip,
            greeting: Greeting::None,
            helo: String::new(),
            tls_active: false,
            tls_version: String::new(),
            tls_cipher: String::new(),
            mode: Mode::Command,
            discarding_line: false,
            discarded_cr_last: false,
            n_errors: 0,
            awaiting_delivery: false,
            in_mail: false,
            smtputf8: false,
            used_bdat: false,
            mail_from: String::new(),
            rcpts: String::new(),
            n_rcpts: 0,
            body: BodyBuffer::new(),
            data_scanner: DataScanner::new(),
        }
    }

    /// Writes the `220` greeting.
    pub fn greeting(&self, out: &mut Vec<u8>) {
        reply::greeting(&self.config.hostname, out);
    }

    /// Consumes `input`, appends replies to `out`, and says what the caller must do next.
    /// See the module documentation for the exact contract; in short, the unconsumed rest
    /// is at most `UNCONSUMED_BYTES_MAX` bytes of one partial command line.
    ///
    /// If the previous call returned `Event::Deliver` and `delivered` was not called, the
    /// message is answered as a temporary failure first.
    pub fn advance(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Event) {
        if self.awaiting_delivery {
            self.delivered(Delivery::TemporaryFailure, out);
        }
        let mut consumed = 0;
        loop {
            let rest = &input[consumed..];
            // Each step either consumes bytes, changes the mode, or returns an event, so
            // the loop ends.
            let (n_bytes, event) = match self.mode {
                Mode::Command => self.advance_command(rest, out),
                Mode::Data => self.advance_data(rest, out),
                Mode::DataEnded => (0, self.finish_data(out)),
                Mode::Bdat { .. } => self.advance_bdat(rest, out),
            };
            consumed += n_bytes;
            if let Some(event) = event {
                debug_assert!(consumed <= input.len());
                debug_assert!(
                    event != Event::NeedInput || input.len() - consumed <= UNCONSUMED_BYTES_MAX
                );
                return (consumed, event);
            }
        }
    }

    /// The finished message; meaningful right after `Event::Deliver`.
    pub fn transaction(&self) -> Transaction<'_> {
        Transaction {
            mail_from: &self.mail_from,
            body: self.body.as_slice(),
            rcpts: &self.rcpts,
            n_rcpts: self.n_rcpts,
        }
    }

    /// Writes our Received header (RFC 5321 4.4) for the current transaction, e.g.
    ///
    /// ```text
    /// Received: from client.example ([192.0.2.1]) by mx.example.test (Mayfly) with ESMTP
    /// <TAB>id 0123; Fri, 27 Nov 2026 22:15:44 +0000
    /// ```
    ///
    /// The IP part appears only when the session got a `client_ip`, a
    /// `(version=... cipher=...)` comment only under TLS, and `for <rcpt>` only with exactly
    /// one recipient. The second line starts with a tab (folding). Every line stays within
    /// `RECEIVED_LINE_BYTES_MAX` octets.
    pub fn write_received_header(&self, queue_id: &str, now: SystemTime, out: &mut Vec<u8>) {
        // Line 1 is at most about 800 octets: helo <= 255 (parser), ip <= 60,
        // hostname <= 255, tls comment <= 2 * 64 + 24, fixed words.
        out.extend_from_slice(b"Received: from ");
        if self.helo.is_empty() {
            out.extend_from_slice(b"unknown");
        } else {
            push_comment_safe(out, &self.helo, parser::HELO_BYTES_MAX);
        }
        if let Some(ip) = self.client_ip {
            let _ = match ip.to_canonical() {
                IpAddr::V4(ipv4) => write!(out, " ([{ipv4}])"),
                IpAddr::V6(ipv6) => write!(out, " ([IPv6:{ipv6}])"),
            };
        }
        out.extend_from_slice(b" by ");
        push_comment_safe(out, &self.config.hostname, HOSTNAME_BYTES_MAX);
        out.extend_from_slice(b" (Mayfly) with ");
        out.extend_from_slice(self.protocol().as_bytes());
        if self.tls_active {
            out.extend_from_slice(b" (version=");
            out.extend_from_slice(self.tls_version.as_bytes());
            out.extend_from_slice(b" cipher=");
            out.extend_from_slice(self.tls_cipher.as_bytes());
            out.push(b')');
        }
        // Line 2 is at most about 400 octets: id <= 64, one rcpt <= 254 or
        // postmaster@hostname, the date 31.
        out.extend_from_slice(b"\r\n\tid ");
        push_comment_safe(out, queue_id, QUEUE_ID_BYTES_MAX);
        if self.n_rcpts == 1 {
            out.extend_from_slice(b" for <");
            out.extend_from_slice(self.rcpts.trim_end_matches('\n').as_bytes());
            out.push(b'>');
        }
        out.extend_from_slice(b"; ");
        write_date(now, out);
        out.extend_from_slice(b"\r\n");
    }

    /// Writes the final reply for the message of the last `Event::Deliver` and resets the
    /// transaction (the HELO/EHLO state stays).
    pub fn delivered(&mut self, delivery: Delivery<'_>, out: &mut Vec<u8>) {
        match delivery {
            Delivery::Stored { queue_id } => {
                let queue_id = truncate_str(queue_id, QUEUE_ID_BYTES_MAX);
                reply::queued(queue_id, out);
                // As in Postfix, a client that gets mail through is not a bad client.
                self.n_errors = 0;
            }
            Delivery::TemporaryFailure => out.extend_from_slice(reply::TEMPORARY_FAILURE),
            Delivery::TooLarge => out.extend_from_slice(reply::STORE_TOO_BIG),
        }
        self.reset_transaction();
    }

    /// MAIL was accepted and the transaction is not yet finished or reset.
    pub fn in_transaction(&self) -> bool {
        self.in_mail
    }

    /// Inside a DATA body or a BDAT chunk (the caller uses the data timeout then).
    pub fn expects_data(&self) -> bool {
        self.mode != Mode::Command
    }

    /// Whether TLS is active on this session.
    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    /// Gives back body-buffer memory above `bytes_kept_max` (call it after `delivered`).
    /// The session already does this itself at `BODY_CAPACITY_KEPT_BYTES` whenever a
    /// transaction ends; this lets the caller pick a smaller figure. It never drops body
    /// bytes: capacity stays at least the current length.
    pub fn shrink_body_buffer(&mut self, bytes_kept_max: usize) {
        self.body.shrink_to(bytes_kept_max);
    }

    /// Room to read the next bytes of a DATA body or BDAT chunk straight into, saving the
    /// copy out of the caller's read buffer. `Some` only inside a body (after `advance`
    /// returned `Event::NeedInput` having consumed everything) when there is room for at
    /// least `BODY_READ_BYTES_MIN` bytes: a DATA body that is already that big, or a BDAT
    /// chunk with that much left (the buffer grows for those); never for a BDAT chunk that
    /// is being refused. At most `BODY_READ_BYTES_MAX` bytes, never more than the BDAT
    /// chunk has left, and never past `message_bytes_max` from the start of the body.
    ///
    /// After reading into it, call `body_received` with the byte count; reading nothing
    /// into it and not calling `body_received` is harmless.
    pub fn body_read_buffer(&mut self) -> Option<&mut [u8]> {
        let (bytes_want, grow) = match self.mode {
            Mode::Data => (BODY_READ_BYTES_MAX, self.body.len() >= BODY_READ_BYTES_MIN),
            Mode::Bdat {
                chunk_bytes_left,
                refusal: None,
                ..
            } => (
                usize::try_from(chunk_bytes_left)
                    .unwrap_or(usize::MAX)
                    .min(BODY_READ_BYTES_MAX),
                true,
            ),
            _ => return None,
        };
        self.body.spare_mut(
            BODY_READ_BYTES_MIN,
            bytes_want,
            self.config.message_bytes_max,
            grow,
        )
    }

    /// The caller read `n_bytes` into the start of the buffer `body_read_buffer` returned.
    /// They are taken as body (unstuffed in place for DATA), exactly as `advance` would
    /// take them. Returns the bytes that followed the end of a DATA body in that read
    /// (empty unless the terminator was among them); the caller must pass them to
    /// `advance` next, before any newer input, and `advance` then finishes the message
    /// first (`Event::Deliver` or the refusal) and goes on with them.
    ///
    /// # Panics
    /// If no body is being read, or `n_bytes` is more than `body_read_buffer` offered
    /// (caller bugs).
    pub fn body_received(&mut self, n_bytes: usize) -> &[u8] {
        match self.mode {
            Mode::Data => {
                let (finished, rest) = self.body.scan_read(
                    &mut self.data_scanner,
                    n_bytes,
                    self.config.message_bytes_max,
                );
                if finished {
                    self.mode = Mode::DataEnded;
                }
                rest
            }
            Mode::Bdat {
                chunk_bytes,
                chunk_bytes_left,
                last,
                refusal: None,
            } => {
                let n_bytes_u64 = n_bytes as u64;
                assert!(n_bytes_u64 <= chunk_bytes_left, "read past the BDAT chunk");
                self.body.commit(n_bytes);
                // At 0 left, the next `advance` answers the chunk as if it had read it.
                self.mode = Mode::Bdat {
                    chunk_bytes,
                    chunk_bytes_left: chunk_bytes_left - n_bytes_u64,
                    last,
                    refusal: None,
                };
                &[]
            }
            _ => panic!("body_received outside a body"),
        }
    }

    /// The TLS handshake after `Event::StartTls` succeeded: forget everything the client
    /// said before (RFC 3207 4.2), including HELO/EHLO, and remember TLS for the Received
    /// header. `protocol_version` and `cipher` are written there, truncated to 64 octets.
    pub fn tls_started(&mut self, protocol_version: &str, cipher: &str) {
        self.tls_active = true;
        self.tls_version.clear();
        push_token(&mut self.tls_version, protocol_version);
        self.tls_cipher.clear();
        push_token(&mut self.tls_cipher, cipher);
        self.greeting = Greeting::None;
        self.helo.clear();
        self.mode = Mode::Command;
        self.discarding_line = false;
        self.discarded_cr_last = false;
        self.reset_transaction();
    }

    fn advance_command(&mut self, rest: &[u8], out: &mut Vec<u8>) -> (usize, Option<Event>) {
        // Look for the line end only as far as a legal line reaches, unless we already know
        // this line is over-long and are skipping to its end.
        let window_bytes = if self.discarding_line {
            rest.len()
        } else {
            rest.len().min(COMMAND_LINE_BYTES_MAX)
        };
        // Only CRLF ends a line. A bare LF is part of the line (which is then refused whole),
        // so "RSET\nMAIL FROM:..." cannot be read as two commands.
        let mut search_from = 0;
        while let Some(offset) = memchr(b'\n', &rest[search_from..window_bytes]) {
            let lf_idx = search_from + offset;
            let after_cr = match lf_idx {
                0 => self.discarded_cr_last,
                _ => rest[lf_idx - 1] == b'\r',
            };
            if !after_cr {
                search_from = lf_idx + 1;
                continue;
            }
            let line = &rest[..=lf_idx];
            self.discarded_cr_last = false;
            let event = if std::mem::take(&mut self.discarding_line) {
                self.reply_error(reply::LINE_TOO_LONG, out)
            } else {
                self.command_line(line, out)
            };
            return (lf_idx + 1, event);
        }
        if !self.discarding_line && rest.len() >= COMMAND_LINE_BYTES_MAX {
            // 512 bytes and no CRLF: the line is over-long whatever comes next. Discard it
            // rather than buffer it; the reply goes out when its CRLF arrives, which may
            // already be in `rest`.
            self.discarding_line = true;
            return self.advance_command(rest, out);
        }
        if self.discarding_line {
            // Empty input changes nothing: a CR seen last time is still the last byte.
            if let Some(&last) = rest.last() {
                self.discarded_cr_last = last == b'\r';
            }
            return (rest.len(), Some(Event::NeedInput));
        }
        // A partial line shorter than 512 bytes: the caller keeps it.
        (0, Some(Event::NeedInput))
    }

    /// Handles one complete command line, LF included.
    fn command_line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Option<Event> {
        // Only CRLF ends a line; a bare CR or LF inside it makes the whole line an error
        // (Postfix smtpd_forbid_bare_newline), so it cannot be read two ways.
        let Some(content) = line.strip_suffix(b"\r\n") else {
            return self.reply_error(reply::BARE_NEWLINE, out);
        };
        if memchr::memchr2(b'\r', b'\n', content).is_some() {
            return self.reply_error(reply::BARE_NEWLINE, out);
        }
        match parser::parse_command(content) {
            Ok(command) => self.execute(command, out),
            Err(error) => {
                let reply = match error {
                    Error::UnknownCommand => reply::UNKNOWN_COMMAND,
                    Error::Syntax(verb) => reply::syntax_error(verb),
                    Error::InvalidUtf8 => reply::INVALID_UTF8,
                    Error::BadSender => reply::BAD_SENDER,
                    Error::BadRecipient => reply::BAD_RECIPIENT,
                    Error::ParamNotSupported => reply::PARAM_NOT_SUPPORTED,
                };
                self.reply_error(reply, out)
            }
        }
    }

    fn execute(&mut self, command: Command<'_>, out: &mut Vec<u8>) -> Option<Event> {
        match command {
            Command::Helo { domain } => {
                self.greet(Greeting::Helo, domain);
                reply::helo(&self.config.hostname, out);
                None
            }
            Command::Ehlo { domain } => {
                self.greet(Greeting::Ehlo, domain);
                let starttls = self.config.starttls_available && !self.tls_active;
                reply::ehlo(
                    &self.config.hostname,
                    self.config.message_bytes_max,
                    starttls,
                    out,
                );
                None
            }
            Command::Mail {
                reverse_path,
                params,
            } => self.mail(reverse_path, params, out),
            Command::Rcpt { forward_path } => self.rcpt(forward_path, out),
            Command::Data => self.data(out),
            Command::Bdat { chunk_bytes, last } => {
                self.bdat(chunk_bytes, last);
                None
            }
            Command::Rset => {
                self.reset_transaction();
                out.extend_from_slice(reply::OK);
                None
            }
            Command::Noop => {
                out.extend_from_slice(reply::OK);
                None
            }
            Command::Quit => {
                out.extend_from_slice(reply::QUIT);
                Some(Event::Quit)
            }
            Command::Vrfy => {
                out.extend_from_slice(reply::VRFY);
                None
            }
            Command::Help => {
                out.extend_from_slice(reply::HELP);
                None
            }
            Command::StartTls => self.starttls(out),
        }
    }

    /// RFC 3207 4: with --require-tls, every mail command before STARTTLS gets 530.
    fn must_starttls(&self) -> bool {
        self.config.tls_required && !self.tls_active
    }

    fn greet(&mut self, greeting: Greeting, domain: &str) {
        self.reset_transaction();
        self.greeting = greeting;
        self.helo.clear();
        self.helo.push_str(domain);
    }

    fn mail(&mut self, reverse_path: &str, params: MailParams, out: &mut Vec<u8>) -> Option<Event> {
        if self.greeting == Greeting::None {
            return self.reply_error(reply::NEED_HELO, out);
        }
        if self.must_starttls() {
            return self.reply_error(reply::MUST_STARTTLS, out);
        }
        if self.in_mail {
            return self.reply_error(reply::NESTED_MAIL, out);
        }
        if !params.smtputf8 && !reverse_path.is_ascii() {
            return self.reply_error(reply::NEEDS_SMTPUTF8, out);
        }
        let message_bytes_max = u64::try_from(self.config.message_bytes_max).unwrap_or(u64::MAX);
        if params
            .size_bytes
            .is_some_and(|size_bytes| size_bytes > message_bytes_max)
        {
            // A limit, not a client error: not counted.
            out.extend_from_slice(reply::MESSAGE_TOO_BIG);
            return None;
        }
        self.in_mail = true;
        self.smtputf8 = params.smtputf8;
        self.mail_from.clear();
        self.mail_from.push_str(reverse_path);
        out.extend_from_slice(reply::MAIL_OK);
        None
    }

    fn rcpt(&mut self, forward_path: ForwardPath<'_>, out: &mut Vec<u8>) -> Option<Event> {
        if self.greeting == Greeting::None {
            return self.reply_error(reply::NEED_HELO, out);
        }
        if self.must_starttls() {
            return self.reply_error(reply::MUST_STARTTLS, out);
        }
        if !self.in_mail {
            return self.reply_error(reply::NEED_MAIL, out);
        }
        let start_idx = self.rcpts.len();
        match forward_path {
            // RFC 5321 4.5.1: always accepted, whatever our domain policy says.
            ForwardPath::Postmaster => {
                self.rcpts.push_str("postmaster@");
                self.rcpts.push_str(&self.config.hostname);
            }
            ForwardPath::Mailbox(mailbox) => {
                if !self.smtputf8 && !mailbox.is_ascii() {
                    return self.reply_error(reply::NEEDS_SMTPUTF8, out);
                }
                if !self.config.domains.accepts(parser::domain_of(mailbox)) {
                    return self.reply_error(reply::RELAY_DENIED, out);
                }
                self.rcpts.push_str(mailbox);
            }
        }
        let (previous, candidate) = self.rcpts.split_at(start_idx);
        let duplicate = previous
            .split_terminator('\n')
            .any(|rcpt| rcpt.eq_ignore_ascii_case(candidate));
        if duplicate {
            self.rcpts.truncate(start_idx);
            out.extend_from_slice(reply::RCPT_OK);
        } else if self.n_rcpts >= self.config.recipients_max {
            self.rcpts.truncate(start_idx);
            out.extend_from_slice(reply::TOO_MANY_RECIPIENTS);
        } else {
            self.rcpts.push('\n');
            self.n_rcpts += 1;
            out.extend_from_slice(reply::RCPT_OK);
        }
        None
    }

    fn data(&mut self, out: &mut Vec<u8>) -> Option<Event> {
        if self.greeting == Greeting::None {
            return self.reply_error(reply::NEED_HELO, out);
        }
        if self.must_starttls() {
            return self.reply_error(reply::MUST_STARTTLS, out);
        }
        if !self.in_mail {
            return self.reply_error(reply::NEED_MAIL, out);
        }
        if self.used_bdat {
            return self.reply_error(reply::DATA_AFTER_BDAT, out);
        }
        if self.n_rcpts == 0 {
            return self.reply_error(reply::NO_VALID_RECIPIENTS, out);
        }
        out.extend_from_slice(reply::DATA_START);
        self.body.clear();
        self.data_scanner.reset();
        self.mode = Mode::Data;
        None
    }

    fn advance_data(&mut self, rest: &[u8], out: &mut Vec<u8>) -> (usize, Option<Event>) {
        let (n_bytes, finished) =
            self.data_scanner
                .scan(rest, &mut self.body, self.config.message_bytes_max);
        if !finished {
            debug_assert_eq!(n_bytes, rest.len());
            return (n_bytes, Some(Event::NeedInput));
        }
        (n_bytes, self.finish_data(out))
    }

    /// The end of a DATA body was found: deliver the message or write why it is refused.
    fn finish_data(&mut self, out: &mut Vec<u8>) -> Option<Event> {
        self.mode = Mode::Command;
        let Some(refusal) = self.data_scanner.refusal() else {
            self.awaiting_delivery = true;
            return Some(Event::Deliver);
        };
        self.reset_transaction();
        match refusal {
            Refusal::BareNewline => self.reply_error(reply::BARE_NEWLINE_IN_DATA, out),
            Refusal::LineTooLong => {
                out.extend_from_slice(reply::TEXT_LINE_TOO_LONG);
                None
            }
            Refusal::TooBig => {
                out.extend_from_slice(reply::MESSAGE_TOO_BIG);
                None
            }
        }
    }

    /// Starts reading a BDAT chunk. Its bytes are consumed even when it is refused
    /// (RFC 3030 3: the server must read the chunk before it replies), so they are never
    /// taken for commands.
    fn bdat(&mut self, chunk_bytes: u64, last: bool) {
        let body_bytes = u64::try_from(self.body.len()).unwrap_or(u64::MAX);
        let message_bytes_max = u64::try_from(self.config.message_bytes_max).unwrap_or(u64::MAX);
        let refusal = if self.greeting == Greeting::None {
            Some(BdatRefusal::Sequence(reply::NEED_HELO))
        } else if self.must_starttls() {
            Some(BdatRefusal::Sequence(reply::MUST_STARTTLS))
        } else if !self.in_mail {
            Some(BdatRefusal::Sequence(reply::NEED_MAIL))
        } else if self.n_rcpts == 0 {
            Some(BdatRefusal::Sequence(reply::NEED_RCPT))
        } else if body_bytes.saturating_add(chunk_bytes) > message_bytes_max {
            Some(BdatRefusal::TooBig)
        } else {
            None
        };
        if refusal.is_none() {
            self.used_bdat = true;
        }
        self.mode = Mode::Bdat {
            chunk_bytes,
            chunk_bytes_left: chunk_bytes,
            last,
            refusal,
        };
    }

    fn advance_bdat(&mut self, rest: &[u8], out: &mut Vec<u8>) -> (usize, Option<Event>) {
        let Mode::Bdat {
            chunk_bytes,
            chunk_bytes_left,
            last,
            refusal,
        } = self.mode
        else {
            return (0, None);
        };
        let n_bytes = usize::try_from(chunk_bytes_left)
            .unwrap_or(usize::MAX)
            .min(rest.len());
        if refusal.is_none() {
            // bdat() checked that the whole chunk fits within message_bytes_max.
            self.body
                .push(&rest[..n_bytes], self.config.message_bytes_max);
        }
        let chunk_bytes_left = chunk_bytes_left - n_bytes as u64;
        if chunk_bytes_left > 0 {
            self.mode = Mode::Bdat {
                chunk_bytes,
                chunk_bytes_left,
                last,
                refusal,
            };
            return (n_bytes, Some(Event::NeedInput));
        }
        self.mode = Mode::Command;
        let event = match refusal {
            Some(BdatRefusal::Sequence(reply)) => self.reply_error(reply, out),
            Some(BdatRefusal::TooBig) => {
                self.reset_transaction();
                out.extend_from_slice(reply::MESSAGE_TOO_BIG);
                None
            }
            None if last => {
                self.awaiting_delivery = true;
                Some(Event::Deliver)
            }
            None => {
                reply::bdat_received(chunk_bytes, out);
                None
            }
        };
        (n_bytes, event)
    }

    fn starttls(&mut self, out: &mut Vec<u8>) -> Option<Event> {
        if !self.config.starttls_available {
            return self.reply_error(reply::STARTTLS_UNAVAILABLE, out);
        }
        if self.tls_active {
            return self.reply_error(reply::TLS_ALREADY_ACTIVE, out);
        }
        if self.greeting == Greeting::None {
            return self.reply_error(reply::NEED_HELO, out);
        }
        self.reset_transaction();
        out.extend_from_slice(reply::STARTTLS_READY);
        Some(Event::StartTls)
    }

    /// Writes an error reply and counts it; past `ERRORS_MAX` the session gives up.
    fn reply_error(&mut self, reply: &[u8], out: &mut Vec<u8>) -> Option<Event> {
        out.extend_from_slice(reply);
        self.n_errors += 1;
        if self.n_errors >= ERRORS_MAX {
            out.extend_from_slice(reply::TOO_MANY_ERRORS);
            return Some(Event::Close);
        }
        None
    }

    fn reset_transaction(&mut self) {
        self.in_mail = false;
        self.smtputf8 = false;
        self.used_bdat = false;
        self.awaiting_delivery = false;
        self.mail_from.clear();
        self.rcpts.clear();
        self.n_rcpts = 0;
        self.body.clear();
        self.body.shrink_to(BODY_CAPACITY_KEPT_BYTES);
    }

    /// The `with` protocol name (RFC 3848, RFC 6531 3.7.3).
    fn protocol(&self) -> &'static str {
        match (self.smtputf8, self.tls_active, self.greeting) {
            (true, true, _) => "UTF8SMTPS",
            (true, false, _) => "UTF8SMTP",
            (false, true, _) => "ESMTPS",
            (false, false, Greeting::Ehlo) => "ESMTP",
            (false, false, _) => "SMTP",
        }
    }
}

/// The longest prefix of `text` of at most `bytes_max` octets that ends on a char boundary.
fn truncate_str(text: &str, bytes_max: usize) -> &str {
    if text.len() <= bytes_max {
        return text;
    }
    let mut end_idx = bytes_max;
    while !text.is_char_boundary(end_idx) {
        end_idx -= 1;
    }
    &text[..end_idx]
}

/// Appends `text` (truncated) for use inside a header where parentheses would open or
/// close a comment: control characters, spaces, `(`, `)` and `\` become `_`.
fn push_comment_safe(out: &mut Vec<u8>, text: &str, bytes_max: usize) {
    for &b in truncate_str(text, bytes_max).as_bytes() {
        let safe = b >= 0x80 || (b.is_ascii_graphic() && !matches!(b, b'(' | b')' | b'\\'));
        out.push(if safe { b } else { b'_' });
    }
}

/// Stores a TLS version or cipher name as a short token safe inside a comment.
fn push_token(buffer: &mut String, text: &str) {
    for ch in truncate_str(text, TLS_TEXT_BYTES_MAX).chars() {
        let safe = ch.is_ascii_graphic() && !matches!(ch, '(' | ')' | '\\');
        buffer.push(if safe { ch } else { '_' });
    }
}

/// Writes `now` as an RFC 5322 date in UTC, e.g. `Fri, 27 Nov 2026 22:15:44 +0000`.
fn write_date(now: SystemTime, out: &mut Vec<u8>) {
    let unix_secs = match now.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |secs| -secs),
    };
    // Formatting a date costs more than the rest of the header; every message of the same
    // second on this thread (executor) shares one rendering.
    thread_local! {
        static LAST_DATE: std::cell::RefCell<(i64, Vec<u8>)> =
            const { std::cell::RefCell::new((i64::MIN, Vec::new())) };
    }
    LAST_DATE.with_borrow_mut(|(cached_secs, cached_text)| {
        if *cached_secs != unix_secs || cached_text.is_empty() {
            cached_text.clear();
            let written = OffsetDateTime::from_unix_timestamp(unix_secs)
                .ok()
                .and_then(|date| date.format_into(cached_text, &Rfc2822).ok());
            if written.is_none() {
                // Only for clocks outside years 1900..=9999, which RFC 5322 cannot express.
                cached_text.clear();
                cached_text.extend_from_slice(b"Thu, 01 Jan 1970 00:00:00 +0000");
            }
            *cached_secs = unix_secs;
        }
        out.extend_from_slice(cached_text);
    });
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    const HOSTNAME: &str = "mx.example.test";
    const MESSAGE_BYTES_MAX: usize = 2_000;
    const RECIPIENTS_MAX: usize = 3;
    /// 2026-11-27 22:15:44 UTC.
    const NOW_UNIX_SECS: u64 = 1_795_817_744;

    fn config() -> SessionConfig {
        SessionConfig {
            hostname: HOSTNAME.to_string(),
            message_bytes_max: MESSAGE_BYTES_MAX,
            recipients_max: RECIPIENTS_MAX,
            domains: DomainPolicy::new(&["example.test", "*.sub.example.test"]),
            starttls_available: false,
            tls_required: false,
        }
    }

    /// The socket loop's read buffer (`net::smtp_conn::READ_BUFFER_BYTES`).
    const SOCKET_READ_BYTES: usize = 16 * 1024;

    /// A message as the fake caller stored it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Stored {
        mail_from: String,
        rcpts: Vec<String>,
        body: Vec<u8>,
        received: String,
    }

    /// Plays the socket loop's part: buffers unconsumed input, stores delivered messages,
    /// and records everything the session writes (mail-server's `TestSession` idea).
    struct TestSession {
        session: Session,
        pending: Vec<u8>,
        out: Vec<u8>,
        stored: Vec<Stored>,
        /// `Quit` or `Close` once the session ended the connection.
        ended: Option<Event>,
        n_starttls: usize,
        /// How the next delivery goes.
        next_delivery: Delivery<'static>,
        /// Read body bytes straight into the session when it offers room, as the socket
        /// loop does, instead of always going through `pending`.
        read_into_body: bool,
        /// Reads that went straight into the body.
        n_body_reads: usize,
    }

    impl TestSession {
        fn new() -> TestSession {
            TestSession::with_config(config(), None)
        }

        fn with_config(config: SessionConfig, client_ip: Option<IpAddr>) -> TestSession {
            let session = Session::new(Rc::new(config), client_ip);
            let mut out = Vec::new();
            session.greeting(&mut out);
            TestSession {
                session,
                pending: Vec::new(),
                out,
                stored: Vec::new(),
                ended: None,
                n_starttls: 0,
                next_delivery: Delivery::Stored { queue_id: "q1" },
                read_into_body: false,
                n_body_reads: 0,
            }
        }

        /// A session fed the way the socket loop feeds it: big bodies go straight into the
        /// session's body buffer.
        fn reading_into_body(config: SessionConfig) -> TestSession {
            let mut test = TestSession::with_config(config, None);
            test.read_into_body = true;
            test
        }

        /// Feeds bytes as they arrive from the client. Without `read_into_body` they are
        /// one read; with it, they are read in as many pieces as the session's body buffer
        /// takes, like the socket loop does.
        fn feed(&mut self, chunk: &[u8]) -> &mut TestSession {
            // Bytes still "in the socket".
            let mut unread = chunk;
            while self.ended.is_none() {
                let (n_consumed, event) = self.session.advance(&self.pending, &mut self.out);
                assert!(n_consumed <= self.pending.len());
                self.pending.drain(..n_consumed);
                match event {
                    Event::NeedInput => {
                        assert!(
                            self.pending.len() <= UNCONSUMED_BYTES_MAX,
                            "{} bytes left",
                            self.pending.len()
                        );
                        if self.session.expects_data() {
                            assert!(self.pending.is_empty(), "body bytes left unconsumed");
                        }
                        if unread.is_empty() {
                            break;
                        }
                        let body_buffer = if self.read_into_body && self.pending.is_empty() {
                            self.session.body_read_buffer()
                        } else {
                            None
                        };
                        match body_buffer {
                            Some(body_buffer) => {
                                let n_bytes = body_buffer.len().min(unread.len());
                                body_buffer[..n_bytes].copy_from_slice(&unread[..n_bytes]);
                                unread = &unread[n_bytes..];
                                let rest = self.session.body_received(n_bytes);
                                self.pending.extend_from_slice(rest);
                                self.n_body_reads += 1;
                            }
                            None => {
                                // Reading into the body only pays for big bodies, so here
                                // reads are as big as the socket loop's.
                                let n_bytes = if self.read_into_body {
                                    unread.len().min(SOCKET_READ_BYTES)
                                } else {
                                    unread.len()
                                };
                                self.pending.extend_from_slice(&unread[..n_bytes]);
                                unread = &unread[n_bytes..];
                            }
                        }
                    }
                    Event::Deliver => {
                        let transaction = self.session.transaction();
                        assert_eq!(transaction.rcpts().count(), transaction.n_rcpts());
                        let mut received = Vec::new();
                        self.session.write_received_header(
                            "q1",
                            UNIX_EPOCH + Duration::from_secs(NOW_UNIX_SECS),
                            &mut received,
                        );
                        self.stored.push(Stored {
                            mail_from: transaction.mail_from.to_string(),
                            rcpts: transaction.rcpts().map(str::to_string).collect(),
                            body: transaction.body.to_vec(),
                            received: String::from_utf8(received).expect("header is UTF-8"),
                        });
                        self.session.delivered(self.next_delivery, &mut self.out);
                    }
                    Event::StartTls => {
                        // CVE-2011-0411: nothing sent before the handshake counts.
                        self.pending.clear();
                        unread = &[];
                        self.n_starttls += 1;
                        self.session
                            .tls_started("TLSv1.3", "TLS_AES_128_GCM_SHA256");
                    }
                    Event::Quit | Event::Close => {
                        self.ended = Some(event);
                    }
                }
            }
            self
        }

        /// The reply codes written so far, one per reply (multi-line replies count once),
        /// without the greeting.
        fn codes(&self) -> Vec<u16> {
            reply_codes(&self.out).into_iter().skip(1).collect()
        }

        fn text(&self) -> String {
            String::from_utf8_lossy(&self.out).into_owned()
        }

        #[track_caller]
        fn assert_codes(&self, expected: &[u16]) {
            assert_eq!(self.codes(), expected, "replies:\n{}", self.text());
        }
    }

    /// Reply codes in `out`, counting a multi-line reply once (at its last line).
    fn reply_codes(out: &[u8]) -> Vec<u16> {
        out.split(|&b| b == b'\n')
            .filter(|line| line.len() >= 4 && line[3] != b'-')
            .map(reply::code_of)
            .collect()
    }

    /// Runs `script` fed in the given pieces; returns the output, the stored messages and
    /// how it ended.
    fn run_in_pieces(script: &[u8], cuts: &[usize]) -> (Vec<u8>, Vec<Stored>, Option<Event>) {
        let mut test = TestSession::new();
        let mut start_idx = 0;
        for &cut in cuts.iter().chain(std::iter::once(&script.len())) {
            let cut = cut.clamp(start_idx, script.len());
            test.feed(&script[start_idx..cut]);
            start_idx = cut;
        }
        (test.out, test.stored, test.ended)
    }

    fn run(script: &[u8]) -> TestSession {
        let mut test = TestSession::new();
        test.feed(script);
        test
    }

    /// The same replies and stored messages whether `script` comes in one read, split at
    /// any one byte, or one byte at a time.
    #[track_caller]
    fn assert_chunking_invariant(script: &[u8]) {
        let whole = run_in_pieces(script, &[]);
        for cut in 1..script.len() {
            assert_eq!(
                run_in_pieces(script, &[cut]),
                whole,
                "split at {cut} of {:?}",
                String::from_utf8_lossy(script)
            );
        }
        let every_byte: Vec<usize> = (1..script.len()).collect();
        assert_eq!(run_in_pieces(script, &every_byte), whole, "byte by byte");
    }

    const EHLO_MAIL_RCPT: &[u8] =
        b"EHLO client.example\r\nMAIL FROM:<a@client.example>\r\nRCPT TO:<u@example.test>\r\n";

    fn script(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn greeting_and_ehlo_text() {
        let test = run(b"EHLO client.example\r\nHELO client.example\r\n");
        assert_eq!(
            test.text(),
            "220 mx.example.test ESMTP Mayfly\r\n\
             250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 2000\r\n250-8BITMIME\r\n\
             250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250 CHUNKING\r\n\
             250 mx.example.test\r\n"
        );
    }

    #[test]
    fn one_message_with_pipelining() {
        let mut test = run(&script(&[
            EHLO_MAIL_RCPT,
            b"RCPT TO:<v@x.sub.example.test>\r\nDATA\r\nSubject: hi\r\n\r\nHello\r\n.\r\nQUIT\r\n",
        ]));
        test.assert_codes(&[250, 250, 250, 250, 354, 250, 221]);
        assert!(test.text().contains("250 2.0.0 Ok: queued as q1\r\n"));
        assert_eq!(test.ended, Some(Event::Quit));
        assert_eq!(
            test.stored,
            vec![Stored {
                mail_from: "a@client.example".to_string(),
                rcpts: vec![
                    "u@example.test".to_string(),
                    "v@x.sub.example.test".to_string()
                ],
                body: b"Subject: hi\r\n\r\nHello\r\n".to_vec(),
                received:
                    "Received: from client.example by mx.example.test (Mayfly) with ESMTP\r\n\
                           \tid q1; Fri, 27 Nov 2026 22:15:44 +0000\r\n"
                        .to_string(),
            }]
        );
        // Input after QUIT is not processed.
        test.feed(b"NOOP\r\n");
        test.assert_codes(&[250, 250, 250, 250, 354, 250, 221]);
    }

    #[test]
    fn two_messages_pipelined_in_one_read() {
        let test = run(&script(&[
            EHLO_MAIL_RCPT,
            b"DATA\r\none\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<w@example.test>\r\nDATA\r\ntwo\r\n.\r\n",
        ]));
        test.assert_codes(&[250, 250, 250, 354, 250, 250, 250, 354, 250]);
        let bodies: Vec<&[u8]> = test.stored.iter().map(|stored| &stored.body[..]).collect();
        assert_eq!(bodies, [&b"one\r\n"[..], b"two\r\n"]);
        assert_eq!(test.stored[1].mail_from, "");
        assert_eq!(test.stored[1].rcpts, ["w@example.test"]);
    }

    /// Table of (input after the greeting, expected reply codes).
    fn check_codes(table: &[(&[u8], &[u16])]) {
        for (input, expected) in table {
            let test = run(input);
            assert_eq!(
                test.codes(),
                *expected,
                "input {:?}\nreplies:\n{}",
                String::from_utf8_lossy(input),
                test.text()
            );
        }
    }

    #[test]
    fn command_sequence_rules() {
        check_codes(&[
            // Before HELO/EHLO.
            (b"MAIL FROM:<a@b.example>\r\n", &[503]),
            (b"RCPT TO:<u@example.test>\r\n", &[503]),
            (b"DATA\r\n", &[503]),
            (b"BDAT 0 LAST\r\n", &[503]),
            (b"NOOP\r\nRSET\r\nVRFY x\r\nHELP\r\n", &[250, 250, 252, 214]),
            // Unknown commands do not end the session; verbs are case-insensitive.
            (b"EXPN all\r\nehlo c\r\nNoOp\r\n", &[500, 250, 250]),
            (b"\r\nNOOP\r\n", &[500, 250]),
            (b"STARTTLS\r\nNOOP\r\n", &[502, 250]),
            // RCPT needs MAIL, DATA needs MAIL and RCPT.
            (b"EHLO c\r\nRCPT TO:<u@example.test>\r\n", &[250, 503]),
            (b"EHLO c\r\nDATA\r\n", &[250, 503]),
            (b"EHLO c\r\nMAIL FROM:<>\r\nDATA\r\n", &[250, 250, 503]),
            (
                b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<u@other.example>\r\nDATA\r\n",
                &[250, 250, 550, 503],
            ),
            (
                b"EHLO c\r\nMAIL FROM:<>\r\nMAIL FROM:<>\r\n",
                &[250, 250, 503],
            ),
            // EHLO, HELO and RSET reset the transaction.
            (
                b"EHLO c\r\nMAIL FROM:<>\r\nEHLO c\r\nRCPT TO:<u@example.test>\r\n",
                &[250, 250, 250, 503],
            ),
            (
                b"EHLO c\r\nMAIL FROM:<>\r\nHELO c\r\nMAIL FROM:<>\r\n",
                &[250, 250, 250, 250],
            ),
            (
                b"EHLO c\r\nMAIL FROM:<>\r\nRSET\r\nRCPT TO:<u@example.test>\r\n",
                &[250, 250, 250, 503],
            ),
            // Syntax errors of simple commands.
            (
                b"EHLO\r\nHELO a b\r\nRSET x\r\nQUIT x\r\nVRFY\r\n",
                &[501, 501, 501, 501, 501],
            ),
        ]);
    }

    #[test]
    fn mail_from_rules() {
        let ehlo = |rest: &[u8]| script(&[b"EHLO c\r\n", rest]);
        let table: Vec<(Vec<u8>, Vec<u16>)> = vec![
            (ehlo(b"MAIL FROM:<>\r\n"), vec![250, 250]),
            (ehlo(b"MAIL FROM:<\"a b\"@c.example>\r\n"), vec![250, 250]),
            (
                ehlo(b"MAIL FROM:<@r1.example,@r2.example:u@d.example>\r\n"),
                vec![250, 250],
            ),
            (ehlo(b"MAIL FROM: <a@c.example>\r\n"), vec![250, 250]),
            (
                ehlo(b"MAIL FROM:<a@c.example> BODY=8BITMIME\r\n"),
                vec![250, 250],
            ),
            (
                ehlo(b"MAIL FROM:<a@c.example> BODY=7BIT SIZE=2000\r\n"),
                vec![250, 250],
            ),
            // SIZE over the limit: refused, no transaction started.
            (
                ehlo(b"MAIL FROM:<a@c.example> SIZE=2001\r\nRCPT TO:<u@example.test>\r\n"),
                vec![250, 552, 503],
            ),
            (
                ehlo(b"MAIL FROM:<a@c.example> SIZE=99999999999999999999\r\n"),
                vec![250, 552],
            ),
            (ehlo(b"MAIL FROM:<a@c.example> SIZE=1x\r\n"), vec![250, 501]),
            (ehlo(b"MAIL FROM:<a@c.example> ENVID=x\r\n"), vec![250, 555]),
            (
                ehlo(b"MAIL FROM:<a@c.example> BODY=BINARYMIME\r\n"),
                vec![250, 555],
            ),
            (ehlo(b"MAIL FROM:a@c.example\r\n"), vec![250, 501]),
            (ehlo(b"MAIL FROM:<a@@c.example>\r\n"), vec![250, 501]),
            (ehlo(b"MAIL FROM:<a@c.example\r\n"), vec![250, 501]),
            (ehlo(b"MAIL FROM:<\xff@c.example>\r\n"), vec![250, 501]),
            // Non-ASCII needs SMTPUTF8.
            (
                ehlo("MAIL FROM:<j\u{f6}rg@c.example>\r\n".as_bytes()),
                vec![250, 553],
            ),
            (
                ehlo("MAIL FROM:<j\u{f6}rg@c.example> SMTPUTF8\r\n".as_bytes()),
                vec![250, 250],
            ),
            (
                ehlo(format!("MAIL FROM:<{}@c.example>\r\n", "a".repeat(65)).as_bytes()),
                vec![250, 501],
            ),
        ];
        for (input, expected) in table {
            let test = run(&input);
            assert_eq!(
                test.codes(),
                expected,
                "{:?}\n{}",
                String::from_utf8_lossy(&input),
                test.text()
            );
        }
        let test = run(&ehlo(
            b"MAIL FROM:<a@@c.example>\r\nMAIL FROM:a\r\nRCPT TO:<u@example.test>\r\n",
        ));
        assert_eq!(
            test.text().lines().skip(8).collect::<Vec<_>>(),
            [
                "501 5.1.7 Bad sender address syntax",
                "501 5.5.4 Syntax: MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8]",
                "503 5.5.1 Need MAIL command first",
            ]
        );
    }

    #[test]
    fn rcpt_to_rules() {
        let mail = |rest: &[u8]| script(&[b"EHLO c\r\nMAIL FROM:<a@c.example>\r\n", rest]);
        let table: Vec<(Vec<u8>, Vec<u16>)> = vec![
            (mail(b"RCPT TO:<u@example.test>\r\n"), vec![250, 250, 250]),
            (mail(b"RCPT TO:<u@EXAMPLE.TEST>\r\n"), vec![250, 250, 250]),
            // RFC 5321 has no trailing dot in a domain.
            (mail(b"RCPT TO:<u@example.test.>\r\n"), vec![250, 250, 501]),
            (mail(b"RCPT TO:<u@a.b.sub.example.test>\r\n"), vec![250, 250, 250]),
            (mail(b"RCPT TO: <@relay.example:u@example.test>\r\n"), vec![250, 250, 250]),
            // We never relay.
            (mail(b"RCPT TO:<u@other.example>\r\n"), vec![250, 250, 550]),
            (mail(b"RCPT TO:<u@example.test.evil.example>\r\n"), vec![250, 250, 550]),
            (mail(b"RCPT TO:<u@[192.0.2.1]>\r\n"), vec![250, 250, 550]),
            (mail(b"RCPT TO:<postmaster>\r\n"), vec![250, 250, 250]),
            (mail(b"RCPT TO:<>\r\n"), vec![250, 250, 501]),
            (mail(b"RCPT TO:<u@example.test> NOTIFY=NEVER\r\n"), vec![250, 250, 555]),
            (mail("RCPT TO:<\u{fc}@example.test>\r\n".as_bytes()), vec![250, 250, 553]),
            (mail(b"RCPT TO:<u@example.test\r\n"), vec![250, 250, 501]),
            // recipients_max is 3; duplicates do not count.
            (
                mail(b"RCPT TO:<a@example.test>\r\nRCPT TO:<A@Example.Test>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\nRCPT TO:<d@example.test>\r\nRCPT TO:<b@example.test>\r\n"),
                vec![250, 250, 250, 250, 250, 250, 452, 250],
            ),
        ];
        for (input, expected) in table {
            let test = run(&input);
            assert_eq!(
                test.codes(),
                expected,
                "{:?}\n{}",
                String::from_utf8_lossy(&input),
                test.text()
            );
        }
        let test = run(&mail(
            b"RCPT TO:<a@example.test>\r\nRCPT TO:<A@EXAMPLE.test>\r\nRCPT TO:<Postmaster>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\nDATA\r\nx\r\n.\r\n",
        ));
        assert!(test.text().contains("452 4.5.3 "), "{}", test.text());
        assert!(!test.text().contains("550 5.7.1 "), "{}", test.text());
        assert_eq!(
            test.stored[0].rcpts,
            [
                "a@example.test",
                "postmaster@mx.example.test",
                "b@example.test"
            ]
        );
    }

    #[test]
    fn smtputf8_transaction_is_stored_and_labelled() {
        let test = run(&script(&[
            b"EHLO c\r\n",
            "MAIL FROM:<j\u{f6}rg@b\u{fc}cher.example> SMTPUTF8\r\nRCPT TO:<\u{fc}ser@example.test>\r\nDATA\r\nx\r\n.\r\n".as_bytes(),
        ]));
        test.assert_codes(&[250, 250, 250, 354, 250]);
        let stored = &test.stored[0];
        assert_eq!(stored.mail_from, "j\u{f6}rg@b\u{fc}cher.example");
        assert_eq!(stored.rcpts, ["\u{fc}ser@example.test"]);
        assert!(
            stored
                .received
                .contains(" with UTF8SMTP\r\n\tid q1 for <\u{fc}ser@example.test>; "),
            "{}",
            stored.received
        );
    }

    #[test]
    fn data_bodies() {
        let table: &[(&[u8], &[u8])] = &[
            // Just the terminator: an empty message.
            (b".\r\n", b""),
            (b"\r\n.\r\n", b"\r\n"),
            (b"a\r\n.\r\n", b"a\r\n"),
            // Dot-unstuffing: a stuffed "." line, a stuffed ".." line, a dot inside a line.
            (b"..\r\n.\r\n", b".\r\n"),
            (b"...\r\n.\r\n", b"..\r\n"),
            (b"..a\r\nb.c\r\n.\r\n", b".a\r\nb.c\r\n"),
            // Lone dot not stuffed (a client bug) still loses its dot.
            (b".a\r\n.\r\n", b"a\r\n"),
            // 8-bit data passes untouched.
            (b"\xff\xfe\x00\r\n.\r\n", b"\xff\xfe\x00\r\n"),
        ];
        for (body, expected) in table {
            let test = run(&script(&[EHLO_MAIL_RCPT, b"DATA\r\n", body, b"NOOP\r\n"]));
            test.assert_codes(&[250, 250, 250, 354, 250, 250]);
            assert_eq!(test.stored.len(), 1, "{:?}", String::from_utf8_lossy(body));
            assert_eq!(
                test.stored[0].body,
                *expected,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// Smuggling attempts: a second message hidden behind a bare-LF or bare-CR "end of data".
    const SMUGGLING_TERMINATORS: [&[u8]; 6] = [
        b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\n", b"\r\n.\r", b".\n",
    ];

    #[test]
    fn smuggled_messages_are_never_stored_or_executed() {
        for fake_end in SMUGGLING_TERMINATORS {
            let input = script(&[
                EHLO_MAIL_RCPT,
                b"DATA\r\nSubject: first\r\n\r\nfirst",
                fake_end,
                b"MAIL FROM:<evil@client.example>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nSubject: smuggled\r\n",
                b"\r\n.\r\nNOOP\r\n",
            ]);
            let test = run(&input);
            // 250 EHLO, 250 MAIL, 250 RCPT, 354 DATA, 550 refused at the real end, 250 NOOP:
            // the smuggled MAIL/RCPT/DATA were body text, never commands.
            test.assert_codes(&[250, 250, 250, 354, 550, 250]);
            assert!(
                test.stored.is_empty(),
                "{:?}",
                String::from_utf8_lossy(fake_end)
            );
            assert!(
                test.text()
                    .contains("550 5.6.0 Message refused: bare CR or LF")
            );
            assert!(!test.session.in_transaction());
            // The session is still usable for the next transaction.
            let mut test = test;
            test.feed(&script(&[
                b"MAIL FROM:<a@c.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\nok\r\n.\r\n",
            ]));
            assert_eq!(test.stored.len(), 1);
            assert_eq!(test.stored[0].body, b"ok\r\n");
            assert_chunking_invariant(&input);
        }
    }

    #[test]
    fn long_text_line_and_big_body_are_refused_after_the_end() {
        let limit_line = |n_bytes: usize| {
            let mut line = vec![b'x'; n_bytes - 2];
            line.extend_from_slice(b"\r\n");
            line
        };
        let big_body: Vec<u8> = (0..30).flat_map(|_| limit_line(100)).collect(); // 3000 > 2000
        let exact_body: Vec<u8> = (0..20).flat_map(|_| limit_line(100)).collect(); // exactly 2000
        let table: Vec<(Vec<u8>, u16, &str)> = vec![
            (limit_line(1000), 250, "250 2.0.0 Ok: queued"),
            (
                limit_line(1001),
                552,
                "552 5.3.4 Message refused: text line longer than 1000 octets",
            ),
            (
                limit_line(100_000),
                552,
                "552 5.3.4 Message refused: text line longer",
            ),
            (exact_body, 250, "250 2.0.0 Ok: queued"),
            (big_body, 552, "552 5.3.4 Message size exceeds"),
        ];
        for (body, code, text) in table {
            let mut test = TestSession::new();
            test.feed(EHLO_MAIL_RCPT).feed(b"DATA\r\n");
            for piece in body.chunks(300) {
                test.feed(piece);
                assert!(test.session.expects_data());
                assert!(test.session.body.capacity_bytes() <= MESSAGE_BYTES_MAX);
            }
            test.feed(b".\r\nMAIL FROM:<>\r\nRCPT TO:<u@example.test>\r\nDATA\r\nnext\r\n.\r\n");
            test.assert_codes(&[250, 250, 250, 354, code, 250, 250, 354, 250]);
            assert!(test.text().contains(text), "{}", test.text());
            assert_eq!(
                test.stored.last().map(|stored| &stored.body[..]),
                Some(&b"next\r\n"[..])
            );
        }
    }

    #[test]
    fn over_long_command_lines_are_skipped_without_buffering() {
        let mut test = TestSession::new();
        let long = vec![b'A'; 100 * 1024];
        for piece in long.chunks(4096) {
            test.feed(piece);
            assert!(test.pending.len() < COMMAND_LINE_BYTES_MAX);
        }
        test.feed(b"\r\nNOOP\r\n");
        test.assert_codes(&[500, 250]);
        assert!(test.text().contains("500 5.5.2 Line too long\r\n"));

        // Exactly 512 octets with CRLF is fine; 513 is not. Also when fed byte by byte.
        let line = |n_bytes: usize| {
            let mut line = b"NOOP ".to_vec();
            line.resize(n_bytes - 2, b'x');
            line.extend_from_slice(b"\r\n");
            line
        };
        check_codes(&[
            (&line(512), &[250]),
            (&line(513), &[500]),
            (&script(&[&line(513), b"NOOP\r\n"]), &[500, 250]),
        ]);
        assert_chunking_invariant(&script(&[&line(512), &line(513), &line(1100), b"NOOP\r\n"]));
        // A long MAIL line does not start a transaction.
        let long_mail = script(&[
            b"EHLO c\r\nMAIL FROM:<a@c.example> ",
            &[b'x'; 600],
            b"\r\nRCPT TO:<u@example.test>\r\n",
        ]);
        check_codes(&[(&long_mail, &[250, 500, 503])]);
    }

    #[test]
    fn bare_cr_or_lf_in_command_lines() {
        check_codes(&[
            // A bare LF does not end a line: nothing is answered until the CRLF.
            (b"NOOP\n", &[]),
            (b"NOOP\n\r\n", &[500]),
            (b"NOOP\nNOOP\r\n", &[500]),
            (b"NOOP\rQUIT\r\nNOOP\r\n", &[500, 250]),
            (b"\n\r\n", &[500]),
            // The line with the bare LF runs to the CRLF and is refused whole, so the
            // command hidden behind the LF never runs.
            (
                b"EHLO c\r\nMAIL FROM:<a@c.example>\nRCPT TO:<u@example.test>\r\nRCPT TO:<u@example.test>\r\n",
                &[250, 500, 503],
            ),
            (b"RSET\nMAIL FROM:<h@c.example>\r\nNOOP\r\n", &[500, 250]),
        ]);
        let test = run(b"NOOP\n\r\n");
        assert!(
            test.text()
                .ends_with("500 5.5.2 Bare CR or LF in command line, lines must end with CRLF\r\n")
        );
    }

    #[test]
    fn bdat_chunks() {
        // Chunks across reads; sizes are exact octets, no dot handling or line checks.
        let mut test = TestSession::new();
        test.feed(EHLO_MAIL_RCPT).feed(b"BDAT 11\r\n.\r\nab");
        assert!(test.session.expects_data());
        test.feed(b"\ncd\r\n.")
            .feed(b"BDAT 3 LAST\r\nxy")
            .feed(b"zNOOP\r\n");
        test.assert_codes(&[250, 250, 250, 250, 250, 250]);
        assert!(
            test.text().contains("250 2.0.0 11 octets received\r\n"),
            "{}",
            test.text()
        );
        assert_eq!(test.stored[0].body, b".\r\nab\ncd\r\n.xyz");

        check_codes(&[
            // BDAT 0 LAST ends an empty message.
            (
                &script(&[EHLO_MAIL_RCPT, b"BDAT 0 LAST\r\n"]),
                &[250, 250, 250, 250],
            ),
            (
                &script(&[EHLO_MAIL_RCPT, b"BDAT 0\r\nBDAT 1 LAST\r\nx"]),
                &[250, 250, 250, 250, 250],
            ),
            // Refused chunks are still consumed: "QUIT\r\n" below is chunk data.
            (b"BDAT 6\r\nQUIT\r\nNOOP\r\n", &[503, 250]),
            (b"EHLO c\r\nBDAT 6\r\nQUIT\r\nNOOP\r\n", &[250, 503, 250]),
            (
                b"EHLO c\r\nMAIL FROM:<>\r\nBDAT 6 LAST\r\nQUIT\r\nNOOP\r\n",
                &[250, 250, 503, 250],
            ),
            // Too big: 552 after the chunk, the transaction is reset, later chunks get 503
            // and are consumed too.
            (
                &script(&[
                    EHLO_MAIL_RCPT,
                    b"BDAT 1500\r\n",
                    &[b'x'; 1500],
                    b"BDAT 501\r\n",
                    &[b'y'; 501],
                    b"BDAT 4 LAST\r\nQUITNOOP\r\n",
                ]),
                &[250, 250, 250, 250, 552, 503, 250],
            ),
            // DATA after BDAT in one transaction.
            (
                &script(&[EHLO_MAIL_RCPT, b"BDAT 1\r\nxDATA\r\n"]),
                &[250, 250, 250, 250, 503],
            ),
            // Bad sizes: 501 and nothing consumed beyond the line.
            (
                &script(&[EHLO_MAIL_RCPT, b"BDAT x\r\nNOOP\r\n"]),
                &[250, 250, 250, 501, 250],
            ),
            (
                &script(&[EHLO_MAIL_RCPT, b"BDAT 5 NOTLAST\r\nNOOP\r\n"]),
                &[250, 250, 250, 501, 250],
            ),
            (
                &script(&[EHLO_MAIL_RCPT, b"BDAT 123456789012345678901\r\nNOOP\r\n"]),
                &[250, 250, 250, 501, 250],
            ),
        ]);
        // A huge declared chunk is refused but read (and thrown away) to its end.
        let mut test = TestSession::new();
        test.feed(EHLO_MAIL_RCPT).feed(b"BDAT 1000000 LAST\r\n");
        for _ in 0..250 {
            test.feed(&[b'z'; 4000]);
            assert!(test.session.body.capacity_bytes() <= MESSAGE_BYTES_MAX);
        }
        test.feed(b"NOOP\r\n");
        test.assert_codes(&[250, 250, 250, 552, 250]);
        assert!(test.stored.is_empty());
    }

    #[test]
    fn deliveries_that_fail_keep_the_session_usable() {
        for (delivery, expected) in [
            (Delivery::TemporaryFailure, "451 4.3.0 "),
            (
                Delivery::TooLarge,
                "552 5.3.4 Message too big for the store",
            ),
            (
                Delivery::Stored { queue_id: "q1" },
                "250 2.0.0 Ok: queued as q1",
            ),
        ] {
            let mut test = TestSession::new();
            test.next_delivery = delivery;
            test.feed(&script(&[
                EHLO_MAIL_RCPT,
                b"DATA\r\nx\r\n.\r\nRCPT TO:<u@example.test>\r\nMAIL FROM:<>\r\n",
            ]));
            assert!(test.text().contains(expected), "{}", test.text());
            // The transaction was reset (RCPT needs MAIL again), EHLO was kept.
            assert_eq!(test.codes()[5..], [503, 250]);
        }
    }

    #[test]
    fn advance_without_delivered_answers_temporary_failure() {
        let session_config = Rc::new(config());
        let mut session = Session::new(session_config, None);
        let mut out = Vec::new();
        let input = script(&[EHLO_MAIL_RCPT, b"DATA\r\nx\r\n.\r\nNOOP\r\n"]);
        let (n_consumed, event) = session.advance(&input, &mut out);
        assert_eq!(event, Event::Deliver);
        assert!(session.in_transaction());
        assert_eq!(session.transaction().body, b"x\r\n");
        let (_, event) = session.advance(&input[n_consumed..], &mut out);
        assert_eq!(event, Event::NeedInput);
        assert_eq!(reply_codes(&out), [250, 250, 250, 354, 451, 250]);
        assert!(!session.in_transaction());
    }

    #[test]
    fn body_buffer_is_given_back_after_big_messages() {
        let mut session_config = config();
        session_config.message_bytes_max = 4 * BODY_CAPACITY_KEPT_BYTES;
        let mut session = Session::new(Rc::new(session_config), None);
        let mut out = Vec::new();
        let mut input = script(&[EHLO_MAIL_RCPT, b"DATA\r\n"]);
        for _ in 0..(2 * BODY_CAPACITY_KEPT_BYTES / 100) {
            input.extend_from_slice(&[b'b'; 98]);
            input.extend_from_slice(b"\r\n");
        }
        input.extend_from_slice(b".\r\n");
        assert_eq!(
            session.advance(&input, &mut out),
            (input.len(), Event::Deliver)
        );
        assert_eq!(
            session.transaction().body.len(),
            2 * BODY_CAPACITY_KEPT_BYTES / 100 * 100
        );
        assert!(session.body.capacity_bytes() <= 4 * BODY_CAPACITY_KEPT_BYTES);
        session.delivered(Delivery::Stored { queue_id: "q" }, &mut out);
        assert!(session.body.capacity_bytes() <= BODY_CAPACITY_KEPT_BYTES);
        session.shrink_body_buffer(1024);
        assert!(session.body.capacity_bytes() <= 1024);
    }

    /// Limit for the tests of reads straight into the body, which need bodies above
    /// `BODY_READ_BYTES_MIN`.
    const BIG_MESSAGE_BYTES_MAX: usize = 64 * 1024;

    fn big_config() -> SessionConfig {
        SessionConfig {
            message_bytes_max: BIG_MESSAGE_BYTES_MAX,
            ..config()
        }
    }

    /// `n_lines` lines of 98 octets plus CRLF, the first starting with a dot when
    /// `dotted` (then one octet more on the wire).
    fn filler(n_lines: usize, dotted: bool) -> (Vec<u8>, Vec<u8>) {
        let lines: Vec<Vec<u8>> = (0..n_lines)
            .map(|line_idx| {
                let mut line = vec![b'a' + (line_idx % 26) as u8; 98];
                if dotted && line_idx == 0 {
                    line[0] = b'.';
                }
                line
            })
            .collect();
        stuffed(&lines)
    }

    /// Feeds `input` both ways, asserts they agree, and returns the run that read into the
    /// body.
    #[track_caller]
    fn run_both_ways(config: SessionConfig, input: &[u8], cuts: &[usize]) -> TestSession {
        let mut copying = TestSession::with_config(config.clone(), None);
        let mut direct = TestSession::reading_into_body(config);
        let mut start_idx = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            let cut = cut.clamp(start_idx, input.len());
            copying.feed(&input[start_idx..cut]);
            direct.feed(&input[start_idx..cut]);
            start_idx = cut;
        }
        assert_eq!(direct.text(), copying.text());
        assert_eq!(direct.stored, copying.stored);
        assert_eq!(direct.ended, copying.ended);
        assert!(direct.session.body.capacity_bytes() <= BIG_MESSAGE_BYTES_MAX);
        direct
    }

    /// Input fed in pieces cut at `cuts`, the reply codes and the stored bodies expected.
    struct BigCase {
        input: Vec<u8>,
        cuts: Vec<usize>,
        codes: Vec<u16>,
        bodies: Vec<Vec<u8>>,
    }

    #[test]
    fn big_bodies_read_into_the_body_buffer() {
        let (body_40k, wire_40k) = filler(400, true);
        let (body_64k, wire_64k) = filler(BIG_MESSAGE_BYTES_MAX / 100, false);
        let (_, wire_too_big) = filler(BIG_MESSAGE_BYTES_MAX / 100 + 1, false);
        let bdat_40k = vec![b'\n'; 40_000];
        let mut bdat_chunks = EHLO_MAIL_RCPT.to_vec();
        bdat_chunks.extend_from_slice(b"BDAT 30000\r\n");
        bdat_chunks.extend_from_slice(&bdat_40k[..30_000]);
        bdat_chunks.extend_from_slice(b"BDAT 10000 LAST\r\n");
        bdat_chunks.extend_from_slice(&bdat_40k[30_000..]);
        bdat_chunks.extend_from_slice(b"QUIT\r\n");
        // A message whose end is followed in the same read by a whole BDAT message, more
        // than the socket loop's 16 KiB read buffer.
        let mut data_then_bdat = script(&[EHLO_MAIL_RCPT, b"DATA\r\n", &wire_40k]);
        data_then_bdat
            .extend_from_slice(b"MAIL FROM:<>\r\nRCPT TO:<v@example.test>\r\nBDAT 40000 LAST\r\n");
        data_then_bdat.extend_from_slice(&bdat_40k);
        data_then_bdat.extend_from_slice(b"NOOP\r\n");
        let mut bare_lf = wire_40k.clone();
        bare_lf.splice(36_050..36_050, *b"\n.\nMAIL FROM:<x@y.example>\r\n");
        let table: Vec<BigCase> = vec![
            BigCase {
                input: script(&[EHLO_MAIL_RCPT, b"DATA\r\n", &wire_40k, b"QUIT\r\n"]),
                cuts: vec![],
                codes: vec![250, 250, 250, 354, 250, 221],
                bodies: vec![body_40k.clone()],
            },
            // The terminator split over two reads into the body.
            BigCase {
                input: script(&[EHLO_MAIL_RCPT, b"DATA\r\n", &wire_40k, b"QUIT\r\n"]),
                cuts: vec![EHLO_MAIL_RCPT.len() + 6 + wire_40k.len() - 2],
                codes: vec![250, 250, 250, 354, 250, 221],
                bodies: vec![body_40k.clone()],
            },
            // Exactly at the limit, then one line over it.
            BigCase {
                input: script(&[EHLO_MAIL_RCPT, b"DATA\r\n", &wire_64k, b"QUIT\r\n"]),
                cuts: vec![],
                codes: vec![250, 250, 250, 354, 250, 221],
                bodies: vec![body_64k],
            },
            BigCase {
                input: script(&[EHLO_MAIL_RCPT, b"DATA\r\n", &wire_too_big, b"QUIT\r\n"]),
                cuts: vec![],
                codes: vec![250, 250, 250, 354, 552, 221],
                bodies: vec![],
            },
            // Smuggling inside a big body is still body text, and refused.
            BigCase {
                input: script(&[EHLO_MAIL_RCPT, b"DATA\r\n", &bare_lf, b"QUIT\r\n"]),
                cuts: vec![],
                codes: vec![250, 250, 250, 354, 550, 221],
                bodies: vec![],
            },
            BigCase {
                input: data_then_bdat,
                cuts: vec![],
                codes: vec![250, 250, 250, 354, 250, 250, 250, 250, 250],
                bodies: vec![body_40k.clone(), bdat_40k.clone()],
            },
            BigCase {
                input: bdat_chunks,
                cuts: vec![EHLO_MAIL_RCPT.len() + 12 + 100],
                codes: vec![250, 250, 250, 250, 250, 221],
                bodies: vec![bdat_40k.clone()],
            },
        ];
        for BigCase {
            input,
            cuts,
            codes,
            bodies,
        } in table
        {
            let test = run_both_ways(big_config(), &input, &cuts);
            test.assert_codes(&codes);
            let stored: Vec<&[u8]> = test.stored.iter().map(|stored| &stored.body[..]).collect();
            let expected: Vec<&[u8]> = bodies.iter().map(|body| &body[..]).collect();
            assert_eq!(stored, expected, "replies:\n{}", test.text());
            assert!(test.n_body_reads > 0, "never read into the body");
        }
    }

    #[test]
    fn small_bodies_keep_a_small_buffer() {
        let (body, wire) = filler(10, true);
        let input = script(&[EHLO_MAIL_RCPT, b"DATA\r\n", &wire, b"QUIT\r\n"]);
        let test = run_both_ways(big_config(), &input, &[]);
        test.assert_codes(&[250, 250, 250, 354, 250, 221]);
        assert_eq!(test.stored[0].body, body);
        assert_eq!(test.n_body_reads, 0);
        assert!(test.session.body.capacity_bytes() < BODY_READ_BYTES_MIN);
    }

    #[test]
    fn state_queries_follow_the_transaction() {
        let session_config = Rc::new(config());
        let mut session = Session::new(session_config, None);
        let mut out = Vec::new();
        let step = |session: &mut Session, input: &[u8], out: &mut Vec<u8>| {
            let (n_consumed, event) = session.advance(input, out);
            (
                n_consumed,
                event,
                session.in_transaction(),
                session.expects_data(),
            )
        };
        assert_eq!(
            step(&mut session, b"EHLO c\r\n", &mut out),
            (8, Event::NeedInput, false, false)
        );
        assert_eq!(
            step(&mut session, b"MAIL FROM:<>\r\nRCPT", &mut out),
            (14, Event::NeedInput, true, false)
        );
        assert_eq!(
            step(
                &mut session,
                b"RCPT TO:<u@example.test>\r\nDATA\r\nab\r\n.",
                &mut out
            ),
            (37, Event::NeedInput, true, true)
        );
        assert_eq!(
            step(&mut session, b"\r\nNOOP\r\n", &mut out),
            (2, Event::Deliver, true, false)
        );
        session.delivered(Delivery::Stored { queue_id: "q" }, &mut out);
        assert!(!session.in_transaction());
        assert_eq!(
            step(&mut session, b"NOOP\r\nQUIT\r\nNOOP\r\n", &mut out),
            (12, Event::Quit, false, false)
        );
    }

    #[test]
    fn too_many_errors_close_the_session() {
        let mut input = Vec::new();
        for _ in 0..ERRORS_MAX + 5 {
            input.extend_from_slice(b"BOGUS\r\n");
        }
        let test = run(&input);
        let mut expected = vec![500; ERRORS_MAX];
        expected.push(421);
        test.assert_codes(&expected);
        assert_eq!(test.ended, Some(Event::Close));
        assert!(
            test.text()
                .ends_with("421 4.7.0 Too many errors, closing connection\r\n")
        );

        // A stored message resets the count.
        let mut input = Vec::new();
        for _ in 0..ERRORS_MAX - 1 {
            input.extend_from_slice(b"BOGUS\r\n");
        }
        let first_half = input.clone();
        input.extend_from_slice(&script(&[EHLO_MAIL_RCPT, b"DATA\r\nx\r\n.\r\n"]));
        input.extend_from_slice(&first_half);
        let test = run(&input);
        assert_eq!(test.ended, None);
        assert_eq!(test.stored.len(), 1);
    }

    #[test]
    fn starttls_when_available() {
        let mut session_config = config();
        session_config.starttls_available = true;
        let mut test = TestSession::with_config(session_config, None);
        // STARTTLS before EHLO is refused; after it, anything pipelined behind STARTTLS
        // is thrown away (CVE-2011-0411), and the client must EHLO again.
        test.feed(
            b"STARTTLS\r\nEHLO c\r\nMAIL FROM:<>\r\nSTARTTLS\r\nMAIL FROM:<injected@c.example>\r\n",
        );
        assert_eq!(test.n_starttls, 1);
        assert!(test.pending.is_empty());
        test.assert_codes(&[503, 250, 250, 220]);
        assert!(test.text().contains("250-STARTTLS\r\n"));
        assert!(test.text().contains("220 2.0.0 Ready to start TLS\r\n"));
        assert!(test.session.tls_active());
        test.feed(b"MAIL FROM:<>\r\nEHLO c\r\nSTARTTLS\r\n");
        test.feed(b"MAIL FROM:<a@c.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\nx\r\n.\r\n");
        test.assert_codes(&[503, 250, 250, 220, 503, 250, 503, 250, 250, 354, 250]);
        // The second EHLO reply no longer offers STARTTLS.
        assert_eq!(test.text().matches("250-STARTTLS").count(), 1);
        assert_eq!(
            test.stored[0].received,
            "Received: from c by mx.example.test (Mayfly) with ESMTPS (version=TLSv1.3 cipher=TLS_AES_128_GCM_SHA256)\r\n\
             \tid q1 for <u@example.test>; Fri, 27 Nov 2026 22:15:44 +0000\r\n"
        );
    }

    #[test]
    fn tls_required_refuses_mail_until_starttls() {
        let mut session_config = config();
        session_config.starttls_available = true;
        session_config.tls_required = true;
        let mut test = TestSession::with_config(session_config, None);
        // Before TLS: EHLO still offers STARTTLS, MAIL, RCPT, DATA and BDAT are refused
        // with 530 (RFC 3207 4; the BDAT chunk is still consumed), NOOP and RSET work.
        test.feed(
            b"EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\nBDAT 3\r\nabcNOOP\r\nRSET\r\n",
        );
        test.assert_codes(&[250, 530, 530, 530, 530, 250, 250]);
        assert!(test.text().contains("250-STARTTLS\r\n"));
        assert!(
            test.text()
                .contains("530 5.7.0 Must issue a STARTTLS command first\r\n")
        );
        assert!(test.stored.is_empty());
        // After STARTTLS (and the EHLO it requires again) the same transaction goes through.
        test.feed(b"STARTTLS\r\n");
        test.feed(
            b"EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\nx\r\n.\r\n",
        );
        test.assert_codes(&[
            250, 530, 530, 530, 530, 250, 250, 220, 250, 250, 250, 354, 250,
        ]);
        assert_eq!(test.stored.len(), 1);
        assert!(
            test.stored[0]
                .received
                .contains("with ESMTPS (version=TLSv1.3")
        );

        // Without tls_required, MAIL in plaintext is fine even when STARTTLS is offered.
        let mut session_config = config();
        session_config.starttls_available = true;
        let mut test = TestSession::with_config(session_config, None);
        test.feed(b"EHLO c\r\nMAIL FROM:<a@c.example>\r\n");
        test.assert_codes(&[250, 250]);
    }

    #[test]
    fn received_header_shapes() {
        let with_ip = |ip: IpAddr, helo: &[u8]| {
            let mut test = TestSession::with_config(config(), Some(ip));
            test.feed(&script(&[helo, b"MAIL FROM:<a@c.example>\r\nRCPT TO:<u@example.test>\r\nRCPT TO:<v@example.test>\r\nDATA\r\nx\r\n.\r\n"]));
            test.stored[0].received.clone()
        };
        assert_eq!(
            with_ip(
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                b"EHLO client.example\r\n"
            ),
            "Received: from client.example ([192.0.2.1]) by mx.example.test (Mayfly) with ESMTP\r\n\
             \tid q1; Fri, 27 Nov 2026 22:15:44 +0000\r\n"
        );
        assert_eq!(
            with_ip(
                IpAddr::V6("2001:db8::1".parse::<Ipv6Addr>().expect("literal")),
                b"HELO c\r\n"
            ),
            "Received: from c ([IPv6:2001:db8::1]) by mx.example.test (Mayfly) with SMTP\r\n\
             \tid q1; Fri, 27 Nov 2026 22:15:44 +0000\r\n"
        );
        // An IPv4-mapped address (dual-stack listener) is shown as IPv4; parentheses in
        // the HELO name cannot open a comment.
        assert_eq!(
            with_ip(
                IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped()),
                b"EHLO (evil)\r\n"
            ),
            "Received: from _evil_ ([192.0.2.7]) by mx.example.test (Mayfly) with ESMTP\r\n\
             \tid q1; Fri, 27 Nov 2026 22:15:44 +0000\r\n"
        );
    }

    #[test]
    fn received_header_lines_stay_short_in_the_worst_case() {
        let mut session_config = config();
        session_config.hostname = "h".repeat(2000);
        session_config.domains = DomainPolicy::new::<&str>(&[]);
        let session_config = Rc::new(session_config);
        let mut session = Session::new(
            session_config,
            Some(IpAddr::V6(Ipv6Addr::new(0xffff, 1, 2, 3, 4, 5, 6, 7))),
        );
        let mut out = Vec::new();
        session.tls_started(&"v".repeat(500), &"c".repeat(500));
        let helo = format!("EHLO {}\r\n", "e".repeat(parser::HELO_BYTES_MAX));
        // The longest path: 64 + 1 + 189 + 2 = 256 octets.
        let rcpt = format!(
            "RCPT TO:<{}@{}.{}.{}.d>\r\n",
            "l".repeat(64),
            "d".repeat(63),
            "d".repeat(63),
            "d".repeat(59)
        );
        let input = script(&[
            helo.as_bytes(),
            b"MAIL FROM:<> SMTPUTF8\r\n",
            rcpt.as_bytes(),
            b"DATA\r\n.\r\n",
        ]);
        let (_, event) = session.advance(&input, &mut out);
        assert_eq!(event, Event::Deliver, "{}", String::from_utf8_lossy(&out));
        let mut header = Vec::new();
        session.write_received_header(&"i".repeat(500), SystemTime::now(), &mut header);
        let header = String::from_utf8(header).expect("UTF-8");
        assert!(header.ends_with("\r\n"));
        for line in header.split_terminator("\r\n") {
            assert!(
                line.len() <= RECEIVED_LINE_BYTES_MAX,
                "{} octets",
                line.len()
            );
            assert!(!line.contains('\r') && !line.contains('\n'));
        }
        assert!(header.contains(" with UTF8SMTPS (version="));
    }

    #[test]
    fn received_date_is_rfc5322_even_for_odd_clocks() {
        for (now, expected) in [
            (
                UNIX_EPOCH + Duration::from_secs(NOW_UNIX_SECS),
                "Fri, 27 Nov 2026 22:15:44 +0000",
            ),
            (UNIX_EPOCH, "Thu, 01 Jan 1970 00:00:00 +0000"),
            (
                UNIX_EPOCH - Duration::from_secs(86_400),
                "Wed, 31 Dec 1969 00:00:00 +0000",
            ),
            // Outside what RFC 5322 can write: the epoch, not a panic.
            (
                UNIX_EPOCH + Duration::from_secs(400_000_000_000),
                "Thu, 01 Jan 1970 00:00:00 +0000",
            ),
        ] {
            let mut out = b"x".to_vec();
            write_date(now, &mut out);
            assert_eq!(String::from_utf8_lossy(&out[1..]), expected);
        }
    }

    #[test]
    fn every_split_gives_the_same_replies_and_bodies() {
        let scripts: Vec<Vec<u8>> = vec![
            script(&[EHLO_MAIL_RCPT, b"DATA\r\n..\r\n...x\r\nbody\r\n.\r\nQUIT\r\n"]),
            script(&[EHLO_MAIL_RCPT, b"DATA\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<v@example.test>\r\nBDAT 5\r\n\r\n.\r\nBDAT 2 LAST\r\n.\rNOOP\r\n"]),
            script(&[b"EHLO c\r\nMAIL FROM:<a@c.example> SIZE=9999\r\nBDAT 3\r\nabcRSET\r\nBOGUS\r\nVRFY x\r\nHELP\r\n"]),
            script(&[EHLO_MAIL_RCPT, b"DATA\r\nline\n.\nstill body\r\n.\r\nNOOP\r\n"]),
        ];
        for script in scripts {
            assert_chunking_invariant(&script);
        }
    }

    #[test]
    fn fuzz_corpus_never_panics() {
        // Inputs that once worried us, or that a fuzzer finds first.
        let corpus: &[&[u8]] = &[
            b"",
            b"\r",
            b"\n",
            b"\r\n",
            b"\r\r\n\n",
            b"BDAT\r\n",
            b"BDAT 18446744073709551615 LAST\r\n",
            b"BDAT 18446744073709551615\r\nabc",
            b"MAIL FROM:<\"\\",
            b"MAIL FROM:<\"\\\xff\"@x>\r\n",
            b"MAIL FROM:<@>\r\n",
            b"MAIL FROM:<@,@:>\r\n",
            b"MAIL FROM:<a@[]>\r\n",
            b"MAIL FROM:<a@[IPv6:]>\r\n",
            b"MAIL FROM:<a@[:]>\r\n",
            b"RCPT TO:<\xc3\xa9@\xc3\xa9>\r\n",
            b"EHLO c\r\nMAIL FROM:<> SIZE=\r\n",
            b"EHLO c\r\nMAIL FROM:<>  \xff=\xff\r\n",
            b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<postmaster>\r\nDATA\r\n.",
            b"STARTTLS\r\nSTARTTLS\r\n",
            b"\x00\x00\x00\r\n",
        ];
        for input in corpus {
            let whole = run_in_pieces(input, &[]);
            let every_byte: Vec<usize> = (1..input.len()).collect();
            assert_eq!(run_in_pieces(input, &every_byte), whole);
        }
    }

    /// Renders a random body as DATA lines with dot-stuffing.
    fn stuffed(body_lines: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>) {
        let mut original = Vec::new();
        let mut wire = Vec::new();
        for line in body_lines {
            original.extend_from_slice(line);
            original.extend_from_slice(b"\r\n");
            if line.first() == Some(&b'.') {
                wire.push(b'.');
            }
            wire.extend_from_slice(line);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b".\r\n");
        (original, wire)
    }

    fn body_lines() -> impl Strategy<Value = Vec<Vec<u8>>> {
        proptest::collection::vec(
            proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'x'), any::<u8>()], 0..30)
                .prop_map(|line| {
                    line.into_iter()
                        .filter(|&b| b != b'\r' && b != b'\n')
                        .collect()
                }),
            0..40,
        )
    }

    /// Pieces of SMTP streams, so random streams get past the command words.
    const STREAM_PIECES: &[&[u8]] = &[
        b"EHLO c\r\n",
        b"MAIL FROM:<a@c.example>\r\n",
        b"RCPT TO:<u@example.test>\r\n",
        b"DATA\r\n",
        b"BDAT 3\r\n",
        b"BDAT 2 LAST\r\n",
        b".",
        b"\r\n",
        b"\r",
        b"\n",
        b"x",
        b"RSET\r\n",
        b"STARTTLS\r\n",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..700), 0..8),
        ) {
            let mut test = TestSession::new();
            for chunk in &chunks {
                // `feed` asserts the consumed count and the remainder bound.
                test.feed(chunk);
            }
        }

        #[test]
        fn smtp_alphabet_streams_never_panic(
            pieces in proptest::collection::vec(proptest::sample::select(STREAM_PIECES), 0..40),
            cuts in proptest::collection::vec(0usize..400, 0..6),
        ) {
            let input = pieces.concat();
            let mut cuts = cuts;
            cuts.sort_unstable();
            let whole = run_in_pieces(&input, &[]);
            prop_assert_eq!(run_in_pieces(&input, &cuts), whole);
        }

        #[test]
        fn stuffed_body_comes_back_identical_through_data(lines in body_lines(), cuts in proptest::collection::vec(0usize..1500, 0..8)) {
            let (original, wire) = stuffed(&lines);
            let input = script(&[EHLO_MAIL_RCPT, b"DATA\r\n", &wire, b"QUIT\r\n"]);
            let mut cuts = cuts;
            cuts.sort_unstable();
            let (out, stored, ended) = run_in_pieces(&input, &cuts);
            prop_assert_eq!(ended, Some(Event::Quit));
            if original.len() <= MESSAGE_BYTES_MAX {
                prop_assert_eq!(reply_codes(&out), vec![220, 250, 250, 250, 354, 250, 221]);
                prop_assert_eq!(stored.len(), 1);
                prop_assert_eq!(&stored[0].body, &original);
            } else {
                prop_assert_eq!(reply_codes(&out), vec![220, 250, 250, 250, 354, 552, 221]);
                prop_assert!(stored.is_empty());
            }
        }

        #[test]
        fn body_comes_back_identical_through_bdat(
            body in proptest::collection::vec(any::<u8>(), 0..MESSAGE_BYTES_MAX),
            chunk_bytes in 1usize..700,
            cuts in proptest::collection::vec(0usize..2500, 0..8),
        ) {
            let mut input = EHLO_MAIL_RCPT.to_vec();
            let chunks: Vec<&[u8]> = body.chunks(chunk_bytes).collect();
            for (chunk_idx, chunk) in chunks.iter().enumerate() {
                let last = if chunk_idx + 1 == chunks.len() { " LAST" } else { "" };
                input.extend_from_slice(format!("BDAT {}{last}\r\n", chunk.len()).as_bytes());
                input.extend_from_slice(chunk);
            }
            if chunks.is_empty() {
                input.extend_from_slice(b"BDAT 0 LAST\r\n");
            }
            let mut cuts = cuts;
            cuts.sort_unstable();
            let (out, stored, _) = run_in_pieces(&input, &cuts);
            let mut expected = vec![220, 250, 250, 250];
            expected.extend(std::iter::repeat_n(250, chunks.len().max(1)));
            prop_assert_eq!(reply_codes(&out), expected);
            prop_assert_eq!(stored.len(), 1);
            prop_assert_eq!(&stored[0].body, &body);
        }

        /// Reading big bodies straight into the body buffer gives exactly what the copying
        /// path gives, whatever the body holds, whatever follows it, however it is cut.
        #[test]
        fn reading_into_the_body_matches_the_copying_path(
            n_filler_lines in 100usize..700,
            dotted in any::<bool>(),
            lines in body_lines(),
            tail in proptest::collection::vec(proptest::sample::select(STREAM_PIECES), 0..12),
            bdat_bytes in 0usize..40_000,
            cuts in proptest::collection::vec(0usize..100_000, 0..6),
        ) {
            let (_, filler_wire) = filler(n_filler_lines, dotted);
            let (_, lines_wire) = stuffed(&lines);
            let mut input = script(&[EHLO_MAIL_RCPT, b"DATA\r\n", &filler_wire]);
            // `stuffed` ends with the terminator; the filler's is dropped so both are one body.
            input.truncate(input.len() - 3);
            input.extend_from_slice(&lines_wire);
            input.extend_from_slice(b"MAIL FROM:<>\r\nRCPT TO:<v@example.test>\r\n");
            input.extend_from_slice(format!("BDAT {bdat_bytes} LAST\r\n").as_bytes());
            input.extend(std::iter::repeat_n(b'.', bdat_bytes));
            input.extend_from_slice(&tail.concat());
            let mut cuts = cuts;
            cuts.sort_unstable();
            run_both_ways(big_config(), &input, &cuts);
        }

        /// Every command line gets exactly one reply, in order, however the stream is cut.
        #[test]
        fn one_reply_per_command(
            lines in proptest::collection::vec(
                prop_oneof![
                    Just("EHLO c"), Just("HELO c"), Just("MAIL FROM:<a@c.example>"), Just("MAIL FROM:<>"),
                    Just("RCPT TO:<u@example.test>"), Just("RCPT TO:<u@other.example>"), Just("RCPT TO:<postmaster>"),
                    Just("RSET"), Just("NOOP"), Just("VRFY u"), Just("HELP"), Just("BOGUS"), Just("MAIL FROM:x"),
                ],
                0..(ERRORS_MAX - 1),
            ),
            cuts in proptest::collection::vec(0usize..600, 0..6),
        ) {
            let input: Vec<u8> = lines.iter().flat_map(|line| format!("{line}\r\n").into_bytes()).collect();
            let mut cuts = cuts;
            cuts.sort_unstable();
            let (out, _, ended) = run_in_pieces(&input, &cuts);
            prop_assert_eq!(ended, None);
            prop_assert_eq!(reply_codes(&out).len(), lines.len() + 1);
        }
    }
}
