//! The IMAP client session (RFC 3501): `LOGIN`, `SELECT INBOX` (or `EXAMINE`), a listing
//! `UID FETCH 1:* (RFC822.SIZE)`, then pass after pass of `UID FETCH <uid> (BODY.PEEK[])`
//! per message (pipelined by `pipeline`) or one `UID FETCH 1:* (BODY.PEEK[])` per pass;
//! `LOGOUT` only to reconnect. `BODY.PEEK[]` leaves `\Seen` alone, so passes are alike.
//!
//! No IO (see the session contract in [`crate::reader`]). Input is cut into whole
//! responses by [`Framer`]: a line, unless it ends in a literal `{n}`, in which case the
//! n bytes after it and the line that follows them belong to the same response. The
//! framer remembers where it stopped, so a 100 KiB literal arriving in many reads is
//! scanned once. A complete `* n FETCH (...)` is then parsed item by item; `BODY[]`'s
//! literal length is the message's size, compared with the `RFC822.SIZE` of the listing.
//!
//! Tags are `m<number>`, one counter per session. Every command in flight is remembered
//! with its tag, so tagged answers may come in any order.

use std::collections::VecDeque;
use std::io::Write as _;
use std::ops::Range;
use std::time::Instant;

use memchr::memchr;

use crate::reader::pop3::parse_u64;
use crate::reader::{
    ImapFetch, LINE_BYTES_MAX, MessageRead, Progress, RESPONSE_BYTES_MAX, SessionConfig,
    SessionError, checksum_of,
};

/// Most messages a listing may hold (a bound on its memory).
pub const MESSAGES_LISTED_MAX: usize = 1_000_000;

/// Deepest parenthesis nesting skipped in a FETCH item we did not ask for (BODYSTRUCTURE
/// of real mail nests a few levels; this is far beyond it).
const NESTING_MAX: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeting,
    Login,
    Select,
    List,
    Reading,
    Logout,
    Done,
}

/// A command in flight during the reading phase.
#[derive(Debug, Clone, Copy)]
struct Pending {
    tag: u64,
    /// The UID asked for; `None` for `1:*`.
    uid: Option<u64>,
    sent_at: Instant,
    /// Bodies that arrived for it.
    n_bodies: u64,
}

/// One IMAP client session; see the module docs.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    framer: Framer,
    /// The last tag used.
    tag_seq: u64,
    /// Tag of the command the login, select, listing or logout phase waits for.
    phase_tag: u64,
    /// From `* n EXISTS`.
    n_exists: u64,
    /// (UID, RFC822.SIZE) of every message, sorted by UID after the listing.
    messages: Vec<(u64, u64)>,
    in_flight: VecDeque<Pending>,
    /// Index into `messages` of the next message to ask for; wraps at the end of a pass.
    next_idx: usize,
    /// Messages read on this session, for `reconnect_every_msgs`.
    n_read: u64,
}

impl Session {
    /// A session waiting for the greeting.
    pub fn new(config: SessionConfig) -> Self {
        Self {
            config,
            state: State::Greeting,
            framer: Framer::default(),
            tag_seq: 0,
            phase_tag: 0,
            n_exists: 0,
            messages: Vec::new(),
            in_flight: VecDeque::new(),
            next_idx: 0,
            n_read: 0,
        }
    }

    /// See [`crate::reader::Session::advance`].
    ///
    /// # Errors
    /// A `NO`/`BAD`/unexpected `BYE`, an unparseable response, or an empty mailbox.
    pub fn advance(
        &mut self,
        input: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
        reads: &mut Vec<MessageRead>,
    ) -> Result<(usize, Progress), SessionError> {
        let mut consumed = 0;
        loop {
            if self.state == State::Done {
                return Ok((consumed, Progress::LoggedOut));
            }
            let rest = &input[consumed..];
            let Some(len) = self.framer.next(rest)? else {
                break;
            };
            consumed += len;
            let response = &rest[..len];
            match response {
                [b'*', b' ', tail @ ..] => self.on_untagged(response, tail, out, reads)?,
                [b'+', ..] => return Err(SessionError::Protocol("unexpected continuation")),
                _ => self.on_tagged(response, now, out)?,
            }
        }
        Ok((consumed, Progress::NeedInput))
    }

    fn on_untagged(
        &mut self,
        response: &[u8],
        tail: &[u8],
        out: &mut Vec<u8>,
        reads: &mut Vec<MessageRead>,
    ) -> Result<(), SessionError> {
        let (first, after) = split_word(tail);
        if self.state == State::Greeting {
            match first.to_ascii_uppercase().as_slice() {
                b"OK" => {
                    let tag = self.tag();
                    let _ = write!(
                        out,
                        "m{tag} LOGIN {} {}\r\n",
                        Quoted(&self.config.user),
                        Quoted(&self.config.password)
                    );
                    self.phase_tag = tag;
                    self.state = State::Login;
                }
                b"PREAUTH" => self.select(out),
                _ => return Err(SessionError::refused("greeting", response)),
            }
            return Ok(());
        }
        if first.eq_ignore_ascii_case(b"BYE") {
            if self.state == State::Logout {
                return Ok(());
            }
            return Err(SessionError::refused("session (BYE)", response));
        }
        let Some(number) = parse_u64(first) else {
            // CAPABILITY, FLAGS, OK [UIDVALIDITY ...], and so on.
            return Ok(());
        };
        let (kind, after) = split_word(after);
        if kind.eq_ignore_ascii_case(b"EXISTS") {
            self.n_exists = number;
            return Ok(());
        }
        if !kind.eq_ignore_ascii_case(b"FETCH") {
            return Ok(());
        }
        // `after` is a sub-slice of `response` (split_word only narrows), so the pointer
        // difference is its offset.
        let items_at = after.as_ptr() as usize - response.as_ptr() as usize;
        let items = parse_fetch(response, items_at)?;
        match self.state {
            State::List => {
                // Flag updates may come too; only listing answers carry a size.
                if let (Some(uid), Some(size)) = (items.uid, items.size) {
                    if self.messages.len() >= MESSAGES_LISTED_MAX {
                        return Err(SessionError::Protocol("listing too long"));
                    }
                    self.messages.push((uid, size));
                }
            }
            State::Reading => {
                let Some(body) = items.body else {
                    return Ok(());
                };
                let Some(uid) = items.uid else {
                    return Err(SessionError::Protocol("UID FETCH answer without UID"));
                };
                let pending = match self.config.imap_fetch {
                    ImapFetch::One => self
                        .in_flight
                        .iter_mut()
                        .find(|p| p.uid == Some(uid) && p.n_bodies == 0),
                    ImapFetch::All => self.in_flight.front_mut(),
                };
                let Some(pending) = pending else {
                    return Err(SessionError::Protocol("a body nobody asked for"));
                };
                pending.n_bodies += 1;
                let announced_bytes = self
                    .messages
                    .binary_search_by_key(&uid, |&(uid, _)| uid)
                    .ok()
                    .map(|idx| self.messages[idx].1);
                let checksum_ok = if self.config.check_checksums {
                    checksum_of(&response[body.clone()])
                } else {
                    None
                };
                reads.push(MessageRead {
                    bytes: body.len() as u64,
                    announced_bytes,
                    sent_at: pending.sent_at,
                    checksum_ok,
                });
                self.n_read += 1;
            }
            _ => {}
        }
        Ok(())
    }

    fn on_tagged(
        &mut self,
        response: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<(), SessionError> {
        let (tag, after) = split_word(response);
        let Some(tag) = tag.strip_prefix(b"m").and_then(parse_u64) else {
            return Err(SessionError::Protocol("unknown tag"));
        };
        let (status, _) = split_word(after);
        let ok = status.eq_ignore_ascii_case(b"OK");
        if self.state == State::Reading {
            let Some(idx) = self.in_flight.iter().position(|p| p.tag == tag) else {
                return Err(SessionError::Protocol("unknown tag"));
            };
            if !ok {
                return Err(SessionError::refused("UID FETCH", response));
            }
            let pending = self.in_flight.remove(idx).expect("index from position");
            if pending.uid.is_some() && pending.n_bodies == 0 {
                return Err(SessionError::Protocol(
                    "UID FETCH answered without the body",
                ));
            }
            if self.in_flight.is_empty() {
                self.next_batch(now, out);
            }
            return Ok(());
        }
        if tag != self.phase_tag {
            return Err(SessionError::Protocol("unknown tag"));
        }
        let command = match self.state {
            State::Login => "LOGIN",
            State::Select if self.config.imap_examine => "EXAMINE",
            State::Select => "SELECT",
            State::List => "UID FETCH (RFC822.SIZE)",
            _ => "LOGOUT",
        };
        if !ok {
            return Err(SessionError::refused(command, response));
        }
        match self.state {
            State::Login => self.select(out),
            State::Select => {
                if self.n_exists == 0 {
                    return Err(SessionError::EmptyMailbox);
                }
                let tag = self.tag();
                let _ = write!(out, "m{tag} UID FETCH 1:* (RFC822.SIZE)\r\n");
                self.phase_tag = tag;
                self.state = State::List;
            }
            State::List => {
                if self.messages.is_empty() {
                    return Err(SessionError::EmptyMailbox);
                }
                self.messages.sort_unstable();
                self.messages.dedup_by_key(|&mut (uid, _)| uid);
                self.state = State::Reading;
                self.next_batch(now, out);
            }
            _ => self.state = State::Done,
        }
        Ok(())
    }

    fn tag(&mut self) -> u64 {
        self.tag_seq += 1;
        self.tag_seq
    }

    fn select(&mut self, out: &mut Vec<u8>) {
        let tag = self.tag();
        let verb = if self.config.imap_examine {
            "EXAMINE"
        } else {
            "SELECT"
        };
        let _ = write!(out, "m{tag} {verb} INBOX\r\n");
        self.phase_tag = tag;
        self.state = State::Select;
    }

    /// Writes the next batch of fetches, or `LOGOUT` once the session has read its share.
    fn next_batch(&mut self, now: Instant, out: &mut Vec<u8>) {
        debug_assert!(self.in_flight.is_empty());
        let every = self.config.reconnect_every_msgs;
        if every > 0 && self.n_read >= every {
            let tag = self.tag();
            let _ = write!(out, "m{tag} LOGOUT\r\n");
            self.phase_tag = tag;
            self.state = State::Logout;
            return;
        }
        if self.config.imap_fetch == ImapFetch::All {
            let tag = self.tag();
            let _ = write!(out, "m{tag} UID FETCH 1:* (BODY.PEEK[])\r\n");
            self.in_flight.push_back(Pending {
                tag,
                uid: None,
                sent_at: now,
                n_bodies: 0,
            });
            return;
        }
        for _ in 0..self.config.pipeline.max(1) {
            if self.next_idx >= self.messages.len() {
                self.next_idx = 0;
            }
            let uid = self.messages[self.next_idx].0;
            let tag = self.tag();
            let _ = write!(out, "m{tag} UID FETCH {uid} (BODY.PEEK[])\r\n");
            self.in_flight.push_back(Pending {
                tag,
                uid: Some(uid),
                sent_at: now,
                n_bodies: 0,
            });
            self.next_idx += 1;
        }
    }
}

/// A string as an IMAP quoted string.
struct Quoted<'a>(&'a str);

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"")?;
        for c in self.0.chars() {
            if matches!(c, '"' | '\\') {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str("\"")
    }
}

/// Cuts input into whole responses (lines with their literals). Invariant: `line_start
/// <= pos`, both relative to the start of the response being framed.
#[derive(Debug, Default)]
pub struct Framer {
    /// Where the current line (after the last literal) starts.
    line_start: usize,
    /// Where the search for the next LF resumes; past the input while a literal is
    /// incomplete.
    pos: usize,
}

impl Framer {
    /// The length of the complete response at the start of `buf`, or `None` if more
    /// input is needed. Call again with the same start (and more bytes) until it
    /// answers; then it starts over for the next response.
    ///
    /// # Errors
    /// A line longer than [`LINE_BYTES_MAX`] or a literal larger than
    /// [`RESPONSE_BYTES_MAX`].
    pub fn next(&mut self, buf: &[u8]) -> Result<Option<usize>, SessionError> {
        debug_assert!(self.line_start <= self.pos);
        loop {
            if self.pos > buf.len() {
                return Ok(None);
            }
            let Some(idx) = memchr(b'\n', &buf[self.pos..]) else {
                if buf.len() - self.line_start > LINE_BYTES_MAX {
                    return Err(SessionError::Protocol("line too long"));
                }
                self.pos = buf.len();
                return Ok(None);
            };
            let line_end = self.pos + idx + 1;
            match literal_at_end(&buf[self.line_start..line_end])? {
                Some(n) => {
                    if line_end + n > RESPONSE_BYTES_MAX {
                        return Err(SessionError::Protocol("response too large"));
                    }
                    self.pos = line_end + n;
                    self.line_start = self.pos;
                }
                None => {
                    *self = Framer::default();
                    return Ok(Some(line_end));
                }
            }
        }
    }
}

/// The n of a line that ends in "{n}\r\n" (or "{n+}"), announcing an n-byte literal.
fn literal_at_end(line: &[u8]) -> Result<Option<usize>, SessionError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(inner) = line.strip_suffix(b"}") else {
        return Ok(None);
    };
    let Some(open_idx) = inner.iter().rposition(|&b| b == b'{') else {
        return Ok(None);
    };
    let digits = &inner[open_idx + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    match parse_u64(digits) {
        Some(n) if n <= RESPONSE_BYTES_MAX as u64 => Ok(Some(n as usize)),
        Some(_) => Err(SessionError::Protocol("response too large")),
        // "{...}" that is not a literal, e.g. in a response's human-readable text.
        None => Ok(None),
    }
}

/// The items of a FETCH answer this client cares about.
#[derive(Debug, Default, PartialEq, Eq)]
struct FetchItems {
    uid: Option<u64>,
    size: Option<u64>,
    /// Where `BODY[]`'s bytes are in the response.
    body: Option<Range<usize>>,
}

/// Parses `(item value item value ...)` starting at `at` (the opening parenthesis).
fn parse_fetch(response: &[u8], at: usize) -> Result<FetchItems, SessionError> {
    const MALFORMED: SessionError = SessionError::Protocol("malformed FETCH answer");
    let mut p = Cursor {
        buf: response,
        pos: at,
    };
    if p.peek() != Some(b'(') {
        return Err(MALFORMED);
    }
    p.pos += 1;
    let mut items = FetchItems::default();
    loop {
        p.skip_spaces();
        match p.peek() {
            Some(b')') => return Ok(items),
            None => return Err(MALFORMED),
            _ => {}
        }
        let key = p.key().ok_or(MALFORMED)?;
        p.skip_spaces();
        if key.eq_ignore_ascii_case(b"UID") {
            items.uid = Some(p.number().ok_or(MALFORMED)?);
        } else if key.eq_ignore_ascii_case(b"RFC822.SIZE") {
            items.size = Some(p.number().ok_or(MALFORMED)?);
        } else if key.eq_ignore_ascii_case(b"BODY[]") || key.eq_ignore_ascii_case(b"RFC822") {
            items.body = Some(p.string().ok_or(MALFORMED)?);
        } else {
            p.skip_value(0).ok_or(MALFORMED)?;
        }
    }
}

/// A read position in a complete response.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// A FETCH item name: an atom, with a `[section]` that may hold spaces and a
    /// `<partial>` after it.
    fn key(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            match b {
                b'[' => {
                    let close = memchr(b']', &self.buf[self.pos..])?;
                    self.pos += close + 1;
                }
                b' ' | b'(' | b')' | b'\r' | b'\n' => break,
                _ => self.pos += 1,
            }
        }
        (self.pos > start).then(|| &self.buf[start..self.pos])
    }

    fn number(&mut self) -> Option<u64> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        parse_u64(&self.buf[start..self.pos])
    }

    /// A literal, a quoted string or NIL; returns where its bytes are (for a quoted
    /// string, still escaped: message bodies never come that way from real servers).
    fn string(&mut self) -> Option<Range<usize>> {
        match self.peek()? {
            b'{' => {
                let close = memchr(b'}', &self.buf[self.pos..])? + self.pos;
                let digits = &self.buf[self.pos + 1..close];
                let n = parse_u64(digits.strip_suffix(b"+").unwrap_or(digits))? as usize;
                let mut start = close + 1;
                start += match self.buf.get(start..)? {
                    [b'\r', b'\n', ..] => 2,
                    [b'\n', ..] => 1,
                    _ => return None,
                };
                let end = start.checked_add(n).filter(|&end| end <= self.buf.len())?;
                self.pos = end;
                Some(start..end)
            }
            b'"' => {
                let start = self.pos + 1;
                let mut idx = start;
                loop {
                    match *self.buf.get(idx)? {
                        b'\\' => idx += 2,
                        b'"' => break,
                        _ => idx += 1,
                    }
                }
                self.pos = idx + 1;
                Some(start..idx)
            }
            _ => {
                let atom = self.atom();
                atom.eq_ignore_ascii_case(b"NIL")
                    .then_some(self.pos..self.pos)
            }
        }
    }

    fn atom(&mut self) -> &'a [u8] {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| !matches!(b, b' ' | b'(' | b')' | b'\r' | b'\n' | b'"' | b'{'))
        {
            self.pos += 1;
        }
        &self.buf[start..self.pos]
    }

    /// Skips one value of any kind: a parenthesized list, a string, or an atom.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'(' => {
                if depth >= NESTING_MAX {
                    return None;
                }
                self.pos += 1;
                loop {
                    self.skip_spaces();
                    if self.peek()? == b')' {
                        self.pos += 1;
                        return Some(());
                    }
                    self.skip_value(depth + 1)?;
                }
            }
            b'{' | b'"' => self.string().map(|_| ()),
            b')' | b'\r' | b'\n' => None,
            _ => {
                // An atom or a key like BODY[HEADER.FIELDS (A B)] inside a list.
                self.key().map(|_| ())
            }
        }
    }
}

/// The first space-separated word of `text` and the rest after the space.
fn split_word(text: &[u8]) -> (&[u8], &[u8]) {
    let text = text.trim_ascii_end();
    match memchr(b' ', text) {
        Some(idx) => (&text[..idx], &text[idx + 1..]),
        None => (text, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pipeline: usize, imap_fetch: ImapFetch, reconnect_every_msgs: u64) -> SessionConfig {
        SessionConfig {
            user: "user0@example.test".to_owned(),
            password: "p\"w".to_owned(),
            pipeline,
            reconnect_every_msgs,
            check_checksums: false,
            imap_fetch,
            imap_examine: false,
        }
    }

    /// Feeds `server` in chunks of `chunk` bytes, keeping the unconsumed rest.
    fn drive(
        session: &mut Session,
        server: &[u8],
        chunk: usize,
    ) -> (Vec<u8>, Vec<MessageRead>, Result<Progress, SessionError>) {
        let now = Instant::now();
        let (mut out, mut reads, mut buf) = (Vec::new(), Vec::new(), Vec::new());
        let mut last = Ok(Progress::NeedInput);
        for piece in server.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            match session.advance(&buf, now, &mut out, &mut reads) {
                Ok((consumed, progress)) => {
                    buf.drain(..consumed);
                    last = Ok(progress);
                    if progress == Progress::LoggedOut {
                        break;
                    }
                }
                Err(error) => return (out, reads, Err(error)),
            }
        }
        (out, reads, last)
    }

    const OPENING: &[u8] = b"* OK [CAPABILITY IMAP4rev1] ready\r\n\
        m1 OK [CAPABILITY IMAP4rev1] Logged in\r\n\
        * FLAGS (\\Seen)\r\n* 2 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 7] UIDs valid\r\n\
        m2 OK [READ-WRITE] Select completed\r\n\
        * 1 FETCH (UID 4 RFC822.SIZE 5)\r\n* 2 FETCH (RFC822.SIZE 3 UID 9)\r\n\
        m3 OK Fetch completed\r\n";

    #[test]
    fn per_message_fetches_in_every_chunking() {
        let server = [
            OPENING,
            b"* 1 FETCH (UID 4 BODY[] {5}\r\nab\r\nc)\r\nm4 OK done\r\n",
            // Items in another order, a FLAGS update, a body with a brace and parens.
            b"* 2 FETCH (BODY[] {3}\r\n{)( UID 9 FLAGS (\\Seen))\r\nm5 OK done\r\n",
            b"* 1 FETCH (UID 4 BODY[] {4}\r\nabcd)\r\nm6 OK done\r\n",
        ]
        .concat();
        for chunk in 1..=server.len() {
            let mut session = Session::new(config(1, ImapFetch::One, 0));
            let (out, reads, last) = drive(&mut session, &server, chunk);
            assert_eq!(last, Ok(Progress::NeedInput), "chunk {chunk}");
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "m1 LOGIN \"user0@example.test\" \"p\\\"w\"\r\nm2 SELECT INBOX\r\n\
                 m3 UID FETCH 1:* (RFC822.SIZE)\r\nm4 UID FETCH 4 (BODY.PEEK[])\r\n\
                 m5 UID FETCH 9 (BODY.PEEK[])\r\nm6 UID FETCH 4 (BODY.PEEK[])\r\n\
                 m7 UID FETCH 9 (BODY.PEEK[])\r\n",
                "chunk {chunk}"
            );
            let sizes: Vec<_> = reads.iter().map(|r| (r.bytes, r.announced_bytes)).collect();
            assert_eq!(
                sizes,
                [(5, Some(5)), (3, Some(3)), (4, Some(5))],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn fetch_all_and_logout() {
        let server = [
            OPENING,
            b"* 1 FETCH (UID 4 BODY[] {5}\r\nabcde)\r\n* 2 FETCH (UID 9 BODY[] {3}\r\nxyz)\r\nm4 OK\r\n",
            b"* BYE logging out\r\nm5 OK Logout completed\r\n",
        ]
        .concat();
        for chunk in [1, 2, 3, 7, server.len()] {
            let mut session = Session::new(config(4, ImapFetch::All, 2));
            let (out, reads, last) = drive(&mut session, &server, chunk);
            assert_eq!(last, Ok(Progress::LoggedOut), "chunk {chunk}");
            let out = String::from_utf8(out).unwrap();
            assert!(
                out.ends_with("m4 UID FETCH 1:* (BODY.PEEK[])\r\nm5 LOGOUT\r\n"),
                "{out}"
            );
            assert_eq!(reads.len(), 2);
        }
    }

    #[test]
    fn pipelined_fetches_wrap_around_the_mailbox() {
        let server = [
            OPENING,
            b"* 1 FETCH (UID 4 BODY[] {5}\r\nabcde)\r\n* 2 FETCH (UID 9 BODY[] {3}\r\nxyz)\r\n",
            b"* 1 FETCH (UID 4 BODY[] {5}\r\nabcde)\r\nm6 OK\r\nm5 OK\r\nm4 OK\r\n",
        ]
        .concat();
        let mut session = Session::new(config(3, ImapFetch::One, 0));
        let (out, reads, last) = drive(&mut session, &server, 11);
        assert_eq!(last, Ok(Progress::NeedInput));
        assert_eq!(reads.len(), 3);
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.ends_with(
                "m4 UID FETCH 4 (BODY.PEEK[])\r\nm5 UID FETCH 9 (BODY.PEEK[])\r\nm6 UID FETCH 4 (BODY.PEEK[])\r\n\
                 m7 UID FETCH 9 (BODY.PEEK[])\r\nm8 UID FETCH 4 (BODY.PEEK[])\r\nm9 UID FETCH 9 (BODY.PEEK[])\r\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn framer_cases() {
        let cases: &[(&[u8], Option<usize>)] = &[
            (b"* OK\r\n", Some(6)),
            (b"* OK", None),
            (b"* 1 FETCH (BODY[] {3}\r\nab", None),
            (b"* 1 FETCH (BODY[] {3}\r\nabc)\r\nm1 OK\r\n", Some(29)),
            (b"* 1 FETCH (BODY[] {0}\r\n)\r\n", Some(26)),
            (b"* 1 FETCH (A {1}\r\n{ B {2}\r\n}\n)\r\nrest", Some(32)),
            (b"* OK text {not a literal}\r\nx", Some(27)),
        ];
        for &(input, expected) in cases {
            let mut framer = Framer::default();
            assert_eq!(
                framer.next(input),
                Ok(expected),
                "{:?}",
                String::from_utf8_lossy(input)
            );
            // The same answer when the input comes byte by byte.
            let mut framer = Framer::default();
            let mut got = None;
            for end in 0..=input.len() {
                if let Some(len) = framer.next(&input[..end]).unwrap() {
                    got = Some(len);
                    break;
                }
            }
            assert_eq!(
                got,
                expected,
                "byte by byte {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn fetch_item_parsing() {
        let response = b"* 3 FETCH (FLAGS (\\Seen $X) BODYSTRUCTURE ((\"text\" NIL) \"mixed\") \
            BODY[HEADER.FIELDS (DATE FROM)] {2}\r\nhi UID 12 INTERNALDATE \"1-Jan-2020 00:00:00 +0000\" \
            RFC822.SIZE 44 BODY[] \"q\\\"x\")\r\n";
        let at = memchr(b'(', response).unwrap();
        let items = parse_fetch(response, at).unwrap();
        assert_eq!(items.uid, Some(12));
        assert_eq!(items.size, Some(44));
        assert_eq!(&response[items.body.unwrap()], b"q\\\"x");
        for bad in [
            &b"* 1 FETCH (UID x)\r\n"[..],
            b"* 1 FETCH (UID 1 BODY[] {9}\r\nab)\r\n",
            b"* 1 FETCH UID 1\r\n",
        ] {
            let at = 10;
            assert!(
                parse_fetch(bad, at).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn refusals_and_empty_mailbox() {
        let cases: &[(&[u8], SessionError)] = &[
            (b"* BYE go away\r\n", SessionError::refused("greeting", b"* BYE go away")),
            (
                b"* OK\r\nm1 NO [AUTHENTICATIONFAILED] no\r\n",
                SessionError::refused("LOGIN", b"m1 NO [AUTHENTICATIONFAILED] no"),
            ),
            (b"* OK\r\nm1 OK\r\n* 0 EXISTS\r\nm2 OK\r\n", SessionError::EmptyMailbox),
            (
                b"* OK\r\nm1 OK\r\n* 1 EXISTS\r\nm2 OK\r\n* 1 FETCH (UID 1 RFC822.SIZE 1)\r\nm3 OK\r\nm4 BAD no\r\n",
                SessionError::refused("UID FETCH", b"m4 BAD no"),
            ),
            (
                b"* OK\r\nm1 OK\r\n* 1 EXISTS\r\nm2 OK\r\n* 1 FETCH (UID 1 RFC822.SIZE 1)\r\nm3 OK\r\nm4 OK\r\n",
                SessionError::Protocol("UID FETCH answered without the body"),
            ),
            (b"* OK\r\nm1 OK\r\n* BYE shutting down\r\n", SessionError::refused("session (BYE)", b"* BYE shutting down")),
            (b"* OK\r\n+ go on\r\n", SessionError::Protocol("unexpected continuation")),
        ];
        for (server, expected) in cases {
            let mut session = Session::new(config(1, ImapFetch::One, 0));
            let (_, _, last) = drive(&mut session, server, 4);
            assert_eq!(
                last,
                Err(expected.clone()),
                "{:?}",
                String::from_utf8_lossy(server)
            );
        }
    }
}
