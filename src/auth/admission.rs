//! Which requests the resolver thread works on now: at most `IN_FLIGHT_MAX` at once, and
//! at most `IN_FLIGHT_PER_CLIENT_MAX` of them for one client address.
//!
//! A request whose client is at its share is set aside, in its client's own FIFO, and
//! started as soon as one of that client's requests finishes; the thread meanwhile goes
//! on taking other clients' requests off the queue. So one client whose checks all wait
//! for a name server that never answers (its own broken DNS, or mail from domains it
//! invented) holds at most its share of the places, never all of them, and its backlog
//! waits here rather than in front of everyone else in the shared queue. What is set
//! aside is bounded too (`CLIENT_WAITING_MAX` per client, `WAITING_MAX` in all); beyond
//! that a request is refused, and the caller answers it `temperror` at once.
//!
//! No IO and no clock: the resolver thread drives it (`serve`), the tests drive it by hand.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use crate::auth::{CLIENT_WAITING_MAX, IN_FLIGHT_MAX, IN_FLIGHT_PER_CLIENT_MAX, WAITING_MAX};

/// What happened to a request offered to `Admission::admit`.
#[derive(Debug)]
pub(super) enum Admitted<J> {
    /// Counted in flight: start it now.
    Start(J),
    /// Its client is at its share: set aside until one of its requests finishes.
    SetAside,
    /// Its client (or everyone) has as many set aside as allowed: answer it now.
    Refused(J),
}

/// One client's requests in flight and set aside.
struct ClientLoad<J> {
    n_in_flight: usize,
    waiting: VecDeque<J>,
}

/// The books of the requests in flight and set aside, per client address.
/// Invariants: `n_in_flight <= IN_FLIGHT_MAX`; each client's `n_in_flight <=
/// IN_FLIGHT_PER_CLIENT_MAX`; `n_waiting` is the sum of the clients' `waiting` and at most
/// `WAITING_MAX`; a client with nothing in flight and nothing waiting has no entry.
pub(super) struct Admission<J> {
    n_in_flight: usize,
    n_waiting: usize,
    clients: HashMap<IpAddr, ClientLoad<J>>,
    /// Clients that had a request finish while some of theirs waited, in that order: their
    /// next waiting request may start (one entry per freed place).
    ready: VecDeque<IpAddr>,
}

impl<J> Admission<J> {
    pub(super) fn new() -> Admission<J> {
        Admission {
            n_in_flight: 0,
            n_waiting: 0,
            clients: HashMap::new(),
            ready: VecDeque::new(),
        }
    }

    /// Whether every place in flight is taken (then nothing may start, not even what is
    /// set aside).
    pub(super) fn is_full(&self) -> bool {
        self.n_in_flight >= IN_FLIGHT_MAX
    }

    /// Whether nothing is in flight or set aside.
    pub(super) fn is_idle(&self) -> bool {
        self.n_in_flight == 0 && self.n_waiting == 0
    }

    /// Requests in flight.
    #[cfg(test)]
    pub(super) fn n_in_flight(&self) -> usize {
        self.n_in_flight
    }

    /// A request of `client`, fresh off the queue. The caller checks `is_full` first.
    pub(super) fn admit(&mut self, client: IpAddr, job: J) -> Admitted<J> {
        debug_assert!(!self.is_full());
        let load = self.clients.entry(client).or_insert_with(|| ClientLoad {
            n_in_flight: 0,
            waiting: VecDeque::new(),
        });
        if load.n_in_flight < IN_FLIGHT_PER_CLIENT_MAX && load.waiting.is_empty() {
            load.n_in_flight += 1;
            self.n_in_flight += 1;
            return Admitted::Start(job);
        }
        // (A client that got here has requests in flight, so its entry stays.)
        if load.waiting.len() >= CLIENT_WAITING_MAX || self.n_waiting >= WAITING_MAX {
            return Admitted::Refused(job);
        }
        load.waiting.push_back(job);
        self.n_waiting += 1;
        // A client with a free place and a backlog (its share was just raised by a
        // finish that has not been taken up yet) is already in `ready`.
        Admitted::SetAside
    }

    /// The next set-aside request that may start now, counted in flight; `None` when the
    /// places are full or no client with a backlog has room.
    pub(super) fn next_ready(&mut self) -> Option<J> {
        while !self.is_full() {
            let client = self.ready.pop_front()?;
            let Some(load) = self.clients.get_mut(&client) else {
                continue;
            };
            if load.n_in_flight >= IN_FLIGHT_PER_CLIENT_MAX {
                continue;
            }
            let Some(job) = load.waiting.pop_front() else {
                continue;
            };
            load.n_in_flight += 1;
            self.n_in_flight += 1;
            self.n_waiting -= 1;
            return Some(job);
        }
        None
    }

    /// A request of `client` left flight (answered, or its task ended otherwise).
    pub(super) fn finish(&mut self, client: IpAddr) {
        let Some(load) = self.clients.get_mut(&client) else {
            debug_assert!(false, "finish without a request in flight");
            return;
        };
        debug_assert!(load.n_in_flight > 0);
        load.n_in_flight = load.n_in_flight.saturating_sub(1);
        self.n_in_flight = self.n_in_flight.saturating_sub(1);
        if !load.waiting.is_empty() {
            self.ready.push_back(client);
        } else if load.n_in_flight == 0 {
            self.clients.remove(&client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    fn started(admitted: Admitted<u32>) -> u32 {
        match admitted {
            Admitted::Start(job) => job,
            other => panic!("expected Start, got {other:?}"),
        }
    }

    #[test]
    fn one_client_gets_its_share_and_the_rest_waits_in_order() {
        let mut admission = Admission::new();
        for n in 0..IN_FLIGHT_PER_CLIENT_MAX as u32 {
            assert_eq!(started(admission.admit(ip(1), n)), n);
        }
        // Its next two wait; another client still starts at once.
        assert!(matches!(admission.admit(ip(1), 100), Admitted::SetAside));
        assert!(matches!(admission.admit(ip(1), 101), Admitted::SetAside));
        assert_eq!(started(admission.admit(ip(2), 200)), 200);
        assert_eq!(admission.next_ready(), None, "nothing of client 1 finished");
        // Each finish of client 1 lets exactly one of its waiting requests start, oldest first.
        admission.finish(ip(1));
        assert_eq!(admission.next_ready(), Some(100));
        assert_eq!(admission.next_ready(), None);
        admission.finish(ip(1));
        assert_eq!(admission.next_ready(), Some(101));
        // Client 2's finish frees its own place, not client 1's.
        admission.finish(ip(2));
        assert_eq!(admission.next_ready(), None);
        assert_eq!(admission.n_in_flight(), IN_FLIGHT_PER_CLIENT_MAX);
        // A new request of client 1 while it is at its share waits; once all of its
        // requests finish, everything is idle again.
        for _ in 0..IN_FLIGHT_PER_CLIENT_MAX {
            admission.finish(ip(1));
        }
        assert!(admission.is_idle());
        assert!(admission.clients.is_empty());
    }

    #[test]
    fn a_new_request_does_not_overtake_its_clients_backlog() {
        let mut admission = Admission::new();
        for n in 0..IN_FLIGHT_PER_CLIENT_MAX as u32 {
            started(admission.admit(ip(1), n));
        }
        assert!(matches!(admission.admit(ip(1), 100), Admitted::SetAside));
        admission.finish(ip(1));
        // A place is free, but 100 came first: 101 waits behind it.
        assert!(matches!(admission.admit(ip(1), 101), Admitted::SetAside));
        assert_eq!(admission.next_ready(), Some(100));
        assert_eq!(admission.next_ready(), None);
    }

    #[test]
    fn the_backlog_per_client_is_bounded() {
        let mut admission = Admission::new();
        for n in 0..IN_FLIGHT_PER_CLIENT_MAX as u32 {
            started(admission.admit(ip(1), n));
        }
        for n in 0..CLIENT_WAITING_MAX as u32 {
            assert!(matches!(
                admission.admit(ip(1), 1000 + n),
                Admitted::SetAside
            ));
        }
        assert!(matches!(
            admission.admit(ip(1), 9999),
            Admitted::Refused(9999)
        ));
        // Others are not affected by client 1's backlog.
        assert_eq!(started(admission.admit(ip(2), 1)), 1);
    }

    #[test]
    fn nothing_starts_while_every_place_is_taken() {
        let mut admission = Admission::new();
        for n in 0..IN_FLIGHT_PER_CLIENT_MAX as u32 {
            started(admission.admit(ip(0), n));
        }
        assert!(matches!(admission.admit(ip(0), 100), Admitted::SetAside));
        let n_clients = IN_FLIGHT_MAX / IN_FLIGHT_PER_CLIENT_MAX;
        for client in 1..n_clients {
            for n in 0..IN_FLIGHT_PER_CLIENT_MAX as u32 {
                started(admission.admit(ip(client as u8), n));
            }
        }
        assert!(admission.is_full());
        // Client 0 gets room, but a newcomer takes the one free place first.
        admission.finish(ip(0));
        assert_eq!(started(admission.admit(ip(200), 5)), 5);
        assert!(admission.is_full());
        assert_eq!(admission.next_ready(), None, "every place is taken");
        admission.finish(ip(200));
        assert_eq!(admission.next_ready(), Some(100));
        assert!(admission.is_full());
    }
}
