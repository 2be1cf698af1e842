//! What readers see of a message, parsed from its bytes with `mail-parser`: the `Summary`
//! a listing shows (subject, date, preview) and the `ParsedMessage` the message view shows
//! (headers, text, sanitized HTML, attachments).
//!
//! Parsing is lazy: the SMTP hot path stores bytes only, and each shard's `ViewCache`
//! keeps what readers asked for, so a message read repeatedly is parsed once per kind of
//! read. A `Summary` is parsed from at most the first `SUMMARY_PARSE_BYTES_MAX` of a message,
//! so it is cheap and bounded and is made on the executor; a `ParsedMessage` (sanitizing
//! included) is made off the executor, from a copy of the message.
//!
//! A `ParsedMessage` copies as little as it can: header fields, a plain-text body that
//! needed no decoding, and attachments are kept as offsets into the stored bytes, which
//! outlive the cache (the store wipes the cache when the message goes). Decoded text and
//! the sanitized HTML are owned; everything owned is counted by `heap_bytes` and zeroed by
//! `wipe`, because it is message content.

pub mod cache;
pub mod extract;
pub mod sanitize;
pub mod search;

pub use cache::ViewCache;

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use mail_parser::parsers::MessageStream;
use mail_parser::{Encoding, HeaderValue, Message, MessageParser, MimeHeaders, PartType};

use crate::mail::sanitize::{
    ATTACHMENT_URL_MARKER, HTML_SANITIZE_BYTES_MAX, NotSanitized, content_id_key,
    sanitize_html_bounded,
};

/// A summary is parsed from at most this many bytes of the message: enough for any real
/// header block and the start of the first text part, and a bound on the executor time a
/// listing can take (a 10 MiB message must not cost a listing more than a small one).
pub const SUMMARY_PARSE_BYTES_MAX: usize = 64 * 1024;
/// Longest preview, in characters (the API contract says "up to 200").
pub const PREVIEW_CHARS_MAX: usize = 200;
/// Most bytes of the To and Cc header fields a summary keeps for `to:` searches (cut at a
/// character boundary): enough for any real recipient list, bounded for a hostile one.
pub const TO_CC_BYTES_MAX: usize = 2048;
/// Content type of an attachment whose part names none (RFC 2045 would say text/plain
/// for a part without Content-Type, but a part listed as an attachment is a file).
pub const CONTENT_TYPE_DEFAULT: &str = "application/octet-stream";

/// The parsed fields of a message that summaries show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Subject header with RFC 2047 words decoded; empty when absent.
    pub subject: String,
    /// Date header as Unix seconds, when present and parseable.
    pub date_unix_secs: Option<i64>,
    /// First characters of the text body, whitespace runs collapsed to one space.
    pub preview: String,
    /// The From header's first mailbox: its display name (RFC 2047 decoded; empty when it
    /// has none) and address (empty when the header is absent or names no address).
    pub from_name: String,
    pub from_address: String,
    /// The To and Cc header fields' mailboxes as `name <address>, ...`, at most
    /// `TO_CC_BYTES_MAX` bytes: what `to:` searches besides the envelope.
    pub to_cc: String,
    /// Whether the message view lists attachments; `None` for a message longer than what a
    /// summary reads (`SUMMARY_PARSE_BYTES_MAX`): a search then reads the whole.
    pub has_attachments: Option<bool>,
}

/// The message view of a stored message: everything beyond the `Summary`. Offsets refer
/// to the raw bytes it was parsed from, which every accessor takes again.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ParsedMessage {
    /// Top-level header fields in order.
    headers: Vec<HeaderSpan>,
    /// The first text body (mail-parser's plain-text rendering of the HTML if there is no
    /// text/plain part).
    text: Option<Body>,
    /// The first text/html body, sanitized, with `ATTACHMENT_URL_MARKER` where an inline
    /// image's URL goes.
    html: Option<Box<str>>,
    /// Why the message's HTML body is not in `html`, when it has one that was not served.
    html_omitted: Option<HtmlOmitted>,
    /// The top-level attachments in mail-parser's order (which is the order in the message).
    attachments: Vec<Attachment>,
    /// One-time codes and links (`extract`), found once here, off the executor.
    extracted: extract::Extracted,
}

/// Why an HTML body is not served: it is too big, or too costly, to sanitize in bounded
/// time and memory (`mail::sanitize`). The raw message still has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HtmlOmitted {
    /// Over `HTML_SANITIZE_BYTES_MAX`.
    TooLarge,
    /// Its parse went over a work, memory or output budget (hostile or pathological markup).
    TooCostly,
}

impl HtmlOmitted {
    /// The API's word for it (`html_omitted` in the message view).
    pub fn as_str(self) -> &'static str {
        match self {
            HtmlOmitted::TooLarge => "too_large",
            HtmlOmitted::TooCostly => "too_costly",
        }
    }
}

/// One attachment of a `ParsedMessage`.
#[derive(Debug, PartialEq, Eq)]
pub struct Attachment {
    /// File name from Content-Disposition `filename` or Content-Type `name` (RFC 2231 and
    /// RFC 2047 decoded), if the part has one.
    pub filename: Option<Box<str>>,
    /// `type/subtype` in lowercase, plus a `charset` parameter for text types.
    pub content_type: Box<str>,
    /// Size of the decoded content in bytes (what `attachment_bytes` returns).
    pub size_bytes: usize,
    /// The decoded content: where it is in the raw message and how it is encoded.
    body: AttachmentBody,
}

/// A header field's name and value, as byte ranges of the raw message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HeaderSpan {
    name: Range<u32>,
    value: Range<u32>,
}

/// Text that is either a slice of the raw message (it needed no decoding) or decoded.
#[derive(Debug, PartialEq, Eq)]
enum Body {
    Raw(Range<u32>),
    Decoded(Box<str>),
}

/// Where an attachment's content comes from.
#[derive(Debug, PartialEq, Eq)]
enum AttachmentBody {
    /// A slice of the raw message with a transfer encoding to undo on every download: the
    /// cache then costs a few bytes per attachment instead of a copy of it.
    Encoded {
        range: Range<u32>,
        encoding: TransferEncoding,
    },
    /// The decoded bytes, kept when decoding the slice again would not give exactly what
    /// mail-parser decoded at parse time (a malformed encoding it tolerated).
    Decoded(Box<[u8]>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransferEncoding {
    Identity,
    QuotedPrintable,
    Base64,
}

impl Summary {
    /// Parses the start of `raw` (a whole stored message, of which at most
    /// `SUMMARY_PARSE_BYTES_MAX` bytes are read); never fails: unparseable parts stay empty.
    pub fn parse(raw: &[u8]) -> Summary {
        let is_whole = raw.len() <= SUMMARY_PARSE_BYTES_MAX;
        let raw = &raw[..raw.len().min(SUMMARY_PARSE_BYTES_MAX)];
        match MessageParser::default().parse(raw) {
            Some(message) => {
                let mut summary = Summary::of(&message);
                // A cut message says nothing either way: mail-parser lists the text part
                // the cut leaves unclosed as an attachment, and the rest is unread.
                if !is_whole {
                    summary.has_attachments = None;
                }
                summary
            }
            None => Summary {
                has_attachments: is_whole.then_some(false),
                ..Summary::default()
            },
        }
    }

    /// Heap bytes this summary's strings hold, for the cache's budget.
    pub fn heap_bytes(&self) -> usize {
        self.subject.capacity()
            + self.preview.capacity()
            + self.from_name.capacity()
            + self.from_address.capacity()
            + self.to_cc.capacity()
    }

    /// Overwrites the summary's text, which is message content, and frees it.
    pub fn wipe(self) {
        for text in [
            self.subject,
            self.preview,
            self.from_name,
            self.from_address,
            self.to_cc,
        ] {
            wipe_bytes(text.into_bytes());
        }
    }

    fn of(message: &Message<'_>) -> Summary {
        let subject = message.subject().unwrap_or_default().to_string();
        let date_unix_secs = message.date().map(|date| date.to_timestamp());
        let mut preview = String::new();
        if let Some(text) = message.body_text(0) {
            let mut n_chars = 0;
            for word in text.split_whitespace() {
                if n_chars >= PREVIEW_CHARS_MAX {
                    break;
                }
                if !preview.is_empty() {
                    preview.push(' ');
                    n_chars += 1;
                }
                for ch in word.chars() {
                    if n_chars >= PREVIEW_CHARS_MAX {
                        break;
                    }
                    preview.push(ch);
                    n_chars += 1;
                }
            }
        }
        let from = message.from().and_then(|from| from.first());
        let mut to_cc = String::new();
        for addr in message
            .to()
            .into_iter()
            .chain(message.cc())
            .flat_map(|address| address.iter())
        {
            let entry = match (addr.name(), addr.address()) {
                (Some(name), Some(address)) => format!("{name} <{address}>"),
                (Some(text), None) | (None, Some(text)) => text.to_string(),
                (None, None) => continue,
            };
            if !to_cc.is_empty() {
                to_cc.push_str(", ");
            }
            to_cc.push_str(&entry);
            if to_cc.len() >= TO_CC_BYTES_MAX {
                let mut cut = TO_CC_BYTES_MAX;
                while !to_cc.is_char_boundary(cut) {
                    cut -= 1;
                }
                to_cc.truncate(cut);
                break;
            }
        }
        Summary {
            subject,
            date_unix_secs,
            preview,
            from_name: from
                .and_then(|from| from.name())
                .unwrap_or_default()
                .to_string(),
            from_address: from
                .and_then(|from| from.address())
                .unwrap_or_default()
                .to_string(),
            to_cc,
            has_attachments: Some(!message.attachments.is_empty()),
        }
    }
}

impl ParsedMessage {
    /// Parses `raw` once into its summary and its message view. Never fails: a message
    /// mail-parser cannot make sense of has no headers, bodies or attachments.
    pub fn parse(raw: &[u8]) -> (Summary, ParsedMessage) {
        let Some(message) = MessageParser::default().parse(raw) else {
            return (Summary::default(), ParsedMessage::default());
        };
        let summary = Summary::of(&message);
        let headers = message
            .headers()
            .iter()
            .filter_map(|header| {
                let name_start = header.offset_field();
                // The name runs to the colon; mail-parser's name may be canonicalised.
                let name_len = raw
                    .get(name_start as usize..header.offset_start() as usize)?
                    .iter()
                    .position(|&b| b == b':')?;
                Some(HeaderSpan {
                    name: name_start..name_start + u32::try_from(name_len).ok()?,
                    value: header.offset_start()..header.offset_end(),
                })
            })
            .collect();
        let text = Body::text_of(raw, &message);
        let attachments: Vec<Attachment> = message
            .attachments
            .iter()
            .filter_map(|&part_id| message.parts.get(part_id as usize))
            .map(|part| attachment_of(raw, part))
            .collect();
        let mut html_omitted = None;
        let html = message.html_part(0).and_then(|part| match &part.body {
            PartType::Html(html) => {
                let content_ids = message
                    .attachments
                    .iter()
                    .enumerate()
                    .filter_map(|(index, &part_id)| {
                        let content_id = message.parts.get(part_id as usize)?.content_id()?;
                        Some((content_id_key(content_id), index))
                    })
                    .collect::<HashMap<String, usize>>();
                match sanitize_html_bounded(html, content_ids, HTML_SANITIZE_BYTES_MAX) {
                    Ok(sanitized) => Some(sanitized.into_boxed_str()),
                    Err(reason) => {
                        html_omitted = Some(match reason {
                            NotSanitized::TooLarge { .. } => HtmlOmitted::TooLarge,
                            NotSanitized::TooCostly { .. } => HtmlOmitted::TooCostly,
                        });
                        None
                    }
                }
            }
            // A text/plain body that mail-parser would render as HTML is not an HTML body.
            _ => None,
        });
        let extracted = extract::extract(
            &summary.subject,
            message.body_text(0).as_deref(),
            html.as_deref(),
            message.header_raw("List-Unsubscribe").map(str::trim),
        );
        (
            summary,
            ParsedMessage {
                headers,
                text,
                html,
                html_omitted,
                attachments,
                extracted,
            },
        )
    }

    /// The message's likely one-time codes and its links.
    pub fn extracted(&self) -> &extract::Extracted {
        &self.extracted
    }

    /// The top-level header fields in order: name as written, value unfolded with RFC 2047
    /// encoded words decoded.
    pub fn headers<'r>(&self, raw: &'r [u8]) -> impl Iterator<Item = (Cow<'r, str>, String)> {
        self.headers.iter().map(move |span| {
            let name = slice(raw, &span.name);
            (
                String::from_utf8_lossy(name.trim_ascii()),
                decoded_header_value(slice(raw, &span.value)),
            )
        })
    }

    /// The text body, if the message has one.
    pub fn text<'s>(&'s self, raw: &'s [u8]) -> Option<Cow<'s, str>> {
        Some(self.text.as_ref()?.text(raw))
    }

    /// The sanitized HTML body, if the message has one, with inline images pointing at
    /// `attachment_url_prefix` followed by the attachment's index (e.g.
    /// `/api/v1/inboxes/a%40x.test/messages/ID/attachments/`). The prefix must not contain
    /// `"`, `&`, `<` or `>` (it goes into an attribute value as it is).
    pub fn html(&self, attachment_url_prefix: &str) -> Option<String> {
        let html = self.html.as_deref()?;
        // Only `src` values can hold the marker: ammonia drops URLs with its scheme from the
        // input, and a marker in text is rewritten harmlessly (the prefix is a plain path).
        Some(html.replace(ATTACHMENT_URL_MARKER, attachment_url_prefix))
    }

    /// Why the HTML body is not served, if the message has one that is not.
    pub fn html_omitted(&self) -> Option<HtmlOmitted> {
        self.html_omitted
    }

    /// The attachments, indexed as the API numbers them.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// The decoded content of attachment `index`; None if there is no such attachment.
    pub fn attachment_bytes<'s>(&'s self, raw: &'s [u8], index: usize) -> Option<Cow<'s, [u8]>> {
        let attachment = self.attachments.get(index)?;
        Some(match &attachment.body {
            AttachmentBody::Encoded { range, encoding } => {
                // Checked at parse time: this decodes (to `size_bytes` bytes).
                transfer_decode(slice(raw, range), *encoding).unwrap_or_default()
            }
            AttachmentBody::Decoded(bytes) => Cow::Borrowed(&bytes[..]),
        })
    }

    /// Heap bytes this message view holds, for the store's metadata budget.
    pub fn heap_bytes(&self) -> usize {
        let text_bytes = self.text.as_ref().map_or(0, Body::heap_bytes);
        let attachment_bytes: usize = self
            .attachments
            .iter()
            .map(|attachment| {
                size_of::<Attachment>()
                    + attachment.filename.as_ref().map_or(0, |name| name.len())
                    + attachment.content_type.len()
                    + match &attachment.body {
                        AttachmentBody::Decoded(bytes) => bytes.len(),
                        AttachmentBody::Encoded { .. } => 0,
                    }
            })
            .sum();
        self.headers.capacity() * size_of::<HeaderSpan>()
            + text_bytes
            + self.html.as_ref().map_or(0, |html| html.len())
            + attachment_bytes
            + self.extracted.heap_bytes()
    }

    /// Overwrites everything the view copied out of the message, and frees it.
    pub fn wipe(self) {
        self.extracted.wipe();
        if let Some(text) = self.text {
            text.wipe();
        }
        if let Some(html) = self.html {
            wipe_bytes(html.into_boxed_bytes().into_vec());
        }
        for attachment in self.attachments {
            if let Some(filename) = attachment.filename {
                wipe_bytes(filename.into_boxed_bytes().into_vec());
            }
            if let AttachmentBody::Decoded(bytes) = attachment.body {
                wipe_bytes(bytes.into_vec());
            }
        }
    }
}

impl Body {
    /// The first text body of `message` (parsed from `raw`), as the message view shows it.
    fn text_of(raw: &[u8], message: &Message<'_>) -> Option<Body> {
        message.body_text(0).map(|text| match text {
            Cow::Borrowed(slice) => match range_in(raw, slice.as_bytes()) {
                Some(range) => Body::Raw(range),
                None => Body::Decoded(slice.into()),
            },
            Cow::Owned(decoded) => Body::Decoded(decoded.into_boxed_str()),
        })
    }

    /// The text, from `raw` (the bytes it was parsed from) or its decoded copy.
    fn text<'s>(&'s self, raw: &'s [u8]) -> Cow<'s, str> {
        match self {
            // `from_utf8` checks ASCII a word at a time; `from_utf8_lossy` goes byte by
            // byte even when every byte is valid, which a text search over an inbox feels.
            Body::Raw(range) => match std::str::from_utf8(slice(raw, range)) {
                Ok(text) => Cow::Borrowed(text),
                Err(_) => String::from_utf8_lossy(slice(raw, range)),
            },
            Body::Decoded(text) => Cow::Borrowed(text),
        }
    }

    /// Heap bytes of the decoded copy, if any.
    fn heap_bytes(&self) -> usize {
        match self {
            Body::Raw(_) => 0,
            Body::Decoded(text) => text.len(),
        }
    }

    /// Overwrites the decoded copy, if any, and frees it.
    fn wipe(self) {
        if let Body::Decoded(text) = self {
            wipe_bytes(text.into_boxed_bytes().into_vec());
        }
    }
}

/// The `Attachment` of a part listed as an attachment.
fn attachment_of(raw: &[u8], part: &mail_parser::MessagePart<'_>) -> Attachment {
    let filename = part
        .attachment_name()
        .map(|name| name.trim())
        .filter(|name| !name.is_empty())
        .map(Box::from);
    let content_type = content_type_of(part);
    let encoding = match part.encoding {
        Encoding::None => TransferEncoding::Identity,
        Encoding::QuotedPrintable => TransferEncoding::QuotedPrintable,
        Encoding::Base64 => TransferEncoding::Base64,
    };
    let range = part.offset_body..part.offset_end;
    // The bytes a download serves are the part's body with only the transfer encoding
    // undone: a text attachment keeps its own charset (named in its content type), so
    // the file is byte for byte what the sender attached. For other parts, check that
    // decoding the slice again gives exactly what mail-parser decoded; if not, keep a copy.
    let decoded = raw
        .get(range.start as usize..range.end as usize)
        .and_then(|body| transfer_decode(body, encoding));
    let body_and_size = match (&part.body, decoded) {
        (PartType::Text(_) | PartType::Html(_), Some(decoded)) => Some(decoded.len()),
        (_, Some(decoded)) if decoded.as_ref() == part.contents() => Some(decoded.len()),
        _ => None,
    };
    match body_and_size {
        Some(size_bytes) => Attachment {
            filename,
            content_type,
            size_bytes,
            body: AttachmentBody::Encoded { range, encoding },
        },
        None => Attachment {
            filename,
            content_type,
            size_bytes: part.contents().len(),
            body: AttachmentBody::Decoded(part.contents().into()),
        },
    }
}

/// `type/subtype` (lowercase, token characters only) and, for text, the charset.
fn content_type_of(part: &mail_parser::MessagePart<'_>) -> Box<str> {
    let is_token = |text: &str| {
        !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let Some(content_type) = part.content_type() else {
        return match part.body {
            PartType::Message(_) => "message/rfc822".into(),
            _ => CONTENT_TYPE_DEFAULT.into(),
        };
    };
    let main_type = content_type.ctype().to_ascii_lowercase();
    let sub_type = content_type
        .subtype()
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if !is_token(&main_type) || !is_token(&sub_type) {
        return CONTENT_TYPE_DEFAULT.into();
    }
    match content_type.attribute("charset") {
        Some(charset) if main_type == "text" && is_token(charset) => format!(
            "{main_type}/{sub_type}; charset={}",
            charset.to_ascii_lowercase()
        )
        .into(),
        _ => format!("{main_type}/{sub_type}").into(),
    }
}

fn transfer_decode(body: &[u8], encoding: TransferEncoding) -> Option<Cow<'_, [u8]>> {
    match encoding {
        TransferEncoding::Identity => Some(Cow::Borrowed(body)),
        TransferEncoding::QuotedPrintable => quoted_printable_decode(body).map(Cow::Owned),
        TransferEncoding::Base64 => base64_decode(body).map(Cow::Owned),
    }
}

/// The range of `part` inside `whole`, if `part` is a slice of it.
fn range_in(whole: &[u8], part: &[u8]) -> Option<Range<u32>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some(u32::try_from(start).ok()?..u32::try_from(end).ok()?)
}

/// `raw[range]`, or nothing if the range does not fit (it always does for the raw bytes
/// the view was parsed from).
fn slice<'r>(raw: &'r [u8], range: &Range<u32>) -> &'r [u8] {
    raw.get(range.start as usize..range.end as usize)
        .unwrap_or_default()
}

/// A header value unfolded, with RFC 2047 encoded words decoded (mail-parser's
/// unstructured-field parser, applied to every field so structured ones read as written).
fn decoded_header_value(raw_value: &[u8]) -> String {
    match MessageStream::new(raw_value).parse_unstructured() {
        HeaderValue::Text(text) => text.into_owned(),
        HeaderValue::TextList(texts) => texts.join(" "),
        HeaderValue::Empty => String::new(),
        _ => String::from_utf8_lossy(raw_value).trim().to_string(),
    }
}

/// Zeroes message content before its memory goes back to the allocator.
fn wipe_bytes(mut bytes: Vec<u8>) {
    for byte in bytes.iter_mut() {
        // SAFETY: `byte` is a valid, aligned, exclusive reference into a live allocation.
        // A volatile write is used so the compiler cannot drop these stores as dead (the
        // allocation is freed right after).
        unsafe { std::ptr::write_volatile(byte, 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_subject_date_and_preview() {
        let raw = b"Received: from x by y; Thu, 1 Jan 2026 00:00:00 +0000\r\n\
            Subject: =?utf-8?q?Hej_d=C3=A5?=\r\n\
            Date: Fri, 27 Nov 2026 22:15:44 +0000\r\n\r\n\
            Hello\r\n  world\r\n";
        let summary = Summary::parse(raw);
        assert_eq!(summary.subject, "Hej då");
        assert_eq!(summary.date_unix_secs, Some(1_795_817_744));
        assert_eq!(summary.preview, "Hello world");
        assert_eq!(ParsedMessage::parse(raw).0, summary);
    }

    #[test]
    fn preview_is_capped_in_characters() {
        let body = "é".repeat(500);
        let raw = format!("Subject: x\r\n\r\n{body}\r\n");
        assert_eq!(
            Summary::parse(raw.as_bytes()).preview.chars().count(),
            PREVIEW_CHARS_MAX
        );
    }

    const MIXED: &[u8] = b"From: =?iso-8859-1?q?J=F6rg?= <j@x.test>\r\n\
        SUBJECT: =?utf-8?b?SGVqIGTDpQ==?=\r\n\
        X-Folded: a\r\n  b\r\n\
        Content-Type: multipart/mixed; boundary=XX\r\n\r\n\
        preamble\r\n\
        --XX\r\n\
        Content-Type: multipart/alternative; boundary=YY\r\n\r\n\
        --YY\r\n\
        Content-Type: text/plain; charset=windows-1252\r\n\
        Content-Transfer-Encoding: quoted-printable\r\n\r\n\
        Caf=E9 =80 5\r\n\
        --YY\r\n\
        Content-Type: text/html; charset=utf-8\r\n\r\n\
        <p onclick=x()>Caf\xc3\xa9 <img src=\"cid:Logo@x\"><img src=\"http://evil.test/t.gif\"><script>alert(1)</script></p>\r\n\
        --YY--\r\n\
        --XX\r\n\
        Content-Type: image/png\r\n\
        Content-ID: <logo@x>\r\n\
        Content-Transfer-Encoding: base64\r\n\r\n\
        iVBORw0KGgo=\r\n\
        --XX\r\n\
        Content-Type: application/pdf; name=\"=?utf-8?q?r=C3=A9sum=C3=A9.pdf?=\"\r\n\
        Content-Disposition: attachment\r\n\
        Content-Transfer-Encoding: base64\r\n\r\n\
        JVBERi0xLjQK\r\n\
        AAEC/w==\r\n\
        --XX\r\n\
        Content-Type: text/plain; charset=iso-8859-1\r\n\
        Content-Disposition: attachment; filename*=iso-8859-1''caf%E9.txt\r\n\r\n\
        caf\xe9\r\n\
        --XX\r\n\
        Content-Type: message/rfc822\r\n\r\n\
        Subject: inner\r\n\r\ninner body\r\n\
        --XX--\r\n";

    #[test]
    fn parses_a_mixed_message() {
        let (summary, parsed) = ParsedMessage::parse(MIXED);
        assert_eq!(summary.subject, "Hej då");
        assert_eq!(summary.preview, "Café € 5");
        let headers: Vec<(String, String)> = parsed
            .headers(MIXED)
            .map(|(name, value)| (name.into_owned(), value))
            .collect();
        assert_eq!(
            headers[..3],
            [
                ("From".to_string(), "Jörg <j@x.test>".to_string()),
                ("SUBJECT".to_string(), "Hej då".to_string()),
                ("X-Folded".to_string(), "a b".to_string()),
            ]
        );
        assert_eq!(parsed.text(MIXED).as_deref(), Some("Café € 5"));
        let html = parsed.html("/att/").expect("html");
        assert_eq!(html, "<p>Café <img src=\"/att/0\"><img></p>");
        let summaries: Vec<(Option<&str>, &str, usize)> = parsed
            .attachments()
            .iter()
            .map(|a| (a.filename.as_deref(), &*a.content_type, a.size_bytes))
            .collect();
        assert_eq!(
            summaries,
            [
                (None, "image/png", 8),
                (Some("résumé.pdf"), "application/pdf", 13),
                (Some("café.txt"), "text/plain; charset=iso-8859-1", 4),
                (None, "message/rfc822", 28),
            ]
        );
        let expected: [&[u8]; 4] = [
            b"\x89PNG\r\n\x1a\n",
            b"%PDF-1.4\n\x00\x01\x02\xff",
            b"caf\xe9",
            b"Subject: inner\r\n\r\ninner body",
        ];
        for (index, expected) in expected.iter().enumerate() {
            assert_eq!(
                parsed.attachment_bytes(MIXED, index).as_deref(),
                Some(*expected),
                "attachment {index}"
            );
            assert_eq!(parsed.attachments()[index].size_bytes, expected.len());
        }
        assert_eq!(parsed.attachment_bytes(MIXED, 4), None);
        // Offsets, not copies: only the decoded text and the HTML are owned.
        assert!(parsed.heap_bytes() < 600, "{}", parsed.heap_bytes());
    }

    #[test]
    fn summaries_know_the_from_header_recipients_and_attachments() {
        let summary = Summary::parse(MIXED);
        assert_eq!(
            (summary.from_name.as_str(), summary.from_address.as_str()),
            ("Jörg", "j@x.test")
        );
        assert_eq!(summary.to_cc, "");
        assert_eq!(summary.has_attachments, Some(true));

        let raw = b"From: bare@x.test\r\nTo: =?utf-8?q?J=C3=B6rg?= <j@x.test>, k@x.test\r\n\
            Cc: Team: a@x.test, b@x.test;\r\n\r\nhi\r\n";
        let summary = Summary::parse(raw);
        assert_eq!(
            (summary.from_name.as_str(), summary.from_address.as_str()),
            ("", "bare@x.test")
        );
        assert_eq!(
            summary.to_cc,
            "Jörg <j@x.test>, k@x.test, a@x.test, b@x.test"
        );
        assert_eq!(summary.has_attachments, Some(false));
        assert_eq!(ParsedMessage::parse(raw).0, summary);

        // Past the part a summary reads, nothing is known: a text part cut open reads as
        // an attachment, and the rest is unread.
        let filler = "x".repeat(SUMMARY_PARSE_BYTES_MAX);
        let long = format!("Subject: long\r\n\r\n{filler}\r\n");
        assert_eq!(Summary::parse(long.as_bytes()).has_attachments, None);
        let attached_late = format!(
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n{filler}\r\n--b\r\n\
             Content-Disposition: attachment; filename=a.bin\r\n\r\nAAAA\r\n--b--\r\n"
        );
        assert_eq!(
            Summary::parse(attached_late.as_bytes()).has_attachments,
            None
        );
        let (_, parsed) = ParsedMessage::parse(attached_late.as_bytes());
        assert_eq!(parsed.attachments().len(), 1);
        let attached_early = format!(
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
             Content-Disposition: attachment; filename=a.bin\r\n\r\nAAAA\r\n--b\r\n\r\n{filler}\r\n--b--\r\n"
        );
        assert_eq!(
            Summary::parse(attached_early.as_bytes()).has_attachments,
            None
        );

        // A hostile To header is cut at a character boundary.
        let many: Vec<String> = (0..500)
            .map(|n| format!("Ünal {n} <u{n}@x.test>"))
            .collect();
        let raw = format!("To: {}\r\n\r\n", many.join(", "));
        let summary = Summary::parse(raw.as_bytes());
        assert!(summary.to_cc.len() <= TO_CC_BYTES_MAX);
        assert!(summary.to_cc.len() > TO_CC_BYTES_MAX - 30);
        assert!(
            summary
                .to_cc
                .starts_with("Ünal 0 <u0@x.test>, Ünal 1 <u1@x.test>")
        );
    }

    #[test]
    fn plain_text_is_a_slice_of_the_message() {
        let raw = b"Subject: x\r\n\r\nplain body\r\n";
        let (_, parsed) = ParsedMessage::parse(raw);
        assert!(matches!(parsed.text, Some(Body::Raw(_))));
        assert_eq!(parsed.text(raw).as_deref(), Some("plain body\r\n"));
        assert_eq!(parsed.html("/"), None);
        assert!(parsed.attachments().is_empty());
    }

    proptest::proptest! {
        /// Any bytes parse without panicking, and every listed attachment downloads with
        /// exactly its listed size.
        #[test]
        fn any_bytes_parse_consistently(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            prefix in proptest::sample::select(vec![
                &b""[..],
                b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Disposition: attachment\r\nContent-Transfer-Encoding: base64\r\n\r\n",
                b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
                b"Content-Type: text/html\r\n\r\n",
            ]),
        ) {
            let raw = [prefix, &raw[..]].concat();
            let (_, parsed) = ParsedMessage::parse(&raw);
            for (index, attachment) in parsed.attachments().iter().enumerate() {
                let bytes = parsed.attachment_bytes(&raw, index);
                proptest::prop_assert_eq!(bytes.map(|bytes| bytes.len()), Some(attachment.size_bytes));
            }
            let _ = parsed.headers(&raw).count();
            let _ = parsed.text(&raw);
            let _ = parsed.html("/x/");
        }
    }

    #[test]
    fn never_panics_on_garbage() {
        let inputs: [&[u8]; 6] = [
            b"",
            b"\r\n",
            b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n",
            b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment\r\n\r\n!!!!\r\n--a--",
            b"Content-Type: text/html\r\n\r\n<",
            b"\xff\xfe: \xff\r\n\r\n\xff",
        ];
        for raw in inputs {
            let (_, parsed) = ParsedMessage::parse(raw);
            for index in 0..parsed.attachments().len() {
                let bytes = parsed.attachment_bytes(raw, index).expect("listed");
                assert_eq!(bytes.len(), parsed.attachments()[index].size_bytes);
            }
            let _ = parsed.headers(raw).count();
            parsed.wipe();
        }
    }
}
