//! Black-box tests: the real `smtp-blaster` binary against a tiny in-process SMTP server.
//!
//! The mock is a plain std-threads server on 127.0.0.1:0 that behaves like a pipelining
//! server (it reads what is there, answers every complete command, then writes all replies
//! at once) and records what it saw: messages, their checksums, and how many commands
//! arrived in one read (1 for a client that waits for each reply; more when pipelining).
//! A matching mock HTTP API serves what it stored, for `--verify`.
//! With TLS on, the mock offers STARTTLS or speaks implicit TLS (rustls server side, with a
//! self-signed rcgen certificate for "localhost").

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use smtp_blaster::message::check_message;

/// How long a test may wait for the binary before calling it a hang.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// (id, raw bytes with a `Received:` header first), as the HTTP mock serves them.
type StoredMessage = (u64, Vec<u8>);

/// How the mock speaks TLS.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum MockTls {
    #[default]
    Off,
    /// Offer STARTTLS in the EHLO reply.
    StartTls,
    /// TLS from the first byte.
    Implicit,
}

#[derive(Default, Clone, Copy)]
struct MockOptions {
    tls: MockTls,
    /// Send a plaintext reply right behind the 220 to STARTTLS (an injection attempt).
    inject_after_starttls: bool,
    /// Advertise PIPELINING and CHUNKING.
    extensions: bool,
    /// Answer every Nth RCPT with 451 4.3.0.
    reject_rcpt_every: Option<u64>,
    /// After this many messages, close every connection and stop listening.
    die_after_messages: Option<u64>,
}

#[derive(Default)]
struct Seen {
    n_messages: AtomicU64,
    n_bad_checksum: AtomicU64,
    n_rcpt: AtomicU64,
    n_bdat: AtomicU64,
    max_commands_per_read: AtomicU64,
    /// Stored messages by recipient address: (id, raw with a Received: header first).
    inboxes: Mutex<BTreeMap<String, Vec<StoredMessage>>>,
    next_id: AtomicU64,
    dead: AtomicBool,
    /// Completed TLS handshakes, and SMTP commands that arrived over TLS.
    n_tls_sessions: AtomicU64,
    n_tls_commands: AtomicU64,
}

/// The mock's TLS server configuration and its certificate in PEM (for `--tls-ca`).
fn tls_server() -> &'static (Arc<ServerConfig>, String) {
    static SERVER: OnceLock<(Arc<ServerConfig>, String)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let chain: Vec<CertificateDer<'static>> = vec![certified.cert.der().clone()];
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap();
        (Arc::new(config), certified.cert.pem())
    })
}

/// The mock's socket, plaintext or TLS.
enum MockStream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl std::io::Read for MockStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            MockStream::Plain(stream) => stream.read(buf),
            MockStream::Tls(stream) => stream.read(buf),
        }
    }
}

impl std::io::Write for MockStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            MockStream::Plain(stream) => stream.write(buf),
            MockStream::Tls(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            MockStream::Plain(stream) => stream.flush(),
            MockStream::Tls(stream) => stream.flush(),
        }
    }
}

/// Runs the server side of a handshake to completion (blocking, bounded by a timeout);
/// `None` if the client did not complete it.
fn tls_accept(mut tcp: TcpStream, seen: &Seen) -> Option<MockStream> {
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut conn = ServerConnection::new(Arc::clone(&tls_server().0)).ok()?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).ok()?;
    }
    tcp.set_read_timeout(Some(Duration::from_millis(20))).ok()?;
    seen.n_tls_sessions.fetch_add(1, Ordering::Relaxed);
    Some(MockStream::Tls(Box::new(StreamOwned::new(conn, tcp))))
}

struct Mock {
    port: u16,
    seen: Arc<Seen>,
}

fn start_mock(options: MockOptions) -> Mock {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let seen_for_thread = Arc::clone(&seen);
    thread::spawn(move || {
        let seen = seen_for_thread;
        // Polling accept lets the mock "vanish": dropping the listener makes connects fail.
        while !seen.dead.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let seen = Arc::clone(&seen);
                    thread::spawn(move || serve_smtp(stream, options, &seen));
                }
                Err(_) => thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    Mock { port, seen }
}

fn serve_smtp(tcp: TcpStream, options: MockOptions, seen: &Seen) {
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut stream = if options.tls == MockTls::Implicit {
        match tls_accept(tcp, seen) {
            Some(stream) => stream,
            None => return,
        }
    } else {
        MockStream::Plain(tcp)
    };
    let mut input: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = b"220 mock ESMTP\r\n".to_vec();
    let mut rcpts: Vec<String> = Vec::new();
    // Some(bytes left) while reading a BDAT chunk; `in_data` while reading DATA lines.
    let mut bdat_left: Option<usize> = None;
    let mut in_data = false;
    let mut message: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        if !out.is_empty() {
            if stream.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
        if seen.dead.load(Ordering::Relaxed) {
            return;
        }
        let n_read = match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
        };
        input.extend_from_slice(&buf[..n_read]);
        let mut n_commands = 0;
        let mut pos = 0;
        let mut upgrade = false;
        loop {
            if let Some(left) = bdat_left {
                let take = left.min(input.len() - pos);
                message.extend_from_slice(&input[pos..pos + take]);
                pos += take;
                if take < left {
                    bdat_left = Some(left - take);
                    break;
                }
                bdat_left = None;
                store(seen, &rcpts, &message, options);
                message.clear();
                rcpts.clear();
                out.extend_from_slice(b"250 2.0.0 queued\r\n");
                continue;
            }
            let Some(line_len) = input[pos..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|idx| idx + 1)
            else {
                break;
            };
            let line = input[pos..pos + line_len].to_vec();
            pos += line_len;
            if in_data {
                if line == b".\r\n" {
                    in_data = false;
                    n_commands += 1;
                    store(seen, &rcpts, &message, options);
                    message.clear();
                    rcpts.clear();
                    out.extend_from_slice(b"250 2.0.0 queued\r\n");
                } else {
                    message.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
                }
                continue;
            }
            n_commands += 1;
            if matches!(stream, MockStream::Tls(_)) {
                seen.n_tls_commands.fetch_add(1, Ordering::Relaxed);
            }
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            let upper = text.to_ascii_uppercase();
            let plain = matches!(stream, MockStream::Plain(_));
            if upper.starts_with("EHLO") {
                out.extend_from_slice(b"250-mock\r\n");
                if options.tls == MockTls::StartTls && plain {
                    out.extend_from_slice(b"250-STARTTLS\r\n");
                }
                if options.extensions {
                    out.extend_from_slice(b"250-PIPELINING\r\n250-CHUNKING\r\n");
                }
                out.extend_from_slice(b"250 8BITMIME\r\n");
            } else if upper.starts_with("MAIL FROM:") {
                rcpts.clear();
                out.extend_from_slice(b"250 2.1.0 ok\r\n");
            } else if upper.starts_with("RCPT TO:") {
                let n = seen.n_rcpt.fetch_add(1, Ordering::Relaxed) + 1;
                if options
                    .reject_rcpt_every
                    .is_some_and(|every| n.is_multiple_of(every))
                {
                    out.extend_from_slice(b"451 4.3.0 try again later\r\n");
                } else {
                    rcpts.push(
                        text[8..]
                            .trim()
                            .trim_matches(['<', '>'])
                            .to_ascii_lowercase(),
                    );
                    out.extend_from_slice(b"250 2.1.5 ok\r\n");
                }
            } else if upper == "DATA" {
                if rcpts.is_empty() {
                    out.extend_from_slice(b"554 5.5.1 no valid recipients\r\n");
                } else {
                    in_data = true;
                    out.extend_from_slice(b"354 go ahead\r\n");
                }
            } else if let Some(rest) = upper.strip_prefix("BDAT ") {
                seen.n_bdat.fetch_add(1, Ordering::Relaxed);
                let mut parts = rest.split_whitespace();
                let size: usize = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                assert_eq!(
                    parts.next(),
                    Some("LAST"),
                    "only BDAT LAST is expected: {text}"
                );
                bdat_left = Some(size);
            } else if upper == "STARTTLS" && options.tls == MockTls::StartTls && plain {
                // RFC 3207: nothing may follow STARTTLS in the same flight.
                assert_eq!(pos, input.len(), "data pipelined after STARTTLS");
                out.extend_from_slice(b"220 2.0.0 ready to start TLS\r\n");
                if options.inject_after_starttls {
                    out.extend_from_slice(b"250 2.0.0 injected\r\n");
                }
                upgrade = true;
                break;
            } else if upper == "RSET" {
                rcpts.clear();
                out.extend_from_slice(b"250 2.0.0 ok\r\n");
            } else if upper == "QUIT" {
                let _ = stream.write_all(&out);
                let _ = stream.write_all(b"221 2.0.0 bye\r\n");
                return;
            } else {
                out.extend_from_slice(b"500 5.5.2 what\r\n");
            }
        }
        input.drain(..pos);
        seen.max_commands_per_read
            .fetch_max(n_commands, Ordering::Relaxed);
        if upgrade {
            let MockStream::Plain(tcp) = &stream else {
                return;
            };
            let mut tcp = tcp.try_clone().unwrap();
            if tcp.write_all(&out).is_err() {
                return;
            }
            out.clear();
            stream = match tls_accept(tcp, seen) {
                Some(stream) => stream,
                None => return,
            };
        }
    }
}

fn store(seen: &Seen, rcpts: &[String], message: &[u8], options: MockOptions) {
    if !check_message(message).checksum_ok {
        seen.n_bad_checksum.fetch_add(1, Ordering::Relaxed);
    }
    let mut raw = b"Received: from blaster by mock; Thu, 1 Jan 1970 00:00:00 +0000\r\n".to_vec();
    raw.extend_from_slice(message);
    let mut inboxes = seen.inboxes.lock().unwrap();
    for rcpt in rcpts {
        let id = seen.next_id.fetch_add(1, Ordering::Relaxed);
        inboxes
            .entry(rcpt.clone())
            .or_default()
            .push((id, raw.clone()));
    }
    drop(inboxes);
    let n = seen.n_messages.fetch_add(1, Ordering::Relaxed) + 1;
    if options.die_after_messages.is_some_and(|limit| n >= limit) {
        seen.dead.store(true, Ordering::Relaxed);
    }
}

/// A mock of the inbox API over what the SMTP mock stored.
fn start_http(seen: Arc<Seen>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let seen = Arc::clone(&seen);
            thread::spawn(move || serve_http(stream, &seen));
        }
    });
    port
}

fn serve_http(stream: TcpStream, seen: &Seen) {
    // Head and body are written separately: without NODELAY, Nagle plus the client's
    // delayed ACK would add 40 ms to every response.
    stream.set_nodelay(true).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                break;
            }
        }
        let target = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .replace("%40", "@");
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let parts: Vec<&str> = path
            .trim_start_matches("/api/v1/inboxes/")
            .split('/')
            .collect();
        let inboxes = seen.inboxes.lock().unwrap();
        let messages = inboxes.get(parts[0]).cloned().unwrap_or_default();
        drop(inboxes);
        let (content_type, body) = match parts.as_slice() {
            [address] => {
                let after: Option<u64> = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("after="))
                    .and_then(|v| v.parse().ok());
                let listed: Vec<String> = messages
                    .iter()
                    .rev()
                    .filter(|(id, _)| after.is_none_or(|after| *id > after))
                    .map(|(id, _)| format!("{{\"id\":\"{id}\"}}"))
                    .collect();
                let next_after = messages
                    .last()
                    .map_or("null".to_owned(), |(id, _)| format!("\"{id}\""));
                let json = format!(
                    "{{\"address\":\"{address}\",\"total\":{},\"messages\":[{}],\"next_after\":{next_after}}}",
                    messages.len(),
                    listed.join(",")
                );
                ("application/json", json.into_bytes())
            }
            [_, "messages", id, "raw"] => match messages
                .iter()
                .find(|(stored_id, _)| stored_id.to_string() == *id)
            {
                Some((_, raw)) => ("message/rfc822", raw.clone()),
                None => {
                    let _ =
                        writer.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                    continue;
                }
            },
            _ => ("text/plain", Vec::new()),
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if writer
            .write_all(head.as_bytes())
            .and_then(|()| writer.write_all(&body))
            .is_err()
        {
            return;
        }
    }
}

/// Runs the binary with a time limit (a hang fails the test instead of stalling it).
fn blaster(args: &[String]) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_smtp-blaster"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            panic!("smtp-blaster {args:?} did not finish within {RUN_LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
    (child.wait_with_output().unwrap(), start.elapsed())
}

fn json_run(port: u16, extra: &[&str]) -> (serde_json::Value, Output) {
    let mut args = vec![
        format!("127.0.0.1:{port}"),
        "--json".to_owned(),
        "--timeout".to_owned(),
        "5".to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let (output, _) = blaster(&args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {stdout:?} stderr {:?}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (json, output)
}

#[test]
fn counts_match_in_every_framing() {
    // (extra args, expected max commands per read: Some(1) = strictly one at a time,
    // None = at least `at_least`).
    let cases: &[(&[&str], Option<u64>, u64)] = &[
        (&[], Some(1), 1),
        (&["--recipients", "3", "--inboxes", "7"], Some(1), 1),
        (&["--pipelining"], None, 3),
        (&["--pipelining", "--recipients", "3"], None, 5),
        (&["--bdat"], Some(1), 1),
        (&["--bdat", "--pipelining"], None, 3),
        (&["--bdat", "--in-flight", "8"], None, 12),
        (&["--messages-per-connection", "1"], Some(1), 1),
        (
            &[
                "--pipelining",
                "--messages-per-connection",
                "7",
                "--size-dist",
                "500:1,20000:1",
            ],
            None,
            3,
        ),
        (&["--epoll", "--threads", "2"], Some(1), 1),
    ];
    for &(extra, exact, at_least) in cases {
        let mock = start_mock(MockOptions {
            extensions: true,
            ..MockOptions::default()
        });
        let mut args = vec!["--messages", "300", "--connections", "4"];
        args.extend_from_slice(extra);
        let (json, output) = json_run(mock.port, &args);
        assert!(output.status.success(), "{extra:?}: {json}");
        assert_eq!(json["messages_accepted"], 300, "{extra:?}: {json}");
        assert_eq!(json["messages_started"], 300, "{extra:?}: {json}");
        assert_eq!(json["latency_us"]["samples"], 300, "{extra:?}: {json}");
        assert_eq!(
            mock.seen.n_messages.load(Ordering::Relaxed),
            300,
            "{extra:?}"
        );
        assert_eq!(
            mock.seen.n_bad_checksum.load(Ordering::Relaxed),
            0,
            "{extra:?}"
        );
        let max_per_read = mock.seen.max_commands_per_read.load(Ordering::Relaxed);
        match exact {
            Some(expected) => assert_eq!(max_per_read, expected, "{extra:?}"),
            None => assert!(
                max_per_read >= at_least,
                "{extra:?}: at most {max_per_read} commands per read"
            ),
        }
        if extra.contains(&"--bdat") {
            assert_eq!(mock.seen.n_bdat.load(Ordering::Relaxed), 300, "{extra:?}");
        }
        if extra.contains(&"--messages-per-connection") {
            assert!(
                json["connections_opened"].as_u64().unwrap() >= 300 / 7,
                "{extra:?}: {json}"
            );
        }
    }
}

#[test]
fn corpus_messages_arrive_with_good_checksums() {
    let dir = std::env::temp_dir().join(format!("smtp-blaster-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files: &[(&str, &[u8])] = &[
        (
            "a.eml",
            b"From: a@b.test\nSubject: one\nMessage-ID: <x@y>\n\n.leading dot\nline\n",
        ),
        (
            "b.eml",
            b"Subject: two\r\nContent-Type: text/plain\r\n\r\nbody\r\n.\r\nafter a lone dot\r\n",
        ),
        ("c.eml", b"no header block at all"),
    ];
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
    for framing in [&["--pipelining"][..], &["--bdat"][..]] {
        let mock = start_mock(MockOptions {
            extensions: true,
            ..MockOptions::default()
        });
        let mut args = vec!["--messages", "90", "--corpus", dir.to_str().unwrap()];
        args.extend_from_slice(framing);
        let (json, output) = json_run(mock.port, &args);
        assert!(output.status.success(), "{framing:?}: {json}");
        assert_eq!(
            mock.seen.n_messages.load(Ordering::Relaxed),
            90,
            "{framing:?}"
        );
        assert_eq!(
            mock.seen.n_bad_checksum.load(Ordering::Relaxed),
            0,
            "{framing:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--dkim-key` with `{n}` in the selector: message n carries variant n mod N's signature,
/// so each selector comes up once per N messages, whatever connection sends it.
#[test]
fn dkim_variants_are_sent_in_turn() {
    let dir = std::env::temp_dir().join(format!("smtp-blaster-dkim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("ed.pem");
    let openssl = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .output()
        .expect("openssl runs (apt-get install openssl)");
    assert!(openssl.status.success());
    let mock = start_mock(MockOptions::default());
    let (json, output) = json_run(
        mock.port,
        &[
            "--messages",
            "12",
            "-c",
            "4",
            "--size",
            "1136",
            "--dkim-key",
            key.to_str().unwrap(),
            "--dkim-selector",
            "c{n}.ed",
            "--dkim-variants",
            "3",
        ],
    );
    assert!(output.status.success(), "{json}");
    let inboxes = mock.seen.inboxes.lock().unwrap();
    let mut seen_seqs = Vec::new();
    for (_, raw) in inboxes.values().flatten() {
        let check = check_message(raw);
        assert!(check.checksum_ok);
        let seq = check.seq.expect("X-Blaster-Seq");
        let text = String::from_utf8_lossy(raw).replace("\r\n\t", " ");
        let signature = text
            .lines()
            .find(|line| line.starts_with("DKIM-Signature:"))
            .unwrap_or_else(|| panic!("unsigned: {text}"));
        let selector = signature
            .split(';')
            .map(str::trim)
            .find_map(|tag| tag.strip_prefix("s="))
            .unwrap_or_else(|| panic!("no s= in {signature}"));
        assert_eq!(selector, format!("c{}.ed", seq % 3), "{text}");
        assert!(signature.contains("d=example.test"), "{signature}");
        seen_seqs.push(seq);
    }
    seen_seqs.sort_unstable();
    assert_eq!(seen_seqs, (0..12).collect::<Vec<u64>>());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rejected_recipients_are_counted_by_code() {
    for extra in [&[][..], &["--pipelining"][..]] {
        let mock = start_mock(MockOptions {
            extensions: true,
            reject_rcpt_every: Some(10),
            ..MockOptions::default()
        });
        let mut args = vec!["--messages", "200", "--connections", "2"];
        args.extend_from_slice(extra);
        let (json, output) = json_run(mock.port, &args);
        assert!(output.status.success(), "{json}");
        assert_eq!(json["messages_accepted"], 180, "{extra:?}: {json}");
        assert_eq!(json["messages_rejected"], 20, "{extra:?}: {json}");
        assert_eq!(json["reply_errors"]["451 4.3.0"], 20, "{extra:?}: {json}");
        if extra.is_empty() {
            // Without pipelining the client knows not to send DATA.
            assert!(json["reply_errors"].get("554 5.5.1").is_none(), "{json}");
        } else {
            assert_eq!(json["reply_errors"]["554 5.5.1"], 20, "{json}");
        }
        assert_eq!(mock.seen.n_messages.load(Ordering::Relaxed), 180);
    }
}

#[test]
fn missing_extensions_are_a_clear_error() {
    let mock = start_mock(MockOptions::default());
    let cases: &[(&[&str], &str)] = &[
        (&["--pipelining"], "PIPELINING"),
        (&["--bdat"], "CHUNKING"),
        (
            &["--starttls", "--tls-insecure"],
            "STARTTLS is not supported by the target",
        ),
    ];
    for &(extra, needle) in cases {
        let mut args = vec!["--messages", "10"];
        args.extend_from_slice(extra);
        let (json, output) = json_run(mock.port, &args);
        assert_eq!(output.status.code(), Some(1), "{json}");
        assert!(json["fatal"].as_str().unwrap().contains(needle), "{json}");
    }
}

#[test]
fn refused_connection_is_an_error_exit() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (output, elapsed) = blaster(&[
        format!("127.0.0.1:{port}"),
        "--messages".into(),
        "10".into(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refused"), "{stderr}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[test]
fn vanishing_server_is_an_error_exit_not_a_hang() {
    let mock = start_mock(MockOptions {
        extensions: true,
        die_after_messages: Some(100),
        ..MockOptions::default()
    });
    let args: Vec<String> = [
        &format!("127.0.0.1:{}", mock.port),
        "--messages",
        "100000",
        "--connections",
        "4",
        "--timeout",
        "3",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let (output, elapsed) = blaster(&args);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("connection errors:"), "{stdout}");
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
}

#[test]
fn non_loopback_target_is_refused_before_connecting() {
    let (output, _) = blaster(&["192.0.2.1:25".into(), "--messages".into(), "1".into()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("loopback"));
}

#[test]
fn open_loop_follows_the_schedule() {
    let mock = start_mock(MockOptions {
        extensions: true,
        ..MockOptions::default()
    });
    let (json, output) = json_run(
        mock.port,
        &[
            "--rate",
            "2000",
            "--duration",
            "1",
            "--connections",
            "8",
            "--epoll",
        ],
    );
    assert!(output.status.success(), "{json}");
    let started = json["messages_started"].as_u64().unwrap();
    assert!((1900..=2001).contains(&started), "{json}");
    assert_eq!(
        json["messages_accepted"].as_u64().unwrap(),
        started,
        "{json}"
    );
}

#[test]
fn mx_senders_think_and_connect_per_message() {
    let mock = start_mock(MockOptions {
        extensions: true,
        tls: MockTls::StartTls,
        ..MockOptions::default()
    });
    // 20 closed-loop senders, a new connection and a STARTTLS handshake per message, and
    // a think time of 1 to 3 ms before every command.
    let (json, output) = json_run(
        mock.port,
        &[
            "--messages",
            "60",
            "--connections",
            "20",
            "--messages-per-connection",
            "1",
            "--starttls",
            "--tls-insecure",
            "--think-ms",
            "2",
            "--headers",
            "mx",
            "--size-dist",
            "1k:1,10k:1",
            "--epoll",
        ],
    );
    assert!(output.status.success(), "{json}");
    assert_eq!(json["messages_accepted"].as_u64(), Some(60), "{json}");
    // A closed-loop sender connects before it learns that the message count ran out, so
    // the last round may open connections that send nothing.
    let opened = json["connections_opened"].as_u64().unwrap();
    assert!((60..=80).contains(&opened), "{json}");
    assert_eq!(json["tls"]["handshakes"].as_u64(), Some(opened), "{json}");
    // Each sender resumes the session of its own previous connection: all but the first
    // connection of each of the 20 slots.
    assert!(
        json["tls"]["resumed"].as_u64().unwrap() + 20 >= opened,
        "{json}"
    );
    assert_eq!(
        json["connect_to_250_us"]["samples"].as_u64(),
        Some(60),
        "{json}"
    );
    // Seven commands wait for a think of at least 1 ms each before the final 250 (EHLO,
    // STARTTLS's handshake, EHLO, MAIL, RCPT, DATA, the body): a lower bound, not a speed.
    let connect_p50_us = json["connect_to_250_us"]["p50"].as_f64().unwrap();
    assert!(connect_p50_us >= 7_000.0, "{json}");
    assert_eq!(mock.seen.n_messages.load(Ordering::Relaxed), 60);
    assert_eq!(mock.seen.n_bad_checksum.load(Ordering::Relaxed), 0);
}

#[test]
fn open_loop_arrivals_open_their_own_connections() {
    let mock = start_mock(MockOptions {
        extensions: true,
        ..MockOptions::default()
    });
    let (json, output) = json_run(
        mock.port,
        &[
            "--rate",
            "400",
            "--duration",
            "1",
            "--connections",
            "64",
            "--connect-per-arrival",
            "--messages-per-connection",
            "1",
            "--epoll",
        ],
    );
    assert!(output.status.success(), "{json}");
    let accepted = json["messages_accepted"].as_u64().unwrap();
    assert!((380..=401).contains(&accepted), "{json}");
    assert_eq!(json["messages_started"].as_u64(), Some(accepted), "{json}");
    assert_eq!(
        json["connections_opened"].as_u64(),
        Some(accepted),
        "{json}"
    );
    assert_eq!(json["arrivals_dropped"].as_u64(), Some(0), "{json}");
    // Each arrival's latency includes its connect, so the two histograms hold the same.
    assert_eq!(
        json["connect_to_250_us"]["samples"].as_u64(),
        json["latency_us"]["samples"].as_u64(),
        "{json}"
    );
}

#[test]
fn verify_finds_missing_and_corrupted_messages() {
    let mock = start_mock(MockOptions {
        extensions: true,
        ..MockOptions::default()
    });
    let http_port = start_http(Arc::clone(&mock.seen));
    let url = format!("http://127.0.0.1:{http_port}");
    let (json, output) = json_run(
        mock.port,
        &[
            "--messages",
            "60",
            "--recipients",
            "2",
            "--inboxes",
            "5",
            "--pipelining",
            "--verify",
            &url,
        ],
    );
    assert!(output.status.success(), "{json}");
    let verify = &json["verify"];
    assert_eq!(
        (verify["expected"].as_u64(), verify["found_intact"].as_u64()),
        (Some(120), Some(120)),
        "{json}"
    );
    assert_eq!(
        (verify["missing"].as_u64(), verify["corrupted"].as_u64()),
        (Some(0), Some(0)),
        "{json}"
    );

    // Damage the store: drop one message, corrupt another, add a stranger.
    {
        let mut inboxes = mock.seen.inboxes.lock().unwrap();
        let inbox = inboxes.get_mut("user1@example.test").unwrap();
        inbox.remove(0);
        let raw = &mut inbox[0].1;
        let last_idx = raw.len() - 3;
        raw[last_idx] ^= 0x01;
        inboxes
            .entry("user2@example.test".into())
            .or_default()
            .push((1_000_000, b"Subject: hi\r\n\r\nnot ours\r\n".to_vec()));
    }
    // The second run must not count the first run's messages as its own.
    let (json, output) = json_run(
        mock.port,
        &["--messages", "10", "--inboxes", "5", "--verify", &url],
    );
    assert!(output.status.success(), "{json}");
    assert_eq!(json["verify"]["foreign"].as_u64(), Some(120), "{json}");
    assert_eq!(json["verify"]["found_intact"].as_u64(), Some(10), "{json}");

    let mock2 = start_mock(MockOptions {
        extensions: true,
        ..MockOptions::default()
    });
    let http2 = start_http(Arc::clone(&mock2.seen));
    let seen = Arc::clone(&mock2.seen);
    // Damage happens while the run is going: the mock drops and corrupts as it stores.
    let damager = thread::spawn(move || {
        let deadline = Instant::now() + RUN_LIMIT;
        while seen.n_messages.load(Ordering::Relaxed) < 40 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        let mut inboxes = seen.inboxes.lock().unwrap();
        let inbox = inboxes.get_mut("user1@example.test").unwrap();
        inbox.remove(0);
        let raw = &mut inbox[0].1;
        let last_idx = raw.len() - 3;
        raw[last_idx] ^= 0x01;
    });
    // Slow the run down enough (open loop) that the damage lands before verification.
    let url2 = format!("http://127.0.0.1:{http2}");
    let (json, output) = json_run(
        mock2.port,
        &[
            "--rate",
            "100",
            "--messages",
            "60",
            "--duration",
            "5",
            "--inboxes",
            "5",
            "--verify",
            &url2,
        ],
    );
    damager.join().unwrap();
    assert_eq!(output.status.code(), Some(3), "{json}");
    assert_eq!(
        (
            json["verify"]["missing"].as_u64(),
            json["verify"]["corrupted"].as_u64()
        ),
        (Some(1), Some(1)),
        "{json}"
    );
}

#[test]
fn tls_runs_in_every_framing() {
    // (mock TLS mode, extra args): STARTTLS and implicit TLS with DATA, pipelining, BDAT
    // with transactions in flight, and a new connection (and handshake) per message.
    let cases: &[(MockTls, &[&str])] = &[
        (MockTls::StartTls, &["--starttls"]),
        (MockTls::StartTls, &["--starttls", "--pipelining"]),
        (
            MockTls::StartTls,
            &["--starttls", "--bdat", "--in-flight", "4"],
        ),
        (
            MockTls::StartTls,
            &["--starttls", "--messages-per-connection", "1", "--epoll"],
        ),
        (
            MockTls::StartTls,
            &[
                "--starttls",
                "--size-dist",
                "500:1,200000:1",
                "--pipelining",
            ],
        ),
        (MockTls::Implicit, &["--smtps"]),
        (
            MockTls::Implicit,
            &["--smtps", "--bdat", "--in-flight", "4"],
        ),
        (
            MockTls::Implicit,
            &[
                "--smtps",
                "--messages-per-connection",
                "3",
                "--tls-no-resumption",
            ],
        ),
    ];
    for &(tls, extra) in cases {
        let mock = start_mock(MockOptions {
            extensions: true,
            tls,
            ..MockOptions::default()
        });
        let mut args = vec!["--messages", "200", "--connections", "4", "--tls-insecure"];
        args.extend_from_slice(extra);
        let (json, output) = json_run(mock.port, &args);
        assert!(output.status.success(), "{extra:?}: {json}");
        assert_eq!(json["messages_accepted"], 200, "{extra:?}: {json}");
        assert_eq!(
            mock.seen.n_messages.load(Ordering::Relaxed),
            200,
            "{extra:?}"
        );
        assert_eq!(
            mock.seen.n_bad_checksum.load(Ordering::Relaxed),
            0,
            "{extra:?}"
        );
        let n_sessions = mock.seen.n_tls_sessions.load(Ordering::Relaxed);
        let n_connections = json["connections_opened"].as_u64().unwrap();
        assert_eq!(n_sessions, n_connections, "{extra:?}: {json}");
        assert_eq!(json["tls"]["handshakes"], n_sessions, "{extra:?}: {json}");
        // EHLO, MAIL, RCPT and DATA or BDAT of every message came through TLS.
        assert!(
            mock.seen.n_tls_commands.load(Ordering::Relaxed) >= 200 * 3,
            "{extra:?}"
        );
        assert!(
            json["tls"]["version"]
                .as_str()
                .unwrap()
                .starts_with("TLSv1."),
            "{json}"
        );
        assert!(
            !json["tls"]["cipher"].as_str().unwrap().is_empty(),
            "{json}"
        );
        if extra.contains(&"--tls-no-resumption") {
            assert_eq!(json["tls"]["resumed"], 0, "{json}");
        }
    }
}

#[test]
fn tls_report_in_text_and_plaintext_json() {
    let mock = start_mock(MockOptions {
        tls: MockTls::StartTls,
        ..MockOptions::default()
    });
    let args: Vec<String> = [
        format!("127.0.0.1:{}", mock.port).as_str(),
        "--messages",
        "20",
        "--starttls",
        "--tls-insecure",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let (output, _) = blaster(&args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("tls: TLSv1."), "{stdout}");
    let plain = start_mock(MockOptions::default());
    let (json, output) = json_run(plain.port, &["--messages", "20"]);
    assert!(output.status.success(), "{json}");
    assert!(json["tls"].is_null(), "{json}");
}

#[test]
fn tls_ca_file_is_checked() {
    let mock = start_mock(MockOptions {
        extensions: true,
        tls: MockTls::Implicit,
        ..MockOptions::default()
    });
    let dir = std::env::temp_dir().join(format!("blaster-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &tls_server().1).unwrap();
    let ca = ca.to_string_lossy().into_owned();
    // The certificate is for "localhost", which is the default name for an IP target.
    let (json, output) = json_run(mock.port, &["--messages", "20", "--smtps", "--tls-ca", &ca]);
    assert!(output.status.success(), "{json}");
    assert_eq!(json["messages_accepted"], 20, "{json}");
    let (json, output) = json_run(
        mock.port,
        &[
            "--messages",
            "20",
            "--smtps",
            "--tls-ca",
            &ca,
            "--tls-server-name",
            "other.example.test",
            "--max-connection-errors",
            "2",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{json}");
    assert!(
        json["fatal"].as_str().unwrap().contains("tls handshake"),
        "{json}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_to_a_plaintext_server_is_a_connection_error_not_a_hang() {
    let mock = start_mock(MockOptions::default());
    let (json, output) = json_run(
        mock.port,
        &[
            "--messages",
            "20",
            "--smtps",
            "--tls-insecure",
            "--max-connection-errors",
            "3",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{json}");
    let errors = json["connection_errors"].as_object().unwrap();
    assert!(
        errors.keys().any(|key| key.starts_with("tls handshake")),
        "{json}"
    );
    assert!(
        json["fatal"].as_str().unwrap().contains("tls handshake"),
        "{json}"
    );
    assert_eq!(json["messages_accepted"], 0, "{json}");
}

#[test]
fn plaintext_behind_the_starttls_reply_is_refused() {
    let mock = start_mock(MockOptions {
        tls: MockTls::StartTls,
        inject_after_starttls: true,
        ..MockOptions::default()
    });
    let (json, output) = json_run(
        mock.port,
        &[
            "--messages",
            "20",
            "--starttls",
            "--tls-insecure",
            "--max-connection-errors",
            "3",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{json}");
    assert_eq!(json["messages_accepted"], 0, "{json}");
    // Normally both lines arrive in one read; if they are split, the injected line reaches
    // rustls instead and breaks the handshake. Either way no mail goes through.
    let errors = json["connection_errors"].as_object().unwrap();
    assert!(
        errors
            .keys()
            .all(|key| key.contains("data after the 220 to STARTTLS")
                || key.starts_with("tls handshake")),
        "{json}"
    );
    assert!(!errors.is_empty(), "{json}");
}
