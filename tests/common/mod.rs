//! Harness shared by the black-box integration tests: it starts the real `mayfly`
//! binary on 127.0.0.1 with free ports, and talks to it over real sockets with a tiny
//! HTTP/1.1 client and a raw SMTP client.
//!
//! Everything here is bounded in time: the ready line is awaited for at most
//! `READY_TIMEOUT`, every socket has read and write timeouts, and every polling loop has
//! a deadline, so a broken server fails a test instead of hanging it.
//! The server's stderr is captured and printed when a test panics, because that log is
//! usually what explains the failure.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long the server may take to print its ready line (a debug build on a busy
/// 2-core machine that is compiling other things can be slow).
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Read/write timeout of every test socket: no single reply may take longer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a delivered message may take to show up over HTTP after its 250.
pub const VISIBLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two polls of a condition that has a deadline.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Longest server stderr printed when a test fails (the tail is kept).
const STDERR_SHOWN_BYTES_MAX: usize = 64 * 1024;
/// Largest HTTP response head the client accepts.
const HTTP_HEAD_BYTES_MAX: usize = 64 * 1024;
/// Largest HTTP response body the client accepts.
const HTTP_BODY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// What `Smtp::try_read_reply` says when the server closed between two replies.
pub const CLOSED_CLEANLY: &str = "connection closed by the server";
/// Largest SMTP reply (all lines) the client accepts.
const SMTP_REPLY_BYTES_MAX: usize = 64 * 1024;

/// Flags given to every server unless the test passes the same flag itself.
/// One core and a small memory budget keep parallel tests light on a 2-core machine;
/// the message size has to fit into memory / cores for the server to start.
const DEFAULT_FLAGS: &[(&str, &str)] = &[
    ("--cores", "1"),
    ("--max-memory", "32MiB"),
    ("--max-message-size", "1MiB"),
    ("--shutdown-grace", "2s"),
];

/// Where the binary under test is: `MAYFLY_BIN` at run time wins (to test a release
/// build or to run these files from another crate), then Cargo's `CARGO_BIN_EXE_mayfly`.
pub fn mayfly_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("MAYFLY_BIN") {
        return PathBuf::from(path);
    }
    match option_env!("CARGO_BIN_EXE_mayfly") {
        Some(path) => PathBuf::from(path),
        None => panic!("set MAYFLY_BIN to the mayfly binary (CARGO_BIN_EXE_mayfly is not set)"),
    }
}

/// The flags a test passes plus the defaults it did not override.
fn flags_with_defaults(extra_args: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--smtp".into(),
        "127.0.0.1:0".into(),
        "--http".into(),
        "127.0.0.1:0".into(),
    ];
    for (flag, value) in DEFAULT_FLAGS {
        if !extra_args.contains(flag) {
            args.push((*flag).into());
            args.push((*value).into());
        }
    }
    args.extend(extra_args.iter().map(|arg| arg.to_string()));
    args
}

/// A running `mayfly` process. Dropping it kills the process (SIGKILL) unless the test
/// already waited for it to exit, and prints its stderr if the test is failing.
pub struct Server {
    child: Child,
    /// SMTP listener address from the ready line.
    pub smtp_addr: SocketAddr,
    /// HTTP listener address from the ready line.
    pub http_addr: SocketAddr,
    /// Everything the server wrote to stderr so far (a thread keeps appending).
    stderr: Arc<Mutex<Vec<u8>>>,
    /// Stdout lines after the ready line (the contract says there are none).
    stdout_extra: Arc<Mutex<Vec<String>>>,
    /// Set once the process was reaped.
    exit_status: Option<ExitStatus>,
    /// The exact ready line, without its newline.
    pub ready_line: String,
}

impl Server {
    /// Starts the server with `extra_args` (plus `--smtp`/`--http` on port 0 and the
    /// harness defaults) and waits for its ready line.
    ///
    /// # Panics
    /// If the binary cannot be started, exits before it is ready, is not ready within
    /// `READY_TIMEOUT`, or prints a ready line that does not follow the contract.
    pub fn start(extra_args: &[&str]) -> Server {
        Server::start_parsing(extra_args, parse_ready_line)
    }

    /// As `start`, with the ready line checked by `parse` (which returns smtp and http).
    fn start_parsing(
        extra_args: &[&str],
        parse: fn(&str) -> Result<(SocketAddr, SocketAddr), String>,
    ) -> Server {
        let bin = mayfly_bin();
        let args = flags_with_defaults(extra_args);
        let mut child = Command::new(&bin)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", bin.display()));

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_pipe = child.stderr.take().expect("stderr is piped");
        let stderr_sink = Arc::clone(&stderr);
        thread::spawn(move || pump_stderr(stderr_pipe, &stderr_sink));

        let stdout_extra = Arc::new(Mutex::new(Vec::new()));
        let stdout_pipe = child.stdout.take().expect("stdout is piped");
        let stdout_sink = Arc::clone(&stdout_extra);
        let (ready_sender, ready_receiver) = mpsc::channel::<String>();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout_pipe).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = ready_sender.send(line);
            }
            for line in lines.map_while(Result::ok) {
                stdout_sink.lock().expect("stdout lock").push(line);
            }
        });

        let ready_line = match ready_receiver.recv_timeout(READY_TIMEOUT) {
            Ok(line) => line,
            Err(error) => {
                let _ = child.kill();
                let status = child.wait();
                thread::sleep(Duration::from_millis(100)); // Let the stderr thread drain.
                panic!(
                    "mayfly {args:?} printed no ready line ({error:?}); exit: {status:?}\n--- stderr ---\n{}",
                    tail_text(&stderr.lock().expect("stderr lock"))
                );
            }
        };
        let (smtp_addr, http_addr) = match parse(&ready_line) {
            Ok(addrs) => addrs,
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("bad ready line {ready_line:?}: {why}");
            }
        };
        Server {
            child,
            smtp_addr,
            http_addr,
            stderr,
            stdout_extra,
            exit_status: None,
            ready_line,
        }
    }

    /// The SMTP port (for external clients that take a port number).
    pub fn smtp_port(&self) -> u16 {
        self.smtp_addr.port()
    }

    /// The process id, for signals.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits in i32")
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the server.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child,
        // which has not been reaped yet (we reap only in `wait_exit`/`Drop`), so the
        // pid cannot have been reused by another process.
        let result = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(result, 0, "kill({}, {signal}) failed", self.pid());
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exit_status {
            return Some(status);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exit_status = Some(status);
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(POLL_INTERVAL),
                Ok(None) => return None,
                Err(error) => panic!("waiting for mayfly: {error}"),
            }
        }
    }

    /// Everything the server wrote to stderr so far, lossily decoded.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("stderr lock")).into_owned()
    }

    /// Stdout lines printed after the ready line.
    pub fn stdout_extra_lines(&self) -> Vec<String> {
        self.stdout_extra.lock().expect("stdout lock").clone()
    }

    /// A new SMTP connection whose `220` greeting was read and checked.
    pub fn smtp(&self) -> Smtp {
        let mut smtp = Smtp::connect(self.smtp_addr);
        let greeting = smtp.read_reply();
        greeting.assert_code(220);
        smtp
    }

    /// A new SMTP connection after the greeting and a successful `EHLO`.
    pub fn smtp_ehlo(&self) -> Smtp {
        let mut smtp = self.smtp();
        smtp.cmd("EHLO client.test").assert_code(250);
        smtp
    }

    /// One HTTP request on a fresh connection (`Connection: close`).
    pub fn http(&self, method: &str, path: &str, body: Option<&[u8]>) -> Response {
        let mut conn = HttpConn::connect(self.http_addr);
        conn.request_with(method, path, &[("Connection", "close")], body)
    }

    /// `GET path` on a fresh connection.
    pub fn get(&self, path: &str) -> Response {
        self.http("GET", path, None)
    }

    /// `DELETE path` on a fresh connection.
    pub fn delete(&self, path: &str) -> Response {
        self.http("DELETE", path, None)
    }

    /// `POST path` with a JSON body on a fresh connection.
    pub fn post_json(&self, path: &str, body: &str) -> Response {
        let mut conn = HttpConn::connect(self.http_addr);
        conn.request_with(
            "POST",
            path,
            &[
                ("Connection", "close"),
                ("Content-Type", "application/json"),
            ],
            Some(body.as_bytes()),
        )
    }

    /// The inbox listing of `address` (percent-encoded here); asserts a 200 JSON answer.
    pub fn inbox(&self, address: &str) -> Value {
        self.inbox_query(address, "")
    }

    /// The inbox listing with a query string such as `limit=2&after=...` (may be empty).
    pub fn inbox_query(&self, address: &str, query: &str) -> Value {
        let mut path = inbox_path(address);
        if !query.is_empty() {
            path.push('?');
            path.push_str(query);
        }
        let response = self.get(&path);
        assert_eq!(response.status, 200, "GET {path}: {}", response.describe());
        response.assert_json_content_type();
        response.json()
    }

    /// Polls the inbox until it holds `total` messages; returns that listing.
    ///
    /// # Panics
    /// If it does not reach `total` within `VISIBLE_TIMEOUT`.
    pub fn wait_inbox_total(&self, address: &str, total: u64) -> Value {
        let deadline = Instant::now() + VISIBLE_TIMEOUT;
        loop {
            let inbox = self.inbox(address);
            if inbox["total"].as_u64() == Some(total) {
                return inbox;
            }
            assert!(
                Instant::now() < deadline,
                "inbox {address} never reached total {total}; last listing: {inbox}"
            );
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// The stored bytes of message `id` in `address`; asserts 200 and `message/rfc822`.
    pub fn raw(&self, address: &str, id: &str) -> Vec<u8> {
        let path = format!("{}/messages/{id}/raw", inbox_path(address));
        let response = self.get(&path);
        assert_eq!(response.status, 200, "GET {path}: {}", response.describe());
        let content_type = response.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("message/rfc822"),
            "GET {path}: Content-Type {content_type:?}, want message/rfc822"
        );
        response.body
    }

    /// Waits until `address` holds exactly one message and checks that it is `expected`
    /// (the bytes the client sent, after dot-unstuffing) behind our `Received:` header.
    /// Returns the message's summary.
    pub fn assert_single_stored(&self, address: &str, expected: &[u8]) -> Value {
        let inbox = self.wait_inbox_total(address, 1);
        let summary = inbox["messages"][0].clone();
        let id = summary["id"].as_str().expect("summary has a string id");
        let raw = self.raw(address, id);
        assert_bytes_eq(strip_received(&raw), expected, address);
        summary
    }

    /// The `/metrics` text; asserts 200.
    pub fn metrics(&self) -> String {
        let response = self.get("/metrics");
        assert_eq!(
            response.status,
            200,
            "GET /metrics: {}",
            response.describe()
        );
        response.text()
    }

    /// The sum of every series of metric `name` (all shards, all labels) in `/metrics`.
    pub fn metric_total(&self, name: &str) -> u64 {
        self.metrics()
            .lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// Waits until metric `name` sums to `value` (e.g. until N long polls are parked:
    /// `mayfly_http_long_polls_waiting`), so tests order events on what the server says,
    /// never on a sleep. Panics after `VISIBLE_TIMEOUT`.
    pub fn wait_metric_total(&self, name: &str, value: u64) {
        let mut last = 0;
        let reached = eventually(VISIBLE_TIMEOUT, || {
            last = self.metric_total(name);
            last == value
        });
        assert!(reached, "{name} stayed at {last}, expected {value}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exit_status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            // Give the pump thread a moment to collect the last lines the server wrote.
            thread::sleep(Duration::from_millis(100));
            eprintln!(
                "--- mayfly stderr (ready line {:?}) ---\n{}\n--- end of mayfly stderr ---",
                self.ready_line,
                tail_text(
                    &self
                        .stderr
                        .lock()
                        .unwrap_or_else(|poison| poison.into_inner())
                )
            );
        }
    }
}

fn pump_stderr(mut pipe: impl Read, sink: &Mutex<Vec<u8>>) {
    let mut chunk = [0u8; 4096];
    loop {
        match pipe.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => sink
                .lock()
                .expect("stderr lock")
                .extend_from_slice(&chunk[..n]),
        }
    }
}

fn tail_text(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_SHOWN_BYTES_MAX);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Parses `mayfly listening smtp=127.0.0.1:PORT http=127.0.0.1:PORT` strictly.
pub fn parse_ready_line(line: &str) -> Result<(SocketAddr, SocketAddr), String> {
    let rest = line
        .strip_prefix("mayfly listening smtp=")
        .ok_or("does not start with `mayfly listening smtp=`")?;
    let (smtp, http) = rest.split_once(" http=").ok_or("no ` http=`")?;
    let smtp: SocketAddr = smtp.parse().map_err(|e| format!("smtp address: {e}"))?;
    let http: SocketAddr = http.parse().map_err(|e| format!("http address: {e}"))?;
    if smtp.port() == 0 || http.port() == 0 {
        return Err("port 0 in ready line".into());
    }
    Ok((smtp, http))
}

/// Runs the binary to completion with exactly `args` (no harness defaults), bounded by
/// `timeout`; returns (status, stdout, stderr). Kills it and panics if it runs too long.
pub fn run_to_exit(args: &[&str], timeout: Duration) -> (ExitStatus, String, String) {
    let bin = mayfly_bin();
    let mut child = Command::new(&bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {}: {error}", bin.display()));
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let stdout_pipe = child.stdout.take().expect("stdout is piped");
    let stderr_pipe = child.stderr.take().expect("stderr is piped");
    let (out_sink, err_sink) = (Arc::clone(&stdout), Arc::clone(&stderr));
    let out_thread = thread::spawn(move || pump_stderr(stdout_pipe, &out_sink));
    let err_thread = thread::spawn(move || pump_stderr(stderr_pipe, &err_sink));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(status) => break status,
            None if Instant::now() < deadline => thread::sleep(POLL_INTERVAL),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "mayfly {args:?} still running after {timeout:?}; stderr:\n{}",
                    tail_text(&stderr.lock().expect("stderr lock"))
                );
            }
        }
    };
    let _ = out_thread.join();
    let _ = err_thread.join();
    let stdout = String::from_utf8_lossy(&stdout.lock().expect("stdout lock")).into_owned();
    let stderr = String::from_utf8_lossy(&stderr.lock().expect("stderr lock")).into_owned();
    (status, stdout, stderr)
}

// ---------------------------------------------------------------------------------------
// HTTP

/// Percent-encodes everything but unreserved characters (RFC 3986), so `@` becomes `%40`.
pub fn percent_encode(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// `/api/v1/inboxes/{address}` with the address percent-encoded.
pub fn inbox_path(address: &str) -> String {
    format!("/api/v1/inboxes/{}", percent_encode(address))
}

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names as sent (compare case-insensitively with `header`).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("body is not JSON ({error}): {}", self.describe()))
    }

    /// Status and a prefix of the body, for assertion messages.
    pub fn describe(&self) -> String {
        let text = self.text();
        let shown: String = text.chars().take(2000).collect();
        format!(
            "status {} headers {:?} body {shown:?}",
            self.status, self.headers
        )
    }

    /// Asserts `Content-Type: application/json` (parameters such as charset allowed).
    pub fn assert_json_content_type(&self) {
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type
                .to_ascii_lowercase()
                .starts_with("application/json"),
            "Content-Type {content_type:?}, want application/json: {}",
            self.describe()
        );
    }

    /// Asserts the contract's error shape: `status`, JSON content type, and
    /// `{"error": {"code": code, "message": <non-empty string>}}`.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.describe());
        self.assert_json_content_type();
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "{}", self.describe());
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty(),
            "error without message: {}",
            self.describe()
        );
    }
}

/// A client connection that can carry several requests (keep-alive).
pub struct HttpConn {
    stream: TcpStream,
    /// Bytes read past the end of the previous response.
    buf: Vec<u8>,
}

impl HttpConn {
    /// Connects with `IO_TIMEOUT` read and write timeouts.
    pub fn connect(addr: SocketAddr) -> HttpConn {
        HttpConn {
            stream: connect_with_timeouts(addr),
            buf: Vec::new(),
        }
    }

    /// Changes the read timeout (long polls need more than `IO_TIMEOUT`).
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("set_read_timeout");
    }

    /// Sends bytes as they are (for malformed requests).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write HTTP request");
    }

    /// A keep-alive request with no extra headers.
    pub fn request(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> Response {
        self.request_with(method, path, &[], body)
    }

    /// Sends a request with `headers` (Host and Content-Length are added) and reads the response.
    pub fn request_with(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        if let Some(body) = body {
            bytes.extend_from_slice(body);
        }
        self.send_raw(&bytes);
        self.read_response(method == "HEAD")
    }

    /// Reads one response; panics on timeout, on a malformed response, or on EOF before one.
    pub fn read_response(&mut self, head_only: bool) -> Response {
        self.try_read_response(head_only)
            .unwrap_or_else(|why| panic!("reading HTTP response: {why}"))
    }

    /// Reads one response, or says why there is none.
    pub fn try_read_response(&mut self, head_only: bool) -> Result<Response, String> {
        let head_end = loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                break pos;
            }
            if self.buf.len() > HTTP_HEAD_BYTES_MAX {
                return Err("response head too large".into());
            }
            if self.fill()? == 0 {
                return Err(format!(
                    "connection closed before a full response head; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") {
            return Err(format!("bad status line {status_line:?}"));
        }
        let status: u16 = parts
            .next()
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("bad header line {line:?}"))?;
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
            return Ok(response);
        }
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|value| value.to_ascii_lowercase().contains("chunked"));
        if chunked {
            response.body = self.read_chunked()?;
        } else if let Some(length) = response.header("content-length") {
            let length: usize = length
                .parse()
                .map_err(|_| format!("bad Content-Length {length:?}"))?;
            if length > HTTP_BODY_BYTES_MAX {
                return Err(format!("Content-Length {length} too large"));
            }
            response.body = self.read_exact_body(length)?;
        } else {
            // No length: the body runs to the end of the connection.
            while self.fill()? > 0 {
                if self.buf.len() > HTTP_BODY_BYTES_MAX {
                    return Err("body too large".into());
                }
            }
            response.body = std::mem::take(&mut self.buf);
        }
        Ok(response)
    }

    /// True if the server closed the connection (EOF) within `timeout`.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        wait_eof(&mut self.stream, &mut self.buf, timeout)
    }

    fn read_exact_body(&mut self, length: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < length {
            if self.fill()? == 0 {
                return Err(format!(
                    "connection closed after {} of {length} body bytes",
                    self.buf.len()
                ));
            }
        }
        Ok(self.buf.drain(..length).collect())
    }

    fn read_chunked(&mut self) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(pos) = find(&self.buf, b"\r\n") {
                    break pos;
                }
                if self.fill()? == 0 {
                    return Err("connection closed inside chunked body".into());
                }
            };
            let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size_hex = size_text.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| format!("bad chunk size {size_text:?}"))?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // Skip trailers up to the empty line.
                loop {
                    if let Some(pos) = find(&self.buf, b"\r\n") {
                        let empty = pos == 0;
                        self.buf.drain(..pos + 2);
                        if empty {
                            return Ok(body);
                        }
                        continue;
                    }
                    if self.fill()? == 0 {
                        return Err("connection closed in chunked trailer".into());
                    }
                }
            }
            if body.len() + size > HTTP_BODY_BYTES_MAX {
                return Err("chunked body too large".into());
            }
            let chunk = self.read_exact_body(size + 2)?;
            if !chunk.ends_with(b"\r\n") {
                return Err("chunk not followed by CRLF".into());
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }

    /// Reads once into `buf`; returns the number of bytes read (0 = EOF).
    fn fill(&mut self) -> Result<usize, String> {
        fill_from(&mut self.stream, &mut self.buf)
    }
}

/// A TCP connection to `addr` from source address `source`, with `IO_TIMEOUT`s.
pub fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .expect("socket");
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .unwrap_or_else(|error| panic!("bind {source}: {error}"));
    socket
        .connect_timeout(&addr.into(), IO_TIMEOUT)
        .unwrap_or_else(|error| panic!("connect to {addr} from {source}: {error}"));
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set_read_timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("set_write_timeout");
    stream.set_nodelay(true).expect("set_nodelay");
    stream
}

fn connect_with_timeouts(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|error| panic!("connect to {addr}: {error}"));
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set_read_timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("set_write_timeout");
    stream.set_nodelay(true).expect("set_nodelay");
    stream
}

fn fill_from(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize, String> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            // A reset is how some servers close; for the reader it is an end of stream.
            Err(error) if error.kind() == ErrorKind::ConnectionReset => return Ok(0),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!(
                    "timed out waiting for the server; unparsed input so far: {}",
                    lossy(buf)
                ));
            }
            Err(error) => return Err(format!("read failed ({error}) after {}", lossy(buf))),
        }
    }
}

/// Reads until EOF for at most `timeout`, keeping what arrives in `buf`. True on EOF.
fn wait_eof(stream: &mut TcpStream, buf: &mut Vec<u8>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let original = stream.read_timeout().ok().flatten();
    let mut closed = false;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if left.is_zero() {
            break;
        }
        let _ = stream.set_read_timeout(Some(left));
        match fill_from(stream, buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    let _ = stream.set_read_timeout(original);
    closed
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn lossy(bytes: &[u8]) -> String {
    let shown = &bytes[bytes.len().saturating_sub(2000)..];
    format!("{:?}", String::from_utf8_lossy(shown))
}

// ---------------------------------------------------------------------------------------
// SMTP

/// One SMTP reply: its code and its lines (each line as received, without CRLF).
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// All lines joined with `\n`.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// Asserts the reply code.
    pub fn assert_code(&self, code: u16) {
        assert_eq!(self.code, code, "unexpected SMTP reply:\n{}", self.text());
    }

    /// Asserts that the final line starts with `prefix`, e.g. `"552 5.3.4"`.
    pub fn assert_starts(&self, prefix: &str) {
        let last = self.lines.last().map(String::as_str).unwrap_or_default();
        assert!(
            last.starts_with(prefix),
            "want a reply starting {prefix:?}, got:\n{}",
            self.text()
        );
    }

    /// Whether the final line starts with `prefix`, e.g. `"503 5.5.1"` (for a multi-line
    /// reply only the last line has a space after the code).
    pub fn is(&self, prefix: &str) -> bool {
        self.lines
            .last()
            .is_some_and(|last| last.starts_with(prefix))
    }
}

/// A raw SMTP client connection.
pub struct Smtp {
    stream: TcpStream,
    /// Bytes read past the end of the previous reply.
    buf: Vec<u8>,
}

impl Smtp {
    /// Connects with `IO_TIMEOUT` read and write timeouts; reads nothing yet.
    pub fn connect(addr: SocketAddr) -> Smtp {
        Smtp {
            stream: connect_with_timeouts(addr),
            buf: Vec::new(),
        }
    }

    /// Connects from `source` (any address of 127.0.0.0/8 works on Linux loopback), so
    /// tests can play several clients with per-address limits.
    pub fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> Smtp {
        Smtp {
            stream: connect_from(addr, source),
            buf: Vec::new(),
        }
    }

    /// The connection itself, for tests that write byte by byte.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Writes bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|error| panic!("SMTP write failed: {error}"));
    }

    /// Writes bytes; false if the server already closed the connection.
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Sends `line` plus CRLF and reads the reply.
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes());
        self.read_reply()
    }

    /// Sends `line` plus CRLF and asserts the reply starts with `prefix`.
    pub fn expect(&mut self, line: &str, prefix: &str) -> Reply {
        let reply = self.cmd(line);
        assert!(
            reply.is(prefix),
            "after {line:?} want {prefix:?}, got:\n{}",
            reply.text()
        );
        reply
    }

    /// Reads one complete reply; panics on timeout, EOF or a malformed reply.
    pub fn read_reply(&mut self) -> Reply {
        self.try_read_reply()
            .unwrap_or_else(|why| panic!("reading SMTP reply: {why}"))
    }

    /// Reads one reply, or `None` if the server closed the connection first; panics on
    /// a timeout or a malformed reply.
    pub fn read_reply_or_close(&mut self) -> Option<Reply> {
        match self.try_read_reply() {
            Ok(reply) => Some(reply),
            Err(why) if why == CLOSED_CLEANLY => None,
            Err(why) => panic!("reading SMTP reply: {why}"),
        }
    }

    /// Reads `n` replies (after a pipelined write).
    pub fn read_replies(&mut self, n: usize) -> Vec<Reply> {
        (0..n).map(|_| self.read_reply()).collect()
    }

    /// Reads one complete reply, or says why there is none (`Err` mentions "closed" on EOF).
    pub fn try_read_reply(&mut self) -> Result<Reply, String> {
        let mut lines = Vec::new();
        let mut code = 0u16;
        loop {
            let line_end = loop {
                if let Some(pos) = find(&self.buf, b"\r\n") {
                    break pos;
                }
                if self.buf.len() > SMTP_REPLY_BYTES_MAX {
                    return Err("reply line too long".into());
                }
                if fill_from(&mut self.stream, &mut self.buf)? == 0 {
                    if lines.is_empty() && self.buf.is_empty() {
                        return Err(CLOSED_CLEANLY.into());
                    }
                    return Err(format!(
                        "connection closed inside a reply: {lines:?} {}",
                        lossy(&self.buf)
                    ));
                }
            };
            let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            self.buf.drain(..line_end + 2);
            let bytes = line.as_bytes();
            if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) {
                return Err(format!("malformed reply line {line:?}"));
            }
            let line_code: u16 = line[..3]
                .parse()
                .map_err(|_| format!("bad code {line:?}"))?;
            if lines.is_empty() {
                code = line_code;
            } else if line_code != code {
                return Err(format!(
                    "code changed inside a reply: {lines:?} then {line:?}"
                ));
            }
            let last = match bytes.get(3) {
                None | Some(b' ') => true,
                Some(b'-') => false,
                Some(_) => return Err(format!("malformed reply line {line:?}")),
            };
            lines.push(line);
            if last {
                return Ok(Reply { code, lines });
            }
            if lines.len() > 100 {
                return Err("reply with more than 100 lines".into());
            }
        }
    }

    /// True if the server closes the connection within `timeout` (bytes that arrive
    /// first are kept and can still be read as replies).
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        wait_eof(&mut self.stream, &mut self.buf, timeout)
    }

    /// Everything the server sends until it closes, bounded by `timeout`; `None` if it
    /// did not close in time.
    pub fn read_until_close(&mut self, timeout: Duration) -> Option<String> {
        let closed = self.closed_within(timeout);
        let text = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        closed.then_some(text)
    }

    /// Runs MAIL, RCPT (each must be accepted), DATA and the dot-stuffed `message`, one
    /// command at a time; returns the queue id from `250 2.0.0 Ok: queued as <qid>`.
    /// `message` must end with CRLF (it is stored exactly as given).
    pub fn send_mail(&mut self, from: &str, recipients: &[&str], message: &[u8]) -> String {
        self.expect(&format!("MAIL FROM:<{from}>"), "250");
        for recipient in recipients {
            self.expect(&format!("RCPT TO:<{recipient}>"), "250");
        }
        self.expect("DATA", "354");
        self.send(&dot_stuff(message));
        let reply = self.read_reply();
        queue_id(&reply)
    }
}

/// The DATA encoding of `message` (which must end with CRLF, so it is stored exactly as
/// given): `mayfly::smtp::data::dot_stuff`.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    assert!(
        message.is_empty() || message.ends_with(b"\r\n"),
        "dot_stuff wants a message that ends with CRLF"
    );
    let mut stuffed = Vec::new();
    mayfly::smtp::data::dot_stuff(message, &mut stuffed);
    stuffed
}

/// Checks `250 2.0.0 Ok: queued as <qid>` and returns the qid.
pub fn queue_id(reply: &Reply) -> String {
    let last = reply.lines.last().map(String::as_str).unwrap_or_default();
    let qid = last
        .strip_prefix("250 2.0.0 Ok: queued as ")
        .unwrap_or_else(|| {
            panic!(
                "want `250 2.0.0 Ok: queued as <qid>`, got:\n{}",
                reply.text()
            )
        });
    assert!(
        !qid.is_empty() && !qid.contains(char::is_whitespace),
        "bad queue id in {last:?}"
    );
    qid.to_string()
}

/// The stored message minus our `Received:` header (its first line starts with
/// `Received: from `; continuation lines start with a space or tab).
pub fn strip_received(raw: &[u8]) -> &[u8] {
    assert!(
        raw.starts_with(b"Received: from "),
        "stored message does not start with `Received: from `: {}",
        lossy(&raw[..raw.len().min(300)])
    );
    let mut pos = 0;
    loop {
        let line_end = find(&raw[pos..], b"\r\n").unwrap_or_else(|| {
            panic!("Received header without CRLF: {}", lossy(raw));
        });
        pos += line_end + 2;
        match raw.get(pos) {
            Some(b' ') | Some(b'\t') => continue,
            _ => return &raw[pos..],
        }
    }
}

/// Asserts byte equality and, on failure, shows where the two first differ.
pub fn assert_bytes_eq(actual: &[u8], expected: &[u8], what: &str) {
    if actual == expected {
        return;
    }
    let first_diff = actual
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(actual.len().min(expected.len()));
    let from = first_diff.saturating_sub(60);
    panic!(
        "{what}: stored bytes differ from what the client sent (lengths {} vs {}), first at byte {first_diff}:\n stored: {:?}\n   sent: {:?}",
        actual.len(),
        expected.len(),
        String::from_utf8_lossy(&actual[from..actual.len().min(first_diff + 60)]),
        String::from_utf8_lossy(&expected[from..expected.len().min(first_diff + 60)]),
    );
}

/// A simple message with a unique subject and body, ending with CRLF.
pub fn simple_message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: sender@sender.test\r\nTo: someone@example.test\r\nSubject: {subject}\r\nDate: Fri, 27 Nov 2026 22:15:44 +0000\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// Polls `condition` until it is true or `timeout` passes; returns its last value.
pub fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Sums every sample of metrics whose name contains `name_part` (Prometheus text format;
/// comment lines are skipped). `None` if no such metric line exists.
pub fn metric_sum(metrics: &str, name_part: &str) -> Option<f64> {
    let mut found = false;
    let mut sum = 0.0;
    for line in metrics.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        if !line[..name_end].contains(name_part) {
            continue;
        }
        // The value is the first field after the name and labels (a timestamp may follow).
        let after_labels = if line[name_end..].starts_with('{') {
            match line[name_end..].rfind('}') {
                Some(close) => &line[name_end + close + 1..],
                None => continue,
            }
        } else {
            &line[name_end..]
        };
        if let Some(value) = after_labels
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            sum += value;
            found = true;
        }
    }
    found.then_some(sum)
}

/// Sums samples whose metric name contains `name_part` and whose label set contains
/// `label` (e.g. `reason="capacity"`).
pub fn metric_sum_with_label(metrics: &str, name_part: &str, label: &str) -> Option<f64> {
    let filtered: String = metrics
        .lines()
        .filter(|line| !line.starts_with('#') && line.contains(label))
        .map(|line| format!("{line}\n"))
        .collect();
    metric_sum(&filtered, name_part)
}

// ---------------------------------------------------------------------------------------
// TLS listeners

/// The optional TLS listeners from a ready line.
#[derive(Debug, Clone, Copy)]
pub struct TlsListeners {
    pub smtps: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    pub pop3: Option<SocketAddr>,
    pub pop3s: Option<SocketAddr>,
    pub imap: Option<SocketAddr>,
    pub imaps: Option<SocketAddr>,
}

/// Parses `mayfly listening smtp=A http=B[ smtps=C][ https=D][ pop3=E][ pop3s=F][ imap=G]
/// [ imaps=H]` strictly.
pub fn parse_ready_line_tls(line: &str) -> Result<(SocketAddr, SocketAddr, TlsListeners), String> {
    let rest = line
        .strip_prefix("mayfly listening ")
        .ok_or("does not start with `mayfly listening `")?;
    let mut smtp = None;
    let mut http = None;
    let mut listeners = TlsListeners {
        smtps: None,
        https: None,
        pop3: None,
        pop3s: None,
        imap: None,
        imaps: None,
    };
    let expected = [
        "smtp", "http", "smtps", "https", "pop3", "pop3s", "imap", "imaps",
    ];
    let mut expected_idx = 0;
    for field in rest.split(' ') {
        let (name, value) = field
            .split_once('=')
            .ok_or_else(|| format!("field {field:?} is not name=addr"))?;
        let position = expected[expected_idx..]
            .iter()
            .position(|candidate| *candidate == name)
            .ok_or_else(|| format!("unexpected or out-of-order field {name:?}"))?;
        expected_idx += position + 1;
        let addr: SocketAddr = value
            .parse()
            .map_err(|error| format!("{name} address: {error}"))?;
        if addr.port() == 0 {
            return Err(format!("port 0 for {name} in ready line"));
        }
        match name {
            "smtp" => smtp = Some(addr),
            "http" => http = Some(addr),
            "smtps" => listeners.smtps = Some(addr),
            "https" => listeners.https = Some(addr),
            "pop3" => listeners.pop3 = Some(addr),
            "pop3s" => listeners.pop3s = Some(addr),
            "imap" => listeners.imap = Some(addr),
            _ => listeners.imaps = Some(addr),
        }
    }
    match (smtp, http) {
        (Some(smtp), Some(http)) => Ok((smtp, http, listeners)),
        _ => Err("smtp= and http= must come first".into()),
    }
}

impl Server {
    /// As `start`, for a server that may also print ` smtps=`, ` https=`, ` pop3=`, ` pop3s=`,
    /// ` imap=` and ` imaps=` in its ready line.
    pub fn start_tls(extra_args: &[&str]) -> (Server, TlsListeners) {
        let server = Server::start_parsing(extra_args, |line| {
            parse_ready_line_tls(line).map(|(smtp, http, _)| (smtp, http))
        });
        let (_, _, listeners) =
            parse_ready_line_tls(&server.ready_line).expect("ready line parsed once already");
        (server, listeners)
    }
}

/// A directory under the system's temp dir, removed when dropped (for tests that give
/// real clients or servers a config file, a mail drop or zone files).
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A new directory named after `name`, unique to this process and this call, so tests
    /// running side by side never share one.
    pub fn new(name: &str) -> ScratchDir {
        static N_MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "mayfly-itest-{name}-{}-{}",
            std::process::id(),
            N_MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("mkdir");
        ScratchDir(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Bytes a client script printed as hex.
pub fn unhex(text: &serde_json::Value) -> Vec<u8> {
    let text = text.as_str().expect("hex text");
    (0..text.len())
        .step_by(2)
        .map(|idx| u8::from_str_radix(&text[idx..idx + 2], 16).expect("hex"))
        .collect()
}
