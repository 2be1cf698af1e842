//! Raw SMTP protocol behaviour of the real binary, byte by byte over a `TcpStream`:
//! pipelining, BDAT, dot-stuffing, SMTP smuggling, limits, domains, timeouts, the
//! session cap, and error replies. Every accepted message is read back over HTTP and
//! compared byte for byte with what was sent.

mod common;

use std::time::{Duration, Instant};

use common::{
    Reply, Server, Smtp, assert_bytes_eq, dot_stuff, inbox_path, queue_id, simple_message,
    strip_received,
};

/// Contract: command lines up to 512 octets including CRLF (RFC 5321 4.5.3.1.4).
const COMMAND_LINE_BYTES_MAX: usize = 512;
/// Contract: DATA text lines up to 1000 octets including CRLF (RFC 5321 4.5.3.1.6).
const TEXT_LINE_BYTES_MAX: usize = 1000;

/// Asserts that `address` is still empty after a 1 s long poll (so a message that
/// was wrongly accepted and is still on its way to another shard would be seen).
/// Sends part of a body after a 354 and stops: the data timeout (1 s in these tests) must
/// answer 421 and close the connection.
fn stall_in_data(smtp: &mut Smtp) {
    smtp.send(b"Subject: stalled\r\n\r\npartial body");
    let started = Instant::now();
    smtp.read_reply().assert_starts("421");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "data timeout took {:?}",
        started.elapsed()
    );
    assert!(
        smtp.closed_within(Duration::from_secs(5)),
        "closed after 421"
    );
}

fn assert_stays_empty(server: &Server, address: &str) {
    let inbox = server.inbox_query(address, "wait=1");
    assert_eq!(inbox["total"], 0, "{address} should hold nothing: {inbox}");
}

/// A message of exactly `len` bytes (CRLF line ends, lines shorter than 100 bytes).
fn message_of_len(len: usize) -> Vec<u8> {
    let mut message = b"Subject: exact size\r\n\r\n".to_vec();
    assert!(len >= message.len() + 2, "message_of_len({len}) too small");
    let mut line_idx = 0u8;
    while len - message.len() > 81 {
        message.extend(std::iter::repeat_n(b'a' + line_idx % 26, 78));
        message.extend_from_slice(b"\r\n");
        line_idx = line_idx.wrapping_add(1);
    }
    let last = len - message.len() - 2;
    message.extend(std::iter::repeat_n(b'z', last));
    message.extend_from_slice(b"\r\n");
    assert_eq!(message.len(), len);
    message
}

/// The final-line text of each reply (for assertion messages).
fn texts(replies: &[Reply]) -> Vec<String> {
    replies.iter().map(Reply::text).collect()
}

#[test]
fn greeting_and_ehlo_advertise_hostname_and_extensions() {
    let server = Server::start(&[
        "--hostname",
        "mx.mayfly.test",
        "--max-message-size",
        "100KiB",
    ]);
    let mut smtp = Smtp::connect(server.smtp_addr);
    let greeting = smtp.read_reply();
    greeting.assert_starts("220 mx.mayfly.test");

    let ehlo = smtp.cmd("EHLO client.test");
    ehlo.assert_code(250);
    assert!(
        ehlo.lines[0].starts_with("250-mx.mayfly.test")
            || ehlo.lines[0].starts_with("250 mx.mayfly.test"),
        "{}",
        ehlo.text()
    );
    let keywords: Vec<String> = ehlo.lines[1..]
        .iter()
        .map(|line| line[4..].to_ascii_uppercase())
        .collect();
    for keyword in [
        "PIPELINING",
        "SIZE 102400",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
    ] {
        assert!(
            keywords.iter().any(|k| k == keyword),
            "EHLO lacks {keyword:?}:\n{}",
            ehlo.text()
        );
    }

    // HELO is still accepted, and commands are case-insensitive.
    smtp.expect("HELO client.test", "250");
    smtp.expect("mail from:<a@sender.test> BODY=8BITMIME SMTPUTF8", "250");
    smtp.expect("rcpt to:<cases@example.test>", "250");
    smtp.expect("data", "354");
    let message = simple_message("case", "lower-case commands");
    smtp.send(&dot_stuff(&message));
    queue_id(&smtp.read_reply());
    smtp.expect("QUIT", "221");
    assert!(
        smtp.closed_within(Duration::from_secs(5)),
        "QUIT must close the connection"
    );

    let inbox = server.wait_inbox_total("cases@example.test", 1);
    let raw = server.raw(
        "cases@example.test",
        inbox["messages"][0]["id"].as_str().expect("id"),
    );
    assert_bytes_eq(strip_received(&raw), &message, "cases@example.test");
    let received_end = raw.len() - message.len();
    let received = String::from_utf8_lossy(&raw[..received_end]);
    assert!(
        received.contains("mx.mayfly.test"),
        "Received header names our host: {received}"
    );
}

#[test]
fn whole_transaction_in_one_write() {
    let server = Server::start(&["--domain", "example.test"]);
    let mut smtp = server.smtp_ehlo();
    let message = simple_message("one write", "pipelined\r\n.dot\r\n");
    let mut write = b"MAIL FROM:<pipe@sender.test>\r\nRCPT TO:<p1@example.test>\r\nRCPT TO:<p2@example.test>\r\nDATA\r\n".to_vec();
    write.extend_from_slice(&dot_stuff(&message));
    write.extend_from_slice(b"QUIT\r\n");
    smtp.send(&write);
    let replies = smtp.read_replies(5);
    let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
    assert_eq!(codes, [250, 250, 250, 354, 250], "{:?}", texts(&replies));
    queue_id(&replies[4]);
    smtp.read_reply().assert_code(221);
    for address in ["p1@example.test", "p2@example.test"] {
        server.assert_single_stored(address, &message);
    }
}

#[test]
fn several_transactions_in_one_write() {
    let server = Server::start(&["--cores", "2"]);
    let mut smtp = server.smtp_ehlo();
    let mut write = Vec::new();
    let mut messages = Vec::new();
    for index in 0..4 {
        let message = simple_message(&format!("batch {index}"), &format!("transaction {index}"));
        write.extend_from_slice(
            format!(
                "MAIL FROM:<batch@sender.test>\r\nRCPT TO:<batch{index}@example.test>\r\nDATA\r\n"
            )
            .as_bytes(),
        );
        write.extend_from_slice(&dot_stuff(&message));
        messages.push(message);
    }
    write.extend_from_slice(b"QUIT\r\n");
    smtp.send(&write);
    let mut queue_ids = Vec::new();
    for index in 0..4 {
        let replies = smtp.read_replies(4);
        let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
        assert_eq!(
            codes,
            [250, 250, 354, 250],
            "transaction {index}: {:?}",
            texts(&replies)
        );
        queue_ids.push(queue_id(&replies[3]));
    }
    smtp.read_reply().assert_code(221);
    queue_ids.sort();
    queue_ids.dedup();
    assert_eq!(queue_ids.len(), 4, "queue ids are distinct");
    for (index, message) in messages.iter().enumerate() {
        server.assert_single_stored(&format!("batch{index}@example.test"), message);
    }
}

#[test]
fn bdat_in_several_chunks_is_stored_without_unstuffing() {
    let server = Server::start(&[]);
    let mut smtp = server.smtp_ehlo();
    smtp.expect("MAIL FROM:<bdat@sender.test>", "250");
    smtp.expect("RCPT TO:<chunks@example.test>", "250");
    // BDAT is binary-clean: leading dots and a `CRLF.CRLF` inside stay as they are, and
    // chunk boundaries fall inside a CRLF and inside a line.
    let chunks: [&[u8]; 4] = [
        b"Subject: chunked\r\n\r\n.leading dot\r",
        b"\n..two dots\r\n.\r\nnot the end",
        b" of the message\r\n",
        b"last chunk\r\n",
    ];
    for chunk in &chunks[..3] {
        smtp.send(format!("BDAT {}\r\n", chunk.len()).as_bytes());
        smtp.send(chunk);
        smtp.read_reply().assert_starts("250");
    }
    smtp.send(format!("BDAT {} LAST\r\n", chunks[3].len()).as_bytes());
    smtp.send(chunks[3]);
    queue_id(&smtp.read_reply());
    server.assert_single_stored("chunks@example.test", &chunks.concat());

    // An empty last chunk ends a message too.
    smtp.expect("MAIL FROM:<bdat@sender.test>", "250");
    smtp.expect("RCPT TO:<zero-last@example.test>", "250");
    let body = b"Subject: zero\r\n\r\nbody then BDAT 0 LAST\r\n";
    smtp.send(format!("BDAT {}\r\n", body.len()).as_bytes());
    smtp.send(body);
    smtp.read_reply().assert_starts("250");
    smtp.send(b"BDAT 0 LAST\r\n");
    queue_id(&smtp.read_reply());
    server.assert_single_stored("zero-last@example.test", body);
}

#[test]
fn bdat_last_in_one_write_with_the_envelope() {
    let server = Server::start(&["--cores", "2"]);
    let mut smtp = server.smtp_ehlo();
    let mut write = Vec::new();
    let mut bodies = Vec::new();
    for index in 0..3 {
        let body = format!("Subject: bdat {index}\r\n\r\n.x\r\nbody {index}\r\n").into_bytes();
        write.extend_from_slice(
            format!("MAIL FROM:<bdat@sender.test>\r\nRCPT TO:<onewrite{index}@example.test>\r\nBDAT {} LAST\r\n", body.len()).as_bytes(),
        );
        write.extend_from_slice(&body);
        bodies.push(body);
    }
    smtp.send(&write);
    for (index, body) in bodies.iter().enumerate() {
        let replies = smtp.read_replies(3);
        assert_eq!(replies[0].code, 250, "{:?}", texts(&replies));
        assert_eq!(replies[1].code, 250, "{:?}", texts(&replies));
        queue_id(&replies[2]);
        server.assert_single_stored(&format!("onewrite{index}@example.test"), body);
    }
}

#[test]
fn dot_stuffing_round_trips() {
    let server = Server::start(&[]);
    let mut smtp = server.smtp_ehlo();
    let message = b"Subject: dots\r\n\r\n.\r\n..\r\n...\r\n.x\r\n .\r\nend.\r\n.\r\n".to_vec();
    let wire = dot_stuff(&message);
    assert!(wire.starts_with(b"Subject: dots\r\n\r\n..\r\n...\r\n....\r\n..x\r\n"));
    queue_id(&{
        smtp.expect("MAIL FROM:<dots@sender.test>", "250");
        smtp.expect("RCPT TO:<dots@example.test>", "250");
        smtp.expect("DATA", "354");
        smtp.send(&wire);
        smtp.read_reply()
    });
    server.assert_single_stored("dots@example.test", &message);
}

/// Each way of hiding an end of DATA with a bare CR or LF (the SMTP smuggling family).
const SMUGGLING_ENDINGS: [&str; 4] = ["\n.\n", "\n.\r\n", "\r.\r", "\r\n.\n"];

fn smuggling_attempt(server: &Server, ending: &str, split_write: bool) {
    let mut smtp = server.smtp_ehlo();
    smtp.expect("MAIL FROM:<attacker@sender.test>", "250");
    smtp.expect("RCPT TO:<target@example.test>", "250");
    smtp.expect("DATA", "354");
    let first = format!("From: attacker@sender.test\r\nSubject: innocent\r\n\r\nbefore{ending}");
    let second = "MAIL FROM:<ceo@sender.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n";
    if split_write {
        smtp.send(first.as_bytes());
        // Only makes two reads on the server likely; the assertions hold either way.
        std::thread::sleep(Duration::from_millis(100));
        smtp.send(second.as_bytes());
    } else {
        smtp.send(format!("{first}{second}").as_bytes());
    }
    let reply = smtp.read_reply();
    assert!(
        (500..600).contains(&reply.code),
        "ending {ending:?} (split {split_write}): a body with a bare CR/LF must be refused with 5xx after the final dot, got:\n{}",
        reply.text()
    );
    // Nothing the attacker hid may have run as a command: after QUIT the only reply
    // left is the 221 (or nothing, if the server already closed).
    let _ = smtp.try_send(b"QUIT\r\n");
    let rest = smtp
        .read_until_close(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("ending {ending:?}: connection not closed after QUIT"));
    let rest_lines: Vec<&str> = rest.lines().collect();
    assert!(
        rest_lines.is_empty() || (rest_lines.len() == 1 && rest_lines[0].starts_with("221")),
        "ending {ending:?} (split {split_write}): smuggled commands were answered: {rest:?}"
    );
    assert_stays_empty(server, "victim@example.test");
    assert_stays_empty(server, "target@example.test");
}

#[test]
fn smuggled_end_of_data_is_refused_and_nothing_is_stored() {
    let server = Server::start(&["--cores", "2", "--domain", "example.test"]);
    for ending in SMUGGLING_ENDINGS {
        smuggling_attempt(&server, ending, false);
        smuggling_attempt(&server, ending, true);
    }
}

#[test]
fn recipients_beyond_the_limit_get_452_and_the_rest_are_delivered() {
    let server = Server::start(&["--max-recipients", "3", "--cores", "2"]);
    let mut smtp = server.smtp_ehlo();
    smtp.expect("MAIL FROM:<many@sender.test>", "250");
    for index in 0..3 {
        smtp.expect(&format!("RCPT TO:<r{index}@example.test>"), "250");
    }
    smtp.expect("RCPT TO:<r3@example.test>", "452 4.5.3");
    smtp.expect("RCPT TO:<r4@example.test>", "452 4.5.3");
    smtp.expect("DATA", "354");
    let message = simple_message("three", "only three recipients");
    smtp.send(&dot_stuff(&message));
    queue_id(&smtp.read_reply());
    for index in 0..3 {
        server.assert_single_stored(&format!("r{index}@example.test"), &message);
    }
    assert_stays_empty(&server, "r3@example.test");
    assert_stays_empty(&server, "r4@example.test");
}

#[test]
fn size_declared_at_mail_over_the_limit_gets_552_and_the_session_goes_on() {
    let server = Server::start(&["--max-message-size", "64KiB"]);
    let mut smtp = server.smtp_ehlo();
    smtp.expect("MAIL FROM:<big@sender.test> SIZE=65537", "552 5.3.4");
    smtp.expect(
        "MAIL FROM:<big@sender.test> SIZE=99999999999999999999",
        "552 5.3.4",
    );
    smtp.expect("MAIL FROM:<big@sender.test> SIZE=65536", "250");
    smtp.expect("RCPT TO:<sized@example.test>", "250");
    smtp.expect("DATA", "354");
    let message = simple_message("sized", "after a refused SIZE");
    smtp.send(&dot_stuff(&message));
    queue_id(&smtp.read_reply());
    server.assert_single_stored("sized@example.test", &message);
}

#[test]
fn data_body_size_limit_is_exact_and_the_session_goes_on() {
    let limit = 64 * 1024;
    let server = Server::start(&["--max-message-size", "64KiB"]);
    let mut smtp = server.smtp_ehlo();

    let too_big = message_of_len(limit + 1);
    smtp.expect("MAIL FROM:<big@sender.test>", "250");
    smtp.expect("RCPT TO:<toobig@example.test>", "250");
    smtp.expect("DATA", "354");
    smtp.send(&dot_stuff(&too_big));
    smtp.read_reply().assert_starts("552 5.3.4");

    let much_too_big = message_of_len(limit * 20);
    smtp.expect("MAIL FROM:<big@sender.test>", "250");
    smtp.expect("RCPT TO:<toobig@example.test>", "250");
    smtp.expect("DATA", "354");
    smtp.send(&dot_stuff(&much_too_big));
    smtp.read_reply().assert_starts("552 5.3.4");

    let just_fits = message_of_len(limit);
    smtp.expect("MAIL FROM:<big@sender.test>", "250");
    smtp.expect("RCPT TO:<fits@example.test>", "250");
    smtp.expect("DATA", "354");
    smtp.send(&dot_stuff(&just_fits));
    queue_id(&smtp.read_reply());
    server.assert_single_stored("fits@example.test", &just_fits);
    assert_stays_empty(&server, "toobig@example.test");
}

#[test]
fn bdat_over_the_size_limit_gets_552_and_the_session_goes_on() {
    let limit = 64 * 1024;
    let server = Server::start(&["--max-message-size", "64KiB"]);
    let mut smtp = server.smtp_ehlo();

    // One LAST chunk that is too big.
    smtp.expect("MAIL FROM:<big@sender.test>", "250");
    smtp.expect("RCPT TO:<bdatbig@example.test>", "250");
    let body = message_of_len(limit + 1);
    smtp.send(format!("BDAT {} LAST\r\n", body.len()).as_bytes());
    smtp.send(&body);
    smtp.read_reply().assert_starts("552 5.3.4");
    smtp.expect("NOOP", "250");

    // Two chunks that are each small but together too big.
    smtp.expect("MAIL FROM:<big@sender.test>", "250");
    smtp.expect("RCPT TO:<bdatbig@example.test>", "250");
    let half = message_of_len(limit / 2 + 100);
    smtp.send(format!("BDAT {}\r\n", half.len()).as_bytes());
    smtp.send(&half);
    let first = smtp.read_reply();
    smtp.send(format!("BDAT {} LAST\r\n", half.len()).as_bytes());
    smtp.send(&half);
    let second = smtp.read_reply();
    assert!(
        first.code == 250 || first.is("552 5.3.4"),
        "first chunk: {}",
        first.text()
    );
    assert!(
        first.is("552 5.3.4") || second.is("552 5.3.4"),
        "no 552 5.3.4 for {} bytes: {} / {}",
        2 * half.len(),
        first.text(),
        second.text()
    );
    assert_ne!(
        second.code,
        250,
        "an oversize message must not be accepted: {}",
        second.text()
    );
    smtp.send(b"RSET\r\n");
    smtp.read_reply().assert_code(250);

    // And the session still delivers.
    smtp.expect("MAIL FROM:<big@sender.test>", "250");
    smtp.expect("RCPT TO:<bdatok@example.test>", "250");
    let fits = message_of_len(limit);
    smtp.send(format!("BDAT {} LAST\r\n", fits.len()).as_bytes());
    smtp.send(&fits);
    queue_id(&smtp.read_reply());
    server.assert_single_stored("bdatok@example.test", &fits);
    assert_stays_empty(&server, "bdatbig@example.test");
}

#[test]
fn command_lines_longer_than_512_octets_get_500_5_5_2() {
    let server = Server::start(&[]);
    let mut smtp = server.smtp_ehlo();
    // Exactly 512 octets with CRLF: allowed (NOOP takes an optional string).
    let longest = format!("NOOP {}", "x".repeat(COMMAND_LINE_BYTES_MAX - 2 - 5));
    assert_eq!(longest.len() + 2, COMMAND_LINE_BYTES_MAX);
    let reply = smtp.cmd(&longest);
    assert!(
        !reply.is("500 5.5.2"),
        "a 512-octet line is legal: {}",
        reply.text()
    );

    let too_long = format!("NOOP {}", "x".repeat(COMMAND_LINE_BYTES_MAX - 2 - 5 + 1));
    smtp.expect(&too_long, "500 5.5.2");
    // After the refusal the server either goes on (and then NOOP works) or hangs up.
    smtp.send(b"NOOP\r\n");
    if let Some(reply) = smtp.read_reply_or_close() {
        reply.assert_code(250);
    }

    // 64 KiB without any CRLF must not be buffered forever.
    let mut flood = server.smtp_ehlo();
    let _ = flood.try_send(&vec![b'A'; 64 * 1024]);
    let _ = flood.try_send(b"\r\n");
    // Closing on a flood is fine too.
    if let Some(reply) = flood.read_reply_or_close() {
        reply.assert_starts("500 5.5.2");
    }
    // The server is still healthy.
    server.smtp_ehlo().expect("NOOP", "250");
}

#[test]
fn data_lines_longer_than_1000_octets_are_refused() {
    let server = Server::start(&[]);
    let mut smtp = server.smtp_ehlo();
    let longest_line = "y".repeat(TEXT_LINE_BYTES_MAX - 2);
    let ok_message = format!("Subject: long line\r\n\r\n{longest_line}\r\n").into_bytes();
    smtp.expect("MAIL FROM:<long@sender.test>", "250");
    smtp.expect("RCPT TO:<longok@example.test>", "250");
    smtp.expect("DATA", "354");
    smtp.send(&dot_stuff(&ok_message));
    queue_id(&smtp.read_reply());
    server.assert_single_stored("longok@example.test", &ok_message);

    // RFC 5321 4.5.2: a longest line that starts with a dot is one octet longer on the
    // wire, and the stuffing dot does not count toward the limit.
    let dotted_line = format!(".{}", "y".repeat(TEXT_LINE_BYTES_MAX - 3));
    let dotted_message = format!("Subject: dotted long line\r\n\r\n{dotted_line}\r\n").into_bytes();
    smtp.expect("MAIL FROM:<long@sender.test>", "250");
    smtp.expect("RCPT TO:<longdot@example.test>", "250");
    smtp.expect("DATA", "354");
    smtp.send(&dot_stuff(&dotted_message));
    queue_id(&smtp.read_reply());
    server.assert_single_stored("longdot@example.test", &dotted_message);

    let too_long_line = "y".repeat(TEXT_LINE_BYTES_MAX - 1);
    let bad_message = format!("Subject: too long line\r\n\r\n{too_long_line}\r\n").into_bytes();
    smtp.expect("MAIL FROM:<long@sender.test>", "250");
    smtp.expect("RCPT TO:<longbad@example.test>", "250");
    smtp.expect("DATA", "354");
    smtp.send(&dot_stuff(&bad_message));
    smtp.read_reply().assert_starts("552 5.3.4");
    smtp.expect("NOOP", "250");
    assert_stays_empty(&server, "longbad@example.test");
}

#[test]
fn bare_cr_or_lf_in_a_command_gets_500_5_5_2_and_hidden_commands_do_not_run() {
    let server = Server::start(&[]);
    for line in [
        "NOOP\nNOOP\r\n",
        "NOOP\rX\r\n",
        "RSET\nMAIL FROM:<hidden@sender.test>\r\n",
        "EHLO a\rMAIL FROM:<hidden@sender.test>\r\n",
    ] {
        let mut smtp = server.smtp_ehlo();
        smtp.send(line.as_bytes());
        let reply = smtp.read_reply();
        assert!(reply.is("500 5.5.2"), "{line:?}: {}", reply.text());
        // If MAIL had run, RCPT would be accepted.
        smtp.send(b"RCPT TO:<hidden@example.test>\r\n");
        if let Some(reply) = smtp.read_reply_or_close() {
            assert!(
                reply.is("503 5.5.1"),
                "after {line:?} the next reply should be RCPT's 503 5.5.1 (no MAIL ran, nothing \
                 after the bare CR/LF was executed); got {:?}, so a command hidden behind the \
                 bare CR/LF was executed as a separate line",
                reply.text()
            );
        }
    }
}

#[test]
fn relay_is_refused_for_domains_we_do_not_accept() {
    let server = Server::start(&["--domain", "example.test"]);
    let mut smtp = server.smtp_ehlo();
    smtp.expect("MAIL FROM:<x@sender.test>", "250");
    smtp.expect("RCPT TO:<someone@other.test>", "550 5.7.1");
    smtp.expect("RCPT TO:<someone@sub.example.test>", "550 5.7.1");
    smtp.expect("RCPT TO:<someone@example.test.evil>", "550 5.7.1");
    smtp.expect("RCPT TO:<someone@notexample.test>", "550 5.7.1");
    smtp.expect("RCPT TO:<Someone@EXAMPLE.Test>", "250");
    smtp.expect("DATA", "354");
    let message = simple_message("relay", "only the local one");
    smtp.send(&dot_stuff(&message));
    queue_id(&smtp.read_reply());
    server.assert_single_stored("someone@example.test", &message);
    server
        .get(&inbox_path("someone@other.test"))
        .assert_error(404, "not_found");
    server
        .get(&inbox_path("someone@sub.example.test"))
        .assert_error(404, "not_found");

    // A transaction whose only recipient was refused has nothing to send.
    smtp.expect("MAIL FROM:<x@sender.test>", "250");
    smtp.expect("RCPT TO:<someone@other.test>", "550 5.7.1");
    smtp.expect("DATA", "503 5.5.1");
}

#[test]
fn wildcard_domains_accept_the_domain_and_its_subdomains() {
    let server = Server::start(&["--domain", "*.wild.test", "--domain", "exact.test"]);
    let mut smtp = server.smtp_ehlo();
    smtp.expect("MAIL FROM:<x@sender.test>", "250");
    for accepted in [
        "a@wild.test",
        "b@sub.wild.test",
        "c@deep.sub.WILD.test",
        "d@exact.test",
    ] {
        smtp.expect(&format!("RCPT TO:<{accepted}>"), "250");
    }
    for refused in [
        "e@notwild.test",
        "f@wild.test.evil",
        "g@sub.exact.test",
        "h@xwild.test",
    ] {
        smtp.expect(&format!("RCPT TO:<{refused}>"), "550 5.7.1");
    }
    smtp.expect("DATA", "354");
    let message = simple_message("wild", "wildcards");
    smtp.send(&dot_stuff(&message));
    queue_id(&smtp.read_reply());
    for accepted in [
        "a@wild.test",
        "b@sub.wild.test",
        "c@deep.sub.wild.test",
        "d@exact.test",
    ] {
        server.assert_single_stored(accepted, &message);
    }
    server
        .get(&inbox_path("f@wild.test.evil"))
        .assert_error(404, "not_found");
}

#[test]
fn null_sender_is_accepted() {
    let server = Server::start(&[]);
    let mut smtp = server.smtp_ehlo();
    smtp.expect("MAIL FROM:<>", "250");
    smtp.expect("RCPT TO:<bounce@example.test>", "250");
    smtp.expect("DATA", "354");
    let message = simple_message("bounce", "a delivery status notification");
    smtp.send(&dot_stuff(&message));
    queue_id(&smtp.read_reply());
    let summary = server.assert_single_stored("bounce@example.test", &message);
    assert!(
        summary["from"] == "" || summary["from"].is_null(),
        "null sender shows as empty: {summary}"
    );
}

#[test]
fn quoted_local_part_is_accepted() {
    let server = Server::start(&["--domain", "example.test"]);
    let mut smtp = server.smtp_ehlo();
    smtp.expect("MAIL FROM:<\"odd sender\"@sender.test>", "250");
    smtp.expect("RCPT TO:<\"john doe\"@example.test>", "250");
    smtp.expect("DATA", "354");
    let message = simple_message("quoted", "quoted local part");
    smtp.send(&dot_stuff(&message));
    queue_id(&smtp.read_reply());
    // The inbox key is the address as written (quotes included), lowercased.
    let summary = server.assert_single_stored("\"john doe\"@example.test", &message);
    assert_eq!(
        summary["to"],
        serde_json::json!(["\"john doe\"@example.test"]),
        "{summary}"
    );
}

#[test]
fn idle_session_times_out_with_421_4_4_2() {
    let server = Server::start(&["--command-timeout", "1s"]);
    let started = Instant::now();
    let mut idle = server.smtp();
    let mut mid_transaction = server.smtp_ehlo();
    mid_transaction.expect("MAIL FROM:<slow@sender.test>", "250");
    mid_transaction.expect("RCPT TO:<slow@example.test>", "250");
    for smtp in [&mut idle, &mut mid_transaction] {
        let reply = smtp.read_reply();
        reply.assert_starts("421 4.4.2");
        assert!(
            smtp.closed_within(Duration::from_secs(5)),
            "closed after 421"
        );
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "timed out too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(8),
        "timed out too late: {elapsed:?}"
    );
    assert_stays_empty(&server, "slow@example.test");
}

#[test]
fn stalled_data_times_out_and_nothing_is_stored() {
    let server = Server::start(&["--command-timeout", "30s", "--data-timeout", "1s"]);
    let mut smtp = server.smtp_ehlo();
    smtp.expect("MAIL FROM:<slow@sender.test>", "250");
    smtp.expect("RCPT TO:<stalled@example.test>", "250");
    smtp.expect("DATA", "354");
    stall_in_data(&mut smtp);
    assert_stays_empty(&server, "stalled@example.test");
}

/// A sender that pauses between its commands and inside its message, as an MTA across a
/// network does, is read through glommio's own whole-buffer reads after its first long wait
/// (`net::tls::GatherTcp`'s slow-peer mode): its message arrives whole, and a stall in its
/// next DATA is still timed out.
#[test]
fn a_slow_sender_is_served_whole_and_still_timed_out() {
    let server = Server::start(&["--command-timeout", "30s", "--data-timeout", "1s"]);
    let mut smtp = server.smtp_ehlo();
    let pause = || std::thread::sleep(Duration::from_millis(5));
    let open_data = |smtp: &mut Smtp| {
        for (command, code) in [
            ("MAIL FROM:<slow@sender.test>", "250"),
            ("RCPT TO:<slow@example.test>", "250"),
            ("DATA", "354"),
        ] {
            pause();
            smtp.expect(command, code);
        }
    };
    open_data(&mut smtp);
    for piece in [
        &b"Subject: slow\r\n\r\n"[..],
        b"first line\r\n",
        b"second ",
        b"line\r\n",
        b".\r\n",
    ] {
        pause();
        smtp.send(piece);
    }
    smtp.read_reply().assert_starts("250");
    let listing = server.wait_inbox_total("slow@example.test", 1);
    let id = listing["messages"][0]["id"].as_str().expect("id");
    let raw = String::from_utf8(server.raw("slow@example.test", id)).expect("text");
    assert!(
        raw.ends_with("Subject: slow\r\n\r\nfirst line\r\nsecond line\r\n"),
        "{raw}"
    );

    open_data(&mut smtp);
    pause();
    stall_in_data(&mut smtp);
    assert_eq!(server.inbox("slow@example.test")["total"], 1);
}

#[test]
fn sessions_beyond_the_per_core_cap_get_421_4_7_0() {
    // Both sessions are senders (in a transaction), so none can be cut to make room.
    let server = Server::start(&["--cores", "1", "--max-sessions-per-core", "2"]);
    let mut first = server.smtp_ehlo();
    first.expect("MAIL FROM:<a@sender.test>", "250");
    let mut second = server.smtp_ehlo();
    second.expect("MAIL FROM:<b@sender.test>", "250");
    let mut extra = Smtp::connect(server.smtp_addr);
    extra
        .read_reply()
        .assert_starts("421 4.7.0 Too many sessions");
    assert!(
        extra.closed_within(Duration::from_secs(5)),
        "the extra connection is closed"
    );

    first.expect("QUIT", "221");
    drop(first);
    // The freed slot is usable once the server has noticed the close.
    server.wait_metric_total("mayfly_smtp_sessions_open", 1);
    let mut next = Smtp::connect(server.smtp_addr);
    next.read_reply().assert_code(220);
    next.expect("EHLO again.test", "250");
    second.expect("QUIT", "221");
}

#[test]
fn unknown_commands_get_500_5_5_1_and_the_session_goes_on() {
    let server = Server::start(&[]);
    let mut smtp = server.smtp_ehlo();
    smtp.expect("XYZZY", "500 5.5.1");
    smtp.expect("FOO bar baz", "500 5.5.1");
    smtp.expect("MAILFROM:<a@b.test>", "500 5.5.1");
    smtp.expect("NOOP", "250");
    smtp.expect("MAIL FROM:<a@sender.test>", "250");
    smtp.expect("XYZZY", "500 5.5.1");
    // The transaction survived the unknown command.
    smtp.expect("RCPT TO:<after-unknown@example.test>", "250");
    smtp.expect("DATA", "354");
    let message = simple_message("unknown", "after unknown commands");
    smtp.send(&dot_stuff(&message));
    queue_id(&smtp.read_reply());
    server.assert_single_stored("after-unknown@example.test", &message);
}

#[test]
fn commands_out_of_sequence_get_503_5_5_1() {
    let server = Server::start(&[]);
    let mut smtp = server.smtp_ehlo();
    smtp.expect("RCPT TO:<x@example.test>", "503 5.5.1");
    smtp.expect("DATA", "503 5.5.1");
    // BDAT without a transaction is refused, but its chunk is still consumed: the
    // `NOOP` inside it must not run, so the next reply is the real NOOP's.
    smtp.send(b"BDAT 6 LAST\r\nNOOP\r\n");
    smtp.read_reply().assert_starts("503 5.5.1");
    smtp.expect("NOOP", "250");
    smtp.expect("MAIL FROM:<a@sender.test>", "250");
    smtp.expect("MAIL FROM:<a@sender.test>", "503 5.5.1");
    smtp.expect("DATA", "503 5.5.1");
    smtp.expect("RSET", "250");
    smtp.expect("RCPT TO:<x@example.test>", "503 5.5.1");
}

#[test]
fn vrfy_rset_noop_and_quit() {
    let server = Server::start(&[]);
    let mut smtp = server.smtp_ehlo();
    smtp.expect("VRFY someone@example.test", "252");
    smtp.expect("NOOP", "250");
    // RSET drops the transaction: only the recipient after it gets the message.
    smtp.expect("MAIL FROM:<a@sender.test>", "250");
    smtp.expect("RCPT TO:<dropped@example.test>", "250");
    smtp.expect("RSET", "250");
    smtp.expect("MAIL FROM:<a@sender.test>", "250");
    smtp.expect("RCPT TO:<kept@example.test>", "250");
    smtp.expect("DATA", "354");
    let message = simple_message("rset", "after RSET");
    smtp.send(&dot_stuff(&message));
    queue_id(&smtp.read_reply());
    smtp.expect("QUIT", "221");
    assert!(
        smtp.closed_within(Duration::from_secs(5)),
        "QUIT closes the connection"
    );
    server.assert_single_stored("kept@example.test", &message);
    assert_stays_empty(&server, "dropped@example.test");
}

#[test]
fn eight_bit_and_large_messages_are_stored_byte_exact() {
    let server = Server::start(&["--cores", "2"]);
    let mut smtp = server.smtp_ehlo();
    // Every byte value except CR and LF, in lines of various lengths.
    let mut eight_bit = b"Subject: 8bit\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
    let all_bytes: Vec<u8> = (0..=255u8).filter(|b| *b != b'\r' && *b != b'\n').collect();
    for width in [1usize, 7, 100, 254, 998] {
        eight_bit.extend(all_bytes.iter().cycle().take(width));
        eight_bit.extend_from_slice(b"\r\n");
    }
    smtp.expect("MAIL FROM:<bin@sender.test> BODY=8BITMIME", "250");
    smtp.expect("RCPT TO:<eightbit@example.test>", "250");
    smtp.expect("DATA", "354");
    smtp.send(&dot_stuff(&eight_bit));
    queue_id(&smtp.read_reply());
    server.assert_single_stored("eightbit@example.test", &eight_bit);

    // Close to the 1 MiB default of the harness, in one write, with 998-octet lines.
    let mut large = b"Subject: large\r\n\r\n".to_vec();
    let mut line_idx = 0usize;
    while large.len() < 1000 * 1024 {
        let line = format!("{line_idx:06}{}", ".".repeat(992));
        large.extend_from_slice(line.as_bytes());
        large.extend_from_slice(b"\r\n");
        line_idx += 1;
    }
    let mut write = b"MAIL FROM:<big@sender.test>\r\nRCPT TO:<large1@example.test>\r\nRCPT TO:<large2@example.test>\r\nDATA\r\n".to_vec();
    write.extend_from_slice(&dot_stuff(&large));
    smtp.send(&write);
    let replies = smtp.read_replies(4);
    let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
    assert_eq!(codes, [250, 250, 250, 354], "{:?}", texts(&replies));
    queue_id(&smtp.read_reply());
    server.assert_single_stored("large1@example.test", &large);
    server.assert_single_stored("large2@example.test", &large);
}

#[test]
fn big_bodies_with_more_mail_pipelined_behind_them() {
    // Big bodies are read straight into the session's body buffer; whatever the client
    // sent after the end of the body in the same read (here a whole BDAT message, more than
    // the 16 KiB read buffer) must still be executed, in order.
    let server = Server::start(&["--cores", "2"]);
    let mut smtp = server.smtp_ehlo();
    let first = message_of_len(300 * 1024);
    let mut second = message_of_len(60_000);
    second.extend_from_slice(b".leading dot and a bare \n, which BDAT keeps\n");
    for round in 0..3 {
        smtp.expect("MAIL FROM:<big@sender.test>", "250");
        smtp.expect(&format!("RCPT TO:<first{round}a@example.test>"), "250");
        smtp.expect(&format!("RCPT TO:<first{round}b@example.test>"), "250");
        smtp.expect("DATA", "354");
        let mut write = dot_stuff(&first);
        write.extend_from_slice(
            format!(
                "MAIL FROM:<big@sender.test>\r\nRCPT TO:<second{round}@example.test>\r\nBDAT {} LAST\r\n",
                second.len()
            )
            .as_bytes(),
        );
        write.extend_from_slice(&second);
        write.extend_from_slice(b"NOOP\r\n");
        smtp.send(&write);
        let replies = smtp.read_replies(5);
        let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
        assert_eq!(codes, [250, 250, 250, 250, 250], "{:?}", texts(&replies));
        queue_id(&replies[0]);
        queue_id(&replies[3]);
        server.assert_single_stored(&format!("first{round}a@example.test"), &first);
        server.assert_single_stored(&format!("first{round}b@example.test"), &first);
        server.assert_single_stored(&format!("second{round}@example.test"), &second);
    }
}

#[test]
fn concurrent_sessions_on_both_cores_all_deliver() {
    let server = Server::start(&["--cores", "2"]);
    let n_sessions = 24;
    let n_messages = 5;
    let smtp_addr = server.smtp_addr;
    let senders: Vec<_> = (0..n_sessions)
        .map(|session_idx| {
            std::thread::spawn(move || {
                let mut smtp = Smtp::connect(smtp_addr);
                smtp.read_reply().assert_code(220);
                smtp.expect("EHLO concurrent.test", "250");
                for message_idx in 0..n_messages {
                    let message =
                        simple_message(&format!("s{session_idx} m{message_idx}"), "concurrent");
                    smtp.send_mail(
                        "c@sender.test",
                        &[
                            &format!("conc{session_idx}@example.test"),
                            "shared@example.test",
                        ],
                        &message,
                    );
                }
                smtp.expect("QUIT", "221");
            })
        })
        .collect();
    for sender in senders {
        sender.join().expect("sender thread");
    }
    for session_idx in 0..n_sessions {
        let address = format!("conc{session_idx}@example.test");
        let inbox = server.wait_inbox_total(&address, n_messages as u64);
        for summary in inbox["messages"].as_array().expect("messages") {
            let subject = summary["subject"].as_str().expect("subject");
            let raw = server.raw(&address, summary["id"].as_str().expect("id"));
            assert_bytes_eq(
                strip_received(&raw),
                &simple_message(subject, "concurrent"),
                &address,
            );
        }
    }
    let shared = server.wait_inbox_total("shared@example.test", (n_sessions * n_messages) as u64);
    assert_eq!(shared["total"], n_sessions * n_messages);
}

#[test]
fn received_header_shows_the_client_ip_only_when_allowed() {
    for (flags, ip_shown) in [(&[][..], false), (&["--log-client-ip"][..], true)] {
        let server = Server::start(flags);
        // An address-literal EHLO names the client's IP as surely as the socket does.
        let mut smtp = server.smtp();
        smtp.expect("EHLO [127.0.0.1]", "250");
        let message = simple_message("ip", "where from");
        smtp.send_mail("ip@sender.test", &["ip@example.test"], &message);
        let inbox = server.wait_inbox_total("ip@example.test", 1);
        let raw = server.raw(
            "ip@example.test",
            inbox["messages"][0]["id"].as_str().expect("id"),
        );
        let received =
            String::from_utf8_lossy(&raw[..raw.len() - strip_received(&raw).len()]).into_owned();
        assert_eq!(
            received.contains("127.0.0.1"),
            ip_shown,
            "flags {flags:?}: {received:?}"
        );
        let expected_from = if ip_shown {
            "Received: from [127.0.0.1] ([127.0.0.1]) by "
        } else {
            "Received: from unknown (address literal withheld) by "
        };
        assert!(received.starts_with(expected_from), "{received:?}");
    }
}

#[test]
fn a_quoted_recipient_cannot_forge_the_received_date() {
    let server = Server::start(&[]);
    let mut smtp = server.smtp_ehlo();
    let forged = "\"a>; Thu, 01 Jan 1970 00:00:00 +0000 (x\"@example.test";
    let message = simple_message("forged", "for clause");
    smtp.send_mail("forge@sender.test", &[forged], &message);
    let inbox = server.wait_inbox_total(forged, 1);
    let raw = server.raw(forged, inbox["messages"][0]["id"].as_str().expect("id"));
    assert_bytes_eq(strip_received(&raw), &message, forged);
    let received = String::from_utf8_lossy(&raw[..raw.len() - message.len()]).into_owned();
    // One date, ours, after the only `;`; the clause is left out rather than rewritten.
    assert_eq!(received.matches(';').count(), 1, "{received:?}");
    assert!(!received.contains("1970"), "{received:?}");
    assert!(!received.contains(" for <"), "{received:?}");
}

#[test]
fn postmaster_is_delivered_to_the_first_served_domain() {
    let server = Server::start(&[
        "--hostname",
        "mx.mayfly.test",
        "--domain",
        "example.test",
        "--domain",
        "*.other.test",
    ]);
    let mut smtp = server.smtp_ehlo();
    let message = simple_message("postmaster", "RFC 5321 4.5.1");
    smtp.send_mail("pm@sender.test", &["PostMaster"], &message);
    server.assert_single_stored("postmaster@example.test", &message);
    // Not under the hostname, which this server does not serve.
    let response = server.get(&inbox_path("postmaster@mx.mayfly.test"));
    assert_ne!(response.status, 200, "{}", response.describe());
}

#[test]
fn addresses_with_control_characters_get_553() {
    let server = Server::start(&[]);
    let mut smtp = server.smtp_ehlo();
    // U+0085 is valid UTF-8 and passes address syntax, but no inbox can be named by it.
    smtp.expect("MAIL FROM:<ok@sender.test> SMTPUTF8", "250");
    smtp.expect("RCPT TO:<a\u{85}b@example.test>", "553 5.1.3");
    smtp.expect("RCPT TO:<ok@example.test>", "250");
    smtp.expect("RSET", "250");
    smtp.expect("MAIL FROM:<a\u{85}b@sender.test> SMTPUTF8", "553 5.1.7");
    smtp.expect("RCPT TO:<ok@example.test>", "503");
    smtp.expect("NOOP", "250");
}

#[test]
fn recipient_spellings_get_one_copy_listed_under_each() {
    let server = Server::start(&[]);
    let mut smtp = server.smtp_ehlo();
    smtp.expect("MAIL FROM:<dup@sender.test>", "250");
    smtp.expect("RCPT TO:<dup@example.test>", "250");
    smtp.expect("RCPT TO:<DUP@Example.test>", "250");
    smtp.expect("RCPT TO:<dup@example.test>", "250");
    smtp.expect("DATA", "354");
    let message = simple_message("dup", "once");
    smtp.send(&dot_stuff(&message));
    queue_id(&smtp.read_reply());
    let summary = server.assert_single_stored("dup@example.test", &message);
    let mut to: Vec<&str> = summary["to"]
        .as_array()
        .expect("to is an array")
        .iter()
        .map(|rcpt| rcpt.as_str().expect("string"))
        .collect();
    to.sort_unstable();
    assert_eq!(to, ["DUP@Example.test", "dup@example.test"], "{summary}");
    // Still one after a moment (a second copy could be on its way).
    assert_eq!(server.inbox_query("dup@example.test", "wait=1")["total"], 1);
}

#[test]
fn data_after_bdat_in_one_transaction_is_refused() {
    let server = Server::start(&[]);
    let mut smtp = server.smtp_ehlo();
    smtp.expect("MAIL FROM:<mix@sender.test>", "250");
    smtp.expect("RCPT TO:<mix@example.test>", "250");
    smtp.send(b"BDAT 5\r\nhello");
    smtp.read_reply().assert_code(250);
    // RFC 3030 2: DATA and BDAT cannot be mixed in one transaction.
    smtp.expect("DATA", "503 5.5.1");
    smtp.expect("RSET", "250");
    assert_stays_empty(&server, "mix@example.test");
}

/// A message of exactly the SIZE the server advertises is stored: SIZE leaves room in the
/// shard's ring for our Received header and the largest envelope (it once advertised the
/// whole ring, and such a message got "552 5.3.4 too big for the store").
#[test]
fn a_message_of_exactly_the_advertised_size_is_stored() {
    let server = Server::start(&[
        "--max-memory",
        "1MiB",
        "--max-message-size",
        "1MiB",
        "--max-recipients",
        "2",
    ]);
    let mut smtp = server.smtp();
    let ehlo = smtp.cmd("EHLO size.example");
    let size: usize = ehlo
        .text()
        .lines()
        .find_map(|line| line.strip_prefix("250-SIZE "))
        .expect("SIZE advertised")
        .trim()
        .parse()
        .expect("a number");
    assert!(
        size < 1 << 20,
        "SIZE {size} leaves no room for the envelope"
    );
    assert!(
        size > (1 << 20) - 64 * 1024,
        "SIZE {size} is far below the ring"
    );
    let mut message = b"Subject: exactly SIZE\r\n\r\n".to_vec();
    while message.len() < size {
        let line_bytes = (size - message.len()).min(900);
        if line_bytes < 3 {
            // Too short for a line of its own: lengthen the one before.
            message.truncate(message.len() - 2);
            message.extend(std::iter::repeat_n(b'a', line_bytes));
            message.extend_from_slice(b"\r\n");
            continue;
        }
        message.extend(std::iter::repeat_n(b'a', line_bytes - 2));
        message.extend_from_slice(b"\r\n");
    }
    assert_eq!(message.len(), size);
    smtp.send_mail("s@example.test", &["exact@example.test"], &message);
    server.assert_single_stored("exact@example.test", &message);
    smtp.expect(
        &format!("MAIL FROM:<s@example.test> SIZE={}", size + 1),
        "552",
    );
}

/// The CPUs this test process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data, valid zeroed; sched_getaffinity writes at most its size.
    let mask = unsafe {
        let mut mask: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut mask),
            0
        );
        mask
    };
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, so CPU_ISSET reads inside `mask`.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &mask) })
        .collect()
}

/// Runs `open` on a thread pinned to `cpu`, so the connection it makes sends its SYN from
/// there (loopback processes a packet on the CPU that sent it).
fn on_cpu<T: Send + 'static>(cpu: usize, open: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: as in `allowed_cpus`; `cpu` is one of the allowed CPUs, below CPU_SETSIZE.
        unsafe {
            let mut mask: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut mask);
            assert_eq!(
                libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &mask),
                0
            );
        }
        open()
    })
    .join()
    .expect("the pinned thread")
}

/// `mayfly_smtp_sessions_open` per shard.
fn sessions_open_per_shard(server: &Server) -> Vec<u64> {
    let metrics = server.metrics();
    let mut per_shard = Vec::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("mayfly_smtp_sessions_open{shard=\"") {
            let (_, value) = rest.split_once(' ').expect("a value");
            per_shard.push(value.parse::<f64>().expect("a number") as u64);
        }
    }
    per_shard
}

#[test]
fn steered_connections_are_served_on_the_cpu_that_opened_them() {
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        eprintln!("skipped: steering needs two CPUs, this test may use {cpus:?}");
        return;
    }
    let server = Server::start(&["--cores", "2", "--steer-connections"]);
    let mut sessions = Vec::new();
    // (cpu the client ran on, shard that took the connection), over 16 connections: with
    // the reuseport hash alone, all 16 landing this way by chance is about 1 in 30,000.
    let mut placements = Vec::new();
    for round in 0..16 {
        let cpu = cpus[round % 2];
        let before = sessions_open_per_shard(&server);
        let smtp_addr = server.smtp_addr;
        let smtp = on_cpu(cpu, move || {
            let mut smtp = Smtp::connect(smtp_addr);
            smtp.read_reply().assert_code(220);
            smtp
        });
        sessions.push(smtp);
        let after = sessions_open_per_shard(&server);
        assert_eq!(after.len(), 2, "two shards in /metrics");
        let grew: Vec<usize> = (0..2)
            .filter(|&shard| after[shard] > before[shard])
            .collect();
        assert_eq!(
            grew.len(),
            1,
            "one shard took the session: {before:?} -> {after:?}"
        );
        placements.push((cpu, grew[0]));
    }
    let shard_of = |cpu: usize| {
        let shards: std::collections::BTreeSet<usize> = placements
            .iter()
            .filter(|(on, _)| *on == cpu)
            .map(|(_, shard)| *shard)
            .collect();
        assert_eq!(
            shards.len(),
            1,
            "every connection from CPU {cpu} on one shard: {placements:?}"
        );
        shards.into_iter().next().expect("one shard")
    };
    assert_ne!(shard_of(cpus[0]), shard_of(cpus[1]), "{placements:?}");
}

/// A session that keeps sending commands is never timed out, however long it lasts: each
/// command's wait gets the whole `--command-timeout` anew, and no timer of an earlier
/// wait (one the input arrived before) survives into a later one.
#[test]
fn a_busy_session_outlives_its_command_timeout() {
    let server = Server::start(&["--command-timeout", "1s"]);
    let mut smtp = server.smtp_ehlo();
    let started = Instant::now();
    // Each NOOP comes well within the timeout, and together they last three timeouts.
    while started.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(300));
        smtp.expect("NOOP", "250");
    }
    smtp.expect("QUIT", "221");
}
