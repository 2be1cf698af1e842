//! The HTTP API of the real binary against the contract in docs/api.md:
//! listings, summaries, message detail, raw bytes, deletes, generated addresses, long
//! polls, paging, keep-alive, errors and their JSON bodies, health and metrics.
//! Mail is put in over SMTP with the raw client, so each test controls the exact bytes.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{
    HttpConn, Server, assert_bytes_eq, inbox_path, metric_sum, simple_message, strip_received,
};

/// Sends one message over a new SMTP session; returns nothing but checks the 250.
fn deliver(server: &Server, recipients: &[&str], message: &[u8]) {
    let mut smtp = server.smtp_ehlo();
    smtp.send_mail("sender@sender.test", recipients, message);
    smtp.expect("QUIT", "221");
}

/// Parses an RFC 3339 UTC timestamp of the form `2026-11-27T22:15:44Z` (optionally with
/// fractional seconds) into Unix seconds.
fn rfc3339_utc_secs(text: &str) -> i64 {
    let bytes = text.as_bytes();
    assert!(
        bytes.len() >= 20
            && text.ends_with('Z')
            && bytes[4] == b'-'
            && bytes[7] == b'-'
            && bytes[10] == b'T'
            && bytes[13] == b':'
            && bytes[16] == b':',
        "not an RFC 3339 UTC time: {text:?}"
    );
    let number = |range: std::ops::Range<usize>| -> i64 {
        text[range]
            .parse()
            .unwrap_or_else(|_| panic!("not an RFC 3339 UTC time: {text:?}"))
    };
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    let (hour, minute, second) = (number(11..13), number(14..16), number(17..19));
    if bytes.len() > 20 {
        assert!(
            bytes[19] == b'.' && bytes[20..bytes.len() - 1].iter().all(u8::is_ascii_digit),
            "bad fraction in {text:?}"
        );
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hour * 3600 + minute * 60 + second
}

fn unix_now_secs() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(now.as_secs()).expect("seconds fit")
}

fn ids_of(inbox: &Value) -> Vec<String> {
    inbox["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("messages is not an array: {inbox}"))
        .iter()
        .map(|summary| summary["id"].as_str().expect("string id").to_string())
        .collect()
}

#[test]
fn empty_inbox_is_200_with_the_lowercase_address() {
    let server = Server::start(&["--domain", "example.test"]);
    let response = server.get(&inbox_path("Nobody.Yet@Example.TEST"));
    assert_eq!(response.status, 200, "{}", response.describe());
    response.assert_json_content_type();
    let inbox = response.json();
    assert_eq!(inbox["address"], "nobody.yet@example.test");
    assert_eq!(inbox["total"], 0);
    assert_eq!(inbox["messages"], serde_json::json!([]));
    assert!(
        inbox["next_after"].is_null(),
        "next_after of an empty inbox: {inbox}"
    );

    // A literal `@` in the path is accepted as well as `%40`.
    let literal = server.get("/api/v1/inboxes/nobody.yet@example.test");
    assert_eq!(literal.status, 200, "{}", literal.describe());
    assert_eq!(literal.json()["address"], "nobody.yet@example.test");
}

#[test]
fn unaccepted_domain_and_unknown_paths_are_404_with_a_json_error() {
    let server = Server::start(&["--domain", "example.test"]);
    server
        .get(&inbox_path("someone@other.test"))
        .assert_error(404, "not_found");
    server
        .get("/api/v1/inboxes/someone%40other.test/messages/0000000000000000000000000001")
        .assert_error(404, "not_found");
    server
        .get("/api/v1/nothing-here")
        .assert_error(404, "not_found");
    server.get("/no/such/page").assert_error(404, "not_found");
    // An address that is not an address at all.
    let response = server.get("/api/v1/inboxes/not-an-address");
    assert!(
        response.status == 400 || response.status == 404,
        "a path segment without @ is not an inbox: {}",
        response.describe()
    );
    let code = if response.status == 400 {
        "bad_request"
    } else {
        "not_found"
    };
    response.assert_error(response.status, code);
}

#[test]
fn wrong_method_is_405_with_a_json_error() {
    let server = Server::start(&[]);
    server
        .http("PUT", &inbox_path("a@example.test"), Some(b"{}"))
        .assert_error(405, "method_not_allowed");
    server
        .http("POST", "/healthz", Some(b""))
        .assert_error(405, "method_not_allowed");
    server
        .http("GET", "/api/v1/addresses", None)
        .assert_error(405, "method_not_allowed");
}

#[test]
fn summary_detail_and_raw_follow_the_contract() {
    let server = Server::start(&["--domain", "example.test", "--ttl", "10m"]);
    let message = b"From: Bob <bob@sender.test>\r\n\
        To: Alice <alice@example.test>\r\n\
        Subject: =?utf-8?q?Hej_d=C3=A5?= world\r\n\
        Date: Fri, 27 Nov 2026 23:15:44 +0100\r\n\
        X-Custom: one\r\n\
        X-Custom: two\r\n\
        \r\n\
        Hello   there,\r\n\
        this is the   body.\r\n";
    let before = unix_now_secs();
    deliver(&server, &["Alice@Example.Test"], message);
    let after = unix_now_secs();

    let inbox = server.wait_inbox_total("alice@example.test", 1);
    assert_eq!(inbox["address"], "alice@example.test");
    let summary = &inbox["messages"][0];
    let id = summary["id"].as_str().expect("id").to_string();
    assert!(!id.is_empty());
    assert_eq!(inbox["next_after"], id.as_str());
    assert_eq!(
        summary["from"], "sender@sender.test",
        "envelope sender: {summary}"
    );
    // `to` is the envelope RCPT of this inbox; api.md does not say whether it keeps the
    // client's spelling or the lowercase key, so either is accepted.
    let to = summary["to"].as_array().expect("to is an array");
    assert!(
        to.len() == 1
            && to[0]
                .as_str()
                .is_some_and(|rcpt| rcpt.eq_ignore_ascii_case("alice@example.test")),
        "{summary}"
    );
    assert_eq!(
        summary["subject"], "Hej då world",
        "RFC 2047 decoded: {summary}"
    );
    assert_eq!(
        summary["date"], "2026-11-27T22:15:44Z",
        "Date as RFC 3339 UTC: {summary}"
    );
    let received_at = rfc3339_utc_secs(summary["received_at"].as_str().expect("received_at"));
    let expires_at = rfc3339_utc_secs(summary["expires_at"].as_str().expect("expires_at"));
    assert!(
        received_at >= before - 1 && received_at <= after + 1,
        "received_at {received_at} not in [{before}, {after}]"
    );
    assert!(
        (expires_at - received_at - 600).abs() <= 1,
        "expires_at = received_at + ttl: {summary}"
    );
    let preview = summary["preview"].as_str().expect("preview");
    assert!(
        preview.starts_with("Hello there, this is the body."),
        "preview {preview:?}"
    );

    let raw_response = server.get(&format!(
        "{}/messages/{id}/raw",
        inbox_path("alice@example.test")
    ));
    assert_eq!(raw_response.status, 200);
    assert!(
        raw_response
            .header("content-type")
            .unwrap_or_default()
            .starts_with("message/rfc822")
    );
    assert_bytes_eq(strip_received(&raw_response.body), message, "raw");
    assert_eq!(
        summary["size"].as_u64(),
        Some(raw_response.body.len() as u64),
        "size is the stored size"
    );

    let detail_response = server.get(&format!(
        "{}/messages/{id}",
        inbox_path("ALICE@example.test")
    ));
    assert_eq!(
        detail_response.status,
        200,
        "{}",
        detail_response.describe()
    );
    detail_response.assert_json_content_type();
    let detail = detail_response.json();
    for key in [
        "id",
        "from",
        "to",
        "subject",
        "date",
        "received_at",
        "expires_at",
        "size",
        "preview",
    ] {
        assert_eq!(
            detail[key], summary[key],
            "detail repeats the summary's {key}"
        );
    }
    let headers = detail["headers"]
        .as_array()
        .unwrap_or_else(|| panic!("headers array: {detail}"));
    let names: Vec<&str> = headers
        .iter()
        .map(|pair| pair[0].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "Received", "From", "To", "Subject", "Date", "X-Custom", "X-Custom"
        ],
        "headers in order: {detail}"
    );
    assert_eq!(headers[3][1], "Hej då world", "header values are decoded");
    assert_eq!(headers[5][1], "one");
    assert_eq!(headers[6][1], "two");
    for key in ["text", "html", "attachments"] {
        assert!(detail.get(key).is_some(), "detail has {key:?}: {detail}");
    }
    if !detail["text"].is_null() {
        assert!(
            detail["text"]
                .as_str()
                .unwrap_or_default()
                .contains("this is the   body."),
            "text body: {detail}"
        );
    }
}

#[test]
fn each_recipient_inbox_shows_only_its_own_recipient() {
    let server = Server::start(&["--cores", "2"]);
    let message = simple_message("shared", "to two inboxes");
    deliver(&server, &["one@example.test", "two@example.test"], &message);
    for address in ["one@example.test", "two@example.test"] {
        let summary = server.assert_single_stored(address, &message);
        assert_eq!(summary["to"], serde_json::json!([address]));
    }
}

#[test]
fn unknown_or_foreign_message_ids_are_404() {
    let server = Server::start(&["--cores", "2"]);
    deliver(
        &server,
        &["owner@example.test"],
        &simple_message("mine", "owner only"),
    );
    let inbox = server.wait_inbox_total("owner@example.test", 1);
    let id = inbox["messages"][0]["id"].as_str().expect("id").to_string();
    // The id exists, but not in this inbox.
    for path in [
        format!("{}/messages/{id}", inbox_path("stranger@example.test")),
        format!("{}/messages/{id}/raw", inbox_path("stranger@example.test")),
        format!("{}/messages/not-an-id", inbox_path("owner@example.test")),
        format!(
            "{}/messages/not-an-id/raw",
            inbox_path("owner@example.test")
        ),
        format!(
            "{}/messages/{}",
            inbox_path("owner@example.test"),
            "f".repeat(id.len())
        ),
    ] {
        let response = server.get(&path);
        response.assert_error(404, "not_found");
    }
}

#[test]
fn delete_message_and_inbox_give_204_and_remove_them() {
    let server = Server::start(&[]);
    for index in 0..3 {
        deliver(
            &server,
            &["del@example.test"],
            &simple_message(&format!("del {index}"), "to delete"),
        );
    }
    let inbox = server.wait_inbox_total("del@example.test", 3);
    let ids = ids_of(&inbox);
    let message_path = format!("{}/messages/{}", inbox_path("del@example.test"), ids[1]);
    let response = server.delete(&message_path);
    assert_eq!(response.status, 204, "{}", response.describe());
    assert!(response.body.is_empty(), "204 has no body");
    server.get(&message_path).assert_error(404, "not_found");
    server
        .get(&format!("{message_path}/raw"))
        .assert_error(404, "not_found");
    let inbox = server.inbox("del@example.test");
    assert_eq!(inbox["total"], 2);
    assert_eq!(ids_of(&inbox), [ids[0].clone(), ids[2].clone()]);
    // Deleting it again: it is gone.
    server.delete(&message_path).assert_error(404, "not_found");

    let response = server.delete(&inbox_path("DEL@example.test"));
    assert_eq!(response.status, 204, "{}", response.describe());
    let inbox = server.inbox("del@example.test");
    assert_eq!(inbox["total"], 0, "{inbox}");
    for id in &ids {
        server
            .get(&format!(
                "{}/messages/{id}/raw",
                inbox_path("del@example.test")
            ))
            .assert_error(404, "not_found");
    }
    // The inbox goes on receiving.
    let message = simple_message("after delete", "new mail");
    deliver(&server, &["del@example.test"], &message);
    server.assert_single_stored("del@example.test", &message);
}

#[test]
fn post_addresses_creates_random_unguessable_addresses() {
    let server = Server::start(&[
        "--domain",
        "first.test",
        "--domain",
        "second.test",
        "--ttl",
        "90s",
    ]);
    let mut seen = Vec::new();
    for _ in 0..5 {
        let response = server.post_json("/api/v1/addresses", "");
        assert_eq!(response.status, 201, "{}", response.describe());
        response.assert_json_content_type();
        let created = response.json();
        let address = created["address"].as_str().expect("address").to_string();
        let (local, domain) = address.split_once('@').expect("an address has @");
        assert_eq!(
            domain, "first.test",
            "default domain is the first configured one"
        );
        assert_eq!(created["domain"], "first.test");
        assert!(
            local.len() >= 16
                && local
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "local part {local:?}"
        );
        assert_eq!(created["ttl_seconds"], 90);
        let created_at = rfc3339_utc_secs(created["created_at"].as_str().expect("created_at"));
        assert!(
            (created_at - unix_now_secs()).abs() <= 5,
            "created_at is now: {created}"
        );
        assert!(!seen.contains(&address), "addresses repeat: {address}");
        seen.push(address);
    }

    let response = server.post_json("/api/v1/addresses", r#"{"domain": "second.test"}"#);
    assert_eq!(response.status, 201, "{}", response.describe());
    let address = response.json()["address"]
        .as_str()
        .expect("address")
        .to_string();
    assert!(address.ends_with("@second.test"), "{address}");

    // The generated address receives mail.
    let message = simple_message("generated", "to a generated address");
    deliver(&server, &[&address], &message);
    server.assert_single_stored(&address, &message);

    let response = server.post_json("/api/v1/addresses", r#"{"domain": "not-ours.test"}"#);
    assert!(
        response.status == 400 || response.status == 404,
        "foreign domain: {}",
        response.describe()
    );
    response.assert_error(
        response.status,
        if response.status == 400 {
            "bad_request"
        } else {
            "not_found"
        },
    );
    server
        .post_json("/api/v1/addresses", "{not json")
        .assert_error(400, "bad_request");
}

#[test]
fn long_poll_is_answered_as_soon_as_mail_arrives() {
    let server = Server::start(&["--cores", "2"]);
    let address = "waiting@example.test";
    let http_addr = server.http_addr;
    let path = format!("{}?wait=30", inbox_path(address));
    let started = Instant::now();
    let poller = thread::spawn(move || {
        let mut conn = HttpConn::connect(http_addr);
        conn.set_read_timeout(Duration::from_secs(40));
        let response = conn.request("GET", &path, None);
        (response, Instant::now())
    });
    server.wait_metric_total("mayfly_http_long_polls_waiting", 1);
    let message = simple_message("wake up", "long poll");
    deliver(&server, &[address], &message);
    let (response, answered) = poller.join().expect("poller thread");
    assert_eq!(response.status, 200, "{}", response.describe());
    let inbox = response.json();
    // One message in the answer: it was held until the mail came, not answered at once.
    assert_eq!(
        inbox["messages"].as_array().map(Vec::len),
        Some(1),
        "{inbox}"
    );
    // Answered by the mail, long before the 30 s the poll would otherwise wait.
    let waited = answered.duration_since(started);
    assert!(
        waited < Duration::from_secs(25),
        "long poll answered only after {waited:?}, not when the mail arrived"
    );
    let id = inbox["messages"][0]["id"].as_str().expect("id");
    assert_bytes_eq(strip_received(&server.raw(address, id)), &message, address);
}

#[test]
fn long_poll_with_after_waits_for_a_newer_message() {
    let server = Server::start(&[]);
    let address = "after-wait@example.test";
    deliver(&server, &[address], &simple_message("old", "already there"));
    let inbox = server.wait_inbox_total(address, 1);
    let old_id = inbox["messages"][0]["id"].as_str().expect("id").to_string();
    let http_addr = server.http_addr;
    let path = format!("{}?after={old_id}&wait=30", inbox_path(address));
    let poller = thread::spawn(move || {
        let mut conn = HttpConn::connect(http_addr);
        conn.set_read_timeout(Duration::from_secs(40));
        conn.request("GET", &path, None)
    });
    server.wait_metric_total("mayfly_http_long_polls_waiting", 1);
    let message = simple_message("new", "newer than after");
    deliver(&server, &[address], &message);
    let response = poller.join().expect("poller thread");
    assert_eq!(response.status, 200, "{}", response.describe());
    let listing = response.json();
    let messages = listing["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "only the new message: {listing}");
    assert_eq!(messages[0]["subject"], "new");
    assert_ne!(messages[0]["id"], old_id.as_str());
}

#[test]
fn long_poll_times_out_with_an_empty_list() {
    let server = Server::start(&[]);
    let started = Instant::now();
    let inbox = server.inbox_query("nobody@example.test", "wait=1");
    let waited = started.elapsed();
    assert_eq!(inbox["messages"], serde_json::json!([]));
    assert_eq!(inbox["total"], 0);
    assert!(
        waited >= Duration::from_millis(900),
        "wait=1 answered after {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(4),
        "wait=1 answered after {waited:?}"
    );

    // wait=0 (the default) answers at once.
    let started = Instant::now();
    server.inbox_query("nobody@example.test", "wait=0");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "wait=0 took {:?}",
        started.elapsed()
    );
}

#[test]
fn after_and_limit_page_through_an_inbox() {
    let server = Server::start(&[]);
    let address = "pages@example.test";
    let mut smtp = server.smtp_ehlo();
    for index in 0..7 {
        smtp.send_mail(
            "pager@sender.test",
            &[address],
            &simple_message(&format!("page {index}"), "paging"),
        );
    }
    let inbox = server.wait_inbox_total(address, 7);
    let all_ids = ids_of(&inbox); // Newest first.
    assert_eq!(all_ids.len(), 7);
    let subjects: Vec<String> = inbox["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|s| s["subject"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        subjects,
        (0..7)
            .rev()
            .map(|i| format!("page {i}"))
            .collect::<Vec<_>>()
    );

    let first_page = server.inbox_query(address, "limit=2");
    assert_eq!(first_page["total"], 7, "total counts the whole inbox");
    assert_eq!(ids_of(&first_page), all_ids[..2]);
    assert_eq!(first_page["next_after"], all_ids[0].as_str());

    // Messages received after the 3rd oldest: the 4 newest.
    let after = &all_ids[4];
    let newer = server.inbox_query(address, &format!("after={after}"));
    assert_eq!(ids_of(&newer), all_ids[..4]);
    assert_eq!(newer["next_after"], all_ids[0].as_str());
    let newer_limited = server.inbox_query(address, &format!("after={after}&limit=1"));
    assert_eq!(newer_limited["messages"].as_array().map(Vec::len), Some(1));
    let newest = server.inbox_query(address, &format!("after={}", all_ids[0]));
    assert_eq!(
        newest["messages"],
        serde_json::json!([]),
        "nothing after the newest"
    );

    let limit_max = server.inbox_query(address, "limit=1000");
    assert_eq!(ids_of(&limit_max), all_ids);
}

#[test]
fn out_of_range_query_parameters_are_400() {
    let server = Server::start(&[]);
    let base = inbox_path("q@example.test");
    for query in [
        "limit=0",
        "limit=1001",
        "limit=abc",
        "limit=-1",
        "wait=61",
        "wait=-1",
        "wait=soon",
    ] {
        server
            .get(&format!("{base}?{query}"))
            .assert_error(400, "bad_request");
    }
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = Server::start(&[]);
    let mut conn = HttpConn::connect(server.http_addr);
    let first = conn.request("GET", "/healthz", None);
    assert_eq!(first.status, 200, "{}", first.describe());
    let second = conn.request("GET", &inbox_path("ka@example.test"), None);
    assert_eq!(second.status, 200, "{}", second.describe());
    assert_eq!(second.json()["address"], "ka@example.test");
    let third = conn.request("GET", "/nope", None);
    third.assert_error(404, "not_found");
    let fourth = conn.request("GET", "/healthz", None);
    assert_eq!(fourth.status, 200);

    // Two requests in one write are both answered, in order.
    conn.send_raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /api/v1/inboxes/pipe%40example.test HTTP/1.1\r\nHost: x\r\n\r\n");
    let first = conn.read_response(false);
    let second = conn.read_response(false);
    assert_eq!(first.status, 200);
    assert_eq!(second.status, 200);
    assert_eq!(second.json()["address"], "pipe@example.test");

    // `Connection: close` is honoured.
    let last = conn.request_with("GET", "/healthz", &[("Connection", "close")], None);
    assert_eq!(last.status, 200);
    assert!(
        conn.closed_within(Duration::from_secs(5)),
        "server keeps a Connection: close connection open"
    );
}

#[test]
fn malformed_requests_get_400() {
    let server = Server::start(&[]);
    for request in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n",
        b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
        b"\x00\x01\x02\r\n\r\n",
    ] {
        let mut conn = HttpConn::connect(server.http_addr);
        conn.send_raw(request);
        let response = conn.try_read_response(false).unwrap_or_else(|why| {
            panic!(
                "no response to malformed request {:?}: {why}",
                String::from_utf8_lossy(request)
            )
        });
        assert!(
            response.status == 400
                || (request.starts_with(b"GET /healthz HTTP/9.9") && response.status == 505),
            "malformed {:?}: {}",
            String::from_utf8_lossy(request),
            response.describe()
        );
    }
    // The server is still fine.
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn healthz_and_metrics() {
    let server = Server::start(&["--cores", "2"]);
    let health = server.get("/healthz");
    assert_eq!(health.status, 200);
    assert_eq!(health.text().trim(), "ok");

    let before = server.metrics();
    let message = simple_message("metrics", "count me");
    deliver(&server, &["m1@example.test", "m2@example.test"], &message);
    server.wait_inbox_total("m1@example.test", 1);
    server.wait_inbox_total("m2@example.test", 1);
    let response = server.get("/metrics");
    assert!(
        response
            .header("content-type")
            .unwrap_or_default()
            .starts_with("text/plain"),
        "{}",
        response.describe()
    );
    let after = response.text();
    assert!(
        after.lines().any(|line| line.starts_with("# TYPE ")),
        "Prometheus TYPE lines:\n{after}"
    );
    for part in [
        "connection",
        "messages_accepted",
        "reject",
        "evicted",
        "bytes_held",
    ] {
        assert!(
            metric_sum(&after, part).is_some(),
            "no metric named like {part:?}:\n{after}"
        );
    }
    let accepted_before = metric_sum(&before, "messages_accepted").unwrap_or(0.0);
    let accepted_after = metric_sum(&after, "messages_accepted").unwrap_or(0.0);
    assert!(
        accepted_after > accepted_before,
        "accepted counter did not grow:\n{after}"
    );
    let held = metric_sum(&after, "bytes_held").unwrap_or(0.0);
    assert!(
        held >= 2.0 * message.len() as f64,
        "bytes held {held} < two copies of the message:\n{after}"
    );
}

#[test]
fn oversize_rejection_shows_in_metrics() {
    let server = Server::start(&["--max-message-size", "64KiB"]);
    let before = metric_sum(&server.metrics(), "reject").unwrap_or(0.0);
    let mut smtp = server.smtp_ehlo();
    smtp.expect("MAIL FROM:<x@sender.test>", "250");
    smtp.expect("RCPT TO:<x@example.test>", "250");
    smtp.expect("DATA", "354");
    let body = format!("Subject: big\r\n\r\n{}\r\n", "z".repeat(900)).repeat(80);
    smtp.send(&common::dot_stuff(body.as_bytes()));
    smtp.read_reply().assert_starts("552 5.3.4");
    smtp.expect("QUIT", "221");
    let grew = common::eventually(Duration::from_secs(5), || {
        metric_sum(&server.metrics(), "reject").unwrap_or(0.0) > before
    });
    assert!(grew, "rejected counter did not grow:\n{}", server.metrics());
}

#[test]
fn default_limit_is_50_newest() {
    let server = Server::start(&[]);
    let address = "many@example.test";
    let mut smtp = server.smtp_ehlo();
    for index in 0..60 {
        smtp.send_mail(
            "bulk@sender.test",
            &[address],
            &simple_message(&format!("bulk {index}"), "default limit"),
        );
    }
    let inbox = server.wait_inbox_total(address, 60);
    let messages = inbox["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 50, "default limit is 50");
    assert_eq!(messages[0]["subject"], "bulk 59", "newest first");
    assert_eq!(messages[49]["subject"], "bulk 10");
}

#[test]
fn oversized_request_body_is_413() {
    let server = Server::start(&[]);
    let mut conn = HttpConn::connect(server.http_addr);
    // The length alone is enough to refuse: the body never comes.
    conn.send_raw(
        b"POST /api/v1/addresses HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n",
    );
    conn.read_response(false)
        .assert_error(413, "payload_too_large");
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn idle_and_slow_http_connections_are_closed() {
    let server = Server::start(&["--http-idle-timeout", "1s"]);
    // A kept-alive connection with no next request.
    let mut idle = HttpConn::connect(server.http_addr);
    assert_eq!(idle.request("GET", "/healthz", None).status, 200);
    // A request head that never ends (slowloris).
    let mut slow = HttpConn::connect(server.http_addr);
    slow.send_raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    let started = Instant::now();
    assert!(
        idle.closed_within(Duration::from_secs(6)),
        "idle keep-alive connection left open"
    );
    assert!(
        slow.closed_within(Duration::from_secs(6)),
        "incomplete request head left open"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "closed too early: {:?}",
        started.elapsed()
    );
    // A long poll is not an idle connection: wait=3 outlives the 1 s idle timeout.
    let started = Instant::now();
    let inbox = server.inbox_query("patient@example.test", "wait=3");
    assert_eq!(inbox["total"], 0);
    assert!(
        started.elapsed() >= Duration::from_millis(2900),
        "long poll cut short: {:?}",
        started.elapsed()
    );
}

#[test]
fn many_long_polls_on_both_cores_each_get_their_own_mail() {
    let server = Server::start(&["--cores", "2"]);
    let n_pollers = 12;
    let n_idle_pollers = 100;
    let http_addr = server.http_addr;
    let started = Instant::now();
    let pollers: Vec<_> = (0..n_pollers)
        .map(|index| {
            let path = format!(
                "{}?wait=30",
                inbox_path(&format!("poll{index}@example.test"))
            );
            thread::spawn(move || {
                let mut conn = HttpConn::connect(http_addr);
                conn.set_read_timeout(Duration::from_secs(40));
                let response = conn.request("GET", &path, None);
                (response, Instant::now())
            })
        })
        .collect();
    // Many more held requests that nothing will answer before their time is up.
    let idle_pollers: Vec<_> = (0..n_idle_pollers)
        .map(|index| {
            let path = format!(
                "{}?wait=5",
                inbox_path(&format!("quiet{index}@example.test"))
            );
            thread::spawn(move || {
                let mut conn = HttpConn::connect(http_addr);
                conn.set_read_timeout(Duration::from_secs(20));
                conn.request("GET", &path, None)
            })
        })
        .collect();
    server.wait_metric_total(
        "mayfly_http_long_polls_waiting",
        (n_pollers + n_idle_pollers) as u64,
    );
    let mut smtp = server.smtp_ehlo();
    for index in 0..n_pollers {
        let message = simple_message(&format!("poll {index}"), "wake exactly one poller");
        smtp.send_mail(
            "poll@sender.test",
            &[&format!("poll{index}@example.test")],
            &message,
        );
    }
    for (index, poller) in pollers.into_iter().enumerate() {
        let (response, answered) = poller.join().expect("poller thread");
        assert_eq!(response.status, 200, "{}", response.describe());
        let inbox = response.json();
        let messages = inbox["messages"].as_array().expect("messages");
        assert_eq!(messages.len(), 1, "poller {index}: {inbox}");
        assert_eq!(messages[0]["subject"], format!("poll {index}"));
        let waited = answered.duration_since(started);
        assert!(
            waited < Duration::from_secs(25),
            "poller {index} answered after {waited:?}, not when its mail came"
        );
    }
    for poller in idle_pollers {
        let response = poller.join().expect("idle poller thread");
        assert_eq!(response.status, 200, "{}", response.describe());
        assert_eq!(response.json()["messages"], serde_json::json!([]));
    }
}

#[test]
fn a_client_over_the_rate_limit_gets_429_with_retry_after() {
    // 5 requests/s with a burst of 10: 30 back-to-back requests must hit the limit.
    let server = Server::start(&["--http-rate-limit", "5"]);
    let statuses: Vec<u16> = (0..30).map(|_| server.get("/healthz").status).collect();
    assert!(
        statuses[..10].iter().all(|&status| status == 200),
        "{statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    let limited = server.get("/healthz");
    limited.assert_error(429, "rate_limited");
    let retry_after: u64 = limited
        .header("retry-after")
        .expect("Retry-After on a 429")
        .parse()
        .expect("whole seconds");
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    // A token comes back every 200 ms.
    assert!(common::eventually(Duration::from_secs(5), || server
        .get("/healthz")
        .status
        == 200));
}

#[test]
fn long_polls_over_the_per_core_cap_are_answered_at_once() {
    let server = Server::start(&["--cores", "1", "--max-long-polls-per-core", "1"]);
    let held = thread::scope(|scope| {
        let first = scope.spawn(|| {
            let started = Instant::now();
            let inbox = server.inbox_query("held@example.test", "wait=3");
            (started.elapsed(), inbox)
        });
        // Let the first poll park before the second arrives.
        server.wait_metric_total("mayfly_http_long_polls_waiting", 1);
        let started = Instant::now();
        let second = server.inbox_query("other@example.test", "wait=3");
        let second_elapsed = started.elapsed();
        assert_eq!(second["messages"], serde_json::json!([]), "{second}");
        assert!(
            second_elapsed < Duration::from_secs(2),
            "the cap did not apply: {second_elapsed:?}"
        );
        first.join().expect("first poll")
    });
    let (first_elapsed, first_inbox) = held;
    assert!(
        first_elapsed >= Duration::from_millis(2500),
        "the first poll was not held: {first_elapsed:?}"
    );
    assert_eq!(first_inbox["messages"], serde_json::json!([]));
}

#[test]
fn a_long_poll_whose_client_hangs_up_frees_its_slot_at_once() {
    // Two cores, so some inboxes are owned by the other core than the connection's:
    // the owner must notice that the requester went away, not only the local side.
    let server = Server::start(&["--cores", "2", "--max-long-polls-per-core", "1"]);
    for index in 0..6 {
        let mut conn = HttpConn::connect(server.http_addr);
        let path = format!(
            "{}?wait=60",
            inbox_path(&format!("hangup{index}@example.test"))
        );
        conn.send_raw(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        server.wait_metric_total("mayfly_http_long_polls_waiting", 1);
        drop(conn);
        // Well before the 60 s wait: the slot is free again, so the cap does not fill up
        // with requests nobody will read.
        server.wait_metric_total("mayfly_http_long_polls_waiting", 0);
    }
}

/// `--plus-addressing`: `alice+tag@d` is the inbox `alice@d` for SMTP and HTTP alike, and
/// each message keeps the tag it was sent with; without the flag a tagged address is an
/// inbox of its own.
#[test]
fn plus_addressing_delivers_tagged_mail_to_one_inbox_with_its_tag() {
    let server = Server::start(&["--plus-addressing"]);
    deliver(
        &server,
        &["alice+signup@example.test"],
        b"Subject: one\r\n\r\n1\r\n",
    );
    deliver(
        &server,
        &["Alice+News@example.test"],
        b"Subject: two\r\n\r\n2\r\n",
    );
    deliver(
        &server,
        &["alice@example.test"],
        b"Subject: three\r\n\r\n3\r\n",
    );
    let inbox = server.wait_inbox_total("alice@example.test", 3);
    let tags: Vec<&Value> = inbox["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|message| &message["tag"])
        .collect();
    assert_eq!(
        tags,
        [&Value::Null, &Value::from("News"), &Value::from("signup")],
        "the tag as written"
    );
    assert_eq!(inbox["messages"][2]["to"][0], "alice+signup@example.test");
    // tag: finds the mail of one tag, whole and case-insensitively.
    let signup = server.inbox_query("alice@example.test", "q=tag:SIGNUP");
    assert_eq!(
        signup["messages"].as_array().map(Vec::len),
        Some(1),
        "{signup}"
    );
    assert_eq!(signup["messages"][0]["tag"], "signup");
    let none = server.inbox_query("alice@example.test", "q=tag:sign");
    assert_eq!(none["messages"].as_array().map(Vec::len), Some(0), "{none}");
    let untagged = server.inbox_query("alice@example.test", "q=-tag:signup+-tag:news");
    assert_eq!(untagged["messages"][0]["subject"], "three", "{untagged}");
    // The tagged address reads the same inbox.
    let tagged = server.inbox("alice+whatever@example.test");
    assert_eq!(tagged["total"], 3, "{tagged}");
    assert_eq!(tagged["address"], "alice@example.test", "{tagged}");

    let plain = Server::start(&[]);
    deliver(
        &plain,
        &["alice+signup@example.test"],
        b"Subject: one\r\n\r\n1\r\n",
    );
    let own = plain.wait_inbox_total("alice+signup@example.test", 1);
    assert_eq!(own["messages"][0]["tag"], Value::Null);
    assert_eq!(plain.inbox("alice@example.test")["total"], 0);
}
