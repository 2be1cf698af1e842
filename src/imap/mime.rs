//! A message's MIME tree as IMAP addresses it: byte ranges of every part's header and
//! body in the raw message, for BODY[section] and BODYSTRUCTURE.
//!
//! The tree is cut here, not taken from mail-parser's `Message`: IMAP needs exact octet
//! ranges in the stored bytes (a part's body ends before the CRLF that precedes the next
//! boundary, RFC 2046 5.1.1), and mail-parser's offsets are made for its own views (they
//! move for encoded parts and nested messages). mail-parser still parses every header
//! value we read (Content-Type and its RFC 2231 parameters, addresses, dates, encoded
//! words), through its field parsers on the raw value bytes.
//!
//! Hostile structure is bounded: at most `MIME_NESTING_MAX` levels of containers and
//! `MIME_PARTS_MAX` parts; deeper containers are shown as opaque leaves.

use std::borrow::Cow;
use std::ops::Range;

use mail_parser::HeaderValue;
use mail_parser::parsers::MessageStream;
use memchr::memmem;

/// Deepest nesting of multipart and message/rfc822 parts that is descended into. Six keeps
/// every BODYSTRUCTURE within imap-codec's parser limit (and real mail rarely nests past
/// four: mixed, alternative, related, and a forwarded message).
pub const MIME_NESTING_MAX: usize = 6;
/// Most parts of one message that are cut out; later siblings are left out of the tree.
pub const MIME_PARTS_MAX: usize = 500;

/// One MIME part (or the whole message, or an encapsulated message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The header, with the blank line that ends it.
    pub header: Range<usize>,
    pub body: Range<usize>,
    /// Lowercase media type and subtype (`text`, `plain` when the part names none).
    pub media_type: String,
    pub media_subtype: String,
    /// Content-Type parameters, RFC 2231 continuations joined (mail-parser's decoding).
    pub params: Vec<(String, String)>,
    pub content: Content,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Leaf,
    Multipart(Vec<Part>),
    /// A message/rfc822 part: the encapsulated message (header and body) as a part.
    Message(Box<Part>),
}

/// What a section names after its part number (RFC 3501 6.4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    Header,
    HeaderFields(Vec<Vec<u8>>),
    HeaderFieldsNot(Vec<Vec<u8>>),
    Text,
    Mime,
}

/// A `BODY[section]` specifier. An empty `part` is the whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

/// One header field: byte ranges into the raw message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: Range<usize>,
    /// After the colon, through the field's last line end (what mail-parser's field
    /// parsers expect).
    pub value: Range<usize>,
    /// The whole field, continuation lines and final line end included.
    pub whole: Range<usize>,
}

/// Cuts `raw` into its MIME tree.
pub fn parse_message(raw: &[u8]) -> Part {
    let mut n_parts = 0;
    parse_part(raw, 0..raw.len(), DefaultType::Text, 0, &mut n_parts)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DefaultType {
    Text,
    /// Inside multipart/digest, a part without Content-Type is message/rfc822.
    Message,
}

fn parse_part(
    raw: &[u8],
    range: Range<usize>,
    default_type: DefaultType,
    depth: usize,
    n_parts: &mut usize,
) -> Part {
    *n_parts += 1;
    let (header, body) = split_header(raw, range);
    let mut part = Part {
        header: header.clone(),
        body: body.clone(),
        media_type: String::new(),
        media_subtype: String::new(),
        params: Vec::new(),
        content: Content::Leaf,
    };
    let mut identity_encoding = true;
    for field in fields(raw, header) {
        let name = &raw[field.name.clone()];
        if name.eq_ignore_ascii_case(b"Content-Type") && part.media_type.is_empty() {
            if let HeaderValue::ContentType(content_type) =
                MessageStream::new(&raw[field.value.clone()]).parse_content_type()
            {
                part.media_type = content_type.c_type.to_ascii_lowercase();
                part.media_subtype = content_type
                    .c_subtype
                    .as_deref()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                part.params = content_type
                    .attributes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|attribute| (attribute.name.into_owned(), attribute.value.into_owned()))
                    .collect();
            }
        } else if name.eq_ignore_ascii_case(b"Content-Transfer-Encoding") {
            let value = trimmed(&raw[field.value.clone()]);
            identity_encoding = ["7bit", "8bit", "binary"]
                .iter()
                .any(|identity| value.eq_ignore_ascii_case(identity.as_bytes()));
        }
    }
    if part.media_type.is_empty() || part.media_subtype.is_empty() {
        let (media_type, media_subtype) = match default_type {
            DefaultType::Text => ("text", "plain"),
            DefaultType::Message => ("message", "rfc822"),
        };
        part.media_type = media_type.to_string();
        part.media_subtype = media_subtype.to_string();
        if default_type == DefaultType::Text {
            part.params = vec![("charset".to_string(), "us-ascii".to_string())];
        }
    }
    let is_container = part.media_type == "multipart" || is_message_rfc822(&part);
    if !is_container {
        return part;
    }
    let boundary = param(&part.params, "boundary").map(|boundary| boundary.as_bytes().to_vec());
    let descend = depth < MIME_NESTING_MAX && *n_parts < MIME_PARTS_MAX;
    match boundary {
        Some(boundary) if descend && part.media_type == "multipart" && !boundary.is_empty() => {
            let child_default = if part.media_subtype == "digest" {
                DefaultType::Message
            } else {
                DefaultType::Text
            };
            let mut children = Vec::new();
            for child_range in split_multipart(raw, body.clone(), &boundary) {
                if *n_parts >= MIME_PARTS_MAX {
                    break;
                }
                children.push(parse_part(
                    raw,
                    child_range,
                    child_default,
                    depth + 1,
                    n_parts,
                ));
            }
            if children.is_empty() {
                // BODYSTRUCTURE needs at least one part: an empty text part at the body.
                let empty = body.start..body.start;
                children.push(parse_part(
                    raw,
                    empty,
                    DefaultType::Text,
                    depth + 1,
                    n_parts,
                ));
            }
            part.content = Content::Multipart(children);
        }
        None if descend && is_message_rfc822(&part) && identity_encoding => {
            part.content = Content::Message(Box::new(parse_part(
                raw,
                body,
                DefaultType::Text,
                depth + 1,
                n_parts,
            )));
        }
        _ => {
            // A container we do not open (too deep, no boundary, encoded message): shown
            // as opaque data, since its type would promise structure that is not there.
            part.media_type = "application".to_string();
            part.media_subtype = "octet-stream".to_string();
        }
    }
    part
}

fn is_message_rfc822(part: &Part) -> bool {
    part.media_type == "message" && matches!(part.media_subtype.as_str(), "rfc822" | "global")
}

/// A parameter's value by case-insensitive name.
pub fn param<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(param_name, _)| param_name.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// Splits `range` of `raw` into header (through the blank line) and body. Without a
/// blank line everything is header.
pub fn split_header(raw: &[u8], range: Range<usize>) -> (Range<usize>, Range<usize>) {
    let bytes = &raw[range.clone()];
    let mut line_start = 0;
    loop {
        let rest = &bytes[line_start..];
        let blank_bytes = if rest.starts_with(b"\r\n") {
            2
        } else if rest.starts_with(b"\n") {
            1
        } else {
            0
        };
        if blank_bytes > 0 {
            let split = range.start + line_start + blank_bytes;
            return (range.start..split, split..range.end);
        }
        match memchr::memchr(b'\n', rest) {
            Some(lf_idx) => line_start += lf_idx + 1,
            None => return (range.clone(), range.end..range.end),
        }
    }
}

/// The fields of a header block (`split_header`'s first range). Lines that are neither a
/// field nor a continuation are skipped.
pub fn fields(raw: &[u8], header: Range<usize>) -> Vec<Field> {
    let mut fields: Vec<Field> = Vec::new();
    let mut line_start = header.start;
    while line_start < header.end {
        let line_end = memchr::memchr(b'\n', &raw[line_start..header.end])
            .map_or(header.end, |lf_idx| line_start + lf_idx + 1);
        let line = &raw[line_start..line_end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            if let Some(field) = fields.last_mut()
                && field.whole.end == line_start
            {
                field.whole.end = line_end;
                field.value.end = line_end;
            }
        } else if let Some(colon_idx) = line.iter().position(|&b| b == b':') {
            let name = trimmed(&line[..colon_idx]);
            if !name.is_empty() {
                fields.push(Field {
                    name: line_start..line_start + name.len(),
                    value: line_start + colon_idx + 1..line_end,
                    whole: line_start..line_end,
                });
            }
        }
        line_start = line_end;
    }
    fields
}

/// A raw header value unfolded (line ends removed) and trimmed, as ENVELOPE and
/// BODYSTRUCTURE show it.
pub fn unfolded(value: &[u8]) -> Cow<'_, [u8]> {
    let value = trimmed(value);
    if memchr::memchr2(b'\r', b'\n', value).is_none() {
        return Cow::Borrowed(value);
    }
    Cow::Owned(
        value
            .iter()
            .copied()
            .filter(|&b| b != b'\r' && b != b'\n')
            .collect(),
    )
}

/// `bytes` without leading and trailing whitespace (CR and LF included).
pub fn trimmed(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |idx| idx + 1);
    &bytes[start..end]
}

/// The octets a section names (RFC 3501 6.4.5). A part number that does not exist gives
/// an empty string, as in Dovecot; HEADER, TEXT and HEADER.FIELDS of a part that is not
/// message/rfc822 too.
pub fn section_bytes<'r>(raw: &'r [u8], root: &Part, section: &Section) -> Cow<'r, [u8]> {
    let empty = Cow::Borrowed(&raw[..0]);
    let target = if section.part.is_empty() {
        Some(root)
    } else {
        let mut children = message_children(root);
        let mut selected = None;
        for &number in &section.part {
            let Some(part) = children.get((number as usize).wrapping_sub(1)) else {
                return empty;
            };
            selected = Some(part);
            children = part_children(part);
        }
        selected
    };
    let Some(part) = target else {
        return empty;
    };
    // HEADER/TEXT of a part address the encapsulated message; of the root, the message.
    let message = if section.part.is_empty() {
        Some(part)
    } else {
        match &part.content {
            Content::Message(inner) => Some(&**inner),
            _ => None,
        }
    };
    match &section.text {
        None if section.part.is_empty() => Cow::Borrowed(raw),
        None => Cow::Borrowed(&raw[part.body.clone()]),
        Some(SectionText::Mime) => Cow::Borrowed(&raw[part.header.clone()]),
        Some(SectionText::Header) => {
            message.map_or(empty, |m| Cow::Borrowed(&raw[m.header.clone()]))
        }
        Some(SectionText::Text) => message.map_or(empty, |m| Cow::Borrowed(&raw[m.body.clone()])),
        Some(SectionText::HeaderFields(names)) => message.map_or(empty, |m| {
            Cow::Owned(header_subset(raw, m.header.clone(), names, true))
        }),
        Some(SectionText::HeaderFieldsNot(names)) => message.map_or(empty, |m| {
            Cow::Owned(header_subset(raw, m.header.clone(), names, false))
        }),
    }
}

/// The parts numbered 1, 2, ... inside a message: a multipart's children, or the message
/// itself (its body is part 1).
fn message_children(message: &Part) -> &[Part] {
    match &message.content {
        Content::Multipart(children) => children,
        _ => std::slice::from_ref(message),
    }
}

fn part_children(part: &Part) -> &[Part] {
    match &part.content {
        Content::Multipart(children) => children,
        Content::Message(inner) => message_children(inner),
        Content::Leaf => &[],
    }
}

/// The fields named (or, with `keep == false`, not named) in `names`, in message order,
/// then the blank line (RFC 3501: the subset is a header and ends like one).
fn header_subset(raw: &[u8], header: Range<usize>, names: &[Vec<u8>], keep: bool) -> Vec<u8> {
    let mut subset = Vec::new();
    for field in fields(raw, header) {
        let name = &raw[field.name.clone()];
        let named = names.iter().any(|wanted| wanted.eq_ignore_ascii_case(name));
        if named == keep {
            subset.extend_from_slice(&raw[field.whole.clone()]);
            if !subset.ends_with(b"\n") {
                subset.extend_from_slice(b"\r\n");
            }
        }
    }
    subset.extend_from_slice(b"\r\n");
    subset
}

/// The body ranges of a multipart's parts (RFC 2046 5.1.1): each starts after its
/// delimiter line and ends before the line end that precedes the next delimiter. The
/// preamble and epilogue are not parts; a missing close delimiter ends the last part at
/// the end of the body.
fn split_multipart(raw: &[u8], body: Range<usize>, boundary: &[u8]) -> Vec<Range<usize>> {
    let mut delimiter = b"--".to_vec();
    delimiter.extend_from_slice(boundary);
    let bytes = &raw[body.clone()];
    let mut parts = Vec::new();
    let mut part_start: Option<usize> = None;
    for offset in memmem::find_iter(bytes, &delimiter) {
        if offset > 0 && bytes[offset - 1] != b'\n' {
            continue;
        }
        let mut after = offset + delimiter.len();
        let close = bytes[after..].starts_with(b"--");
        if close {
            after += 2;
        }
        while after < bytes.len() && matches!(bytes[after], b' ' | b'\t') {
            after += 1;
        }
        let line_end = if after == bytes.len() {
            after
        } else if bytes[after..].starts_with(b"\r\n") {
            after + 2
        } else if bytes[after] == b'\n' {
            after + 1
        } else {
            // A longer boundary that starts with ours, or text: not a delimiter.
            continue;
        };
        if let Some(start) = part_start {
            let mut end = offset;
            if end > start && bytes[end - 1] == b'\n' {
                end -= 1;
                if end > start && bytes[end - 1] == b'\r' {
                    end -= 1;
                }
            }
            parts.push(body.start + start..body.start + end);
        }
        if close {
            return parts;
        }
        part_start = Some(line_end);
    }
    if let Some(start) = part_start {
        parts.push(body.start + start..body.end);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIXED: &[u8] = b"From: a@example.test\r\n\
        Content-Type: multipart/mixed; boundary=\"XX\"\r\n\
        \r\n\
        preamble\r\n\
        --XX\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        \r\n\
        hello\r\n\
        --XX\r\n\
        Content-Type: message/rfc822\r\n\
        \r\n\
        Subject: inner\r\n\
        \r\n\
        inner body\r\n\
        --XX--\r\n\
        epilogue\r\n";

    fn text(raw: &[u8], part: &[u32], text: Option<SectionText>) -> String {
        let root = parse_message(raw);
        let section = Section {
            part: part.to_vec(),
            text,
        };
        String::from_utf8(section_bytes(raw, &root, &section).into_owned()).unwrap()
    }

    #[test]
    fn sections_of_a_mixed_message() {
        assert_eq!(text(MIXED, &[1], None), "hello");
        assert_eq!(
            text(MIXED, &[1], Some(SectionText::Mime)),
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        );
        assert_eq!(text(MIXED, &[2], None), "Subject: inner\r\n\r\ninner body");
        assert_eq!(
            text(MIXED, &[2], Some(SectionText::Header)),
            "Subject: inner\r\n\r\n"
        );
        assert_eq!(text(MIXED, &[2], Some(SectionText::Text)), "inner body");
        assert_eq!(text(MIXED, &[2, 1], None), "inner body");
        assert_eq!(text(MIXED, &[3], None), "");
        assert_eq!(text(MIXED, &[1, 1], None), "");
        assert_eq!(
            text(
                MIXED,
                &[],
                Some(SectionText::HeaderFields(vec![b"from".to_vec()]))
            ),
            "From: a@example.test\r\n\r\n"
        );
        assert!(text(MIXED, &[], Some(SectionText::Text)).starts_with("preamble\r\n--XX\r\n"));
        let root = parse_message(MIXED);
        assert_eq!(root.media_type, "multipart");
        let Content::Multipart(children) = &root.content else {
            panic!("not multipart")
        };
        assert_eq!(children.len(), 2);
        assert_eq!(param(&children[0].params, "CHARSET"), Some("utf-8"));
    }

    #[test]
    fn single_part_message() {
        let raw = b"Subject: x\r\n\r\nbody\r\n";
        assert_eq!(text(raw, &[1], None), "body\r\n");
        assert_eq!(text(raw, &[], Some(SectionText::Text)), "body\r\n");
        assert_eq!(
            text(raw, &[], Some(SectionText::Header)),
            "Subject: x\r\n\r\n"
        );
        let no_body = b"Subject: x\r\n";
        assert_eq!(
            text(no_body, &[], Some(SectionText::Header)),
            "Subject: x\r\n"
        );
        assert_eq!(text(no_body, &[], Some(SectionText::Text)), "");
    }

    #[test]
    fn header_fields_keep_continuations() {
        let raw = b"Subject: a\r\n b\r\nTo: c\r\nX: d\r\n\r\nbody";
        let names = vec![b"SUBJECT".to_vec(), b"x".to_vec()];
        assert_eq!(
            text(raw, &[], Some(SectionText::HeaderFields(names.clone()))),
            "Subject: a\r\n b\r\nX: d\r\n\r\n"
        );
        assert_eq!(
            text(raw, &[], Some(SectionText::HeaderFieldsNot(names))),
            "To: c\r\n\r\n"
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let mut raw = Vec::new();
        for level in 0..20 {
            raw.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{level}\r\n\r\n--b{level}\r\n")
                    .as_bytes(),
            );
        }
        raw.extend_from_slice(b"\r\ndeep\r\n");
        let mut part = &parse_message(&raw);
        let mut depth = 0;
        while let Content::Multipart(children) = &part.content {
            part = &children[0];
            depth += 1;
        }
        assert_eq!(depth, MIME_NESTING_MAX);
        assert_eq!(part.media_type, "application");
    }
}
