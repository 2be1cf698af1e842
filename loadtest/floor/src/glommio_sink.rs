//! The sink on glommio 0.9, set up as Mayfly sets up an executor: a `LocalExecutorBuilder`
//! pinned to one CPU with Mayfly's ring depth, glommio's `TcpListener` and `TcpStream`, one
//! `spawn_local` task per connection, `write_all` of the replies, `read` into the
//! connection's buffer. glommio 0.9 creates its rings with no setup flags, and its public
//! API has no way to add any: that is the point of comparison.

use std::io;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::path::PathBuf;
use std::rc::Rc;

use anyhow::Context as _;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};

use crate::journal::GroupCommit;
use crate::sink::{BUSY_REPLY, Conn, Slots};
use crate::{RING_ENTRIES, accept_error_is_transient};

/// Serves SMTP on `listener` from one executor pinned to `cpu`, until an accept fails.
///
/// # Errors
/// The executor cannot be created or pinned, or accepting a connection failed.
pub fn run(
    listener: std::net::TcpListener,
    cpu: usize,
    connections_max: usize,
    journal: Option<PathBuf>,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    journal_thread: bool,
) -> anyhow::Result<()> {
    let listener_fd = listener.into_raw_fd();
    let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .name("floor-glommio")
        .ring_depth(RING_ENTRIES)
        .spawn(move || async move {
            // SAFETY: `listener_fd` is the listening socket `into_raw_fd` released above;
            // nothing else owns or closes it, and it moves into this one listener.
            let listener = unsafe { TcpListener::from_raw_fd(listener_fd) };
            let commit = match journal {
                Some(path) => Some(start_committer(path, journal_thread).await?),
                None => None,
            };
            accept_loop(listener, Slots::new(connections_max), commit, tls).await
        })
        .map_err(|error| anyhow::anyhow!("cannot start the glommio executor: {error}"))?;
    handle
        .join()
        .map_err(|error| anyhow::anyhow!("glommio executor failed: {error}"))?
}

/// Where a glommio sink's batches go.
enum Writer {
    /// glommio's DMA file (O_DIRECT), as Mayfly's journal writes.
    Dma(Rc<glommio::io::DmaFile>),
    /// A plain thread with blocking `pwrite` + `fdatasync` (`journal::start_writer_thread`).
    Thread(std::sync::mpsc::Sender<crate::journal::ThreadCommit>),
}

/// Opens the (zero-filled) journal file with O_DIRECT, through glommio or by a writer
/// thread (`thread`), and starts the committer task.
async fn start_committer(path: PathBuf, thread: bool) -> anyhow::Result<Rc<GroupCommit>> {
    let writer = if thread {
        Writer::Thread(
            crate::journal::start_writer_thread(&path)
                .map_err(|error| anyhow::anyhow!("cannot start the writer thread: {error}"))?,
        )
    } else {
        Writer::Dma(Rc::new(
            glommio::io::OpenOptions::new()
                .write(true)
                .dma_open(&path)
                .await
                .map_err(|error| anyhow::anyhow!("cannot open {}: {error}", path.display()))?,
        ))
    };
    let commit = GroupCommit::new();
    glommio::spawn_local({
        let commit = Rc::clone(&commit);
        async move {
            loop {
                let batch = commit.next_batch().await;
                let commit = Rc::clone(&commit);
                match &writer {
                    Writer::Dma(file) => {
                        let mut buffer = file.alloc_dma_buffer(batch.write_bytes());
                        batch.fill(buffer.as_bytes_mut());
                        let file = Rc::clone(file);
                        glommio::spawn_local(async move {
                            let written = file.write_at(buffer, batch.pos).await;
                            let ok = written.is_ok() && file.fdatasync().await.is_ok();
                            commit.finished(batch.seq, ok);
                        })
                        .detach();
                    }
                    Writer::Thread(writer) => {
                        let mut buffer = crate::journal::AlignedBuf::zeroed(batch.write_bytes());
                        batch.fill(buffer.as_bytes_mut());
                        let done = std::sync::Arc::new(crate::journal::Oneshot::default());
                        let sent = writer.send(crate::journal::ThreadCommit {
                            buffer,
                            pos: batch.pos,
                            done: std::sync::Arc::clone(&done),
                        });
                        if sent.is_err() {
                            commit.finished(batch.seq, false);
                            continue;
                        }
                        glommio::spawn_local(async move {
                            let ok = done.recv().await;
                            commit.finished(batch.seq, ok);
                        })
                        .detach();
                    }
                }
            }
        }
    })
    .detach();
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
            Ok(stream) => stream,
            Err(error) => {
                let error = io::Error::from(error);
                if accept_error_is_transient(&error) {
                    continue;
                }
                return Err(error).context("accept failed");
            }
        };
        let Some(slot) = slots.take() else {
            glommio::spawn_local(async move {
                let mut stream = stream;
                let _ = stream.write_all(BUSY_REPLY).await;
            })
            .detach();
            continue;
        };
        let commit = commit.clone();
        let tls = tls.clone();
        glommio::spawn_local(async move {
            let mut stream = stream;
            // A socket error ends the connection; the client sees the close.
            let _ = serve(&mut stream, commit.as_ref(), tls).await;
            // The slot is free before the client can see the close, so a client that saw it
            // can count on the slot.
            drop(slot);
            drop(stream);
        })
        .detach();
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
            stream.write_all(conn.output()).await?;
            conn.output().clear();
        }
        if conn.is_closing() {
            return Ok(());
        }
        let range = conn.read_range();
        let n_read = stream.read(&mut conn.input_buffer()[range]).await?;
        if n_read == 0 {
            return Ok(());
        }
        conn.received(n_read);
    }
}
