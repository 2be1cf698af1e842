//! The selected mailbox as this session has shown it to its client.
//!
//! IMAP sequence numbers belong to the session: message n is the n-th message the client
//! was told about, and it only shifts when the session itself announces an EXPUNGE. So
//! the model is a list of slots in the order announced (UIDs ascending), and the store's
//! newer states (`Mailbox`) are merged into it only at points where the session may
//! speak. A message that left the store stays as a "gone" slot, still counted and still
//! numbered, until an EXPUNGE response may be sent (never during FETCH, STORE or SEARCH,
//! RFC 3501 7.4.1).
//!
//! Flags: `\Seen` is the store's (shared with the HTTP API and other sessions) plus this
//! session's changes, which the session also sends to the store; a change of ours wins
//! over store states that may predate it, until one agrees or a NOOP's fresh state comes
//! (`Slot::seen_sent`). `\Deleted` exists only
//! in this session: it marks messages for this session's EXPUNGE or CLOSE and is not seen
//! by other sessions (the store has no such flag, and a disposable inbox needs none).

use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use crate::imap::reply;
use crate::mailbox::{Mailbox, MailboxEntry};
use crate::store::MessageId;

/// One message as the session knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub id: MessageId,
    pub uid: u32,
    pub size_bytes: u32,
    pub received_at_ms: u64,
    pub expires_at_ms: u64,
    pub seen: bool,
    /// The `\Seen` the client last saw; a difference is announced with an untagged FETCH.
    pub seen_announced: bool,
    /// A `\Seen` this session set and sent to the store, until a store state agrees: a
    /// state recorded before the store applied it must not flip the flag back.
    pub seen_sent: Option<bool>,
    /// Session-local `\Deleted`.
    pub deleted: bool,
    /// Left the store; removed (with an EXPUNGE response) at the next point that allows it.
    pub gone: bool,
}

/// Why a sequence set names nothing usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    /// Sequence numbers on an empty mailbox (RFC 9051 6.4.4 says BAD).
    Empty,
    /// A sequence number past the last message.
    OutOfRange,
}

impl SetError {
    /// The text of the BAD that answers it.
    pub fn text(self) -> &'static str {
        match self {
            SetError::Empty => "No messages in the mailbox",
            SetError::OutOfRange => "Invalid message sequence number",
        }
    }
}

/// What applying the store's state found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Ok,
    /// The inbox has a new UIDVALIDITY: the session's numbering means nothing any more.
    ValidityChanged,
}

/// The selected mailbox. Invariant: `slots` ascend by UID and every UID is at most
/// `uid_high`.
#[derive(Debug)]
pub struct Selected {
    pub read_only: bool,
    pub uid_validity: u32,
    pub uid_next: u32,
    slots: Vec<Slot>,
    /// Highest UID ever shown, so a message the session expunged itself is never taken
    /// for a new one when an older snapshot of the store still lists it.
    uid_high: u32,
    /// The store's newest state, not yet merged (see the module doc).
    pending: Option<Mailbox>,
    /// `pending` was taken after every `\Seen` change this session sent had reached the
    /// store, so it overrides `Slot::seen_sent`.
    pending_fresh: bool,
}

impl Selected {
    /// The model right after SELECT (or EXAMINE, `read_only`): every message announced.
    pub fn new(mailbox: Mailbox, read_only: bool) -> Selected {
        let slots: Vec<Slot> = mailbox.entries.iter().map(slot_of).collect();
        let uid_high = slots.last().map_or(0, |slot| slot.uid);
        Selected {
            read_only,
            uid_validity: mailbox.uid_validity,
            uid_next: mailbox.uid_next.max(uid_high.saturating_add(1)),
            slots,
            uid_high,
            pending: None,
            pending_fresh: false,
        }
    }

    /// The messages in sequence-number order (slot index = sequence number - 1).
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// One message, to change its flags or mark it gone.
    pub fn slot_mut(&mut self, slot_idx: usize) -> Option<&mut Slot> {
        self.slots.get_mut(slot_idx)
    }

    /// Sequence number of the first message without `\Seen`, if any.
    pub fn first_unseen(&self) -> Option<usize> {
        self.slots
            .iter()
            .position(|slot| !slot.seen)
            .map(|idx| idx + 1)
    }

    /// Keeps the store's newest state for the next `apply`. `fresh` when it was taken
    /// after every `\Seen` change this session sent reached the store (a NOOP's state,
    /// asked for after them); a watch's state may be older than our last change.
    pub fn record(&mut self, mailbox: Mailbox, fresh: bool) {
        self.pending = Some(mailbox);
        self.pending_fresh = fresh;
    }

    /// Earliest expiry among messages still in the store, by the newest state known.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        if let Some(mailbox) = &self.pending {
            return mailbox
                .entries
                .iter()
                .map(|entry| entry.expires_at_ms)
                .min();
        }
        self.slots
            .iter()
            .filter(|slot| !slot.gone)
            .map(|slot| slot.expires_at_ms)
            .min()
    }

    /// Merges the recorded store state, then announces every difference the client may
    /// hear now: EXPUNGE (only if `allow_expunge`), EXISTS, and `\Seen` changes.
    pub fn apply(&mut self, out: &mut Vec<u8>, allow_expunge: bool) -> Applied {
        let mut grew = false;
        if let Some(mailbox) = self.pending.take() {
            if mailbox.uid_validity != self.uid_validity {
                return Applied::ValidityChanged;
            }
            let fresh = std::mem::take(&mut self.pending_fresh);
            grew = self.merge(&mailbox, fresh);
        }
        if allow_expunge {
            self.remove(out, true, |slot| slot.gone);
        }
        if grew {
            out.extend_from_slice(b"* ");
            reply::push_number(out, self.slots.len() as u64);
            out.extend_from_slice(b" EXISTS\r\n");
        }
        for (slot_idx, slot) in self.slots.iter_mut().enumerate() {
            if !slot.gone && slot.seen != slot.seen_announced {
                slot.seen_announced = slot.seen;
                write_flags_fetch(out, slot_idx + 1, slot, true);
            }
        }
        Applied::Ok
    }

    /// Removes the slots `doomed` picks, writing `* n EXPUNGE` for each when `announce`.
    /// Highest sequence number first, so every number sent is valid when the client reads
    /// it and none needs shifting. Returns how many were removed.
    pub fn remove(
        &mut self,
        out: &mut Vec<u8>,
        announce: bool,
        doomed: impl Fn(&Slot) -> bool,
    ) -> usize {
        let n_before = self.slots.len();
        for slot_idx in (0..n_before).rev() {
            if doomed(&self.slots[slot_idx]) {
                if announce {
                    out.extend_from_slice(b"* ");
                    reply::push_number(out, slot_idx as u64 + 1);
                    out.extend_from_slice(b" EXPUNGE\r\n");
                }
                self.slots.remove(slot_idx);
            }
        }
        n_before - self.slots.len()
    }

    /// The slot indexes a sequence set (or UID set) names, ascending and without repeats.
    ///
    /// Sequence numbers follow RFC 9051 6.4.4 / RFC 3501 6.4.8: `*` is the last message, a
    /// reversed range `4:2` means `2:4`, any number past the last message is an error and
    /// so is any sequence set on an empty mailbox. UIDs: `*` is the highest UID, a range
    /// names the UIDs inside it that exist (so `559:*` always includes the last message),
    /// and an empty mailbox matches nothing without error. Without `strict` (SEARCH, where
    /// a set is a criterion rather than a target), sequence numbers past the end just match
    /// nothing.
    pub fn resolve(
        &self,
        set: &SequenceSet,
        uid: bool,
        strict: bool,
    ) -> Result<Vec<usize>, SetError> {
        let n_slots = self.slots.len();
        let mut ranges: Vec<(usize, usize)> = Vec::with_capacity(set.0.as_ref().len());
        if uid {
            let Some(last) = self.slots.last() else {
                return Ok(Vec::new());
            };
            let value = |value: &SeqOrUid| match value {
                SeqOrUid::Value(value) => value.get(),
                SeqOrUid::Asterisk => last.uid,
            };
            for sequence in set.0.as_ref() {
                let (low, high) = match sequence {
                    Sequence::Single(single) => (value(single), value(single)),
                    Sequence::Range(from, to) => {
                        let (from, to) = (value(from), value(to));
                        (from.min(to), from.max(to))
                    }
                };
                let start = self.slots.partition_point(|slot| slot.uid < low);
                let end = self.slots.partition_point(|slot| slot.uid <= high);
                if start < end {
                    ranges.push((start, end));
                }
            }
        } else {
            if n_slots == 0 {
                return if strict {
                    Err(SetError::Empty)
                } else {
                    Ok(Vec::new())
                };
            }
            let value = |value: &SeqOrUid| match value {
                SeqOrUid::Value(value) => value.get() as usize,
                SeqOrUid::Asterisk => n_slots,
            };
            for sequence in set.0.as_ref() {
                let (low, high) = match sequence {
                    Sequence::Single(single) => (value(single), value(single)),
                    Sequence::Range(from, to) => {
                        let (from, to) = (value(from), value(to));
                        (from.min(to), from.max(to))
                    }
                };
                if high > n_slots && strict {
                    return Err(SetError::OutOfRange);
                }
                if low <= n_slots {
                    ranges.push((low - 1, high.min(n_slots)));
                }
            }
        }
        ranges.sort_unstable();
        let mut slot_idxs = Vec::new();
        let mut next_idx = 0;
        for (start, end) in ranges {
            for slot_idx in start.max(next_idx)..end {
                slot_idxs.push(slot_idx);
            }
            next_idx = next_idx.max(end);
        }
        Ok(slot_idxs)
    }

    /// Merges the store's state; returns whether new messages were appended.
    fn merge(&mut self, mailbox: &Mailbox, fresh: bool) -> bool {
        let entries = &mailbox.entries;
        let mut entry_idx = 0;
        for slot in self.slots.iter_mut().filter(|slot| !slot.gone) {
            while entry_idx < entries.len() && entries[entry_idx].uid < slot.uid {
                entry_idx += 1;
            }
            match entries.get(entry_idx) {
                Some(entry) if entry.uid == slot.uid => match slot.seen_sent {
                    Some(seen_sent) if seen_sent != entry.seen && !fresh => {}
                    _ => {
                        slot.seen_sent = None;
                        slot.seen = entry.seen;
                    }
                },
                _ => slot.gone = true,
            }
        }
        let n_before = self.slots.len();
        let uid_high = self.uid_high;
        self.slots.extend(
            entries
                .iter()
                .filter(|entry| entry.uid > uid_high)
                .map(slot_of),
        );
        if let Some(last) = self.slots.last() {
            self.uid_high = self.uid_high.max(last.uid);
        }
        self.uid_next = self
            .uid_next
            .max(mailbox.uid_next)
            .max(self.uid_high.saturating_add(1));
        debug_assert!(self.slots.windows(2).all(|pair| pair[0].uid < pair[1].uid));
        self.slots.len() != n_before
    }
}

/// `* n FETCH (UID u FLAGS (...))` for a flag change.
pub fn write_flags_fetch(out: &mut Vec<u8>, seq: usize, slot: &Slot, with_uid: bool) {
    out.extend_from_slice(b"* ");
    reply::push_number(out, seq as u64);
    out.extend_from_slice(b" FETCH (");
    if with_uid {
        out.extend_from_slice(b"UID ");
        reply::push_number(out, u64::from(slot.uid));
        out.push(b' ');
    }
    out.extend_from_slice(b"FLAGS ");
    reply::flags(out, slot.seen, slot.deleted);
    out.extend_from_slice(b")\r\n");
}

fn slot_of(entry: &MailboxEntry) -> Slot {
    Slot {
        id: entry.id,
        uid: entry.uid,
        size_bytes: entry.size_bytes,
        received_at_ms: entry.received_at_ms,
        expires_at_ms: entry.expires_at_ms,
        seen: entry.seen,
        seen_announced: entry.seen,
        seen_sent: None,
        deleted: false,
        gone: false,
    }
}
