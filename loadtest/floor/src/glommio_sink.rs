//! The sink on glommio 0.9, set up as Mayfly sets up an executor: a `LocalExecutorBuilder`
//! pinned to one CPU with Mayfly's ring depth, glommio's `TcpListener` and `TcpStream`, one
//! `spawn_local` task per connection, `write_all` of the replies, `read` into the
//! connection's buffer. glommio 0.9 creates its rings with no setup flags, and its public
//! API has no way to add any: that is the point of comparison.

use std::io;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;

use anyhow::Context as _;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};

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
) -> anyhow::Result<()> {
    let listener_fd = listener.into_raw_fd();
    let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .name("floor-glommio")
        .ring_depth(RING_ENTRIES)
        .spawn(move || async move {
            // SAFETY: `listener_fd` is the listening socket `into_raw_fd` released above;
            // nothing else owns or closes it, and it moves into this one listener.
            let listener = unsafe { TcpListener::from_raw_fd(listener_fd) };
            accept_loop(listener, Slots::new(connections_max)).await
        })
        .map_err(|error| anyhow::anyhow!("cannot start the glommio executor: {error}"))?;
    handle
        .join()
        .map_err(|error| anyhow::anyhow!("glommio executor failed: {error}"))?
}

async fn accept_loop(listener: TcpListener, slots: Rc<Slots>) -> anyhow::Result<()> {
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
        glommio::spawn_local(async move {
            let mut stream = stream;
            // A socket error ends the connection; the client sees the close.
            let _ = serve(&mut stream).await;
            // The slot is free before the client can see the close, so a client that saw it
            // can count on the slot.
            drop(slot);
            drop(stream);
        })
        .detach();
    }
}

async fn serve(stream: &mut TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut conn = Conn::new();
    loop {
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
