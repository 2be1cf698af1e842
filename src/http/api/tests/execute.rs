//! `execute` against a real `Shard` and `ViewCache`, and the JSON it renders.

use proptest::prelude::*;

use super::*;
use crate::http::api::views::{ATTACHMENT_CSP, Rfc3339, content_disposition};
use crate::mail::ParsedMessage;
use crate::partition::PartitionSet;
use crate::store::{Incoming, Rcpt, ShardConfig};

/// The hand-written RFC 3339 formatter against the `time` crate, over 0000..=9999.
#[test]
fn rfc3339_matches_the_time_crate() {
    use time::OffsetDateTime;
    use time::macros::format_description;
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    let first = OffsetDateTime::from_unix_timestamp(-62_167_219_200).expect("year 0");
    let last = OffsetDateTime::from_unix_timestamp(253_402_300_799).expect("year 9999");
    let mut unix_secs = first.unix_timestamp();
    // A stride that is not a multiple of a day or a year visits every field value.
    while unix_secs <= last.unix_timestamp() {
        let expected = OffsetDateTime::from_unix_timestamp(unix_secs)
            .expect("in range")
            .format(format)
            .expect("formattable");
        let ours = Rfc3339::of_secs(unix_secs).expect("in range");
        assert_eq!(ours.as_str(), expected, "{unix_secs}");
        unix_secs += 2_592_001 * 7 + 3_607;
    }
    assert!(Rfc3339::of_secs(first.unix_timestamp() - 1).is_none());
    assert!(Rfc3339::of_secs(last.unix_timestamp() + 1).is_none());
    assert_eq!(rfc3339(1_795_817_744_999), "2026-11-27T22:15:44Z");
}
/// A store and its view cache, driven as the runtime drives them.
struct TestShard {
    store: Shard,
    views: ViewCache,
}

impl std::ops::Deref for TestShard {
    type Target = Shard;
    fn deref(&self) -> &Shard {
        &self.store
    }
}

fn shard() -> TestShard {
    TestShard {
        store: Shard::new(ShardConfig {
            shard_idx: 1,
            boot_micros: BOOT_MICROS,
            ring_bytes: 64 * 1024,
            ttl_ms: 3_600_000,
            inbox_messages_max: 100,
        }),
        views: ViewCache::new(1 << 20),
    }
}

fn deliver(shard: &mut TestShard, written: &[&str], message: &str, now_ms: u64) -> MessageId {
    let parts: [&[u8]; 2] = [RECEIVED.as_bytes(), message.as_bytes()];
    let rcpts: Vec<Rcpt<'_>> = written.iter().map(|w| Rcpt::new(w).unwrap()).collect();
    let incoming = Incoming {
        mail_from: "bob@sender.test",
        rcpts: &rcpts,
        parts: &parts,
        received_at_ms: now_ms,
    };
    shard.store.insert(&incoming, now_ms).expect("fits")
}

/// Executes `request` at `now_ms`; a view the cache lacks is parsed right here (the
/// runtime does it off the executor) and the request executed again, as the runtime does.
fn execute_at(
    shard: &mut TestShard,
    request: &InboxRequest,
    now_ms: u64,
    may_wait: bool,
) -> Outcome {
    let mut n_parses = 0;
    let mut search = SearchState::default();
    loop {
        let outcome = execute(
            request,
            &mut shard.store,
            &mut shard.views,
            now_ms,
            may_wait,
            &mut search,
        );
        shard.views.sync(&mut shard.store);
        let id = match outcome {
            Outcome::Parse(id) => id,
            Outcome::ParseBatch(batch) => {
                search.absorb(batch.job(&shard.store, &request.key).run());
                continue;
            }
            Outcome::Yield => continue,
            outcome => return outcome,
        };
        n_parses += 1;
        assert_eq!(n_parses, 1, "a parsed view is used, not parsed again");
        let message = shard
            .store
            .get(&request.key, id)
            .expect("asked to parse a held message");
        let (_, view) = ParsedMessage::parse(message.raw);
        shard.views.insert_view(&message, view);
    }
}

fn run(shard: &mut TestShard, address: &str, op: InboxOp, may_wait: bool) -> Outcome {
    let request = InboxRequest {
        key: key(address),
        op,
    };
    execute_at(shard, &request, NOW_MS, may_wait)
}

fn ready_json(outcome: Outcome, status: u16) -> Value {
    let Outcome::Ready(response) = outcome else {
        panic!("expected a response, got {outcome:?}");
    };
    assert_eq!(response.status, status);
    assert_eq!(response.content_type, "application/json");
    serde_json::from_slice(&response.body).expect("JSON")
}

#[test]
fn lists_summaries_newest_first() {
    let mut shard = shard();
    let a = "a@example.test";
    let first_message = "Subject: =?utf-8?q?Hej_d=C3=A5?=\r\n\
        Date: Fri, 27 Nov 2026 22:15:44 +0000\r\n\r\nHello\r\n  world\r\n";
    let first = deliver(
        &mut shard,
        &["A@example.test", "a@example.test", "b@example.test"],
        first_message,
        NOW_MS,
    );
    let second = deliver(
        &mut shard,
        &[a],
        "Subject: second\r\nDate: nonsense\r\n\r\n",
        NOW_MS + 1000,
    );
    let body = ready_json(run(&mut shard, a, list(None, 50, 0), true), 200);
    assert_eq!(body["address"], a);
    assert_eq!(body["total"], 2);
    assert_eq!(body["next_after"], second.to_string());
    let messages = body["messages"].as_array().expect("array");
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["id"], second.to_string());
    assert_eq!(messages[0]["date"], Value::Null);
    let summary = &messages[1];
    assert_eq!(
        *summary,
        json!({
            "id": first.to_string(),
            "from": "bob@sender.test",
            "header_from": null,
            "to": ["A@example.test", "a@example.test"],
            "subject": "Hej då",
            "date": "2026-11-27T22:15:44Z",
            "received_at": "2026-11-27T22:15:44Z",
            "expires_at": "2026-11-27T23:15:44Z",
            "size": RECEIVED.len() + first_message.len(),
            "preview": "Hello world",
            "seen": false,
            "tag": null,
        })
    );

    // `after` and `limit`.
    let cases = [
        (Some(first), 50, vec![second], Some(second)),
        (Some(second), 50, vec![], Some(second)),
        (None, 1, vec![second], Some(second)),
        (
            Some(MessageId { seq: 99, ..second }),
            50,
            vec![],
            Some(MessageId { seq: 99, ..second }),
        ),
    ];
    for (after, limit, expected_ids, expected_next) in cases {
        let body = ready_json(run(&mut shard, a, list(after, limit, 0), true), 200);
        let ids: Vec<String> = expected_ids.iter().map(MessageId::to_string).collect();
        let got: Vec<&str> = body["messages"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|m| m["id"].as_str())
            .collect();
        assert_eq!(got, ids, "after {after:?}");
        assert_eq!(
            body["next_after"],
            json!(expected_next.map(|id| id.to_string())),
            "after {after:?}"
        );
        assert_eq!(body["total"], 2);
    }
    let body = ready_json(
        run(&mut shard, "nobody@example.test", list(None, 50, 0), true),
        200,
    );
    assert_eq!(
        body,
        json!({"address": "nobody@example.test", "total": 0, "messages": [], "next_after": null})
    );
}

#[test]
fn long_polls_wait_only_when_nothing_matches() {
    let mut shard = shard();
    let a = "a@example.test";
    assert_eq!(run(&mut shard, a, list(None, 50, 5), true), Outcome::Wait);
    let body = ready_json(run(&mut shard, a, list(None, 50, 5), false), 200);
    assert_eq!(body["messages"], json!([]));
    let id = deliver(&mut shard, &[a], "\r\nhi", NOW_MS);
    assert!(matches!(
        run(&mut shard, a, list(None, 50, 5), true),
        Outcome::Ready(_)
    ));
    assert_eq!(
        run(&mut shard, a, list(Some(id), 50, 5), true),
        Outcome::Wait
    );
    assert!(matches!(
        run(&mut shard, a, list(Some(id), 50, 0), true),
        Outcome::Ready(_)
    ));
}

#[test]
fn reads_a_message_and_its_raw_bytes() {
    let mut shard = shard();
    let a = "a@example.test";
    let message = "From: =?utf-8?q?J=C3=B6rg?= <j@sender.test>\r\nSubject: Hi\r\n  there\r\n\
        Content-Type: text/html\r\n\r\n<p>Hi <script>alert(1)</script><b>you</b></p>\r\n";
    let id = deliver(&mut shard, &[a], message, NOW_MS);
    let listed = ready_json(run(&mut shard, a, list(None, 50, 0), true), 200);
    assert_eq!(
        listed["messages"][0]["seen"], false,
        "listing marks nothing seen"
    );
    let body = ready_json(
        run(&mut shard, a, InboxOp::Message { id: Some(id) }, true),
        200,
    );
    assert_eq!(body["seen"], true, "opening a message marks it seen");
    let listed = ready_json(run(&mut shard, a, list(None, 50, 0), true), 200);
    assert_eq!(listed["messages"][0]["seen"], true);
    assert_eq!(
        body["headers"],
        json!([
            [
                "Received",
                "from client by mayfly; Fri, 27 Nov 2026 22:15:44 +0000"
            ],
            ["From", "Jörg <j@sender.test>"],
            ["Subject", "Hi there"],
            ["Content-Type", "text/html"],
        ])
    );
    assert_eq!(body["subject"], "Hi there");
    assert_eq!(body["html"], "<p>Hi <b>you</b></p>\n");
    assert_eq!(body["attachments"], json!([]));
    let text = body["text"].as_str().expect("text");
    assert!(
        text.contains("Hi") && text.contains("you") && !text.contains('<'),
        "{text:?}"
    );

    let Outcome::Ready(raw) = run(&mut shard, a, InboxOp::Raw { id: Some(id) }, true) else {
        panic!("not ready")
    };
    assert_eq!((raw.status, raw.content_type), (200, "message/rfc822"));
    assert!(
        raw.body.starts_with(b"Received: from client") && raw.body.ends_with(message.as_bytes())
    );

    for op in [
        InboxOp::Message { id: None },
        InboxOp::Raw { id: None },
        InboxOp::Raw {
            id: Some(MessageId { seq: 2, ..id }),
        },
        InboxOp::DeleteMessage { id: None },
    ] {
        let body = ready_json(run(&mut shard, a, op.clone(), true), 404);
        assert_eq!(body["error"]["code"], "not_found", "{op:?}");
    }
    let body = ready_json(
        run(
            &mut shard,
            "b@example.test",
            InboxOp::Message { id: Some(id) },
            true,
        ),
        404,
    );
    assert_eq!(body["error"]["code"], "not_found");
}

#[test]
fn serves_attachments_and_rewrites_inline_images() {
    let mut shard = shard();
    let a = "a+b@example.test";
    let message = "Subject: files\r\n\
        Content-Type: multipart/mixed; boundary=XX\r\n\r\n\
        --XX\r\n\
        Content-Type: text/html\r\n\r\n\
        <img src=\"cid:pic\"><a href=\"https://ok.test\">ok</a>\r\n\
        --XX\r\n\
        Content-Type: image/gif; name=\"\\\"x\\\"/..\\\\evil.gif\"\r\n\
        Content-ID: <pic>\r\n\
        Content-Transfer-Encoding: base64\r\n\r\n\
        R0lGODlh\r\n\
        --XX\r\n\
        Content-Type: application/octet-stream\r\n\
        Content-Disposition: attachment\r\n\r\n\
        raw bytes\r\n\
        --XX--\r\n";
    let id = deliver(&mut shard, &[a], message, NOW_MS);
    let body = ready_json(
        run(&mut shard, a, InboxOp::Message { id: Some(id) }, true),
        200,
    );
    let prefix = format!("/api/v1/inboxes/a%2Bb@example.test/messages/{id}/attachments/");
    assert_eq!(
        body["html"],
        format!(
            "<img src=\"{prefix}0\"><a href=\"https://ok.test\" target=\"_blank\" \
             rel=\"noopener noreferrer\">ok</a>"
        )
    );
    assert_eq!(
        body["attachments"],
        json!([
            {"index": 0, "filename": "\"x\"/..\\evil.gif", "content_type": "image/gif", "size": 6},
            {"index": 1, "filename": null, "content_type": "application/octet-stream", "size": 9},
        ])
    );
    /// Content-Type, Content-Disposition and body of a download.
    type Download<'t> = (&'t str, &'t str, &'t [u8]);
    let cases: [(Option<usize>, Option<Download<'_>>); 4] = [
        (
            Some(0),
            Some((
                "image/gif",
                "attachment; filename=\"_x__.._evil.gif\"; filename*=UTF-8''%22x%22_.._evil.gif",
                b"GIF89a",
            )),
        ),
        (
            Some(1),
            Some((
                "application/octet-stream",
                "attachment; filename=\"attachment-1\"",
                b"raw bytes",
            )),
        ),
        (Some(2), None),
        (None, None),
    ];
    for (index, expected) in cases {
        let outcome = run(
            &mut shard,
            a,
            InboxOp::Attachment {
                id: Some(id),
                index,
            },
            true,
        );
        match expected {
            Some((content_type, disposition, bytes)) => {
                let Outcome::Ready(response) = outcome else {
                    panic!("not ready");
                };
                assert_eq!(response.status, 200);
                let header = |name: &str| {
                    response
                        .headers
                        .iter()
                        .find(|(key, _)| *key == name)
                        .map(|(_, value)| value.as_str())
                };
                assert_eq!(header("Content-Type"), Some(content_type));
                assert_eq!(header("Content-Disposition"), Some(disposition));
                assert_eq!(header("Content-Security-Policy"), Some(ATTACHMENT_CSP));
                assert_eq!(response.body, bytes);
            }
            None => {
                let body = ready_json(outcome, 404);
                assert_eq!(body["error"]["code"], "not_found");
            }
        }
    }
    let gone = InboxOp::Attachment {
        id: Some(MessageId { seq: 9, ..id }),
        index: Some(0),
    };
    ready_json(run(&mut shard, a, gone, true), 404);
}

/// `ENDPOINTS` is the routing table: each listed method routes (the WebSocket path
/// answers 426 without a handshake), every other method on it is a 405.
#[test]
fn endpoints_list_what_route_serves() {
    use Method::*;
    let concrete = |template: &str| {
        template
            .replace("{address}", "a%40example.test")
            .replace("{id}", "nope")
            .replace("{index}", "0")
            .replace("{name}", "index.html")
    };
    for (_, template) in ENDPOINTS {
        for method in [Get, Head, Post, Delete, Patch, Other] {
            let name = match method {
                Get => "GET",
                Head => "HEAD",
                Post => "POST",
                Delete => "DELETE",
                Patch => "PATCH",
                Other => "OTHER",
            };
            let listed = ENDPOINTS.contains(&(name, template));
            let path = concrete(template);
            let status = match route(&get(method, &path, ""), &domains()) {
                Ok(_) => 200,
                Err(response) => response.status,
            };
            let expected = match (listed, template.ends_with("/ws")) {
                // PATCH routes only with its body, which this request lacks.
                (true, false) if method == Patch => 400,
                (true, true) => 426,
                (true, false) => 200,
                (false, _) => 405,
            };
            assert_eq!(status, expected, "{name} {path}");
        }
    }
}

#[test]
fn content_dispositions_are_safe() {
    let long = "a".repeat(FILENAME_CHARS_MAX + 10);
    let long_expected = format!(
        "attachment; filename=\"{}\"",
        "a".repeat(FILENAME_CHARS_MAX)
    );
    let cases = [
        ("report.pdf", "attachment; filename=\"report.pdf\""),
        (
            "résumé.pdf",
            "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf",
        ),
        (
            "a\"b\r\nX-Evil: 1.txt",
            "attachment; filename=\"a_bX-Evil: 1.txt\"; filename*=UTF-8''a%22bX-Evil%3A%201.txt",
        ),
        (
            "../../etc/passwd",
            "attachment; filename=\".._.._etc_passwd\"",
        ),
        (
            "100%.txt",
            "attachment; filename=\"100_.txt\"; filename*=UTF-8''100%25.txt",
        ),
        (long.as_str(), long_expected.as_str()),
    ];
    for (filename, expected) in cases {
        assert_eq!(content_disposition(filename), expected, "{filename:?}");
    }
}

#[test]
fn deletes_and_expires() {
    let mut shard = shard();
    let a = "a@example.test";
    let id = deliver(&mut shard, &[a], "\r\n1", NOW_MS);
    deliver(&mut shard, &[a], "\r\n2", NOW_MS);
    let deleted = run(&mut shard, a, InboxOp::DeleteMessage { id: Some(id) }, true);
    assert_eq!(deleted, Outcome::Ready(Response::empty(204)));
    ready_json(
        run(&mut shard, a, InboxOp::DeleteMessage { id: Some(id) }, true),
        404,
    );
    assert_eq!(
        ready_json(run(&mut shard, a, list(None, 50, 0), true), 200)["total"],
        1
    );
    assert_eq!(
        run(&mut shard, a, InboxOp::DeleteInbox, true),
        Outcome::Ready(Response::empty(204))
    );
    assert_eq!(
        run(&mut shard, a, InboxOp::DeleteInbox, true),
        Outcome::Ready(Response::empty(204))
    );
    assert_eq!(
        ready_json(run(&mut shard, a, list(None, 50, 0), true), 200)["total"],
        0
    );
    // Expired messages are never shown, even if no timer ran `expire` yet.
    let id = deliver(&mut shard, &[a], "\r\n3", NOW_MS);
    let later = execute_at(
        &mut shard,
        &InboxRequest {
            key: key(a),
            op: InboxOp::Message { id: Some(id) },
        },
        NOW_MS + 3_600_000,
        true,
    );
    ready_json(later, 404);
    assert_eq!(shard.stats().evicted_ttl, 1);
}

#[test]
fn creates_random_addresses() {
    let configured = domains();
    let catch_all = DomainPolicy::new::<&str>(&[]);
    let cases: [(Option<&str>, &DomainPolicy, Result<&str, u16>); 6] = [
        (None, &configured, Ok("example.test")),
        (Some("Sub.Wild.Test"), &configured, Ok("sub.wild.test")),
        (Some("other.test"), &configured, Err(400)),
        (None, &catch_all, Err(400)),
        (Some("anything.test"), &catch_all, Ok("anything.test")),
        (Some("-bad.test"), &catch_all, Err(400)),
    ];
    let tokens = tokens(false);
    for (domain, policy, expected) in cases {
        let response = create_address(
            domain,
            None,
            policy,
            &tokens,
            PartitionSet::ALL,
            3600,
            NOW_MS,
        );
        let body: Value = serde_json::from_slice(&response.body).expect("JSON");
        match expected {
            Ok(expected_domain) => {
                assert_eq!(response.status, 201);
                assert_eq!(body["domain"], expected_domain);
                assert_eq!(body["created_at"], "2026-11-27T22:15:44Z");
                assert_eq!(body["ttl_seconds"], 3600);
                let address = body["address"].as_str().expect("address");
                let (local_part, domain) = address.split_once('@').expect("@");
                assert_eq!(domain, expected_domain);
                assert_eq!(local_part.len(), LOCAL_PART_CHARS);
                assert!(
                    local_part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                );
                // The token of the address, the same whether the switch is on or not.
                let token = body["token"].as_str().expect("a token");
                assert!(tokens.verify(&key(address), token));
                assert!(super::tokens(true).verify(&key(address), token));
            }
            Err(status) => {
                assert_eq!(response.status, status, "{domain:?}");
                assert_eq!(body["error"]["code"], "bad_request");
            }
        }
    }
    let local_parts: std::collections::HashSet<String> = (0..1000)
        .map(|_| random_local_part(&PartitionSet::ALL.first_chars()).expect("random"))
        .collect();
    assert_eq!(local_parts.len(), 1000);
    // Every character of the alphabet shows up: no stuck or biased generator.
    let seen: std::collections::HashSet<char> =
        local_parts.iter().flat_map(|part| part.chars()).collect();
    assert_eq!(seen.len(), 36);
}

/// A chosen address is given back canonical and without a token; with private inboxes it
/// is refused, the same for every address.
#[test]
fn chosen_addresses_get_no_token() {
    let chosen = key("signup-7@example.test");
    let response = create_address(
        None,
        Some(&chosen),
        &domains(),
        &tokens(false),
        PartitionSet::ALL,
        60,
        NOW_MS,
    );
    assert_eq!(response.status, 201);
    let body: Value = serde_json::from_slice(&response.body).expect("JSON");
    assert_eq!(body["address"], "signup-7@example.test");
    assert_eq!(body["domain"], "example.test");
    assert_eq!(body["ttl_seconds"], 60);
    assert_eq!(body["token"], Value::Null);

    let refused = create_address(
        None,
        Some(&chosen),
        &domains(),
        &tokens(true),
        PartitionSet::ALL,
        60,
        NOW_MS,
    );
    assert_eq!(refused.status, 403);
    let body: Value = serde_json::from_slice(&refused.body).expect("JSON");
    assert_eq!(body["error"]["code"], "forbidden");
    let other = create_address(
        None,
        Some(&key("x@example.test")),
        &domains(),
        &tokens(true),
        PartitionSet::ALL,
        60,
        NOW_MS,
    );
    assert_eq!(other.body, refused.body);
}

/// With `--owned-partitions`, generated addresses start with a character of the node's
/// partitions (each of them, over many draws), and a chosen address elsewhere is a 421.
#[test]
fn create_address_stays_inside_the_owned_partitions() {
    let owned = PartitionSet::parse("x-z,7").unwrap();
    let mut firsts = std::collections::BTreeSet::new();
    for _ in 0..400 {
        let response = create_address(None, None, &domains(), &tokens(false), owned, 60, NOW_MS);
        assert_eq!(response.status, 201);
        let body: Value = serde_json::from_slice(&response.body).expect("JSON");
        let address = body["address"].as_str().expect("address").to_string();
        firsts.insert(address.as_bytes()[0]);
        assert_eq!(address.find('@'), Some(crate::http::api::LOCAL_PART_CHARS));
    }
    assert_eq!(firsts.into_iter().collect::<Vec<u8>>(), b"7xyz");
    let chosen = key("alice@example.test");
    let response = create_address(
        None,
        Some(&chosen),
        &domains(),
        &tokens(false),
        owned,
        60,
        NOW_MS,
    );
    assert_eq!(response.status, 421);
    let only_other = PartitionSet::parse("other").unwrap();
    let response = create_address(
        None,
        None,
        &domains(),
        &tokens(false),
        only_other,
        60,
        NOW_MS,
    );
    assert_eq!(response.status, 503);
}

#[test]
fn formats_rfc3339() {
    let cases = [
        (0, "1970-01-01T00:00:00Z"),
        (NOW_MS + 999, "2026-11-27T22:15:44Z"),
        (u64::MAX, "9999-12-31T23:59:59Z"),
    ];
    for (unix_ms, expected) in cases {
        assert_eq!(rfc3339(unix_ms), expected);
    }
    assert_eq!(
        Rfc3339::of_secs(-1).map(|t| t.as_str().to_string()),
        Some("1969-12-31T23:59:59Z".to_string())
    );
    assert!(Rfc3339::of_secs(-62_200_000_000).is_none());
    assert!(Rfc3339::of_secs(i64::MAX).is_none());
}

#[test]
fn percent_decodes() {
    let cases = [
        ("a%40b", Some("a@b")),
        ("%C3%A4", Some("ä")),
        ("a+b", Some("a+b")),
        ("%", None),
        ("%4", None),
        ("%g0", None),
        ("%+1", None),
        ("%ff", None),
        ("%é", None),
        ("plain", Some("plain")),
    ];
    for (text, expected) in cases {
        assert_eq!(percent_decode(text).as_deref(), expected, "{text}");
    }
}

proptest! {
    #[test]
    fn route_never_panics(
        method in prop_oneof![Just(Method::Get), Just(Method::Head), Just(Method::Post), Just(Method::Delete), Just(Method::Other)],
        path in "(/api/v1/(inboxes|addresses)(/[^/]{0,12}){0,6})|(/[ -~]{0,40})|(\\PC{0,40})",
        query in "[ -~]{0,40}",
        body in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let request = Request { method, path, query, keep_alive: true, body, websocket: None, bearer_token: None };
        let _ = route(&request, &domains());
        let _ = route(&request, &DomainPolicy::new::<&str>(&[]));
    }

    #[test]
    fn executes_any_routed_request_without_panicking(
        path in "/api/v1/inboxes/(a|A|%41|b)(@|%40)example\\.test(/messages/[0-9a-f]{0,27}(/raw|/attachments/[0-9+]{0,3})?)?",
        query in "((after|limit|wait)=[0-9a-f]{0,27}&?){0,3}",
        method in prop_oneof![Just(Method::Get), Just(Method::Delete)],
    ) {
        let mut shard = shard();
        deliver(&mut shard, &["a@example.test"], "Subject: x\r\n\r\nbody", NOW_MS);
        let request = Request { method, path, query, keep_alive: true, body: Vec::new(), websocket: None, bearer_token: None };
        if let Ok(Route::Inbox(inbox_request)) = route(&request, &domains()) {
            let _ = execute_at(&mut shard, &inbox_request, NOW_MS, false);
        }
    }
}

#[test]
fn searches_answer_like_listings() {
    let mut shard = shard();
    let a = "a@example.test";
    let code = deliver(
        &mut shard,
        &[a],
        "From: \"Service\" <no-reply@service.test>\r\nSubject: Your code\r\n\r\n\
         Hello,\r\nyour sign-up code is\r\n 482913\r\n",
        NOW_MS,
    );
    let news = deliver(
        &mut shard,
        &[a],
        "From: news@service.test\r\nSubject: News\r\n\r\nnothing to see\r\n",
        NOW_MS + 1000,
    );
    let search = |text: &str, after: Option<MessageId>, wait_secs: u64| InboxOp::List {
        after,
        limit: 50,
        wait_secs,
        query: Some(Query::parse(text).expect("valid")),
    };
    let ids = |body: &Value| -> Vec<String> {
        body["messages"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|m| m["id"].as_str().map(str::to_string))
            .collect()
    };
    let body = ready_json(
        run(&mut shard, a, search("\"code is 482913\"", None, 0), true),
        200,
    );
    // `total` and `next_after` are the inbox's, as in a plain listing.
    assert_eq!(body["total"], 2);
    assert_eq!(body["next_after"], news.to_string());
    assert_eq!(ids(&body), [code.to_string()]);
    assert_eq!(
        body["messages"][0]["header_from"],
        json!({"name": "Service", "address": "no-reply@service.test"})
    );
    let body = ready_json(
        run(&mut shard, a, search("from:service.test", None, 0), true),
        200,
    );
    assert_eq!(ids(&body), [news.to_string(), code.to_string()]);
    assert_eq!(
        body["messages"][0]["header_from"],
        json!({"name": null, "address": "news@service.test"})
    );

    // Nothing matches: a long poll waits, also when newer mail does not match either.
    let waiting = search("subject:welcome", None, 5);
    assert_eq!(run(&mut shard, a, waiting.clone(), true), Outcome::Wait);
    let body = ready_json(run(&mut shard, a, waiting, false), 200);
    assert_eq!(ids(&body), Vec::<String>::new());
    assert_eq!(body["next_after"], news.to_string());
    let request = InboxRequest {
        key: key(a),
        op: search("subject:welcome", None, 5),
    };
    let mut search_state = SearchState::default();
    let execute_now = |shard: &mut TestShard, search_state: &mut SearchState| {
        let outcome = execute(
            &request,
            &mut shard.store,
            &mut shard.views,
            NOW_MS,
            true,
            search_state,
        );
        shard.views.sync(&mut shard.store);
        outcome
    };
    assert_eq!(execute_now(&mut shard, &mut search_state), Outcome::Wait);
    deliver(&mut shard, &[a], "Subject: not it\r\n\r\n", NOW_MS + 2000);
    assert_eq!(execute_now(&mut shard, &mut search_state), Outcome::Wait);
    let welcome = deliver(&mut shard, &[a], "Subject: Welcome!\r\n\r\n", NOW_MS + 3000);
    let Outcome::Ready(response) = execute_now(&mut shard, &mut search_state) else {
        panic!("a matching message ends the wait");
    };
    let body: Value = serde_json::from_slice(&response.body).expect("JSON");
    assert_eq!(ids(&body), [welcome.to_string()]);
    assert_eq!(body["total"], 4);
}
