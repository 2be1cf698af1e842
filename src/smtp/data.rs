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
                        self.count_bytes(1);
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

/// A message body plus room after it to read more raw bytes into.
///
/// `bytes[..len]` is the body; `bytes[len..]` is scratch that `spare_mut` hands out for the
/// next read. The whole `Vec` is initialized (new room is zeroed once, when it grows), so a
/// read can take it as a plain `&mut [u8]`, and clearing the body between messages costs
/// nothing.
///
/// Invariant: `len <= bytes.len()`, and `bytes.capacity()` never exceeds the `bytes_max`
/// the caller passes when growing it (the session's `message_bytes_max`).
#[derive(Debug, Default)]
pub struct BodyBuffer {
    bytes: Vec<u8>,
    len: usize,
}

impl BodyBuffer {
    /// An empty body with no memory.
    pub fn new() -> BodyBuffer {
        BodyBuffer::default()
    }

    /// The body.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Bytes of body.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Memory held, in bytes.
    pub fn capacity_bytes(&self) -> usize {
        self.bytes.capacity()
    }

    /// Empties the body and keeps the memory.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Gives back memory above `bytes_kept_max`, never below the body's length.
    pub fn shrink_to(&mut self, bytes_kept_max: usize) {
        let kept_bytes = bytes_kept_max.max(self.len);
        if self.bytes.capacity() > kept_bytes {
            self.bytes.truncate(kept_bytes);
            self.bytes.shrink_to(kept_bytes);
        }
    }

    /// Room right after the body to read raw bytes into: at least `bytes_min` and at most
    /// `bytes_want` bytes, never reaching past `bytes_max` bytes from the buffer's start.
    /// With `grow` the buffer is enlarged when the room is short (doubling, so a large
    /// body is not copied by `realloc` once per read); without it only memory already held
    /// is offered. `None` when that leaves less than `bytes_min`.
    pub fn spare_mut(
        &mut self,
        bytes_min: usize,
        bytes_want: usize,
        bytes_max: usize,
        grow: bool,
    ) -> Option<&mut [u8]> {
        let bytes_want = bytes_want.min(bytes_max.saturating_sub(self.len));
        if bytes_want < bytes_min {
            return None;
        }
        if self.bytes.len() - self.len < bytes_min {
            if !grow {
                return None;
            }
            let target_bytes = (self.len + bytes_want)
                .max(self.bytes.len().saturating_mul(2))
                .min(bytes_max);
            self.grow_to(target_bytes);
        }
        let end_idx = self.bytes.len().min(self.len + bytes_want);
        Some(&mut self.bytes[self.len..end_idx])
    }

    /// The caller wrote `n_bytes` of body into the start of the room `spare_mut` gave it
    /// (a BDAT chunk: nothing to unstuff).
    ///
    /// # Panics
    /// If that would pass the end of the buffer (a caller bug).
    pub fn commit(&mut self, n_bytes: usize) {
        assert!(
            n_bytes <= self.bytes.len() - self.len,
            "committed past the buffer"
        );
        self.len += n_bytes;
    }

    /// The caller read `n_bytes` of a DATA body into the start of the room `spare_mut` gave
    /// it: scans and unstuffs them in place. Returns whether the body's terminator was
    /// among them, and the bytes that followed it (empty without the terminator), which
    /// stay valid until the buffer is next written.
    ///
    /// # Panics
    /// If `n_bytes` passes the end of the buffer (a caller bug).
    pub fn scan_read(
        &mut self,
        scanner: &mut DataScanner,
        n_bytes: usize,
        body_bytes_max: usize,
    ) -> (bool, &[u8]) {
        let raw_start_idx = self.len;
        let raw_end_idx = raw_start_idx + n_bytes;
        let scan =
            scanner.scan_in_place(&mut self.bytes, raw_start_idx, raw_end_idx, body_bytes_max);
        self.len = scan.body_len;
        let rest_start_idx = raw_start_idx + scan.n_consumed;
        (scan.finished, &self.bytes[rest_start_idx..raw_end_idx])
    }

    /// Grows the initialized buffer to `target_bytes`, reserving exactly that much.
    fn grow_to(&mut self, target_bytes: usize) {
        if target_bytes <= self.bytes.len() {
            return;
        }
        self.bytes.reserve_exact(target_bytes - self.bytes.len());
        self.bytes.resize(target_bytes, 0);
    }
}

impl BodyOut for BodyBuffer {
    fn body_len(&self) -> usize {
        self.len
    }

    fn push(&mut self, bytes: &[u8], bytes_max: usize) {
        // Fill the room already held, then append: appending needs no zeroing first.
        let n_in_room = (self.bytes.len() - self.len).min(bytes.len());
        let (in_room, appended) = bytes.split_at(n_in_room);
        self.bytes[self.len..self.len + n_in_room].copy_from_slice(in_room);
        if !appended.is_empty() {
            reserve_within(&mut self.bytes, appended.len(), bytes_max);
            self.bytes.extend_from_slice(appended);
        }
        self.len += bytes.len();
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

    /// Where the pieces of an input of `len` bytes end, given cut points in any order.
    fn piece_ends(cuts: &[usize], len: usize) -> Vec<usize> {
        let mut ends: Vec<usize> = cuts.iter().copied().filter(|&cut| cut < len).collect();
        ends.sort_unstable();
        ends.push(len);
        ends
    }

    /// Feeds `input` in the given pieces; `None` when the terminator never comes.
    fn scan_in_pieces(input: &[u8], cuts: &[usize], body_bytes_max: usize) -> Option<Outcome> {
        let mut scanner = DataScanner::new();
        let mut body = Vec::new();
        let mut start_idx = 0;
        for end_idx in piece_ends(cuts, input.len()) {
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

    /// Feeds `input` in the given pieces the way `BodyBuffer` does: each piece lands right
    /// after the body so far and is unstuffed in place. Checks that the bytes after the
    /// terminator are left as they were.
    fn scan_in_place_in_pieces(
        input: &[u8],
        cuts: &[usize],
        body_bytes_max: usize,
    ) -> Option<Outcome> {
        let mut scanner = DataScanner::new();
        // The body never holds more than the raw bytes it came from.
        let mut buf = vec![0u8; input.len()];
        let mut body_len = 0;
        let mut start_idx = 0;
        for end_idx in piece_ends(cuts, input.len()) {
            if end_idx < start_idx {
                continue;
            }
            let piece = &input[start_idx..end_idx];
            let raw_end_idx = body_len + piece.len();
            buf[body_len..raw_end_idx].copy_from_slice(piece);
            let scan = scanner.scan_in_place(&mut buf, body_len, raw_end_idx, body_bytes_max);
            assert!(scan.n_consumed <= piece.len());
            assert!(scan.body_len <= body_bytes_max && scan.body_len <= body_len + scan.n_consumed);
            if scan.finished {
                assert_eq!(
                    &buf[body_len + scan.n_consumed..raw_end_idx],
                    &piece[scan.n_consumed..],
                    "bytes after the terminator were overwritten"
                );
                let body = buf[..scan.body_len].to_vec();
                return Some((
                    start_idx + scan.n_consumed,
                    scanner.refusal().map_or(Ok(body), Err),
                ));
            }
            assert_eq!(
                scan.n_consumed,
                piece.len(),
                "without the end, all input is consumed"
            );
            body_len = scan.body_len;
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
            let every_byte: Vec<usize> = (1..input.len()).collect();
            for cuts in [&[][..], &every_byte[..]] {
                assert_eq!(
                    scan_in_place_in_pieces(input, cuts, BODY_BYTES_MAX),
                    expected,
                    "in place: {:?}",
                    String::from_utf8_lossy(input)
                );
            }
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

    #[test]
    fn body_buffer_offers_room_within_its_limits() {
        struct Case {
            pushed_bytes: usize,
            bytes_min: usize,
            bytes_want: usize,
            bytes_max: usize,
            grow: bool,
            room_bytes: Option<usize>,
        }
        let case = |pushed_bytes, bytes_min, bytes_want, bytes_max, grow, room_bytes| Case {
            pushed_bytes,
            bytes_min,
            bytes_want,
            bytes_max,
            grow,
            room_bytes,
        };
        let table = [
            case(0, 16, 64, 1000, false, None),
            case(0, 16, 64, 1000, true, Some(64)),
            case(0, 16, 64, 40, true, Some(40)),
            case(0, 16, 64, 10, true, None),
            case(990, 16, 64, 1000, true, None),
            case(980, 16, 64, 1000, true, Some(20)),
            // 200 bytes pushed leave no room; growing doubles the buffer past the want.
            case(200, 16, 64, 1000, false, None),
            case(200, 16, 64, 1000, true, Some(64)),
            case(200, 16, 300, 1000, true, Some(300)),
        ];
        for case in table {
            let mut body = BodyBuffer::new();
            let push_max = case.bytes_max.max(case.pushed_bytes);
            body.push(&vec![b'x'; case.pushed_bytes], push_max);
            let room_bytes = body
                .spare_mut(case.bytes_min, case.bytes_want, case.bytes_max, case.grow)
                .map(|room| room.len());
            assert_eq!(
                room_bytes, case.room_bytes,
                "pushed {} min {} want {} max {} grow {}",
                case.pushed_bytes, case.bytes_min, case.bytes_want, case.bytes_max, case.grow
            );
            assert!(body.capacity_bytes() <= push_max);
            assert_eq!(body.as_slice(), vec![b'x'; case.pushed_bytes]);
        }
    }

    #[test]
    fn body_buffer_reads_in_place_and_hands_back_the_rest() {
        let mut body = BodyBuffer::new();
        let mut scanner = DataScanner::new();
        let reads: [&[u8]; 3] = [b"Subject: x\r\n\r\n..dot\r", b"\nend\r\n", b".\r\nQUIT\r\n"];
        let mut rests = Vec::new();
        for read in reads {
            let room = body.spare_mut(1, 64, 1000, true).expect("room");
            room[..read.len()].copy_from_slice(read);
            let (finished, rest) = body.scan_read(&mut scanner, read.len(), 1000);
            rests.push((finished, rest.to_vec()));
        }
        assert_eq!(
            rests,
            [
                (false, vec![]),
                (false, vec![]),
                (true, b"QUIT\r\n".to_vec())
            ]
        );
        assert_eq!(body.as_slice(), b"Subject: x\r\n\r\n.dot\r\nend\r\n");
        assert_eq!(scanner.refusal(), None);
        // BDAT bytes are taken as they are.
        let room = body.spare_mut(1, 3, 1000, true).expect("room");
        room.copy_from_slice(b"\r.\n");
        body.commit(3);
        assert!(body.as_slice().ends_with(b"end\r\n\r.\n"));
        body.clear();
        body.shrink_to(0);
        assert_eq!((body.len(), body.capacity_bytes()), (0, 0));
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
            prop_assert_eq!(scan_in_pieces(&input, &cuts, body_bytes_max), expected.clone());
            prop_assert_eq!(scan_in_place_in_pieces(&input, &cuts, body_bytes_max), expected);
        }

        /// Long bodies of realistic lines (the 64-byte block path's territory), with lines
        /// near the length limit, lines starting with a dot, and a few stray CR, LF or dot
        /// bytes anywhere.
        #[test]
        fn long_bodies_match_naive_model(
            lines in proptest::collection::vec(
                (prop_oneof![0usize..80, 60usize..130, 990usize..1010], any::<bool>()),
                0..60,
            ),
            strays in proptest::collection::vec(
                (any::<proptest::sample::Index>(), prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.')]),
                0..3,
            ),
            cuts in proptest::collection::vec(0usize..70_000, 0..6),
            body_bytes_max in prop_oneof![Just(usize::MAX), 0usize..70_000],
        ) {
            let mut input = Vec::new();
            for (line_idx, &(line_bytes, dotted)) in lines.iter().enumerate() {
                let line_start_idx = input.len();
                input.extend(std::iter::repeat_n(b'a' + (line_idx % 26) as u8, line_bytes));
                if dotted && line_bytes > 0 {
                    input[line_start_idx] = b'.';
                }
                input.extend_from_slice(b"\r\n");
            }
            for (position, byte) in strays {
                let stray_idx = position.index(input.len() + 1);
                input.insert(stray_idx, byte);
            }
            input.extend_from_slice(b".\r\nQUIT\r\n");
            let expected = naive(&input, body_bytes_max);
            prop_assert_eq!(scan_in_pieces(&input, &cuts, body_bytes_max), expected.clone());
            prop_assert_eq!(scan_in_place_in_pieces(&input, &cuts, body_bytes_max), expected);
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
            let expected = Some((wire.len(), Ok(original)));
            prop_assert_eq!(scan_in_pieces(&wire, &cuts, BODY_BYTES_MAX), expected.clone());
            prop_assert_eq!(scan_in_place_in_pieces(&wire, &cuts, BODY_BYTES_MAX), expected);
        }
    }
}
