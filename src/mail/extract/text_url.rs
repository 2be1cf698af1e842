//! URLs written as text: a token `http` or `https` followed by `://` (possibly in the next
//! piece of text) starts one; it runs to a space, a quote, an angle bracket or a character
//! that is neither a letter nor a digit outside ASCII, and trailing punctuation that is not
//! part of it (`.,;:!?`, an unbalanced `)`) goes back to the text. At most `URL_BYTES_MAX`
//! bytes are kept; a longer URL is read to its end and dropped.

use crate::mail::extract::links::after_scheme;
use crate::mail::extract::scan::Scanner;
use crate::mail::extract::scan::Source;
use crate::mail::extract::token::{SEP_URL, SHAPE_LONG};
use crate::mail::extract::words::{self, CharClass};
use crate::mail::extract::{Collector, URL_BYTES_MAX};

/// A URL being read from text.
#[derive(Debug, Default)]
pub(crate) struct UrlBuf {
    pub(crate) active: bool,
    pub(crate) url: String,
    pub(crate) too_long: bool,
}

impl Scanner {
    /// Whether the token being built is `http` or `https` (any case), in a body.
    pub(crate) fn is_scheme(&mut self) -> bool {
        if self.source != Source::Body || !self.building {
            return false;
        }
        let token = self.building_token();
        let scheme = token.text();
        token.shape & SHAPE_LONG == 0
            && (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
    }

    /// `://` followed the scheme: the URL replaces the token being built.
    pub(crate) fn start_url(&mut self) {
        let scheme = self.building_token().text().to_ascii_lowercase();
        self.building = false;
        self.scheme_chars = 0;
        self.url.active = true;
        self.url.too_long = false;
        self.url.url.clear();
        self.url.url.push_str(&scheme);
        self.url.url.push_str("://");
    }

    /// Not a URL after all: the scheme is a word, and `:` and `/` are punctuation.
    pub(crate) fn flush_scheme(&mut self, out: &mut Collector) {
        let n_chars = self.scheme_chars;
        self.scheme_chars = 0;
        self.commit(out);
        self.sep.punct(':');
        for _ in 1..n_chars {
            self.sep.punct('/');
        }
    }

    /// Reads URL characters from `text[byte_idx..]`; returns where it stopped (at the
    /// first character that ends the URL, after ending it, or at the end of `text`).
    pub(crate) fn url_chars(
        &mut self,
        text: &str,
        mut byte_idx: usize,
        out: &mut Collector,
    ) -> usize {
        let bytes = text.as_bytes();
        while byte_idx < bytes.len() {
            let byte = bytes[byte_idx];
            let n_bytes = if byte.is_ascii() {
                let start = byte_idx;
                while byte_idx < bytes.len() && is_url_byte(bytes[byte_idx]) {
                    byte_idx += 1;
                }
                if byte_idx == start {
                    self.end_url(out);
                    return byte_idx;
                }
                self.url_push(&text[start..byte_idx]);
                continue;
            } else {
                let ch = text[byte_idx..].chars().next().unwrap_or('\u{FFFD}');
                match words::char_class(ch) {
                    CharClass::Letter | CharClass::Digit(_) => ch.len_utf8(),
                    _ => {
                        self.end_url(out);
                        return byte_idx;
                    }
                }
            };
            self.url_push(&text[byte_idx..byte_idx + n_bytes]);
            byte_idx += n_bytes;
        }
        byte_idx
    }

    fn url_push(&mut self, part: &str) {
        if self.url.url.len() + part.len() > URL_BYTES_MAX {
            self.url.too_long = true;
        } else if !self.url.too_long {
            self.url.url.push_str(part);
        }
    }

    /// Ends the URL being read: trailing punctuation that is not part of it is given back
    /// to the text, and the URL goes to the links if it has a host.
    pub(crate) fn end_url(&mut self, out: &mut Collector) {
        self.url.active = false;
        let url = &mut self.url.url;
        // Parentheses are counted only when a `)` is at the end (rare), and once.
        let mut parens: Option<(usize, usize)> = None;
        let mut kept_len = url.len();
        while let Some(&last) = url.as_bytes()[..kept_len].last() {
            let trailing = match last {
                b'.' | b',' | b';' | b':' | b'!' | b'?' => true,
                b')' => {
                    let (n_open, n_close) = parens.get_or_insert_with(|| {
                        let count = |paren| url.bytes().filter(|&byte| byte == paren).count();
                        (count(b'('), count(b')'))
                    });
                    let unbalanced = *n_close > *n_open;
                    *n_close -= usize::from(unbalanced);
                    unbalanced
                }
                _ => false,
            };
            if !trailing {
                break;
            }
            kept_len -= 1;
        }
        let trailing: [u8; 8] = std::array::from_fn(|byte_idx| {
            url.as_bytes()
                .get(kept_len + byte_idx)
                .copied()
                .unwrap_or(0)
        });
        let n_trailing = (url.len() - kept_len).min(trailing.len());
        url.truncate(kept_len);
        // It starts with the scheme and `://` it was found with, which no trailing
        // punctuation reaches.
        let has_host = after_scheme(url)
            .bytes()
            .next()
            .is_some_and(|byte| !matches!(byte, b'/' | b'?' | b'#'));
        if has_host && !self.url.too_long {
            let context = self.link_context();
            out.links.add(&self.url.url, context);
        }
        self.sep.push('\u{FFFC}', SEP_URL);
        self.sep.n_punct = self.sep.n_punct.saturating_add(1);
        for &byte in &trailing[..n_trailing] {
            self.sep.punct(byte as char);
        }
    }
}

/// ASCII bytes a URL in text may contain: printable, not a space, a quote or an angle
/// bracket.
fn is_url_byte(byte: u8) -> bool {
    byte > b' ' && byte < 0x7f && !matches!(byte, b'<' | b'>' | b'"' | b'\'' | b'`')
}
