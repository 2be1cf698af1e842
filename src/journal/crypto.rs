//! Encryption at rest: AES-256-GCM (ring's AEAD, already in the tree through rustls) over
//! every record, with the keys of `--encryption-key-file`.
//!
//! The key file holds one key per line, 64 hex digits each (`mayfly keygen` writes one,
//! mode 0600); `#` starts a comment. The first key seals everything written from now on;
//! the others only open what was sealed with them, so rotating a key is: put the new key
//! first, keep the old one below it until its files have expired (one TTL), then remove
//! it. Each file names the key that sealed it by a fingerprint (the first 8 bytes of the
//! key's SHA-256), never by the key itself.
//!
//! Since crypto-shredding (`ratchet`), the master keys seal only each shard's small key
//! file; every journal file is sealed with a data key of its own, derived from that key
//! file, so deleting a file can destroy its key. Files written before that (format
//! version 1) were sealed with a master key directly, and are still read with it.
//!
//! Nonces are never reused under a key: a data key seals one file only, and its frames
//! count up from 0 (prefix || counter, 96 bits; the prefix was random per file when the
//! master key sealed many files). The additional data binds each frame to its file and
//! position (file number || counter), so frames cannot be moved between files or
//! reordered without failing to open. Key-file slots are sealed under the master key
//! with a random 96-bit nonce each; a shard writes a few of them per segment lifetime.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use ring::digest::{SHA256, digest};

/// Bytes of a key.
pub const KEY_BYTES: usize = 32;
/// Bytes of a GCM tag.
pub const TAG_BYTES: usize = 16;
/// A key file larger than this is not a key file.
const KEY_FILE_BYTES_MAX: u64 = 64 * 1024;
/// Keys one file may list (the current one and the ones being rotated out).
const KEYS_MAX: usize = 64;

/// The fingerprint of a key, as files name it.
pub type KeyId = u64;

/// The keys of `--encryption-key-file`: the first seals, all open.
pub struct KeyRing {
    /// Invariant: not empty; `keys[0]` is the current key.
    keys: Vec<(KeyId, LessSafeKey)>,
    path: PathBuf,
}

/// Why the keys cannot be used. Each displays as one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read --encryption-key-file {}: {reason}", .path.display())]
    Read { path: PathBuf, reason: String },
    #[error("--encryption-key-file {} line {line}: {reason}", .path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("--encryption-key-file {} holds no key", .path.display())]
    Empty { path: PathBuf },
    #[error(
        "{what} was sealed with key {key_id:016x}, which --encryption-key-file {} does not hold; \
         add that key to the file (below the current one) or move the data directory away"
    , .path.display())]
    Missing {
        what: String,
        key_id: KeyId,
        path: PathBuf,
    },
}

/// A frame could not be opened: it was not sealed with this key, or it was altered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the frame does not open with its key (altered, or another key)")]
pub struct OpenError;

/// Seals or opens the frames of one file: its key, nonce prefix and number.
pub struct Sealer {
    /// The file's data key (or, for a version-1 file, the master key that sealed it).
    key: LessSafeKey,
    nonce_prefix: u32,
    file_number: u64,
}

impl KeyRing {
    /// Reads `path`.
    ///
    /// # Errors
    /// The file cannot be read, a line is not 64 hex digits, or it lists no key.
    pub fn load(path: &Path) -> Result<KeyRing, KeyError> {
        let read_error = |reason: String| KeyError::Read {
            path: path.to_path_buf(),
            reason,
        };
        let metadata = std::fs::metadata(path).map_err(|error| read_error(error.to_string()))?;
        if metadata.len() > KEY_FILE_BYTES_MAX {
            return Err(read_error(format!(
                "larger than {KEY_FILE_BYTES_MAX} bytes; not a key file"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|error| read_error(error.to_string()))?;
        let mut keys = Vec::new();
        for (line_idx, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let parse_error = |reason: &str| KeyError::Parse {
                path: path.to_path_buf(),
                line: line_idx + 1,
                reason: reason.to_string(),
            };
            let bytes = decode_hex(line).ok_or_else(|| {
                parse_error("expected 64 hex digits (32 bytes; `mayfly keygen FILE` writes one)")
            })?;
            if keys.len() == KEYS_MAX {
                return Err(parse_error("too many keys"));
            }
            keys.push(bytes);
        }
        KeyRing::from_keys(&keys, path)
    }

    /// A ring of these keys, the first current (tests, and `load`).
    ///
    /// # Errors
    /// `Empty` when `keys` is.
    pub fn from_keys(keys: &[[u8; KEY_BYTES]], path: &Path) -> Result<KeyRing, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Empty {
                path: path.to_path_buf(),
            });
        }
        let keys = keys
            .iter()
            .map(|key| {
                let unbound =
                    UnboundKey::new(&AES_256_GCM, key).expect("32 bytes is an AES-256 key");
                (key_id(key), LessSafeKey::new(unbound))
            })
            .collect();
        Ok(KeyRing {
            keys,
            path: path.to_path_buf(),
        })
    }

    /// The fingerprint of the key that seals new files.
    pub fn current_id(&self) -> KeyId {
        self.keys[0].0
    }

    /// An opener for a file sealed with key `key_id`, prefix `nonce_prefix`, number
    /// `file_number`.
    ///
    /// # Errors
    /// `Missing` when the ring does not hold that key; `what` names the file.
    pub fn opener(
        self: &Arc<Self>,
        key_id: KeyId,
        nonce_prefix: u32,
        file_number: u64,
        what: &str,
    ) -> Result<Sealer, KeyError> {
        Ok(Sealer {
            key: self.key(key_id, what)?.clone(),
            nonce_prefix,
            file_number,
        })
    }

    /// Seals `data` in place under the current key with `nonce`, binding `aad`; returns
    /// the key's fingerprint and the tag (for the key files of `ratchet`).
    pub fn seal_current(
        &self,
        nonce: [u8; 12],
        aad: &[u8],
        data: &mut [u8],
    ) -> (KeyId, [u8; TAG_BYTES]) {
        let (key_id, key) = &self.keys[0];
        let tag = key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), data)
            .expect("AES-GCM seals any short buffer");
        let mut bytes = [0u8; TAG_BYTES];
        bytes.copy_from_slice(tag.as_ref());
        (*key_id, bytes)
    }

    /// Opens `data` in place, sealed by `seal_current` under key `key_id`.
    ///
    /// # Errors
    /// `Err(Err(Missing))` when the ring lacks that key (`what` names the sealed thing),
    /// `Err(Ok(OpenError))` when it does not authenticate.
    pub fn open_with(
        &self,
        key_id: KeyId,
        nonce: [u8; 12],
        aad: &[u8],
        data: &mut [u8],
        tag: [u8; TAG_BYTES],
        what: &str,
    ) -> Result<(), Result<OpenError, KeyError>> {
        let key = self.key(key_id, what).map_err(Err)?;
        key.open_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            Tag::from(tag),
            data,
            0..,
        )
        .map(|_| ())
        .map_err(|_| Ok(OpenError))
    }

    /// Whether the ring holds key `key_id`.
    pub fn holds(&self, key_id: KeyId) -> bool {
        self.keys.iter().any(|(id, _)| *id == key_id)
    }

    fn key(&self, key_id: KeyId, what: &str) -> Result<&LessSafeKey, KeyError> {
        self.keys
            .iter()
            .find(|(id, _)| *id == key_id)
            .map(|(_, key)| key)
            .ok_or_else(|| KeyError::Missing {
                what: what.to_string(),
                key_id,
                path: self.path.clone(),
            })
    }
}

impl Sealer {
    /// A sealer for file number `file_number` with its own data key `key` (the frames'
    /// nonces are `nonce_prefix` || counter).
    pub fn new(key: &[u8; KEY_BYTES], nonce_prefix: u32, file_number: u64) -> Sealer {
        let unbound = UnboundKey::new(&AES_256_GCM, key).expect("32 bytes is an AES-256 key");
        Sealer {
            key: LessSafeKey::new(unbound),
            nonce_prefix,
            file_number,
        }
    }

    /// Encrypts frame number `counter` in place and returns its tag.
    pub fn seal(&self, counter: u64, plaintext: &mut [u8]) -> [u8; TAG_BYTES] {
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(counter), self.aad(counter), plaintext)
            .expect("AES-GCM seals any frame under 64 GiB");
        let mut bytes = [0u8; TAG_BYTES];
        bytes.copy_from_slice(tag.as_ref());
        bytes
    }

    /// Decrypts frame number `counter` in place (`sealed` is the ciphertext followed by
    /// its tag) and returns the plaintext, which starts where `sealed` does.
    ///
    /// # Errors
    /// The frame does not authenticate.
    pub fn open<'b>(&self, counter: u64, sealed: &'b mut [u8]) -> Result<&'b mut [u8], OpenError> {
        if sealed.len() < TAG_BYTES {
            return Err(OpenError);
        }
        let (ciphertext, tag) = sealed.split_at_mut(sealed.len() - TAG_BYTES);
        let tag = Tag::try_from(&*tag).map_err(|_| OpenError)?;
        self.key
            .open_in_place_separate_tag(
                self.nonce(counter),
                self.aad(counter),
                tag,
                ciphertext,
                0..,
            )
            .map_err(|_| OpenError)
    }

    fn nonce(&self, counter: u64) -> Nonce {
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&self.nonce_prefix.to_le_bytes());
        nonce[4..].copy_from_slice(&counter.to_le_bytes());
        Nonce::assume_unique_for_key(nonce)
    }

    fn aad(&self, counter: u64) -> Aad<[u8; 16]> {
        let mut aad = [0u8; 16];
        aad[..8].copy_from_slice(&self.file_number.to_le_bytes());
        aad[8..].copy_from_slice(&counter.to_le_bytes());
        Aad::from(aad)
    }
}

/// `mayfly keygen FILE`: writes a new random key to `path`, readable by its owner only
/// (mode 0600), never over an existing file.
///
/// # Errors
/// The file exists or cannot be written, or the random generator failed.
pub fn write_new_key_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut key = [0u8; KEY_BYTES];
    getrandom::fill(&mut key).map_err(std::io::Error::other)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let mut text = String::from(
        "# Mayfly encryption key (--encryption-key-file). The first key seals new data; keep\n\
         # older keys below it until the data they sealed has expired. Never share this file.\n",
    );
    for byte in key {
        text.push_str(&format!("{byte:02x}"));
    }
    text.push('\n');
    key.fill(0);
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// The fingerprint of `key`: its SHA-256's first 8 bytes.
pub fn key_id(key: &[u8; KEY_BYTES]) -> KeyId {
    let hash = digest(&SHA256, key);
    u64::from_le_bytes(hash.as_ref()[..8].try_into().expect("8 bytes"))
}

fn decode_hex(text: &str) -> Option<[u8; KEY_BYTES]> {
    if text.len() != 2 * KEY_BYTES || !text.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; KEY_BYTES];
    for (byte_idx, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * byte_idx..2 * byte_idx + 2], 16).ok()?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(keys: &[[u8; KEY_BYTES]]) -> Arc<KeyRing> {
        Arc::new(KeyRing::from_keys(keys, Path::new("test.key")).expect("keys"))
    }

    #[test]
    fn seals_and_opens_in_place_bound_to_file_and_position() {
        let keys = ring(&[[1u8; 32]]);
        // A version-1 file: sealed with the master key directly.
        let prefix = 9;
        let sealer = keys
            .opener(keys.current_id(), prefix, 7, "test")
            .expect("key");
        let mut frame = b"the archived record".to_vec();
        let tag = sealer.seal(3, &mut frame);
        assert_ne!(&frame[..], b"the archived record");
        frame.extend_from_slice(&tag);
        let opener = keys
            .opener(keys.current_id(), prefix, 7, "test")
            .expect("key");
        let mut copy = frame.clone();
        assert_eq!(
            opener.open(3, &mut copy).expect("opens"),
            b"the archived record"
        );
        // Another position, another file, a flipped bit: none opens.
        assert_eq!(opener.open(4, &mut frame.clone()), Err(OpenError));
        let other_file = keys.opener(keys.current_id(), prefix, 8, "test").unwrap();
        assert_eq!(other_file.open(3, &mut frame.clone()), Err(OpenError));
        let mut flipped = frame.clone();
        flipped[0] ^= 1;
        assert_eq!(opener.open(3, &mut flipped), Err(OpenError));
        assert_eq!(opener.open(3, &mut [0u8; 5]), Err(OpenError));
    }

    #[test]
    fn old_keys_open_and_missing_keys_are_named() {
        let old = ring(&[[1u8; 32]]);
        let prefix = 5;
        let sealer = old.opener(old.current_id(), prefix, 1, "test").unwrap();
        let mut frame = b"sealed with the old key".to_vec();
        let tag = sealer.seal(0, &mut frame);
        frame.extend_from_slice(&tag);
        let rotated = ring(&[[2u8; 32], [1u8; 32]]);
        assert_ne!(rotated.current_id(), old.current_id());
        let opener = rotated
            .opener(old.current_id(), prefix, 1, "segment 1")
            .expect("the old key is still listed");
        assert!(opener.open(0, &mut frame.clone()).is_ok());
        let without_old = ring(&[[2u8; 32]]);
        let error = without_old
            .opener(old.current_id(), prefix, 1, "segment 1")
            .err()
            .expect("missing");
        assert!(
            error.to_string().contains("segment 1 was sealed with key"),
            "{error}"
        );
    }

    #[test]
    fn key_files_are_written_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("mayfly-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        let _ = std::fs::remove_file(&path);
        write_new_key_file(&path).expect("written");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(write_new_key_file(&path).is_err(), "never overwrites a key");
        let keys = KeyRing::load(&path).expect("loads");
        assert_eq!(keys.keys.len(), 1);
        // A second line is an older key; comments and blank lines are fine.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!("\n# rotated out\n{}\n", "ab".repeat(32)));
        std::fs::write(&path, &text).unwrap();
        assert_eq!(KeyRing::load(&path).unwrap().keys.len(), 2);
        std::fs::write(&path, "not a key\n").unwrap();
        let error = KeyRing::load(&path).err().expect("refused");
        assert!(
            error.to_string().contains("line 1: expected 64 hex digits"),
            "{error}"
        );
        std::fs::write(&path, "# nothing\n").unwrap();
        assert!(matches!(KeyRing::load(&path), Err(KeyError::Empty { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
