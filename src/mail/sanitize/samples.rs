//! Inputs of any size for the sanitizer's tests and `benches/sanitize.rs`: ordinary mail HTML
//! and the hostile shapes that made html5ever or ammonia superlinear (see `meter` and
//! `serialize`). Public only so the bench can use them.

use std::fmt::Write;

/// Hostile or odd inputs, each built to a requested size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Lines of 998 `&` (the longest line SMTP allows): quadratic in html5ever's serializer.
    Ampersands,
    /// `£` (bytes C2 A3) repeated: also quadratic there (0xC2 could start U+00A0).
    Pounds,
    /// `<` repeated: text, one parse error per byte.
    LessThans,
    /// `<p title="..">` with a value of `"` (written `&quot;`) and `&`, then text.
    QuotedAttributes,
    /// `<div>` nested as deep as the size allows: the tree builder's scope walks.
    DeepDivs,
    /// `<table>` then `<br>`s foster-parented before it.
    FosterParented,
    /// `<html a1>`, `<html a2>`, ...: attributes merged into the root one by one.
    MergedHtmlAttributes,
    /// 200 formatting elements reconstructed after every `</div>x`.
    Reconstructed,
    /// One `<a>` with a 1,000-byte `href` reconstructed after every `</div>x`: each copy
    /// shares the value's buffer in the DOM but is cleaned and written out again.
    ReconstructedLongLink,
    /// One `<p>` with as many distinct attribute names as fit.
    ManyAttributes,
    /// `<span>`s nested deep, then `<select>` and many `<selectedcontent>`.
    DeepSelectedContent,
}

/// Every shape, for tables of tests and benches.
pub const SHAPES: [Shape; 11] = [
    Shape::Ampersands,
    Shape::Pounds,
    Shape::LessThans,
    Shape::QuotedAttributes,
    Shape::DeepDivs,
    Shape::FosterParented,
    Shape::MergedHtmlAttributes,
    Shape::Reconstructed,
    Shape::ReconstructedLongLink,
    Shape::ManyAttributes,
    Shape::DeepSelectedContent,
];

/// Formatting elements with distinct attributes in `Shape::Reconstructed`.
const RECONSTRUCTED_ELEMENTS: usize = 200;

/// Length of the `href` path in `Shape::ReconstructedLongLink`.
const LONG_LINK_BYTES: usize = 1000;

/// `shape`, about `target_bytes` long (never longer).
pub fn hostile_html(shape: Shape, target_bytes: usize) -> String {
    let mut html = String::with_capacity(target_bytes);
    match shape {
        Shape::Ampersands => {
            let line = format!("{}\r\n", "&".repeat(998));
            while html.len() + line.len() <= target_bytes {
                html.push_str(&line);
            }
        }
        Shape::Pounds => html.push_str(&"£".repeat(target_bytes / 2)),
        Shape::LessThans => html.push_str(&"<".repeat(target_bytes)),
        Shape::QuotedAttributes => {
            let value_bytes = target_bytes.saturating_sub(30) / 2;
            html.push_str("<p title=\"");
            html.push_str(&"&quot;".repeat(value_bytes / 12));
            html.push_str(&"&".repeat(value_bytes / 2));
            html.push_str("\">x</p>");
        }
        Shape::DeepDivs => html.push_str(&"<div>".repeat(target_bytes / 5)),
        Shape::FosterParented => {
            html.push_str("<table>");
            html.push_str(&"<br>".repeat(target_bytes.saturating_sub(7) / 4));
        }
        Shape::MergedHtmlAttributes => push_numbered(&mut html, target_bytes, "<html a", ">"),
        Shape::Reconstructed => {
            let opening = "<div>".repeat(target_bytes / 12);
            html.push_str(&opening);
            for element_idx in 0..RECONSTRUCTED_ELEMENTS {
                let _ = write!(html, "<b id=\"{element_idx}\">");
            }
            while html.len() + 7 <= target_bytes {
                html.push_str("</div>x");
            }
        }
        Shape::ReconstructedLongLink => {
            html.push_str(&"<div>".repeat(target_bytes.saturating_sub(LONG_LINK_BYTES) / 12));
            html.push_str("<a href=\"https://example.com/");
            html.push_str(&"x".repeat(LONG_LINK_BYTES));
            html.push_str("\">");
            while html.len() + 7 <= target_bytes {
                html.push_str("</div>x");
            }
        }
        Shape::ManyAttributes => {
            html.push_str("<p");
            push_numbered(&mut html, target_bytes.saturating_sub(3), " a", "");
            html.push('>');
        }
        Shape::DeepSelectedContent => {
            html.push_str(&"<span>".repeat(target_bytes / 12));
            html.push_str("<select>");
            while html.len() + 17 <= target_bytes {
                html.push_str("<selectedcontent>");
            }
        }
    }
    html
}

fn push_numbered(html: &mut String, target_bytes: usize, prefix: &str, suffix: &str) {
    for number in 0.. {
        let piece = format!("{prefix}{number}{suffix}");
        if html.len() + piece.len() > target_bytes {
            break;
        }
        html.push_str(&piece);
    }
}

/// A newsletter-style message about `target_bytes` long (never longer, at least the head
/// and one section): a style block and MSO conditional comments in the head, nested layout
/// tables with presentational attributes, inline styles, tracked links with `&amp;` in
/// their query strings, `cid:` and remote images, entities, accented and non-Latin text,
/// lists, and a reply chain of nested quotes.
pub fn ordinary_mail_html(target_bytes: usize) -> String {
    const HEAD: &str = "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\" \
        \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\r\n\
        <html xmlns=\"http://www.w3.org/1999/xhtml\"><head>\r\n\
        <meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\">\r\n\
        <meta name=\"viewport\" content=\"width=device-width, initial-scale=1.0\">\r\n\
        <title>Your weekly digest</title>\r\n\
        <!--[if gte mso 9]><xml><o:OfficeDocumentSettings><o:AllowPNG/>\
        <o:PixelsPerInch>96</o:PixelsPerInch></o:OfficeDocumentSettings></xml><![endif]-->\r\n\
        <style type=\"text/css\">body{margin:0;padding:0} table td{border-collapse:collapse}\r\n\
        .button a{color:#ffffff;text-decoration:none} @media only screen and (max-width:600px)\
        {.container{width:100% !important}}</style></head>\r\n\
        <body style=\"margin:0; padding:0; background-color:#f4f4f4;\">\r\n\
        <table width=\"100%\" border=\"0\" cellpadding=\"0\" cellspacing=\"0\" \
        bgcolor=\"#f4f4f4\"><tr><td align=\"center\" valign=\"top\">\r\n\
        <table class=\"container\" width=\"600\" border=\"0\" cellpadding=\"0\" \
        cellspacing=\"0\" bgcolor=\"#ffffff\">\r\n";
    const TAIL: &str = "</table></td></tr></table>\r\n\
        <p style=\"font-size:11px; color:#999999;\">&copy; 2026 Example Ltd &middot; \
        <a href=\"https://news.example.com/unsubscribe?u=42&amp;id=7\">Unsubscribe</a></p>\r\n\
        </body></html>\r\n";
    let mut html = String::with_capacity(target_bytes);
    html.push_str(HEAD);
    let mut section = String::new();
    for section_idx in 0.. {
        section.clear();
        push_section(&mut section, section_idx);
        if section_idx > 0 && html.len() + section.len() + TAIL.len() > target_bytes {
            break;
        }
        html.push_str(&section);
    }
    html.push_str(TAIL);
    html
}

fn push_section(html: &mut String, section_idx: usize) {
    let _ = write!(
        html,
        "<tr><td style=\"padding: 20px 30px 10px 30px; font-family: Arial, sans-serif;\">\r\n\
        <h2 style=\"color:#153643; font-size:22px; margin:0;\">{section_idx}. Caf\u{e9} news \
        &amp; prices from \u{a3}{price}</h2>\r\n\
        <p style=\"margin:12px 0; line-height:20px;\">Dear reader,&nbsp;here is what \
        happened this week. Prices start at \u{a3}{price}.99 (\u{20ac}{price}) &ndash; \
        \u{fc}ber-deals, na\u{ef}ve &lt;offers&gt; and more. \u{65e5}\u{672c}\u{8a9e} \
        \u{440}\u{443}\u{441}\u{441}\u{43a}\u{438}\u{439}.</p>\r\n\
        <table width=\"100%\" border=\"0\" cellpadding=\"0\" cellspacing=\"0\"><tr>\r\n\
        <td width=\"260\" valign=\"top\"><img src=\"cid:image{section_idx}@example.com\" \
        alt=\"Product {section_idx}\" width=\"260\" height=\"140\" style=\"display:block;\">\
        </td>\r\n<td width=\"20\">&nbsp;</td>\r\n\
        <td width=\"260\" valign=\"top\"><img src=\"https://cdn.example.com/p/{section_idx}.png\" \
        alt=\"\" width=\"260\"><ul style=\"padding-left:18px;\"><li>Free delivery</li>\
        <li><b>30 days</b> to return</li><li><i>Limited</i> stock</li></ul></td>\r\n\
        </tr></table>\r\n\
        <table class=\"button\" border=\"0\" cellpadding=\"0\" cellspacing=\"0\"><tr>\
        <td bgcolor=\"#ee4c50\" style=\"border-radius:3px; padding:12px 18px;\">\
        <a href=\"https://click.example.com/t?u=42&amp;s={section_idx}&amp;l=https%3A%2F%2Fshop\
        .example.com%2Fitem%2F{section_idx}\" target=\"_blank\" \
        style=\"color:#ffffff; font-weight:bold;\">Shop now &rarr;</a></td></tr></table>\r\n",
        price = 10 + section_idx % 90,
    );
    if section_idx % 4 == 3 {
        // A reply chain, as mail clients quote it.
        html.push_str("<div class=\"gmail_quote\">");
        for depth in 0..6 {
            let _ = write!(
                html,
                "<div>On Mon, 1 Jun 2026 at 10:0{depth}, Someone &lt;someone@example.org&gt; \
                wrote:<br></div><blockquote style=\"margin:0 0 0 .8ex; border-left:1px #ccc \
                solid; padding-left:1ex\"><div dir=\"ltr\">Reply {depth}: sounds good, \
                see you then.<br>",
            );
        }
        html.push_str(&"</div></blockquote>".repeat(6));
        html.push_str("</div>\r\n");
    }
    html.push_str("</td></tr>\r\n");
}
