//! Unit tests of `Shard`: one behaviour each, plus `check_invariants`, which the model
//! test in `model.rs` also runs after every operation.

use std::collections::BTreeSet;

use super::*;

pub(super) const BOOT_MICROS: u64 = 1_764_000_000_000_000;
pub(super) const SHARD_IDX: u16 = 3;

pub(super) fn new_shard(ring_bytes: usize, inbox_messages_max: usize, ttl_ms: u64) -> Shard {
    Shard::new(ShardConfig {
        shard_idx: SHARD_IDX,
        boot_micros: BOOT_MICROS,
        ring_bytes,
        ttl_ms,
        inbox_messages_max,
    })
}

/// The inbox key of `address` (test addresses are all valid).
pub(super) fn key(address: &str) -> InboxKey<'_> {
    InboxKey::new(address).expect("a valid test address")
}

pub(super) fn rcpts<'a>(written: &[&'a str]) -> Vec<Rcpt<'a>> {
    written
        .iter()
        .map(|&written| Rcpt::new(written).expect("a valid test address"))
        .collect()
}

fn put(shard: &mut Shard, written: &[&str], body: &str, now_ms: u64) -> MessageId {
    let parts: [&[u8]; 2] = [b"Received: test\r\n", body.as_bytes()];
    let rcpts = rcpts(written);
    let incoming = Incoming {
        mail_from: "s@sender.test",
        rcpts: &rcpts,
        parts: &parts,
        received_at_ms: now_ms,
    };
    shard.insert(&incoming, now_ms).expect("fits")
}

fn seqs(shard: &Shard, address: &str) -> Vec<u64> {
    shard
        .list(&key(address), None, usize::MAX)
        .messages
        .iter()
        .map(|message| message.id.seq)
        .collect()
}

pub(super) fn id(seq: u64) -> MessageId {
    MessageId {
        boot_micros: BOOT_MICROS,
        shard_idx: SHARD_IDX,
        seq,
    }
}

impl Shard {
    /// Checks every invariant by scanning everything (tests only).
    pub(super) fn check_invariants(&self) {
        assert!(
            self.entries
                .front()
                .is_none_or(|oldest| oldest.n_inbox_refs > 0),
            "dead front"
        );
        let live: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|entry| entry.n_inbox_refs > 0)
            .collect();
        assert_eq!(self.stats.messages_held, live.len() as u64);
        let raw_bytes: usize = live
            .iter()
            .map(|entry| entry.slot.len() - entry.envelope_bytes as usize)
            .sum();
        assert_eq!(self.stats.bytes_held, raw_bytes as u64);
        let mut expected_image = vec![0u8; self.ring.capacity_bytes()];
        for entry in &live {
            let start = (entry.slot.pos() % self.ring.capacity_bytes() as u64) as usize;
            expected_image[start..start + entry.slot.len()]
                .copy_from_slice(self.ring.bytes(entry.slot));
        }
        assert!(
            self.ring.memory() == expected_image.as_slice(),
            "bytes outside live slots are not zero"
        );
        // Each live entry is held by exactly the inboxes of its recipients that list it,
        // and inboxes list live entries only.
        let mut n_indexed = 0;
        for (seq_idx, entry) in self.entries.iter().enumerate() {
            if entry.n_inbox_refs == 0 {
                continue;
            }
            let seq = self.front_seq + seq_idx as u64;
            let envelope = &self.ring.bytes(entry.slot)[..entry.envelope_bytes as usize];
            let keys: BTreeSet<&str> = read_envelope(envelope).1.map(|(key, _)| key).collect();
            let n_holding = keys
                .iter()
                .filter(|key| self.index.contains(key, seq))
                .count();
            assert_eq!(n_holding as u32, entry.n_inbox_refs, "seq {seq}");
            n_indexed += n_holding;
        }
        let mut index_meta_bytes = 0;
        for (key, seqs) in self.index.iter() {
            assert!(!seqs.is_empty() && seqs.iter().zip(seqs.iter().skip(1)).all(|(a, b)| a < b));
            n_indexed -= seqs.len();
            index_meta_bytes += crate::store::index::INBOX_OVERHEAD_BYTES
                + key.len()
                + seqs.len() * crate::store::index::INBOX_SEQ_BYTES;
        }
        assert_eq!(n_indexed, 0, "an inbox lists a dead or unknown message");
        assert_eq!(self.index.meta_bytes(), index_meta_bytes);
        assert!(
            self.entries
                .iter()
                .all(|entry| entry.n_inbox_refs > 0 || !entry.cached.get()),
            "a dead message is still marked cached"
        );
        // Restored entries are exactly those below the first native seq, and each has its
        // id in both lookups.
        let n_restored = self.first_native_seq.saturating_sub(self.front_seq) as usize;
        assert_eq!(self.restored.len(), n_restored.min(self.entries.len()));
        assert_eq!(self.restored_seqs.len(), self.restored.len());
        for (restored_idx, id) in self.restored.iter().enumerate() {
            assert_eq!(
                self.restored_seqs.get(id),
                Some(&(self.front_seq + restored_idx as u64))
            );
        }
    }
}

#[cfg(target_pointer_width = "64")]
#[test]
fn entry_is_as_small_as_documented() {
    assert_eq!(size_of::<Entry>(), 48);
    assert_eq!(ENTRY_META_BYTES, 72);
}

#[test]
fn stores_a_message_once_for_all_its_inboxes() {
    let mut shard = new_shard(4096, 10, 1000);
    let rcpts = ["a@x.test", "B@x.test", "A@X.test", "a@x.test"];
    let message_id = put(&mut shard, &rcpts, "hello", 5);
    let stats = shard.stats();
    assert_eq!(
        (stats.messages_held, stats.inboxes_held, stats.stored_total),
        (1, 2, 1)
    );
    let raw = b"Received: test\r\nhello";
    assert_eq!(stats.bytes_held, raw.len() as u64);
    // Envelope: 4 + 13 (from), then a@x.test (4+8+4), B@x.test (4+8+4+8), A@X.test (4+8+4+8).
    assert_eq!(
        stats.ring_bytes_used,
        (raw.len() + 17 + 16 + 24 + 24) as u64
    );
    let cases: [(&str, &[&str]); 3] = [
        ("a@x.test", &["a@x.test", "A@X.test"]),
        ("b@x.test", &["B@x.test"]),
        ("A@x.TEST", &["a@x.test", "A@X.test"]),
    ];
    for (key, expected_rcpts) in cases {
        let message = shard
            .get(&super::tests::key(key), message_id)
            .expect("held");
        assert_eq!(message.raw, raw);
        assert_eq!(message.mail_from, "s@sender.test");
        assert_eq!(message.rcpts().collect::<Vec<_>>(), expected_rcpts, "{key}");
        assert_eq!(message.expires_at_ms, 1005);
    }
    assert!(shard.get(&key("c@x.test"), message_id).is_none());
    // Deleting from one inbox leaves it in the other.
    assert!(shard.delete_message(&key("a@x.test"), message_id));
    assert!(!shard.delete_message(&key("a@x.test"), message_id));
    assert!(shard.get(&key("b@x.test"), message_id).is_some());
    assert_eq!((shard.stats().messages_held, shard.stats().deleted), (1, 0));
    assert!(shard.delete_message(&key("b@x.test"), message_id));
    assert_eq!(
        (
            shard.stats().messages_held,
            shard.stats().deleted,
            shard.stats().ring_bytes_used
        ),
        (0, 1, 0)
    );
    shard.check_invariants();
}

#[test]
fn expires_in_order_at_the_ttl() {
    let mut shard = new_shard(4096, 10, 100);
    put(&mut shard, &["a@x.test"], "1", 0);
    put(&mut shard, &["b@x.test"], "2", 10);
    put(&mut shard, &["a@x.test"], "3", 10);
    // The clock going back must not let a newer message expire earlier.
    put(&mut shard, &["a@x.test"], "4", 5);
    // (now, expired, next expiry after, seqs left in a@x.test)
    let steps: [(u64, usize, Option<u64>, &[u64]); 5] = [
        (0, 0, Some(100), &[4, 3, 1]),
        (99, 0, Some(100), &[4, 3, 1]),
        (100, 1, Some(110), &[4, 3]),
        (110, 3, None, &[]),
        (1000, 0, None, &[]),
    ];
    for (now_ms, expected_expired, expected_next, expected_seqs) in steps {
        assert_eq!(shard.expire(now_ms), expected_expired, "at {now_ms}");
        assert_eq!(shard.next_expiry_ms(), expected_next, "at {now_ms}");
        assert_eq!(seqs(&shard, "a@x.test"), expected_seqs, "at {now_ms}");
        shard.check_invariants();
    }
    let stats = shard.stats();
    assert_eq!(
        (
            stats.evicted_ttl,
            stats.messages_held,
            stats.inboxes_held,
            stats.ring_bytes_used
        ),
        (4, 0, 0, 0)
    );
}

#[test]
fn flood_evicts_oldest_and_keeps_the_newest_readable() {
    let ring_bytes = 4096;
    let mut shard = new_shard(ring_bytes, 1000, 1_000_000);
    let mut ids = Vec::new();
    for n in 0..2000u64 {
        let rcpt = format!("user{}@x.test", n % 7);
        let body = "x".repeat((n as usize * 37) % 300);
        ids.push((rcpt.clone(), put(&mut shard, &[&rcpt], &body, n)));
        assert!(shard.stats().ring_bytes_used <= ring_bytes as u64);
    }
    shard.check_invariants();
    let stats = shard.stats();
    assert_eq!(stats.stored_total, 2000);
    assert_eq!(stats.evicted_capacity + stats.messages_held, 2000);
    assert!(stats.messages_held >= 10, "{stats:?}");
    // Exactly the newest messages are held, and all of them are readable.
    let n_held = stats.messages_held as usize;
    for (n, (rcpt, message_id)) in ids.iter().enumerate() {
        assert_eq!(
            shard.get(&key(rcpt), *message_id).is_some(),
            n >= 2000 - n_held,
            "message {n}"
        );
    }
}

#[test]
fn inbox_cap_drops_the_inbox_oldest() {
    let mut shard = new_shard(4096, 2, 1000);
    let shared = put(&mut shard, &["a@x.test", "b@x.test"], "shared", 0);
    put(&mut shard, &["a@x.test"], "2", 0);
    put(&mut shard, &["a@x.test"], "3", 0);
    // a@x.test dropped the shared message; b@x.test still holds it.
    assert_eq!(seqs(&shard, "a@x.test"), [3, 2]);
    assert_eq!(seqs(&shard, "b@x.test"), [1]);
    assert_eq!(shard.stats().evicted_inbox_full, 0);
    put(&mut shard, &["b@x.test"], "5", 0);
    put(&mut shard, &["b@x.test"], "6", 0);
    assert_eq!(seqs(&shard, "b@x.test"), [5, 4]);
    assert!(shard.get(&key("b@x.test"), shared).is_none());
    put(&mut shard, &["a@x.test"], "7", 0);
    let stats = shard.stats();
    assert_eq!((stats.evicted_inbox_full, stats.messages_held), (2, 4));
    shard.check_invariants();
}

#[test]
fn deleted_bytes_are_zeroed_at_once_and_space_comes_back_in_fifo_order() {
    let mut shard = new_shard(4096, 10, 1000);
    let first = put(&mut shard, &["a@x.test"], "first-secret", 0);
    let second = put(&mut shard, &["b@x.test"], "second-secret", 0);
    let used_bytes = shard.stats().ring_bytes_used;
    assert!(shard.delete_message(&key("b@x.test"), second));
    let contains = |shard: &Shard, needle: &[u8]| {
        shard
            .ring
            .memory()
            .windows(needle.len())
            .any(|w| w == needle)
    };
    assert!(!contains(&shard, b"second-secret") && !contains(&shard, b"b@x.test"));
    assert!(contains(&shard, b"first-secret"));
    // The tombstone keeps its space until the older message goes.
    assert_eq!(shard.stats().ring_bytes_used, used_bytes);
    assert_eq!(shard.stats().messages_held, 1);
    shard.check_invariants();
    assert_eq!(shard.delete_inbox(&key("A@x.test")), 1);
    assert!(!contains(&shard, b"first-secret"));
    assert_eq!(shard.stats().ring_bytes_used, 0);
    assert_eq!(shard.stats().deleted, 2);
    assert_eq!(shard.delete_inbox(&key("a@x.test")), 0);
    assert!(shard.get(&key("a@x.test"), first).is_none());
    assert!(shard.ring.memory().iter().all(|&b| b == 0));
}

#[test]
fn after_compares_ids_as_tuples() {
    let mut shard = new_shard(4096, 10, 1000);
    for n in 0..4 {
        put(&mut shard, &["a@x.test"], &n.to_string(), 0);
    }
    let other = |boot_micros: u64, shard_idx: u16, seq: u64| {
        Some(MessageId {
            boot_micros,
            shard_idx,
            seq,
        })
    };
    let cases: [(Option<MessageId>, usize, &[u64]); 10] = [
        (None, 10, &[4, 3, 2, 1]),
        (None, 2, &[4, 3]),
        (Some(id(0)), 10, &[4, 3, 2, 1]),
        (Some(id(2)), 10, &[4, 3]),
        (Some(id(4)), 10, &[]),
        (Some(id(99)), 10, &[]),
        (other(BOOT_MICROS - 1, SHARD_IDX, 99), 10, &[4, 3, 2, 1]),
        (other(BOOT_MICROS + 1, SHARD_IDX, 0), 10, &[]),
        (other(BOOT_MICROS, SHARD_IDX - 1, 99), 10, &[4, 3, 2, 1]),
        (other(BOOT_MICROS, SHARD_IDX + 1, 0), 10, &[]),
    ];
    for (after, limit, expected) in cases {
        let listing = shard.list(&key("a@x.test"), after, limit);
        let got: Vec<u64> = listing
            .messages
            .iter()
            .map(|message| message.id.seq)
            .collect();
        assert_eq!(got, expected, "after {after:?} limit {limit}");
        assert_eq!((listing.total, listing.newest), (4, Some(id(4))));
    }
    let empty = shard.list(&key("nobody@x.test"), None, 10);
    assert_eq!(
        (empty.total, empty.messages.len(), empty.newest),
        (0, 0, None)
    );
}

#[test]
fn unknown_ids_are_not_found() {
    let mut shard = new_shard(4096, 10, 1000);
    let message_id = put(&mut shard, &["a@x.test"], "1", 0);
    let cases = [
        MessageId {
            boot_micros: BOOT_MICROS + 1,
            ..message_id
        },
        MessageId {
            shard_idx: SHARD_IDX + 1,
            ..message_id
        },
        id(0),
        id(2),
        id(SEQ_MAX),
    ];
    for unknown in cases {
        assert!(
            shard.get(&key("a@x.test"), unknown).is_none(),
            "{unknown:?}"
        );
        assert!(
            !shard.delete_message(&key("a@x.test"), unknown),
            "{unknown:?}"
        );
    }
    assert!(shard.get(&key("a@x.test"), message_id).is_some());
}

#[test]
fn refuses_what_can_never_fit() {
    let mut shard = new_shard(64, 10, 1000);
    let body = [b'x'; 64];
    let parts: [&[u8]; 1] = [&body];
    let one_rcpt = rcpts(&["a@x.test"]);
    let incoming = Incoming {
        mail_from: "",
        rcpts: &one_rcpt,
        parts: &parts,
        received_at_ms: 0,
    };
    match shard.insert(&incoming, 0) {
        Err(StoreError::TooLarge {
            size_bytes,
            capacity_bytes,
        }) => assert_eq!((size_bytes, capacity_bytes), (64 + 4 + 16, 64)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        shard.stats(),
        ShardStats {
            ring_bytes: 64,
            ..ShardStats::default()
        }
    );
    // The largest message that fits, fits even when the ring holds others.
    put(&mut shard, &["a@x.test"], "", 0);
    let parts: [&[u8]; 1] = [&body[..64 - 20]];
    let incoming = Incoming {
        parts: &parts,
        ..incoming
    };
    assert!(shard.insert(&incoming, 0).is_ok());
    assert_eq!(
        (
            shard.stats().ring_bytes_used,
            shard.stats().evicted_capacity
        ),
        (64, 1)
    );
}

#[test]
fn metadata_budget_evicts_like_a_full_ring() {
    let mut shard = new_shard(1 << 20, 10, 1000);
    shard.meta_bytes_max = 2000;
    for n in 0..100 {
        put(&mut shard, &[&format!("user{n}@x.test")], "x", 0);
        assert!(shard.meta_bytes() <= 2000, "{}", shard.meta_bytes());
    }
    let stats = shard.stats();
    assert!(
        stats.evicted_capacity > 80 && stats.messages_held >= 1,
        "{stats:?}"
    );
    assert_eq!(stats.evicted_capacity + stats.messages_held, 100);
    shard.check_invariants();
    // One message over the whole budget is still stored, alone.
    let rcpts: Vec<String> = (0..30).map(|n| format!("many{n}@x.test")).collect();
    let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    put(&mut shard, &rcpts, "x", 0);
    assert_eq!(
        (shard.stats().messages_held, shard.stats().inboxes_held),
        (1, 30)
    );
    shard.check_invariants();
}

#[test]
fn released_cached_lists_marked_messages_once_whatever_removes_them() {
    let mut shard = new_shard(4096, 2, 1000);
    let a = put(&mut shard, &["a@x.test"], "1", 0);
    let b = put(&mut shard, &["a@x.test"], "2", 0);
    let c = put(&mut shard, &["b@x.test"], "3", 10);
    let d = put(&mut shard, &["b@x.test"], "4", 20);
    for (address, id) in [("a@x.test", a), ("a@x.test", b), ("b@x.test", c)] {
        shard.get(&key(address), id).expect("held").mark_cached();
    }
    shard.unmark_cached(c);
    assert!(shard.take_released_cached().is_empty());
    // Deleted, pushed out of a full inbox, expired: each marked one is reported once.
    assert!(shard.delete_message(&key("a@x.test"), b));
    assert_eq!(shard.take_released_cached(), [b]);
    put(&mut shard, &["a@x.test"], "5", 20);
    put(&mut shard, &["a@x.test"], "6", 20);
    assert_eq!(shard.take_released_cached(), [a]);
    shard.get(&key("b@x.test"), d).expect("held").mark_cached();
    shard.expire(5000);
    assert_eq!(shard.take_released_cached(), [d]);
    shard.check_invariants();
}

#[test]
fn non_ascii_addresses_fold_with_unicode_rules() {
    let mut shard = new_shard(4096, 10, 1000);
    let message_id = put(
        &mut shard,
        &["ÄLICE@x.test", "älice@x.test", "ΟΔΟΣ@x.test"],
        "1",
        0,
    );
    assert_eq!(shard.stats().inboxes_held, 2);
    let message = shard.get(&key("älice@x.test"), message_id).expect("held");
    assert_eq!(
        message.rcpts().collect::<Vec<_>>(),
        ["ÄLICE@x.test", "älice@x.test"]
    );
    assert_eq!(message.inbox_key().as_str(), "älice@x.test");
    let message = shard.get(&key("οδος@x.test"), message_id).expect("held");
    assert_eq!(message.rcpts().collect::<Vec<_>>(), ["ΟΔΟΣ@x.test"]);
}

/// An id from another boot (and shard), as a restart restores them.
fn old_id(boot_micros: u64, shard_idx: u16, seq: u64) -> MessageId {
    MessageId {
        boot_micros,
        shard_idx,
        seq,
    }
}

fn restore(
    shard: &mut Shard,
    written: &[&str],
    body: &str,
    id: MessageId,
    received_at_ms: u64,
    expires_at_ms: u64,
    now_ms: u64,
) -> Result<bool, RestoreError> {
    restore_seq(
        shard,
        written,
        body,
        id,
        received_at_ms,
        expires_at_ms,
        now_ms,
    )
    .map(|seq| seq.is_some())
}

fn restore_seq(
    shard: &mut Shard,
    written: &[&str],
    body: &str,
    id: MessageId,
    received_at_ms: u64,
    expires_at_ms: u64,
    now_ms: u64,
) -> Result<Option<u64>, RestoreError> {
    let parts: [&[u8]; 1] = [body.as_bytes()];
    let rcpts = rcpts(written);
    shard.restore(
        &Incoming {
            mail_from: "s@sender.test",
            rcpts: &rcpts,
            parts: &parts,
            received_at_ms,
        },
        id,
        expires_at_ms,
        now_ms,
    )
}

#[test]
fn restored_messages_keep_their_ids_times_and_order() {
    let mut shard = new_shard(64 * 1024, 10, 1000);
    // Two earlier boots, and a shard index that is not this one's (the restart may have a
    // different --cores).
    let first = old_id(BOOT_MICROS - 2_000, 0, 7);
    let second = old_id(BOOT_MICROS - 1_000, 5, 1);
    let expired = old_id(BOOT_MICROS - 1_000, 5, 2);
    let other_inbox = old_id(BOOT_MICROS - 1_000, 5, 3);
    assert!(restore(&mut shard, &["a@x.test"], "one", first, 100, 900, 500).unwrap());
    assert!(restore(&mut shard, &["A@x.test"], "two", second, 200, 1000, 500).unwrap());
    assert!(!restore(&mut shard, &["a@x.test"], "gone", expired, 250, 400, 500).unwrap());
    assert!(restore(&mut shard, &["b@x.test"], "b", other_inbox, 260, 1100, 500).unwrap());
    // A message seen twice (snapshot and journal) is restored once.
    assert!(!restore(&mut shard, &["a@x.test"], "one", first, 100, 900, 500).unwrap());
    // Out of order for its inbox: refused, so after= stays a binary search.
    assert!(matches!(
        restore(
            &mut shard,
            &["a@x.test"],
            "late",
            old_id(1, 0, 1),
            300,
            1000,
            500
        ),
        Err(RestoreError::OutOfOrder { .. })
    ));
    shard.check_invariants();

    let native = put(&mut shard, &["a@x.test"], "three", 600);
    assert_eq!(native, id(4), "native seqs follow the restored ones");
    let listing = shard.list(&key("a@x.test"), None, 10);
    let ids: Vec<MessageId> = listing.messages.iter().map(|m| m.id).collect();
    assert_eq!(ids, [native, second, first]);
    let message = shard.get(&key("a@x.test"), second).expect("restored");
    assert_eq!((message.received_at_ms, message.expires_at_ms), (200, 1000));
    assert_eq!(message.rcpts().collect::<Vec<_>>(), ["A@x.test"]);
    let after_first: Vec<MessageId> = shard
        .list(&key("a@x.test"), Some(first), 10)
        .messages
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(after_first, [native, second]);
    assert!(
        shard.get(&key("a@x.test"), id(1)).is_none(),
        "never issued natively"
    );
    assert!(shard.get(&key("b@x.test"), other_inbox).is_some());

    // Deletes, expiry and popping work on restored messages like on any other.
    assert!(shard.delete_message(&key("a@x.test"), second));
    assert!(shard.get(&key("a@x.test"), second).is_none());
    shard.check_invariants();
    assert_eq!(shard.expire(950), 1, "the first restored message expires");
    assert!(shard.get(&key("a@x.test"), first).is_none());
    shard.check_invariants();
    shard.expire(5_000);
    assert_eq!(shard.stats().messages_held, 0);
    shard.check_invariants();
}

#[test]
fn snapshot_chunks_give_live_messages_with_the_inboxes_still_holding_them() {
    let mut shard = new_shard(64 * 1024, 10, 1000);
    let first = put(&mut shard, &["a@x.test", "B@x.test"], "one", 0);
    let second = put(&mut shard, &["a@x.test"], "two", 0);
    let third = put(&mut shard, &["c@x.test"], "three", 0);
    assert!(shard.delete_message(&key("a@x.test"), first));
    assert!(shard.delete_message(&key("a@x.test"), second));
    let mut seen = Vec::new();
    let mut from = 0;
    while from < shard.next_seq() {
        from = shard.snapshot_chunk(from, 1, |message| {
            let rcpts: Vec<String> = message
                .rcpts
                .iter()
                .map(|(key, written)| format!("{key}={written}"))
                .collect();
            seen.push((message.id, rcpts, message.raw.ends_with(b"one")));
        });
    }
    assert_eq!(
        seen,
        [
            (first, vec!["b@x.test=B@x.test".to_string()], true),
            (third, vec!["c@x.test=c@x.test".to_string()], false),
        ]
    );
    assert_eq!(shard.oldest_seq(), 1);
    shard.expire(5_000);
    assert_eq!(shard.oldest_seq(), shard.next_seq());
}

#[test]
fn seen_is_per_inbox_and_uids_only_grow() {
    let mut shard = new_shard(64 * 1024, 100, 60_000);
    assert_eq!(shard.numbered(&key("a@x.test")).uid_next, 1);
    let first = put(&mut shard, &["a@x.test", "b@x.test"], "one", 1);
    let second = put(&mut shard, &["a@x.test"], "two", 2);
    // Seen in one inbox only, although both share the stored message.
    assert!(shard.set_seen(&key("a@x.test"), first, true));
    assert!(!shard.set_seen(&key("nobody@x.test"), first, true));
    let seen = |shard: &Shard, address: &str| -> Vec<bool> {
        shard
            .list(&key(address), None, usize::MAX)
            .messages
            .iter()
            .map(|message| message.seen)
            .collect()
    };
    assert_eq!(seen(&shard, "a@x.test"), vec![false, true]);
    assert_eq!(seen(&shard, "b@x.test"), vec![false]);
    let numbered = |shard: &Shard, address: &str| -> (u32, u32, Vec<(u32, MessageId, bool)>) {
        let n = shard.numbered(&key(address));
        let messages = n
            .messages
            .iter()
            .map(|(uid, message)| (*uid, message.id, message.seen))
            .collect();
        (n.uid_validity, n.uid_next, messages)
    };
    let (validity, uid_next, messages) = numbered(&shard, "a@x.test");
    assert_eq!(messages, vec![(1, first, true), (2, second, false)]);
    assert_eq!(uid_next, 3);
    assert_ne!(validity, 0);
    // Deleting the newest keeps UIDNEXT (a UID is never given twice).
    assert!(shard.delete_message(&key("a@x.test"), second));
    assert_eq!(numbered(&shard, "a@x.test").1, 3);
    // Mail for another inbox advances the shard's seqs: a's next UID skips, still ascending.
    put(&mut shard, &["b@x.test"], "three", 3);
    let fourth = put(&mut shard, &["a@x.test"], "four", 4);
    assert_eq!(
        numbered(&shard, "a@x.test").2.last().map(|m| (m.0, m.1)),
        Some((4, fourth))
    );
    // Emptied and filled again: same UIDVALIDITY, and UIDs go on growing, never restart.
    assert_eq!(shard.delete_inbox(&key("a@x.test")), 2);
    let (empty_validity, empty_next, empty) = numbered(&shard, "a@x.test");
    assert_eq!((empty_validity, empty_next, empty.len()), (validity, 5, 0));
    let fifth = put(&mut shard, &["a@x.test"], "five", 5);
    assert_eq!(
        numbered(&shard, "a@x.test"),
        (validity, 6, vec![(5, fifth, false)])
    );
    // Another process (or shard) numbers differently.
    let other = Shard::new(ShardConfig {
        boot_micros: BOOT_MICROS + 1,
        ..*shard.config()
    });
    assert_ne!(other.numbered(&key("a@x.test")).uid_validity, validity);
    shard.check_invariants();
}
