//! What mail-reader counts per thread, merged after the run into a [`Report`] printed as
//! text or one JSON object.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::reader::{ImapFetch, MessageRead, Protocol};
use crate::stats::{LATENCY_NS_MAX, Latency, latency_summary};

/// Significant decimal digits kept by the histogram (0.1% relative error).
const HISTOGRAM_SIGFIGS: u8 = 3;

/// Examples of size mismatches kept for the report.
const EXAMPLES_MAX: usize = 5;

/// What one load thread saw.
#[derive(Debug, Clone)]
pub struct ReadStats {
    /// Per-message latency in nanoseconds, from the write of the command that asked for
    /// the message to its last byte, for messages finished inside the measured window.
    pub latency_ns: Histogram<u64>,
    /// Messages finished inside the measured window (the throughput numerator).
    pub n_read: u64,
    /// Their bytes, framing removed.
    pub bytes_read: u64,
    /// Messages finished outside the window (in the warm-up, or after the stop time but
    /// before the thread noticed), not in the numbers above.
    pub n_read_unmeasured: u64,
    /// Session errors (refusals, protocol errors, empty mailboxes) by kind.
    pub errors: BTreeMap<String, u64>,
    /// Connection failures by kind ("refused", "timeout", "closed by server", ...).
    pub connection_errors: BTreeMap<String, u64>,
    /// TCP connections established.
    pub n_connections: u64,
    /// Sessions that logged out on purpose (`--reconnect-every`).
    pub n_logouts: u64,
    /// `--verify`: messages whose size was compared with an announced size.
    pub n_size_checked: u64,
    pub n_size_mismatches: u64,
    /// `--verify`: messages with an smtp-blaster checksum, and those where it failed.
    pub n_checksums_checked: u64,
    pub n_checksum_mismatches: u64,
    /// A few mismatches, described.
    pub examples: Vec<String>,
    /// Time the thread found no socket ready, and the time it ran.
    pub idle_ns: u64,
    pub thread_ns: u64,
}

/// The run's result, as printed.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub protocol: Protocol,
    /// IMAP only: one command per message or one per pass.
    pub imap_fetch: Option<ImapFetch>,
    pub clients: usize,
    pub pipeline: usize,
    /// Length of the measured window in seconds.
    pub elapsed_secs: f64,
    /// Messages read in the window.
    pub messages_read: u64,
    pub bytes_read: u64,
    pub messages_per_sec: f64,
    /// Bytes per second in 10^6 bytes.
    pub megabytes_per_sec: f64,
    /// Per-message latency percentiles.
    pub latency_us: Latency,
    /// Messages read outside the measured window (warm-up, or just after the stop).
    pub messages_read_unmeasured: u64,
    pub connections_opened: u64,
    pub logouts: u64,
    /// Session errors by kind ("PASS refused", "protocol: ...", "empty mailbox").
    pub errors: BTreeMap<String, u64>,
    /// Connection failures by kind.
    pub connection_errors: BTreeMap<String, u64>,
    /// Present with `--verify`.
    pub verify: Option<VerifySummary>,
    /// Share of the load threads' time with no socket ready; near 0 means the client
    /// itself may be the bottleneck.
    pub client_idle_fraction: f64,
}

/// `--verify` results.
#[derive(Debug, Clone, Serialize)]
pub struct VerifySummary {
    /// Messages whose byte count was compared with the size the server announced.
    pub size_checked: u64,
    pub size_mismatches: u64,
    /// Messages that carried an smtp-blaster checksum, and those where it did not match.
    pub checksums_checked: u64,
    pub checksum_mismatches: u64,
    pub examples: Vec<String>,
}

impl Default for ReadStats {
    fn default() -> Self {
        Self::new()
    }
}

impl ReadStats {
    /// Empty statistics.
    pub fn new() -> Self {
        Self {
            latency_ns: Histogram::new_with_bounds(1, LATENCY_NS_MAX, HISTOGRAM_SIGFIGS)
                .expect("constant histogram bounds are valid"),
            n_read: 0,
            bytes_read: 0,
            n_read_unmeasured: 0,
            errors: BTreeMap::new(),
            connection_errors: BTreeMap::new(),
            n_connections: 0,
            n_logouts: 0,
            n_size_checked: 0,
            n_size_mismatches: 0,
            n_checksums_checked: 0,
            n_checksum_mismatches: 0,
            examples: Vec::new(),
            idle_ns: 0,
            thread_ns: 0,
        }
    }

    /// Counts one finished message; `measured` when it finished inside the window.
    pub fn record(&mut self, read: &MessageRead, latency_ns: u64, measured: bool, verify: bool) {
        if measured {
            self.n_read += 1;
            self.bytes_read += read.bytes;
            self.latency_ns
                .saturating_record(latency_ns.clamp(1, LATENCY_NS_MAX));
        } else {
            self.n_read_unmeasured += 1;
        }
        if !verify {
            return;
        }
        if let Some(announced) = read.announced_bytes {
            self.n_size_checked += 1;
            if announced != read.bytes {
                self.n_size_mismatches += 1;
                self.example(format!(
                    "size: announced {announced} bytes, received {}",
                    read.bytes
                ));
            }
        }
        if let Some(ok) = read.checksum_ok {
            self.n_checksums_checked += 1;
            if !ok {
                self.n_checksum_mismatches += 1;
                self.example(format!(
                    "checksum: a {}-byte message does not match its X-Blaster-Checksum",
                    read.bytes
                ));
            }
        }
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < EXAMPLES_MAX {
            self.examples.push(text);
        }
    }

    /// Counts one session error.
    pub fn count_error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }

    /// Counts one connection failure.
    pub fn count_connection_error(&mut self, kind: &str) {
        *self.connection_errors.entry(kind.to_owned()).or_default() += 1;
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: ReadStats) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency_ns.add(&other.latency_ns);
        self.n_read += other.n_read;
        self.bytes_read += other.bytes_read;
        self.n_read_unmeasured += other.n_read_unmeasured;
        for (key, n) in other.errors {
            *self.errors.entry(key).or_default() += n;
        }
        for (key, n) in other.connection_errors {
            *self.connection_errors.entry(key).or_default() += n;
        }
        self.n_connections += other.n_connections;
        self.n_logouts += other.n_logouts;
        self.n_size_checked += other.n_size_checked;
        self.n_size_mismatches += other.n_size_mismatches;
        self.n_checksums_checked += other.n_checksums_checked;
        self.n_checksum_mismatches += other.n_checksum_mismatches;
        for example in other.examples {
            self.example(example);
        }
        self.idle_ns += other.idle_ns;
        self.thread_ns += other.thread_ns;
    }
}

/// The run's settings that the report repeats.
#[derive(Debug, Clone, Copy)]
pub struct ReportSettings {
    pub protocol: Protocol,
    pub imap_fetch: ImapFetch,
    pub clients: usize,
    pub pipeline: usize,
    pub verify: bool,
}

impl Report {
    /// The report of `stats` for a measured window of `elapsed_secs`.
    pub fn new(stats: &ReadStats, settings: ReportSettings, elapsed_secs: f64) -> Self {
        let per_sec = |n: f64| {
            if elapsed_secs > 0.0 {
                n / elapsed_secs
            } else {
                0.0
            }
        };
        Report {
            protocol: settings.protocol,
            imap_fetch: (settings.protocol == Protocol::Imap).then_some(settings.imap_fetch),
            clients: settings.clients,
            pipeline: settings.pipeline,
            elapsed_secs,
            messages_read: stats.n_read,
            bytes_read: stats.bytes_read,
            messages_per_sec: per_sec(stats.n_read as f64),
            megabytes_per_sec: per_sec(stats.bytes_read as f64) / 1e6,
            latency_us: latency_summary(&stats.latency_ns),
            messages_read_unmeasured: stats.n_read_unmeasured,
            connections_opened: stats.n_connections,
            logouts: stats.n_logouts,
            errors: stats.errors.clone(),
            connection_errors: stats.connection_errors.clone(),
            verify: settings.verify.then(|| VerifySummary {
                size_checked: stats.n_size_checked,
                size_mismatches: stats.n_size_mismatches,
                checksums_checked: stats.n_checksums_checked,
                checksum_mismatches: stats.n_checksum_mismatches,
                examples: stats.examples.clone(),
            }),
            client_idle_fraction: if stats.thread_ns > 0 {
                stats.idle_ns as f64 / stats.thread_ns as f64
            } else {
                0.0
            },
        }
    }

    /// Whether `--verify` found a message of the wrong size or with a bad checksum.
    pub fn verify_failed(&self) -> bool {
        self.verify
            .as_ref()
            .is_some_and(|v| v.size_mismatches > 0 || v.checksum_mismatches > 0)
    }

    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let framing = match (self.protocol, self.imap_fetch) {
            (Protocol::Imap, Some(ImapFetch::All)) => "UID FETCH 1:* per pass".to_owned(),
            (Protocol::Imap, _) => format!("UID FETCH per message, {} in flight", self.pipeline),
            (Protocol::Pop3, _) => format!("RETR, {} in flight", self.pipeline),
        };
        let _ = writeln!(
            out,
            "{:?}: {} clients, {framing}; {} connections opened, {} logouts",
            self.protocol, self.clients, self.connections_opened, self.logouts
        );
        let _ = writeln!(
            out,
            "read: {} messages, {} bytes in {:.3} s ({} more outside the measured window)",
            self.messages_read, self.bytes_read, self.elapsed_secs, self.messages_read_unmeasured
        );
        let _ = writeln!(
            out,
            "throughput: {:.0} msg/s, {:.2} MB/s",
            self.messages_per_sec, self.megabytes_per_sec
        );
        let l = &self.latency_us;
        let _ = writeln!(
            out,
            "latency per message (us): p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}  ({} samples)",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean, l.samples
        );
        let _ = writeln!(
            out,
            "client: idle {:.0}% of the time (near 0% means the load generator may be the bottleneck)",
            self.client_idle_fraction * 100.0
        );
        if let Some(v) = &self.verify {
            let _ = writeln!(
                out,
                "verify: {} sizes compared, {} mismatches; {} checksums checked, {} mismatches",
                v.size_checked, v.size_mismatches, v.checksums_checked, v.checksum_mismatches
            );
            for example in &v.examples {
                let _ = writeln!(out, "  {example}");
            }
        }
        for (title, map) in [
            ("errors", &self.errors),
            ("connection errors", &self.connection_errors),
        ] {
            if map.is_empty() {
                let _ = writeln!(out, "{title}: none");
            } else {
                let _ = writeln!(out, "{title}:");
                for (key, n) in map {
                    let _ = writeln!(out, "  {key}: {n}");
                }
            }
        }
        out
    }
}
