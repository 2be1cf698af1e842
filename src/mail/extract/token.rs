//! A token and what separates it from the next, as the scanner keeps them in its ring:
//! its first bytes, its shape (digits, letters, case, script), its styling, its position,
//! and a constant-size summary of the separator before it (`Sep`), however long that is.

/// Text shown bold (`<b>`, `<strong>`, headings, `<code>`, `font-weight`).
pub(crate) const STYLE_EMPHASIS: u8 = 1;
/// Text in a large font (`font-size`, `<h1>`, `<h2>`).
pub(crate) const STYLE_BIG: u8 = 2;
/// Text with `letter-spacing`, as codes are often shown.
pub(crate) const STYLE_SPACED: u8 = 4;

/// Bytes of a token that are kept.
pub(crate) const TOKEN_BYTES_MAX: usize = 48;

pub(crate) const SEP_START: u32 = 1 << 0;
pub(crate) const SEP_END: u32 = 1 << 1;
pub(crate) const SEP_LINE: u32 = 1 << 2;
pub(crate) const SEP_CELL: u32 = 1 << 3;
pub(crate) const SEP_SPACE: u32 = 1 << 4;
pub(crate) const SEP_HYPHEN: u32 = 1 << 5;
pub(crate) const SEP_HASH: u32 = 1 << 6;
pub(crate) const SEP_CURRENCY: u32 = 1 << 7;
pub(crate) const SEP_PLUS: u32 = 1 << 8;
pub(crate) const SEP_AT: u32 = 1 << 9;
pub(crate) const SEP_SLASH: u32 = 1 << 10;
pub(crate) const SEP_DOT: u32 = 1 << 11;
pub(crate) const SEP_COMMA: u32 = 1 << 12;
pub(crate) const SEP_COLON: u32 = 1 << 13;
pub(crate) const SEP_PERCENT: u32 = 1 << 14;
pub(crate) const SEP_OPEN_PAREN: u32 = 1 << 15;
pub(crate) const SEP_CLOSE_PAREN: u32 = 1 << 16;
/// `=`, `&`, `?`, `_`, `\`, `~`: parts of URLs, paths and identifiers.
pub(crate) const SEP_URLISH: u32 = 1 << 17;
/// `©`, `®`, `〒`: a mark that makes the number after it a year or a postcode.
pub(crate) const SEP_COPYRIGHT: u32 = 1 << 18;
/// A URL stood here (it is no token).
pub(crate) const SEP_URL: u32 = 1 << 19;
pub(crate) const SEP_OTHER: u32 = 1 << 20;

/// What stands between two tokens, summed up in constant space however long it is.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sep {
    pub(crate) flags: u32,
    /// First and last character (`' '` for any space, `'\n'` for a break, `'\0'` if empty).
    pub(crate) first_char: char,
    pub(crate) last_char: char,
    /// Punctuation characters in it.
    pub(crate) n_punct: u16,
    /// Line breaks in it.
    pub(crate) n_lines: u8,
}

impl Sep {
    pub(crate) fn push(&mut self, ch: char, flag: u32) {
        if self.first_char == '\0' {
            self.first_char = ch;
        }
        self.last_char = ch;
        self.flags |= flag;
    }

    pub(crate) fn punct(&mut self, ch: char) {
        self.push(ch, punct_flag(ch));
        self.n_punct = self.n_punct.saturating_add(1);
    }

    /// The punctuation character right after the token before, with no space between.
    pub(crate) fn tight_first(&self) -> Option<char> {
        is_punct(self.first_char).then_some(self.first_char)
    }

    /// The punctuation character right before the token after, with no space between.
    pub(crate) fn tight_last(&self) -> Option<char> {
        is_punct(self.last_char).then_some(self.last_char)
    }

    /// Only spaces (or nothing) on one line.
    pub(crate) fn is_blank_inline(&self) -> bool {
        self.flags & !SEP_SPACE == 0
    }
}

fn is_punct(ch: char) -> bool {
    !matches!(ch, '\0' | ' ' | '\n')
}

fn punct_flag(ch: char) -> u32 {
    match ch {
        '-' | '\u{2010}' | '\u{2011}' | '\u{2013}' => SEP_HYPHEN,
        '#' | '№' | '＃' => SEP_HASH,
        '+' => SEP_PLUS,
        '@' => SEP_AT,
        '/' => SEP_SLASH,
        '.' => SEP_DOT,
        ',' => SEP_COMMA,
        ':' => SEP_COLON,
        '%' | '％' => SEP_PERCENT,
        '(' => SEP_OPEN_PAREN,
        ')' => SEP_CLOSE_PAREN,
        '=' | '&' | '?' | '_' | '\\' | '~' => SEP_URLISH,
        '©' | '®' | '〒' => SEP_COPYRIGHT,
        '$' | '€' | '£' | '¥' | '₹' | '₽' | '₺' | '₩' | '₪' | '฿' | '₫' | '₴' | '₦' | '¢'
        | '￥' | '￦' | '₱' | '₲' => SEP_CURRENCY,
        _ => SEP_OTHER,
    }
}

/// `Token::class` of a token not yet looked up.
pub(crate) const CLASS_UNKNOWN: u32 = u32::MAX;

/// An ASCII digit.
pub(crate) const SHAPE_DIGIT: u8 = 1;
/// An ASCII letter.
pub(crate) const SHAPE_LETTER: u8 = 2;
pub(crate) const SHAPE_UPPER: u8 = 4;
pub(crate) const SHAPE_LOWER: u8 = 8;
/// A letter of another script.
pub(crate) const SHAPE_NON_ASCII: u8 = 16;
/// Longer than `TOKEN_BYTES_MAX`.
pub(crate) const SHAPE_LONG: u8 = 32;
/// A run of CJK characters.
pub(crate) const SHAPE_CJK: u8 = 64;

/// `SHAPE_*` of each ASCII letter and digit (the scanner gives `word_bytes` no others).
pub(crate) const ASCII_SHAPES: [u8; 256] = {
    let mut shapes = [0; 256];
    let mut byte = 0;
    while byte < 256 {
        shapes[byte] = match byte as u8 {
            b'0'..=b'9' => SHAPE_DIGIT,
            b'A'..=b'Z' => SHAPE_LETTER | SHAPE_UPPER,
            b'a'..=b'z' => SHAPE_LETTER | SHAPE_LOWER,
            _ => 0,
        };
        byte += 1;
    }
    shapes
};

/// Whether a token may be a code, as far as is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cand {
    No,
    /// 4-8 ASCII digits.
    Digits,
    /// 4-10 ASCII letters and digits, at least one of each.
    Alnum,
    /// The last of a run of digit groups ("123 456") read as one code, the first of which
    /// is `back` tokens before it (at most 7).
    Joined {
        back: u8,
    },
    /// Part of something that is no code (a phone number, a date).
    Rejected,
}

/// One token in the ring.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Token {
    /// Its first bytes as written (full-width digits as ASCII); empty for CJK runs.
    pub(crate) bytes: [u8; TOKEN_BYTES_MAX],
    pub(crate) n_bytes: usize,
    pub(crate) n_chars: u32,
    /// `SHAPE_*` bits.
    pub(crate) shape: u8,
    /// `STYLE_*` bits of any of its characters.
    pub(crate) style: u8,
    /// Where it is, for distances: one per token, plus `LINE_POSITIONS` per line break.
    pub(crate) pos: u32,
    /// What came between the previous token and this one.
    pub(crate) sep_before: Sep,
    /// Its `words` classes, or `CLASS_UNKNOWN` until they are looked up.
    pub(crate) class: u32,
    /// The first character of a CJK run (stale for other tokens: read it only for CJK).
    pub(crate) cjk_first: char,
    pub(crate) cand: Cand,
}

impl Token {
    pub(crate) const EMPTY: Token = Token {
        bytes: [0; TOKEN_BYTES_MAX],
        n_bytes: 0,
        n_chars: 0,
        shape: 0,
        style: 0,
        pos: 0,
        sep_before: Sep {
            flags: 0,
            first_char: '\0',
            last_char: '\0',
            n_punct: 0,
            n_lines: 0,
        },
        class: CLASS_UNKNOWN,
        cjk_first: '\0',
        cand: Cand::No,
    };

    /// The kept bytes as text (they always end on a character boundary).
    pub(crate) fn text(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.n_bytes]).unwrap_or("")
    }

    pub(crate) fn is_digits(&self) -> bool {
        self.shape & !SHAPE_DIGIT == 0 && self.shape & SHAPE_DIGIT != 0
    }
}
