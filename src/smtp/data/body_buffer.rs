//! `BodyBuffer`: the session's message body plus room after it to read the next bytes into.

use crate::smtp::data::{BodyOut, DataScanner};

/// A message body plus room after it to read more raw bytes into.
///
/// `bytes[..len]` is the body; `bytes[len..]` is scratch that `spare_mut` hands out for the
/// next read. The whole `Vec` is initialized (new room is zeroed once, when it grows), so a
/// read can take it as a plain `&mut [u8]`, and clearing the body between messages costs
/// nothing.
///
/// Invariant: `len <= dirty_end <= bytes.len()`, every byte of `bytes` from `dirty_end`
/// on is zero, and `bytes.capacity()` never exceeds the `bytes_max` the caller passes when
/// growing it (the session's `message_bytes_max`).
#[derive(Debug, Default)]
pub struct BodyBuffer {
    bytes: Vec<u8>,
    len: usize,
    /// How far bytes may have been written (the body, and room handed out for reads):
    /// what `clear` wipes, so a message does not linger in a session that stays open,
    /// and a small message after a big one does not pay for wiping the whole buffer.
    dirty_end: usize,
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

    /// Bytes of room held after the body, ready to read into without growing.
    pub fn room_bytes(&self) -> usize {
        self.bytes.len() - self.len
    }

    /// Empties the body, wiping every byte that was written, and keeps the memory.
    pub fn clear(&mut self) {
        crate::alloc::wipe_if_on(&mut self.bytes[..self.dirty_end]);
        self.len = 0;
        self.dirty_end = 0;
    }

    /// Gives back memory above `bytes_kept_max`, never below the body's length.
    pub fn shrink_to(&mut self, bytes_kept_max: usize) {
        let kept_bytes = bytes_kept_max.max(self.len);
        if self.bytes.capacity() > kept_bytes {
            self.bytes.truncate(kept_bytes);
            self.bytes.shrink_to(kept_bytes);
            self.dirty_end = self.dirty_end.min(kept_bytes);
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
        self.dirty_end = self.dirty_end.max(end_idx);
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
        self.dirty_end = self.dirty_end.max(self.len);
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

    #[test]
    fn clear_wipes_what_was_written_and_only_that() {
        let mut body = BodyBuffer::new();
        body.push(b"secret body", 1 << 20);
        let room = body.spare_mut(16, 64, 1 << 20, true).expect("room");
        room[..6].copy_from_slice(b"unread");
        body.clear();
        assert!(body.bytes.iter().all(|&b| b == 0), "{:?}", body.bytes);
        assert_eq!(body.dirty_end, 0);
        // A small message after a big one wipes only its own bytes.
        body.push(&[b'x'; 3000], 1 << 20);
        body.clear();
        body.push(b"tiny", 1 << 20);
        assert_eq!(body.dirty_end, 4);
        body.clear();
        assert!(body.bytes.iter().all(|&b| b == 0));
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
}
