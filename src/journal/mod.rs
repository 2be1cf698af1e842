//! Durability: each shard's own journal on its own files (`--durability journal`), or
//! snapshots of what it holds (`--durability snapshot`), sealed with AES-256-GCM when a
//! key is given. No database and no thread of its own: a shard's files are written with
//! O_DIRECT on the shard's executor.
//!
//! - `record`: what is written (rkyv archives in checksummed frames).
//! - `crypto`: the keys and the sealing.
//! - `ratchet`: each file's own data key, destroyed when the file is deleted.
//! - `segment`: one journal file, written and read.
//! - `layout`: the data directory, its generations and `CURRENT`.
//! - `restore`: reading a generation back into the shards at start.
//!
//! `Journal` is one shard's writer. `append` adds a record to the batch being gathered and
//! returns a receiver that completes when that batch is durable; the shard's flusher task
//! (`run_flusher`) takes the whole batch, seals and checksums it and writes it, then
//! starts its `fdatasync` in a task of its own and goes on to the next batch. Records
//! appended while a batch is being written form the next batch: that is the group commit,
//! so pipelined and concurrent senders share one write and one `fdatasync`.
//!
//! Commits overlap: up to `SYNCS_IN_FLIGHT_MAX` batches may be written and waiting for
//! their `fdatasync` at once (the device serves several flushes at a time, and one commit
//! in flight left the shard waiting on the disk, `docs/performance.md`). Writes stay one
//! at a time and in batch order, and every `fdatasync` starts after its batch's write has
//! completed. Invariant: a batch's receivers are completed only after the `fdatasync`
//! that followed its write has succeeded, and batches are settled strictly in order
//! (`settle`), so an acknowledgement never gets ahead of the file: once batch `n` is
//! acknowledged, every earlier batch has been acknowledged or failed. A failed write or
//! `fdatasync` fails its batch and every later batch of the same file, since after an
//! error nothing says which of the file's blocks reached the device; the flusher then
//! goes on in a new file.
//!
//! Journal files are deleted in order, oldest first, as soon as every message they hold
//! is gone from the store: the store pops messages in the order they were stored, so a
//! file whose last message's seq is below the store's oldest live seq holds nothing live.
//! With a key, the shard's key file is advanced past the files first (`delete_files`),
//! so their keys are gone before their blocks are freed (`ratchet`).
//!
//! A file is also closed, whatever its size, once the first message written into it has
//! left the store (`retire` asks the flusher): without that, a file at low traffic would
//! take days to fill, and every record in it, deleted messages' included, would stay on
//! disk as long. With it, a record is on disk at most about two TTLs (plus
//! `FILE_OPEN_MIN`): its file is closed within one TTL of its first message, and deleted
//! within one TTL of its last.

pub mod crypto;
pub mod layout;
pub mod ratchet;
pub mod record;
pub mod restore;
pub mod segment;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use futures_channel::{mpsc, oneshot};

use crate::journal::crypto::KeyRing;
use crate::journal::ratchet::{FileKey, KeyFile};
use crate::journal::record::Record;
use crate::journal::segment::FileWriter;
use crate::metrics::LatencyHistogram;

/// Bytes of a batch kept for the next one (the rest is given back), so a burst does not
/// pin its batch buffer.
const BATCH_BYTES_KEPT: usize = 1 << 20;
/// Batches of one shard written and waiting for their `fdatasync` at the same time. Two
/// let the next batch be written while the previous one syncs, which is most of the gain;
/// more in flight make each commit carry fewer messages (more `fdatasync`s, more CPU per
/// message) and measured no faster (`docs/performance.md`, "Durability modes").
pub const SYNCS_IN_FLIGHT_MAX: usize = 2;
/// A file is closed early (its first message gone from the store) only after it has
/// taken records for this long, so a tiny TTL cannot make the flusher start a new file
/// (zeros written ahead: `--journal-file-size` of them) every housekeeping turn.
const FILE_OPEN_MIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Told whether the batch holding a record became durable.
type Waiter = oneshot::Sender<Result<(), NotDurable>>;

/// Why a record is not durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the journal could not write or sync its file (see the log)")]
pub struct NotDurable;

/// One shard's journal writer. Only the shard's executor touches it.
pub struct Journal {
    /// Frames are sealed (the shard has a key).
    sealed: bool,
    pending: RefCell<Batch>,
    /// Waiters of the batch being gathered and of the one being written.
    waiters: RefCell<VecDeque<(u64, Waiter)>>,
    /// Wakes the flusher; capacity one, so a wake already queued is not doubled.
    signal: RefCell<Option<mpsc::Sender<()>>>,
    /// Closed files, oldest first, with the seq of the last message each holds.
    closed_files: RefCell<VecDeque<(PathBuf, u64)>>,
    /// The seq of the first message written into the file being written, and when (None:
    /// no file open, or none written to it yet). Set and cleared by the flusher.
    open_file_first_seq: Cell<Option<(u64, Instant)>>,
    /// `retire` found that message gone: the flusher closes the file at its next turn.
    rotate_requested: Cell<bool>,
    /// Batches written (or failed) and not yet settled, in batch order.
    /// Invariant: numbers strictly increase, and all are above `completed`.
    unsettled: RefCell<VecDeque<Unsettled>>,
    /// The newest file whose write or `fdatasync` failed: the flusher leaves it, and
    /// batches written to it later fail. (Only the newest file takes writes, so an older
    /// file failing later must not replace it here.)
    failed_file: Cell<Option<u64>>,
    /// The last batch settled (durable or failed).
    completed: Cell<u64>,
    /// The first batch that failed, if any did.
    first_failed: Cell<Option<u64>>,
    /// The directory's key file when frames are sealed: made by the flusher before its
    /// first file, advanced by `delete_files`. Never borrowed across an await.
    key_file: RefCell<Option<KeyFile>>,
    pub stats: JournalStats,
}

/// A batch whose write was issued, waiting for its `fdatasync` (or already failed).
#[derive(Clone, Copy)]
struct Unsettled {
    number: u64,
    /// The file it was written to.
    file_number: u64,
    /// `None` while its `fdatasync` runs.
    outcome: Option<Result<(), NotDurable>>,
}

/// Counters of one shard's journal, for `/metrics`.
#[derive(Debug, Default)]
pub struct JournalStats {
    pub bytes_total: Cell<u64>,
    pub records_total: Cell<u64>,
    pub commits_total: Cell<u64>,
    pub commit_failures_total: Cell<u64>,
    pub files_deleted_total: Cell<u64>,
    /// Key-file advances that failed: the deleted files' keys stay until one succeeds.
    pub key_advance_failures_total: Cell<u64>,
    /// Write plus `fdatasync` of one batch.
    pub commit_latency: LatencyHistogram,
}

/// Records gathered for the next commit.
#[derive(Default)]
struct Batch {
    /// Its number: receivers wait for it.
    number: u64,
    bytes: Vec<u8>,
    frame_starts: Vec<usize>,
    /// The largest store seq among its Stored records (0: none).
    last_seq: u64,
    /// The smallest store seq among its Stored records.
    first_seq: Option<u64>,
}

/// A batch taken by the flusher.
struct TakenBatch {
    number: u64,
    bytes: Vec<u8>,
    frame_starts: Vec<usize>,
    last_seq: u64,
    first_seq: Option<u64>,
}

/// Where a shard's flusher writes.
pub struct FlusherConfig {
    pub dir: PathBuf,
    pub shard_idx: u32,
    pub keys: Option<Arc<KeyRing>>,
    pub file_bytes_max: u64,
    /// The first file's number (larger than any file in `dir`).
    pub first_file_number: u64,
}

impl Journal {
    /// A journal that seals its frames when `sealed`; `signal` wakes its flusher.
    pub fn new(sealed: bool, signal: mpsc::Sender<()>) -> Journal {
        Journal {
            sealed,
            pending: RefCell::new(Batch {
                number: 1,
                ..Batch::default()
            }),
            waiters: RefCell::new(VecDeque::new()),
            signal: RefCell::new(Some(signal)),
            closed_files: RefCell::new(VecDeque::new()),
            open_file_first_seq: Cell::new(None),
            rotate_requested: Cell::new(false),
            unsettled: RefCell::new(VecDeque::with_capacity(SYNCS_IN_FLIGHT_MAX + 1)),
            failed_file: Cell::new(None),
            completed: Cell::new(0),
            first_failed: Cell::new(None),
            key_file: RefCell::new(None),
            stats: JournalStats::default(),
        }
    }

    /// Adds `record` to the next batch. `seq` is the store seq of a Stored record's
    /// message (for deleting files when their messages are gone). The receiver completes
    /// when the batch is durable, or failed; dropping it is fine.
    pub fn append(
        &self,
        record: &Record<'_>,
        seq: Option<u64>,
    ) -> oneshot::Receiver<Result<(), NotDurable>> {
        let (done, durable) = oneshot::channel();
        let number = {
            let mut batch = self.pending.borrow_mut();
            let start = record::append_frame(&mut batch.bytes, record, self.sealed);
            batch.frame_starts.push(start);
            if let Some(seq) = seq {
                batch.last_seq = batch.last_seq.max(seq);
                batch.first_seq = Some(batch.first_seq.map_or(seq, |first| first.min(seq)));
            }
            batch.number
        };
        self.waiters.borrow_mut().push_back((number, done));
        if let Some(signal) = self.signal.borrow_mut().as_mut() {
            // Full means a wake is already queued.
            let _ = signal.try_send(());
        }
        durable
    }

    /// Appends `record` and waits until it is durable.
    ///
    /// # Errors
    /// The batch could not be written or synced.
    pub async fn write(&self, record: &Record<'_>, seq: Option<u64>) -> Result<(), NotDurable> {
        self.append(record, seq).await.unwrap_or(Err(NotDurable))
    }

    /// Waits until everything appended so far is durable.
    ///
    /// # Errors
    /// A batch among them (or any earlier one) failed.
    pub async fn barrier(&self) -> Result<(), NotDurable> {
        let target = {
            let batch = self.pending.borrow();
            if batch.frame_starts.is_empty() {
                batch.number - 1
            } else {
                batch.number
            }
        };
        if self.completed.get() < target {
            let (done, durable) = oneshot::channel();
            self.waiters.borrow_mut().push_back((target, done));
            if let Some(signal) = self.signal.borrow_mut().as_mut() {
                let _ = signal.try_send(());
            }
            durable.await.unwrap_or(Err(NotDurable))?;
        }
        match self.first_failed.get() {
            Some(failed) if failed <= target => Err(NotDurable),
            _ => Ok(()),
        }
    }

    /// Stops the flusher once it has written what is pending.
    pub fn close(&self) {
        self.signal.borrow_mut().take();
    }

    /// The closed files whose messages are all gone from the store (its oldest live seq
    /// is `oldest_live_seq`), oldest first; they are forgotten here and the caller deletes
    /// them. Asks the flusher to close the file being written if its first message is
    /// gone too, so that file follows within one TTL.
    pub fn retire(&self, oldest_live_seq: u64) -> Vec<PathBuf> {
        if self
            .open_file_first_seq
            .get()
            .is_some_and(|(first_seq, since)| {
                first_seq < oldest_live_seq && since.elapsed() >= FILE_OPEN_MIN
            })
            && !self.rotate_requested.replace(true)
            && let Some(signal) = self.signal.borrow_mut().as_mut()
        {
            let _ = signal.try_send(());
        }
        let mut closed = self.closed_files.borrow_mut();
        let mut retired = Vec::new();
        while closed
            .front()
            .is_some_and(|&(_, last_seq)| last_seq < oldest_live_seq)
        {
            if let Some((path, _)) = closed.pop_front() {
                retired.push(path);
            }
        }
        retired
    }

    /// Takes the batch gathered so far; None if nothing was appended (the batch keeps its
    /// number, so a `barrier` waiting for it is not left waiting for a batch never written).
    fn take(&self) -> Option<TakenBatch> {
        let mut batch = self.pending.borrow_mut();
        if batch.frame_starts.is_empty() {
            return None;
        }
        let kept_bytes = batch.bytes.capacity().min(BATCH_BYTES_KEPT);
        let bytes = std::mem::replace(&mut batch.bytes, Vec::with_capacity(kept_bytes));
        let taken = TakenBatch {
            number: batch.number,
            bytes,
            frame_starts: std::mem::take(&mut batch.frame_starts),
            last_seq: std::mem::take(&mut batch.last_seq),
            first_seq: batch.first_seq.take(),
        };
        batch.number += 1;
        Some(taken)
    }

    /// Notes that batch `number` was written to file `file_number` and its `fdatasync`
    /// started (`outcome` None), or that it failed before that (`Some(Err)`).
    fn unsettled(&self, number: u64, file_number: u64, outcome: Option<Result<(), NotDurable>>) {
        // A write that completed after its file failed follows a hole: a reader stops at
        // the hole, so this batch is not durable whatever its own `fdatasync` says.
        let outcome = if self.failed_file.get() == Some(file_number) {
            Some(Err(NotDurable))
        } else {
            outcome
        };
        let mut unsettled = self.unsettled.borrow_mut();
        assert!(
            unsettled
                .back()
                .map_or(self.completed.get(), |last| last.number)
                < number,
            "journal batches are settled in order"
        );
        unsettled.push_back(Unsettled {
            number,
            file_number,
            outcome,
        });
        drop(unsettled);
        self.settle();
    }

    /// Batch `number`'s write to file `file_number` failed: it fails, and so does every
    /// later batch of that file, and the flusher leaves the file.
    fn write_failed(&self, number: u64, file_number: u64) {
        self.file_failed(file_number);
        self.unsettled(number, file_number, Some(Err(NotDurable)));
    }

    /// File `file_number` had a failed write or `fdatasync`: the flusher must not write to
    /// it again.
    fn file_failed(&self, file_number: u64) {
        let newest = self
            .failed_file
            .get()
            .map_or(file_number, |failed| failed.max(file_number));
        self.failed_file.set(Some(newest));
    }

    /// Batch `number`'s `fdatasync` finished with `outcome`; settles every batch that can
    /// be settled now.
    fn synced(&self, number: u64, outcome: Result<(), NotDurable>) {
        let mut unsettled = self.unsettled.borrow_mut();
        let Some(entry) = unsettled.iter_mut().find(|entry| entry.number == number) else {
            // Failed and settled already, because an earlier batch of its file failed.
            assert!(
                number <= self.completed.get() && self.first_failed.get().is_some(),
                "batch {number} synced but never written"
            );
            return;
        };
        if outcome.is_err() {
            self.file_failed(entry.file_number);
        }
        // An earlier failure in the file may have failed it already: that stands.
        if entry.outcome.is_none() {
            entry.outcome = Some(outcome);
        }
        drop(unsettled);
        self.settle();
    }

    /// Settles the batches at the front whose `fdatasync` has finished, in order: a batch
    /// never completes before an earlier one, and the batches that follow a failed one in
    /// the same file fail too (their `fdatasync` may succeed, but a reader stops at the
    /// failed batch's blocks, which may never have reached the device).
    fn settle(&self) {
        loop {
            let (number, outcome) = {
                let mut unsettled = self.unsettled.borrow_mut();
                let Some(Unsettled {
                    number,
                    file_number,
                    outcome: Some(outcome),
                }) = unsettled.front().copied()
                else {
                    return;
                };
                unsettled.pop_front();
                if outcome.is_err() {
                    for later in unsettled.iter_mut() {
                        if later.file_number == file_number {
                            later.outcome = Some(Err(NotDurable));
                        }
                    }
                }
                (number, outcome)
            };
            if outcome.is_err() {
                let stats = &self.stats;
                stats
                    .commit_failures_total
                    .set(stats.commit_failures_total.get() + 1);
            }
            self.completed(number, outcome);
        }
    }

    /// Completes the receivers of batch `number` (and of any earlier waiter).
    fn completed(&self, number: u64, outcome: Result<(), NotDurable>) {
        self.completed.set(number);
        if outcome.is_err() && self.first_failed.get().is_none() {
            self.first_failed.set(Some(number));
        }
        let mut waiters = self.waiters.borrow_mut();
        while waiters
            .front()
            .is_some_and(|&(waiting, _)| waiting <= number)
        {
            if let Some((_, done)) = waiters.pop_front() {
                let _ = done.send(outcome);
            }
        }
    }
}

/// The flusher of one shard's journal: writes each batch as it comes, starts its
/// `fdatasync` (up to `SYNCS_IN_FLIGHT_MAX` at once), rotates files, and ends when the
/// journal is closed and everything appended is written and synced.
pub async fn run_flusher(
    journal: Rc<Journal>,
    mut signals: mpsc::Receiver<()>,
    config: FlusherConfig,
    now_ms: impl Fn() -> u64,
) {
    use futures_util::StreamExt as _;
    let mut next_number = config.first_file_number;
    let mut writer: Option<FileWriter> = None;
    let mut writer_last_seq = 0u64;
    // The next file, created (zeros written ahead, tens of milliseconds) while the current
    // one takes commits, so a rotation does not stall them.
    let mut next_file: Option<glommio::Task<std::io::Result<FileWriter>>> = None;
    // A unit per `fdatasync` that may run; a sync task gives its unit back when done.
    let syncs = Rc::new(glommio::sync::Semaphore::new(SYNCS_IN_FLIGHT_MAX as u64));
    loop {
        let signalled = signals.next().await.is_some();
        loop {
            // Waiting here for a sync to finish lets the next batch grow meanwhile.
            if syncs.acquire(1).await.is_err() {
                unreachable!("the flusher's semaphore is never closed");
            }
            let taken = journal.take();
            // Asked by `retire`: the file's first message is gone, so it is closed now
            // (a batch taken meanwhile goes into the next file).
            if journal.rotate_requested.replace(false)
                && let Some(open) = writer.take()
            {
                close_file(&journal, open, writer_last_seq).await;
            }
            let Some(mut batch) = taken else {
                syncs.signal(1);
                break;
            };
            // A file whose write or sync failed takes nothing more: its tail is unknown.
            if let Some(file) = writer.as_ref()
                && journal.failed_file.get() == Some(file.number())
                && let Some(failed) = writer.take()
            {
                close_file(&journal, failed, writer_last_seq).await;
            }
            if writer.is_none() {
                let created = match next_file.take() {
                    Some(task) => task.await,
                    None => match file_key(&journal, &config, next_number).await {
                        Ok(file_key) => {
                            let created = FileWriter::create(
                                &config.dir,
                                config.shard_idx,
                                next_number,
                                file_key,
                                now_ms(),
                                config.file_bytes_max,
                            )
                            .await;
                            next_number += 1;
                            created
                        }
                        Err(error) => Err(error),
                    },
                };
                match created {
                    Ok(created) => {
                        writer = Some(created);
                        // The key is derived here, so the file made ahead needs no
                        // borrow of the key file while it is made.
                        let number = next_number;
                        let ahead = file_key(&journal, &config, number).await;
                        let (dir, shard_idx) = (config.dir.clone(), config.shard_idx);
                        let (bytes, created_at_ms) = (config.file_bytes_max, now_ms());
                        next_file = Some(glommio::spawn_local(async move {
                            FileWriter::create(
                                &dir,
                                shard_idx,
                                number,
                                ahead?,
                                created_at_ms,
                                bytes,
                            )
                            .await
                        }));
                        next_number += 1;
                    }
                    Err(error) => {
                        tracing::error!(
                            dir = %config.dir.display(),
                            "cannot create a journal file: {error}; messages get 451 until it works"
                        );
                        // No file: number 0 is no file's (numbers start above every
                        // existing one, at 1 or more).
                        journal.unsettled(batch.number, 0, Some(Err(NotDurable)));
                        syncs.signal(1);
                        continue;
                    }
                }
            }
            let Some(file) = writer.as_mut() else {
                unreachable!("a journal file was just made");
            };
            let started = Instant::now();
            if let Err(error) = file.write(&mut batch.bytes, &batch.frame_starts).await {
                tracing::error!(
                    file = %file.path().display(),
                    "journal write failed: {error}; the batch's messages get 451"
                );
                journal.write_failed(batch.number, file.number());
                syncs.signal(1);
                continue;
            }
            let stats = &journal.stats;
            stats.commits_total.set(stats.commits_total.get() + 1);
            stats
                .bytes_total
                .set(stats.bytes_total.get() + batch.bytes.len() as u64);
            stats
                .records_total
                .set(stats.records_total.get() + batch.frame_starts.len() as u64);
            writer_last_seq = writer_last_seq.max(batch.last_seq);
            if journal.open_file_first_seq.get().is_none() {
                let since = Instant::now();
                journal
                    .open_file_first_seq
                    .set(batch.first_seq.map(|first_seq| (first_seq, since)));
            }
            journal.unsettled(batch.number, file.number(), None);
            glommio::spawn_local(sync_batch(
                journal.clone(),
                file.syncer(),
                file.path().to_path_buf(),
                batch.number,
                started,
                syncs.clone(),
            ))
            .detach();
            if file.bytes_written() >= config.file_bytes_max
                && let Some(full) = writer.take()
            {
                close_file(&journal, full, writer_last_seq).await;
            }
        }
        if !signalled {
            break;
        }
    }
    // Every sync task gives its unit back when it has settled its batch.
    if syncs.acquire(SYNCS_IN_FLIGHT_MAX as u64).await.is_err() {
        unreachable!("the flusher's semaphore is never closed");
    }
    if let Some(file) = writer.take() {
        close_file(&journal, file, writer_last_seq).await;
    }
    // A file made ahead and never written holds nothing: it goes.
    if let Some(task) = next_file.take()
        && let Ok(unused) = task.await
    {
        let path = unused.path().to_path_buf();
        unused.close().await;
        let _ = glommio::io::remove(&path).await;
    }
}

/// The data key of new file `number` (None when frames are not sealed), making the
/// directory's key file first if this flusher has not yet.
async fn file_key(
    journal: &Journal,
    config: &FlusherConfig,
    number: u64,
) -> std::io::Result<Option<FileKey>> {
    let Some(keys) = &config.keys else {
        return Ok(None);
    };
    if journal.key_file.borrow().is_none() {
        let key_file = KeyFile::open_or_create(
            &config.dir,
            config.shard_idx,
            config.first_file_number,
            keys,
        )
        .await
        .map_err(std::io::Error::other)?;
        *journal.key_file.borrow_mut() = Some(key_file);
    }
    let mut key_file = journal.key_file.borrow_mut();
    let Some(key_file) = key_file.as_mut() else {
        unreachable!("made above");
    };
    key_file.new_file_key(number).map(Some)
}

/// Makes batch `number` (already written to `file`) durable, settles what that allows,
/// and gives its unit of `syncs` back.
async fn sync_batch(
    journal: Rc<Journal>,
    file: Rc<glommio::io::DmaFile>,
    path: PathBuf,
    number: u64,
    started: Instant,
    syncs: Rc<glommio::sync::Semaphore>,
) {
    let result = file.fdatasync().await;
    journal.stats.commit_latency.record(started.elapsed());
    let outcome = match result {
        Ok(()) => Ok(()),
        Err(error) => {
            tracing::error!(
                file = %path.display(),
                "journal fdatasync failed: {error}; the batch's messages get 451"
            );
            Err(NotDurable)
        }
    };
    journal.synced(number, outcome);
    syncs.signal(1);
    // The last holder of a closed file closes it.
    let _ = file.close_rc().await;
}

async fn close_file(journal: &Journal, file: FileWriter, last_seq: u64) {
    journal.open_file_first_seq.set(None);
    let path = file.path().to_path_buf();
    file.close().await;
    journal
        .closed_files
        .borrow_mut()
        .push_back((path, last_seq));
}

/// Deletes retired journal files (and syncs their directory), counting them. With a key,
/// the key file is first advanced past them, durably, so their keys are destroyed before
/// their blocks are freed; if that fails the files are deleted all the same (a full disk
/// is worse) and the next deletion's advance covers them.
pub async fn delete_files(journal: &Journal, dir: &Path, files: Vec<PathBuf>) {
    if files.is_empty() {
        return;
    }
    let newest = files
        .iter()
        .filter_map(|path| path.file_name()?.to_str().and_then(segment::number_of))
        .max();
    if let Some(newest) = newest
        && let Err(error) = advance_keys(journal, newest + 1).await
    {
        let stats = &journal.stats;
        stats
            .key_advance_failures_total
            .set(stats.key_advance_failures_total.get() + 1);
        tracing::error!(
            dir = %dir.display(),
            "cannot advance the journal key file: {error}; the deleted files' keys stay on disk \
             until an advance succeeds"
        );
    }
    for path in &files {
        match glommio::io::remove(path).await {
            Ok(()) => {
                let stats = &journal.stats;
                stats
                    .files_deleted_total
                    .set(stats.files_deleted_total.get() + 1);
            }
            Err(error) => {
                tracing::warn!(file = %path.display(), "cannot delete a journal file: {error}")
            }
        }
    }
    if let Err(error) = segment::sync_dir(dir).await {
        tracing::warn!(dir = %dir.display(), "cannot sync the journal directory: {error}");
    }
}

/// Moves the key file's base up to `new_base` (durably) and forgets the older seed; a
/// no-op without a key file or when it is there already.
///
/// # Errors
/// The new state could not be written.
async fn advance_keys(journal: &Journal, new_base: u64) -> std::io::Result<()> {
    let (advance, path) = {
        let key_file = journal.key_file.borrow();
        let Some(key_file) = key_file.as_ref() else {
            return Ok(());
        };
        match key_file.prepare_advance(new_base)? {
            Some(advance) => (advance, key_file.path().to_path_buf()),
            None => return Ok(()),
        }
    };
    KeyFile::write_advance(&path, &advance).await?;
    if let Some(key_file) = journal.key_file.borrow_mut().as_mut() {
        key_file.finish_advance(advance);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
