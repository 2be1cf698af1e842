//! One shard's cache of what readers parsed: summaries for listings, message views for
//! the message page, search views (text body and attachment flag) for text searches. It
//! sits beside the store, not in it, and has its own byte budget, so reading mail can never
//! push mail out of the ring.
//!
//! Entries are keyed by message id (ids are never reused) and evicted oldest-inserted
//! first when the budget is exceeded. Inserting never evicts: a listing or view inserts
//! what it needs, renders from borrowed entries, and then the owner calls `sync`, which
//! wipes what the store released and trims to the budget. So the cache exceeds its budget
//! by at most one request's worth (a listing of `api::LIMIT_MAX` summaries, one view, or
//! one search step: the summaries of `search::STEP_BYTES_MAX` of mail and one parse job's
//! search views) between a request and its `sync`.
//!
//! Everything cached is message content, so everything dropped is wiped first
//! (`Summary::wipe`, `ParsedMessage::wipe`, `SearchView::wipe`), and the store is told which messages have
//! something cached (`MessageRef::mark_cached`) so that it reports them when they go,
//! whatever removes them (`Shard::take_released_cached`).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use crate::mail::search::{BodyRef, SearchView};
use crate::mail::{ParsedMessage, Summary};
use crate::store::{MessageId, MessageRef, Shard};

/// The cache's budget is the ring's size divided by this (but at least
/// `VIEW_CACHE_BYTES_MIN`): a quarter of the ring, so a shard's memory is at most its
/// ring, half of it for metadata and a quarter for parsed views.
pub const RING_BYTES_PER_VIEW_CACHE_BYTE: usize = 4;
/// Smallest budget, so that small test rings still cache a few big views.
pub const VIEW_CACHE_BYTES_MIN: usize = 4 << 20;
/// Estimated bytes of one cache entry besides what its views hold on the heap: the map
/// slot (key and `Entry`, with the spare capacity a growing hash map keeps, about 1/4),
/// and the eviction queue's slot (counted twice for its spare capacity).
const ENTRY_OVERHEAD_BYTES: usize =
    size_of::<(MessageId, Entry)>() * 5 / 4 + 2 * size_of::<MessageId>();

/// A map keyed by message id, hashed with `IdHasher`.
pub type IdMap<V> = HashMap<MessageId, V, BuildHasherDefault<IdHasher>>;

/// Hashes message ids for a shard's own maps. Ids are made by the server (process start,
/// shard, sequence number), never chosen by a client, so a multiplicative hash cannot be
/// driven into collisions, and it costs a few cycles where SipHash costs dozens: a search
/// looks up every message of an inbox.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: the high bits (hashbrown's tag) mix every input bit, and the
        // low bits (its bucket index) differ for consecutive sequence numbers.
        self.0 = (self.0.rotate_left(29) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// The summaries and message views of one shard's messages.
///
/// Invariant: `bytes` is the sum of `Entry::bytes`, and `order` holds each key of
/// `entries` exactly once (ids leave `order` lazily: a forgotten id stays there until it
/// reaches the front, where `trim` skips it).
pub struct ViewCache {
    entries: IdMap<Entry>,
    /// Insertion order, for eviction.
    order: VecDeque<MessageId>,
    bytes: usize,
    bytes_max: usize,
}

/// What is cached for one message.
#[derive(Default)]
struct Entry {
    summary: Option<Summary>,
    view: Option<Box<ParsedMessage>>,
    search: Option<SearchView>,
    /// Estimated heap bytes of this entry, overhead included.
    bytes: usize,
}

impl ViewCache {
    /// An empty cache with a budget of `bytes_max` heap bytes.
    pub fn new(bytes_max: usize) -> ViewCache {
        ViewCache {
            entries: IdMap::default(),
            order: VecDeque::new(),
            bytes: 0,
            bytes_max,
        }
    }

    /// The budget for a shard whose ring holds `ring_bytes`.
    pub fn bytes_max_for_ring(ring_bytes: usize) -> usize {
        (ring_bytes / RING_BYTES_PER_VIEW_CACHE_BYTE).max(VIEW_CACHE_BYTES_MIN)
    }

    /// Estimated heap bytes held now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The budget.
    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }

    /// Messages with something cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Parses and caches the summary of `message` unless it is cached already. Cheap and
    /// bounded (`Summary::parse` reads at most `SUMMARY_PARSE_BYTES_MAX`), so it runs on
    /// the executor.
    pub fn ensure_summary(&mut self, message: &MessageRef<'_>) {
        let entry = self.entry(message);
        if entry.summary.is_some() {
            return;
        }
        let summary = Summary::parse(message.raw);
        let added = summary.heap_bytes();
        entry.summary = Some(summary);
        entry.bytes += added;
        self.bytes += added;
    }

    /// The cached summary of `id`, if any.
    pub fn summary(&self, id: MessageId) -> Option<&Summary> {
        self.entries.get(&id)?.summary.as_ref()
    }

    /// The cached message view of `id`, if any. Its offsets refer to the message's raw bytes.
    pub fn view(&self, id: MessageId) -> Option<&ParsedMessage> {
        self.entries.get(&id)?.view.as_deref()
    }

    /// Caches the message view of `message`, parsed elsewhere (off the executor) from a
    /// copy of `message.raw`. A view already cached stays, and `view` is wiped.
    pub fn insert_view(&mut self, message: &MessageRef<'_>, view: ParsedMessage) {
        let entry = self.entry(message);
        if entry.view.is_some() {
            view.wipe();
            return;
        }
        let added = size_of::<ParsedMessage>() + view.heap_bytes();
        entry.view = Some(Box::new(view));
        entry.bytes += added;
        self.bytes += added;
    }

    /// Caches the search view of `message`, parsed elsewhere (off the executor) from a
    /// copy of `message.raw`. A search view already cached stays, and `view` is wiped.
    pub fn insert_search_view(&mut self, message: &MessageRef<'_>, view: SearchView) {
        let entry = self.entry(message);
        if entry.search.is_some() {
            view.wipe();
            return;
        }
        let added = size_of::<SearchView>() + view.heap_bytes();
        entry.search = Some(view);
        entry.bytes += added;
        self.bytes += added;
    }

    /// What a search reads of `id`, in one lookup: its summary, and where its body is: its
    /// message view if cached (it has the same text), else its search view, if cached.
    pub fn search_parts(&self, id: MessageId) -> (Option<&Summary>, Option<BodyRef<'_>>) {
        let Some(entry) = self.entries.get(&id) else {
            return (None, None);
        };
        let body = match (&entry.view, &entry.search) {
            (Some(view), _) => Some(BodyRef::Full(view)),
            (None, Some(search)) => Some(BodyRef::Search(search)),
            (None, None) => None,
        };
        (entry.summary.as_ref(), body)
    }

    /// Wipes what the store released since the last call (messages gone for any reason),
    /// then evicts the oldest entries until the cache fits its budget.
    pub fn sync(&mut self, store: &mut Shard) {
        for id in store.take_released_cached() {
            self.forget(id);
        }
        while self.bytes > self.bytes_max {
            let Some(id) = self.order.pop_front() else {
                break;
            };
            if self.forget(id) {
                store.unmark_cached(id);
            }
        }
    }

    /// Drops and wipes what is cached for `id`; false if nothing was.
    fn forget(&mut self, id: MessageId) -> bool {
        let Some(entry) = self.entries.remove(&id) else {
            return false;
        };
        self.bytes -= entry.bytes;
        if let Some(summary) = entry.summary {
            summary.wipe();
        }
        if let Some(view) = entry.view {
            view.wipe();
        }
        if let Some(search) = entry.search {
            search.wipe();
        }
        // `order` is cleaned lazily; keep it from growing past twice the live entries.
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order.retain(|id| entries.contains_key(id));
        }
        true
    }

    /// The entry of `message`, created (and the store told) if it is new.
    fn entry(&mut self, message: &MessageRef<'_>) -> &mut Entry {
        let id = message.id;
        if !self.entries.contains_key(&id) {
            message.mark_cached();
            self.order.push_back(id);
            self.bytes += ENTRY_OVERHEAD_BYTES;
            self.entries.insert(
                id,
                Entry {
                    bytes: ENTRY_OVERHEAD_BYTES,
                    ..Entry::default()
                },
            );
        }
        self.entries.get_mut(&id).expect("inserted above")
    }

    /// Checks the accounting invariant by scanning (tests only).
    #[cfg(test)]
    fn check(&self) {
        let sum: usize = self.entries.values().map(|entry| entry.bytes).sum();
        assert_eq!(sum, self.bytes);
        for id in self.entries.keys() {
            assert_eq!(self.order.iter().filter(|seen| *seen == id).count(), 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::InboxKey;
    use crate::store::{Incoming, Rcpt, ShardConfig};

    fn shard() -> Shard {
        Shard::new(ShardConfig {
            shard_idx: 0,
            boot_micros: 1,
            ring_bytes: 1 << 20,
            ttl_ms: 1000,
            inbox_messages_max: 100,
        })
    }

    fn put(shard: &mut Shard, body: &str, now_ms: u64) -> MessageId {
        let rcpts = [Rcpt::new("a@x.test").unwrap()];
        let parts: [&[u8]; 1] = [body.as_bytes()];
        shard
            .insert(
                &Incoming {
                    mail_from: "s@x.test",
                    rcpts: &rcpts,
                    parts: &parts,
                    received_at_ms: now_ms,
                },
                now_ms,
            )
            .unwrap()
    }

    fn key() -> InboxKey<'static> {
        InboxKey::new("a@x.test").unwrap()
    }

    #[test]
    fn caches_once_and_forgets_what_the_store_releases() {
        let mut store = shard();
        let mut cache = ViewCache::new(1 << 20);
        let first = put(&mut store, "Subject: Hi\r\n\r\nbody text\r\n", 0);
        let second = put(&mut store, "Subject: Ho\r\n\r\nmore\r\n", 0);
        for id in [first, second] {
            let message = store.get(&key(), id).unwrap();
            cache.ensure_summary(&message);
            cache.ensure_summary(&message);
        }
        assert_eq!(cache.summary(first).unwrap().subject, "Hi");
        assert_eq!(cache.summary(first).unwrap().preview, "body text");
        let message = store.get(&key(), first).unwrap();
        let (_, view) = ParsedMessage::parse(message.raw);
        cache.insert_view(&message, view);
        let bytes_with_view = cache.bytes();
        let (_, again) = ParsedMessage::parse(message.raw);
        cache.insert_view(&message, again);
        assert_eq!(cache.bytes(), bytes_with_view, "a second view is not added");
        assert!(cache.view(first).is_some() && cache.view(second).is_none());
        cache.check();

        assert!(store.delete_message(&key(), first));
        cache.sync(&mut store);
        assert!(cache.summary(first).is_none() && cache.view(first).is_none());
        assert_eq!(cache.len(), 1);
        store.expire(10_000);
        cache.sync(&mut store);
        assert!(cache.is_empty());
        assert_eq!(cache.bytes(), 0);
        cache.check();
    }

    #[test]
    fn trims_oldest_first_without_touching_mail() {
        let mut store = shard();
        let mut cache = ViewCache::new(3 * ENTRY_OVERHEAD_BYTES + 64);
        let ids: Vec<MessageId> = (0..6)
            .map(|n| put(&mut store, &format!("Subject: {n}\r\n\r\nx\r\n"), 0))
            .collect();
        for &id in &ids {
            cache.ensure_summary(&store.get(&key(), id).unwrap());
        }
        assert_eq!(cache.len(), 6, "inserting never evicts");
        cache.sync(&mut store);
        assert!(cache.bytes() <= cache.bytes_max());
        assert!(cache.summary(ids[0]).is_none() && cache.summary(ids[5]).is_some());
        assert_eq!(store.stats().messages_held, 6, "mail stays");
        // Evicted entries were unmarked, so deleting them reports nothing to forget.
        assert!(store.delete_message(&key(), ids[0]));
        assert!(store.take_released_cached().is_empty());
        cache.check();
    }
}
