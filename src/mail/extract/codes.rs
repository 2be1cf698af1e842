//! Which tokens are one-time codes, and how likely: digit groups joined into one code,
//! decoys thrown out, the rest scored and offered to the `CodeTable`.
//!
//! A candidate is judged once, when `FORWARD_TOKENS` tokens followed it (or its input
//! ended), from the ring alone: `BACK_TOKENS` before it and what followed. Every look-up is
//! in that window, so judging costs a constant, and `CodeTable` holds at most
//! `CODE_CANDIDATES_MAX` values however many candidates an input has.

use crate::mail::extract::code_table::CODE_BYTES_MAX;
use crate::mail::extract::scan::{BACK_TOKENS, FORWARD_TOKENS, Scanner, Source};
use crate::mail::extract::token::{
    Cand, SEP_CELL, SEP_COMMA, SEP_COPYRIGHT, SEP_CURRENCY, SEP_END, SEP_HASH, SEP_HYPHEN,
    SEP_LINE, SEP_PERCENT, SEP_SPACE, SEP_START, SHAPE_CJK, SHAPE_LETTER, SHAPE_LOWER, SHAPE_UPPER,
    STYLE_BIG, STYLE_EMPHASIS, STYLE_SPACED, Sep,
};
use crate::mail::extract::words::{
    ADDRESS, CODE_ANY, CODE_STRONG, CURRENCY, DATE, DENY_NEIGHBOR, ORDER, PHONE, PRICE, UNIT,
};
use crate::mail::extract::{Collector, lexicon::CJK_UNIT_CHARS};

/// Most digits a code has; a run of digit groups with more is a phone or card number.
const CODE_DIGITS_MAX: u32 = 8;

/// Points for the shape alone: six digits is the usual one-time code.
const SCORE_DIGITS_BY_LEN: [i32; 9] = [0, 0, 0, 0, 14, 14, 26, 14, 16];
const SCORE_ALNUM: i32 = 12;
const SCORE_ALNUM_SIX: i32 = 4;
const SCORE_ALNUM_UPPERCASE: i32 = 6;
const SCORE_ALNUM_LOWERCASE: i32 = -6;
/// Points for a keyword before the code, by distance in positions (a token is one, a line
/// break two more): strong keywords ("code"), then weak ones ("verification").
const SCORE_KEYWORD_BEFORE: [(u32, i32, i32); 5] = [
    (2, 40, 22),
    (4, 36, 16),
    (8, 30, 10),
    (14, 22, 6),
    (u32::MAX, 14, 3),
];
/// ... and after it ("482913 is your code").
const SCORE_KEYWORD_AFTER: [(u32, i32, i32); 2] = [(3, 32, 14), (8, 20, 6)];
/// When no keyword is near but the subject has one.
const SCORE_SUBJECT_KEYWORD_STRONG: i32 = 12;
const SCORE_SUBJECT_KEYWORD_WEAK: i32 = 6;
const SCORE_EMPHASIS: i32 = 10;
const SCORE_BIG_OR_SPACED: i32 = 10;
const SCORE_STYLE_MAX: i32 = 15;
const SCORE_ALONE: i32 = 12;
const SCORE_YEAR_PENALTY: i32 = 20;
/// A keyword this close overrides an address or a phone word farther away.
const KEYWORD_NEAR_BEFORE: u32 = 4;
const KEYWORD_NEAR_AFTER: u32 = 3;
/// Order, phone and price words count up to this far before a number.
const NEGATIVE_DISTANCE_MAX: u32 = 4;
/// A month or weekday this close before ("March 3, 2026") or after ("2026 March") makes
/// a year part of a date.
const DATE_DISTANCE_MAX: u32 = 3;
const DATE_AFTER_DISTANCE_MAX: u32 = 2;
/// Street words and company forms this far back make a number part of an address...
const ADDRESS_DISTANCE_MAX: u32 = 12;
/// ... and this far ahead ("1600 Market Street").
const ADDRESS_AFTER_DISTANCE_MAX: u32 = 3;
/// Letters after digits that make a unit or an ordinal, not a code ("24h", "500mb").
const UNIT_SUFFIXES: [&str; 25] = [
    "st", "nd", "rd", "th", "am", "pm", "px", "pt", "em", "kb", "mb", "gb", "tb", "km", "kg", "ms",
    "hz", "mhz", "ghz", "fps", "min", "mins", "hr", "hrs", "h",
];

/// The digit groups read so far that may form one code ("482 913", "4 8 2 9 1 3").
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct GroupRun {
    active: bool,
    start: usize,
    end: usize,
    n_digits: u32,
    n_groups: u32,
    all_single: bool,
    min_len: u32,
    /// More than `CODE_DIGITS_MAX` digits: every group of it is rejected.
    overflow: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Digits,
    Alnum,
}

impl Scanner {
    /// Extends or closes the run of digit groups with token `idx`, just committed.
    #[inline]
    pub(crate) fn run_commit(&mut self, idx: usize) {
        if self.tok(idx).is_digits() || self.run.active {
            self.run_commit_digits(idx);
        }
    }

    fn run_commit_digits(&mut self, idx: usize) {
        let token = self.tok(idx);
        let is_digits = token.is_digits();
        let (n_chars, sep) = (token.n_chars, token.sep_before);
        if is_digits
            && self.run.active
            && self.run.end + 1 == idx
            && joinable(&sep, n_chars, &self.run)
        {
            let run = &mut self.run;
            run.end = idx;
            run.n_digits = run.n_digits.saturating_add(n_chars);
            run.n_groups += 1;
            run.all_single &= n_chars == 1;
            run.min_len = run.min_len.min(n_chars);
            if run.overflow {
                self.tok_mut(idx).cand = Cand::Rejected;
            } else if run.n_digits > CODE_DIGITS_MAX {
                // At most `CODE_DIGITS_MAX` groups came before, so all are in the ring.
                run.overflow = true;
                for member_idx in run.start..=idx {
                    self.tok_mut(member_idx).cand = Cand::Rejected;
                }
            }
            return;
        }
        self.close_run();
        if is_digits {
            self.run = GroupRun {
                active: true,
                start: idx,
                end: idx,
                n_digits: n_chars,
                n_groups: 1,
                all_single: n_chars == 1,
                min_len: n_chars,
                overflow: n_chars > CODE_DIGITS_MAX,
            };
        }
    }

    /// Decides a finished run: one code, a date, or groups judged one by one.
    pub(crate) fn close_run(&mut self) {
        if !self.run.active {
            return;
        }
        self.run.active = false;
        let run = self.run;
        if run.overflow || run.n_groups < 2 {
            return;
        }
        if self.run_is_date(&run) {
            for member_idx in run.start..=run.end {
                self.tok_mut(member_idx).cand = Cand::Rejected;
            }
            return;
        }
        let sized = (4..=CODE_DIGITS_MAX).contains(&run.n_digits);
        let grouped = (run.all_single && run.n_groups >= 4) || run.min_len >= 2;
        // Groups that do not make one code ("1 555 0199") are parts of one bigger number.
        for member_idx in run.start..=run.end {
            self.tok_mut(member_idx).cand = Cand::Rejected;
        }
        if sized && grouped {
            // At most `CODE_DIGITS_MAX` groups: the distance fits.
            let back = u8::try_from(run.end - run.start).unwrap_or(u8::MAX);
            self.tok_mut(run.end).cand = Cand::Joined { back };
        }
    }

    /// "2026-05-14", "14 05 2026", "2026-05": a date written with separators.
    fn run_is_date(&self, run: &GroupRun) -> bool {
        if run.n_groups != 2 && run.n_groups != 3 {
            return false;
        }
        let mut groups = [(0u32, 0u32); 3];
        for (group_idx, member_idx) in (run.start..=run.end).enumerate() {
            let token = self.tok(member_idx);
            let value = token.text().parse().unwrap_or(u32::MAX);
            groups[group_idx] = (token.n_chars, value);
        }
        let year = |(len, value): (u32, u32)| len == 4 && (1900..=2099).contains(&value);
        let month = |(len, value): (u32, u32)| len <= 2 && (1..=12).contains(&value);
        let day = |(len, value): (u32, u32)| len <= 2 && (1..=31).contains(&value);
        let [first, second, third] = groups;
        if run.n_groups == 2 {
            return (year(first) && month(second)) || (month(first) && year(second));
        }
        (year(first) && month(second) && day(third))
            || (year(first) && day(second) && month(third))
            || (day(first) && day(second) && (month(first) || month(second)) && year(third))
    }

    /// Judges the candidate ending at token `idx`, if it is one, and offers it.
    pub(crate) fn finalize(&mut self, idx: usize, out: &mut Collector) {
        let (start, kind) = match self.tok(idx).cand {
            Cand::Digits => (idx, Kind::Digits),
            Cand::Alnum => (idx, Kind::Alnum),
            Cand::Joined { back } => (idx - usize::from(back), Kind::Digits),
            Cand::No | Cand::Rejected => return,
        };
        self.tok_mut(idx).cand = Cand::No;
        let Some(score) = self.score(start, idx, kind, out.subject_class) else {
            return;
        };
        let mut value = [0u8; CODE_BYTES_MAX];
        let mut n_bytes = 0;
        for member_idx in start..=idx {
            let token = self.tok(member_idx);
            let part = &token.bytes[..token.n_bytes];
            let kept = part.len().min(CODE_BYTES_MAX - n_bytes);
            value[n_bytes..n_bytes + kept].copy_from_slice(&part[..kept]);
            n_bytes += kept;
        }
        out.codes
            .offer(&value[..n_bytes], score, self.source == Source::Subject);
    }

    /// The score of tokens `first..=last` as one code, or None if they are something else.
    fn score(&mut self, first: usize, last: usize, kind: Kind, subject_class: u32) -> Option<u8> {
        let before = self.tok(first).sep_before;
        let after = self.sep_after(last);
        let first_pos = self.tok(first).pos;
        let last_pos = self.tok(last).pos;
        let (mut n_chars, mut style) = (0, 0);
        for member_idx in first..=last {
            n_chars += self.tok(member_idx).n_chars;
            style |= self.tok(member_idx).style;
        }
        let prev = first.checked_sub(1);
        let next = (last + 1 < self.n_tokens).then_some(last + 1);
        let prev_has_digit =
            prev.is_some_and(|idx| self.tok(idx).text().bytes().any(|b| b.is_ascii_digit()));
        let next_tight = next.is_some() && after.n_punct == 1 && after.flags & !ALL_PUNCT == 0;

        // What touches it: URLs, e-mail addresses, decimals, times, prices, phone numbers.
        if let Some(ch) = before.tight_last() {
            match ch {
                '@' | '/' | '\\' | '=' | '&' | '?' | '_' | '~' | '+' | '.' => return None,
                ',' | ':' | ')' if prev_has_digit => return None,
                _ => {}
            }
        }
        if before.flags & (SEP_CURRENCY | SEP_COPYRIGHT) != 0 {
            return None;
        }
        if before.flags & SEP_HASH != 0
            && prev.is_none_or(|idx| self.class_of(idx) & CODE_STRONG == 0)
        {
            return None;
        }
        if let Some(ch) = after.tight_first() {
            match ch {
                '@' | '/' | '\\' | '_' | '=' | '&' | '%' | '％' => return None,
                '.' | ',' | ':' if next_tight => return None,
                _ => {}
            }
        }
        let same_line_after = after.flags & (SEP_LINE | SEP_CELL | SEP_END) == 0;
        if same_line_after && after.flags & (SEP_CURRENCY | SEP_PERCENT) != 0 {
            return None;
        }
        if let Some(next_idx) = next.filter(|_| after.is_blank_inline()) {
            let next_token = self.tok(next_idx);
            let cjk_first = if next_token.shape & SHAPE_CJK != 0 {
                next_token.cjk_first
            } else {
                '\0'
            };
            if self.class_of(next_idx) & (UNIT | CURRENCY) != 0
                || CJK_UNIT_CHARS.contains(&cjk_first)
            {
                return None;
            }
        }

        // Words around it: what follows first, then back from the candidate, so that the
        // usual decoys (a date, an order or phone word, an address) are thrown out as soon
        // as they are seen, before the whole window is classified.
        let value = self.tok(first).text().parse::<u32>().ok();
        let year_like = kind == Kind::Digits
            && first == last
            && n_chars == 4
            && value.is_some_and(|value| (1900..=2099).contains(&value));
        let mut address_distance = None;
        let mut keyword_after = 0;
        let mut keyword_after_distance = None;
        for idx in last + 1..(last + 1 + FORWARD_TOKENS).min(self.n_tokens) {
            let distance = self.tok(idx).pos - last_pos;
            let class = self.class_of(idx);
            if class & CODE_ANY != 0 && !self.keyword_denied(idx, class, first) {
                keyword_after = keyword_after.max(points(&SCORE_KEYWORD_AFTER, distance, class));
                keyword_after_distance.get_or_insert(distance);
            }
            if year_like && class & DATE != 0 && distance <= DATE_AFTER_DISTANCE_MAX {
                return None;
            }
            if class & ADDRESS != 0 && distance <= ADDRESS_AFTER_DISTANCE_MAX {
                address_distance.get_or_insert(distance);
            }
        }
        let keyword_after_near = keyword_after_distance.is_some_and(|d| d <= KEYWORD_NEAR_AFTER);
        let mut keyword_before = 0;
        let mut keyword_before_distance = None;
        for idx in (first.saturating_sub(BACK_TOKENS)..first).rev() {
            let distance = first_pos - self.tok(idx).pos;
            let class = self.class_of(idx);
            if class & CODE_ANY != 0 && !self.keyword_denied(idx, class, first) {
                keyword_before = keyword_before.max(points(&SCORE_KEYWORD_BEFORE, distance, class));
                keyword_before_distance.get_or_insert(distance);
            }
            // A keyword closer than an order, phone or price word would have been seen.
            if class & (ORDER | PHONE | PRICE) != 0
                && distance <= NEGATIVE_DISTANCE_MAX
                && keyword_before_distance.is_none()
                && keyword_after_distance.is_none_or(|d| d >= distance)
            {
                return None;
            }
            if year_like && class & DATE != 0 && distance <= DATE_DISTANCE_MAX {
                return None;
            }
            if class & ADDRESS != 0 && distance <= ADDRESS_DISTANCE_MAX {
                address_distance.get_or_insert(distance);
            }
            // Past `KEYWORD_NEAR_BEFORE`, whether a keyword is near is known.
            let keyword_near = keyword_after_near
                || keyword_before_distance.is_some_and(|d| d <= KEYWORD_NEAR_BEFORE);
            if address_distance.is_some() && distance > KEYWORD_NEAR_BEFORE && !keyword_near {
                return None;
            }
        }
        let keyword_near =
            keyword_after_near || keyword_before_distance.is_some_and(|d| d <= KEYWORD_NEAR_BEFORE);
        if (address_distance.is_some() || self.is_postcode(first, last, n_chars)) && !keyword_near {
            return None;
        }

        // The score.
        let keyword = keyword_before.max(keyword_after);
        let subject_keyword = if self.source == Source::Subject {
            0
        } else if subject_class & CODE_STRONG != 0 {
            SCORE_SUBJECT_KEYWORD_STRONG
        } else if subject_class & CODE_ANY != 0 {
            SCORE_SUBJECT_KEYWORD_WEAK
        } else {
            0
        };
        let alone = before.flags & (SEP_START | SEP_LINE | SEP_CELL) != 0
            && after.flags & (SEP_END | SEP_LINE | SEP_CELL) != 0;
        let emphasized = style & STYLE_EMPHASIS != 0;
        let mut score = match kind {
            Kind::Digits => SCORE_DIGITS_BY_LEN[(n_chars as usize).min(8)],
            Kind::Alnum => {
                let token = self.tok(first);
                if is_unit(token.text()) {
                    return None;
                }
                if keyword == 0
                    && !(subject_keyword == SCORE_SUBJECT_KEYWORD_STRONG && (alone || emphasized))
                {
                    return None;
                }
                let letters = token.shape & (SHAPE_LETTER | SHAPE_UPPER | SHAPE_LOWER);
                SCORE_ALNUM
                    + if n_chars == 6 { SCORE_ALNUM_SIX } else { 0 }
                    + match letters {
                        _ if letters & SHAPE_LOWER == 0 => SCORE_ALNUM_UPPERCASE,
                        _ if letters & SHAPE_UPPER == 0 => SCORE_ALNUM_LOWERCASE,
                        _ => 0,
                    }
            }
        };
        score += keyword;
        if keyword == 0 {
            score += subject_keyword;
        }
        let style_points = if emphasized { SCORE_EMPHASIS } else { 0 }
            + if style & (STYLE_BIG | STYLE_SPACED) != 0 {
                SCORE_BIG_OR_SPACED
            } else {
                0
            };
        score += style_points.min(SCORE_STYLE_MAX);
        if alone {
            score += SCORE_ALONE;
        }
        if year_like && !keyword_near {
            score -= SCORE_YEAR_PENALTY;
        }
        if keyword == 0 && subject_keyword == 0 {
            score /= 2;
        }
        Some(score.clamp(0, 100) as u8)
    }

    /// Whether the keyword at `idx` names something else: "promo code", "code postal", or a
    /// weak keyword owned by an order ("order confirmation").
    fn keyword_denied(&mut self, idx: usize, class: u32, candidate: usize) -> bool {
        let left = match idx.checked_sub(1) {
            Some(left_idx) => self.class_of(left_idx),
            None => 0,
        };
        let right = if idx + 1 < self.n_tokens && idx + 1 != candidate {
            self.class_of(idx + 1)
        } else {
            0
        };
        (left | right) & DENY_NEIGHBOR != 0
            || (class & CODE_STRONG == 0 && left & (ORDER | PHONE | PRICE) != 0)
    }

    /// The shape of a postcode: five digits after a two-letter state after a comma
    /// ("Springfield, IL 62704"), or four digits before two capital letters ("1012 LG
    /// Amsterdam").
    fn is_postcode(&self, first: usize, last: usize, n_chars: u32) -> bool {
        let is_state = |idx: usize| {
            let token = self.tok(idx);
            token.n_chars == 2 && token.shape == SHAPE_LETTER | SHAPE_UPPER
        };
        let after_state = first.checked_sub(1).is_some_and(|state_idx| {
            is_state(state_idx) && self.tok(state_idx).sep_before.flags & SEP_COMMA != 0
        });
        let before_letters = last + 1 < self.n_tokens
            && is_state(last + 1)
            && self.sep_after(last).is_blank_inline();
        (n_chars == 5 && after_state) || (n_chars == 4 && before_letters)
    }
}

/// Separator flags of punctuation (everything but spaces, breaks and the stream's ends).
const ALL_PUNCT: u32 = !(SEP_SPACE | SEP_LINE | SEP_CELL | SEP_START | SEP_END);

/// Points from `table` for a keyword of `class` at `distance`.
fn points(table: &[(u32, i32, i32)], distance: u32, class: u32) -> i32 {
    table
        .iter()
        .find(|&&(distance_max, _, _)| distance <= distance_max)
        .map_or(0, |&(_, strong, weak)| {
            if class & CODE_STRONG != 0 {
                strong
            } else {
                weak
            }
        })
}

/// Digits then a unit or an ordinal ("24h", "500MB", "3rd"), or a time ("10h32").
fn is_unit(text: &str) -> bool {
    let letters_start = text
        .find(|ch: char| !ch.is_ascii_digit())
        .unwrap_or(text.len());
    let rest = &text[letters_start..];
    let letters_end = rest
        .find(|ch: char| ch.is_ascii_digit())
        .unwrap_or(rest.len());
    let (letters, minutes) = rest.split_at(letters_end);
    let is_time = letters.eq_ignore_ascii_case("h")
        && minutes.len() == 2
        && minutes.bytes().all(|byte| byte.is_ascii_digit());
    letters_start > 0
        && (is_time
            || (minutes.is_empty()
                && UNIT_SUFFIXES
                    .iter()
                    .any(|unit| unit.eq_ignore_ascii_case(letters))))
}

/// Whether `sep` may stand inside one code: spaces, a table cell boundary or one hyphen;
/// a line break only between single digits.
fn joinable(sep: &Sep, n_chars: u32, run: &GroupRun) -> bool {
    if sep.flags & !(SEP_SPACE | SEP_LINE | SEP_CELL | SEP_HYPHEN) != 0 || sep.n_punct > 1 {
        return false;
    }
    sep.flags & SEP_LINE == 0 || (n_chars == 1 && run.all_single)
}
