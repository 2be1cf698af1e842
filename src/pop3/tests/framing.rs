//! Line framing and limits: pipelining, any chunking, LF-only lines, over-long lines,
//! bytes that are not text, the error limit, and property tests over random streams.

use super::*;

const PIPELINED: &[u8] = b"USER alice@example.test\r\nPASS secret\r\nSTAT\r\nLIST 1\r\nRETR 1\r\n\
                           TOP 2 1\r\nDELE 1\r\nDELE 2\r\nRSET\r\nDELE 3\r\nQUIT\r\nNOOP\r\n";

fn pipelined_output() -> String {
    format!(
        "{}+OK Send PASS\r\n+OK Logged in, maildrop has 3 messages (121 octets)\r\n\
         +OK 3 121\r\n+OK 1 54\r\n\
         +OK 54 octets\r\nSubject: one\r\n\r\nHello\r\n..dot line\r\n...two dots\r\n..\r\nend\r\n.\r\n\
         +OK 35 octets\r\nSubject: two\r\nX-Long: y\r\n\r\nline 1\r\n.\r\n\
         +OK message 1 deleted\r\n+OK message 2 deleted\r\n\
         +OK maildrop has 3 messages (121 octets)\r\n+OK message 3 deleted\r\n\
         +OK {HOSTNAME} Mayfly POP3 signing off (1 messages deleted)\r\n",
        greeting()
    )
}

#[test]
fn a_whole_session_in_one_read() {
    let mut test = run(PIPELINED);
    assert_eq!(test.text(), pipelined_output());
    assert_eq!(
        test.take_requests(),
        [
            Event::Login {
                user: USER.to_string(),
                password: PASSWORD.to_string()
            },
            Event::Retrieve {
                id: id(1),
                top_lines: None,
                mark_seen: true
            },
            Event::Retrieve {
                id: id(2),
                top_lines: Some(1),
                mark_seen: false
            },
            Event::Update {
                delete: vec![id(3)]
            },
        ]
    );
    let kept: Vec<MessageId> = test.store.iter().map(|(id, _)| *id).collect();
    assert_eq!(kept, [id(1), id(2)]);
    // The NOOP after QUIT was never read.
    assert_eq!(test.ended, Some(Event::Quit));
}

#[test]
fn lf_only_lines_work_like_crlf() {
    let lf_only: Vec<u8> = String::from_utf8_lossy(PIPELINED)
        .replace("\r\n", "\n")
        .into_bytes();
    assert_eq!(run(&lf_only).text(), pipelined_output());
}

#[test]
fn every_split_gives_the_same_output() {
    let response = plain_response("", USER, PASSWORD);
    let mut too_long = b"NOOP ".to_vec();
    too_long.resize(COMMAND_LINE_BYTES_MAX + 10, b'x');
    let scripts: Vec<Vec<u8>> = vec![
        PIPELINED.to_vec(),
        format!("CAPA\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN\n{response}\nUIDL\nTOP 1 1\r\nQUIT\r\n")
            .into_bytes(),
        [
            b"USER a\r\nPASS b\r\n".as_slice(),
            &too_long,
            b"\r\n",
            LOGIN,
            b"NOOP\r\n",
        ]
        .concat(),
    ];
    for script in scripts {
        assert_chunking_invariant(&script);
    }
}

#[test]
fn partial_lines_stay_with_the_caller_until_too_long() {
    let mut session = Session::new(Rc::new(config()), false);
    let mut out = Vec::new();
    assert_eq!(session.advance(b"", &mut out), (0, Event::NeedInput));
    assert_eq!(session.advance(b"NOO", &mut out), (0, Event::NeedInput));
    let longest_partial = vec![b'x'; UNCONSUMED_BYTES_MAX];
    assert_eq!(
        session.advance(&longest_partial, &mut out),
        (0, Event::NeedInput)
    );
    assert!(out.is_empty());
    // One byte more and no LF: discarded now, answered at the LF.
    let over_long = vec![b'x'; COMMAND_LINE_BYTES_MAX];
    assert_eq!(
        session.advance(&over_long, &mut out),
        (COMMAND_LINE_BYTES_MAX, Event::NeedInput)
    );
    assert_eq!(session.advance(b"yyy", &mut out), (3, Event::NeedInput));
    assert!(out.is_empty());
    assert_eq!(
        session.advance(b"y\r\nCAPA\r\nNOO", &mut out),
        (9, Event::NeedInput)
    );
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("-ERR line too long\r\n+OK Capability list follows\r\n"),
        "{text}"
    );
}

#[test]
fn longest_line_is_executed_and_one_more_byte_is_too_long() {
    for line_end in ["\r\n", "\n"] {
        let line = |line_bytes: usize| {
            let mut line = "NOOP".to_string();
            while line.len() + line_end.len() < line_bytes {
                line.push(' ');
            }
            line + line_end
        };
        let mut test = TestSession::logged_in();
        test.feed(line(COMMAND_LINE_BYTES_MAX).as_bytes());
        test.feed(line(COMMAND_LINE_BYTES_MAX + 1).as_bytes());
        test.feed(b"NOOP\r\n");
        assert_eq!(test.take_text(), "+OK\r\n-ERR line too long\r\n+OK\r\n");
    }
}

#[test]
fn auth_plain_for_the_longest_address_fits() {
    // 64 + 1 + 189 octets: the longest address RFC 5321 allows.
    let address = format!(
        "{}@{}.{}.{}.test",
        "a".repeat(64),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(56)
    );
    assert_eq!(address.len(), 254);
    let token = "t".repeat(300);
    let response = plain_response("", &address, &token);
    assert!("AUTH PLAIN \r\n".len() + response.len() <= COMMAND_LINE_BYTES_MAX);
    let inputs = [
        format!("AUTH PLAIN {response}\r\n"),
        format!("AUTH PLAIN\r\n{response}\r\n"),
    ];
    for input in inputs {
        let mut test = run(input.as_bytes());
        assert_eq!(
            test.take_requests(),
            [Event::Login {
                user: address.clone(),
                password: token.clone()
            }]
        );
        assert!(test.text().ends_with("-ERR [AUTH] Invalid login\r\n"));
    }
}

#[test]
fn lines_that_are_not_text() {
    let cases: &[(&[u8], &str)] = &[
        (b"NO\rOP\r\n", "-ERR control character in command line\r\n"),
        (b"\x00\r\n", "-ERR control character in command line\r\n"),
        (b"CAPA\t\r\n", "-ERR control character in command line\r\n"),
        (
            "USER a\u{85}b@example.test\r\n".as_bytes(),
            "-ERR control character in command line\r\n",
        ),
        (
            b"USER \xff@example.test\r\n",
            "-ERR invalid UTF-8 in command line\r\n",
        ),
        (b"\r\n", "-ERR unknown command\r\n"),
        (b"\n", "-ERR unknown command\r\n"),
        (b"\r\r\n", "-ERR control character in command line\r\n"),
    ];
    for (input, expected) in cases {
        let test = run(input);
        assert_eq!(
            test.text(),
            format!("{}{expected}", greeting()),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn too_many_errors_close_the_session() {
    let test = run("FOO\r\n".repeat(ERRORS_MAX + 2).as_bytes());
    assert_eq!(
        test.text(),
        format!(
            "{}{}-ERR too many errors\r\n",
            greeting(),
            "-ERR unknown command\r\n".repeat(ERRORS_MAX - 1)
        )
    );
    assert_eq!(test.ended, Some(Event::Close));
    // Errors of every kind count, over-long lines too.
    let mut too_long = vec![b'x'; COMMAND_LINE_BYTES_MAX * 3];
    too_long.extend_from_slice(b"\r\n");
    let test = run(&too_long.repeat(ERRORS_MAX));
    assert!(
        test.text()
            .ends_with("-ERR line too long\r\n-ERR too many errors\r\n")
    );
    assert_eq!(test.ended, Some(Event::Close));
}

#[test]
fn a_login_forgives_earlier_errors() {
    let errors = "FOO\r\n".repeat(ERRORS_MAX - 1);
    let test = run(
        format!("{errors}USER alice@example.test\r\nPASS secret\r\n{errors}NOOP\r\n").as_bytes(),
    );
    assert_eq!(test.ended, None);
    assert!(test.text().ends_with("-ERR unknown command\r\n+OK\r\n"));
}

#[test]
fn fuzz_corpus_never_panics() {
    // Inputs that once worried us, or that a fuzzer finds first.
    let corpus: &[&[u8]] = &[
        b"",
        b"\r",
        b"\n",
        b"\r\n\r\n",
        b"AUTH PLAIN\r\n",
        b"AUTH PLAIN\r\n\r\n",
        b"AUTH PLAIN ====\r\n",
        b"AUTH PLAIN AA==\r\n",
        b"AUTH PLAIN AAA=\r\n",
        b"AUTH PLAIN\r\nAAAA\r\n",
        b"USER @\r\nPASS \xc3\r\n",
        b"USER alice@example.test\r\nPASS secret\r\nTOP 1 18446744073709551615\r\n",
        b"USER alice@example.test\r\nPASS secret\r\nLIST 18446744073709551616\r\n",
        b"USER alice@example.test\r\nPASS secret\r\nDELE 1\r\nDELE 2\r\nDELE 3\r\nQUIT\r\n",
        b"STLS\r\nSTLS\r\n",
    ];
    for input in corpus {
        let whole = run_in_pieces(config(), input, &[]);
        let every_byte: Vec<usize> = (1..input.len()).collect();
        assert_eq!(run_in_pieces(config(), input, &every_byte), whole);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..1500), 0..6),
    ) {
        let mut test = TestSession::new();
        for chunk in &chunks {
            // `feed` asserts the consumed count and the remainder bound.
            test.feed(chunk);
        }
    }

    #[test]
    fn any_chunking_gives_the_same_output(
        pieces in proptest::collection::vec(proptest::sample::select(STREAM_PIECES), 0..40),
        cuts in proptest::collection::vec(0usize..600, 0..8),
    ) {
        let input = pieces.concat();
        let mut cuts = cuts;
        cuts.sort_unstable();
        let whole = run_in_pieces(config(), &input, &[]);
        prop_assert_eq!(run_in_pieces(config(), &input, &cuts), whole);
    }
}
