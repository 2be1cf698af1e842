//! Counters for `/metrics`, kept per shard without locks or atomics.
//!
//! Each executor owns one `Counters` and bumps plain `Cell`s on its hot path; `/metrics`
//! asks every shard for a `Snapshot` by message passing and renders the sum (and the
//! per-shard gauges) in the Prometheus text format.

use std::cell::Cell;
use std::fmt::Write as _;

use crate::auth::{AuthResults, Verdict};
use crate::store::ShardStats;

/// The sender checks counted in `mayfly_auth_results_total`, in `auth_results_total`'s
/// order.
pub const AUTH_CHECKS: [&str; 5] = ["spf", "dkim", "dmarc", "arc", "iprev"];

/// Why an SMTP reply refused something, derived from its enhanced status code.
///
/// Counting by the reply actually sent keeps the metric true to what clients saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// 5.7.1: recipient domain not accepted (we never relay).
    RelayDenied,
    /// 4.5.3: more recipients than allowed.
    TooManyRecipients,
    /// 5.3.4: message or line too big.
    TooLarge,
    /// 5.5.2 / 5.6.x: bare CR/LF, over-long command line, bad content.
    BadContent,
    /// 5.5.1 / 5.5.4 / 5.1.x / 5.6.7 and other syntax and sequence errors.
    Protocol,
    /// 4.3.x / 4.4.x / 4.7.x: the server could not or would not go on (store, timeouts, caps, shutdown).
    Unavailable,
    /// 550 5.7.1 for a message rspamd scored at or above `--spam-reject-score`.
    Spam,
}

impl RejectReason {
    pub const ALL: [RejectReason; 7] = [
        RejectReason::RelayDenied,
        RejectReason::TooManyRecipients,
        RejectReason::TooLarge,
        RejectReason::BadContent,
        RejectReason::Protocol,
        RejectReason::Unavailable,
        RejectReason::Spam,
    ];

    /// The label value in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::RelayDenied => "relay_denied",
            RejectReason::TooManyRecipients => "too_many_recipients",
            RejectReason::TooLarge => "too_large",
            RejectReason::BadContent => "bad_content",
            RejectReason::Protocol => "protocol",
            RejectReason::Unavailable => "unavailable",
            RejectReason::Spam => "spam",
        }
    }

    /// Classifies one final reply line (`"550 5.7.1 ..."`); `None` for 2xx/3xx replies.
    pub fn of_reply(line: &[u8]) -> Option<RejectReason> {
        let class = *line.first()?;
        if class != b'4' && class != b'5' {
            return None;
        }
        let spam = crate::smtp::reply::SPAM_REJECTED.trim_ascii_end();
        if line.trim_ascii_end() == spam {
            return Some(RejectReason::Spam);
        }
        let enhanced = line.get(4..9).unwrap_or_default();
        Some(match enhanced {
            b"5.7.1" => RejectReason::RelayDenied,
            b"4.5.3" => RejectReason::TooManyRecipients,
            b"5.3.4" | b"4.3.4" => RejectReason::TooLarge,
            [_, b'.', b'5', b'.', b'2'] | [_, b'.', b'6', b'.', b'0'] => RejectReason::BadContent,
            [b'4', ..] => RejectReason::Unavailable,
            _ => RejectReason::Protocol,
        })
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Upper bounds of the latency histogram buckets, in microseconds (then +Inf).
pub const LATENCY_BUCKET_BOUNDS_US: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000, 10_000_000,
];
const N_LATENCY_BUCKETS: usize = LATENCY_BUCKET_BOUNDS_US.len() + 1;

/// A Prometheus-style histogram of latencies with fixed buckets: recording is a few
/// comparisons and two `Cell` updates, and shards' histograms add up bucket by bucket.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last one is +Inf.
    buckets: [Cell<u64>; N_LATENCY_BUCKETS],
    sum_us: Cell<u64>,
}

/// A copy of a `LatencyHistogram`, sent across cores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySnapshot {
    pub buckets: [u64; N_LATENCY_BUCKETS],
    pub sum_us: u64,
}

impl LatencyHistogram {
    pub fn record(&self, latency: std::time::Duration) {
        let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket_idx = LATENCY_BUCKET_BOUNDS_US
            .iter()
            .position(|&bound_us| latency_us <= bound_us)
            .unwrap_or(LATENCY_BUCKET_BOUNDS_US.len());
        Counters::add(&self.buckets[bucket_idx], 1);
        self.sum_us
            .set(self.sum_us.get().saturating_add(latency_us));
    }

    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            buckets: std::array::from_fn(|i| self.buckets[i].get()),
            sum_us: self.sum_us.get(),
        }
    }
}

/// Declares every plain counter and gauge once: its field in `Counters` (a `Cell`), its
/// field in `Snapshot`, the copy between them, and its name and help text in `/metrics`
/// (the metric is `mayfly_` + the field name). Adding one is one line here plus its use.
macro_rules! plain_metrics {
    (
        counters { $( $counter:ident : $counter_help:literal, )* }
        labelled_counters { $( $labelled:ident : $labelled_help:literal, )* }
        gauges { $( $gauge:ident : $gauge_help:literal, )* }
    ) => {
        /// One shard's counters. Only the owning executor touches them.
        #[derive(Debug, Default)]
        pub struct Counters {
            $( #[doc = $counter_help] pub $counter: Cell<u64>, )*
            $( #[doc = $labelled_help] pub $labelled: Cell<u64>, )*
            $( #[doc = $gauge_help] pub $gauge: Cell<u64>, )*
            /// 4xx/5xx replies sent, by reason.
            pub smtp_rejections_total: [Cell<u64>; RejectReason::ALL.len()],
            /// 4xx/5xx replies sent, by class: index 0 is 4xx (try again), 1 is 5xx (permanent).
            pub smtp_rejections_by_class_total: [Cell<u64>; 2],
            /// Sender-check results of stored messages: `[check][verdict]`, as `AUTH_CHECKS`
            /// and `Verdict::ALL` order them.
            pub auth_results_total: [[Cell<u64>; Verdict::ALL.len()]; AUTH_CHECKS.len()],
            /// From the end of a message (final dot or BDAT LAST) to its reply: storing it in
            /// every recipient's shard, cross-core hops included.
            pub smtp_delivery_latency: LatencyHistogram,
            /// From a parsed HTTP request to its response being written (long polls included).
            pub http_request_latency: LatencyHistogram,
            /// One journal commit: the write and the `fdatasync` of a batch (copied from the
            /// shard's journal when a snapshot is taken).
            pub journal_commit_latency: Cell<LatencySnapshot>,
        }

        /// A copy of one shard's counters and store statistics, sent across cores for `/metrics`.
        #[derive(Debug, Clone, Copy, Default)]
        pub struct Snapshot {
            pub store: ShardStats,
            $( pub $counter: u64, )*
            $( pub $labelled: u64, )*
            $( pub $gauge: u64, )*
            pub smtp_rejections_total: [u64; RejectReason::ALL.len()],
            pub smtp_rejections_by_class_total: [u64; 2],
            pub auth_results_total: [[u64; Verdict::ALL.len()]; AUTH_CHECKS.len()],
            pub smtp_delivery_latency: LatencySnapshot,
            pub http_request_latency: LatencySnapshot,
            pub journal_commit_latency: LatencySnapshot,
        }

        impl Counters {
            /// A copy of the counters, with the store's statistics.
            pub fn snapshot(&self, store: ShardStats) -> Snapshot {
                Snapshot {
                    store,
                    $( $counter: self.$counter.get(), )*
                    $( $labelled: self.$labelled.get(), )*
                    $( $gauge: self.$gauge.get(), )*
                    smtp_rejections_total: std::array::from_fn(|i| self.smtp_rejections_total[i].get()),
                    smtp_rejections_by_class_total: std::array::from_fn(|i| {
                        self.smtp_rejections_by_class_total[i].get()
                    }),
                    auth_results_total: std::array::from_fn(|check_idx| {
                        std::array::from_fn(|verdict_idx| {
                            self.auth_results_total[check_idx][verdict_idx].get()
                        })
                    }),
                    smtp_delivery_latency: self.smtp_delivery_latency.snapshot(),
                    http_request_latency: self.http_request_latency.snapshot(),
                    journal_commit_latency: self.journal_commit_latency.get(),
                }
            }
        }

        /// Plain counters: metric name, help, value. Rendered as the sum over shards.
        const PLAIN_COUNTERS: &[(&str, &str, Field)] = &[
            $( (concat!("mayfly_", stringify!($counter)), $counter_help, |s| s.$counter), )*
        ];
        /// Plain gauges: metric name, help, value. Rendered per shard.
        const PLAIN_GAUGES: &[(&str, &str, Field)] = &[
            $( (concat!("mayfly_", stringify!($gauge)), $gauge_help, |s| s.$gauge), )*
        ];
    };
}

plain_metrics! {
    counters {
        smtp_connections_total: "SMTP connections accepted.",
        smtp_sessions_refused_total:
            "SMTP connections refused with 421 4.7.0 (per-core session cap, no idle session to cut).",
        smtp_sessions_refused_per_ip_total:
            "SMTP connections refused with 421 4.7.0 because their client address has --max-sessions-per-ip open.",
        smtp_sessions_cut_idle_total:
            "Idle SMTP sessions that never started a transaction, closed with 421 4.7.0 to make room at the session cap.",
        smtp_timeouts_total: "SMTP sessions closed with 421 4.4.2 (a timeout or deadline passed).",
        messages_accepted_total: "Messages acknowledged with 250 after DATA or BDAT LAST.",
        message_bytes_accepted_total:
            "Bytes of acknowledged messages as received (before the Received header).",
        http_connections_total: "HTTP connections accepted.",
        http_requests_total: "HTTP requests parsed.",
        http_request_timeouts_total:
            "HTTP connections closed because a request did not arrive whole within --http-request-timeout.",
        websockets_total: "WebSockets opened (101 Switching Protocols sent).",
        websocket_frames_total: "Message summaries queued to WebSockets.",
        websockets_dropped_slow_total:
            "WebSocket subscriptions dropped because the socket did not keep up (closed with 1013).",
        tls_sessions_total: "TLS handshakes completed (STARTTLS, SMTPS and HTTPS).",
        tls_handshake_failures_total:
            "TLS handshakes that failed or timed out (the connection was closed).",
        journal_bytes_total: "Bytes written to the journal (frames, sealed when a key is given).",
        journal_records_total: "Records written to the journal (stored messages, deletes).",
        journal_fsyncs_total: "Journal commits: one write and one fdatasync each, shared by every record of the batch.",
        journal_fsync_failures_total:
            "Journal commits that failed (their messages got 451, their deletes 503).",
        journal_files_deleted_total: "Journal files deleted because every message in them was gone.",
        journal_key_advance_failures_total:
            "Key-file advances that failed: the keys of deleted journal files stay until one succeeds.",
        messages_restored_total: "Messages restored from the data directory at start.",
        restore_records_skipped_total:
            "Records skipped at restore because they were damaged (bad checksum, failed rkyv validation, or not authenticated).",
        snapshots_written_total: "Snapshot parts written by this shard (--durability snapshot).",
        pop3_connections_total: "POP3 connections accepted (--pop3 and --pop3s).",
        imap_connections_total: "IMAP connections accepted (--imap and --imaps).",
        mailbox_sessions_refused_total:
            "POP3 and IMAP connections refused: the per-core or per-IP session cap, or the server restoring.",
        pop3_commands_total: "POP3 commands answered.",
        imap_commands_total: "IMAP commands answered (tagged completions).",
        pop3_logins_total: "POP3 logins accepted.",
        imap_logins_total: "IMAP logins accepted.",
        pop3_login_failures_total: "POP3 logins refused (bad address, or over --max-logins-per-ip-per-minute).",
        imap_login_failures_total: "IMAP logins refused (bad address, or over --max-logins-per-ip-per-minute).",
        pop3_messages_retrieved_total: "Messages sent to POP3 clients (RETR and TOP).",
        imap_messages_fetched_total: "Messages whose bytes IMAP clients fetched or searched.",
        pop3_bytes_sent_total: "Bytes written to POP3 clients.",
        imap_bytes_sent_total: "Bytes written to IMAP clients.",
        smtp_sessions_blocklisted_total:
            "SMTP connections refused with 554 5.7.1 before the greeting because their --dnsbl listings reached --dnsbl-threshold.",
        auth_checks_on_executor_total:
            "Messages whose sender checks ran on their own executor, every DNS answer they needed already cached there (the others: mayfly_auth_checks_total).",
        dnsbl_lookup_failures_total:
            "DNSBL zone lookups that gave no answer in time or failed (the client counts as not listed there).",
        spam_checks_total: "Messages rspamd gave a verdict on (--rspamd).",
        spam_check_failures_total:
            "Messages stored without a spam verdict: rspamd was down, slow past --rspamd-timeout, answered an error, or too many checks were in flight.",
        spam_rejected_total:
            "Messages refused with 550 5.7.1 because rspamd scored them at or above --spam-reject-score (nothing stored).",
        mailbox_timeouts_total:
            "POP3 and IMAP sessions closed because a command did not arrive whole in time, or the session idled past --mailbox-idle-timeout.",
        webhook_deliveries_total: "Webhook requests a receiver answered with 2xx (--webhook).",
        webhook_retries_total:
            "Webhook requests that failed (no 2xx within --webhook-timeout) and were scheduled again.",
    }
    labelled_counters {
        http_responses_4xx_total: "HTTP 4xx responses (mayfly_http_responses_errors_total{class=\"4xx\"}).",
        http_responses_5xx_total: "HTTP 5xx responses (mayfly_http_responses_errors_total{class=\"5xx\"}).",
        webhook_dropped_queue_full_total: "Webhook events dropped because their queue was full.",
        webhook_dropped_expired_total: "Webhook events dropped because their message expired first.",
        webhook_dropped_attempts_total: "Webhook events dropped after their last attempt failed.",
        webhook_dropped_gone_total: "Webhook events dropped because their message was gone before it was sent.",
    }
    gauges {
        restore_duration_ms: "How long this shard's restore took at start, in milliseconds.",
        snapshot_duration_ms: "How long this shard's last snapshot took, in milliseconds.",
        smtp_sessions_open: "SMTP sessions open now.",
        http_connections_open: "HTTP connections open now.",
        http_long_polls_waiting: "Long-poll requests held now.",
        websockets_open: "WebSockets open now.",
        pop3_sessions_open: "POP3 sessions open now.",
        imap_sessions_open: "IMAP sessions open now.",
        imap_idling: "IMAP sessions in IDLE now.",
        webhook_queue_length: "Webhook events held now: waiting, scheduled for a retry, or in flight.",
        webhook_requests_in_flight: "Webhook requests in flight now.",
    }
}

impl Counters {
    /// Records what a restore did: messages restored, damaged records skipped, its time.
    pub fn note_restore(&self, n_restored: u64, n_skipped: u64, elapsed: std::time::Duration) {
        Counters::add(&self.messages_restored_total, n_restored);
        Counters::add(&self.restore_records_skipped_total, n_skipped);
        self.restore_duration_ms
            .set(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
    }

    /// Records a snapshot part written.
    pub fn note_snapshot(&self, elapsed: std::time::Duration) {
        Counters::add(&self.snapshots_written_total, 1);
        self.snapshot_duration_ms
            .set(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
    }

    pub fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get() + n);
    }

    pub fn sub(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get().saturating_sub(n));
    }

    /// Counts one message's sender-check results, one per check; for DKIM the best of its
    /// signatures (`pass` if any passed), `none` when it had none.
    pub fn count_auth_results(&self, results: &AuthResults) {
        let dkim = results
            .dkim
            .iter()
            .map(|check| check.result)
            .find(|&result| result == Verdict::Pass)
            .or_else(|| results.dkim.first().map(|check| check.result))
            .unwrap_or(Verdict::None);
        let verdicts = [
            results.spf.result,
            dkim,
            results.dmarc.result,
            results.arc.result,
            results.iprev.result,
        ];
        for (check_idx, verdict) in verdicts.into_iter().enumerate() {
            Counters::add(&self.auth_results_total[check_idx][verdict.index()], 1);
        }
    }

    pub fn count_rejection(&self, reason: RejectReason) {
        Counters::add(&self.smtp_rejections_total[reason.index()], 1);
    }

    /// Counts every 4xx/5xx final reply line in `replies` (what a session just wrote).
    /// Returns how many rejections it counted, so the caller can log them.
    pub fn count_replies(&self, replies: &[u8]) -> usize {
        let mut n_rejections = 0;
        for line in replies.split(|&b| b == b'\n') {
            // Only final lines ("550 ...", not "550-...") count as one reply.
            if line.get(3) == Some(&b' ')
                && let Some(reason) = RejectReason::of_reply(line)
            {
                self.count_rejection(reason);
                let class_idx = usize::from(line[0] == b'5');
                Counters::add(&self.smtp_rejections_by_class_total[class_idx], 1);
                n_rejections += 1;
            }
        }
        n_rejections
    }
}

/// Reads one number out of a snapshot.
type Field = fn(&Snapshot) -> u64;
/// Reads one histogram out of a snapshot.
type HistogramField = fn(&Snapshot) -> &LatencySnapshot;

/// Appends the resolver thread's counts (sender checks and blocklists, one thread for the
/// process) to a rendering.
pub fn render_resolver(stats: &crate::auth::VerifierStats, out: &mut String) {
    let counters: [(&str, &str, u64); 8] = [
        (
            "mayfly_auth_checks_total",
            "Messages the sender-check resolver thread answered (those checked on their executor: mayfly_auth_checks_on_executor_total).",
            stats.n_verified,
        ),
        (
            "mayfly_dnsbl_queries_total",
            "DNSBL queries the resolver thread answered (one per client, all zones).",
            stats.n_dnsbl,
        ),
        (
            "mayfly_auth_queue_full_total",
            "Requests answered temperror at once because the resolver queue was full.",
            stats.n_queue_full,
        ),
        (
            "mayfly_auth_deadline_expired_total",
            "Requests whose deadline (--auth-timeout) passed before every check finished.",
            stats.n_deadline_expired,
        ),
        (
            "mayfly_auth_unavailable_total",
            "Requests answered temperror because the resolver thread was gone.",
            stats.n_unavailable,
        ),
        (
            "mayfly_auth_stalled_skipped_total",
            "Messages answered temperror at their deadline, with no lookup, because their sender domain's checks ran into the deadline within the last 30 s.",
            stats.n_stalled_skipped,
        ),
        (
            "mayfly_auth_client_refused_total",
            "Requests answered temperror at once because their client already had its share of the places in flight and of the waiting line.",
            stats.n_client_refused,
        ),
        (
            "mayfly_auth_resolver_wakeups_total",
            "Times a request woke the sleeping resolver thread (at most once per sleep: under load far fewer than requests).",
            stats.n_wakeups,
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
}

/// Renders the Prometheus text exposition (version 0.0.4) of all shards, index = shard.
pub fn render(shards: &[Snapshot]) -> String {
    let mut out = String::with_capacity(4096);
    let total = |f: fn(&Snapshot) -> u64| shards.iter().map(f).sum::<u64>();
    let store_counters: [(&str, &str, Field); 2] = [
        (
            "mayfly_messages_stored_total",
            "Messages written into a shard (a message for recipients in two shards counts twice).",
            |s| s.store.stored_total,
        ),
        (
            "mayfly_bytes_stored_total",
            "Bytes written into shard rings.",
            |s| s.store.stored_bytes_total,
        ),
    ];
    let counters = PLAIN_COUNTERS.iter().chain(&store_counters);
    for &(name, help, value) in counters {
        let value = total(value);
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }

    let _ = writeln!(
        out,
        "# HELP mayfly_smtp_rejections_total SMTP 4xx/5xx replies sent, by reason.\n# TYPE mayfly_smtp_rejections_total counter"
    );
    for reason in RejectReason::ALL {
        let value: u64 = shards
            .iter()
            .map(|s| s.smtp_rejections_total[reason.index()])
            .sum();
        let _ = writeln!(
            out,
            "mayfly_smtp_rejections_total{{reason=\"{}\"}} {value}",
            reason.label()
        );
    }
    let _ = writeln!(
        out,
        "# HELP mayfly_smtp_rejections_by_class_total SMTP 4xx/5xx replies sent, by reply code class.\n# TYPE mayfly_smtp_rejections_by_class_total counter"
    );
    for (class_idx, class) in ["4xx", "5xx"].into_iter().enumerate() {
        let value: u64 = shards
            .iter()
            .map(|s| s.smtp_rejections_by_class_total[class_idx])
            .sum();
        let _ = writeln!(
            out,
            "mayfly_smtp_rejections_by_class_total{{class=\"{class}\"}} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP mayfly_auth_results_total Sender-check results of messages (--verify-senders annotate), by check and result; DKIM counts a message's best signature.\n# TYPE mayfly_auth_results_total counter"
    );
    for (check_idx, check) in AUTH_CHECKS.into_iter().enumerate() {
        for verdict in Verdict::ALL {
            let value: u64 = shards
                .iter()
                .map(|s| s.auth_results_total[check_idx][verdict.index()])
                .sum();
            let _ = writeln!(
                out,
                "mayfly_auth_results_total{{check=\"{check}\",result=\"{}\"}} {value}",
                verdict.as_str()
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP mayfly_http_responses_errors_total HTTP error responses, by status class.\n# TYPE mayfly_http_responses_errors_total counter"
    );
    let _ = writeln!(
        out,
        "mayfly_http_responses_errors_total{{class=\"4xx\"}} {}",
        total(|s| s.http_responses_4xx_total)
    );
    let _ = writeln!(
        out,
        "mayfly_http_responses_errors_total{{class=\"5xx\"}} {}",
        total(|s| s.http_responses_5xx_total)
    );

    let _ = writeln!(
        out,
        "# HELP mayfly_webhook_dropped_total Webhook events given up, by reason.\n# TYPE mayfly_webhook_dropped_total counter"
    );
    let dropped: [(&str, Field); 4] = [
        ("queue_full", |s| s.webhook_dropped_queue_full_total),
        ("expired", |s| s.webhook_dropped_expired_total),
        ("attempts", |s| s.webhook_dropped_attempts_total),
        ("gone", |s| s.webhook_dropped_gone_total),
    ];
    for (reason, value) in dropped {
        let _ = writeln!(
            out,
            "mayfly_webhook_dropped_total{{reason=\"{reason}\"}} {}",
            total(value)
        );
    }

    let _ = writeln!(
        out,
        "# HELP mayfly_messages_evicted_total Messages removed before being read to the end of their life, by reason.\n# TYPE mayfly_messages_evicted_total counter"
    );
    let evicted: [(&str, Field); 4] = [
        ("ttl", |s| s.store.evicted_ttl),
        ("capacity", |s| s.store.evicted_capacity),
        ("inbox_full", |s| s.store.evicted_inbox_full),
        ("deleted", |s| s.store.deleted),
    ];
    for (reason, value) in evicted {
        let _ = writeln!(
            out,
            "mayfly_messages_evicted_total{{reason=\"{reason}\"}} {}",
            total(value)
        );
    }

    let histograms: [(&str, &str, HistogramField); 3] = [
        (
            "mayfly_smtp_delivery_seconds",
            "Time from the end of a message to its reply (stored in every recipient's shard).",
            |s| &s.smtp_delivery_latency,
        ),
        (
            "mayfly_http_request_seconds",
            "Time from a parsed HTTP request to its response (long polls included).",
            |s| &s.http_request_latency,
        ),
        (
            "mayfly_journal_commit_seconds",
            "Time of one journal commit (write and fdatasync of a batch).",
            |s| &s.journal_commit_latency,
        ),
    ];
    for (name, help, histogram) in histograms {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0u64;
        for bucket_idx in 0..N_LATENCY_BUCKETS {
            cumulative += shards
                .iter()
                .map(|s| histogram(s).buckets[bucket_idx])
                .sum::<u64>();
            match LATENCY_BUCKET_BOUNDS_US.get(bucket_idx) {
                Some(bound_us) => {
                    let bound_secs = *bound_us as f64 / 1e6;
                    let _ = writeln!(out, "{name}_bucket{{le=\"{bound_secs}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let sum_us: u64 = shards.iter().map(|s| histogram(s).sum_us).sum();
        let _ = writeln!(out, "{name}_sum {}", sum_us as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {cumulative}");
    }

    let store_gauges: [(&str, &str, Field); 5] = [
        ("mayfly_messages_held", "Messages held now.", |s| {
            s.store.messages_held
        }),
        ("mayfly_bytes_held", "Bytes of messages held now.", |s| {
            s.store.bytes_held
        }),
        (
            "mayfly_inboxes_held",
            "Inboxes holding at least one message.",
            |s| s.store.inboxes_held,
        ),
        (
            "mayfly_ring_bytes",
            "Capacity of the shard's message ring.",
            |s| s.store.ring_bytes,
        ),
        (
            "mayfly_ring_bytes_used",
            "Ring bytes not yet reclaimable (held, deleted-but-not-passed, and wrap gaps).",
            |s| s.store.ring_bytes_used,
        ),
    ];
    let gauges = store_gauges.iter().chain(PLAIN_GAUGES);
    for &(name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (shard_idx, snapshot) in shards.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{shard_idx}\"}} {}", value(snapshot));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_final_reply_lines() {
        let table: &[(&[u8], Option<RejectReason>)] = &[
            (b"250 2.1.5 Ok", None),
            (b"354 End data with <CR><LF>.<CR><LF>", None),
            (
                b"550 5.7.1 Relay access denied",
                Some(RejectReason::RelayDenied),
            ),
            (
                b"452 4.5.3 Too many recipients",
                Some(RejectReason::TooManyRecipients),
            ),
            (b"552 5.3.4 Message too big", Some(RejectReason::TooLarge)),
            (b"500 5.5.2 Line too long", Some(RejectReason::BadContent)),
            (b"503 5.5.1 Bad sequence", Some(RejectReason::Protocol)),
            (b"421 4.4.2 Timeout", Some(RejectReason::Unavailable)),
        ];
        for (line, expected) in table {
            assert_eq!(
                RejectReason::of_reply(line),
                *expected,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn counts_only_final_lines_of_error_replies() {
        let counters = Counters::default();
        counters
            .count_replies(b"250-mx\r\n250 OK\r\n550-5.7.1 a\r\n550 5.7.1 b\r\n503 5.5.1 c\r\n");
        let snapshot = counters.snapshot(ShardStats::default());
        assert_eq!(
            snapshot.smtp_rejections_total[RejectReason::RelayDenied.index()],
            1
        );
        assert_eq!(snapshot.smtp_rejections_by_class_total, [0, 2]);
        assert_eq!(
            snapshot.smtp_rejections_total[RejectReason::Protocol.index()],
            1
        );
    }

    #[test]
    fn latency_histograms_are_cumulative_across_shards() {
        let a = Counters::default();
        a.smtp_delivery_latency
            .record(std::time::Duration::from_micros(40));
        a.smtp_delivery_latency
            .record(std::time::Duration::from_micros(700));
        let b = Counters::default();
        b.smtp_delivery_latency
            .record(std::time::Duration::from_secs(60));
        let text = render(&[
            a.snapshot(ShardStats::default()),
            b.snapshot(ShardStats::default()),
        ]);
        assert!(
            text.contains("mayfly_smtp_delivery_seconds_bucket{le=\"0.00005\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("mayfly_smtp_delivery_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("mayfly_smtp_delivery_seconds_bucket{le=\"0.001\"} 2\n"));
        assert!(text.contains("mayfly_smtp_delivery_seconds_bucket{le=\"10\"} 2\n"));
        assert!(text.contains("mayfly_smtp_delivery_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("mayfly_smtp_delivery_seconds_count 3\n"));
        assert!(text.contains("mayfly_smtp_delivery_seconds_sum 60.00074\n"));
        assert!(text.contains("mayfly_http_request_seconds_count 0\n"));
    }

    #[test]
    fn renders_sums_and_per_shard_gauges() {
        let a = Snapshot {
            messages_accepted_total: 3,
            tls_sessions_total: 2,
            tls_handshake_failures_total: 1,
            store: ShardStats {
                bytes_held: 100,
                ..ShardStats::default()
            },
            ..Snapshot::default()
        };
        let b = Snapshot {
            messages_accepted_total: 4,
            tls_sessions_total: 5,
            store: ShardStats {
                bytes_held: 50,
                ..ShardStats::default()
            },
            ..Snapshot::default()
        };
        let text = render(&[a, b]);
        assert!(
            text.contains("\nmayfly_messages_accepted_total 7\n"),
            "{text}"
        );
        assert!(text.contains("mayfly_bytes_held{shard=\"0\"} 100\n"));
        assert!(text.contains("\nmayfly_tls_sessions_total 7\n"), "{text}");
        assert!(text.contains("# TYPE mayfly_tls_handshake_failures_total counter\n"));
        assert!(text.contains("\nmayfly_tls_handshake_failures_total 1\n"));
        assert!(text.contains("mayfly_bytes_held{shard=\"1\"} 50\n"));
    }
}
