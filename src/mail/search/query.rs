//! The search query language of `GET /api/v1/inboxes/{address}?q=...` (`docs/api.md`,
//! "Search"): text in, a `Query` or a precise `QueryError` out. Pure: no IO, no store.
//!
//! A query is terms separated by whitespace, all of which must match (AND):
//!
//! ```text
//! query  = [term *(ws term)]            at most TERMS_MAX terms, QUERY_BYTES_MAX bytes
//! term   = ["-"] (key ":" value / value)
//! key    = 1*ALPHA                      from to subject has is before after tag
//! value  = phrase / word
//! phrase = DQUOTE *(char / "\" DQUOTE / "\\") DQUOTE
//! word   = 1*(any character but whitespace)
//! ```
//!
//! Free text and the values of `from:`, `to:`, `subject:` and `tag:` are *folded*
//! (`fold`: lowercase, whitespace runs as one space) and matched as substrings of the
//! equally folded field, so matching is case-insensitive and a phrase matches across line
//! breaks. A word that starts with letters and a colon is always a key, so a typo such as
//! `form:` is an error rather than a silent text search; quote it (`"form:x"`) to search
//! for the text.

use std::fmt;

use crate::clock::{civil_from_days, days_from_civil};

/// Longest query, in bytes after percent-decoding: a query is typed by a person or a test,
/// and every term costs a pass over each message it is evaluated on.
pub const QUERY_BYTES_MAX: usize = 1024;
/// Most terms in a query, for the same reason.
pub const TERMS_MAX: usize = 16;

/// A parsed query: every term must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    pub(super) terms: Vec<Term>,
}

/// One term of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// `-term`: the term must not match.
    pub negated: bool,
    pub key: Key,
}

/// What a term tests. Text values are folded (`fold`) and never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// `from:`: the envelope sender, or the From header's display name or address.
    From(String),
    /// `to:`: the envelope recipients of this inbox, or the To and Cc headers' names and
    /// addresses.
    To(String),
    /// `subject:`.
    Subject(String),
    /// Free text: the subject or the text body.
    Text(String),
    /// `has:attachment`: the message view lists at least one attachment.
    HasAttachment,
    /// `is:read` (or `is:seen`).
    Read,
    /// `is:unread` (or `is:unseen`).
    Unread,
    /// `before:T`: received before T (Unix milliseconds).
    Before(i64),
    /// `after:T`: received at or after T (Unix milliseconds).
    After(i64),
    /// `tag:`: the plus-addressing tag. Reserved: parsed, but matches no message until
    /// the store records tags.
    Tag(String),
}

/// Why a query was refused; the message goes into the 400's body as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("q is {0} bytes long; at most {QUERY_BYTES_MAX} are allowed")]
    TooLong(usize),
    #[error("q has more than {TERMS_MAX} terms")]
    TooManyTerms,
    #[error("q: unterminated quote starting at offset {0}")]
    UnterminatedQuote(usize),
    #[error("q: a closing quote must be followed by a space or the end (offset {0})")]
    AfterQuote(usize),
    #[error("q: an empty phrase at offset {0}")]
    EmptyPhrase(usize),
    #[error("q: \"-\" must be followed by a term (offset {0})")]
    LoneMinus(usize),
    #[error(
        "q: unknown search key {0:?} (known: from, to, subject, has, is, before, after, tag; \
         to search for text with a colon, put it in double quotes)"
    )]
    UnknownKey(String),
    #[error("q: {0}: needs a value right after the colon")]
    MissingValue(&'static str),
    #[error("q: has: takes \"attachment\", not {0:?}")]
    BadHas(String),
    #[error("q: is: takes \"read\" or \"unread\", not {0:?}")]
    BadIs(String),
    #[error(
        "q: {0}: takes an RFC 3339 date (2026-11-27, meaning 00:00 UTC) or date-time \
         (2026-11-27T22:15:44Z, 2026-11-27T23:15:44+01:00), not {1:?}"
    )]
    BadTime(&'static str, String),
}

impl Query {
    /// Parses a query (already percent-decoded).
    ///
    /// # Errors
    /// The first thing wrong with it, with its offset where that helps.
    pub fn parse(text: &str) -> Result<Query, QueryError> {
        if text.len() > QUERY_BYTES_MAX {
            return Err(QueryError::TooLong(text.len()));
        }
        let mut terms = Vec::new();
        let mut at = 0;
        while let Some(start) = next_non_space(text, at) {
            if terms.len() == TERMS_MAX {
                return Err(QueryError::TooManyTerms);
            }
            let (term, end) = parse_term(text, start)?;
            terms.push(term);
            at = end;
        }
        Ok(Query { terms })
    }

    /// The terms, in the order written.
    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// True when the query has no terms (it matches every message).
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

/// The query as text that parses back to it: keys in lowercase, text values quoted,
/// times in UTC with milliseconds.
impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (term_idx, term) in self.terms.iter().enumerate() {
            if term_idx > 0 {
                f.write_str(" ")?;
            }
            if term.negated {
                f.write_str("-")?;
            }
            match &term.key {
                Key::From(text) => write_keyed(f, "from", text)?,
                Key::To(text) => write_keyed(f, "to", text)?,
                Key::Subject(text) => write_keyed(f, "subject", text)?,
                Key::Tag(text) => write_keyed(f, "tag", text)?,
                Key::Text(text) => write_quoted(f, text)?,
                Key::HasAttachment => f.write_str("has:attachment")?,
                Key::Read => f.write_str("is:read")?,
                Key::Unread => f.write_str("is:unread")?,
                Key::Before(unix_ms) => write!(f, "before:{}", Rfc3339Ms(*unix_ms))?,
                Key::After(unix_ms) => write!(f, "after:{}", Rfc3339Ms(*unix_ms))?,
            }
        }
        Ok(())
    }
}

/// Folds text for matching: lowercase (ASCII by ASCII rules, other letters by Unicode's
/// `to_lowercase`), and every run of whitespace as one space. Appends to `out`, which
/// stays UTF-8.
pub fn fold_into(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len());
    let mut after_space = out.last() == Some(&b' ');
    let mut byte_idx = 0;
    while byte_idx < bytes.len() {
        // Mail text is mostly ASCII words and single spaces: eight bytes at a time.
        if let Some(chunk) = bytes.get(byte_idx..byte_idx + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            if let Some(folded) = fold_word(u64::from_le_bytes(word), after_space) {
                out.extend_from_slice(&folded.to_le_bytes());
                after_space = chunk[7] == b' ';
                byte_idx += 8;
                continue;
            }
        }
        let byte = bytes[byte_idx];
        if byte.is_ascii() {
            byte_idx += 1;
            if matches!(byte, b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c') {
                if !after_space {
                    out.push(b' ');
                    after_space = true;
                }
            } else {
                out.push(byte.to_ascii_lowercase());
                after_space = false;
            }
            continue;
        }
        // A multi-byte character: `byte_idx` is on a boundary (ASCII bytes are whole
        // characters, and so are the chunks of eight ASCII bytes), so the rest of the
        // string starts with a character.
        let Some(ch) = text[byte_idx..].chars().next() else {
            break;
        };
        byte_idx += ch.len_utf8();
        if ch.is_whitespace() {
            if !after_space {
                out.push(b' ');
                after_space = true;
            }
        } else {
            let mut buf = [0u8; 4];
            for lower in ch.to_lowercase() {
                out.extend_from_slice(lower.encode_utf8(&mut buf).as_bytes());
            }
            after_space = false;
        }
    }
}

/// `0x01` in every byte.
const BYTES_01: u64 = 0x0101_0101_0101_0101;
/// The high bit of every byte.
const BYTES_80: u64 = 0x8080_8080_8080_8080;

/// Eight bytes (little-endian) folded at once, when folding them is plain lowercasing:
/// every byte is ASCII and at least a space (no tab, line break or other control), no two
/// spaces are adjacent, and the first is no space when the text before ended with one.
/// Otherwise `None`, and the caller folds byte by byte.
fn fold_word(word: u64, after_space: bool) -> Option<u64> {
    // A byte of 0x80 or more, or below 0x20 (the classic "has less than" test: exact as a
    // yes or no, which is all that is asked of it here).
    let below_space = word.wrapping_sub(BYTES_01 * 0x20) & !word & BYTES_80;
    if (word & BYTES_80) | below_space != 0 {
        return None;
    }
    // Every byte is below 0x80 now, so adding 0x7f to each never carries into the next:
    // the high bit is set exactly in the bytes that are not a space.
    let not_space = ((word ^ (BYTES_01 * 0x20)) + BYTES_01 * 0x7f) & BYTES_80;
    let spaces = !not_space & BYTES_80;
    if spaces & (spaces << 8) != 0 || (after_space && spaces & 0x80 != 0) {
        return None;
    }
    // High bit set in bytes >= 'A', and in bytes > 'Z': the difference marks 'A'..='Z',
    // whose 0x20 bit is then set.
    let at_least_a = (word + BYTES_01 * (0x80 - 0x41)) & BYTES_80;
    let above_z = (word + BYTES_01 * (0x80 - 0x5b)) & BYTES_80;
    Some(word | ((at_least_a & !above_z) >> 2))
}

/// `fold_into` a new string, without a leading or trailing space.
pub fn fold(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    fold_into(text, &mut out);
    // Folding keeps UTF-8 (whole characters in, whole characters out).
    let folded = String::from_utf8(out).unwrap_or_default();
    folded.trim_matches(' ').to_string()
}

/// The byte offset of the next non-whitespace character at or after `at`.
fn next_non_space(text: &str, at: usize) -> Option<usize> {
    text[at..]
        .char_indices()
        .find(|(_, ch)| !ch.is_whitespace())
        .map(|(offset, _)| at + offset)
}

/// The end of the word starting at `at`: the next whitespace, or the end.
fn word_end(text: &str, at: usize) -> usize {
    text[at..]
        .char_indices()
        .find(|(_, ch)| ch.is_whitespace())
        .map_or(text.len(), |(offset, _)| at + offset)
}

/// Parses the term that starts at `start` (not whitespace); returns it and where it ends.
fn parse_term(text: &str, start: usize) -> Result<(Term, usize), QueryError> {
    let negated = text[start..].starts_with('-');
    let at = if negated { start + 1 } else { start };
    if at == text.len() || text[at..].starts_with(char::is_whitespace) {
        return Err(QueryError::LoneMinus(start));
    }
    let key_len = text[at..]
        .bytes()
        .take_while(u8::is_ascii_alphabetic)
        .count();
    let is_keyed = key_len > 0 && text[at + key_len..].starts_with(':');
    if !is_keyed {
        let (value, end) = parse_value(text, at)?;
        return Ok((
            Term {
                negated,
                key: Key::Text(value),
            },
            end,
        ));
    }
    let name = text[at..at + key_len].to_ascii_lowercase();
    let value_at = at + key_len + 1;
    let key_name: &'static str = match name.as_str() {
        "from" => "from",
        "to" => "to",
        "subject" => "subject",
        "has" => "has",
        "is" => "is",
        "before" => "before",
        "after" => "after",
        "tag" => "tag",
        _ => return Err(QueryError::UnknownKey(name)),
    };
    if value_at == text.len() || text[value_at..].starts_with(char::is_whitespace) {
        return Err(QueryError::MissingValue(key_name));
    }
    let (key, end) = match key_name {
        "from" | "to" | "subject" | "tag" => {
            let (value, end) = parse_value(text, value_at)?;
            let key = match key_name {
                "from" => Key::From(value),
                "to" => Key::To(value),
                "subject" => Key::Subject(value),
                _ => Key::Tag(value),
            };
            (key, end)
        }
        _ => {
            let end = word_end(text, value_at);
            let word = &text[value_at..end];
            let key = match key_name {
                "has" => match word.to_ascii_lowercase().as_str() {
                    "attachment" | "attachments" => Key::HasAttachment,
                    _ => return Err(QueryError::BadHas(word.to_string())),
                },
                "is" => match word.to_ascii_lowercase().as_str() {
                    "read" | "seen" => Key::Read,
                    "unread" | "unseen" => Key::Unread,
                    _ => return Err(QueryError::BadIs(word.to_string())),
                },
                _ => {
                    let unix_ms = parse_rfc3339_ms(word)
                        .ok_or_else(|| QueryError::BadTime(key_name, word.to_string()))?;
                    if key_name == "before" {
                        Key::Before(unix_ms)
                    } else {
                        Key::After(unix_ms)
                    }
                }
            };
            (key, end)
        }
    };
    Ok((Term { negated, key }, end))
}

/// A phrase or a word starting at `at`, folded; and where it ends.
fn parse_value(text: &str, at: usize) -> Result<(String, usize), QueryError> {
    if !text[at..].starts_with('"') {
        let end = word_end(text, at);
        // A word has a character that is not whitespace, so it never folds to nothing.
        return Ok((fold(&text[at..end]), end));
    }
    let mut phrase = String::new();
    let mut chars = text[at + 1..].char_indices();
    loop {
        let Some((offset, ch)) = chars.next() else {
            return Err(QueryError::UnterminatedQuote(at));
        };
        match ch {
            '"' => {
                let end = at + 1 + offset + 1;
                if end < text.len() && !text[end..].starts_with(char::is_whitespace) {
                    return Err(QueryError::AfterQuote(end));
                }
                let folded = fold(&phrase);
                if folded.is_empty() {
                    return Err(QueryError::EmptyPhrase(at));
                }
                return Ok((folded, end));
            }
            '\\' => match chars.next() {
                Some((_, escaped @ ('"' | '\\'))) => phrase.push(escaped),
                // Any other backslash is itself: Windows paths, regex-looking text.
                Some((_, other)) => {
                    phrase.push('\\');
                    phrase.push(other);
                }
                None => return Err(QueryError::UnterminatedQuote(at)),
            },
            other => phrase.push(other),
        }
    }
}

/// An RFC 3339 `full-date` (midnight UTC) or `date-time` (`T` or `t`, seconds with an
/// optional fraction, `Z`/`z` or a numeric offset) as Unix milliseconds. A leap second
/// (`:60`) counts as the last millisecond of its minute.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = bytes.get(range)?;
        digits.iter().try_fold(0i64, |value, &byte| {
            byte.is_ascii_digit()
                .then(|| value * 10 + i64::from(byte - b'0'))
        })
    };
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    // In range: checked above.
    let midnight_ms = days_from_civil(year, month as u32, day as u32) * 86_400_000;
    if bytes.len() == 10 {
        return Some(midnight_ms);
    }
    if !matches!(bytes[10], b'T' | b't')
        || bytes.len() < 20
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut at = 19;
    let mut fraction_ms = 0;
    if bytes[at] == b'.' {
        let n_digits = bytes[at + 1..]
            .iter()
            .take_while(|byte| byte.is_ascii_digit())
            .count();
        if n_digits == 0 {
            return None;
        }
        // Milliseconds: the first three digits; the rest are below the store's precision.
        for digit_idx in 0..3 {
            let digit = if digit_idx < n_digits {
                i64::from(bytes[at + 1 + digit_idx] - b'0')
            } else {
                0
            };
            fraction_ms = fraction_ms * 10 + digit;
        }
        at += 1 + n_digits;
    }
    let offset_ms = match bytes.get(at..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let two = |a: u8, b: u8| {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| i64::from(a - b'0') * 10 + i64::from(b - b'0'))
            };
            let (offset_hours, offset_minutes) = (two(*h1, *h2)?, two(*m1, *m2)?);
            if offset_hours > 23 || offset_minutes > 59 {
                return None;
            }
            let offset_ms = (offset_hours * 60 + offset_minutes) * 60_000;
            if *sign == b'+' { offset_ms } else { -offset_ms }
        }
        _ => return None,
    };
    let (second, fraction_ms) = if second == 60 {
        (59, 999)
    } else {
        (second, fraction_ms)
    };
    Some(midnight_ms + ((hour * 60 + minute) * 60 + second) * 1000 + fraction_ms - offset_ms)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn write_keyed(f: &mut fmt::Formatter<'_>, key: &str, text: &str) -> fmt::Result {
    write!(f, "{key}:")?;
    write_quoted(f, text)
}

fn write_quoted(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_str("\"")?;
    for ch in text.chars() {
        if matches!(ch, '"' | '\\') {
            f.write_str("\\")?;
        }
        write!(f, "{ch}")?;
    }
    f.write_str("\"")
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`, for `Display`.
struct Rfc3339Ms(i64);

impl fmt::Display for Rfc3339Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400_000);
        let ms_of_day = self.0.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            ms_of_day / 3_600_000,
            ms_of_day / 60_000 % 60,
            ms_of_day / 1000 % 60,
            ms_of_day % 1000
        )
    }
}
