//! The JSON views of the API (`docs/api.md`): listings, summaries, the message view and
//! attachment downloads, serialized straight from borrowed store data and the shard's
//! `mail::ViewCache`, with no intermediate `serde_json::Value`.

use std::borrow::Cow;

use crate::http::response::Response;
use crate::mail::{HtmlOmitted, ParsedMessage, Summary};
use crate::store::{MessageId, MessageRef};

/// Longest file name offered in a Content-Disposition, in characters (longer names are cut).
pub const FILENAME_CHARS_MAX: usize = 200;
/// Security policy of attachment downloads: an HTML or SVG attachment opened in the browser
/// anyway runs nothing and loads nothing on this origin.
pub(super) const ATTACHMENT_CSP: &str = "sandbox; default-src 'none'";

/// A message `<summary>` as JSON text, as in a listing: one WebSocket frame.
pub fn summary_text(message: &MessageRef<'_>, summary: &Summary) -> String {
    serde_json::to_string(&SummaryJson::of(message, summary)).unwrap_or_else(|_| "null".to_string())
}

/// The body of an inbox listing, serialized straight from the shard's memory.
#[derive(serde::Serialize)]
pub(super) struct ListingJson<'a> {
    pub address: &'a str,
    pub total: usize,
    pub messages: Vec<SummaryJson<'a>>,
    pub next_after: Option<IdJson>,
}

/// A `<summary>`, borrowing everything from the store and its cached `Summary`.
#[derive(serde::Serialize)]
pub(super) struct SummaryJson<'a> {
    id: IdJson,
    from: &'a str,
    header_from: Option<HeaderFromJson<'a>>,
    to: RcptsJson<'a>,
    subject: &'a str,
    date: Option<Rfc3339>,
    received_at: Rfc3339,
    expires_at: Rfc3339,
    size: usize,
    preview: &'a str,
    seen: bool,
    /// The `+tag` of the address the message came to (`--plus-addressing`); `null`
    /// without one.
    tag: Option<&'a str>,
}

impl<'a> SummaryJson<'a> {
    pub fn of(message: &MessageRef<'a>, summary: &'a Summary) -> SummaryJson<'a> {
        SummaryJson {
            id: IdJson(message.id),
            from: message.mail_from,
            header_from: (!summary.from_address.is_empty()).then(|| HeaderFromJson {
                name: (!summary.from_name.is_empty()).then_some(summary.from_name.as_str()),
                address: &summary.from_address,
            }),
            to: RcptsJson(*message),
            subject: &summary.subject,
            date: summary.date_unix_secs.and_then(Rfc3339::of_secs),
            received_at: Rfc3339::of_ms(message.received_at_ms),
            expires_at: Rfc3339::of_ms(message.expires_at_ms),
            size: message.raw.len(),
            preview: &summary.preview,
            seen: message.seen,
            tag: message.rcpts().find_map(crate::address::plus_tag),
        }
    }
}

/// The From header's first mailbox in a `<summary>`.
#[derive(serde::Serialize)]
struct HeaderFromJson<'a> {
    name: Option<&'a str>,
    address: &'a str,
}

/// A message id as its text form, written without an intermediate `String`.
pub(super) struct IdJson(pub MessageId);

impl serde::Serialize for IdJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// The envelope recipients of the message's inbox, as a JSON array.
struct RcptsJson<'a>(MessageRef<'a>);

impl serde::Serialize for RcptsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.rcpts())
    }
}

/// An RFC 3339 UTC timestamp with seconds precision ("2026-11-27T22:15:44Z"), built on
/// the stack: listing 1000 messages formats 2000-3000 of these.
#[derive(Clone, Copy)]
pub(super) struct Rfc3339([u8; 20]);

impl Rfc3339 {
    /// Years outside 0000-9999 (which RFC 3339 cannot express) give `None`.
    pub fn of_secs(unix_secs: i64) -> Option<Rfc3339> {
        let days = unix_secs.div_euclid(86_400);
        let second_of_day = unix_secs.rem_euclid(86_400);
        let (year, month, day) = crate::clock::civil_from_days(days);
        if !(0..=9999).contains(&year) {
            return None;
        }
        let mut text = *b"0000-00-00T00:00:00Z";
        let mut put = |at: usize, value: i64, n_digits: usize| {
            let mut value = value;
            for digit_idx in (0..n_digits).rev() {
                text[at + digit_idx] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, year, 4);
        put(5, i64::from(month), 2);
        put(8, i64::from(day), 2);
        put(11, second_of_day / 3600, 2);
        put(14, second_of_day / 60 % 60, 2);
        put(17, second_of_day % 60, 2);
        Some(Rfc3339(text))
    }

    pub fn of_ms(unix_ms: u64) -> Rfc3339 {
        i64::try_from(unix_ms / 1000)
            .ok()
            .and_then(Rfc3339::of_secs)
            .unwrap_or(Rfc3339(*b"9999-12-31T23:59:59Z"))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.0).unwrap_or("9999-12-31T23:59:59Z")
    }
}

impl serde::Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The URL path of the attachments of `message` as seen from its inbox, up to and
/// including the last `/` (the index follows). The address is percent-encoded except for
/// unreserved characters and `@`, so the path can go into an HTML attribute as it is.
pub fn attachments_path(message: &MessageRef<'_>) -> String {
    let mut path = String::from("/api/v1/inboxes/");
    for byte in message.inbox_key().as_str().bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~@".contains(&byte) {
            path.push(char::from(byte));
        } else {
            path.push_str(&format!("%{byte:02X}"));
        }
    }
    path.push_str(&format!("/messages/{}/attachments/", message.id));
    path
}

/// The message view, borrowing from the store and its cached parse.
#[derive(serde::Serialize)]
pub(super) struct MessageJson<'a> {
    #[serde(flatten)]
    summary: SummaryJson<'a>,
    headers: Vec<(Cow<'a, str>, String)>,
    text: Option<Cow<'a, str>>,
    html: Option<String>,
    html_omitted: Option<&'static str>,
    attachments: Vec<AttachmentJson<'a>>,
    /// Our sender checks (`--verify-senders annotate`), read back from our own
    /// `Authentication-Results` header, which is the message's first field when present
    /// (we prepend it before our Received header; a sender's own come later).
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<crate::auth::AuthResults>,
    /// rspamd's verdict (`--rspamd`), read back from our `X-Spam-*` fields, which sit
    /// above our Received header (a sender's own come below it).
    #[serde(skip_serializing_if = "Option::is_none")]
    spam: Option<crate::spam::Verdict>,
    /// Likely one-time codes, most likely first, and every http(s) link.
    codes: &'a [crate::mail::extract::Code],
    links: &'a [crate::mail::extract::Link],
}

impl<'a> MessageJson<'a> {
    pub fn of(
        message: &MessageRef<'a>,
        summary: &'a Summary,
        parsed: &'a ParsedMessage,
    ) -> MessageJson<'a> {
        MessageJson {
            summary: SummaryJson::of(message, summary),
            auth: parsed
                .headers(message.raw)
                .next()
                .filter(|(name, _)| name.eq_ignore_ascii_case("Authentication-Results"))
                .and_then(|(_, value)| crate::auth::header::parse_ours(&value)),
            spam: {
                let ours: Vec<(Cow<'a, str>, String)> = parsed
                    .headers(message.raw)
                    .take_while(|(name, _)| !name.eq_ignore_ascii_case("Received"))
                    .collect();
                crate::spam::parse_ours(ours.iter().map(|(name, value)| (&**name, value.as_str())))
            },
            headers: parsed.headers(message.raw).collect(),
            codes: &parsed.extracted().codes,
            links: &parsed.extracted().links,
            text: parsed.text(message.raw),
            html: parsed.html(&attachments_path(message)),
            html_omitted: parsed.html_omitted().map(HtmlOmitted::as_str),
            attachments: parsed
                .attachments()
                .iter()
                .enumerate()
                .map(|(index, attachment)| AttachmentJson {
                    index,
                    filename: attachment.filename.as_deref(),
                    content_type: &attachment.content_type,
                    size: attachment.size_bytes,
                })
                .collect(),
        }
    }
}

/// One entry of a message view's `attachments`.
#[derive(serde::Serialize)]
struct AttachmentJson<'a> {
    index: usize,
    filename: Option<&'a str>,
    content_type: &'a str,
    size: usize,
}

/// The download of attachment `index` of `message`, or a 404.
pub(super) fn attachment_response(
    message: &MessageRef<'_>,
    parsed: &ParsedMessage,
    index: Option<usize>,
) -> Response {
    let found = index.and_then(|index| {
        let attachment = parsed.attachments().get(index)?;
        Some((
            index,
            attachment,
            parsed.attachment_bytes(message.raw, index)?,
        ))
    });
    let Some((index, attachment, bytes)) = found else {
        return Response::error(404, "not_found", "no such attachment in this message");
    };
    let filename = match attachment.filename.as_deref() {
        Some(filename) => filename.to_string(),
        None if attachment.content_type.starts_with("message/rfc822") => {
            format!("attachment-{index}.eml")
        }
        None => format!("attachment-{index}"),
    };
    // The content type is dynamic, so it goes in as a header field (an empty
    // `content_type` writes none of its own).
    Response::new(200, "", bytes.into_owned())
        .with_header("Content-Type", attachment.content_type.to_string())
        .with_header("Content-Disposition", content_disposition(&filename))
        .with_header("Content-Security-Policy", ATTACHMENT_CSP)
        .with_header("Cache-Control", "no-store")
}

/// `attachment; filename="..."` with an ASCII fallback in which quotes, backslashes, path
/// separators, controls and non-ASCII characters are `_`, plus RFC 6266 / RFC 8187
/// `filename*=UTF-8''...` when the fallback differs from the name.
pub(super) fn content_disposition(filename: &str) -> String {
    let name: String = filename
        .chars()
        .filter(|ch| !ch.is_control())
        .map(|ch| if matches!(ch, '/' | '\\') { '_' } else { ch })
        .take(FILENAME_CHARS_MAX)
        .collect();
    let fallback: String = name
        .chars()
        .map(|ch| {
            if ch.is_ascii() && ch != '"' && ch != '%' {
                ch
            } else {
                '_'
            }
        })
        .collect();
    let mut header = format!("attachment; filename=\"{fallback}\"");
    if fallback != name {
        header.push_str("; filename*=UTF-8''");
        for byte in name.bytes() {
            // RFC 8187 attr-char.
            if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
                header.push(char::from(byte));
            } else {
                header.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    header
}

/// RFC 3339 UTC with seconds precision, e.g. `2026-11-27T22:15:44Z`. Times past year 9999
/// are shown as its last second.
pub fn rfc3339(unix_ms: u64) -> String {
    Rfc3339::of_ms(unix_ms).as_str().to_string()
}
