//! SEARCH: the criteria as an owned tree, evaluated first on the model alone and then,
//! only for the messages that remain undecided, on their bytes.
//!
//! Evaluation is three-valued: a key that needs the message's bytes answers "unknown"
//! without them, and AND, OR and NOT combine unknowns the usual way. So
//! `SEARCH UNSEEN FROM x` asks the socket loop only for the unseen messages, and a search
//! on flags, sizes, dates or sets asks for nothing.
//!
//! Text keys match case-insensitively as substrings of the decoded text: header values
//! with their RFC 2047 words decoded, bodies decoded from their transfer encoding and
//! charset by mail-parser.

use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::datetime::NaiveDate;
use imap_codec::imap_types::search::SearchKey;
use mail_parser::parsers::MessageStream;
use mail_parser::{HeaderValue, Message, MessageParser, PartType};

use crate::imap::mime::{self, Field};
use crate::imap::model::{Selected, SetError, Slot};
use crate::imap::reply;

/// An owned search key. Dates are days since 1970-01-01.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Const(bool),
    And(Vec<Key>),
    Or(Box<Key>, Box<Key>),
    Not(Box<Key>),
    /// Slot indexes named by a sequence or UID set, ascending.
    Slots(Vec<usize>),
    Seen(bool),
    Deleted(bool),
    Larger(u32),
    Smaller(u32),
    Since(i64),
    Before(i64),
    On(i64),
    SentSince(i64),
    SentBefore(i64),
    SentOn(i64),
    /// A header field (lowercase name) containing the lowercase needle.
    Header(Vec<u8>, String),
    Body(String),
    Text(String),
}

/// Converts the parsed criteria, resolving sequence and UID sets against the model.
/// Flags this server does not keep (`\Answered`, `\Flagged`, `\Draft`, keywords) are never
/// set; no message is `\Recent` (RFC 9051 dropped it; we always answer `RECENT 0`).
pub fn key_of(key: &SearchKey<'_>, selected: &Selected) -> Result<Key, SetError> {
    let text = |value: &AString<'_>| String::from_utf8_lossy(value.as_ref()).to_lowercase();
    let header =
        |name: &str, value: &AString<'_>| Key::Header(name.as_bytes().to_vec(), text(value));
    Ok(match key {
        SearchKey::And(keys) => Key::And(
            keys.as_ref()
                .iter()
                .map(|key| key_of(key, selected))
                .collect::<Result<_, _>>()?,
        ),
        SearchKey::Or(left, right) => Key::Or(
            Box::new(key_of(left, selected)?),
            Box::new(key_of(right, selected)?),
        ),
        SearchKey::Not(key) => Key::Not(Box::new(key_of(key, selected)?)),
        SearchKey::SequenceSet(set) => Key::Slots(selected.resolve(set, false, false)?),
        SearchKey::Uid(set) => Key::Slots(selected.resolve(set, true, false)?),
        SearchKey::All | SearchKey::Old => Key::Const(true),
        SearchKey::Answered
        | SearchKey::Draft
        | SearchKey::Flagged
        | SearchKey::Keyword(_)
        | SearchKey::New
        | SearchKey::Recent => Key::Const(false),
        SearchKey::Unanswered
        | SearchKey::Undraft
        | SearchKey::Unflagged
        | SearchKey::Unkeyword(_) => Key::Const(true),
        SearchKey::Seen => Key::Seen(true),
        SearchKey::Unseen => Key::Seen(false),
        SearchKey::Deleted => Key::Deleted(true),
        SearchKey::Undeleted => Key::Deleted(false),
        SearchKey::Larger(size) => Key::Larger(*size),
        SearchKey::Smaller(size) => Key::Smaller(*size),
        SearchKey::Since(date) => Key::Since(days_of(date)),
        SearchKey::Before(date) => Key::Before(days_of(date)),
        SearchKey::On(date) => Key::On(days_of(date)),
        SearchKey::SentSince(date) => Key::SentSince(days_of(date)),
        SearchKey::SentBefore(date) => Key::SentBefore(days_of(date)),
        SearchKey::SentOn(date) => Key::SentOn(days_of(date)),
        SearchKey::From(value) => header("from", value),
        SearchKey::To(value) => header("to", value),
        SearchKey::Cc(value) => header("cc", value),
        SearchKey::Bcc(value) => header("bcc", value),
        SearchKey::Subject(value) => header("subject", value),
        SearchKey::Header(name, value) => {
            Key::Header(name.as_ref().to_ascii_lowercase(), text(value))
        }
        SearchKey::Body(value) => Key::Body(text(value)),
        SearchKey::Text(value) => Key::Text(text(value)),
    })
}

/// Days since the epoch of a search date. imap-types keeps a chrono date, which prints
/// as `YYYY-MM-DD`; reading that back spares a direct chrono dependency.
fn days_of(date: &NaiveDate) -> i64 {
    let text = date.as_ref().to_string();
    let mut numbers = text
        .rsplitn(3, '-')
        .map(|number| number.parse::<i64>().unwrap_or(1));
    let day = numbers.next().unwrap_or(1);
    let month = numbers.next().unwrap_or(1);
    let year = numbers.next().unwrap_or(1970);
    reply::days_from_civil(year, month.clamp(1, 12) as u32, day.clamp(1, 31) as u32)
}

/// A message's bytes and what was decoded from them so far (each at most once).
pub struct Doc<'r> {
    raw: &'r [u8],
    fields: Option<Vec<Field>>,
    /// Lowercase decoded text of the text parts.
    body_text: Option<String>,
}

impl<'r> Doc<'r> {
    /// Nothing is decoded until a key needs it.
    pub fn new(raw: &'r [u8]) -> Doc<'r> {
        Doc {
            raw,
            fields: None,
            body_text: None,
        }
    }

    fn fields(&mut self) -> &[Field] {
        let raw = self.raw;
        self.fields.get_or_insert_with(|| {
            let (header, _) = mime::split_header(raw, 0..raw.len());
            mime::fields(raw, header)
        })
    }

    /// Whether a field named `name` (or any field, for `None`) contains `needle`.
    fn header_contains(&mut self, name: Option<&[u8]>, needle: &str) -> bool {
        let raw = self.raw;
        self.fields().iter().any(|field| {
            if name.is_some_and(|name| !raw[field.name.clone()].eq_ignore_ascii_case(name)) {
                return false;
            }
            needle.is_empty()
                || decoded(&raw[field.value.clone()])
                    .to_lowercase()
                    .contains(needle)
        })
    }

    fn body_contains(&mut self, needle: &str) -> bool {
        let raw = self.raw;
        let body_text = self.body_text.get_or_insert_with(|| {
            let mut text = String::new();
            if let Some(message) = MessageParser::default().parse(raw) {
                push_text(&message, &mut text);
            }
            text
        });
        body_text.contains(needle)
    }

    fn sent_days(&mut self) -> Option<i64> {
        let raw = self.raw;
        let field = self
            .fields()
            .iter()
            .find(|field| raw[field.name.clone()].eq_ignore_ascii_case(b"date"))?
            .clone();
        match MessageStream::new(&raw[field.value]).parse_date() {
            // RFC 3501: the date as written, disregarding time and timezone.
            HeaderValue::DateTime(date) => Some(reply::days_from_civil(
                i64::from(date.year),
                u32::from(date.month).clamp(1, 12),
                u32::from(date.day).clamp(1, 31),
            )),
            _ => None,
        }
    }
}

/// Appends the lowercase text of every text part, attached messages' included
/// (mail-parser bounds how deep those nest).
fn push_text(message: &Message<'_>, text: &mut String) {
    for part in &message.parts {
        match &part.body {
            PartType::Text(part_text) | PartType::Html(part_text) => {
                text.push_str(&part_text.to_lowercase());
                text.push('\n');
            }
            PartType::Message(inner) => push_text(inner, text),
            _ => {}
        }
    }
}

/// A header value with RFC 2047 words decoded (mail-parser's unstructured parser).
fn decoded(value: &[u8]) -> String {
    match MessageStream::new(value).parse_unstructured() {
        HeaderValue::Text(text) => text.into_owned(),
        HeaderValue::TextList(texts) => texts.join(" "),
        _ => String::from_utf8_lossy(value).into_owned(),
    }
}

/// Evaluates `key` for the message in `slot_idx`: `None` when it depends on bytes and
/// `doc` is `None`.
pub fn eval(
    key: &Key,
    slot_idx: usize,
    slot: &Slot,
    mut doc: Option<&mut Doc<'_>>,
) -> Option<bool> {
    let internal_days = (slot.received_at_ms / 1000 / 86_400) as i64;
    match key {
        Key::Const(value) => Some(*value),
        Key::And(keys) => {
            let mut result = Some(true);
            for key in keys {
                match eval(key, slot_idx, slot, doc.as_deref_mut()) {
                    Some(false) => return Some(false),
                    None => result = None,
                    Some(true) => {}
                }
            }
            result
        }
        Key::Or(left, right) => {
            let left = eval(left, slot_idx, slot, doc.as_deref_mut());
            if left == Some(true) {
                return Some(true);
            }
            match (left, eval(right, slot_idx, slot, doc)) {
                (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            }
        }
        Key::Not(key) => eval(key, slot_idx, slot, doc).map(|value| !value),
        Key::Slots(slot_idxs) => Some(slot_idxs.binary_search(&slot_idx).is_ok()),
        Key::Seen(seen) => Some(slot.seen == *seen),
        Key::Deleted(deleted) => Some(slot.deleted == *deleted),
        Key::Larger(size) => Some(slot.size_bytes > *size),
        Key::Smaller(size) => Some(slot.size_bytes < *size),
        Key::Since(days) => Some(internal_days >= *days),
        Key::Before(days) => Some(internal_days < *days),
        Key::On(days) => Some(internal_days == *days),
        Key::SentSince(days) => doc.map(|doc| doc.sent_days().is_some_and(|sent| sent >= *days)),
        Key::SentBefore(days) => doc.map(|doc| doc.sent_days().is_some_and(|sent| sent < *days)),
        Key::SentOn(days) => doc.map(|doc| doc.sent_days() == Some(*days)),
        Key::Header(name, needle) => doc.map(|doc| doc.header_contains(Some(name), needle)),
        Key::Body(needle) => doc.map(|doc| doc.body_contains(needle)),
        Key::Text(needle) => {
            doc.map(|doc| doc.header_contains(None, needle) || doc.body_contains(needle))
        }
    }
}

/// Appends `* SEARCH n n n` with sequence numbers or UIDs of `slot_idxs` (ascending).
pub fn write_results(out: &mut Vec<u8>, slots: &[Slot], slot_idxs: &[usize], uid: bool) {
    out.extend_from_slice(b"* SEARCH");
    for &slot_idx in slot_idxs {
        out.push(b' ');
        let number = if uid {
            slots.get(slot_idx).map_or(0, |slot| u64::from(slot.uid))
        } else {
            slot_idx as u64 + 1
        };
        reply::push_number(out, number);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_keys_match_decoded_text() {
        let raw = b"From: =?utf-8?q?Zo=C3=AB?= <zoe@example.test>\r\nSubject: Hello\r\n\
                    Date: Tue, 2 Jan 2024 23:30:00 -0500\r\n\
                    Content-Transfer-Encoding: base64\r\n\r\nQ2Fmw6kgY29kZSA0MgA=\r\n";
        let slot = Slot {
            id: crate::store::MessageId {
                boot_micros: 1,
                shard_idx: 0,
                seq: 1,
            },
            uid: 1,
            size_bytes: 10,
            received_at_ms: 0,
            expires_at_ms: 0,
            seen: false,
            seen_announced: false,
            seen_sent: None,
            deleted: false,
            gone: false,
        };
        let check = |key: Key, expected: bool| {
            let mut doc = Doc::new(raw);
            assert_eq!(
                eval(&key, 0, &slot, Some(&mut doc)),
                Some(expected),
                "{key:?}"
            );
            assert_eq!(eval(&key, 0, &slot, None), None, "{key:?}");
        };
        check(Key::Header(b"from".to_vec(), "zoë".to_string()), true);
        check(Key::Header(b"from".to_vec(), "ZOE@".to_lowercase()), true);
        check(Key::Header(b"subject".to_vec(), "bye".to_string()), false);
        check(Key::Header(b"x-none".to_vec(), String::new()), false);
        check(Key::Header(b"subject".to_vec(), String::new()), true);
        check(Key::Body("café code".to_string()), true);
        check(Key::Text("hello".to_string()), true);
        check(Key::SentOn(reply::days_from_civil(2024, 1, 2)), true);
        check(Key::SentSince(reply::days_from_civil(2024, 1, 3)), false);
        let either = Key::Or(
            Box::new(Key::Seen(false)),
            Box::new(Key::Body("x".to_string())),
        );
        assert_eq!(eval(&either, 0, &slot, None), Some(true));
        let both = Key::And(vec![Key::Seen(true), Key::Body("x".to_string())]);
        assert_eq!(eval(&both, 0, &slot, None), Some(false));
    }
}
