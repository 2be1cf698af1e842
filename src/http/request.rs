//! HTTP/1.1 request parsing from a byte buffer that may hold a partial request, or several.
//!
//! `parse` does no IO: the connection loop appends what it reads to a buffer, calls
//! `parse`, and on `Ok(None)` reads more. The result never depends on how the bytes were
//! split across reads (tests feed every prefix), and no input makes it panic (a proptest
//! feeds arbitrary bytes). A malformed request is an `Err(Response)` that the caller sends
//! before closing the connection; the status says what was wrong:
//!
//! | status | when |
//! | --- | --- |
//! | 400 | syntax, a bad or conflicting `Content-Length`, a missing or repeated `Host` (HTTP/1.1) |
//! | 413 | `Content-Length` above `body_bytes_max` (known before the body arrives) |
//! | 414 | a request target longer than `target_bytes_max` |
//! | 431 | a head longer than `head_bytes_max`, or more than `headers_max` header fields |
//! | 501 | any `Transfer-Encoding`: chunked request bodies are not supported (our bodies are tiny JSON; send `Content-Length`) |
//! | 505 | an HTTP version other than 1.0 and 1.1 |
//!
//! `Expect: 100-continue` is not answered; clients such as curl send the body after a short
//! wait anyway, and only `POST /api/v1/addresses` takes a body, a few bytes long.

use httparse::Status;

use crate::http::response::Response;

/// Header fields parsed at most, whatever `Limits::headers_max` says, so the parser's
/// scratch space is a fixed array on the stack.
pub const HEADERS_CAPACITY: usize = 64;

/// Size limits for one request.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Request line plus header fields, including the blank line.
    pub head_bytes_max: usize,
    /// Header fields (capped at `HEADERS_CAPACITY`).
    pub headers_max: usize,
    /// Body, as announced by `Content-Length`.
    pub body_bytes_max: usize,
    /// Request target (path and query).
    pub target_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            head_bytes_max: 8 * 1024,
            headers_max: 32,
            body_bytes_max: 64 * 1024,
            target_bytes_max: 2 * 1024,
        }
    }
}

/// The request methods the API uses; anything else is `Other` (routing answers 405 or 404).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Delete,
    Patch,
    Other,
}

/// A complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The path as sent, not yet percent-decoded (routing decodes each segment, so an
    /// encoded `/` stays inside its segment).
    pub path: String,
    /// The query without `?`, not yet decoded; empty when absent.
    pub query: String,
    /// Whether the connection stays open after the response: HTTP/1.1 unless
    /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    pub body: Vec<u8>,
    /// Present when the request asks to switch to WebSocket: `Upgrade: websocket` and a
    /// `Connection` field with the `upgrade` token. Routing checks the rest (RFC 6455 4.2.1).
    pub websocket: Option<WebSocketUpgrade>,
    /// The credentials of `Authorization: Bearer <token>` (scheme in any case), as sent;
    /// `None` without that field or with another scheme. Routing checks it against the
    /// inbox (`token::InboxTokens`).
    pub bearer_token: Option<String>,
}

/// The WebSocket handshake fields of a request, as sent (checked by routing).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebSocketUpgrade {
    /// `Sec-WebSocket-Key`, empty when absent.
    pub key: String,
    /// `Sec-WebSocket-Version`, empty when absent.
    pub version: String,
}

/// Parses the request at the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, and `Ok(Some((request, consumed)))` when
/// a whole request (head and body) is there; the bytes after `consumed` belong to the next,
/// pipelined request.
///
/// # Errors
/// A response to send before closing the connection (see the module table). Once `buf`
/// holds more than `head_bytes_max` bytes without a complete head, the answer is 431, so a
/// caller that calls again after each read bounds its buffer.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(Request, usize)>, Response> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_CAPACITY];
    let n_headers_max = limits.headers_max.min(HEADERS_CAPACITY);
    let mut parsed = httparse::Request::new(&mut headers[..n_headers_max]);
    // The head is parsed from at most one byte past its limit, so what lies beyond the limit
    // never changes the verdict: a head that is not complete within it is a 431 however the
    // bytes arrived (found by fuzzing: a bad byte past the limit gave 400 or 505 when it
    // came in the same read, 431 when it came later).
    let head_window = &buf[..buf.len().min(limits.head_bytes_max + 1)];
    let head_bytes = match parsed.parse(head_window) {
        Ok(Status::Complete(head_bytes)) => head_bytes,
        Ok(Status::Partial) if buf.len() > limits.head_bytes_max => {
            return Err(head_too_large(limits));
        }
        Ok(Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Response::error(
                431,
                "headers_too_large",
                &format!("more than {n_headers_max} header fields"),
            ));
        }
        Err(httparse::Error::Version) => {
            return Err(Response::error(
                505,
                "version_not_supported",
                "only HTTP/1.0 and HTTP/1.1 are supported",
            ));
        }
        Err(error) => return Err(bad_request(&format!("malformed request: {error}"))),
    };
    if head_bytes > limits.head_bytes_max {
        return Err(head_too_large(limits));
    }
    // A complete head always has these; httparse only leaves them out while partial.
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(bad_request("malformed request line"));
    };
    if target.len() > limits.target_bytes_max {
        return Err(Response::error(
            414,
            "uri_too_long",
            &format!(
                "request target longer than {} bytes",
                limits.target_bytes_max
            ),
        ));
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        _ => Method::Other,
    };

    let mut content_length: Option<u64> = None;
    let mut n_hosts = 0;
    let mut connection_close = false;
    let mut connection_keep_alive = false;
    let mut connection_upgrade = false;
    let mut upgrade_websocket = false;
    let mut websocket = WebSocketUpgrade::default();
    let mut n_authorizations = 0;
    let mut bearer_token = None;
    for header in parsed.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = parse_content_length(header.value)
                .ok_or_else(|| bad_request("bad Content-Length"))?;
            if content_length.is_some_and(|seen| seen != value) {
                return Err(bad_request("conflicting Content-Length fields"));
            }
            content_length = Some(value);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Response::error(
                501,
                "not_implemented",
                "Transfer-Encoding is not supported in requests; send Content-Length",
            ));
        } else if header.name.eq_ignore_ascii_case("host") {
            n_hosts += 1;
        } else if header.name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                connection_close |= token.eq_ignore_ascii_case(b"close");
                connection_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                connection_upgrade |= token.eq_ignore_ascii_case(b"upgrade");
            }
        } else if header.name.eq_ignore_ascii_case("upgrade") {
            upgrade_websocket |= header
                .value
                .split(|&b| b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"websocket"));
        } else if header.name.eq_ignore_ascii_case("sec-websocket-key") {
            websocket.key = String::from_utf8_lossy(header.value.trim_ascii()).into_owned();
        } else if header.name.eq_ignore_ascii_case("sec-websocket-version") {
            websocket.version = String::from_utf8_lossy(header.value.trim_ascii()).into_owned();
        } else if header.name.eq_ignore_ascii_case("authorization") {
            n_authorizations += 1;
            bearer_token = bearer_credentials(header.value);
        }
    }
    // Two sets of credentials would leave it to chance which one is checked.
    if n_authorizations > 1 {
        return Err(bad_request("more than one Authorization header"));
    }
    // RFC 9112 section 3.2: exactly one Host in HTTP/1.1.
    if version == 1 && n_hosts != 1 {
        return Err(bad_request(
            "an HTTP/1.1 request needs exactly one Host header",
        ));
    }
    let keep_alive = if version == 1 {
        !connection_close
    } else {
        connection_keep_alive && !connection_close
    };

    let body_bytes = content_length.unwrap_or(0);
    if body_bytes > limits.body_bytes_max as u64 {
        return Err(Response::error(
            413,
            "payload_too_large",
            &format!("request body larger than {} bytes", limits.body_bytes_max),
        ));
    }
    let request_bytes = head_bytes + body_bytes as usize;
    let Some(body) = buf.get(head_bytes..request_bytes) else {
        return Ok(None);
    };

    let (path, query) =
        split_target(target).ok_or_else(|| bad_request("request target must be a path"))?;
    let request = Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
        keep_alive,
        body: body.to_vec(),
        websocket: (connection_upgrade && upgrade_websocket).then_some(websocket),
        bearer_token,
    };
    Ok(Some((request, request_bytes)))
}

/// The token of an `Authorization` value `Bearer <token>` (RFC 6750 section 2.1; the
/// scheme is case-insensitive, RFC 9110 section 11.1); None for another scheme or no token.
fn bearer_credentials(value: &[u8]) -> Option<String> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim_start();
    (!token.is_empty()).then(|| token.to_string())
}

fn bad_request(message: &str) -> Response {
    Response::error(400, "bad_request", message)
}

fn head_too_large(limits: &Limits) -> Response {
    Response::error(
        431,
        "headers_too_large",
        &format!("request head longer than {} bytes", limits.head_bytes_max),
    )
}

/// Digits only (no sign, no list): RFC 9110 section 8.6 allows `n, n` but nobody needs it,
/// and being strict here is what keeps request smuggling out.
fn parse_content_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Splits an origin-form target (`/path?query`) or an absolute-form one
/// (`http://host/path?query`, which proxies send) into path and query.
fn split_target(target: &str) -> Option<(&str, &str)> {
    let origin_form = if target.starts_with('/') {
        target
    } else {
        let (scheme, rest) = target.split_once("://")?;
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return None;
        }
        match rest.find(['/', '?']) {
            Some(path_idx) if rest[path_idx..].starts_with('/') => &rest[path_idx..],
            // `http://host?query` has an empty path, which means `/`.
            Some(_) | None => "/",
        }
    };
    // Clients do not send fragments, but if one does, it is not part of the path or query.
    let origin_form = origin_form
        .split_once('#')
        .map_or(origin_form, |(before, _)| before);
    let (path, query) = origin_form.split_once('?').unwrap_or((origin_form, ""));
    Some((path, query))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn request(method: Method, path: &str, query: &str, keep_alive: bool, body: &[u8]) -> Request {
        Request {
            method,
            path: path.to_string(),
            query: query.to_string(),
            keep_alive,
            body: body.to_vec(),
            websocket: None,
            bearer_token: None,
        }
    }

    /// Parses `input` whole, and checks that every shorter prefix needs more bytes or gives
    /// the same error, as a caller reading one byte at a time would see.
    fn parse_all_splits(input: &[u8], limits: &Limits) -> Result<(Request, usize), u16> {
        let whole = parse(input, limits);
        for prefix_len in 0..input.len() {
            match (parse(&input[..prefix_len], limits), &whole) {
                (Ok(None), _) => {}
                (Err(early), Err(late)) => {
                    assert_eq!(early.status, late.status, "prefix {prefix_len}")
                }
                (early, _) => panic!("prefix {prefix_len} of {input:?} gave {early:?}"),
            }
        }
        match whole {
            Ok(Some(parsed)) => Ok(parsed),
            Ok(None) => Err(0),
            Err(response) => Err(response.status),
        }
    }

    /// The upgrade is recognised only with both `Upgrade: websocket` and the `upgrade`
    /// token in `Connection`, in any case and among other tokens.
    #[test]
    fn recognises_websocket_upgrades() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let upgrade = Some(WebSocketUpgrade {
            key: key.into(),
            version: "13".into(),
        });
        let cases = [
            (
                "Upgrade: websocket\r\nConnection: Upgrade\r\n",
                upgrade.clone(),
            ),
            (
                "upgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\n",
                upgrade.clone(),
            ),
            (
                "Upgrade: h2c, websocket\r\nConnection: Upgrade\r\n",
                upgrade,
            ),
            ("Upgrade: websocket\r\n", None),
            ("Connection: Upgrade\r\n", None),
            ("Upgrade: h2c\r\nConnection: Upgrade\r\n", None),
        ];
        for (fields, expected) in cases {
            let input = format!(
                "GET /ws HTTP/1.1\r\nHost: x\r\n{fields}Sec-WebSocket-Key: {key}\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            );
            let (request, _) = parse(input.as_bytes(), &Limits::default())
                .expect("valid")
                .expect("complete");
            assert_eq!(request.websocket, expected, "{fields:?}");
        }
    }

    /// `Authorization: Bearer` in any case gives its token; other schemes give none; two
    /// Authorization fields are a 400, whatever they hold.
    #[test]
    fn reads_bearer_tokens() {
        let cases: [(&str, Result<Option<&str>, u16>); 8] = [
            ("Authorization: Bearer abc_-9\r\n", Ok(Some("abc_-9"))),
            ("authorization: bEARER   abc\r\n", Ok(Some("abc"))),
            ("Authorization: Basic YTpi\r\n", Ok(None)),
            ("Authorization: Bearer\r\n", Ok(None)),
            ("Authorization: Bearer    \r\n", Ok(None)),
            ("Authorization: Bearerabc\r\n", Ok(None)),
            ("", Ok(None)),
            (
                "Authorization: Bearer a\r\nAuthorization: Bearer b\r\n",
                Err(400),
            ),
        ];
        for (fields, expected) in cases {
            let input = format!("GET /api/v1/inboxes/a@x.test HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
            let parsed = parse_all_splits(input.as_bytes(), &Limits::default())
                .map(|(request, _)| request.bearer_token);
            assert_eq!(
                parsed,
                expected.map(|token| token.map(String::from)),
                "{fields:?}"
            );
        }
    }

    #[test]
    fn parses_requests_at_every_split() {
        let cases: &[(&[u8], Result<Request, u16>)] = &[
            (
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                Ok(request(Method::Get, "/", "", true, b"")),
            ),
            (
                b"GET /api/v1/inboxes/a%40x.test?limit=5&wait=1 HTTP/1.1\r\nHost: x\r\n\r\n",
                Ok(request(
                    Method::Get,
                    "/api/v1/inboxes/a%40x.test",
                    "limit=5&wait=1",
                    true,
                    b"",
                )),
            ),
            (
                b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                Ok(request(Method::Head, "/healthz", "", false, b"")),
            ),
            (
                b"GET / HTTP/1.0\r\n\r\n",
                Ok(request(Method::Get, "/", "", false, b"")),
            ),
            (
                b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
                Ok(request(Method::Get, "/", "", true, b"")),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade, close\r\n\r\n",
                Ok(request(Method::Get, "/", "", false, b"")),
            ),
            (
                b"POST /api/v1/addresses HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
                Ok(request(Method::Post, "/api/v1/addresses", "", true, b"{}")),
            ),
            (
                b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\n{}",
                Ok(request(Method::Post, "/a", "", true, b"{}")),
            ),
            (
                b"DELETE /a HTTP/1.1\r\nHost: x\r\n\r\n",
                Ok(request(Method::Delete, "/a", "", true, b"")),
            ),
            (
                b"PUT /a HTTP/1.1\r\nHost: x\r\n\r\n",
                Ok(request(Method::Other, "/a", "", true, b"")),
            ),
            (
                b"PATCH /a HTTP/1.1\r\nHost: x\r\n\r\n",
                Ok(request(Method::Patch, "/a", "", true, b"")),
            ),
            (
                b"GET http://x.test/a?b#c HTTP/1.1\r\nHost: x\r\n\r\n",
                Ok(request(Method::Get, "/a", "b", true, b"")),
            ),
            (
                b"GET http://x.test HTTP/1.1\r\nHost: x\r\n\r\n",
                Ok(request(Method::Get, "/", "", true, b"")),
            ),
            (
                b"GET /a?b#c HTTP/1.1\r\nHost: x\r\n\r\n",
                Ok(request(Method::Get, "/a", "b", true, b"")),
            ),
            (
                b"GET /a#c?d HTTP/1.1\r\nHost: x\r\n\r\n",
                Ok(request(Method::Get, "/a", "", true, b"")),
            ),
            (b"GET / HTTP/1.1\r\n\r\n", Err(400)),
            (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", Err(400)),
            (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", Err(400)),
            (b"GET ftp://x/ HTTP/1.1\r\nHost: x\r\n\r\n", Err(400)),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                Err(400),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                Err(400),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                Err(400),
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n",
                Err(413),
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                Err(501),
            ),
            (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", Err(505)),
            (b"GET / FTP/1.1\r\n\r\n", Err(505)),
            (b"G\x00T / HTTP/1.1\r\n\r\n", Err(400)),
            (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", Err(400)),
        ];
        let limits = Limits::default();
        for (input, expected) in cases {
            let got = parse_all_splits(input, &limits);
            match (got, expected) {
                (Ok((got, consumed)), Ok(expected)) => {
                    assert_eq!(&got, expected, "{:?}", String::from_utf8_lossy(input));
                    assert_eq!(consumed, input.len());
                }
                (Err(status), Err(expected_status)) => {
                    assert_eq!(
                        status,
                        *expected_status,
                        "{:?}",
                        String::from_utf8_lossy(input)
                    );
                }
                (got, _) => panic!("{:?}: got {got:?}", String::from_utf8_lossy(input)),
            }
        }
    }

    #[test]
    fn parses_pipelined_requests_one_at_a_time() {
        let stream = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
            POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
            GET /c?d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /partial";
        let expected = [
            request(Method::Get, "/a", "", true, b""),
            request(Method::Post, "/b", "", true, b"abc"),
            request(Method::Get, "/c", "d", false, b""),
        ];
        let limits = Limits::default();
        let mut rest: &[u8] = stream;
        for expected in expected {
            let (got, consumed) = parse(rest, &limits).expect("valid").expect("complete");
            assert_eq!(got, expected);
            rest = &rest[consumed..];
        }
        assert_eq!(rest, b"GET /partial");
        assert_eq!(parse(rest, &limits), Ok(None));
    }

    #[test]
    fn enforces_each_limit() {
        let limits = Limits {
            head_bytes_max: 64,
            headers_max: 2,
            body_bytes_max: 4,
            target_bytes_max: 16,
        };
        let cases: &[(&[u8], Option<u16>)] = &[
            (b"GET /0123456789abcde HTTP/1.1\r\nHost: x\r\n\r\n", None),
            (
                b"GET /0123456789abcdef HTTP/1.1\r\nHost: x\r\n\r\n",
                Some(414),
            ),
            (b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\n\r\n", None),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n",
                Some(431),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nA: 01234567890123456789012345678901\r\n\r\n",
                None,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nA: 012345678901234567890123456789012\r\n\r\n",
                Some(431),
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd",
                None,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde",
                Some(413),
            ),
        ];
        for (input, expected) in cases {
            let got = parse_all_splits(input, &limits).err();
            assert_eq!(got, *expected, "{:?}", String::from_utf8_lossy(input));
        }
        // A head that never ends is refused once the buffer passes the limit.
        let endless = [b"GET / HTTP/1.1\r\nA: ".as_slice(), &[b'a'; 100]].concat();
        assert_eq!(parse(&endless[..64], &limits), Ok(None));
        assert_eq!(
            parse(&endless[..65], &limits).map_err(|response| response.status),
            Err(431)
        );
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&input, &Limits::default());
        }

        #[test]
        fn never_panics_on_request_shaped_bytes(
            method in "(GET|HEAD|POST|DELETE|PUT|[A-Z]{0,4})",
            target in "[ -~]{0,40}",
            headers in proptest::collection::vec("[ -~]{0,30}", 0..6),
            tail in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            let input = format!("{method} {target} HTTP/1.1\r\n{}\r\n", headers.join("\r\n") + "\r\n");
            let input = [input.as_bytes(), &tail].concat();
            let limits = Limits { head_bytes_max: 120, headers_max: 4, body_bytes_max: 8, target_bytes_max: 30 };
            if let Ok(Some((_, consumed))) = parse(&input, &limits) {
                prop_assert!(consumed <= input.len());
            }
        }
    }
}
