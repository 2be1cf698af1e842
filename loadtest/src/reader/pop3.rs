//! The POP3 client session (RFC 1939): `USER`/`PASS`, `LIST`, then `RETR n` for every
//! message, pass after pass, never `DELE`; `QUIT` only to reconnect.
//!
//! No IO (see the session contract in [`crate::reader`]). Replies come strictly in
//! order, so the `RETR`s in flight sit in a FIFO and the oldest owns the next reply.
//! With `pipeline` B, B `RETR`s are written in one go (RFC 2449 PIPELINING) and the next
//! batch only once all B answers are in.
//!
//! A multi-line response is consumed only once its terminating `.` line is in `input`;
//! the search for it resumes where the last call stopped, so a 100 KiB message arriving
//! in many reads is scanned once. Its size is the dot-unstuffed bytes between the status
//! line and the terminator, CRLFs included: what RFC 1939 says `LIST` counts.

use std::collections::VecDeque;
use std::io::Write as _;
use std::time::Instant;

use memchr::{memchr, memmem};

use crate::reader::{
    LINE_BYTES_MAX, MessageRead, Progress, SessionConfig, SessionError, checksum_of,
};

/// Most messages a `LIST` may announce (a bound on the listing's memory).
pub const MESSAGES_LISTED_MAX: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeting,
    User,
    Pass,
    List,
    Reading,
    Quit,
    Done,
}

/// One POP3 client session; see the module docs.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    /// Sizes from `LIST`, by message number - 1.
    sizes: Vec<u64>,
    /// `RETR`s written and not yet answered, oldest first: (message index, written at).
    in_flight: VecDeque<(usize, Instant)>,
    /// Index of the next message to ask for; wraps to 0 at the end of a pass.
    next_idx: usize,
    /// Messages read on this session, for `reconnect_every_msgs`.
    n_read: u64,
    /// Where the search for the terminator of the response at the start of `input`
    /// resumes (bytes already searched, less the terminator's length).
    scan_from: usize,
    /// The unstuffed message, reused, when checksums are checked.
    scratch: Vec<u8>,
}

impl Session {
    /// A session waiting for the greeting.
    pub fn new(config: SessionConfig) -> Self {
        Self {
            config,
            state: State::Greeting,
            sizes: Vec::new(),
            in_flight: VecDeque::new(),
            next_idx: 0,
            n_read: 0,
            scan_from: 0,
            scratch: Vec::new(),
        }
    }

    /// See [`crate::reader::Session::advance`].
    ///
    /// # Errors
    /// A `-ERR` to any command, an unparseable response, or an empty maildrop.
    pub fn advance(
        &mut self,
        input: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
        reads: &mut Vec<MessageRead>,
    ) -> Result<(usize, Progress), SessionError> {
        let mut consumed = 0;
        loop {
            let rest = &input[consumed..];
            match self.state {
                State::Done => return Ok((consumed, Progress::LoggedOut)),
                State::Greeting | State::User | State::Pass | State::Quit => {
                    let Some((line, len)) = status_line(rest)? else {
                        break;
                    };
                    consumed += len;
                    let command = match self.state {
                        State::Greeting => "greeting",
                        State::User => "USER",
                        State::Pass => "PASS",
                        _ => "QUIT",
                    };
                    if !line.starts_with(b"+OK") {
                        return Err(SessionError::refused(command, line));
                    }
                    self.state = match self.state {
                        State::Greeting => {
                            let _ = write!(out, "USER {}\r\n", self.config.user);
                            State::User
                        }
                        State::User => {
                            let _ = write!(out, "PASS {}\r\n", self.config.password);
                            State::Pass
                        }
                        State::Pass => {
                            out.extend_from_slice(b"LIST\r\n");
                            State::List
                        }
                        _ => State::Done,
                    };
                }
                State::List => {
                    let Some(response) = self.multi_line(rest, "LIST")? else {
                        break;
                    };
                    consumed += response.total_len;
                    self.sizes = parse_list(&rest[response.body])?;
                    if self.sizes.is_empty() {
                        return Err(SessionError::EmptyMailbox);
                    }
                    self.state = State::Reading;
                    self.next_batch(now, out);
                }
                State::Reading => {
                    let Some(response) = self.multi_line(rest, "RETR")? else {
                        break;
                    };
                    consumed += response.total_len;
                    let Some((msg_idx, sent_at)) = self.in_flight.pop_front() else {
                        return Err(SessionError::Protocol("response to no command"));
                    };
                    let body = &rest[response.body];
                    let (bytes, checksum_ok) = if self.config.check_checksums {
                        unstuff_into(body, &mut self.scratch);
                        (self.scratch.len() as u64, checksum_of(&self.scratch))
                    } else {
                        (unstuffed_len(body), None)
                    };
                    reads.push(MessageRead {
                        bytes,
                        announced_bytes: Some(self.sizes[msg_idx]),
                        sent_at,
                        checksum_ok,
                    });
                    self.n_read += 1;
                    if self.in_flight.is_empty() {
                        self.next_batch(now, out);
                    }
                }
            }
        }
        Ok((consumed, Progress::NeedInput))
    }

    /// Writes the next batch of `RETR`s, or `QUIT` when the session has read its share.
    fn next_batch(&mut self, now: Instant, out: &mut Vec<u8>) {
        debug_assert!(self.in_flight.is_empty());
        let every = self.config.reconnect_every_msgs;
        if every > 0 && self.n_read >= every {
            out.extend_from_slice(b"QUIT\r\n");
            self.state = State::Quit;
            return;
        }
        for _ in 0..self.config.pipeline.max(1) {
            if self.next_idx >= self.sizes.len() {
                self.next_idx = 0;
            }
            let _ = write!(out, "RETR {}\r\n", self.next_idx + 1);
            self.in_flight.push_back((self.next_idx, now));
            self.next_idx += 1;
        }
    }

    /// The multi-line response at the start of `rest`, once it is complete; a `-ERR`
    /// (single line) to `command` is an error.
    fn multi_line(
        &mut self,
        rest: &[u8],
        command: &'static str,
    ) -> Result<Option<MultiLine>, SessionError> {
        let Some((line, status_len)) = status_line(rest)? else {
            return Ok(None);
        };
        if !line.starts_with(b"+OK") {
            return Err(SessionError::refused(command, line));
        }
        // The status line ends in LF, so a terminator right after it (an empty body) is
        // found by searching from that LF: "\n.\r\n" (a bare "\n.\n" is accepted too).
        let from = (status_len - 1).max(self.scan_from);
        let Some(found) = find_terminator(&rest[from..]) else {
            if rest.len() > crate::reader::RESPONSE_BYTES_MAX {
                return Err(SessionError::Protocol("response too large"));
            }
            // Keep the last 3 bytes in the next search: a terminator may straddle reads.
            self.scan_from = rest.len().saturating_sub(3).max(status_len - 1);
            return Ok(None);
        };
        self.scan_from = 0;
        let (lf_idx, terminator_len) = (from + found.0, found.1);
        Ok(Some(MultiLine {
            body: status_len..lf_idx + 1,
            total_len: lf_idx + terminator_len,
        }))
    }
}

/// A complete multi-line response at the start of the input.
#[derive(Debug)]
struct MultiLine {
    /// The lines between the status line and the terminator, line ends included, still
    /// dot-stuffed.
    body: std::ops::Range<usize>,
    /// Status line, body and terminator.
    total_len: usize,
}

/// The first line of `rest` (without its line end) and its length with the line end.
fn status_line(rest: &[u8]) -> Result<Option<(&[u8], usize)>, SessionError> {
    match memchr(b'\n', rest) {
        Some(lf_idx) => Ok(Some((&rest[..lf_idx], lf_idx + 1))),
        None if rest.len() > LINE_BYTES_MAX => Err(SessionError::Protocol("line too long")),
        None => Ok(None),
    }
}

/// Finds "\n.\r\n" (or "\n.\n"): the LF that ends the last body line and the
/// terminator's length after that LF.
fn find_terminator(haystack: &[u8]) -> Option<(usize, usize)> {
    let mut start = 0;
    while let Some(idx) = memmem::find(&haystack[start..], b"\n.") {
        let lf_idx = start + idx;
        match &haystack[lf_idx + 2..] {
            [b'\r', b'\n', ..] => return Some((lf_idx, 4)),
            [b'\n', ..] => return Some((lf_idx, 3)),
            // Not yet known whether "\n.\r" ends the response: wait for more.
            [] | [b'\r'] => return None,
            _ => start = lf_idx + 1,
        }
    }
    None
}

/// Bytes of `body` without the dot that stuffs every line starting with a dot.
fn unstuffed_len(body: &[u8]) -> u64 {
    let first = usize::from(body.first() == Some(&b'.'));
    (body.len() - first - memmem::find_iter(body, b"\n.").count()) as u64
}

/// `body` without its stuffing dots, into `out` (cleared first).
fn unstuff_into(body: &[u8], out: &mut Vec<u8>) {
    out.clear();
    for line in body.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
}

/// "n size" lines of a `LIST` response, in order; sizes indexed by n - 1.
fn parse_list(body: &[u8]) -> Result<Vec<u64>, SessionError> {
    let mut sizes = Vec::new();
    for line in body.split(|&b| b == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
        let number = words.next().and_then(parse_u64);
        let size = words.next().and_then(parse_u64);
        let (Some(number), Some(size)) = (number, size) else {
            return Err(SessionError::Protocol("malformed LIST line"));
        };
        // RFC 1939: a maildrop's messages are numbered 1..n in order.
        if number != sizes.len() as u64 + 1 {
            return Err(SessionError::Protocol("LIST numbers out of order"));
        }
        if sizes.len() >= MESSAGES_LISTED_MAX {
            return Err(SessionError::Protocol("LIST too long"));
        }
        sizes.push(size);
    }
    Ok(sizes)
}

/// A decimal number of at most 19 digits.
pub(crate) fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::ImapFetch;

    fn config(pipeline: usize, reconnect_every_msgs: u64, check_checksums: bool) -> SessionConfig {
        SessionConfig {
            user: "user0@example.test".to_owned(),
            password: "pw".to_owned(),
            pipeline,
            reconnect_every_msgs,
            check_checksums,
            imap_fetch: ImapFetch::One,
            imap_examine: false,
        }
    }

    /// Feeds `server` to a session in chunks of `chunk` bytes, as an engine would (keeping
    /// the unconsumed rest), and returns what it wrote, what it read, and the outcome.
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

    const LOGIN: &[u8] = b"+OK ready\r\n+OK\r\n+OK logged in\r\n";

    #[test]
    fn reads_every_message_in_every_chunking() {
        let list = b"+OK 2 messages\r\n1 9\r\n2 12\r\n.\r\n";
        // Message 2 has a stuffed line ("..x" is ".x") and a line that is only a dot.
        let retr1 = b"+OK\r\nab\r\ncdef\r\n.\r\n";
        let retr2 = b"+OK 12\r\n..x\r\n..\r\nend\r\n.\r\n";
        let server = [LOGIN, list, retr1, retr2, retr1].concat();
        for chunk in 1..=server.len() {
            let mut session = Session::new(config(1, 0, false));
            let (out, reads, last) = drive(&mut session, &server, chunk);
            assert_eq!(last, Ok(Progress::NeedInput), "chunk {chunk}");
            assert_eq!(
                out,
                b"USER user0@example.test\r\nPASS pw\r\nLIST\r\nRETR 1\r\nRETR 2\r\nRETR 1\r\nRETR 2\r\n",
                "chunk {chunk}"
            );
            let sizes: Vec<_> = reads.iter().map(|r| (r.bytes, r.announced_bytes)).collect();
            assert_eq!(
                sizes,
                [(10, Some(9)), (12, Some(12)), (10, Some(9))],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn unstuffing_counts() {
        let cases: &[(&[u8], u64, &[u8])] = &[
            (b"", 0, b""),
            (b"a\r\n", 3, b"a\r\n"),
            (b"..\r\n", 3, b".\r\n"),
            (b"x\r\n..y\r\n...\r\n", 11, b"x\r\n.y\r\n..\r\n"),
        ];
        for &(body, len, unstuffed) in cases {
            assert_eq!(unstuffed_len(body), len, "{body:?}");
            let mut out = Vec::new();
            unstuff_into(body, &mut out);
            assert_eq!(out, unstuffed, "{body:?}");
        }
    }

    #[test]
    fn empty_body_and_terminator_right_after_status() {
        let server = [LOGIN, b"+OK 1\r\n1 0\r\n.\r\n", b"+OK\r\n.\r\n"].concat();
        for chunk in 1..=server.len() {
            let mut session = Session::new(config(1, 0, false));
            let (_, reads, last) = drive(&mut session, &server, chunk);
            assert_eq!(last, Ok(Progress::NeedInput));
            assert_eq!(reads.len(), 1, "chunk {chunk}");
            assert_eq!(reads[0].bytes, 0);
        }
    }

    #[test]
    fn pipelines_in_batches_and_reconnects() {
        let list = b"+OK\r\n1 3\r\n2 3\r\n3 3\r\n.\r\n";
        let retr = b"+OK\r\na\r\n.\r\n";
        let server = [LOGIN, list, retr, retr, retr, retr, b"+OK bye\r\n"].concat();
        let mut session = Session::new(config(2, 3, false));
        let (out, reads, last) = drive(&mut session, &server, 7);
        assert_eq!(last, Ok(Progress::LoggedOut));
        assert_eq!(reads.len(), 4);
        let text = String::from_utf8(out).unwrap();
        // Batches of two, wrapping to message 1; after 4 >= 3 reads, QUIT.
        assert!(
            text.ends_with("LIST\r\nRETR 1\r\nRETR 2\r\nRETR 3\r\nRETR 1\r\nQUIT\r\n"),
            "{text}"
        );
    }

    #[test]
    fn checks_blaster_checksums() {
        let body = b"hello\r\n";
        let hex = crate::message::checksum_hex(body);
        let hex = std::str::from_utf8(&hex).unwrap();
        let good = format!("X-Blaster-Seq: 1\r\nX-Blaster-Checksum: {hex}\r\n\r\nhello\r\n");
        let bad = good.replace("hello", "hellO");
        let plain = "Subject: x\r\n\r\n.hi\r\n";
        let retr = |m: &str| format!("+OK\r\n{}.\r\n", m.replace("\r\n.", "\r\n.."));
        let list = format!(
            "+OK\r\n1 {}\r\n2 {}\r\n3 {}\r\n.\r\n",
            good.len(),
            bad.len(),
            plain.len()
        );
        let server = [
            LOGIN,
            list.as_bytes(),
            retr(&good).as_bytes(),
            retr(&bad).as_bytes(),
            retr(plain).as_bytes(),
        ]
        .concat();
        let mut session = Session::new(config(1, 0, true));
        let (_, reads, _) = drive(&mut session, &server, 5);
        let got: Vec<_> = reads
            .iter()
            .map(|r| (r.bytes == r.announced_bytes.unwrap(), r.checksum_ok))
            .collect();
        assert_eq!(got, [(true, Some(true)), (true, Some(false)), (true, None)]);
    }

    #[test]
    fn refusals_and_bad_input() {
        let cases: &[(&[u8], SessionError)] = &[
            (
                b"-ERR busy\r\n",
                SessionError::refused("greeting", b"-ERR busy"),
            ),
            (
                b"+OK\r\n+OK\r\n-ERR [AUTH] no\r\n",
                SessionError::refused("PASS", b"-ERR [AUTH] no"),
            ),
            (
                b"+OK\r\n+OK\r\n+OK\r\n+OK 0 messages\r\n.\r\n",
                SessionError::EmptyMailbox,
            ),
            (
                b"+OK\r\n+OK\r\n+OK\r\n+OK\r\n1 x\r\n.\r\n",
                SessionError::Protocol("malformed LIST line"),
            ),
            (
                b"+OK\r\n+OK\r\n+OK\r\n+OK\r\n1 5\r\n.\r\n-ERR no such message\r\n",
                SessionError::refused("RETR", b"-ERR no such message"),
            ),
        ];
        for (server, expected) in cases {
            let mut session = Session::new(config(1, 0, false));
            let (_, _, last) = drive(&mut session, server, 3);
            assert_eq!(
                last,
                Err(expected.clone()),
                "{:?}",
                String::from_utf8_lossy(server)
            );
        }
    }

    #[test]
    fn long_line_is_an_error() {
        let mut session = Session::new(config(1, 0, false));
        let server = vec![b'+'; LINE_BYTES_MAX + 1];
        let (_, _, last) = drive(&mut session, &server, server.len());
        assert_eq!(last, Err(SessionError::Protocol("line too long")));
    }
}
