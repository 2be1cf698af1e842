//! The resolver thread's answer caches: mail-auth 0.13 asks its caller for them (its
//! `ResolverCache` trait) and fills them with each answer and the instant its TTL ends.
//!
//! They live on the resolver thread only (`Rc`, `RefCell`: no lock), and each has a fixed
//! number of entries. When a cache is full, an insert first drops what has expired; if
//! that frees less than an eighth of it, arbitrary entries go too (a `HashMap`'s order is
//! random), down to seven eighths. So a full cache costs one scan per eighth of its size
//! in inserts, and a flood of one-off names (random subdomains in MAIL FROM) can only
//! evict, never grow memory.
//!
//! Every check reads them through a `Track` (`Tracked` wraps each cache for mail-auth),
//! which notes whether a lookup missed and, on the resolver thread, which entries the
//! check used: those go back to the executor that asked (`Learned`), whose own copy of
//! the caches then lets it check the next such message itself (`inline.rs`).

use std::borrow::Borrow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use mail_auth::common::cache::NoCache;
use mail_auth::hickory_resolver::proto::op::ResponseCode;
use mail_auth::{DnsError, MX, Parameters, RecordSet, ResolverCache, Txt};

use crate::auth::{ADDRESS_CACHE_ENTRIES_MAX, NEGATIVE_CACHE_TTL_MAX, TXT_CACHE_ENTRIES_MAX};

/// Entries with the instant they expire. Invariant: `entries.len() <= entries_max`.
pub(super) struct TtlCache<K, V> {
    entries: RefCell<HashMap<K, (V, Instant)>>,
    entries_max: usize,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    pub(super) fn new(entries_max: usize) -> TtlCache<K, V> {
        assert!(entries_max >= 8, "a cache needs room to evict an eighth");
        TtlCache {
            entries: RefCell::new(HashMap::new()),
            entries_max,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    /// Stores `value` until `valid_until`, as of `now` (the trait's `insert` passes the
    /// clock; tests pass a later instant instead of sleeping).
    fn insert_at(&self, key: K, value: V, valid_until: Instant, now: Instant) {
        if valid_until <= now {
            return;
        }
        let mut entries = self.entries.borrow_mut();
        if entries.len() >= self.entries_max && !entries.contains_key(&key) {
            entries.retain(|_, (_, expires)| *expires > now);
            let mut n_excess = entries
                .len()
                .saturating_sub(self.entries_max - self.entries_max / 8);
            entries.retain(|_, _| {
                if n_excess == 0 {
                    return true;
                }
                n_excess -= 1;
                false
            });
        }
        entries.insert(key, (value, valid_until));
        assert!(entries.len() <= self.entries_max);
    }
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    /// The live entry for `name`, shown to `on_hit` with its key and expiry first.
    fn get_with<Q>(&self, name: &Q, on_hit: impl FnOnce(&K, &V, Instant)) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut entries = self.entries.borrow_mut();
        let (key, (value, expires)) = entries.get_key_value(name)?;
        if *expires > Instant::now() {
            on_hit(key, value, *expires);
            return Some(value.clone());
        }
        entries.remove(name);
        None
    }
}

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for TtlCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_with(name, |_, _, _| {})
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries
            .borrow_mut()
            .remove(name)
            .map(|(value, _)| value)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        self.insert_at(key, value, valid_until, Instant::now());
    }
}

/// Entries one check used, with the instant each expires: what the resolver thread sends
/// back to the executor that asked, for its own caches.
pub(super) enum Learned {
    Txt(Box<str>, Txt, Instant),
    Mx(Box<str>, RecordSet<MX>, Instant),
    Ptr(IpAddr, RecordSet<Box<str>>, Instant),
    Ipv4(Box<str>, RecordSet<Ipv4Addr>, Instant),
    Ipv6(Box<str>, RecordSet<Ipv6Addr>, Instant),
}

/// Entries one check sends back at most: SPF may follow 10 lookups (RFC 7208 4.6.4), DKIM
/// `DKIM_SIGNATURES_MAX` keys, DMARC's tree walk 8 names per domain, iprev a PTR and
/// its addresses; the rest the executor does without (its next such check misses and
/// goes to the thread again).
pub(super) const LEARNED_PER_CHECK_MAX: usize = 64;

macro_rules! learned_from {
    ($($variant:ident: $key:ty => $value:ty),* $(,)?) => {
        $(impl From<(&$key, &$value, Instant)> for Learned {
            fn from((key, value, expires): (&$key, &$value, Instant)) -> Learned {
                Learned::$variant(key.clone(), value.clone(), expires)
            }
        })*
    };
}

learned_from! {
    Txt: Box<str> => Txt,
    Mx: Box<str> => RecordSet<MX>,
    Ptr: IpAddr => RecordSet<Box<str>>,
    Ipv4: Box<str> => RecordSet<Ipv4Addr>,
    Ipv6: Box<str> => RecordSet<Ipv6Addr>,
}

/// What one check did with the caches.
pub(super) struct Track {
    /// A lookup found nothing live (so mail-auth went on to ask hickory), or the check was
    /// given up: on an executor, the results do not count.
    missed: Cell<bool>,
    /// The entries the check read or stored, when the executor that asked wants them.
    learned: Option<RefCell<Vec<Learned>>>,
}

impl Track {
    /// For the executor: misses count, nothing is collected.
    pub(super) fn misses() -> Track {
        Track {
            missed: Cell::new(false),
            learned: None,
        }
    }

    /// For the resolver thread: collects what the check used when `learning`.
    pub(super) fn learning(learning: bool) -> Track {
        Track {
            missed: Cell::new(false),
            learned: learning.then(|| RefCell::new(Vec::new())),
        }
    }

    pub(super) fn missed(&self) -> bool {
        self.missed.get()
    }

    /// Marks the check as not to be trusted on an executor.
    pub(super) fn give_up(&self) {
        self.missed.set(true);
    }

    /// The entries collected, when collecting.
    pub(super) fn into_learned(self) -> Option<Vec<Learned>> {
        self.learned.map(RefCell::into_inner)
    }

    fn note(&self, entry: impl FnOnce() -> Learned) {
        if let Some(learned) = &self.learned {
            let mut learned = learned.borrow_mut();
            if learned.len() < LEARNED_PER_CHECK_MAX {
                learned.push(entry());
            }
        }
    }
}

/// One cache as one check sees it: through its `Track`.
pub(super) struct Tracked<'x, K, V> {
    cache: &'x TtlCache<K, V>,
    track: &'x Track,
}

impl<K, V> ResolverCache<K, V> for Tracked<'_, K, V>
where
    K: Hash + Eq,
    V: Clone,
    for<'k> Learned: From<(&'k K, &'k V, Instant)>,
{
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let value = self.cache.get_with(name, |key, value, expires| {
            self.track.note(|| Learned::from((key, value, expires)));
        });
        if value.is_none() {
            self.track.missed.set(true);
        }
        value
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.cache.remove(name)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        self.track
            .note(|| Learned::from((&key, &value, valid_until)));
        self.cache.insert(key, value, valid_until);
    }
}

/// The five caches mail-auth's lookups use.
pub(super) struct Caches {
    txt: TtlCache<Box<str>, Txt>,
    mx: TtlCache<Box<str>, RecordSet<MX>>,
    ptr: TtlCache<IpAddr, RecordSet<Box<str>>>,
    ipv4: TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    ipv6: TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
}

/// The five caches as one check sees them (`Caches::tracked`).
pub(super) struct TrackedCaches<'x> {
    txt: Tracked<'x, Box<str>, Txt>,
    mx: Tracked<'x, Box<str>, RecordSet<MX>>,
    ptr: Tracked<'x, IpAddr, RecordSet<Box<str>>>,
    ipv4: Tracked<'x, Box<str>, RecordSet<Ipv4Addr>>,
    ipv6: Tracked<'x, Box<str>, RecordSet<Ipv6Addr>>,
}

impl<'x> TrackedCaches<'x> {
    /// `params` for a mail-auth check, with every cache attached.
    pub(super) fn parameters<'p, P>(&'p self, params: P) -> Cached<'p, 'x, P> {
        let bare: Uncached<'p, P> = Parameters::new(params);
        bare.with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ptr_cache(&self.ptr)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
    }
}

/// mail-auth's parameters with our caches attached, seen through a `Track`.
pub(super) type Cached<'p, 'x, P> = Parameters<
    'p,
    P,
    Tracked<'x, Box<str>, Txt>,
    Tracked<'x, Box<str>, RecordSet<MX>>,
    Tracked<'x, Box<str>, RecordSet<Ipv4Addr>>,
    Tracked<'x, Box<str>, RecordSet<Ipv6Addr>>,
    Tracked<'x, IpAddr, RecordSet<Box<str>>>,
>;

/// mail-auth's parameters as they start, before the caches are attached.
type Uncached<'x, P> = Parameters<
    'x,
    P,
    NoCache<Box<str>, Txt>,
    NoCache<Box<str>, RecordSet<MX>>,
    NoCache<Box<str>, RecordSet<Ipv4Addr>>,
    NoCache<Box<str>, RecordSet<Ipv6Addr>>,
    NoCache<IpAddr, RecordSet<Box<str>>>,
>;

impl Caches {
    pub(super) fn new() -> Caches {
        Caches {
            txt: TtlCache::new(TXT_CACHE_ENTRIES_MAX),
            mx: TtlCache::new(ADDRESS_CACHE_ENTRIES_MAX),
            ptr: TtlCache::new(ADDRESS_CACHE_ENTRIES_MAX),
            ipv4: TtlCache::new(ADDRESS_CACHE_ENTRIES_MAX),
            ipv6: TtlCache::new(ADDRESS_CACHE_ENTRIES_MAX),
        }
    }

    /// The caches as one check sees them, through `track`.
    pub(super) fn tracked<'x>(&'x self, track: &'x Track) -> TrackedCaches<'x> {
        TrackedCaches {
            txt: Tracked {
                cache: &self.txt,
                track,
            },
            mx: Tracked {
                cache: &self.mx,
                track,
            },
            ptr: Tracked {
                cache: &self.ptr,
                track,
            },
            ipv4: Tracked {
                cache: &self.ipv4,
                track,
            },
            ipv6: Tracked {
                cache: &self.ipv6,
                track,
            },
        }
    }

    /// Whether the TXT cache has a live answer for `name` (a fully qualified, lowercase
    /// name such as `_dmarc.example.com.`), positive or negative; a hit is noted in
    /// `track` as any other.
    pub(super) fn has_txt(&self, name: &str, track: &Track) -> bool {
        Tracked {
            cache: &self.txt,
            track,
        }
        .get(name)
        .is_some()
    }

    /// Stores what another thread's check used (as of now: what has expired meanwhile
    /// is dropped).
    pub(super) fn learn(&self, entry: Learned) {
        match entry {
            Learned::Txt(key, value, until) => self.txt.insert(key, value, until),
            Learned::Mx(key, value, until) => self.mx.insert(key, value, until),
            Learned::Ptr(key, value, until) => self.ptr.insert(key, value, until),
            Learned::Ipv4(key, value, until) => self.ipv4.insert(key, value, until),
            Learned::Ipv6(key, value, until) => self.ipv6.insert(key, value, until),
        }
    }

    /// Remembers, as of `now`, that `name` has no TXT record: `rcode` is NXDOMAIN when the
    /// name does not exist, NOERROR when it has no TXT ("no data"). The entry lasts
    /// `negative_ttl` (the SOA minimum the answer came with, RFC 2308 5), at most
    /// `NEGATIVE_CACHE_TTL_MAX`. mail-auth reads it back as the very error its own lookup
    /// gives for such an answer (`DnsError::RecordNotFound(rcode)`), so a hit behaves as
    /// the lookup would, without the lookup.
    pub(super) fn insert_negative_txt(
        &self,
        name: &str,
        rcode: ResponseCode,
        negative_ttl: Duration,
        now: Instant,
        track: &Track,
    ) {
        let valid_until = now + negative_ttl.min(NEGATIVE_CACHE_TTL_MAX);
        let answer = Txt::Error(mail_auth::Error::Dns(DnsError::RecordNotFound(rcode)));
        let key: Box<str> = name.into();
        if valid_until > now {
            track.note(|| Learned::from((&key, &answer, valid_until)));
        }
        self.txt.insert_at(key, answer, valid_until, now);
    }

    /// The A-record cache, for DNSBL lookups.
    pub(super) fn ipv4(&self) -> &TtlCache<Box<str>, RecordSet<Ipv4Addr>> {
        &self.ipv4
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn answers_until_the_ttl_ends() {
        let cache: TtlCache<Box<str>, u32> = TtlCache::new(8);
        let now = Instant::now();
        cache.insert("live.".into(), 1, now + Duration::from_secs(60));
        cache.insert("dead.".into(), 2, now - Duration::from_secs(1));
        assert_eq!(cache.get("live."), Some(1));
        assert_eq!(
            cache.get("dead."),
            None,
            "an expired answer is not even stored"
        );
        assert_eq!(cache.remove("live."), Some(1));
        assert_eq!(cache.get("live."), None);
    }

    #[test]
    fn never_holds_more_than_its_bound() {
        let cache: TtlCache<Box<str>, u32> = TtlCache::new(64);
        let until = Instant::now() + Duration::from_secs(60);
        for n in 0..10_000u32 {
            cache.insert(format!("n{n}.example.").into(), n, until);
            assert!(cache.len() <= 64);
        }
        // The newest entry always survives its own insert.
        assert_eq!(cache.get("n9999.example."), Some(9_999));
    }

    /// A negative answer is read back by mail-auth as the error its own lookup gives, so
    /// the DMARC walk goes on past it exactly as after an NXDOMAIN, until the TTL ends.
    #[test]
    fn a_negative_answer_is_cached_until_its_ttl_ends() {
        let caches = Caches::new();
        let now = Instant::now();
        let name = "_dmarc.test.";
        let track = Track::misses();
        assert!(!caches.has_txt(name, &track));
        caches.insert_negative_txt(
            name,
            ResponseCode::NXDomain,
            Duration::from_secs(60),
            now,
            &track,
        );
        assert!(caches.has_txt(name, &track));
        match caches.txt.get(name) {
            Some(Txt::Error(mail_auth::Error::Dns(DnsError::RecordNotFound(code)))) => {
                assert_eq!(code, ResponseCode::NXDomain);
            }
            Some(_) => panic!("not a negative entry"),
            None => panic!("no entry"),
        }
        // One answered two seconds ago with a TTL of one second has expired by now:
        // the next lookup goes to the resolver again.
        let stale = "_dmarc.stale.";
        caches.insert_negative_txt(
            stale,
            ResponseCode::NXDomain,
            Duration::from_secs(1),
            now - Duration::from_secs(2),
            &track,
        );
        assert!(!caches.has_txt(stale, &track));
        assert!(caches.has_txt(name, &track));
    }

    /// However long the SOA says, a negative answer is kept at most
    /// `NEGATIVE_CACHE_TTL_MAX`, so a record published meanwhile is seen soon.
    #[test]
    fn a_negative_answer_is_kept_at_most_the_cap() {
        let caches = Caches::new();
        let now = Instant::now();
        caches.insert_negative_txt(
            "_dmarc.example.",
            ResponseCode::NoError,
            Duration::from_secs(86_400),
            now,
            &Track::misses(),
        );
        let expires = caches.txt.entries.borrow()["_dmarc.example."].1;
        assert_eq!(expires, now + NEGATIVE_CACHE_TTL_MAX);
        // A zero TTL is not cached at all.
        let track = Track::learning(true);
        caches.insert_negative_txt(
            "_dmarc.zero.",
            ResponseCode::NXDomain,
            Duration::ZERO,
            now,
            &track,
        );
        assert!(!caches.has_txt("_dmarc.zero.", &track));
        assert!(track.missed());
        assert_eq!(track.into_learned().map(|l| l.len()), Some(0));
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first() {
        let cache: TtlCache<Box<str>, u32> = TtlCache::new(8);
        let now = Instant::now();
        let soon = now + Duration::from_secs(1);
        let later = now + Duration::from_secs(60);
        for n in 0..7u32 {
            cache.insert_at(format!("short{n}.").into(), n, soon, now);
        }
        cache.insert_at("long.".into(), 100, later, now);
        // Two seconds on, the seven short-lived entries are gone, and nothing else is.
        cache.insert_at("new.".into(), 101, later, now + Duration::from_secs(2));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("long."), Some(100));
        assert_eq!(cache.get("new."), Some(101));
    }
}
