//! `--private-inboxes` against the real binary: every inbox route, the WebSocket, POP3 and
//! IMAP refuse a reader without the inbox's token (HTTP with exactly the 404 of an inbox
//! that does not exist) and serve one with it; a token opens its own inbox only; without
//! the switch tokens are issued and ignored; the secret comes from a file, or lives in the
//! data directory and survives a restart, and the tokens are the documented HMAC, checked
//! against Python's `hmac`.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::{self, Message, WebSocket};
use common::{
    HttpConn, Response, ScratchDir, Server, inbox_path, run_to_exit, simple_message, unhex,
};
use serde_json::Value;

const DOMAIN: &str = "example.test";
/// Characters of a token: 32 bytes of HMAC-SHA256 in unpadded base64url.
const TOKEN_CHARS: usize = 43;
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// The text of the attachment of `message_with_attachment` (the CRLF after it belongs to
/// the boundary).
const ATTACHMENT_TEXT: &str = "the attached file";

/// How a request presents a token.
#[derive(Debug, Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    Query(&'a str),
}

/// An address the server made, with its token.
struct Inbox {
    address: String,
    token: String,
}

fn start_private(extra: &[&str]) -> Server {
    let mut args = vec!["--domain", DOMAIN, "--private-inboxes"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// One request on a fresh connection, presenting `auth`.
fn request(server: &Server, method: &str, path: &str, auth: Auth, body: Option<&[u8]>) -> Response {
    let mut path = path.to_string();
    let bearer;
    let mut headers = vec![("Connection", "close")];
    match auth {
        Auth::None => {}
        Auth::Bearer(token) => {
            bearer = format!("Bearer {token}");
            headers.push(("Authorization", bearer.as_str()));
        }
        Auth::Query(token) => {
            let separator = if path.contains('?') { '&' } else { '?' };
            path = format!("{path}{separator}token={token}");
        }
    }
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    HttpConn::connect(server.http_addr).request_with(method, &path, &headers, body)
}

fn create(server: &Server) -> Inbox {
    let response = server.post_json("/api/v1/addresses", "");
    assert_eq!(response.status, 201, "{}", response.describe());
    let body = response.json();
    let address = body["address"].as_str().expect("address").to_string();
    let token = body["token"].as_str().expect("token").to_string();
    assert_eq!(token.len(), TOKEN_CHARS, "{token}");
    Inbox { address, token }
}

/// The listing of `inbox` with its token, once it holds `total` messages.
fn wait_total(server: &Server, inbox: &Inbox, total: u64) -> Value {
    let path = inbox_path(&inbox.address);
    let mut last = Value::Null;
    let reached = common::eventually(common::VISIBLE_TIMEOUT, || {
        let response = request(server, "GET", &path, Auth::Bearer(&inbox.token), None);
        assert_eq!(response.status, 200, "{}", response.describe());
        last = response.json();
        last["total"].as_u64() == Some(total)
    });
    assert!(reached, "{} never held {total}: {last}", inbox.address);
    last
}

fn message_with_attachment() -> Vec<u8> {
    format!(
        "From: sender@sender.test\r\nSubject: private mail\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=b\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nYour code is 482913.\r\n\
         --b\r\nContent-Type: text/plain; name=file.txt\r\n\
         Content-Disposition: attachment; filename=file.txt\r\n\r\n{ATTACHMENT_TEXT}\r\n\
         --b--\r\n"
    )
    .into_bytes()
}

/// `token` with one character changed (in the middle: the last one carries padding bits).
fn altered(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    bytes[TOKEN_CHARS / 2] = if bytes[TOKEN_CHARS / 2] == b'A' {
        b'B'
    } else {
        b'A'
    };
    String::from_utf8(bytes).expect("ASCII")
}

/// A refusal must be the answer of an inbox nobody ever used, to the byte (HEAD: the
/// same head).
fn assert_refused(response: &Response, reference: &Response, what: &str) {
    assert_eq!(response.status, 404, "{what}: {}", response.describe());
    assert_eq!(
        response.header("content-length"),
        reference.header("content-length"),
        "{what}"
    );
    if !response.body.is_empty() {
        assert_eq!(response.body, reference.body, "{what}");
    }
}

#[test]
fn every_inbox_route_needs_its_token_and_refuses_like_a_missing_inbox() {
    let server = start_private(&[]);
    let alice = create(&server);
    let bob = create(&server);
    assert_ne!(alice.token, bob.token);
    server.smtp_ehlo().send_mail(
        "sender@sender.test",
        &[&alice.address],
        &message_with_attachment(),
    );
    server.smtp_ehlo().send_mail(
        "sender@sender.test",
        &[&bob.address],
        &simple_message("for bob", "hello bob"),
    );
    let listing = wait_total(&server, &alice, 1);
    let id = listing["messages"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let bob_id = wait_total(&server, &bob, 1)["messages"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();

    // What an inbox nobody has a token for answers: the reference for every refusal.
    let reference = request(
        &server,
        "GET",
        &inbox_path("nobody@example.test"),
        Auth::None,
        None,
    );
    reference.assert_error(404, "not_found");

    let a = inbox_path(&alice.address);
    let b = inbox_path(&bob.address);
    let seen_false = br#"{"seen": false}"#.as_slice();
    let routes: Vec<(&str, String, Option<&[u8]>)> = vec![
        ("GET", a.clone(), None),
        ("HEAD", a.clone(), None),
        ("GET", format!("{a}?limit=5&wait=30"), None),
        ("GET", format!("{a}/messages/{id}"), None),
        ("HEAD", format!("{a}/messages/{id}"), None),
        ("GET", format!("{a}/messages/{id}/raw"), None),
        ("GET", format!("{a}/messages/{id}/codes"), None),
        ("GET", format!("{a}/messages/{id}/attachments/0"), None),
        (
            "GET",
            format!("{a}/messages/0000000000000000000000001"),
            None,
        ),
        ("PATCH", format!("{a}/messages/{id}"), Some(seen_false)),
        ("DELETE", format!("{a}/messages/{id}"), None),
        ("DELETE", a.clone(), None),
        // Bob's inbox with Alice's token (below): one token opens no other inbox.
        ("GET", b.clone(), None),
        ("GET", format!("{b}/messages/{bob_id}/raw"), None),
        ("DELETE", b.clone(), None),
    ];
    let wrong_one = altered(&alice.token);
    for (method, path, body) in &routes {
        let (own, other) = if path.starts_with(&b) {
            (&bob.token, &alice.token)
        } else {
            (&alice.token, &bob.token)
        };
        let wrong = if path.starts_with(&b) {
            "x".repeat(TOKEN_CHARS)
        } else {
            wrong_one.clone()
        };
        let refusals = [
            Auth::None,
            Auth::Bearer(other),
            Auth::Query(other),
            Auth::Bearer(&wrong),
            Auth::Query(""),
            Auth::Bearer("not a token"),
        ];
        for auth in refusals {
            let response = request(&server, method, path, auth, *body);
            assert_refused(&response, &reference, &format!("{method} {path} {auth:?}"));
        }
        // The right token in the query beside a wrong Authorization header: the header
        // is what counts.
        let mut conn = HttpConn::connect(server.http_addr);
        let query_path = format!(
            "{path}{}token={own}",
            if path.contains('?') { '&' } else { '?' }
        );
        let bearer = format!("Bearer {other}");
        let response = conn.request_with(
            method,
            &query_path,
            &[("Connection", "close"), ("Authorization", &bearer)],
            *body,
        );
        assert_refused(
            &response,
            &reference,
            &format!("{method} {path} header beats query"),
        );
    }

    // The refusals changed nothing: both messages are there, still unread.
    for (inbox, id) in [(&alice, &id), (&bob, &bob_id)] {
        let listing = wait_total(&server, inbox, 1);
        assert_eq!(listing["messages"][0]["id"], id.as_str());
        assert_eq!(listing["messages"][0]["seen"], false);
    }

    // With the token, every route answers; some in the query, as a browser link does.
    let with_token = [
        ("GET", a.clone(), None, Auth::Bearer(&alice.token), 200),
        ("HEAD", a.clone(), None, Auth::Query(&alice.token), 200),
        (
            "GET",
            format!("{a}?limit=5&wait=30"),
            None,
            Auth::Bearer(&alice.token),
            200,
        ),
        (
            "GET",
            format!("{a}/messages/{id}/codes"),
            None,
            Auth::Bearer(&alice.token),
            200,
        ),
        (
            "GET",
            format!("{a}/messages/{id}/attachments/0"),
            None,
            Auth::Query(&alice.token),
            200,
        ),
        (
            "GET",
            format!("{a}/messages/{id}/raw"),
            None,
            Auth::Query(&alice.token),
            200,
        ),
        (
            "GET",
            format!("{a}/messages/{id}"),
            None,
            Auth::Bearer(&alice.token),
            200,
        ),
        (
            "PATCH",
            format!("{a}/messages/{id}"),
            Some(seen_false),
            Auth::Bearer(&alice.token),
            200,
        ),
        (
            "DELETE",
            format!("{a}/messages/{id}"),
            None,
            Auth::Bearer(&alice.token),
            204,
        ),
        ("DELETE", b.clone(), None, Auth::Bearer(&bob.token), 204),
    ];
    for (method, path, body, auth, status) in with_token {
        let response = request(&server, method, &path, auth, body);
        assert_eq!(
            response.status,
            status,
            "{method} {path} {auth:?}: {}",
            response.describe()
        );
        if path.ends_with("/codes") {
            assert_eq!(response.json()["codes"][0]["value"], "482913");
        }
        if path.ends_with("/attachments/0") {
            assert_eq!(response.text(), ATTACHMENT_TEXT);
        }
        if path.ends_with(&format!("/messages/{id}")) && method == "GET" {
            assert_eq!(response.json()["subject"], "private mail");
        }
    }
    wait_total(&server, &alice, 0);
    wait_total(&server, &bob, 0);
    // The address in any spelling is the same inbox, so the same token opens it.
    let upper = inbox_path(&alice.address.to_uppercase());
    let response = request(&server, "GET", &upper, Auth::Bearer(&alice.token), None);
    assert_eq!(response.status, 200, "{}", response.describe());
}

#[test]
fn the_websocket_needs_the_token_in_its_query_or_header() {
    let server = start_private(&[]);
    let alice = create(&server);
    let bob = create(&server);
    let reference = request(
        &server,
        "GET",
        &inbox_path("nobody@example.test"),
        Auth::None,
        None,
    );
    let url = format!("ws://{}{}/ws", server.http_addr, inbox_path(&alice.address));
    let wrong = altered(&alice.token);
    for (query, header) in [
        (None, None),
        (Some(bob.token.as_str()), None),
        (Some(wrong.as_str()), None),
        (None, Some(bob.token.as_str())),
        (Some(alice.token.as_str()), Some(bob.token.as_str())),
    ] {
        match open(&server, &url, query, header) {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 404, "{query:?} {header:?}");
                assert_eq!(
                    response.body().as_deref(),
                    Some(reference.body.as_slice()),
                    "{query:?} {header:?}"
                );
            }
            Err(error) => panic!("{query:?} {header:?}: {error}"),
            Ok(_) => panic!("opened with {query:?} {header:?}"),
        }
    }
    // With the token, in the query (as browsers send it) or as a Bearer header.
    let mut by_query = open(&server, &url, Some(&alice.token), None).expect("101 with ?token=");
    let mut by_header = open(&server, &url, None, Some(&alice.token)).expect("101 with Bearer");
    server.smtp_ehlo().send_mail(
        "sender@sender.test",
        &[&alice.address],
        &simple_message("pushed", "to the owner"),
    );
    for socket in [&mut by_query, &mut by_header] {
        let summary = next_summary(socket);
        assert_eq!(summary["subject"], "pushed");
    }
}

type Ws = WebSocket<TcpStream>;

fn open(
    server: &Server,
    url: &str,
    query_token: Option<&str>,
    bearer: Option<&str>,
) -> Result<Ws, tungstenite::Error> {
    let url = match query_token {
        Some(token) => format!("{url}?token={token}"),
        None => url.to_string(),
    };
    let mut request = url.into_client_request().expect("a request");
    if let Some(token) = bearer {
        request.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
    }
    let stream = TcpStream::connect(server.http_addr).expect("connect");
    stream
        .set_read_timeout(Some(FRAME_TIMEOUT))
        .expect("timeout");
    tungstenite::client(request, stream)
        .map(|(socket, _)| socket)
        .map_err(|error| match error {
            tungstenite::HandshakeError::Failure(error) => error,
            tungstenite::HandshakeError::Interrupted(_) => {
                tungstenite::Error::Io(std::io::ErrorKind::WouldBlock.into())
            }
        })
}

fn next_summary(socket: &mut Ws) -> Value {
    loop {
        match socket.read().expect("a frame") {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[test]
fn without_the_switch_tokens_are_issued_and_ignored() {
    let server = Server::start(&["--domain", DOMAIN]);
    let alice = create(&server);
    server.smtp_ehlo().send_mail(
        "sender@sender.test",
        &[&alice.address],
        &simple_message("open", "to all"),
    );
    server.wait_inbox_total(&alice.address, 1);
    for auth in [Auth::None, Auth::Bearer("wrong"), Auth::Query("wrong")] {
        let response = request(&server, "GET", &inbox_path(&alice.address), auth, None);
        assert_eq!(response.status, 200, "{auth:?}: {}", response.describe());
    }
    // A chosen address is given back canonical, without a token.
    let chosen = server.post_json(
        "/api/v1/addresses",
        r#"{"address": "Signup-7@Example.TEST"}"#,
    );
    assert_eq!(chosen.status, 201, "{}", chosen.describe());
    let body = chosen.json();
    assert_eq!(body["address"], "signup-7@example.test");
    assert_eq!(body["domain"], DOMAIN);
    assert_eq!(body["token"], Value::Null);

    // With the switch, choosing is refused, whatever the name.
    let private = start_private(&[]);
    for name in ["signup-7@example.test", "support@example.test"] {
        let refused =
            private.post_json("/api/v1/addresses", &format!(r#"{{"address": "{name}"}}"#));
        refused.assert_error(403, "forbidden");
    }
}

fn client_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// Runs a mail-client script for `user` with `password`; `sasl` logs in with AUTH PLAIN
/// or AUTHENTICATE PLAIN.
fn mail_client(script: &str, port: u16, user: &str, password: &str, sasl: bool) -> Value {
    let mut command = Command::new("python3");
    command
        .arg(client_script(script))
        .args(["127.0.0.1", &port.to_string(), "plain", user])
        .args(["--password", password, "--report-refusal"]);
    if sasl {
        command.arg("--sasl");
    }
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("python3 is required for this test: {error}"));
    assert!(
        output.status.success(),
        "{script} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the script prints JSON")
}

#[test]
fn pop3_and_imap_take_the_token_as_the_password() {
    let (server, listeners) = Server::start_tls(&[
        "--domain",
        DOMAIN,
        "--private-inboxes",
        "--pop3",
        "127.0.0.1:0",
        "--imap",
        "127.0.0.1:0",
    ]);
    let pop3 = listeners.pop3.expect("pop3").port();
    let imap = listeners.imap.expect("imap").port();
    let alice = create(&server);
    let bob = create(&server);
    let sent = simple_message("for mail clients", "hello");
    server
        .smtp_ehlo()
        .send_mail("sender@sender.test", &[&alice.address], &sent);
    let listing = wait_total(&server, &alice, 1);
    let id = listing["messages"][0]["id"].as_str().expect("id");
    let raw = request(
        &server,
        "GET",
        &format!("{}/messages/{id}/raw", inbox_path(&alice.address)),
        Auth::Bearer(&alice.token),
        None,
    )
    .body;

    let wrong = altered(&alice.token);
    for sasl in [false, true] {
        for password in ["any password", bob.token.as_str(), wrong.as_str()] {
            let report = mail_client("pop3_poplib.py", pop3, &alice.address, password, sasl);
            let refused = report["refused"].as_str().unwrap_or_default();
            assert!(
                refused.starts_with("-ERR [AUTH]"),
                "POP3 {password} {sasl}: {report}"
            );
            let report = mail_client("imap_imaplib.py", imap, &alice.address, password, sasl);
            let refused = report["refused"].as_str().unwrap_or_default();
            assert!(
                refused.contains("[AUTHENTICATIONFAILED]"),
                "IMAP {password} {sasl}: {report}"
            );
        }
        let report = mail_client("pop3_poplib.py", pop3, &alice.address, &alice.token, sasl);
        assert_eq!(report["stat"][0], 1, "POP3 with the token: {report}");
        assert_eq!(unhex(&report["messages"][0]["raw"]), raw);
        let report = mail_client("imap_imaplib.py", imap, &alice.address, &alice.token, sasl);
        assert_eq!(report["exists"], 1, "IMAP with the token: {report}");
        assert_eq!(unhex(&report["messages"][0]["raw"]), raw);
        // Bob's token opens Bob's (empty) inbox, not Alice's.
        let report = mail_client("imap_imaplib.py", imap, &bob.address, &bob.token, sasl);
        assert_eq!(report["exists"], 0, "{report}");
    }
}

/// The token the docs say a backend can compute: base64url(HMAC-SHA256(secret, address)),
/// unpadded, by Python's standard library.
fn python_token(secret_file: &Path, address: &str) -> String {
    let output = Command::new("python3")
        .args([
            "-c",
            "import base64, hashlib, hmac, sys\n\
             secret = open(sys.argv[1], 'rb').read()\n\
             tag = hmac.new(secret, sys.argv[2].lower().encode(), hashlib.sha256).digest()\n\
             print(base64.urlsafe_b64encode(tag).rstrip(b'=').decode())",
        ])
        .arg(secret_file)
        .arg(address)
        .output()
        .unwrap_or_else(|error| panic!("python3 is required for this test: {error}"));
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .trim()
        .to_string()
}

#[test]
fn the_secret_lives_in_the_data_dir_and_survives_a_restart() {
    use std::os::unix::fs::PermissionsExt as _;
    let scratch = ScratchDir::new("private-data");
    let data_dir = scratch.path().join("data");
    let data_arg = data_dir.to_str().expect("UTF-8 path").to_string();
    let mut server = start_private(&["--data-dir", &data_arg]);
    let alice = create(&server);
    server.smtp_ehlo().send_mail(
        "sender@sender.test",
        &[&alice.address],
        &simple_message("kept", "across a restart"),
    );
    wait_total(&server, &alice, 1);
    server.signal(libc::SIGTERM);
    assert!(
        server
            .wait_exit(EXIT_TIMEOUT)
            .is_some_and(|status| status.success())
    );

    let secret_file = data_dir.join("token-secret");
    let metadata = std::fs::metadata(&secret_file).expect("the secret was written");
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    assert_eq!(metadata.len(), 65, "64 hex digits and a newline");
    assert_eq!(python_token(&secret_file, &alice.address), alice.token);

    // The same data directory: the same secret, so the old token opens the restored mail.
    let restarted = start_private(&["--data-dir", &data_arg]);
    let listing = wait_total(&restarted, &alice, 1);
    assert_eq!(listing["messages"][0]["subject"], "kept");
    let again = create(&restarted);
    assert_eq!(python_token(&secret_file, &again.address), again.token);

    // Without a data directory or a file, the secret is this process's own: the old token
    // opens nothing there.
    let ephemeral = start_private(&[]);
    let response = request(
        &ephemeral,
        "GET",
        &inbox_path(&alice.address),
        Auth::Bearer(&alice.token),
        None,
    );
    assert_eq!(response.status, 404, "{}", response.describe());
}

#[test]
fn a_secret_file_is_shared_or_refused() {
    let scratch = ScratchDir::new("private-secret");
    let secret_file = scratch.path().join("secret");
    std::fs::write(&secret_file, b"0123456789abcdef0123456789abcdef").expect("write");
    let secret_arg = secret_file.to_str().expect("UTF-8 path");
    // Two servers with one secret file accept each other's tokens.
    let first = start_private(&["--token-secret-file", secret_arg]);
    let alice = create(&first);
    assert_eq!(python_token(&secret_file, &alice.address), alice.token);
    let second = start_private(&["--token-secret-file", secret_arg]);
    second.smtp_ehlo().send_mail(
        "sender@sender.test",
        &[&alice.address],
        &simple_message("second", "server"),
    );
    wait_total(&second, &alice, 1);

    // Too short, or missing: no start, and the message names the file.
    std::fs::write(&secret_file, [7u8; 31]).expect("write");
    let missing = scratch.path().join("missing");
    for (path, why) in [
        (secret_file.as_path(), "needs at least 32"),
        (missing.as_path(), "cannot read the token secret"),
    ] {
        let path = path.to_str().expect("UTF-8 path");
        let (status, stdout, stderr) = run_to_exit(
            &[
                "--smtp",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--cores",
                "1",
                "--max-memory",
                "32MiB",
                "--max-message-size",
                "1MiB",
                "--private-inboxes",
                "--token-secret-file",
                path,
            ],
            EXIT_TIMEOUT,
        );
        assert!(!status.success(), "started with {path}");
        assert!(stdout.is_empty(), "printed a ready line: {stdout}");
        assert!(
            stderr.contains(why) && stderr.contains(path),
            "stderr does not say why: {stderr}"
        );
    }
}
