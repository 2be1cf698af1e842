//! Mail clients' requests (POP3, IMAP) at the shard that owns the inbox: the inbox
//! numbered for them, copies of messages, seen flags, deletions, and change signals for
//! IMAP IDLE.

use futures_channel::mpsc;

use crate::address::InboxKey;
use crate::clock::now_ms;
use crate::journal::record::{IdRecord, Record};
use crate::mailbox::{Mailbox, MailboxEntry};
use crate::net::{MailboxAnswer, MailboxOp, NotDurable};
use crate::runtime::shard::ShardCtx;

impl ShardCtx {
    /// Does `op` on inbox `key`, which this shard owns.
    pub(super) async fn mailbox_local(
        &self,
        key: &InboxKey<'static>,
        op: MailboxOp,
    ) -> MailboxAnswer {
        self.expire(now_ms());
        match op {
            MailboxOp::Open => MailboxAnswer::Opened(self.numbered(key)),
            MailboxOp::Fetch(ids) => {
                let store = self.store.borrow();
                MailboxAnswer::Fetched(
                    ids.into_iter()
                        .map(|id| (id, store.get(key, id).map(|message| message.raw.to_vec())))
                        .collect(),
                )
            }
            MailboxOp::SetSeen(changes) => {
                let mut store = self.store.borrow_mut();
                for (id, seen) in changes {
                    store.set_seen(key, id, seen);
                }
                drop(store);
                self.watchers.borrow_mut().changed(key);
                MailboxAnswer::SeenSet
            }
            MailboxOp::Delete(ids) => MailboxAnswer::Deleted(self.delete_local(key, ids).await),
        }
    }

    /// Deletes `ids` from inbox `key`; answers the ones gone now (deleted here, or before).
    async fn delete_local(
        &self,
        key: &InboxKey<'static>,
        ids: Vec<crate::store::MessageId>,
    ) -> Result<Vec<crate::store::MessageId>, NotDurable> {
        let mut deleted = Vec::with_capacity(ids.len());
        let mut durable = Vec::new();
        {
            let mut store = self.store.borrow_mut();
            for id in ids {
                if store.delete_message(key, id)
                    && let Some(journal) = &self.journal
                {
                    durable.push(journal.append(
                        &Record::Deleted {
                            id: IdRecord {
                                boot_micros: id.boot_micros,
                                shard_idx: id.shard_idx,
                                seq: id.seq,
                            },
                            key: key.as_str(),
                        },
                        None,
                    ));
                }
                // Deleted now or gone already (expired, deleted elsewhere): gone either way.
                deleted.push(id);
            }
            self.views.borrow_mut().sync(&mut store);
        }
        self.watchers.borrow_mut().changed(key);
        for receiver in durable {
            if !matches!(receiver.await, Ok(Ok(()))) {
                return Err(NotDurable::Temporary);
            }
        }
        Ok(deleted)
    }

    /// Inbox `key` numbered for mail clients, as the shard holds it now.
    fn numbered(&self, key: &InboxKey<'_>) -> Mailbox {
        let store = self.store.borrow();
        let numbered = store.numbered(key);
        Mailbox {
            uid_validity: numbered.uid_validity,
            uid_next: numbered.uid_next,
            entries: numbered
                .messages
                .iter()
                .map(|(uid, message)| MailboxEntry {
                    id: message.id,
                    uid: *uid,
                    // At most --max-message-size plus our Received header: far below 4 GiB.
                    size_bytes: u32::try_from(message.raw.len()).unwrap_or(u32::MAX),
                    received_at_ms: message.received_at_ms,
                    expires_at_ms: message.expires_at_ms,
                    seen: message.seen,
                })
                .collect(),
        }
    }

    /// Signals `signal` on every change to inbox `key` (owned here); false when shutting down.
    pub(super) fn watch_changes_local(
        &self,
        key: InboxKey<'static>,
        signal: mpsc::Sender<()>,
    ) -> bool {
        if self.shutting_down.get() {
            return false;
        }
        self.watchers.borrow_mut().watch_changes(key, signal);
        true
    }
}
