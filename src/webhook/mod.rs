//! Webhooks with no IO: which stored messages go to which `--webhook`, the request each
//! becomes (body, signature, head), when a failed one is tried again, and the bounded
//! per-shard queue that holds them meanwhile.
//!
//! The owning shard calls [`Queue::stored`] as it stores a message, which only appends a
//! small event (inbox, message id, expiry) per matching webhook: nothing is rendered on
//! the way to the `250`. The sender task (`net::webhook`) takes attempts with
//! [`Queue::next`], which renders an event's body the first time it is sent (the summary
//! JSON of a listing entry, which the shard supplies), posts them, and hands each back
//! with [`Queue::finish`]: delivered, or scheduled again after an exponential backoff, or
//! dropped once its attempts are spent or its message's TTL has passed.
//!
//! Each webhook has its own lane per shard (queue bound and requests in flight), so a
//! receiver that hangs delays and drops only its own events. Delivery is at least once:
//! an attempt whose reply was lost is sent again, with the same `X-Mayfly-Delivery` id and
//! the same body, so receivers can de-duplicate.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use futures_channel::mpsc;
use ring::hmac;

use crate::address::InboxKey;
use crate::config::{Webhook, WebhookUrl};
use crate::store::MessageId;

/// Events one webhook's lane holds per shard (waiting, scheduled for a retry, or in
/// flight); a new event beyond it is dropped and counted. Each waiting event is ~100
/// bytes; one scheduled for a retry also holds its body (a summary, ~1 KiB).
pub const QUEUE_EVENTS_MAX: usize = 4096;
/// Requests in flight per webhook per shard; each holds a connection. Measured: with 8,
/// a fast receiver on loopback took only 0.79 of the events per message of a 1 KiB W2
/// load (a request waits about a millisecond for its reply on a busy 2-core machine)
/// and the rest were dropped; with 32 it took them all.
pub const IN_FLIGHT_MAX: usize = 32;
/// Attempts per event, the first included; then it is dropped and counted. With the
/// backoff below the last is tried 20 to 40 minutes after the first (and never after
/// the message's TTL).
pub const ATTEMPTS_MAX: u32 = 16;
/// The wait after the first failed attempt; it doubles after each one.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Largest reply body read from a receiver (it is not used, only read to its end).
pub const REPLY_BYTES_MAX: usize = 64 * 1024;
/// The one event there is, in the body and in `X-Mayfly-Event`.
pub const EVENT_STORED: &str = "message.stored";
/// The header carrying `sha256=` and the body's HMAC-SHA256 in lowercase hex.
pub const SIGNATURE_HEADER: &str = "X-Mayfly-Signature-256";
/// The header carrying the delivery's id: the same on every attempt of one event.
pub const DELIVERY_HEADER: &str = "X-Mayfly-Delivery";

/// One shard's webhook events, a lane per configured webhook.
pub struct Queue {
    webhooks: Arc<[Webhook]>,
    lanes: Vec<Lane>,
    signer: Option<hmac::Key>,
    /// Wakes the sender task; capacity one, so a wake already queued is not doubled.
    wake: Option<mpsc::Sender<()>>,
    /// Where `next` starts looking, so one busy lane does not starve the others.
    next_lane_idx: usize,
    /// The first part of every delivery id: process start and shard, as in queue ids.
    delivery_prefix: String,
    deliveries_issued: u64,
    jitter: Jitter,
    stats: QueueStats,
}

/// What a shard's queue has done, for `/metrics` (copied out when metrics are gathered).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Requests answered with a 2xx.
    pub delivered: u64,
    /// Failed attempts scheduled again.
    pub retried: u64,
    /// Events dropped because their lane was full.
    pub dropped_queue_full: u64,
    /// Events dropped because their message's TTL passed before a receiver took them.
    pub dropped_expired: u64,
    /// Events dropped after `ATTEMPTS_MAX` failed attempts.
    pub dropped_attempts: u64,
    /// Events dropped because their message was gone (deleted or evicted) before its
    /// body was rendered.
    pub dropped_gone: u64,
}

/// One request to send: taken with [`Queue::next`], handed back with [`Queue::finish`].
#[derive(Debug)]
pub struct Attempt {
    /// Which webhook (index into the configured list).
    pub webhook_idx: usize,
    /// 1 for the first attempt.
    pub attempt_n: u32,
    pub delivery_id: String,
    /// `{"event":...,"inbox":...,"message":...}`.
    pub body: String,
    /// `sha256=HEX` of `body`, with a key.
    pub signature: Option<String>,
    expires_at_ms: u64,
}

/// One webhook's events in one shard.
///
/// Invariant: `fresh.len() + retries.len() + in_flight <= QUEUE_EVENTS_MAX`, and
/// `in_flight <= IN_FLIGHT_MAX`.
#[derive(Default)]
struct Lane {
    /// Stored messages not yet sent, oldest first: nothing rendered yet.
    fresh: VecDeque<Fresh>,
    /// Failed attempts waiting for their next try, earliest first.
    retries: BinaryHeap<Reverse<Retry>>,
    in_flight: usize,
}

struct Fresh {
    key: InboxKey<'static>,
    id: MessageId,
    expires_at_ms: u64,
}

/// A failed attempt, due again at `due_ms`; `order` keeps equal times first in, first out.
struct Retry {
    due_ms: u64,
    order: u64,
    attempt: Attempt,
}

impl PartialEq for Retry {
    fn eq(&self, other: &Retry) -> bool {
        (self.due_ms, self.order) == (other.due_ms, other.order)
    }
}

impl Eq for Retry {}

impl PartialOrd for Retry {
    fn partial_cmp(&self, other: &Retry) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Retry {
    fn cmp(&self, other: &Retry) -> std::cmp::Ordering {
        (self.due_ms, self.order).cmp(&(other.due_ms, other.order))
    }
}

impl Lane {
    fn len(&self) -> usize {
        self.fresh.len() + self.retries.len() + self.in_flight
    }
}

impl Queue {
    /// An empty queue for `webhooks`; bodies are signed under `secret` when given.
    /// `delivery_prefix` starts every delivery id (unique per process and shard), `seed`
    /// seeds the backoff jitter, and `wake` is signalled whenever the sender has something
    /// new to do (an event queued, a request slot freed).
    pub fn new(
        webhooks: Arc<[Webhook]>,
        secret: Option<&[u8]>,
        delivery_prefix: String,
        seed: u64,
        wake: mpsc::Sender<()>,
    ) -> Queue {
        Queue {
            lanes: webhooks.iter().map(|_| Lane::default()).collect(),
            webhooks,
            signer: secret.map(|secret| hmac::Key::new(hmac::HMAC_SHA256, secret)),
            wake: Some(wake),
            next_lane_idx: 0,
            delivery_prefix,
            deliveries_issued: 0,
            jitter: Jitter(seed),
            stats: QueueStats::default(),
        }
    }

    /// A message was stored in inbox `key`: queue an event for every webhook that wants
    /// it. Cheap (no rendering); a full lane drops its event and counts it.
    pub fn stored(&mut self, key: &InboxKey<'_>, id: MessageId, expires_at_ms: u64) {
        let mut queued = false;
        for (webhook, lane) in self.webhooks.iter().zip(&mut self.lanes) {
            if !webhook.wants(key.as_str()) {
                continue;
            }
            if lane.len() >= QUEUE_EVENTS_MAX {
                self.stats.dropped_queue_full += 1;
                continue;
            }
            lane.fresh.push_back(Fresh {
                key: key.clone().into_owned(),
                id,
                expires_at_ms,
            });
            queued = true;
        }
        if queued {
            self.wake();
        }
    }

    /// The next request to send at `now_ms`, if a lane has one due and a free slot:
    /// first a retry that is due, else the oldest fresh event, whose body is rendered now
    /// from `summary` (the message's listing entry as JSON text, `None` when the message
    /// is gone). Events whose message expired are dropped on the way.
    pub fn next(
        &mut self,
        now_ms: u64,
        mut summary: impl FnMut(&InboxKey<'_>, MessageId) -> Option<String>,
    ) -> Option<Attempt> {
        let n_lanes = self.lanes.len();
        for offset in 0..n_lanes {
            let lane_idx = (self.next_lane_idx + offset) % n_lanes;
            if let Some(attempt) = self.next_in_lane(lane_idx, now_ms, &mut summary) {
                self.next_lane_idx = (lane_idx + 1) % n_lanes;
                self.lanes[lane_idx].in_flight += 1;
                return Some(attempt);
            }
        }
        None
    }

    fn next_in_lane(
        &mut self,
        lane_idx: usize,
        now_ms: u64,
        summary: &mut impl FnMut(&InboxKey<'_>, MessageId) -> Option<String>,
    ) -> Option<Attempt> {
        let lane = &mut self.lanes[lane_idx];
        if lane.in_flight >= IN_FLIGHT_MAX {
            return None;
        }
        while lane
            .retries
            .peek()
            .is_some_and(|Reverse(retry)| retry.due_ms <= now_ms)
        {
            let Reverse(retry) = lane.retries.pop()?;
            if retry.attempt.expires_at_ms <= now_ms {
                self.stats.dropped_expired += 1;
                continue;
            }
            return Some(retry.attempt);
        }
        while let Some(fresh) = lane.fresh.pop_front() {
            if fresh.expires_at_ms <= now_ms {
                self.stats.dropped_expired += 1;
                continue;
            }
            let Some(summary) = summary(&fresh.key, fresh.id) else {
                self.stats.dropped_gone += 1;
                continue;
            };
            let body = payload(fresh.key.as_str(), &summary);
            let signature = self
                .signer
                .as_ref()
                .map(|key| signature(key, body.as_bytes()));
            self.deliveries_issued += 1;
            return Some(Attempt {
                webhook_idx: lane_idx,
                attempt_n: 1,
                delivery_id: format!("{}{:010x}", self.delivery_prefix, self.deliveries_issued),
                body,
                signature,
                expires_at_ms: fresh.expires_at_ms,
            });
        }
        None
    }

    /// Takes back an attempt `next` handed out: `delivered` (a 2xx reply) ends it;
    /// otherwise it is scheduled again after [`backoff`], or dropped when its attempts
    /// are spent or its message will have expired by then.
    pub fn finish(&mut self, mut attempt: Attempt, delivered: bool, now_ms: u64) {
        let lane = &mut self.lanes[attempt.webhook_idx];
        assert!(lane.in_flight > 0, "an attempt was finished twice");
        lane.in_flight -= 1;
        if delivered {
            self.stats.delivered += 1;
        } else if attempt.attempt_n >= ATTEMPTS_MAX {
            self.stats.dropped_attempts += 1;
        } else {
            let wait = backoff(attempt.attempt_n, self.jitter.next());
            let due_ms = now_ms.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
            if due_ms >= attempt.expires_at_ms {
                self.stats.dropped_expired += 1;
            } else {
                attempt.attempt_n += 1;
                self.stats.retried += 1;
                self.deliveries_issued += 1;
                lane.retries.push(Reverse(Retry {
                    due_ms,
                    order: self.deliveries_issued,
                    attempt,
                }));
            }
        }
        self.wake();
    }

    /// When the earliest scheduled retry falls due, if any, among the lanes with a free
    /// request slot (the sender's timer). A full lane is left out: its retry cannot start
    /// before a request finishes, and `finish` wakes the sender then (a timer already in
    /// the past would only make it spin).
    pub fn next_retry_ms(&self) -> Option<u64> {
        self.lanes
            .iter()
            .filter(|lane| lane.in_flight < IN_FLIGHT_MAX)
            .filter_map(|lane| lane.retries.peek().map(|Reverse(retry)| retry.due_ms))
            .min()
    }

    /// Events held now in every lane (waiting, scheduled or in flight).
    pub fn len(&self) -> usize {
        self.lanes.iter().map(Lane::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.lanes.iter().map(|lane| lane.in_flight).sum()
    }

    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// The configured webhooks, by index.
    pub fn webhook(&self, webhook_idx: usize) -> &Webhook {
        &self.webhooks[webhook_idx]
    }

    /// Stops waking the sender (shutdown): its wake channel ends, and so does its loop.
    pub fn close(&mut self) {
        self.wake = None;
    }

    fn wake(&mut self) {
        if let Some(wake) = &mut self.wake {
            // Full means a wake is already queued.
            let _ = wake.try_send(());
        }
    }
}

/// The request body: `{"event":"message.stored","inbox":ADDRESS,"message":SUMMARY}`, where
/// `summary` is already JSON (a listing entry).
pub fn payload(inbox: &str, summary: &str) -> String {
    let inbox = serde_json::to_string(inbox).unwrap_or_else(|_| "\"\"".to_string());
    let mut body = String::with_capacity(48 + inbox.len() + summary.len());
    let _ = write!(
        body,
        "{{\"event\":\"{EVENT_STORED}\",\"inbox\":{inbox},\"message\":{summary}}}"
    );
    body
}

/// `sha256=` and the HMAC-SHA256 of `body` under `key`, in lowercase hex (GitHub's
/// `X-Hub-Signature-256` form).
pub fn signature(key: &hmac::Key, body: &[u8]) -> String {
    let tag = hmac::sign(key, body);
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256=");
    for byte in tag.as_ref() {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// The request head for `attempt` to `url`. `keep_alive`: the connection may carry the
/// next request (HTTP/1.1's default), else `Connection: close`.
pub fn request_head(url: &WebhookUrl, attempt: &Attempt, keep_alive: bool) -> Vec<u8> {
    let mut head = String::with_capacity(320 + url.path.len());
    let _ = write!(
        head,
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: mayfly\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\
         X-Mayfly-Event: {EVENT_STORED}\r\n{DELIVERY_HEADER}: {}\r\nX-Mayfly-Attempt: {}\r\n",
        url.path,
        url.authority,
        attempt.body.len(),
        attempt.delivery_id,
        attempt.attempt_n
    );
    if let Some(signature) = &attempt.signature {
        let _ = write!(head, "{SIGNATURE_HEADER}: {signature}\r\n");
    }
    head.push_str(if keep_alive {
        "\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    head.into_bytes()
}

/// How long to wait after failed attempt `attempt_n` (1-based): `BACKOFF_FIRST` doubling
/// up to `BACKOFF_MAX`, of which a random half is taken off ("equal jitter"), so
/// receivers that came back are not hit by every shard's retries at once, and the wait
/// still grows.
pub fn backoff(attempt_n: u32, random: u64) -> Duration {
    let doublings = attempt_n.saturating_sub(1).min(30);
    let ceiling_ms = u64::try_from(BACKOFF_FIRST.as_millis())
        .unwrap_or(u64::MAX)
        .saturating_mul(1 << doublings)
        .min(u64::try_from(BACKOFF_MAX.as_millis()).unwrap_or(u64::MAX));
    let half_ms = ceiling_ms / 2;
    Duration::from_millis(ceiling_ms - half_ms + random % (half_ms + 1))
}

/// SplitMix64: cheap, well-spread numbers for jitter (nothing here needs secrecy).
struct Jitter(u64);

impl Jitter {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests;
