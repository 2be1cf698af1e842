//! The load engine: one thread drives many non-blocking SMTP connections.
//!
//! Each thread owns its connections, a mio `Poll` (epoll, edge-triggered) and its [`Stats`].
//! In busy-poll mode (the default) the thread calls `epoll_wait` with a zero timeout in a
//! loop and never sleeps: a sleeping client makes the server's every reply pay for a
//! wake-up IPI on the client's CPU (see the tech notes), which would measure the client,
//! not the server. In epoll mode the thread sleeps until a socket is ready or a timer is due.
//!
//! A connection is a small state machine: connect, greeting, EHLO, then transactions
//! (MAIL, RCPT..., DATA + body, or BDAT LAST), then QUIT. Expected replies sit in a FIFO
//! ([`Expect`]), because SMTP answers commands in order whether they were pipelined or not.
//! Transactions sit in a second FIFO; the oldest unfinished transaction owns the next
//! transaction reply. Pipelining only changes *when* the next command may be written.
//! With `--starttls`, EHLO is followed by STARTTLS, a TLS handshake and a second EHLO
//! before the first transaction; with `--smtps` the handshake comes before the greeting.
//! Either way the connection then reads and writes through [`crate::tls`], non-blocking.
//!
//! Message bytes come from precomputed templates ([`crate::message`]); output goes into a
//! per-connection buffer that is reused, so the send loop does not allocate per message.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::ClientConnection;

use crate::message::{MessageSpec, Template};
use crate::reply::{Capabilities, Parsed, capabilities, parse_reply};
use crate::sizes::{ClassPicker, SplitMix64};
use crate::stats::Stats;
use crate::tls::{self, PlainRead, TlsMode, TlsSettings};

/// Read buffer per connection; a reply that does not fit is a protocol error.
const INBUF_BYTES: usize = 64 * 1024;

/// epoll events fetched per `epoll_wait`.
const EVENTS_CAPACITY: usize = 1024;

/// How often timeouts and stop conditions are checked.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(1);

/// Longest sleep in epoll mode, so that housekeeping still runs when nothing happens.
const EPOLL_SLEEP_MAX: Duration = Duration::from_millis(5);

/// Delay before a failed connection slot connects again, so a broken server is not hammered.
const RECONNECT_DELAY: Duration = Duration::from_millis(10);

/// Open-loop arrivals queued per connection before new ones are dropped (the bound on memory).
pub const ARRIVALS_QUEUED_PER_CONNECTION_MAX: usize = 100_000;

/// With `--connect-per-arrival`, arrivals waiting for a free connection slot per thread
/// before new ones are dropped (the bound on memory).
pub const ARRIVALS_PENDING_MAX: usize = 1_000_000;

/// Everything a load thread needs to know about the run (shared, read-only).
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The SMTP server.
    pub target: SocketAddr,
    /// Transactions per connection before QUIT and reconnect; 0 = reuse forever.
    pub messages_per_connection: u64,
    /// Total messages over all threads, if bounded by count.
    pub messages_total: Option<u64>,
    /// No transaction starts after this long (warm-up included).
    pub run_time: Duration,
    /// Transactions started in this first part of the run are not measured.
    pub warmup: Duration,
    /// Open-loop arrival rate over all threads, in messages per second; `None` = closed loop.
    pub rate_per_sec: Option<f64>,
    /// Open loop only: every arrival opens a connection of its own (a connection takes
    /// more waiting arrivals only up to `messages_per_connection`), so the latency of an
    /// arrival runs from its intended time through connect, greeting, EHLO and STARTTLS to
    /// the final 250, as an MX sees independent senders arrive.
    pub connect_per_arrival: bool,
    /// Mean think time in nanoseconds (0 = none): after a batch of replies, the next command
    /// is written only this long later, and a closed-loop sender waits as long before it
    /// connects again. Each wait is drawn uniformly from half to one and a half times the
    /// mean, so senders do not march in step. The TLS handshake's own flights are not delayed.
    pub think_ns: u64,
    /// Send MAIL/RCPT/DATA as one group, and the body with the next group (RFC 2920).
    pub pipelining: bool,
    /// BDAT LAST instead of DATA (RFC 3030).
    pub bdat: bool,
    /// Transactions in flight per connection (BDAT with pipelining only).
    pub in_flight: usize,
    /// EHLO argument.
    pub ehlo: String,
    /// TLS: STARTTLS after EHLO, or implicit from connect; `None` = plaintext.
    pub tls: Option<TlsSettings>,
    /// Longest wait for any reply or for connect.
    pub reply_timeout: Duration,
    /// Spin on `epoll_wait(0)` instead of sleeping.
    pub busy_poll: bool,
    /// Keep (seq, recipients) of accepted messages for `--verify`.
    pub keep_accepted: bool,
    /// Abort the run after this many connection errors.
    pub connection_errors_max: u64,
}

/// What the threads share: the message counter and the abort switch.
#[derive(Debug, Default)]
pub struct Shared {
    /// Next message sequence number; also the count of messages claimed so far.
    next_seq: AtomicU64,
    /// Connection errors over all threads.
    n_connection_errors: AtomicU64,
    abort: AtomicBool,
    /// Why the run was aborted (the first reason wins).
    fatal: Mutex<Option<String>>,
}

/// The message shapes of a run.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Sender, recipients and run id.
    pub spec: MessageSpec,
    /// One per size class or corpus file.
    pub templates: Vec<Template>,
    /// Relative weight of each template.
    pub weights: Vec<f64>,
    /// Send the templates in turn (message `seq` uses template `seq mod len`) instead of
    /// drawing them by weight: DKIM variants (`--dkim-variants`) whose selectors must
    /// each come up once before any comes up again.
    pub in_turn: bool,
}

/// What one thread returns.
#[derive(Debug)]
pub struct ThreadResult {
    /// Everything the thread counted.
    pub stats: Stats,
    /// Completion time of the last accepted message, since the run start.
    pub last_completion: Duration,
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
        self.abort.store(true, Ordering::Release);
    }

    /// Why the run was aborted, if it was.
    pub fn fatal(&self) -> Option<String> {
        self.fatal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// Claims the next message; `None` once `total` messages have been claimed.
    fn claim(&self, total: Option<u64>) -> Option<u64> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        match total {
            Some(total) if seq >= total => None,
            _ => Some(seq),
        }
    }

    fn exhausted(&self, total: Option<u64>) -> bool {
        total.is_some_and(|total| self.next_seq.load(Ordering::Relaxed) >= total)
    }
}

/// Runs `n_connections` connections on the calling thread until the run is over.
pub fn run_thread(
    thread_idx: usize,
    n_threads: usize,
    n_connections: usize,
    config: &RunConfig,
    workload: &Workload,
    shared: &Shared,
    run_start: Instant,
) -> io::Result<ThreadResult> {
    let mut engine = Engine::new(
        thread_idx,
        n_threads,
        n_connections,
        config,
        workload,
        shared,
        run_start,
    )?;
    engine.run()?;
    Ok(ThreadResult {
        stats: engine.stats,
        last_completion: Duration::from_nanos(engine.last_completion_ns),
    })
}

/// Pins the calling thread to one CPU.
///
/// # Errors
/// When the CPU number is out of range or the kernel refuses.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is out of range"),
        ));
    }
    // SAFETY: `cpu_set_t` is a plain bit array for which all-zero is a valid (empty) value;
    // CPU_SET writes inside it because `cpu < CPU_SETSIZE` (checked above); and
    // sched_setaffinity reads exactly `size_of::<cpu_set_t>()` bytes from a live local.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Wraps the connection in a new TLS client session: after the `220` to `STARTTLS`, or
/// right after connect for implicit TLS. From here on `Conn` reads and writes through it.
fn start_tls(conn: &mut Conn, settings: &TlsSettings) -> Result<(), String> {
    let config = conn
        .tls_config
        .get_or_insert_with(|| tls::sender_config(settings));
    conn.tls = Some(tls::connect(settings, config)?);
    conn.tls_recorded = false;
    Ok(())
}

/// A reply the connection waits for, in the order the commands were sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Greeting,
    Ehlo,
    /// The 220 to STARTTLS.
    StartTls,
    Mail,
    Rcpt(u32),
    /// The 354 to DATA.
    Data,
    /// The final reply after the body's dot.
    DataEnd,
    /// The final reply to BDAT LAST.
    Bdat,
    Rset,
    Quit,
}

/// What the transaction currently being written sends next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Mail,
    Rcpt(u32),
    Data,
    Body,
    Bdat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not connected; connects at `reconnect_at_ns`.
    Idle,
    Connecting,
    /// Connected, waiting for greeting and EHLO.
    Opening,
    Ready,
    /// QUIT sent; waiting for 221 and the server's close.
    Quitting,
    /// Finished for good.
    Done,
}

/// One SMTP transaction in flight.
#[derive(Debug, Clone, Copy)]
struct Txn {
    seq: u64,
    template_idx: usize,
    /// When the latency clock started, in ns since the run start (intended time in open loop).
    start_ns: u64,
    /// Bit k set when RCPT k was accepted.
    rcpt_mask: u64,
    mail_ok: bool,
    got_354: bool,
    failed: bool,
    /// Replies still expected for this transaction.
    n_outstanding: u32,
    /// Whether the last step (body or BDAT) has been written.
    terminal_sent: bool,
    stored_bytes: usize,
}

struct Conn {
    stream: Option<TcpStream>,
    /// The TLS session once STARTTLS (or implicit TLS) began; boxed, as it is large.
    tls: Option<Box<ClientConnection>>,
    /// The handshake of `tls` is already counted in the report.
    tls_recorded: bool,
    /// This slot's TLS client configuration (its own session cache), made at first use.
    tls_config: Option<Arc<rustls::ClientConfig>>,
    phase: Phase,
    reconnect_at_ns: u64,
    inbuf: Box<[u8]>,
    in_len: usize,
    out: Vec<u8>,
    out_pos: usize,
    /// Scratch for BDAT headers (their length goes before them).
    scratch: Vec<u8>,
    expects: VecDeque<Expect>,
    /// `Expect::Data` entries in `expects`: nothing may be written after DATA until its 354.
    n_data_outstanding: usize,
    txns: VecDeque<Txn>,
    /// Next step of `txns.back()`, if it is still being written.
    emitting: Option<Step>,
    need_rset: bool,
    /// Transactions started on the current TCP connection.
    n_started_on_conn: u64,
    /// When the connection last made progress (connect started, reply arrived, or first
    /// command sent after being idle); the reply timeout counts from here.
    progress_ns: u64,
    /// Open-loop arrivals waiting for this connection: (intended ns, seq).
    queue: VecDeque<(u64, u64)>,
    /// The 221 to QUIT arrived; now waiting for the server to close.
    quit_acked: bool,
    /// Think time: nothing is written before this (ns since the run start).
    hold_until_ns: u64,
    /// Where connect-to-250 latency counts from: the connect, or with
    /// `connect_per_arrival` the intended time of the arrival that opened the connection.
    connect_start_ns: u64,
    /// The first transaction of this TCP connection has finished (its connect-to-250 taken).
    first_txn_done: bool,
}

struct Engine<'a> {
    config: &'a RunConfig,
    workload: &'a Workload,
    shared: &'a Shared,
    run_start: Instant,
    poll: Poll,
    conns: Vec<Conn>,
    stats: Stats,
    picker: ClassPicker,
    /// MAIL FROM line, built once.
    mail_line: Vec<u8>,
    /// Transactions allowed in flight per connection.
    in_flight_max: usize,
    warmup_ns: u64,
    stop_ns: u64,
    /// No transaction may still be waited for after this.
    hard_stop_ns: u64,
    last_completion_ns: u64,
    /// Open loop: this thread's arrival interval and next arrival.
    arrival_interval_ns: f64,
    next_arrival_idx: u64,
    arrival_offset_ns: f64,
    arrivals_over: bool,
    /// Closed loop: no more messages may be claimed.
    claims_over: bool,
    next_conn_for_arrival: usize,
    /// Think-time deadlines and delayed reconnects: (due ns, connection index). An entry
    /// whose connection has moved on since is skipped when it comes due.
    timers: BinaryHeap<Reverse<(u64, usize)>>,
    /// `connect_per_arrival`: arrivals (intended ns, seq) waiting for a free slot.
    pending: VecDeque<(u64, u64)>,
    /// `connect_per_arrival`: slots with no connection and nothing to do.
    parked: Vec<usize>,
    /// Draws think times.
    think_rng: SplitMix64,
}

impl<'a> Engine<'a> {
    fn new(
        thread_idx: usize,
        n_threads: usize,
        n_connections: usize,
        config: &'a RunConfig,
        workload: &'a Workload,
        shared: &'a Shared,
        run_start: Instant,
    ) -> io::Result<Self> {
        let in_flight_max = match (config.pipelining, config.bdat) {
            (false, _) => 1,
            // The next envelope rides with the previous body; DATA itself stops the pipeline.
            (true, false) => 2,
            (true, true) => config.in_flight.max(1),
        };
        let conns = (0..n_connections)
            .map(|_| Conn {
                stream: None,
                tls: None,
                tls_recorded: false,
                tls_config: None,
                phase: Phase::Idle,
                reconnect_at_ns: 0,
                inbuf: vec![0u8; INBUF_BYTES].into_boxed_slice(),
                in_len: 0,
                out: Vec::with_capacity(16 * 1024),
                out_pos: 0,
                scratch: Vec::with_capacity(1024),
                expects: VecDeque::with_capacity(64),
                n_data_outstanding: 0,
                txns: VecDeque::with_capacity(in_flight_max + 1),
                emitting: None,
                need_rset: false,
                n_started_on_conn: 0,
                progress_ns: 0,
                queue: VecDeque::new(),
                quit_acked: false,
                hold_until_ns: 0,
                connect_start_ns: 0,
                first_txn_done: false,
            })
            .collect::<Vec<_>>();
        let mut think_rng = SplitMix64(0x7468_696e_6b00 ^ thread_idx as u64);
        let mut conns = conns;
        let mut timers = BinaryHeap::new();
        let mut parked = Vec::new();
        if config.connect_per_arrival {
            // Every slot waits for an arrival to open its connection.
            for (conn_idx, conn) in conns.iter_mut().enumerate().rev() {
                conn.reconnect_at_ns = u64::MAX;
                parked.push(conn_idx);
            }
        } else if config.think_ns > 0 {
            // Spread the first connects over one think time, as independent senders would be.
            for (conn_idx, conn) in conns.iter_mut().enumerate() {
                conn.reconnect_at_ns = think_rng.next_u64() % config.think_ns;
                timers.push(Reverse((conn.reconnect_at_ns, conn_idx)));
            }
        }
        let run_ns = config.run_time.as_nanos() as u64;
        let (arrival_interval_ns, arrival_offset_ns) = match config.rate_per_sec {
            Some(rate) => {
                let per_thread = rate / n_threads as f64;
                let interval = 1e9 / per_thread;
                // Stagger the threads so their arrivals interleave instead of coinciding.
                (interval, interval * thread_idx as f64 / n_threads as f64)
            }
            None => (0.0, 0.0),
        };
        Ok(Self {
            config,
            workload,
            shared,
            run_start,
            poll: Poll::new()?,
            conns,
            stats: Stats::new(),
            picker: ClassPicker::new(
                &workload.weights,
                workload.spec.run_id.wrapping_add(thread_idx as u64),
            ),
            mail_line: format!("MAIL FROM:<blaster@{}>\r\n", workload.spec.domain).into_bytes(),
            in_flight_max,
            warmup_ns: config.warmup.as_nanos() as u64,
            stop_ns: run_ns,
            hard_stop_ns: run_ns.saturating_add(config.reply_timeout.as_nanos() as u64 * 2),
            last_completion_ns: 0,
            arrival_interval_ns,
            next_arrival_idx: 0,
            arrival_offset_ns,
            arrivals_over: config.rate_per_sec.is_none(),
            claims_over: false,
            next_conn_for_arrival: 0,
            timers,
            pending: VecDeque::new(),
            parked,
            think_rng,
        })
    }

    fn now_ns(&self) -> u64 {
        self.run_start.elapsed().as_nanos() as u64
    }

    /// One think time, uniform in [mean/2, 3*mean/2); 0 without `--think-ms`.
    fn think_draw_ns(&mut self) -> u64 {
        let mean_ns = self.config.think_ns;
        if mean_ns == 0 {
            return 0;
        }
        mean_ns / 2 + self.think_rng.next_u64() % mean_ns
    }

    /// Runs the think-time holds and delayed reconnects that are due.
    fn fire_timers(&mut self, now_ns: u64) {
        while let Some(&Reverse((due_ns, conn_idx))) = self.timers.peek() {
            if due_ns > now_ns {
                return;
            }
            self.timers.pop();
            let conn = &self.conns[conn_idx];
            match conn.phase {
                Phase::Idle => {
                    if conn.reconnect_at_ns == due_ns && self.has_work(conn_idx) {
                        self.connect(conn_idx, now_ns);
                    }
                }
                Phase::Opening | Phase::Ready | Phase::Quitting => {
                    if conn.hold_until_ns == due_ns {
                        self.pump(conn_idx, now_ns);
                        self.flush(conn_idx, now_ns);
                    }
                }
                Phase::Connecting | Phase::Done => {}
            }
        }
    }

    /// `connect_per_arrival`: hands waiting arrivals to parked slots and connects them.
    fn dispatch_arrivals(&mut self, now_ns: u64) {
        while !self.pending.is_empty() {
            let Some(conn_idx) = self.parked.pop() else {
                return;
            };
            let Some((intended_ns, seq)) = self.pending.pop_front() else {
                return;
            };
            let conn = &mut self.conns[conn_idx];
            conn.queue.push_back((intended_ns, seq));
            conn.connect_start_ns = intended_ns;
            conn.reconnect_at_ns = now_ns;
            self.connect(conn_idx, now_ns);
        }
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut last_housekeeping_ns = 0;
        let housekeeping_ns = HOUSEKEEPING_INTERVAL.as_nanos() as u64;
        self.housekeeping(0);
        loop {
            let timeout = if self.config.busy_poll {
                Duration::ZERO
            } else {
                let mut next_ns = self.now_ns() + EPOLL_SLEEP_MAX.as_nanos() as u64;
                if !self.arrivals_over {
                    next_ns = next_ns.min(
                        (self.arrival_offset_ns
                            + self.next_arrival_idx as f64 * self.arrival_interval_ns)
                            as u64,
                    );
                }
                if let Some(&Reverse((due_ns, _))) = self.timers.peek() {
                    next_ns = next_ns.min(due_ns);
                }
                Duration::from_nanos(next_ns.saturating_sub(self.now_ns()))
            };
            let poll_start_ns = self.now_ns();
            if let Err(err) = self.poll.poll(&mut events, Some(timeout))
                && err.kind() != io::ErrorKind::Interrupted
            {
                return Err(err);
            }
            if events.is_empty() || !self.config.busy_poll {
                // Time with nothing to do (an empty spin, or time blocked in epoll): a load
                // generator that is never idle may be the bottleneck, so the report shows it.
                self.stats.idle_ns += self.now_ns().saturating_sub(poll_start_ns);
            }
            for event in events.iter() {
                let conn_idx = event.token().0;
                if conn_idx < self.conns.len() {
                    self.on_ready(conn_idx, event.is_read_closed() || event.is_error());
                }
            }
            let now_ns = self.now_ns();
            self.fire_timers(now_ns);
            if !self.arrivals_over {
                self.generate_arrivals(now_ns);
            }
            if now_ns.saturating_sub(last_housekeeping_ns) >= housekeeping_ns
                || events.is_empty() && !self.config.busy_poll
            {
                last_housekeeping_ns = now_ns;
                if !self.housekeeping(now_ns) {
                    self.stats.thread_ns += now_ns;
                    return Ok(());
                }
            }
        }
    }

    /// Timeouts, reconnects and the end of the run. Returns false when the thread is done.
    fn housekeeping(&mut self, now_ns: u64) -> bool {
        if self.shared.aborted() || now_ns >= self.hard_stop_ns {
            for conn_idx in 0..self.conns.len() {
                self.close(conn_idx);
                self.conns[conn_idx].phase = Phase::Done;
            }
            return false;
        }
        if now_ns >= self.stop_ns {
            self.claims_over = true;
            self.arrivals_over = true;
        }
        let timeout_ns = self.config.reply_timeout.as_nanos() as u64;
        let mut all_done = true;
        for conn_idx in 0..self.conns.len() {
            let conn = &self.conns[conn_idx];
            match conn.phase {
                Phase::Done => continue,
                Phase::Idle if self.config.connect_per_arrival && conn.queue.is_empty() => {
                    // Parked until an arrival comes; done once none can come any more.
                    if self.arrivals_over && self.pending.is_empty() {
                        self.conns[conn_idx].phase = Phase::Done;
                    }
                }
                Phase::Idle => {
                    if !self.has_work(conn_idx) {
                        self.conns[conn_idx].phase = Phase::Done;
                        continue;
                    }
                    if now_ns >= conn.reconnect_at_ns {
                        self.connect(conn_idx, now_ns);
                    }
                }
                Phase::Connecting | Phase::Opening | Phase::Quitting => {
                    if now_ns.saturating_sub(conn.progress_ns) > timeout_ns {
                        let what = match conn.phase {
                            Phase::Connecting => "timeout connecting",
                            Phase::Quitting => "timeout waiting for QUIT reply or close",
                            _ if conn.tls.as_ref().is_some_and(|tls| tls.is_handshaking()) => {
                                "timeout in the TLS handshake"
                            }
                            _ => "timeout waiting for greeting or EHLO reply",
                        };
                        self.fail(conn_idx, what, now_ns);
                    }
                }
                Phase::Ready => {
                    if !conn.expects.is_empty()
                        && now_ns.saturating_sub(conn.progress_ns) > timeout_ns
                    {
                        self.fail(conn_idx, "timeout waiting for reply", now_ns);
                    } else if conn.expects.is_empty() {
                        // Idle connection: the end of the run may have come.
                        self.pump(conn_idx, now_ns);
                        self.flush(conn_idx, now_ns);
                    }
                }
            }
            all_done &= self.conns[conn_idx].phase == Phase::Done;
        }
        !all_done
    }

    /// Whether this connection slot may still have transactions to run.
    fn has_work(&self, conn_idx: usize) -> bool {
        if self.config.connect_per_arrival {
            !self.conns[conn_idx].queue.is_empty() || !self.pending.is_empty()
        } else if self.config.rate_per_sec.is_some() {
            !self.arrivals_over || !self.conns[conn_idx].queue.is_empty()
        } else {
            !self.claims_over && !self.shared.exhausted(self.config.messages_total)
        }
    }

    fn generate_arrivals(&mut self, now_ns: u64) {
        loop {
            let intended_ns = (self.arrival_offset_ns
                + self.next_arrival_idx as f64 * self.arrival_interval_ns)
                as u64;
            if intended_ns > now_ns {
                return;
            }
            if intended_ns >= self.stop_ns {
                self.arrivals_over = true;
                return;
            }
            let Some(seq) = self.shared.claim(self.config.messages_total) else {
                self.arrivals_over = true;
                return;
            };
            self.next_arrival_idx += 1;
            if self.config.connect_per_arrival {
                if self.pending.len() >= ARRIVALS_PENDING_MAX {
                    self.stats.n_arrivals_dropped += 1;
                } else {
                    self.pending.push_back((intended_ns, seq));
                    self.dispatch_arrivals(now_ns);
                }
                continue;
            }
            let conn_idx = self.next_conn_for_arrival;
            self.next_conn_for_arrival = (conn_idx + 1) % self.conns.len();
            let conn = &mut self.conns[conn_idx];
            if conn.queue.len() >= ARRIVALS_QUEUED_PER_CONNECTION_MAX || conn.phase == Phase::Done {
                self.stats.n_arrivals_dropped += 1;
                continue;
            }
            conn.queue.push_back((intended_ns, seq));
            if conn.phase == Phase::Ready {
                self.pump(conn_idx, now_ns);
                self.flush(conn_idx, now_ns);
            }
        }
    }

    fn connect(&mut self, conn_idx: usize, now_ns: u64) {
        let conn = &mut self.conns[conn_idx];
        conn.progress_ns = now_ns;
        conn.first_txn_done = false;
        if !self.config.connect_per_arrival {
            conn.connect_start_ns = now_ns;
        }
        match TcpStream::connect(self.config.target) {
            Ok(mut stream) => {
                if let Err(err) = self.poll.registry().register(
                    &mut stream,
                    Token(conn_idx),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    self.shared
                        .abort(format!("epoll registration failed: {err}"));
                    conn.phase = Phase::Done;
                    return;
                }
                conn.stream = Some(stream);
                conn.phase = Phase::Connecting;
            }
            Err(err) => self.connect_failed(conn_idx, &err, now_ns),
        }
    }

    fn connect_failed(&mut self, conn_idx: usize, err: &io::Error, now_ns: u64) {
        if err.kind() == io::ErrorKind::ConnectionRefused {
            // A refused connect means there is no server (or it went away): retrying would
            // only turn a clear answer into a slow one.
            self.stats.count_connection_error("refused");
            let reason = format!(
                "connection to {} refused: is the SMTP server running?",
                self.config.target
            );
            self.abort_run(conn_idx, reason);
            return;
        }
        self.fail(conn_idx, &format!("connect: {}", err.kind()), now_ns);
    }

    /// Readiness on a socket; `closing` when the peer has shut down its side (so a short
    /// read does not mean the socket is drained: the end of stream still has to be read).
    fn on_ready(&mut self, conn_idx: usize, closing: bool) {
        let now_ns = self.now_ns();
        match self.conns[conn_idx].phase {
            Phase::Connecting => {
                let Some(stream) = self.conns[conn_idx].stream.as_ref() else {
                    return;
                };
                match stream.take_error() {
                    Ok(Some(err)) | Err(err) => return self.connect_failed(conn_idx, &err, now_ns),
                    Ok(None) => {}
                }
                match stream.peer_addr() {
                    Ok(_) => {}
                    Err(err) if err.kind() == io::ErrorKind::NotConnected => return,
                    Err(err) => return self.connect_failed(conn_idx, &err, now_ns),
                }
                let _ = stream.set_nodelay(true);
                self.stats.n_connections += 1;
                let conn = &mut self.conns[conn_idx];
                conn.phase = Phase::Opening;
                conn.progress_ns = now_ns;
                conn.expects.push_back(Expect::Greeting);
                if let Some(settings) = self.config.tls.as_ref()
                    && settings.mode == TlsMode::Implicit
                {
                    if let Err(message) = start_tls(conn, settings) {
                        self.abort_run(conn_idx, message);
                        return;
                    }
                    // Sends the ClientHello; the greeting comes after the handshake.
                    self.flush(conn_idx, now_ns);
                }
                self.on_readable(conn_idx, closing);
            }
            Phase::Opening | Phase::Ready | Phase::Quitting => {
                self.flush(conn_idx, now_ns);
                self.on_readable(conn_idx, closing);
            }
            Phase::Idle | Phase::Done => {}
        }
    }

    fn on_readable(&mut self, conn_idx: usize, closing: bool) {
        loop {
            let conn = &mut self.conns[conn_idx];
            let Some(stream) = conn.stream.as_mut() else {
                return;
            };
            if conn.in_len == conn.inbuf.len() {
                let now_ns = self.now_ns();
                return self.fail(
                    conn_idx,
                    "protocol: reply larger than the read buffer",
                    now_ns,
                );
            }
            let closing = closing || conn.phase == Phase::Quitting;
            let outcome = match conn.tls.as_mut() {
                Some(tls) => tls::read_plain(tls, stream, &mut conn.inbuf[conn.in_len..], closing),
                None => read_plain_tcp(stream, &mut conn.inbuf[conn.in_len..], closing),
            };
            match outcome {
                Ok(PlainRead::Eof) => {
                    let now_ns = self.now_ns();
                    let conn = &self.conns[conn_idx];
                    if conn.phase == Phase::Quitting && conn.quit_acked {
                        self.close(conn_idx);
                        self.after_close(conn_idx, now_ns, false);
                    } else {
                        self.fail(conn_idx, "closed by server", now_ns);
                    }
                    return;
                }
                Ok(PlainRead::Data { n, more }) => {
                    conn.in_len += n;
                    let now_ns = self.now_ns();
                    if !self.process_replies(conn_idx, now_ns) {
                        return;
                    }
                    self.pump(conn_idx, now_ns);
                    self.flush(conn_idx, now_ns);
                    // A short read drained the socket, and edge-triggered epoll will report new
                    // data; but an end of stream that arrived with the data gets no new edge.
                    if !more && !closing && self.conns[conn_idx].phase != Phase::Quitting {
                        return;
                    }
                }
                Ok(PlainRead::WouldBlock) => return,
                Err(kind) => {
                    let now_ns = self.now_ns();
                    return self.fail(conn_idx, &kind, now_ns);
                }
            }
        }
    }

    /// Handles every complete reply in the read buffer. Returns false if the connection ended.
    fn process_replies(&mut self, conn_idx: usize, now_ns: u64) -> bool {
        let mut pos = 0;
        loop {
            let conn = &mut self.conns[conn_idx];
            let expect = conn.expects.front().copied();
            let (code, len, error_key, caps) = match parse_reply(&conn.inbuf[pos..conn.in_len]) {
                Ok(Parsed::Incomplete) => break,
                Ok(Parsed::Complete { reply, len }) => {
                    let ok = reply.is_positive_completion()
                        || (reply.code == 354 && expect == Some(Expect::Data));
                    let caps = if expect == Some(Expect::Ehlo) {
                        capabilities(reply.raw)
                    } else {
                        Capabilities::default()
                    };
                    (reply.code, len, (!ok).then(|| reply.code_key()), caps)
                }
                Err(err) => {
                    self.fail(conn_idx, &format!("protocol: bad reply ({err:?})"), now_ns);
                    return false;
                }
            };
            pos += len;
            conn.progress_ns = now_ns;
            if expect == Some(Expect::StartTls) && error_key.is_none() && pos != conn.in_len {
                // Bytes after the 220 were sent in plaintext but would be read as if they
                // came through TLS (the CVE-2011-0411 class of injection): refuse them.
                self.fail(conn_idx, "protocol: data after the 220 to STARTTLS", now_ns);
                return false;
            }
            let Some(expect) = expect else {
                // An unsolicited reply is usually a 421 before the server closes.
                if let Some(key) = error_key {
                    self.stats.count_reply_error(key);
                }
                self.fail(conn_idx, "unexpected reply", now_ns);
                return false;
            };
            conn.expects.pop_front();
            if expect == Expect::Data {
                conn.n_data_outstanding -= 1;
            }
            if let Some(key) = &error_key {
                self.stats.count_reply_error(key.clone());
            }
            if !self.on_reply(conn_idx, expect, code, error_key.is_none(), caps, now_ns) {
                return false;
            }
        }
        if pos > 0 && self.config.think_ns > 0 {
            // The sender thinks (or its packets travel) before it answers these replies.
            let hold_until_ns = now_ns + self.think_draw_ns();
            self.conns[conn_idx].hold_until_ns = hold_until_ns;
            self.timers.push(Reverse((hold_until_ns, conn_idx)));
        }
        let conn = &mut self.conns[conn_idx];
        conn.inbuf.copy_within(pos..conn.in_len, 0);
        conn.in_len -= pos;
        true
    }

    /// Acts on one reply. Returns false if the connection ended.
    fn on_reply(
        &mut self,
        conn_idx: usize,
        expect: Expect,
        code: u16,
        ok: bool,
        caps: Capabilities,
        now_ns: u64,
    ) -> bool {
        match expect {
            Expect::Greeting => {
                if !ok {
                    self.fail(conn_idx, &format!("greeting {code}"), now_ns);
                    return false;
                }
                let conn = &mut self.conns[conn_idx];
                conn.out.extend_from_slice(b"EHLO ");
                conn.out.extend_from_slice(self.config.ehlo.as_bytes());
                conn.out.extend_from_slice(b"\r\n");
                conn.expects.push_back(Expect::Ehlo);
            }
            Expect::Ehlo => {
                if !ok {
                    self.abort_run(conn_idx, format!("the server rejected EHLO with {code}"));
                    return false;
                }
                if let Some(tls) = self.conns[conn_idx].tls.as_deref()
                    && !self.conns[conn_idx].tls_recorded
                {
                    // Any reply through TLS means the handshake is over.
                    let resumed = tls::resumed(tls);
                    match self.stats.tls.as_mut() {
                        Some(info) => {
                            info.handshakes += 1;
                            info.resumed += u64::from(resumed);
                        }
                        None => self.stats.tls = Some(tls::info(tls)),
                    }
                    self.conns[conn_idx].tls_recorded = true;
                }
                let wants_starttls = self
                    .config
                    .tls
                    .as_ref()
                    .is_some_and(|settings| settings.mode == TlsMode::StartTls)
                    && self.conns[conn_idx].tls.is_none();
                if wants_starttls {
                    if !caps.starttls {
                        self.abort_run(
                            conn_idx,
                            "--starttls: STARTTLS is not supported by the target".to_owned(),
                        );
                        return false;
                    }
                    let conn = &mut self.conns[conn_idx];
                    conn.out.extend_from_slice(b"STARTTLS\r\n");
                    conn.expects.push_back(Expect::StartTls);
                    return true;
                }
                // Extensions count as offered only in the EHLO reply that mail follows
                // (after STARTTLS, the server may offer a different set).
                let missing = [
                    (
                        self.config.pipelining,
                        caps.pipelining,
                        "--pipelining: the target does not advertise PIPELINING",
                    ),
                    (
                        self.config.bdat,
                        caps.chunking,
                        "--bdat: the target does not advertise CHUNKING",
                    ),
                ];
                if let Some((_, _, message)) = missing
                    .iter()
                    .find(|(wanted, offered, _)| *wanted && !*offered)
                {
                    let message = (*message).to_owned();
                    self.abort_run(conn_idx, message);
                    return false;
                }
                let conn = &mut self.conns[conn_idx];
                conn.phase = Phase::Ready;
                conn.n_started_on_conn = 0;
            }
            Expect::StartTls => {
                if !ok {
                    self.abort_run(
                        conn_idx,
                        format!("--starttls: the server refused STARTTLS with {code}"),
                    );
                    return false;
                }
                let Some(settings) = self.config.tls.as_ref() else {
                    return true;
                };
                let conn = &mut self.conns[conn_idx];
                if let Err(message) = start_tls(conn, settings) {
                    self.abort_run(conn_idx, message);
                    return false;
                }
                // RFC 3207: the client forgets what it learnt and says EHLO again. rustls
                // holds the EHLO until the handshake is over.
                conn.out.extend_from_slice(b"EHLO ");
                conn.out.extend_from_slice(self.config.ehlo.as_bytes());
                conn.out.extend_from_slice(b"\r\n");
                conn.expects.push_back(Expect::Ehlo);
            }
            Expect::Rset => {}
            Expect::Quit => {
                // Wait for the server to close first, so TIME_WAIT lands on its side and a
                // connection-per-message run does not run out of local ports.
                self.conns[conn_idx].quit_acked = true;
            }
            Expect::Mail | Expect::Rcpt(_) | Expect::Data | Expect::DataEnd | Expect::Bdat => {
                self.on_txn_reply(conn_idx, expect, ok, now_ns);
            }
        }
        true
    }

    fn on_txn_reply(&mut self, conn_idx: usize, expect: Expect, ok: bool, now_ns: u64) {
        let conn = &mut self.conns[conn_idx];
        let n_txns = conn.txns.len();
        let Some(txn) = conn.txns.front_mut() else {
            debug_assert!(false, "transaction reply with no transaction");
            return;
        };
        debug_assert!(txn.n_outstanding > 0);
        txn.n_outstanding -= 1;
        match (expect, ok) {
            (Expect::Mail, true) => txn.mail_ok = true,
            (Expect::Rcpt(rcpt_idx), true) => txn.rcpt_mask |= 1u64 << rcpt_idx,
            (Expect::Rcpt(_), false) => {}
            (Expect::Data, true) => txn.got_354 = true,
            (_, true) => {}
            (_, false) => txn.failed = true,
        }
        let final_reply = matches!(expect, Expect::DataEnd | Expect::Bdat);
        if txn.failed && !final_reply && n_txns == 1 && conn.emitting.is_some() {
            // Stop writing a transaction the server already refused; the server still
            // holds its envelope if MAIL was accepted, hence the RSET.
            conn.emitting = None;
        }
        if txn.n_outstanding == 0
            && (txn.terminal_sent || txn.failed)
            && (final_reply || conn.emitting.is_none() || n_txns > 1)
        {
            let txn = *txn;
            conn.txns.pop_front();
            if !final_reply && txn.mail_ok {
                conn.need_rset = true;
            }
            self.finish_txn(conn_idx, txn, ok && final_reply, now_ns);
        }
    }

    fn finish_txn(&mut self, conn_idx: usize, txn: Txn, accepted: bool, now_ns: u64) {
        let conn = &mut self.conns[conn_idx];
        let first_on_conn = !conn.first_txn_done;
        conn.first_txn_done = true;
        if accepted && first_on_conn && conn.connect_start_ns >= self.warmup_ns {
            let connect_start_ns = conn.connect_start_ns;
            self.stats
                .record_connect_latency_ns(now_ns.saturating_sub(connect_start_ns));
        }
        if !accepted {
            self.stats.n_rejected += 1;
            return;
        }
        self.stats.n_accepted += 1;
        if txn.start_ns >= self.warmup_ns {
            self.stats
                .record_latency_ns(now_ns.saturating_sub(txn.start_ns));
            if now_ns <= self.stop_ns {
                self.stats.n_accepted_measured += 1;
                self.stats.bytes_accepted_measured += txn.stored_bytes as u64;
            }
        }
        self.last_completion_ns = self.last_completion_ns.max(now_ns);
        if self.config.keep_accepted {
            self.stats.accepted.push((txn.seq, txn.rcpt_mask));
        }
    }

    /// Whether a command may be written now (pipelining rules).
    fn may_write(&self, conn_idx: usize) -> bool {
        let conn = &self.conns[conn_idx];
        if conn.expects.is_empty() {
            return true;
        }
        self.config.pipelining && conn.n_data_outstanding == 0
    }

    /// Writes as many commands as the protocol allows into the output buffer.
    fn pump(&mut self, conn_idx: usize, now_ns: u64) {
        if self.conns[conn_idx].phase != Phase::Ready {
            return;
        }
        loop {
            if !self.may_write(conn_idx) {
                return;
            }
            if let Some(step) = self.conns[conn_idx].emitting {
                if !self.emit_step(conn_idx, step, now_ns) {
                    return;
                }
                continue;
            }
            if self.conns[conn_idx].need_rset {
                let conn = &mut self.conns[conn_idx];
                conn.need_rset = false;
                conn.out.extend_from_slice(b"RSET\r\n");
                self.push_expect(conn_idx, Expect::Rset, now_ns);
                continue;
            }
            if self.start_txn(conn_idx, now_ns) {
                continue;
            }
            let conn = &self.conns[conn_idx];
            let quota_reached = self.config.messages_per_connection > 0
                && conn.n_started_on_conn >= self.config.messages_per_connection;
            if conn.txns.is_empty()
                && conn.expects.is_empty()
                && (quota_reached || !self.has_work(conn_idx))
            {
                let conn = &mut self.conns[conn_idx];
                conn.out.extend_from_slice(b"QUIT\r\n");
                conn.phase = Phase::Quitting;
                conn.quit_acked = false;
                self.push_expect(conn_idx, Expect::Quit, now_ns);
            }
            return;
        }
    }

    /// Starts a transaction if one is due and allowed. Returns whether it did.
    fn start_txn(&mut self, conn_idx: usize, now_ns: u64) -> bool {
        let conn = &self.conns[conn_idx];
        if conn.txns.len() >= self.in_flight_max {
            return false;
        }
        if self.config.messages_per_connection > 0
            && conn.n_started_on_conn >= self.config.messages_per_connection
        {
            return false;
        }
        let (seq, start_ns) = if self.config.rate_per_sec.is_some() {
            let next = self.conns[conn_idx].queue.pop_front().or_else(|| {
                if self.config.connect_per_arrival {
                    self.pending.pop_front()
                } else {
                    None
                }
            });
            match next {
                Some((intended_ns, seq)) => (seq, intended_ns),
                None => return false,
            }
        } else {
            if self.claims_over {
                return false;
            }
            match self.shared.claim(self.config.messages_total) {
                Some(seq) => (seq, now_ns),
                None => {
                    self.claims_over = true;
                    return false;
                }
            }
        };
        let template_idx = if self.workload.in_turn {
            // Lossless: the remainder is below `templates.len()`, a usize.
            (seq % self.workload.templates.len() as u64) as usize
        } else {
            self.picker.pick()
        };
        self.stats.n_started += 1;
        let conn = &mut self.conns[conn_idx];
        conn.n_started_on_conn += 1;
        conn.txns.push_back(Txn {
            seq,
            template_idx,
            start_ns,
            rcpt_mask: 0,
            mail_ok: false,
            got_354: false,
            failed: false,
            n_outstanding: 0,
            terminal_sent: false,
            stored_bytes: 0,
        });
        conn.emitting = Some(Step::Mail);
        true
    }

    /// Writes one step of the newest transaction. Returns false if it must wait.
    fn emit_step(&mut self, conn_idx: usize, step: Step, now_ns: u64) -> bool {
        let workload: &'a Workload = self.workload;
        let spec = &workload.spec;
        let n_recipients = spec.recipients as u32;
        let conn = &mut self.conns[conn_idx];
        let Some(&txn) = conn.txns.back() else {
            conn.emitting = None;
            return true;
        };
        let template = &workload.templates[txn.template_idx];
        let (expect, next) = match step {
            Step::Mail => {
                conn.out.extend_from_slice(&self.mail_line);
                (Some(Expect::Mail), Some(Step::Rcpt(0)))
            }
            Step::Rcpt(rcpt_idx) => {
                conn.out.extend_from_slice(b"RCPT TO:<");
                spec.write_address(&mut conn.out, spec.inbox_of(txn.seq, u64::from(rcpt_idx)));
                conn.out.extend_from_slice(b">\r\n");
                let next = if rcpt_idx + 1 < n_recipients {
                    Step::Rcpt(rcpt_idx + 1)
                } else if self.config.bdat {
                    Step::Bdat
                } else {
                    Step::Data
                };
                (Some(Expect::Rcpt(rcpt_idx)), Some(next))
            }
            Step::Data | Step::Bdat if !self.config.pipelining && txn.rcpt_mask == 0 => {
                // Without pipelining we know every recipient was refused: do not send the body.
                conn.emitting = None;
                conn.txns.pop_back();
                conn.need_rset = txn.mail_ok;
                self.finish_txn(conn_idx, txn, false, now_ns);
                return true;
            }
            Step::Data => {
                conn.out.extend_from_slice(b"DATA\r\n");
                (Some(Expect::Data), Some(Step::Body))
            }
            Step::Body => {
                if !txn.got_354 {
                    return false;
                }
                let stored_bytes = spec.write_data_message(&mut conn.out, template, txn.seq);
                if let Some(txn) = conn.txns.back_mut() {
                    txn.stored_bytes = stored_bytes;
                    txn.terminal_sent = true;
                }
                (Some(Expect::DataEnd), None)
            }
            Step::Bdat => {
                let stored_bytes =
                    spec.write_bdat_message(&mut conn.out, &mut conn.scratch, template, txn.seq);
                if let Some(txn) = conn.txns.back_mut() {
                    txn.stored_bytes = stored_bytes;
                    txn.terminal_sent = true;
                }
                (Some(Expect::Bdat), None)
            }
        };
        conn.emitting = next;
        if let Some(expect) = expect {
            if let Some(txn) = conn.txns.back_mut() {
                txn.n_outstanding += 1;
            }
            self.push_expect(conn_idx, expect, now_ns);
        }
        true
    }

    fn push_expect(&mut self, conn_idx: usize, expect: Expect, now_ns: u64) {
        let conn = &mut self.conns[conn_idx];
        if conn.expects.is_empty() {
            conn.progress_ns = now_ns;
        }
        if expect == Expect::Data {
            conn.n_data_outstanding += 1;
        }
        conn.expects.push_back(expect);
    }

    /// Writes the output buffer until done or the socket is full (through TLS if it is on).
    fn flush(&mut self, conn_idx: usize, now_ns: u64) {
        let conn = &mut self.conns[conn_idx];
        if conn.hold_until_ns > now_ns {
            // Thinking: the timer flushes when the hold ends.
            return;
        }
        let Some(stream) = conn.stream.as_mut() else {
            return;
        };
        let mut failure = None;
        if let Some(tls) = conn.tls.as_mut() {
            // Called with nothing to write too: the TLS layer may still hold records.
            match tls::write_plain(tls, stream, &conn.out[conn.out_pos..]) {
                Ok(n_taken) => conn.out_pos += n_taken,
                Err(kind) => failure = Some(kind),
            }
            if failure.is_none() && conn.out_pos < conn.out.len() {
                return;
            }
        } else {
            while conn.out_pos < conn.out.len() {
                match stream.write(&conn.out[conn.out_pos..]) {
                    Ok(0) => {
                        failure = Some("write: connection closed".to_owned());
                        break;
                    }
                    Ok(n_written) => conn.out_pos += n_written,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => {
                        failure = Some(format!("write: {}", err.kind()));
                        break;
                    }
                }
            }
        }
        if let Some(kind) = failure {
            return self.fail(conn_idx, &kind, now_ns);
        }
        conn.out.clear();
        conn.out_pos = 0;
    }

    /// Stops the whole run because of something this connection learnt.
    fn abort_run(&mut self, conn_idx: usize, reason: String) {
        self.close(conn_idx);
        self.conns[conn_idx].phase = Phase::Done;
        self.shared.abort(reason);
    }

    /// Ends a connection on an error: counts it, and lets the slot reconnect later.
    fn fail(&mut self, conn_idx: usize, kind: &str, now_ns: u64) {
        self.stats.count_connection_error(kind);
        self.close(conn_idx);
        let n_errors = self
            .shared
            .n_connection_errors
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        if n_errors > self.config.connection_errors_max {
            self.shared.abort(format!(
                "{n_errors} connection errors (more than --max-connection-errors {}); last: {kind}",
                self.config.connection_errors_max
            ));
        }
        self.after_close(conn_idx, now_ns, true);
    }

    /// Closes the socket and forgets everything in flight (counted as unfinished).
    fn close(&mut self, conn_idx: usize) {
        let conn = &mut self.conns[conn_idx];
        if let Some(mut stream) = conn.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
        }
        conn.tls = None;
        self.stats.n_unfinished += conn.txns.len() as u64;
        conn.txns.clear();
        conn.expects.clear();
        conn.n_data_outstanding = 0;
        conn.emitting = None;
        conn.need_rset = false;
        conn.in_len = 0;
        conn.out.clear();
        conn.out_pos = 0;
        conn.quit_acked = false;
        conn.hold_until_ns = 0;
        if conn.phase != Phase::Done {
            conn.phase = Phase::Idle;
        }
    }

    fn after_close(&mut self, conn_idx: usize, now_ns: u64, failed: bool) {
        let delay_ns = if failed {
            RECONNECT_DELAY.as_nanos() as u64
        } else {
            0
        };
        if self.conns[conn_idx].phase == Phase::Done {
            return;
        }
        if self.config.connect_per_arrival && self.conns[conn_idx].queue.is_empty() {
            // This sender is done; the slot waits for the next arrival.
            let conn = &mut self.conns[conn_idx];
            if self.arrivals_over && self.pending.is_empty() {
                conn.phase = Phase::Done;
            } else {
                conn.phase = Phase::Idle;
                conn.reconnect_at_ns = u64::MAX;
                self.parked.push(conn_idx);
                self.dispatch_arrivals(now_ns);
            }
            return;
        }
        let has_work = self.has_work(conn_idx);
        let think_ns = if failed { 0 } else { self.think_draw_ns() };
        let conn = &mut self.conns[conn_idx];
        if has_work {
            conn.phase = Phase::Idle;
            conn.reconnect_at_ns = now_ns + delay_ns + think_ns;
            if think_ns > 0 {
                self.timers.push(Reverse((conn.reconnect_at_ns, conn_idx)));
            } else if !failed {
                self.connect(conn_idx, now_ns);
            }
        } else {
            conn.phase = Phase::Done;
        }
    }
}

/// One plaintext read from the socket, in the shape of [`tls::read_plain`]'s result.
fn read_plain_tcp(
    stream: &mut TcpStream,
    buf: &mut [u8],
    closing: bool,
) -> Result<PlainRead, String> {
    loop {
        return match stream.read(buf) {
            Ok(0) => Ok(PlainRead::Eof),
            Ok(n) => Ok(PlainRead::Data {
                n,
                more: n == buf.len() || closing,
            }),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(PlainRead::WouldBlock),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => Err(format!("read: {}", err.kind())),
        };
    }
}
