//! The `mayfly` binary: read the configuration, set up logging and signals, run the server.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use mayfly::config::Config;
use mayfly::runtime::{self, Shutdown};
use signal_hook::consts::{SIGINT, SIGTERM};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Help and version exit 0 on stdout; a bad flag or config value exits non-zero with one line.
    let config = Config::load(std::env::args_os()).unwrap_or_else(|error| error.exit());
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
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
