//! Hostile clients against the real binary on loopback, from several source addresses in
//! 127.0.0.0/8: slow clients that never finish a command, a request or a body; idle
//! floods that try to take every session slot; one address holding many sessions or
//! sending too much mail. Each test checks the attack fails and an honest client still
//! gets through.
//!
//! Deadlines are checked functionally: a slow client must be cut before it could have
//! finished at its pace (with per-read timeouts it never would be), not within a tight
//! wall-clock bound.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::{Server, Smtp, connect_from, simple_message};

fn ip(a: u8, b: u8, c: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, a, b, c))
}

/// Writes `bytes` one at a time, `pause` apart, until the server closes; returns what the
/// server sent and how many bytes went out.
fn trickle(stream: &mut std::net::TcpStream, bytes: &[u8], pause: Duration) -> (String, usize) {
    stream
        .set_read_timeout(Some(pause))
        .expect("set_read_timeout");
    let mut received = Vec::new();
    let mut n_sent = 0;
    let mut chunk = [0u8; 4096];
    'bytes: for &byte in bytes {
        if stream.write_all(&[byte]).is_err() {
            break;
        }
        n_sent += 1;
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => break 'bytes,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
                // Nothing more for now: send the next byte.
                Err(_) => break,
            }
        }
    }
    (String::from_utf8_lossy(&received).into_owned(), n_sent)
}

#[test]
fn a_command_trickled_a_byte_at_a_time_is_cut_at_the_deadline() {
    let server = Server::start(&["--command-timeout", "2s"]);
    let mut stream = connect_from(server.smtp_addr, ip(0, 0, 1));
    let mut greeting = [0u8; 256];
    let n = stream.read(&mut greeting).expect("greeting");
    assert!(greeting[..n].starts_with(b"220 "));
    // 60 bytes at one every 500 ms would take 30 s; each read is well inside the 2 s
    // timeout, so only a deadline for the whole line can cut it.
    let line = format!("EHLO {}\r\n", "a".repeat(54));
    let started = Instant::now();
    let (answer, n_sent) = trickle(&mut stream, line.as_bytes(), Duration::from_millis(500));
    assert!(answer.contains("421 4.4.2"), "{answer:?}");
    assert!(n_sent < line.len(), "the whole line went out: {answer:?}");
    assert!(started.elapsed() < Duration::from_secs(25));
}

#[test]
fn a_body_trickled_past_the_data_deadline_is_cut() {
    let server = Server::start(&["--data-deadline", "2s", "--data-timeout", "10s"]);
    let mut smtp = Smtp::connect_from(server.smtp_addr, ip(0, 0, 2));
    smtp.read_reply().assert_code(220);
    smtp.expect("EHLO slow.example", "250");
    smtp.expect("MAIL FROM:<slow@example.test>", "250");
    smtp.expect("RCPT TO:<victim@example.test>", "250");
    smtp.expect("DATA", "354");
    let mut stream = smtp.into_stream();
    let body = "x".repeat(60);
    let (answer, n_sent) = trickle(&mut stream, body.as_bytes(), Duration::from_millis(500));
    assert!(answer.contains("421 4.4.2"), "{answer:?}");
    assert!(n_sent < body.len());
    assert_eq!(server.inbox("victim@example.test")["total"], 0);
}

#[test]
fn a_request_head_trickled_a_byte_at_a_time_gets_408() {
    let server = Server::start(&["--http-request-timeout", "2s", "--http-idle-timeout", "10s"]);
    let mut stream = connect_from(server.http_addr, ip(0, 0, 3));
    let head = format!("GET /healthz HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "a".repeat(40));
    let (answer, n_sent) = trickle(&mut stream, head.as_bytes(), Duration::from_millis(500));
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout"),
        "{answer:?}"
    );
    assert!(n_sent < head.len());
    assert_eq!(server.metric_total("mayfly_http_request_timeouts_total"), 1);
    // An ordinary request is unaffected.
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn one_address_cannot_hold_more_than_its_sessions_and_others_still_get_in() {
    let server = Server::start(&["--cores", "1", "--max-sessions-per-ip", "3"]);
    let greedy = ip(0, 1, 1);
    let mut held: Vec<Smtp> = (0..3)
        .map(|_| {
            let mut smtp = Smtp::connect_from(server.smtp_addr, greedy);
            smtp.read_reply().assert_code(220);
            smtp
        })
        .collect();
    let mut refused = Smtp::connect_from(server.smtp_addr, greedy);
    let reply = refused.read_reply();
    assert!(
        reply
            .text()
            .starts_with("421 4.7.0 Too many sessions from your address"),
        "{}",
        reply.text()
    );
    assert_eq!(
        server.metric_total("mayfly_smtp_sessions_refused_per_ip_total"),
        1
    );
    // Another address is not affected, and a slot given back is usable again.
    let mut other = Smtp::connect_from(server.smtp_addr, ip(0, 1, 2));
    other.read_reply().assert_code(220);
    drop(held.pop());
    server.wait_metric_total("mayfly_smtp_sessions_open", 3);
    let mut again = Smtp::connect_from(server.smtp_addr, greedy);
    again.read_reply().assert_code(220);
}

#[test]
fn exempt_addresses_are_not_limited() {
    let server = Server::start(&[
        "--cores",
        "1",
        "--max-sessions-per-ip",
        "1",
        "--client-limit-exempt",
        "127.0.2.0/24",
    ]);
    let sessions: Vec<Smtp> = (0..5)
        .map(|_| {
            let mut smtp = Smtp::connect_from(server.smtp_addr, ip(0, 2, 9));
            smtp.read_reply().assert_code(220);
            smtp
        })
        .collect();
    assert_eq!(sessions.len(), 5);
}

#[test]
fn an_address_over_its_message_rate_gets_421_at_mail() {
    let server = Server::start(&["--cores", "1", "--max-messages-per-ip-per-minute", "3"]);
    let sender = ip(0, 3, 1);
    let mut smtp = Smtp::connect_from(server.smtp_addr, sender);
    smtp.read_reply().assert_code(220);
    smtp.expect("EHLO busy.example", "250");
    for index in 0..3 {
        let message = simple_message(&format!("m{index}"), "within the rate");
        smtp.send_mail("busy@example.test", &["rate@example.test"], &message);
    }
    let reply = smtp.cmd("MAIL FROM:<busy@example.test>");
    assert!(
        reply
            .text()
            .starts_with("421 4.7.0 Too many messages from your address"),
        "{}",
        reply.text()
    );
    assert!(smtp.closed_within(Duration::from_secs(5)));
    // A new connection from the same address is refused at MAIL too; another address is not.
    let mut again = Smtp::connect_from(server.smtp_addr, sender);
    again.read_reply().assert_code(220);
    again.expect("EHLO busy.example", "250");
    again.expect("MAIL FROM:<busy@example.test>", "421");
    let mut other = Smtp::connect_from(server.smtp_addr, ip(0, 3, 2));
    other.read_reply().assert_code(220);
    other.expect("EHLO other.example", "250");
    other.send_mail(
        "other@example.test",
        &["rate@example.test"],
        &simple_message("o", "ok"),
    );
    assert_eq!(server.inbox("rate@example.test")["total"], 4);
}

#[test]
fn an_idle_flood_at_the_session_cap_does_not_lock_out_a_new_sender() {
    let n_idle = 200;
    let cap = n_idle.to_string();
    let server = Server::start(&["--cores", "1", "--max-sessions-per-core", &cap]);
    // Idle sessions from 20 addresses (under the per-address limit): greeted and EHLO'd,
    // never a transaction, as a squatter would hold them.
    let mut idle: Vec<Smtp> = (0..n_idle)
        .map(|index| {
            let mut smtp = Smtp::connect_from(server.smtp_addr, ip(1, 0, (index % 20) as u8 + 1));
            smtp.read_reply().assert_code(220);
            smtp.expect("EHLO idle.example", "250");
            smtp
        })
        .collect();
    // A sender in the middle of a transaction is never the one cut.
    let mut sender_in_transaction = Smtp::connect_from(server.smtp_addr, ip(1, 1, 1));
    let greeting = sender_in_transaction.read_reply();
    assert!(greeting.is("220"), "{}", greeting.text());
    sender_in_transaction.expect("EHLO honest.example", "250");
    sender_in_transaction.expect("MAIL FROM:<honest@example.test>", "250");
    sender_in_transaction.expect("RCPT TO:<inbox@example.test>", "250");

    // At the cap: a new sender from another address still gets its 220 and delivers.
    let mut newcomer = Smtp::connect_from(server.smtp_addr, ip(1, 2, 1));
    newcomer.read_reply().assert_code(220);
    newcomer.expect("EHLO new.example", "250");
    newcomer.send_mail(
        "new@example.test",
        &["inbox@example.test"],
        &simple_message("new", "in"),
    );
    sender_in_transaction.expect("DATA", "354");
    sender_in_transaction.send(b"Subject: honest\r\n\r\nstill here\r\n.\r\n");
    sender_in_transaction.read_reply().assert_code(250);
    assert_eq!(server.inbox("inbox@example.test")["total"], 2);
    // Idle squatters were cut with a 421 to make that room.
    let n_cut = server.metric_total("mayfly_smtp_sessions_cut_idle_total");
    assert!(n_cut >= 2, "{n_cut} cut");
    let mut n_told = 0;
    for smtp in &mut idle {
        if let Some(reply) = smtp.read_reply_or_close() {
            assert!(
                reply.text().starts_with("421 4.7.0 Server busy"),
                "{}",
                reply.text()
            );
            n_told += 1;
        }
        if n_told as u64 == n_cut {
            break;
        }
    }
    assert_eq!(n_told as u64, n_cut);
}

/// A message whose HTML body is `n_lines` lines of 998 `&`: the input that made the old
/// sanitizer quadratic (8.5 s for 1 MB, minutes at the message size limit).
fn ampersand_html_message(n_lines: usize) -> Vec<u8> {
    let mut message = b"Subject: ampersands\r\nMIME-Version: 1.0\r\n\
        Content-Type: text/html; charset=utf-8\r\n\r\n"
        .to_vec();
    let line = "&".repeat(998);
    for _ in 0..n_lines {
        message.extend_from_slice(line.as_bytes());
        message.extend_from_slice(b"\r\n");
    }
    message
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

#[test]
fn reading_hostile_html_neither_evicts_mail_nor_grows_memory_without_bound() {
    // A 16 MiB ring: seven 2 MB messages and one of 900 KB fill most of it. Reading them
    // used to cache ~5x their HTML and then evict all of them as "capacity" at the next
    // insert although the ring had room.
    let server = Server::start(&[
        "--cores",
        "1",
        "--max-memory",
        "16MiB",
        "--max-message-size",
        "4MiB",
    ]);
    let address = "hostile-html@example.test";
    let mut smtp = server.smtp_ehlo();
    for _ in 0..7 {
        smtp.send_mail("x@sender.test", &[address], &ampersand_html_message(2000));
    }
    smtp.send_mail("x@sender.test", &[address], &ampersand_html_message(900));
    let listing = server.wait_inbox_total(address, 8);
    let rss_before = rss_kib(server.pid());
    for round in 0..3 {
        for summary in listing["messages"].as_array().expect("messages") {
            let id = summary["id"].as_str().expect("id");
            let view = server
                .get(&format!("{}/messages/{id}", common::inbox_path(address)))
                .json();
            if summary["size"].as_u64().expect("size") > 1_500_000 {
                // Over the sanitizer's 1 MiB budget: not served, and said so.
                assert_eq!(view["html"], serde_json::Value::Null, "round {round}");
                assert_eq!(view["html_omitted"], "too_large");
            } else {
                assert!(
                    view["html"]
                        .as_str()
                        .is_some_and(|html| html.contains("&amp;"))
                );
                assert_eq!(view["html_omitted"], serde_json::Value::Null);
            }
        }
    }
    let rss_after = rss_kib(server.pid());
    // The view cache has a 4 MiB budget here; one cached view of the 900 KB message is
    // about 4.5 MB on its own. Far below what seven cached 10 MB views would take.
    assert!(
        rss_after.saturating_sub(rss_before) < 48 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    smtp.send_mail(
        "x@sender.test",
        &[address],
        &simple_message("small", "after the reads"),
    );
    let listing = server.wait_inbox_total(address, 9);
    assert_eq!(listing["messages"].as_array().map(Vec::len), Some(9));
    assert_eq!(
        common::metric_sum_with_label(&server.metrics(), "evicted", "capacity"),
        Some(0.0)
    );
}
