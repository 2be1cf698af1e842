//! Property tests: any input is handled within the limits; URLs in text are what a naive
//! model finds; HTML text split by inline tags at any points reads the same.

use proptest::prelude::*;

use crate::mail::extract::words::{self, CharClass};
use crate::mail::extract::{
    CODES_MAX, Extracted, LINK_TEXT_CHARS_MAX, LINKS_MAX, LinkKind, URL_BYTES_MAX, extract,
};

/// Pieces that reach the interesting paths: digits and groups, keywords, decoy words,
/// URLs and their punctuation, markup, entities, other scripts.
const FRAGMENTS: &[&str] = &[
    "0",
    "4",
    "9",
    "482913",
    "12",
    "2024",
    " ",
    " ",
    "\n",
    "-",
    ".",
    ",",
    ":",
    "#",
    "$",
    "+",
    "(",
    ")",
    "/",
    "@",
    "%",
    "code",
    "Code",
    "OTP",
    "kod",
    "验证码",
    "인증번호",
    "order",
    "Tel",
    "March",
    "Street",
    "K7Q2ZP",
    "https://",
    "http://",
    "HTTPS://",
    "x.test",
    "?t=",
    "verify",
    "unsubscribe",
    "<a href=\"https://x.test/",
    "\">",
    "</a>",
    "<b>",
    "</b>",
    "<td>",
    "</td>",
    "<p>",
    "<br>",
    "<pre>",
    "</pre>",
    "<!--",
    "-->",
    "<script>",
    "</script>",
    "<img alt=\"Verify\">",
    "style=\"font-size:30px\"",
    "&amp;",
    "&#52;",
    "&nbsp;",
    "&",
    "<",
    ">",
    "'",
    "\"",
    "é",
    "ü",
    "Ж",
    "ع",
    "क्",
    "　",
    "１",
    "\u{200b}",
];

fn fragments(max_len: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(FRAGMENTS), 0..max_len)
        .prop_map(|pieces| pieces.concat())
}

/// The limits every result keeps, whatever the input.
fn check_limits(extracted: &Extracted) -> Result<(), TestCaseError> {
    prop_assert!(extracted.codes.len() <= CODES_MAX);
    for code in &extracted.codes {
        prop_assert!((4..=10).contains(&code.value.len()), "{:?}", code);
        prop_assert!(code.value.bytes().all(|byte| byte.is_ascii_alphanumeric()));
        prop_assert!((25..=100).contains(&code.score), "{:?}", code);
    }
    let mut scores: Vec<u8> = extracted.codes.iter().map(|code| code.score).collect();
    scores.sort_by(|a, b| b.cmp(a));
    prop_assert!(extracted.codes.iter().map(|code| code.score).eq(scores));
    prop_assert!(extracted.links.len() <= LINKS_MAX);
    let mut urls = std::collections::HashSet::new();
    for link in &extracted.links {
        let lower = link.url.to_ascii_lowercase();
        prop_assert!(lower.starts_with("http://") || lower.starts_with("https://"));
        prop_assert!(link.url.len() <= URL_BYTES_MAX);
        prop_assert!(urls.insert(link.url.clone()), "repeated {}", link.url);
        if let Some(text) = &link.text {
            prop_assert!(!text.is_empty() && text.chars().count() <= LINK_TEXT_CHARS_MAX);
        }
    }
    let n_verify = extracted
        .links
        .iter()
        .filter(|link| link.kind == LinkKind::Verify)
        .count();
    prop_assert!(n_verify <= 1);
    Ok(())
}

/// The URLs of a text body as a plain reading of the rules finds them: an `http://` or
/// `https://` not inside a word, up to a space, a quote, an angle bracket or a character
/// that is no letter or digit outside ASCII; then trailing `.,;:!?` and unbalanced `)` cut.
fn naive_text_urls(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut urls: Vec<String> = Vec::new();
    let mut char_idx = 0;
    while char_idx < chars.len() {
        let rest: String = chars[char_idx..chars.len().min(char_idx + 8)]
            .iter()
            .collect();
        let lower = rest.to_ascii_lowercase();
        let scheme_len = if lower.starts_with("https://") {
            8
        } else if lower.starts_with("http://") {
            7
        } else {
            0
        };
        let in_word = char_idx > 0
            && matches!(
                words::char_class(chars[char_idx - 1]),
                CharClass::Letter | CharClass::Digit(_)
            );
        if scheme_len == 0 || in_word {
            char_idx += 1;
            continue;
        }
        let mut end = char_idx + scheme_len;
        while end < chars.len() {
            let ch = chars[end];
            let allowed = if ch.is_ascii() {
                ch > ' ' && ch != '\x7f' && !"<>\"'`".contains(ch)
            } else {
                matches!(
                    words::char_class(ch),
                    CharClass::Letter | CharClass::Digit(_)
                )
            };
            if !allowed {
                break;
            }
            end += 1;
        }
        let mut url: String = chars[char_idx..end].iter().collect();
        loop {
            let n_open = url.matches('(').count();
            let n_close = url.matches(')').count();
            match url.chars().last() {
                Some('.' | ',' | ';' | ':' | '!' | '?') => {}
                Some(')') if n_close > n_open => {}
                _ => break,
            }
            url.pop();
        }
        let scheme = url[..scheme_len].to_ascii_lowercase();
        let url = format!("{scheme}{}", &url[scheme_len..]);
        let has_host = url[scheme_len..]
            .chars()
            .next()
            .is_some_and(|ch| !matches!(ch, '/' | '?' | '#'));
        if has_host && url.len() <= URL_BYTES_MAX && !urls.contains(&url) && urls.len() < LINKS_MAX
        {
            urls.push(url);
        }
        char_idx = end;
    }
    urls
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any bytes (as text), any fragments, in any input: no panic, every limit kept.
    #[test]
    fn any_input_stays_within_the_limits(
        subject in fragments(20),
        text in prop_oneof![fragments(200), any::<String>()],
        html in prop_oneof![fragments(200), any::<String>()],
        header in prop_oneof![Just(String::new()), fragments(10), any::<String>()],
    ) {
        check_limits(&extract(&subject, Some(&text), Some(&html), Some(&header)))?;
        check_limits(&extract(&text, None, Some(&text), None))?;
        check_limits(&extract("", Some(&html), None, None))?;
    }

    /// URLs of a text body are the naive model's, in order.
    #[test]
    fn text_urls_match_the_naive_model(text in fragments(120)) {
        let found: Vec<String> = extract("", Some(&text), None, None)
            .links
            .into_iter()
            .map(|link| link.url)
            .collect();
        prop_assert_eq!(found, naive_text_urls(&text));
    }

    /// Text split by inline tags at any character boundaries reads the same as unsplit.
    #[test]
    fn inline_tags_anywhere_change_nothing(
        text in fragments(80).prop_map(|text| text.replace(['<', '&', '\n'], " ")),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
    ) {
        let boundaries: Vec<usize> = text.char_indices().map(|(idx, _)| idx).collect();
        let mut cut_at: Vec<usize> = cuts
            .iter()
            .filter(|_| !boundaries.is_empty())
            .map(|cut| boundaries[cut.index(boundaries.len())])
            .collect();
        cut_at.sort_unstable();
        cut_at.dedup();
        let mut split = String::new();
        let mut last = 0;
        for idx in cut_at {
            split.push_str(&text[last..idx]);
            split.push_str("<span></span>");
            last = idx;
        }
        split.push_str(&text[last..]);
        let whole = extract("", None, Some(&text), None);
        let pieces = extract("", None, Some(&split), None);
        prop_assert_eq!(whole, pieces, "{}", split);
    }
}
