//! Durability: each shard's own journal on its own files (`--durability journal`), or
//! snapshots of what it holds (`--durability snapshot`), sealed with AES-256-GCM when a
//! key is given. No database and no thread of its own: a shard's files are written with
//! O_DIRECT on the shard's executor.
//!
//! - `record`: what is written (rkyv archives in checksummed frames).
//! - `crypto`: the keys and the sealing.
//! - `segment`: one journal file, written and read.
//! - `layout`: the data directory, its generations and `CURRENT`.
//! - `restore`: reading a generation back into the shards at start.
//!
//! `Journal` is one shard's writer. `append` adds a record to the batch being gathered and
//! returns a receiver that completes when that batch is durable; the shard's flusher task
//! (`run_flusher`) takes the whole batch, seals and checksums it, writes it and
//! `fdatasync`s it, then completes every receiver of the batch at once. Records appended
//! while a batch is being written form the next batch: that is the group commit, so
//! pipelined and concurrent senders share one write and one `fdatasync`.
//!
//! Journal files are deleted in order, oldest first, as soon as every message they hold
//! is gone from the store: the store pops messages in the order they were stored, so a
//! file whose last message's seq is below the store's oldest live seq holds nothing live.

pub mod crypto;
pub mod layout;
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
use crate::journal::record::Record;
use crate::journal::segment::FileWriter;
use crate::metrics::LatencyHistogram;

/// Bytes of a batch kept for the next one (the rest is given back), so a burst does not
/// pin its batch buffer.
const BATCH_BYTES_KEPT: usize = 1 << 20;

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
    /// The last batch written (or failed).
    completed: Cell<u64>,
    /// The first batch that failed, if any did.
    first_failed: Cell<Option<u64>>,
    pub stats: JournalStats,
}

/// Counters of one shard's journal, for `/metrics`.
#[derive(Debug, Default)]
pub struct JournalStats {
    pub bytes_total: Cell<u64>,
    pub records_total: Cell<u64>,
    pub commits_total: Cell<u64>,
    pub commit_failures_total: Cell<u64>,
    pub files_deleted_total: Cell<u64>,
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
}

/// A batch taken by the flusher.
struct TakenBatch {
    number: u64,
    bytes: Vec<u8>,
    frame_starts: Vec<usize>,
    last_seq: u64,
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
            completed: Cell::new(0),
            first_failed: Cell::new(None),
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
    /// them.
    pub fn retire(&self, oldest_live_seq: u64) -> Vec<PathBuf> {
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

    /// Takes the batch gathered so far (empty if nothing was appended).
    fn take(&self) -> TakenBatch {
        let mut batch = self.pending.borrow_mut();
        let kept_bytes = batch.bytes.capacity().min(BATCH_BYTES_KEPT);
        let bytes = std::mem::replace(&mut batch.bytes, Vec::with_capacity(kept_bytes));
        let taken = TakenBatch {
            number: batch.number,
            bytes,
            frame_starts: std::mem::take(&mut batch.frame_starts),
            last_seq: std::mem::take(&mut batch.last_seq),
        };
        batch.number += 1;
        taken
    }

    /// Completes the receivers of batch `number`.
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

/// The flusher of one shard's journal: writes each batch as it comes, rotates files, and
/// ends when the journal is closed and everything appended is written.
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
    loop {
        let signalled = signals.next().await.is_some();
        loop {
            let mut batch = journal.take();
            if batch.frame_starts.is_empty() {
                break;
            }
            if writer.is_none() {
                let created = match next_file.take() {
                    Some(task) => task.await,
                    None => {
                        let created = FileWriter::create(
                            &config.dir,
                            config.shard_idx,
                            next_number,
                            config.keys.as_ref(),
                            now_ms(),
                            config.file_bytes_max,
                        )
                        .await;
                        next_number += 1;
                        created
                    }
                };
                match created {
                    Ok(created) => {
                        writer = Some(created);
                        let (dir, keys) = (config.dir.clone(), config.keys.clone());
                        let (shard_idx, number) = (config.shard_idx, next_number);
                        let (bytes, created_at_ms) = (config.file_bytes_max, now_ms());
                        next_file = Some(glommio::spawn_local(async move {
                            FileWriter::create(
                                &dir,
                                shard_idx,
                                number,
                                keys.as_ref(),
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
                        fail(&journal, &batch);
                        continue;
                    }
                }
            }
            let Some(file) = writer.as_mut() else {
                continue;
            };
            let started = Instant::now();
            let result = file.commit(&mut batch.bytes, &batch.frame_starts).await;
            journal.stats.commit_latency.record(started.elapsed());
            match result {
                Ok(()) => {
                    let stats = &journal.stats;
                    stats.commits_total.set(stats.commits_total.get() + 1);
                    stats
                        .bytes_total
                        .set(stats.bytes_total.get() + batch.bytes.len() as u64);
                    stats
                        .records_total
                        .set(stats.records_total.get() + batch.frame_starts.len() as u64);
                    writer_last_seq = writer_last_seq.max(batch.last_seq);
                    journal.completed(batch.number, Ok(()));
                }
                Err(error) => {
                    tracing::error!(
                        file = %file.path().display(),
                        "journal write failed: {error}; the batch's messages get 451"
                    );
                    fail(&journal, &batch);
                    // Start a new file for the next batch: this one's tail is unknown.
                    if let Some(failed) = writer.take() {
                        close_file(&journal, failed, writer_last_seq).await;
                    }
                    continue;
                }
            }
            if writer
                .as_ref()
                .is_some_and(|file| file.bytes_written() >= config.file_bytes_max)
                && let Some(full) = writer.take()
            {
                close_file(&journal, full, writer_last_seq).await;
            }
        }
        if !signalled {
            break;
        }
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

/// Fails every receiver of `batch`.
fn fail(journal: &Journal, batch: &TakenBatch) {
    let stats = &journal.stats;
    stats
        .commit_failures_total
        .set(stats.commit_failures_total.get() + 1);
    journal.completed(batch.number, Err(NotDurable));
}

async fn close_file(journal: &Journal, file: FileWriter, last_seq: u64) {
    let path = file.path().to_path_buf();
    file.close().await;
    journal
        .closed_files
        .borrow_mut()
        .push_back((path, last_seq));
}

/// Deletes retired journal files (and syncs their directory), counting them.
pub async fn delete_files(journal: &Journal, dir: &Path, files: Vec<PathBuf>) {
    if files.is_empty() {
        return;
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
