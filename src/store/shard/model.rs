//! Model-based property test: random operation sequences on a `Shard` and on a naive
//! model (`BTreeMap`s and plain vectors), compared after every step (memchr's naive.rs +
//! prop.rs habit).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::tests::{BOOT_MICROS, SHARD_IDX, id, key as inbox, new_shard, rcpts as to_rcpts};
use super::*;

const ADDRESSES: [&str; 7] = [
    "a@x.test",
    "A@X.TEST",
    "b@x.test",
    "c@y.test",
    "ÄÖ@x.test",
    "äö@x.test",
    "ΟΔΟΣ@x.test",
];
const SENDERS: [&str; 3] = ["", "s@s.test", "Ünï@s.test"];

#[derive(Debug, Clone)]
enum Op {
    Insert {
        sender_idx: usize,
        rcpt_idxs: Vec<usize>,
        parts: Vec<Vec<u8>>,
        advance_ms: i64,
    },
    Expire {
        advance_ms: i64,
    },
    Delete {
        address_idx: usize,
        id_pick: usize,
    },
    DeleteInbox {
        address_idx: usize,
    },
    List {
        address_idx: usize,
        after_pick: Option<usize>,
        limit: usize,
    },
    Get {
        address_idx: usize,
        id_pick: usize,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let address_idx = 0..ADDRESSES.len();
    prop_oneof![
        4 => (
            0..SENDERS.len(),
            proptest::collection::vec(0..ADDRESSES.len(), 1..4),
            proptest::collection::vec(proptest::collection::vec(1u8..=255, 0..120), 0..3),
            -20i64..300,
        )
            .prop_map(|(sender_idx, rcpt_idxs, parts, advance_ms)| Op::Insert { sender_idx, rcpt_idxs, parts, advance_ms }),
        1 => (-20i64..400).prop_map(|advance_ms| Op::Expire { advance_ms }),
        1 => (address_idx.clone(), any::<usize>()).prop_map(|(address_idx, id_pick)| Op::Delete { address_idx, id_pick }),
        1 => address_idx.clone().prop_map(|address_idx| Op::DeleteInbox { address_idx }),
        2 => (address_idx.clone(), proptest::option::of(any::<usize>()), 1usize..5)
            .prop_map(|(address_idx, after_pick, limit)| Op::List { address_idx, after_pick, limit }),
        2 => (address_idx, any::<usize>()).prop_map(|(address_idx, id_pick)| Op::Get { address_idx, id_pick }),
    ]
}

/// A message in the model. Dead ones (no holders) stay until they reach the front.
struct ModelMessage {
    seq: u64,
    mail_from: String,
    rcpts: Vec<String>,
    raw: Vec<u8>,
    envelope: Vec<u8>,
    received_at_ms: u64,
    expires_at_ms: u64,
    holders: BTreeSet<String>,
    offset: usize,
}

/// A naive store: byte-ownership map instead of ring arithmetic, BTreeMaps, linear scans.
struct Model {
    ring_bytes: usize,
    inbox_messages_max: usize,
    ttl_ms: u64,
    fifo: VecDeque<ModelMessage>,
    next_seq: u64,
    owner_seq: Vec<u64>,
    tail_offset: usize,
    inboxes: BTreeMap<String, Vec<u64>>,
    stats: ShardStats,
}

impl Model {
    fn message(&self, seq: u64) -> &ModelMessage {
        self.fifo
            .iter()
            .find(|message| message.seq == seq)
            .expect("model message")
    }

    fn message_mut(&mut self, seq: u64) -> &mut ModelMessage {
        self.fifo
            .iter_mut()
            .find(|message| message.seq == seq)
            .expect("model message")
    }

    fn is_ours(id: MessageId) -> bool {
        id.boot_micros == BOOT_MICROS && id.shard_idx == SHARD_IDX
    }

    fn pop_front(&mut self) {
        let message = self.fifo.pop_front().expect("front");
        assert!(message.holders.is_empty());
        for owner in &mut self.owner_seq
            [message.offset..message.offset + message.envelope.len() + message.raw.len()]
        {
            *owner = 0;
        }
    }

    fn pop_dead_fronts(&mut self) {
        while self
            .fifo
            .front()
            .is_some_and(|message| message.holders.is_empty())
        {
            self.pop_front();
        }
    }

    /// Drops `key`'s hold on `seq`; counts the message if that was the last hold.
    fn unhold(&mut self, key: &str, seq: u64, counter: fn(&mut ShardStats) -> &mut u64) {
        let message = self.message_mut(seq);
        assert!(message.holders.remove(key));
        if message.holders.is_empty() {
            let raw_len = message.raw.len() as u64;
            self.stats.messages_held -= 1;
            self.stats.bytes_held -= raw_len;
            *counter(&mut self.stats) += 1;
        }
    }

    fn evict_front(&mut self, counter: fn(&mut ShardStats) -> &mut u64) {
        let front = self.fifo.front().expect("front");
        let (seq, holders) = (front.seq, front.holders.clone());
        for key in holders {
            let seqs = self.inboxes.get_mut(&key).expect("inbox");
            seqs.retain(|&held| held != seq);
            if seqs.is_empty() {
                self.inboxes.remove(&key);
            }
            self.unhold(&key, seq, counter);
        }
        self.pop_front();
        self.pop_dead_fronts();
    }

    fn insert(
        &mut self,
        mail_from: &str,
        rcpts: &[&str],
        raw: &[u8],
        now_ms: u64,
    ) -> Result<MessageId, usize> {
        let mut written_rcpts: Vec<String> = Vec::new();
        for rcpt in rcpts {
            if !written_rcpts.iter().any(|seen| seen == rcpt) {
                written_rcpts.push(rcpt.to_string());
            }
        }
        let mut envelope = Vec::new();
        let mut push_str = |text: &str| {
            envelope.extend_from_slice(&(text.len() as u32).to_le_bytes());
            envelope.extend_from_slice(text.as_bytes());
        };
        push_str(mail_from);
        for rcpt in &written_rcpts {
            let key = rcpt.to_lowercase();
            push_str(&key);
            push_str(if key == *rcpt { "" } else { rcpt });
        }
        let slot_len = envelope.len() + raw.len();
        if slot_len > self.ring_bytes {
            return Err(slot_len);
        }
        let offset = loop {
            if self.fifo.is_empty() {
                self.tail_offset = 0;
            }
            let offset = if self.tail_offset + slot_len <= self.ring_bytes {
                self.tail_offset
            } else {
                0
            };
            if self.owner_seq[offset..offset + slot_len]
                .iter()
                .all(|&owner| owner == 0)
            {
                break offset;
            }
            self.evict_front(|stats| &mut stats.evicted_capacity);
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        for owner in &mut self.owner_seq[offset..offset + slot_len] {
            *owner = seq;
        }
        self.tail_offset = offset + slot_len;
        let expires_at_ms = self
            .fifo
            .back()
            .map_or(0, |newest| newest.expires_at_ms)
            .max(now_ms + self.ttl_ms);
        let keys: BTreeSet<String> = written_rcpts
            .iter()
            .map(|rcpt| rcpt.to_lowercase())
            .collect();
        self.fifo.push_back(ModelMessage {
            seq,
            mail_from: mail_from.to_string(),
            rcpts: written_rcpts,
            raw: raw.to_vec(),
            envelope,
            received_at_ms: now_ms,
            expires_at_ms,
            holders: keys.clone(),
            offset,
        });
        self.stats.stored_total += 1;
        self.stats.stored_bytes_total += raw.len() as u64;
        self.stats.messages_held += 1;
        self.stats.bytes_held += raw.len() as u64;
        for key in keys {
            let seqs = self.inboxes.entry(key.clone()).or_default();
            seqs.push(seq);
            if seqs.len() > self.inbox_messages_max {
                let dropped = seqs.remove(0);
                self.unhold(&key, dropped, |stats| &mut stats.evicted_inbox_full);
                self.pop_dead_fronts();
            }
        }
        Ok(id(seq))
    }

    fn expire(&mut self, now_ms: u64) -> usize {
        let mut n_expired = 0;
        while self
            .fifo
            .front()
            .is_some_and(|message| message.expires_at_ms <= now_ms)
        {
            self.evict_front(|stats| &mut stats.evicted_ttl);
            n_expired += 1;
        }
        n_expired
    }

    fn delete(&mut self, key: &str, message_id: MessageId) -> bool {
        let Some(seqs) = self.inboxes.get_mut(key) else {
            return false;
        };
        let Some(seq_idx) = seqs
            .iter()
            .position(|&seq| Model::is_ours(message_id) && seq == message_id.seq)
        else {
            return false;
        };
        seqs.remove(seq_idx);
        if seqs.is_empty() {
            self.inboxes.remove(key);
        }
        self.unhold(key, message_id.seq, |stats| &mut stats.deleted);
        self.pop_dead_fronts();
        true
    }

    fn delete_inbox(&mut self, key: &str) -> usize {
        let seqs = self.inboxes.remove(key).unwrap_or_default();
        for &seq in &seqs {
            self.unhold(key, seq, |stats| &mut stats.deleted);
            self.pop_dead_fronts();
        }
        seqs.len()
    }

    fn ring_image(&self) -> Vec<u8> {
        let mut image = vec![0; self.ring_bytes];
        for message in self
            .fifo
            .iter()
            .filter(|message| !message.holders.is_empty())
        {
            let raw_offset = message.offset + message.envelope.len();
            image[message.offset..raw_offset].copy_from_slice(&message.envelope);
            image[raw_offset..raw_offset + message.raw.len()].copy_from_slice(&message.raw);
        }
        image
    }

    fn ring_bytes_used(&self) -> u64 {
        let Some(oldest) = self.fifo.front() else {
            return 0;
        };
        let used = (self.tail_offset + self.ring_bytes - oldest.offset) % self.ring_bytes;
        (if used == 0 { self.ring_bytes } else { used }) as u64
    }

    fn check_view(&self, key: &str, message: &MessageRef<'_>) {
        let expected = self.message(message.id.seq);
        assert!(Model::is_ours(message.id));
        assert_eq!(message.raw, expected.raw.as_slice());
        assert_eq!(message.mail_from, expected.mail_from);
        assert_eq!(message.received_at_ms, expected.received_at_ms);
        assert_eq!(message.expires_at_ms, expected.expires_at_ms);
        let expected_rcpts: Vec<&str> = expected
            .rcpts
            .iter()
            .filter(|rcpt| rcpt.to_lowercase() == key)
            .map(String::as_str)
            .collect();
        assert_eq!(message.rcpts().collect::<Vec<_>>(), expected_rcpts);
        assert_eq!(message.inbox_key().as_str(), key);
    }
}

fn run_model(ring_bytes: usize, inbox_messages_max: usize, ttl_ms: u64, ops: &[Op]) {
    let mut shard = new_shard(ring_bytes, inbox_messages_max, ttl_ms);
    let mut model = Model {
        ring_bytes,
        inbox_messages_max,
        ttl_ms,
        fifo: VecDeque::new(),
        next_seq: 1,
        owner_seq: vec![0; ring_bytes],
        tail_offset: 0,
        inboxes: BTreeMap::new(),
        stats: ShardStats {
            ring_bytes: ring_bytes as u64,
            ..ShardStats::default()
        },
    };
    // Ids to pick from: every id issued, plus ids from another boot and shard.
    let mut ids = vec![
        MessageId {
            boot_micros: BOOT_MICROS - 1,
            shard_idx: SHARD_IDX,
            seq: 5,
        },
        MessageId {
            boot_micros: BOOT_MICROS + 1,
            shard_idx: SHARD_IDX,
            seq: 0,
        },
        MessageId {
            boot_micros: BOOT_MICROS,
            shard_idx: SHARD_IDX + 1,
            seq: 1,
        },
    ];
    let mut now_ms: u64 = 1000;
    let advance =
        |now_ms: &mut u64, advance_ms: i64| *now_ms = now_ms.saturating_add_signed(advance_ms);
    for op in ops {
        match op {
            Op::Insert {
                sender_idx,
                rcpt_idxs,
                parts,
                advance_ms,
            } => {
                advance(&mut now_ms, *advance_ms);
                let rcpts: Vec<&str> = rcpt_idxs.iter().map(|&idx| ADDRESSES[idx]).collect();
                let part_slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
                let shard_rcpts = to_rcpts(&rcpts);
                let incoming = Incoming {
                    mail_from: SENDERS[*sender_idx],
                    rcpts: &shard_rcpts,
                    parts: &part_slices,
                    received_at_ms: now_ms,
                };
                let got = shard.insert(&incoming, now_ms);
                let expected = model.insert(SENDERS[*sender_idx], &rcpts, &parts.concat(), now_ms);
                match (got, expected) {
                    (Ok(got), Ok(expected)) => {
                        assert_eq!(got, expected);
                        ids.push(got);
                    }
                    (
                        Err(StoreError::TooLarge {
                            size_bytes,
                            capacity_bytes,
                        }),
                        Err(expected_size),
                    ) => {
                        assert_eq!((size_bytes, capacity_bytes), (expected_size, ring_bytes));
                    }
                    (got, expected) => panic!("insert: got {got:?}, expected {expected:?}"),
                }
            }
            Op::Expire { advance_ms } => {
                advance(&mut now_ms, *advance_ms);
                assert_eq!(shard.expire(now_ms), model.expire(now_ms));
            }
            Op::Delete {
                address_idx,
                id_pick,
            } => {
                let message_id = ids[id_pick % ids.len()];
                let key = ADDRESSES[*address_idx].to_lowercase();
                assert_eq!(
                    shard.delete_message(&inbox(ADDRESSES[*address_idx]), message_id),
                    model.delete(&key, message_id)
                );
            }
            Op::DeleteInbox { address_idx } => {
                let key = ADDRESSES[*address_idx].to_lowercase();
                assert_eq!(
                    shard.delete_inbox(&inbox(ADDRESSES[*address_idx])),
                    model.delete_inbox(&key)
                );
            }
            Op::List {
                address_idx,
                after_pick,
                limit,
            } => {
                let after = after_pick.map(|pick| ids[pick % ids.len()]);
                let key = ADDRESSES[*address_idx].to_lowercase();
                let listing = shard.list(&inbox(ADDRESSES[*address_idx]), after, *limit);
                let held = model.inboxes.get(&key).cloned().unwrap_or_default();
                let expected: Vec<MessageId> = held
                    .iter()
                    .rev()
                    .map(|&seq| id(seq))
                    .filter(|&message_id| after.is_none_or(|after| message_id > after))
                    .take(*limit)
                    .collect();
                let got: Vec<MessageId> =
                    listing.messages.iter().map(|message| message.id).collect();
                assert_eq!(got, expected);
                assert_eq!(listing.total, held.len());
                assert_eq!(listing.newest, held.last().map(|&seq| id(seq)));
                for message in &listing.messages {
                    model.check_view(&key, message);
                }
            }
            Op::Get {
                address_idx,
                id_pick,
            } => {
                let message_id = ids[id_pick % ids.len()];
                let key = ADDRESSES[*address_idx].to_lowercase();
                let held = Model::is_ours(message_id)
                    && model
                        .inboxes
                        .get(&key)
                        .is_some_and(|seqs| seqs.contains(&message_id.seq));
                let got = shard.get(&inbox(ADDRESSES[*address_idx]), message_id);
                assert_eq!(got.is_some(), held, "get {message_id:?} from {key}");
                if let Some(message) = got {
                    model.check_view(&key, &message);
                }
            }
        }
        let expected_stats = ShardStats {
            inboxes_held: model.inboxes.len() as u64,
            ring_bytes_used: model.ring_bytes_used(),
            ..model.stats
        };
        assert_eq!(shard.stats(), expected_stats, "after {op:?}");
        assert!(
            shard.ring.memory() == model.ring_image().as_slice(),
            "ring memory after {op:?}"
        );
        assert_eq!(
            shard.next_expiry_ms(),
            model.fifo.front().map(|message| message.expires_at_ms)
        );
        assert!(shard.meta_bytes() <= shard.meta_bytes_max());
        shard.check_invariants();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn shard_matches_a_naive_model(
        ring_bytes in 40usize..1500,
        inbox_messages_max in 1usize..5,
        ttl_ms in 1u64..1000,
        ops in proptest::collection::vec(op_strategy(), 1..80),
    ) {
        run_model(ring_bytes, inbox_messages_max, ttl_ms, &ops);
    }
}
