//! Inbox index of one shard: inbox key -> the sequence numbers of its messages, oldest first.
//!
//! Messages themselves live once in the shard's ring, whatever the number of recipients;
//! an inbox only lists sequence numbers. Sequence numbers only grow, so every inbox is sorted,
//! which makes "newer than `after`" a binary search and lets expiry, which always removes the
//! shard's oldest message, find it at the front of each of its inboxes.
//!
//! The index also keeps an estimate of its own heap use, so the shard can bound metadata as
//! well as message bytes.

use std::collections::{HashMap, VecDeque};

/// Estimated heap bytes of one inbox besides its key: the hash table slot (a `Box<str>` and
/// a `VecDeque`, 48 bytes, plus control byte and spare capacity) and the deque's first buffer.
pub const INBOX_OVERHEAD_BYTES: usize = 96;
/// Estimated heap bytes per sequence number held in an inbox (8, doubled for the spare
/// capacity a growing `VecDeque` keeps).
pub const INBOX_SEQ_BYTES: usize = 16;

/// Inbox key -> sequence numbers, oldest first.
///
/// Invariants: no inbox is empty (an inbox that loses its last message is removed), each is
/// strictly increasing, and `meta_bytes` is the sum of the estimates of the inboxes held.
#[derive(Default)]
pub struct InboxIndex {
    inboxes: HashMap<Box<str>, VecDeque<u64>>,
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

    /// The stored key (it lives as long as the index borrow) and the sequence numbers of an inbox.
    pub fn get(&self, key: &str) -> Option<(&str, &VecDeque<u64>)> {
        self.inboxes
            .get_key_value(key)
            .map(|(key, seqs)| (&**key, seqs))
    }

    /// Whether inbox `key` holds `seq`. O(log n) in the inbox's length.
    pub fn contains(&self, key: &str, seq: u64) -> bool {
        self.inboxes
            .get(key)
            .is_some_and(|seqs| seqs.binary_search(&seq).is_ok())
    }

    /// Appends `seq` to inbox `key`, creating it if needed. If the inbox then holds more than
    /// `seqs_max`, its oldest is dropped and returned.
    ///
    /// # Panics
    /// If `seq` is not newer than every seq in the inbox (sequence numbers only grow).
    pub fn push(&mut self, key: &str, seq: u64, seqs_max: usize) -> Option<u64> {
        let seqs = match self.inboxes.get_mut(key) {
            Some(seqs) => seqs,
            None => {
                self.meta_bytes += INBOX_OVERHEAD_BYTES + key.len();
                self.inboxes.entry(Box::from(key)).or_default()
            }
        };
        assert!(
            seqs.back().is_none_or(|&back| back < seq),
            "inbox seqs must increase"
        );
        seqs.push_back(seq);
        self.meta_bytes += INBOX_SEQ_BYTES;
        if seqs.len() <= seqs_max {
            return None;
        }
        let dropped = seqs.pop_front();
        self.meta_bytes -= INBOX_SEQ_BYTES;
        // seqs_max >= 1 is the caller's invariant, so the inbox still holds `seq`.
        debug_assert!(!seqs.is_empty());
        dropped
    }

    /// Removes `seq` from inbox `key` if it is that inbox's oldest; expiry and eviction take
    /// the shard's oldest message, which is the oldest of every inbox still holding it.
    pub fn remove_oldest_if(&mut self, key: &str, seq: u64) -> bool {
        let Some(seqs) = self.inboxes.get_mut(key) else {
            return false;
        };
        if seqs.front() != Some(&seq) {
            debug_assert!(
                seqs.front().is_some_and(|&front| front > seq),
                "older seq left behind"
            );
            return false;
        }
        seqs.pop_front();
        self.meta_bytes -= INBOX_SEQ_BYTES;
        if seqs.is_empty() {
            self.remove_empty(key);
        }
        true
    }

    /// Removes `seq` from inbox `key` wherever it is. O(n) in the inbox's length (bounded by
    /// the inbox cap), never in the shard's size.
    pub fn remove(&mut self, key: &str, seq: u64) -> bool {
        let Some(seqs) = self.inboxes.get_mut(key) else {
            return false;
        };
        let Ok(seq_idx) = seqs.binary_search(&seq) else {
            return false;
        };
        seqs.remove(seq_idx);
        self.meta_bytes -= INBOX_SEQ_BYTES;
        if seqs.is_empty() {
            self.remove_empty(key);
        }
        true
    }

    /// Removes a whole inbox and returns its sequence numbers (empty if there was none).
    pub fn take(&mut self, key: &str) -> VecDeque<u64> {
        let Some((key, seqs)) = self.inboxes.remove_entry(key) else {
            return VecDeque::new();
        };
        self.meta_bytes -= INBOX_OVERHEAD_BYTES + key.len() + INBOX_SEQ_BYTES * seqs.len();
        seqs
    }

    /// Every inbox, for tests that check invariants by scanning.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &VecDeque<u64>)> {
        self.inboxes.iter().map(|(key, seqs)| (&**key, seqs))
    }

    fn remove_empty(&mut self, key: &str) {
        if let Some((key, seqs)) = self.inboxes.remove_entry(key) {
            debug_assert!(seqs.is_empty());
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
                .map(|(_, seqs)| seqs.iter().copied().collect::<Vec<_>>()),
            Some(vec![2, 3])
        );
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
