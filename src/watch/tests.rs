//! `Watchers` against a real `Shard` and `ViewCache`, with no executor: the channels are
//! read with `try_recv`.

use futures_channel::mpsc;

use super::*;
use crate::store::{Incoming, Rcpt, ShardConfig};

fn shard() -> Shard {
    Shard::new(ShardConfig {
        shard_idx: 0,
        boot_micros: 1,
        ring_bytes: 1 << 20,
        ttl_ms: 60_000,
        inbox_messages_max: 1000,
    })
}

fn key(address: &str) -> InboxKey<'static> {
    InboxKey::new(address).unwrap().into_owned()
}

/// Stores a message for `address` and tells the watchers, as the runtime does.
fn deliver(store: &mut Shard, watchers: &mut Watchers, address: &str, subject: &str) -> MessageId {
    let rcpts = [Rcpt::new(address).unwrap()];
    let body = format!("Subject: {subject}\r\n\r\ntext\r\n");
    let parts: [&[u8]; 1] = [body.as_bytes()];
    let id = store
        .insert(
            &Incoming {
                mail_from: "s@x.test",
                rcpts: &rcpts,
                parts: &parts,
                received_at_ms: 0,
            },
            0,
        )
        .unwrap();
    watchers.stored(rcpts.iter().map(|rcpt| &rcpt.key));
    id
}

fn subjects(frames: &mut mpsc::Receiver<String>) -> Vec<String> {
    let mut subjects = Vec::new();
    while let Ok(frame) = frames.try_recv() {
        let json: serde_json::Value = serde_json::from_str(&frame).unwrap();
        subjects.push(json["subject"].as_str().unwrap().to_string());
    }
    subjects
}

#[test]
fn long_polls_wake_on_their_inbox_only_and_leave_no_trace() {
    let (signal, _signals) = mpsc::channel(0);
    let mut watchers = Watchers::new(signal);
    let mut store = shard();
    let mut woken = watchers.park(key("a@x.test"));
    let mut other = watchers.park(key("b@x.test"));
    let gone = watchers.park(key("b@x.test"));
    assert_eq!(watchers.n_waiters(), 3);
    deliver(&mut store, &mut watchers, "A@X.test", "hi");
    assert_eq!(woken.try_recv(), Ok(Some(())));
    assert_eq!(other.try_recv(), Ok(None));
    // A client that hung up dropped its receiver: its slot goes at the next look.
    drop(gone);
    watchers.forget_closed_waiters(&key("b@x.test"));
    assert_eq!(watchers.n_waiters(), 1);
    drop(other);
    watchers.forget_closed();
    assert_eq!(watchers.n_waiters(), 0);
    assert!(watchers.is_empty());
}

#[test]
fn subscribers_get_each_new_summary_once_oldest_first() {
    let (signal, mut signals) = mpsc::channel(0);
    let mut watchers = Watchers::new(signal);
    let mut store = shard();
    let mut views = ViewCache::new(1 << 20);
    let counters = Counters::default();
    deliver(&mut store, &mut watchers, "a@x.test", "before");
    let newest = store.list(&key("a@x.test"), None, 1).newest;
    let (frames, mut received) = mpsc::channel(WS_QUEUE_FRAMES);
    watchers.subscribe(key("a@x.test"), frames, newest);
    for subject in ["one", "two", "three"] {
        deliver(&mut store, &mut watchers, "a@x.test", subject);
    }
    deliver(&mut store, &mut watchers, "b@x.test", "elsewhere");
    // One wake and one queue entry for three messages.
    assert_eq!(signals.try_recv(), Ok(()));
    let pending = watchers.take_pending();
    assert_eq!(pending, [key("a@x.test")]);
    for key in &pending {
        watchers.push(key, &store, &mut views, &counters);
    }
    assert_eq!(subjects(&mut received), ["one", "two", "three"]);
    deliver(&mut store, &mut watchers, "a@x.test", "four");
    for key in watchers.take_pending() {
        watchers.push(&key, &store, &mut views, &counters);
    }
    assert_eq!(subjects(&mut received), ["four"]);
    assert_eq!(counters.websocket_frames_total.get(), 4);
    assert!(watchers.take_pending().is_empty());
}

#[test]
fn a_subscriber_too_far_behind_is_dropped_and_counted() {
    let (signal, _signals) = mpsc::channel(0);
    let mut watchers = Watchers::new(signal);
    let mut store = shard();
    let mut views = ViewCache::new(1 << 20);
    let counters = Counters::default();
    let (frames, mut received) = mpsc::channel(0);
    watchers.subscribe(key("a@x.test"), frames, None);
    for n in 0..3 {
        deliver(&mut store, &mut watchers, "a@x.test", &n.to_string());
    }
    for key in watchers.take_pending() {
        watchers.push(&key, &store, &mut views, &counters);
    }
    // A channel of capacity zero takes one frame per sender; the second is refused.
    assert_eq!(counters.websockets_dropped_slow_total.get(), 1);
    assert_eq!(watchers.n_subscribers(), 0);
    assert_eq!(subjects(&mut received), ["0"]);
    // The sender is gone with the subscription: the socket sees its summaries end.
    assert_eq!(received.try_recv(), Err(mpsc::TryRecvError::Closed));
}

#[test]
fn shutdown_wakes_polls_and_ends_subscriptions() {
    let (signal, mut signals) = mpsc::channel(0);
    let mut watchers = Watchers::new(signal);
    let mut woken = watchers.park(key("a@x.test"));
    let (frames, mut received) = mpsc::channel(4);
    watchers.subscribe(key("a@x.test"), frames, None);
    watchers.wake_all();
    watchers.drop_subscribers();
    assert_eq!(woken.try_recv(), Ok(Some(())));
    assert_eq!(received.try_recv(), Err(mpsc::TryRecvError::Closed));
    assert_eq!(
        signals.try_recv(),
        Err(mpsc::TryRecvError::Closed),
        "the push task's signal ends"
    );
}

#[test]
fn idlers_are_signalled_once_per_change_until_they_look() {
    let (signal, _signals) = mpsc::channel(0);
    let mut watchers = Watchers::new(signal);
    let mut store = shard();
    let (idle_signal, mut changes) = mpsc::channel(0);
    watchers.watch_changes(key("a@x.test"), idle_signal);
    assert!(!watchers.is_empty());
    assert_eq!(watchers.n_idlers(), 1);
    deliver(&mut store, &mut watchers, "b@x.test", "other inbox");
    assert!(changes.try_recv().is_err(), "no signal for another inbox");
    deliver(&mut store, &mut watchers, "a@x.test", "one");
    deliver(&mut store, &mut watchers, "a@x.test", "two");
    watchers.changed(&key("a@x.test"));
    // Several changes before the idler looks are one signal: it reads the inbox anyway.
    assert_eq!(changes.try_recv(), Ok(()));
    assert!(changes.try_recv().is_err());
    watchers.changed(&key("a@x.test"));
    assert_eq!(changes.try_recv(), Ok(()));
    // An idler that went away is forgotten at the next change.
    drop(changes);
    watchers.changed(&key("a@x.test"));
    assert_eq!(watchers.n_idlers(), 0);
    assert!(watchers.is_empty());
}
