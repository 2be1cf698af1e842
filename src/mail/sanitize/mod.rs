//! The HTML of a message, made safe to show in a browser: `ammonia` with a policy for mail,
//! in time and memory linear in the input.
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
//!
//! The sender also chooses how much work sanitizing costs, so `sanitize_html_bounded` does
//! it in three steps, each linear in the input:
//! 1. `meter::dry_run`: html5ever's parser (with ammonia's tree sink) and ammonia's cleaning
//!    have superlinear cases (deep nesting, foster parenting, reconstructed formatting
//!    elements, ...; listed there). A metered parse fed 4 KiB at a time gives up on input
//!    that costs more tree-building steps, DOM memory or CPU time than its size allows
//!    (`NotSanitized::TooCostly`).
//! 2. `ammonia::Builder::clean` parses again (the same path, so the same bounded cost) and
//!    applies the policy.
//! 3. `serialize`: html5ever 0.40.1's serializer is quadratic on text or attribute values
//!    full of `&` or of characters whose UTF-8 starts with 0xC2 (1 MiB of `&` took 10.9 s,
//!    of `£` 7.9 s); our writer produces the same bytes in one pass, and stops when the
//!    output passes `SANITIZED_BYTES_PER_BYTE_MAX` times the input.
//!
//! Options weighed for step 3: splitting long text nodes before html5ever serializes them
//! bounds the rescans in text, but attribute values cannot be split and a split needs the
//! DOM anyway; escaping the input beforehand is impossible because `&amp;` and `&pound;`
//! are decoded by the parser; a CPU budget on html5ever's serializer would refuse text that
//! is merely full of `&`. Writing the cleaned DOM ourselves is exact (tests compare it with
//! html5ever's output) and cheap; it needs `Document::to_dom_node`, which ammonia only
//! exposes under `--cfg ammonia_unstable` (set in `.cargo/config.toml`; ammonia is pinned
//! because that API is outside its semver promise). The dry run uses `ammonia::rcdom` from
//! the same flag.
//!
//! Input over `HTML_SANITIZE_BYTES_MAX` is not sanitized at all (`NotSanitized::TooLarge`):
//! the caller shows no HTML and offers the raw message instead.
//!
//! Costs on the development machine (2-core VM shared with other work, `benches/sanitize.rs`):
//! ordinary mail HTML 13–22 MiB/s at every size from 10 KB to 10 MiB (it was ~33 MB/s
//! without the dry run); text of `&` or `<` 4–6 MiB/s, of `£` 470–800 MiB/s, attribute
//! values of `&quot;` and `&` 10 MiB/s, all flat from 10 KB to 10 MiB. Refusing the worst
//! input of `HTML_SANITIZE_BYTES_MAX` takes up to ~0.6 s (one tag with 150,000 attributes,
//! stopped by the CPU budget); the others are refused in 20–80 ms.

#[cfg(not(ammonia_unstable))]
compile_error!(
    "mayfly needs `--cfg ammonia_unstable` (set in .cargo/config.toml); a RUSTFLAGS \
     environment variable replaces that setting, so add `--cfg ammonia_unstable` to it"
);

mod meter;
#[doc(hidden)]
pub mod samples;
mod serialize;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use ammonia::{Builder, UrlRelative};

use crate::mail::sanitize::meter::Budget;

/// HTML bodies longer than this should not be sanitized (1 MiB): what callers pass to
/// `sanitize_html_bounded` unless configured otherwise. Ordinary mail HTML is 5–200 KB
/// (Gmail clips messages at 102 KB); HTML over 1 MiB is mostly images inlined as `data:`
/// URIs, which the policy drops anyway. At this size the costliest accepted input measured
/// (text of `<`) takes ~0.4 s of CPU and 90 MB of peak memory, the costliest refused one
/// (a tag with 150,000 attributes) ~0.6 s; the DOM's estimated memory stays under 68 MiB
/// (`meter::DOM_BYTES_PER_BYTE_MAX`). Ordinary mail of this size: 50–80 ms, 22 MB. All of
/// it grows linearly with the limit.
pub const HTML_SANITIZE_BYTES_MAX: usize = 1 << 20;

/// Sanitized HTML may be this many times longer than its input (plus
/// `SANITIZED_BYTES_BASE_MAX`). The policy's own escaping stays under it: `"` in an attribute
/// becomes `&quot;` (6x), `&` in text `&amp;` (5x), `<` `&lt;` (4x); ordinary mail shrinks.
/// What goes over it is amplification: ammonia adds `target` and `rel` to every `<a>` (a
/// bare `<a>` becomes 48 bytes, 16x), and a formatting element that the parser reconstructs
/// over and over is written out, attributes and all, each time.
pub const SANITIZED_BYTES_PER_BYTE_MAX: usize = 8;
/// Sanitized output any input may have (64 KiB).
pub const SANITIZED_BYTES_BASE_MAX: usize = 64 << 10;

/// Which budget an input ran out of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// Tree-building steps (deep nesting, foster parenting, merged attributes).
    Steps,
    /// Memory for the DOM (reconstructed formatting elements, parse errors, floods of
    /// empty elements).
    Memory,
    /// CPU time (what the tree sink cannot see, such as one tag with very many attributes).
    CpuTime,
    /// Output bytes (see `SANITIZED_BYTES_PER_BYTE_MAX`).
    OutputBytes,
}

/// Why an HTML body was not sanitized; the caller then shows no HTML at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotSanitized {
    /// The body is longer than the caller's limit (`HTML_SANITIZE_BYTES_MAX` by default).
    #[error("html body of {html_bytes} bytes is over the {html_bytes_max}-byte limit")]
    TooLarge {
        /// Its length.
        html_bytes: usize,
        /// The limit.
        html_bytes_max: usize,
    },
    /// Sanitizing it would take more steps, memory, CPU time or output than its size
    /// allows (pathological markup).
    #[error("html body needs more {resource:?} than its size allows")]
    TooCostly {
        /// The budget it ran out of.
        resource: Resource,
    },
}

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

/// What a `cid:` image source becomes, followed by the attachment's index. Its scheme is
/// not an allowed one, so a message cannot write it itself (ammonia drops such URLs before
/// our rewrite runs).
pub const ATTACHMENT_URL_MARKER: &str = "mayfly-attachment:";

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

/// Cleans `html` with the mail policy above, in time and memory linear in its length.
/// `content_ids` maps a Content-ID (without its angle brackets, lowercase) to the index of
/// the attachment carrying it; an image whose `cid:` names no attachment loses its `src`.
///
/// `html_bytes_max` is normally `HTML_SANITIZE_BYTES_MAX`; time and memory grow linearly
/// with it (the module doc has the numbers).
///
/// # Errors
///
/// `NotSanitized::TooLarge` over `html_bytes_max` bytes, `NotSanitized::TooCostly` when
/// parsing would cost more than the input's size allows or the output would be more than
/// `SANITIZED_BYTES_PER_BYTE_MAX` times longer; the HTML must then not be shown at all.
pub fn sanitize_html_bounded(
    html: &str,
    content_ids: HashMap<String, usize>,
    html_bytes_max: usize,
) -> Result<String, NotSanitized> {
    if html.len() > html_bytes_max {
        return Err(NotSanitized::TooLarge {
            html_bytes: html.len(),
            html_bytes_max,
        });
    }
    sanitize_within(html, content_ids, &Budget::for_input(html.len()))
}

fn sanitize_within(
    html: &str,
    content_ids: HashMap<String, usize>,
    budget: &Budget,
) -> Result<String, NotSanitized> {
    meter::dry_run(html, budget).map_err(|exceeded| {
        tracing::debug!(
            html_bytes = html.len(),
            ?exceeded.resource,
            steps = exceeded.usage.steps,
            dom_bytes = exceeded.usage.dom_bytes,
            cpu_ns = exceeded.usage.cpu_ns,
            "html body not sanitized: over its parsing budget"
        );
        NotSanitized::TooCostly {
            resource: exceeded.resource,
        }
    })?;
    let document = policy(content_ids).clean(html);
    let mut sanitized = String::with_capacity(html.len());
    let sanitized_bytes_max = SANITIZED_BYTES_BASE_MAX
        .saturating_add(SANITIZED_BYTES_PER_BYTE_MAX.saturating_mul(html.len()));
    serialize::serialize_children(&document.to_dom_node(), &mut sanitized, sanitized_bytes_max)
        .map_err(|()| NotSanitized::TooCostly {
            resource: Resource::OutputBytes,
        })?;
    Ok(sanitized)
}

fn policy(content_ids: HashMap<String, usize>) -> Builder<'static> {
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
    builder
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
    use crate::mail::sanitize::samples::{Shape, hostile_html};

    fn clean(html: &str) -> String {
        sanitize_html_bounded(
            html,
            HashMap::from([("logo@x".to_string(), 2)]),
            HTML_SANITIZE_BYTES_MAX,
        )
        .expect("sanitized")
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
        /// Any text at all: no panic, and small input is always sanitized.
        #[test]
        fn any_text_is_sanitized(input in proptest::arbitrary::any::<String>()) {
            proptest::prop_assert!(sanitize_html_bounded(&input, HashMap::new(), HTML_SANITIZE_BYTES_MAX).is_ok());
        }

        /// Text over HTML's own alphabet (markup characters, entity pieces, controls,
        /// U+00A0 and other two-byte characters), where the tokenizer has the most states.
        #[test]
        fn html_alphabet_text_is_sanitized(input in "[<>/!?=\"'&#;:xX0-9a-z \t\n\r\0\u{a0}\u{a3}\u{e9}\u{fffd}-]{0,400}") {
            proptest::prop_assert!(sanitize_html_bounded(&input, HashMap::new(), HTML_SANITIZE_BYTES_MAX).is_ok());
        }

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

    /// Text full of what html5ever's serializer rescanned for, at sizes where that took
    /// seconds, comes out whole and exactly escaped.
    #[test]
    fn hostile_text_is_sanitized_in_full() {
        let ampersands = hostile_html(Shape::Ampersands, 1 << 20);
        let lines = ampersands.len() / 1000;
        assert_eq!(
            clean(&ampersands),
            format!("{}\n", "&amp;".repeat(998)).repeat(lines)
        );
        let pounds = hostile_html(Shape::Pounds, 1 << 20);
        assert_eq!(clean(&pounds), pounds);
        let less_thans = hostile_html(Shape::LessThans, 256 << 10);
        assert_eq!(clean(&less_thans), "&lt;".repeat(less_thans.len()));
        let quoted = hostile_html(Shape::QuotedAttributes, 256 << 10);
        let value = quoted
            .strip_prefix("<p title=\"")
            .and_then(|rest| rest.strip_suffix("\">x</p>"))
            .expect("shape");
        let expected_value = value
            .replace("&quot;", "\"")
            .replace('&', "&amp;")
            .replace('"', "&quot;");
        assert_eq!(
            clean(&quoted),
            format!("<p title=\"{expected_value}\">x</p>")
        );
    }

    #[test]
    fn bodies_over_the_limit_are_not_sanitized() {
        let html = "a".repeat(HTML_SANITIZE_BYTES_MAX + 1);
        assert_eq!(
            sanitize_html_bounded(&html, HashMap::new(), HTML_SANITIZE_BYTES_MAX),
            Err(NotSanitized::TooLarge {
                html_bytes: HTML_SANITIZE_BYTES_MAX + 1,
                html_bytes_max: HTML_SANITIZE_BYTES_MAX,
            })
        );
    }

    #[test]
    fn superlinear_markup_is_refused() {
        let shapes = [
            Shape::DeepDivs,
            Shape::FosterParented,
            Shape::MergedHtmlAttributes,
            Shape::Reconstructed,
            Shape::ReconstructedLongLink,
            Shape::DeepSelectedContent,
        ];
        for shape in shapes {
            let html = hostile_html(shape, 128 << 10);
            assert!(
                matches!(
                    sanitize_html_bounded(&html, HashMap::new(), HTML_SANITIZE_BYTES_MAX),
                    Err(NotSanitized::TooCostly { .. })
                ),
                "{shape:?}"
            );
        }
    }

    /// ammonia gives every `<a>` `target` and `rel`: a bare `<a>` becomes 48 bytes.
    #[test]
    fn amplifying_markup_is_refused() {
        let links = "<a>".repeat(20_000);
        assert_eq!(
            sanitize_html_bounded(&links, HashMap::new(), HTML_SANITIZE_BYTES_MAX),
            Err(NotSanitized::TooCostly {
                resource: Resource::OutputBytes
            })
        );
        let fewer_links = "<a>".repeat(1_000);
        assert!(
            sanitize_html_bounded(&fewer_links, HashMap::new(), HTML_SANITIZE_BYTES_MAX).is_ok()
        );
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
