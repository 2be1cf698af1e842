//! Command line and environment of the real binary: the ready line, and bad flag and
//! `MAYFLY_*` values, which must exit non-zero with one line on stderr that names the flag
//! or variable.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{Server, mayfly_bin, parse_ready_line, run_to_exit};

/// A bad value must be reported long before this.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// `EX_CONFIG`, the status of a configuration error.
const EXIT_CODE_CONFIG: i32 = 78;
/// Keep a server started through the environment as light as the harness's defaults.
const LIGHT_ENV: &[(&str, &str)] = &[
    ("MAYFLY_CORES", "1"),
    ("MAYFLY_MAX_MEMORY", "32MiB"),
    ("MAYFLY_MAX_MESSAGE_SIZE", "1MiB"),
    ("MAYFLY_SHUTDOWN_GRACE", "2s"),
];

/// How a run of the binary ended.
enum Outcome {
    /// It printed this ready line (and was then killed).
    Ready(String),
    /// It exited before it was ready, with this status and stderr.
    Exited(ExitStatus, String),
}

/// Runs the binary with `args` and exactly the `MAYFLY_*` variables in `env` (any the
/// test process has are removed), until it prints its ready line or exits.
fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut command = Command::new(mayfly_bin());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MAYFLY_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mayfly");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let (line_sender, line_receiver) = mpsc::channel();
    // The sender is dropped when stdout closes, which is how an early exit shows up here.
    thread::spawn(move || {
        if let Some(Ok(line)) = BufReader::new(stdout).lines().next() {
            let _ = line_sender.send(line);
        }
    });
    let stderr_thread = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    match line_receiver.recv_timeout(EXIT_TIMEOUT) {
        Ok(line) => {
            let _ = child.kill();
            let _ = child.wait();
            Outcome::Ready(line)
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let status = child.wait().expect("wait for mayfly");
            Outcome::Exited(status, stderr_thread.join().unwrap_or_default())
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mayfly {args:?} {env:?} neither got ready nor exited in {EXIT_TIMEOUT:?}");
        }
    }
}

fn assert_rejected(args: &[&str], flag: &str) {
    let mut full_args = vec!["--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0"];
    full_args.extend_from_slice(args);
    let (status, stdout, stderr) = run_to_exit(&full_args, EXIT_TIMEOUT);
    assert!(
        !status.success(),
        "{args:?} was accepted; stdout {stdout:?} stderr {stderr:?}"
    );
    assert!(
        !stdout.contains("mayfly listening"),
        "{args:?}: server started: {stdout:?}"
    );
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: want exactly one line on stderr, got {stderr:?}"
    );
    assert!(
        lines[0].contains(flag),
        "{args:?}: stderr does not name {flag}: {stderr:?}"
    );
}

#[test]
fn bad_flag_values_exit_non_zero_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["--ttl", "nope"], "--ttl"),
        (&["--ttl", "10 parsecs"], "--ttl"),
        (&["--max-memory", "lots"], "--max-memory"),
        (&["--max-memory", "12XB"], "--max-memory"),
        (&["--cores", "many"], "--cores"),
        (&["--command-timeout", "30"], "--command-timeout"),
        (&["--max-message-size", "10MB"], "--max-message-size"),
        (&["--cores", "0"], "--cores"),
        (&["--max-recipients", "x"], "--max-recipients"),
    ];
    for (args, flag) in cases {
        assert_rejected(args, flag);
    }
}

#[test]
fn bad_listen_address_is_rejected() {
    let (status, _stdout, stderr) = run_to_exit(
        &["--smtp", "not-an-address", "--http", "127.0.0.1:0"],
        EXIT_TIMEOUT,
    );
    assert!(!status.success(), "bad --smtp accepted: {stderr:?}");
    assert!(
        stderr.contains("--smtp"),
        "stderr does not name --smtp: {stderr:?}"
    );
}

#[test]
fn message_size_larger_than_a_cores_memory_share_is_rejected() {
    let (status, stdout, stderr) = run_to_exit(
        &[
            "--smtp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--cores",
            "2",
            "--max-memory",
            "4MiB",
            "--max-message-size",
            "4MiB",
        ],
        EXIT_TIMEOUT,
    );
    assert!(
        !status.success(),
        "4 MiB messages in 2 MiB shards accepted: {stdout:?} {stderr:?}"
    );
    assert!(
        stderr.contains("--max-message-size"),
        "stderr does not name --max-message-size: {stderr:?}"
    );
}

#[test]
fn ready_line_names_both_listeners_and_they_answer() {
    let server = Server::start(&["--cores", "2"]);
    let (smtp, http) = parse_ready_line(&server.ready_line).expect("ready line parses");
    assert_eq!(
        server.ready_line,
        format!("mayfly listening smtp={smtp} http={http}")
    );
    assert!(smtp.ip().is_loopback() && http.ip().is_loopback());
    assert_ne!(smtp.port(), http.port());
    // Every core answers on the one SMTP port: open enough sessions that both get some.
    let sessions: Vec<common::Smtp> = (0..8).map(|_| server.smtp_ehlo()).collect();
    assert_eq!(sessions.len(), 8);
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn config_file_is_read_and_flags_override_it() {
    let path = std::env::temp_dir().join(format!("mayfly-itest-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "domains = [\"conf.test\", \"*.wild.conf.test\"]\nttl = \"2m\"\nmax_recipients = 2\n",
    )
    .expect("write config");
    let config = path.to_str().expect("utf-8 path");
    let server = Server::start(&["--config", config, "--ttl", "3m"]);
    let created = server.post_json("/api/v1/addresses", "");
    assert_eq!(created.status, 201, "{}", created.describe());
    let created = created.json();
    assert_eq!(
        created["domain"], "conf.test",
        "domains from the file: {created}"
    );
    assert_eq!(
        created["ttl_seconds"], 180,
        "--ttl overrides the file: {created}"
    );
    let mut smtp = server.smtp_ehlo();
    smtp.expect("MAIL FROM:<c@sender.test>", "250");
    smtp.expect("RCPT TO:<a@conf.test>", "250");
    smtp.expect("RCPT TO:<b@x.wild.conf.test>", "250");
    smtp.expect("RCPT TO:<c@conf.test>", "452 4.5.3");
    smtp.expect("RCPT TO:<d@other.test>", "550 5.7.1");
    drop(server);

    std::fs::write(&path, "ttl = \"1h\"\nno_such_key = 1\n").expect("write config");
    let (status, _stdout, stderr) = run_to_exit(
        &[
            "--smtp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--config",
            config,
        ],
        EXIT_TIMEOUT,
    );
    let _ = std::fs::remove_file(&path);
    assert!(!status.success(), "unknown config key accepted: {stderr:?}");
    assert!(
        stderr.contains("no_such_key"),
        "stderr does not name the unknown key: {stderr:?}"
    );
}

#[test]
fn settings_come_from_the_environment_below_flags() {
    // MAYFLY_SMTP and MAYFLY_HTTP pick free ports, so a ready line whose ports are not the
    // defaults (2525, 8025) shows the variables were read; the unknown variables are
    // ignored, and the bad MAYFLY_TTL is never parsed because the flag overrides it.
    let mut env = LIGHT_ENV.to_vec();
    env.extend([
        ("MAYFLY_SMTP", "127.0.0.1:0"),
        ("MAYFLY_HTTP", "127.0.0.1:0"),
        ("MAYFLY_TTL", "not a duration"),
        ("MAYFLY_SKIP_BROWSER", "1"),
        ("MAYFLY_NO_SUCH_SETTING", "whatever"),
    ]);
    let line = match run_with_env(&["--ttl", "1m"], &env) {
        Outcome::Ready(line) => line,
        Outcome::Exited(status, stderr) => panic!("exited {status}: {stderr}"),
    };
    let (smtp, http) = parse_ready_line(&line).expect("ready line parses");
    assert!(smtp.ip().is_loopback() && http.ip().is_loopback(), "{line}");
    assert!(smtp.port() != 2525 && http.port() != 8025, "{line}");
}

#[test]
fn bad_environment_values_exit_with_one_line_naming_the_variable() {
    // (variable, value, the value the message quotes: a list's bad item)
    let cases: &[(&str, &str, &str)] = &[
        ("MAYFLY_TTL", "nope", "nope"),
        ("MAYFLY_MAX_MEMORY", "12XB", "12XB"),
        ("MAYFLY_REQUIRE_TLS", "maybe", "maybe"),
        (
            "MAYFLY_DOMAINS",
            "ok.test,bad domain.test",
            "bad domain.test",
        ),
        ("MAYFLY_CLIENT_LIMIT_EXEMPT", "10.1.2.3/8", "10.1.2.3/8"),
        ("MAYFLY_WIPE_FREED_MEMORY", "sometimes", "sometimes"),
    ];
    for (name, value, quoted) in cases {
        let mut env = LIGHT_ENV.to_vec();
        env.push((name, value));
        let (status, stderr) =
            match run_with_env(&["--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0"], &env) {
                Outcome::Exited(status, stderr) => (status, stderr),
                Outcome::Ready(line) => panic!("{name}={value:?} was accepted: {line}"),
            };
        assert_eq!(status.code(), Some(EXIT_CODE_CONFIG), "{name}: {stderr:?}");
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|line| !line.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "{name}: want one line, got {stderr:?}");
        assert!(
            lines[0].starts_with(&format!("error: invalid value '{quoted}' for {name}: ")),
            "{name}: {stderr:?}"
        );
    }
}

#[test]
fn help_lists_the_new_settings_and_the_environment() {
    let (status, stdout, _stderr) = run_to_exit(&["--help"], EXIT_TIMEOUT);
    assert!(status.success());
    for expected in [
        "--max-sessions-per-ip <N>",
        "--max-messages-per-ip-per-minute <N>",
        "--client-limit-exempt <CIDR>",
        "--data-deadline <DURATION>",
        "--http-request-timeout <DURATION>",
        "--stress-command-timeout <DURATION>",
        "--wipe-freed-memory <BOOL>",
        "MAYFLY_MAX_MEMORY",
    ] {
        assert!(
            stdout.contains(expected),
            "--help lacks {expected}: {stdout}"
        );
    }
}
