//! The read engine: one thread drives many non-blocking POP3 or IMAP connections.
//!
//! The shape follows smtp-blaster's [`crate::engine`]: a mio `Poll` (edge-triggered
//! epoll) per thread, spun with a zero timeout in busy-poll mode so the server never
//! pays a wake-up IPI for the client (see the tech notes), or slept in with `--epoll`.
//! Each connection owns a [`Session`] that does the protocol; the engine only moves bytes,
//! stamps times, counts, and reconnects. A connection's read buffer grows (up to
//! [`RESPONSE_BYTES_MAX`] plus one read) until it holds the largest whole response the
//! session waits for, then stays that size.

use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::reader::report::ReadStats;
use crate::reader::{
    MessageRead, Progress, Protocol, RESPONSE_BYTES_MAX, Session, SessionConfig, SessionError,
};

/// First size of a connection's read buffer; it doubles as needed.
const INBUF_BYTES_MIN: usize = 64 * 1024;

/// epoll events fetched per `epoll_wait`.
const EVENTS_CAPACITY: usize = 1024;

/// How often timeouts, reconnects and the end of the run are checked.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(1);

/// Longest sleep in epoll mode, so housekeeping still runs when nothing happens.
const EPOLL_SLEEP_MAX: Duration = Duration::from_millis(5);

/// Delay before a failed client connects again, so a broken server is not hammered.
const RECONNECT_DELAY: Duration = Duration::from_millis(10);

/// Everything a load thread needs to know about the run (shared, read-only).
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: SocketAddr,
    pub protocol: Protocol,
    /// Every session's settings; `user` is replaced by the client's address.
    pub session: SessionConfig,
    /// The inboxes; client i reads `addresses[i % len]`.
    pub addresses: Vec<String>,
    /// Messages finished in this first part of the run are not measured.
    pub warmup: Duration,
    /// The run stops this long after its start (warm-up included).
    pub run_time: Duration,
    /// Stop once this many messages were read after the warm-up.
    pub messages_total: Option<u64>,
    /// Longest wait for a connect or for the next bytes of a reply.
    pub reply_timeout: Duration,
    pub busy_poll: bool,
    /// Compare sizes (`--verify`), and checksums where the sessions check them.
    pub verify: bool,
    /// Abort after this many session and connection errors.
    pub errors_max: u64,
}

/// What the threads share: the message counter, the stop switch and the abort reason.
#[derive(Debug, Default)]
pub struct Shared {
    /// Messages read after the warm-up, over all threads.
    n_measured: AtomicU64,
    /// Session and connection errors over all threads.
    n_errors: AtomicU64,
    stop: AtomicBool,
    /// When `messages_total` was reached, in ns since the run start; 0 = not reached.
    end_ns: AtomicU64,
    /// Why the run was aborted (the first reason wins).
    fatal: Mutex<Option<String>>,
}

impl Shared {
    /// A fresh shared state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops every thread; `reason` is reported if it is the first.
    pub fn abort(&self, reason: String) {
        let mut fatal = self
            .fatal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if fatal.is_none() {
            *fatal = Some(reason);
        }
        self.stop.store(true, Ordering::Release);
    }

    /// Why the run was aborted, if it was.
    pub fn fatal(&self) -> Option<String> {
        self.fatal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// When the message count was reached, since the run start.
    pub fn count_reached_at(&self) -> Option<Duration> {
        match self.end_ns.load(Ordering::Acquire) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not connected; connects at `reconnect_at`.
    Idle,
    Connecting,
    Open,
    /// Finished for the run (its inbox is empty, or the run is over).
    Done,
}

struct Conn {
    /// Index over all threads; picks the inbox.
    client_idx: usize,
    stream: Option<TcpStream>,
    phase: Phase,
    session: Option<Session>,
    /// Initialized bytes; the first `in_len` are unconsumed input.
    inbuf: Vec<u8>,
    in_len: usize,
    out: Vec<u8>,
    out_pos: usize,
    /// Connect started or bytes last arrived; the reply timeout counts from here.
    progress_at: Instant,
    reconnect_at: Instant,
}

struct Engine<'a> {
    config: &'a RunConfig,
    shared: &'a Shared,
    run_start: Instant,
    warmup_at: Instant,
    stop_at: Instant,
    poll: Poll,
    conns: Vec<Conn>,
    stats: ReadStats,
    /// Reused for every `advance`.
    reads: Vec<MessageRead>,
}

/// Runs clients `first_client_idx..first_client_idx + n_clients` on the calling thread
/// until the run is over, and returns what they counted.
///
/// # Errors
/// When epoll cannot be set up or fails.
pub fn run_thread(
    first_client_idx: usize,
    n_clients: usize,
    config: &RunConfig,
    shared: &Shared,
    run_start: Instant,
) -> io::Result<ReadStats> {
    let conns = (0..n_clients)
        .map(|idx| Conn {
            client_idx: first_client_idx + idx,
            stream: None,
            phase: Phase::Idle,
            session: None,
            inbuf: Vec::new(),
            in_len: 0,
            out: Vec::with_capacity(4096),
            out_pos: 0,
            progress_at: run_start,
            reconnect_at: run_start,
        })
        .collect();
    let mut engine = Engine {
        config,
        shared,
        run_start,
        warmup_at: run_start + config.warmup,
        stop_at: run_start + config.run_time,
        poll: Poll::new()?,
        conns,
        stats: ReadStats::new(),
        reads: Vec::new(),
    };
    engine.run()?;
    Ok(engine.stats)
}

impl Engine<'_> {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut last_housekeeping = self.run_start;
        self.housekeeping(Instant::now());
        loop {
            let timeout = if self.config.busy_poll {
                Duration::ZERO
            } else {
                EPOLL_SLEEP_MAX
            };
            let poll_start = Instant::now();
            if let Err(err) = self.poll.poll(&mut events, Some(timeout))
                && err.kind() != io::ErrorKind::Interrupted
            {
                return Err(err);
            }
            if events.is_empty() || !self.config.busy_poll {
                self.stats.idle_ns += poll_start.elapsed().as_nanos() as u64;
            }
            for event in events.iter() {
                let conn_idx = event.token().0;
                if conn_idx < self.conns.len() {
                    self.on_ready(
                        conn_idx,
                        event.is_readable() || event.is_read_closed(),
                        event.is_writable(),
                        event.is_error(),
                    );
                }
            }
            let now = Instant::now();
            if now.duration_since(last_housekeeping) >= HOUSEKEEPING_INTERVAL
                || !self.config.busy_poll
            {
                last_housekeeping = now;
                if !self.housekeeping(now) {
                    self.stats.thread_ns = self.run_start.elapsed().as_nanos() as u64;
                    return Ok(());
                }
            }
        }
    }

    /// Timeouts, reconnects and the end of the run; false once the thread is done.
    fn housekeeping(&mut self, now: Instant) -> bool {
        if self.shared.stop.load(Ordering::Acquire) || now >= self.stop_at {
            for conn_idx in 0..self.conns.len() {
                self.close(conn_idx);
                self.conns[conn_idx].phase = Phase::Done;
            }
            return false;
        }
        let mut all_done = true;
        for conn_idx in 0..self.conns.len() {
            let conn = &self.conns[conn_idx];
            match conn.phase {
                Phase::Done => continue,
                Phase::Idle if now >= conn.reconnect_at => self.connect(conn_idx, now),
                Phase::Idle => {}
                Phase::Connecting | Phase::Open => {
                    if now.duration_since(conn.progress_at) > self.config.reply_timeout {
                        let what = if conn.phase == Phase::Connecting {
                            "timeout connecting"
                        } else {
                            "timeout waiting for a reply"
                        };
                        self.fail(conn_idx, what, now);
                    }
                }
            }
            all_done = false;
        }
        !all_done
    }

    fn connect(&mut self, conn_idx: usize, now: Instant) {
        let conn = &mut self.conns[conn_idx];
        conn.progress_at = now;
        match TcpStream::connect(self.config.target) {
            Ok(mut stream) => {
                if let Err(err) = self.poll.registry().register(
                    &mut stream,
                    Token(conn_idx),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    self.shared.abort(format!("epoll register failed: {err}"));
                    return;
                }
                conn.stream = Some(stream);
                conn.phase = Phase::Connecting;
            }
            Err(err) => {
                let what = connect_error_kind(&err);
                self.fail(conn_idx, what, now);
            }
        }
    }

    fn on_ready(&mut self, conn_idx: usize, readable: bool, writable: bool, error: bool) {
        let now = Instant::now();
        let conn = &mut self.conns[conn_idx];
        match conn.phase {
            Phase::Connecting => {
                let Some(stream) = conn.stream.as_ref() else {
                    return;
                };
                if let Ok(Some(err)) | Err(err) = stream.take_error() {
                    let what = connect_error_kind(&err);
                    self.fail(conn_idx, what, now);
                    return;
                }
                if error {
                    self.fail(conn_idx, "connect: error", now);
                    return;
                }
                if stream.peer_addr().is_err() {
                    // Not connected yet (a spurious wake-up); wait for the next event.
                    return;
                }
                let _ = stream.set_nodelay(true);
                conn.phase = Phase::Open;
                conn.progress_at = now;
                if conn.inbuf.is_empty() {
                    conn.inbuf = vec![0; INBUF_BYTES_MIN];
                }
                let mut session = self.config.session.clone();
                let addresses = &self.config.addresses;
                session.user = addresses[conn.client_idx % addresses.len()].clone();
                conn.session = Some(Session::new(self.config.protocol, session));
                self.stats.n_connections += 1;
                self.read(conn_idx);
            }
            Phase::Open => {
                if writable {
                    self.flush(conn_idx);
                }
                if readable && self.conns[conn_idx].phase == Phase::Open {
                    self.read(conn_idx);
                }
            }
            Phase::Idle | Phase::Done => {}
        }
    }

    /// Reads until the socket is drained, handing each read to the session.
    fn read(&mut self, conn_idx: usize) {
        loop {
            let conn = &mut self.conns[conn_idx];
            if conn.phase != Phase::Open {
                return;
            }
            if conn.in_len == conn.inbuf.len() {
                if conn.inbuf.len() > RESPONSE_BYTES_MAX {
                    self.fail(conn_idx, "response too large", Instant::now());
                    return;
                }
                let grown = (conn.inbuf.len() * 2).min(RESPONSE_BYTES_MAX + INBUF_BYTES_MIN);
                conn.inbuf.resize(grown, 0);
            }
            let Some(stream) = conn.stream.as_mut() else {
                return;
            };
            match stream.read(&mut conn.inbuf[conn.in_len..]) {
                Ok(0) => {
                    self.fail(conn_idx, "closed by server", Instant::now());
                    return;
                }
                Ok(n) => {
                    let now = Instant::now();
                    conn.in_len += n;
                    conn.progress_at = now;
                    self.advance(conn_idx, now);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    let what = io_error_kind(&err);
                    self.fail(conn_idx, what, Instant::now());
                    return;
                }
            }
        }
    }

    /// Lets the session consume what arrived, counts what it finished, sends what it wrote.
    fn advance(&mut self, conn_idx: usize, now: Instant) {
        let Self {
            conns,
            reads,
            stats,
            config,
            shared,
            ..
        } = self;
        let conn = &mut conns[conn_idx];
        let Some(session) = conn.session.as_mut() else {
            return;
        };
        reads.clear();
        let result = session.advance(&conn.inbuf[..conn.in_len], now, &mut conn.out, reads);
        let in_window = now >= self.warmup_at && now < self.stop_at;
        for read in reads.iter() {
            let latency_ns = now.duration_since(read.sent_at).as_nanos() as u64;
            let mut measured = in_window;
            if measured && let Some(total) = config.messages_total {
                let n = shared.n_measured.fetch_add(1, Ordering::Relaxed) + 1;
                measured = n <= total;
                if n == total {
                    let end_ns = now.duration_since(self.run_start).as_nanos() as u64;
                    shared.end_ns.store(end_ns.max(1), Ordering::Release);
                    shared.stop.store(true, Ordering::Release);
                }
            }
            stats.record(read, latency_ns, measured, config.verify);
        }
        match result {
            Ok((consumed, progress)) => {
                conn.inbuf.copy_within(consumed..conn.in_len, 0);
                conn.in_len -= consumed;
                self.flush(conn_idx);
                if progress == Progress::LoggedOut && self.conns[conn_idx].phase == Phase::Open {
                    self.stats.n_logouts += 1;
                    self.close(conn_idx);
                    let conn = &mut self.conns[conn_idx];
                    conn.phase = Phase::Idle;
                    conn.reconnect_at = now;
                }
            }
            Err(error) => {
                // Whatever the session wrote before it gave up is not sent.
                let empty = error == SessionError::EmptyMailbox;
                stats.count_error(error.kind());
                self.close(conn_idx);
                let conn = &mut self.conns[conn_idx];
                if empty {
                    conn.phase = Phase::Done;
                } else {
                    conn.phase = Phase::Idle;
                    conn.reconnect_at = now + RECONNECT_DELAY;
                }
                self.count_error(&error.kind());
            }
        }
    }

    /// Writes as much of the connection's output as the socket takes.
    fn flush(&mut self, conn_idx: usize) {
        let conn = &mut self.conns[conn_idx];
        while conn.out_pos < conn.out.len() {
            let Some(stream) = conn.stream.as_mut() else {
                return;
            };
            match stream.write(&conn.out[conn.out_pos..]) {
                Ok(n) => conn.out_pos += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    let what = io_error_kind(&err);
                    self.fail(conn_idx, what, Instant::now());
                    return;
                }
            }
        }
        conn.out.clear();
        conn.out_pos = 0;
    }

    /// Counts a connection failure, closes, and schedules a reconnect.
    fn fail(&mut self, conn_idx: usize, what: &str, now: Instant) {
        self.stats.count_connection_error(what);
        self.close(conn_idx);
        let conn = &mut self.conns[conn_idx];
        conn.phase = Phase::Idle;
        conn.reconnect_at = now + RECONNECT_DELAY;
        if what == "connect: refused" {
            // Nobody listens: there is no server, or it went away.
            self.shared.abort(format!(
                "connection to {} refused: is the server running?",
                self.config.target
            ));
        }
        self.count_error(what);
    }

    fn count_error(&self, what: &str) {
        let n = self.shared.n_errors.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.config.errors_max {
            self.shared.abort(format!(
                "more than {} errors (the last: {what})",
                self.config.errors_max
            ));
        }
    }

    fn close(&mut self, conn_idx: usize) {
        let conn = &mut self.conns[conn_idx];
        if let Some(mut stream) = conn.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
        }
        conn.session = None;
        conn.in_len = 0;
        conn.out.clear();
        conn.out_pos = 0;
    }
}

fn connect_error_kind(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => "connect: refused",
        io::ErrorKind::TimedOut => "connect: timeout",
        io::ErrorKind::AddrNotAvailable | io::ErrorKind::AddrInUse => {
            "connect: no local address (ports exhausted?)"
        }
        _ => "connect: other error",
    }
}

fn io_error_kind(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::ConnectionReset => "reset by server",
        io::ErrorKind::BrokenPipe => "broken pipe",
        io::ErrorKind::ConnectionAborted => "connection aborted",
        _ => "socket error",
    }
}
