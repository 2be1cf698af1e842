//! The sink on monoio's io_uring driver, whose ring the application builds: the same
//! protocol code as `glommio_sink`, with the io_uring setup flags chosen by `Setup`.
//!
//! monoio reads and writes with io_uring `RECV`/`SEND` operations on owned buffers, so the
//! connection's input buffer is lent to each read and given back with its bytes.

use std::io;
use std::path::PathBuf;
use std::rc::Rc;

use anyhow::Context as _;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};

use crate::journal::{AlignedBuf, GroupCommit};
use crate::sink::{BUSY_REPLY, Conn, Slots};
use crate::{RING_ENTRIES, accept_error_is_transient};

/// The io_uring setup flags the ring is created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// No flags: completions from another CPU interrupt the thread (task work by IPI), as
    /// with glommio 0.9.
    Plain,
    /// `IORING_SETUP_COOP_TASKRUN`: no IPI; task work runs at the thread's next kernel entry.
    Coop,
    /// `COOP_TASKRUN | TASKRUN_FLAG`: as `Coop`, and the kernel flags pending task work in
    /// the SQ ring (monoio 0.2.4 never reads that flag; measured to see if setting it alone
    /// changes anything).
    CoopTaskrunFlag,
    /// `DEFER_TASKRUN | SINGLE_ISSUER`: task work runs only when the thread waits for
    /// completions (`io_uring_enter` with `GETEVENTS`), which monoio does when it parks.
    Defer,
}

impl Setup {
    fn builder(self) -> io_uring::Builder {
        let mut builder = io_uring::IoUring::builder();
        match self {
            Setup::Plain => {}
            Setup::Coop => {
                builder.setup_coop_taskrun();
            }
            Setup::CoopTaskrunFlag => {
                builder.setup_coop_taskrun().setup_taskrun_flag();
            }
            Setup::Defer => {
                builder.setup_defer_taskrun().setup_single_issuer();
            }
        }
        builder
    }
}

/// Serves SMTP on `listener` from this thread, pinned to `cpu`, until an accept fails.
///
/// # Errors
/// The thread cannot be pinned, the kernel refuses the ring's setup flags, or accepting a
/// connection failed.
pub fn run(
    listener: std::net::TcpListener,
    cpu: usize,
    connections_max: usize,
    setup: Setup,
    journal: Option<PathBuf>,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> anyhow::Result<()> {
    crate::pin_this_thread(cpu)?;
    let mut runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(RING_ENTRIES as u32)
        .uring_builder(setup.builder())
        .build()
        .with_context(|| format!("cannot create an io_uring with {setup:?} setup flags"))?;
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener).context("cannot adopt the listener")?;
        let commit = match journal {
            Some(path) => Some(start_committer(path)?),
            None => None,
        };
        accept_loop(listener, Slots::new(connections_max), commit, tls).await
    })
}

// SAFETY: the pointer stays valid and unmoved (the heap block) for the buffer's life, and
// `len` bytes of it are initialised.
unsafe impl monoio::buf::IoBuf for AlignedBuf {
    fn read_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.len
    }
}

/// Opens the (zero-filled) journal file with O_DIRECT and starts the committer task.
fn start_committer(path: PathBuf) -> anyhow::Result<Rc<GroupCommit>> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let file = Rc::new(monoio::fs::File::from_std(file).context("cannot adopt the journal file")?);
    let commit = GroupCommit::new();
    monoio::spawn({
        let commit = Rc::clone(&commit);
        async move {
            loop {
                let batch = commit.next_batch().await;
                let mut buffer = AlignedBuf::zeroed(batch.write_bytes());
                batch.fill(buffer.as_bytes_mut());
                let file = Rc::clone(&file);
                let commit = Rc::clone(&commit);
                monoio::spawn(async move {
                    let (written, _buffer) = file.write_all_at(buffer, batch.pos).await;
                    let ok = written.is_ok() && file.sync_data().await.is_ok();
                    commit.finished(batch.seq, ok);
                });
            }
        }
    });
    Ok(commit)
}

async fn accept_loop(
    listener: TcpListener,
    slots: Rc<Slots>,
    commit: Option<Rc<GroupCommit>>,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> anyhow::Result<()> {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(error) if accept_error_is_transient(&error) => continue,
            Err(error) => return Err(error).context("accept failed"),
        };
        let Some(slot) = slots.take() else {
            monoio::spawn(async move {
                let mut stream = stream;
                let _ = stream.write_all(BUSY_REPLY).await;
            });
            continue;
        };
        let commit = commit.clone();
        let tls = tls.clone();
        monoio::spawn(async move {
            let mut stream = stream;
            // A socket error ends the connection; the client sees the close.
            let _ = serve(&mut stream, commit.as_ref(), tls).await;
            // The slot is free before the client can see the close, so a client that saw it
            // can count on the slot.
            drop(slot);
            drop(stream);
        });
    }
}

async fn serve(
    stream: &mut TcpStream,
    commit: Option<&Rc<GroupCommit>>,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut conn = Conn::with_tls(tls);
    loop {
        let n_stored = conn.take_stored();
        if let (Some(commit), true) = (commit, n_stored > 0)
            && !commit.append(n_stored).await
        {
            return Err(io::Error::other("the journal could not write"));
        }
        if !conn.output().is_empty() {
            let output = std::mem::take(conn.output());
            let (written, output) = stream.write_all(output).await;
            *conn.output() = output;
            written?;
            conn.output().clear();
        }
        if conn.is_closing() {
            return Ok(());
        }
        let range = conn.read_range();
        let input = std::mem::take(conn.input_buffer());
        let (n_read, input) = stream.read(input.slice_mut(range)).await;
        *conn.input_buffer() = input.into_inner();
        let n_read = n_read?;
        if n_read == 0 {
            return Ok(());
        }
        conn.received(n_read);
    }
}
