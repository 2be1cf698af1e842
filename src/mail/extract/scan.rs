//! The tokenizer every input goes through: text arrives in pieces (a subject, a text body,
//! or the text nodes of HTML between tags and entities), and comes out as tokens in a ring
//! of the last `RING_TOKENS`, with what separated them (`Sep`), plus the URLs found in it.
//!
//! A token is a run of letters and digits of scripts written with spaces, or a run of
//! Chinese, Japanese or Korean characters. Only its first `TOKEN_BYTES_MAX` bytes are kept:
//! a longer token is neither a code nor a keyword. What a word means is looked up lazily
//! (`Scanner::class_of`), only for tokens near a candidate code or a link, and cached in its
//! ring slot, so a token is classified at most once.
//!
//! Bounded by construction: the ring, the separator summary and the URL buffer are fixed in
//! size, each byte is looked at once by `feed`, and each committed token costs O(1) here plus
//! at most one candidate evaluation in `codes`, which looks at a fixed window of the ring.

use crate::mail::extract::Collector;
use crate::mail::extract::text_url::UrlBuf;
use crate::mail::extract::token::{
    ASCII_SHAPES, CLASS_UNKNOWN, Cand, SEP_CELL, SEP_END, SEP_LINE, SEP_SPACE, SEP_START,
    SHAPE_CJK, SHAPE_DIGIT, SHAPE_LETTER, SHAPE_LONG, SHAPE_NON_ASCII, Sep, TOKEN_BYTES_MAX, Token,
};
use crate::mail::extract::words::{
    self, CharClass, CjkMatcher, LINK_OTHER, UNSUBSCRIBE, VERIFY, VERIFY_WEAK,
};

/// Tokens kept: enough for a candidate's window (`BACK_TOKENS` before it, up to 8 digit
/// groups, `FORWARD_TOKENS` after it) and the slot being built.
pub(crate) const RING_TOKENS: usize = 64;
/// How far back a candidate looks for keywords and decoy contexts.
pub(crate) const BACK_TOKENS: usize = 20;
/// How far ahead ("482913 is your code"); a candidate is judged once this many tokens
/// followed it, or at the end.
pub(crate) const FORWARD_TOKENS: usize = 8;
/// A word this short is copied into its token with one fixed-size copy.
const SHORT_COPY_BYTES: usize = 16;
/// Tokens before a link looked at for its context ("click below to verify: <URL>").
const LINK_CONTEXT_TOKENS: usize = 10;
/// Positions (see `Token::pos`) within which a word counts as the context of a link.
const LINK_CONTEXT_POSITIONS: u32 = 16;
/// ... and an unsubscribe word ("To unsubscribe, click here").
const LINK_CONTEXT_UNSUBSCRIBE_POSITIONS: u32 = 6;
/// Positions a line break adds between two tokens (a table cell adds one).
const LINE_POSITIONS: u32 = 2;
/// Line breaks counted in one separator (a blank line is a little farther than a break).
const LINES_COUNTED_MAX: u32 = 3;

/// Which input a scanner reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Subject,
    Body,
}

/// A break between blocks of text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Break {
    /// A line end, a paragraph, a block element.
    Line,
    /// A table cell boundary: a break for "alone on its line", not for split digits.
    Cell,
}

/// The tokenizer's state for one input; `reset` starts the next input.
pub(crate) struct Scanner {
    pub(crate) source: Source,
    /// Plain text: a line end is a break. HTML: it is a space (except in `<pre>`).
    pub(crate) newline_is_break: bool,
    /// Whether the slot `n_tokens` holds a token being built.
    pub(crate) building: bool,
    cjk: CjkMatcher,
    /// The separator since the last token.
    pub(crate) sep: Sep,
    pub(crate) url: UrlBuf,
    /// How much of `://` followed a token `http` or `https` (0 when none): the URL starts
    /// when all of it did, which may be in a later piece of text.
    pub(crate) scheme_chars: u8,
    /// Invariant: slot `idx % RING_TOKENS` holds token `idx` for the last `RING_TOKENS`
    /// tokens (the slot of `n_tokens` is the one being built).
    ring: Box<[Token; RING_TOKENS]>,
    pub(crate) n_tokens: usize,
    pos: u32,
    pub(crate) run: crate::mail::extract::codes::GroupRun,
}

impl Scanner {
    pub(crate) fn new() -> Scanner {
        Scanner {
            source: Source::Body,
            newline_is_break: true,
            building: false,
            cjk: CjkMatcher::default(),
            sep: Sep::default(),
            url: UrlBuf::default(),
            scheme_chars: 0,
            ring: Box::new([Token::EMPTY; RING_TOKENS]),
            n_tokens: 0,
            pos: 0,
            run: Default::default(),
        }
    }

    /// Starts reading a new input (the URL buffer's memory is kept).
    pub(crate) fn reset(&mut self, source: Source, newline_is_break: bool) {
        self.source = source;
        self.newline_is_break = newline_is_break;
        self.building = false;
        self.sep = Sep::default();
        self.sep.push('\n', SEP_START);
        self.url.active = false;
        self.scheme_chars = 0;
        self.n_tokens = 0;
        self.pos = 0;
        self.run = Default::default();
    }

    /// Reads `text`, which continues what came before (no break in between).
    pub(crate) fn feed(&mut self, text: &str, style: u8, out: &mut Collector) {
        let bytes = text.as_bytes();
        let mut byte_idx = 0;
        while byte_idx < bytes.len() {
            if self.url.active {
                byte_idx = self.url_chars(text, byte_idx, out);
                continue;
            }
            let byte = bytes[byte_idx];
            if self.scheme_chars > 0 {
                if byte == b'/' {
                    byte_idx += 1;
                    self.scheme_chars += 1;
                    if usize::from(self.scheme_chars) == "://".len() {
                        self.start_url();
                    }
                    continue;
                }
                self.flush_scheme(out);
            }
            if byte.is_ascii_alphanumeric() {
                let start = byte_idx;
                let mut shape = 0;
                for &next in &bytes[byte_idx..] {
                    let next_shape = ASCII_SHAPES[usize::from(next)];
                    if next_shape == 0 {
                        break;
                    }
                    shape |= next_shape;
                    byte_idx += 1;
                }
                let run = &bytes[start..byte_idx];
                // The common case: a whole word, followed in this piece by ASCII punctuation
                // or space (not `:`, which may make it a URL's scheme).
                let whole = !self.building
                    && bytes
                        .get(byte_idx)
                        .is_some_and(|&next| next.is_ascii() && next != b':');
                if whole {
                    self.whole_word(run, &bytes[start..], shape, style, out);
                } else {
                    self.word_bytes(run, &bytes[start..], shape, style, out);
                }
            } else if byte.is_ascii() {
                byte_idx += 1;
                match byte {
                    // Nothing to end (the checks above): the fast way of `space`.
                    b' ' if !self.building => self.sep.push(' ', SEP_SPACE),
                    b'\n' if self.newline_is_break => self.brk(Break::Line, out),
                    b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c => self.space(out),
                    b':' if self.is_scheme() => self.scheme_chars = 1,
                    _ => self.punct(byte as char, out),
                }
            } else {
                let ch = text[byte_idx..].chars().next().unwrap_or('\u{FFFD}');
                byte_idx += ch.len_utf8();
                self.non_ascii(ch, style, out);
            }
        }
    }

    /// A break between blocks; it also ends a URL.
    pub(crate) fn brk(&mut self, kind: Break, out: &mut Collector) {
        self.end_token(out);
        match kind {
            Break::Line => {
                self.sep.push('\n', SEP_LINE);
                self.sep.n_lines = self.sep.n_lines.saturating_add(1);
            }
            Break::Cell => self.sep.push('\n', SEP_CELL),
        }
    }

    /// The edge of a link in HTML: a URL written as text ends here.
    pub(crate) fn boundary(&mut self, out: &mut Collector) {
        if self.url.active {
            self.end_url(out);
        }
    }

    /// Ends the input: judges the candidates still waiting for their following tokens.
    pub(crate) fn finish(&mut self, out: &mut Collector) {
        self.end_token(out);
        self.sep.flags |= SEP_END;
        self.close_run();
        for idx in self.n_tokens.saturating_sub(FORWARD_TOKENS)..self.n_tokens {
            self.finalize(idx, out);
        }
    }

    /// Token `idx`, which must be one of the last `RING_TOKENS` committed.
    pub(crate) fn tok(&self, idx: usize) -> &Token {
        debug_assert!(idx < self.n_tokens && idx + RING_TOKENS > self.n_tokens);
        &self.ring[idx % RING_TOKENS]
    }

    pub(crate) fn tok_mut(&mut self, idx: usize) -> &mut Token {
        debug_assert!(idx < self.n_tokens && idx + RING_TOKENS > self.n_tokens);
        &mut self.ring[idx % RING_TOKENS]
    }

    /// The separator after token `idx`.
    pub(crate) fn sep_after(&self, idx: usize) -> Sep {
        if idx + 1 < self.n_tokens {
            self.tok(idx + 1).sep_before
        } else {
            self.sep
        }
    }

    /// The classes of token `idx`, looked up once.
    pub(crate) fn class_of(&mut self, idx: usize) -> u32 {
        let token = self.tok_mut(idx);
        if token.class == CLASS_UNKNOWN {
            token.class =
                if token.shape & SHAPE_LONG != 0 || token.shape == SHAPE_DIGIT || token.n_bytes < 2
                {
                    0
                } else if token.shape & SHAPE_NON_ASCII == 0 {
                    words::classify_ascii(&token.bytes[..token.n_bytes])
                } else {
                    words::classify(token.text())
                };
        }
        token.class
    }

    /// Link words (`VERIFY`, `VERIFY_WEAK`, `UNSUBSCRIBE`, `LINK_OTHER`) just before
    /// what comes next: the context of a link that starts here.
    pub(crate) fn link_context(&mut self) -> u32 {
        self.link_context_before(self.n_tokens)
    }

    /// `link_context` of a link that started before token `end`, if the tokens before it
    /// are still in the ring (0 if not).
    pub(crate) fn link_context_before(&mut self, end: usize) -> u32 {
        let Some(last_idx) = end.checked_sub(1) else {
            return 0;
        };
        let oldest = end.saturating_sub(LINK_CONTEXT_TOKENS);
        if oldest + RING_TOKENS <= self.n_tokens {
            return 0;
        }
        let last_pos = self.tok(last_idx).pos;
        let mut context = 0;
        for idx in (oldest..end).rev() {
            let distance = last_pos - self.tok(idx).pos;
            if distance > LINK_CONTEXT_POSITIONS {
                break;
            }
            let class = self.class_of(idx);
            context |= class & (VERIFY | VERIFY_WEAK | LINK_OTHER);
            if distance <= LINK_CONTEXT_UNSUBSCRIBE_POSITIONS {
                context |= class & UNSUBSCRIBE;
            }
        }
        context
    }

    pub(crate) fn building_token(&mut self) -> &mut Token {
        &mut self.ring[self.n_tokens % RING_TOKENS]
    }

    fn start_token(&mut self, shape: u8) {
        let sep = std::mem::take(&mut self.sep);
        let token = self.building_token();
        // Field by field: the bytes past `n_bytes` are never read, so they need no zeroing.
        token.n_bytes = 0;
        token.n_chars = 0;
        token.shape = shape;
        token.style = 0;
        token.sep_before = sep;
        token.class = CLASS_UNKNOWN;
        token.cand = Cand::No;
        self.building = true;
        self.cjk.reset();
    }

    /// Adds ASCII letters and digits, of `SHAPE_*` `shape`, to the word being built.
    /// `rest` is `run` and what follows it in the same piece, which a short run's copy may
    /// read past `run` (only `n_bytes` bytes of a token are ever read).
    fn word_bytes(&mut self, run: &[u8], rest: &[u8], shape: u8, style: u8, out: &mut Collector) {
        if self.building && self.building_token().shape & SHAPE_CJK != 0 {
            self.commit(out);
        }
        if !self.building {
            self.start_token(0);
        }
        let token = self.building_token();
        token.shape |= shape;
        let room = TOKEN_BYTES_MAX - token.n_bytes;
        if run.len() > room {
            token.shape |= SHAPE_LONG;
        }
        let kept = run.len().min(room);
        let start = token.n_bytes;
        match (
            rest.first_chunk::<SHORT_COPY_BYTES>(),
            token
                .bytes
                .get_mut(start..)
                .and_then(|tail| tail.first_chunk_mut::<SHORT_COPY_BYTES>()),
        ) {
            // Most words: one fixed-size copy instead of a call to `memcpy`.
            (Some(source), Some(target)) if kept <= SHORT_COPY_BYTES => *target = *source,
            _ => token.bytes[start..start + kept].copy_from_slice(&run[..kept]),
        }
        token.n_bytes += kept;
        token.n_chars = token.n_chars.saturating_add(run.len() as u32);
        token.style |= style;
    }

    fn non_ascii(&mut self, ch: char, style: u8, out: &mut Collector) {
        match words::char_class(ch) {
            CharClass::Digit(digit) => self.word_bytes(&[digit], &[digit], SHAPE_DIGIT, style, out),
            CharClass::Letter => {
                if self.building && self.building_token().shape & SHAPE_CJK != 0 {
                    self.commit(out);
                }
                if !self.building {
                    self.start_token(0);
                }
                let token = self.building_token();
                let mut utf8 = [0u8; 4];
                let encoded = ch.encode_utf8(&mut utf8).as_bytes();
                if token.n_bytes + encoded.len() <= TOKEN_BYTES_MAX {
                    token.bytes[token.n_bytes..token.n_bytes + encoded.len()]
                        .copy_from_slice(encoded);
                    token.n_bytes += encoded.len();
                } else {
                    token.shape |= SHAPE_LONG;
                }
                token.shape |= SHAPE_NON_ASCII;
                token.n_chars = token.n_chars.saturating_add(1);
                token.style |= style;
            }
            CharClass::Cjk => {
                if self.building && self.building_token().shape & SHAPE_CJK == 0 {
                    self.commit(out);
                }
                if !self.building {
                    self.start_token(SHAPE_CJK);
                    self.building_token().cjk_first = ch;
                }
                self.cjk.push(ch);
                let token = self.building_token();
                token.n_chars = token.n_chars.saturating_add(1);
                token.style |= style;
            }
            CharClass::Space | CharClass::Newline => self.space(out),
            CharClass::Punct => self.punct(ch, out),
        }
    }

    fn space(&mut self, out: &mut Collector) {
        self.end_token(out);
        self.sep.push(' ', SEP_SPACE);
    }

    fn punct(&mut self, ch: char, out: &mut Collector) {
        self.end_token(out);
        self.sep.punct(ch);
    }

    fn end_token(&mut self, out: &mut Collector) {
        if self.scheme_chars > 0 {
            self.flush_scheme(out);
        }
        if self.url.active {
            self.end_url(out);
        }
        if self.building {
            self.commit(out);
        }
    }

    /// `word_bytes` and `commit` in one, for a whole ASCII word when no token is being
    /// built: most tokens of most mail.
    fn whole_word(&mut self, run: &[u8], rest: &[u8], shape: u8, style: u8, out: &mut Collector) {
        debug_assert!(!self.building);
        let sep = std::mem::take(&mut self.sep);
        let lines = u32::from(sep.n_lines).min(LINES_COUNTED_MAX);
        let cell = u32::from(sep.flags & SEP_CELL != 0 && lines == 0);
        let pos = self.pos.saturating_add(1 + LINE_POSITIONS * lines + cell);
        let n_chars = run.len();
        let long = n_chars > TOKEN_BYTES_MAX;
        let cand = if long {
            Cand::No
        } else if shape == SHAPE_DIGIT {
            if (4..=8).contains(&n_chars) {
                Cand::Digits
            } else {
                Cand::No
            }
        } else if shape & SHAPE_DIGIT != 0 && (4..=10).contains(&n_chars) {
            Cand::Alnum
        } else {
            Cand::No
        };
        let token_idx = self.n_tokens;
        let token = &mut self.ring[token_idx % RING_TOKENS];
        let kept = n_chars.min(TOKEN_BYTES_MAX);
        match (
            rest.first_chunk::<SHORT_COPY_BYTES>(),
            token.bytes.first_chunk_mut::<SHORT_COPY_BYTES>(),
        ) {
            // Most words: one fixed-size copy instead of a call to `memcpy`.
            (Some(source), Some(target)) if kept <= SHORT_COPY_BYTES => *target = *source,
            _ => token.bytes[..kept].copy_from_slice(&run[..kept]),
        }
        token.n_bytes = kept;
        token.n_chars = u32::try_from(n_chars).unwrap_or(u32::MAX);
        token.shape = if long { shape | SHAPE_LONG } else { shape };
        token.style = style;
        token.pos = pos;
        token.sep_before = sep;
        token.class = CLASS_UNKNOWN;
        token.cand = cand;
        self.pos = pos;
        self.n_tokens += 1;
        self.committed(token_idx, out);
    }

    /// Moves the token being built into the ring and judges the candidate that now has
    /// `FORWARD_TOKENS` tokens after it.
    pub(crate) fn commit(&mut self, out: &mut Collector) {
        debug_assert!(self.building);
        let token_idx = self.n_tokens;
        let cjk_class = self.cjk.class;
        let sep = self.building_token().sep_before;
        let lines = u32::from(sep.n_lines).min(LINES_COUNTED_MAX);
        let cell = u32::from(sep.flags & SEP_CELL != 0 && lines == 0);
        let pos = self.pos.saturating_add(1 + LINE_POSITIONS * lines + cell);
        let token = self.building_token();
        token.pos = pos;
        if token.shape & SHAPE_CJK != 0 {
            token.class = cjk_class;
        } else if token.shape & (SHAPE_NON_ASCII | SHAPE_LONG) == 0 {
            let n_chars = token.n_chars;
            token.cand = if token.is_digits() && (4..=8).contains(&n_chars) {
                Cand::Digits
            } else if token.shape & SHAPE_DIGIT != 0
                && token.shape & SHAPE_LETTER != 0
                && (4..=10).contains(&n_chars)
            {
                Cand::Alnum
            } else {
                Cand::No
            };
        }
        self.pos = pos;
        self.building = false;
        self.n_tokens += 1;
        self.committed(token_idx, out);
    }

    /// What follows a commit of token `token_idx`: the run of digit groups, and the
    /// candidate `FORWARD_TOKENS` back.
    #[inline]
    fn committed(&mut self, token_idx: usize, out: &mut Collector) {
        if self.source == Source::Subject {
            out.subject_class |= self.class_of(token_idx);
        }
        self.run_commit(token_idx);
        if let Some(judged_idx) = token_idx.checked_sub(FORWARD_TOKENS)
            && self.tok(judged_idx).cand != Cand::No
        {
            self.finalize(judged_idx, out);
        }
    }
}
