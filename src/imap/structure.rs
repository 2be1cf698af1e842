//! ENVELOPE and BODYSTRUCTURE (RFC 3501 7.4.2) from a message's MIME tree.
//!
//! Strings are the raw header values, unfolded, as IMAP4rev1 clients expect: they decode
//! RFC 2047 words themselves. The one exception is an address's display name, which
//! mail-parser hands us decoded; a non-ASCII one is encoded again as an RFC 2047 word so
//! the envelope stays 7-bit.

use std::ops::Range;

use mail_parser::parsers::MessageStream;
use mail_parser::{Addr, Address, HeaderValue};

use crate::imap::mime::{self, Content, Part};
use crate::imap::reply;

/// Appends the ENVELOPE of the message whose header is `raw[header]`.
pub fn write_envelope(out: &mut Vec<u8>, raw: &[u8], header: Range<usize>) {
    let fields = mime::fields(raw, header);
    let value = |name: &str| {
        fields
            .iter()
            .find(|field| raw[field.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|field| &raw[field.value.clone()])
    };
    out.push(b'(');
    write_unfolded(out, value("Date"));
    out.push(b' ');
    write_unfolded(out, value("Subject"));
    out.push(b' ');
    let from = value("From");
    write_addresses(out, from);
    for (name, fallback) in [
        ("Sender", from),
        ("Reply-To", from),
        ("To", None),
        ("Cc", None),
        ("Bcc", None),
    ] {
        out.push(b' ');
        // RFC 3501: an absent or empty Sender or Reply-To is shown as From.
        let own = value(name).filter(|value| !mime::trimmed(value).is_empty());
        write_addresses(out, own.or(fallback));
    }
    out.push(b' ');
    write_unfolded(out, value("In-Reply-To"));
    out.push(b' ');
    write_unfolded(out, value("Message-ID"));
    out.push(b')');
}

/// Appends BODYSTRUCTURE (`extensible`) or BODY of `part`.
pub fn write_body_structure(out: &mut Vec<u8>, raw: &[u8], part: &Part, extensible: bool) {
    out.push(b'(');
    match &part.content {
        Content::Multipart(children) => {
            for child in children {
                write_body_structure(out, raw, child, extensible);
            }
            out.push(b' ');
            reply::string(out, part.media_subtype.as_bytes());
            if extensible {
                out.push(b' ');
                write_params(out, &part.params);
                write_extension(out, raw, part);
            }
        }
        content => {
            let fields = mime::fields(raw, part.header.clone());
            let value = |name: &str| {
                fields
                    .iter()
                    .find(|field| raw[field.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
                    .map(|field| &raw[field.value.clone()])
            };
            reply::string(out, part.media_type.as_bytes());
            out.push(b' ');
            reply::string(out, part.media_subtype.as_bytes());
            out.push(b' ');
            write_params(out, &part.params);
            out.push(b' ');
            write_unfolded(out, value("Content-ID"));
            out.push(b' ');
            write_unfolded(out, value("Content-Description"));
            out.push(b' ');
            match value("Content-Transfer-Encoding").map(mime::trimmed) {
                Some(encoding) if !encoding.is_empty() => reply::string(out, encoding),
                _ => out.extend_from_slice(b"\"7BIT\""),
            }
            out.push(b' ');
            let body = &raw[part.body.clone()];
            reply::push_number(out, body.len() as u64);
            if let Content::Message(inner) = content {
                out.push(b' ');
                write_envelope(out, raw, inner.header.clone());
                out.push(b' ');
                write_body_structure(out, raw, inner, extensible);
                out.push(b' ');
                reply::push_number(out, count_lines(body));
            } else if part.media_type == "text" {
                out.push(b' ');
                reply::push_number(out, count_lines(body));
            }
            if extensible {
                out.push(b' ');
                write_unfolded(out, value("Content-MD5"));
                write_extension(out, raw, part);
            }
        }
    }
    out.push(b')');
}

/// ` disposition language location`, common to both kinds of part.
fn write_extension(out: &mut Vec<u8>, raw: &[u8], part: &Part) {
    let fields = mime::fields(raw, part.header.clone());
    let value = |name: &str| {
        fields
            .iter()
            .find(|field| raw[field.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|field| &raw[field.value.clone()])
    };
    out.push(b' ');
    let disposition =
        value("Content-Disposition").map(|value| MessageStream::new(value).parse_content_type());
    match disposition {
        Some(HeaderValue::ContentType(disposition)) => {
            out.push(b'(');
            reply::string(out, disposition.c_type.as_bytes());
            out.push(b' ');
            let params: Vec<(String, String)> = disposition
                .attributes
                .unwrap_or_default()
                .into_iter()
                .map(|attribute| (attribute.name.into_owned(), attribute.value.into_owned()))
                .collect();
            write_params(out, &params);
            out.push(b')');
        }
        _ => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    write_unfolded(out, value("Content-Language"));
    out.push(b' ');
    write_unfolded(out, value("Content-Location"));
}

/// `("name" "value" ...)` or NIL.
fn write_params(out: &mut Vec<u8>, params: &[(String, String)]) {
    if params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (param_idx, (name, value)) in params.iter().enumerate() {
        if param_idx > 0 {
            out.push(b' ');
        }
        reply::string(out, name.as_bytes());
        out.push(b' ');
        reply::string(out, value.as_bytes());
    }
    out.push(b')');
}

/// An unfolded raw value as an nstring; absent and empty values are NIL.
fn write_unfolded(out: &mut Vec<u8>, value: Option<&[u8]>) {
    let value = value.map(mime::unfolded);
    reply::nstring(out, value.as_deref().filter(|value| !value.is_empty()));
}

/// An address list, or NIL when the field is absent or names no address.
fn write_addresses(out: &mut Vec<u8>, value: Option<&[u8]>) {
    let mut list = Vec::new();
    if let Some(value) = value {
        match MessageStream::new(value).parse_address() {
            HeaderValue::Address(Address::List(addrs)) => {
                for addr in &addrs {
                    write_address(&mut list, addr);
                }
            }
            HeaderValue::Address(Address::Group(groups)) => {
                for group in &groups {
                    // RFC 3501 group syntax: a start marker with the name in the mailbox
                    // field, the members, and an end marker.
                    if let Some(name) = &group.name {
                        list.extend_from_slice(b"(NIL NIL ");
                        reply::string(&mut list, name.as_bytes());
                        list.extend_from_slice(b" NIL)");
                    }
                    for addr in &group.addresses {
                        write_address(&mut list, addr);
                    }
                    if group.name.is_some() {
                        list.extend_from_slice(b"(NIL NIL NIL NIL)");
                    }
                }
            }
            _ => {}
        }
    }
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
    } else {
        out.push(b'(');
        out.extend_from_slice(&list);
        out.push(b')');
    }
}

fn write_address(out: &mut Vec<u8>, addr: &Addr<'_>) {
    // A name without an address would read as a group marker; it carries nothing useful.
    let Some(address) = addr
        .address
        .as_deref()
        .filter(|address| !address.is_empty())
    else {
        return;
    };
    let (mailbox, host) = match address.rfind('@') {
        Some(at_idx) => (&address[..at_idx], &address[at_idx + 1..]),
        None => (address, ""),
    };
    out.push(b'(');
    match addr.name.as_deref().filter(|name| !name.is_empty()) {
        Some(name) if name.is_ascii() => reply::string(out, name.as_bytes()),
        Some(name) => reply::string(out, encoded_word(name).as_bytes()),
        None => out.extend_from_slice(b"NIL"),
    }
    out.extend_from_slice(b" NIL ");
    reply::string(out, mailbox.as_bytes());
    out.push(b' ');
    reply::string(out, host.as_bytes());
    out.push(b')');
}

/// Lines of a body: line ends, plus one for a last line without one.
fn count_lines(body: &[u8]) -> u64 {
    let n_line_ends = memchr::memchr_iter(b'\n', body).count() as u64;
    n_line_ends + u64::from(!body.is_empty() && !body.ends_with(b"\n"))
}

/// `text` as one RFC 2047 word: `=?utf-8?B?...?=`.
fn encoded_word(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut word = String::from("=?utf-8?B?");
    for chunk in text.as_bytes().chunks(3) {
        let bits = chunk.iter().enumerate().fold(0u32, |bits, (idx, &byte)| {
            bits | u32::from(byte) << (16 - 8 * idx)
        });
        for idx in 0..4 {
            if idx <= chunk.len() {
                word.push(ALPHABET[(bits >> (18 - 6 * idx) & 0x3f) as usize] as char);
            } else {
                word.push('=');
            }
        }
    }
    word.push_str("?=");
    word
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_words() {
        assert_eq!(encoded_word("é"), "=?utf-8?B?w6k=?=");
        assert_eq!(encoded_word("Zoë B"), "=?utf-8?B?Wm/DqyBC?=");
        assert_eq!(encoded_word("Zoë"), "=?utf-8?B?Wm/Dqw==?=");
    }

    #[test]
    fn envelope_of_a_simple_message() {
        let raw = b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nFrom: Fred <fred@example.test>\r\n\
                    Subject: =?utf-8?q?caf=C3=A9?=\r\nTo: a@x.test, \"B\" <b@y.test>\r\n\
                    Message-ID: <1@x>\r\n\r\nbody\r\n";
        let root = mime::parse_message(raw);
        let mut out = Vec::new();
        write_envelope(&mut out, raw, root.header.clone());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "(\"Mon, 7 Feb 1994 21:52:25 -0800\" \"=?utf-8?q?caf=C3=A9?=\" \
             ((\"Fred\" NIL \"fred\" \"example.test\")) ((\"Fred\" NIL \"fred\" \"example.test\")) \
             ((\"Fred\" NIL \"fred\" \"example.test\")) \
             ((NIL NIL \"a\" \"x.test\")(\"B\" NIL \"b\" \"y.test\")) NIL NIL NIL \"<1@x>\")"
        );
    }

    #[test]
    fn body_structure_of_a_text_message() {
        let raw = b"Subject: x\r\n\r\nline 1\r\nline 2\r\n";
        let root = mime::parse_message(raw);
        let mut out = Vec::new();
        write_body_structure(&mut out, raw, &root, false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 16 2)"
        );
    }
}
