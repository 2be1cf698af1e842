//! An inbox numbered for mail clients (POP3, IMAP): UIDs, UIDVALIDITY and UIDNEXT from the
//! shard's sequence numbers.

use crate::address::InboxKey;
use crate::store::shard::{MessageRef, Shard};

/// An inbox as `Shard::numbered` gives it to mail clients.
pub struct Numbered<'a> {
    /// Never 0; differs between lives of the inbox and between processes.
    pub uid_validity: u32,
    /// One past the newest UID this life of the inbox gave.
    pub uid_next: u32,
    /// (UID, message), oldest first.
    pub messages: Vec<(u32, MessageRef<'a>)>,
}

/// UIDVALIDITY of a shard's numbering: a mix of the process start, the shard and the base,
/// so no two numberings (in this process or a later one) are likely to share it; never 0.
pub(super) fn uid_validity(boot_micros: u64, shard_idx: u16, uid_base: u64) -> u32 {
    // splitmix64's finalizer: every input bit reaches every output bit.
    let mut x = boot_micros ^ u64::from(shard_idx).rotate_left(56) ^ uid_base.rotate_left(17);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x as u32).max(1)
}

impl Shard {
    /// An inbox as mail clients number it: UIDVALIDITY, UIDNEXT, and every message, oldest
    /// first, with its UID (and its seen flag in the `MessageRef`).
    ///
    /// UIDs are the shard's seqs less `uid_base`: they only grow, are never reused and
    /// never restart while the shard keeps one base, whether an inbox empties or not, so
    /// UIDVALIDITY is one per shard and base (and process: restored messages get new seqs).
    /// UIDNEXT is one past the newest message the inbox ever held, or, for an inbox that
    /// holds nothing, the UID the shard's next message will get.
    pub fn numbered(&self, key: &InboxKey<'_>) -> Numbered<'_> {
        let uid = |seq: u64| (seq - self.uid_base) as u32;
        let uid_validity = uid_validity(
            self.config.boot_micros,
            self.config.shard_idx,
            self.uid_base,
        );
        match self.index.get(key.as_str()) {
            Some((stored_key, inbox)) => Numbered {
                uid_validity,
                uid_next: uid(inbox.last_seq().max(self.uid_base)) + 1,
                messages: inbox
                    .iter()
                    .filter(|&(seq, _)| seq > self.uid_base)
                    .map(|(seq, seen)| (uid(seq), self.message_ref(stored_key, seq, seen)))
                    .collect(),
            },
            None => Numbered {
                uid_validity,
                uid_next: uid(self.next_seq()),
                messages: Vec::new(),
            },
        }
    }
}
