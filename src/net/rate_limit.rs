//! Per-client-IP request rate limit for HTTP, one token bucket per address per core.
//!
//! Each core keeps its own buckets (no cross-core traffic, no lock); since the kernel spreads
//! a client's connections over cores, the effective limit for one address is up to `cores`
//! times the configured rate, which is fine for its purpose: one client must not be able to
//! take a whole core's HTTP capacity.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Addresses tracked per core before idle ones are forgotten: bounds the map under a flood
/// from many addresses (about 40 bytes each).
const CLIENTS_TRACKED_MAX: usize = 64 * 1024;

/// Token buckets by client address. A bucket holds up to `burst` tokens and refills at
/// `per_sec`; a request takes one.
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    clients: RefCell<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

impl RateLimiter {
    /// `per_sec` requests per second with bursts of twice that; 0 allows everything.
    pub fn new(per_sec: usize) -> RateLimiter {
        RateLimiter {
            per_sec: per_sec as f64,
            burst: (per_sec * 2) as f64,
            clients: RefCell::new(HashMap::new()),
        }
    }

    /// Takes a token for `client`; when there is none, says how long until there is.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.per_sec == 0.0 {
            return Ok(());
        }
        let mut clients = self.clients.borrow_mut();
        if clients.len() >= CLIENTS_TRACKED_MAX && !clients.contains_key(&client) {
            // A bucket idle long enough to be full again is the same as no bucket.
            let refill_time = Duration::from_secs_f64(self.burst / self.per_sec);
            clients.retain(|_, bucket| {
                now.saturating_duration_since(bucket.refilled_at) < refill_time
            });
            if clients.len() >= CLIENTS_TRACKED_MAX {
                // Too many active addresses to track: forget them all rather than grow.
                clients.clear();
            }
        }
        let bucket = clients.entry(client).or_insert(Bucket {
            tokens: self.burst,
            refilled_at: now,
        });
        let elapsed_secs = now
            .saturating_duration_since(bucket.refilled_at)
            .as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed_secs * self.per_sec).min(self.burst);
        bucket.refilled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_sec,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn allows_a_burst_then_the_rate() {
        let limiter = RateLimiter::new(10);
        let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let other = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        let start = Instant::now();
        for _ in 0..20 {
            assert_eq!(limiter.check(client, start), Ok(()));
        }
        let wait = limiter
            .check(client, start)
            .expect_err("the burst is spent");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another address has its own bucket.
        assert_eq!(limiter.check(other, start), Ok(()));
        // 100 ms later one token has come back, and only one.
        let later = start + Duration::from_millis(100);
        assert_eq!(limiter.check(client, later), Ok(()));
        assert!(limiter.check(client, later).is_err());
    }

    #[test]
    fn zero_means_no_limit() {
        let limiter = RateLimiter::new(0);
        let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let now = Instant::now();
        assert!((0..10_000).all(|_| limiter.check(client, now).is_ok()));
        assert!(limiter.clients.borrow().is_empty());
    }

    #[test]
    fn tracking_stays_bounded_under_many_addresses() {
        let limiter = RateLimiter::new(1);
        let now = Instant::now();
        for n in 0..(CLIENTS_TRACKED_MAX as u32 + 10) {
            let _ = limiter.check(IpAddr::V4(Ipv4Addr::from(n)), now);
        }
        assert!(limiter.clients.borrow().len() <= CLIENTS_TRACKED_MAX);
    }
}
