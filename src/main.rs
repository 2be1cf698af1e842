//! The `mayfly` binary: read the configuration, set up logging, TLS and signals, run the
//! server.

#![deny(clippy::undocumented_unsafe_blocks)]

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::sync::Arc;

use mayfly::config::{Config, EXIT_CODE_CONFIG};
use mayfly::net::tls::TlsCerts;
use mayfly::runtime::{self, Ready, Shutdown};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tracing_subscriber::EnvFilter;

/// Log lines queued for the writer thread before new ones are dropped.
const LOG_QUEUE_LINES: usize = 64 * 1024;

/// mimalloc, zeroing every block it is given back (see `mayfly::alloc`), so deleted and
/// expired mail does not linger in freed session, parser and response buffers.
#[global_allocator]
static GLOBAL: mayfly::alloc::WipingMiMalloc = mayfly::alloc::WipingMiMalloc;

/// `mayfly keygen FILE`: writes a new encryption key for `--encryption-key-file`.
fn keygen(args: &[std::ffi::OsString]) -> ExitCode {
    let [path] = args else {
        eprintln!(
            "usage: mayfly keygen FILE (writes a new random key, mode 0600, never over a file)"
        );
        return ExitCode::from(EXIT_CODE_CONFIG as u8);
    };
    let path = std::path::Path::new(path);
    match mayfly::journal::crypto::write_new_key_file(path) {
        Ok(()) => {
            let fingerprint = mayfly::journal::crypto::KeyRing::load(path)
                .map(|keys| format!("{:016x}", keys.current_id()))
                .unwrap_or_default();
            println!(
                "wrote a new key to {} (fingerprint {fingerprint})",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("mayfly keygen: cannot write {}: {error}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// `mayfly partition-map MAP OUT_DIR [HAPROXY_LISTEN]`: checks a partition map and writes
/// what Postfix and HAProxy need from it (docs/scale-out.md): `postfix-transport.pcre`,
/// `haproxy.map`, `haproxy.cfg` (its frontend on HAPROXY_LISTEN, default `*:80`, reading
/// the map from OUT_DIR), and `owned-partitions` (one `NAME LIST` line per node, the
/// `--owned-partitions` of each).
fn partition_map(args: &[std::ffi::OsString]) -> ExitCode {
    let usage = "usage: mayfly partition-map MAP OUT_DIR [HAPROXY_LISTEN]";
    let (map_path, out_dir, listen) = match args {
        [map, out] => (map, out, "*:80".to_string()),
        [map, out, listen] => (map, out, listen.to_string_lossy().into_owned()),
        _ => {
            eprintln!("{usage}");
            return ExitCode::from(EXIT_CODE_CONFIG as u8);
        }
    };
    let fail = |what: String| {
        eprintln!("mayfly partition-map: {what}");
        ExitCode::from(EXIT_CODE_CONFIG as u8)
    };
    let text = match std::fs::read_to_string(map_path) {
        Ok(text) => text,
        Err(error) => {
            return fail(format!(
                "cannot read {}: {error}",
                map_path.to_string_lossy()
            ));
        }
    };
    let map = match mayfly::partition::PartitionMap::parse(&text) {
        Ok(map) => map,
        Err(why) => return fail(format!("{}: {why}", map_path.to_string_lossy())),
    };
    let out_dir = std::path::Path::new(out_dir);
    let haproxy_map = out_dir.join("haproxy.map");
    let owned: String = map
        .nodes
        .iter()
        .map(|node| format!("{} {}\n", node.name, node.owned))
        .collect();
    let files = [
        ("postfix-transport.pcre", map.postfix_transport()),
        ("haproxy.map", map.haproxy_map()),
        (
            "haproxy.cfg",
            map.haproxy_config(&listen, &haproxy_map.to_string_lossy()),
        ),
        ("owned-partitions", owned),
    ];
    for (name, contents) in files {
        let path = out_dir.join(name);
        if let Err(error) = std::fs::write(&path, contents) {
            return fail(format!("cannot write {}: {error}", path.display()));
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|arg| arg == "keygen") {
        return keygen(&args[2..]);
    }
    if args.get(1).is_some_and(|arg| arg == "partition-map") {
        return partition_map(&args[2..]);
    }
    // Help and version exit 0 on stdout; a bad flag or config value exits non-zero with one line.
    let config = Config::load(args).unwrap_or_else(|error| error.exit());
    // Before any executor starts, so every message buffer is freed under one setting.
    mayfly::alloc::set_wipe_on_free(config.wipe_freed_memory);
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log_level));
    // Executors must never block on a slow stderr (a full pipe, a stalled journald): log
    // lines go through a bounded queue to a writer thread, and are dropped, not waited
    // for, if it ever fills. The guard flushes what is queued when main returns.
    let (log_writer, _log_guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("mayfly-log")
        .finish(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(log_writer)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    // A certificate that cannot be loaded is a configuration error like a bad flag: one
    // line naming the flag and file, and no listener ever serves plaintext instead.
    let tls = match TlsCerts::from_config(&config) {
        Ok(tls) => tls,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_CODE_CONFIG as u8);
        }
    };
    let shutdown = Shutdown::new();
    if let Err(error) = spawn_signal_thread(shutdown.clone(), tls.clone()) {
        eprintln!("mayfly: cannot install signal handlers: {error}");
        return ExitCode::FAILURE;
    }
    let result = runtime::run(config, tls, shutdown, |ready| {
        // Tests and scripts wait for this line; it is the only thing written to stdout.
        let listeners = listeners_text(&ready);
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "mayfly listening {listeners}");
        let _ = stdout.flush();
        let status = format!("serving {listeners}");
        if let Err(error) = mayfly::notify::ready(&status) {
            tracing::warn!("sd_notify READY failed: {error}");
        }
    });
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("mayfly: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `smtp=A http=B`, then ` smtps=C`, ` https=D`, ` pop3=E`, ` pop3s=F`, ` imap=G` and
/// ` imaps=H` when those listeners are configured
/// (scripts parse the first two by position, so they stay first).
fn listeners_text(ready: &Ready) -> String {
    let mut text = format!("smtp={} http={}", ready.smtp, ready.http);
    if let Some(addr) = ready.smtps {
        text.push_str(&format!(" smtps={addr}"));
    }
    if let Some(addr) = ready.https {
        text.push_str(&format!(" https={addr}"));
    }
    let mail_clients = [
        ("pop3", ready.pop3),
        ("pop3s", ready.pop3s),
        ("imap", ready.imap),
        ("imaps", ready.imaps),
    ];
    for (name, addr) in mail_clients {
        if let Some(addr) = addr {
            text.push_str(&format!(" {name}={addr}"));
        }
    }
    text
}

/// First SIGTERM/SIGINT starts a graceful shutdown; a second one exits at once.
/// SIGHUP re-reads the TLS certificate and key: new handshakes use them, sessions already
/// running keep theirs, and a file that does not load leaves the old certificate in place.
fn spawn_signal_thread(shutdown: Shutdown, tls: Option<Arc<TlsCerts>>) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("mayfly-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGHUP {
                    reload_tls(tls.as_deref());
                    continue;
                }
                if shutdown.is_triggered() {
                    tracing::warn!(signal, "second signal: exiting without waiting");
                    std::process::exit(1);
                }
                tracing::info!(signal, "shutting down: finishing current transactions");
                let _ = mayfly::notify::stopping();
                shutdown.trigger();
            }
        })?;
    Ok(())
}

/// What SIGHUP does: reload the certificate files, and say in the log what happened.
fn reload_tls(tls: Option<&TlsCerts>) {
    match tls {
        Some(tls) if tls.reloadable() => match tls.reload() {
            Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded; new connections use it"),
            Err(error) => {
                tracing::error!(
                    "SIGHUP: TLS certificate not reloaded, keeping the old one: {error}"
                );
            }
        },
        Some(_) => tracing::info!("SIGHUP: the self-signed certificate is kept; nothing to reload"),
        None => tracing::info!("SIGHUP: TLS is not configured; nothing to reload"),
    }
}
