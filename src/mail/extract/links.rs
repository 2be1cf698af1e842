//! The links of a message: every distinct http(s) URL once, in order, with the text it was
//! shown with, and which one is the verification link and which unsubscribe.
//!
//! Each occurrence of a URL is scored from three things: the words of the URL (host labels,
//! path and query words, a long random token), the words of its link text, and the words
//! just before it (`Scanner::link_context`: "click below to confirm: <URL>"). A URL keeps
//! its best occurrence. Bounded: at most `LINKS_MAX` URLs of at most `URL_BYTES_MAX` bytes,
//! texts of at most `LINK_TEXT_CHARS_MAX` characters; a repeated URL is found by a key of
//! its length and last bytes among at most `LINKS_MAX`, so each occurrence costs its own
//! length plus a constant.

use crate::mail::extract::words::{
    self, CODE_STRONG, CharClass, CjkMatcher, LINK_OTHER, UNSUBSCRIBE, VERIFY, VERIFY_WEAK,
};
use crate::mail::extract::{LINKS_MAX, Link, LinkKind, URL_BYTES_MAX};

/// A link needs this much to be the verification link.
const VERIFY_SCORE_MIN: i32 = 45;
/// ... and this much to be an unsubscribe link.
const UNSUBSCRIBE_SCORE_MIN: i32 = 40;
/// Points for what the link text says.
const TEXT_VERIFY: i32 = 50;
const TEXT_VERIFY_WEAK: i32 = 25;
const TEXT_UNSUBSCRIBE: i32 = 60;
const TEXT_OTHER: i32 = -40;
/// ... for a link text in bold or big type (a button) that says verify or sign in.
const TEXT_PROMINENT: i32 = 10;
/// ... for a link that says verify or sign in when the subject does too (and names no code).
const SUBJECT_AGREES: i32 = 10;
/// ... for the words just before the link, when its own text says nothing ("click here").
const CONTEXT_VERIFY: i32 = 30;
const CONTEXT_VERIFY_WEAK: i32 = 10;
const CONTEXT_UNSUBSCRIBE: i32 = 40;
/// ... for the URL's host labels ("verify.example.com", "unsubscribe.example.com").
const HOST_VERIFY: i32 = 20;
const HOST_VERIFY_WEAK: i32 = 5;
const HOST_UNSUBSCRIBE: i32 = 40;
/// ... for its path, query and fragment words.
const PATH_VERIFY: i32 = 45;
const PATH_VERIFY_WEAK: i32 = 15;
const PATH_UNSUBSCRIBE: i32 = 50;
const PATH_OTHER: i32 = -40;
/// ... for a long random token in it, as magic links and tracking redirects carry.
const PATH_TOKEN: i32 = 15;
/// Characters of such a token, at least.
const TOKEN_CHARS_MIN: usize = 16;
/// Hosts and link texts whose classes are remembered.
const HOSTS_REMEMBERED: usize = 4;
const TEXTS_REMEMBERED: usize = 4;

/// What the words of a URL say, worked out once per distinct URL.
#[derive(Clone, Copy, Debug, Default)]
struct UrlFacts {
    verify: i32,
    unsubscribe: i32,
    /// A verification word in the host or path.
    says_verify: bool,
    has_token: bool,
    /// A social site, an app store, a help or policy host: never the verification link.
    never_verify: bool,
}

#[derive(Debug)]
struct LinkEntry {
    url: String,
    hash: u64,
    text: Option<String>,
    facts: UrlFacts,
    verify: i32,
    unsubscribe: i32,
    /// Named by the List-Unsubscribe header.
    list_unsubscribe: bool,
}

/// The links found so far.
#[derive(Debug, Default)]
pub(crate) struct LinkTable {
    entries: Vec<LinkEntry>,
    /// The link-word classes of the last few hosts seen: a mail's links mostly share one
    /// or two hosts (its own, its click tracker).
    hosts: Vec<(String, u32)>,
    /// ... and of the last few link texts ("Read more", again and again).
    texts: Vec<(String, u32)>,
    /// The `words` classes of the subject.
    pub(crate) subject_class: u32,
}

impl LinkTable {
    /// Records an occurrence of `url` (http or https; others are ignored) shown with no text,
    /// after the link words `context`; returns its index, for `add_text` when it turns out
    /// to have a text.
    pub(crate) fn add(&mut self, url: &str, context: u32) -> Option<usize> {
        let url = url.trim();
        if url.len() > URL_BYTES_MAX || !is_http(url) {
            return None;
        }
        let hash = url_key(url.as_bytes());
        let found = self
            .entries
            .iter()
            .position(|entry| entry.hash == hash && entry.url == url);
        let entry_idx = match found {
            Some(entry_idx) => entry_idx,
            None if self.entries.len() < LINKS_MAX => {
                self.entries.push(LinkEntry {
                    url: url.to_string(),
                    hash,
                    text: None,
                    facts: url_facts(url, &mut self.hosts),
                    verify: 0,
                    unsubscribe: 0,
                    list_unsubscribe: false,
                });
                self.entries.len() - 1
            }
            None => return None,
        };
        self.occurrence(entry_idx, 0, context, false);
        Some(entry_idx)
    }

    /// Adds the text a link was shown with (`<a>` content, or an image's `alt`), its
    /// `text_class`, the link words before it and whether it was `prominent` (bold or big).
    pub(crate) fn add_text(
        &mut self,
        entry_idx: usize,
        text: &str,
        text_class: u32,
        context: u32,
        prominent: bool,
    ) {
        let entry = &mut self.entries[entry_idx];
        if entry.text.is_none() && !text.is_empty() {
            entry.text = Some(text.to_string());
        }
        self.occurrence(entry_idx, text_class, context, prominent);
    }

    /// `text_class(text)`, remembered for the last few texts.
    pub(crate) fn text_class(&mut self, text: &str) -> u32 {
        if let Some(&(_, class)) = self.texts.iter().find(|(seen, _)| seen == text) {
            return class;
        }
        let class = text_class(text);
        if self.texts.len() == TEXTS_REMEMBERED {
            self.texts.remove(0);
        }
        self.texts.push((text.to_string(), class));
        class
    }

    /// Marks the http(s) URLs of a List-Unsubscribe header value (`<URL>, <mailto:...>`).
    pub(crate) fn add_list_unsubscribe(&mut self, value: &str) {
        let mut rest = value;
        let mut urls = Vec::new();
        while let Some(open) = rest.find('<') {
            let Some(close) = rest[open..].find('>') else {
                break;
            };
            urls.push(&rest[open + 1..open + close]);
            rest = &rest[open + close + 1..];
        }
        if urls.is_empty() {
            urls.extend(value.split(','));
        }
        for url in urls {
            if let Some(entry_idx) = self.add(url, 0) {
                self.entries[entry_idx].list_unsubscribe = true;
            }
        }
    }

    /// The links in order, each with its kind; at most one is `Verify`.
    pub(crate) fn finish(self) -> Vec<Link> {
        let is_unsubscribe = |entry: &LinkEntry| {
            entry.list_unsubscribe
                || (entry.unsubscribe >= UNSUBSCRIBE_SCORE_MIN && entry.unsubscribe >= entry.verify)
        };
        let mut verify_idx = None;
        let mut verify_best = VERIFY_SCORE_MIN - 1;
        for (entry_idx, entry) in self.entries.iter().enumerate() {
            if entry.verify > verify_best && !is_unsubscribe(entry) {
                verify_best = entry.verify;
                verify_idx = Some(entry_idx);
            }
        }
        self.entries
            .into_iter()
            .enumerate()
            .map(|(entry_idx, entry)| {
                let kind = if is_unsubscribe(&entry) {
                    LinkKind::Unsubscribe
                } else if verify_idx == Some(entry_idx) {
                    LinkKind::Verify
                } else {
                    LinkKind::Other
                };
                Link {
                    url: entry.url,
                    text: entry.text,
                    kind,
                }
            })
            .collect()
    }

    fn occurrence(&mut self, entry_idx: usize, text_class: u32, context: u32, prominent: bool) {
        let subject_class = self.subject_class;
        let entry = &mut self.entries[entry_idx];
        let facts = entry.facts;
        let mut verify = facts.verify;
        let mut unsubscribe = facts.unsubscribe;
        let mut evidence = facts.says_verify || facts.has_token;
        if text_class & VERIFY != 0 {
            verify += TEXT_VERIFY;
            evidence = true;
        }
        if text_class & VERIFY_WEAK != 0 {
            verify += TEXT_VERIFY_WEAK;
        }
        if text_class & LINK_OTHER != 0 {
            verify += TEXT_OTHER;
        }
        if text_class & UNSUBSCRIBE != 0 {
            unsubscribe += TEXT_UNSUBSCRIBE;
        }
        let says_verify = text_class & (VERIFY | VERIFY_WEAK) != 0;
        if prominent && says_verify {
            verify += TEXT_PROMINENT;
        }
        if (says_verify || facts.says_verify)
            && subject_class & (VERIFY | VERIFY_WEAK) != 0
            && subject_class & CODE_STRONG == 0
        {
            verify += SUBJECT_AGREES;
        }
        // The words before a link describe it only when its own text says nothing
        // ("To confirm, click here"; "Unsubscribe | Privacy policy" is no unsubscribe link).
        if text_class == 0 {
            if context & VERIFY != 0 {
                verify += CONTEXT_VERIFY;
            }
            if context & VERIFY_WEAK != 0 {
                verify += CONTEXT_VERIFY_WEAK;
            }
            if context & UNSUBSCRIBE != 0 {
                unsubscribe += CONTEXT_UNSUBSCRIBE;
            }
        }
        if !evidence || facts.never_verify {
            verify = 0;
        }
        entry.verify = entry.verify.max(verify);
        entry.unsubscribe = entry.unsubscribe.max(unsubscribe);
    }
}

/// What follows `http://` or `https://` in a URL that starts with one of them.
pub(crate) fn after_scheme(url: &str) -> &str {
    let scheme_len = if url.as_bytes().get(4) == Some(&b':') {
        "http://".len()
    } else {
        "https://".len()
    };
    url.get(scheme_len..).unwrap_or("")
}

/// Whether `url` starts with `http://` or `https://` (any case) and has a host.
fn is_http(url: &str) -> bool {
    let rest = strip_prefix_ignore_case(url, "https://")
        .or_else(|| strip_prefix_ignore_case(url, "http://"));
    rest.and_then(|rest| rest.bytes().next())
        .is_some_and(|byte| !matches!(byte, b'/' | b'?' | b'#') && !byte.is_ascii_whitespace())
}

fn strip_prefix_ignore_case<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// The words of a URL (`is_http` holds): its host labels, then its path, query and
/// fragment (`scan_path`).
fn url_facts(url: &str, hosts: &mut Vec<(String, u32)>) -> UrlFacts {
    let mut facts = UrlFacts::default();
    let rest = after_scheme(url);
    let host_end = rest
        .bytes()
        .position(|byte| matches!(byte, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = &rest[..host_end];
    let host = match authority.bytes().rposition(|byte| byte == b'@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    let host = &host[..host
        .bytes()
        .position(|byte| byte == b':')
        .unwrap_or(host.len())];
    let host_class = match hosts.iter().find(|(seen, _)| seen == host) {
        Some(&(_, class)) => class,
        None => {
            let class = host
                .split(['.', '-'])
                .filter(|label| label.len() >= 3)
                .fold(0, |class, label| class | words::classify(label));
            if hosts.len() == HOSTS_REMEMBERED {
                hosts.remove(0);
            }
            hosts.push((host.to_string(), class));
            class
        }
    };
    if host_class & LINK_OTHER != 0 {
        facts.never_verify = true;
    }
    if host_class & VERIFY != 0 {
        facts.verify += HOST_VERIFY;
        facts.says_verify = true;
    } else if host_class & VERIFY_WEAK != 0 {
        facts.verify += HOST_VERIFY_WEAK;
    }
    if host_class & UNSUBSCRIBE != 0 {
        facts.unsubscribe += HOST_UNSUBSCRIBE;
    }
    let (path_class, has_token) = scan_path(&rest.as_bytes()[host_end..]);
    if path_class & VERIFY != 0 {
        facts.verify += PATH_VERIFY;
        facts.says_verify = true;
    }
    if path_class & VERIFY_WEAK != 0 {
        facts.verify += PATH_VERIFY_WEAK;
    }
    if path_class & LINK_OTHER != 0 {
        facts.verify += PATH_OTHER;
    }
    if path_class & UNSUBSCRIBE != 0 {
        facts.unsubscribe += PATH_UNSUBSCRIBE;
    }
    facts.has_token = has_token;
    if has_token {
        facts.verify += PATH_TOKEN;
    }
    facts
}

/// In one pass over a URL's path, query and fragment: the link-word classes of its words
/// (split at non-alphanumerics, `%XX` escapes and lowercase-to-uppercase steps; only words
/// of three letters or more and no digits are looked up, as link words are such, and ids
/// and tokens are most of a long URL), and whether it carries a long random token (a run of
/// letters, digits, `_` and `-` with both letters and digits).
fn scan_path(path: &[u8]) -> (u32, bool) {
    let mut class = 0;
    let mut has_token = false;
    let mut word_start = None;
    let mut word_has_digit = false;
    let (mut run_len, mut run_kinds) = (0, 0);
    let mut previous = 0;
    let mut byte_idx = 0;
    while byte_idx <= path.len() {
        // A `/` past the end ends the last word and run.
        let byte = path.get(byte_idx).copied().unwrap_or(b'/');
        let kind = PATH_BYTES[usize::from(byte)];
        let camel_step = kind & UPPER != 0 && previous & LOWER != 0;
        if (kind & (LOWER | UPPER | DIGIT) == 0 || camel_step)
            && let Some(start) = word_start.take()
        {
            let word = &path[start..byte_idx];
            if word.len() >= 3 && !word_has_digit {
                class |= words::classify_ascii(word);
            }
        }
        if kind & RUN != 0 {
            run_len += 1;
            run_kinds |= kind;
        } else {
            has_token |= run_len >= TOKEN_CHARS_MIN
                && run_kinds & DIGIT != 0
                && run_kinds & (LOWER | UPPER) != 0;
            (run_len, run_kinds) = (0, 0);
        }
        if byte == b'%' && byte_idx + 2 < path.len() {
            byte_idx += 3;
            previous = 0;
            continue;
        }
        if kind & (LOWER | UPPER | DIGIT) != 0 && word_start.is_none() {
            word_start = Some(byte_idx);
            word_has_digit = false;
        }
        word_has_digit |= kind & DIGIT != 0;
        previous = kind;
        byte_idx += 1;
    }
    (class, has_token)
}

/// `PATH_BYTES` flags: kinds of letters and digits, and bytes of a token run.
const LOWER: u8 = 1;
const UPPER: u8 = 2;
const DIGIT: u8 = 4;
const RUN: u8 = 8;
const PATH_BYTES: [u8; 256] = {
    let mut kinds = [0; 256];
    let mut byte = 0;
    while byte < 256 {
        kinds[byte] = match byte as u8 {
            b'a'..=b'z' => LOWER | RUN,
            b'A'..=b'Z' => UPPER | RUN,
            b'0'..=b'9' => DIGIT | RUN,
            b'_' | b'-' => RUN,
            _ => 0,
        };
        byte += 1;
    }
    kinds
};

/// The link-word classes of a link's text.
fn text_class(text: &str) -> u32 {
    let mut class = 0;
    let mut cjk = CjkMatcher::default();
    let mut word_start = None;
    let mut in_cjk = false;
    for (byte_idx, ch) in text.char_indices().chain([(text.len(), ' ')]) {
        let char_class = words::char_class(ch);
        let is_word = matches!(char_class, CharClass::Letter | CharClass::Digit(_));
        if !is_word {
            if let Some(start) = word_start.take() {
                class |= words::classify(&text[start..byte_idx]);
            }
        } else if word_start.is_none() {
            word_start = Some(byte_idx);
        }
        if char_class == CharClass::Cjk {
            if !in_cjk {
                cjk.reset();
                in_cjk = true;
            }
            cjk.push(ch);
            class |= cjk.class;
        } else {
            in_cjk = false;
        }
    }
    class & (VERIFY | VERIFY_WEAK | UNSUBSCRIBE | LINK_OTHER)
}

/// A hash of a URL, eight bytes at a time, to find a repeated URL among at most
/// `LINKS_MAX` with one compare each (equal hashes are confirmed by comparing the URLs).
fn url_key(url: &[u8]) -> u64 {
    const MULTIPLIER: u64 = 0x517c_c1b7_2722_0a95;
    let mix = |hash: u64, chunk: &[u8]| {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        (hash.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(MULTIPLIER)
    };
    let chunks = url.chunks_exact(8);
    let tail = chunks.remainder();
    mix(chunks.fold(url.len() as u64, mix), tail)
}
