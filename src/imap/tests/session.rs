//! Whole sessions: login, states, mailbox commands, STORE, EXPUNGE and CLOSE, LOGOUT.

use super::*;

const CAPS: &str =
    "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS CHILDREN STATUS=SIZE";

#[test]
fn greeting_and_capabilities() {
    let mut test = Test::new(Store::new(&[]));
    assert_eq!(
        test.take(),
        format!("* OK [CAPABILITY {CAPS} STARTTLS AUTH=PLAIN] Mayfly IMAP ready\r\n")
    );
    test.feed(b"a CAPABILITY\r\nb LOGIN bob@example.test secret\r\nc CAPABILITY\r\n");
    assert_eq!(
        test.take(),
        format!(
            "* CAPABILITY {CAPS} STARTTLS AUTH=PLAIN\r\na OK CAPABILITY completed\r\n\
             b OK [CAPABILITY {CAPS}] Logged in\r\n\
             * CAPABILITY {CAPS}\r\nc OK CAPABILITY completed\r\n"
        )
    );
    assert_eq!(test.session.user(), Some("bob@example.test"));
}

#[test]
fn login_disabled_until_starttls() {
    let mut test = Test::with_config(Store::new(&[]), config(true, true), false);
    assert!(test.take().contains("STARTTLS LOGINDISABLED] Mayfly"));
    test.feed(b"a LOGIN bob@example.test secret\r\nb AUTHENTICATE PLAIN AGJvYgBzZWNyZXQ=\r\n");
    assert_eq!(
        test.take(),
        "a NO [PRIVACYREQUIRED] Use STARTTLS first\r\nb NO [PRIVACYREQUIRED] Use STARTTLS first\r\n"
    );
    // The command after STARTTLS came in plaintext: it is dropped, not executed.
    test.feed(b"c STARTTLS\r\nd LOGIN bob@example.test secret\r\n");
    assert_eq!(test.take(), "c OK Begin TLS negotiation now\r\n");
    assert!(test.session.tls_active());
    assert_eq!(test.session.user(), None);
    test.feed(b"e CAPABILITY\r\nf STARTTLS\r\ng LOGIN bob@example.test secret\r\n");
    let text = test.take();
    assert!(
        text.contains(&format!("* CAPABILITY {CAPS} AUTH=PLAIN\r\n")),
        "{text}"
    );
    assert!(
        text.contains("f BAD STARTTLS not available now\r\n"),
        "{text}"
    );
    assert!(text.contains("g OK [CAPABILITY"), "{text}");
}

#[test]
fn without_starttls_offer() {
    let mut test = Test::with_config(Store::new(&[]), config(false, false), false);
    assert!(!test.take().contains("STARTTLS"));
    test.feed(b"a STARTTLS\r\n");
    assert_eq!(test.take(), "a BAD STARTTLS not available now\r\n");
}

#[test]
fn authenticate_plain() {
    // SASL-IR: "\0bob\0secret".
    let mut test = run(
        Store::new(&[]),
        b"a AUTHENTICATE PLAIN AGJvYgBzZWNyZXQ=\r\n",
    );
    assert!(test.take().ends_with("a OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS CHILDREN STATUS=SIZE] Logged in\r\n"));
    assert_eq!(test.session.user(), Some("bob"));
    // With a continuation, split across reads; authzid equal to authcid is allowed.
    let mut test = run(Store::new(&[]), b"a AUTHENTICATE PLAIN\r\n");
    assert!(test.take().ends_with("Mayfly IMAP ready\r\n+ \r\n"));
    test.feed(b"Ym9iAGJvYgBzZWNyZXQ");
    assert_eq!(test.take(), "");
    test.feed(b"=\r\n");
    assert!(test.take().starts_with("a OK [CAPABILITY"));
    assert_eq!(test.session.user(), Some("bob"));
    // Cancel, bad base64, another mechanism, someone else's authzid.
    let mut test = run(
        Store::new(&[]),
        b"a AUTHENTICATE PLAIN\r\n*\r\nb AUTHENTICATE PLAIN\r\n!!\r\nc AUTHENTICATE CRAM-MD5\r\n\
          d AUTHENTICATE PLAIN ZXZlAGJvYgBzZWNyZXQ=\r\n",
    );
    assert_eq!(
        test.take(),
        "* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS CHILDREN STATUS=SIZE STARTTLS AUTH=PLAIN] Mayfly IMAP ready\r\n\
         + \r\na BAD Authentication canceled\r\n+ \r\nb BAD Invalid base64 response\r\n\
         c NO [CANNOT] Only AUTH=PLAIN is supported\r\n\
         d NO [AUTHORIZATIONFAILED] Cannot act as another user\r\n"
    );
}

#[test]
fn login_failures() {
    let mut test = run(
        Store::new(&[]),
        b"a LOGIN bob wrong\r\nb LOGIN bob later\r\nc LOGIN bob \"wrong\"\r\nd LOGIN bob wrong\r\ne NOOP\r\n",
    );
    let text = test.take();
    assert!(text.contains("a NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"));
    // TryLater is not counted.
    assert!(text.contains("b NO [UNAVAILABLE] Temporary failure, try again later\r\n"));
    assert!(text.ends_with(
        "d NO [AUTHENTICATIONFAILED] Invalid credentials\r\n* BYE Too many failed logins\r\n"
    ));
    assert_eq!(test.ended, Some(Event::Close));
}

#[test]
fn commands_need_their_state() {
    let mut test = run(
        Store::new(&[SIMPLE]),
        b"a SELECT INBOX\r\nb FETCH 1 FLAGS\r\nc LOGIN bob secret\r\nd FETCH 1 FLAGS\r\ne CHECK\r\n\
          f LOGIN bob secret\r\ng SELECT Sent\r\nh EXPUNGE\r\n",
    );
    let text = test.take();
    for expected in [
        "a BAD Log in first\r\n",
        "b BAD Log in first\r\n",
        "d BAD No mailbox selected\r\n",
        "e BAD No mailbox selected\r\n",
        "f BAD Already logged in\r\n",
        "g NO [NONEXISTENT] Only INBOX exists here\r\n",
        "h BAD No mailbox selected\r\n",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }
}

#[test]
fn select_examine_and_mailbox_commands() {
    let mut store = Store::new(&[SIMPLE, MULTIPART, FORWARDED]);
    store.messages[0].0.seen = true;
    let mut test = run(store, b"l LOGIN bob secret\r\n");
    test.take();
    test.feed(b"s SELECT inbox\r\n");
    assert_eq!(
        test.take(),
        "* FLAGS (\\Seen \\Deleted)\r\n* 3 EXISTS\r\n* 0 RECENT\r\n* OK [UNSEEN 2] First unseen\r\n\
         * OK [UIDVALIDITY 7] UIDs valid\r\n* OK [UIDNEXT 4] Predicted next UID\r\n\
         * OK [PERMANENTFLAGS (\\Seen \\Deleted)] Limited\r\ns OK [READ-WRITE] SELECT completed\r\n"
    );
    assert!(test.session.selected());
    test.feed(
        b"e EXAMINE INBOX\r\nf STORE 1 +FLAGS (\\Deleted)\r\ng EXPUNGE\r\nh FETCH 2 BODY[TEXT]\r\n",
    );
    let text = test.take();
    assert!(text.contains(
        "* OK [PERMANENTFLAGS ()] Read-only mailbox\r\ne OK [READ-ONLY] EXAMINE completed\r\n"
    ));
    assert!(text.contains("f NO [READ-ONLY] Mailbox is read-only\r\n"));
    assert!(text.contains("g NO [READ-ONLY] Mailbox is read-only\r\n"));
    // EXAMINE never sets \Seen, even without PEEK.
    assert!(!text.contains("FLAGS (\\Seen)"), "{text}");
    assert!(!test.store.seen(2));
    test.feed(b"u UNSELECT\r\nv FETCH 1 FLAGS\r\n");
    assert_eq!(
        test.take(),
        "u OK UNSELECT completed\r\nv BAD No mailbox selected\r\n"
    );
    test.feed(
        b"a LIST \"\" \"\"\r\nb LIST \"\" *\r\nc LIST \"\" %\r\nd LIST \"\" Sent\r\ne LSUB \"\" *\r\n\
          f NAMESPACE\r\ng ID (\"name\" \"client\")\r\nh ENABLE UTF8=ACCEPT\r\ni SUBSCRIBE INBOX\r\n",
    );
    assert_eq!(
        test.take(),
        "* LIST (\\Noselect) \"/\" \"\"\r\na OK LIST completed\r\n\
         * LIST (\\HasNoChildren) \"/\" INBOX\r\nb OK LIST completed\r\n\
         * LIST (\\HasNoChildren) \"/\" INBOX\r\nc OK LIST completed\r\n\
         d OK LIST completed\r\n\
         * LSUB (\\HasNoChildren) \"/\" INBOX\r\ne OK LSUB completed\r\n\
         * NAMESPACE ((\"\" \"/\")) NIL NIL\r\nf OK NAMESPACE completed\r\n\
         * ID (\"name\" \"Mayfly\")\r\ng OK ID completed\r\n\
         * ENABLED\r\nh OK ENABLE completed\r\ni OK Done\r\n"
    );
}

#[test]
fn status_counts_the_inbox() {
    let mut store = Store::new(&[SIMPLE, MULTIPART]);
    store.messages[1].0.seen = true;
    let total = SIMPLE.len() + MULTIPART.len();
    let mut test = run(
        store,
        b"l LOGIN bob secret\r\na STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT)\r\n\
          b STATUS \"INBOX\" (SIZE MESSAGES)\r\nc STATUS Trash (MESSAGES)\r\n",
    );
    let text = test.take();
    assert!(text.contains(
        "* STATUS INBOX (MESSAGES 2 UIDNEXT 3 UIDVALIDITY 7 UNSEEN 1 RECENT 0)\r\na OK STATUS completed\r\n"
    ));
    assert!(text.contains(&format!(
        "* STATUS INBOX (SIZE {total} MESSAGES 2)\r\nb OK STATUS completed\r\n"
    )));
    assert!(text.contains("c NO [NONEXISTENT] Only INBOX exists here\r\n"));
    assert!(!test.session.selected());
}

#[test]
fn unsupported_commands_say_why() {
    let mut test = run(
        Store::new(&[SIMPLE]),
        b"l LOGIN bob secret\r\ns SELECT INBOX\r\na CREATE Sent\r\nb COPY 1 Sent\r\nc DELETE INBOX\r\nd FROB\r\ne FETCH\r\n",
    );
    let text = test.take();
    assert!(text.contains("a NO [CANNOT] CREATE is not supported: Mayfly keeps one INBOX per address and nothing else\r\n"));
    assert!(text.contains("b NO [CANNOT] COPY is not supported"));
    assert!(text.contains("c NO [CANNOT] DELETE is not supported"));
    assert!(text.contains("d BAD Unknown command\r\n"));
    assert!(text.contains("e BAD Command syntax error\r\n"));
}

#[test]
fn store_expunge_close_and_logout() {
    let mut test = Test::selected(&[SIMPLE, MULTIPART, FORWARDED, SIMPLE, SIMPLE]);
    test.feed(b"a STORE 2,4 +FLAGS (\\Deleted)\r\nb STORE 1 FLAGS.SILENT (\\Seen)\r\nc UID STORE 5 +FLAGS (\\Seen \\Flagged)\r\n");
    assert_eq!(
        test.take(),
        "* 2 FETCH (FLAGS (\\Deleted))\r\n* 4 FETCH (FLAGS (\\Deleted))\r\na OK STORE completed\r\n\
         b OK STORE completed\r\n* 5 FETCH (UID 5 FLAGS (\\Seen))\r\nc OK UID STORE completed\r\n"
    );
    assert!(test.store.seen(1) && test.store.seen(5) && !test.store.seen(2));
    assert!(test.events.contains(&Event::SetFlags {
        changes: vec![(id(1), true)]
    }));
    test.feed(b"d SEARCH DELETED\r\ne EXPUNGE\r\nf FETCH 1:* (UID FLAGS)\r\n");
    // Highest first: 4 then 2, each number valid when it is read.
    assert_eq!(
        test.take(),
        "* SEARCH 2 4\r\nd OK SEARCH completed\r\n* 4 EXPUNGE\r\n* 2 EXPUNGE\r\ne OK EXPUNGE completed\r\n\
         * 1 FETCH (UID 1 FLAGS (\\Seen))\r\n* 2 FETCH (UID 3 FLAGS ())\r\n* 3 FETCH (UID 5 FLAGS (\\Seen))\r\n\
         f OK FETCH completed\r\n"
    );
    assert_eq!(test.store.messages.len(), 3);
    test.feed(b"g UID STORE 1:* +FLAGS (\\Deleted)\r\nh UID EXPUNGE 3:4\r\n");
    let text = test.take();
    assert!(
        text.ends_with("* 2 EXPUNGE\r\nh OK UID EXPUNGE completed\r\n"),
        "{text}"
    );
    test.feed(
        b"i STORE 1 -FLAGS (\\Deleted)\r\nj CLOSE\r\nk FETCH 1 FLAGS\r\nm LOGOUT\r\nn NOOP\r\n",
    );
    assert_eq!(
        test.take(),
        "* 1 FETCH (FLAGS (\\Seen))\r\ni OK STORE completed\r\nj OK CLOSE completed\r\n\
         k BAD No mailbox selected\r\n* BYE imap.example.test Mayfly IMAP logging out\r\nm OK LOGOUT completed\r\n"
    );
    // CLOSE expunged the one still \Deleted (UID 5), silently; UID 1 stays.
    let uids: Vec<u32> = test
        .store
        .messages
        .iter()
        .map(|(entry, _)| entry.uid)
        .collect();
    assert_eq!(uids, [1]);
    assert_eq!(test.ended, Some(Event::Logout));
}

#[test]
fn pipelined_commands_answer_in_order() {
    let mut test = Test::selected(&[SIMPLE, SIMPLE]);
    test.feed(b"1 NOOP\r\n2 FETCH 2 (UID)\r\n3 FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]\r\n4 SEARCH ALL\r\n5 CHECK\r\n");
    assert_eq!(
        test.take(),
        "1 OK NOOP completed\r\n* 2 FETCH (UID 2)\r\n2 OK FETCH completed\r\n\
         * 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {24}\r\nSubject: Hello there\r\n\r\n)\r\n3 OK FETCH completed\r\n\
         * SEARCH 1 2\r\n4 OK SEARCH completed\r\n5 OK CHECK completed\r\n"
    );
}

#[test]
fn empty_mailbox() {
    let mut test = Test::selected(&[]);
    test.feed(b"a FETCH 1:* FLAGS\r\nb UID FETCH 1:* FLAGS\r\nc SEARCH ALL\r\nd UID SEARCH 1:*\r\ne STORE 1 +FLAGS (\\Seen)\r\nf EXPUNGE\r\n");
    assert_eq!(
        test.take(),
        "a BAD No messages in the mailbox\r\nb OK UID FETCH completed\r\n* SEARCH\r\nc OK SEARCH completed\r\n\
         * SEARCH\r\nd OK UID SEARCH completed\r\ne BAD No messages in the mailbox\r\nf OK EXPUNGE completed\r\n"
    );
}

#[test]
fn sequence_and_uid_sets() {
    let mut store = Store::new(&[SIMPLE, SIMPLE, SIMPLE, SIMPLE]);
    store.remove(2);
    let mut test = Test::new(store);
    test.feed(b"l LOGIN bob secret\r\ns SELECT INBOX\r\n");
    test.take();
    // UIDs are 1, 3, 4; sequence numbers 1..3.
    test.feed(
        b"a FETCH 3:2 UID\r\nb FETCH * UID\r\nc FETCH 4 UID\r\nd UID FETCH 2:* UID\r\ne UID FETCH 9:* UID\r\n\
          f UID FETCH 2 UID\r\ng UID FETCH 4:1,3 FLAGS\r\nh FETCH 1,1:2,2 UID\r\n",
    );
    assert_eq!(
        test.take(),
        "* 2 FETCH (UID 3)\r\n* 3 FETCH (UID 4)\r\na OK FETCH completed\r\n\
         * 3 FETCH (UID 4)\r\nb OK FETCH completed\r\n\
         c BAD Invalid message sequence number\r\n\
         * 2 FETCH (UID 3)\r\n* 3 FETCH (UID 4)\r\nd OK UID FETCH completed\r\n\
         * 3 FETCH (UID 4)\r\ne OK UID FETCH completed\r\n\
         f OK UID FETCH completed\r\n\
         * 1 FETCH (UID 1 FLAGS ())\r\n* 2 FETCH (UID 3 FLAGS ())\r\n* 3 FETCH (UID 4 FLAGS ())\r\ng OK UID FETCH completed\r\n\
         * 1 FETCH (UID 1)\r\n* 2 FETCH (UID 3)\r\nh OK FETCH completed\r\n"
    );
}
