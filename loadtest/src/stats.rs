//! Counters and latency histograms collected per thread, merged, and reported.
//!
//! Each load thread owns a [`Stats`] (no sharing on the hot path); the main thread merges
//! them after the run and turns them into a [`Report`], printed as text or as one JSON object.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::tls::TlsInfo;

/// Highest latency the histogram tracks exactly (1 hour, in nanoseconds); larger values
/// are clamped, and no reply wait is allowed to be that long anyway.
pub const LATENCY_NS_MAX: u64 = 3_600_000_000_000;

/// Significant decimal digits kept by the histogram (0.1% relative error).
const HISTOGRAM_SIGFIGS: u8 = 3;

/// What one load thread saw.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Transaction latency in nanoseconds (MAIL sent, or the intended send time in
    /// open-loop mode, until the final 250), for transactions started after the warm-up.
    pub latency_ns: Histogram<u64>,
    /// Connect-to-250 latency in nanoseconds: from the connect (or, with
    /// `--connect-per-arrival`, from the arrival's intended time) to the final 250 of the
    /// connection's first message, for connections started after the warm-up.
    pub connect_latency_ns: Histogram<u64>,
    /// Transactions started (MAIL sent).
    pub n_started: u64,
    /// Transactions that got a final 2xx.
    pub n_accepted: u64,
    /// Transactions refused by a reply (some non-2xx in the transaction).
    pub n_rejected: u64,
    /// Transactions that had no final reply when their connection failed or the run ended.
    pub n_unfinished: u64,
    /// Accepted transactions that count towards throughput (started after the warm-up).
    pub n_accepted_measured: u64,
    /// Message bytes (headers and body, as stored) of `n_accepted_measured`.
    pub bytes_accepted_measured: u64,
    /// Every non-2xx, non-354 reply, by "code enhanced-code".
    pub reply_errors: BTreeMap<String, u64>,
    /// Connection failures by kind ("refused", "timeout", "closed", ...).
    pub connection_errors: BTreeMap<String, u64>,
    /// TCP connections opened successfully.
    pub n_connections: u64,
    /// Open-loop arrivals dropped because a connection's queue was full.
    pub n_arrivals_dropped: u64,
    /// (seq, bitmask of accepted recipients) of every accepted message, kept for `--verify`.
    pub accepted: Vec<(u64, u64)>,
    /// Time the load threads found no socket ready (spinning or sleeping), summed.
    pub idle_ns: u64,
    /// Time the load threads ran, summed.
    pub thread_ns: u64,
    /// Version and cipher of the first TLS handshake, and the handshake counts; `None`
    /// without TLS.
    pub tls: Option<TlsInfo>,
}

/// The run's result, as printed.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Length of the measured window (after the warm-up) in seconds.
    pub elapsed_secs: f64,
    /// Transactions started (MAIL sent).
    pub messages_started: u64,
    /// Transactions with a final 2xx.
    pub messages_accepted: u64,
    /// Transactions refused by a reply.
    pub messages_rejected: u64,
    /// Transactions cut off by a connection failure or the end of the run.
    pub messages_unfinished: u64,
    /// Accepted transactions inside the measured window (the throughput numerator).
    pub messages_measured: u64,
    /// `messages_measured / elapsed_secs`.
    pub messages_per_sec: f64,
    /// Stored bytes of the measured messages per second, in 10^6 bytes.
    pub megabytes_per_sec: f64,
    /// Transaction latency percentiles.
    pub latency_us: Latency,
    /// Connect (or intended arrival) to the first message's final 250; samples 0 when no
    /// connection of the measured window finished a message.
    pub connect_to_250_us: Latency,
    /// Non-2xx replies by "code enhanced-code".
    pub reply_errors: BTreeMap<String, u64>,
    /// Connection failures by kind.
    pub connection_errors: BTreeMap<String, u64>,
    /// TCP connections established.
    pub connections_opened: u64,
    /// Open-loop arrivals dropped because a connection's queue was full.
    pub arrivals_dropped: u64,
    /// Share of the load threads' time with no socket ready; near 0 means the load
    /// generator itself may be the bottleneck.
    pub client_idle_fraction: f64,
    /// TLS version and cipher negotiated (the first handshake's), with handshake counts;
    /// `null` for a plaintext run.
    pub tls: Option<TlsInfo>,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Number of recorded transactions.
    pub samples: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    /// The 99.9th percentile.
    pub p999: f64,
    pub max: f64,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Empty statistics.
    pub fn new() -> Self {
        let latency_ns = Histogram::new_with_bounds(1, LATENCY_NS_MAX, HISTOGRAM_SIGFIGS)
            .expect("constant histogram bounds are valid");
        Self {
            connect_latency_ns: latency_ns.clone(),
            latency_ns,
            n_started: 0,
            n_accepted: 0,
            n_rejected: 0,
            n_unfinished: 0,
            n_accepted_measured: 0,
            bytes_accepted_measured: 0,
            reply_errors: BTreeMap::new(),
            connection_errors: BTreeMap::new(),
            n_connections: 0,
            n_arrivals_dropped: 0,
            accepted: Vec::new(),
            idle_ns: 0,
            thread_ns: 0,
            tls: None,
        }
    }

    /// Records one latency sample.
    pub fn record_latency_ns(&mut self, latency_ns: u64) {
        self.latency_ns
            .saturating_record(latency_ns.clamp(1, LATENCY_NS_MAX));
    }

    /// Records one connect-to-250 sample.
    pub fn record_connect_latency_ns(&mut self, latency_ns: u64) {
        self.connect_latency_ns
            .saturating_record(latency_ns.clamp(1, LATENCY_NS_MAX));
    }

    /// Counts one error reply.
    pub fn count_reply_error(&mut self, key: String) {
        *self.reply_errors.entry(key).or_default() += 1;
    }

    /// Counts one connection failure.
    pub fn count_connection_error(&mut self, kind: &str) {
        *self.connection_errors.entry(kind.to_owned()).or_default() += 1;
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: Stats) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency_ns.add(&other.latency_ns);
        let _ = self.connect_latency_ns.add(&other.connect_latency_ns);
        self.n_started += other.n_started;
        self.n_accepted += other.n_accepted;
        self.n_rejected += other.n_rejected;
        self.n_unfinished += other.n_unfinished;
        self.n_accepted_measured += other.n_accepted_measured;
        self.bytes_accepted_measured += other.bytes_accepted_measured;
        for (key, n) in other.reply_errors {
            *self.reply_errors.entry(key).or_default() += n;
        }
        for (key, n) in other.connection_errors {
            *self.connection_errors.entry(key).or_default() += n;
        }
        self.n_connections += other.n_connections;
        self.n_arrivals_dropped += other.n_arrivals_dropped;
        self.accepted.extend(other.accepted);
        self.idle_ns += other.idle_ns;
        self.thread_ns += other.thread_ns;
        match (&mut self.tls, other.tls) {
            (Some(mine), Some(theirs)) => {
                mine.handshakes += theirs.handshakes;
                mine.resumed += theirs.resumed;
            }
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }

    /// The report for a measured window of `elapsed_secs`.
    pub fn report(&self, elapsed_secs: f64) -> Report {
        let per_sec = |n: f64| {
            if elapsed_secs > 0.0 {
                n / elapsed_secs
            } else {
                0.0
            }
        };
        Report {
            elapsed_secs,
            messages_started: self.n_started,
            messages_accepted: self.n_accepted,
            messages_rejected: self.n_rejected,
            messages_unfinished: self.n_unfinished,
            messages_measured: self.n_accepted_measured,
            messages_per_sec: per_sec(self.n_accepted_measured as f64),
            megabytes_per_sec: per_sec(self.bytes_accepted_measured as f64) / 1e6,
            latency_us: latency_summary(&self.latency_ns),
            connect_to_250_us: latency_summary(&self.connect_latency_ns),
            reply_errors: self.reply_errors.clone(),
            connection_errors: self.connection_errors.clone(),
            connections_opened: self.n_connections,
            arrivals_dropped: self.n_arrivals_dropped,
            client_idle_fraction: if self.thread_ns > 0 {
                self.idle_ns as f64 / self.thread_ns as f64
            } else {
                0.0
            },
            tls: self.tls.clone(),
        }
    }
}

/// Percentiles of a nanosecond histogram, in microseconds.
pub fn latency_summary(histogram: &Histogram<u64>) -> Latency {
    if histogram.is_empty() {
        return Latency::default();
    }
    let us = |ns: u64| ns as f64 / 1000.0;
    Latency {
        samples: histogram.len(),
        mean: histogram.mean() / 1000.0,
        p50: us(histogram.value_at_quantile(0.50)),
        p90: us(histogram.value_at_quantile(0.90)),
        p99: us(histogram.value_at_quantile(0.99)),
        p999: us(histogram.value_at_quantile(0.999)),
        max: us(histogram.max()),
    }
}

impl Report {
    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "messages: {} accepted, {} rejected, {} unfinished, {} started; {} connections opened",
            self.messages_accepted,
            self.messages_rejected,
            self.messages_unfinished,
            self.messages_started,
            self.connections_opened
        );
        let _ = writeln!(
            out,
            "throughput: {:.0} msg/s, {:.2} MB/s ({} messages in {:.3} s after warm-up)",
            self.messages_per_sec,
            self.megabytes_per_sec,
            self.messages_measured,
            self.elapsed_secs
        );
        let l = &self.latency_us;
        let _ = writeln!(
            out,
            "latency (us): p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}  ({} samples)",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean, l.samples
        );
        let c = &self.connect_to_250_us;
        if c.samples > 0 {
            let _ = writeln!(
                out,
                "connect to 250 (us): p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}  ({} connections)",
                c.p50, c.p90, c.p99, c.p999, c.max, c.mean, c.samples
            );
        }
        let _ = writeln!(
            out,
            "client: idle {:.0}% of the time (near 0% means the load generator may be the bottleneck)",
            self.client_idle_fraction * 100.0
        );
        if let Some(tls) = &self.tls {
            let _ = writeln!(
                out,
                "tls: {} {} ({} handshakes, {} resumed)",
                tls.version, tls.cipher, tls.handshakes, tls.resumed
            );
        }
        if self.arrivals_dropped > 0 {
            let _ = writeln!(
                out,
                "open-loop arrivals dropped (queues full): {}",
                self.arrivals_dropped
            );
        }
        if self.reply_errors.is_empty() {
            let _ = writeln!(out, "error replies: none");
        } else {
            let _ = writeln!(out, "error replies:");
            for (key, n) in &self.reply_errors {
                let _ = writeln!(out, "  {key}: {n}");
            }
        }
        if self.connection_errors.is_empty() {
            let _ = writeln!(out, "connection errors: none");
        } else {
            let _ = writeln!(out, "connection errors:");
            for (key, n) in &self.connection_errors {
                let _ = writeln!(out, "  {key}: {n}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_samples() {
        let mut stats = Stats::new();
        // 1..=1000 microseconds, one sample each.
        for us in 1..=1000u64 {
            stats.record_latency_ns(us * 1000);
        }
        let latency = latency_summary(&stats.latency_ns);
        let cases = [
            ("p50", latency.p50, 500.0),
            ("p90", latency.p90, 900.0),
            ("p99", latency.p99, 990.0),
            ("p999", latency.p999, 999.0),
            ("max", latency.max, 1000.0),
            ("mean", latency.mean, 500.5),
        ];
        for (name, got, expected) in cases {
            // Three significant digits: within 0.1% (plus one bucket).
            assert!(
                (got - expected).abs() <= expected * 0.002,
                "{name}: {got} vs {expected}"
            );
        }
        assert_eq!(latency.samples, 1000);
        assert_eq!(
            latency_summary(&Stats::new().latency_ns),
            Latency::default()
        );
    }

    #[test]
    fn merge_and_report() {
        let mut a = Stats::new();
        a.n_started = 10;
        a.n_accepted = 8;
        a.n_accepted_measured = 8;
        a.bytes_accepted_measured = 8_000_000;
        a.count_reply_error("451 4.3.0".to_owned());
        a.record_latency_ns(1_000);
        let mut b = Stats::new();
        b.n_started = 5;
        b.n_accepted = 2;
        b.n_rejected = 3;
        b.n_accepted_measured = 2;
        b.bytes_accepted_measured = 2_000_000;
        b.count_reply_error("451 4.3.0".to_owned());
        b.count_reply_error("550 5.1.1".to_owned());
        b.count_connection_error("refused");
        b.record_latency_ns(3_000);
        b.accepted.push((1, 1));
        b.idle_ns = 500;
        b.thread_ns = 1000;
        a.thread_ns = 1000;
        a.merge(b);
        let report = a.report(2.0);
        assert_eq!(report.messages_started, 15);
        assert_eq!(report.messages_accepted, 10);
        assert_eq!(report.messages_per_sec, 5.0);
        assert_eq!(report.megabytes_per_sec, 5.0);
        assert_eq!(report.reply_errors.get("451 4.3.0"), Some(&2));
        assert_eq!(report.latency_us.samples, 2);
        assert_eq!(a.accepted, [(1, 1)]);
        assert_eq!(report.client_idle_fraction, 0.25);
        let text = report.to_text();
        for needle in [
            "451 4.3.0: 2",
            "550 5.1.1: 1",
            "refused: 1",
            "5 msg/s",
            "5.00 MB/s",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert_eq!(json["reply_errors"]["451 4.3.0"], 2);
        assert_eq!(json["latency_us"]["samples"], 2);
        assert_eq!(Stats::new().report(0.0).messages_per_sec, 0.0);
    }
}
