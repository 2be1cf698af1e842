//! Property: any chunking of the input gives the same output and the same events.

use proptest::prelude::*;

use super::*;

/// A script that crosses every input path: literals (both kinds), AUTHENTICATE's
/// continuation, IDLE, FETCH rounds, errors.
const SCRIPT: &[u8] = b"a AUTHENTICATE PLAIN\r\nAGJvYgBzZWNyZXQ=\r\nb SELECT {5}\r\nINBOX\r\n\
    c FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODYSTRUCTURE)\r\n\
    d SEARCH OR SUBJECT {6+}\r\nreport FROM alice\r\ne STORE 2 +FLAGS (\\Deleted)\r\n\
    f FROB\r\ng IDLE\r\nDONE\r\nh EXPUNGE\r\ni FETCH 1:2 BODY[1]\r\nj LOGOUT\r\n";

fn run_chunked(chunk_lens: &[usize]) -> (Vec<u8>, Vec<Event>) {
    let mut test = Test::new(Store::new(&[SIMPLE, MULTIPART, FORWARDED]));
    let mut rest = SCRIPT;
    for &chunk_len in chunk_lens.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, after) = rest.split_at(chunk_len.min(rest.len()));
        test.feed(chunk);
        rest = after;
    }
    (test.out, test.events)
}

#[test]
fn the_script_runs_whole() {
    let (out, events) = run_chunked(&[SCRIPT.len()]);
    assert_parses(&out);
    assert_eq!(events.last(), Some(&Event::Logout));
    let text = String::from_utf8_lossy(&out);
    for tag in ["a", "b", "c", "d", "e", "g", "h", "i", "j"] {
        assert_eq!(status_of(&text, tag), Some("OK"), "{tag} in {text}");
    }
    assert_eq!(status_of(&text, "f"), Some("BAD"));
}

proptest! {
    #[test]
    fn any_chunking_gives_the_same_output(chunk_lens in prop::collection::vec(1usize..40, 1..20)) {
        let whole = run_chunked(&[SCRIPT.len()]);
        prop_assert_eq!(run_chunked(&chunk_lens), whole);
    }
}

/// Pieces that random messages are made of: MIME structure, header forms, awkward bytes.
const MESSAGE_PIECES: [&[u8]; 22] = [
    b"Content-Type: multipart/mixed; boundary=b\r\n",
    b"Content-Type: multipart/alternative; boundary=\"c\"\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Type: text/plain; charset=\"utf-8\"; name*=utf-8''%C3%A9\r\n",
    b"Content-Disposition: attachment; filename=\"a b.pdf\"\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"--b\r\n",
    b"--b--\r\n",
    b"--c\r\n",
    b"--c--\r\n",
    b"\r\n",
    b"From: \"A \\\"q\\\" B\" <a@x.test>, =?utf-8?b?w6k=?= <e@x.test>\r\n",
    b"To: undisclosed-recipients:;\r\n",
    b"Cc: team: a@x.test, b@y.test;, c@z.test\r\n",
    b"Subject: =?utf-8?q?caf=C3=A9?= (\"x\")\r\n",
    b"Date: Tue, 2 Jan 2024 10:00:00 +0000\r\n",
    b" folded continuation\r\n",
    b"text line\r\n",
    b"\xc3\xa9\xff\x00\r\n",
    b"{5}\r\n",
    b"\"quoted\\\" ( )\r\n",
    b"no line end",
];

fn message_from(piece_idxs: &[usize]) -> Vec<u8> {
    piece_idxs
        .iter()
        .flat_map(|&piece_idx| {
            MESSAGE_PIECES[piece_idx % MESSAGE_PIECES.len()]
                .iter()
                .copied()
        })
        .collect()
}

const FETCH_EVERYTHING: &[u8] = b"a FETCH 1 (FLAGS ENVELOPE BODYSTRUCTURE BODY BODY.PEEK[1] \
    BODY.PEEK[1.MIME] BODY.PEEK[2.1.HEADER] BODY.PEEK[1.2.TEXT] BODY.PEEK[HEADER.FIELDS (From To)] \
    BODY.PEEK[TEXT]<3.7> RFC822.SIZE)\r\nb SEARCH TEXT caf\r\nc SEARCH SENTON 2-Jan-2024 FROM a\r\n";

/// Pieces of random input: command words, sets, literals, IDLE's DONE.
const INPUT_PIECES: [&[u8]; 24] = [
    b"a ",
    b"FETCH ",
    b"UID ",
    b"SEARCH ",
    b"STORE ",
    b"1:* ",
    b"*",
    b"(",
    b")",
    b"BODY[",
    b"]",
    b"{3}\r\n",
    b"{2+}\r\n",
    b"\r\n",
    b"\"",
    b"IDLE\r\n",
    b"DONE\r\n",
    b"EXPUNGE",
    b"+FLAGS (\\Deleted)",
    b"HEADER.FIELDS (",
    b"<0.5>",
    b"NOT ",
    b"OR ",
    b"x",
];

#[test]
fn sessions_are_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Session>();
}

proptest! {
    /// Whatever a message holds, the FETCH and SEARCH responses parse, and every
    /// command is answered.
    #[test]
    fn any_message_renders_parseable_responses(piece_idxs in prop::collection::vec(0usize..64, 0..40)) {
        let message = message_from(&piece_idxs);
        let mut test = Test::selected(&[&message]);
        test.feed(FETCH_EVERYTHING);
        assert_parses(&test.out);
        let text = test.text();
        for tag in ["a", "b", "c"] {
            prop_assert_eq!(status_of(&text, tag), Some("OK"), "{}", text);
        }
    }

    /// Any input from the command alphabet is answered without a panic, and nothing the
    /// session writes fails to parse.
    #[test]
    fn any_input_is_answered(input in prop::collection::vec(
        prop::sample::select(&INPUT_PIECES[..]),
        0..60,
    )) {
        let mut test = Test::selected(&[SIMPLE, MULTIPART, FORWARDED]);
        test.feed(&input.concat());
        // An unfinished IDLE or literal leaves the session waiting; everything else is out.
        assert_parses(&test.out);
    }
}
