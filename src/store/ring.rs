//! The fixed-capacity byte ring that holds one shard's messages: the memory bound.
//!
//! The whole buffer is allocated once, up front, so a shard never asks the allocator for
//! message memory afterwards and can never hold more message bytes than it was given.
//! Space is handed out FIFO, like a bump allocator that wraps: a reservation goes at the
//! tail, contiguously; if it does not fit before the end of the buffer, the bytes left at
//! the end (the *gap*) are skipped and it goes at offset 0. Space comes back only at the
//! head, in the order it was reserved, so the free space is always one circular run from
//! the tail to the head. The ring knows nothing of messages; the shard keeps the slots.
//!
//! Positions are logical byte counters (`u64`, they never wrap in practice: 2^64 bytes is
//! centuries of traffic at memory speed); the physical offset is `pos % capacity`.

/// A reserved run of bytes, contiguous in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Logical position of the first byte (after any gap that was skipped for it).
    pos: u64,
    /// Length in bytes.
    len: usize,
}

impl Slot {
    /// Logical position of the first byte.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Length in bytes.
    #[allow(clippy::len_without_is_empty)] // Slots are never empty: see `Ring::try_reserve`.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Logical position one past the last byte.
    pub fn end(&self) -> u64 {
        self.pos + self.len as u64
    }
}

/// A fixed-capacity FIFO byte allocator over one buffer.
///
/// Invariants: `head_pos <= tail_pos`, `tail_pos - head_pos <= capacity`, and every slot
/// handed out and not yet released lies inside `[head_pos, tail_pos)` without crossing the
/// end of the buffer.
pub struct Ring {
    /// The memory. Its length is the capacity and never changes.
    buf: Box<[u8]>,
    /// Logical position of the start of the oldest slot; equal to `tail_pos` when empty.
    head_pos: u64,
    /// Logical position where the next reservation starts (before any gap).
    tail_pos: u64,
}

impl Ring {
    /// Allocates the whole buffer, zeroed.
    ///
    /// # Panics
    /// If `capacity_bytes` is 0: a shard with no memory is a configuration error.
    pub fn new(capacity_bytes: usize) -> Ring {
        assert!(capacity_bytes > 0, "ring capacity must be positive");
        let mut buf = vec![0; capacity_bytes].into_boxed_slice();
        prefault(&mut buf);
        Ring {
            buf,
            head_pos: 0,
            tail_pos: 0,
        }
    }

    /// Size of the buffer in bytes.
    pub fn capacity_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Bytes between the head and the tail: live slots, dead slots not yet released, and
    /// a skipped gap while it lies between two slots.
    pub fn used_bytes(&self) -> usize {
        (self.tail_pos - self.head_pos) as usize
    }

    /// True when nothing is reserved.
    pub fn is_empty(&self) -> bool {
        self.head_pos == self.tail_pos
    }

    /// Reserves `len` contiguous bytes at the tail, or returns `None` if they do not fit
    /// now (the caller releases the oldest slot and tries again). A reservation of at most
    /// `capacity_bytes` always fits in an empty ring.
    ///
    /// # Panics
    /// If `len` is 0: an empty slot would make "head == tail" ambiguous between an empty
    /// ring and one holding only empty slots. Shard slots always hold an envelope.
    pub fn try_reserve(&mut self, len: usize) -> Option<Slot> {
        assert!(len > 0, "zero-length reservation");
        let capacity = self.buf.len();
        if len > capacity {
            return None;
        }
        if self.is_empty() {
            // Nothing is held, so start again at offset 0: the largest message fits, and
            // no gap is wasted.
            let aligned_pos = self.tail_pos.div_ceil(capacity as u64) * capacity as u64;
            self.head_pos = aligned_pos;
            self.tail_pos = aligned_pos;
        }
        let tail_offset = self.offset_of(self.tail_pos);
        let gap_bytes = if tail_offset + len > capacity {
            capacity - tail_offset
        } else {
            0
        };
        if self.used_bytes() + gap_bytes + len > capacity {
            return None;
        }
        let slot = Slot {
            pos: self.tail_pos + gap_bytes as u64,
            len,
        };
        self.tail_pos = slot.end();
        debug_assert!(self.offset_of(slot.pos) + len <= capacity);
        assert!(self.used_bytes() <= capacity, "ring over capacity");
        Some(slot)
    }

    /// The bytes of a slot.
    pub fn bytes(&self, slot: Slot) -> &[u8] {
        let start = self.checked_offset(slot);
        &self.buf[start..start + slot.len]
    }

    /// The bytes of a slot, to fill right after reserving it.
    pub fn bytes_mut(&mut self, slot: Slot) -> &mut [u8] {
        let start = self.checked_offset(slot);
        &mut self.buf[start..start + slot.len]
    }

    /// Overwrites a slot with zeros, so deleted or expired mail does not linger in memory
    /// until the space is reused.
    pub fn zero(&mut self, slot: Slot) {
        self.bytes_mut(slot).fill(0);
    }

    /// Gives back the oldest slot. `next` is the slot that is now the oldest (None when no
    /// slot is left): the head jumps to its start, which also frees a gap that was skipped
    /// just before it. The bytes are not touched; zero them first.
    ///
    /// # Panics
    /// If `released` is not the oldest slot or `next` does not follow it (a shard bug).
    pub fn release_oldest(&mut self, released: Slot, next: Option<Slot>) {
        // The head is always the start of the oldest slot (see below), so this is exact.
        assert_eq!(
            released.pos, self.head_pos,
            "released slot is not the oldest"
        );
        assert!(
            released.end() <= self.tail_pos,
            "released slot is not in use"
        );
        self.head_pos = match next {
            Some(next) => {
                assert!(
                    next.pos >= released.end() && next.end() <= self.tail_pos,
                    "bad next slot"
                );
                next.pos
            }
            None => self.tail_pos,
        };
    }

    /// The whole buffer, so tests can check that freed bytes were zeroed.
    #[cfg(test)]
    pub(crate) fn memory(&self) -> &[u8] {
        &self.buf
    }

    /// Physical offset of a slot, checked against the invariants.
    fn checked_offset(&self, slot: Slot) -> usize {
        assert!(
            slot.pos >= self.head_pos && slot.end() <= self.tail_pos,
            "slot outside the used part of the ring"
        );
        let start = self.offset_of(slot.pos);
        debug_assert!(start + slot.len <= self.buf.len());
        start
    }

    fn offset_of(&self, pos: u64) -> usize {
        (pos % self.buf.len() as u64) as usize
    }
}

/// Backs the whole ring with memory now, in huge pages where the kernel allows it.
///
/// `vec![0; n]` only reserves address space; left alone, the first pass over the ring
/// would take a page fault (and the kernel's page zeroing) every 4 KiB on the SMTP hot
/// path: measured at over half the server's CPU with 100 KiB messages. Touching every
/// page here moves that cost to start-up, makes RSS equal the configured memory from the
/// first second, and huge pages cut the number of faults and TLB misses by 512.
fn prefault(buf: &mut [u8]) {
    const HUGE_PAGE_BYTES: usize = 2 * 1024 * 1024;
    const PAGE_BYTES: usize = 4096;
    let start = buf.as_mut_ptr() as usize;
    let aligned_start = start.next_multiple_of(HUGE_PAGE_BYTES);
    let aligned_end = (start + buf.len()) / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES;
    if aligned_end > aligned_start {
        // SAFETY: the range lies inside `buf`, which we own; MADV_HUGEPAGE only changes how
        // the kernel backs these pages, never their contents. A failure (no THP support)
        // is harmless, so its result is ignored.
        unsafe {
            libc::madvise(
                aligned_start as *mut libc::c_void,
                aligned_end - aligned_start,
                libc::MADV_HUGEPAGE,
            );
        }
    }
    for page_idx in (0..buf.len()).step_by(PAGE_BYTES) {
        // A volatile write so the compiler cannot drop a store of the value already there.
        // SAFETY: `page_idx < buf.len()`, so the pointer is in bounds and valid for writes.
        unsafe { std::ptr::write_volatile(buf.as_mut_ptr().add(page_idx), 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step of a ring scenario: reserve `len` (expecting the physical offset, or None),
    /// or release the oldest slot still held.
    enum Step {
        Reserve(usize, Option<usize>),
        ReleaseOldest,
    }

    fn run(capacity: usize, steps: &[Step]) {
        let mut ring = Ring::new(capacity);
        let mut held = std::collections::VecDeque::new();
        for (step_idx, step) in steps.iter().enumerate() {
            match *step {
                Step::Reserve(len, expected_offset) => {
                    let slot = ring.try_reserve(len);
                    let offset = slot.map(|slot| ring.offset_of(slot.pos));
                    assert_eq!(offset, expected_offset, "step {step_idx}");
                    if let Some(slot) = slot {
                        ring.bytes_mut(slot).fill(1);
                        held.push_back(slot);
                    }
                }
                Step::ReleaseOldest => {
                    let slot = held.pop_front().expect("test releases only held slots");
                    ring.zero(slot);
                    ring.release_oldest(slot, held.front().copied());
                }
            }
            assert!(ring.used_bytes() <= capacity);
            let held_bytes: usize = held.iter().map(|slot| slot.len).sum();
            assert!(held_bytes <= ring.used_bytes(), "step {step_idx}");
            assert_eq!(
                ring.memory().iter().filter(|&&b| b == 1).count(),
                held_bytes
            );
        }
    }

    #[test]
    fn reserves_contiguously_and_wraps_past_the_gap() {
        use Step::*;
        run(
            10,
            &[
                Reserve(4, Some(0)),
                Reserve(4, Some(4)),
                Reserve(4, None), // 2 left at the end, head at 0: no room
                ReleaseOldest,
                Reserve(4, Some(0)), // gap [8, 10) skipped, goes at the start
                Reserve(1, None),    // [4, 8) is the oldest slot
                ReleaseOldest,       // head jumps to 0, freeing the gap as well
                Reserve(6, Some(4)),
                Reserve(1, None),
                ReleaseOldest,
                ReleaseOldest,
                Reserve(10, Some(0)), // empty ring: realigned, the whole buffer fits
            ],
        );
    }

    #[test]
    fn refuses_what_can_never_fit() {
        use Step::*;
        run(
            8,
            &[
                Reserve(9, None),
                Reserve(8, Some(0)),
                Reserve(1, None),
                ReleaseOldest,
                Reserve(1, Some(0)),
            ],
        );
    }

    #[test]
    fn fills_exactly_to_capacity() {
        use Step::*;
        run(
            12,
            &[
                Reserve(3, Some(0)),
                Reserve(9, Some(3)),
                ReleaseOldest,
                Reserve(3, Some(0)),
                Reserve(1, None),
                ReleaseOldest,
                Reserve(9, Some(3)),
            ],
        );
    }
}
