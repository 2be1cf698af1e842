//! Checks across settings: values that are valid one by one but not together. Each
//! message names the settings by their flags, with their values, and says what to change.
//!
//! Deliberately not checked: `stress_command_timeout` may be longer than
//! `command_timeout` (then the shorter one applies, see `Config::command_timeout_under_stress`),
//! and `data_deadline` may be shorter than `data_timeout` (each bounds something different).

use std::net::SocketAddr;

use crate::config::values::{MEMORY_BYTES_PER_CORE_MIN, format_size};
use crate::config::{Config, Durability, Error};

/// Webhooks per server: each has a queue and connections on every core.
pub const WEBHOOKS_MAX: usize = 16;

/// Cross-field checks: each value passed its own check already.
pub(super) fn check_consistency(config: &Config) -> Result<(), Error> {
    let cores = config.cores;
    let memory = config.memory_bytes_max;
    let memory_min = MEMORY_BYTES_PER_CORE_MIN.saturating_mul(cores);
    if memory < memory_min {
        return Err(Error::Inconsistent(format!(
            "--max-memory {} is less than {} per core: {} need at least {}; \
             raise --max-memory or lower --cores",
            format_size(memory),
            format_size(MEMORY_BYTES_PER_CORE_MIN),
            n_cores(cores),
            format_size(memory_min)
        )));
    }
    let share = memory / cores;
    if config.message_bytes_max > share {
        return Err(Error::Inconsistent(format!(
            "--max-message-size {} is more than one core's share of --max-memory \
             ({} / {} = {}), and each core's store must be able to hold the largest \
             message; raise --max-memory, or lower --max-message-size or --cores",
            format_size(config.message_bytes_max),
            format_size(memory),
            n_cores(cores),
            format_size(share)
        )));
    }
    if config.durability != Durability::None && config.data_dir.is_none() {
        return Err(Error::Inconsistent(format!(
            "--durability {} needs --data-dir: where the shards keep what they write",
            config.durability.as_str()
        )));
    }
    if config.encryption_key_file.is_some() && config.durability == Durability::None {
        return Err(Error::Inconsistent(
            "--encryption-key-file seals what is written to --data-dir, but --durability is none: \
             give --data-dir (and --durability snapshot or journal), or drop the key"
                .to_string(),
        ));
    }
    if config.spam_reject_score.is_some() && config.rspamd.is_none() {
        return Err(Error::Inconsistent(
            "--spam-reject-score needs --rspamd: the score comes from rspamd".to_string(),
        ));
    }
    if config.webhooks.len() > WEBHOOKS_MAX {
        return Err(Error::Inconsistent(format!(
            "{} --webhook URLs given; at most {WEBHOOKS_MAX}",
            config.webhooks.len()
        )));
    }
    if config.webhook_secret.is_some() && config.webhooks.is_empty() {
        return Err(Error::Inconsistent(
            "--webhook-secret-file signs webhook requests, but no --webhook is given".to_string(),
        ));
    }
    if config.dnsbl.len() > crate::auth::DNSBL_ZONES_MAX {
        return Err(Error::Inconsistent(format!(
            "{} --dnsbl zones given; at most {} are asked about a client",
            config.dnsbl.len(),
            crate::auth::DNSBL_ZONES_MAX
        )));
    }
    let listeners = [
        ("--smtp", Some(config.smtp_addr)),
        ("--http", Some(config.http_addr)),
        ("--smtps", config.smtps_addr),
        ("--https", config.https_addr),
        ("--pop3", config.pop3_addr),
        ("--pop3s", config.pop3s_addr),
        ("--imap", config.imap_addr),
        ("--imaps", config.imaps_addr),
    ];
    let listeners: Vec<(&str, SocketAddr)> = listeners
        .into_iter()
        .filter_map(|(flag, addr)| addr.map(|addr| (flag, addr)))
        .collect();
    for (idx, (flag_a, a)) in listeners.iter().enumerate() {
        for (flag_b, b) in &listeners[idx + 1..] {
            let ips_overlap =
                a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified();
            if a.port() != 0 && a.port() == b.port() && ips_overlap {
                return Err(Error::Inconsistent(format!(
                    "{flag_a} {a} and {flag_b} {b} would bind the same port; give them different ports"
                )));
            }
        }
    }
    check_tls_consistency(config)
}

/// A certificate is given in exactly one way, and whatever needs TLS has one.
fn check_tls_consistency(config: &Config) -> Result<(), Error> {
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), None) => {
            return Err(Error::Inconsistent(format!(
                "--tls-cert {} is given without --tls-key; give both (the certificate chain \
                 and its private key)",
                cert.display()
            )));
        }
        (None, Some(key)) => {
            return Err(Error::Inconsistent(format!(
                "--tls-key {} is given without --tls-cert; give both (the certificate chain \
                 and its private key)",
                key.display()
            )));
        }
        (Some(_), Some(_)) if config.tls_self_signed => {
            return Err(Error::Inconsistent(
                "--tls-self-signed and --tls-cert/--tls-key are both given; choose one".to_string(),
            ));
        }
        _ => {}
    }
    let has_certificate = config.tls_cert.is_some() || config.tls_self_signed;
    let needs_certificate = [
        config.smtps_addr.map(|addr| format!("--smtps {addr}")),
        config.https_addr.map(|addr| format!("--https {addr}")),
        config.pop3s_addr.map(|addr| format!("--pop3s {addr}")),
        config.imaps_addr.map(|addr| format!("--imaps {addr}")),
        config.tls_required.then(|| "--require-tls".to_string()),
    ];
    if !has_certificate && let Some(what) = needs_certificate.into_iter().flatten().next() {
        return Err(Error::Inconsistent(format!(
            "{what} needs a certificate: give --tls-cert and --tls-key, or --tls-self-signed"
        )));
    }
    Ok(())
}

/// "1 core", "2 cores".
fn n_cores(cores: usize) -> String {
    if cores == 1 {
        "1 core".to_string()
    } else {
        format!("{cores} cores")
    }
}

#[cfg(test)]
mod tests {
    use crate::config::machine::cores_available;
    use crate::config::tests::{error_text, load, load_file};
    use crate::config::values::MIB;

    #[test]
    fn cross_field_checks() {
        let text = error_text(load(&[
            "--cores",
            "1",
            "--max-memory",
            "1MiB",
            "--max-message-size",
            "2MiB",
        ]));
        assert_eq!(
            text,
            "--max-message-size 2MiB is more than one core's share of --max-memory \
             (1MiB / 1 core = 1MiB), and each core's store must be able to hold the largest \
             message; raise --max-memory, or lower --max-message-size or --cores"
        );
        if cores_available() >= 2 {
            let text = error_text(load(&["--cores", "2", "--max-memory", "1MiB"]));
            assert!(
                text.starts_with(
                    "--max-memory 1MiB is less than 1MiB per core: 2 cores need at least 2MiB"
                ),
                "{text}"
            );
            let text = error_text(load(&[
                "--cores",
                "2",
                "--max-memory",
                "3MiB",
                "--max-message-size",
                "2MiB",
            ]));
            assert!(text.contains("(3MiB / 2 cores = 1536KiB)"), "{text}");
        } else {
            let text = error_text(load(&["--cores", "2"]));
            assert!(
                text.contains("this machine has 1 available cores"),
                "{text}"
            );
        }
        // Exactly one share is fine.
        let config = load(&[
            "--cores",
            "1",
            "--max-memory",
            "2MiB",
            "--max-message-size",
            "2MiB",
        ]);
        assert_eq!(config.expect("fits").message_bytes_max, 2 * MIB);

        let same_port = [
            ["127.0.0.1:2525", "127.0.0.1:2525"],
            ["0.0.0.0:2525", "127.0.0.1:2525"],
            ["127.0.0.1:8025", "[::]:8025"],
        ];
        for [smtp, http] in same_port {
            let text = error_text(load(&["--smtp", smtp, "--http", http]));
            assert!(
                text.contains("would bind the same port"),
                "{smtp} {http}: {text}"
            );
        }
        let distinct = [
            ["127.0.0.1:0", "127.0.0.1:0"],
            ["127.0.0.1:2525", "127.0.0.2:2525"],
            ["127.0.0.1:25", "127.0.0.1:80"],
        ];
        for [smtp, http] in distinct {
            assert!(
                load(&["--smtp", smtp, "--http", http]).is_ok(),
                "{smtp} {http}"
            );
        }
    }

    #[test]
    fn tls_consistency() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--tls-cert", "c.pem"],
                "--tls-cert c.pem is given without --tls-key; give both (the certificate chain and its private key)",
            ),
            (
                &["--tls-key", "k.pem"],
                "--tls-key k.pem is given without --tls-cert; give both (the certificate chain and its private key)",
            ),
            (
                &[
                    "--tls-cert",
                    "c.pem",
                    "--tls-key",
                    "k.pem",
                    "--tls-self-signed",
                ],
                "--tls-self-signed and --tls-cert/--tls-key are both given; choose one",
            ),
            (
                &["--smtps", "127.0.0.1:4650"],
                "--smtps 127.0.0.1:4650 needs a certificate: give --tls-cert and --tls-key, or --tls-self-signed",
            ),
            (
                &["--https", "127.0.0.1:8443"],
                "--https 127.0.0.1:8443 needs a certificate: give --tls-cert and --tls-key, or --tls-self-signed",
            ),
            (
                &["--require-tls"],
                "--require-tls needs a certificate: give --tls-cert and --tls-key, or --tls-self-signed",
            ),
            (
                &["--tls-self-signed", "--smtps", "127.0.0.1:2525"],
                "--smtp 127.0.0.1:2525 and --smtps 127.0.0.1:2525 would bind the same port; give them different ports",
            ),
            (
                &["--tls-self-signed", "--https", "0.0.0.0:8025"],
                "--http 127.0.0.1:8025 and --https 0.0.0.0:8025 would bind the same port; give them different ports",
            ),
            (
                &[
                    "--tls-self-signed",
                    "--smtps",
                    "127.0.0.1:443",
                    "--https",
                    "127.0.0.1:443",
                ],
                "--smtps 127.0.0.1:443 and --https 127.0.0.1:443 would bind the same port; give them different ports",
            ),
            (
                &["--tls-handshake-timeout", "0s"],
                "invalid value '0s' for --tls-handshake-timeout: must be from 1ms to 1d",
            ),
            (
                &["--tls-self-signed", "--smtps", "localhost:465"],
                "invalid value 'localhost:465' for --smtps: expected an IP address and port such as 127.0.0.1:2525 or [::1]:2525 (host names are not resolved)",
            ),
            (
                &["--tls-cert", "", "--tls-key", "k.pem"],
                "invalid value '' for --tls-cert: empty: expected a file path",
            ),
        ];
        for (args, expected) in cases {
            assert_eq!(error_text(load(args)), *expected, "{args:?}");
        }
        let (file, result) = load_file("https = 8443\n", &["--tls-self-signed"]);
        assert_eq!(
            error_text(result),
            format!(
                "config file {}: invalid value '8443' for https (line 1): expected ADDR:PORT such as 127.0.0.1:2525, 0.0.0.0:25 or [::1]:2525",
                file.path()
            )
        );
        let fine: &[&[&str]] = &[
            &["--tls-self-signed"],
            &["--tls-cert", "c.pem", "--tls-key", "k.pem", "--require-tls"],
            &[
                "--tls-self-signed",
                "--smtps",
                "127.0.0.1:0",
                "--https",
                "127.0.0.1:0",
            ],
        ];
        for args in fine {
            assert!(load(args).is_ok(), "{args:?}");
        }
    }
}
