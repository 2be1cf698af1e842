//! The POP3 session state machine: (state, input bytes) -> replies and requests to the
//! caller. RFC 1939, with CAPA, response codes and pipelining (RFC 2449), STLS
//! (RFC 2595), AUTH PLAIN (RFC 5034, RFC 4616) and the `[AUTH]`/`[SYS/TEMP]` codes
//! (RFC 3206).
//!
//! No IO, no executor, never panics on input. The socket loop reads into a buffer,
//! calls `Session::advance`, writes what the session appended to `out`, and acts on the
//! returned `Event`; where the event needs an answer (a login, a message's bytes, the
//! deletions at QUIT) it calls the matching method, which writes the reply, and then
//! `advance` again on the rest of the input. The session never sees the store: it
//! holds the `Mailbox` snapshot taken at login and names messages by `MessageId`.
//!
//! # The `advance` contract
//!
//! `advance(input, out)` returns `(consumed, event)`; the caller drops the first
//! `consumed` bytes of `input` and keeps the rest for the next call (with more bytes
//! appended).
//!
//! - Command lines are executed one by one, in order, as long as complete lines remain
//!   and no command needs the caller (RFC 2449 PIPELINING). A line ends at LF, with or
//!   without a CR before it. A *partial* line at the end of `input` is left unconsumed,
//!   and it is always shorter than `COMMAND_LINE_BYTES_MAX`: once that many bytes
//!   without an LF are in hand the line is over-long, `advance` consumes and discards
//!   them (and everything up to the line's LF in later calls) and answers
//!   `-ERR line too long` when the LF comes; then the session goes on. So the
//!   unconsumed rest after *any* call is at most `UNCONSUMED_BYTES_MAX` bytes.
//! - `Event::NeedInput`: everything usable was consumed; flush `out`, read more.
//!   `Event::Login`: check the credentials, call `logged_in`. `Event::Retrieve`: fetch
//!   the message's bytes, call `retrieved`. `Event::Update`: delete the messages, call
//!   `updated`. Each of these consumed exactly the line that asked, so pipelined
//!   commands after it wait in the rest of `input`. If the caller calls `advance`
//!   instead of the method, the request is answered as a temporary failure first.
//!   `Event::StartTls`: flush, drop the unconsumed rest (commands sent before the
//!   handshake must not count after it: CVE-2011-0411; the session does not drop them
//!   itself, since only the caller holds them), handshake, then call `tls_started`.
//!   `Event::Quit` / `Event::Close`: flush and close. Once the session has ended
//!   (QUIT answered, `updated` called, too many errors or refused logins), `advance`
//!   consumes nothing and returns `Quit` or `Close` again, so a loop that always calls
//!   `advance` after a method closes the connection.
//!
//! Command parsing is in `command.rs`; the commands of each state in
//! `authorization.rs` and `transaction.rs`; the maildrop and its deletion marks in
//! `maildrop.rs`; SASL PLAIN in `sasl.rs`; every reply line in `reply.rs`. The tests
//! (no sockets) are in `tests/`, one file per topic.

mod authorization;
mod command;
mod maildrop;
pub mod reply;
mod sasl;
mod transaction;

use std::fmt;
use std::rc::Rc;

use memchr::memchr;

use crate::mailbox::Mailbox;
use crate::pop3::command::{Command, Keyword, Valid};
use crate::pop3::maildrop::Maildrop;
use crate::pop3::transaction::top_part;
use crate::smtp::data::dot_stuff;
use crate::store::MessageId;

/// Longest command line, line end included. RFC 2449 4 allows 255 octets, but an
/// `AUTH PLAIN` initial response or SASL response line for a 254-octet address with a
/// long token is about 700 octets of base64; 1024 leaves room and still bounds what a
/// client can make us hold.
pub const COMMAND_LINE_BYTES_MAX: usize = 1024;
/// The most bytes `advance` ever leaves unconsumed (a partial command line).
pub const UNCONSUMED_BYTES_MAX: usize = COMMAND_LINE_BYTES_MAX - 1;
/// Errors a client may make before it is disconnected. A successful login resets the
/// count: a client that got in is not a bad client.
pub const ERRORS_MAX: usize = 10;
/// Logins the caller may refuse before the session closes, so one connection cannot
/// try passwords without end. Refusals of every kind count: each cost the caller a look-up.
pub const LOGINS_REFUSED_MAX: usize = 3;

/// What a session needs to know about the server; shared by all sessions of a core.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our name in the greeting and the QUIT reply.
    pub hostname: String,
    /// Whether STLS is offered: CAPA lists it and STLS returns `Event::StartTls`.
    pub starttls_available: bool,
    /// Whether USER, PASS and AUTH are refused until TLS is active (RFC 2595 4); CAPA
    /// then does not list USER and SASL.
    pub tls_required: bool,
}

/// What the caller must do after `Session::advance`.
#[derive(Clone, PartialEq, Eq)]
pub enum Event {
    /// All complete command lines were executed; flush `out` and read more.
    NeedInput,
    /// USER and PASS, or AUTH PLAIN, gave credentials: check them and call `logged_in`.
    /// `user` is the inbox key (`InboxKey`) of the address the client named, so every
    /// spelling of one address logs into one inbox. `Debug` does not show `password`.
    Login { user: String, password: String },
    /// RETR or TOP: fetch the message's bytes and call `retrieved`. `top_lines` is TOP's
    /// count of body lines (the session cuts the message, the caller fetches it whole);
    /// `mark_seen` is true for RETR, which reads the whole message.
    Retrieve {
        id: MessageId,
        top_lines: Option<usize>,
        mark_seen: bool,
    },
    /// QUIT with messages marked by DELE: delete them (RFC 1939 6, the UPDATE state)
    /// and call `updated`. Never empty: QUIT without marks is `Quit`.
    Update { delete: Vec<MessageId> },
    /// STLS was answered `+OK`; flush, discard unconsumed input, upgrade, then call
    /// `tls_started`.
    StartTls,
    /// QUIT was answered; flush and close.
    Quit,
    /// The session gave up on the client (too many errors or refused logins, the reply
    /// already written); flush and close.
    Close,
}

/// Why the caller refused a login; each has its own reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    /// Wrong credentials, or no such inbox: `-ERR [AUTH] Invalid login`.
    Invalid,
    /// Credentials cannot be checked now (a rate limit, the store restoring):
    /// `-ERR [SYS/TEMP]`, so the client tries again later rather than asking its user
    /// for a new password.
    TryLater,
    /// Another session holds this maildrop (RFC 1939 requires an exclusive lock):
    /// `-ERR [IN-USE]`.
    InUse,
}

/// One POP3 session's protocol state. Create one per connection.
#[derive(Debug)]
pub struct Session {
    config: Rc<SessionConfig>,
    tls_active: bool,
    state: State,
    /// The snapshot taken at login; empty before.
    maildrop: Maildrop,
    /// The inbox key logged in, once `logged_in` accepted it.
    user: Option<String>,
    /// Inside a command line that is already known to be over-long: bytes up to its LF
    /// are discarded.
    discarding_line: bool,
    /// Errors so far; at `ERRORS_MAX` the session closes.
    n_errors: usize,
    /// Logins the caller refused; at `LOGINS_REFUSED_MAX` the session closes.
    n_logins_refused: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// RFC 1939 AUTHORIZATION, with the inbox key USER named, if it did.
    Authorization { user: Option<String> },
    /// `AUTH PLAIN` sent `+ `; the next line is the client's response or `*`.
    SaslResponse,
    /// `Event::Login` was returned; `logged_in` answers it.
    LoginPending { user: String },
    /// RFC 1939 TRANSACTION.
    Transaction,
    /// `Event::Retrieve` was returned for message `number`; `retrieved` answers it.
    RetrievePending {
        number: usize,
        body_lines: Option<usize>,
    },
    /// `Event::Update` was returned; `updated` answers it.
    UpdatePending,
    /// The session is over; `advance` returns this event (`Quit` or `Close`) again.
    Ended(Event),
}

impl Session {
    /// A new session, before the greeting. `tls_active` is true on a port where TLS
    /// starts at connect (995).
    pub fn new(config: Rc<SessionConfig>, tls_active: bool) -> Session {
        Session {
            config,
            tls_active,
            state: State::Authorization { user: None },
            maildrop: Maildrop::default(),
            user: None,
            discarding_line: false,
            n_errors: 0,
            n_logins_refused: 0,
        }
    }

    /// Writes the greeting: `+OK <hostname> Mayfly POP3 ready`.
    pub fn greeting(&self, out: &mut Vec<u8>) {
        reply::greeting(&self.config.hostname, out);
    }

    /// Consumes `input`, appends replies to `out`, and says what the caller must do
    /// next. See the module documentation for the exact contract; in short, the
    /// unconsumed rest is at most `UNCONSUMED_BYTES_MAX` bytes of one partial line.
    pub fn advance(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Event) {
        self.answer_pending_request(out);
        if let State::Ended(event) = &self.state {
            return (0, event.clone());
        }
        let mut consumed = 0;
        loop {
            // Each step consumes bytes or returns an event, so the loop ends.
            let (n_bytes, event) = self.advance_line(&input[consumed..], out);
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

    /// Answers the last `Event::Login`. `Ok` enters TRANSACTION with `mailbox` as the
    /// maildrop: its entries are messages 1..n, in order, for the rest of the session.
    /// The third refusal (`LOGINS_REFUSED_MAX`) ends the session: the next `advance`
    /// returns `Event::Close`. Calling it with no login pending is a caller bug: debug
    /// builds assert, release builds do nothing.
    pub fn logged_in(&mut self, result: Result<Mailbox, LoginRefused>, out: &mut Vec<u8>) {
        debug_assert!(matches!(self.state, State::LoginPending { .. }));
        let State::LoginPending { user } = &mut self.state else {
            return;
        };
        let user = std::mem::take(user);
        match result {
            Ok(mailbox) => {
                self.maildrop = Maildrop::new(mailbox);
                let (n_messages, total_bytes) = self.maildrop.live_totals();
                reply::logged_in(n_messages, total_bytes, out);
                self.user = Some(user);
                self.state = State::Transaction;
                self.n_errors = 0;
            }
            Err(refused) => {
                out.extend_from_slice(match refused {
                    LoginRefused::Invalid => reply::LOGIN_INVALID,
                    LoginRefused::TryLater => reply::LOGIN_TRY_LATER,
                    LoginRefused::InUse => reply::LOGIN_IN_USE,
                });
                self.n_logins_refused += 1;
                self.state = if self.n_logins_refused >= LOGINS_REFUSED_MAX {
                    State::Ended(Event::Close)
                } else {
                    State::Authorization { user: None }
                };
            }
        }
    }

    /// Answers the last `Event::Retrieve` with the stored message, or `None` when it
    /// expired or was deleted since login. The message goes out dot-stuffed, ending
    /// with a CRLF (added if it lacks one) and the `.` line; for TOP, only its header,
    /// the blank line and the first `top_lines` body lines. With no retrieval pending:
    /// a caller bug, as for `logged_in`.
    pub fn retrieved(&mut self, message: Option<&[u8]>, out: &mut Vec<u8>) {
        debug_assert!(matches!(self.state, State::RetrievePending { .. }));
        let State::RetrievePending { number, body_lines } = self.state else {
            return;
        };
        self.state = State::Transaction;
        let Some(message) = message else {
            reply::gone(number, out);
            return;
        };
        let sent = match body_lines {
            Some(body_lines) => top_part(message, body_lines),
            None => message,
        };
        reply::retrieved(sent.len(), out);
        dot_stuff(sent, out);
    }

    /// Answers the last `Event::Update` with how many messages were deleted, or `Err`
    /// when deleting failed and none was (RFC 1939 6). The session ends either way:
    /// close after flushing (the next `advance` returns `Event::Quit`). With no update
    /// pending: a caller bug, as for `logged_in`.
    pub fn updated(&mut self, result: Result<usize, ()>, out: &mut Vec<u8>) {
        debug_assert_eq!(self.state, State::UpdatePending);
        if self.state != State::UpdatePending {
            return;
        }
        match result {
            Ok(n_deleted) => reply::updated(&self.config.hostname, n_deleted, out),
            Err(()) => out.extend_from_slice(reply::UPDATE_FAILED),
        }
        self.state = State::Ended(Event::Quit);
    }

    /// The TLS handshake after `Event::StartTls` succeeded: forget a USER given
    /// before (RFC 2595 4: nothing said in the clear counts), stop offering STLS, and
    /// allow plaintext logins.
    pub fn tls_started(&mut self) {
        self.tls_active = true;
        self.discarding_line = false;
        if matches!(
            self.state,
            State::Authorization { .. } | State::SaslResponse
        ) {
            self.state = State::Authorization { user: None };
        }
    }

    /// In the TRANSACTION state: logged in, QUIT not yet received (a retrieval may be
    /// pending).
    pub fn is_transaction(&self) -> bool {
        matches!(
            self.state,
            State::Transaction | State::RetrievePending { .. }
        )
    }

    /// Whether TLS is active on this session.
    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    /// The inbox key logged in (as in `Event::Login`), from `logged_in(Ok(..))` on.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// A request the caller did not answer is answered as a failure, so the client
    /// gets its reply and the session goes on (or ends) in a known state.
    fn answer_pending_request(&mut self, out: &mut Vec<u8>) {
        match self.state {
            State::LoginPending { .. } => self.logged_in(Err(LoginRefused::TryLater), out),
            State::RetrievePending { .. } => {
                self.state = State::Transaction;
                out.extend_from_slice(reply::RETRIEVE_FAILED);
            }
            State::UpdatePending => self.updated(Err(()), out),
            _ => {}
        }
    }

    /// Handles the first line of `rest` if it is complete, or discards an over-long one.
    fn advance_line(&mut self, rest: &[u8], out: &mut Vec<u8>) -> (usize, Option<Event>) {
        if !self.discarding_line {
            // Look for the line end only as far as a legal line reaches.
            let window = &rest[..rest.len().min(COMMAND_LINE_BYTES_MAX)];
            if let Some(lf_idx) = memchr(b'\n', window) {
                return (lf_idx + 1, self.command_line(&rest[..lf_idx], out));
            }
            if rest.len() < COMMAND_LINE_BYTES_MAX {
                // A partial line: the caller keeps it.
                return (0, Some(Event::NeedInput));
            }
            // No LF in the longest legal line: over-long whatever comes next. Discard it
            // rather than buffer it; the reply goes out when its LF arrives, which may
            // already be in `rest`.
            self.discarding_line = true;
        }
        match memchr(b'\n', rest) {
            Some(lf_idx) => {
                self.discarding_line = false;
                self.end_sasl_exchange();
                (lf_idx + 1, self.reply_error(reply::LINE_TOO_LONG, out))
            }
            None => (rest.len(), Some(Event::NeedInput)),
        }
    }

    /// Handles one complete line, its LF removed.
    fn command_line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Option<Event> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // Names and passwords reach the caller as text; control characters (a bare CR,
        // NUL, C1) would only garble logs, and no address or password we issue has one.
        let Ok(line) = std::str::from_utf8(line) else {
            self.end_sasl_exchange();
            return self.reply_error(reply::INVALID_UTF8, out);
        };
        if line.chars().any(char::is_control) {
            self.end_sasl_exchange();
            return self.reply_error(reply::CONTROL_CHARACTER, out);
        }
        if self.state == State::SaslResponse {
            self.state = State::Authorization { user: None };
            if line == "*" {
                out.extend_from_slice(reply::SASL_CANCELLED);
                return None;
            }
            return self.plain_response(line, out);
        }
        let Some((keyword, args)) = Keyword::parse(line) else {
            return self.reply_error(reply::UNKNOWN_COMMAND, out);
        };
        // `advance` answers pending requests before it reads a line and stops at every
        // event, so only these two states read commands.
        let logged_in = match self.state {
            State::Authorization { .. } => false,
            State::Transaction => true,
            _ => return None,
        };
        match (keyword.valid(), logged_in) {
            (Valid::BeforeLogin, true) => return self.reply_error(reply::ALREADY_LOGGED_IN, out),
            (Valid::AfterLogin, false) => return self.reply_error(reply::NEED_LOGIN, out),
            _ => {}
        }
        if keyword.is_login() && self.plaintext_refused() {
            return self.reply_error(reply::PLAINTEXT_DISALLOWED, out);
        }
        match Command::parse(keyword, args) {
            Ok(command) => self.execute(command, out),
            Err(reply) => self.reply_error(reply, out),
        }
    }

    fn execute(&mut self, command: Command<'_>, out: &mut Vec<u8>) -> Option<Event> {
        match command {
            Command::Capa => {
                let stls = self.config.starttls_available && !self.tls_active;
                reply::capa(!self.plaintext_refused(), stls, out);
                None
            }
            Command::Quit => self.quit(out),
            Command::User { name } => self.user_command(name, out),
            Command::Pass { password } => self.pass(password, out),
            Command::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, initial_response, out),
            Command::Stls => self.stls(out),
            Command::Stat => self.stat(out),
            Command::List { number } => self.list(number, out),
            Command::Uidl { number } => self.uidl(number, out),
            Command::Retr { number } => self.retrieve(number, None, out),
            Command::Top { number, body_lines } => self.retrieve(number, Some(body_lines), out),
            Command::Dele { number } => self.dele(number, out),
            Command::Rset => self.rset(out),
            Command::Noop => {
                out.extend_from_slice(reply::OK);
                None
            }
        }
    }

    fn quit(&mut self, out: &mut Vec<u8>) -> Option<Event> {
        if self.state == State::Transaction && self.maildrop.n_marked() > 0 {
            self.state = State::UpdatePending;
            return Some(Event::Update {
                delete: self.maildrop.marked_ids(),
            });
        }
        reply::quit(&self.config.hostname, out);
        self.state = State::Ended(Event::Quit);
        Some(Event::Quit)
    }

    fn reply_error(&mut self, reply: &[u8], out: &mut Vec<u8>) -> Option<Event> {
        self.reply_error_with(out, |out| out.extend_from_slice(reply))
    }

    /// Counts an error and writes its reply; at `ERRORS_MAX` the reply is
    /// `-ERR too many errors` instead (one reply per command, even the last) and the
    /// session ends.
    fn reply_error_with(
        &mut self,
        out: &mut Vec<u8>,
        write_reply: impl FnOnce(&mut Vec<u8>),
    ) -> Option<Event> {
        self.n_errors += 1;
        if self.n_errors >= ERRORS_MAX {
            out.extend_from_slice(reply::TOO_MANY_ERRORS);
            self.state = State::Ended(Event::Close);
            return Some(Event::Close);
        }
        write_reply(out);
        None
    }
}

// By hand, so a password never reaches a log line.
impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::NeedInput => f.write_str("NeedInput"),
            Event::Login { user, .. } => f
                .debug_struct("Login")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
            Event::Retrieve {
                id,
                top_lines,
                mark_seen,
            } => f
                .debug_struct("Retrieve")
                .field("id", id)
                .field("top_lines", top_lines)
                .field("mark_seen", mark_seen)
                .finish(),
            Event::Update { delete } => f.debug_struct("Update").field("delete", delete).finish(),
            Event::StartTls => f.write_str("StartTls"),
            Event::Quit => f.write_str("Quit"),
            Event::Close => f.write_str("Close"),
        }
    }
}

#[cfg(test)]
mod tests;
