//! The small parts of HTML the walker decodes itself: character references (`&amp;`,
//! `&#52;`) and the few CSS declarations of a `style` attribute that say how prominent its
//! text is (`font-weight`, `font-size`, `letter-spacing`, a monospace `font-family`).
//! Both are bounded: a reference is looked for within `ENTITY_BYTES_MAX` bytes, and a
//! style is split once.

use memchr::{memchr, memmem};

use crate::mail::extract::token::{STYLE_BIG, STYLE_EMPHASIS, STYLE_SPACED};

/// Longest entity (`&` to `;`) decoded.
const ENTITY_BYTES_MAX: usize = 32;
/// `font-size` from which text counts as big, per unit.
const BIG_FONT_PX_MIN: f32 = 18.0;
const BIG_FONT_PT_MIN: f32 = 14.0;
const BIG_FONT_EM_MIN: f32 = 1.3;
const BIG_FONT_PERCENT_MIN: f32 = 130.0;
/// `font-weight` from which text counts as bold.
const BOLD_WEIGHT_MIN: f32 = 600.0;

/// Calls `each` with the pieces of `raw` with its character references decoded, until it
/// returns false; returns whether it never did.
pub(crate) fn decode_entities(raw: &str, mut each: impl FnMut(&str) -> bool) -> bool {
    let mut rest = raw;
    while let Some(amp) = memchr(b'&', rest.as_bytes()) {
        if amp > 0 && !each(&rest[..amp]) {
            return false;
        }
        let (decoded, consumed) = decode_entity(&rest[amp..]);
        let mut utf8 = [0u8; 4];
        if !each(decoded.map_or("&", |ch| ch.encode_utf8(&mut utf8))) {
            return false;
        }
        rest = &rest[amp + consumed..];
    }
    rest.is_empty() || each(rest)
}

/// The character `text` (which starts with `&`) begins with, and the bytes it takes; an
/// unknown or unterminated reference is a plain `&`.
fn decode_entity(text: &str) -> (Option<char>, usize) {
    let bytes = text.as_bytes();
    let limit = bytes.len().min(ENTITY_BYTES_MAX);
    let Some(semicolon) = memchr(b';', &bytes[1..limit]).map(|offset| offset + 1) else {
        return (None, 1);
    };
    let body = &text[1..semicolon];
    let decoded = match body.strip_prefix('#') {
        Some(number) => {
            let (digits, radix) = match number.strip_prefix(['x', 'X']) {
                Some(hex) => (hex, 16),
                None => (number, 10),
            };
            let valid = !digits.is_empty()
                && digits.len() <= 8
                && digits.bytes().all(|byte| byte.is_ascii_hexdigit());
            valid
                .then(|| u32::from_str_radix(digits, radix).ok())
                .flatten()
                .map(|code_point| {
                    char::from_u32(code_point)
                        .filter(|&ch| ch != '\0')
                        .unwrap_or('\u{FFFD}')
                })
        }
        None => named_entity(body),
    };
    match decoded {
        Some(ch) => (Some(ch), semicolon + 1),
        None => (None, 1),
    }
}

/// The named references mail HTML uses (the sanitizer writes only `amp`, `lt`, `gt`,
/// `quot` and `nbsp`).
fn named_entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "ndash" => '–',
        "mdash" => '—',
        "hellip" => '…',
        "laquo" => '«',
        "raquo" => '»',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "bull" => '•',
        "middot" => '·',
        "euro" => '€',
        "pound" => '£',
        "yen" => '¥',
        "cent" => '¢',
        "sect" => '§',
        "deg" => '°',
        "times" => '×',
        "thinsp" => '\u{2009}',
        "ensp" => '\u{2002}',
        "emsp" => '\u{2003}',
        "zwnj" => '\u{200c}',
        "zwj" => '\u{200d}',
        "shy" => '\u{ad}',
        _ => return None,
    })
}

/// What a `style` attribute says about its text's looks: bold or monospace, big, spaced.
pub(crate) fn style_flags(style: &str) -> u8 {
    let mut flags = 0;
    // Only `font*` and `letter-spacing` matter: most styles have neither.
    let bytes = style.as_bytes();
    if memmem::find(bytes, b"ont").is_none() && memmem::find(bytes, b"etter").is_none() {
        return 0;
    }
    for declaration in style.split(';') {
        let Some(colon) = declaration.bytes().position(|byte| byte == b':') else {
            continue;
        };
        let (property, value) = (&declaration[..colon], &declaration[colon + 1..]);
        let (property, value) = (property.trim(), value.trim());
        if property.eq_ignore_ascii_case("font-weight") {
            if starts_with_ignore_case(value, "bold")
                || leading_number(value).is_some_and(|(weight, _)| weight >= BOLD_WEIGHT_MIN)
            {
                flags |= STYLE_EMPHASIS;
            }
        } else if property.eq_ignore_ascii_case("font-size") {
            if is_big(value) {
                flags |= STYLE_BIG;
            }
        } else if property.eq_ignore_ascii_case("letter-spacing") {
            if leading_number(value).is_some_and(|(spacing, _)| spacing > 0.0) {
                flags |= STYLE_SPACED;
            }
        } else if property.eq_ignore_ascii_case("font-family") {
            if ["mono", "courier", "consolas"]
                .iter()
                .any(|family| contains_ignore_case(value, family))
            {
                flags |= STYLE_EMPHASIS;
            }
        } else if property.eq_ignore_ascii_case("font") {
            if contains_ignore_case(value, "bold") {
                flags |= STYLE_EMPHASIS;
            }
            if value.split_ascii_whitespace().any(is_big) {
                flags |= STYLE_BIG;
            }
        }
    }
    flags
}

fn is_big(size: &str) -> bool {
    match leading_number(size) {
        Some((number, unit)) => {
            let is = |name: &str| unit.eq_ignore_ascii_case(name);
            if is("px") || unit.is_empty() {
                number >= BIG_FONT_PX_MIN
            } else if is("pt") {
                number >= BIG_FONT_PT_MIN
            } else if is("em") || is("rem") {
                number >= BIG_FONT_EM_MIN
            } else if is("%") {
                number >= BIG_FONT_PERCENT_MIN
            } else {
                false
            }
        }
        None => ["large", "x-large", "xx-large", "xxx-large", "larger"]
            .iter()
            .any(|keyword| size.eq_ignore_ascii_case(keyword)),
    }
}

/// A CSS number at the start of `value` and the unit right after it (letters or `%`).
fn leading_number(value: &str) -> Option<(f32, &str)> {
    let number_end = value
        .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
        .unwrap_or(value.len());
    let number: f32 = value[..number_end].parse().ok()?;
    let rest = &value[number_end..];
    let unit_end = rest
        .find(|ch: char| !(ch.is_ascii_alphabetic() || ch == '%'))
        .unwrap_or(rest.len());
    Some((number, &rest[..unit_end.min(4)]))
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

fn contains_ignore_case(text: &str, needle: &str) -> bool {
    text.as_bytes()
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}
