//! Command line of the real binary: the ready line, and bad flag values, which must
//! exit non-zero with one line on stderr that names the flag.

mod common;

use std::time::Duration;

use common::{Server, parse_ready_line, run_to_exit};

/// A bad value must be reported long before this.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

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
