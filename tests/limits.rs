//! Storage limits of the real binary: the TTL, the memory cap (oldest messages are
//! evicted, every SMTP client still gets its 250), and the per-inbox message cap.

mod common;

use std::time::{Duration, Instant};

use common::{
    Server, assert_bytes_eq, inbox_path, metric_sum, metric_sum_with_label, queue_id,
    strip_received,
};

/// A message of about `len` bytes whose content is unique to `index`.
fn numbered_message(index: usize, len: usize) -> Vec<u8> {
    let mut message = format!("Subject: message {index}\r\nX-Index: {index}\r\n\r\n").into_bytes();
    let line = format!("{index:08} {}\r\n", "x".repeat(68));
    while message.len() + line.len() <= len {
        message.extend_from_slice(line.as_bytes());
    }
    message
}

#[test]
fn messages_expire_after_the_ttl() {
    let server = Server::start(&["--ttl", "1s", "--cores", "2"]);
    let address = "short-lived@example.test";
    let message = numbered_message(1, 500);
    let mut smtp = server.smtp_ehlo();
    smtp.send_mail("ttl@sender.test", &[address], &message);
    let sent_at = Instant::now();

    let summary = server.assert_single_stored(address, &message);
    let id = summary["id"].as_str().expect("id").to_string();
    let raw_path = format!("{}/messages/{id}/raw", inbox_path(address));
    let message_path = format!("{}/messages/{id}", inbox_path(address));

    // Gone within the TTL plus a generous margin for the expiry sweep.
    let gone = common::eventually(Duration::from_secs(10), || {
        server.inbox(address)["total"] == 0
    });
    assert!(
        gone,
        "message still listed 10 s after a 1 s TTL: {}",
        server.inbox(address)
    );
    assert!(
        sent_at.elapsed() >= Duration::from_millis(900),
        "expired before its TTL: {:?}",
        sent_at.elapsed()
    );
    server.get(&raw_path).assert_error(404, "not_found");
    server.get(&message_path).assert_error(404, "not_found");
    assert_eq!(server.inbox(address)["messages"], serde_json::json!([]));

    // The sweep that counts an expiry may run a little after the listing hides it.
    let counted = common::eventually(Duration::from_secs(5), || {
        metric_sum_with_label(&server.metrics(), "evicted", "ttl").unwrap_or(0.0) >= 1.0
    });
    assert!(
        counted,
        "no TTL eviction counted (looked for `evicted` with a `ttl` label):\n{}",
        server.metrics()
    );
}

#[test]
fn memory_cap_evicts_the_oldest_and_every_client_gets_250() {
    let memory_bytes_max = 2 * 1024 * 1024;
    let server = Server::start(&[
        "--max-memory",
        "2MiB",
        "--cores",
        "1",
        "--max-message-size",
        "64KiB",
        "--ttl",
        "1h",
    ]);
    let n_messages = 600;
    let message_len = 10 * 1024;
    let n_connections = 4;
    let per_connection = n_messages / n_connections;
    let mut sent = Vec::with_capacity(n_messages);
    for connection_idx in 0..n_connections {
        let mut smtp = server.smtp_ehlo();
        for index in connection_idx * per_connection..(connection_idx + 1) * per_connection {
            let message = numbered_message(index, message_len);
            // `send_mail` asserts `250 2.0.0 Ok: queued as`: nobody is refused for lack of room.
            smtp.send_mail(
                "bulk@sender.test",
                &[&format!("bulk{index}@example.test")],
                &message,
            );
            sent.push(message);
        }
        smtp.expect("QUIT", "221");
    }

    // The newest messages (well under the cap together) are all there, byte-exact.
    let n_newest = 50;
    for (index, message) in sent.iter().enumerate().skip(n_messages - n_newest) {
        server.assert_single_stored(&format!("bulk{index}@example.test"), message);
    }
    // The oldest are gone: 600 x 10 KiB cannot fit into 2 MiB.
    for index in 0..50 {
        let inbox = server.inbox(&format!("bulk{index}@example.test"));
        assert_eq!(
            inbox["total"], 0,
            "message {index} should have been evicted: {inbox}"
        );
    }
    // Whatever is still held is intact, and it is a suffix of what was sent.
    let mut held = 0usize;
    let mut oldest_held = n_messages;
    for (index, message) in sent.iter().enumerate() {
        let address = format!("bulk{index}@example.test");
        let inbox = server.inbox(&address);
        if inbox["total"] == 1 {
            let id = inbox["messages"][0]["id"].as_str().expect("id");
            assert_bytes_eq(strip_received(&server.raw(&address, id)), message, &address);
            held += 1;
            oldest_held = oldest_held.min(index);
        } else {
            assert_eq!(inbox["total"], 0, "{inbox}");
            assert!(
                held == 0,
                "message {index} evicted although older message {oldest_held} is held"
            );
        }
    }
    assert!(
        held * message_len <= memory_bytes_max,
        "{held} messages of {message_len} bytes exceed the cap"
    );
    assert!(
        held >= 100,
        "only {held} messages held: the cap should keep roughly 2 MiB / 10 KiB"
    );

    let metrics = server.metrics();
    let bytes_held = metric_sum(&metrics, "bytes_held")
        .unwrap_or_else(|| panic!("no metric named like bytes_held:\n{metrics}"));
    assert!(
        bytes_held > 0.0 && bytes_held <= memory_bytes_max as f64,
        "bytes held {bytes_held}:\n{metrics}"
    );
    assert!(
        bytes_held >= (held * message_len) as f64,
        "bytes held {bytes_held} < {held} messages:\n{metrics}"
    );
    let evicted = metric_sum_with_label(&metrics, "evicted", "capacity").unwrap_or_else(|| {
        panic!("no metric named like evicted with a capacity label:\n{metrics}")
    });
    assert!(
        evicted >= (n_messages - held) as f64,
        "evicted {evicted}, but {} messages are gone:\n{metrics}",
        n_messages - held
    );
}

#[test]
fn inbox_message_cap_drops_the_oldest_of_that_inbox() {
    let server = Server::start(&["--max-messages-per-inbox", "3"]);
    let address = "capped@example.test";
    let mut smtp = server.smtp_ehlo();
    let mut sent = Vec::new();
    for index in 0..5 {
        let message = numbered_message(index, 300);
        smtp.expect("MAIL FROM:<cap@sender.test>", "250");
        smtp.expect(&format!("RCPT TO:<{address}>"), "250");
        smtp.expect("DATA", "354");
        smtp.send(&common::dot_stuff(&message));
        queue_id(&smtp.read_reply());
        sent.push(message);
    }
    // Another inbox is not affected by this one's cap.
    smtp.send_mail("cap@sender.test", &["other@example.test"], &sent[0]);

    let deadline = Instant::now() + common::VISIBLE_TIMEOUT;
    let inbox = loop {
        let inbox = server.inbox(address);
        let subjects: Vec<&str> = inbox["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter_map(|s| s["subject"].as_str())
            .collect();
        if subjects == ["message 4", "message 3", "message 2"] {
            break inbox;
        }
        assert!(
            Instant::now() < deadline,
            "want the 3 newest, newest first: {inbox}"
        );
        std::thread::sleep(common::POLL_INTERVAL);
    };
    assert_eq!(inbox["total"], 3);
    for (position, summary) in inbox["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .enumerate()
    {
        let raw = server.raw(address, summary["id"].as_str().expect("id"));
        assert_bytes_eq(strip_received(&raw), &sent[4 - position], address);
    }
    server.assert_single_stored("other@example.test", &sent[0]);
}
