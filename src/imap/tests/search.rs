//! SEARCH and UID SEARCH: every key, combinations, and which messages need bytes.

use super::*;

fn search_test() -> Test {
    let mut store = Store::new(&[SIMPLE, MULTIPART, FORWARDED]);
    store.messages[0].0.seen = true;
    // 2024-03-02: two days after the others.
    store.messages[2].0.received_at_ms = RECEIVED_AT_MS + 2 * 86_400_000;
    let mut test = Test::new(store);
    test.feed(b"l LOGIN bob secret\r\ns SELECT INBOX\r\nd STORE 2 +FLAGS.SILENT (\\Deleted)\r\n");
    test.take();
    test.events.clear();
    test
}

#[test]
fn search_keys() {
    assert!(MULTIPART.len() > 500 && SIMPLE.len() < 500 && FORWARDED.len() < 500);
    let table: &[(&str, &str)] = &[
        ("ALL", " 1 2 3"),
        ("SEEN", " 1"),
        ("UNSEEN", " 2 3"),
        ("DELETED", " 2"),
        ("UNDELETED", " 1 3"),
        ("ANSWERED", ""),
        ("UNANSWERED", " 1 2 3"),
        ("FLAGGED", ""),
        ("NEW", ""),
        ("OLD", " 1 2 3"),
        ("RECENT", ""),
        ("KEYWORD $Junk", ""),
        ("FROM alice", " 1"),
        ("CHARSET UTF-8 FROM {4}\r\nZOË", " 2"),
        ("TO bob", " 1 2"),
        ("CC CAROL", " 2"),
        ("BCC bob", ""),
        ("SUBJECT hello", " 1 3"),
        ("HEADER Message-ID m1@", " 1"),
        ("HEADER X-Missing \"\"", ""),
        ("HEADER Subject \"\"", " 1 2 3"),
        ("CHARSET UTF-8 BODY {5}\r\ncafé", " 2"),
        ("BODY 123456", " 1"),
        ("BODY \"inner text\"", " 3"),
        ("BODY dave", ""),
        ("TEXT dave", " 3"),
        ("TEXT report", " 2"),
        ("LARGER 500", " 2"),
        ("SMALLER 500", " 1 3"),
        ("SINCE 1-Mar-2024", " 3"),
        ("BEFORE 1-Mar-2024", " 1 2"),
        ("ON 29-Feb-2024", " 1 2"),
        ("SENTSINCE 3-Jan-2024", " 2"),
        ("SENTBEFORE 3-Jan-2024", " 1"),
        ("SENTON 2-Jan-2024", " 1"),
        ("NOT SEEN", " 2 3"),
        ("OR SEEN DELETED", " 1 2"),
        ("(SEEN UNDELETED)", " 1"),
        ("OR FROM alice FROM dave", " 1 3"),
        ("NOT (FROM alice)", " 2 3"),
        ("1:2", " 1 2"),
        ("2,*", " 2 3"),
        ("5:*", " 3"),
        ("9", ""),
        ("UID 2:*", " 2 3"),
        ("UID 9:*", " 3"),
        ("CHARSET UTF-8 SUBJECT report", " 2"),
        ("CHARSET us-ascii ALL", " 1 2 3"),
        ("UNSEEN SUBJECT {6}\r\nREPORT", " 2"),
    ];
    for (criteria, expected) in table {
        let mut test = search_test();
        test.feed(format!("t SEARCH {criteria}\r\n").as_bytes());
        let text = test.take();
        let expected = format!("* SEARCH{expected}\r\nt OK SEARCH completed\r\n");
        assert!(text.ends_with(&expected), "SEARCH {criteria}: {text}");
    }
}

#[test]
fn uid_search_answers_uids() {
    let mut store = Store::new(&[SIMPLE, SIMPLE, MULTIPART]);
    store.remove(2);
    let mut test = Test::new(store);
    test.feed(b"l LOGIN bob secret\r\ns SELECT INBOX\r\n");
    test.take();
    test.feed(b"a UID SEARCH ALL\r\nb UID SEARCH SUBJECT report\r\nc SEARCH SUBJECT report\r\nd UID SEARCH UID 3\r\n");
    assert_eq!(
        test.take(),
        "* SEARCH 1 3\r\na OK UID SEARCH completed\r\n* SEARCH 3\r\nb OK UID SEARCH completed\r\n\
         * SEARCH 2\r\nc OK SEARCH completed\r\n* SEARCH 3\r\nd OK UID SEARCH completed\r\n"
    );
}

#[test]
fn only_undecided_messages_are_read() {
    let mut test = search_test();
    test.feed(b"a SEARCH UNSEEN LARGER 10 SMALLER 99999 SINCE 1-Jan-2000\r\n");
    assert!(test.take().starts_with("* SEARCH 2 3\r\n"));
    assert!(test.events.is_empty(), "{:?}", test.events);
    test.feed(b"b SEARCH UNSEEN FROM zoe\r\n");
    assert!(test.take().starts_with("* SEARCH 2\r\n"));
    assert_eq!(
        test.events,
        vec![Event::NeedMessages {
            ids: vec![id(2), id(3)]
        }]
    );
    test.events.clear();
    test.feed(b"c SEARCH OR SEEN FROM zoe\r\n");
    assert!(test.take().starts_with("* SEARCH 1 2\r\n"));
    assert_eq!(
        test.events,
        vec![Event::NeedMessages {
            ids: vec![id(2), id(3)]
        }]
    );
}

#[test]
fn unsupported_charset_and_bad_sets() {
    let mut test = search_test();
    test.feed(b"a SEARCH CHARSET KOI8-R ALL\r\nb SEARCH FROB\r\n");
    assert_eq!(
        test.take(),
        "a NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset\r\nb BAD Command syntax error\r\n"
    );
}
