//! The one HTTP/1.1 client: a POST to a service the operator configured (rspamd's
//! `/checkv2`; webhooks), from the executor, with one deadline over connect, write and
//! read, and a bound on the reply.
//!
//! One request per connection (the caller's head says `Connection: close`): the services
//! are on loopback or a private network, where a connection costs tens of microseconds,
//! and no connection state outlives a request, so a service that misbehaves once cannot
//! poison the next request.
//!
//! The reply is read until its `Content-Length` is reached or the peer closes; a chunked
//! reply is decoded. Anything longer than the caller's bound is an error, never a larger
//! buffer.

use std::net::SocketAddr;
use std::time::Instant;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

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
}

/// Why a request got no reply.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no reply within the deadline")]
    Timeout,
    #[error("the reply is longer than {0} bytes")]
    TooLarge(usize),
    #[error("malformed reply: {0}")]
    Malformed(&'static str),
}

/// Sends `head` (the request line and header fields, ending in an empty line) and then
/// `body` (its parts in order, so a prefix and a shared message need no copy into one
/// buffer), and reads the reply. Everything happens by `deadline`.
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
        let mut stream = TcpStream::connect_timeout(addr, timeout)
            .await
            .map_err(|error| Error::Connect(error.into()))?;
        let _ = stream.set_nodelay(true);
        stream.write_all(head).await?;
        for part in body {
            stream.write_all(part).await?;
        }
        stream.flush().await?;
        let response = read_response(&mut stream, body_bytes_max).await;
        let _ = stream.close().await;
        response
    };
    let expired = async {
        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
        Err(Error::Timeout)
    };
    futures_lite::future::or(exchange, expired).await
}

/// Reads until the reply is complete or the peer closes, then decodes it.
async fn read_response(stream: &mut TcpStream, body_bytes_max: usize) -> Result<Response, Error> {
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
        }
    }
    let rest = &buf[head_bytes..];
    let body = if chunked {
        match dechunk(rest, body_bytes_max)? {
            Some(body) => body,
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
        rest[..length].to_vec()
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else if closed {
        rest.to_vec()
    } else {
        return Ok(Progress::Partial);
    };
    if body.len() > body_bytes_max {
        return Err(Error::TooLarge(body_bytes_max));
    }
    Ok(Progress::Complete(Response { status, body }))
}

/// The body of a chunked reply (RFC 9112 7.1) once its last chunk has arrived, `None`
/// before; chunk extensions and trailer fields are skipped.
fn dechunk(mut rest: &[u8], body_bytes_max: usize) -> Result<Option<Vec<u8>>, Error> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = memchr::memmem::find(rest, b"\r\n") else {
            return Ok(None);
        };
        let size_text = rest[..line_end]
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        let size = std::str::from_utf8(size_text)
            .ok()
            .and_then(|text| usize::from_str_radix(text, 16).ok())
            .ok_or(Error::Malformed("bad chunk size"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            // Trailer fields, if any, then the empty line.
            let complete =
                rest.starts_with(b"\r\n") || memchr::memmem::find(rest, b"\r\n\r\n").is_some();
            return Ok(complete.then_some(body));
        }
        if body.len() + size > body_bytes_max {
            return Err(Error::TooLarge(body_bytes_max));
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
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
