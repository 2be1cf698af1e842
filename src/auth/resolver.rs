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
use futures_util::future::{join, join_all, join4};
use mail_auth::common::resolver::ToReverseName;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::hickory_resolver::system_conf::read_system_conf;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticatedMessage, DnsError, MessageAuthenticator, SpfOutput, SpfResult};

use crate::auth::admission::{Admission, Admitted};
use crate::auth::cache::Caches;
use crate::auth::results::{
    ArcCheck, AuthResults, DkimCheck, DmarcCheck, DnsblResult, DnsblVerdict, IprevCheck, SpfCheck,
    bounded, spf_identity,
};
use crate::auth::{
    CACHE_TTL_MAX, Counters, DKIM_SIGNATURES_MAX, DnsResolver, Doorbell, Error,
    NEGATIVE_CACHE_TTL_MAX, RESOLVER_CACHE_ENTRIES_MAX, VerifierConfig, VerifyRequest,
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
    } = job
    else {
        return Some(job);
    };
    if !ctx.is_stalled(&sender_domain(&request), Instant::now()) {
        return Some(Job::Verify {
            request,
            due,
            reply,
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
            let on_time = tokio::time::timeout_at(
                due.into(),
                check_message(ctx, &request, answer.value_mut()),
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
    let dmarc_names = async {
        let Some(message) = &message else {
            return;
        };
        // The domains whose DMARC records the check may walk to: the From domain, and
        // for relaxed alignment the SPF domain and the signing domains.
        let mut domains: Vec<String> = Vec::with_capacity(2 + message.dkim_headers.len());
        for domain in std::iter::once(from_domain(message))
            .chain(std::iter::once(spf_domain.to_ascii_lowercase()))
            .chain(
                message
                    .dkim_headers
                    .iter()
                    .map(|header| header.header.d.to_ascii_lowercase()),
            )
        {
            if !domain.is_empty() && !domains.contains(&domain) {
                domains.push(domain);
            }
        }
        for domain in &domains {
            for name in dmarc_walk_names(domain) {
                learn_negative_txt(ctx, &name).await;
            }
        }
    };
    let ((spf_output, dkim_outputs, (), ()), ()) =
        join(join4(spf, dkim, arc, iprev), dmarc_names).await;
    let Some(message) = &message else {
        return;
    };
    // The SPF-authenticated domain DMARC aligns is the one SPF checked: MAIL FROM's, or
    // the HELO name's for the null sender (RFC 7489 3.1.2).
    let params = DmarcParameters::new(message, &dkim_outputs, spf_output.domain(), &spf_output);
    let output = authenticator.verify_dmarc(caches.parameters(params)).await;
    *dmarc_slot = DmarcCheck::from_output(&output);
}

/// The names a DMARC tree walk asks for `domain` (RFC 9989 4.10.1, as mail-auth 0.13's
/// `dmarc_tree_walk` does it): `_dmarc.` before the domain itself, then, for a name of
/// eight or more labels, before its last seven, then one label fewer at a time down to
/// the top-level domain. Empty for a single label. Lowercase and fully qualified, as
/// mail-auth keys its TXT cache.
fn dmarc_walk_names(domain: &str) -> Vec<String> {
    let labels: Vec<&str> = domain
        .split('.')
        .filter(|label| !label.is_empty())
        .collect();
    let n_labels = labels.len();
    let mut names = Vec::new();
    if n_labels < 2 {
        return names;
    }
    let mut n_kept = n_labels;
    loop {
        let mut name = String::from("_dmarc.");
        for label in &labels[n_labels - n_kept..] {
            name.push_str(&label.to_ascii_lowercase());
            name.push('.');
        }
        names.push(name);
        if n_kept == 1 {
            break;
        }
        n_kept = if n_kept >= 8 { 7 } else { n_kept - 1 };
    }
    names
}

/// Makes sure the TXT cache knows whether `name` has a record. mail-auth's lookups cache
/// positive answers only; a name with no record (most `_dmarc.` names of a tree walk,
/// such as `_dmarc.com.` for every sender in .com) would go to hickory for every
/// message. So a name missing from our cache is asked here first, and a negative answer
/// that carries its SOA (so its TTL is known) is cached as negative; anything else is
/// left to mail-auth's own lookup, which then finds the answer in hickory's cache.
async fn learn_negative_txt(ctx: &Ctx, name: &str) {
    use mail_auth::hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
    if ctx.caches.has_txt(name) {
        return;
    }
    let Ok(query) = mail_auth::hickory_resolver::proto::rr::Name::from_str_relaxed(name) else {
        return;
    };
    let answer = ctx.authenticator.resolver().txt_lookup(query).await;
    if let Err(NetError::Dns(HickoryDnsError::NoRecordsFound(no_records))) = answer
        && let Some(negative_ttl_secs) = no_records.negative_ttl
    {
        ctx.caches.insert_negative_txt(
            name,
            no_records.response_code,
            std::time::Duration::from_secs(u64::from(negative_ttl_secs)),
            Instant::now(),
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dmarc_walk_asks_the_names_mail_auth_asks() {
        assert_eq!(
            dmarc_walk_names("Mail.Example.Test"),
            [
                "_dmarc.mail.example.test.",
                "_dmarc.example.test.",
                "_dmarc.test."
            ]
        );
        assert_eq!(
            dmarc_walk_names("example.test."),
            ["_dmarc.example.test.", "_dmarc.test."]
        );
        assert!(dmarc_walk_names("localhost").is_empty());
        assert!(dmarc_walk_names("").is_empty());
        // Eight labels or more: the name itself, then its last seven, then down by one.
        let names = dmarc_walk_names("a.b.c.d.e.f.g.h.i.example.com");
        assert_eq!(names.len(), 8, "{names:?}");
        assert_eq!(names[0], "_dmarc.a.b.c.d.e.f.g.h.i.example.com.");
        assert_eq!(names[1], "_dmarc.e.f.g.h.i.example.com.");
        assert_eq!(names[7], "_dmarc.com.");
    }
}
