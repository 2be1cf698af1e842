//! Literals in any chunking, LITERAL+, and every limit: literal size, command size,
//! errors.

use super::*;

const LOGIN_WITH_LITERALS: &[u8] = b"a LOGIN {3}\r\nbob {6}\r\nsecret\r\nb NOOP\r\n";

#[test]
fn literals_split_byte_by_byte() {
    let mut test = Test::new(Store::new(&[]));
    for &byte in LOGIN_WITH_LITERALS {
        test.feed(&[byte]);
    }
    let whole = run(Store::new(&[]), LOGIN_WITH_LITERALS);
    assert_eq!(test.out, whole.out);
    let text = test.take();
    assert!(
        text.ends_with(
            "+ Ready for literal\r\n+ Ready for literal\r\na OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID \
             ENABLE IDLE NAMESPACE UNSELECT UIDPLUS CHILDREN STATUS=SIZE] Logged in\r\nb OK NOOP completed\r\n"
        ),
        "{text}"
    );
    assert_eq!(test.session.user(), Some("bob"));
}

#[test]
fn literal_plus_needs_no_continuation() {
    let mut test = run(Store::new(&[]), b"a LOGIN {3+}\r\nbob {6+}\r\nsecret\r\n");
    let text = test.take();
    assert!(!text.contains("+ Ready"), "{text}");
    assert!(text.contains("a OK [CAPABILITY"));
}

#[test]
fn oversize_literals() {
    // Synchronizing: refused before the continuation, so the client never sends it.
    let mut test = run(
        Store::new(&[]),
        format!("a LOGIN {{{}}}\r\nb NOOP\r\n", LITERAL_BYTES_MAX + 1).as_bytes(),
    );
    assert!(
        test.take()
            .ends_with("Mayfly IMAP ready\r\na BAD Literal too big\r\nb OK NOOP completed\r\n")
    );
    // Non-synchronizing: its bytes are on the way and cannot be told from commands.
    let mut test = run(
        Store::new(&[]),
        format!("a LOGIN {{{}+}}\r\n", LITERAL_BYTES_MAX + 1).as_bytes(),
    );
    assert!(test.take().ends_with("* BYE Literal too big\r\n"));
    assert_eq!(test.ended, Some(Event::Close));
    // A literal within its limit that takes the command past its own.
    let half = LITERAL_BYTES_MAX / 2 + 1;
    let mut input = format!("a LOGIN {{{half}+}}\r\n").into_bytes();
    input.extend(std::iter::repeat_n(b'x', half));
    input.extend_from_slice(format!(" {{{half}}}\r\n").as_bytes());
    let mut test = run(Store::new(&[]), &input);
    assert!(test.take().ends_with("a BAD Literal too big\r\n"));
}

#[test]
fn command_too_long() {
    let mut test = run(Store::new(&[]), &vec![b'x'; COMMAND_BYTES_MAX + 1]);
    assert!(test.take().ends_with("* BYE Command too long\r\n"));
    assert_eq!(test.ended, Some(Event::Close));
}

#[test]
fn too_many_errors() {
    let mut test = run(Store::new(&[]), &b"x FROB\r\n".repeat(ERRORS_MAX + 5));
    let text = test.take();
    assert_eq!(
        text.matches("x BAD Unknown command\r\n").count(),
        ERRORS_MAX
    );
    assert!(text.ends_with("* BYE Too many invalid commands\r\n"));
    assert_eq!(test.ended, Some(Event::Close));
}

#[test]
fn literals_of_refused_commands_are_not_invited() {
    let mut test = run(
        Store::new(&[]),
        b"l LOGIN bob secret\r\na APPEND INBOX {10}\r\nb FROB {5}\r\nc NOOP\r\n\r\n",
    );
    let text = test.take();
    assert!(
        text.ends_with(
            "a NO [CANNOT] Mayfly keeps one INBOX per address and nothing else\r\n\
             b BAD Command syntax error\r\nc OK NOOP completed\r\n* BAD Unknown command\r\n"
        ),
        "{text}"
    );
    assert!(!text.contains("+ Ready"));
    // With LITERAL+ the bytes come anyway: read, then the command is refused.
    let mut test = run(
        Store::new(&[]),
        b"l LOGIN bob secret\r\na APPEND INBOX {3+}\r\nabc\r\nb NOOP\r\n",
    );
    assert!(test.take().ends_with("a NO [CANNOT] APPEND is not supported: Mayfly keeps one INBOX per address and nothing else\r\nb OK NOOP completed\r\n"));
}

#[test]
fn idle_and_authenticate_lines_are_bounded() {
    let mut test = Test::selected(&[]);
    test.feed(b"i IDLE\r\n");
    test.feed(&vec![b'x'; LINE_BYTES_MAX + 1]);
    assert!(test.take().ends_with("* BYE Command too long\r\n"));
    assert_eq!(test.ended, Some(Event::Close));
}
