//! mail-reader's options, their checks, and the run from start to report.
//!
//! Every run is bounded: `--duration` or `--messages` is required (a run with only
//! `--messages` still stops after [`TIME_LIMIT_DEFAULT_SECS`]), every wait has
//! `--timeout`, and the target must be a loopback address unless `--allow-non-loopback`.
//!
//! Exit codes: 0 all good; 1 the run could not start or was aborted (refused connection,
//! more than `--max-errors` errors); 2 the run finished but had errors (refusals,
//! protocol errors, empty inboxes, connection errors); 3 `--verify` found a message whose
//! size or checksum is wrong.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::{ArgAction, Parser};

use crate::cli::{parse_cpu_list, resolve_target};
use crate::engine::pin_to_cpu;
use crate::reader::engine::{self, RunConfig, Shared};
use crate::reader::report::{ReadStats, Report, ReportSettings};
use crate::reader::{ImapFetch, Protocol, SessionConfig};

/// Time limit of a run bounded only by `--messages`.
pub const TIME_LIMIT_DEFAULT_SECS: f64 = 3600.0;
/// Longest `--duration` (and `--warmup`).
pub const DURATION_SECS_MAX: f64 = 86_400.0;
/// Most clients over all threads.
pub const CLIENTS_MAX: usize = 20_000;
/// Most load threads.
pub const THREADS_MAX: usize = 256;
/// Most inboxes (addresses) a run reads.
pub const INBOXES_MAX: usize = 1_000_000;
/// Most requests pipelined per batch.
pub const PIPELINE_MAX: usize = 1024;
/// Longest `--timeout`.
pub const TIMEOUT_SECS_MAX: f64 = 3600.0;
/// Longest address or password (both go into command lines).
pub const CREDENTIAL_BYTES_MAX: usize = 320;

const EXIT_ABORTED: u8 = 1;
const EXIT_ERRORS: u8 = 2;
const EXIT_VERIFY_FAILED: u8 = 3;

const EXIT_HELP: &str = "Exit status: 0 ok; 1 aborted or could not start; 2 finished with errors; 3 --verify found a message of the wrong size or checksum.";

/// Read-side load for POP3 and IMAP servers: C clients read every message of their inbox, again and again.
#[derive(Debug, Parser)]
#[command(name = "mail-reader", version, after_help = EXIT_HELP)]
pub struct Args {
    /// POP3 or IMAP server, HOST:PORT (loopback only unless --allow-non-loopback).
    pub target: String,
    /// Protocol to speak.
    #[arg(long, short = 'p', value_enum)]
    pub protocol: Protocol,
    /// Concurrent clients over all threads, each logged in to its own inbox.
    #[arg(long, short = 'c', default_value_t = 32)]
    pub clients: usize,
    /// Seconds to read for, after the warm-up (this or --messages is required).
    #[arg(long, short = 'd')]
    pub duration: Option<f64>,
    /// Stop after this many messages read after the warm-up (this or --duration is required).
    #[arg(long, short = 'm')]
    pub messages: Option<u64>,
    /// Seconds of reading before measuring starts.
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// Inbox address pattern: the n in braces (see the default) becomes 0..K-1 (K = --inboxes); client i reads inbox i mod K.
    #[arg(long, default_value = "user{n}@example.test")]
    pub address: String,
    /// K, the number of inboxes in --address [default: --clients].
    #[arg(long)]
    pub inboxes: Option<usize>,
    /// File with one inbox address per line, instead of --address.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["address", "inboxes"])]
    pub address_file: Option<PathBuf>,
    /// Password for every login (Mayfly takes any).
    #[arg(long, default_value = "mail-reader")]
    pub password: String,
    /// Requests written in one batch before waiting for all their answers (POP3 RETR, IMAP UID FETCH <uid>).
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Log out and reconnect after this many messages on a session (at the next batch boundary); 0 = never.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub reconnect_every: u64,
    /// IMAP: "one" = UID FETCH <uid> (BODY.PEEK[]) per message; "all" = UID FETCH 1:* (BODY.PEEK[]) per pass.
    #[arg(long, value_enum, default_value_t = ImapFetch::One)]
    pub imap_fetch: ImapFetch,
    /// IMAP: EXAMINE INBOX (read-only) instead of SELECT INBOX.
    #[arg(long)]
    pub examine: bool,
    /// Compare each message's byte count with the size the server announced (LIST, RFC822.SIZE).
    #[arg(long)]
    pub verify: bool,
    /// Also check the X-Blaster-Checksum of messages written by smtp-blaster (implies --verify; costs the client a copy and a CRC per message).
    #[arg(long)]
    pub verify_checksums: bool,
    /// Seconds to wait for a connect or for the next bytes of a reply.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Spin on the sockets instead of sleeping in epoll (saves the server a wake-up IPI per reply).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub busy_poll: bool,
    /// Sleep in epoll while waiting (the same as --busy-poll=false).
    #[arg(long, conflicts_with = "busy_poll")]
    pub epoll: bool,
    /// Load threads; clients are split between them.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Pin thread i to the i-th CPU of this list (e.g. "1" or "0,2-3"), round robin.
    #[arg(long)]
    pub cpu: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Allow targets that are not loopback addresses.
    #[arg(long)]
    pub allow_non_loopback: bool,
    /// Abort the run after this many errors (refusals, protocol and connection errors).
    #[arg(long, default_value_t = 100)]
    pub max_errors: u64,
}

/// Checked options, ready to run.
#[derive(Debug)]
pub struct Plan {
    pub config: RunConfig,
    pub n_threads: usize,
    pub n_clients: usize,
    /// CPUs to pin thread i to (`cpus[i % len]`); empty = no pinning.
    pub cpus: Vec<usize>,
}

/// Runs the reads described by `args` and prints the report.
///
/// # Errors
/// On bad options or when the run cannot start; a run aborted midway prints its report
/// and returns exit status 1 instead.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let plan = plan(&args)?;
    let shared = Shared::new();
    let run_start = Instant::now();
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..plan.n_threads)
            .map(|thread_idx| {
                let (plan, shared) = (&plan, &shared);
                // Clients are dealt in contiguous ranges: thread t gets its share in order.
                let base = plan.n_clients / plan.n_threads;
                let extra = plan.n_clients % plan.n_threads;
                let first = thread_idx * base + thread_idx.min(extra);
                let n_clients = base + usize::from(thread_idx < extra);
                scope.spawn(move || {
                    if !plan.cpus.is_empty() {
                        let cpu = plan.cpus[thread_idx % plan.cpus.len()];
                        pin_to_cpu(cpu)
                            .with_context(|| format!("pinning thread {thread_idx} to CPU {cpu}"))?;
                    }
                    let result =
                        engine::run_thread(first, n_clients, &plan.config, shared, run_start);
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
    let mut stats = ReadStats::new();
    for result in results {
        stats.merge(result?);
    }
    // The window ends when the message count was reached, or at the stop time, or when
    // the run ended early (aborted, or every inbox was empty).
    let window_end = shared
        .count_reached_at()
        .unwrap_or_else(|| run_start.elapsed())
        .min(plan.config.run_time);
    let elapsed_secs = window_end.saturating_sub(plan.config.warmup).as_secs_f64();
    let settings = ReportSettings {
        protocol: plan.config.protocol,
        imap_fetch: plan.config.session.imap_fetch,
        clients: plan.n_clients,
        pipeline: plan.config.session.pipeline,
        verify: plan.config.verify,
    };
    let report = Report::new(&stats, settings, elapsed_secs);
    let fatal = shared.fatal();
    if args.json {
        let mut json = serde_json::to_value(&report)?;
        if let Some(object) = json.as_object_mut() {
            object.insert("target".to_owned(), args.target.clone().into());
            object.insert("fatal".to_owned(), serde_json::to_value(&fatal)?);
        }
        println!("{json}");
    } else {
        print!("{}", report.to_text());
    }
    if let Some(reason) = fatal {
        eprintln!("error: run aborted: {reason}");
        return Ok(ExitCode::from(EXIT_ABORTED));
    }
    if report.verify_failed() {
        eprintln!("error: --verify found messages of the wrong size or checksum");
        return Ok(ExitCode::from(EXIT_VERIFY_FAILED));
    }
    if !report.errors.is_empty() || !report.connection_errors.is_empty() {
        eprintln!("error: the run had errors");
        return Ok(ExitCode::from(EXIT_ERRORS));
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks the options and builds everything the run needs.
///
/// # Errors
/// On any option out of range, an unbounded run, bad addresses, or a non-loopback target
/// without permission.
pub fn plan(args: &Args) -> anyhow::Result<Plan> {
    ensure!(
        args.messages.is_some() || args.duration.is_some(),
        "give --duration or --messages: runs are always bounded"
    );
    ensure!(
        (1..=CLIENTS_MAX).contains(&args.clients),
        "--clients must be 1..={CLIENTS_MAX}"
    );
    ensure!(
        (1..=THREADS_MAX).contains(&args.threads) && args.threads <= args.clients,
        "--threads must be 1..={THREADS_MAX} and at most --clients"
    );
    ensure!(
        args.messages.is_none_or(|m| m >= 1),
        "--messages must be at least 1"
    );
    let duration_secs = args
        .duration
        .map(|secs| check_secs("--duration", secs, DURATION_SECS_MAX))
        .transpose()?;
    ensure!(
        duration_secs.is_none_or(|secs| secs > 0.0),
        "--duration must be more than 0"
    );
    let warmup_secs = check_secs("--warmup", args.warmup, DURATION_SECS_MAX)?;
    let timeout_secs = check_secs("--timeout", args.timeout, TIMEOUT_SECS_MAX)?;
    ensure!(
        timeout_secs >= 0.001,
        "--timeout must be at least 0.001 seconds"
    );
    ensure!(
        (1..=PIPELINE_MAX).contains(&args.pipeline),
        "--pipeline must be 1..={PIPELINE_MAX}"
    );
    ensure!(
        args.protocol == Protocol::Imap || (args.imap_fetch == ImapFetch::One && !args.examine),
        "--imap-fetch and --examine are for --protocol imap"
    );
    ensure!(
        args.imap_fetch == ImapFetch::One || args.pipeline == 1,
        "--imap-fetch all asks for a whole pass in one command; --pipeline does not apply"
    );
    check_credential("--password", &args.password)?;
    let addresses = addresses(args)?;
    let target = resolve_target(&args.target, args.allow_non_loopback)?;
    let cpus = args
        .cpu
        .as_deref()
        .map(parse_cpu_list)
        .transpose()?
        .unwrap_or_default();
    let run_time_secs = warmup_secs + duration_secs.unwrap_or(TIME_LIMIT_DEFAULT_SECS);
    let config = RunConfig {
        target,
        protocol: args.protocol,
        session: SessionConfig {
            user: String::new(),
            password: args.password.clone(),
            pipeline: args.pipeline,
            reconnect_every_msgs: args.reconnect_every,
            check_checksums: args.verify_checksums,
            imap_fetch: args.imap_fetch,
            imap_examine: args.examine,
        },
        addresses,
        warmup: Duration::from_secs_f64(warmup_secs),
        run_time: Duration::from_secs_f64(run_time_secs),
        messages_total: args.messages,
        reply_timeout: Duration::from_secs_f64(timeout_secs),
        busy_poll: args.busy_poll && !args.epoll,
        verify: args.verify || args.verify_checksums,
        errors_max: args.max_errors,
    };
    Ok(Plan {
        config,
        n_threads: args.threads,
        n_clients: args.clients,
        cpus,
    })
}

/// The inbox addresses, from `--address-file` or the `--address` pattern.
fn addresses(args: &Args) -> anyhow::Result<Vec<String>> {
    let addresses: Vec<String> = if let Some(path) = &args.address_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --address-file {}", path.display()))?;
        text.lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::to_owned)
            .take(INBOXES_MAX + 1)
            .collect()
    } else {
        let n_inboxes = args.inboxes.unwrap_or(args.clients);
        ensure!(
            args.address.contains("{n}") || n_inboxes == 1,
            "--address {:?} has no {{n}}: give --inboxes 1, or a pattern",
            args.address
        );
        ensure!(
            n_inboxes <= INBOXES_MAX,
            "--inboxes must be at most {INBOXES_MAX}"
        );
        (0..n_inboxes)
            .map(|n| args.address.replace("{n}", &n.to_string()))
            .collect()
    };
    ensure!(!addresses.is_empty(), "no inbox address given");
    ensure!(
        addresses.len() <= INBOXES_MAX,
        "more than {INBOXES_MAX} addresses"
    );
    for address in &addresses {
        check_credential("address", address)?;
    }
    Ok(addresses)
}

fn check_secs(flag: &str, secs: f64, max: f64) -> anyhow::Result<f64> {
    ensure!(
        secs.is_finite() && (0.0..=max).contains(&secs),
        "{flag} must be between 0 and {max} seconds"
    );
    Ok(secs)
}

/// Addresses and passwords go into command lines: no spaces, controls or line breaks.
fn check_credential(what: &str, text: &str) -> anyhow::Result<()> {
    ensure!(
        !text.is_empty()
            && text.len() <= CREDENTIAL_BYTES_MAX
            && text.bytes().all(|b| b.is_ascii_graphic()),
        "{what} {text:?} must be 1..={CREDENTIAL_BYTES_MAX} printable ASCII characters without spaces"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut argv = vec!["mail-reader", "127.0.0.1:110"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv)
    }

    #[test]
    fn accepted_option_sets() {
        let cases: &[&[&str]] = &[
            &["-p", "pop3", "-d", "1"],
            &[
                "-p",
                "pop3",
                "-m",
                "10",
                "--pipeline",
                "8",
                "--reconnect-every",
                "50",
            ],
            &[
                "-p",
                "imap",
                "-d",
                "1",
                "--imap-fetch",
                "all",
                "--examine",
                "--verify",
            ],
            &[
                "-p",
                "imap",
                "-d",
                "1",
                "-c",
                "4",
                "--inboxes",
                "2",
                "--address",
                "r{n}@x.test",
            ],
            &[
                "-p",
                "pop3",
                "-d",
                "1",
                "-c",
                "4",
                "--threads",
                "2",
                "--cpu",
                "0-1",
                "--epoll",
            ],
        ];
        for case in cases {
            let args = args(case).unwrap_or_else(|e| panic!("{case:?}: {e}"));
            plan(&args).unwrap_or_else(|e| panic!("{case:?}: {e:#}"));
        }
    }

    #[test]
    fn refused_option_sets() {
        let cases: &[&[&str]] = &[
            &["-p", "pop3"],
            &["-p", "pop3", "-d", "1", "--pipeline", "0"],
            &["-p", "pop3", "-d", "1", "--imap-fetch", "all"],
            &[
                "-p",
                "imap",
                "-d",
                "1",
                "--imap-fetch",
                "all",
                "--pipeline",
                "4",
            ],
            &[
                "-p",
                "pop3",
                "-d",
                "1",
                "--address",
                "fixed@x.test",
                "--inboxes",
                "3",
            ],
            &["-p", "pop3", "-d", "1", "--address", "a b{n}@x.test"],
            &["-p", "pop3", "-d", "1", "--password", ""],
            &["-p", "pop3", "-d", "1", "-c", "1", "--threads", "2"],
            &["-p", "pop3", "-d", "-1"],
        ];
        for case in cases {
            let result = args(case)
                .map_err(anyhow::Error::from)
                .and_then(|a| plan(&a));
            assert!(result.is_err(), "{case:?} was accepted");
        }
    }

    #[test]
    fn address_pattern_and_inboxes() {
        let args = args(&[
            "-p",
            "pop3",
            "-d",
            "1",
            "-c",
            "3",
            "--address",
            "r{n}@x.test",
        ])
        .unwrap();
        let plan = plan(&args).unwrap();
        assert_eq!(
            plan.config.addresses,
            ["r0@x.test", "r1@x.test", "r2@x.test"]
        );
    }

    #[test]
    fn non_loopback_needs_permission() {
        let args = Args::try_parse_from(["mail-reader", "192.0.2.1:110", "-p", "pop3", "-d", "1"])
            .unwrap();
        assert!(plan(&args).is_err());
    }
}
