//! A `Query` evaluated on one message at a time: from what is at hand (the store's entry,
//! the cached summary, the body if a view of it is cached) it says yes, no, or that it
//! needs the body.
//!
//! Terms are tried cheapest first (flags and times, then summary fields, then text, which
//! may need the body) and evaluation stops at the first term that fails, so a query that
//! combines `is:unread` or `subject:` with free text reads few bodies. Each field is folded
//! (`query::fold_into`) at most once per message, into buffers reused from message to
//! message, and searched with a `memchr::memmem::Finder` built once per needle.

use memchr::memmem::Finder;

use crate::mail::Summary;
use crate::mail::search::query::{Key, Query, fold_into};
use crate::mail::search::view::BodyRef;
use crate::store::MessageRef;

/// What a query says about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every term matched.
    Yes,
    /// A term did not match.
    No,
    /// Every term that could be decided matched, and one needs the text body or the
    /// attachment list, which no cached view holds.
    NeedsBody,
}

/// A query ready to evaluate, with the buffers its fields are folded into.
pub struct Matcher<'q> {
    /// (negated, test), cheapest first.
    tests: Vec<(bool, Test<'q>)>,
    needs_summary: bool,
    fields: Fields,
}

enum Test<'q> {
    From(Finder<'q>),
    To(Finder<'q>),
    Subject(Finder<'q>),
    Text(Finder<'q>),
    HasAttachment,
    Read,
    Unread,
    Before(i64),
    After(i64),
    /// The `+tag` of an address the message came to (`--plus-addressing`), folded.
    Tag(&'q str),
}

/// One message's folded fields, each filled when a test first needs it.
#[derive(Default)]
struct Fields {
    from: Field,
    to: Field,
    subject: Field,
    /// Subject and preview: free text found here needs no body.
    head: Field,
    /// Subject and body.
    text: Field,
}

#[derive(Default)]
struct Field {
    folded: Vec<u8>,
    filled: bool,
}

/// These buffers held message text: zeroed before they are freed, whatever the allocator
/// does.
impl Drop for Field {
    fn drop(&mut self) {
        crate::alloc::wipe_vec(&mut self.folded);
    }
}

impl<'q> Matcher<'q> {
    /// Prepares `query`: a finder per needle, the tests ordered cheapest first.
    pub fn new(query: &'q Query) -> Matcher<'q> {
        let mut tests: Vec<(bool, Test<'q>)> = query
            .terms()
            .iter()
            .map(|term| {
                let test = match &term.key {
                    Key::From(needle) => Test::From(Finder::new(needle.as_bytes())),
                    Key::To(needle) => Test::To(Finder::new(needle.as_bytes())),
                    Key::Subject(needle) => Test::Subject(Finder::new(needle.as_bytes())),
                    Key::Text(needle) => Test::Text(Finder::new(needle.as_bytes())),
                    Key::HasAttachment => Test::HasAttachment,
                    Key::Read => Test::Read,
                    Key::Unread => Test::Unread,
                    Key::Before(unix_ms) => Test::Before(*unix_ms),
                    Key::After(unix_ms) => Test::After(*unix_ms),
                    Key::Tag(needle) => Test::Tag(needle),
                };
                (term.negated, test)
            })
            .collect();
        tests.sort_by_key(|(_, test)| test.cost());
        let needs_summary = tests.iter().any(|(_, test)| test.cost() > 0);
        Matcher {
            tests,
            needs_summary,
            fields: Fields::default(),
        }
    }

    /// True when some term reads the summary: `evaluate` must then be given one.
    pub fn needs_summary(&self) -> bool {
        self.needs_summary
    }

    /// Evaluates the query on `message`, with its summary (required when `needs_summary`)
    /// and its body if a view of it is at hand. Also returns the bytes of body text it
    /// folded, the measure of its work.
    pub fn evaluate(
        &mut self,
        message: &MessageRef<'_>,
        summary: Option<&Summary>,
        body: Option<BodyRef<'_>>,
    ) -> (Verdict, usize) {
        debug_assert!(summary.is_some() || !self.needs_summary);
        let fields = &mut self.fields;
        for field in [
            &mut fields.from,
            &mut fields.to,
            &mut fields.subject,
            &mut fields.head,
            &mut fields.text,
        ] {
            field.filled = false;
        }
        let mut needs_body = false;
        let mut body_bytes = 0;
        for (negated, test) in &self.tests {
            let outcome = match (test, summary) {
                (Test::Read, _) => Some(message.seen),
                (Test::Unread, _) => Some(!message.seen),
                (Test::Before(unix_ms), _) => Some(received_ms(message) < *unix_ms),
                (Test::After(unix_ms), _) => Some(received_ms(message) >= *unix_ms),
                (Test::Tag(needle), _) => Some(message.rcpts().any(|rcpt| has_tag(rcpt, needle))),
                // Not reached: the caller gives a summary when a test reads one.
                (_, None) => None,
                (Test::From(finder), Some(summary)) => Some(fields.from.contains(finder, |out| {
                    fold_into(message.mail_from, out);
                    out.push(b'\n');
                    fold_into(&summary.from_name, out);
                    out.push(b'\n');
                    fold_into(&summary.from_address, out);
                })),
                (Test::To(finder), Some(summary)) => Some(fields.to.contains(finder, |out| {
                    for rcpt in message.rcpts() {
                        fold_into(rcpt, out);
                        out.push(b'\n');
                    }
                    fold_into(&summary.to_cc, out);
                })),
                (Test::Subject(finder), Some(summary)) => Some(
                    fields
                        .subject
                        .contains(finder, |out| fold_into(&summary.subject, out)),
                ),
                (Test::HasAttachment, Some(summary)) => summary
                    .has_attachments
                    .or_else(|| body.map(BodyRef::has_attachments)),
                // With the body at hand, the subject and the body; without it, the subject
                // and the preview (the body's start), and only a match there is an answer.
                (Test::Text(finder), Some(summary)) => match body {
                    Some(body) => Some(fields.text.contains(finder, |out| {
                        fold_into(&summary.subject, out);
                        out.push(b'\n');
                        if let Some(text) = body.text(message.raw) {
                            fold_into(&text, out);
                            body_bytes += text.len();
                        }
                    })),
                    None => fields
                        .head
                        .contains(finder, |out| {
                            fold_into(&summary.subject, out);
                            out.push(b'\n');
                            fold_into(&summary.preview, out);
                        })
                        .then_some(true),
                },
            };
            match outcome {
                Some(matched) if matched == *negated => return (Verdict::No, body_bytes),
                Some(_) => {}
                None => needs_body = true,
            }
        }
        let verdict = if needs_body {
            Verdict::NeedsBody
        } else {
            Verdict::Yes
        };
        (verdict, body_bytes)
    }
}

/// Whether the address `rcpt` (as written) carries the tag `needle` (folded: lowercase),
/// compared whole and case-insensitively, without allocating.
pub(super) fn has_tag(rcpt: &str, needle: &str) -> bool {
    crate::address::plus_tag(rcpt)
        .is_some_and(|tag| tag.chars().flat_map(char::to_lowercase).eq(needle.chars()))
}

impl Test<'_> {
    /// 0: the store's entry alone; 1: the summary; 2: the summary and perhaps the body.
    fn cost(&self) -> u8 {
        match self {
            Test::Read | Test::Unread | Test::Before(_) | Test::After(_) | Test::Tag(_) => 0,
            Test::From(_) | Test::To(_) | Test::Subject(_) => 1,
            Test::HasAttachment | Test::Text(_) => 2,
        }
    }
}

impl Field {
    /// Whether the field contains the needle of `finder`, folding it with `fill` first if
    /// this message's field is not folded yet.
    fn contains(&mut self, finder: &Finder<'_>, fill: impl FnOnce(&mut Vec<u8>)) -> bool {
        if !self.filled {
            self.folded.clear();
            fill(&mut self.folded);
            self.filled = true;
        }
        finder.find(&self.folded).is_some()
    }
}

fn received_ms(message: &MessageRef<'_>) -> i64 {
    i64::try_from(message.received_at_ms).unwrap_or(i64::MAX)
}
