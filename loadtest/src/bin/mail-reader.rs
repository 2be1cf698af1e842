//! `mail-reader`: parses the command line and hands over to [`smtp_blaster::reader::run`].

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = smtp_blaster::reader::cli::Args::parse();
    match smtp_blaster::reader::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
