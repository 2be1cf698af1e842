//! Reading a generation back into a shard at start (`restore_shard`), and writing what a
//! shard holds into a new generation (`write_snapshot`).
//!
//! A shard restores from the generation `CURRENT` names: its own old directory when
//! `--cores` is unchanged, every old shard's directory otherwise (keeping the inboxes
//! that route to it). It makes two passes over the files, each file read whole; the first
//! pass keeps `KEEP_BETWEEN_PASSES_BYTES` of them for the second, which reads the rest
//! again, one per old directory at a time (so a restore needs the ring plus a bounded
//! amount, not the ring plus the whole journal):
//! 1. every delete: (message, inbox) pairs and, per inbox, the position of its last
//!    emptying; so that a deleted message is never put back, not even for a moment;
//! 2. every stored message, oldest first (by receive time and id across old shards),
//!    with the recipients no delete took away and that this shard owns: expired ones are
//!    skipped, the rest go into the store with their own ids and times (`Shard::restore`),
//!    and into this shard's journal in the new generation.
//!
//! A corrupt frame is counted and skipped, an archive that fails rkyv's checked access
//! too, and a torn tail is cut off; none of them stops the start. A file sealed with a key
//! the key file does not hold, or a file that is not a journal file, does: mail is never
//! dropped silently. A file whose key its directory's key file no longer yields was
//! deleted from the journal (its key destroyed first, `ratchet`) and left on disk by a
//! crash before the unlink: nothing in it was live, so it is skipped and counted.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::address::InboxKey;
use crate::journal::Journal;
use crate::journal::crypto::KeyRing;
use crate::journal::layout::{Current, Layout};
use crate::journal::ratchet::DirKeys;
use crate::journal::record::{ArchivedRecord, IdRecord, RcptRecord, Record};
use crate::journal::segment::{FileContents, ReadError};
use crate::store::{self, Incoming, MessageId, Rcpt, RestoreError, Shard};

/// Records restored before the restore yields to the executor's other tasks (so the
/// shard answers `/healthz` while it restores).
const RECORDS_PER_YIELD: usize = 256;
/// Pass 1 keeps the first files it reads, up to this many bytes, for pass 2 (which reads
/// the rest again): restores of small journals read once, large ones stay bounded.
const KEEP_BETWEEN_PASSES_BYTES: usize = 256 << 20;
/// Messages a snapshot copies out of the store per chunk.
const SNAPSHOT_CHUNK_MESSAGES: usize = 256;

/// What a restore found, for the log and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreStats {
    pub files_read: u64,
    pub bytes_read: u64,
    pub messages_restored: u64,
    pub messages_expired: u64,
    /// Stored records none of whose inboxes this shard owns, or that a delete took away.
    pub messages_not_ours_or_deleted: u64,
    pub frames_corrupt: u64,
    pub archives_invalid: u64,
    pub torn_tails: u64,
    /// Files deleted from the journal, their keys destroyed, left on disk by a crash.
    pub files_shredded: u64,
    /// Messages the store refused (out of order, too large for this ring).
    pub messages_refused: u64,
}

/// Why a shard could not restore.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("cannot list {}: {source}", .dir.display())]
    List {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// Where a record is: (old shard directory, file, record) in reading order.
type Position = (usize, usize, usize);

/// Restores shard `shard_idx` (of `n_shards`) from generation `old` into `store`,
/// journaling each restored message into `journal` (the new generation). `ttl_ms` caps
/// what a message has left (a TTL lowered since it was stored applies).
///
/// # Errors
/// A file cannot be read, is not a journal file, or is sealed with a key `keys` lacks.
#[allow(clippy::too_many_arguments)]
pub async fn restore_shard(
    layout: &Layout,
    old: &Current,
    shard_idx: usize,
    n_shards: usize,
    keys: Option<&Arc<KeyRing>>,
    store: &RefCell<Shard>,
    journal: &Journal,
    ttl_ms: u64,
    now_ms: u64,
) -> Result<RestoreStats, StartError> {
    let mut stats = RestoreStats::default();
    let old_dirs: Vec<PathBuf> = if old.cores == n_shards {
        vec![layout.shard_dir(old.generation, shard_idx)]
    } else {
        (0..old.cores)
            .map(|old_idx| layout.shard_dir(old.generation, old_idx))
            .collect()
    };
    let resharding = old.cores != n_shards;
    // Every file of every old directory this shard reads, in order.
    let mut paths: Vec<Vec<PathBuf>> = Vec::with_capacity(old_dirs.len());
    for dir in &old_dirs {
        paths.push(match Layout::journal_files(dir) {
            Ok(paths) => paths,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(StartError::List {
                    dir: dir.clone(),
                    source,
                });
            }
        });
    }

    // Pass 1, one file in memory at a time (a restore must fit beside the ring it fills):
    // deletes, and where every stored record is.
    let mut deleted: HashSet<(IdRecord, String)> = HashSet::new();
    let mut emptied: HashMap<String, Position> = HashMap::new();
    let mut order: Vec<(u64, IdRecord, Position)> = Vec::new();
    let mut kept: Vec<Vec<Option<FileContents>>> = paths
        .iter()
        .map(|dir_paths| dir_paths.iter().map(|_| None).collect())
        .collect();
    let mut kept_bytes = 0;
    let mut dir_keys: Vec<DirKeys> = old_dirs
        .iter()
        .map(|dir| DirKeys::new(dir, keys.cloned()))
        .collect();
    let mut shredded: Vec<Vec<bool>> = paths.iter().map(|dir| vec![false; dir.len()]).collect();
    for (dir_idx, dir_paths) in paths.iter().enumerate() {
        for (file_idx, path) in dir_paths.iter().enumerate() {
            let file = match FileContents::read(path, &mut dir_keys[dir_idx]).await {
                Ok(file) => file,
                Err(ReadError::Shredded { path, source }) => {
                    tracing::info!(
                        file = %path.display(),
                        "journal file skipped: {source}"
                    );
                    stats.files_shredded += 1;
                    shredded[dir_idx][file_idx] = true;
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            stats.files_read += 1;
            stats.bytes_read += std::fs::metadata(path).map_or(0, |m| m.len());
            stats.frames_corrupt += file.n_corrupt;
            stats.torn_tails += u64::from(file.torn_tail);
            if file.n_corrupt > 0 || file.torn_tail {
                tracing::warn!(
                    file = %path.display(),
                    corrupt_frames = file.n_corrupt,
                    torn_tail = file.torn_tail,
                    "journal file damaged; the damaged records are skipped"
                );
            }
            for (record_idx, record) in file.records().enumerate() {
                let position = (dir_idx, file_idx, record_idx);
                match record {
                    Ok(ArchivedRecord::Deleted { id, key }) => {
                        deleted.insert((id.to_native(), key.as_ref().to_string()));
                    }
                    Ok(ArchivedRecord::InboxDeleted { key }) => {
                        emptied.insert(key.as_ref().to_string(), position);
                    }
                    Ok(ArchivedRecord::Stored {
                        id, received_at_ms, ..
                    }) => order.push((received_at_ms.to_native(), id.to_native(), position)),
                    Err(()) => stats.archives_invalid += 1,
                }
            }
            if kept_bytes + file.len_bytes() <= KEEP_BETWEEN_PASSES_BYTES {
                kept_bytes += file.len_bytes();
                kept[dir_idx][file_idx] = Some(file);
            }
            glommio::yield_if_needed().await;
        }
    }
    if resharding {
        // Each old shard's records are in receive order already; merge them by time.
        order.sort_by_key(|&(received_at_ms, id, _)| {
            (received_at_ms, id.boot_micros, id.shard_idx, id.seq)
        });
    }

    // Pass 2: stored messages, in receive order, reading the files pass 1 did not keep
    // again. Each old
    // directory's records come in file order, so one file per directory is in memory
    // (a file is read again only if its clock stepped back across a file boundary).
    let mut loaded: Vec<Option<(usize, FileContents)>> = paths.iter().map(|_| None).collect();
    let mut n_since_yield = 0;
    for (_, _, position) in order {
        let (dir_idx, file_idx, record_idx) = position;
        if loaded[dir_idx]
            .as_ref()
            .is_none_or(|&(loaded_idx, _)| loaded_idx != file_idx)
        {
            // Drop the old one first: never two files of a directory at once.
            loaded[dir_idx] = None;
            let file = match kept[dir_idx][file_idx].take() {
                Some(file) => file,
                None => {
                    debug_assert!(!shredded[dir_idx][file_idx], "no record comes from it");
                    FileContents::read(&paths[dir_idx][file_idx], &mut dir_keys[dir_idx]).await?
                }
            };
            loaded[dir_idx] = Some((file_idx, file));
        }
        let Some((_, file)) = &loaded[dir_idx] else {
            continue;
        };
        let Some(Ok(ArchivedRecord::Stored {
            id,
            received_at_ms,
            expires_at_ms,
            mail_from,
            rcpts,
            received,
            body,
        })) = file.record(record_idx)
        else {
            continue;
        };
        let id = id.to_native();
        let received_at_ms = received_at_ms.to_native();
        let expires_at_ms = expires_at_ms
            .to_native()
            .min(received_at_ms.saturating_add(ttl_ms));
        if expires_at_ms <= now_ms {
            stats.messages_expired += 1;
            continue;
        }
        let kept: Vec<(&str, &str)> = rcpts
            .iter()
            .map(|rcpt| (rcpt.key.as_ref(), rcpt.written.as_ref()))
            .filter(|&(key, _)| {
                !deleted.contains(&(id, key.to_string()))
                    && emptied
                        .get(key)
                        .is_none_or(|&emptied_at| emptied_at < position)
                    && (!resharding
                        || InboxKey::new(key)
                            .is_ok_and(|key| store::shard_of(&key, n_shards) == shard_idx))
            })
            .collect();
        let store_rcpts: Vec<Rcpt<'_>> = kept
            .iter()
            .filter_map(|&(_, written)| Rcpt::new(written))
            .collect();
        if store_rcpts.is_empty() {
            stats.messages_not_ours_or_deleted += 1;
            continue;
        }
        let received: &[u8] = received.as_ref();
        let body: &[u8] = body.as_ref();
        let parts: [&[u8]; 2] = [received, body];
        let message_id = MessageId {
            boot_micros: id.boot_micros,
            shard_idx: id.shard_idx,
            seq: id.seq,
        };
        let restored = store.borrow_mut().restore(
            &Incoming {
                mail_from: mail_from.as_ref(),
                rcpts: &store_rcpts,
                parts: &parts,
                received_at_ms,
            },
            message_id,
            expires_at_ms,
            now_ms,
        );
        match restored {
            Ok(Some(seq)) => {
                stats.messages_restored += 1;
                let rcpt_records: Vec<RcptRecord<'_>> = kept
                    .iter()
                    .map(|&(key, written)| RcptRecord { key, written })
                    .collect();
                // Dropped receiver: the restore waits for the whole journal at its end.
                drop(journal.append(
                    &Record::Stored {
                        id,
                        received_at_ms,
                        expires_at_ms,
                        mail_from: mail_from.as_ref(),
                        rcpts: &rcpt_records,
                        received,
                        body,
                    },
                    Some(seq),
                ));
            }
            Ok(None) => stats.messages_expired += 1,
            Err(error @ (RestoreError::OutOfOrder { .. } | RestoreError::Store(_))) => {
                stats.messages_refused += 1;
                tracing::warn!(%message_id, "message not restored: {error}");
            }
        }
        n_since_yield += 1;
        if n_since_yield == RECORDS_PER_YIELD {
            n_since_yield = 0;
            glommio::yield_if_needed().await;
        }
    }
    Ok(stats)
}

/// Appends every live message of `store` to `journal` (a new generation's), a chunk at a
/// time, yielding in between; returns how many. Messages stored after it started are left
/// out (they are in the next snapshot).
pub async fn write_snapshot(store: &RefCell<Shard>, journal: &Journal) -> u64 {
    let end_seq = store.borrow().next_seq();
    let mut seq = 0;
    let mut n_written = 0u64;
    while seq < end_seq {
        {
            let store = store.borrow();
            seq = store.snapshot_chunk(seq, SNAPSHOT_CHUNK_MESSAGES, |message| {
                if message.seq >= end_seq {
                    return;
                }
                let rcpts: Vec<RcptRecord<'_>> = message
                    .rcpts
                    .iter()
                    .map(|&(key, written)| RcptRecord { key, written })
                    .collect();
                drop(journal.append(
                    &Record::Stored {
                        id: IdRecord {
                            boot_micros: message.id.boot_micros,
                            shard_idx: message.id.shard_idx,
                            seq: message.id.seq,
                        },
                        received_at_ms: message.received_at_ms,
                        expires_at_ms: message.expires_at_ms,
                        mail_from: message.mail_from,
                        rcpts: &rcpts,
                        received: &[],
                        body: message.raw,
                    },
                    Some(message.seq),
                ));
                n_written += 1;
            });
        }
        glommio::yield_if_needed().await;
    }
    n_written
}

/// The next file number for a directory: one more than the largest there (1 if none).
pub fn next_file_number(dir: &Path) -> u64 {
    Layout::journal_files(dir)
        .ok()
        .and_then(|files| {
            files.last().and_then(|path| {
                path.file_name()?
                    .to_str()
                    .and_then(crate::journal::segment::number_of)
            })
        })
        .map_or(1, |number| number + 1)
}
