//! The `pop3_session` target: `pop3::Session` fed as `net::pop3_conn` feeds it, over the
//! small in-memory inbox of `inbox.rs`, with the `advance` contract, the reply grammar,
//! every retrieved message and the independence from the reads' sizes checked.

use std::rc::Rc;

use crate::address::InboxKey;
use crate::fuzzing::inbox::Inbox;
use crate::fuzzing::{Fates, Pieces, split_pieces, tail, token_alphabet};
use crate::mailbox::Mailbox;
use crate::pop3::{
    COMMAND_LINE_BYTES_MAX, Event, LoginRefused, Session, SessionConfig, UNCONSUMED_BYTES_MAX,
    reply,
};

/// The hostname the harness's sessions use.
pub(super) const POP3_HOSTNAME: &str = "pop.example.test";
/// The socket loop's input buffer (`net::pop3_conn::INPUT_BYTES_MAX`): a read takes at
/// most what is free of it.
const POP3_INPUT_BYTES_MAX: usize = 2 * COMMAND_LINE_BYTES_MAX;
/// RFC 2449 4: a response line is at most 512 octets with its CRLF. Only status lines
/// are held to it; a retrieved message's lines are the sender's.
const POP3_STATUS_LINE_BYTES_MAX: usize = 512;
/// Every how many requests the harness leaves one unanswered, when the input says so:
/// `advance` must then answer it as a temporary failure itself.
const POP3_UNANSWERED_EVERY: usize = 4;
/// A line of exactly `COMMAND_LINE_BYTES_MAX` octets with its CRLF, and one octet more.
const POP3_LINE_LONGEST: [u8; COMMAND_LINE_BYTES_MAX - 2] = [b'x'; COMMAND_LINE_BYTES_MAX - 2];
const POP3_LINE_TOO_LONG: [u8; COMMAND_LINE_BYTES_MAX - 1] = [b'x'; COMMAND_LINE_BYTES_MAX - 1];

/// Tokens of the POP3 alphabet (`token_alphabet`): every command word, a login that the
/// harness may accept, SASL PLAIN responses (good, bad base64, wrong authzid), message
/// numbers (0, past the end, too large for a word) and line ends of every kind.
const POP3_TOKENS: [&[u8]; 48] = [
    b"\r\n",
    b"USER ",
    b"PASS ",
    b"AUTH PLAIN",
    b"AUTH PLAIN ",
    b"AUTH",
    b"CAPA",
    b"STLS",
    b"STAT",
    b"LIST",
    b"\n",
    b"UIDL",
    b"UIDL ",
    b"\r",
    b"TOP ",
    b"DELE ",
    b"RSET",
    b"NOOP",
    b"QUIT",
    b"APOP ",
    b"a@example.test",
    b"secret",
    b"AGFAZXhhbXBsZS50ZXN0AHNlY3JldA==",
    b"YUBleGFtcGxlLnRlc3QAYUBleGFtcGxlLnRlc3QAc2VjcmV0",
    b"YkB4LnRlc3QAYUBleGFtcGxlLnRlc3QAcHc=",
    b"AGFAZXhhbXBsZS50ZXN0AHNlY3JldA",
    b"*",
    b"=",
    b" ",
    b"LIST ",
    b"RETR ",
    b"\t",
    b"1",
    b"2",
    b"3",
    b"0",
    b"9",
    b"18446744073709551616",
    b"B@X.Sub.Example.Test",
    b"c@elsewhere.test",
    "ü@example.test".as_bytes(),
    b"\xff\xfe",
    &POP3_LINE_LONGEST,
    &POP3_LINE_TOO_LONG,
    b"RETR 1\r\n",
    b"TOP 1 0\r\n",
    b"DELE 1\r\n",
    b"USER a@example.test\r\nPASS secret\r\n",
];

/// The POP3 session, fed as `net::pop3_conn` feeds it, over an in-memory inbox.
///
/// Layout: `data[0]` selects the options (bit 0: map the stream onto the POP3 alphabet;
/// bit 1: STLS offered; bit 2: TLS required; bit 3: TLS from the connect, as on 995;
/// bit 4: the inbox gets one more message, made of the bytes after the chunking prefix:
/// a length byte, then that many bytes; bit 5: leave every fourth request unanswered),
/// `data[1]` picks the inbox's messages (`Inbox::new`), `data[2..4]` are the fates of the
/// harness's decisions (`Fates`: logins accepted or refused and why, messages still there
/// or expired, deletions done or failed), then a chunking prefix and the client's bytes.
///
/// Checks the `advance` contract (consumed within the input; on `NeedInput` the rest is
/// one partial line without LF, under `COMMAND_LINE_BYTES_MAX`; a request's line consumed
/// and pipelined lines left), the events (logins name a canonical inbox key and come only
/// over TLS when TLS is required; retrievals and deletions name messages of the maildrop,
/// RETR marks seen and TOP does not; deletions are distinct and in order), the replies
/// (each a CRLF status line of printable ASCII within 512 octets starting `+OK`, `-ERR` or
/// the SASL `+ `, and the multi-line ones run to their `.` line), every retrieved message
/// (exactly the stored message, or for TOP the part a naive model cuts, dot-stuffed, with
/// its octet count), and that the reads' sizes change nothing: the replies and the inbox
/// equal those of one run that gets the whole stream at once (up to the first STLS, after
/// which the client's next bytes depend on the read they came in).
pub fn pop3_session(data: &[u8]) {
    let [options, picks, fates_high, fates_low, rest @ ..] = data else {
        return;
    };
    let (cuts, stream) = split_pieces(rest);
    let (fuzzed, stream) = if options & 0x10 != 0 {
        let Some((&n_bytes, stream)) = stream.split_first() else {
            return;
        };
        let (fuzzed, stream) = stream.split_at(usize::from(n_bytes).min(stream.len()));
        (Some(fuzzed), stream)
    } else {
        (None, stream)
    };
    let stream = if options & 0x01 != 0 {
        token_alphabet(stream, &POP3_TOKENS)
    } else {
        stream.to_vec()
    };
    let config = Rc::new(SessionConfig {
        hostname: POP3_HOSTNAME.to_string(),
        starttls_available: options & 0x02 != 0,
        tls_required: options & 0x04 != 0,
    });
    let setup = Pop3Setup {
        config,
        tls_at_connect: options & 0x08 != 0,
        inbox: Inbox::new(*picks, fuzzed),
        fates: u16::from_be_bytes([*fates_high, *fates_low]),
        leave_unanswered: options & 0x20 != 0,
    };

    let mut split = Pop3Driver::new(&setup);
    for piece in Pieces::new(&stream, cuts) {
        split.feed(piece);
    }
    check_pop3_replies(&split.out);

    let mut whole = Pop3Driver::new(&setup);
    whole.feed(&stream);
    check_pop3_replies(&whole.out);

    assert_eq!(
        String::from_utf8_lossy(split.before_first_stls()),
        String::from_utf8_lossy(whole.before_first_stls()),
        "the reads' sizes changed the replies"
    );
    if split.stls_at.is_none() {
        assert_eq!(split.ended, whole.ended, "the reads' sizes changed the end");
        assert_eq!(
            split.inbox, whole.inbox,
            "the reads' sizes changed the inbox"
        );
    }
}

/// What both runs of one input start from.
pub(super) struct Pop3Setup {
    pub(super) config: Rc<SessionConfig>,
    pub(super) tls_at_connect: bool,
    pub(super) inbox: Inbox,
    pub(super) fates: u16,
    pub(super) leave_unanswered: bool,
}

/// Plays `net::pop3_conn` and the owning shard for one session: keeps what `advance`
/// leaves, answers its requests from the inbox, and records all replies.
pub(super) struct Pop3Driver {
    session: Session,
    config: Rc<SessionConfig>,
    pub(super) inbox: Inbox,
    /// The inbox at login: what the session's message numbers name.
    pub(super) maildrop: Option<Mailbox>,
    /// Bytes read but not yet consumed (`Input::pending` in the socket loop).
    pending: Vec<u8>,
    pub(super) out: Vec<u8>,
    /// `Quit` or `Close` once the session ended the connection.
    pub(super) ended: Option<Event>,
    fates: Fates,
    leave_unanswered: bool,
    /// Requests (logins, retrievals, updates) seen, to leave every few unanswered.
    n_requests: usize,
    /// Reply bytes when the first STLS was answered.
    pub(super) stls_at: Option<usize>,
}

impl Pop3Driver {
    pub(super) fn new(setup: &Pop3Setup) -> Pop3Driver {
        let session = Session::new(setup.config.clone(), setup.tls_at_connect);
        let mut out = Vec::new();
        session.greeting(&mut out);
        Pop3Driver {
            session,
            config: setup.config.clone(),
            inbox: setup.inbox.clone(),
            maildrop: None,
            pending: Vec::new(),
            out,
            ended: None,
            fates: Fates::new(setup.fates),
            leave_unanswered: setup.leave_unanswered,
            n_requests: 0,
            stls_at: None,
        }
    }

    /// One read's worth of bytes from the client, taken the way the socket loop takes
    /// them: into the free part of its input buffer, then `advance` until it needs more.
    pub(super) fn feed(&mut self, piece: &[u8]) {
        // Bytes of this read still "in the socket".
        let mut unread = piece;
        while self.ended.is_none() {
            let (consumed, event) = self.session.advance(&self.pending, &mut self.out);
            assert!(
                consumed <= self.pending.len(),
                "consumed {consumed} of {}",
                self.pending.len()
            );
            let ends_a_line = consumed > 0 && self.pending[consumed - 1] == b'\n';
            self.pending.drain(..consumed);
            match &event {
                // A request or STLS consumed exactly the line that asked: what was
                // pipelined after it waits for the answer.
                Event::Login { .. } | Event::Retrieve { .. } | Event::Update { .. } => {
                    assert!(ends_a_line, "{event:?} consumed {consumed} bytes")
                }
                Event::StartTls => assert!(ends_a_line, "STLS consumed {consumed} bytes"),
                // QUIT's line, or nothing once the session has ended.
                Event::Quit => assert!(consumed == 0 || ends_a_line, "QUIT consumed {consumed}"),
                Event::NeedInput | Event::Close => {}
            }
            match event {
                Event::NeedInput => {
                    assert!(
                        self.pending.len() < COMMAND_LINE_BYTES_MAX
                            && self.pending.len() <= UNCONSUMED_BYTES_MAX,
                        "{} bytes left unconsumed",
                        self.pending.len()
                    );
                    assert!(
                        !self.pending.contains(&b'\n'),
                        "a complete line was left unconsumed"
                    );
                    if unread.is_empty() {
                        return;
                    }
                    let room = POP3_INPUT_BYTES_MAX - self.pending.len();
                    let n_bytes = room.min(unread.len());
                    self.pending.extend_from_slice(&unread[..n_bytes]);
                    unread = &unread[n_bytes..];
                }
                Event::Login { user, password: _ } => {
                    self.check_login(&user);
                    if self.leaves_unanswered() {
                        continue;
                    }
                    let result = if self.fates.next() {
                        Ok(self.inbox.mailbox())
                    } else {
                        Err(match self.fates.n_decided() % 3 {
                            0 => LoginRefused::Invalid,
                            1 => LoginRefused::TryLater,
                            _ => LoginRefused::InUse,
                        })
                    };
                    if let Ok(mailbox) = &result {
                        self.maildrop = Some(mailbox.clone());
                    }
                    self.session.logged_in(result, &mut self.out);
                }
                Event::Retrieve {
                    id,
                    top_lines,
                    mark_seen,
                } => {
                    assert!(
                        self.in_maildrop(id),
                        "retrieving {id:?}, not in the maildrop"
                    );
                    assert_eq!(mark_seen, top_lines.is_none(), "only RETR marks seen");
                    assert!(self.session.is_transaction());
                    if self.leaves_unanswered() {
                        continue;
                    }
                    if !self.fates.next() {
                        // It expired since login.
                        self.inbox.delete(&[id]);
                    }
                    let message = self.inbox.bytes(id).map(<[u8]>::to_vec);
                    if message.is_some() && mark_seen {
                        self.inbox.set_seen(id, true);
                    }
                    let reply_start = self.out.len();
                    self.session.retrieved(message.as_deref(), &mut self.out);
                    check_retrieved(&self.out[reply_start..], message.as_deref(), top_lines);
                }
                Event::Update { delete } => {
                    assert!(!delete.is_empty(), "an update without deletions");
                    let maildrop = self.maildrop.as_ref().expect("an update after login");
                    let positions: Vec<usize> = delete
                        .iter()
                        .map(|id| {
                            maildrop
                                .entries
                                .iter()
                                .position(|entry| entry.id == *id)
                                .expect("deleting a message of the maildrop")
                        })
                        .collect();
                    assert!(
                        positions.windows(2).all(|pair| pair[0] < pair[1]),
                        "deletions out of order or repeated: {positions:?}"
                    );
                    if self.leaves_unanswered() {
                        continue;
                    }
                    let result = if self.fates.next() {
                        Ok(self.inbox.delete(&delete).len())
                    } else {
                        Err(())
                    };
                    self.session.updated(result, &mut self.out);
                }
                Event::StartTls => {
                    assert!(self.config.starttls_available, "STLS was not offered");
                    assert!(!self.session.tls_active(), "STLS inside TLS");
                    assert!(self.out.ends_with(reply::STLS_READY));
                    self.stls_at.get_or_insert(self.out.len());
                    // CVE-2011-0411: what came with the STLS line is dropped; the client's
                    // next reads are its first inside TLS.
                    self.pending.clear();
                    unread = &[];
                    self.session.tls_started();
                    assert!(self.session.tls_active());
                }
                Event::Quit | Event::Close => self.ended = Some(event),
            }
        }
    }

    /// A login names a canonical inbox key, and only travels inside TLS when TLS is
    /// required (RFC 2595 4).
    fn check_login(&self, user: &str) {
        let key = InboxKey::new(user).expect("a login names a valid address");
        assert_eq!(key.as_str(), user, "a login's inbox key is not canonical");
        assert!(
            !self.config.tls_required || self.session.tls_active(),
            "a login in the clear while TLS is required"
        );
        assert!(!self.session.is_transaction(), "a login after login");
    }

    fn in_maildrop(&self, id: crate::store::MessageId) -> bool {
        self.maildrop
            .as_ref()
            .is_some_and(|maildrop| maildrop.entries.iter().any(|entry| entry.id == id))
    }

    /// Whether to leave this request unanswered (the loop then calls `advance` again,
    /// which must answer it as a temporary failure).
    fn leaves_unanswered(&mut self) -> bool {
        self.n_requests += 1;
        self.leave_unanswered && self.n_requests.is_multiple_of(POP3_UNANSWERED_EVERY)
    }

    /// Replies up to the first STLS (all of them without one).
    fn before_first_stls(&self) -> &[u8] {
        &self.out[..self.stls_at.unwrap_or(self.out.len())]
    }
}

/// The reply to RETR or TOP: `+OK n octets`, the message (or for TOP the part
/// `top_model` cuts) dot-stuffed, ended by a CRLF if it lacks one and the `.` line; or the
/// `-ERR [SYS/TEMP]` line for a message that is gone.
fn check_retrieved(reply: &[u8], message: Option<&[u8]>, top_lines: Option<usize>) {
    let Some(message) = message else {
        assert!(
            reply.starts_with(b"-ERR [SYS/TEMP] message ") && reply.ends_with(b"\r\n"),
            "a gone message was answered {:?}",
            String::from_utf8_lossy(reply)
        );
        return;
    };
    let sent = match top_lines {
        Some(top_lines) => top_model(message, top_lines),
        None => message,
    };
    let mut expected = format!("+OK {} octets\r\n", sent.len()).into_bytes();
    let mut line_start = true;
    for &byte in sent {
        if line_start && byte == b'.' {
            expected.push(b'.');
        }
        expected.push(byte);
        line_start = byte == b'\n';
    }
    if !sent.is_empty() && !sent.ends_with(b"\r\n") {
        expected.extend_from_slice(b"\r\n");
    }
    expected.extend_from_slice(b".\r\n");
    assert!(
        reply == expected,
        "retrieved {:?}, expected {:?}",
        String::from_utf8_lossy(reply),
        String::from_utf8_lossy(&expected)
    );
}

/// The part of a message TOP sends (RFC 1939 7), written from the RFC rather than from
/// `pop3::transaction`: the lines (ending at LF) up to and including the first empty one
/// (CRLF or LF alone), then `body_lines` more lines; all of it when it has fewer.
pub(super) fn top_model(message: &[u8], body_lines: usize) -> &[u8] {
    let mut lines = message.split_inclusive(|&b| b == b'\n');
    let mut end_idx = 0;
    for line in lines.by_ref() {
        end_idx += line.len();
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    for line in lines.take(body_lines) {
        end_idx += line.len();
    }
    &message[..end_idx]
}

/// Every reply is a status line: CRLF-ended printable ASCII within 512 octets, starting
/// `+OK` or `-ERR` (then a space or the line end) or the SASL continuation `+ `. The
/// multi-line ones (CAPA, LIST, UIDL, AUTH's mechanism list, a retrieved message) go on to
/// their first line that is a lone `.`: listings as printable lines, messages as anything.
pub(super) fn check_pop3_replies(out: &[u8]) {
    let mut lines = out.split_inclusive(|&b| b == b'\n');
    while let Some(line) = lines.next() {
        let text = line
            .strip_suffix(b"\r\n")
            .unwrap_or_else(|| panic!("a reply line without CRLF: {:?}", tail(line)));
        assert!(
            line.len() <= POP3_STATUS_LINE_BYTES_MAX,
            "a status line of {} octets",
            line.len()
        );
        assert!(
            text.iter().all(|&b| b == b' ' || b.is_ascii_graphic()),
            "status line {:?}",
            String::from_utf8_lossy(text)
        );
        let status_word = |word: &[u8]| {
            text.strip_prefix(word)
                .is_some_and(|rest| rest.is_empty() || rest[0] == b' ')
        };
        assert!(
            status_word(b"+OK") || status_word(b"-ERR") || line == reply::SASL_CONTINUE,
            "not a status line: {:?}",
            String::from_utf8_lossy(text)
        );
        let Some(is_message) = multi_line(line) else {
            continue;
        };
        loop {
            let Some(line) = lines.next() else {
                panic!("a multi-line reply without its end: {:?}", tail(out));
            };
            if line == reply::END {
                break;
            }
            if !is_message {
                let text = line
                    .strip_suffix(b"\r\n")
                    .expect("a listing line ends in CRLF");
                assert!(
                    text.iter().all(|&b| b == b' ' || b.is_ascii_graphic()),
                    "listing line {:?}",
                    String::from_utf8_lossy(text)
                );
            }
        }
    }
}

/// Whether `status` opens a multi-line reply: `Some(true)` for a retrieved message,
/// `Some(false)` for a listing, `None` for a one-line reply. The opening lines are the ones
/// `pop3::reply` writes; no one-line reply looks like them.
fn multi_line(status: &[u8]) -> Option<bool> {
    let mechanisms_header = reply::SASL_MECHANISMS
        .split_inclusive(|&b| b == b'\n')
        .next()
        .expect("a first line");
    if status == reply::CAPA_HEADER || status == reply::UIDL_HEADER || status == mechanisms_header {
        return Some(false);
    }
    let text = std::str::from_utf8(status).ok()?.strip_suffix("\r\n")?;
    let rest = text.strip_prefix("+OK ")?;
    let (number, rest) = rest.split_once(' ')?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if rest == "octets" {
        return Some(true);
    }
    // `+OK n messages (m octets)`: the LIST header.
    let octets = rest.strip_prefix("messages (")?.strip_suffix(" octets)")?;
    (!octets.is_empty() && octets.bytes().all(|b| b.is_ascii_digit())).then_some(false)
}
