//! The HTML of a message, made safe to show in a browser: `ammonia` with a policy for mail.
//!
//! Mail HTML comes from anyone who can send to an address, and the web page shows it on
//! the server's own origin, so nothing in it may run or phone home:
//! - no scripts, event handlers, forms, frames, objects, `<style>`/`<link>`/`<meta>`/`<base>`
//!   (ammonia's allow-list of tags and attributes: everything not listed is dropped, and the
//!   content of `<script>` and `<style>` with it);
//! - links only to `http:`, `https:` and `mailto:`; every `<a>` gets
//!   `rel="noopener noreferrer"` and `target="_blank"`; relative URLs are dropped (they
//!   would point into this server);
//! - no remote loads: an `<img src>` survives only as a `cid:` reference to an attachment
//!   of the same message, rewritten to a marker (`ATTACHMENT_URL_MARKER` + index) that
//!   the caller replaces with the attachment's URL at read time (the URL contains the inbox
//!   address, and one stored message can be read from several inboxes);
//! - `style` attributes keep only layout and typography properties, and a whole attribute is
//!   dropped if it mentions `url(`, `expression`, `@import`, a CSS escape or a script scheme.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use ammonia::{Builder, UrlRelative};

/// What a `cid:` image source becomes, followed by the attachment's index. Its scheme is
/// not an allowed one, so a message cannot write it itself (ammonia drops such URLs before
/// our rewrite runs).
pub const ATTACHMENT_URL_MARKER: &str = "mayfly-attachment:";

/// Strings that must never appear (compared in lowercase) in sanitized HTML of hostile
/// input: elements that run or load something, script schemes, CSS that loads, attributes
/// that load, this server's API paths and our own attachment marker where the input wrote
/// it. Shared by the unit tests here and `tests/http_messages.rs`.
#[doc(hidden)]
pub const SANITIZED_FORBIDDEN: &[&str] = &[
    "<script",
    "javascript",
    "vbscript",
    "data:",
    "<iframe",
    "<object",
    "<embed",
    "<form",
    "<input",
    "<button",
    "<meta",
    "<base",
    "<link",
    "<style",
    "<svg",
    "<math",
    "@import",
    "expression",
    "url(",
    "src=",
    "evil.test",
    "background=",
    "srcset",
    "poster",
    "ping=",
    "onerror",
    "onload",
    "/api/v1",
    "mayfly-attachment",
];

/// Schemes a link may use. `cid:` is let through ammonia's scheme check only so that the
/// attribute filter can rewrite it (on `<img src>`) or drop it (anywhere else).
const URL_SCHEMES: [&str; 4] = ["http", "https", "mailto", "cid"];

/// CSS properties a `style` attribute may keep: colours, fonts, spacing and sizes. Nothing
/// that can load a resource (`background`, `background-image`, `list-style-image`,
/// `content`, `cursor`) or lay a box over the page (`position`, `z-index`).
const STYLE_PROPERTIES: [&str; 39] = [
    "border",
    "border-bottom",
    "border-collapse",
    "border-color",
    "border-left",
    "border-radius",
    "border-right",
    "border-spacing",
    "border-style",
    "border-top",
    "border-width",
    "background-color",
    "color",
    "direction",
    "display",
    "font",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "height",
    "letter-spacing",
    "line-height",
    "margin",
    "margin-bottom",
    "margin-left",
    "margin-right",
    "margin-top",
    "max-width",
    "min-width",
    "padding",
    "padding-bottom",
    "padding-left",
    "padding-right",
    "padding-top",
    "text-align",
    "text-decoration",
    "vertical-align",
    "width",
];

/// Text that disqualifies a whole `style` attribute (compared in lowercase). CSS escapes
/// (`\`) are refused because they could spell any of the others.
const STYLE_FORBIDDEN: [&str; 10] = [
    "url(",
    "expression",
    "@import",
    "\\",
    "javascript:",
    "vbscript:",
    "behavior",
    "binding",
    "image-set",
    "image(",
];

/// Presentational attributes that old-style mail layouts rely on, per tag.
const TABLE_ATTRIBUTES: [(&str, &[&str]); 4] = [
    (
        "table",
        &["bgcolor", "border", "cellpadding", "cellspacing", "width"],
    ),
    ("td", &["bgcolor", "valign", "width", "height"]),
    ("th", &["bgcolor", "valign", "width", "height"]),
    ("tr", &["bgcolor", "valign"]),
];

/// Cleans `html` with the mail policy above. `content_ids` maps a Content-ID (without its
/// angle brackets, lowercase) to the index of the attachment carrying it; an image whose
/// `cid:` names no attachment loses its `src`.
pub fn sanitize_html(html: &str, content_ids: HashMap<String, usize>) -> String {
    let mut builder = Builder::default();
    builder
        .url_schemes(HashSet::from(URL_SCHEMES))
        .url_relative(UrlRelative::Deny)
        .add_generic_attributes(["style"])
        .filter_style_properties(HashSet::from(STYLE_PROPERTIES))
        .set_tag_attribute_value("a", "target", "_blank")
        .attribute_filter(move |element, attribute, value| {
            filter_attribute(element, attribute, value, &content_ids)
        });
    for (tag, attributes) in TABLE_ATTRIBUTES {
        builder.add_tag_attributes(tag, attributes.iter().copied());
    }
    builder.clean(html).to_string()
}

/// Runs after ammonia's allow-list and scheme checks, before relative URLs are dropped.
fn filter_attribute<'v>(
    element: &str,
    attribute: &str,
    value: &'v str,
    content_ids: &HashMap<String, usize>,
) -> Option<Cow<'v, str>> {
    match attribute {
        "src" => {
            // Only inline images of this message; remote images would tell the sender
            // that (and when, and from where) the mail was read.
            let content_id = strip_prefix_ignore_case(value.trim(), "cid:")?;
            let index = content_ids.get(&content_id_key(content_id))?;
            (element == "img").then(|| Cow::Owned(format!("{ATTACHMENT_URL_MARKER}{index}")))
        }
        "href" | "xlink:href" | "cite" => {
            if strip_prefix_ignore_case(value.trim(), "cid:").is_some() {
                None
            } else {
                Some(Cow::Borrowed(value))
            }
        }
        "style" => {
            let lowercase = value.to_ascii_lowercase();
            if STYLE_FORBIDDEN
                .iter()
                .any(|forbidden| lowercase.contains(forbidden))
            {
                None
            } else {
                Some(Cow::Borrowed(value))
            }
        }
        _ => Some(Cow::Borrowed(value)),
    }
}

/// The key of a Content-ID in the map `sanitize_html` takes: without surrounding angle
/// brackets and whitespace, in lowercase (percent-escapes of a `cid:` URL decoded).
pub fn content_id_key(content_id: &str) -> String {
    let trimmed = content_id.trim();
    let bare = trimmed
        .strip_prefix('<')
        .and_then(|rest| rest.strip_suffix('>'))
        .unwrap_or(trimmed);
    percent_decode_lossy(bare).to_lowercase()
}

fn strip_prefix_ignore_case<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// `cid:` URLs percent-encode characters a Content-ID may hold (RFC 2392); a bad escape is
/// kept as written.
fn percent_decode_lossy(text: &str) -> Cow<'_, str> {
    if !text.contains('%') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut byte_idx = 0;
    while byte_idx < bytes.len() {
        let escaped = (bytes[byte_idx] == b'%')
            .then(|| bytes.get(byte_idx + 1..byte_idx + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                byte_idx += 3;
            }
            None => {
                decoded.push(bytes[byte_idx]);
                byte_idx += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&decoded).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(html: &str) -> String {
        sanitize_html(html, HashMap::from([("logo@x".to_string(), 2)]))
    }

    /// Hostile inputs (XSS cheat-sheet style) and what must not survive them.
    #[test]
    fn nothing_executable_or_remote_survives() {
        let hostile = [
            "<script>alert(1)</script>",
            "<SCRIPT SRC=http://evil.test/x.js></SCRIPT>",
            "<scr<script>ipt>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "<IMG SRC=\"javascript:alert('XSS');\">",
            "<img src=\"http://evil.test/track.gif\" width=1>",
            "<img src=//evil.test/track.gif>",
            "<img srcset=\"http://evil.test/a.png 1x\">",
            "<svg onload=alert(1)><circle/></svg>",
            "<svg><a xlink:href=\"javascript:alert(1)\"><text>x</text></a></svg>",
            "<svg><animate attributeName=href values=javascript:alert(1) /></svg>",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<a href=\"JaVaScRiPt:alert(1)\">x</a>",
            "<a href=\"jav&#x09;ascript:alert(1)\">x</a>",
            "<a href=\"javascript&#58;alert(1)\">x</a>",
            "<a href=\"&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)\">x</a>",
            "<a href=\"java\0script:alert(1)\">x</a>",
            "<a href=\"vbscript:msgbox(1)\">x</a>",
            "<a href=\"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\">x</a>",
            "<img src=\"data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=\">",
            "<form action=http://evil.test><input name=p><button formaction=javascript:alert(1)>go</button></form>",
            "<iframe src=http://evil.test></iframe>",
            "<object data=http://evil.test/x.swf></object><embed src=http://evil.test/x.swf>",
            "<meta http-equiv=\"refresh\" content=\"0;url=http://evil.test\">",
            "<base href=\"http://evil.test/\"><a href=\"x\">rel</a>",
            "<link rel=stylesheet href=http://evil.test/x.css>",
            "<style>@import 'http://evil.test/x.css'; body{background:url(http://evil.test/b.png)}</style>",
            "<div style=\"background-image:url(http://evil.test/b.png)\">x</div>",
            "<div style=\"width: expression(alert(1))\">x</div>",
            "<div style=\"color: red; background: u\\72l(http://evil.test/b.png)\">x</div>",
            "<p style=\"list-style-image: url(http://evil.test/l.png)\">x</p>",
            "<div style=\"behavior: url(x.htc)\">x</div>",
            "<body onload=alert(1)>x</body>",
            "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\"></noscript>",
            "<textarea><script>alert(1)</script></textarea>",
            "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
            "<math><mi xlink:href=\"javascript:alert(1)\">x</mi></math>",
            "<div <img src=x onerror=alert(1)>",
            "<img src=x onerror=alert(1)",
            "<a href=\"http://ok.test\" onclick=\"alert(1)\" ping=\"http://evil.test/p\">ok</a>",
            "<video poster=http://evil.test/p.png><source src=http://evil.test/v.mp4></video>",
            "<table background=\"http://evil.test/bg.png\"><tr><td background=\"http://evil.test/t.png\">x</td></tr></table>",
            "<a href=\"/api/v1/inboxes/other@example.test\">relative</a>",
            "<img src=\"/api/v1/inboxes/other@example.test/messages/1/attachments/0\">",
            "<img src=\"mayfly-attachment:0\">",
            "<!--<img src=x onerror=alert(1)>-->",
            "<![CDATA[<script>alert(1)</script>]]>",
            "<a href=\"cid:logo@x\">cid link</a>",
        ];
        for input in hostile {
            let output = clean(input);
            let lowercase = output.to_ascii_lowercase();
            for forbidden in SANITIZED_FORBIDDEN {
                assert!(
                    !lowercase.contains(forbidden),
                    "{forbidden:?} survived in {output:?} (input {input:?})"
                );
            }
            assert!(!has_event_handler(&lowercase), "{output:?} ({input:?})");
            assert!(!has_remote_load(&lowercase), "{output:?} ({input:?})");
        }
    }

    /// ` on...=` inside a tag.
    fn has_event_handler(html: &str) -> bool {
        html.split('<').skip(1).any(|tag| {
            let tag = tag.split('>').next().unwrap_or_default();
            tag.split(|c: char| c.is_ascii_whitespace() || c == '/')
                .any(|word| {
                    word.starts_with("on")
                        && word.contains('=')
                        && word[2..]
                            .split('=')
                            .next()
                            .is_some_and(|name| name.bytes().all(|b| b.is_ascii_lowercase()))
                })
        })
    }

    /// A `src=` or a `style` with a URL in it.
    fn has_remote_load(html: &str) -> bool {
        html.split('<').skip(1).any(|tag| {
            let tag = tag.split('>').next().unwrap_or_default();
            tag.contains("src=") || (tag.contains("style=") && tag.contains("http"))
        })
    }

    #[test]
    fn keeps_harmless_mail_html() {
        let cases = [
            ("<p>Hello <b>you</b></p>", "<p>Hello <b>you</b></p>"),
            (
                "<a href=\"https://ok.test/verify?t=1&amp;u=2\">verify</a>",
                "<a href=\"https://ok.test/verify?t=1&amp;u=2\" target=\"_blank\" rel=\"noopener noreferrer\">verify</a>",
            ),
            (
                "<a href=\"mailto:bob@ok.test\" target=\"_self\">mail</a>",
                "<a href=\"mailto:bob@ok.test\" target=\"_blank\" rel=\"noopener noreferrer\">mail</a>",
            ),
            (
                "<img src=\"cid:LOGO@x\" alt=\"logo\">",
                "<img src=\"mayfly-attachment:2\" alt=\"logo\">",
            ),
            (
                "<img src=\"CID:logo%40x\">",
                "<img src=\"mayfly-attachment:2\">",
            ),
            ("<img src=\"cid:unknown@x\" alt=\"a\">", "<img alt=\"a\">"),
            (
                "<p style=\"color: red; position: fixed; font-weight: bold\">x</p>",
                "<p style=\"color:red;font-weight:bold\">x</p>",
            ),
            (
                "<table bgcolor=\"#fff\" onmouseover=\"x()\"><tr><td valign=\"top\">x</td></tr></table>",
                "<table bgcolor=\"#fff\"><tbody><tr><td valign=\"top\">x</td></tr></tbody></table>",
            ),
            (
                "<html><head><title>t</title></head><body>b</body></html>",
                "tb",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(clean(input), expected, "{input}");
        }
    }

    proptest::proptest! {
        /// Markup soup built from the pieces attacks are made of never yields a script, an
        /// event handler, a script URL or a load from anywhere but an attachment.
        #[test]
        fn random_markup_never_yields_anything_executable(
            pieces in proptest::collection::vec(proptest::sample::select(vec![
                "<", ">", "</", "/>", "=", "\"", "'", " ", "\0", "\n", "&#58;", "&lt;",
                "script", "img", "a", "svg", "math", "style", "iframe", "noscript", "textarea",
                "src", "href", "onerror", "onload", "javascript:", "java\tscript:", "data:",
                "http://evil.test/", "url(", "expression(", "cid:logo@x", "<!--", "-->",
            ]), 0..60),
        ) {
            let input: String = pieces.concat();
            let lowercase = clean(&input).to_ascii_lowercase();
            for element in ["<script", "<iframe", "<svg", "<math", "<style", "<noscript"] {
                proptest::prop_assert!(!lowercase.contains(element), "{lowercase:?} (input {input:?})");
            }
            // In text these are harmless words (text may even read `="javascript:`, which
            // is why only the inside of tags is checked); as an attribute value they would be
            // code or loads. Serialized attribute values are always in double quotes, and
            // the serializer escapes `<` and `>` in text, so `<` starts a real tag.
            for tag in lowercase.split('<').skip(1) {
                let tag = tag.split('>').next().unwrap_or_default();
                for (name_part, value_and_rest) in tag.split("=\"").zip(tag.split("=\"").skip(1)) {
                    let value = value_and_rest.split('"').next().unwrap_or_default();
                    let name = name_part.rsplit([' ', '"']).next().unwrap_or_default();
                    for scheme in ["javascript:", "data:", "vbscript:"] {
                        proptest::prop_assert!(!value.trim_start().starts_with(scheme), "{name}={value:?} in {lowercase:?} (input {input:?})");
                    }
                    if name == "style" {
                        proptest::prop_assert!(!value.contains("url(") && !value.contains("expression("), "{value:?} in {lowercase:?}");
                    }
                }
            }
            proptest::prop_assert!(!has_event_handler(&lowercase), "{lowercase:?} (input {input:?})");
            for tag in lowercase.split('<').skip(1) {
                let tag = tag.split('>').next().unwrap_or_default();
                if let Some((_, after)) = tag.split_once("src=\"") {
                    proptest::prop_assert!(after.starts_with("mayfly-attachment:2\""), "{lowercase:?} (input {input:?})");
                }
            }
        }
    }

    /// A proptest counterexample: attribute-looking text outside any tag is only text.
    #[test]
    fn attribute_looking_text_stays_text() {
        assert_eq!(clean("=\"javascript:"), "=\"javascript:");
        assert_eq!(
            clean("<p>=\"javascript:alert(1)\"</p>"),
            "<p>=\"javascript:alert(1)\"</p>"
        );
    }

    #[test]
    fn content_id_keys() {
        let cases = [
            ("<Logo@X>", "logo@x"),
            (" logo@x ", "logo@x"),
            ("a%20b", "a b"),
            ("a%zz", "a%zz"),
            ("%", "%"),
            ("<>", ""),
        ];
        for (content_id, expected) in cases {
            assert_eq!(content_id_key(content_id), expected, "{content_id}");
        }
    }
}
