//! Search and wait-for-match on the real binary (`GET /api/v1/inboxes/{address}?q=...`,
//! docs/api.md "Search"): every operator of the query language, the 400 for a bad query,
//! and `q=` with `wait=`: answered when a matching message arrives, not woken for good by
//! one that does not match, and empty when the time is up.
//! Mail goes in over SMTP with the raw client, so each test controls the exact bytes.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{HttpConn, Server, inbox_path, percent_encode};

/// Sends one message from `mail_from` over a new SMTP session; checks the 250.
fn deliver_from(server: &Server, mail_from: &str, recipients: &[&str], message: &str) {
    let mut smtp = server.smtp_ehlo();
    smtp.send_mail(mail_from, recipients, message.as_bytes());
    smtp.expect("QUIT", "221");
}

/// The subjects of a listing's messages, newest first.
fn subjects(listing: &Value) -> Vec<String> {
    listing["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|message| message["subject"].as_str().expect("subject").to_string())
        .collect()
}

/// The subjects `q` finds in `address` (percent-encoded here).
fn search(server: &Server, address: &str, q: &str) -> Vec<String> {
    subjects(&server.inbox_query(address, &format!("q={}", percent_encode(q))))
}

/// A long poll for `query` on its own connection and thread; returns the response and how
/// long it took.
fn long_poll(server: &Server, address: &str, query: &str) -> thread::JoinHandle<(Value, Duration)> {
    let http_addr = server.http_addr;
    let path = format!("{}?{query}", inbox_path(address));
    thread::spawn(move || {
        let started = Instant::now();
        let mut conn = HttpConn::connect(http_addr);
        conn.set_read_timeout(Duration::from_secs(40));
        let response = conn.request("GET", &path, None);
        assert_eq!(response.status, 200, "{}", response.describe());
        (response.json(), started.elapsed())
    })
}

#[test]
fn every_operator_finds_what_it_says() {
    let server = Server::start(&[]);
    let a = "searched@example.test";
    deliver_from(
        &server,
        "bounce-17@mailer.test",
        &[a],
        "From: \"Acme Accounts\" <accounts@acme.test>\r\nTo: searched@example.test\r\n\
         Subject: Your verification code\r\n\r\nHello,\r\nyour code is\r\n  482913.\r\n",
    );
    deliver_from(
        &server,
        "news@letters.test",
        &["Searched@Example.test"],
        "From: Weekly <news@letters.test>\r\nCc: Team Blue <blue@team.test>\r\n\
         Subject: Weekly NEWS\r\nContent-Type: text/html\r\n\r\n\
         <p>Straße of the <b>week</b>: nothing to verify.</p>\r\n",
    );
    deliver_from(
        &server,
        "",
        &[a],
        "From: billing@acme.test\r\nSubject: Invoice\r\n\
         Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
         Content-Type: text/plain\r\n\r\nYour invoice is attached.\r\n--b\r\n\
         Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=i.pdf\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n",
    );
    let inbox = server.wait_inbox_total(a, 3);
    let all = ["Invoice", "Weekly NEWS", "Your verification code"];
    assert_eq!(subjects(&inbox), all);
    // Open the newest: it is read, the others unread.
    let invoice_id = inbox["messages"][0]["id"].as_str().expect("id");
    let opened = server.get(&format!("{}/messages/{invoice_id}", inbox_path(a)));
    assert_eq!(opened.status, 200, "{}", opened.describe());

    let table: &[(&str, &[&str])] = &[
        // Envelope sender, header display name, header address.
        ("from:mailer.test", &["Your verification code"]),
        ("from:\"acme accounts\"", &["Your verification code"]),
        ("from:acme.test", &["Invoice", "Your verification code"]),
        // Envelope recipient as written, and the Cc header.
        ("to:Searched@Example", &all),
        ("to:blue@team", &["Weekly NEWS"]),
        ("to:\"team blue\"", &["Weekly NEWS"]),
        ("subject:news", &["Weekly NEWS"]),
        ("SUBJECT:\"verification code\"", &["Your verification code"]),
        ("has:attachment", &["Invoice"]),
        (
            "-has:attachment",
            &["Weekly NEWS", "Your verification code"],
        ),
        ("is:read", &["Invoice"]),
        ("is:unread", &["Weekly NEWS", "Your verification code"]),
        ("after:2000-01-01", &all),
        ("before:2000-01-01T00:00:00Z", &[]),
        ("before:2999-12-31", &all),
        ("-after:2999-12-31T23:59:59+01:00", &all),
        // Free text: subject or body, any case; a phrase across a line break; words AND.
        ("482913", &["Your verification code"]),
        ("\"code is 482913\"", &["Your verification code"]),
        ("verif", &["Weekly NEWS", "Your verification code"]),
        ("verify STRASSE", &[]),
        ("verify straße", &["Weekly NEWS"]),
        ("your -code", &["Invoice"]),
        ("attached is:read", &["Invoice"]),
        // Reserved: parsed, matches nothing yet.
        ("tag:signup", &[]),
        ("-tag:signup", &all),
    ];
    for (q, expected) in table {
        assert_eq!(search(&server, a, q), *expected, "q={q}");
    }
    // `+` is a space in `q`, as form encoders write it.
    let listing = server.inbox_query(a, "q=subject:weekly+is:unread");
    assert_eq!(subjects(&listing), ["Weekly NEWS"]);
    // The listing's own fields are the inbox's: `total` counts every message.
    assert_eq!(listing["total"], 3);
    assert_eq!(listing["next_after"], invoice_id);
    // `limit` keeps the newest matches.
    let limited = server.inbox_query(a, "q=your&limit=1");
    assert_eq!(subjects(&limited), ["Invoice"]);
}

#[test]
fn a_bad_query_is_a_400_that_says_why() {
    let server = Server::start(&[]);
    let cases = [
        ("form:bob", "unknown search key \"form\""),
        ("\"open", "unterminated quote"),
        ("is:new", "is: takes \"read\" or \"unread\""),
        ("before:tomorrow", "before: takes an RFC 3339 date"),
        ("subject:", "subject: needs a value"),
    ];
    for (q, says) in cases {
        let path = format!("{}?q={}", inbox_path("x@example.test"), percent_encode(q));
        let response = server.get(&path);
        response.assert_error(400, "bad_request");
        let message = response.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(message.contains(says), "q={q}: {message}");
    }
    let too_long = "x".repeat(1025);
    server
        .get(&format!("{}?q={too_long}", inbox_path("x@example.test")))
        .assert_error(400, "bad_request");
}

/// The test a QA suite writes: one request that waits for the sign-up mail. Mail that
/// does not match arrives first and must not end the wait.
#[test]
fn wait_for_match_ignores_other_mail_and_answers_the_match() {
    let server = Server::start(&["--cores", "2"]);
    let a = "signup@example.test";
    let poller = long_poll(&server, a, "q=subject%3Averify+from%3Aacme&wait=30");
    server.wait_metric_total("mayfly_http_long_polls_waiting", 1);

    // Not a match (the subject matches, the sender does not): the poll parks again.
    deliver_from(
        &server,
        "news@letters.test",
        &[a],
        "Subject: Verify your newsletter\r\n\r\nhi\r\n",
    );
    server.wait_inbox_total(a, 1);
    server.wait_metric_total("mayfly_http_long_polls_waiting", 1);
    assert!(
        !poller.is_finished(),
        "a message that does not match ended the wait"
    );

    deliver_from(
        &server,
        "accounts@acme.test",
        &[a],
        "Subject: Verify your account\r\n\r\nyour code is 482913\r\n",
    );
    let (listing, waited) = poller.join().expect("poller");
    assert_eq!(subjects(&listing), ["Verify your account"]);
    assert_eq!(listing["total"], 2);
    assert!(
        waited < Duration::from_secs(25),
        "answered after {waited:?}"
    );
    server.wait_metric_total("mayfly_http_long_polls_waiting", 0);
}

#[test]
fn wait_for_match_on_the_body_with_after() {
    let server = Server::start(&[]);
    let a = "body-wait@example.test";
    deliver_from(
        &server,
        "x@x.test",
        &[a],
        "Subject: old\r\n\r\ncode 111111\r\n",
    );
    let inbox = server.wait_inbox_total(a, 1);
    let old_id = inbox["messages"][0]["id"].as_str().expect("id").to_string();
    // The old message matches, but `after` excludes it: the request waits.
    let poller = long_poll(&server, a, &format!("after={old_id}&q=code&wait=30"));
    server.wait_metric_total("mayfly_http_long_polls_waiting", 1);
    deliver_from(
        &server,
        "x@x.test",
        &[a],
        "Subject: other\r\n\r\nnothing\r\n",
    );
    server.wait_inbox_total(a, 2);
    deliver_from(
        &server,
        "x@x.test",
        &[a],
        "Subject: new\r\nContent-Type: text/html\r\n\r\n<p>Your <b>code</b>: 222222</p>\r\n",
    );
    let (listing, _) = poller.join().expect("poller");
    assert_eq!(subjects(&listing), ["new"]);
}

#[test]
fn wait_for_match_times_out_empty_and_answers_at_once_when_a_match_is_there() {
    let server = Server::start(&[]);
    let a = "nomatch@example.test";
    deliver_from(&server, "x@x.test", &[a], "Subject: hello\r\n\r\nhi\r\n");
    server.wait_inbox_total(a, 1);
    let started = Instant::now();
    let listing = server.inbox_query(a, "q=subject:bye&wait=1");
    let waited = started.elapsed();
    assert_eq!(listing["messages"], serde_json::json!([]));
    assert_eq!(listing["total"], 1);
    assert!(
        waited >= Duration::from_millis(900),
        "answered after {waited:?}"
    );

    let started = Instant::now();
    let listing = server.inbox_query(a, "q=subject:hello&wait=30");
    assert_eq!(subjects(&listing), ["hello"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a match already there is answered at once, not after {:?}",
        started.elapsed()
    );
}

/// The README's QA example, run for real: a Python script with `requests` makes a private
/// address, waits for the sign-up mail with one `q=...&wait=` request, and reads the code
/// and the verification link; a mail that does not match does not end its wait.
#[test]
fn a_qa_script_waits_for_its_code_with_one_request() {
    use std::io::{BufRead, BufReader};
    let server = Server::start(&["--private-inboxes", "--domain", "example.test"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/qa_wait_code.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .arg(format!("http://{}", server.http_addr))
        .arg("subject:\"verify your\" from:acme")
        .arg("30")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (tests/run.sh installs requests)");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("text");
    let address = first
        .strip_prefix("address=")
        .expect("address=...")
        .to_string();
    server.wait_metric_total("mayfly_http_long_polls_waiting", 1);

    deliver_from(
        &server,
        "news@letters.test",
        &[&address],
        "Subject: Verify your newsletter settings\r\n\r\nNothing to enter.\r\n",
    );
    server.wait_metric_total("mayfly_messages_accepted_total", 1);
    server.wait_metric_total("mayfly_http_long_polls_waiting", 1);
    deliver_from(
        &server,
        "accounts@acme.test",
        &[&address],
        "From: Acme <accounts@acme.test>\r\nSubject: Verify your Acme account\r\n\r\n\
         Your verification code is 482913.\r\n\r\n\
         Or confirm here: https://acme.test/confirm?t=Zx81Qm2Lp4\r\n",
    );
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("the script ends");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert!(status.success(), "{status}: {rest:?}\n{stderr}");
    assert_eq!(
        rest,
        ["code=482913", "link=https://acme.test/confirm?t=Zx81Qm2Lp4"],
        "{stderr}"
    );
}
