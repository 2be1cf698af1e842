//! The resolver thread: one std thread running a current-thread tokio runtime, where
//! mail-auth's checks and hickory's lookups run, fed by `Verifier` over a bounded
//! crossbeam channel.
//!
//! The thread takes a request off the channel only while fewer than `IN_FLIGHT_MAX` are
//! in flight, so a slow name server backs requests up into the bounded queue (and then
//! into immediate `temperror` answers), never into unbounded tasks or sockets. Each
//! request runs as its own local task under its deadline; the checks of one message run
//! side by side (SPF, DKIM, ARC and iprev, then DMARC, which needs SPF's and DKIM's
//! results), each writing its part of the answer when it finishes.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, TryRecvError};
use futures_channel::oneshot;
use futures_util::future::join_all;
use mail_auth::common::resolver::ToReverseName;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::hickory_resolver::system_conf::read_system_conf;
use mail_auth::{DnsError, MessageAuthenticator};

use crate::auth::admission::{Admission, Admitted};
use crate::auth::cache::{Caches, Learned, Track};
use crate::auth::checks::{Checker, check_message};
use crate::auth::results::{AuthResults, DnsblResult, DnsblVerdict};
use crate::auth::{
    CACHE_TTL_MAX, Counters, DnsResolver, Doorbell, Error, NEGATIVE_CACHE_TTL_MAX,
    RESOLVER_CACHE_ENTRIES_MAX, VerifierConfig, VerifyRequest,
};

/// The thread's name, as `top -H` and panics show it.
const THREAD_NAME: &str = "mayfly-auth";
/// How long one try of a DNS query may take, as a share of the request's deadline.
const TRY_SHARE_OF_DEADLINE: f64 = 0.4;
/// Tries after the first (hickory's `attempts`): with `TRY_SHARE_OF_DEADLINE` the third
/// try starts at 0.8 of the deadline and is cut by it, never the other way round.
const RETRIES_PER_LOOKUP: usize = 2;

/// A request on its way to the resolver thread.
pub(super) enum Job {
    Verify {
        request: VerifyRequest,
        /// When the answer is due; the deadline counts from `Verifier::verify`.
        due: Instant,
        reply: oneshot::Sender<AuthResults>,
        /// Where to send the cache entries the check used, for an executor that tried
        /// the message itself and missed.
        learn: Option<crossbeam_channel::Sender<Vec<Learned>>>,
    },
    Dnsbl {
        client_ip: IpAddr,
        zones: Arc<[Box<str>]>,
        due: Instant,
        reply: oneshot::Sender<DnsblResult>,
    },
}

impl Job {
    /// The client the request is about, the key of its share of the places in flight.
    fn client(&self) -> IpAddr {
        match self {
            Job::Verify { request, .. } => request.client_ip.to_canonical(),
            Job::Dnsbl { client_ip, .. } => client_ip.to_canonical(),
        }
    }

    /// Answers at once, with `temperror` for everything.
    pub(super) fn answer_temperror(self) {
        match self {
            Job::Verify { request, reply, .. } => {
                let _ = reply.send(AuthResults::temperror(&request));
            }
            Job::Dnsbl { zones, reply, .. } => {
                let _ = reply.send(DnsblResult::temperror(&zones));
            }
        }
    }
}

/// Starts the thread and waits until its resolver is built (or failed to build).
pub(super) fn spawn(
    config: &VerifierConfig,
    jobs: Receiver<Job>,
    doorbell: Arc<Doorbell>,
    counters: Arc<Counters>,
) -> Result<tokio::runtime::Handle, Error> {
    let (resolver_config, resolver_opts) = resolver_settings(config)?;
    let (started, outcome) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name(THREAD_NAME.to_string())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = started.send(Err(Error::Thread(err)));
                    return;
                }
            };
            // Built inside the runtime: hickory may want its reactor as it starts.
            let authenticator = {
                let _entered = runtime.enter();
                MessageAuthenticator::new(resolver_config, resolver_opts)
            };
            let authenticator = match authenticator {
                Ok(authenticator) => authenticator,
                Err(err) => {
                    let _ = started.send(Err(Error::Resolver(err.to_string())));
                    return;
                }
            };
            let _ = started.send(Ok(runtime.handle().clone()));
            let ctx = Rc::new(Ctx {
                authenticator,
                caches: Caches::new(),
                counters,
                stalled: std::cell::RefCell::new(std::collections::HashMap::new()),
            });
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, serve(ctx, jobs, doorbell));
        })?;
    outcome
        .recv()
        .map_err(|_| Error::Resolver("the resolver thread ended as it started".to_string()))?
}

/// hickory's settings: the name servers, and options that keep every lookup inside the
/// deadline and every cache bounded.
fn resolver_settings(config: &VerifierConfig) -> Result<(ResolverConfig, ResolverOpts), Error> {
    let (resolver_config, mut opts) = match config.resolver {
        DnsResolver::System => {
            read_system_conf().map_err(|err| Error::SystemConf(err.to_string()))?
        }
        DnsResolver::At(addr) => (explicit_server(addr), ResolverOpts::default()),
    };
    // A lost UDP datagram should cost a retry, not the whole deadline: each try gets a
    // share of it (`TRY_SHARE_OF_DEADLINE`), and the tries go on until the deadline cuts
    // them. The last one always runs into the deadline, so a name server that never
    // answers still shows as a check that ran out of time (and its sender domain is
    // remembered as stalled).
    opts.timeout = config.deadline.mul_f64(TRY_SHARE_OF_DEADLINE);
    opts.attempts = RETRIES_PER_LOOKUP;
    opts.cache_size = RESOLVER_CACHE_ENTRIES_MAX;
    opts.positive_max_ttl = Some(CACHE_TTL_MAX);
    opts.negative_max_ttl = Some(NEGATIVE_CACHE_TTL_MAX);
    Ok((resolver_config, opts))
}

/// One name server at `addr`, over UDP, with TCP for truncated answers (RSA-2048 DKIM
/// keys and long SPF records do not always fit a UDP answer).
fn explicit_server(addr: SocketAddr) -> ResolverConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    let server = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
    ResolverConfig::from_parts(None, Vec::new(), vec![server])
}

/// What every task on the thread shares.
struct Ctx {
    authenticator: MessageAuthenticator,
    caches: Caches,
    counters: Arc<Counters>,
    /// Sender domains whose last check ran into its deadline, and until when their
    /// messages are answered `temperror` at once instead of tying up a place in flight
    /// for a whole deadline each: a domain whose name servers never answer would
    /// otherwise fill all `IN_FLIGHT_MAX` places and starve every other sender.
    stalled: std::cell::RefCell<std::collections::HashMap<String, Instant>>,
}

impl Ctx {
    /// Whether `domain`'s checks are known to stall now.
    fn is_stalled(&self, domain: &str, now: Instant) -> bool {
        let mut stalled = self.stalled.borrow_mut();
        match stalled.get(domain) {
            Some(&until) if now < until => true,
            Some(_) => {
                stalled.remove(domain);
                false
            }
            None => false,
        }
    }

    /// Remembers that `domain`'s check ran out of time. At `STALLED_DOMAINS_MAX` the
    /// expired entries go first, then (under a flood of distinct dead domains) all.
    fn note_stalled(&self, domain: &str, now: Instant) {
        let mut stalled = self.stalled.borrow_mut();
        if stalled.len() >= crate::auth::STALLED_DOMAINS_MAX {
            stalled.retain(|_, until| now < *until);
            if stalled.len() >= crate::auth::STALLED_DOMAINS_MAX {
                stalled.clear();
            }
        }
        stalled.insert(domain.to_string(), now + crate::auth::STALLED_DOMAIN_TTL);
    }
}

/// The domain a message's checks are remembered by: the MAIL FROM domain, or the HELO
/// name for the null sender (what SPF checks first, and what a spammer's broken DNS is
/// usually about).
fn sender_domain(request: &VerifyRequest) -> String {
    let domain = match request.mail_from.rsplit_once('@') {
        Some((_, domain)) => domain,
        None => &request.helo,
    };
    domain.to_ascii_lowercase()
}

/// Takes jobs off the channel while there is room in flight (see `Admission` for the
/// share of each client), until the last `Verifier` is gone and every job taken has been
/// answered.
async fn serve(ctx: Rc<Ctx>, jobs: Receiver<Job>, doorbell: Arc<Doorbell>) {
    let admission = Rc::new(RefCell::new(Admission::new()));
    // Rung when a job leaves flight: a place, maybe one a set-aside job waits for, is free.
    let slot_freed = Rc::new(tokio::sync::Notify::new());
    let held = HeldCount {
        n_held: Rc::new(std::cell::Cell::new(0)),
        gone: Rc::clone(&slot_freed),
    };
    let start = |job: Job| {
        let slot = Slot {
            client: job.client(),
            admission: Rc::clone(&admission),
            slot_freed: Rc::clone(&slot_freed),
        };
        let ctx = Rc::clone(&ctx);
        tokio::task::spawn_local(async move {
            // Released also when the job panics (the task is dropped).
            let _slot = slot;
            run(&ctx, job).await;
        });
    };
    loop {
        if admission.borrow().is_full() {
            slot_freed.notified().await;
            continue;
        }
        let ready = admission.borrow_mut().next_ready();
        if let Some(job) = ready {
            start(job);
            continue;
        }
        match jobs.try_recv() {
            Ok(job) => {
                let Some(job) = hold_if_stalled(&ctx, &held, job) else {
                    continue;
                };
                let admitted = admission.borrow_mut().admit(job.client(), job);
                match admitted {
                    Admitted::Start(job) => start(job),
                    Admitted::SetAside => {}
                    Admitted::Refused(job) => {
                        ctx.counters
                            .n_client_refused
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        job.answer_temperror();
                    }
                }
            }
            Err(TryRecvError::Empty) if doorbell.is_closed() => break,
            Err(TryRecvError::Empty) => {
                if doorbell.may_sleep(|| !jobs.is_empty()) {
                    // New work, or a place freed for a set-aside job.
                    let new_job = std::pin::pin!(doorbell.notify.notified());
                    let freed = std::pin::pin!(slot_freed.notified());
                    futures_util::future::select(new_job, freed).await;
                }
            }
            Err(TryRecvError::Disconnected) => break,
        }
    }
    loop {
        let ready = admission.borrow_mut().next_ready();
        if let Some(job) = ready {
            start(job);
            continue;
        }
        if admission.borrow().is_idle() && held.n_held.get() == 0 {
            break;
        }
        slot_freed.notified().await;
    }
}

/// A message from a sender domain known to stall gets its `temperror` at its deadline
/// from a timer, with no place in flight and no lookup (see `STALLED_DOMAIN_TTL`);
/// returns the job when it is not such a message. Beyond `STALLED_HELD_MAX` held, the
/// answer goes at once.
fn hold_if_stalled(ctx: &Ctx, held: &HeldCount, job: Job) -> Option<Job> {
    let Job::Verify {
        request,
        due,
        reply,
        learn,
    } = job
    else {
        return Some(job);
    };
    if !ctx.is_stalled(&sender_domain(&request), Instant::now()) {
        return Some(Job::Verify {
            request,
            due,
            reply,
            learn,
        });
    }
    ctx.counters
        .n_stalled_skipped
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Made now, so the message itself is not held with it.
    let answer = AuthResults::temperror(&request);
    drop(request);
    if held.n_held.get() >= crate::auth::STALLED_HELD_MAX {
        let _ = reply.send(answer);
        return None;
    }
    held.n_held.set(held.n_held.get() + 1);
    let one = Held(held.clone());
    tokio::task::spawn_local(async move {
        let _one = one;
        tokio::time::sleep_until(due.into()).await;
        let _ = reply.send(answer);
    });
    None
}

/// Answers held by `hold_if_stalled`, and who to tell when one has gone.
#[derive(Clone)]
struct HeldCount {
    n_held: Rc<std::cell::Cell<usize>>,
    gone: Rc<tokio::sync::Notify>,
}

/// One answer held by `hold_if_stalled`, counted until its task ends.
struct Held(HeldCount);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.n_held.set(self.0.n_held.get() - 1);
        self.0.gone.notify_one();
    }
}

/// One place in flight, given back when its task ends, however it ends.
struct Slot {
    client: IpAddr,
    admission: Rc<RefCell<Admission<Job>>>,
    slot_freed: Rc<tokio::sync::Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admission.borrow_mut().finish(self.client);
        self.slot_freed.notify_one();
    }
}

/// Holds an answer while it is being worked out and sends it when dropped: after the
/// work, at the deadline, or when a check panics. So every request is answered exactly
/// once, with `temperror` for whatever did not finish.
struct Answer<T> {
    /// `Some` until sent: the value itself goes out, no copy.
    value: Option<T>,
    reply: Option<oneshot::Sender<T>>,
}

impl<T> Answer<T> {
    fn new(value: T, reply: oneshot::Sender<T>) -> Answer<T> {
        Answer {
            value: Some(value),
            reply: Some(reply),
        }
    }

    /// The answer so far, for the checks to fill in.
    fn value_mut(&mut self) -> &mut T {
        self.value
            .as_mut()
            .expect("an answer holds its value until it is sent")
    }
}

impl<T> Drop for Answer<T> {
    fn drop(&mut self) {
        if let (Some(reply), Some(value)) = (self.reply.take(), self.value.take()) {
            let _ = reply.send(value);
        }
    }
}

/// Works out one job's answer and sends it, by its deadline.
async fn run(ctx: &Ctx, job: Job) {
    // A request that waited out its deadline in the queue gets its answer without any
    // work: under overload, late work would only make the next answers late too.
    let due = match &job {
        Job::Verify { due, .. } | Job::Dnsbl { due, .. } => *due,
    };
    if Instant::now() >= due {
        match &job {
            Job::Verify { .. } => ctx.counters.count_verified(false),
            Job::Dnsbl { .. } => ctx.counters.count_dnsbl(false),
        }
        job.answer_temperror();
        return;
    }
    match job {
        Job::Verify {
            request,
            due,
            reply,
            learn,
        } => {
            if reply.is_canceled() {
                return;
            }
            let mut answer = Answer::new(AuthResults::temperror(&request), reply);
            let domain = sender_domain(&request);
            if ctx.is_stalled(&domain, Instant::now()) {
                ctx.counters
                    .n_stalled_skipped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            let track = Track::learning(learn.is_some());
            let checker = Checker {
                authenticator: &ctx.authenticator,
                caches: &ctx.caches,
                track: &track,
                resolves: true,
                signatures_max: usize::MAX,
            };
            let on_time = tokio::time::timeout_at(
                due.into(),
                check_message(&checker, &request, answer.value_mut()),
            )
            .await
            .is_ok();
            if !on_time {
                ctx.note_stalled(&domain, Instant::now());
            }
            ctx.counters.count_verified(on_time);
            // The answer before the entries: the executor waits for it, not for them.
            drop(answer);
            // An executor's full queue of entries only costs it a miss more later.
            if let (true, Some(learn), Some(learned)) = (on_time, learn, track.into_learned()) {
                let _ = learn.try_send(learned);
            }
        }
        Job::Dnsbl {
            client_ip,
            zones,
            due,
            reply,
        } => {
            if reply.is_canceled() {
                return;
            }
            let mut answer = Answer::new(DnsblResult::temperror(&zones), reply);
            let on_time = tokio::time::timeout_at(
                due.into(),
                check_dnsbl(ctx, client_ip, answer.value_mut()),
            )
            .await
            .is_ok();
            ctx.counters.count_dnsbl(on_time);
        }
    }
}

/// Asks every zone at once; each writes its verdict when it answers (RFC 5782 2.1: the
/// reversed address under the zone, listed when an A record in 127.0.0.0/24 answers).
async fn check_dnsbl(ctx: &Ctx, client_ip: IpAddr, result: &mut DnsblResult) {
    let reversed = client_ip.to_canonical().to_reverse_name();
    let lookups = result.zones.iter_mut().map(|zone| {
        let name = format!("{reversed}.{}.", zone.zone.trim_end_matches('.'));
        async move {
            let answer = ctx
                .authenticator
                .ipv4_lookup(&name, Some(ctx.caches.ipv4()))
                .await;
            zone.verdict = match answer {
                Ok(records) => match records.rrset.iter().find(|addr| is_listing(addr)) {
                    Some(answer) => DnsblVerdict::Listed { answer: *answer },
                    None => DnsblVerdict::NotListed,
                },
                Err(mail_auth::Error::Dns(DnsError::RecordNotFound(_))) => DnsblVerdict::NotListed,
                Err(_) => DnsblVerdict::TempError,
            };
        }
    });
    join_all(lookups).await;
}

/// RFC 5782 2.3: list entries answer with addresses in 127.0.0.0/8; we take 127.0.0.x
/// only, because lists answer errors in the rest (Spamhaus's 127.255.255.x means
/// "query refused", not "listed").
fn is_listing(addr: &Ipv4Addr) -> bool {
    matches!(addr.octets(), [127, 0, 0, _])
}

impl Counters {
    fn count_verified(&self, on_time: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        self.n_verified.fetch_add(1, Relaxed);
        if !on_time {
            self.n_deadline_expired.fetch_add(1, Relaxed);
        }
    }

    fn count_dnsbl(&self, on_time: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        self.n_dnsbl.fetch_add(1, Relaxed);
        if !on_time {
            self.n_deadline_expired.fetch_add(1, Relaxed);
        }
    }
}
