//! The TRANSACTION state's commands (RFC 1939 5, 7): listings, RETR and TOP (which
//! ask the caller for the bytes), DELE and RSET (which only touch the marks). Every
//! message number is checked against the maildrop here; the replies for numbers that
//! name nothing are the same for every command.

use memchr::memchr;

use crate::pop3::maildrop::Missing;
use crate::pop3::{Event, Session, State, reply};

impl Session {
    pub(super) fn stat(&mut self, out: &mut Vec<u8>) -> Option<Event> {
        let (n_messages, total_bytes) = self.maildrop.live_totals();
        reply::stat(n_messages, total_bytes, out);
        None
    }

    /// LIST: sizes are `MailboxEntry::size_bytes`, what RETR sends before stuffing.
    pub(super) fn list(&mut self, number: Option<usize>, out: &mut Vec<u8>) -> Option<Event> {
        let Some(number) = number else {
            let (n_messages, total_bytes) = self.maildrop.live_totals();
            reply::list_header(n_messages, total_bytes, out);
            for (number, entry) in self.maildrop.live() {
                reply::scan_listing(number, entry.size_bytes, out);
            }
            out.extend_from_slice(reply::END);
            return None;
        };
        match self.maildrop.entry(number) {
            Ok(entry) => {
                out.extend_from_slice(b"+OK ");
                reply::scan_listing(number, entry.size_bytes, out);
                None
            }
            Err(missing) => self.missing(number, missing, out),
        }
    }

    pub(super) fn uidl(&mut self, number: Option<usize>, out: &mut Vec<u8>) -> Option<Event> {
        let Some(number) = number else {
            out.extend_from_slice(reply::UIDL_HEADER);
            for (number, entry) in self.maildrop.live() {
                reply::uid_listing(number, entry.id, out);
            }
            out.extend_from_slice(reply::END);
            return None;
        };
        match self.maildrop.entry(number) {
            Ok(entry) => {
                out.extend_from_slice(b"+OK ");
                reply::uid_listing(number, entry.id, out);
                None
            }
            Err(missing) => self.missing(number, missing, out),
        }
    }

    /// RETR (`body_lines` is `None`) or TOP: asks the caller for the message.
    pub(super) fn retrieve(
        &mut self,
        number: usize,
        body_lines: Option<usize>,
        out: &mut Vec<u8>,
    ) -> Option<Event> {
        let id = match self.maildrop.entry(number) {
            Ok(entry) => entry.id,
            Err(missing) => return self.missing(number, missing, out),
        };
        self.state = State::RetrievePending { number, body_lines };
        Some(Event::Retrieve {
            id,
            top_lines: body_lines,
            // TOP shows a preview; only RETR reads the message as a client's user would.
            mark_seen: body_lines.is_none(),
        })
    }

    pub(super) fn dele(&mut self, number: usize, out: &mut Vec<u8>) -> Option<Event> {
        match self.maildrop.mark(number) {
            Ok(()) => {
                reply::deleted(number, out);
                None
            }
            Err(missing) => self.missing(number, missing, out),
        }
    }

    pub(super) fn rset(&mut self, out: &mut Vec<u8>) -> Option<Event> {
        self.maildrop.unmark_all();
        let (n_messages, total_bytes) = self.maildrop.live_totals();
        reply::reset(n_messages, total_bytes, out);
        None
    }

    fn missing(&mut self, number: usize, missing: Missing, out: &mut Vec<u8>) -> Option<Event> {
        let n_messages = self.maildrop.n_messages();
        match missing {
            Missing::NoSuchMessage => {
                self.reply_error_with(out, |out| reply::no_such_message(n_messages, out))
            }
            Missing::Deleted => {
                self.reply_error_with(out, |out| reply::already_deleted(number, out))
            }
        }
    }
}

/// The part of `message` TOP sends (RFC 1939 7): the header, the blank line after it,
/// and the first `body_lines` lines of the body, or less if the message has less. A
/// message without a blank line is all header. Lines end at LF (stored messages use
/// CRLF, and a bare LF must not make TOP send the whole message).
pub(super) fn top_part(message: &[u8], body_lines: usize) -> &[u8] {
    let mut end_idx = 0;
    loop {
        let Some(offset) = memchr(b'\n', &message[end_idx..]) else {
            return message;
        };
        let line = &message[end_idx..=end_idx + offset];
        end_idx += offset + 1;
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    // At most one step per line of the message, whatever `body_lines` says.
    for _ in 0..body_lines {
        let Some(offset) = memchr(b'\n', &message[end_idx..]) else {
            return message;
        };
        end_idx += offset + 1;
    }
    &message[..end_idx]
}
