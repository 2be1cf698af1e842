//! The candidate codes of a message by value: each value's best score from the subject and
//! from the bodies, at most `CODE_CANDIDATES_MAX` values (the weakest gives way to a
//! stronger one), and at the end the reported codes, best first.

use std::cmp::Reverse;

use crate::mail::extract::{CODES_MAX, Code};

/// Distinct values kept while scanning; the weakest gives way to a stronger one.
pub(crate) const CODE_CANDIDATES_MAX: usize = 32;
/// Codes scoring less are not reported.
pub(crate) const SCORE_MIN: u8 = 25;
/// For a value found both in the subject and in a body.
const SCORE_IN_SUBJECT_TOO: i32 = 10;
/// Longest code, in bytes (alphanumeric codes are up to 10 ASCII characters).
pub(crate) const CODE_BYTES_MAX: usize = 10;

/// The best score seen per value.
#[derive(Debug, Default)]
pub(crate) struct CodeTable {
    entries: Vec<CodeEntry>,
    n_offers: u32,
}

#[derive(Debug)]
struct CodeEntry {
    value: [u8; CODE_BYTES_MAX],
    n_bytes: usize,
    body_score: u8,
    subject_score: u8,
    /// When the value was first offered, for ties.
    order: u32,
}

impl CodeEntry {
    fn final_score(&self) -> u8 {
        let best = i32::from(self.body_score.max(self.subject_score));
        let both = self.body_score > 0 && self.subject_score > 0;
        (best + if both { SCORE_IN_SUBJECT_TOO } else { 0 }).clamp(0, 100) as u8
    }
}

impl CodeTable {
    /// Records `value` with `score`; O(`CODE_CANDIDATES_MAX`).
    pub(crate) fn offer(&mut self, value: &[u8], score: u8, in_subject: bool) {
        debug_assert!(value.len() <= CODE_BYTES_MAX);
        let order = self.n_offers;
        self.n_offers = self.n_offers.saturating_add(1);
        let slot = |entry: &mut CodeEntry| {
            let kept = if in_subject {
                &mut entry.subject_score
            } else {
                &mut entry.body_score
            };
            *kept = (*kept).max(score);
        };
        if let Some(entry) = self
            .entries
            .iter_mut()
            .find(|entry| entry.value[..entry.n_bytes] == *value)
        {
            slot(entry);
            return;
        }
        let mut entry = CodeEntry {
            value: [0; CODE_BYTES_MAX],
            n_bytes: value.len(),
            body_score: 0,
            subject_score: 0,
            order,
        };
        entry.value[..value.len()].copy_from_slice(value);
        slot(&mut entry);
        if self.entries.len() < CODE_CANDIDATES_MAX {
            self.entries.push(entry);
            return;
        }
        let weakest = self
            .entries
            .iter_mut()
            .min_by_key(|entry| (entry.final_score(), Reverse(entry.order)))
            .expect("the table is full");
        if entry.final_score() > weakest.final_score() {
            *weakest = entry;
        }
    }

    /// The reported codes: most likely first, then in order of appearance.
    pub(crate) fn finish(mut self) -> Vec<Code> {
        self.entries
            .sort_by_key(|entry| (Reverse(entry.final_score()), entry.order));
        self.entries
            .iter()
            .filter(|entry| entry.final_score() >= SCORE_MIN)
            .take(CODES_MAX)
            .map(|entry| Code {
                value: String::from_utf8_lossy(&entry.value[..entry.n_bytes]).into_owned(),
                score: entry.final_score(),
            })
            .collect()
    }
}
