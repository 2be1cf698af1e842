//! Reading mail over HTTP from the real binary: real MIME sent with lettre (nested
//! multiparts, inline images, attachments, message/rfc822, encoded subjects, bodies in
//! Windows-1252 and ISO-2022-JP), read back field by field from the message view, with
//! attachments downloaded byte for byte, hostile HTML made harmless, and 404s for what is
//! not there. Also holds `docs/openapi.json` to the routing table of `src/http/api.rs`.

mod common;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Body, Mailbox, MultiPart, SinglePart};
use lettre::{Message, SmtpTransport, Transport};
use serde_json::Value;

use common::{Response, Server, inbox_path};
use mayfly::config::DomainPolicy;
use mayfly::http::api::{ENDPOINTS, route};
use mayfly::http::{Method, Request};

/// A PDF-looking file with every byte value in it, so any re-encoding would show.
fn pdf_bytes() -> Vec<u8> {
    let mut bytes = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    bytes.extend((0..=255u8).cycle().take(3000));
    bytes.extend_from_slice(b"\n%%EOF\n");
    bytes
}

/// A 1x1 PNG.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82";

fn transport(server: &Server) -> SmtpTransport {
    SmtpTransport::builder_dangerous("127.0.0.1")
        .port(server.smtp_port())
        .timeout(Some(common::IO_TIMEOUT))
        .build()
}

fn mailbox(address: &str) -> Mailbox {
    address.parse().expect("test address")
}

fn send(server: &Server, message: &Message) {
    transport(server)
        .send(message)
        .unwrap_or_else(|error| panic!("lettre send failed: {error}"));
}

/// Waits for the one message of `address` and returns its message view.
fn only_message(server: &Server, address: &str) -> Value {
    let inbox = server.wait_inbox_total(address, 1);
    let id = inbox["messages"][0]["id"].as_str().expect("id");
    let response = server.get(&format!("{}/messages/{id}", inbox_path(address)));
    assert_eq!(response.status, 200, "{}", response.describe());
    response.assert_json_content_type();
    let view = response.json();
    for key in ["subject", "preview", "date", "size", "from", "to"] {
        assert_eq!(view[key], inbox["messages"][0][key], "view repeats {key}");
    }
    // The view has exactly the fields docs/openapi.json documents, and so does the summary.
    // (`auth` is there only with --verify-senders annotate and `spam` only with --rspamd,
    // which these servers run without; tests/auth_dns.rs and tests/spam.rs check them.)
    let documented: Vec<String> = schema_properties("MessageView")
        .into_iter()
        .filter(|name| name != "auth" && name != "spam")
        .collect();
    assert_eq!(object_keys(&view), documented, "{view}");
    assert_eq!(
        object_keys(&inbox["messages"][0]),
        schema_properties("Summary"),
        "{inbox}"
    );
    view
}

fn attachment(server: &Server, address: &str, id: &str, index: &str) -> Response {
    server.get(&format!(
        "{}/messages/{id}/attachments/{index}",
        inbox_path(address)
    ))
}

fn header<'v>(view: &'v Value, name: &str) -> Option<&'v str> {
    view["headers"]
        .as_array()?
        .iter()
        .find(|pair| {
            pair[0]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .and_then(|pair| pair[1].as_str())
}

#[test]
fn multipart_message_with_inline_image_and_attachments_reads_back_field_by_field() {
    let server = Server::start(&["--domain", "example.test"]);
    let address = "reader@example.test";
    let inner = Message::builder()
        .from(mailbox("inner@sender.test"))
        .to(mailbox("someone@example.test"))
        .subject("Forwarded inner")
        .body(String::from("The inner body.\r\n"))
        .expect("inner message");
    let pdf = pdf_bytes();
    let html = "<p>Hi <b>there</b>, <img src=\"cid:logo@mayfly.test\" alt=\"logo\"> \
                <a href=\"https://verify.test/t?k=1\">verify</a></p>";
    let message = Message::builder()
        .from(mailbox("Bob <bob@sender.test>"))
        .to(mailbox(address))
        .subject("Grüße aus Köln ✓")
        .multipart(
            MultiPart::mixed()
                .multipart(
                    MultiPart::related()
                        .multipart(MultiPart::alternative_plain_html(
                            String::from("Hi there, verify at https://verify.test/t?k=1\r\n"),
                            String::from(html),
                        ))
                        .singlepart(
                            Attachment::new_inline(String::from("logo@mayfly.test"))
                                .body(PNG.to_vec(), ContentType::parse("image/png").expect("ct")),
                        ),
                )
                .singlepart(Attachment::new(String::from("report 2026 é.pdf")).body(
                    pdf.clone(),
                    ContentType::parse("application/pdf").expect("ct"),
                ))
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::parse("message/rfc822").expect("ct"))
                        .body(inner.formatted()),
                ),
        )
        .expect("message");
    send(&server, &message);

    let view = only_message(&server, address);
    let id = view["id"].as_str().expect("id").to_string();
    assert_eq!(view["subject"], "Grüße aus Köln ✓");
    assert_eq!(header(&view, "subject"), Some("Grüße aus Köln ✓"));
    assert_eq!(header(&view, "from"), Some("Bob <bob@sender.test>"));
    let names: Vec<&str> = view["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter_map(|pair| pair[0].as_str())
        .collect();
    assert_eq!(names.first(), Some(&"Received"), "{names:?}");
    assert!(names.contains(&"MIME-Version"), "{names:?}");
    assert_eq!(
        view["text"],
        "Hi there, verify at https://verify.test/t?k=1\r\n"
    );
    assert!(
        view["preview"]
            .as_str()
            .is_some_and(|preview| preview.starts_with("Hi there, verify at")),
        "{view}"
    );
    let html = view["html"].as_str().expect("html");
    let image_url = format!("/api/v1/inboxes/reader@example.test/messages/{id}/attachments/0");
    assert!(
        html.contains(&format!("<img src=\"{image_url}\" alt=\"logo\">")),
        "{html}"
    );
    assert!(
        html.contains("<a href=\"https://verify.test/t?k=1\" target=\"_blank\" rel=\"noopener noreferrer\">verify</a>"),
        "{html}"
    );
    let attachments = view["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 3, "{view}");
    let inner_bytes = inner.formatted();
    let expected: [(Option<&str>, &str, &[u8]); 3] = [
        (None, "image/png", PNG),
        (Some("report 2026 é.pdf"), "application/pdf", &pdf),
        (None, "message/rfc822", &inner_bytes),
    ];
    for (index, (filename, content_type, bytes)) in expected.iter().enumerate() {
        let listed = &attachments[index];
        assert_eq!(listed["index"], index, "{listed}");
        assert_eq!(listed["filename"].as_str(), *filename, "{listed}");
        assert_eq!(listed["content_type"], *content_type, "{listed}");
        assert_eq!(listed["size"], bytes.len(), "{listed}");
        let response = attachment(&server, address, &id, &index.to_string());
        assert_eq!(response.status, 200, "{}", response.describe());
        assert_eq!(response.header("content-type"), Some(*content_type));
        assert!(
            response.body == *bytes,
            "attachment {index} differs ({} bytes, want {})",
            response.body.len(),
            bytes.len()
        );
        let disposition = response.header("content-disposition").unwrap_or_default();
        assert!(
            disposition.starts_with("attachment; filename=\""),
            "{disposition}"
        );
    }
    // The image is what the HTML points at: the same URL serves it.
    let by_url = server.get(&image_url);
    assert_eq!(by_url.body, PNG);
    assert_eq!(
        attachment(&server, address, &id, "1").header("content-disposition"),
        Some(
            "attachment; filename=\"report 2026 _.pdf\"; filename*=UTF-8''report%202026%20%C3%A9.pdf"
        )
    );
    assert_eq!(
        attachment(&server, address, &id, "2").header("content-disposition"),
        Some("attachment; filename=\"attachment-2.eml\"")
    );

    // Not there: bad indexes, unknown or foreign ids, other inboxes.
    for index in ["3", "99", "-1", "+1", "x", "18446744073709551616"] {
        attachment(&server, address, &id, index).assert_error(404, "not_found");
    }
    attachment(&server, address, "0000000000000000000000000", "0").assert_error(404, "not_found");
    attachment(&server, "other@example.test", &id, "0").assert_error(404, "not_found");
    attachment(&server, "reader@elsewhere.test", &id, "0").assert_error(404, "not_found");
    let post = server.http(
        "POST",
        &format!("{}/messages/{id}/attachments/0", inbox_path(address)),
        Some(b""),
    );
    post.assert_error(405, "method_not_allowed");

    // Reading again gives the same view (from the cache).
    let again = only_message(&server, address);
    assert_eq!(again, view);
    // Deleted: the view and the attachments are gone.
    assert_eq!(
        server
            .delete(&format!("{}/messages/{id}", inbox_path(address)))
            .status,
        204
    );
    attachment(&server, address, &id, "0").assert_error(404, "not_found");
}

#[test]
fn encoded_subjects_and_legacy_charsets_are_decoded() {
    let server = Server::start(&["--domain", "example.test"]);
    let cases: [(&str, &str, &[u8], &str, &str); 3] = [
        (
            "latin@example.test",
            "=?ISO-8859-1?Q?Gr=FC=DFe_aus_K=F6ln?=",
            b"Sch\xf6ne Gr\xfc\xdfe\r\n",
            "text/plain; charset=ISO-8859-1",
            "Schöne Grüße\r\n",
        ),
        (
            "windows@example.test",
            "=?windows-1252?Q?=93Quoted=94_=80uro?=",
            b"Caf\xe9 \x96 \x93quoted\x94 \x805\r\n",
            "text/plain; charset=windows-1252",
            "Café – “quoted” €5\r\n",
        ),
        (
            "japan@example.test",
            "=?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=",
            b"\x1b$B$3$s$K$A$O\x1b(B\r\n",
            "text/plain; charset=ISO-2022-JP",
            // Decoded by mail-parser's `full_encoding` feature (encoding_rs).
            "こんにちは\r\n",
        ),
    ];
    for (address, encoded_subject, body, content_type, expected_text) in cases {
        let message = Message::builder()
            .from(mailbox("sender@sender.test"))
            .to(mailbox(address))
            .raw_header(HeaderValue::dangerous_new_pre_encoded(
                HeaderName::new_from_ascii_str("Subject"),
                String::new(),
                encoded_subject.to_string(),
            ))
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::parse(content_type).expect("ct"))
                    .body(Body::new(body.to_vec())),
            )
            .expect("message");
        send(&server, &message);
        let view = only_message(&server, address);
        let expected_subject = match address {
            "latin@example.test" => "Grüße aus Köln",
            "windows@example.test" => "“Quoted” €uro",
            _ => "こんにちは",
        };
        assert_eq!(view["subject"], expected_subject, "{view}");
        assert_eq!(header(&view, "Subject"), Some(expected_subject), "{view}");
        // lettre ends a single part with an empty line or two; the body is what was sent.
        let text = view["text"].as_str().expect("text");
        assert_eq!(text.trim_end(), expected_text.trim_end(), "{view}");
        assert_eq!(view["html"], Value::Null);
        assert_eq!(view["attachments"], serde_json::json!([]));
    }
}

#[test]
fn hostile_html_is_harmless() {
    let server = Server::start(&["--domain", "example.test"]);
    let address = "victim@example.test";
    let hostile = "<html><head><base href=\"http://evil.test/\">\
        <meta http-equiv=\"refresh\" content=\"0;url=http://evil.test\">\
        <link rel=stylesheet href=http://evil.test/x.css>\
        <style>@import 'http://evil.test/x.css'; body{background:url(http://evil.test/b.png)}</style>\
        <script>alert(1)</script></head>\
        <body onload=alert(1)><p>Visible text</p><a href=\"https://ok.test\">fine</a>\
        <img src=x onerror=alert(1)><img src=\"http://evil.test/track.gif\">\
        <svg onload=alert(1)></svg><a href=\"javascript&#58;alert(1)\">a</a>\
        <a href=\"JaVaScRiPt:alert(1)\">b</a><a href=\"data:text/html,<script>alert(1)</script>\">c</a>\
        <form action=http://evil.test><input><button formaction=javascript:alert(1)>go</button></form>\
        <iframe src=http://evil.test></iframe><object data=x></object><embed src=x>\
        <div style=\"background-image:url(http://evil.test/b.png);width:expression(alert(1))\">d</div>\
        <noscript><p title=\"</noscript><img src=x onerror=alert(1)>\"></noscript>\
        <math><mtext><table><mglyph><style><img src=x onerror=alert(1)></math>\
        <textarea><script>alert(1)</script></textarea></body></html>";
    let message = Message::builder()
        .from(mailbox("evil@sender.test"))
        .to(mailbox(address))
        .subject("Hostile")
        .singlepart(SinglePart::html(String::from(hostile)))
        .expect("message");
    send(&server, &message);
    let view = only_message(&server, address);
    let html = view["html"].as_str().expect("html").to_ascii_lowercase();
    assert!(html.contains("visible text"), "{html}");
    assert!(html.contains("href=\"https://ok.test\""), "{html}");
    for forbidden in mayfly::mail::sanitize::SANITIZED_FORBIDDEN {
        assert!(!html.contains(forbidden), "{forbidden:?} survived: {html}");
    }
    // The plain-text rendering of an HTML-only message is text, never markup.
    let text = view["text"].as_str().expect("text");
    assert!(
        text.contains("Visible text") && !text.contains("<script"),
        "{text}"
    );
}

/// The keys of a JSON object, sorted.
fn object_keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .expect("a JSON object")
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// The property names of schema `name` in docs/openapi.json, through `allOf` and `$ref`,
/// sorted.
fn schema_properties(name: &str) -> Vec<String> {
    fn collect(schema: &Value, schemas: &Value, out: &mut Vec<String>) {
        if let Some(reference) = schema["$ref"].as_str() {
            let name = reference.rsplit('/').next().expect("a $ref name");
            collect(&schemas[name], schemas, out);
        }
        for part in schema["allOf"].as_array().into_iter().flatten() {
            collect(part, schemas, out);
        }
        if let Some(properties) = schema["properties"].as_object() {
            out.extend(properties.keys().cloned());
        }
    }
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
        .expect("docs/openapi.json");
    let openapi: Value = serde_json::from_str(&text).expect("openapi.json is JSON");
    let schemas = &openapi["components"]["schemas"];
    let mut properties = Vec::new();
    collect(&schemas[name], schemas, &mut properties);
    properties.sort();
    properties
}

/// docs/api.md has a section for every endpoint of the routing table (HEAD is described
/// once for all GET endpoints), and no section for an endpoint the server does not have.
#[test]
fn api_md_describes_exactly_the_routing_table() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md"))
        .expect("docs/api.md");
    let headings: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("### "))
        .collect();
    let mut missing = Vec::new();
    for (method, path) in ENDPOINTS.iter().filter(|(method, _)| *method != "HEAD") {
        let wanted = format!("`{method} {path}`");
        if !headings.iter().any(|heading| heading.contains(&wanted)) {
            missing.push(wanted);
        }
    }
    assert!(
        missing.is_empty(),
        "docs/api.md has no section for {missing:?}"
    );
    for heading in &headings {
        for (idx, _) in heading.match_indices('`') {
            let rest = &heading[idx + 1..];
            let Some(end) = rest.find('`') else { continue };
            let Some((method, path)) = rest[..end].split_once(' ') else {
                continue;
            };
            if ["GET", "POST", "DELETE", "PUT", "PATCH"].contains(&method) {
                assert!(
                    ENDPOINTS.contains(&(method, path)),
                    "docs/api.md documents `{method} {path}`, which the server does not route"
                );
            }
        }
    }
    assert!(text.contains("`HEAD` is accepted wherever `GET` is"));
}

/// Every endpoint of the routing table is described in docs/openapi.json with the same
/// methods, and every path there routes (nothing documented is a 404).
#[test]
fn openapi_json_describes_exactly_the_routing_table() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
        .expect("docs/openapi.json");
    let openapi: Value = serde_json::from_str(&text).expect("openapi.json is JSON");
    assert!(
        openapi["openapi"]
            .as_str()
            .is_some_and(|version| version.starts_with("3.")),
        "OpenAPI 3 document"
    );
    let paths = openapi["paths"].as_object().expect("paths");
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in paths {
        for method in ["get", "head", "post", "delete", "put", "patch", "options"] {
            if item.get(method).is_some() {
                documented.push((method.to_string(), path.clone()));
            }
        }
    }
    let mut table: Vec<(String, String)> = ENDPOINTS
        .iter()
        .map(|(method, path)| (method.to_ascii_lowercase(), path.to_string()))
        .collect();
    documented.sort();
    table.sort();
    assert_eq!(documented, table, "docs/openapi.json vs api::ENDPOINTS");

    let domains = DomainPolicy::new(&["example.test"]);
    for (method, path) in &documented {
        let concrete = path
            .replace("{address}", "a%40example.test")
            .replace("{id}", "0000000000000000000000001")
            .replace("{index}", "0")
            .replace("{name}", "index.html");
        let request = Request {
            method: match method.as_str() {
                "get" => Method::Get,
                "head" => Method::Head,
                "post" => Method::Post,
                "delete" => Method::Delete,
                "patch" => Method::Patch,
                _ => Method::Other,
            },
            path: concrete.clone(),
            query: String::new(),
            keep_alive: true,
            // The one documented body a route checks before the shard: PATCH's.
            body: if method == "patch" {
                br#"{"seen": false}"#.to_vec()
            } else {
                Vec::new()
            },
            websocket: None,
            bearer_token: None,
        };
        match route(&request, &domains) {
            Ok(_) => {}
            // The WebSocket endpoint wants a handshake, which this request does not have.
            Err(response) => assert!(
                response.status == 426 && path.ends_with("/ws"),
                "{method} {concrete} does not route: {}",
                response.status
            ),
        }
        // Each documented operation lists its responses, and every error response uses
        // the shared error schema.
        let operation = &paths[path][method];
        let responses = operation["responses"].as_object().expect("responses");
        assert!(!responses.is_empty(), "{method} {path}");
        assert!(operation["summary"].is_string(), "{method} {path} summary");
    }
}

#[test]
fn a_sign_up_mail_gives_its_code_and_verify_link_without_being_marked_seen() {
    let server = Server::start(&[]);
    let address = "new.user@example.test";
    let message = "From: Example App <no-reply@app.example>\r\nTo: new.user@example.test\r\n\
        Subject: Your verification code\r\nMIME-Version: 1.0\r\n\
        Content-Type: text/html; charset=utf-8\r\n\
        List-Unsubscribe: <https://app.example/unsub?u=1>\r\n\r\n\
        <p>Order #20261205 shipped on 05.12.2026 for $49.99.</p>\r\n\
        <p>Your verification code is <b>482 913</b>. It expires in 10 minutes.</p>\r\n\
        <p><a href=\"https://app.example/verify?token=abc123\">Confirm your email</a></p>\r\n\
        <p><a href=\"https://app.example/help\">Help</a></p>\r\n";
    server
        .smtp_ehlo()
        .send_mail("bounce@app.example", &[address], message.as_bytes());
    let listing = server.wait_inbox_total(address, 1);
    let id = listing["messages"][0]["id"].as_str().expect("id");
    let codes = server.get(&format!("{}/messages/{id}/codes", inbox_path(address)));
    assert_eq!(codes.status, 200, "{}", codes.describe());
    let codes = codes.json();
    assert_eq!(codes["codes"][0]["value"], "482913", "{codes}");
    let links = codes["links"].as_array().expect("links");
    let verify: Vec<&Value> = links
        .iter()
        .filter(|link| link["kind"] == "verify")
        .collect();
    assert_eq!(verify.len(), 1, "{codes}");
    assert_eq!(verify[0]["url"], "https://app.example/verify?token=abc123");
    assert_eq!(verify[0]["text"], "Confirm your email");
    assert!(
        links.iter().any(|link| link["kind"] == "unsubscribe"),
        "{codes}"
    );
    // Reading the codes is not opening the message.
    assert_eq!(server.inbox(address)["messages"][0]["seen"], false);
    let view = server
        .get(&format!("{}/messages/{id}", inbox_path(address)))
        .json();
    assert_eq!(view["codes"], codes["codes"]);
    assert_eq!(view["links"], codes["links"]);
}
