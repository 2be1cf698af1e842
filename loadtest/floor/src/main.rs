//! `floor-sink`: a do-nothing SMTP sink on one pinned thread, on glommio 0.9 or on monoio
//! with a chosen set of io_uring setup flags. It measures what the runtime itself costs per
//! message, against Postfix's `smtp-sink`; `loadtest/bench/floor.py` drives it with
//! `smtp-source` and reports the numbers (docs/performance.md, "The runtime floor").
//!
//! ```text
//! floor-sink --runtime glommio|glommio-thread|monoio|monoio-coop|monoio-coop-flag|monoio-defer
//!            [--cpu 0] [--listen 127.0.0.1:0] [--connections-max 1024] [--journal FILE]
//!            [--tls-cert PEM --tls-key PEM]
//! ```
//!
//! With a certificate, EHLO offers STARTTLS, configured as Mayfly configures it (the MX
//! workload's floor per runtime: `loadtest/bench/mx.py --servers floor:RUNTIME`).
//!
//! With `--journal FILE`, every message's 250 waits until a 1 KiB record of it is durable in
//! FILE (group commit, as the server's journal does it: `journal.rs`).
//!
//! It prints `listening on ADDR` on stdout once it accepts, and runs until it is killed.

mod glommio_sink;
mod journal;
mod monoio_sink;
mod sink;

use std::io::{self, Write as _};
use std::net::SocketAddr;

use anyhow::{Context as _, bail};

use crate::monoio_sink::Setup;

/// io_uring entries per ring; Mayfly's `IO_URING_DEPTH`, so glommio runs as in the server.
const RING_ENTRIES: usize = 4096;
/// Listen backlog; the benchmark scripts give `smtp-sink` the same.
const LISTEN_BACKLOG: i32 = 1024;
const CONNECTIONS_MAX_DEFAULT: usize = 1024;
/// The most `--connections-max` may be: far above any load this tool is meant for.
const CONNECTIONS_MAX_LIMIT: usize = 100_000;
/// Descriptors besides connections: stdio, the listener, the rings, eventfds.
const FDS_RESERVED: u64 = 64;

const USAGE: &str = "usage: floor-sink --runtime glommio|glommio-thread|monoio|monoio-coop|monoio-coop-flag|monoio-defer \
[--cpu N] [--listen ADDR] [--connections-max N] [--journal FILE] [--tls-cert PEM --tls-key PEM]";

/// Which runtime serves, and for monoio, which setup flags its ring gets.
#[derive(Debug, Clone, Copy)]
enum Runtime {
    /// glommio; `true`: a `--journal` is written by a plain thread, not glommio's DMA file.
    Glommio(bool),
    Monoio(Setup),
}

struct Args {
    runtime: Runtime,
    cpu: usize,
    listen: SocketAddr,
    connections_max: usize,
    journal: Option<std::path::PathBuf>,
    tls_cert: Option<std::path::PathBuf>,
    tls_key: Option<std::path::PathBuf>,
}

/// The server's TLS configuration as Mayfly builds it: TLS 1.3 and 1.2 with ring, the
/// server's order of suites (AES-128-GCM/SHA-256 first), sessions sealed into one ticket
/// per handshake, no 0-RTT.
fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{}: not a PEM certificate chain", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("{}: not a PEM private key", key.display()))?;
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    let mut config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.ignore_client_order = true;
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    config.send_tls13_tickets = 1;
    Ok(config)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args(std::env::args().skip(1))?;
    check_fd_limit(args.connections_max)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(std::sync::Arc::new(tls_config(cert, key)?)),
        (None, None) => None,
        _ => bail!("--tls-cert and --tls-key go together\n{USAGE}"),
    };
    if let Some(path) = &args.journal {
        journal::prepare_file(path)
            .with_context(|| format!("cannot prepare the journal file {}", path.display()))?;
    }
    let listener = bind(args.listen)?;
    let addr = listener
        .local_addr()
        .context("cannot read the listening address")?;
    // The listener is bound and listening: connections queue from now on, so the caller
    // may start sending as soon as it reads this line.
    writeln!(io::stdout(), "listening on {addr}").context("cannot write to stdout")?;
    io::stdout().flush().context("cannot write to stdout")?;
    match args.runtime {
        Runtime::Glommio(journal_thread) => glommio_sink::run(
            listener,
            args.cpu,
            args.connections_max,
            args.journal,
            tls,
            journal_thread,
        ),
        Runtime::Monoio(setup) => monoio_sink::run(
            listener,
            args.cpu,
            args.connections_max,
            setup,
            args.journal,
            tls,
        ),
    }
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut runtime = None;
    let mut cpu = 0;
    let mut listen: SocketAddr = "127.0.0.1:0".parse().expect("a valid literal address");
    let mut connections_max = CONNECTIONS_MAX_DEFAULT;
    let mut journal = None;
    let (mut tls_cert, mut tls_key) = (None, None);
    while let Some(flag) = argv.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let Some(value) = argv.next() else {
            bail!("{flag} needs a value\n{USAGE}");
        };
        match flag.as_str() {
            "--runtime" => {
                runtime = Some(match value.as_str() {
                    "glommio" => Runtime::Glommio(false),
                    "glommio-thread" => Runtime::Glommio(true),
                    "monoio" => Runtime::Monoio(Setup::Plain),
                    "monoio-coop" => Runtime::Monoio(Setup::Coop),
                    "monoio-coop-flag" => Runtime::Monoio(Setup::CoopTaskrunFlag),
                    "monoio-defer" => Runtime::Monoio(Setup::Defer),
                    other => bail!("unknown runtime {other:?}\n{USAGE}"),
                })
            }
            "--cpu" => {
                cpu = value
                    .parse()
                    .with_context(|| format!("bad --cpu {value:?}"))?
            }
            "--listen" => {
                listen = value
                    .parse()
                    .with_context(|| format!("bad --listen {value:?}"))?
            }
            "--connections-max" => {
                connections_max = value
                    .parse()
                    .with_context(|| format!("bad --connections-max {value:?}"))?;
                if !(1..=CONNECTIONS_MAX_LIMIT).contains(&connections_max) {
                    bail!("--connections-max must be 1 to {CONNECTIONS_MAX_LIMIT}");
                }
            }
            "--journal" => journal = Some(std::path::PathBuf::from(value)),
            "--tls-cert" => tls_cert = Some(std::path::PathBuf::from(value)),
            "--tls-key" => tls_key = Some(std::path::PathBuf::from(value)),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let Some(runtime) = runtime else {
        bail!("--runtime is required\n{USAGE}");
    };
    Ok(Args {
        runtime,
        cpu,
        listen,
        connections_max,
        journal,
        tls_cert,
        tls_key,
    })
}

/// Refuses to start if `connections_max` connections could run out of descriptors: an
/// accept loop that hits EMFILE would stop the run.
fn check_fd_limit(connections_max: usize) -> anyhow::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable `rlimit` for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
    }
    let needed = connections_max as u64 + FDS_RESERVED;
    if limit.rlim_cur < needed {
        bail!(
            "--connections-max {connections_max} needs {needed} descriptors, the limit is {} (ulimit -n)",
            limit.rlim_cur
        );
    }
    Ok(())
}

fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .context("cannot create the listening socket")?;
    socket.set_reuse_address(true).context("SO_REUSEADDR")?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("cannot bind {addr}"))?;
    socket
        .listen(LISTEN_BACKLOG)
        .with_context(|| format!("cannot listen on {addr}"))?;
    Ok(socket.into())
}

/// Pins the calling thread to `cpu` (glommio pins its executor itself).
fn pin_this_thread(cpu: usize) -> anyhow::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        bail!("--cpu {cpu} is beyond CPU_SETSIZE");
    }
    // SAFETY: `cpu_set_t` is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu < CPU_SETSIZE` (checked above), so the bit is inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid `cpu_set_t` of the size passed.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("cannot pin to CPU {cpu}"));
    }
    Ok(())
}

/// Accept errors that concern one connection only (it was reset before it was accepted,
/// or a signal came); anything else ends the sink, since the run it serves is not valid.
fn accept_error_is_transient(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EINTR | libc::EPROTO)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Args> {
        parse_args(args.iter().map(|arg| arg.to_string()))
    }

    #[test]
    fn arguments() {
        let args = parse(&[
            "--runtime",
            "monoio-defer",
            "--cpu",
            "1",
            "--connections-max",
            "8",
        ])
        .unwrap();
        assert!(matches!(args.runtime, Runtime::Monoio(Setup::Defer)));
        assert_eq!((args.cpu, args.connections_max), (1, 8));
        assert_eq!(args.listen.to_string(), "127.0.0.1:0");
        for bad in [
            &[][..],
            &["--runtime", "tokio"],
            &["--runtime"],
            &["--runtime", "glommio", "--connections-max", "0"],
            &["--runtime", "glommio", "--cpu", "x"],
            &["--runtime", "glommio", "--bogus", "1"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
