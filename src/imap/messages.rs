//! The commands on a selected mailbox's messages: FETCH, SEARCH, STORE, and EXPUNGE,
//! UID EXPUNGE and CLOSE. Each resolves its set against the model, answers what the model
//! alone can answer, and otherwise starts a job that asks the socket loop for bytes
//! (`Event::NeedMessages`) or for a deletion (`Event::Expunge`).

use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::SequenceSet;

use crate::imap::model::write_flags_fetch;
use crate::imap::{Event, FetchJob, Job, SearchJob, Session, State, fetch, reply, search};

impl Session {
    /// FETCH and UID FETCH: at once from the model, or as a job in rounds.
    pub(super) fn fetch(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        items: Vec<fetch::Item>,
        uid: bool,
        out: &mut Vec<u8>,
    ) -> Option<Event> {
        let State::Selected(selected) = &mut self.state else {
            return None;
        };
        let slot_idxs = match selected.resolve(set, uid, true) {
            Ok(slot_idxs) => slot_idxs,
            Err(error) => return self.bad(tag, error.text(), out),
        };
        let text = if uid {
            "UID FETCH completed"
        } else {
            "FETCH completed"
        };
        if !fetch::needs_bytes(&items) {
            for &slot_idx in &slot_idxs {
                let Some(slot) = selected.slot_mut(slot_idx) else {
                    continue;
                };
                fetch::write_fetch(out, slot_idx + 1, slot, &items, None, uid, false);
                if items.contains(&fetch::Item::Flags) {
                    slot.seen_announced = slot.seen;
                }
            }
            self.finish(tag, text, uid, out);
            return None;
        }
        // A message known to be gone has no bytes to show: it is skipped.
        let slot_idxs: Vec<usize> = slot_idxs
            .into_iter()
            .filter(|&slot_idx| {
                selected
                    .slots()
                    .get(slot_idx)
                    .is_some_and(|slot| !slot.gone)
            })
            .collect();
        if slot_idxs.is_empty() {
            self.finish(tag, text, uid, out);
            return None;
        }
        self.job = Job::Fetch(FetchJob {
            tag: tag.to_string(),
            uid,
            items,
            slot_idxs,
            done: 0,
            round_end: 0,
        });
        self.pending_event()
    }

    /// SEARCH and UID SEARCH: decided from the model where it can be, the rest in rounds.
    pub(super) fn search(
        &mut self,
        tag: &str,
        criteria: &SearchKey<'_>,
        uid: bool,
        out: &mut Vec<u8>,
    ) -> Option<Event> {
        let State::Selected(selected) = &self.state else {
            return None;
        };
        let key = match search::key_of(criteria, selected) {
            Ok(key) => key,
            Err(error) => return self.bad(tag, error.text(), out),
        };
        let mut matched = Vec::new();
        let mut undecided = Vec::new();
        for (slot_idx, slot) in selected.slots().iter().enumerate() {
            match search::eval(&key, slot_idx, slot, None) {
                Some(true) => matched.push(slot_idx),
                Some(false) => {}
                None if slot.gone => {}
                None => undecided.push(slot_idx),
            }
        }
        let job = SearchJob {
            tag: tag.to_string(),
            uid,
            key,
            matched,
            undecided,
            done: 0,
            round_end: 0,
        };
        if job.undecided.is_empty() {
            self.search_done(job, out);
            return None;
        }
        self.job = Job::Search(job);
        self.pending_event()
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn store(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
        out: &mut Vec<u8>,
    ) -> Option<Event> {
        let State::Selected(selected) = &mut self.state else {
            return None;
        };
        if selected.read_only {
            reply::no(out, tag, Some("READ-ONLY"), "Mailbox is read-only");
            return None;
        }
        let slot_idxs = match selected.resolve(set, uid, true) {
            Ok(slot_idxs) => slot_idxs,
            Err(error) => return self.bad(tag, error.text(), out),
        };
        // Flags other than these are not kept (PERMANENTFLAGS says so); they are ignored.
        let seen = flags.contains(&Flag::Seen);
        let deleted = flags.contains(&Flag::Deleted);
        for slot_idx in slot_idxs {
            let Some(slot) = selected.slot_mut(slot_idx) else {
                continue;
            };
            let (seen_now, deleted_now) = match kind {
                StoreType::Replace => (seen, deleted),
                StoreType::Add => (slot.seen || seen, slot.deleted || deleted),
                StoreType::Remove => (slot.seen && !seen, slot.deleted && !deleted),
            };
            if seen_now != slot.seen && !slot.gone {
                slot.seen_sent = Some(seen_now);
                self.flag_changes.push((slot.id, seen_now));
            }
            slot.seen = seen_now;
            slot.deleted = deleted_now;
            // With .SILENT the client knows the flags it set; either way they are shown.
            slot.seen_announced = slot.seen;
            if response == StoreResponse::Answer {
                write_flags_fetch(out, slot_idx + 1, slot, uid);
            }
        }
        self.finish(
            tag,
            if uid {
                "UID STORE completed"
            } else {
                "STORE completed"
            },
            uid,
            out,
        );
        self.pending_event()
    }

    /// EXPUNGE, UID EXPUNGE (`uid_set`) and CLOSE (`close`: silently, then deselect).
    pub(super) fn expunge(
        &mut self,
        tag: &str,
        uid_set: Option<&SequenceSet>,
        close: bool,
        out: &mut Vec<u8>,
    ) -> Option<Event> {
        let State::Selected(selected) = &self.state else {
            return None;
        };
        let command = match (close, uid_set) {
            (true, _) => "CLOSE completed",
            (false, Some(_)) => "UID EXPUNGE completed",
            (false, None) => "EXPUNGE completed",
        };
        if selected.read_only {
            if close {
                self.state = State::Authenticated;
                reply::ok(out, tag, command);
            } else {
                reply::no(out, tag, Some("READ-ONLY"), "Mailbox is read-only");
            }
            return None;
        }
        let in_set = match uid_set {
            Some(set) => match selected.resolve(set, true, true) {
                Ok(slot_idxs) => Some(slot_idxs),
                Err(error) => return self.bad(tag, error.text(), out),
            },
            None => None,
        };
        let ids: Vec<_> = selected
            .slots()
            .iter()
            .enumerate()
            .filter(|(slot_idx, slot)| {
                slot.deleted
                    && !slot.gone
                    && in_set
                        .as_ref()
                        .is_none_or(|set| set.binary_search(slot_idx).is_ok())
            })
            .map(|(_, slot)| slot.id)
            .collect();
        if ids.is_empty() {
            if close {
                self.state = State::Authenticated;
                reply::ok(out, tag, command);
            } else {
                self.finish(tag, command, true, out);
            }
            return None;
        }
        self.job = Job::Expunge {
            tag: tag.to_string(),
            close,
            command,
        };
        let event = Event::Expunge { ids };
        self.awaiting = Some(event.clone());
        Some(event)
    }
}
