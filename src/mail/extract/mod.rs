//! One-time codes and links of a message, for test suites waiting for a sign-up mail:
//! `extract` takes the subject, the text body, the sanitized HTML body and the
//! List-Unsubscribe header, and returns the likely codes (best first, scored 0-100) and
//! every http(s) link (with its text; the likely verification link and the unsubscribe
//! links marked).
//!
//! How it reads:
//! - `scan`: every input is cut into tokens (runs of letters and digits; runs of Chinese,
//!   Japanese or Korean characters), kept in a ring of the last 64 (`token`: each with a
//!   constant-size summary of what stood before it); URLs in text are read whole
//!   (`text_url`) and go to `links`.
//! - `html`: the HTML's text is fed to the same scanner, with breaks at blocks and table
//!   cells and its styling (bold, big, letter-spaced; `markup` decodes entities and reads
//!   the CSS); `<a href>` go to `links` with their text.
//! - `codes`: a token of 4-8 digits (or groups such as "482 913" and digits split over table
//!   cells, joined), or of 4-10 letters and digits, is a candidate; it is thrown out if it
//!   touches a URL, an e-mail address, a price, a time or a decimal, follows an order,
//!   phone or price word, is a year in a date or a number in an address block; otherwise
//!   it is scored by the code keywords around it (`lexicon`: code, OTP, PIN, verification,
//!   ... in many languages), the subject, its styling and whether it stands alone, and
//!   `code_table` keeps the best score per value.
//! - `words`: what a word means, looked up lazily (only near a candidate or a link) in
//!   byte tries (`trie`) built once from `lexicon`.
//!
//! Linear time and bounded memory, whatever the input (10 MiB of digits, of "code", of
//! `<a>`): each input byte is read once (the HTML walker jumps with `memchr`; comments,
//! entities and raw-text elements end at bounded or forward searches); each token costs a
//! constant (its ring slot; at most one candidate judgement over a fixed window of the ring,
//! each word classified at most once by walking its at most 64 bytes down a trie); each URL
//! its length plus a hash compare among at most `LINKS_MAX`. Memory is the fixed ring, at
//! most `CODE_CANDIDATES_MAX` candidate values, at most `LINKS_MAX` links of at most
//! `URL_BYTES_MAX` bytes with texts of at most `LINK_TEXT_CHARS_MAX` characters, and at most
//! 64 open HTML elements: about 0.5 MiB in the worst case, whatever the input's size.
//!
//! Costs (`benches/extract.rs`, on the 2-core development VM shared with other builds):
//! a 10 KiB sign-up mail takes 47-51 us as sanitized HTML and as text (0.73 and 0.79
//! million instructions: tokenizing is about half, its 40 links a quarter); hostile input
//! runs at a constant rate from 100 KiB to 1 MiB, the slowest shape (a keyword and a
//! candidate code on every line, each judged over its window) at about 24 MiB/s.

mod code_table;
mod codes;
mod html;
mod lexicon;
mod links;
mod markup;
mod scan;
mod text_url;
mod token;
mod trie;
mod words;

#[cfg(test)]
mod tests;

use serde::Serialize;

use crate::mail::extract::code_table::CodeTable;
use crate::mail::extract::links::LinkTable;
use crate::mail::extract::scan::{Scanner, Source};

/// Codes reported, at most.
pub const CODES_MAX: usize = 5;
/// Links reported, at most (the first ones, in order).
pub const LINKS_MAX: usize = 100;
/// Longest link text kept, in characters (whitespace runs count as one).
pub const LINK_TEXT_CHARS_MAX: usize = 200;
/// Longest URL reported, in bytes; a longer one is not reported at all (a cut URL would
/// not work).
pub const URL_BYTES_MAX: usize = 4096;

/// What `extract` found in a message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Extracted {
    /// Likely one-time codes, most likely first; at most `CODES_MAX`.
    pub codes: Vec<Code>,
    /// Every distinct http(s) URL: the HTML's in document order, then the text body's that
    /// the HTML did not have, then the List-Unsubscribe header's; at most `LINKS_MAX`.
    pub links: Vec<Link>,
}

/// A likely one-time code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Code {
    /// As it should be typed: digit groups ("482 913", "482-913") without the separator.
    pub value: String,
    /// How likely it is the code, 0-100 (reported codes score at least 25). Above 60: a
    /// code keyword was right next to it; 25-40: it only looks like one.
    pub score: u8,
}

/// An http(s) link of the message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Link {
    pub url: String,
    /// The text it was shown with (an `<a>`'s text, or its image's `alt`), whitespace
    /// collapsed; None for a URL written as text or one only in the List-Unsubscribe header.
    pub text: Option<String>,
    pub kind: LinkKind,
}

/// What a link is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    /// The likely sign-up, verification, confirmation, activation, password-reset or magic
    /// sign-in link; at most one link of a message.
    Verify,
    /// An unsubscribe link (also every http(s) URL of the List-Unsubscribe header).
    Unsubscribe,
    Other,
}

impl Extracted {
    /// The link marked `Verify`, if any.
    pub fn verify_link(&self) -> Option<&Link> {
        self.links.iter().find(|link| link.kind == LinkKind::Verify)
    }

    /// Heap bytes held, for a cache's budget.
    pub fn heap_bytes(&self) -> usize {
        let codes_bytes: usize = self
            .codes
            .iter()
            .map(|code| size_of::<Code>() + code.value.capacity())
            .sum();
        let links_bytes: usize = self
            .links
            .iter()
            .map(|link| {
                size_of::<Link>()
                    + link.url.capacity()
                    + link.text.as_ref().map_or(0, String::capacity)
            })
            .sum();
        codes_bytes + links_bytes
    }

    /// Overwrites every string (message content) and frees them.
    pub fn wipe(self) {
        for mut code in self.codes {
            crate::alloc::wipe_string(&mut code.value);
        }
        for mut link in self.links {
            crate::alloc::wipe_string(&mut link.url);
            if let Some(text) = &mut link.text {
                crate::alloc::wipe_string(text);
            }
        }
    }
}

/// Finds the one-time codes and links of a message.
///
/// `subject` is the decoded Subject (empty if none); `text` the text body (for an HTML-only
/// message, mail-parser's rendering of the HTML is fine); `html` the HTML body, normally the
/// sanitized one (`ParsedMessage`'s), though raw HTML works; `list_unsubscribe` the
/// List-Unsubscribe header's value as written (`<https://...>, <mailto:...>`). Never fails
/// or panics; takes time linear in the inputs' total length and bounded memory.
pub fn extract(
    subject: &str,
    text: Option<&str>,
    html: Option<&str>,
    list_unsubscribe: Option<&str>,
) -> Extracted {
    let mut out = Collector::default();
    let mut scanner = Scanner::new();
    // The subject first: its keywords count for codes in the bodies.
    scanner.reset(Source::Subject, false);
    scanner.feed(subject, 0, &mut out);
    scanner.finish(&mut out);
    out.links.subject_class = out.subject_class;
    if let Some(html) = html {
        scanner.reset(Source::Body, false);
        html::walk(html, &mut scanner, &mut out);
        scanner.finish(&mut out);
    }
    if let Some(text) = text {
        scanner.reset(Source::Body, true);
        scanner.feed(text, 0, &mut out);
        scanner.finish(&mut out);
    }
    if let Some(value) = list_unsubscribe {
        out.links.add_list_unsubscribe(value);
    }
    Extracted {
        codes: out.codes.finish(),
        links: out.links.finish(),
    }
}

/// What the scanners of one message report into.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    pub(crate) codes: CodeTable,
    pub(crate) links: LinkTable,
    /// The `words` classes of the subject's words.
    pub(crate) subject_class: u32,
}
