//! The SMTP sink that every runtime variant shares: what it answers, and the connection's
//! buffers. No IO and no runtime here; `glommio_sink` and `monoio_sink` only move bytes
//! between a socket and a `Conn`, so the variants differ in the runtime and nothing else.
//!
//! The sink does as little as an SMTP server can: it answers every command from one table,
//! checks no command order (as Postfix's `smtp-sink` checks little), and throws the message
//! away as it streams past, looking only for the end-of-data line. What it keeps per
//! connection is bounded: one input buffer of `INPUT_BYTES`, a command line of at most
//! `LINE_BYTES_MAX`, and the replies to one read's worth of commands.

use std::cell::Cell;
use std::io::{Read as _, Write as _};
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

/// The input buffer of a connection; one read fills at most this much.
pub const INPUT_BYTES: usize = 16 * 1024;
/// The longest command line, CRLF included (RFC 5321 4.5.3.1.4 says 512 for commands; the
/// text-line limit of 1,000 is used so that long `MAIL FROM` parameters fit).
pub const LINE_BYTES_MAX: usize = 1000;
/// Messages longer than this are read to their end and refused; nothing is stored either way.
pub const MESSAGE_BYTES_MAX: u64 = 64 * 1024 * 1024;

const GREETING: &[u8] = b"220 floor ESMTP sink\r\n";
const EHLO_REPLY: &[u8] =
    b"250-floor\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 67108864\r\n250 ENHANCEDSTATUSCODES\r\n";
const HELO_REPLY: &[u8] = b"250 floor\r\n";
/// EHLO when STARTTLS is on offer (a certificate was given, TLS not started yet).
const EHLO_TLS_REPLY: &[u8] =
    b"250-floor\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 67108864\r\n250-STARTTLS\r\n250 ENHANCEDSTATUSCODES\r\n";
const STARTTLS_REPLY: &[u8] = b"220 2.0.0 Ready to start TLS\r\n";
const NO_STARTTLS_REPLY: &[u8] = b"454 4.7.0 TLS not available\r\n";
const MAIL_REPLY: &[u8] = b"250 2.1.0 Ok\r\n";
const RCPT_REPLY: &[u8] = b"250 2.1.5 Ok\r\n";
const DATA_REPLY: &[u8] = b"354 End data with <CR><LF>.<CR><LF>\r\n";
const QUEUED_REPLY: &[u8] = b"250 2.0.0 Ok: queued\r\n";
const TOO_BIG_REPLY: &[u8] = b"552 5.3.4 Message too big\r\n";
const OK_REPLY: &[u8] = b"250 2.0.0 Ok\r\n";
const QUIT_REPLY: &[u8] = b"221 2.0.0 Bye\r\n";
const UNKNOWN_REPLY: &[u8] = b"502 5.5.2 Error: command not recognized\r\n";
const LINE_TOO_LONG_REPLY: &[u8] = b"500 5.5.2 Error: line too long\r\n";
/// Sent to a connection over the `Slots` limit, which is then closed.
pub const BUSY_REPLY: &[u8] = b"421 4.3.2 Too many connections, try again later\r\n";

/// The end-of-data line, with the CRLF that ends the line before it.
const END_OF_DATA: &[u8; 5] = b"\r\n.\r\n";
/// How many bytes of a possible `END_OF_DATA` a read can end in the middle of.
const CARRY_BYTES: usize = END_OF_DATA.len() - 1;

/// What one `Session::feed` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feed {
    /// Bytes of the input used up; the rest is an incomplete command line.
    pub consumed: usize,
    /// The session is over (QUIT, or a line too long): send the replies, then close.
    pub close: bool,
    /// Messages that ended (and got `250 ... queued`) in this input.
    pub n_stored: usize,
    /// STARTTLS was accepted: the 220 is in `out`; everything after it is TLS (input after
    /// the command line is left unconsumed and must be dropped, RFC 3207 4.2).
    pub start_tls: bool,
}

/// One SMTP session's state: which mode it is in, nothing about the mail.
#[derive(Debug)]
pub struct Session {
    mode: Mode,
    /// STARTTLS is on offer: EHLO advertises it and STARTTLS is accepted.
    pub offer_starttls: bool,
}

#[derive(Debug)]
enum Mode {
    Command,
    Data {
        /// The last bytes seen, up to `CARRY_BYTES`: an end-of-data line may straddle reads.
        carry: [u8; CARRY_BYTES],
        carry_len: usize,
        message_bytes: u64,
    },
}

#[derive(Debug, Clone, Copy)]
enum Command {
    Ehlo,
    Helo,
    Mail,
    Rcpt,
    Data,
    Rset,
    Noop,
    Quit,
    StartTls,
    Unknown,
}

impl Session {
    /// A session that has sent its greeting (`greeting` gives the bytes).
    pub fn new() -> Session {
        Session {
            mode: Mode::Command,
            offer_starttls: false,
        }
    }

    /// The 220 greeting the server sends first.
    pub fn greeting() -> &'static [u8] {
        GREETING
    }

    /// Reads as many complete commands (and message data) from `input` as it holds, and
    /// appends their replies to `out`. A command line that has not ended yet is left
    /// unconsumed: feed it again with more bytes after it.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Feed {
        let mut consumed = 0;
        let mut n_stored = 0;
        loop {
            let rest = &input[consumed..];
            match &mut self.mode {
                Mode::Data {
                    carry,
                    carry_len,
                    message_bytes,
                } => match find_end_of_data(&carry[..*carry_len], rest) {
                    Some(n_used) => {
                        let too_big = *message_bytes + n_used as u64 > MESSAGE_BYTES_MAX;
                        out.extend_from_slice(if too_big { TOO_BIG_REPLY } else { QUEUED_REPLY });
                        n_stored += usize::from(!too_big);
                        consumed += n_used;
                        self.mode = Mode::Command;
                    }
                    None => {
                        *message_bytes = message_bytes.saturating_add(rest.len() as u64);
                        *carry_len = keep_tail(carry, *carry_len, rest);
                        return Feed {
                            consumed: input.len(),
                            close: false,
                            n_stored,
                            start_tls: false,
                        };
                    }
                },
                Mode::Command => {
                    let Some(lf_idx) = memchr::memchr(b'\n', rest) else {
                        if rest.len() >= LINE_BYTES_MAX {
                            out.extend_from_slice(LINE_TOO_LONG_REPLY);
                            return Feed {
                                consumed: input.len(),
                                close: true,
                                n_stored,
                                start_tls: false,
                            };
                        }
                        return Feed {
                            consumed,
                            close: false,
                            n_stored,
                            start_tls: false,
                        };
                    };
                    if lf_idx + 1 > LINE_BYTES_MAX {
                        out.extend_from_slice(LINE_TOO_LONG_REPLY);
                        return Feed {
                            consumed: input.len(),
                            close: true,
                            n_stored,
                            start_tls: false,
                        };
                    }
                    let line = &rest[..lf_idx];
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    consumed += lf_idx + 1;
                    let reply = match parse_command(line) {
                        Command::Ehlo if self.offer_starttls => EHLO_TLS_REPLY,
                        Command::Ehlo => EHLO_REPLY,
                        Command::StartTls if self.offer_starttls => {
                            out.extend_from_slice(STARTTLS_REPLY);
                            self.offer_starttls = false;
                            return Feed {
                                consumed,
                                close: false,
                                n_stored,
                                start_tls: true,
                            };
                        }
                        Command::StartTls => NO_STARTTLS_REPLY,
                        Command::Helo => HELO_REPLY,
                        Command::Mail => MAIL_REPLY,
                        Command::Rcpt => RCPT_REPLY,
                        Command::Data => {
                            // The CRLF that ended the DATA line counts: a message can be empty.
                            self.mode = Mode::Data {
                                carry: [b'\r', b'\n', 0, 0],
                                carry_len: 2,
                                message_bytes: 0,
                            };
                            DATA_REPLY
                        }
                        Command::Rset | Command::Noop => OK_REPLY,
                        Command::Quit => {
                            out.extend_from_slice(QUIT_REPLY);
                            return Feed {
                                consumed,
                                close: true,
                                n_stored,
                                start_tls: false,
                            };
                        }
                        Command::Unknown => UNKNOWN_REPLY,
                    };
                    out.extend_from_slice(reply);
                }
            }
        }
    }
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

/// The verb is the first four bytes, in any case, ended by a space or the end of the line.
fn parse_command(line: &[u8]) -> Command {
    if line.eq_ignore_ascii_case(b"STARTTLS") {
        return Command::StartTls;
    }
    let (Some(verb), rest) = (line.get(..4), line.get(4..).unwrap_or_default()) else {
        return Command::Unknown;
    };
    if !(rest.is_empty() || rest[0] == b' ') {
        return Command::Unknown;
    }
    const VERBS: [(&[u8; 4], Command); 8] = [
        (b"EHLO", Command::Ehlo),
        (b"HELO", Command::Helo),
        (b"MAIL", Command::Mail),
        (b"RCPT", Command::Rcpt),
        (b"DATA", Command::Data),
        (b"RSET", Command::Rset),
        (b"NOOP", Command::Noop),
        (b"QUIT", Command::Quit),
    ];
    VERBS
        .iter()
        .find(|(name, _)| verb.eq_ignore_ascii_case(&name[..]))
        .map_or(Command::Unknown, |&(_, command)| command)
}

/// Where `END_OF_DATA` ends in `carry` followed by `input`, counted in bytes of `input`.
///
/// An occurrence that starts in `carry` ends within the first `CARRY_BYTES` bytes of
/// `input`, so a small window over the join is searched first; it always precedes any
/// occurrence that lies wholly in `input`.
fn find_end_of_data(carry: &[u8], input: &[u8]) -> Option<usize> {
    debug_assert!(carry.len() <= CARRY_BYTES);
    let head_len = input.len().min(CARRY_BYTES);
    let mut window = [0u8; 2 * CARRY_BYTES];
    window[..carry.len()].copy_from_slice(carry);
    window[carry.len()..carry.len() + head_len].copy_from_slice(&input[..head_len]);
    let joined = &window[..carry.len() + head_len];
    if let Some(start_idx) = memchr::memmem::find(joined, END_OF_DATA) {
        return Some(start_idx + END_OF_DATA.len() - carry.len());
    }
    memchr::memmem::find(input, END_OF_DATA).map(|start_idx| start_idx + END_OF_DATA.len())
}

/// Keeps the last `CARRY_BYTES` bytes of `carry[..carry_len]` followed by `input` in
/// `carry`; returns how many that is.
fn keep_tail(carry: &mut [u8; CARRY_BYTES], carry_len: usize, input: &[u8]) -> usize {
    if input.len() >= CARRY_BYTES {
        carry.copy_from_slice(&input[input.len() - CARRY_BYTES..]);
        return CARRY_BYTES;
    }
    let n_total = carry_len + input.len();
    let n_keep = n_total.min(CARRY_BYTES);
    let mut joined = [0u8; 2 * CARRY_BYTES];
    joined[..carry_len].copy_from_slice(&carry[..carry_len]);
    joined[carry_len..n_total].copy_from_slice(input);
    carry[..n_keep].copy_from_slice(&joined[n_total - n_keep..n_total]);
    n_keep
}

/// One connection's buffers around a `Session`: where the next read goes, and the replies
/// waiting to be written. The runtime glue reads into `input_buffer()[read_range()]`,
/// calls `received`, writes `output()` out and clears it, until `is_closing`.
///
/// Invariant: `start <= end <= INPUT_BYTES`, and `input` is always `INPUT_BYTES` long (a
/// runtime that needs an owned buffer takes it and puts it back between reads).
/// Invariant: after `received`, `end - start < LINE_BYTES_MAX` (an unfinished command line),
/// so every read has room for at least `INPUT_BYTES - LINE_BYTES_MAX` bytes.
pub struct Conn {
    session: Session,
    input: Box<[u8]>,
    start: usize,
    end: usize,
    /// Replies not yet written: at most the replies to one read's commands (a few KiB).
    output: Vec<u8>,
    closing: bool,
    /// Messages stored since `take_stored` was last called.
    n_stored: usize,
    /// For STARTTLS, when a certificate was given.
    tls_config: Option<Arc<rustls::ServerConfig>>,
    /// After STARTTLS: `input` then holds plaintext, `output` ciphertext.
    tls: Option<Box<rustls::ServerConnection>>,
    /// Under TLS: the session's replies before they are encrypted into `output`.
    plain_out: Vec<u8>,
    /// Under TLS: plaintext rustls gave back, not yet in `input`.
    plain_in: Vec<u8>,
}

impl Conn {
    /// A new connection with the greeting waiting in `output`.
    pub fn new() -> Conn {
        let mut output = Vec::with_capacity(INPUT_BYTES);
        output.extend_from_slice(Session::greeting());
        Conn {
            session: Session::new(),
            input: vec![0; INPUT_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            output,
            closing: false,
            n_stored: 0,
            tls_config: None,
            tls: None,
            plain_out: Vec::new(),
            plain_in: Vec::new(),
        }
    }

    /// A new connection that offers STARTTLS with `config`.
    pub fn with_tls(config: Option<Arc<rustls::ServerConfig>>) -> Conn {
        let mut conn = Conn::new();
        conn.session.offer_starttls = config.is_some();
        conn.tls_config = config;
        conn
    }

    /// The part of `input_buffer()` the next read fills.
    pub fn read_range(&self) -> Range<usize> {
        self.end..INPUT_BYTES
    }

    /// The input buffer. A runtime that reads into owned buffers may `std::mem::take` it
    /// for the read and must put the same buffer back before calling `received`.
    pub fn input_buffer(&mut self) -> &mut Box<[u8]> {
        &mut self.input
    }

    /// `n_read` bytes arrived at `read_range().start`: answer what they complete.
    ///
    /// # Panics
    /// If the input buffer was not put back, or `n_read` exceeds the read range (both are
    /// bugs in the runtime glue).
    pub fn received(&mut self, n_read: usize) {
        assert_eq!(self.input.len(), INPUT_BYTES, "input buffer not put back");
        assert!(n_read <= INPUT_BYTES - self.end, "read past the read range");
        if self.tls.is_none() {
            self.end += n_read;
            self.answer();
            return;
        }
        // The bytes read are ciphertext: all of them to rustls, the plaintext aside, then
        // the plaintext through the session in pieces that fit the input buffer.
        let Some(tls) = self.tls.as_mut() else {
            unreachable!("checked above");
        };
        let mut cipher = &self.input[self.end..self.end + n_read];
        while !cipher.is_empty() && !self.closing {
            let fed = tls.read_tls(&mut cipher).and_then(|_| {
                tls.process_new_packets()
                    .map_err(|error| std::io::Error::other(error.to_string()))
            });
            if fed.is_err() {
                self.closing = true;
                break;
            }
            if let Err(error) = tls.reader().read_to_end(&mut self.plain_in)
                && error.kind() != std::io::ErrorKind::WouldBlock
            {
                self.closing = true;
            }
        }
        while !self.plain_in.is_empty() && !self.closing {
            let n_plain = self.plain_in.len().min(INPUT_BYTES - self.end);
            self.input[self.end..self.end + n_plain].copy_from_slice(&self.plain_in[..n_plain]);
            self.plain_in.drain(..n_plain);
            self.end += n_plain;
            self.answer();
        }
        let Some(tls) = self.tls.as_mut() else {
            unreachable!("TLS does not stop");
        };
        if !self.plain_out.is_empty() {
            // rustls buffers what it cannot send yet; the buffer is bounded by one read's
            // replies, as `output` is without TLS.
            let _ = tls.writer().write_all(&self.plain_out);
            self.plain_out.clear();
        }
        if self.closing {
            // After QUIT's 221 (or an error): tell the client the stream ends here.
            tls.send_close_notify();
        }
        while tls.wants_write() {
            if tls.write_tls(&mut self.output).is_err() {
                self.closing = true;
                break;
            }
        }
    }

    /// Feeds the session what `input` holds and keeps the rest (an unfinished line).
    fn answer(&mut self) {
        let out = if self.tls.is_some() {
            &mut self.plain_out
        } else {
            &mut self.output
        };
        let feed = self.session.feed(&self.input[self.start..self.end], out);
        self.start += feed.consumed;
        self.closing |= feed.close;
        self.n_stored += feed.n_stored;
        if feed.start_tls
            && let Some(config) = &self.tls_config
        {
            match rustls::ServerConnection::new(Arc::clone(config)) {
                Ok(tls) => self.tls = Some(Box::new(tls)),
                Err(_) => self.closing = true,
            }
            // Whatever came after STARTTLS in the clear is dropped (RFC 3207 4.2).
            self.start = self.end;
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            // Only an unfinished command line remains; move it to the front.
            self.input.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        debug_assert!(self.end < LINE_BYTES_MAX);
    }

    /// Replies waiting to be written; the glue clears it once they are.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    /// The messages that ended since the last call: with a journal, their records must be
    /// durable before `output()` (which holds their 250s) is written.
    pub fn take_stored(&mut self) -> usize {
        std::mem::take(&mut self.n_stored)
    }

    /// The session ended: write `output()`, then close.
    pub fn is_closing(&self) -> bool {
        self.closing
    }
}

impl Default for Conn {
    fn default() -> Self {
        Conn::new()
    }
}

/// The connection limit of one sink, shared by its accept loop and its connections.
pub struct Slots {
    open: Cell<usize>,
    max: usize,
}

/// One taken slot, given back when dropped (when the connection's task ends).
pub struct Slot {
    slots: Rc<Slots>,
}

impl Slots {
    /// At most `max` connections at once.
    pub fn new(max: usize) -> Rc<Slots> {
        Rc::new(Slots {
            open: Cell::new(0),
            max,
        })
    }

    /// A slot, or `None` when `max` connections are open.
    pub fn take(self: &Rc<Self>) -> Option<Slot> {
        if self.open.get() >= self.max {
            return None;
        }
        self.open.set(self.open.get() + 1);
        Some(Slot {
            slots: Rc::clone(self),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let open = self.slots.open.get();
        debug_assert!(open > 0);
        self.slots.open.set(open - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` to a new `Conn` in pieces split at `split_idxs` and returns everything it
    /// wrote (greeting included) and whether it closed.
    fn run(input: &[u8], split_idxs: &[usize]) -> (String, bool) {
        let mut conn = Conn::new();
        let mut written = Vec::new();
        let mut from = 0;
        for &to in split_idxs.iter().chain(std::iter::once(&input.len())) {
            let mut piece = &input[from..to];
            while !piece.is_empty() && !conn.is_closing() {
                let range = conn.read_range();
                let n_read = piece.len().min(range.len());
                conn.input_buffer()[range.start..range.start + n_read]
                    .copy_from_slice(&piece[..n_read]);
                conn.received(n_read);
                written.append(conn.output());
                piece = &piece[n_read..];
            }
            from = to;
        }
        written.append(conn.output());
        (String::from_utf8(written).unwrap(), conn.is_closing())
    }

    /// The reply codes, one per reply (continuation lines of EHLO left out).
    fn codes(replies: &str) -> Vec<&str> {
        replies
            .split("\r\n")
            .filter(|line| line.len() >= 4 && &line[3..4] == " ")
            .map(|line| &line[..3])
            .collect()
    }

    const ONE_MESSAGE: &[u8] = b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nSubject: s\r\n\r\nbody\r\n..dot\r\n.\r\nQUIT\r\n";

    #[test]
    fn answers_each_command() {
        let cases: &[(&[u8], &[&str], bool)] = &[
            (b"", &["220"], false),
            (b"EHLO c\r\n", &["220", "250"], false),
            (b"ehlo c\r\nhelo c\r\n", &["220", "250", "250"], false),
            (
                b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n",
                &["220", "250", "250"],
                false,
            ),
            (
                b"RSET\r\nNOOP\r\nnoop\n",
                &["220", "250", "250", "250"],
                false,
            ),
            (b"QUIT\r\nNOOP\r\n", &["220", "221"], true),
            (
                b"VRFY x\r\nEHLOX\r\nEHL\r\n\r\n",
                &["220", "502", "502", "502", "502"],
                false,
            ),
            (
                ONE_MESSAGE,
                &["220", "250", "250", "250", "354", "250", "221"],
                true,
            ),
            // An empty message: the CRLF that ends DATA starts the end-of-data line.
            (
                b"DATA\r\n.\r\nNOOP\r\n",
                &["220", "354", "250", "250"],
                false,
            ),
            // A line that is only a dot inside a longer line does not end the message.
            (
                b"DATA\r\na.\r\nb\r\n.x\r\n.\r\n",
                &["220", "354", "250"],
                false,
            ),
            // Bare LF around the dot does not end the message (no smuggling).
            (
                b"DATA\r\na\n.\nQUIT\r\nb\r\n.\r\n",
                &["220", "354", "250"],
                false,
            ),
            (
                b"DATA\r\na\r\n.\nb\n.\r\n.\r\n",
                &["220", "354", "250"],
                false,
            ),
            (b"DATA\r\nno end", &["220", "354"], false),
        ];
        for (input, expected, closes) in cases {
            let (written, closed) = run(input, &[]);
            assert_eq!(
                &codes(&written),
                expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(closed, *closes, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn every_split_gives_the_same_replies() {
        let pipelined = [ONE_MESSAGE, ONE_MESSAGE].concat();
        let inputs: [&[u8]; 3] = [
            ONE_MESSAGE,
            &pipelined,
            b"DATA\r\n\r\n.\r\r\n.\n\r\n.\r\nRSET\r\nDATA\r\n.\r\nQUIT\r\n",
        ];
        for input in inputs {
            let (whole, whole_closed) = run(input, &[]);
            for split_idx in 0..=input.len() {
                assert_eq!(run(input, &[split_idx]), (whole.clone(), whole_closed));
            }
            let byte_by_byte: Vec<usize> = (1..input.len()).collect();
            assert_eq!(run(input, &byte_by_byte), (whole.clone(), whole_closed));
        }
    }

    /// STARTTLS is advertised and accepted only when offered; what follows it in the same
    /// input is left unconsumed (the connection drops it, RFC 3207 4.2).
    #[test]
    fn starttls_only_when_offered() {
        let mut session = Session::new();
        let mut out = Vec::new();
        session.feed(b"EHLO c\r\nSTARTTLS\r\n", &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("STARTTLS"), "{text}");
        assert!(text.ends_with("454 4.7.0 TLS not available\r\n"), "{text}");

        let mut session = Session::new();
        session.offer_starttls = true;
        let mut out = Vec::new();
        let input = b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<a@x>\r\n";
        let feed = session.feed(input, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("250-STARTTLS\r\n"), "{text}");
        assert!(text.ends_with("220 2.0.0 Ready to start TLS\r\n"), "{text}");
        assert!(feed.start_tls);
        assert_eq!(feed.consumed, b"EHLO c\r\nSTARTTLS\r\n".len());
        assert!(!session.offer_starttls, "offered once");
    }

    #[test]
    fn long_lines_close_the_session() {
        let mut too_long = vec![b'N'; LINE_BYTES_MAX];
        too_long.extend_from_slice(b"\r\n");
        let (written, closed) = run(&too_long, &[]);
        assert_eq!(codes(&written), ["220", "500"]);
        assert!(closed);
        // Without a line end at all, the session ends once the limit is reached.
        let (written, closed) = run(&vec![b'x'; INPUT_BYTES * 2], &[7, 600]);
        assert_eq!(codes(&written), ["220", "500"]);
        assert!(closed);
        // One byte under the limit is a command like any other.
        let mut longest = b"NOOP ".to_vec();
        longest.resize(LINE_BYTES_MAX - 2, b'x');
        longest.extend_from_slice(b"\r\n");
        let (written, closed) = run(&longest, &[3, 999]);
        assert_eq!(codes(&written), ["220", "250"]);
        assert!(!closed);
    }

    #[test]
    fn message_data_longer_than_the_buffer_streams_through() {
        let mut input = b"DATA\r\n".to_vec();
        for _ in 0..(3 * INPUT_BYTES / 80) {
            input.extend_from_slice(&[b'y'; 78]);
            input.extend_from_slice(b"\r\n");
        }
        input.extend_from_slice(b".\r\nQUIT\r\n");
        let (written, closed) = run(&input, &[INPUT_BYTES - 2, 2 * INPUT_BYTES + 1]);
        assert_eq!(codes(&written), ["220", "354", "250", "221"]);
        assert!(closed);
    }

    #[test]
    fn keep_tail_matches_a_naive_model() {
        let stream = b"ab\r\n.\r\ncd\r\n";
        for carry_len in 0..=CARRY_BYTES {
            for input_len in 0..=6 {
                let mut carry = [0u8; CARRY_BYTES];
                carry[..carry_len].copy_from_slice(&stream[..carry_len]);
                let input = &stream[carry_len..carry_len + input_len];
                let n_kept = keep_tail(&mut carry, carry_len, input);
                let all = &stream[..carry_len + input_len];
                let expected = &all[all.len().saturating_sub(CARRY_BYTES)..];
                assert_eq!(&carry[..n_kept], expected);
            }
        }
    }

    #[test]
    fn slots_are_bounded_and_given_back() {
        let slots = Slots::new(2);
        let first = slots.take().unwrap();
        let second = slots.take().unwrap();
        assert!(slots.take().is_none());
        drop(first);
        let third = slots.take().unwrap();
        assert!(slots.take().is_none());
        drop((second, third));
        assert_eq!(slots.open.get(), 0);
    }
}
