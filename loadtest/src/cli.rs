//! Command-line options, their checks, and the run from start to report.
//!
//! Every run is bounded: `--messages` or `--duration` is required (a run with only
//! `--messages` still stops after [`TIME_LIMIT_DEFAULT_SECS`]), every wait has
//! `--timeout`, and the target must be a loopback address unless `--allow-non-loopback`.
//!
//! Exit codes: 0 all good; 1 the run could not start or was aborted (refused connection,
//! too many connection errors, a capability missing); 2 the run finished but had connection
//! errors; 3 `--verify` found missing or corrupted messages.

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use clap::{ArgAction, Parser};

use crate::dkim;
use crate::engine::{self, RunConfig, Shared, Workload};
use crate::message::{self, MessageSpec};
use crate::sizes::{self, SizeClass, SplitMix64};
use crate::stats::Stats;
use crate::tls::{self, TlsMode, TlsSettings, Trust};
use crate::verify;

/// Time limit of a run bounded only by `--messages`.
pub const TIME_LIMIT_DEFAULT_SECS: f64 = 3600.0;
/// Longest `--duration` (and `--warmup`).
pub const DURATION_SECS_MAX: f64 = 86_400.0;
/// Most connections over all threads.
pub const CONNECTIONS_MAX: usize = 20_000;
/// Most load threads.
pub const THREADS_MAX: usize = 256;
/// Most recipients per message (they are tracked in a 64-bit mask).
pub const RECIPIENTS_MAX: u64 = 64;
/// Most distinct inboxes.
pub const INBOXES_MAX: u64 = 1_000_000_000;
/// Most transactions in flight per connection.
pub const IN_FLIGHT_MAX: usize = 1024;
/// Most messages in one run.
pub const MESSAGES_MAX: u64 = 1_000_000_000_000;
/// Highest `--rate`.
pub const RATE_PER_SEC_MAX: f64 = 100_000_000.0;
/// Longest `--timeout`.
pub const TIMEOUT_SECS_MAX: f64 = 3600.0;
/// Longest mean `--think-ms`.
pub const THINK_MS_MAX: f64 = 60_000.0;

const EXIT_ABORTED: u8 = 1;
const EXIT_CONNECTION_ERRORS: u8 = 2;
const EXIT_VERIFY_FAILED: u8 = 3;

/// Load generator for SMTP servers (closed or open loop, pipelining, BDAT).
#[derive(Debug, Parser)]
#[command(name = "smtp-blaster", version, about, after_help = EXIT_HELP)]
pub struct Args {
    /// SMTP server, HOST:PORT (loopback only unless --allow-non-loopback).
    pub target: String,
    /// Concurrent connections over all threads.
    #[arg(long, short = 'c', default_value_t = 32)]
    pub connections: usize,
    /// Transactions per connection before QUIT and reconnect: 0 = reuse forever, 1 = a new connection per message.
    #[arg(long, default_value_t = 0)]
    pub messages_per_connection: u64,
    /// Total messages to send (this or --duration is required).
    #[arg(long, short = 'm')]
    pub messages: Option<u64>,
    /// Seconds to send for, after the warm-up (this or --messages is required).
    #[arg(long, short = 'd')]
    pub duration: Option<f64>,
    /// Open loop: this many messages per second on a fixed schedule; latency counts from the intended send time.
    #[arg(long)]
    pub rate: Option<f64>,
    /// With --rate: every arrival opens its own connection (at most --connections at once), and latency runs from the intended arrival time to the final 250 (the MX shape).
    #[arg(long, requires = "rate")]
    pub connect_per_arrival: bool,
    /// Mean think time in milliseconds before each command after a reply, and before each reconnect (uniform in half to 1.5 times it); 0 = none.
    #[arg(long, default_value_t = 0.0, value_name = "MS")]
    pub think_ms: f64,
    /// Header block of generated messages: "minimal", or "mx" (Received hops, DKIM-Signature, Authentication-Results, List-Unsubscribe, ..., about 1.3 KB, counted in --size).
    #[arg(
        long,
        default_value = "minimal",
        value_name = "BLOCK",
        conflicts_with = "corpus"
    )]
    pub headers: String,
    /// Message size in bytes, headers included (suffix k or M allowed) [default: 1024].
    #[arg(long, conflicts_with_all = ["size_dist", "corpus"])]
    pub size: Option<String>,
    /// Size distribution, "SIZE:WEIGHT,...", e.g. "1024:0.8,102400:0.2".
    #[arg(long, conflicts_with = "corpus")]
    pub size_dist: Option<String>,
    /// Directory of RFC 5322 messages used as message bodies (their headers are kept too).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Sign messages with DKIM with this private key (PEM: PKCS#1 RSA, or PKCS#8 RSA or Ed25519), before the run; see --dkim-variants.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["size_dist", "corpus"])]
    pub dkim_key: Option<PathBuf>,
    /// DKIM selector (s=); "{n}" in it becomes the variant number.
    #[arg(long, default_value = "blaster", requires = "dkim_key")]
    pub dkim_selector: String,
    /// DKIM signing domain (d=) [default: --domain].
    #[arg(long, requires = "dkim_key")]
    pub dkim_domain: Option<String>,
    /// Distinct signed messages, sent in turn (message n is variant n mod N); with "{n}" in the selector and N >= --messages, no two messages name the same key.
    #[arg(long, default_value_t = 1, requires = "dkim_key")]
    pub dkim_variants: u64,
    /// Recipients (RCPT TO) per message.
    #[arg(long, default_value_t = 1)]
    pub recipients: u64,
    /// Recipients are spread over this many addresses user<k>@DOMAIN.
    #[arg(long, default_value_t = 1000)]
    pub inboxes: u64,
    /// Domain of the sender and recipients.
    #[arg(long, default_value = "example.test")]
    pub domain: String,
    /// Name inboxes <c>-user<k>@DOMAIN with c cycling through [0-9a-z], so they spread
    /// over every partition of a multi-node setup (docs/scale-out.md).
    #[arg(long)]
    pub spread_inboxes: bool,
    /// RFC 2920: send MAIL/RCPT/DATA as one group and the body with the next group.
    #[arg(long)]
    pub pipelining: bool,
    /// RFC 3030: BDAT <n> LAST instead of DATA.
    #[arg(long)]
    pub bdat: bool,
    /// Transactions pipelined per connection (needs --bdat; more than 1 turns on --pipelining).
    #[arg(long, default_value_t = 1)]
    pub in_flight: usize,
    /// EHLO name.
    #[arg(long, default_value = "blaster.invalid")]
    pub ehlo: String,
    /// STARTTLS after EHLO (RFC 3207), then EHLO again; the run stops if the target does not offer it.
    #[arg(long, conflicts_with = "smtps")]
    pub starttls: bool,
    /// Implicit TLS from connect (RFC 8314, e.g. Mayfly's --smtps port).
    #[arg(long)]
    pub smtps: bool,
    /// Accept any server certificate (signatures are still checked); for self-signed test servers.
    #[arg(long, conflicts_with = "tls_ca")]
    pub tls_insecure: bool,
    /// PEM file of root certificates to trust for the server certificate.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Server name for SNI and certificate checks [default: the target host, or "localhost" for an IP address].
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// Full TLS handshake on every connection (no session resumption).
    #[arg(long)]
    pub tls_no_resumption: bool,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// Seconds to wait for any reply (and for connect).
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// With --verify: read the inboxes again, for up to this many seconds, until every
    /// acknowledged message is there (mail relayed through a queue arrives later).
    #[arg(long, default_value_t = 0.0, value_name = "SECS")]
    pub verify_wait: f64,
    /// Spin on the sockets instead of sleeping in epoll (saves the server a wake-up IPI per reply).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub busy_poll: bool,
    /// Sleep in epoll while waiting (the same as --busy-poll=false).
    #[arg(long, conflicts_with = "busy_poll")]
    pub epoll: bool,
    /// Load threads; connections are split between them.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Pin thread i to the i-th CPU of this list (e.g. "1" or "0,2-3"), round robin.
    #[arg(long)]
    pub cpu: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// After the run, read every inbox back from this HTTP API (e.g. http://127.0.0.1:8025) and check it.
    #[arg(long, value_name = "URL")]
    pub verify: Option<String>,
    /// Allow targets that are not loopback addresses.
    #[arg(long)]
    pub allow_non_loopback: bool,
    /// Abort the run after this many connection errors (timeouts, resets, unexpected closes).
    #[arg(long, default_value_t = 100)]
    pub max_connection_errors: u64,
}

/// Pause between two reads of every inbox under `--verify-wait`.
const VERIFY_RETRY_INTERVAL: Duration = Duration::from_secs(1);

const EXIT_HELP: &str = "Exit status: 0 ok; 1 aborted or could not start; 2 finished with connection errors; 3 --verify found missing or corrupted messages.";

/// Checked options, ready to run.
#[derive(Debug)]
pub struct Plan {
    /// What every load thread gets.
    pub config: RunConfig,
    /// Message templates, shared read-only by the threads.
    pub workload: Workload,
    pub n_threads: usize,
    /// Connections over all threads.
    pub n_connections: usize,
    /// CPUs to pin thread i to (`cpus[i % len]`); empty = no pinning.
    pub cpus: Vec<usize>,
}

/// Runs the load described by `args` and prints the report.
///
/// # Errors
/// On bad options or when the run cannot start; a run that was aborted midway prints its
/// report and returns exit status 1 instead.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let plan = plan(&args)?;
    let shared = Shared::new();
    let run_start = Instant::now();
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..plan.n_threads)
            .map(|thread_idx| {
                let (plan, shared) = (&plan, &shared);
                let n_connections = plan.n_connections / plan.n_threads
                    + usize::from(thread_idx < plan.n_connections % plan.n_threads);
                scope.spawn(move || {
                    if !plan.cpus.is_empty() {
                        let cpu = plan.cpus[thread_idx % plan.cpus.len()];
                        engine::pin_to_cpu(cpu)
                            .with_context(|| format!("pinning thread {thread_idx} to CPU {cpu}"))?;
                    }
                    let result = engine::run_thread(
                        thread_idx,
                        plan.n_threads,
                        n_connections,
                        &plan.config,
                        &plan.workload,
                        shared,
                        run_start,
                    );
                    if result.is_err() {
                        shared.abort(format!("load thread {thread_idx} failed"));
                    }
                    result.context("load thread")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("load thread panicked")))
            })
            .collect::<Vec<_>>()
    });
    let mut stats = Stats::new();
    let mut last_completion = Duration::ZERO;
    for result in results {
        let result = result?;
        last_completion = last_completion.max(result.last_completion);
        stats.merge(result.stats);
    }
    // The measured window ends at the stop time, or earlier at the last completion when the
    // message count ran out first (a --messages run's stop time is only a safety limit), or
    // when the run ended (aborted, or nothing completed).
    let run_end = run_start.elapsed();
    let window_end = if last_completion.is_zero() {
        run_end
    } else {
        last_completion
    }
    .min(plan.config.run_time);
    let elapsed_secs = window_end.saturating_sub(plan.config.warmup).as_secs_f64();
    let report = stats.report(elapsed_secs);
    let fatal = shared.fatal();

    let mut verify_waited_secs = 0.0;
    let verify_report = match (&args.verify, &fatal) {
        (Some(url), None) => {
            eprintln!(
                "verify: note that Mayfly may legitimately evict messages (--ttl, --max-messages-per-inbox, --max-memory); \
                 size --verify runs to fit: this run put about {} messages in each of {} inboxes",
                (stats.n_accepted * plan.workload.spec.recipients)
                    .div_ceil(plan.workload.spec.inboxes),
                plan.workload.spec.inboxes
            );
            let timeout = plan.config.reply_timeout;
            // With --verify-wait, read again until everything is there: mail relayed
            // through a queue (Postfix in front of Mayfly) arrives after its 250.
            let wait_deadline = Instant::now() + Duration::from_secs_f64(args.verify_wait);
            let verify_started = Instant::now();
            let report = loop {
                let attempt = verify::verify(
                    url,
                    args.allow_non_loopback,
                    &plan.workload.spec,
                    &stats.accepted,
                    timeout,
                );
                match attempt {
                    Ok(report) if report.passed() || Instant::now() >= wait_deadline => {
                        break report;
                    }
                    // A node that is down or restarting answers 503 through a proxy:
                    // within --verify-wait that is a reason to read again, not a failure.
                    Err(error) if Instant::now() >= wait_deadline => {
                        return Err(error.context("--verify"));
                    }
                    Ok(_) | Err(_) => std::thread::sleep(VERIFY_RETRY_INTERVAL),
                }
            };
            verify_waited_secs = verify_started.elapsed().as_secs_f64();
            Some(report)
        }
        _ => None,
    };

    if args.json {
        let mut json = serde_json::to_value(&report)?;
        if let Some(object) = json.as_object_mut() {
            object.insert("fatal".to_owned(), serde_json::to_value(&fatal)?);
            object.insert("verify".to_owned(), serde_json::to_value(&verify_report)?);
            object.insert(
                "verify_waited_secs".to_owned(),
                serde_json::to_value(verify_waited_secs)?,
            );
            object.insert(
                "run_id".to_owned(),
                format!("{:016x}", plan.workload.spec.run_id).into(),
            );
        }
        println!("{json}");
    } else {
        print!("{}", report.to_text());
        if let Some(verify_report) = &verify_report {
            println!("{}", verify_report.to_text());
        }
    }
    if let Some(reason) = fatal {
        eprintln!("error: run aborted: {reason}");
        return Ok(ExitCode::from(EXIT_ABORTED));
    }
    if verify_report.as_ref().is_some_and(|v| !v.passed()) {
        eprintln!("error: --verify found missing or corrupted messages");
        return Ok(ExitCode::from(EXIT_VERIFY_FAILED));
    }
    if !report.connection_errors.is_empty() {
        eprintln!("error: the run had connection errors");
        return Ok(ExitCode::from(EXIT_CONNECTION_ERRORS));
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks the options and builds everything the run needs.
///
/// # Errors
/// On any option out of range, an unbounded run, or a non-loopback target without permission.
pub fn plan(args: &Args) -> anyhow::Result<Plan> {
    ensure!(
        args.messages.is_some() || args.duration.is_some(),
        "give --messages or --duration: runs are always bounded"
    );
    ensure!(
        (1..=CONNECTIONS_MAX).contains(&args.connections),
        "--connections must be 1..={CONNECTIONS_MAX}"
    );
    ensure!(
        (1..=THREADS_MAX).contains(&args.threads),
        "--threads must be 1..={THREADS_MAX}"
    );
    ensure!(
        args.threads <= args.connections,
        "--threads ({}) is more than --connections ({})",
        args.threads,
        args.connections
    );
    if let Some(messages) = args.messages {
        ensure!(
            (1..=MESSAGES_MAX).contains(&messages),
            "--messages must be 1..={MESSAGES_MAX}"
        );
    }
    let duration_secs = args
        .duration
        .map(|secs| check_secs("--duration", secs, DURATION_SECS_MAX))
        .transpose()?;
    ensure!(
        duration_secs.is_none_or(|secs| secs > 0.0),
        "--duration must be more than 0"
    );
    let warmup_secs = check_secs("--warmup", args.warmup, DURATION_SECS_MAX)?;
    ensure!(
        args.think_ms.is_finite() && (0.0..=THINK_MS_MAX).contains(&args.think_ms),
        "--think-ms must be between 0 and {THINK_MS_MAX}"
    );
    ensure!(
        !args.connect_per_arrival || args.messages_per_connection >= 1,
        "--connect-per-arrival needs --messages-per-connection 1 or more (a connection per arrival)"
    );
    let header_block = match args.headers.as_str() {
        "minimal" => message::HeaderBlock::Minimal,
        "mx" => message::HeaderBlock::Mx,
        other => bail!("--headers must be minimal or mx, not {other:?}"),
    };
    let timeout_secs = check_secs("--timeout", args.timeout, TIMEOUT_SECS_MAX)?;
    ensure!(
        timeout_secs >= 0.001,
        "--timeout must be at least 0.001 seconds"
    );
    if let Some(rate) = args.rate {
        ensure!(
            rate.is_finite() && rate > 0.0 && rate <= RATE_PER_SEC_MAX,
            "--rate must be more than 0 and at most {RATE_PER_SEC_MAX}"
        );
    }
    ensure!(
        (1..=RECIPIENTS_MAX).contains(&args.recipients),
        "--recipients must be 1..={RECIPIENTS_MAX}"
    );
    ensure!(
        (1..=INBOXES_MAX).contains(&args.inboxes),
        "--inboxes must be 1..={INBOXES_MAX}"
    );
    ensure!(
        (1..=IN_FLIGHT_MAX).contains(&args.in_flight),
        "--in-flight must be 1..={IN_FLIGHT_MAX}"
    );
    ensure!(
        args.in_flight == 1 || args.bdat,
        "--in-flight above 1 needs --bdat (DATA cannot be pipelined past the 354)"
    );
    check_name("--domain", &args.domain)?;
    check_name("--ehlo", &args.ehlo)?;
    if let Some(url) = &args.verify {
        verify::HttpClient::new(url, args.allow_non_loopback, Duration::from_secs(1))?;
        ensure!(
            args.inboxes <= verify::VERIFY_INBOXES_MAX,
            "--verify reads every inbox: use at most {} --inboxes",
            verify::VERIFY_INBOXES_MAX
        );
    }
    let target = resolve_target(&args.target, args.allow_non_loopback)?;
    let tls = tls_settings(args)?;
    let cpus = args
        .cpu
        .as_deref()
        .map(parse_cpu_list)
        .transpose()?
        .unwrap_or_default();

    let run_id = SplitMix64(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id()),
    )
    .next_u64();
    let now_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let spec = MessageSpec {
        run_id,
        domain: args.domain.clone(),
        recipients: args.recipients,
        inboxes: args.inboxes,
        date: message::rfc5322_date(now_secs),
        spread_inboxes: args.spread_inboxes,
    };
    let mut in_turn = false;
    let (templates, weights) = if let Some(dir) = &args.corpus {
        let templates = message::corpus_templates(dir)?;
        let weights = vec![1.0; templates.len()];
        (templates, weights)
    } else if let Some(path) = &args.dkim_key {
        let settings = dkim::DkimSettings::new(
            dkim::load_key(path)?,
            args.dkim_domain.as_deref().unwrap_or(&args.domain),
            &args.dkim_selector,
            args.dkim_variants,
        )?;
        let size_bytes = match &args.size {
            Some(size) => sizes::parse_size(size)?,
            None => 1024,
        };
        let templates = dkim::signed_templates(&spec, size_bytes, &settings)?;
        let weights = vec![1.0; templates.len()];
        in_turn = true;
        (templates, weights)
    } else {
        let classes = match (&args.size, &args.size_dist) {
            (_, Some(dist)) => sizes::parse_size_dist(dist)?,
            (Some(size), None) => vec![SizeClass {
                size_bytes: sizes::parse_size(size)?,
                weight: 1.0,
            }],
            (None, None) => vec![SizeClass {
                size_bytes: 1024,
                weight: 1.0,
            }],
        };
        let weights = classes.iter().map(|class| class.weight).collect();
        (
            message::generated_templates(&spec, &classes, header_block),
            weights,
        )
    };

    let run_time_secs = warmup_secs + duration_secs.unwrap_or(TIME_LIMIT_DEFAULT_SECS);
    let config = RunConfig {
        target,
        messages_per_connection: args.messages_per_connection,
        messages_total: args.messages,
        run_time: Duration::from_secs_f64(run_time_secs),
        warmup: Duration::from_secs_f64(warmup_secs),
        rate_per_sec: args.rate,
        connect_per_arrival: args.connect_per_arrival,
        think_ns: (args.think_ms * 1e6) as u64,
        pipelining: args.pipelining || args.in_flight > 1,
        bdat: args.bdat,
        in_flight: args.in_flight,
        ehlo: args.ehlo.clone(),
        tls,
        reply_timeout: Duration::from_secs_f64(timeout_secs),
        busy_poll: args.busy_poll && !args.epoll,
        keep_accepted: args.verify.is_some(),
        connection_errors_max: args.max_connection_errors,
    };
    Ok(Plan {
        config,
        workload: Workload {
            spec,
            templates,
            weights,
            in_turn,
        },
        n_threads: args.threads,
        n_connections: args.connections,
        cpus,
    })
}

/// The TLS settings of `--starttls` / `--smtps`, or `None` for plaintext.
///
/// # Errors
/// When TLS options come without `--starttls`/`--smtps`, when neither `--tls-insecure` nor
/// `--tls-ca` says which certificates to accept, or when the CA file or name is bad.
pub fn tls_settings(args: &Args) -> anyhow::Result<Option<TlsSettings>> {
    let mode = match (args.starttls, args.smtps) {
        (true, _) => TlsMode::StartTls,
        (false, true) => TlsMode::Implicit,
        (false, false) => {
            ensure!(
                !args.tls_insecure
                    && args.tls_ca.is_none()
                    && args.tls_server_name.is_none()
                    && !args.tls_no_resumption,
                "--tls-* options need --starttls or --smtps"
            );
            return Ok(None);
        }
    };
    let trust = match (&args.tls_ca, args.tls_insecure) {
        (Some(path), _) => Trust::CaFile(path),
        (None, true) => Trust::Insecure,
        (None, false) => bail!(
            "--starttls/--smtps: say which server certificates to accept: --tls-ca FILE, \
             or --tls-insecure (any certificate, e.g. mayfly --tls-self-signed)"
        ),
    };
    Ok(Some(TlsSettings {
        mode,
        config: tls::client_config(trust, !args.tls_no_resumption)?,
        resumption: !args.tls_no_resumption,
        server_name: tls::server_name(args.tls_server_name.as_deref(), &args.target)?,
    }))
}

/// Resolves HOST:PORT and enforces the loopback rule on every address it resolves to.
///
/// # Errors
/// When it does not resolve, or resolves to a non-loopback address without permission.
pub fn resolve_target(target: &str, allow_non_loopback: bool) -> anyhow::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = target
        .to_socket_addrs()
        .with_context(|| format!("target {target:?} is not HOST:PORT or does not resolve"))?
        .collect();
    let Some(&first) = addrs.first() else {
        bail!("target {target:?} resolves to no address")
    };
    if !allow_non_loopback && let Some(remote) = addrs.iter().find(|addr| !addr.ip().is_loopback())
    {
        bail!(
            "target {target} ({}) is not a loopback address; pass --allow-non-loopback to load another machine",
            remote.ip()
        );
    }
    Ok(first)
}

/// Parses "0,2-3" into [0, 2, 3].
///
/// # Errors
/// On an empty list, a bad number, a reversed range, or a CPU number out of range.
pub fn parse_cpu_list(text: &str) -> anyhow::Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for item in text.split(',').map(str::trim) {
        let (low, high) = match item.split_once('-') {
            Some((low, high)) => (low.trim(), high.trim()),
            None => (item, item),
        };
        let low: usize = low
            .parse()
            .with_context(|| format!("bad CPU number in {item:?}"))?;
        let high: usize = high
            .parse()
            .with_context(|| format!("bad CPU number in {item:?}"))?;
        ensure!(low <= high, "CPU range {item:?} is reversed");
        ensure!(
            high < libc::CPU_SETSIZE as usize,
            "CPU {high} is out of range"
        );
        cpus.extend(low..=high);
    }
    Ok(cpus)
}

fn check_secs(flag: &str, secs: f64, max: f64) -> anyhow::Result<f64> {
    ensure!(
        secs.is_finite() && (0.0..=max).contains(&secs),
        "{flag} must be between 0 and {max} seconds"
    );
    Ok(secs)
}

/// Names that end up in SMTP commands must not smuggle in line breaks or spaces.
fn check_name(flag: &str, name: &str) -> anyhow::Result<()> {
    ensure!(
        !name.is_empty()
            && name.len() <= 255
            && name.bytes().all(|b| b.is_ascii_alphanumeric()
                || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')),
        "{flag} {name:?} is not a plain domain name"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut argv = vec!["smtp-blaster", "127.0.0.1:2525"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv)
    }

    #[test]
    fn accepted_option_sets() {
        let cases: &[&[&str]] = &[
            &["--messages", "10"],
            &["--duration", "1.5", "--warmup", "1"],
            &["-m", "10", "--bdat", "--in-flight", "8"],
            &[
                "-m",
                "10",
                "--size-dist",
                "1k:1,2k:1",
                "--pipelining",
                "--epoll",
            ],
            &[
                "-m",
                "10",
                "--busy-poll=false",
                "--threads",
                "2",
                "--cpu",
                "0-1",
            ],
            &[
                "-d",
                "1",
                "--rate",
                "1000",
                "--recipients",
                "3",
                "--inboxes",
                "5",
            ],
            &["-m", "1", "--starttls", "--tls-insecure"],
            &[
                "-d",
                "1",
                "--rate",
                "100",
                "--connect-per-arrival",
                "--messages-per-connection",
                "1",
                "--think-ms",
                "2.5",
                "--headers",
                "mx",
                "--size-dist",
                "1k:1,10k:1",
            ],
            &[
                "-m",
                "1",
                "--smtps",
                "--tls-insecure",
                "--tls-server-name",
                "mx.example.test",
                "--tls-no-resumption",
            ],
        ];
        for &extra in cases {
            let args = args(extra).unwrap_or_else(|e| panic!("{extra:?}: {e}"));
            plan(&args).unwrap_or_else(|e| panic!("{extra:?}: {e:#}"));
        }
        let plan_bdat = plan(&args(&["-m", "1", "--bdat", "--in-flight", "8"]).unwrap()).unwrap();
        assert!(plan_bdat.config.pipelining && plan_bdat.config.busy_poll);
        assert!(
            !plan(&args(&["-m", "1", "--epoll"]).unwrap())
                .unwrap()
                .config
                .busy_poll
        );
    }

    #[test]
    fn refused_option_sets() {
        let cases: &[&[&str]] = &[
            &[],
            &["-m", "0"],
            &["-d", "0"],
            &["-d", "-1"],
            &["-d", "nan"],
            &["-m", "1", "--connections", "0"],
            &["-m", "1", "--threads", "64", "--connections", "2"],
            &["-m", "1", "--in-flight", "4"],
            &["-m", "1", "--recipients", "65"],
            &["-m", "1", "--inboxes", "0"],
            &["-m", "1", "--rate", "0"],
            &["-m", "1", "--connect-per-arrival"],
            &["-d", "1", "--rate", "10", "--connect-per-arrival"],
            &["-m", "1", "--think-ms", "-1"],
            &["-m", "1", "--think-ms", "1e9"],
            &["-m", "1", "--headers", "fancy"],
            &["-m", "1", "--timeout", "0"],
            &["-m", "1", "--size", "0"],
            &["-m", "1", "--domain", "a b"],
            &["-m", "1", "--ehlo", "x\r\nMAIL"],
            &["-m", "1", "--cpu", "3-1"],
            &["-m", "1", "--verify", "https://127.0.0.1:1"],
            &["-m", "1", "--starttls"],
            &["-m", "1", "--tls-insecure"],
            &["-m", "1", "--starttls", "--smtps", "--tls-insecure"],
            &["-m", "1", "--smtps", "--tls-ca", "/nonexistent/ca.pem"],
            &[
                "-m",
                "1",
                "--smtps",
                "--tls-insecure",
                "--tls-server-name",
                "no such name",
            ],
        ];
        for &extra in cases {
            if let Ok(args) = args(extra) {
                assert!(plan(&args).is_err(), "{extra:?} should be refused");
            }
        }
        assert!(args(&["-m", "1", "--size", "1", "--size-dist", "1:1"]).is_err());
    }

    /// The DKIM options build one signed template per variant, sent in turn, and refuse
    /// what cannot be signed.
    #[test]
    fn dkim_options() {
        let dir = std::env::temp_dir().join(format!("blaster-cli-dkim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("ed.pem");
        let openssl = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&key)
            .output()
            .expect("openssl runs (apt-get install openssl)");
        assert!(openssl.status.success());
        let key = key.to_str().unwrap();
        let signed = plan(
            &args(&[
                "-m",
                "5",
                "--dkim-key",
                key,
                "--dkim-selector",
                "c{n}",
                "--dkim-variants",
                "4",
            ])
            .unwrap(),
        )
        .unwrap();
        assert_eq!(signed.workload.templates.len(), 4);
        assert!(signed.workload.in_turn);
        assert!(!plan(&args(&["-m", "5"]).unwrap()).unwrap().workload.in_turn);
        let refused_by_plan: &[&[&str]] = &[
            &["-m", "1", "--dkim-key", key, "--dkim-variants", "0"],
            &["-m", "1", "--dkim-key", key, "--dkim-selector", "a b"],
            &["-m", "1", "--dkim-key", key, "--dkim-domain", "x..y"],
            &["-m", "1", "--dkim-key", "/nonexistent/key.pem"],
        ];
        for &extra in refused_by_plan {
            assert!(plan(&args(extra).unwrap()).is_err(), "{extra:?}");
        }
        // Meaningless without a key, or with bodies from elsewhere.
        assert!(args(&["-m", "1", "--dkim-selector", "s"]).is_err());
        assert!(args(&["-m", "1", "--dkim-variants", "2"]).is_err());
        assert!(args(&["-m", "1", "--dkim-key", key, "--corpus", "/tmp"]).is_err());
        assert!(args(&["-m", "1", "--dkim-key", key, "--size-dist", "1k:1"]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn loopback_rule() {
        let cases = [
            ("127.0.0.1:25", false, true),
            ("127.1.2.3:25", false, true),
            ("[::1]:25", false, true),
            ("192.0.2.1:25", false, false),
            ("192.0.2.1:25", true, true),
            ("nonsense", false, false),
        ];
        for (target, allow, ok) in cases {
            assert_eq!(
                resolve_target(target, allow).is_ok(),
                ok,
                "{target} allow={allow}"
            );
        }
    }

    #[test]
    fn cpu_lists() {
        let cases: &[(&str, Option<&[usize]>)] = &[
            ("1", Some(&[1])),
            ("0,2-3", Some(&[0, 2, 3])),
            (" 1 - 2 ", Some(&[1, 2])),
            ("", None),
            ("a", None),
            ("2-1", None),
            ("99999", None),
        ];
        for &(text, expected) in cases {
            assert_eq!(parse_cpu_list(text).ok().as_deref(), expected, "{text:?}");
        }
    }
}
