//! `smtp-blaster`: parses the command line and hands over to [`smtp_blaster::run`].

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = smtp_blaster::cli::Args::parse();
    match smtp_blaster::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
