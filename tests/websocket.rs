//! `GET /api/v1/inboxes/{address}/ws` against the real binary: the handshake, one summary
//! frame per new message (only those after the socket opened, oldest first, on whichever
//! core owns the inbox), pings, closing from either side, the per-core cap, and shutdown.
//! The client is tungstenite's own (sync) client over a std socket.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::{self, Message, WebSocket};
use common::{HttpConn, Server, inbox_path, simple_message};
use serde_json::Value;

const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

type Ws = WebSocket<TcpStream>;

fn open(server: &Server, address: &str) -> Ws {
    try_open(server, address).unwrap_or_else(|error| panic!("WebSocket to {address}: {error}"))
}

fn try_open(server: &Server, address: &str) -> Result<Ws, tungstenite::Error> {
    let stream = TcpStream::connect(server.http_addr).expect("connect");
    stream
        .set_read_timeout(Some(FRAME_TIMEOUT))
        .expect("timeout");
    let url = format!("ws://{}{}/ws", server.http_addr, inbox_path(address));
    tungstenite::client(url.as_str(), stream)
        .map(|(socket, response)| {
            assert_eq!(response.status(), 101);
            socket
        })
        .map_err(|error| match error {
            tungstenite::HandshakeError::Failure(error) => error,
            tungstenite::HandshakeError::Interrupted(_) => {
                tungstenite::Error::Io(std::io::ErrorKind::WouldBlock.into())
            }
        })
}

/// The next text frame as JSON (pings are answered by tungstenite while reading).
fn next_summary(socket: &mut Ws) -> Value {
    loop {
        match socket.read().expect("a frame") {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON summary"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Reads until the server closes; returns its close code.
fn close_code(socket: &mut Ws) -> Option<CloseCode> {
    loop {
        match socket.read() {
            Ok(Message::Close(frame)) => return frame.map(|frame| frame.code),
            Ok(_) => {}
            Err(error) => panic!("no close frame: {error}"),
        }
    }
}

fn send(server: &Server, rcpts: &[&str], subject: &str) -> String {
    server.smtp_ehlo().send_mail(
        "sender@sender.test",
        rcpts,
        &simple_message(subject, "hello"),
    )
}

#[test]
fn pushes_a_summary_per_new_message_oldest_first() {
    let server = Server::start(&[]);
    let address = "watcher@example.test";
    send(&server, &[address], "before the socket");
    let mut socket = open(&server, address);
    for subject in ["one", "two", "three"] {
        send(&server, &[address, "other@example.test"], subject);
    }
    let listing = server.inbox(address);
    let listed: Vec<&Value> = listing["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .collect();
    assert_eq!(listed.len(), 4);
    for (subject, expected) in ["one", "two", "three"].iter().zip(listed[..3].iter().rev()) {
        let summary = next_summary(&mut socket);
        assert_eq!(summary["subject"], *subject);
        // The frame is the listing's summary, field for field.
        assert_eq!(&summary, *expected);
        assert_eq!(summary["to"], serde_json::json!([address]));
        assert_eq!(summary["from"], "sender@sender.test");
    }
    // Nothing for the message that was there before, nor for the other inbox.
    socket
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    assert!(socket.read().is_err(), "no further frame");
}

#[test]
fn sockets_on_any_core_follow_inboxes_on_any_core() {
    // Two cores: the kernel spreads the sockets, the addresses hash to both shards, so
    // local and cross-core subscriptions are both exercised.
    let server = Server::start(&["--cores", "2"]);
    let addresses: Vec<String> = (0..8).map(|i| format!("box{i}@example.test")).collect();
    let mut sockets: Vec<Ws> = addresses.iter().map(|a| open(&server, a)).collect();
    let rcpts: Vec<&str> = addresses.iter().map(String::as_str).collect();
    send(&server, &rcpts, "to everyone");
    for (address, socket) in addresses.iter().zip(&mut sockets) {
        let summary = next_summary(socket);
        assert_eq!(summary["subject"], "to everyone", "{address}");
        assert_eq!(summary["to"], serde_json::json!([address]));
        let id = summary["id"].as_str().expect("id");
        let message = server.get(&format!("{}/messages/{id}", inbox_path(address)));
        assert_eq!(message.status, 200, "{address}: {}", message.describe());
    }
    server.wait_metric_total("mayfly_websockets_total", 8);
    server.wait_metric_total("mayfly_websocket_frames_total", 8);
}

#[test]
fn closing_from_the_client_is_answered_and_counted() {
    let server = Server::start(&[]);
    let mut socket = open(&server, "closer@example.test");
    server.wait_metric_total("mayfly_websockets_open", 1);
    socket.close(None).expect("close");
    loop {
        match socket.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(error) => panic!("server did not answer the close: {error}"),
        }
    }
    server.wait_metric_total("mayfly_websockets_open", 0);
    // The subscription went with it: a new message is delivered fine and nothing breaks.
    send(&server, &["closer@example.test"], "after close");
}

#[test]
fn handshake_errors_are_precise() {
    let server = Server::start(&[]);
    let path = format!("{}/ws", inbox_path("a@example.test"));
    let mut conn = HttpConn::connect(server.http_addr);
    // A plain GET: 426 naming the protocol to upgrade to.
    let response = conn.request("GET", &path, None);
    response.assert_error(426, "upgrade_required");
    assert_eq!(response.header("upgrade"), Some("websocket"));
    assert_eq!(response.header("sec-websocket-version"), Some("13"));
    let handshake = |version: &str, key: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Version: {version}\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        )
    };
    conn.send_raw(handshake("8", "dGhlIHNhbXBsZSBub25jZQ==").as_bytes());
    conn.read_response(false)
        .assert_error(426, "upgrade_required");
    conn.send_raw(handshake("13", "short").as_bytes());
    conn.read_response(false).assert_error(400, "bad_request");
    let response = conn.request("HEAD", &path, None);
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET"));
    // An inbox of a domain the server does not accept.
    let strict = Server::start(&["--domain", "example.test"]);
    let response = strict.get(&format!("{}/ws", inbox_path("a@elsewhere.test")));
    response.assert_error(404, "not_found");
    // RFC 6455's sample key gets RFC 6455's sample answer, over a raw socket.
    let mut raw = HttpConn::connect(server.http_addr);
    raw.send_raw(handshake("13", "dGhlIHNhbXBsZSBub25jZQ==").as_bytes());
    let response = raw.read_response(true);
    assert_eq!(response.status, 101);
    assert_eq!(
        response.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
}

#[test]
fn the_per_core_cap_refuses_with_503() {
    let server = Server::start(&["--max-websockets-per-core", "2"]);
    let _first = open(&server, "a@example.test");
    let _second = open(&server, "b@example.test");
    match try_open(&server, "c@example.test") {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert_eq!(
                response.headers().get("retry-after").map(|v| v.as_bytes()),
                Some(&b"1"[..])
            );
        }
        Ok(_) => panic!("a third WebSocket was accepted"),
        Err(error) => panic!("unexpected error {error}"),
    }
}

#[test]
fn shutdown_closes_sockets_with_going_away() {
    let mut server = Server::start(&["--cores", "2"]);
    let mut sockets: Vec<Ws> = (0..4)
        .map(|i| open(&server, &format!("s{i}@example.test")))
        .collect();
    server.signal(libc::SIGTERM);
    for socket in &mut sockets {
        assert_eq!(close_code(socket), Some(CloseCode::Away));
    }
    let status = server.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn frames_sent_by_the_client_are_bounded() {
    let server = Server::start(&[]);
    let mut socket = open(&server, "chatty@example.test");
    // Small frames and pings are fine; the socket keeps working.
    socket.send(Message::text("hello")).expect("send");
    socket
        .send(Message::Ping(vec![1, 2, 3].into()))
        .expect("ping");
    match socket.read().expect("pong") {
        Message::Pong(payload) => assert_eq!(&payload[..], &[1, 2, 3]),
        other => panic!("unexpected {other:?}"),
    }
    send(&server, &["chatty@example.test"], "still here");
    assert_eq!(next_summary(&mut socket)["subject"], "still here");
    // A message over the cap ends the connection.
    let _ = socket.send(Message::binary(vec![0u8; 64 * 1024]));
    let deadline = Instant::now() + FRAME_TIMEOUT;
    while socket.read().is_ok() {
        assert!(Instant::now() < deadline, "connection stays open");
    }
    server.wait_metric_total("mayfly_websockets_open", 0);
}

#[test]
fn a_socket_that_does_not_keep_up_is_closed_with_1013() {
    let server = Server::start(&["--max-messages-per-inbox", "100000"]);
    let address = "slow@example.test";
    // A client that reads nothing, with a small receive buffer so that the server's
    // writes stall soon and the summaries pile up in its queue.
    let socket2 =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket2.set_recv_buffer_size(4096).expect("rcvbuf");
    socket2.connect(&server.http_addr.into()).expect("connect");
    let stream: TcpStream = socket2.into();
    stream
        .set_read_timeout(Some(FRAME_TIMEOUT))
        .expect("timeout");
    let url = format!("ws://{}{}/ws", server.http_addr, inbox_path(address));
    let (mut socket, _) = tungstenite::client(url.as_str(), stream).expect("handshake");
    // Pipelined transactions on one session, far more than the queue holds.
    let n_messages = 4000;
    let mut smtp = server.smtp_ehlo();
    let message = common::dot_stuff(&simple_message("flood", "x"));
    let mut batch = Vec::new();
    for _ in 0..n_messages {
        batch.extend_from_slice(b"MAIL FROM:<s@sender.test>\r\n");
        batch.extend_from_slice(format!("RCPT TO:<{address}>\r\nDATA\r\n").as_bytes());
        batch.extend_from_slice(&message);
    }
    smtp.send(&batch);
    for _ in 0..n_messages * 4 {
        let reply = smtp.read_reply();
        assert!(reply.is("250") || reply.is("354"), "{reply:?}");
    }
    server.wait_metric_total("mayfly_websockets_dropped_slow_total", 1);
    // Reading now: the summaries that made it, oldest first, then 1013.
    let mut n_summaries = 0;
    let code = loop {
        match socket.read().expect("frame") {
            Message::Text(_) => n_summaries += 1,
            Message::Close(frame) => break frame.map(|frame| frame.code),
            _ => {}
        }
    };
    assert_eq!(code, Some(CloseCode::Again));
    assert!(n_summaries < n_messages, "{n_summaries}");
    assert_eq!(server.inbox(address)["total"], n_messages);
}

#[test]
fn the_cap_is_exact_under_concurrent_handshakes() {
    // Cap 1 per core on 2 cores: at most 2 sockets may open, however many handshakes race
    // (the count used to rise only after the cross-core subscribe, so 6 of 40 got in).
    let server = Server::start(&["--cores", "2", "--max-websockets-per-core", "1"]);
    let n_clients = 40;
    let barrier = std::sync::Barrier::new(n_clients);
    let opened: Vec<Option<Ws>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n_clients)
            .map(|index| {
                let (server, barrier) = (&server, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    try_open(server, &format!("race{index}@example.test")).ok()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("client thread"))
            .collect()
    });
    let n_open = opened.iter().filter(|socket| socket.is_some()).count();
    assert!((1..=2).contains(&n_open), "{n_open} sockets opened");
    assert_eq!(server.metric_total("mayfly_websockets_open"), n_open as u64);
    drop(opened);
    server.wait_metric_total("mayfly_websockets_open", 0);
}
