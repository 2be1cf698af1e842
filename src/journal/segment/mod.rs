//! Journal files: a header block, then frames (`record`), appended with O_DIRECT writes
//! through glommio's `DmaFile` on the shard's own executor.
//!
//! A file is written once, front to back, and never rewritten except its last, partial
//! block: each commit writes from the start of the block holding the end of what is on
//! disk (that block's bytes are kept in `tail`) to the end of the new frames, rounded up to
//! the device's alignment, then `fdatasync`s. Zeros pad the last block; a reader stops at
//! zeros (`FrameError::End`).
//!
//! The write and the `fdatasync` are separate steps (`write`, then `fdatasync` on the file
//! handle `syncer` gives), so the journal can write its next batch while the previous
//! batch's `fdatasync` runs. That is safe although each write rewrites the block the
//! previous one ended in: writes are issued one at a time, each after the previous one
//! completed, and a rewritten block holds the earlier write's bytes unchanged at the same
//! offsets, so whichever version of the block the device keeps after a crash, the earlier
//! batch's frames are in it. A file is never appended to after a restart: a new one is
//! started, so a torn tail left by a crash is only ever read, and cut off by the reader.
//!
//! The header names the shard, the file's number (which orders the files of a shard),
//! and for sealed files the key's fingerprint and the nonce prefix. Version 2 files (this
//! code writes no other) are sealed with a data key of their own (`ratchet`), derived
//! from the directory's key file and the random salt in the header; the fingerprint is
//! the data key's. Version 1 files, written before per-file keys, were sealed with a
//! master key directly (the fingerprint is the master key's) and are still read.

use glommio::io::{DmaFile, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::journal::crypto::{KeyError, KeyId, Sealer};
use crate::journal::ratchet::{DirKeys, FileKey, KeyFileError, SALT_BYTES, Shredded};
use crate::journal::record::{self, FrameError};

/// Bytes before the first frame: one block, so frames start aligned for O_DIRECT too.
pub const HEADER_BYTES: u64 = 4096;
/// First bytes of every journal file.
const FILE_MAGIC: [u8; 8] = *b"MAYFLYJ1";
/// The format this code writes: frames sealed with the file's own data key.
const FORMAT_VERSION: u32 = 2;
/// The format before per-file keys: frames sealed with a master key; still read.
const FORMAT_VERSION_MASTER_KEY: u32 = 1;
/// Bytes of a version-1 header before its checksum.
const HEADER_V1_CHECKED_BYTES: usize = 44;
/// Bytes of a version-2 header before its checksum (version 1's fields, then the salt).
const HEADER_CHECKED_BYTES: usize = HEADER_V1_CHECKED_BYTES + SALT_BYTES;
/// Bytes of the header that are used (the rest of the block is zeros).
const HEADER_USED_BYTES: usize = HEADER_CHECKED_BYTES + 4;
/// A journal file is read in pieces of this many bytes.
const READ_CHUNK_BYTES: usize = 1 << 20;
/// Zeros are written ahead of the frames in pieces of this many bytes.
const PREALLOCATE_CHUNK_BYTES: usize = 1 << 20;

/// What a file's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// `FORMAT_VERSION`, or 1 for a file sealed with a master key directly.
    pub version: u32,
    /// The shard that wrote it (with the `cores` of that run, see `journal::Layout`).
    pub shard_idx: u32,
    /// Orders a shard's files: each new file has a larger number.
    pub number: u64,
    /// The sealing key's fingerprint; `None` for a file written without encryption.
    pub key_id: Option<KeyId>,
    pub nonce_prefix: u32,
    pub created_at_ms: u64,
    /// Goes into the file's data key (version 2; zeros in version 1 and unsealed files).
    pub salt: [u8; SALT_BYTES],
}

impl FileHeader {
    /// The header of a file this code writes (version 2).
    fn encode(&self) -> [u8; HEADER_USED_BYTES] {
        debug_assert_eq!(self.version, FORMAT_VERSION);
        let mut bytes = [0u8; HEADER_USED_BYTES];
        bytes[0..8].copy_from_slice(&FILE_MAGIC);
        bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.shard_idx.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.number.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.key_id.unwrap_or(0).to_le_bytes());
        bytes[32..36].copy_from_slice(&self.nonce_prefix.to_le_bytes());
        bytes[36..44].copy_from_slice(&self.created_at_ms.to_le_bytes());
        bytes[44..HEADER_CHECKED_BYTES].copy_from_slice(&self.salt);
        let crc = crc32fast::hash(&bytes[..HEADER_CHECKED_BYTES]);
        bytes[HEADER_CHECKED_BYTES..HEADER_USED_BYTES].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// A version-2 header, or a version-1 one (no salt, a shorter checksummed part).
    fn decode(bytes: &[u8]) -> Option<FileHeader> {
        let bytes = bytes.get(..HEADER_USED_BYTES)?;
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        let version = u32_at(8);
        let checked_bytes = match version {
            FORMAT_VERSION => HEADER_CHECKED_BYTES,
            FORMAT_VERSION_MASTER_KEY => HEADER_V1_CHECKED_BYTES,
            _ => return None,
        };
        if bytes[0..8] != FILE_MAGIC
            || crc32fast::hash(&bytes[..checked_bytes]) != u32_at(checked_bytes)
        {
            return None;
        }
        let key_id = u64_at(24);
        let mut salt = [0u8; SALT_BYTES];
        if version == FORMAT_VERSION {
            salt.copy_from_slice(&bytes[44..HEADER_CHECKED_BYTES]);
        }
        Some(FileHeader {
            version,
            salt,
            shard_idx: u32_at(12),
            number: u64_at(16),
            key_id: (key_id != 0).then_some(key_id),
            nonce_prefix: u32_at(32),
            created_at_ms: u64_at(36),
        })
    }
}

/// The name of a shard's file number `number`: hex, so names sort like numbers.
pub fn file_name(number: u64) -> String {
    format!("{number:016x}.journal")
}

/// The number in a file name `file_name` wrote, if it is one.
pub fn number_of(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".journal")?;
    (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok())?
}

/// One journal file being appended to.
pub struct FileWriter {
    /// Shared with the `fdatasync`s in flight (`syncer`); the last holder closes it.
    file: Rc<DmaFile>,
    path: PathBuf,
    header: FileHeader,
    sealer: Option<Sealer>,
    /// Frames written so far: the next frame's nonce counter.
    n_frames: u64,
    /// Where the next frame goes (bytes of the file that hold data).
    len: u64,
    /// The bytes from the start of the block holding `len` up to `len`: rewritten with the
    /// next commit, since O_DIRECT writes whole blocks.
    tail: Vec<u8>,
    alignment: u64,
}

impl FileWriter {
    /// Creates file `number` in `dir` and makes its header durable (the directory entry
    /// too). With `file_key` (from the directory's key file, `ratchet::KeyFile`), its
    /// frames are sealed with that data key; the key is derived here once per file, never
    /// per record.
    ///
    /// # Errors
    /// The file cannot be created or written, or the random generator failed.
    pub async fn create(
        dir: &Path,
        shard_idx: u32,
        number: u64,
        file_key: Option<FileKey>,
        now_ms: u64,
        preallocate_bytes: u64,
    ) -> io::Result<FileWriter> {
        let path = dir.join(file_name(number));
        // The data key seals this file only, so the nonce prefix need not be random.
        let nonce_prefix = 0;
        let (sealer, key_id, salt) = match &file_key {
            Some(file_key) => (
                Some(file_key.key.sealer(nonce_prefix, number)),
                Some(file_key.key.fingerprint()),
                file_key.salt,
            ),
            None => (None, None, [0; SALT_BYTES]),
        };
        drop(file_key);
        let header = FileHeader {
            version: FORMAT_VERSION,
            shard_idx,
            number,
            key_id,
            nonce_prefix,
            created_at_ms: now_ms,
            salt,
        };
        // Not O_DSYNC (which would make a commit one operation instead of two): the zeros
        // written ahead below would then each wait for the device, and creating a file
        // would take seconds instead of tens of milliseconds (measured).
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .dma_open(&path)
            .await
            .map_err(glommio_io_error)?;
        let alignment = file.alignment();
        let mut block = file.alloc_dma_buffer(HEADER_BYTES as usize);
        block.as_bytes_mut().fill(0);
        block.as_bytes_mut()[..HEADER_USED_BYTES].copy_from_slice(&header.encode());
        file.write_at(block, 0).await.map_err(glommio_io_error)?;
        // Zeros written ahead make every later commit an overwrite of allocated, written
        // blocks: its fdatasync then flushes data only, with no filesystem metadata to
        // journal (no size change, no extent to allocate or mark written), which is what
        // makes a commit cheap. Readers stop at zeros, so the zeros read as "the end".
        let mut pos = HEADER_BYTES;
        while pos < preallocate_bytes {
            let chunk_bytes =
                (preallocate_bytes - pos).min(PREALLOCATE_CHUNK_BYTES as u64) as usize;
            let chunk_bytes = (chunk_bytes as u64).next_multiple_of(alignment) as usize;
            let mut zeros = file.alloc_dma_buffer(chunk_bytes);
            zeros.as_bytes_mut().fill(0);
            file.write_at(zeros, pos).await.map_err(glommio_io_error)?;
            pos += chunk_bytes as u64;
        }
        file.fdatasync().await.map_err(glommio_io_error)?;
        sync_dir(dir).await?;
        Ok(FileWriter {
            file: Rc::new(file),
            path,
            header,
            sealer,
            n_frames: 0,
            len: HEADER_BYTES,
            tail: Vec::new(),
            alignment,
        })
    }

    /// The file's number.
    pub fn number(&self) -> u64 {
        self.header.number
    }

    /// Bytes written to the file so far (header included).
    pub fn bytes_written(&self) -> u64 {
        self.len
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Finishes the frames in `batch` (seals them if the file is sealed, sets their
    /// checksums), writes them after what the file holds, and makes them durable.
    /// `frame_starts` are the offsets of the frames in `batch`, which holds nothing else.
    ///
    /// # Errors
    /// The write or the `fdatasync` failed: nothing of `batch` may be taken as durable.
    pub async fn commit(&mut self, batch: &mut [u8], frame_starts: &[usize]) -> io::Result<()> {
        self.write(batch, frame_starts).await?;
        self.file.fdatasync().await.map_err(glommio_io_error)
    }

    /// `commit` without the `fdatasync`: the frames are written (the device has them, its
    /// cache may not have reached stable storage) and the next `write` may follow at once.
    /// An `fdatasync` on `syncer()` issued after this returns makes them durable.
    ///
    /// # Errors
    /// The write failed or was short: nothing of `batch` may be taken as durable, and the
    /// file's tail is unknown, so no later batch may go into this file either.
    pub async fn write(&mut self, batch: &mut [u8], frame_starts: &[usize]) -> io::Result<()> {
        for (frame_idx, &start) in frame_starts.iter().enumerate() {
            let end = frame_starts
                .get(frame_idx + 1)
                .copied()
                .unwrap_or(batch.len());
            let counter = self.n_frames + frame_idx as u64;
            match &self.sealer {
                Some(sealer) => {
                    let mut seal = |archive: &mut [u8]| sealer.seal(counter, archive);
                    record::finish_frame(&mut batch[start..end], Some(&mut seal));
                }
                None => {
                    record::finish_frame(&mut batch[start..end], None);
                }
            }
        }
        let block_start = self.len - self.tail.len() as u64;
        let data_bytes = self.tail.len() + batch.len();
        let write_bytes = (data_bytes as u64).next_multiple_of(self.alignment) as usize;
        let mut buffer = self.file.alloc_dma_buffer(write_bytes);
        let bytes = buffer.as_bytes_mut();
        bytes[..self.tail.len()].copy_from_slice(&self.tail);
        bytes[self.tail.len()..data_bytes].copy_from_slice(batch);
        bytes[data_bytes..].fill(0);
        let new_len = self.len + batch.len() as u64;
        let new_block_start = new_len - new_len % self.alignment;
        let tail_from = (new_block_start - block_start) as usize;
        let new_tail = bytes[tail_from..data_bytes].to_vec();
        let written = self
            .file
            .write_at(buffer, block_start)
            .await
            .map_err(glommio_io_error)?;
        if written < write_bytes {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "short write to {}: {written} of {write_bytes} bytes",
                    self.path.display()
                ),
            ));
        }
        self.len = new_len;
        self.tail = new_tail;
        self.n_frames += frame_starts.len() as u64;
        Ok(())
    }

    /// The file, for `fdatasync`s that run while later batches are written.
    pub fn syncer(&self) -> Rc<DmaFile> {
        self.file.clone()
    }

    /// Closes the file (what was committed stays); if an `fdatasync` still holds it, the
    /// last one to finish closes it.
    pub async fn close(self) {
        let _ = self.file.close_rc().await;
    }
}

/// The frames of one journal file, read whole into memory and opened (decrypted in
/// place): what `records` walks.
pub struct FileContents {
    pub header: FileHeader,
    /// The file's bytes from the first frame on; 16-byte aligned.
    bytes: rkyv::util::AlignedVec<16>,
    /// Each good frame: where its archive is in `bytes`, and its length.
    archives: Vec<(usize, usize)>,
    /// Frames skipped because they were corrupt (bad checksum, bad header, or a sealed
    /// frame that does not authenticate).
    pub n_corrupt: u64,
    /// Whether the file ended inside a frame: a write cut off by a crash.
    pub torn_tail: bool,
}

/// Why a journal file cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{} is not a journal file of this version (bad header)", .path.display())]
    BadHeader { path: PathBuf },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error("{} is sealed but no --encryption-key-file is given", .path.display())]
    Sealed { path: PathBuf },
    /// The file was deleted from the journal and its key destroyed, but a crash left it
    /// on disk: nothing in it is live, and nothing can open it.
    #[error("{}: {source}", .path.display())]
    Shredded { path: PathBuf, source: Shredded },
    #[error(
        "{} does not open with the key its directory's key file gives (fingerprint \
         {expected:016x}, derived {derived:016x}); the key file is not this file's",
        .path.display()
    )]
    WrongKeyFile {
        path: PathBuf,
        expected: KeyId,
        derived: KeyId,
    },
}

impl FileContents {
    /// Reads file `path` and opens its frames with the keys of its directory, `keys`
    /// (needed for sealed files). Corrupt frames are skipped and counted, a torn tail is
    /// cut off; neither is an error.
    ///
    /// # Errors
    /// The file cannot be read, its header is not one this code wrote, it is sealed with
    /// a key that `keys` does not hold, or it was deleted and its key destroyed
    /// (`Shredded`: a crash came between the two).
    pub async fn read(path: &Path, keys: &mut DirKeys) -> Result<FileContents, ReadError> {
        let io_error = |source: io::Error| ReadError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = DmaFile::open(path)
            .await
            .map_err(|error| io_error(glommio_io_error(error)))?;
        let size = file
            .file_size()
            .await
            .map_err(|error| io_error(glommio_io_error(error)))?;
        let mut bytes = rkyv::util::AlignedVec::<16>::with_capacity(size as usize);
        let mut header = None;
        let mut pos = 0u64;
        while pos < size {
            let chunk = file
                .read_at_aligned(pos, READ_CHUNK_BYTES)
                .await
                .map_err(|error| io_error(glommio_io_error(error)))?;
            if chunk.is_empty() {
                break;
            }
            let mut piece: &[u8] = &chunk;
            if pos == 0 {
                header = FileHeader::decode(piece);
                piece = piece.get(HEADER_BYTES as usize..).unwrap_or_default();
            }
            bytes.extend_from_slice(piece);
            pos += chunk.len() as u64;
        }
        let _ = file.close().await;
        let header = header.ok_or_else(|| ReadError::BadHeader {
            path: path.to_path_buf(),
        })?;
        let opener = opener(path, &header, keys)?;
        let mut contents = FileContents {
            header,
            bytes,
            archives: Vec::new(),
            n_corrupt: 0,
            torn_tail: false,
        };
        contents.open_frames(opener.as_ref());
        Ok(contents)
    }

    /// Whether the file can be opened with `keys` (its header, and its key), without
    /// reading its frames: how a copy of a deleted segment is shown to be unreadable.
    ///
    /// # Errors
    /// As `read`.
    pub fn check_key(path: &Path, keys: &mut DirKeys) -> Result<(), ReadError> {
        use std::io::Read as _;
        let io_error = |source: io::Error| ReadError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut bytes = Vec::with_capacity(HEADER_USED_BYTES);
        std::fs::File::open(path)
            .and_then(|file| file.take(HEADER_USED_BYTES as u64).read_to_end(&mut bytes))
            .map_err(io_error)?;
        let header = FileHeader::decode(&bytes).ok_or_else(|| ReadError::BadHeader {
            path: path.to_path_buf(),
        })?;
        opener(path, &header, keys).map(|_| ())
    }

    /// Walks the frames: checks each, decrypts sealed ones in place, notes where the good
    /// archives are. The frame counter (the nonce) is the frame's index in the file, so a
    /// skipped corrupt frame still counts.
    fn open_frames(&mut self, opener: Option<&Sealer>) {
        let mut pos = 0;
        let mut counter = 0u64;
        loop {
            match record::read_frame(&self.bytes, pos) {
                Ok(frame) => {
                    let payload = &mut self.bytes
                        [frame.payload_start..frame.payload_start + frame.payload_bytes];
                    let archive_len = if frame.flags & record::FLAG_SEALED != 0 {
                        match opener.map(|opener| opener.open(counter, payload)) {
                            Some(Ok(plaintext)) => Some(plaintext.len()),
                            _ => None,
                        }
                    } else {
                        Some(frame.payload_bytes)
                    };
                    match archive_len {
                        Some(len) => self.archives.push((frame.payload_start, len)),
                        None => self.n_corrupt += 1,
                    }
                    counter += 1;
                    pos = frame.next;
                }
                Err(FrameError::End) => return,
                Err(FrameError::Truncated) => {
                    self.torn_tail = true;
                    return;
                }
                Err(FrameError::BadHeader | FrameError::BadChecksum) => {
                    self.n_corrupt += 1;
                    counter += 1;
                    match record::resync(&self.bytes, pos) {
                        Some(next) => pos = next,
                        None => return,
                    }
                }
            }
        }
    }

    /// The good records, in order, validated by rkyv's checked access; an archive that does
    /// not validate is skipped (and counted by the caller through `n_invalid`).
    pub fn records(&self) -> impl Iterator<Item = Result<&record::ArchivedRecord<'static>, ()>> {
        (0..self.archives.len()).filter_map(|idx| self.record(idx))
    }

    /// Bytes held in memory.
    pub fn len_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Record `idx` of the file, validated; None past the end. (Not `records().nth(idx)`,
    /// which validates every record before it: quadratic over a restore.)
    pub fn record(&self, idx: usize) -> Option<Result<&record::ArchivedRecord<'static>, ()>> {
        let &(start, len) = self.archives.get(idx)?;
        Some(record::access(&self.bytes[start..start + len]).map_err(|_| ()))
    }
}

/// The sealer that opens the frames of the file at `path` with header `header`: none if
/// it is not sealed; a master key for version 1; the data key from its directory's key
/// file for version 2 (checked against the header's fingerprint).
fn opener(
    path: &Path,
    header: &FileHeader,
    keys: &mut DirKeys,
) -> Result<Option<Sealer>, ReadError> {
    let Some(key_id) = header.key_id else {
        return Ok(None);
    };
    let Some(master) = keys.master() else {
        return Err(ReadError::Sealed {
            path: path.to_path_buf(),
        });
    };
    if header.version == FORMAT_VERSION_MASTER_KEY {
        let what = path.display().to_string();
        return Ok(Some(master.opener(
            key_id,
            header.nonce_prefix,
            header.number,
            &what,
        )?));
    }
    let key = keys
        .data_key(path, header.number, &header.salt)?
        .map_err(|source| ReadError::Shredded {
            path: path.to_path_buf(),
            source,
        })?;
    if key.fingerprint() != key_id {
        return Err(ReadError::WrongKeyFile {
            path: path.to_path_buf(),
            expected: key_id,
            derived: key.fingerprint(),
        });
    }
    Ok(Some(key.sealer(header.nonce_prefix, header.number)))
}

/// Makes a new directory entry (a created or removed file) durable.
pub async fn sync_dir(dir: &Path) -> io::Result<()> {
    let directory = glommio::io::Directory::open(dir)
        .await
        .map_err(glommio_io_error)?;
    directory.sync().await.map_err(glommio_io_error)?;
    let _ = directory.close().await;
    Ok(())
}

/// glommio's errors as `io::Error`, keeping the kind and message.
pub fn glommio_io_error(error: glommio::GlommioError<()>) -> io::Error {
    io::Error::from(error)
}

#[cfg(test)]
mod tests;
