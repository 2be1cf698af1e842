//! The open connections of one executor, so that shutdown can interrupt their reads.
//!
//! Shutdown interrupts a blocked read with `shutdown(fd, SHUT_RD)`: the read completes with
//! 0 bytes, the session sees that the server is stopping, and writes its 421 on the still
//! open write side. This costs nothing per read, unlike racing every read against a signal.
//!
//! The same interruption serves load shedding: when a core is at its SMTP session cap, the
//! longest-open idle session that never started a transaction is cut (`evict_idle_smtp`)
//! to make room for a new sender, as Postfix does under stress; it answers 421 first.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::time::Instant;

/// This executor's connections.
#[derive(Default)]
pub struct ConnRegistry {
    next_key: Cell<u64>,
    conns: RefCell<HashMap<u64, Entry>>,
}

/// Which listener a connection came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Smtp,
    Http,
    /// POP3 and IMAP.
    MailClient,
}

/// One open connection.
struct Entry {
    fd: RawFd,
    kind: Kind,
    opened_at: Instant,
    /// "Waiting for a command outside a transaction" (SMTP) or "between requests"
    /// (HTTP): shutdown may cut those at once.
    idle: bool,
    /// The SMTP session has started a transaction at least once (MAIL was accepted).
    transacted: bool,
    /// Cut to make room for another session (see `evict_idle_smtp`).
    evicted: bool,
}

/// Removes its connection from the registry when dropped. Drop it before the socket closes
/// (declare it after the stream), so the registry never holds a closed, reusable fd.
pub struct ConnGuard<'r> {
    registry: &'r ConnRegistry,
    key: u64,
}

impl ConnRegistry {
    /// Registers an open connection; it stays registered while the guard lives.
    pub fn register(&self, fd: RawFd, kind: Kind) -> ConnGuard<'_> {
        let key = self.next_key.get();
        self.next_key.set(key + 1);
        let entry = Entry {
            fd,
            kind,
            opened_at: Instant::now(),
            idle: false,
            transacted: false,
            evicted: false,
        };
        self.conns.borrow_mut().insert(key, entry);
        ConnGuard {
            registry: self,
            key,
        }
    }

    /// Connections registered now.
    pub fn len(&self) -> usize {
        self.conns.borrow().len()
    }

    /// True when no connection is registered.
    pub fn is_empty(&self) -> bool {
        self.conns.borrow().is_empty()
    }

    /// Interrupts the reads of idle connections, or of all of them.
    pub fn interrupt(&self, idle_only: bool) {
        for entry in self.conns.borrow().values() {
            if entry.idle || !idle_only {
                interrupt_read(entry.fd);
            }
        }
    }

    /// Cuts the longest-open SMTP session that is idle and never started a transaction,
    /// to make room for a new one; false if there is none. O(connections), and only
    /// called when a core is at its session cap.
    pub fn evict_idle_smtp(&self) -> bool {
        let mut conns = self.conns.borrow_mut();
        let oldest = conns
            .values_mut()
            .filter(|entry| {
                entry.kind == Kind::Smtp && entry.idle && !entry.transacted && !entry.evicted
            })
            .min_by_key(|entry| entry.opened_at);
        match oldest {
            Some(entry) => {
                entry.evicted = true;
                interrupt_read(entry.fd);
                true
            }
            None => false,
        }
    }
}

/// Ends the pending and future reads of `fd` (they complete with 0 bytes).
fn interrupt_read(fd: RawFd) {
    // SAFETY: `fd` belongs to a connection whose guard is still registered, and guards are
    // dropped before their sockets close, so `fd` is open and ours. shutdown() only
    // changes socket state; it does not close or free the fd.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RD);
    }
}

impl ConnGuard<'_> {
    /// Says whether the connection may be cut at once on shutdown.
    pub fn set_idle(&self, idle: bool) {
        if let Some(entry) = self.registry.conns.borrow_mut().get_mut(&self.key) {
            entry.idle = idle;
        }
    }

    /// Notes that the SMTP session started a transaction: it is a sender, not a squatter,
    /// and is not cut to make room.
    pub fn set_transacted(&self) {
        if let Some(entry) = self.registry.conns.borrow_mut().get_mut(&self.key) {
            entry.transacted = true;
        }
    }

    /// Whether the connection was cut to make room for another (its read ended for that
    /// reason, not because the client closed).
    pub fn evicted(&self) -> bool {
        self.registry
            .conns
            .borrow()
            .get(&self.key)
            .is_some_and(|entry| entry.evicted)
    }
}

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        self.registry.conns.borrow_mut().remove(&self.key);
    }
}
