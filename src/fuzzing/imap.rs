//! The `imap_session` target: `imap::Session` fed as `net::imap_conn` feeds it, over the
//! small in-memory inbox of `inbox.rs` that other clients change now and then, with the
//! `advance` contract, the events, every response (through imap-codec's parser) and the
//! independence from the reads' sizes checked.

use std::sync::Arc;

use imap_codec::decode::{Decoder, GreetingDecodeError};
use imap_codec::imap_types::response::{Data, Response, Status};
use imap_codec::{GreetingCodec, ResponseCodec};

use crate::fuzzing::inbox::{Change, Inbox};
use crate::fuzzing::{Fates, Pieces, split_pieces, tail, token_alphabet};
use crate::imap::{Event, LoginRefused, ROUND_MESSAGES_MAX, Session, SessionConfig};
use crate::store::MessageId;

/// The hostname the harness's sessions use.
pub(super) const IMAP_HOSTNAME: &str = "imap.example.test";
/// The socket loop's largest read (`net::imap_conn::INPUT_BYTES_MAX`).
const IMAP_READ_BYTES_MAX: usize = 64 * 1024;
/// Responses imap-codec 1.0 cannot parse (extensions it does not know): checked as CRLF
/// lines of printable text instead (`src/imap/tests/mod.rs` skips the same ones).
const IMAP_UNPARSED_PREFIXES: [&[u8]; 3] = [b"* ID ", b"* NAMESPACE ", b"* STATUS "];
/// Changes to the inbox, by schedule slot: mostly new mail and expiry, a `\Seen` set
/// elsewhere, and rarely a new UIDVALIDITY (which ends the session).
const IMAP_CHANGES: [Change; 8] = [
    Change::Deliver,
    Change::Expire,
    Change::FlipSeen,
    Change::Deliver,
    Change::Expire,
    Change::FlipSeen,
    Change::Deliver,
    Change::NewValidity,
];

/// Tokens of the IMAP alphabet (`token_alphabet`): tags, every command the session knows
/// with typical arguments, FETCH items that reach MIME and BODYSTRUCTURE, SEARCH keys,
/// STORE forms, literals of both kinds (and one past the limit), IDLE's DONE, AUTHENTICATE
/// PLAIN's response, and line ends of every kind.
const IMAP_TOKENS: [&[u8]; 80] = [
    b"\r\n",
    b"a ",
    b"b ",
    b"LOGIN ",
    b"a@example.test ",
    b"secret",
    b"AUTHENTICATE PLAIN",
    b" AGFAZXhhbXBsZS50ZXN0AHNlY3JldA==",
    b"AGFAZXhhbXBsZS50ZXN0AHNlY3JldA==",
    b"SELECT INBOX",
    b"\n",
    b"EXAMINE INBOX",
    b"FETCH ",
    b"\r",
    b"UID ",
    b"1:*",
    b"1",
    b"2",
    b"*",
    b" (FLAGS UID)",
    b" BODY[]",
    b" BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]",
    b" BODYSTRUCTURE",
    b" ENVELOPE",
    b" BODY[1]",
    b" (RFC822.SIZE INTERNALDATE BODY[TEXT]<0.10>)",
    b" BODY[1.MIME]",
    b" BODY.PEEK[2.1]",
    b"SEARCH ",
    b"ALL",
    b"UNSEEN",
    b"TEXT ",
    b"SUBJECT ",
    b"STORE ",
    b" +FLAGS (\\Seen)",
    b" -FLAGS (\\Seen)",
    b" +FLAGS.SILENT (\\Deleted)",
    b" FLAGS (\\Deleted \\Seen)",
    b"EXPUNGE",
    b"CLOSE",
    b"UNSELECT",
    b"NOOP",
    b"CHECK",
    b"IDLE",
    b"DONE",
    b"STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN SIZE)",
    b"CAPABILITY",
    b"STARTTLS",
    b"LOGOUT",
    b"ID NIL",
    b"ID (\"name\" \"fuzz\")",
    b"NAMESPACE",
    b"ENABLE IMAP4rev2",
    b"LIST \"\" *",
    b"LSUB \"\" INBOX",
    b"{5}\r\n",
    b"{5+}\r\n",
    b"{0}\r\n",
    b"{65537}\r\n",
    b"{65537+}\r\n",
    b"\"",
    b"(",
    b")",
    b" ",
    b"hello",
    b"\"INBOX\"",
    b"OR ",
    b"NOT ",
    b"FROM alice ",
    b"HEADER Subject report ",
    b"BODY ",
    b"1:3,5",
    b"4294967295",
    b"0",
    b"COPY 1 INBOX",
    b"APPEND INBOX {3}\r\n",
    b"a LOGIN a@example.test secret\r\n",
    b"s SELECT INBOX\r\n",
    b"f FETCH 1:* (FLAGS BODY.PEEK[])\r\n",
    b"i IDLE\r\nDONE\r\n",
];

/// The IMAP session, fed as `net::imap_conn` feeds it, over an in-memory inbox that
/// changes now and then.
///
/// Layout: `data[0]` selects the options (bit 0: map the stream onto the IMAP alphabet;
/// bit 1: STARTTLS offered; bit 2: TLS required; bit 3: TLS from the connect, as on 993;
/// bit 4: the inbox gets one more message, made of the bytes after the chunking prefix: a
/// length byte, then that many bytes; bit 5: before answering an event, call `advance`
/// again, which must return the same event and read and write nothing; bits 6-7: how
/// often the inbox changes, never or at every 8th, 4th or 2nd event), `data[1]` picks the
/// inbox's messages (`Inbox::new`), `data[2..4]` are the fates of the harness's decisions
/// (`Fates`: logins accepted or refused and why, messages there or expired when fetched,
/// deletions done or failed), then a chunking prefix and the client's bytes.
///
/// The loop's part: every event is answered as `net::imap_conn` answers it; the inbox
/// changes at event points chosen by the input (so both runs see the same changes) and the
/// session hears of them through `sync` where the loop could call it with no input left
/// (after a command's answer, at IDLE's start and end, and at the end of the stream), or
/// from the fresh inbox NOOP, SELECT and STATUS ask for.
///
/// Checks: on `NeedInput` everything was consumed, on other events no more than the input;
/// logins come only when allowed (not logged in, TLS if required); the messages asked
/// for, flagged or deleted are known, distinct, and a round holds 1 to
/// `ROUND_MESSAGES_MAX`; the output is a greeting and then whole responses that
/// imap-codec's response parser reads to the last byte (apart from `* ID`, `* NAMESPACE`
/// and `* STATUS`, which it does not know, checked as lines); EXPUNGE and FETCH never name
/// a sequence number past the messages announced, EXISTS never shrinks the count, and
/// after a BYE at most the tagged answer to LOGOUT follows; and the reads' sizes change
/// nothing: the output, the events and the inbox equal those of a run that gets the whole
/// stream at once (up to the first STARTTLS, after which the client's next bytes depend on
/// the read they came in).
pub fn imap_session(data: &[u8]) {
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
        token_alphabet(stream, &IMAP_TOKENS)
    } else {
        stream.to_vec()
    };
    let setup = ImapSetup {
        config: Arc::new(SessionConfig {
            hostname: IMAP_HOSTNAME.to_string(),
            starttls_available: options & 0x02 != 0,
            tls_required: options & 0x04 != 0,
        }),
        tls_at_connect: options & 0x08 != 0,
        inbox: Inbox::new(*picks, fuzzed),
        fates: u16::from_be_bytes([*fates_high, *fates_low]),
        ask_twice: options & 0x20 != 0,
        change_every: match options >> 6 {
            0 => None,
            1 => Some(8),
            2 => Some(4),
            _ => Some(2),
        },
    };

    let mut split = ImapDriver::new(&setup);
    for piece in Pieces::new(&stream, cuts) {
        split.feed(piece);
    }
    split.finish();
    check_imap_output(&split.out);

    let mut whole = ImapDriver::new(&setup);
    whole.feed(&stream);
    whole.finish();
    check_imap_output(&whole.out);

    let (split_out, split_events) = split.before_first_starttls();
    let (whole_out, whole_events) = whole.before_first_starttls();
    assert_eq!(
        String::from_utf8_lossy(split_out),
        String::from_utf8_lossy(whole_out),
        "the reads' sizes changed the responses"
    );
    assert_eq!(
        split_events, whole_events,
        "the reads' sizes changed the events"
    );
    if split.starttls_at.is_none() {
        assert_eq!(split.ended, whole.ended, "the reads' sizes changed the end");
        assert_eq!(
            split.inbox, whole.inbox,
            "the reads' sizes changed the inbox"
        );
    }
}

/// What both runs of one input start from.
pub(super) struct ImapSetup {
    pub(super) config: Arc<SessionConfig>,
    pub(super) tls_at_connect: bool,
    pub(super) inbox: Inbox,
    pub(super) fates: u16,
    pub(super) ask_twice: bool,
    /// The inbox changes at every this many events; `None`: never.
    pub(super) change_every: Option<usize>,
}

/// Plays `net::imap_conn` and the owning shard for one session.
pub(super) struct ImapDriver {
    session: Session,
    config: Arc<SessionConfig>,
    pub(super) inbox: Inbox,
    /// Every message id the inbox ever held: what the session may name.
    known_ids: Vec<MessageId>,
    /// Bytes read but not yet consumed (`Input::pending` in the socket loop).
    pending: Vec<u8>,
    pub(super) out: Vec<u8>,
    /// Every event but `NeedInput`, in order.
    events: Vec<Event>,
    /// `Logout` or `Close` once the session ended the connection.
    pub(super) ended: Option<Event>,
    fates: Fates,
    ask_twice: bool,
    change_every: Option<usize>,
    /// The inbox changed since the session last heard of it.
    changed: bool,
    /// Output bytes and events when the first STARTTLS was accepted.
    starttls_at: Option<(usize, usize)>,
}

impl ImapDriver {
    pub(super) fn new(setup: &ImapSetup) -> ImapDriver {
        let session = Session::new(setup.config.clone(), setup.tls_at_connect);
        let mut out = Vec::new();
        session.greeting(&mut out);
        let mut driver = ImapDriver {
            session,
            config: setup.config.clone(),
            inbox: setup.inbox.clone(),
            known_ids: Vec::new(),
            pending: Vec::new(),
            out,
            events: Vec::new(),
            ended: None,
            fates: Fates::new(setup.fates),
            ask_twice: setup.ask_twice,
            change_every: setup.change_every,
            changed: false,
            starttls_at: None,
        };
        driver.learn_ids();
        driver
    }

    /// One read from the client, at most the loop's read size at a time; `advance` and the
    /// events it returns until it needs more.
    pub(super) fn feed(&mut self, piece: &[u8]) {
        let mut unread = piece;
        while self.ended.is_none() {
            let (consumed, event) = self.session.advance(&self.pending, &mut self.out);
            assert!(
                consumed <= self.pending.len(),
                "consumed {consumed} of {}",
                self.pending.len()
            );
            self.pending.drain(..consumed);
            if event == Event::NeedInput {
                assert!(
                    self.pending.is_empty(),
                    "NeedInput left {} bytes",
                    self.pending.len()
                );
                if unread.is_empty() {
                    return;
                }
                let n_bytes = unread.len().min(IMAP_READ_BYTES_MAX);
                self.pending.extend_from_slice(&unread[..n_bytes]);
                unread = &unread[n_bytes..];
                continue;
            }
            self.events.push(event.clone());
            self.maybe_change();
            if self.ask_twice && asks_for_an_answer(&event) {
                let mut again_out = Vec::new();
                let again = self.session.advance(&self.pending, &mut again_out);
                assert_eq!(again, (0, event.clone()), "an unanswered event changed");
                assert!(again_out.is_empty(), "an unanswered event wrote");
            }
            self.answer(event, &mut unread);
        }
    }

    /// Does what the socket loop does for one event.
    fn answer(&mut self, event: Event, unread: &mut &[u8]) {
        match event {
            Event::NeedInput => unreachable!("handled by feed"),
            Event::Login {
                user: _,
                password: _,
            } => {
                assert!(self.session.user().is_none(), "a login after login");
                assert!(
                    !self.config.tls_required || self.session.tls_active(),
                    "a login in the clear while TLS is required"
                );
                let result = if self.fates.next() {
                    Ok(())
                } else if self.fates.n_decided().is_multiple_of(2) {
                    Err(LoginRefused::Invalid)
                } else {
                    Err(LoginRefused::TryLater)
                };
                self.session.logged_in(result, &mut self.out);
                self.sync_point();
            }
            Event::NeedMailbox => {
                assert!(self.session.user().is_some(), "the inbox before login");
                self.session.mailbox(self.inbox.mailbox(), &mut self.out);
                // A fresh state: nothing is left to tell.
                self.changed = false;
            }
            Event::NeedMessages { ids } => {
                assert!(
                    (1..=ROUND_MESSAGES_MAX).contains(&ids.len()),
                    "a round of {} messages",
                    ids.len()
                );
                self.check_ids(&ids);
                if !self.fates.next() {
                    // One of them expires between the question and the answer.
                    self.inbox.delete(&ids[..1]);
                    self.changed = true;
                }
                let messages = ids
                    .iter()
                    .map(|&id| (id, self.inbox.bytes(id).map(<[u8]>::to_vec)))
                    .collect();
                self.session.messages(messages, &mut self.out);
            }
            Event::SetFlags { changes } => {
                assert!(!changes.is_empty(), "no flag changes");
                let ids: Vec<MessageId> = changes.iter().map(|(id, _)| *id).collect();
                self.check_ids(&ids);
                for (id, seen) in changes {
                    self.inbox.set_seen(id, seen);
                }
            }
            Event::Expunge { ids } => {
                assert!(!ids.is_empty(), "an expunge of nothing");
                self.check_ids(&ids);
                // The loop reports nothing deleted when the store cannot delete now.
                let deleted = if self.fates.next() {
                    self.inbox.delete(&ids)
                } else {
                    Vec::new()
                };
                self.session.expunged(deleted, &mut self.out);
                self.sync_point();
            }
            Event::Idle => {
                assert!(self.session.is_idle());
                // The loop reads the inbox at once: it may have changed since SELECT.
                self.session.sync(self.inbox.mailbox(), &mut self.out);
                self.changed = false;
            }
            Event::IdleDone => {
                assert!(!self.session.is_idle());
                self.sync_point();
            }
            Event::StartTls => {
                assert!(self.config.starttls_available, "STARTTLS was not offered");
                assert!(!self.session.tls_active(), "STARTTLS inside TLS");
                self.starttls_at
                    .get_or_insert((self.out.len(), self.events.len()));
                // Whatever followed STARTTLS in plaintext is dropped (CVE-2011-0411).
                self.pending.clear();
                *unread = &[];
                self.session.tls_started();
                assert!(self.session.tls_active());
            }
            Event::Logout | Event::Close => self.ended = Some(event),
        }
    }

    /// The end of the client's bytes: the loop, waiting for more, hears of a change and
    /// syncs (in IDLE the session then writes at once).
    pub(super) fn finish(&mut self) {
        if self.ended.is_none() {
            self.sync_point();
        }
    }

    /// The inbox changes at every `change_every`-th event, in the schedule of
    /// `IMAP_CHANGES`.
    fn maybe_change(&mut self) {
        let Some(change_every) = self.change_every else {
            return;
        };
        let n_events = self.events.len();
        if !n_events.is_multiple_of(change_every) {
            return;
        }
        let change = IMAP_CHANGES[(n_events / change_every - 1) % IMAP_CHANGES.len()];
        self.inbox.change(change, n_events);
        self.learn_ids();
        self.changed = true;
    }

    /// A point where the socket loop could sync (a command answered, no input left): if
    /// the inbox changed and a mailbox is selected, the session gets it now.
    fn sync_point(&mut self) {
        if self.changed && self.session.selected() {
            self.session.sync(self.inbox.mailbox(), &mut self.out);
            self.changed = false;
        }
    }

    fn learn_ids(&mut self) {
        for entry in self.inbox.mailbox().entries {
            if !self.known_ids.contains(&entry.id) {
                self.known_ids.push(entry.id);
            }
        }
    }

    /// Ids an event names are distinct, and every one was in the inbox at some time.
    fn check_ids(&self, ids: &[MessageId]) {
        for (id_idx, id) in ids.iter().enumerate() {
            assert!(self.known_ids.contains(id), "{id:?} was never in the inbox");
            assert!(!ids[..id_idx].contains(id), "{id:?} named twice");
        }
    }

    /// Output and events up to the first STARTTLS (all of them without one).
    fn before_first_starttls(&self) -> (&[u8], &[Event]) {
        match self.starttls_at {
            Some((n_out, n_events)) => (&self.out[..n_out], &self.events[..n_events]),
            None => (&self.out, &self.events),
        }
    }
}

/// Events the session returns again until their callback comes (`Session::advance`).
fn asks_for_an_answer(event: &Event) -> bool {
    matches!(
        event,
        Event::Login { .. }
            | Event::NeedMailbox
            | Event::NeedMessages { .. }
            | Event::Expunge { .. }
            | Event::StartTls
    )
}

/// The greeting, then whole responses imap-codec parses to the last byte (the forms it
/// does not know are checked as lines), with the message count the client was told kept
/// to check EXPUNGE, EXISTS and FETCH against it; nothing but LOGOUT's tagged answer
/// after a BYE.
pub(super) fn check_imap_output(out: &[u8]) {
    let mut rest = match GreetingCodec::default().decode(out) {
        Ok((rest, _)) => rest,
        Err(GreetingDecodeError::Incomplete | GreetingDecodeError::Failed) => {
            panic!("greeting does not parse: {:?}", tail(out))
        }
    };
    let mut n_announced: u32 = 0;
    // The next EXISTS is a SELECT's (after its FLAGS) and sets the count afresh.
    let mut selecting = false;
    let mut after_bye = false;
    while !rest.is_empty() {
        let response = match ResponseCodec::default().decode(rest) {
            Ok((after, response)) => {
                rest = after;
                response
            }
            Err(_)
                if IMAP_UNPARSED_PREFIXES
                    .iter()
                    .any(|prefix| rest.starts_with(prefix)) =>
            {
                let line_bytes = memchr::memchr(b'\n', rest).expect("a response line end") + 1;
                let line = &rest[..line_bytes];
                let text = line.strip_suffix(b"\r\n").expect("a line ends in CRLF");
                assert!(
                    text.iter().all(|&b| b == b' ' || b.is_ascii_graphic()),
                    "response line {:?}",
                    String::from_utf8_lossy(line)
                );
                assert!(!text.ends_with(b"}"), "a literal in an unparsed response");
                assert!(!after_bye, "a response after BYE");
                rest = &rest[line_bytes..];
                continue;
            }
            Err(error) => panic!(
                "response does not parse ({error:?}): {:?}",
                String::from_utf8_lossy(&rest[..rest.len().min(400)])
            ),
        };
        if after_bye {
            // LOGOUT: `* BYE` then its tagged OK, and the end.
            let tagged = matches!(
                &response,
                Response::Status(
                    Status::Ok { tag: Some(_), .. }
                        | Status::No { tag: Some(_), .. }
                        | Status::Bad { tag: Some(_), .. }
                )
            );
            assert!(
                tagged && rest.is_empty(),
                "a response after BYE: {response:?}"
            );
        }
        match response {
            Response::Status(Status::Bye { .. }) => after_bye = true,
            Response::Data(Data::Flags(_)) => selecting = true,
            Response::Data(Data::Exists(n_exists)) => {
                assert!(
                    selecting || n_exists >= n_announced,
                    "EXISTS {n_exists} after {n_announced} announced"
                );
                n_announced = n_exists;
                selecting = false;
            }
            Response::Data(Data::Expunge(seq)) => {
                assert!(
                    seq.get() <= n_announced,
                    "EXPUNGE {seq} of {n_announced} announced"
                );
                n_announced -= 1;
            }
            Response::Data(Data::Fetch { seq, .. }) => {
                assert!(
                    seq.get() <= n_announced,
                    "FETCH {seq} of {n_announced} announced"
                );
            }
            _ => {}
        }
    }
}
