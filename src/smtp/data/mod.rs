//! The DATA body scanner: finds `<CRLF>.<CRLF>`, undoes dot-stuffing, and checks lines.
//!
//! It takes the body in any chunking and keeps the partial-terminator state itself, so
//! the caller never holds body bytes back. No IO, never panics.
//!
//! It works two ways with the same rules: `DataScanner::scan` copies the unstuffed body out
//! of an input buffer, and `DataScanner::scan_in_place` unstuffs bytes that were read
//! straight into the body's own buffer, moving bytes only where a stuffing dot is dropped
//! (ordinary text is left where it landed). `BodyBuffer` is that buffer: the session's
//! message body plus room to read the next bytes into, so a big message is copied once by
//! the kernel and once into the store, and not a third time from a read buffer.
//!
//! Smuggling defence (CVE-2023-51764 and friends): the *only* end of data is CRLF "." CRLF
//! where both CRLFs are real pairs. A bare LF or bare CR anywhere does not start or end a
//! line for this purpose; it marks the message as refused instead, so whatever a client
//! hides after `\n.\n` or `\r.\r` stays body text of a message that is never stored.

mod body_buffer;

use memchr::{memchr, memchr2};

pub use body_buffer::{BodyBuffer, reserve_within};

/// Longest text line including its CRLF (RFC 5321 4.5.3.1.6), not counting a stuffing dot.
pub const TEXT_LINE_BYTES_MAX: usize = 1000;
/// The line that ends a DATA body (the CRLF before it ends the body's last line).
pub const END_OF_DATA_LINE: &[u8] = b".\r\n";

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
    /// A line over `TEXT_LINE_BYTES_MAX` octets including CRLF, after unstuffing (a
    /// stuffing dot does not count).
    LineTooLong,
    /// More than the body limit after dot-unstuffing.
    TooBig,
}

/// Scanner state for one DATA body. Reset it before each body.
#[derive(Debug, Clone)]
pub struct DataScanner {
    state: State,
    /// Octets of the current line so far after unstuffing (CR and LF included, a
    /// stuffing dot not).
    line_bytes: usize,
    bare_newline: bool,
    line_too_long: bool,
    too_big: bool,
}

/// A growable body that `DataScanner::scan` appends to: a `Vec<u8>` or a `BodyBuffer`.
pub trait BodyOut {
    /// Bytes of body so far.
    fn body_len(&self) -> usize;
    /// Appends `bytes`. The caller checked that the body stays within `bytes_max`; the
    /// buffer must not reserve past it either.
    fn push(&mut self, bytes: &[u8], bytes_max: usize);
}

impl BodyOut for Vec<u8> {
    fn body_len(&self) -> usize {
        self.len()
    }

    fn push(&mut self, bytes: &[u8], bytes_max: usize) {
        reserve_within(self, bytes.len(), bytes_max);
        self.extend_from_slice(bytes);
    }
}

/// What one `DataScanner::scan_in_place` call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InPlaceScan {
    /// Raw bytes consumed from the start of the scanned run: all of it without the
    /// terminator, up to and including the terminator's LF with it.
    pub n_consumed: usize,
    /// Whether the terminator was found.
    pub finished: bool,
    /// The body's length afterwards: the unstuffed body is `buf[..body_len]`.
    pub body_len: usize,
}

/// Where the scanner reads raw bytes from and puts the body it keeps.
///
/// Implementations index raw bytes from 0 (the first byte of this call's input). The
/// scanner never holds `input()` across `append_input`, because the in-place sink writes
/// into the buffer that `input()` borrows.
trait Sink {
    /// The raw bytes this call scans.
    fn input(&self) -> &[u8];
    /// Bytes of body kept so far.
    fn body_len(&self) -> usize;
    /// Appends `input()[start_idx..end_idx]` to the body; the caller checked the limit.
    /// Appends come in input order and never overlap.
    fn append_input(&mut self, start_idx: usize, end_idx: usize, bytes_max: usize);
}

/// Copies kept bytes from a separate input buffer into a `BodyOut`.
struct CopySink<'a, B: BodyOut> {
    input: &'a [u8],
    body: &'a mut B,
}

impl<B: BodyOut> Sink for CopySink<'_, B> {
    fn input(&self) -> &[u8] {
        self.input
    }

    fn body_len(&self) -> usize {
        self.body.body_len()
    }

    fn append_input(&mut self, start_idx: usize, end_idx: usize, bytes_max: usize) {
        self.body.push(&self.input[start_idx..end_idx], bytes_max);
    }
}

/// Unstuffs in place: the raw bytes are `buf[raw_start_idx..raw_end_idx]`, the body so far
/// `buf[..write_idx]`.
///
/// Invariant: `write_idx <= raw_start_idx + (start of the next append)`. It holds because
/// the body gets at most the raw bytes consumed before it (dots and terminators are
/// dropped, nothing is added), so moving kept bytes down never overwrites a raw byte not
/// yet scanned.
struct InPlaceSink<'a> {
    buf: &'a mut [u8],
    raw_start_idx: usize,
    raw_end_idx: usize,
    write_idx: usize,
}

impl Sink for InPlaceSink<'_> {
    fn input(&self) -> &[u8] {
        &self.buf[self.raw_start_idx..self.raw_end_idx]
    }

    fn body_len(&self) -> usize {
        self.write_idx
    }

    fn append_input(&mut self, start_idx: usize, end_idx: usize, _bytes_max: usize) {
        let from_idx = self.raw_start_idx + start_idx;
        debug_assert!(
            self.write_idx <= from_idx,
            "in-place write overtook the read"
        );
        if from_idx != self.write_idx {
            self.buf
                .copy_within(from_idx..self.raw_start_idx + end_idx, self.write_idx);
        }
        self.write_idx += end_idx - start_idx;
    }
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
    pub fn scan<B: BodyOut>(
        &mut self,
        input: &[u8],
        body: &mut B,
        body_bytes_max: usize,
    ) -> (usize, bool) {
        self.scan_with(&mut CopySink { input, body }, body_bytes_max)
    }

    /// Like `scan`, for raw bytes that were read straight into the body's buffer:
    /// `buf[..body_len]` is the body so far and `buf[body_len..raw_end_idx]` the raw bytes
    /// to scan. Kept bytes are moved down over dropped ones, so afterwards the body is
    /// `buf[..result.body_len]`; bytes past the terminator (`buf[body_len +
    /// result.n_consumed..raw_end_idx]`) are left untouched for the caller.
    ///
    /// # Panics
    /// If `body_len > raw_end_idx` or `raw_end_idx > buf.len()` (a caller bug).
    pub fn scan_in_place(
        &mut self,
        buf: &mut [u8],
        body_len: usize,
        raw_end_idx: usize,
        body_bytes_max: usize,
    ) -> InPlaceScan {
        assert!(
            body_len <= raw_end_idx && raw_end_idx <= buf.len(),
            "raw bytes outside the buffer"
        );
        let mut sink = InPlaceSink {
            buf,
            raw_start_idx: body_len,
            raw_end_idx,
            write_idx: body_len,
        };
        let (n_consumed, finished) = self.scan_with(&mut sink, body_bytes_max);
        InPlaceScan {
            n_consumed,
            finished,
            body_len: sink.write_idx,
        }
    }

    fn scan_with<S: Sink>(&mut self, sink: &mut S, body_bytes_max: usize) -> (usize, bool) {
        let input_len = sink.input().len();
        let mut idx = 0;
        // Below this index the fast path found something odd: go byte-wise there, so a
        // long run with one bad byte near its end is not rescanned once per line.
        let mut slow_until_idx = 0;
        while idx < input_len {
            let byte = sink.input()[idx];
            let fast_path_applies = idx >= slow_until_idx
                && self.refusal().is_none()
                && (self.state == State::InLine
                    || (self.state == State::LineStart && byte != b'.'));
            if fast_path_applies {
                match self.scan_clean_lines(sink, idx, body_bytes_max) {
                    Ok(run_end_idx) => {
                        idx = run_end_idx;
                        continue;
                    }
                    Err(run_end_idx) => slow_until_idx = run_end_idx,
                }
            }
            match self.state {
                State::LineStart => {
                    if byte == b'.' {
                        // Not counted: the limit is on the line as the client meant it
                        // (RFC 5321 4.5.2, 4.5.3.1.6), and the dot is either dropped as
                        // stuffing or starts the terminator.
                        self.state = State::Dot;
                        idx += 1;
                    } else {
                        self.state = State::InLine;
                    }
                }
                State::Dot => match byte {
                    b'\r' => {
                        self.count_bytes(1);
                        self.state = State::DotCr;
                        idx += 1;
                    }
                    // The stuffing dot is dropped; the byte after it is ordinary text.
                    _ => self.state = State::InLine,
                },
                State::DotCr => {
                    if byte == b'\n' {
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
                    let text_end_idx = match memchr2(b'\r', b'\n', &sink.input()[idx..]) {
                        Some(offset) => idx + offset,
                        None => input_len,
                    };
                    self.count_bytes(text_end_idx - idx);
                    match sink.input().get(text_end_idx) {
                        Some(b'\r') => {
                            // The CR is kept with the text at once (not when its LF comes),
                            // so every append is a run of input bytes, which is what lets
                            // the in-place sink work. If the CR turns out bare the message
                            // is refused and the body thrown away anyway.
                            self.count_bytes(1);
                            self.append(sink, idx, text_end_idx + 1, body_bytes_max);
                            self.state = State::Cr;
                            idx = text_end_idx + 1;
                        }
                        Some(_) => {
                            // A bare LF: refused, and not a line end (no LineStart).
                            self.append(sink, idx, text_end_idx, body_bytes_max);
                            self.count_bytes(1);
                            self.bare_newline = true;
                            idx = text_end_idx + 1;
                        }
                        None => {
                            self.append(sink, idx, text_end_idx, body_bytes_max);
                            idx = text_end_idx;
                        }
                    }
                }
                State::Cr => {
                    if byte == b'\n' {
                        self.count_bytes(1);
                        self.append(sink, idx, idx + 1, body_bytes_max);
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
        (input_len, false)
    }

    /// The fast path for ordinary text: from `idx` (inside a line, or at the start of one
    /// that does not begin with a dot), takes every following complete line that ends in
    /// CRLF, fits the line limit, and is not followed by a line starting with a dot, and
    /// appends them all with one copy (none at all in place, when nothing was dropped
    /// before them).
    ///
    /// Long runs of clean text are judged 64 bytes at a time (`clean_blocks_end`); the
    /// lines after the last clean block, line by line.
    ///
    /// Returns `Ok(end)` when it consumed `idx..end` (possibly nothing), or `Err(end)` when
    /// `idx..end` holds a bare CR, so the byte-wise path must judge that stretch.
    fn scan_clean_lines<S: Sink>(
        &mut self,
        sink: &mut S,
        idx: usize,
        body_bytes_max: usize,
    ) -> Result<usize, usize> {
        let input = sink.input();
        let blocks_end_idx = clean_blocks_end(input, idx, self.line_bytes);
        let mut line_start_idx = blocks_end_idx;
        // Octets of the current line seen before `line_start_idx` (only for the first line).
        let mut carried_bytes = if blocks_end_idx == idx {
            self.line_bytes
        } else {
            0
        };
        let mut n_lines = 0usize;
        let mut run_end_idx = blocks_end_idx;
        // The blocks stop before a line starting with a dot; the byte-wise path takes it.
        let dot_next = blocks_end_idx > idx && input.get(blocks_end_idx) == Some(&b'.');
        if !dot_next {
            for offset in memchr::memchr_iter(b'\n', &input[blocks_end_idx..]) {
                let lf_idx = blocks_end_idx + offset;
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
        }
        // Each line ends in CRLF, so exactly one CR per line means no bare CR inside.
        if n_lines > 0
            && memchr::memchr_iter(b'\r', &input[blocks_end_idx..run_end_idx]).count() != n_lines
        {
            if blocks_end_idx == idx {
                return Err(run_end_idx);
            }
            // Take what the blocks proved clean; the next call finds the bare CR again.
            run_end_idx = blocks_end_idx;
        }
        if run_end_idx == idx {
            // Nothing whole to take; the byte-wise path handles this line.
            return Err(idx);
        }
        self.append(sink, idx, run_end_idx, body_bytes_max);
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

    /// Keeps `input[start_idx..end_idx]` in the body, unless the message is refused already
    /// or would become too big.
    fn append<S: Sink>(
        &mut self,
        sink: &mut S,
        start_idx: usize,
        end_idx: usize,
        body_bytes_max: usize,
    ) {
        if start_idx == end_idx || self.refusal().is_some() {
            return;
        }
        if sink.body_len().saturating_add(end_idx - start_idx) > body_bytes_max {
            self.too_big = true;
            return;
        }
        sink.append_input(start_idx, end_idx, body_bytes_max);
    }
}

/// Appends the DATA form of `body` to `out` (RFC 5321 4.5.2): every line that starts with
/// `.` gets a second `.`, then `END_OF_DATA_LINE` ends the data. A body that is not empty
/// and does not end with CRLF gets a CRLF first, since DATA can only carry bodies that end
/// in one; so `DataScanner` gives back exactly `body` for a body that ends with CRLF (or is
/// empty) and has no bare CR or LF, and `body` plus CRLF for one that lacks the final CRLF.
///
/// POP3 sends messages with it (RETR, TOP); tests, benchmarks and clients use it too.
/// A line starts after every LF, a bare one too: the scanner refuses such a body anyway,
/// and a receiver that wrongly ends lines at a bare LF still sees the dot doubled.
pub fn dot_stuff(body: &[u8], out: &mut Vec<u8>) {
    out.reserve(body.len() + b"\r\n".len() + END_OF_DATA_LINE.len());
    let mut line_start_idx = 0;
    while line_start_idx < body.len() {
        let line_end_idx = memchr(b'\n', &body[line_start_idx..])
            .map_or(body.len(), |offset| line_start_idx + offset + 1);
        if body[line_start_idx] == b'.' {
            out.push(b'.');
        }
        out.extend_from_slice(&body[line_start_idx..line_end_idx]);
        line_start_idx = line_end_idx;
    }
    if !body.is_empty() && !body.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(END_OF_DATA_LINE);
}

/// Bytes judged at once by `clean_blocks_end`.
const BLOCK_BYTES: usize = 64;

/// From `idx` (inside a line that already has `carried_bytes` octets, or at the start of
/// a line that does not begin with a dot), the end of the last complete line in the
/// longest run of whole 64-byte blocks that hold only clean text: every LF right after a
/// CR and every CR right before an LF, no line starting with a dot (so no terminator
/// either), no line over `TEXT_LINE_BYTES_MAX`. Returns `idx` when the first block
/// already fails, or ends no line.
///
/// This is the scanner's hot loop for big messages: per block it is a few vector
/// compares and bit operations, where finding lines one by one with `memchr` costs a call
/// per line (about a third of the server's CPU for 100 KiB messages of 76-octet lines).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn clean_blocks_end(input: &[u8], idx: usize, carried_bytes: usize) -> usize {
    let mut block_idx = idx;
    let mut run_end_idx = idx;
    let mut line_start_idx = idx;
    // Octets of the current line before `line_start_idx`.
    let mut carried_bytes = carried_bytes;
    // Whether the previous block ended in CR (an LF must open this one) or in LF (a dot
    // must not). At `idx` neither: the caller is inside a line or past a whole CRLF.
    let mut cr_carry = 0u64;
    let mut lf_carry = 0u64;
    while let Some(block) = input[block_idx..].first_chunk::<BLOCK_BYTES>() {
        let masks = BlockMasks::of(block);
        if masks.lf != (masks.cr << 1) | cr_carry {
            break;
        }
        if masks.dot & ((masks.lf << 1) | lf_carry) != 0 {
            break;
        }
        if masks.lf == 0 {
            // No line end in this block: stop once the line is over the limit anyway.
            if carried_bytes + (block_idx + BLOCK_BYTES - line_start_idx) > TEXT_LINE_BYTES_MAX {
                break;
            }
        } else {
            // Lines that start and end inside the block are shorter than it; only the one
            // running into it can be too long.
            let first_lf_idx = block_idx + masks.lf.trailing_zeros() as usize;
            if carried_bytes + (first_lf_idx + 1 - line_start_idx) > TEXT_LINE_BYTES_MAX {
                break;
            }
            carried_bytes = 0;
            line_start_idx = block_idx + (BLOCK_BYTES - masks.lf.leading_zeros() as usize);
            run_end_idx = line_start_idx;
        }
        cr_carry = masks.cr >> (BLOCK_BYTES - 1);
        lf_carry = masks.lf >> (BLOCK_BYTES - 1);
        block_idx += BLOCK_BYTES;
    }
    run_end_idx
}

/// Without SSE2 the line-by-line path does all the work.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn clean_blocks_end(_input: &[u8], idx: usize, _carried_bytes: usize) -> usize {
    idx
}

/// Where CR, LF and `.` are in a 64-byte block: bit `i` is set when byte `i` is one.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
struct BlockMasks {
    cr: u64,
    lf: u64,
    dot: u64,
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
impl BlockMasks {
    fn of(block: &[u8; BLOCK_BYTES]) -> BlockMasks {
        use std::arch::x86_64::{
            _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        };
        const LANE_BYTES: usize = 16;
        let mut masks = BlockMasks {
            cr: 0,
            lf: 0,
            dot: 0,
        };
        // SAFETY: this is compiled only where SSE2 is enabled (it is part of the x86_64
        // baseline), so every intrinsic here exists on the CPU. Each load reads the 16
        // bytes at `lane_idx * 16`, and `lane_idx < 4`, so it stays inside the 64-byte
        // `block`; `_mm_loadu_si128` has no alignment requirement.
        unsafe {
            let cr = _mm_set1_epi8(b'\r' as i8);
            let lf = _mm_set1_epi8(b'\n' as i8);
            let dot = _mm_set1_epi8(b'.' as i8);
            for lane_idx in 0..BLOCK_BYTES / LANE_BYTES {
                let lane = _mm_loadu_si128(block.as_ptr().add(lane_idx * LANE_BYTES).cast());
                let shift = lane_idx * LANE_BYTES;
                // movemask gives one bit per byte in the low 16 bits of an i32.
                masks.cr |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(lane, cr)) as u16) << shift;
                masks.lf |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(lane, lf)) as u16) << shift;
                masks.dot |=
                    u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(lane, dot)) as u16) << shift;
            }
        }
        masks
    }
}

#[cfg(test)]
mod tests;
