//! Commands and their order: greetings, MAIL and RCPT rules, line framing, errors,
//! STARTTLS, and how a delivery's outcome is answered.

use super::*;

#[test]
fn greeting_and_ehlo_text() {
    let test = run(b"EHLO client.example\r\nHELO client.example\r\n");
    assert_eq!(
        test.text(),
        "220 mx.example.test ESMTP Mayfly\r\n\
         250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 2000\r\n250-8BITMIME\r\n\
         250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250 CHUNKING\r\n\
         250 mx.example.test\r\n"
    );
}

#[test]
fn one_message_with_pipelining() {
    let mut test = run(&script(&[
        EHLO_MAIL_RCPT,
        b"RCPT TO:<v@x.sub.example.test>\r\nDATA\r\nSubject: hi\r\n\r\nHello\r\n.\r\nQUIT\r\n",
    ]));
    test.assert_codes(&[250, 250, 250, 250, 354, 250, 221]);
    assert!(test.text().contains("250 2.0.0 Ok: queued as q1\r\n"));
    assert_eq!(test.ended, Some(Event::Quit));
    assert_eq!(
        test.stored,
        vec![Stored {
            mail_from: "a@client.example".to_string(),
            rcpts: vec![
                "u@example.test".to_string(),
                "v@x.sub.example.test".to_string()
            ],
            body: b"Subject: hi\r\n\r\nHello\r\n".to_vec(),
            received: "Received: from client.example by mx.example.test (Mayfly) with ESMTP\r\n\
                       \tid q1; Fri, 27 Nov 2026 22:15:44 +0000\r\n"
                .to_string(),
        }]
    );
    // Input after QUIT is not processed.
    test.feed(b"NOOP\r\n");
    test.assert_codes(&[250, 250, 250, 250, 354, 250, 221]);
}

#[test]
fn two_messages_pipelined_in_one_read() {
    let test = run(&script(&[
        EHLO_MAIL_RCPT,
        b"DATA\r\none\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<w@example.test>\r\nDATA\r\ntwo\r\n.\r\n",
    ]));
    test.assert_codes(&[250, 250, 250, 354, 250, 250, 250, 354, 250]);
    let bodies: Vec<&[u8]> = test.stored.iter().map(|stored| &stored.body[..]).collect();
    assert_eq!(bodies, [&b"one\r\n"[..], b"two\r\n"]);
    assert_eq!(test.stored[1].mail_from, "");
    assert_eq!(test.stored[1].rcpts, ["w@example.test"]);
}

#[test]
fn command_sequence_rules() {
    check_codes(&[
        // Before HELO/EHLO.
        (b"MAIL FROM:<a@b.example>\r\n", &[503]),
        (b"RCPT TO:<u@example.test>\r\n", &[503]),
        (b"DATA\r\n", &[503]),
        (b"BDAT 0 LAST\r\n", &[503]),
        (b"NOOP\r\nRSET\r\nVRFY x\r\nHELP\r\n", &[250, 250, 252, 214]),
        // Unknown commands do not end the session; verbs are case-insensitive.
        (b"EXPN all\r\nehlo c\r\nNoOp\r\n", &[500, 250, 250]),
        (b"\r\nNOOP\r\n", &[500, 250]),
        (b"STARTTLS\r\nNOOP\r\n", &[502, 250]),
        // RCPT needs MAIL, DATA needs MAIL and RCPT.
        (b"EHLO c\r\nRCPT TO:<u@example.test>\r\n", &[250, 503]),
        (b"EHLO c\r\nDATA\r\n", &[250, 503]),
        (b"EHLO c\r\nMAIL FROM:<>\r\nDATA\r\n", &[250, 250, 503]),
        (
            b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<u@other.example>\r\nDATA\r\n",
            &[250, 250, 550, 503],
        ),
        (
            b"EHLO c\r\nMAIL FROM:<>\r\nMAIL FROM:<>\r\n",
            &[250, 250, 503],
        ),
        // EHLO, HELO and RSET reset the transaction.
        (
            b"EHLO c\r\nMAIL FROM:<>\r\nEHLO c\r\nRCPT TO:<u@example.test>\r\n",
            &[250, 250, 250, 503],
        ),
        (
            b"EHLO c\r\nMAIL FROM:<>\r\nHELO c\r\nMAIL FROM:<>\r\n",
            &[250, 250, 250, 250],
        ),
        (
            b"EHLO c\r\nMAIL FROM:<>\r\nRSET\r\nRCPT TO:<u@example.test>\r\n",
            &[250, 250, 250, 503],
        ),
        // Syntax errors of simple commands.
        (
            b"EHLO\r\nHELO a b\r\nRSET x\r\nQUIT x\r\nVRFY\r\n",
            &[501, 501, 501, 501, 501],
        ),
    ]);
}

#[test]
fn mail_from_rules() {
    let ehlo = |rest: &[u8]| script(&[b"EHLO c\r\n", rest]);
    let table: Vec<(Vec<u8>, Vec<u16>)> = vec![
        (ehlo(b"MAIL FROM:<>\r\n"), vec![250, 250]),
        (ehlo(b"MAIL FROM:<\"a b\"@c.example>\r\n"), vec![250, 250]),
        (
            ehlo(b"MAIL FROM:<@r1.example,@r2.example:u@d.example>\r\n"),
            vec![250, 250],
        ),
        (ehlo(b"MAIL FROM: <a@c.example>\r\n"), vec![250, 250]),
        (
            ehlo(b"MAIL FROM:<a@c.example> BODY=8BITMIME\r\n"),
            vec![250, 250],
        ),
        (
            ehlo(b"MAIL FROM:<a@c.example> BODY=7BIT SIZE=2000\r\n"),
            vec![250, 250],
        ),
        // SIZE over the limit: refused, no transaction started.
        (
            ehlo(b"MAIL FROM:<a@c.example> SIZE=2001\r\nRCPT TO:<u@example.test>\r\n"),
            vec![250, 552, 503],
        ),
        (
            ehlo(b"MAIL FROM:<a@c.example> SIZE=99999999999999999999\r\n"),
            vec![250, 552],
        ),
        (ehlo(b"MAIL FROM:<a@c.example> SIZE=1x\r\n"), vec![250, 501]),
        (ehlo(b"MAIL FROM:<a@c.example> ENVID=x\r\n"), vec![250, 555]),
        (
            ehlo(b"MAIL FROM:<a@c.example> BODY=BINARYMIME\r\n"),
            vec![250, 555],
        ),
        (ehlo(b"MAIL FROM:a@c.example\r\n"), vec![250, 501]),
        (ehlo(b"MAIL FROM:<a@@c.example>\r\n"), vec![250, 501]),
        (ehlo(b"MAIL FROM:<a@c.example\r\n"), vec![250, 501]),
        (ehlo(b"MAIL FROM:<\xff@c.example>\r\n"), vec![250, 501]),
        // Non-ASCII needs SMTPUTF8.
        (
            ehlo("MAIL FROM:<j\u{f6}rg@c.example>\r\n".as_bytes()),
            vec![250, 553],
        ),
        (
            ehlo("MAIL FROM:<j\u{f6}rg@c.example> SMTPUTF8\r\n".as_bytes()),
            vec![250, 250],
        ),
        (
            ehlo(format!("MAIL FROM:<{}@c.example>\r\n", "a".repeat(65)).as_bytes()),
            vec![250, 501],
        ),
    ];
    for (input, expected) in table {
        let test = run(&input);
        assert_eq!(
            test.codes(),
            expected,
            "{:?}\n{}",
            String::from_utf8_lossy(&input),
            test.text()
        );
    }
    let test = run(&ehlo(
        b"MAIL FROM:<a@@c.example>\r\nMAIL FROM:a\r\nRCPT TO:<u@example.test>\r\n",
    ));
    assert_eq!(
        test.text().lines().skip(8).collect::<Vec<_>>(),
        [
            "501 5.1.7 Bad sender address syntax",
            "501 5.5.4 Syntax: MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8]",
            "503 5.5.1 Need MAIL command first",
        ]
    );
}

#[test]
fn smtputf8_transaction_is_stored_and_labelled() {
    let test = run(&script(&[
        b"EHLO c\r\n",
        "MAIL FROM:<j\u{f6}rg@b\u{fc}cher.example> SMTPUTF8\r\nRCPT TO:<\u{fc}ser@example.test>\r\nDATA\r\nx\r\n.\r\n".as_bytes(),
    ]));
    test.assert_codes(&[250, 250, 250, 354, 250]);
    let stored = &test.stored[0];
    assert_eq!(stored.mail_from, "j\u{f6}rg@b\u{fc}cher.example");
    assert_eq!(stored.rcpts, ["\u{fc}ser@example.test"]);
    assert!(
        stored
            .received
            .contains(" with UTF8SMTP\r\n\tid q1 for <\u{fc}ser@example.test>; "),
        "{}",
        stored.received
    );
}

#[test]
fn over_long_command_lines_are_skipped_without_buffering() {
    let mut test = TestSession::new();
    let long = vec![b'A'; 100 * 1024];
    for piece in long.chunks(4096) {
        test.feed(piece);
        assert!(test.pending.len() < COMMAND_LINE_BYTES_MAX);
    }
    test.feed(b"\r\nNOOP\r\n");
    test.assert_codes(&[500, 250]);
    assert!(test.text().contains("500 5.5.2 Line too long\r\n"));

    // Exactly 512 octets with CRLF is fine; 513 is not. Also when fed byte by byte.
    let line = |n_bytes: usize| {
        let mut line = b"NOOP ".to_vec();
        line.resize(n_bytes - 2, b'x');
        line.extend_from_slice(b"\r\n");
        line
    };
    check_codes(&[
        (&line(512), &[250]),
        (&line(513), &[500]),
        (&script(&[&line(513), b"NOOP\r\n"]), &[500, 250]),
    ]);
    assert_chunking_invariant(&script(&[&line(512), &line(513), &line(1100), b"NOOP\r\n"]));
    // A long MAIL line does not start a transaction.
    let long_mail = script(&[
        b"EHLO c\r\nMAIL FROM:<a@c.example> ",
        &[b'x'; 600],
        b"\r\nRCPT TO:<u@example.test>\r\n",
    ]);
    check_codes(&[(&long_mail, &[250, 500, 503])]);
}

#[test]
fn bare_cr_or_lf_in_command_lines() {
    check_codes(&[
        // A bare LF does not end a line: nothing is answered until the CRLF.
        (b"NOOP\n", &[]),
        (b"NOOP\n\r\n", &[500]),
        (b"NOOP\nNOOP\r\n", &[500]),
        (b"NOOP\rQUIT\r\nNOOP\r\n", &[500, 250]),
        (b"\n\r\n", &[500]),
        // The line with the bare LF runs to the CRLF and is refused whole, so the
        // command hidden behind the LF never runs.
        (
            b"EHLO c\r\nMAIL FROM:<a@c.example>\nRCPT TO:<u@example.test>\r\nRCPT TO:<u@example.test>\r\n",
            &[250, 500, 503],
        ),
        (b"RSET\nMAIL FROM:<h@c.example>\r\nNOOP\r\n", &[500, 250]),
    ]);
    let test = run(b"NOOP\n\r\n");
    assert!(
        test.text()
            .ends_with("500 5.5.2 Bare CR or LF in command line, lines must end with CRLF\r\n")
    );
}

#[test]
fn deliveries_that_fail_keep_the_session_usable() {
    for (delivery, expected) in [
        (Delivery::TemporaryFailure, "451 4.3.0 "),
        (
            Delivery::TooLarge,
            "552 5.3.4 Message too big for the store",
        ),
        (
            Delivery::Stored { queue_id: "q1" },
            "250 2.0.0 Ok: queued as q1",
        ),
    ] {
        let mut test = TestSession::new();
        test.next_delivery = delivery;
        test.feed(&script(&[
            EHLO_MAIL_RCPT,
            b"DATA\r\nx\r\n.\r\nRCPT TO:<u@example.test>\r\nMAIL FROM:<>\r\n",
        ]));
        assert!(test.text().contains(expected), "{}", test.text());
        // The transaction was reset (RCPT needs MAIL again), EHLO was kept.
        assert_eq!(test.codes()[5..], [503, 250]);
    }
}

#[test]
fn advance_without_delivered_answers_temporary_failure() {
    let session_config = Rc::new(config());
    let mut session = Session::new(session_config, None);
    let mut out = Vec::new();
    let input = script(&[EHLO_MAIL_RCPT, b"DATA\r\nx\r\n.\r\nNOOP\r\n"]);
    let (n_consumed, event) = session.advance(&input, &mut out);
    assert_eq!(event, Event::Deliver);
    assert!(session.in_transaction());
    assert_eq!(session.transaction().body, b"x\r\n");
    let (_, event) = session.advance(&input[n_consumed..], &mut out);
    assert_eq!(event, Event::NeedInput);
    assert_eq!(reply_codes(&out), [250, 250, 250, 354, 451, 250]);
    assert!(!session.in_transaction());
}

#[test]
fn state_queries_follow_the_transaction() {
    let session_config = Rc::new(config());
    let mut session = Session::new(session_config, None);
    let mut out = Vec::new();
    let step = |session: &mut Session, input: &[u8], out: &mut Vec<u8>| {
        let (n_consumed, event) = session.advance(input, out);
        (
            n_consumed,
            event,
            session.in_transaction(),
            session.expects_data(),
        )
    };
    assert_eq!(
        step(&mut session, b"EHLO c\r\n", &mut out),
        (8, Event::NeedInput, false, false)
    );
    assert_eq!(
        step(&mut session, b"MAIL FROM:<>\r\nRCPT", &mut out),
        (14, Event::NeedInput, true, false)
    );
    assert_eq!(
        step(
            &mut session,
            b"RCPT TO:<u@example.test>\r\nDATA\r\nab\r\n.",
            &mut out
        ),
        (37, Event::NeedInput, true, true)
    );
    assert_eq!(
        step(&mut session, b"\r\nNOOP\r\n", &mut out),
        (2, Event::Deliver, true, false)
    );
    session.delivered(Delivery::Stored { queue_id: "q" }, &mut out);
    assert!(!session.in_transaction());
    assert_eq!(
        step(&mut session, b"NOOP\r\nQUIT\r\nNOOP\r\n", &mut out),
        (12, Event::Quit, false, false)
    );
}

#[test]
fn too_many_errors_close_the_session() {
    let mut input = Vec::new();
    for _ in 0..ERRORS_MAX + 5 {
        input.extend_from_slice(b"BOGUS\r\n");
    }
    let test = run(&input);
    let mut expected = vec![500; ERRORS_MAX];
    expected.push(421);
    test.assert_codes(&expected);
    assert_eq!(test.ended, Some(Event::Close));
    assert!(
        test.text()
            .ends_with("421 4.7.0 Too many errors, closing connection\r\n")
    );

    // A stored message resets the count.
    let mut input = Vec::new();
    for _ in 0..ERRORS_MAX - 1 {
        input.extend_from_slice(b"BOGUS\r\n");
    }
    let first_half = input.clone();
    input.extend_from_slice(&script(&[EHLO_MAIL_RCPT, b"DATA\r\nx\r\n.\r\n"]));
    input.extend_from_slice(&first_half);
    let test = run(&input);
    assert_eq!(test.ended, None);
    assert_eq!(test.stored.len(), 1);
}

#[test]
fn starttls_when_available() {
    let mut session_config = config();
    session_config.starttls_available = true;
    let mut test = TestSession::with_config(session_config, None);
    // STARTTLS before EHLO is refused; after it, anything pipelined behind STARTTLS
    // is thrown away (CVE-2011-0411), and the client must EHLO again.
    test.feed(
        b"STARTTLS\r\nEHLO c\r\nMAIL FROM:<>\r\nSTARTTLS\r\nMAIL FROM:<injected@c.example>\r\n",
    );
    assert_eq!(test.n_starttls, 1);
    assert!(test.pending.is_empty());
    test.assert_codes(&[503, 250, 250, 220]);
    assert!(test.text().contains("250-STARTTLS\r\n"));
    assert!(test.text().contains("220 2.0.0 Ready to start TLS\r\n"));
    assert!(test.session.tls_active());
    test.feed(b"MAIL FROM:<>\r\nEHLO c\r\nSTARTTLS\r\n");
    test.feed(b"MAIL FROM:<a@c.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\nx\r\n.\r\n");
    test.assert_codes(&[503, 250, 250, 220, 503, 250, 503, 250, 250, 354, 250]);
    // The second EHLO reply no longer offers STARTTLS.
    assert_eq!(test.text().matches("250-STARTTLS").count(), 1);
    assert_eq!(
        test.stored[0].received,
        "Received: from c by mx.example.test (Mayfly) with ESMTPS (version=TLSv1.3 cipher=TLS_AES_128_GCM_SHA256)\r\n\
         \tid q1 for <u@example.test>; Fri, 27 Nov 2026 22:15:44 +0000\r\n"
    );
}

#[test]
fn tls_required_refuses_mail_until_starttls() {
    let mut session_config = config();
    session_config.starttls_available = true;
    session_config.tls_required = true;
    let mut test = TestSession::with_config(session_config, None);
    // Before TLS: EHLO still offers STARTTLS, MAIL, RCPT, DATA and BDAT are refused
    // with 530 (RFC 3207 4; the BDAT chunk is still consumed), NOOP and RSET work.
    test.feed(
        b"EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\nBDAT 3\r\nabcNOOP\r\nRSET\r\n",
    );
    test.assert_codes(&[250, 530, 530, 530, 530, 250, 250]);
    assert!(test.text().contains("250-STARTTLS\r\n"));
    assert!(
        test.text()
            .contains("530 5.7.0 Must issue a STARTTLS command first\r\n")
    );
    assert!(test.stored.is_empty());
    // After STARTTLS (and the EHLO it requires again) the same transaction goes through.
    test.feed(b"STARTTLS\r\n");
    test.feed(
        b"EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\nx\r\n.\r\n",
    );
    test.assert_codes(&[
        250, 530, 530, 530, 530, 250, 250, 220, 250, 250, 250, 354, 250,
    ]);
    assert_eq!(test.stored.len(), 1);
    assert!(
        test.stored[0]
            .received
            .contains("with ESMTPS (version=TLSv1.3")
    );

    // Without tls_required, MAIL in plaintext is fine even when STARTTLS is offered.
    let mut session_config = config();
    session_config.starttls_available = true;
    let mut test = TestSession::with_config(session_config, None);
    test.feed(b"EHLO c\r\nMAIL FROM:<a@c.example>\r\n");
    test.assert_codes(&[250, 250]);
}

/// The socket loop refuses MAIL for a client over its message rate; the session answers
/// the given 421 and closes, and lifting the refusal lets MAIL through again.
#[test]
fn a_refused_mail_closes_with_the_given_reply() {
    let mut test = TestSession::new();
    test.session
        .refuse_mail(Some(reply::TOO_MANY_MESSAGES_FROM_CLIENT));
    test.feed(b"EHLO c\r\nMAIL FROM:<a@client.example>\r\nRCPT TO:<u@example.test>\r\n");
    assert_eq!(test.codes().last(), Some(&421));
    assert_eq!(test.ended, Some(Event::Close));
    assert!(
        test.text()
            .ends_with("421 4.7.0 Too many messages from your address, try again later\r\n")
    );

    let mut test = TestSession::new();
    test.session
        .refuse_mail(Some(reply::TOO_MANY_MESSAGES_FROM_CLIENT));
    test.session.refuse_mail(None);
    test.feed(b"EHLO c\r\nMAIL FROM:<a@client.example>\r\n");
    test.assert_codes(&[250, 250]);
}
