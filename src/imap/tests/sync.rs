//! Changes from elsewhere: IDLE, NOOP, and what may be announced when.

use super::*;

#[test]
fn idle_reports_new_gone_and_seen_messages() {
    let mut test = Test::selected(&[SIMPLE, SIMPLE, SIMPLE]);
    test.feed(b"i IDLE\r\n");
    assert_eq!(test.take(), "+ idling\r\n");
    assert!(test.session.is_idle());
    assert_eq!(test.events, vec![Event::Idle]);
    test.store.deliver(MULTIPART);
    test.sync();
    assert_eq!(test.take(), "* 4 EXISTS\r\n");
    test.store.remove(2);
    test.sync();
    assert_eq!(test.take(), "* 2 EXPUNGE\r\n");
    test.store.messages[1].0.seen = true;
    test.sync();
    assert_eq!(test.take(), "* 2 FETCH (UID 3 FLAGS (\\Seen))\r\n");
    test.sync();
    assert_eq!(test.take(), "");
    // DONE split across reads, with a command pipelined after it.
    test.feed(b"DO");
    test.feed(b"NE\r\nn FETCH 3 UID\r\n");
    assert_eq!(
        test.take(),
        "i OK IDLE terminated\r\n* 3 FETCH (UID 4)\r\nn OK FETCH completed\r\n"
    );
    assert!(!test.session.is_idle());
    assert_eq!(test.events.last(), Some(&Event::IdleDone));
}

#[test]
fn changes_wait_for_a_point_that_allows_them() {
    let mut test = Test::selected(&[SIMPLE, SIMPLE, SIMPLE]);
    test.store.remove(1);
    test.store.deliver(SIMPLE);
    test.store.messages[0].0.seen = true;
    test.sync();
    assert_eq!(test.take(), "");
    // FETCH may show the new message and the flag change, but not the EXPUNGE.
    test.feed(b"a FETCH 1:* UID\r\n");
    assert_eq!(
        test.take(),
        "* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 2)\r\n* 3 FETCH (UID 3)\r\n* 4 EXISTS\r\n\
         * 2 FETCH (UID 2 FLAGS (\\Seen))\r\na OK FETCH completed\r\n"
    );
    test.feed(b"b STORE 1 +FLAGS.SILENT (\\Deleted)\r\nc SEARCH ALL\r\nd UID FETCH 1 UID\r\n");
    assert_eq!(
        test.take(),
        "b OK STORE completed\r\n* SEARCH 1 2 3 4\r\nc OK SEARCH completed\r\n\
         * 1 FETCH (UID 1)\r\n* 1 EXPUNGE\r\nd OK UID FETCH completed\r\n"
    );
    test.feed(b"e FETCH 1:* UID\r\n");
    assert!(
        test.take()
            .starts_with("* 1 FETCH (UID 2)\r\n* 2 FETCH (UID 3)\r\n* 3 FETCH (UID 4)\r\n")
    );
}

#[test]
fn noop_and_check_fetch_the_inbox() {
    let mut test = Test::selected(&[SIMPLE, SIMPLE]);
    test.store.remove(1);
    test.store.deliver(SIMPLE);
    test.feed(b"a NOOP\r\n");
    assert_eq!(
        test.take(),
        "* 1 EXPUNGE\r\n* 2 EXISTS\r\na OK NOOP completed\r\n"
    );
    test.store.remove(3);
    test.feed(b"b CHECK\r\n");
    assert_eq!(test.take(), "* 2 EXPUNGE\r\nb OK CHECK completed\r\n");
    assert_eq!(test.events, vec![Event::NeedMailbox, Event::NeedMailbox]);
}

#[test]
fn expunge_also_announces_messages_gone_elsewhere() {
    let mut test = Test::selected(&[SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE]);
    test.feed(b"a STORE 2,4 +FLAGS.SILENT (\\Deleted)\r\n");
    test.store.remove(3);
    test.store.remove(5);
    test.sync();
    test.feed(b"b EXPUNGE\r\n");
    assert_eq!(
        test.take(),
        "a OK STORE completed\r\n* 5 EXPUNGE\r\n* 4 EXPUNGE\r\n* 3 EXPUNGE\r\n* 2 EXPUNGE\r\nb OK EXPUNGE completed\r\n"
    );
    let uids: Vec<u32> = test
        .store
        .messages
        .iter()
        .map(|(entry, _)| entry.uid)
        .collect();
    assert_eq!(uids, [1]);
}

#[test]
fn idle_without_done() {
    let mut test = Test::selected(&[SIMPLE]);
    test.feed(b"i IDLE\r\nNOOP\r\n");
    assert_eq!(test.take(), "+ idling\r\ni BAD Expected DONE\r\n");
    assert!(!test.session.is_idle());
    assert_eq!(test.events, vec![Event::Idle, Event::IdleDone]);
}

#[test]
fn idle_before_select() {
    let mut test = run(
        Store::new(&[SIMPLE]),
        b"l LOGIN bob secret\r\ni IDLE\r\ndone\r\n",
    );
    assert!(
        test.take()
            .ends_with("+ idling\r\ni OK IDLE terminated\r\n")
    );
}

#[test]
fn a_new_uidvalidity_ends_the_session() {
    let mut test = Test::selected(&[SIMPLE]);
    test.feed(b"i IDLE\r\n");
    test.store.uid_validity += 1;
    test.sync();
    assert_eq!(
        test.take(),
        "+ idling\r\n* BYE [UNAVAILABLE] The inbox was reset (UIDVALIDITY changed), please reconnect\r\n"
    );
    assert_eq!(test.ended, Some(Event::Close));
}

#[test]
fn next_expiry() {
    let mut test = Test::new(Store::new(&[SIMPLE, SIMPLE]));
    assert_eq!(test.session.next_expiry_ms(), None);
    test.feed(b"l LOGIN bob secret\r\ns SELECT INBOX\r\n");
    assert_eq!(
        test.session.next_expiry_ms(),
        Some(RECEIVED_AT_MS + 3_600_001)
    );
    test.store.remove(1);
    test.sync();
    assert_eq!(
        test.session.next_expiry_ms(),
        Some(RECEIVED_AT_MS + 3_600_002)
    );
}

#[test]
fn an_older_store_state_does_not_undo_our_flags() {
    let mut test = Test::selected(&[SIMPLE, SIMPLE]);
    // Recorded before the STORE; the store learns of the change only afterwards.
    test.sync();
    test.feed(b"a STORE 1 +FLAGS (\\Seen)\r\nb FETCH 2 BODY[TEXT]<0.5>\r\n");
    assert_eq!(
        test.take(),
        "* 1 FETCH (FLAGS (\\Seen))\r\na OK STORE completed\r\n\
         * 2 FETCH (BODY[TEXT]<0> {5}\r\nHello FLAGS (\\Seen))\r\nb OK FETCH completed\r\n"
    );
    // A later state that disagrees is a change made elsewhere, and is shown.
    test.store.messages[0].0.seen = false;
    test.feed(b"c NOOP\r\n");
    assert_eq!(
        test.take(),
        "* 1 FETCH (UID 1 FLAGS ())\r\nc OK NOOP completed\r\n"
    );
}
