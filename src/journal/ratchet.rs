//! Crypto-shredding: every journal file is sealed with a data key of its own, and deleting
//! a file destroys its key, so a copy of the disk taken afterwards (freed blocks included)
//! cannot be read with the master key.
//!
//! Each shard directory holds one small key file, `keys`: a 32-byte seed for segment
//! number `base`, sealed under the current master key (`crypto::KeyRing`). The seed of
//! segment `n + 1` is HKDF-Expand(seed of `n`, "step"), one way; segment `n`'s data key is
//! HKDF-Expand(seed of `n`, "segment key" || shard || n || salt), where the salt is random
//! per file and written in its header (a file number reused after a crash still gets a
//! fresh key). So the key file yields the keys of segments `base` and later, and no
//! earlier one: advancing `base` past a segment and overwriting the key file destroys
//! that segment's key. Segments are deleted oldest first (`Journal::retire`), so one
//! advance covers every deleted file.
//!
//! The key file is overwritten in place, never replaced by a rename: a renamed-over file
//! leaves its old blocks, old seed included, in free space, where the master key would
//! open them. It has two slots, one filesystem block each, both holding the same state
//! after an advance. An advance writes slot 1 and `fdatasync`s, then slot 0 and
//! `fdatasync`s, and only then are the files unlinked. A crash tears at most one slot: a
//! slot that fails its checksum or its AEAD tag is not trusted, and the valid slot with
//! the higher sequence number wins (the old state if slot 1 tore: the files are still
//! there and readable; the new state if slot 0 tore: the files below `base` are known to
//! be deleted and a restore skips them). Overwriting in place reaches the same blocks on
//! ext4 and XFS; what it cannot promise (copy-on-write filesystems, SSD remapping,
//! backups) is in docs/operations.md.
//!
//! Removing a whole generation (`layout`) first overwrites its key files with zeros
//! (`shred_key_file`). Seeds and data keys in our own buffers are wiped when dropped
//! (`wipe`); the AES and HMAC states ring keeps inside its own types are freed unwiped:
//! the promise is about the disk, not about a memory dump of the running process.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ring::hkdf;

use crate::journal::crypto::{KEY_BYTES, KeyError, KeyId, KeyRing, Sealer, TAG_BYTES, key_id};
use crate::journal::segment::{glommio_io_error, sync_dir};

/// The key file's name in a shard directory.
pub const KEY_FILE_NAME: &str = "keys";
/// Bytes of one slot: a filesystem block, so writing one never touches the other.
const SLOT_BYTES: usize = 4096;
/// Slots in the key file.
const N_SLOTS: usize = 2;
/// Bytes of the whole key file.
pub const KEY_FILE_BYTES: usize = SLOT_BYTES * N_SLOTS;
/// First bytes of every slot.
const SLOT_MAGIC: [u8; 8] = *b"MAYFLYK1";
/// The slot format this code writes and reads.
const SLOT_VERSION: u32 = 1;
/// Bytes of a slot up to the nonce: the additional data its sealed seed is bound to.
const SLOT_AAD_BYTES: usize = 52;
/// Bytes of a slot that are used (the rest is zeros).
const SLOT_USED_BYTES: usize = SLOT_AAD_BYTES + SEED_BYTES + TAG_BYTES + 4;
/// Bytes of a seed.
pub const SEED_BYTES: usize = 32;
/// Bytes of the random salt each journal file's header carries.
pub const SALT_BYTES: usize = 16;
/// HKDF info of a ratchet step.
const INFO_STEP: &[u8] = b"mayfly journal ratchet step v1";
/// HKDF info of a data key.
const INFO_DATA_KEY: &[u8] = b"mayfly journal segment key v1";

/// Overwrites `bytes` with zeros in a way the compiler may not remove as a dead store.
pub fn wipe(bytes: &mut [u8]) {
    for byte in bytes.iter_mut() {
        // SAFETY: `byte` is a valid, aligned, exclusive reference to a u8.
        unsafe { std::ptr::write_volatile(byte, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// A ratchet seed; wiped when dropped.
pub struct Seed([u8; SEED_BYTES]);

/// One journal file's data key; wiped when dropped.
pub struct DataKey([u8; KEY_BYTES]);

/// A new file's key: the data key and the salt its header records.
pub struct FileKey {
    pub key: DataKey,
    pub salt: [u8; SALT_BYTES],
}

/// HKDF output lengths of 32 bytes.
struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

impl Seed {
    fn random() -> io::Result<Seed> {
        let mut seed = Seed([0; SEED_BYTES]);
        getrandom::fill(&mut seed.0).map_err(io::Error::other)?;
        Ok(seed)
    }

    fn expand(&self, info: &[&[u8]]) -> [u8; 32] {
        let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &self.0);
        let mut out = [0u8; 32];
        prk.expand(info, Len32)
            .and_then(|okm| okm.fill(&mut out))
            .expect("HKDF-SHA256 gives 32 bytes");
        out
    }

    /// The seed of the next segment number.
    fn step(&self) -> Seed {
        Seed(self.expand(&[INFO_STEP]))
    }

    /// The seed `n_steps` segment numbers on.
    fn advanced(&self, n_steps: u64) -> Seed {
        let mut seed = Seed(self.0);
        for _ in 0..n_steps {
            seed = seed.step();
        }
        seed
    }

    /// The data key of segment `number` (this seed's number) of shard `shard_idx`.
    fn data_key(&self, shard_idx: u32, number: u64, salt: &[u8; SALT_BYTES]) -> DataKey {
        DataKey(self.expand(&[
            INFO_DATA_KEY,
            &shard_idx.to_le_bytes(),
            &number.to_le_bytes(),
            salt,
        ]))
    }
}

impl Drop for Seed {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl DataKey {
    /// The fingerprint a file's header records, so a reader tells "wrong key file" from
    /// "damaged frames".
    pub fn fingerprint(&self) -> KeyId {
        key_id(&self.0)
    }

    /// A sealer of file `file_number`'s frames.
    pub fn sealer(&self, nonce_prefix: u32, file_number: u64) -> Sealer {
        Sealer::new(&self.0, nonce_prefix, file_number)
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Why a shard directory's key file cannot give a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the journal key file {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{} is sealed with a per-file key but its directory has no key file {}; the \
         directory is incomplete (restore it whole from a backup, or move it away)",
        .segment.display(), .path.display()
    )]
    Absent { segment: PathBuf, path: PathBuf },
    #[error(
        "the journal key file {} has no intact slot (damaged, or not a Mayfly key file); \
         its journal files cannot be opened",
        .path.display()
    )]
    Untrusted { path: PathBuf },
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// A segment below the key file's base: its key was destroyed when it was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("segment {number} was deleted and its key destroyed (the key file starts at {base})")]
pub struct Shredded {
    pub number: u64,
    pub base: u64,
}

/// The key file of one shard directory, opened: the seed of segment `base`.
pub struct KeyFile {
    path: PathBuf,
    keys: Arc<KeyRing>,
    /// The shard that made it (data keys are bound to it).
    shard_idx: u32,
    /// Bumped by every write; the valid slot with the highest wins.
    sequence: u64,
    /// Invariant: `base_seed` is the seed of segment `base`.
    base: u64,
    base_seed: Seed,
    /// The last seed derived and its number (at or above `base`): files are made and read
    /// in increasing numbers, so deriving the next one costs the steps between them only.
    cursor: Option<(u64, Seed)>,
}

/// An advance computed but not yet durable (`KeyFile::prepare_advance`).
pub struct Advance {
    base: u64,
    seed: Seed,
    sequence: u64,
    slot: Vec<u8>,
}

/// One slot's fields, checksum verified, seed still sealed.
struct Slot {
    shard_idx: u32,
    sequence: u64,
    base: u64,
    master_id: KeyId,
    nonce: [u8; 12],
    sealed_seed: [u8; SEED_BYTES],
    tag: [u8; TAG_BYTES],
    aad: [u8; SLOT_AAD_BYTES],
}

impl KeyFile {
    /// Makes a new key file in `dir` for shard `shard_idx`, starting at segment `base`,
    /// durably (the directory entry too); or opens the one there, if an earlier flusher of
    /// this directory made it.
    ///
    /// # Errors
    /// It cannot be written, or the one there cannot be opened with `keys`.
    pub async fn open_or_create(
        dir: &Path,
        shard_idx: u32,
        base: u64,
        keys: &Arc<KeyRing>,
    ) -> Result<KeyFile, KeyFileError> {
        let path = dir.join(KEY_FILE_NAME);
        let io_error = |source: io::Error| KeyFileError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::read(&path) {
            Ok(bytes) => return KeyFile::parse(&path, &bytes, keys),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error(error)),
        }
        let key_file = KeyFile {
            path: path.clone(),
            keys: keys.clone(),
            shard_idx,
            sequence: 1,
            base,
            base_seed: Seed::random().map_err(io_error)?,
            cursor: None,
        };
        let slot = key_file.encode_slot(base, &key_file.base_seed, 1)?;
        let mut bytes = slot.clone();
        bytes.extend_from_slice(&slot);
        let file = glommio::io::OpenOptions::new()
            .write(true)
            .create_new(true)
            .buffered_open(&path)
            .await
            .map_err(|error| io_error(glommio_io_error(error)))?;
        let written = file.write_at(bytes, 0).await;
        let synced = file.fdatasync().await;
        let _ = file.close().await;
        match written {
            Ok(n_written) if n_written == KEY_FILE_BYTES => {}
            Ok(n_written) => {
                return Err(io_error(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("short write: {n_written} of {KEY_FILE_BYTES} bytes"),
                )));
            }
            Err(error) => return Err(io_error(glommio_io_error(error))),
        }
        synced.map_err(|error| io_error(glommio_io_error(error)))?;
        sync_dir(dir).await.map_err(io_error)?;
        Ok(key_file)
    }

    /// Reads the key file of `dir`, if there is one.
    ///
    /// # Errors
    /// It cannot be read, has no intact slot, or is sealed with a key `keys` lacks.
    pub fn load(dir: &Path, keys: &Arc<KeyRing>) -> Result<Option<KeyFile>, KeyFileError> {
        let path = dir.join(KEY_FILE_NAME);
        match std::fs::read(&path) {
            Ok(bytes) => KeyFile::parse(&path, &bytes, keys).map(Some),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(KeyFileError::Io { path, source }),
        }
    }

    /// The oldest segment number whose key the file still yields.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// A fresh key for new segment `number` (at or above `base`), with a random salt.
    ///
    /// # Errors
    /// `number` is below `base`, or the random generator failed.
    pub fn new_file_key(&mut self, number: u64) -> io::Result<FileKey> {
        let mut salt = [0u8; SALT_BYTES];
        getrandom::fill(&mut salt).map_err(io::Error::other)?;
        let key = self.data_key(number, &salt).map_err(io::Error::other)?;
        Ok(FileKey { key, salt })
    }

    /// The data key of segment `number` whose header carries `salt`.
    ///
    /// # Errors
    /// `Shredded` when `number` is below `base`: its key is gone.
    pub fn data_key(&mut self, number: u64, salt: &[u8; SALT_BYTES]) -> Result<DataKey, Shredded> {
        if number < self.base {
            return Err(Shredded {
                number,
                base: self.base,
            });
        }
        let (from, seed) = match self.cursor.take() {
            Some((cursor, seed)) if cursor <= number => (cursor, seed),
            _ => (self.base, self.base_seed.advanced(0)),
        };
        let seed = seed.advanced(number - from);
        let key = seed.data_key(self.shard_idx, number, salt);
        self.cursor = Some((number, seed));
        Ok(key)
    }

    /// The state after moving `base` up to `new_base` (None if it is there already), and
    /// the slot to write. Nothing changes until `finish_advance`.
    ///
    /// # Errors
    /// The random generator failed (for the slot's nonce).
    pub fn prepare_advance(&self, new_base: u64) -> io::Result<Option<Advance>> {
        if new_base <= self.base {
            return Ok(None);
        }
        let seed = self.base_seed.advanced(new_base - self.base);
        let sequence = self.sequence + 1;
        let slot = self
            .encode_slot(new_base, &seed, sequence)
            .map_err(io::Error::other)?;
        Ok(Some(Advance {
            base: new_base,
            seed,
            sequence,
            slot,
        }))
    }

    /// Makes `advance` durable: slot 1, `fdatasync`, slot 0, `fdatasync`, overwriting the
    /// file in place.
    ///
    /// # Errors
    /// A write or `fdatasync` failed: the old state may still be on disk.
    pub async fn write_advance(path: &Path, advance: &Advance) -> io::Result<()> {
        let file = glommio::io::OpenOptions::new()
            .write(true)
            .buffered_open(path)
            .await
            .map_err(glommio_io_error)?;
        let mut outcome = Ok(());
        for slot_idx in [1, 0] {
            let offset = (slot_idx * SLOT_BYTES) as u64;
            outcome = match file.write_at(advance.slot.clone(), offset).await {
                Ok(n_written) if n_written == SLOT_BYTES => {
                    file.fdatasync().await.map_err(glommio_io_error)
                }
                Ok(n_written) => Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("short write: {n_written} of {SLOT_BYTES} bytes"),
                )),
                Err(error) => Err(glommio_io_error(error)),
            };
            if outcome.is_err() {
                break;
            }
        }
        let _ = file.close().await;
        outcome
    }

    /// Takes the state `advance` wrote (after `write_advance` succeeded); the old seed is
    /// wiped.
    pub fn finish_advance(&mut self, advance: Advance) {
        if advance.base <= self.base {
            return;
        }
        self.base = advance.base;
        self.base_seed = advance.seed;
        self.sequence = advance.sequence;
        if self
            .cursor
            .as_ref()
            .is_some_and(|&(cursor, _)| cursor < self.base)
        {
            self.cursor = None;
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn encode_slot(&self, base: u64, seed: &Seed, sequence: u64) -> Result<Vec<u8>, KeyFileError> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|error| KeyFileError::Io {
            path: self.path.clone(),
            source: io::Error::other(error),
        })?;
        let mut slot = vec![0u8; SLOT_BYTES];
        slot[0..8].copy_from_slice(&SLOT_MAGIC);
        slot[8..12].copy_from_slice(&SLOT_VERSION.to_le_bytes());
        slot[12..16].copy_from_slice(&self.shard_idx.to_le_bytes());
        slot[16..24].copy_from_slice(&sequence.to_le_bytes());
        slot[24..32].copy_from_slice(&base.to_le_bytes());
        slot[32..40].copy_from_slice(&self.keys.current_id().to_le_bytes());
        slot[40..52].copy_from_slice(&nonce);
        let (aad, rest) = slot.split_at_mut(SLOT_AAD_BYTES);
        rest[..SEED_BYTES].copy_from_slice(&seed.0);
        let (_, tag) = self.keys.seal_current(nonce, aad, &mut rest[..SEED_BYTES]);
        rest[SEED_BYTES..SEED_BYTES + TAG_BYTES].copy_from_slice(&tag);
        let crc_at = SLOT_USED_BYTES - 4;
        let crc = crc32fast::hash(&slot[..crc_at]);
        slot[crc_at..SLOT_USED_BYTES].copy_from_slice(&crc.to_le_bytes());
        Ok(slot)
    }

    /// Opens the file's newest slot that is intact and authenticates.
    fn parse(path: &Path, bytes: &[u8], keys: &Arc<KeyRing>) -> Result<KeyFile, KeyFileError> {
        let mut slots: Vec<Slot> = (0..N_SLOTS)
            .filter_map(|slot_idx| bytes.get(slot_idx * SLOT_BYTES..(slot_idx + 1) * SLOT_BYTES))
            .filter_map(decode_slot)
            .collect();
        slots.sort_by_key(|slot| std::cmp::Reverse(slot.sequence));
        let what = format!("the journal key file {}", path.display());
        for slot in slots {
            let mut seed = Seed(slot.sealed_seed);
            match keys.open_with(
                slot.master_id,
                slot.nonce,
                &slot.aad,
                &mut seed.0,
                slot.tag,
                &what,
            ) {
                Ok(()) => {
                    return Ok(KeyFile {
                        path: path.to_path_buf(),
                        keys: keys.clone(),
                        shard_idx: slot.shard_idx,
                        sequence: slot.sequence,
                        base: slot.base,
                        base_seed: seed,
                        cursor: None,
                    });
                }
                // A missing master key is the operator's to fix: said at once, whatever
                // the other slot holds.
                Err(Err(missing)) => return Err(missing.into()),
                // Altered or damaged behind an intact checksum: not trusted; the other
                // slot may be good.
                Err(Ok(_)) => continue,
            }
        }
        Err(KeyFileError::Untrusted {
            path: path.to_path_buf(),
        })
    }
}

fn decode_slot(bytes: &[u8]) -> Option<Slot> {
    let bytes = bytes.get(..SLOT_USED_BYTES)?;
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
    let crc_at = SLOT_USED_BYTES - 4;
    if bytes[0..8] != SLOT_MAGIC
        || u32_at(8) != SLOT_VERSION
        || crc32fast::hash(&bytes[..crc_at]) != u32_at(crc_at)
    {
        return None;
    }
    let sealed_at = SLOT_AAD_BYTES;
    let tag_at = sealed_at + SEED_BYTES;
    Some(Slot {
        shard_idx: u32_at(12),
        sequence: u64_at(16),
        base: u64_at(24),
        master_id: u64_at(32),
        nonce: bytes[40..52].try_into().expect("12"),
        sealed_seed: bytes[sealed_at..tag_at].try_into().expect("32"),
        tag: bytes[tag_at..tag_at + TAG_BYTES].try_into().expect("16"),
        aad: bytes[..SLOT_AAD_BYTES].try_into().expect("52"),
    })
}

/// The keys a reader needs for the files of one shard directory: the master keys (for
/// the key file, and for files written before per-file keys), and the directory's key
/// file, read the first time a file needs it.
pub struct DirKeys {
    dir: PathBuf,
    master: Option<Arc<KeyRing>>,
    key_file: Option<KeyFile>,
}

impl DirKeys {
    /// The keys of directory `dir`, opened with `master` (`--encryption-key-file`).
    pub fn new(dir: &Path, master: Option<Arc<KeyRing>>) -> DirKeys {
        DirKeys {
            dir: dir.to_path_buf(),
            master,
            key_file: None,
        }
    }

    /// The master keys, if any.
    pub fn master(&self) -> Option<&Arc<KeyRing>> {
        self.master.as_ref()
    }

    /// The data key of segment `number` of this directory, whose header carries `salt`;
    /// `segment` names it in errors. `Ok(Err(Shredded))` for a deleted segment's file.
    ///
    /// # Errors
    /// No master key, no key file, or a key file that cannot be opened.
    pub fn data_key(
        &mut self,
        segment: &Path,
        number: u64,
        salt: &[u8; SALT_BYTES],
    ) -> Result<Result<DataKey, Shredded>, KeyFileError> {
        if self.key_file.is_none() {
            let path = self.dir.join(KEY_FILE_NAME);
            let Some(master) = &self.master else {
                return Err(KeyFileError::Absent {
                    segment: segment.to_path_buf(),
                    path,
                });
            };
            self.key_file = Some(KeyFile::load(&self.dir, master)?.ok_or(
                KeyFileError::Absent {
                    segment: segment.to_path_buf(),
                    path,
                },
            )?);
        }
        let Some(key_file) = self.key_file.as_mut() else {
            unreachable!("loaded above");
        };
        Ok(key_file.data_key(number, salt))
    }
}

/// Overwrites the key file at `path` with zeros and syncs it, in place, before its
/// directory is removed: unlinking alone would leave its sealed seed in free space. A
/// missing file is fine.
///
/// # Errors
/// It exists and cannot be written or synced.
pub fn shred_key_file(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    let file = match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    // The seeds are in the slots; nothing this code wrote lies beyond them.
    file.write_all_at(&[0u8; KEY_FILE_BYTES], 0)?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TempDir, run_local as run};

    fn ring(keys: &[[u8; KEY_BYTES]]) -> Arc<KeyRing> {
        Arc::new(KeyRing::from_keys(keys, Path::new("master.key")).expect("keys"))
    }

    /// A key file made in `dir` at base `base`, under `master`.
    fn make(dir: &Path, base: u64, master: &Arc<KeyRing>) -> KeyFile {
        let (dir, master) = (dir.to_path_buf(), master.clone());
        run(async move {
            KeyFile::open_or_create(&dir, 4, base, &master)
                .await
                .expect("made")
        })
    }

    /// Advances `key_file` to `new_base`, durably.
    fn advance(key_file: &mut KeyFile, new_base: u64) {
        let advance = key_file
            .prepare_advance(new_base)
            .expect("random")
            .expect("moves");
        let path = key_file.path().to_path_buf();
        let written = run(async move {
            KeyFile::write_advance(&path, &advance).await?;
            Ok::<_, io::Error>(advance)
        });
        key_file.finish_advance(written.expect("written"));
    }

    fn fingerprints(key_file: &mut KeyFile, numbers: std::ops::Range<u64>) -> Vec<KeyId> {
        numbers
            .map(|number| {
                key_file
                    .data_key(number, &[7; SALT_BYTES])
                    .expect("live")
                    .fingerprint()
            })
            .collect()
    }

    #[test]
    fn derivation_is_deterministic_and_distinct_per_file() {
        let seed = Seed([3; SEED_BYTES]);
        let key = |seed: &Seed, number, salt| seed.data_key(0, number, &[salt; SALT_BYTES]).0;
        assert_eq!(key(&seed, 5, 1), key(&Seed([3; SEED_BYTES]), 5, 1));
        assert_ne!(key(&seed, 5, 1), key(&seed, 5, 2), "the salt counts");
        assert_ne!(key(&seed, 5, 1), key(&seed, 6, 1), "the number counts");
        assert_ne!(seed.data_key(1, 5, &[1; SALT_BYTES]).0, key(&seed, 5, 1));
        assert_ne!(seed.step().0, seed.0);
        assert_eq!(seed.advanced(3).0, seed.step().step().step().0);
        // Walking forward from a cursor, jumping back, fresh from the base: the same keys.
        let dir = TempDir::new("derive");
        let master = ring(&[[1; KEY_BYTES]]);
        let mut key_file = make(&dir.0, 10, &master);
        let forward = fingerprints(&mut key_file, 10..16);
        let mut backward: Vec<KeyId> = (10..16)
            .rev()
            .map(|number| {
                key_file
                    .data_key(number, &[7; SALT_BYTES])
                    .unwrap()
                    .fingerprint()
            })
            .collect();
        backward.reverse();
        assert_eq!(forward, backward);
        let mut reloaded = KeyFile::load(&dir.0, &master)
            .expect("loads")
            .expect("there");
        assert_eq!(fingerprints(&mut reloaded, 10..16), forward);
        assert_eq!(
            key_file.data_key(9, &[7; SALT_BYTES]).err(),
            Some(Shredded {
                number: 9,
                base: 10
            })
        );
    }

    #[test]
    fn an_advance_destroys_the_older_keys_on_disk() {
        let dir = TempDir::new("advance");
        let master = ring(&[[1; KEY_BYTES]]);
        let mut key_file = make(&dir.0, 1, &master);
        let keys_before = fingerprints(&mut key_file, 1..6);
        let path = dir.0.join(KEY_FILE_NAME);
        let old_bytes = std::fs::read(&path).unwrap();
        advance(&mut key_file, 4);
        assert_eq!(key_file.base(), 4);
        let new_bytes = std::fs::read(&path).unwrap();
        assert_eq!(new_bytes.len(), KEY_FILE_BYTES, "overwritten, not grown");
        // Neither old slot's sealed seed is anywhere in the file now.
        for slot_idx in 0..N_SLOTS {
            let old = decode_slot(&old_bytes[slot_idx * SLOT_BYTES..]).expect("intact");
            assert!(!new_bytes.windows(SEED_BYTES).any(|w| w == old.sealed_seed));
            let new = decode_slot(&new_bytes[slot_idx * SLOT_BYTES..]).expect("intact");
            assert_eq!((new.base, new.sequence), (4, 2));
        }
        // Read back from disk: segments 4 and 5 keep their keys, 1 to 3 have none.
        let mut reloaded = KeyFile::load(&dir.0, &master).unwrap().unwrap();
        assert_eq!(fingerprints(&mut reloaded, 4..6), keys_before[3..]);
        for number in 1..4 {
            assert!(reloaded.data_key(number, &[7; SALT_BYTES]).is_err());
        }
        // The copy taken before is exactly what the overwrite protects against: it still
        // yields segment 1's key.
        let mut copy = KeyFile::parse(&path, &old_bytes, &master).expect("old copy");
        assert_eq!(fingerprints(&mut copy, 1..2), keys_before[..1]);
        // Advancing to where it is, or back, changes nothing.
        assert!(key_file.prepare_advance(4).unwrap().is_none());
        assert!(key_file.prepare_advance(2).unwrap().is_none());
    }

    #[test]
    fn a_torn_slot_is_not_trusted_and_the_other_one_used() {
        let dir = TempDir::new("torn");
        let master = ring(&[[1; KEY_BYTES]]);
        let mut key_file = make(&dir.0, 1, &master);
        let path = dir.0.join(KEY_FILE_NAME);
        let old_bytes = std::fs::read(&path).unwrap();
        advance(&mut key_file, 3);
        let new_bytes = std::fs::read(&path).unwrap();
        let base_of = |bytes: &[u8]| KeyFile::parse(&path, bytes, &master).map(|file| file.base());
        // Slot 1 torn while written first: slot 0 still holds the old state.
        let mut torn = old_bytes.clone();
        torn[SLOT_BYTES..SLOT_BYTES + 60].copy_from_slice(&new_bytes[SLOT_BYTES..SLOT_BYTES + 60]);
        assert_eq!(base_of(&torn).unwrap(), 1);
        // Slot 0 torn after slot 1 was durable: the new state.
        let mut torn = new_bytes.clone();
        torn[..60].copy_from_slice(&old_bytes[..60]);
        assert_eq!(base_of(&torn).unwrap(), 3);
        // A seed altered behind a recomputed checksum fails its tag: the other slot wins.
        let mut altered = new_bytes.clone();
        altered[SLOT_AAD_BYTES] ^= 1;
        let crc = crc32fast::hash(&altered[..SLOT_USED_BYTES - 4]);
        altered[SLOT_USED_BYTES - 4..SLOT_USED_BYTES].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(base_of(&altered).unwrap(), 3, "slot 1 is intact");
        altered[SLOT_BYTES..].copy_from_slice(&old_bytes[SLOT_BYTES..]);
        altered[SLOT_BYTES + 3] ^= 1;
        // No intact slot, or an empty file: a clear error, never a made-up key.
        for bad in [altered, vec![0; KEY_FILE_BYTES], Vec::new()] {
            let error = base_of(&bad).expect_err("not trusted");
            assert!(error.to_string().contains("has no intact slot"), "{error}");
        }
    }

    #[test]
    fn the_key_file_follows_a_master_key_rotation() {
        let dir = TempDir::new("rotation");
        let (old, new) = ([1; KEY_BYTES], [2; KEY_BYTES]);
        let mut key_file = make(&dir.0, 1, &ring(&[old]));
        let before = fingerprints(&mut key_file, 2..3);
        let error = KeyFile::load(&dir.0, &ring(&[new])).err().expect("refused");
        assert!(error.to_string().contains("does not hold"), "{error}");
        // The new key first, the old one below: opens, and the next write seals under new.
        let rotated = ring(&[new, old]);
        let mut key_file = KeyFile::load(&dir.0, &rotated).unwrap().unwrap();
        assert_eq!(fingerprints(&mut key_file, 2..3), before);
        advance(&mut key_file, 2);
        let mut key_file = KeyFile::load(&dir.0, &ring(&[new])).unwrap().unwrap();
        assert_eq!(fingerprints(&mut key_file, 2..3), before);
    }

    #[test]
    fn wipe_zeroes_and_shredding_a_missing_file_is_fine() {
        let mut bytes = [0xffu8; 40];
        wipe(&mut bytes);
        assert_eq!(bytes, [0; 40]);
        let dir = TempDir::new("shred");
        shred_key_file(&dir.0.join(KEY_FILE_NAME)).expect("nothing to do");
    }
}
