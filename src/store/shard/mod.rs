//! One shard's in-memory message store. Single-threaded, no IO: the runtime owns one
//! `Shard` per executor and only that executor's thread touches it.
//!
//! # Layout
//! - Message bytes live in one fixed-capacity [`Ring`] allocated up front; its size is the
//!   shard's memory bound. Each message takes one contiguous slot holding its *envelope*
//!   (MAIL FROM and the recipients in this shard, see `write_envelope`) followed by the raw
//!   message. Keeping the envelope in the ring means addresses are bounded by the ring and
//!   zeroed with the message, and an entry needs no heap strings.
//! - `entries` is a `VecDeque<Entry>` in insertion order. Sequence numbers are contiguous,
//!   so the entry of `seq` is `entries[seq - front_seq]`: O(1) lookup by id.
//! - `index` maps each inbox key (the lowercase address) to its sequence numbers, oldest
//!   first. A message for several inboxes of this shard is stored once; each inbox refers to
//!   it, and `Entry::n_inbox_refs` counts how many still do.
//!
//! # Invariants
//! - Every message has the same TTL and the store clock never goes back (`expires_at_ms`
//!   is clamped to be non-decreasing), so insertion order is expiry order: expiry and
//!   capacity eviction both pop from the front. No operation scans all messages; the
//!   costliest are O(inbox length) (deleting one message from the middle of an inbox).
//! - A message no inbox refers to is *dead*: its bytes are zeroed at once, before any reuse.
//!   Its entry and ring space stay as a tombstone until every older message is gone, i.e.
//!   space is reclaimed in FIFO order. `messages_held` and `bytes_held` count live messages
//!   only; `ring_bytes_used` includes tombstones.
//! - The front entry, if any, is live (dead fronts are popped at once).
//! - Every byte of the ring outside a live message's slot is zero.
//!
//! # Memory per message
//! Besides its slot in the ring (raw bytes + envelope: 4 bytes + MAIL FROM, then 8 bytes +
//! the lowercase key per recipient, plus the address as written if it is not lowercase),
//! a held message costs an `Entry` (48 bytes on 64-bit targets, ~72 with `VecDeque` spare
//! capacity) and 8–16 bytes per inbox holding it. An inbox costs about 96 bytes plus its
//! key. So a single-recipient message to an inbox that already exists costs about 90 bytes
//! of heap.
//! All of this is charged against a metadata budget (`RING_BYTES_PER_META_BYTE`,
//! `META_BYTES_MAX_FLOOR`): when it is exhausted the oldest messages are evicted as if the
//! ring were full, so a flood of tiny messages to many addresses cannot grow the heap without
//! bound. The store's memory is therefore about `ring_bytes * 1.5` at most.
//!
//! # What readers derive
//! The store knows no message format: parsed views (summaries, the message view) are
//! cached by their owner (`mail::ViewCache`) under their own budget, so reading mail can
//! never evict mail. An owner that caches something derived from a message marks it
//! (`mark_cached`); when a marked message goes for any reason its id is queued for the
//! owner (`take_released_cached`), who wipes what it derived. Only marked messages are
//! queued, so the queue is bounded by what the owner caches.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::fmt;

use crate::address::InboxKey;
use crate::store::id::MessageId;
use crate::store::index::InboxIndex;
use crate::store::ring::{Ring, Slot};

/// The metadata budget is `ring_bytes / RING_BYTES_PER_META_BYTE` (but at least
/// `META_BYTES_MAX_FLOOR`): entries and inboxes together.
pub const RING_BYTES_PER_META_BYTE: usize = 2;
/// Smallest metadata budget, so that small test rings are limited by bytes, not metadata.
pub const META_BYTES_MAX_FLOOR: usize = 256 * 1024;
/// Estimated heap bytes per entry: the struct plus the spare capacity a growing `VecDeque`
/// keeps on average.
pub const ENTRY_META_BYTES: usize = size_of::<Entry>() * 3 / 2;
/// Estimated heap bytes per restored message besides its entry: its id in `restored`
/// (24, with spare capacity) and in `restored_seqs` (key, seq and the hash table's
/// overhead).
pub const RESTORED_ID_META_BYTES: usize = 36 + 48;
/// Ids render `boot_micros` with 13 hex digits; larger values would not round-trip.
const BOOT_MICROS_MAX: u64 = (1 << 52) - 1;
/// Ids render `shard_idx` with 2 hex digits.
const SHARD_IDX_MAX: u16 = 0xff;
/// Ids render `seq` with 12 hex digits (2^48 messages: 9 years at a million per second).
const SEQ_MAX: u64 = (1 << 48) - 1;
/// Bytes of a length prefix in the envelope encoding.
const LEN_PREFIX_BYTES: usize = 4;

/// What a shard needs to know; fixed for its lifetime.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// This shard's index, part of every id it issues (at most 255).
    pub shard_idx: u16,
    /// Process start in Unix microseconds, part of every id (below 2^52).
    pub boot_micros: u64,
    /// Size of the message ring, allocated up front: the shard's memory bound.
    pub ring_bytes: usize,
    /// How long a message is kept after it was inserted.
    pub ttl_ms: u64,
    /// Messages per inbox; a new one drops that inbox's oldest (at least 1).
    pub inbox_messages_max: usize,
}

/// A message to store, as the SMTP side hands it over.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// Envelope sender ("" for the null reverse-path).
    pub mail_from: &'a str,
    /// Envelope recipients that live in this shard. Exact duplicates are stored once;
    /// spellings of one inbox (`A@x`, `a@x`) are one inbox that lists both.
    pub rcpts: &'a [Rcpt<'a>],
    /// Concatenated in order they form the stored message (our Received header, then the body).
    pub parts: &'a [&'a [u8]],
    /// When the message was received, Unix ms (shown to clients; expiry counts from insertion).
    pub received_at_ms: u64,
}

/// One envelope recipient: its inbox and the address as the client wrote it.
#[derive(Debug, Clone)]
pub struct Rcpt<'a> {
    pub key: InboxKey<'a>,
    pub written: &'a str,
}

impl<'a> Rcpt<'a> {
    /// The recipient `written`, if it names an inbox (see `InboxKey::new`).
    pub fn new(written: &'a str) -> Option<Rcpt<'a>> {
        let key = InboxKey::new(written).ok()?;
        Some(Rcpt { key, written })
    }
}

/// Why a message was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Stored in memory, but the journal could not make it durable (the sender gets a
    /// 451 and tries again). The store itself never returns it; the runtime's delivery
    /// across shards does, through the same reply as the store's own errors.
    #[error("the journal could not make the message durable")]
    NotDurable,
    /// The message (with its envelope) is larger than the whole ring, so it can never fit.
    #[error("message needs {size_bytes} bytes but the shard's ring holds {capacity_bytes}")]
    TooLarge {
        /// Bytes the message needs in the ring: raw bytes plus envelope.
        size_bytes: usize,
        /// The ring's capacity.
        capacity_bytes: usize,
    },
}

/// A live message as a snapshot writes it (`Shard::snapshot_chunk`).
pub struct SnapshotMessage<'a> {
    pub seq: u64,
    pub id: MessageId,
    pub received_at_ms: u64,
    pub expires_at_ms: u64,
    pub mail_from: &'a str,
    /// (inbox key, address as written) of each inbox of this shard still holding it.
    pub rcpts: &'a [(&'a str, &'a str)],
    /// The stored bytes (our Received header and the client's message).
    pub raw: &'a [u8],
}

/// The most ring bytes the envelope of one message can take: MAIL FROM and `n_rcpts_max`
/// recipients of at most `address_bytes_max` bytes each (a key, lowercased, can be up to
/// three times longer than the address it comes from, in UTF-8).
pub fn envelope_bytes_max(n_rcpts_max: usize, address_bytes_max: usize) -> usize {
    LEN_PREFIX_BYTES
        + address_bytes_max
        + n_rcpts_max * (2 * LEN_PREFIX_BYTES + 4 * address_bytes_max)
}

/// Why a message was not restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// As for `insert`.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// It would come before the newest message of one of its inboxes.
    #[error("restored message {id} is not newer than the newest of inbox {key}")]
    OutOfOrder { id: MessageId, key: String },
}

/// Counters and gauges of one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Live messages (referenced by at least one inbox).
    pub messages_held: u64,
    /// Raw bytes of live messages.
    pub bytes_held: u64,
    /// Inboxes holding at least one message.
    pub inboxes_held: u64,
    /// Capacity of the ring.
    pub ring_bytes: u64,
    /// Ring bytes in use: live messages, tombstones and their envelopes.
    pub ring_bytes_used: u64,
    /// Messages stored since start.
    pub stored_total: u64,
    /// Raw bytes stored since start.
    pub stored_bytes_total: u64,
    /// Messages dropped because their TTL passed.
    pub evicted_ttl: u64,
    /// Messages dropped to make room for newer ones (ring or metadata budget full).
    pub evicted_capacity: u64,
    /// Messages dropped because every inbox holding them reached its cap.
    pub evicted_inbox_full: u64,
    /// Messages deleted by clients (the last inbox holding them deleted them).
    pub deleted: u64,
}

/// Messages of one inbox, as `Shard::list` returns them.
#[derive(Debug)]
pub struct Listing<'a> {
    /// Messages in the inbox now.
    pub total: usize,
    /// Newest first, at most `limit`, only those newer than `after`.
    pub messages: Vec<MessageRef<'a>>,
    /// The newest message of the inbox, whatever `after` and `limit` were.
    pub newest: Option<MessageId>,
}

/// A borrowed view of one stored message, as seen from one inbox.
#[derive(Clone, Copy)]
pub struct MessageRef<'a> {
    /// The message's id.
    pub id: MessageId,
    /// Envelope sender ("" for the null reverse-path).
    pub mail_from: &'a str,
    /// When it was received, Unix ms.
    pub received_at_ms: u64,
    /// When it expires, Unix ms.
    pub expires_at_ms: u64,
    /// The exact stored bytes, contiguous.
    pub raw: &'a [u8],
    /// Some client of this inbox read it (HTTP, POP3 RETR, IMAP \\Seen).
    pub seen: bool,
    /// The inbox this view is from (its `rcpts` are this inbox's recipients).
    inbox_key: &'a str,
    /// The envelope's recipient records.
    rcpt_records: RcptRecords<'a>,
    /// The entry's mark, see `mark_cached`.
    cached: &'a Cell<bool>,
}

/// One shard's store. See the module documentation for the design.
pub struct Shard {
    config: ShardConfig,
    /// Message bytes.
    ring: Ring,
    /// Live and dead (tombstone) entries in insertion order; `entries[i]` has seq `front_seq + i`.
    entries: VecDeque<Entry>,
    /// Seq of `entries[0]`, or the next seq to issue when `entries` is empty. Starts at 1.
    front_seq: u64,
    /// Inbox key -> seqs.
    index: InboxIndex,
    /// Marked messages (`mark_cached`) that have gone since the owner last asked.
    /// Bounded by the number of marked messages.
    released_cached: Vec<MessageId>,
    /// Ids of the restored messages (`restore`) still at the front of `entries`, in entry
    /// order: `entries[i]` for `i < restored.len()` was restored and keeps the id it had
    /// when it was first stored (another boot, maybe another shard).
    restored: VecDeque<MessageId>,
    /// Restored id -> its seq here, for lookups by id.
    restored_seqs: HashMap<MessageId, u64>,
    /// The first seq issued by `insert`; seqs below it were restored. Ids of this shard
    /// with a lower seq were never issued.
    first_native_seq: u64,
    /// Metadata budget, see `RING_BYTES_PER_META_BYTE`.
    meta_bytes_max: usize,
    /// Mail clients' UIDs are seqs less this (`numbered`); it moves up only when the next
    /// seq would not fit 32 bits, which changes the shard's UIDVALIDITY.
    uid_base: u64,
    /// Counters; the ring gauges are filled in by `stats`.
    stats: ShardStats,
}

/// Metadata of one message (live or tombstone). Keep it small: see "Memory per message".
struct Entry {
    /// Where the envelope and raw bytes are in the ring.
    slot: Slot,
    /// Length of the envelope at the start of the slot; the raw message follows.
    envelope_bytes: u32,
    /// Inboxes that still hold this message; 0 means dead (a tombstone).
    n_inbox_refs: u32,
    /// The owner caches something derived from this message (`MessageRef::mark_cached`);
    /// a `Cell` because readers mark through a shared borrow.
    cached: Cell<bool>,
    received_at_ms: u64,
    expires_at_ms: u64,
}

/// Why a message leaves the store, for the counters.
#[derive(Debug, Clone, Copy)]
enum Reason {
    Ttl,
    Capacity,
    InboxFull,
    Deleted,
}

impl Shard {
    /// Creates a shard and allocates its whole ring.
    ///
    /// # Panics
    /// On a configuration no caller should pass: `ring_bytes` or `inbox_messages_max` of 0,
    /// `shard_idx` above 255 or `boot_micros` of 2^52 or more (ids could not round-trip).
    pub fn new(config: ShardConfig) -> Shard {
        assert!(
            config.inbox_messages_max > 0,
            "inbox_messages_max must be positive"
        );
        assert!(
            config.shard_idx <= SHARD_IDX_MAX,
            "shard_idx does not fit an id"
        );
        assert!(
            config.boot_micros <= BOOT_MICROS_MAX,
            "boot_micros does not fit an id"
        );
        let ring = Ring::new(config.ring_bytes);
        let meta_bytes_max =
            (config.ring_bytes / RING_BYTES_PER_META_BYTE).max(META_BYTES_MAX_FLOOR);
        Shard {
            config,
            ring,
            entries: VecDeque::new(),
            front_seq: 1,
            index: InboxIndex::new(),
            released_cached: Vec::new(),
            restored: VecDeque::new(),
            restored_seqs: HashMap::new(),
            first_native_seq: 1,
            meta_bytes_max,
            uid_base: 0,
            stats: ShardStats::default(),
        }
    }

    /// The configuration the shard was created with.
    pub fn config(&self) -> &ShardConfig {
        &self.config
    }

    /// Stores a message once for all its recipients in this shard, evicting the oldest
    /// messages if the ring (or the metadata budget) is full, and each inbox's oldest if it
    /// is over its cap.
    ///
    /// # Errors
    /// `TooLarge` if the message and its envelope are larger than the whole ring.
    ///
    /// # Panics
    /// If `incoming.rcpts` is empty: the caller routes a message to a shard because of a
    /// recipient there.
    pub fn insert(
        &mut self,
        incoming: &Incoming<'_>,
        now_ms: u64,
    ) -> Result<MessageId, StoreError> {
        let seq = self.insert_at(incoming, now_ms.saturating_add(self.config.ttl_ms), 0)?;
        Ok(self.id_of(seq))
    }

    /// Stores a message that expires at `expires_at_ms` (or when the one before it does,
    /// if later: the store's expiry order is its insertion order) and returns its seq;
    /// `extra_meta_bytes` is charged to the metadata budget on top of the usual.
    fn insert_at(
        &mut self,
        incoming: &Incoming<'_>,
        expires_at_ms: u64,
        extra_meta_bytes: usize,
    ) -> Result<u64, StoreError> {
        assert!(
            !incoming.rcpts.is_empty(),
            "a message needs a recipient in this shard"
        );
        let mut rcpts: Vec<(&str, &str)> = Vec::with_capacity(incoming.rcpts.len());
        for rcpt in incoming.rcpts {
            if !rcpts.iter().any(|&(_, seen)| seen == rcpt.written) {
                rcpts.push((rcpt.key.as_str(), rcpt.written));
            }
        }
        let mut keys: Vec<&str> = Vec::with_capacity(rcpts.len());
        for &(key, _) in &rcpts {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        // UIDs (seq - uid_base) are 32-bit. Every held message is in the ring, which holds
        // far fewer than 2^32, so rebasing on the oldest brings them all in range again.
        let next_seq = self.front_seq + self.entries.len() as u64;
        if next_seq - self.uid_base >= u64::from(u32::MAX) {
            self.uid_base = self.front_seq - 1;
        }

        let capacity_bytes = self.ring.capacity_bytes();
        let raw_bytes = incoming
            .parts
            .iter()
            .fold(0usize, |sum, part| sum.saturating_add(part.len()));
        let envelope_bytes = envelope_len(incoming.mail_from, &rcpts);
        let slot_bytes = envelope_bytes.saturating_add(raw_bytes);
        if slot_bytes > capacity_bytes || u32::try_from(envelope_bytes).is_err() {
            return Err(StoreError::TooLarge {
                size_bytes: slot_bytes,
                capacity_bytes,
            });
        }
        let meta_charge: usize = ENTRY_META_BYTES
            + extra_meta_bytes
            + keys
                .iter()
                .map(|key| InboxIndex::meta_bytes_for_new(key))
                .sum::<usize>();

        // Make room, oldest first. An empty shard always has room: slot_bytes <= capacity,
        // and one message may exceed the metadata budget on its own.
        let slot = loop {
            if (self.entries.is_empty() || self.meta_bytes() + meta_charge <= self.meta_bytes_max)
                && let Some(slot) = self.ring.try_reserve(slot_bytes)
            {
                break slot;
            }
            assert!(
                !self.entries.is_empty(),
                "an empty ring refused a message that fits"
            );
            self.evict_oldest(Reason::Capacity);
        };

        let bytes = self.ring.bytes_mut(slot);
        let (envelope, mut raw) = bytes.split_at_mut(envelope_bytes);
        write_envelope(envelope, incoming.mail_from, &rcpts);
        for part in incoming.parts {
            let (head, rest) = raw.split_at_mut(part.len());
            head.copy_from_slice(part);
            raw = rest;
        }
        debug_assert!(raw.is_empty());

        let seq = self.front_seq + self.entries.len() as u64;
        assert!(seq <= SEQ_MAX, "sequence numbers exhausted");
        let expires_at_ms = self
            .entries
            .back()
            .map_or(0, |newest| newest.expires_at_ms)
            .max(expires_at_ms);
        self.entries.push_back(Entry {
            slot,
            envelope_bytes: envelope_bytes as u32,
            n_inbox_refs: keys.len() as u32,
            cached: Cell::new(false),
            received_at_ms: incoming.received_at_ms,
            expires_at_ms,
        });
        self.stats.stored_total += 1;
        self.stats.stored_bytes_total += raw_bytes as u64;
        self.stats.messages_held += 1;
        self.stats.bytes_held += raw_bytes as u64;
        for key in keys {
            if let Some(dropped_seq) = self.index.push(key, seq, self.config.inbox_messages_max) {
                self.release_ref(dropped_seq, Reason::InboxFull);
            }
        }
        Ok(seq)
    }

    /// Puts back a message from before a restart (a snapshot or journal), keeping its id,
    /// its times and its place in each inbox. Only before the first `insert`, in the order
    /// the messages were received; a message that has expired at `now_ms` is skipped.
    ///
    /// Returns the seq it got here (`None`: skipped, expired or already restored).
    ///
    /// # Errors
    /// `TooLarge` as for `insert`; `OutOfOrder` if `id` does not come after the newest
    /// message of one of its inboxes (restores must keep inboxes in id order, which
    /// `list`'s `after=` relies on).
    ///
    /// # Panics
    /// After the first `insert`, or without recipients.
    pub fn restore(
        &mut self,
        incoming: &Incoming<'_>,
        id: MessageId,
        expires_at_ms: u64,
        now_ms: u64,
    ) -> Result<Option<u64>, RestoreError> {
        assert!(
            self.first_native_seq == self.front_seq + self.entries.len() as u64,
            "restore after insert"
        );
        if expires_at_ms <= now_ms {
            return Ok(None);
        }
        if self.restored_seqs.contains_key(&id) {
            // The same message twice (a snapshot and the journal both had it).
            return Ok(None);
        }
        for rcpt in incoming.rcpts {
            if let Some((_, inbox)) = self.index.get(rcpt.key.as_str())
                && let Some(newest) = inbox.newest()
                && self.id_of(newest) >= id
            {
                return Err(RestoreError::OutOfOrder {
                    id,
                    key: rcpt.key.to_string(),
                });
            }
        }
        let seq = self.front_seq + self.entries.len() as u64;
        self.insert_at(incoming, expires_at_ms, RESTORED_ID_META_BYTES)?;
        self.restored.push_back(id);
        self.restored_seqs.insert(id, seq);
        self.first_native_seq = seq + 1;
        Ok(Some(seq))
    }

    /// The seq of the oldest message the store still has an entry for (the next seq to
    /// issue when it is empty): every message with a smaller seq is gone.
    pub fn oldest_seq(&self) -> u64 {
        self.front_seq
    }

    /// The seq the next `insert` will get.
    pub fn next_seq(&self) -> u64 {
        self.front_seq + self.entries.len() as u64
    }

    /// Calls `f` with every live message from seq `from_seq` on, oldest first, at most
    /// `limit` of them, and returns the seq to continue from: what a snapshot writes, a
    /// chunk at a time so the executor can serve others in between. Each message comes
    /// with the recipients of inboxes that still hold it.
    pub fn snapshot_chunk(
        &self,
        from_seq: u64,
        limit: usize,
        mut f: impl FnMut(SnapshotMessage<'_>),
    ) -> u64 {
        let mut seq = from_seq.max(self.front_seq);
        let end_seq = self.next_seq();
        let mut n_given = 0;
        while seq < end_seq && n_given < limit {
            let entry = &self.entries[self.entry_idx(seq)];
            if entry.n_inbox_refs > 0 {
                let (envelope, raw) = self
                    .ring
                    .bytes(entry.slot)
                    .split_at(entry.envelope_bytes as usize);
                let (mail_from, rcpt_records) = read_envelope(envelope);
                let rcpts: Vec<(&str, &str)> = rcpt_records
                    .filter(|(key, _)| self.index.contains(key, seq))
                    .collect();
                f(SnapshotMessage {
                    seq,
                    id: self.id_of(seq),
                    received_at_ms: entry.received_at_ms,
                    expires_at_ms: entry.expires_at_ms,
                    mail_from,
                    rcpts: &rcpts,
                    raw,
                });
                n_given += 1;
            }
            seq += 1;
        }
        seq
    }

    /// Drops every message whose TTL has passed at `now_ms`; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let mut n_expired = 0;
        while let Some(oldest) = self.entries.front()
            && oldest.expires_at_ms <= now_ms
        {
            self.evict_oldest(Reason::Ttl);
            n_expired += 1;
        }
        n_expired
    }

    /// When the oldest message expires (the next time `expire` has work), if any.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        self.entries.front().map(|oldest| oldest.expires_at_ms)
    }

    /// The messages of an inbox newer than `after` (ids compare as `(boot_micros, shard_idx,
    /// seq)` tuples, so an id from another boot or shard still has a place in the order),
    /// newest first, at most `limit`. O(log n + limit) in the inbox's length.
    pub fn list(&self, key: &InboxKey<'_>, after: Option<MessageId>, limit: usize) -> Listing<'_> {
        let Some((stored_key, inbox)) = self.index.get(key.as_str()) else {
            return Listing {
                total: 0,
                messages: Vec::new(),
                newest: None,
            };
        };
        // An inbox lists its messages in id order (native seqs grow, and `restore` keeps
        // restored ones in order before them), so "newer than after" is a binary search.
        let first_idx = match after {
            None => 0,
            Some(after) => inbox.partition_point(|seq| self.id_of(seq) <= after),
        };
        let messages = inbox
            .iter()
            .skip(first_idx)
            .rev()
            .take(limit)
            .map(|(seq, seen)| self.message_ref(stored_key, seq, seen))
            .collect();
        Listing {
            total: inbox.len(),
            messages,
            newest: inbox.newest().map(|seq| self.id_of(seq)),
        }
    }

    /// One message of an inbox; None if that inbox does not hold it (any more).
    pub fn get(&self, key: &InboxKey<'_>, id: MessageId) -> Option<MessageRef<'_>> {
        let seq = self.local_seq(id)?;
        let (stored_key, inbox) = self.index.get(key.as_str())?;
        let idx = inbox.position(seq)?;
        Some(self.message_ref(stored_key, seq, inbox.seen_at(idx)))
    }

    /// Removes a message from one inbox; when no inbox holds it any more its bytes are
    /// zeroed at once (the space is reclaimed when the older messages are gone). Returns
    /// false if the inbox did not hold it.
    pub fn delete_message(&mut self, key: &InboxKey<'_>, id: MessageId) -> bool {
        let Some(seq) = self.local_seq(id) else {
            return false;
        };
        if !self.index.remove(key.as_str(), seq) {
            return false;
        }
        self.release_ref(seq, Reason::Deleted);
        true
    }

    /// Empties an inbox, as `delete_message` for each of its messages; returns how many it held.
    pub fn delete_inbox(&mut self, key: &InboxKey<'_>) -> usize {
        let seqs = self.index.take(key.as_str());
        for &seq in &seqs {
            self.release_ref(seq, Reason::Deleted);
        }
        seqs.len()
    }

    /// Marks a message of an inbox seen or unseen; false if the inbox does not hold it.
    pub fn set_seen(&mut self, key: &InboxKey<'_>, id: MessageId, seen: bool) -> bool {
        self.local_seq(id)
            .is_some_and(|seq| self.index.set_seen(key.as_str(), seq, seen))
    }

    /// Counters and gauges.
    pub fn stats(&self) -> ShardStats {
        ShardStats {
            inboxes_held: self.index.len() as u64,
            ring_bytes: self.ring.capacity_bytes() as u64,
            ring_bytes_used: self.ring.used_bytes() as u64,
            ..self.stats
        }
    }

    /// Estimated heap bytes of metadata (entries, restored ids and inbox index). Each insert
    /// evicts the oldest messages until it fits `meta_bytes_max()` (a single message may be
    /// larger on its own), and nothing else adds to it.
    pub fn meta_bytes(&self) -> usize {
        self.entries.len() * ENTRY_META_BYTES
            + self.restored.len() * RESTORED_ID_META_BYTES
            + self.index.meta_bytes()
    }

    /// Unmarks a message whose derived data the owner dropped (no-op if it is gone).
    pub fn unmark_cached(&mut self, id: MessageId) {
        if let Some(seq) = self.local_seq(id) {
            let entry_idx = self.entry_idx(seq);
            self.entries[entry_idx].cached.set(false);
        }
    }

    /// The marked messages that went (expired, evicted or deleted) since the last call.
    pub fn take_released_cached(&mut self) -> Vec<MessageId> {
        std::mem::take(&mut self.released_cached)
    }

    /// The metadata budget.
    pub fn meta_bytes_max(&self) -> usize {
        self.meta_bytes_max
    }

    /// The id of a seq issued here.
    fn id_of(&self, seq: u64) -> MessageId {
        if seq < self.first_native_seq {
            // Restored: its own id, kept in `restored` in entry order.
            let restored_idx = (seq - self.front_seq) as usize;
            return self.restored[restored_idx];
        }
        MessageId {
            boot_micros: self.config.boot_micros,
            shard_idx: self.config.shard_idx,
            seq,
        }
    }

    /// The seq of `id` if this shard issued or restored it and still has its entry (live
    /// or dead).
    fn local_seq(&self, id: MessageId) -> Option<u64> {
        let next_seq = self.front_seq + self.entries.len() as u64;
        let ours =
            id.boot_micros == self.config.boot_micros && id.shard_idx == self.config.shard_idx;
        if ours {
            return (id.seq >= self.first_native_seq.max(self.front_seq) && id.seq < next_seq)
                .then_some(id.seq);
        }
        self.restored_seqs.get(&id).copied()
    }

    fn entry_idx(&self, seq: u64) -> usize {
        assert!(seq >= self.front_seq, "seq already released");
        let entry_idx = (seq - self.front_seq) as usize;
        assert!(entry_idx < self.entries.len(), "seq not issued");
        entry_idx
    }

    /// A view of live message `seq` from inbox `stored_key` (a key borrowed from the index).
    fn message_ref<'a>(&'a self, stored_key: &'a str, seq: u64, seen: bool) -> MessageRef<'a> {
        let entry = &self.entries[self.entry_idx(seq)];
        debug_assert!(entry.n_inbox_refs > 0, "an inbox refers to a dead message");
        let (envelope, raw) = self
            .ring
            .bytes(entry.slot)
            .split_at(entry.envelope_bytes as usize);
        let (mail_from, rcpt_records) = read_envelope(envelope);
        MessageRef {
            id: self.id_of(seq),
            mail_from,
            received_at_ms: entry.received_at_ms,
            expires_at_ms: entry.expires_at_ms,
            raw,
            seen,
            inbox_key: stored_key,
            rcpt_records,
            cached: &entry.cached,
        }
    }

    /// One inbox stopped holding `seq`; the message dies if it was the last.
    fn release_ref(&mut self, seq: u64, reason: Reason) {
        let entry_idx = self.entry_idx(seq);
        let entry = &mut self.entries[entry_idx];
        assert!(
            entry.n_inbox_refs > 0,
            "released a reference to a dead message"
        );
        entry.n_inbox_refs -= 1;
        if entry.n_inbox_refs == 0 {
            self.kill(entry_idx, reason);
            self.pop_dead_oldest();
        }
    }

    /// Drops the oldest message (live or dead) from every inbox and the ring.
    fn evict_oldest(&mut self, reason: Reason) {
        let Some(oldest) = self.entries.front() else {
            return;
        };
        if oldest.n_inbox_refs > 0 {
            // The shard's oldest message is the oldest of every inbox still holding it.
            let envelope = &self.ring.bytes(oldest.slot)[..oldest.envelope_bytes as usize];
            let (_, rcpt_records) = read_envelope(envelope);
            let mut n_removed = 0;
            for (key, _) in rcpt_records {
                if self.index.remove_oldest_if(key, self.front_seq) {
                    n_removed += 1;
                }
            }
            assert_eq!(
                n_removed, oldest.n_inbox_refs,
                "inbox references out of step"
            );
            self.entries[0].n_inbox_refs = 0;
            self.kill(0, reason);
        }
        self.pop_oldest();
        self.pop_dead_oldest();
    }

    /// Zeroes a message that no inbox holds any more and counts it as gone.
    fn kill(&mut self, entry_idx: usize, reason: Reason) {
        let entry = &mut self.entries[entry_idx];
        debug_assert_eq!(entry.n_inbox_refs, 0);
        let raw_bytes = (entry.slot.len() - entry.envelope_bytes as usize) as u64;
        if entry.cached.replace(false) {
            let seq = self.front_seq + entry_idx as u64;
            let id = self.id_of(seq);
            self.released_cached.push(id);
        }
        let entry = &self.entries[entry_idx];
        let slot = entry.slot;
        self.ring.zero(slot);
        self.stats.messages_held -= 1;
        self.stats.bytes_held -= raw_bytes;
        let counter = match reason {
            Reason::Ttl => &mut self.stats.evicted_ttl,
            Reason::Capacity => &mut self.stats.evicted_capacity,
            Reason::InboxFull => &mut self.stats.evicted_inbox_full,
            Reason::Deleted => &mut self.stats.deleted,
        };
        *counter += 1;
    }

    /// Releases the oldest entry's ring space; it must be dead already.
    fn pop_oldest(&mut self) {
        let Some(oldest) = self.entries.pop_front() else {
            return;
        };
        assert_eq!(oldest.n_inbox_refs, 0, "popped a live message");
        self.ring
            .release_oldest(oldest.slot, self.entries.front().map(|next| next.slot));
        if self.front_seq < self.first_native_seq
            && let Some(id) = self.restored.pop_front()
        {
            self.restored_seqs.remove(&id);
        }
        self.front_seq += 1;
    }

    /// Pops tombstones at the front, keeping the invariant that the front entry is live.
    fn pop_dead_oldest(&mut self) {
        while self
            .entries
            .front()
            .is_some_and(|oldest| oldest.n_inbox_refs == 0)
        {
            self.pop_oldest();
        }
    }
}

impl<'a> MessageRef<'a> {
    /// The envelope recipients of this message that belong to this view's inbox, as the
    /// client wrote them (`Alice@x` and `alice@x` both land in inbox `alice@x`).
    pub fn rcpts(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        let inbox_key = self.inbox_key;
        self.rcpt_records
            .filter(move |&(key, _)| key == inbox_key)
            .map(|(_, written)| written)
    }

    /// Tells the store that the owner caches something derived from this message, so
    /// that its id is queued in `Shard::take_released_cached` when it goes, for any reason.
    pub fn mark_cached(&self) {
        self.cached.set(true);
    }

    /// The inbox this view is from.
    pub fn inbox_key(&self) -> InboxKey<'a> {
        InboxKey::from_stored(self.inbox_key)
    }

    /// Stored size of the message in bytes.
    pub fn size_bytes(&self) -> usize {
        self.raw.len()
    }
}

impl fmt::Debug for MessageRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageRef")
            .field("id", &self.id)
            .field("inbox_key", &self.inbox_key)
            .field("mail_from", &self.mail_from)
            .field("received_at_ms", &self.received_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("size_bytes", &self.raw.len())
            .finish()
    }
}

mod envelope;
mod numbered;
pub use numbered::Numbered;

use envelope::{RcptRecords, envelope_len, read_envelope, write_envelope};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod model;
