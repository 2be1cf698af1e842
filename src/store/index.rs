//! Inbox index of one shard: inbox key -> the sequence numbers of its messages, oldest
//! first, with each message's seen flag and the newest seq it ever held.
//!
//! Messages themselves live once in the shard's ring, whatever the number of recipients;
//! an inbox only lists sequence numbers. Sequence numbers only grow, so every inbox is sorted,
//! which makes "newer than `after`" a binary search and lets expiry, which always removes the
//! shard's oldest message, find it at the front of each of its inboxes.
//!
//! The index also keeps an estimate of its own heap use, so the shard can bound metadata as
//! well as message bytes.

use std::collections::{HashMap, VecDeque};

/// Estimated heap bytes of one inbox besides its key: the hash table slot (a `Box<str>`, a
/// `VecDeque` and the newest seq, 56 bytes, plus control byte and spare capacity) and the
/// deque's first buffer.
pub const INBOX_OVERHEAD_BYTES: usize = 104;
/// Estimated heap bytes per sequence number held in an inbox (8, doubled for the spare
/// capacity a growing `VecDeque` keeps).
pub const INBOX_SEQ_BYTES: usize = 16;

/// One inbox: its messages' sequence numbers, oldest first, each with its seen flag, and
/// the newest seq it ever held (mail clients' UIDNEXT is one past it).
///
/// A slot holds `seq << 1 | seen`, so the flag costs no memory (seqs stay far below 2^63).
#[derive(Debug)]
pub struct Inbox {
    slots: VecDeque<u64>,
    /// The newest seq this inbox ever held, deleted or not.
    last_seq: u64,
}

impl Inbox {
    fn new(seq: u64) -> Inbox {
        Inbox {
            slots: VecDeque::new(),
            last_seq: seq,
        }
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Never true for an inbox the index holds.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The seq at position `idx` (0 = oldest).
    pub fn seq_at(&self, idx: usize) -> u64 {
        self.slots[idx] >> 1
    }

    /// Whether the message at position `idx` was seen.
    pub fn seen_at(&self, idx: usize) -> bool {
        self.slots[idx] & 1 == 1
    }

    /// The newest seq held.
    pub fn newest(&self) -> Option<u64> {
        self.slots.back().map(|slot| slot >> 1)
    }

    /// The oldest seq held.
    pub fn oldest(&self) -> Option<u64> {
        self.slots.front().map(|slot| slot >> 1)
    }

    /// Position of `seq`, by binary search.
    pub fn position(&self, seq: u64) -> Option<usize> {
        self.slots.binary_search_by_key(&seq, |slot| slot >> 1).ok()
    }

    /// The number of leading messages whose seq satisfies `pred` (which must be true for a
    /// prefix): a binary search.
    pub fn partition_point(&self, pred: impl Fn(u64) -> bool) -> usize {
        self.slots.partition_point(|slot| pred(slot >> 1))
    }

    /// Every (seq, seen), oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (u64, bool)> + ExactSizeIterator + '_ {
        self.slots.iter().map(|slot| (slot >> 1, slot & 1 == 1))
    }

    /// The newest seq this inbox ever held, deleted or not.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }
}

/// Inbox key -> its messages, oldest first.
///
/// Invariants: no inbox is empty (an inbox that loses its last message is removed), each is
/// strictly increasing, and `meta_bytes` is the sum of the estimates of the inboxes held.
#[derive(Default)]
pub struct InboxIndex {
    inboxes: HashMap<Box<str>, Inbox>,
    /// Estimated heap bytes, see `INBOX_OVERHEAD_BYTES` and `INBOX_SEQ_BYTES`.
    meta_bytes: usize,
}

impl InboxIndex {
    /// An empty index.
    pub fn new() -> InboxIndex {
        InboxIndex::default()
    }

    /// Number of non-empty inboxes.
    pub fn len(&self) -> usize {
        self.inboxes.len()
    }

    /// True when no inbox holds a message.
    pub fn is_empty(&self) -> bool {
        self.inboxes.is_empty()
    }

    /// Estimated heap bytes of the index.
    pub fn meta_bytes(&self) -> usize {
        self.meta_bytes
    }

    /// Estimated heap bytes that adding one message to a new inbox `key` costs at most.
    pub fn meta_bytes_for_new(key: &str) -> usize {
        INBOX_OVERHEAD_BYTES + key.len() + INBOX_SEQ_BYTES
    }

    /// The stored key (it lives as long as the index borrow) and the inbox.
    pub fn get(&self, key: &str) -> Option<(&str, &Inbox)> {
        self.inboxes
            .get_key_value(key)
            .map(|(key, inbox)| (&**key, inbox))
    }

    /// Whether inbox `key` holds `seq`. O(log n) in the inbox's length.
    pub fn contains(&self, key: &str, seq: u64) -> bool {
        self.inboxes
            .get(key)
            .is_some_and(|inbox| inbox.position(seq).is_some())
    }

    /// Appends `seq` (unseen) to inbox `key`, creating it if needed. If the inbox then holds
    /// more than `seqs_max`, its oldest is dropped and returned.
    ///
    /// # Panics
    /// If `seq` is not newer than every seq in the inbox (sequence numbers only grow).
    pub fn push(&mut self, key: &str, seq: u64, seqs_max: usize) -> Option<u64> {
        let inbox = match self.inboxes.get_mut(key) {
            Some(inbox) => inbox,
            None => {
                self.meta_bytes += INBOX_OVERHEAD_BYTES + key.len();
                self.inboxes
                    .entry(Box::from(key))
                    .or_insert_with(|| Inbox::new(seq))
            }
        };
        assert!(
            inbox.newest().is_none_or(|newest| newest < seq),
            "inbox seqs must increase"
        );
        inbox.slots.push_back(seq << 1);
        inbox.last_seq = seq;
        self.meta_bytes += INBOX_SEQ_BYTES;
        let dropped = if inbox.slots.len() > seqs_max {
            self.meta_bytes -= INBOX_SEQ_BYTES;
            inbox.slots.pop_front().map(|slot| slot >> 1)
        } else {
            None
        };
        // seqs_max >= 1 is the caller's invariant, so the inbox still holds `seq`.
        debug_assert!(!inbox.slots.is_empty());
        dropped
    }

    /// Sets the seen flag of `seq` in inbox `key`; false if the inbox does not hold it.
    pub fn set_seen(&mut self, key: &str, seq: u64, seen: bool) -> bool {
        let Some(inbox) = self.inboxes.get_mut(key) else {
            return false;
        };
        let Some(idx) = inbox.position(seq) else {
            return false;
        };
        inbox.slots[idx] = seq << 1 | u64::from(seen);
        true
    }

    /// Removes `seq` from inbox `key` if it is that inbox's oldest; expiry and eviction take
    /// the shard's oldest message, which is the oldest of every inbox still holding it.
    pub fn remove_oldest_if(&mut self, key: &str, seq: u64) -> bool {
        let Some(inbox) = self.inboxes.get_mut(key) else {
            return false;
        };
        if inbox.oldest() != Some(seq) {
            debug_assert!(
                inbox.oldest().is_some_and(|front| front > seq),
                "older seq left behind"
            );
            return false;
        }
        inbox.slots.pop_front();
        self.meta_bytes -= INBOX_SEQ_BYTES;
        if inbox.slots.is_empty() {
            self.remove_empty(key);
        }
        true
    }

    /// Removes `seq` from inbox `key` wherever it is. O(n) in the inbox's length (bounded by
    /// the inbox cap), never in the shard's size.
    pub fn remove(&mut self, key: &str, seq: u64) -> bool {
        let Some(inbox) = self.inboxes.get_mut(key) else {
            return false;
        };
        let Some(idx) = inbox.position(seq) else {
            return false;
        };
        inbox.slots.remove(idx);
        self.meta_bytes -= INBOX_SEQ_BYTES;
        if inbox.slots.is_empty() {
            self.remove_empty(key);
        }
        true
    }

    /// Removes a whole inbox and returns its sequence numbers (empty if there was none).
    pub fn take(&mut self, key: &str) -> Vec<u64> {
        let Some((key, inbox)) = self.inboxes.remove_entry(key) else {
            return Vec::new();
        };
        self.meta_bytes -= INBOX_OVERHEAD_BYTES + key.len() + INBOX_SEQ_BYTES * inbox.len();
        inbox.iter().map(|(seq, _)| seq).collect()
    }

    /// Every inbox, for tests that check invariants by scanning.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Inbox)> {
        self.inboxes.iter().map(|(key, inbox)| (&**key, inbox))
    }

    fn remove_empty(&mut self, key: &str) {
        if let Some((key, inbox)) = self.inboxes.remove_entry(key) {
            debug_assert!(inbox.slots.is_empty());
            self.meta_bytes -= INBOX_OVERHEAD_BYTES + key.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_cap_and_accounting() {
        let mut index = InboxIndex::new();
        assert_eq!(index.push("a", 1, 2), None);
        assert_eq!(index.push("a", 2, 2), None);
        assert_eq!(index.push("b", 2, 2), None);
        assert_eq!(index.push("a", 3, 2), Some(1));
        assert_eq!(
            index
                .get("a")
                .map(|(_, inbox)| inbox.iter().map(|(seq, _)| seq).collect::<Vec<_>>()),
            Some(vec![2, 3])
        );
        assert!(index.set_seen("a", 3, true) && !index.set_seen("a", 1, true));
        let (_, inbox) = index.get("a").unwrap();
        assert_eq!(
            inbox.iter().collect::<Vec<_>>(),
            vec![(2, false), (3, true)]
        );
        assert_eq!(inbox.last_seq(), 3);
        assert!(index.contains("a", 3) && !index.contains("a", 1) && !index.contains("c", 1));
        assert_eq!(
            index.meta_bytes(),
            2 * (INBOX_OVERHEAD_BYTES + 1) + 3 * INBOX_SEQ_BYTES
        );
        assert!(!index.remove_oldest_if("a", 1));
        assert!(!index.remove_oldest_if("nobody", 1));
        assert!(index.remove_oldest_if("a", 2));
        assert!(index.remove("a", 3));
        assert!(!index.remove("a", 3));
        assert_eq!(index.len(), 1);
        assert_eq!(index.take("b").into_iter().collect::<Vec<_>>(), vec![2]);
        assert!(index.take("b").is_empty());
        assert!(index.is_empty());
        assert_eq!(index.meta_bytes(), 0);
    }
}
