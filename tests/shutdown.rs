//! Graceful shutdown of the real binary on SIGTERM: idle sessions are told
//! `421 4.3.2` and closed, a transaction in flight may finish with its 250, and the
//! process exits 0 within the shutdown grace.

mod common;

use std::time::{Duration, Instant};

use common::{Server, Smtp, dot_stuff, queue_id, simple_message};

/// Grace given to the server in these tests, and the slack allowed on top of it.
const GRACE: Duration = Duration::from_secs(2);
const EXIT_SLACK: Duration = Duration::from_secs(5);

/// True once `/healthz` stops answering 200 (503 while draining, or refused).
fn healthz_not_ok(server: &Server) -> bool {
    let Ok(stream) =
        std::net::TcpStream::connect_timeout(&server.http_addr, Duration::from_secs(1))
    else {
        return true;
    };
    drop(stream);
    let mut conn = common::HttpConn::connect(server.http_addr);
    conn.send_raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    match conn.try_read_response(false) {
        Ok(response) => response.status != 200,
        Err(_) => true,
    }
}

#[test]
fn sigterm_tells_idle_sessions_421_4_3_2_and_exits_0() {
    let mut server = Server::start(&["--cores", "2", "--shutdown-grace", "2s"]);
    // Several sessions so that both cores have some; one just connected, the others
    // after EHLO, one after MAIL FROM (a transaction that is not sending data).
    let mut just_connected = server.smtp();
    let mut after_ehlo: Vec<Smtp> = (0..4).map(|_| server.smtp_ehlo()).collect();
    let mut after_mail = server.smtp_ehlo();
    after_mail.expect("MAIL FROM:<idle@sender.test>", "250");

    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let mut sessions: Vec<&mut Smtp> = vec![&mut just_connected, &mut after_mail];
    sessions.extend(after_ehlo.iter_mut());
    for (session_idx, smtp) in sessions.into_iter().enumerate() {
        let reply = smtp.read_reply();
        assert!(
            reply.is("421 4.3.2"),
            "session {session_idx}: want 421 4.3.2, got {}",
            reply.text()
        );
        assert!(
            smtp.closed_within(Duration::from_secs(5)),
            "session {session_idx} not closed after 421"
        );
    }
    let status = server
        .wait_exit(GRACE + EXIT_SLACK)
        .unwrap_or_else(|| panic!("still running {:?} after SIGTERM", signalled.elapsed()));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status:?}"
    );
    assert_eq!(
        server.stdout_extra_lines(),
        Vec::<String>::new(),
        "stdout has only the ready line"
    );
    // New connections are no longer accepted.
    assert!(
        std::net::TcpStream::connect_timeout(&server.smtp_addr, Duration::from_secs(1)).is_err(),
        "SMTP port still open"
    );
}

#[test]
fn sigterm_with_no_sessions_exits_0_promptly() {
    let mut server = Server::start(&["--shutdown-grace", "2s"]);
    assert_eq!(server.get("/healthz").status, 200);
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(GRACE + EXIT_SLACK)
        .expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        signalled.elapsed() < GRACE + EXIT_SLACK,
        "took {:?}",
        signalled.elapsed()
    );
}

#[test]
fn sigterm_lets_a_transaction_in_flight_finish_with_250() {
    let mut server = Server::start(&["--shutdown-grace", "5s"]);
    let mut smtp = server.smtp_ehlo();
    smtp.expect("MAIL FROM:<busy@sender.test>", "250");
    smtp.expect("RCPT TO:<inflight@example.test>", "250");
    smtp.expect("DATA", "354");
    let message = simple_message("in flight", "sent across a SIGTERM");
    let wire = dot_stuff(&message);
    let (head, tail) = wire.split_at(wire.len() / 2);
    smtp.send(head);

    server.signal(libc::SIGTERM);
    // Wait until the server has noticed the signal (health stops being 200), so the
    // end of the message surely arrives during the shutdown.
    let noticed = common::eventually(Duration::from_secs(5), || healthz_not_ok(&server));
    assert!(noticed, "/healthz still 200 five seconds after SIGTERM");

    smtp.send(tail);
    let reply = smtp.read_reply();
    queue_id(&reply);
    // After its transaction the session is closed (with or without a 421 first).
    if let Some(reply) = smtp.read_until_close(Duration::from_secs(10)) {
        assert!(
            reply.is_empty() || reply.starts_with("421"),
            "after the 250: {reply:?}"
        );
    } else {
        panic!("session not closed after its transaction during shutdown");
    }
    let status = server
        .wait_exit(Duration::from_secs(5) + EXIT_SLACK)
        .expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn http_answers_503_unavailable_while_draining() {
    let mut server = Server::start(&["--shutdown-grace", "5s"]);
    // A transaction in flight keeps the server draining for a while.
    let mut smtp = server.smtp_ehlo();
    smtp.expect("MAIL FROM:<busy@sender.test>", "250");
    smtp.expect("RCPT TO:<draining@example.test>", "250");
    smtp.expect("DATA", "354");
    smtp.send(b"Subject: slow\r\n\r\nstill typing");
    server.signal(libc::SIGTERM);
    let noticed = common::eventually(Duration::from_secs(5), || healthz_not_ok(&server));
    assert!(noticed, "/healthz still 200 five seconds after SIGTERM");
    // While draining, whatever still answers says 503; a refused connection is fine too.
    if let Ok(stream) =
        std::net::TcpStream::connect_timeout(&server.http_addr, Duration::from_secs(1))
    {
        drop(stream);
        let mut conn = common::HttpConn::connect(server.http_addr);
        conn.send_raw(b"GET /api/v1/inboxes/draining%40example.test HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        if let Ok(response) = conn.try_read_response(false) {
            response.assert_error(503, "unavailable");
        }
    }
    smtp.send(b"\r\n.\r\n");
    queue_id(&smtp.read_reply());
    let status = server
        .wait_exit(Duration::from_secs(5) + EXIT_SLACK)
        .expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn a_stalled_transaction_does_not_hold_shutdown_past_the_grace() {
    let mut server = Server::start(&["--shutdown-grace", "1s", "--data-timeout", "1m"]);
    let mut smtp = server.smtp_ehlo();
    smtp.expect("MAIL FROM:<stuck@sender.test>", "250");
    smtp.expect("RCPT TO:<stuck@example.test>", "250");
    smtp.expect("DATA", "354");
    smtp.send(b"Subject: never finished\r\n\r\nand then nothing");
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(1) + EXIT_SLACK)
        .unwrap_or_else(|| {
            panic!(
                "still running {:?} after SIGTERM with a 1 s grace",
                signalled.elapsed()
            )
        });
    assert_eq!(status.code(), Some(0), "{status:?}");
    // The stalled client was told (421) or simply disconnected, never left hanging.
    let rest = smtp
        .read_until_close(Duration::from_secs(5))
        .expect("session closed at exit");
    assert!(
        rest.is_empty() || rest.starts_with("421"),
        "stalled session got {rest:?}"
    );
}
