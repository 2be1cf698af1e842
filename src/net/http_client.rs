//! The one HTTP/1.1 client: a POST to a service the operator configured (rspamd's
//! `/checkv2`; webhooks), from the executor, with a deadline over connect, write and
//! read, and a bound on the reply.
//!
//! [`post`] is one request per connection (the caller's head says `Connection: close`):
//! rspamd runs on loopback or a private network, where a connection costs tens of
//! microseconds, and no connection state outlives a request, so a service that misbehaves
//! once cannot poison the next request. Webhooks, which post for every stored message,
//! keep connections instead: [`connect`] (plain TCP or TLS) and then [`send`] for each
//! request; a reply says whether its connection may carry the next one
//! ([`Response::reusable`]: complete by its own framing, HTTP/1.1, no `Connection: close`).
//!
//! The reply is read until its `Content-Length` is reached or the peer closes; a chunked
//! reply is decoded. Anything longer than the caller's bound is an error, never a larger
//! buffer.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_rustls::TlsConnector;
use futures_rustls::client::TlsStream;
use glommio::net::TcpStream;
use rustls::pki_types::ServerName;

/// Largest reply head (status line and header fields) read.
pub const HEAD_BYTES_MAX: usize = 16 * 1024;
/// Header fields parsed in a reply head; more is a malformed reply.
const HEADERS_MAX: usize = 64;
/// Bytes read per `read` call.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// A reply: its status and whole body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// The connection may carry another request: the reply ended by its own framing
    /// (a length, chunks, or a status without a body), it is HTTP/1.1, and it did not say
    /// `Connection: close`.
    pub reusable: bool,
}

/// Why a request got no reply.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS handshake: {0}")]
    Handshake(std::io::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no reply within the deadline")]
    Timeout,
    #[error("the reply is longer than {0} bytes")]
    TooLarge(usize),
    #[error("malformed reply: {0}")]
    Malformed(&'static str),
    /// The peer closed the connection before any byte of a reply: on a kept connection,
    /// the sign that the peer had closed it while it was idle.
    #[error("the connection closed before a reply")]
    Closed,
}

/// A connection to a service, plain or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Sends `head` (the request line and header fields, ending in an empty line) and then
/// `body` (its parts in order, so a prefix and a shared message need no copy into one
/// buffer), and reads the reply, on a connection of its own. Everything happens by
/// `deadline`.
///
/// # Errors
/// The connection fails, the deadline passes, the reply is malformed or its body is
/// longer than `body_bytes_max`.
pub async fn post(
    addr: SocketAddr,
    head: &[u8],
    body: &[&[u8]],
    deadline: Instant,
    body_bytes_max: usize,
) -> Result<Response, Error> {
    let exchange = async {
        let timeout = deadline.saturating_duration_since(Instant::now());
        if timeout.is_zero() {
            return Err(Error::Timeout);
        }
        let mut stream = connect(addr, None, timeout).await?;
        let response = send(&mut stream, head, body, body_bytes_max).await;
        let _ = stream.close().await;
        response
    };
    within(deadline, exchange).await
}

/// Runs `exchange` until `deadline`; past it, [`Error::Timeout`] (and `exchange` is
/// dropped, closing whatever connection it held).
pub async fn within<T>(
    deadline: Instant,
    exchange: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let expired = async {
        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
        Err(Error::Timeout)
    };
    futures_lite::future::or(exchange, expired).await
}

/// Opens a connection to `addr` within `timeout`, with TLS to `server_name` when `tls` is
/// given (the connector's roots check the certificate).
///
/// # Errors
/// The connection or the handshake fails.
pub async fn connect(
    addr: SocketAddr,
    tls: Option<(&TlsConnector, ServerName<'static>)>,
    timeout: Duration,
) -> Result<Stream, Error> {
    let stream = TcpStream::connect_timeout(addr, timeout)
        .await
        .map_err(|error| Error::Connect(error.into()))?;
    // Without it a request and its reply wait for delayed ACKs (see the tech notes).
    let _ = stream.set_nodelay(true);
    match tls {
        None => Ok(Stream::Plain(stream)),
        Some((connector, server_name)) => connector
            .connect(server_name, stream)
            .await
            .map(|stream| Stream::Tls(Box::new(stream)))
            .map_err(Error::Handshake),
    }
}

/// Sends one request on `stream` (see [`post`] for `head` and `body`) and reads its reply.
/// No deadline of its own: the caller bounds it (`within`).
///
/// # Errors
/// The connection fails, the reply is malformed or its body is longer than
/// `body_bytes_max`.
pub async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    head: &[u8],
    body: &[&[u8]],
    body_bytes_max: usize,
) -> Result<Response, Error> {
    stream.write_all(head).await?;
    for part in body {
        stream.write_all(part).await?;
    }
    stream.flush().await?;
    read_response(stream, body_bytes_max).await
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_close(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_close(cx),
        }
    }
}

/// Reads until the reply is complete or the peer closes, then decodes it.
async fn read_response<S: AsyncRead + Unpin>(
    stream: &mut S,
    body_bytes_max: usize,
) -> Result<Response, Error> {
    let mut buf = Vec::with_capacity(READ_CHUNK_BYTES);
    let bytes_max = HEAD_BYTES_MAX + body_bytes_max;
    loop {
        if let Progress::Complete(response) = decode(&buf, body_bytes_max, false)? {
            return Ok(response);
        }
        if buf.len() >= bytes_max {
            return Err(Error::TooLarge(body_bytes_max));
        }
        let filled = buf.len();
        buf.resize((filled + READ_CHUNK_BYTES).min(bytes_max), 0);
        let n_read = stream.read(&mut buf[filled..]).await?;
        buf.truncate(filled + n_read);
        if n_read == 0 {
            if buf.is_empty() {
                return Err(Error::Closed);
            }
            return match decode(&buf, body_bytes_max, true)? {
                Progress::Complete(response) => Ok(response),
                Progress::Partial => Err(Error::Malformed("the connection closed mid-reply")),
            };
        }
    }
}

/// How far a reply has arrived.
#[derive(Debug)]
enum Progress {
    Partial,
    Complete(Response),
}

/// Decodes what has arrived of a reply; `closed` says the peer has closed, which ends a
/// body that has neither a length nor chunks.
fn decode(buf: &[u8], body_bytes_max: usize, closed: bool) -> Result<Progress, Error> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut parsed = httparse::Response::new(&mut headers);
    let head_bytes = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > HEAD_BYTES_MAX => {
            return Err(Error::TooLarge(HEAD_BYTES_MAX));
        }
        Ok(httparse::Status::Partial) => return Ok(Progress::Partial),
        Err(_) => return Err(Error::Malformed("not an HTTP/1.x reply head")),
    };
    let status = parsed.code.ok_or(Error::Malformed("no status"))?;
    let mut content_length = None;
    let mut chunked = false;
    let mut close = parsed.version != Some(1);
    for header in parsed.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let length = std::str::from_utf8(header.value)
                .ok()
                .and_then(|text| text.trim().parse::<usize>().ok())
                .ok_or(Error::Malformed("bad Content-Length"))?;
            content_length = Some(length);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = header
                .value
                .split(|&b| b == b',')
                .any(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if header.name.eq_ignore_ascii_case("connection") {
            close |= header
                .value
                .split(|&b| b == b',')
                .any(|option| option.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
    }
    let rest = &buf[head_bytes..];
    // How much of `rest` the reply's own framing took; `None`: it ended with the connection.
    let (body, framed_bytes) = if chunked {
        match dechunk(rest, body_bytes_max)? {
            Some((body, consumed)) => (body, Some(consumed)),
            None if closed => return Err(Error::Malformed("the chunked body ended early")),
            None => return Ok(Progress::Partial),
        }
    } else if let Some(length) = content_length {
        if length > body_bytes_max {
            return Err(Error::TooLarge(body_bytes_max));
        }
        if rest.len() < length {
            return Ok(Progress::Partial);
        }
        (rest[..length].to_vec(), Some(length))
    } else if status == 204 || status == 304 {
        (Vec::new(), Some(0))
    } else if (100..200).contains(&status) {
        // An interim reply (we never send `Expect`): the final one would follow, so the
        // connection is not where a next request can start.
        (Vec::new(), None)
    } else if closed {
        (rest.to_vec(), None)
    } else {
        return Ok(Progress::Partial);
    };
    if body.len() > body_bytes_max {
        return Err(Error::TooLarge(body_bytes_max));
    }
    // Bytes after the reply would be taken for the next reply's start: not reusable.
    let reusable = !close && framed_bytes == Some(rest.len());
    Ok(Progress::Complete(Response {
        status,
        body,
        reusable,
    }))
}

/// The body of a chunked reply (RFC 9112 7.1) and the bytes it took once its last chunk
/// has arrived, `None` before; chunk extensions and trailer fields are skipped.
fn dechunk(rest: &[u8], body_bytes_max: usize) -> Result<Option<(Vec<u8>, usize)>, Error> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(line_len) = memchr::memmem::find(&rest[at..], b"\r\n") else {
            return Ok(None);
        };
        let size_text = rest[at..at + line_len]
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        let size = std::str::from_utf8(size_text)
            .ok()
            .and_then(|text| usize::from_str_radix(text, 16).ok())
            .ok_or(Error::Malformed("bad chunk size"))?;
        at += line_len + 2;
        if size == 0 {
            // Trailer fields, if any, then the empty line.
            let trailer = &rest[at..];
            let end = if trailer.starts_with(b"\r\n") {
                Some(2)
            } else {
                memchr::memmem::find(trailer, b"\r\n\r\n").map(|idx| idx + 4)
            };
            return Ok(end.map(|end| (body, at + end)));
        }
        if body.len() + size > body_bytes_max {
            return Err(Error::TooLarge(body_bytes_max));
        }
        if rest.len() - at < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&rest[at..at + size]);
        at += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8], closed: bool) -> Response {
        match decode(buf, 1024, closed).unwrap() {
            Progress::Complete(response) => response,
            Progress::Partial => panic!("partial: {:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn is_partial(buf: &[u8], closed: bool) -> bool {
        matches!(decode(buf, 1024, closed), Ok(Progress::Partial))
    }

    #[test]
    fn content_length_bodies_end_at_their_length() {
        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        for cut in 0..reply.len() {
            assert!(is_partial(&reply[..cut], false), "{cut}");
        }
        let response = complete(reply, false);
        assert_eq!((response.status, &response.body[..]), (200, &b"hello"[..]));
        assert!(matches!(
            decode(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n",
                1024,
                false
            ),
            Err(Error::TooLarge(1024))
        ));
    }

    #[test]
    fn chunked_bodies_are_decoded_whole() {
        let reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\n";
        for cut in 0..reply.len() - 1 {
            assert!(is_partial(&reply[..cut], false), "{cut}");
        }
        assert_eq!(complete(reply, false).body, b"hello, world");
        assert!(matches!(
            decode(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                1024,
                false
            ),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            decode(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffff\r\n",
                1024,
                false
            ),
            Err(Error::TooLarge(_))
        ));
    }

    #[test]
    fn bodies_without_length_end_with_the_connection() {
        let reply = b"HTTP/1.0 500 Oops\r\n\r\nbroken";
        assert!(is_partial(reply, false));
        let response = complete(reply, true);
        assert_eq!((response.status, &response.body[..]), (500, &b"broken"[..]));
        assert_eq!(
            complete(b"HTTP/1.1 204 No Content\r\n\r\n", false).body,
            b""
        );
    }

    #[test]
    fn only_replies_framed_whole_on_http_1_1_leave_the_connection_reusable() {
        // (reply, closed, reusable)
        let table: &[(&[u8], bool, bool)] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                false,
                true,
            ),
            (b"HTTP/1.1 204 No Content\r\n\r\n", false, true),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                false,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\n\r\n",
                false,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, Close\r\n\r\nok",
                false,
                false,
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
                false,
                false,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\nread to close", true, false),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
                false,
                false,
            ),
            (b"HTTP/1.1 100 Continue\r\n\r\n", false, false),
        ];
        for &(reply, closed, reusable) in table {
            assert_eq!(
                complete(reply, closed).reusable,
                reusable,
                "{}",
                String::from_utf8_lossy(reply)
            );
        }
    }

    #[test]
    fn garbage_and_huge_heads_are_errors() {
        assert!(matches!(
            decode(b"SSH-2.0-OpenSSH\r\n\r\n", 1024, false),
            Err(Error::Malformed(_))
        ));
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        while head.len() <= HEAD_BYTES_MAX {
            head.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert!(decode(&head, 1024, false).is_err());
    }
}
