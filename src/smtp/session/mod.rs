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
//! between transactions (only past a size worth giving back: `BODY_CAPACITY_KEPT_BYTES`,
//! `RECIPIENTS_TEXT_KEPT_BYTES`). The exceptions are rare: a recipient that is not
//! lowercase ASCII gets its inbox key built, and `<postmaster>` its address.
//!
//! The Received header is written in `received.rs`, the recipient list kept in
//! `recipients.rs`; the tests (no sockets) are in `tests/`, one file per topic.

mod received;
mod recipients;
mod transaction;

pub use transaction::Transaction;

use std::net::IpAddr;
use std::rc::Rc;

use memchr::memchr;

use crate::address::{AddressError, InboxKey};
use crate::config::DomainPolicy;
use crate::smtp::data::{BodyBuffer, BodyOut, DataScanner, Refusal};
use crate::smtp::parser::{self, COMMAND_LINE_BYTES_MAX, Command, Error, ForwardPath, MailParams};
use crate::smtp::reply;
use crate::smtp::session::received::{QUEUE_ID_BYTES_MAX, push_token, truncate_str};
use crate::smtp::session::recipients::{Added, Recipients};

pub use received::RECEIVED_LINE_BYTES_MAX;
/// The most bytes our Received header takes: two lines of at most
/// `RECEIVED_LINE_BYTES_MAX` octets each, with their CRLFs.
pub const RECEIVED_HEADER_BYTES_MAX: usize = 2 * (RECEIVED_LINE_BYTES_MAX + 2);
pub use recipients::{RECIPIENTS_TEXT_KEPT_BYTES, SPELLINGS_PER_INBOX_MAX};

/// Errors a client may make before it is disconnected (Postfix's `smtpd_hard_error_limit`).
/// A stored message resets the count.
pub const ERRORS_MAX: usize = 20;
/// The most bytes `advance` ever leaves unconsumed (a partial command line).
pub const UNCONSUMED_BYTES_MAX: usize = COMMAND_LINE_BYTES_MAX - 1;
/// After a larger message the body buffer is shrunk back to this, so an idle session does
/// not keep `message_bytes_max` of memory. The session does it itself whenever a
/// transaction ends; `Session::shrink_body_buffer` is for callers that want less.
pub const BODY_CAPACITY_KEPT_BYTES: usize = 256 * 1024;
/// Most bytes `body_read_buffer` offers for one read. Big reads matter for big messages:
/// each read is a syscall, and 16 KiB reads (the socket loop's read buffer) made a 100 KiB
/// message cost seven.
pub const BODY_READ_BYTES_MAX: usize = 128 * 1024;
/// Least room worth reading a body into directly; with less, the caller reads into its own
/// buffer and `advance` copies. Small messages take that path, so a session that only ever
/// sees small messages keeps a small body buffer. Also the first room a body gets when the
/// buffer must grow for it: after that, new room grows with what the client sent (see
/// `Session::body_read_buffer`).
pub const BODY_READ_BYTES_MIN: usize = 16 * 1024;

/// What a session needs to know about the server; shared by all sessions of a core.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our name in the banner, the EHLO reply and the Received header.
    pub hostname: String,
    /// Largest body accepted (after dot-unstuffing); advertised as `SIZE`.
    /// Larger bodies get `552 5.3.4`.
    pub message_bytes_max: usize,
    /// Inboxes per transaction; RCPTs naming more get `452 4.5.3`. Spellings of one inbox
    /// (`A@x`, `a@x`) count once (see `recipients.rs`).
    pub recipients_max: usize,
    /// Recipient domains we accept mail for; others get `550 5.7.1` (we never relay).
    /// `<postmaster>` is delivered to the postmaster of its first domain.
    pub domains: DomainPolicy,
    /// Whether STARTTLS is offered: EHLO advertises it and STARTTLS returns `Event::StartTls`.
    pub starttls_available: bool,
    /// Whether MAIL is refused with `530 5.7.0` until TLS is active (RFC 3207 4).
    pub tls_required: bool,
    /// The address partitions this node serves (`--owned-partitions`); RCPT for another
    /// gets `450 4.1.1`, so a relay with an outdated partition map retries instead of
    /// bouncing.
    pub owned_partitions: crate::partition::PartitionSet,
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
    /// When set, MAIL gets this reply and the session closes (a client over its message
    /// rate; the socket loop decides, see `refuse_mail`).
    mail_refusal: Option<&'static [u8]>,
    /// `Event::Deliver` was returned and `delivered` not yet called.
    awaiting_delivery: bool,
    /// The transaction: MAIL was accepted and the message not yet finished or reset.
    in_mail: bool,
    /// MAIL had SMTPUTF8: non-ASCII addresses are allowed.
    smtputf8: bool,
    /// A BDAT chunk was accepted in this transaction, so DATA is not allowed (RFC 3030).
    used_bdat: bool,
    mail_from: String,
    /// Accepted recipients: every spelling, and how many inboxes they name.
    recipients: Recipients,
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
            mail_refusal: None,
            awaiting_delivery: false,
            in_mail: false,
            smtputf8: false,
            used_bdat: false,
            mail_from: String::new(),
            recipients: Recipients::default(),
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
        Transaction::from_parts(
            &self.mail_from,
            self.recipients.spellings_text(),
            self.recipients.n_spellings(),
            self.body.as_slice(),
        )
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

    /// Makes every following MAIL get `refusal` (a 421 line) and close the session, or
    /// lifts that with `None`. The socket loop uses it for the per-client message rate,
    /// which the session cannot see.
    pub fn refuse_mail(&mut self, refusal: Option<&'static [u8]>) {
        self.mail_refusal = refusal;
    }

    /// The EHLO/HELO name the client gave ("" before EHLO).
    pub fn helo(&self) -> &str {
        &self.helo
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
    /// Memory follows what the client has sent, not what it announced. Room the buffer
    /// already holds is offered when it is worth a read (`BODY_READ_BYTES_MIN`), or when
    /// it is what is left of the first `BODY_READ_BYTES_MIN` the body got, so a short
    /// first read does not double it. New room is at most as much as the body so far (at
    /// least `BODY_READ_BYTES_MIN`), and the buffer at least doubles when it grows, so it
    /// is not reallocated once per read. So a `BDAT 4000000` followed by one byte costs
    /// 16 KiB, not 128 KiB, and a client must send N bytes to make the session hold more
    /// than 2N + 32 KiB. A 100 KiB DATA body still takes few reads: about 32 KiB through
    /// the caller's read buffer, then 32 KiB and the rest straight into the body.
    ///
    /// After reading into it, call `body_received` with the byte count; reading nothing
    /// into it and not calling `body_received` is harmless.
    pub fn body_read_buffer(&mut self) -> Option<&mut [u8]> {
        let (bytes_want, may_grow) = match self.mode {
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
        let body_bytes = self.body.len();
        let room_bytes = self.body.room_bytes();
        let held_room_worth_a_read = room_bytes >= BODY_READ_BYTES_MIN
            || (body_bytes < BODY_READ_BYTES_MIN && body_bytes + room_bytes >= BODY_READ_BYTES_MIN);
        let message_bytes_max = self.config.message_bytes_max;
        if held_room_worth_a_read {
            // Too little left of the chunk or the limit: the caller's read buffer takes it.
            if bytes_want.min(message_bytes_max.saturating_sub(body_bytes)) < BODY_READ_BYTES_MIN {
                return None;
            }
            return self.body.spare_mut(1, bytes_want, message_bytes_max, false);
        }
        if !may_grow {
            return None;
        }
        let bytes_want = bytes_want.min(body_bytes.max(BODY_READ_BYTES_MIN));
        self.body
            .spare_mut(BODY_READ_BYTES_MIN, bytes_want, message_bytes_max, true)
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
        if let Some(refusal) = self.mail_refusal {
            // A 421 closes the connection (RFC 5321 3.8): the client comes back later.
            out.extend_from_slice(refusal);
            return Some(Event::Close);
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
        // The parser lets UTF-8 through whole, C1 controls (U+0080..U+009F) included; a
        // stored envelope with them would garble logs and the JSON readers get.
        let has_control = if reverse_path.is_ascii() {
            reverse_path.bytes().any(|b| b.is_ascii_control())
        } else {
            reverse_path.chars().any(char::is_control)
        };
        if has_control {
            return self.reply_error(reply::SENDER_CONTROL_CHARACTER, out);
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
        // RFC 5321 4.5.1: always accepted, whatever our domain policy says. It goes to the
        // postmaster of a domain we serve, so it can be read like any other inbox; only a
        // catch-all server (which serves every domain) uses its own hostname.
        let postmaster;
        let mailbox = match forward_path {
            ForwardPath::Postmaster => {
                let domain = self.config.domains.first().unwrap_or(&self.config.hostname);
                postmaster = format!("postmaster@{domain}");
                postmaster.as_str()
            }
            ForwardPath::Mailbox(mailbox) => {
                if !self.smtputf8 && !mailbox.is_ascii() {
                    return self.reply_error(reply::NEEDS_SMTPUTF8, out);
                }
                mailbox
            }
        };
        // The same rule HTTP and the store use, so whatever is accepted here can be read.
        let key = match InboxKey::new(mailbox) {
            Ok(key) => key,
            Err(AddressError::ControlCharacter) => {
                return self.reply_error(reply::RECIPIENT_CONTROL_CHARACTER, out);
            }
            Err(AddressError::BadDomain) => {
                return self.reply_error(reply::RECIPIENT_BAD_DOMAIN, out);
            }
        };
        // The key's domain is lowercase ASCII (punycode), the form domains are configured in.
        let domain = key.domain().unwrap_or_default();
        if matches!(forward_path, ForwardPath::Mailbox(_)) && !self.config.domains.accepts(domain) {
            return self.reply_error(reply::RELAY_DENIED, out);
        }
        if !self.config.owned_partitions.is_all()
            && !self
                .config
                .owned_partitions
                .contains(crate::partition::Partition::of(&key))
        {
            return self.reply_error(reply::PARTITION_NOT_SERVED, out);
        }
        let added = self
            .recipients
            .add(mailbox, key.as_str(), self.config.recipients_max);
        out.extend_from_slice(match added {
            Added::Listed | Added::AlreadyCovered => reply::RCPT_OK,
            Added::TooManyInboxes => reply::TOO_MANY_RECIPIENTS,
        });
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
        if self.recipients.n_spellings() == 0 {
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
        } else if self.recipients.n_spellings() == 0 {
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
        crate::alloc::wipe_str_if_on(&mut self.mail_from);
        self.recipients.clear();
        // Wipes what the message wrote; freed memory is wiped by the allocator.
        self.body.clear();
        self.body.shrink_to(BODY_CAPACITY_KEPT_BYTES);
    }
}

#[cfg(test)]
mod tests;
