//! Who really sent a message: SPF, DKIM, DMARC, ARC and iprev results, and DNS blocklists.
//!
//! Every check needs DNS, and DNS answers take milliseconds to seconds. An executor must
//! never wait for them, so all of it runs on ONE resolver thread of its own (a std thread
//! with a current-thread tokio runtime, because mail-auth's resolver is hickory's tokio
//! resolver and panics without a reactor). Executors hand it work through a bounded
//! crossbeam channel and await the answer on a `futures_channel::oneshot`, which the
//! resolver thread completes from its side (glommio wakes the waiting task through the
//! executor's notifier, as for mesh replies in `runtime/shard.rs`).
//!
//! The shape, from an SMTP session's point of view:
//! - at the end of DATA, `Verifier::verify` with the envelope and the message as the
//!   `Arc<[u8]>` already shared with the shards: no copy, no parse on the executor;
//! - meanwhile the session keeps serving; the receiver resolves within the deadline
//!   (what did not finish by then is `temperror`);
//! - `header::authentication_results` renders the answer as the header to prepend, and
//!   `header::strip_forged` removes incoming headers that claim to be ours;
//! - `AuthResults` is `Serialize`, for the message JSON.
//!
//! Limits, each a named constant below: the queue (`QUEUE_MAX`; a full queue is answered
//! at once with `temperror`, never waited on), the requests worked on at once
//! (`IN_FLIGHT_MAX`), the DKIM signatures checked per message, the DNSBL zones per query,
//! and the entries of every cache.

pub mod header;

mod admission;
mod cache;
mod checks;
mod inline;
mod resolver;
mod results;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;
use futures_channel::oneshot;

pub use inline::{INLINE_MESSAGE_BYTES_MAX, INLINE_SIGNATURES_MAX, LocalVerifier, Route};
pub use results::{
    ArcCheck, AuthResults, DkimCheck, DmarcCheck, DmarcPolicy, DnsblResult, DnsblVerdict,
    DnsblZone, IprevCheck, NAME_BYTES_MAX, SpfCheck, SpfIdentity, Verdict,
};

/// Requests that may wait in the channel to the resolver thread. Beyond it, `verify` and
/// `dnsbl` answer at once with `temperror` (counted in `VerifierStats::n_queue_full`): a
/// backlog longer than this would only make every answer late. A DKIM signature costs
/// the thread 28 µs (RSA-2048) to 48 µs (Ed25519) with a warm cache (`benches/auth.rs`),
/// so 1,024 signed messages are some 30 to 50 ms of its work.
pub const QUEUE_MAX: usize = 1_024;
/// How long a sender domain whose checks ran into their deadline is answered `temperror`
/// without a lookup (see `VerifierStats::n_stalled_skipped`): long enough that a domain
/// whose DNS never answers holds at most a few places in flight, short enough that a
/// brief outage costs little. Such an answer is given at the request's deadline, as a
/// lookup that never returns would have been, but from a timer, holding no place in
/// flight: answered at once instead, the domain's senders would get a reply per message
/// in microseconds, and a few hundred of their sessions would take the executor's time
/// from everyone else's mail.
pub const STALLED_DOMAIN_TTL: Duration = Duration::from_secs(30);
/// Answers of stalled sender domains held until their deadline at once; beyond it they
/// are given at once.
pub const STALLED_HELD_MAX: usize = QUEUE_MAX;
/// Stalled sender domains remembered at once.
pub const STALLED_DOMAINS_MAX: usize = 4_096;
/// Requests the resolver thread works on at once. Each has up to four lookups in flight
/// (SPF, DKIM, ARC, iprev run side by side), and hickory opens a UDP socket per query, so
/// this also bounds the thread's sockets (to about 512). While it is reached, requests
/// wait in the queue.
pub const IN_FLIGHT_MAX: usize = 128;
/// Requests of one client address in flight at once: a quarter of `IN_FLIGHT_MAX`, so a
/// client whose checks all hang (its DNS, or the domains it sends from, never answer)
/// leaves three quarters of the places to everyone else. Its further requests wait in a
/// line of their own (`CLIENT_WAITING_MAX`) while others' go ahead. A busy honest client
/// loses nothing: its warm checks take microseconds each, so its share turns over fast.
pub const IN_FLIGHT_PER_CLIENT_MAX: usize = IN_FLIGHT_MAX / 4;
/// Requests of one client set aside while it has `IN_FLIGHT_PER_CLIENT_MAX` in flight;
/// beyond it they are answered `temperror` at once (`VerifierStats::n_client_refused`).
pub const CLIENT_WAITING_MAX: usize = 256;
/// Requests set aside for all clients together.
pub const WAITING_MAX: usize = QUEUE_MAX;
/// DKIM signatures checked per message (RFC 6376 6.1 lets a verifier limit them); the
/// rest are not looked at. Each costs a DNS lookup and a signature verification, so a
/// message with hundreds of signatures cannot buy hundreds of each.
pub const DKIM_SIGNATURES_MAX: usize = 8;
/// DNSBL zones asked about one client at once (`Verifier::dnsbl` panics beyond it; the
/// configuration must refuse more).
pub const DNSBL_ZONES_MAX: usize = 16;
/// Parsed TXT records kept (SPF policies, DKIM keys, DMARC records), each until its TTL
/// ends: a hit skips both the lookup and the parse. The resolver thread has caches of these
/// sizes, and so does each executor's `LocalVerifier` (its copy of what the thread's checks
/// used).
pub const TXT_CACHE_ENTRIES_MAX: usize = 4_096;
/// A, AAAA, MX and PTR answers kept, each kind in its own cache of this size (on the thread
/// and in each executor's copy).
pub const ADDRESS_CACHE_ENTRIES_MAX: usize = 4_096;
/// Answers kept by hickory's own cache, which also remembers negative answers (NXDOMAIN,
/// no data) for their SOA TTL; mail-auth's caches only hold positive ones.
pub const RESOLVER_CACHE_ENTRIES_MAX: u64 = 8_192;
/// No answer is trusted for longer than this, whatever its TTL says.
pub const CACHE_TTL_MAX: Duration = Duration::from_secs(3_600);
/// No negative answer is trusted for longer than this, so a record just published is seen
/// soon (a test sender fixing its SPF record should not wait an hour).
pub const NEGATIVE_CACHE_TTL_MAX: Duration = Duration::from_secs(300);

/// Which name server the resolver thread asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsResolver {
    /// The system's, from `/etc/resolv.conf`.
    System,
    /// One recursive (or, in tests, authoritative) server over UDP and TCP
    /// (`--dns-resolver ADDR`).
    At(SocketAddr),
}

/// What `Verifier::start` needs.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    pub resolver: DnsResolver,
    /// How long a request may take from `verify` (or `dnsbl`) to its answer, queueing
    /// included; whatever has not finished by then is `temperror` (`--auth-timeout`).
    pub deadline: Duration,
}

/// Why the resolver thread could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the system's DNS configuration: {0}")]
    SystemConf(String),
    #[error("cannot start the DNS resolver: {0}")]
    Resolver(String),
    #[error("cannot start the auth resolver thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// One message to check, as the SMTP session has it at the end of DATA.
#[derive(Debug, Clone)]
pub struct VerifyRequest {
    /// The connecting client's address: used for SPF and iprev, then dropped with the
    /// request; it reaches `AuthResults` only with `include_client_ip`.
    pub client_ip: IpAddr,
    /// The EHLO/HELO name as the client sent it.
    pub helo: String,
    /// The MAIL FROM address without angle brackets; empty for the null sender `<>`, in
    /// which case SPF checks the HELO identity instead (RFC 7208 2.3).
    pub mail_from: String,
    /// Our authserv-id (`--hostname`): SPF's `%{r}` macro.
    pub authserv_id: Arc<str>,
    /// The message as received, shared, never copied: it is parsed on the resolver thread.
    pub message: Arc<[u8]>,
    /// Put `client_ip` into the results (`--log-client-ip`).
    pub include_client_ip: bool,
}

/// Counts since start, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifierStats {
    /// Messages answered by the resolver thread (partly `temperror` ones included).
    pub n_verified: u64,
    /// DNSBL queries answered by the resolver thread.
    pub n_dnsbl: u64,
    /// Requests answered at once with `temperror` because the queue was full.
    pub n_queue_full: u64,
    /// Requests whose deadline passed before every check finished.
    pub n_deadline_expired: u64,
    /// Requests answered with `temperror` because the resolver thread is gone.
    pub n_unavailable: u64,
    /// Messages answered `temperror` without a lookup (at their deadline, from a timer)
    /// because their sender domain's checks ran into the deadline within the last
    /// `STALLED_DOMAIN_TTL`.
    pub n_stalled_skipped: u64,
    /// Requests answered `temperror` at once because their client already had
    /// `IN_FLIGHT_PER_CLIENT_MAX` in flight and `CLIENT_WAITING_MAX` set aside (or all
    /// clients `WAITING_MAX`).
    pub n_client_refused: u64,
    /// Times a request woke the sleeping resolver thread: at most one per sleep, so under
    /// load far fewer than requests.
    pub n_wakeups: u64,
}

/// A cheap handle to the resolver thread; clone it into every executor.
///
/// The thread ends when the last clone is dropped, after answering what it holds.
#[derive(Clone)]
pub struct Verifier {
    shared: Arc<Shared>,
}

impl Verifier {
    /// Starts the resolver thread and waits (briefly, at start-up, never on an executor)
    /// until its resolver is built.
    ///
    /// # Errors
    /// The system's resolver configuration cannot be read, or the thread or its runtime
    /// cannot be started.
    pub fn start(config: VerifierConfig) -> Result<Verifier, Error> {
        let (jobs, jobs_rx) = crossbeam_channel::bounded(QUEUE_MAX);
        let doorbell = Arc::new(Doorbell::default());
        let counters = Arc::new(Counters::default());
        let runtime = resolver::spawn(
            &config,
            jobs_rx,
            Arc::clone(&doorbell),
            Arc::clone(&counters),
        )?;
        Ok(Verifier {
            shared: Arc::new(Shared {
                jobs,
                doorbell,
                counters,
                deadline: config.deadline,
                runtime,
            }),
        })
    }

    /// Checks one message. The receiver resolves within the deadline (plus scheduling);
    /// at once, with `temperror` everywhere, when the queue is full or the thread is gone.
    /// Every request is answered exactly once, also when a check panics (the results then
    /// say `temperror` for what did not finish). The receiver reports `Canceled` only if
    /// the resolver thread itself died with requests still queued: treat it as
    /// `AuthResults::temperror`.
    pub fn verify(&self, request: VerifyRequest) -> oneshot::Receiver<AuthResults> {
        self.verify_learning(request, None)
    }

    /// `verify`, and the cache entries the check used go to `learn` afterwards.
    fn verify_learning(
        &self,
        request: VerifyRequest,
        learn: Option<crossbeam_channel::Sender<Vec<cache::Learned>>>,
    ) -> oneshot::Receiver<AuthResults> {
        let (reply, answer) = oneshot::channel();
        let due = Instant::now() + self.shared.deadline;
        let job = resolver::Job::Verify {
            request,
            due,
            reply,
            learn,
        };
        self.submit(job);
        answer
    }

    /// Looks `client_ip` up in every DNSBL zone (RFC 5782): listed where an A record in
    /// 127.0.0.0/24 answers. Same queue, deadline and caches as `verify`.
    ///
    /// # Panics
    /// More than `DNSBL_ZONES_MAX` zones (the configuration must refuse them).
    pub fn dnsbl(
        &self,
        client_ip: IpAddr,
        zones: Arc<[Box<str>]>,
    ) -> oneshot::Receiver<DnsblResult> {
        assert!(
            zones.len() <= DNSBL_ZONES_MAX,
            "at most {DNSBL_ZONES_MAX} DNSBL zones"
        );
        let (reply, answer) = oneshot::channel();
        let due = Instant::now() + self.shared.deadline;
        let job = resolver::Job::Dnsbl {
            client_ip,
            zones,
            due,
            reply,
        };
        self.submit(job);
        answer
    }

    /// Counts since start.
    pub fn stats(&self) -> VerifierStats {
        VerifierStats {
            n_wakeups: self.shared.doorbell.n_rings.load(Ordering::Relaxed),
            ..self.shared.counters.snapshot()
        }
    }

    /// The per-request deadline this verifier was started with.
    pub fn deadline(&self) -> Duration {
        self.shared.deadline
    }

    /// Queues `job` and rings the thread; answers it at once with `temperror` when it
    /// cannot be queued. Costs one lock-free push and, when the thread sleeps, one
    /// wake-up: never a wait.
    fn submit(&self, job: resolver::Job) {
        match self.shared.jobs.try_send(job) {
            Ok(()) => {
                self.shared.doorbell.ring();
            }
            Err(TrySendError::Full(job)) => {
                self.shared
                    .counters
                    .n_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                job.answer_temperror();
            }
            Err(TrySendError::Disconnected(job)) => {
                self.shared
                    .counters
                    .n_unavailable
                    .fetch_add(1, Ordering::Relaxed);
                job.answer_temperror();
            }
        }
    }
}

/// What every clone of a `Verifier` shares.
struct Shared {
    jobs: crossbeam_channel::Sender<resolver::Job>,
    doorbell: Arc<Doorbell>,
    counters: Arc<Counters>,
    deadline: Duration,
    /// The resolver thread's runtime, entered by an executor checking a message itself
    /// (`inline.rs`), so that a lookup mail-auth starts on a miss finds a reactor.
    runtime: tokio::runtime::Handle,
}

impl Drop for Shared {
    /// The last handle is gone: tell the thread to finish what it holds and stop. (The
    /// channel's own disconnection comes only after this runs, when `jobs` is dropped, too
    /// late to wake a thread that already found the channel empty.)
    fn drop(&mut self) {
        self.doorbell.closed.store(true, Ordering::SeqCst);
        self.doorbell.ring();
    }
}

/// Wakes the resolver thread when work arrives, at most once per time it goes to sleep.
///
/// crossbeam's `recv` would block the thread's tokio runtime, and with it every lookup in
/// flight; so the thread polls the channel with `try_recv` and, when it is empty, sleeps
/// on this `Notify`. Waking it is a syscall on the executor (tokio's unpark writes an
/// eventfd) and a context switch on the core, so a push rings only when the thread has
/// said it is going to sleep (`sleeping`): the pushes of a burst, up to the moment the
/// thread runs again, cost one wake-up between them, not one each.
///
/// No push is left unseen (a Dekker handshake over two `SeqCst` fences): the thread sets
/// `sleeping` and then looks at the queue once more, a pusher pushes and then looks at
/// `sleeping`; at least one of them sees the other's write. When both do, the ring leaves
/// a permit in the `Notify` and the thread's next sleep returns at once: one spare turn.
#[derive(Default)]
struct Doorbell {
    notify: tokio::sync::Notify,
    /// Set by the thread as it runs out of work, cleared by whoever wakes it.
    sleeping: AtomicBool,
    /// Set when the last `Verifier` is dropped.
    closed: AtomicBool,
    /// Times a push (or the last `Verifier` going) actually woke the thread.
    n_rings: AtomicU64,
}

impl Doorbell {
    /// After a push (or after setting `closed`): wakes the thread if it may be asleep.
    /// Returns whether it rang.
    fn ring(&self) -> bool {
        // Orders the caller's push before the look at `sleeping` (see the type's doc).
        std::sync::atomic::fence(Ordering::SeqCst);
        if !self.sleeping.swap(false, Ordering::SeqCst) {
            return false;
        }
        self.n_rings.fetch_add(1, Ordering::Relaxed);
        self.notify.notify_one();
        true
    }

    /// The thread, having found the queue empty: whether it may sleep now. It announces
    /// the sleep first and then asks `has_work` once more, so a push that came in between
    /// is either seen here (no sleep) or rings the bell.
    fn may_sleep(&self, has_work: impl FnOnce() -> bool) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        if has_work() || self.is_closed() {
            self.sleeping.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// Written by the resolver thread (and by executors when the queue is full), read by
/// `stats`; relaxed atomics, touched once per request.
#[derive(Default)]
struct Counters {
    n_verified: AtomicU64,
    n_dnsbl: AtomicU64,
    n_queue_full: AtomicU64,
    n_deadline_expired: AtomicU64,
    n_unavailable: AtomicU64,
    n_stalled_skipped: AtomicU64,
    n_client_refused: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> VerifierStats {
        VerifierStats {
            n_verified: self.n_verified.load(Ordering::Relaxed),
            n_dnsbl: self.n_dnsbl.load(Ordering::Relaxed),
            n_queue_full: self.n_queue_full.load(Ordering::Relaxed),
            n_deadline_expired: self.n_deadline_expired.load(Ordering::Relaxed),
            n_unavailable: self.n_unavailable.load(Ordering::Relaxed),
            n_stalled_skipped: self.n_stalled_skipped.load(Ordering::Relaxed),
            n_client_refused: self.n_client_refused.load(Ordering::Relaxed),
            n_wakeups: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst of pushes while the thread sleeps wakes it once; after it has worked the
    /// queue off and gone to sleep again, the next push wakes it again.
    #[test]
    fn a_burst_of_requests_rings_the_doorbell_once() {
        let (jobs, jobs_rx) = crossbeam_channel::bounded::<u32>(64);
        let doorbell = Doorbell::default();
        // The thread finds the queue empty and goes to sleep.
        assert!(doorbell.may_sleep(|| !jobs_rx.is_empty()));
        let n_rung = (0..10)
            .filter(|&n| {
                jobs.try_send(n).expect("room");
                doorbell.ring()
            })
            .count();
        assert_eq!(n_rung, 1);
        assert_eq!(doorbell.n_rings.load(Ordering::Relaxed), 1);
        // Awake, it takes everything; a push meanwhile does not ring.
        assert_eq!(jobs_rx.try_recv(), Ok(0));
        jobs.try_send(10).expect("room");
        assert!(!doorbell.ring());
        assert_eq!(jobs_rx.try_iter().count(), 10);
        assert!(doorbell.may_sleep(|| !jobs_rx.is_empty()));
        jobs.try_send(11).expect("room");
        assert!(doorbell.ring());
        assert_eq!(doorbell.n_rings.load(Ordering::Relaxed), 2);
    }

    /// A push that lands between the thread's last look at the queue and its sleep is
    /// seen: `may_sleep` looks again after announcing the sleep.
    #[test]
    fn a_push_before_the_sleep_keeps_the_thread_awake() {
        let (jobs, jobs_rx) = crossbeam_channel::bounded::<u32>(4);
        let doorbell = Doorbell::default();
        assert_eq!(
            jobs_rx.try_recv(),
            Err(crossbeam_channel::TryRecvError::Empty)
        );
        jobs.try_send(1).expect("room");
        assert!(!doorbell.ring(), "the thread has not said it sleeps");
        assert!(!doorbell.may_sleep(|| !jobs_rx.is_empty()));
        assert_eq!(jobs_rx.try_recv(), Ok(1));
        // And once closed, it never goes to sleep again.
        doorbell.closed.store(true, Ordering::SeqCst);
        assert!(!doorbell.may_sleep(|| !jobs_rx.is_empty()));
    }

    /// Many pushes from several threads while the thread sleeps: exactly one ring, and
    /// every push is in the queue.
    #[test]
    fn concurrent_pushes_ring_once() {
        let (jobs, jobs_rx) = crossbeam_channel::bounded::<u32>(4_096);
        let doorbell = Arc::new(Doorbell::default());
        assert!(doorbell.may_sleep(|| !jobs_rx.is_empty()));
        let pushers: Vec<_> = (0..4)
            .map(|_| {
                let (jobs, doorbell) = (jobs.clone(), Arc::clone(&doorbell));
                std::thread::spawn(move || {
                    (0..500)
                        .filter(|&n| {
                            jobs.try_send(n).expect("room");
                            doorbell.ring()
                        })
                        .count()
                })
            })
            .collect();
        let n_rung: usize = pushers.into_iter().map(|p| p.join().expect("pusher")).sum();
        assert_eq!(n_rung, 1);
        assert_eq!(jobs_rx.try_iter().count(), 2_000);
    }

    /// Executors hold clones of one `Verifier`, and the integration hands it across threads.
    #[test]
    fn verifier_is_a_cheap_shared_handle() {
        fn shared_handle<T: Clone + Send + Sync + 'static>() {}
        shared_handle::<Verifier>();
        assert_eq!(
            std::mem::size_of::<Verifier>(),
            std::mem::size_of::<usize>()
        );
    }
}
