//! Webhooks at the shard: queueing an event for each inbox a stored message went to, the
//! bodies the sender takes (rendered from the summary cache), and the queue's counters for
//! `/metrics`. The queue is `webhook::Queue` (no IO); the sender is `net::webhook`.

use crate::address::InboxKey;
use crate::http::api;
use crate::net::webhook::Outbox;
use crate::runtime::shard::ShardCtx;
use crate::store::{Incoming, MessageId};
use crate::webhook::Attempt;

impl ShardCtx {
    /// A message was stored here for `incoming`'s recipients: one event per inbox for
    /// every webhook that wants it. Cheap: nothing is rendered before the 250.
    pub(super) fn webhooks_stored(&self, incoming: &Incoming<'_>, id: MessageId) {
        let Some(webhooks) = &self.webhooks else {
            return;
        };
        let ttl_ms = self.store.borrow().config().ttl_ms;
        let expires_at_ms = incoming.received_at_ms.saturating_add(ttl_ms);
        let mut webhooks = webhooks.borrow_mut();
        for (rcpt_idx, rcpt) in incoming.rcpts.iter().enumerate() {
            // Two spellings of one inbox are one inbox: one event.
            if !incoming.rcpts[..rcpt_idx]
                .iter()
                .any(|seen| seen.key == rcpt.key)
            {
                webhooks.stored(&rcpt.key, id, expires_at_ms);
            }
        }
    }

    /// Copies the queue's counters into the shard's (the queue is below the metrics).
    pub(super) fn copy_webhook_stats(&self) {
        let Some(webhooks) = &self.webhooks else {
            return;
        };
        let queue = webhooks.borrow();
        let (stats, counters) = (queue.stats(), &self.counters);
        counters.webhook_deliveries_total.set(stats.delivered);
        counters.webhook_retries_total.set(stats.retried);
        counters
            .webhook_dropped_queue_full_total
            .set(stats.dropped_queue_full);
        counters
            .webhook_dropped_expired_total
            .set(stats.dropped_expired);
        counters
            .webhook_dropped_attempts_total
            .set(stats.dropped_attempts);
        counters.webhook_dropped_gone_total.set(stats.dropped_gone);
        counters.webhook_queue_length.set(queue.len() as u64);
        counters
            .webhook_requests_in_flight
            .set(queue.in_flight() as u64);
    }
}

impl Outbox for ShardCtx {
    fn take_due(&self, now_ms: u64) -> Vec<Attempt> {
        let Some(webhooks) = &self.webhooks else {
            return Vec::new();
        };
        let mut due = Vec::new();
        let mut store = self.store.borrow_mut();
        let mut views = self.views.borrow_mut();
        {
            let mut queue = webhooks.borrow_mut();
            // The body is the listing entry, from the summary cached for readers (parsed
            // here, from at most the message's first 64 KiB, if nobody read it yet).
            let mut summary = |key: &InboxKey<'_>, id: MessageId| {
                let message = store.get(key, id)?;
                views.ensure_summary(&message);
                let summary = views.summary(id)?;
                Some(api::summary_text(&message, summary))
            };
            while let Some(attempt) = queue.next(now_ms, &mut summary) {
                due.push(attempt);
            }
        }
        views.sync(&mut store);
        due
    }

    fn finish(&self, attempt: Attempt, delivered: bool, now_ms: u64) {
        if let Some(webhooks) = &self.webhooks {
            webhooks.borrow_mut().finish(attempt, delivered, now_ms);
        }
    }

    fn next_retry_ms(&self) -> Option<u64> {
        self.webhooks.as_ref()?.borrow().next_retry_ms()
    }
}
