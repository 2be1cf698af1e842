//! What an SMTP session checks besides the protocol, all on its own executor without
//! blocking it: DNS blocklists before the greeting, and at the end of DATA the sender
//! checks (on the `auth` resolver thread) and rspamd's spam verdict (an HTTP request from
//! this executor), both at once. The message's 250 is written at once but held in `out`
//! until both are in and the message is stored; a spam rejection replaces it with
//! `550 5.7.1`, and nothing is stored.
//!
//! Every check fails open: a resolver or rspamd that is down, slow or over its limit
//! costs the message its verdict (counted in `/metrics`), never its delivery.

use std::cell::Cell;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::auth::{AuthResults, LocalVerifier, Route, Verifier};
use crate::config::Config;
use crate::metrics::Counters;
use crate::net::http_client;
use crate::net::{NotDurable, Shards};
use crate::smtp::{Delivery, Transaction};

use super::{Connection, RECEIVED_HEADER_BYTES_EXPECTED, log_transaction};

/// How long past a check's own deadline the session waits for its answer before it goes
/// on without it: the resolver thread answers every request by its deadline, so this only
/// matters if that thread is stuck.
const AUTH_ANSWER_MARGIN: Duration = Duration::from_millis(500);
/// rspamd requests in flight per executor; beyond it a message is stored without a
/// verdict at once (each holds a socket and the reply buffer, and a backlog this deep
/// means rspamd is far behind anyway).
const SPAM_IN_FLIGHT_MAX: usize = 256;
/// At most one warning per this interval per executor about rspamd failing, so a down
/// rspamd at 20,000 messages a second does not flood the log (the metrics count each).
const SPAM_WARNING_INTERVAL: Duration = Duration::from_secs(10);
/// A client refused by a blocklist may send this many commands (each answered `503`,
/// QUIT with `221`) before the connection is closed (RFC 5321 3.1 asks the server to wait
/// for QUIT after a 554 greeting).
const REFUSED_COMMANDS_MAX: usize = 8;
/// How long a refused client has for those commands, in all.
const REFUSED_DEADLINE: Duration = Duration::from_secs(10);
/// Read buffer for a refused client's commands.
const REFUSED_BUFFER_BYTES: usize = 1024;

/// What this executor's SMTP sessions check, from the configuration.
pub struct Checks {
    /// `--verify-senders annotate`: SPF, DKIM, DMARC, ARC and iprev for every message.
    pub verifier: Option<LocalVerifier>,
    /// `--dnsbl`: blocklists asked about every client.
    pub dnsbl: Option<Dnsbl>,
    /// `--rspamd`: a spam verdict for every message.
    pub spam: Option<SpamFilter>,
}

impl Checks {
    /// `resolver` is the `auth` resolver thread, started when sender checks or blocklists
    /// are configured.
    pub fn new(config: &Config, resolver: Option<Verifier>) -> Checks {
        let dnsbl = match (&resolver, config.dnsbl.is_empty()) {
            (Some(resolver), false) => Some(Dnsbl {
                resolver: resolver.clone(),
                zones: config.dnsbl.iter().map(|site| site.zone.clone()).collect(),
                weights: config.dnsbl.iter().map(|site| site.weight).collect(),
                threshold: i64::try_from(config.dnsbl_threshold).unwrap_or(i64::MAX),
            }),
            _ => None,
        };
        Checks {
            verifier: resolver
                .filter(|_| config.verify_senders == crate::config::VerifySenders::Annotate)
                .map(LocalVerifier::new),
            dnsbl,
            spam: config.rspamd.clone().map(|endpoint| SpamFilter {
                endpoint,
                timeout: config.rspamd_timeout,
                reject_score: config.spam_reject_score,
                in_flight: Cell::new(0),
                last_warning: Cell::new(None),
            }),
        }
    }

    /// Whether a message waits for any check before it is stored.
    pub fn checks_messages(&self) -> bool {
        self.verifier.is_some() || self.spam.is_some()
    }
}

/// The blocklists and their weights.
pub struct Dnsbl {
    resolver: Verifier,
    zones: Arc<[Box<str>]>,
    weights: Box<[i32]>,
    threshold: i64,
}

impl Dnsbl {
    /// The resolver thread the blocklists are asked through.
    pub fn resolver(&self) -> &Verifier {
        &self.resolver
    }

    /// Asks every zone about `client_ip`; the refusal to send instead of the greeting
    /// when its listings weigh `threshold` or more. A zone that does not answer in time
    /// counts as not listing the client.
    pub async fn refusal(&self, client_ip: IpAddr, counters: &Counters) -> Option<Vec<u8>> {
        let answer = self.resolver.dnsbl(client_ip, self.zones.clone());
        let deadline = self.resolver.deadline() + AUTH_ANSWER_MARGIN;
        let result = answer_within(answer, deadline)
            .await
            .unwrap_or_else(|| crate::auth::DnsblResult::temperror(&self.zones));
        let mut score = 0i64;
        let mut blocking_zone = None;
        for (zone, &weight) in result.zones.iter().zip(self.weights.iter()) {
            match zone.verdict {
                crate::auth::DnsblVerdict::Listed { .. } => {
                    score += i64::from(weight);
                    if weight > 0 && blocking_zone.is_none() {
                        blocking_zone = Some(&*zone.zone);
                    }
                }
                crate::auth::DnsblVerdict::TempError => {
                    Counters::add(&counters.dnsbl_lookup_failures_total, 1);
                }
                crate::auth::DnsblVerdict::NotListed => {}
            }
        }
        let zone = blocking_zone.filter(|_| score >= self.threshold)?;
        Some(crate::smtp::reply::blocklisted(zone))
    }
}

/// The resolver thread's answer, or `None` if it has none within `wait` (or is gone): the
/// thread answers every request by its own deadline, so this only fires if it is stuck.
async fn answer_within<T>(
    answer: futures_channel::oneshot::Receiver<T>,
    wait: Duration,
) -> Option<T> {
    futures_lite::future::or(async { answer.await.ok() }, async {
        glommio::timer::sleep(wait).await;
        None
    })
    .await
}

/// Sends a blocklisted client `refusal` instead of the greeting, then answers what it
/// sends (QUIT with 221, anything else with 503) until it quits, sends too much or runs
/// out of time, and closes. A TLS client (`--smtps`) is closed at once, as for the other
/// refusals before a session.
pub(super) async fn refuse_listed(mut stream: TcpStream, implicit_tls: bool, refusal: &[u8]) {
    if implicit_tls {
        let _ = stream.close().await;
        return;
    }
    let exchange = async {
        stream.write_all(refusal).await?;
        let mut buf = vec![0u8; REFUSED_BUFFER_BYTES];
        let mut end = 0;
        let mut n_commands = 0;
        while n_commands < REFUSED_COMMANDS_MAX {
            let n_read = stream.read(&mut buf[end..]).await?;
            if n_read == 0 {
                break;
            }
            end += n_read;
            while let Some(line_end) = memchr::memmem::find(&buf[..end], b"\r\n") {
                n_commands += 1;
                let is_quit = buf[..line_end].trim_ascii().eq_ignore_ascii_case(b"QUIT");
                let reply = if is_quit {
                    crate::smtp::reply::QUIT
                } else {
                    crate::smtp::reply::REFUSED_SESSION
                };
                stream.write_all(reply).await?;
                if is_quit {
                    return Ok(());
                }
                buf.copy_within(line_end + 2..end, 0);
                end -= line_end + 2;
            }
            if end == buf.len() {
                break;
            }
        }
        Ok::<(), std::io::Error>(())
    };
    let _ = futures_lite::future::or(exchange, async {
        glommio::timer::sleep(REFUSED_DEADLINE).await;
        Ok(())
    })
    .await;
    let _ = stream.close().await;
}

/// rspamd, as this executor asks it.
pub struct SpamFilter {
    endpoint: crate::spam::Endpoint,
    timeout: Duration,
    reject_score: Option<f64>,
    in_flight: Cell<usize>,
    last_warning: Cell<Option<Instant>>,
}

impl SpamFilter {
    /// rspamd's verdict on the message `parts` make up, or `None` (counted) when it has
    /// none in time, answers with an error, or too many requests are in flight.
    async fn verdict(
        &self,
        head: &[u8],
        parts: &[&[u8]],
        counters: &Counters,
    ) -> Option<crate::spam::Verdict> {
        if self.in_flight.get() >= SPAM_IN_FLIGHT_MAX {
            Counters::add(&counters.spam_check_failures_total, 1);
            self.warn(&"too many requests in flight");
            return None;
        }
        self.in_flight.set(self.in_flight.get() + 1);
        let deadline = Instant::now() + self.timeout;
        let answer = http_client::post(
            self.endpoint.addr,
            head,
            parts,
            deadline,
            crate::spam::REPLY_BYTES_MAX,
        )
        .await;
        self.in_flight.set(self.in_flight.get() - 1);
        let verdict = match answer {
            Ok(response) => crate::spam::parse_reply(response.status, &response.body)
                .map_err(|error| self.warn(&error))
                .ok(),
            Err(error) => {
                self.warn(&error);
                None
            }
        };
        Counters::add(
            if verdict.is_some() {
                &counters.spam_checks_total
            } else {
                &counters.spam_check_failures_total
            },
            1,
        );
        verdict
    }

    fn warn(&self, why: &dyn std::fmt::Display) {
        let now = Instant::now();
        if self
            .last_warning
            .get()
            .is_some_and(|last| now.duration_since(last) < SPAM_WARNING_INTERVAL)
        {
            return;
        }
        self.last_warning.set(Some(now));
        tracing::warn!(
            "rspamd gave no verdict ({why}); messages are stored without one \
             (mayfly_spam_check_failures_total counts them)"
        );
    }
}

impl<S: Shards> Connection<S> {
    /// With sender checks or rspamd on: hands the message to them and goes on with the
    /// session at once. Its 250 is written now but held in `out` (as for the journal)
    /// until the answers are in, their header fields are prepended and every copy is
    /// stored; `settle` replaces it if storing fails or rspamd's score reaches
    /// `--spam-reject-score`. Pipelined transactions after it are served meanwhile, and
    /// their checks run concurrently.
    pub(super) fn deliver_checked(&mut self) {
        let ctx = self.ctx.clone();
        ctx.next_queue_id(&mut self.queue_id);
        self.received_header.clear();
        let now = SystemTime::now();
        self.session
            .write_received_header(&self.queue_id, now, &mut self.received_header);
        let transaction = self.session.transaction();
        // One copy, shared by the resolver thread and the stores: the session's body
        // buffer is reused by the next transaction before this one is stored.
        let message: Arc<[u8]> = Arc::from(transaction.body);
        let mail_from = transaction.mail_from.to_string();
        let rcpts_text = transaction.rcpts_text().to_string();
        let n_rcpts = transaction.n_rcpts();
        let auth = match (&ctx.checks.verifier, self.peer_ip) {
            (Some(verifier), Some(peer_ip)) => {
                let request = crate::auth::VerifyRequest {
                    client_ip: peer_ip,
                    helo: self.session.helo().to_string(),
                    mail_from: mail_from.clone(),
                    authserv_id: ctx.authserv_id.clone(),
                    message: message.clone(),
                    include_client_ip: ctx.config.log_client_ip,
                };
                // Should the resolver thread not answer at all, the `temperror` answer
                // is made then, from MAIL FROM and (only when it has no domain, so SPF
                // checked the HELO name) a copy of the HELO name kept for it.
                let fallback_helo = if mail_from.contains('@') {
                    String::new()
                } else {
                    self.session.helo().to_string()
                };
                let fallback_ip = ctx.config.log_client_ip.then_some(peer_ip);
                let (answer, route) = verifier.verify(request);
                if route == Route::Executor {
                    Counters::add(&ctx.counters.auth_checks_on_executor_total, 1);
                }
                Some((
                    answer,
                    (fallback_helo, fallback_ip),
                    verifier.shared().deadline() + AUTH_ANSWER_MARGIN,
                ))
            }
            _ => None,
        };
        let queue_id = self.queue_id.clone();
        let spam_head = ctx.checks.spam.as_ref().map(|filter| {
            let envelope = crate::spam::Envelope {
                mail_from: &mail_from,
                rcpts_text: &rcpts_text,
                helo: self.session.helo(),
                client_ip: self.peer_ip,
                queue_id: &queue_id,
                mta_name: &ctx.config.hostname,
            };
            let body_bytes = self.received_header.len() + message.len();
            crate::spam::request_head(&filter.endpoint, &envelope, body_bytes)
        });
        let mut received_header = std::mem::take(&mut self.received_header);
        self.received_header = Vec::with_capacity(RECEIVED_HEADER_BYTES_EXPECTED);
        let client_ip = self.client_ip;
        let peer = self.peer_ip;
        let reply_start = self.out.len();
        self.session.delivered(
            Delivery::Stored {
                queue_id: &queue_id,
            },
            &mut self.out,
        );
        let reply = reply_start..self.out.len();
        let settled = async move {
            let auth_answer = async {
                let (answer, (fallback_helo, fallback_ip), deadline) = auth?;
                Some(answer_within(answer, deadline).await.unwrap_or_else(|| {
                    AuthResults::temperror_for(&mail_from, &fallback_helo, fallback_ip)
                }))
            };
            let spam_answer = async {
                let (filter, head) = ctx.checks.spam.as_ref().zip(spam_head)?;
                let parts: [&[u8]; 2] = [&received_header, &message];
                filter.verdict(&head, &parts, &ctx.counters).await
            };
            let (results, verdict) = futures_lite::future::zip(auth_answer, spam_answer).await;
            if let Some(results) = &results {
                ctx.counters.count_auth_results(results);
            }
            let reject_score = ctx.checks.spam.as_ref().and_then(|f| f.reject_score);
            if let Some(verdict) = verdict.as_ref().filter(|v| v.rejected_at(reject_score)) {
                Counters::add(&ctx.counters.spam_rejected_total, 1);
                tracing::info!(
                    queue_id = %queue_id,
                    score = verdict.score,
                    "message refused as spam (550 5.7.1), nothing stored"
                );
                crate::alloc::wipe_vec(&mut received_header);
                return Err(NotDurable::Spam);
            }
            let authserv_id = &ctx.authserv_id;
            let mut prefix = Vec::with_capacity(512);
            if let Some(results) = &results {
                prefix.extend_from_slice(
                    crate::auth::header::authentication_results(
                        authserv_id,
                        results,
                        ctx.config.log_client_ip,
                    )
                    .as_bytes(),
                );
            }
            if let Some(verdict) = &verdict {
                prefix.extend_from_slice(crate::spam::header_block(verdict).as_bytes());
            }
            prefix.extend_from_slice(&received_header);
            crate::alloc::wipe_vec(&mut received_header);
            // Incoming fields that claim to be our checks' go: ours are the only ones a
            // reader should find.
            let mut body: std::borrow::Cow<'_, [u8]> = std::borrow::Cow::Borrowed(&message);
            if results.is_some()
                && let Some(stripped) = crate::auth::header::strip_forged(&body, authserv_id)
            {
                body = stripped.into();
            }
            if ctx.checks.spam.is_some()
                && let Some(stripped) = crate::spam::strip_incoming(&body)
            {
                body = stripped.into();
            }
            let transaction = Transaction::from_parts(&mail_from, &rcpts_text, n_rcpts, &body);
            let started = Instant::now();
            let (delivery, durability) = ctx
                .shards
                .deliver(&transaction, &prefix, &queue_id, now)
                .await;
            let delivery_latency = started.elapsed();
            ctx.counters.smtp_delivery_latency.record(delivery_latency);
            log_transaction(
                &transaction,
                &queue_id,
                &delivery,
                delivery_latency,
                client_ip,
                ctx.config.log_envelope,
            );
            crate::alloc::wipe_vec(&mut prefix);
            let outcome = match delivery {
                Delivery::Stored { .. } => match durability {
                    Some(durability) => durability.await,
                    None => Ok(()),
                },
                Delivery::TooLarge => Err(NotDurable::TooLarge),
                Delivery::TemporaryFailure => Err(NotDurable::Temporary),
            };
            if outcome.is_ok() {
                ctx.client_limits.count_message(peer, Instant::now());
            }
            outcome
        };
        self.pending.push((reply, Box::pin(settled)));
        self.refuse_mail_if_over_rate();
    }
}
