//! Per-client-IP limits for SMTP, one book per core: concurrent sessions and messages per
//! minute (Postfix's anvil: `smtpd_client_connection_count_limit`,
//! `smtpd_client_message_rate_limit`).
//!
//! Each core counts its own sessions and messages (no cross-core traffic, no lock). The
//! kernel spreads one client's connections over the cores, so process-wide a client gets
//! about `--cores` times the limits; that is enough for their purpose, which is that one
//! address (or a few) cannot take a core's whole session capacity or flood its inboxes.
//! Addresses in `--client-limit-exempt` (a relay in front, a load generator) are not
//! counted at all.
//!
//! The message rate is a sliding window of one minute, approximated from two fixed
//! windows (the previous minute's count weighted by how much of it still overlaps, plus
//! the current minute's), which needs two counters per client instead of a timestamp per
//! message.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::IpRange;

/// Clients tracked per core before idle ones are forgotten (about 48 bytes each): bounds
/// the map under a flood from many addresses.
const CLIENTS_TRACKED_MAX: usize = 64 * 1024;
/// The message-rate window.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// This core's book of clients.
pub struct ClientLimits {
    /// Concurrent sessions per client; 0: no limit.
    sessions_per_ip_max: usize,
    /// Messages per client per minute; 0: no limit.
    messages_per_minute_max: usize,
    exempt: Vec<IpRange>,
    clients: RefCell<HashMap<IpAddr, Client>>,
}

/// What one client is doing on this core.
#[derive(Debug, Clone, Copy)]
struct Client {
    n_sessions: u32,
    /// Start of the current rate window.
    window_start: Instant,
    n_messages_window: u32,
    n_messages_previous_window: u32,
}

/// Why a client was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooManySessions,
}

/// A session counted against its client; the count drops when this does.
pub struct SessionSlot<'l> {
    limits: &'l ClientLimits,
    /// `None` for an exempt or untracked client.
    ip: Option<IpAddr>,
}

impl ClientLimits {
    /// A book with these limits (0 turns one off).
    pub fn new(
        sessions_per_ip_max: usize,
        messages_per_minute_max: usize,
        exempt: Vec<IpRange>,
    ) -> ClientLimits {
        ClientLimits {
            sessions_per_ip_max,
            messages_per_minute_max,
            exempt,
            clients: RefCell::new(HashMap::new()),
        }
    }

    fn is_exempt(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.exempt.iter().any(|range| range.contains(ip))
    }

    /// Counts a new session of `ip` (its peer address), unless the client already holds
    /// `sessions_per_ip_max` on this core.
    ///
    /// # Errors
    /// `TooManySessions` when the client is at its limit; nothing is counted then.
    pub fn admit(&self, ip: Option<IpAddr>, now: Instant) -> Result<SessionSlot<'_>, Refusal> {
        let untracked = SessionSlot {
            limits: self,
            ip: None,
        };
        let Some(ip) = ip.map(|ip| ip.to_canonical()) else {
            return Ok(untracked);
        };
        if (self.sessions_per_ip_max == 0 && self.messages_per_minute_max == 0)
            || self.is_exempt(ip)
        {
            return Ok(untracked);
        }
        let mut clients = self.clients.borrow_mut();
        if !clients.contains_key(&ip) && !make_room(&mut clients, now) {
            // Too many active clients to track: let this one in uncounted rather than grow.
            return Ok(untracked);
        }
        let client = clients.entry(ip).or_insert(Client {
            n_sessions: 0,
            window_start: now,
            n_messages_window: 0,
            n_messages_previous_window: 0,
        });
        if self.sessions_per_ip_max > 0 && client.n_sessions as usize >= self.sessions_per_ip_max {
            return Err(Refusal::TooManySessions);
        }
        client.n_sessions += 1;
        Ok(SessionSlot {
            limits: self,
            ip: Some(ip),
        })
    }

    /// Whether `ip` has sent its messages per minute already (MAIL is then refused).
    pub fn over_message_rate(&self, ip: Option<IpAddr>, now: Instant) -> bool {
        let (Some(ip), true) = (ip, self.messages_per_minute_max > 0) else {
            return false;
        };
        let mut clients = self.clients.borrow_mut();
        let Some(client) = clients.get_mut(&ip.to_canonical()) else {
            return false;
        };
        roll_window(client, now);
        rate(client, now) >= self.messages_per_minute_max as f64
    }

    /// Counts one message accepted from `ip`.
    pub fn count_message(&self, ip: Option<IpAddr>, now: Instant) {
        let (Some(ip), true) = (ip, self.messages_per_minute_max > 0) else {
            return;
        };
        if let Some(client) = self.clients.borrow_mut().get_mut(&ip.to_canonical()) {
            roll_window(client, now);
            client.n_messages_window = client.n_messages_window.saturating_add(1);
        }
    }

    /// Clients tracked now (tests and metrics).
    pub fn n_tracked(&self) -> usize {
        self.clients.borrow().len()
    }
}

impl SessionSlot<'_> {
    /// The client this slot counts against, if it is counted at all.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }
}

impl Drop for SessionSlot<'_> {
    fn drop(&mut self) {
        let Some(ip) = self.ip else {
            return;
        };
        let mut clients = self.limits.clients.borrow_mut();
        if let Some(client) = clients.get_mut(&ip) {
            client.n_sessions = client.n_sessions.saturating_sub(1);
            // A client with nothing left to remember leaves the book at once, so only
            // clients with sessions or recent messages take room in it.
            if client.n_sessions == 0
                && client.n_messages_window == 0
                && client.n_messages_previous_window == 0
            {
                clients.remove(&ip);
            }
        }
    }
}

/// Moves the window forward if a minute (or two) has passed.
fn roll_window(client: &mut Client, now: Instant) {
    let elapsed = now.saturating_duration_since(client.window_start);
    if elapsed >= RATE_WINDOW * 2 {
        client.n_messages_previous_window = 0;
        client.n_messages_window = 0;
        client.window_start = now;
    } else if elapsed >= RATE_WINDOW {
        client.n_messages_previous_window = client.n_messages_window;
        client.n_messages_window = 0;
        client.window_start += RATE_WINDOW;
    }
}

/// Messages in the last minute, estimated from the two windows.
fn rate(client: &Client, now: Instant) -> f64 {
    let into_window = now.saturating_duration_since(client.window_start);
    let previous_weight = 1.0 - into_window.as_secs_f64() / RATE_WINDOW.as_secs_f64();
    f64::from(client.n_messages_previous_window) * previous_weight.max(0.0)
        + f64::from(client.n_messages_window)
}

/// Makes room for one more client if the book is full, by forgetting clients with no
/// session and no message in the last two windows. False if it is still full.
fn make_room(clients: &mut HashMap<IpAddr, Client>, now: Instant) -> bool {
    if clients.len() < CLIENTS_TRACKED_MAX {
        return true;
    }
    clients.retain(|_, client| {
        client.n_sessions > 0
            || (client.n_messages_window + client.n_messages_previous_window > 0
                && now.saturating_duration_since(client.window_start) < RATE_WINDOW * 2)
    });
    clients.len() < CLIENTS_TRACKED_MAX
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
    }

    #[test]
    fn sessions_per_client_are_capped_and_given_back() {
        let limits = ClientLimits::new(2, 0, Vec::new());
        let now = Instant::now();
        let first = limits.admit(ip(1), now).expect("first");
        let second = limits.admit(ip(1), now).expect("second");
        assert_eq!(
            limits.admit(ip(1), now).err(),
            Some(Refusal::TooManySessions)
        );
        // Another address is not affected.
        let other = limits.admit(ip(2), now).expect("other client");
        drop(first);
        let third = limits.admit(ip(1), now).expect("a slot came back");
        assert_eq!(limits.n_tracked(), 2);
        drop((second, third, other));
        assert_eq!(limits.n_tracked(), 0, "idle clients leave the book");
    }

    #[test]
    fn exempt_and_unknown_clients_are_not_counted() {
        let exempt: IpRange = "127.0.0.0/30".parse().expect("range");
        let limits = ClientLimits::new(1, 1, vec![exempt]);
        let now = Instant::now();
        let slots: Vec<_> = (0..10)
            .map(|_| limits.admit(ip(2), now).expect("exempt"))
            .collect();
        assert!(slots.iter().all(|slot| slot.ip().is_none()));
        assert!(limits.admit(None, now).is_ok());
        let _counted = limits.admit(ip(9), now).expect("counted");
        assert!(limits.admit(ip(9), now).is_err());
        assert_eq!(limits.n_tracked(), 1);
    }

    #[test]
    fn message_rate_slides_over_a_minute() {
        let limits = ClientLimits::new(0, 10, Vec::new());
        let start = Instant::now();
        let _slot = limits.admit(ip(1), start).expect("admitted");
        for _ in 0..10 {
            assert!(!limits.over_message_rate(ip(1), start));
            limits.count_message(ip(1), start);
        }
        assert!(limits.over_message_rate(ip(1), start));
        assert!(!limits.over_message_rate(ip(2), start), "per client");
        // Half a minute into the next window, half the old minute still counts: 5 < 10.
        let later = start + RATE_WINDOW + RATE_WINDOW / 2;
        assert!(!limits.over_message_rate(ip(1), later));
        for _ in 0..5 {
            limits.count_message(ip(1), later);
        }
        assert!(limits.over_message_rate(ip(1), later));
        // Two quiet minutes later everything is forgotten.
        assert!(!limits.over_message_rate(ip(1), later + RATE_WINDOW * 2));
    }

    #[test]
    fn the_book_stays_bounded_under_many_addresses() {
        let limits = ClientLimits::new(5, 0, Vec::new());
        let now = Instant::now();
        let slots: Vec<_> = (0..(CLIENTS_TRACKED_MAX as u32 + 100))
            .map(|n| {
                let ip = Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)));
                limits.admit(ip, now).expect("admitted")
            })
            .collect();
        assert_eq!(limits.n_tracked(), CLIENTS_TRACKED_MAX);
        assert_eq!(slots.iter().filter(|slot| slot.ip().is_none()).count(), 100);
        drop(slots);
        assert_eq!(limits.n_tracked(), 0);
    }
}
