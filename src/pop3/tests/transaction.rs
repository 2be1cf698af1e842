//! The TRANSACTION and UPDATE states: listings, retrieval with dot-stuffing, TOP,
//! deletion marks, QUIT's update, and messages that vanish after login.

use super::*;

fn retrieve(seq: u64, top_lines: Option<usize>) -> Event {
    Event::Retrieve {
        id: id(seq),
        top_lines,
        mark_seen: top_lines.is_none(),
    }
}

/// Table of (input after login, expected output).
#[track_caller]
fn check(table: &[(&str, &str)]) {
    for (input, expected) in table {
        let mut test = TestSession::logged_in();
        test.feed(input.as_bytes());
        assert_eq!(test.take_text(), *expected, "input {input:?}");
    }
}

#[test]
fn listings() {
    check(&[
        ("STAT\r\n", "+OK 3 121\r\n"),
        (
            "LIST\r\n",
            "+OK 3 messages (121 octets)\r\n1 54\r\n2 49\r\n3 18\r\n.\r\n",
        ),
        ("LIST 2\r\n", "+OK 2 49\r\n"),
        ("list 03\r\n", "+OK 3 18\r\n"),
        ("NOOP\r\n", "+OK\r\n"),
    ]);
    let mut test = TestSession::logged_in();
    test.feed(b"UIDL\r\nUIDL 3\r\n");
    assert_eq!(
        test.take_text(),
        format!(
            "+OK Unique-ID listing follows\r\n1 {}\r\n2 {}\r\n3 {}\r\n.\r\n+OK 3 {}\r\n",
            UIDS[0], UIDS[1], UIDS[2], UIDS[2]
        )
    );
    assert_eq!(id(1).to_string(), UIDS[0]);
}

#[test]
fn retr_dot_stuffs_and_ends_with_crlf_dot() {
    check(&[
        (
            "RETR 1\r\n",
            "+OK 54 octets\r\nSubject: one\r\n\r\nHello\r\n..dot line\r\n...two dots\r\n..\r\nend\r\n.\r\n",
        ),
        // Without a final CRLF one is added before the dot line.
        (
            "RETR 2\r\n",
            "+OK 49 octets\r\nSubject: two\r\nX-Long: y\r\n\r\nline 1\r\nline 2\r\nline 3\r\n.\r\n",
        ),
        ("RETR 3\r\n", "+OK 18 octets\r\nSubject: three\r\n\r\n.\r\n"),
    ]);
    let mut test = TestSession::logged_in();
    test.feed(b"RETR 1\r\nTOP 1 0\r\n");
    assert_eq!(
        test.take_requests(),
        [retrieve(1, None), retrieve(1, Some(0))]
    );
}

#[test]
fn top_sends_header_blank_line_and_body_lines() {
    check(&[
        ("TOP 1 0\r\n", "+OK 16 octets\r\nSubject: one\r\n\r\n.\r\n"),
        (
            "TOP 1 2\r\n",
            "+OK 34 octets\r\nSubject: one\r\n\r\nHello\r\n..dot line\r\n.\r\n",
        ),
        (
            "TOP 2 1\r\n",
            "+OK 35 octets\r\nSubject: two\r\nX-Long: y\r\n\r\nline 1\r\n.\r\n",
        ),
        // Beyond the body: the whole message, with the CRLF it lacks.
        (
            "TOP 2 99\r\n",
            "+OK 49 octets\r\nSubject: two\r\nX-Long: y\r\n\r\nline 1\r\nline 2\r\nline 3\r\n.\r\n",
        ),
        (
            "TOP 3 5\r\n",
            "+OK 18 octets\r\nSubject: three\r\n\r\n.\r\n",
        ),
    ]);
}

#[test]
fn top_part_edges() {
    let cases: &[(&[u8], usize, &[u8])] = &[
        (b"", 0, b""),
        (b"", 3, b""),
        (
            b"no blank line\r\nat all\r\n",
            5,
            b"no blank line\r\nat all\r\n",
        ),
        (b"no blank line", 0, b"no blank line"),
        (b"\r\nbody\r\n", 0, b"\r\n"),
        (b"H: x\n\nb1\nb2\n", 1, b"H: x\n\nb1\n"),
        (b"H: x\r\n\r\nb1", 0, b"H: x\r\n\r\n"),
        (b"H: x\r\n\r\nb1", 1, b"H: x\r\n\r\nb1"),
        (b"H: x\r\n\r\nb1\r\n", usize::MAX, b"H: x\r\n\r\nb1\r\n"),
        (b"H: x\r\n\r\n\r\n\r\nb\r\n", 1, b"H: x\r\n\r\n\r\n"),
    ];
    for (message, body_lines, expected) in cases {
        assert_eq!(
            top_part(message, *body_lines),
            *expected,
            "{:?} {body_lines}",
            String::from_utf8_lossy(message)
        );
    }
}

#[test]
fn dele_marks_and_rset_unmarks() {
    let mut test = TestSession::logged_in();
    test.feed(
        b"DELE 1\r\nSTAT\r\nLIST\r\nLIST 1\r\nRETR 1\r\nTOP 1 0\r\nUIDL 1\r\nDELE 1\r\n\
          UIDL\r\nRSET\r\nSTAT\r\nLIST 1\r\n",
    );
    assert_eq!(
        test.take_text(),
        format!(
            "+OK message 1 deleted\r\n+OK 2 67\r\n+OK 2 messages (67 octets)\r\n2 49\r\n3 18\r\n.\r\n\
             {}+OK Unique-ID listing follows\r\n2 {}\r\n3 {}\r\n.\r\n\
             +OK maildrop has 3 messages (121 octets)\r\n+OK 3 121\r\n+OK 1 54\r\n",
            "-ERR message 1 already deleted\r\n".repeat(5),
            UIDS[1],
            UIDS[2]
        )
    );
    // Nothing was asked of the caller: marked messages are never fetched.
    assert!(test.take_requests().is_empty());
    test.feed(b"QUIT\r\n");
    assert_eq!(
        test.take_text(),
        format!("+OK {HOSTNAME} Mayfly POP3 signing off\r\n")
    );
    assert!(test.take_requests().is_empty());
    assert_eq!(test.store.len(), 3);
    assert_eq!(test.ended, Some(Event::Quit));
}

#[test]
fn quit_deletes_the_marked_messages() {
    let mut test = TestSession::logged_in();
    test.feed(b"DELE 1\r\nDELE 3\r\nQUIT\r\nNOOP\r\n");
    assert_eq!(
        test.take_text(),
        format!(
            "+OK message 1 deleted\r\n+OK message 3 deleted\r\n\
             +OK {HOSTNAME} Mayfly POP3 signing off (2 messages deleted)\r\n"
        )
    );
    assert_eq!(
        test.take_requests(),
        [Event::Update {
            delete: vec![id(1), id(3)]
        }]
    );
    let kept: Vec<MessageId> = test.store.iter().map(|(id, _)| *id).collect();
    assert_eq!(kept, [id(2)]);
    assert_eq!(test.ended, Some(Event::Quit));
    assert!(!test.session.is_transaction());
    // The user stays known for the caller's logs.
    assert_eq!(test.session.user(), Some(USER));
}

#[test]
fn failed_update_deletes_nothing_and_says_so() {
    let mut test = TestSession::logged_in();
    test.update_fails = true;
    test.feed(b"DELE 2\r\nQUIT\r\n");
    assert_eq!(
        test.take_text(),
        "+OK message 2 deleted\r\n\
         -ERR [SYS/TEMP] Deleting the marked messages failed, none was deleted\r\n"
    );
    assert_eq!(test.store.len(), 3);
    assert_eq!(test.ended, Some(Event::Quit));
}

#[test]
fn messages_gone_since_login() {
    let mut test = TestSession::logged_in();
    // Expired in the store; the session's numbers stay as they were.
    test.store.remove(0);
    test.feed(b"STAT\r\nRETR 1\r\nTOP 1 0\r\nRETR 3\r\n");
    assert_eq!(
        test.take_text(),
        "+OK 3 121\r\n\
         -ERR [SYS/TEMP] message 1 no longer exists, it expired or was deleted since login\r\n\
         -ERR [SYS/TEMP] message 1 no longer exists, it expired or was deleted since login\r\n\
         +OK 18 octets\r\nSubject: three\r\n\r\n.\r\n"
    );
    assert!(test.session.is_transaction());
}

#[test]
fn bad_message_numbers_and_arguments() {
    check(&[
        (
            "RETR 0\r\n",
            "-ERR invalid message number, messages are numbered from 1\r\n",
        ),
        (
            "RETR x\r\n",
            "-ERR invalid message number, expected digits\r\n",
        ),
        (
            "RETR -1\r\n",
            "-ERR invalid message number, expected digits\r\n",
        ),
        (
            "RETR 4\r\n",
            "-ERR no such message, only 3 messages in maildrop\r\n",
        ),
        (
            "RETR 99999999999999999999999\r\n",
            "-ERR invalid message number, too large\r\n",
        ),
        ("RETR\r\n", "-ERR message number missing\r\n"),
        (
            "LIST 4\r\n",
            "-ERR no such message, only 3 messages in maildrop\r\n",
        ),
        (
            "UIDL 4\r\n",
            "-ERR no such message, only 3 messages in maildrop\r\n",
        ),
        (
            "DELE 4\r\n",
            "-ERR no such message, only 3 messages in maildrop\r\n",
        ),
        (
            "TOP 4 0\r\n",
            "-ERR no such message, only 3 messages in maildrop\r\n",
        ),
        (
            "TOP 1\r\n",
            "-ERR TOP needs a message number and a line count\r\n",
        ),
        (
            "TOP 1 -1\r\n",
            "-ERR invalid line count, expected digits\r\n",
        ),
        (
            "TOP 1 99999999999999999999999\r\n",
            "-ERR invalid line count, too large\r\n",
        ),
        ("LIST 1 2\r\n", "-ERR too many arguments\r\n"),
        ("STAT 1\r\n", "-ERR too many arguments\r\n"),
        (
            "USER alice@example.test\r\n",
            "-ERR command not valid after login\r\n",
        ),
        ("PASS secret\r\n", "-ERR command not valid after login\r\n"),
        ("AUTH\r\n", "-ERR command not valid after login\r\n"),
        ("FOO\r\n", "-ERR unknown command\r\n"),
    ]);
}

#[test]
fn capa_is_the_same_after_login() {
    let test = run(b"CAPA\r\n");
    let before = test.text().replacen(&greeting(), "", 1);
    let mut test = TestSession::logged_in();
    test.feed(b"CAPA\r\n");
    assert_eq!(test.take_text(), before);
}

#[test]
fn empty_maildrop() {
    let test = run(
        b"USER empty@example.test\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nQUIT\r\n",
    );
    assert_eq!(
        test.text(),
        format!(
            "{}+OK Send PASS\r\n+OK Logged in, maildrop has 0 messages (0 octets)\r\n+OK 0 0\r\n\
             +OK 0 messages (0 octets)\r\n.\r\n+OK Unique-ID listing follows\r\n.\r\n\
             -ERR no such message, only 0 messages in maildrop\r\n\
             +OK {HOSTNAME} Mayfly POP3 signing off\r\n",
            greeting()
        )
    );
}

#[test]
fn unanswered_requests_fail_temporarily() {
    let mut session = Session::new(Rc::new(config()), false);
    let mut out = Vec::new();
    session.advance(LOGIN, &mut out);
    session.logged_in(Ok(TestSession::new().mailbox()), &mut out);
    out.clear();
    assert_eq!(
        session.advance(b"RETR 1\r\nNOOP\r\n", &mut out),
        (8, retrieve(1, None))
    );
    assert_eq!(
        session.advance(b"NOOP\r\n", &mut out),
        (6, Event::NeedInput)
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        "-ERR [SYS/TEMP] Message could not be read now, try again later\r\n+OK\r\n"
    );
    out.clear();
    // An update that is never confirmed is reported as not done, and the session ends.
    assert_eq!(
        session.advance(b"DELE 1\r\nQUIT\r\n", &mut out).1,
        Event::Update {
            delete: vec![id(1)]
        }
    );
    assert_eq!(session.advance(b"", &mut out), (0, Event::Quit));
    assert_eq!(
        String::from_utf8_lossy(&out),
        "+OK message 1 deleted\r\n\
         -ERR [SYS/TEMP] Deleting the marked messages failed, none was deleted\r\n"
    );
}
