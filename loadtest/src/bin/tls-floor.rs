//! tls-floor: the server CPU of a bare rustls handshake, the TLS part of the MX floor.
//!
//! A client and a server `rustls` connection talk through in-memory buffers on one thread
//! (no sockets, no SMTP): a TLS 1.3 handshake, then the session tickets the server sends
//! after it, as Mayfly's STARTTLS does. Only the server side is timed: the thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`) is read around every server call (`ServerConnection::new`,
//! `read_tls`, `process_new_packets`, `write_tls`) and summed, so the client's half of
//! the work (its key share, the signature check) is left out.
//!
//! The server configuration is Mayfly's (ring provider, TLS 1.3 and 1.2, the certificate
//! given) with the ticket options below, so `loadtest/bench/mx.py` runs it pinned to the
//! server CPU with the certificate the servers use and adds the result to smtp-sink's
//! plaintext cost to make the floor of the MX workload.
//!
//! ```text
//! tls-floor --cert cert.pem --key key.pem --handshakes 2000 --json
//! tls-floor --cert cert.pem --key key.pem --resume --ticketer   # resumed handshakes
//! tls-floor --cert cert.pem --key key.pem --kx p256              # client offers only P-256
//! ```

use std::io::{self, Read as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail, ensure};
use clap::Parser;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, ServerConfig, ServerConnection};
use smtp_blaster::tls::{Trust, client_config_with};

/// Most handshakes one run may do.
const HANDSHAKES_MAX: u64 = 10_000_000;
/// A PEM file larger than this is not a certificate or key.
const PEM_FILE_BYTES_MAX: u64 = 1 << 20;
/// Round trips after which a handshake that has not finished is a bug, not slowness.
const ROUND_TRIPS_MAX: usize = 16;
/// Handshakes before timing starts (caches, the allocator, the first full handshake).
const WARMUP_HANDSHAKES: u64 = 50;

/// The server CPU of bare rustls handshakes (in memory, one thread).
#[derive(Debug, Parser)]
#[command(name = "tls-floor", version, about)]
struct Args {
    /// PEM certificate chain of the server (leaf first).
    #[arg(long)]
    cert: PathBuf,
    /// PEM private key of --cert.
    #[arg(long)]
    key: PathBuf,
    /// Timed handshakes.
    #[arg(long, default_value_t = 2000)]
    handshakes: u64,
    /// The client resumes its previous session (a PSK with a fresh key exchange).
    #[arg(long)]
    resume: bool,
    /// Stateless resumption: the server seals its sessions into tickets (rustls `Ticketer`)
    /// instead of keeping them in its in-memory cache.
    #[arg(long)]
    ticketer: bool,
    /// Session tickets the server sends after a TLS 1.3 handshake [default: rustls's, 2].
    #[arg(long)]
    tickets: Option<usize>,
    /// The server picks this TLS 1.3 cipher suite whatever the client prefers:
    /// aes256 (TLS13_AES_256_GCM_SHA384), aes128 (TLS13_AES_128_GCM_SHA256); default: the
    /// client's first choice (rustls and OpenSSL clients put AES-256 first).
    #[arg(long)]
    suite: Option<String>,
    /// Key-exchange group the client offers: x25519 or p256.
    #[arg(long, default_value = "x25519")]
    kx: String,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tls-floor: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    ensure!(
        (1..=HANDSHAKES_MAX).contains(&args.handshakes),
        "--handshakes must be 1..={HANDSHAKES_MAX}"
    );
    let server = Arc::new(server_config(&args)?);
    let client = client_config_for(&args)?;
    let name = ServerName::try_from("localhost").context("server name")?;
    let mut totals = Totals::default();
    for handshake_idx in 0..WARMUP_HANDSHAKES + args.handshakes {
        let outcome = handshake(&server, &client, name.clone())?;
        if handshake_idx >= WARMUP_HANDSHAKES {
            totals.add(&outcome);
        }
    }
    let n = totals.n_handshakes as f64;
    let server_cpu_us = totals.server_cpu_ns as f64 / n / 1000.0;
    let resumed_fraction = totals.n_resumed as f64 / n;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "handshakes": totals.n_handshakes,
                "resumed_fraction": resumed_fraction,
                "server_cpu_us_per_handshake": server_cpu_us,
                "server_bytes_per_handshake": totals.server_bytes as f64 / n,
                "server_writes_per_handshake": totals.server_writes as f64 / n,
                "version": totals.version,
                "cipher": totals.cipher,
                "kx": args.kx,
                "ticketer": args.ticketer,
                "tickets": args.tickets,
            })
        );
    } else {
        println!(
            "{} handshakes ({:.0}% resumed), {} {}: server CPU {server_cpu_us:.1} us per handshake, \
             {:.0} bytes in {:.1} flights from the server",
            totals.n_handshakes,
            resumed_fraction * 100.0,
            totals.version,
            totals.cipher,
            totals.server_bytes as f64 / n,
            totals.server_writes as f64 / n,
        );
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Totals {
    n_handshakes: u64,
    n_resumed: u64,
    server_cpu_ns: u64,
    server_bytes: u64,
    server_writes: u64,
    version: String,
    cipher: String,
}

impl Totals {
    fn add(&mut self, outcome: &Outcome) {
        self.n_handshakes += 1;
        self.n_resumed += u64::from(outcome.resumed);
        self.server_cpu_ns += outcome.server_cpu_ns;
        self.server_bytes += outcome.server_bytes;
        self.server_writes += outcome.server_writes;
        if self.version.is_empty() {
            self.version.clone_from(&outcome.version);
            self.cipher.clone_from(&outcome.cipher);
        }
    }
}

/// What one handshake cost the server.
#[derive(Debug)]
struct Outcome {
    resumed: bool,
    server_cpu_ns: u64,
    /// TLS bytes the server wrote, and the flights (non-empty `write_tls` rounds) they went in.
    server_bytes: u64,
    server_writes: u64,
    version: String,
    cipher: String,
}

/// The calling thread's CPU time in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a live, writable timespec; CLOCK_THREAD_CPUTIME_ID exists on Linux
    // and clock_gettime only writes the struct it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if rc != 0 {
        return 0;
    }
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Runs one handshake through memory, then delivers the server's tickets to the client.
fn handshake(
    server_config: &Arc<ServerConfig>,
    client_config: &Arc<ClientConfig>,
    name: ServerName<'static>,
) -> anyhow::Result<Outcome> {
    let mut client = ClientConnection::new(Arc::clone(client_config), name)?;
    let mut cpu_ns = 0;
    let started_ns = thread_cpu_ns();
    let mut server = ServerConnection::new(Arc::clone(server_config))?;
    cpu_ns += thread_cpu_ns() - started_ns;
    let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
    let (mut server_bytes, mut server_writes) = (0, 0);
    for _ in 0..ROUND_TRIPS_MAX {
        to_server.clear();
        while client.wants_write() {
            client.write_tls(&mut to_server)?;
        }
        let started_ns = thread_cpu_ns();
        let mut input = &to_server[..];
        while !input.is_empty() {
            server.read_tls(&mut input)?;
            server
                .process_new_packets()
                .map_err(|error| anyhow::anyhow!("server: {error}"))?;
        }
        to_client.clear();
        while server.wants_write() {
            server.write_tls(&mut to_client)?;
        }
        cpu_ns += thread_cpu_ns() - started_ns;
        if !to_client.is_empty() {
            server_bytes += to_client.len() as u64;
            server_writes += 1;
        }
        let mut input = &to_client[..];
        while !input.is_empty() {
            client.read_tls(&mut input)?;
            client
                .process_new_packets()
                .map_err(|error| anyhow::anyhow!("client: {error}"))?;
        }
        if !client.is_handshaking() && !server.is_handshaking() && !client.wants_write() {
            let version = client
                .protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default();
            let cipher = client
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default();
            return Ok(Outcome {
                resumed: client.handshake_kind() == Some(HandshakeKind::Resumed),
                server_cpu_ns: cpu_ns,
                server_bytes,
                server_writes,
                version,
                cipher,
            });
        }
    }
    bail!("the handshake did not finish in {ROUND_TRIPS_MAX} round trips")
}

fn server_config(args: &Args) -> anyhow::Result<ServerConfig> {
    let cert_pem = read_pem(&args.cert)?;
    let key_pem = read_pem(&args.key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not a PEM certificate chain", args.cert.display()))?;
    ensure!(!chain.is_empty(), "{}: no certificate", args.cert.display());
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .with_context(|| format!("{}: not a PEM private key", args.key.display()))?;
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(suite) = &args.suite {
        let first = match suite.as_str() {
            "aes256" => rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
            "aes128" => rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
            other => bail!("--suite must be aes256 or aes128, not {other:?}"),
        };
        provider.cipher_suites.sort_by_key(|s| s.suite() != first);
    }
    let provider = Arc::new(provider);
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.ignore_client_order = args.suite.is_some();
    if args.ticketer {
        config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    }
    if let Some(tickets) = args.tickets {
        config.send_tls13_tickets = tickets;
    }
    Ok(config)
}

fn client_config_for(args: &Args) -> anyhow::Result<Arc<ClientConfig>> {
    let group = match args.kx.as_str() {
        "x25519" => rustls::crypto::ring::kx_group::X25519,
        "p256" => rustls::crypto::ring::kx_group::SECP256R1,
        other => bail!("--kx must be x25519 or p256, not {other:?}"),
    };
    // The client offers (and sends a key share for) this one group only.
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![group];
    client_config_with(Trust::Insecure, args.resume, provider)
}

fn read_pem(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(PEM_FILE_BYTES_MAX + 1).read_to_end(&mut bytes))
        .map_err(|error: io::Error| anyhow::anyhow!("{}: {error}", path.display()))?;
    ensure!(
        bytes.len() as u64 <= PEM_FILE_BYTES_MAX,
        "{}: too large for a PEM file",
        path.display()
    );
    Ok(bytes)
}
