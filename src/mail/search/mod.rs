//! Search over one inbox (`GET /api/v1/inboxes/{address}?q=...`), evaluated at the shard
//! that owns the inbox, against its store and its `ViewCache`.
//!
//! `query` parses the language (pure); `matcher` evaluates it on one message; this module
//! walks an inbox newest first in *steps*, each bounded in the work it does on the
//! executor, and says what the caller must do between steps:
//!
//! - `Step::Done`: the newest `limit` matches, newest first.
//! - `Step::Parse`: some messages need their text body and no cached view has it: parse
//!   them off the executor (`ParseBatch::job`, then `ParseJob::run` on a blocking thread),
//!   hand the result to `SearchState::absorb`, and step again.
//! - `Step::Yield`: the step used its budget (`STEP_BYTES_MAX` of summaries parsed and
//!   bodies folded); let other tasks run, then step again.
//!
//! A request keeps a `SearchState` across its steps: the verdicts of the messages already
//! evaluated, so each step starts where work remains and a step always makes progress,
//! also when the view cache is too small to keep what the previous step parsed (`sync`
//! may trim it between steps).
//!
//! Summaries are parsed on the executor (cheap and bounded, as for a listing); a body is
//! parsed only when a free-text or `has:attachment` term cannot be settled without it,
//! into a `SearchView` (one `mail-parser` pass, no sanitizing), off the executor.

pub mod matcher;
pub mod query;
pub mod view;

use crate::address::InboxKey;
use crate::mail::ViewCache;
use crate::mail::cache::IdMap;
use crate::store::{MessageId, MessageRef, Shard};
pub use matcher::{Matcher, Verdict};
pub use query::{Key, QUERY_BYTES_MAX, Query, QueryError, TERMS_MAX, Term, fold};
pub use view::{BodyRef, SearchView};

/// Bytes of messages a step may parse into summaries, plus bytes of bodies it may fold,
/// before it yields: a few milliseconds of the executor.
pub const STEP_BYTES_MAX: usize = 4 << 20;
/// Messages one `ParseJob` parses at most.
pub const BATCH_MESSAGES_MAX: usize = 256;
/// Bytes of messages one `ParseJob` copies at most (a single larger message goes alone):
/// the copies exist while the job runs.
pub const BATCH_BYTES_MAX: usize = 4 << 20;

/// What one request's search has learnt so far, kept across its steps and its long poll.
///
/// Invariant: `decided` holds only messages of this request's inbox, evaluated with this
/// request's query.
#[derive(Default)]
pub struct SearchState {
    /// Verdicts of messages evaluated in steps that did not finish.
    decided: IdMap<bool>,
    /// Search views parsed off the executor, not yet evaluated.
    parsed: Vec<(MessageId, SearchView)>,
    /// Set when the request parks for a long poll: the messages up to here were searched
    /// and did not match, so after a wake only newer ones are.
    floor: Option<MessageId>,
}

/// What a search step came to.
pub enum Step<'s> {
    /// The newest matches (at most `limit`), newest first.
    Done(Vec<MessageRef<'s>>),
    /// Parse these messages' search views off the executor, then step again.
    Parse(ParseBatch),
    /// The step's budget is spent: let other tasks run, then step again.
    Yield,
}

/// Messages whose search views a step needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParseBatch {
    ids: Vec<MessageId>,
}

/// Copies of the messages of a `ParseBatch`, to parse on another thread.
pub struct ParseJob {
    messages: Vec<(MessageId, Vec<u8>)>,
}

/// What a `ParseJob` produced.
pub struct Parsed {
    views: Vec<(MessageId, SearchView)>,
}

impl SearchState {
    /// Remembers that every message up to `newest` was searched without a match (the
    /// request parks for a long poll now).
    pub fn set_floor(&mut self, newest: Option<MessageId>) {
        self.floor = self.floor.max(newest);
        // Every verdict is of a message at or below the floor, which no step reads again:
        // a parked request keeps none of them (and so costs what a plain long poll costs).
        self.decided = IdMap::default();
    }

    /// Takes the views a `ParseJob` made; the next step evaluates them.
    pub fn absorb(&mut self, parsed: Parsed) {
        self.parsed.extend(parsed.views);
    }

    /// One step of the search of inbox `key` for the newest `limit` messages after
    /// `after` (and after the floor) that match `query`.
    pub fn step<'s>(
        &mut self,
        query: &Query,
        store: &'s Shard,
        views: &mut ViewCache,
        key: &InboxKey<'_>,
        after: Option<MessageId>,
        limit: usize,
    ) -> Step<'s> {
        let mut matcher = Matcher::new(query);
        let mut bytes_spent = 0;
        // Views parsed since the last step: evaluate them now, while they are at hand
        // (the cache may not keep them), then cache them for later searches.
        for (id, view) in std::mem::take(&mut self.parsed) {
            let Some(message) = store.get(key, id) else {
                view.wipe();
                continue;
            };
            bytes_spent += ensure_summary(views, &message);
            let (summary, _) = views.search_parts(id);
            let (verdict, folded_bytes) =
                matcher.evaluate(&message, summary, Some(BodyRef::Search(&view)));
            bytes_spent += folded_bytes;
            debug_assert_ne!(
                verdict,
                Verdict::NeedsBody,
                "a search view settles every term"
            );
            self.decided.insert(id, verdict == Verdict::Yes);
            views.insert_search_view(&message, view);
        }

        let listing = store.list(key, after.max(self.floor), usize::MAX);
        let mut matches = Vec::new();
        let mut batch = ParseBatch::default();
        let mut batch_bytes = 0;
        // Verdicts of this step, kept only if the search does not finish in it.
        let mut evaluated: Vec<(MessageId, bool)> = Vec::new();
        for message in listing.messages {
            if matches.len() == limit {
                break;
            }
            let verdict = match self.decided.get(&message.id).copied() {
                Some(true) => Verdict::Yes,
                Some(false) => Verdict::No,
                None => {
                    let (mut summary, mut body) = views.search_parts(message.id);
                    if summary.is_none() && matcher.needs_summary() {
                        bytes_spent += ensure_summary(views, &message);
                        (summary, body) = views.search_parts(message.id);
                    }
                    let (verdict, folded_bytes) = matcher.evaluate(&message, summary, body);
                    bytes_spent += folded_bytes;
                    if verdict != Verdict::NeedsBody {
                        evaluated.push((message.id, verdict == Verdict::Yes));
                    }
                    verdict
                }
            };
            match verdict {
                Verdict::Yes => matches.push(message),
                Verdict::No => {}
                Verdict::NeedsBody => {
                    batch.ids.push(message.id);
                    batch_bytes += message.raw.len();
                    if batch.ids.len() == BATCH_MESSAGES_MAX || batch_bytes >= BATCH_BYTES_MAX {
                        break;
                    }
                }
            }
            if bytes_spent >= STEP_BYTES_MAX {
                self.decided.extend(evaluated);
                return Step::Yield;
            }
        }
        if batch.ids.is_empty() {
            return Step::Done(matches);
        }
        self.decided.extend(evaluated);
        Step::Parse(batch)
    }
}

/// Views parsed for a search that ends before it evaluated them (its client went away)
/// are message content: wiped, as the cache wipes what it drops.
impl Drop for SearchState {
    fn drop(&mut self) {
        for (_, view) in self.parsed.drain(..) {
            view.wipe();
        }
    }
}

impl ParseBatch {
    /// The messages to parse.
    pub fn ids(&self) -> &[MessageId] {
        &self.ids
    }

    /// Copies the batch's messages that inbox `key` still holds, for `ParseJob::run`.
    pub fn job(&self, store: &Shard, key: &InboxKey<'_>) -> ParseJob {
        ParseJob {
            messages: self
                .ids
                .iter()
                .filter_map(|&id| Some((id, store.get(key, id)?.raw.to_vec())))
                .collect(),
        }
    }
}

impl ParseJob {
    /// Parses every message's search view and wipes the copies. Runs off the executor.
    pub fn run(self) -> Parsed {
        let views = self
            .messages
            .into_iter()
            .map(|(id, mut raw)| {
                let view = SearchView::parse(&raw);
                crate::alloc::wipe_vec(&mut raw);
                (id, view)
            })
            .collect();
        Parsed { views }
    }
}

/// Parses and caches the summary of `message` if the cache lacks it; returns the bytes
/// parsed (0 when it was cached).
fn ensure_summary(views: &mut ViewCache, message: &MessageRef<'_>) -> usize {
    if views.summary(message.id).is_some() {
        return 0;
    }
    views.ensure_summary(message);
    message.raw.len().min(crate::mail::SUMMARY_PARSE_BYTES_MAX)
}

#[cfg(test)]
mod tests;
