//! Listening sockets: bound once for every executor, then handed out one per executor.
//!
//! Every executor accepts on its own `SO_REUSEPORT` socket, so the kernel spreads
//! connections over the cores. Port 0 does not mix with that (each bind would get its own
//! port), so the first bind resolves the port and the others bind the same one.
//! The sockets are created on the starting thread, where errors can still be reported as
//! configuration errors, and each executor takes ownership of its own fds
//! (`Listeners::take`).
//!
//! With `--steer-connections` each executor, once it runs pinned to its CPU, marks its
//! listeners with `SO_INCOMING_CPU` = that CPU: Linux 6.2 and later then pick, within the
//! reuseport group, the listener of the CPU that processed the connection's SYN (and fall
//! back to the hash when none matches), so a connection is served where its packets arrive
//! and its completions need no interrupt from another CPU.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::sync::Mutex;

use anyhow::Context as _;
use glommio::net::TcpListener;

use crate::config::Config;

/// Listen backlog per listener; the kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 4096;

/// Where the listeners ended up (ports resolved when the configuration asked for port 0).
#[derive(Debug, Clone, Copy)]
pub struct ListenAddrs {
    pub smtp: SocketAddr,
    pub http: SocketAddr,
    /// The implicit-TLS SMTP listener, when `--smtps` is configured.
    pub smtps: Option<SocketAddr>,
    /// The HTTPS listener, when `--https` is configured.
    pub https: Option<SocketAddr>,
    /// The mail-client listeners, when configured (`--pop3`, `--pop3s`, `--imap`, `--imaps`).
    pub pop3: Option<SocketAddr>,
    pub pop3s: Option<SocketAddr>,
    pub imap: Option<SocketAddr>,
    pub imaps: Option<SocketAddr>,
}

/// The listening sockets of every executor, not yet taken.
pub struct Listeners {
    /// Index = shard; `None` once that executor took its sockets.
    per_shard: Mutex<Vec<Option<RawListeners>>>,
    addrs: ListenAddrs,
    /// `--steer-connections`.
    steer: bool,
}

/// One executor's listening fds, owned until `Listeners::take` turns them into listeners.
struct RawListeners {
    smtp: RawFd,
    http: RawFd,
    smtps: Option<RawFd>,
    https: Option<RawFd>,
    pop3: Option<RawFd>,
    pop3s: Option<RawFd>,
    imap: Option<RawFd>,
    imaps: Option<RawFd>,
}

/// One executor's listeners.
pub struct ShardListeners {
    pub smtp: TcpListener,
    pub http: TcpListener,
    pub smtps: Option<TcpListener>,
    pub https: Option<TcpListener>,
    pub pop3: Option<TcpListener>,
    pub pop3s: Option<TcpListener>,
    pub imap: Option<TcpListener>,
    pub imaps: Option<TcpListener>,
}

impl Listeners {
    /// Binds every configured listener `n_shards` times.
    ///
    /// # Errors
    /// A listener cannot be bound (the message names it and its address).
    pub fn bind(config: &Config, n_shards: usize) -> anyhow::Result<Listeners> {
        let (smtp_fds, smtp) = bind_reuseport(config.smtp_addr, n_shards)
            .with_context(|| format!("cannot listen for SMTP on {}", config.smtp_addr))?;
        let (http_fds, http) = bind_reuseport(config.http_addr, n_shards)
            .with_context(|| format!("cannot listen for HTTP on {}", config.http_addr))?;
        let bind_optional = |addr: Option<SocketAddr>, what: &str| {
            addr.map(|addr| {
                bind_reuseport(addr, n_shards)
                    .with_context(|| format!("cannot listen for {what} on {addr}"))
            })
            .transpose()
        };
        let smtps = bind_optional(config.smtps_addr, "SMTPS")?;
        let https = bind_optional(config.https_addr, "HTTPS")?;
        let pop3 = bind_optional(config.pop3_addr, "POP3")?;
        let pop3s = bind_optional(config.pop3s_addr, "POP3S")?;
        let imap = bind_optional(config.imap_addr, "IMAP")?;
        let imaps = bind_optional(config.imaps_addr, "IMAPS")?;
        let addr_of =
            |bound: &Option<(Vec<RawFd>, SocketAddr)>| bound.as_ref().map(|(_, addr)| *addr);
        let addrs = ListenAddrs {
            smtp,
            http,
            smtps: addr_of(&smtps),
            https: addr_of(&https),
            pop3: addr_of(&pop3),
            pop3s: addr_of(&pop3s),
            imap: addr_of(&imap),
            imaps: addr_of(&imaps),
        };
        let fd_of = |bound: &Option<(Vec<RawFd>, SocketAddr)>, shard_idx: usize| {
            bound.as_ref().map(|(fds, _)| fds[shard_idx])
        };
        let per_shard = (0..n_shards)
            .map(|shard_idx| {
                Some(RawListeners {
                    smtp: smtp_fds[shard_idx],
                    http: http_fds[shard_idx],
                    smtps: fd_of(&smtps, shard_idx),
                    https: fd_of(&https, shard_idx),
                    pop3: fd_of(&pop3, shard_idx),
                    pop3s: fd_of(&pop3s, shard_idx),
                    imap: fd_of(&imap, shard_idx),
                    imaps: fd_of(&imaps, shard_idx),
                })
            })
            .collect();
        Ok(Listeners {
            per_shard: Mutex::new(per_shard),
            addrs,
            steer: config.steer_connections,
        })
    }

    /// The bound addresses.
    pub fn addrs(&self) -> ListenAddrs {
        self.addrs
    }

    /// Executor `shard_idx`'s listeners; call it on that executor, once.
    ///
    /// # Panics
    /// If `shard_idx` is out of range or its listeners were taken already.
    pub fn take(&self, shard_idx: usize) -> ShardListeners {
        let raw = self
            .per_shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)[shard_idx]
            .take()
            .expect("each executor takes its listeners once");
        if self.steer {
            let optional = [
                raw.smtps, raw.https, raw.pop3, raw.pop3s, raw.imap, raw.imaps,
            ];
            let all_fds = [raw.smtp, raw.http]
                .into_iter()
                .chain(optional.into_iter().flatten());
            if let Err(error) = steer_to_this_cpu(all_fds) {
                tracing::warn!("--steer-connections: {error}; connections are spread by hash");
            }
        }
        // SAFETY: each fd was created by `bind_reuseport`, is a listening TCP socket, and is
        // handed out exactly once (the `Option` above is taken), so this listener becomes
        // its sole owner.
        let listener = |fd: RawFd| unsafe { TcpListener::from_raw_fd(fd) };
        ShardListeners {
            smtp: listener(raw.smtp),
            http: listener(raw.http),
            smtps: raw.smtps.map(listener),
            https: raw.https.map(listener),
            pop3: raw.pop3.map(listener),
            pop3s: raw.pop3s.map(listener),
            imap: raw.imap.map(listener),
            imaps: raw.imaps.map(listener),
        }
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        // Sockets no executor took (one failed to start) are closed here.
        let per_shard = self
            .per_shard
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for raw in per_shard.iter_mut().filter_map(Option::take) {
            let all = [
                Some(raw.smtp),
                Some(raw.http),
                raw.smtps,
                raw.https,
                raw.pop3,
                raw.pop3s,
                raw.imap,
                raw.imaps,
            ];
            for fd in all.into_iter().flatten() {
                // SAFETY: the fd is open and owned by this untaken entry; nobody else
                // will use or close it.
                unsafe {
                    libc::close(fd);
                }
            }
        }
    }
}

/// Marks each listener in `fds` with `SO_INCOMING_CPU` = the CPU this thread runs on (an
/// executor thread is pinned to one).
fn steer_to_this_cpu(fds: impl Iterator<Item = RawFd>) -> std::io::Result<()> {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    let cpu = usize::try_from(cpu).map_err(|_| std::io::Error::last_os_error())?;
    for fd in fds {
        // SAFETY: `fd` is an open listening socket owned by `Listeners` for the whole call.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        socket2::SockRef::from(&fd).set_cpu_affinity(cpu)?;
    }
    Ok(())
}

/// Binds `n` SO_REUSEPORT listeners on `addr`. Port 0 is resolved by the first bind and
/// reused by the rest, so every core serves the same port.
fn bind_reuseport(addr: SocketAddr, n: usize) -> std::io::Result<(Vec<RawFd>, SocketAddr)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut fds = Vec::with_capacity(n);
    let mut bound_addr = addr;
    for _ in 0..n {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&bound_addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        if bound_addr.port() == 0 {
            bound_addr = socket.local_addr()?.as_socket().unwrap_or(addr);
        }
        fds.push(socket.into_raw_fd());
    }
    Ok((fds, bound_addr))
}
