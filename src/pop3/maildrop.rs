//! The maildrop of one POP3 session: the `Mailbox` snapshot taken at login, numbered
//! 1..n for the whole session (RFC 1939 5), and the deletion marks DELE sets.
//!
//! Nothing is deleted here: QUIT hands the marked ids to the caller (`Event::Update`).
//! Messages that expire meanwhile keep their numbers and stay listed; the caller finds
//! out when it fetches them (`Session::retrieved(None)`).

use crate::mailbox::{Mailbox, MailboxEntry};
use crate::store::MessageId;

/// Why a message number names no message the client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    /// Past the end of the maildrop.
    NoSuchMessage,
    /// Marked by DELE (RFC 1939 5: it may not be referred to again).
    Deleted,
}

#[derive(Debug, Default)]
pub(crate) struct Maildrop {
    entries: Vec<MailboxEntry>,
    /// Sum of every entry's size.
    total_bytes: u64,
    /// One mark per entry. Invariant: `deleted.len() == entries.len()`, `n_deleted` is
    /// the count of marks and `deleted_bytes` the sum of the marked entries' sizes.
    deleted: Vec<bool>,
    n_deleted: usize,
    deleted_bytes: u64,
}

impl Maildrop {
    pub(crate) fn new(mailbox: Mailbox) -> Maildrop {
        let n_entries = mailbox.entries.len();
        Maildrop {
            total_bytes: mailbox.total_bytes(),
            entries: mailbox.entries,
            deleted: vec![false; n_entries],
            n_deleted: 0,
            deleted_bytes: 0,
        }
    }

    /// Messages at login: the highest valid message number.
    pub(crate) fn n_messages(&self) -> usize {
        self.entries.len()
    }

    /// Messages not marked, and their total size: what STAT, LIST and RSET report
    /// (RFC 1939 5: marked messages are not counted).
    pub(crate) fn live_totals(&self) -> (usize, u64) {
        (
            self.entries.len() - self.n_deleted,
            self.total_bytes - self.deleted_bytes,
        )
    }

    /// The entry numbered `number` (from 1), if it exists and is not marked.
    pub(crate) fn entry(&self, number: usize) -> Result<&MailboxEntry, Missing> {
        let Some(entry_idx) = number
            .checked_sub(1)
            .filter(|&idx| idx < self.entries.len())
        else {
            return Err(Missing::NoSuchMessage);
        };
        if self.deleted[entry_idx] {
            return Err(Missing::Deleted);
        }
        Ok(&self.entries[entry_idx])
    }

    /// Unmarked messages with their numbers, in order.
    pub(crate) fn live(&self) -> impl Iterator<Item = (usize, &MailboxEntry)> {
        self.entries
            .iter()
            .zip(&self.deleted)
            .enumerate()
            .filter(|&(_, (_, &deleted))| !deleted)
            .map(|(entry_idx, (entry, _))| (entry_idx + 1, entry))
    }

    /// Marks `number` for deletion at QUIT.
    pub(crate) fn mark(&mut self, number: usize) -> Result<(), Missing> {
        let size_bytes = self.entry(number)?.size_bytes;
        self.deleted[number - 1] = true;
        self.n_deleted += 1;
        self.deleted_bytes += u64::from(size_bytes);
        debug_assert!(self.n_deleted <= self.entries.len());
        Ok(())
    }

    /// RSET: removes every mark.
    pub(crate) fn unmark_all(&mut self) {
        self.deleted.fill(false);
        self.n_deleted = 0;
        self.deleted_bytes = 0;
    }

    /// The ids of the marked messages, in message order.
    pub(crate) fn marked_ids(&self) -> Vec<MessageId> {
        self.entries
            .iter()
            .zip(&self.deleted)
            .filter(|(_, deleted)| **deleted)
            .map(|(entry, _)| entry.id)
            .collect()
    }

    pub(crate) fn n_marked(&self) -> usize {
        self.n_deleted
    }
}
