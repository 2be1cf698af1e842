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

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, TryRecvError};
use futures_channel::oneshot;
use futures_util::future::{join_all, join4};
use mail_auth::common::resolver::ToReverseName;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::hickory_resolver::system_conf::read_system_conf;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticatedMessage, DnsError, MessageAuthenticator, SpfOutput, SpfResult};

use crate::auth::cache::Caches;
use crate::auth::results::{
    ArcCheck, AuthResults, DkimCheck, DmarcCheck, DnsblResult, DnsblVerdict, IprevCheck, SpfCheck,
    bounded, spf_identity,
};
use crate::auth::{
    CACHE_TTL_MAX, Counters, DKIM_SIGNATURES_MAX, DnsResolver, Doorbell, Error, IN_FLIGHT_MAX,
    NEGATIVE_CACHE_TTL_MAX, RESOLVER_CACHE_ENTRIES_MAX, VerifierConfig, VerifyRequest,
};

/// The thread's name, as `top -H` and panics show it.
const THREAD_NAME: &str = "mayfly-auth";

/// A request on its way to the resolver thread.
pub(super) enum Job {
    Verify {
        request: VerifyRequest,
        /// When the answer is due; the deadline counts from `Verifier::verify`.
        due: Instant,
        reply: oneshot::Sender<AuthResults>,
    },
    Dnsbl {
        client_ip: IpAddr,
        zones: Arc<[Box<str>]>,
        due: Instant,
        reply: oneshot::Sender<DnsblResult>,
    },
}

impl Job {
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
) -> Result<(), Error> {
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
            let _ = started.send(Ok(()));
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
    // One try per server, as long as the whole request may take: a retry could not
    // finish in time anyway, and the deadline cuts whatever is still waiting.
    opts.timeout = config.deadline;
    opts.attempts = 1;
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

/// Takes jobs off the channel while there is room in flight, until the last `Verifier` is
/// gone and every job taken has been answered.
async fn serve(ctx: Rc<Ctx>, jobs: Receiver<Job>, doorbell: Arc<Doorbell>) {
    let n_in_flight = Rc::new(Cell::new(0usize));
    let slot_freed = Rc::new(tokio::sync::Notify::new());
    loop {
        while n_in_flight.get() >= IN_FLIGHT_MAX {
            slot_freed.notified().await;
        }
        match jobs.try_recv() {
            Ok(job) => {
                n_in_flight.set(n_in_flight.get() + 1);
                let (ctx, n_in_flight, slot_freed) = (
                    Rc::clone(&ctx),
                    Rc::clone(&n_in_flight),
                    Rc::clone(&slot_freed),
                );
                tokio::task::spawn_local(async move {
                    // Released also when the job panics (the task is dropped).
                    let _slot = Slot {
                        n_in_flight,
                        slot_freed,
                    };
                    run(&ctx, job).await;
                });
            }
            Err(TryRecvError::Empty) if doorbell.is_closed() => break,
            Err(TryRecvError::Empty) => doorbell.notify.notified().await,
            Err(TryRecvError::Disconnected) => break,
        }
    }
    while n_in_flight.get() > 0 {
        slot_freed.notified().await;
    }
}

/// One place in flight, given back when its task ends, however it ends.
struct Slot {
    n_in_flight: Rc<Cell<usize>>,
    slot_freed: Rc<tokio::sync::Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.n_in_flight.set(self.n_in_flight.get() - 1);
        self.slot_freed.notify_one();
    }
}

/// Holds an answer while it is being worked out and sends it when dropped: after the
/// work, at the deadline, or when a check panics. So every request is answered exactly
/// once, with `temperror` for whatever did not finish.
struct Answer<T: Clone> {
    value: T,
    reply: Option<oneshot::Sender<T>>,
}

impl<T: Clone> Drop for Answer<T> {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            // A clone (a few small strings) rather than a stand-in value to swap in.
            let _ = reply.send(self.value.clone());
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
        } => {
            if reply.is_canceled() {
                return;
            }
            let mut answer = Answer {
                value: AuthResults::temperror(&request),
                reply: Some(reply),
            };
            let domain = sender_domain(&request);
            if ctx.is_stalled(&domain, Instant::now()) {
                ctx.counters
                    .n_stalled_skipped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            let on_time = tokio::time::timeout_at(
                due.into(),
                check_message(ctx, &request, &mut answer.value),
            )
            .await
            .is_ok();
            if !on_time {
                ctx.note_stalled(&domain, Instant::now());
            }
            ctx.counters.count_verified(on_time);
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
            let mut answer = Answer {
                value: DnsblResult::temperror(&zones),
                reply: Some(reply),
            };
            let on_time =
                tokio::time::timeout_at(due.into(), check_dnsbl(ctx, client_ip, &mut answer.value))
                    .await
                    .is_ok();
            ctx.counters.count_dnsbl(on_time);
        }
    }
}

/// Every check of one message, each writing its part of `results` as it finishes.
async fn check_message(ctx: &Ctx, request: &VerifyRequest, results: &mut AuthResults) {
    let authenticator = &ctx.authenticator;
    let caches = &ctx.caches;
    let client_ip = request.client_ip.to_canonical();
    let message = AuthenticatedMessage::parse(&request.message).map(|mut message| {
        message.dkim_headers.truncate(DKIM_SIGNATURES_MAX);
        message
    });
    // What is known before any lookup: the signatures to check and the From domain.
    match &message {
        Some(message) => {
            results.dkim = message
                .dkim_headers
                .iter()
                .map(|header| DkimCheck::unfinished(&header.header))
                .collect();
            results.dmarc.domain = from_domain(message);
        }
        None => {
            // No header at all: nothing signed, no From, no ARC.
            results.dkim.clear();
            results.dmarc = DmarcCheck {
                result: crate::auth::Verdict::None,
                domain: String::new(),
                policy: None,
            };
            results.arc.result = crate::auth::Verdict::None;
        }
    }
    let AuthResults {
        spf: spf_slot,
        dkim: dkim_slot,
        dmarc: dmarc_slot,
        arc: arc_slot,
        iprev: iprev_slot,
        ..
    } = results;
    let (identity, spf_domain) = spf_identity(request);
    let host_domain = &*request.authserv_id;
    let spf = async {
        if !is_spf_domain(spf_domain) {
            // RFC 7208 4.3: a malformed or single-label domain (an address literal as
            // the HELO name, `user@[192.0.2.1]`) gets `none` without a lookup.
            *spf_slot = SpfCheck {
                result: crate::auth::Verdict::None,
                domain: spf_domain.to_string(),
                identity,
            };
            return SpfOutput::new(spf_domain.to_string()).with_result(SpfResult::None);
        }
        let params = if request.mail_from.is_empty() {
            SpfParameters::verify_ehlo(client_ip, &request.helo, host_domain)
        } else {
            SpfParameters::verify_mail_from(
                client_ip,
                &request.helo,
                host_domain,
                &request.mail_from,
            )
        };
        let output = authenticator.verify_spf(caches.parameters(params)).await;
        *spf_slot = SpfCheck::from_output(&output, identity);
        output
    };
    let dkim = async {
        let Some(message) = &message else {
            return Vec::new();
        };
        let outputs = authenticator.verify_dkim(caches.parameters(message)).await;
        *dkim_slot = outputs.iter().map(DkimCheck::from_output).collect();
        outputs
    };
    let arc = async {
        let Some(message) = &message else {
            return;
        };
        let output = authenticator.verify_arc(caches.parameters(message)).await;
        *arc_slot = ArcCheck::from_result(output.result());
    };
    let iprev = async {
        let output = authenticator
            .verify_iprev(caches.parameters(client_ip))
            .await;
        *iprev_slot = IprevCheck::from_result(output.result());
    };
    let (spf_output, dkim_outputs, (), ()) = join4(spf, dkim, arc, iprev).await;
    let Some(message) = &message else {
        return;
    };
    // The SPF-authenticated domain DMARC aligns is the one SPF checked: MAIL FROM's, or
    // the HELO name's for the null sender (RFC 7489 3.1.2).
    let params = DmarcParameters::new(message, &dkim_outputs, spf_output.domain(), &spf_output);
    let output = authenticator.verify_dmarc(caches.parameters(params)).await;
    *dmarc_slot = DmarcCheck::from_output(&output);
}

/// Whether SPF can check `domain` (RFC 7208 4.3): at least two labels of 1 to 63 octets,
/// at most 253 octets, and not an IP address or address literal.
fn is_spf_domain(domain: &str) -> bool {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    domain.len() <= 253
        && domain.contains('.')
        && domain.parse::<IpAddr>().is_err()
        && domain.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.contains(|ch: char| ch.is_whitespace() || "[]:@".contains(ch))
        })
}

/// The RFC 5322 From domain in its ASCII form, as mail-auth's DMARC check reports it;
/// empty when there is none or several differ (DMARC does not apply then, RFC 7489
/// 6.6.1).
fn from_domain(message: &AuthenticatedMessage<'_>) -> String {
    let mut domain: Option<&str> = None;
    for from in &message.from {
        let Some((_, this)) = from.rsplit_once('@') else {
            continue;
        };
        match domain {
            None => domain = Some(this),
            Some(seen) if seen.eq_ignore_ascii_case(this) => {}
            Some(_) => return String::new(),
        }
    }
    let domain = domain.unwrap_or_default();
    let ascii = idna::domain_to_ascii(domain).unwrap_or_else(|_| domain.to_ascii_lowercase());
    bounded(&ascii)
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
