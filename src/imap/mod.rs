//! The IMAP session state machine: (state, input bytes) -> responses and events.
//!
//! IMAP4rev1 (RFC 3501) with what current clients use from RFC 9051 and extensions
//! (LITERAL+, IDLE, ENABLE, UNSELECT, UIDPLUS's UID EXPUNGE, ID, NAMESPACE, SASL-IR,
//! STATUS=SIZE), over one mailbox: the INBOX of the address that logged in, whose
//! messages can be read, flagged `\Seen` and deleted, but not added to or copied. No IO,
//! no executor, never panics on input. The socket loop (in `net`) reads, calls
//! `Session::advance`, writes what the session appended to `out`, and acts on the
//! returned `Event`; some events ask it for data from the store, which it hands back
//! through one callback each.
//!
//! # The `advance` contract
//!
//! `advance(input, out)` returns `(consumed, event)`; the caller drops the first
//! `consumed` bytes and keeps the rest for the next call.
//!
//! - `Event::NeedInput`: all of `input` was consumed (a partial command is kept inside the
//!   session, bounded by `COMMAND_BYTES_MAX`); flush `out`, read more.
//! - Any other event: `input` was consumed up to the end of the command that caused it.
//!   Act on it, call its callback if it has one, then call `advance` again with the rest
//!   (even if empty: the session may have more to say, e.g. the next round of a FETCH).
//!   Until the callback comes, `advance` returns the same event again and reads nothing.
//! - After `Event::StartTls`, drop the unconsumed rest (it was sent in plaintext, RFC 3501
//!   6.2.1 and CVE-2011-0411), handshake, then call `tls_started`.
//! - After `Event::Logout` or `Event::Close`, flush and close.
//!
//! Commands are executed one at a time, in order, so pipelined commands are answered in
//! order. The socket loop should keep its own read buffer to one read: the session takes
//! everything it is given whenever it answers `NeedInput`.
//!
//! # Sync points
//!
//! Sequence numbers only change when the session says so (see `model.rs`). The socket
//! loop calls `sync` with the inbox's current state whenever it learns of a change (new
//! mail, a message deleted or expired, `\Seen` set elsewhere) while a mailbox is selected.
//! During IDLE `sync` writes the untagged EXISTS / EXPUNGE / FETCH responses at once;
//! otherwise it only records the state, and the session announces it at the end of the
//! next command (EXPUNGE not after FETCH, STORE or SEARCH by sequence number, RFC 3501
//! 7.4.1; after their UID forms it may). NOOP, CHECK, SELECT, EXAMINE and STATUS ask for
//! a fresh state themselves (`NeedMailbox`).
//! `next_expiry_ms` says when the next message expires, for an IDLE timer.
//!
//! The commands are in `commands.rs` (and, for a selected mailbox's messages,
//! `messages.rs`), the model in `model.rs`, FETCH in `fetch.rs` (with `mime.rs` and
//! `structure.rs`), SEARCH in `search.rs`; the tests in `tests/`.

mod commands;
mod extra;
mod fetch;
mod framing;
mod messages;
mod mime;
mod model;
mod reply;
mod search;
mod structure;

use std::fmt;
use std::sync::Arc;

use imap_codec::decode::Decoder;
use imap_codec::{AuthenticateDataCodec, IdleDoneCodec};

use crate::imap::extra::StatusItem;
use crate::imap::fetch::Item;
use crate::imap::framing::{Framed, Framer};
use crate::imap::model::{Applied, Selected};
use crate::imap::search::{Doc, Key};
use crate::mailbox::Mailbox;
use crate::store::MessageId;

pub use fetch::{ROUND_BYTES_MAX, ROUND_MESSAGES_MAX};
pub use framing::{COMMAND_BYTES_MAX, LITERAL_BYTES_MAX};
pub use mime::{MIME_NESTING_MAX, MIME_PARTS_MAX};
pub use reply::QUOTED_BYTES_MAX;

/// Bad commands a client may send before it is disconnected (as SMTP's `ERRORS_MAX`).
pub const ERRORS_MAX: usize = 20;
/// Failed logins before the session ends (RFC 3501 leaves it to the server).
pub const LOGIN_FAILURES_MAX: usize = 3;
/// Longest line read outside commands: an AUTHENTICATE response (base64 of user and
/// password) or IDLE's DONE.
pub const LINE_BYTES_MAX: usize = 8 * 1024;

/// What a session needs to know about the server; shared by all sessions.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our name, in the BYE that answers LOGOUT.
    pub hostname: String,
    /// Whether STARTTLS is offered (advertised, and answered with `Event::StartTls`).
    pub starttls_available: bool,
    /// Whether LOGIN and AUTHENTICATE are refused until TLS is active (LOGINDISABLED).
    pub tls_required: bool,
}

/// Why the store refused a login (`Session::logged_in`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    /// Wrong user or password: `NO [AUTHENTICATIONFAILED]`, counted.
    Invalid,
    /// The server cannot check now: `NO [UNAVAILABLE]`, not counted.
    TryLater,
}

/// What the caller must do after `Session::advance`. Its `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub enum Event {
    /// Everything was consumed; flush `out` and read more.
    NeedInput,
    /// Check these credentials, then call `logged_in`.
    Login { user: String, password: String },
    /// Get the user's inbox as it is now, then call `mailbox` (SELECT, EXAMINE, STATUS,
    /// NOOP and CHECK).
    NeedMailbox,
    /// Get these messages' bytes, then call `messages`. At most `ROUND_MESSAGES_MAX`
    /// messages and about `ROUND_BYTES_MAX` bytes; a big FETCH or SEARCH asks in rounds.
    NeedMessages { ids: Vec<MessageId> },
    /// Tell the store these `\Seen` changes (true = seen). No callback.
    SetFlags { changes: Vec<(MessageId, bool)> },
    /// Delete these messages from the store, then call `expunged`.
    Expunge { ids: Vec<MessageId> },
    /// IDLE began (`+ idling` written): call `sync` on inbox changes until DONE arrives.
    Idle,
    /// IDLE ended; its tagged response is written.
    IdleDone,
    /// STARTTLS was accepted: flush, drop the unconsumed input, handshake, `tls_started`.
    StartTls,
    /// LOGOUT was answered (BYE and OK); flush and close.
    Logout,
    /// The session gave up on the client (BYE written); flush and close.
    Close,
}

/// One IMAP session's protocol state. Create one per connection. `Send`, so its heavy
/// callbacks (`messages`) can run on a blocking thread. Its `Debug` shows the state, not
/// the buffers (they may hold a password).
pub struct Session {
    config: Arc<SessionConfig>,
    tls_active: bool,
    state: State,
    /// The address that logged in.
    user: Option<String>,
    mode: Mode,
    framer: Framer,
    /// A line being read in `Mode::AuthenticateData` or `Mode::Idle`.
    line: Vec<u8>,
    /// The command waiting on a callback or on its next round.
    job: Job,
    /// An event returned whose callback has not come yet; returned again until it does.
    awaiting: Option<Event>,
    /// `\Seen` changes to hand out as `Event::SetFlags`.
    flag_changes: Vec<(MessageId, bool)>,
    /// A BYE was written: every later `advance` returns `Event::Close`.
    closing: bool,
    n_errors: usize,
    n_login_failures: usize,
    /// Complete commands taken in, for the socket loop's counter.
    n_commands: u64,
}

#[derive(Debug)]
enum State {
    NotAuthenticated,
    Authenticated,
    Selected(Selected),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Command,
    /// After `+` for AUTHENTICATE PLAIN without an initial response.
    AuthenticateData {
        tag: String,
    },
    Idle {
        tag: String,
    },
}

#[derive(Debug)]
enum Job {
    None,
    Login {
        tag: String,
        user: String,
    },
    Mailbox {
        tag: String,
        purpose: MailboxPurpose,
    },
    Fetch(FetchJob),
    Search(SearchJob),
    Expunge {
        tag: String,
        close: bool,
        command: &'static str,
    },
    StartTls,
}

#[derive(Debug)]
enum MailboxPurpose {
    Select {
        read_only: bool,
    },
    Status {
        items: Vec<StatusItem>,
    },
    /// NOOP or CHECK: merge and announce the fresh state.
    Sync {
        command: &'static str,
    },
}

#[derive(Debug)]
struct FetchJob {
    tag: String,
    uid: bool,
    items: Vec<Item>,
    slot_idxs: Vec<usize>,
    /// `slot_idxs[..done]` are answered; `slot_idxs[done..round_end]` are asked for.
    done: usize,
    round_end: usize,
}

#[derive(Debug)]
struct SearchJob {
    tag: String,
    uid: bool,
    key: Key,
    matched: Vec<usize>,
    /// Messages the model alone could not decide; their bytes are asked for in rounds.
    undecided: Vec<usize>,
    done: usize,
    round_end: usize,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::NeedInput => f.write_str("NeedInput"),
            Event::Login { user, .. } => f
                .debug_struct("Login")
                .field("user", user)
                .field("password", &"<hidden>")
                .finish(),
            Event::NeedMailbox => f.write_str("NeedMailbox"),
            Event::NeedMessages { ids } => {
                f.debug_struct("NeedMessages").field("ids", ids).finish()
            }
            Event::SetFlags { changes } => f
                .debug_struct("SetFlags")
                .field("changes", changes)
                .finish(),
            Event::Expunge { ids } => f.debug_struct("Expunge").field("ids", ids).finish(),
            Event::Idle => f.write_str("Idle"),
            Event::IdleDone => f.write_str("IdleDone"),
            Event::StartTls => f.write_str("StartTls"),
            Event::Logout => f.write_str("Logout"),
            Event::Close => f.write_str("Close"),
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("tls_active", &self.tls_active)
            .field("state", &self.state)
            .field("user", &self.user)
            .field("mode", &self.mode)
            .field("job", &self.job)
            .field("awaiting", &self.awaiting)
            .field("closing", &self.closing)
            .field("n_errors", &self.n_errors)
            .field("n_login_failures", &self.n_login_failures)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A new session, before the greeting. `tls_active` for implicit TLS (port 993).
    pub fn new(config: Arc<SessionConfig>, tls_active: bool) -> Session {
        Session {
            config,
            tls_active,
            state: State::NotAuthenticated,
            user: None,
            mode: Mode::Command,
            framer: Framer::default(),
            line: Vec::new(),
            job: Job::None,
            awaiting: None,
            flag_changes: Vec::new(),
            closing: false,
            n_errors: 0,
            n_login_failures: 0,
            n_commands: 0,
        }
    }

    /// Writes the greeting: `* OK [CAPABILITY ...] Mayfly IMAP ready`.
    pub fn greeting(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"* OK [CAPABILITY ");
        self.write_capabilities(out);
        out.extend_from_slice(b"] Mayfly IMAP ready\r\n");
    }

    /// Consumes `input`, appends responses to `out`, and says what the caller must do
    /// next. See the module documentation for the contract.
    pub fn advance(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Event) {
        if let Some(event) = self.pending_event() {
            return (0, event);
        }
        let mut consumed = 0;
        loop {
            let rest = &input[consumed..];
            let (n_bytes, event) = match self.mode {
                Mode::Command => self.advance_command(rest, out),
                Mode::AuthenticateData { .. } | Mode::Idle { .. } => self.advance_line(rest, out),
            };
            consumed += n_bytes;
            // A command answered with a BYE but no event (one that found the inbox's
            // UIDVALIDITY changed when it announced the store's news) ends the session
            // here: a BYE means the connection closes (RFC 3501 7.1.5), so nothing
            // pipelined after it may be read or answered. Found by fuzzing
            // (`tests/fuzz/regressions/imap_session/`).
            let event = event.or_else(|| self.closing.then_some(Event::Close));
            if let Some(event) = event {
                debug_assert!(consumed <= input.len());
                debug_assert!(event != Event::NeedInput || consumed == input.len());
                return (consumed, event);
            }
        }
    }

    /// The answer to `Event::Login`.
    pub fn logged_in(&mut self, result: Result<(), LoginRefused>, out: &mut Vec<u8>) {
        let Job::Login { tag, user } = std::mem::replace(&mut self.job, Job::None) else {
            return;
        };
        self.awaiting = None;
        match result {
            Ok(()) => {
                self.state = State::Authenticated;
                self.user = Some(user);
                out.extend_from_slice(tag.as_bytes());
                out.extend_from_slice(b" OK [CAPABILITY ");
                self.write_capabilities(out);
                out.extend_from_slice(b"] Logged in\r\n");
            }
            Err(LoginRefused::Invalid) => {
                reply::no(
                    out,
                    &tag,
                    Some("AUTHENTICATIONFAILED"),
                    "Invalid credentials",
                );
                self.n_login_failures += 1;
                if self.n_login_failures >= LOGIN_FAILURES_MAX {
                    out.extend_from_slice(reply::BYE_TOO_MANY_LOGIN_FAILURES);
                    self.closing = true;
                }
            }
            Err(LoginRefused::TryLater) => {
                reply::no(
                    out,
                    &tag,
                    Some("UNAVAILABLE"),
                    "Temporary failure, try again later",
                );
            }
        }
    }

    /// The answer to `Event::NeedMailbox`: the user's inbox now, taken after every
    /// `Event::SetFlags` returned before it reached the store (ask the owning shard in
    /// order). For NOOP and CHECK it is the truth about `\Seen`, where a `sync` state may
    /// be older than the session's own last change.
    pub fn mailbox(&mut self, mailbox: Mailbox, out: &mut Vec<u8>) {
        let Job::Mailbox { tag, purpose } = std::mem::replace(&mut self.job, Job::None) else {
            return;
        };
        self.awaiting = None;
        match purpose {
            MailboxPurpose::Select { read_only } => {
                self.selected_now(&tag, mailbox, read_only, out)
            }
            MailboxPurpose::Status { items } => {
                commands::write_status(out, &mailbox, &items);
                self.finish(&tag, "STATUS completed", true, out);
            }
            MailboxPurpose::Sync { command } => {
                if let State::Selected(selected) = &mut self.state {
                    selected.record(mailbox, true);
                }
                self.finish(&tag, command, true, out);
            }
        }
    }

    /// The answer to `Event::NeedMessages`: each asked-for message's bytes, or `None` for
    /// one that is gone (it is left out of the FETCH or SEARCH results and will be
    /// announced as expunged at the next point that allows it).
    pub fn messages(&mut self, messages: Vec<(MessageId, Option<Vec<u8>>)>, out: &mut Vec<u8>) {
        let State::Selected(selected) = &mut self.state else {
            return;
        };
        let lookup = |id: MessageId| {
            messages
                .iter()
                .find(|(message_id, _)| *message_id == id)
                .and_then(|(_, raw)| raw.as_deref())
        };
        match &mut self.job {
            Job::Fetch(job) => {
                let sets_seen = fetch::sets_seen(&job.items) && !selected.read_only;
                for &slot_idx in &job.slot_idxs[job.done..job.round_end] {
                    let Some(slot) = selected.slot_mut(slot_idx) else {
                        continue;
                    };
                    let Some(raw) = lookup(slot.id) else {
                        slot.gone = true;
                        continue;
                    };
                    let seen_changed = sets_seen && !slot.seen;
                    if seen_changed {
                        slot.seen = true;
                        slot.seen_sent = Some(true);
                        self.flag_changes.push((slot.id, true));
                    }
                    let slot_now = *slot;
                    fetch::write_fetch(
                        out,
                        slot_idx + 1,
                        &slot_now,
                        &job.items,
                        Some(raw),
                        job.uid,
                        seen_changed,
                    );
                    if seen_changed || job.items.contains(&Item::Flags) {
                        slot.seen_announced = slot.seen;
                    }
                }
                job.done = job.round_end;
                self.awaiting = None;
                if job.done == job.slot_idxs.len() {
                    let tag = std::mem::take(&mut job.tag);
                    let uid = job.uid;
                    self.job = Job::None;
                    self.finish(
                        &tag,
                        if uid {
                            "UID FETCH completed"
                        } else {
                            "FETCH completed"
                        },
                        uid,
                        out,
                    );
                }
            }
            Job::Search(job) => {
                for &slot_idx in &job.undecided[job.done..job.round_end] {
                    let Some(slot) = selected.slot_mut(slot_idx) else {
                        continue;
                    };
                    let Some(raw) = lookup(slot.id) else {
                        slot.gone = true;
                        continue;
                    };
                    let mut doc = Doc::new(raw);
                    if search::eval(&job.key, slot_idx, slot, Some(&mut doc)) == Some(true) {
                        job.matched.push(slot_idx);
                    }
                }
                job.done = job.round_end;
                self.awaiting = None;
                if job.done == job.undecided.len() {
                    let Job::Search(job) = std::mem::replace(&mut self.job, Job::None) else {
                        return;
                    };
                    self.search_done(job, out);
                }
            }
            _ => {}
        }
    }

    /// The answer to `Event::Expunge`: the messages that are no longer in the store
    /// (deleted now, or already gone). Writes `* n EXPUNGE` for them (not for CLOSE) and
    /// the tagged OK.
    pub fn expunged(&mut self, ids: Vec<MessageId>, out: &mut Vec<u8>) {
        let Job::Expunge {
            tag,
            close,
            command,
        } = std::mem::replace(&mut self.job, Job::None)
        else {
            return;
        };
        self.awaiting = None;
        if close {
            self.state = State::Authenticated;
            reply::ok(out, &tag, command);
            return;
        }
        if let State::Selected(selected) = &mut self.state {
            let mut ids = ids;
            ids.sort_unstable();
            for slot_idx in 0..selected.slots().len() {
                if let Some(slot) = selected.slot_mut(slot_idx)
                    && ids.binary_search(&slot.id).is_ok()
                {
                    slot.gone = true;
                }
            }
        }
        self.finish(&tag, command, true, out);
    }

    /// The inbox as it is now, from the socket loop's watch (see "Sync points" in the
    /// module documentation). Ignored when no mailbox is selected.
    pub fn sync(&mut self, mailbox: Mailbox, out: &mut Vec<u8>) {
        let idle = matches!(self.mode, Mode::Idle { .. });
        let State::Selected(selected) = &mut self.state else {
            return;
        };
        selected.record(mailbox, false);
        if idle && selected.apply(out, true) == Applied::ValidityChanged {
            out.extend_from_slice(reply::BYE_UIDVALIDITY_CHANGED);
            self.closing = true;
        }
    }

    /// The TLS handshake after `Event::StartTls` succeeded.
    pub fn tls_started(&mut self) {
        self.tls_active = true;
        if matches!(self.job, Job::StartTls) {
            self.job = Job::None;
        }
        if self.awaiting == Some(Event::StartTls) {
            self.awaiting = None;
        }
        self.framer.reset();
    }

    /// The address that logged in.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Whether a mailbox is selected (the loop watches the inbox for `sync` only then).
    pub fn selected(&self) -> bool {
        matches!(self.state, State::Selected(_))
    }

    /// Whether TLS is active (implicit, or after STARTTLS).
    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    /// Complete commands taken in since the session began.
    pub fn n_commands(&self) -> u64 {
        self.n_commands
    }

    /// Whether part of a command (or of an AUTHENTICATE response) has arrived and the rest
    /// has not: the socket loop then holds the client to the whole-command deadline
    /// instead of the idle timeout.
    pub fn is_mid_command(&self) -> bool {
        match self.mode {
            Mode::Command => self.framer.is_mid_command(),
            Mode::AuthenticateData { .. } => true,
            Mode::Idle { .. } => !self.line.is_empty(),
        }
    }

    /// Whether the session is in IDLE: inbox changes go out as soon as `sync` is called.
    pub fn is_idle(&self) -> bool {
        matches!(self.mode, Mode::Idle { .. })
    }

    /// When the next selected message expires (Unix ms): the socket loop syncs then, so
    /// an idling client hears of the EXPUNGE.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        match &self.state {
            State::Selected(selected) => selected.next_expiry_ms(),
            _ => None,
        }
    }

    /// The event to return before reading input, if any.
    fn pending_event(&mut self) -> Option<Event> {
        if self.closing {
            return Some(Event::Close);
        }
        if let Some(event) = &self.awaiting {
            return Some(event.clone());
        }
        if !self.flag_changes.is_empty() {
            return Some(Event::SetFlags {
                changes: std::mem::take(&mut self.flag_changes),
            });
        }
        let State::Selected(selected) = &self.state else {
            return None;
        };
        let (slot_idxs, done, round_end) = match &mut self.job {
            Job::Fetch(job) => (&job.slot_idxs, job.done, &mut job.round_end),
            Job::Search(job) => (&job.undecided, job.done, &mut job.round_end),
            _ => return None,
        };
        *round_end = fetch::round_end(selected.slots(), slot_idxs, done);
        let ids = slot_idxs[done..*round_end]
            .iter()
            .filter_map(|&slot_idx| selected.slots().get(slot_idx).map(|slot| slot.id))
            .collect();
        let event = Event::NeedMessages { ids };
        self.awaiting = Some(event.clone());
        Some(event)
    }

    fn advance_command(&mut self, rest: &[u8], out: &mut Vec<u8>) -> (usize, Option<Event>) {
        let (n_bytes, framed) = self.framer.feed(rest);
        let event = match framed {
            Framed::NeedInput => Some(Event::NeedInput),
            Framed::TooBig { literal } => {
                out.extend_from_slice(if literal {
                    reply::BYE_LITERAL_TOO_BIG
                } else {
                    reply::BYE_COMMAND_TOO_LONG
                });
                self.closing = true;
                Some(Event::Close)
            }
            Framed::SyncLiteral { length_bytes } => self.sync_literal(length_bytes, out),
            Framed::Command => {
                let command = self.framer.take_command();
                self.n_commands += 1;
                let event = self.command(&command, out);
                self.framer.recycle(command);
                event
            }
        };
        (n_bytes, event)
    }

    /// Reads one line for AUTHENTICATE or IDLE.
    fn advance_line(&mut self, rest: &[u8], out: &mut Vec<u8>) -> (usize, Option<Event>) {
        let (n_bytes, complete) = match memchr::memchr(b'\n', rest) {
            Some(lf_idx) => (lf_idx + 1, true),
            None => (rest.len(), false),
        };
        if self.line.len() + n_bytes > LINE_BYTES_MAX {
            out.extend_from_slice(reply::BYE_COMMAND_TOO_LONG);
            self.closing = true;
            return (n_bytes, Some(Event::Close));
        }
        self.line.extend_from_slice(&rest[..n_bytes]);
        if !complete {
            return (n_bytes, Some(Event::NeedInput));
        }
        let line = std::mem::take(&mut self.line);
        let mode = std::mem::replace(&mut self.mode, Mode::Command);
        let event = match mode {
            Mode::Idle { tag } => {
                let event = if IdleDoneCodec::default().decode(&line).is_ok() {
                    self.finish(&tag, "IDLE terminated", true, out);
                    None
                } else {
                    self.bad(&tag, "Expected DONE", out)
                };
                Some(event.unwrap_or(Event::IdleDone))
            }
            Mode::AuthenticateData { tag } => {
                if line == b"*\r\n" {
                    self.bad(&tag, "Authentication canceled", out)
                } else {
                    match AuthenticateDataCodec::default().decode(&line) {
                        Ok((_, data)) => self.sasl_plain(&tag, data.0.declassify(), out),
                        Err(_) => self.bad(&tag, "Invalid base64 response", out),
                    }
                }
            }
            Mode::Command => None,
        };
        let mut line = line;
        crate::alloc::wipe_if_on(&mut line);
        line.clear();
        self.line = line;
        (n_bytes, event)
    }

    /// Ends a command in the selected state: announces what the store changed (EXPUNGE
    /// only if `allow_expunge`), then writes the tagged OK.
    fn finish(&mut self, tag: &str, text: &str, allow_expunge: bool, out: &mut Vec<u8>) {
        if let State::Selected(selected) = &mut self.state
            && selected.apply(out, allow_expunge) == Applied::ValidityChanged
        {
            out.extend_from_slice(reply::BYE_UIDVALIDITY_CHANGED);
            self.closing = true;
            return;
        }
        reply::ok(out, tag, text);
    }

    fn search_done(&mut self, mut job: SearchJob, out: &mut Vec<u8>) {
        let State::Selected(selected) = &self.state else {
            return;
        };
        job.matched.sort_unstable();
        search::write_results(out, selected.slots(), &job.matched, job.uid);
        let text = if job.uid {
            "UID SEARCH completed"
        } else {
            "SEARCH completed"
        };
        self.finish(&job.tag, text, job.uid, out);
    }

    /// Writes a BAD and counts it; past `ERRORS_MAX` the session gives up.
    fn bad(&mut self, tag: &str, text: &str, out: &mut Vec<u8>) -> Option<Event> {
        reply::bad(out, tag, text);
        self.count_error(out)
    }

    fn count_error(&mut self, out: &mut Vec<u8>) -> Option<Event> {
        self.n_errors += 1;
        if self.n_errors >= ERRORS_MAX {
            out.extend_from_slice(reply::BYE_TOO_MANY_ERRORS);
            self.closing = true;
            return Some(Event::Close);
        }
        None
    }

    fn write_capabilities(&self, out: &mut Vec<u8>) {
        let before_login = matches!(self.state, State::NotAuthenticated);
        let starttls = self.config.starttls_available && !self.tls_active;
        reply::capabilities(out, before_login, starttls, self.login_disabled());
    }

    /// RFC 3501 6.2.3: with TLS required, LOGIN (and AUTHENTICATE) wait for STARTTLS.
    fn login_disabled(&self) -> bool {
        self.config.tls_required && !self.tls_active
    }
}

#[cfg(test)]
mod tests;
