//! Inbox tokens for `--private-inboxes`: who may read an inbox, with nothing stored.
//!
//! An inbox's token is `base64url(HMAC-SHA256(secret, key))` without padding, where `key`
//! is the address's `InboxKey` (lowercase, punycode domain), so every spelling of an
//! address has the same token and the token of one inbox says nothing about another.
//! Nothing is kept per address: a token is checked by computing the HMAC again and
//! comparing the tags with `ring::hmac::verify`, which compares in constant time. The whole
//! 256-bit tag is the token (43 characters), so it cannot be guessed, and `ring::hmac::verify`
//! takes it as it is (it has no truncated form).
//!
//! The secret comes from `--token-secret-file`; without it from `DATA_DIR/token-secret`,
//! written on the first start (32 random bytes as 64 hex digits, mode 0600), so tokens
//! survive restarts like the mail does; without a data directory it is random per process
//! and the tokens die with it (as the mail does). Every byte of the file is the key, a final
//! newline included, so a file must not be edited once tokens are out.
//!
//! Operators that let their users pick addresses compute the token of a chosen address in
//! their own backend with the same formula (docs/api.md has a Python line for it): only
//! they can decide who gets which name, since Mayfly stores no owner.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

use crate::address::InboxKey;
use crate::config::Config;

/// Bytes a secret has at least (the HMAC-SHA256 key length RFC 2104 recommends).
pub const SECRET_BYTES_MIN: usize = 32;
/// Bytes a secret file may have at most: a key, not some other file named by mistake.
pub const SECRET_FILE_BYTES_MAX: u64 = 4096;
/// The file in `--data-dir` that holds the generated secret.
pub const SECRET_FILE_NAME: &str = "token-secret";
/// Characters of a token: the 32-byte HMAC-SHA256 tag in unpadded base64url.
pub const TOKEN_CHARS: usize = 43;
/// Where a new secret is written before it is renamed into place.
const SECRET_TMP_FILE_NAME: &str = "token-secret.tmp";
/// Random bytes of a generated secret (written as twice as many hex digits).
const GENERATED_SECRET_BYTES: usize = 32;
/// Bytes of an HMAC-SHA256 tag.
const TAG_BYTES: usize = 32;
/// The data directory is private to the server's user, as `journal::layout` makes it.
const DATA_DIR_MODE: u32 = 0o700;
/// A secret file is readable by its owner only.
const SECRET_FILE_MODE: u32 = 0o600;

/// The tokens of every inbox, from one secret, and whether reading an inbox needs one.
#[derive(Clone)]
pub struct InboxTokens {
    key: hmac::Key,
    /// `--private-inboxes`: a read without the inbox's token is refused.
    required: bool,
    /// Where the secret came from, for the start-up log line.
    source: SecretSource,
}

/// Where the secret came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `--token-secret-file`.
    File(PathBuf),
    /// `DATA_DIR/token-secret`, read (`generated: false`) or written on this start.
    DataDir { path: PathBuf, generated: bool },
    /// Random, for this process only.
    Process,
}

/// Why the secret could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file cannot be read, or is too large to be a key.
    #[error("cannot read the token secret {}: {reason}", .path.display())]
    Read { path: PathBuf, reason: String },
    /// The file holds fewer than `SECRET_BYTES_MIN` bytes.
    #[error(
        "the token secret {} has {bytes} bytes; it needs at least {SECRET_BYTES_MIN} random bytes \
         (e.g. head -c 32 /dev/urandom > FILE)",
        .path.display()
    )]
    TooShort { path: PathBuf, bytes: usize },
    /// A new secret could not be written into the data directory.
    #[error("cannot write a new token secret to {}: {reason}", .path.display())]
    Write { path: PathBuf, reason: String },
    /// The system's random generator failed.
    #[error("cannot generate a token secret: {0}")]
    Random(String),
}

impl InboxTokens {
    /// Tokens under `secret`; `required` is `--private-inboxes`.
    ///
    /// # Panics
    /// If `secret` is shorter than `SECRET_BYTES_MIN` (`load` refuses such files first).
    pub fn new(secret: &[u8], required: bool, source: SecretSource) -> InboxTokens {
        assert!(secret.len() >= SECRET_BYTES_MIN, "a token secret too short");
        InboxTokens {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            required,
            source,
        }
    }

    /// The tokens of this configuration: the secret from `--token-secret-file`, else
    /// from (or written into) `--data-dir`, else random for this process.
    ///
    /// # Errors
    /// The file cannot be read or written, or is too short or too long.
    pub fn load(config: &Config) -> Result<InboxTokens, SecretError> {
        let required = config.private_inboxes;
        let (mut secret, source) = match (&config.token_secret_file, &config.data_dir) {
            (Some(path), _) => (read_secret(path)?, SecretSource::File(path.clone())),
            (None, Some(data_dir)) => {
                let (secret, generated) = data_dir_secret(data_dir)?;
                let path = data_dir.join(SECRET_FILE_NAME);
                (secret, SecretSource::DataDir { path, generated })
            }
            (None, None) => {
                let mut secret = vec![0u8; GENERATED_SECRET_BYTES];
                getrandom::fill(&mut secret)
                    .map_err(|error| SecretError::Random(error.to_string()))?;
                (secret, SecretSource::Process)
            }
        };
        let tokens = InboxTokens::new(&secret, required, source);
        crate::alloc::wipe_vec(&mut secret);
        Ok(tokens)
    }

    /// The token of inbox `key`.
    pub fn token(&self, key: &InboxKey<'_>) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, key.as_str().as_bytes()))
    }

    /// Whether `presented` is the token of inbox `key`. The tags are compared by
    /// `ring::hmac::verify`, in constant time; only the decoding of `presented` (its length
    /// and alphabet, which the client chose) may take more or less time.
    pub fn verify(&self, key: &InboxKey<'_>, presented: &str) -> bool {
        if presented.len() != TOKEN_CHARS {
            return false;
        }
        // Unpadded base64 of 32 bytes is 43 characters; the decoder wants room for 33.
        let mut tag = [0u8; TAG_BYTES + 3];
        match URL_SAFE_NO_PAD.decode_slice(presented.as_bytes(), &mut tag) {
            Ok(TAG_BYTES) => {
                hmac::verify(&self.key, key.as_str().as_bytes(), &tag[..TAG_BYTES]).is_ok()
            }
            _ => false,
        }
    }

    /// Whether a read of inbox `key` with `presented` (if any) may go ahead: always
    /// without `--private-inboxes`, else only with the inbox's token.
    pub fn admits(&self, key: &InboxKey<'_>, presented: Option<&str>) -> bool {
        !self.required || presented.is_some_and(|presented| self.verify(key, presented))
    }

    /// `--private-inboxes`: reading an inbox needs its token.
    pub fn required(&self) -> bool {
        self.required
    }

    /// Where the secret came from.
    pub fn source(&self) -> &SecretSource {
        &self.source
    }
}

// By hand: the key must never reach a log line.
impl fmt::Debug for InboxTokens {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("InboxTokens")
            .field("required", &self.required)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::File(path) => write!(formatter, "{}", path.display()),
            SecretSource::DataDir {
                path,
                generated: true,
            } => write!(formatter, "{} (new)", path.display()),
            SecretSource::DataDir { path, .. } => write!(formatter, "{}", path.display()),
            SecretSource::Process => {
                write!(formatter, "random for this process (tokens end with it)")
            }
        }
    }
}

/// Every byte of the file at `path`, if there are enough. A file that others may read
/// is used, with a warning: refusing it would turn a permissions slip into an outage.
fn read_secret(path: &Path) -> Result<Vec<u8>, SecretError> {
    let read_error = |reason: String| SecretError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let metadata = std::fs::metadata(path).map_err(|error| read_error(error.to_string()))?;
    if !metadata.is_file() {
        return Err(read_error("not a regular file".to_string()));
    }
    if metadata.len() > SECRET_FILE_BYTES_MAX {
        return Err(read_error(format!(
            "larger than {SECRET_FILE_BYTES_MAX} bytes; not a secret"
        )));
    }
    let mut secret = std::fs::read(path).map_err(|error| read_error(error.to_string()))?;
    if secret.len() < SECRET_BYTES_MIN {
        let bytes = secret.len();
        crate::alloc::wipe_vec(&mut secret);
        return Err(SecretError::TooShort {
            path: path.to_path_buf(),
            bytes,
        });
    }
    if metadata.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "the token secret {} is readable by other users; chmod 600 it",
            path.display()
        );
    }
    Ok(secret)
}

/// The secret in `data_dir`, written there first if it is not yet (the directory is
/// created, private, if missing); the flag says whether it was written now.
fn data_dir_secret(data_dir: &Path) -> Result<(Vec<u8>, bool), SecretError> {
    let path = data_dir.join(SECRET_FILE_NAME);
    match std::fs::symlink_metadata(&path) {
        Ok(_) => return read_secret(&path).map(|secret| (secret, false)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(SecretError::Read {
                path,
                reason: error.to_string(),
            });
        }
    }
    let write_error = |error: std::io::Error| SecretError::Write {
        path: path.clone(),
        reason: error.to_string(),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DATA_DIR_MODE)
        .create(data_dir)
        .map_err(write_error)?;
    let mut random = [0u8; GENERATED_SECRET_BYTES];
    getrandom::fill(&mut random).map_err(|error| SecretError::Random(error.to_string()))?;
    let mut secret = Vec::with_capacity(2 * GENERATED_SECRET_BYTES + 1);
    for byte in random {
        secret.extend_from_slice(format!("{byte:02x}").as_bytes());
    }
    secret.push(b'\n');
    crate::alloc::wipe(&mut random);
    // Written whole under another name, synced, then renamed and the directory synced: a
    // crash leaves either no secret (a new one is written next time, and no token of the
    // lost one was ever handed out from it) or the whole one.
    let tmp_path = data_dir.join(SECRET_TMP_FILE_NAME);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(SECRET_FILE_MODE)
        .open(&tmp_path)
        .map_err(write_error)?;
    file.write_all(&secret).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    std::fs::rename(&tmp_path, &path).map_err(write_error)?;
    std::fs::File::open(data_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(write_error)?;
    Ok((secret, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

    fn key(address: &str) -> InboxKey<'static> {
        InboxKey::new(address).expect("an address").into_owned()
    }

    fn tokens(required: bool) -> InboxTokens {
        InboxTokens::new(SECRET, required, SecretSource::Process)
    }

    #[test]
    fn a_token_is_the_hmac_of_the_inbox_key_in_base64url() {
        let tokens = tokens(true);
        let token = tokens.token(&key("Alice@Example.TEST"));
        assert_eq!(token.len(), TOKEN_CHARS);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        // The same HMAC computed apart from `token`, over the canonical (lowercase) key.
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, SECRET),
            b"alice@example.test",
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(&token).unwrap(), tag.as_ref());
        assert_eq!(token, tokens.token(&key("alice@example.test")));
        // An IDN and its punycode are one inbox, so one token.
        assert_eq!(
            tokens.token(&key("a@bücher.example")),
            tokens.token(&key("a@xn--bcher-kva.example"))
        );
    }

    #[test]
    fn a_token_opens_its_own_inbox_only() {
        let tokens = tokens(true);
        let alice = key("alice@example.test");
        let token = tokens.token(&alice);
        assert!(tokens.verify(&alice, &token));
        assert!(tokens.admits(&alice, Some(&token)));
        for other in [
            "bob@example.test",
            "alice@example.tesT2",
            "alice@other.test",
        ] {
            assert!(
                !tokens.verify(&key(other), &token),
                "{token} opened {other}"
            );
        }
        // Another secret, another token.
        let other_secret = InboxTokens::new(&[7u8; 32], true, SecretSource::Process);
        assert!(!other_secret.verify(&alice, &token));
    }

    #[test]
    fn anything_but_the_exact_token_is_refused() {
        let tokens = tokens(true);
        let alice = key("alice@example.test");
        let token = tokens.token(&alice);
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        // Every other character at every position.
        for position in 0..token.len() {
            for &replacement in alphabet {
                let mut changed = token.clone().into_bytes();
                if changed[position] == replacement {
                    continue;
                }
                changed[position] = replacement;
                let changed = String::from_utf8(changed).unwrap();
                assert!(!tokens.verify(&alice, &changed), "accepted {changed}");
            }
        }
        let padded = format!("{token}=");
        let standard = token.replace('-', "+").replace('_', "/");
        for wrong in [
            "",
            &token[..TOKEN_CHARS - 1],
            &padded,
            &format!("{token}A"),
            &format!(" {}", &token[1..]),
            &token.to_uppercase(),
            &standard,
        ] {
            if wrong != token {
                assert!(!tokens.verify(&alice, wrong), "accepted {wrong:?}");
            }
        }
        assert!(!tokens.admits(&alice, None));
        assert!(!tokens.admits(&alice, Some("")));
    }

    #[test]
    fn without_private_inboxes_every_read_is_admitted() {
        let tokens = tokens(false);
        let alice = key("alice@example.test");
        assert!(tokens.admits(&alice, None));
        assert!(tokens.admits(&alice, Some("wrong")));
        // Tokens are still issued, the same as with the switch on.
        assert_eq!(tokens.token(&alice), self::tokens(true).token(&alice));
    }

    /// Timing is not measured (the machine is shared and noisy); the comparison is constant
    /// time by construction: `verify` compares tags only through `ring::hmac::verify`, and
    /// the token it issues is never compared as text.
    #[test]
    fn tags_are_compared_by_ring_only() {
        let source = include_str!("token.rs");
        let verify = &source[source.find("pub fn verify(").unwrap()..];
        let verify = &verify[..verify.find("\n    }\n").unwrap()];
        assert!(verify.contains("hmac::verify(&self.key"));
        assert!(!verify.contains("=="), "a comparison by hand in verify");
        assert!(!verify.contains("self.token("), "a token compared as text");
    }

    #[test]
    fn the_secret_file_is_read_whole_or_refused() {
        let dir = std::env::temp_dir().join(format!("mayfly-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, [9u8; SECRET_BYTES_MIN - 1]).unwrap();
        assert!(matches!(
            read_secret(&path),
            Err(SecretError::TooShort { bytes: 31, .. })
        ));
        std::fs::write(&path, vec![9u8; SECRET_FILE_BYTES_MAX as usize + 1]).unwrap();
        assert!(matches!(read_secret(&path), Err(SecretError::Read { .. })));
        std::fs::write(&path, b"0123456789abcdef0123456789abcdef\n").unwrap();
        assert_eq!(
            read_secret(&path).unwrap(),
            b"0123456789abcdef0123456789abcdef\n"
        );
        assert!(matches!(
            read_secret(&dir.join("missing")),
            Err(SecretError::Read { .. })
        ));
        assert!(matches!(read_secret(&dir), Err(SecretError::Read { .. })));

        // A data directory gets a secret on first use, private, and keeps it.
        let data_dir = dir.join("data");
        let (first, generated) = data_dir_secret(&data_dir).unwrap();
        assert!(generated);
        assert_eq!(first.len(), 2 * GENERATED_SECRET_BYTES + 1);
        let mode = std::fs::metadata(data_dir.join(SECRET_FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, SECRET_FILE_MODE);
        assert_eq!(data_dir_secret(&data_dir).unwrap(), (first, false));
        assert!(!data_dir.join(SECRET_TMP_FILE_NAME).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
