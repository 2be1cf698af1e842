//! Replays the fuzz campaign without a fuzzer: every input in `tests/fuzz/corpus/<target>/`
//! and `tests/fuzz/regressions/<target>/` goes through its harness in `mayfly::fuzzing`,
//! whose assertions are the targets' contracts. So CI checks every input the fuzzer found
//! interesting (and every crash it found) against the current code on each run.
//! `docs/fuzzing.md` says how the corpus was made and how to add to it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mayfly::fuzzing::HTTP_LIMITS;
use mayfly::http::request;
use mayfly::imap;
use mayfly::mailbox::{Mailbox, MailboxEntry};
use mayfly::store::MessageId;

/// Fewest corpus inputs a target may have: a corpus that vanished or was emptied by
/// mistake would otherwise make its test pass without checking anything.
const CORPUS_FILES_MIN: usize = 5;

/// The inputs of `target` in `tests/fuzz/<kind>/<target>/`, sorted; none when the folder
/// does not exist.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|entry| entry.expect("read the corpus folder").path())
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    paths
}

/// Runs `harness` on every corpus and regression input of `target` and fails with the names
/// of all inputs whose harness panicked (each panic's message is printed as it happens).
fn replay(target: &str, harness: fn(&[u8])) {
    let corpus = inputs("corpus", target);
    assert!(
        corpus.len() >= CORPUS_FILES_MIN,
        "tests/fuzz/corpus/{target} has {} inputs",
        corpus.len()
    );
    let regressions = inputs("regressions", target);
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).expect("read a corpus input");
        if catch_unwind(AssertUnwindSafe(|| harness(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs failed:\n{}",
        failed.len(),
        corpus.len() + regressions.len(),
        failed.join("\n")
    );
}

#[test]
fn smtp_session_corpus() {
    replay("smtp_session", mayfly::fuzzing::smtp_session);
}

#[test]
fn data_scanner_corpus() {
    replay("data_scanner", mayfly::fuzzing::data_scanner);
}

#[test]
fn http_request_corpus() {
    replay("http_request", mayfly::fuzzing::http_request);
}

#[test]
fn websocket_corpus() {
    replay("websocket", mayfly::fuzzing::websocket);
}

#[test]
fn pop3_session_corpus() {
    replay("pop3_session", mayfly::fuzzing::pop3_session);
}

#[test]
fn imap_session_corpus() {
    replay("imap_session", mayfly::fuzzing::imap_session);
}

/// A finding of the campaign, fixed: a head longer than `head_bytes_max` with a byte
/// httparse rejects past that point was a 400 (a bad header byte) or a 505 (a bad version)
/// when it arrived in one read, but a 431 when the first read ended past the limit and
/// before the bad byte. `http::request::parse` now looks at no more than the first
/// `head_bytes_max + 1` bytes of a head, so the verdict is 431 however the bytes arrive.
#[test]
fn http_verdict_past_the_head_limit_does_not_depend_on_the_split() {
    let status = |buf: &[u8]| match request::parse(buf, &HTTP_LIMITS) {
        Err(response) => response.status,
        Ok(parsed) => panic!("not refused: {parsed:?}"),
    };
    for name in [
        "verdict-depends-on-split-past-head-limit",
        "version-verdict-depends-on-split-past-head-limit",
    ] {
        let input = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fuzz/regressions/http_request")
                .join(name),
        )
        .expect("read the regression input");
        assert_eq!(status(&input), 431, "{name} read whole");
        let first_read = &input[..HTTP_LIMITS.head_bytes_max + 1];
        assert_eq!(status(first_read), 431, "{name} split past the limit");
    }
}

/// A finding of the campaign, fixed: an IMAP command that ran into a reset inbox (the loop
/// had synced a state with a new UIDVALIDITY, so the command's end wrote `* BYE`) returned
/// no event, and `imap::Session::advance` went on with the commands pipelined after it:
/// it answered them after the BYE (a NOOP even asked the store again), and an IDLE wrote
/// `+ idling` after it. A BYE means the connection closes, so `advance` now returns
/// `Close` right after it and reads nothing more.
#[test]
fn imap_answers_nothing_after_a_uidvalidity_bye() {
    for (pipelined, first_command) in [
        ("f FETCH 1:* FLAGS\r\nn NOOP\r\n", "f FETCH 1:* FLAGS\r\n"),
        ("i IDLE\r\nDONE\r\n", "i IDLE\r\n"),
    ] {
        let config = Arc::new(imap::SessionConfig {
            hostname: "imap.example.test".to_string(),
            starttls_available: false,
            tls_required: false,
        });
        let mut session = imap::Session::new(config, true);
        let mut out = Vec::new();
        let login = b"a LOGIN a@example.test secret\r\ns SELECT INBOX\r\n";
        let (consumed, event) = session.advance(login, &mut out);
        assert!(matches!(event, imap::Event::Login { .. }), "{event:?}");
        session.logged_in(Ok(()), &mut out);
        let (_, event) = session.advance(&login[consumed..], &mut out);
        assert_eq!(event, imap::Event::NeedMailbox);
        session.mailbox(inbox(7), &mut out);
        // The store restarted: the loop hears of it and syncs.
        session.sync(inbox(8), &mut out);
        out.clear();

        let (consumed, event) = session.advance(pipelined.as_bytes(), &mut out);
        let text = String::from_utf8_lossy(&out);
        assert_eq!(event, imap::Event::Close, "{text}");
        assert_eq!(consumed, first_command.len(), "{text}");
        assert!(
            text.ends_with("* BYE [UNAVAILABLE] The inbox was reset (UIDVALIDITY changed), please reconnect\r\n"),
            "{text}"
        );
        assert_eq!(text.matches("* BYE").count(), 1, "{text}");
        assert!(!text.contains("+ idling"), "{text}");
    }
}

/// An inbox of one message under `uid_validity`.
fn inbox(uid_validity: u32) -> Mailbox {
    Mailbox {
        uid_validity,
        uid_next: 2,
        entries: vec![MailboxEntry {
            id: MessageId {
                boot_micros: u64::from(uid_validity),
                shard_idx: 0,
                seq: 1,
            },
            uid: 1,
            size_bytes: 10,
            received_at_ms: 1_709_210_096_000,
            expires_at_ms: 1_709_213_696_000,
            seen: false,
        }],
    }
}

/// A finding of the campaign, fixed: `FETCH 1 ()` (an empty item list, which imap-codec
/// parses though RFC 3501's grammar has no such thing) was answered `* 1 FETCH ()`, a
/// response no client can parse. It is now refused with a BAD, as any other syntax error.
#[test]
fn imap_refuses_an_empty_fetch_item_list() {
    let config = Arc::new(imap::SessionConfig {
        hostname: "imap.example.test".to_string(),
        starttls_available: false,
        tls_required: false,
    });
    let mut session = imap::Session::new(config, true);
    let mut out = Vec::new();
    let input = b"a LOGIN a@example.test secret\r\ns SELECT INBOX\r\n";
    let (consumed, _) = session.advance(input, &mut out);
    session.logged_in(Ok(()), &mut out);
    let (_, event) = session.advance(&input[consumed..], &mut out);
    assert_eq!(event, imap::Event::NeedMailbox);
    session.mailbox(inbox(7), &mut out);
    out.clear();
    for command in ["f FETCH 1 ()\r\n", "u UID FETCH 1 ()\r\n"] {
        let (consumed, event) = session.advance(command.as_bytes(), &mut out);
        assert_eq!((consumed, event), (command.len(), imap::Event::NeedInput));
    }
    assert_eq!(
        String::from_utf8_lossy(&out),
        "f BAD Empty FETCH item list\r\nu BAD Empty FETCH item list\r\n"
    );
}
