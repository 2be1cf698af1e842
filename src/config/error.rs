//! Why loading the configuration failed: `Error`, which names the flag, environment
//! variable or file key and the bad value, and how `main` reports it and exits.

use std::path::PathBuf;

/// Why the configuration could not be loaded.
///
/// Every variant displays as one line that names the flag, environment variable or key and
/// the bad value, except
/// [`Error::Cli`] for `--help` and `--version`, whose display is the text to print.
/// [`Error::exit`] prints the error the right way and ends the process.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line does not parse (unknown flag, missing value), or `--help` or
    /// `--version` was given: clap's error carries the text and the exit code.
    #[error("{}", cli_message(.0))]
    Cli(clap::Error),
    /// A flag's value is not valid (`flag` is written with its dashes, e.g. `--ttl`).
    #[error("invalid value '{}' for {flag}: {reason}", .value.escape_debug())]
    InvalidFlag {
        flag: String,
        /// The text as given.
        value: String,
        /// What is wrong and what is expected, e.g. "must be from 1ms to 30d".
        reason: String,
    },
    /// A `MAYFLY_*` environment variable's value is not valid (`var` is its name, e.g.
    /// `MAYFLY_TTL`).
    #[error("invalid value '{}' for {var}: {reason}", .value.escape_debug())]
    InvalidEnv {
        var: &'static str,
        /// The text as given (lossily converted if it is not UTF-8).
        value: String,
        /// As for [`Error::InvalidFlag`].
        reason: String,
    },
    /// The `--config` file cannot be read.
    #[error("cannot read config file {}: {reason}", .path.display())]
    ReadFile { path: PathBuf, reason: String },
    /// The `--config` file is not valid TOML, or a value has the wrong TOML type.
    #[error("config file {}: {message}{}", .path.display(), at_line(*.line))]
    FileSyntax {
        path: PathBuf,
        /// 1-based; `None` when the problem has no position (e.g. not UTF-8).
        line: Option<usize>,
        /// The TOML parser's message, on one line.
        message: String,
    },
    /// The `--config` file has a key that is not a setting (often a typo).
    #[error(
        "config file {}: unknown key '{}'{}{}",
        .path.display(),
        .key.escape_debug(),
        at_line(*.line),
        did_you_mean(*.suggestion)
    )]
    UnknownKey {
        path: PathBuf,
        key: String,
        line: Option<usize>,
        /// The known key it is closest to, if any is close.
        suggestion: Option<&'static str>,
    },
    /// A value in the `--config` file is not valid.
    #[error(
        "config file {}: invalid value '{}' for {key} (line {line}): {reason}",
        .path.display(),
        .value.escape_debug()
    )]
    InvalidKey {
        path: PathBuf,
        key: &'static str,
        /// 1-based line of the value.
        line: usize,
        /// The text as written (an integer in TOML shows as its digits).
        value: String,
        /// As for [`Error::InvalidFlag`].
        reason: String,
    },
    /// Settings that are valid one by one but not together (the message names them and
    /// their values).
    #[error("{0}")]
    Inconsistent(String),
}

/// Exit status for a bad configuration: `EX_CONFIG` from sysexits.h, which a systemd unit
/// can list in `RestartPreventExitStatus=` so that a typo does not cause a restart loop.
pub const EXIT_CODE_CONFIG: i32 = 78;

impl Error {
    /// Prints the error and ends the process: help and version go to stdout with status 0,
    /// command-line usage errors to stderr with clap's status 2, and every other error to
    /// stderr as `error: ...` with [`EXIT_CODE_CONFIG`].
    pub fn exit(&self) -> ! {
        match self {
            Error::Cli(err) => err.exit(),
            other => {
                eprintln!("error: {other}");
                std::process::exit(EXIT_CODE_CONFIG)
            }
        }
    }
}

fn at_line(line: Option<usize>) -> String {
    line.map(|line| format!(" (line {line})"))
        .unwrap_or_default()
}

fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion
        .map(|key| format!("; did you mean '{key}'?"))
        .unwrap_or_default()
}

/// clap's own text for `--help` and `--version`; for a usage error, its first line without
/// the "error: " prefix (the rest is a usage summary and a pointer to `--help`).
fn cli_message(err: &clap::Error) -> String {
    use clap::error::ErrorKind;
    let text = err.to_string();
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => text,
        _ => {
            let first_line = text.lines().next().unwrap_or_default();
            first_line
                .strip_prefix("error: ")
                .unwrap_or(first_line)
                .to_string()
        }
    }
}
