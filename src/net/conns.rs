//! The open connections of one executor, so that shutdown can interrupt their reads.
//!
//! Shutdown interrupts a blocked read with `shutdown(fd, SHUT_RD)`: the read completes with
//! 0 bytes, the session sees that the server is stopping, and writes its 421 on the still
//! open write side. This costs nothing per read, unlike racing every read against a signal.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::RawFd;

/// This executor's connections: key -> (fd, idle).
#[derive(Default)]
pub struct ConnRegistry {
    next_key: Cell<u64>,
    /// Idle means "waiting for a command outside a transaction" (SMTP) or "between
    /// requests" (HTTP): shutdown may cut those at once.
    conns: RefCell<HashMap<u64, (RawFd, bool)>>,
}

/// Removes its connection from the registry when dropped. Drop it before the socket closes
/// (declare it after the stream), so the registry never holds a closed, reusable fd.
pub struct ConnGuard<'r> {
    registry: &'r ConnRegistry,
    key: u64,
}

impl ConnRegistry {
    /// Registers an open connection; it stays registered while the guard lives.
    pub fn register(&self, fd: RawFd) -> ConnGuard<'_> {
        let key = self.next_key.get();
        self.next_key.set(key + 1);
        self.conns.borrow_mut().insert(key, (fd, false));
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
        for &(fd, idle) in self.conns.borrow().values() {
            if idle || !idle_only {
                // SAFETY: `fd` belongs to a connection whose guard is still registered, and
                // guards are dropped before their sockets close, so `fd` is open and ours.
                // shutdown() only changes socket state; it does not close or free the fd.
                unsafe {
                    libc::shutdown(fd, libc::SHUT_RD);
                }
            }
        }
    }
}

impl ConnGuard<'_> {
    /// Says whether the connection may be cut at once on shutdown.
    pub fn set_idle(&self, idle: bool) {
        if let Some(entry) = self.registry.conns.borrow_mut().get_mut(&self.key) {
            entry.1 = idle;
        }
    }
}

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        self.registry.conns.borrow_mut().remove(&self.key);
    }
}
