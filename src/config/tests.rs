//! Loading a `Config` end to end: defaults, flags, the file, the cross-field checks, and
//! the messages that name where a bad value came from. The environment layer's tests are
//! in `layers.rs`; value parsers are tested next to them in `values.rs`.
//!
//! Every load here passes its environment explicitly (`Config::load_from`), so a
//! `MAYFLY_*` variable in the developer's shell cannot change a result.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::config::file::CONFIG_FILE_BYTES_MAX;
use crate::config::machine::cores_available;
use crate::config::values::MIB;

/// A file under the temp directory, removed on drop.
pub(super) struct TempFile {
    path: PathBuf,
}

impl TempFile {
    pub(super) fn new(contents: impl AsRef<[u8]>) -> TempFile {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "mayfly-config-test-{}-{}.toml",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, contents).expect("write temp config file");
        TempFile { path }
    }

    pub(super) fn path(&self) -> &str {
        self.path.to_str().expect("temp dir path is UTF-8")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // Best effort: a leftover file in the temp dir is harmless.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Loads with `args` and no environment.
pub(super) fn load(args: &[&str]) -> Result<Config, Error> {
    load_env(args, &[])
}

/// Loads with `args` and exactly the environment variables `env`.
pub(super) fn load_env(args: &[&str], env: &[(&str, &str)]) -> Result<Config, Error> {
    let env = env
        .iter()
        .map(|(name, value)| (OsString::from(name), OsString::from(value)));
    Config::load_from(std::iter::once("mayfly").chain(args.iter().copied()), env)
}

/// Loads `toml` from a temp file with `args` after `--config FILE`.
pub(super) fn load_file(toml: &str, args: &[&str]) -> (TempFile, Result<Config, Error>) {
    let file = TempFile::new(toml);
    let mut all_args = vec!["--config", file.path()];
    all_args.extend_from_slice(args);
    let result = load(&all_args);
    (file, result)
}

pub(super) fn error_text(result: Result<Config, Error>) -> String {
    let err = result.expect_err("configuration should be rejected");
    let text = err.to_string();
    assert!(!text.contains('\n'), "error is not one line: {text:?}");
    text
}

#[test]
fn defaults() {
    let config = load(&[]).expect("defaults load");
    assert_eq!(config.smtp_addr.to_string(), "127.0.0.1:2525");
    assert_eq!(config.http_addr.to_string(), "127.0.0.1:8025");
    assert!(config.domains.is_catch_all());
    assert_eq!(config.ttl, Duration::from_secs(3_600));
    assert_eq!(config.memory_bytes_max, 256 * MIB);
    assert_eq!(config.message_bytes_max, 10 * MIB);
    assert_eq!(config.recipients_max, 100);
    assert_eq!(config.inbox_messages_max, 1000);
    assert_eq!(
        config.cores,
        cores_default(cores_available(), 256 * MIB, 10 * MIB)
    );
    assert!((1..=cores_available()).contains(&config.cores));
    assert_eq!(validate_dns_name(&config.hostname), Ok(()));
    assert_eq!(
        config.smtp_sessions_per_core_max,
        (256 * MIB / config.cores / 4 / machine::SMTP_SESSION_IDLE_BYTES).clamp(1000, 50_000)
    );
    assert_eq!(config.http_connections_per_core_max, 10000);
    assert_eq!(config.command_timeout, Duration::from_secs(300));
    assert_eq!(config.data_timeout, Duration::from_secs(180));
    assert_eq!(config.http_idle_timeout, Duration::from_secs(30));
    assert_eq!(config.shutdown_grace, Duration::from_secs(10));
    assert!(!config.log_client_ip);
    assert_eq!(config.log_level, "info");
    assert_eq!(config.config_file, None);
}

#[test]
fn flags() {
    let config = load(&[
        "--smtp",
        "0.0.0.0:25",
        "--http",
        "[::1]:0",
        "--domain",
        "*.example.test",
        "--domain",
        "Other.Test.",
        "--ttl",
        "10m",
        "--max-memory",
        "64MiB",
        "--max-message-size",
        "1MiB",
        "--max-recipients",
        "5",
        "--max-messages-per-inbox",
        "7",
        "--cores",
        "1",
        "--hostname",
        "mx.example.test",
        "--max-sessions-per-core",
        "11",
        "--max-http-connections-per-core",
        "12",
        "--command-timeout",
        "1m",
        "--data-timeout",
        "2m",
        "--http-idle-timeout",
        "5s",
        "--shutdown-grace",
        "0s",
        "--log-client-ip",
        "--log-level",
        "mayfly=debug,warn",
    ])
    .expect("flags load");
    assert_eq!(config.smtp_addr.to_string(), "0.0.0.0:25");
    assert_eq!(config.http_addr.to_string(), "[::1]:0");
    assert!(config.domains.accepts("example.test"));
    assert!(config.domains.accepts("a.b.example.test"));
    assert!(config.domains.accepts("other.test"));
    assert!(!config.domains.accepts("sub.other.test"));
    assert!(!config.domains.accepts("example.org"));
    assert_eq!(config.domains.first(), Some("example.test"));
    assert_eq!(config.ttl, Duration::from_secs(600));
    assert_eq!(config.memory_bytes_max, 64 * MIB);
    assert_eq!(config.message_bytes_max, MIB);
    assert_eq!(config.recipients_max, 5);
    assert_eq!(config.inbox_messages_max, 7);
    assert_eq!(config.cores, 1);
    assert_eq!(config.hostname, "mx.example.test");
    assert_eq!(config.smtp_sessions_per_core_max, 11);
    assert_eq!(config.http_connections_per_core_max, 12);
    assert_eq!(config.command_timeout, Duration::from_secs(60));
    assert_eq!(config.data_timeout, Duration::from_secs(120));
    assert_eq!(config.http_idle_timeout, Duration::from_secs(5));
    assert_eq!(config.shutdown_grace, Duration::ZERO);
    assert!(config.log_client_ip);
    assert_eq!(config.log_level, "mayfly=debug,warn");
}

#[test]
fn file_then_flags() {
    let toml = r#"
smtp = "0.0.0.0:2525"
domains = ["file.test", "*.wild.test"]
ttl = "2h"
max_memory = 67108864
max_message_size = "2MiB"
max_recipients = 50
hostname = "file.example.test"
log_client_ip = true
log_level = "debug"
"#;
    let (file, result) = load_file(toml, &["--ttl", "5m", "--max-recipients", "9"]);
    let config = result.expect("file and flags load");
    assert_eq!(config.config_file.as_deref(), Some(Path::new(file.path())));
    assert_eq!(config.smtp_addr.to_string(), "0.0.0.0:2525");
    assert!(config.domains.accepts("file.test"));
    assert!(config.domains.accepts("x.wild.test"));
    assert!(!config.domains.accepts("other.test"));
    assert_eq!(config.ttl, Duration::from_secs(300), "flag beats file");
    assert_eq!(config.recipients_max, 9, "flag beats file");
    assert_eq!(config.memory_bytes_max, 64 * MIB, "integer bytes in TOML");
    assert_eq!(config.message_bytes_max, 2 * MIB);
    assert_eq!(config.hostname, "file.example.test");
    assert!(config.log_client_ip);
    assert_eq!(config.log_level, "debug");
    assert_eq!(
        config.http_addr.to_string(),
        "127.0.0.1:8025",
        "default kept"
    );

    // `--domain` replaces the file's list rather than adding to it.
    let (_file, result) = load_file(toml, &["--domain", "flag.test"]);
    let config = result.expect("file and flags load");
    assert!(config.domains.accepts("flag.test"));
    assert!(!config.domains.accepts("file.test"));
}

#[test]
fn empty_file_gives_defaults() {
    let (_file, result) = load_file("# nothing set\n", &[]);
    let config = result.expect("empty file loads");
    assert_eq!(config.ttl, Duration::from_secs(3_600));
    assert!(config.config_file.is_some());
}

#[test]
fn unknown_key() {
    let (file, result) = load_file("ttl = \"1h\"\n\ntll = \"2h\"\n", &[]);
    assert_eq!(
        error_text(result),
        format!(
            "config file {}: unknown key 'tll' (line 3); did you mean 'ttl'?",
            file.path()
        )
    );
    let (file, result) = load_file("max-memory = \"1GiB\"\n", &[]);
    assert_eq!(
        error_text(result),
        format!(
            "config file {}: unknown key 'max-memory' (line 1); did you mean 'max_memory'?",
            file.path()
        )
    );
    let (file, result) = load_file("[smtp]\nport = 25\n", &[]);
    assert!(error_text(result).starts_with(&format!("config file {}: ", file.path())));
    let (file, result) = load_file("completely_different = 1\n", &[]);
    assert_eq!(
        error_text(result),
        format!(
            "config file {}: unknown key 'completely_different' (line 1)",
            file.path()
        )
    );
}

#[test]
fn error_can_travel() {
    // main.rs may wrap it in anyhow, which needs these.
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Error>();
}

#[test]
fn bad_flag_values() {
    let available = cores_available();
    let too_many_cores = (available + 1).to_string();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--ttl", "abc"],
            "invalid value 'abc' for --ttl: expected a duration such as 500ms, 30s, 10m, 1h or 1h30m",
        ),
        (
            &["--ttl", "0s"],
            "invalid value '0s' for --ttl: must be from 1ms to 30d",
        ),
        (
            &["--ttl", "31d"],
            "invalid value '31d' for --ttl: must be from 1ms to 30d",
        ),
        (
            &["--command-timeout", "0s"],
            "invalid value '0s' for --command-timeout: must be from 1ms to 1d",
        ),
        (
            &["--data-timeout", "2d"],
            "invalid value '2d' for --data-timeout: must be",
        ),
        (
            &["--http-idle-timeout", "5"],
            "for --http-idle-timeout: missing unit after 5",
        ),
        (
            &["--shutdown-grace", "2h"],
            "for --shutdown-grace: must be from 0s to 1h",
        ),
        (
            &["--max-memory", "10MB"],
            "invalid value '10MB' for --max-memory: ambiguous unit",
        ),
        (
            &["--max-memory", "512KiB"],
            "for --max-memory: must be at least 1MiB",
        ),
        (
            &["--max-message-size", "1KiB"],
            "for --max-message-size: must be at least 64KiB",
        ),
        (
            &["--max-recipients", "0"],
            "invalid value '0' for --max-recipients: expected a whole number from 1 to 1000",
        ),
        (
            &["--max-recipients", "-1"],
            "invalid value '-1' for --max-recipients: expected",
        ),
        (
            &["--ttl=-1s"],
            "invalid value '-1s' for --ttl: expected a duration",
        ),
        (
            &["--max-messages-per-inbox", "1e3"],
            "for --max-messages-per-inbox: expected",
        ),
        (
            &["--max-sessions-per-core", "0"],
            "for --max-sessions-per-core: expected",
        ),
        (
            &["--max-http-connections-per-core", "9999999"],
            "for --max-http-connections-per-core: expected a whole number from 1 to 1000000",
        ),
        (
            &["--cores", "0"],
            "invalid value '0' for --cores: expected a whole number from 1",
        ),
        (&["--cores", &too_many_cores], "available cores)"),
        (
            &["--smtp", "localhost:25"],
            "for --smtp: expected an IP address and port",
        ),
        (
            &["--http", "127.0.0.1"],
            "invalid value '127.0.0.1' for --http: expected ADDR:PORT",
        ),
        (
            &["--http", "127.0.0.1:65536"],
            "for --http: expected ADDR:PORT",
        ),
        (
            &["--hostname", "mx example"],
            "for --hostname: spaces are not allowed",
        ),
        (
            &["--hostname", "mx\r\n250 x"],
            "invalid value 'mx\\r\\n250 x' for --hostname",
        ),
        (
            &["--hostname", "*.example.test"],
            "for --hostname: '*' is only allowed",
        ),
        (
            &["--log-level", ""],
            "invalid value '' for --log-level: empty",
        ),
        (&["--log-level", "info=bogus"], "for --log-level: "),
        (
            &["--domain", "user@example.test"],
            "invalid value 'user@example.test' for --domain: '@' is not allowed",
        ),
        (
            &["--domain", "ok.test", "--domain", ""],
            "invalid value '' for --domain: empty",
        ),
    ];
    for (args, expected) in cases {
        let text = error_text(load(args));
        assert!(text.contains(expected), "{args:?}: {text}");
    }
    // The cores error names how many there are.
    let text = error_text(load(&["--cores", &too_many_cores]));
    assert!(
        text.contains(&format!("this machine has {available} available cores")),
        "{text}"
    );
}

#[test]
fn memory_beyond_the_machine() {
    let physical = physical_memory_bytes().expect("/proc/meminfo is readable on Linux");
    let too_much = format_size(physical + MIB);
    let text = error_text(load(&["--max-memory", &too_much]));
    assert!(text.contains("more than this machine's memory"), "{text}");
}

#[test]
fn bad_file_values() {
    let cases: &[(&str, &str)] = &[
        (
            "\nttl = \"abc\"\n",
            "invalid value 'abc' for ttl (line 2): expected a duration such as 500ms, 30s",
        ),
        (
            "ttl = 30\n",
            "invalid value '30' for ttl (line 1): missing unit after 30",
        ),
        (
            "max_recipients = -1\n",
            "invalid value '-1' for max_recipients (line 1): expected",
        ),
        (
            "max_memory = \"1 GiB\"\n",
            "for max_memory (line 1): unexpected character ' '",
        ),
        ("cores = 0\n", "invalid value '0' for cores (line 1)"),
        (
            "hostname = \"a@b\"\n",
            "for hostname (line 1): '@' is not allowed",
        ),
        (
            "domains = [\n  \"good.test\",\n  \"bad domain.test\",\n]\n",
            "invalid value 'bad domain.test' for domains (line 3): spaces are not allowed",
        ),
        ("max_recipients = 1.5\n", "(line 1)"),
        ("log_client_ip = \"yes\"\n", "(line 1)"),
        ("domains = \"one.test\"\n", "(line 1)"),
        ("\n\nttl = \n", "(line 3)"),
        ("ttl = \"1h\"\nttl = \"2h\"\n", "(line 2)"),
    ];
    for (toml, expected) in cases {
        let (file, result) = load_file(toml, &[]);
        let text = error_text(result);
        let prefix = format!("config file {}: ", file.path());
        assert!(text.starts_with(&prefix), "{toml:?}: {text}");
        assert!(text.contains(expected), "{toml:?}: {text}");
    }
    // A flag overrides a bad file value before it is parsed.
    let (_file, result) = load_file("ttl = \"abc\"\n", &["--ttl", "1m"]);
    assert_eq!(result.expect("flag wins").ttl, Duration::from_secs(60));
}

#[test]
fn unreadable_files() {
    let missing = std::env::temp_dir().join("mayfly-config-test-does-not-exist.toml");
    let text = error_text(load(&["--config", missing.to_str().expect("UTF-8 path")]));
    assert_eq!(
        text,
        format!(
            "cannot read config file {}: No such file or directory",
            missing.display()
        )
    );
    let huge = TempFile::new(vec![b'#'; CONFIG_FILE_BYTES_MAX as usize + 1]);
    let text = error_text(load(&["--config", huge.path()]));
    assert!(text.contains("larger than 1MiB"), "{text}");
    let latin1 = TempFile::new(b"hostname = \"caf\xe9\"\n");
    let text = error_text(load(&["--config", latin1.path()]));
    assert!(text.contains("not UTF-8"), "{text}");
}

#[test]
fn tls_settings() {
    let config = load(&[]).expect("defaults");
    assert_eq!(config.smtps_addr, None);
    assert_eq!(config.https_addr, None);
    assert_eq!(config.tls_cert, None);
    assert_eq!(config.tls_key, None);
    assert!(!config.tls_self_signed);
    assert!(!config.tls_required);
    assert_eq!(config.tls_handshake_timeout, Duration::from_secs(10));

    let config = load(&[
        "--smtps",
        "127.0.0.1:0",
        "--https",
        "[::1]:8443",
        "--tls-cert",
        "/etc/mayfly/cert.pem",
        "--tls-key",
        "key.pem",
        "--require-tls",
        "--tls-handshake-timeout",
        "2s",
    ])
    .expect("TLS flags load");
    assert_eq!(
        config.smtps_addr.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:0")
    );
    assert_eq!(
        config.https_addr.map(|a| a.to_string()).as_deref(),
        Some("[::1]:8443")
    );
    assert_eq!(
        config.tls_cert.as_deref(),
        Some(Path::new("/etc/mayfly/cert.pem"))
    );
    assert_eq!(config.tls_key.as_deref(), Some(Path::new("key.pem")));
    assert!(config.tls_required);
    assert_eq!(config.tls_handshake_timeout, Duration::from_secs(2));

    let toml = "smtps = \"127.0.0.1:4650\"\ntls_self_signed = true\nrequire_tls = true\n\
                tls_handshake_timeout = \"500ms\"\n";
    let (_file, result) = load_file(toml, &[]);
    let config = result.expect("TLS keys load");
    assert_eq!(config.smtps_addr.map(|a| a.port()), Some(4650));
    assert!(config.tls_self_signed);
    assert!(config.tls_required);
    assert_eq!(config.tls_handshake_timeout, Duration::from_millis(500));
    // Flags switch the booleans on over a file that has them off.
    let (_file, result) = load_file(
        "tls_self_signed = false\nrequire_tls = false\n",
        &["--tls-self-signed", "--require-tls"],
    );
    let config = result.expect("flags over file");
    assert!(config.tls_self_signed && config.tls_required);
}

#[test]
fn log_client_ip_layers() {
    assert!(!load(&[]).expect("defaults").log_client_ip);
    assert!(load(&["--log-client-ip"]).expect("flag").log_client_ip);
    let (_file, result) = load_file("log_client_ip = true\n", &[]);
    assert!(result.expect("file").log_client_ip);
    let (_file, result) = load_file("log_client_ip = false\n", &["--log-client-ip"]);
    assert!(result.expect("file and flag").log_client_ip);
}

#[test]
fn command_line_errors_help_and_version() {
    let err = load(&["--help"]).expect_err("help is an Err");
    assert!(matches!(&err, Error::Cli(e) if e.kind() == clap::error::ErrorKind::DisplayHelp));
    let help = err.to_string();
    for expected in [
        "--max-memory <SIZE>",
        "[default: 256MiB]",
        "[default: 1h]",
        "--config <FILE>",
    ] {
        assert!(help.contains(expected), "{expected}: {help}");
    }
    let err = load(&["--version"]).expect_err("version is an Err");
    assert!(err.to_string().contains(env!("CARGO_PKG_VERSION")));
    let cases: &[(&[&str], &str)] = &[
        (&["--bogus"], "unexpected argument '--bogus' found"),
        (
            &["--ttl"],
            "a value is required for '--ttl <DURATION>' but none was supplied",
        ),
        (
            &["--ttl", "1h", "--ttl", "2h"],
            "the argument '--ttl <DURATION>' cannot be used multiple times",
        ),
    ];
    for (args, expected) in cases {
        assert_eq!(error_text(load(args)), *expected, "{args:?}");
    }
}

#[test]
fn every_default_is_valid_and_documented_as_loaded() {
    let config = load(&[]).expect("defaults load");
    assert_eq!(config.smtp_sessions_per_ip_max, 50);
    assert_eq!(config.smtp_messages_per_ip_per_minute_max, 0);
    assert!(config.client_limit_exempt.is_empty());
    assert_eq!(config.data_deadline, Duration::from_secs(600));
    assert_eq!(config.http_request_timeout, Duration::from_secs(10));
    assert_eq!(config.stress_command_timeout, Duration::from_secs(10));
    assert!(config.wipe_freed_memory);
    assert_eq!(config.long_polls_per_core_max, 10_000);
    assert_eq!(config.websockets_per_core_max, 10_000);
    assert_eq!(config.http_requests_per_ip_per_sec_max, 0);
    assert_eq!(config.tls_handshake_timeout, Duration::from_secs(10));
}

#[test]
fn new_settings_from_flags() {
    let config = load(&[
        "--max-sessions-per-ip",
        "0",
        "--max-messages-per-ip-per-minute",
        "100000000",
        "--client-limit-exempt",
        "10.0.0.0/8",
        "--client-limit-exempt",
        "::1",
        "--data-deadline",
        "1ms",
        "--http-request-timeout",
        "1d",
        "--stress-command-timeout",
        "2s",
        "--wipe-freed-memory",
        "false",
    ])
    .expect("flags load");
    assert_eq!(config.smtp_sessions_per_ip_max, 0);
    assert_eq!(config.smtp_messages_per_ip_per_minute_max, 100_000_000);
    let exempt: Vec<String> = config
        .client_limit_exempt
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(exempt, ["10.0.0.0/8", "::1/128"]);
    assert!(config.is_client_limit_exempt("10.9.8.7".parse().expect("ip")));
    assert!(config.is_client_limit_exempt("::ffff:10.9.8.7".parse().expect("ip")));
    assert!(config.is_client_limit_exempt("::1".parse().expect("ip")));
    assert!(!config.is_client_limit_exempt("127.0.0.1".parse().expect("ip")));
    assert_eq!(config.data_deadline, Duration::from_millis(1));
    assert_eq!(config.http_request_timeout, Duration::from_secs(86_400));
    assert_eq!(config.stress_command_timeout, Duration::from_secs(2));
    assert!(!config.wipe_freed_memory);
    assert!(
        !load(&[])
            .expect("defaults")
            .is_client_limit_exempt("10.0.0.1".parse().expect("ip"))
    );
}

#[test]
fn stress_command_timeout_may_exceed_command_timeout() {
    let config = load(&["--command-timeout", "5s", "--stress-command-timeout", "1m"])
        .expect("a longer stress timeout is allowed");
    assert_eq!(config.stress_command_timeout, Duration::from_secs(60));
    assert_eq!(
        config.command_timeout_under_stress(),
        Duration::from_secs(5)
    );
    let config = load(&[]).expect("defaults");
    assert_eq!(
        config.command_timeout_under_stress(),
        Duration::from_secs(10)
    );
}

#[test]
fn new_settings_reject_bad_values() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--max-sessions-per-ip", "1000001"],
            "invalid value '1000001' for --max-sessions-per-ip: expected a whole number from 0 to 1000000",
        ),
        (
            &["--max-messages-per-ip-per-minute", "100000001"],
            "invalid value '100000001' for --max-messages-per-ip-per-minute: expected a whole number from 0 to 100000000",
        ),
        (
            &["--max-sessions-per-ip", "-1"],
            "invalid value '-1' for --max-sessions-per-ip: expected a whole number from 0 to 1000000",
        ),
        (
            &[
                "--client-limit-exempt",
                "10.0.0.0/8",
                "--client-limit-exempt",
                "10.1.2.3/8",
            ],
            "invalid value '10.1.2.3/8' for --client-limit-exempt: 10.1.2.3/8 has bits set after the prefix: write 10.0.0.0/8, or 10.1.2.3 alone for one address",
        ),
        (
            &["--client-limit-exempt", "relay.example.test"],
            "invalid value 'relay.example.test' for --client-limit-exempt: expected an IP address or a CIDR range",
        ),
        (
            &["--data-deadline", "0s"],
            "invalid value '0s' for --data-deadline: must be from 1ms to 1d",
        ),
        (
            &["--http-request-timeout", "1d1ms"],
            "invalid value '1d1ms' for --http-request-timeout: must be from 1ms to 1d",
        ),
        (
            &["--stress-command-timeout", "10"],
            "invalid value '10' for --stress-command-timeout: missing unit after 10",
        ),
        (
            &["--wipe-freed-memory", "maybe"],
            "invalid value 'maybe' for --wipe-freed-memory: expected true or false (also 1/0, yes/no, on/off)",
        ),
    ];
    for (args, expected) in cases {
        let text = error_text(load(args));
        assert!(text.starts_with(expected), "{args:?}: {text}");
    }
    // A value flag, unlike the switches: it needs its value.
    let text = error_text(load(&["--wipe-freed-memory"]));
    assert!(
        text.contains("a value is required for '--wipe-freed-memory <BOOL>'"),
        "{text}"
    );
}

#[test]
fn new_settings_from_the_file() {
    let toml = "max_sessions_per_ip = 7\nmax_messages_per_ip_per_minute = \"60\"\n\
                client_limit_exempt = [\"192.0.2.0/24\", \"2001:db8::/32\"]\n\
                data_deadline = \"1h\"\nhttp_request_timeout = \"5s\"\n\
                stress_command_timeout = \"1s\"\nwipe_freed_memory = false\n";
    let (_file, result) = load_file(toml, &[]);
    let config = result.expect("file loads");
    assert_eq!(config.smtp_sessions_per_ip_max, 7);
    assert_eq!(config.smtp_messages_per_ip_per_minute_max, 60);
    assert_eq!(config.client_limit_exempt.len(), 2);
    assert!(config.is_client_limit_exempt("2001:db8::5".parse().expect("ip")));
    assert_eq!(config.data_deadline, Duration::from_secs(3_600));
    assert_eq!(config.http_request_timeout, Duration::from_secs(5));
    assert_eq!(config.stress_command_timeout, Duration::from_secs(1));
    assert!(!config.wipe_freed_memory);

    // Flags replace the file's list; a flag turns wiping back on.
    let (_file, result) = load_file(
        toml,
        &[
            "--client-limit-exempt",
            "203.0.113.1",
            "--wipe-freed-memory",
            "on",
        ],
    );
    let config = result.expect("file and flags load");
    let exempt: Vec<String> = config
        .client_limit_exempt
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(exempt, ["203.0.113.1/32"]);
    assert!(config.wipe_freed_memory);

    let cases: &[(&str, &str)] = &[
        (
            "client_limit_exempt = [\n  \"10.0.0.0/8\",\n  \"10.0.0.0/33\",\n]\n",
            "invalid value '10.0.0.0/33' for client_limit_exempt (line 3): prefix length 33 is more than the 32 bits of an IPv4 address",
        ),
        (
            "client_limit_exempt = \"10.0.0.0/8\"\n",
            "invalid type: string \"10.0.0.0/8\", expected an array of strings (line 1)",
        ),
        (
            "client_limit_exempt = [\"10.0.0.0/8\",\n 8]\n",
            "invalid type: integer `8`, expected a string (line 2)",
        ),
        (
            "wipe_freed_memory = \"no\"\n",
            "invalid type: string \"no\", expected a boolean (line 1)",
        ),
        (
            "max_sessions_per_ip = 1.5\n",
            "invalid type: floating point `1.5`, expected a string or an integer (line 1)",
        ),
        (
            "\ndata_deadline = \"0ms\"\n",
            "invalid value '0ms' for data_deadline (line 2): must be from 1ms to 1d",
        ),
        (
            "[smtp]\nport = 25\n",
            "invalid type: map, expected a string or an integer (line 1)",
        ),
    ];
    for (toml, expected) in cases {
        let (file, result) = load_file(toml, &[]);
        assert_eq!(
            error_text(result),
            format!("config file {}: {expected}", file.path()),
            "{toml:?}"
        );
    }
}

#[test]
fn integers_in_any_toml_notation_reach_the_parser_as_decimal() {
    let (_file, result) = load_file("max_recipients = 0x10\nmax_memory = 67_108_864\n", &[]);
    let config = result.expect("hexadecimal and underscores are TOML integers");
    assert_eq!(config.recipients_max, 16);
    assert_eq!(config.memory_bytes_max, 64 * MIB);
}
