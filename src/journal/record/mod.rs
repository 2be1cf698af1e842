//! What the journal writes: records in rkyv, framed with a length and a checksum.
//!
//! A frame is a 16-byte header and a payload, padded to a multiple of 16 bytes so that
//! every frame starts 16-byte aligned in its file (rkyv's archived types need 8):
//!
//! ```text
//! magic "MFJ1" (4) | payload bytes (u32 LE) | CRC-32 of the payload (u32 LE) | flags (u32 LE)
//! payload: the rkyv archive of a `Record`, then the AES-256-GCM tag (16) when sealed
//! zeros up to the next multiple of 16
//! ```
//!
//! The checksum tells a torn or corrupt frame from a good one before anything else looks
//! at it; the magic lets a reader find the next frame after a corrupt one; the archive is
//! then validated by rkyv's checked access (`access`), so nothing read from disk is ever
//! trusted. Restoring reads messages in place from the archive: no copy, no parse.
//!
//! The body is archived as two byte strings, our Received header and the client's
//! message, exactly as the store holds them (`Incoming::parts`), so writing a record
//! copies each byte once, into the journal's buffer.

use rkyv::rancor::Error as RancorError;

use crate::journal::crypto::TAG_BYTES;
use rkyv::with::InlineAsBox;
use rkyv::{Archive, Serialize};

/// First bytes of every frame.
pub const FRAME_MAGIC: [u8; 4] = *b"MFJ1";
/// Bytes of a frame header.
pub const FRAME_HEADER_BYTES: usize = 16;
/// Frames start at multiples of this in their file.
pub const FRAME_ALIGN: usize = 16;
/// The largest payload a frame may say it has: a message at the configuration's maximum
/// (`--max-message-size` is at most the memory budget) plus its envelope fits easily;
/// anything larger is a corrupt length, not a record.
pub const FRAME_PAYLOAD_BYTES_MAX: usize = 1 << 30;
/// Flag: the payload is sealed (AES-256-GCM), the tag at its end.
pub const FLAG_SEALED: u32 = 1;

/// A message id as the journal writes it (`store::MessageId`'s three parts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Archive, Serialize)]
pub struct IdRecord {
    pub boot_micros: u64,
    pub shard_idx: u16,
    pub seq: u64,
}

/// One recipient of a stored message: its inbox key and the address as written.
#[derive(Debug, Archive, Serialize)]
pub struct RcptRecord<'a> {
    #[rkyv(with = InlineAsBox)]
    pub key: &'a str,
    #[rkyv(with = InlineAsBox)]
    pub written: &'a str,
}

/// What happened to a shard's store, in the order it happened.
#[derive(Debug, Archive, Serialize)]
pub enum Record<'a> {
    /// A message was stored for these recipients (those of this shard).
    Stored {
        id: IdRecord,
        received_at_ms: u64,
        expires_at_ms: u64,
        #[rkyv(with = InlineAsBox)]
        mail_from: &'a str,
        #[rkyv(with = InlineAsBox)]
        rcpts: &'a [RcptRecord<'a>],
        /// Our Received header.
        #[rkyv(with = InlineAsBox)]
        received: &'a [u8],
        /// The client's message.
        #[rkyv(with = InlineAsBox)]
        body: &'a [u8],
    },
    /// Inbox `key` stopped holding message `id` (a client deleted it).
    Deleted {
        id: IdRecord,
        #[rkyv(with = InlineAsBox)]
        key: &'a str,
    },
    /// Inbox `key` was emptied.
    InboxDeleted {
        #[rkyv(with = InlineAsBox)]
        key: &'a str,
    },
}

/// Why a frame could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The buffer ends inside the frame: the tail of a write that a crash cut off.
    #[error("truncated frame")]
    Truncated,
    /// Zeros where a frame would start: the end of what was written.
    #[error("end of the written frames")]
    End,
    /// Not a frame header (bad magic or an impossible length).
    #[error("not a frame header")]
    BadHeader,
    /// The payload does not match its checksum.
    #[error("checksum mismatch")]
    BadChecksum,
}

/// A frame read from a buffer: where its payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Payload offset in the buffer (16-byte aligned if the buffer's start is).
    pub payload_start: usize,
    pub payload_bytes: usize,
    pub flags: u32,
    /// Where the next frame starts.
    pub next: usize,
}

/// Encrypts an archive in place and returns its tag.
pub type Seal<'s> = dyn FnMut(&mut [u8]) -> [u8; TAG_BYTES] + 's;

/// Appends the frame of `record` to `out`, whose length must be a multiple of
/// `FRAME_ALIGN`, and returns the frame's start. With `sealed`, room for the GCM tag is
/// left after the archive and the frame is flagged as sealed. The checksum is not set
/// yet: `finish_frame` seals (if flagged) and checksums the frame once its position in
/// its file, which the nonce depends on, is known.
///
/// # Panics
/// If `out` is not aligned, or the record cannot be archived (it always can: every field
/// is plain data).
pub fn append_frame(out: &mut Vec<u8>, record: &Record<'_>, sealed: bool) -> usize {
    assert!(
        out.len().is_multiple_of(FRAME_ALIGN),
        "frames start aligned"
    );
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
    let payload_start = out.len();
    // rkyv writes at `out`'s end; its relative pointers do not depend on where that is,
    // and alignment padding is computed from positions in `out`, whose start is aligned
    // like the file position it will be written to.
    let written = rkyv::api::high::to_bytes_in::<_, RancorError>(record, &mut *out);
    if let Err(error) = written {
        panic!("archiving a record cannot fail: {error}");
    }
    let mut flags = 0;
    if sealed {
        out.extend_from_slice(&[0u8; TAG_BYTES]);
        flags |= FLAG_SEALED;
    }
    let payload_bytes = out.len() - payload_start;
    assert!(payload_bytes <= FRAME_PAYLOAD_BYTES_MAX, "record too large");
    let header = &mut out[start..payload_start];
    header[..4].copy_from_slice(&FRAME_MAGIC);
    header[4..8].copy_from_slice(&(payload_bytes as u32).to_le_bytes());
    header[12..16].copy_from_slice(&flags.to_le_bytes());
    out.resize(out.len().next_multiple_of(FRAME_ALIGN), 0);
    start
}

/// Finishes the frame at the start of `frame` (as `append_frame` left it): seals its
/// archive in place with `seal` (which returns the tag) if it is flagged as sealed, then
/// sets its checksum. Returns the frame's length, padding included.
///
/// # Panics
/// If `frame` does not start with a frame `append_frame` wrote, or a sealed frame comes
/// without `seal`.
pub fn finish_frame(frame: &mut [u8], seal: Option<&mut Seal<'_>>) -> usize {
    assert_eq!(frame[..4], FRAME_MAGIC, "not a frame");
    let payload_bytes = u32::from_le_bytes(frame[4..8].try_into().expect("4 bytes")) as usize;
    let flags = u32::from_le_bytes(frame[12..16].try_into().expect("4 bytes"));
    let payload = &mut frame[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + payload_bytes];
    if flags & FLAG_SEALED != 0 {
        let seal = seal.expect("a sealed frame needs its sealer");
        let (archive, tag) = payload.split_at_mut(payload_bytes - TAG_BYTES);
        tag.copy_from_slice(&seal(archive));
    }
    let crc = crc32fast::hash(payload);
    frame[8..12].copy_from_slice(&crc.to_le_bytes());
    (FRAME_HEADER_BYTES + payload_bytes).next_multiple_of(FRAME_ALIGN)
}

/// Reads the frame header at `pos` of `buf` and checks its payload's checksum.
///
/// # Errors
/// `End` for zeros (nothing was written here), `Truncated` when `buf` ends inside the
/// frame, `BadHeader` and `BadChecksum` for corrupt frames.
pub fn read_frame(buf: &[u8], pos: usize) -> Result<Frame, FrameError> {
    let Some(header) = buf.get(pos..pos + FRAME_HEADER_BYTES) else {
        return if buf[pos.min(buf.len())..].iter().all(|&b| b == 0) {
            Err(FrameError::End)
        } else {
            Err(FrameError::Truncated)
        };
    };
    if header.iter().all(|&b| b == 0) {
        return Err(FrameError::End);
    }
    if header[..4] != FRAME_MAGIC {
        return Err(FrameError::BadHeader);
    }
    let payload_bytes = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    let flags = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
    if payload_bytes > FRAME_PAYLOAD_BYTES_MAX || flags & !FLAG_SEALED != 0 {
        return Err(FrameError::BadHeader);
    }
    let payload_start = pos + FRAME_HEADER_BYTES;
    let Some(payload) = buf.get(payload_start..payload_start + payload_bytes) else {
        return Err(FrameError::Truncated);
    };
    if crc32fast::hash(payload) != crc {
        return Err(FrameError::BadChecksum);
    }
    Ok(Frame {
        payload_start,
        payload_bytes,
        flags,
        next: (payload_start + payload_bytes).next_multiple_of(FRAME_ALIGN),
    })
}

/// The first position after `pos` where a frame header with the magic starts, for going
/// on after a corrupt frame; `None` if there is none.
pub fn resync(buf: &[u8], pos: usize) -> Option<usize> {
    let mut candidate = (pos + FRAME_ALIGN).next_multiple_of(FRAME_ALIGN);
    while candidate + FRAME_HEADER_BYTES <= buf.len() {
        if buf[candidate..candidate + 4] == FRAME_MAGIC {
            return Some(candidate);
        }
        candidate += FRAME_ALIGN;
    }
    None
}

/// Validates an archived record (rkyv's checked access): a corrupt archive is an error,
/// never undefined behaviour.
///
/// # Errors
/// The bytes are not a valid archive of a `Record`.
pub fn access(archive: &[u8]) -> Result<&ArchivedRecord<'static>, RancorError> {
    rkyv::access::<ArchivedRecord<'static>, RancorError>(archive)
}

impl ArchivedIdRecord {
    /// The id as plain numbers.
    pub fn to_native(&self) -> IdRecord {
        IdRecord {
            boot_micros: self.boot_micros.to_native(),
            shard_idx: self.shard_idx.to_native(),
            seq: self.seq.to_native(),
        }
    }
}

#[cfg(test)]
mod tests;
