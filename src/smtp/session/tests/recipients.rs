//! Recipients: which addresses are accepted, how spellings of one inbox are listed and
//! counted, `<postmaster>`, and the addresses that name no readable inbox.

use super::*;

#[test]
fn rcpt_to_rules() {
    let mail = |rest: &[u8]| script(&[b"EHLO c\r\nMAIL FROM:<a@c.example>\r\n", rest]);
    let table: Vec<(Vec<u8>, Vec<u16>)> = vec![
        (mail(b"RCPT TO:<u@example.test>\r\n"), vec![250, 250, 250]),
        (mail(b"RCPT TO:<u@EXAMPLE.TEST>\r\n"), vec![250, 250, 250]),
        // RFC 5321 has no trailing dot in a domain.
        (mail(b"RCPT TO:<u@example.test.>\r\n"), vec![250, 250, 501]),
        (mail(b"RCPT TO:<u@a.b.sub.example.test>\r\n"), vec![250, 250, 250]),
        (mail(b"RCPT TO: <@relay.example:u@example.test>\r\n"), vec![250, 250, 250]),
        // We never relay.
        (mail(b"RCPT TO:<u@other.example>\r\n"), vec![250, 250, 550]),
        (mail(b"RCPT TO:<u@example.test.evil.example>\r\n"), vec![250, 250, 550]),
        (mail(b"RCPT TO:<u@[192.0.2.1]>\r\n"), vec![250, 250, 550]),
        (mail(b"RCPT TO:<postmaster>\r\n"), vec![250, 250, 250]),
        (mail(b"RCPT TO:<>\r\n"), vec![250, 250, 501]),
        (mail(b"RCPT TO:<u@example.test> NOTIFY=NEVER\r\n"), vec![250, 250, 555]),
        (mail("RCPT TO:<\u{fc}@example.test>\r\n".as_bytes()), vec![250, 250, 553]),
        (mail(b"RCPT TO:<u@example.test\r\n"), vec![250, 250, 501]),
        // recipients_max is 3; a second spelling of an inbox and an exact repeat do not count.
        (
            mail(b"RCPT TO:<a@example.test>\r\nRCPT TO:<A@Example.Test>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\nRCPT TO:<d@example.test>\r\nRCPT TO:<b@example.test>\r\n"),
            vec![250, 250, 250, 250, 250, 250, 452, 250],
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
    // recipients_max (3) counts inboxes: a second spelling of one is listed and free, an
    // exact repeat is neither.
    let test = run(&mail(
        b"RCPT TO:<a@example.test>\r\nRCPT TO:<A@EXAMPLE.test>\r\nRCPT TO:<a@example.test>\r\nRCPT TO:<Postmaster>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\nRCPT TO:<B@example.test>\r\nDATA\r\nx\r\n.\r\n",
    ));
    test.assert_codes(&[250, 250, 250, 250, 250, 250, 250, 452, 250, 354, 250]);
    assert_eq!(
        test.stored[0].rcpts,
        [
            "a@example.test",
            "A@EXAMPLE.test",
            "postmaster@example.test",
            "b@example.test",
            "B@example.test",
        ]
    );
    // The two spellings of one inbox leave the `for` clause out, as any two recipients do.
    assert!(!test.stored[0].received.contains(" for <"));
}

#[test]
fn case_variants_of_one_inbox_are_listed_up_to_a_bound() {
    let spellings = [
        "abc@example.test",
        "Abc@example.test",
        "aBc@example.test",
        "abC@example.test",
        "ABc@example.test",
        "ABC@example.test",
    ];
    let mut input = b"EHLO c\r\nMAIL FROM:<a@c.example>\r\n".to_vec();
    for spelling in spellings {
        input.extend_from_slice(format!("RCPT TO:<{spelling}>\r\n").as_bytes());
    }
    input.extend_from_slice(b"RCPT TO:<d@example.test>\r\nDATA\r\nx\r\n.\r\n");
    let test = run(&input);
    // Every spelling is accepted (the inbox gets the message whatever happens), and so is a
    // second inbox: the spellings took one of the three.
    let mut expected = vec![250; 2 + spellings.len() + 1];
    expected.extend([354, 250]);
    test.assert_codes(&expected);
    let mut listed = spellings[..SPELLINGS_PER_INBOX_MAX].to_vec();
    listed.push("d@example.test");
    assert_eq!(test.stored[0].rcpts, listed);
}

#[test]
fn recipients_must_name_an_inbox_that_can_be_read() {
    let utf8 = |rest: &str| {
        script(&[
            b"EHLO c\r\nMAIL FROM:<a@c.example> SMTPUTF8\r\n",
            rest.as_bytes(),
        ])
    };
    let table = [
        // C1 controls are valid UTF-8 and pass the parser, but name no inbox.
        (
            utf8("RCPT TO:<a\u{85}b@example.test>\r\n"),
            "553 5.1.3 Recipient address contains a control character",
        ),
        (
            utf8("RCPT TO:<ab@exa\u{9f}mple.test>\r\n"),
            "553 5.1.3 Recipient address contains a control character",
        ),
        (
            utf8("RCPT TO:<\"a\u{9b}b\"@example.test>\r\n"),
            "553 5.1.3 Recipient address contains a control character",
        ),
        // UTS-46 refuses a label that starts with a combining mark.
        (
            utf8("RCPT TO:<u@\u{300}a.example.test>\r\n"),
            "553 5.1.3 Recipient domain is not a valid internationalized domain name",
        ),
    ];
    for (input, expected) in table {
        let test = run(&input);
        test.assert_codes(&[250, 250, 553]);
        assert!(test.text().contains(expected), "{}", test.text());
    }
    // The domain policy sees the punycode form, the form domains are configured in; the
    // recipient is listed as the client spelled it.
    let mut session_config = config();
    session_config.domains = DomainPolicy::new(&["xn--bcher-kva.example"]);
    let mut test = TestSession::with_config(session_config, None);
    test.feed(&utf8(
        "RCPT TO:<u@b\u{fc}cher.example>\r\nRCPT TO:<v@xn--bcher-kva.example>\r\nRCPT TO:<w@b\u{fc}cher.test>\r\nDATA\r\nx\r\n.\r\n",
    ));
    test.assert_codes(&[250, 250, 250, 250, 550, 354, 250]);
    assert_eq!(
        test.stored[0].rcpts,
        ["u@b\u{fc}cher.example", "v@xn--bcher-kva.example"]
    );
}

#[test]
fn senders_with_control_characters_are_refused() {
    let test = run(&script(&[
        b"EHLO c\r\n",
        "MAIL FROM:<a\u{85}b@c.example> SMTPUTF8\r\nRCPT TO:<u@example.test>\r\nMAIL FROM:<a\u{e9}b@c.example> SMTPUTF8\r\n".as_bytes(),
    ]));
    test.assert_codes(&[250, 553, 503, 250]);
    assert!(
        test.text()
            .contains("553 5.1.7 Sender address contains a control character\r\n"),
        "{}",
        test.text()
    );
}

#[test]
fn postmaster_goes_to_a_domain_we_serve() {
    let postmaster = |domains: &[&str]| {
        let mut session_config = config();
        session_config.domains = DomainPolicy::new(domains);
        let mut test = TestSession::with_config(session_config, None);
        test.feed(&script(&[
            b"EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<pOSTMASTER>\r\nDATA\r\nx\r\n.\r\n",
        ]));
        test.assert_codes(&[250, 250, 250, 354, 250]);
        test.stored[0].rcpts.clone()
    };
    assert_eq!(
        postmaster(&["example.test", "other.test"]),
        ["postmaster@example.test"]
    );
    assert_eq!(
        postmaster(&["*.sub.example.test", "example.test"]),
        ["postmaster@sub.example.test"]
    );
    // A catch-all server serves every domain, its own hostname included.
    assert_eq!(postmaster(&[]), ["postmaster@mx.example.test"]);
}
