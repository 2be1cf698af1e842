//! Session tests, no sockets: a `Test` plays the socket loop and the store (one inbox in
//! memory), feeds bytes, and keeps everything the session wrote. Every test's output is
//! also run through imap-codec's response parser (`assert_parses`), so what we write is
//! what a client can read.

mod fetch;
mod limits;
mod props;
mod search;
mod session;
mod sync;

use std::sync::Arc;

use imap_codec::decode::{Decoder, GreetingDecodeError, ResponseDecodeError};
use imap_codec::{GreetingCodec, ResponseCodec};

use super::*;
use crate::mailbox::{Mailbox, MailboxEntry};
use crate::store::MessageId;

/// INTERNALDATE of every test message: 2024-02-29 12:34:56 UTC.
const RECEIVED_AT_MS: u64 = 1_709_210_096_000;
const PASSWORD: &str = "secret";
const PASSWORD_TRY_LATER: &str = "later";

pub const SIMPLE: &[u8] = b"Date: Tue, 2 Jan 2024 10:00:00 +0000\r\n\
    From: Alice <alice@example.test>\r\n\
    To: bob@example.test\r\n\
    Subject: Hello there\r\n\
    Message-ID: <m1@example.test>\r\n\
    \r\n\
    Hello Bob,\r\nthe code is 123456.\r\n";

pub const MULTIPART: &[u8] = b"Date: Wed, 3 Jan 2024 10:00:00 +0000\r\n\
    From: =?utf-8?q?Zo=C3=AB?= <zoe@example.test>\r\n\
    To: bob@example.test\r\n\
    Cc: carol@example.test\r\n\
    Subject: Report\r\n\
    MIME-Version: 1.0\r\n\
    Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
    \r\n\
    --b1\r\n\
    Content-Type: multipart/alternative; boundary=\"b2\"\r\n\
    \r\n\
    --b2\r\n\
    Content-Type: text/plain; charset=utf-8\r\n\
    Content-Transfer-Encoding: quoted-printable\r\n\
    \r\n\
    Caf=C3=A9 report attached.\r\n\
    --b2\r\n\
    Content-Type: text/html; charset=utf-8\r\n\
    \r\n\
    <p>Caf\xc3\xa9 report</p>\r\n\
    --b2--\r\n\
    --b1\r\n\
    Content-Type: application/pdf; name=\"r.pdf\"\r\n\
    Content-Disposition: attachment; filename=\"r.pdf\"\r\n\
    Content-Transfer-Encoding: base64\r\n\
    \r\n\
    JVBERi0xLjQK\r\n\
    --b1--\r\n";

pub const FORWARDED: &[u8] = b"From: dave@example.test\r\n\
    Subject: Fwd: Hello\r\n\
    Content-Type: multipart/mixed; boundary=\"f\"\r\n\
    \r\n\
    --f\r\n\
    Content-Type: text/plain\r\n\
    \r\n\
    See below.\r\n\
    --f\r\n\
    Content-Type: message/rfc822\r\n\
    \r\n\
    From: erin@example.test\r\n\
    Subject: Inner\r\n\
    \r\n\
    Inner text\r\n\
    --f--\r\n";

fn id(uid: u32) -> MessageId {
    MessageId {
        boot_micros: 1,
        shard_idx: 0,
        seq: u64::from(uid),
    }
}

/// The store's side of a test: one inbox.
pub struct Store {
    pub uid_validity: u32,
    pub uid_next: u32,
    /// (entry, bytes), UIDs ascending.
    pub messages: Vec<(MailboxEntry, Vec<u8>)>,
    /// Removed from the store when it is next asked for bytes (a message expiring
    /// between `NeedMessages` and `messages()`).
    pub vanish_on_read: Option<u32>,
}

impl Store {
    pub fn new(bodies: &[&[u8]]) -> Store {
        let mut store = Store {
            uid_validity: 7,
            uid_next: 1,
            messages: Vec::new(),
            vanish_on_read: None,
        };
        for body in bodies {
            store.deliver(body);
        }
        store
    }

    pub fn deliver(&mut self, body: &[u8]) -> u32 {
        let uid = self.uid_next;
        self.uid_next += 1;
        let entry = MailboxEntry {
            id: id(uid),
            uid,
            size_bytes: body.len() as u32,
            received_at_ms: RECEIVED_AT_MS,
            expires_at_ms: RECEIVED_AT_MS + 3_600_000 + u64::from(uid),
            seen: false,
        };
        self.messages.push((entry, body.to_vec()));
        uid
    }

    pub fn remove(&mut self, uid: u32) {
        self.messages.retain(|(entry, _)| entry.uid != uid);
    }

    pub fn mailbox(&self) -> Mailbox {
        Mailbox {
            uid_validity: self.uid_validity,
            uid_next: self.uid_next,
            entries: self.messages.iter().map(|(entry, _)| *entry).collect(),
        }
    }

    pub fn seen(&self, uid: u32) -> bool {
        self.messages
            .iter()
            .any(|(entry, _)| entry.uid == uid && entry.seen)
    }
}

/// A session driven the way the socket loop drives it.
pub struct Test {
    pub session: Session,
    pub store: Store,
    pub out: Vec<u8>,
    /// Bytes given to the session and not consumed yet.
    pub pending: Vec<u8>,
    /// Every event other than `NeedInput`, in order.
    pub events: Vec<Event>,
    /// `Logout` or `Close`, once the session ended.
    pub ended: Option<Event>,
}

pub fn config(starttls_available: bool, tls_required: bool) -> Arc<SessionConfig> {
    Arc::new(SessionConfig {
        hostname: "imap.example.test".to_string(),
        starttls_available,
        tls_required,
    })
}

impl Test {
    pub fn new(store: Store) -> Test {
        Test::with_config(store, config(true, false), false)
    }

    pub fn with_config(store: Store, config: Arc<SessionConfig>, tls_active: bool) -> Test {
        let session = Session::new(config, tls_active);
        let mut out = Vec::new();
        session.greeting(&mut out);
        Test {
            session,
            store,
            out,
            pending: Vec::new(),
            events: Vec::new(),
            ended: None,
        }
    }

    /// A test that has logged in and selected INBOX; output so far is dropped.
    pub fn selected(bodies: &[&[u8]]) -> Test {
        let mut test = Test::new(Store::new(bodies));
        test.feed(b"l LOGIN bob@example.test secret\r\ns SELECT INBOX\r\n");
        assert!(test.text().contains("s OK [READ-WRITE]"), "{}", test.text());
        test.out.clear();
        test.events.clear();
        test
    }

    /// Gives bytes to the session and plays the socket loop until it needs input.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        self.drive();
    }

    pub fn drive(&mut self) {
        while self.ended.is_none() {
            let (consumed, event) = self.session.advance(&self.pending, &mut self.out);
            self.pending.drain(..consumed);
            if event == Event::NeedInput {
                assert!(self.pending.is_empty());
                return;
            }
            self.events.push(event.clone());
            match event {
                Event::NeedInput => unreachable!(),
                Event::Login { password, .. } => {
                    let result = match password.as_str() {
                        PASSWORD => Ok(()),
                        PASSWORD_TRY_LATER => Err(LoginRefused::TryLater),
                        _ => Err(LoginRefused::Invalid),
                    };
                    self.session.logged_in(result, &mut self.out);
                }
                Event::NeedMailbox => self.session.mailbox(self.store.mailbox(), &mut self.out),
                Event::NeedMessages { ids } => {
                    assert!(!ids.is_empty() && ids.len() <= ROUND_MESSAGES_MAX);
                    if let Some(uid) = self.store.vanish_on_read.take() {
                        self.store.remove(uid);
                    }
                    let messages = ids
                        .iter()
                        .map(|id| {
                            let bytes = self
                                .store
                                .messages
                                .iter()
                                .find(|(entry, _)| entry.id == *id);
                            (*id, bytes.map(|(_, bytes)| bytes.clone()))
                        })
                        .collect();
                    self.session.messages(messages, &mut self.out);
                }
                Event::SetFlags { changes } => {
                    for (id, seen) in changes {
                        for (entry, _) in &mut self.store.messages {
                            if entry.id == id {
                                entry.seen = seen;
                            }
                        }
                    }
                }
                Event::Expunge { ids } => {
                    self.store
                        .messages
                        .retain(|(entry, _)| !ids.contains(&entry.id));
                    self.session.expunged(ids, &mut self.out);
                }
                Event::Idle | Event::IdleDone => {}
                Event::StartTls => {
                    // Whatever followed STARTTLS in plaintext is dropped.
                    self.pending.clear();
                    self.session.tls_started();
                }
                Event::Logout | Event::Close => self.ended = Some(event),
            }
        }
    }

    /// The inbox changed: the loop's watch calls `sync`.
    pub fn sync(&mut self) {
        let mailbox = self.store.mailbox();
        self.session.sync(mailbox, &mut self.out);
        self.drive();
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }

    /// The output since the last call, checked with the response parser.
    pub fn take(&mut self) -> String {
        assert_parses(&self.out);
        let text = self.text();
        self.out.clear();
        text
    }
}

/// Runs `input` through a fresh session over `store` in one piece.
pub fn run(store: Store, input: &[u8]) -> Test {
    let mut test = Test::new(store);
    test.feed(input);
    test
}

/// Responses imap-codec 1.0 cannot parse (extensions it does not know); skipped.
const UNPARSED_PREFIXES: [&[u8]; 3] = [b"* ID ", b"* NAMESPACE ", b"* STATUS "];

/// Parses `out` as a greeting (if it starts with one) and responses, to the last byte.
pub fn assert_parses(out: &[u8]) {
    let mut rest = out;
    if rest.starts_with(b"* OK [CAPABILITY") && !rest.starts_with(b"* OK [CAPABILITY IMAP4rev1") {
        panic!("unexpected capability order");
    }
    if rest.starts_with(b"* OK [CAPABILITY") {
        match GreetingCodec::default().decode(rest) {
            Ok((after, _)) => rest = after,
            Err(GreetingDecodeError::Incomplete | GreetingDecodeError::Failed) => {
                panic!(
                    "greeting does not parse: {:?}",
                    String::from_utf8_lossy(out)
                )
            }
        }
    }
    while !rest.is_empty() {
        match ResponseCodec::default().decode(rest) {
            Ok((after, _)) => rest = after,
            Err(ResponseDecodeError::LiteralFound { .. } | ResponseDecodeError::Incomplete)
            | Err(ResponseDecodeError::Failed)
                if UNPARSED_PREFIXES
                    .iter()
                    .any(|prefix| rest.starts_with(prefix)) =>
            {
                let lf_idx = memchr::memchr(b'\n', rest).expect("response line end");
                rest = &rest[lf_idx + 1..];
            }
            Err(error) => panic!(
                "response does not parse ({error:?}): {:?}",
                String::from_utf8_lossy(&rest[..rest.len().min(400)])
            ),
        }
    }
}

/// The tagged status line of `tag` in `text`, e.g. "OK", "NO", "BAD".
pub fn status_of<'t>(text: &'t str, tag: &str) -> Option<&'t str> {
    text.lines()
        .find_map(|line| line.strip_prefix(tag)?.strip_prefix(' '))
        .and_then(|rest| rest.split(' ').next())
}
