//! The harnesses checked themselves: their drivers serve a plain session the way the
//! socket loops do, and their output checkers refuse what a client could not read. A
//! harness whose checks never fire, or fire on good output, would make a fuzz campaign
//! look better or worse than the code is.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;

use crate::fuzzing::imap::{IMAP_HOSTNAME, ImapDriver, ImapSetup, check_imap_output};
use crate::fuzzing::inbox::Inbox;
use crate::fuzzing::pop3::{POP3_HOSTNAME, Pop3Driver, Pop3Setup, check_pop3_replies, top_model};
use crate::imap;
use crate::pop3;

/// Runs one session over `n_messages` of the samples, every decision going the usual
/// way, with the stream in one read.
fn serve_pop3(options: u8, n_messages: u8, stream: &[u8]) -> Pop3Driver {
    let setup = Pop3Setup {
        config: Rc::new(pop3::SessionConfig {
            hostname: POP3_HOSTNAME.to_string(),
            starttls_available: options & 0x02 != 0,
            tls_required: options & 0x04 != 0,
        }),
        tls_at_connect: false,
        inbox: Inbox::new(n_messages, None),
        fates: u16::MAX,
        leave_unanswered: false,
    };
    let mut driver = Pop3Driver::new(&setup);
    driver.feed(stream);
    check_pop3_replies(&driver.out);
    driver
}

#[test]
fn pop3_driver_serves_a_whole_session() {
    let driver = serve_pop3(
        0,
        3,
        b"USER a@example.test\r\nPASS x\r\nRETR 1\r\nTOP 2 0\r\nDELE 1\r\nQUIT\r\n",
    );
    let text = String::from_utf8_lossy(&driver.out);
    assert!(
        text.contains("+OK Logged in, maildrop has 3 messages"),
        "{text}"
    );
    assert!(
        text.contains("Hello Bob,\r\nthe code is 123456.\r\n.\r\n"),
        "{text}"
    );
    assert!(text.contains("(1 messages deleted)"), "{text}");
    assert_eq!(driver.ended, Some(pop3::Event::Quit));
    assert_eq!(driver.inbox.mailbox().entries.len(), 2);
}

#[test]
fn pop3_stls_drops_what_was_pipelined_after_it() {
    let driver = serve_pop3(0x06, 1, b"STLS\r\nUSER a@example.test\r\nPASS x\r\n");
    assert_eq!(driver.stls_at, Some(driver.out.len()));
    assert!(
        driver.maildrop.is_none(),
        "a login sent in the clear counted"
    );
}

#[test]
fn pop3_reply_checker_refuses_what_a_client_could_not_read() {
    let cases: [(&[u8], bool); 9] = [
        (b"+OK\r\n-ERR no\r\n+ \r\n", true),
        (b"+OK 3 octets\r\nabc\r\n.\r\n", true),
        (b"+OK 1 messages (3 octets)\r\n1 3\r\n.\r\n", true),
        (b"+OK 3 octets\r\nabc\r\n", false),
        (b"+OK\n", false),
        (b"OK\r\n", false),
        (b"+OKAY\r\n", false),
        (b"-ERR \x01\r\n", false),
        (b"+OK 1 messages (3 octets)\r\n1\t3\r\n.\r\n", false),
    ];
    for (out, readable) in cases {
        let checked = catch_unwind(AssertUnwindSafe(|| check_pop3_replies(out)));
        assert_eq!(
            checked.is_ok(),
            readable,
            "{:?}",
            String::from_utf8_lossy(out)
        );
    }
}

#[test]
fn pop3_top_model_takes_the_header_and_that_many_body_lines() {
    let cases: [(&[u8], usize, &[u8]); 6] = [
        (b"A: 1\r\n\r\nb1\r\nb2\r\n", 0, b"A: 1\r\n\r\n"),
        (b"A: 1\r\n\r\nb1\r\nb2\r\n", 1, b"A: 1\r\n\r\nb1\r\n"),
        (b"A: 1\r\n\r\nb1\r\nb2", 5, b"A: 1\r\n\r\nb1\r\nb2"),
        (b"A: 1\n\nb1\n", 0, b"A: 1\n\n"),
        (b"A: no header end", 0, b"A: no header end"),
        (b"", 3, b""),
    ];
    for (message, body_lines, part) in cases {
        assert_eq!(top_model(message, body_lines), part);
    }
}

/// Runs one session over `n_messages` of the samples, every decision going the usual
/// way, with the stream in one read.
fn serve_imap(change_every: Option<usize>, n_messages: u8, stream: &[u8]) -> ImapDriver {
    let setup = ImapSetup {
        config: Arc::new(imap::SessionConfig {
            hostname: IMAP_HOSTNAME.to_string(),
            starttls_available: true,
            tls_required: false,
        }),
        tls_at_connect: false,
        inbox: Inbox::new(n_messages, None),
        fates: u16::MAX,
        ask_twice: true,
        change_every,
    };
    let mut driver = ImapDriver::new(&setup);
    driver.feed(stream);
    driver.finish();
    check_imap_output(&driver.out);
    driver
}

#[test]
fn imap_driver_serves_a_whole_session() {
    let driver = serve_imap(
        None,
        3,
        b"a LOGIN a@example.test x\r\ns SELECT INBOX\r\nf FETCH 2 BODY[]\r\n\
          t STORE 1 +FLAGS (\\Deleted)\r\ne EXPUNGE\r\nz LOGOUT\r\n",
    );
    let text = String::from_utf8_lossy(&driver.out);
    assert!(text.contains("* 3 EXISTS\r\n"), "{text}");
    assert!(text.contains("Subject: Report"), "{text}");
    assert!(text.contains("* 1 EXPUNGE\r\ne OK"), "{text}");
    assert_eq!(driver.ended, Some(imap::Event::Logout));
    assert_eq!(driver.inbox.mailbox().entries.len(), 2);
}

#[test]
fn imap_changes_reach_an_idling_client() {
    // Events: the login, SELECT's inbox, then IDLE, where the first change comes.
    let driver = serve_imap(
        Some(3),
        2,
        b"a LOGIN a@example.test x\r\ns SELECT INBOX\r\ni IDLE\r\n",
    );
    let text = String::from_utf8_lossy(&driver.out);
    let idling = text.find("+ idling\r\n").expect("IDLE began");
    assert!(text[idling..].contains(" EXISTS\r\n"), "{text}");
}

#[test]
fn imap_output_checker_refuses_what_a_client_could_not_follow() {
    const GREETING: &[u8] = b"* OK [CAPABILITY IMAP4rev1] ready\r\n";
    let cases: [(&[u8], bool); 8] = [
        (
            b"* FLAGS (\\Seen)\r\n* 2 EXISTS\r\n* 2 EXPUNGE\r\n* 1 FETCH (FLAGS ())\r\n",
            true,
        ),
        (b"* FLAGS (\\Seen)\r\n* 2 EXISTS\r\n* 3 EXPUNGE\r\n", false),
        (b"* FLAGS (\\Seen)\r\n* 2 EXISTS\r\n* 1 EXISTS\r\n", false),
        (b"* 1 FETCH (FLAGS ())\r\n", false),
        (b"* ID NIL\r\n* BYE bye\r\nz OK LOGOUT completed\r\n", true),
        (b"* BYE bye\r\n* OK more\r\n", false),
        (b"a OK done", false),
        (b"* 1 FETCH (BODY[] {5}\r\nabc)\r\n", false),
    ];
    for (responses, readable) in cases {
        let out = [GREETING, responses].concat();
        let checked = catch_unwind(AssertUnwindSafe(|| check_imap_output(&out)));
        assert_eq!(
            checked.is_ok(),
            readable,
            "{:?}",
            String::from_utf8_lossy(&out)
        );
    }
}
