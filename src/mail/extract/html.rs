//! Reads message HTML for the extractor: its text in order (entities decoded, with breaks
//! where blocks and table cells are), how each piece is styled, and its `<a href>` links
//! with their text.
//!
//! The input is normally the sanitized HTML of a `ParsedMessage`, which our serializer
//! wrote (well nested, lowercase names, quoted attributes, no `<script>` or `<style>`), so
//! a forward scan is enough; raw mail HTML works too, less exactly (implied end tags are not
//! inferred). The scan is linear and bounded: `memchr` finds each `<`, comments end at the
//! first `-->`, a raw-text element at its end tag, an entity is looked for within
//! `ENTITY_BYTES_MAX` bytes, an end tag searches at most `END_TAG_SEARCH_MAX` open elements,
//! and at most `STACK_DEPTH_MAX` open elements are remembered (deeper ones only counted).

use memchr::{memchr, memmem};

use crate::mail::extract::markup::{decode_entities, style_flags};
use crate::mail::extract::scan::{Break, Scanner};
use crate::mail::extract::token::{STYLE_BIG, STYLE_EMPHASIS};
use crate::mail::extract::{Collector, LINK_TEXT_CHARS_MAX, URL_BYTES_MAX};

/// Open elements remembered, with their styles.
const STACK_DEPTH_MAX: usize = 64;
/// How many open elements an end tag looks through for its start tag (misnested raw HTML
/// leaves others open; sanitized HTML always closes the top one).
const END_TAG_SEARCH_MAX: usize = 8;
/// Longest tag name told apart; longer ones are unknown elements.
const TAG_NAME_BYTES_MAX: usize = 16;

/// Walks `html`, feeding its text to `scanner` and its links to `out`.
pub(crate) fn walk(html: &str, scanner: &mut Scanner, out: &mut Collector) {
    let mut walker = Walker::default();
    let bytes = html.as_bytes();
    let mut byte_idx = 0;
    while byte_idx < bytes.len() {
        let text_end =
            memchr(b'<', &bytes[byte_idx..]).map_or(bytes.len(), |offset| byte_idx + offset);
        if text_end > byte_idx {
            walker.text(&html[byte_idx..text_end], scanner, out);
        }
        if text_end == bytes.len() {
            break;
        }
        byte_idx = walker.markup(html, text_end, scanner, out);
    }
    walker.close_anchor(scanner, out);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TagKind {
    Anchor,
    Image,
    LineBreak,
    Block,
    Cell,
    Pre,
    /// Its content is not text to show (`<script>`, `<style>`, `<title>`, ...).
    RawText,
    /// Has no end tag.
    Void,
    Inline,
}

/// A lowercase tag name; names longer than `TAG_NAME_BYTES_MAX` are all the same unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct TagName {
    bytes: [u8; TAG_NAME_BYTES_MAX],
    len: usize,
}

impl TagName {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[derive(Debug)]
struct Open {
    name: TagName,
    /// `STYLE_*` of this element and its ancestors.
    style: u8,
}

/// An open `<a>`; its text is in `Walker::anchor_text`.
#[derive(Debug)]
struct Anchor {
    /// The link's entry, if its `href` is an http(s) URL that found room.
    entry_idx: Option<usize>,
    /// Whether an image in it had an `alt` (in `Walker::anchor_alt`).
    has_alt: bool,
    /// The scanner's token count when it opened: its context is the words before.
    context_end: usize,
    /// `STYLE_*` of its text.
    style: u8,
}

#[derive(Debug, Default)]
struct Walker {
    stack: Vec<Open>,
    /// Elements open beyond `STACK_DEPTH_MAX`.
    overflow_depth: usize,
    pre_depth: usize,
    anchor: Option<Anchor>,
    /// The open anchor's text and image `alt`, and its decoded `href`: buffers reused
    /// from one anchor to the next.
    anchor_text: LinkText,
    anchor_alt: LinkText,
    href: String,
}

/// The attributes the extractor reads, raw (entities not decoded).
#[derive(Debug, Default)]
struct Attributes<'h> {
    href: Option<&'h str>,
    style: Option<&'h str>,
    alt: Option<&'h str>,
}

impl Walker {
    fn style(&self) -> u8 {
        self.stack.last().map_or(0, |open| open.style)
    }

    /// Reads the markup starting at `html[lt] == '<'`; returns where the text resumes.
    fn markup(
        &mut self,
        html: &str,
        lt: usize,
        scanner: &mut Scanner,
        out: &mut Collector,
    ) -> usize {
        let bytes = html.as_bytes();
        match bytes.get(lt + 1) {
            Some(b'!') if bytes[lt..].starts_with(b"<!--") => {
                memmem::find(&bytes[lt + 4..], b"-->")
                    .map_or(bytes.len(), |offset| lt + 4 + offset + 3)
            }
            Some(b'/') if bytes.get(lt + 2).is_some_and(u8::is_ascii_alphabetic) => {
                let (name, name_end) = read_name(bytes, lt + 2);
                let end = skip_past(bytes, name_end, b'>');
                self.end_tag(name, scanner, out);
                end
            }
            Some(b'!' | b'?' | b'/') => skip_past(bytes, lt, b'>'),
            Some(byte) if byte.is_ascii_alphabetic() => self.start_tag(html, lt, scanner, out),
            _ => {
                self.text("<", scanner, out);
                lt + 1
            }
        }
    }

    fn start_tag(
        &mut self,
        html: &str,
        lt: usize,
        scanner: &mut Scanner,
        out: &mut Collector,
    ) -> usize {
        let bytes = html.as_bytes();
        let (name, mut byte_idx) = read_name(bytes, lt + 1);
        let mut attributes = Attributes::default();
        loop {
            while byte_idx < bytes.len()
                && (bytes[byte_idx].is_ascii_whitespace() || bytes[byte_idx] == b'/')
            {
                byte_idx += 1;
            }
            if byte_idx >= bytes.len() {
                // A tag cut off by the end of input is dropped, as HTML parsers do.
                return bytes.len();
            }
            if bytes[byte_idx] == b'>' {
                byte_idx += 1;
                break;
            }
            let name_start = byte_idx;
            byte_idx += 1;
            while byte_idx < bytes.len()
                && !bytes[byte_idx].is_ascii_whitespace()
                && !matches!(bytes[byte_idx], b'=' | b'>' | b'/')
            {
                byte_idx += 1;
            }
            let attribute_name = &html[name_start..byte_idx];
            while byte_idx < bytes.len() && bytes[byte_idx].is_ascii_whitespace() {
                byte_idx += 1;
            }
            let mut value = "";
            if bytes.get(byte_idx) == Some(&b'=') {
                byte_idx += 1;
                while byte_idx < bytes.len() && bytes[byte_idx].is_ascii_whitespace() {
                    byte_idx += 1;
                }
                match bytes.get(byte_idx) {
                    Some(&quote @ (b'"' | b'\'')) => {
                        let value_start = byte_idx + 1;
                        let value_end = memchr(quote, &bytes[value_start..])
                            .map_or(bytes.len(), |offset| value_start + offset);
                        value = &html[value_start..value_end];
                        byte_idx = (value_end + 1).min(bytes.len());
                    }
                    _ => {
                        let value_start = byte_idx;
                        while byte_idx < bytes.len()
                            && !bytes[byte_idx].is_ascii_whitespace()
                            && bytes[byte_idx] != b'>'
                        {
                            byte_idx += 1;
                        }
                        value = &html[value_start..byte_idx];
                    }
                }
            }
            if attribute_name.eq_ignore_ascii_case("href") {
                attributes.href = Some(value);
            } else if attribute_name.eq_ignore_ascii_case("style") {
                attributes.style = Some(value);
            } else if attribute_name.eq_ignore_ascii_case("alt") {
                attributes.alt = Some(value);
            }
        }
        let kind = tag_kind(name.as_bytes());
        if kind == TagKind::RawText {
            return skip_raw_text(bytes, byte_idx, name.as_bytes());
        }
        self.open(name, kind, &attributes, scanner, out);
        byte_idx
    }

    fn open(
        &mut self,
        name: TagName,
        kind: TagKind,
        attributes: &Attributes<'_>,
        scanner: &mut Scanner,
        out: &mut Collector,
    ) {
        match kind {
            TagKind::Anchor => {
                self.close_anchor(scanner, out);
                let context_end = scanner.n_tokens;
                let entry_idx = attributes.href.and_then(|href| {
                    let url = &mut self.href;
                    url.clear();
                    let fits = decode_entities(href, |part| {
                        url.push_str(part);
                        url.len() <= URL_BYTES_MAX
                    });
                    if fits { out.links.add(url, 0) } else { None }
                });
                self.anchor_text.clear();
                self.anchor_alt.clear();
                self.anchor = Some(Anchor {
                    entry_idx,
                    has_alt: false,
                    context_end,
                    style: 0,
                });
            }
            TagKind::Image => {
                if let (Some(anchor), Some(alt)) = (&mut self.anchor, attributes.alt)
                    && !anchor.has_alt
                {
                    anchor.has_alt = true;
                    let text = &mut self.anchor_alt;
                    decode_entities(alt, |part| {
                        text.push_str(part);
                        !text.is_full()
                    });
                }
                self.emit(" ", 0, scanner, out);
            }
            TagKind::LineBreak | TagKind::Block => self.block_break(Break::Line, scanner, out),
            TagKind::Cell => self.block_break(Break::Cell, scanner, out),
            TagKind::Pre => {
                self.block_break(Break::Line, scanner, out);
                self.pre_depth += 1;
                scanner.newline_is_break = true;
            }
            TagKind::RawText | TagKind::Void | TagKind::Inline => {}
        }
        if matches!(kind, TagKind::Image | TagKind::LineBreak | TagKind::Void) {
            return;
        }
        let style =
            self.style() | tag_style(name.as_bytes()) | attributes.style.map_or(0, style_flags);
        if self.stack.len() < STACK_DEPTH_MAX && self.overflow_depth == 0 {
            self.stack.push(Open { name, style });
        } else {
            self.overflow_depth += 1;
        }
    }

    fn end_tag(&mut self, name: TagName, scanner: &mut Scanner, out: &mut Collector) {
        match tag_kind(name.as_bytes()) {
            TagKind::Anchor => self.close_anchor(scanner, out),
            TagKind::LineBreak | TagKind::Block => self.block_break(Break::Line, scanner, out),
            TagKind::Cell => self.block_break(Break::Cell, scanner, out),
            TagKind::Pre => {
                self.block_break(Break::Line, scanner, out);
                self.pre_depth = self.pre_depth.saturating_sub(1);
                scanner.newline_is_break = self.pre_depth > 0;
            }
            TagKind::Image | TagKind::Void => return,
            TagKind::RawText | TagKind::Inline => {}
        }
        if self.overflow_depth > 0 {
            self.overflow_depth -= 1;
            return;
        }
        let search_start = self.stack.len().saturating_sub(END_TAG_SEARCH_MAX);
        if let Some(offset) = self.stack[search_start..]
            .iter()
            .rposition(|open| open.name == name)
        {
            self.stack.truncate(search_start + offset);
        }
    }

    fn block_break(&mut self, kind: Break, scanner: &mut Scanner, out: &mut Collector) {
        scanner.brk(kind, out);
        if self.anchor.is_some() {
            self.anchor_text.push(' ');
        }
    }

    fn close_anchor(&mut self, scanner: &mut Scanner, out: &mut Collector) {
        let Some(anchor) = self.anchor.take() else {
            return;
        };
        scanner.boundary(out);
        if let Some(entry_idx) = anchor.entry_idx {
            let text = if self.anchor_text.as_str().is_empty() {
                self.anchor_alt.as_str()
            } else {
                self.anchor_text.as_str()
            };
            let prominent = anchor.style & (STYLE_EMPHASIS | STYLE_BIG) != 0;
            let text_class = out.links.text_class(text);
            // The words before a link matter only when its own text says nothing.
            let context = if text_class == 0 {
                scanner.link_context_before(anchor.context_end)
            } else {
                0
            };
            out.links
                .add_text(entry_idx, text, text_class, context, prominent);
        }
    }

    /// Text between tags, entities decoded.
    fn text(&mut self, raw: &str, scanner: &mut Scanner, out: &mut Collector) {
        let style = self.style();
        decode_entities(raw, |part| {
            self.emit(part, style, scanner, out);
            true
        });
    }

    fn emit(&mut self, part: &str, style: u8, scanner: &mut Scanner, out: &mut Collector) {
        scanner.feed(part, style, out);
        if let Some(anchor) = &mut self.anchor {
            anchor.style |= style;
            if !self.anchor_text.is_full() {
                self.anchor_text.push_str(part);
            }
        }
    }
}

/// The lowercase tag name at `bytes[start..]` and where it ends.
fn read_name(bytes: &[u8], start: usize) -> (TagName, usize) {
    let mut name = TagName::default();
    let mut byte_idx = start;
    while byte_idx < bytes.len()
        && (bytes[byte_idx].is_ascii_alphanumeric() || matches!(bytes[byte_idx], b'-' | b':'))
    {
        if name.len < TAG_NAME_BYTES_MAX {
            name.bytes[name.len] = bytes[byte_idx].to_ascii_lowercase();
            name.len += 1;
        } else {
            name.bytes = [b'-'; TAG_NAME_BYTES_MAX];
        }
        byte_idx += 1;
    }
    (name, byte_idx)
}

/// The index after the next `byte` at or after `start` (the end if there is none).
fn skip_past(bytes: &[u8], start: usize, byte: u8) -> usize {
    memchr(byte, &bytes[start.min(bytes.len())..]).map_or(bytes.len(), |offset| start + offset + 1)
}

/// The index after the end tag of the raw-text element `name` whose content starts at
/// `start` (the end of input if it has none).
fn skip_raw_text(bytes: &[u8], start: usize, name: &[u8]) -> usize {
    let mut byte_idx = start;
    while let Some(offset) = memchr(b'<', &bytes[byte_idx..]) {
        let lt = byte_idx + offset;
        let name_start = lt + 2;
        let closes = bytes.get(lt + 1) == Some(&b'/')
            && bytes
                .get(name_start..name_start + name.len())
                .is_some_and(|candidate| candidate.eq_ignore_ascii_case(name))
            && !bytes
                .get(name_start + name.len())
                .is_some_and(u8::is_ascii_alphanumeric);
        if closes {
            return skip_past(bytes, lt, b'>');
        }
        byte_idx = lt + 1;
    }
    bytes.len()
}

fn tag_kind(name: &[u8]) -> TagKind {
    match name {
        b"a" => TagKind::Anchor,
        b"img" => TagKind::Image,
        b"br" => TagKind::LineBreak,
        b"td" | b"th" => TagKind::Cell,
        b"pre" => TagKind::Pre,
        b"script" | b"style" | b"title" | b"textarea" | b"noscript" | b"template" | b"iframe"
        | b"xmp" | b"noembed" | b"noframes" => TagKind::RawText,
        b"area" | b"base" | b"col" | b"embed" | b"hr" | b"input" | b"link" | b"meta" | b"param"
        | b"source" | b"track" | b"wbr" => TagKind::Void,
        b"address" | b"article" | b"aside" | b"blockquote" | b"body" | b"caption" | b"center"
        | b"dd" | b"details" | b"div" | b"dl" | b"dt" | b"figcaption" | b"figure" | b"footer"
        | b"form" | b"h1" | b"h2" | b"h3" | b"h4" | b"h5" | b"h6" | b"header" | b"hgroup"
        | b"li" | b"main" | b"nav" | b"ol" | b"p" | b"section" | b"summary" | b"table"
        | b"tbody" | b"tfoot" | b"thead" | b"tr" | b"ul" => TagKind::Block,
        _ => TagKind::Inline,
    }
}

/// What an element's name says about its text's looks.
fn tag_style(name: &[u8]) -> u8 {
    match name {
        b"h1" | b"h2" => STYLE_EMPHASIS | STYLE_BIG,
        b"b" | b"strong" | b"h3" | b"code" | b"kbd" | b"samp" | b"tt" | b"mark" => STYLE_EMPHASIS,
        b"big" => STYLE_BIG,
        _ => 0,
    }
}

/// Link text as shown: whitespace runs collapsed to one space, at most
/// `LINK_TEXT_CHARS_MAX` characters.
#[derive(Debug, Default)]
struct LinkText {
    text: String,
    n_chars: usize,
    space_pending: bool,
}

impl LinkText {
    fn push_str(&mut self, part: &str) {
        for ch in part.chars() {
            self.push(ch);
        }
    }

    fn push(&mut self, ch: char) {
        if self.n_chars >= LINK_TEXT_CHARS_MAX {
            return;
        }
        if ch.is_whitespace() {
            self.space_pending = !self.text.is_empty();
            return;
        }
        if self.space_pending {
            self.space_pending = false;
            if self.n_chars + 1 >= LINK_TEXT_CHARS_MAX {
                self.n_chars = LINK_TEXT_CHARS_MAX;
                return;
            }
            self.text.push(' ');
            self.n_chars += 1;
        }
        self.text.push(ch);
        self.n_chars += 1;
    }

    fn as_str(&self) -> &str {
        &self.text
    }

    fn clear(&mut self) {
        self.text.clear();
        self.n_chars = 0;
        self.space_pending = false;
    }

    /// No more characters will be kept.
    fn is_full(&self) -> bool {
        self.n_chars >= LINK_TEXT_CHARS_MAX
    }
}
