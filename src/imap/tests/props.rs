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
