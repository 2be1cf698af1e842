//! An inbox as mail clients see it (POP3 and IMAP): its messages with UIDs, sizes and the
//! seen flag, at one moment.
//!
//! The owning shard builds a `Mailbox` from its store (`store::Shard::mailbox`) and sends it
//! to the connection's executor; the protocol sessions (`pop3`, `imap`) work on it with no
//! IO. UIDs are the store's (`store::Shard::numbered`): they only grow and are never reused
//! or restarted, also when an inbox empties and fills again; `uid_validity` changes when the
//! server restarts (restored messages are numbered anew) and after 2^32 messages in a shard.

use crate::store::MessageId;

/// One message of a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxEntry {
    /// The store's id: what the session asks the shard for (bytes, deletion, flags).
    pub id: MessageId,
    /// IMAP UID (and POP3 UIDL source): at least 1, ascending with arrival.
    pub uid: u32,
    /// Exact size of the stored message in octets (CRLF line ends, as served).
    pub size_bytes: u32,
    /// When it was received, Unix ms (IMAP INTERNALDATE).
    pub received_at_ms: u64,
    /// When it expires, Unix ms (an IMAP session wakes then to report the EXPUNGE).
    pub expires_at_ms: u64,
    /// Read by some client (shared with the HTTP API's `seen`).
    pub seen: bool,
}

/// An inbox at one moment, oldest message first (so UIDs ascend).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mailbox {
    /// IMAP UIDVALIDITY: never 0.
    pub uid_validity: u32,
    /// IMAP UIDNEXT: greater than every UID the inbox has ever had in this validity.
    pub uid_next: u32,
    pub entries: Vec<MailboxEntry>,
}

impl Mailbox {
    /// The entry with `uid`, by binary search.
    pub fn by_uid(&self, uid: u32) -> Option<&MailboxEntry> {
        self.entries
            .binary_search_by_key(&uid, |entry| entry.uid)
            .ok()
            .map(|idx| &self.entries[idx])
    }

    /// Sum of the sizes, for POP3 STAT and IMAP STATUS.
    pub fn total_bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|entry| u64::from(entry.size_bytes))
            .sum()
    }
}
