//! What a word means to the extractor (a bit set of classes), and what kind of character
//! each character is.
//!
//! The lexicon (`lexicon.rs`) is turned once into two byte tries: one over words as written,
//! for whole words and prefixes, and one over reversed words, for suffixes. Classifying a
//! word is one walk down each, so it costs the word's length whatever the lexicon's size.
//! Chinese, Japanese and Korean words are found inside runs by `CjkMatcher`, which looks
//! only at words ending in the character just pushed.

use std::sync::OnceLock;

use crate::mail::extract::lexicon::{CJK_WORDS, GROUPS};
use crate::mail::extract::trie::{Trie, TrieBuilder};

/// "Code", "OTP", "PIN" and their compounds, in any of the languages.
pub(crate) const CODE_STRONG: u32 = 1 << 0;
/// Verification, confirmation, security, password: near a code more often than not.
pub(crate) const CODE_WEAK: u32 = 1 << 1;
/// Not a code keyword, whatever its ending says ("postcode", "promocode").
pub(crate) const NOT_CODE: u32 = 1 << 2;
/// Makes a code keyword next to it name something else ("promo code", "code postal").
pub(crate) const DENY_NEIGHBOR: u32 = 1 << 3;
/// Order, invoice, booking, reference, customer: a number after it is theirs.
pub(crate) const ORDER: u32 = 1 << 4;
pub(crate) const PHONE: u32 = 1 << 5;
pub(crate) const PRICE: u32 = 1 << 6;
/// A currency written as a word ("EUR", "dollars").
pub(crate) const CURRENCY: u32 = 1 << 7;
/// A unit after a number ("minutes", "MB").
pub(crate) const UNIT: u32 = 1 << 8;
/// A month, a weekday, "date".
pub(crate) const DATE: u32 = 1 << 9;
/// A street word, a company form, a footer word.
pub(crate) const ADDRESS: u32 = 1 << 10;
/// Verify, confirm, activate, reset, magic: what a verification link says.
pub(crate) const VERIFY: u32 = 1 << 11;
/// Sign in, log in, password, token: what a magic link or reset link may say.
pub(crate) const VERIFY_WEAK: u32 = 1 << 12;
pub(crate) const UNSUBSCRIBE: u32 = 1 << 13;
/// Privacy, help, social sites, image files: links that are never the one to click.
pub(crate) const LINK_OTHER: u32 = 1 << 14;

/// Both code keyword classes.
pub(crate) const CODE_ANY: u32 = CODE_STRONG | CODE_WEAK;

/// Bytes of a lowercased word that are looked at; longer words match only by prefix.
const WORD_BYTES_MAX: usize = 64;
/// Longest `CJK_WORDS` entry, in characters.
const CJK_WORD_CHARS_MAX: usize = 10;

/// What kind of character a character is, for cutting text into tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CharClass {
    /// `0`-`9`, also full-width; the value is the ASCII digit.
    Digit(u8),
    /// A letter (or a mark that belongs to one) of a script written with spaces.
    Letter,
    /// Han, kana or Hangul: scripts where words run together.
    Cjk,
    /// Whitespace other than a line end.
    Space,
    /// `\n`.
    Newline,
    /// Anything else: punctuation, symbols, controls.
    Punct,
}

/// The class of `ch`.
pub(crate) fn char_class(ch: char) -> CharClass {
    if ch.is_ascii() {
        return match ch {
            '0'..='9' => CharClass::Digit(ch as u8),
            'a'..='z' | 'A'..='Z' => CharClass::Letter,
            '\n' => CharClass::Newline,
            ' ' | '\t' | '\r' | '\x0b' | '\x0c' => CharClass::Space,
            _ => CharClass::Punct,
        };
    }
    let code_point = ch as u32;
    match code_point {
        0xFF10..=0xFF19 => CharClass::Digit(b'0' + (code_point - 0xFF10) as u8),
        0x1100..=0x11FF
        | 0x3040..=0x30FF
        | 0x3130..=0x318F
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xAC00..=0xD7AF
        | 0xF900..=0xFAFF
        | 0xFF66..=0xFF9F => CharClass::Cjk,
        // Combining marks (Latin, Cyrillic, Hebrew, Arabic) and the Indic blocks, whose
        // viramas and some vowel signs are not alphabetic in Unicode, belong to their word;
        // the dandas end it.
        0x0964 | 0x0965 => CharClass::Punct,
        0x0300..=0x036F
        | 0x0483..=0x0489
        | 0x0591..=0x05C7
        | 0x0610..=0x061A
        | 0x064B..=0x065F
        | 0x0670
        | 0x06D6..=0x06ED
        | 0x0900..=0x0DFF
        | 0x200C
        | 0x200D => CharClass::Letter,
        _ if ch.is_whitespace() => CharClass::Space,
        _ if ch.is_alphanumeric() => CharClass::Letter,
        _ => CharClass::Punct,
    }
}

/// The classes of `word` (any case, any script but CJK).
pub(crate) fn classify(word: &str) -> u32 {
    if word.is_ascii() {
        return classify_ascii(word.as_bytes());
    }
    let mut lower = [0u8; WORD_BYTES_MAX];
    let mut n_bytes = 0;
    let mut complete = true;
    'chars: for ch in word.chars() {
        for lower_ch in ch.to_lowercase() {
            let mut utf8 = [0u8; 4];
            let encoded = lower_ch.encode_utf8(&mut utf8).as_bytes();
            if n_bytes + encoded.len() > WORD_BYTES_MAX {
                complete = false;
                break 'chars;
            }
            lower[n_bytes..n_bytes + encoded.len()].copy_from_slice(encoded);
            n_bytes += encoded.len();
        }
    }
    classify_lower(&lower[..n_bytes], complete)
}

/// The classes of a word of ASCII letters and digits, any case.
pub(crate) fn classify_ascii(word: &[u8]) -> u32 {
    let lexicon = lexicon();
    // Lowercased on the way down the tries, with no copy.
    let complete = word.len() <= WORD_BYTES_MAX;
    let word = &word[..word.len().min(WORD_BYTES_MAX)];
    let (exact, prefix) = lexicon
        .forward
        .walk(word.iter().map(u8::to_ascii_lowercase));
    if !complete {
        return prefix & !(NOT_CODE | DENY_NEIGHBOR);
    }
    let (_, suffix) = lexicon
        .backward
        .walk(word.iter().rev().map(u8::to_ascii_lowercase));
    combine(exact, prefix, suffix)
}

/// The classes of a lowercased word; `complete` is false when it is only the word's start.
fn classify_lower(lower: &[u8], complete: bool) -> u32 {
    let lexicon = lexicon();
    let (exact, prefix) = lexicon.forward.walk(lower.iter().copied());
    if !complete {
        return prefix & !(NOT_CODE | DENY_NEIGHBOR);
    }
    let (_, suffix) = lexicon.backward.walk(lower.iter().rev().copied());
    combine(exact, prefix, suffix)
}

/// The classes from the tries' answers: a listed exception (`NOT_CODE`) wins over a
/// prefix or suffix rule.
fn combine(exact: u32, prefix: u32, suffix: u32) -> u32 {
    let class = exact | prefix | suffix;
    if exact & NOT_CODE != 0 {
        class & !CODE_ANY
    } else {
        class
    }
}

/// Finds `CJK_WORDS` in a run of CJK characters pushed one at a time.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CjkMatcher {
    /// The last characters of the run, oldest first once full (a circular buffer).
    tail: [char; CJK_WORD_CHARS_MAX],
    /// Characters pushed since the run began.
    n_chars: usize,
    /// Classes of the words found so far.
    pub(crate) class: u32,
}

impl CjkMatcher {
    /// Starts a new run.
    pub(crate) fn reset(&mut self) {
        self.n_chars = 0;
        self.class = 0;
    }

    /// Adds the next character of the run; O(words ending in `ch`).
    pub(crate) fn push(&mut self, ch: char) {
        self.tail[self.n_chars % CJK_WORD_CHARS_MAX] = ch;
        self.n_chars += 1;
        let words = &lexicon().cjk;
        let start = words.partition_point(|word| word.last < ch);
        for word in words[start..].iter().take_while(|word| word.last == ch) {
            let n_word = word.chars.len();
            if n_word > self.n_chars {
                continue;
            }
            let matches = word.chars.iter().enumerate().all(|(char_idx, &word_ch)| {
                let run_idx = self.n_chars - n_word + char_idx;
                self.tail[run_idx % CJK_WORD_CHARS_MAX] == word_ch
            });
            if matches {
                self.class |= word.class;
            }
        }
    }
}

struct Lexicon {
    forward: Trie,
    backward: Trie,
    /// `CJK_WORDS` sorted by their last character.
    cjk: Vec<CjkWord>,
}

struct CjkWord {
    last: char,
    chars: Vec<char>,
    class: u32,
}

fn lexicon() -> &'static Lexicon {
    static LEXICON: OnceLock<Lexicon> = OnceLock::new();
    LEXICON.get_or_init(|| {
        let mut forward = TrieBuilder::default();
        let mut backward = TrieBuilder::default();
        for group in GROUPS {
            for word in group.exact.split_whitespace() {
                forward.insert(word.bytes(), group.class, 0);
            }
            for word in group.prefix.split_whitespace() {
                forward.insert(word.bytes(), 0, group.class);
            }
            for word in group.suffix.split_whitespace() {
                backward.insert(word.bytes().rev(), 0, group.class);
            }
        }
        let mut cjk: Vec<CjkWord> = CJK_WORDS
            .iter()
            .map(|&(word, class)| {
                let chars: Vec<char> = word.chars().collect();
                assert!(
                    !chars.is_empty() && chars.len() <= CJK_WORD_CHARS_MAX,
                    "{word}"
                );
                CjkWord {
                    last: chars[chars.len() - 1],
                    chars,
                    class,
                }
            })
            .collect();
        cjk.sort_by_key(|word| word.last);
        Lexicon {
            forward: forward.build(),
            backward: backward.build(),
            cjk,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_classify_by_whole_word_prefix_and_suffix() {
        let cases: [(&str, u32, u32); 16] = [
            ("Code", CODE_STRONG, 0),
            ("Bestätigungscode", CODE_STRONG, 0),
            ("kodunuz", CODE_STRONG, 0),
            ("КОД", CODE_STRONG, 0),
            ("Verification", CODE_WEAK | VERIFY, 0),
            ("doğrulama", CODE_WEAK | VERIFY, 0),
            ("postcode", ADDRESS | NOT_CODE, CODE_STRONG),
            ("promo", DENY_NEIGHBOR, 0),
            ("Bestellnummer", ORDER, 0),
            ("Telefon", PHONE, 0),
            ("Musterstraße", ADDRESS, 0),
            ("unsubscribe", UNSUBSCRIBE, 0),
            ("the", 0, u32::MAX),
            (
                "codecodecodecodecodecodecodecodecodecodecodecodecodecodecodecode",
                0,
                0,
            ),
            ("सत्यापन", CODE_WEAK, 0),
            ("الرمز", CODE_STRONG, 0),
        ];
        for (word, has, lacks) in cases {
            let class = classify(word);
            assert_eq!(class & has, has, "{word}: {class:#b}");
            assert_eq!(class & lacks, 0, "{word}: {class:#b}");
        }
    }

    #[test]
    fn cjk_words_are_found_inside_runs() {
        let cases: [(&str, u32); 4] = [
            ("您的验证码是", CODE_STRONG),
            ("認証コードは", CODE_STRONG),
            ("인증번호는", CODE_STRONG),
            ("感谢您的订单", ORDER),
        ];
        for (run, has) in cases {
            let mut matcher = CjkMatcher::default();
            for ch in run.chars() {
                assert_eq!(char_class(ch), CharClass::Cjk, "{ch}");
                matcher.push(ch);
            }
            assert_eq!(matcher.class & has, has, "{run}");
        }
    }
}
