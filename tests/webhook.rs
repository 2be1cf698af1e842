//! Webhooks (`--webhook`), through the real binary, to receivers on loopback run by the
//! test itself: std `TcpListener` threads that answer each request as a plan says (by its
//! `X-Mayfly-Attempt`), record what they got, and hand it to the test over a channel.
//!
//! The tests order events on what the server and the receivers report (metrics, requests
//! received), never on a sleep, and assert no wall-clock time.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;

mod common;

use common::{ScratchDir, Server, Smtp, eventually, simple_message};

/// How long a test waits for the requests it expects (retries back off 0.5 to 2 s here).
const DELIVERY_WAIT: Duration = Duration::from_secs(60);
/// The signing key the tests configure (the file adds a newline, which is not part of it).
const SECRET: &str = "test-secret-0123456789abcdef";

/// How a receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// `503 Service Unavailable`, keeping the connection.
    Fail,
    /// Close the connection without a reply.
    Close,
    /// `204 No Content`.
    Accept,
    /// Read the request and never answer (until the client gives up and closes).
    Hang,
}

/// One request a receiver got, and how it answered.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    /// Header names in lower case.
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    action: Action,
}

impl Seen {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    fn attempt(&self) -> u32 {
        self.header("x-mayfly-attempt")
            .parse()
            .expect("X-Mayfly-Attempt")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    fn inbox(&self) -> String {
        self.json()["inbox"].as_str().expect("inbox").to_string()
    }
}

/// A webhook receiver on 127.0.0.1 (TLS with `tls`), answering by `plan`.
struct Receiver {
    addr: SocketAddr,
    seen: mpsc::Receiver<Seen>,
}

impl Receiver {
    fn start(plan: fn(u32) -> Action, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (sender, seen) = mpsc::channel();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let sender = sender.clone();
                let tls = tls.clone();
                thread::spawn(move || match tls {
                    None => serve(stream, plan, &sender),
                    Some(config) => {
                        let connection = rustls::ServerConnection::new(config).expect("tls");
                        serve(rustls::StreamOwned::new(connection, stream), plan, &sender);
                    }
                });
            }
        });
        Receiver { addr, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Collects requests until `done` says enough, within `DELIVERY_WAIT`.
    fn collect_until(&self, mut done: impl FnMut(&[Seen]) -> bool) -> Vec<Seen> {
        let deadline = Instant::now() + DELIVERY_WAIT;
        let mut seen = Vec::new();
        while !done(&seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.seen.recv_timeout(left) {
                Ok(request) => seen.push(request),
                Err(_) => panic!("the receiver got only {} requests: {seen:#?}", seen.len()),
            }
        }
        seen
    }

    /// Everything received so far, without waiting.
    fn drain(&self) -> Vec<Seen> {
        self.seen.try_iter().collect()
    }
}

/// Serves HTTP/1.1 requests on one connection (kept alive) until it closes.
fn serve(mut stream: impl Read + Write, plan: fn(u32) -> Action, seen: &mpsc::Sender<Seen>) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(idx) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break idx + 4;
            }
            if !read_more(&mut stream, &mut buf) {
                return;
            }
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).expect("ASCII head");
        let mut lines = head.split("\r\n");
        let request_line = lines.next().expect("request line");
        let target = request_line
            .strip_prefix("POST ")
            .and_then(|rest| rest.strip_suffix(" HTTP/1.1"))
            .unwrap_or_else(|| panic!("not a POST: {request_line:?}"))
            .to_string();
        let headers: BTreeMap<String, String> = lines
            .filter_map(|line| line.split_once(": "))
            .map(|(name, value)| (name.to_ascii_lowercase(), value.to_string()))
            .collect();
        let length: usize = headers["content-length"].parse().expect("Content-Length");
        while buf.len() < head_end + length {
            if !read_more(&mut stream, &mut buf) {
                return;
            }
        }
        let body = buf[head_end..head_end + length].to_vec();
        buf.drain(..head_end + length);
        let attempt = headers["x-mayfly-attempt"].parse().expect("attempt");
        let action = plan(attempt);
        let _ = seen.send(Seen {
            target,
            headers,
            body,
            action,
        });
        let reply: &[u8] = match action {
            Action::Fail => b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy",
            Action::Accept => b"HTTP/1.1 204 No Content\r\n\r\n",
            Action::Close => return,
            Action::Hang => {
                // Until the client gives up and closes.
                while read_more(&mut stream, &mut buf) {}
                return;
            }
        };
        if stream
            .write_all(reply)
            .and_then(|()| stream.flush())
            .is_err()
        {
            return;
        }
    }
}

fn read_more(stream: &mut impl Read, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn secret_file(dir: &ScratchDir) -> String {
    let path = dir.path().join("webhook.secret");
    std::fs::write(&path, format!("{SECRET}\n")).expect("write secret");
    path.to_str().expect("UTF-8 path").to_string()
}

/// Checks `X-Mayfly-Signature-256` against the body, as a receiver would.
fn assert_signed(seen: &Seen) {
    let header = seen.header("x-mayfly-signature-256");
    let hex = header
        .strip_prefix("sha256=")
        .unwrap_or_else(|| panic!("signature header {header:?}"));
    let tag: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|idx| u8::from_str_radix(&hex[idx..idx + 2], 16).expect("hex"))
        .collect();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    ring::hmac::verify(&key, &seen.body, &tag).expect("the signature verifies");
}

fn metric(server: &Server, name: &str) -> u64 {
    server.metric_total(name)
}

#[test]
fn every_message_arrives_signed_once_the_receiver_recovers() {
    // Each event: 503 first, then a connection closed without a reply, then accepted.
    let receiver = Receiver::start(
        |attempt| match attempt {
            1 => Action::Fail,
            2 => Action::Close,
            _ => Action::Accept,
        },
        None,
    );
    let dir = ScratchDir::new("webhook-recovers");
    let server = Server::start(&[
        "--webhook",
        &receiver.url("/hooks/mail?token=t0"),
        "--webhook-secret-file",
        &secret_file(&dir),
    ]);
    let mut smtp = server.smtp_ehlo();
    smtp.send_mail(
        "a@sender.test",
        &["alice@example.test"],
        &simple_message("one", "1"),
    );
    smtp.send_mail(
        "a@sender.test",
        &["bob@example.test"],
        &simple_message("two", "2"),
    );
    // One message, two inboxes: one event each.
    smtp.send_mail(
        "a@sender.test",
        &["carol@example.test", "Dave@example.test"],
        &simple_message("three", "3"),
    );
    let inboxes = [
        "alice@example.test",
        "bob@example.test",
        "carol@example.test",
        "dave@example.test",
    ];

    let seen = receiver.collect_until(|seen| {
        seen.iter().filter(|s| s.action == Action::Accept).count() == inboxes.len()
    });
    let accepted: Vec<&Seen> = seen.iter().filter(|s| s.action == Action::Accept).collect();
    let mut by_delivery: BTreeMap<&str, Vec<&Seen>> = BTreeMap::new();
    for request in &seen {
        by_delivery
            .entry(request.header("x-mayfly-delivery"))
            .or_default()
            .push(request);
    }
    assert_eq!(
        by_delivery.len(),
        inboxes.len(),
        "one delivery id per event"
    );
    let mut delivered_inboxes = BTreeSet::new();
    for request in &accepted {
        assert_eq!(request.target, "/hooks/mail?token=t0");
        assert_eq!(request.header("content-type"), "application/json");
        assert_eq!(request.header("x-mayfly-event"), "message.stored");
        assert!(request.attempt() >= 3, "{request:?}");
        assert_signed(request);
        let body = request.json();
        assert_eq!(body["event"], "message.stored");
        let inbox = request.inbox();
        // The message is the inbox listing's entry for it, byte for byte.
        let listing = server.inbox(&inbox);
        assert_eq!(listing["messages"][0], body["message"], "{inbox}");
        assert!(!String::from_utf8_lossy(&request.body).contains("127.0.0.1"));
        // Every attempt of an event carried the same body.
        let attempts = &by_delivery[request.header("x-mayfly-delivery")];
        assert!(
            attempts
                .iter()
                .all(|a| a.body == request.body && a.target == request.target)
        );
        let n_attempts: BTreeSet<u32> = attempts.iter().map(|a| a.attempt()).collect();
        assert!(
            n_attempts.is_superset(&BTreeSet::from([1, 2, 3])),
            "{n_attempts:?}"
        );
        assert!(
            delivered_inboxes.insert(inbox),
            "delivered twice: {request:?}"
        );
    }
    assert_eq!(
        delivered_inboxes,
        inboxes.iter().map(|inbox| inbox.to_string()).collect()
    );
    server.wait_metric_total("mayfly_webhook_deliveries_total", 4);
    // Each event failed twice: a 503 and a closed connection.
    assert_eq!(metric(&server, "mayfly_webhook_retries_total"), 8);
    assert_eq!(metric(&server, "mayfly_webhook_dropped_total"), 0);
    server.wait_metric_total("mayfly_webhook_queue_length", 0);
}

#[test]
fn a_domain_filter_sends_only_matching_mail() {
    let filtered = Receiver::start(|_| Action::Accept, None);
    let everything = Receiver::start(|_| Action::Accept, None);
    let server = Server::start(&[
        "--webhook",
        &format!("*.match.test={}", filtered.url("/")),
        "--webhook",
        &everything.url("/all"),
    ]);
    let mut smtp = server.smtp_ehlo();
    for rcpt in ["x@other.test", "y@match.test", "z@sub.match.test"] {
        smtp.send_mail("a@sender.test", &[rcpt], &simple_message(rcpt, "hi"));
    }
    // Everything queued has been delivered: nothing is left that could still arrive.
    server.wait_metric_total("mayfly_webhook_deliveries_total", 5);
    server.wait_metric_total("mayfly_webhook_queue_length", 0);
    let (filtered, everything) = (filtered.drain(), everything.drain());
    let inboxes = |seen: &[Seen]| -> BTreeSet<String> { seen.iter().map(Seen::inbox).collect() };
    assert_eq!(
        inboxes(&filtered),
        BTreeSet::from(["y@match.test".to_string(), "z@sub.match.test".to_string()])
    );
    assert_eq!(
        inboxes(&everything),
        BTreeSet::from([
            "x@other.test".to_string(),
            "y@match.test".to_string(),
            "z@sub.match.test".to_string()
        ])
    );
    assert_eq!(metric(&server, "mayfly_webhook_dropped_total"), 0);
    // Without a key nothing is signed.
    assert!(
        filtered
            .iter()
            .chain(&everything)
            .all(|seen| !seen.headers.contains_key("x-mayfly-signature-256"))
    );
}

#[test]
fn a_receiver_that_never_answers_does_not_hold_up_intake() {
    const RCPTS: usize = 1000;
    const MESSAGES: usize = 5;
    let receiver = Receiver::start(|_| Action::Hang, None);
    let server = Server::start(&[
        "--webhook",
        &receiver.url("/"),
        "--webhook-timeout",
        "2s",
        "--max-recipients",
        &RCPTS.to_string(),
    ]);
    let rcpts: Vec<String> = (0..RCPTS).map(|n| format!("r{n}@hang.test")).collect();
    let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let mut smtp = server.smtp_ehlo();
    // Every message gets its 250 (each reply within the client's 10 s read timeout)...
    for n in 0..MESSAGES {
        smtp.send_mail(
            "a@sender.test",
            &rcpts,
            &simple_message(&format!("m{n}"), "x"),
        );
    }
    // ...while the receiver holds every request it was sent, unanswered.
    server.wait_metric_total(
        "mayfly_webhook_requests_in_flight",
        mayfly::webhook::IN_FLIGHT_MAX as u64,
    );
    assert_eq!(metric(&server, "mayfly_webhook_deliveries_total"), 0);
    // Mail sent now is stored and readable as ever.
    smtp.send_mail(
        "a@sender.test",
        &["late@hang.test"],
        &simple_message("late", "x"),
    );
    assert_eq!(server.inbox("late@hang.test")["total"], 1);
    assert_eq!(server.inbox("r0@hang.test")["total"], MESSAGES as u64);
    assert_eq!(server.inbox("r999@hang.test")["total"], MESSAGES as u64);
    // A hung receiver keeps its events (they wait for retries), so the queue fills and
    // every event beyond its bound is dropped and counted.
    let queued = mayfly::webhook::QUEUE_EVENTS_MAX as u64;
    let dropped = (RCPTS * MESSAGES + 1) as u64 - queued;
    let metrics = server.metrics();
    assert_eq!(
        common::metric_sum_with_label(&metrics, "mayfly_webhook_dropped_total", "queue_full"),
        Some(dropped as f64),
        "{metrics}"
    );
    assert_eq!(metric(&server, "mayfly_webhook_queue_length"), queued);
    // Requests past their deadline are retried.
    let mut retries = 0;
    let retried = eventually(Duration::from_secs(30), || {
        retries = metric(&server, "mayfly_webhook_retries_total");
        retries >= mayfly::webhook::IN_FLIGHT_MAX as u64
    });
    assert!(retried, "retries stayed at {retries}");
    assert_eq!(metric(&server, "mayfly_webhook_deliveries_total"), 0);
    assert!(
        receiver
            .drain()
            .iter()
            .all(|seen| seen.action == Action::Hang)
    );
}

#[test]
fn https_webhooks_are_checked_against_the_trusted_roots() {
    let pki = Pki::new("trusted");
    let receiver = Receiver::start(|_| Action::Accept, Some(pki.server_config()));
    let url = format!("https://127.0.0.1:{}/tls", receiver.addr.port());
    // A receiver whose certificate another CA issued, which the server does not trust.
    let stranger = Pki::new("untrusted");
    let impostor = Receiver::start(|_| Action::Accept, Some(stranger.server_config()));
    let impostor_url = format!("https://127.0.0.1:{}/tls", impostor.addr.port());
    let dir = ScratchDir::new("webhook-https");
    let server = ChildServer::start(
        &[
            "--webhook",
            &url,
            "--webhook",
            &impostor_url,
            "--webhook-secret-file",
            &secret_file(&dir),
        ],
        &pki.ca_path,
    );
    let mut smtp = Smtp::connect(server.smtp);
    smtp.read_reply().assert_code(220);
    smtp.cmd("EHLO client.test").assert_code(250);
    smtp.send_mail(
        "a@sender.test",
        &["tls@example.test"],
        &simple_message("tls", "x"),
    );
    let seen = receiver.collect_until(|seen| !seen.is_empty());
    assert_eq!(seen[0].target, "/tls");
    assert_eq!(seen[0].inbox(), "tls@example.test");
    assert_eq!(seen[0].json()["message"]["subject"], "tls");
    assert_signed(&seen[0]);
    // The impostor's handshake fails (counted as a failed attempt, retried); no request
    // ever reaches it.
    let retried = eventually(Duration::from_secs(30), || {
        let metrics = common::HttpConn::connect(server.http)
            .request_with("GET", "/metrics", &[("Connection", "close")], None)
            .text();
        common::metric_sum(&metrics, "mayfly_webhook_retries_total").is_some_and(|n| n >= 1.0)
    });
    assert!(retried, "the failed handshake was not retried");
    assert!(impostor.drain().is_empty());
}

#[test]
fn bad_webhook_settings_stop_the_start() {
    let table: &[(&[&str], &str)] = &[
        (&["--webhook", "ftp://127.0.0.1/"], "--webhook"),
        (&["--webhook", "http://127.0.0.1:1/a b"], "visible ASCII"),
        (
            &[
                "--webhook",
                "http://127.0.0.1:1/",
                "--webhook-secret-file",
                "/nonexistent/key",
            ],
            "--webhook-secret-file",
        ),
        (
            &["--webhook-secret-file", "/dev/null"],
            "--webhook-secret-file",
        ),
    ];
    for (args, needle) in table {
        let (status, _, stderr) = common::run_to_exit(args, Duration::from_secs(30));
        assert_eq!(status.code(), Some(78), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

// ---------------------------------------------------------------------------------------
// TLS for the receiver

/// A test CA (written to `ca.pem`, which the server trusts through `SSL_CERT_FILE`) and a
/// certificate it issued for 127.0.0.1.
struct Pki {
    _dir: ScratchDir,
    ca_path: String,
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = ScratchDir::new(&format!("webhook-pki-{name}"));
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Mayfly webhook test CA");
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_cert = params.self_signed(&ca_key).expect("CA cert");
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca_cert.pem()).expect("write CA");
        let issuer = Issuer::new(params, ca_key);
        let leaf_params = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).expect("sign");
        Pki {
            ca_path: ca_path.to_str().expect("UTF-8").to_string(),
            _dir: dir,
            chain: vec![leaf.der().clone(), ca_cert.der().clone()],
            key_der: leaf_key.serialize_der(),
        }
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), key)
            .expect("server config"),
        )
    }
}

/// The server started with `SSL_CERT_FILE` in its environment (which `common::Server`
/// does not set), killed when dropped.
struct ChildServer {
    child: Child,
    smtp: SocketAddr,
    http: SocketAddr,
}

impl ChildServer {
    fn start(args: &[&str], ca_path: &str) -> ChildServer {
        let mut child = Command::new(common::mayfly_bin())
            .args([
                "--smtp",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--cores",
                "1",
            ])
            .args(["--max-memory", "32MiB", "--max-message-size", "1MiB"])
            .args(args)
            .env("SSL_CERT_FILE", ca_path)
            .env_remove("SSL_CERT_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mayfly");
        let mut stdout = child.stdout.take().expect("stdout");
        let (line_sender, line) = mpsc::channel();
        thread::spawn(move || {
            let mut text = Vec::new();
            let mut byte = [0u8; 1];
            while stdout.read(&mut byte).is_ok_and(|n| n == 1) && byte[0] != b'\n' {
                text.push(byte[0]);
            }
            let _ = line_sender.send(String::from_utf8_lossy(&text).into_owned());
        });
        let line = line.recv_timeout(common::READY_TIMEOUT).unwrap_or_default();
        let Ok((smtp, http)) = common::parse_ready_line(&line) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no ready line: {line:?}");
        };
        ChildServer { child, smtp, http }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
