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
//! of heap; a message whose summary has been read also caches a `Summary` (about 80 bytes
//! plus subject and preview, at most ~1 KiB for the preview part), and one that has been
//! viewed a `ParsedMessage` (16 bytes per header field, the decoded text if it needed
//! decoding, the sanitized HTML, ~80 bytes plus the name per attachment: attachments and
//! plain text are offsets into the ring, not copies).
//! All of this is charged against a metadata budget (`RING_BYTES_PER_META_BYTE`,
//! `META_BYTES_MAX_FLOOR`): when it is exhausted the oldest messages are evicted as if the
//! ring were full, so a flood of tiny messages to many addresses cannot grow the heap without
//! bound. A shard's memory is therefore about `ring_bytes * 1.5` at most.

use std::borrow::Cow;
use std::cell::{Cell, OnceCell};
use std::collections::VecDeque;
use std::fmt;

use crate::mail::{ParsedMessage, Summary};
use crate::store::id::MessageId;
use crate::store::index::{InboxIndex, inbox_key};
use crate::store::ring::{Ring, Slot};

/// The metadata budget is `ring_bytes / RING_BYTES_PER_META_BYTE` (but at least
/// `META_BYTES_MAX_FLOOR`): entries, inboxes and cached summaries together.
pub const RING_BYTES_PER_META_BYTE: usize = 2;
/// Smallest metadata budget, so that small test rings are limited by bytes, not metadata.
pub const META_BYTES_MAX_FLOOR: usize = 256 * 1024;
/// Estimated heap bytes per entry: the struct plus the spare capacity a growing `VecDeque`
/// keeps on average.
pub const ENTRY_META_BYTES: usize = size_of::<Entry>() * 3 / 2;
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
    /// Envelope recipients that live in this shard, as the client wrote them; each one's
    /// inbox key is its lowercase form. Exact duplicates are stored once.
    pub rcpts: &'a [&'a str],
    /// Concatenated in order they form the stored message (our Received header, then the body).
    pub parts: &'a [&'a [u8]],
    /// When the message was received, Unix ms (shown to clients; expiry counts from insertion).
    pub received_at_ms: u64,
}

/// Why a message was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The message (with its envelope) is larger than the whole ring, so it can never fit.
    #[error("message needs {size_bytes} bytes but the shard's ring holds {capacity_bytes}")]
    TooLarge {
        /// Bytes the message needs in the ring: raw bytes plus envelope.
        size_bytes: usize,
        /// The ring's capacity.
        capacity_bytes: usize,
    },
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
    /// The inbox this view is from (its `rcpts` are this inbox's recipients).
    inbox_key: &'a str,
    /// The envelope's recipient records.
    rcpt_records: RcptRecords<'a>,
    /// The entry's cache of parsed fields.
    parsed: &'a OnceCell<Box<Parsed>>,
    /// The shard's count of heap bytes held by cached parses.
    parsed_bytes: &'a Cell<usize>,
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
    /// Heap bytes of cached parses (`Parsed`); a `Cell` because messages are parsed
    /// through `&self`.
    parsed_bytes: Cell<usize>,
    /// Metadata budget, see `RING_BYTES_PER_META_BYTE`.
    meta_bytes_max: usize,
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
    received_at_ms: u64,
    expires_at_ms: u64,
    /// Parsed on first read, because the SMTP hot path should only copy bytes.
    parsed: OnceCell<Box<Parsed>>,
}

/// What readers parsed of one message, cached in its entry until the message goes.
struct Parsed {
    /// What a listing shows.
    summary: Summary,
    /// What the message view shows, parsed the first time a reader views the message (from
    /// the same parse as `summary` if nobody listed it before).
    message: OnceCell<Box<ParsedMessage>>,
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
            parsed_bytes: Cell::new(0),
            meta_bytes_max,
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
        assert!(
            !incoming.rcpts.is_empty(),
            "a message needs a recipient in this shard"
        );
        let mut rcpts: Vec<(Cow<'_, str>, &str)> = Vec::with_capacity(incoming.rcpts.len());
        for &written in incoming.rcpts {
            if !rcpts.iter().any(|&(_, seen)| seen == written) {
                rcpts.push((inbox_key(written), written));
            }
        }
        let mut keys: Vec<&str> = Vec::with_capacity(rcpts.len());
        for (key, _) in &rcpts {
            if !keys.contains(&&**key) {
                keys.push(key);
            }
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
            .max(now_ms.saturating_add(self.config.ttl_ms));
        self.entries.push_back(Entry {
            slot,
            envelope_bytes: envelope_bytes as u32,
            n_inbox_refs: keys.len() as u32,
            received_at_ms: incoming.received_at_ms,
            expires_at_ms,
            parsed: OnceCell::new(),
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
        Ok(self.id_of(seq))
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
    pub fn list(&self, inbox_key: &str, after: Option<MessageId>, limit: usize) -> Listing<'_> {
        let key = crate::store::index::inbox_key(inbox_key);
        let Some((stored_key, seqs)) = self.index.get(&key) else {
            return Listing {
                total: 0,
                messages: Vec::new(),
                newest: None,
            };
        };
        let first_idx = match after {
            None => 0,
            Some(after) => {
                let ours = (self.config.boot_micros, self.config.shard_idx);
                match (after.boot_micros, after.shard_idx).cmp(&ours) {
                    std::cmp::Ordering::Less => 0,
                    std::cmp::Ordering::Greater => seqs.len(),
                    std::cmp::Ordering::Equal => seqs.partition_point(|&seq| seq <= after.seq),
                }
            }
        };
        let messages = seqs
            .range(first_idx..)
            .rev()
            .take(limit)
            .map(|&seq| self.message_ref(stored_key, seq))
            .collect();
        Listing {
            total: seqs.len(),
            messages,
            newest: seqs.back().map(|&seq| self.id_of(seq)),
        }
    }

    /// One message of an inbox; None if that inbox does not hold it (any more).
    pub fn get(&self, inbox_key: &str, id: MessageId) -> Option<MessageRef<'_>> {
        let seq = self.local_seq(id)?;
        let key = crate::store::index::inbox_key(inbox_key);
        let (stored_key, seqs) = self.index.get(&key)?;
        seqs.binary_search(&seq).ok()?;
        Some(self.message_ref(stored_key, seq))
    }

    /// Removes a message from one inbox; when no inbox holds it any more its bytes are
    /// zeroed at once (the space is reclaimed when the older messages are gone). Returns
    /// false if the inbox did not hold it.
    pub fn delete_message(&mut self, inbox_key: &str, id: MessageId) -> bool {
        let Some(seq) = self.local_seq(id) else {
            return false;
        };
        let key = crate::store::index::inbox_key(inbox_key);
        if !self.index.remove(&key, seq) {
            return false;
        }
        self.release_ref(seq, Reason::Deleted);
        true
    }

    /// Empties an inbox, as `delete_message` for each of its messages; returns how many it held.
    pub fn delete_inbox(&mut self, inbox_key: &str) -> usize {
        let key = crate::store::index::inbox_key(inbox_key);
        let seqs = self.index.take(&key);
        for &seq in &seqs {
            self.release_ref(seq, Reason::Deleted);
        }
        seqs.len()
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

    /// Estimated heap bytes of metadata (entries, inbox index, cached parses). Each insert
    /// evicts the oldest messages until it fits `meta_bytes_max()` (a single message may be
    /// larger on its own); messages parsed since the last insert can exceed it until the next.
    pub fn meta_bytes(&self) -> usize {
        self.entries.len() * ENTRY_META_BYTES + self.index.meta_bytes() + self.parsed_bytes.get()
    }

    /// The metadata budget.
    pub fn meta_bytes_max(&self) -> usize {
        self.meta_bytes_max
    }

    /// The id of a seq issued here.
    fn id_of(&self, seq: u64) -> MessageId {
        MessageId {
            boot_micros: self.config.boot_micros,
            shard_idx: self.config.shard_idx,
            seq,
        }
    }

    /// The seq of `id` if this shard issued it and still has its entry (live or dead).
    fn local_seq(&self, id: MessageId) -> Option<u64> {
        let next_seq = self.front_seq + self.entries.len() as u64;
        let ours =
            id.boot_micros == self.config.boot_micros && id.shard_idx == self.config.shard_idx;
        (ours && id.seq >= self.front_seq && id.seq < next_seq).then_some(id.seq)
    }

    fn entry_idx(&self, seq: u64) -> usize {
        assert!(seq >= self.front_seq, "seq already released");
        let entry_idx = (seq - self.front_seq) as usize;
        assert!(entry_idx < self.entries.len(), "seq not issued");
        entry_idx
    }

    /// A view of live message `seq` from inbox `stored_key` (a key borrowed from the index).
    fn message_ref<'a>(&'a self, stored_key: &'a str, seq: u64) -> MessageRef<'a> {
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
            inbox_key: stored_key,
            rcpt_records,
            parsed: &entry.parsed,
            parsed_bytes: &self.parsed_bytes,
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
        if let Some(parsed) = entry.parsed.take() {
            self.parsed_bytes
                .set(self.parsed_bytes.get() - parsed_heap_bytes(&parsed));
            let Parsed { summary, message } = *parsed;
            summary.wipe();
            if let Some(message) = message.into_inner() {
                message.wipe();
            }
        }
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

    /// Subject, date and preview, parsed on first use and cached in the entry.
    pub fn summary(&self) -> &'a Summary {
        &self
            .parsed
            .get_or_init(|| {
                let parsed = Box::new(Parsed {
                    summary: Summary::parse(self.raw),
                    message: OnceCell::new(),
                });
                self.parsed_bytes
                    .set(self.parsed_bytes.get() + parsed_heap_bytes(&parsed));
                parsed
            })
            .summary
    }

    /// Headers, bodies and attachments, parsed on first use and cached in the entry (with
    /// the summary, if it was not cached yet). Its offsets refer to `raw`.
    pub fn parsed(&self) -> &'a ParsedMessage {
        let cached = self.parsed.get_or_init(|| {
            let (summary, message) = ParsedMessage::parse(self.raw);
            let parsed = Box::new(Parsed {
                summary,
                message: OnceCell::from(Box::new(message)),
            });
            self.parsed_bytes
                .set(self.parsed_bytes.get() + parsed_heap_bytes(&parsed));
            parsed
        });
        // Set above unless a listing cached only the summary: then parse the view now.
        cached.message.get_or_init(|| {
            let (_, message) = ParsedMessage::parse(self.raw);
            self.parsed_bytes
                .set(self.parsed_bytes.get() + message_heap_bytes(&message));
            Box::new(message)
        })
    }

    /// The inbox this view is from (lowercase).
    pub fn inbox_key(&self) -> &'a str {
        self.inbox_key
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

/// The recipient records of an envelope: (inbox key, address as written) pairs.
#[derive(Clone, Copy)]
struct RcptRecords<'a> {
    bytes: &'a [u8],
}

impl<'a> Iterator for RcptRecords<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        if self.bytes.is_empty() {
            return None;
        }
        let key = take_str(&mut self.bytes);
        let written = take_str(&mut self.bytes);
        // An empty spelling means "as the key": most clients write addresses in lowercase.
        Some((key, if written.is_empty() { key } else { written }))
    }
}

/// Bytes of the envelope encoding: `len mail_from`, then per recipient `len key len written`
/// where `written` is empty when it equals `key`. Lengths are 4-byte little-endian. Saturates
/// (and then cannot fit any ring) on absurd lengths.
fn envelope_len(mail_from: &str, rcpts: &[(Cow<'_, str>, &str)]) -> usize {
    rcpts.iter().fold(
        LEN_PREFIX_BYTES.saturating_add(mail_from.len()),
        |sum, (key, written)| {
            let written_len = if key == written { 0 } else { written.len() };
            sum.saturating_add(2 * LEN_PREFIX_BYTES)
                .saturating_add(key.len())
                .saturating_add(written_len)
        },
    )
}

/// Writes the envelope into `out`, which is exactly `envelope_len` bytes long. Every string
/// fits a 4-byte length because the whole envelope does (checked by `insert`).
fn write_envelope(out: &mut [u8], mail_from: &str, rcpts: &[(Cow<'_, str>, &str)]) {
    let mut rest = put_str(out, mail_from);
    for (key, written) in rcpts {
        rest = put_str(rest, key);
        rest = put_str(rest, if key == written { "" } else { written });
    }
    assert!(rest.is_empty(), "envelope length mismatch");
}

fn put_str<'o>(out: &'o mut [u8], text: &str) -> &'o mut [u8] {
    let (prefix, rest) = out.split_at_mut(LEN_PREFIX_BYTES);
    prefix.copy_from_slice(&(text.len() as u32).to_le_bytes());
    let (body, rest) = rest.split_at_mut(text.len());
    body.copy_from_slice(text.as_bytes());
    rest
}

/// Splits an envelope into MAIL FROM and its recipient records.
fn read_envelope(envelope: &[u8]) -> (&str, RcptRecords<'_>) {
    let mut bytes = envelope;
    let mail_from = take_str(&mut bytes);
    (mail_from, RcptRecords { bytes })
}

/// Reads one length-prefixed string. The envelope was written by `write_envelope` from
/// `&str`s, so a failure here means the ring is corrupt: crash rather than serve garbage.
fn take_str<'a>(bytes: &mut &'a [u8]) -> &'a str {
    let (prefix, rest) = bytes.split_at(LEN_PREFIX_BYTES);
    let len = u32::from_le_bytes(prefix.try_into().expect("4-byte prefix")) as usize;
    let (text, rest) = rest.split_at(len);
    *bytes = rest;
    std::str::from_utf8(text).expect("envelope strings are UTF-8")
}

/// Heap bytes of a cache entry: what `summary` and `parsed` add to `parsed_bytes`.
fn parsed_heap_bytes(parsed: &Parsed) -> usize {
    size_of::<Parsed>()
        + parsed.summary.heap_bytes()
        + parsed
            .message
            .get()
            .map_or(0, |message| message_heap_bytes(message))
}

fn message_heap_bytes(message: &ParsedMessage) -> usize {
    size_of::<ParsedMessage>() + message.heap_bytes()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    const BOOT_MICROS: u64 = 1_764_000_000_000_000;
    const SHARD_IDX: u16 = 3;

    fn new_shard(ring_bytes: usize, inbox_messages_max: usize, ttl_ms: u64) -> Shard {
        Shard::new(ShardConfig {
            shard_idx: SHARD_IDX,
            boot_micros: BOOT_MICROS,
            ring_bytes,
            ttl_ms,
            inbox_messages_max,
        })
    }

    fn put(shard: &mut Shard, rcpts: &[&str], body: &str, now_ms: u64) -> MessageId {
        let parts: [&[u8]; 2] = [b"Received: test\r\n", body.as_bytes()];
        let incoming = Incoming {
            mail_from: "s@sender.test",
            rcpts,
            parts: &parts,
            received_at_ms: now_ms,
        };
        shard.insert(&incoming, now_ms).expect("fits")
    }

    fn seqs(shard: &Shard, key: &str) -> Vec<u64> {
        shard
            .list(key, None, usize::MAX)
            .messages
            .iter()
            .map(|message| message.id.seq)
            .collect()
    }

    fn id(seq: u64) -> MessageId {
        MessageId {
            boot_micros: BOOT_MICROS,
            shard_idx: SHARD_IDX,
            seq,
        }
    }

    impl Shard {
        /// Checks every invariant by scanning everything (tests only).
        fn check_invariants(&self) {
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
                assert!(
                    !seqs.is_empty() && seqs.iter().zip(seqs.iter().skip(1)).all(|(a, b)| a < b)
                );
                n_indexed -= seqs.len();
                index_meta_bytes += crate::store::index::INBOX_OVERHEAD_BYTES
                    + key.len()
                    + seqs.len() * crate::store::index::INBOX_SEQ_BYTES;
            }
            assert_eq!(n_indexed, 0, "an inbox lists a dead or unknown message");
            assert_eq!(self.index.meta_bytes(), index_meta_bytes);
            let parsed_bytes: usize = self
                .entries
                .iter()
                .filter_map(|entry| entry.parsed.get())
                .map(|parsed| parsed_heap_bytes(parsed))
                .sum();
            assert_eq!(self.parsed_bytes.get(), parsed_bytes);
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
            let message = shard.get(key, message_id).expect("held");
            assert_eq!(message.raw, raw);
            assert_eq!(message.mail_from, "s@sender.test");
            assert_eq!(message.rcpts().collect::<Vec<_>>(), expected_rcpts, "{key}");
            assert_eq!(message.expires_at_ms, 1005);
        }
        assert!(shard.get("c@x.test", message_id).is_none());
        // Deleting from one inbox leaves it in the other.
        assert!(shard.delete_message("a@x.test", message_id));
        assert!(!shard.delete_message("a@x.test", message_id));
        assert!(shard.get("b@x.test", message_id).is_some());
        assert_eq!((shard.stats().messages_held, shard.stats().deleted), (1, 0));
        assert!(shard.delete_message("b@x.test", message_id));
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
                shard.get(rcpt, *message_id).is_some(),
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
        assert!(shard.get("b@x.test", shared).is_none());
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
        assert!(shard.delete_message("b@x.test", second));
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
        assert_eq!(shard.delete_inbox("A@x.test"), 1);
        assert!(!contains(&shard, b"first-secret"));
        assert_eq!(shard.stats().ring_bytes_used, 0);
        assert_eq!(shard.stats().deleted, 2);
        assert_eq!(shard.delete_inbox("a@x.test"), 0);
        assert!(shard.get("a@x.test", first).is_none());
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
            let listing = shard.list("a@x.test", after, limit);
            let got: Vec<u64> = listing
                .messages
                .iter()
                .map(|message| message.id.seq)
                .collect();
            assert_eq!(got, expected, "after {after:?} limit {limit}");
            assert_eq!((listing.total, listing.newest), (4, Some(id(4))));
        }
        let empty = shard.list("nobody@x.test", None, 10);
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
            assert!(shard.get("a@x.test", unknown).is_none(), "{unknown:?}");
            assert!(!shard.delete_message("a@x.test", unknown), "{unknown:?}");
        }
        assert!(shard.get("a@x.test", message_id).is_some());
    }

    #[test]
    fn refuses_what_can_never_fit() {
        let mut shard = new_shard(64, 10, 1000);
        let body = [b'x'; 64];
        let parts: [&[u8]; 1] = [&body];
        let incoming = Incoming {
            mail_from: "",
            rcpts: &["a@x.test"],
            parts: &parts,
            received_at_ms: 0,
        };
        match shard.insert(&incoming, 0) {
            Err(StoreError::TooLarge {
                size_bytes,
                capacity_bytes,
            }) => assert_eq!((size_bytes, capacity_bytes), (64 + 4 + 16, 64)),
            Ok(message_id) => panic!("stored {message_id:?}"),
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
    fn summary_is_parsed_once_counted_and_wiped() {
        let mut shard = new_shard(4096, 10, 1000);
        let message_id = put(
            &mut shard,
            &["a@x.test"],
            "Subject: Hi\r\n\r\nbody text\r\n",
            0,
        );
        assert_eq!(
            shard.meta_bytes(),
            ENTRY_META_BYTES + InboxIndex::meta_bytes_for_new("a@x.test")
        );
        let first: *const Summary = shard.get("a@x.test", message_id).expect("held").summary();
        let message = shard.get("a@x.test", message_id).expect("held");
        assert!(std::ptr::eq(first, message.summary()));
        assert_eq!(
            (
                message.summary().subject.as_str(),
                message.summary().preview.as_str()
            ),
            ("Hi", "body text")
        );
        assert!(shard.parsed_bytes.get() >= size_of::<Summary>() + 2 + 9);
        shard.check_invariants();
        // The message view is parsed once more, then cached beside the summary.
        let summary_only_bytes = shard.parsed_bytes.get();
        let view: *const ParsedMessage = message.parsed();
        assert!(std::ptr::eq(view, message.parsed()));
        assert!(std::ptr::eq(first, message.summary()));
        assert!(shard.parsed_bytes.get() > summary_only_bytes);
        shard.check_invariants();
        shard.delete_message("a@x.test", message_id);
        assert_eq!((shard.parsed_bytes.get(), shard.meta_bytes()), (0, 0));

        // Viewed before listed: one parse fills both.
        let message_id = put(
            &mut shard,
            &["a@x.test"],
            "Subject: Ho\r\n\r\nother text\r\n",
            0,
        );
        let message = shard.get("a@x.test", message_id).expect("held");
        let text = message
            .parsed()
            .text(message.raw)
            .map(|text| text.into_owned());
        assert_eq!(text.as_deref(), Some("other text\r\n"));
        assert_eq!(message.summary().subject, "Ho");
        shard.check_invariants();
        shard.delete_message("a@x.test", message_id);
        assert_eq!(shard.parsed_bytes.get(), 0);
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
        let message = shard.get("älice@x.test", message_id).expect("held");
        assert_eq!(
            message.rcpts().collect::<Vec<_>>(),
            ["ÄLICE@x.test", "älice@x.test"]
        );
        assert_eq!(message.inbox_key(), "älice@x.test");
        let message = shard.get("οδος@x.test", message_id).expect("held");
        assert_eq!(message.rcpts().collect::<Vec<_>>(), ["ΟΔΟΣ@x.test"]);
    }

    // ---- Model-based property test ----

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
            assert_eq!(message.inbox_key(), key);
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
                    let incoming = Incoming {
                        mail_from: SENDERS[*sender_idx],
                        rcpts: &rcpts,
                        parts: &part_slices,
                        received_at_ms: now_ms,
                    };
                    let got = shard.insert(&incoming, now_ms);
                    let expected =
                        model.insert(SENDERS[*sender_idx], &rcpts, &parts.concat(), now_ms);
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
                        shard.delete_message(ADDRESSES[*address_idx], message_id),
                        model.delete(&key, message_id)
                    );
                }
                Op::DeleteInbox { address_idx } => {
                    let key = ADDRESSES[*address_idx].to_lowercase();
                    assert_eq!(
                        shard.delete_inbox(ADDRESSES[*address_idx]),
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
                    let listing = shard.list(ADDRESSES[*address_idx], after, *limit);
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
                    let got = shard.get(ADDRESSES[*address_idx], message_id);
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
}
