//! The rspamd protocol pieces: request head, reply parse, our header block and its
//! read-back, and the stripping of incoming spam fields.

use proptest::prelude::*;

use super::*;

/// rspamd 3.4's reply to a small message without Message-Id or Date (trimmed to the
/// fields we read and a few we ignore).
const REPLY: &str = r#"{"is_skipped":false,"score":3.400000,"required_score":15.0,
"action":"no action","symbols":{
"ARC_NA":{"name":"ARC_NA","score":0.0,"metric_score":0.0,"description":"ARC signature absent"},
"MISSING_MID":{"name":"MISSING_MID","score":2.500000,"metric_score":2.500000},
"MISSING_DATE":{"name":"MISSING_DATE","score":1.0,"metric_score":1.0},
"MIME_GOOD":{"name":"MIME_GOOD","score":-0.100000,"options":["text/plain"]}},
"messages":{},"message-id":"undef","time_real":0.070688,
"milter":{"remove_headers":{"X-Spam":0}}}"#;

fn endpoint() -> Endpoint {
    Endpoint::parse("http://127.0.0.1:11333").unwrap()
}

#[test]
fn endpoints_parse_with_default_port_and_prefix() {
    assert_eq!(
        endpoint(),
        Endpoint {
            addr: "127.0.0.1:11333".parse::<SocketAddr>().unwrap(),
            host: "127.0.0.1:11333".into(),
            path: "/checkv2".into(),
        }
    );
    let prefixed = Endpoint::parse("http://127.0.0.1/rspamd/").unwrap();
    assert_eq!(
        prefixed.addr,
        "127.0.0.1:11333".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(prefixed.path, "/rspamd/checkv2");
    let v6 = Endpoint::parse("http://[::1]:11400").unwrap();
    assert_eq!(v6.addr, "[::1]:11400".parse::<SocketAddr>().unwrap());
    let v6_default = Endpoint::parse("http://[::1]").unwrap();
    assert_eq!(
        v6_default.addr,
        "[::1]:11333".parse::<SocketAddr>().unwrap()
    );
    for bad in [
        "https://127.0.0.1",
        "127.0.0.1:11333",
        "http://",
        "http://127.0.0.1:99999",
        "http://127.0.0.1/a b",
        "http://127.0.0.1/?x",
    ] {
        assert!(Endpoint::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn request_head_carries_the_envelope_as_rspamd_headers() {
    let envelope = Envelope {
        mail_from: "sender@example.org",
        rcpts_text: "a@mayfly.test\nb@mayfly.test\n",
        helo: "mail.example.org",
        client_ip: Some("::ffff:192.0.2.7".parse().unwrap()),
        queue_id: "Q1",
        mta_name: "mx.mayfly.test",
    };
    let head = String::from_utf8(request_head(&endpoint(), &envelope, 42)).unwrap();
    assert_eq!(
        head,
        "POST /checkv2 HTTP/1.1\r\nHost: 127.0.0.1:11333\r\nConnection: close\r\n\
         User-Agent: mayfly\r\nContent-Length: 42\r\nFrom: sender@example.org\r\n\
         Rcpt: a@mayfly.test\r\nRcpt: b@mayfly.test\r\nIP: 192.0.2.7\r\n\
         Helo: mail.example.org\r\nQueue-Id: Q1\r\nMTA-Name: mx.mayfly.test\r\n\r\n"
    );
    // The null sender and no IP: the fields are left out; a control character cannot
    // end a line.
    let bare = Envelope {
        mail_from: "",
        client_ip: None,
        helo: "evil\r\nX-Injected: 1",
        ..envelope
    };
    let head = String::from_utf8(request_head(&endpoint(), &bare, 0)).unwrap();
    assert!(!head.contains("From:") && !head.contains("IP:"), "{head}");
    assert!(head.contains("Helo: evil??X-Injected: 1\r\n"), "{head}");
    assert_eq!(head.matches("\r\n\r\n").count(), 1);
}

#[test]
fn replies_parse_into_bounded_sorted_verdicts() {
    let verdict = parse_reply(200, REPLY.as_bytes()).unwrap();
    assert_eq!(verdict.score, 3.4);
    assert_eq!(verdict.required_score, 15.0);
    assert_eq!(verdict.action, "no action");
    assert!(!verdict.is_spam);
    let names: Vec<&str> = verdict.symbols.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["MISSING_MID", "MISSING_DATE", "MIME_GOOD", "ARC_NA"],
        "heaviest first"
    );
    assert_eq!(verdict.symbols[2].score, -0.1);

    let gtube = r#"{"is_skipped":true,"score":15.0,"required_score":15.0,"action":"reject",
        "symbols":{"GTUBE":{"name":"GTUBE","score":0.0,"metric_score":0.0}},
        "messages":{"smtp_message":"Gtube pattern"}}"#;
    let verdict = parse_reply(200, gtube.as_bytes()).unwrap();
    assert!(verdict.is_spam);
    assert!(verdict.rejected_at(Some(15.0)));
    assert!(!verdict.rejected_at(Some(15.01)));
    assert!(!verdict.rejected_at(None));

    assert_eq!(parse_reply(500, b"{}"), Err(ReplyError::Status(500)));
    assert!(matches!(
        parse_reply(200, b"<html>"),
        Err(ReplyError::Malformed(_))
    ));
    assert!(matches!(
        parse_reply(
            200,
            br#"{"score":"x","required_score":1,"action":"reject"}"#
        ),
        Err(ReplyError::Malformed(_))
    ));
}

#[test]
fn hostile_replies_are_cut_and_cleaned() {
    let mut symbols = String::new();
    for idx in 0..500 {
        symbols.push_str(&format!(
            r#""S{idx}\r\nX-Evil: 1{}":{{"score":{idx}.0}},"#,
            "A".repeat(200)
        ));
    }
    symbols.pop();
    let body = format!(
        r#"{{"score":1e3,"required_score":15,"action":"reject\r\nX-Evil: 1","symbols":{{{symbols}}}}}"#
    );
    let verdict = parse_reply(200, body.as_bytes()).unwrap();
    assert_eq!(verdict.symbols.len(), SYMBOLS_MAX);
    assert_eq!(verdict.symbols[0].score, 499.0);
    assert!(verdict.symbols.iter().all(|s| {
        s.name.len() <= SYMBOL_NAME_BYTES_MAX
            && s.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    }));
    assert_eq!(verdict.action, "reject-vil");
    let block = header_block(&verdict);
    assert!(!block.contains("X-Evil"), "{block}");
}

#[test]
fn the_header_block_reads_back_as_the_verdict() {
    let verdict = parse_reply(200, REPLY.as_bytes()).unwrap();
    let block = header_block(&verdict);
    assert_eq!(
        block,
        "X-Spam-Status: No, score=3.40 required=15.00\r\nX-Spam-Action: no action\r\n\
         X-Spam-Symbols: MISSING_MID(2.50), MISSING_DATE(1.00), MIME_GOOD(-0.10),\r\n\
         \tARC_NA(0.00)\r\n"
    );
    for line in block.split("\r\n") {
        assert!(line.len() <= LINE_BYTES_MAX, "{line}");
    }
    let pairs = fields(&block);
    assert_eq!(
        parse_ours(pairs.iter().map(|(n, v)| (*n, v.as_str()))),
        Some(verdict)
    );
}

#[test]
fn parse_ours_wants_our_status_field() {
    assert_eq!(parse_ours(std::iter::empty()), None);
    let fake = [("X-Spam-Status", "Maybe, score=1 required=2")];
    assert_eq!(parse_ours(fake.into_iter()), None);
    let no_symbols = [("X-Spam-Status", "Yes, score=16.00 required=15.00")];
    let verdict = parse_ours(no_symbols.into_iter()).unwrap();
    assert!(verdict.is_spam && verdict.symbols.is_empty() && verdict.action.is_empty());
}

#[test]
fn incoming_spam_fields_are_stripped_whole() {
    let raw = b"X-Spam-Status: Yes, score=99\r\n\tfolded\r\nSubject: hi\r\nx-spam: yes\r\n\
        X-Spam-Checker-Version: kept\r\nX-Spam-Flag : YES\r\n\r\nX-Spam: body\r\n";
    let stripped = strip_incoming(raw).unwrap();
    assert_eq!(
        stripped,
        b"Subject: hi\r\nX-Spam-Checker-Version: kept\r\n\r\nX-Spam: body\r\n"
    );
    assert_eq!(strip_incoming(b"Subject: hi\r\n\r\nbody"), None);
}

/// `block` split into (name, unfolded value) pairs, as the message parse yields them.
fn fields(block: &str) -> Vec<(&str, String)> {
    let mut out: Vec<(&str, String)> = Vec::new();
    for line in block.split("\r\n").filter(|line| !line.is_empty()) {
        if let Some(rest) = line.strip_prefix('\t') {
            out.last_mut().unwrap().1.push_str(&format!(" {rest}"));
        } else {
            let (name, value) = line.split_once(':').unwrap();
            out.push((name, value.to_string()));
        }
    }
    out
}

proptest! {
    /// Whatever rspamd sends, parsing never panics, and a verdict it yields writes a
    /// block that reads back as itself.
    #[test]
    fn any_reply_round_trips_or_is_refused(
        score in -1e6f64..1e6,
        action in "[ -~\\r\\n]{0,40}",
        symbols in proptest::collection::vec(("[ -~]{0,80}", -100f64..100.0), 0..80),
    ) {
        let symbols: serde_json::Map<String, serde_json::Value> = symbols
            .into_iter()
            .map(|(name, score)| (name, serde_json::json!({ "score": score })))
            .collect();
        let body = serde_json::json!({
            "score": score, "required_score": 15.0, "action": action, "symbols": symbols,
        });
        let verdict = parse_reply(200, body.to_string().as_bytes()).unwrap();
        let block = header_block(&verdict);
        let pairs = fields(&block);
        let read_back = parse_ours(pairs.iter().map(|(n, v)| (*n, v.as_str()))).unwrap();
        prop_assert_eq!(read_back.score, verdict.score);
        prop_assert_eq!(read_back.symbols, verdict.symbols);
        prop_assert_eq!(read_back.is_spam, verdict.is_spam);
    }
}
