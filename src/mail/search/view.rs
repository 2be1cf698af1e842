//! What a search reads of a message beyond its `Summary`: the text body and whether it has
//! attachments. Cached in the shard's `ViewCache` beside summaries and message views, and
//! much cheaper to make than a message view: one `mail-parser` pass, no HTML sanitizing
//! and no code extraction, and for a plain text body only a byte range of the message.

use std::borrow::Cow;

use mail_parser::MessageParser;

use crate::mail::{Body, ParsedMessage};

/// The text body and the attachment flag of a message, parsed from its whole bytes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SearchView {
    /// The first text body, as the message view's `text` (offsets into the message when it
    /// needed no decoding).
    text: Option<Body>,
    has_attachments: bool,
}

/// Where a search finds a message's body: its message view if one is cached (it holds the
/// same text), else its search view.
#[derive(Clone, Copy)]
pub enum BodyRef<'v> {
    Full(&'v ParsedMessage),
    Search(&'v SearchView),
}

impl SearchView {
    /// Parses a whole message (off the executor: it may be large). Never fails: a message
    /// `mail-parser` cannot read has no text and no attachments.
    pub fn parse(raw: &[u8]) -> SearchView {
        match MessageParser::default().parse(raw) {
            Some(message) => SearchView {
                text: Body::text_of(raw, &message),
                has_attachments: !message.attachments.is_empty(),
            },
            None => SearchView::default(),
        }
    }

    /// Heap bytes this view holds beyond its own size, for the cache's budget.
    pub fn heap_bytes(&self) -> usize {
        self.text.as_ref().map_or(0, Body::heap_bytes)
    }

    /// Overwrites the decoded text, if any (message content), and frees it.
    pub fn wipe(self) {
        if let Some(text) = self.text {
            text.wipe();
        }
    }
}

impl<'v> BodyRef<'v> {
    /// The text body, if the message has one; `raw` is the message's stored bytes.
    pub fn text(self, raw: &'v [u8]) -> Option<Cow<'v, str>> {
        match self {
            BodyRef::Full(parsed) => parsed.text(raw),
            BodyRef::Search(view) => Some(view.text.as_ref()?.text(raw)),
        }
    }

    /// Whether the message view lists attachments.
    pub fn has_attachments(self) -> bool {
        match self {
            BodyRef::Full(parsed) => !parsed.attachments().is_empty(),
            BodyRef::Search(view) => view.has_attachments,
        }
    }
}
