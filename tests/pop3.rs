//! POP3 on the real binary with real clients: Python's poplib (plain, STLS, implicit TLS),
//! curl's pop3:// and pop3s:// URLs, fetchmail, and raw bytes for the edge cases
//! (pipelining, over-long lines, timeouts, plaintext refused with --require-tls).
//!
//! Messages go in over SMTP and are compared byte for byte with what HTTP serves as
//! `/raw`; deletions and the seen flag are checked over HTTP too.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{IO_TIMEOUT, ScratchDir, Server, TlsListeners, unhex};
use serde_json::Value;

const ADDRESS: &str = "pop.user@example.test";

fn start(extra: &[&str]) -> (Server, TlsListeners) {
    let mut args = vec!["--pop3", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Server::start_tls(&args)
}

fn start_with_tls(extra: &[&str]) -> (Server, TlsListeners) {
    let mut args = vec![
        "--pop3",
        "127.0.0.1:0",
        "--pop3s",
        "127.0.0.1:0",
        "--tls-self-signed",
        "--hostname",
        "mx.example.test",
    ];
    args.extend_from_slice(extra);
    Server::start_tls(&args)
}

/// Delivers `count` messages to `address` over SMTP; returns their bytes as HTTP serves
/// them (`/raw`), oldest first.
fn fill(server: &Server, address: &str, count: usize) -> Vec<Vec<u8>> {
    let mut smtp = server.smtp_ehlo();
    for n in 0..count {
        let body = format!(
            "From: sender@example.org\r\nTo: {address}\r\nSubject: message {n}\r\n\r\n\
             line one of {n}\r\n.a line that starts with a dot\r\nlast line\r\n"
        );
        smtp.send_mail("sender@example.org", &[address], body.as_bytes());
    }
    let listing = server.wait_inbox_total(address, count as u64);
    let mut raws: Vec<Vec<u8>> = listing["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|message| server.raw(address, message["id"].as_str().expect("id")))
        .collect();
    raws.reverse();
    raws
}

fn client_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("clients")
        .join(name)
}

fn poplib(addr: SocketAddr, mode: &str, user: &str, extra: &[&str]) -> Value {
    let output = Command::new("python3")
        .arg(client_script("pop3_poplib.py"))
        .args(["127.0.0.1", &addr.port().to_string(), mode, user])
        .args(extra)
        .output()
        .unwrap_or_else(|error| panic!("python3 is required for this test: {error}"));
    assert!(
        output.status.success(),
        "pop3_poplib.py failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the script prints JSON")
}

fn seen_flags(server: &Server, address: &str) -> Vec<bool> {
    server.inbox(address)["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|message| message["seen"].as_bool().expect("seen"))
        .collect()
}

#[test]
fn poplib_lists_retrieves_byte_exact_and_deletes_at_quit() {
    let (server, listeners) = start(&[]);
    let pop3 = listeners.pop3.expect("pop3 listener");
    // Delivered and not read over HTTP: unseen until POP3 retrieves them.
    let unread = "unread@example.test";
    server.smtp_ehlo().send_mail(
        "sender@example.org",
        &[unread, unread],
        b"Subject: one\r\n\r\nbody\r\n",
    );
    server.smtp_ehlo().send_mail(
        "sender@example.org",
        &[unread],
        b"Subject: two\r\n\r\nbody\r\n",
    );
    server.wait_inbox_total(unread, 2);
    assert_eq!(seen_flags(&server, unread), vec![false, false]);
    let report = poplib(pop3, "plain", unread, &["--top", "0"]);
    assert_eq!(report["stat"][0], 2);
    // RETR marks read for the web page too.
    assert_eq!(seen_flags(&server, unread), vec![true, true]);

    let raws = fill(&server, ADDRESS, 3);

    let report = poplib(pop3, "plain", "Pop.User@Example.TEST", &["--top", "0"]);
    let total: usize = raws.iter().map(Vec::len).sum();
    assert_eq!(report["stat"], serde_json::json!([3, total]));
    let sizes: Vec<String> = raws
        .iter()
        .enumerate()
        .map(|(idx, raw)| format!("{} {}", idx + 1, raw.len()))
        .collect();
    assert_eq!(report["list"], serde_json::json!(sizes));
    for (idx, message) in report["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .enumerate()
    {
        assert_eq!(
            unhex(&message["raw"]),
            raws[idx],
            "message {idx} byte for byte"
        );
    }
    // UIDL: the message ids HTTP uses, stable across sessions.
    let ids: Vec<String> = server.inbox(ADDRESS)["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .rev()
        .enumerate()
        .map(|(idx, message)| format!("{} {}", idx + 1, message["id"].as_str().expect("id")))
        .collect();
    assert_eq!(report["uidl"], serde_json::json!(ids));
    // TOP 0: the header and the blank line, no body.
    let top = unhex(&report["top"]);
    let header_end = raws[0]
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a header")
        + 4;
    assert_eq!(top, raws[0][..header_end]);
    let capa = report["capa"].as_array().expect("capa");
    for capability in ["TOP", "UIDL", "USER", "SASL", "PIPELINING", "RESP-CODES"] {
        assert!(
            capa.iter().any(|c| c == capability),
            "CAPA lacks {capability}: {capa:?}"
        );
    }
    // DELE then QUIT: gone over HTTP (the UPDATE state), and a new session sees nothing.
    let report = poplib(pop3, "plain", ADDRESS, &["--dele"]);
    assert_eq!(report["stat"][0], 3);
    assert!(report["quit"].as_str().expect("quit").starts_with("+OK"));
    assert_eq!(server.inbox(ADDRESS)["total"], 0);
    let report = poplib(pop3, "plain", ADDRESS, &[]);
    assert_eq!(report["stat"], serde_json::json!([0, 0]));
    assert!(server.metric_total("mayfly_pop3_messages_retrieved_total") >= 7);
}

#[test]
fn poplib_over_stls_and_implicit_tls() {
    let (server, listeners) = start_with_tls(&[]);
    let raws = fill(&server, ADDRESS, 2);
    let report = poplib(listeners.pop3.expect("pop3"), "stls", ADDRESS, &[]);
    assert!(report["stls"].as_str().expect("stls").starts_with("+OK"));
    assert!(
        report["capa"]
            .as_array()
            .expect("capa")
            .iter()
            .any(|c| c == "STLS")
    );
    assert!(
        !report["capa_after_stls"]
            .as_array()
            .expect("capa")
            .iter()
            .any(|c| c == "STLS"),
        "STLS is not offered twice"
    );
    assert_eq!(unhex(&report["messages"][1]["raw"]), raws[1]);
    let report = poplib(listeners.pop3s.expect("pop3s"), "ssl", ADDRESS, &[]);
    assert_eq!(unhex(&report["messages"][0]["raw"]), raws[0]);
    assert!(server.metric_total("mayfly_tls_sessions_total") >= 2);
}

#[test]
fn curl_lists_and_retrieves_over_pop3_and_pop3s() {
    let (server, listeners) = start_with_tls(&[]);
    let raws = fill(&server, ADDRESS, 2);
    let user = format!("{ADDRESS}:secret");
    let curl = |url: String| -> Vec<u8> {
        let output = Command::new("curl")
            .args([
                "--silent",
                "--show-error",
                "--max-time",
                "10",
                "--insecure",
                "--user",
            ])
            .arg(&user)
            .arg(url)
            .output()
            .expect("curl is installed (tests/run.sh)");
        assert!(
            output.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    };
    let pop3 = listeners.pop3.expect("pop3").port();
    let list = String::from_utf8(curl(format!("pop3://127.0.0.1:{pop3}/"))).expect("text");
    assert_eq!(
        list,
        format!("1 {}\r\n2 {}\r\n", raws[0].len(), raws[1].len())
    );
    assert_eq!(curl(format!("pop3://127.0.0.1:{pop3}/2")), raws[1]);
    let pop3s = listeners.pop3s.expect("pop3s").port();
    assert_eq!(curl(format!("pop3s://127.0.0.1:{pop3s}/1")), raws[0]);
}

#[test]
fn fetchmail_downloads_everything_into_an_mda_and_deletes_it() {
    let (server, listeners) = start_with_tls(&[]);
    let raws = fill(&server, ADDRESS, 3);
    let dir = ScratchDir::new("fetchmail");
    let out_dir = dir.path().join("delivered");
    std::fs::create_dir(&out_dir).expect("mkdir");
    let rc = dir.path().join("fetchmailrc");
    let mda = format!("/bin/sh -c 'cat > {}/$$'", out_dir.display());
    for (port, ssl) in [
        // fetchmail upgrades with STLS by itself; the certificate is self-signed.
        (listeners.pop3.expect("pop3").port(), "no sslcertck"),
        (listeners.pop3s.expect("pop3s").port(), "ssl no sslcertck"),
    ] {
        std::fs::write(
            &rc,
            format!(
                "poll 127.0.0.1 service {port} protocol pop3 timeout 10\n  user \"{ADDRESS}\" \
                 password \"x\" {ssl} mda \"{mda}\"\n"
            ),
        )
        .expect("write rc");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let output = Command::new("fetchmail")
            .args(["--fetchmailrc"])
            .arg(&rc)
            .args(["--nodetach", "--nosyslog", "--idfile"])
            .arg(dir.path().join("ids"))
            .env("HOME", dir.path())
            .output()
            .expect("fetchmail is installed (tests/run.sh)");
        // 0: mail fetched; 1: no mail (the second round, over TLS, finds the inbox empty).
        assert!(
            matches!(output.status.code(), Some(0 | 1)),
            "fetchmail failed: {:?}\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut delivered: Vec<Vec<u8>> = std::fs::read_dir(&out_dir)
        .expect("read dir")
        .map(|entry| std::fs::read(entry.expect("entry").path()).expect("read"))
        .collect();
    assert_eq!(delivered.len(), 3, "one file per message");
    // fetchmail adds its own Received header and writes LF line ends; the message it got
    // is what follows, line for line.
    delivered.sort_by_key(|bytes| bytes.len());
    for raw in &raws {
        let subject = raw
            .split(|&b| b == b'\n')
            .find(|line| line.starts_with(b"Subject:"))
            .expect("a subject");
        let subject = String::from_utf8_lossy(subject.trim_ascii_end()).to_string();
        let got = delivered
            .iter()
            .find(|bytes| String::from_utf8_lossy(bytes).contains(&subject))
            .unwrap_or_else(|| panic!("no delivered file has {subject}"));
        let expected = String::from_utf8_lossy(raw).replace("\r\n", "\n");
        assert!(
            String::from_utf8_lossy(got).ends_with(&expected),
            "{subject}"
        );
    }
    // fetchmail deletes what it fetched (no `keep`).
    assert_eq!(server.inbox(ADDRESS)["total"], 0);
}

/// A raw POP3 connection: send bytes, read reply lines.
struct Raw {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let mut raw = Raw {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            stream,
        };
        assert!(raw.line().starts_with("+OK"), "greeting");
        raw
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read");
        line
    }

    /// Reads a multi-line answer after its status line, up to the lone dot.
    fn lines_to_dot(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            assert!(!line.is_empty(), "closed inside a multi-line answer");
            if line == ".\r\n" {
                return lines;
            }
            lines.push(line);
        }
    }

    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok() && rest.is_empty()
    }
}

#[test]
fn pipelined_commands_get_their_answers_in_order_and_bad_input_precise_errors() {
    let (server, listeners) = start(&[]);
    fill(&server, ADDRESS, 2);
    let mut pop = Raw::connect(listeners.pop3.expect("pop3"));
    // A whole session in one write (RFC 2449 PIPELINING).
    pop.send(
        format!("USER {ADDRESS}\r\nPASS x\r\nSTAT\r\nLIST 2\r\nDELE 1\r\nRETR 1\r\nNOOP\r\nRSET\r\nSTAT\r\nRETR 9\r\nLIST 0\r\nBOGUS\r\n")
            .as_bytes(),
    );
    assert!(pop.line().starts_with("+OK"), "USER");
    assert!(pop.line().starts_with("+OK"), "PASS");
    assert!(pop.line().starts_with("+OK 2 "), "STAT");
    assert!(pop.line().starts_with("+OK 2 "), "LIST 2");
    assert!(pop.line().starts_with("+OK"), "DELE 1");
    assert!(pop.line().starts_with("-ERR"), "RETR of a deleted message");
    assert!(pop.line().starts_with("+OK"), "NOOP");
    assert!(pop.line().starts_with("+OK"), "RSET");
    assert!(pop.line().starts_with("+OK 2 "), "STAT after RSET");
    assert!(pop.line().starts_with("-ERR"), "RETR 9");
    assert!(pop.line().starts_with("-ERR"), "LIST 0");
    assert!(pop.line().starts_with("-ERR"), "BOGUS");
    // A line longer than any command: refused when it ends, the session goes on.
    let mut long = vec![b'X'; 5000];
    long.extend_from_slice(b"\r\nNOOP\r\n");
    pop.send(&long);
    assert!(pop.line().starts_with("-ERR"), "over-long line");
    assert!(pop.line().starts_with("+OK"), "NOOP after it");
    // Dot-stuffing: a body line starting with "." comes back as "..".
    pop.send(b"RETR 1\r\n");
    assert!(pop.line().starts_with("+OK"));
    let lines = pop.lines_to_dot();
    assert!(
        lines
            .iter()
            .any(|line| line == "..a line that starts with a dot\r\n")
    );
    pop.send(b"QUIT\r\n");
    assert!(pop.line().starts_with("+OK"));
    assert!(pop.closed());
    // Nothing was deleted: the DELE was reset.
    assert_eq!(server.inbox(ADDRESS)["total"], 2);
}

#[test]
fn logins_need_an_accepted_address_and_tls_when_required() {
    let (server, listeners) = start_with_tls(&["--domain", "example.test", "--require-tls"]);
    let _ = &server;
    let mut pop = Raw::connect(listeners.pop3.expect("pop3"));
    pop.send(format!("USER {ADDRESS}\r\n").as_bytes());
    let refused = pop.line();
    assert!(
        refused.starts_with("-ERR [AUTH]"),
        "plaintext login refused: {refused}"
    );
    pop.send(b"CAPA\r\n");
    assert!(pop.line().starts_with("+OK"));
    let capa = pop.lines_to_dot();
    assert!(capa.iter().any(|line| line.starts_with("STLS")), "{capa:?}");
    assert!(
        !capa.iter().any(|line| line.starts_with("USER")),
        "{capa:?}"
    );
    // Over TLS, an address of a domain the server does not serve is an invalid login.
    let report_fails = Command::new("python3")
        .arg(client_script("pop3_poplib.py"))
        .args([
            "127.0.0.1",
            &listeners.pop3s.expect("pop3s").port().to_string(),
            "ssl",
            "someone@elsewhere.test",
        ])
        .output()
        .expect("python3");
    assert!(!report_fails.status.success());
    assert!(String::from_utf8_lossy(&report_fails.stderr).contains("[AUTH]"));
    assert!(server.metric_total("mayfly_pop3_login_failures_total") >= 1);
}

#[test]
fn a_trickled_command_is_cut_at_its_deadline_and_an_idle_session_at_its_timeout() {
    let (server, listeners) = start(&[
        "--mailbox-command-timeout",
        "1s",
        "--mailbox-idle-timeout",
        "2s",
    ]);
    let pop3 = listeners.pop3.expect("pop3");
    // One byte every 400 ms never completes a line within 1 s.
    let mut pop = Raw::connect(pop3);
    let started = std::time::Instant::now();
    let mut cut = false;
    for byte in b"NOOPNOOPNOOPNOOP" {
        if pop.stream.write_all(&[*byte]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(400));
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let line = pop.line();
    assert!(
        cut || line.starts_with("-ERR"),
        "trickled command: {line:?}"
    );
    assert!(pop.closed() || line.is_empty() || line.starts_with("-ERR"));
    // An idle session is closed after the idle timeout.
    let mut idle = Raw::connect(pop3);
    let line = idle.line();
    assert!(
        line.starts_with("-ERR [SYS/TEMP]"),
        "idle session: {line:?}"
    );
    assert!(server.metric_total("mayfly_mailbox_timeouts_total") >= 2);
}

#[test]
fn sessions_and_logins_per_client_address_are_capped() {
    let (server, listeners) = start(&[
        "--cores",
        "1",
        "--max-mailbox-sessions-per-ip",
        "2",
        "--max-logins-per-ip-per-minute",
        "2",
    ]);
    let pop3 = listeners.pop3.expect("pop3");
    let mut first = Raw::connect(pop3);
    let _second = Raw::connect(pop3);
    // The third from the same address is turned away before its greeting.
    let third = TcpStream::connect(pop3).expect("connect");
    third.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let mut refused = String::new();
    BufReader::new(third).read_line(&mut refused).expect("read");
    assert!(refused.starts_with("-ERR [SYS/TEMP]"), "{refused}");
    // Two logins a minute: the third attempt is "try later", not checked.
    for attempt in 0..3 {
        first.send(format!("USER {ADDRESS}\r\nPASS x\r\n").as_bytes());
        assert!(first.line().starts_with("+OK"), "USER {attempt}");
        let answer = first.line();
        if attempt < 2 {
            assert!(answer.starts_with("+OK"), "login {attempt}: {answer}");
            first.send(b"RSET\r\n");
            assert!(first.line().starts_with("+OK"));
            // A logged-in session cannot log in again: QUIT and reconnect.
            first.send(b"QUIT\r\n");
            assert!(first.line().starts_with("+OK"));
            first = Raw::connect(pop3);
        } else {
            assert!(
                answer.starts_with("-ERR [SYS/TEMP]"),
                "login {attempt}: {answer}"
            );
        }
    }
    assert!(server.metric_total("mayfly_mailbox_sessions_refused_total") >= 1);
    assert!(server.metric_total("mayfly_pop3_login_failures_total") >= 1);
}
