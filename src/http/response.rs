//! HTTP/1.1 responses: built by the API, serialised into the connection's write buffer.
//!
//! Every response carries `Content-Length` (no chunked encoding: bodies are built whole
//! before they are sent), `Date`, and `Connection`, so HTTP/1.0 clients that asked for
//! keep-alive get it. Errors use the body the API contract fixes:
//! `{"error": {"code": "<snake_case>", "message": "<human text>"}}`.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::macros::format_description;

/// `Content-Type` of JSON bodies (RFC 8259: UTF-8, no charset parameter).
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// `Content-Type` of plain-text bodies.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; charset=utf-8";

/// A response to serialise with `write_to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Empty for a response without a body.
    pub content_type: &'static str,
    /// Extra header fields (`Allow`, `Retry-After`, ...). CR, LF and other control bytes in
    /// values are replaced by spaces when written, so no value can inject a header.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a body.
    pub fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body,
        }
    }

    /// A response without a body, e.g. 204.
    pub fn empty(status: u16) -> Response {
        Response::new(status, "", Vec::new())
    }

    /// A JSON body. API responses are about one person's mail, so no cache may keep them.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response::new(status, CONTENT_TYPE_JSON, value.to_string().into_bytes())
            .with_header("Cache-Control", "no-store")
    }

    /// A JSON body from anything serde can serialize, without building a `Value` first
    /// (the hot listing path: no map per object, no intermediate strings).
    pub fn json_from<T: serde::Serialize>(status: u16, value: &T) -> Response {
        match serde_json::to_vec(value) {
            Ok(body) => Response::new(status, CONTENT_TYPE_JSON, body)
                .with_header("Cache-Control", "no-store"),
            Err(error) => Response::error(
                500,
                "internal_error",
                &format!("cannot render JSON: {error}"),
            ),
        }
    }

    /// An error in the contract's shape; `code` is snake_case (`bad_request`, `not_found`, ...).
    pub fn error(status: u16, code: &str, message: &str) -> Response {
        Response::json(
            status,
            &serde_json::json!({"error": {"code": code, "message": message}}),
        )
    }

    /// Adds a header field.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// Appends the status line, header fields and (unless `head_only`, or for a status that
    /// has no body) the body to `out`. `head_only` answers HEAD: the same header fields,
    /// including the `Content-Length` the GET body would have.
    pub fn write_to(&self, keep_alive: bool, head_only: bool, out: &mut Vec<u8>) {
        use std::io::Write;
        // RFC 9110 section 6.4.1: 1xx, 204 and 304 responses have no content.
        let has_no_content = self.status < 200 || self.status == 204 || self.status == 304;
        out.reserve(256 + self.body.len());
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\n",
            self.status,
            reason_phrase(self.status)
        );
        with_http_date(|date| {
            out.extend_from_slice(b"Date: ");
            out.extend_from_slice(date);
            out.extend_from_slice(b"\r\n");
        });
        if !has_no_content {
            if !self.content_type.is_empty() {
                let _ = write!(out, "Content-Type: {}\r\n", self.content_type);
            }
            let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
        }
        out.extend_from_slice(if keep_alive {
            b"Connection: keep-alive\r\n"
        } else {
            b"Connection: close\r\n"
        });
        out.extend_from_slice(b"X-Content-Type-Options: nosniff\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend(
                value
                    .bytes()
                    .map(|b| if b.is_ascii_control() { b' ' } else { b }),
            );
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only && !has_no_content {
            out.extend_from_slice(&self.body);
        }
    }
}

/// The reason phrase of every status the server sends (clients ignore it, people read it).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Calls `f` with the current time as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`),
/// formatted once per second per thread: every response needs it.
fn with_http_date(f: impl FnOnce(&[u8])) {
    thread_local! {
        static CACHE: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
    }
    let now_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    CACHE.with_borrow_mut(|(cached_secs, date)| {
        if *cached_secs != now_secs {
            *cached_secs = now_secs;
            *date = http_date(now_secs).into_bytes();
        }
        f(date);
    });
}

/// IMF-fixdate of Unix seconds (RFC 9110 section 5.6.7).
fn http_date(unix_secs: u64) -> String {
    let format = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    i64::try_from(unix_secs)
        .ok()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .and_then(|time| time.format(format).ok())
        .unwrap_or_else(|| "Fri, 31 Dec 9999 23:59:59 GMT".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(response: &Response, keep_alive: bool, head_only: bool) -> String {
        let mut out = Vec::new();
        response.write_to(keep_alive, head_only, &mut out);
        let text = String::from_utf8(out).expect("ASCII");
        // The date changes; check its shape, then drop it.
        let date_line = text
            .lines()
            .find(|line| line.starts_with("Date: "))
            .expect("Date");
        assert!(
            date_line.ends_with(" GMT")
                && date_line.len() == "Date: Sun, 06 Nov 1994 08:49:37 GMT".len()
        );
        text.replace(&format!("{date_line}\r\n"), "")
    }

    /// Every status the server sends has its own reason phrase (the 426 once said "Unknown").
    #[test]
    fn every_status_sent_has_a_reason_phrase() {
        let sent = [
            101, 200, 201, 204, 400, 404, 405, 408, 411, 413, 414, 426, 429, 431, 500, 501, 503,
            505,
        ];
        for status in sent {
            assert_ne!(reason_phrase(status), "Unknown", "{status}");
        }
    }

    #[test]
    fn writes_status_headers_and_body() {
        let cases = [
            (
                Response::new(200, CONTENT_TYPE_TEXT, b"ok".to_vec()),
                true,
                false,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\
                 Connection: keep-alive\r\nX-Content-Type-Options: nosniff\r\n\r\nok",
            ),
            (
                Response::new(200, CONTENT_TYPE_TEXT, b"ok".to_vec()),
                false,
                true,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\
                 Connection: close\r\nX-Content-Type-Options: nosniff\r\n\r\n",
            ),
            (
                Response::empty(204),
                true,
                false,
                "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\nX-Content-Type-Options: nosniff\r\n\r\n",
            ),
            (
                Response::error(405, "method_not_allowed", "use GET")
                    .with_header("Allow", "GET, HEAD"),
                true,
                false,
                "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\nContent-Length: 59\r\n\
                 Connection: keep-alive\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n\
                 Allow: GET, HEAD\r\n\r\n{\"error\":{\"code\":\"method_not_allowed\",\"message\":\"use GET\"}}",
            ),
            (
                Response::empty(200).with_header("X-Evil", "a\r\nSet-Cookie: b"),
                true,
                false,
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\
                 X-Content-Type-Options: nosniff\r\nX-Evil: a  Set-Cookie: b\r\n\r\n",
            ),
        ];
        for (response, keep_alive, head_only, expected) in cases {
            assert_eq!(written(&response, keep_alive, head_only), expected);
        }
    }

    #[test]
    fn formats_http_dates() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(u64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
    }
}
