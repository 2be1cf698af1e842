//! Real SMTP clients against the real binary: lettre (Rust), Python's smtplib and swaks.
//!
//! Each test sends through an ordinary client library, then reads every accepted message
//! back over HTTP and compares the stored bytes, after our `Received:` header, with the
//! bytes the client put on the wire (after dot-unstuffing). Per RFC 5321 4.1.1.4 the
//! CRLF before the terminating `.` belongs to the message, so a client that sends
//! `M` followed by `CRLF.CRLF` has sent `M` + CRLF.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{Message, SmtpTransport, Transport};
use serde_json::Value;

use common::{Server, assert_bytes_eq, strip_received};

const SENDER: &str = "sender@sender.test";

/// Length of a message id in the server's text form (see src/store/id.rs).
const MESSAGE_ID_LEN: usize = 27;

fn lettre_transport(server: &Server) -> SmtpTransport {
    SmtpTransport::builder_dangerous("127.0.0.1")
        .port(server.smtp_port())
        .timeout(Some(common::IO_TIMEOUT))
        .build()
}

/// Sends `message` with lettre and checks the `250 2.0.0 Ok: queued as <qid>` answer.
fn lettre_send(transport: &SmtpTransport, message: &Message) {
    let response = transport
        .send(message)
        .unwrap_or_else(|error| panic!("lettre send failed: {error}"));
    assert_eq!(response.code().to_string(), "250");
    let first = response.first_line().unwrap_or_default();
    assert!(
        first.starts_with("2.0.0 Ok: queued as "),
        "final DATA reply {first:?}"
    );
}

/// What lettre puts between DATA and the final dot, unstuffed: the formatted message,
/// then the CRLF that precedes `.` CRLF.
fn lettre_wire_bytes(message: &Message) -> Vec<u8> {
    let mut bytes = message.formatted();
    bytes.extend_from_slice(b"\r\n");
    bytes
}

fn mailbox(address: &str) -> Mailbox {
    address
        .parse()
        .unwrap_or_else(|error| panic!("bad test address {address}: {error}"))
}

/// The shard that stored a message, from the id layout documented in src/store/id.rs
/// (13 hex digits of boot time, then 2 of shard index). Clients must not do this; the
/// test does it only to prove that both shards were used.
fn shard_of(id: &str) -> String {
    assert_eq!(id.len(), MESSAGE_ID_LEN, "unexpected id form {id:?}");
    id[13..15].to_string()
}

fn check_summary(summary: &Value, from: &str, to: &str, subject: &str, raw_len: usize) {
    assert_eq!(summary["from"], from, "summary {summary}");
    assert_eq!(summary["to"], serde_json::json!([to]), "summary {summary}");
    assert_eq!(summary["subject"], subject, "summary {summary}");
    assert_eq!(
        summary["size"].as_u64(),
        Some(raw_len as u64),
        "size is the stored size: {summary}"
    );
}

#[test]
fn lettre_plain_message_to_one_recipient_is_stored_byte_exact() {
    let server = Server::start(&["--domain", "example.test"]);
    let recipient = "plain.one@example.test";
    let message = Message::builder()
        .from(mailbox(SENDER))
        .to(mailbox(recipient))
        .subject("Plain hello")
        .header(ContentType::TEXT_PLAIN)
        .body(String::from(
            "Hello from lettre.\r\n.a line that starts with a dot\r\n\r\nBye.\r\n",
        ))
        .expect("build message");
    lettre_send(&lettre_transport(&server), &message);

    let expected = lettre_wire_bytes(&message);
    let summary = server.assert_single_stored(recipient, &expected);
    let id = summary["id"].as_str().expect("id");
    let raw = server.raw(recipient, id);
    check_summary(&summary, SENDER, recipient, "Plain hello", raw.len());
    let preview = summary["preview"].as_str().unwrap_or_default();
    assert!(
        preview.starts_with("Hello from lettre."),
        "preview {preview:?}"
    );
}

#[test]
fn lettre_multipart_to_many_recipients_lands_in_every_inbox_on_both_shards() {
    let server = Server::start(&["--cores", "2", "--domain", "example.test"]);
    // 24 distinct inboxes: the chance that all hash to one of two shards is 2^-23.
    let recipients: Vec<String> = (0..24).map(|i| format!("multi{i}@example.test")).collect();
    let mut builder = Message::builder()
        .from(mailbox(SENDER))
        .subject("Multipart to many");
    for recipient in &recipients {
        builder = builder.to(mailbox(recipient));
    }
    let attachment_bytes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let message = builder
        .multipart(
            MultiPart::mixed()
                .multipart(MultiPart::alternative_plain_html(
                    String::from("Plain part.\r\n.dot line\r\n"),
                    String::from("<p>HTML <b>part</b></p>"),
                ))
                .singlepart(Attachment::new(String::from("data.bin")).body(
                    attachment_bytes,
                    ContentType::parse("application/octet-stream").expect("content type"),
                ))
                .singlepart(SinglePart::plain(String::from("Zoë says hej då ✓\r\n"))),
        )
        .expect("build message");
    let transport = lettre_transport(&server);
    lettre_send(&transport, &message);

    let expected = lettre_wire_bytes(&message);
    let mut shards = BTreeSet::new();
    for recipient in &recipients {
        let summary = server.assert_single_stored(recipient, &expected);
        let id = summary["id"].as_str().expect("id");
        let raw = server.raw(recipient, id);
        check_summary(&summary, SENDER, recipient, "Multipart to many", raw.len());
        shards.insert(shard_of(id));
    }
    assert_eq!(
        shards.len(),
        2,
        "24 inboxes should use both shards, got {shards:?}"
    );
}

#[test]
fn lettre_several_messages_to_one_inbox_are_listed_newest_first() {
    let server = Server::start(&["--cores", "2"]);
    let recipient = "Mixed.Case@Example.Test";
    let inbox_key = "mixed.case@example.test";
    let transport = lettre_transport(&server);
    let mut sent = Vec::new();
    for index in 0..5 {
        let message = Message::builder()
            .from(mailbox(SENDER))
            .to(mailbox(recipient))
            .subject(format!("Number {index}"))
            .body(format!("Body {index}\r\n"))
            .expect("build message");
        lettre_send(&transport, &message);
        sent.push(lettre_wire_bytes(&message));
    }
    let inbox = server.wait_inbox_total(inbox_key, 5);
    assert_eq!(inbox["address"], inbox_key);
    let messages = inbox["messages"].as_array().expect("messages array");
    assert_eq!(messages.len(), 5);
    for (position, summary) in messages.iter().enumerate() {
        let index = 4 - position;
        assert_eq!(
            summary["subject"],
            format!("Number {index}"),
            "newest first: {inbox}"
        );
        let raw = server.raw(inbox_key, summary["id"].as_str().expect("id"));
        assert_bytes_eq(strip_received(&raw), &sent[index], inbox_key);
    }
    assert_eq!(
        inbox["next_after"], messages[0]["id"],
        "next_after is the newest id"
    );
}

#[test]
fn lettre_utf8_local_part_uses_smtputf8() {
    let server = Server::start(&[]);
    let recipient = "zoë.jørgensen@example.test";
    let message = Message::builder()
        .from(mailbox("ünïcode@sender.test"))
        .to(mailbox(recipient))
        .subject("Grüße")
        .body(String::from("Ünïcödé body\r\n"))
        .expect("build message");
    lettre_send(&lettre_transport(&server), &message);
    let summary = server.assert_single_stored(recipient, &lettre_wire_bytes(&message));
    assert_eq!(
        summary["subject"], "Grüße",
        "RFC 2047 subject decoded: {summary}"
    );
    assert_eq!(summary["from"], "ünïcode@sender.test");
}

// ---------------------------------------------------------------------------------------
// Python smtplib

fn client_script(name: &str) -> PathBuf {
    // The same file compiles in the package (relative `file!()`, cwd = package root)
    // and in a scratch crate that includes it by absolute path.
    let here = PathBuf::from(file!());
    let candidates = [
        here.parent().map(|dir| dir.join("clients").join(name)),
        Some(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/clients")
                .join(name),
        ),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("tests/clients/{name} not found"))
}

fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("mayfly-itest-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).expect("write temp file");
    path
}

/// Runs send_smtplib.py; returns its JSON report. Fails the test if python3 is missing.
fn smtplib_send(server: &Server, args: &[&str]) -> Value {
    let script = client_script("send_smtplib.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(server.smtp_port().to_string())
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!("python3 is required for this test (install Python 3): {error}")
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "send_smtplib.py {args:?} failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|error| panic!("send_smtplib.py printed no JSON ({error}): {stdout}"))
}

fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut accumulator = 0u32;
    let mut n_bits = 0;
    for byte in text.bytes().filter(|&b| b != b'=') {
        let value = ALPHABET
            .iter()
            .position(|&c| c == byte)
            .unwrap_or_else(|| panic!("bad base64 byte {byte}")) as u32;
        accumulator = (accumulator << 6) | value;
        n_bits += 6;
        if n_bits >= 8 {
            n_bits -= 8;
            out.push((accumulator >> n_bits) as u8);
            accumulator &= (1 << n_bits) - 1;
        }
    }
    out
}

fn features_of(report: &Value) -> Vec<String> {
    report["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| f.as_str().unwrap_or_default().to_ascii_uppercase())
        .collect()
}

#[test]
fn smtplib_sendmail_to_several_recipients_is_stored_in_each_inbox() {
    let server = Server::start(&["--cores", "2", "--domain", "example.test"]);
    let message = b"From: py@sender.test\r\nTo: undisclosed-recipients:;\r\nSubject: From smtplib\r\n\r\nLine one\r\n.Line with a dot\r\n..two dots\r\n.\r\n\r\nend\r\n";
    let file = temp_file("smtplib-multi.eml", message);
    let recipients: Vec<String> = (0..6).map(|i| format!("py{i}@example.test")).collect();
    let mut args = vec![
        "--from",
        "py@sender.test",
        "--message-file",
        file.to_str().expect("utf-8 path"),
    ];
    for recipient in &recipients {
        args.extend(["--to", recipient.as_str()]);
    }
    let report = smtplib_send(&server, &args);
    let _ = std::fs::remove_file(&file);
    assert_eq!(report["refused"], serde_json::json!({}), "report {report}");
    let features = features_of(&report);
    for keyword in [
        "PIPELINING",
        "SIZE",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
    ] {
        assert!(
            features.iter().any(|f| f == keyword),
            "EHLO lacks {keyword}: {features:?}"
        );
    }
    let sent = decode_base64(report["sent_b64"].as_str().expect("sent_b64"));
    assert_eq!(sent, message, "the script sends the file unchanged");
    for recipient in &recipients {
        let summary = server.assert_single_stored(recipient, &sent);
        assert_eq!(summary["from"], "py@sender.test");
        assert_eq!(summary["to"], serde_json::json!([recipient]));
    }
}

#[test]
fn smtplib_sendmail_with_smtputf8_to_a_utf8_mailbox() {
    let server = Server::start(&["--domain", "example.test"]);
    let recipient = "jörg@example.test";
    let message = "From: björn@sender.test\r\nTo: jörg@example.test\r\nSubject: UTF-8 everywhere ✓\r\n\r\nHallå, Jörg!\r\n";
    let file = temp_file("smtplib-utf8.eml", message.as_bytes());
    let report = smtplib_send(
        &server,
        &[
            "--from",
            "björn@sender.test",
            "--to",
            recipient,
            "--smtputf8",
            "--message-file",
            file.to_str().expect("utf-8 path"),
        ],
    );
    let _ = std::fs::remove_file(&file);
    assert_eq!(report["refused"], serde_json::json!({}), "report {report}");
    let summary = server.assert_single_stored(recipient, message.as_bytes());
    assert_eq!(summary["from"], "björn@sender.test");
    assert_eq!(summary["to"], serde_json::json!([recipient]));
    assert_eq!(summary["subject"], "UTF-8 everywhere ✓");
}

#[test]
fn smtplib_multipart_built_with_the_email_package() {
    let server = Server::start(&["--cores", "2"]);
    let recipients = ["mp.a@example.test", "mp.b@another.test"];
    let report = smtplib_send(
        &server,
        &[
            "--from",
            "py@sender.test",
            "--to",
            recipients[0],
            "--to",
            recipients[1],
            "--build-multipart",
            "Built by email.message",
        ],
    );
    let sent = decode_base64(report["sent_b64"].as_str().expect("sent_b64"));
    assert!(
        sent.windows(9).any(|w| w == b"multipart"),
        "script built a multipart message"
    );
    for recipient in recipients {
        let summary = server.assert_single_stored(recipient, &sent);
        assert_eq!(summary["subject"], "Built by email.message");
        assert_eq!(
            summary["date"], "2026-11-27T22:15:44Z",
            "Date header as RFC 3339 UTC"
        );
    }
}

// ---------------------------------------------------------------------------------------
// swaks

/// Runs swaks; fails the test with an install hint if it is missing.
fn swaks(server: &Server, args: &[&str]) -> String {
    let output = Command::new("swaks")
        .arg("--server")
        .arg(format!("127.0.0.1:{}", server.smtp_port()))
        .args(["--timeout", "10"])
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!("swaks is not installed ({error}); install it with `apt-get install -y swaks`")
        });
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "swaks {args:?} failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Rebuilds the message swaks sent from its transcript: the ` -> ` lines after
/// ` -> DATA` up to ` -> .`, each with CRLF, with the dot-stuffing undone.
fn swaks_sent_message(transcript: &str) -> Vec<u8> {
    let mut lines = transcript
        .lines()
        .filter_map(|line| line.strip_prefix(" -> "))
        .skip_while(|line| !line.eq_ignore_ascii_case("DATA"))
        .skip(1);
    let mut message = Vec::new();
    for line in lines.by_ref() {
        if line == "." {
            return message;
        }
        let line = line
            .strip_prefix('.')
            .filter(|_| line.starts_with(".."))
            .unwrap_or(line);
        message.extend_from_slice(line.as_bytes());
        message.extend_from_slice(b"\r\n");
    }
    panic!("no end of DATA in swaks transcript:\n{transcript}");
}

fn swaks_queue_id_line(transcript: &str) -> bool {
    transcript
        .lines()
        .any(|line| line.starts_with("<-  250 2.0.0 Ok: queued as "))
}

#[test]
fn swaks_default_message_is_stored_byte_exact() {
    let server = Server::start(&["--domain", "example.test"]);
    let recipient = "swaks.one@example.test";
    let transcript = swaks(
        &server,
        &[
            "--to",
            recipient,
            "--from",
            "swaks@sender.test",
            "--header",
            "Subject: swaks says hi",
            "--body",
            "first line\n.starts with a dot\n..two\nlast",
        ],
    );
    assert!(
        swaks_queue_id_line(&transcript),
        "no queued-as reply:\n{transcript}"
    );
    let sent = swaks_sent_message(&transcript);
    assert!(
        sent.windows(18).any(|w| w == b".starts with a dot"),
        "transcript parse: {:?}",
        String::from_utf8_lossy(&sent)
    );
    let summary = server.assert_single_stored(recipient, &sent);
    assert_eq!(summary["subject"], "swaks says hi");
}

#[test]
fn swaks_pipelined_to_several_recipients() {
    let server = Server::start(&["--cores", "2", "--domain", "example.test"]);
    let recipients = ["sw1@example.test", "sw2@example.test", "sw3@example.test"];
    let transcript = swaks(
        &server,
        &[
            "--pipeline",
            "--to",
            &recipients.join(","),
            "--from",
            "swaks@sender.test",
            "--header",
            "Subject: pipelined swaks",
            "--body",
            "pipelined body",
        ],
    );
    assert!(
        swaks_queue_id_line(&transcript),
        "no queued-as reply:\n{transcript}"
    );
    let sent = swaks_sent_message(&transcript);
    for recipient in recipients {
        server.assert_single_stored(recipient, &sent);
    }
}

#[test]
fn swaks_relay_attempt_is_refused_with_550() {
    let server = Server::start(&["--domain", "example.test"]);
    let output = Command::new("swaks")
        .arg("--server")
        .arg(format!("127.0.0.1:{}", server.smtp_port()))
        .args([
            "--timeout",
            "10",
            "--to",
            "victim@elsewhere.test",
            "--from",
            "swaks@sender.test",
        ])
        .output()
        .unwrap_or_else(|error| {
            panic!("swaks is not installed ({error}); install it with `apt-get install -y swaks`")
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success(),
        "swaks should report the refusal:\n{stdout}"
    );
    assert!(
        stdout.lines().any(|line| line.starts_with("<** 550 5.7.1")),
        "want 550 5.7.1 for a foreign domain:\n{stdout}"
    );
    let response = server.get(&common::inbox_path("victim@elsewhere.test"));
    response.assert_error(404, "not_found");
}
