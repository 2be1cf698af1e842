//! Group commit, as Mayfly's journal does it, without the record format: every message that
//! ends appends one `RECORD_BYTES` record to the batch that is filling; a committer writes a
//! batch (O_DIRECT, padded to `BLOCK_BYTES`) and `fdatasync`s it, with up to
//! `COMMITS_IN_FLIGHT_MAX` batches in flight, and a connection's replies wait until the
//! batch holding its messages is durable. Batches become durable strictly in order.
//!
//! This module is the bookkeeping only (runtime-independent: `std::task::Waker`s); each
//! runtime's glue opens the file and runs the committer with its own file API
//! (`glommio_sink`, `monoio_sink`). So the journaling variants measure what a runtime costs
//! to wait for a disk the way the server waits for it, not what encoding and sealing cost.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// One message's record: Mayfly's 1 KiB message plus its envelope, about.
pub const RECORD_BYTES: usize = 1024;
/// O_DIRECT alignment: a batch's write is padded to a whole number of blocks.
pub const BLOCK_BYTES: usize = 4096;
/// Mayfly's `journal::SYNCS_IN_FLIGHT_MAX`.
pub const COMMITS_IN_FLIGHT_MAX: usize = 2;
/// The journal file's size: zero-filled at start (so an `fdatasync` flushes data only, as
/// with Mayfly's preallocated segments), written in a circle.
pub const FILE_BYTES: u64 = 256 * 1024 * 1024;

/// One batch to write: its sequence number, how many records, and where.
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    pub seq: u64,
    pub n_records: usize,
    pub pos: u64,
}

impl Batch {
    /// Bytes the write covers: the records, padded to whole blocks.
    pub fn write_bytes(&self) -> usize {
        (self.n_records * RECORD_BYTES).div_ceil(BLOCK_BYTES) * BLOCK_BYTES
    }

    /// Fills a buffer of `write_bytes()` with the batch's records, zeros after them.
    pub fn fill(&self, bytes: &mut [u8]) {
        let (records, padding) = bytes.split_at_mut(self.n_records * RECORD_BYTES);
        records.fill(b'r');
        padding.fill(0);
    }
}

/// The state one executor's connections and committer share.
#[derive(Default)]
pub struct GroupCommit {
    /// Records waiting for the next batch.
    n_pending: Cell<usize>,
    /// The sequence number the next batch will get; batches `< next_seq` were taken.
    next_seq: Cell<u64>,
    /// Every batch `< n_durable` is durable.
    n_durable: Cell<u64>,
    /// Batches taken whose commit has not finished, and those that finished out of order,
    /// in the order they were taken (ascending sequence numbers).
    in_flight: RefCell<Vec<(u64, bool)>>,
    next_pos: Cell<u64>,
    committer: RefCell<Option<Waker>>,
    waiters: RefCell<Vec<(u64, Waker)>>,
    failed: Cell<bool>,
}

impl GroupCommit {
    pub fn new() -> Rc<GroupCommit> {
        Rc::new(GroupCommit::default())
    }

    /// Appends `n_records`; the future is ready once they are durable (or a commit failed:
    /// then it returns false, and the connection should close without replying).
    pub fn append(self: &Rc<Self>, n_records: usize) -> Durable {
        self.n_pending.set(self.n_pending.get() + n_records);
        if let Some(committer) = self.committer.borrow_mut().take() {
            committer.wake();
        }
        Durable {
            commit: Rc::clone(self),
            seq: self.next_seq.get(),
        }
    }

    /// For the committer: ready with the next batch once records are pending and fewer
    /// than `COMMITS_IN_FLIGHT_MAX` commits run.
    pub fn next_batch(self: &Rc<Self>) -> NextBatch {
        NextBatch {
            commit: Rc::clone(self),
        }
    }

    /// A batch's `fdatasync` returned (`ok`): marks it, advances what is durable in order,
    /// and wakes the connections waiting for it and the committer.
    pub fn finished(&self, seq: u64, ok: bool) {
        if !ok {
            self.failed.set(true);
        }
        {
            let mut in_flight = self.in_flight.borrow_mut();
            if let Some(entry) = in_flight.iter_mut().find(|(s, _)| *s == seq) {
                entry.1 = true;
            }
            while let Some(&(s, true)) = in_flight.first() {
                self.n_durable.set(s + 1);
                in_flight.remove(0);
            }
        }
        let n_durable = self.n_durable.get();
        let failed = self.failed.get();
        self.waiters.borrow_mut().retain(|(seq, waker)| {
            if *seq < n_durable || failed {
                waker.wake_by_ref();
                false
            } else {
                true
            }
        });
        if let Some(committer) = self.committer.borrow_mut().take() {
            committer.wake();
        }
    }
}

/// Ready when the batch `seq` is durable.
pub struct Durable {
    commit: Rc<GroupCommit>,
    seq: u64,
}

impl Future for Durable {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        if self.commit.failed.get() {
            return Poll::Ready(false);
        }
        if self.seq < self.commit.n_durable.get() {
            return Poll::Ready(true);
        }
        self.commit
            .waiters
            .borrow_mut()
            .push((self.seq, cx.waker().clone()));
        Poll::Pending
    }
}

/// The committer's wait for work (see `GroupCommit::next_batch`).
pub struct NextBatch {
    commit: Rc<GroupCommit>,
}

impl Future for NextBatch {
    type Output = Batch;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Batch> {
        let commit = &self.commit;
        let n_pending = commit.n_pending.get();
        if n_pending == 0 || commit.in_flight.borrow().len() >= COMMITS_IN_FLIGHT_MAX {
            *commit.committer.borrow_mut() = Some(cx.waker().clone());
            return Poll::Pending;
        }
        // Every pending record goes: a batch is bounded by the connections (each appends
        // at most one read's worth of messages before it waits).
        let n_records = n_pending;
        commit.n_pending.set(0);
        let seq = commit.next_seq.get();
        // Appends from now on wait for the next batch.
        commit.next_seq.set(seq + 1);
        let mut batch = Batch {
            seq,
            n_records,
            pos: commit.next_pos.get(),
        };
        if batch.pos + batch.write_bytes() as u64 > FILE_BYTES {
            batch.pos = 0;
        }
        commit.next_pos.set(batch.pos + batch.write_bytes() as u64);
        commit.in_flight.borrow_mut().push((seq, false));
        Poll::Ready(batch)
    }
}

/// A zeroed buffer aligned for O_DIRECT, owned (monoio's file writes and the writer thread
/// take them by value).
pub struct AlignedBuf {
    pub ptr: std::ptr::NonNull<u8>,
    pub len: usize,
}

impl AlignedBuf {
    fn layout(len: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(len.max(BLOCK_BYTES), BLOCK_BYTES)
            .expect("a block-aligned layout")
    }

    pub fn zeroed(len: usize) -> AlignedBuf {
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(Self::layout(len)) };
        let ptr = std::ptr::NonNull::new(ptr)
            .unwrap_or_else(|| std::alloc::handle_alloc_error(Self::layout(len)));
        AlignedBuf { ptr, len }
    }

    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` holds `len` initialised bytes that this value owns.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this very layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.len)) };
    }
}

// SAFETY: the buffer owns its heap block outright; nothing else points into it.
unsafe impl Send for AlignedBuf {}

/// One batch for the writer thread: the records, where they go, and whom to tell.
pub struct ThreadCommit {
    pub buffer: AlignedBuf,
    pub pos: u64,
    pub done: Arc<Oneshot>,
}

/// A one-shot answer from the writer thread to an executor's task (its waker may be
/// called from any thread, as the runtimes allow).
#[derive(Default)]
pub struct Oneshot(Mutex<(Option<bool>, Option<Waker>)>);

impl Oneshot {
    pub fn send(&self, ok: bool) {
        let waker = {
            let mut state = self.0.lock().expect("not poisoned");
            state.0 = Some(ok);
            state.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    pub fn recv(self: &Arc<Self>) -> OneshotRecv {
        OneshotRecv(Arc::clone(self))
    }
}

pub struct OneshotRecv(Arc<Oneshot>);

impl Future for OneshotRecv {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let mut state = self.0.0.lock().expect("not poisoned");
        match state.0 {
            Some(ok) => Poll::Ready(ok),
            None => {
                state.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Starts the writer thread (not pinned: the kernel places it), which writes and
/// `fdatasync`s each batch it is sent, in order, with plain blocking syscalls.
///
/// # Errors
/// The file cannot be opened or the thread started.
pub fn start_writer_thread(
    path: &std::path::Path,
) -> std::io::Result<std::sync::mpsc::Sender<ThreadCommit>> {
    use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    let (commits, received) = std::sync::mpsc::channel::<ThreadCommit>();
    std::thread::Builder::new()
        .name("floor-writer".into())
        .spawn(move || {
            for mut commit in received {
                let ok = file
                    .write_all_at(commit.buffer.as_bytes_mut(), commit.pos)
                    .is_ok()
                    && file.sync_data().is_ok();
                commit.done.send(ok);
            }
        })?;
    Ok(commits)
}

/// Creates (or truncates) `path` and zero-fills it to `FILE_BYTES`, durably, before the
/// sink listens.
///
/// # Errors
/// The file cannot be written.
pub fn prepare_file(path: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path)?;
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..FILE_BYTES / zeros.len() as u64 {
        file.write_all(&zeros)?;
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
    }

    /// Appends wait for their own batch; batches become durable in order, whichever
    /// `fdatasync` returns first; at most two are in flight.
    #[test]
    fn batches_become_durable_in_order() {
        let commit = GroupCommit::new();
        let mut next = commit.next_batch();
        assert!(poll(&mut next).is_pending(), "nothing pending");
        let mut first = commit.append(2);
        let Poll::Ready(batch_0) = poll(&mut next) else {
            panic!("a batch");
        };
        assert_eq!((batch_0.seq, batch_0.n_records, batch_0.pos), (0, 2, 0));
        assert_eq!(batch_0.write_bytes(), BLOCK_BYTES);
        let mut second = commit.append(5);
        let Poll::Ready(batch_1) = poll(&mut commit.next_batch()) else {
            panic!("a second batch in flight");
        };
        assert_eq!((batch_1.seq, batch_1.n_records, batch_1.pos), (1, 5, 4096));
        let _third = commit.append(1);
        assert!(
            poll(&mut commit.next_batch()).is_pending(),
            "two in flight at most"
        );
        // The second batch's sync returns first: nobody is released yet.
        commit.finished(1, true);
        assert!(poll(&mut second).is_pending());
        assert!(poll(&mut first).is_pending());
        commit.finished(0, true);
        assert_eq!(poll(&mut first), Poll::Ready(true));
        assert_eq!(poll(&mut second), Poll::Ready(true));
        assert!(poll(&mut commit.next_batch()).is_ready(), "room again");
    }

    #[test]
    fn a_failed_commit_fails_every_waiter() {
        let commit = GroupCommit::new();
        let mut waiting = commit.append(1);
        let Poll::Ready(batch) = poll(&mut commit.next_batch()) else {
            panic!("a batch");
        };
        commit.finished(batch.seq, false);
        assert_eq!(poll(&mut waiting), Poll::Ready(false));
    }
}
