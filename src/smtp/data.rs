//! The DATA body scanner: finds `<CRLF>.<CRLF>`, undoes dot-stuffing, and checks lines.
//!
//! It takes the body in any chunking and keeps the partial-terminator state itself, so
//! the caller never holds body bytes back. No IO, never panics.
//!
//! Smuggling defence (CVE-2023-51764 and friends): the *only* end of data is CRLF "." CRLF
//! where both CRLFs are real pairs. A bare LF or bare CR anywhere does not start or end a
//! line for this purpose; it marks the message as refused instead, so whatever a client
//! hides after `\n.\n` or `\r.\r` stays body text of a message that is never stored.

use memchr::memchr2;

/// Longest text line including its CRLF (RFC 5321 4.5.3.1.6).
pub const TEXT_LINE_BYTES_MAX: usize = 1000;

/// Where the scanner is relative to lines and the terminator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Just after a CRLF (or at the start of the body): a `.` here is special.
    LineStart,
    /// Saw `.` at the start of a line.
    Dot,
    /// Saw `.` CR at the start of a line: LF now ends the data.
    DotCr,
    /// Inside a line.
    InLine,
    /// Saw CR inside a line: LF now ends the line.
    Cr,
}

/// Why a finished body is refused; checked in this order, the first that applies wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A CR not followed by LF, or an LF not preceded by CR.
    BareNewline,
    /// A line over `TEXT_LINE_BYTES_MAX` octets including CRLF.
    LineTooLong,
    /// More than the body limit after dot-unstuffing.
    TooBig,
}

/// Scanner state for one DATA body. Reset it before each body.
#[derive(Debug, Clone)]
pub struct DataScanner {
    state: State,
    /// Octets of the current line so far as sent (stuffing dot, CR and LF included).
    line_bytes: usize,
    bare_newline: bool,
    line_too_long: bool,
    too_big: bool,
}

impl Default for DataScanner {
    fn default() -> Self {
        DataScanner::new()
    }
}

impl DataScanner {
    /// A scanner at the start of a body.
    pub fn new() -> DataScanner {
        DataScanner {
            state: State::LineStart,
            line_bytes: 0,
            bare_newline: false,
            line_too_long: false,
            too_big: false,
        }
    }

    /// Why the body seen so far will be refused, if it will.
    pub fn refusal(&self) -> Option<Refusal> {
        if self.bare_newline {
            Some(Refusal::BareNewline)
        } else if self.line_too_long {
            Some(Refusal::LineTooLong)
        } else if self.too_big {
            Some(Refusal::TooBig)
        } else {
            None
        }
    }

    /// Scans `input`, appending the unstuffed body to `body` while the message can still
    /// be accepted. Once it cannot (any `Refusal`), nothing more is appended, so `body`
    /// never grows past `body_bytes_max`.
    ///
    /// Returns how many bytes of `input` were consumed and whether the terminator was
    /// found. Without the terminator all of `input` is consumed; with it, consumption
    /// stops right after the terminator's LF and the scanner is ready for the next body.
    pub fn scan(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
        body_bytes_max: usize,
    ) -> (usize, bool) {
        let mut idx = 0;
        // Below this index the fast path found something odd: go byte-wise there, so a
        // long run with one bad byte near its end is not rescanned once per line.
        let mut slow_until_idx = 0;
        while idx < input.len() {
            let fast_path_applies = idx >= slow_until_idx
                && self.refusal().is_none()
                && (self.state == State::InLine
                    || (self.state == State::LineStart && input[idx] != b'.'));
            if fast_path_applies {
                match self.scan_clean_lines(input, idx, body, body_bytes_max) {
                    Ok(run_end_idx) => {
                        idx = run_end_idx;
                        continue;
                    }
                    Err(run_end_idx) => slow_until_idx = run_end_idx,
                }
            }
            match self.state {
                State::LineStart => {
                    if input[idx] == b'.' {
                        self.count_bytes(1);
                        self.state = State::Dot;
                        idx += 1;
                    } else {
                        self.state = State::InLine;
                    }
                }
                State::Dot => match input[idx] {
                    b'\r' => {
                        self.count_bytes(1);
                        self.state = State::DotCr;
                        idx += 1;
                    }
                    // The stuffing dot is dropped; the byte after it is ordinary text.
                    _ => self.state = State::InLine,
                },
                State::DotCr => {
                    if input[idx] == b'\n' {
                        // Flags stay for `refusal()`; `reset()` clears them before the next body.
                        self.state = State::LineStart;
                        self.line_bytes = 0;
                        return (idx + 1, true);
                    }
                    // ".\r" then not LF: the CR was bare. What follows is text.
                    self.bare_newline = true;
                    self.state = State::InLine;
                }
                State::InLine => {
                    let text_end_idx = match memchr2(b'\r', b'\n', &input[idx..]) {
                        Some(offset) => idx + offset,
                        None => input.len(),
                    };
                    let text = &input[idx..text_end_idx];
                    self.count_bytes(text.len());
                    self.append(body, text, body_bytes_max);
                    idx = text_end_idx;
                    match input.get(idx) {
                        Some(b'\r') => {
                            self.count_bytes(1);
                            self.state = State::Cr;
                            idx += 1;
                        }
                        Some(_) => {
                            // A bare LF: refused, and not a line end (no LineStart).
                            self.count_bytes(1);
                            self.bare_newline = true;
                            idx += 1;
                        }
                        None => {}
                    }
                }
                State::Cr => {
                    if input[idx] == b'\n' {
                        self.count_bytes(1);
                        self.append(body, b"\r\n", body_bytes_max);
                        self.line_bytes = 0;
                        self.state = State::LineStart;
                        idx += 1;
                    } else {
                        // A bare CR; the current byte is reprocessed as text.
                        self.bare_newline = true;
                        self.state = State::InLine;
                    }
                }
            }
        }
        (input.len(), false)
    }

    /// The fast path for ordinary text: from `idx` (inside a line, or at the start of one
    /// that does not begin with a dot), takes every following complete line that ends in
    /// CRLF, fits the line limit, and is not followed by a line starting with a dot, and
    /// appends them all with one copy.
    ///
    /// Returns `Ok(end)` when it consumed `idx..end` (possibly nothing), or `Err(end)` when
    /// `idx..end` holds a bare CR, so the byte-wise path must judge that stretch.
    fn scan_clean_lines(
        &mut self,
        input: &[u8],
        idx: usize,
        body: &mut Vec<u8>,
        body_bytes_max: usize,
    ) -> Result<usize, usize> {
        let mut line_start_idx = idx;
        // Octets of the current line seen in earlier chunks (only for the first line).
        let mut carried_bytes = self.line_bytes;
        let mut n_lines = 0usize;
        let mut run_end_idx = idx;
        for offset in memchr::memchr_iter(b'\n', &input[idx..]) {
            let lf_idx = idx + offset;
            // A bare LF (or a CR we cannot see): leave it to the byte-wise path.
            if lf_idx == line_start_idx || input[lf_idx - 1] != b'\r' {
                break;
            }
            if carried_bytes + (lf_idx + 1 - line_start_idx) > TEXT_LINE_BYTES_MAX {
                break;
            }
            n_lines += 1;
            carried_bytes = 0;
            line_start_idx = lf_idx + 1;
            run_end_idx = lf_idx + 1;
            if input.get(run_end_idx) == Some(&b'.') {
                break;
            }
        }
        if n_lines == 0 {
            // Nothing whole to take; the byte-wise path handles this line.
            return Err(idx);
        }
        let run = &input[idx..run_end_idx];
        // Each line ends in CRLF, so exactly one CR per line means no bare CR inside.
        if memchr::memchr_iter(b'\r', run).count() != n_lines {
            return Err(run_end_idx);
        }
        self.append(body, run, body_bytes_max);
        self.line_bytes = 0;
        self.state = State::LineStart;
        Ok(run_end_idx)
    }

    /// Clears the refusal flags and the state, for the next body.
    pub fn reset(&mut self) {
        *self = DataScanner::new();
    }

    fn count_bytes(&mut self, n_bytes: usize) {
        self.line_bytes = self.line_bytes.saturating_add(n_bytes);
        if self.line_bytes > TEXT_LINE_BYTES_MAX {
            self.line_too_long = true;
        }
    }

    fn append(&mut self, body: &mut Vec<u8>, bytes: &[u8], body_bytes_max: usize) {
        if bytes.is_empty() || self.refusal().is_some() {
            return;
        }
        if body.len().saturating_add(bytes.len()) > body_bytes_max {
            self.too_big = true;
            return;
        }
        reserve_within(body, bytes.len(), body_bytes_max);
        body.extend_from_slice(bytes);
    }
}

/// Makes room for `additional` more bytes in `buffer` without ever reserving past
/// `bytes_max` (plain `Vec` growth doubles, which could reserve up to twice the limit).
/// The caller checked that `buffer.len() + additional <= bytes_max`.
pub fn reserve_within(buffer: &mut Vec<u8>, additional: usize, bytes_max: usize) {
    let needed = buffer.len().saturating_add(additional);
    if needed <= buffer.capacity() {
        return;
    }
    let target = needed
        .max(buffer.capacity().saturating_mul(2))
        .min(bytes_max)
        .max(needed);
    buffer.reserve_exact(target - buffer.len());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BODY_BYTES_MAX: usize = 10_000;

    /// Result of one body: consumed bytes, and either the stored body or the refusal.
    type Outcome = (usize, Result<Vec<u8>, Refusal>);

    /// Feeds `input` in the given pieces; `None` when the terminator never comes.
    fn scan_in_pieces(input: &[u8], cuts: &[usize], body_bytes_max: usize) -> Option<Outcome> {
        let mut scanner = DataScanner::new();
        let mut body = Vec::new();
        let mut start_idx = 0;
        let mut ends: Vec<usize> = cuts
            .iter()
            .copied()
            .filter(|&cut| cut < input.len())
            .collect();
        ends.sort_unstable();
        ends.push(input.len());
        for end_idx in ends {
            if end_idx < start_idx {
                continue;
            }
            let (n_consumed, done) =
                scanner.scan(&input[start_idx..end_idx], &mut body, body_bytes_max);
            assert!(n_consumed <= end_idx - start_idx);
            assert!(
                body.len() <= body_bytes_max && body.capacity() <= body_bytes_max.max(body.len())
            );
            if done {
                let consumed = start_idx + n_consumed;
                return Some((consumed, scanner.refusal().map_or(Ok(body), Err)));
            }
            assert_eq!(
                n_consumed,
                end_idx - start_idx,
                "without the end, all input is consumed"
            );
            start_idx = end_idx;
        }
        None
    }

    /// The naive model: search CRLF.CRLF in CRLF + input, then judge the lines.
    fn naive(input: &[u8], body_bytes_max: usize) -> Option<Outcome> {
        let mut text = b"\r\n".to_vec();
        text.extend_from_slice(input);
        let end_idx = text.windows(5).position(|window| window == b"\r\n.\r\n")?;
        let raw = &text[2..end_idx + 2];
        let consumed = end_idx + 3;
        let bare = raw.iter().enumerate().any(|(idx, &b)| {
            (b == b'\r' && raw.get(idx + 1) != Some(&b'\n'))
                || (b == b'\n' && (idx == 0 || raw[idx - 1] != b'\r'))
        });
        let mut lines = Vec::new();
        let mut line_start_idx = 0;
        for idx in 0..raw.len() {
            if raw[idx] == b'\n' && idx > 0 && raw[idx - 1] == b'\r' {
                lines.push(&raw[line_start_idx..=idx]);
                line_start_idx = idx + 1;
            }
        }
        // Without bare newlines, raw ends in CRLF, so nothing is left over; with them the
        // message is refused anyway.
        let too_long = lines.iter().any(|line| line.len() > TEXT_LINE_BYTES_MAX)
            || raw.len() - line_start_idx > TEXT_LINE_BYTES_MAX;
        let body: Vec<u8> = lines
            .iter()
            .flat_map(|line| line.strip_prefix(b".").unwrap_or(line).iter().copied())
            .collect();
        let outcome = if bare {
            Err(Refusal::BareNewline)
        } else if too_long {
            Err(Refusal::LineTooLong)
        } else if body.len() > body_bytes_max {
            Err(Refusal::TooBig)
        } else {
            Ok(body)
        };
        Some((consumed, outcome))
    }

    #[test]
    fn table() {
        let ok = |body: &[u8]| Ok(body.to_vec());
        let table: Vec<(&[u8], Option<Outcome>)> = vec![
            (b".\r\n", Some((3, ok(b"")))),
            (b".\r\nMAIL", Some((3, ok(b"")))),
            (b"a\r\n.\r\n", Some((6, ok(b"a\r\n")))),
            (b"..\r\n.\r\n", Some((7, ok(b".\r\n")))),
            (b"...\r\n.\r\n", Some((8, ok(b"..\r\n")))),
            (b".a\r\nb.\r\n.\r\n", Some((11, ok(b"a\r\nb.\r\n")))),
            (b"\r\n.\r\n", Some((5, ok(b"\r\n")))),
            (b"a\r\n.\r\nb", Some((6, ok(b"a\r\n")))),
            (b"a\r\n", None),
            (b"a\r\n.\r", None),
            (b"a\r\n.", None),
            // Smuggling: none of these end the data, and the body is refused when it does end.
            (
                b"a\n.\nMAIL FROM:<x@y>\r\n.\r\n",
                Some((24, Err(Refusal::BareNewline))),
            ),
            (
                b"a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n",
                Some((25, Err(Refusal::BareNewline))),
            ),
            (
                b"a\r.\rMAIL FROM:<x@y>\r\n.\r\n",
                Some((24, Err(Refusal::BareNewline))),
            ),
            (
                b"a\r\n.\nMAIL FROM:<x@y>\r\n.\r\n",
                Some((25, Err(Refusal::BareNewline))),
            ),
            (
                b"a\r\n.\rMAIL FROM:<x@y>\r\n.\r\n",
                Some((25, Err(Refusal::BareNewline))),
            ),
            (b"a\n.\n", None),
            (b"a\r.\r", None),
            (b".\n", None),
            (b"\n.\r\n", None),
        ];
        for (input, expected) in table {
            assert_eq!(
                scan_in_pieces(input, &[], BODY_BYTES_MAX),
                expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(
                naive(input, BODY_BYTES_MAX),
                expected,
                "model: {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn line_limit_counts_crlf_and_stuffing_dot() {
        let line = |n_bytes: usize, prefix: &[u8]| {
            let mut input = prefix.to_vec();
            input.resize(n_bytes - 2, b'x');
            input.extend_from_slice(b"\r\n.\r\n");
            input
        };
        let outcome = |input: Vec<u8>| {
            scan_in_pieces(&input, &[], BODY_BYTES_MAX)
                .map(|(_, result)| result.map(|body| body.len()))
        };
        assert_eq!(outcome(line(1000, b"")), Some(Ok(1000)));
        assert_eq!(outcome(line(1001, b"")), Some(Err(Refusal::LineTooLong)));
        // On the wire the stuffing dot counts; the stored line is one octet shorter.
        assert_eq!(outcome(line(1000, b"..")), Some(Ok(999)));
        assert_eq!(outcome(line(1001, b"..")), Some(Err(Refusal::LineTooLong)));
    }

    #[test]
    fn size_limit_is_after_unstuffing_and_body_never_exceeds_it() {
        let body_bytes_max = 10;
        assert_eq!(
            scan_in_pieces(b"12345678\r\n.\r\n", &[], body_bytes_max),
            Some((13, Ok(b"12345678\r\n".to_vec())))
        );
        assert_eq!(
            scan_in_pieces(b"..2345678\r\n.\r\n", &[], body_bytes_max),
            Some((14, Ok(b".2345678\r\n".to_vec())))
        );
        assert_eq!(
            scan_in_pieces(b"123456789\r\n.\r\n", &[], body_bytes_max),
            Some((14, Err(Refusal::TooBig)))
        );
        // Everything is read to the end even after the limit.
        let mut big = vec![b'y'; 50_000];
        big.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(
            scan_in_pieces(&big, &[4096, 8192], body_bytes_max),
            Some((50_005, Err(Refusal::LineTooLong)))
        );
    }

    #[test]
    fn scanner_is_reusable_after_a_refusal() {
        let mut scanner = DataScanner::new();
        let mut body = Vec::new();
        assert_eq!(scanner.scan(b"a\nb\r\n.\r\n", &mut body, 100), (8, true));
        assert_eq!(scanner.refusal(), Some(Refusal::BareNewline));
        scanner.reset();
        body.clear();
        assert_eq!(scanner.scan(b"ok\r\n.\r\n", &mut body, 100), (7, true));
        assert_eq!(scanner.refusal(), None);
        assert_eq!(body, b"ok\r\n");
    }

    #[test]
    fn reserve_within_never_passes_the_limit() {
        let mut buffer = Vec::new();
        for _ in 0..100 {
            let additional = 7.min(1000 - buffer.len());
            reserve_within(&mut buffer, additional, 1000);
            buffer.extend_from_slice(&[0u8; 7][..additional]);
            assert!(buffer.capacity() <= 1000);
        }
        assert_eq!(buffer.len(), 700);
    }

    fn text_lines() -> impl Strategy<Value = Vec<Vec<u8>>> {
        proptest::collection::vec(
            proptest::collection::vec(
                prop_oneof![Just(b'.'), Just(b'a'), Just(b' '), any::<u8>()],
                0..40,
            )
            .prop_map(|line| {
                line.into_iter()
                    .filter(|&b| b != b'\r' && b != b'\n')
                    .collect::<Vec<u8>>()
            }),
            0..30,
        )
    }

    proptest! {
        #[test]
        fn matches_naive_model_in_any_chunking(
            input in proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a')], 0..200),
            cuts in proptest::collection::vec(0usize..200, 0..8),
            body_bytes_max in 0usize..100,
        ) {
            let expected = naive(&input, body_bytes_max);
            prop_assert_eq!(scan_in_pieces(&input, &cuts, body_bytes_max), expected);
        }

        #[test]
        fn stuffed_body_comes_back_identical(lines in text_lines(), cuts in proptest::collection::vec(0usize..2000, 0..10)) {
            let mut original = Vec::new();
            let mut wire = Vec::new();
            for line in &lines {
                original.extend_from_slice(line);
                original.extend_from_slice(b"\r\n");
                if line.first() == Some(&b'.') {
                    wire.push(b'.');
                }
                wire.extend_from_slice(line);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b".\r\n");
            prop_assert_eq!(scan_in_pieces(&wire, &cuts, BODY_BYTES_MAX), Some((wire.len(), Ok(original))));
        }
    }
}
