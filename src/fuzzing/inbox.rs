//! The store's side of the mail client harnesses (`pop3.rs`, `imap.rs`): one inbox in
//! memory, filled from fixed sample messages (and one the fuzzer wrote), that answers what
//! `net::pop3_conn` and `net::imap_conn` ask the owning shard for, and that other clients
//! change now and then (new mail, expiry, `\Seen` set elsewhere).
//!
//! Everything here is decided by the harness's input, never by a clock or a random
//! source, so a split run and a whole run of one input see the same inbox.

use crate::mailbox::{Mailbox, MailboxEntry};
use crate::store::MessageId;

/// The messages an inbox is filled from. They cross the paths a hostile or unusual stored
/// message takes: MIME nesting, a forwarded message, lines a POP3 server must dot-stuff
/// (a lone dot, a dot after a bare LF), bare LF line ends, no final line end, no header
/// end, an empty message, 8-bit and invalid UTF-8 bytes, a long line, literal-like text.
pub(super) const SAMPLES: [&[u8]; 8] = [
    b"Date: Tue, 2 Jan 2024 10:00:00 +0000\r\n\
      From: Alice <alice@example.test>\r\n\
      To: bob@example.test\r\n\
      Subject: Hello there\r\n\
      Message-ID: <m1@example.test>\r\n\
      \r\n\
      Hello Bob,\r\nthe code is 123456.\r\n",
    b"From: =?utf-8?q?Zo=C3=AB?= <zoe@example.test>\r\n\
      To: bob@example.test, team: a@x.test, b@y.test;\r\n\
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
      --b1--\r\n",
    b"From: dave@example.test\r\n\
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
      --f--\r\n",
    b"Subject: dots\r\n\r\n.\r\n..\r\n.leading dot\r\nbare LF\n.\nCR only\r.\r\n\r\n.\r\nend",
    b"Subject: no header end, no line end",
    b"",
    b"From: \"A \\\"q\\\" B\" <a@x.test>\r\n\
      Subject: =?utf-8?b?w6k=?= {5}\r\n\
      Content-Type: text/plain; charset=\"utf-8\"; name*=utf-8''%C3%A9\r\n\
      \r\n\
      \xc3\xa9\xff\x00 binary\r\n\
      xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n\
      * 1 EXPUNGE\r\n\
      a OK faked\r\n",
    b"Subject: LF only\nTo: bob@example.test\n\nline one\n.\n..\nlast\n",
];

/// Most messages the inbox holds: new mail stops arriving at this many, so an input that
/// changes the inbox at every step cannot make the harness slow.
const MESSAGES_MAX: usize = 16;
/// UIDVALIDITY of a new inbox (never 0).
const UID_VALIDITY_FIRST: u32 = 7;
/// INTERNALDATE of every message: 2024-02-29 12:34:56 UTC.
const RECEIVED_AT_MS: u64 = 1_709_210_096_000;
/// How long a message lives, so expiry times differ by UID.
const TTL_MS: u64 = 3_600_000;

/// A change another client or the store makes, outside the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    /// New mail arrives.
    Deliver,
    /// A message expires (or is deleted over HTTP).
    Expire,
    /// Someone else flips a message's `\Seen`.
    FlipSeen,
    /// The server restarted: every UID is new (a session must say BYE).
    NewValidity,
}

/// One inbox in memory. Invariant: UIDs ascend and are below `uid_next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Inbox {
    uid_validity: u32,
    uid_next: u32,
    messages: Vec<(MailboxEntry, Vec<u8>)>,
    /// Samples delivered so far, to pick the next one.
    n_delivered: usize,
}

impl Inbox {
    /// An inbox of `picks & 7` samples (the rotation starts at `picks >> 3`, and those bits
    /// also say which are seen), then `fuzzed` if given. UIDs have gaps now and then, as a
    /// store's do once messages of other inboxes took numbers in between.
    pub(super) fn new(picks: u8, fuzzed: Option<&[u8]>) -> Inbox {
        let mut inbox = Inbox {
            uid_validity: UID_VALIDITY_FIRST,
            uid_next: 1,
            messages: Vec::new(),
            n_delivered: usize::from(picks >> 3),
        };
        for message_idx in 0..usize::from(picks & 7) {
            let sample = SAMPLES[inbox.n_delivered % SAMPLES.len()];
            let seen = (picks >> (3 + message_idx % 5)) & 1 != 0;
            inbox.deliver(sample, seen);
            inbox.uid_next += (message_idx % 2) as u32;
        }
        if let Some(fuzzed) = fuzzed {
            inbox.deliver(fuzzed, false);
        }
        inbox
    }

    /// The inbox as the shard hands it to a session (`MailboxOp::Open`).
    pub(super) fn mailbox(&self) -> Mailbox {
        Mailbox {
            uid_validity: self.uid_validity,
            uid_next: self.uid_next,
            entries: self.messages.iter().map(|(entry, _)| *entry).collect(),
        }
    }

    /// A message's bytes, if it is still here (`MailboxOp::Fetch`).
    pub(super) fn bytes(&self, id: MessageId) -> Option<&[u8]> {
        self.messages
            .iter()
            .find(|(entry, _)| entry.id == id)
            .map(|(_, bytes)| bytes.as_slice())
    }

    /// Sets `\Seen` on a message that is still here (`MailboxOp::SetSeen`).
    pub(super) fn set_seen(&mut self, id: MessageId, seen: bool) {
        for (entry, _) in &mut self.messages {
            if entry.id == id {
                entry.seen = seen;
            }
        }
    }

    /// Deletes the messages still here and returns their ids (`MailboxOp::Delete`).
    pub(super) fn delete(&mut self, ids: &[MessageId]) -> Vec<MessageId> {
        let deleted: Vec<MessageId> = self
            .messages
            .iter()
            .map(|(entry, _)| entry.id)
            .filter(|id| ids.contains(id))
            .collect();
        self.messages.retain(|(entry, _)| !ids.contains(&entry.id));
        deleted
    }

    /// Removes one message, as if it expired; `pick` chooses which.
    pub(super) fn expire(&mut self, pick: usize) {
        if !self.messages.is_empty() {
            let message_idx = pick % self.messages.len();
            self.messages.remove(message_idx);
        }
    }

    /// Makes `change`; `pick` chooses the message where it matters.
    pub(super) fn change(&mut self, change: Change, pick: usize) {
        match change {
            Change::Deliver => {
                if self.messages.len() < MESSAGES_MAX {
                    let sample = SAMPLES[self.n_delivered % SAMPLES.len()];
                    self.deliver(sample, false);
                }
            }
            Change::Expire => self.expire(pick),
            Change::FlipSeen => {
                if !self.messages.is_empty() {
                    let message_idx = pick % self.messages.len();
                    let entry = &mut self.messages[message_idx].0;
                    entry.seen = !entry.seen;
                }
            }
            Change::NewValidity => {
                // A restarted store numbers what it restored anew, from 1, under new ids.
                self.uid_validity += 1;
                self.uid_next = 1;
                for (entry, _) in &mut self.messages {
                    entry.id.boot_micros += 1;
                    entry.uid = self.uid_next;
                    self.uid_next += 1;
                }
            }
        }
    }

    fn deliver(&mut self, bytes: &[u8], seen: bool) {
        let uid = self.uid_next;
        self.uid_next += 1;
        self.n_delivered += 1;
        let entry = MailboxEntry {
            id: MessageId {
                boot_micros: 1,
                shard_idx: 0,
                seq: u64::from(uid) + u64::from(self.uid_validity) * 1_000_000,
            },
            uid,
            size_bytes: u32::try_from(bytes.len()).expect("a small message"),
            received_at_ms: RECEIVED_AT_MS,
            expires_at_ms: RECEIVED_AT_MS + TTL_MS + u64::from(uid),
            seen,
        };
        self.messages.push((entry, bytes.to_vec()));
    }
}
