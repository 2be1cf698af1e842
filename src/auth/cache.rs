//! The resolver thread's answer caches: mail-auth 0.13 asks its caller for them (its
//! `ResolverCache` trait) and fills them with each answer and the instant its TTL ends.
//!
//! They live on the resolver thread only (`Rc`, `RefCell`: no lock), and each has a fixed
//! number of entries. When a cache is full, an insert first drops what has expired; if
//! that frees less than an eighth of it, arbitrary entries go too (a `HashMap`'s order is
//! random), down to seven eighths. So a full cache costs one scan per eighth of its size
//! in inserts, and a flood of one-off names (random subdomains in MAIL FROM) can only
//! evict, never grow memory.

use std::borrow::Borrow;
use std::cell::RefCell;
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

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for TtlCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut entries = self.entries.borrow_mut();
        let (value, expires) = entries.get(name)?;
        if *expires > Instant::now() {
            return Some(value.clone());
        }
        entries.remove(name);
        None
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

/// The five caches mail-auth's lookups use.
pub(super) struct Caches {
    txt: TtlCache<Box<str>, Txt>,
    mx: TtlCache<Box<str>, RecordSet<MX>>,
    ptr: TtlCache<IpAddr, RecordSet<Box<str>>>,
    ipv4: TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    ipv6: TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
}

/// mail-auth's parameters with our caches attached.
pub(super) type Cached<'x, P> = Parameters<
    'x,
    P,
    TtlCache<Box<str>, Txt>,
    TtlCache<Box<str>, RecordSet<MX>>,
    TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    TtlCache<IpAddr, RecordSet<Box<str>>>,
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

    /// `params` for a mail-auth check, with every cache attached.
    pub(super) fn parameters<P>(&self, params: P) -> Cached<'_, P> {
        let bare: Uncached<'_, P> = Parameters::new(params);
        bare.with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ptr_cache(&self.ptr)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
    }

    /// Whether the TXT cache has a live answer for `name` (a fully qualified, lowercase
    /// name such as `_dmarc.example.com.`), positive or negative.
    pub(super) fn has_txt(&self, name: &str) -> bool {
        self.txt.get(name).is_some()
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
    ) {
        let valid_until = now + negative_ttl.min(NEGATIVE_CACHE_TTL_MAX);
        let answer = Txt::Error(mail_auth::Error::Dns(DnsError::RecordNotFound(rcode)));
        self.txt.insert_at(name.into(), answer, valid_until, now);
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
        assert!(!caches.has_txt(name));
        caches.insert_negative_txt(name, ResponseCode::NXDomain, Duration::from_secs(60), now);
        assert!(caches.has_txt(name));
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
        );
        assert!(!caches.has_txt(stale));
        assert!(caches.has_txt(name));
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
        );
        let expires = caches.txt.entries.borrow()["_dmarc.example."].1;
        assert_eq!(expires, now + NEGATIVE_CACHE_TTL_MAX);
        // A zero TTL is not cached at all.
        caches.insert_negative_txt("_dmarc.zero.", ResponseCode::NXDomain, Duration::ZERO, now);
        assert!(!caches.has_txt("_dmarc.zero."));
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
