//! FETCH: every item, sections and partials, \Seen, rounds, messages that vanish.

use super::*;

fn n_need_messages(test: &Test) -> usize {
    test.events
        .iter()
        .filter(|event| matches!(event, Event::NeedMessages { .. }))
        .count()
}

#[test]
fn items_from_the_model_need_no_bytes() {
    let mut test = Test::selected(&[SIMPLE]);
    test.feed(b"a FETCH 1 (FLAGS UID INTERNALDATE RFC822.SIZE)\r\nb FETCH 1 FAST\r\nc UID FETCH 1 FLAGS\r\n");
    assert_eq!(
        test.take(),
        format!(
            "* 1 FETCH (FLAGS () UID 1 INTERNALDATE \"29-Feb-2024 12:34:56 +0000\" RFC822.SIZE {size})\r\n\
             a OK FETCH completed\r\n\
             * 1 FETCH (FLAGS () INTERNALDATE \"29-Feb-2024 12:34:56 +0000\" RFC822.SIZE {size})\r\n\
             b OK FETCH completed\r\n\
             * 1 FETCH (UID 1 FLAGS ())\r\nc OK UID FETCH completed\r\n",
            size = SIMPLE.len()
        )
    );
    assert_eq!(n_need_messages(&test), 0);
}

#[test]
fn envelope_and_body_structure_of_a_simple_message() {
    let mut test = Test::selected(&[SIMPLE]);
    test.feed(b"a FETCH 1 (ENVELOPE BODYSTRUCTURE BODY)\r\n");
    let envelope = "(\"Tue, 2 Jan 2024 10:00:00 +0000\" \"Hello there\" \
                    ((\"Alice\" NIL \"alice\" \"example.test\")) ((\"Alice\" NIL \"alice\" \"example.test\")) \
                    ((\"Alice\" NIL \"alice\" \"example.test\")) ((NIL NIL \"bob\" \"example.test\")) \
                    NIL NIL NIL \"<m1@example.test>\")";
    let basic = "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 33 2";
    assert_eq!(
        test.take(),
        format!(
            "* 1 FETCH (ENVELOPE {envelope} BODYSTRUCTURE ({basic} NIL NIL NIL NIL) BODY ({basic}))\r\n\
             a OK FETCH completed\r\n"
        )
    );
    assert_eq!(n_need_messages(&test), 1);
    test.feed(b"b FETCH 1 ALL\r\n");
    assert!(test.take().contains(&format!(
        "RFC822.SIZE {} ENVELOPE {envelope})",
        SIMPLE.len()
    )));
    test.feed(b"c FETCH 1 FULL\r\n");
    assert!(
        test.take()
            .contains(&format!("ENVELOPE {envelope} BODY ({basic}))"))
    );
}

#[test]
fn body_structure_of_nested_messages() {
    let mut test = Test::selected(&[MULTIPART, FORWARDED]);
    test.feed(b"a FETCH 1:2 BODYSTRUCTURE\r\nb FETCH 1 ENVELOPE\r\n");
    let text = test.take();
    for expected in [
        "* 1 FETCH (BODYSTRUCTURE (((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 26 1 NIL NIL NIL NIL)\
         (\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 19 1 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"b2\") NIL NIL NIL)\
         (\"application\" \"pdf\" (\"name\" \"r.pdf\") NIL NIL \"base64\" 12 NIL (\"attachment\" (\"filename\" \"r.pdf\")) NIL NIL) \
         \"mixed\" (\"boundary\" \"b1\") NIL NIL NIL))\r\n",
        "\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" 53 (NIL \"Inner\" ((NIL NIL \"erin\" \"example.test\"))",
        "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 10 1 NIL NIL NIL NIL) 4 NIL NIL NIL NIL)",
        // A non-ASCII display name goes out as an RFC 2047 word.
        "((\"=?utf-8?B?Wm/Dqw==?=\" NIL \"zoe\" \"example.test\"))",
        "((NIL NIL \"carol\" \"example.test\"))",
    ] {
        assert!(text.contains(expected), "{expected}\nnot in\n{text}");
    }
}

#[test]
fn sections() {
    let mut test = Test::selected(&[MULTIPART, FORWARDED]);
    test.feed(
        b"a FETCH 1 (BODY.PEEK[1.1] BODY.PEEK[1.2.MIME] BODY.PEEK[2]<0.4>)\r\n\
          b FETCH 2 (BODY.PEEK[1] BODY.PEEK[2.HEADER] BODY.PEEK[2.1] BODY.PEEK[2.TEXT] BODY.PEEK[9])\r\n\
          c FETCH 2 (BODY.PEEK[HEADER.FIELDS (Subject \"From\")] BODY.PEEK[2.HEADER.FIELDS.NOT (FROM)])\r\n\
          d FETCH 2 RFC822.HEADER\r\n",
    );
    assert_eq!(
        test.take(),
        "* 1 FETCH (BODY[1.1] {26}\r\nCaf=C3=A9 report attached. \
         BODY[1.2.MIME] {42}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n BODY[2]<0> {4}\r\nJVBE)\r\n\
         a OK FETCH completed\r\n\
         * 2 FETCH (BODY[1] {10}\r\nSee below. BODY[2.HEADER] {43}\r\nFrom: erin@example.test\r\nSubject: Inner\r\n\r\n \
         BODY[2.1] {10}\r\nInner text BODY[2.TEXT] {10}\r\nInner text BODY[9] {0}\r\n)\r\nb OK FETCH completed\r\n\
         * 2 FETCH (BODY[HEADER.FIELDS (Subject From)] {48}\r\nFrom: dave@example.test\r\nSubject: Fwd: Hello\r\n\r\n \
         BODY[2.HEADER.FIELDS.NOT (FROM)] {18}\r\nSubject: Inner\r\n\r\n)\r\nc OK FETCH completed\r\n\
         * 2 FETCH (RFC822.HEADER {93}\r\nFrom: dave@example.test\r\nSubject: Fwd: Hello\r\n\
         Content-Type: multipart/mixed; boundary=\"f\"\r\n\r\n)\r\nd OK FETCH completed\r\n"
    );
    assert!(!test.store.seen(1) && !test.store.seen(2));
}

#[test]
fn partial_fetches_clip_by_octets() {
    let mut test = Test::selected(&[SIMPLE]);
    test.feed(b"a FETCH 1 BODY.PEEK[]<0.10>\r\nb FETCH 1 BODY.PEEK[TEXT]<6.3>\r\nc FETCH 1 BODY.PEEK[]<9999.10>\r\n");
    assert_eq!(
        test.take(),
        "* 1 FETCH (BODY[]<0> {10}\r\nDate: Tue,)\r\na OK FETCH completed\r\n\
         * 1 FETCH (BODY[TEXT]<6> {3}\r\nBob)\r\nb OK FETCH completed\r\n\
         * 1 FETCH (BODY[]<9999> {0}\r\n)\r\nc OK FETCH completed\r\n"
    );
}

#[test]
fn whole_message_is_the_exact_bytes() {
    let mut test = Test::selected(&[SIMPLE]);
    test.feed(b"a FETCH 1 BODY.PEEK[]\r\n");
    let mut expected = format!("* 1 FETCH (BODY[] {{{}}}\r\n", SIMPLE.len()).into_bytes();
    expected.extend_from_slice(SIMPLE);
    expected.extend_from_slice(b")\r\na OK FETCH completed\r\n");
    assert_eq!(test.out, expected);
}

#[test]
fn body_sets_seen_and_peek_does_not() {
    let mut test = Test::selected(&[SIMPLE, SIMPLE, SIMPLE]);
    test.feed(b"a FETCH 1 BODY.PEEK[TEXT]\r\nb FETCH 1 RFC822.HEADER\r\n");
    assert!(!test.take().contains("FLAGS"));
    assert!(!test.store.seen(1));
    test.feed(b"c FETCH 1 BODY[TEXT]\r\n");
    assert_eq!(
        test.take(),
        "* 1 FETCH (BODY[TEXT] {33}\r\nHello Bob,\r\nthe code is 123456.\r\n FLAGS (\\Seen))\r\nc OK FETCH completed\r\n"
    );
    assert!(test.store.seen(1));
    assert_eq!(
        test.events.last(),
        Some(&Event::SetFlags {
            changes: vec![(id(1), true)]
        })
    );
    // Already seen: no FLAGS added, no change sent.
    test.events.clear();
    test.feed(b"d FETCH 1 BODY[TEXT]\r\ne UID FETCH 2:3 (FLAGS RFC822)\r\n");
    let text = test.take();
    assert!(
        text.starts_with(
            "* 1 FETCH (BODY[TEXT] {33}\r\nHello Bob,\r\nthe code is 123456.\r\n)\r\n"
        )
    );
    assert!(text.contains(&format!(
        "* 2 FETCH (UID 2 FLAGS (\\Seen) RFC822 {{{}}}\r\n",
        SIMPLE.len()
    )));
    assert!(text.contains("* 3 FETCH (UID 3 FLAGS (\\Seen) RFC822"));
    assert_eq!(
        test.events.last(),
        Some(&Event::SetFlags {
            changes: vec![(id(2), true), (id(3), true)]
        })
    );
}

#[test]
fn a_message_gone_before_its_bytes_came_is_skipped() {
    let mut test = Test::selected(&[SIMPLE, SIMPLE, SIMPLE]);
    test.store.vanish_on_read = Some(2);
    test.feed(b"a FETCH 1:3 BODY.PEEK[HEADER.FIELDS (SUBJECT)]\r\nb FETCH 1:* UID\r\nc NOOP\r\nd FETCH 1:* UID\r\n");
    let subject = "BODY[HEADER.FIELDS (SUBJECT)] {24}\r\nSubject: Hello there\r\n\r\n";
    assert_eq!(
        test.take(),
        format!(
            "* 1 FETCH ({subject})\r\n* 3 FETCH ({subject})\r\na OK FETCH completed\r\n\
             * 1 FETCH (UID 1)\r\n* 2 FETCH (UID 2)\r\n* 3 FETCH (UID 3)\r\nb OK FETCH completed\r\n\
             * 2 EXPUNGE\r\nc OK NOOP completed\r\n\
             * 1 FETCH (UID 1)\r\n* 2 FETCH (UID 3)\r\nd OK FETCH completed\r\n"
        )
    );
}

#[test]
fn big_fetches_go_in_rounds() {
    let bodies: Vec<&[u8]> = vec![SIMPLE; ROUND_MESSAGES_MAX + 44];
    let mut test = Test::selected(&bodies);
    test.feed(b"a FETCH 1:* BODY.PEEK[HEADER.FIELDS (SUBJECT)]\r\n");
    assert_eq!(n_need_messages(&test), 2);
    let text = test.take();
    assert_eq!(text.matches(" FETCH (").count(), ROUND_MESSAGES_MAX + 44);
    assert!(text.ends_with("* 300 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {24}\r\nSubject: Hello there\r\n\r\n)\r\na OK FETCH completed\r\n"));

    let big = vec![b'x'; 7 * 1024 * 1024];
    let mut test = Test::selected(&[&big, &big, &big]);
    test.feed(b"b FETCH 1:3 BODY.PEEK[]<0.1>\r\n");
    assert_eq!(n_need_messages(&test), 2);
    assert_eq!(test.take().matches("BODY[]<0> {1}\r\nx)").count(), 3);
}
