//! IMAP on the real binary with real clients: Python's imaplib (plain, STARTTLS, implicit
//! TLS), curl's imap:// URLs, mbsync syncing an inbox into a Maildir, and raw bytes for
//! IDLE and the edge cases (literals split across reads, partial fetches, UID ranges with
//! `*`, an empty mailbox, pipelined commands, a message deleted over HTTP while selected).
//!
//! Messages go in over SMTP and are compared byte for byte with HTTP's `/raw`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, ScratchDir, Server, TlsListeners, inbox_path, unhex};
use serde_json::Value;

const ADDRESS: &str = "imap.user@example.test";

fn start(extra: &[&str]) -> (Server, TlsListeners) {
    let mut args = vec!["--imap", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Server::start_tls(&args)
}

fn start_with_tls(extra: &[&str]) -> (Server, TlsListeners) {
    let mut args = vec![
        "--imap",
        "127.0.0.1:0",
        "--imaps",
        "127.0.0.1:0",
        "--tls-self-signed",
        "--hostname",
        "mx.example.test",
    ];
    args.extend_from_slice(extra);
    Server::start_tls(&args)
}

/// Delivers `count` messages to `address` over SMTP, without reading them over HTTP.
fn deliver(server: &Server, address: &str, count: usize) {
    let mut smtp = server.smtp_ehlo();
    for n in 0..count {
        let body = format!(
            "From: Sender <sender@example.org>\r\nTo: {address}\r\nSubject: message {n}\r\n\
             Date: Sat, 05 Dec 2026 10:00:0{n} +0000\r\nMessage-ID: <m{n}@example.org>\r\n\r\n\
             body of message {n}\r\n.a dotted line\r\n"
        );
        smtp.send_mail("sender@example.org", &[address], body.as_bytes());
    }
    server.wait_inbox_total(address, count as u64);
}

/// The inbox's messages as HTTP serves them (marks them seen), oldest first, with ids.
fn raws(server: &Server, address: &str) -> Vec<(String, Vec<u8>)> {
    let listing = server.inbox(address);
    let mut raws: Vec<(String, Vec<u8>)> = listing["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|message| {
            let id = message["id"].as_str().expect("id").to_string();
            let raw = server.raw(address, &id);
            (id, raw)
        })
        .collect();
    raws.reverse();
    raws
}

fn seen_flags(server: &Server, address: &str) -> Vec<bool> {
    let mut flags: Vec<bool> = server.inbox(address)["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|message| message["seen"].as_bool().expect("seen"))
        .collect();
    flags.reverse();
    flags
}

fn client_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("clients")
        .join(name)
}

fn imaplib(addr: SocketAddr, mode: &str, user: &str, extra: &[&str]) -> Value {
    let output = Command::new("python3")
        .arg(client_script("imap_imaplib.py"))
        .args(["127.0.0.1", &addr.port().to_string(), mode, user])
        .args(extra)
        .output()
        .unwrap_or_else(|error| panic!("python3 is required for this test: {error}"));
    assert!(
        output.status.success(),
        "imap_imaplib.py failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the script prints JSON")
}

#[test]
fn imaplib_selects_fetches_byte_exact_searches_and_expunges() {
    let (server, listeners) = start(&[]);
    let imap = listeners.imap.expect("imap listener");
    deliver(&server, ADDRESS, 3);
    let report = imaplib(
        imap,
        "plain",
        "IMAP.User@Example.TEST",
        &["--search", "SUBJECT \"message 1\""],
    );
    let capabilities = report["capabilities"].as_array().expect("capabilities");
    for capability in [
        "IMAP4REV1",
        "IDLE",
        "LITERAL+",
        "UIDPLUS",
        "ENABLE",
        "NAMESPACE",
    ] {
        assert!(
            capabilities.iter().any(|c| c
                .as_str()
                .is_some_and(|c| c.eq_ignore_ascii_case(capability))),
            "{capability} missing from {capabilities:?}"
        );
    }
    assert_eq!(report["login"], "OK");
    assert!(report["list"][0].as_str().expect("list").contains("INBOX"));
    assert_eq!(report["exists"], 3);
    // BODY.PEEK[] did not mark anything read.
    assert_eq!(seen_flags(&server, ADDRESS), vec![false, false, false]);
    let raws = raws(&server, ADDRESS);
    let messages = report["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 3);
    let mut uids = Vec::new();
    for (message, (_, raw)) in messages.iter().zip(&raws) {
        assert_eq!(unhex(&message["raw"]), *raw, "byte for byte");
        assert_eq!(message["size"].as_u64(), Some(raw.len() as u64));
        let meta = message["meta"].as_str().expect("meta");
        assert!(
            meta.contains("ENVELOPE (\"Sat, 05 Dec 2026 10:00:0"),
            "{meta}"
        );
        assert!(
            meta.to_ascii_uppercase()
                .contains("BODYSTRUCTURE (\"TEXT\" \"PLAIN\""),
            "{meta}"
        );
        uids.push(message["uid"].as_u64().expect("uid"));
    }
    assert!(
        uids.windows(2).all(|pair| pair[0] < pair[1]),
        "UIDs ascend: {uids:?}"
    );
    assert_eq!(report["search"], serde_json::json!([uids[1]]));
    // A second session flags the first message deleted and expunges it: gone over HTTP.
    let report = imaplib(imap, "plain", ADDRESS, &["--expunge-first"]);
    assert_eq!(report["expunged"], serde_json::json!([1]));
    assert_eq!(server.inbox(ADDRESS)["total"], 2);
    let status = report["status"].as_str().expect("status");
    assert!(status.contains("MESSAGES 2"), "{status}");
    assert!(server.metric_total("mayfly_imap_logins_total") >= 2);
    assert!(server.metric_total("mayfly_imap_commands_total") >= 10);
    assert!(server.metric_total("mayfly_imap_bytes_sent_total") > 3 * 300);
}

#[test]
fn imaplib_over_starttls_and_implicit_tls() {
    let (server, listeners) = start_with_tls(&[]);
    deliver(&server, ADDRESS, 2);
    let plain = imaplib(listeners.imap.expect("imap"), "starttls", ADDRESS, &[]);
    assert_eq!(plain["starttls"], "OK");
    let tls = imaplib(listeners.imaps.expect("imaps"), "ssl", ADDRESS, &[]);
    let raws = raws(&server, ADDRESS);
    for report in [&plain, &tls] {
        assert_eq!(unhex(&report["messages"][1]["raw"]), raws[1].1);
    }
}

#[test]
fn curl_fetches_by_uid_and_searches() {
    let (server, listeners) = start(&[]);
    deliver(&server, ADDRESS, 2);
    let port = listeners.imap.expect("imap").port();
    let curl = |url: String, extra: &[&str]| -> Vec<u8> {
        let output = Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "10", "--user"])
            .arg(format!("{ADDRESS}:secret"))
            .args(extra)
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
    let search = String::from_utf8(curl(
        format!("imap://127.0.0.1:{port}/INBOX"),
        &["--request", "UID SEARCH ALL"],
    ))
    .expect("text");
    let uids: Vec<&str> = search
        .trim()
        .strip_prefix("* SEARCH ")
        .expect("a SEARCH response")
        .split(' ')
        .collect();
    assert_eq!(uids.len(), 2, "{search}");
    let fetched = curl(
        format!("imap://127.0.0.1:{port}/INBOX;UID={}", uids[1]),
        &[],
    );
    assert_eq!(fetched, raws(&server, ADDRESS)[1].1);
}

#[test]
fn mbsync_pulls_the_inbox_into_a_maildir() {
    let (server, listeners) = start(&[]);
    deliver(&server, ADDRESS, 3);
    let dir = ScratchDir::new("mbsync");
    let maildir = dir.path().join("mail");
    std::fs::create_dir_all(&maildir).expect("mkdir");
    let config = dir.path().join("mbsyncrc");
    std::fs::write(
        &config,
        format!(
            "IMAPAccount mayfly\nHost 127.0.0.1\nPort {}\nUser {ADDRESS}\nPass secret\n\
             SSLType None\nAuthMechs LOGIN\nTimeout 10\n\n\
             IMAPStore remote\nAccount mayfly\n\n\
             MaildirStore local\nPath {}/\nInbox {}/INBOX\n\n\
             Channel inbox\nFar :remote:\nNear :local:\nPatterns INBOX\nSync Pull\nCreate Near\n",
            listeners.imap.expect("imap").port(),
            maildir.display(),
            maildir.display()
        ),
    )
    .expect("write config");
    let output = Command::new("mbsync")
        .arg("--config")
        .arg(&config)
        .arg("--all")
        .env("HOME", dir.path())
        .output()
        .expect("mbsync is installed (tests/run.sh)");
    assert!(
        output.status.success(),
        "mbsync failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut files: Vec<Vec<u8>> = std::fs::read_dir(maildir.join("INBOX").join("new"))
        .into_iter()
        .chain(std::fs::read_dir(maildir.join("INBOX").join("cur")))
        .flatten()
        .map(|entry| std::fs::read(entry.expect("entry").path()).expect("read"))
        // mbsync adds its own tracking header; the rest is the message.
        .map(|bytes| {
            String::from_utf8(bytes)
                .expect("text")
                .lines()
                .filter(|line| !line.starts_with("X-TUID: "))
                .map(|line| format!("{line}\n"))
                .collect::<String>()
                .into_bytes()
        })
        .collect();
    assert_eq!(files.len(), 3, "three messages in the Maildir");
    // A Maildir holds LF line ends; otherwise the bytes are the server's.
    let mut expected: Vec<Vec<u8>> = raws(&server, ADDRESS)
        .into_iter()
        .map(|(_, raw)| {
            String::from_utf8(raw)
                .expect("text")
                .replace("\r\n", "\n")
                .into_bytes()
        })
        .collect();
    files.sort();
    expected.sort();
    assert_eq!(files, expected);
}

/// A raw IMAP connection.
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
        let greeting = raw.line();
        assert!(greeting.starts_with("* OK"), "greeting: {greeting}");
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

    /// Reads up to and including the tagged response of `tag`, literals included; returns
    /// everything read.
    fn until_tagged(&mut self, tag: &str) -> String {
        let mut all = String::new();
        loop {
            let line = self.line();
            assert!(!line.is_empty(), "closed before {tag} completed; got {all}");
            all.push_str(&line);
            if let Some(size) = literal_size(&line) {
                let mut literal = vec![0u8; size];
                self.reader.read_exact(&mut literal).expect("literal");
                all.push_str(&String::from_utf8_lossy(&literal));
                continue;
            }
            if line.starts_with(&format!("{tag} ")) {
                return all;
            }
        }
    }

    fn command(&mut self, tag: &str, command: &str) -> String {
        self.send(format!("{tag} {command}\r\n").as_bytes());
        self.until_tagged(tag)
    }
}

fn literal_size(line: &str) -> Option<usize> {
    let line = line.trim_end();
    let open = line.strip_suffix('}')?.rfind('{')?;
    line[open + 1..line.len() - 1].parse().ok()
}

fn login_select(addr: SocketAddr, address: &str) -> Raw {
    let mut imap = Raw::connect(addr);
    assert!(
        imap.command("a", &format!("LOGIN \"{address}\" x"))
            .contains("a OK")
    );
    assert!(
        imap.command("b", "SELECT INBOX")
            .contains("b OK [READ-WRITE]")
    );
    imap
}

#[test]
fn idle_sees_new_mail_deletions_and_expiry_as_they_happen() {
    let (server, listeners) = start(&["--ttl", "3s"]);
    let imap_addr = listeners.imap.expect("imap");
    let mut imap = login_select(imap_addr, ADDRESS);
    imap.send(b"i IDLE\r\n");
    assert!(imap.line().starts_with("+ "), "idling");
    // A message arrives: EXISTS right after its 250.
    let mut smtp = server.smtp_ehlo();
    let sent_at = Instant::now();
    smtp.send_mail(
        "s@example.org",
        &[ADDRESS],
        b"Subject: live\r\n\r\nbody\r\n",
    );
    let exists = imap.line();
    let latency = sent_at.elapsed();
    assert_eq!(exists, "* 1 EXISTS\r\n");
    eprintln!("EXISTS {latency:?} after the message was sent");
    // Deleted over HTTP: EXPUNGE.
    let id = server.inbox(ADDRESS)["messages"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(
        server
            .delete(&format!("{}/messages/{id}", inbox_path(ADDRESS)))
            .status,
        204
    );
    assert_eq!(imap.line(), "* 1 EXPUNGE\r\n");
    // Expiry: a message stored now is gone after the 3 s TTL, and IDLE says so.
    smtp.send_mail(
        "s@example.org",
        &[ADDRESS],
        b"Subject: short-lived\r\n\r\nbody\r\n",
    );
    assert_eq!(imap.line(), "* 1 EXISTS\r\n");
    let expunge = imap.line();
    assert_eq!(expunge, "* 1 EXPUNGE\r\n");
    imap.send(b"DONE\r\n");
    assert!(imap.until_tagged("i").contains("i OK"));
    assert!(imap.command("z", "LOGOUT").contains("* BYE"));
}

#[test]
fn edge_cases_over_raw_bytes() {
    let (server, listeners) = start(&[]);
    let imap_addr = listeners.imap.expect("imap");
    // An empty mailbox: SELECT works, UID FETCH 1:* answers nothing, FETCH 1:* is refused.
    let mut imap = login_select(imap_addr, "empty@example.test");
    let uid_fetch_empty = imap.command("c", "UID FETCH 1:* (FLAGS)");
    assert!(
        uid_fetch_empty.starts_with("c OK") && !uid_fetch_empty.contains("FETCH ("),
        "{uid_fetch_empty}"
    );
    let fetch_empty = imap.command("d", "FETCH 1:* (FLAGS)");
    assert!(
        fetch_empty.contains("d BAD") || fetch_empty.contains("d NO"),
        "{fetch_empty}"
    );
    drop(imap);

    deliver(&server, ADDRESS, 3);
    // Literals split across reads, byte by byte, for LOGIN.
    let mut imap = Raw::connect(imap_addr);
    imap.send(format!("a LOGIN {{{}}}\r\n", ADDRESS.len()).as_bytes());
    assert!(
        imap.line().starts_with("+ "),
        "continuation for a synchronizing literal"
    );
    for byte in ADDRESS.bytes() {
        imap.send(&[byte]);
        std::thread::sleep(Duration::from_millis(2));
    }
    imap.send(b" {1+}\r\nx\r\n");
    assert!(imap.until_tagged("a").contains("a OK"));
    // Pipelined commands, answered in order.
    imap.send(
        b"b SELECT INBOX\r\nc UID FETCH 1:* (UID)\r\nd FETCH 2 (BODY.PEEK[]<0.10>)\r\ne NOOP\r\n",
    );
    let answers = imap.until_tagged("e");
    let positions: Vec<usize> = ["b OK", "c OK", "d OK", "e OK"]
        .iter()
        .map(|tag| {
            answers
                .find(tag)
                .unwrap_or_else(|| panic!("{tag} in {answers}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "{answers}"
    );
    // BODY[]<0.10>: the first ten octets of the stored message.
    let raws = raws(&server, ADDRESS);
    let first_ten = String::from_utf8_lossy(&raws[1].1[..10]).to_string();
    assert!(
        answers.contains(&format!("BODY[]<0> {{10}}\r\n{first_ten}")),
        "{answers}"
    );
    // UID ranges with *: the last message, however large the range's start.
    let last = imap.command("f", "UID FETCH 4000000000:* (UID)");
    assert!(last.contains("* 3 FETCH (UID "), "{last}");
    // Deleted over HTTP while selected: EXPUNGE at the next command.
    assert_eq!(
        server
            .delete(&format!("{}/messages/{}", inbox_path(ADDRESS), raws[0].0))
            .status,
        204
    );
    let noop = imap.command("g", "NOOP");
    assert!(noop.contains("* 1 EXPUNGE"), "{noop}");
    assert!(imap.command("k", "LOGOUT").contains("* BYE"));

    // Read and unread, shared with HTTP, on an inbox nobody read over HTTP: BODY[] (not
    // PEEK) marks read, STORE sets and clears \Seen.
    let flags_address = "flags@example.test";
    deliver(&server, flags_address, 2);
    let mut imap = login_select(imap_addr, flags_address);
    let peeked = imap.command("h", "FETCH 1 (BODY.PEEK[TEXT])");
    assert!(!peeked.contains("\\Seen"), "{peeked}");
    assert_eq!(seen_flags(&server, flags_address), vec![false, false]);
    let fetched = imap.command("i", "FETCH 1 (BODY[TEXT])");
    assert!(fetched.contains("\\Seen"), "{fetched}");
    assert_eq!(seen_flags(&server, flags_address), vec![true, false]);
    assert!(
        imap.command("j", "STORE 2 +FLAGS (\\Seen)")
            .contains("j OK")
    );
    assert!(
        imap.command("k", "STORE 1 -FLAGS.SILENT (\\Seen)")
            .contains("k OK")
    );
    assert_eq!(seen_flags(&server, flags_address), vec![false, true]);
    let search = imap.command("l", "UID SEARCH UNSEEN");
    assert!(search.contains("* SEARCH "), "{search}");
}

#[test]
fn mutt_reads_the_inbox_and_copies_every_message() {
    let (server, listeners) = start(&[]);
    deliver(&server, ADDRESS, 3);
    let dir = ScratchDir::new("mutt");
    let rc = dir.path().join("muttrc");
    let mbox = dir.path().join("copied.mbox");
    std::fs::write(
        &rc,
        format!(
            "set imap_user=\"{ADDRESS}\"\nset imap_pass=\"x\"\nset ssl_starttls=no\nset ssl_force_tls=no\n\
             set mbox_type=mbox\nset confirmappend=no\nset confirmcreate=no\nset move=no\n\
             set quit=yes\nset record=\"\"\n"
        ),
    )
    .expect("write muttrc");
    // mutt wants a terminal; `script` gives it one. The pushed keys tag every message,
    // copy them to an mbox and quit.
    let mutt = format!(
        "mutt -n -F {} -f imap://127.0.0.1:{}/INBOX -e 'push \"<tag-pattern>~A<enter>\
         <tag-prefix><copy-message>{}<enter><quit>\"'",
        rc.display(),
        listeners.imap.expect("imap").port(),
        mbox.display()
    );
    let output = Command::new("timeout")
        .args(["20", "script", "-q", "-c", &mutt, "/dev/null"])
        .env("TERM", "vt100")
        .current_dir(dir.path())
        .output()
        .expect("mutt and script are installed (tests/run.sh)");
    assert!(
        output.status.success(),
        "mutt under script: {:?}",
        output.status
    );
    let copied = std::fs::read_to_string(&mbox).unwrap_or_else(|error| {
        panic!(
            "mutt wrote no mbox ({error}); its screen: {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    assert_eq!(
        copied.matches("\nFrom ").count() + usize::from(copied.starts_with("From ")),
        3
    );
    for (_, raw) in raws(&server, ADDRESS) {
        let raw = String::from_utf8(raw).expect("text").replace("\r\n", "\n");
        let (header, body) = raw.split_once("\n\n").expect("header and body");
        for line in header
            .lines()
            .filter(|line| line.starts_with("Subject:") || line.starts_with("Message-ID:"))
        {
            assert!(copied.contains(line), "{line} in the mbox");
        }
        // mbox quoting turns a body line "From ..." into ">From ..."; ours have none.
        assert!(copied.contains(body), "body in the mbox");
    }
}

#[test]
fn fetchmail_over_imap_fetches_and_deletes() {
    let (server, listeners) = start_with_tls(&[]);
    deliver(&server, ADDRESS, 2);
    let dir = ScratchDir::new("fetchmail");
    let out_dir = dir.path().join("delivered");
    std::fs::create_dir(&out_dir).expect("mkdir");
    let rc = dir.path().join("fetchmailrc");
    let mda = format!("/bin/sh -c 'cat > {}/$$'", out_dir.display());
    std::fs::write(
        &rc,
        format!(
            "poll 127.0.0.1 service {} protocol imap timeout 10\n  user \"{ADDRESS}\" \
             password \"x\" ssl no sslcertck mda \"{mda}\"\n",
            listeners.imaps.expect("imaps").port()
        ),
    )
    .expect("write rc");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let output = Command::new("fetchmail")
        .arg("--fetchmailrc")
        .arg(&rc)
        .args(["--nodetach", "--nosyslog", "--idfile"])
        .arg(dir.path().join("ids"))
        .env("HOME", dir.path())
        .output()
        .expect("fetchmail is installed (tests/run.sh)");
    assert_eq!(
        output.status.code(),
        Some(0),
        "fetchmail: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let delivered = std::fs::read_dir(&out_dir).expect("read dir").count();
    assert_eq!(delivered, 2);
    // fetchmail flags what it fetched \Deleted and expunges: gone over HTTP too.
    assert_eq!(server.inbox(ADDRESS)["total"], 0);
}

#[test]
fn http_patch_of_seen_reaches_an_idling_client_and_bad_bodies_are_refused() {
    let (server, listeners) = start(&[]);
    deliver(&server, ADDRESS, 1);
    let id = server.inbox(ADDRESS)["messages"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let path = format!("{}/messages/{id}", inbox_path(ADDRESS));
    let mut imap = login_select(listeners.imap.expect("imap"), ADDRESS);
    imap.send(b"i IDLE\r\n");
    assert!(imap.line().starts_with("+ "));
    let patched = server.http("PATCH", &path, Some(br#"{"seen": true}"#));
    assert_eq!(patched.status, 200, "{}", patched.describe());
    assert_eq!(patched.json()["seen"], true);
    let flags = imap.line();
    assert_eq!(flags, "* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n");
    let patched = server.http("PATCH", &path, Some(br#"{"seen": false}"#));
    assert_eq!(patched.json()["seen"], false);
    assert_eq!(imap.line(), "* 1 FETCH (UID 1 FLAGS ())\r\n");
    imap.send(b"DONE\r\n");
    assert!(imap.until_tagged("i").contains("i OK"));
    for body in [
        &b"{}"[..],
        br#"{"seen": 1}"#,
        br#"{"seen": true, "subject": "x"}"#,
        b"not json",
    ] {
        server
            .http("PATCH", &path, Some(body))
            .assert_error(400, "bad_request");
    }
    server
        .http(
            "PATCH",
            &format!("{}/messages/0000000000000000000000001", inbox_path(ADDRESS)),
            Some(br#"{"seen": true}"#),
        )
        .assert_error(404, "not_found");
}
