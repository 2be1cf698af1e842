//! The webhook queue, bodies, signatures and backoff, with no executor and no sockets.

use std::sync::Arc;

use futures_channel::mpsc;

use super::*;
use crate::config::DomainPolicy;

const NOW_MS: u64 = 1_000_000;
const TTL_MS: u64 = 3_600_000;

fn webhook(domain: Option<&str>) -> Webhook {
    Webhook {
        domains: domain.map(|domain| DomainPolicy::new(&[domain])),
        url: WebhookUrl::parse("http://127.0.0.1:9/hook").expect("url"),
    }
}

fn queue(webhooks: Vec<Webhook>, secret: Option<&[u8]>) -> (Queue, mpsc::Receiver<()>) {
    let (wake, woken) = mpsc::channel(0);
    let queue = Queue::new(Arc::from(webhooks), secret, "p".to_string(), 7, wake);
    (queue, woken)
}

fn id(seq: u64) -> MessageId {
    MessageId {
        boot_micros: 1,
        shard_idx: 0,
        seq,
    }
}

fn key(address: &str) -> InboxKey<'static> {
    InboxKey::new(address).expect("address").into_owned()
}

/// A summary for every message: `{"id":SEQ}`.
fn summary(_key: &InboxKey<'_>, id: MessageId) -> Option<String> {
    Some(format!("{{\"id\":{}}}", id.seq))
}

/// Takes every attempt due at `now_ms`.
fn drain(queue: &mut Queue, now_ms: u64) -> Vec<Attempt> {
    std::iter::from_fn(|| queue.next(now_ms, summary)).collect()
}

#[test]
fn bodies_are_the_event_the_inbox_and_the_listing_entry() {
    let body = payload("bob@example.test", r#"{"id":"x","subject":"hi"}"#);
    assert_eq!(
        body,
        r#"{"event":"message.stored","inbox":"bob@example.test","message":{"id":"x","subject":"hi"}}"#
    );
    // The address is JSON-escaped (a local part may hold a quote).
    let body = payload("\"odd\\\"@example.test", "{}");
    let parsed: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
    assert_eq!(parsed["inbox"], "\"odd\\\"@example.test");
}

#[test]
fn signatures_are_hmac_sha256_in_lowercase_hex() {
    // RFC 4231, test case 2.
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
    assert_eq!(
        signature(&key, b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn heads_carry_the_delivery_the_attempt_and_the_signature() {
    let (mut signed, _woken) = queue(vec![webhook(None)], Some(b"0123456789abcdef"));
    signed.stored(&key("a@x.test"), id(1), NOW_MS + TTL_MS);
    let attempt = signed.next(NOW_MS, summary).expect("due");
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"0123456789abcdef");
    assert_eq!(
        attempt.signature.as_deref(),
        Some(&*signature(&key, attempt.body.as_bytes()))
    );
    let url = &signed.webhook(0).url;
    let head = String::from_utf8(request_head(url, &attempt, false)).expect("ASCII");
    let expected = format!(
        "POST /hook HTTP/1.1\r\nHost: 127.0.0.1:9\r\nUser-Agent: mayfly\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\
         X-Mayfly-Event: message.stored\r\nX-Mayfly-Delivery: p0000000001\r\n\
         X-Mayfly-Attempt: 1\r\nX-Mayfly-Signature-256: {}\r\nConnection: close\r\n\r\n",
        attempt.body.len(),
        attempt.signature.as_deref().expect("signed")
    );
    assert_eq!(head, expected);
    let head = String::from_utf8(request_head(url, &attempt, true)).expect("ASCII");
    assert!(head.ends_with("\r\n\r\n") && !head.contains("Connection"));

    let (mut unsigned, _woken) = queue(vec![webhook(None)], None);
    unsigned.stored(&self::key("a@x.test"), id(1), NOW_MS + TTL_MS);
    let attempt = unsigned.next(NOW_MS, summary).expect("due");
    assert!(attempt.signature.is_none());
    let head = String::from_utf8(request_head(url, &attempt, true)).expect("ASCII");
    assert!(!head.contains(SIGNATURE_HEADER), "{head}");
}

#[test]
fn backoff_doubles_from_one_second_to_five_minutes_with_half_jitter() {
    // (failed attempt, shortest wait, longest wait) in ms.
    let table: &[(u32, u64, u64)] = &[
        (1, 500, 1_000),
        (2, 1_000, 2_000),
        (3, 2_000, 4_000),
        (9, 128_000, 256_000),
        (10, 150_000, 300_000),
        (15, 150_000, 300_000),
        (u32::MAX, 150_000, 300_000),
    ];
    for &(attempt_n, low_ms, high_ms) in table {
        let low = backoff(attempt_n, 0);
        let high = backoff(attempt_n, u64::MAX - 1);
        assert_eq!(low, Duration::from_millis(low_ms), "{attempt_n}");
        assert!(
            high <= Duration::from_millis(high_ms),
            "{attempt_n}: {high:?}"
        );
        for random in [1, 12_345, u64::MAX] {
            let wait = backoff(attempt_n, random);
            assert!((low..=Duration::from_millis(high_ms)).contains(&wait));
        }
    }
    // The whole schedule: the last attempt comes 20 to 40 minutes after the first.
    for random in [0, u64::MAX - 1] {
        let schedule_ms: u64 = (1..ATTEMPTS_MAX)
            .map(|n| u64::try_from(backoff(n, random).as_millis()).unwrap())
            .sum();
        assert!(
            (1_155_000..=2_311_000).contains(&schedule_ms),
            "{schedule_ms}"
        );
    }
}

#[test]
fn only_matching_webhooks_get_an_event_and_each_is_sent_once() {
    let hooks = vec![
        webhook(None),
        webhook(Some("*.example.test")),
        webhook(Some("other.test")),
    ];
    let (mut queue, mut woken) = queue(hooks, None);
    queue.stored(&key("bob@sub.example.test"), id(1), NOW_MS + TTL_MS);
    assert!(woken.try_recv().is_ok(), "woken");
    queue.stored(&key("eve@other.test"), id(2), NOW_MS + TTL_MS);
    assert_eq!(queue.len(), 4);
    let mut sent: Vec<(usize, String)> = drain(&mut queue, NOW_MS)
        .into_iter()
        .map(|attempt| (attempt.webhook_idx, attempt.body))
        .collect();
    sent.sort();
    let body = |address: &str, seq: u64| payload(address, &format!("{{\"id\":{seq}}}"));
    assert_eq!(
        sent,
        [
            (0, body("bob@sub.example.test", 1)),
            (0, body("eve@other.test", 2)),
            (1, body("bob@sub.example.test", 1)),
            (2, body("eve@other.test", 2)),
        ]
    );
    assert_eq!(queue.in_flight(), 4);
    assert!(queue.next(NOW_MS, summary).is_none());
}

#[test]
fn a_full_lane_drops_new_events_and_counts_them() {
    let (mut queue, _woken) = queue(vec![webhook(None), webhook(Some("b.test"))], None);
    for seq in 0..QUEUE_EVENTS_MAX as u64 {
        queue.stored(&key("a@a.test"), id(seq), NOW_MS + TTL_MS);
    }
    queue.stored(&key("a@a.test"), id(99_999), NOW_MS + TTL_MS);
    assert_eq!(queue.stats().dropped_queue_full, 1);
    // The other lane has room of its own.
    queue.stored(&key("a@b.test"), id(100_000), NOW_MS + TTL_MS);
    assert_eq!(queue.stats().dropped_queue_full, 2);
    assert_eq!(queue.len(), QUEUE_EVENTS_MAX + 1);
    // In-flight requests still count against the bound.
    let attempt = queue.next(NOW_MS, summary).expect("due");
    queue.stored(&key("a@a.test"), id(100_001), NOW_MS + TTL_MS);
    assert_eq!(queue.stats().dropped_queue_full, 3);
    queue.finish(attempt, true, NOW_MS);
    queue.stored(&key("a@a.test"), id(100_002), NOW_MS + TTL_MS);
    assert_eq!(queue.stats().dropped_queue_full, 3);
}

#[test]
fn requests_in_flight_are_bounded_per_webhook() {
    let (mut queue, _woken) = queue(vec![webhook(Some("a.test")), webhook(Some("b.test"))], None);
    for seq in 0..3 * IN_FLIGHT_MAX as u64 {
        queue.stored(&key("x@a.test"), id(seq), NOW_MS + TTL_MS);
    }
    let first = drain(&mut queue, NOW_MS);
    assert_eq!(first.len(), IN_FLIGHT_MAX);
    // A stuck lane does not hold up the other one.
    queue.stored(&key("x@b.test"), id(1_000), NOW_MS + TTL_MS);
    let other = drain(&mut queue, NOW_MS);
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].webhook_idx, 1);
    // Each finished request frees one slot, in order of arrival.
    let mut first = first.into_iter();
    queue.finish(first.next().expect("one"), true, NOW_MS);
    let next = drain(&mut queue, NOW_MS);
    assert_eq!(next.len(), 1);
    assert!(
        next[0]
            .body
            .contains(&format!("{{\"id\":{}}}", IN_FLIGHT_MAX))
    );
    // A retry due in a full lane sets no timer (it would be in the past, and the sender
    // would spin); the request that frees a slot wakes the sender instead.
    let mut in_flight: Vec<Attempt> = first.chain(next).collect();
    queue.finish(in_flight.pop().expect("one"), false, NOW_MS);
    let retry_ms = queue.next_retry_ms().expect("scheduled");
    let refill = drain(&mut queue, NOW_MS);
    assert_eq!(refill.len(), 1);
    assert_eq!(queue.next_retry_ms(), None);
    assert!(queue.next(retry_ms, summary).is_none());
    queue.finish(refill.into_iter().next().expect("one"), true, retry_ms);
    assert_eq!(queue.next_retry_ms(), Some(retry_ms));
    assert_eq!(
        queue.next(retry_ms, summary).expect("the retry").attempt_n,
        2
    );
}

#[test]
fn failed_attempts_come_back_after_the_backoff_with_the_same_id_and_body() {
    let (mut queue, mut woken) = queue(vec![webhook(None)], Some(b"0123456789abcdef"));
    queue.stored(&key("a@a.test"), id(1), NOW_MS + TTL_MS);
    let first = queue.next(NOW_MS, summary).expect("due");
    let (delivery_id, body, signature) = (
        first.delivery_id.clone(),
        first.body.clone(),
        first.signature.clone(),
    );
    let _ = woken.try_recv();
    queue.finish(first, false, NOW_MS);
    assert!(woken.try_recv().is_ok(), "woken by the free slot");
    assert_eq!(queue.stats().retried, 1);
    let due_ms = queue.next_retry_ms().expect("scheduled");
    assert!(
        (NOW_MS + 500..=NOW_MS + 1_000).contains(&due_ms),
        "{due_ms}"
    );
    assert!(queue.next(due_ms - 1, summary).is_none());
    let again = queue.next(due_ms, summary).expect("due again");
    assert_eq!(again.attempt_n, 2);
    assert_eq!(
        (&again.delivery_id, &again.body, &again.signature),
        (&delivery_id, &body, &signature)
    );
    queue.finish(again, true, due_ms);
    assert_eq!(queue.stats().delivered, 1);
    assert!(queue.is_empty() && queue.next_retry_ms().is_none());
}

#[test]
fn events_are_dropped_when_attempts_run_out_or_the_message_expires() {
    let (mut queue, _woken) = queue(vec![webhook(None)], None);
    // Attempts run out long before a 30-day TTL.
    queue.stored(&key("a@a.test"), id(1), NOW_MS + 30 * 86_400_000);
    let mut now_ms = NOW_MS;
    let mut n_attempts = 0;
    while let Some(attempt) = queue.next(now_ms, summary) {
        n_attempts += 1;
        queue.finish(attempt, false, now_ms);
        now_ms = queue.next_retry_ms().unwrap_or(now_ms);
    }
    assert_eq!(n_attempts, ATTEMPTS_MAX);
    let stats = queue.stats();
    assert_eq!(
        (stats.retried, stats.dropped_attempts),
        (u64::from(ATTEMPTS_MAX) - 1, 1)
    );

    // A retry that would come after the message's expiry is dropped at once.
    queue.stored(&key("a@a.test"), id(2), NOW_MS + 5_000);
    let attempt = queue.next(NOW_MS, summary).expect("due");
    queue.finish(attempt, false, NOW_MS + 4_900);
    assert_eq!(queue.stats().dropped_expired, 1);
    // So is a fresh event whose message expired while it waited, without rendering it.
    queue.stored(&key("a@a.test"), id(3), NOW_MS + 10);
    let mut rendered = 0;
    let none = queue.next(NOW_MS + 10, |key, id| {
        rendered += 1;
        summary(key, id)
    });
    assert!(none.is_none());
    assert_eq!((rendered, queue.stats().dropped_expired), (0, 2));
    assert!(queue.is_empty());
}

#[test]
fn events_of_messages_gone_before_they_were_sent_are_dropped() {
    let (mut queue, _woken) = queue(vec![webhook(None)], None);
    queue.stored(&key("a@a.test"), id(1), NOW_MS + TTL_MS);
    queue.stored(&key("a@a.test"), id(2), NOW_MS + TTL_MS);
    let attempt = queue
        .next(NOW_MS, |key, id| {
            (id.seq == 2).then(|| summary(key, id)).flatten()
        })
        .expect("the second");
    assert!(attempt.body.contains("{\"id\":2}"));
    assert_eq!(queue.stats().dropped_gone, 1);
}

#[test]
fn delivery_ids_are_unique_per_event_and_lanes_take_turns() {
    let (mut queue, _woken) = queue(vec![webhook(None), webhook(None)], None);
    for seq in 0..4 {
        queue.stored(&key("a@a.test"), id(seq), NOW_MS + TTL_MS);
    }
    let attempts = drain(&mut queue, NOW_MS);
    let lanes: Vec<usize> = attempts.iter().map(|attempt| attempt.webhook_idx).collect();
    assert_eq!(lanes, [0, 1, 0, 1, 0, 1, 0, 1]);
    let mut ids: Vec<&str> = attempts.iter().map(|a| a.delivery_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 8);
}

#[test]
fn a_closed_queue_wakes_nobody() {
    let (mut queue, mut woken) = queue(vec![webhook(None)], None);
    queue.close();
    queue.stored(&key("a@a.test"), id(1), NOW_MS + TTL_MS);
    // The sender's loop sees its wake channel end.
    assert!(woken.try_recv().is_err_and(|error| error.is_closed()));
}
