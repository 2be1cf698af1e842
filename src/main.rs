//! The `mayfly` binary: read the configuration, set up logging and signals, run the server.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use mayfly::config::Config;
use mayfly::runtime::{self, Shutdown};
use signal_hook::consts::{SIGINT, SIGTERM};
use tracing_subscriber::EnvFilter;

/// Log lines queued for the writer thread before new ones are dropped.
const LOG_QUEUE_LINES: usize = 64 * 1024;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Help and version exit 0 on stdout; a bad flag or config value exits non-zero with one line.
    let config = Config::load(std::env::args_os()).unwrap_or_else(|error| error.exit());
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

    let shutdown = Shutdown::new();
    if let Err(error) = spawn_signal_thread(shutdown.clone()) {
        eprintln!("mayfly: cannot install signal handlers: {error}");
        return ExitCode::FAILURE;
    }
    let result = runtime::run(config, shutdown, |ready| {
        // Tests and scripts wait for this line; it is the only thing written to stdout.
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(
            stdout,
            "mayfly listening smtp={} http={}",
            ready.smtp_addr, ready.http_addr
        );
        let _ = stdout.flush();
        let status = format!("serving smtp={} http={}", ready.smtp_addr, ready.http_addr);
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

/// First SIGTERM/SIGINT starts a graceful shutdown; a second one exits at once.
fn spawn_signal_thread(shutdown: Shutdown) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("mayfly-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
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
