//! The in-memory store: one `Shard` per executor, and the routing of inboxes to shards.
//!
//! A mailbox lives in exactly one shard, chosen by `shard_of` from its lowercase address,
//! and only that shard's thread touches it. This module knows nothing about SMTP or HTTP
//! and does no IO: the runtime carries messages and requests to the owning shard.

pub mod id;
pub mod index;
pub mod ring;
pub mod shard;

pub use id::MessageId;
pub use shard::{Incoming, Listing, MessageRef, Shard, ShardConfig, ShardStats, StoreError};

/// The shard that owns the inbox of `address` (any case; the inbox key is its lowercase form).
///
/// FNV-1a over the lowercase bytes: stable across runs and platforms, cheap for short keys,
/// and it needs no allocation for ASCII addresses, which is nearly all of them.
pub fn shard_of(address: &str, n_shards: usize) -> usize {
    debug_assert!(n_shards > 0);
    if n_shards == 1 {
        return 0;
    }
    let hash = if address.is_ascii() {
        fnv1a(address.bytes().map(|b| b.to_ascii_lowercase()))
    } else {
        fnv1a(address.to_lowercase().bytes())
    };
    (hash % n_shards as u64) as usize
}

/// The inbox key of `address`: its lowercase form (RFC 5321 lets local parts be case-sensitive,
/// but every real mailbox treats them case-insensitively, and so do people typing addresses).
pub fn inbox_key(address: &str) -> String {
    if address.is_ascii() {
        address.to_ascii_lowercase()
    } else {
        address.to_lowercase()
    }
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
        assert_eq!(
            shard_of("Alice@Example.TEST", 4),
            shard_of("alice@example.test", 4)
        );
        assert_eq!(
            shard_of("ÄLICE@example.test", 3),
            shard_of("älice@example.test", 3)
        );
        let mut per_shard = [0usize; 4];
        for n in 0..4000 {
            per_shard[shard_of(&format!("user{n}@example.test"), 4)] += 1;
        }
        assert!(per_shard.iter().all(|&n| n > 800), "{per_shard:?}");
    }
}
