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
//! and for sealed files the key's fingerprint and the nonce prefix.

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use glommio::io::{DmaFile, OpenOptions};

use crate::journal::crypto::{KeyError, KeyId, KeyRing, Sealer};
use crate::journal::record::{self, FrameError};

/// Bytes before the first frame: one block, so frames start aligned for O_DIRECT too.
pub const HEADER_BYTES: u64 = 4096;
/// First bytes of every journal file.
const FILE_MAGIC: [u8; 8] = *b"MAYFLYJ1";
/// The format this code writes and reads.
const FORMAT_VERSION: u32 = 1;
/// Bytes of the header that are used (the rest of the block is zeros).
const HEADER_USED_BYTES: usize = 48;
/// A journal file is read in pieces of this many bytes.
const READ_CHUNK_BYTES: usize = 1 << 20;
/// Zeros are written ahead of the frames in pieces of this many bytes.
const PREALLOCATE_CHUNK_BYTES: usize = 1 << 20;

/// What a file's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// The shard that wrote it (with the `cores` of that run, see `journal::Layout`).
    pub shard_idx: u32,
    /// Orders a shard's files: each new file has a larger number.
    pub number: u64,
    /// The sealing key's fingerprint; `None` for a file written without encryption.
    pub key_id: Option<KeyId>,
    pub nonce_prefix: u32,
    pub created_at_ms: u64,
}

impl FileHeader {
    fn encode(&self) -> [u8; HEADER_USED_BYTES] {
        let mut bytes = [0u8; HEADER_USED_BYTES];
        bytes[0..8].copy_from_slice(&FILE_MAGIC);
        bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.shard_idx.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.number.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.key_id.unwrap_or(0).to_le_bytes());
        bytes[32..36].copy_from_slice(&self.nonce_prefix.to_le_bytes());
        bytes[36..44].copy_from_slice(&self.created_at_ms.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..44]);
        bytes[44..48].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<FileHeader> {
        let bytes = bytes.get(..HEADER_USED_BYTES)?;
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        if bytes[0..8] != FILE_MAGIC
            || u32_at(8) != FORMAT_VERSION
            || crc32fast::hash(&bytes[..44]) != u32_at(44)
        {
            return None;
        }
        let key_id = u64_at(24);
        Some(FileHeader {
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
    /// too). With `keys`, its frames are sealed with the current key.
    ///
    /// # Errors
    /// The file cannot be created or written, or the random generator failed.
    pub async fn create(
        dir: &Path,
        shard_idx: u32,
        number: u64,
        keys: Option<&Arc<KeyRing>>,
        now_ms: u64,
        preallocate_bytes: u64,
    ) -> io::Result<FileWriter> {
        let path = dir.join(file_name(number));
        let (sealer, key_id, nonce_prefix) = match keys {
            Some(keys) => {
                let (sealer, prefix) = keys.sealer(number).map_err(io::Error::other)?;
                (Some(sealer), Some(keys.current_id()), prefix)
            }
            None => (None, None, 0),
        };
        let header = FileHeader {
            shard_idx,
            number,
            key_id,
            nonce_prefix,
            created_at_ms: now_ms,
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
    #[error("{} is sealed but no --encryption-key-file is given", .path.display())]
    Sealed { path: PathBuf },
}

impl FileContents {
    /// Reads file `path` and opens its frames with `keys` (needed for sealed files).
    /// Corrupt frames are skipped and counted, a torn tail is cut off; neither is an error.
    ///
    /// # Errors
    /// The file cannot be read, its header is not one this code wrote, or it is sealed with
    /// a key that `keys` does not hold.
    pub async fn read(path: &Path, keys: Option<&Arc<KeyRing>>) -> Result<FileContents, ReadError> {
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
        let opener = match (header.key_id, keys) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(ReadError::Sealed {
                    path: path.to_path_buf(),
                });
            }
            (Some(key_id), Some(keys)) => Some(keys.opener(
                key_id,
                header.nonce_prefix,
                header.number,
                &path.display().to_string(),
            )?),
        };
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
mod tests {
    use super::*;
    use crate::journal::record::{ArchivedRecord, IdRecord, RcptRecord, Record, append_frame};

    /// A fresh directory for one test, removed at the end.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let path =
                std::env::temp_dir().join(format!("mayfly-seg-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("temp dir");
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Runs `future` on a glommio executor on this thread (a test's own thread).
    fn run<T>(future: impl std::future::Future<Output = T>) -> T {
        glommio::LocalExecutorBuilder::default()
            .make()
            .expect("executor")
            .run(future)
    }

    /// A batch of `n` Stored records with bodies `body{first}`.. and their frame starts.
    fn batch(first: u64, n: u64, sealed: bool) -> (Vec<u8>, Vec<usize>) {
        let rcpts = [RcptRecord {
            key: "a@x.test",
            written: "a@x.test",
        }];
        let mut out = Vec::new();
        let mut starts = Vec::new();
        for seq in first..first + n {
            let body = format!("body{seq} {}", "x".repeat(seq as usize * 37 % 3000));
            let record = Record::Stored {
                id: IdRecord {
                    boot_micros: 1,
                    shard_idx: 0,
                    seq,
                },
                received_at_ms: seq,
                expires_at_ms: 1_000_000,
                mail_from: "s@x.test",
                rcpts: &rcpts,
                received: b"Received: x\r\n",
                body: body.as_bytes(),
            };
            starts.push(append_frame(&mut out, &record, sealed));
        }
        (out, starts)
    }

    fn seqs(contents: &FileContents) -> Vec<u64> {
        contents
            .records()
            .map(|record| match record.expect("valid") {
                ArchivedRecord::Stored { id, body, .. } => {
                    let seq = id.to_native().seq;
                    assert!(body.as_ref().starts_with(format!("body{seq} ").as_bytes()));
                    seq
                }
                _ => panic!("only Stored records were written"),
            })
            .collect()
    }

    fn keys(key: u8) -> Arc<KeyRing> {
        Arc::new(KeyRing::from_keys(&[[key; 32]], Path::new("k")).expect("key"))
    }

    #[test]
    fn commits_read_back_in_order_sealed_or_not() {
        for sealed in [false, true] {
            let dir = TempDir::new(if sealed { "sealed" } else { "plain" });
            let path = dir.0.clone();
            let keys = sealed.then(|| keys(1));
            let read = run(async move {
                let mut writer = FileWriter::create(&path, 2, 7, keys.as_ref(), 99, 64 * 1024)
                    .await
                    .expect("created");
                // Batches of odd sizes, so commits rewrite partial blocks.
                let mut first = 0;
                for n in [1, 5, 2, 30, 1] {
                    let (mut bytes, starts) = batch(first, n, sealed);
                    writer.commit(&mut bytes, &starts).await.expect("committed");
                    first += n;
                }
                assert_eq!(writer.number(), 7);
                let file_path = writer.path().to_path_buf();
                writer.close().await;
                FileContents::read(&file_path, keys.as_ref())
                    .await
                    .expect("read")
            });
            assert_eq!(read.header.shard_idx, 2);
            assert_eq!(read.header.number, 7);
            assert_eq!(read.header.key_id.is_some(), sealed);
            assert_eq!(seqs(&read), (0..39).collect::<Vec<_>>());
            assert_eq!((read.n_corrupt, read.torn_tail), (0, false));
        }
    }

    #[test]
    fn damage_is_detected_and_the_rest_still_read() {
        let dir = TempDir::new("damage");
        let path = dir.0.clone();
        let file_path = run(async move {
            let keys = keys(3);
            let mut writer = FileWriter::create(&path, 0, 1, Some(&keys), 0, 0)
                .await
                .expect("created");
            let (mut bytes, starts) = batch(0, 10, true);
            writer.commit(&mut bytes, &starts).await.expect("committed");
            let file_path = writer.path().to_path_buf();
            writer.close().await;
            file_path
        });
        let original = std::fs::read(&file_path).unwrap();
        // Sealed: the plaintext is nowhere in the file.
        assert!(!original.windows(5).any(|window| window == b"body3"));

        // A flipped byte inside the third frame: that record is skipped, the others read.
        let mut flipped = original.clone();
        let third = HEADER_BYTES as usize + batch(0, 10, true).1[2] + 40;
        flipped[third] ^= 0x10;
        std::fs::write(&file_path, &flipped).unwrap();
        let path = file_path.clone();
        let read = run(async move {
            FileContents::read(&path, Some(&keys(3)))
                .await
                .expect("read")
        });
        assert_eq!(read.n_corrupt, 1);
        assert_eq!(seqs(&read), [0, 1, 3, 4, 5, 6, 7, 8, 9]);

        // Cut in the middle of the last frame: a torn tail, the rest read.
        let cut = HEADER_BYTES as usize + batch(0, 10, true).1[9] + 30;
        std::fs::write(&file_path, &original[..cut]).unwrap();
        let path = file_path.clone();
        let read = run(async move {
            FileContents::read(&path, Some(&keys(3)))
                .await
                .expect("read")
        });
        assert!(read.torn_tail);
        assert_eq!(seqs(&read), (0..9).collect::<Vec<_>>());

        // Without the key, or with another one: refused with a clear error.
        std::fs::write(&file_path, &original).unwrap();
        let path = file_path.clone();
        let error = run(async move {
            FileContents::read(&path, None)
                .await
                .err()
                .expect("refused")
        });
        assert!(
            error
                .to_string()
                .contains("is sealed but no --encryption-key-file"),
            "{error}"
        );
        let path = file_path.clone();
        let error = run(async move {
            FileContents::read(&path, Some(&keys(4)))
                .await
                .err()
                .expect("refused")
        });
        assert!(
            error.to_string().contains("which --encryption-key-file"),
            "{error}"
        );
        // A header that is not ours.
        let mut bad = original.clone();
        bad[0] = b'X';
        std::fs::write(&file_path, &bad).unwrap();
        let path = file_path.clone();
        let error = run(async move {
            FileContents::read(&path, Some(&keys(3)))
                .await
                .err()
                .expect("refused")
        });
        assert!(matches!(error, ReadError::BadHeader { .. }));
    }

    #[test]
    fn file_names_sort_like_numbers() {
        assert_eq!(file_name(26), "000000000000001a.journal");
        assert_eq!(number_of(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(number_of("1a.journal"), None);
        assert_eq!(number_of("000000000000001a.tmp"), None);
    }
}
