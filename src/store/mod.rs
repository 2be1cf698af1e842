//! The in-memory store: one `Shard` per executor, and the routing of inboxes to shards.
//!
//! A mailbox lives in exactly one shard, chosen by `shard_of` from its inbox key,
//! and only that shard's thread touches it. This module knows nothing about SMTP or HTTP
//! and does no IO: the runtime carries messages and requests to the owning shard.

pub mod id;
pub mod index;
pub mod ring;
pub mod shard;

pub use id::MessageId;
pub use shard::{
    Incoming, Listing, MessageRef, Numbered, Rcpt, RestoreError, Shard, ShardConfig, ShardStats,
    SnapshotMessage, StoreError, envelope_bytes_max,
};

use crate::address::InboxKey;

/// The shard that owns inbox `key`.
///
/// FNV-1a over the key's bytes: stable across runs and platforms (a restart with the same
/// `--cores` routes every inbox to the same shard), cheap for short keys, no allocation.
pub fn shard_of(key: &InboxKey<'_>, n_shards: usize) -> usize {
    debug_assert!(n_shards > 0);
    if n_shards == 1 {
        return 0;
    }
    (fnv1a(key.as_str().bytes()) % n_shards as u64) as usize
}

fn fnv1a(bytes: impl Iterator<Item = u8>) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_ignores_case_and_spreads() {
        let shard = |address: &str, n| shard_of(&InboxKey::new(address).unwrap(), n);
        assert_eq!(
            shard("Alice@Example.TEST", 4),
            shard("alice@example.test", 4)
        );
        assert_eq!(
            shard("ÄLICE@example.test", 3),
            shard("älice@example.test", 3)
        );
        assert_eq!(
            shard("u@bücher.example", 5),
            shard("u@xn--bcher-kva.example", 5)
        );
        let mut per_shard = [0usize; 4];
        for n in 0..4000 {
            per_shard[shard(&format!("user{n}@example.test"), 4)] += 1;
        }
        assert!(per_shard.iter().all(|&n| n > 800), "{per_shard:?}");
    }
}
