//! Edge cases, one rule at a time: what is a code and what is a decoy, how codes are
//! ranked, where URLs in text end, and how links are told apart.

use crate::mail::extract::{
    CODES_MAX, LINK_TEXT_CHARS_MAX, LINKS_MAX, LinkKind, URL_BYTES_MAX, extract,
};

/// The code values found in a text body with subject `subject`.
fn text_codes(subject: &str, text: &str) -> Vec<String> {
    extract(subject, Some(text), None, None)
        .codes
        .into_iter()
        .map(|code| code.value)
        .collect()
}

fn html_codes(html: &str) -> Vec<String> {
    extract("", None, Some(html), None)
        .codes
        .into_iter()
        .map(|code| code.value)
        .collect()
}

/// The first code of each text body, or None.
#[test]
fn what_is_a_code() {
    let cases: &[(&str, Option<&str>)] = &[
        ("Your code: 4821", Some("4821")),
        ("Your code: 48213", Some("48213")),
        ("Your code: 482913", Some("482913")),
        ("Your code: 4829137", Some("4829137")),
        ("Your code: 48291370", Some("48291370")),
        ("Your code: 482", None),
        ("Your code: 482913705", None),
        ("Your code: 482 913", Some("482913")),
        ("Your code: 482-913", Some("482913")),
        ("Your code: 48 29 13", Some("482913")),
        ("Your code: 4 8 2 9 1 3", Some("482913")),
        ("Your code: 1234 5678", Some("12345678")),
        ("Your code: K7Q2ZP", Some("K7Q2ZP")),
        ("Your code: A1B2", Some("A1B2")),
        ("Your code: AB12CD34EF", Some("AB12CD34EF")),
        ("Your code: ABCDEFGHIJK1", None),
        ("Your code: ABCDEF", None),
        ("Your code: 4８2９1３", Some("482913")),
        ("Your code: ４８２９１３", Some("482913")),
        ("Use code 482913 to sign in", Some("482913")),
        ("482913 is your code", Some("482913")),
        ("Code:482913", Some("482913")),
        ("Ihr Code lautet 482913", Some("482913")),
        ("code de vérification : 482913", Some("482913")),
        ("Su código es 482913", Some("482913")),
        ("Il codice è 482913", Some("482913")),
        ("Twój kod: 482913", Some("482913")),
        ("Ваш код: 482913", Some("482913")),
        ("Doğrulama kodu: 482913", Some("482913")),
        ("验证码：482913", Some("482913")),
        ("認証コード 482913", Some("482913")),
        ("인증번호는 482913입니다", Some("482913")),
        ("인증번호는 482913 입니다", Some("482913")),
        ("رمز التحقق 482913", Some("482913")),
        ("आपका कोड 482913 है", Some("482913")),
    ];
    for &(text, expected) in cases {
        let codes = text_codes("", text);
        assert_eq!(
            codes.first().map(String::as_str),
            expected,
            "{text}: {codes:?}"
        );
    }
}

/// Numbers near a code keyword that are something else.
#[test]
fn decoys_are_not_codes() {
    let decoys = [
        "Your code was sent on 12 March 2024.",
        "Your code was sent on March 12, 2024.",
        "Code sent 2024-03-12 at 10:30.",
        "Code sent 12/03/2024.",
        "Code sent 12.03.2024.",
        "Your code: call 555-0199 or +1 555 0199 if it fails.",
        "Your code: call (555) 123-4567 if it fails.",
        "Your code costs nothing; the plan is $1299 or 1299 € or 1299 EUR a year.",
        "Your code: total 1,299.00",
        "Your code is in order 582913's receipt.",
        "Order #582913 (your code is on the way)",
        "Invoice 582913 — code below",
        "Your code: see https://x.test/c/582913/verify?n=482913",
        "Your code: mail user582913@x.test",
        "Your code: color #582913",
        "Your code: 582913px wide",
        "Your code: version 5.82913",
        "Your code: 10:30:45",
        "Your code: 45%",
        "Promo code 582913 gives 10% off",
        "Your zip code is 94043",
        "Postcode 582913",
        "Your code:\nAcme Inc.\n1600 Amphitheatre Parkway\nMountain View, CA 94043",
        "Your code: © 2024 Acme",
        "Your code: 1234 5678 9012 3456",
        "Your code: 2026年5月",
    ];
    for text in decoys {
        let codes = text_codes("", text);
        assert!(codes.is_empty(), "{text}: {codes:?}");
    }
}

/// Marked as a code, a number after an order word is one.
#[test]
fn a_code_keyword_closer_than_an_order_word_wins() {
    assert_eq!(text_codes("", "Order confirmation code: 4821"), ["4821"]);
    assert_eq!(
        text_codes("", "Order 55012 — verification code 4821"),
        ["4821"]
    );
}

#[test]
fn years_are_codes_only_when_marked() {
    assert_eq!(text_codes("", "Your code is 2024"), ["2024"]);
    assert!(text_codes("", "Posted in 2024").is_empty());
}

/// Emphasis, being alone on a line, the length six and the subject raise a score.
#[test]
fn ranking() {
    let plain_then_bold = html_codes("<p>Code 4821 or code <b>5930</b></p>");
    assert_eq!(plain_then_bold, ["5930", "4821"]);
    let inline_then_alone = text_codes("", "Code 4821 or code:\n5930\n");
    assert_eq!(inline_then_alone, ["5930", "4821"]);
    let four_then_six = text_codes("", "Code 4821 or code 593017");
    assert_eq!(four_then_six, ["593017", "4821"]);
    let subject_repeats = text_codes("Your code 5930", "Code 4821 or code 5930");
    assert_eq!(subject_repeats, ["5930", "4821"]);
    let spaced =
        html_codes(r#"<p>Code 4821 or code <span style="letter-spacing: 4px">5930</span></p>"#);
    assert_eq!(spaced, ["5930", "4821"]);
    let big = html_codes(r#"<p>Code 4821 or code <span style="font-size:2em">5930</span></p>"#);
    assert_eq!(big, ["5930", "4821"]);
}

#[test]
fn scores_are_within_bounds_and_capped_in_number() {
    let text: String = (0..50).map(|n| format!("code {} ", 482_900 + n)).collect();
    let extracted = extract("code", Some(&text), None, None);
    assert_eq!(extracted.codes.len(), CODES_MAX);
    assert!(extracted.codes.iter().all(|code| code.score <= 100));
    let first = text_codes("", "Code 111111, code 222222");
    assert_eq!(
        first,
        ["111111", "222222"],
        "ties keep the order of appearance"
    );
}

/// URLs in text end at whitespace, `<`, `>`, quotes and trailing punctuation.
#[test]
fn text_urls_end_where_the_prose_resumes() {
    let cases = [
        ("see https://x.test/a.", "https://x.test/a"),
        ("see https://x.test/a, then", "https://x.test/a"),
        ("(see https://x.test/a)", "https://x.test/a"),
        ("see https://x.test/wiki/A_(b)", "https://x.test/wiki/A_(b)"),
        (
            "see https://x.test/wiki/A_(b)).",
            "https://x.test/wiki/A_(b)",
        ),
        ("see <https://x.test/a>", "https://x.test/a"),
        ("see \"https://x.test/a\"", "https://x.test/a"),
        ("see 'https://x.test/a'", "https://x.test/a"),
        ("see https://x.test/a?b=1&c=2!?", "https://x.test/a?b=1&c=2"),
        ("see HTTPS://X.test/a;", "https://X.test/a"),
        ("see https://x.test/a\u{3002}", "https://x.test/a"),
        ("see https://x.test/ünï\nnext", "https://x.test/ünï"),
    ];
    for (text, url) in cases {
        let links = extract("", Some(text), None, None).links;
        let urls: Vec<&str> = links.iter().map(|link| link.url.as_str()).collect();
        assert_eq!(urls, [url], "{text}");
    }
    for text in [
        "see http://",
        "see https:///path",
        "see ftp://x.test/a",
        "mailto:a@x.test",
    ] {
        assert!(
            extract("", Some(text), None, None).links.is_empty(),
            "{text}"
        );
    }
}

#[test]
fn html_links_have_their_text_in_document_order_once() {
    let html = r#"<p><a href="https://x.test/a?b=1&amp;c=2">First&nbsp;<b>link</b></a>
        <a href="mailto:a@x.test">mail</a> <a href="/relative">rel</a>
        <a href="https://x.test/img"><img src="cid:x" alt="Logo &amp; name"></a>
        <a href="https://x.test/a?b=1&amp;c=2">again</a> https://x.test/text-url</p>"#;
    let extracted = extract("", Some("https://x.test/only-in-text"), Some(html), None);
    let links: Vec<(&str, Option<&str>)> = extracted
        .links
        .iter()
        .map(|link| (link.url.as_str(), link.text.as_deref()))
        .collect();
    assert_eq!(
        links,
        [
            ("https://x.test/a?b=1&c=2", Some("First link")),
            ("https://x.test/img", Some("Logo & name")),
            ("https://x.test/text-url", None),
            ("https://x.test/only-in-text", None),
        ]
    );
}

#[test]
fn link_texts_and_counts_are_capped() {
    let long_text = "word ".repeat(LINK_TEXT_CHARS_MAX);
    let mut html = format!(r#"<a href="https://x.test/long">{long_text}</a>"#);
    for link_idx in 0..LINKS_MAX + 20 {
        html.push_str(&format!(
            r#"<a href="https://x.test/{link_idx}">{link_idx}</a>"#
        ));
    }
    html.push_str(&format!(
        r#"<a href="https://x.test/{}">too long</a>"#,
        "x".repeat(URL_BYTES_MAX)
    ));
    let links = extract("", None, Some(&html), None).links;
    assert_eq!(links.len(), LINKS_MAX);
    let text = links[0].text.as_deref().expect("text");
    let n_chars = text.chars().count();
    assert!(
        (LINK_TEXT_CHARS_MAX - 5..=LINK_TEXT_CHARS_MAX).contains(&n_chars),
        "{n_chars}"
    );
    assert!(links.iter().all(|link| link.url.len() <= URL_BYTES_MAX));
}

#[test]
fn unsubscribe_links_and_the_list_unsubscribe_header() {
    let html = r#"<p><a href="https://x.test/verify?t=abcdef0123456789xyz">Verify</a></p>
        <p>To unsubscribe, click <a href="https://x.test/u/1">here</a>.
        <a href="https://x.test/prefs">Manage preferences</a></p>"#;
    let header = "<mailto:u@x.test?subject=unsubscribe>, <https://x.test/list-unsub/9>";
    let links = extract("Welcome", None, Some(html), Some(header)).links;
    let kinds: Vec<(&str, LinkKind)> = links
        .iter()
        .map(|link| (link.url.as_str(), link.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            (
                "https://x.test/verify?t=abcdef0123456789xyz",
                LinkKind::Verify
            ),
            ("https://x.test/u/1", LinkKind::Unsubscribe),
            ("https://x.test/prefs", LinkKind::Other),
            ("https://x.test/list-unsub/9", LinkKind::Unsubscribe),
        ]
    );
    let header_in_body = extract("", Some("https://x.test/list-unsub/9"), None, Some(header));
    assert_eq!(header_in_body.links.len(), 1);
    assert_eq!(header_in_body.links[0].kind, LinkKind::Unsubscribe);
}

#[test]
fn at_most_one_verify_link_and_only_with_evidence() {
    let html = r#"<a href="https://x.test/confirm/1">Confirm email</a>
        <a href="https://x.test/confirm/2">Confirm email</a>
        <a href="https://x.test/login">Log in</a>
        <a href="https://facebook.test/acme/verify">Verify us on Facebook</a>"#;
    let links = extract("", None, Some(html), None).links;
    let verify: Vec<&str> = links
        .iter()
        .filter(|link| link.kind == LinkKind::Verify)
        .map(|link| link.url.as_str())
        .collect();
    assert_eq!(verify, ["https://x.test/confirm/1"]);
    let login_only = extract(
        "",
        None,
        Some(r#"<a href="https://x.test/login">Log in</a>"#),
        None,
    );
    assert_eq!(login_only.verify_link(), None);
}

#[test]
fn html_structure_and_styles() {
    // Raw HTML: what is not shown is not read.
    let hidden = "<head><title>Code 111111</title><style>.c{color:#222222}</style></head>\
        <script>var code = 333333;</script><!-- code 444444 --><p>Your code is <b>555555</b></p>";
    assert_eq!(html_codes(hidden), ["555555"]);
    // Unterminated markup does not hide the text before it.
    assert_eq!(
        html_codes("<p>Code 482913</p><a href=\"https://x"),
        ["482913"]
    );
    assert_eq!(html_codes("<p>Code 482913<!-- never closed"), ["482913"]);
    // Entities: numeric, named, unknown.
    assert_eq!(
        html_codes("<p>Code&#58; &#x34;82913 &bogus; x</p>"),
        ["482913"]
    );
    // Inline tags do not split a code; blocks do.
    assert_eq!(
        html_codes("<p>Code: <span>482</span><span>913</span></p>"),
        ["482913"]
    );
    let mut separate = html_codes("<p>Code: 4821</p><p>9137</p>");
    separate.sort();
    assert_eq!(separate, ["4821", "9137"]);
    // Deep nesting past the remembered depth is harmless.
    let deep = format!(
        "{}Code <b>482913</b>{}",
        "<div>".repeat(500),
        "</div>".repeat(500)
    );
    assert_eq!(html_codes(&deep), ["482913"]);
}

#[test]
fn extracted_serializes_and_wipes() {
    let extracted = extract(
        "Your code",
        Some("Code 482913 https://x.test/verify?t=abcdef0123456789xyz"),
        None,
        None,
    );
    let json = serde_json::to_string(&extracted).expect("serializes");
    assert_eq!(
        json,
        r#"{"codes":[{"value":"482913","score":66}],"links":[{"url":"https://x.test/verify?t=abcdef0123456789xyz","text":null,"kind":"verify"}]}"#
    );
    assert!(extracted.heap_bytes() > 0);
    extracted.wipe();
}
