//! `route`: which endpoint a request is for, and every way to get a request wrong.

use super::*;

#[test]
fn routes_websocket_handshakes() {
    let path = "/api/v1/inboxes/a@example.test/ws";
    let sample_key = "dGhlIHNhbXBsZSBub25jZQ==";
    assert_eq!(
        route(&upgrade(path, sample_key, "13"), &domains()),
        Ok(Route::WebSocket {
            key: key("a@example.test"),
            accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into(),
        })
    );
    let status = |request: &Request| route(request, &domains()).err().map(|r| r.status);
    let cases = [
        (get(Method::Get, path, ""), Some(426)),
        (upgrade(path, sample_key, "8"), Some(426)),
        (upgrade(path, sample_key, ""), Some(426)),
        (upgrade(path, "", "13"), Some(400)),
        (upgrade(path, "dGhlIHNhbXBsZSBub25jZQ", "13"), Some(400)),
        (upgrade(path, "dGhlIHNhbXBsZSBub25jZ!==", "13"), Some(400)),
        (
            upgrade("/api/v1/inboxes/a@other.test/ws", sample_key, "13"),
            Some(404),
        ),
        (
            Request {
                method: Method::Head,
                ..upgrade(path, sample_key, "13")
            },
            Some(405),
        ),
    ];
    for (request, expected) in cases {
        assert_eq!(status(&request), expected, "{request:?}");
    }
    let plain = route(&get(Method::Get, path, ""), &domains()).expect_err("426");
    assert!(
        plain
            .headers
            .contains(&("Upgrade", "websocket".to_string()))
    );
    assert!(
        plain
            .headers
            .contains(&("Sec-WebSocket-Version", "13".to_string()))
    );
}

fn inbox(address: &str, op: InboxOp) -> Result<Route, u16> {
    Ok(Route::Inbox(InboxRequest {
        key: key(address),
        op,
    }))
}

#[test]
fn routes_every_endpoint() {
    use Method::*;
    let id = MessageId {
        boot_micros: BOOT_MICROS,
        shard_idx: 1,
        seq: 7,
    };
    let id_text = id.to_string();
    let a = "a@example.test";
    let cases: Vec<(Method, String, &str, Result<Route, u16>)> = vec![
        (Get, "/".into(), "", Ok(Route::Asset(page::index()))),
        (Head, "/".into(), "", Ok(Route::Asset(page::index()))),
        (Post, "/".into(), "", Err(405)),
        (Get, "/healthz".into(), "", Ok(Route::Healthz)),
        (Get, "/metrics".into(), "", Ok(Route::Metrics)),
        (Delete, "/metrics".into(), "", Err(405)),
        (Get, "/nope".into(), "", Err(404)),
        (Get, "/healthz/".into(), "", Err(404)),
        (Get, "/api/v1/inboxes".into(), "", Err(404)),
        (Get, "/api/v1/inboxes/".into(), "", Err(404)),
        (Get, "/api/v1/inboxes/a@example.test/".into(), "", Err(404)),
        (Get, "/api/v2/inboxes/a@example.test".into(), "", Err(404)),
        (Get, "/a/b/c/d/e/f/g/h/i/j/k".into(), "", Err(404)),
        // Addresses and queries.
        (
            Get,
            "/api/v1/inboxes/a@example.test".into(),
            "",
            inbox(a, list(None, 50, 0)),
        ),
        (
            Head,
            "/api/v1/inboxes/a%40example.test".into(),
            "",
            inbox(a, list(None, 50, 0)),
        ),
        (
            Get,
            "/api/v1/inboxes/A%40Example.TEST".into(),
            "",
            inbox(a, list(None, 50, 0)),
        ),
        (
            Get,
            "/api/v1/inboxes/%C3%84@x.wild.test".into(),
            "",
            inbox("ä@x.wild.test", list(None, 50, 0)),
        ),
        (
            Get,
            "/api/v1/inboxes/a@example.test.".into(),
            "",
            inbox("a@example.test.", list(None, 50, 0)),
        ),
        (Get, "/api/v1/inboxes/a@other.test".into(), "", Err(404)),
        (Get, "/api/v1/inboxes/a".into(), "", Err(404)),
        (Get, "/api/v1/inboxes/@example.test".into(), "", Err(404)),
        // A quoted local part may hold spaces; control characters never.
        (
            Get,
            "/api/v1/inboxes/%22a%20B%22@example.test".into(),
            "",
            inbox("\"a b\"@example.test", list(None, 50, 0)),
        ),
        (
            Get,
            "/api/v1/inboxes/a%0Db@example.test".into(),
            "",
            Err(404),
        ),
        (Get, "/api/v1/inboxes/a%4@example.test".into(), "", Err(400)),
        (
            Get,
            "/api/v1/inboxes/a%ff@example.test".into(),
            "",
            Err(400),
        ),
        (
            Get,
            format!("/api/v1/inboxes/{a}?limit=1&wait=60&after={id_text}"),
            "",
            inbox(a, list(Some(id), 1, 60)),
        ),
        (
            Get,
            format!("/api/v1/inboxes/{a}?limit=1000&limit=2&x=y&&after="),
            "",
            inbox(a, list(None, 2, 0)),
        ),
        (
            Get,
            format!("/api/v1/inboxes/{a}?after=null&wait=0"),
            "",
            inbox(a, list(None, 50, 0)),
        ),
        (Get, format!("/api/v1/inboxes/{a}?limit=0"), "", Err(400)),
        (Get, format!("/api/v1/inboxes/{a}?limit=1001"), "", Err(400)),
        (Get, format!("/api/v1/inboxes/{a}?limit=-1"), "", Err(400)),
        (Get, format!("/api/v1/inboxes/{a}?wait=61"), "", Err(400)),
        (Get, format!("/api/v1/inboxes/{a}?wait=1.5"), "", Err(400)),
        (Get, format!("/api/v1/inboxes/{a}?after=xyz"), "", Err(400)),
        (Get, format!("/api/v1/inboxes/{a}?after=%zz"), "", Err(400)),
        (
            Delete,
            format!("/api/v1/inboxes/{a}?limit=0"),
            "",
            inbox(a, InboxOp::DeleteInbox),
        ),
        (Post, format!("/api/v1/inboxes/{a}"), "", Err(405)),
        (Other, format!("/api/v1/inboxes/{a}"), "", Err(405)),
        // Messages.
        (
            Get,
            format!("/api/v1/inboxes/{a}/messages/{id_text}"),
            "",
            inbox(a, InboxOp::Message { id: Some(id) }),
        ),
        (
            Get,
            format!("/api/v1/inboxes/{a}/messages/nope"),
            "",
            inbox(a, InboxOp::Message { id: None }),
        ),
        (
            Delete,
            format!("/api/v1/inboxes/{a}/messages/{id_text}"),
            "",
            inbox(a, InboxOp::DeleteMessage { id: Some(id) }),
        ),
        (
            Head,
            format!("/api/v1/inboxes/{a}/messages/{id_text}/raw"),
            "",
            inbox(a, InboxOp::Raw { id: Some(id) }),
        ),
        (
            Delete,
            format!("/api/v1/inboxes/{a}/messages/{id_text}/raw"),
            "",
            Err(405),
        ),
        (
            Get,
            format!("/api/v1/inboxes/a@other.test/messages/{id_text}"),
            "",
            Err(404),
        ),
        (
            Get,
            format!("/api/v1/inboxes/{a}/messages/{id_text}/attachments/0"),
            "",
            inbox(
                a,
                InboxOp::Attachment {
                    id: Some(id),
                    index: Some(0),
                },
            ),
        ),
        (
            Head,
            format!("/api/v1/inboxes/{a}/messages/x/attachments/+1"),
            "",
            inbox(
                a,
                InboxOp::Attachment {
                    id: None,
                    index: None,
                },
            ),
        ),
        (
            Get,
            format!("/api/v1/inboxes/{a}/messages/{id_text}/attachments/99999999999999999999999"),
            "",
            inbox(
                a,
                InboxOp::Attachment {
                    id: Some(id),
                    index: None,
                },
            ),
        ),
        (
            Get,
            format!("/api/v1/inboxes/a@other.test/messages/{id_text}/attachments/0"),
            "",
            Err(404),
        ),
        (
            Post,
            format!("/api/v1/inboxes/{a}/messages/{id_text}/attachments/0"),
            "",
            Err(405),
        ),
        (Get, format!("/api/v1/inboxes/{a}/ws"), "", Err(426)),
        (Get, "/api/v1/inboxes/a@other.test/ws".into(), "", Err(404)),
        // Creating addresses.
        (
            Post,
            "/api/v1/addresses".into(),
            "",
            Ok(Route::CreateAddress {
                domain: None,
                address: None,
            }),
        ),
        (
            Post,
            "/api/v1/addresses".into(),
            " {} ",
            Ok(Route::CreateAddress {
                domain: None,
                address: None,
            }),
        ),
        (
            Post,
            "/api/v1/addresses".into(),
            r#"{"domain": null}"#,
            Ok(Route::CreateAddress {
                domain: None,
                address: None,
            }),
        ),
        (
            Post,
            "/api/v1/addresses".into(),
            r#"{"domain": "X.Wild.Test.", "other": 1}"#,
            Ok(Route::CreateAddress {
                domain: Some("x.wild.test".into()),
                address: None,
            }),
        ),
        // Choosing an address: canonical, at an accepted domain, never with a domain.
        (
            Post,
            "/api/v1/addresses".into(),
            r#"{"address": " Signup-7@X.Wild.Test. ", "domain": null}"#,
            Ok(Route::CreateAddress {
                domain: None,
                address: Some(key("signup-7@x.wild.test")),
            }),
        ),
        (
            Post,
            "/api/v1/addresses".into(),
            r#"{"address": "a@example.test", "domain": "example.test"}"#,
            Err(400),
        ),
        (
            Post,
            "/api/v1/addresses".into(),
            r#"{"address": "a@other.test"}"#,
            Err(400),
        ),
        (
            Post,
            "/api/v1/addresses".into(),
            r#"{"address": "@example.test"}"#,
            Err(400),
        ),
        (
            Post,
            "/api/v1/addresses".into(),
            r#"{"address": "no-at-sign"}"#,
            Err(400),
        ),
        (
            Post,
            "/api/v1/addresses".into(),
            r#"{"address": "a\u0000b@example.test"}"#,
            Err(400),
        ),
        (
            Post,
            "/api/v1/addresses".into(),
            format!(r#"{{"address": "{}@example.test"}}"#, "a".repeat(250)).leak(),
            Err(400),
        ),
        (
            Post,
            "/api/v1/addresses".into(),
            r#"{"address": 7}"#,
            Err(400),
        ),
        (
            Post,
            "/api/v1/addresses".into(),
            r#"{"domain": "other.test"}"#,
            Err(400),
        ),
        (
            Post,
            "/api/v1/addresses".into(),
            r#"{"domain": "bad_name.example.test"}"#,
            Err(400),
        ),
        (
            Post,
            "/api/v1/addresses".into(),
            r#"{"domain": 5}"#,
            Err(400),
        ),
        (
            Post,
            "/api/v1/addresses".into(),
            r#"["example.test"]"#,
            Err(400),
        ),
        (Post, "/api/v1/addresses".into(), "{", Err(400)),
        (Get, "/api/v1/addresses".into(), "", Err(405)),
    ];
    for (method, target, body, expected) in cases {
        let got =
            route(&get(method, &target, body), &domains()).map_err(|response| response.status);
        assert_eq!(got, expected, "{method:?} {target} {body}");
    }
}

#[test]
fn errors_follow_the_contract() {
    let cases = [
        (
            Method::Post,
            "/healthz",
            405,
            "method_not_allowed",
            Some("GET, HEAD"),
        ),
        (
            Method::Get,
            "/api/v1/addresses",
            405,
            "method_not_allowed",
            Some("POST"),
        ),
        (
            Method::Post,
            "/api/v1/inboxes/a@example.test/messages/x",
            405,
            "method_not_allowed",
            Some("GET, HEAD, DELETE, PATCH"),
        ),
        (Method::Get, "/nope", 404, "not_found", None),
        (
            Method::Get,
            "/api/v1/inboxes/a@example.test?limit=x",
            400,
            "bad_request",
            None,
        ),
    ];
    for (method, target, status, code, allow_header) in cases {
        let response = route(&get(method, target, ""), &domains()).expect_err("an error");
        let body: Value = serde_json::from_slice(&response.body).expect("JSON");
        assert_eq!(
            (response.status, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{target}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|message| !message.is_empty())
        );
        let got_allow = response
            .headers
            .iter()
            .find(|(name, _)| *name == "Allow")
            .map(|(_, value)| value.as_str());
        assert_eq!(got_allow, allow_header, "{target}");
    }
}

/// With private inboxes, every inbox route and the WebSocket need the inbox's token, as a
/// Bearer token or (when there is no Authorization field) `?token=`; without it, or with
/// another inbox's, the answer is the same 404 for every address and route. Without the
/// switch nothing is checked. Routes that name no inbox never need one.
#[test]
fn private_inboxes_need_their_token() {
    let (private, public) = (tokens(true), tokens(false));
    let alice = private.token(&key("alice@example.test"));
    let bob = private.token(&key("bob@example.test"));
    let id = "0000000000000000000000001";
    let sample_key = "dGhlIHNhbXBsZSBub25jZQ==";
    let inbox_targets = [
        "/api/v1/inboxes/Alice%40Example.test".to_string(),
        "/api/v1/inboxes/alice@example.test?wait=5&after=".to_string(),
        format!("/api/v1/inboxes/alice@example.test/messages/{id}"),
        format!("/api/v1/inboxes/alice@example.test/messages/{id}/raw"),
        format!("/api/v1/inboxes/alice@example.test/messages/{id}/codes"),
        format!("/api/v1/inboxes/alice@example.test/messages/{id}/attachments/0"),
        "/api/v1/inboxes/alice@example.test/messages/not-an-id".to_string(),
    ];
    let mut requests = Vec::new();
    for target in &inbox_targets {
        requests.push(get(Method::Get, target, ""));
        requests.push(get(Method::Head, target, ""));
        requests.push(get(Method::Delete, target, ""));
    }
    requests.push(get(
        Method::Patch,
        &format!("/api/v1/inboxes/alice@example.test/messages/{id}"),
        r#"{"seen": true}"#,
    ));
    requests.push(upgrade(
        "/api/v1/inboxes/alice@example.test/ws",
        sample_key,
        "13",
    ));
    let refusal = no_such_inbox();
    let mut n_routed = 0;
    for request in requests {
        // DELETE is only for an inbox and a message (405 elsewhere, before any token).
        let Ok(routed) = route(&request, &domains()) else {
            assert_eq!(request.method, Method::Delete, "{request:?}");
            continue;
        };
        n_routed += 1;
        let with = |bearer: Option<&str>, query_token: Option<&str>| {
            let mut request = request.clone();
            request.bearer_token = bearer.map(String::from);
            if let Some(token) = query_token {
                let separator = if request.query.is_empty() { "" } else { "&" };
                request.query = format!("{}{separator}token={token}", request.query);
            }
            request
        };
        // Admitted: the right token in the header, or in the query without a header.
        for admitted in [with(Some(&alice), None), with(None, Some(&alice))] {
            assert_eq!(
                authorize(routed.clone(), &admitted, &private),
                Ok(routed.clone())
            );
        }
        // Refused: none, another inbox's, a wrong header beside a right query, garbage.
        let wrong = format!("{}A", &alice[..alice.len() - 1]);
        for refused in [
            with(None, None),
            with(Some(&bob), None),
            with(None, Some(&bob)),
            with(Some(&bob), Some(&alice)),
            with(Some(&wrong), None),
            with(None, Some("%zz")),
            with(Some(""), None),
        ] {
            let answer = authorize(routed.clone(), &refused, &private);
            assert_eq!(answer, Err(refusal.clone()), "{refused:?}");
            // Without the switch, the same request goes through.
            assert_eq!(
                authorize(routed.clone(), &refused, &public),
                Ok(routed.clone())
            );
        }
    }
    assert_eq!(n_routed, 7 * 2 + 4 + 1 + 1);
    // What names no inbox needs no token.
    for request in [
        get(Method::Post, "/api/v1/addresses", ""),
        get(Method::Get, "/healthz", ""),
        get(Method::Get, "/metrics", ""),
        get(Method::Get, "/", ""),
    ] {
        let routed = route(&request, &domains()).expect("routes");
        assert_eq!(authorize(routed.clone(), &request, &private), Ok(routed));
    }
    assert_eq!(refusal.status, 404);
}

#[test]
fn routes_search_queries() {
    let searched = |text: &str| {
        let query = Query::parse(text).expect("a valid query");
        inbox(
            "a@example.test",
            InboxOp::List {
                after: None,
                limit: 50,
                wait_secs: 30,
                query: Some(query),
            },
        )
    };
    let cases: Vec<(&str, Result<Route, u16>)> = vec![
        ("q=subject:code&wait=30", searched("subject:code")),
        // `+` is a space in `q` (form encoding), `%2B` a plus.
        (
            "q=from:alice%2Bsignup%40x.test+is:unread&wait=30",
            searched("from:alice+signup@x.test is:unread"),
        ),
        (
            "wait=30&q=%22your%20code%22+-news",
            searched("\"your code\" -news"),
        ),
        // Empty or blank: a plain listing.
        ("q=&wait=30", inbox("a@example.test", list(None, 50, 30))),
        ("q=++&wait=30", inbox("a@example.test", list(None, 50, 30))),
        ("q=form:x&wait=30", Err(400)),
        ("q=%22open&wait=30", Err(400)),
        ("q=%FF&wait=30", Err(400)),
    ];
    for (query, expected) in cases {
        let target = format!("/api/v1/inboxes/a@example.test?{query}");
        let got = route(&get(Method::Get, &target, ""), &domains()).map_err(|r| r.status);
        assert_eq!(got, expected, "{query}");
    }
    // The 400 says what is wrong.
    let response = route(
        &get(Method::Get, "/api/v1/inboxes/a@example.test?q=is:new", ""),
        &domains(),
    )
    .expect_err("a bad query");
    let body: Value = serde_json::from_slice(&response.body).expect("JSON");
    assert_eq!(body["error"]["code"], "bad_request");
    assert_eq!(
        body["error"]["message"],
        "q: is: takes \"read\" or \"unread\", not \"new\""
    );
}
