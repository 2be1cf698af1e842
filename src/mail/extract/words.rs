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
    let mut lower = [0u8; WORD_BYTES_MAX];
    if word.is_ascii() {
        return classify_ascii(word.as_bytes());
    }
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
    // Lowercased on the way down the tries, with no copy.
    let complete = word.len() <= WORD_BYTES_MAX;
    let word = &word[..word.len().min(WORD_BYTES_MAX)];
    let lexicon = lexicon();
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

/// A byte trie whose nodes carry the classes of words ending there (`exact`) and of words
/// starting with the path to there (`prefix`). Each step is one probe of a hash table of
/// all edges, so a walk costs the word's length whatever the lexicon's size; most words
/// are turned away before the first step by a bitmap of the lexicon's first two bytes.
struct Trie {
    /// One bit per first two bytes of any word in the trie (the second is 0 for a word of
    /// one byte).
    pairs: Box<[u64]>,
    /// One bit per hash of the first three bytes of any word of three bytes or more: a
    /// longer word is in no list unless its bit is set (about one English word in fifty
    /// gets past this, against one in two past `pairs`). Unused when a prefix of one or
    /// two bytes is listed (`short_prefixes`).
    triples: Box<[u64]>,
    short_prefixes: bool,
    /// Per node: (exact, prefix) classes; node 0 is the root.
    nodes: Vec<(u32, u32)>,
    /// Open addressing, linear probing: (node << 8 | byte, child), `EDGE_EMPTY` keys free.
    /// Invariant: its length is a power of two, at least twice the number of edges.
    edges: Box<[(u32, u32)]>,
}

const EDGE_EMPTY: u32 = u32::MAX;

/// One node of a trie being built: its (byte, child) edges, exact and prefix classes.
type BuilderNode = (Vec<(u8, u32)>, u32, u32);

/// A trie being built, edges per node.
#[derive(Default)]
struct TrieBuilder {
    nodes: Vec<BuilderNode>,
}

impl TrieBuilder {
    fn insert(&mut self, bytes: impl Iterator<Item = u8>, exact: u32, prefix: u32) {
        if self.nodes.is_empty() {
            self.nodes.push((Vec::new(), 0, 0));
        }
        let mut node_idx = 0;
        for byte in bytes {
            let found = self.nodes[node_idx]
                .0
                .iter()
                .find(|&&(edge_byte, _)| edge_byte == byte)
                .map(|&(_, child)| child as usize);
            node_idx = match found {
                Some(child) => child,
                None => {
                    let child = self.nodes.len();
                    self.nodes.push((Vec::new(), 0, 0));
                    let child_u32 = u32::try_from(child).expect("lexicon fits in u32 nodes");
                    self.nodes[node_idx].0.push((byte, child_u32));
                    child
                }
            };
        }
        self.nodes[node_idx].1 |= exact;
        self.nodes[node_idx].2 |= prefix;
    }

    fn build(self) -> Trie {
        let n_edges: usize = self.nodes.iter().map(|(edges, _, _)| edges.len()).sum();
        let mut trie = Trie {
            pairs: vec![0; 256 * 256 / 64].into_boxed_slice(),
            triples: vec![0; TRIPLE_BITS / 64].into_boxed_slice(),
            short_prefixes: false,
            nodes: self
                .nodes
                .iter()
                .map(|&(_, exact, prefix)| (exact, prefix))
                .collect(),
            edges: vec![(EDGE_EMPTY, 0); (2 * n_edges).next_power_of_two().max(2)]
                .into_boxed_slice(),
        };
        for (node_idx, (edges, _, _)) in self.nodes.iter().enumerate() {
            for &(byte, child) in edges {
                let key = edge_key(node_idx as u32, byte);
                let mut slot = trie.slot(key);
                while trie.edges[slot].0 != EDGE_EMPTY {
                    slot = (slot + 1) & (trie.edges.len() - 1);
                }
                trie.edges[slot] = (key, child);
            }
        }
        let Some((root_edges, _, _)) = self.nodes.first() else {
            return trie;
        };
        for &(first, child) in root_edges {
            let (child_edges, child_exact, child_prefix) = &self.nodes[child as usize];
            if *child_exact != 0 || *child_prefix != 0 {
                // A word of one byte, or a prefix of one: any second byte may follow.
                for second in 0..=u8::MAX {
                    trie.set_pair(first, second);
                }
            }
            trie.short_prefixes |= *child_prefix != 0;
            for &(second, grandchild) in child_edges {
                trie.set_pair(first, second);
                let (grandchild_edges, _, grandchild_prefix) = &self.nodes[grandchild as usize];
                trie.short_prefixes |= *grandchild_prefix != 0;
                for &(third, _) in grandchild_edges {
                    let bit = triple_bit(first, second, third);
                    trie.triples[bit / 64] |= 1 << (bit % 64);
                }
            }
        }
        trie
    }
}

/// Bits of `Trie::triples`.
const TRIPLE_BITS: usize = 1 << 16;

fn triple_bit(first: u8, second: u8, third: u8) -> usize {
    let key = u32::from(first) << 16 | u32::from(second) << 8 | u32::from(third);
    (key.wrapping_mul(0x9E37_79B1) >> 16) as usize
}

fn edge_key(node_idx: u32, byte: u8) -> u32 {
    node_idx << 8 | u32::from(byte)
}

impl Trie {
    fn set_pair(&mut self, first: u8, second: u8) {
        let bit = usize::from(first) << 8 | usize::from(second);
        self.pairs[bit / 64] |= 1 << (bit % 64);
    }

    fn has_pair(&self, first: u8, second: u8) -> bool {
        let bit = usize::from(first) << 8 | usize::from(second);
        self.pairs[bit / 64] & (1 << (bit % 64)) != 0
    }

    /// Fibonacci hashing: the product's high bits, which depend on all of the key's.
    fn slot(&self, key: u32) -> usize {
        let bits = self.edges.len().trailing_zeros();
        (key.wrapping_mul(0x9E37_79B1) >> (32 - bits)) as usize
    }

    /// The child of `node_idx` by `byte`; a few probes at most (the table is half empty).
    fn child(&self, node_idx: u32, byte: u8) -> Option<u32> {
        let key = edge_key(node_idx, byte);
        let mut slot = self.slot(key);
        loop {
            let (slot_key, child) = self.edges[slot];
            if slot_key == key {
                return Some(child);
            }
            if slot_key == EDGE_EMPTY {
                return None;
            }
            slot = (slot + 1) & (self.edges.len() - 1);
        }
    }

    /// The `exact` classes of the node the whole input leads to (0 if it falls off the
    /// trie) and the union of `prefix` classes along the way.
    fn walk(&self, mut bytes: impl Iterator<Item = u8> + Clone) -> (u32, u32) {
        let mut peek = bytes.clone();
        let Some(first) = peek.next() else {
            return (0, 0);
        };
        let second = peek.next().unwrap_or(0);
        if !self.has_pair(first, second) {
            return (0, 0);
        }
        if let Some(third) = peek.next()
            && !self.short_prefixes
        {
            let bit = triple_bit(first, second, third);
            if self.triples[bit / 64] & (1 << (bit % 64)) == 0 {
                return (0, 0);
            }
        }
        let mut node_idx = 0;
        let mut prefix = 0;
        for byte in bytes.by_ref() {
            match self.child(node_idx, byte) {
                Some(child) => {
                    node_idx = child;
                    prefix |= self.nodes[child as usize].1;
                }
                None => return (0, prefix),
            }
        }
        (self.nodes[node_idx as usize].0, prefix)
    }
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
