//! Whoever waits for an inbox: long polls (`?wait=`), WebSocket subscriptions and mail
//! clients in IMAP IDLE, parked at the shard that owns the inbox.
//!
//! `Watchers` is one shard's book of them. It does no IO and knows no executor: the
//! runtime tells it when messages were stored (`stored`), and it wakes long polls at once
//! and queues the inboxes whose subscribers need a push. The push itself (a summary per new
//! message, which needs a parse) happens later in the shard's push task (`take_pending`,
//! `push`), so it never delays a 250.
//!
//! Every part is bounded: waiters by the per-core long-poll cap of the HTTP side, each
//! subscriber's queue by `WS_QUEUE_FRAMES`, the pending queue by the number of subscribed
//! inboxes (an inbox is queued at most once), and entries of closed clients are dropped
//! when their inbox is next touched or by the periodic sweep (`forget_closed`).

use std::collections::{HashMap, HashSet, VecDeque};

use futures_channel::{mpsc, oneshot};

use crate::address::InboxKey;
use crate::http::api;
use crate::mail::ViewCache;
use crate::metrics::Counters;
use crate::store::{MessageId, Shard};

/// Summaries queued for one WebSocket before it counts as too slow and is dropped (it gets
/// close code 1013 and resynchronises with a listing).
pub const WS_QUEUE_FRAMES: usize = 256;

/// One shard's parked long polls and WebSocket subscriptions.
///
/// Invariant: an inbox is in `pending` at most once (`pending_set` mirrors it), and only
/// inboxes with subscribers are queued.
#[derive(Default)]
pub struct Watchers {
    /// Long polls parked until a message arrives in their inbox.
    waiters: HashMap<InboxKey<'static>, Vec<oneshot::Sender<()>>>,
    /// WebSocket subscriptions to inboxes this shard owns.
    subscribers: HashMap<InboxKey<'static>, Vec<Subscriber>>,
    /// Inboxes with subscribers that got mail since the push task last looked.
    pending: VecDeque<InboxKey<'static>>,
    pending_set: HashSet<InboxKey<'static>>,
    /// Wakes the push task; capacity one, so a wake already queued is not doubled.
    push_signal: Option<mpsc::Sender<()>>,
    /// Mail clients waiting for any change to an inbox (IMAP IDLE): a signal each, of
    /// capacity one, so a change already signalled is not queued twice.
    idlers: HashMap<InboxKey<'static>, Vec<mpsc::Sender<()>>>,
}

/// A WebSocket's subscription.
struct Subscriber {
    /// Summaries (JSON text) to the socket's task, which may run on another executor.
    frames: mpsc::Sender<String>,
    /// The newest message already pushed (or in the inbox when it subscribed).
    last_id: Option<MessageId>,
}

impl Watchers {
    /// An empty book; `push_signal` is woken when an inbox needs a push.
    pub fn new(push_signal: mpsc::Sender<()>) -> Watchers {
        Watchers {
            push_signal: Some(push_signal),
            ..Watchers::default()
        }
    }

    /// True when nobody waits for any inbox: then `stored` has nothing to do.
    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty() && self.subscribers.is_empty() && self.idlers.is_empty()
    }

    /// Parks a long poll on `key`; the receiver completes when a message arrives there (or
    /// on `wake_all`). Dropping the receiver un-parks it (see `forget_closed_waiters`).
    pub fn park(&mut self, key: InboxKey<'static>) -> oneshot::Receiver<()> {
        let (waiter, woken) = oneshot::channel();
        let parked = self.waiters.entry(key).or_default();
        parked.retain(|waiter| !waiter.is_canceled());
        parked.push(waiter);
        woken
    }

    /// Drops the parked long polls of `key` whose requests have gone (answered, timed out,
    /// or their clients hung up), so the map stays bounded.
    pub fn forget_closed_waiters(&mut self, key: &InboxKey<'_>) {
        if let Some(parked) = self.waiters.get_mut(key.as_str()) {
            parked.retain(|waiter| !waiter.is_canceled());
            if parked.is_empty() {
                self.waiters.remove(key.as_str());
            }
        }
    }

    /// Messages were stored in `keys`: wake their long polls and queue their subscribers.
    pub fn stored<'k>(&mut self, keys: impl IntoIterator<Item = &'k InboxKey<'k>>) {
        if self.is_empty() {
            return;
        }
        for key in keys {
            self.changed(key);
            if let Some(parked) = self.waiters.remove(key.as_str()) {
                for waiter in parked {
                    let _ = waiter.send(());
                }
            }
            if self.subscribers.contains_key(key.as_str())
                && !self.pending_set.contains(key.as_str())
            {
                let key = key.clone().into_owned();
                self.pending_set.insert(key.clone());
                self.pending.push_back(key);
                if let Some(signal) = &mut self.push_signal {
                    // Full means a wake is already queued.
                    let _ = signal.try_send(());
                }
            }
        }
    }

    /// Subscribes `frames` to the new messages of `key`, which this shard owns; `newest`
    /// is the newest message in the inbox now (not pushed).
    pub fn subscribe(
        &mut self,
        key: InboxKey<'static>,
        frames: mpsc::Sender<String>,
        newest: Option<MessageId>,
    ) {
        let subscribed = self.subscribers.entry(key).or_default();
        subscribed.retain(|subscriber| !subscriber.frames.is_closed());
        subscribed.push(Subscriber {
            frames,
            last_id: newest,
        });
    }

    /// Signals `signal` whenever inbox `key` (owned by this shard) changes: a message
    /// stored or deleted there (expiry is foreseeable: the idler sets its own timer).
    pub fn watch_changes(&mut self, key: InboxKey<'static>, signal: mpsc::Sender<()>) {
        let watching = self.idlers.entry(key).or_default();
        watching.retain(|signal| !signal.is_closed());
        watching.push(signal);
    }

    /// Inbox `key` changed: signal whoever watches it for changes.
    pub fn changed(&mut self, key: &InboxKey<'_>) {
        let Some(watching) = self.idlers.get_mut(key.as_str()) else {
            return;
        };
        watching.retain_mut(|signal| match signal.try_send(()) {
            Ok(()) => true,
            // Full: a change is already signalled and not yet seen.
            Err(error) => error.is_full(),
        });
        if watching.is_empty() {
            self.idlers.remove(key.as_str());
        }
    }

    /// The inboxes queued for a push since the last call, oldest first.
    pub fn take_pending(&mut self) -> Vec<InboxKey<'static>> {
        self.pending_set.clear();
        self.pending.drain(..).collect()
    }

    /// Sends each subscriber of `key` the summaries of the messages that arrived since its
    /// last push, oldest first. A subscriber whose queue is full, or that missed more than a
    /// queue's worth, is dropped: its socket closes with 1013 and the client lists.
    pub fn push(
        &mut self,
        key: &InboxKey<'_>,
        store: &Shard,
        views: &mut ViewCache,
        counters: &Counters,
    ) {
        let Some(subscribed) = self.subscribers.get_mut(key.as_str()) else {
            return;
        };
        subscribed.retain_mut(|subscriber| {
            let listing = store.list(key, subscriber.last_id, WS_QUEUE_FRAMES);
            if listing.messages.len() == WS_QUEUE_FRAMES {
                Counters::add(&counters.websockets_dropped_slow_total, 1);
                return false;
            }
            for message in listing.messages.iter().rev() {
                views.ensure_summary(message);
                let Some(summary) = views.summary(message.id) else {
                    continue;
                };
                match subscriber
                    .frames
                    .try_send(api::summary_text(message, summary))
                {
                    Ok(()) => Counters::add(&counters.websocket_frames_total, 1),
                    Err(error) => {
                        if error.is_full() {
                            Counters::add(&counters.websockets_dropped_slow_total, 1);
                        }
                        return false;
                    }
                }
            }
            if let Some(newest) = listing.messages.first() {
                subscriber.last_id = Some(newest.id);
            }
            !subscriber.frames.is_closed()
        });
        if subscribed.is_empty() {
            self.subscribers.remove(key.as_str());
        }
    }

    /// Forgets long polls and subscriptions whose clients have gone, so quiet inboxes do
    /// not keep them (the periodic sweep).
    pub fn forget_closed(&mut self) {
        self.subscribers.retain(|_, subscribed| {
            subscribed.retain(|subscriber| !subscriber.frames.is_closed());
            !subscribed.is_empty()
        });
        self.waiters.retain(|_, parked| {
            parked.retain(|waiter| !waiter.is_canceled());
            !parked.is_empty()
        });
        self.idlers.retain(|_, watching| {
            watching.retain(|signal| !signal.is_closed());
            !watching.is_empty()
        });
    }

    /// Wakes every parked long poll (they answer at once once shutdown has begun).
    pub fn wake_all(&mut self) {
        for (_, parked) in self.waiters.drain() {
            for waiter in parked {
                let _ = waiter.send(());
            }
        }
    }

    /// Drops every subscription: their WebSockets see the summaries end and close (1001
    /// on shutdown). Also stops the push task, whose signal ends.
    pub fn drop_subscribers(&mut self) {
        self.subscribers.clear();
        self.idlers.clear();
        self.pending.clear();
        self.pending_set.clear();
        self.push_signal = None;
    }

    /// Long polls parked now.
    pub fn n_waiters(&self) -> usize {
        self.waiters.values().map(Vec::len).sum()
    }

    /// WebSocket subscriptions held now.
    pub fn n_subscribers(&self) -> usize {
        self.subscribers.values().map(Vec::len).sum()
    }

    /// Mail clients watching inboxes for changes now.
    pub fn n_idlers(&self) -> usize {
        self.idlers.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests;
